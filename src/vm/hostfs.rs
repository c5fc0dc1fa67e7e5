//! The files and directories the runner makes on the host. They lead into
//! the VMs (control sockets reach a root shell in each guest) or are
//! written by QEMU, which in CI runs as root, so none of them may be one
//! that someone else prepared: run dirs are made by `mkdtemp(3)` (mode
//! 0700, a name no one can predict, never an existing directory), a `vm
//! up` state dir must be a real directory of this user that no one else
//! may write to, and files are created `O_EXCL | O_NOFOLLOW` so that a
//! symlink planted at their name makes the creation fail instead of
//! redirecting the write.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{io_error, VmError};

/// What run dirs are called under `$TMPDIR`: `nvmfcheck-<pid>-XXXXXX`.
const RUN_DIR_PREFIX: &str = "nvmfcheck-";
/// Length of the random suffix `mkdtemp(3)` fills in.
const MKDTEMP_SUFFIX: usize = 6;

/// `sub` under the XDG base directory `$<var>`, or under its default
/// `$HOME/<home_default>` when `var` is unset or empty (`/root` without a
/// HOME).
pub(crate) fn xdg_dir(var: &str, home_default: &str, sub: &str) -> PathBuf {
    let base = match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(home_default),
    };
    base.join(sub)
}

/// A new private run dir for sockets and disk images:
/// `$TMPDIR/nvmfcheck-<pid>-XXXXXX`. Dirs left by runners that were killed
/// (SIGKILL leaves no chance to clean up) are removed first.
pub fn fresh_run_dir() -> Result<PathBuf, VmError> {
    fresh_run_dir_in(&std::env::temp_dir())
}

/// [`fresh_run_dir`] under `tmp`. The pid in the name is what lets a later
/// run tell a dead runner's dir; the random part is what makes the name
/// unknown in advance.
pub fn fresh_run_dir_in(tmp: &Path) -> Result<PathBuf, VmError> {
    remove_dead_run_dirs(tmp);
    let template = tmp.join(format!(
        "{RUN_DIR_PREFIX}{}-{}",
        std::process::id(),
        "X".repeat(MKDTEMP_SUFFIX)
    ));
    nix::unistd::mkdtemp(&template)
        .map_err(|e| io_error(format!("cannot create a run dir {}", template.display()))(e.into()))
}

/// The pid in a run dir's name: `nvmfcheck-<pid>-XXXXXX`, or the
/// `nvmfcheck-<pid>` of older versions.
fn run_dir_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(RUN_DIR_PREFIX)?;
    let (pid, suffix) = rest.split_once('-').unwrap_or((rest, ""));
    let suffix_ok = suffix.is_empty() || suffix.len() == MKDTEMP_SUFFIX;
    suffix_ok.then(|| pid.parse().ok()).flatten()
}

/// Removes the run dirs under `tmp` of this user's runners that are gone.
/// Not someone else's, and not a symlink: removing what a link points to
/// is not this function's business.
fn remove_dead_run_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(run_dir_pid) else {
            continue;
        };
        let ours = std::fs::symlink_metadata(e.path())
            .is_ok_and(|m| m.file_type().is_dir() && m.uid() == me);
        if ours && !super::qemu::pid_alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Makes `dir` (and its missing parents) with mode 0700, or checks the one
/// there: a directory, not a symlink, of this user, that neither its group
/// nor others may write to. For `vm up`, whose state dir also holds the
/// sockets and disk images and outlives the run, so it cannot be fresh.
pub fn private_dir(dir: &Path) -> Result<(), VmError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(format!("cannot create {}", dir.display())))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(io_error(format!("cannot read {}", dir.display())))?;
    let me = nix::unistd::geteuid().as_raw();
    let problem = if !meta.file_type().is_dir() {
        Some("it is not a directory (a symlink is not followed)".to_string())
    } else if meta.uid() != me {
        Some(format!("it belongs to uid {}, not to uid {me}", meta.uid()))
    } else if meta.permissions().mode() & 0o022 != 0 {
        Some(format!(
            "its group or others may write to it (mode {:o})",
            meta.permissions().mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(VmError::Invalid(format!(
            "{}: {p}; its sockets lead into the VMs, so use a directory of your own \
             (or a new path)",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Fails unless files in `dir` keep `user.*` extended attributes: the
/// output share's 9p `security_model=mapped-xattr` keeps there what the
/// guests set (owner, mode, file type), and without them every file a
/// guest made there would fail, late and obscurely.
pub fn check_user_xattrs(dir: &Path) -> Result<(), VmError> {
    let probe = dir.join(format!(".nvmfcheck-xattr-probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    let file = create_new(&probe)?;
    let name = c"user.nvmfcheck.probe";
    // SAFETY: the fd is open for the whole call, `name` is NUL-terminated
    // and the value points to 1 readable byte.
    let rc = unsafe {
        nix::libc::fsetxattr(file.as_raw_fd(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0)
    };
    let failed = (rc != 0).then(std::io::Error::last_os_error);
    drop(file);
    let _ = std::fs::remove_file(&probe);
    match failed {
        None => Ok(()),
        Some(e) => Err(VmError::Invalid(format!(
            "{}: its filesystem keeps no user extended attributes ({e}), which the guests' \
             output share needs (9p security_model=mapped-xattr keeps the owner, mode and \
             file type the guest sets there, so that guest root makes no setuid file, device \
             node or symlink on the host); use an --out (for `vm up`, a --state-dir) on ext4, \
             xfs, btrfs, or tmpfs of Linux 6.6 or later",
            dir.display()
        ))),
    }
}

/// Creates `path` as a new file of mode 0600, opened for writing with
/// `O_CREAT | O_EXCL | O_NOFOLLOW`: whatever is at that name already, a
/// symlink above all, makes it fail rather than be written through.
pub fn create_new(path: &Path) -> Result<File, VmError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(io_error(format!(
            "cannot create {} (a new file is made there, never an existing file or symlink \
             opened)",
            path.display()
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn run_dirs_are_new_private_and_unpredictable() {
        let tmp = tempfile::tempdir().unwrap();
        // The name older versions used, planted beforehand as a link to
        // someone else's dir.
        let elsewhere = tempfile::tempdir().unwrap();
        let predicted = tmp.path().join(format!("nvmfcheck-{}", std::process::id()));
        std::os::unix::fs::symlink(elsewhere.path(), &predicted).unwrap();
        let a = fresh_run_dir_in(tmp.path()).unwrap();
        let b = fresh_run_dir_in(tmp.path()).unwrap();
        assert_ne!(a, b);
        for d in [&a, &b] {
            assert_ne!(d, &predicted);
            assert!(std::fs::symlink_metadata(d).unwrap().is_dir());
            assert_eq!(mode(d), 0o700, "{}", d.display());
            assert_eq!(d.parent(), Some(tmp.path()));
            assert_eq!(
                run_dir_pid(&d.file_name().unwrap().to_string_lossy()),
                Some(std::process::id())
            );
        }
        assert!(std::fs::symlink_metadata(&predicted).unwrap().is_symlink());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unset_xdg_dir_falls_back_under_home() {
        let dir = xdg_dir("NVMFCHECK_TEST_UNSET_XDG", ".local/state", "nvmfcheck/vm");
        assert!(
            dir.ends_with(".local/state/nvmfcheck/vm"),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn only_dead_runners_dirs_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // Above the kernel's largest pid: no such process.
        let dead = tmp.path().join("nvmfcheck-99999999-abcdef");
        let old = tmp.path().join("nvmfcheck-99999999");
        let live = tmp
            .path()
            .join(format!("nvmfcheck-{}-abcdef", std::process::id()));
        let other = tmp.path().join("nvmfcheck-99999999-flake-src");
        for d in [&dead, &old, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        let link = tmp.path().join("nvmfcheck-99999998-abcdef");
        std::os::unix::fs::symlink(&live, &link).unwrap();
        fresh_run_dir_in(tmp.path()).unwrap();
        assert!(!dead.exists() && !old.exists());
        assert!(live.exists() && other.exists());
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }

    #[test]
    fn a_state_dir_is_made_private_or_must_be() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("a/b");
        private_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        // An existing dir of ours that only we may write to is fine.
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&new).unwrap();
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&new).unwrap_err().to_string();
        assert!(
            err.contains("others may write") && err.contains("a/b"),
            "{err}"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let err = private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        if nix::unistd::geteuid().is_root() {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            let err = private_dir(&theirs).unwrap_err().to_string();
            assert!(err.contains("uid 65534"), "{err}");
        }
    }

    #[test]
    fn a_dir_on_this_filesystem_keeps_user_xattrs_and_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        check_user_xattrs(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A symlink to an existing file is the image test's (`pair`); this
    /// is the dangling one, which would have created its target.
    #[test]
    fn a_dangling_symlink_fails_the_creation_and_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("target.qemu.log");
        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(&dangling, &path).unwrap();
        let err = create_new(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!dangling.exists());
        std::fs::remove_file(&path).unwrap();
        create_new(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
