//! `nvmfcheck agent` (being written).

use std::process::ExitCode;

/// Arguments of `nvmfcheck agent`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `nvmfcheck agent`.
pub async fn main(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
