//! Nexuses of Mayastor's `Mayastor` service on md RAID1: a nexus is an md
//! array over its children, published over nvmet like a bdev (NQN
//! `nqn.2019-05.io.openebs:nexus-<uuid>`, on the nexus port).
//!
//! A child is a replica of this agent (`bdev:///<uuid>`: its logical
//! volume) or a remote NVMe/TCP subsystem (`nvmf://<ip>:<port>/<nqn>`),
//! which the agent connects to as a host ([`kernel`]). The children given
//! to `CreateNexus` are taken as in sync, as Mayastor takes them; a child
//! added later is a spare that md recovers: that recovery is the child's
//! rebuild. md's member states are the truth for each child:
//!
//! | md member | child |
//! |---|---|
//! | `in_sync` | `CHILD_ONLINE` |
//! | `spare` (out of sync, being rebuilt or waiting) | `CHILD_DEGRADED` |
//! | `faulty`, or gone | `CHILD_FAULTED` |
//! | taken out by `ChildOperation` offline | `CHILD_DEGRADED` |
//!
//! md recovers every spare of an array as soon as it can; the agent holds
//! recovery back (`sync_action` `frozen`) while a spare waits for
//! `StartRebuild` (added with `norebuild`, or its rebuild stopped) or its
//! rebuild is paused, and lets it run (`idle`) otherwise. So the rebuilds
//! of one nexus run and pause together. A rebuild ends when md has
//! recovered the child (completed: the child is online) or stopped using
//! it (failed: the child is faulted); either way it is gone, as in
//! Mayastor, and `GetRebuildState` answers `NOT_FOUND`.
//!
//! Nexuses live as long as the agent, as Mayastor's do: a starting agent
//! stops the arrays it made (named [`kernel::MD_NAME`]), unpublishes them
//! and disconnects from remote children; the replicas keep the data
//! (md's metadata sits at their end) and `CreateNexus` makes the nexus
//! again.

pub mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
pub mod kernel;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};
use uuid::Uuid;

use super::limits::shown;
use super::nvmet::{Export, HostAccess, Kind, Nvmet, NQN_PREFIX};
use super::pools::{checks::parse_uuid, Pools};
use crate::nvme::ShareUri;
use crate::proto::mayastor as pb;
pub use error::NexusError;
use kernel::{ArrayStatus, MemberState, NexusKernel, Remote};

/// Bytes md keeps at the end of each child: the 1.0 superblock and the
/// internal bitmap, at most 136 KiB for the children's sizes (mdadm's
/// `choose_bm_space`), rounded up.
pub const MD_RESERVE: u64 = 256 << 10;

/// The host NQN a nexus connects to its remote children as, on an agent
/// serving `address`.
pub fn host_nqn(address: std::net::Ipv4Addr) -> String {
    format!("{NQN_PREFIX}nvmfcheck:nexus-host:{address}")
}

/// Where a child's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A replica of this agent.
    Local(Uuid),
    /// An NVMe/TCP subsystem.
    Remote(Remote),
}

/// A rebuild under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Running,
    Paused,
}

#[derive(Debug)]
struct Child {
    uri: String,
    source: Source,
    /// Its block device (`/dev/<kname>`), while it has one.
    device: Option<PathBuf>,
    /// Taken out by `ChildOperation` offline.
    offline: bool,
    rebuild: Option<Job>,
}

#[derive(Debug)]
struct Nexus {
    uuid: Uuid,
    size: u64,
    array: PathBuf,
    children: Vec<Child>,
}

impl Nexus {
    fn child(&self, uri: &str) -> Option<usize> {
        self.children.iter().position(|c| c.uri == uri)
    }
}

/// The nexuses of this agent.
pub struct Nexuses {
    kernel: Arc<dyn NexusKernel>,
    hostnqn: String,
    rebuild_rate: Option<u32>,
    nexuses: Vec<Nexus>,
}

/// What a call that resolves children needs of the rest of the agent.
pub struct Parts<'a> {
    /// For the devices of local children.
    pub pools: &'a mut Pools,
    /// For publishing.
    pub nvmet: &'a Nvmet,
}

impl Nexuses {
    /// The nexuses of a (re)starting agent: none. What an earlier run left
    /// (arrays, their subsystems, connections as `hostnqn`) is removed;
    /// failures are logged, not fatal.
    pub fn open(
        kernel: Arc<dyn NexusKernel>,
        hostnqn: String,
        rebuild_rate: Option<u32>,
        nvmet: &Nvmet,
    ) -> Self {
        let nexuses = Self {
            kernel,
            hostnqn,
            rebuild_rate,
            nexuses: Vec::new(),
        };
        // Unpublished first: nvmet holds an exported array open.
        match nvmet.nexus_shares() {
            Ok(uuids) => {
                for uuid in uuids {
                    match nvmet.unpublish(uuid) {
                        Ok(_) => info!("unpublished nexus {uuid}, left by an earlier run"),
                        Err(e) => warn!("nexus {uuid} stays published: {e}"),
                    }
                }
            }
            Err(e) => warn!("cannot look for published nexuses: {e}"),
        }
        match nexuses.kernel.arrays() {
            Ok(arrays) => {
                for (uuid, array) in arrays {
                    match nexuses.kernel.stop(&array) {
                        Ok(()) => info!(
                            "stopped nexus {uuid} ({}), left by an earlier run",
                            array.display()
                        ),
                        Err(e) => warn!("nexus {uuid} ({}) is left running: {e}", array.display()),
                    }
                }
            }
            Err(e) => warn!("cannot look for nexuses an earlier run left: {e}"),
        }
        match nexuses.kernel.connected(&nexuses.hostnqn) {
            Ok(subsystems) => {
                for nqn in subsystems {
                    match nexuses.kernel.disconnect(&nqn) {
                        Ok(()) => info!("disconnected from {nqn}, a child of an earlier run"),
                        Err(e) => warn!("still connected to {nqn}: {e}"),
                    }
                }
            }
            Err(e) => warn!("cannot look for connections of an earlier run: {e}"),
        }
        nexuses
    }

    fn index(&self, uuid: &str) -> Result<usize, NexusError> {
        let parsed = nexus_uuid(uuid)?;
        self.nexuses
            .iter()
            .position(|n| n.uuid == parsed)
            .ok_or_else(|| NexusError::UnknownNexus(uuid.to_string()))
    }

    /// `ListNexus`.
    pub fn list(&mut self, nvmet: &Nvmet) -> Vec<pb::Nexus> {
        (0..self.nexuses.len())
            .map(|i| {
                let status = self.settle(i);
                self.reply(i, status.as_ref(), nvmet)
            })
            .collect()
    }

    /// `CreateNexus`. The same nexus again (same size and children) is
    /// answered as it is.
    pub fn create(
        &mut self,
        req: &pb::CreateNexusRequest,
        parts: Parts<'_>,
    ) -> Result<pb::Nexus, NexusError> {
        let uuid = nexus_uuid(&req.uuid)?;
        if req.size == 0 || !req.size.is_multiple_of(4096) {
            return Err(NexusError::BadSize(req.size));
        }
        if req.children.is_empty() {
            return Err(NexusError::NoChildren);
        }
        let mut sources = Vec::new();
        for (k, uri) in req.children.iter().enumerate() {
            if req.children[..k].contains(uri) {
                return Err(NexusError::SameChild(shown(uri)));
            }
            sources.push(child_source(uri)?);
        }
        if let Some(i) = self.nexuses.iter().position(|n| n.uuid == uuid) {
            let n = &self.nexuses[i];
            let uris: Vec<&String> = n.children.iter().map(|c| &c.uri).collect();
            if n.size == req.size && uris == req.children.iter().collect::<Vec<_>>() {
                let status = self.settle(i);
                return Ok(self.reply(i, status.as_ref(), parts.nvmet));
            }
            return Err(NexusError::NexusExists {
                uuid: req.uuid.clone(),
                size: n.size,
                children: uris
                    .iter()
                    .map(|u| u.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut made = Made::default();
        let result = self.create_steps(uuid, req, &sources, parts.pools, &mut made);
        match result {
            Ok((array, devices)) => {
                let children = req
                    .children
                    .iter()
                    .zip(sources)
                    .zip(devices)
                    .map(|((uri, source), device)| Child {
                        uri: uri.clone(),
                        source,
                        device: Some(device),
                        offline: false,
                        rebuild: None,
                    })
                    .collect();
                info!("created nexus {uuid} on {}", array.display());
                self.nexuses.push(Nexus {
                    uuid,
                    size: req.size,
                    array,
                    children,
                });
                let i = self.nexuses.len() - 1;
                let status = self.settle(i);
                Ok(self.reply(i, status.as_ref(), parts.nvmet))
            }
            Err(e) => Err(self.undo(made, e)),
        }
    }

    fn create_steps(
        &self,
        uuid: Uuid,
        req: &pb::CreateNexusRequest,
        sources: &[Source],
        pools: &mut Pools,
        made: &mut Made,
    ) -> Result<(PathBuf, Vec<PathBuf>), NexusError> {
        let mut devices = Vec::new();
        for (uri, source) in req.children.iter().zip(sources) {
            devices.push(self.attach(uri, source, req.size, pools, made)?);
        }
        let array = self.kernel.create(uuid, req.size / 1024, &devices)?;
        if let Some(rate) = self.rebuild_rate {
            self.kernel
                .set(&array, "sync_speed_max", &rate.to_string())?;
        }
        Ok((array, devices))
    }

    /// The device of a child: the replica's volume, or the namespace of a
    /// connection made now (noted in `made`); checked to hold `size`.
    fn attach(
        &self,
        uri: &str,
        source: &Source,
        size: u64,
        pools: &mut Pools,
        made: &mut Made,
    ) -> Result<PathBuf, NexusError> {
        let device = match source {
            Source::Local(uuid) => pools.replica_path(*uuid)?,
            Source::Remote(remote) => {
                let before = self.kernel.connected(&self.hostnqn)?;
                let device = self.kernel.connect(remote, &self.hostnqn)?;
                if !before.contains(&remote.subnqn) {
                    made.connections.push(remote.subnqn.clone());
                }
                device
            }
        };
        let device = self.kernel.resolve(&device)?;
        let have = self.kernel.size(&device)?;
        if have < size + MD_RESERVE {
            return Err(NexusError::ChildTooSmall {
                uri: uri.to_string(),
                size: have,
                nexus: size,
                reserve: MD_RESERVE,
            });
        }
        Ok(device)
    }

    /// Undoes what a failed call made; returns `cause`, or
    /// [`NexusError::Incomplete`] naming what stayed.
    fn undo(&self, made: Made, cause: NexusError) -> NexusError {
        let mut left = Vec::new();
        if let Some((array, kname)) = &made.member {
            for value in ["faulty", "remove"] {
                if let Err(e) = self.kernel.set_member(array, kname, value) {
                    left.push(format!("{kname} in {}: {e}", array.display()));
                    break;
                }
            }
        }
        for nqn in &made.connections {
            if let Err(e) = self.kernel.disconnect(nqn) {
                left.push(format!("connection to {nqn}: {e}"));
            }
        }
        if left.is_empty() {
            cause
        } else {
            NexusError::Incomplete {
                cause: Box::new(cause),
                undo: left.join("; "),
            }
        }
    }

    /// `DestroyNexus`: unpublishes it, stops its array and disconnects
    /// its remote children. An unknown nexus is fine, as in Mayastor.
    pub fn destroy(&mut self, uuid: &str, nvmet: &Nvmet) -> Result<(), NexusError> {
        let i = match self.index(uuid) {
            Ok(i) => i,
            Err(NexusError::UnknownNexus(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let nexus = &self.nexuses[i];
        let was_published = nvmet.unpublish(nexus.uuid)?;
        if let Err(e) = self.kernel.stop(&nexus.array) {
            let cause = NexusError::Kernel(e);
            if was_published {
                if let Err(again) = publish(nvmet, nexus) {
                    return Err(NexusError::Incomplete {
                        cause: Box::new(cause),
                        undo: format!("it stays unpublished: {again}"),
                    });
                }
            }
            return Err(cause);
        }
        let nexus = self.nexuses.remove(i);
        for child in &nexus.children {
            if let Source::Remote(remote) = &child.source {
                if let Err(e) = self.kernel.disconnect(&remote.subnqn) {
                    warn!(
                        "nexus {}: still connected to {}: {e}",
                        nexus.uuid, remote.subnqn
                    );
                }
            }
        }
        info!("destroyed nexus {}", nexus.uuid);
        Ok(())
    }

    /// `PublishNexus` over NVMe/TCP; returns its URI. Publishing again is
    /// fine.
    pub fn publish(
        &mut self,
        req: &pb::PublishNexusRequest,
        nvmet: &Nvmet,
    ) -> Result<String, NexusError> {
        let i = self.index(&req.uuid)?;
        let chars = req.key.chars().count();
        if chars != 0 && chars != 16 {
            return Err(NexusError::BadKey(chars));
        }
        match pb::ShareProtocolNexus::try_from(req.share) {
            Ok(pb::ShareProtocolNexus::NexusNvmf) => {}
            Ok(other) => return Err(NexusError::Protocol(other.as_str_name().to_string())),
            Err(_) => {
                return Err(NexusError::Protocol(format!(
                    "{} (not a protocol)",
                    req.share
                )))
            }
        }
        let nexus = &self.nexuses[i];
        if publish(nvmet, nexus)? {
            info!(
                "published nexus {} at {}",
                nexus.uuid,
                nvmet.uri(Kind::Nexus, nexus.uuid)
            );
        }
        Ok(nvmet.uri(Kind::Nexus, nexus.uuid))
    }

    /// `UnpublishNexus`; an unpublished nexus is fine.
    pub fn unpublish(&mut self, uuid: &str, nvmet: &Nvmet) -> Result<(), NexusError> {
        let i = self.index(uuid)?;
        if nvmet.unpublish(self.nexuses[i].uuid)? {
            info!("unpublished nexus {}", self.nexuses[i].uuid);
        }
        Ok(())
    }

    /// `AddChildNexus`: the child joins as a spare; unless `norebuild`,
    /// its rebuild starts.
    pub fn add_child(
        &mut self,
        req: &pb::AddChildNexusRequest,
        parts: Parts<'_>,
    ) -> Result<pb::Child, NexusError> {
        let i = self.index(&req.uuid)?;
        let source = child_source(&req.uri)?;
        if self.nexuses[i].child(&req.uri).is_some() {
            return Err(NexusError::ChildExists {
                nexus: req.uuid.clone(),
                uri: req.uri.clone(),
            });
        }
        let slots = u32::try_from(self.nexuses[i].children.len() + 1).unwrap_or(u32::MAX);
        let mut made = Made::default();
        let device = match self.join(i, &req.uri, &source, Some(slots), parts.pools, &mut made) {
            Ok(device) => device,
            Err(e) => return Err(self.undo(made, e)),
        };
        self.nexuses[i].children.push(Child {
            uri: req.uri.clone(),
            source,
            device: Some(device),
            offline: false,
            rebuild: (!req.norebuild).then_some(Job::Running),
        });
        info!(
            "nexus {}: added child {}{}",
            self.nexuses[i].uuid,
            req.uri,
            if req.norebuild {
                " (no rebuild)"
            } else {
                ", rebuilding"
            }
        );
        let status = self.settle(i);
        let nexus = &self.nexuses[i];
        let child = nexus
            .children
            .last()
            .map(|c| child_reply(c, status.as_ref()));
        child.ok_or_else(|| NexusError::UnknownChild {
            nexus: req.uuid.clone(),
            uri: req.uri.clone(),
        })
    }

    /// Brings a child's device into nexus `i`'s array as a spare, with
    /// recovery held back; grows the array to `slots` if given.
    fn join(
        &self,
        i: usize,
        uri: &str,
        source: &Source,
        slots: Option<u32>,
        pools: &mut Pools,
        made: &mut Made,
    ) -> Result<PathBuf, NexusError> {
        let nexus = &self.nexuses[i];
        let device = self.attach(uri, source, nexus.size, pools, made)?;
        self.kernel.set(&nexus.array, "sync_action", "frozen")?;
        self.kernel.add(&nexus.array, &device)?;
        if let Some(kname) = device.file_name() {
            made.member = Some((nexus.array.clone(), kname.to_string_lossy().into_owned()));
        }
        if let Some(slots) = slots {
            self.kernel
                .set(&nexus.array, "raid_disks", &slots.to_string())?;
        }
        Ok(device)
    }

    /// `RemoveChildNexus`: takes the child out of the array, which shrinks
    /// by its slot. An unknown child is fine, as in Mayastor; the last
    /// child, or the only one in sync, is refused.
    pub fn remove_child(&mut self, req: &pb::RemoveChildNexusRequest) -> Result<(), NexusError> {
        let i = self.index(&req.uuid)?;
        if self.nexuses[i].children.len() == 1 {
            return Err(NexusError::LastChild {
                nexus: req.uuid.clone(),
                uri: req.uri.clone(),
            });
        }
        let Some(c) = self.nexuses[i].child(&req.uri) else {
            return Ok(());
        };
        let status = self.settle(i);
        self.take_out(i, c, status.as_ref())?;
        let slots = self.nexuses[i].children.len() - 1;
        let nexus = &self.nexuses[i];
        self.kernel
            .set(&nexus.array, "raid_disks", &slots.to_string())?;
        let child = self.nexuses[i].children.remove(c);
        self.drop_connection(&child);
        info!(
            "nexus {}: removed child {}",
            self.nexuses[i].uuid, child.uri
        );
        self.settle(i);
        Ok(())
    }

    /// Takes child `c` of nexus `i` out of the array (its slot stays),
    /// unless it would leave no child in sync.
    fn take_out(&self, i: usize, c: usize, status: Option<&ArrayStatus>) -> Result<(), NexusError> {
        let nexus = &self.nexuses[i];
        let child = &nexus.children[c];
        let member = member_of(child, status);
        if member.map(|m| m.state) == Some(MemberState::InSync) {
            let in_sync = status.map_or(0, |s| {
                s.members
                    .iter()
                    .filter(|m| m.state == MemberState::InSync)
                    .count()
            });
            if in_sync < 2 {
                return Err(NexusError::ChildState {
                    nexus: nexus.uuid.to_string(),
                    uri: child.uri.clone(),
                    state: "the only child in sync",
                    needs: "the nexus would lose its data; rebuild another child first",
                });
            }
        }
        if let Some(member) = member {
            if member.state != MemberState::Faulty {
                self.kernel
                    .set_member(&nexus.array, &member.kname, "faulty")?;
            }
            self.kernel
                .set_member(&nexus.array, &member.kname, "remove")?;
        }
        Ok(())
    }

    fn drop_connection(&self, child: &Child) {
        if let Source::Remote(remote) = &child.source {
            if let Err(e) = self.kernel.disconnect(&remote.subnqn) {
                warn!("still connected to {}: {e}", remote.subnqn);
            }
        }
    }

    /// `ChildOperation`: offline takes the child out (it is degraded, its
    /// rebuild gone, its connection closed); online brings a child taken
    /// offline back and rebuilds it.
    pub fn child_operation(
        &mut self,
        req: &pb::ChildNexusRequest,
        parts: Parts<'_>,
    ) -> Result<(), NexusError> {
        let i = self.index(&req.uuid)?;
        let action =
            pb::ChildAction::try_from(req.action).map_err(|_| NexusError::BadAction(req.action))?;
        let c = self.nexuses[i]
            .child(&req.uri)
            .ok_or_else(|| NexusError::UnknownChild {
                nexus: req.uuid.clone(),
                uri: req.uri.clone(),
            })?;
        let status = self.settle(i);
        match action {
            pb::ChildAction::Offline => {
                if self.nexuses[i].children[c].offline {
                    return Ok(());
                }
                self.take_out(i, c, status.as_ref())?;
                let child = &mut self.nexuses[i].children[c];
                child.offline = true;
                child.rebuild = None;
                child.device = None;
                let child = &self.nexuses[i].children[c];
                self.drop_connection(child);
                info!(
                    "nexus {}: child {} is offline",
                    self.nexuses[i].uuid, req.uri
                );
            }
            pb::ChildAction::Online => {
                let child = &self.nexuses[i].children[c];
                if !child.offline {
                    return Err(NexusError::ChildState {
                        nexus: req.uuid.clone(),
                        uri: req.uri.clone(),
                        state: "not offline",
                        needs: "online brings back a child taken offline",
                    });
                }
                let source = child.source.clone();
                let mut made = Made::default();
                let device = match self.join(i, &req.uri, &source, None, parts.pools, &mut made) {
                    Ok(device) => device,
                    Err(e) => return Err(self.undo(made, e)),
                };
                let child = &mut self.nexuses[i].children[c];
                child.offline = false;
                child.device = Some(device);
                child.rebuild = Some(Job::Running);
                info!(
                    "nexus {}: child {} is back, rebuilding",
                    self.nexuses[i].uuid, req.uri
                );
            }
        }
        self.settle(i);
        Ok(())
    }

    /// Finds child `uri` of nexus `uuid` after settling its rebuilds.
    fn rebuild_child(
        &mut self,
        uuid: &str,
        uri: &str,
    ) -> Result<(usize, usize, Option<ArrayStatus>), NexusError> {
        let i = self.index(uuid)?;
        let c = self.nexuses[i]
            .child(uri)
            .ok_or_else(|| NexusError::UnknownChild {
                nexus: uuid.to_string(),
                uri: uri.to_string(),
            })?;
        let status = self.settle(i);
        Ok((i, c, status))
    }

    fn job(&self, i: usize, c: usize) -> Result<Job, NexusError> {
        let child = &self.nexuses[i].children[c];
        child.rebuild.ok_or_else(|| NexusError::NoRebuild {
            nexus: self.nexuses[i].uuid.to_string(),
            uri: child.uri.clone(),
        })
    }

    /// `StartRebuild` of a degraded child; one under way is fine.
    pub fn start_rebuild(&mut self, uuid: &str, uri: &str) -> Result<(), NexusError> {
        let (i, c, status) = self.rebuild_child(uuid, uri)?;
        let child = &self.nexuses[i].children[c];
        let refuse = |state, needs| NexusError::ChildState {
            nexus: uuid.to_string(),
            uri: uri.to_string(),
            state,
            needs,
        };
        match (
            child.rebuild,
            member_of(child, status.as_ref()).map(|m| m.state),
        ) {
            (Some(Job::Running), _) => return Ok(()),
            (Some(Job::Paused), _) => {
                return Err(refuse("paused", "ResumeRebuild resumes its rebuild"))
            }
            (None, Some(MemberState::Spare)) if !child.offline => {}
            (None, Some(MemberState::InSync)) => {
                return Err(refuse("online", "only a degraded child is rebuilt"))
            }
            _ if child.offline => {
                return Err(refuse(
                    "offline",
                    "ChildOperation online brings it back and rebuilds it",
                ))
            }
            _ => {
                return Err(refuse(
                    "faulted",
                    "remove it and add it again (AddChildNexus) to rebuild it",
                ))
            }
        }
        let in_sync = status
            .as_ref()
            .is_some_and(|s| s.members.iter().any(|m| m.state == MemberState::InSync));
        if !in_sync {
            return Err(NexusError::NoSource(uuid.to_string()));
        }
        self.nexuses[i].children[c].rebuild = Some(Job::Running);
        info!("nexus {uuid}: rebuilding child {uri}");
        self.settle(i);
        Ok(())
    }

    /// `StopRebuild`: the child stays degraded; no rebuild is fine.
    pub fn stop_rebuild(&mut self, uuid: &str, uri: &str) -> Result<(), NexusError> {
        let (i, c, _) = self.rebuild_child(uuid, uri)?;
        if self.nexuses[i].children[c].rebuild.take().is_some() {
            info!("nexus {uuid}: stopped the rebuild of child {uri}");
            self.settle(i);
        }
        Ok(())
    }

    /// `PauseRebuild` (`paused` stays paused).
    pub fn pause_rebuild(&mut self, uuid: &str, uri: &str) -> Result<(), NexusError> {
        self.set_job(uuid, uri, Job::Paused)
    }

    /// `ResumeRebuild` (`running` stays running).
    pub fn resume_rebuild(&mut self, uuid: &str, uri: &str) -> Result<(), NexusError> {
        self.set_job(uuid, uri, Job::Running)
    }

    fn set_job(&mut self, uuid: &str, uri: &str, job: Job) -> Result<(), NexusError> {
        let (i, c, _) = self.rebuild_child(uuid, uri)?;
        self.job(i, c)?;
        self.nexuses[i].children[c].rebuild = Some(job);
        self.settle(i);
        Ok(())
    }

    /// `GetRebuildState`: `running` or `paused`.
    pub fn rebuild_state(&mut self, uuid: &str, uri: &str) -> Result<String, NexusError> {
        let (i, c, _) = self.rebuild_child(uuid, uri)?;
        Ok(match self.job(i, c)? {
            Job::Running => "running",
            Job::Paused => "paused",
        }
        .to_string())
    }

    /// `GetRebuildProgress`: the percentage recovered.
    pub fn rebuild_progress(&mut self, uuid: &str, uri: &str) -> Result<u32, NexusError> {
        let (i, c, status) = self.rebuild_child(uuid, uri)?;
        self.job(i, c)?;
        Ok(progress(&self.nexuses[i].children[c], status.as_ref()).unwrap_or(0))
    }

    /// Reads nexus `i`'s array, ends the rebuilds md finished or gave
    /// up, and holds recovery back or lets it run as the rebuilds say.
    fn settle(&mut self, i: usize) -> Option<ArrayStatus> {
        let nexus = &self.nexuses[i];
        let status = match self.kernel.status(&nexus.array) {
            Ok(s) => s,
            Err(e) => {
                warn!("nexus {}: cannot read its array: {e}", nexus.uuid);
                return None;
            }
        };
        let uuid = nexus.uuid;
        let mut hold = false;
        for child in &mut self.nexuses[i].children {
            let state = member_of(child, Some(&status)).map(|m| m.state);
            match (child.rebuild, state) {
                (Some(_), Some(MemberState::InSync)) => {
                    info!("nexus {uuid}: the rebuild of child {} completed", child.uri);
                    child.rebuild = None;
                }
                (Some(_), Some(MemberState::Faulty) | None) => {
                    warn!("nexus {uuid}: the rebuild of child {} failed", child.uri);
                    child.rebuild = None;
                }
                (Some(Job::Paused) | None, Some(MemberState::Spare)) => hold = true,
                _ => {}
            }
        }
        let action = status.sync_action.as_str();
        let want = match (hold, action) {
            (true, "frozen") | (false, "idle" | "recover" | "resync") => None,
            (true, _) => Some("frozen"),
            (false, _) => Some("idle"),
        };
        if let Some(want) = want {
            let nexus = &self.nexuses[i];
            if let Err(e) = self.kernel.set(&nexus.array, "sync_action", want) {
                warn!("nexus {uuid}: cannot set its sync_action to {want}: {e}");
            }
        }
        Some(status)
    }

    fn reply(&self, i: usize, status: Option<&ArrayStatus>, nvmet: &Nvmet) -> pb::Nexus {
        let nexus = &self.nexuses[i];
        let children: Vec<pb::Child> = nexus
            .children
            .iter()
            .map(|c| child_reply(c, status))
            .collect();
        let online = children
            .iter()
            .filter(|c| c.state == pb::ChildState::ChildOnline as i32)
            .count();
        let state = if online == children.len() {
            pb::NexusState::NexusOnline
        } else if online > 0 {
            pb::NexusState::NexusDegraded
        } else {
            pb::NexusState::NexusFaulted
        };
        let published = nvmet.is_nexus_shared(nexus.uuid);
        pb::Nexus {
            uuid: nexus.uuid.to_string(),
            size: nexus.size,
            state: state.into(),
            rebuilds: u32::try_from(
                nexus
                    .children
                    .iter()
                    .filter(|c| c.rebuild.is_some())
                    .count(),
            )
            .unwrap_or(u32::MAX),
            device_uri: if published {
                nvmet.uri(Kind::Nexus, nexus.uuid)
            } else {
                String::new()
            },
            children,
        }
    }
}

/// What a call made, for undoing it on failure.
#[derive(Default)]
struct Made {
    /// Subsystems it connected to.
    connections: Vec<String>,
    /// A member it added: array and kernel name.
    member: Option<(PathBuf, String)>,
}

fn publish(nvmet: &Nvmet, nexus: &Nexus) -> Result<bool, NexusError> {
    Ok(nvmet.share(&Export {
        kind: Kind::Nexus,
        uuid: nexus.uuid,
        device: &nexus.array,
        buffered_io: false,
        hosts: HostAccess::Any,
    })?)
}

fn nexus_uuid(uuid: &str) -> Result<Uuid, NexusError> {
    parse_uuid(uuid).map_err(|problem| NexusError::BadUuid {
        uuid: shown(uuid),
        problem,
    })
}

/// Where child `uri` is: `bdev:///<replica uuid>` or
/// `nvmf://<ip>:<port>/<nqn>`.
fn child_source(uri: &str) -> Result<Source, NexusError> {
    let bad = |problem: String| NexusError::BadChild {
        uri: shown(uri),
        problem,
    };
    if let Some(rest) = uri.strip_prefix("bdev:///") {
        let uuid = parse_uuid(rest).map_err(|p| bad(format!("names a replica uuid that {p}")))?;
        return Ok(Source::Local(uuid));
    }
    if uri.starts_with("nvmf://") {
        let share = ShareUri::parse(uri).map_err(|e| bad(e.to_string()))?;
        return Ok(Source::Remote(Remote {
            traddr: share.transport.traddr,
            trsvcid: share.transport.trsvcid,
            subnqn: share.nqn,
        }));
    }
    Err(bad("has a scheme the agent does not take".to_string()))
}

fn member_of<'s>(child: &Child, status: Option<&'s ArrayStatus>) -> Option<&'s kernel::Member> {
    let device = child.device.as_deref()?;
    status?.member(device)
}

/// How far child's rebuild is, in percent.
fn progress(child: &Child, status: Option<&ArrayStatus>) -> Option<u32> {
    let status = status?;
    let member = member_of(child, Some(status))?;
    if member.state == MemberState::InSync {
        return Some(100);
    }
    let done = member.recovered.unwrap_or(0);
    let total = status.component_sectors.max(1);
    u32::try_from((done.min(total) * 100) / total).ok()
}

fn child_reply(child: &Child, status: Option<&ArrayStatus>) -> pb::Child {
    let state = if child.offline {
        pb::ChildState::ChildDegraded
    } else {
        match member_of(child, status).map(|m| m.state) {
            Some(MemberState::InSync) => pb::ChildState::ChildOnline,
            Some(MemberState::Spare) => pb::ChildState::ChildDegraded,
            Some(MemberState::Faulty) | None => pb::ChildState::ChildFaulted,
        }
    };
    let rebuild_progress = match child.rebuild {
        Some(_) => progress(child, status)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0),
        None => -1,
    };
    pb::Child {
        uri: child.uri.clone(),
        state: state.into(),
        rebuild_progress,
    }
}
