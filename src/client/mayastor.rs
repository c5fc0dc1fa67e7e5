//! A typed client for Mayastor's v0 `Mayastor` service (pools, replicas,
//! nexuses, rebuilds; see `proto/mayastor.proto`), with a deadline on
//! every call: the nvmfcheck agent or a real Mayastor.

use std::future::Future;
use std::time::Duration;

use super::{AuthChannel, ClientError, Service};
use crate::proto::mayastor::mayastor_client::MayastorClient;
use crate::proto::mayastor::{
    AddChildNexusRequest, Child, ChildAction, ChildNexusRequest, CreateNexusRequest,
    CreatePoolRequest, CreateReplicaRequest, DestroyNexusRequest, DestroyPoolRequest,
    DestroyReplicaRequest, Nexus, Null, PauseRebuildRequest, Pool, PublishNexusRequest,
    RebuildProgressRequest, RebuildStateRequest, RemoveChildNexusRequest, Replica,
    ResumeRebuildRequest, ShareProtocolNexus, ShareProtocolReplica, ShareReplicaRequest,
    StartRebuildRequest, StopRebuildRequest,
};
use crate::token::Token;

/// A connection to one node's `Mayastor` service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mayastor(Service<MayastorClient<AuthChannel>>);

/// A nexus and one of its children, as the child and rebuild calls name
/// them.
#[derive(Debug, Clone, Copy)]
pub struct ChildOf<'a> {
    /// The nexus uuid.
    pub nexus: &'a str,
    /// The child's URI.
    pub uri: &'a str,
}

impl Mayastor {
    /// Connects to the node at `host:port` (its gRPC port), giving up
    /// after `timeout`; each later call also gets `timeout`, and carries
    /// `token` if the agent was started with `--token-file`.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        token: Option<Token>,
    ) -> Result<Self, ClientError> {
        Ok(Self(
            Service::connect(addr, timeout, token, MayastorClient::new).await?,
        ))
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        self.0.addr()
    }

    async fn call<T, F, Fut>(&self, name: &'static str, call: F) -> Result<T, ClientError>
    where
        F: FnOnce(MayastorClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let reply = call(self.0.rpc()).await;
        Ok(reply.map_err(self.0.error(name))?.into_inner())
    }

    /// `CreatePool` on disk `disk`.
    pub async fn create_pool(&self, name: &str, disk: &str) -> Result<Pool, ClientError> {
        let req = CreatePoolRequest {
            name: name.into(),
            disks: vec![disk.into()],
        };
        self.call("Mayastor.CreatePool", |mut c| async move {
            c.create_pool(req).await
        })
        .await
    }

    /// `DestroyPool`.
    pub async fn destroy_pool(&self, name: &str) -> Result<(), ClientError> {
        let req = DestroyPoolRequest { name: name.into() };
        self.call("Mayastor.DestroyPool", |mut c| async move {
            c.destroy_pool(req).await
        })
        .await
        .map(drop)
    }

    /// `CreateReplica` of `size` bytes in `pool`, shared over NVMe/TCP if
    /// `nvmf`.
    pub async fn create_replica(
        &self,
        uuid: &str,
        pool: &str,
        size: u64,
        nvmf: bool,
    ) -> Result<Replica, ClientError> {
        let req = CreateReplicaRequest {
            uuid: uuid.into(),
            pool: pool.into(),
            size,
            thin: false,
            share: replica_protocol(nvmf).into(),
        };
        self.call("Mayastor.CreateReplica", |mut c| async move {
            c.create_replica(req).await
        })
        .await
    }

    /// `ShareReplica`: over NVMe/TCP if `nvmf`, else local only; returns
    /// its URI.
    pub async fn share_replica(&self, uuid: &str, nvmf: bool) -> Result<String, ClientError> {
        let req = ShareReplicaRequest {
            uuid: uuid.into(),
            share: replica_protocol(nvmf).into(),
        };
        let reply = self
            .call("Mayastor.ShareReplica", |mut c| async move {
                c.share_replica(req).await
            })
            .await?;
        Ok(reply.uri)
    }

    /// `ListReplicas`.
    pub async fn list_replicas(&self) -> Result<Vec<Replica>, ClientError> {
        let reply = self
            .call("Mayastor.ListReplicas", |mut c| async move {
                c.list_replicas(Null {}).await
            })
            .await?;
        Ok(reply.replicas)
    }

    /// `DestroyReplica`.
    pub async fn destroy_replica(&self, uuid: &str) -> Result<(), ClientError> {
        let req = DestroyReplicaRequest { uuid: uuid.into() };
        self.call("Mayastor.DestroyReplica", |mut c| async move {
            c.destroy_replica(req).await
        })
        .await
        .map(drop)
    }

    /// `CreateNexus` of `size` bytes over `children`.
    pub async fn create_nexus(
        &self,
        uuid: &str,
        size: u64,
        children: &[String],
    ) -> Result<Nexus, ClientError> {
        let req = CreateNexusRequest {
            uuid: uuid.into(),
            size,
            children: children.to_vec(),
        };
        self.call("Mayastor.CreateNexus", |mut c| async move {
            c.create_nexus(req).await
        })
        .await
    }

    /// `DestroyNexus`.
    pub async fn destroy_nexus(&self, uuid: &str) -> Result<(), ClientError> {
        let req = DestroyNexusRequest { uuid: uuid.into() };
        self.call("Mayastor.DestroyNexus", |mut c| async move {
            c.destroy_nexus(req).await
        })
        .await
        .map(drop)
    }

    /// `ListNexus`.
    pub async fn list_nexus(&self) -> Result<Vec<Nexus>, ClientError> {
        let reply = self
            .call("Mayastor.ListNexus", |mut c| async move {
                c.list_nexus(Null {}).await
            })
            .await?;
        Ok(reply.nexus_list)
    }

    /// `PublishNexus` over NVMe/TCP; returns its URI.
    pub async fn publish_nexus(&self, uuid: &str) -> Result<String, ClientError> {
        let req = PublishNexusRequest {
            uuid: uuid.into(),
            key: String::new(),
            share: ShareProtocolNexus::NexusNvmf.into(),
        };
        let reply = self
            .call("Mayastor.PublishNexus", |mut c| async move {
                c.publish_nexus(req).await
            })
            .await?;
        Ok(reply.device_uri)
    }

    /// `AddChildNexus`, rebuilding the child unless `norebuild`.
    pub async fn add_child(
        &self,
        child: ChildOf<'_>,
        norebuild: bool,
    ) -> Result<Child, ClientError> {
        let req = AddChildNexusRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
            norebuild,
        };
        self.call("Mayastor.AddChildNexus", |mut c| async move {
            c.add_child_nexus(req).await
        })
        .await
    }

    /// `RemoveChildNexus`.
    pub async fn remove_child(&self, child: ChildOf<'_>) -> Result<(), ClientError> {
        let req = RemoveChildNexusRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
        };
        self.call("Mayastor.RemoveChildNexus", |mut c| async move {
            c.remove_child_nexus(req).await
        })
        .await
        .map(drop)
    }

    /// `ChildOperation`.
    pub async fn child_operation(
        &self,
        child: ChildOf<'_>,
        action: ChildAction,
    ) -> Result<(), ClientError> {
        let req = ChildNexusRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
            action: action.into(),
        };
        self.call("Mayastor.ChildOperation", |mut c| async move {
            c.child_operation(req).await
        })
        .await
        .map(drop)
    }

    /// `StartRebuild`.
    pub async fn start_rebuild(&self, child: ChildOf<'_>) -> Result<(), ClientError> {
        let req = StartRebuildRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
        };
        self.call("Mayastor.StartRebuild", |mut c| async move {
            c.start_rebuild(req).await
        })
        .await
        .map(drop)
    }

    /// `StopRebuild`.
    pub async fn stop_rebuild(&self, child: ChildOf<'_>) -> Result<(), ClientError> {
        let req = StopRebuildRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
        };
        self.call("Mayastor.StopRebuild", |mut c| async move {
            c.stop_rebuild(req).await
        })
        .await
        .map(drop)
    }

    /// `PauseRebuild`.
    pub async fn pause_rebuild(&self, child: ChildOf<'_>) -> Result<(), ClientError> {
        let req = PauseRebuildRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
        };
        self.call("Mayastor.PauseRebuild", |mut c| async move {
            c.pause_rebuild(req).await
        })
        .await
        .map(drop)
    }

    /// `ResumeRebuild`.
    pub async fn resume_rebuild(&self, child: ChildOf<'_>) -> Result<(), ClientError> {
        let req = ResumeRebuildRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
        };
        self.call("Mayastor.ResumeRebuild", |mut c| async move {
            c.resume_rebuild(req).await
        })
        .await
        .map(drop)
    }

    /// `GetRebuildState`: `running`, `paused`, ...
    pub async fn rebuild_state(&self, child: ChildOf<'_>) -> Result<String, ClientError> {
        let req = RebuildStateRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
        };
        let reply = self
            .call("Mayastor.GetRebuildState", |mut c| async move {
                c.get_rebuild_state(req).await
            })
            .await?;
        Ok(reply.state)
    }

    /// `GetRebuildProgress`, in percent.
    pub async fn rebuild_progress(&self, child: ChildOf<'_>) -> Result<u32, ClientError> {
        let req = RebuildProgressRequest {
            uuid: child.nexus.into(),
            uri: child.uri.into(),
        };
        let reply = self
            .call("Mayastor.GetRebuildProgress", |mut c| async move {
                c.get_rebuild_progress(req).await
            })
            .await?;
        Ok(reply.progress)
    }
}

fn replica_protocol(nvmf: bool) -> ShareProtocolReplica {
    if nvmf {
        ShareProtocolReplica::ReplicaNvmf
    } else {
        ShareProtocolReplica::ReplicaNone
    }
}
