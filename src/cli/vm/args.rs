//! The arguments of `nvmfcheck vm`'s subcommands, and the library options
//! they make.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use nvmfcheck::suite::AgentSetup;
use nvmfcheck::vm::default_cache_dir;
use nvmfcheck::vm::default_state_dir;
use nvmfcheck::vm::run_dir::RunDir;
use nvmfcheck::vm::runner::{
    AccelChoice, BootOptions, Runner, DEFAULT_BOOT_TIMEOUT_SECS, DEFAULT_CHECKS_TIMEOUT_SECS,
    DEFAULT_MEMORY_MIB,
};
use nvmfcheck::vm::up::state_run_dir;
use nvmfcheck::vm::Accel;
use nvmfcheck::vm::{Progress, Role, TARGET_IP};

/// Subcommands of `nvmfcheck vm`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Boot the VMs each category's setup needs, run the categories on the
    /// initiator against the targets, copy out the reports, tear everything
    /// down.
    Run(RunArgs),
    /// Boot the pair and leave it running (see `vm exec`, `vm down`).
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
    pub(super) accel: AccelArg,
    /// Where the guest kernel and initramfs are cached
    /// [default: $XDG_CACHE_HOME/nvmfcheck or ~/.cache/nvmfcheck].
    #[arg(long)]
    pub(super) cache_dir: Option<PathBuf>,
    /// Guest kernel (vmlinux or bzImage) instead of Debian's; needs --modules.
    #[arg(long, requires = "modules")]
    pub(super) kernel: Option<PathBuf>,
    /// The guest kernel's modules dir (…/lib/modules/<version>).
    #[arg(long, requires = "kernel")]
    pub(super) modules: Option<PathBuf>,
    /// Seconds every VM may take until it is ready.
    #[arg(long, default_value_t = DEFAULT_BOOT_TIMEOUT_SECS)]
    pub(super) boot_timeout: u64,
    /// Memory of each VM in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB)]
    pub(super) memory: u32,
}

/// Arguments of `vm run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Categories to run, in dependency order whatever the order given.
    #[arg(default_value = "basic")]
    pub(super) categories: Vec<String>,
    /// Where the reports, console logs and the agent log are written.
    #[arg(long, default_value = "./nvmfcheck-out")]
    pub(super) out: PathBuf,
    /// Run only the cases matching this pattern.
    #[arg(long)]
    pub(super) filter: Option<String>,
    /// Seconds the checks may take.
    #[arg(long, default_value_t = DEFAULT_CHECKS_TIMEOUT_SECS)]
    pub(super) timeout: u64,
    /// Run the categories this many times in a row, each on freshly booted
    /// VMs (a soak); results go to `run-1`, `run-2`, ... under --out, and
    /// a table of each case's passes and median time ends the output.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(super) repeat: u32,
    /// Keep one host core busy throughout, as a loaded CI host would.
    #[arg(long)]
    pub(super) busy_core: bool,
    /// After the VMs are powered off, copy the target's data disk (sparse)
    /// and the report into DIR, for `--from-state DIR`: the boot must end
    /// with basic, whose last case leaves a data set on the disk.
    #[arg(long, value_name = "DIR")]
    pub(super) keep_state: Option<PathBuf>,
    /// Boot the first target on a copy of the data disk that
    /// `--keep-state DIR` kept, with its report vouching for the categories
    /// it passed (io's first case reads basic's data set back).
    #[arg(long, value_name = "DIR", conflicts_with = "require_passed")]
    pub(super) from_state: Option<PathBuf>,
    /// A report.json whose passed categories stand for the dependencies not
    /// run now (on blank disks; see --from-state).
    #[arg(long, value_name = "REPORT")]
    pub(super) require_passed: Option<PathBuf>,
    #[command(flatten)]
    pub(super) boot: BootArgs,
}

/// Arguments of `vm bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// How many runs of `vm run basic`, one after another (their medians
    /// are the boot and overhead figures).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(super) runs: u32,
    /// Where each run's reports and logs go (`run-1`, `run-2`, ...,
    /// `workload`), and `bench.json`.
    #[arg(long, default_value = "./nvmfcheck-bench")]
    pub(super) out: PathBuf,
    /// Seconds each data-path fio job runs, in the target and over the
    /// fabric.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(super) job_secs: u64,
    /// Calls of each kind in the control path.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(super) calls: u32,
    /// Bdevs the scale bench shares and connects.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(super) bdevs: u32,
    /// A bench.json of an earlier `vm bench`: print each figure's ratio
    /// against it (read before anything boots).
    #[arg(long, value_name = "BENCH_JSON")]
    pub(super) compare: Option<PathBuf>,
    #[command(flatten)]
    pub(super) boot: BootArgs,
}

/// Where `vm up` keeps its state.
#[derive(clap::Args)]
pub struct StateArgs {
    /// State dir of the pair [default: $XDG_STATE_HOME/nvmfcheck/vm or
    /// ~/.local/state/nvmfcheck/vm].
    #[arg(long)]
    pub(super) state_dir: Option<PathBuf>,
}

impl StateArgs {
    /// The state dir as a run dir, and the `--state-dir` flag to repeat in
    /// advice.
    pub(super) fn run_dir(&self) -> anyhow::Result<(RunDir, String)> {
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
    pub(super) state: StateArgs,
    /// Loopback port on the host forwarded to the target's gRPC (default: a
    /// free one).
    #[arg(long)]
    pub(super) grpc_port: Option<u16>,
    /// Boot the target on a copy of the data disk that `vm run
    /// --keep-state DIR` kept, to look at what a run left.
    #[arg(long, value_name = "DIR")]
    pub(super) from_state: Option<PathBuf>,
    #[command(flatten)]
    pub(super) boot: BootArgs,
}

/// Arguments of `vm exec`.
#[derive(clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub(super) state: StateArgs,
    /// Seconds the command may take.
    #[arg(long, default_value_t = 600)]
    pub(super) timeout: u64,
    /// The VM's name: `target` or `initiator`.
    pub(super) vm: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub(super) command: Vec<String>,
}

/// Arguments of `vm guest`.
#[derive(clap::Args)]
pub struct GuestArgs {
    /// What this VM runs.
    #[arg(long)]
    pub(super) role: Role,
    /// The VM's name [default: its role].
    #[arg(long)]
    pub(super) name: Option<String>,
    /// The VM's address on its first link, where its agent serves.
    #[arg(long, default_value = TARGET_IP)]
    pub(super) address: String,
    /// The VM has the host's forward NIC: its agent serves gRPC there too.
    #[arg(long)]
    pub(super) forward: bool,
    /// How the target runs its agent: a setup of src/suite/setups.json
    /// (faults, hardened, replication).
    #[arg(long, default_value = "faults", value_parser = parse_setup)]
    pub(super) setup: AgentSetup,
}

fn parse_setup(name: &str) -> Result<AgentSetup, String> {
    AgentSetup::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = AgentSetup::ALL.iter().map(|s| s.name()).collect();
        format!("unknown setup {name:?}; known: {}", known.join(", "))
    })
}

impl BootArgs {
    pub(super) fn options(&self) -> BootOptions {
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
    pub(super) fn runner(&self) -> Runner {
        let progress = Progress::new(|t, msg| eprintln!("[{:7.2}s] {msg}", t.as_secs_f64()));
        Runner::new(self.options(), progress)
    }
}
