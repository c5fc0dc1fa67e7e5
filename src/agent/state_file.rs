//! The agent's small state file, `<state dir>/state.json`: the bdevs it
//! created, with the uuid each was given, so that a restarted agent lists
//! the same bdevs with the same uuids. Whether a bdev is shared, and to
//! which hosts, is read from configfs, which is the truth; the `shared` flag
//! and `allowed_hosts` list here only let a restart notice and log a share
//! that disappeared behind the agent's back.
//!
//! `hosts` lists the host directories (`hosts/<hostnqn>` in configfs) the
//! agent made for allowed hosts, so that it removes those, and only those,
//! once no subsystem admits them: a host directory it did not make belongs
//! to someone else (it may hold DH-HMAC-CHAP keys). A host is recorded after
//! the share that made its directory; a crash in between leaves a directory
//! the agent never removes, which errs on the safe side.
//!
//! `unsharing` marks a bdev whose Unshare was under way: it is written
//! before the Unshare's first configfs step and cleared once the Unshare
//! finished. configfs alone cannot tell a share half removed from one half
//! made, and a restart completes half-made shares; with the mark it
//! finishes the Unshare instead, as the client asked.
//!
//! The lists and the mark were added to version 1 with defaults, so older
//! files load; an older agent ignores them.
//!
//! It is replaced atomically (write a temporary file, `fsync`, `rename`), so
//! a crash leaves either the old or the new file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::device::Geometry;
use super::uri::Backend;
use crate::atomic_file;

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
    /// The hosts its share admitted when the file was written; empty when
    /// any host could connect (or it was not shared).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Whether an Unshare of it had begun and not finished when the file
    /// was written (see the module doc).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsharing: bool,
}

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// The bdevs, in creation order.
    pub bdevs: Vec<BdevRecord>,
    /// The host directories the agent made (host NQNs).
    pub hosts: Vec<String>,
    /// The hosts given a DH-HMAC-CHAP key through the agent, kept while
    /// no share admits them (their key lives in the host directory).
    pub keyed: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    bdevs: Vec<BdevRecord>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keyed: Vec<String>,
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

/// Reads the state; a missing file is an empty one.
pub fn load(path: &Path) -> Result<State, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
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
    Ok(State {
        bdevs: file.bdevs,
        hosts: file.hosts,
        keyed: file.keyed,
    })
}

/// Replaces the file with `state`.
pub fn save(path: &Path, state: State) -> Result<(), StateError> {
    let io = |op| {
        move |cause| StateError::Io {
            op,
            path: path.to_path_buf(),
            cause,
        }
    };
    let file = StateFile {
        version: VERSION,
        bdevs: state.bdevs,
        hosts: state.hosts,
        keyed: state.keyed,
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    atomic_file::replace(path, text.as_bytes()).map_err(io("replace"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::uri::MallocSize;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), State::default());
        let bdevs = vec![
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
                allowed_hosts: vec!["nqn.2014-08.org.example:a".into()],
                unsharing: true,
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
                allowed_hosts: Vec::new(),
                unsharing: false,
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
                allowed_hosts: Vec::new(),
                unsharing: false,
            },
        ];
        let state = State {
            bdevs,
            hosts: vec!["nqn.2014-08.org.example:a".into()],
            keyed: vec!["nqn.2014-08.org.example:a".into()],
        };
        save(&path, state.clone()).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        assert!(!atomic_file::temporary(&path).exists());
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
            records.bdevs[0].backend,
            Backend::Malloc {
                size: MallocSize::SizeMb(64),
                blk_size: None
            }
        );
    }

    #[test]
    fn a_file_without_host_lists_or_unsharing_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        // As an agent before allowed hosts wrote it.
        let old = r#"{
  "version": 1,
  "bdevs": [
    {
      "name": "m0",
      "uuid": "0e1f5bd4-8f32-4b2a-9d5c-6c1c35f2b0a7",
      "backend": {"type": "malloc", "size_mb": 64},
      "geometry": {"size": 67108864, "blk_size": 4096},
      "shared": true
    }
  ]
}"#;
        std::fs::write(&path, old).unwrap();
        let state = load(&path).unwrap();
        assert_eq!(state.bdevs.len(), 1);
        assert!(state.bdevs[0].allowed_hosts.is_empty());
        assert!(!state.bdevs[0].unsharing);
        assert!(state.hosts.is_empty());
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
