//! nvmfcheck's own `Control` service (`proto/control.proto`, package
//! `nvmfcheck.control.v1`), served beside `BdevRpc` on the agent's gRPC
//! port: faults injected from inside the target, so that they work the same
//! in the QEMU runner and the NixOS tests, and the agent's identity.
//!
//! - `LinkDown{seconds}` sets the interface carrying the agent's NVMe
//!   address down (`ip link set`), replying first; `PortDown{port,
//!   seconds}` unlinks one of the agent's ports from its subsystems. Both
//!   end at their deadline even across a restart of the agent, and at once
//!   when it stops (see [`faults`]).
//! - `Restart{}` replies, then the agent stops serving and re-executes
//!   itself ([`super::reexec`]), rebuilding its view from configfs.
//! - `PowerCycle{}` replies, then resets the machine without a sync
//!   ([`power`]); only with `--allow-power-cycle`, else
//!   `FAILED_PRECONDITION`.
//! - `Info{}` gives a uuid drawn at each start, the pid, the uptime, the
//!   kernel's boot id and the faults in force.
//!
//! Input is validated before anything changes: `seconds` outside 1 to
//! [`faults::MAX_SECONDS`] and ports outside 1 to 65535 are
//! `INVALID_ARGUMENT`, a port the agent does not serve is `NOT_FOUND`, a
//! port with nothing linked, a second fault on the same thing, or an
//! address with no link to take down are `FAILED_PRECONDITION`.

pub mod faults;
mod link;
pub mod power;
mod record;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tonic::{Code, Request, Response, Status};
use tracing::{info, warn};
use uuid::Uuid;

use super::nvmet::NvmetError;
use super::serial::Stuck;
use crate::cmd::CmdError;
use crate::proto::control as pb;
use crate::proto::control::control_server::Control;
use faults::{Faults, MAX_SECONDS};
use record::duration_ms;

/// How long after replying to `Restart` the agent stops serving, so that
/// the reply gets out first.
const RESTART_DELAY: Duration = Duration::from_millis(100);

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A duration out of range.
    #[error("seconds {0} is out of range: give 1 to {MAX_SECONDS}")]
    Seconds(u32),
    /// Not a TCP port number.
    #[error("port {0} is not a TCP port: give 1 to 65535")]
    PortRange(u32),
    /// A port this agent does not serve.
    #[error("this agent serves NVMe/TCP on {address} ports {discovery} (discovery) and {io} (I/O), not {port}")]
    UnknownPort {
        /// The port asked for.
        port: u16,
        /// The agent's address.
        address: Ipv4Addr,
        /// Its discovery port.
        discovery: u16,
        /// Its I/O port.
        io: u16,
    },
    /// A port with no subsystem linked (nothing shared, or already down).
    #[error("port {address}:{port} serves no subsystem, so there is nothing to take down: share a bdev first")]
    PortIdle {
        /// The port.
        port: u16,
        /// The agent's address.
        address: Ipv4Addr,
    },
    /// A fault on something that is already down.
    #[error("{what} is in force for {:.1} more seconds; wait until it ends", .left.as_secs_f64())]
    AlreadyDown {
        /// The fault in force.
        what: String,
        /// Until it ends.
        left: Duration,
    },
    /// No link to take down for the agent's address.
    #[error("no network link carries the agent's address {address}: {why}")]
    NoInterface {
        /// The agent's `--address`.
        address: Ipv4Addr,
        /// What was found instead.
        why: String,
    },
    /// A configfs operation failed.
    #[error(transparent)]
    Nvmet(#[from] NvmetError),
    /// `ip` failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// The fault could not be recorded, so it was not made.
    #[error("cannot record the fault in {}: {cause}; nothing was changed", .path.display())]
    Persist {
        /// `faults.json`.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// PowerCycle on an agent started without `--allow-power-cycle`.
    #[error(
        "this agent may not reset its machine: start it with --allow-power-cycle (on a \
         throwaway VM only) to serve PowerCycle"
    )]
    PowerCycleOff,
    /// The request crashed, did not finish in time, or could not start
    /// because the agent was busy (see [`Stuck`]).
    #[error("the request {0}")]
    Stuck(#[from] Stuck),
}

impl ControlError {
    /// The gRPC status code the error travels as.
    pub fn code(&self) -> Code {
        match self {
            Self::Seconds(_) | Self::PortRange(_) => Code::InvalidArgument,
            Self::UnknownPort { .. } => Code::NotFound,
            Self::PortIdle { .. }
            | Self::AlreadyDown { .. }
            | Self::NoInterface { .. }
            | Self::PowerCycleOff => Code::FailedPrecondition,
            Self::Stuck(e) => e.code(),
            Self::Nvmet(_) | Self::Cmd(_) | Self::Persist { .. } => Code::Internal,
        }
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Self {
        super::limits::status(e.code(), e.to_string())
    }
}

/// The `Control` service of one agent instance.
pub struct ControlService {
    faults: Arc<Faults>,
    instance: Uuid,
    started: Instant,
    restart: Arc<Notify>,
    power_cycle: Option<PathBuf>,
}

impl ControlService {
    /// Serves `faults`; `Restart` notifies `restart`; `PowerCycle` writes
    /// to `power_cycle`, if given (see [`power`]).
    pub fn new(
        faults: Arc<Faults>,
        instance: Uuid,
        started: Instant,
        restart: Arc<Notify>,
        power_cycle: Option<PathBuf>,
    ) -> Self {
        Self {
            faults,
            instance,
            started,
            restart,
            power_cycle,
        }
    }
}

fn refused(what: &str, e: ControlError) -> Status {
    warn!("{what} refused: {e}");
    e.into()
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn link_down(
        &self,
        request: Request<pb::LinkDownRequest>,
    ) -> Result<Response<pb::FaultReply>, Status> {
        let seconds = request.into_inner().seconds;
        let fault = self
            .faults
            .link_down(seconds)
            .await
            .map_err(|e| refused(&format!("LinkDown({seconds})"), e))?;
        Ok(Response::new(pb::FaultReply { fault: Some(fault) }))
    }

    async fn port_down(
        &self,
        request: Request<pb::PortDownRequest>,
    ) -> Result<Response<pb::FaultReply>, Status> {
        let pb::PortDownRequest { port, seconds } = request.into_inner();
        let fault = self
            .faults
            .port_down(port, seconds)
            .await
            .map_err(|e| refused(&format!("PortDown({port}, {seconds})"), e))?;
        Ok(Response::new(pb::FaultReply { fault: Some(fault) }))
    }

    async fn restart(
        &self,
        _request: Request<pb::RestartRequest>,
    ) -> Result<Response<pb::RestartReply>, Status> {
        info!(
            "Restart: instance {} stops serving and restarts",
            self.instance
        );
        let restart = Arc::clone(&self.restart);
        tokio::spawn(async move {
            tokio::time::sleep(RESTART_DELAY).await;
            restart.notify_one();
        });
        Ok(Response::new(pb::RestartReply {
            instance: self.instance.to_string(),
        }))
    }

    async fn power_cycle(
        &self,
        _request: Request<pb::PowerCycleRequest>,
    ) -> Result<Response<pb::PowerCycleReply>, Status> {
        let trigger = self
            .power_cycle
            .clone()
            .ok_or_else(|| refused("PowerCycle", ControlError::PowerCycleOff))?;
        power::reset_soon(trigger);
        Ok(Response::new(pb::PowerCycleReply {
            boot_id: power::boot_id(),
            reset_in_ms: duration_ms(power::RESET_DELAY),
        }))
    }

    async fn info(
        &self,
        _request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoReply>, Status> {
        Ok(Response::new(pb::InfoReply {
            instance: self.instance.to_string(),
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            faults: self.faults.list(),
            boot_id: power::boot_id(),
        }))
    }
}
