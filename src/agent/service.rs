//! The tonic `BdevRpc` service: each call runs [`BdevTable`]'s method through
//! [`Serial`]: one at a time, on a blocking thread (configfs writes block
//! in the kernel), within a deadline, so that no caller waits forever on a
//! stuck kernel and the callers behind a stuck one hold no thread.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::{debug, error, warn};

use super::bdevs::{BdevTable, RequestError};
use super::limits::{self, shown, shown_list};
use super::serial::{Serial, Stuck};
use crate::proto::mayastor::bdev_rpc_server::BdevRpc;
use crate::proto::mayastor::{BdevShareReply, BdevShareRequest, BdevUri, Bdevs, CreateReply, Null};

/// `BdevRpc` over a shared [`BdevTable`].
#[derive(Clone)]
pub struct BdevService {
    target: Arc<Serial>,
}

impl BdevService {
    /// Serves `target`.
    pub fn new(target: Arc<Serial>) -> Self {
        Self { target }
    }

    async fn call<T, F>(&self, what: String, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&mut BdevTable) -> Result<T, RequestError> + Send + 'static,
    {
        call(&self.target, what, f).await
    }
}

/// Runs request `what` through [`Serial`] and turns its outcome into a
/// reply, logging refusals: what every service over the [`BdevTable`] does.
pub(super) async fn call<T, F>(target: &Serial, what: String, f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&mut BdevTable) -> Result<T, RequestError> + Send + 'static,
{
    debug!("request {what}");
    match target.run(&what, f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            warn!("{what} refused: {e}");
            Err(e.into())
        }
        Err(e) => {
            match e {
                Stuck::Busy { .. } => warn!("{what} {e}"),
                Stuck::Crashed(_) | Stuck::Timeout { .. } => error!("{what} {e}"),
            }
            Err(limits::status(e.code(), format!("{what} {e}")))
        }
    }
}

#[tonic::async_trait]
impl BdevRpc for BdevService {
    async fn list(&self, _request: Request<Null>) -> Result<Response<Bdevs>, Status> {
        let bdevs = self.call("List".to_string(), |t| Ok(t.list())).await?;
        Ok(Response::new(Bdevs { bdevs }))
    }

    async fn create(&self, request: Request<BdevUri>) -> Result<Response<CreateReply>, Status> {
        let uri = request.into_inner().uri;
        let what = format!("Create({})", shown(&uri));
        let name = self.call(what, move |t| t.create(&uri)).await?;
        Ok(Response::new(CreateReply { name }))
    }

    async fn destroy(&self, request: Request<BdevUri>) -> Result<Response<Null>, Status> {
        let uri = request.into_inner().uri;
        let what = format!("Destroy({})", shown(&uri));
        self.call(what, move |t| t.destroy(&uri)).await?;
        Ok(Response::new(Null {}))
    }

    async fn share(
        &self,
        request: Request<BdevShareRequest>,
    ) -> Result<Response<BdevShareReply>, Status> {
        let BdevShareRequest {
            name,
            proto,
            allowed_hosts,
        } = request.into_inner();
        let what = format!(
            "Share({}, {}, allowed hosts {})",
            shown(&name),
            shown(&proto),
            shown_list(&allowed_hosts)
        );
        let uri = self
            .call(what, move |t| t.share(&name, &proto, &allowed_hosts))
            .await?;
        Ok(Response::new(BdevShareReply { uri }))
    }

    async fn unshare(&self, request: Request<CreateReply>) -> Result<Response<Null>, Status> {
        let name = request.into_inner().name;
        let what = format!("Unshare({})", shown(&name));
        self.call(what, move |t| t.unshare(&name)).await?;
        Ok(Response::new(Null {}))
    }
}
