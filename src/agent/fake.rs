//! An in-memory model of the kernel target's configfs tree, for tests of
//! code that drives it (the agent's own tests and any client test that wants
//! an agent without a kernel). The real path is tested by running the agent
//! against the kernel in a VM; this model only stands in beneath that.
//!
//! Modelled after `drivers/nvme/target/configfs.c` (Linux 6.1):
//! - `mkdir` in `subsystems/`, `subsystems/<nqn>/namespaces/`, `ports/`,
//!   `hosts/` and `ports/<id>/referrals/` creates the object with its
//!   attribute files and default groups; elsewhere it is `EPERM`. Port
//!   names must be a `u16`, namespace ids a `u32` other than 0 and
//!   0xffffffff, and the discovery NQN cannot be created (`EINVAL`).
//! - `rmdir` removes the object with its attributes and default groups, but
//!   is `ENOTEMPTY` while it holds user-made directories or symlinks, and
//!   `EPERM` on default groups. This model is stricter than the kernel in
//!   one way: it refuses (`EBUSY`) to remove a subsystem still linked to a
//!   port (or a host still allowed by a subsystem, below), so code that
//!   tears down in the wrong order fails here.
//! - A symlink in `ports/<id>/subsystems/` must point at a subsystem; the
//!   first one enables the port, which needs its address set (`EINVAL`) and
//!   free (`EADDRINUSE`); removing the last disables it.
//! - Host access (`nvmet_allowed_hosts_allow_link` and
//!   `nvmet_subsys_attr_allow_any_host_store`): a new subsystem has
//!   `attr_allow_any_host` 0. A symlink in `subsystems/<nqn>/allowed_hosts/`
//!   must point at a host in `hosts/` (`EINVAL` otherwise), fails with
//!   `EINVAL` while `attr_allow_any_host` is 1 and with `EEXIST` when that
//!   host is linked there already (under any name). Writing 1 to
//!   `attr_allow_any_host` fails with `EINVAL` while `allowed_hosts` holds a
//!   link. A host directory has no attributes here (the kernel's has the
//!   DH-HMAC-CHAP ones when built with authentication).
//! - The model refuses (`EBUSY`) to remove any directory a symlink points
//!   at, a host as well as a subsystem; the kernel lets such a `rmdir`
//!   through (the link keeps the object alive), so code that removes things
//!   still in use fails here rather than passing unnoticed.
//! - Namespace `device_path`, `device_uuid` and `device_nguid` are `EBUSY`
//!   while enabled (`buffered_io` is `EINVAL`); `enable=1` fails with
//!   `ENOENT` unless `device_path` names an existing file. Port `addr_*`
//!   attributes are `EACCES` while the port is enabled.
//!
//! Failures can be injected: [`FakeConfigfs::fail_nth_mutation`] and
//! [`FakeConfigfs::fail_next_write`]; and a kernel stuck in a write:
//! [`FakeConfigfs::block_next_write`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;

use super::configfs::Configfs;
pub use super::loopdev::FakeLoops;
pub use super::nexus::fake::FakeNexusKernel;
pub use super::pools::fake::FakeLvm;

/// The in-memory configfs tree. See the module documentation.
#[derive(Debug)]
pub struct FakeConfigfs {
    tree: Mutex<Tree>,
}

#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
    /// Host entries lack the DH-HMAC-CHAP attributes, as on a kernel
    /// without `CONFIG_NVME_TARGET_AUTH` (Debian 12's 6.1).
    no_host_auth: bool,
    mutations: usize,
    fail_nth: Option<(usize, Errno)>,
    fail_write: Option<(String, Errno)>,
    block_write: Option<(String, Arc<Gate>)>,
}

/// Where a blocked write waits ([`FakeConfigfs::block_next_write`]).
#[derive(Debug, Default)]
struct Gate {
    /// Whether the write has arrived, and whether it may go on.
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    fn state(&self) -> MutexGuard<'_, (bool, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pass(&self) {
        let mut state = self.state();
        state.0 = true;
        while !state.1 {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A write held by [`FakeConfigfs::block_next_write`]; dropping this lets
/// it go on.
#[derive(Debug)]
pub struct Blocked(Arc<Gate>);

impl Blocked {
    /// Whether the write has arrived (and waits).
    pub fn reached(&self) -> bool {
        self.0.state().0
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.0.state().1 = true;
        self.0.changed.notify_all();
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir(Kind),
    Attr(String),
    Link(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fixed,
    Subsystems,
    Subsystem,
    Namespaces,
    Namespace,
    AllowedHosts,
    Ports,
    Port,
    PortSubsystems,
    Referrals,
    Referral,
    Hosts,
    Host,
}

impl Kind {
    /// Made by `mkdir` (so removable by `rmdir`), as opposed to a default group.
    fn user_made(self) -> bool {
        matches!(
            self,
            Kind::Subsystem | Kind::Namespace | Kind::Port | Kind::Referral | Kind::Host
        )
    }
}

const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

fn err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Default for FakeConfigfs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeConfigfs {
    /// An empty target: `subsystems/`, `ports/` and `hosts/` only.
    pub fn new() -> Self {
        let mut tree = Tree::default();
        tree.nodes.insert(PathBuf::new(), Node::Dir(Kind::Fixed));
        tree.add_dir("subsystems", Kind::Subsystems);
        tree.add_dir("ports", Kind::Ports);
        tree.add_dir("hosts", Kind::Hosts);
        tree.add_attr("discovery_nqn", DISCOVERY_NQN);
        Self {
            tree: Mutex::new(tree),
        }
    }

    /// [`FakeConfigfs::new`] of a kernel whose target cannot authenticate
    /// hosts: host entries have no `dhchap_*` attributes.
    pub fn without_host_auth() -> Self {
        let fs = Self::new();
        fs.lock().no_host_auth = true;
        fs
    }

    fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the `n`-th mutating call from now (0 = the next one; `mkdir`,
    /// `rmdir`, `write`, `symlink`, `unlink`) fail with `errno`, once.
    pub fn fail_nth_mutation(&self, n: usize, errno: Errno) {
        self.lock().fail_nth = Some((n, errno));
    }

    /// Makes the next write to an attribute named `attr` fail with `errno`, once.
    pub fn fail_next_write(&self, attr: &str, errno: Errno) {
        self.lock().fail_write = Some((attr.to_string(), errno));
    }

    /// Makes the next write to an attribute named `attr` block, as a write
    /// the kernel never completes, until the returned [`Blocked`] is
    /// dropped; it then goes on as usual. Other calls are not held up.
    pub fn block_next_write(&self, attr: &str) -> Blocked {
        let gate = Arc::new(Gate::default());
        self.lock().block_write = Some((attr.to_string(), Arc::clone(&gate)));
        Blocked(gate)
    }

    /// How many mutating calls were made so far (failed ones included).
    pub fn mutations(&self) -> usize {
        self.lock().mutations
    }

    /// The whole tree as text, one `path = value` line per entry, for
    /// comparing states in tests.
    pub fn dump(&self) -> String {
        let tree = self.lock();
        let mut out = String::new();
        for (path, node) in &tree.nodes {
            let line = match node {
                Node::Dir(_) => format!("{}/\n", path.display()),
                Node::Attr(v) => format!("{} = {v}\n", path.display()),
                Node::Link(t) => format!("{} -> {}\n", path.display(), t.display()),
            };
            out.push_str(&line);
        }
        out
    }
}

impl Tree {
    fn add_dir(&mut self, path: impl Into<PathBuf>, kind: Kind) {
        self.nodes.insert(path.into(), Node::Dir(kind));
    }

    fn add_attr(&mut self, path: impl AsRef<Path>, value: &str) {
        self.nodes
            .insert(path.as_ref().to_path_buf(), Node::Attr(value.to_string()));
    }

    fn attrs(&mut self, dir: &Path, attrs: &[(&str, &str)]) {
        for (name, value) in attrs {
            self.add_attr(dir.join(name), value);
        }
    }

    fn kind(&self, path: &Path) -> Option<Kind> {
        match self.nodes.get(path) {
            Some(Node::Dir(k)) => Some(*k),
            _ => None,
        }
    }

    fn attr(&self, path: &Path) -> Option<&str> {
        match self.nodes.get(path) {
            Some(Node::Attr(v)) => Some(v),
            _ => None,
        }
    }

    /// Counts a mutation and applies an injected failure.
    fn mutate(&mut self) -> io::Result<()> {
        self.mutations += 1;
        match self.fail_nth {
            Some((0, e)) => {
                self.fail_nth = None;
                Err(err(e))
            }
            Some((n, e)) => {
                self.fail_nth = Some((n - 1, e));
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn children<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = (&'a PathBuf, &'a Node)> + 'a {
        self.nodes
            .iter()
            .filter(move |(p, _)| p.parent() == Some(dir) && p.as_path() != dir)
    }

    fn below<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = (&'a PathBuf, &'a Node)> + 'a {
        self.nodes
            .iter()
            .filter(move |(p, _)| p.starts_with(dir) && p.as_path() != dir)
    }

    fn port_enabled(&self, port: &Path) -> bool {
        self.children(&port.join("subsystems"))
            .any(|(_, n)| matches!(n, Node::Link(_)))
    }

    fn ns_enabled(&self, ns: &Path) -> bool {
        self.attr(&ns.join("enable")) == Some("1")
    }

    fn populate(&mut self, path: &Path, kind: Kind) {
        self.add_dir(path, kind);
        match kind {
            Kind::Subsystem => {
                self.attrs(
                    path,
                    &[
                        ("attr_allow_any_host", "0"),
                        ("attr_version", "1.3"),
                        ("attr_serial", "8f1e2d3c4b5a6978"),
                        ("attr_cntlid_min", "1"),
                        ("attr_cntlid_max", "65519"),
                        ("attr_model", "Linux"),
                        ("attr_qid_max", "128"),
                    ],
                );
                self.add_dir(path.join("namespaces"), Kind::Namespaces);
                self.add_dir(path.join("allowed_hosts"), Kind::AllowedHosts);
                self.add_dir(path.join("passthru"), Kind::Fixed);
                self.attrs(
                    &path.join("passthru"),
                    &[("device_path", ""), ("enable", "0")],
                );
            }
            Kind::Namespace => self.attrs(
                path,
                &[
                    ("device_path", "(null)"),
                    ("device_nguid", ZERO_UUID),
                    ("device_uuid", ZERO_UUID),
                    ("ana_grpid", "1"),
                    ("enable", "0"),
                    ("buffered_io", "0"),
                ],
            ),
            Kind::Port | Kind::Referral => {
                self.attrs(
                    path,
                    &[
                        ("addr_adrfam", ""),
                        ("addr_treq", "not specified"),
                        ("addr_traddr", ""),
                        ("addr_trsvcid", ""),
                        ("addr_trtype", ""),
                    ],
                );
                if kind == Kind::Port {
                    self.add_attr(path.join("param_inline_data_size"), "-1");
                    self.add_dir(path.join("subsystems"), Kind::PortSubsystems);
                    self.add_dir(path.join("referrals"), Kind::Referrals);
                    self.add_dir(path.join("ana_groups"), Kind::Fixed);
                    self.add_dir(path.join("ana_groups/1"), Kind::Fixed);
                    self.add_attr(path.join("ana_groups/1/ana_state"), "optimized");
                } else {
                    self.add_attr(path.join("enable"), "0");
                }
            }
            Kind::Host if !self.no_host_auth => self.attrs(
                path,
                &[
                    ("dhchap_key", ""),
                    ("dhchap_ctrl_key", ""),
                    ("dhchap_hash", "hmac(sha256)"),
                    ("dhchap_dhgroup", "null"),
                ],
            ),
            _ => {}
        }
    }

    fn enable_port(&self, port: &Path) -> io::Result<()> {
        let get = |a: &str| self.attr(&port.join(a)).unwrap_or_default().to_string();
        let (trtype, adrfam, traddr, trsvcid) = (
            get("addr_trtype"),
            get("addr_adrfam"),
            get("addr_traddr"),
            get("addr_trsvcid"),
        );
        if trtype != "tcp" || adrfam.is_empty() || traddr.is_empty() || trsvcid.is_empty() {
            return Err(err(Errno::EINVAL));
        }
        let ports: Vec<PathBuf> = self
            .children(Path::new("ports"))
            .map(|(p, _)| p.clone())
            .collect();
        for other in ports.iter().filter(|p| p.as_path() != port) {
            if !self.port_enabled(other) {
                continue;
            }
            let o = |a: &str| self.attr(&other.join(a)).unwrap_or_default().to_string();
            let overlaps =
                o("addr_traddr") == traddr || o("addr_traddr") == "0.0.0.0" || traddr == "0.0.0.0";
            if o("addr_trtype") == trtype && o("addr_trsvcid") == trsvcid && overlaps {
                return Err(err(Errno::EADDRINUSE));
            }
        }
        Ok(())
    }

    fn write_attr(&mut self, path: &Path, value: &str) -> io::Result<()> {
        let Some(Node::Attr(_)) = self.nodes.get(path) else {
            return Err(err(if self.nodes.contains_key(path) {
                Errno::EISDIR
            } else {
                Errno::ENOENT
            }));
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some((attr, e)) = self.fail_write.take() {
            if attr == name {
                return Err(err(e));
            }
            self.fail_write = Some((attr, e));
        }
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let line = value.split('\n').next().unwrap_or_default();
        let stored = match (self.kind(&dir), name.as_str()) {
            (Some(Kind::Namespace), "device_path") => {
                if self.ns_enabled(&dir) {
                    return Err(err(Errno::EBUSY));
                }
                if line.is_empty() {
                    return Err(err(Errno::EINVAL));
                }
                line.to_string()
            }
            (Some(Kind::Namespace), "device_uuid" | "device_nguid") => {
                if self.ns_enabled(&dir) {
                    return Err(err(Errno::EBUSY));
                }
                uuid::Uuid::parse_str(line.trim())
                    .map_err(|_| err(Errno::EINVAL))?
                    .hyphenated()
                    .to_string()
            }
            (Some(Kind::Namespace), "buffered_io") => {
                if self.ns_enabled(&dir) {
                    return Err(err(Errno::EINVAL));
                }
                bool_str(line)?
            }
            (Some(Kind::Namespace), "enable") => {
                let on = bool_str(line)?;
                if on == "1" && !self.ns_enabled(&dir) {
                    let device = self.attr(&dir.join("device_path")).unwrap_or_default();
                    if device == "(null)" || !Path::new(device).exists() {
                        return Err(err(Errno::ENOENT));
                    }
                }
                on
            }
            (Some(Kind::Port), attr) if attr.starts_with("addr_") => {
                if self.port_enabled(&dir) {
                    return Err(err(Errno::EACCES));
                }
                let word = line.split_whitespace().next().unwrap_or_default();
                let valid = match attr {
                    "addr_trtype" => ["rdma", "fc", "tcp", "loop", "pci"].contains(&word),
                    "addr_adrfam" => ["ipv4", "ipv6", "ib", "fc", "loop", "pci"].contains(&word),
                    _ => !word.is_empty(),
                };
                if !valid {
                    return Err(err(Errno::EINVAL));
                }
                word.to_string()
            }
            // The kernel parses `DHHC-1:<hash>:...`; anything else, an empty
            // value included (a key cannot be cleared), fails (EIO, as
            // measured on 6.12).
            (Some(Kind::Host), "dhchap_key" | "dhchap_ctrl_key") => {
                if !line.starts_with("DHHC-1:") {
                    return Err(err(Errno::EIO));
                }
                line.to_string()
            }
            (Some(Kind::Subsystem), "attr_allow_any_host") => {
                let on = bool_str(line)?;
                let has_hosts = self
                    .children(&dir.join("allowed_hosts"))
                    .any(|(_, n)| matches!(n, Node::Link(_)));
                if on == "1" && has_hosts {
                    return Err(err(Errno::EINVAL));
                }
                on
            }
            _ => line.to_string(),
        };
        self.nodes.insert(path.to_path_buf(), Node::Attr(stored));
        Ok(())
    }
}

/// The kernel's `kstrtobool`, printed back as `0`/`1`.
fn bool_str(s: &str) -> io::Result<String> {
    match s.trim().chars().next() {
        Some('1' | 'y' | 'Y') => Ok("1".into()),
        Some('0' | 'n' | 'N') => Ok("0".into()),
        _ => match s.trim().to_ascii_lowercase().as_str() {
            "on" => Ok("1".into()),
            "off" => Ok("0".into()),
            _ => Err(err(Errno::EINVAL)),
        },
    }
}

impl Configfs for FakeConfigfs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        let mut tree = self.lock();
        tree.mutate()?;
        let parent = path.parent().ok_or_else(|| err(Errno::EEXIST))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(parent_kind) = tree.kind(parent) else {
            return Err(err(Errno::ENOENT));
        };
        if tree.nodes.contains_key(path) {
            return Err(err(Errno::EEXIST));
        }
        let kind = match parent_kind {
            Kind::Subsystems if name == DISCOVERY_NQN => return Err(err(Errno::EINVAL)),
            Kind::Subsystems => Kind::Subsystem,
            Kind::Namespaces => match name.parse::<u32>() {
                Ok(0 | u32::MAX) | Err(_) => return Err(err(Errno::EINVAL)),
                Ok(_) => Kind::Namespace,
            },
            Kind::Ports => match name.parse::<u16>() {
                Ok(_) => Kind::Port,
                Err(_) => return Err(err(Errno::EINVAL)),
            },
            Kind::Referrals => Kind::Referral,
            Kind::Hosts => Kind::Host,
            _ => return Err(err(Errno::EPERM)),
        };
        tree.populate(path, kind);
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        let mut tree = self.lock();
        tree.mutate()?;
        let kind = match tree.nodes.get(path) {
            Some(Node::Dir(k)) => *k,
            Some(_) => return Err(err(Errno::ENOTDIR)),
            None => return Err(err(Errno::ENOENT)),
        };
        if !kind.user_made() {
            return Err(err(Errno::EPERM));
        }
        let busy_inside = tree.below(path).any(|(_, n)| match n {
            Node::Link(_) => true,
            Node::Dir(k) => k.user_made(),
            Node::Attr(_) => false,
        });
        if busy_inside {
            return Err(err(Errno::ENOTEMPTY));
        }
        if tree
            .nodes
            .values()
            .any(|n| matches!(n, Node::Link(t) if t == path))
        {
            return Err(err(Errno::EBUSY));
        }
        tree.nodes.retain(|p, _| !(p.starts_with(path)));
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        let tree = self.lock();
        match tree.nodes.get(path) {
            Some(Node::Attr(v)) => Ok(format!("{v}\n")),
            Some(_) => Err(err(Errno::EISDIR)),
            None => Err(err(Errno::ENOENT)),
        }
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // Waits without the tree's lock, so that the rest of the model
        // (and the test reading it) goes on.
        let gate = {
            let mut tree = self.lock();
            match tree.block_write.take() {
                Some((attr, gate)) if path.file_name() == Some(attr.as_ref()) => Some(gate),
                other => {
                    tree.block_write = other;
                    None
                }
            }
        };
        if let Some(gate) = gate {
            gate.pass();
        }
        let mut tree = self.lock();
        tree.mutate()?;
        tree.write_attr(path, value)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        let mut tree = self.lock();
        tree.mutate()?;
        let parent = link.parent().unwrap_or(Path::new(""));
        let (wanted, holder) = match tree.kind(parent) {
            None => return Err(err(Errno::ENOENT)),
            Some(Kind::PortSubsystems) => (Kind::Subsystem, Kind::Port),
            Some(Kind::AllowedHosts) => (Kind::Host, Kind::Subsystem),
            Some(_) => return Err(err(Errno::EPERM)),
        };
        if tree.nodes.contains_key(link) {
            return Err(err(Errno::EEXIST));
        }
        match tree.kind(target) {
            None => return Err(err(Errno::ENOENT)),
            Some(k) if k == wanted => {}
            Some(_) => return Err(err(Errno::EINVAL)),
        }
        // The port or subsystem that holds the link.
        let owner = parent.parent().unwrap_or(Path::new("")).to_path_buf();
        if holder == Kind::Subsystem && tree.attr(&owner.join("attr_allow_any_host")) == Some("1") {
            return Err(err(Errno::EINVAL));
        }
        let already = tree
            .children(parent)
            .any(|(_, n)| matches!(n, Node::Link(t) if t == target));
        if already {
            return Err(err(Errno::EEXIST));
        }
        if holder == Kind::Port && !tree.port_enabled(&owner) {
            tree.enable_port(&owner)?;
        }
        tree.nodes
            .insert(link.to_path_buf(), Node::Link(target.to_path_buf()));
        Ok(())
    }

    fn unlink(&self, link: &Path) -> io::Result<()> {
        let mut tree = self.lock();
        tree.mutate()?;
        match tree.nodes.get(link) {
            Some(Node::Link(_)) => {
                tree.nodes.remove(link);
                Ok(())
            }
            Some(Node::Dir(_)) => Err(err(Errno::EISDIR)),
            Some(Node::Attr(_)) => Err(err(Errno::EPERM)),
            None => Err(err(Errno::ENOENT)),
        }
    }

    fn read_link(&self, link: &Path) -> io::Result<PathBuf> {
        match self.lock().nodes.get(link) {
            Some(Node::Link(target)) => Ok(target.clone()),
            Some(_) => Err(err(Errno::EINVAL)),
            None => Err(err(Errno::ENOENT)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let tree = self.lock();
        match tree.nodes.get(dir) {
            Some(Node::Dir(_)) => Ok(tree
                .children(dir)
                .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect()),
            Some(_) => Err(err(Errno::ENOTDIR)),
            None => Err(err(Errno::ENOENT)),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().nodes.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn mkdir_populates_and_rmdir_clears() {
        let fs = FakeConfigfs::new();
        let before = fs.dump();
        fs.mkdir(p("subsystems/nqn.x")).unwrap();
        assert_eq!(
            fs.read(p("subsystems/nqn.x/attr_allow_any_host")).unwrap(),
            "0\n"
        );
        assert!(fs.exists(p("subsystems/nqn.x/namespaces")));
        fs.mkdir(p("subsystems/nqn.x/namespaces/1")).unwrap();
        assert_eq!(
            fs.read(p("subsystems/nqn.x/namespaces/1/enable")).unwrap(),
            "0\n"
        );
        let e = fs.rmdir(p("subsystems/nqn.x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::ENOTEMPTY as i32));
        assert_eq!(
            fs.rmdir(p("subsystems/nqn.x/namespaces"))
                .unwrap_err()
                .raw_os_error(),
            Some(Errno::EPERM as i32)
        );
        fs.rmdir(p("subsystems/nqn.x/namespaces/1")).unwrap();
        fs.rmdir(p("subsystems/nqn.x")).unwrap();
        assert_eq!(fs.dump(), before);
    }

    #[test]
    fn names_are_checked_like_the_kernel() {
        let fs = FakeConfigfs::new();
        let code = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        assert_eq!(code(fs.mkdir(p("ports/x"))), Some(Errno::EINVAL as i32));
        assert_eq!(code(fs.mkdir(p("ports/70000"))), Some(Errno::EINVAL as i32));
        assert_eq!(
            code(fs.mkdir(p(&format!("subsystems/{DISCOVERY_NQN}")))),
            Some(Errno::EINVAL as i32)
        );
        fs.mkdir(p("subsystems/s")).unwrap();
        assert_eq!(
            code(fs.mkdir(p("subsystems/s/namespaces/0"))),
            Some(Errno::EINVAL as i32)
        );
        assert_eq!(
            code(fs.mkdir(p("subsystems/s/attr_model/x"))),
            Some(Errno::ENOENT as i32)
        );
        assert_eq!(
            code(fs.mkdir(p("subsystems/s/allowed_hosts/x"))),
            Some(Errno::EPERM as i32)
        );
        assert_eq!(
            code(fs.mkdir(p("subsystems/s"))),
            Some(Errno::EEXIST as i32)
        );
    }

    #[test]
    fn namespace_enable_needs_a_device_and_locks_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("disk");
        std::fs::write(&dev, [0u8; 4096]).unwrap();
        let fs = FakeConfigfs::new();
        fs.mkdir(p("subsystems/s")).unwrap();
        fs.mkdir(p("subsystems/s/namespaces/1")).unwrap();
        let ns = p("subsystems/s/namespaces/1");
        let code = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        assert_eq!(
            code(fs.write(&ns.join("enable"), "1")),
            Some(Errno::ENOENT as i32)
        );
        assert_eq!(
            code(fs.write(&ns.join("device_uuid"), "nope")),
            Some(Errno::EINVAL as i32)
        );
        fs.write(&ns.join("device_path"), dev.to_str().unwrap())
            .unwrap();
        fs.write(&ns.join("enable"), "1").unwrap();
        assert_eq!(
            code(fs.write(&ns.join("device_path"), "/x")),
            Some(Errno::EBUSY as i32)
        );
        assert_eq!(
            code(fs.write(&ns.join("buffered_io"), "1")),
            Some(Errno::EINVAL as i32)
        );
        fs.write(&ns.join("enable"), "0").unwrap();
        fs.write(&ns.join("buffered_io"), "1").unwrap();
    }

    #[test]
    fn links_enable_ports_and_pin_subsystems() {
        let fs = FakeConfigfs::new();
        fs.mkdir(p("subsystems/s")).unwrap();
        fs.mkdir(p("ports/1")).unwrap();
        let code = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        // An unconfigured port cannot be enabled.
        assert_eq!(
            code(fs.symlink(p("subsystems/s"), p("ports/1/subsystems/s"))),
            Some(Errno::EINVAL as i32)
        );
        for (a, v) in [
            ("trtype", "tcp"),
            ("adrfam", "ipv4"),
            ("traddr", "10.0.0.1"),
            ("trsvcid", "8430"),
        ] {
            fs.write(&Path::new("ports/1").join(format!("addr_{a}")), v)
                .unwrap();
        }
        fs.symlink(p("subsystems/s"), p("ports/1/subsystems/s"))
            .unwrap();
        assert_eq!(
            code(fs.write(p("ports/1/addr_trsvcid"), "1")),
            Some(Errno::EACCES as i32)
        );
        assert_eq!(code(fs.rmdir(p("subsystems/s"))), Some(Errno::EBUSY as i32));
        assert_eq!(code(fs.rmdir(p("ports/1"))), Some(Errno::ENOTEMPTY as i32));
        // A second port on the same address cannot be enabled.
        fs.mkdir(p("ports/2")).unwrap();
        for (a, v) in [
            ("trtype", "tcp"),
            ("adrfam", "ipv4"),
            ("traddr", "0.0.0.0"),
            ("trsvcid", "8430"),
        ] {
            fs.write(&Path::new("ports/2").join(format!("addr_{a}")), v)
                .unwrap();
        }
        assert_eq!(
            code(fs.symlink(p("subsystems/s"), p("ports/2/subsystems/s"))),
            Some(Errno::EADDRINUSE as i32)
        );
        fs.unlink(p("ports/1/subsystems/s")).unwrap();
        fs.write(p("ports/1/addr_trsvcid"), "8431").unwrap();
        fs.rmdir(p("subsystems/s")).unwrap();
        fs.rmdir(p("ports/1")).unwrap();
    }

    #[test]
    fn host_links_follow_the_allow_any_host_rules() {
        let fs = FakeConfigfs::new();
        let code = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        fs.mkdir(p("subsystems/s")).unwrap();
        fs.mkdir(p("hosts/nqn.h1")).unwrap();
        let link = p("subsystems/s/allowed_hosts/nqn.h1");
        // Only hosts may be linked.
        assert_eq!(
            code(fs.symlink(p("subsystems/s"), link)),
            Some(Errno::EINVAL as i32)
        );
        assert_eq!(
            code(fs.symlink(p("hosts/nqn.nope"), link)),
            Some(Errno::ENOENT as i32)
        );
        // Not while any host is allowed.
        fs.write(p("subsystems/s/attr_allow_any_host"), "1")
            .unwrap();
        assert_eq!(
            code(fs.symlink(p("hosts/nqn.h1"), link)),
            Some(Errno::EINVAL as i32)
        );
        fs.write(p("subsystems/s/attr_allow_any_host"), "0")
            .unwrap();
        fs.symlink(p("hosts/nqn.h1"), link).unwrap();
        assert_eq!(fs.read_link(link).unwrap(), p("hosts/nqn.h1"));
        // The same host twice, under another name.
        assert_eq!(
            code(fs.symlink(p("hosts/nqn.h1"), p("subsystems/s/allowed_hosts/x"))),
            Some(Errno::EEXIST as i32)
        );
        // Any host cannot be allowed while hosts are listed.
        assert_eq!(
            code(fs.write(p("subsystems/s/attr_allow_any_host"), "1")),
            Some(Errno::EINVAL as i32)
        );
        assert_eq!(code(fs.rmdir(p("hosts/nqn.h1"))), Some(Errno::EBUSY as i32));
        assert_eq!(
            code(fs.rmdir(p("subsystems/s"))),
            Some(Errno::ENOTEMPTY as i32)
        );
        fs.unlink(link).unwrap();
        fs.write(p("subsystems/s/attr_allow_any_host"), "1")
            .unwrap();
        fs.rmdir(p("hosts/nqn.h1")).unwrap();
        fs.rmdir(p("subsystems/s")).unwrap();
        assert_eq!(fs.dump(), FakeConfigfs::new().dump());
    }

    #[test]
    fn injected_failures_fire_once() {
        let fs = FakeConfigfs::new();
        fs.fail_nth_mutation(1, Errno::EIO);
        fs.mkdir(p("subsystems/a")).unwrap();
        assert_eq!(
            fs.mkdir(p("subsystems/b")).unwrap_err().raw_os_error(),
            Some(Errno::EIO as i32)
        );
        fs.mkdir(p("subsystems/b")).unwrap();
        fs.fail_next_write("attr_model", Errno::EINVAL);
        fs.write(p("subsystems/a/attr_allow_any_host"), "1")
            .unwrap();
        assert!(fs.write(p("subsystems/a/attr_model"), "m").is_err());
        fs.write(p("subsystems/a/attr_model"), "m").unwrap();
        assert_eq!(fs.mutations(), 6);
    }

    #[test]
    fn a_blocked_write_waits_until_released() {
        let fs = std::sync::Arc::new(FakeConfigfs::new());
        fs.mkdir(p("subsystems/a")).unwrap();
        let blocked = fs.block_next_write("attr_model");
        fs.write(p("subsystems/a/attr_allow_any_host"), "1")
            .unwrap();
        let writer = {
            let fs = std::sync::Arc::clone(&fs);
            std::thread::spawn(move || fs.write(p("subsystems/a/attr_model"), "m"))
        };
        while !blocked.reached() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!writer.is_finished());
        // The rest of the model goes on meanwhile.
        assert_eq!(fs.read(p("subsystems/a/attr_model")).unwrap(), "Linux\n");
        fs.mkdir(p("subsystems/b")).unwrap();
        drop(blocked);
        writer.join().unwrap().unwrap();
        assert_eq!(fs.read(p("subsystems/a/attr_model")).unwrap(), "m\n");
        // Once only.
        fs.write(p("subsystems/a/attr_model"), "n").unwrap();
    }
}
