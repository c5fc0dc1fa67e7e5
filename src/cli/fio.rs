//! `nvmfcheck fio`: one typed fio job; prints its summary as JSON on stdout.
//! A failed job prints its summary too (when fio wrote one), the error on
//! stderr, and exits non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ArgAction;

use nvmfcheck::fio::{self, FioError, FioJob, FioSummary, Rw, Verify};

/// Arguments of `nvmfcheck fio`.
#[derive(clap::Args)]
pub struct Args {
    /// File or block device.
    #[arg(long)]
    filename: PathBuf,
    /// Pattern: read, write, randread, randwrite, readwrite, randrw.
    #[arg(long, default_value = "randrw")]
    rw: Rw,
    /// Block size (bytes; k/m suffixes are binary: 4k = 4096).
    #[arg(long, default_value = "4k", value_parser = parse_block_size)]
    bs: u32,
    /// Queue depth.
    #[arg(long, default_value_t = 1)]
    iodepth: u32,
    /// Bytes to cover, e.g. 32M.
    #[arg(long, value_parser = parse_size)]
    size: u64,
    /// Start of the region, e.g. 1M.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    offset: u64,
    /// Copies of the job.
    #[arg(long, default_value_t = 1)]
    numjobs: u32,
    /// Verify method: crc32, crc32c, md5, sha256 or pattern:0x<hex>.
    #[arg(long)]
    verify: Option<Verify>,
    /// Only verify data an earlier job wrote with the same options.
    #[arg(long)]
    verify_only: bool,
    /// Run the verify phase after writing.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    do_verify: bool,
    /// O_DIRECT I/O.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    direct: bool,
    /// I/O engine.
    #[arg(long, default_value = "libaio")]
    ioengine: String,
    /// fsync after this many writes.
    #[arg(long)]
    fsync: Option<u32>,
    /// Seconds to run, repeating the workload (not with --verify).
    #[arg(long)]
    runtime: Option<u64>,
    /// Job name.
    #[arg(long)]
    name: Option<String>,
    /// Another fio option as NAME=VALUE (repeatable).
    #[arg(long = "opt", value_name = "NAME=VALUE", value_parser = parse_option)]
    extra: Vec<(String, String)>,
    /// Seconds to allow fio before killing it.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Runs `nvmfcheck fio`.
pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    let mut job = FioJob::new(a.filename, a.rw, a.size)
        .bs(a.bs)
        .iodepth(a.iodepth)
        .offset(a.offset)
        .numjobs(a.numjobs)
        .verify_only(a.verify_only)
        .do_verify(a.do_verify)
        .direct(a.direct)
        .ioengine(a.ioengine);
    job.verify = a.verify;
    job.fsync = a.fsync;
    job.runtime = a.runtime.map(Duration::from_secs);
    job.extra = a.extra;
    if let Some(name) = a.name {
        job = job.name(name);
    }
    match fio::run(&[job], Duration::from_secs(a.timeout)).await {
        Ok(summary) => {
            print(&summary)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if let FioError::Failed {
                summary: Some(summary),
                ..
            } = &e
            {
                print(summary)?;
            }
            Err(e.into())
        }
    }
}

fn print(summary: &FioSummary) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(summary).context("cannot encode the summary")?;
    println!("{json}");
    Ok(())
}

/// A byte count with an optional binary suffix: `512`, `4k`, `32M`, `1GiB`.
fn parse_size(s: &str) -> Result<u64, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 4096, 4k or 32M"))?;
    let shift = match unit
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit: use k, M, G or T (binary)"
            ))
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn parse_block_size(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n).map_err(|_| format!("block size `{s}` is too large"))
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2mb"), Ok(2 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("4x").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_block_size("8G").is_err());
        assert_eq!(parse_option("rate=1m"), Ok(("rate".into(), "1m".into())));
        assert!(parse_option("rate").is_err());
    }
}
