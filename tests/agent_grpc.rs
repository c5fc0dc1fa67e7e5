//! The agent over a real gRPC socket, on the in-memory configfs model: the
//! generated client talks to `Agent::serve` on 127.0.0.1. The same calls
//! run against the kernel target in the VM test.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nvmfcheck::agent::fake::FakeConfigfs;
use nvmfcheck::agent::fake::FakeLvm;
use nvmfcheck::agent::mayastor::{Plan, RPCS};
use nvmfcheck::agent::Configfs;
use nvmfcheck::agent::{Agent, AgentConfig};
use nvmfcheck::client::Target;
use nvmfcheck::proto::mayastor::bdev_rpc_client::BdevRpcClient;
use nvmfcheck::proto::mayastor::mayastor_client::MayastorClient;
use nvmfcheck::proto::mayastor::{
    ChildAction, ChildNexusRequest, CreateNexusRequest, CreatePoolRequest, CreateReplicaRequest,
    CreateReply, CreateSnapshotRequest, DestroyReplicaRequest, ListBlockDevicesRequest, Null,
    RebuildStateRequest, ShareProtocolReplica, ShareReplicaRequest,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Status};

mod common;
use common::{fake_loops, fake_lvm, fake_nexus, share, uri};

struct Running {
    client: BdevRpcClient<Channel>,
    /// For clients of the other services.
    channel: Channel,
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    server:
        tokio::task::JoinHandle<Result<nvmfcheck::agent::Stopped, nvmfcheck::agent::AgentError>>,
    fs: Arc<FakeConfigfs>,
    _dir: tempfile::TempDir,
}

fn config(dir: &tempfile::TempDir) -> AgentConfig {
    let mut c = AgentConfig::new(Ipv4Addr::new(192, 168, 1, 2));
    c.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    c.state_dir = dir.path().join("state");
    // The tests' disks (the state dir inside stays refused), and a
    // character device for the bad-input row that refuses one.
    c.allow_paths = vec![dir.path().to_path_buf(), "/dev/null".into()];
    c
}

async fn start(config: AgentConfig, fs: Arc<FakeConfigfs>, dir: tempfile::TempDir) -> Running {
    let lvm = fake_lvm(&config);
    start_with(config, fs, lvm, dir).await
}

/// [`start`] on a given LVM model, which outlives the agent as LVM does.
async fn start_with(
    config: AgentConfig,
    fs: Arc<FakeConfigfs>,
    lvm: Arc<FakeLvm>,
    dir: tempfile::TempDir,
) -> Running {
    let agent = Agent::start(
        &config,
        fs.clone(),
        fake_loops(&config),
        lvm,
        fake_nexus(&config),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(agent.serve(vec![listener], async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    Running {
        client: BdevRpcClient::new(channel.clone()),
        channel,
        addr: addr.to_string(),
        stop: Some(stop),
        server,
        fs,
        _dir: dir,
    }
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        drop(self.client);
        tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("the agent stops within its grace period")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn the_whole_cycle_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let mut r = start(config(&dir), fs, dir).await;
    let c = &mut r.client;

    let name = c
        .create(uri("malloc:///m0?size_mb=8"))
        .await
        .unwrap()
        .into_inner()
        .name;
    assert_eq!(name, "m0");
    let bdevs = c.list(Null {}).await.unwrap().into_inner().bdevs;
    assert_eq!(bdevs.len(), 1);
    let b = &bdevs[0];
    assert_eq!(b.num_blocks * u64::from(b.blk_size), 8 << 20);
    assert!(!b.claimed);
    assert_eq!(b.claimed_by, "Orphaned");

    let shared = c.share(share("m0", "nvmf")).await.unwrap().into_inner().uri;
    assert_eq!(
        shared,
        format!("nvmf://192.168.1.2:8430/nqn.2019-05.io.openebs:{}", b.uuid)
    );
    let again = c.share(share("m0", "nvmf")).await.unwrap().into_inner().uri;
    assert_eq!(again, shared);
    let b = c.list(Null {}).await.unwrap().into_inner().bdevs.remove(0);
    assert!(b.claimed);
    assert_eq!(b.claimed_by, "NVMe-oF Target");
    assert_eq!(b.share_uri, shared);

    let e = c.destroy(uri("malloc:///m0")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("unshare it first"), "{}", e.message());

    let unshare = || CreateReply {
        name: "m0".to_string(),
    };
    c.unshare(unshare()).await.unwrap();
    c.unshare(unshare()).await.unwrap();
    c.destroy(uri("malloc:///m0?size_mb=8")).await.unwrap();
    assert!(c.list(Null {}).await.unwrap().into_inner().bdevs.is_empty());
    assert_eq!(r.fs.dump(), FakeConfigfs::new().dump());
    r.stop().await;
}

/// Share with allowed hosts through `nvmfcheck bdev share --allow-host`
/// and the client: configfs admits exactly those hosts, and sharing again
/// with none opens the share to any host.
#[tokio::test]
async fn allowed_hosts_through_the_cli_and_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let r = start(config(&dir), fs.clone(), dir).await;
    let target = Target::connect(&r.addr, Duration::from_secs(10))
        .await
        .unwrap();
    target.create("malloc:///m0?size_mb=1").await.unwrap();
    let (a, b) = ("nqn.2014-08.org.example:a", "nqn.2014-08.org.example:b");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nvmfcheck"))
        .args(["bdev", "share", "m0", "--allow-host", a, "--allow-host", b])
        .arg(format!("--target={}", r.addr))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let uri = target.find("m0").await.unwrap().unwrap().share_uri;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&uri),
        "{out:?}"
    );
    let nqn = uri.rsplit('/').next().unwrap();
    let subsys = Path::new("subsystems").join(nqn);
    let hosts = subsys.join("allowed_hosts");
    assert_eq!(fs.list(&hosts).unwrap(), [a, b]);
    let any = subsys.join("attr_allow_any_host");
    assert_eq!(fs.read(&any).unwrap(), "0\n");
    // Again with b only, then with none.
    let only_b = [b.to_string()];
    assert_eq!(target.share("m0", "nvmf", &only_b).await.unwrap(), uri);
    assert_eq!(fs.list(&hosts).unwrap(), [b]);
    assert_eq!(fs.list(Path::new("hosts")).unwrap(), [b]);
    assert_eq!(target.share("m0", "nvmf", &[]).await.unwrap(), uri);
    assert!(fs.list(&hosts).unwrap().is_empty());
    assert_eq!(fs.read(&any).unwrap(), "1\n");
    assert!(fs.list(Path::new("hosts")).unwrap().is_empty());
    // A bad host is refused through the CLI with the agent's message.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nvmfcheck"))
        .args(["bdev", "share", "m0", "--allow-host=nqn.a/b"])
        .arg(format!("--target={}", r.addr))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("\"nqn.a/b\" contains `/`"),
        "{stderr}"
    );
    r.stop().await;
}

/// The whole bad-input table, each row through gRPC and through
/// `nvmfcheck bdev` (the VM run sends only some rows through the CLI).
#[tokio::test]
async fn bad_input_gets_the_documented_codes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let r = start(config(&dir), fs.clone(), dir).await;
    let target = Target::connect(&r.addr, Duration::from_secs(10))
        .await
        .unwrap();
    let fixture = common::prepare(&target, &work).await;
    let tree = fs.dump();
    let bdevs = target.list().await.unwrap();
    let cli = Path::new(env!("CARGO_BIN_EXE_nvmfcheck"));
    let failures = common::check(&target, &fixture, Some(cli)).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(fs.dump(), tree, "bad input changed configfs");
    assert_eq!(
        target.list().await.unwrap(),
        bdevs,
        "bad input changed the bdevs"
    );
    r.stop().await;
}

#[tokio::test]
async fn concurrent_requests_do_not_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let r = start(config(&dir), fs, dir).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut c = r.client.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("m{i}");
            c.create(uri(&format!("malloc:///{name}?size_mb=1")))
                .await
                .unwrap();
            // Everyone also races for the same name; exactly one wins.
            let dup = c.create(uri("malloc:///same?size_mb=1")).await;
            c.share(share(&name, "nvmf")).await.unwrap();
            if i % 2 == 0 {
                c.unshare(CreateReply { name }).await.unwrap();
            }
            dup.is_ok()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    let mut c = r.client.clone();
    let bdevs = c.list(Null {}).await.unwrap().into_inner().bdevs;
    assert_eq!(bdevs.len(), 17);
    assert_eq!(bdevs.iter().filter(|b| b.claimed).count(), 8);
    // Two ports, each linking exactly the eight shared subsystems.
    let fs = r.fs.clone();
    let ports = fs.list(std::path::Path::new("ports")).unwrap();
    assert_eq!(ports.len(), 2);
    for p in ports {
        let links = fs
            .list(&std::path::Path::new("ports").join(p).join("subsystems"))
            .unwrap();
        assert_eq!(links.len(), 8);
    }
    r.stop().await;
}

#[tokio::test]
async fn startup_flags_create_and_share_and_a_restart_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let disk = dir.path().join("disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let aio = format!("aio://{}", disk.display());
    let mut cfg = config(&dir);
    cfg.create = vec![aio.clone(), "malloc:///m0?size_mb=2".into()];
    cfg.share = vec![aio.clone()];

    let mut r = start(cfg.clone(), fs.clone(), dir).await;
    let before = r.client.list(Null {}).await.unwrap().into_inner().bdevs;
    assert_eq!(before.len(), 2);
    assert!(before.iter().any(|b| b.name == aio && b.claimed));
    let dir = std::mem::replace(&mut r._dir, tempfile::tempdir().unwrap());
    r.stop().await;

    // Same flags again: nothing new, nothing lost, the share survived.
    let tree = fs.dump();
    let mut r = start(cfg, fs.clone(), dir).await;
    let after = r.client.list(Null {}).await.unwrap().into_inner().bdevs;
    assert_eq!(after, before);
    assert_eq!(fs.dump(), tree);
    r.stop().await;
}

#[tokio::test]
async fn startup_errors_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let refused = |cfg: &AgentConfig| {
        let started = Agent::start(
            cfg,
            fs.clone(),
            fake_loops(cfg),
            fake_lvm(cfg),
            fake_nexus(cfg),
        );
        started
            .err()
            .expect("the agent refuses to start")
            .to_string()
    };
    let mut cfg = config(&dir);
    cfg.share = vec!["m7".into()];
    let msg = refused(&cfg);
    assert!(
        msg.contains("--share m7") && msg.contains("no bdev"),
        "{msg}"
    );
    cfg.share.clear();
    cfg.create = vec!["malloc:///m7".into()];
    let msg = refused(&cfg);
    assert!(
        msg.contains("--create malloc:///m7") && msg.contains("size_mb"),
        "{msg}"
    );
    cfg.create.clear();
    cfg.io_port = cfg.discovery_port;
    let msg = refused(&cfg);
    assert!(msg.contains("must differ"), "{msg}");
    cfg.io_port = nvmfcheck::agent::DEFAULT_IO_PORT;
    cfg.nexus_port = Some(cfg.discovery_port);
    let msg = refused(&cfg);
    assert!(
        msg.contains("--nexus-port") && msg.contains("discovery"),
        "{msg}"
    );
    cfg.nexus_port = None;
    cfg.rebuild_rate = Some(0);
    let msg = refused(&cfg);
    assert!(msg.contains("--rebuild-rate 0"), "{msg}");
}

/// Oversized input gets a proper status with a short message, from a stock
/// tonic client, and changes nothing: a field over 4096 bytes is
/// `INVALID_ARGUMENT`, a request over the agent's 64 KiB message limit is
/// `OUT_OF_RANGE` (tonic's code for it), never an HTTP/2 error.
#[tokio::test]
async fn oversized_input_gets_a_short_proper_status() {
    use nvmfcheck::agent::limits::{MAX_MESSAGE_LEN, MAX_REQUEST_LEN};
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let mut r = start(config(&dir), fs, dir).await;
    let c = &mut r.client;
    c.create(uri("malloc:///m0?size_mb=1")).await.unwrap();
    let before = r.fs.dump();

    let within = "p\u{1}".repeat(MAX_REQUEST_LEN / 4);
    let beyond = "p".repeat(4 << 20);
    let cases = [
        (c.share(share("m0", &within)).await, Code::InvalidArgument),
        (c.share(share(&within, "nvmf")).await, Code::InvalidArgument),
        (c.share(share("m0", &beyond)).await, Code::OutOfRange),
    ];
    for (i, (reply, code)) in cases.into_iter().enumerate() {
        let e = reply.unwrap_err();
        assert_eq!(e.code(), code, "case {i}: {e:?}");
        assert!(
            e.message().len() <= MAX_MESSAGE_LEN,
            "case {i}: {}",
            e.message().len()
        );
    }
    for u in [
        format!("aio:///{within}"),
        format!("malloc:///{within}?size_mb=1"),
    ] {
        let e = c.create(uri(&u)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().len() <= MAX_MESSAGE_LEN,
            "{}",
            e.message().len()
        );
    }
    let proto = "\u{1}".repeat(100);
    let e = c.share(share("m0", &proto)).await.unwrap_err();
    assert!(
        e.message().contains("\\u{1}") && !e.message().contains("\\\\u{1}"),
        "the protocol is escaped once: {}",
        e.message()
    );

    // Eight at once: each gets its status, and the agent still answers.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut c = r.client.clone();
            let beyond = beyond.clone();
            tokio::spawn(async move { c.share(share("m0", &beyond)).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap_err().code(), Code::OutOfRange);
    }
    tokio::time::timeout(Duration::from_secs(2), r.client.list(Null {}))
        .await
        .expect("List answers within 2 s")
        .unwrap();
    assert_eq!(r.fs.dump(), before, "oversized requests changed nothing");
    r.stop().await;
}

/// Asserts that `reply` is the agent's UNIMPLEMENTED for `Mayastor.<name>`.
fn unimplemented<T: std::fmt::Debug>(name: &str, reply: Result<T, Status>) {
    let e = reply.expect_err(name);
    assert_eq!(e.code(), Code::Unimplemented, "{name}: {e:?}");
    let message = e.message();
    assert!(
        message.starts_with(&format!("Mayastor.{name} is not implemented")),
        "{name}: {message}"
    );
}

/// Mayastor's `Mayastor` service answers each call it does not serve
/// UNIMPLEMENTED, naming it, and changes nothing:
/// a few calls through the generated client with requests a control plane
/// would send, then every such rpc by its path with an empty message (any
/// request's defaults).
#[tokio::test]
async fn every_unserved_mayastor_call_is_unimplemented_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let r = start(config(&dir), fs, dir).await;
    let before = r.fs.dump();
    let mut m = MayastorClient::new(r.channel.clone());
    let uuid = "0b5f6c2e-4a7d-4a86-9b1e-2f1d7a3c9e10";
    let snapshot = CreateSnapshotRequest { uuid: uuid.into() };
    unimplemented("CreateSnapshot", m.create_snapshot(snapshot).await);
    let devices = ListBlockDevicesRequest { all: true };
    unimplemented("ListBlockDevices", m.list_block_devices(devices).await);

    let mut grpc = tonic::client::Grpc::new(r.channel.clone());
    for rpc in RPCS.iter().filter(|r| r.plan != Plan::Served) {
        grpc.ready().await.unwrap();
        let path = format!("/mayastor.Mayastor/{}", rpc.name).parse().unwrap();
        let codec = tonic_prost::ProstCodec::<Null, Null>::default();
        let reply = grpc.unary(tonic::Request::new(Null {}), path, codec).await;
        let e = reply.expect_err(rpc.name);
        assert_eq!(e.code(), Code::Unimplemented, "{}: {e:?}", rpc.name);
        let refusal = rpc.refusal().expect("an rpc the agent does not serve");
        assert_eq!(e.message(), refusal.message());
    }
    assert_eq!(r.fs.dump(), before, "a Mayastor call changed configfs");
    r.stop().await;
}

/// Pools and replicas over gRPC, as Mayastor's NixOS tests drive them
/// (`pool create pool1 /dev/vdb`, `replica create --protocol nvmf --size
/// 64MiB pool1 <uuid>`): made, listed, shared, kept across a restart,
/// kept apart from the bdevs, destroyed; bad input refused.
#[tokio::test]
async fn pools_and_replicas_over_grpc_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let disk = dir.path().join("disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let disk = disk.display().to_string();
    let cfg = config(&dir);
    let lvm = fake_lvm(&cfg);
    let mut r = start_with(cfg.clone(), fs.clone(), lvm.clone(), dir).await;
    let mut m = MayastorClient::new(r.channel.clone());
    let uuid = "0b5f6c2e-4a7d-4a86-9b1e-2f1d7a3c9e10";
    let pool = m
        .create_pool(CreatePoolRequest {
            name: "pool1".into(),
            disks: vec![format!("aio://{disk}")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pool.disks, [format!("aio://{disk}")]);
    assert!(pool.capacity > 64 << 20 && pool.used == 0, "{pool:?}");
    let replica = CreateReplicaRequest {
        uuid: uuid.into(),
        pool: "pool1".into(),
        size: 64 << 20,
        thin: false,
        share: ShareProtocolReplica::ReplicaNvmf.into(),
    };
    let made = m
        .create_replica(replica.clone())
        .await
        .unwrap()
        .into_inner();
    let nvmf = format!("nvmf://192.168.1.2:8430/nqn.2019-05.io.openebs:{uuid}");
    assert_eq!((made.size, made.uri.as_str()), (64 << 20, nvmf.as_str()));
    // The bdevs keep off the pool's disk and the replica's uuid.
    let e = r
        .client
        .create(uri(&format!("aio://{disk}")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("disk of pool pool1"), "{e:?}");
    let same_uuid = format!("malloc:///m1?size_mb=1&uuid={uuid}");
    let e = r.client.create(uri(&same_uuid)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    // Bad input: a clear code, nothing changed.
    let tree = fs.dump();
    let bad = CreateReplicaRequest {
        size: 1 << 40,
        uuid: "1c2d3e4f-0000-4000-8000-000000000002".into(),
        ..replica.clone()
    };
    let e = m.create_replica(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let e = m
        .share_replica(ShareReplicaRequest {
            uuid: "nope".into(),
            share: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(fs.dump(), tree);

    // A restart: the same pools and replicas, still shared, and the
    // replica's subsystem is not taken for a bdev.
    let pools = m.list_pools(Null {}).await.unwrap().into_inner();
    let replicas = m.list_replicas(Null {}).await.unwrap().into_inner();
    let dir = std::mem::replace(&mut r._dir, tempfile::tempdir().unwrap());
    r.stop().await;
    let mut r = start_with(cfg, fs.clone(), lvm, dir).await;
    let mut m = MayastorClient::new(r.channel.clone());
    assert_eq!(m.list_pools(Null {}).await.unwrap().into_inner(), pools);
    assert_eq!(
        m.list_replicas(Null {}).await.unwrap().into_inner(),
        replicas
    );
    assert_eq!(fs.dump(), tree);
    let bdevs = r.client.list(Null {}).await.unwrap().into_inner().bdevs;
    assert!(bdevs.is_empty(), "{bdevs:?}");

    // Unshare, destroy, and destroy again: fine.
    let share = |share: ShareProtocolReplica| ShareReplicaRequest {
        uuid: uuid.into(),
        share: share.into(),
    };
    let local = m
        .share_replica(share(ShareProtocolReplica::ReplicaNone))
        .await
        .unwrap();
    assert_eq!(local.into_inner().uri, format!("bdev:///{uuid}"));
    let again = m
        .share_replica(share(ShareProtocolReplica::ReplicaNvmf))
        .await
        .unwrap();
    assert_eq!(again.into_inner().uri, nvmf);
    for _ in 0..2 {
        m.destroy_replica(DestroyReplicaRequest { uuid: uuid.into() })
            .await
            .unwrap();
        common::destroy_last_pool(&mut m, "pool1").await;
    }
    assert_eq!(fs.dump(), FakeConfigfs::new().dump());
    r.stop().await;
}

/// A nexus over gRPC on the fake kernel: made over a local replica,
/// listed, published on `--nexus-port`, destroyed; bad input refused with
/// its code and nothing changed.
#[tokio::test]
async fn a_nexus_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let disk = dir.path().join("disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let mut cfg = config(&dir);
    cfg.nexus_port = Some(4421);
    let r = start(cfg, fs, dir).await;
    let mut m = MayastorClient::new(r.channel.clone());
    m.create_pool(CreatePoolRequest {
        name: "pool1".into(),
        disks: vec![disk.display().to_string()],
    })
    .await
    .unwrap();
    let replica = "0b5f6c2e-4a7d-4a86-9b1e-2f1d7a3c9e10";
    let nexus = "5e1f3a2b-0000-4000-8000-0000000000aa";
    m.create_replica(CreateReplicaRequest {
        uuid: replica.into(),
        pool: "pool1".into(),
        size: 64 << 20,
        thin: false,
        share: ShareProtocolReplica::ReplicaNone.into(),
    })
    .await
    .unwrap();
    let child = format!("bdev:///{replica}");
    let before = r.fs.dump();
    let create = |uuid: &str, size: u64, children: Vec<String>| CreateNexusRequest {
        uuid: uuid.into(),
        size,
        children,
    };
    for (req, code) in [
        (
            create("nexus", 32 << 20, vec![child.clone()]),
            Code::InvalidArgument,
        ),
        (create(nexus, 0, vec![child.clone()]), Code::InvalidArgument),
        (create(nexus, 32 << 20, vec![]), Code::InvalidArgument),
        (
            create(nexus, 32 << 20, vec!["aio:///dev/vdb".into()]),
            Code::InvalidArgument,
        ),
        (
            create(nexus, 1 << 30, vec![child.clone()]),
            Code::InvalidArgument,
        ),
        (
            create(nexus, 32 << 20, vec![format!("bdev:///{nexus}")]),
            Code::NotFound,
        ),
    ] {
        let e = m.create_nexus(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{req:?}: {e:?}");
    }
    assert_eq!(
        r.fs.dump(),
        before,
        "a refused CreateNexus changed configfs"
    );
    assert!(m
        .list_nexus(Null {})
        .await
        .unwrap()
        .into_inner()
        .nexus_list
        .is_empty());

    let made = m
        .create_nexus(create(nexus, 32 << 20, vec![child.clone()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.children.len(), 1);
    let published = m
        .publish_nexus(nvmfcheck::proto::mayastor::PublishNexusRequest {
            uuid: nexus.into(),
            key: String::new(),
            share: nvmfcheck::proto::mayastor::ShareProtocolNexus::NexusNvmf.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .device_uri;
    assert_eq!(
        published,
        format!("nvmf://192.168.1.2:4421/nqn.2019-05.io.openebs:nexus-{nexus}")
    );
    let e = m
        .child_operation(ChildNexusRequest {
            uuid: nexus.into(),
            uri: child.clone(),
            action: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = m
        .child_operation(ChildNexusRequest {
            uuid: nexus.into(),
            uri: child.clone(),
            action: ChildAction::Offline.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "the only child in sync: {e:?}"
    );
    let e = m
        .get_rebuild_state(RebuildStateRequest {
            uuid: nexus.into(),
            uri: child.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    m.destroy_nexus(nvmfcheck::proto::mayastor::DestroyNexusRequest { uuid: nexus.into() })
        .await
        .unwrap();
    assert_eq!(r.fs.dump(), before, "the nexus's subsystem is left");
    r.stop().await;
}
