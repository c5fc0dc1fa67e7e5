//! `nvmfcheck nvme`: discover, connect, disconnect and show a subsystem's
//! connection; each prints its typed result as JSON on stdout.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use nvmfcheck::nvme::{self, ConnectOptions, ShareUri, Transport};

/// Subcommands of `nvmfcheck nvme`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Read the discovery log of a discovery controller (`nvme discover`).
    Discover(DiscoverArgs),
    /// Connect to a subsystem and wait for its block device (`nvme connect`).
    Connect(ConnectArgs),
    /// Disconnect every controller of a subsystem (`nvme disconnect -n`).
    Disconnect(NqnArgs),
    /// Show this host's controllers and block devices of a subsystem (null if none).
    Status(NqnArgs),
}

/// Arguments of `nvmfcheck nvme discover`.
#[derive(clap::Args)]
pub struct DiscoverArgs {
    /// Target IP address.
    #[arg(long)]
    traddr: String,
    /// Discovery TCP port (Mayastor and the agent use 8420).
    #[arg(long)]
    trsvcid: u16,
    /// Seconds to allow.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Arguments of `nvmfcheck nvme connect`.
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// The share URI a target returned, nvmf://<address>:<port>/<nqn>,
    /// instead of --traddr, --trsvcid and --nqn.
    #[arg(long, conflicts_with_all = ["traddr", "trsvcid", "nqn"])]
    uri: Option<String>,
    /// Target IP address.
    #[arg(long, required_unless_present = "uri")]
    traddr: Option<String>,
    /// Target TCP port of the subsystem.
    #[arg(long, required_unless_present = "uri")]
    trsvcid: Option<u16>,
    /// Subsystem NQN.
    #[arg(long, required_unless_present = "uri")]
    nqn: Option<String>,
    /// Seconds to keep reconnecting a lost controller (-1: forever).
    #[arg(long, allow_negative_numbers = true)]
    ctrl_loss_tmo: Option<i32>,
    /// Seconds between reconnect attempts.
    #[arg(long)]
    reconnect_delay: Option<u32>,
    /// Host NQN to connect as.
    #[arg(long)]
    hostnqn: Option<String>,
    /// Seconds to allow, including waiting for the block device.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Arguments naming a subsystem.
#[derive(clap::Args)]
pub struct NqnArgs {
    /// Subsystem NQN.
    #[arg(long)]
    nqn: String,
    /// Seconds to allow.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// What `nvmfcheck nvme disconnect` prints.
#[derive(Serialize)]
struct Disconnected<'a> {
    subnqn: &'a str,
    controllers_removed: u32,
}

/// Runs `nvmfcheck nvme`.
pub async fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Discover(a) => {
            let t = Transport::new(a.traddr, a.trsvcid)?;
            print(&nvme::discover(&t, Duration::from_secs(a.timeout)).await?)
        }
        Command::Connect(a) => {
            let (t, nqn) = match a.uri {
                Some(uri) => {
                    let share = ShareUri::parse(&uri)?;
                    (share.transport, share.nqn)
                }
                None => {
                    let (Some(traddr), Some(trsvcid), Some(nqn)) = (a.traddr, a.trsvcid, a.nqn)
                    else {
                        anyhow::bail!("give --uri, or --traddr, --trsvcid and --nqn");
                    };
                    (Transport::new(traddr, trsvcid)?, nqn)
                }
            };
            let opts = ConnectOptions {
                ctrl_loss_tmo: a.ctrl_loss_tmo,
                reconnect_delay: a.reconnect_delay,
                hostnqn: a.hostnqn,
                timeout: Duration::from_secs(a.timeout),
                ..ConnectOptions::default()
            };
            print(&nvme::connect(&t, &nqn, &opts).await?)
        }
        Command::Disconnect(a) => {
            let removed = nvme::disconnect(&a.nqn, Duration::from_secs(a.timeout)).await?;
            print(&Disconnected {
                subnqn: &a.nqn,
                controllers_removed: removed,
            })
        }
        Command::Status(a) => {
            print(&nvme::connection(&a.nqn, Duration::from_secs(a.timeout)).await?)
        }
    }
}

fn print(value: &impl Serialize) -> anyhow::Result<ExitCode> {
    let json = serde_json::to_string_pretty(value).context("cannot encode the result as JSON")?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
