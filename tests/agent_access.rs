//! Who may call the agent, over a real gRPC socket on the in-memory
//! configfs model: the defaults (loopback only, no `Control`, no aio path),
//! `--faults`, `--allow-path` and `--token-file`. Every refusal has its
//! status code, names the flag that would allow the call, and changes
//! nothing.

mod common;
use common::{fake_loops, fake_lvm, fake_nexus};

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nvmfcheck::agent::fake::FakeConfigfs;
use nvmfcheck::agent::Configfs;
use nvmfcheck::agent::{Agent, AgentConfig, AgentError, DEFAULT_LISTEN};
use nvmfcheck::client::Control;
use nvmfcheck::client::Security;
use nvmfcheck::client::{ClientError, Target};
use nvmfcheck::proto::mayastor::mayastor_client::MayastorClient;
use nvmfcheck::proto::mayastor::{ListPoolsReply, Null};
use nvmfcheck::token::Token;
use tokio::sync::oneshot;
use tonic::Code;

const TIMEOUT: Duration = Duration::from_secs(10);

/// An agent on loopback, stopped when dropped.
struct Running {
    addr: String,
    fs: Arc<FakeConfigfs>,
    _stop: oneshot::Sender<()>,
}

fn config(dir: &Path) -> AgentConfig {
    let mut c = AgentConfig::new(Ipv4Addr::new(203, 0, 113, 77));
    c.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    c.state_dir = dir.join("state");
    c
}

async fn start(config: &AgentConfig) -> Running {
    start_on(config, Arc::new(FakeConfigfs::new())).await
}

async fn start_on(config: &AgentConfig, fs: Arc<FakeConfigfs>) -> Running {
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
    tokio::spawn(agent.serve(vec![listener], async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        fs,
        _stop: stop,
    }
}

/// A file holding `token`, readable by its owner only.
fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// What `Mayastor.ListPools` answers a caller with `token` (none: sent
/// without one).
async fn list_pools(
    addr: &str,
    token: Option<&Token>,
) -> Result<tonic::Response<ListPoolsReply>, tonic::Status> {
    let mut client = MayastorClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(Null {});
    if let Some(token) = token {
        token.attach(&mut request);
    }
    client.list_pools(request).await
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>, code: Code, text: &str) {
    let err = result.expect_err("the call should be refused");
    assert_eq!(err.code(), Some(code), "{err}");
    assert!(err.to_string().contains(text), "{err}");
}

#[test]
fn the_defaults_expose_nothing_beyond_loopback() {
    let c = AgentConfig::new(Ipv4Addr::new(192, 168, 1, 2));
    assert_eq!(c.listen, [DEFAULT_LISTEN]);
    assert!(DEFAULT_LISTEN.ip().is_loopback());
    assert!(!c.faults);
    assert!(c.allow_paths.is_empty());
    assert!(c.token_file.is_none());
    // The binary's flags have the same defaults.
    let help = Command::new(env!("CARGO_BIN_EXE_nvmfcheck"))
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("[default: 127.0.0.1:10124]"), "{help}");
}

#[tokio::test]
async fn control_is_off_without_faults() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(&config(dir.path())).await;
    let control = Control::connect(&r.addr, TIMEOUT, None).await.unwrap();
    let before = r.fs.dump();
    let denied = |result| refused(result, Code::PermissionDenied, "start it with --faults");
    denied(control.info().await.map(|_| ()));
    denied(control.port_down(8430, 5).await.map(|_| ()));
    denied(control.link_down(5).await.map(|_| ()));
    denied(control.restart().await.map(|_| ()));
    assert_eq!(r.fs.dump(), before);
    // BdevRpc is not affected.
    let target = Target::connect(&r.addr, TIMEOUT).await.unwrap();
    assert!(target.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn aio_paths_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let disks = dir.path().join("disks");
    std::fs::create_dir(&disks).unwrap();
    let disk = disks.join("d0");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let uri = format!("aio://{}", disk.display());

    // By default no path is allowed.
    let r = start(&config(dir.path())).await;
    let target = Target::connect(&r.addr, TIMEOUT).await.unwrap();
    refused(
        target.create(&uri).await,
        Code::PermissionDenied,
        "--allow-path",
    );
    assert!(target.list().await.unwrap().is_empty());
    drop(r);

    // Allowed: under the prefix only, never the agent's state.
    let mut c = config(&dir.path().join("second"));
    c.allow_paths = vec![disks.clone(), dir.path().join("second")];
    let r = start(&c).await;
    let target = Target::connect(&r.addr, TIMEOUT).await.unwrap();
    let outside = format!("aio://{}", dir.path().join("elsewhere").display());
    std::fs::write(dir.path().join("elsewhere"), vec![0; 4096]).unwrap();
    refused(
        target.create(&outside).await,
        Code::PermissionDenied,
        "is outside the paths",
    );
    let state = format!("aio://{}", c.state_dir.join("state.json").display());
    refused(
        target.create(&state).await,
        Code::PermissionDenied,
        "state directory",
    );
    assert!(target.list().await.unwrap().is_empty());
    assert_eq!(target.create(&uri).await.unwrap(), uri);
}

#[tokio::test]
async fn with_a_token_every_call_must_carry_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.token_file = Some(token_file(dir.path(), "token", "s3cret-token"));
    c.faults = true;
    let r = start(&c).await;
    let right = Token::read(&token_file(dir.path(), "copy", "s3cret-token")).unwrap();
    let wrong = Token::read(&token_file(dir.path(), "wrong", "s3cret-tokeN")).unwrap();

    let before = r.fs.dump();
    for token in [None, Some(wrong.clone())] {
        let what = if token.is_some() {
            "a wrong token"
        } else {
            "no token"
        };
        let target = Target::connect_with_token(&r.addr, TIMEOUT, token.clone())
            .await
            .unwrap();
        let unauthenticated = |result| refused(result, Code::Unauthenticated, what);
        unauthenticated(target.list().await.map(|_| ()));
        unauthenticated(target.create("malloc:///m0?size_mb=1").await.map(|_| ()));
        unauthenticated(target.share("m0", "nvmf", &[]).await.map(|_| ()));
        let mayastor = list_pools(&r.addr, token.as_ref()).await.unwrap_err();
        assert_eq!(mayastor.code(), Code::Unauthenticated, "{mayastor:?}");
        assert!(mayastor.message().contains(what), "{mayastor:?}");
        let control = Control::connect(&r.addr, TIMEOUT, token).await.unwrap();
        unauthenticated(control.info().await.map(|_| ()));
    }
    assert_eq!(r.fs.dump(), before, "refused calls changed configfs");

    let target = Target::connect_with_token(&r.addr, TIMEOUT, Some(right.clone()))
        .await
        .unwrap();
    assert!(
        target.list().await.unwrap().is_empty(),
        "nothing was created"
    );
    target.create("malloc:///m0?size_mb=1").await.unwrap();
    // Past the gate, the service's own answer.
    let mayastor = list_pools(&r.addr, Some(&right)).await.unwrap();
    assert!(mayastor.into_inner().pools.is_empty());
    let control = Control::connect(&r.addr, TIMEOUT, Some(right))
        .await
        .unwrap();
    control.info().await.unwrap();
}

#[tokio::test]
async fn a_token_file_others_may_read_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    let path = token_file(dir.path(), "token", "s3cret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    c.token_file = Some(path);
    let Err(err) = Agent::start(
        &c,
        Arc::new(FakeConfigfs::new()),
        fake_loops(&c),
        fake_lvm(&c),
        fake_nexus(&c),
    ) else {
        panic!("the agent started with a world-readable token file");
    };
    assert!(matches!(err, AgentError::Token(_)), "{err}");
    assert!(err.to_string().contains("chmod o-rwx"), "{err}");
}

#[test]
fn bad_listen_and_allow_path_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.listen = Vec::new();
    assert!(c.validate().unwrap_err().to_string().contains("--listen"));
    c.listen = vec![DEFAULT_LISTEN, DEFAULT_LISTEN];
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("given twice"));
    c.listen = vec![DEFAULT_LISTEN];
    c.allow_paths = vec!["dev/vdb".into()];
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("--allow-path dev/vdb is not absolute"),
        "{err}"
    );
}

/// A key as `nvme gen-dhchap-key --hmac 1` printed it, and another.
const KEY: &str = "DHHC-1:01:jzvPioFYW+Pgjmtw15pV1F9s9goZ9HeCbn7SxLDJGt/Ax6t7:";
const CTRL_KEY: &str = "DHHC-1:01:Z/9+YBWY/RPlSkTAcUoN0fVQJp3LE2bBNa7+jW3Vc/LMCXCP:";
const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:7a2c9298-72dc-406f-aeca-ce78cfec147a";

#[tokio::test]
async fn host_keys_are_set_kept_while_unused_and_removed_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let fs = Arc::new(FakeConfigfs::new());
    let r = start_on(&c, fs.clone()).await;
    let security = Security::connect(&r.addr, TIMEOUT, None).await.unwrap();
    let target = Target::connect(&r.addr, TIMEOUT).await.unwrap();
    let host = PathBuf::from("hosts").join(HOST);
    let attr = |name: &str| {
        fs.read(&host.join(name))
            .ok()
            .map(|v| v.trim_end().to_string())
    };

    // Bad input changes nothing and never shows the key.
    let before = fs.dump();
    let err = security
        .set_host_key(HOST, "DHHC-1:01:not-a-key:", "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(!err.to_string().contains("not-a-key"), "{err}");
    refused(
        security.set_host_key(HOST, KEY, "DHHC-1:09:x:").await,
        Code::InvalidArgument,
        "ctrl_key",
    );
    refused(
        security.set_host_key("host a", KEY, "").await,
        Code::InvalidArgument,
        "allowed host",
    );
    refused(security.remove_host(HOST).await, Code::NotFound, "no entry");
    assert_eq!(fs.dump(), before);

    security.set_host_key(HOST, KEY, CTRL_KEY).await.unwrap();
    assert_eq!(attr("dhchap_key").as_deref(), Some(KEY));
    assert_eq!(attr("dhchap_ctrl_key").as_deref(), Some(CTRL_KEY));
    target.create("malloc:///m0?size_mb=1").await.unwrap();
    target
        .share("m0", "nvmf", &[HOST.to_string()])
        .await
        .unwrap();
    refused(
        security.remove_host(HOST).await,
        Code::FailedPrecondition,
        "admitted by a share",
    );
    // Unshared, the host stays with its key, so that a later share admits
    // it only with the key; across a restart too.
    target.unshare("m0").await.unwrap();
    assert_eq!(attr("dhchap_key").as_deref(), Some(KEY));
    drop(r);
    let r = start_on(&c, fs.clone()).await;
    assert_eq!(
        attr("dhchap_key").as_deref(),
        Some(KEY),
        "a restart dropped the keyed host"
    );
    let security = Security::connect(&r.addr, TIMEOUT, None).await.unwrap();
    security.remove_host(HOST).await.unwrap();
    assert!(!fs.exists(&host));
}

#[tokio::test]
async fn a_kernel_without_host_auth_refuses_keys_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FakeConfigfs::without_host_auth());
    let r = start_on(&config(dir.path()), fs.clone()).await;
    let security = Security::connect(&r.addr, TIMEOUT, None).await.unwrap();
    let before = fs.dump();
    refused(
        security.set_host_key(HOST, KEY, "").await,
        Code::FailedPrecondition,
        "CONFIG_NVME_TARGET_AUTH",
    );
    assert_eq!(fs.dump(), before);
}

#[tokio::test]
async fn exposure_tells_what_the_agent_allows_and_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.allow_paths = vec!["/dev/vdb".into()];
    c.token_file = Some(token_file(dir.path(), "token", "t0ken"));
    let r = start(&c).await;
    let none = Security::connect(&r.addr, TIMEOUT, None).await.unwrap();
    refused(none.exposure().await, Code::Unauthenticated, "no token");
    refused(
        none.set_host_key(HOST, KEY, "").await,
        Code::Unauthenticated,
        "no token",
    );
    let token = Token::read(&c.token_file.clone().unwrap()).unwrap();
    let with = Security::connect(&r.addr, TIMEOUT, Some(token))
        .await
        .unwrap();
    let e = with.exposure().await.unwrap();
    assert_eq!(e.listen, ["127.0.0.1:0"]);
    assert!(!e.faults);
    assert!(e.token_required);
    assert_eq!(e.allowed_paths, ["/dev/vdb"]);
}
