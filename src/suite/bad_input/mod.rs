//! Bad input: every `BdevRpc` call and `nvmfcheck bdev` command given each
//! bad input must fail with the right status code and a message that names
//! the problem, and must change nothing on the target.
//!
//! [`rows`] is the one table of bad inputs. It runs in the `basic`
//! category's `bad-input` case against the agent in the target VM, in the
//! agent's integration tests against the configfs model and the kernel
//! target, and `docs/bad-input.md` shows it (a unit test keeps the two the
//! same). A row refers to things on the target through a [`Fixture`], so
//! each place that runs the table says what exists there.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use tonic::Code;

use crate::client::{ClientError, Target};
use crate::cmd::Cmd;
use crate::proto::mayastor::Bdev;

use super::steps::{ensure, CheckError};

mod case;
mod docs;
mod table;

pub(super) use case::case;
pub use docs::{markdown_table, MARKER_END, MARKER_START};
pub use table::rows;

/// What exists on the target for the rows to refer to. A row whose part is
/// `None` is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// A directory, e.g. `/tmp`.
    pub dir: String,
    /// The URI of a bdev that exists and is shared, e.g. `aio:///dev/vdb`.
    pub shared: String,
    /// Another path to the file or device behind `shared` (e.g. through a
    /// symlink), when `shared` is an aio bdev.
    pub same_file: Option<String>,
    /// A regular file that holds 0 bytes.
    pub empty_file: Option<String>,
    /// A character device, e.g. `/dev/null`.
    pub char_device: Option<String>,
    /// The name of a malloc bdev that exists and is not shared, e.g. `m0`.
    pub malloc: String,
}

/// The malloc bdev the `bad-input` case creates on a target it can reach
/// only over gRPC.
pub const TARGET_MALLOC: &str = "badinput";

impl Fixture {
    /// What the `bad-input` case uses on a target it reaches only over gRPC
    /// (it cannot make files there): `shared` (the run's bdev, which it
    /// shares), malloc bdev [`TARGET_MALLOC`] (which it creates) and `/tmp`,
    /// which the harnesses let the agent export from (`--allow-path`).
    /// Another path to the disk, an empty file and a character device
    /// would lie outside what the agent may export, so those rows run only
    /// in the local tests.
    pub fn on_target(shared: &str) -> Self {
        Self {
            dir: "/tmp".into(),
            shared: shared.into(),
            same_file: None,
            empty_file: None,
            char_device: None,
            malloc: TARGET_MALLOC.into(),
        }
    }

    /// The fixture with every part, as the docs show the table: the
    /// harnesses' target plus what the local tests make.
    #[cfg(test)]
    pub(crate) fn complete() -> Self {
        Self {
            same_file: Some("/tmp/link-to-vdb".into()),
            empty_file: Some("/tmp/empty".into()),
            char_device: Some("/dev/null".into()),
            ..Self::on_target(&super::Settings::default().bdev_uri)
        }
    }
}

/// A `BdevRpc` call with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `Create(uri)`.
    Create(String),
    /// `Destroy(uri)`.
    Destroy(String),
    /// `Share(name, proto, allowed_hosts)`.
    Share(String, String, Vec<String>),
    /// `Unshare(name)`.
    Unshare(String),
}

impl Call {
    /// The `nvmfcheck bdev` subcommand that makes this call.
    pub fn subcommand(&self) -> &'static str {
        match self {
            Call::Create(_) => "create",
            Call::Destroy(_) => "destroy",
            Call::Share(..) => "share",
            Call::Unshare(_) => "unshare",
        }
    }

    /// The arguments of `nvmfcheck bdev` that make this call. Values are
    /// joined to their flags and positionals follow `--`, so that an input
    /// starting with `-` reaches the target as it is.
    pub fn cli_args(&self, target: &str) -> Vec<String> {
        let mut args = vec![self.subcommand().to_string(), format!("--target={target}")];
        let positional = match self {
            Call::Create(uri) | Call::Destroy(uri) => uri,
            Call::Share(name, proto, hosts) => {
                args.push(format!("--proto={proto}"));
                args.extend(hosts.iter().map(|h| format!("--allow-host={h}")));
                name
            }
            Call::Unshare(name) => name,
        };
        args.extend(["--".to_string(), positional.clone()]);
        args
    }

    async fn send(&self, target: &Target) -> Result<(), ClientError> {
        match self {
            Call::Create(uri) => target.create(uri).await.map(drop),
            Call::Destroy(uri) => target.destroy(uri).await,
            Call::Share(name, proto, hosts) => target.share(name, proto, hosts).await.map(drop),
            Call::Unshare(name) => target.unshare(name).await,
        }
    }
}

/// Shows the call as written in the table, long runs of one character
/// shortened to `n×256`.
impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Create(uri) => write!(f, "Create({:?})", abbreviate(uri)),
            Call::Destroy(uri) => write!(f, "Destroy({:?})", abbreviate(uri)),
            Call::Share(name, proto, hosts) => {
                write!(f, "Share({:?}, {:?}", abbreviate(name), abbreviate(proto))?;
                match hosts.as_slice() {
                    [] => {}
                    [one] => write!(f, ", [{:?}]", abbreviate(one))?,
                    [first, ..] => {
                        write!(f, ", [{:?}, … {} hosts]", abbreviate(first), hosts.len())?
                    }
                }
                f.write_str(")")
            }
            Call::Unshare(name) => write!(f, "Unshare({:?})", abbreviate(name)),
        }
    }
}

/// Runs of one character at least this long are shown as `c×n`.
const RUN_SHOWN_AS_COUNT: usize = 16;

fn abbreviate(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let mut n = 1;
        while chars.next_if_eq(&c).is_some() {
            n += 1;
        }
        if n >= RUN_SHOWN_AS_COUNT {
            out.push_str(&format!("{c}×{n}"));
        } else {
            out.extend(std::iter::repeat_n(c, n));
        }
    }
    out
}

/// One bad input and what the target must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What is wrong with the input, in words.
    pub what: &'static str,
    /// The call that carries it.
    pub call: Call,
    /// The status code the target must answer with.
    pub code: Code,
    /// A fragment of the message that names the problem.
    pub says: String,
}

impl Row {
    /// Sends the row's call to `target`: it must fail with the row's code
    /// and a message containing the row's fragment.
    pub async fn check(&self, target: &Target) -> Result<(), CheckError> {
        let status = match self.call.send(target).await {
            Ok(()) => {
                return Err(CheckError::Failed(format!(
                    "{} was accepted; expected {:?}",
                    self.call, self.code
                )))
            }
            Err(ClientError::Rpc { status, .. }) => status,
            Err(e) => return Err(e.into()),
        };
        ensure(
            status.code() == self.code && status.message().contains(&self.says),
            || {
                format!(
                    "{} answered {:?}: {}\nexpected {:?} with a message containing {:?}",
                    self.call,
                    status.code(),
                    status.message(),
                    self.code,
                    self.says
                )
            },
        )
    }

    /// Makes the row's call with `nvmfcheck bdev` (the program `exe`): it
    /// must exit with status 1 and print the code's name (e.g.
    /// `InvalidArgument`) and the fragment on stderr.
    pub async fn check_cli(
        &self,
        exe: &Path,
        target: &str,
        timeout: Duration,
    ) -> Result<(), CheckError> {
        let cmd = Cmd::new(exe)
            .arg("bdev")
            .args(self.call.cli_args(target))
            .timeout(timeout);
        let out = cmd.output().await?;
        let code = format!("{:?}", self.code);
        ensure(
            out.code == Some(1) && out.stderr.contains(&code) && out.stderr.contains(&self.says),
            || {
                format!(
                    "`nvmfcheck bdev` for {} exited {:?} with stderr {:?}\nexpected 1 and {code} with {:?}",
                    self.call, out.code, out.stderr, self.says
                )
            },
        )
    }
}

/// The rows that also go through `nvmfcheck bdev`: the first for each
/// pair of subcommand and code, which proves that every subcommand carries
/// every code it can get and its message to stderr with exit status 1.
/// (Starting the program costs more than the call, in a VM ~0.7 s.)
pub fn cli_rows(rows: &[Row]) -> Vec<&Row> {
    let mut seen = BTreeSet::new();
    rows.iter()
        .filter(|r| seen.insert((r.call.subcommand(), r.code as i32)))
        .collect()
}

/// Checks that `List` still shows `before`: bad input changes nothing.
pub async fn check_unchanged(target: &Target, before: &[Bdev]) -> Result<(), CheckError> {
    let after = target.list().await?;
    ensure(after == before, || {
        format!("the bdev list changed:\nbefore {before:?}\nafter  {after:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_are_counted() {
        let call = Call::Create(format!("malloc:///{}?size_mb=1", "n".repeat(256)));
        assert_eq!(call.to_string(), r#"Create("malloc:///n×256?size_mb=1")"#);
        assert_eq!(abbreviate("aaa///x"), "aaa///x");
        let share = Call::Share(String::new(), "nvmf".into(), Vec::new());
        assert_eq!(share.to_string(), r#"Share("", "nvmf")"#);
        let one = Call::Share(
            "m0".into(),
            "nvmf".into(),
            vec![format!("nqn.{}", "x".repeat(20))],
        );
        assert_eq!(one.to_string(), r#"Share("m0", "nvmf", ["nqn.x×20"])"#);
        let many = Call::Share("m0".into(), "nvmf".into(), vec!["nqn.a".into(); 65]);
        assert_eq!(
            many.to_string(),
            r#"Share("m0", "nvmf", ["nqn.a", … 65 hosts])"#
        );
    }

    #[test]
    fn cli_arguments_keep_inputs_that_look_like_flags() {
        let call = Call::Share("-m0".into(), "".into(), vec!["-h".into()]);
        assert_eq!(
            call.cli_args("h:1"),
            [
                "share",
                "--target=h:1",
                "--proto=",
                "--allow-host=-h",
                "--",
                "-m0"
            ]
        );
    }

    #[test]
    fn every_subcommand_and_code_goes_through_the_cli_once() {
        let rows = rows(&Fixture::on_target("aio:///dev/vdb"));
        let cli = cli_rows(&rows);
        let pairs: BTreeSet<_> = rows
            .iter()
            .map(|r| (r.call.subcommand(), r.code as i32))
            .collect();
        assert_eq!(cli.len(), pairs.len());
        for sub in ["create", "destroy", "share", "unshare"] {
            assert!(cli.iter().any(|r| r.call.subcommand() == sub), "{sub}");
        }
    }
}
