//! Case `discard-flush`: discarding and zeroing a range touch only that
//! range, zeroed blocks read as zeroes, and a job that flushes after every
//! write completes and verifies.

use std::path::Path;

use crate::fio::{FioJob, Rw, Verify};
use crate::nvme::Namespace;

use super::{cleanup, size_name, Session};
use crate::suite::steps::ensure;
use crate::suite::{block, fabric};
use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

/// Length of each range: before, middle (discarded and zeroed), after.
const RANGE: u64 = 1 << 20;

/// Bytes the fsync job writes, after the three ranges.
const FSYNC_SIZE: u64 = 1 << 20;

pub(super) fn case() -> Case {
    Case {
        name: "discard-flush",
        about: "blkdiscard and blkdiscard -z of a range leave its neighbours intact and zeroes \
                read as zeroes; a randwrite job with fsync=1 completes and verifies",
        run,
        cleanup: Some(cleanup),
    }
}

/// A 4 KiB randwrite crc32c job over range `index`.
fn range_job(device: &Path, name: &str, index: u64) -> FioJob {
    FioJob::new(device, Rw::RandWrite, RANGE)
        .name(name)
        .offset(index * RANGE)
        .iodepth(4)
        .verify(Verify::Crc32c)
}

/// The ranges before and after the middle one, written in one run and
/// checked in one run with the same jobs (fio derives a job's random seeds
/// from its place in the run, so a verify-only run must repeat it).
fn neighbours(device: &Path) -> [FioJob; 2] {
    [
        range_job(device, "before", 0),
        range_job(device, "after", 2),
    ]
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let session = Session::open(env, steps, &fabric::connect_options(env)).await?;
        let dev = &session.ns.device;
        steps
            .run("should report discard support in its queue limits", async {
                limits(&session.ns)
            })
            .await
            .map(|note| steps.note(note))?;
        steps
            .fio(
                "should write and verify the ranges before and after the middle one",
                &neighbours(dev),
                s.fio_timeout,
            )
            .await?;
        steps
            .fio(
                "should write and verify the middle range",
                &[range_job(dev, "middle", 1)],
                s.fio_timeout,
            )
            .await?;
        steps
            .run("should discard the middle range (blkdiscard)", async {
                block::discard(dev, RANGE, RANGE).await
            })
            .await?;
        let zeroes = steps
            .run("should read the discarded range back", async {
                let data = block::read_direct(dev, RANGE, RANGE as usize, s.nvme_timeout).await?;
                Ok(zero_blocks(&data))
            })
            .await?;
        steps.note(format!(
            "after discard, {zeroes} of {} 4 KiB blocks read as zeroes (the target may keep \
             or drop discarded data)",
            RANGE / 4096
        ));
        steps
            .run("should zero the middle range (blkdiscard -z)", async {
                block::zero(dev, RANGE, RANGE).await
            })
            .await?;
        steps
            .run("should read zeroes from the zeroed range", async {
                let data = block::read_direct(dev, RANGE, RANGE as usize, s.nvme_timeout).await?;
                let zeroes = zero_blocks(&data);
                ensure(zeroes == data.len() / 4096, || {
                    format!(
                        "only {zeroes} of {} 4 KiB blocks read as zeroes after Write Zeroes",
                        data.len() / 4096
                    )
                })
            })
            .await?;
        let check: Vec<FioJob> = neighbours(dev)
            .into_iter()
            .map(|j| j.verify_only(true))
            .collect();
        steps
            .fio(
                "should read the neighbouring ranges back intact (verify only)",
                &check,
                s.fio_timeout,
            )
            .await?;
        let fsync = FioJob::new(dev, Rw::RandWrite, FSYNC_SIZE)
            .name("fsync")
            .offset(3 * RANGE)
            .fsync(1)
            .verify(Verify::Crc32c);
        steps
            .fio(
                &format!(
                    "should write {} at 4 KiB with fsync after every write and verify it",
                    size_name(FSYNC_SIZE)
                ),
                &[fsync],
                s.fio_timeout,
            )
            .await?;
        session.close(env, steps).await
    })
}

/// The discard and cache limits the namespace shows, as a note; fails
/// when it shows no discard support.
fn limits(ns: &Namespace) -> Result<String, CheckError> {
    let attr = |a| block::queue_attr(&ns.device, a);
    let max: u64 = attr("discard_max_bytes")?.parse().map_err(|_| {
        CheckError::Failed(format!(
            "{}: discard_max_bytes is not a number",
            ns.device.display()
        ))
    })?;
    ensure(max > 0, || {
        format!(
            "{} shows discard_max_bytes 0: the namespace does not support Dataset Management",
            ns.device.display()
        )
    })?;
    Ok(format!(
        "discard_max_bytes {max}, discard_granularity {}, write_zeroes_max_bytes {}, \
         write_cache {}",
        attr("discard_granularity")?,
        attr("write_zeroes_max_bytes")?,
        attr("write_cache")?
    ))
}

/// How many whole 4 KiB blocks of `data` are all zeroes.
fn zero_blocks(data: &[u8]) -> usize {
    data.chunks_exact(4096)
        .filter(|b| b.iter().all(|&x| x == 0))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_zero_blocks() {
        let mut data = vec![0u8; 4 * 4096];
        assert_eq!(zero_blocks(&data), 4);
        data[4096 + 17] = 1;
        assert_eq!(zero_blocks(&data), 3);
    }

    #[test]
    fn ranges_do_not_overlap() {
        let dev = Path::new("/dev/nvme0n1");
        let [before, after] = neighbours(dev);
        let middle = range_job(dev, "middle", 1);
        for j in [&before, &after, &middle] {
            j.validate().unwrap();
        }
        assert_eq!(before.offset + before.size, middle.offset);
        assert_eq!(middle.offset + middle.size, after.offset);
        assert!(after.offset + after.size <= 3 * RANGE);
    }
}
