//! Case `persistence`: data written and flushed in one session reads back
//! intact in the next.
//!
//! A verify-only run proves something only if it can fail: after the
//! read-back the case zeroes a control range and checks that the same
//! verify-only job, moved onto it, reports verify errors ([`can_fail`],
//! which `state-from-basic` shares).

use std::path::Path;

use crate::fio::{FioError, FioJob, EILSEQ};

use super::{cleanup, Session};
use crate::suite::state::JobParams;
use crate::suite::steps::{ensure, fio_summary};
use crate::suite::{block, fabric};
use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

/// Bytes of the data set.
const DATA: u64 = 16 << 20;

/// Where the control range starts (after the data set) and its length.
const CONTROL: (u64, u64) = (DATA, 1 << 20);

pub(super) fn case() -> Case {
    Case {
        name: "persistence",
        about: "a verified data set, flushed, survives disconnect and reconnect (verify-only \
                read-back, which fails on a zeroed control range)",
        run,
        cleanup: Some(cleanup),
    }
}

/// The job that writes the data set; `verify_only` replays it to check.
fn data_set(device: &std::path::Path) -> FioJob {
    JobParams::data_set().job(device, 0, DATA)
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let opts = fabric::connect_options(env);
        let Session { bdev, share, ns } = Session::open(env, steps, &opts).await?;
        steps
            .fio(
                "should write a 16 MiB data set with crc32c and verify it",
                &[data_set(&ns.device)],
                s.fio_timeout,
            )
            .await?;
        fabric::flush(env, steps, &ns.device).await?;
        fabric::disconnect(env, steps, &share.nqn).await?;
        let ns = fabric::connect(steps, &bdev, &share, &opts).await?;
        steps
            .fio(
                "should read the data set back intact in the new session (verify only)",
                &[data_set(&ns.device).verify_only(true)],
                s.fio_timeout,
            )
            .await?;
        can_fail(env, steps, &ns.device, &data_set(&ns.device), CONTROL).await?;
        fabric::disconnect(env, steps, &share.nqn).await?;
        fabric::unshare(env, steps, &bdev.name).await
    })
}

/// Proves that the verify-only replay of `job` can fail: zeroes the
/// `control` range (offset, length) of `device` and runs the replay moved
/// onto it, which must report verify errors.
pub(super) async fn can_fail(
    env: &Env,
    steps: &mut Steps,
    device: &Path,
    job: &FioJob,
    control: (u64, u64),
) -> Result<(), CheckError> {
    steps
        .run("should zero a control range (blkdiscard -z)", async {
            block::zero(device, control.0, control.1).await
        })
        .await?;
    let moved = FioJob {
        size: control.1,
        ..job.clone().offset(control.0).verify_only(true)
    };
    steps
        .run_fio(
            "should find verify errors when the same check reads the zeroed range",
            async {
                let result = crate::fio::run(&[moved], env.settings.fio_timeout).await;
                let summary = fio_summary(&result);
                (expect_verify_failure(result), summary)
            },
        )
        .await
}

/// Passes only if fio failed because of a verify error.
fn expect_verify_failure<T>(result: Result<T, FioError>) -> Result<(), CheckError> {
    match result {
        Ok(_) => Err(CheckError::Failed(
            "verify-only passed over zeroes, so it checks nothing".into(),
        )),
        Err(e) => ensure(is_verify_error(&e), || {
            format!("fio failed, but not with a verify error: {e}")
        }),
    }
}

/// Whether fio failed because a block did not verify.
pub(super) fn is_verify_error(e: &FioError) -> bool {
    e.summary()
        .is_some_and(|s| s.jobs.iter().any(|j| j.error == EILSEQ))
        || matches!(e, FioError::Failed { reason, .. } if reason.starts_with("verify error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(reason: &str) -> FioError {
        FioError::Failed {
            command_line: "fio".into(),
            reason: reason.into(),
            stderr: String::new(),
            summary: None,
        }
    }

    #[test]
    fn only_a_verify_error_counts_as_the_expected_failure() {
        assert!(expect_verify_failure(Ok(())).is_err());
        assert!(expect_verify_failure::<()>(Err(failed("verify error: bad magic header"))).is_ok());
        let other = expect_verify_failure::<()>(Err(failed("fio exited with status 1")));
        assert!(other
            .unwrap_err()
            .to_string()
            .contains("not with a verify error"));
    }

    #[test]
    fn the_control_range_lies_beyond_the_data_set() {
        let dev = Path::new("/dev/nvme0n1");
        let job = data_set(dev);
        job.validate().unwrap();
        assert!(CONTROL.0 >= job.offset + job.size);
    }
}
