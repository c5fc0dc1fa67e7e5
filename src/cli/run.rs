//! `nvmfcheck run` and `nvmfcheck list` (being written).

use std::process::ExitCode;

/// Arguments of `nvmfcheck run`.
#[derive(clap::Args)]
pub struct Args {}

/// Arguments of `nvmfcheck list`.
#[derive(clap::Args)]
pub struct ListArgs {}

/// Runs `nvmfcheck run`.
pub async fn main(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}

/// Runs `nvmfcheck list`.
pub fn list(_args: ListArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
