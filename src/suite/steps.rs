//! Recording and printing the steps of a case.
//!
//! Each step prints its name when it starts (so a long fio run shows what
//! is going on) and its time when it ends, like the NixOS test driver did:
//! `should be able to discover the target ... (0.05 seconds)`.

use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::client::ClientError;
use crate::cmd::CmdError;
use crate::error_chain::chain;
use crate::fio::{self, FioError, FioJob, FioSummary};
use crate::nvme::NvmeError;

use super::report::{Status, StepReport};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A gRPC call to the target failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An nvme-cli operation failed.
    #[error(transparent)]
    Nvme(#[from] NvmeError),
    /// fio failed or found a verify error.
    #[error(transparent)]
    Fio(#[from] FioError),
    /// Another program failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// What the step expected did not hold.
    #[error("{0}")]
    Failed(String),
    /// The target cannot do what the case checks (a kernel feature it
    /// lacks): the case is skipped, saying why, rather than failed.
    #[error("{0}")]
    Unsupported(String),
}

/// Fails the step with `msg` unless `cond` holds.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), CheckError> {
    if cond {
        Ok(())
    } else {
        Err(CheckError::Failed(msg()))
    }
}

/// The steps of one case, as they run.
#[derive(Debug, Default)]
pub struct Steps {
    records: Vec<StepReport>,
    prefix: &'static str,
}

impl Steps {
    /// An empty record; `prefix` is put before every step name (used for
    /// cleanup steps).
    pub fn new(prefix: &'static str) -> Self {
        Self {
            records: Vec::new(),
            prefix,
        }
    }

    /// Runs one named step and records its outcome and time.
    pub async fn run<T, F>(&mut self, name: &str, step: F) -> Result<T, CheckError>
    where
        F: Future<Output = Result<T, CheckError>>,
    {
        let name = format!("{}{name}", self.prefix);
        let start = begin(&name);
        let result = step.await;
        self.finish(name, start.elapsed(), result.as_ref().err(), None);
        result
    }

    /// Runs fio as one named step; its summary goes into the report even
    /// when verification failed.
    pub async fn fio(
        &mut self,
        name: &str,
        jobs: &[FioJob],
        timeout: Duration,
    ) -> Result<FioSummary, CheckError> {
        self.run_fio(name, async {
            let result = fio::run(jobs, timeout).await;
            let summary = fio_summary(&result);
            (result.map_err(CheckError::from), summary)
        })
        .await
    }

    /// Runs one named step that runs fio among other things (a fault while
    /// it runs, say): `step` gives the step's result and fio's summary,
    /// which goes into the report whether the step passed or not.
    pub async fn run_fio<T, F>(&mut self, name: &str, step: F) -> Result<T, CheckError>
    where
        F: Future<Output = (Result<T, CheckError>, Option<FioSummary>)>,
    {
        let name = format!("{}{name}", self.prefix);
        let start = begin(&name);
        let (result, summary) = step.await;
        self.finish(name, start.elapsed(), result.as_ref().err(), summary);
        result
    }

    /// Adds what the last step observed (e.g. how long I/O stalled) to its
    /// record, and prints it under the step.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("      {text}");
        if let Some(last) = self.records.last_mut() {
            last.note = Some(match last.note.take() {
                Some(before) => format!("{before}; {text}"),
                None => text,
            });
        }
    }

    fn finish(
        &mut self,
        name: String,
        took: Duration,
        error: Option<&CheckError>,
        fio: Option<FioSummary>,
    ) {
        let secs = took.as_secs_f64();
        let error = error.map(|e| chain(e));
        match &error {
            None => println!(" ({secs:.2} seconds)"),
            Some(e) => {
                println!(" FAILED ({secs:.2} seconds)");
                for line in e.lines() {
                    println!("      {line}");
                }
            }
        }
        self.records.push(StepReport {
            name,
            status: if error.is_some() {
                Status::Failed
            } else {
                Status::Passed
            },
            duration_secs: secs,
            error,
            fio,
            note: None,
        });
    }

    /// The recorded steps.
    pub fn into_records(self) -> Vec<StepReport> {
        self.records
    }
}

/// fio's summary from a run's result, when it got far enough to print one.
pub fn fio_summary(result: &Result<FioSummary, FioError>) -> Option<FioSummary> {
    match result {
        Ok(s) => Some(s.clone()),
        Err(e) => e.summary().cloned(),
    }
}

fn begin(name: &str) -> Instant {
    print!("    {name} ...");
    // The name shows while a long step runs; a failed flush only delays it.
    let _ = std::io::stdout().flush();
    Instant::now()
}
