//! `nvmfcheck run` refuses a category whose dependencies are not proven
//! before it contacts any target: `io` alone needs a report in which
//! `basic` passed (`--require-passed`). With `--progress json` its stdout
//! is one event per line.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;

/// Runs `nvmfcheck run <args>` against a loopback port nothing listens
/// on, reports into `dir`; returns exit status and stderr.
fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_against(&format!("127.0.0.1:{port}"), dir, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `nvmfcheck run <args>` against `target`, reports into `dir`.
fn run_against(target: &str, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::cargo_bin("nvmfcheck")
        .unwrap()
        .arg("run")
        .args(args)
        .args(["--target", target])
        .arg("--report-dir")
        .arg(dir)
        .env_remove("NVMFCHECK_TARGET")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap()
}

/// A report.json in which `basic` has status `status`.
fn report(dir: &Path, status: &str) -> String {
    let path = dir.join(format!("basic-{status}.json"));
    let json = serde_json::json!({
        "schema": 1, "status": status, "error": null, "target": "192.168.1.2:10124",
        "started_unix": 0, "duration_secs": 1.0,
        "versions": { "nvmfcheck": "0", "kernel": "6.1", "fio": "fio-3.33", "nvme_cli": "2.3" },
        "categories": [ { "name": "basic", "status": status, "reason": null,
                          "duration_secs": 1.0, "cases": [] } ]
    });
    std::fs::write(&path, json.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn io_alone_is_refused_without_a_passing_basic_report() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), &["io"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("category io depends on basic")
            && err.contains("no earlier report was given")
            && err.contains("nvmfcheck run basic io")
            && err.contains("--require-passed"),
        "{err}"
    );
    let failed = report(dir.path(), "failed");
    let (code, err) = run(dir.path(), &["io", "--require-passed", &failed]);
    assert_ne!(code, 0);
    assert!(err.contains("did not pass in the given report"), "{err}");
    // Refused before anything ran: no report was written.
    assert!(!dir.path().join("report.json").exists());

    // With basic's passing report the run goes ahead, as far as the absent
    // target.
    let passed = report(dir.path(), "passed");
    let (code, err) = run(dir.path(), &["io", "--require-passed", &passed]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot start the run") && !err.contains("depends on"),
        "{err}"
    );
}

#[test]
fn progress_json_puts_one_event_per_line_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    // No case matches, so none calls the target: a listener that never
    // answers is enough to connect.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let args = ["basic", "--filter", "no such case", "--progress", "json"];
    let out = run_against(&target, dir.path(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["category_skipped", "run_ended"], "{stdout}");
    assert_eq!(events[0]["name"], "basic");
    assert_eq!(events[0]["reason"], "no case matches --filter");
    // A run in which nothing passed failed.
    assert_eq!(events[1]["status"], "failed");
    assert_eq!(events[1]["target"], target.as_str());
    assert_ne!(out.status.code(), Some(0));
    // The report is still written, and said on stderr.
    assert!(dir.path().join("report.json").exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("report: "));
}
