//! `nvmfcheck vm`: boot the target and initiator VMs with QEMU and run the
//! checks in them, or keep them up for a person.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use nvmfcheck::bench::{table, Sample};
use nvmfcheck::soak::{BusyCore, Soak};
use nvmfcheck::suite::report::Report;
use nvmfcheck::suite::{self, AgentSetup};
use nvmfcheck::vm::channel::{Channel, Event};
use nvmfcheck::vm::guest_kernel::{default_cache_dir, KernelSource};
use nvmfcheck::vm::pair::{free_port, Pair, PairConfig};
use nvmfcheck::vm::protocol::CTL_PORTS;
use nvmfcheck::vm::qemu::{self, Lifetime, Qemu};
use nvmfcheck::vm::spec::{self, Accel};
use nvmfcheck::vm::up_state::{default_state_dir, is_our_qemu, stray_qemus, PairState};
use nvmfcheck::vm::{
    accel, hostfs, initramfs, pair, Progress, Role, AGENT_PORT, GUEST_OUT_DIR, TARGET_IP,
    TOKEN_FILE,
};

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
    fn dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
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
    /// `target` or `initiator`.
    vm: Role,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Arguments of `vm guest`.
#[derive(clap::Args)]
pub struct GuestArgs {
    /// Which VM this is.
    #[arg(long)]
    role: Role,
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
            nvmfcheck::vm::guest::main(args.role, args.setup).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Kernel, initramfs and accelerator: everything before QEMU starts.
async fn prepare(
    boot: &BootArgs,
    progress: &Progress,
) -> anyhow::Result<(nvmfcheck::vm::guest_kernel::GuestKernel, PathBuf, Accel)> {
    spec::check_installed()?;
    let cache = boot.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let source = match (&boot.kernel, &boot.modules) {
        (Some(kernel), Some(modules)) => KernelSource::Files {
            kernel: kernel.clone(),
            modules: modules.clone(),
            cache: cache.clone(),
        },
        _ => KernelSource::Debian {
            cache: cache.clone(),
        },
    };
    let kernel = source.resolve(progress).await.context("phase kernel")?;
    let initrd = {
        let (k, c) = (kernel.clone(), cache.clone());
        tokio::task::spawn_blocking(move || initramfs::build(&k, &c))
            .await?
            .context("phase initramfs")?
    };
    progress.say(format!(
        "guest kernel {} ({}), initramfs {}",
        kernel.version,
        kernel.vmlinux.display(),
        initrd.display()
    ));
    let accel = match boot.accel {
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
        AccelArg::Auto => {
            let v = accel::auto(&kernel.vmlinux, &cache)
                .await
                .context("phase accel probe")?;
            progress.say(format!("accel {}: {}", v.accel.name(), v.reason));
            v.accel
        }
    };
    Ok((kernel, initrd, accel))
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
}

fn config(
    boot: &BootArgs,
    prepared: (nvmfcheck::vm::guest_kernel::GuestKernel, PathBuf, Accel),
    run_dir: PathBuf,
    out_dir: PathBuf,
    grpc_port: u16,
    lifetime: Lifetime,
    setup: AgentSetup,
) -> anyhow::Result<PairConfig> {
    let (kernel, initrd, accel) = prepared;
    Ok(PairConfig {
        kernel,
        initrd,
        exe: std::env::current_exe().context("cannot find the nvmfcheck binary")?,
        accel,
        run_dir,
        out_dir,
        grpc_port,
        memory_mib: boot.memory,
        boot_timeout: Duration::from_secs(boot.boot_timeout),
        lifetime,
        setup,
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term.recv() => "terminated (SIGTERM)",
    }
}

/// Removes a dir when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let progress = Progress::new();
    let _busy = args.busy_core.then(|| {
        progress.say("keeping one host core busy until the end");
        BusyCore::start()
    });
    if args.repeat == 1 {
        let outcome = run_once(&args, &progress).await?;
        return Ok(match outcome.code {
            0 => ExitCode::SUCCESS,
            code => {
                eprintln!(
                    "error: phase checks: `nvmfcheck run` in the initiator exited with {code}"
                );
                ExitCode::FAILURE
            }
        });
    }
    soak(&args, &progress).await
}

/// `vm run --repeat N`: N runs one after another, each into its own
/// `run-K` under --out, a failed run not stopping the next; then the
/// table of each case's passes and median time, also written to
/// `soak.txt`.
async fn soak(args: &RunArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let mut tally = Soak::new();
    for i in 1..=args.repeat {
        progress.say(format!("soak: run {i} of {}", args.repeat));
        let run = RunArgs {
            categories: args.categories.clone(),
            out: args.out.join(format!("run-{i}")),
            filter: args.filter.clone(),
            timeout: args.timeout,
            repeat: 1,
            busy_core: false,
            boot: args.boot.clone(),
        };
        let outcome = match run_once(&run, progress).await {
            Ok(outcome) => outcome,
            Err(e) => {
                progress.say(format!("soak: run {i} failed: {e:#}"));
                tally.add_unreported(i, format!("{e:#}"));
                continue;
            }
        };
        let path = run.out.join("report.json");
        match Report::load(&path) {
            Ok(report) => tally.add(i, &report, outcome.code == 0),
            Err(e) => tally.add_unreported(i, e.to_string()),
        }
    }
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
        tally.table()
    );
    outln!("{table}");
    let file = args.out.join("soak.txt");
    std::fs::write(&file, &table).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(if tally.all_green() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What one `vm run` measured besides its report.
struct Outcome {
    /// Exit status of `nvmfcheck run` in the initiator.
    code: i32,
    /// When the later of the two VMs was ready.
    ready: Duration,
    /// Peak RSS of the target's and the initiator's QEMU, in MiB.
    rss_mib: (u64, u64),
    /// How long the checks took by the host's clock.
    checks: Duration,
}

async fn run_once(args: &RunArgs, progress: &Progress) -> anyhow::Result<Outcome> {
    let out = absolute(&args.out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // Stale results must not pass for this run's.
    for stale in ["report.json", "junit.xml"] {
        let _ = std::fs::remove_file(out.join(stale));
    }
    // The plan is checked before anything boots.
    let registry = suite::registry();
    let opts = suite::RunOptions {
        categories: args.categories.clone(),
        filter: args.filter.clone(),
        prior: None,
    };
    let plan = suite::plan(&registry, &opts)?;
    let groups = suite::setup::by_setup(&plan);
    let prepared = tokio::select! {
        r = prepare(&args.boot, progress) => r?,
        why = interrupted() => bail!("{why} while preparing"),
    };
    let mut outcome: Option<Outcome> = None;
    let mut parts = Vec::new();
    for (k, (setup, cats)) in groups.iter().enumerate() {
        let names: Vec<String> = cats.iter().map(|c| c.name.to_string()).collect();
        if outcome.as_ref().is_some_and(|o| o.code != 0) {
            progress.say(format!(
                "not run: {} (an earlier boot's checks failed)",
                names.join(" ")
            ));
            break;
        }
        // With one boot the report lands in --out itself, as it always
        // has; with several, each boot's in a subdir, merged at the end.
        let part = if groups.len() == 1 {
            None
        } else {
            Some(format!("{}-{setup}", k + 1))
        };
        if groups.len() > 1 {
            progress.say(format!(
                "boot {} of {}: {} with the {setup} agent",
                k + 1,
                groups.len(),
                names.join(" ")
            ));
        }
        let group = Group {
            setup: *setup,
            categories: &names,
            part: part.as_deref(),
            prior: !parts.is_empty(),
        };
        let this = run_group(args, &out, prepared.clone(), &group, progress).await?;
        if let Some(part) = &part {
            let report = Report::load(&out.join(part).join("report.json"));
            parts.push(report.with_context(|| format!("boot {} wrote no report", k + 1))?);
            // Later boots' dependencies are checked against what passed so
            // far.
            if let Some(merged) = Report::merge(parts.clone()) {
                merged.write(&out)?;
            }
        }
        outcome = Some(match outcome {
            None => this,
            Some(o) => Outcome {
                code: if o.code != 0 { o.code } else { this.code },
                ready: o.ready.max(this.ready),
                rss_mib: (
                    o.rss_mib.0.max(this.rss_mib.0),
                    o.rss_mib.1.max(this.rss_mib.1),
                ),
                checks: o.checks + this.checks,
            },
        });
    }
    outcome.context("no category to run")
}

/// One boot of a `vm run`: the categories that share an agent setup.
struct Group<'a> {
    setup: AgentSetup,
    categories: &'a [String],
    /// The subdir of --out its report goes to, when the run has several.
    part: Option<&'a str>,
    /// Whether --out holds the report of earlier boots to depend on.
    prior: bool,
}

async fn run_group(
    args: &RunArgs,
    out: &Path,
    prepared: (nvmfcheck::vm::guest_kernel::GuestKernel, PathBuf, Accel),
    group: &Group<'_>,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    let run_dir = hostfs::fresh_run_dir()?;
    let _cleanup = RemoveDir(run_dir.clone());
    let cfg = config(
        &args.boot,
        prepared,
        run_dir,
        out.to_path_buf(),
        free_port()?,
        Lifetime::Owned,
        group.setup,
    )?;
    // Dropping the boot future on a signal drops the QEMU handles, which
    // kills them.
    let pair = tokio::select! {
        r = Pair::boot(&cfg, progress) => r.context("phase boot")?,
        why = interrupted() => bail!("{why} while booting; console logs in {}", out.display()),
    };
    report_ready(&pair, progress);
    let guest_out = Path::new(GUEST_OUT_DIR);
    let report_dir = group
        .part
        .map_or(guest_out.to_path_buf(), |p| guest_out.join(p));
    let mut argv = vec![cfg.exe.display().to_string(), "run".into()];
    argv.extend(group.categories.iter().cloned());
    argv.extend([
        "--target".into(),
        group.setup.grpc_target(TARGET_IP),
        "--report-dir".into(),
        report_dir.display().to_string(),
    ]);
    if group.setup.needs_token() {
        argv.extend([
            "--token-file".into(),
            guest_out.join(TOKEN_FILE).display().to_string(),
        ]);
    }
    if group.prior {
        argv.extend([
            "--require-passed".into(),
            guest_out.join("report.json").display().to_string(),
        ]);
    }
    if let Some(f) = &args.filter {
        argv.extend(["--filter".into(), f.clone()]);
    }
    progress.say(format!(
        "initiator: {} ({} build)",
        argv.join(" "),
        nvmfcheck::BUILD_PROFILE
    ));
    let started = std::time::Instant::now();
    let result = tokio::select! {
        r = stream(pair.initiator.channel()?, &argv, Duration::from_secs(args.timeout)) => r,
        e = pair.died() => Err(e.into()),
        why = interrupted() => Err(anyhow::anyhow!("{why}")),
    };
    let rss = |vm: &nvmfcheck::vm::pair::Vm| qemu::peak_rss_kib(vm.qemu.pid).unwrap_or(0) / 1024;
    let outcome = Outcome {
        code: 0,
        ready: pair
            .ready_after
            .iter()
            .map(|(_, t)| *t)
            .max()
            .unwrap_or_default(),
        rss_mib: (rss(&pair.target), rss(&pair.initiator)),
        checks: started.elapsed(),
    };
    progress.say(format!("peak RSS: {}", peak_rss(&pair)));
    progress.say("tearing down");
    pair.shutdown(Duration::from_secs(5)).await;
    progress.say(format!(
        "VMs stopped; reports, console logs and agent.log in {}",
        out.display()
    ));
    let code = result.context("phase checks")?;
    let report_path = group
        .part
        .map_or(out.to_path_buf(), |p| out.join(p))
        .join("report.json");
    if let Ok(report) = Report::load(&report_path) {
        if let Some(warning) = clock_check(report.duration_secs, outcome.checks) {
            progress.say(format!("warning: {warning}"));
        }
    }
    Ok(Outcome { code, ..outcome })
}

/// The guest times the steps with its own clock; if that clock ran faster
/// than the host's (a TSC mis-calibrated on a loaded host), every time in
/// the report and every deadline inside the guest is wrong: say so.
fn clock_check(guest_secs: f64, host: Duration) -> Option<String> {
    let host_secs = host.as_secs_f64();
    (guest_secs > host_secs * 1.1 + 1.0).then(|| {
        format!(
            "the guest's clock ran fast: the checks took {guest_secs:.1} s by the initiator's \
             clock but {host_secs:.1} s by the host's; the report's times are not to be trusted"
        )
    })
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let progress = Progress::new();
    let mut samples = Vec::new();
    for i in 1..=args.runs {
        progress.say(format!("bench: run {i} of {}", args.runs));
        let run = RunArgs {
            categories: vec!["basic".into()],
            out: args.out.join(format!("run-{i}")),
            filter: None,
            timeout: 1800,
            repeat: 1,
            busy_core: false,
            boot: args.boot.clone(),
        };
        let outcome = run_once(&run, &progress).await?;
        if outcome.code != 0 {
            bail!(
                "run {i}: basic failed (exit {}); a failed run measures nothing: see {}",
                outcome.code,
                run.out.display()
            );
        }
        let path = run.out.join("report.json");
        let report = Report::load(&path)?;
        if let Some(warning) = clock_check(report.duration_secs, outcome.checks) {
            bail!("run {i}: {warning}");
        }
        let sample = Sample::new(&report, "basic", outcome.ready, outcome.rss_mib)
            .with_context(|| format!("{} has no basic category with a fio step", path.display()))?;
        samples.push(sample);
    }
    outln!("{}", table(&samples));
    Ok(ExitCode::SUCCESS)
}

fn peak_rss(pair: &Pair) -> String {
    let rss: Vec<String> = pair
        .vms()
        .iter()
        .map(|vm| match qemu::peak_rss_kib(vm.qemu.pid) {
            Some(kib) => format!("{} QEMU {} MiB", vm.role, kib / 1024),
            None => format!("{} QEMU unknown", vm.role),
        })
        .collect();
    rss.join(", ")
}

fn report_ready(pair: &Pair, progress: &Progress) {
    let times: Vec<String> = pair
        .ready_after
        .iter()
        .map(|(role, t)| format!("{role} {:.2}s", t.as_secs_f64()))
        .collect();
    progress.say(format!("both VMs ready ({})", times.join(", ")));
}

/// Runs `argv` over `channel`, copying its output to ours as it comes.
async fn stream(channel: &Channel, argv: &[String], timeout: Duration) -> anyhow::Result<i32> {
    use std::io::Write;
    // The guest starts from a clean environment; a log level is worth
    // passing on.
    let env = std::env::var("RUST_LOG")
        .map(|v| [("RUST_LOG".to_string(), v)].into())
        .unwrap_or_default();
    let code = channel
        .run(argv, env, timeout, |ev| match ev {
            Event::Stdout(s) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
            }
            Event::Stderr(s) => {
                let _ = std::io::stderr().write_all(s.as_bytes());
            }
            _ => {}
        })
        .await?;
    Ok(code)
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let progress = Progress::new();
    let dir = absolute(&args.state.dir())?;
    hostfs::private_dir(&dir)?;
    if let Some(old) = PairState::load(&dir)? {
        if old.vms.iter().any(|v| is_our_qemu(v.pid, &v.files)) {
            bail!(
                "a pair is already up (state in {}); stop it with `nvmfcheck vm down{}`",
                dir.display(),
                state_flag(&args.state)
            );
        }
        PairState::remove(&dir)?;
    }
    kill_strays(&dir);
    let prepared = prepare(&args.boot, &progress).await?;
    let port = match args.grpc_port {
        Some(p) => p,
        None => free_port()?,
    };
    let out = dir.join("out");
    let cfg = config(
        &args.boot,
        prepared,
        dir.clone(),
        out.clone(),
        port,
        Lifetime::Detached,
        // Faults on, no token: the pair to explore and script by hand.
        AgentSetup::Faults,
    )?;
    let pair = tokio::select! {
        r = Pair::boot(&cfg, &progress) => r.context("phase boot")?,
        why = interrupted() => bail!("{why} while booting; console logs in {}", out.display()),
    };
    report_ready(&pair, &progress);
    progress.say(format!("RSS so far: {}", peak_rss(&pair)));
    pair.state(&cfg).save(&dir)?;
    pair.detach();
    let flag = state_flag(&args.state);
    outln!(
        "The target and initiator VMs are up ({}).",
        cfg.accel.name()
    );
    outln!("  target gRPC (BdevRpc) from this host: 127.0.0.1:{port}");
    outln!("    nvmfcheck bdev list --target 127.0.0.1:{port}");
    outln!("  inside the VMs the target is {TARGET_IP}:{AGENT_PORT}; /dev/vdb is its blank 512 MiB disk");
    outln!("  run a command:  nvmfcheck vm exec{flag} initiator -- nvme list");
    outln!("  stop them:      nvmfcheck vm down{flag}");
    outln!(
        "  logs and the shared output dir ({GUEST_OUT_DIR} in the guests): {}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn state_flag(s: &StateArgs) -> String {
    match &s.state_dir {
        Some(d) => format!(" --state-dir {}", d.display()),
        None => String::new(),
    }
}

fn load(s: &StateArgs) -> anyhow::Result<PairState> {
    let dir = s.dir();
    PairState::load(&dir)?.with_context(|| {
        format!(
            "no VMs are up (no state in {}); start them with `nvmfcheck vm up{}`",
            dir.display(),
            state_flag(s)
        )
    })
}

async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let state = load(&args.state)?;
    let vm = state.vm(args.vm)?;
    if !is_our_qemu(vm.pid, &vm.files) {
        bail!(
            "the {} VM (pid {}) is not running; see {} and restart with `nvmfcheck vm down` \
             and `nvmfcheck vm up`",
            args.vm,
            vm.pid,
            vm.files.console.display()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let channel = Channel::connect_free(args.vm, &vm.files, deadline).await?;
    let code = tokio::select! {
        r = stream(&channel, &args.command, Duration::from_secs(args.timeout)) => r?,
        why = interrupted() => bail!("{why}; the command was killed in the VM"),
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Kills QEMUs of this state dir that no state file names; says whether
/// there were any.
fn kill_strays(dir: &Path) -> bool {
    let strays = stray_qemus(dir);
    for &pid in &strays {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        eprintln!("killed QEMU {pid}, left behind by an interrupted `vm up`");
    }
    !strays.is_empty()
}

async fn down(args: StateArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir();
    if PairState::load(&dir)?.is_none() && kill_strays(&absolute(&dir)?) {
        return Ok(ExitCode::SUCCESS);
    }
    let state = load(&args)?;
    for vm in &state.vms {
        if is_our_qemu(vm.pid, &vm.files) {
            let mut qemu = Qemu::adopt(vm.role, vm.pid);
            pair::stop(&mut qemu, &vm.files, Duration::from_secs(5)).await;
            eprintln!("{}: stopped (pid {})", vm.role, vm.pid);
        } else {
            eprintln!("{}: was not running", vm.role);
        }
        for i in 0..CTL_PORTS {
            let socket = vm.files.ctl_port(i);
            let _ = std::fs::remove_file(format!("{}.lock", socket.display()));
            let _ = std::fs::remove_file(socket);
        }
        for f in [&vm.files.qmp, &vm.files.pidfile] {
            let _ = std::fs::remove_file(f);
        }
    }
    for f in ["link.sock", "target-vda.img", "target-vdb.img"] {
        let _ = std::fs::remove_file(state.run_dir.join(f));
    }
    PairState::remove(&dir)?;
    eprintln!("console logs: {}", state.out_dir.display());
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StateArgs) -> anyhow::Result<ExitCode> {
    let state = load(&args)?;
    let mut all = true;
    for vm in &state.vms {
        let up = is_our_qemu(vm.pid, &vm.files);
        all &= up;
        let state = match (up, qemu::peak_rss_kib(vm.pid)) {
            (true, Some(kib)) => format!("running, peak RSS {} MiB", kib / 1024),
            (true, None) => "running".to_string(),
            (false, _) => "not running".to_string(),
        };
        outln!(
            "{}: {state} (pid {}, console {})",
            vm.role,
            vm.pid,
            vm.files.console.display()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    match pair::agent_ready(state.grpc_port, None, deadline, None).await {
        Ok(n) => outln!(
            "agent: answers on 127.0.0.1:{} ({n} bdevs)",
            state.grpc_port
        ),
        Err(e) => {
            all = false;
            outln!("agent: {e}");
        }
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
