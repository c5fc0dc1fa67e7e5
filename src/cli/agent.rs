//! `nvmfcheck agent`: runs the target agent in the foreground until SIGTERM
//! or SIGINT. Shares stay in the kernel when it stops.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use nvmfcheck::agent::{self, AgentConfig, Stopped};

/// Arguments of `nvmfcheck agent`.
#[derive(clap::Args)]
pub struct Args {
    /// Address and port of the gRPC server (repeatable). Loopback by
    /// default: give the address other machines reach this one at to let
    /// them call the agent.
    #[arg(long, value_name = "IP:PORT", default_values_t = [agent::DEFAULT_LISTEN])]
    listen: Vec<SocketAddr>,
    /// IPv4 address of the NVMe/TCP ports, used in share URIs [default: the
    /// first non-loopback IPv4 address of an interface that is up].
    #[arg(long, value_name = "IPV4")]
    address: Option<Ipv4Addr>,
    /// TCP port of the NVMe discovery service.
    #[arg(long, value_name = "PORT", default_value_t = agent::DEFAULT_DISCOVERY_PORT)]
    discovery_port: u16,
    /// TCP port serving shared bdevs.
    #[arg(long, value_name = "PORT", default_value_t = agent::DEFAULT_IO_PORT)]
    io_port: u16,
    /// TCP port serving published nexuses [default: --io-port].
    #[arg(long, value_name = "PORT")]
    nexus_port: Option<u16>,
    /// The most a nexus rebuild may copy, in KiB/s (md's sync_speed_max)
    /// [default: the kernel's limit].
    #[arg(long, value_name = "KIB_PER_SEC")]
    rebuild_rate: Option<u32>,
    /// Directory of the state file and of malloc bdevs' tmpfs.
    #[arg(long, value_name = "DIR", default_value = agent::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Where configfs is mounted.
    #[arg(long, value_name = "DIR", default_value = agent::DEFAULT_CONFIGFS)]
    configfs: PathBuf,
    /// Create this bdev at start, unless it exists (repeatable), e.g.
    /// aio:///dev/vdb or malloc:///m0?size_mb=64.
    #[arg(long = "create", value_name = "BDEV_URI")]
    create: Vec<String>,
    /// Share this bdev over NVMe/TCP at start, for any host, unless shared
    /// (a share keeps its allowed hosts) (repeatable).
    #[arg(long = "share", value_name = "BDEV_NAME")]
    share: Vec<String>,
    /// Serve the Control service: faults (link and port down) and restart,
    /// for tests. Without it every Control call is refused.
    #[arg(long)]
    faults: bool,
    /// Let Control.PowerCycle reset this machine at once, without sync or
    /// shutdown (SysRq b), as a power cut would: only for throwaway test
    /// VMs. Needs --faults.
    #[arg(long)]
    allow_power_cycle: bool,
    /// Allow aio bdevs on files and devices under this path (repeatable),
    /// e.g. /dev/vdb; without it no aio bdev can be made. The state
    /// directory is never allowed.
    #[arg(long = "allow-path", value_name = "PATH")]
    allow_paths: Vec<PathBuf>,
    /// Require every call to carry `authorization: Bearer <token>`, the
    /// token being this file's content (which other users must not read).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Runs `nvmfcheck agent`.
pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let address = match args.address {
        Some(a) => a,
        None => agent::default_address()?,
    };
    let config = AgentConfig {
        listen: args.listen,
        address,
        discovery_port: args.discovery_port,
        io_port: args.io_port,
        nexus_port: args.nexus_port,
        rebuild_rate: args.rebuild_rate,
        state_dir: args.state_dir,
        configfs: args.configfs,
        create: args.create,
        share: args.share,
        faults: args.faults,
        power_cycle: args.allow_power_cycle.then(|| agent::SYSRQ_TRIGGER.into()),
        allow_paths: args.allow_paths,
        token_file: args.token_file,
    };
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
    };
    match agent::serve(config, shutdown).await? {
        Stopped::Shutdown => Ok(ExitCode::SUCCESS),
        Stopped::Restart => Err(agent::reexec().into()),
    }
}
