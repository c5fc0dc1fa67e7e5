//! `nvmfcheck vm` (being written).

use std::process::ExitCode;

/// Subcommands of `nvmfcheck vm`.
#[derive(clap::Subcommand)]
pub enum Command {}

/// Runs `nvmfcheck vm`.
pub async fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {}
}
