//! Why a pool or replica call was refused, and the gRPC code of each.

use std::path::PathBuf;

use tonic::Code;

use super::lvm::LvmError;
use crate::agent::aio_paths::PathRefused;
use crate::agent::nvmet::NvmetError;

/// Why a pool or replica call was refused; [`PoolError::code`] gives its
/// gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A pool name LVM cannot take as a volume group name.
    #[error("pool name {name} {problem}; give 1 to 64 of A-Z a-z 0-9 + _ . - (not starting with -), e.g. pool1")]
    BadName {
        /// The name, escaped.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Not exactly one disk.
    #[error("{count} disks were given; a pool is made on exactly one disk, e.g. [\"/dev/vdb\"]")]
    DiskCount {
        /// How many.
        count: usize,
    },
    /// A disk that is not a path or `aio://` URI of one.
    #[error("disk {disk} {problem}")]
    BadDisk {
        /// The disk, escaped.
        disk: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A disk that does not exist.
    #[error("disk {} does not exist; give a block device of the target, e.g. /dev/vdb", .0.display())]
    DiskMissing(PathBuf),
    /// A disk outside the `--allow-path` list.
    #[error(transparent)]
    PathRefused(#[from] PathRefused),
    /// Create of a pool whose name another disk's pool has.
    #[error("pool {name} already exists on {}; destroy it first, or give another name", .disk.display())]
    PoolExists {
        /// The name.
        name: String,
        /// Its disk.
        disk: PathBuf,
    },
    /// A volume group of that name that the agent did not make.
    #[error("a volume group named {0} exists that this agent did not make (it lacks the nvmfcheck tag); give another pool name")]
    ForeignName(String),
    /// A disk another pool or bdev uses.
    #[error("disk {} is already used by {user}; destroy that first, or give another disk", .disk.display())]
    DiskInUse {
        /// The disk.
        disk: PathBuf,
        /// `pool X` or `bdev Y`.
        user: String,
    },
    /// A disk in a volume group the agent did not make.
    #[error("disk {} belongs to volume group {vg}, which this agent did not make; remove it (vgremove, pvremove) or give another disk", .disk.display())]
    DiskForeign {
        /// The disk.
        disk: PathBuf,
        /// The volume group.
        vg: String,
    },
    /// Destroy of a volume group the agent did not make.
    #[error("volume group {0} was not made by this agent; remove it with vgremove if it is to go")]
    NotOurs(String),
    /// Destroy of a pool holding volumes the agent did not make.
    #[error("pool {pool} holds logical volumes this agent did not make ({lvs}); remove them (lvremove) first")]
    ForeignVolumes {
        /// The pool.
        pool: String,
        /// The volumes.
        lvs: String,
    },
    /// A replica uuid that is not one.
    #[error("replica uuid {uuid} {problem}; give one like 0b9e1c4a-5c3e-4f6a-9d2b-7e8f00112233 (lower case, with hyphens)")]
    BadUuid {
        /// The value, escaped.
        uuid: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A pool that does not exist.
    #[error("no pool is named {0}; ListPools shows the pools and CreatePool makes one")]
    UnknownPool(String),
    /// A replica that does not exist.
    #[error("no replica has uuid {0}; ListReplicas shows the replicas")]
    UnknownReplica(String),
    /// Create of a replica that exists otherwise.
    #[error("replica {uuid} already exists in pool {pool} with {size} bytes; destroy it first, or ask for it as it is")]
    ReplicaExists {
        /// The uuid.
        uuid: String,
        /// Its pool.
        pool: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A replica uuid a bdev has.
    #[error("uuid {uuid} belongs to bdev `{bdev}`; give another uuid")]
    UuidTaken {
        /// The uuid.
        uuid: String,
        /// The bdev.
        bdev: String,
    },
    /// Size 0.
    #[error("replica size 0 is not a size; give the size in bytes, e.g. 67108864 for 64 MiB")]
    ZeroSize,
    /// More than the pool has free.
    #[error("pool {pool} has {free} bytes free, too few for a replica of {size} bytes (rounded up to whole {extent}-byte extents); give a smaller size, or free space")]
    NoSpace {
        /// The pool.
        pool: String,
        /// The size asked for.
        size: u64,
        /// Free bytes.
        free: u64,
        /// The pool's extent size.
        extent: u64,
    },
    /// A share protocol the agent does not serve.
    #[error("share protocol {0} is not supported; give REPLICA_NONE (0) or REPLICA_NVMF (1)")]
    Protocol(String),
    /// LVM failed.
    #[error(transparent)]
    Lvm(#[from] LvmError),
    /// The kernel target failed.
    #[error(transparent)]
    Nvmet(#[from] NvmetError),
    /// A call failed and undoing its part failed too.
    #[error("{cause}; undoing it also failed ({undo}), which left {left}: retry the call, or remove it by hand")]
    Incomplete {
        /// The first failure.
        cause: Box<PoolError>,
        /// Why undoing failed.
        undo: String,
        /// What stayed behind.
        left: String,
    },
}

impl PoolError {
    /// The gRPC status code for this error.
    pub fn code(&self) -> Code {
        match self {
            PoolError::BadName { .. }
            | PoolError::DiskCount { .. }
            | PoolError::BadDisk { .. }
            | PoolError::BadUuid { .. }
            | PoolError::ZeroSize
            | PoolError::Protocol(_) => Code::InvalidArgument,
            PoolError::DiskMissing(_)
            | PoolError::UnknownPool(_)
            | PoolError::UnknownReplica(_) => Code::NotFound,
            PoolError::PathRefused(_) => Code::PermissionDenied,
            PoolError::PoolExists { .. }
            | PoolError::ForeignName(_)
            | PoolError::DiskInUse { .. }
            | PoolError::ReplicaExists { .. }
            | PoolError::UuidTaken { .. } => Code::AlreadyExists,
            PoolError::DiskForeign { .. }
            | PoolError::NotOurs(_)
            | PoolError::ForeignVolumes { .. }
            | PoolError::Lvm(LvmError::Missing(_)) => Code::FailedPrecondition,
            PoolError::NoSpace { .. } => Code::ResourceExhausted,
            PoolError::Lvm(_) | PoolError::Nvmet(_) | PoolError::Incomplete { .. } => {
                Code::Internal
            }
        }
    }
}
