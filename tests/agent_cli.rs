//! `nvmfcheck agent` refuses bad flags before touching the kernel
//! (docs/bad-input.md, "flags").

use assert_cmd::Command;

fn agent(args: &[&str]) -> (i32, String) {
    let out = Command::cargo_bin("nvmfcheck")
        .unwrap()
        .arg("agent")
        .args(args)
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_are_refused_with_the_fix() {
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--address", "10.0.0.1", "--io-port", "0"],
            1,
            "--io-port 0 is not a TCP port",
        ),
        (
            &["--address", "10.0.0.1", "--io-port", "8420"],
            1,
            "they must differ",
        ),
        (&["--address", "0.0.0.0"], 1, "cannot be connected to"),
        (&["--address", "10.0.0.300"], 2, "invalid IPv4 address"),
        (
            &["--address", "10.0.0.1", "--io-port", "70000"],
            2,
            "70000 is not in 0..=65535",
        ),
        (
            &["--address", "10.0.0.1", "--listen", "nope"],
            2,
            "invalid socket address",
        ),
        (
            &["--address", "10.0.0.1", "--create", "malloc:///m0"],
            1,
            "--create malloc:///m0: `malloc:///m0` lacks size_mb",
        ),
        (
            &["--address", "10.0.0.1", "--create", "foo:///x"],
            1,
            "unsupported scheme `foo`",
        ),
        (
            &["--address", "10.0.0.1", "--share", ""],
            1,
            "--share needs a bdev name",
        ),
        (
            &["--address", "10.0.0.1", "--allow-power-cycle"],
            1,
            "--allow-power-cycle needs --faults",
        ),
    ];
    for (args, code, says) in cases {
        let (got, stderr) = agent(args);
        assert_eq!(got, *code, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_taken_grpc_port_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = agent(&["--address", "10.0.0.1", "--listen", &addr]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("--listen"),
        "{stderr}"
    );
}
