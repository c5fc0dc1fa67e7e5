//! The `security` category: an agent run as a careful operator runs it
//! ([`AgentSetup::Hardened`]) exposes nothing it should not, and the
//! target admits only the hosts it should: by host NQN, and by
//! DH-HMAC-CHAP key where the kernel's target can authenticate hosts.

mod dhchap;

use std::net::SocketAddr;
use std::time::Duration;

use uuid::Uuid;

use crate::client::Control;
use crate::client::Security;
use crate::client::{ClientError, Target};
use crate::nvme::{self, ConnectOptions, ShareUri};
use crate::proto::mayastor::Bdev;

use super::fabric;
use super::steps::ensure;
use super::{AgentSetup, Case, CaseFuture, Category, CheckError, Env, Steps};

/// Bytes each fio verify of the category writes and reads back.
const FIO_SIZE: u64 = 8 << 20;

/// How long a TCP connect to a port that must be closed may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The category.
pub fn category() -> Category {
    Category {
        name: "security",
        about: "a hardened agent exposes nothing it should not, and shares admit only the hosts they name, by NQN and DH-HMAC-CHAP key",
        depends_on: &["basic"],
        setup: AgentSetup::Hardened,
        leaves_state: false,
        cases: vec![
            Case {
                name: "exposure",
                about: "the agent's default port is on loopback only, every call needs the token, and Control is off",
                run: exposure,
                cleanup: None,
            },
            Case {
                name: "aio-paths",
                about: "aio bdevs only under the allowed paths: the agent's state and the rest of the system are refused",
                run: aio_paths,
                cleanup: None,
            },
            Case {
                name: "allow-list",
                about: "a share for one host NQN: that host connects and verifies, any other host is refused",
                run: allow_list,
                cleanup: Some(cleanup_allow_list),
            },
            dhchap::case(),
        ],
    }
}

/// A host NQN of the kind nvme-cli generates.
fn host_nqn() -> String {
    format!("nqn.2014-08.org.nvmexpress:uuid:{}", Uuid::new_v4())
}

/// The agent's `Security` service, with the run's token.
async fn security(env: &Env) -> Result<Security, CheckError> {
    let s = &env.settings;
    Ok(Security::connect(&s.target, s.rpc_timeout, s.token.clone()).await?)
}

/// Whether `result` is a refusal with `code` whose message has `text`.
fn refused<T>(
    result: Result<T, ClientError>,
    code: tonic::Code,
    text: &str,
) -> Result<(), CheckError> {
    match result {
        Ok(_) => Err(CheckError::Failed(format!(
            "the call succeeded; expected {code:?} with {text:?}"
        ))),
        Err(e) if e.code() == Some(code) && e.to_string().contains(text) => Ok(()),
        Err(e) => Err(CheckError::Failed(format!(
            "expected {code:?} with {text:?}, got: {e}"
        ))),
    }
}

fn exposure<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let e = steps
            .run("should tell what it exposes (Security.Exposure)", async {
                let e = security(env).await?.exposure().await?;
                ensure(e.token_required && !e.faults && !e.power_cycle, || {
                    format!(
                        "the agent has token_required={} faults={} power_cycle={}; a hardened \
                         agent requires a token and has no faults or power cycle",
                        e.token_required, e.faults, e.power_cycle
                    )
                })?;
                Ok(e)
            })
            .await?;
        steps
            .run(
                "should be unreachable from the initiator on the port it serves on loopback",
                async {
                    let listen: Vec<SocketAddr> =
                        e.listen.iter().filter_map(|a| a.parse().ok()).collect();
                    let loopback: Vec<u16> = listen
                        .iter()
                        .filter(|a| a.ip().is_loopback())
                        .map(|a| a.port())
                        .collect();
                    ensure(!loopback.is_empty(), || {
                        format!("the agent listens on {:?}, no loopback address", e.listen)
                    })?;
                    let host = s.target.rsplit_once(':').map_or("", |(h, _)| h);
                    for port in loopback {
                        let elsewhere = listen
                            .iter()
                            .any(|a| a.port() == port && !a.ip().is_loopback());
                        ensure(!elsewhere, || {
                            format!("port {port} is served beyond loopback too: {:?}", e.listen)
                        })?;
                        let addr = format!("{host}:{port}");
                        let probe = tokio::net::TcpStream::connect(addr.as_str());
                        if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                            return Err(CheckError::Failed(format!(
                                "{addr} accepted a connection although the agent serves port \
                                 {port} on loopback only"
                            )));
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        steps
            .run(
                "should refuse a call without the token (UNAUTHENTICATED)",
                async {
                    let bare = Target::connect(&s.target, s.rpc_timeout).await?;
                    refused(bare.list().await, tonic::Code::Unauthenticated, "no token")
                },
            )
            .await?;
        steps
            .run(
                "should refuse every Control call while faults are off (PERMISSION_DENIED)",
                async {
                    let control =
                        Control::connect(&s.target, s.rpc_timeout, s.token.clone()).await?;
                    let denied = tonic::Code::PermissionDenied;
                    refused(control.info().await, denied, "--faults")?;
                    refused(control.port_down(8430, 1).await, denied, "--faults")?;
                    refused(control.restart().await, denied, "--faults")
                },
            )
            .await
    })
}

fn aio_paths<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let before = env.target.list().await?;
        for (what, path, text) in [
            (
                "a system file",
                "/etc/passwd",
                "is outside the paths this agent may export",
            ),
            (
                "the agent's state file",
                "/var/lib/nvmfcheck/state.json",
                "is outside the paths this agent may export",
            ),
        ] {
            steps
                .run(
                    &format!("should refuse an aio bdev on {what} (PERMISSION_DENIED)"),
                    async {
                        let uri = format!("aio://{path}");
                        refused(
                            env.target.create(&uri).await,
                            tonic::Code::PermissionDenied,
                            text,
                        )
                    },
                )
                .await?;
        }
        steps
            .run("should have changed nothing", async {
                let after = env.target.list().await?;
                ensure(after == before, || {
                    format!("List changed from {before:?} to {after:?}")
                })
            })
            .await
    })
}

/// The RAM disk the allow-list case shares.
const ALLOW_LIST_BDEV: (&str, &str) = ("sec-allow", "malloc:///sec-allow?size_mb=16");

fn allow_list<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let bdev = ram_disk(env, steps, ALLOW_LIST_BDEV).await?;
        let (ours, other) = (host_nqn(), host_nqn());
        let share = share_for(env, steps, &bdev, &ours).await?;
        let as_ours = ConnectOptions {
            hostnqn: Some(ours),
            ..fabric::connect_options(env)
        };
        connect_and_verify(env, steps, &bdev, &share, &as_ours).await?;
        let as_other = ConnectOptions {
            hostnqn: Some(other),
            ..fabric::connect_options(env)
        };
        refused_at_connect(env, steps, "another host NQN", &share, &as_other).await
    })
}

fn cleanup_allow_list<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move { remove(env, steps, ALLOW_LIST_BDEV.0).await })
}

/// The case's RAM disk `(name, uri)`, created unless the target has it.
async fn ram_disk(
    env: &Env,
    steps: &mut Steps,
    (name, uri): (&str, &str),
) -> Result<Bdev, CheckError> {
    steps
        .run(
            "should create a RAM disk",
            fabric::ensure_bdev(env, name, uri),
        )
        .await
}

/// Shares `bdev` for host `host` only.
async fn share_for(
    env: &Env,
    steps: &mut Steps,
    bdev: &Bdev,
    host: &str,
) -> Result<ShareUri, CheckError> {
    steps
        .run(
            "should share it for one host NQN only (allowed_hosts)",
            async {
                let hosts = [host.to_string()];
                let uri = env.target.share(&bdev.name, "nvmf", &hosts).await?;
                fabric::share_of(&uri, &bdev.uuid)
            },
        )
        .await
}

/// Connects with `opts`, verifies the namespace with fio and disconnects.
async fn connect_and_verify(
    env: &Env,
    steps: &mut Steps,
    bdev: &Bdev,
    share: &ShareUri,
    opts: &ConnectOptions,
) -> Result<(), CheckError> {
    let ns = fabric::connect(steps, bdev, share, opts).await?;
    fabric::verify(steps, &ns.device, FIO_SIZE, env.settings.fio_timeout).await?;
    fabric::disconnect(env, steps, &share.nqn).await
}

/// A connect with `opts` must fail and leave no controller.
async fn refused_at_connect(
    env: &Env,
    steps: &mut Steps,
    who: &str,
    share: &ShareUri,
    opts: &ConnectOptions,
) -> Result<(), CheckError> {
    steps
        .run(&format!("should refuse {who} at connect"), async {
            let result = nvme::connect(&share.transport, &share.nqn, opts).await;
            ensure(result.is_err(), || {
                format!("{who} connected to {}", share.nqn)
            })?;
            let left = nvme::connection(&share.nqn, env.settings.nvme_timeout).await?;
            ensure(left.is_none(), || {
                format!("a refused connect left controllers: {left:?}")
            })
        })
        .await
}

/// Disconnects, unshares and destroys bdev `name`, whatever is left of it.
async fn remove(env: &Env, steps: &mut Steps, name: &str) -> Result<(), CheckError> {
    fabric::teardown(env, steps, name).await?;
    if let Some(b) = env.target.find(name).await? {
        env.target.destroy(&b.uri).await?;
    }
    Ok(())
}
