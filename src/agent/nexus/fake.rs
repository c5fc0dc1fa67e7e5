//! An in-memory [`NexusKernel`] for tests: arrays (files in a directory,
//! so that they can be exported) whose members change state when told,
//! and remote subsystems that stand for files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use super::kernel::{ArrayStatus, KernelError, Member, MemberState, NexusKernel, Remote};

#[derive(Default)]
struct State {
    arrays: BTreeMap<PathBuf, (Uuid, ArrayStatus)>,
    /// Subsystem NQN → the file that stands for its namespace.
    remotes: BTreeMap<String, PathBuf>,
    /// Subsystems connected to, and as which host.
    connected: BTreeMap<String, String>,
    fail: Option<&'static str>,
    next: u32,
}

/// The fake; sizes are the files' lengths.
pub struct FakeNexusKernel {
    dir: PathBuf,
    state: Mutex<State>,
}

impl FakeNexusKernel {
    /// A kernel with nothing, whose arrays are files in `dir` (made when
    /// needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes subsystem `subnqn` reachable, its namespace standing for
    /// `file`.
    pub fn add_remote(&self, subnqn: &str, file: &Path) {
        self.state().remotes.insert(subnqn.into(), file.into());
    }

    /// Makes the next call of `op` (`create`, `add`, `connect`, `set`,
    /// `stop`) fail.
    pub fn fail_next(&self, op: &'static str) {
        self.state().fail = Some(op);
    }

    /// What md would do given time: an array that is not frozen recovers
    /// its spares.
    pub fn recover(&self) {
        for (_, status) in self.state().arrays.values_mut() {
            if status.sync_action != "frozen" {
                for m in &mut status.members {
                    if m.state == MemberState::Spare {
                        m.state = MemberState::InSync;
                        m.recovered = None;
                    }
                }
                status.sync_action = "idle".into();
            }
        }
    }

    /// Sets how far member `kname`'s recovery is, in sectors.
    pub fn recovered(&self, kname: &str, sectors: u64) {
        for (_, status) in self.state().arrays.values_mut() {
            for m in status.members.iter_mut().filter(|m| m.kname == kname) {
                m.recovered = Some(sectors);
            }
        }
    }

    /// Faults member `kname`, as an I/O error would.
    pub fn fault(&self, kname: &str) {
        for (_, status) in self.state().arrays.values_mut() {
            for m in status.members.iter_mut().filter(|m| m.kname == kname) {
                m.state = MemberState::Faulty;
            }
        }
    }

    /// The arrays and connections there are, for "changed nothing".
    pub fn snapshot(&self) -> String {
        let s = self.state();
        format!("{:?} {:?}", s.arrays, s.connected)
    }

    /// The subsystems connected to.
    pub fn connections(&self) -> Vec<String> {
        self.state().connected.keys().cloned().collect()
    }

    fn check(&self, op: &'static str) -> Result<MutexGuard<'_, State>, KernelError> {
        let mut s = self.state();
        if s.fail == Some(op) {
            s.fail = None;
            return Err(KernelError::Other(format!("fake {op} failed")));
        }
        Ok(s)
    }
}

fn kname(device: &Path) -> String {
    device
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn missing(array: &Path) -> KernelError {
    KernelError::Other(format!("no array {}", array.display()))
}

impl NexusKernel for FakeNexusKernel {
    fn arrays(&self) -> Result<Vec<(Uuid, PathBuf)>, KernelError> {
        let s = self.state();
        Ok(s.arrays.iter().map(|(p, (u, _))| (*u, p.clone())).collect())
    }

    fn create(
        &self,
        uuid: Uuid,
        size_kib: u64,
        devices: &[PathBuf],
    ) -> Result<PathBuf, KernelError> {
        let mut s = self.check("create")?;
        let array = self.dir.join(format!("md{}", 200 + s.next));
        s.next += 1;
        let made = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::File::create(&array))
            .and_then(|f| f.set_len(size_kib * 1024));
        made.map_err(|e| KernelError::Other(format!("{}: {e}", array.display())))?;
        let members = devices
            .iter()
            .map(|d| Member {
                kname: kname(d),
                state: MemberState::InSync,
                recovered: None,
            })
            .collect();
        let status = ArrayStatus {
            raid_disks: u32::try_from(devices.len()).unwrap_or(u32::MAX),
            sync_action: "idle".into(),
            component_sectors: size_kib * 2,
            members,
        };
        s.arrays.insert(array.clone(), (uuid, status));
        Ok(array)
    }

    fn status(&self, array: &Path) -> Result<ArrayStatus, KernelError> {
        let s = self.state();
        s.arrays
            .get(array)
            .map(|(_, st)| st.clone())
            .ok_or_else(|| missing(array))
    }

    fn stop(&self, array: &Path) -> Result<(), KernelError> {
        let mut s = self.check("stop")?;
        s.arrays
            .remove(array)
            .map(drop)
            .ok_or_else(|| missing(array))
    }

    fn add(&self, array: &Path, device: &Path) -> Result<(), KernelError> {
        let mut s = self.check("add")?;
        let (_, status) = s.arrays.get_mut(array).ok_or_else(|| missing(array))?;
        status.members.push(Member {
            kname: kname(device),
            state: MemberState::Spare,
            recovered: Some(0),
        });
        if status.sync_action != "frozen" {
            status.sync_action = "recover".into();
        }
        Ok(())
    }

    fn set(&self, array: &Path, attr: &str, value: &str) -> Result<(), KernelError> {
        let mut s = self.check("set")?;
        let (_, status) = s.arrays.get_mut(array).ok_or_else(|| missing(array))?;
        match attr {
            "sync_action" => {
                let spares = status.members.iter().any(|m| m.state == MemberState::Spare);
                status.sync_action = if value == "idle" && spares {
                    "recover".into()
                } else {
                    value.into()
                };
            }
            "raid_disks" => {
                status.raid_disks = value
                    .parse()
                    .map_err(|_| KernelError::Other(format!("raid_disks {value:?}")))?;
            }
            _ => {}
        }
        Ok(())
    }

    fn set_member(&self, array: &Path, kname: &str, value: &str) -> Result<(), KernelError> {
        let mut s = self.state();
        let (_, status) = s.arrays.get_mut(array).ok_or_else(|| missing(array))?;
        let at = status
            .members
            .iter()
            .position(|m| m.kname == kname)
            .ok_or_else(|| KernelError::Other(format!("no member {kname}")))?;
        match value {
            "faulty" => status.members[at].state = MemberState::Faulty,
            "remove" if status.members[at].state != MemberState::InSync => {
                status.members.remove(at);
            }
            _ => return Err(KernelError::Other(format!("cannot {value} {kname}"))),
        }
        Ok(())
    }

    fn resolve(&self, device: &Path) -> Result<PathBuf, KernelError> {
        Ok(device.to_path_buf())
    }

    fn size(&self, device: &Path) -> Result<u64, KernelError> {
        std::fs::metadata(device)
            .map(|m| m.len())
            .map_err(|e| KernelError::Other(format!("{}: {e}", device.display())))
    }

    fn connect(&self, remote: &Remote, hostnqn: &str) -> Result<PathBuf, KernelError> {
        let mut s = self.check("connect")?;
        let file = s
            .remotes
            .get(&remote.subnqn)
            .cloned()
            .ok_or_else(|| KernelError::Other(format!("cannot reach {}", remote.subnqn)))?;
        s.connected.insert(remote.subnqn.clone(), hostnqn.into());
        Ok(file)
    }

    fn disconnect(&self, subnqn: &str) -> Result<(), KernelError> {
        self.state().connected.remove(subnqn);
        Ok(())
    }

    fn connected(&self, hostnqn: &str) -> Result<Vec<String>, KernelError> {
        let s = self.state();
        Ok(s.connected
            .iter()
            .filter(|(_, h)| *h == hostnqn)
            .map(|(n, _)| n.clone())
            .collect())
    }
}
