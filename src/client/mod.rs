//! Typed gRPC clients for a target, each call with a deadline: [`Target`]
//! for `BdevRpc` and [`Mayastor`] for the `Mayastor` service (the
//! nvmfcheck agent or a real Mayastor), [`Control`] and
//! [`Security`] for the agent's own services. This module holds what they
//! share: the channel, its token and the error type.

mod bdev;
mod control;
mod mayastor;
mod security;

pub use bdev::Target;
pub use control::Control;
pub use mayastor::{ChildOf, Mayastor};
pub use security::Security;

use std::time::{Duration, Instant};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::token::{SendToken, Token};

/// A channel that sends the agent's token, if one is given.
pub(crate) type AuthChannel = InterceptedService<Channel, SendToken>;

/// Default deadline for connecting and for each call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the target failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target address is not `host:port`.
    #[error("bad target address {addr:?}: {reason} (expected host:port, e.g. 127.0.0.1:10124)")]
    Address {
        /// What was given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No gRPC connection could be made in time.
    #[error("cannot reach the target at {addr} (is the agent running and the port right?)")]
    Connect {
        /// The target address.
        addr: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The target answered a call with an error status, or did not
    /// answer within the deadline.
    #[error("{call} to {addr} failed: {:?}: {}{}", .status.code(), .status.message(), hint(.status.code()))]
    Rpc {
        /// The target address.
        addr: String,
        /// The method, e.g. `BdevRpc.Share`.
        call: &'static str,
        /// The status the target returned (or the deadline that passed).
        status: tonic::Status,
    },
}

impl ClientError {
    /// The gRPC status code, when the target answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// Calls `call` until it succeeds or `deadline` passes, pausing `poll`
/// between tries; returns the last error. A gRPC channel whose server went
/// away (an agent restarting, a VM booting) connects again only on a later
/// call, so waiting for a server is retrying a call.
pub async fn retry<T, E, F, Fut>(deadline: Instant, poll: Duration, mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(poll).await,
        }
    }
}

/// What each client holds: the address it talks to, for messages, and the
/// generated client of its service on an [`auth_channel`].
#[derive(Debug, Clone)]
pub(crate) struct Service<C> {
    addr: String,
    rpc: C,
}

impl<C: Clone> Service<C> {
    /// Connects to `addr` (`host:port`), giving up after `timeout`; each
    /// later call also gets `timeout`, and carries `token` if there is one.
    /// `new` makes the generated client on the channel.
    pub(crate) async fn connect(
        addr: &str,
        timeout: Duration,
        token: Option<Token>,
        new: impl FnOnce(AuthChannel) -> C,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            addr: addr.to_string(),
            rpc: new(auth_channel(addr, timeout, token).await?),
        })
    }

    /// The address this client talks to.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The generated client, for one call: its calls take it by `&mut`, and
    /// its clones share the channel.
    pub(crate) fn rpc(&self) -> C {
        self.rpc.clone()
    }

    /// Turns the status of call `call` into an error naming the address.
    pub(crate) fn error(
        &self,
        call: &'static str,
    ) -> impl FnOnce(tonic::Status) -> ClientError + '_ {
        let addr = &self.addr;
        move |status| ClientError::Rpc {
            addr: addr.clone(),
            call,
            status,
        }
    }
}

/// [`channel`] whose every call carries `token`, if there is one.
async fn auth_channel(
    addr: &str,
    timeout: Duration,
    token: Option<Token>,
) -> Result<AuthChannel, ClientError> {
    Ok(InterceptedService::new(
        channel(addr, timeout).await?,
        SendToken(token),
    ))
}

/// A gRPC channel to `host:port`, connected within `timeout`; each call
/// on it also gets `timeout` as its deadline.
async fn channel(addr: &str, timeout: Duration) -> Result<Channel, ClientError> {
    let bad = |reason: &str| ClientError::Address {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("the port is not a number from 1 to 65535")),
    }
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout);
    tokio::time::timeout(timeout, endpoint.connect())
        .await
        .map_err(|_| ClientError::Rpc {
            addr: addr.to_string(),
            call: "connect",
            status: tonic::Status::deadline_exceeded(format!(
                "no connection to {addr} within {}s",
                timeout.as_secs_f64()
            )),
        })?
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// What to do about errors that are not the target's verdict on a request.
fn hint(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
            " (the target did not answer in time: is it overloaded or hung? --timeout gives it longer)"
        }
        tonic::Code::Unavailable => " (is the agent still running?)",
        _ => "",
    }
}
