//! Running external programs (nvme-cli, fio, ip, ...) with a deadline.
//!
//! Every program the suite or the agent starts goes through here, so that no
//! step can hang: on timeout the child is killed and the error names the
//! command line and how long it was given.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// Why an external command failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started at all.
    #[error("cannot start `{cmdline}` (is it installed and on PATH?)")]
    Spawn {
        /// The command line as a person would type it.
        cmdline: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program did not finish within its deadline and was killed.
    #[error("`{cmdline}` did not finish within {}s and was killed", .after.as_secs_f64())]
    Timeout {
        /// The command line as a person would type it.
        cmdline: String,
        /// The deadline it was given.
        after: Duration,
    },
    /// The program exited with a non-zero status.
    #[error("`{cmdline}` failed with {status}: {}", .stderr.trim())]
    Failed {
        /// The command line as a person would type it.
        cmdline: String,
        /// Exit status, as text (`exit status 1`, `signal 9`).
        status: String,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// An external command with a deadline.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    timeout: Duration,
}

impl Cmd {
    /// A command with the default deadline of 30 s.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line as a person would type it (for messages).
    pub fn cmdline(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command; any exit status is returned, not an error.
    pub async fn output(&self) -> Result<Output, CmdError> {
        let start = Instant::now();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| CmdError::Spawn {
                cmdline: self.cmdline(),
                source,
            })?;
        // Dropping the wait future on timeout drops the child, which kills it.
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| CmdError::Timeout {
                cmdline: self.cmdline(),
                after: self.timeout,
            })?
            .map_err(|source| CmdError::Spawn {
                cmdline: self.cmdline(),
                source,
            })?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        })
    }

    /// Runs the command and fails unless it exits with status 0.
    pub async fn run(&self) -> Result<Output, CmdError> {
        let out = self.output().await?;
        if out.code == Some(0) {
            return Ok(out);
        }
        Err(CmdError::Failed {
            cmdline: self.cmdline(),
            status: out
                .code
                .map_or_else(|| "a signal".to_string(), |c| format!("exit status {c}")),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// [`Cmd::run`] from synchronous code on a thread that is not running
    /// async tasks (the agent's blocking threads, a plain test): on the
    /// current Tokio runtime if there is one, else on a runtime of its own.
    pub fn run_blocking(&self) -> Result<Output, CmdError> {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return handle.block_on(self.run());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| CmdError::Spawn {
                cmdline: self.cmdline(),
                source,
            })?;
        runtime.block_on(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_status() {
        let out = Cmd::new("sh")
            .args(["-c", "echo hi; echo err >&2; exit 3"])
            .output()
            .await;
        let out = out.unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[tokio::test]
    async fn non_zero_is_an_error_naming_the_command() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 1"])
            .run()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_at_its_deadline() {
        let start = Instant::now();
        let err = Cmd::new("sleep")
            .arg("10")
            .timeout(Duration::from_millis(200))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, CmdError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn runs_blocking_with_and_without_a_runtime() {
        let out = Cmd::new("echo").arg("x").run_blocking().unwrap();
        assert_eq!(out.stdout, "x\n");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let blocking = || Cmd::new("echo").arg("y").run_blocking();
        let out = runtime
            .block_on(async { tokio::task::spawn_blocking(blocking).await })
            .unwrap()
            .unwrap();
        assert_eq!(out.stdout, "y\n");
    }

    #[tokio::test]
    async fn a_missing_program_says_so() {
        let err = Cmd::new("nvmfcheck-no-such-program")
            .run()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is it installed"), "{err}");
    }
}
