//! The agent binary on the real kernel NVMe target. It needs root and the
//! nvmet modules, so it is ignored by default; run it in the target VM:
//!
//! ```text
//! nvmfcheck vm up
//! nvmfcheck vm exec target -- <path of the agent_kernel test binary> --ignored --nocapture
//! ```
//!
//! `NVMFCHECK_TEST_ADDRESS` sets the address of the nvmet ports (default:
//! the agent's own default). It uses ports 8420 and 8430 and leaves configfs
//! as it found it. The pools test makes an LVM2 volume group on
//! `NVMFCHECK_TEST_DISK` (default `/dev/vdb`, the VM's blank disk), which
//! must be blank, and wipes it again. The tests take turns ([`KERNEL`]):
//! each compares configfs before and after.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nvmfcheck::client::{ChildOf, ClientError, Mayastor, Target};
use nvmfcheck::proto::mayastor::bdev_rpc_client::BdevRpcClient;
use nvmfcheck::proto::mayastor::mayastor_client::MayastorClient;
use nvmfcheck::proto::mayastor::{
    Bdev, BdevShareRequest, BdevUri, ChildAction, ChildState, CreatePoolRequest,
    CreateReplicaRequest, CreateReply, DestroyReplicaRequest, NexusState, Null,
    ShareProtocolReplica, ShareReplicaRequest,
};
use tonic::transport::Channel;

mod common;

const NVMET: &str = "/sys/kernel/config/nvmet";

/// Held by each test for its whole run: they share the kernel target.
static KERNEL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every directory, symlink and readable attribute under nvmet.
fn snapshot() -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                out.insert(path, format!("-> {}", target.display()));
            } else if meta.is_dir() {
                out.insert(path.clone(), "/".into());
                walk(&path, out);
            } else if let Ok(value) = std::fs::read_to_string(&path) {
                // Serial numbers and the like are fixed once made; all
                // values are compared.
                out.insert(path, value.trim_end().to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new(NVMET), &mut out);
    out
}

/// Kills and reaps the agent if a test fails half-way.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct AgentProcess {
    child: Reaped,
    client: BdevRpcClient<Channel>,
    addr: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn_agent(state: &Path, log: &Path, extra: &[String]) -> AgentProcess {
    let port = free_port();
    let address = std::env::var("NVMFCHECK_TEST_ADDRESS")
        .ok()
        .map(|a| a.parse::<Ipv4Addr>().unwrap())
        .unwrap_or_else(|| nvmfcheck::agent::default_address().unwrap());
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_nvmfcheck"))
            .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--address", &address.to_string()])
            .arg("--state-dir")
            .arg(state)
            // The test's files (beside the state dir, which stays refused)
            // and the character device of a bad-input row.
            .arg("--allow-path")
            .arg(state.parent().unwrap())
            .args(["--allow-path", "/dev/null"])
            // The VM's blank disk, for the aio bdev and the pool on it.
            .arg("--allow-path")
            .arg(test_disk())
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .timeout(Duration::from_secs(30));
        if let Ok(channel) = endpoint.connect().await {
            let mut client = BdevRpcClient::new(channel);
            if client.list(Null {}).await.is_ok() {
                return AgentProcess {
                    child,
                    client,
                    addr: format!("127.0.0.1:{port}"),
                };
            }
        }
        if Instant::now() > deadline {
            drop(child);
            panic!(
                "the agent did not answer within 20 s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl AgentProcess {
    async fn list(&mut self) -> Vec<Bdev> {
        self.client.list(Null {}).await.unwrap().into_inner().bdevs
    }

    /// SIGTERM; the agent must exit 0 within 15 s.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                assert!(status.success(), "the agent exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                panic!("the agent did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn nqn(b: &Bdev) -> String {
    format!("nqn.2019-05.io.openebs:{}", b.uuid)
}

/// The kernel's view of a share: enabled namespace on the device (or a
/// loop device over it), linked
/// to exactly two ports, 8420 and 8430.
fn assert_exported(b: &Bdev, device: &Path) {
    let sub = Path::new(NVMET).join("subsystems").join(nqn(b));
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap().trim_end().to_string();
    assert_eq!(read(sub.join("attr_allow_any_host")), "1");
    assert_eq!(read(sub.join("namespaces/1/enable")), "1", "{}", b.name);
    // A bdev whose block size the file does not have is exported through
    // a loop device over it.
    let exported = read(sub.join("namespaces/1/device_path"));
    let backing = match exported.strip_prefix("/dev/") {
        Some(loopdev) if loopdev.starts_with("loop") => read(
            Path::new("/sys/block")
                .join(loopdev)
                .join("loop/backing_file"),
        ),
        _ => exported,
    };
    assert_eq!(backing, device.to_str().unwrap());
    assert_eq!(read(sub.join("namespaces/1/device_uuid")), b.uuid);
    let mut svcs = Vec::new();
    for port in std::fs::read_dir(Path::new(NVMET).join("ports")).unwrap() {
        let port = port.unwrap().path();
        if port.join("subsystems").join(nqn(b)).exists() {
            assert_eq!(read(port.join("addr_trtype")), "tcp");
            svcs.push(read(port.join("addr_trsvcid")));
        }
    }
    svcs.sort();
    assert_eq!(svcs, ["8420", "8430"], "{}", b.name);
}

#[tokio::test]
#[ignore = "needs root and the kernel NVMe target: run it in the target VM"]
async fn agent_on_the_kernel_target() {
    let _turn = KERNEL.lock().await;
    assert!(
        Path::new(NVMET).is_dir(),
        "{NVMET} is missing: load nvmet-tcp and mount configfs"
    );
    let empty = snapshot();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let startup = vec![
        "--create".to_string(),
        "malloc:///k0?size_mb=16".to_string(),
        "--share".to_string(),
        "k0".to_string(),
    ];

    let mut agent = spawn_agent(&state, &log, &startup).await;
    let k0 = agent.list().await.remove(0);
    assert_eq!(k0.name, "k0");
    assert!(k0.claimed, "--share k0");
    assert_eq!(k0.num_blocks * u64::from(k0.blk_size), 16 << 20);
    assert_exported(&k0, &state.join("malloc/k0"));

    // A block device, if the VM has its blank disk.
    if Path::new("/dev/vdb").exists() {
        let c = &mut agent.client;
        c.create(BdevUri {
            uri: "aio:///dev/vdb".into(),
        })
        .await
        .unwrap();
        let uri = c
            .share(BdevShareRequest {
                name: "aio:///dev/vdb".into(),
                proto: "nvmf".into(),
                allowed_hosts: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .uri;
        let vdb = agent
            .list()
            .await
            .into_iter()
            .find(|b| b.name == "aio:///dev/vdb")
            .unwrap();
        assert_eq!(uri, vdb.share_uri);
        assert_eq!(vdb.blk_size, 512);
        let sectors: u64 = std::fs::read_to_string("/sys/block/vdb/size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(vdb.num_blocks, sectors);
        assert_exported(&vdb, Path::new("/dev/vdb"));
    }

    // Every bad input, against the kernel this time.
    let target = Target::connect(&agent.addr, Duration::from_secs(30))
        .await
        .unwrap();
    let fixture = common::prepare(&target, &work).await;
    let before = snapshot();
    let failures = common::check(&target, &fixture, None).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(snapshot(), before, "bad input changed configfs");

    // A restart loses nothing: the kernel keeps the shares.
    let bdevs = agent.list().await;
    agent.stop();
    assert_eq!(snapshot(), before, "stopping the agent changed configfs");
    let mut agent = spawn_agent(&state, &log, &startup).await;
    assert_eq!(agent.list().await, bdevs, "a restart changed the bdevs");
    assert_eq!(snapshot(), before, "a restart changed configfs");

    // Allowed hosts, in the order the kernel accepts: only those may
    // connect, a restart (with --share k0) keeps them, sharing again with
    // none opens up, and the agent removes the host directory it made but
    // not one someone else made.
    let k0 = agent
        .list()
        .await
        .into_iter()
        .find(|b| b.name == "k0")
        .unwrap();
    let sub = Path::new(NVMET).join("subsystems").join(nqn(&k0));
    let hosts = Path::new(NVMET).join("hosts");
    let ours = "nqn.2014-08.org.nvmfcheck:test-ours".to_string();
    let theirs = "nqn.2014-08.org.nvmfcheck:test-theirs".to_string();
    std::fs::create_dir(hosts.join(&theirs)).unwrap();
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap().trim_end().to_string();
    let allowed = || {
        let mut names: Vec<String> = std::fs::read_dir(sub.join("allowed_hosts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let target = Target::connect(&agent.addr, Duration::from_secs(30))
        .await
        .unwrap();
    let both = [ours.clone(), theirs.clone()];
    target.share("k0", "nvmf", &both).await.unwrap();
    assert_eq!(read(sub.join("attr_allow_any_host")), "0");
    assert_eq!(allowed(), both);
    let link = std::fs::read_link(sub.join("allowed_hosts").join(&ours)).unwrap();
    assert_eq!(link.file_name().unwrap().to_str(), Some(ours.as_str()));
    agent.stop();
    let mut agent = spawn_agent(&state, &log, &startup).await;
    assert_eq!(
        read(sub.join("attr_allow_any_host")),
        "0",
        "a restart opened k0"
    );
    assert_eq!(allowed(), both);
    let target = Target::connect(&agent.addr, Duration::from_secs(30))
        .await
        .unwrap();
    target.share("k0", "nvmf", &both[1..]).await.unwrap();
    assert_eq!(allowed(), &both[1..]);
    assert!(!hosts.join(&ours).exists(), "the agent's unused host stays");
    target.share("k0", "nvmf", &[]).await.unwrap();
    assert_eq!(read(sub.join("attr_allow_any_host")), "1");
    assert!(allowed().is_empty());
    assert!(hosts.join(&theirs).is_dir(), "someone else's host went");
    std::fs::remove_dir(hosts.join(&theirs)).unwrap();
    assert_eq!(snapshot(), before, "allowed hosts left something behind");

    // Unshare and destroy everything: configfs is as it was.
    for b in agent.list().await {
        agent
            .client
            .unshare(CreateReply {
                name: b.name.clone(),
            })
            .await
            .unwrap();
        let uri = b.uri.split('?').next().unwrap_or_default().to_string();
        agent.client.destroy(BdevUri { uri }).await.unwrap();
    }
    assert!(agent.list().await.is_empty());
    assert!(!state.join("malloc/k0").exists(), "destroy frees the RAM");
    agent.stop();
    assert_eq!(snapshot(), empty, "configfs is not as it was");
}

/// The blank disk the tests may use (`NVMFCHECK_TEST_DISK`, default
/// `/dev/vdb`).
fn test_disk() -> String {
    std::env::var("NVMFCHECK_TEST_DISK").unwrap_or_else(|_| "/dev/vdb".into())
}

/// What `lvs` says of the volumes tagged by the agent: `vg/lv` each.
fn tagged_volumes() -> Vec<String> {
    let out = Command::new("lvs")
        .args(["--config", nvmfcheck::agent::LVM_CONFIG])
        .args(["--noheadings", "-o", "vg_name,lv_name", "@nvmfcheck"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join("/"))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Pools and replicas on the real LVM2 and nvmet: a pool on the blank
/// disk, a replica shared over NVMe/TCP and one not, both found again by a
/// restarted agent, bad input refused, and everything removed again.
#[tokio::test]
#[ignore = "needs root, LVM2, a blank disk and the kernel NVMe target: run it in the target VM"]
async fn pools_and_replicas_on_lvm2() {
    let _turn = KERNEL.lock().await;
    let disk = test_disk();
    assert!(Path::new(&disk).exists(), "{disk} is missing");
    let empty = snapshot();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    let agent = spawn_agent(&state, &log, &[]).await;
    let mut m = MayastorClient::connect(format!("http://{}", agent.addr))
        .await
        .unwrap();
    let pool = m
        .create_pool(CreatePoolRequest {
            name: "nvmfcheck-test".into(),
            disks: vec![disk.clone()],
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e:?}; the agent's log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
        .into_inner();
    assert_eq!(pool.disks, [format!("aio://{disk}")]);
    assert!(pool.capacity > 256 << 20, "{pool:?}");
    let shared = "0b5f6c2e-4a7d-4a86-9b1e-2f1d7a3c9e10";
    let local = "1c2d3e4f-0000-4000-8000-000000000002";
    let replica = |uuid: &str, share: ShareProtocolReplica| CreateReplicaRequest {
        uuid: uuid.into(),
        pool: "nvmfcheck-test".into(),
        size: 64 << 20,
        thin: false,
        share: share.into(),
    };
    let r = m
        .create_replica(replica(shared, ShareProtocolReplica::ReplicaNvmf))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.uri
            .ends_with(&format!(":8430/nqn.2019-05.io.openebs:{shared}")),
        "{r:?}"
    );
    m.create_replica(replica(local, ShareProtocolReplica::ReplicaNone))
        .await
        .unwrap();
    let device = format!("/dev/nvmfcheck-test/{shared}");
    let sub = Path::new(NVMET)
        .join("subsystems")
        .join(format!("nqn.2019-05.io.openebs:{shared}"));
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim_end().to_string();
    assert_eq!(read(sub.join("namespaces/1/device_path")), device);
    assert_eq!(read(sub.join("namespaces/1/enable")), "1");
    let mut volumes = tagged_volumes();
    volumes.sort();
    assert_eq!(
        volumes,
        [
            format!("nvmfcheck-test/{shared}"),
            format!("nvmfcheck-test/{local}")
        ]
    );
    // Bad input changes nothing.
    let shared_tree = snapshot();
    let too_big = CreateReplicaRequest {
        size: 1 << 40,
        ..replica(
            "2c2d3e4f-0000-4000-8000-000000000003",
            ShareProtocolReplica::ReplicaNvmf,
        )
    };
    let e = m.create_replica(too_big).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let e = m
        .create_pool(CreatePoolRequest {
            name: "other".into(),
            disks: vec![disk.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
    assert_eq!(snapshot(), shared_tree);
    assert_eq!(tagged_volumes().len(), 2);

    // A restarted agent lists the same, the share untouched, no bdev.
    let pools = m.list_pools(Null {}).await.unwrap().into_inner();
    let replicas = m.list_replicas(Null {}).await.unwrap().into_inner();
    assert_eq!(replicas.replicas.len(), 2);
    agent.stop();
    let mut agent = spawn_agent(&state, &log, &[]).await;
    let mut m = MayastorClient::connect(format!("http://{}", agent.addr))
        .await
        .unwrap();
    assert_eq!(m.list_pools(Null {}).await.unwrap().into_inner(), pools);
    assert_eq!(
        m.list_replicas(Null {}).await.unwrap().into_inner(),
        replicas
    );
    assert!(
        agent.list().await.is_empty(),
        "a replica was taken for a bdev"
    );
    assert_eq!(snapshot(), shared_tree);

    // Unshare, share, destroy the pool with its replicas.
    let share = |share: ShareProtocolReplica| ShareReplicaRequest {
        uuid: shared.into(),
        share: share.into(),
    };
    let uri = m
        .share_replica(share(ShareProtocolReplica::ReplicaNone))
        .await
        .unwrap();
    assert_eq!(uri.into_inner().uri, format!("bdev:///{shared}"));
    assert!(!sub.exists());
    m.share_replica(share(ShareProtocolReplica::ReplicaNvmf))
        .await
        .unwrap();
    m.destroy_replica(DestroyReplicaRequest { uuid: local.into() })
        .await
        .unwrap();
    common::destroy_last_pool(&mut m, "nvmfcheck-test").await;
    assert!(tagged_volumes().is_empty());
    agent.stop();
    assert_eq!(snapshot(), empty, "configfs is not as it was");
    let pvs = Command::new("pvs")
        .args([
            "--config",
            nvmfcheck::agent::LVM_CONFIG,
            "--noheadings",
            &disk,
        ])
        .output()
        .unwrap();
    assert!(!pvs.status.success(), "{disk} is still a PV: {pvs:?}");
}

/// The sha256 of the first `bytes` of `device`, read with O_DIRECT so that
/// no stale page cache stands in for what md wrote.
fn checksum(device: &str, bytes: u64) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd if={device} iflag=direct,count_bytes bs=1M count={bytes} status=none | sha256sum"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The states of the children of the only nexus, in order.
async fn child_states(m: &Mayastor) -> Vec<ChildState> {
    let list = m.list_nexus().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].children.iter().map(|c| c.state()).collect()
}

/// Polls until every child of the only nexus is online (60 s at most).
async fn wait_online(m: &Mayastor) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = child_states(m).await;
        if states.iter().all(|s| *s == ChildState::ChildOnline) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all online within 60 s: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A nexus on md RAID1 over a local replica and a "remote" one (a replica
/// of the same agent shared over NVMe/TCP, which the agent connects to as
/// a host): made, published on its own port, written through md, both
/// children identical; a third child added without rebuild, rebuilt with a
/// pause, identical too; a child taken offline and back; all undone.
#[tokio::test]
#[ignore = "needs root, mdadm, LVM2, nvmet and nvme-tcp: run in the target VM"]
async fn a_nexus_on_md_over_local_and_remote_replicas() {
    let _turn = KERNEL.lock().await;
    let disk = test_disk();
    let empty = snapshot();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    // A slow rebuild, so that a pause lands before it ends.
    let extra = ["--nexus-port", "4421", "--rebuild-rate", "4096"].map(String::from);
    let mut agent = spawn_agent(&state, &log, &extra).await;
    let connect = |addr: String| async move {
        Mayastor::connect(&addr, Duration::from_secs(30), None)
            .await
            .unwrap()
    };
    let m = connect(agent.addr.clone()).await;
    let fail = |e: ClientError| -> ! {
        panic!(
            "{e}; the agent's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let pool = "nvmfcheck-test";
    m.create_pool(pool, &disk).await.unwrap_or_else(|e| fail(e));
    let [local, remote, spare] = [
        "0b5f6c2e-4a7d-4a86-9b1e-2f1d7a3c9e10",
        "1c2d3e4f-0000-4000-8000-000000000002",
        "2d3e4f50-0000-4000-8000-000000000003",
    ];
    let mut uris = Vec::new();
    for (uuid, nvmf) in [(local, false), (remote, true), (spare, false)] {
        let r = m
            .create_replica(uuid, pool, 64 << 20, nvmf)
            .await
            .unwrap_or_else(|e| fail(e));
        uris.push(r.uri);
    }
    let size: u64 = 60 << 20;
    let nexus = "5e1f3a2b-0000-4000-8000-0000000000aa";
    let made = m
        .create_nexus(nexus, size, &uris[..2])
        .await
        .unwrap_or_else(|e| fail(e));
    assert_eq!(made.state(), NexusState::NexusOnline, "{made:?}");
    let published = m.publish_nexus(nexus).await.unwrap_or_else(|e| fail(e));
    assert!(
        published.ends_with(&format!(":4421/nqn.2019-05.io.openebs:nexus-{nexus}")),
        "{published}"
    );
    let sub = Path::new(NVMET)
        .join("subsystems")
        .join(format!("nqn.2019-05.io.openebs:nexus-{nexus}"));
    let array = std::fs::read_to_string(sub.join("namespaces/1/device_path")).unwrap();
    let array = array.trim_end().to_string();
    assert!(array.starts_with("/dev/md"), "{array}");

    // Data written through md lands on both children alike.
    let wrote = Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={array}"),
            "bs=1M",
            "count=16",
        ])
        .args(["oflag=direct", "status=none"])
        .status()
        .unwrap();
    assert!(wrote.success());
    let volume = |uuid: &str| format!("/dev/{pool}/{uuid}");
    let want = checksum(&array, size);
    assert_eq!(checksum(&volume(local), size), want);
    assert_eq!(checksum(&volume(remote), size), want);

    // A child added without rebuild waits; its rebuild pauses and resumes.
    let third = ChildOf {
        nexus,
        uri: &uris[2],
    };
    let child = m.add_child(third, true).await.unwrap_or_else(|e| fail(e));
    assert_eq!(child.state(), ChildState::ChildDegraded);
    let e = m.rebuild_state(third).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound), "{e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        child_states(&m).await,
        [
            ChildState::ChildOnline,
            ChildState::ChildOnline,
            ChildState::ChildDegraded
        ],
        "md rebuilt a child added without rebuild"
    );
    m.start_rebuild(third).await.unwrap_or_else(|e| fail(e));
    let rebuild = m.rebuild_state(third).await.unwrap_or_else(|e| fail(e));
    assert_eq!(rebuild, "running");
    m.pause_rebuild(third).await.unwrap_or_else(|e| fail(e));
    let rebuild = m.rebuild_state(third).await.unwrap_or_else(|e| fail(e));
    assert_eq!(rebuild, "paused");
    let paused_at = m.rebuild_progress(third).await.unwrap_or_else(|e| fail(e));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        m.rebuild_progress(third).await.unwrap_or_else(|e| fail(e)),
        paused_at,
        "a paused rebuild went on"
    );
    assert!(paused_at < 100, "{paused_at}");
    m.resume_rebuild(third).await.unwrap_or_else(|e| fail(e));
    wait_online(&m).await;
    assert_eq!(checksum(&volume(spare), size), want);

    // Offline degrades the remote child; online rebuilds it.
    let second = ChildOf {
        nexus,
        uri: &uris[1],
    };
    m.child_operation(second, ChildAction::Offline)
        .await
        .unwrap_or_else(|e| fail(e));
    assert_eq!(child_states(&m).await[1], ChildState::ChildDegraded);
    m.child_operation(second, ChildAction::Online)
        .await
        .unwrap_or_else(|e| fail(e));
    wait_online(&m).await;
    assert_eq!(checksum(&volume(remote), size), want);

    // A restarted agent stops the nexus it left; the data stays.
    agent.stop();
    agent = spawn_agent(&state, &log, &extra).await;
    let m = connect(agent.addr.clone()).await;
    assert!(m.list_nexus().await.unwrap().is_empty());
    assert!(!sub.exists(), "the nexus is still published");
    let md = array.trim_start_matches("/dev/").to_string();
    let mdstat = std::fs::read_to_string("/proc/mdstat").unwrap();
    assert!(
        !mdstat.lines().any(|l| l.starts_with(&format!("{md} "))),
        "{array} still runs: {mdstat}"
    );
    assert_eq!(checksum(&volume(local), size), want);
    for uuid in [local, remote, spare] {
        m.destroy_replica(uuid).await.unwrap_or_else(|e| fail(e));
    }
    let mut generated = MayastorClient::connect(format!("http://{}", agent.addr))
        .await
        .unwrap();
    common::destroy_last_pool(&mut generated, pool).await;
    agent.stop();
    assert_eq!(snapshot(), empty, "configfs is not as it was");
    let connected = std::fs::read_dir("/sys/class/nvme")
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(connected, 0, "an NVMe connection is left");
}
