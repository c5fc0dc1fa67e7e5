//! What backs a bdev: probing block devices and files, and the RAM files of
//! malloc bdevs.
//!
//! Block size is what the kernel target will export, so that `List` agrees
//! with what the initiator sees: the logical block size (`BLKSSZGET`) for a
//! block device; for a file nvmet uses `min(i_blkbits, 12)` of its inode
//! (`drivers/nvme/target/io-cmd-file.c`), i.e. the file system block size
//! capped at 4096 — 4096 on tmpfs and ext4.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};

use super::uri::{MallocSize, DEFAULT_BLK_SIZE};

/// `RAMFS_MAGIC` from `linux/magic.h` (nix has no constant for it).
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

/// Size and block size of a bdev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    /// Bytes.
    pub size: u64,
    /// Bytes per logical block.
    pub blk_size: u32,
}

impl Geometry {
    /// Whole blocks (nvmet exports `size >> block shift`).
    pub fn num_blocks(&self) -> u64 {
        self.size / u64::from(self.blk_size.max(1))
    }
}

/// What a path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A block device: nvmet's bio backend.
    BlockDevice,
    /// A regular file: nvmet's file backend. On tmpfs or ramfs it must use
    /// buffered I/O, since those refuse `O_DIRECT` on Linux before 6.6.
    File {
        /// Whether the file lives in RAM.
        in_ram: bool,
    },
}

/// Why a path cannot back a bdev.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Nothing at that path (gRPC `NOT_FOUND`).
    #[error("{} does not exist; give the path of a block device or regular file", .path.display())]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A path or one of its names is longer than Linux allows
    /// (gRPC `INVALID_ARGUMENT`).
    #[error("the path {} is too long for Linux (a name may have 255 bytes, a path 4095)", .path.display())]
    TooLong {
        /// The path.
        path: PathBuf,
    },
    /// A directory (gRPC `INVALID_ARGUMENT`).
    #[error("{} is a directory; give a block device or regular file", .path.display())]
    Directory {
        /// The path.
        path: PathBuf,
    },
    /// A character device, FIFO or socket (gRPC `INVALID_ARGUMENT`).
    #[error("{} is a {kind}, not a block device or regular file", .path.display())]
    Unsupported {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Smaller than one block (gRPC `INVALID_ARGUMENT`).
    #[error("{} holds {size} bytes, less than one {blk_size}-byte block; give a bigger device or file", .path.display())]
    TooSmall {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Its block size.
        blk_size: u32,
    },
    /// A malloc bdev larger than the RAM file system has room for
    /// (gRPC `INVALID_ARGUMENT`).
    #[error("{asked} does not fit: the RAM file system at {} has {free_mb} MiB free for new malloc bdevs; ask for at most that", .dir.display())]
    NoRoom {
        /// What was asked for, as in the URI (`size_mb=64`).
        asked: MallocSize,
        /// The malloc directory.
        dir: PathBuf,
        /// What is free.
        free_mb: u64,
    },
    /// A block size below the device's own (gRPC `INVALID_ARGUMENT`).
    #[error("blk_size={asked} is smaller than the logical block size of {}, {logical} bytes; give blk_size={logical}, or leave it out", .path.display())]
    BlockSizeBelowDevice {
        /// The device.
        path: PathBuf,
        /// What was asked for.
        asked: u32,
        /// The device's logical block size.
        logical: u32,
    },
    /// Any other system error (gRPC `INTERNAL`).
    #[error("cannot {op} {}: {cause}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DeviceError + 'a {
    move |cause| DeviceError::Io {
        op,
        path: path.to_path_buf(),
        cause,
    }
}

nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(
    blk_sszget,
    nix::request_code_none!(0x12, 104),
    nix::libc::c_int
);

/// Probes a path: what it is, how big, and the block size nvmet would
/// export it with ([`export_blk_size`] checks it holds a block).
pub fn probe(path: &Path) -> Result<(Backing, Geometry), DeviceError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            let path = path.to_path_buf();
            return Err(
                match nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                    // ENOTDIR: a component is a file, so nothing is at the path.
                    nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => {
                        DeviceError::Missing { path }
                    }
                    nix::errno::Errno::ENAMETOOLONG => DeviceError::TooLong { path },
                    _ => io_err("stat", &path)(e),
                },
            );
        }
    };
    let ft = meta.file_type();
    let (backing, geometry) = if ft.is_block_device() {
        (Backing::BlockDevice, block_device_geometry(path)?)
    } else if ft.is_file() {
        let in_ram = in_ram(path).map_err(|e| io_err("statfs", path)(e.into()))?;
        let blk_size = match meta.blksize().min(4096) {
            b if b >= 512 && b.is_power_of_two() => b as u32,
            _ => 512,
        };
        let geometry = Geometry {
            size: meta.len(),
            blk_size,
        };
        (Backing::File { in_ram }, geometry)
    } else if ft.is_dir() {
        return Err(DeviceError::Directory {
            path: path.to_path_buf(),
        });
    } else {
        let kind = if ft.is_char_device() {
            "character device"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(DeviceError::Unsupported {
            path: path.to_path_buf(),
            kind,
        });
    };
    Ok((backing, geometry))
}

fn block_device_geometry(path: &Path) -> Result<Geometry, DeviceError> {
    use std::os::fd::AsRawFd;
    let file = File::open(path).map_err(io_err("open", path))?;
    let fd = file.as_raw_fd();
    let mut size: u64 = 0;
    let mut blk: nix::libc::c_int = 0;
    // SAFETY: `fd` is an open block device for the duration of the calls and
    // both pointers are to properly sized locals, as the ioctls require.
    unsafe {
        blk_getsize64(fd, &mut size)
            .map_err(|e| io_err("read the size (BLKGETSIZE64) of", path)(e.into()))?;
        blk_sszget(fd, &mut blk)
            .map_err(|e| io_err("read the block size (BLKSSZGET) of", path)(e.into()))?;
    }
    Ok(Geometry {
        size,
        blk_size: u32::try_from(blk).unwrap_or(512),
    })
}

/// The block size a bdev on `path` exports when its URI asks for `asked`:
/// that size, or by default 512 (Mayastor's default) unless the device's
/// logical blocks are bigger. A size below a block device's logical block
/// size is refused, as Mayastor's aio module does; a file takes either
/// (see [`super::loopdev`] for how). `probed` is what [`probe`] found.
pub fn export_blk_size(
    path: &Path,
    (backing, probed): (Backing, Geometry),
    asked: Option<u32>,
) -> Result<Geometry, DeviceError> {
    let blk_size = match (backing, asked) {
        (Backing::BlockDevice, Some(asked)) if asked < probed.blk_size => {
            return Err(DeviceError::BlockSizeBelowDevice {
                path: path.to_path_buf(),
                asked,
                logical: probed.blk_size,
            })
        }
        (Backing::BlockDevice, None) => probed.blk_size.max(DEFAULT_BLK_SIZE),
        (_, Some(asked)) => asked,
        (Backing::File { .. }, None) => DEFAULT_BLK_SIZE,
    };
    let geometry = Geometry {
        size: probed.size,
        blk_size,
    };
    if geometry.num_blocks() == 0 {
        return Err(DeviceError::TooSmall {
            path: path.to_path_buf(),
            size: geometry.size,
            blk_size,
        });
    }
    Ok(geometry)
}

/// Whether `path` is on tmpfs or ramfs.
pub fn in_ram(path: &Path) -> nix::Result<bool> {
    let t = statfs(path)?.filesystem_type();
    Ok(t == TMPFS_MAGIC || t == RAMFS_MAGIC)
}

/// The directory holding malloc bdevs' RAM files, one file per bdev named
/// after it. Files are sparse: RAM is used as data is written.
#[derive(Debug, Clone)]
pub struct MallocDir {
    dir: PathBuf,
}

impl MallocDir {
    /// Uses `dir`, creating it if needed.
    pub fn open(dir: PathBuf) -> Result<Self, DeviceError> {
        std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of bdev `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates (or empties) the file of bdev `name` with `size` in blocks
    /// of `blk_size`, refusing sizes the file system cannot hold next to the
    /// others, whose sizes add up to `claimed`.
    pub fn create(
        &self,
        name: &str,
        size: MallocSize,
        blk_size: u32,
        claimed: u64,
    ) -> Result<PathBuf, DeviceError> {
        let bytes = size.bytes(blk_size);
        // What is available minus every byte the others may claim is a
        // lower bound of what is free: enough, it spares reading each file
        // (the exact count costs a stat per bdev, which grows every Create).
        let available = self.available_bytes()?;
        let free = match available.saturating_sub(claimed) >= bytes {
            true => available,
            false => self.free_bytes(available)?,
        };
        if bytes > free {
            return Err(DeviceError::NoRoom {
                asked: size,
                dir: self.dir.clone(),
                free_mb: free >> 20,
            });
        }
        let path = self.path(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        if let Err(e) = file.set_len(bytes) {
            let _ = std::fs::remove_file(&path);
            return Err(io_err("size", &path)(e));
        }
        Ok(path)
    }

    /// Removes the file of bdev `name`; a missing file is not an error.
    pub fn remove(&self, name: &str) -> Result<(), DeviceError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Names of the files present.
    pub fn names(&self) -> Result<Vec<String>, DeviceError> {
        let entries = std::fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// What the file system has available.
    fn available_bytes(&self) -> Result<u64, DeviceError> {
        let vfs = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|e| io_err("statvfs", &self.dir)(e.into()))?;
        #[allow(clippy::useless_conversion)] // the field types differ by target
        Ok(u64::from(vfs.blocks_available()).saturating_mul(u64::from(vfs.fragment_size())))
    }

    /// `available` minus what existing sparse files may still claim.
    fn free_bytes(&self, available: u64) -> Result<u64, DeviceError> {
        let mut free = available;
        for name in self.names()? {
            let path = self.path(&name);
            if let Ok(meta) = std::fs::metadata(&path) {
                let allocated = meta.blocks().saturating_mul(512);
                free = free.saturating_sub(meta.len().saturating_sub(allocated));
            }
        }
        Ok(free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_report_size_and_a_sane_block_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        File::create(&path).unwrap().set_len(8 << 20).unwrap();
        let (backing, g) = probe(&path).unwrap();
        assert!(matches!(backing, Backing::File { .. }));
        assert_eq!(g.size, 8 << 20);
        assert!([512, 1024, 2048, 4096].contains(&g.blk_size), "{g:?}");
        assert_eq!(g.num_blocks() * u64::from(g.blk_size), 8 << 20);
    }

    /// Probes real block devices through the ioctls and compares with
    /// sysfs. Devices this process may not open are passed over; empty
    /// ones (unattached loop devices) go through the ioctls too. Where
    /// there is no block device it may open (not root, or a build sandbox
    /// without /sys, as in the flake's `nextest` check) it says so and
    /// skips; run as root, as CI's second run of those tests is, it must
    /// probe one.
    #[test]
    fn block_devices_are_sized_with_ioctls() {
        let skip = |why: &str| eprintln!("SKIPPED block_devices_are_sized_with_ioctls: {why}");
        let Ok(entries) = std::fs::read_dir("/sys/block") else {
            return skip("no /sys/block here");
        };
        let mut probed = 0;
        let mut denied = 0;
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let sys = Path::new("/sys/block").join(&name);
            let read = |f: &str| -> u64 {
                std::fs::read_to_string(sys.join(f))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            };
            let dev = Path::new("/dev").join(&name);
            let (size, blk) = (read("size") * 512, read("queue/logical_block_size"));
            match probe(&dev) {
                Ok((backing, g)) => {
                    assert_eq!(backing, Backing::BlockDevice);
                    assert_eq!((g.size, u64::from(g.blk_size)), (size, blk), "{name}");
                }
                Err(DeviceError::Missing { .. }) => continue,
                Err(DeviceError::Io {
                    op: "open", cause, ..
                }) if cause.kind() == io::ErrorKind::PermissionDenied => {
                    denied += 1;
                    continue;
                }
                Err(e) => panic!("{name}: {e}"),
            }
            probed += 1;
        }
        if probed == 0 && denied > 0 && !nix::unistd::geteuid().is_root() {
            return skip("not root: no block device may be opened");
        }
        assert!(probed > 0, "no block device could be probed");
    }

    #[test]
    fn bad_paths_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            probe(&dir.path().join("nope")),
            Err(DeviceError::Missing { .. })
        ));
        assert!(matches!(
            probe(dir.path()),
            Err(DeviceError::Directory { .. })
        ));
        assert!(matches!(
            probe(Path::new("/dev/null")),
            Err(DeviceError::Unsupported {
                kind: "character device",
                ..
            })
        ));
        let empty = dir.path().join("empty");
        File::create(&empty).unwrap();
        assert!(matches!(
            export_blk_size(&empty, probe(&empty).unwrap(), None),
            Err(DeviceError::TooSmall { size: 0, .. })
        ));
    }

    #[test]
    fn block_sizes_default_to_512_and_never_go_below_a_device() {
        let p = Path::new("/dev/x");
        let dev = |blk_size| {
            (
                Backing::BlockDevice,
                Geometry {
                    size: 1 << 20,
                    blk_size,
                },
            )
        };
        let file = (
            Backing::File { in_ram: true },
            Geometry {
                size: 1 << 20,
                blk_size: 4096,
            },
        );
        let blk = |g: Result<Geometry, DeviceError>| g.map(|g| g.blk_size).ok();
        assert_eq!(blk(export_blk_size(p, dev(512), None)), Some(512));
        assert_eq!(blk(export_blk_size(p, dev(512), Some(4096))), Some(4096));
        assert_eq!(blk(export_blk_size(p, dev(4096), None)), Some(4096));
        let err = export_blk_size(p, dev(4096), Some(512)).unwrap_err();
        assert!(err.to_string().contains("give blk_size=4096"), "{err}");
        assert_eq!(blk(export_blk_size(p, file, None)), Some(512));
        assert_eq!(blk(export_blk_size(p, file, Some(4096))), Some(4096));
        let small = (
            Backing::File { in_ram: false },
            Geometry {
                size: 1024,
                blk_size: 4096,
            },
        );
        assert!(matches!(
            export_blk_size(p, small, Some(4096)),
            Err(DeviceError::TooSmall { .. })
        ));
        assert_eq!(blk(export_blk_size(p, small, None)), Some(512));
    }

    #[test]
    fn malloc_files_are_created_sized_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let m = MallocDir::open(dir.path().join("malloc")).unwrap();
        let path = m.create("m0", MallocSize::SizeMb(2), 512, 0).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 << 20);
        assert_eq!(m.names().unwrap(), ["m0"]);
        m.remove("m0").unwrap();
        m.remove("m0").unwrap();
        assert!(m.names().unwrap().is_empty());
    }

    #[test]
    fn malloc_refuses_more_than_is_free_counting_sparse_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = MallocDir::open(dir.path().to_path_buf()).unwrap();
        let free_mb = m.available_bytes().unwrap() >> 20;
        // Margins are wide because other programs share the file system.
        let mb = |n| MallocSize::SizeMb(n);
        let err = m.create("big", mb(free_mb * 2), 512, 0).unwrap_err();
        assert!(matches!(err, DeviceError::NoRoom { .. }), "{err}");
        assert!(m.names().unwrap().is_empty());
        // A sparse file takes no space yet but its size is promised.
        let a = free_mb / 2;
        m.create("a", mb(a), 512, 0).unwrap();
        let err = m
            .create("b", mb(free_mb / 4 * 3), 512, a << 20)
            .unwrap_err();
        assert!(matches!(err, DeviceError::NoRoom { .. }), "{err}");
        assert_eq!(m.names().unwrap(), ["a"]);
        m.create("c", mb(free_mb / 8), 512, a << 20).unwrap();
    }
}
