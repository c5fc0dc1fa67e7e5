//! A kept state: the target's data disk and the report of the boot that
//! left a data set on it (`vm run basic --keep-state DIR`), which a later
//! `vm run io --from-state DIR` or `vm up --from-state DIR` boots a fresh
//! target on (see [`crate::suite::state`]).

use std::path::{Path, PathBuf};

use super::runner::RunnerError;
use super::{sparse, VmError};
use crate::suite::report::Report;
use crate::suite::state::DataSet;

/// The data disk's file in a state dir: a sparse raw image.
pub const DISK_FILE: &str = "target-vdb.img";
/// The report's file in a state dir.
pub const REPORT_FILE: &str = "report.json";

/// A state dir's contents, checked.
#[derive(Debug, Clone)]
pub struct KeptState {
    /// The data disk.
    pub disk: PathBuf,
    /// The report of the boot that left it; its `state` is set.
    pub report: Report,
}

impl KeptState {
    /// Reads the state dir `dir`, failing with what to do if it is not
    /// one that `--keep-state` wrote.
    pub fn load(dir: &Path) -> Result<Self, RunnerError> {
        let invalid = |what: String| {
            RunnerError::Invalid(format!(
                "{}: {what}; make one with `nvmfcheck vm run basic --keep-state {}`",
                dir.display(),
                dir.display()
            ))
        };
        let report_path = dir.join(REPORT_FILE);
        if !report_path.exists() {
            return Err(invalid(format!("no {REPORT_FILE}")));
        }
        let report = Report::load(&report_path)?;
        if report.state.is_none() {
            return Err(invalid(format!(
                "{REPORT_FILE} says no data set was left (it has no `state`)"
            )));
        }
        let disk = dir.join(DISK_FILE);
        if !disk.is_file() {
            return Err(invalid(format!("no {DISK_FILE}")));
        }
        Ok(Self { disk, report })
    }

    /// What the disk holds.
    pub fn data_set(&self) -> Option<&DataSet> {
        self.report.state.as_ref()
    }

    /// Writes a state dir `dir` (made if missing; an earlier state in it
    /// is replaced): a sparse copy of `disk` and `report`. Returns the
    /// bytes of data copied.
    pub fn save(dir: &Path, disk: &Path, report: &Report) -> Result<u64, RunnerError> {
        let io = |what: &str, e: &dyn std::fmt::Display| {
            RunnerError::Invalid(format!("cannot {what} in {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create the state dir", &e))?;
        let image = dir.join(DISK_FILE);
        // The old report goes first and the new one comes last, so a dir
        // whose copy failed half-way has none and is not taken for a state.
        let _ = std::fs::remove_file(dir.join(REPORT_FILE));
        match std::fs::remove_file(&image) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("replace the kept disk", &e)),
        }
        let copied = sparse::copy(disk, &image).map_err(|e: VmError| io("copy the disk", &e))?;
        report.write(dir)?;
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::report::{Status, Versions, SCHEMA};
    use crate::suite::state::JobParams;

    fn report(state: Option<DataSet>) -> Report {
        Report {
            schema: SCHEMA,
            status: Status::Passed,
            error: None,
            target: "192.168.1.2:10124".into(),
            started_unix: 0,
            duration_secs: 1.0,
            versions: Versions::default(),
            categories: vec![],
            state,
        }
    }

    #[test]
    fn a_saved_state_loads_and_a_dir_without_one_names_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = tmp.path().join("vdb.img");
        std::fs::write(&disk, b"basic's data").unwrap();
        let state = DataSet {
            disk: "aio:///dev/vdb".into(),
            offset: 0,
            size: 4096,
            job: JobParams::data_set(),
            sha256: "0".repeat(64),
        };
        let dir = tmp.path().join("state");
        KeptState::save(&dir, &disk, &report(Some(state.clone()))).unwrap();
        // Saving again replaces it.
        KeptState::save(&dir, &disk, &report(Some(state.clone()))).unwrap();
        let kept = KeptState::load(&dir).unwrap();
        assert_eq!(kept.data_set(), Some(&state));
        assert_eq!(std::fs::read(&kept.disk).unwrap(), b"basic's data");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = KeptState::load(&empty).unwrap_err().to_string();
        assert!(
            err.contains("no report.json") && err.contains("--keep-state"),
            "{err}"
        );
        report(None).write(&empty).unwrap();
        let err = KeptState::load(&empty).unwrap_err().to_string();
        assert!(err.contains("no `state`"), "{err}");
        report(Some(state)).write(&empty).unwrap();
        let err = KeptState::load(&empty).unwrap_err().to_string();
        assert!(err.contains("no target-vdb.img"), "{err}");
    }
}
