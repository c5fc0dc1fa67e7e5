//! The agent's bdevs and their shares: what each `BdevRpc` call does, and
//! how a starting agent rebuilds its view from configfs and the state file.
//!
//! The methods are synchronous; the gRPC service runs each under one mutex
//! on a blocking thread, so calls that change state never interleave.

use std::path::{Path, PathBuf};

use tonic::Code;
use tracing::{info, warn};
use uuid::Uuid;

use super::device::{self, Backing, DeviceError, Geometry, MallocDir};
use super::nvmet::{self, Export, FoundShare, Nvmet, NvmetError};
use super::state::{self, BdevRecord, RecordKind, StateError};
use super::uri::{self, UriError, UriKind, MAX_URI_LEN};
use crate::proto::mayastor as pb;

/// `claimed_by` of a shared bdev (Mayastor's wording).
pub const CLAIMED_BY_TARGET: &str = "NVMe-oF Target";
/// `claimed_by` of a bdev nothing claims (Mayastor's wording).
pub const UNCLAIMED: &str = "Orphaned";
/// The only share protocol.
pub const PROTOCOL: &str = "nvmf";

/// Why a request was refused; [`RequestError::code`] gives its gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A bad bdev URI.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The path of an aio bdev, or room for a malloc bdev.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Share or Unshare without a name.
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
    /// Create with the uuid of another bdev.
    #[error("uuid {uuid} belongs to bdev `{other}`; give another uuid, or none")]
    UuidTaken {
        /// The uuid.
        uuid: Uuid,
        /// Its bdev.
        other: String,
    },
    /// Create of a malloc bdev without `size_mb`.
    #[error(transparent)]
    MissingSize(UriError),
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
    /// Share of a bdev whose device has gone.
    #[error("bdev `{name}` cannot be shared: {source}; destroy it, or bring the device back")]
    DeviceGone {
        /// The name.
        name: String,
        /// What probing found.
        source: DeviceError,
    },
    /// The kernel target refused.
    #[error(transparent)]
    Nvmet(#[from] NvmetError),
    /// The state file could not be written.
    #[error(transparent)]
    State(#[from] StateError),
}

fn describe_protocol(proto: &str) -> String {
    if proto.is_empty() {
        "\"\" (empty)".to_string()
    } else {
        format!("{:?}", proto)
    }
}

impl RequestError {
    /// The gRPC status code for this error.
    pub fn code(&self) -> Code {
        match self {
            RequestError::Uri(_)
            | RequestError::MissingSize(_)
            | RequestError::EmptyName
            | RequestError::NameTooLong { .. }
            | RequestError::Protocol { .. } => Code::InvalidArgument,
            RequestError::Device(DeviceError::Missing { .. })
            | RequestError::UnknownBdev { .. } => Code::NotFound,
            RequestError::Device(DeviceError::Io { .. }) => Code::Internal,
            RequestError::Device(_) => Code::InvalidArgument,
            RequestError::Exists { .. }
            | RequestError::SameDevice { .. }
            | RequestError::UuidTaken { .. } => Code::AlreadyExists,
            RequestError::Shared { .. } | RequestError::DeviceGone { .. } => {
                Code::FailedPrecondition
            }
            RequestError::Nvmet(_) | RequestError::State(_) => Code::Internal,
        }
    }
}

impl From<RequestError> for tonic::Status {
    fn from(e: RequestError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

/// A bdev the agent made.
#[derive(Debug, Clone)]
struct Bdev {
    name: String,
    uuid: Uuid,
    kind: Kind,
    geometry: Geometry,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Aio { path: PathBuf },
    Malloc { size_mb: u64 },
}

impl Bdev {
    fn uri_kind(&self) -> UriKind {
        match &self.kind {
            Kind::Aio { path } => UriKind::Aio { path: path.clone() },
            Kind::Malloc { size_mb } => UriKind::Malloc {
                size_mb: Some(*size_mb),
            },
        }
    }

    /// The URI it was created with, without uuid (Mayastor's alias).
    fn alias(&self) -> String {
        match &self.kind {
            Kind::Aio { .. } => self.name.clone(),
            Kind::Malloc { size_mb } => format!("malloc:///{}?size_mb={size_mb}", self.name),
        }
    }

    /// Its URI with its uuid: creating from it gives the same bdev.
    fn uri(&self) -> String {
        uri::canonical(&self.name, &self.uri_kind(), self.uuid)
    }

    fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.alias() == name || self.uri() == name
    }

    /// Whether `parsed` describes this bdev (for idempotent `--create`).
    fn matches(&self, parsed: &uri::ParsedUri) -> bool {
        let same_kind = match (&self.kind, &parsed.kind) {
            (Kind::Aio { path }, UriKind::Aio { path: p }) => path == p,
            (Kind::Malloc { size_mb }, UriKind::Malloc { size_mb: s }) => {
                s.is_none_or(|s| s == *size_mb)
            }
            _ => false,
        };
        same_kind && parsed.uuid.is_none_or(|u| u == self.uuid)
    }

    fn record(&self, shared: bool) -> BdevRecord {
        BdevRecord {
            name: self.name.clone(),
            uuid: self.uuid,
            kind: match &self.kind {
                Kind::Aio { path } => RecordKind::Aio { path: path.clone() },
                Kind::Malloc { size_mb } => RecordKind::Malloc { size_mb: *size_mb },
            },
            geometry: self.geometry,
            shared,
        }
    }
}

/// The bdevs, the kernel target and the state file.
pub struct Target {
    nvmet: Nvmet,
    malloc: MallocDir,
    state_path: PathBuf,
    bdevs: Vec<Bdev>,
}

impl Target {
    /// Rebuilds the view of a (re)starting agent: the bdevs of the state
    /// file, checked against their devices and against configfs, plus any
    /// share of ours that configfs has but the state file lacks. Partial
    /// shares are completed; RAM files no bdev uses are removed. Every
    /// discrepancy is logged.
    pub fn open(
        nvmet: Nvmet,
        malloc: MallocDir,
        state_path: PathBuf,
    ) -> Result<Self, RequestError> {
        let records = state::load(&state_path)?;
        let found = nvmet.scan()?;
        let mut target = Target {
            nvmet,
            malloc,
            state_path,
            bdevs: Vec::new(),
        };
        for record in records {
            target.restore(record, &found);
        }
        for share in &found {
            if !target.bdevs.iter().any(|b| b.uuid == share.uuid) {
                target.recover(share);
            }
        }
        target.complete_shares();
        target.remove_unused_files(&found);
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
        let (kind, geometry) = match record.kind {
            RecordKind::Aio { path } => match device::probe(&path) {
                Ok((_, geometry)) => (Kind::Aio { path }, geometry),
                Err(e) => {
                    warn!("bdev {name}: {e}; keeping it with its recorded size");
                    (Kind::Aio { path }, record.geometry)
                }
            },
            RecordKind::Malloc { size_mb } => match device::probe(&self.malloc.path(&name)) {
                Ok((_, geometry)) => (Kind::Malloc { size_mb }, geometry),
                Err(e) => {
                    warn!("malloc bdev {name} lost its RAM file ({e}), most likely in a reboot; it is gone");
                    return;
                }
            },
        };
        if record.shared && !in_kernel {
            warn!(
                "bdev {name} was shared, but configfs has no subsystem {} (a reboot, or someone removed it); it is now unshared",
                nvmet::nqn(record.uuid)
            );
        } else if !record.shared && in_kernel {
            info!("bdev {name} is shared in the kernel; keeping that share");
        }
        self.bdevs.push(Bdev {
            name,
            uuid: record.uuid,
            kind,
            geometry,
        });
    }

    /// Adopts a subsystem of ours that the state file does not know.
    fn recover(&mut self, share: &FoundShare) {
        let nqn = nvmet::nqn(share.uuid);
        let Some(device) = &share.device else {
            warn!(
                "configfs subsystem {nqn} has no namespace device (a share cut short); removing it"
            );
            if let Err(e) = self.nvmet.unshare(share.uuid) {
                warn!("could not remove subsystem {nqn}: {e}");
            }
            return;
        };
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
        let geometry = match device::probe(device) {
            Ok((_, g)) => g,
            Err(e) => {
                warn!("configfs subsystem {nqn} exports {}, which is unusable ({e}); leaving it alone", device.display());
                return;
            }
        };
        let kind = match malloc_name {
            Some(_) => Kind::Malloc {
                size_mb: geometry.size >> 20,
            },
            None => Kind::Aio {
                path: device.clone(),
            },
        };
        info!(
            "recovered bdev {name} (uuid {}) from configfs subsystem {nqn}",
            share.uuid
        );
        self.bdevs.push(Bdev {
            name,
            uuid: share.uuid,
            kind,
            geometry,
        });
    }

    fn complete_shares(&self) {
        for bdev in self.bdevs.iter().filter(|b| self.nvmet.is_shared(b.uuid)) {
            match self.export(bdev) {
                Ok(true) => info!(
                    "completed the share of bdev {} (configfs lacked part of it)",
                    bdev.name
                ),
                Ok(false) => {}
                Err(e) => warn!("bdev {} is shared but its share is broken: {e}", bdev.name),
            }
        }
    }

    fn remove_unused_files(&self, found: &[FoundShare]) {
        let names = match self.malloc.names() {
            Ok(n) => n,
            Err(e) => return warn!("{e}"),
        };
        for name in names {
            let path = self.malloc.path(&name);
            let used = self
                .bdevs
                .iter()
                .any(|b| b.name == name && matches!(b.kind, Kind::Malloc { .. }))
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

    fn device(&self, bdev: &Bdev) -> PathBuf {
        match &bdev.kind {
            Kind::Aio { path } => path.clone(),
            Kind::Malloc { .. } => self.malloc.path(&bdev.name),
        }
    }

    /// Shares `bdev` (idempotent); returns whether configfs changed.
    fn export(&self, bdev: &Bdev) -> Result<bool, RequestError> {
        let device = self.device(bdev);
        let (backing, _) = device::probe(&device).map_err(|source| RequestError::DeviceGone {
            name: bdev.name.clone(),
            source,
        })?;
        let export = Export {
            uuid: bdev.uuid,
            device: &device,
            buffered_io: matches!(backing, Backing::File { in_ram: true })
                || matches!(bdev.kind, Kind::Malloc { .. }),
        };
        Ok(self.nvmet.share(&export)?)
    }

    fn save(&self) -> Result<(), StateError> {
        let records: Vec<BdevRecord> = self
            .bdevs
            .iter()
            .map(|b| b.record(self.nvmet.is_shared(b.uuid)))
            .collect();
        state::save(&self.state_path, &records)
    }

    /// Saves after a change the kernel already holds: a failure is logged,
    /// not returned, since configfs (the truth) has the change.
    fn save_or_warn(&self) {
        if let Err(e) = self.save() {
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
                    product_name: match b.kind {
                        Kind::Aio { .. } => "AIO disk",
                        Kind::Malloc { .. } => "Malloc disk",
                    }
                    .to_string(),
                    share_uri: if shared {
                        self.nvmet.share_uri(b.uuid)
                    } else {
                        String::new()
                    },
                }
            })
            .collect()
    }

    /// `Create`: returns the new bdev's name.
    pub fn create(&mut self, uri: &str) -> Result<String, RequestError> {
        let parsed = uri::parse(uri)?;
        let name = parsed.name;
        if let Some(b) = self.bdevs.iter().find(|b| b.name == name) {
            return Err(RequestError::Exists { name, uri: b.uri() });
        }
        if let Some(u) = parsed.uuid {
            if let Some(b) = self.bdevs.iter().find(|b| b.uuid == u) {
                return Err(RequestError::UuidTaken {
                    uuid: u,
                    other: b.name.clone(),
                });
            }
        }
        let uuid = parsed.uuid.unwrap_or_else(Uuid::new_v4);
        let (kind, geometry) = match parsed.kind {
            UriKind::Aio { path } => {
                let (_, geometry) = device::probe(&path)?;
                self.check_unused(&path)?;
                (Kind::Aio { path }, geometry)
            }
            UriKind::Malloc { size_mb: None } => {
                return Err(RequestError::MissingSize(UriError::MissingSizeMb {
                    uri: uri.to_string(),
                    name,
                }))
            }
            UriKind::Malloc {
                size_mb: Some(size_mb),
            } => {
                let path = self.malloc.create(&name, size_mb)?;
                match device::probe(&path) {
                    Ok((_, geometry)) => (Kind::Malloc { size_mb }, geometry),
                    Err(e) => {
                        let _ = self.malloc.remove(&name);
                        return Err(e.into());
                    }
                }
            }
        };
        let bdev = Bdev {
            name: name.clone(),
            uuid,
            kind,
            geometry,
        };
        self.bdevs.push(bdev);
        if let Err(e) = self.save() {
            if let Some(Bdev {
                kind: Kind::Malloc { .. },
                ..
            }) = self.bdevs.pop()
            {
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
        let parsed = uri::parse(uri)?;
        match self.bdevs.iter().find(|b| b.name == parsed.name) {
            Some(b) if b.matches(&parsed) => {
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
            if let Kind::Aio { path: other } = &b.kind {
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
        if let Err(e) = self.save() {
            self.bdevs.insert(index, bdev);
            return Err(e.into());
        }
        if let Kind::Malloc { .. } = bdev.kind {
            if let Err(e) = self.malloc.remove(&bdev.name) {
                warn!("{e}; the next start removes it");
            }
        }
        info!("destroyed bdev {} (uuid {uuid})", bdev.name);
        Ok(())
    }

    /// `Share`: returns the share URI; sharing again returns the same.
    pub fn share(&mut self, name: &str, proto: &str) -> Result<String, RequestError> {
        let index = self.find(name)?;
        if proto != PROTOCOL {
            return Err(RequestError::Protocol {
                proto: proto.escape_debug().to_string(),
            });
        }
        let bdev = &self.bdevs[index];
        let changed = self.export(bdev)?;
        let uri = self.nvmet.share_uri(bdev.uuid);
        if changed {
            info!("shared bdev {} at {uri}", bdev.name);
            self.save_or_warn();
        } else {
            info!("bdev {} was already shared at {uri}", bdev.name);
        }
        Ok(uri)
    }

    /// `Unshare`: removes the share; a bdev that is not shared is fine.
    pub fn unshare(&mut self, name: &str) -> Result<(), RequestError> {
        let index = self.find(name)?;
        let bdev = &self.bdevs[index];
        if self.nvmet.unshare(bdev.uuid)? {
            info!("unshared bdev {}", bdev.name);
            self.save_or_warn();
        } else {
            info!("bdev {} was not shared", bdev.name);
        }
        Ok(())
    }
}
