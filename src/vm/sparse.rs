//! Copying disk images without their holes: a target's 512 MiB data disk
//! holds a few MiB of data, and a copy should take no more room than that
//! (`vm run --keep-state`, `--from-state`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

use super::{hostfs, io_error, VmError};

/// Bytes read and written at a time.
const CHUNK: usize = 1 << 20;

/// Copies the image `from` to a new file `to` (created as
/// [`hostfs::create_new`] does) of the same length, writing only the
/// parts that hold data: what `from`'s file system reports as holes, and
/// chunks of zeroes, stay holes. Returns the bytes written.
pub fn copy(from: &Path, to: &Path) -> Result<u64, VmError> {
    let src = File::open(from).map_err(io_error(format!("cannot open {}", from.display())))?;
    let len = src
        .metadata()
        .map_err(io_error(format!("cannot stat {}", from.display())))?
        .len();
    let dst = hostfs::create_new(to)?;
    let write_err = || io_error(format!("cannot write {}", to.display()));
    dst.set_len(len).map_err(write_err())?;
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0;
    let mut pos = 0;
    while pos < len {
        let Some((start, end)) = next_data(&src, pos, len)
            .map_err(|e| VmError::Invalid(format!("cannot seek in {}: {e}", from.display())))?
        else {
            break;
        };
        let mut off = start;
        while off < end {
            // At most CHUNK, which fits a usize.
            let n = (end - off).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            src.read_exact_at(chunk, off)
                .map_err(io_error(format!("cannot read {}", from.display())))?;
            if chunk.iter().any(|&b| b != 0) {
                dst.write_all_at(chunk, off).map_err(write_err())?;
                written += n as u64;
            }
            off += n as u64;
        }
        pos = end;
    }
    dst.sync_all().map_err(write_err())?;
    Ok(written)
}

/// The next range of `file` at or after `pos` that may hold data, up to
/// `len`; `None` when only a hole is left. A file system without
/// `SEEK_DATA` has no holes to skip.
fn next_data(file: &File, pos: u64, len: u64) -> Result<Option<(u64, u64)>, Errno> {
    let at = |o: u64| i64::try_from(o).map_err(|_| Errno::EOVERFLOW);
    let start = match lseek(file, at(pos)?, Whence::SeekData) {
        Ok(o) => o as u64,
        Err(Errno::ENXIO) => return Ok(None),
        Err(Errno::EINVAL) => return Ok(Some((pos, len))),
        Err(e) => return Err(e),
    };
    let end = match lseek(file, at(start)?, Whence::SeekHole) {
        Ok(o) => (o as u64).min(len),
        Err(_) => len,
    };
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_copy_holds_the_same_bytes_and_no_more_blocks_than_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from.img");
        let f = File::create(&from).unwrap();
        f.set_len(64 << 20).unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i % 251) as u8 | 1).collect();
        f.write_all_at(&data, 8 << 20).unwrap();
        f.write_all_at(&[0u8; 1 << 20], 40 << 20).unwrap();
        f.write_all_at(b"end", (64 << 20) - 3).unwrap();
        drop(f);
        let to = dir.path().join("to.img");
        let written = copy(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        // The data, rounded to chunks, not the zeroes nor the holes.
        assert!(written < 6 << 20, "{written}");
        let blocks = std::fs::metadata(&to).unwrap().blocks() * 512;
        assert!(blocks < 8 << 20, "{blocks} bytes allocated");
        // It never writes through an existing file.
        assert!(copy(&from, &to).is_err());
    }
}
