//! The tonic `BdevRpc` service: each call runs [`Target`]'s method under
//! one mutex on a blocking thread (configfs writes block in the kernel),
//! with a deadline so that no caller waits forever on a stuck kernel.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::{debug, error, warn};

use super::limits::{self, shown, shown_list};
use super::target::{RequestError, Target};
use crate::proto::mayastor::bdev_rpc_server::BdevRpc;
use crate::proto::mayastor::{BdevShareReply, BdevShareRequest, BdevUri, Bdevs, CreateReply, Null};

/// How long one request may take, waiting for earlier ones included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// `BdevRpc` over a shared [`Target`].
#[derive(Clone)]
pub struct BdevService {
    target: Arc<Mutex<Target>>,
}

impl BdevService {
    /// Serves `target`.
    pub fn new(target: Arc<Mutex<Target>>) -> Self {
        Self { target }
    }

    async fn call<T, F>(&self, what: String, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&mut Target) -> Result<T, RequestError> + Send + 'static,
    {
        call(&self.target, what, f).await
    }
}

/// Runs request `what` ([`locked`]) and turns its outcome into a reply,
/// logging refusals: what every service over the [`Target`] does.
pub(super) async fn call<T, F>(target: &Arc<Mutex<Target>>, what: String, f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&mut Target) -> Result<T, RequestError> + Send + 'static,
{
    debug!("request {what}");
    match locked(target, f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            warn!("{what} refused: {e}");
            Err(e.into())
        }
        Err(Stuck::Crashed(join)) => {
            error!("{what} crashed: {join}");
            Err(limits::status(
                tonic::Code::Internal,
                format!("{what} crashed in the agent: {join}"),
            ))
        }
        Err(Stuck::Timeout) => {
            error!(
                "{what} did not finish within {}s",
                REQUEST_DEADLINE.as_secs()
            );
            Err(Status::deadline_exceeded(format!(
                "{what} did not finish within {}s: the kernel may be stuck in a configfs operation (see dmesg and the agent's log); it goes on in the background",
                REQUEST_DEADLINE.as_secs()
            )))
        }
    }
}

/// Why [`locked`] has no result.
#[derive(Debug)]
pub(super) enum Stuck {
    /// The work panicked.
    Crashed(tokio::task::JoinError),
    /// It did not finish within [`REQUEST_DEADLINE`] (it goes on).
    Timeout,
}

/// Runs `f` on `target` under its lock on a blocking thread (configfs
/// writes block in the kernel), waiting at most [`REQUEST_DEADLINE`],
/// earlier requests included, so that no caller waits forever on a stuck
/// kernel.
pub(super) async fn locked<T, F>(target: &Arc<Mutex<Target>>, f: F) -> Result<T, Stuck>
where
    T: Send + 'static,
    F: FnOnce(&mut Target) -> T + Send + 'static,
{
    let target = Arc::clone(target);
    let job = tokio::task::spawn_blocking(move || {
        let mut target = target.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut target)
    });
    match tokio::time::timeout(REQUEST_DEADLINE, job).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join)) => Err(Stuck::Crashed(join)),
        Err(_) => Err(Stuck::Timeout),
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
