//! The state of the VMs started by `vm up`, kept in a JSON file in its
//! [`RunDir`] so that `vm exec`, `vm status` and `vm down` find them.

use std::path::PathBuf;

use super::run_dir::RunDir;
use super::spec::{Accel, VmFiles};
use super::{io_error, VmError};
use crate::atomic_file;

/// One VM of a running `vm up`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmState {
    /// Which VM (files of older versions call it `role`).
    #[serde(alias = "role")]
    pub name: String,
    /// QEMU's process id.
    pub pid: u32,
    /// Its sockets and logs.
    pub files: VmFiles,
}

/// The VMs of a running `vm up`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpState {
    /// Loopback port forwarded to the target's agent.
    pub grpc_port: u16,
    /// Sockets and disk images.
    pub run_dir: PathBuf,
    /// The shared output dir (also holds the logs).
    pub out_dir: PathBuf,
    /// How the CPUs run.
    pub accel: Accel,
    /// Its VMs.
    pub vms: Vec<VmState>,
}

/// `$XDG_STATE_HOME/nvmfcheck/vm` or `~/.local/state/nvmfcheck/vm`.
pub fn default_state_dir() -> PathBuf {
    super::hostfs::xdg_dir("XDG_STATE_HOME", ".local/state", "nvmfcheck/vm")
}

impl UpState {
    /// Reads the state in `dir`; `None` when no VMs were started.
    pub fn load(dir: &RunDir) -> Result<Option<Self>, VmError> {
        let path = dir.state_file();
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

    /// Writes the state into `dir`.
    pub fn save(&self, dir: &RunDir) -> Result<(), VmError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| VmError::Invalid(format!("cannot serialize the vm state: {e}")))?;
        let path = dir.state_file();
        atomic_file::replace(&path, &bytes)
            .map_err(io_error(format!("cannot write {}", path.display())))
    }

    /// Forgets the VMs.
    pub fn remove(dir: &RunDir) -> Result<(), VmError> {
        let path = dir.state_file();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error(format!("cannot remove {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// The VM called `name`.
    pub fn vm(&self, name: &str) -> Result<&VmState, VmError> {
        self.vms.iter().find(|v| v.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.vms.iter().map(|v| v.name.as_str()).collect();
            VmError::Invalid(format!(
                "no VM called {name:?} is up; the VMs are: {}",
                names.join(", ")
            ))
        })
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

/// QEMUs of VMs `names` in `dir` that no state file names: left by a
/// `vm up` that was killed (SIGKILL) while booting detached VMs.
pub fn stray_qemus(dir: &RunDir, names: &[&str]) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            names.iter().any(|name| {
                let files = dir.vm_files(name);
                let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                argv0.starts_with(b"qemu-system") && is_our_qemu(pid, &files)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir(dir: &tempfile::TempDir) -> RunDir {
        RunDir::kept(dir.path().into(), dir.path().join("out"))
    }

    #[test]
    fn round_trips_and_reports_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = run_dir(&tmp);
        assert_eq!(UpState::load(&dir).unwrap(), None);
        let s = UpState {
            grpc_port: 40123,
            run_dir: dir.path().into(),
            out_dir: dir.out().into(),
            accel: Accel::Tcg,
            vms: ["target", "initiator"]
                .iter()
                .map(|name| VmState {
                    name: name.to_string(),
                    pid: 42,
                    files: dir.vm_files(name),
                })
                .collect(),
        };
        s.save(&dir).unwrap();
        let back = UpState::load(&dir).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.vm("initiator").unwrap().name, "initiator");
        let err = back.vm("node9").unwrap_err().to_string();
        assert!(err.contains("target, initiator"), "{err}");
        UpState::remove(&dir).unwrap();
        assert_eq!(UpState::load(&dir).unwrap(), None);
    }

    #[test]
    fn a_file_of_an_older_version_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = run_dir(&tmp);
        let files = serde_json::to_value(dir.vm_files("target")).unwrap();
        let old = serde_json::json!({
            "grpc_port": 1, "run_dir": "/r", "out_dir": "/o", "accel": "tcg",
            "vms": [{"role": "target", "pid": 7, "files": files}],
        });
        std::fs::write(dir.state_file(), old.to_string()).unwrap();
        let back = UpState::load(&dir).unwrap().unwrap();
        assert_eq!(back.vm("target").unwrap().pid, 7);
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = run_dir(&tmp);
        std::fs::write(dir.state_file(), "{").unwrap();
        let err = UpState::load(&dir).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn a_pid_that_is_not_our_qemu_is_not_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let files = run_dir(&tmp).vm_files("target");
        assert!(!is_our_qemu(std::process::id(), &files));
    }
}
