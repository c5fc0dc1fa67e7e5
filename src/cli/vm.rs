//! `nvmfcheck vm`: boot the target and initiator VMs with QEMU and run the
//! checks in them, or keep them up for a person.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nvmfcheck::bench::table;
use nvmfcheck::soak::BusyCore;
use nvmfcheck::suite::AgentSetup;
use nvmfcheck::vm::channel::Event;
use nvmfcheck::vm::guest::GuestConfig;
use nvmfcheck::vm::guest_kernel::default_cache_dir;
use nvmfcheck::vm::run_dir::RunDir;
use nvmfcheck::vm::runner::{AccelChoice, BootOptions, RunOptions, Runner};
use nvmfcheck::vm::spec::Accel;
use nvmfcheck::vm::up::{self, state_run_dir};
use nvmfcheck::vm::up_state::default_state_dir;
use nvmfcheck::vm::{Progress, Role, AGENT_PORT, GUEST_OUT_DIR, TARGET_IP};

/// Prints a line on stdout; a closed stdout (`| head`) is not an error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Subcommands of `nvmfcheck vm`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Boot both VMs, run check categories on the initiator against the
    /// target, copy out the reports, tear everything down.
    Run(RunArgs),
    /// Boot both VMs and leave them running (see `vm exec`, `vm down`).
    Up(UpArgs),
    /// Run a command in a VM started by `vm up`, streaming its output.
    Exec(ExecArgs),
    /// Stop the VMs started by `vm up`.
    Down(StateArgs),
    /// Show whether the VMs started by `vm up` are running.
    Status(StateArgs),
    /// Measure: time until both VMs are ready, wall time of `basic` and its
    /// overhead beyond fio, QEMU peak RSS; medians of several `vm run basic`.
    Bench(BenchArgs),
    /// The daemon inside each guest (started by the guest's init).
    #[command(hide = true)]
    Guest(GuestArgs),
}

/// `--accel` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AccelArg {
    /// Probe KVM (a real boot with a deadline), else TCG.
    Auto,
    /// Hardware virtualization.
    Kvm,
    /// QEMU's emulator.
    Tcg,
}

/// Options shared by `vm run` and `vm up`.
#[derive(clap::Args, Clone)]
pub struct BootArgs {
    /// KVM or TCG; `auto` probes whether KVM guests really run.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
    /// Where the guest kernel and initramfs are cached
    /// [default: $XDG_CACHE_HOME/nvmfcheck or ~/.cache/nvmfcheck].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Guest kernel (vmlinux or bzImage) instead of Debian's; needs --modules.
    #[arg(long, requires = "modules")]
    kernel: Option<PathBuf>,
    /// The guest kernel's modules dir (…/lib/modules/<version>).
    #[arg(long, requires = "kernel")]
    modules: Option<PathBuf>,
    /// Seconds both VMs may take until they are ready.
    #[arg(long, default_value_t = 60)]
    boot_timeout: u64,
    /// Memory of each VM in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
}

/// Arguments of `vm run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Categories to run, in dependency order whatever the order given.
    #[arg(default_value = "basic")]
    categories: Vec<String>,
    /// Where the reports, console logs and the agent log are written.
    #[arg(long, default_value = "./nvmfcheck-out")]
    out: PathBuf,
    /// Run only the cases matching this pattern.
    #[arg(long)]
    filter: Option<String>,
    /// Seconds the checks may take.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Run the categories this many times in a row, each on freshly booted
    /// VMs (a soak); results go to `run-1`, `run-2`, ... under --out, and
    /// a table of each case's passes and median time ends the output.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Keep one host core busy throughout, as a loaded CI host would.
    #[arg(long)]
    busy_core: bool,
    #[command(flatten)]
    boot: BootArgs,
}

/// Arguments of `vm bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// How many runs of `vm run basic`, one after another.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Where each run's reports and logs go (`run-1`, `run-2`, ...).
    #[arg(long, default_value = "./nvmfcheck-bench")]
    out: PathBuf,
    #[command(flatten)]
    boot: BootArgs,
}

/// Where `vm up` keeps its state.
#[derive(clap::Args)]
pub struct StateArgs {
    /// State dir of the pair [default: $XDG_STATE_HOME/nvmfcheck/vm or
    /// ~/.local/state/nvmfcheck/vm].
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

impl StateArgs {
    /// The state dir as a run dir, and the `--state-dir` flag to repeat in
    /// advice.
    fn run_dir(&self) -> anyhow::Result<(RunDir, String)> {
        let dir = self.state_dir.clone().unwrap_or_else(default_state_dir);
        let dir = std::path::absolute(&dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let hint = match &self.state_dir {
            Some(d) => format!(" --state-dir {}", d.display()),
            None => String::new(),
        };
        Ok((state_run_dir(dir), hint))
    }
}

/// Arguments of `vm up`.
#[derive(clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Loopback port on the host forwarded to the target's gRPC (default: a
    /// free one).
    #[arg(long)]
    grpc_port: Option<u16>,
    #[command(flatten)]
    boot: BootArgs,
}

/// Arguments of `vm exec`.
#[derive(clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Seconds the command may take.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The VM's name: `target` or `initiator`.
    vm: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Arguments of `vm guest`.
#[derive(clap::Args)]
pub struct GuestArgs {
    /// What this VM runs.
    #[arg(long)]
    role: Role,
    /// The VM's name [default: its role].
    #[arg(long)]
    name: Option<String>,
    /// The VM's address on its first link, where its agent serves.
    #[arg(long, default_value = TARGET_IP)]
    address: String,
    /// How the target runs its agent: faults or hardened.
    #[arg(long, default_value = "faults", value_parser = parse_setup)]
    setup: AgentSetup,
}

fn parse_setup(name: &str) -> Result<AgentSetup, String> {
    AgentSetup::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = AgentSetup::ALL.iter().map(|s| s.name()).collect();
        format!("unknown setup {name:?}; known: {}", known.join(", "))
    })
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
            };
            nvmfcheck::vm::guest::main(cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

impl BootArgs {
    fn options(&self) -> BootOptions {
        BootOptions {
            accel: match self.accel {
                AccelArg::Auto => AccelChoice::Auto,
                AccelArg::Kvm => AccelChoice::Use(Accel::Kvm),
                AccelArg::Tcg => AccelChoice::Use(Accel::Tcg),
            },
            cache_dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
            kernel: self.kernel.clone().zip(self.modules.clone()),
            boot_timeout: Duration::from_secs(self.boot_timeout),
            memory_mib: self.memory,
        }
    }

    /// A runner whose phase lines go to stderr with the time since start.
    fn runner(&self) -> Runner {
        let progress = Progress::new(|t, msg| eprintln!("[{:7.2}s] {msg}", t.as_secs_f64()));
        Runner::new(self.options(), progress)
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
    let opts = RunOptions {
        categories: vec!["basic".into()],
        out: args.out.clone(),
        filter: None,
        timeout: Duration::from_secs(1800),
    };
    let samples = args
        .boot
        .runner()
        .bench(&opts, args.runs, &print_output)
        .await?;
    outln!("{}", table(&samples));
    Ok(ExitCode::SUCCESS)
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let (dir, flag) = args.state.run_dir()?;
    let up = args.boot.runner().up(&dir, args.grpc_port, &flag).await?;
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
    outln!("  inside the VMs the target is {TARGET_IP}:{AGENT_PORT}; /dev/vdb is its blank 512 MiB disk");
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
