//! The tonic `Security` service (`proto/security.proto`): what the agent
//! exposes, and the DH-HMAC-CHAP keys of hosts (set through [`Serial`], as
//! every change to the [`super::bdevs::BdevTable`]). It answers behind the same
//! token as `BdevRpc`. Keys never appear in a log line or a reply.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::limits::shown;
use super::serial::Serial;
use super::service::call;
use crate::proto::security as pb;
use crate::proto::security::security_server::Security;

/// `Security` over a shared [`BdevTable`].
#[derive(Clone)]
pub struct SecurityService {
    target: Arc<Serial>,
    exposure: pb::ExposureReply,
}

impl SecurityService {
    /// Serves `target`; `exposure` is what `Exposure` answers.
    pub fn new(target: Arc<Serial>, exposure: pb::ExposureReply) -> Self {
        Self { target, exposure }
    }
}

#[tonic::async_trait]
impl Security for SecurityService {
    async fn exposure(
        &self,
        _request: Request<pb::ExposureRequest>,
    ) -> Result<Response<pb::ExposureReply>, Status> {
        Ok(Response::new(self.exposure.clone()))
    }

    async fn set_host_key(
        &self,
        request: Request<pb::SetHostKeyRequest>,
    ) -> Result<Response<pb::SetHostKeyReply>, Status> {
        let pb::SetHostKeyRequest {
            host_nqn,
            key,
            ctrl_key,
        } = request.into_inner();
        let what = format!("SetHostKey({})", shown(&host_nqn));
        call(&self.target, what, move |t| {
            t.set_host_key(&host_nqn, &key, &ctrl_key)
        })
        .await?;
        Ok(Response::new(pb::SetHostKeyReply {}))
    }

    async fn remove_host(
        &self,
        request: Request<pb::RemoveHostRequest>,
    ) -> Result<Response<pb::RemoveHostReply>, Status> {
        let host = request.into_inner().host_nqn;
        let what = format!("RemoveHost({})", shown(&host));
        call(&self.target, what, move |t| t.remove_host(&host)).await?;
        Ok(Response::new(pb::RemoveHostReply {}))
    }
}
