//! Mayastor's v0 `Mayastor` service: pools, replicas, nexuses and their
//! rebuilds. The calls [`RPCS`] marks [`Plan::Served`] (pools and
//! replicas on LVM2, nexuses and rebuilds on md RAID1, shares on nvmet)
//! are served ([`calls`]). Every other call is answered `UNIMPLEMENTED`
//! with a message that names it. That answer does not depend on the
//! request, and such a call changes nothing.

pub mod calls;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::warn;

use super::serial::Serial;
use calls::Calls;

use crate::proto::mayastor::mayastor_server::Mayastor;
use crate::proto::mayastor::{
    AddChildNexusRequest, Child, ChildNexusRequest, CreateNexusRequest, CreateNexusV2Request,
    CreatePoolRequest, CreateReplicaRequest, CreateReplicaRequestV2, CreateSnapshotReply,
    CreateSnapshotRequest, DestroyNexusRequest, DestroyPoolRequest, DestroyReplicaRequest,
    FaultNexusChildRequest, GetNvmeAnaStateReply, GetNvmeAnaStateRequest, GetResourceUsageReply,
    ListBlockDevicesReply, ListBlockDevicesRequest, ListNexusReply, ListNexusV2Reply,
    ListNvmeControllersReply, ListPoolsReply, ListReplicasReply, ListReplicasReplyV2,
    MayastorInfoRequest, Nexus, Null, PauseRebuildRequest, Pool, PublishNexusReply,
    PublishNexusRequest, RebuildProgressReply, RebuildProgressRequest, RebuildStateReply,
    RebuildStateRequest, RebuildStatsReply, RebuildStatsRequest, RemoveChildNexusRequest, Replica,
    ReplicaV2, ResumeRebuildRequest, SetNvmeAnaStateRequest, ShareReplicaReply,
    ShareReplicaRequest, StartRebuildRequest, StatNvmeControllersReply, StatReplicasReply,
    StopRebuildRequest, UnpublishNexusRequest,
};

/// Whether the agent serves an rpc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Served.
    Served,
    /// Answered `UNIMPLEMENTED`.
    Unplanned,
}

/// One rpc of the `Mayastor` service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpc {
    /// Its name in the proto, e.g. `CreatePool`.
    pub name: &'static str,
    /// Whether the agent is to serve it.
    pub plan: Plan,
}

impl Rpc {
    /// What a call of this rpc is answered while the agent does not serve
    /// it (`UNIMPLEMENTED`, naming the call); `None` for a served rpc.
    pub fn refusal(self) -> Option<Status> {
        match self.plan {
            Plan::Served => None,
            Plan::Unplanned => Some(unimplemented(self.name)),
        }
    }
}

/// What a call of rpc `name`, which the agent does not serve, is answered:
/// `UNIMPLEMENTED`, naming the call.
fn unimplemented(name: &str) -> Status {
    Status::unimplemented(format!(
        "Mayastor.{name} is not implemented by the nvmfcheck agent (the pool, replica, nexus \
         and rebuild calls it serves: docs/mayastor-compat.md)"
    ))
}

/// The `Mayastor` service over the agent's target.
#[derive(Clone)]
pub struct MayastorService {
    calls: Calls,
}

impl MayastorService {
    /// Serves `target`.
    pub fn new(target: Arc<Serial>) -> Self {
        Self {
            calls: Calls::new(target),
        }
    }
}

/// Refuses a call of `rpc`, logging it: a control plane that calls what
/// the agent does not serve should show in the agent's log.
fn refuse(name: &str) -> Status {
    let status = unimplemented(name);
    warn!("refused: {}", status.message());
    status
}

/// The body of one method: a served call goes to [`Calls`]' method of the
/// same name, any other is refused.
macro_rules! answer {
    (Served, $rpc:ident, $method:ident, $self:ident, $request:ident) => {
        $self.calls.$method($request).await
    };
    ($plan:ident, $rpc:ident, $method:ident, $self:ident, $request:ident) => {{
        let _ = $request;
        Err(refuse(stringify!($rpc)))
    }};
}

/// Writes [`RPCS`] and the service's methods from one list, so that the
/// table and what the agent answers cannot disagree: a line is
/// `<Plan> <Rpc> => <method>(<request>) -> <reply>;`.
macro_rules! rpcs {
    ($($plan:ident $rpc:ident => $method:ident($request:ty) -> $reply:ty;)*) => {
        /// Every rpc of the service, in upstream's order, with its plan.
        pub const RPCS: &[Rpc] = &[$(Rpc { name: stringify!($rpc), plan: Plan::$plan }),*];

        #[tonic::async_trait]
        impl Mayastor for MayastorService {
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$reply>, Status> {
                    answer!($plan, $rpc, $method, self, request)
                }
            )*
        }
    };
}

rpcs! {
    Served CreatePool => create_pool(CreatePoolRequest) -> Pool;
    Served DestroyPool => destroy_pool(DestroyPoolRequest) -> Null;
    Served ListPools => list_pools(Null) -> ListPoolsReply;
    Served CreateReplica => create_replica(CreateReplicaRequest) -> Replica;
    Unplanned CreateReplicaV2 => create_replica_v2(CreateReplicaRequestV2) -> ReplicaV2;
    Served DestroyReplica => destroy_replica(DestroyReplicaRequest) -> Null;
    Served ListReplicas => list_replicas(Null) -> ListReplicasReply;
    Unplanned ListReplicasV2 => list_replicas_v2(Null) -> ListReplicasReplyV2;
    Unplanned StatReplicas => stat_replicas(Null) -> StatReplicasReply;
    Served ShareReplica => share_replica(ShareReplicaRequest) -> ShareReplicaReply;
    Served CreateNexus => create_nexus(CreateNexusRequest) -> Nexus;
    Unplanned CreateNexusV2 => create_nexus_v2(CreateNexusV2Request) -> Nexus;
    Served DestroyNexus => destroy_nexus(DestroyNexusRequest) -> Null;
    Served ListNexus => list_nexus(Null) -> ListNexusReply;
    Unplanned ListNexusV2 => list_nexus_v2(Null) -> ListNexusV2Reply;
    Served AddChildNexus => add_child_nexus(AddChildNexusRequest) -> Child;
    Served RemoveChildNexus => remove_child_nexus(RemoveChildNexusRequest) -> Null;
    Unplanned FaultNexusChild => fault_nexus_child(FaultNexusChildRequest) -> Null;
    Served PublishNexus => publish_nexus(PublishNexusRequest) -> PublishNexusReply;
    Served UnpublishNexus => unpublish_nexus(UnpublishNexusRequest) -> Null;
    Unplanned GetNvmeAnaState => get_nvme_ana_state(GetNvmeAnaStateRequest) -> GetNvmeAnaStateReply;
    Unplanned SetNvmeAnaState => set_nvme_ana_state(SetNvmeAnaStateRequest) -> Null;
    Unplanned GetMayastorInfo => get_mayastor_info(Null) -> MayastorInfoRequest;
    Served ChildOperation => child_operation(ChildNexusRequest) -> Null;
    Served StartRebuild => start_rebuild(StartRebuildRequest) -> Null;
    Served StopRebuild => stop_rebuild(StopRebuildRequest) -> Null;
    Served PauseRebuild => pause_rebuild(PauseRebuildRequest) -> Null;
    Served ResumeRebuild => resume_rebuild(ResumeRebuildRequest) -> Null;
    Served GetRebuildState => get_rebuild_state(RebuildStateRequest) -> RebuildStateReply;
    Unplanned GetRebuildStats => get_rebuild_stats(RebuildStatsRequest) -> RebuildStatsReply;
    Served GetRebuildProgress => get_rebuild_progress(RebuildProgressRequest) -> RebuildProgressReply;
    Unplanned CreateSnapshot => create_snapshot(CreateSnapshotRequest) -> CreateSnapshotReply;
    Unplanned ListBlockDevices => list_block_devices(ListBlockDevicesRequest) -> ListBlockDevicesReply;
    Unplanned GetResourceUsage => get_resource_usage(Null) -> GetResourceUsageReply;
    Unplanned ListNvmeControllers => list_nvme_controllers(Null) -> ListNvmeControllersReply;
    Unplanned StatNvmeControllers => stat_nvme_controllers(Null) -> StatNvmeControllersReply;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_is_listed_once_and_the_served_ones_are_issue_elevens_subset() {
        let mut names: Vec<&str> = RPCS.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), 36);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 36, "a name is listed twice");
        let served: Vec<&str> = RPCS
            .iter()
            .filter(|r| r.plan == Plan::Served)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            served,
            [
                "CreatePool",
                "DestroyPool",
                "ListPools",
                "CreateReplica",
                "DestroyReplica",
                "ListReplicas",
                "ShareReplica",
                "CreateNexus",
                "DestroyNexus",
                "ListNexus",
                "AddChildNexus",
                "RemoveChildNexus",
                "PublishNexus",
                "UnpublishNexus",
                "ChildOperation",
                "StartRebuild",
                "StopRebuild",
                "PauseRebuild",
                "ResumeRebuild",
                "GetRebuildState",
                "GetRebuildProgress",
            ]
        );
    }

    #[test]
    fn the_answer_names_the_call() {
        let served = Rpc {
            name: "ListPools",
            plan: Plan::Served,
        };
        assert!(served.refusal().is_none());
        let refused = Rpc {
            name: "CreateSnapshot",
            plan: Plan::Unplanned,
        }
        .refusal()
        .unwrap();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert!(refused
            .message()
            .starts_with("Mayastor.CreateSnapshot is not implemented by the nvmfcheck agent"));
    }
}
