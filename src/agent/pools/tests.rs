//! The pool and replica calls on [`FakeLvm`] and [`FakeConfigfs`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::Code;

use super::fake::{FakeLvm, EXTENT};
use super::*;
use crate::agent::fake::FakeConfigfs;
use crate::agent::nvmet::Listener;

const U1: &str = "0b9e1c4a-5c3e-4f6a-9d2b-7e8f00112233";
const U2: &str = "1c2d3e4f-0000-4000-8000-000000000002";

struct Setup {
    dir: tempfile::TempDir,
    fs: Arc<FakeConfigfs>,
    lvm: Arc<FakeLvm>,
    nvmet: Nvmet,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, size) in [("disk0", 64 << 20), ("disk1", 32 << 20)] {
            std::fs::File::create(dir.path().join(name))
                .unwrap()
                .set_len(size)
                .unwrap();
        }
        std::fs::create_dir(dir.path().join("lvm")).unwrap();
        let fs = Arc::new(FakeConfigfs::new());
        let listener = Listener {
            address: Ipv4Addr::new(192, 168, 1, 2),
            io_port: 8430,
            nexus_port: 8430,
            discovery_port: 8420,
        };
        Self {
            lvm: Arc::new(FakeLvm::new(dir.path().join("lvm"))),
            nvmet: Nvmet::new(fs.clone(), listener),
            fs,
            dir,
        }
    }

    fn disk(&self, n: usize) -> String {
        self.dir
            .path()
            .join(format!("disk{n}"))
            .display()
            .to_string()
    }

    fn paths(&self) -> AioPaths {
        AioPaths::new(&[self.dir.path().to_path_buf()], Path::new("/nonexistent"))
    }

    fn open(&self) -> Pools {
        let found = self.nvmet.scan().unwrap();
        Pools::open(self.lvm.clone(), &self.nvmet, &found)
    }

    fn pool(&self, p: &mut Pools, name: &str, disk: usize) -> Result<pb::Pool, PoolError> {
        p.create_pool(name, &[self.disk(disk)], &self.paths(), &Taken::default())
    }

    fn replica(
        &self,
        p: &mut Pools,
        uuid: &str,
        pool: &str,
        size: u64,
        share: pb::ShareProtocolReplica,
    ) -> Result<pb::Replica, PoolError> {
        let req = pb::CreateReplicaRequest {
            uuid: uuid.into(),
            pool: pool.into(),
            size,
            thin: false,
            share: share.into(),
        };
        p.create_replica(&req, &self.nvmet, &Taken::default())
    }

    /// LVM and configfs as they are now.
    fn snapshot(&self, p: &mut Pools) -> String {
        format!(
            "{:?}\n{:?}\n{}",
            p.list_pools().unwrap(),
            p.list_replicas(&self.nvmet).unwrap(),
            self.fs.dump()
        )
    }
}

use pb::ShareProtocolReplica::{ReplicaIscsi, ReplicaNone, ReplicaNvmf};

#[test]
fn a_pool_and_its_replicas_from_creation_to_destruction() {
    let s = Setup::new();
    let mut p = s.open();
    let pool = s.pool(&mut p, "pool1", 0).unwrap();
    // 64 MiB less the metadata MiB: 15 extents of 4 MiB.
    assert_eq!(pool.capacity, 15 * EXTENT);
    assert_eq!(pool.used, 0);
    assert_eq!(pool.disks, [format!("aio://{}", s.disk(0))]);
    assert_eq!(pool.state, i32::from(pb::PoolState::PoolOnline));
    // The same again is the same pool.
    assert_eq!(s.pool(&mut p, "pool1", 0).unwrap(), pool);

    let r = s
        .replica(&mut p, U1, "pool1", 5 << 20, ReplicaNone)
        .unwrap();
    assert_eq!(r.size, 2 * EXTENT, "rounded up to whole extents");
    assert_eq!(r.uri, format!("bdev:///{U1}"));
    assert_eq!(r.share, i32::from(ReplicaNone));
    assert!(!r.thin);
    let shared = s.replica(&mut p, U2, "pool1", EXTENT, ReplicaNvmf).unwrap();
    let nqn_uri = format!("nvmf://192.168.1.2:8430/nqn.2019-05.io.openebs:{U2}");
    assert_eq!(shared.uri, nqn_uri);
    assert_eq!(p.list_pools().unwrap()[0].used, 3 * EXTENT);
    // The same replica again is answered as it is.
    assert_eq!(
        s.replica(&mut p, U1, "pool1", 8 << 20, ReplicaNone)
            .unwrap(),
        r
    );

    // Share, share again, unshare.
    assert_eq!(
        p.share_replica(U1, 1, &s.nvmet).unwrap(),
        nqn_uri.replace(U2, U1)
    );
    assert_eq!(
        p.share_replica(U1, 1, &s.nvmet).unwrap(),
        nqn_uri.replace(U2, U1)
    );
    let dev = s
        .nvmet
        .exported_device(Uuid::parse_str(U1).unwrap())
        .unwrap();
    assert_eq!(dev, Some(s.dir.path().join("lvm/pool1").join(U1)));
    assert_eq!(
        p.share_replica(U1, 0, &s.nvmet).unwrap(),
        format!("bdev:///{U1}")
    );
    assert!(!s.nvmet.is_shared(Uuid::parse_str(U1).unwrap()));

    // Destroying a shared replica unshares it; a second time is fine.
    p.destroy_replica(U2, &s.nvmet).unwrap();
    p.destroy_replica(U2, &s.nvmet).unwrap();
    assert_eq!(s.fs.dump(), FakeConfigfs::new().dump());
    // The pool goes with its replicas; a second time is fine.
    s.replica(&mut p, U2, "pool1", EXTENT, ReplicaNvmf).unwrap();
    p.destroy_pool("pool1", &s.nvmet).unwrap();
    p.destroy_pool("pool1", &s.nvmet).unwrap();
    assert!(p.list_pools().unwrap().is_empty());
    assert!(p.list_replicas(&s.nvmet).unwrap().is_empty());
    assert_eq!(s.fs.dump(), FakeConfigfs::new().dump());
}

fn code<T: std::fmt::Debug>(r: Result<T, PoolError>) -> (Code, String) {
    let e = r.unwrap_err();
    (e.code(), e.to_string())
}

#[test]
fn bad_input_gets_its_code_and_changes_nothing() {
    let s = Setup::new();
    let mut p = s.open();
    s.pool(&mut p, "pool1", 0).unwrap();
    s.replica(&mut p, U1, "pool1", EXTENT, ReplicaNvmf).unwrap();
    std::fs::create_dir(s.dir.path().join("adir")).unwrap();
    let before = s.snapshot(&mut p);
    let paths = s.paths();
    let none = Taken::default();
    let mut create = |name: &str, disks: &[&str]| {
        let disks: Vec<String> = disks.iter().map(|d| d.to_string()).collect();
        code(p.create_pool(name, &disks, &paths, &none))
    };
    let d1 = s.disk(1);
    let d0 = s.disk(0);
    let adir = s.dir.path().join("adir").display().to_string();
    let missing = s.dir.path().join("nope").display().to_string();
    let cases: Vec<((Code, String), Code, &str)> = vec![
        (create("", &[&d1]), Code::InvalidArgument, "is empty"),
        (
            create("a/b", &[&d1]),
            Code::InvalidArgument,
            "does not allow",
        ),
        (create("p2", &[]), Code::InvalidArgument, "0 disks"),
        (create("p2", &[&d1, &d0]), Code::InvalidArgument, "2 disks"),
        (
            create("p2", &["nvmf://x/y"]),
            Code::InvalidArgument,
            "scheme",
        ),
        (
            create("p2", &["/etc/passwd"]),
            Code::PermissionDenied,
            "--allow-path",
        ),
        (create("p2", &[&missing]), Code::NotFound, "does not exist"),
        (
            create("p2", &[&adir]),
            Code::InvalidArgument,
            "regular file",
        ),
        (
            create("pool1", &[&d1]),
            Code::AlreadyExists,
            "already exists on",
        ),
        (
            create("p2", &[&d0]),
            Code::AlreadyExists,
            "used by pool pool1",
        ),
    ];
    for ((c, msg), want, says) in cases {
        assert_eq!(c, want, "{msg}");
        assert!(msg.contains(says), "{says:?} not in {msg}");
    }
    let taken = Taken {
        devices: vec![(PathBuf::from(&d1), "aio:///x".into())],
        uuids: vec![(Uuid::parse_str(U2).unwrap(), "m0".into())],
    };
    let (c, msg) = code(p.create_pool("p2", std::slice::from_ref(&d1), &paths, &taken));
    assert_eq!(c, Code::AlreadyExists, "{msg}");
    assert!(msg.contains("bdev `aio:///x`"), "{msg}");

    let req = |uuid: &str, pool: &str, size: u64, share: i32| pb::CreateReplicaRequest {
        uuid: uuid.into(),
        pool: pool.into(),
        size,
        thin: true,
        share,
    };
    let cases = vec![
        (
            req("r1", "pool1", EXTENT, 0),
            Code::InvalidArgument,
            "not a uuid",
        ),
        (
            req(&U2.to_uppercase(), "pool1", EXTENT, 0),
            Code::InvalidArgument,
            "lower case",
        ),
        (req(U2, "", EXTENT, 0), Code::InvalidArgument, "is empty"),
        (
            req(U2, "pool9", EXTENT, 0),
            Code::NotFound,
            "no pool is named pool9",
        ),
        (req(U2, "pool1", 0, 0), Code::InvalidArgument, "size 0"),
        (
            req(U2, "pool1", 15 * EXTENT, 0),
            Code::ResourceExhausted,
            "too few",
        ),
        (
            req(U2, "pool1", u64::MAX, 0),
            Code::ResourceExhausted,
            "too few",
        ),
        (
            req(U2, "pool1", EXTENT, i32::from(ReplicaIscsi)),
            Code::InvalidArgument,
            "REPLICA_ISCSI",
        ),
        (
            req(U2, "pool1", EXTENT, 9),
            Code::InvalidArgument,
            "9 (not a protocol)",
        ),
        (
            req(U1, "pool1", 2 * EXTENT, 0),
            Code::AlreadyExists,
            "already exists in pool pool1",
        ),
    ];
    for (r, want, says) in cases {
        let (c, msg) = code(p.create_replica(&r, &s.nvmet, &Taken::default()));
        assert_eq!(c, want, "{r:?}: {msg}");
        assert!(msg.contains(says), "{says:?} not in {msg}");
    }
    let (c, msg) = code(p.create_replica(&req(U2, "pool1", EXTENT, 0), &s.nvmet, &taken));
    assert_eq!(c, Code::AlreadyExists);
    assert!(msg.contains("bdev `m0`"), "{msg}");

    assert_eq!(code(p.share_replica(U2, 1, &s.nvmet)).0, Code::NotFound);
    assert_eq!(
        code(p.share_replica("x", 1, &s.nvmet)).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(p.share_replica(U1, 2, &s.nvmet)).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(p.destroy_replica("x", &s.nvmet)).0,
        Code::InvalidArgument
    );
    assert_eq!(code(p.destroy_pool("", &s.nvmet)).0, Code::InvalidArgument);
    assert_eq!(s.snapshot(&mut p), before);
}

#[test]
fn what_others_made_is_left_alone() {
    let s = Setup::new();
    let mut p = s.open();
    s.lvm
        .add_foreign("theirs", Path::new(&s.disk(1)), &["data"]);
    let (c, msg) = code(s.pool(&mut p, "theirs", 0));
    assert_eq!(c, Code::AlreadyExists, "{msg}");
    assert!(msg.contains("did not make"), "{msg}");
    let (c, msg) = code(s.pool(&mut p, "mine", 1));
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("belongs to volume group theirs"), "{msg}");
    assert_eq!(
        code(p.destroy_pool("theirs", &s.nvmet)).0,
        Code::FailedPrecondition
    );
    assert!(p.list_pools().unwrap().is_empty());
}

#[test]
fn a_failure_half_way_leaves_nothing_behind() {
    let s = Setup::new();
    let mut p = s.open();
    s.pool(&mut p, "pool1", 0).unwrap();
    let before = s.snapshot(&mut p);
    // The volume is made, the share fails: the volume goes.
    s.fs.fail_nth_mutation(0, nix::errno::Errno::EIO);
    let (c, _) = code(s.replica(&mut p, U1, "pool1", EXTENT, ReplicaNvmf));
    assert_eq!(c, Code::Internal);
    assert_eq!(s.snapshot(&mut p), before);
    // Removing the volume fails: it is shared again.
    s.replica(&mut p, U1, "pool1", EXTENT, ReplicaNvmf).unwrap();
    let shared = s.snapshot(&mut p);
    s.lvm.fail_next("remove_lv");
    assert_eq!(code(p.destroy_replica(U1, &s.nvmet)).0, Code::Internal);
    assert_eq!(s.snapshot(&mut p), shared);
    s.lvm.fail_next("remove_vg");
    assert_eq!(code(p.destroy_pool("pool1", &s.nvmet)).0, Code::Internal);
    assert_eq!(s.snapshot(&mut p), shared);
    s.lvm.fail_next("create_vg");
    assert_eq!(code(s.pool(&mut p, "pool2", 1)).0, Code::Internal);
    assert_eq!(s.snapshot(&mut p), shared);
}

#[test]
fn a_restart_adopts_pools_and_replicas_and_keeps_shares() {
    let s = Setup::new();
    let mut p = s.open();
    s.pool(&mut p, "pool1", 0).unwrap();
    s.replica(&mut p, U1, "pool1", EXTENT, ReplicaNvmf).unwrap();
    s.replica(&mut p, U2, "pool1", EXTENT, ReplicaNone).unwrap();
    let before = s.snapshot(&mut p);
    drop(p);
    let mut p = s.open();
    assert_eq!(s.snapshot(&mut p), before);
    assert!(p.has_replica(Uuid::parse_str(U2).unwrap()));
    assert_eq!(p.disk_user(Path::new(&s.disk(0))), Some("pool1"));
    // A reboot: the volumes are inactive and configfs is empty, until the
    // agent activates them; a share of a replica that is gone is removed.
    drop(p);
    s.lvm.reboot();
    let orphan = Uuid::parse_str("2c2d3e4f-0000-4000-8000-000000000003").unwrap();
    let device = s.dir.path().join("lvm/pool1").join(orphan.to_string());
    std::fs::write(&device, b"x").unwrap();
    export(&s.nvmet, orphan, &device, HostAccess::Any).unwrap();
    let mut p = s.open();
    assert!(!s.nvmet.is_shared(orphan));
    assert_eq!(s.snapshot(&mut p), before);
    let replicas = p.list_replicas(&s.nvmet).unwrap();
    assert!(s.dir.path().join("lvm/pool1").join(U2).exists());
    assert_eq!(replicas.len(), 2);
}

/// An LVM with no volume group, or none at all (`missing`), that counts
/// its `lvs` runs.
#[derive(Default)]
struct StubLvm {
    missing: bool,
    lv_runs: std::sync::atomic::AtomicU32,
}

impl Lvm for StubLvm {
    fn check_disk(&self, _: &Path) -> Result<(), String> {
        Ok(())
    }
    fn volume_groups(&self) -> Result<Vec<VgRow>, lvm::LvmError> {
        match self.missing {
            true => Err(lvm::LvmError::Missing("cannot start `vgs`".into())),
            false => Ok(Vec::new()),
        }
    }
    fn logical_volumes(&self) -> Result<Vec<LvRow>, lvm::LvmError> {
        self.lv_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.volume_groups().map(|_| Vec::new())
    }
    fn create_vg(&self, _: &str, _: &Path) -> Result<(), lvm::LvmError> {
        Ok(())
    }
    fn remove_vg(&self, _: &str, _: &Path) -> Result<(), lvm::LvmError> {
        Ok(())
    }
    fn create_lv(&self, _: &str, _: &str, _: u64) -> Result<(), lvm::LvmError> {
        Ok(())
    }
    fn remove_lv(&self, _: &str, _: &str) -> Result<(), lvm::LvmError> {
        Ok(())
    }
    fn activate(&self, _: &str) -> Result<(), lvm::LvmError> {
        Ok(())
    }
}

#[test]
fn with_no_pool_a_start_runs_lvm_once() {
    let s = Setup::new();
    let lvm = Arc::new(StubLvm::default());
    let p = Pools::open(lvm.clone(), &s.nvmet, &[]);
    assert_eq!(lvm.lv_runs.load(std::sync::atomic::Ordering::Relaxed), 0);
    drop(p);
}

#[test]
fn without_lvm_the_pool_calls_say_so() {
    let s = Setup::new();
    let lvm = StubLvm {
        missing: true,
        ..StubLvm::default()
    };
    let mut p = Pools::open(Arc::new(lvm), &s.nvmet, &[]);
    let (c, msg) = code(p.list_pools());
    assert_eq!(c, Code::FailedPrecondition);
    assert!(msg.contains("install the lvm2 package"), "{msg}");
}
