//! Case `controller-reset`: `nvme reset` of the controller while a verify
//! job runs, twice; the host tears its queues down and sets them up again,
//! requeues what was in flight, and the job passes.

use std::time::Duration;

use crate::fio::{FioJob, Rw, Verify};
use crate::nvme;

use super::{cleanup, only_controller, resilient, Session};
use crate::suite::during::{fio_during, Expect, WARM_UP, WARM_UP_IOS};
use crate::suite::{Case, CaseFuture, Env, Steps};

/// Resets during one job.
const RESETS: u64 = 2;

/// Bytes the verify job writes: long enough for both resets.
const SIZE: u64 = 16 << 20;

/// How long the controller may take to be live again after a reset.
const LIVE_AGAIN: Duration = Duration::from_secs(30);

pub(super) fn case() -> Case {
    Case {
        name: "controller-reset",
        about: "nvme reset of the controller, twice, while a verify job runs: 0 errors",
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
        let job = FioJob::new(&session.ns.device, Rw::RandWrite, SIZE)
            .name("reset")
            .iodepth(8)
            .verify(Verify::Crc32c);
        let name = format!("should verify while the controller {ctrl} is reset {RESETS} times");
        fio_during(
            steps,
            &name,
            nqn,
            &[job],
            s.fio_timeout,
            Expect::Pass,
            |w| async move {
                for i in 1..=RESETS {
                    w.wait_for_io(i * WARM_UP_IOS, WARM_UP).await?;
                    nvme::reset(&ctrl, s.nvme_timeout).await?;
                    w.wait_for("the controller live again", LIVE_AGAIN, |s| s.all_live(1))
                        .await?;
                }
                Ok(())
            },
        )
        .await?;
        session.close(env, steps).await
    })
}
