//! The nexus and rebuild calls on [`FakeNexusKernel`], [`FakeLvm`] and
//! [`FakeConfigfs`].

use std::net::Ipv4Addr;
use std::path::Path;

use tonic::Code;

use super::fake::FakeNexusKernel;
use super::*;
use crate::agent::aio_paths::AioPaths;
use crate::agent::fake::FakeConfigfs;
use crate::agent::nvmet::Listener;
use crate::agent::pools::fake::FakeLvm;
use crate::agent::pools::Taken;

const NEXUS: &str = "5e1f3a2b-0000-4000-8000-0000000000aa";
const LOCAL: &str = "0b9e1c4a-5c3e-4f6a-9d2b-7e8f00112233";
const SPARE: &str = "1c2d3e4f-0000-4000-8000-000000000002";
const REMOTE_NQN: &str = "nqn.2019-05.io.openebs:7d8e9f00-0000-4000-8000-000000000003";
const REMOTE: &str =
    "nvmf://192.168.1.3:8430/nqn.2019-05.io.openebs:7d8e9f00-0000-4000-8000-000000000003";
const HOST: &str = "nqn.2019-05.io.openebs:nvmfcheck:nexus-host:192.168.1.2";
const SIZE: u64 = 32 << 20;

struct Setup {
    dir: tempfile::TempDir,
    fs: Arc<FakeConfigfs>,
    kernel: Arc<FakeNexusKernel>,
    nvmet: Nvmet,
    pools: Pools,
    nexuses: Nexuses,
}

fn local(uuid: &str) -> String {
    format!("bdev:///{uuid}")
}

impl Setup {
    /// A pool with replicas LOCAL and SPARE, and REMOTE reachable.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk0");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        std::fs::create_dir(dir.path().join("lvm")).unwrap();
        let remote = dir.path().join("nvme1n1");
        std::fs::File::create(&remote)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let fs = Arc::new(FakeConfigfs::new());
        let nvmet = Nvmet::new(
            fs.clone(),
            Listener {
                address: Ipv4Addr::new(192, 168, 1, 2),
                io_port: 8430,
                nexus_port: 4421,
                discovery_port: 8420,
            },
        );
        let lvm = Arc::new(FakeLvm::new(dir.path().join("lvm")));
        let mut pools = Pools::open(lvm, &nvmet, &[]);
        let paths = AioPaths::new(&[dir.path().to_path_buf()], Path::new("/nonexistent"));
        pools
            .create_pool(
                "pool1",
                &[disk.display().to_string()],
                &paths,
                &Taken::default(),
            )
            .unwrap();
        for uuid in [LOCAL, SPARE] {
            let req = pb::CreateReplicaRequest {
                uuid: uuid.into(),
                pool: "pool1".into(),
                size: 64 << 20,
                thin: false,
                share: pb::ShareProtocolReplica::ReplicaNone.into(),
            };
            pools
                .create_replica(&req, &nvmet, &Taken::default())
                .unwrap();
        }
        let kernel = Arc::new(FakeNexusKernel::new(dir.path().join("md")));
        kernel.add_remote(REMOTE_NQN, &remote);
        let nexuses = Nexuses::open(kernel.clone(), HOST.into(), None, &nvmet);
        Self {
            dir,
            fs,
            kernel,
            nvmet,
            pools,
            nexuses,
        }
    }

    fn parts(&mut self) -> (&mut Nexuses, Parts<'_>) {
        (
            &mut self.nexuses,
            Parts {
                pools: &mut self.pools,
                nvmet: &self.nvmet,
            },
        )
    }

    fn create(&mut self, children: &[&str]) -> Result<pb::Nexus, NexusError> {
        let req = pb::CreateNexusRequest {
            uuid: NEXUS.into(),
            size: SIZE,
            children: children.iter().map(|c| c.to_string()).collect(),
        };
        let (n, parts) = self.parts();
        n.create(&req, parts)
    }

    fn add(&mut self, uri: &str, norebuild: bool) -> Result<pb::Child, NexusError> {
        let req = pb::AddChildNexusRequest {
            uuid: NEXUS.into(),
            uri: uri.into(),
            norebuild,
        };
        let (n, parts) = self.parts();
        n.add_child(&req, parts)
    }

    fn operate(&mut self, uri: &str, action: i32) -> Result<(), NexusError> {
        let req = pb::ChildNexusRequest {
            uuid: NEXUS.into(),
            uri: uri.into(),
            action,
        };
        let (n, parts) = self.parts();
        n.child_operation(&req, parts)
    }

    fn nexus(&mut self) -> pb::Nexus {
        let mut list = self.nexuses.list(&self.nvmet);
        assert_eq!(list.len(), 1, "{list:?}");
        list.remove(0)
    }

    /// Each child's state, in order.
    fn states(&mut self) -> Vec<pb::ChildState> {
        self.nexus().children.iter().map(|c| c.state()).collect()
    }

    fn sync_action(&self) -> String {
        let arrays = self.kernel.arrays().unwrap();
        self.kernel.status(&arrays[0].1).unwrap().sync_action
    }

    fn everything(&self) -> String {
        format!("{} {}", self.kernel.snapshot(), self.fs.dump())
    }
}

use pb::ChildState::{ChildDegraded as Degraded, ChildFaulted as Faulted, ChildOnline as Online};

#[test]
fn a_nexus_over_a_local_and_a_remote_replica_is_made_published_and_destroyed() {
    let mut s = Setup::new();
    let made = s.create(&[&local(LOCAL), REMOTE]).unwrap();
    assert_eq!(made.uuid, NEXUS);
    assert_eq!(made.size, SIZE);
    assert_eq!(made.state(), pb::NexusState::NexusOnline);
    assert_eq!(made.device_uri, "");
    assert_eq!(s.states(), [Online, Online]);
    assert_eq!(s.kernel.connections(), [REMOTE_NQN]);
    // The same again is answered as it is; otherwise it is refused.
    assert_eq!(s.create(&[&local(LOCAL), REMOTE]).unwrap(), made);
    let e = s.create(&[&local(LOCAL)]).unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");

    let publish = pb::PublishNexusRequest {
        uuid: NEXUS.into(),
        key: String::new(),
        share: pb::ShareProtocolNexus::NexusNvmf.into(),
    };
    let uri = s.nexuses.publish(&publish, &s.nvmet).unwrap();
    assert_eq!(
        uri,
        format!("nvmf://192.168.1.2:4421/nqn.2019-05.io.openebs:nexus-{NEXUS}")
    );
    assert_eq!(s.nexuses.publish(&publish, &s.nvmet).unwrap(), uri);
    assert_eq!(s.nexus().device_uri, uri);
    s.nexuses.unpublish(NEXUS, &s.nvmet).unwrap();
    s.nexuses.unpublish(NEXUS, &s.nvmet).unwrap();
    assert_eq!(s.nexus().device_uri, "");
    s.nexuses.publish(&publish, &s.nvmet).unwrap();

    s.nexuses.destroy(NEXUS, &s.nvmet).unwrap();
    assert!(s.nexuses.list(&s.nvmet).is_empty());
    assert!(s.kernel.arrays().unwrap().is_empty());
    assert!(s.kernel.connections().is_empty());
    assert!(!s.nvmet.is_nexus_shared(Uuid::parse_str(NEXUS).unwrap()));
    // Destroying what is not there is fine, as in Mayastor.
    s.nexuses.destroy(NEXUS, &s.nvmet).unwrap();
}

#[test]
fn bad_creates_are_refused_and_change_nothing() {
    let mut s = Setup::new();
    let before = s.everything();
    let too_small = s.dir.path().join("small");
    std::fs::File::create(&too_small)
        .unwrap()
        .set_len(SIZE + MD_RESERVE - 4096)
        .unwrap();
    let small_nqn = "nqn.2019-05.io.openebs:small";
    s.kernel.add_remote(small_nqn, &too_small);
    let small = format!("nvmf://192.168.1.3:8430/{small_nqn}");
    let cases: Vec<(pb::CreateNexusRequest, Code, &str)> = vec![
        (
            req("not-a-uuid", SIZE, &[REMOTE]),
            Code::InvalidArgument,
            "is not a uuid",
        ),
        (
            req(NEXUS, 0, &[REMOTE]),
            Code::InvalidArgument,
            "multiple of 4096",
        ),
        (
            req(NEXUS, SIZE + 1, &[REMOTE]),
            Code::InvalidArgument,
            "multiple of 4096",
        ),
        (
            req(NEXUS, SIZE, &[]),
            Code::InvalidArgument,
            "at least one child",
        ),
        (
            req(NEXUS, SIZE, &[REMOTE, REMOTE]),
            Code::InvalidArgument,
            "given twice",
        ),
        (
            req(NEXUS, SIZE, &["aio:///dev/vdb"]),
            Code::InvalidArgument,
            "scheme",
        ),
        (
            req(NEXUS, SIZE, &["bdev:///m0"]),
            Code::InvalidArgument,
            "is not a uuid",
        ),
        (
            req(NEXUS, SIZE, &["nvmf://192.168.1.3/nqn.x"]),
            Code::InvalidArgument,
            "port",
        ),
        (
            req(
                NEXUS,
                SIZE,
                &[&local("2c3d4e5f-0000-4000-8000-000000000009")],
            ),
            Code::NotFound,
            "no replica",
        ),
        (
            req(NEXUS, SIZE, &[REMOTE, &small]),
            Code::InvalidArgument,
            "too few",
        ),
        (
            req(
                NEXUS,
                SIZE,
                &["nvmf://192.168.1.9:8430/nqn.2019-05.io.openebs:gone"],
            ),
            Code::Internal,
            "cannot reach",
        ),
    ];
    for (r, code, text) in cases {
        let (n, parts) = s.parts();
        let e = n.create(&r, parts).unwrap_err();
        assert_eq!(e.code(), code, "{r:?}: {e}");
        assert!(e.to_string().contains(text), "{r:?}: {e}");
        assert_eq!(s.everything(), before, "{r:?} changed something");
    }
    // md failing leaves no connection behind.
    s.kernel.fail_next("create");
    let e = s.create(&[&local(LOCAL), REMOTE]).unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e}");
    assert_eq!(s.everything(), before);
}

fn req(uuid: &str, size: u64, children: &[&str]) -> pb::CreateNexusRequest {
    pb::CreateNexusRequest {
        uuid: uuid.into(),
        size,
        children: children.iter().map(|c| c.to_string()).collect(),
    }
}

#[test]
fn a_child_added_without_rebuild_waits_then_rebuilds_pauses_resumes_and_completes() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL)]).unwrap();
    let child = s.add(REMOTE, true).unwrap();
    assert_eq!(child.state(), Degraded);
    assert_eq!(child.rebuild_progress, -1);
    assert_eq!(s.nexus().state(), pb::NexusState::NexusDegraded);
    assert_eq!(s.sync_action(), "frozen", "md must not recover it unasked");
    let e = s.nexuses.rebuild_state(NEXUS, REMOTE).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let e = s.add(REMOTE, true).unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");

    s.nexuses.start_rebuild(NEXUS, REMOTE).unwrap();
    assert_eq!(s.nexuses.rebuild_state(NEXUS, REMOTE).unwrap(), "running");
    assert_eq!(s.sync_action(), "recover");
    assert_eq!(s.nexus().rebuilds, 1);
    s.kernel.recovered("nvme1n1", SIZE / 512 / 4);
    assert_eq!(s.nexuses.rebuild_progress(NEXUS, REMOTE).unwrap(), 25);

    s.nexuses.pause_rebuild(NEXUS, REMOTE).unwrap();
    assert_eq!(s.nexuses.rebuild_state(NEXUS, REMOTE).unwrap(), "paused");
    assert_eq!(s.sync_action(), "frozen");
    s.kernel.recover();
    assert_eq!(s.states(), [Online, Degraded], "a paused rebuild went on");
    let e = s.nexuses.start_rebuild(NEXUS, REMOTE).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    s.nexuses.resume_rebuild(NEXUS, REMOTE).unwrap();
    assert_eq!(s.nexuses.rebuild_state(NEXUS, REMOTE).unwrap(), "running");
    s.kernel.recover();
    assert_eq!(s.states(), [Online, Online]);
    assert_eq!(s.nexus().state(), pb::NexusState::NexusOnline);
    assert_eq!(s.nexus().rebuilds, 0);
    let e = s.nexuses.rebuild_progress(NEXUS, REMOTE).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "a completed rebuild is gone: {e}");
    let e = s.nexuses.start_rebuild(NEXUS, REMOTE).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
}

#[test]
fn a_stopped_rebuild_leaves_the_child_degraded_and_held_back() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL)]).unwrap();
    let child = s.add(&local(SPARE), false).unwrap();
    assert_eq!(child.state(), Degraded);
    assert_eq!(child.rebuild_progress, 0);
    assert_eq!(s.sync_action(), "recover");
    s.nexuses.stop_rebuild(NEXUS, &local(SPARE)).unwrap();
    s.nexuses.stop_rebuild(NEXUS, &local(SPARE)).unwrap();
    assert_eq!(s.sync_action(), "frozen");
    s.kernel.recover();
    assert_eq!(s.states(), [Online, Degraded]);
    let e = s.nexuses.pause_rebuild(NEXUS, &local(SPARE)).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
}

#[test]
fn a_faulted_child_fails_its_rebuild_and_can_be_removed_and_added_again() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL)]).unwrap();
    s.add(REMOTE, false).unwrap();
    s.kernel.fault("nvme1n1");
    assert_eq!(s.states(), [Online, Faulted]);
    assert_eq!(s.nexus().state(), pb::NexusState::NexusDegraded);
    let e = s.nexuses.rebuild_state(NEXUS, REMOTE).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "a failed rebuild is gone: {e}");
    let e = s.nexuses.start_rebuild(NEXUS, REMOTE).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    let remove = pb::RemoveChildNexusRequest {
        uuid: NEXUS.into(),
        uri: REMOTE.into(),
    };
    s.nexuses.remove_child(&remove).unwrap();
    assert_eq!(s.states(), [Online]);
    assert!(s.kernel.connections().is_empty());
    s.add(REMOTE, false).unwrap();
    s.kernel.recover();
    assert_eq!(s.states(), [Online, Online]);
}

#[test]
fn removing_the_last_child_or_the_only_one_in_sync_is_refused() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL)]).unwrap();
    let remove = |uri: &str| pb::RemoveChildNexusRequest {
        uuid: NEXUS.into(),
        uri: uri.into(),
    };
    let e = s.nexuses.remove_child(&remove(&local(LOCAL))).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    s.add(REMOTE, true).unwrap();
    let before = s.everything();
    let e = s.nexuses.remove_child(&remove(&local(LOCAL))).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("only child in sync"), "{e}");
    assert_eq!(s.everything(), before);
    // An unknown child is fine, as in Mayastor.
    s.nexuses.remove_child(&remove(&local(SPARE))).unwrap();
    assert_eq!(s.everything(), before);
    let e = s
        .nexuses
        .remove_child(&pb::RemoveChildNexusRequest {
            uuid: SPARE.into(),
            uri: REMOTE.into(),
        })
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
}

#[test]
fn offline_degrades_a_child_and_online_rebuilds_it() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL), REMOTE]).unwrap();
    let offline = pb::ChildAction::Offline as i32;
    let online = pb::ChildAction::Online as i32;
    let e = s.operate(REMOTE, online).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    s.operate(REMOTE, offline).unwrap();
    s.operate(REMOTE, offline).unwrap();
    assert_eq!(s.states(), [Online, Degraded]);
    assert!(s.kernel.connections().is_empty());
    let e = s.operate(&local(LOCAL), offline).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let e = s.operate(REMOTE, 7).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = s.operate(&local(SPARE), offline).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");

    s.operate(REMOTE, online).unwrap();
    assert_eq!(s.states(), [Online, Degraded]);
    assert_eq!(s.nexuses.rebuild_state(NEXUS, REMOTE).unwrap(), "running");
    s.kernel.recover();
    assert_eq!(s.states(), [Online, Online]);
}

#[test]
fn a_failed_add_is_undone() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL)]).unwrap();
    let before = s.everything();
    s.kernel.fail_next("add");
    let e = s.add(REMOTE, false).unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e}");
    // Only the hold on recovery that the add set stays; the list settles it.
    assert_eq!(s.states(), [Online]);
    assert_eq!(s.everything(), before);
}

#[test]
fn bad_publishes_are_refused() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL)]).unwrap();
    let before = s.everything();
    for (key, share, text) in [
        (
            "short",
            pb::ShareProtocolNexus::NexusNvmf as i32,
            "16 characters",
        ),
        ("", pb::ShareProtocolNexus::NexusNbd as i32, "NEXUS_NBD"),
        ("", 9, "not a protocol"),
    ] {
        let r = pb::PublishNexusRequest {
            uuid: NEXUS.into(),
            key: key.into(),
            share,
        };
        let e = s.nexuses.publish(&r, &s.nvmet).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.to_string().contains(text), "{e}");
    }
    assert_eq!(s.everything(), before);
    let e = s.nexuses.unpublish(SPARE, &s.nvmet).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
}

#[test]
fn a_starting_agent_removes_what_an_earlier_run_left() {
    let mut s = Setup::new();
    s.create(&[&local(LOCAL), REMOTE]).unwrap();
    let publish = pb::PublishNexusRequest {
        uuid: NEXUS.into(),
        key: String::new(),
        share: pb::ShareProtocolNexus::NexusNvmf.into(),
    };
    s.nexuses.publish(&publish, &s.nvmet).unwrap();
    let again = Nexuses::open(s.kernel.clone(), HOST.into(), None, &s.nvmet);
    assert!(again.nexuses.is_empty());
    assert!(s.kernel.arrays().unwrap().is_empty());
    assert!(s.kernel.connections().is_empty());
    assert!(s.nvmet.nexus_shares().unwrap().is_empty());
}
