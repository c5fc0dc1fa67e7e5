//! The benchmark: what a user pays for a run, measured, never asserted in
//! tests (machines are noisy, so figures are medians of runs made one after
//! another on one host, and changes are judged as ratios within one run or
//! against an earlier `bench.json`).
//!
//! - [`sample`]: boot and overhead, from `vm run basic`'s reports.
//! - [`data_path`]: the same fio jobs on the target's disk locally and over
//!   NVMe/TCP, as ratios.
//! - [`control`]: latency of the bdev calls, one at a time.
//! - [`scale`]: many bdevs shared, discovered, connected and torn down.
//! - [`record`]: all of it as `bench.json`, a table, and a comparison with
//!   an earlier record.
//!
//! The guest halves (`data_path`, `control`, `scale`) run inside the VMs
//! as `nvmfcheck bench ...`, or on any host against a real target.

pub mod control;
pub mod data_path;
pub mod latency;
pub mod record;
pub mod sample;
pub mod scale;

pub use latency::Latency;
pub use record::BenchRecord;
pub use sample::{table, Medians, Sample};

/// The median of some values (the mean of the middle two for an even
/// count); zero for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Why a bench step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A gRPC call failed.
    #[error("{what}: {source}")]
    Call {
        /// The call and its bdev.
        what: String,
        /// Why.
        source: Box<crate::client::ClientError>,
    },
    /// nvme-cli or sysfs failed.
    #[error("{what}: {source}")]
    Nvme {
        /// What was being done.
        what: String,
        /// Why.
        source: Box<crate::nvme::NvmeError>,
    },
    /// fio failed.
    #[error("fio job {job}: {source}")]
    Fio {
        /// The job's name.
        job: String,
        /// Why.
        source: Box<crate::fio::FioError>,
    },
    /// The target or host is not as the bench needs it.
    #[error("{0}")]
    State(String),
    /// A bench record could not be read or written.
    #[error("{path}: {reason}")]
    Record {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

impl BenchError {
    /// For `map_err`: gRPC call `what` (the call and its bdev) failed.
    pub fn call(what: impl Into<String>) -> impl FnOnce(crate::client::ClientError) -> Self {
        let what = what.into();
        move |source| Self::Call {
            what,
            source: Box::new(source),
        }
    }

    /// For `map_err`: nvme-cli or sysfs failed while doing `what`.
    pub fn nvme(what: impl Into<String>) -> impl FnOnce(crate::nvme::NvmeError) -> Self {
        let what = what.into();
        move |source| Self::Nvme {
            what,
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
