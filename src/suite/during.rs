//! fio and a fault at once, as one step: the fault waits until fio is into
//! its workload (watching the subsystem's I/O counters), strikes, and
//! checks what it expects; the step's note says how long I/O stalled and
//! how the controllers' states changed.

use std::future::Future;
use std::time::Duration;

use crate::fio::{self, FioError, FioJob, FioSummary, EILSEQ};
use crate::suite::steps::{ensure, fio_summary};
use crate::suite::{CheckError, Steps};

use super::watch::{IoWatch, Seen};

/// I/Os fio completes before a fault strikes, so that it strikes the
/// workload rather than fio's start-up.
pub(crate) const WARM_UP_IOS: u64 = 300;

/// How long fio may take to complete [`WARM_UP_IOS`].
pub(crate) const WARM_UP: Duration = Duration::from_secs(30);

/// What fio must do while the fault strikes.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Expect {
    /// Pass: exit 0, no verify error.
    Pass,
    /// Fail with I/O errors within its deadline.
    IoErrors,
}

/// Runs `jobs` on subsystem `nqn`'s namespace while `fault` runs, as one
/// step. It passes only when `fault`'s checks hold and fio does what
/// `expect` says: passes (0 verify errors, exit 0), or fails with I/O
/// errors (not verify errors) within `timeout` rather than hang. Returns
/// what `fault` returned and what the watch saw.
pub(crate) async fn fio_during<T, F, Fut>(
    steps: &mut Steps,
    name: &str,
    nqn: &str,
    jobs: &[FioJob],
    timeout: Duration,
    expect: Expect,
    fault: F,
) -> Result<(T, Seen), CheckError>
where
    F: FnOnce(IoWatch) -> Fut,
    Fut: Future<Output = Result<T, CheckError>>,
{
    let mut seen = None;
    let result = steps
        .run_fio(name, async {
            let started = std::time::Instant::now();
            let (fio, fault, watched) = during(nqn, jobs, timeout, fault).await;
            let ended = started.elapsed();
            let summary = fio_summary(&fio);
            seen = Some((watched.clone(), ended));
            // The fault's verdict first: if it did not strike, what fio did
            // proves nothing.
            let result = match fault {
                Err(e) => Err(e),
                Ok(t) => match expect {
                    Expect::Pass => fio.map(drop).map_err(CheckError::from),
                    Expect::IoErrors => expect_io_errors(fio),
                }
                .map(|()| (t, watched)),
            };
            (result, summary)
        })
        .await;
    if let Some((seen, ended)) = seen {
        steps.note(match expect {
            Expect::Pass => describe(&seen),
            Expect::IoErrors => format!(
                "fio ended after {:.1} s; {}",
                ended.as_secs_f64(),
                describe(&seen)
            ),
        });
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

/// Passes only if fio failed with an I/O error in a job: not a verify
/// error, not its deadline (a hang), and not a success.
fn expect_io_errors(fio: Result<FioSummary, FioError>) -> Result<(), CheckError> {
    let e = match fio {
        Ok(_) => {
            return Err(CheckError::Failed(
                "fio passed, but the fault should have failed its I/O".into(),
            ))
        }
        Err(e) => e,
    };
    let errors: Vec<i32> = e
        .summary()
        .map(|s| s.jobs.iter().map(|j| j.error).filter(|&n| n != 0).collect())
        .unwrap_or_default();
    ensure(!errors.is_empty() && !errors.contains(&EILSEQ), || {
        format!("fio should have failed with I/O errors in its jobs, it failed so: {e}")
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fio::{IoStats, JobSummary};

    fn failed(errors: &[i32]) -> Result<FioSummary, FioError> {
        Err(FioError::Failed {
            command_line: "fio".into(),
            reason: "fio exited with status 1".into(),
            stderr: String::new(),
            summary: Some(Box::new(FioSummary {
                jobs: errors
                    .iter()
                    .map(|&error| JobSummary {
                        name: "j".into(),
                        error,
                        read: IoStats::default(),
                        write: IoStats::default(),
                    })
                    .collect(),
                fio_version: "fio-3.33".into(),
                elapsed: Duration::ZERO,
                command_line: "fio".into(),
            })),
        })
    }

    #[test]
    fn only_io_errors_count_as_the_expected_failure() {
        assert!(expect_io_errors(failed(&[5])).is_ok());
        assert!(expect_io_errors(failed(&[0, 5])).is_ok());
        assert!(expect_io_errors(failed(&[EILSEQ])).is_err());
        assert!(expect_io_errors(failed(&[0])).is_err());
        let hang = Err(FioError::Command(crate::cmd::CmdError::Timeout {
            cmdline: "fio".into(),
            after: Duration::from_secs(60),
        }));
        let err = expect_io_errors(hang).unwrap_err().to_string();
        assert!(err.contains("did not finish within 60s"), "{err}");
    }
}
