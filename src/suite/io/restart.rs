//! Case `agent-restart`: the agent re-executes itself (`Control.Restart`)
//! while a verify job runs. The data path is the kernel's, so I/O goes on
//! untouched; the new instance rebuilds its view from configfs and lists
//! the same shares.

use crate::client::Control;
use crate::fio::{FioJob, Rw, Verify};
use crate::proto::control::InfoReply;
use crate::proto::mayastor::Bdev;

use super::{cleanup, control, fabric, only_controller, resilient, Session, AGENT_BACK};
use crate::suite::during::{fio_during, Expect, WARM_UP, WARM_UP_IOS};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

/// Bytes the verify job writes.
const SIZE: u64 = 16 << 20;

pub(super) fn case() -> Case {
    Case {
        name: "agent-restart",
        about: "the agent restarts while a verify job runs: the job passes, the controller stays \
                live, the new instance lists the same shares",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let session = Session::open(env, steps, &resilient(env)).await?;
        let nqn = &session.share.nqn;
        let ctrl = only_controller(env, steps, nqn).await?;
        let control = control(env).await?;
        let (before, shares) = steps
            .run("should note the agent's instance and its shares", async {
                Ok((control.info().await?, env.target.list().await?))
            })
            .await?;
        let job = FioJob::new(&session.ns.device, Rw::RandWrite, SIZE)
            .name("restart")
            .iodepth(8)
            .verify(Verify::Crc32c);
        let (restarting, instance) = (control.clone(), before.instance.clone());
        let ((after, listed), seen) = fio_during(
            steps,
            "should verify while the agent restarts",
            nqn,
            &[job],
            s.fio_timeout,
            Expect::Pass,
            |w| async move {
                w.wait_for_io(WARM_UP_IOS, WARM_UP).await?;
                let old = restarting.restart().await?;
                ensure(old == instance, || {
                    format!("Restart names instance {old}, Info named {instance}")
                })?;
                let info = new_instance(env, &old).await?;
                Ok((info, fabric::wait_for_agent(env, AGENT_BACK).await?))
            },
        )
        .await?;
        steps
            .run("should have restarted in the same process", async {
                ensure(after.pid == before.pid, || {
                    format!(
                        "instance {} answers with pid {}, the old one had {}: the agent did not \
                         re-execute itself",
                        after.instance, after.pid, before.pid
                    )
                })
            })
            .await?;
        steps
            .run("should list the same shares after the restart", async {
                same_shares(&shares, &listed)
            })
            .await?;
        steps
            .run("should have kept the controller live throughout", async {
                ensure(!seen.left_live(&ctrl), || {
                    format!("the I/O path was disturbed: {}", seen.describe_changes())
                })
            })
            .await?;
        session.close(env, steps).await
    })
}

/// Asks `Info`, each time on a fresh connection, until an instance other
/// than `old` answers, for at most [`AGENT_BACK`]. The old instance keeps
/// serving for a moment after it replies to `Restart`, and an open channel
/// may still reach it, so an answer only counts once it names a new
/// instance; if none does in time, the agent did not restart.
async fn new_instance(env: &Env, old: &str) -> Result<InfoReply, CheckError> {
    let s = &env.settings;
    fabric::retry("a new instance of the agent (Info)", AGENT_BACK, || async {
        let info = Control::connect(&s.target, s.rpc_timeout, s.token.clone())
            .await?
            .info()
            .await?;
        if info.instance == old {
            return Err(CheckError::Failed(format!("instance {old} still answers")));
        }
        Ok(info)
    })
    .await
}

/// Fails unless both lists have the same bdevs with the same uuids, claims
/// and share URIs.
fn same_shares(before: &[Bdev], after: &[Bdev]) -> Result<(), CheckError> {
    let key = |b: &Bdev| {
        (
            b.name.clone(),
            b.uuid.clone(),
            b.claimed,
            b.share_uri.clone(),
        )
    };
    let mut a: Vec<_> = before.iter().map(key).collect();
    let mut b: Vec<_> = after.iter().map(key).collect();
    a.sort();
    b.sort();
    ensure(a == b, || {
        format!("before the restart the target listed {a:?}, after it {b:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_compare_by_name_uuid_claim_and_uri() {
        let b = |name: &str, uri: &str| Bdev {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            claimed: !uri.is_empty(),
            share_uri: uri.into(),
            ..Bdev::default()
        };
        let before = [b("a", "nvmf://x"), b("m", "")];
        assert!(same_shares(&before, &[b("m", ""), b("a", "nvmf://x")]).is_ok());
        assert!(same_shares(&before, &[b("a", ""), b("m", "")]).is_err());
        assert!(same_shares(&before, &[b("a", "nvmf://x")]).is_err());
    }
}
