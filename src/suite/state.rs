//! State carried from one category to the next on the target's disk:
//! `basic`'s last case leaves a data set there and `io`'s first case reads
//! it back, in the same boot or after both VMs were powered off and a
//! fresh target booted on a copy of the disk (`nvmfcheck vm run basic
//! --keep-state DIR`, then `vm run io --from-state DIR`; in Nix, the io
//! check boots on basic's disk). The report says what was left
//! (`report.json`'s `state`), so the reader knows what to expect.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::fio::{FioJob, Rw, Verify};

/// What a category left on the target's disk: where, written how, and
/// the checksum of the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSet {
    /// The bdev that holds it, as created (`aio:///dev/vdb`).
    pub disk: String,
    /// Start of the range, in bytes.
    pub offset: u64,
    /// Length of the range, in bytes.
    pub size: u64,
    /// The fio job that wrote it, which a verify-only run repeats.
    pub job: JobParams,
    /// sha256 of the range in hex, read with O_DIRECT after the flush.
    pub sha256: String,
}

/// The parameters of the fio job that wrote a [`DataSet`], beyond its
/// range: a verify-only run must repeat them exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobParams {
    /// fio's `--name`, which seeds the verify headers.
    pub name: String,
    /// The pattern.
    pub rw: Rw,
    /// Block size in bytes.
    pub bs: u32,
    /// Queue depth.
    pub iodepth: u32,
    /// The verify method.
    pub verify: Verify,
}

impl JobParams {
    /// The data-set job of the cases that write one and read it back: 4 KiB
    /// random writes at queue depth 8 with crc32c headers.
    pub fn data_set() -> Self {
        Self {
            name: "dataset".into(),
            rw: Rw::RandWrite,
            bs: 4096,
            iodepth: 8,
            verify: Verify::Crc32c,
        }
    }

    /// The job over `size` bytes of `device` at `offset`; with
    /// `.verify_only(true)` it reads back what it wrote.
    pub fn job(&self, device: &Path, offset: u64, size: u64) -> FioJob {
        FioJob::new(device, self.rw, size)
            .name(&self.name)
            .bs(self.bs)
            .iodepth(self.iodepth)
            .verify(self.verify.clone())
            .offset(offset)
    }
}

impl DataSet {
    /// The job that wrote it, over `device`.
    pub fn job(&self, device: &Path) -> FioJob {
        self.job.job(device, self.offset, self.size)
    }
}

/// The data set a run knows of: the one its `--require-passed` report
/// says was left, until a case of this run leaves another.
#[derive(Debug, Default)]
pub struct Carried(Mutex<Option<DataSet>>);

impl Carried {
    /// What is known now.
    pub(super) fn get(&self) -> Option<DataSet> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records `state` as what the disk holds now.
    pub(super) fn set(&self, state: Option<DataSet>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_repeats_what_the_report_says() {
        let state = DataSet {
            disk: "aio:///dev/vdb".into(),
            offset: 1 << 20,
            size: 16 << 20,
            job: JobParams::data_set(),
            sha256: "0".repeat(64),
        };
        let job = state.job(Path::new("/dev/nvme0n1")).verify_only(true);
        job.validate().unwrap();
        assert_eq!((job.offset, job.size), (1 << 20, 16 << 20));
        assert_eq!(
            (job.bs, job.iodepth, job.name.as_str()),
            (4096, 8, "dataset")
        );
        assert_eq!(job.verify, Some(Verify::Crc32c));
        // As report.json holds it, and back.
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["job"]["rw"], "randwrite");
        assert_eq!(json["job"]["verify"], "crc32c");
        let back: DataSet = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        let carried = Carried::default();
        assert_eq!(carried.get(), None);
        carried.set(Some(state.clone()));
        assert_eq!(carried.get(), Some(state));
    }
}
