//! The nvme wrapper against the real nvme-cli, on loopback only. Without an
//! NVMe target here, these prove the failure paths: nvme-cli's own message
//! comes through with a hint at the cause. The success paths run in the VMs.

use std::net::TcpListener;
use std::time::Duration;

use nvmfcheck::cmd::CmdError;
use nvmfcheck::nvme::{self, ConnectOptions, NvmeError, Transport};

const NQN: &str = "nqn.2019-05.io.openebs:nvmfcheck-test-not-connected";

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// nvme-cli ran and failed, and the error says why and what to do.
fn assert_explained_failure(err: &NvmeError, cmdline: &str) {
    let msg = err.to_string();
    match err {
        NvmeError::Command {
            error: CmdError::Failed { stderr, .. },
            hint,
        } => {
            assert!(msg.contains(cmdline), "{msg}");
            assert!(
                !stderr.trim().is_empty() && msg.contains(stderr.trim()),
                "{msg}"
            );
            assert!(hint.is_some(), "no hint for: {msg}");
        }
        // Without nvme-cli the hint says how to install it.
        NvmeError::Command {
            error: CmdError::Spawn { .. },
            hint: Some(h),
        } => assert!(h.contains("nvme-cli"), "{msg}"),
        other => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn discover_without_a_target_explains_the_failure() {
    let port = closed_port();
    let t = Transport::new("127.0.0.1", port).unwrap();
    let err = nvme::discover(&t, Duration::from_secs(20))
        .await
        .unwrap_err();
    assert_explained_failure(
        &err,
        &format!("nvme discover -t tcp -a 127.0.0.1 -s {port} -o json"),
    );
}

#[tokio::test]
async fn connect_without_a_target_explains_the_failure_and_leaves_nothing() {
    let port = closed_port();
    let t = Transport::new("127.0.0.1", port).unwrap();
    let opts = ConnectOptions {
        timeout: Duration::from_secs(20),
        ..ConnectOptions::default()
    };
    let err = nvme::connect(&t, NQN, &opts).await.unwrap_err();
    assert_explained_failure(
        &err,
        &format!("nvme connect -t tcp -a 127.0.0.1 -s {port} -n {NQN}"),
    );
    assert_eq!(
        nvme::connection(NQN, Duration::from_secs(5)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_subsystem_never_connected_has_no_connection() {
    assert_eq!(
        nvme::connection(NQN, Duration::from_secs(5)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn disconnect_of_a_subsystem_never_connected_removes_nothing() {
    match nvme::disconnect(NQN, Duration::from_secs(20)).await {
        // A host with the NVMe driver loaded: nvme-cli says 0 controller(s).
        Ok(removed) => assert_eq!(removed, 0),
        // A host without it (like the build host): nvme-cli cannot scan.
        Err(err) => assert_explained_failure(&err, &format!("nvme disconnect -n {NQN}")),
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_nvme_cli_runs() {
    let t = Transport {
        traddr: "target.example".into(),
        trsvcid: 8420,
    };
    let err = nvme::discover(&t, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, NvmeError::InvalidTransport { .. }), "{err}");
    let t = Transport::new("127.0.0.1", 8430).unwrap();
    let err = nvme::connect(&t, "not-an-nqn", &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("starts with `nqn.`"), "{err}");
    let err = nvme::disconnect("nqn.a,nqn.b", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("commas"), "{err}");
}
