//! The target-side agent: Mayastor's v0 `BdevRpc` gRPC service on the Linux
//! kernel NVMe target (nvmet), driven through configfs. Mayastor's v0
//! `Mayastor` service is there too: its pool and replica calls are served
//! on LVM2 ([`pools`]), the others answer `UNIMPLEMENTED` for now
//! ([`mayastor`]).
//!
//! - **Bdevs.** `aio:///<path>` is a block device or regular file, named by
//!   its URI (`aio:///dev/vdb`). `malloc:///<name>?size_mb=<n>` (or
//!   `num_blocks=<n>`) is a RAM disk named `<name>` (as Mayastor names it:
//!   the path without its `/`), backed by a sparse file
//!   `<state dir>/malloc/<name>` on a tmpfs that [`serve`] mounts there
//!   (unless it already is tmpfs), so it works in a minimal VM whatever
//!   `/dev/shm` is. Both take `uuid=<uuid>`; otherwise a random uuid is
//!   assigned, and kept in `<state dir>/state.json`. Both take
//!   `blk_size=512|4096`, 512 by default as in Mayastor (see
//!   `device::export_blk_size`); where nvmet would export another block
//!   size, a loop device gives the bdev its own (`loopdev`).
//! - **Shares.** See `nvmet`: subsystem `nqn.2019-05.io.openebs:<uuid>`,
//!   namespace 1, linked to both the I/O port (8430) and the discovery
//!   port (8420); share URI `nvmf://<address>:8430/<nqn>`. Share's
//!   `allowed_hosts` limits who may connect (none: any host); the agent
//!   removes the `hosts/` directories it made once no subsystem admits
//!   them, and never one it did not make.
//! - **State lives in the kernel.** Shares are configfs objects and outlive
//!   the agent; a starting agent rebuilds its view from configfs and the
//!   state file (`bdevs::BdevTable::open`) and logs every discrepancy.
//! - **Requests** are validated before anything changes, run one at a time
//!   within a deadline (`serial`: those behind one stuck in the kernel
//!   are `UNAVAILABLE`), roll back on failure and map to gRPC codes;
//!   `docs/bad-input.md` lists each bad input with its code and message.
//!   Unshare of a bdev that is not shared succeeds (as in Mayastor:
//!   nothing to do); a missing aio path is `NOT_FOUND`.
//! - **Connections** are capped, closed when idle and kept alive
//!   (`incoming`).
//!
//! A test starts an agent on a fake kernel with [`Agent::start`] and the
//! `fake` module's `FakeConfigfs`, `FakeLoops` and `FakeLvm` (built for
//! tests only), then [`Agent::serve`] on a listener bound to
//! `127.0.0.1:0`.

pub(crate) mod aio_paths;
pub(crate) mod bdevs;
pub(crate) mod configfs;
pub(crate) mod control;
pub(crate) mod device;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
pub(crate) mod gate;
pub(crate) mod host;
pub(crate) mod incoming;
pub mod limits;
pub(crate) mod loopdev;
pub mod mayastor;
pub(crate) mod nexus;
pub(crate) mod nvmet;
pub(crate) mod pools;
pub(crate) mod security;
pub(crate) mod serial;
pub(crate) mod service;
pub(crate) mod state_file;
pub(crate) mod uri;

pub use configfs::{Configfs, SysConfigfs};
pub use control::power::SYSRQ_TRIGGER;
pub use incoming::Limits;
pub use loopdev::{KernelLoops, Loops};
pub use nexus::kernel::{KernelNexus, NexusKernel};
pub use pools::lvm::{KernelLvm, Lvm, CONFIG as LVM_CONFIG};

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::service::Routes;
use tracing::{info, warn};
use uuid::Uuid;

use crate::proto::control::control_server::ControlServer;
use crate::proto::mayastor::bdev_rpc_server::BdevRpcServer;
use crate::proto::mayastor::mayastor_server::MayastorServer;
use crate::proto::security::security_server::SecurityServer;
use crate::proto::security::ExposureReply;
use crate::token::{Token, TokenError};
use aio_paths::AioPaths;
use bdevs::{BdevTable, RequestError};
use control::faults::Faults;
use control::ControlService;
use device::{DeviceError, MallocDir};
use gate::Gate;
use host::KernelError;
use mayastor::MayastorService;
use nvmet::{Listener, Nvmet};
use security::SecurityService;
use serial::Serial;
use service::BdevService;
use tonic::service::interceptor::InterceptedService;

/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where the agent serves gRPC unless told otherwise: loopback only, so
/// that nothing beyond this machine reaches it until asked to.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 10124);

/// The TCP port of the NVMe discovery service unless told otherwise.
pub const DEFAULT_DISCOVERY_PORT: u16 = 8420;

/// The TCP port serving shared bdevs unless told otherwise: the one in
/// share URIs.
pub const DEFAULT_IO_PORT: u16 = 8430;

/// The agent's state directory unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nvmfcheck";

/// Where configfs is mounted unless told otherwise.
pub const DEFAULT_CONFIGFS: &str = "/sys/kernel/config";

/// How the agent runs; `nvmfcheck agent`'s flags.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// gRPC listen addresses ([`DEFAULT_LISTEN`]).
    pub listen: Vec<SocketAddr>,
    /// Address of the nvmet ports and in share URIs.
    pub address: Ipv4Addr,
    /// TCP port of the discovery service ([`DEFAULT_DISCOVERY_PORT`]).
    pub discovery_port: u16,
    /// TCP port serving I/O ([`DEFAULT_IO_PORT`]).
    pub io_port: u16,
    /// TCP port serving published nexuses; `io_port` when `None`.
    pub nexus_port: Option<u16>,
    /// The most a nexus's rebuild may copy, in KiB/s (md's
    /// `sync_speed_max`); the kernel's limit when `None`.
    pub rebuild_rate: Option<u32>,
    /// Where the state file and malloc files live.
    pub state_dir: PathBuf,
    /// The configfs mount point ([`DEFAULT_CONFIGFS`]).
    pub configfs: PathBuf,
    /// Bdev URIs to create at start (existing identical bdevs are fine).
    pub create: Vec<String>,
    /// Bdev names to share at start, for any host; a bdev already shared
    /// keeps its share as it is, allowed hosts included.
    pub share: Vec<String>,
    /// Whether the `Control` service (faults, restart) answers.
    pub faults: bool,
    /// Where `Control.PowerCycle` writes SysRq `b` to reset the machine
    /// ([`SYSRQ_TRIGGER`] with `--allow-power-cycle`);
    /// `None` refuses the call.
    pub power_cycle: Option<PathBuf>,
    /// Prefixes under which aio bdevs may be made (none by default).
    pub allow_paths: Vec<PathBuf>,
    /// A file whose token every call must carry.
    pub token_file: Option<PathBuf>,
}

impl AgentConfig {
    /// The defaults of `nvmfcheck agent`, serving on `address`.
    pub fn new(address: Ipv4Addr) -> Self {
        Self {
            listen: vec![DEFAULT_LISTEN],
            address,
            discovery_port: DEFAULT_DISCOVERY_PORT,
            io_port: DEFAULT_IO_PORT,
            nexus_port: None,
            rebuild_rate: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            configfs: PathBuf::from(DEFAULT_CONFIGFS),
            create: Vec::new(),
            share: Vec::new(),
            faults: false,
            power_cycle: None,
            allow_paths: Vec::new(),
            token_file: None,
        }
    }

    /// Checks what the types do not.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |msg: String| Err(AgentError::Config(msg));
        if self.address.is_unspecified()
            || self.address.is_broadcast()
            || self.address.is_multicast()
        {
            return bad(format!(
                "--address {} cannot be connected to; give the IPv4 address initiators reach this machine at",
                self.address
            ));
        }
        for (flag, port) in [
            ("--discovery-port", self.discovery_port),
            ("--io-port", self.io_port),
            ("--nexus-port", self.nexus_port()),
        ] {
            if port == 0 {
                return bad(format!(
                    "{flag} 0 is not a TCP port; give one from 1 to 65535"
                ));
            }
        }
        if self.discovery_port == self.io_port {
            return bad(format!(
                "--discovery-port and --io-port are both {}; they must differ (defaults \
                 {DEFAULT_DISCOVERY_PORT} and {DEFAULT_IO_PORT})",
                self.io_port
            ));
        }
        if self.power_cycle.is_some() && !self.faults {
            return bad(
                "--allow-power-cycle needs --faults: PowerCycle is a call of the Control \
                 service, which only --faults serves"
                    .into(),
            );
        }
        if self.nexus_port() == self.discovery_port {
            return bad(format!(
                "--nexus-port {} is the discovery port; give another, or leave it out to \
                 publish nexuses on the I/O port",
                self.discovery_port
            ));
        }
        if self.rebuild_rate == Some(0) {
            return bad(
                "--rebuild-rate 0 would stop every rebuild; give KiB/s, e.g. 4096, or leave it \
                 out for the kernel's limit"
                    .to_string(),
            );
        }
        if self.listen.is_empty() {
            return bad("give at least one --listen address".to_string());
        }
        for (i, addr) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(addr) {
                return bad(format!("--listen {addr} is given twice"));
            }
        }
        for prefix in &self.allow_paths {
            if !prefix.is_absolute() {
                return bad(format!(
                    "--allow-path {} is not absolute; give a path from /, e.g. /dev/vdb",
                    prefix.display()
                ));
            }
        }
        if self.state_dir.as_os_str().is_empty() || self.configfs.as_os_str().is_empty() {
            return bad("--state-dir and --configfs must not be empty".to_string());
        }
        // Syntax only, so that a typo fails before the kernel is touched;
        // whether the device exists is checked at start.
        for value in &self.create {
            uri::parse_create(value).map_err(startup_error("--create", value))?;
        }
        for name in &self.share {
            if name.is_empty() {
                return bad("--share needs a bdev name, e.g. --share aio:///dev/vdb".to_string());
            }
        }
        Ok(())
    }

    /// The port published nexuses are served on.
    pub fn nexus_port(&self) -> u16 {
        self.nexus_port.unwrap_or(self.io_port)
    }

    fn listener(&self) -> Listener {
        Listener {
            address: self.address,
            io_port: self.io_port,
            nexus_port: self.nexus_port(),
            discovery_port: self.discovery_port,
        }
    }
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A flag is wrong.
    #[error("{0}")]
    Config(String),
    /// The host lacks something.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The malloc directory.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Rebuilding the view from configfs and the state file failed.
    #[error("cannot start: {0}")]
    Open(RequestError),
    /// A `--create` or `--share` failed.
    #[error("{flag} {value}: {cause}")]
    Startup {
        /// `--create` or `--share`.
        flag: &'static str,
        /// Its value.
        value: String,
        /// Why (boxed: it is much bigger than the other variants).
        cause: Box<RequestError>,
    },
    /// The gRPC port is taken or not ours.
    #[error("cannot listen on {addr}: {cause}; is another agent running? Pick another --listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The `--token-file` cannot be used.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Startup work was cancelled.
    #[error("startup was interrupted: {0}")]
    Interrupted(String),
    /// `Restart` could not re-execute the agent.
    #[error("cannot re-execute the agent for Restart: {0}; start it again by hand")]
    Reexec(String),
}

/// Why [`Agent::serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown future completed; faults in force were restored.
    Shutdown,
    /// `Control.Restart` was called: re-execute the agent ([`reexec`]);
    /// faults in force stay recorded for the next instance.
    Restart,
}

/// A started agent: its view of the bdevs, ready to serve.
pub struct Agent {
    target: Arc<Serial>,
    connections: incoming::Limits,
    /// What `Security.Exposure` answers; its `faults` is also what decides
    /// whether `Control` answers.
    exposure: ExposureReply,
    power_cycle: Option<PathBuf>,
    faults: Arc<Faults>,
    token: Option<Token>,
    instance: Uuid,
    started: Instant,
    restart: Arc<Notify>,
}

/// Turns why `flag value` (`--create`, `--share`) failed into an error
/// naming both.
fn startup_error<E: Into<RequestError>>(
    flag: &'static str,
    value: &str,
) -> impl FnOnce(E) -> AgentError {
    let value = value.to_string();
    move |cause| AgentError::Startup {
        flag,
        value,
        cause: Box::new(cause.into()),
    }
}

impl Agent {
    /// Rebuilds the view from configfs (through `configfs`, rooted at the
    /// `nvmet` directory), LVM (through `lvm`) and `<state dir>/state.json`, then applies
    /// `--create` and `--share`, and reads the faults still in force from
    /// `<state dir>/faults.json`. Blocking.
    pub fn start(
        config: &AgentConfig,
        configfs: Arc<dyn Configfs>,
        loops: Arc<dyn Loops>,
        lvm: Arc<dyn Lvm>,
        nexus: Arc<dyn NexusKernel>,
    ) -> Result<Agent, AgentError> {
        config.validate()?;
        let token = config
            .token_file
            .as_deref()
            .map(Token::read_private)
            .transpose()?;
        let malloc = MallocDir::open(config.state_dir.join("malloc"))?;
        let nvmet = Nvmet::new(configfs, config.listener());
        let aio_paths = AioPaths::new(&config.allow_paths, &config.state_dir);
        let state_path = config.state_dir.join("state.json");
        let nexuses = nexus::Nexuses::open(
            nexus,
            nexus::host_nqn(config.address),
            config.rebuild_rate,
            &nvmet,
        );
        let mut target = BdevTable::open(nvmet, malloc, loops, aio_paths, state_path, lvm, nexuses)
            .map_err(AgentError::Open)?;
        for uri in &config.create {
            target
                .ensure_created(uri)
                .map_err(startup_error("--create", uri))?;
        }
        for name in &config.share {
            target
                .ensure_shared(name)
                .map_err(startup_error("--share", name))?;
        }
        let target = Arc::new(Serial::new(target, serial::REQUEST_DEADLINE));
        let faults = Faults::open(
            Arc::clone(&target),
            config.address,
            [config.discovery_port, config.io_port],
            config.state_dir.join("faults.json"),
        );
        let exposure = ExposureReply {
            listen: config.listen.iter().map(|a| a.to_string()).collect(),
            faults: config.faults,
            token_required: token.is_some(),
            power_cycle: config.power_cycle.is_some(),
            allowed_paths: config
                .allow_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        };
        Ok(Agent {
            target,
            exposure,
            power_cycle: config.power_cycle.clone(),
            connections: incoming::Limits::default(),
            faults: Arc::new(faults),
            token,
            instance: Uuid::new_v4(),
            started: Instant::now(),
            restart: Arc::new(Notify::new()),
        })
    }

    /// Sets how long one request may take, waiting for earlier ones
    /// included (`serial::REQUEST_DEADLINE` unless set).
    pub fn with_request_deadline(self, deadline: Duration) -> Self {
        self.target.set_deadline(deadline);
        self
    }

    /// Sets the bounds on gRPC connections ([`incoming::Limits::default`]
    /// unless set).
    pub fn with_connection_limits(mut self, limits: incoming::Limits) -> Self {
        self.connections = limits;
        self
    }

    /// The tonic service, to add to a server of one's own; it admits only
    /// callers with the token, if there is one.
    pub fn service(&self) -> InterceptedService<BdevRpcServer<BdevService>, Gate> {
        let service = BdevRpcServer::new(BdevService::new(Arc::clone(&self.target)))
            .max_decoding_message_size(limits::MAX_REQUEST_LEN);
        InterceptedService::new(service, Gate::open(self.token.clone()))
    }

    /// Mayastor's `Mayastor` service (pools, replicas, nexuses), behind
    /// the token like `BdevRpc`: a caller without it learns nothing, not
    /// even which calls are unimplemented.
    pub fn mayastor_service(&self) -> InterceptedService<MayastorServer<MayastorService>, Gate> {
        let service = MayastorServer::new(MayastorService::new(Arc::clone(&self.target)))
            .max_decoding_message_size(limits::MAX_REQUEST_LEN);
        InterceptedService::new(service, Gate::open(self.token.clone()))
    }

    /// The `Security` service (exposure, host keys), behind the token.
    pub fn security_service(&self) -> InterceptedService<SecurityServer<SecurityService>, Gate> {
        let service = SecurityServer::new(SecurityService::new(
            Arc::clone(&self.target),
            self.exposure.clone(),
        ))
        .max_decoding_message_size(limits::MAX_REQUEST_LEN);
        InterceptedService::new(service, Gate::open(self.token.clone()))
    }

    /// The `Control` service (faults, restart, identity): with the token,
    /// if there is one, and only on an agent started with `--faults`.
    pub fn control_service(&self) -> InterceptedService<ControlServer<ControlService>, Gate> {
        let service = ControlServer::new(ControlService::new(
            Arc::clone(&self.faults),
            self.instance,
            self.started,
            Arc::clone(&self.restart),
            self.power_cycle.clone(),
        ))
        .max_decoding_message_size(limits::MAX_REQUEST_LEN);
        InterceptedService::new(
            service,
            Gate::faults(self.token.clone(), self.exposure.faults),
        )
    }

    /// Serves `BdevRpc`, `Mayastor`, `Security` and `Control` on
    /// `listeners` until `shutdown` completes or `Control.Restart` is
    /// called; open connections then get `SHUTDOWN_GRACE` to finish. Connections are bounded as
    /// [`Agent::with_connection_limits`] says (`incoming`). Shares stay.
    /// Faults recorded by an earlier instance are imposed again and
    /// restored at their deadline; on shutdown every fault in force is
    /// restored.
    pub async fn serve(
        self,
        listeners: Vec<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<Stopped, AgentError> {
        self.faults.resume().await;
        let restorer = tokio::spawn(Arc::clone(&self.faults).restore_when_due());
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let why = Arc::new(Mutex::new(Stopped::Shutdown));
        let (restart, reason) = (Arc::clone(&self.restart), Arc::clone(&why));
        let routes = Routes::new(self.service())
            .add_service(self.mayastor_service())
            .add_service(self.control_service())
            .add_service(self.security_service())
            .prepare();
        let limits = self.connections.clone();
        let server = incoming::serve(listeners, routes, limits, async move {
            let stopped = tokio::select! {
                () = shutdown => Stopped::Shutdown,
                () = restart.notified() => Stopped::Restart,
            };
            *reason.lock().unwrap_or_else(PoisonError::into_inner) = stopped;
            let _ = stopping_tx.send(());
        });
        tokio::pin!(server);
        let grace = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = &mut server => {}
            () = grace => {
                warn!(
                    "connections were still open {}s after the shutdown signal; stopping anyway",
                    SHUTDOWN_GRACE.as_secs()
                );
            }
        };
        let stopped = *why.lock().unwrap_or_else(PoisonError::into_inner);
        restorer.abort();
        if stopped == Stopped::Shutdown {
            self.faults.restore_all().await;
        }
        info!("agent stopped; shares stay in the kernel");
        Ok(stopped)
    }
}

/// Replaces this process with a fresh run of the same program and
/// arguments (`/proc/self/exe`), as `Control.Restart` asks; the pid stays.
/// Returns only if that fails.
pub fn reexec() -> AgentError {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStringExt;
    let args: Result<Vec<CString>, _> = std::env::args_os()
        .map(|a| CString::new(a.into_vec()))
        .collect();
    let exe = CString::new("/proc/self/exe");
    match (exe, args) {
        (Ok(exe), Ok(args)) => match nix::unistd::execv(&exe, &args) {
            Err(e) => AgentError::Reexec(e.to_string()),
            Ok(never) => match never {},
        },
        _ => AgentError::Reexec("an argument contains a NUL byte".into()),
    }
}

/// Runs the agent on this machine's kernel target until `shutdown`
/// completes: checks the flags, binds the gRPC port, loads `nvmet-tcp` and
/// mounts configfs if needed, mounts the malloc tmpfs, rebuilds the view,
/// applies `--create`/`--share`, and serves.
pub async fn serve(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Stopped, AgentError> {
    config.validate()?;
    let mut listeners = Vec::new();
    for &addr in &config.listen {
        listeners.push(
            TcpListener::bind(addr)
                .await
                .map_err(|cause| AgentError::Bind { addr, cause })?,
        );
    }
    host::prepare_target(&config.configfs).await?;
    host::ensure_tmpfs(&config.state_dir.join("malloc"))?;
    let configfs = Arc::new(SysConfigfs::new(config.configfs.join("nvmet")));
    let start_config = config.clone();
    let agent = tokio::task::spawn_blocking(move || {
        Agent::start(
            &start_config,
            configfs,
            Arc::new(KernelLoops),
            Arc::new(KernelLvm),
            Arc::new(KernelNexus),
        )
    })
    .await
    .map_err(|e| AgentError::Interrupted(e.to_string()))??;
    let listen: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
    info!(
        "agent serving gRPC on {}{}{}; shares on {}: discovery port {}, I/O port {}; state in {}",
        listen.join(", "),
        if config.token_file.is_some() {
            ", token required"
        } else {
            ""
        },
        if config.faults {
            ", Control on (--faults)"
        } else {
            ""
        },
        config.address,
        config.discovery_port,
        config.io_port,
        config.state_dir.display()
    );
    agent.serve(listeners, shutdown).await
}

/// The address shares use by default: the first IPv4 address, other than
/// loopback, of an interface that is up.
pub fn default_address() -> Result<Ipv4Addr, AgentError> {
    Ok(host::default_address()?)
}
