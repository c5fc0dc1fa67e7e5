//! The agent's bdevs and their shares: what each `BdevRpc` call does, and
//! how a starting agent rebuilds its view from configfs and the state file.
//!
//! The methods are synchronous; the gRPC service runs each under one mutex
//! on a blocking thread, so calls that change state never interleave.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::Code;
use tracing::{info, warn};
use uuid::Uuid;

use super::aio_paths::{AioPaths, PathRefused};
use super::device::{self, Backing, DeviceError, Geometry, MallocDir};
use super::limits::{shown, shown_list, MAX_ARG_LEN};
use super::loopdev::{LoopError, Loops};
use super::nexus::{NexusError, Nexuses};
use super::nvmet::{
    self, Access, Export, FoundShare, HostAccess, Kind, Nvmet, NvmetError, MAX_NQN_LEN,
};
use super::pools::{self, PoolError, Pools};
use super::state_file::{self, BdevRecord, State, StateError};
use super::uri::{self, Backend, BdevSpec, MallocSize, UriError, DEFAULT_BLK_SIZE, MAX_URI_LEN};
use crate::proto::mayastor as pb;

/// `claimed_by` of a shared bdev (Mayastor's wording).
pub const CLAIMED_BY_TARGET: &str = "NVMe-oF Target";
/// `claimed_by` of a bdev nothing claims (Mayastor's wording).
pub const UNCLAIMED: &str = "Orphaned";
/// The only share protocol.
pub const PROTOCOL: &str = "nvmf";
mod host_keys;
pub(crate) mod nexus_calls;
mod pools_calls;

/// The most hosts a Share may name in `allowed_hosts` (after duplicates
/// are collapsed); a bound on the configfs work one request causes.
pub const MAX_ALLOWED_HOSTS: usize = 64;

/// Why a request was refused; [`RequestError::code`] gives its gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A bad bdev URI.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The path of an aio bdev, or room for a malloc bdev.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Share without a name (gRPC `NOT_FOUND`, as Mayastor answers: no bdev
    /// has that name).
    #[error("the bdev name is empty; give a name that List shows, such as aio:///dev/vdb or m0")]
    EmptyName,
    /// A name longer than any bdev's.
    #[error("the bdev name is {len} bytes long; at most {MAX_URI_LEN} are accepted")]
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// No such bdev.
    #[error("no bdev is named `{name}`; List shows the bdevs and Create makes one")]
    UnknownBdev {
        /// The name asked for, escaped.
        name: String,
    },
    /// Create of a name that exists.
    #[error("bdev `{name}` already exists ({uri}); destroy it first, or use it as it is")]
    Exists {
        /// The name.
        name: String,
        /// Its URI.
        uri: String,
    },
    /// Create of an aio bdev on a device another bdev uses.
    #[error("{} is already used by bdev `{other}`; use that bdev", .path.display())]
    SameDevice {
        /// The path given.
        path: PathBuf,
        /// The bdev using it.
        other: String,
    },
    /// Create of an aio bdev on a pool's disk.
    #[error("{} is the disk of pool {pool}; destroy the pool first, or give another path", .path.display())]
    PoolDisk {
        /// The path given.
        path: PathBuf,
        /// The pool.
        pool: String,
    },
    /// Create with the uuid of a replica.
    #[error("uuid {0} belongs to a replica; give another uuid, or none")]
    ReplicaUuid(Uuid),
    /// Create with the uuid of another bdev.
    #[error("uuid {uuid} belongs to bdev `{other}`; give another uuid, or none")]
    UuidTaken {
        /// The uuid.
        uuid: Uuid,
        /// Its bdev.
        other: String,
    },
    /// Destroy of a shared bdev.
    #[error("bdev `{name}` is shared at {uri}; unshare it first")]
    Shared {
        /// The name.
        name: String,
        /// Its share URI.
        uri: String,
    },
    /// A protocol other than `nvmf`.
    #[error("share protocol {} is not supported; give \"nvmf\"", describe_protocol(.proto))]
    Protocol {
        /// What was asked for.
        proto: String,
    },
    /// A protocol string longer than any argument may be.
    #[error(
        "the share protocol is {len} bytes long; at most {MAX_ARG_LEN} are accepted; give \"nvmf\""
    )]
    ProtocolTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// An allowed host that is not a host NQN the agent accepts.
    #[error("allowed host {host} {problem}; give host NQNs (starting with \"nqn.\", at most {MAX_NQN_LEN} bytes, without `/`, whitespace or control characters), or none to let any host connect")]
    BadHost {
        /// The value, escaped.
        host: String,
        /// What is wrong with it.
        problem: String,
    },
    /// More allowed hosts than a share takes.
    #[error("{count} allowed hosts were given; at most {MAX_ALLOWED_HOSTS} are accepted (none lets any host connect)")]
    TooManyHosts {
        /// How many distinct hosts were given.
        count: usize,
    },
    /// Share of a bdev whose device has gone.
    #[error("bdev `{name}` cannot be shared: {cause}; destroy it, or bring the device back")]
    DeviceGone {
        /// The name.
        name: String,
        /// What probing found.
        cause: DeviceError,
    },
    /// An aio path the agent may not export.
    #[error(transparent)]
    PathRefused(#[from] PathRefused),
    /// A DH-HMAC-CHAP key not in the kernel's form (never shown: it is a
    /// secret).
    #[error("the {which} is not in the form `nvme gen-dhchap-key` prints (DHHC-1:<00 to 03>:<base64 of a 32, 48 or 64-byte secret and its CRC>:)")]
    BadKey {
        /// `key` or `ctrl_key`.
        which: &'static str,
    },
    /// The kernel's target cannot authenticate hosts.
    #[error("this kernel's NVMe target has no DH-HMAC-CHAP (CONFIG_NVME_TARGET_AUTH; Debian 12's 6.1 lacks it, 6.12 has it): boot a kernel that has it to give hosts keys")]
    NoHostAuth,
    /// RemoveHost of a host configfs lacks.
    #[error("host {host} has no entry in the target; nothing to remove")]
    UnknownHost {
        /// The host NQN.
        host: String,
    },
    /// RemoveHost of a host another tool made.
    #[error("host {host} was not made by this agent; remove it with the tool that made it")]
    HostNotOurs {
        /// The host NQN.
        host: String,
    },
    /// RemoveHost of a host a share admits.
    #[error("host {host} is admitted by a share; share without it (or unshare) first")]
    HostInUse {
        /// The host NQN.
        host: String,
    },
    /// The kernel target refused.
    #[error(transparent)]
    Nvmet(#[from] NvmetError),
    /// No loop device could give the bdev its block size.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// The state file could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A pool or replica call, or a bdev on a pool's disk or uuid.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A nexus or rebuild call.
    #[error(transparent)]
    Nexus(#[from] NexusError),
}

fn describe_protocol(proto: &str) -> String {
    if proto.is_empty() {
        "\"\" (empty)".to_string()
    } else {
        shown(proto)
    }
}

impl RequestError {
    /// The gRPC status code for this error.
    pub fn code(&self) -> Code {
        match self {
            RequestError::Uri(_)
            | RequestError::NameTooLong { .. }
            | RequestError::Protocol { .. }
            | RequestError::ProtocolTooLong { .. }
            | RequestError::BadHost { .. }
            | RequestError::BadKey { .. }
            | RequestError::TooManyHosts { .. } => Code::InvalidArgument,
            RequestError::UnknownHost { .. } => Code::NotFound,
            RequestError::NoHostAuth
            | RequestError::HostNotOurs { .. }
            | RequestError::HostInUse { .. } => Code::FailedPrecondition,
            RequestError::Device(DeviceError::Missing { .. })
            | RequestError::EmptyName
            | RequestError::UnknownBdev { .. } => Code::NotFound,
            RequestError::Device(DeviceError::Io { .. }) => Code::Internal,
            RequestError::Device(_) => Code::InvalidArgument,
            RequestError::Exists { .. }
            | RequestError::SameDevice { .. }
            | RequestError::PoolDisk { .. }
            | RequestError::ReplicaUuid(_)
            | RequestError::UuidTaken { .. } => Code::AlreadyExists,
            RequestError::Shared { .. } | RequestError::DeviceGone { .. } => {
                Code::FailedPrecondition
            }
            RequestError::PathRefused(_) => Code::PermissionDenied,
            RequestError::Nvmet(_) | RequestError::Loop(_) | RequestError::State(_) => {
                Code::Internal
            }
            RequestError::Pool(e) => e.code(),
            RequestError::Nexus(e) => e.code(),
        }
    }
}

/// Checks the allowed hosts of a Share before anything changes; returns
/// them sorted with duplicates collapsed.
fn check_hosts(hosts: &[String]) -> Result<Vec<String>, RequestError> {
    for host in hosts {
        check_host(host)?;
    }
    let distinct: BTreeSet<&String> = hosts.iter().collect();
    if distinct.len() > MAX_ALLOWED_HOSTS {
        return Err(RequestError::TooManyHosts {
            count: distinct.len(),
        });
    }
    Ok(distinct.into_iter().cloned().collect())
}

/// Checks one host NQN.
fn check_host(host: &str) -> Result<(), RequestError> {
    // `/` would make the NQN a path in configfs; whitespace and control
    // characters have no place in an NQN and would garble logs.
    let problem = if host.is_empty() {
        "is empty".to_string()
    } else if host.len() > MAX_NQN_LEN {
        format!("is {} bytes long", host.len())
    } else if !host.starts_with("nqn.") {
        "does not start with \"nqn.\"".to_string()
    } else if host.contains('/') {
        "contains `/`".to_string()
    } else if host.chars().any(char::is_control) {
        "contains a control character".to_string()
    } else if host.chars().any(char::is_whitespace) {
        "contains whitespace".to_string()
    } else {
        return Ok(());
    };
    Err(RequestError::BadHost {
        host: shown(host),
        problem,
    })
}

/// Who a share admits, for logs.
fn describe(access: HostAccess<'_>) -> String {
    match access {
        HostAccess::AsIs => "for the hosts it admitted".to_string(),
        HostAccess::Any => "for any host".to_string(),
        HostAccess::Only(hosts) => format!("for hosts {} only", shown_list(hosts)),
    }
}

impl From<RequestError> for tonic::Status {
    fn from(e: RequestError) -> Self {
        super::limits::status(e.code(), e.to_string())
    }
}

/// A bdev the agent made.
#[derive(Debug, Clone)]
struct Bdev {
    name: String,
    uuid: Uuid,
    backend: Backend,
    geometry: Geometry,
}

impl Bdev {
    fn alias(&self) -> String {
        uri::alias(&self.name, &self.backend)
    }

    fn uri(&self) -> String {
        uri::canonical(&self.name, &self.backend, self.uuid)
    }

    fn is_malloc(&self) -> bool {
        matches!(self.backend, Backend::Malloc { .. })
    }

    /// Whether `name` names this bdev: its name, alias or listed URI, or
    /// for an aio bdev its path (the name Mayastor gives it).
    fn answers_to(&self, name: &str) -> bool {
        let path = match &self.backend {
            Backend::Aio { path, .. } => path.to_str(),
            Backend::Malloc { .. } => None,
        };
        self.name == name || self.alias() == name || self.uri() == name || path == Some(name)
    }

    /// Whether `spec` describes this bdev (for idempotent `--create`).
    fn matches(&self, spec: &BdevSpec) -> bool {
        self.backend == spec.backend && spec.uuid.is_none_or(|u| u == self.uuid)
    }

    fn record(&self, shared: bool, allowed_hosts: Vec<String>) -> BdevRecord {
        BdevRecord {
            name: self.name.clone(),
            uuid: self.uuid,
            backend: self.backend.clone(),
            geometry: self.geometry,
            shared,
            allowed_hosts,
            unsharing: false,
        }
    }
}

/// The bdevs, the kernel target and the state file.
pub struct BdevTable {
    nvmet: Nvmet,
    malloc: MallocDir,
    loops: Arc<dyn Loops>,
    /// Where Create may make aio bdevs.
    aio_paths: AioPaths,
    state_path: PathBuf,
    bdevs: Vec<Bdev>,
    /// The host directories (`hosts/<nqn>`) this agent made, to remove once
    /// no subsystem admits them; the others are not the agent's to remove.
    hosts_made: BTreeSet<String>,
    /// The hosts given a DH-HMAC-CHAP key through the agent: kept when no
    /// subsystem admits them, as their key would go with them.
    hosts_keyed: BTreeSet<String>,
    /// The bdevs (uuids) whose last Share or Unshare was an Unshare that
    /// has not finished; the state file says so while they are shared, so
    /// that a restart finishes the Unshare (see [`super::state_file`]).
    unsharing: BTreeSet<Uuid>,
    /// The pools and replicas (Mayastor's `Mayastor` service), beside the
    /// bdevs so that neither takes the other's disk or uuid.
    pools: Pools,
    /// The nexuses, over replicas of the pools and remote ones.
    nexuses: Nexuses,
    /// What configfs said of each bdev at the last save: whether it is
    /// shared, and the hosts it admits. A save after a call that changed
    /// one bdev reads configfs for that one only, so that a call costs the
    /// same however many bdevs there are (reading all took two file
    /// operations per bdev, twice per Create + Share: 0.2 s at 200 bdevs
    /// under TCG).
    seen: std::sync::Mutex<HashMap<Uuid, (bool, Vec<String>)>>,
}

/// Which bdevs a save reads from configfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// All of them: after a (re)start, or a change that may reach several.
    All,
    /// This one (and any not seen before); the rest as at the last save.
    Only(Uuid),
}

impl BdevTable {
    /// The kernel target, for operations beside the bdev calls (the
    /// control service's port faults); hold the agent's lock around them.
    pub fn nvmet(&self) -> &Nvmet {
        &self.nvmet
    }

    /// Rebuilds the view of a (re)starting agent: the bdevs of the state
    /// file, checked against their devices and against configfs, plus any
    /// share of ours that configfs has but the state file lacks. Unshares
    /// the state file says were under way are finished; other partial
    /// shares are completed, admitting the hosts configfs says (never more);
    /// RAM files no bdev uses and host directories the agent made that no
    /// subsystem admits are removed. Every discrepancy is logged. The
    /// pools come first ([`Pools::open`]): the subsystems of replicas are
    /// theirs.
    pub fn open(
        nvmet: Nvmet,
        malloc: MallocDir,
        loops: Arc<dyn Loops>,
        aio_paths: AioPaths,
        state_path: PathBuf,
        lvm: Arc<dyn pools::lvm::Lvm>,
        nexuses: Nexuses,
    ) -> Result<Self, RequestError> {
        let saved = state_file::load(&state_path)?;
        let all = nvmet.scan()?;
        let pools = Pools::open(lvm, &nvmet, &all);
        let found: Vec<FoundShare> = all
            .into_iter()
            .filter(|s| !pools::is_replica_share(s))
            .collect();
        let mut target = BdevTable {
            nvmet,
            malloc,
            loops,
            aio_paths,
            state_path,
            bdevs: Vec::new(),
            hosts_made: saved.hosts.into_iter().collect(),
            hosts_keyed: saved.keyed.into_iter().collect(),
            unsharing: BTreeSet::new(),
            pools,
            nexuses,
            seen: std::sync::Mutex::default(),
        };
        for record in saved.bdevs {
            target.restore(record, &found);
        }
        for share in &found {
            if !target.bdevs.iter().any(|b| b.uuid == share.uuid) {
                target.recover(share);
            }
        }
        target.finish_unshares();
        target.complete_shares();
        target.remove_unused_files(&found);
        target.remove_unused_hosts();
        target.save()?;
        info!(
            "{} bdev(s), {} shared",
            target.bdevs.len(),
            target
                .bdevs
                .iter()
                .filter(|b| target.nvmet.is_shared(b.uuid))
                .count()
        );
        Ok(target)
    }

    fn restore(&mut self, record: BdevRecord, found: &[FoundShare]) {
        let name = record.name;
        let in_kernel = found.iter().any(|f| f.uuid == record.uuid);
        let geometry = match (
            &record.backend,
            device::probe(&self.backend_path(&name, &record.backend)),
        ) {
            // The block size is the one the bdev was created with.
            (_, Ok((_, probed))) => Geometry {
                size: probed.size,
                blk_size: record.geometry.blk_size,
            },
            (Backend::Aio { .. }, Err(e)) => {
                warn!("bdev {name}: {e}; keeping it with its recorded size");
                record.geometry
            }
            (Backend::Malloc { .. }, Err(e)) => {
                warn!("malloc bdev {name} lost its RAM file ({e}), most likely in a reboot; it is gone");
                return;
            }
        };
        // Of a bdev whose Unshare was under way, finish_unshares() says
        // what became of its share.
        if record.shared && !in_kernel && !record.unsharing {
            let admitted = if record.allowed_hosts.is_empty() {
                "any host".to_string()
            } else {
                format!("only hosts {}", shown_list(&record.allowed_hosts))
            };
            warn!(
                "bdev {name} was shared (admitting {admitted}), but configfs has no subsystem {} (a reboot, or someone removed it); it is now unshared",
                nvmet::nqn(record.uuid)
            );
        } else if !record.shared && in_kernel {
            info!("bdev {name} is shared in the kernel; keeping that share");
        }
        if record.unsharing {
            self.unsharing.insert(record.uuid);
        }
        self.bdevs.push(Bdev {
            name,
            uuid: record.uuid,
            backend: record.backend,
            geometry,
        });
    }

    /// Adopts a subsystem of ours that the state file does not know.
    fn recover(&mut self, share: &FoundShare) {
        let nqn = nvmet::nqn(share.uuid);
        let Some(exported) = &share.device else {
            warn!(
                "configfs subsystem {nqn} has no namespace device (a share cut short); removing it"
            );
            if let Err(e) = self.nvmet.unshare(share.uuid) {
                warn!("could not remove subsystem {nqn}: {e}");
            }
            return;
        };
        // A loop device of ours stands for the file or device behind it.
        let looped = self.loops.backing(exported);
        let device = &looped
            .as_ref()
            .map_or_else(|| exported.clone(), |(file, _)| file.clone());
        let malloc_name = (device.parent() == Some(self.malloc.dir()))
            .then(|| {
                device
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
            })
            .flatten();
        let name = match &malloc_name {
            Some(n) => Some(n.clone()),
            None => uri::aio_name(device),
        };
        let Some(name) = name else {
            warn!("configfs subsystem {nqn} exports {}, a path this agent cannot name; leaving it alone", device.display());
            return;
        };
        if let Some(other) = self.bdevs.iter().find(|b| b.answers_to(&name)) {
            warn!(
                "configfs subsystem {nqn} exports {}, which bdev {} (uuid {}) uses too; leaving the subsystem alone",
                device.display(),
                other.name,
                other.uuid
            );
            return;
        }
        let geometry = match device::probe(exported) {
            Ok((_, g)) => Geometry {
                blk_size: looped.map_or(g.blk_size, |(_, blk)| blk),
                ..g
            },
            Err(e) => {
                warn!("configfs subsystem {nqn} exports {}, which is unusable ({e}); leaving it alone", exported.display());
                return;
            }
        };
        let blk_size = (geometry.blk_size != DEFAULT_BLK_SIZE).then_some(geometry.blk_size);
        let backend = match malloc_name {
            Some(_) if geometry.size % (1 << 20) == 0 => Backend::Malloc {
                size: MallocSize::SizeMb(geometry.size >> 20),
                blk_size,
            },
            Some(_) => Backend::Malloc {
                size: MallocSize::NumBlocks(geometry.num_blocks()),
                blk_size,
            },
            None => Backend::Aio {
                path: device.clone(),
                blk_size,
            },
        };
        info!(
            "recovered bdev {name} (uuid {}) from configfs subsystem {nqn}",
            share.uuid
        );
        self.bdevs.push(Bdev {
            name,
            uuid: share.uuid,
            backend,
            geometry,
        });
    }

    /// Finishes the Unshares the state file says were under way when the
    /// agent stopped, before [`BdevTable::complete_shares`] could take what is
    /// left of such a share for a share to complete. One that fails stays
    /// pending (and its share incomplete) until the next Unshare or Share.
    fn finish_unshares(&mut self) {
        if self.unsharing.is_empty() {
            return;
        }
        let (nvmet, bdevs) = (&self.nvmet, &self.bdevs);
        self.unsharing.retain(|&uuid| {
            let Some(bdev) = bdevs.iter().find(|b| b.uuid == uuid) else {
                return false;
            };
            let name = &bdev.name;
            if !nvmet.is_shared(uuid) {
                info!("the Unshare of bdev {name} had removed its subsystem when the agent stopped; it is unshared");
                return false;
            }
            match nvmet.unshare(uuid) {
                Ok(_) => {
                    info!("finished the Unshare of bdev {name}, cut short when the agent stopped");
                    false
                }
                Err(e) => {
                    warn!("bdev {name}: cannot finish its Unshare, cut short when the agent stopped ({e}); Unshare it again");
                    true
                }
            }
        });
        // A port the Unshare had unlinked before it stopped is no longer
        // linked to the subsystem, so nvmet's unshare left it.
        match self.nvmet.remove_unused_ports() {
            Ok(ports) => {
                for port in ports {
                    info!(
                        "removed configfs {}: it serves no subsystem",
                        port.display()
                    );
                }
            }
            Err(e) => warn!("{e}"),
        }
    }

    /// Completes the shares configfs has. Who may connect is left as
    /// configfs says: a share cut short between creating its subsystem
    /// (which admits no host) and saying who may connect is not opened up
    /// to any host, since it may have been meant for a few.
    fn complete_shares(&self) {
        let shared = |b: &&Bdev| self.nvmet.is_shared(b.uuid) && !self.unsharing.contains(&b.uuid);
        for bdev in self.bdevs.iter().filter(shared) {
            match self.export(bdev, HostAccess::AsIs) {
                Ok(true) => info!(
                    "completed the share of bdev {} (configfs lacked part of it)",
                    bdev.name
                ),
                Ok(false) => {}
                Err(e) => warn!("bdev {} is shared but its share is broken: {e}", bdev.name),
            }
            match self.nvmet.access(bdev.uuid) {
                Ok(Access::Only(hosts)) if hosts.is_empty() => warn!(
                    "bdev {} is shared, but its subsystem admits no host (a Share cut short?); Share it again to say which hosts may connect",
                    bdev.name
                ),
                Ok(Access::Only(hosts)) => info!(
                    "bdev {} is shared for hosts {} only",
                    bdev.name,
                    shown_list(&hosts)
                ),
                Ok(Access::Any) => {}
                Err(e) => warn!("bdev {}: {e}", bdev.name),
            }
        }
    }

    /// Removes the host directories this agent made that no subsystem
    /// admits any more, and forgets those someone else removed; returns
    /// whether the list changed. A failure is logged and retried by the
    /// next Share or Unshare (a host directory alone admits nothing).
    fn remove_unused_hosts(&mut self) -> bool {
        let before = self.hosts_made.len();
        let (nvmet, keyed) = (&self.nvmet, &mut self.hosts_keyed);
        keyed.retain(|host| nvmet.has_host(host));
        self.hosts_made.retain(|host| {
            if !nvmet.has_host(host) {
                info!("host directory hosts/{host}, which the agent made, is gone; forgetting it");
                return false;
            }
            if keyed.contains(host) {
                return true;
            }
            match nvmet.remove_host_if_unused(host) {
                Ok(true) => {
                    info!("removed host directory hosts/{host}: no subsystem admits it any more");
                    false
                }
                Ok(false) => true,
                Err(e) => {
                    warn!("{e}; the next Share or Unshare tries again");
                    true
                }
            }
        });
        self.hosts_made.len() != before
    }

    fn remove_unused_files(&self, found: &[FoundShare]) {
        let names = match self.malloc.names() {
            Ok(n) => n,
            Err(e) => return warn!("{e}"),
        };
        for name in names {
            let path = self.malloc.path(&name);
            let used = self.bdevs.iter().any(|b| b.name == name && b.is_malloc())
                || found
                    .iter()
                    .any(|f| f.device.as_deref() == Some(path.as_path()));
            if used {
                continue;
            }
            match self.malloc.remove(&name) {
                Ok(()) => info!("removed RAM file {} that no bdev uses", path.display()),
                Err(e) => warn!("{e}"),
            }
        }
    }

    fn backend_path(&self, name: &str, backend: &Backend) -> PathBuf {
        match backend {
            Backend::Aio { path, .. } => path.clone(),
            Backend::Malloc { .. } => self.malloc.path(name),
        }
    }

    fn device(&self, bdev: &Bdev) -> PathBuf {
        self.backend_path(&bdev.name, &bdev.backend)
    }

    /// Shares `bdev` (idempotent) to `hosts`; returns whether configfs
    /// changed. When nvmet would export the device with another block size
    /// than the bdev's, it exports a loop device with the bdev's instead
    /// (see [`super::loopdev`]): the one it already exports, or a new one.
    fn export(&self, bdev: &Bdev, hosts: HostAccess<'_>) -> Result<bool, RequestError> {
        let device = self.device(bdev);
        let (backing, native) =
            device::probe(&device).map_err(|cause| RequestError::DeviceGone {
                name: bdev.name.clone(),
                cause,
            })?;
        let uuid = bdev.uuid;
        let export = |device, buffered_io| Export {
            kind: Kind::Bdev,
            uuid,
            device,
            buffered_io,
            hosts,
        };
        let wanted = bdev.geometry.blk_size;
        if native.blk_size == wanted {
            let buffered_io = matches!(backing, Backing::File { in_ram: true }) || bdev.is_malloc();
            return Ok(self.nvmet.share(&export(&device, buffered_io))?);
        }
        if let Some(current) = self.nvmet.exported_device(bdev.uuid)? {
            let ours = self
                .loops
                .backing(&current)
                .is_some_and(|(file, blk)| blk == wanted && same_file(&file, &device));
            if ours {
                return Ok(self.nvmet.share(&export(&current, false))?);
            }
        }
        // Dropped after nvmet has opened it (or failed to): the kernel
        // detaches it on the last close.
        let attached = self.loops.attach(&device, wanted)?;
        Ok(self.nvmet.share(&export(&attached.path, false))?)
    }

    fn save(&self) -> Result<(), StateError> {
        self.save_fresh(Fresh::All)
    }

    /// Saves the state, reading configfs for the bdevs `fresh` names.
    fn save_fresh(&self, fresh: Fresh) -> Result<(), StateError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Rebuilt for the bdevs there are now, so a destroyed one's facts go.
        let mut now = HashMap::with_capacity(self.bdevs.len());
        let bdevs = self
            .bdevs
            .iter()
            .map(|b| {
                let stale = fresh == Fresh::All || fresh == Fresh::Only(b.uuid);
                let (shared, hosts) = match seen.remove(&b.uuid) {
                    Some(facts) if !stale => facts,
                    _ => {
                        let shared = self.nvmet.is_shared(b.uuid);
                        let hosts = if shared { self.admitted(b) } else { Vec::new() };
                        (shared, hosts)
                    }
                };
                now.insert(b.uuid, (shared, hosts.clone()));
                BdevRecord {
                    // Once the subsystem is gone a restart re-shares
                    // nothing: there is no Unshare left to finish.
                    unsharing: shared && self.unsharing.contains(&b.uuid),
                    ..b.record(shared, hosts)
                }
            })
            .collect();
        *seen = now;
        let hosts = self.hosts_made.iter().cloned().collect();
        let keyed = self.hosts_keyed.iter().cloned().collect();
        state_file::save(
            &self.state_path,
            State {
                bdevs,
                hosts,
                keyed,
            },
        )
    }

    /// The hosts `bdev`'s share admits by name, for the state file (which
    /// only logs them when the share is lost, so a failure to read them is
    /// logged and recorded as none).
    fn admitted(&self, bdev: &Bdev) -> Vec<String> {
        match self.nvmet.access(bdev.uuid) {
            Ok(Access::Only(hosts)) => hosts,
            Ok(Access::Any) => Vec::new(),
            Err(e) => {
                warn!(
                    "bdev {}: {e}; the state file records no allowed hosts for it",
                    bdev.name
                );
                Vec::new()
            }
        }
    }

    /// Saves after a change the kernel already holds: a failure is logged,
    /// not returned, since configfs (the truth) has the change.
    fn save_or_warn(&self, fresh: Fresh) {
        if let Err(e) = self.save_fresh(fresh) {
            warn!("{e}");
        }
    }

    fn find(&self, name: &str) -> Result<usize, RequestError> {
        if name.is_empty() {
            return Err(RequestError::EmptyName);
        }
        if name.len() > MAX_URI_LEN {
            return Err(RequestError::NameTooLong { len: name.len() });
        }
        self.bdevs
            .iter()
            .position(|b| b.answers_to(name))
            .ok_or_else(|| RequestError::UnknownBdev {
                name: name.escape_debug().to_string(),
            })
    }

    /// `List`: every bdev, in creation order.
    pub fn list(&self) -> Vec<pb::Bdev> {
        self.bdevs
            .iter()
            .map(|b| {
                let shared = self.nvmet.is_shared(b.uuid);
                pb::Bdev {
                    name: b.name.clone(),
                    uuid: b.uuid.hyphenated().to_string(),
                    num_blocks: b.geometry.num_blocks(),
                    blk_size: b.geometry.blk_size,
                    claimed: shared,
                    claimed_by: if shared { CLAIMED_BY_TARGET } else { UNCLAIMED }.to_string(),
                    aliases: b.alias(),
                    uri: b.uri(),
                    product_name: if b.is_malloc() {
                        "Malloc disk"
                    } else {
                        "AIO disk"
                    }
                    .to_string(),
                    // Mayastor lists an unshared bdev as `bdev:///<name>`.
                    share_uri: if shared {
                        self.nvmet.share_uri(b.uuid)
                    } else {
                        format!("bdev:///{}", b.name)
                    },
                }
            })
            .collect()
    }

    /// `Create`: returns the new bdev's name.
    pub fn create(&mut self, uri: &str) -> Result<String, RequestError> {
        let BdevSpec {
            name,
            backend,
            uuid,
        } = uri::parse_create(uri)?;
        if let Some(b) = self.bdevs.iter().find(|b| b.name == name) {
            return Err(RequestError::Exists { name, uri: b.uri() });
        }
        if let Some(u) = uuid {
            if let Some(b) = self.bdevs.iter().find(|b| b.uuid == u) {
                return Err(RequestError::UuidTaken {
                    uuid: u,
                    other: b.name.clone(),
                });
            }
            if self.pools.has_replica(u) {
                return Err(RequestError::ReplicaUuid(u));
            }
        }
        let geometry = match &backend {
            Backend::Aio { path, blk_size } => {
                self.aio_paths.check(path)?;
                let geometry = device::export_blk_size(path, device::probe(path)?, *blk_size)?;
                self.check_unused(path)?;
                if let Some(pool) = self.pools.disk_user(path) {
                    return Err(RequestError::PoolDisk {
                        path: path.clone(),
                        pool: pool.to_string(),
                    });
                }
                geometry
            }
            Backend::Malloc { size, blk_size } => {
                let blk_size = blk_size.unwrap_or(DEFAULT_BLK_SIZE);
                let claimed = self
                    .bdevs
                    .iter()
                    .filter(|b| b.is_malloc())
                    .map(|b| b.geometry.size)
                    .sum();
                self.malloc.create(&name, *size, blk_size, claimed)?;
                Geometry {
                    size: size.bytes(blk_size),
                    blk_size,
                }
            }
        };
        let bdev = Bdev {
            name: name.clone(),
            uuid: uuid.unwrap_or_else(Uuid::new_v4),
            backend,
            geometry,
        };
        let uuid = bdev.uuid;
        self.bdevs.push(bdev);
        if let Err(e) = self.save_fresh(Fresh::Only(uuid)) {
            if self.bdevs.pop().is_some_and(|b| b.is_malloc()) {
                let _ = self.malloc.remove(&name);
            }
            return Err(e.into());
        }
        info!(
            "created bdev {name} (uuid {uuid}, {} blocks of {} bytes)",
            geometry.num_blocks(),
            geometry.blk_size
        );
        Ok(name)
    }

    /// `Create` that accepts an existing identical bdev (for `--create`).
    pub fn ensure_created(&mut self, uri: &str) -> Result<String, RequestError> {
        let spec = uri::parse_create(uri)?;
        match self.bdevs.iter().find(|b| b.name == spec.name) {
            Some(b) if b.matches(&spec) => {
                info!("bdev {} already exists", b.name);
                Ok(b.name.clone())
            }
            _ => self.create(uri),
        }
    }

    /// Refuses a second aio bdev on the same file or device.
    fn check_unused(&self, path: &Path) -> Result<(), RequestError> {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        for b in &self.bdevs {
            if let Backend::Aio { path: other, .. } = &b.backend {
                if std::fs::canonicalize(other).is_ok_and(|o| o == real) {
                    return Err(RequestError::SameDevice {
                        path: path.to_path_buf(),
                        other: b.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// `Destroy`: refused while shared; frees a malloc bdev's RAM.
    pub fn destroy(&mut self, uri: &str) -> Result<(), RequestError> {
        let parsed = uri::parse(uri)?;
        let index = self
            .bdevs
            .iter()
            .position(|b| b.name == parsed.name)
            .ok_or_else(|| RequestError::UnknownBdev {
                name: parsed.name.clone(),
            })?;
        let uuid = self.bdevs[index].uuid;
        if self.nvmet.is_shared(uuid) {
            return Err(RequestError::Shared {
                name: parsed.name,
                uri: self.nvmet.share_uri(uuid),
            });
        }
        let bdev = self.bdevs.remove(index);
        if let Err(e) = self.save_fresh(Fresh::Only(uuid)) {
            self.bdevs.insert(index, bdev);
            return Err(e.into());
        }
        if bdev.is_malloc() {
            if let Err(e) = self.malloc.remove(&bdev.name) {
                warn!("{e}; the next start removes it");
            }
        }
        info!("destroyed bdev {} (uuid {uuid})", bdev.name);
        Ok(())
    }

    /// `Share`: returns the share URI. `allowed_hosts` are the host NQNs
    /// that may connect (none: any host). Sharing again returns the same
    /// URI, and makes the share admit the hosts given now.
    pub fn share(
        &mut self,
        name: &str,
        proto: &str,
        allowed_hosts: &[String],
    ) -> Result<String, RequestError> {
        let index = self.find(name)?;
        if proto.len() > MAX_ARG_LEN {
            return Err(RequestError::ProtocolTooLong { len: proto.len() });
        }
        if proto != PROTOCOL {
            return Err(RequestError::Protocol {
                proto: proto.to_string(),
            });
        }
        let hosts = check_hosts(allowed_hosts)?;
        self.share_for(index, HostAccess::from_list(&hosts))
    }

    /// `--share`: shares bdev `name` for any host unless it is shared; a
    /// share keeps the hosts it admits, since `Control.Restart` runs the
    /// agent again with the same flags, which must not open up a share a
    /// client has restricted since.
    pub fn ensure_shared(&mut self, name: &str) -> Result<String, RequestError> {
        let index = self.find(name)?;
        let access = if self.nvmet.is_shared(self.bdevs[index].uuid) {
            HostAccess::AsIs
        } else {
            HostAccess::Any
        };
        self.share_for(index, access)
    }

    fn share_for(&mut self, index: usize, access: HostAccess<'_>) -> Result<String, RequestError> {
        let bdev = &self.bdevs[index];
        // The host directories missing now are made by this share: the
        // agent's to remove later. They are recorded once it succeeded (on
        // failure it removed them).
        let missing = self.nvmet.hosts_to_make(access);
        let changed = self.export(bdev, access)?;
        let uri = self.nvmet.share_uri(bdev.uuid);
        let (name, uuid) = (bdev.name.clone(), bdev.uuid);
        // The share stands now: an Unshare that failed midway before it is
        // no longer to be finished by a restart.
        let cancelled = self.unsharing.remove(&uuid);
        self.hosts_made.extend(missing);
        let removed = self.remove_unused_hosts();
        let who = describe(access);
        if changed {
            info!("shared bdev {name} at {uri} {who}");
        } else {
            info!("bdev {name} was already shared at {uri} {who}");
        }
        if changed || removed || cancelled {
            self.save_or_warn(Fresh::Only(uuid));
        }
        Ok(uri)
    }

    /// `Unshare`: removes the share, and the host directories the agent
    /// made for it that no other subsystem admits. A bdev that is not
    /// shared, and a name no bdev has, are fine: there is nothing to do
    /// (Mayastor answers OK too).
    pub fn unshare(&mut self, name: &str) -> Result<(), RequestError> {
        let index = match self.find(name) {
            Ok(index) => index,
            Err(RequestError::EmptyName | RequestError::UnknownBdev { .. }) => {
                info!("Unshare of {}: no such bdev, nothing to do", shown(name));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let bdev = &self.bdevs[index];
        let (name, uuid) = (bdev.name.clone(), bdev.uuid);
        // Written down before configfs changes, so that a crash midway is
        // finished as an unshare on restart; a failure midway leaves it
        // written down too, as a crash would.
        if self.nvmet.is_shared(uuid) && self.unsharing.insert(uuid) {
            if let Err(e) = self.save_fresh(Fresh::Only(uuid)) {
                self.unsharing.remove(&uuid);
                return Err(e.into());
            }
        }
        let unshared = self.nvmet.unshare(uuid)?;
        let finished = self.unsharing.remove(&uuid);
        let removed = self.remove_unused_hosts();
        if unshared {
            info!("unshared bdev {name}");
        } else {
            info!("bdev {name} was not shared");
        }
        if unshared || removed || finished {
            self.save_or_warn(Fresh::Only(uuid));
        }
        Ok(())
    }
}

/// Whether two paths are the same file (device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::configfs::Configfs;
    use crate::agent::fake::FakeConfigfs;
    use crate::agent::loopdev::FakeLoops;
    use crate::agent::nexus::fake::FakeNexusKernel;
    use crate::agent::nvmet::Listener;
    use crate::agent::pools::fake::FakeLvm;
    use nix::errno::Errno;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    struct Setup {
        dir: tempfile::TempDir,
        fs: Arc<FakeConfigfs>,
        loops: Arc<FakeLoops>,
        lvm: Arc<FakeLvm>,
    }

    impl Setup {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for (name, size) in [("disk0", 8 << 20), ("disk1", 4 << 20)] {
                std::fs::File::create(dir.path().join(name))
                    .unwrap()
                    .set_len(size)
                    .unwrap();
            }
            let loops = Arc::new(FakeLoops::new(dir.path()));
            let lvm = Arc::new(FakeLvm::new(dir.path()));
            Self {
                dir,
                fs: Arc::new(FakeConfigfs::new()),
                loops,
                lvm,
            }
        }

        fn disk(&self, n: usize) -> String {
            format!("aio://{}/disk{n}", self.dir.path().display())
        }

        fn malloc_dir(&self) -> PathBuf {
            self.dir.path().join("state/malloc")
        }

        fn state(&self) -> PathBuf {
            self.dir.path().join("state/state.json")
        }

        /// Two aio bdevs and a malloc one, the first aio and the malloc
        /// shared.
        fn open_populated(&self) -> BdevTable {
            let mut t = self.open();
            t.create(&self.disk(0)).unwrap();
            t.create("malloc:///m0?size_mb=2").unwrap();
            t.create(&self.disk(1)).unwrap();
            t.share(&self.disk(0), "nvmf", &[]).unwrap();
            t.share("m0", "nvmf", &[]).unwrap();
            t
        }

        /// Malloc bdev `m0` shared to host `a` only: where the allow-list
        /// tests start.
        fn m0_for_a(&self) -> BdevTable {
            let mut t = self.open();
            t.create("malloc:///m0?size_mb=1").unwrap();
            t.share("m0", "nvmf", &hosts(&["a"])).unwrap();
            t
        }

        /// configfs and the state file as they are now.
        fn snapshot(&self) -> (String, String) {
            (
                self.fs.dump(),
                std::fs::read_to_string(self.state()).unwrap(),
            )
        }

        fn open(&self) -> BdevTable {
            let listener = Listener {
                address: Ipv4Addr::new(192, 168, 1, 2),
                io_port: 8430,
                nexus_port: 8430,
                discovery_port: 8420,
            };
            let nvmet = Nvmet::new(self.fs.clone(), listener);
            let nvmet_again = nvmet.clone();
            let malloc = MallocDir::open(self.malloc_dir()).unwrap();
            // The tests' disks are in the temporary dir, the state in its
            // state/ subdir, which the policy keeps out.
            // /dev/null: to see a character device refused.
            let allowed = [self.dir.path().to_path_buf(), PathBuf::from("/dev/null")];
            let aio_paths = AioPaths::new(&allowed, &self.dir.path().join("state"));
            BdevTable::open(
                nvmet,
                malloc,
                self.loops.clone(),
                aio_paths,
                self.state(),
                self.lvm.clone(),
                Nexuses::open(
                    Arc::new(FakeNexusKernel::new(self.dir.path().join("md"))),
                    "nqn.2019-05.io.openebs:test-host".into(),
                    None,
                    &nvmet_again,
                ),
            )
            .unwrap()
        }
    }

    /// Another view of the fake kernel, as another tool would have.
    fn t_nvmet(s: &Setup) -> Nvmet {
        Nvmet::new(
            s.fs.clone(),
            Listener {
                address: Ipv4Addr::new(192, 168, 1, 2),
                io_port: 8430,
                nexus_port: 8430,
                discovery_port: 8420,
            },
        )
    }

    fn code<T: std::fmt::Debug>(r: Result<T, RequestError>) -> (Code, String) {
        let e = r.unwrap_err();
        (e.code(), e.to_string())
    }

    fn by_name(t: &BdevTable, name: &str) -> pb::Bdev {
        t.list().into_iter().find(|b| b.name == name).unwrap()
    }

    /// A save after one call reads configfs for that call's bdev only; the
    /// state file must still say what a save reading every bdev says.
    #[test]
    fn each_call_saves_what_a_full_save_would() {
        let s = Setup::new();
        let mut t = s.open_populated();
        let full = |t: &BdevTable| {
            let after_call = std::fs::read_to_string(s.state()).unwrap();
            t.save().unwrap();
            assert_eq!(after_call, std::fs::read_to_string(s.state()).unwrap());
        };
        full(&t);
        t.create("malloc:///m1?size_mb=1").unwrap();
        full(&t);
        t.share("m1", "nvmf", &hosts(&["a", "b"])).unwrap();
        full(&t);
        t.share("m1", "nvmf", &hosts(&["b"])).unwrap();
        full(&t);
        t.unshare("m0").unwrap();
        full(&t);
        t.destroy("malloc:///m0").unwrap();
        full(&t);
        t.unshare(&s.disk(0)).unwrap();
        full(&t);
        // A restart reads every bdev again, and agrees.
        drop(t);
        let t = s.open();
        full(&t);
        let state = std::fs::read_to_string(s.state()).unwrap();
        assert!(state.contains("nqn.2014-08.org.example:b"), "{state}");
        assert!(!state.contains("nqn.2014-08.org.example:a"), "{state}");
    }

    #[test]
    fn create_share_unshare_destroy_aio() {
        let s = Setup::new();
        let mut t = s.open();
        let uri = s.disk(0);
        assert_eq!(t.create(&uri).unwrap(), uri);
        let b = by_name(&t, &uri);
        assert_eq!(b.num_blocks * u64::from(b.blk_size), 8 << 20);
        assert!(!b.claimed);
        assert_eq!(b.claimed_by, "Orphaned");
        assert_eq!(b.product_name, "AIO disk");
        assert_eq!(b.aliases, uri);
        assert_eq!(b.uri, format!("{uri}?uuid={}", b.uuid));
        assert_eq!(b.share_uri, format!("bdev:///{uri}"));

        let share = t.share(&uri, "nvmf", &[]).unwrap();
        assert_eq!(
            share,
            format!("nvmf://192.168.1.2:8430/nqn.2019-05.io.openebs:{}", b.uuid)
        );
        // Mayastor names an aio bdev by its path: that finds it too.
        let path = uri.strip_prefix("aio://").unwrap();
        assert_eq!(t.share(path, "nvmf", &[]).unwrap(), share);
        assert_eq!(
            t.share(&uri, "nvmf", &[]).unwrap(),
            share,
            "sharing twice gives the same URI"
        );
        let b = by_name(&t, &uri);
        assert!(b.claimed);
        assert_eq!(b.claimed_by, "NVMe-oF Target");
        assert_eq!(b.share_uri, share);

        let (c, msg) = code(t.destroy(&uri));
        assert_eq!(c, Code::FailedPrecondition);
        assert!(
            msg.contains("unshare it first") && msg.contains(&share),
            "{msg}"
        );

        t.unshare(&uri).unwrap();
        t.unshare(&uri).unwrap();
        assert!(!by_name(&t, &uri).claimed);
        t.destroy(&uri).unwrap();
        assert!(t.list().is_empty());
        assert_eq!(s.fs.dump(), FakeConfigfs::new().dump());
    }

    fn namespace(s: &Setup, b: &pb::Bdev, attr: &str) -> String {
        let ns = Path::new("subsystems")
            .join(nvmet::nqn(b.uuid.parse().unwrap()))
            .join("namespaces/1");
        s.fs.read(&ns.join(attr)).unwrap().trim_end().to_string()
    }

    #[test]
    fn malloc_bdevs_live_in_the_malloc_dir() {
        let s = Setup::new();
        let mut t = s.open();
        assert_eq!(
            t.create("malloc:///m0?size_mb=4&blk_size=4096").unwrap(),
            "m0"
        );
        let file = s.malloc_dir().join("m0");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 4 << 20);
        let b = by_name(&t, "m0");
        assert_eq!(b.product_name, "Malloc disk");
        assert_eq!(b.aliases, "malloc:///m0?size_mb=4&blk_size=4096");
        assert_eq!((b.blk_size, b.num_blocks), (4096, 1024));
        // Share and Unshare accept the alias and the URI as well as the name.
        t.share(&b.aliases, "nvmf", &[]).unwrap();
        // The file's own block size is 4096: nvmet exports it directly,
        // through the page cache as tmpfs needs.
        assert_eq!(namespace(&s, &b, "buffered_io"), "1");
        assert_eq!(namespace(&s, &b, "device_path"), file.to_str().unwrap());
        assert_eq!(s.loops.attached(), 0);
        t.unshare(&b.uri).unwrap();
        t.destroy("malloc:///m0").unwrap();
        assert!(!file.exists(), "destroy frees the RAM");
    }

    /// Mayastor's default block size, 512, is not what nvmet gives a file:
    /// a loop device with 512-byte blocks is exported instead, once.
    #[test]
    fn other_block_sizes_go_through_one_loop_device() {
        let s = Setup::new();
        let mut t = s.open();
        t.create("malloc:///m0?num_blocks=1000").unwrap();
        let file = s.malloc_dir().join("m0");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 512_000);
        let b = by_name(&t, "m0");
        assert_eq!((b.blk_size, b.num_blocks), (512, 1000));
        assert_eq!(b.aliases, "malloc:///m0?num_blocks=1000");
        t.share("m0", "nvmf", &[]).unwrap();
        let device = PathBuf::from(namespace(&s, &b, "device_path"));
        assert_eq!(s.loops.backing(&device), Some((file.clone(), 512)));
        assert_eq!(namespace(&s, &b, "buffered_io"), "0");
        // Sharing again, and a restarted agent completing the share, keep
        // the loop device nvmet has.
        t.share("m0", "nvmf", &[]).unwrap();
        drop(t);
        let mut t = s.open();
        t.share("m0", "nvmf", &[]).unwrap();
        assert_eq!(s.loops.attached(), 1);
        assert_eq!(by_name(&t, "m0").blk_size, 512);
        t.unshare("m0").unwrap();
        // An aio file takes 512 by default too, as in Mayastor.
        t.create(&s.disk(1)).unwrap();
        assert_eq!(by_name(&t, &s.disk(1)).blk_size, 512);
    }

    #[test]
    fn bad_create_requests() {
        let s = Setup::new();
        let mut t = s.open();
        let dir = format!("aio://{}", s.dir.path().display());
        let missing = format!("aio://{}/nope", s.dir.path().display());
        let state = format!("aio://{}", s.state().display());
        let cases: &[(&str, Code, &str)] = &[
            (
                "aio:///etc/passwd",
                Code::PermissionDenied,
                "outside the paths",
            ),
            (&state, Code::PermissionDenied, "state directory"),
            ("", Code::InvalidArgument, "empty"),
            ("nvmf:///x", Code::InvalidArgument, "unsupported scheme"),
            (&missing, Code::NotFound, "does not exist"),
            (&dir, Code::InvalidArgument, "is a directory"),
            ("aio:///dev/null", Code::InvalidArgument, "character device"),
            ("malloc:///m0", Code::InvalidArgument, "lacks size_mb"),
            (
                "malloc:///m0?size_mb=x",
                Code::InvalidArgument,
                "not a whole number",
            ),
            (
                "malloc:///m0?size_mb=0",
                Code::InvalidArgument,
                "at least 1 MiB",
            ),
            (
                "malloc:///m0?size_mb=99999999",
                Code::InvalidArgument,
                "largest",
            ),
            ("malloc:///../m0?size_mb=1", Code::InvalidArgument, "`..`"),
            (
                "malloc:///a/b?size_mb=1",
                Code::InvalidArgument,
                "contains `/`",
            ),
            (
                "malloc:///m0?size_mb=1&x=1",
                Code::InvalidArgument,
                "unknown parameter",
            ),
        ];
        for (uri, want, text) in cases {
            let (c, msg) = code(t.create(uri));
            assert_eq!(c, *want, "{uri}: {msg}");
            assert!(msg.contains(text), "{uri}: {msg}");
        }
        assert!(t.list().is_empty());
        assert!(std::fs::read_dir(s.malloc_dir()).unwrap().next().is_none());
    }

    #[test]
    fn duplicates_are_refused() {
        let s = Setup::new();
        let mut t = s.open();
        t.create(&s.disk(0)).unwrap();
        let (c, msg) = code(t.create(&s.disk(0)));
        assert_eq!(c, Code::AlreadyExists);
        assert!(msg.contains("already exists"), "{msg}");
        // The same file under another name.
        let link = s.dir.path().join("link");
        std::os::unix::fs::symlink(s.dir.path().join("disk0"), &link).unwrap();
        let (c, msg) = code(t.create(&format!("aio://{}", link.display())));
        assert_eq!(c, Code::AlreadyExists, "{msg}");
        // Another bdev's uuid.
        let uuid = by_name(&t, &s.disk(0)).uuid;
        let (c, msg) = code(t.create(&format!("malloc:///m1?size_mb=1&uuid={uuid}")));
        assert_eq!(c, Code::AlreadyExists, "{msg}");
        t.create("malloc:///m1?size_mb=1").unwrap();
        let (c, _) = code(t.create("malloc:///m1?size_mb=2"));
        assert_eq!(c, Code::AlreadyExists);
        assert_eq!(t.list().len(), 2);
    }

    #[test]
    fn bad_share_unshare_destroy_requests() {
        let s = Setup::new();
        let mut t = s.open();
        t.create("malloc:///m0?size_mb=1").unwrap();
        let long = "x".repeat(MAX_URI_LEN + 1);
        for (r, want) in [
            (t.share("", "nvmf", &[]), Code::NotFound),
            (t.share(&long, "nvmf", &[]), Code::InvalidArgument),
            (t.share("m9", "nvmf", &[]), Code::NotFound),
            (t.share("m0", "iscsi", &[]), Code::InvalidArgument),
            (t.share("m0", "", &[]), Code::InvalidArgument),
        ] {
            assert_eq!(code(r).0, want);
        }
        // As in Mayastor: unsharing what no bdev is named is nothing to do.
        t.unshare("").unwrap();
        t.unshare("m9").unwrap();
        assert_eq!(code(t.unshare(&long)).0, Code::InvalidArgument);
        assert_eq!(code(t.destroy("malloc:///m9")).0, Code::NotFound);
        assert_eq!(code(t.destroy("m0")).0, Code::InvalidArgument);
        assert!(!by_name(&t, "m0").claimed);
        let msg = code(t.share("m0", "iscsi", &[])).1;
        assert!(msg.contains("\"iscsi\"") && msg.contains("nvmf"), "{msg}");
    }

    #[test]
    fn a_failed_share_leaves_the_bdev_unclaimed() {
        let s = Setup::new();
        let mut t = s.open();
        t.create(&s.disk(0)).unwrap();
        let before = s.fs.dump();
        s.fs.fail_next_write("enable", Errno::EBUSY);
        let (c, msg) = code(t.share(&s.disk(0), "nvmf", &[]));
        assert_eq!(c, Code::Internal);
        assert!(msg.contains("dmesg"), "{msg}");
        assert_eq!(s.fs.dump(), before);
        assert!(!by_name(&t, &s.disk(0)).claimed);
        // The next try works.
        t.share(&s.disk(0), "nvmf", &[]).unwrap();
    }

    #[test]
    fn a_state_file_that_cannot_be_written_undoes_create() {
        let s = Setup::new();
        let mut t = s.open();
        std::fs::create_dir(crate::atomic_file::temporary(&s.state())).unwrap();
        let (c, msg) = code(t.create("malloc:///m0?size_mb=1"));
        assert_eq!(c, Code::Internal);
        assert!(msg.contains("state file"), "{msg}");
        assert!(t.list().is_empty());
        assert!(!s.malloc_dir().join("m0").exists());
    }

    #[test]
    fn a_restart_keeps_bdevs_uuids_and_shares() {
        let s = Setup::new();
        let t = s.open_populated();
        let before = t.list();
        let tree = s.fs.dump();
        drop(t);
        let t = s.open();
        assert_eq!(t.list(), before);
        assert_eq!(s.fs.dump(), tree);
    }

    #[test]
    fn a_restart_recovers_shares_the_state_file_lost() {
        let s = Setup::new();
        let t = s.open_populated();
        let mut before: Vec<_> = t.list().into_iter().filter(|b| b.claimed).collect();
        drop(t);
        std::fs::remove_file(s.state()).unwrap();
        let mut after = s.open().list();
        before.sort_by(|a, b| a.name.cmp(&b.name));
        after.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(after, before, "the shared ones come back from configfs");
    }

    #[test]
    fn a_restart_forgets_shares_the_kernel_lost() {
        let s = Setup::new();
        let mut t = s.open();
        t.create(&s.disk(0)).unwrap();
        t.share(&s.disk(0), "nvmf", &[]).unwrap();
        let uuid: Uuid = by_name(&t, &s.disk(0)).uuid.parse().unwrap();
        drop(t);
        // As after a reboot, or someone else's cleanup.
        t_nvmet(&s).unshare(uuid).unwrap();
        let t = s.open();
        let b = by_name(&t, &s.disk(0));
        assert!(!b.claimed);
        assert_eq!(b.uuid, uuid.to_string());
        let text = std::fs::read_to_string(s.state()).unwrap();
        assert!(text.contains("\"shared\": false"), "{text}");
    }

    #[test]
    fn a_restart_completes_a_half_made_share_and_drops_lost_ram() {
        let s = Setup::new();
        let mut t = s.open();
        t.create(&s.disk(0)).unwrap();
        t.create("malloc:///gone?size_mb=1").unwrap();
        t.share(&s.disk(0), "nvmf", &[]).unwrap();
        let whole = s.fs.dump();
        let uuid: Uuid = by_name(&t, &s.disk(0)).uuid.parse().unwrap();
        drop(t);
        s.fs.unlink(&Path::new("ports/2/subsystems").join(nvmet::nqn(uuid)))
            .unwrap();
        std::fs::remove_file(s.malloc_dir().join("gone")).unwrap();
        std::fs::write(s.malloc_dir().join("stray"), b"x").unwrap();
        let t = s.open();
        assert_eq!(s.fs.dump(), whole);
        let names: Vec<String> = t.list().into_iter().map(|b| b.name).collect();
        assert_eq!(names, [s.disk(0)]);
        assert!(
            !s.malloc_dir().join("stray").exists(),
            "unused RAM files are removed"
        );
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|h| format!("nqn.2014-08.org.example:{h}"))
            .collect()
    }

    /// The hosts bdev `name`'s subsystem admits, as configfs says.
    fn access(t: &BdevTable, name: &str) -> Access {
        let uuid: Uuid = by_name(t, name).uuid.parse().unwrap();
        t.nvmet.access(uuid).unwrap()
    }

    fn host_dirs(s: &Setup) -> Vec<String> {
        s.fs.list(Path::new("hosts")).unwrap()
    }

    fn saved(s: &Setup) -> State {
        state_file::load(&s.state()).unwrap()
    }

    #[test]
    fn share_with_hosts_admits_them_and_sharing_again_changes_them() {
        let s = Setup::new();
        let mut t = s.open();
        let disk = s.disk(0);
        t.create(&disk).unwrap();
        let (ab, bc) = (hosts(&["a", "b"]), hosts(&["b", "c"]));
        let uri = t.share(&disk, "nvmf", &ab).unwrap();
        assert_eq!(access(&t, &disk), Access::Only(ab.clone()));
        assert_eq!(host_dirs(&s), ab);
        let state = saved(&s);
        assert_eq!(state.hosts, ab, "the agent made both host directories");
        assert_eq!(state.bdevs[0].allowed_hosts, ab);
        // The same hosts again: nothing changes.
        let before = (s.fs.dump(), s.fs.mutations());
        assert_eq!(t.share(&disk, "nvmf", &ab).unwrap(), uri);
        assert_eq!((s.fs.dump(), s.fs.mutations()), before);
        // Others: a's directory, unused now, goes.
        assert_eq!(t.share(&disk, "nvmf", &bc).unwrap(), uri);
        assert_eq!(access(&t, &disk), Access::Only(bc.clone()));
        assert_eq!(host_dirs(&s), bc);
        assert_eq!(saved(&s).hosts, bc);
        // None: any host, and no host directory is left.
        assert_eq!(t.share(&disk, "nvmf", &[]).unwrap(), uri);
        assert_eq!(access(&t, &disk), Access::Any);
        assert!(host_dirs(&s).is_empty());
        let state = saved(&s);
        assert!(state.hosts.is_empty() && state.bdevs[0].allowed_hosts.is_empty());
        t.unshare(&disk).unwrap();
        t.destroy(&disk).unwrap();
        assert_eq!(s.fs.dump(), FakeConfigfs::new().dump());
    }

    #[test]
    fn unshare_removes_only_unused_host_directories_the_agent_made() {
        let s = Setup::new();
        let mut t = s.open();
        let disk = s.disk(0);
        t.create(&disk).unwrap();
        t.create("malloc:///m0?size_mb=1").unwrap();
        // Someone else's host, with its key.
        let theirs = hosts(&["theirs"]);
        let dir = Path::new("hosts").join(&theirs[0]);
        s.fs.mkdir(&dir).unwrap();
        let mut both = hosts(&["a"]);
        both.extend(theirs.clone());
        t.share(&disk, "nvmf", &both).unwrap();
        t.share("m0", "nvmf", &hosts(&["a"])).unwrap();
        assert_eq!(saved(&s).hosts, hosts(&["a"]));
        // a is still admitted by m0's subsystem; theirs is not ours.
        t.unshare(&disk).unwrap();
        assert_eq!(host_dirs(&s), both);
        assert_eq!(access(&t, "m0"), Access::Only(hosts(&["a"])));
        t.unshare("m0").unwrap();
        assert_eq!(host_dirs(&s), theirs);
        assert!(saved(&s).hosts.is_empty());
        // Sharing to theirs alone and opening up again keeps it too.
        t.share("m0", "nvmf", &theirs).unwrap();
        t.share("m0", "nvmf", &[]).unwrap();
        assert_eq!(host_dirs(&s), theirs);
        assert!(saved(&s).hosts.is_empty());
    }

    #[test]
    fn bad_allowed_hosts_are_refused_and_change_nothing() {
        let s = Setup::new();
        let mut t = s.m0_for_a();
        let before = s.snapshot();
        let good = hosts(&["b"]).remove(0);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "\"\" is empty"),
            (format!("nqn.{}", "x".repeat(220)), "is 224 bytes long"),
            (
                "iqn.2004-10.com.example:h".into(),
                "does not start with \"nqn.\"",
            ),
            ("nqn.a/../../ports".into(), "contains `/`"),
            ("nqn.a b".into(), "contains whitespace"),
            ("nqn.a\u{a0}b".into(), "contains whitespace"),
            (
                "nqn.a\nb".into(),
                "\"nqn.a\\nb\" contains a control character",
            ),
            ("nqn.a\u{7f}".into(), "contains a control character"),
        ];
        for (host, says) in &cases {
            // A bad host among good ones is refused all the same.
            let list = [good.clone(), host.clone()];
            let (c, msg) = code(t.share("m0", "nvmf", &list));
            assert_eq!(c, Code::InvalidArgument, "{host:?}: {msg}");
            assert!(msg.contains(says), "{host:?}: {msg}");
            assert!(msg.contains("none to let any host connect"), "{msg}");
        }
        let many: Vec<String> = (0..=MAX_ALLOWED_HOSTS)
            .map(|i| format!("nqn.h{i}"))
            .collect();
        let (c, msg) = code(t.share("m0", "nvmf", &many));
        assert_eq!(c, Code::InvalidArgument);
        assert!(
            msg.contains("65 allowed hosts") && msg.contains("at most 64"),
            "{msg}"
        );
        // The name and the protocol are checked first.
        let bad = [String::new()];
        assert_eq!(code(t.share("m9", "nvmf", &bad)).0, Code::NotFound);
        assert!(code(t.share("m0", "iscsi", &bad)).1.contains("iscsi"));
        assert_eq!(s.snapshot(), before);
        // Duplicates collapse; 64 distinct hosts are fine.
        let mut twice = hosts(&["b", "a", "b"]);
        twice.extend(std::iter::repeat_n(good.clone(), 100));
        t.share("m0", "nvmf", &twice).unwrap();
        assert_eq!(access(&t, "m0"), Access::Only(hosts(&["a", "b"])));
        t.share("m0", "nvmf", &many[..MAX_ALLOWED_HOSTS]).unwrap();
        assert_eq!(host_dirs(&s).len(), MAX_ALLOWED_HOSTS);
    }

    #[test]
    fn a_failed_change_of_hosts_changes_nothing() {
        let s = Setup::new();
        let mut t = s.m0_for_a();
        let before = s.snapshot();
        // Write 0 is not needed; mkdir b, link b, then unlinking a fails.
        s.fs.fail_nth_mutation(2, Errno::EIO);
        let (c, msg) = code(t.share("m0", "nvmf", &hosts(&["b"])));
        assert_eq!(c, Code::Internal, "{msg}");
        assert_eq!(s.snapshot(), before);
        assert_eq!(access(&t, "m0"), Access::Only(hosts(&["a"])));
    }

    #[test]
    fn a_restart_keeps_a_restricted_share_restricted() {
        let s = Setup::new();
        let mut t = s.open();
        let disk = s.disk(0);
        // The file's own block size: no loop device, which the disabling
        // below would detach in the kernel but not in the model.
        t.create(&format!("{disk}?blk_size=4096")).unwrap();
        let a = hosts(&["a"]);
        t.share(&disk, "nvmf", &a).unwrap();
        let uuid: Uuid = by_name(&t, &disk).uuid.parse().unwrap();
        let whole = s.fs.dump();
        drop(t);
        // Half undone, as by a crash: completing it keeps the hosts.
        let sub = Path::new("subsystems").join(nvmet::nqn(uuid));
        s.fs.unlink(&Path::new("ports/2/subsystems").join(nvmet::nqn(uuid)))
            .unwrap();
        s.fs.write(&sub.join("namespaces/1/enable"), "0").unwrap();
        let mut t = s.open();
        assert_eq!(s.fs.dump(), whole);
        assert_eq!(access(&t, &disk), Access::Only(a.clone()));
        // --share leaves the hosts alone too.
        t.ensure_shared(&disk).unwrap();
        assert_eq!(s.fs.dump(), whole);
        // The restarted agent knows the host directory is its own.
        t.unshare(&disk).unwrap();
        assert!(host_dirs(&s).is_empty());
        drop(t);
        // A subsystem that admits no host (cut short before its hosts were
        // linked) is completed but not opened up to any host.
        let mut t = s.open();
        t.share(&disk, "nvmf", &a).unwrap();
        drop(t);
        s.fs.unlink(&sub.join("allowed_hosts").join(&a[0])).unwrap();
        let t = s.open();
        assert_eq!(access(&t, &disk), Access::Only(Vec::new()));
        assert!(host_dirs(&s).is_empty(), "the unused host directory goes");
    }

    #[test]
    fn a_restart_records_the_hosts_of_a_share_the_kernel_lost() {
        let s = Setup::new();
        let t = s.m0_for_a();
        let uuid: Uuid = by_name(&t, "m0").uuid.parse().unwrap();
        assert_eq!(saved(&s).bdevs[0].allowed_hosts, hosts(&["a"]));
        drop(t);
        t_nvmet(&s).unshare(uuid).unwrap();
        let t = s.open();
        assert!(!by_name(&t, "m0").claimed);
        let state = saved(&s);
        assert!(!state.bdevs[0].shared && state.bdevs[0].allowed_hosts.is_empty());
        assert!(state.hosts.is_empty() && host_dirs(&s).is_empty());
    }

    /// An Unshare of `m0` (shared for host `a`) whose configfs step `n`
    /// fails. The agent writes nothing after the failure, so configfs and
    /// the state file are as a crash at that step leaves them.
    fn unshare_cut_short(s: &Setup, n: usize) -> BdevTable {
        let mut t = s.m0_for_a();
        s.fs.fail_nth_mutation(n, Errno::EIO);
        let _ = t.unshare("m0");
        t
    }

    #[test]
    fn a_restart_finishes_an_unshare_cut_short_at_any_step() {
        let empty = FakeConfigfs::new().dump();
        let s = Setup::new();
        let mut t = s.m0_for_a();
        let start = s.fs.mutations();
        t.unshare("m0").unwrap();
        let steps = s.fs.mutations() - start;
        assert_eq!(s.fs.dump(), empty);
        assert!(steps >= 6, "an Unshare of {steps} steps");
        for n in 0..steps {
            let s = Setup::new();
            drop(unshare_cut_short(&s, n));
            let t = s.open();
            assert!(!by_name(&t, "m0").claimed, "step {n}");
            assert_eq!(s.fs.dump(), empty, "step {n}");
            let b = &saved(&s).bdevs[0];
            assert!(!b.shared && !b.unsharing, "step {n}: {b:?}");
        }
    }

    #[test]
    fn a_share_after_a_failed_unshare_stands_over_a_restart() {
        let s = Setup::new();
        let mut t = unshare_cut_short(&s, 1);
        assert!(saved(&s).bdevs[0].unsharing);
        t.share("m0", "nvmf", &hosts(&["a"])).unwrap();
        assert!(!saved(&s).bdevs[0].unsharing);
        let whole = s.fs.dump();
        drop(t);
        let t = s.open();
        assert_eq!(access(&t, "m0"), Access::Only(hosts(&["a"])));
        assert_eq!(s.fs.dump(), whole);
    }

    #[test]
    fn ensure_shared_shares_for_any_host_once() {
        let s = Setup::new();
        let mut t = s.open();
        t.create("malloc:///m0?size_mb=1").unwrap();
        let uri = t.ensure_shared("m0").unwrap();
        assert_eq!(access(&t, "m0"), Access::Any);
        t.share("m0", "nvmf", &hosts(&["a"])).unwrap();
        assert_eq!(t.ensure_shared("m0").unwrap(), uri);
        assert_eq!(access(&t, "m0"), Access::Only(hosts(&["a"])));
    }

    #[test]
    fn ensure_created_accepts_the_same_bdev_only() {
        let s = Setup::new();
        let mut t = s.open();
        t.ensure_created("malloc:///m0?size_mb=1").unwrap();
        let uuid = by_name(&t, "m0").uuid;
        t.ensure_created("malloc:///m0?size_mb=1").unwrap();
        t.ensure_created(&format!("malloc:///m0?size_mb=1&uuid={uuid}"))
            .unwrap();
        assert_eq!(
            code(t.ensure_created("malloc:///m0?size_mb=2")).0,
            Code::AlreadyExists
        );
        assert_eq!(t.list().len(), 1);
        assert_eq!(by_name(&t, "m0").uuid, uuid);
    }

    /// Properties over generated allow-lists (see `crate::props`).
    mod props {
        use proptest::prelude::*;

        use super::super::*;
        use crate::props::{assert_clean, config, nqn, text, MAX_MESSAGE_LEN};

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![4 => nqn(), 1 => text(30), 1 => "nqn\\.[ -~]{200,240}"]
        }

        proptest! {
            #![proptest_config(config(128))]

            /// Allowed hosts are taken only as NQNs that are one configfs
            /// name each (no `/`, whitespace or control character), sorted
            /// and distinct; anything else is a clean INVALID_ARGUMENT.
            #[test]
            fn allowed_hosts_are_host_nqns_or_refused(
                hosts in prop_oneof![
                    proptest::collection::vec(nqn(), 0..80),
                    proptest::collection::vec(host(), 0..10),
                ]
            ) {
                match check_hosts(&hosts) {
                    Ok(list) => {
                        let mut distinct = hosts.clone();
                        distinct.sort();
                        distinct.dedup();
                        prop_assert_eq!(&list, &distinct);
                        prop_assert!(list.len() <= MAX_ALLOWED_HOSTS);
                        for h in &list {
                            prop_assert!(h.starts_with("nqn.") && h.len() <= MAX_NQN_LEN);
                            prop_assert!(!h.chars().any(|c| c == '/' || c.is_control() || c.is_whitespace()));
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e.code(), Code::InvalidArgument);
                        assert_clean(tonic::Status::from(e).message(), MAX_MESSAGE_LEN);
                    }
                }
            }
        }
    }
}
