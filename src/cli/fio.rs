//! `nvmfcheck fio` (being written).

use std::process::ExitCode;

/// Arguments of `nvmfcheck fio`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `nvmfcheck fio`.
pub async fn main(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
