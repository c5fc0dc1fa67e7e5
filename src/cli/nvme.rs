//! `nvmfcheck nvme` (being written).

use std::process::ExitCode;

/// Subcommands of `nvmfcheck nvme`.
#[derive(clap::Subcommand)]
pub enum Command {}

/// Runs `nvmfcheck nvme`.
pub async fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {}
}
