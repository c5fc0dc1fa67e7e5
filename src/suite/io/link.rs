//! Cases `link-loss` and `link-loss-beyond-tmo`: the target's network link
//! goes down during a verify job (`Control.LinkDown`, from inside the
//! target, so the same in every harness).
//!
//! For 2, 5 and 15 s, with a controller-loss timeout longer than that, the
//! host must ride it out (reconnecting if it noticed), the job must pass,
//! and the stall is recorded. For longer than the controller-loss timeout,
//! the host must give up on the controller and fail the job's I/O within a
//! deadline rather than hang.

use std::time::Duration;

use crate::fio::{FioJob, Rw, Verify};
use crate::nvme::{self, ConnectOptions};

use super::{cleanup, control, fabric, resilient, Session, AGENT_BACK};
use crate::suite::during::{fio_during, Expect, WARM_UP, WARM_UP_IOS};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, Env, Steps};

/// Outages the host must ride out, in seconds.
const LOSSES: [u32; 3] = [2, 5, 15];

/// Bytes each verify job writes.
const SIZE: u64 = 8 << 20;

/// How long the host may take to have the controller live again once the
/// link is back (it retries every second).
const RECONNECT: Duration = Duration::from_secs(60);

/// The controller-loss timeout of `link-loss-beyond-tmo`.
const SHORT_TMO: i32 = 3;

/// The outage of `link-loss-beyond-tmo`. The host must give up well before
/// it ends, so that it cannot reconnect instead; docs/io.md has the phases
/// measured under TCG (noticing the dead link, tearing the queues down,
/// the reconnect attempts), which add up to well under this.
const LONG_LOSS: u32 = 40;

/// Deadline for fio to fail and the controller to go, from fio's start.
const GIVE_UP: Duration = Duration::from_secs(60);

pub(super) fn ride_out() -> Case {
    Case {
        name: "link-loss",
        about: "the target's link down for 2, 5 and 15 s during verify jobs: the host reconnects, \
                0 errors, the stall recorded",
        run: run_ride_out,
        cleanup: Some(cleanup),
    }
}

pub(super) fn beyond_tmo() -> Case {
    Case {
        name: "link-loss-beyond-tmo",
        about: "the target's link down for 40 s with ctrl_loss_tmo 3: the job fails with I/O \
                errors and the controller goes within 60 s, never a hang",
        run: run_beyond_tmo,
        cleanup: Some(cleanup),
    }
}

fn run_ride_out<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let session = Session::open(env, steps, &resilient(env)).await?;
        let nqn = &session.share.nqn;
        let control = control(env).await?;
        for secs in LOSSES {
            let job = FioJob::new(&session.ns.device, Rw::RandWrite, SIZE)
                .name(format!("loss-{secs}s"))
                .iodepth(8)
                .verify(Verify::Crc32c);
            let name = format!("should verify while the target's link is down for {secs} s");
            let control = control.clone();
            let (_, seen) = fio_during(
                steps,
                &name,
                nqn,
                &[job],
                env.settings.fio_timeout,
                Expect::Pass,
                |w| async move {
                    w.wait_for_io(WARM_UP_IOS, WARM_UP).await?;
                    let fault = control.link_down(secs).await?;
                    tokio::time::sleep(Duration::from_millis(fault.restored_in_ms)).await;
                    w.wait_for(
                        "the controller live once the link is back",
                        RECONNECT,
                        |s| s.all_live(1),
                    )
                    .await
                },
            )
            .await?;
            steps
                .run(
                    &format!("should have stalled through the {secs} s outage, then recovered"),
                    async {
                        // The link goes down a moment after LinkDown replies.
                        let outage = Duration::from_secs(secs.into()).mul_f64(0.8);
                        ensure(seen.longest_stall >= outage, || {
                            format!(
                                "I/O stalled for {:.1} s at most: the link did not go down for {secs} s",
                                seen.longest_stall.as_secs_f64()
                            )
                        })?;
                        fabric::wait_for_agent(env, AGENT_BACK).await.map(drop)
                    },
                )
                .await?;
        }
        session.close(env, steps).await
    })
}

fn run_beyond_tmo<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let opts = ConnectOptions {
            ctrl_loss_tmo: Some(SHORT_TMO),
            ..resilient(env)
        };
        let Session { bdev, share, ns } = Session::open(env, steps, &opts).await?;
        let control = control(env).await?;
        // Far more than it gets to write.
        let job = FioJob::new(&ns.device, Rw::RandWrite, 64 << 20)
            .name("lost")
            .iodepth(8)
            .verify(Verify::Crc32c);
        let name = format!(
            "should fail the job's I/O within {} s when the link is down for {LONG_LOSS} s, \
             beyond ctrl_loss_tmo {SHORT_TMO} s",
            GIVE_UP.as_secs()
        );
        fio_during(
            steps,
            &name,
            &share.nqn,
            &[job],
            GIVE_UP,
            Expect::IoErrors,
            |w| async move {
                w.wait_for_io(WARM_UP_IOS, WARM_UP).await?;
                control.link_down(LONG_LOSS).await?;
                w.wait_for("the host giving up the controller", GIVE_UP, |s| {
                    s.states.is_empty()
                })
                .await
            },
        )
        .await?;
        steps
            .run(
                "should reach the agent again once the link is back",
                async { fabric::wait_for_agent(env, AGENT_BACK).await.map(drop) },
            )
            .await?;
        steps
            .run("should have no controller left for the subsystem", async {
                let left = nvme::connection(&share.nqn, s.nvme_timeout).await?;
                ensure(left.is_none(), || {
                    format!("{} still has {left:?}", share.nqn)
                })
            })
            .await?;
        fabric::unshare(env, steps, &bdev.name).await
    })
}
