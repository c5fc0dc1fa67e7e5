//! A run's two directories and the name of every file in them: the private
//! run dir (sockets, disk images, a `vm up`'s state file) and the output
//! dir shared with the guests (console and QEMU logs, the agent's log and
//! token, the reports). Nothing else in the runner spells a file name.

use std::path::{Path, PathBuf};

use super::spec::VmFiles;
use super::topology::Topology;
use super::{hostfs, io_error, sparse, VmError, TOKEN_FILE};
use crate::vm::protocol::CTL_PORTS;

/// The name of VM `name`'s agent log in the output dir, where its guest
/// daemon writes it.
pub fn agent_log_file(name: &str) -> String {
    format!("{name}.agent.log")
}

/// Longest unix socket path the kernel accepts (`sun_path`, with the NUL).
const SUN_PATH_MAX: usize = 107;
/// Size of the tiny first disk that makes a target's data disk `vdb`.
const FIRST_DISK_BYTES: u64 = 1 << 20;

/// A run dir and its output dir.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    out: PathBuf,
    /// A `vm run`'s dir goes when the run ends; a `vm up`'s stays.
    remove_on_drop: bool,
}

impl RunDir {
    /// A new private run dir (see `hostfs::fresh_run_dir`), removed when
    /// this value is dropped, with `out` as the output dir.
    pub fn fresh(out: PathBuf) -> Result<Self, VmError> {
        Ok(Self {
            path: hostfs::fresh_run_dir()?,
            out,
            remove_on_drop: true,
        })
    }

    /// The run dir `path`, kept when dropped (a `vm up` state dir).
    pub fn kept(path: PathBuf, out: PathBuf) -> Self {
        Self {
            path,
            out,
            remove_on_drop: false,
        }
    }

    /// The private run dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The output dir shared with the guests.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// VM `name`'s sockets (here) and logs (in the output dir).
    pub fn vm_files(&self, name: &str) -> VmFiles {
        VmFiles::new(name, &self.path, &self.out)
    }

    /// The link socket of network `i` of the topology, when two VMs share
    /// it.
    pub fn link_socket(&self, i: usize) -> PathBuf {
        self.path.join(format!("link{i}.sock"))
    }

    /// The relay's socket for VM `name` on network `i`, when more than two
    /// share it.
    pub fn relay_socket(&self, i: usize, name: &str) -> PathBuf {
        self.path.join(format!("link{i}-{name}.sock"))
    }

    /// The socket VM `name` links to network `i` of `topology` through.
    pub fn network_socket(&self, topology: &Topology, i: usize, name: &str) -> PathBuf {
        match topology.networks.get(i) {
            Some(net) if net.relayed() => self.relay_socket(i, name),
            _ => self.link_socket(i),
        }
    }

    /// VM `name`'s disk images, `vda` first: a tiny one, then the data
    /// disk, if it has one.
    pub fn disks(&self, name: &str, data_disk: Option<u64>) -> Vec<(PathBuf, u64)> {
        let Some(bytes) = data_disk else {
            return Vec::new();
        };
        let [vda, vdb] = self.images(name);
        vec![(vda, FIRST_DISK_BYTES), (vdb, bytes)]
    }

    /// VM `name`'s data disk (`vdb`), whether it has one or not.
    pub fn data_image(&self, name: &str) -> PathBuf {
        let [_, vdb] = self.images(name);
        vdb
    }

    /// The paths of VM `name`'s disk images, whether it has them or not.
    fn images(&self, name: &str) -> [PathBuf; 2] {
        ["vda", "vdb"].map(|d| self.path.join(format!("{name}-{d}.img")))
    }

    /// The agent's token, where the guests find it.
    pub fn token(&self) -> PathBuf {
        self.out.join(TOKEN_FILE)
    }

    /// The guest daemon's log of VM `name`'s agent.
    pub fn agent_log(&self, name: &str) -> PathBuf {
        self.out.join(agent_log_file(name))
    }

    /// A `vm up`'s state file.
    pub fn state_file(&self) -> PathBuf {
        self.path.join("state.json")
    }

    /// Makes the dirs ready for booting `topology`: both exist, the output
    /// dir keeps the guests' file modes in xattrs, every socket path fits,
    /// the files of an earlier boot are gone, the console logs and disk
    /// images are new files (not through a symlink: QEMU follows one). The
    /// first target's data disk is a copy of `data_from` if given (an
    /// image of the same size), else blank.
    pub fn prepare(&self, topology: &Topology, data_from: Option<&Path>) -> Result<(), VmError> {
        for dir in [&self.path, &self.out] {
            std::fs::create_dir_all(dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
        }
        hostfs::check_user_xattrs(&self.out)?;
        let mut links = Vec::new();
        for (i, net) in topology.networks.iter().enumerate() {
            links.extend(
                net.members
                    .iter()
                    .map(|m| self.network_socket(topology, i, m)),
            );
        }
        for socket in links {
            check_socket_path(&socket)?;
            let _ = std::fs::remove_file(&socket);
        }
        for vm in &topology.vms {
            let files = self.vm_files(vm.name);
            let sockets = (0..CTL_PORTS).map(|i| files.ctl_port(i));
            for socket in sockets.chain([files.qmp.clone()]) {
                check_socket_path(&socket)?;
                let _ = std::fs::remove_file(&socket);
            }
            // Removing does not follow a symlink. The daemon appends to the
            // agent's log; an old one would end this boot at once if it
            // says the agent exited.
            for old in [&files.console, &files.qemu_log, &self.agent_log(vm.name)] {
                let _ = std::fs::remove_file(old);
            }
            hostfs::create_new(&files.console)?;
            for (image, bytes) in self.disks(vm.name, vm.data_disk) {
                let _ = std::fs::remove_file(&image);
                sparse_file(&image, bytes)?;
            }
        }
        if let Some(from) = data_from {
            let first = topology.vms.iter().find(|v| v.data_disk.is_some());
            let Some((name, bytes)) = first.and_then(|v| Some((v.name, v.data_disk?))) else {
                return Err(VmError::Invalid(
                    "no VM of the topology has a data disk to boot from a copy".into(),
                ));
            };
            let size = std::fs::metadata(from)
                .map_err(io_error(format!("cannot read {}", from.display())))?
                .len();
            if size != bytes {
                return Err(VmError::Invalid(format!(
                    "{} has {size} bytes, but {name}'s data disk has {bytes}: it is not a data \
                     disk that `vm run --keep-state` kept",
                    from.display()
                )));
            }
            let image = self.data_image(name);
            let _ = std::fs::remove_file(&image);
            sparse::copy(from, &image)?;
        }
        Ok(())
    }

    /// Removes what booting the VMs `names` left in the run dir (sockets,
    /// their locks, pid files, disk images, links); the logs stay.
    pub fn clean(&self, names: &[&str]) {
        for name in names {
            let files = self.vm_files(name);
            for i in 0..CTL_PORTS {
                let socket = files.ctl_port(i);
                let _ = std::fs::remove_file(format!("{}.lock", socket.display()));
                let _ = std::fs::remove_file(socket);
            }
            for f in [&files.qmp, &files.pidfile] {
                let _ = std::fs::remove_file(f);
            }
            for image in self.images(name) {
                let _ = std::fs::remove_file(image);
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("link") && name.ends_with(".sock") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn check_socket_path(p: &Path) -> Result<(), VmError> {
    if p.as_os_str().len() > SUN_PATH_MAX {
        return Err(VmError::Invalid(format!(
            "{}: too long for a unix socket ({} bytes at most); use a shorter dir",
            p.display(),
            SUN_PATH_MAX
        )));
    }
    Ok(())
}

/// A new sparse disk image (see [`hostfs::create_new`]: QEMU writes what
/// the guest writes to it, so it must be no other file).
fn sparse_file(path: &Path, bytes: u64) -> Result<(), VmError> {
    let f = hostfs::create_new(path)?;
    f.set_len(bytes)
        .map_err(io_error(format!("cannot size {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::topology::DATA_DISK_BYTES;

    #[test]
    fn a_symlink_at_an_image_path_fails_its_creation_and_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let image = dir.path().join("target-vdb.img");
        std::os::unix::fs::symlink(&victim, &image).unwrap();
        let err = sparse_file(&image, DATA_DISK_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&image.display().to_string()), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[test]
    fn prepare_makes_each_vms_files_and_clean_takes_them_away() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::kept(tmp.path().join("run"), tmp.path().join("out"));
        let topology = Topology::pair();
        if hostfs::check_user_xattrs(tmp.path()).is_err() {
            // A filesystem without user xattrs (tmpfs before Linux 6.6, in
            // a build sandbox): `prepare` refuses it, as tested in hostfs.
            eprintln!("skipped: {} has no user xattrs", tmp.path().display());
            return;
        }
        dir.prepare(&topology, None).unwrap();
        let vdb = tmp.path().join("run/target-vdb.img");
        assert_eq!(std::fs::metadata(&vdb).unwrap().len(), DATA_DISK_BYTES);
        assert_eq!(dir.data_image("target"), vdb);
        // Booting from a kept disk: a copy of it, which must be of the size.
        let kept = tmp.path().join("kept.img");
        let f = std::fs::File::create(&kept).unwrap();
        f.set_len(DATA_DISK_BYTES).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"basic", 4096).unwrap();
        dir.prepare(&topology, Some(&kept)).unwrap();
        assert_eq!(std::fs::read(&vdb).unwrap()[4096..4101], *b"basic");
        f.set_len(1 << 20).unwrap();
        let err = dir.prepare(&topology, Some(&kept)).unwrap_err().to_string();
        assert!(err.contains("not a data disk"), "{err}");
        assert!(tmp.path().join("out/initiator.console.log").exists());
        assert!(dir.disks("initiator", None).is_empty());
        std::fs::write(dir.link_socket(0), "").unwrap();
        dir.clean(&["target", "initiator"]);
        assert!(!vdb.exists());
        assert!(!dir.link_socket(0).exists());
        assert!(tmp.path().join("out/initiator.console.log").exists());
    }

    #[test]
    fn a_socket_path_too_long_is_refused_naming_it() {
        let long = PathBuf::from(format!("/{}", "d".repeat(200)));
        let dir = RunDir::kept(long, PathBuf::from("/tmp"));
        let err = check_socket_path(&dir.link_socket(0)).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
    }
}
