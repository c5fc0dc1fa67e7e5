//! Pools and replicas of Mayastor's `Mayastor` service on LVM2: a pool is
//! a volume group on one disk, a replica a logical volume in it named by
//! the replica's uuid (`/dev/<pool>/<uuid>`), shared over nvmet as a bdev
//! is ([`super::nvmet`]: NQN `nqn.2019-05.io.openebs:<uuid>`).
//!
//! LVM is the truth: every call reads the volume groups and volumes from it
//! ([`lvm`]), and what the agent made is what carries its tag
//! ([`lvm::TAG`]), so a restarted agent lists the same pools and replicas
//! with no state file of its own; whether a replica is shared is read from
//! configfs, as for bdevs. A starting agent ([`Pools::open`]) activates the
//! volumes of its pools (nothing else does without udev), completes the
//! shares of its replicas that configfs has in part, and removes the shares
//! of replicas that are gone.
//!
//! Calls are checked ([`checks`]) before LVM is asked anything, and a call
//! that fails half-way undoes what it made: a replica whose share failed is
//! removed, and a pool or replica whose removal failed is shared again.

pub mod checks;
pub mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
pub mod lvm;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};
use uuid::Uuid;

use super::aio_paths::AioPaths;
use super::limits::shown;
use super::nvmet::{Export, FoundShare, HostAccess, Kind, Nvmet};
use crate::proto::mayastor as pb;
pub use error::PoolError;
use lvm::{LvRow, Lvm, VgRow, TAG};

/// What the bdevs hold that a pool or replica must not take: the devices
/// of aio bdevs (resolved) and the uuids of all bdevs, with their names.
#[derive(Debug, Default)]
pub struct Taken {
    /// Resolved device paths and the bdevs on them.
    pub devices: Vec<(PathBuf, String)>,
    /// Bdev uuids and names.
    pub uuids: Vec<(Uuid, String)>,
}

/// A pool of ours, as LVM has it.
#[derive(Debug, Clone)]
struct PoolView {
    name: String,
    disks: Vec<PathBuf>,
    size: u64,
    free: u64,
    extent: u64,
    partial: bool,
}

/// What LVM has: our pools, our replicas, and the rest.
#[derive(Debug, Default)]
struct Scan {
    pools: Vec<PoolView>,
    replicas: Vec<LvRow>,
    /// Volume groups without our tag, one row per PV.
    foreign_vgs: Vec<VgRow>,
    /// Volumes without our tag in our pools.
    foreign_lvs: Vec<LvRow>,
}

impl Scan {
    fn pool(&self, name: &str) -> Option<&PoolView> {
        self.pools.iter().find(|p| p.name == name)
    }

    fn replica(&self, uuid: Uuid) -> Option<&LvRow> {
        let name = uuid.hyphenated().to_string();
        self.replicas.iter().find(|r| r.name == name)
    }
}

/// Whether a subsystem found in configfs is a replica's share: its device
/// is named by the uuid in its NQN (`/dev/<pool>/<uuid>`), which no bdev's
/// is. The bdevs leave such subsystems to the pools.
pub fn is_replica_share(share: &FoundShare) -> bool {
    let name = share.uuid.hyphenated().to_string();
    share
        .device
        .as_deref()
        .and_then(Path::file_name)
        .is_some_and(|f| f == name.as_str())
}

/// The pools and replicas: LVM, and the kernel target for shares.
pub struct Pools {
    lvm: Arc<dyn Lvm>,
    /// Replica uuids and pool disks as of the last call, for the bdev
    /// calls' checks (which should not run LVM's tools each time); only
    /// this agent changes them.
    known: Known,
}

#[derive(Debug, Default)]
struct Known {
    disks: Vec<(PathBuf, String)>,
    replicas: Vec<Uuid>,
}

impl Pools {
    /// The pools of a (re)starting agent: activates the volumes of its
    /// pools, completes the shares of its replicas, and removes the shares
    /// of replicas that are gone (among `found`, configfs's subsystems).
    /// LVM failing (not installed, say) is logged, not fatal: the bdevs
    /// work without it, and the pool calls then say what is wrong.
    pub fn open(lvm: Arc<dyn Lvm>, nvmet: &Nvmet, found: &[FoundShare]) -> Self {
        let mut pools = Self {
            lvm,
            known: Known::default(),
        };
        let scan = match pools.scan() {
            Ok(scan) => scan,
            Err(e) => {
                warn!("pools are unavailable: {e}");
                return pools;
            }
        };
        for pool in &scan.pools {
            if scan.replicas.iter().any(|r| r.vg == pool.name && !r.active) {
                match pools.lvm.activate(&pool.name) {
                    Ok(()) => info!("activated the replicas of pool {}", pool.name),
                    Err(e) => warn!("pool {}: cannot activate its replicas: {e}", pool.name),
                }
            }
        }
        for share in found.iter().filter(|s| is_replica_share(s)) {
            let nqn = super::nvmet::nqn(share.uuid);
            match scan.replica(share.uuid) {
                Some(replica) => match export(nvmet, share.uuid, &replica.path, HostAccess::AsIs)
                {
                    Ok(true) => info!("completed the share of replica {}", share.uuid),
                    Ok(false) => info!("replica {} is shared", share.uuid),
                    Err(e) => warn!("replica {} is shared but its share is broken: {e}", share.uuid),
                },
                None => match nvmet.unshare(share.uuid) {
                    Ok(_) => info!("removed subsystem {nqn}: its replica is gone"),
                    Err(e) => warn!("subsystem {nqn} exports a replica that is gone, and removing it failed: {e}"),
                },
            }
        }
        info!(
            "{} pool(s), {} replica(s)",
            scan.pools.len(),
            scan.replicas.len()
        );
        pools
    }

    /// The disk of an aio bdev to be made, if a pool uses it: that pool.
    pub fn disk_user(&self, device: &Path) -> Option<&str> {
        let real = resolve(device);
        self.known
            .disks
            .iter()
            .find(|(d, _)| *d == real)
            .map(|(_, pool)| pool.as_str())
    }

    /// Whether a replica has `uuid` (for the bdev calls' checks).
    pub fn has_replica(&self, uuid: Uuid) -> bool {
        self.known.replicas.contains(&uuid)
    }

    /// Reads what LVM has, and notes our disks and replicas.
    fn scan(&mut self) -> Result<Scan, PoolError> {
        let mut scan = Scan::default();
        for row in self.lvm.volume_groups()? {
            if !row.tags.iter().any(|t| t == TAG) {
                scan.foreign_vgs.push(row);
                continue;
            }
            match scan.pools.iter_mut().find(|p| p.name == row.name) {
                Some(pool) => pool.disks.push(row.pv),
                None => scan.pools.push(PoolView {
                    name: row.name,
                    disks: vec![row.pv],
                    size: row.size,
                    free: row.free,
                    extent: row.extent_size,
                    partial: row.partial,
                }),
            }
        }
        // Only the volumes of pools count: with no pool, LVM's second run
        // (0.4 s under TCG, at every agent start) finds nothing to keep.
        let volumes = match scan.pools.is_empty() {
            true => Vec::new(),
            false => self.lvm.logical_volumes()?,
        };
        for row in volumes {
            if scan.pool(&row.vg).is_none() {
                continue;
            }
            let ours = row.tags.iter().any(|t| t == TAG) && checks::replica_uuid(&row.name).is_ok();
            if ours {
                scan.replicas.push(row);
            } else {
                scan.foreign_lvs.push(row);
            }
        }
        self.known = Known {
            disks: scan
                .pools
                .iter()
                .flat_map(|p| p.disks.iter().map(|d| (resolve(d), p.name.clone())))
                .collect(),
            replicas: scan
                .replicas
                .iter()
                .filter_map(|r| Uuid::try_parse(&r.name).ok())
                .collect(),
        };
        Ok(scan)
    }

    /// `ListPools`.
    pub fn list_pools(&mut self) -> Result<Vec<pb::Pool>, PoolError> {
        Ok(self.scan()?.pools.iter().map(pool_reply).collect())
    }

    /// `CreatePool`: makes pool `name` on the one disk of `disks`; the same
    /// pool again is fine (Mayastor answers it as it is).
    pub fn create_pool(
        &mut self,
        name: &str,
        disks: &[String],
        aio_paths: &AioPaths,
        taken: &Taken,
    ) -> Result<pb::Pool, PoolError> {
        checks::pool_name(name)?;
        let [disk] = disks else {
            return Err(PoolError::DiskCount { count: disks.len() });
        };
        let disk = checks::disk(disk)?;
        aio_paths.check(&disk)?;
        if !disk.exists() {
            return Err(PoolError::DiskMissing(disk));
        }
        let real = resolve(&disk);
        let scan = self.scan()?;
        if let Some(pool) = scan.pool(name) {
            if pool.disks.iter().any(|d| resolve(d) == real) {
                info!("pool {name} already exists on {}", disk.display());
                return Ok(pool_reply(pool));
            }
            return Err(PoolError::PoolExists {
                name: name.to_string(),
                disk: pool.disks.first().cloned().unwrap_or_default(),
            });
        }
        if scan.foreign_vgs.iter().any(|v| v.name == name) {
            return Err(PoolError::ForeignName(name.to_string()));
        }
        self.lvm
            .check_disk(&disk)
            .map_err(|problem| PoolError::BadDisk {
                disk: shown(&disk.to_string_lossy()),
                problem,
            })?;
        let in_use = |user: String| PoolError::DiskInUse {
            disk: disk.clone(),
            user,
        };
        if let Some(pool) = scan
            .pools
            .iter()
            .find(|p| p.disks.iter().any(|d| resolve(d) == real))
        {
            return Err(in_use(format!("pool {}", pool.name)));
        }
        if let Some(vg) = scan.foreign_vgs.iter().find(|v| resolve(&v.pv) == real) {
            return Err(PoolError::DiskForeign {
                disk,
                vg: vg.name.clone(),
            });
        }
        if let Some((_, bdev)) = taken.devices.iter().find(|(d, _)| *d == real) {
            return Err(in_use(format!("bdev `{bdev}`")));
        }
        self.lvm.create_vg(name, &disk)?;
        let scan = self.scan()?;
        let pool = scan
            .pool(name)
            .ok_or_else(|| PoolError::UnknownPool(name.to_string()))?;
        info!(
            "created pool {name} on {} ({} bytes)",
            disk.display(),
            pool.size
        );
        Ok(pool_reply(pool))
    }

    /// `DestroyPool`: unshares and removes its replicas with it, as
    /// Mayastor does; a name no pool has is fine (nothing to do).
    pub fn destroy_pool(&mut self, name: &str, nvmet: &Nvmet) -> Result<(), PoolError> {
        checks::pool_name(name)?;
        let scan = self.scan()?;
        let Some(pool) = scan.pool(name) else {
            if scan.foreign_vgs.iter().any(|v| v.name == name) {
                return Err(PoolError::NotOurs(name.to_string()));
            }
            info!("DestroyPool of {name}: no such pool, nothing to do");
            return Ok(());
        };
        let foreign: Vec<&str> = scan
            .foreign_lvs
            .iter()
            .filter(|l| l.vg == name)
            .map(|l| l.name.as_str())
            .collect();
        if !foreign.is_empty() {
            return Err(PoolError::ForeignVolumes {
                pool: name.to_string(),
                lvs: foreign.join(", "),
            });
        }
        let replicas: Vec<&LvRow> = scan.replicas.iter().filter(|r| r.vg == name).collect();
        let mut unshared = Vec::new();
        let mut result = Ok(());
        for replica in &replicas {
            let uuid = lv_uuid(replica);
            match nvmet.unshare(uuid) {
                Ok(true) => unshared.push(*replica),
                Ok(false) => {}
                Err(e) => {
                    result = Err(PoolError::from(e));
                    break;
                }
            }
        }
        if result.is_ok() {
            let disk = pool.disks.first().cloned().unwrap_or_default();
            result = self.lvm.remove_vg(name, &disk).map_err(PoolError::from);
        }
        if let Err(cause) = result {
            return Err(reshare(nvmet, &unshared, cause));
        }
        self.scan()?;
        info!("destroyed pool {name} with {} replica(s)", replicas.len());
        Ok(())
    }

    /// The block device of replica `uuid`, for a nexus's local child.
    pub fn replica_path(&mut self, uuid: Uuid) -> Result<PathBuf, PoolError> {
        let scan = self.scan()?;
        scan.replica(uuid)
            .map(|r| r.path.clone())
            .ok_or_else(|| PoolError::UnknownReplica(uuid.hyphenated().to_string()))
    }

    /// `ListReplicas`.
    pub fn list_replicas(&mut self, nvmet: &Nvmet) -> Result<Vec<pb::Replica>, PoolError> {
        let scan = self.scan()?;
        Ok(scan
            .replicas
            .iter()
            .map(|r| replica_reply(r, nvmet))
            .collect())
    }

    /// `CreateReplica`: a volume of `size` bytes (rounded up to whole
    /// extents) in `pool`, shared if `share` says so. The same replica
    /// again (same pool and size) is answered as it is, as Mayastor does.
    /// `thin` is taken and ignored, as Mayastor's v0 does (its volumes are
    /// thick whatever is asked).
    pub fn create_replica(
        &mut self,
        req: &pb::CreateReplicaRequest,
        nvmet: &Nvmet,
        taken: &Taken,
    ) -> Result<pb::Replica, PoolError> {
        let uuid = checks::replica_uuid(&req.uuid)?;
        checks::pool_name(&req.pool)?;
        let share = checks::protocol(req.share)?;
        if req.size == 0 {
            return Err(PoolError::ZeroSize);
        }
        if let Some((_, bdev)) = taken.uuids.iter().find(|(u, _)| *u == uuid) {
            return Err(PoolError::UuidTaken {
                uuid: req.uuid.clone(),
                bdev: bdev.clone(),
            });
        }
        let scan = self.scan()?;
        let pool = scan
            .pool(&req.pool)
            .ok_or_else(|| PoolError::UnknownPool(req.pool.clone()))?;
        let extents = req.size.div_ceil(pool.extent.max(1));
        if let Some(existing) = scan.replica(uuid) {
            if existing.vg == req.pool && existing.size == extents * pool.extent {
                info!("replica {uuid} already exists in pool {}", req.pool);
                return Ok(replica_reply(existing, nvmet));
            }
            return Err(PoolError::ReplicaExists {
                uuid: req.uuid.clone(),
                pool: existing.vg.clone(),
                size: existing.size,
            });
        }
        if extents.saturating_mul(pool.extent) > pool.free {
            return Err(PoolError::NoSpace {
                pool: req.pool.clone(),
                size: req.size,
                free: pool.free,
                extent: pool.extent,
            });
        }
        self.lvm.create_lv(&req.pool, &req.uuid, extents)?;
        let scan = self.scan()?;
        let replica = scan
            .replica(uuid)
            .ok_or_else(|| PoolError::UnknownReplica(req.uuid.clone()))?;
        if share {
            if let Err(e) = export(nvmet, uuid, &replica.path, HostAccess::Any) {
                let cause = PoolError::from(e);
                return Err(match self.lvm.remove_lv(&req.pool, &req.uuid) {
                    Ok(()) => cause,
                    Err(undo) => PoolError::Incomplete {
                        cause: Box::new(cause),
                        undo: undo.to_string(),
                        left: format!("volume {}/{}", req.pool, req.uuid),
                    },
                });
            }
        }
        info!(
            "created replica {uuid} in pool {} ({} bytes){}",
            req.pool,
            replica.size,
            if share { ", shared" } else { "" }
        );
        Ok(replica_reply(replica, nvmet))
    }

    /// `DestroyReplica`: unshares and removes it; a uuid no replica has is
    /// fine (nothing to do), as in Mayastor.
    pub fn destroy_replica(&mut self, uuid: &str, nvmet: &Nvmet) -> Result<(), PoolError> {
        let parsed = checks::replica_uuid(uuid)?;
        let scan = self.scan()?;
        let Some(replica) = scan.replica(parsed) else {
            info!("DestroyReplica of {uuid}: no such replica, nothing to do");
            return Ok(());
        };
        let unshared = nvmet.unshare(parsed)?;
        if let Err(e) = self.lvm.remove_lv(&replica.vg, &replica.name) {
            let again: Vec<&LvRow> = if unshared { vec![replica] } else { vec![] };
            return Err(reshare(nvmet, &again, e.into()));
        }
        self.scan()?;
        info!("destroyed replica {uuid} of pool {}", replica.vg);
        Ok(())
    }

    /// `ShareReplica`: REPLICA_NVMF shares it (again: the same URI),
    /// REPLICA_NONE unshares it; returns its URI.
    pub fn share_replica(
        &mut self,
        uuid: &str,
        share: i32,
        nvmet: &Nvmet,
    ) -> Result<String, PoolError> {
        let parsed = checks::replica_uuid(uuid)?;
        let share = checks::protocol(share)?;
        let scan = self.scan()?;
        let replica = scan
            .replica(parsed)
            .ok_or_else(|| PoolError::UnknownReplica(uuid.to_string()))?;
        if share {
            if export(nvmet, parsed, &replica.path, HostAccess::Any)? {
                info!("shared replica {uuid} at {}", nvmet.share_uri(parsed));
            }
        } else if nvmet.unshare(parsed)? {
            info!("unshared replica {uuid}");
        }
        Ok(replica_uri(parsed, nvmet))
    }
}

/// Shares again the replicas a failed call unshared; returns `cause`,
/// noting what could not be shared again.
fn reshare(nvmet: &Nvmet, unshared: &[&LvRow], cause: PoolError) -> PoolError {
    let mut left = Vec::new();
    let mut why = Vec::new();
    for replica in unshared {
        let uuid = lv_uuid(replica);
        if let Err(e) = export(nvmet, uuid, &replica.path, HostAccess::Any) {
            left.push(format!("replica {uuid} unshared"));
            why.push(e.to_string());
        }
    }
    if left.is_empty() {
        cause
    } else {
        PoolError::Incomplete {
            cause: Box::new(cause),
            undo: why.join("; "),
            left: left.join(", "),
        }
    }
}

/// Shares the volume at `device` as replica `uuid`.
fn export(
    nvmet: &Nvmet,
    uuid: Uuid,
    device: &Path,
    hosts: HostAccess<'_>,
) -> Result<bool, super::nvmet::NvmetError> {
    nvmet.share(&Export {
        kind: Kind::Bdev,
        uuid,
        device,
        buffered_io: false,
        hosts,
    })
}

/// The uuid a replica's volume is named by (checked by the scan).
fn lv_uuid(lv: &LvRow) -> Uuid {
    Uuid::try_parse(&lv.name).unwrap_or_default()
}

fn resolve(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn pool_reply(pool: &PoolView) -> pb::Pool {
    let state = if pool.partial {
        pb::PoolState::PoolDegraded
    } else {
        pb::PoolState::PoolOnline
    };
    pb::Pool {
        name: pool.name.clone(),
        disks: pool
            .disks
            .iter()
            .map(|d| format!("aio://{}", d.display()))
            .collect(),
        state: state.into(),
        capacity: pool.size,
        used: pool.size.saturating_sub(pool.free),
    }
}

/// `nvmf://…` when shared, else `bdev:///<uuid>` (Mayastor's local URI).
fn replica_uri(uuid: Uuid, nvmet: &Nvmet) -> String {
    if nvmet.is_shared(uuid) {
        nvmet.share_uri(uuid)
    } else {
        format!("bdev:///{}", uuid.hyphenated())
    }
}

fn replica_reply(lv: &LvRow, nvmet: &Nvmet) -> pb::Replica {
    let uuid = lv_uuid(lv);
    let share = if nvmet.is_shared(uuid) {
        pb::ShareProtocolReplica::ReplicaNvmf
    } else {
        pb::ShareProtocolReplica::ReplicaNone
    };
    pb::Replica {
        uuid: lv.name.clone(),
        pool: lv.vg.clone(),
        thin: false,
        size: lv.size,
        share: share.into(),
        uri: replica_uri(uuid, nvmet),
    }
}

#[cfg(test)]
mod tests;
