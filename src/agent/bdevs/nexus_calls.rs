//! The nexus and rebuild calls of the `Mayastor` service on the
//! [`BdevTable`]: each hands [`Nexuses`](crate::agent::nexus::Nexuses) the
//! pools (for local children's volumes) and the kernel target.

use super::{BdevTable, RequestError};
use crate::agent::nexus::Parts;
use crate::proto::mayastor as pb;

impl BdevTable {
    fn parts(&mut self) -> (&mut crate::agent::nexus::Nexuses, Parts<'_>) {
        (
            &mut self.nexuses,
            Parts {
                pools: &mut self.pools,
                nvmet: &self.nvmet,
            },
        )
    }

    /// `Mayastor.ListNexus`.
    pub fn list_nexus(&mut self) -> Result<Vec<pb::Nexus>, RequestError> {
        Ok(self.nexuses.list(&self.nvmet))
    }

    /// `Mayastor.CreateNexus`.
    pub fn create_nexus(
        &mut self,
        req: &pb::CreateNexusRequest,
    ) -> Result<pb::Nexus, RequestError> {
        let (nexuses, parts) = self.parts();
        Ok(nexuses.create(req, parts)?)
    }

    /// `Mayastor.DestroyNexus`.
    pub fn destroy_nexus(&mut self, uuid: &str) -> Result<(), RequestError> {
        Ok(self.nexuses.destroy(uuid, &self.nvmet)?)
    }

    /// `Mayastor.PublishNexus`: returns the nexus's URI.
    pub fn publish_nexus(&mut self, req: &pb::PublishNexusRequest) -> Result<String, RequestError> {
        Ok(self.nexuses.publish(req, &self.nvmet)?)
    }

    /// `Mayastor.UnpublishNexus`.
    pub fn unpublish_nexus(&mut self, uuid: &str) -> Result<(), RequestError> {
        Ok(self.nexuses.unpublish(uuid, &self.nvmet)?)
    }

    /// `Mayastor.AddChildNexus`.
    pub fn add_child_nexus(
        &mut self,
        req: &pb::AddChildNexusRequest,
    ) -> Result<pb::Child, RequestError> {
        let (nexuses, parts) = self.parts();
        Ok(nexuses.add_child(req, parts)?)
    }

    /// `Mayastor.RemoveChildNexus`.
    pub fn remove_child_nexus(
        &mut self,
        req: &pb::RemoveChildNexusRequest,
    ) -> Result<(), RequestError> {
        Ok(self.nexuses.remove_child(req)?)
    }

    /// `Mayastor.ChildOperation`.
    pub fn child_operation(&mut self, req: &pb::ChildNexusRequest) -> Result<(), RequestError> {
        let (nexuses, parts) = self.parts();
        Ok(nexuses.child_operation(req, parts)?)
    }

    /// `Mayastor.StartRebuild`, `StopRebuild`, `PauseRebuild`,
    /// `ResumeRebuild`: `op` on the rebuild of child `uri` of nexus `uuid`.
    pub fn rebuild(&mut self, op: RebuildOp, uuid: &str, uri: &str) -> Result<(), RequestError> {
        let n = &mut self.nexuses;
        Ok(match op {
            RebuildOp::Start => n.start_rebuild(uuid, uri),
            RebuildOp::Stop => n.stop_rebuild(uuid, uri),
            RebuildOp::Pause => n.pause_rebuild(uuid, uri),
            RebuildOp::Resume => n.resume_rebuild(uuid, uri),
        }?)
    }

    /// `Mayastor.GetRebuildState`.
    pub fn rebuild_state(&mut self, uuid: &str, uri: &str) -> Result<String, RequestError> {
        Ok(self.nexuses.rebuild_state(uuid, uri)?)
    }

    /// `Mayastor.GetRebuildProgress`.
    pub fn rebuild_progress(&mut self, uuid: &str, uri: &str) -> Result<u32, RequestError> {
        Ok(self.nexuses.rebuild_progress(uuid, uri)?)
    }
}

/// What a call does to a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildOp {
    /// `StartRebuild`.
    Start,
    /// `StopRebuild`.
    Stop,
    /// `PauseRebuild`.
    Pause,
    /// `ResumeRebuild`.
    Resume,
}
