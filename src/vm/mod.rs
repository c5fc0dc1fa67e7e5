//! The QEMU runner for hosts without Nix: VMs booted from Debian's kernel
//! with the host's root shared read-only, unix-socket links between them,
//! and a control channel into each.
//!
//! Guest paths: the host root is the guest's `/` (read-only, over 9p, with
//! tmpfs on `/tmp`, `/run`, `/var/tmp`, `/var/lib`, `/dev/shm`), the
//! nvmfcheck binary runs at its host path, and the run's output dir is
//! writable at [`GUEST_OUT_DIR`]. Commands run from `/tmp`.
//!
//! The [`runner`] is the entry point: its operations (prepare, run, soak,
//! bench; up, exec, status, down in [`up`]) return data for the CLI to
//! print. A [`topology`] says which VMs boot, what each runs and how they
//! are linked; a [`run_dir`] names every file of a run. Boot, in order:
//! `guest_kernel` (Debian's package, unpacked in Rust, vmlinux extracted
//! from the bzImage so that qboot boots it through its PVH entry),
//! `initramfs` (busybox, an init script, the modules), `accel`, then
//! [`cluster`] starts the VMs in the topology's order (a link's server
//! first: it makes the `-netdev stream` socket) and waits for each guest
//! daemon's hello on the `channel` and for the agent to answer
//! `BdevRpc.List` through the forwarded loopback port. The README's
//! measured section has the times; the guest's `dmesg` has the init's and
//! daemon's steps with timestamps.

pub(crate) mod accel;
pub(crate) mod bzimage;
pub(crate) mod channel;
pub mod cluster;
pub(crate) mod deb;
pub mod guest;
pub(crate) mod guest_kernel;
pub(crate) mod hostfs;
pub(crate) mod initramfs;
pub mod kept;
pub(crate) mod modules;
pub(crate) mod protocol;
pub(crate) mod qemu;
pub(crate) mod qmp;
pub(crate) mod relay;
pub(crate) mod repeat;
pub mod run_dir;
pub mod runner;
pub(crate) mod sparse;
pub(crate) mod spec;
pub mod topology;
pub mod up;
pub(crate) mod up_state;
pub mod workload;

pub use channel::Event;
pub use guest_kernel::default_cache_dir;
pub use qemu::Lifetime;
pub use spec::Accel;
pub use up_state::default_state_dir;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the host's output dir is mounted (writable) in both guests.
pub const GUEST_OUT_DIR: &str = "/run/nvmfcheck/out";
/// The target's address on the VM-to-VM link (the pair's topology gives
/// it; a test holds the two equal).
pub const TARGET_IP: &str = crate::suite::setup::TARGET_IP;
/// The port the agent serves gRPC on inside the target.
pub const AGENT_PORT: u16 = crate::suite::setup::GRPC_PORT;
/// The agent's token in the output dir, for setups that need one: the
/// runner writes it before boot and removes it after.
pub const TOKEN_FILE: &str = "agent.token";
/// The target's address on its forwarding NIC (QEMU user networking's
/// guest address), where the host's loopback forward to the agent lands.
pub const FORWARD_IP: &str = "10.0.2.15";

/// Which of the two VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Exports the disk (runs the agent).
    Target,
    /// Connects to the target and runs the checks.
    Initiator,
}

impl Role {
    /// Both roles, target first (it has to start first: it serves the link).
    pub const ALL: [Role; 2] = [Role::Target, Role::Initiator];

    /// The lowercase name used in file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Target => "target",
            Role::Initiator => "initiator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "target" => Ok(Role::Target),
            "initiator" => Ok(Role::Initiator),
            _ => Err(format!("unknown VM `{s}`: use `target` or `initiator`")),
        }
    }
}

/// Why a VM step failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A host program or file is missing; names the Debian package.
    #[error("{what} is missing: install it with `apt-get install {package}`")]
    Missing {
        /// The program or file.
        what: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// Fetching or reading the guest kernel or its modules failed.
    #[error("guest kernel: {0}")]
    Kernel(String),
    /// An external command failed.
    #[error(transparent)]
    Cmd(#[from] crate::cmd::CmdError),
    /// Bad input from the user.
    #[error("{0}")]
    Invalid(String),
    /// A step did not finish in time.
    #[error("{what} did not finish within {:.1}s{}", .after.as_secs_f64(), tail_text(.log))]
    Timeout {
        /// The step, naming the VM.
        what: String,
        /// The deadline.
        after: Duration,
        /// The VM's console log, if one is relevant.
        log: Option<LogTail>,
    },
    /// A QEMU process ended while it was needed.
    #[error("{name} VM: QEMU exited ({status}){}", tail_text(.log))]
    QemuExited {
        /// Which VM.
        name: String,
        /// How it ended.
        status: String,
        /// Its console and QEMU logs.
        log: Option<LogTail>,
    },
    /// A guest kernel panicked in a VM that boots again in place (see
    /// [`spec::VmSpec::reboots`]), so QEMU did not exit to say so.
    #[error("{name} VM: its kernel panicked and it booted again; the checks may have passed on a fresh {name}{}", tail_text(&Some(.log.clone())))]
    Panicked {
        /// Which VM.
        name: String,
        /// Its console log around the panic.
        log: LogTail,
    },
    /// The target's agent exited while the pair was booting.
    #[error("target VM: the agent exited{}", tail_text(&Some(.log.clone())))]
    AgentExited {
        /// The agent's log.
        log: LogTail,
    },
    /// The host↔guest channel or QMP failed.
    #[error("{0}")]
    Channel(String),
}

/// The last lines of a log file, carried in errors so that a person sees
/// what the guest printed before it hung or died.
#[derive(Debug, Clone)]
pub struct LogTail {
    /// The log files read.
    pub paths: Vec<PathBuf>,
    /// Their last lines.
    pub lines: Vec<String>,
}

impl LogTail {
    /// The last `n` lines of each existing file in `paths`.
    pub fn read(paths: &[PathBuf], n: usize) -> Self {
        let mut lines = Vec::new();
        for p in paths {
            let Ok(bytes) = std::fs::read(p) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if all.is_empty() {
                continue;
            }
            lines.push(format!("--- last lines of {} ---", p.display()));
            lines.extend(
                all[all.len().saturating_sub(n)..]
                    .iter()
                    .map(|l| l.to_string()),
            );
        }
        Self {
            paths: paths.to_vec(),
            lines,
        }
    }
}

fn tail_text(log: &Option<LogTail>) -> String {
    match log {
        Some(t) if !t.lines.is_empty() => format!("\n{}", t.lines.join("\n")),
        Some(t) => {
            let paths: Vec<_> = t.paths.iter().map(|p| p.display().to_string()).collect();
            format!(" (nothing in {})", paths.join(", "))
        }
        None => String::new(),
    }
}

/// Builds the `map_err` closure for an I/O error, naming what was done.
pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// Where the runner's phase lines go: each with the time since the
/// runner started, to a sink the caller chooses (the CLI prints them on
/// stderr, as stdout carries the output of what runs in the VMs).
#[derive(Clone)]
pub struct Progress {
    start: Instant,
    sink: std::sync::Arc<PhaseSink>,
}

/// Takes a phase line with the time since the runner started.
type PhaseSink = dyn Fn(Duration, &str) + Send + Sync;

impl Progress {
    /// Starts the clock; phase lines go to `sink`.
    pub fn new(sink: impl Fn(Duration, &str) + Send + Sync + 'static) -> Self {
        Self {
            start: Instant::now(),
            sink: std::sync::Arc::new(sink),
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Reports one phase.
    pub fn say(&self, msg: impl fmt::Display) {
        (self.sink)(self.start.elapsed(), &msg.to_string());
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}
