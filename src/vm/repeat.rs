//! `vm run` again and again: a soak (every run's cases tallied) and a
//! benchmark (each run's times sampled).

use crate::bench::Sample;
use crate::soak::Soak;
use crate::suite::report::Report;

use super::runner::{clock_check, OutputSink, RunOptions, Runner, RunnerError};

/// What a soak found.
#[derive(Debug)]
pub struct SoakResult {
    /// Each case's passes and median time (see [`Soak::table`]).
    pub table: String,
    /// Whether every run passed every case.
    pub all_green: bool,
}

impl Runner {
    /// `vm run --repeat N`: `repeat` runs one after another, each into
    /// `run-K` under `opts.out`, a failed run not stopping the next.
    pub async fn soak(
        &self,
        opts: &RunOptions,
        repeat: u32,
        output: OutputSink<'_>,
    ) -> Result<SoakResult, RunnerError> {
        let mut tally = Soak::new();
        for i in 1..=repeat {
            self.progress.say(format!("soak: run {i} of {repeat}"));
            let run = RunOptions {
                out: opts.out.join(format!("run-{i}")),
                ..opts.clone()
            };
            let outcome = match self.run(&run, output).await {
                Ok(outcome) => outcome,
                Err(e @ RunnerError::Interrupted { .. }) => return Err(e),
                Err(e) => {
                    self.progress.say(format!("soak: run {i} failed: {e}"));
                    tally.add_unreported(i, e.to_string());
                    continue;
                }
            };
            match Report::load(&run.out.join("report.json")) {
                Ok(report) => tally.add(i, &report, outcome.code == 0),
                Err(e) => tally.add_unreported(i, e.to_string()),
            }
        }
        Ok(SoakResult {
            table: tally.table(),
            all_green: tally.all_green(),
        })
    }

    /// `vm bench`: `runs` runs of `basic`, each sampled; a failed run, or
    /// one whose guest clock ran fast, ends the benchmark (it measures
    /// nothing).
    pub async fn bench(
        &self,
        opts: &RunOptions,
        runs: u32,
        output: OutputSink<'_>,
    ) -> Result<Vec<Sample>, RunnerError> {
        let mut samples = Vec::new();
        for i in 1..=runs {
            self.progress.say(format!("bench: run {i} of {runs}"));
            let run = RunOptions {
                categories: vec!["basic".into()],
                out: opts.out.join(format!("run-{i}")),
                filter: None,
                ..opts.clone()
            };
            let outcome = self.run(&run, output).await?;
            if outcome.code != 0 {
                return Err(RunnerError::Invalid(format!(
                    "run {i}: basic failed (exit {}); a failed run measures nothing: see {}",
                    outcome.code,
                    run.out.display()
                )));
            }
            let path = run.out.join("report.json");
            let report = Report::load(&path)?;
            if let Some(warning) = clock_check(report.duration_secs, outcome.checks) {
                return Err(RunnerError::Invalid(format!("run {i}: {warning}")));
            }
            let rss = (outcome.rss_of("target"), outcome.rss_of("initiator"));
            let sample = Sample::new(&report, "basic", outcome.ready, rss).ok_or_else(|| {
                RunnerError::Invalid(format!(
                    "{} has no basic category with a fio step",
                    path.display()
                ))
            })?;
            samples.push(sample);
        }
        Ok(samples)
    }
}
