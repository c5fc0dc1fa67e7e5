//! `nvmfcheck bdev` refuses bad command lines and unreachable targets with
//! an exit status and a message on stderr, before or without any gRPC call
//! (docs/bad-input.md, "`nvmfcheck bdev` itself"). Bad input that reaches
//! the target is the table in `nvmfcheck::suite::bad_input`.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// Runs `nvmfcheck bdev <args>`; returns exit status and stderr.
fn bdev(args: &[&str]) -> (i32, String) {
    let out = Command::cargo_bin("nvmfcheck")
        .unwrap()
        .arg("bdev")
        .args(args)
        .env_remove("NVMFCHECK_TARGET")
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_command_lines_are_refused_with_the_fix() {
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["list", "--target", "localhost"],
            1,
            "bad target address \"localhost\": no port (expected host:port",
        ),
        (
            &["list", "--target", ":10124"],
            1,
            "\":10124\": no host (expected host:port",
        ),
        (
            &[
                "create",
                "malloc:///m0?size_mb=1",
                "--target",
                "127.0.0.1:notaport",
            ],
            1,
            "the port is not a number from 1 to 65535",
        ),
        (
            &["share", "m0", "--target", "127.0.0.1:99999"],
            1,
            "the port is not a number from 1 to 65535",
        ),
        (
            &["list", "--timeout", "abc"],
            2,
            "\"abc\" is not a number of seconds",
        ),
        (
            &["list", "--timeout", "0"],
            2,
            "\"0\" is not a number of seconds",
        ),
        (
            &["destroy", "m0", "--timeout=-1"],
            2,
            "\"-1\" is not a number of seconds",
        ),
        (
            &["create"],
            2,
            "required arguments were not provided:\n  <URI>",
        ),
        (
            &["destroy"],
            2,
            "required arguments were not provided:\n  <URI>",
        ),
        (
            &["share"],
            2,
            "required arguments were not provided:\n  <NAME>",
        ),
        (
            &["unshare"],
            2,
            "required arguments were not provided:\n  <NAME>",
        ),
        (
            &["share", "m0", "--proto"],
            2,
            "a value is required for '--proto <PROTO>'",
        ),
        (&["create", "a", "b"], 2, "unexpected argument 'b'"),
        (&["frob"], 2, "unrecognized subcommand 'frob'"),
    ];
    for (args, code, says) in cases {
        let (got, stderr) = bdev(args);
        assert_eq!(got, *code, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_target_that_is_not_there_is_named() {
    let addr = format!("127.0.0.1:{}", closed_port());
    for sub in [
        &["list"][..],
        &["create", "malloc:///m0?size_mb=1"],
        &["unshare", "m0"],
    ] {
        let mut args = sub.to_vec();
        args.extend(["--target", &addr]);
        let (code, stderr) = bdev(&args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot reach the target at {addr} (is the agent running"
            )),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_target_that_does_not_answer_fails_within_the_timeout() {
    // Accepts TCP connections (the kernel's backlog) but never speaks gRPC.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let start = Instant::now();
    let (code, stderr) = bdev(&["list", "--target", &addr, "--timeout", "1"]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("BdevRpc.List to {addr} failed")),
        "{stderr}"
    );
    assert!(stderr.contains("did not answer in time"), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
