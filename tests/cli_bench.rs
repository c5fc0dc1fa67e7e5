//! `nvmfcheck bench compare` and `vm bench --compare`: two bench.json
//! compared figure by figure, and a file that is not one refused before
//! anything runs.

use std::time::Duration;

use assert_cmd::Command;
use nvmfcheck::bench::record::example;

fn nvmfcheck(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("nvmfcheck")
        .unwrap()
        .args(args)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn compare_prints_each_figure_and_its_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    example(4.0, 5.0).write(&old).unwrap();
    example(3.0, 5.0).write(&new).unwrap();
    let (old, new) = (old.join("bench.json"), new.join("bench.json"));
    let (code, stdout, stderr) = nvmfcheck(&[
        "bench",
        "compare",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("ready_secs"), "4.00 3.00 0.75 better");
    assert_eq!(line("control.list.p50_ms"), "5.00 5.00 1.00");
    assert!(stdout.contains("scale.share_secs"), "{stdout}");
}

#[test]
fn a_file_that_is_not_bench_json_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("report.json");
    std::fs::write(&bad, "{\"schema\": 1, \"categories\": []}").unwrap();
    let bad = bad.to_str().unwrap();
    let (code, _, stderr) = nvmfcheck(&["bench", "compare", bad, bad]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("{bad}: not a bench record")),
        "{stderr}"
    );

    // vm bench reads it before it boots or makes its output dir.
    let out = dir.path().join("out");
    let (code, _, stderr) = nvmfcheck(&[
        "vm",
        "bench",
        "--compare",
        bad,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a bench record"), "{stderr}");
    assert!(
        !out.exists(),
        "vm bench made {} before refusing",
        out.display()
    );
    let missing = dir.path().join("missing.json");
    let (code, _, stderr) = nvmfcheck(&["vm", "bench", "--compare", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.json"), "{stderr}");
}
