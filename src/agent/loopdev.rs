//! Loop devices that give a bdev the block size its URI asks for.
//!
//! The kernel target has no block size setting: it exports a block device
//! with the device's logical block size, and a file with its file system's
//! block size capped at 4096 (`min(i_blkbits, 12)` in
//! `drivers/nvme/target/io-cmd-file.c`), so 4096 on tmpfs and ext4. When a
//! bdev asks for another size (Mayastor's `blk_size`, 512 unless given),
//! the agent puts a loop device with that logical block size between the
//! file or device and nvmet, configured in one step with `LOOP_CONFIGURE`
//! (Linux 5.8).
//!
//! The loop device is made when the bdev is shared, with
//! `LO_FLAGS_AUTOCLEAR`, and the agent closes its own descriptor once nvmet
//! has opened the device. The kernel then detaches it when nvmet closes it
//! (Unshare disables the namespace), and at once if the share failed before
//! nvmet opened it, so neither an unshare, a failed share nor a crash
//! leaves one behind. While shared it outlives agent restarts, nvmet
//! holding it, and a restarted agent reads its backing file from sysfs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

/// A loop device the agent cannot set up (gRPC `INTERNAL`).
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// No `/dev/loop-control`.
    #[error("/dev/loop-control is missing, so no loop device can give this bdev its block size: load the loop module (`modprobe loop`)")]
    NoControl,
    /// A system call failed.
    #[error("cannot {op} {}: {cause}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The device or file.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Every free device was taken by someone else before it was set up.
    #[error("no free loop device could be set up: each one was taken before it could be configured; retry")]
    Busy,
}

/// A loop device attached by [`Loops::attach`]. It stays attached while
/// this handle or anyone else (nvmet) holds it open.
#[derive(Debug)]
pub struct Attached {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// The agent's descriptor, closed when the handle is dropped.
    _hold: Option<File>,
}

/// Setting up loop devices and reading back what they hold.
pub trait Loops: Send + Sync {
    /// Attaches `backing` to a free loop device with `blk_size`-byte logical
    /// blocks that detaches itself on its last close.
    fn attach(&self, backing: &Path, blk_size: u32) -> Result<Attached, LoopError>;

    /// The backing file and logical block size of `device`, if it is a loop
    /// device with a backing file.
    fn backing(&self, device: &Path) -> Option<(PathBuf, u32)>;
}

const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` of `include/uapi/linux/loop.h`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `include/uapi/linux/loop.h`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);

/// How often a free device is asked for when another process takes it
/// first (util-linux's losetup retries the same way).
const ATTACH_TRIES: usize = 8;
/// How long a new device node may take to appear in devtmpfs.
const NODE_WAIT: Duration = Duration::from_millis(25);
const NODE_TRIES: usize = 16;

/// The kernel's loop devices.
#[derive(Debug, Default)]
pub struct KernelLoops;

impl KernelLoops {
    fn open_node(path: &Path) -> Result<File, LoopError> {
        let mut tries = 0;
        loop {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => return Ok(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < NODE_TRIES => {
                    tries += 1;
                    std::thread::sleep(NODE_WAIT);
                }
                Err(cause) => {
                    return Err(LoopError::Io {
                        op: "open",
                        path: path.to_path_buf(),
                        cause,
                    })
                }
            }
        }
    }
}

impl Loops for KernelLoops {
    fn attach(&self, backing: &Path, blk_size: u32) -> Result<Attached, LoopError> {
        let control_path = Path::new("/dev/loop-control");
        let control = match OpenOptions::new().read(true).write(true).open(control_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoopError::NoControl),
            Err(cause) => {
                return Err(LoopError::Io {
                    op: "open",
                    path: control_path.to_path_buf(),
                    cause,
                })
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(backing)
            .map_err(|cause| LoopError::Io {
                op: "open",
                path: backing.to_path_buf(),
                cause,
            })?;
        let fd = u32::try_from(file.as_raw_fd()).map_err(|_| LoopError::Io {
            op: "pass the descriptor of",
            path: backing.to_path_buf(),
            cause: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        for _ in 0..ATTACH_TRIES {
            // SAFETY: `control` is /dev/loop-control, open for the call;
            // LOOP_CTL_GET_FREE takes no argument.
            let n =
                unsafe { loop_ctl_get_free(control.as_raw_fd()) }.map_err(|e| LoopError::Io {
                    op: "ask for a free loop device (LOOP_CTL_GET_FREE) through",
                    path: control_path.to_path_buf(),
                    cause: e.into(),
                })?;
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let device = Self::open_node(&path)?;
            let config = LoopConfig {
                fd,
                block_size: blk_size,
                info: LoopInfo64 {
                    lo_device: 0,
                    lo_inode: 0,
                    lo_rdevice: 0,
                    lo_offset: 0,
                    lo_sizelimit: 0,
                    lo_number: 0,
                    lo_encrypt_type: 0,
                    lo_encrypt_key_size: 0,
                    lo_flags: LO_FLAGS_AUTOCLEAR,
                    lo_file_name: [0; LO_NAME_SIZE],
                    lo_crypt_name: [0; LO_NAME_SIZE],
                    lo_encrypt_key: [0; LO_KEY_SIZE],
                    lo_init: [0; 2],
                },
                reserved: [0; 8],
            };
            // SAFETY: `device` is an open loop device and `config` a fully
            // initialised `struct loop_config` that outlives the call.
            match unsafe { loop_configure(device.as_raw_fd(), &config) } {
                Ok(_) => {
                    return Ok(Attached {
                        path,
                        _hold: Some(device),
                    })
                }
                // Another process configured it between the two calls.
                Err(Errno::EBUSY) => continue,
                Err(e) => {
                    return Err(LoopError::Io {
                        op: "configure (LOOP_CONFIGURE)",
                        path,
                        cause: e.into(),
                    })
                }
            }
        }
        Err(LoopError::Busy)
    }

    fn backing(&self, device: &Path) -> Option<(PathBuf, u32)> {
        let name = device
            .strip_prefix("/dev")
            .ok()?
            .to_str()
            .filter(|n| n.starts_with("loop"))?;
        let sys = Path::new("/sys/block").join(name);
        let file = std::fs::read_to_string(sys.join("loop/backing_file")).ok()?;
        let blk_size = std::fs::read_to_string(sys.join("queue/logical_block_size"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The kernel marks a backing file that was removed: it names nothing.
        let file = file.trim_end_matches('\n');
        if file.ends_with(" (deleted)") {
            return None;
        }
        Some((PathBuf::from(file), blk_size))
    }
}

/// Loop devices modelled in a directory, for tests of the code that uses
/// them (the real ones are exercised by the agent in the VMs): `attach`
/// makes a symlink `<dir>/loopN` to the backing file, with its block size
/// in `<dir>/loopN.blk_size`. Like the kernel's, they outlive the agent
/// that made them: a new `FakeLoops` on the same directory sees them.
#[cfg(any(test, feature = "fakes"))]
#[derive(Debug)]
pub struct FakeLoops {
    dir: PathBuf,
}

#[cfg(any(test, feature = "fakes"))]
impl FakeLoops {
    /// Models loop devices as symlinks in `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn device(&self, n: usize) -> PathBuf {
        self.dir.join(format!("loop{n}"))
    }

    /// How many devices were attached so far.
    pub fn attached(&self) -> usize {
        (0..)
            .take_while(|n| self.device(*n).symlink_metadata().is_ok())
            .count()
    }
}

#[cfg(any(test, feature = "fakes"))]
impl Loops for FakeLoops {
    fn attach(&self, backing: &Path, blk_size: u32) -> Result<Attached, LoopError> {
        let path = self.device(self.attached());
        let io = |cause| LoopError::Io {
            op: "make the model of",
            path: path.clone(),
            cause,
        };
        std::fs::write(path.with_extension("blk_size"), blk_size.to_string()).map_err(io)?;
        std::os::unix::fs::symlink(backing, &path).map_err(io)?;
        Ok(Attached { path, _hold: None })
    }

    fn backing(&self, device: &Path) -> Option<(PathBuf, u32)> {
        if device.parent() != Some(self.dir.as_path()) {
            return None;
        }
        let file = std::fs::read_link(device).ok()?;
        let blk_size = std::fs::read_to_string(device.with_extension("blk_size")).ok()?;
        Some((file, blk_size.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_the_kernel_layout() {
        // include/uapi/linux/loop.h: loop_info64 is 232 bytes; loop_config
        // is two u32, the info and eight u64.
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 8 + 232 + 64);
    }

    #[test]
    fn non_loop_devices_have_no_backing() {
        assert_eq!(KernelLoops.backing(Path::new("/dev/vda")), None);
        assert_eq!(KernelLoops.backing(Path::new("/tmp/loop0")), None);
    }
}
