//! The file operations the agent performs on the kernel target's configfs
//! tree, as a trait so that the logic above it runs against
//! [`FakeConfigfs`](super::fake::FakeConfigfs) in tests and against the real
//! `/sys/kernel/config/nvmet` in the VM.
//!
//! configfs is not a plain directory tree: `mkdir` creates an object whose
//! attribute files and default sub-directories appear with it, `rmdir`
//! removes such a populated directory but refuses while it holds
//! user-created directories or symlinks, a symlink in a port's `subsystems/`
//! exports a subsystem on that port, and writing an attribute can fail with
//! the kernel's reason as the errno.

use std::io;
use std::path::{Path, PathBuf};

/// Operations on an nvmet configfs tree. Paths are relative to the `nvmet`
/// directory (`subsystems/<nqn>`, `ports/1/subsystems/<nqn>`, ...).
pub trait Configfs: Send + Sync + 'static {
    /// Creates an object (`mkdir`).
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Removes an object (`rmdir`).
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// Reads an attribute, as the kernel prints it (usually with a newline).
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes an attribute in one `write` call, as configfs requires.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Creates symlink `link` pointing at `target` (both relative).
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// Removes a symlink.
    fn unlink(&self, link: &Path) -> io::Result<()>;
    /// Where symlink `link` points. Only its last component is meaningful
    /// to callers: the real configfs answers with a path of its own making.
    fn read_link(&self, link: &Path) -> io::Result<PathBuf>;
    /// Names of the entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether anything (directory, attribute or link) is at `path`.
    fn exists(&self, path: &Path) -> bool;
}

/// The real configfs, rooted at e.g. `/sys/kernel/config/nvmet`.
#[derive(Debug, Clone)]
pub struct SysConfigfs {
    root: PathBuf,
}

impl SysConfigfs {
    /// The tree under `root` (the `nvmet` directory).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

impl Configfs for SysConfigfs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(self.root.join(path))
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(self.root.join(path))
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(self.root.join(path))
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.root.join(path))?;
        // One write: configfs takes each write(2) as a whole value.
        let n = file.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write ({n} of {} bytes)", value.len()),
            ));
        }
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(self.root.join(target), self.root.join(link))
    }

    fn unlink(&self, link: &Path) -> io::Result<()> {
        std::fs::remove_file(self.root.join(link))
    }

    fn read_link(&self, link: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(self.root.join(link))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.root.join(dir))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(self.root.join(path)).is_ok()
    }
}
