//! Case `data-set`, basic's last: leaves a verified data set on the
//! target's disk for the next category to read back (see
//! [`crate::suite::state`]), and says in the report what it left.

use crate::suite::state::{DataSet, JobParams};
use crate::suite::{block, fabric};
use crate::suite::{Case, CaseFuture, Env, Steps};

/// The range of the disk the data set covers (offset, length). It lies
/// inside what `share-connect-verify` wrote, so basic leaves no more data
/// on the disk than that case's fio size: the disk the NixOS check keeps
/// compresses to little more.
pub(crate) const RANGE: (u64, u64) = (0, 16 << 20);

pub(super) fn case() -> Case {
    Case {
        name: "data-set",
        about: "leave a 16 MiB data set on the disk, written with crc32c and verified, flushed, \
                its sha256 in the report, for io/state-from-basic to read back",
        run,
        cleanup: Some(super::teardown),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let bdev = steps
            .run(
                "should list the bdev",
                fabric::ensure_bdev(env, &s.bdev_uri, &s.bdev_uri),
            )
            .await?;
        let share = fabric::share(env, steps, &bdev).await?;
        let ns = fabric::connect(steps, &bdev, &share, &fabric::connect_options(env)).await?;
        let params = JobParams::data_set();
        let (offset, size) = RANGE;
        steps
            .fio(
                "should write a 16 MiB data set with crc32c and verify it",
                &[params.job(&ns.device, offset, size)],
                s.fio_timeout,
            )
            .await?;
        fabric::flush(env, steps, &ns.device).await?;
        let sha256 = steps
            .run(
                "should read the data set with O_DIRECT for its sha256",
                block::checksum(&ns.device, offset, size, s.fio_timeout),
            )
            .await?;
        fabric::disconnect(env, steps, &share.nqn).await?;
        fabric::unshare(env, steps, &bdev.name).await?;
        steps.leave_state(
            env,
            DataSet {
                disk: s.bdev_uri.clone(),
                offset,
                size,
                job: params,
                sha256,
            },
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_lies_inside_what_share_connect_verify_wrote() {
        let written = crate::suite::DEFAULT_FIO_SIZE_MB << 20;
        assert_eq!(RANGE.0, 0);
        assert!(RANGE.1 <= written);
    }
}
