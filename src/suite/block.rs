//! Block-device operations the cases need beside fio: zeroing and
//! discarding ranges (util-linux `blkdiscard`), reading without the page
//! cache, checksums of a range, and the queue limits the kernel shows in
//! sysfs.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd::Cmd;
use crate::suite::CheckError;

/// Deadline of one `blkdiscard`.
const BLKDISCARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Alignment of `O_DIRECT` buffers: a page, which covers any logical
/// block size.
const DIRECT_ALIGN: usize = 4096;

/// Bytes [`checksum`] reads at a time.
const CHECKSUM_CHUNK: u64 = 1 << 20;

/// Writes zeroes over `len` bytes at `offset` (`blkdiscard -z`, which the
/// host sends as NVMe Write Zeroes): afterwards they must read as zeroes.
pub(crate) async fn zero(device: &Path, offset: u64, len: u64) -> Result<(), CheckError> {
    blkdiscard(device, offset, len, true).await
}

/// Discards `len` bytes at `offset` (`blkdiscard`, which the host sends as
/// NVMe Dataset Management, deallocate). What they read afterwards is up
/// to the target.
pub(crate) async fn discard(device: &Path, offset: u64, len: u64) -> Result<(), CheckError> {
    blkdiscard(device, offset, len, false).await
}

async fn blkdiscard(device: &Path, offset: u64, len: u64, zero: bool) -> Result<(), CheckError> {
    let mut cmd = Cmd::new("blkdiscard")
        .args(["-o", &offset.to_string(), "-l", &len.to_string()])
        .timeout(BLKDISCARD_TIMEOUT);
    if zero {
        cmd = cmd.arg("-z");
    }
    cmd.arg(device).run().await?;
    Ok(())
}

/// Reads `len` bytes at `offset` with `O_DIRECT`, so that what the target
/// holds is read rather than the host's page cache.
pub(crate) async fn read_direct(
    device: &Path,
    offset: u64,
    len: usize,
    timeout: Duration,
) -> Result<Vec<u8>, CheckError> {
    off_thread(device, offset, len as u64, timeout, move |path| {
        read_direct_blocking(path, offset, len)
    })
    .await
}

fn read_direct_blocking(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    read_at(&open_direct(path)?, offset, len)
}

/// `path` opened for reading with `O_DIRECT`.
fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(path)
}

/// `len` bytes of `file` (opened with `O_DIRECT`) at `offset`.
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    // O_DIRECT needs an aligned buffer: take an aligned window of a larger one.
    let mut buf = vec![0u8; len + DIRECT_ALIGN];
    let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
    let window = buf
        .get_mut(start..start + len)
        .ok_or_else(|| std::io::Error::other("cannot align the read buffer"))?;
    file.read_exact_at(window, offset)?;
    Ok(window.to_vec())
}

/// The sha256, in hex, of `len` bytes of `device` at `offset`, read with
/// O_DIRECT so that no page cache stands in for the disk.
pub(crate) async fn checksum(
    device: &Path,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> Result<String, CheckError> {
    off_thread(device, offset, len, timeout, move |path| {
        checksum_blocking(path, offset, len)
    })
    .await
}

/// Runs `read`, which reads `len` bytes of `device` at `offset`, on a
/// blocking thread within `timeout`; its errors name the range.
async fn off_thread<T: Send + 'static>(
    device: &Path,
    offset: u64,
    len: u64,
    timeout: Duration,
    read: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
) -> Result<T, CheckError> {
    let path = device.to_path_buf();
    let task = tokio::task::spawn_blocking(move || read(&path));
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => result.map_err(|e| {
            CheckError::Failed(format!(
                "cannot read {len} bytes at {offset} of {}: {e}",
                device.display()
            ))
        }),
        Ok(Err(join)) => Err(CheckError::Failed(format!(
            "reading {} failed: {join}",
            device.display()
        ))),
        Err(_) => Err(CheckError::Failed(format!(
            "reading {len} bytes of {} took longer than {}s",
            device.display(),
            timeout.as_secs_f64()
        ))),
    }
}

fn checksum_blocking(path: &Path, offset: u64, len: u64) -> std::io::Result<String> {
    use sha2::Digest;
    let file = open_direct(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(CHECKSUM_CHUNK);
        // At most CHECKSUM_CHUNK, which fits.
        hasher.update(read_at(&file, offset + done, chunk as usize)?);
        done += chunk;
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A queue limit of a block device, `/sys/block/<name>/queue/<attr>`.
pub(crate) fn queue_attr(device: &Path, attr: &str) -> Result<String, CheckError> {
    let name = device
        .file_name()
        .ok_or_else(|| CheckError::Failed(format!("{} names no device", device.display())))?;
    let path: PathBuf = Path::new("/sys/block").join(name).join("queue").join(attr);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| CheckError::Failed(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_range_without_the_page_cache() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let file = dir.path().join("disk");
        let data: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
            .open(&file);
        if direct.is_err() {
            // A file system without O_DIRECT (tmpfs in some build sandboxes).
            return;
        }
        let read = read_direct(&file, 4096, 8192, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(read, data[4096..12288]);
        let err = read_direct(&file, 16384, 4096, Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("at 16384") && err.contains("disk"), "{err}");
        // More than one chunk: the sha256 of the range, as sha256sum gives it.
        let big: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &big).unwrap();
        let sum = checksum(&file, 4096, (2 << 20) + 8192, Duration::from_secs(10))
            .await
            .unwrap();
        use sha2::Digest;
        let want = sha2::Sha256::digest(&big[4096..4096 + (2 << 20) + 8192]);
        let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sum, want);
    }

    #[test]
    fn queue_attributes_name_the_file_they_miss() {
        let err = queue_attr(Path::new("/dev/nonexistent0"), "discard_max_bytes")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/sys/block/nonexistent0/queue/discard_max_bytes"),
            "{err}"
        );
    }
}
