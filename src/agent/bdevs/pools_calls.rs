//! The pool and replica calls of the `Mayastor` service on the
//! [`BdevTable`]: each hands [`Pools`](crate::agent::pools::Pools) the
//! kernel target and what the bdevs hold, so that a pool never takes an
//! aio bdev's disk nor a replica a bdev's uuid (and the bdev calls check
//! the converse).

use std::path::PathBuf;

use super::{BdevTable, RequestError};
use crate::agent::pools::Taken;
use crate::agent::uri::Backend;
use crate::proto::mayastor as pb;

impl BdevTable {
    /// What the bdevs hold: aio devices (resolved) and uuids.
    fn taken(&self) -> Taken {
        let mut taken = Taken::default();
        for b in &self.bdevs {
            if let Backend::Aio { path, .. } = &b.backend {
                let real = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
                taken.devices.push((real, b.name.clone()));
            }
            taken.uuids.push((b.uuid, b.name.clone()));
        }
        taken
    }

    /// `Mayastor.ListPools`.
    pub fn list_pools(&mut self) -> Result<Vec<pb::Pool>, RequestError> {
        Ok(self.pools.list_pools()?)
    }

    /// `Mayastor.CreatePool`.
    pub fn create_pool(&mut self, name: &str, disks: &[String]) -> Result<pb::Pool, RequestError> {
        let taken = self.taken();
        Ok(self
            .pools
            .create_pool(name, disks, &self.aio_paths, &taken)?)
    }

    /// `Mayastor.DestroyPool`.
    pub fn destroy_pool(&mut self, name: &str) -> Result<(), RequestError> {
        Ok(self.pools.destroy_pool(name, &self.nvmet)?)
    }

    /// `Mayastor.ListReplicas`.
    pub fn list_replicas(&mut self) -> Result<Vec<pb::Replica>, RequestError> {
        Ok(self.pools.list_replicas(&self.nvmet)?)
    }

    /// `Mayastor.CreateReplica`.
    pub fn create_replica(
        &mut self,
        req: &pb::CreateReplicaRequest,
    ) -> Result<pb::Replica, RequestError> {
        let taken = self.taken();
        Ok(self.pools.create_replica(req, &self.nvmet, &taken)?)
    }

    /// `Mayastor.DestroyReplica`.
    pub fn destroy_replica(&mut self, uuid: &str) -> Result<(), RequestError> {
        Ok(self.pools.destroy_replica(uuid, &self.nvmet)?)
    }

    /// `Mayastor.ShareReplica`: returns the replica's URI.
    pub fn share_replica(&mut self, uuid: &str, share: i32) -> Result<String, RequestError> {
        Ok(self.pools.share_replica(uuid, share, &self.nvmet)?)
    }
}
