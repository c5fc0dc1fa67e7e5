//! `nvmfcheck fio` and `nvmfcheck nvme` as a person runs them: JSON on
//! stdout, errors on stderr with a non-zero exit.

use std::process::Output;

use assert_cmd::Command;

fn nvmfcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nvmfcheck"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn fio_prints_the_summary_of_a_verify_job() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk");
    let out = nvmfcheck(&[
        "fio",
        "--filename",
        file.to_str().unwrap(),
        "--rw",
        "randrw",
        "--bs",
        "4k",
        "--iodepth",
        "1",
        "--size",
        "2M",
        "--offset",
        "1M",
        "--verify",
        "crc32",
        "--direct",
        "false",
        "--ioengine",
        "psync",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["jobs"][0]["error"], 0);
    assert!(summary["jobs"][0]["read"]["io_bytes"].as_u64().unwrap() > 0);
    assert!(summary["fio_version"].as_str().unwrap().starts_with("fio-"));
    // 1 MiB offset + 2 MiB region.
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 3 << 20);
}

#[test]
fn fio_refuses_a_bad_job_on_stderr() {
    let out = nvmfcheck(&[
        "fio",
        "--filename",
        "/tmp/nvmfcheck-never-created",
        "--bs",
        "1000",
        "--size",
        "1M",
        "--verify",
        "crc32",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("bs 1000 must be a power of two"), "{err}");
}

#[test]
fn fio_refuses_runtime_with_verify() {
    let out = nvmfcheck(&[
        "fio",
        "--filename",
        "/tmp/nvmfcheck-never-created",
        "--size",
        "1M",
        "--verify",
        "crc32",
        "--runtime",
        "5",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("bound a verify job by size"));
}

#[test]
fn nvme_connect_refuses_a_host_name() {
    let out = nvmfcheck(&[
        "nvme",
        "connect",
        "--traddr",
        "target.example",
        "--trsvcid",
        "8430",
        "--nqn",
        "nqn.x",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid transport address `target.example`"),
        "{err}"
    );
}

#[test]
fn nvme_connect_takes_a_share_uri_and_checks_it() {
    let out = nvmfcheck(&["nvme", "connect", "--uri", "nvmf://127.0.0.1/nqn.x"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the port is missing"));
}

#[test]
fn nvme_status_of_an_unconnected_subsystem_is_null() {
    let out = nvmfcheck(&[
        "nvme",
        "status",
        "--nqn",
        "nqn.2019-05.io.openebs:nvmfcheck-none",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "null");
}
