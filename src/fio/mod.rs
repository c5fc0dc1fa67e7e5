//! fio as a typed job: build it, run it with `--output-format=json`, get a
//! parsed summary, and fail on any error — above all any verify error.
//!
//! ```no_run
//! # async fn f() -> Result<(), nvmfcheck::fio::FioError> {
//! use std::time::Duration;
//! use nvmfcheck::fio::{self, FioJob, Verify};
//!
//! let job = FioJob::verify_randrw("/dev/nvme0n1", 32 << 20)
//!     .bs(4096)
//!     .iodepth(1)
//!     .verify(Verify::Crc32);
//! let summary = fio::run(&[job], Duration::from_secs(120)).await?;
//! # Ok(()) }
//! ```
//!
//! Verify jobs are bounded by size, never by time: fio's `runtime` also cuts
//! the verify phase short, so a time-based verify job checks less than it
//! wrote and can pass without having verified anything. [`FioJob::validate`]
//! refuses that combination.
//!
//! Jobs are given as command-line options (one `--name` group per job), so no
//! job file is needed. fio runs with `--thread`: its jobs are threads of one
//! process, so killing it at its deadline stops every job; and with
//! `--verify_state_save=0`, so it leaves no state files in the current
//! directory.

mod job;
mod summary;

use std::time::Duration;

use crate::cmd::{Cmd, CmdError};

pub use job::{FioJob, Rw, Verify};
pub use summary::{FioSummary, IoStats, JobSummary};

/// fio's error number for a verify failure (EILSEQ), as in [`JobSummary::error`].
pub const EILSEQ: i32 = 84;

/// How much of fio's stderr an error message shows (the end of it).
const STDERR_SHOWN: usize = 4000;

/// What fio prints on stderr when a verify check fails (fio 3.33 `verify.c`).
const VERIFY_FAILURES: &[&str] = &[
    "verify failed at file",
    "verify: bad ",
    "got pattern",
    "bad pattern block",
    "verify type mismatch",
    "Bad verify type",
    "unknown verify header",
];

/// Why a fio job could not run or did not pass.
#[derive(Debug, thiserror::Error)]
pub enum FioError {
    /// The job is not valid; nothing was run.
    #[error("invalid fio job `{job}`: {reason}")]
    InvalidJob {
        /// The job's name.
        job: String,
        /// What is wrong and what to do instead.
        reason: String,
    },
    /// fio could not be started or did not finish within its deadline.
    #[error(transparent)]
    Command(#[from] CmdError),
    /// fio ran but the jobs did not pass: non-zero exit, a job error, or a
    /// verify error. fio's stderr (where verify errors are printed) and the
    /// parsed summary, when fio wrote one, come with it.
    #[error("`{command_line}` failed: {reason}{}", stderr_tail(.stderr))]
    Failed {
        /// The fio command line.
        command_line: String,
        /// What failed.
        reason: String,
        /// fio's stderr.
        stderr: String,
        /// The parsed summary, when fio printed one.
        summary: Option<Box<FioSummary>>,
    },
    /// fio exited successfully but its output could not be understood.
    #[error("cannot understand the output of `{command_line}`: {reason}; it began with: {head}")]
    Output {
        /// The fio command line.
        command_line: String,
        /// What did not parse.
        reason: String,
        /// The start of its stdout.
        head: String,
    },
}

impl FioError {
    /// fio's parsed summary, when it got far enough to print one.
    pub fn summary(&self) -> Option<&FioSummary> {
        match self {
            Self::Failed { summary, .. } => summary.as_deref(),
            _ => None,
        }
    }
}

fn stderr_tail(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return String::new();
    }
    let start = stderr
        .char_indices()
        .rev()
        .nth(STDERR_SHOWN)
        .map_or(0, |(i, _)| i);
    format!("\nfio's stderr:\n{}", &stderr[start..])
}

/// The fio command for `jobs`, validated (alone and against each other).
fn command(jobs: &[FioJob], timeout: Duration) -> Result<Cmd, FioError> {
    let invalid = |job: &FioJob, reason: String| FioError::InvalidJob {
        job: job.name.clone(),
        reason,
    };
    let Some(first) = jobs.first() else {
        return Err(FioError::InvalidJob {
            job: "-".into(),
            reason: "no job given".into(),
        });
    };
    first.validate()?;
    for (i, b) in jobs.iter().enumerate().skip(1) {
        b.validate()?;
        for a in &jobs[..i] {
            if a.name == b.name {
                return Err(invalid(
                    b,
                    "two jobs have this name: names must be unique".into(),
                ));
            }
            let (a0, a1) = a.region();
            let (b0, b1) = b.region();
            let overlap = a.filename == b.filename && a0 < b1 && b0 < a1;
            let verified = a.verify.is_some() || b.verify.is_some();
            if overlap && verified && (a.writes() || b.writes()) {
                return Err(invalid(
                    b,
                    format!(
                        "its region overlaps job `{}`'s on {} while one writes and one verifies: \
                         jobs of one run go at once, so verify would fail; give them distinct offsets",
                        a.name,
                        b.filename.display()
                    ),
                ));
            }
        }
    }
    jobs.iter().try_for_each(check_filename)?;
    Ok(Cmd::new("fio")
        // Without verify_state_save=0 a failed verify job leaves
        // `local-<job>-0-verify.state` in the current directory.
        .args([
            "--output-format=json",
            "--eta=never",
            "--thread",
            "--verify_state_save=0",
        ])
        .args(jobs.iter().flat_map(FioJob::args))
        .timeout(timeout))
}

/// fio creates a missing file, and missing directories too: refuse the cases
/// where that is a typo, so a mistyped device does not become a file in /dev.
fn check_filename(job: &FioJob) -> Result<(), FioError> {
    let path = &job.filename;
    if path.exists() {
        return Ok(());
    }
    let reason = if path.starts_with("/dev") {
        format!(
            "{} does not exist: fio would create a regular file in /dev instead of using a \
             device (is the namespace connected?)",
            path.display()
        )
    } else if path
        .parent()
        .is_some_and(|dir| !dir.as_os_str().is_empty() && !dir.is_dir())
    {
        format!(
            "the directory of {} does not exist (fio would create it): create it first",
            path.display()
        )
    } else {
        return Ok(());
    };
    Err(FioError::InvalidJob {
        job: job.name.clone(),
        reason,
    })
}

/// Runs `jobs` at once in one fio process and returns its summary.
///
/// Fails, with fio's stderr and the summary when there is one, if fio exits
/// non-zero, if any job reports an error, or — for a verify job — if fio
/// printed any verify error or the job read nothing back to verify.
pub async fn run(jobs: &[FioJob], timeout: Duration) -> Result<FioSummary, FioError> {
    let cmd = command(jobs, timeout)?;
    let command_line = cmd.cmdline();
    let out = cmd.output().await?;
    let parsed = summary::parse(&out.stdout, out.elapsed, command_line.clone());
    let failed = |reason: String, summary: Option<FioSummary>| FioError::Failed {
        command_line: command_line.clone(),
        reason,
        stderr: out.stderr.clone(),
        summary: summary.map(Box::new),
    };
    if out.code != Some(0) {
        let status = out
            .code
            .map_or_else(|| "a signal".to_string(), |c| format!("status {c}"));
        let reason = parsed
            .as_ref()
            .ok()
            .and_then(|s| job_problem(jobs, s, &out.stderr))
            .unwrap_or_else(|| format!("fio exited with {status}"));
        return Err(failed(reason, parsed.ok()));
    }
    let summary = parsed.map_err(|reason| FioError::Output {
        command_line: command_line.clone(),
        reason,
        head: out.stdout.chars().take(300).collect(),
    })?;
    match job_problem(jobs, &summary, &out.stderr) {
        Some(reason) => Err(failed(reason, Some(summary))),
        None => Ok(summary),
    }
}

/// The first reason the jobs did not pass, judged from the summary and stderr.
fn job_problem(jobs: &[FioJob], summary: &FioSummary, stderr: &str) -> Option<String> {
    let expected: u64 = jobs.iter().map(|j| u64::from(j.numjobs)).sum();
    if summary.jobs.len() as u64 != expected {
        return Some(format!(
            "fio reported {} jobs, {expected} were started",
            summary.jobs.len()
        ));
    }
    if let Some(j) = summary.jobs.iter().find(|j| j.error != 0) {
        let what = std::io::Error::from_raw_os_error(j.error);
        let verify = if j.error == EILSEQ {
            ", which is how fio reports a verify failure"
        } else {
            ""
        };
        return Some(format!(
            "job `{}` failed with error {} ({what}{verify})",
            j.name, j.error
        ));
    }
    let verifying: Vec<&FioJob> = jobs
        .iter()
        .filter(|j| j.verify.is_some() && (j.do_verify || j.verify_only))
        .collect();
    if verifying.is_empty() {
        return None;
    }
    if let Some(line) = stderr
        .lines()
        .find(|l| VERIFY_FAILURES.iter().any(|v| l.contains(v)))
    {
        return Some(format!("verify error: {}", line.trim()));
    }
    verifying.iter().find_map(|job| {
        let read: u64 = summary
            .jobs
            .iter()
            .filter(|s| s.name == job.name)
            .map(|s| s.read.io_bytes)
            .sum();
        (read == 0).then(|| {
            format!(
                "verify job `{}` read nothing back, so verified nothing",
                job.name
            )
        })
    })
}

/// fio's version as `fio --version` prints it, e.g. `fio-3.33`.
pub async fn version(timeout: Duration) -> Result<String, FioError> {
    let out = Cmd::new("fio")
        .arg("--version")
        .timeout(timeout)
        .run()
        .await?;
    Ok(out.stdout.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_of_one_run_are_checked_against_each_other() {
        let a = FioJob::verify_randrw("/f", 1 << 20).name("a");
        let err = command(&[a.clone(), a.clone()], Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("unique"), "{err}");
        let b = FioJob::verify_randrw("/f", 1 << 20)
            .name("b")
            .offset(1 << 19);
        let err = command(&[a.clone(), b], Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("overlaps job `a`"), "{err}");
        let c = FioJob::verify_randrw("/f", 1 << 20)
            .name("c")
            .offset(1 << 20);
        let d = FioJob::verify_randrw("/g", 1 << 20).name("d");
        let cmd = command(&[a, c, d], Duration::from_secs(1)).unwrap();
        let line = cmd.cmdline();
        assert!(
            line.starts_with(
                "fio --output-format=json --eta=never --thread --verify_state_save=0 --name=a "
            ),
            "{line}"
        );
        assert_eq!(line.matches("--name=").count(), 3);
        assert!(command(&[], Duration::from_secs(1)).is_err());
    }

    fn summary_of(jobs: &[(&str, i32, u64)]) -> FioSummary {
        FioSummary {
            jobs: jobs
                .iter()
                .map(|(name, error, read)| JobSummary {
                    name: name.to_string(),
                    error: *error,
                    read: IoStats {
                        io_bytes: *read,
                        ..IoStats::default()
                    },
                    write: IoStats::default(),
                })
                .collect(),
            fio_version: "fio-3.33".into(),
            elapsed: Duration::ZERO,
            command_line: String::new(),
        }
    }

    #[test]
    fn job_problems_are_found_in_summary_and_stderr() {
        let v = [FioJob::verify_randrw("/f", 4096).name("v")];
        assert_eq!(job_problem(&v, &summary_of(&[("v", 0, 4096)]), ""), None);
        let r = job_problem(&v, &summary_of(&[("v", 84, 4096)]), "").unwrap();
        assert!(
            r.contains("error 84") && r.contains("verify failure"),
            "{r}"
        );
        let r = job_problem(
            &v,
            &summary_of(&[("v", 0, 4096)]),
            "verify: bad magic header 5858, wanted acca at file /f offset 8192",
        )
        .unwrap();
        assert!(r.contains("bad magic header"), "{r}");
        let r = job_problem(&v, &summary_of(&[("v", 0, 0)]), "").unwrap();
        assert!(r.contains("verified nothing"), "{r}");
        let r = job_problem(&v, &summary_of(&[]), "").unwrap();
        assert!(r.contains("reported 0 jobs"), "{r}");
        // Without verification, stderr chatter and zero reads are fine.
        let w = [FioJob::new("/f", Rw::Write, 4096).name("w")];
        assert_eq!(
            job_problem(&w, &summary_of(&[("w", 0, 0)]), "verify: bad x"),
            None
        );
    }

    #[test]
    fn failed_error_shows_the_end_of_stderr() {
        let long = format!("{}TAIL", "x".repeat(10_000));
        let err = FioError::Failed {
            command_line: "fio --name=a".into(),
            reason: "job `a` failed".into(),
            stderr: long,
            summary: None,
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("`fio --name=a` failed: job `a` failed\nfio's stderr:\n"),
            "{msg}"
        );
        assert!(msg.ends_with("TAIL") && msg.len() < 4200, "{}", msg.len());
    }
}
