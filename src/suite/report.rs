//! The run's reports: `report.json` (schema below) and JUnit XML.
//!
//! `report.json`, schema version 1:
//!
//! ```text
//! { "schema": 1,
//!   "status": "passed" | "failed",
//!   "error": string | null,            // why the run could not start, if so
//!   "target": "192.168.1.2:10124",
//!   "started_unix": u64, "duration_secs": f64,
//!   "versions": { "nvmfcheck", "kernel", "fio", "nvme_cli" },   // strings
//!   "categories": [ { "name", "status": "passed"|"failed"|"skipped",
//!                     "reason": string|null,  // why it was skipped
//!                     "duration_secs",
//!                     "cases": [ { "name", "status", "duration_secs", "error",
//!                                  "steps": [ { "name", "status", "duration_secs",
//!                                               "error", "fio": FioSummary|null } ] } ] } ] }
//! ```
//!
//! `FioSummary` is `nvmfcheck::fio::FioSummary` serialized: per job, IOPS,
//! bandwidth, p50/p99 latency and errors for reads and writes.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use crate::fio::FioSummary;

/// The schema version written into `report.json`.
pub const SCHEMA: u32 = 1;

/// Outcome of a step, case, category or run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran and held.
    Passed,
    /// Ran and did not hold.
    Failed,
    /// Did not run (a dependency failed or it was filtered out).
    Skipped,
}

/// One run of `nvmfcheck run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Passed only if no category failed and at least one ran.
    pub status: Status,
    /// Why the run could not start, if it could not.
    pub error: Option<String>,
    /// The target's gRPC address.
    pub target: String,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Versions of the parts under test.
    pub versions: Versions,
    /// The categories, in the order they ran.
    pub categories: Vec<CategoryReport>,
}

/// Versions of the software a run used, as each program reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Versions {
    /// This program.
    pub nvmfcheck: String,
    /// The initiator's kernel release (`uname -r`).
    pub kernel: String,
    /// `fio --version`.
    pub fio: String,
    /// `nvme version`.
    pub nvme_cli: String,
}

/// One category's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoryReport {
    /// Category name.
    pub name: String,
    /// Failed if any case failed; skipped if none ran.
    pub status: Status,
    /// Why it was skipped.
    pub reason: Option<String>,
    /// Wall time.
    pub duration_secs: f64,
    /// Its cases, in order.
    pub cases: Vec<CaseReport>,
}

/// One case's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    /// Case name.
    pub name: String,
    /// Failed if any step (cleanup included) failed.
    pub status: Status,
    /// Wall time, cleanup included.
    pub duration_secs: f64,
    /// The first failure's message.
    pub error: Option<String>,
    /// Its steps, cleanup steps last.
    pub steps: Vec<StepReport>,
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's sentence, e.g. `should be able to discover the target`.
    pub name: String,
    /// Passed or failed.
    pub status: Status,
    /// Wall time.
    pub duration_secs: f64,
    /// The failure's message.
    pub error: Option<String>,
    /// fio's summary, for fio steps.
    pub fio: Option<FioSummary>,
}

/// Why a report could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a report of this schema.
    #[error("{path} is not an nvmfcheck report.json (schema {SCHEMA}): {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Report {
    /// Reads a `report.json`.
    pub fn load(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let report: Self = serde_json::from_str(&text).map_err(|e| ReportError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if report.schema != SCHEMA {
            return Err(ReportError::Format {
                path: path.display().to_string(),
                reason: format!("it has schema {}", report.schema),
            });
        }
        Ok(report)
    }

    /// The category called `name`, if the report has it.
    pub fn category(&self, name: &str) -> Option<&CategoryReport> {
        self.categories.iter().find(|c| c.name == name)
    }

    /// Counts of passed, failed and skipped cases.
    pub fn counts(&self) -> (usize, usize, usize) {
        let cases = self.categories.iter().flat_map(|c| &c.cases);
        let count = |s| cases.clone().filter(|c| c.status == s).count();
        let skipped_categories: usize = self
            .categories
            .iter()
            .filter(|c| c.status == Status::Skipped && c.cases.is_empty())
            .count();
        (
            count(Status::Passed),
            count(Status::Failed),
            count(Status::Skipped) + skipped_categories,
        )
    }

    /// Writes `report.json` and `junit.xml` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ReportError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let json = dir.join("report.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| ReportError::Format {
            path: json.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(&json, text + "\n").map_err(io(&json))?;
        let xml = dir.join("junit.xml");
        let text = self.junit().to_string().map_err(|e| ReportError::Format {
            path: xml.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(&xml, text).map_err(io(&xml))
    }

    /// The report as JUnit XML: a test suite per category, a test case per
    /// case, its steps as the case's output.
    pub fn junit(&self) -> quick_junit::Report {
        let mut junit = quick_junit::Report::new("nvmfcheck");
        junit.set_time(Duration::from_secs_f64(self.duration_secs));
        for cat in &self.categories {
            let mut suite = TestSuite::new(cat.name.as_str());
            suite.set_time(Duration::from_secs_f64(cat.duration_secs));
            if cat.cases.is_empty() && cat.status == Status::Skipped {
                let mut status = TestCaseStatus::skipped();
                status.set_message(cat.reason.clone().unwrap_or_default());
                suite.add_test_case(TestCase::new(cat.name.as_str(), status));
            }
            for case in &cat.cases {
                let mut status = match case.status {
                    Status::Passed => TestCaseStatus::success(),
                    Status::Failed => TestCaseStatus::non_success(NonSuccessKind::Failure),
                    Status::Skipped => TestCaseStatus::skipped(),
                };
                if let Some(error) = case.error.as_ref().or(cat.reason.as_ref()) {
                    status.set_message(error.as_str());
                }
                let mut tc = TestCase::new(case.name.as_str(), status);
                tc.set_classname(cat.name.as_str());
                tc.set_time(Duration::from_secs_f64(case.duration_secs));
                let steps: String = case
                    .steps
                    .iter()
                    .map(|s| {
                        let verdict = if s.status == Status::Passed {
                            ""
                        } else {
                            " FAILED"
                        };
                        format!("{} ...{verdict} ({:.2} seconds)\n", s.name, s.duration_secs)
                    })
                    .collect();
                tc.set_system_out(steps);
                suite.add_test_case(tc);
            }
            junit.add_test_suite(suite);
        }
        junit
    }
}
