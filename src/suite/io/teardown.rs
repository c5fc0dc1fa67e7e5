//! Case `teardown-under-io`: the bdev is unshared while a job writes to
//! it. The host must get I/O errors and drop the controller within a
//! deadline, neither side may hang, and sharing again must work.

use std::time::Duration;

use crate::fio::{FioJob, Rw, Verify};
use crate::nvme::{self, ConnectOptions};

use super::{cleanup, fabric, resilient, Session};
use crate::suite::during::{fio_during, Expect, WARM_UP, WARM_UP_IOS};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, Env, Steps};

/// The host's controller-loss timeout here: it gives up on the vanished
/// subsystem this soon.
const CTRL_LOSS_TMO: i32 = 5;

/// Deadline for fio to fail and the controller to go.
const DEADLINE: Duration = Duration::from_secs(60);

/// Bytes the job would write: far more than it gets to.
const SIZE: u64 = 64 << 20;

/// Bytes the verify job writes after sharing again.
const AGAIN: u64 = 2 << 20;

pub(super) fn case() -> Case {
    Case {
        name: "teardown-under-io",
        about: "unshare while a job writes: I/O errors and the controller gone within 60 s, no \
                hang on either side, sharing again works",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let opts = ConnectOptions {
            ctrl_loss_tmo: Some(CTRL_LOSS_TMO),
            ..resilient(env)
        };
        let Session { bdev, share, ns } = Session::open(env, steps, &opts).await?;
        let job = FioJob::new(&ns.device, Rw::RandWrite, SIZE)
            .name("teardown")
            .iodepth(8)
            .verify(Verify::Crc32c);
        let name = format!(
            "should fail the job's I/O and drop the controller within {} s of an unshare",
            DEADLINE.as_secs()
        );
        let name_of = bdev.name.clone();
        fio_during(
            steps,
            &name,
            &share.nqn,
            &[job],
            DEADLINE,
            Expect::IoErrors,
            |w| async move {
                w.wait_for_io(WARM_UP_IOS, WARM_UP).await?;
                env.target.unshare(&name_of).await?;
                w.wait_for("the controller going away", DEADLINE, |s| {
                    s.states.is_empty()
                })
                .await
            },
        )
        .await?;
        steps
            .run("should read the host's NVMe state without hanging", async {
                let left = nvme::connection(&share.nqn, s.nvme_timeout).await?;
                ensure(left.is_none(), || {
                    format!("{} still has {left:?}", share.nqn)
                })
            })
            .await?;
        steps
            .run(
                "should still be served by the agent, the bdev unclaimed",
                async {
                    let b = fabric::find(env, &bdev.name).await?;
                    ensure(fabric::is_unshared(&b), || {
                        format!("after unshare {} lists claimed={}", b.name, b.claimed)
                    })
                },
            )
            .await?;
        let share = fabric::share(env, steps, &bdev).await?;
        let ns = fabric::connect(steps, &bdev, &share, &fabric::connect_options(env)).await?;
        let job = FioJob::verify_randrw(&ns.device, AGAIN)
            .name("again")
            .verify(Verify::Crc32c);
        steps
            .fio("should verify after sharing again", &[job], s.fio_timeout)
            .await?;
        fabric::disconnect(env, steps, &share.nqn).await?;
        fabric::unshare(env, steps, &bdev.name).await
    })
}
