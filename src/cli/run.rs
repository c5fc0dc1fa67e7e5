//! `nvmfcheck run` and `nvmfcheck list`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nvmfcheck::client::Target;
use nvmfcheck::suite::report::{Report, Status};
use nvmfcheck::suite::{self, Env, RunOptions, Settings};
use nvmfcheck::token::Token;

use super::progress::{self, Format};

/// Arguments of `nvmfcheck run`.
#[derive(clap::Args)]
pub struct Args {
    /// Categories to run, in any order; they run in dependency order.
    #[arg(required = true)]
    categories: Vec<String>,
    /// The target's gRPC address.
    #[arg(long, default_value = suite::DEFAULT_TARGET, env = "NVMFCHECK_TARGET")]
    target: String,
    /// The second node's gRPC address, for the replication category (whose
    /// first node is --target).
    #[arg(long, default_value = suite::DEFAULT_NODE2, env = "NVMFCHECK_NODE2")]
    node2: String,
    /// Where report.json and junit.xml are written.
    #[arg(long, default_value = ".")]
    report_dir: PathBuf,
    /// Run only cases whose `category/case` name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// An earlier report.json in which the dependencies of the requested
    /// categories passed (e.g. basic's, to run io alone).
    #[arg(long, value_name = "REPORT")]
    require_passed: Option<PathBuf>,
    /// The bdev to export.
    #[arg(long, default_value = suite::DEFAULT_BDEV_URI)]
    bdev: String,
    /// A regular file on the target that basic/mayastor-clients exports as
    /// an aio bdev with blk_size=4096 (the runner and the NixOS checks make
    /// a 64 MiB one; elsewhere make it, e.g. `truncate -s 64M FILE`).
    #[arg(long, default_value = nvmfcheck::suite::AIO_FILE)]
    aio_file: String,
    /// The size the bdev must have, in MiB; 0 skips the check.
    #[arg(long, default_value_t = suite::DEFAULT_EXPECT_SIZE_MB)]
    expect_size_mb: u64,
    /// MiB each fio verify job writes and reads back.
    #[arg(long, default_value_t = suite::DEFAULT_FIO_SIZE_MB, value_parser = clap::value_parser!(u64).range(1..=65536))]
    fio_size_mb: u64,
    /// The target's NVMe/TCP discovery port.
    #[arg(long, default_value_t = nvmfcheck::agent::DEFAULT_DISCOVERY_PORT)]
    discovery_port: u16,
    /// A file holding the agent's token, for an agent started with
    /// `--token-file`.
    #[arg(long, value_name = "FILE", env = "NVMFCHECK_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// How progress shows on stdout: lines for people, or one JSON object
    /// per event per line for CI systems (see README, Reports).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    progress: Format,
}

/// Arguments of `nvmfcheck list`.
#[derive(clap::Args)]
pub struct ListArgs {}

/// Runs `nvmfcheck run`.
pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let prior = args
        .require_passed
        .as_deref()
        .map(Report::load)
        .transpose()?;
    let opts = RunOptions {
        categories: args.categories,
        filter: args.filter,
        prior,
    };
    let registry = suite::registry();
    let plan = suite::plan(&registry, &opts)?;
    let token = args.token_file.as_deref().map(Token::read).transpose()?;
    let settings = Settings {
        target: args.target,
        node2: args.node2,
        bdev_uri: args.bdev,
        expect_size: (args.expect_size_mb > 0).then_some(args.expect_size_mb << 20),
        aio_file: args.aio_file,
        discovery_port: args.discovery_port,
        fio_size: args.fio_size_mb << 20,
        token,
        ..Settings::default()
    };
    let target = Target::connect_with_token(
        &settings.target,
        settings.rpc_timeout,
        settings.token.clone(),
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the run: the target {} does not answer",
            settings.target
        )
    })?;
    let env = Env::new(settings, target);
    let format = args.progress;
    let mut stdout = std::io::stdout();
    // A reader that went away must not stop the run: the report is still
    // written, and the error is told after it.
    let mut broken = None;
    let report = suite::run(&plan, &env, &opts, &mut |event| {
        if broken.is_none() {
            broken = progress::show(format, event, &mut stdout).err();
        }
    })
    .await;
    if format == Format::Human && broken.is_none() {
        broken = progress::summary(&report, &mut stdout).err();
    }
    report.write(&args.report_dir)?;
    let written = format!("report: {}", args.report_dir.join("report.json").display());
    match format {
        Format::Human => println!("{written}"),
        // stdout holds only events.
        Format::Json => eprintln!("{written}"),
    }
    if let Some(e) = broken {
        return Err(anyhow::Error::new(e).context("cannot write the run's progress to stdout"));
    }
    Ok(if report.status == Status::Passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `nvmfcheck list`.
pub fn list(_args: ListArgs) -> anyhow::Result<ExitCode> {
    for cat in suite::registry() {
        let deps = if cat.depends_on.is_empty() {
            String::new()
        } else {
            format!(" (after {})", cat.depends_on.join(", "))
        };
        println!("{}{deps}: {}", cat.name, cat.about);
        for case in &cat.cases {
            println!("  {}/{}: {}", cat.name, case.name, case.about);
        }
    }
    Ok(ExitCode::SUCCESS)
}
