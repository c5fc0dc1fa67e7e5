//! QEMU processes: starting them so that they die with the runner (or
//! outlive it, for `vm up`), watching and stopping them.

use std::process::Stdio;

use super::spec::{argv, VmSpec, QEMU};
use super::{io_error, VmError};

/// Makes the child get SIGKILL when this process dies, however it dies
/// (PR_SET_PDEATHSIG), so no QEMU outlives a killed runner.
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe calls (prctl,
    // getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The runner may have died before the prctl.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// A running QEMU.
#[derive(Debug)]
pub struct Qemu {
    /// Which VM.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// The child handle while this process owns it; `None` once detached.
    child: Option<tokio::process::Child>,
}

/// Whether QEMU dies with the runner or outlives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the runner exits, however it exits (`vm run`).
    Owned,
    /// In its own session, outliving the runner (`vm up`).
    Detached,
}

impl Qemu {
    /// Starts QEMU for `spec`; its stdout and stderr go to the QEMU log.
    pub fn spawn(spec: &VmSpec, lifetime: Lifetime) -> Result<Self, VmError> {
        let args = argv(spec)?;
        let log = super::hostfs::create_new(&spec.files.qemu_log)?;
        let log2 = log
            .try_clone()
            .map_err(io_error("cannot duplicate the QEMU log's file handle"))?;
        let mut cmd = tokio::process::Command::new(QEMU);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        match lifetime {
            Lifetime::Owned => {
                // Its own process group keeps a terminal's Ctrl-C for the
                // runner, which then tears down in order.
                cmd.process_group(0).kill_on_drop(true);
                die_with_parent(&mut cmd);
            }
            Lifetime::Detached => {
                // SAFETY: setsid is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        nix::unistd::setsid()?;
                        Ok(())
                    });
                }
            }
        }
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => VmError::Missing {
                what: QEMU.into(),
                package: "qemu-system-x86",
            },
            _ => VmError::Io {
                what: format!("cannot start {QEMU}"),
                source: e,
            },
        })?;
        let pid = child
            .id()
            .ok_or_else(|| VmError::Channel(format!("{} QEMU exited at once", spec.name)))?;
        Ok(Self {
            name: spec.name.clone(),
            pid,
            child: Some(child),
        })
    }

    /// A QEMU this process does not own (from a `vm up` state file).
    pub fn adopt(name: &str, pid: u32) -> Self {
        Self {
            name: name.to_string(),
            pid,
            child: None,
        }
    }

    /// How it ended, if it has.
    pub fn exit_status(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("unknown: {e}")),
            },
            None => (!pid_alive(self.pid)).then(|| "gone".to_string()),
        }
    }

    /// Waits until it has exited; returns how.
    pub async fn wait(&mut self) -> String {
        match &mut self.child {
            Some(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("unknown: {e}"),
            },
            None => {
                while pid_alive(self.pid) {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                "gone".to_string()
            }
        }
    }

    /// Sends `signal`; a QEMU that is gone already is not an error.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), signal);
    }

    /// Lets it outlive this process (`vm up`).
    pub fn detach(&mut self) {
        self.child = None;
    }
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` names a running (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_and_memory_of_pids() {
        assert!(peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
    }
}
