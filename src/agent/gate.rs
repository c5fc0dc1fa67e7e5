//! Who may call the agent: with `--token-file`, only callers that send the
//! token (`UNAUTHENTICATED` otherwise); and the `Control` service, which
//! can take the target's network down and restart the agent, only when
//! the agent was started with `--faults` (`PERMISSION_DENIED` otherwise).
//! Both are decided from the request's headers, before its message is
//! read and before anything changes.

use tonic::{Request, Status};
use tracing::warn;

use crate::token::Token;

/// What `Control` answers on an agent started without `--faults`.
const FAULTS_OFF: &str = "the Control service is off on this agent: start it with --faults \
     (NixOS: services.nvmfcheck-agent.enableFaults = true) to inject faults, restart it or ask \
     its Info";

/// A tonic interceptor that admits or refuses each call of one service.
#[derive(Debug, Clone)]
pub struct Gate {
    token: Option<Token>,
    /// Why every call is refused, if it is.
    closed: Option<&'static str>,
}

impl Gate {
    /// Admits callers with `token` (everyone without one).
    pub fn open(token: Option<Token>) -> Self {
        Self {
            token,
            closed: None,
        }
    }

    /// The gate of `Control`: [`Gate::open`] with `faults`, closed without.
    pub fn faults(token: Option<Token>, faults: bool) -> Self {
        Self {
            token,
            closed: (!faults).then_some(FAULTS_OFF),
        }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            if !token.admits(&request) {
                let peer = request
                    .remote_addr()
                    .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
                warn!("refused a call from {peer}: no valid token");
                return Err(Token::refusal(&request));
            }
        }
        match self.closed {
            Some(why) => Err(Status::permission_denied(why)),
            None => Ok(request),
        }
    }
}
