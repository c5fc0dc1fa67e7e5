//! `nvmfcheck bdev` (being written).

use std::process::ExitCode;

/// Subcommands of `nvmfcheck bdev`.
#[derive(clap::Subcommand)]
pub enum Command {}

/// Runs `nvmfcheck bdev`.
pub async fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {}
}
