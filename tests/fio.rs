//! The fio wrapper against the real fio on a small temporary file: a verify
//! job passes, corruption between writing and verifying is caught, and a
//! job past its deadline is killed.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nvmfcheck::cmd::CmdError;
use nvmfcheck::fio::{self, FioError, FioJob, Rw, Verify};

const MIB: u64 = 1 << 20;
const DEADLINE: Duration = Duration::from_secs(120);

/// Buffered psync I/O: works on any filesystem (tmpfs has no O_DIRECT) and
/// keeps these tests fast.
fn on_any_fs(job: FioJob) -> FioJob {
    job.direct(false).ioengine("psync")
}

/// Job names unique to this process, so the files fio might leave in the
/// current directory (see `state_files_left`) cannot be stale ones.
fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// fio's default (`verify_state_save=1`) writes `local-<job>-<n>-verify.state`
/// into the current directory after a write phase or a failed verify.
fn state_files_left(job: &str) -> bool {
    Path::new(&format!("local-{job}-0-verify.state")).exists()
}

/// Sequential write of `size` bytes with crc32 headers, without the verify phase.
fn write_job(path: &Path, size: u64) -> FioJob {
    on_any_fs(FioJob::new(path, Rw::Write, size))
        .name(unique("write"))
        .verify(Verify::Crc32)
        .do_verify(false)
}

/// Checks what `write_job` wrote, writing nothing.
fn verify_only_job(path: &Path, size: u64) -> FioJob {
    write_job(path, size)
        .name(unique("verify"))
        .verify_only(true)
        .do_verify(true)
}

fn scribble(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[tokio::test]
async fn a_small_verify_job_passes_with_stats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk");
    let job = on_any_fs(FioJob::verify_randrw(&path, 4 * MIB))
        .bs(4096)
        .iodepth(1)
        .verify(Verify::Crc32);
    let summary = fio::run(&[job], DEADLINE).await.unwrap();

    assert!(
        summary.fio_version.starts_with("fio-"),
        "{}",
        summary.fio_version
    );
    assert_eq!(summary.jobs.len(), 1);
    let j = &summary.jobs[0];
    assert_eq!((j.name.as_str(), j.error), ("randrw", 0));
    assert!(j.write.io_bytes > 0 && j.read.io_bytes > 0, "{j:?}");
    assert!(j.read.iops > 0.0 && j.read.bw_bytes > 0, "{j:?}");
    assert!(
        j.read.lat_p50_ns > 0 && j.read.lat_p99_ns >= j.read.lat_p50_ns,
        "{j:?}"
    );
    assert!(summary.command_line.contains("--verify=crc32"));
    assert!(summary.elapsed > Duration::ZERO);
}

#[tokio::test]
async fn corruption_between_write_and_verify_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk");
    let size = 4 * MIB;

    fio::run(&[write_job(&path, size)], DEADLINE).await.unwrap();
    // Control: untouched data verifies, so the failures below come from the
    // corruption and nothing else.
    let clean = fio::run(&[verify_only_job(&path, size)], DEADLINE)
        .await
        .unwrap();
    assert_eq!(clean.jobs[0].read.io_bytes, size);

    // Each case: where to scribble, and what fio says about it.
    let cases = [
        (MIB, "bad magic header"),                 // the block's verify header
        (2 * MIB + 1000, "verify failed at file"), // the block's data: crc mismatch
    ];
    for (offset, says) in cases {
        fio::run(&[write_job(&path, size)], DEADLINE).await.unwrap();
        scribble(&path, offset, b"corrupted by nvmfcheck test");

        let err = fio::run(&[verify_only_job(&path, size)], DEADLINE)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(says), "{says:?} not in: {msg}");
        let FioError::Failed {
            stderr, summary, ..
        } = err
        else {
            panic!("expected a failed run, got {msg}");
        };
        assert!(stderr.contains(says), "{stderr}");
        let summary = summary.expect("fio writes its summary even when a job fails");
        assert_eq!(
            summary.jobs[0].error, 84,
            "fio reports verify errors as EILSEQ"
        );
    }
    assert!(!state_files_left(&unique("write")) && !state_files_left(&unique("verify")));
}

#[tokio::test]
async fn fio_past_its_deadline_is_killed_with_all_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow-disk");
    // 64 MiB at 1 MiB/s would take a minute.
    let job = on_any_fs(FioJob::new(&path, Rw::Write, 64 * MIB)).extra("rate", "1m");
    let start = Instant::now();
    let err = fio::run(&[job], Duration::from_secs(2)).await.unwrap_err();
    assert!(
        matches!(err, FioError::Command(CmdError::Timeout { .. })),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // The kill reaches the process; give the kernel a moment to reap it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        processes_naming(&path).is_empty(),
        "fio still running: {:?}",
        processes_naming(&path)
    );
}

#[tokio::test]
async fn an_invalid_job_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never-created");
    let job = on_any_fs(FioJob::verify_randrw(&path, 4 * MIB)).bs(1000);
    let err = fio::run(&[job], DEADLINE).await.unwrap_err();
    assert!(err.to_string().contains("bs 1000"), "{err}");
    assert!(!path.exists());
}

#[tokio::test]
async fn a_missing_directory_or_device_is_refused_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let job = on_any_fs(FioJob::verify_randrw(missing.join("disk"), MIB));
    let err = fio::run(&[job], DEADLINE).await.unwrap_err();
    assert!(err.to_string().contains("directory of"), "{err}");
    assert!(!missing.exists());

    let device = Path::new("/dev/nvmfcheck-test-no-such-device");
    let err = fio::run(&[FioJob::verify_randrw(device, MIB)], DEADLINE)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("namespace connected"), "{err}");
    assert!(!device.exists());
}

#[tokio::test]
async fn reports_the_installed_version() {
    let v = fio::version(Duration::from_secs(10)).await.unwrap();
    assert!(v.starts_with("fio-"), "{v}");
}

/// Pids whose command line mentions `path`.
fn processes_naming(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}
