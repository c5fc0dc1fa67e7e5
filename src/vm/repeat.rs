//! `vm run` again and again: a soak (every run's cases tallied) and a
//! benchmark (each run's times sampled, then one boot for the data path,
//! control path and scale, see [`super::workload`]).

use crate::bench::{BenchRecord, Medians, Sample};
use crate::soak::Soak;
use crate::suite::report::Report;

use super::run_dir::RunDir;
use super::runner::{absolute, clock_check, OutputSink, RunOptions, Runner, RunnerError};
use super::workload::WorkloadParams;

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

    /// `vm bench`: `runs` runs of `basic`, each sampled, then one boot
    /// for the guest halves; a failed run, or one whose guest clock ran
    /// fast, ends the benchmark (it measures nothing). Writes `bench.json`
    /// into `opts.out`.
    pub async fn bench(
        &self,
        opts: &RunOptions,
        runs: u32,
        params: WorkloadParams,
        output: OutputSink<'_>,
    ) -> Result<BenchRecord, RunnerError> {
        let mut samples = Vec::new();
        for i in 1..=runs {
            self.progress
                .say(format!("bench: run {i} of {runs} of basic"));
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
            let ready = outcome.ready.as_secs_f64();
            let sample = Sample::new(&report, "basic", ready, rss).ok_or_else(|| {
                RunnerError::Invalid(format!(
                    "{} has no basic category with a fio step",
                    path.display()
                ))
            })?;
            samples.push(sample);
        }
        self.progress
            .say("bench: one boot for the data path, control path and scale");
        let prepared = self.prepare().await?;
        let out = absolute(&opts.out)?;
        let dir = RunDir::fresh(out.join("workload")).map_err(|source| RunnerError::Phase {
            phase: "boot",
            source,
        })?;
        let w = self.workload(&prepared, &dir, params).await?;
        let record = BenchRecord {
            schema: crate::bench::record::SCHEMA,
            profile: crate::BUILD_PROFILE.into(),
            accel: prepared.accel.name().into(),
            medians: Medians::of(&samples),
            runs: samples,
            data_path: w.data_path,
            control: w.control,
            scale: w.scale,
        };
        record
            .write(&out)
            .map_err(|e| RunnerError::Invalid(e.to_string()))?;
        Ok(record)
    }
}
