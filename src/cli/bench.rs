//! `nvmfcheck bench`: the guest halves of `vm bench`, each printing its
//! figures as JSON (they also measure a real target from any initiator),
//! and the comparison of two `bench.json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use nvmfcheck::bench::record::compare;
use nvmfcheck::bench::{control, data_path, scale, BenchRecord};

use super::bdev::{connect, print, Conn};

/// Subcommands of `nvmfcheck bench`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the data-path fio jobs (4 KiB random reads at QD 1 and 32, 128
    /// KiB sequential reads and writes) on a local device, or over NVMe/TCP
    /// on a bdev the target creates and shares for it. Writes: the region's
    /// data is lost.
    DataPath(DataPathArgs),
    /// Time `List`, `Create`+`Share` and `Unshare`+`Destroy`, one call at a
    /// time, on a 256 KiB malloc bdev.
    Control {
        /// Calls of each kind.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        calls: u32,
        #[command(flatten)]
        conn: Conn,
    },
    /// `up`: create and share many 256 KiB malloc bdevs, discover them and
    /// connect to all (the target must share nothing else); `down`:
    /// disconnect, unshare and destroy them.
    Scale {
        /// Which half.
        phase: ScalePhase,
        /// How many bdevs.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1024))]
        bdevs: u32,
        /// The target's discovery port.
        #[arg(long, default_value_t = nvmfcheck::agent::DEFAULT_DISCOVERY_PORT)]
        discovery_port: u16,
        /// Seconds nvme-cli may take to discover, connect or disconnect all.
        #[arg(long, default_value_t = 600)]
        nvme_timeout: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print each figure of one `vm bench`'s bench.json against an
    /// earlier one's (the ratios `vm bench --compare` prints).
    Compare {
        /// The earlier bench.json.
        old: PathBuf,
        /// The later bench.json.
        new: PathBuf,
    },
}

/// Which half of the scale bench.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ScalePhase {
    /// Create, share, discover, connect.
    Up,
    /// Disconnect, unshare, destroy.
    Down,
}

/// Arguments of `nvmfcheck bench data-path`.
#[derive(clap::Args)]
pub struct DataPathArgs {
    /// Run on this block device or file, here.
    #[arg(long, required_unless_present = "over_fabric")]
    device: Option<PathBuf>,
    /// Instead, have the target create and share the bdev of this URI
    /// (e.g. aio:///dev/vdb), connect, and run on its namespace.
    #[arg(long, value_name = "URI", conflicts_with = "device")]
    over_fabric: Option<String>,
    /// MiB from the start each job covers.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    size_mib: u64,
    /// Seconds each job runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    secs: u64,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `nvmfcheck bench`.
pub async fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::DataPath(args) => {
            let params = data_path::Params {
                size: args.size_mib << 20,
                runtime: Duration::from_secs(args.secs),
            };
            let figures = match (&args.device, &args.over_fabric) {
                (_, Some(uri)) => {
                    let target = connect(&args.conn).await?;
                    data_path::over_fabric(&target, uri, params, Duration::from_secs(60)).await?
                }
                (Some(device), None) => data_path::run(device, params).await?,
                (None, None) => anyhow::bail!("give --device PATH or --over-fabric URI"),
            };
            print(&figures)
        }
        Command::Compare { old, new } => {
            let (old, new) = (BenchRecord::load(&old)?, BenchRecord::load(&new)?);
            println!("{}", compare(&old, &new));
            Ok(ExitCode::SUCCESS)
        }
        Command::Control { calls, conn } => {
            let target = connect(&conn).await?;
            print(&control::run(&target, calls).await?)
        }
        Command::Scale {
            phase,
            bdevs,
            discovery_port,
            nvme_timeout,
            conn,
        } => {
            let target = connect(&conn).await?;
            let timeout = Duration::from_secs(nvme_timeout);
            match phase {
                ScalePhase::Up => print(&scale::up(&target, bdevs, discovery_port, timeout).await?),
                ScalePhase::Down => print(&scale::down(&target, bdevs, timeout).await?),
            }
        }
    }
}
