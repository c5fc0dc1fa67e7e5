//! The agent's small state file, `<state dir>/state.json`: the bdevs it
//! created, with the uuid each was given, so that a restarted agent lists
//! the same bdevs with the same uuids. Whether a bdev is shared is read from
//! configfs, which is the truth; the `shared` flag here only lets a restart
//! notice and log a share that disappeared behind the agent's back.
//!
//! It is replaced atomically (write a temporary file, `fsync`, `rename`), so
//! a crash leaves either the old or the new file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::device::Geometry;
use super::uri::Backend;

/// Format version written into the file.
const VERSION: u32 = 1;

/// One bdev as remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BdevRecord {
    /// Its name (`aio:///dev/vdb`, `m0`).
    pub name: String,
    /// Its uuid.
    pub uuid: Uuid,
    /// Backend and parameters.
    pub backend: Backend,
    /// Size when last probed (used if the device is missing at start).
    pub geometry: Geometry,
    /// Whether it was shared when the file was written.
    pub shared: bool,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    bdevs: Vec<BdevRecord>,
}

/// The state file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("cannot {op} the state file {}: {cause}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The file is not what this agent writes.
    #[error("the state file {} is unreadable ({reason}); move it away to start afresh (shares in the kernel are recovered from configfs)", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the records; a missing file is an empty list.
pub fn load(path: &Path) -> Result<Vec<BdevRecord>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => {
            return Err(StateError::Io {
                op: "read",
                path: path.to_path_buf(),
                cause,
            })
        }
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if file.version != VERSION {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("version {} where {VERSION} was expected", file.version),
        });
    }
    Ok(file.bdevs)
}

/// Replaces the file with `bdevs`.
pub fn save(path: &Path, bdevs: &[BdevRecord]) -> Result<(), StateError> {
    let io = |op| {
        move |cause| StateError::Io {
            op,
            path: path.to_path_buf(),
            cause,
        }
    };
    let file = StateFile {
        version: VERSION,
        bdevs: bdevs.to_vec(),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    replace_file(path, &text).map_err(io("replace"))
}

/// Replaces `path` with `text` so that a crash leaves the old or the new
/// content, never a torn file: write a sibling, sync it, rename it over.
pub fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::uri::MallocSize;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).unwrap().is_empty());
        let records = vec![
            BdevRecord {
                name: "aio:///dev/vdb".into(),
                uuid: Uuid::new_v4(),
                backend: Backend::Aio {
                    path: "/dev/vdb".into(),
                    blk_size: None,
                },
                geometry: Geometry {
                    size: 512 << 20,
                    blk_size: 512,
                },
                shared: true,
            },
            BdevRecord {
                name: "m0".into(),
                uuid: Uuid::new_v4(),
                backend: Backend::Malloc {
                    size: MallocSize::SizeMb(64),
                    blk_size: Some(4096),
                },
                geometry: Geometry {
                    size: 64 << 20,
                    blk_size: 4096,
                },
                shared: false,
            },
            BdevRecord {
                name: "m1".into(),
                uuid: Uuid::new_v4(),
                backend: Backend::Malloc {
                    size: MallocSize::NumBlocks(1000),
                    blk_size: None,
                },
                geometry: Geometry {
                    size: 512_000,
                    blk_size: 512,
                },
                shared: false,
            },
        ];
        save(&path, &records).unwrap();
        assert_eq!(load(&path).unwrap(), records);
        assert!(!path.with_extension("json.tmp").exists());
    }

    /// Files written before `blk_size` and `num_blocks` existed still load.
    #[test]
    fn records_without_block_parameters_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let uuid = Uuid::new_v4();
        std::fs::write(
            &path,
            format!(
                r#"{{"version":1,"bdevs":[{{"name":"m0","uuid":"{uuid}","backend":{{"type":"malloc","size_mb":64}},"geometry":{{"size":67108864,"blk_size":4096}},"shared":false}}]}}"#
            ),
        )
        .unwrap();
        let records = load(&path).unwrap();
        assert_eq!(
            records[0].backend,
            Backend::Malloc {
                size: MallocSize::SizeMb(64),
                blk_size: None
            }
        );
    }

    #[test]
    fn corrupt_files_say_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("move it away"), "{msg}");
        std::fs::write(&path, r#"{"version":9,"bdevs":[]}"#).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("version 9"));
    }
}
