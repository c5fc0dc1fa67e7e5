//! Case `state-from-basic`, io's first: the data set basic left on the
//! target's disk reads back intact. In `vm run basic io` that is the same
//! boot; after `vm run basic --keep-state DIR` and `vm run io --from-state
//! DIR`, and in the NixOS io check, it is a fresh target booted on a copy
//! of the disk basic's target left when it was powered off.
//!
//! It fails on a disk that never held the data set (the verify-only read
//! finds verify errors), and it shows that it can: the same read moved onto
//! a zeroed control range must find them.

use crate::fio::FioError;
use crate::suite::state::DataSet;
use crate::suite::steps::{ensure, fio_summary};
use crate::suite::{block, fabric};
use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

use super::persistence::{can_fail, is_verify_error};
use super::{cleanup, Session};

/// Length of the control range, just after the data set.
const CONTROL_LEN: u64 = 1 << 20;

pub(super) fn case() -> Case {
    Case {
        name: "state-from-basic",
        about: "the data set basic left on the disk (report.json's state) reads back intact, \
                verify-only and by sha256, also after both VMs were powered off; fails on a \
                disk without it",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let state = steps
            .run("should know the data set basic left", async {
                known(env.carried.get(), &s.bdev_uri)
            })
            .await?;
        let opts = fabric::connect_options(env);
        let Session { bdev, share, ns } = Session::open(env, steps, &opts).await?;
        let disk_bytes = bdev.num_blocks * u64::from(bdev.blk_size);
        let control = (state.offset + state.size, CONTROL_LEN);
        let job = state.job(&ns.device);
        steps
            .run_fio(
                &format!(
                    "should read basic's data set back intact ({} MiB at {}, verify only)",
                    state.size >> 20,
                    state.offset
                ),
                async {
                    let result =
                        crate::fio::run(&[job.clone().verify_only(true)], s.fio_timeout).await;
                    let summary = fio_summary(&result);
                    (result.map(drop).map_err(|e| not_there(&state, e)), summary)
                },
            )
            .await?;
        steps
            .run("should hold the bytes basic left (sha256)", async {
                let sum =
                    block::checksum(&ns.device, state.offset, state.size, s.fio_timeout).await?;
                ensure(sum == state.sha256, || {
                    format!(
                        "the range reads with sha256 {sum}, but basic left {}: the data set \
                         passes its own checks yet is not the one basic wrote",
                        state.sha256
                    )
                })
            })
            .await?;
        steps
            .run("should have room for a control range after it", async {
                ensure(control.0 + control.1 <= disk_bytes, || {
                    format!(
                        "the disk has {disk_bytes} bytes, too few for a control range at {}",
                        control.0
                    )
                })
            })
            .await?;
        can_fail(env, steps, &ns.device, &job, control).await?;
        fabric::disconnect(env, steps, &share.nqn).await?;
        fabric::unshare(env, steps, &bdev.name).await
    })
}

/// The data set to read, if the run knows one on the bdev it exports.
fn known(state: Option<DataSet>, bdev_uri: &str) -> Result<DataSet, CheckError> {
    let state = state.ok_or_else(|| {
        CheckError::Failed(
            "no data set to read: basic's data-set case did not run before in this run, and \
             no --require-passed report with a `state` was given; run `nvmfcheck run basic io`, \
             or pass the report.json of a basic run that left one (`nvmfcheck vm run io \
             --from-state DIR` does)"
                .into(),
        )
    })?;
    ensure(state.disk == bdev_uri, || {
        format!(
            "basic left its data set on {}, but this run exports {bdev_uri}; run with --bdev {}",
            state.disk, state.disk
        )
    })?;
    Ok(state)
}

/// The error of a verify-only read that failed: with verify errors, the
/// disk does not hold the data set, and the message says how to boot on
/// one that does.
fn not_there(state: &DataSet, e: FioError) -> CheckError {
    if !is_verify_error(&e) {
        return e.into();
    }
    CheckError::Failed(format!(
        "the disk does not hold the data set basic left ({} bytes at {} of {}): its verify-only \
         read found verify errors. Boot the target on the disk basic left: `nvmfcheck vm run \
         basic --keep-state DIR`, then `nvmfcheck vm run io --from-state DIR` (in Nix, \
         checks.<system>.io boots on basic's disk).\n{e}",
        state.size, state.offset, state.disk
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::state::JobParams;

    fn state() -> DataSet {
        DataSet {
            disk: "aio:///dev/vdb".into(),
            offset: 0,
            size: 16 << 20,
            job: JobParams::data_set(),
            sha256: "0".repeat(64),
        }
    }

    #[test]
    fn without_a_data_set_or_on_another_bdev_it_fails_naming_the_fix() {
        let none = known(None, "aio:///dev/vdb").unwrap_err().to_string();
        assert!(
            none.contains("--require-passed") && none.contains("--from-state"),
            "{none}"
        );
        let other = known(Some(state()), "aio:///dev/vdc")
            .unwrap_err()
            .to_string();
        assert!(other.contains("--bdev aio:///dev/vdb"), "{other}");
        assert_eq!(known(Some(state()), "aio:///dev/vdb").unwrap(), state());
    }

    #[test]
    fn verify_errors_say_the_disk_lacks_the_data_set_and_others_pass_through() {
        let failed = |reason: &str| FioError::Failed {
            command_line: "fio".into(),
            reason: reason.into(),
            stderr: String::new(),
            summary: None,
        };
        let blank = not_there(&state(), failed("verify error: bad magic header 0"));
        let msg = blank.to_string();
        assert!(
            msg.starts_with("the disk does not hold the data set basic left"),
            "{msg}"
        );
        assert!(
            msg.contains("--keep-state") && msg.contains("--from-state"),
            "{msg}"
        );
        let io = not_there(&state(), failed("fio exited with status 1")).to_string();
        assert!(!io.contains("does not hold"), "{io}");
    }
}
