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
//!                                               "error", "fio": FioSummary|null,
//!                                               "note": string|null } ] } ] } ],
//!   "state": DataSet | null }          // absent in older reports: null
//! ```
//!
//! `DataSet` (`nvmfcheck::suite::state::DataSet`) is what the run's last
//! category left on the target's disk for the next (basic's `data-set`
//! case; io's `state-from-basic` reads it back):
//!
//! ```text
//! { "disk": "aio:///dev/vdb",           // the bdev that holds it
//!   "offset": u64, "size": u64,         // the range, in bytes
//!   "job": { "name": "dataset", "rw": "randwrite", "bs": 4096,
//!            "iodepth": 8, "verify": "crc32c" },  // the fio job that wrote it
//!   "sha256": string }                  // of the range, read with O_DIRECT
//! ```
//!
//! `FioSummary` is `nvmfcheck::fio::FioSummary` serialized: per job, IOPS,
//! bandwidth, p50/p99 latency and errors for reads and writes.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use crate::fio::{FioSummary, IoStats, EILSEQ};

use super::state::DataSet;

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
    /// The data set the target's disk holds at the end of the run: the one
    /// a case of the last category that ran left, if it left one.
    #[serde(default)]
    pub state: Option<DataSet>,
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
    /// What the step observed beyond passing, e.g. how long I/O stalled.
    #[serde(default)]
    pub note: Option<String>,
}

/// Width of the step column of [`Report::fio_table`].
const STEP_WIDTH: usize = 48;

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

    /// One report of several runs against different targets (the QEMU
    /// runner boots once for each agent setup): their categories in
    /// order; passed only if every part passed; timed from the first
    /// start over the sum of their durations. `None` without parts.
    pub fn merge(parts: Vec<Report>) -> Option<Report> {
        let mut parts = parts.into_iter();
        let mut all = parts.next()?;
        for part in parts {
            if part.status != Status::Passed {
                all.status = part.status;
            }
            all.error = all.error.or(part.error);
            if !all.target.split(", ").any(|t| t == part.target) {
                all.target = format!("{}, {}", all.target, part.target);
            }
            all.duration_secs += part.duration_secs;
            all.categories.extend(part.categories);
            all.state = part.state.or(all.state);
        }
        Some(all)
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

    /// A table of every step that ran fio, one row each: case, step, IOPS
    /// and bandwidth (reads and writes of all its jobs together), the
    /// worst job's median and 99th percentile completion latency, and how
    /// many jobs ended in a verify error or another error. `None` when no
    /// step ran fio.
    pub fn fio_table(&self) -> Option<String> {
        let rows: Vec<[String; 7]> = self
            .categories
            .iter()
            .flat_map(|cat| cat.cases.iter().map(move |case| (cat, case)))
            .flat_map(|(cat, case)| {
                case.steps.iter().filter_map(move |step| {
                    let fio = step.fio.as_ref()?;
                    Some(fio_row(&format!("{}/{}", cat.name, case.name), step, fio))
                })
            })
            .collect();
        if rows.is_empty() {
            return None;
        }
        let header = [
            "case", "step", "IOPS", "MiB/s", "p50 ms", "p99 ms", "errors",
        ]
        .map(String::from);
        let mut widths = [0; 7];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 7]| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (cell, w))| {
                    if i < 2 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string() + "\n"
        };
        Some(std::iter::once(&header).chain(&rows).map(line).collect())
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
                        let note = s
                            .note
                            .as_ref()
                            .map(|n| format!("    {n}\n"))
                            .unwrap_or_default();
                        let fio = s
                            .fio
                            .as_ref()
                            .map(|f| {
                                let [_, _, iops, mib, p50, p99, errors] = fio_row("", s, f);
                                format!(
                                    "    fio: {iops} IOPS, {mib} MiB/s, p50 {p50} ms, \
                                     p99 {p99} ms, errors {errors}\n"
                                )
                            })
                            .unwrap_or_default();
                        format!(
                            "{} ...{verdict} ({:.2} seconds)\n{fio}{note}",
                            s.name, s.duration_secs
                        )
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

/// One row of [`Report::fio_table`] (also the fio line of a step in
/// JUnit).
fn fio_row(case: &str, step: &StepReport, fio: &FioSummary) -> [String; 7] {
    let dirs = || fio.jobs.iter().flat_map(|j| [&j.read, &j.write]);
    let sum = |f: fn(&IoStats) -> f64| dirs().map(f).sum::<f64>();
    let worst = |f: fn(&IoStats) -> u64| {
        // A verify-only job counts the writes it skips in io_bytes, with no
        // samples and nonsense percentiles: only directions that did I/O count.
        let ns = dirs().filter(|d| d.iops > 0.0).map(f).max().unwrap_or(0);
        ns as f64 / 1e6
    };
    let verify = fio.jobs.iter().filter(|j| j.error == EILSEQ).count();
    let other = fio
        .jobs
        .iter()
        .filter(|j| j.error != 0 && j.error != EILSEQ)
        .count();
    let errors = match (verify, other) {
        (0, 0) => "0".to_string(),
        (v, 0) => format!("{v} verify"),
        (0, o) => format!("{o} I/O"),
        (v, o) => format!("{v} verify, {o} I/O"),
    };
    let name = step.name.strip_prefix("should ").unwrap_or(&step.name);
    let name = if name.chars().count() > STEP_WIDTH {
        let cut: String = name.chars().take(STEP_WIDTH - 3).collect();
        format!("{cut}...")
    } else {
        name.to_string()
    };
    [
        case.to_string(),
        name,
        format!("{:.0}", sum(|d| d.iops)),
        format!("{:.1}", sum(|d| d.bw_bytes as f64) / f64::from(1 << 20)),
        format!("{:.2}", worst(|d| d.lat_p50_ns)),
        format!("{:.2}", worst(|d| d.lat_p99_ns)),
        errors,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fio::JobSummary;

    fn job(name: &str, error: i32, iops: f64, p99_ns: u64) -> JobSummary {
        let stats = IoStats {
            io_bytes: 1 << 20,
            iops,
            bw_bytes: (iops as u64) * 4096,
            lat_p50_ns: p99_ns / 2,
            lat_p99_ns: p99_ns,
        };
        // As fio reports the writes a verify-only job skips.
        let skipped = IoStats {
            io_bytes: 1 << 20,
            lat_p50_ns: 17_112_760_320,
            lat_p99_ns: 17_112_760_320,
            ..IoStats::default()
        };
        JobSummary {
            name: name.into(),
            error,
            read: stats,
            write: skipped,
        }
    }

    fn report(steps: Vec<StepReport>) -> Report {
        Report {
            schema: SCHEMA,
            status: Status::Passed,
            error: None,
            target: String::new(),
            started_unix: 0,
            duration_secs: 1.0,
            versions: Versions::default(),
            categories: vec![CategoryReport {
                name: "io".into(),
                status: Status::Passed,
                reason: None,
                duration_secs: 1.0,
                cases: vec![CaseReport {
                    name: "reset".into(),
                    status: Status::Passed,
                    duration_secs: 1.0,
                    error: None,
                    steps,
                }],
            }],
            state: None,
        }
    }

    fn step(name: &str, fio: Option<FioSummary>) -> StepReport {
        StepReport {
            name: name.into(),
            status: Status::Passed,
            duration_secs: 1.0,
            error: None,
            fio,
            note: Some("longest I/O stall 2.1 s".into()),
        }
    }

    #[test]
    fn merged_parts_keep_every_category_and_the_worst_status() {
        let mut first = report(vec![]);
        first.target = "192.168.1.2:10124".into();
        let mut second = report(vec![]);
        second.target = "192.168.1.2:10125".into();
        second.categories[0].name = "security".into();
        second.status = Status::Failed;
        let merged = Report::merge(vec![first.clone(), second, first]).unwrap();
        let names: Vec<&str> = merged.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["io", "security", "io"]);
        assert_eq!(merged.status, Status::Failed);
        assert_eq!(merged.target, "192.168.1.2:10124, 192.168.1.2:10125");
        assert_eq!(merged.duration_secs, 3.0);
        assert!(Report::merge(Vec::new()).is_none());
    }

    #[test]
    fn the_fio_table_has_a_row_per_fio_step() {
        let fio = FioSummary {
            jobs: vec![
                job("a", 0, 300.0, 2_000_000),
                job("b", EILSEQ, 200.0, 5_000_000),
                job("c", 5, 100.0, 1_000_000),
            ],
            fio_version: "fio-3.33".into(),
            elapsed: Duration::from_secs(1),
            command_line: "fio".into(),
        };
        let r = report(vec![
            step("should connect", None),
            step("should verify while the controller resets", Some(fio)),
        ]);
        let table = r.fio_table().unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("case") && lines[0].ends_with("errors"));
        let row = lines[1];
        assert!(
            row.starts_with("io/reset  verify while the controller resets"),
            "{row}"
        );
        // 600 IOPS of 4 KiB, the worst job's latencies, both kinds of error.
        for cell in ["600", "2.3", "2.50", "5.00", "1 verify, 1 I/O"] {
            assert!(row.contains(cell), "{cell} not in {row}");
        }
        assert!(report(vec![step("x", None)]).fio_table().is_none());
        let xml = r.junit().to_string().unwrap();
        assert!(
            xml.contains(
                "fio: 600 IOPS, 2.3 MiB/s, p50 2.50 ms, p99 5.00 ms, errors 1 verify, 1 I/O"
            ),
            "{xml}"
        );
    }

    #[test]
    fn a_report_without_notes_still_loads() {
        let r = report(vec![step("x", None)]);
        let mut json = serde_json::to_value(&r).unwrap();
        let steps = &mut json["categories"][0]["cases"][0]["steps"][0];
        steps.as_object_mut().unwrap().remove("note");
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.categories[0].cases[0].steps[0].note, None);
        let xml = r.junit().to_string().unwrap();
        assert!(xml.contains("longest I/O stall 2.1 s"), "{xml}");
    }
}
