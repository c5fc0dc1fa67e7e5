//! `<state dir>/faults.json`: the faults in force, each with its deadline
//! on the boot clock, and the boot they belong to (see [`super::faults`]).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info};

use super::faults::Fault;
use super::ControlError;
use crate::atomic_file;

/// Version of `faults.json`.
const VERSION: u32 = 1;

/// A fault and when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Pending {
    #[serde(flatten)]
    pub fault: Fault,
    /// The deadline, in milliseconds of `CLOCK_BOOTTIME`.
    pub until_ms: u64,
    /// Failed restores so far.
    #[serde(default)]
    pub attempts: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct FaultFile {
    version: u32,
    boot_id: String,
    pending: Vec<Pending>,
}

/// A duration in whole milliseconds.
pub(super) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds of `CLOCK_BOOTTIME`: it goes on across restarts of the
/// agent and suspends, and starts again at a reboot.
pub(super) fn now_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => {
            let ms = t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000;
            u64::try_from(ms).unwrap_or(0)
        }
        // Every Linux since 2.6.39 has it.
        Err(_) => 0,
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn load(path: &Path) -> Vec<Pending> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            error!(
                "cannot read {}: {e}; faults recorded there are not restored",
                path.display()
            );
            return Vec::new();
        }
    };
    match serde_json::from_str::<FaultFile>(&text) {
        Ok(f) if f.version != VERSION => {
            error!(
                "{} has version {}, not {VERSION}; ignoring its faults",
                path.display(),
                f.version
            );
            Vec::new()
        }
        Ok(f) if f.boot_id != boot_id() => {
            if !f.pending.is_empty() {
                info!(
                    "faults in {} are from before a reboot; they ended with it",
                    path.display()
                );
            }
            Vec::new()
        }
        Ok(f) => f.pending,
        Err(e) => {
            error!("{} is not a faults file ({e}); ignoring it", path.display());
            Vec::new()
        }
    }
}

pub(super) fn save(path: &Path, pending: &[Pending]) -> Result<(), ControlError> {
    let file = FaultFile {
        version: VERSION,
        boot_id: boot_id(),
        pending: pending.to_vec(),
    };
    let persist = |cause| ControlError::Persist {
        path: path.to_path_buf(),
        cause,
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| persist(e.into()))?;
    atomic_file::replace(path, (text + "\n").as_bytes()).map_err(persist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_other_boots_are_void() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.json");
        assert!(load(&path).is_empty());
        let pending = vec![
            Pending {
                fault: Fault::Link {
                    interface: "eth1".into(),
                },
                until_ms: 5,
                attempts: 0,
            },
            Pending {
                fault: Fault::Port {
                    port: 8430,
                    subsystems: vec!["nqn.a".into()],
                },
                until_ms: 7,
                attempts: 2,
            },
        ];
        save(&path, &pending).unwrap();
        assert_eq!(load(&path), pending);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"kind\": \"port\""), "{text}");
        let other_boot = text.replace(&boot_id(), "another-boot");
        std::fs::write(&path, other_boot).unwrap();
        assert!(load(&path).is_empty());
        std::fs::write(&path, "{").unwrap();
        assert!(load(&path).is_empty());
    }

    #[test]
    fn the_boot_clock_runs() {
        let a = now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(now_ms() >= a + 20 && a > 0);
        assert_eq!(duration_ms(Duration::from_secs(2)), 2000);
    }
}
