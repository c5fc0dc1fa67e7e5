//! The soak: the same categories run several times in a row, optionally
//! with one host core kept busy, and per case how many runs it passed and
//! its median time. A check that passes only on a fast or an idle host
//! shows here as a case short of N out of N.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::bench::median;
use crate::suite::report::{Report, Status};

/// Per case, over the runs of a soak.
#[derive(Debug, Default, Clone, PartialEq)]
struct CaseTally {
    /// Runs in which the case passed.
    passed: u32,
    /// Runs in which it ran and failed.
    failed: u32,
    /// Its wall time in each run in which it ran, in seconds.
    secs: Vec<f64>,
    /// The first failure's message, with its run number.
    first_failure: Option<(u32, String)>,
    /// Runs in which it was skipped (the target could not do what it
    /// checks), and the first reason.
    skipped: u32,
    skip_reason: Option<String>,
}

/// What a soak saw, run by run.
#[derive(Debug, Default)]
pub struct Soak {
    runs: u32,
    /// Runs whose checks exited 0.
    green: u32,
    /// Runs that ended without a report (boot failed, interrupted).
    unreported: Vec<(u32, String)>,
    /// Keyed `category/case`, in name order.
    cases: BTreeMap<String, CaseTally>,
}

impl Soak {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds run number `run` (from 1), given its report and whether the
    /// run as a whole passed.
    pub fn add(&mut self, run: u32, report: &Report, passed: bool) {
        self.runs += 1;
        self.green += u32::from(passed);
        for cat in &report.categories {
            for case in &cat.cases {
                let t = self
                    .cases
                    .entry(format!("{}/{}", cat.name, case.name))
                    .or_default();
                match case.status {
                    Status::Passed => t.passed += 1,
                    Status::Failed => t.failed += 1,
                    Status::Skipped => {
                        t.skipped += 1;
                        t.skip_reason = t.skip_reason.take().or_else(|| case.error.clone());
                        continue;
                    }
                }
                t.secs.push(case.duration_secs);
                if case.status == Status::Failed && t.first_failure.is_none() {
                    let why = case.error.clone().unwrap_or_else(|| "failed".into());
                    t.first_failure = Some((run, why));
                }
            }
        }
    }

    /// Adds run number `run`, which ended without a report, and why.
    pub fn add_unreported(&mut self, run: u32, why: String) {
        self.runs += 1;
        self.unreported.push((run, why));
    }

    /// Whether every run passed.
    pub fn all_green(&self) -> bool {
        self.green == self.runs
    }

    /// The table: a row per case with `passed/runs` and the median time of
    /// the runs it ran in, then each case's first failure and each run
    /// that left no report, and a closing count of runs.
    pub fn table(&self) -> String {
        let width = self.cases.keys().map(String::len).max().unwrap_or(4).max(4);
        let mut out = format!("{:<width$}  {:>7}  {:>8}\n", "case", "passed", "median_s");
        for (name, t) in &self.cases {
            let ratio = format!("{}/{}", t.passed, self.runs);
            let med = median(t.secs.clone());
            out += &format!("{name:<width$}  {ratio:>7}  {med:>8.2}\n");
        }
        for (name, t) in &self.cases {
            if let Some((run, why)) = &t.first_failure {
                out += &format!(
                    "{name} failed in {} of {} runs, first in run {run}: {why}\n",
                    t.failed, self.runs
                );
            }
        }
        for (name, t) in &self.cases {
            if t.skipped > 0 {
                let why = t.skip_reason.as_deref().unwrap_or("no reason given");
                out += &format!(
                    "{name} skipped in {} of {} runs: {why}\n",
                    t.skipped, self.runs
                );
            }
        }
        for (run, why) in &self.unreported {
            out += &format!("run {run} left no report: {why}\n");
        }
        out + &format!(
            "runs: {} passed, {} failed\n",
            self.green,
            self.runs - self.green
        )
    }
}

/// Keeps one host core busy until dropped: a thread that spins, as a
/// compiler or another VM on a shared CI host would.
#[derive(Debug)]
pub struct BusyCore {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BusyCore {
    /// Starts spinning.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut x: u64 = 0;
            while !flag.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::report::{CaseReport, CategoryReport};

    fn report(cases: &[(&str, Status, f64)]) -> Report {
        let mut r: Report = serde_json::from_str(
            r#"{"schema":1,"status":"passed","target":"t","started_unix":0,"duration_secs":0,
                "versions":{"nvmfcheck":"","kernel":"","fio":"","nvme_cli":""},"categories":[]}"#,
        )
        .unwrap();
        r.categories.push(CategoryReport {
            name: "io".into(),
            status: Status::Passed,
            reason: None,
            duration_secs: 0.0,
            cases: cases
                .iter()
                .map(|(name, status, secs)| CaseReport {
                    name: (*name).into(),
                    status: *status,
                    duration_secs: *secs,
                    error: (*status == Status::Failed).then(|| format!("{name} broke")),
                    steps: vec![],
                })
                .collect(),
        });
        r
    }

    #[test]
    fn counts_passes_and_medians_per_case() {
        let mut soak = Soak::new();
        soak.add(
            1,
            &report(&[("a", Status::Passed, 2.0), ("b", Status::Passed, 5.0)]),
            true,
        );
        soak.add(
            2,
            &report(&[("a", Status::Passed, 4.0), ("b", Status::Failed, 1.0)]),
            false,
        );
        soak.add(
            3,
            &report(&[("a", Status::Passed, 3.0), ("b", Status::Skipped, 0.0)]),
            false,
        );
        soak.add_unreported(4, "boot timed out".into());
        let t = soak.table();
        assert!(!soak.all_green());
        assert!(t.contains("\nio/a      3/4      3.00\n"), "{t}");
        assert!(t.contains("\nio/b      1/4      3.00\n"), "{t}");
        assert!(
            t.contains("io/b failed in 1 of 4 runs, first in run 2: b broke"),
            "{t}"
        );
        assert!(
            t.contains("io/b skipped in 1 of 4 runs: no reason given"),
            "{t}"
        );
        assert!(!t.contains("io/a skipped"), "{t}");
        assert!(t.contains("run 4 left no report: boot timed out"), "{t}");
        assert!(t.ends_with("runs: 1 passed, 3 failed\n"), "{t}");
    }

    #[test]
    fn all_green_only_when_every_run_passed() {
        let mut soak = Soak::new();
        soak.add(1, &report(&[("a", Status::Passed, 1.0)]), true);
        assert!(soak.all_green());
        soak.add_unreported(2, "x".into());
        assert!(!soak.all_green());
    }
}
