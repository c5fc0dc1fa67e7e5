//! The calls of the `Mayastor` service the agent serves: pools and
//! replicas ([`crate::agent::pools`]). Each runs through the agent's
//! [`Serial`], one at a time with the `BdevRpc` calls, as they do.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::agent::limits::{shown, shown_list};
use crate::agent::serial::Serial;
use crate::agent::service::call;
use crate::proto::mayastor::{
    CreatePoolRequest, CreateReplicaRequest, DestroyPoolRequest, DestroyReplicaRequest,
    ListPoolsReply, ListReplicasReply, Null, Pool, Replica, ShareReplicaReply, ShareReplicaRequest,
};

/// The served calls, over the agent's target.
#[derive(Clone)]
pub struct Calls {
    target: Arc<Serial>,
}

impl Calls {
    /// Serves `target`.
    pub fn new(target: Arc<Serial>) -> Self {
        Self { target }
    }

    /// `CreatePool`.
    pub async fn create_pool(
        &self,
        r: Request<CreatePoolRequest>,
    ) -> Result<Response<Pool>, Status> {
        let CreatePoolRequest { name, disks } = r.into_inner();
        let what = format!("CreatePool({}, {})", shown(&name), shown_list(&disks));
        let pool = call(&self.target, what, move |t| t.create_pool(&name, &disks)).await?;
        Ok(Response::new(pool))
    }

    /// `DestroyPool`.
    pub async fn destroy_pool(
        &self,
        r: Request<DestroyPoolRequest>,
    ) -> Result<Response<Null>, Status> {
        let name = r.into_inner().name;
        let what = format!("DestroyPool({})", shown(&name));
        call(&self.target, what, move |t| t.destroy_pool(&name)).await?;
        Ok(Response::new(Null {}))
    }

    /// `ListPools`.
    pub async fn list_pools(&self, _r: Request<Null>) -> Result<Response<ListPoolsReply>, Status> {
        let pools = call(&self.target, "ListPools".into(), |t| t.list_pools()).await?;
        Ok(Response::new(ListPoolsReply { pools }))
    }

    /// `CreateReplica`.
    pub async fn create_replica(
        &self,
        r: Request<CreateReplicaRequest>,
    ) -> Result<Response<Replica>, Status> {
        let req = r.into_inner();
        let what = format!(
            "CreateReplica({}, pool {}, {} bytes, thin {}, share {})",
            shown(&req.uuid),
            shown(&req.pool),
            req.size,
            req.thin,
            req.share
        );
        let replica = call(&self.target, what, move |t| t.create_replica(&req)).await?;
        Ok(Response::new(replica))
    }

    /// `DestroyReplica`.
    pub async fn destroy_replica(
        &self,
        r: Request<DestroyReplicaRequest>,
    ) -> Result<Response<Null>, Status> {
        let uuid = r.into_inner().uuid;
        let what = format!("DestroyReplica({})", shown(&uuid));
        call(&self.target, what, move |t| t.destroy_replica(&uuid)).await?;
        Ok(Response::new(Null {}))
    }

    /// `ListReplicas`.
    pub async fn list_replicas(
        &self,
        _r: Request<Null>,
    ) -> Result<Response<ListReplicasReply>, Status> {
        let replicas = call(&self.target, "ListReplicas".into(), |t| t.list_replicas()).await?;
        Ok(Response::new(ListReplicasReply { replicas }))
    }

    /// `ShareReplica`.
    pub async fn share_replica(
        &self,
        r: Request<ShareReplicaRequest>,
    ) -> Result<Response<ShareReplicaReply>, Status> {
        let ShareReplicaRequest { uuid, share } = r.into_inner();
        let what = format!("ShareReplica({}, {share})", shown(&uuid));
        let uri = call(&self.target, what, move |t| t.share_replica(&uuid, share)).await?;
        Ok(Response::new(ShareReplicaReply { uri }))
    }
}
