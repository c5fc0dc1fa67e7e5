//! `nvmfcheck vm`: boot the target and initiator VMs with QEMU and run the
//! checks in them, or keep them up for a person.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nvmfcheck::bench::record::compare;
use nvmfcheck::bench::BenchRecord;
use nvmfcheck::soak::BusyCore;
use nvmfcheck::suite::setup::DATA_DISK_MIB;
use nvmfcheck::vm::guest::GuestConfig;
use nvmfcheck::vm::runner::{RunOptions, DEFAULT_CHECKS_TIMEOUT_SECS};
use nvmfcheck::vm::up;
use nvmfcheck::vm::workload::WorkloadParams;
use nvmfcheck::vm::Event;
use nvmfcheck::vm::{AGENT_PORT, GUEST_OUT_DIR, TARGET_IP};

mod args;

pub use args::Command;
use args::{BenchArgs, ExecArgs, RunArgs, StateArgs, UpArgs};

/// Prints a line on stdout; a closed stdout (`| head`) is not an error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Runs `nvmfcheck vm`.
pub async fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run(args) => run(args).await,
        Command::Up(args) => up(args).await,
        Command::Exec(args) => exec(args).await,
        Command::Down(args) => down(args).await,
        Command::Status(args) => status(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Guest(args) => {
            let cfg = GuestConfig {
                name: args.name.unwrap_or_else(|| args.role.name().to_string()),
                role: args.role,
                setup: args.setup,
                address: args.address,
                forward: args.forward,
            };
            nvmfcheck::vm::guest::main(cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Copies a VM command's output to ours as it comes.
fn print_output(ev: &Event) {
    use std::io::Write;
    match ev {
        Event::Stdout(s) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
        }
        Event::Stderr(s) => {
            let _ = std::io::stderr().write_all(s.as_bytes());
        }
        _ => {}
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let runner = args.boot.runner();
    let _busy = args.busy_core.then(|| {
        runner
            .progress
            .say("keeping one host core busy until the end");
        BusyCore::start()
    });
    let opts = RunOptions {
        categories: args.categories.clone(),
        out: args.out.clone(),
        filter: args.filter.clone(),
        timeout: Duration::from_secs(args.timeout),
        keep_state: args.keep_state.clone(),
        from_state: args.from_state.clone(),
        require_passed: args.require_passed.clone(),
    };
    if args.repeat == 1 {
        let outcome = runner.run(&opts, &print_output).await?;
        if outcome.code != 0 {
            eprintln!(
                "error: phase checks: `nvmfcheck run` in the initiator exited with {}",
                outcome.code
            );
            return Ok(ExitCode::FAILURE);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let soak = runner.soak(&opts, args.repeat, &print_output).await?;
    let load = if args.busy_core {
        "one host core busy"
    } else {
        "no load added"
    };
    let table = format!(
        "soak: {} runs of {} with the {} binary, {load}\n{}",
        args.repeat,
        args.categories.join(" "),
        nvmfcheck::BUILD_PROFILE,
        soak.table
    );
    outln!("{table}");
    let file = args.out.join("soak.txt");
    std::fs::write(&file, &table).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(if soak.all_green {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    // A bad --compare file is found before anything boots.
    let old = args.compare.as_deref().map(BenchRecord::load).transpose()?;
    let opts = RunOptions {
        categories: vec!["basic".into()],
        out: args.out.clone(),
        filter: None,
        timeout: Duration::from_secs(DEFAULT_CHECKS_TIMEOUT_SECS),
        keep_state: None,
        from_state: None,
        require_passed: None,
    };
    let params = WorkloadParams {
        job_secs: args.job_secs,
        calls: args.calls,
        bdevs: args.bdevs,
    };
    let record = args
        .boot
        .runner()
        .bench(&opts, args.runs, params, &print_output)
        .await?;
    outln!("{}", record.table());
    if let (Some(old), Some(path)) = (&old, &args.compare) {
        outln!("against {}:\n{}", path.display(), compare(old, &record));
    }
    eprintln!("figures in {}", args.out.join("bench.json").display());
    Ok(ExitCode::SUCCESS)
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let (dir, flag) = args.state.run_dir()?;
    let up = args
        .boot
        .runner()
        .up(&dir, args.grpc_port, args.from_state.as_deref(), &flag)
        .await?;
    for pid in &up.strays_killed {
        eprintln!("killed QEMU {pid}, left behind by an interrupted `vm up`");
    }
    let rss: Vec<String> = up
        .rss_mib
        .iter()
        .map(|(name, mib)| match mib {
            Some(mib) => format!("{name} QEMU {mib} MiB"),
            None => format!("{name} QEMU unknown"),
        })
        .collect();
    eprintln!("RSS so far: {}", rss.join(", "));
    let port = up.grpc_port;
    outln!("The target and initiator VMs are up ({}).", up.accel.name());
    outln!("  target gRPC (BdevRpc) from this host: 127.0.0.1:{port}");
    outln!("    nvmfcheck bdev list --target 127.0.0.1:{port}");
    outln!("  inside the VMs the target is {TARGET_IP}:{AGENT_PORT}");
    match (&up.data_set, &args.from_state) {
        (Some(set), Some(from)) => outln!(
            "  /dev/vdb is a copy of the {DATA_DISK_MIB} MiB disk kept in {}, holding a data set: \
             {} bytes at {}, written by fio {} bs={} iodepth={} verify={}, sha256 {}",
            from.display(),
            set.size,
            set.offset,
            set.job.rw,
            set.job.bs,
            set.job.iodepth,
            set.job.verify,
            set.sha256
        ),
        _ => outln!("  /dev/vdb is its blank {DATA_DISK_MIB} MiB disk"),
    }
    outln!("  run a command:  nvmfcheck vm exec{flag} initiator -- nvme list");
    outln!("  stop them:      nvmfcheck vm down{flag}");
    outln!(
        "  logs and the shared output dir ({GUEST_OUT_DIR} in the guests): {}",
        up.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let (dir, flag) = args.state.run_dir()?;
    let timeout = Duration::from_secs(args.timeout);
    let code = up::exec(&dir, &flag, &args.vm, &args.command, timeout, &print_output).await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

async fn down(args: StateArgs) -> anyhow::Result<ExitCode> {
    let (dir, flag) = args.run_dir()?;
    let down = up::down(&dir, &flag).await?;
    for pid in &down.strays_killed {
        eprintln!("killed QEMU {pid}, left behind by an interrupted `vm up`");
    }
    for (name, pid, running) in &down.stopped {
        if *running {
            eprintln!("{name}: stopped (pid {pid})");
        } else {
            eprintln!("{name}: was not running");
        }
    }
    if let Some(out) = &down.out {
        eprintln!("console logs: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StateArgs) -> anyhow::Result<ExitCode> {
    let (dir, flag) = args.run_dir()?;
    let status = up::status(&dir, &flag).await?;
    for vm in &status.vms {
        let state = match (vm.running, vm.rss_mib) {
            (true, Some(mib)) => format!("running, peak RSS {mib} MiB"),
            (true, None) => "running".to_string(),
            (false, _) => "not running".to_string(),
        };
        outln!(
            "{}: {state} (pid {}, console {})",
            vm.name,
            vm.pid,
            vm.console.display()
        );
    }
    match &status.agent {
        Ok(n) => outln!(
            "agent: answers on 127.0.0.1:{} ({n} bdevs)",
            status.grpc_port
        ),
        Err(e) => outln!("agent: {e}"),
    }
    Ok(if status.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
