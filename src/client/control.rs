//! A typed client for the agent's own `Control` service (faults, restart,
//! identity; see `proto/control.proto`), with a deadline on every call.
//! A real Mayastor does not serve it: calls fail with `Unimplemented`.

use std::time::Duration;

use super::{AuthChannel, ClientError, Service};
use crate::proto::control::control_client::ControlClient;
use crate::proto::control::{
    Fault, InfoReply, InfoRequest, LinkDownRequest, PortDownRequest, PowerCycleReply,
    PowerCycleRequest, RestartRequest,
};
use crate::token::Token;

/// A connection to one agent's `Control` service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control(Service<ControlClient<AuthChannel>>);

impl Control {
    /// Connects to the agent at `host:port` (its gRPC port), giving up
    /// after `timeout`; each later call also gets `timeout`, and carries
    /// `token` if the agent was started with `--token-file`.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        token: Option<Token>,
    ) -> Result<Self, ClientError> {
        Ok(Self(
            Service::connect(addr, timeout, token, ControlClient::new).await?,
        ))
    }

    /// `Control.LinkDown`: the target's NVMe link goes down for `seconds`
    /// shortly after the reply, then up again. Until then the agent is
    /// unreachable if this client reaches it over that link.
    pub async fn link_down(&self, seconds: u32) -> Result<Fault, ClientError> {
        let reply = self.0.rpc().link_down(LinkDownRequest { seconds }).await;
        self.fault(
            reply
                .map_err(self.0.error("Control.LinkDown"))?
                .into_inner()
                .fault,
        )
    }

    /// `Control.PortDown`: TCP port `port` of the target is unlinked from
    /// its subsystems for `seconds`.
    pub async fn port_down(&self, port: u16, seconds: u32) -> Result<Fault, ClientError> {
        let req = PortDownRequest {
            port: port.into(),
            seconds,
        };
        let reply = self.0.rpc().port_down(req).await;
        self.fault(
            reply
                .map_err(self.0.error("Control.PortDown"))?
                .into_inner()
                .fault,
        )
    }

    /// `Control.Restart`: the agent re-executes itself after replying;
    /// returns the instance that restarts.
    pub async fn restart(&self) -> Result<String, ClientError> {
        let reply = self.0.rpc().restart(RestartRequest {}).await;
        Ok(reply
            .map_err(self.0.error("Control.Restart"))?
            .into_inner()
            .instance)
    }

    /// `Control.PowerCycle`: the target's machine resets at once, without
    /// a sync, shortly after the reply, which names the boot that ends.
    /// Refused (`FailedPrecondition`) unless the agent allows it.
    pub async fn power_cycle(&self) -> Result<PowerCycleReply, ClientError> {
        let reply = self.0.rpc().power_cycle(PowerCycleRequest {}).await;
        Ok(reply
            .map_err(self.0.error("Control.PowerCycle"))?
            .into_inner())
    }

    /// `Control.Info`: instance, pid, uptime, boot id and faults in force.
    pub async fn info(&self) -> Result<InfoReply, ClientError> {
        let reply = self.0.rpc().info(InfoRequest {}).await;
        Ok(reply.map_err(self.0.error("Control.Info"))?.into_inner())
    }

    fn fault(&self, fault: Option<Fault>) -> Result<Fault, ClientError> {
        fault.ok_or_else(|| {
            self.0.error("Control")(tonic::Status::internal("the reply carries no fault"))
        })
    }
}
