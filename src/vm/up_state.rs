//! The state of a pair started by `vm up`, kept in a JSON file so that
//! `vm exec`, `vm status` and `vm down` find it.

use std::path::{Path, PathBuf};

use super::spec::{Accel, VmFiles};
use super::{io_error, Role, VmError};
use crate::atomic_file;

/// One VM of a running pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmState {
    /// Which VM.
    pub role: Role,
    /// QEMU's process id.
    pub pid: u32,
    /// Its sockets and logs.
    pub files: VmFiles,
}

/// A running pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PairState {
    /// Loopback port forwarded to the target's agent.
    pub grpc_port: u16,
    /// Sockets and disk images.
    pub run_dir: PathBuf,
    /// The shared output dir (also holds the logs).
    pub out_dir: PathBuf,
    /// How the CPUs run.
    pub accel: Accel,
    /// Both VMs.
    pub vms: Vec<VmState>,
}

/// `$XDG_STATE_HOME/nvmfcheck/vm` or `~/.local/state/nvmfcheck/vm`.
pub fn default_state_dir() -> PathBuf {
    super::hostfs::xdg_dir("XDG_STATE_HOME", ".local/state", "nvmfcheck/vm")
}

fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

impl PairState {
    /// Reads the state in `state_dir`; `None` when no pair was started.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, VmError> {
        let path = file(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(format!("cannot read {}", path.display()))(e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            VmError::Invalid(format!(
                "{} is not a vm state file ({e}); remove it",
                path.display()
            ))
        })
    }

    /// Writes the state into `state_dir`.
    pub fn save(&self, state_dir: &Path) -> Result<(), VmError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| VmError::Invalid(format!("cannot serialize the vm state: {e}")))?;
        let path = file(state_dir);
        atomic_file::replace(&path, &bytes)
            .map_err(io_error(format!("cannot write {}", path.display())))
    }

    /// Forgets the pair.
    pub fn remove(state_dir: &Path) -> Result<(), VmError> {
        let path = file(state_dir);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error(format!("cannot remove {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// The VM with `role`.
    pub fn vm(&self, role: Role) -> Result<&VmState, VmError> {
        self.vms
            .iter()
            .find(|v| v.role == role)
            .ok_or_else(|| VmError::Invalid(format!("the state file has no {role} VM")))
    }
}

/// Whether `pid` is the QEMU described by `files` (and not a process that
/// reused the pid): its command line names our control socket.
pub fn is_our_qemu(pid: u32, files: &VmFiles) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = files.ctl.to_string_lossy().replace(',', ",,");
    super::qemu::pid_alive(pid) && String::from_utf8_lossy(&cmdline).contains(needle.as_str())
}

/// QEMUs of a pair in `run_dir` that no state file names: left by a
/// `vm up` that was killed (SIGKILL) while booting detached VMs.
pub fn stray_qemus(run_dir: &Path) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            Role::ALL.iter().any(|&role| {
                let files = VmFiles::new(role, run_dir, run_dir);
                let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                argv0.starts_with(b"qemu-system") && is_our_qemu(pid, &files)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PairState::load(dir.path()).unwrap(), None);
        let s = PairState {
            grpc_port: 40123,
            run_dir: dir.path().into(),
            out_dir: dir.path().join("out"),
            accel: Accel::Tcg,
            vms: Role::ALL
                .iter()
                .map(|&role| VmState {
                    role,
                    pid: 42,
                    files: VmFiles::new(role, dir.path(), dir.path()),
                })
                .collect(),
        };
        s.save(dir.path()).unwrap();
        let back = PairState::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.vm(Role::Initiator).unwrap().role, Role::Initiator);
        PairState::remove(dir.path()).unwrap();
        assert_eq!(PairState::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), "{").unwrap();
        let err = PairState::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn a_pid_that_is_not_our_qemu_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let files = VmFiles::new(Role::Target, dir.path(), dir.path());
        assert!(!is_our_qemu(std::process::id(), &files));
    }
}
