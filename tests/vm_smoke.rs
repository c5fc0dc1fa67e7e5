//! End to end: boots the real VM pair with QEMU (`vm up`), runs commands in
//! both (`vm exec`), stops it (`vm down`); and checks that a killed
//! `vm run` leaves no QEMU behind. Needs qemu-system-x86, busybox-static,
//! fio, nvme-cli and apt access to Debian's kernel package (fetched once
//! into the cache dir), so it is ignored by default:
//! `cargo test --test vm_smoke -- --ignored --test-threads=1`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn nvmfcheck() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nvmfcheck"))
}

fn run(args: &[&str]) -> Output {
    let out = nvmfcheck().args(args).output().unwrap();
    eprintln!(
        "$ nvmfcheck {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// QEMU processes whose command line mentions `needle`.
fn qemus_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            let cmdline = String::from_utf8_lossy(&cmdline);
            !zombie && cmdline.starts_with("qemu-system") && cmdline.contains(needle)
        })
        .collect()
}

/// `vm exec` in VM `vm` of the pair in `state`, with a 600 s deadline.
fn exec_in(state: &str, vm: &str, cmd: &[&str]) -> Output {
    let mut args = vec![
        "vm",
        "exec",
        "--state-dir",
        state,
        "--timeout",
        "600",
        vm,
        "--",
    ];
    args.extend_from_slice(cmd);
    run(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stops the pair even when an assertion failed.
struct Down<'a>(&'a str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        run(&["vm", "down", "--state-dir", self.0]);
    }
}

#[test]
#[ignore = "boots QEMU VMs (about 5 s under TCG); run with --ignored"]
fn up_exec_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("vm");
    let state = state.to_str().unwrap();
    let exec = |vm: &str, cmd: &[&str]| exec_in(state, vm, cmd);

    let up = run(&["vm", "up", "--state-dir", state]);
    let _down = Down(state);
    assert!(up.status.success(), "vm up failed");
    assert!(
        stdout(&up).contains("--target 127.0.0.1:"),
        "no gRPC address printed"
    );
    assert_eq!(qemus_with(state).len(), 2, "two QEMUs run after vm up");

    // A gRPC client on the host reaches the target's BdevRpc through the
    // loopback forward that `vm up` printed.
    let printed = stdout(&up);
    let target = printed
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .expect("vm up prints the target's loopback address");
    let o = run(&["bdev", "list", "--target", target]);
    assert!(o.status.success(), "BdevRpc.List from the host failed");
    assert!(stdout(&o).contains("\"bdevs\""), "{}", stdout(&o));

    let o = exec("initiator", &["nvme", "version"]);
    assert!(o.status.success() && stdout(&o).contains("nvme version"));
    let o = exec("target", &["ls", "/sys/kernel/config/nvmet"]);
    assert!(o.status.success() && stdout(&o).contains("subsystems"));
    let o = exec("initiator", &["fio", "--version"]);
    assert!(o.status.success() && stdout(&o).starts_with("fio-"));
    // The blank data disk is vdb, 512 MiB (1048576 sectors).
    let o = exec("target", &["cat", "/sys/block/vdb/size"]);
    assert_eq!(stdout(&o).trim(), "1048576");
    let o = exec(
        "initiator",
        &["busybox", "ping", "-c", "1", "-W", "5", "192.168.1.2"],
    );
    assert!(o.status.success(), "no ping over the VM link");
    // The exit status and stderr come back.
    let o = exec("target", &["sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&o.stderr).contains("oops"));
    // The output share is writable from the guest and visible on the host.
    let o = exec(
        "initiator",
        &["sh", "-c", "echo hi > /run/nvmfcheck/out/hello"],
    );
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(Path::new(state).join("out/hello")).unwrap(),
        "hi\n"
    );
    // Commands start in a writable dir.
    let o = exec("target", &["sh", "-c", "touch x && pwd"]);
    assert_eq!(stdout(&o).trim(), "/tmp");
    // The kernel NVMe target and host work over the link: export vdb by
    // hand through configfs, discover and connect from the initiator.
    let o = exec(
        "target",
        &[
            "sh",
            "-ec",
            "cd /sys/kernel/config/nvmet
            mkdir subsystems/nqn.smoke
            echo 1 > subsystems/nqn.smoke/attr_allow_any_host
            mkdir subsystems/nqn.smoke/namespaces/1
            echo /dev/vdb > subsystems/nqn.smoke/namespaces/1/device_path
            echo 1 > subsystems/nqn.smoke/namespaces/1/enable
            mkdir ports/1
            echo tcp > ports/1/addr_trtype
            echo ipv4 > ports/1/addr_adrfam
            echo 192.168.1.2 > ports/1/addr_traddr
            echo 4420 > ports/1/addr_trsvcid
            ln -s /sys/kernel/config/nvmet/subsystems/nqn.smoke ports/1/subsystems/",
        ],
    );
    assert!(o.status.success(), "cannot export vdb over NVMe/TCP");
    let o = exec(
        "initiator",
        &[
            "nvme",
            "discover",
            "-t",
            "tcp",
            "-a",
            "192.168.1.2",
            "-s",
            "4420",
        ],
    );
    assert!(
        stdout(&o).contains("nqn.smoke"),
        "discovery does not list the subsystem"
    );
    let o = exec(
        "initiator",
        &[
            "sh",
            "-ec",
            "nvme connect -t tcp -a 192.168.1.2 -s 4420 -n nqn.smoke
            for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/nvme0n1 ] && break; sleep 0.5; done
            cat /sys/block/nvme0n1/size
            nvme disconnect -n nqn.smoke",
        ],
    );
    assert!(o.status.success(), "cannot connect over NVMe/TCP");
    assert!(
        stdout(&o).starts_with("1048576\n"),
        "the namespace is not the 512 MiB vdb"
    );
    assert!(run(&["vm", "status", "--state-dir", state])
        .status
        .success());

    assert!(run(&["vm", "down", "--state-dir", state]).status.success());
    assert!(qemus_with(state).is_empty(), "QEMU left after vm down");
    assert!(Path::new(state).join("out/target.console.log").exists());
}

/// The guest halves of `vm bench` on a real pair: each prints its figures,
/// leaves the target as it found it, and the scale bench refuses a target
/// that shares something else.
#[test]
#[ignore = "boots QEMU VMs; run with --ignored"]
fn bench_guest_halves() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("vm");
    let state = state.to_str().unwrap();
    assert!(run(&["vm", "up", "--state-dir", state]).status.success());
    let _down = Down(state);
    let exe = env!("CARGO_BIN_EXE_nvmfcheck");
    let target = ["--target", "192.168.1.2:10124"];
    let bench = |vm: &str, args: &[&str]| -> serde_json::Value {
        let mut cmd = vec![exe, "bench"];
        cmd.extend_from_slice(args);
        let o = exec_in(state, vm, &cmd);
        assert!(o.status.success(), "nvmfcheck bench {args:?} failed");
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let bdevs = || {
        let o = exec_in(
            state,
            "initiator",
            &[exe, "bdev", "list", target[0], target[1]],
        );
        stdout(&o)
    };
    let short = ["--secs", "1", "--size-mib", "16"];

    let local = bench(
        "target",
        &[&["data-path", "--device", "/dev/vdb"][..], &short].concat(),
    );
    let fabric = bench(
        "initiator",
        &[
            &["data-path", "--over-fabric", "aio:///dev/vdb"][..],
            &short,
            &target,
        ]
        .concat(),
    );
    for figures in [&local, &fabric] {
        let jobs = figures.as_array().unwrap();
        assert_eq!(jobs.len(), 4, "{figures}");
        assert!(
            jobs.iter().all(|j| j["iops"].as_f64().unwrap() > 0.0),
            "{figures}"
        );
    }
    assert!(
        !bdevs().contains("aio:///dev/vdb"),
        "data-path left its bdev"
    );

    let control = bench(
        "initiator",
        &[&["control", "--calls", "20"][..], &target].concat(),
    );
    for call in ["list", "create_share", "unshare_destroy"] {
        assert_eq!(control[call]["calls"], 20, "{control}");
        assert!(control[call]["p50_ms"].as_f64().unwrap() > 0.0, "{control}");
    }

    let up = bench(
        "initiator",
        &[&["scale", "up", "--bdevs", "8"][..], &target].concat(),
    );
    assert_eq!(up["discovered"], 8, "{up}");
    let o = exec_in(
        state,
        "initiator",
        &["sh", "-c", "ls /sys/class/nvme | wc -l"],
    );
    assert_eq!(stdout(&o).trim(), "8", "a controller per bdev");
    let o = exec_in(state, "target", &["cat", "/run/nvmfcheck/agent.pid"]);
    assert!(stdout(&o).trim().parse::<u32>().is_ok(), "no agent pid");
    let down = bench(
        "initiator",
        &[&["scale", "down", "--bdevs", "8"][..], &target].concat(),
    );
    assert_eq!(down["bdevs"], 8, "{down}");
    assert!(!bdevs().contains("bench-scale-"), "scale down left bdevs");
    let o = exec_in(
        state,
        "initiator",
        &["sh", "-c", "ls /sys/class/nvme | wc -l"],
    );
    assert_eq!(stdout(&o).trim(), "0", "scale down left controllers");

    // With another bdev shared, connect-all would reach it too: refused
    // before anything is made.
    let o = exec_in(
        state,
        "initiator",
        &[
            "sh",
            "-ec",
            &format!(
                "{exe} bdev create malloc:///other?size_mb=1 {t}; {exe} bdev share other {t}",
                t = target.join(" ")
            ),
        ],
    );
    assert!(o.status.success());
    let o = exec_in(
        state,
        "initiator",
        &[&[exe, "bench", "scale", "up", "--bdevs", "4"][..], &target].concat(),
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the target shares bdev other already"),
        "no reason given"
    );
    assert!(
        !bdevs().contains("bench-scale-"),
        "a refused scale up made bdevs"
    );
}

#[test]
#[ignore = "boots QEMU VMs; run with --ignored"]
fn a_killed_vm_run_leaves_no_qemu() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for signal in [Signal::SIGINT, Signal::SIGKILL] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let out = out.to_str().unwrap();
        let mut child = nvmfcheck()
            .args(["vm", "run", "basic", "--out", out])
            .spawn()
            .unwrap();
        // Kill it mid-boot: once both QEMUs run.
        let start = Instant::now();
        while qemus_with(out).len() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "QEMUs never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let start = Instant::now();
        while !qemus_with(out).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "QEMU still running 5 s after vm run got {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
#[ignore = "boots QEMU VMs; run with --ignored"]
fn vm_down_stops_what_a_killed_vm_up_left() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("vm");
    let state = state.to_str().unwrap();
    let mut child = nvmfcheck()
        .args(["vm", "up", "--state-dir", state])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while qemus_with(state).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "QEMUs never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL leaves no chance to clean up: the detached QEMUs live on.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(qemus_with(state).len(), 2);
    assert!(run(&["vm", "down", "--state-dir", state]).status.success());
    let start = Instant::now();
    while !qemus_with(state).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "vm down left QEMU"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three VMs on one network meet through the runner's frame relay: each
/// reaches the others, and the initiator reaches the agents of both
/// nodes over gRPC (TCP through the relay).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "boots three QEMU VMs; run with --ignored"]
async fn three_vms_share_one_network_through_the_relay() {
    use nvmfcheck::suite::AgentSetup;
    use nvmfcheck::vm::cluster::{free_port, BootConfig, Cluster};
    use nvmfcheck::vm::run_dir::RunDir;
    use nvmfcheck::vm::runner::{BootOptions, Runner};
    use nvmfcheck::vm::topology::{NetPlan, Topology, VmPlan, DATA_DISK_BYTES};
    use nvmfcheck::vm::Lifetime;
    use nvmfcheck::vm::{Progress, Role};

    let progress = Progress::new(|t, msg| eprintln!("[{:7.2}s] {msg}", t.as_secs_f64()));
    let runner = Runner::new(BootOptions::new(), progress.clone());
    let prepared = runner.prepare().await.unwrap();
    let cfg = BootConfig {
        kernel: prepared.kernel,
        initrd: prepared.initrd,
        exe: env!("CARGO_BIN_EXE_nvmfcheck").into(),
        accel: prepared.accel,
        memory_mib: 512,
        boot_timeout: Duration::from_secs(120),
        lifetime: Lifetime::Owned,
        setup: AgentSetup::Faults,
        grpc_port: free_port().unwrap(),
        data_from: None,
    };
    let node = |name, host, forward| VmPlan {
        name,
        role: Role::Target,
        host,
        data_disk: Some(DATA_DISK_BYTES),
        forward,
    };
    // The pair's initiator, with two nodes in place of its target.
    let initiator = Topology::pair().initiator().cloned().unwrap();
    let topology = Topology {
        vms: vec![node("node1", 2, true), node("node2", 3, false), initiator],
        networks: vec![NetPlan {
            members: vec!["node1", "node2", "initiator"],
        }],
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir::kept(tmp.path().join("run"), tmp.path().join("out"));
    let cluster = Cluster::boot(&cfg, &topology, &dir, &progress)
        .await
        .unwrap();
    let exe = env!("CARGO_BIN_EXE_nvmfcheck");
    let checks: [(&str, Vec<String>); 4] = [
        ("initiator", ping("192.168.1.2")),
        ("initiator", ping("192.168.1.3")),
        ("node2", ping("192.168.1.2")),
        (
            "initiator",
            [exe, "bdev", "list", "--target", "192.168.1.3:10124"]
                .map(String::from)
                .into(),
        ),
    ];
    for (vm, argv) in checks {
        let channel = cluster.vm(vm).unwrap().channel().unwrap();
        let out = channel
            .output(&argv, Duration::from_secs(60))
            .await
            .unwrap();
        eprintln!("{vm}$ {}\n{}{}", argv.join(" "), out.stdout, out.stderr);
        assert_eq!(out.code, 0, "{vm}: {}", argv.join(" "));
    }
    cluster.shutdown(Duration::from_secs(5)).await;
}

fn ping(ip: &str) -> Vec<String> {
    ["/bin/busybox", "ping", "-c", "1", "-W", "10", ip]
        .map(String::from)
        .into()
}
