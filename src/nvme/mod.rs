//! The initiator side of NVMe/TCP: discover, connect and disconnect with
//! nvme-cli, and the state of a connection read from sysfs.
//!
//! Written against nvme-cli 2.3 / libnvme 1.3 (Debian 12); every call runs
//! through [`crate::cmd::Cmd`] with a deadline.
//!
//! Where each fact comes from, and why:
//! - **Operations** go through nvme-cli, because that is what users of a
//!   target run: `nvme discover -o json` (its discovery log, parsed with
//!   serde), `nvme connect -o json` (prints the new controller's name) and
//!   `nvme disconnect -n` (prints a line with the number of controllers it
//!   removed; it has no JSON output in 2.3).
//! - **State** (which controllers belong to a subsystem, which block devices
//!   appeared, their size, block size, nsid, uuid, nguid) is read from sysfs.
//!   `nvme list-subsys -o json` only lists controller paths, its shape changed
//!   within 2.x (2.3 nests hosts → `Subsystems` → `Paths`), and it carries no
//!   namespace sizes or identifiers; the kernel's sysfs attributes carry all of
//!   them directly and do not depend on the nvme-cli version.
//!
//! Native NVMe multipath: with it (the default), a namespace's block device is
//! `nvme<subsys>n<id>` under the subsystem, and each controller holds hidden
//! per-path disks `nvme<subsys>c<ctrl>n<id>`; without it (`nvme_core.multipath=N`)
//! the block device `nvme<ctrl>n<id>` hangs directly off the controller. Both
//! are handled by mapping whatever the controller holds to the block device a
//! program opens (see `sysfs.rs`).

mod output;
pub(crate) mod sysfs;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::agent::limits::shown;
use crate::cmd::{Cmd, CmdError, Output};

use sysfs::Sysfs;

pub use output::DiscoveryEntry;

/// How often [`connect`] and [`disconnect`] look at sysfs while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Deadline for undoing a half-done connect.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest NQN the NVMe specification allows, in bytes.
const NQN_MAX: usize = 223;

/// Why an initiator operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    /// A transport address or port that cannot be used.
    #[error("invalid transport {what} `{value}`: {fix}")]
    InvalidTransport {
        /// `address` or `port`.
        what: &'static str,
        /// The value given.
        value: String,
        /// What to give instead.
        fix: &'static str,
    },
    /// An NQN that cannot be used.
    #[error("invalid {what} {value}: {reason}")]
    InvalidNqn {
        /// Which NQN (subsystem NQN, host NQN).
        what: &'static str,
        /// The value given, quoted, escaped and cut short.
        value: String,
        /// What is wrong with it and what a valid one looks like.
        reason: String,
    },
    /// Another option that cannot be used.
    #[error("invalid {what}: {reason}")]
    InvalidOption {
        /// The option.
        what: &'static str,
        /// What is wrong and what to give instead.
        reason: String,
    },
    /// A share URI that is not `nvmf://<address>:<port>/<nqn>`.
    #[error("invalid share URI {uri}: {reason} (expected nvmf://<address>:<port>/<nqn>)")]
    InvalidUri {
        /// The URI given, quoted, escaped and cut short.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// nvme-cli could not be run, timed out, or failed (its stderr is in the
    /// message), with a hint at the likely cause when one is known.
    // The message carries the command's own message rather than chaining it as
    // a source, so that printing the error alone shows nvme-cli's stderr.
    #[error("{error}{}", .hint.as_deref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Command {
        /// The failed command.
        error: CmdError,
        /// The likely cause and fix.
        hint: Option<String>,
    },
    /// nvme-cli printed something this version does not understand.
    #[error("cannot understand the output of `{cmdline}`: {reason}; it printed: {output}")]
    Output {
        /// The command line.
        cmdline: String,
        /// What did not parse.
        reason: String,
        /// What it printed (stdout).
        output: String,
    },
    /// Reading sysfs failed.
    #[error("cannot read {}: {error}", .path.display())]
    Sysfs {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Reading sysfs did not finish within its deadline.
    #[error("reading the NVMe state from sysfs took longer than {}s", .after.as_secs_f64())]
    SysfsTimeout {
        /// The deadline.
        after: Duration,
    },
    /// A sysfs attribute held something unexpected.
    #[error("unexpected content in {}: `{content}` ({expected})", .path.display())]
    SysfsContent {
        /// The attribute file.
        path: PathBuf,
        /// What it held.
        content: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The controller connected but its namespaces did not become usable
    /// block devices in time (the controller was disconnected again).
    #[error(
        "connected controller {controller} of {subnqn}, but no usable namespace block device \
         appeared within {}s (controller state: {state}; namespaces seen: {seen}); \
         the controller was disconnected again",
        .after.as_secs_f64()
    )]
    NamespaceTimeout {
        /// The controller, e.g. `nvme0`.
        controller: String,
        /// Its subsystem.
        subnqn: String,
        /// The deadline.
        after: Duration,
        /// The controller's last `state` (live, connecting, ...).
        state: String,
        /// Namespace devices seen and why each was not usable.
        seen: String,
    },
    /// `nvme connect-all` returned, but subsystems have no usable namespace.
    #[error(
        "`nvme connect-all` returned, but {subnqn} had no usable namespace after {}s; their \
         controllers were disconnected again",
        .after.as_secs_f64()
    )]
    ConnectIncomplete {
        /// The subsystems still waited for.
        subnqn: String,
        /// How long it was given.
        after: Duration,
    },
    /// nvme-cli returned but controllers of the subsystem are still there.
    #[error(
        "`nvme disconnect -n {subnqn}` returned, but controllers {} are still present after {}s",
        .remaining.join(", "), .after.as_secs_f64()
    )]
    DisconnectIncomplete {
        /// The subsystem.
        subnqn: String,
        /// Controllers still present.
        remaining: Vec<String>,
        /// How long it was given.
        after: Duration,
    },
}

/// An NVMe/TCP transport address: an IP address and a TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transport {
    /// IPv4 or IPv6 address of the target port (no host names: the tests
    /// only ever talk to addresses they set up).
    pub traddr: String,
    /// TCP port, e.g. 8420 (discovery) or 8430 (the subsystem).
    pub trsvcid: u16,
}

impl Transport {
    /// A validated transport address.
    pub fn new(traddr: impl Into<String>, trsvcid: u16) -> Result<Self, NvmeError> {
        let t = Self {
            traddr: traddr.into(),
            trsvcid,
        };
        t.validate()?;
        Ok(t)
    }

    /// Checks the address is an IP literal and the port is not 0.
    pub fn validate(&self) -> Result<(), NvmeError> {
        if self.traddr.parse::<IpAddr>().is_err() {
            return Err(NvmeError::InvalidTransport {
                what: "address",
                value: self.traddr.clone(),
                fix: "give an IPv4 or IPv6 address such as 192.168.1.2",
            });
        }
        if self.trsvcid == 0 {
            return Err(NvmeError::InvalidTransport {
                what: "port",
                value: self.trsvcid.to_string(),
                fix: "give the target's TCP port, such as 8420 (discovery) or 8430",
            });
        }
        Ok(())
    }
}

/// Options of [`connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Seconds the host keeps trying to reconnect a lost controller before
    /// giving up (`-1`: forever); the kernel's default when `None`.
    pub ctrl_loss_tmo: Option<i32>,
    /// Seconds between reconnect attempts; the kernel's default when `None`.
    pub reconnect_delay: Option<u32>,
    /// Host NQN to connect as; nvme-cli's default (`/etc/nvme/hostnqn`) when `None`.
    pub hostnqn: Option<String>,
    /// The host's DH-HMAC-CHAP key (`--dhchap-secret`), for a target that
    /// authenticates hosts.
    pub dhchap_secret: Option<String>,
    /// The key the controller must prove it holds (`--dhchap-ctrl-secret`):
    /// bidirectional authentication.
    pub dhchap_ctrl_secret: Option<String>,
    /// Deadline for the whole operation, including waiting for the block device.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            ctrl_loss_tmo: None,
            reconnect_delay: None,
            hostnqn: None,
            dhchap_secret: None,
            dhchap_ctrl_secret: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A namespace as the block device a program opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// The block device, e.g. `/dev/nvme0n1`.
    pub device: PathBuf,
    /// Namespace id on the target.
    pub nsid: u32,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// The namespace UUID as the kernel reports it. Note: Linux shows the
    /// NGUID here when the target set no UUID.
    pub uuid: Option<uuid::Uuid>,
    /// The namespace NGUID (formatted like a UUID by the kernel), when set.
    pub nguid: Option<String>,
}

/// The host's connection to one subsystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The subsystem NQN.
    pub subnqn: String,
    /// Its controllers (one per path), e.g. `["nvme0"]`.
    pub controllers: Vec<String>,
    /// Its namespaces that are usable block devices.
    pub namespaces: Vec<Namespace>,
}

/// Reads the discovery log of the discovery controller at `t`
/// (`nvme discover -t tcp -o json`).
pub async fn discover(t: &Transport, timeout: Duration) -> Result<Vec<DiscoveryEntry>, NvmeError> {
    t.validate()?;
    let cmd = Cmd::new("nvme")
        .args(["discover", "-t", "tcp", "-a", &t.traddr, "-s"])
        .arg(t.trsvcid.to_string())
        .args(["-o", "json"])
        .timeout(timeout);
    let out = run(&cmd, Some(t)).await?;
    output::parse_discovery(&out.stdout).map_err(|reason| output_error(&cmd, reason, &out))
}

/// Connects to subsystem `subnqn` at `t` and waits (polling, within
/// `opts.timeout`) until the namespaces of the new controller are block
/// devices that report their size. On any failure, controllers of `subnqn`
/// that appeared during the call are disconnected again, so a failed connect
/// leaves nothing behind.
///
/// Fails if this path is already connected (nvme-cli refuses); a second path
/// to the same subsystem (another port) is a new controller.
pub async fn connect(
    t: &Transport,
    subnqn: &str,
    opts: &ConnectOptions,
) -> Result<Connection, NvmeError> {
    let deadline = Instant::now() + opts.timeout;
    let cmd = connect_cmd(t, subnqn, opts)?.timeout(opts.timeout);
    let sys = Sysfs::host();
    let before = sys.controllers(subnqn)?;
    let result = match run(&cmd, Some(t)).await {
        Ok(out) => match output::parse_connect(&out.stdout) {
            Ok(controller) => {
                wait_for_namespaces(&sys, subnqn, &controller, deadline, opts.timeout).await
            }
            Err(reason) => Err(output_error(&cmd, reason, &out)),
        },
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Undo whatever this call created: the controller nvme-cli named, or
        // one the kernel finished creating after nvme-cli was killed at its
        // deadline.
        let after = sys.controllers(subnqn).unwrap_or_default();
        for controller in after.iter().filter(|c| !before.contains(c)) {
            let undo = Cmd::new("nvme")
                .args(["disconnect", "-d", controller])
                .timeout(ROLLBACK_TIMEOUT);
            if let Err(undo_err) = undo.run().await {
                tracing::warn!("could not undo the connect of {controller}: {undo_err}");
            }
        }
    }
    result
}

/// The controllers and namespaces the host has of subsystem `subnqn`, or
/// `None` when it has no controller of it.
pub async fn connection(subnqn: &str, timeout: Duration) -> Result<Option<Connection>, NvmeError> {
    validate_nqn("subsystem NQN", subnqn)?;
    let subnqn = subnqn.to_string();
    read_sysfs(timeout, move |sys| sys.connection(&subnqn)).await
}

/// Runs `read` on the host's sysfs within `timeout`. sysfs is
/// memory-backed, but a wedged driver can block a read: the read runs off
/// the runtime so that the deadline holds.
async fn read_sysfs<T, F>(timeout: Duration, read: F) -> Result<T, NvmeError>
where
    T: Send + 'static,
    F: FnOnce(&Sysfs) -> Result<T, NvmeError> + Send + 'static,
{
    let read = tokio::task::spawn_blocking(move || read(&Sysfs::host()));
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(NvmeError::Sysfs {
            path: PathBuf::from("/sys/class/nvme"),
            error: std::io::Error::other(join),
        }),
        Err(_) => Err(NvmeError::SysfsTimeout { after: timeout }),
    }
}

/// Disconnects every controller of subsystem `subnqn` (`nvme disconnect -n`)
/// and checks in sysfs that they are gone. Returns how many controllers
/// nvme-cli removed (0 when none was connected).
pub async fn disconnect(subnqn: &str, timeout: Duration) -> Result<u32, NvmeError> {
    validate_nqn("subsystem NQN", subnqn)?;
    let deadline = Instant::now() + timeout;
    let cmd = Cmd::new("nvme")
        .args(["disconnect", "-n", subnqn])
        .timeout(timeout);
    let out = run(&cmd, None).await?;
    let removed = output::parse_disconnect(&out.stdout, subnqn)
        .map_err(|reason| output_error(&cmd, reason, &out))?;
    let sys = Sysfs::host();
    loop {
        let remaining = sys.controllers(subnqn)?;
        if remaining.is_empty() {
            return Ok(removed);
        }
        if Instant::now() >= deadline {
            return Err(NvmeError::DisconnectIncomplete {
                subnqn: subnqn.to_string(),
                remaining,
                after: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Connects to every subsystem in the discovery log at `t` in one nvme-cli
/// run (`nvme connect-all`), and waits (polling, within `timeout`) until
/// each of `subnqns` has a usable namespace. On failure every controller
/// of `subnqns` is disconnected again. The caller checks that the log
/// lists no other subsystem, which this would connect too.
pub async fn connect_all(
    t: &Transport,
    subnqns: &[String],
    timeout: Duration,
) -> Result<(), NvmeError> {
    t.validate()?;
    for nqn in subnqns {
        validate_nqn("subsystem NQN", nqn)?;
    }
    let deadline = Instant::now() + timeout;
    let cmd = Cmd::new("nvme")
        .args(["connect-all", "-t", "tcp", "-a", &t.traddr, "-s"])
        .arg(t.trsvcid.to_string())
        .timeout(timeout);
    let result = match run(&cmd, Some(t)).await {
        Ok(_) => wait_all(subnqns, deadline, timeout, |c| {
            c.is_some_and(|c| !c.namespaces.is_empty())
        })
        .await
        .map_err(|waiting| NvmeError::ConnectIncomplete {
            subnqn: count_of(&waiting),
            after: timeout,
        }),
        Err(e) => Err(e),
    };
    if result.is_err() {
        if let Err(undo) = disconnect_many(subnqns, ROLLBACK_TIMEOUT).await {
            tracing::warn!("could not undo nvme connect-all: {undo}");
        }
    }
    result
}

/// Disconnects every controller of each of `subnqns` in one nvme-cli run
/// (`nvme disconnect -n <nqn>,<nqn>,...`) and checks in sysfs that they
/// are gone.
pub async fn disconnect_many(subnqns: &[String], timeout: Duration) -> Result<(), NvmeError> {
    for nqn in subnqns {
        validate_nqn("subsystem NQN", nqn)?;
    }
    if subnqns.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let cmd = Cmd::new("nvme")
        .args(["disconnect", "-n", &subnqns.join(",")])
        .timeout(timeout);
    run(&cmd, None).await?;
    wait_all(subnqns, deadline, timeout, |c| c.is_none())
        .await
        .map_err(|waiting| NvmeError::DisconnectIncomplete {
            subnqn: count_of(&waiting),
            remaining: vec![format!("of {} subsystems", waiting.len())],
            after: timeout,
        })
}

/// Polls sysfs until `done` holds for the connection of each of `subnqns`;
/// on the deadline, the NQNs still waited for.
async fn wait_all(
    subnqns: &[String],
    deadline: Instant,
    timeout: Duration,
    done: fn(Option<&Connection>) -> bool,
) -> Result<(), Vec<String>> {
    let mut waiting: Vec<String> = subnqns.to_vec();
    loop {
        let remaining = std::mem::take(&mut waiting);
        let checked = read_sysfs(timeout, move |sys| {
            let mut left = Vec::new();
            for nqn in remaining {
                if !done(sys.connection(&nqn)?.as_ref()) {
                    left.push(nqn);
                }
            }
            Ok(left)
        })
        .await;
        waiting = match checked {
            Ok(left) => left,
            Err(e) => {
                tracing::warn!("{e}");
                subnqns.to_vec()
            }
        };
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(waiting);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `nqn` or `nqn (and N more)`, for messages about many subsystems.
fn count_of(nqns: &[String]) -> String {
    match nqns {
        [] => "none".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// Resets controller `controller` (e.g. `nvme0`) with `nvme reset`: the
/// host tears its queues down and sets them up again, as after an error.
/// Returns when nvme-cli does; the controller may still be `resetting` or
/// `connecting` (see [`controller_state`]).
pub async fn reset(controller: &str, timeout: Duration) -> Result<(), NvmeError> {
    validate_controller(controller)?;
    let cmd = Cmd::new("nvme")
        .arg("reset")
        .arg(format!("/dev/{controller}"))
        .timeout(timeout);
    run(&cmd, None).await.map(drop)
}

/// Flushes the volatile write cache of the namespace behind block device
/// `device` (`nvme flush`), so that what was written is on stable storage.
pub async fn flush(device: &Path, timeout: Duration) -> Result<(), NvmeError> {
    let cmd = Cmd::new("nvme").arg("flush").arg(device).timeout(timeout);
    run(&cmd, None).await.map(drop)
}

/// Controller `controller`'s state as the kernel reports it (`live`,
/// `resetting`, `connecting`, `deleting`, ...), or `gone` when it no
/// longer exists.
pub async fn controller_state(controller: &str, timeout: Duration) -> Result<String, NvmeError> {
    validate_controller(controller)?;
    let controller = controller.to_string();
    read_sysfs(timeout, move |sys| Ok(sys.controller_state(&controller))).await
}

fn validate_controller(controller: &str) -> Result<(), NvmeError> {
    if sysfs::is_controller_name(controller) {
        return Ok(());
    }
    Err(NvmeError::InvalidOption {
        what: "controller",
        reason: format!("`{controller}` is not a controller name such as nvme0"),
    })
}

/// A new DH-HMAC-CHAP key for `nqn` (`nvme gen-dhchap-key`), transformed
/// with HMAC-SHA-256, in the form `DHHC-1:01:<base64>:`.
pub async fn gen_dhchap_key(nqn: &str, timeout: Duration) -> Result<String, NvmeError> {
    validate_nqn("NQN", nqn)?;
    let cmd = Cmd::new("nvme")
        .args(["gen-dhchap-key", "--hmac=1", &format!("--nqn={nqn}")])
        .timeout(timeout);
    let out = run(&cmd, None).await?;
    let key = out.stdout.trim();
    if !key.starts_with("DHHC-1:") {
        return Err(output_error(
            &cmd,
            "no DHHC-1 key in the output".into(),
            &out,
        ));
    }
    Ok(key.to_string())
}

/// nvme-cli's and libnvme's versions, as `nvme version` prints them, on one line.
pub async fn version(timeout: Duration) -> Result<String, NvmeError> {
    let out = run(&Cmd::new("nvme").arg("version").timeout(timeout), None).await?;
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", "))
}

/// A share URI as a target returns it, `nvmf://<address>:<port>/<nqn>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareUri {
    /// The address and port the subsystem is served at.
    pub transport: Transport,
    /// The subsystem NQN.
    pub nqn: String,
}

impl ShareUri {
    /// Splits a share URI into the transport and the subsystem NQN, both
    /// validated.
    pub fn parse(uri: &str) -> Result<Self, NvmeError> {
        // The URI comes from the target: shown escaped and cut short, so that
        // it cannot garble the terminal or fill the screen.
        let bad = |reason: &str| NvmeError::InvalidUri {
            uri: shown(uri),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "nvmf" {
            return Err(bad("the scheme is not nvmf"));
        }
        // For a scheme it does not know, `url` keeps an IPv4 host as text.
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(bad("the address is missing")),
        };
        let port = parsed.port().ok_or_else(|| bad("the port is missing"))?;
        let nqn = parsed.path().trim_start_matches('/');
        // The URL parser resolves `.` and `..` segments, drops tabs and
        // newlines and escapes spaces and quotes, and `?` or `#` end the path:
        // the NQN is taken only as it was written, so that a share URI never
        // names another subsystem than the target meant.
        let written = uri
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map_or("", |(_, path)| path.trim_start_matches('/'));
        if nqn != written {
            return Err(bad(
                "URL rules would change the NQN (a `.` or `..` segment, `?`, `#`, whitespace or \
                 a character to escape): give it as the target names it",
            ));
        }
        validate_nqn("subsystem NQN", nqn)?;
        Ok(Self {
            transport: Transport::new(host, port)?,
            nqn: nqn.to_string(),
        })
    }

    /// The transport of this share's address on TCP port `port` (another
    /// port of the target, such as its discovery port).
    pub fn on_port(&self, port: u16) -> Transport {
        Transport {
            traddr: self.transport.traddr.clone(),
            trsvcid: port,
        }
    }
}

/// Checks an NQN is one nvme-cli and the kernel accept unchanged.
pub fn validate_nqn(what: &'static str, nqn: &str) -> Result<(), NvmeError> {
    let reason = if !nqn.starts_with("nqn.") {
        Some("an NQN starts with `nqn.`, e.g. nqn.2019-05.io.openebs:<uuid>".to_string())
    } else if nqn.len() > NQN_MAX {
        Some(format!(
            "it is {} bytes long; at most {NQN_MAX} are allowed",
            nqn.len()
        ))
    } else {
        // nvme-cli splits `disconnect -n` on commas, so one would name two NQNs.
        nqn.chars()
            .find(|c| !c.is_ascii_graphic() || *c == ',')
            .map(|c| format!("it contains {c:?}; use printable ASCII without spaces or commas"))
    };
    match reason {
        Some(reason) => Err(NvmeError::InvalidNqn {
            what,
            value: shown(nqn),
            reason,
        }),
        None => Ok(()),
    }
}

fn connect_cmd(t: &Transport, subnqn: &str, opts: &ConnectOptions) -> Result<Cmd, NvmeError> {
    t.validate()?;
    validate_nqn("subsystem NQN", subnqn)?;
    let mut cmd = Cmd::new("nvme")
        .args(["connect", "-t", "tcp", "-a", &t.traddr, "-s"])
        .arg(t.trsvcid.to_string())
        .args(["-n", subnqn, "-o", "json"]);
    if let Some(tmo) = opts.ctrl_loss_tmo {
        if tmo < -1 {
            return Err(NvmeError::InvalidOption {
                what: "ctrl_loss_tmo",
                reason: format!("{tmo} is below -1; give seconds, or -1 to retry forever"),
            });
        }
        cmd = cmd.arg(format!("--ctrl-loss-tmo={tmo}"));
    }
    if let Some(delay) = opts.reconnect_delay {
        if delay == 0 {
            return Err(NvmeError::InvalidOption {
                what: "reconnect_delay",
                reason: "0 is not allowed; give at least 1 second".to_string(),
            });
        }
        cmd = cmd.arg(format!("--reconnect-delay={delay}"));
    }
    if let Some(hostnqn) = &opts.hostnqn {
        validate_nqn("host NQN", hostnqn)?;
        cmd = cmd.args(["-q", hostnqn]);
    }
    for (flag, key) in [
        ("--dhchap-secret", &opts.dhchap_secret),
        ("--dhchap-ctrl-secret", &opts.dhchap_ctrl_secret),
    ] {
        if let Some(key) = key {
            // As one argument, so that a key cannot pass for an option.
            cmd = cmd.arg(format!("{flag}={key}"));
        }
    }
    Ok(cmd)
}

/// Polls until every namespace of `controller` is a usable block device.
async fn wait_for_namespaces(
    sys: &Sysfs,
    subnqn: &str,
    controller: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Connection, NvmeError> {
    loop {
        let status = sys.controller_namespaces(controller)?;
        if status.is_ready() {
            if let Some(conn) = sys.connection(subnqn)? {
                return Ok(conn);
            }
        }
        if Instant::now() >= deadline {
            return Err(NvmeError::NamespaceTimeout {
                controller: controller.to_string(),
                subnqn: subnqn.to_string(),
                after: timeout,
                state: sys.controller_state(controller),
                seen: status.describe(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs nvme-cli; a failure carries its stderr and a hint when one is known.
async fn run(cmd: &Cmd, t: Option<&Transport>) -> Result<Output, NvmeError> {
    cmd.run().await.map_err(|error| {
        let hint = match &error {
            CmdError::Failed { stderr, .. } => output::hint(stderr, t, &Sysfs::host()),
            CmdError::Spawn { .. } => {
                Some("install nvme-cli (Debian: apt-get install nvme-cli)".into())
            }
            CmdError::Timeout { .. } => None,
        };
        NvmeError::Command { error, hint }
    })
}

fn output_error(cmd: &Cmd, reason: String, out: &Output) -> NvmeError {
    NvmeError::Output {
        cmdline: cmd.cmdline(),
        reason,
        output: out.stdout.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_accepts_ip_literals_only() {
        assert!(Transport::new("192.168.1.2", 8420).is_ok());
        assert!(Transport::new("::1", 8420).is_ok());
        let err = Transport::new("target.example", 8420)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`target.example`") && err.contains("IPv4"),
            "{err}"
        );
        let err = Transport::new("127.0.0.1", 0).unwrap_err().to_string();
        assert!(err.contains("port `0`"), "{err}");
    }

    #[test]
    fn nqn_validation_names_the_problem() {
        validate_nqn("subsystem NQN", "nqn.2019-05.io.openebs:abc").unwrap();
        for (bad, says) in [
            ("", "starts with `nqn.`"),
            ("iqn.2019-05.x", "starts with `nqn.`"),
            ("nqn.a b", "' '"),
            ("nqn.a,nqn.b", "','"),
        ] {
            let err = validate_nqn("subsystem NQN", bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        // The value is shown escaped and cut short.
        let err = validate_nqn("host NQN", "nqn.\x1b[2J\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#""nqn.\u{1b}[2J\n""#), "{err}");
        let long = format!("nqn.{}", "x".repeat(NQN_MAX));
        let err = validate_nqn("host NQN", &long).unwrap_err().to_string();
        assert!(err.contains("at most 223"), "{err}");
    }

    #[test]
    fn share_uri_splits_into_transport_and_nqn() {
        let s = ShareUri::parse("nvmf://192.168.1.2:8430/nqn.2019-05.io.openebs:1234").unwrap();
        assert_eq!(s.transport, Transport::new("192.168.1.2", 8430).unwrap());
        assert_eq!(s.nqn, "nqn.2019-05.io.openebs:1234");
        assert_eq!(
            s.on_port(8420),
            Transport::new("192.168.1.2", 8420).unwrap()
        );
        let s = ShareUri::parse("nvmf://[::1]:8430/nqn.x").unwrap();
        assert_eq!(s.transport.traddr, "::1");
        for bad in [
            "http://1.2.3.4:8430/nqn.x",
            "nvmf://host:8430/nqn.x",
            "nvmf://1.2.3.4/nqn.x",
            "nvmf://1.2.3.4:8430/",
            "not a uri",
            // URL rules would connect to another NQN than the one written.
            "nvmf://1.2.3.4:8430/nqn.a/../nqn.b",
            "nvmf://1.2.3.4:8430/nqn.a?b",
            "nvmf://1.2.3.4:8430/nqn.a#b",
            "nvmf://1.2.3.4:8430/nqn.<a>",
            "nvmf://1.2.3.4:8430/nqn.a\tb",
        ] {
            assert!(ShareUri::parse(bad).is_err(), "{bad}");
        }
        let err = ShareUri::parse("\x1b[2J").unwrap_err().to_string();
        assert!(err.contains(r#"URI "\u{1b}[2J":"#), "{err}");
    }

    #[test]
    fn connect_command_carries_the_options() {
        let t = Transport::new("192.168.1.2", 8430).unwrap();
        let opts = ConnectOptions {
            ctrl_loss_tmo: Some(-1),
            reconnect_delay: Some(2),
            hostnqn: Some("nqn.2014-08.org.nvmexpress:uuid:h".into()),
            dhchap_secret: Some("DHHC-1:01:k:".into()),
            dhchap_ctrl_secret: Some("DHHC-1:01:c:".into()),
            timeout: Duration::from_secs(5),
        };
        let line = connect_cmd(&t, "nqn.x", &opts).unwrap().cmdline();
        assert_eq!(
            line,
            "nvme connect -t tcp -a 192.168.1.2 -s 8430 -n nqn.x -o json --ctrl-loss-tmo=-1 \
             --reconnect-delay=2 -q nqn.2014-08.org.nvmexpress:uuid:h \
             --dhchap-secret=DHHC-1:01:k: --dhchap-ctrl-secret=DHHC-1:01:c:"
        );
        let bad = ConnectOptions {
            ctrl_loss_tmo: Some(-2),
            ..ConnectOptions::default()
        };
        let err = connect_cmd(&t, "nqn.x", &bad).unwrap_err().to_string();
        assert!(err.contains("ctrl_loss_tmo"), "{err}");
    }

    /// Properties over generated share URIs and NQNs (see `crate::props`).
    mod props {
        use std::net::{IpAddr, SocketAddr};

        use proptest::prelude::*;
        use proptest::sample::select;

        use super::super::*;
        use crate::props::{assert_clean, config, ip, mutated, nqn, text, MAX_MESSAGE_LEN};

        /// Share URIs as targets answer Share (this agent, Mayastor).
        const SEEDS: &[&str] = &[
            "nvmf://192.168.1.2:8430/nqn.2019-05.io.openebs:0e1f5bd4-8f32-4b2a-9d5c-6c1c35f2b0a7",
            "nvmf://10.0.0.2:8430/nqn.2019-05.io.openebs:nexus-0e1f5bd4",
            "nvmf://[fd00::2]:4420/nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        ];

        fn share_uri(ip: IpAddr, port: u16, nqn: &str) -> String {
            format!("nvmf://{}/{nqn}", SocketAddr::new(ip, port))
        }

        /// A share URI from the grammar's parts, right and wrong.
        fn near_share_uri() -> impl Strategy<Value = String> {
            let head = prop_oneof![
                4 => Just("nvmf://"),
                1 => select(&["NVMF://", "nvmf:", "nvmf:///", "iscsi://", ""][..]),
            ];
            let host = prop_oneof![
                4 => ip().prop_map(|ip| SocketAddr::new(ip, 1).ip().to_string()),
                1 => select(&["host", "[::1]", "1.2.3.4.5", "", "u@1.2.3.4", "01.2.3.4"][..])
                    .prop_map(String::from),
            ];
            let port = prop_oneof![
                4 => any::<u16>().prop_map(|p| format!(":{p}")),
                1 => select(&["", ":", ":0", ":65536", ":x"][..]).prop_map(String::from),
            ];
            let path = prop_oneof![
                3 => nqn(),
                1 => text(20),
                1 => select(&["nqn.a/../nqn.b", "nqn.a%2Cb", "nqn.a?b#c", "/nqn.a", ""][..])
                    .prop_map(String::from),
            ];
            (head, host, port, path).prop_map(|(h, host, port, path)| {
                // An IPv6 literal needs its brackets in a URI.
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("{h}{host}{port}/{path}")
            })
        }

        /// Any input is either a transport and an NQN that are valid and
        /// written back give the same again, or a clean one-line error.
        fn check(uri: &str) {
            match ShareUri::parse(uri) {
                Ok(s) => {
                    let (t, nqn) = (&s.transport, &s.nqn);
                    t.validate().unwrap();
                    validate_nqn("subsystem NQN", nqn).unwrap();
                    let ip: IpAddr = t.traddr.parse().unwrap();
                    let again = share_uri(ip, t.trsvcid, nqn);
                    assert_eq!(ShareUri::parse(&again).unwrap(), s, "{again}");
                }
                Err(e) => assert_clean(&e.to_string(), MAX_MESSAGE_LEN),
            }
        }

        #[test]
        fn seeds_are_accepted() {
            for uri in SEEDS {
                ShareUri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
                check(uri);
            }
        }

        proptest! {
            #![proptest_config(config(512))]

            #[test]
            fn any_input_is_a_share_or_a_clean_error(
                uri in prop_oneof![text(80), near_share_uri(), select(SEEDS).prop_flat_map(mutated)]
            ) {
                check(&uri);
            }

            /// The NQN connected to is the one the target wrote, or none:
            /// URL rules (dot segments, a query, a fragment, escapes) never
            /// turn it into another.
            #[test]
            fn a_share_uri_names_its_nqn_or_is_refused(
                ip in ip(), port in 1..=u16::MAX, nqn in nqn()
            ) {
                let uri = share_uri(ip, port, &nqn);
                if let Ok(s) = ShareUri::parse(&uri) {
                    prop_assert_eq!(s.transport, Transport::new(ip.to_string(), port).unwrap());
                    prop_assert_eq!(s.nqn, nqn);
                }
            }

            #[test]
            fn plain_share_uris_round_trip(
                ip in ip(), port in 1..=u16::MAX, nqn in "nqn\\.[a-z0-9.:-]{1,200}"
            ) {
                let uri = share_uri(ip, port, &nqn);
                let transport = Transport::new(ip.to_string(), port).unwrap();
                prop_assert_eq!(ShareUri::parse(&uri).ok(), Some(ShareUri { transport, nqn }));
            }

            #[test]
            fn nqns_are_accepted_by_the_rules_alone(nqn in prop_oneof![nqn(), text(40), "nqn\\.[ -~]{200,240}"]) {
                let ok = nqn.starts_with("nqn.")
                    && nqn.len() <= NQN_MAX
                    && nqn.chars().all(|c| c.is_ascii_graphic() && c != ',');
                match validate_nqn("host NQN", &nqn) {
                    Ok(()) => prop_assert!(ok),
                    Err(e) => {
                        prop_assert!(!ok);
                        assert_clean(&e.to_string(), MAX_MESSAGE_LEN);
                    }
                }
            }
        }
    }
}
