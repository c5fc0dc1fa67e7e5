//! `nvmfcheck bdev`: calls a target's `BdevRpc` and prints each reply as
//! JSON shaped like the protobuf message (as `mayastor-client` did), so
//! scripts written for either work with the other.

use std::process::ExitCode;
use std::time::Duration;

use nvmfcheck::client::Target;
use nvmfcheck::proto::mayastor::{BdevShareReply, Bdevs, CreateReply, Null};
use nvmfcheck::token::Token;
use serde::Serialize;

/// Where the target is and how long to wait for it.
#[derive(clap::Args)]
pub struct Conn {
    /// The target's gRPC address.
    #[arg(long, default_value = "127.0.0.1:10124", env = "NVMFCHECK_TARGET")]
    target: String,
    /// Deadline in seconds for connecting and for the call.
    #[arg(long, default_value_t = 10.0, value_parser = crate::cli::parse_secs)]
    timeout: f64,
    /// A file holding the agent's token, for an agent started with
    /// `--token-file`.
    #[arg(long, value_name = "FILE", env = "NVMFCHECK_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
}

/// Subcommands of `nvmfcheck bdev`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List the target's bdevs (`{"bdevs":[...]}`).
    List(Conn),
    /// Create a bdev from a URI: `aio:///dev/vdb`, `malloc:///m0?size_mb=64`.
    Create {
        /// The bdev URI.
        uri: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Destroy the bdev created from a URI.
    Destroy {
        /// The bdev URI it was created from.
        uri: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Share a bdev over NVMe-oF; prints its `nvmf://` URI. Sharing a
    /// shared bdev again sets which hosts it admits.
    Share {
        /// The bdev name.
        name: String,
        /// The share protocol.
        #[arg(long, default_value = "nvmf")]
        proto: String,
        /// Admit only this host NQN (repeatable); without it any host may
        /// connect.
        #[arg(long = "allow-host", value_name = "NQN")]
        allow_host: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop sharing a bdev.
    Unshare {
        /// The bdev name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs `nvmfcheck bdev`.
pub async fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List(conn) => {
            let bdevs = connect(&conn).await?.list().await?;
            print(&Bdevs { bdevs })
        }
        Command::Create { uri, conn } => {
            let name = connect(&conn).await?.create(&uri).await?;
            print(&CreateReply { name })
        }
        Command::Destroy { uri, conn } => {
            connect(&conn).await?.destroy(&uri).await?;
            print(&Null {})
        }
        Command::Share {
            name,
            proto,
            allow_host,
            conn,
        } => {
            let uri = connect(&conn)
                .await?
                .share(&name, &proto, &allow_host)
                .await?;
            print(&BdevShareReply { uri })
        }
        Command::Unshare { name, conn } => {
            connect(&conn).await?.unshare(&name).await?;
            print(&Null {})
        }
    }
}

pub(super) async fn connect(conn: &Conn) -> anyhow::Result<Target> {
    let token = conn.token_file.as_deref().map(Token::read).transpose()?;
    let timeout = Duration::from_secs_f64(conn.timeout);
    Ok(Target::connect_with_token(&conn.target, timeout, token).await?)
}

pub(super) fn print(reply: &impl Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(reply)?);
    Ok(ExitCode::SUCCESS)
}
