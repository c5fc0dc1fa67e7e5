//! The agent's `Control` service over a real gRPC socket, on the in-memory
//! configfs model: input validation, a port fault taken and restored, and
//! a fault that outlives a `Restart` or ends with a stop. `LinkDown` on a
//! real link runs in the VM (`io/link-loss`); here it can only be refused.

mod common;
use common::{fake_loops, fake_lvm, fake_nexus};

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nvmfcheck::agent::fake::FakeConfigfs;
use nvmfcheck::agent::Configfs;
use nvmfcheck::agent::{Agent, AgentConfig, AgentError, Stopped};
use nvmfcheck::client::Control;
use nvmfcheck::client::Target;
use nvmfcheck::proto::control::control_client::ControlClient;
use nvmfcheck::proto::control::{LinkDownRequest, PortDownRequest};
use tokio::sync::oneshot;
use tonic::Code;

/// TEST-NET-3: no interface of a test machine has it, so `LinkDown` finds
/// no link and changes nothing on the machine running the tests.
const ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);

struct Running {
    addr: String,
    control: Control,
    target: Target,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<Stopped, AgentError>>,
}

fn config(dir: &Path) -> AgentConfig {
    let mut c = AgentConfig::new(ADDRESS);
    c.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    c.state_dir = dir.join("state");
    c.faults = true;
    c
}

async fn start(config: &AgentConfig, fs: &Arc<FakeConfigfs>) -> Running {
    let agent = Agent::start(
        config,
        fs.clone(),
        fake_loops(config),
        fake_lvm(config),
        fake_nexus(config),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(agent.serve(vec![listener], async {
        let _ = stopped.await;
    }));
    let timeout = Duration::from_secs(10);
    Running {
        control: Control::connect(&addr, timeout, None).await.unwrap(),
        target: Target::connect(&addr, timeout).await.unwrap(),
        addr,
        stop: Some(stop),
        server,
    }
}

impl Running {
    /// Waits for the server to end (after `Restart`, or after `stop`).
    async fn ended(self) -> Stopped {
        drop((self.control, self.target));
        tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("the agent stops within its grace period")
            .unwrap()
            .unwrap()
    }

    async fn stop(mut self) -> Stopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ended().await
    }
}

/// Shares a malloc bdev; returns its subsystem NQN.
async fn share(r: &Running) -> String {
    r.target.create("malloc:///m0?size_mb=1").await.unwrap();
    let uri = r.target.share("m0", "nvmf", &[]).await.unwrap();
    uri.rsplit('/').next().unwrap().to_string()
}

/// The configfs port serving TCP `svc`.
fn port_dir(fs: &FakeConfigfs, svc: u16) -> PathBuf {
    for id in fs.list(Path::new("ports")).unwrap() {
        let port = Path::new("ports").join(id);
        if fs.read(&port.join("addr_trsvcid")).unwrap().trim() == svc.to_string() {
            return port;
        }
    }
    panic!("no port {svc} in {}", fs.dump());
}

fn linked(fs: &FakeConfigfs, svc: u16, nqn: &str) -> bool {
    fs.exists(&port_dir(fs, svc).join("subsystems").join(nqn))
}

async fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_its_code_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let r = start(&config(dir.path()), &fs).await;
    let info = r.control.info().await.unwrap();
    assert_eq!(info.pid, std::process::id());
    assert!(info.instance.parse::<uuid::Uuid>().is_ok(), "{info:?}");
    assert!(info.faults.is_empty());
    assert_eq!(info.boot_id.len(), 36, "{info:?}");

    let mut raw = ControlClient::connect(format!("http://{}", r.addr))
        .await
        .unwrap();
    let port_down = |port, seconds| PortDownRequest { port, seconds };
    let before = fs.dump();
    for (req, code, says) in [
        (port_down(8430, 0), Code::InvalidArgument, "seconds 0"),
        (port_down(8430, 601), Code::InvalidArgument, "give 1 to 600"),
        (
            port_down(0, 5),
            Code::InvalidArgument,
            "port 0 is not a TCP port",
        ),
        (port_down(70000, 5), Code::InvalidArgument, "port 70000"),
        (port_down(9999, 5), Code::NotFound, "not 9999"),
        (
            port_down(8430, 5),
            Code::FailedPrecondition,
            "share a bdev first",
        ),
    ] {
        let e = raw.port_down(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{req:?}: {e:?}");
        assert!(e.message().contains(says), "{req:?}: {}", e.message());
    }
    for (seconds, code, says) in [
        (0, Code::InvalidArgument, "seconds 0"),
        (601, Code::InvalidArgument, "seconds 601"),
        (5, Code::FailedPrecondition, "no interface has it"),
    ] {
        let e = raw
            .link_down(LinkDownRequest { seconds })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{seconds}: {e:?}");
        assert!(e.message().contains(says), "{seconds}: {}", e.message());
    }
    let e = r.control.power_cycle().await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e:?}");
    assert!(e.to_string().contains("--allow-power-cycle"), "{e}");
    assert_eq!(fs.dump(), before);
    assert!(r.control.info().await.unwrap().faults.is_empty());
    assert_eq!(r.stop().await, Stopped::Shutdown);
}

/// PowerCycle writes SysRq `b` to its trigger (here a file standing in for
/// /proc/sysrq-trigger) after replying; the replication category's
/// `power-cycle` case resets a real VM with it.
#[tokio::test]
async fn power_cycle_replies_then_writes_b_to_the_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("sysrq-trigger");
    std::fs::write(&trigger, "").unwrap();
    let mut c = config(dir.path());
    c.power_cycle = Some(trigger.clone());
    let fs = Arc::new(FakeConfigfs::new());
    let r = start(&c, &fs).await;
    let boot = r.control.info().await.unwrap().boot_id;
    let reply = r.control.power_cycle().await.unwrap();
    assert_eq!(reply.boot_id, boot);
    assert_eq!(reply.reset_in_ms, 250);
    wait_until("b written to the trigger", Duration::from_secs(5), || {
        std::fs::read_to_string(&trigger).unwrap() == "b"
    })
    .await;
    assert_eq!(r.stop().await, Stopped::Shutdown);
}

#[tokio::test]
async fn a_port_goes_down_and_comes_back_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let r = start(&config(dir.path()), &fs).await;
    let nqn = share(&r).await;
    assert!(linked(&fs, 8430, &nqn) && linked(&fs, 8420, &nqn));

    let fault = r.control.port_down(8430, 1).await.unwrap();
    assert_eq!(fault.kind, "port");
    assert_eq!(fault.target, format!("{ADDRESS}:8430"));
    assert_eq!(fault.subsystems, std::slice::from_ref(&nqn));
    assert!(fault.restored_in_ms > 500 && fault.restored_in_ms <= 1000);
    assert!(!linked(&fs, 8430, &nqn), "{}", fs.dump());
    assert!(linked(&fs, 8420, &nqn), "the other port stays");

    let e = r.control.port_down(8430, 5).await.unwrap_err().to_string();
    assert!(
        e.contains("FailedPrecondition") && e.contains("in force"),
        "{e}"
    );
    let faults = r.control.info().await.unwrap().faults;
    assert_eq!(faults.len(), 1);
    assert_eq!(
        (&faults[0].kind, &faults[0].target, &faults[0].subsystems),
        (&fault.kind, &fault.target, &fault.subsystems)
    );
    assert!(faults[0].restored_in_ms <= fault.restored_in_ms);

    wait_until("port 8430 is linked again", Duration::from_secs(5), || {
        linked(&fs, 8430, &nqn)
    })
    .await;
    assert!(r.control.info().await.unwrap().faults.is_empty());
    assert_eq!(r.stop().await, Stopped::Shutdown);
}

#[tokio::test]
async fn a_fault_outlives_a_restart_and_the_next_instance_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let config = config(dir.path());
    let r = start(&config, &fs).await;
    let nqn = share(&r).await;
    let first = r.control.info().await.unwrap().instance;
    r.control.port_down(8430, 3).await.unwrap();
    assert_eq!(r.control.restart().await.unwrap(), first);
    assert_eq!(r.ended().await, Stopped::Restart);
    assert!(
        !linked(&fs, 8430, &nqn),
        "the restart restored the port early"
    );

    // What `nvmfcheck agent` does after `Stopped::Restart` (re-executing
    // itself): start again from configfs and the state dir.
    let r = start(&config, &fs).await;
    let info = r.control.info().await.unwrap();
    assert_ne!(info.instance, first);
    assert_eq!(info.faults.len(), 1, "{info:?}");
    assert!(info.faults[0].restored_in_ms <= 3000);
    assert!(r.target.find("m0").await.unwrap().unwrap().claimed);
    // Rebuilding completes shares, which links the port; resuming the
    // fault unlinks it again.
    assert!(!linked(&fs, 8430, &nqn), "{}", fs.dump());
    wait_until("port 8430 is linked again", Duration::from_secs(6), || {
        linked(&fs, 8430, &nqn)
    })
    .await;
    assert_eq!(r.stop().await, Stopped::Shutdown);
}

#[tokio::test]
async fn stopping_restores_every_fault() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::new());
    let config = config(dir.path());
    let r = start(&config, &fs).await;
    let nqn = share(&r).await;
    r.control.port_down(8420, 600).await.unwrap();
    assert!(!linked(&fs, 8420, &nqn));
    assert_eq!(r.stop().await, Stopped::Shutdown);
    assert!(linked(&fs, 8420, &nqn), "{}", fs.dump());
    let file = std::fs::read_to_string(config.state_dir.join("faults.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(file["pending"], serde_json::json!([]));
}
