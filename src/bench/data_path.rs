//! The data path as a ratio: the same fio jobs on the target's disk, once
//! in the target itself and once over NVMe/TCP from an initiator. The
//! ratio is what the fabric (nvmet, TCP, the link, the host's driver)
//! costs; under TCG both sides are emulated, so only the ratio means much.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BenchError;
use crate::client::Target;
use crate::fio::{self, FioJob, Rw};
use crate::nvme::{self, ConnectOptions, ShareUri};

/// One job of the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Its name in tables and `bench.json`.
    pub name: &'static str,
    /// Pattern.
    pub rw: Rw,
    /// Block size in bytes.
    pub bs: u32,
    /// Queue depth.
    pub iodepth: u32,
}

/// The jobs, in the order they run: small random reads at queue depth 1
/// (latency) and 32 (parallelism), and large sequential reads and writes
/// (bandwidth).
pub const JOBS: [Job; 4] = [
    Job {
        name: "randread-4k-qd1",
        rw: Rw::RandRead,
        bs: 4096,
        iodepth: 1,
    },
    Job {
        name: "randread-4k-qd32",
        rw: Rw::RandRead,
        bs: 4096,
        iodepth: 32,
    },
    Job {
        name: "read-128k-qd8",
        rw: Rw::Read,
        bs: 128 << 10,
        iodepth: 8,
    },
    Job {
        name: "write-128k-qd8",
        rw: Rw::Write,
        bs: 128 << 10,
        iodepth: 8,
    },
];

/// How the jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The region each job covers, from offset 0.
    pub size: u64,
    /// How long each job runs (time based).
    pub runtime: Duration,
}

/// What one job measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The job's name.
    pub job: String,
    /// I/O operations per second.
    pub iops: f64,
    /// MiB per second.
    pub mib_per_sec: f64,
    /// Median completion latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile completion latency, microseconds.
    pub p99_us: f64,
}

/// Runs [`JOBS`] one after another on `device` (a block device or file)
/// and returns their figures. Writes: the region's data is lost.
pub async fn run(device: &Path, params: Params) -> Result<Vec<Figures>, BenchError> {
    let mut figures = Vec::new();
    for job in JOBS {
        let fio_job = FioJob::new(device, job.rw, params.size)
            .name(job.name)
            .bs(job.bs)
            .iodepth(job.iodepth)
            .runtime(params.runtime);
        // Room for fio to start, lay out and stop, beyond its runtime.
        let timeout = params.runtime * 2 + Duration::from_secs(60);
        let summary = fio::run(&[fio_job], timeout)
            .await
            .map_err(|source| BenchError::Fio {
                job: job.name.into(),
                source: Box::new(source),
            })?;
        let stats = summary
            .jobs
            .first()
            .map(|j| match job.rw {
                Rw::Read | Rw::RandRead => j.read.clone(),
                _ => j.write.clone(),
            })
            .ok_or_else(|| BenchError::State(format!("fio job {} reported nothing", job.name)))?;
        figures.push(Figures {
            job: job.name.into(),
            iops: stats.iops,
            mib_per_sec: stats.bw_bytes as f64 / f64::from(1 << 20),
            p50_us: stats.lat_p50_ns as f64 / 1e3,
            p99_us: stats.lat_p99_ns as f64 / 1e3,
        });
    }
    Ok(figures)
}

/// Creates and shares the bdev of `uri` on `target`, connects to it, runs
/// [`JOBS`] on its namespace, and disconnects, unshares and destroys it
/// again (also when a step fails). The bdev must not exist yet.
pub async fn over_fabric(
    target: &Target,
    uri: &str,
    params: Params,
    timeout: Duration,
) -> Result<Vec<Figures>, BenchError> {
    let call = |what: &str| BenchError::call(format!("{what} {uri}"));
    let name = target.create(uri).await.map_err(call("Create"))?;
    let result = share_and_run(target, &name, params, timeout).await;
    let destroyed = target.destroy(uri).await.map_err(call("Destroy"));
    first_error(result, destroyed)
}

async fn share_and_run(
    target: &Target,
    name: &str,
    params: Params,
    timeout: Duration,
) -> Result<Vec<Figures>, BenchError> {
    let call = |what: &str| BenchError::call(format!("{what} {name}"));
    let uri = target
        .share(name, "nvmf", &[])
        .await
        .map_err(call("Share"))?;
    let result = connect_and_run(&uri, params, timeout).await;
    let unshared = target.unshare(name).await.map_err(call("Unshare"));
    first_error(result, unshared)
}

async fn connect_and_run(
    uri: &str,
    params: Params,
    timeout: Duration,
) -> Result<Vec<Figures>, BenchError> {
    let nvme_err = BenchError::nvme;
    let share = ShareUri::parse(uri).map_err(nvme_err(format!("share URI {uri}")))?;
    let opts = ConnectOptions {
        timeout,
        ..ConnectOptions::default()
    };
    let connection = nvme::connect(&share.transport, &share.nqn, &opts)
        .await
        .map_err(nvme_err(format!("connect to {}", share.nqn)))?;
    let result = match connection.namespaces.first() {
        Some(ns) => run(&ns.device, params).await,
        None => Err(BenchError::State(format!(
            "{} has no namespace to run fio on",
            share.nqn
        ))),
    };
    let disconnected = nvme::disconnect(&share.nqn, timeout)
        .await
        .map_err(nvme_err(format!("disconnect from {}", share.nqn)));
    first_error(result, disconnected)
}

/// A step's result after its undo ran: the step's error first, else the
/// undo's.
fn first_error<T, U>(
    result: Result<T, BenchError>,
    undone: Result<U, BenchError>,
) -> Result<T, BenchError> {
    let value = result?;
    undone?;
    Ok(value)
}

/// One job's figures locally and over the fabric, and their ratios
/// (fabric / local).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// In the target, on its disk.
    pub local: Figures,
    /// From the initiator, over NVMe/TCP.
    pub fabric: Figures,
    /// fabric / local IOPS (below 1: the fabric is slower).
    pub iops_ratio: f64,
    /// fabric / local median latency (above 1: the fabric is slower).
    pub p50_ratio: f64,
    /// fabric / local 99th percentile latency.
    pub p99_ratio: f64,
}

/// Pairs the local and fabric figures of each job, by name.
pub fn rows(local: &[Figures], fabric: &[Figures]) -> Vec<Row> {
    local
        .iter()
        .filter_map(|l| {
            let f = fabric.iter().find(|f| f.job == l.job)?;
            Some(Row {
                local: l.clone(),
                fabric: f.clone(),
                iops_ratio: ratio(f.iops, l.iops),
                p50_ratio: ratio(f.p50_us, l.p50_us),
                p99_ratio: ratio(f.p99_us, l.p99_us),
            })
        })
        .collect()
}

/// `a / b`, or 0 when `b` is 0 (nothing measured).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(job: &str, iops: f64, p50: f64) -> Figures {
        Figures {
            job: job.into(),
            iops,
            mib_per_sec: iops * 4.0 / 1024.0,
            p50_us: p50,
            p99_us: p50 * 2.0,
        }
    }

    #[test]
    fn rows_pair_jobs_by_name() {
        let local = [figures("a", 1000.0, 100.0), figures("b", 500.0, 10.0)];
        let fabric = [figures("b", 250.0, 40.0), figures("a", 500.0, 300.0)];
        let rows = rows(&local, &fabric);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local.job, "a");
        assert_eq!(rows[0].iops_ratio, 0.5);
        assert_eq!(rows[0].p50_ratio, 3.0);
        assert_eq!(rows[1].p99_ratio, 4.0);
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }

    #[test]
    fn job_names_are_unique() {
        let mut names: Vec<&str> = JOBS.iter().map(|j| j.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), JOBS.len());
    }
}
