//! The `nvmfcheck` command line: parsing and dispatch only; the work is in
//! the library and in the thin `cli` modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// End-to-end tests of an NVMe-over-Fabrics target in real virtual machines.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the target agent: Mayastor's v0 gRPC over the kernel NVMe target.
    Agent(cli::agent::Args),
    /// Call a target's bdev API (works against the agent and a real Mayastor).
    #[command(subcommand)]
    Bdev(cli::bdev::Command),
    /// Initiator side: discover, connect and disconnect with nvme-cli.
    #[command(subcommand)]
    Nvme(cli::nvme::Command),
    /// Measure a target: data path, control path, scale (JSON figures;
    /// `vm bench` runs these in its VMs).
    #[command(subcommand)]
    Bench(cli::bench::Command),
    /// Run one fio job and print its parsed summary.
    Fio(cli::fio::Args),
    /// Run check categories against a target and write reports.
    Run(cli::run::Args),
    /// List categories, their cases and dependencies.
    List(cli::run::ListArgs),
    /// Boot the target and initiator VMs with QEMU (hosts without Nix).
    #[command(subcommand)]
    Vm(cli::vm::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Agent(args) => cli::agent::main(args).await,
            Command::Bdev(cmd) => cli::bdev::main(cmd).await,
            Command::Nvme(cmd) => cli::nvme::main(cmd).await,
            Command::Bench(cmd) => cli::bench::main(cmd).await,
            Command::Fio(args) => cli::fio::main(args).await,
            Command::Run(args) => cli::run::main(args).await,
            Command::List(args) => cli::run::list(args),
            Command::Vm(cmd) => cli::vm::main(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // Each cause once, though many messages show their source.
            eprintln!("error: {}", nvmfcheck::error_chain::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
