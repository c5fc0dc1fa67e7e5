//! What a check run reports as it goes: an [`Event`] for each category,
//! case and step that starts or ends. The library prints nothing; the
//! command line shows the events and the report is collected from them.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use crate::fio::FioSummary;

use super::report::{Status, Versions};
use super::state::DataSet;

/// One thing that happened in a run, in the order it happened. Step
/// events belong to the case last started, cases to the category last
/// started. As JSON (`nvmfcheck run --progress json`) the variant's name
/// in snake case is the `event` field, beside the variant's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A category does not run: a dependency did not pass, or no case
    /// matches the filter.
    CategorySkipped {
        /// Category name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A category starts.
    CategoryStarted {
        /// Category name.
        name: String,
        /// What it proves.
        about: String,
        /// How many of its cases run.
        cases: usize,
    },
    /// A case starts.
    CaseStarted {
        /// Case name.
        name: String,
        /// What it proves.
        about: String,
    },
    /// A step starts; a long one (fio) runs for a while before it ends.
    StepStarted {
        /// The step's sentence; cleanup steps start with `cleanup: `.
        name: String,
    },
    /// The step last started ended.
    StepEnded {
        /// The step's sentence, as it started.
        name: String,
        /// Passed or failed.
        status: Status,
        /// Wall time.
        duration_secs: f64,
        /// Why it failed, with its causes.
        error: Option<String>,
        /// fio's summary, for a step that ran fio.
        fio: Option<FioSummary>,
    },
    /// What the step last ended observed beyond passing, e.g. how long I/O
    /// stalled.
    StepNote {
        /// The observation.
        text: String,
    },
    /// The case running left a data set on the target's disk for a later
    /// category to read (see [`crate::suite::state`]).
    StateLeft {
        /// What it left.
        state: DataSet,
    },
    /// A case ended, its cleanup included.
    CaseEnded {
        /// Case name.
        name: String,
        /// Skipped when the target cannot do what it checks.
        status: Status,
        /// Wall time, cleanup included.
        duration_secs: f64,
        /// The first failure, or why it was skipped.
        error: Option<String>,
    },
    /// A category that started ended.
    CategoryEnded {
        /// Category name.
        name: String,
        /// Passed if no case failed and one passed.
        status: Status,
        /// Wall time.
        duration_secs: f64,
    },
    /// The run ended; the last event.
    RunEnded {
        /// Passed if every category passed.
        status: Status,
        /// The target's gRPC address.
        target: String,
        /// When the run started, seconds since the Unix epoch.
        started_unix: u64,
        /// Wall time.
        duration_secs: f64,
        /// Versions of what the run used.
        versions: Versions,
    },
}

/// Where the runner and the steps send events, in order; the run reads
/// them at the other end.
#[derive(Debug, Clone)]
pub(super) struct Events(pub(super) UnboundedSender<Event>);

impl Events {
    /// Sends `event`. The receiving end lives as long as the run, so a
    /// send cannot fail while anyone listens.
    pub(super) fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }
}
