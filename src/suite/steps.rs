//! Running the steps of a case.
//!
//! Each step sends an event when it starts (so a long fio run shows what
//! is going on) and one with its outcome and time when it ends; the
//! command line shows them like the NixOS test driver did:
//! `should be able to discover the target ... (0.05 seconds)`.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::client::ClientError;
use crate::cmd::CmdError;
use crate::error_chain::chain;
use crate::fio::{self, FioError, FioJob, FioSummary};
use crate::nvme::NvmeError;

use super::event::{Event, Events};
use super::report::Status;
use super::state::DataSet;
use super::Env;

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

/// The steps of one case, as they run: each sends an event when it starts
/// and when it ends.
#[derive(Debug)]
pub struct Steps {
    prefix: &'static str,
    events: Events,
}

impl Steps {
    /// Steps that send their events to `events`; `prefix` is put before
    /// every step name (used for cleanup steps).
    pub(super) fn new(prefix: &'static str, events: Events) -> Self {
        Self { prefix, events }
    }

    /// Runs one named step and reports its outcome and time.
    pub async fn run<T, F>(&mut self, name: &str, step: F) -> Result<T, CheckError>
    where
        F: Future<Output = Result<T, CheckError>>,
    {
        let (name, start) = self.begin(name);
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
        let (name, start) = self.begin(name);
        let (result, summary) = step.await;
        self.finish(name, start.elapsed(), result.as_ref().err(), summary);
        result
    }

    /// Adds what the last step observed (e.g. how long I/O stalled) to its
    /// report.
    pub fn note(&mut self, text: impl Into<String>) {
        self.events.send(Event::StepNote { text: text.into() });
    }

    /// Records that the target's disk now holds `state`: the run's later
    /// cases and the report (`state`) know of it.
    pub(super) fn leave_state(&mut self, env: &Env, state: DataSet) {
        env.carried.set(Some(state.clone()));
        self.events.send(Event::StateLeft { state });
    }

    /// Says the step `name` starts (its name shows while a long step runs)
    /// and starts its clock.
    fn begin(&self, name: &str) -> (String, Instant) {
        let name = format!("{}{name}", self.prefix);
        self.events.send(Event::StepStarted { name: name.clone() });
        (name, Instant::now())
    }

    fn finish(
        &self,
        name: String,
        took: Duration,
        error: Option<&CheckError>,
        fio: Option<FioSummary>,
    ) {
        let status = if error.is_some() {
            Status::Failed
        } else {
            Status::Passed
        };
        self.events.send(Event::StepEnded {
            name,
            status,
            duration_secs: took.as_secs_f64(),
            error: error.map(|e| chain(e)),
            fio,
        });
    }
}

/// fio's summary from a run's result, when it got far enough to print one.
pub fn fio_summary(result: &Result<FioSummary, FioError>) -> Option<FioSummary> {
    match result {
        Ok(s) => Some(s.clone()),
        Err(e) => e.summary().cloned(),
    }
}
