//! The QEMU runner's operations, each returning data for the CLI to print:
//! [`Runner::prepare`] (kernel, initramfs, accelerator), [`Runner::run`]
//! (boot a topology per agent setup, run the checks in the initiator,
//! tear down), and, in [`super::up`], the VMs a person keeps up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::channel::{Channel, Event};
use super::cluster::{free_port, BootConfig, Cluster};
use super::guest_kernel::{default_cache_dir, GuestKernel, KernelSource};
use super::kept::KeptState;
use super::qemu::Lifetime;
use super::run_dir::RunDir;
use super::spec::{self, Accel};
use super::topology::Topology;
use super::{accel, initramfs, Progress, VmError, GUEST_OUT_DIR, TARGET_IP};
use crate::suite::report::{Report, ReportError};
use crate::suite::{self, AgentSetup, RunError};

/// How the accelerator is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// Probe KVM (a real boot with a deadline), else TCG.
    Auto,
    /// This one.
    Use(Accel),
}

/// Seconds every VM may take to be ready, unless told otherwise.
pub const DEFAULT_BOOT_TIMEOUT_SECS: u64 = 60;
/// Memory of each VM in MiB, unless told otherwise.
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// Seconds the checks of one boot may take, unless told otherwise.
pub const DEFAULT_CHECKS_TIMEOUT_SECS: u64 = 1800;

/// How VMs are booted: the options `vm run`, `vm up` and `vm bench` share.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// KVM, TCG, or probe.
    pub accel: AccelChoice,
    /// Where the guest kernel and initramfs are cached.
    pub cache_dir: PathBuf,
    /// A guest kernel and its modules dir instead of Debian's.
    pub kernel: Option<(PathBuf, PathBuf)>,
    /// Deadline for every VM to be ready.
    pub boot_timeout: Duration,
    /// Memory of each VM.
    pub memory_mib: u32,
}

impl BootOptions {
    /// The defaults of the command line: probe the accelerator, Debian's
    /// kernel in the default cache, [`DEFAULT_BOOT_TIMEOUT_SECS`] to boot,
    /// [`DEFAULT_MEMORY_MIB`] each.
    pub fn new() -> Self {
        Self {
            accel: AccelChoice::Auto,
            cache_dir: default_cache_dir(),
            kernel: None,
            boot_timeout: Duration::from_secs(DEFAULT_BOOT_TIMEOUT_SECS),
            memory_mib: DEFAULT_MEMORY_MIB,
        }
    }
}

impl Default for BootOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a runner operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A VM step failed; `phase` names the step.
    #[error("phase {phase}: {source}")]
    Phase {
        /// `kernel`, `initramfs`, `accel probe`, `boot`, `checks`, …
        phase: &'static str,
        /// What failed.
        source: VmError,
    },
    /// The categories or filter do not make a plan.
    #[error(transparent)]
    Plan(#[from] RunError),
    /// A report could not be read or written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A signal ended the operation.
    #[error("{why} while {during}")]
    Interrupted {
        /// Which signal.
        why: &'static str,
        /// The step it interrupted, and where its logs are.
        during: String,
    },
    /// Bad input or state, named with its fix.
    #[error("{0}")]
    Invalid(String),
}

fn phase(phase: &'static str) -> impl FnOnce(VmError) -> RunnerError {
    move |source| RunnerError::Phase { phase, source }
}

/// What `prepare` found: what every boot needs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The guest kernel.
    pub kernel: GuestKernel,
    /// The initramfs built for it.
    pub initrd: PathBuf,
    /// KVM or TCG.
    pub accel: Accel,
}

/// What `vm run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Categories, in any order.
    pub categories: Vec<String>,
    /// The output dir: reports, console logs, the agent's log.
    pub out: PathBuf,
    /// Only the cases matching this.
    pub filter: Option<String>,
    /// Deadline of the checks in each boot.
    pub timeout: Duration,
    /// Keep the data disk and report of the boot that leaves a data set
    /// (basic's) in this state dir.
    pub keep_state: Option<PathBuf>,
    /// Boot the first target on a copy of this state dir's disk, with its
    /// report vouching for the categories it passed.
    pub from_state: Option<PathBuf>,
    /// A report vouching for the categories it passed, for a run on blank
    /// disks.
    pub require_passed: Option<PathBuf>,
}

/// What one `vm run` measured besides its report.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Exit status of `nvmfcheck run` in the initiator (of the first boot
    /// that failed, if one did).
    pub code: i32,
    /// When the last VM of the slowest boot was ready.
    pub ready: Duration,
    /// Peak RSS of each VM's QEMU in MiB, the largest over the boots.
    pub rss_mib: Vec<(String, u64)>,
    /// How long the checks took by the host's clock.
    pub checks: Duration,
    /// Each boot's warning that the guest's clock ran fast.
    pub clock_warnings: Vec<String>,
    /// Whether a boot's data disk was kept (`--keep-state`).
    pub kept: bool,
}

impl RunOutcome {
    /// Peak RSS of VM `name`'s QEMU in MiB; 0 if unknown.
    pub fn rss_of(&self, name: &str) -> u64 {
        self.rss_mib
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, r)| *r)
    }

    fn merge(self, later: RunOutcome) -> RunOutcome {
        let mut rss = self.rss_mib;
        for (name, mib) in later.rss_mib {
            match rss.iter_mut().find(|(n, _)| *n == name) {
                Some((_, r)) => *r = (*r).max(mib),
                None => rss.push((name, mib)),
            }
        }
        RunOutcome {
            code: if self.code != 0 {
                self.code
            } else {
                later.code
            },
            ready: self.ready.max(later.ready),
            rss_mib: rss,
            checks: self.checks + later.checks,
            clock_warnings: [self.clock_warnings, later.clock_warnings].concat(),
            kept: self.kept || later.kept,
        }
    }
}

/// Output of a command run in a VM, as it comes.
pub type OutputSink<'a> = &'a (dyn Fn(&Event) + Sync);

/// Boots VMs and runs things in them; see the module doc.
#[derive(Debug, Clone)]
pub struct Runner {
    /// How the VMs boot.
    pub boot: BootOptions,
    /// Where phase lines go.
    pub progress: Progress,
}

impl Runner {
    /// A runner booting as `boot` says, reporting phases to `progress`.
    pub fn new(boot: BootOptions, progress: Progress) -> Self {
        Self { boot, progress }
    }

    /// Kernel, initramfs and accelerator: everything before QEMU starts.
    pub async fn prepare(&self) -> Result<Prepared, RunnerError> {
        spec::check_installed().map_err(phase("host"))?;
        let cache = self.boot.cache_dir.clone();
        let source = match &self.boot.kernel {
            Some((kernel, modules)) => KernelSource::Files {
                kernel: kernel.clone(),
                modules: modules.clone(),
                cache: cache.clone(),
            },
            None => KernelSource::Debian {
                cache: cache.clone(),
            },
        };
        let progress = &self.progress;
        let kernel = source.resolve(progress).await.map_err(phase("kernel"))?;
        let initrd = {
            let (k, c) = (kernel.clone(), cache.clone());
            tokio::task::spawn_blocking(move || initramfs::build(&k, &c))
                .await
                .map_err(|e| RunnerError::Invalid(format!("building the initramfs: {e}")))?
                .map_err(phase("initramfs"))?
        };
        progress.say(format!(
            "guest kernel {} ({}), initramfs {}",
            kernel.version,
            kernel.vmlinux.display(),
            initrd.display()
        ));
        let accel = match self.boot.accel {
            AccelChoice::Use(a) => a,
            AccelChoice::Auto => {
                let v = accel::auto(&kernel.vmlinux, &cache)
                    .await
                    .map_err(phase("accel probe"))?;
                progress.say(format!("accel {}: {}", v.accel.name(), v.reason));
                v.accel
            }
        };
        Ok(Prepared {
            kernel,
            initrd,
            accel,
        })
    }

    /// What [`Cluster::boot`] needs, for this runner's options.
    pub(crate) fn boot_config(
        &self,
        prepared: &Prepared,
        grpc_port: u16,
        lifetime: Lifetime,
        setup: AgentSetup,
    ) -> Result<BootConfig, RunnerError> {
        let exe = std::env::current_exe()
            .map_err(|e| RunnerError::Invalid(format!("cannot find the nvmfcheck binary: {e}")))?;
        Ok(BootConfig {
            kernel: prepared.kernel.clone(),
            initrd: prepared.initrd.clone(),
            exe,
            accel: prepared.accel,
            memory_mib: self.boot.memory_mib,
            boot_timeout: self.boot.boot_timeout,
            lifetime,
            setup,
            grpc_port,
            data_from: None,
        })
    }

    /// Boots `topology` into `dir`, unless a signal comes first.
    pub(crate) async fn boot(
        &self,
        cfg: &BootConfig,
        topology: &Topology,
        dir: &RunDir,
    ) -> Result<Cluster, RunnerError> {
        // Dropping the boot future on a signal drops the QEMU handles,
        // which kills them.
        let cluster = tokio::select! {
            r = Cluster::boot(cfg, topology, dir, &self.progress) => r.map_err(phase("boot"))?,
            why = interrupted() => return Err(RunnerError::Interrupted {
                why,
                during: format!("booting; console logs in {}", dir.out().display()),
            }),
        };
        let times: Vec<String> = cluster
            .ready_after
            .iter()
            .map(|(name, t)| format!("{name} {:.2}s", t.as_secs_f64()))
            .collect();
        self.progress
            .say(format!("all VMs ready ({})", times.join(", ")));
        Ok(cluster)
    }

    /// `vm run`: checks the plan, prepares, then boots once per agent setup
    /// the categories need, runs them in the initiator with the output
    /// going to `output`, and tears down. With several boots each writes
    /// its report into `<out>/<k>-<setup>/`, merged into `<out>`. A boot's
    /// dependencies are vouched for by the given report (`from_state`'s or
    /// `require_passed`) and the earlier boots', merged into
    /// `<out>/prior/`. With `from_state` the first target boots on a copy
    /// of the kept disk; with `keep_state` the disk of the boot that leaves
    /// a data set is kept, after its VMs are stopped.
    pub async fn run(
        &self,
        opts: &RunOptions,
        output: OutputSink<'_>,
    ) -> Result<RunOutcome, RunnerError> {
        let out = absolute(&opts.out)?;
        std::fs::create_dir_all(&out)
            .map_err(|e| RunnerError::Invalid(format!("cannot create {}: {e}", out.display())))?;
        // Stale results must not pass for this run's.
        for stale in ["report.json", "junit.xml"] {
            let _ = std::fs::remove_file(out.join(stale));
        }
        let _ = std::fs::remove_dir_all(out.join(PRIOR_DIR));
        // The disk to boot on, and the report that vouches for the
        // dependencies not run now.
        let kept = opts
            .from_state
            .as_deref()
            .map(KeptState::load)
            .transpose()?;
        let given = match (&kept, &opts.require_passed) {
            (Some(kept), _) => Some(kept.report.clone()),
            (None, Some(path)) => Some(Report::load(path)?),
            (None, None) => None,
        };
        // The plan is checked before anything boots.
        let registry = suite::registry();
        let plan_opts = suite::RunOptions {
            categories: opts.categories.clone(),
            filter: opts.filter.clone(),
            prior: given.clone(),
        };
        let plan = suite::plan(&registry, &plan_opts)?;
        let groups = suite::setup::by_setup(&plan);
        if opts.keep_state.is_some() && !groups.iter().any(|(_, cats)| leaves_state(cats)) {
            return Err(RunnerError::Invalid(format!(
                "--keep-state keeps the disk of a boot whose last category leaves a data set \
                 (basic); {} leaves none: run `nvmfcheck vm run basic --keep-state DIR`",
                opts.categories.join(" ")
            )));
        }
        let prepared = tokio::select! {
            r = self.prepare() => r?,
            why = interrupted() => return Err(RunnerError::Interrupted {
                why,
                during: "preparing".into(),
            }),
        };
        let mut outcome: Option<RunOutcome> = None;
        let mut parts = Vec::new();
        for (k, (setup, cats)) in groups.iter().enumerate() {
            let names: Vec<String> = cats.iter().map(|c| c.name.to_string()).collect();
            if outcome.as_ref().is_some_and(|o| o.code != 0) {
                self.progress.say(format!(
                    "not run: {} (an earlier boot's checks failed)",
                    names.join(" ")
                ));
                break;
            }
            // With one boot the report lands in --out itself; with
            // several, each boot's in a subdir, merged at the end.
            let part = (groups.len() > 1).then(|| format!("{}-{setup}", k + 1));
            if groups.len() > 1 {
                self.progress.say(format!(
                    "boot {} of {}: {} with the {setup} agent",
                    k + 1,
                    groups.len(),
                    names.join(" ")
                ));
            }
            // The given report and the earlier boots' vouch for this
            // boot's dependencies.
            let vouching = Report::merge(given.iter().chain(&parts).cloned().collect());
            if let Some(report) = &vouching {
                report.write(&out.join(PRIOR_DIR))?;
            }
            let group = Group {
                setup: *setup,
                categories: &names,
                part: part.as_deref(),
                prior: vouching.is_some(),
                data_from: kept.as_ref().filter(|_| k == 0).map(|k| k.disk.as_path()),
                keep: opts.keep_state.as_deref().filter(|_| leaves_state(cats)),
            };
            let this = self
                .run_group(opts, &out, &prepared, &group, output)
                .await?;
            if let Some(part) = &part {
                parts.push(Report::load(&out.join(part).join("report.json"))?);
                if let Some(merged) = Report::merge(parts.clone()) {
                    merged.write(&out)?;
                }
            }
            outcome = Some(match outcome {
                None => this,
                Some(o) => o.merge(this),
            });
        }
        let outcome = outcome.ok_or_else(|| RunnerError::Invalid("no category to run".into()))?;
        if let Some(dir) = opts.keep_state.as_deref().filter(|_| outcome.code == 0) {
            if !outcome.kept {
                return Err(RunnerError::Invalid(format!(
                    "nothing kept in {}: the run passed but no case left a data set (did \
                     --filter leave out basic/data-set?)",
                    dir.display()
                )));
            }
        }
        Ok(outcome)
    }

    async fn run_group(
        &self,
        opts: &RunOptions,
        out: &Path,
        prepared: &Prepared,
        group: &Group<'_>,
        output: OutputSink<'_>,
    ) -> Result<RunOutcome, RunnerError> {
        let topology = Topology::for_setup(group.setup);
        let dir = RunDir::fresh(out.to_path_buf()).map_err(phase("boot"))?;
        let port = free_port().map_err(phase("boot"))?;
        let mut cfg = self.boot_config(prepared, port, Lifetime::Owned, group.setup)?;
        cfg.data_from = group.data_from.map(Path::to_path_buf);
        if let Some(from) = group.data_from {
            self.progress.say(format!(
                "the target's data disk is a copy of {}",
                from.display()
            ));
        }
        let cluster = self.boot(&cfg, &topology, &dir).await?;
        let argv = group.argv(&cfg.exe, opts.filter.as_deref());
        self.progress.say(format!(
            "initiator: {} ({} build)",
            argv.join(" "),
            crate::BUILD_PROFILE
        ));
        let started = Instant::now();
        let result = match cluster.initiator().and_then(|vm| vm.channel()) {
            Ok(channel) => tokio::select! {
                r = stream(channel, &argv, opts.timeout, output) => r,
                e = cluster.died() => Err(RunnerError::Phase { phase: "checks", source: e }),
                why = interrupted() => Err(RunnerError::Interrupted {
                    why,
                    during: "the checks ran".into(),
                }),
            },
            Err(e) => Err(RunnerError::Phase {
                phase: "checks",
                source: e,
            }),
        };
        let checks = started.elapsed();
        // A target that resets in place (PowerCycle) would hide a panic.
        let result = match (result, cluster.panic()) {
            (Ok(_), Some(e)) => Err(RunnerError::Phase {
                phase: "checks",
                source: e,
            }),
            (result, _) => result,
        };
        let rss_mib: Vec<(String, u64)> = cluster
            .vms
            .iter()
            .map(|vm| (vm.name.clone(), vm.peak_rss_mib().unwrap_or(0)))
            .collect();
        let shown: Vec<String> = rss_mib
            .iter()
            .map(|(name, mib)| format!("{name} QEMU {mib} MiB"))
            .collect();
        self.progress.say(format!("peak RSS: {}", shown.join(", ")));
        let ready = cluster.ready();
        self.progress.say("tearing down");
        cluster.shutdown(Duration::from_secs(5)).await;
        self.progress.say(format!(
            "VMs stopped; reports, console and agent logs in {}",
            out.display()
        ));
        let code = result?;
        let report_path = group
            .part
            .map_or(out.to_path_buf(), |p| out.join(p))
            .join("report.json");
        let report = Report::load(&report_path).ok();
        let clock_warnings: Vec<String> = report
            .as_ref()
            .and_then(|r| clock_check(r.duration_secs, checks))
            .into_iter()
            .collect();
        for w in &clock_warnings {
            self.progress.say(format!("warning: {w}"));
        }
        // The disk as the powered-off target left it, with the report that
        // says what is on it.
        let keep = group
            .keep
            .zip(report.filter(|r| code == 0 && r.state.is_some()));
        let kept = match (keep, group.setup.targets().first()) {
            (Some((state_dir, report)), Some(target)) => {
                let bytes = KeptState::save(state_dir, &dir.data_image(target), &report)?;
                self.progress.say(format!(
                    "kept {target}'s data disk ({:.1} MiB of data) and the report in {}",
                    bytes as f64 / f64::from(1 << 20),
                    state_dir.display()
                ));
                true
            }
            _ => false,
        };
        Ok(RunOutcome {
            code,
            ready,
            rss_mib,
            checks,
            clock_warnings,
            kept,
        })
    }
}

/// One boot of a `vm run`: the categories that share an agent setup.
struct Group<'a> {
    setup: AgentSetup,
    categories: &'a [String],
    /// The subdir of the output dir its report goes to, when the run has
    /// several boots.
    part: Option<&'a str>,
    /// Whether the output dir holds a report that vouches for
    /// dependencies ([`PRIOR_DIR`]).
    prior: bool,
    /// The image the target's data disk is a copy of.
    data_from: Option<&'a Path>,
    /// The state dir to keep the target's data disk in, if this boot
    /// leaves a data set.
    keep: Option<&'a Path>,
}

/// Where a run puts the report that vouches for a boot's dependencies (the
/// given one and the earlier boots'), under the output dir.
const PRIOR_DIR: &str = "prior";

/// Whether a boot of `cats` ends with a category that leaves a data set.
fn leaves_state(cats: &[&suite::Category]) -> bool {
    cats.last().is_some_and(|c| c.leaves_state)
}

impl Group<'_> {
    /// The `nvmfcheck run` command line in the initiator.
    fn argv(&self, exe: &Path, filter: Option<&str>) -> Vec<String> {
        let guest_out = Path::new(GUEST_OUT_DIR);
        let report_dir = self
            .part
            .map_or(guest_out.to_path_buf(), |p| guest_out.join(p));
        let mut argv = vec![exe.display().to_string(), "run".into()];
        argv.extend(self.categories.iter().cloned());
        argv.extend([
            "--target".into(),
            self.setup.grpc_target(TARGET_IP),
            "--report-dir".into(),
            report_dir.display().to_string(),
        ]);
        if self.setup.targets().len() > 1 {
            argv.extend([
                "--node2".into(),
                self.setup.grpc_target(&AgentSetup::target_ip(1)),
            ]);
        }
        if self.setup.needs_token() {
            argv.extend([
                "--token-file".into(),
                guest_out.join(super::TOKEN_FILE).display().to_string(),
            ]);
        }
        if self.prior {
            argv.extend([
                "--require-passed".into(),
                guest_out
                    .join(PRIOR_DIR)
                    .join("report.json")
                    .display()
                    .to_string(),
            ]);
        }
        if let Some(f) = filter {
            argv.extend(["--filter".into(), f.to_string()]);
        }
        argv
    }
}

/// The guest times the steps with its own clock; if that clock ran faster
/// than the host's (a TSC mis-calibrated on a loaded host), every time in
/// the report and every deadline inside the guest is wrong: say so.
pub fn clock_check(guest_secs: f64, host: Duration) -> Option<String> {
    let host_secs = host.as_secs_f64();
    (guest_secs > host_secs * 1.1 + 1.0).then(|| {
        format!(
            "the guest's clock ran fast: the checks took {guest_secs:.1} s by the initiator's \
             clock but {host_secs:.1} s by the host's; the report's times are not to be trusted"
        )
    })
}

/// Runs `argv` over `channel`, handing its output to `output` as it comes;
/// returns its exit status.
pub(crate) async fn stream(
    channel: &Channel,
    argv: &[String],
    timeout: Duration,
    output: OutputSink<'_>,
) -> Result<i32, RunnerError> {
    // The guest starts from a clean environment; a log level is worth
    // passing on.
    let env = std::env::var("RUST_LOG")
        .map(|v| [("RUST_LOG".to_string(), v)].into())
        .unwrap_or_default();
    channel
        .run(argv, env, timeout, output)
        .await
        .map_err(phase("checks"))
}

/// Resolves on Ctrl-C or SIGTERM, with which.
pub(crate) async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term.recv() => "terminated (SIGTERM)",
    }
}

pub(crate) fn absolute(p: &Path) -> Result<PathBuf, RunnerError> {
    std::path::absolute(p)
        .map_err(|e| RunnerError::Invalid(format!("cannot resolve {}: {e}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group<'a>(setup: AgentSetup, cats: &'a [String], part: Option<&'a str>) -> Group<'a> {
        Group {
            setup,
            categories: cats,
            part,
            prior: part.is_some(),
            data_from: None,
            keep: None,
        }
    }

    #[test]
    fn the_initiators_command_names_the_setups_target_token_and_prior_report() {
        let cats = vec!["security".to_string()];
        let g = group(AgentSetup::Hardened, &cats, Some("2-hardened"));
        let argv = g.argv(Path::new("/bin/nvmfcheck"), Some("dh"));
        let line = argv.join(" ");
        assert!(line.starts_with("/bin/nvmfcheck run security --target 192.168.1.2:10125"));
        assert!(line.contains("--report-dir /run/nvmfcheck/out/2-hardened"));
        assert!(line.contains("--token-file /run/nvmfcheck/out/agent.token"));
        assert!(line.contains("--require-passed /run/nvmfcheck/out/prior/report.json"));
        assert!(line.ends_with("--filter dh"));
        let cats = vec!["basic".to_string(), "io".to_string()];
        let line = group(AgentSetup::Faults, &cats, None)
            .argv(Path::new("/bin/nvmfcheck"), None)
            .join(" ");
        assert_eq!(
            line,
            "/bin/nvmfcheck run basic io --target 192.168.1.2:10124 --report-dir /run/nvmfcheck/out"
        );
    }

    #[test]
    fn outcomes_of_several_boots_keep_the_first_failure_and_the_peaks() {
        let a = RunOutcome {
            code: 0,
            ready: Duration::from_secs(2),
            rss_mib: vec![("target".into(), 300), ("initiator".into(), 200)],
            checks: Duration::from_secs(10),
            clock_warnings: vec![],
            kept: true,
        };
        let b = RunOutcome {
            code: 1,
            ready: Duration::from_secs(3),
            rss_mib: vec![("target".into(), 250), ("initiator".into(), 260)],
            checks: Duration::from_secs(5),
            clock_warnings: vec!["fast".into()],
            kept: false,
        };
        let m = a.merge(b);
        assert_eq!(m.code, 1);
        assert_eq!(m.ready, Duration::from_secs(3));
        assert_eq!((m.rss_of("target"), m.rss_of("initiator")), (300, 260));
        assert_eq!(m.checks, Duration::from_secs(15));
        assert_eq!(m.clock_warnings, ["fast"]);
        assert!(m.kept);
    }

    #[test]
    fn a_guest_clock_that_ran_fast_is_named() {
        assert!(clock_check(100.0, Duration::from_secs(95)).is_none());
        let w = clock_check(600.0, Duration::from_secs(25)).unwrap();
        assert!(w.contains("ran fast"), "{w}");
    }
}
