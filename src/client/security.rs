//! A typed client for the agent's own `Security` service (what the agent
//! exposes, hosts' DH-HMAC-CHAP keys; see `proto/security.proto`), with a
//! deadline on every call. A real Mayastor does not serve it: calls fail
//! with `Unimplemented`.

use std::time::Duration;

use super::{AuthChannel, ClientError, Service};
use crate::proto::security::security_client::SecurityClient;
use crate::proto::security::{
    ExposureReply, ExposureRequest, RemoveHostRequest, SetHostKeyRequest,
};
use crate::token::Token;

/// A connection to one agent's `Security` service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Security(Service<SecurityClient<AuthChannel>>);

impl Security {
    /// Connects to the agent at `host:port` (its gRPC port), giving up
    /// after `timeout`; each later call also gets `timeout`, and carries
    /// `token` if the agent was started with `--token-file`.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        token: Option<Token>,
    ) -> Result<Self, ClientError> {
        Ok(Self(
            Service::connect(addr, timeout, token, SecurityClient::new).await?,
        ))
    }

    /// `Security.Exposure`: listen addresses, faults, token, allowed paths.
    pub async fn exposure(&self) -> Result<ExposureReply, ClientError> {
        let reply = self.0.rpc().exposure(ExposureRequest {}).await;
        Ok(reply
            .map_err(self.0.error("Security.Exposure"))?
            .into_inner())
    }

    /// `Security.SetHostKey`: host `host_nqn` must prove it holds `key`;
    /// with `ctrl_key` (not empty) the target proves itself in turn.
    pub async fn set_host_key(
        &self,
        host_nqn: &str,
        key: &str,
        ctrl_key: &str,
    ) -> Result<(), ClientError> {
        let req = SetHostKeyRequest {
            host_nqn: host_nqn.to_string(),
            key: key.to_string(),
            ctrl_key: ctrl_key.to_string(),
        };
        let reply = self.0.rpc().set_host_key(req).await;
        reply.map_err(self.0.error("Security.SetHostKey"))?;
        Ok(())
    }

    /// `Security.RemoveHost`: drops the entry (and keys) of a host the
    /// agent made and no share admits.
    pub async fn remove_host(&self, host_nqn: &str) -> Result<(), ClientError> {
        let req = RemoveHostRequest {
            host_nqn: host_nqn.to_string(),
        };
        let reply = self.0.rpc().remove_host(req).await;
        reply.map_err(self.0.error("Security.RemoveHost"))?;
        Ok(())
    }
}
