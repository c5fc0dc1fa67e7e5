//! fio and a fault at once, as one step: the fault waits until fio is into
//! its workload (watching the subsystem's I/O counters), strikes, and
//! checks what it expects; the step's note says how long I/O stalled and
//! how the controllers' states changed.

use std::future::Future;
use std::time::Duration;

use crate::fio::{self, FioError, FioJob, FioSummary};
use crate::suite::steps::fio_summary;
use crate::suite::{CheckError, Steps};

use super::watch::{IoWatch, Seen};

/// I/Os fio completes before a fault strikes, so that it strikes the
/// workload rather than fio's start-up.
pub(super) const WARM_UP_IOS: u64 = 300;

/// How long fio may take to complete [`WARM_UP_IOS`].
pub(super) const WARM_UP: Duration = Duration::from_secs(30);

/// Runs `jobs` on subsystem `nqn`'s namespace while `fault` runs, as one
/// step that passes only when fio passes (0 verify errors, exit 0) and
/// `fault`'s checks hold. Returns what `fault` returned and what the watch
/// saw.
pub(super) async fn verify_during<T, F, Fut>(
    steps: &mut Steps,
    name: &str,
    nqn: &str,
    jobs: &[FioJob],
    timeout: Duration,
    fault: F,
) -> Result<(T, Seen), CheckError>
where
    F: FnOnce(IoWatch) -> Fut,
    Fut: Future<Output = Result<T, CheckError>>,
{
    let mut seen = None;
    let result = steps
        .run_fio(name, async {
            let (fio, fault, watched) = during(nqn, jobs, timeout, fault).await;
            let summary = fio_summary(&fio);
            seen = Some(watched.clone());
            // The fault's verdict first: if it did not strike, fio passing
            // proves nothing.
            let result = match (fault, fio) {
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e.into()),
                (Ok(t), Ok(_)) => Ok((t, watched)),
            };
            (result, summary)
        })
        .await;
    if let Some(seen) = seen {
        steps.note(describe(&seen));
    }
    result
}

async fn during<T, F, Fut>(
    nqn: &str,
    jobs: &[FioJob],
    timeout: Duration,
    fault: F,
) -> (Result<FioSummary, FioError>, Result<T, CheckError>, Seen)
where
    F: FnOnce(IoWatch) -> Fut,
    Fut: Future<Output = Result<T, CheckError>>,
{
    let watch = IoWatch::start(nqn);
    let (fio, fault) = tokio::join!(fio::run(jobs, timeout), fault(watch.clone()));
    (fio, fault, watch.seen())
}

/// The note of a step: the stall and the controllers' state changes.
fn describe(seen: &Seen) -> String {
    format!(
        "{} I/Os completed; longest I/O stall {:.1} s; {}",
        seen.completed,
        seen.longest_stall.as_secs_f64(),
        seen.describe_changes()
    )
}
