//! Sharing bdevs through the kernel NVMe target (nvmet) configfs tree.
//!
//! A share of a bdev with uuid `U` is:
//! - subsystem `subsystems/nqn.2019-05.io.openebs:U` that admits either any
//!   host (`attr_allow_any_host=1`) or only the hosts it lists
//!   (`attr_allow_any_host=0` and a symlink `allowed_hosts/<hostnqn>` to
//!   `hosts/<hostnqn>` for each; see [`HostAccess`]);
//! - namespace `namespaces/1` with `device_path`, `device_uuid` and
//!   `device_nguid` (both the bdev uuid, so the initiator sees the same
//!   identity whichever it reads), `buffered_io` for RAM files, `enable=1`;
//! - two TCP/IPv4 ports on the agent's address, the I/O port (8430) and the
//!   discovery port (8420), each with a symlink to the subsystem in its
//!   `subsystems/`.
//!
//! Why the subsystem is linked to the discovery port rather than named by a
//! referral: the log page a host reads from a port lists exactly the
//! subsystems linked to that port plus that port's referrals
//! (`nvmet_execute_disc_get_log_page` in `discovery.c`), and a port only
//! listens while at least one subsystem is linked to it (`nvmet_enable_port`
//! runs on the first link in `configfs.c`). A referral-only port 8420 would
//! not even accept connections, and a referral entry names a discovery
//! controller, not the NQN. Linking to both ports makes 8420 list the NQN
//! and gives the host two paths to the subsystem (native NVMe multipath).
//!
//! The kernel orders the host steps: a new subsystem admits no host
//! (`attr_allow_any_host` 0); a host cannot be linked while
//! `attr_allow_any_host` is 1, nor can it be set to 1 while a host is
//! linked (both `EINVAL`). So restricting writes 0 first, then adds the
//! missing links, then removes the links of hosts no longer listed (a host
//! that stays listed is never locked out on the way); opening up removes
//! every link, then writes 1. The kernel checks a host when it connects, so
//! a change of hosts governs new connections: a controller already
//! connected stays when its host is no longer listed
//! (`nvmet_allowed_hosts_drop_link` only updates the list and the discovery
//! log). The host directories in `hosts/` are not
//! removed here: another tool may have made them (with DH-HMAC-CHAP keys,
//! say), so the caller removes those it made, with
//! [`Nvmet::remove_host_if_unused`].
//!
//! Every step is an "ensure" (done only if missing), so sharing twice is a
//! no-op and a share left half-done by a crash is completed; on failure the
//! steps this call made are undone in reverse (attribute writes included),
//! so a failed share changes nothing. Unshare unlinks the subsystem from
//! every port, disables and removes its namespaces, removes its
//! `allowed_hosts` links, removes it, then removes the ports it left without
//! subsystems or referrals; it is idempotent, so a failed unshare is
//! finished by retrying it.
//!
//! Every configfs operation is logged at debug level (`RUST_LOG=debug`).

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, warn};
use uuid::Uuid;

use super::configfs::Configfs;

/// Prefix of the NQN of a shared bdev (Mayastor's); the bdev uuid follows.
pub const NQN_PREFIX: &str = "nqn.2019-05.io.openebs:";

/// The longest NQN, in bytes (the kernel's `NVMF_NQN_SIZE`; a connecting
/// host's NQN is compared with the host directories' names up to it).
pub const MAX_NQN_LEN: usize = 223;

/// The NQN under which bdev `uuid` is shared.
pub fn nqn(uuid: Uuid) -> String {
    format!("{NQN_PREFIX}{}", uuid.hyphenated())
}

/// What follows [`NQN_PREFIX`] in a published nexus's NQN, before its
/// uuid: Mayastor names a nexus `nexus-<uuid>` and its subsystem after
/// that, so that a nexus and a replica of one volume (which share the
/// volume's uuid) have distinct NQNs.
pub const NEXUS_PREFIX: &str = "nexus-";

/// The NQN under which nexus `uuid` is published.
pub fn nexus_nqn(uuid: Uuid) -> String {
    format!("{NQN_PREFIX}{NEXUS_PREFIX}{}", uuid.hyphenated())
}

/// What a subsystem exports, which names it and picks its I/O port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bdev or replica: [`nqn`], on the I/O port.
    Bdev,
    /// A nexus: [`nexus_nqn`], on the nexus port.
    Nexus,
}

impl Kind {
    /// The NQN of the subsystem of this kind for `uuid`.
    pub fn nqn(self, uuid: Uuid) -> String {
        match self {
            Kind::Bdev => nqn(uuid),
            Kind::Nexus => nexus_nqn(uuid),
        }
    }
}

/// Where shares are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// IPv4 address of both ports (and of share URIs).
    pub address: Ipv4Addr,
    /// Port serving I/O, in share URIs.
    pub io_port: u16,
    /// Port serving published nexuses (the I/O port unless told
    /// otherwise).
    pub nexus_port: u16,
    /// Port a host asks for the discovery log.
    pub discovery_port: u16,
}

/// Which hosts a share admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAccess<'a> {
    /// Leave `attr_allow_any_host` and `allowed_hosts/` as configfs has
    /// them: completing a share on start must not widen who may connect.
    /// (A subsystem this creates then admits no host.)
    AsIs,
    /// Any host: no `allowed_hosts` links and `attr_allow_any_host` 1.
    Any,
    /// Only these host NQNs (checked, distinct, at least one):
    /// `attr_allow_any_host` 0 and a link to `hosts/<nqn>` for each, the
    /// host directory made if missing.
    Only(&'a [String]),
}

impl<'a> HostAccess<'a> {
    /// What `BdevShareRequest.allowed_hosts` means: any host when empty,
    /// otherwise only those.
    pub fn from_list(hosts: &'a [String]) -> Self {
        if hosts.is_empty() {
            HostAccess::Any
        } else {
            HostAccess::Only(hosts)
        }
    }
}

/// Which hosts a subsystem admits, as configfs has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `attr_allow_any_host` is 1.
    Any,
    /// Only the hosts linked in `allowed_hosts/`, sorted; none means that
    /// no host may connect.
    Only(Vec<String>),
}

/// What to export.
#[derive(Debug, Clone, Copy)]
pub struct Export<'a> {
    /// A bdev's or a nexus's subsystem.
    pub kind: Kind,
    /// The uuid: NQN, namespace uuid and nguid.
    pub uuid: Uuid,
    /// Block device or file.
    pub device: &'a Path,
    /// Use the page cache (for tmpfs files, which refuse `O_DIRECT`).
    pub buffered_io: bool,
    /// Which hosts may connect.
    pub hosts: HostAccess<'a>,
}

/// A subsystem of ours found in configfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundShare {
    /// The uuid in its NQN.
    pub uuid: Uuid,
    /// `device_path` of namespace 1, if set.
    pub device: Option<PathBuf>,
}

/// A configfs operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NvmetError {
    /// One operation on one path.
    #[error("configfs {op} of nvmet/{} failed: {cause}{hint}", .path.display())]
    Op {
        /// `mkdir`, `write 1 to`, `symlink`, ...
        op: String,
        /// Relative to the nvmet directory.
        path: PathBuf,
        /// The kernel's errno.
        cause: io::Error,
        /// What probably went wrong, starting with "; " (or empty).
        hint: &'static str,
    },
    /// The subsystem exists and exports something else.
    #[error("subsystem {nqn} already exports {found}, not {}; unshare the bdev and share it again", .wanted.display())]
    OtherDevice {
        /// The subsystem.
        nqn: String,
        /// Its namespace's device.
        found: String,
        /// The bdev's device.
        wanted: PathBuf,
    },
    /// No port id is free.
    #[error("configfs has no free nvmet port id (all 65535 are used)")]
    NoPortId,
    /// A share failed and undoing it failed too.
    #[error("{cause}; undoing the partial share also failed, which left configfs with {leftover}: retry Unshare, or put them right by hand")]
    Incomplete {
        /// The first failure.
        cause: Box<NvmetError>,
        /// What could not be undone.
        leftover: String,
    },
}

fn hint_for(op: &str, path: &Path, e: &io::Error) -> &'static str {
    let code = e.raw_os_error().map(nix::errno::Errno::from_raw);
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let in_dir = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    match (op, code) {
        (_, Some(nix::errno::Errno::EADDRINUSE)) => {
            "; another nvmet port or program already listens on that address and port"
        }
        ("symlink", _) if in_dir == "allowed_hosts" => "; the kernel refused to admit the host (is attr_allow_any_host 1, or the host linked already under another name?): `dmesg` has nvmet's reason",
        ("symlink", _) => "; the port could not be enabled: is the nvmet-tcp module loaded? `dmesg` has the kernel's reason",
        (_, _) if file == "attr_allow_any_host" => "; is a host linked in allowed_hosts while any host is to be allowed? `dmesg` has nvmet's reason",
        (_, _) if file == "enable" => "; the kernel could not open the device: `dmesg` has nvmet's reason",
        ("mkdir", Some(nix::errno::Errno::ENOENT)) => "; is the nvmet module loaded and configfs mounted?",
        _ => "; `dmesg` may have the kernel's reason",
    }
}

enum Undo {
    Rmdir(PathBuf),
    Disable(PathBuf),
    Unlink(PathBuf),
    /// Puts back a link this share removed.
    Relink {
        target: PathBuf,
        link: PathBuf,
    },
    /// Writes back the value an attribute had.
    Write {
        path: PathBuf,
        old: String,
    },
}

/// A link in a subsystem's `allowed_hosts/`.
struct HostLink {
    /// The link.
    link: PathBuf,
    /// The host it points at (the name of its directory in `hosts/`).
    host: String,
}

/// The kernel target, driven through a [`Configfs`].
#[derive(Clone)]
pub struct Nvmet {
    fs: Arc<dyn Configfs>,
    listener: Listener,
}

impl Nvmet {
    /// Shares on `listener`'s ports through `fs`.
    pub fn new(fs: Arc<dyn Configfs>, listener: Listener) -> Self {
        Self { fs, listener }
    }

    /// The URI a host connects to for bdev `uuid`.
    pub fn share_uri(&self, uuid: Uuid) -> String {
        self.uri(Kind::Bdev, uuid)
    }

    /// The URI a host connects to for the subsystem of `kind` and `uuid`.
    pub fn uri(&self, kind: Kind, uuid: Uuid) -> String {
        format!(
            "nvmf://{}:{}/{}",
            self.listener.address,
            self.io_port(kind),
            kind.nqn(uuid)
        )
    }

    fn io_port(&self, kind: Kind) -> u16 {
        match kind {
            Kind::Bdev => self.listener.io_port,
            Kind::Nexus => self.listener.nexus_port,
        }
    }

    /// Whether nexus `uuid` has a subsystem.
    pub fn is_nexus_shared(&self, uuid: Uuid) -> bool {
        self.fs.exists(&subsystem_dir(&nexus_nqn(uuid)))
    }

    /// Whether bdev `uuid` has a subsystem.
    pub fn is_shared(&self, uuid: Uuid) -> bool {
        self.fs.exists(&subsystem(uuid))
    }

    /// The device bdev `uuid`'s enabled namespace exports, if any.
    pub fn exported_device(&self, uuid: Uuid) -> Result<Option<PathBuf>, NvmetError> {
        let ns = subsystem(uuid).join("namespaces/1");
        if !self.fs.exists(&ns) || self.read(&ns.join("enable"))? != "1" {
            return Ok(None);
        }
        Ok(Some(PathBuf::from(self.read(&ns.join("device_path"))?)))
    }

    /// Shares bdev `export.uuid`, completing whatever part is missing.
    /// Returns whether anything changed. On failure nothing this call made
    /// is left behind.
    pub fn share(&self, export: &Export<'_>) -> Result<bool, NvmetError> {
        let mut undo = Vec::new();
        match self.share_steps(export, &mut undo) {
            Ok(()) => Ok(!undo.is_empty()),
            Err(e) => Err(self.roll_back(e, undo)),
        }
    }

    fn share_steps(&self, export: &Export<'_>, undo: &mut Vec<Undo>) -> Result<(), NvmetError> {
        let nqn = export.kind.nqn(export.uuid);
        let subsys = subsystem_dir(&nqn);
        if !self.fs.exists(&subsys) {
            self.mkdir(&subsys)?;
            undo.push(Undo::Rmdir(subsys.clone()));
        }
        // Before the namespace and the ports, so that a new subsystem
        // admits only the hosts asked for from the moment it serves.
        self.ensure_access(&subsys, export.hosts, undo)?;
        let ns = subsys.join("namespaces/1");
        if !self.fs.exists(&ns) {
            self.mkdir(&ns)?;
            undo.push(Undo::Rmdir(ns.clone()));
        }
        if self.read(&ns.join("enable"))? == "1" {
            let found = self.read(&ns.join("device_path"))?;
            if Path::new(&found) != export.device {
                return Err(NvmetError::OtherDevice {
                    nqn,
                    found,
                    wanted: export.device.to_path_buf(),
                });
            }
        } else {
            let id = export.uuid.hyphenated().to_string();
            self.write(&ns.join("device_path"), &export.device.to_string_lossy())?;
            self.write(&ns.join("device_uuid"), &id)?;
            self.write(&ns.join("device_nguid"), &id)?;
            self.write(
                &ns.join("buffered_io"),
                if export.buffered_io { "1" } else { "0" },
            )?;
            self.write(&ns.join("enable"), "1")?;
            undo.push(Undo::Disable(ns));
        }
        for svc in [self.io_port(export.kind), self.listener.discovery_port] {
            let port = self.ensure_port(svc, undo)?;
            let link = port.join("subsystems").join(&nqn);
            if !self.fs.exists(&link) {
                self.symlink(&subsys, &link)?;
                undo.push(Undo::Unlink(link));
            }
        }
        Ok(())
    }

    /// Makes the subsystem at `subsys` admit the hosts `access` says, in
    /// the order the kernel allows (see the module documentation).
    fn ensure_access(
        &self,
        subsys: &Path,
        access: HostAccess<'_>,
        undo: &mut Vec<Undo>,
    ) -> Result<(), NvmetError> {
        let any_host = subsys.join("attr_allow_any_host");
        match access {
            HostAccess::AsIs => {}
            HostAccess::Any => {
                for HostLink { link, host } in self.host_links(subsys)? {
                    self.unlink(&link)?;
                    undo.push(Undo::Relink {
                        target: host_dir(&host),
                        link,
                    });
                }
                self.set_attr(&any_host, "1", undo)?;
            }
            HostAccess::Only(hosts) => {
                self.set_attr(&any_host, "0", undo)?;
                let linked = self.host_links(subsys)?;
                for host in hosts {
                    if linked.iter().any(|l| &l.host == host) {
                        continue;
                    }
                    let target = host_dir(host);
                    if !self.fs.exists(&target) {
                        self.mkdir(&target)?;
                        undo.push(Undo::Rmdir(target.clone()));
                    }
                    let link = subsys.join("allowed_hosts").join(host);
                    self.symlink(&target, &link)?;
                    undo.push(Undo::Unlink(link));
                }
                for HostLink { link, host } in linked {
                    if !hosts.contains(&host) {
                        self.unlink(&link)?;
                        undo.push(Undo::Relink {
                            target: host_dir(&host),
                            link,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `value` to attribute `path` unless it holds that already.
    fn set_attr(&self, path: &Path, value: &str, undo: &mut Vec<Undo>) -> Result<(), NvmetError> {
        let old = self.read(path)?;
        if old != value {
            self.write(path, value)?;
            undo.push(Undo::Write {
                path: path.to_path_buf(),
                old,
            });
        }
        Ok(())
    }

    /// The links in `subsys`'s `allowed_hosts/`. The host is read from
    /// where each link points, since another tool may have named a link
    /// otherwise than its host.
    fn host_links(&self, subsys: &Path) -> Result<Vec<HostLink>, NvmetError> {
        let dir = subsys.join("allowed_hosts");
        let mut links = Vec::new();
        for name in self.list(&dir)? {
            let link = dir.join(&name);
            let target = self
                .fs
                .read_link(&link)
                .map_err(|e| failed("readlink", &link, e))?;
            let host = target
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(name);
            links.push(HostLink { link, host });
        }
        Ok(links)
    }

    /// Which hosts bdev `uuid`'s subsystem admits.
    pub fn access(&self, uuid: Uuid) -> Result<Access, NvmetError> {
        let subsys = subsystem(uuid);
        if self.read(&subsys.join("attr_allow_any_host"))? == "1" {
            return Ok(Access::Any);
        }
        let mut hosts: Vec<String> = self
            .host_links(&subsys)?
            .into_iter()
            .map(|l| l.host)
            .collect();
        hosts.sort();
        Ok(Access::Only(hosts))
    }

    /// Whether `hosts/<host>` exists.
    pub fn has_host(&self, host: &str) -> bool {
        self.fs.exists(&host_dir(host))
    }

    /// The host directories a share to `access` would make: the listed
    /// hosts that `hosts/` lacks now.
    pub fn hosts_to_make(&self, access: HostAccess<'_>) -> Vec<String> {
        match access {
            HostAccess::Only(hosts) => hosts
                .iter()
                .filter(|h| !self.has_host(h))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Makes `hosts/<host>`.
    pub fn make_host(&self, host: &str) -> Result<(), NvmetError> {
        self.mkdir(&host_dir(host))
    }

    /// Removes `hosts/<host>`, which no subsystem may admit.
    pub fn remove_host(&self, host: &str) -> Result<(), NvmetError> {
        self.rmdir(&host_dir(host))
    }

    /// Whether the kernel's target authenticates hosts (DH-HMAC-CHAP,
    /// `CONFIG_NVME_TARGET_AUTH`): its host entries then have
    /// `dhchap_key`. `hosts/<host>` must exist.
    pub fn host_auth(&self, host: &str) -> bool {
        self.fs.exists(&host_dir(host).join("dhchap_key"))
    }

    /// Writes `hosts/<host>/dhchap_key`, and `dhchap_ctrl_key` when given.
    /// Errors never show the keys: they are secrets.
    pub fn set_host_keys(
        &self,
        host: &str,
        key: &str,
        ctrl_key: Option<&str>,
    ) -> Result<(), NvmetError> {
        let dir = host_dir(host);
        let key_path = dir.join("dhchap_key");
        self.run("write a key to", &key_path, self.fs.write(&key_path, key))?;
        if let Some(ctrl) = ctrl_key {
            let path = dir.join("dhchap_ctrl_key");
            self.run("write a key to", &path, self.fs.write(&path, ctrl))?;
        }
        Ok(())
    }

    /// Whether a subsystem (any, not only ours) admits `host`.
    pub fn host_in_use(&self, host: &str) -> Result<bool, NvmetError> {
        for name in self.list(Path::new("subsystems"))? {
            let subsys = subsystem_dir(&name);
            if self.host_links(&subsys)?.iter().any(|l| l.host == host) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes `hosts/<host>` unless a subsystem (any, not only ours)
    /// admits it; returns whether it did. Call it only for host
    /// directories the agent made: another tool's may hold its keys.
    pub fn remove_host_if_unused(&self, host: &str) -> Result<bool, NvmetError> {
        let dir = host_dir(host);
        if !self.fs.exists(&dir) || self.host_in_use(host)? {
            return Ok(false);
        }
        self.rmdir(&dir)?;
        Ok(true)
    }

    /// Undoes `undo` in reverse; returns `first`, noting what stayed behind.
    fn roll_back(&self, first: NvmetError, undo: Vec<Undo>) -> NvmetError {
        let mut leftover = Vec::new();
        for step in undo.into_iter().rev() {
            let (result, left) = match step {
                Undo::Rmdir(p) => (self.rmdir(&p), format!("nvmet/{}", p.display())),
                Undo::Disable(p) => (
                    self.write(&p.join("enable"), "0"),
                    format!("nvmet/{} enabled", p.display()),
                ),
                Undo::Unlink(p) => (self.unlink(&p), format!("nvmet/{}", p.display())),
                Undo::Relink { target, link } => (
                    self.symlink(&target, &link),
                    format!(
                        "no link nvmet/{} (it pointed at nvmet/{})",
                        link.display(),
                        target.display()
                    ),
                ),
                Undo::Write { path, old } => {
                    let result = self.write(&path, &old);
                    (
                        result,
                        format!("nvmet/{} changed (it was {old})", path.display()),
                    )
                }
            };
            if let Err(e) = result {
                warn!("rolling back a failed share: {e}");
                leftover.push(left);
            }
        }
        if leftover.is_empty() {
            first
        } else {
            NvmetError::Incomplete {
                cause: Box::new(first),
                leftover: leftover.join(", "),
            }
        }
    }

    /// The port serving TCP `svc` on our address, if configfs has one.
    pub fn find_port(&self, svc: u16) -> Result<Option<PathBuf>, NvmetError> {
        for id in self.list(Path::new("ports"))? {
            let port = Path::new("ports").join(id);
            let attr = |a: &str| self.read(&port.join(a));
            if attr("addr_trtype")? == "tcp"
                && attr("addr_adrfam")? == "ipv4"
                && attr("addr_traddr")? == self.listener.address.to_string()
                && attr("addr_trsvcid")? == svc.to_string()
            {
                return Ok(Some(port));
            }
        }
        Ok(None)
    }

    /// The NQNs of the subsystems linked to `port` (a path `find_port` gave).
    pub fn port_subsystems(&self, port: &Path) -> Result<Vec<String>, NvmetError> {
        self.list(&port.join("subsystems"))
    }

    /// Unlinks subsystem `nqn` from `port`: the port stops serving it, and
    /// stops listening once no subsystem is left.
    pub fn unlink_subsystem(&self, port: &Path, nqn: &str) -> Result<(), NvmetError> {
        self.unlink(&port.join("subsystems").join(nqn))
    }

    /// Links subsystem `nqn` to `port` unless it is linked; returns false
    /// when the subsystem no longer exists.
    pub fn link_subsystem(&self, port: &Path, nqn: &str) -> Result<bool, NvmetError> {
        let subsys = subsystem_dir(nqn);
        if !self.fs.exists(&subsys) {
            return Ok(false);
        }
        let link = port.join("subsystems").join(nqn);
        if !self.fs.exists(&link) {
            self.symlink(&subsys, &link)?;
        }
        Ok(true)
    }

    /// Removes `port` if no subsystem or referral is left on it; returns
    /// whether it did.
    pub fn remove_port_if_unused(&self, port: &Path) -> Result<bool, NvmetError> {
        if !self.fs.exists(port)
            || !self.list(&port.join("subsystems"))?.is_empty()
            || !self.list(&port.join("referrals"))?.is_empty()
        {
            return Ok(false);
        }
        self.rmdir(port)?;
        Ok(true)
    }

    /// Removes the ports of our listener (I/O and discovery) that serve no
    /// subsystem; returns those it removed. [`Nvmet::unshare`] removes the
    /// ports it unlinks the subsystem from; this also finds those that an
    /// Unshare cut short had unlinked already.
    pub fn remove_unused_ports(&self) -> Result<Vec<PathBuf>, NvmetError> {
        let mut removed = Vec::new();
        let mut ports = vec![self.listener.io_port, self.listener.discovery_port];
        if !ports.contains(&self.listener.nexus_port) {
            ports.push(self.listener.nexus_port);
        }
        for svc in ports {
            if let Some(port) = self.find_port(svc)? {
                if self.remove_port_if_unused(&port)? {
                    removed.push(port);
                }
            }
        }
        Ok(removed)
    }

    /// The port serving TCP `svc` on our address, created if missing.
    fn ensure_port(&self, svc: u16, undo: &mut Vec<Undo>) -> Result<PathBuf, NvmetError> {
        if let Some(port) = self.find_port(svc)? {
            return Ok(port);
        }
        let ports = self.list(Path::new("ports"))?;
        let used: Vec<u16> = ports.iter().filter_map(|p| p.parse().ok()).collect();
        let id = (1..=u16::MAX)
            .find(|n| !used.contains(n))
            .ok_or(NvmetError::NoPortId)?;
        let port = Path::new("ports").join(id.to_string());
        self.mkdir(&port)?;
        undo.push(Undo::Rmdir(port.clone()));
        self.write(&port.join("addr_trtype"), "tcp")?;
        self.write(&port.join("addr_adrfam"), "ipv4")?;
        self.write(
            &port.join("addr_traddr"),
            &self.listener.address.to_string(),
        )?;
        self.write(&port.join("addr_trsvcid"), &svc.to_string())?;
        Ok(port)
    }

    /// Removes the share of bdev `uuid`; returns whether there was one.
    pub fn unshare(&self, uuid: Uuid) -> Result<bool, NvmetError> {
        self.remove_subsystem(&nqn(uuid))
    }

    /// Removes the subsystem of nexus `uuid`; returns whether there was one.
    pub fn unpublish(&self, uuid: Uuid) -> Result<bool, NvmetError> {
        self.remove_subsystem(&nexus_nqn(uuid))
    }

    /// The uuids of the nexuses whose subsystems configfs has.
    pub fn nexus_shares(&self) -> Result<Vec<Uuid>, NvmetError> {
        Ok(self
            .list(Path::new("subsystems"))?
            .iter()
            .filter_map(|name| name.strip_prefix(NQN_PREFIX)?.strip_prefix(NEXUS_PREFIX))
            .filter_map(|u| Uuid::parse_str(u).ok())
            .collect())
    }

    fn remove_subsystem(&self, nqn: &str) -> Result<bool, NvmetError> {
        let subsys = subsystem_dir(nqn);
        if !self.fs.exists(&subsys) {
            return Ok(false);
        }
        let mut touched = Vec::new();
        for id in self.list(Path::new("ports"))? {
            let port = Path::new("ports").join(id);
            let link = port.join("subsystems").join(nqn);
            if self.fs.exists(&link) {
                self.unlink(&link)?;
                touched.push(port);
            }
        }
        let namespaces = subsys.join("namespaces");
        for id in self.list(&namespaces)? {
            let ns = namespaces.join(id);
            if self.read(&ns.join("enable"))? == "1" {
                self.write(&ns.join("enable"), "0")?;
            }
            self.rmdir(&ns)?;
        }
        let hosts = subsys.join("allowed_hosts");
        for host in self.list(&hosts)? {
            self.unlink(&hosts.join(host))?;
        }
        self.rmdir(&subsys)?;
        for port in touched {
            self.remove_port_if_unused(&port)?;
        }
        Ok(true)
    }

    /// Our subsystems (those whose NQN has [`NQN_PREFIX`] and a uuid).
    pub fn scan(&self) -> Result<Vec<FoundShare>, NvmetError> {
        let mut found = Vec::new();
        for name in self.list(Path::new("subsystems"))? {
            let Some(uuid) = name
                .strip_prefix(NQN_PREFIX)
                .and_then(|u| Uuid::parse_str(u).ok())
            else {
                debug!("configfs subsystem {name} is not one of ours");
                continue;
            };
            let path = subsystem(uuid).join("namespaces/1/device_path");
            let device = if self.fs.exists(&path) {
                Some(self.read(&path)?)
                    .filter(|d| !d.is_empty() && d != "(null)")
                    .map(PathBuf::from)
            } else {
                None
            };
            found.push(FoundShare { uuid, device });
        }
        Ok(found)
    }

    fn run(&self, op: &str, path: &Path, result: io::Result<()>) -> Result<(), NvmetError> {
        result
            .map(|()| debug!("configfs {op} nvmet/{}", path.display()))
            .map_err(|e| failed(op, path, e))
    }

    fn mkdir(&self, path: &Path) -> Result<(), NvmetError> {
        self.run("mkdir", path, self.fs.mkdir(path))
    }

    fn rmdir(&self, path: &Path) -> Result<(), NvmetError> {
        self.run("rmdir", path, self.fs.rmdir(path))
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), NvmetError> {
        self.run(
            &format!("write {value:?} to"),
            path,
            self.fs.write(path, value),
        )
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), NvmetError> {
        let result = self.fs.symlink(target, link);
        self.run("symlink", link, result)
    }

    fn unlink(&self, link: &Path) -> Result<(), NvmetError> {
        self.run("unlink", link, self.fs.unlink(link))
    }

    fn read(&self, path: &Path) -> Result<String, NvmetError> {
        self.fs
            .read(path)
            .map(|v| v.trim_end_matches('\n').to_string())
            .map_err(|e| failed("read", path, e))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, NvmetError> {
        self.fs.list(dir).map_err(|e| failed("list", dir, e))
    }
}

fn failed(op: &str, path: &Path, cause: io::Error) -> NvmetError {
    debug!("configfs {op} nvmet/{} failed: {cause}", path.display());
    NvmetError::Op {
        hint: hint_for(op, path, &cause),
        op: op.to_string(),
        path: path.to_path_buf(),
        cause,
    }
}

fn subsystem(uuid: Uuid) -> PathBuf {
    subsystem_dir(&nqn(uuid))
}

/// The configfs directory of subsystem `nqn`.
fn subsystem_dir(nqn: &str) -> PathBuf {
    Path::new("subsystems").join(nqn)
}

fn host_dir(host: &str) -> PathBuf {
    Path::new("hosts").join(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::fake::FakeConfigfs;
    use nix::errno::Errno;

    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    struct Setup {
        fs: Arc<FakeConfigfs>,
        nvmet: Nvmet,
        _dir: tempfile::TempDir,
        devices: Vec<PathBuf>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let devices = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("disk{i}"));
                std::fs::write(&p, vec![0u8; 1 << 16]).unwrap();
                p
            })
            .collect();
        let fs = Arc::new(FakeConfigfs::new());
        let listener = Listener {
            address: ADDR,
            io_port: 8430,
            nexus_port: 8430,
            discovery_port: 8420,
        };
        let nvmet = Nvmet::new(fs.clone(), listener);
        Setup {
            fs,
            nvmet,
            _dir: dir,
            devices,
        }
    }

    fn export(uuid: Uuid, device: &Path) -> Export<'_> {
        Export {
            kind: Kind::Bdev,
            uuid,
            device,
            buffered_io: false,
            hosts: HostAccess::Any,
        }
    }

    fn only<'a>(e: Export<'a>, hosts: &'a [String]) -> Export<'a> {
        Export {
            hosts: HostAccess::Only(hosts),
            ..e
        }
    }

    /// A setup with its first device shared for host `a` only.
    fn shared_for_a() -> (Setup, Uuid, Vec<String>) {
        let s = setup();
        let uuid = Uuid::new_v4();
        let h = hosts(&["a"]);
        s.nvmet
            .share(&only(export(uuid, &s.devices[0]), &h))
            .unwrap();
        (s, uuid, h)
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|h| format!("nqn.2014-08.org.example:{h}"))
            .collect()
    }

    /// The links in the subsystem of `uuid`'s `allowed_hosts`, as
    /// `name -> target` lines.
    fn links(fs: &FakeConfigfs, uuid: Uuid) -> Vec<String> {
        let dir = Path::new("subsystems")
            .join(nqn(uuid))
            .join("allowed_hosts");
        fs.list(&dir)
            .unwrap()
            .into_iter()
            .map(|n| {
                let target = fs.read_link(&dir.join(&n)).unwrap();
                format!("{n} -> {}", target.display())
            })
            .collect()
    }

    fn linked(names: &[String]) -> Vec<String> {
        names.iter().map(|h| format!("{h} -> hosts/{h}")).collect()
    }

    fn read(fs: &FakeConfigfs, path: &str) -> String {
        fs.read(Path::new(path)).unwrap().trim_end().to_string()
    }

    #[test]
    fn share_builds_subsystem_namespace_and_both_ports() {
        let s = setup();
        let uuid = Uuid::new_v4();
        assert!(s.nvmet.share(&export(uuid, &s.devices[0])).unwrap());
        let sub = format!("subsystems/{}", nqn(uuid));
        assert_eq!(read(&s.fs, &format!("{sub}/attr_allow_any_host")), "1");
        let ns = format!("{sub}/namespaces/1");
        assert_eq!(read(&s.fs, &format!("{ns}/enable")), "1");
        assert_eq!(
            read(&s.fs, &format!("{ns}/device_path")),
            s.devices[0].to_str().unwrap()
        );
        assert_eq!(read(&s.fs, &format!("{ns}/device_uuid")), uuid.to_string());
        assert_eq!(read(&s.fs, &format!("{ns}/device_nguid")), uuid.to_string());
        let mut svcs = Vec::new();
        for id in s.fs.list(Path::new("ports")).unwrap() {
            let port = format!("ports/{id}");
            assert_eq!(read(&s.fs, &format!("{port}/addr_trtype")), "tcp");
            assert_eq!(read(&s.fs, &format!("{port}/addr_adrfam")), "ipv4");
            assert_eq!(read(&s.fs, &format!("{port}/addr_traddr")), "10.0.0.2");
            assert!(s
                .fs
                .exists(Path::new(&format!("{port}/subsystems/{}", nqn(uuid)))));
            svcs.push(read(&s.fs, &format!("{port}/addr_trsvcid")));
        }
        svcs.sort();
        assert_eq!(svcs, ["8420", "8430"]);
        assert!(s.nvmet.is_shared(uuid));
        assert_eq!(
            s.nvmet.share_uri(uuid),
            format!("nvmf://10.0.0.2:8430/nqn.2019-05.io.openebs:{uuid}")
        );
    }

    #[test]
    fn sharing_twice_changes_nothing_and_unshare_restores_the_start() {
        let s = setup();
        let empty = s.fs.dump();
        let uuid = Uuid::new_v4();
        s.nvmet.share(&export(uuid, &s.devices[0])).unwrap();
        let shared = s.fs.dump();
        let before = s.fs.mutations();
        assert!(!s.nvmet.share(&export(uuid, &s.devices[0])).unwrap());
        assert_eq!(s.fs.dump(), shared);
        assert_eq!(s.fs.mutations(), before, "a second share must not write");
        assert!(s.nvmet.unshare(uuid).unwrap());
        assert_eq!(s.fs.dump(), empty);
        assert!(!s.nvmet.unshare(uuid).unwrap());
        assert!(!s.nvmet.is_shared(uuid));
    }

    #[test]
    fn buffered_io_is_set_for_ram_files() {
        let s = setup();
        let uuid = Uuid::new_v4();
        let e = Export {
            buffered_io: true,
            ..export(uuid, &s.devices[0])
        };
        s.nvmet.share(&e).unwrap();
        let path = format!("subsystems/{}/namespaces/1/buffered_io", nqn(uuid));
        assert_eq!(read(&s.fs, &path), "1");
    }

    /// Shares `e` once to count its mutating steps, `restore`s configfs,
    /// then fails each step in turn: every failure must leave configfs as
    /// it was before. Returns the number of steps.
    fn assert_rollback_at_every_step(s: &Setup, e: &Export<'_>, restore: impl Fn()) -> usize {
        let before = s.fs.dump();
        let start = s.fs.mutations();
        assert!(s.nvmet.share(e).unwrap());
        let steps = s.fs.mutations() - start;
        restore();
        assert_eq!(s.fs.dump(), before, "restore() did not restore");
        for n in 0..steps {
            s.fs.fail_nth_mutation(n, Errno::EIO);
            let err = s.nvmet.share(e).unwrap_err();
            assert!(
                err.to_string().contains("Input/output error"),
                "step {n}: {err}"
            );
            assert_eq!(s.fs.dump(), before, "step {n} left something behind: {err}");
        }
        steps
    }

    /// A new share: the restore is Unshare (and removing the host
    /// directories the share made).
    fn assert_new_share_rolls_back(s: &Setup, e: &Export<'_>) -> usize {
        let made = s.nvmet.hosts_to_make(e.hosts);
        assert_rollback_at_every_step(s, e, || {
            s.nvmet.unshare(e.uuid).unwrap();
            for h in &made {
                assert!(s.nvmet.remove_host_if_unused(h).unwrap());
            }
        })
    }

    #[test]
    fn a_failed_share_leaves_nothing_behind() {
        let s = setup();
        let steps = assert_new_share_rolls_back(&s, &export(Uuid::new_v4(), &s.devices[0]));
        assert!(steps >= 10, "a share takes {steps} steps");
    }

    #[test]
    fn a_failed_share_keeps_ports_that_other_shares_use() {
        let s = setup();
        s.nvmet
            .share(&export(Uuid::new_v4(), &s.devices[1]))
            .unwrap();
        assert_new_share_rolls_back(&s, &export(Uuid::new_v4(), &s.devices[0]));
    }

    #[test]
    fn share_with_hosts_links_them_and_admits_no_other() {
        let s = setup();
        let uuid = Uuid::new_v4();
        let h = hosts(&["a", "b"]);
        assert!(s
            .nvmet
            .share(&only(export(uuid, &s.devices[0]), &h))
            .unwrap());
        let sub = format!("subsystems/{}", nqn(uuid));
        assert_eq!(read(&s.fs, &format!("{sub}/attr_allow_any_host")), "0");
        assert_eq!(links(&s.fs, uuid), linked(&h));
        assert_eq!(s.fs.list(Path::new("hosts")).unwrap(), h);
        assert_eq!(s.nvmet.access(uuid).unwrap(), Access::Only(h.clone()));
        // The same list again changes nothing.
        let before = (s.fs.dump(), s.fs.mutations());
        assert!(!s
            .nvmet
            .share(&only(export(uuid, &s.devices[0]), &h))
            .unwrap());
        assert_eq!((s.fs.dump(), s.fs.mutations()), before);
    }

    #[test]
    fn sharing_again_with_other_hosts_changes_who_may_connect() {
        let s = setup();
        let uuid = Uuid::new_v4();
        let e = export(uuid, &s.devices[0]);
        // Any host, then only a and b.
        s.nvmet.share(&e).unwrap();
        let (ab, bc) = (hosts(&["a", "b"]), hosts(&["b", "c"]));
        assert!(s.nvmet.share(&only(e, &ab)).unwrap());
        assert_eq!(s.nvmet.access(uuid).unwrap(), Access::Only(ab.clone()));
        // Only b and c: a's link goes, its directory stays for the caller.
        assert!(s.nvmet.share(&only(e, &bc)).unwrap());
        assert_eq!(links(&s.fs, uuid), linked(&bc));
        assert_eq!(s.nvmet.access(uuid).unwrap(), Access::Only(bc.clone()));
        assert!(s.nvmet.has_host(&ab[0]));
        assert!(s.nvmet.remove_host_if_unused(&ab[0]).unwrap());
        assert!(
            !s.nvmet.remove_host_if_unused(&bc[0]).unwrap(),
            "b is linked"
        );
        // Any host again: no links, the flag set.
        assert!(s.nvmet.share(&e).unwrap());
        assert!(links(&s.fs, uuid).is_empty());
        assert_eq!(s.nvmet.access(uuid).unwrap(), Access::Any);
        let sub = format!("subsystems/{}", nqn(uuid));
        assert_eq!(read(&s.fs, &format!("{sub}/attr_allow_any_host")), "1");
        // Namespace and ports were never touched.
        assert_eq!(read(&s.fs, &format!("{sub}/namespaces/1/enable")), "1");
        assert_eq!(s.fs.list(Path::new("ports")).unwrap().len(), 2);
    }

    #[test]
    fn as_is_leaves_host_access_alone() {
        let (s, uuid, _) = shared_for_a();
        let whole = s.fs.dump();
        // Half undone, as by a crash; completing it keeps the host list.
        let ns = Path::new("subsystems")
            .join(nqn(uuid))
            .join("namespaces/1/enable");
        s.fs.write(&ns, "0").unwrap();
        let as_is = Export {
            hosts: HostAccess::AsIs,
            ..export(uuid, &s.devices[0])
        };
        assert!(s.nvmet.share(&as_is).unwrap());
        assert_eq!(s.fs.dump(), whole);
    }

    #[test]
    fn a_failed_share_with_hosts_leaves_nothing_behind() {
        let s = setup();
        // A host directory someone else made is used and kept.
        let h = hosts(&["a", "theirs"]);
        s.fs.mkdir(&Path::new("hosts").join(&h[1])).unwrap();
        let uuid = Uuid::new_v4();
        let steps = assert_new_share_rolls_back(&s, &only(export(uuid, &s.devices[0]), &h));
        assert!(steps >= 13, "a share with two hosts takes {steps} steps");
    }

    #[test]
    fn a_failed_change_of_hosts_leaves_the_share_as_it_was() {
        let s = setup();
        let uuid = Uuid::new_v4();
        let e = export(uuid, &s.devices[0]);
        let (ab, bc) = (hosts(&["a", "b"]), hosts(&["b", "c"]));
        // Any host -> only a and b.
        s.nvmet.share(&e).unwrap();
        let steps = assert_rollback_at_every_step(&s, &only(e, &ab), || {
            s.nvmet.share(&e).unwrap();
            for h in &ab {
                s.nvmet.remove_host_if_unused(h).unwrap();
            }
        });
        assert_eq!(steps, 5, "write 0, mkdir and link twice");
        // Only a and b -> only b and c.
        s.nvmet.share(&only(e, &ab)).unwrap();
        let steps = assert_rollback_at_every_step(&s, &only(e, &bc), || {
            s.nvmet.share(&only(e, &ab)).unwrap();
            s.nvmet.remove_host_if_unused(&bc[1]).unwrap();
        });
        assert_eq!(steps, 3, "mkdir and link c, unlink a");
        // Only a and b -> any host.
        let steps = assert_rollback_at_every_step(&s, &e, || {
            s.nvmet.share(&only(e, &ab)).unwrap();
        });
        assert_eq!(steps, 3, "unlink twice, write 1");
    }

    #[test]
    fn unshare_removes_only_its_own_host_links() {
        let s = setup();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (xy, y) = (hosts(&["x", "y"]), hosts(&["y"]));
        s.nvmet.share(&only(export(b, &s.devices[1]), &y)).unwrap();
        let only_b = s.fs.dump();
        s.nvmet.share(&only(export(a, &s.devices[0]), &xy)).unwrap();
        assert!(s.nvmet.unshare(a).unwrap());
        assert_eq!(links(&s.fs, b), linked(&y));
        // The host directories stay until the caller removes its own.
        assert!(s.nvmet.has_host(&xy[0]));
        assert!(s.nvmet.remove_host_if_unused(&xy[0]).unwrap());
        assert!(!s.nvmet.remove_host_if_unused(&y[0]).unwrap(), "b admits y");
        assert_eq!(s.fs.dump(), only_b);
    }

    #[test]
    fn a_host_linked_under_another_name_is_recognised() {
        let (s, uuid, h) = shared_for_a();
        let dir = Path::new("subsystems")
            .join(nqn(uuid))
            .join("allowed_hosts");
        s.fs.unlink(&dir.join(&h[0])).unwrap();
        s.fs.symlink(&Path::new("hosts").join(&h[0]), &dir.join("other-name"))
            .unwrap();
        assert_eq!(s.nvmet.access(uuid).unwrap(), Access::Only(h.clone()));
        assert!(!s
            .nvmet
            .share(&only(export(uuid, &s.devices[0]), &h))
            .unwrap());
        assert!(!s.nvmet.remove_host_if_unused(&h[0]).unwrap());
    }

    #[test]
    fn unshare_keeps_ports_other_shares_use() {
        let s = setup();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        s.nvmet.share(&export(a, &s.devices[0])).unwrap();
        let only_a = s.fs.dump();
        s.nvmet.share(&export(b, &s.devices[1])).unwrap();
        assert_eq!(
            s.fs.list(Path::new("ports")).unwrap().len(),
            2,
            "ports are shared"
        );
        s.nvmet.unshare(b).unwrap();
        assert_eq!(s.fs.dump(), only_a);
    }

    #[test]
    fn an_existing_matching_port_is_reused_and_kept() {
        let s = setup();
        s.fs.mkdir(Path::new("ports/7")).unwrap();
        for (a, v) in [
            ("trtype", "tcp"),
            ("adrfam", "ipv4"),
            ("traddr", "10.0.0.2"),
            ("trsvcid", "8430"),
        ] {
            s.fs.write(&Path::new("ports/7").join(format!("addr_{a}")), v)
                .unwrap();
        }
        let uuid = Uuid::new_v4();
        s.nvmet.share(&export(uuid, &s.devices[0])).unwrap();
        assert!(s
            .fs
            .exists(&Path::new("ports/7/subsystems").join(nqn(uuid))));
        assert_eq!(s.fs.list(Path::new("ports")).unwrap(), ["1", "7"]);
    }

    #[test]
    fn a_half_made_share_is_completed() {
        let s = setup();
        let uuid = Uuid::new_v4();
        s.nvmet.share(&export(uuid, &s.devices[0])).unwrap();
        let whole = s.fs.dump();
        let link = Path::new("ports/1/subsystems").join(nqn(uuid));
        s.fs.unlink(&link).unwrap();
        let ns = Path::new("subsystems")
            .join(nqn(uuid))
            .join("namespaces/1/enable");
        s.fs.write(&ns, "0").unwrap();
        assert!(s.nvmet.share(&export(uuid, &s.devices[0])).unwrap());
        assert_eq!(s.fs.dump(), whole);
    }

    #[test]
    fn a_subsystem_exporting_another_device_is_not_touched() {
        let s = setup();
        let uuid = Uuid::new_v4();
        s.nvmet.share(&export(uuid, &s.devices[0])).unwrap();
        let before = s.fs.dump();
        let err = s.nvmet.share(&export(uuid, &s.devices[1])).unwrap_err();
        assert!(matches!(err, NvmetError::OtherDevice { .. }), "{err}");
        assert!(err.to_string().contains("unshare"), "{err}");
        assert_eq!(s.fs.dump(), before);
    }

    #[test]
    fn a_taken_address_is_named_and_rolled_back() {
        let s = setup();
        // Someone else's port on 0.0.0.0:8430, serving their subsystem.
        s.fs.mkdir(Path::new("subsystems/nqn.other")).unwrap();
        s.fs.mkdir(Path::new("ports/3")).unwrap();
        for (a, v) in [
            ("trtype", "tcp"),
            ("adrfam", "ipv4"),
            ("traddr", "0.0.0.0"),
            ("trsvcid", "8430"),
        ] {
            s.fs.write(&Path::new("ports/3").join(format!("addr_{a}")), v)
                .unwrap();
        }
        s.fs.symlink(
            Path::new("subsystems/nqn.other"),
            Path::new("ports/3/subsystems/nqn.other"),
        )
        .unwrap();
        let before = s.fs.dump();
        let err = s
            .nvmet
            .share(&export(Uuid::new_v4(), &s.devices[0]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("already listens"), "{msg}");
        assert_eq!(s.fs.dump(), before);
    }

    #[test]
    fn a_failed_enable_points_at_dmesg() {
        let s = setup();
        let before = s.fs.dump();
        s.fs.fail_next_write("enable", Errno::EBUSY);
        let msg = s
            .nvmet
            .share(&export(Uuid::new_v4(), &s.devices[0]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("enable") && msg.contains("dmesg"), "{msg}");
        assert_eq!(s.fs.dump(), before);
    }

    #[test]
    fn a_failed_rollback_is_reported() {
        let s = setup();
        // The enable write (step 7) fails, then so does the first undo
        // (step 8, removing the namespace), which leaves the subsystem too.
        s.fs.fail_next_write("enable", Errno::EBUSY);
        s.fs.fail_nth_mutation(8, Errno::EIO);
        let err = s
            .nvmet
            .share(&export(Uuid::new_v4(), &s.devices[0]))
            .unwrap_err();
        assert!(matches!(err, NvmetError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("retry Unshare"), "{err}");
    }

    #[test]
    fn scan_finds_our_subsystems_only() {
        let s = setup();
        let uuid = Uuid::new_v4();
        s.nvmet.share(&export(uuid, &s.devices[0])).unwrap();
        s.fs.mkdir(Path::new("subsystems/nqn.2019-05.io.openebs:not-a-uuid"))
            .unwrap();
        s.fs.mkdir(Path::new("subsystems/nqn.someone.else"))
            .unwrap();
        let half = Uuid::new_v4();
        s.fs.mkdir(&Path::new("subsystems").join(nqn(half)))
            .unwrap();
        let mut found = s.nvmet.scan().unwrap();
        found.sort_by_key(|f| f.device.is_none());
        assert_eq!(
            found,
            [
                FoundShare {
                    uuid,
                    device: Some(s.devices[0].clone())
                },
                FoundShare {
                    uuid: half,
                    device: None
                }
            ]
        );
    }
}
