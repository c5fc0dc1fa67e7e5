//! The calls of the `Mayastor` service the agent serves: pools and
//! replicas ([`crate::agent::pools`]), nexuses and their rebuilds
//! ([`crate::agent::nexus`]). Each runs through the agent's
//! [`Serial`], one at a time with the `BdevRpc` calls, as they do.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::agent::bdevs::nexus_calls::RebuildOp;
use crate::agent::limits::{shown, shown_list};
use crate::agent::serial::Serial;
use crate::agent::service::call;
use crate::proto::mayastor::{
    AddChildNexusRequest, Child, ChildNexusRequest, CreateNexusRequest, CreatePoolRequest,
    CreateReplicaRequest, DestroyNexusRequest, DestroyPoolRequest, DestroyReplicaRequest,
    ListNexusReply, ListPoolsReply, ListReplicasReply, Nexus, Null, PauseRebuildRequest, Pool,
    PublishNexusReply, PublishNexusRequest, RebuildProgressReply, RebuildProgressRequest,
    RebuildStateReply, RebuildStateRequest, RemoveChildNexusRequest, Replica, ResumeRebuildRequest,
    ShareReplicaReply, ShareReplicaRequest, StartRebuildRequest, StopRebuildRequest,
    UnpublishNexusRequest,
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

    /// `CreateNexus`.
    pub async fn create_nexus(
        &self,
        r: Request<CreateNexusRequest>,
    ) -> Result<Response<Nexus>, Status> {
        let req = r.into_inner();
        let what = format!(
            "CreateNexus({}, {} bytes, children {})",
            shown(&req.uuid),
            req.size,
            shown_list(&req.children)
        );
        let nexus = call(&self.target, what, move |t| t.create_nexus(&req)).await?;
        Ok(Response::new(nexus))
    }

    /// `DestroyNexus`.
    pub async fn destroy_nexus(
        &self,
        r: Request<DestroyNexusRequest>,
    ) -> Result<Response<Null>, Status> {
        let uuid = r.into_inner().uuid;
        let what = format!("DestroyNexus({})", shown(&uuid));
        call(&self.target, what, move |t| t.destroy_nexus(&uuid)).await?;
        Ok(Response::new(Null {}))
    }

    /// `ListNexus`.
    pub async fn list_nexus(&self, _r: Request<Null>) -> Result<Response<ListNexusReply>, Status> {
        let nexus_list = call(&self.target, "ListNexus".into(), |t| t.list_nexus()).await?;
        Ok(Response::new(ListNexusReply { nexus_list }))
    }

    /// `AddChildNexus`.
    pub async fn add_child_nexus(
        &self,
        r: Request<AddChildNexusRequest>,
    ) -> Result<Response<Child>, Status> {
        let req = r.into_inner();
        let what = format!(
            "AddChildNexus({}, {}, norebuild {})",
            shown(&req.uuid),
            shown(&req.uri),
            req.norebuild
        );
        let child = call(&self.target, what, move |t| t.add_child_nexus(&req)).await?;
        Ok(Response::new(child))
    }

    /// `RemoveChildNexus`.
    pub async fn remove_child_nexus(
        &self,
        r: Request<RemoveChildNexusRequest>,
    ) -> Result<Response<Null>, Status> {
        let req = r.into_inner();
        let what = format!(
            "RemoveChildNexus({}, {})",
            shown(&req.uuid),
            shown(&req.uri)
        );
        call(&self.target, what, move |t| t.remove_child_nexus(&req)).await?;
        Ok(Response::new(Null {}))
    }

    /// `PublishNexus`.
    pub async fn publish_nexus(
        &self,
        r: Request<PublishNexusRequest>,
    ) -> Result<Response<PublishNexusReply>, Status> {
        let req = r.into_inner();
        let what = format!("PublishNexus({}, share {})", shown(&req.uuid), req.share);
        let device_uri = call(&self.target, what, move |t| t.publish_nexus(&req)).await?;
        Ok(Response::new(PublishNexusReply { device_uri }))
    }

    /// `UnpublishNexus`.
    pub async fn unpublish_nexus(
        &self,
        r: Request<UnpublishNexusRequest>,
    ) -> Result<Response<Null>, Status> {
        let uuid = r.into_inner().uuid;
        let what = format!("UnpublishNexus({})", shown(&uuid));
        call(&self.target, what, move |t| t.unpublish_nexus(&uuid)).await?;
        Ok(Response::new(Null {}))
    }

    /// `ChildOperation`.
    pub async fn child_operation(
        &self,
        r: Request<ChildNexusRequest>,
    ) -> Result<Response<Null>, Status> {
        let req = r.into_inner();
        let what = format!(
            "ChildOperation({}, {}, action {})",
            shown(&req.uuid),
            shown(&req.uri),
            req.action
        );
        call(&self.target, what, move |t| t.child_operation(&req)).await?;
        Ok(Response::new(Null {}))
    }

    async fn rebuild(
        &self,
        op: RebuildOp,
        uuid: String,
        uri: String,
    ) -> Result<Response<Null>, Status> {
        let what = format!("{op:?}Rebuild({}, {})", shown(&uuid), shown(&uri));
        call(&self.target, what, move |t| t.rebuild(op, &uuid, &uri)).await?;
        Ok(Response::new(Null {}))
    }

    /// `StartRebuild`.
    pub async fn start_rebuild(
        &self,
        r: Request<StartRebuildRequest>,
    ) -> Result<Response<Null>, Status> {
        let StartRebuildRequest { uuid, uri } = r.into_inner();
        self.rebuild(RebuildOp::Start, uuid, uri).await
    }

    /// `StopRebuild`.
    pub async fn stop_rebuild(
        &self,
        r: Request<StopRebuildRequest>,
    ) -> Result<Response<Null>, Status> {
        let StopRebuildRequest { uuid, uri } = r.into_inner();
        self.rebuild(RebuildOp::Stop, uuid, uri).await
    }

    /// `PauseRebuild`.
    pub async fn pause_rebuild(
        &self,
        r: Request<PauseRebuildRequest>,
    ) -> Result<Response<Null>, Status> {
        let PauseRebuildRequest { uuid, uri } = r.into_inner();
        self.rebuild(RebuildOp::Pause, uuid, uri).await
    }

    /// `ResumeRebuild`.
    pub async fn resume_rebuild(
        &self,
        r: Request<ResumeRebuildRequest>,
    ) -> Result<Response<Null>, Status> {
        let ResumeRebuildRequest { uuid, uri } = r.into_inner();
        self.rebuild(RebuildOp::Resume, uuid, uri).await
    }

    /// `GetRebuildState`.
    pub async fn get_rebuild_state(
        &self,
        r: Request<RebuildStateRequest>,
    ) -> Result<Response<RebuildStateReply>, Status> {
        let RebuildStateRequest { uuid, uri } = r.into_inner();
        let what = format!("GetRebuildState({}, {})", shown(&uuid), shown(&uri));
        let state = call(&self.target, what, move |t| t.rebuild_state(&uuid, &uri)).await?;
        Ok(Response::new(RebuildStateReply { state }))
    }

    /// `GetRebuildProgress`.
    pub async fn get_rebuild_progress(
        &self,
        r: Request<RebuildProgressRequest>,
    ) -> Result<Response<RebuildProgressReply>, Status> {
        let RebuildProgressRequest { uuid, uri } = r.into_inner();
        let what = format!("GetRebuildProgress({}, {})", shown(&uuid), shown(&uri));
        let progress = call(&self.target, what, move |t| t.rebuild_progress(&uuid, &uri)).await?;
        Ok(Response::new(RebuildProgressReply { progress }))
    }
}
