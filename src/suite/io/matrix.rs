//! Case `verify-matrix`: every block size × queue depth × pattern × verify
//! method writes and reads back without a verify error.
//!
//! One fio run per block size and queue depth; in it, one job per pattern
//! (`randwrite` then verify, and `randrw`) and verify method (`crc32c`,
//! `md5`, `sha256`, a fixed pattern), all at once on distinct ranges of the
//! namespace.

use crate::fio::{FioJob, Rw, Verify};
use crate::nvme::Namespace;

use super::{cleanup, fabric, size_name, Session};
use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

/// Block sizes and, for each, the bytes one job covers: 256 blocks of the
/// small sizes, 64 of the large, so each run takes seconds under TCG.
const BLOCK_SIZES: [(u32, u64); 3] = [(512, 128 << 10), (4096, 1 << 20), (128 << 10, 8 << 20)];

/// Queue depths.
const QUEUE_DEPTHS: [u32; 2] = [1, 32];

/// Patterns: written then verified, and mixed reads and writes.
const PATTERNS: [Rw; 2] = [Rw::RandWrite, Rw::RandRw];

/// The fixed pattern of the `pattern` method.
const PATTERN: &str = "0x5aa5c33c0ff0e11e";

pub(super) fn case() -> Case {
    Case {
        name: "verify-matrix",
        about: "512 B, 4 KiB, 128 KiB × QD 1, 32 × randwrite-then-verify, randrw × crc32c, md5, \
                sha256, pattern: parallel jobs on distinct ranges, 0 verify errors",
        run,
        cleanup: Some(cleanup),
    }
}

fn methods() -> [Verify; 4] {
    [
        Verify::Crc32c,
        Verify::Md5,
        Verify::Sha256,
        Verify::Pattern(PATTERN.into()),
    ]
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let session = Session::open(env, steps, &fabric::connect_options(env)).await?;
        for (bs, size) in BLOCK_SIZES {
            for qd in QUEUE_DEPTHS {
                let jobs = cell(&session.ns, bs, size, qd)?;
                let name = format!(
                    "should verify {} blocks at QD {qd}: {} jobs, randwrite and randrw × \
                     crc32c, md5, sha256, pattern",
                    size_name(bs.into()),
                    jobs.len()
                );
                steps.fio(&name, &jobs, env.settings.fio_timeout).await?;
            }
        }
        session.close(env, steps).await
    })
}

/// The jobs of one block size and queue depth, each on its own range.
fn cell(ns: &Namespace, bs: u32, size: u64, qd: u32) -> Result<Vec<FioJob>, CheckError> {
    let mut jobs = Vec::new();
    for rw in PATTERNS {
        for verify in methods() {
            let method = match &verify {
                Verify::Pattern(_) => "pattern".to_string(),
                v => v.to_string(),
            };
            let offset = size * jobs.len() as u64;
            jobs.push(
                FioJob::new(&ns.device, rw, size)
                    .name(format!("{rw}-{method}"))
                    .bs(bs)
                    .iodepth(qd)
                    .offset(offset)
                    .verify(verify),
            );
        }
    }
    let end = size * jobs.len() as u64;
    if end > ns.size_bytes {
        return Err(CheckError::Failed(format!(
            "the matrix needs {end} bytes, {} has {}",
            ns.device.display(),
            ns.size_bytes
        )));
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cell_has_a_job_per_pattern_and_method_on_its_own_range() {
        let ns = Namespace {
            device: "/dev/nvme0n1".into(),
            nsid: 1,
            size_bytes: 512 << 20,
            block_size: 512,
            uuid: None,
            nguid: None,
        };
        for (bs, size) in BLOCK_SIZES {
            let jobs = cell(&ns, bs, size, 32).unwrap();
            assert_eq!(jobs.len(), 8);
            for (i, job) in jobs.iter().enumerate() {
                job.validate().unwrap();
                assert_eq!(job.offset, size * i as u64);
                assert_eq!((job.bs, job.iodepth, job.size), (bs, 32, size));
            }
            let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
            assert!(names.contains(&"randrw-pattern") && names.contains(&"randwrite-sha256"));
        }
        let small = Namespace {
            size_bytes: 1 << 20,
            ..ns
        };
        assert!(cell(&small, 4096, 1 << 20, 1).is_err());
    }
}
