//! What a nexus is made of in the kernel: an md RAID1 array (made with
//! mdadm, watched and steered through md's sysfs) over block devices, some
//! of them NVMe/TCP namespaces the agent connects to as a host (nvme-cli).
//!
//! md's sysfs (`Documentation/admin-guide/md.rst`) is the truth for each
//! member: `dev-<name>/state` (`in_sync`, `spare`, `faulty`),
//! `dev-<name>/recovery_start` (sectors recovered), and for the array
//! `sync_action` (`frozen` holds recovery back, `idle` lets it run) and
//! `raid_disks` (which raid1 grows and shrinks in place).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::cmd::{Cmd, CmdError};
use crate::nvme::sysfs::Sysfs;

/// The name mdadm writes into the superblock of every array the agent
/// makes (shown as `<host>:nvmfcheck`): how a starting agent knows its own.
pub const MD_NAME: &str = "nvmfcheck";

/// Deadline of one mdadm run.
const MDADM_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of one nvme-cli run.
const NVME_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a new connection's namespace may take to appear.
const NAMESPACE_WAIT: Duration = Duration::from_secs(10);
/// Seconds a remote child's controller may stay lost before the host gives
/// it up and its I/O fails, so that md faults the child instead of the
/// nexus's I/O waiting (nvme-cli's `--ctrl-loss-tmo`; nvme-cli 2.3 has no
/// `--fast_io_fail_tmo`). With a reconnect every second that is two
/// attempts; each attempt to an unreachable address takes its own connect
/// timeout (about 4 s measured under TCG), so the child is faulted about
/// 15 s after its link goes down, keep-alive included.
pub const CTRL_LOSS_TMO: u32 = 2;

/// Where md's sysfs tree of block devices is.
const SYS_BLOCK: &str = "/sys/block";

/// A member's state in its array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Holds the array's data.
    InSync,
    /// Added but not (yet) recovered.
    Spare,
    /// md stopped using it after an I/O error, or was told to.
    Faulty,
}

/// One member of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its kernel name, e.g. `dm-3` or `nvme1n1`.
    pub kname: String,
    /// Its state.
    pub state: MemberState,
    /// Sectors recovered onto it, while it is being recovered.
    pub recovered: Option<u64>,
}

/// An array as md's sysfs has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayStatus {
    /// Slots (`raid_disks`).
    pub raid_disks: u32,
    /// `sync_action`: `idle`, `recover`, `frozen`, ...
    pub sync_action: String,
    /// Sectors of each member the array uses.
    pub component_sectors: u64,
    /// Its members.
    pub members: Vec<Member>,
}

impl ArrayStatus {
    /// The member that is `device` (a `/dev/<kname>` path), if any.
    pub fn member(&self, device: &Path) -> Option<&Member> {
        let kname = device.file_name()?.to_str()?;
        self.members.iter().find(|m| m.kname == kname)
    }
}

/// An NVMe/TCP subsystem to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Its IPv4 address.
    pub traddr: String,
    /// Its TCP port.
    pub trsvcid: u16,
    /// Its NQN.
    pub subnqn: String,
}

/// A kernel operation of a nexus failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A tool failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// md's or NVMe's sysfs could not be read or written.
    #[error("{op} {}: {error}", .path.display())]
    Sysfs {
        /// `read`, `write "frozen" to`, ...
        op: String,
        /// The attribute.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Something the kernel said made no sense, or never came.
    #[error("{0}")]
    Other(String),
}

/// The kernel parts of nexuses; [`KernelNexus`] drives the real ones.
pub trait NexusKernel: Send + Sync + 'static {
    /// The arrays the agent made ([`MD_NAME`]): uuid and `/dev/mdN`.
    fn arrays(&self) -> Result<Vec<(Uuid, PathBuf)>, KernelError>;
    /// Makes a RAID1 array with uuid `uuid` using `size_kib` of each of
    /// `devices`, all taken as in sync; returns its device.
    fn create(
        &self,
        uuid: Uuid,
        size_kib: u64,
        devices: &[PathBuf],
    ) -> Result<PathBuf, KernelError>;
    /// What md's sysfs says of `array`.
    fn status(&self, array: &Path) -> Result<ArrayStatus, KernelError>;
    /// Stops `array` (its members keep their superblocks).
    fn stop(&self, array: &Path) -> Result<(), KernelError>;
    /// Adds `device` to `array` as a new spare (its old md superblock, if
    /// any, wiped first).
    fn add(&self, array: &Path, device: &Path) -> Result<(), KernelError>;
    /// Writes `value` to md attribute `attr` of `array` (`sync_action`,
    /// `raid_disks`, `sync_speed_max`).
    fn set(&self, array: &Path, attr: &str, value: &str) -> Result<(), KernelError>;
    /// Writes `value` to the `state` of member `kname` (`faulty`, `remove`).
    fn set_member(&self, array: &Path, kname: &str, value: &str) -> Result<(), KernelError>;
    /// Block device `device` by its kernel name (`/dev/dm-3` for
    /// `/dev/pool/replica`), as md names its members.
    fn resolve(&self, device: &Path) -> Result<PathBuf, KernelError>;
    /// The size of block device `device` in bytes.
    fn size(&self, device: &Path) -> Result<u64, KernelError>;
    /// Connects to `remote` as `hostnqn` (or finds the connection made
    /// earlier); returns its namespace's block device.
    fn connect(&self, remote: &Remote, hostnqn: &str) -> Result<PathBuf, KernelError>;
    /// Disconnects every controller of subsystem `subnqn`.
    fn disconnect(&self, subnqn: &str) -> Result<(), KernelError>;
    /// The subsystems this host is connected to as `hostnqn`.
    fn connected(&self, hostnqn: &str) -> Result<Vec<String>, KernelError>;
}

/// The real kernel: mdadm, md's sysfs, nvme-cli.
pub struct KernelNexus;

fn md_dir(array: &Path) -> PathBuf {
    let kname = array.file_name().unwrap_or_default();
    Path::new(SYS_BLOCK).join(kname).join("md")
}

fn read_attr(path: &Path) -> Result<String, KernelError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|error| KernelError::Sysfs {
            op: "read".into(),
            path: path.to_path_buf(),
            error,
        })
}

fn write_attr(path: &Path, value: &str) -> Result<(), KernelError> {
    std::fs::write(path, value).map_err(|error| KernelError::Sysfs {
        op: format!("write {value:?} to"),
        path: path.to_path_buf(),
        error,
    })
}

fn mdadm() -> Cmd {
    Cmd::new("mdadm").timeout(MDADM_TIMEOUT)
}

/// The member state md's `dev-*/state` list stands for.
pub fn member_state(flags: &str) -> MemberState {
    let has = |f: &str| flags.split(',').any(|x| x.trim() == f);
    if has("faulty") {
        MemberState::Faulty
    } else if has("in_sync") {
        MemberState::InSync
    } else {
        MemberState::Spare
    }
}

/// The value of `key` in `mdadm --detail --export`'s output.
pub fn export_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

impl NexusKernel for KernelNexus {
    fn arrays(&self) -> Result<Vec<(Uuid, PathBuf)>, KernelError> {
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(SYS_BLOCK) {
            Ok(e) => e,
            Err(error) => {
                return Err(KernelError::Sysfs {
                    op: "list".into(),
                    path: SYS_BLOCK.into(),
                    error,
                })
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("md") || !entry.path().join("md").exists() {
                continue;
            }
            let device = Path::new("/dev").join(&name);
            let out = mdadm()
                .args(["--detail", "--export"])
                .arg(&device)
                .run_blocking()?;
            let ours = export_value(&out.stdout, "MD_NAME")
                .is_some_and(|n| n.rsplit(':').next() == Some(MD_NAME));
            let uuid = read_attr(&entry.path().join("md/uuid"))
                .ok()
                .and_then(|u| Uuid::parse_str(&u).ok());
            if let (true, Some(uuid)) = (ours, uuid) {
                found.push((uuid, device));
            }
        }
        Ok(found)
    }

    fn create(
        &self,
        uuid: Uuid,
        size_kib: u64,
        devices: &[PathBuf],
    ) -> Result<PathBuf, KernelError> {
        let used: Vec<String> = std::fs::read_dir(SYS_BLOCK)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        // High minors, clear of what a distribution's tools number from 0
        // or 127 down.
        let array = (200..1000)
            .map(|n| format!("md{n}"))
            .find(|n| !used.contains(n))
            .map(|n| Path::new("/dev").join(n))
            .ok_or_else(|| KernelError::Other("no free md device number".into()))?;
        for device in devices {
            wipe(device)?;
        }
        // Metadata 1.0 sits at the end of each member, so a replica's data
        // starts at its first byte, as the nexus's does; the internal
        // bitmap makes a child that comes back resync only what changed.
        let mut cmd = mdadm()
            .arg("--create")
            .arg(&array)
            .args([
                "--run",
                "--quiet",
                "--level=1",
                "--metadata=1.0",
                "--bitmap=internal",
                "--assume-clean",
                "--homehost=any",
            ])
            .arg(format!("--name={MD_NAME}"))
            .arg(format!("--uuid={uuid}"))
            .arg(format!("--size={size_kib}"))
            .arg(format!("--raid-devices={}", devices.len()));
        if devices.len() == 1 {
            // mdadm asks for --force to make a one-way mirror.
            cmd = cmd.arg("--force");
        }
        cmd.args(devices).run_blocking()?;
        Ok(array)
    }

    fn status(&self, array: &Path) -> Result<ArrayStatus, KernelError> {
        let dir = md_dir(array);
        let number = |attr: &str| -> Result<u64, KernelError> {
            let v = read_attr(&dir.join(attr))?;
            v.parse().map_err(|_| {
                KernelError::Other(format!(
                    "md attribute {attr} of {} is {v:?}",
                    array.display()
                ))
            })
        };
        let mut members = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|error| KernelError::Sysfs {
            op: "list".into(),
            path: dir.clone(),
            error,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(kname) = name.strip_prefix("dev-") else {
                continue;
            };
            let state = member_state(&read_attr(&entry.path().join("state"))?);
            let recovered = read_attr(&entry.path().join("recovery_start"))
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|_| state == MemberState::Spare);
            members.push(Member {
                kname: kname.to_string(),
                state,
                recovered,
            });
        }
        members.sort_by(|a, b| a.kname.cmp(&b.kname));
        Ok(ArrayStatus {
            raid_disks: u32::try_from(number("raid_disks")?).unwrap_or(u32::MAX),
            sync_action: read_attr(&dir.join("sync_action"))?,
            component_sectors: number("component_size")? * 2,
            members,
        })
    }

    fn stop(&self, array: &Path) -> Result<(), KernelError> {
        mdadm().arg("--stop").arg(array).run_blocking()?;
        Ok(())
    }

    fn add(&self, array: &Path, device: &Path) -> Result<(), KernelError> {
        wipe(device)?;
        mdadm().arg(array).arg("--add").arg(device).run_blocking()?;
        Ok(())
    }

    fn set(&self, array: &Path, attr: &str, value: &str) -> Result<(), KernelError> {
        write_attr(&md_dir(array).join(attr), value)
    }

    fn set_member(&self, array: &Path, kname: &str, value: &str) -> Result<(), KernelError> {
        write_attr(
            &md_dir(array).join(format!("dev-{kname}")).join("state"),
            value,
        )
    }

    fn resolve(&self, device: &Path) -> Result<PathBuf, KernelError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        // Without udev, LVM makes /dev/mapper nodes rather than links to
        // /dev/dm-N: the device number is what names the device.
        let meta = std::fs::metadata(device).map_err(|error| KernelError::Sysfs {
            op: "stat".into(),
            path: device.to_path_buf(),
            error,
        })?;
        if !meta.file_type().is_block_device() {
            return Err(KernelError::Other(format!(
                "{} is not a block device",
                device.display()
            )));
        }
        let rdev = meta.rdev();
        let node = Path::new("/sys/dev/block").join(format!(
            "{}:{}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        ));
        let target = std::fs::read_link(&node).map_err(|error| KernelError::Sysfs {
            op: "readlink".into(),
            path: node.clone(),
            error,
        })?;
        let kname = target
            .file_name()
            .ok_or_else(|| KernelError::Other(format!("{} names no device", node.display())))?;
        Ok(Path::new("/dev").join(kname))
    }

    fn size(&self, device: &Path) -> Result<u64, KernelError> {
        let kname = device.file_name().unwrap_or_default();
        let sectors = read_attr(&Path::new("/sys/class/block").join(kname).join("size"))?;
        sectors
            .parse::<u64>()
            .map(|s| s * 512)
            .map_err(|_| KernelError::Other(format!("{} has size {sectors:?}", device.display())))
    }

    fn connect(&self, remote: &Remote, hostnqn: &str) -> Result<PathBuf, KernelError> {
        let sys = Sysfs::host();
        if let Some(device) = namespace(&sys, &remote.subnqn)? {
            return Ok(device);
        }
        Cmd::new("nvme")
            .args(["connect", "-t", "tcp", "-a", &remote.traddr, "-s"])
            .arg(remote.trsvcid.to_string())
            .args(["-n", &remote.subnqn, "-q", hostnqn])
            .arg(format!("--ctrl-loss-tmo={CTRL_LOSS_TMO}"))
            .arg("--reconnect-delay=1")
            .timeout(NVME_TIMEOUT)
            .run_blocking()?;
        let deadline = Instant::now() + NAMESPACE_WAIT;
        loop {
            if let Some(device) = namespace(&sys, &remote.subnqn)? {
                return Ok(device);
            }
            if Instant::now() >= deadline {
                // Leave nothing behind: a connection without a namespace
                // serves no child.
                let _ = self.disconnect(&remote.subnqn);
                return Err(KernelError::Other(format!(
                    "connected to {}, but no namespace appeared within {}s",
                    remote.subnqn,
                    NAMESPACE_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn disconnect(&self, subnqn: &str) -> Result<(), KernelError> {
        Cmd::new("nvme")
            .args(["disconnect", "-n", subnqn])
            .timeout(NVME_TIMEOUT)
            .run_blocking()?;
        Ok(())
    }

    fn connected(&self, hostnqn: &str) -> Result<Vec<String>, KernelError> {
        let dir = Path::new("/sys/class/nvme");
        let mut subsystems = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            // No NVMe host driver loaded: nothing is connected.
            return Ok(subsystems);
        };
        for entry in entries.flatten() {
            let attr = |a: &str| read_attr(&entry.path().join(a)).unwrap_or_default();
            let subnqn = attr("subsysnqn");
            if attr("hostnqn") == hostnqn && !subsystems.contains(&subnqn) {
                subsystems.push(subnqn);
            }
        }
        Ok(subsystems)
    }
}

/// The block device of the first namespace of the connection to `subnqn`.
fn namespace(sys: &Sysfs, subnqn: &str) -> Result<Option<PathBuf>, KernelError> {
    let connection = sys
        .connection(subnqn)
        .map_err(|e| KernelError::Other(e.to_string()))?;
    Ok(connection.and_then(|c| c.namespaces.first().map(|n| n.device.clone())))
}

/// Wipes any md superblock `device` holds, so that mdadm takes it as new.
fn wipe(device: &Path) -> Result<(), KernelError> {
    mdadm()
        .args(["--zero-superblock", "--force"])
        .arg(device)
        .run_blocking()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_states_follow_mds_flags() {
        assert_eq!(member_state("in_sync"), MemberState::InSync);
        assert_eq!(member_state("in_sync,write_mostly"), MemberState::InSync);
        assert_eq!(member_state("spare"), MemberState::Spare);
        assert_eq!(member_state("faulty,in_sync"), MemberState::Faulty);
        assert_eq!(member_state("faulty"), MemberState::Faulty);
    }

    #[test]
    fn reads_mdadm_export() {
        let text =
            "MD_LEVEL=raid1\nMD_UUID=6a8d52b4:6f3b4c1e:9e1a0123:456789ab\nMD_NAME=any:nvmfcheck\n";
        assert_eq!(export_value(text, "MD_NAME"), Some("any:nvmfcheck"));
        assert_eq!(export_value(text, "MD_NAMEX"), None);
        assert_eq!(export_value(text, "MD_LEVEL"), Some("raid1"));
    }
}
