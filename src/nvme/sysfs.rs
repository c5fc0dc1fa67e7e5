//! The host's NVMe state as the kernel shows it in sysfs.
//!
//! Facts used (Linux 6.1 `drivers/nvme/host`; the same names libnvme v1.3
//! `src/nvme/filters.c` scans for):
//! - `/sys/class/nvme/nvme<c>/` is a controller, with `subsysnqn` and `state`;
//! - under it, `nvme<s>c<c>n<i>` is a hidden per-path disk (multipath on: the
//!   block device is the subsystem's `nvme<s>n<i>`) and `nvme<c>n<i>` is the
//!   block device itself (multipath off);
//! - `/sys/class/block/<disk>/` has `size` (512-byte sectors, whatever the
//!   block size), `queue/logical_block_size`, `nsid`, and `uuid` / `nguid`
//!   only when the target set them;
//! - each disk a controller holds has a `stat` whose first and fifth fields
//!   count completed reads and writes; a per-path disk counts the I/O of its
//!   path only.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{Connection, Namespace, NvmeError};

#[cfg(test)]
pub(crate) mod fake;

/// Where sysfs and /dev are: `/` on a host, a temporary tree in tests.
pub(crate) struct Sysfs {
    root: PathBuf,
}

/// The namespaces a controller holds and whether each is usable yet.
pub(super) struct NamespaceStatus {
    ready: Vec<Namespace>,
    pending: Vec<(String, &'static str)>,
}

impl NamespaceStatus {
    /// At least one namespace, and all of them usable.
    pub(super) fn is_ready(&self) -> bool {
        !self.ready.is_empty() && self.pending.is_empty()
    }

    /// For messages: each namespace device and why it is not usable.
    pub(super) fn describe(&self) -> String {
        let ready = self
            .ready
            .iter()
            .map(|n| format!("{} (ready)", n.device.display()));
        let pending = self
            .pending
            .iter()
            .map(|(name, why)| format!("{name} ({why})"));
        let all: Vec<String> = ready.chain(pending).collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    }
}

impl Sysfs {
    /// This host's sysfs.
    pub(crate) fn host() -> Self {
        Self::at(Path::new("/"))
    }

    /// A tree laid out like `/` (with `sys/` and `dev/`) at `root`.
    pub(crate) fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Whether kernel module `name` (as in /sys/module, e.g. `nvme_tcp`) is loaded.
    pub(super) fn module_loaded(&self, name: &str) -> bool {
        self.root.join("sys/module").join(name).exists()
    }

    /// The controllers of subsystem `subnqn`, by instance number.
    pub(crate) fn controllers(&self, subnqn: &str) -> Result<Vec<String>, NvmeError> {
        let class = self.root.join("sys/class/nvme");
        let mut found = Vec::new();
        for name in list_dir(&class)? {
            let Some(instance) = controller_instance(&name) else {
                continue;
            };
            let nqn = read_attr(&class.join(&name).join("subsysnqn"))?;
            if nqn.as_deref() == Some(subnqn) {
                found.push((instance, name));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, name)| name).collect())
    }

    /// A controller's `state` (live, connecting, deleting, ...), for messages.
    pub(crate) fn controller_state(&self, controller: &str) -> String {
        match read_attr(
            &self
                .root
                .join("sys/class/nvme")
                .join(controller)
                .join("state"),
        ) {
            Ok(Some(state)) => state,
            Ok(None) => "gone".to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// The namespaces `controller` holds, as block devices.
    pub(super) fn controller_namespaces(
        &self,
        controller: &str,
    ) -> Result<NamespaceStatus, NvmeError> {
        let mut status = NamespaceStatus {
            ready: Vec::new(),
            pending: Vec::new(),
        };
        for disk in self.disks_of(controller)? {
            match self.namespace(&disk)? {
                Ok(ns) => status.ready.push(ns),
                Err(why) => status.pending.push((disk, why)),
            }
        }
        Ok(status)
    }

    /// The controllers and usable namespaces of `subnqn`; `None` without controllers.
    pub(crate) fn connection(&self, subnqn: &str) -> Result<Option<Connection>, NvmeError> {
        let controllers = self.controllers(subnqn)?;
        if controllers.is_empty() {
            return Ok(None);
        }
        let mut disks = BTreeSet::new();
        for controller in &controllers {
            disks.extend(self.disks_of(controller)?);
        }
        let mut namespaces = Vec::new();
        for disk in disks {
            if let Ok(ns) = self.namespace(&disk)? {
                namespaces.push(ns);
            }
        }
        namespaces.sort_by(|a, b| (a.nsid, &a.device).cmp(&(b.nsid, &b.device)));
        Ok(Some(Connection {
            subnqn: subnqn.to_string(),
            controllers,
            namespaces,
        }))
    }

    /// The I/Os the namespaces of `controller` completed through it: reads
    /// plus writes of each disk it holds, summed. A disk that goes meanwhile
    /// counts nothing.
    pub(crate) fn completed_ios(&self, controller: &str) -> Result<u64, NvmeError> {
        let dir = self.root.join("sys/class/nvme").join(controller);
        let mut count = 0;
        for entry in list_dir(&dir)? {
            if block_device_of(&entry).is_none() {
                continue;
            }
            if let Ok(stat) = std::fs::read_to_string(dir.join(&entry).join("stat")) {
                count += completed(&stat);
            }
        }
        Ok(count)
    }

    /// Names of the block devices of the namespaces a controller holds.
    fn disks_of(&self, controller: &str) -> Result<BTreeSet<String>, NvmeError> {
        let dir = self.root.join("sys/class/nvme").join(controller);
        Ok(list_dir(&dir)?
            .iter()
            .filter_map(|entry| block_device_of(entry))
            .collect())
    }

    /// The namespace behind block device `disk`, or why it is not usable yet.
    fn namespace(&self, disk: &str) -> Result<Result<Namespace, &'static str>, NvmeError> {
        let dir = self.root.join("sys/class/block").join(disk);
        let Some(sectors) = parse_attr::<u64>(&dir.join("size"), "a number of sectors")? else {
            return Ok(Err("no block device yet"));
        };
        if sectors == 0 {
            return Ok(Err("size is 0 so far"));
        }
        if !self.root.join("dev").join(disk).exists() {
            return Ok(Err("no /dev node yet"));
        }
        let block_size = parse_attr::<u32>(&dir.join("queue/logical_block_size"), "a block size")?;
        let nsid = parse_attr::<u32>(&dir.join("nsid"), "a namespace id")?;
        let (Some(block_size), Some(nsid)) = (block_size, nsid) else {
            return Ok(Err("attributes not there yet"));
        };
        Ok(Ok(Namespace {
            device: Path::new("/dev").join(disk),
            nsid,
            size_bytes: sectors.saturating_mul(512),
            block_size,
            uuid: parse_attr::<uuid::Uuid>(&dir.join("uuid"), "a UUID")?,
            nguid: read_attr(&dir.join("nguid"))?,
        }))
    }
}

/// Whether `name` names a controller (`nvme<c>`).
pub(super) fn is_controller_name(name: &str) -> bool {
    controller_instance(name).is_some()
}

/// `nvme<c>` → `c`; `None` for anything else (`nvme0n1`, `nvme-fabrics`).
fn controller_instance(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("nvme")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The block device a program opens for a controller's entry:
/// `nvme<s>c<c>n<i>` → `nvme<s>n<i>`, `nvme<c>n<i>` → itself, others → `None`.
fn block_device_of(entry: &str) -> Option<String> {
    let rest = entry.strip_prefix("nvme")?;
    let numbers: Vec<&str> = rest.split(['c', 'n']).collect();
    let all_digits = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !numbers.iter().all(all_digits) {
        return None;
    }
    let separators: String = rest.chars().filter(|c| !c.is_ascii_digit()).collect();
    match (separators.as_str(), numbers.as_slice()) {
        ("n", [_, _]) => Some(entry.to_string()),
        ("cn", [subsys, _, ns]) => Some(format!("nvme{subsys}n{ns}")),
        _ => None,
    }
}

/// Completed reads plus completed writes of a block `stat` line.
fn completed(stat: &str) -> u64 {
    let fields: Vec<u64> = stat
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    fields.first().copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0)
}

/// Entry names of a directory; empty when it does not exist (anymore).
fn list_dir(dir: &Path) -> Result<Vec<String>, NvmeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(NvmeError::Sysfs {
                path: dir.to_path_buf(),
                error,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| NvmeError::Sysfs {
            path: dir.to_path_buf(),
            error,
        })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A sysfs attribute, trimmed; `None` when absent (not set, or the device
/// went away meanwhile).
fn read_attr(path: &Path) -> Result<Option<String>, NvmeError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(NvmeError::Sysfs {
            path: path.to_path_buf(),
            error,
        }),
    }
}

fn parse_attr<T: FromStr>(path: &Path, expected: &'static str) -> Result<Option<T>, NvmeError> {
    let Some(content) = read_attr(path)? else {
        return Ok(None);
    };
    content
        .parse()
        .map(Some)
        .map_err(|_| NvmeError::SysfsContent {
            path: path.to_path_buf(),
            content,
            expected,
        })
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeSysfs, NQN};
    use super::*;

    const UUID: &str = "5e1e6d9e-0000-4000-8000-000000000001";

    #[test]
    fn names_map_to_the_block_device() {
        assert_eq!(block_device_of("nvme0c1n1").as_deref(), Some("nvme0n1"));
        assert_eq!(block_device_of("nvme2n13").as_deref(), Some("nvme2n13"));
        for other in [
            "nvme0",
            "nvme0c1",
            "nvmen1",
            "nvme0n",
            "nvme0n1p1",
            "hwmon1",
            "nvme-subsys0",
        ] {
            assert_eq!(block_device_of(other), None, "{other}");
        }
        assert_eq!(controller_instance("nvme12"), Some(12));
        assert_eq!(controller_instance("nvme0n1"), None);
        assert_eq!(controller_instance("nvme-fabrics"), None);
    }

    #[test]
    fn nothing_connected_is_none() {
        let tree = FakeSysfs::new();
        assert_eq!(tree.sysfs().connection(NQN).unwrap(), None);
        tree.controller("nvme0", "nqn.other");
        assert_eq!(tree.sysfs().connection(NQN).unwrap(), None);
    }

    // Multipath on: two paths (controllers nvme0, nvme1) of subsystem 0,
    // each holding a hidden per-path disk; one block device nvme0n1.
    #[test]
    fn multipath_paths_share_one_block_device() {
        let tree = FakeSysfs::new();
        tree.controller("nvme1", NQN);
        tree.controller("nvme0", NQN);
        tree.controller("nvme2", "nqn.2014-08.org.nvmexpress.discovery");
        tree.entry("nvme0", "nvme0c0n1");
        tree.entry("nvme1", "nvme0c1n1");
        tree.disk("nvme0n1", 1_048_576, Some(UUID));
        tree.file("sys/class/block/nvme0n1/nguid", UUID);

        let conn = tree.sysfs().connection(NQN).unwrap().unwrap();
        assert_eq!(conn.controllers, ["nvme0", "nvme1"]);
        assert_eq!(
            conn.namespaces,
            [Namespace {
                device: "/dev/nvme0n1".into(),
                nsid: 1,
                size_bytes: 512 * 1024 * 1024,
                block_size: 512,
                uuid: Some(UUID.parse().unwrap()),
                nguid: Some(UUID.to_string()),
            }]
        );
        assert!(tree
            .sysfs()
            .controller_namespaces("nvme1")
            .unwrap()
            .is_ready());
    }

    // Multipath off: the block device hangs off the controller and is named after it.
    #[test]
    fn without_multipath_the_controller_holds_the_block_device() {
        let tree = FakeSysfs::new();
        tree.controller("nvme3", NQN);
        tree.entry("nvme3", "nvme3n1");
        // The generic char device sits beside it and is not a block device.
        tree.entry("nvme3", "ng3n1");
        tree.disk("nvme3n1", 2048, None);
        let conn = tree.sysfs().connection(NQN).unwrap().unwrap();
        assert_eq!(conn.controllers, ["nvme3"]);
        assert_eq!(conn.namespaces[0].device, PathBuf::from("/dev/nvme3n1"));
        assert_eq!(conn.namespaces[0].size_bytes, 1024 * 1024);
        assert_eq!(conn.namespaces[0].uuid, None);
        assert_eq!(conn.namespaces[0].nguid, None);
    }

    #[test]
    fn a_namespace_is_pending_until_it_has_a_size_and_a_dev_node() {
        let tree = FakeSysfs::new();
        tree.controller("nvme0", NQN);
        let sys = tree.sysfs();
        let status = sys.controller_namespaces("nvme0").unwrap();
        assert!(!status.is_ready());
        assert_eq!(status.describe(), "none");

        tree.entry("nvme0", "nvme0c0n1");
        let status = sys.controller_namespaces("nvme0").unwrap();
        assert!(!status.is_ready());
        assert_eq!(status.describe(), "nvme0n1 (no block device yet)");

        tree.file("sys/class/block/nvme0n1/size", "0");
        assert_eq!(
            sys.controller_namespaces("nvme0").unwrap().describe(),
            "nvme0n1 (size is 0 so far)"
        );
        tree.disk("nvme0n1", 8, None);
        tree.remove("dev/nvme0n1");
        assert_eq!(
            sys.controller_namespaces("nvme0").unwrap().describe(),
            "nvme0n1 (no /dev node yet)"
        );
        assert!(sys.connection(NQN).unwrap().unwrap().namespaces.is_empty());
        tree.file("dev/nvme0n1", "");
        let status = sys.controller_namespaces("nvme0").unwrap();
        assert!(status.is_ready());
        assert_eq!(status.describe(), "/dev/nvme0n1 (ready)");
    }

    #[test]
    fn garbage_in_an_attribute_is_an_error_naming_the_file() {
        let tree = FakeSysfs::new();
        tree.controller("nvme0", NQN);
        tree.entry("nvme0", "nvme0n1");
        tree.disk("nvme0n1", 8, Some("not-a-uuid"));
        let err = tree.sysfs().connection(NQN).unwrap_err().to_string();
        assert!(
            err.contains("nvme0n1/uuid") && err.contains("not-a-uuid"),
            "{err}"
        );
    }

    #[test]
    fn completed_ios_sum_the_disks_of_the_controller() {
        let tree = FakeSysfs::new();
        tree.controller("nvme0", NQN);
        tree.stat("nvme0", "nvme0c0n1", 10, 5);
        tree.stat("nvme0", "nvme0c0n2", 1, 2);
        // The generic char device is no disk: its counters do not count.
        tree.stat("nvme0", "ng0n1", 100, 100);
        assert_eq!(tree.sysfs().completed_ios("nvme0").unwrap(), 18);
        assert_eq!(tree.sysfs().completed_ios("nvme9").unwrap(), 0);
        assert_eq!(completed("garbage"), 0);
    }

    #[test]
    fn state_and_modules_are_read() {
        let tree = FakeSysfs::new();
        tree.controller("nvme0", NQN);
        let sys = tree.sysfs();
        assert_eq!(sys.controller_state("nvme0"), "live");
        assert_eq!(sys.controller_state("nvme9"), "gone");
        assert!(!sys.module_loaded("nvme_tcp"));
    }
}
