//! Why a nexus or rebuild call was refused, and the gRPC code of each.

use tonic::Code;

use super::kernel::KernelError;
use crate::agent::nvmet::NvmetError;
use crate::agent::pools::PoolError;

/// Why a nexus or rebuild call was refused; [`NexusError::code`] gives its
/// gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum NexusError {
    /// A nexus uuid that is not one.
    #[error("nexus uuid {uuid} {problem}; give one like 0b9e1c4a-5c3e-4f6a-9d2b-7e8f00112233 (lower case, with hyphens)")]
    BadUuid {
        /// The value, escaped.
        uuid: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A size that cannot be a nexus's.
    #[error("nexus size {0} is not a positive multiple of 4096 bytes; give the size in bytes, e.g. 62914560 for 60 MiB")]
    BadSize(u64),
    /// No children.
    #[error("a nexus needs at least one child; give replica URIs, e.g. bdev:///<uuid> or nvmf://192.168.1.3:8430/nqn.2019-05.io.openebs:<uuid>")]
    NoChildren,
    /// A child URI the agent cannot use.
    #[error("child {uri} {problem}; give bdev:///<replica uuid> for a replica of this agent or nvmf://<ip>:<port>/<nqn> for a remote one")]
    BadChild {
        /// The URI, escaped.
        uri: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The same child twice.
    #[error("child {0} is given twice; give each child once")]
    SameChild(String),
    /// A child too small for the nexus.
    #[error("child {uri} has {size} bytes, too few for a nexus of {nexus} bytes: md's superblock and bitmap take up to {reserve} bytes at its end; give a smaller nexus or a bigger replica")]
    ChildTooSmall {
        /// The child.
        uri: String,
        /// Its size.
        size: u64,
        /// The nexus's size.
        nexus: u64,
        /// What md keeps for itself.
        reserve: u64,
    },
    /// A nexus that does not exist.
    #[error("no nexus has uuid {0}; ListNexus shows the nexuses")]
    UnknownNexus(String),
    /// A child the nexus does not have.
    #[error("nexus {nexus} has no child {uri}; ListNexus shows its children")]
    UnknownChild {
        /// The nexus.
        nexus: String,
        /// The child.
        uri: String,
    },
    /// Create of a nexus that exists otherwise.
    #[error("nexus {uuid} already exists with {size} bytes and children {children}; destroy it first, or ask for it as it is")]
    NexusExists {
        /// The uuid.
        uuid: String,
        /// Its size.
        size: u64,
        /// Its children.
        children: String,
    },
    /// Add of a child the nexus has.
    #[error("nexus {nexus} already has child {uri}")]
    ChildExists {
        /// The nexus.
        nexus: String,
        /// The child.
        uri: String,
    },
    /// Removal of the last child.
    #[error("child {uri} is the last of nexus {nexus}; destroy the nexus instead")]
    LastChild {
        /// The nexus.
        nexus: String,
        /// The child.
        uri: String,
    },
    /// A publish protocol the agent does not serve.
    #[error("share protocol {0} is not supported; give NEXUS_NVMF (1)")]
    Protocol(String),
    /// A key that is neither empty nor 16 characters.
    #[error("key of {0} characters: give none, or 16 characters as Mayastor does")]
    BadKey(usize),
    /// A child action that is neither offline nor online.
    #[error("child action {0} is not one; give offline (0) or online (1)")]
    BadAction(i32),
    /// A child that is not in the state the call needs.
    #[error("child {uri} of nexus {nexus} is {state}; {needs}")]
    ChildState {
        /// The nexus.
        nexus: String,
        /// The child.
        uri: String,
        /// Its state.
        state: &'static str,
        /// What the call needs.
        needs: &'static str,
    },
    /// No rebuild of that child.
    #[error("child {uri} of nexus {nexus} has no rebuild; StartRebuild starts one")]
    NoRebuild {
        /// The nexus.
        nexus: String,
        /// The child.
        uri: String,
    },
    /// A rebuild with no child to copy from.
    #[error("nexus {0} has no child in sync to rebuild from")]
    NoSource(String),
    /// A replica child the pools do not have.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The kernel failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The kernel target failed.
    #[error(transparent)]
    Nvmet(#[from] NvmetError),
    /// A call failed and undoing its part failed too.
    #[error("{cause}; undoing it also failed ({undo}): ListNexus shows what is left")]
    Incomplete {
        /// The first failure.
        cause: Box<NexusError>,
        /// Why undoing failed.
        undo: String,
    },
}

impl NexusError {
    /// The gRPC status code for this error.
    pub fn code(&self) -> Code {
        match self {
            NexusError::BadUuid { .. }
            | NexusError::BadSize(_)
            | NexusError::NoChildren
            | NexusError::BadChild { .. }
            | NexusError::SameChild(_)
            | NexusError::ChildTooSmall { .. }
            | NexusError::Protocol(_)
            | NexusError::BadKey(_)
            | NexusError::BadAction(_)
            | NexusError::LastChild { .. } => Code::InvalidArgument,
            NexusError::UnknownNexus(_)
            | NexusError::UnknownChild { .. }
            | NexusError::NoRebuild { .. } => Code::NotFound,
            NexusError::NexusExists { .. } | NexusError::ChildExists { .. } => Code::AlreadyExists,
            NexusError::ChildState { .. } | NexusError::NoSource(_) => Code::FailedPrecondition,
            NexusError::Pool(e) => e.code(),
            NexusError::Kernel(_) | NexusError::Nvmet(_) | NexusError::Incomplete { .. } => {
                Code::Internal
            }
        }
    }
}
