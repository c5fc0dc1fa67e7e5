//! A fake sysfs tree for tests, shaped like Linux 6.1's (see the parent
//! module's doc; the layouts were checked in a Debian 6.1 guest with and
//! without multipath).

use std::fs;

use super::Sysfs;

/// A subsystem NQN as the agent makes them.
pub(crate) const NQN: &str = "nqn.2019-05.io.openebs:5e1e6d9e-0000-4000-8000-000000000001";

/// A tree laid out like `/` in a temporary directory.
pub(crate) struct FakeSysfs(tempfile::TempDir);

impl FakeSysfs {
    /// An empty tree.
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    /// The file `rel` holding `content` and a newline, as sysfs shows it.
    pub(crate) fn file(&self, rel: &str, content: &str) {
        let path = self.0.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("{content}\n")).unwrap();
    }

    /// Removes the file `rel`.
    pub(crate) fn remove(&self, rel: &str) {
        fs::remove_file(self.0.path().join(rel)).unwrap();
    }

    /// Controller `name` of subsystem `nqn`, live.
    pub(crate) fn controller(&self, name: &str, nqn: &str) {
        self.file(&format!("sys/class/nvme/{name}/subsysnqn"), nqn);
        self.state(name, "live");
    }

    /// Sets the `state` of controller `name`.
    pub(crate) fn state(&self, name: &str, state: &str) {
        self.file(&format!("sys/class/nvme/{name}/state"), state);
    }

    /// Block device `name` of `sectors` 512-byte sectors, nsid 1, and its
    /// /dev node.
    pub(crate) fn disk(&self, name: &str, sectors: u64, uuid: Option<&str>) {
        let dir = format!("sys/class/block/{name}");
        self.file(&format!("{dir}/size"), &sectors.to_string());
        self.file(&format!("{dir}/queue/logical_block_size"), "512");
        self.file(&format!("{dir}/nsid"), "1");
        if let Some(uuid) = uuid {
            self.file(&format!("{dir}/uuid"), uuid);
        }
        self.file(&format!("dev/{name}"), "");
    }

    /// Entry `entry` (a disk, or anything else) under `controller`.
    pub(crate) fn entry(&self, controller: &str, entry: &str) {
        let dir = self
            .0
            .path()
            .join(format!("sys/class/nvme/{controller}/{entry}"));
        fs::create_dir_all(dir).unwrap();
    }

    /// Disk `entry` of `controller` with `reads` and `writes` completed in
    /// its `stat`.
    pub(crate) fn stat(&self, controller: &str, entry: &str, reads: u64, writes: u64) {
        let stat = format!(
            "{reads:>8} 0 {} 10 {writes:>8} 0 {} 20 0 30 30",
            reads * 8,
            writes * 8
        );
        self.file(&format!("sys/class/nvme/{controller}/{entry}/stat"), &stat);
    }

    /// The tree as [`Sysfs`].
    pub(crate) fn sysfs(&self) -> Sysfs {
        Sysfs::at(self.0.path())
    }
}
