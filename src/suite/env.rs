//! What the cases run against: the target's gRPC client and the settings
//! that say which bdev to use and how long each kind of step may take.

use std::time::Duration;

use crate::agent;
use crate::client::Target;
use crate::token::Token;

use super::state::Carried;

/// The file [`Settings::aio_file`] names unless told otherwise, and its
/// size as the harnesses make it.
pub const AIO_FILE: &str = "/tmp/aio-file.img";
/// See [`AIO_FILE`].
pub const AIO_FILE_SIZE: u64 = 64 << 20;

/// The target's gRPC address unless told otherwise: the target VM of the
/// QEMU runner and of the NixOS checks, on the agent's port.
pub const DEFAULT_TARGET: &str = "192.168.1.2:10124";
/// The second node's gRPC address unless told otherwise (the
/// `replication` category's `node2`; `--target` is its `node1`): the next
/// address after [`DEFAULT_TARGET`]'s, as in the QEMU runner and the
/// NixOS check.
pub const DEFAULT_NODE2: &str = "192.168.1.3:10124";
/// The bdev the cases export unless told otherwise: the target VM's disk.
pub const DEFAULT_BDEV_URI: &str = "aio:///dev/vdb";
/// The size, in MiB, the exported namespace must have unless told
/// otherwise: the target VM's disk.
pub const DEFAULT_EXPECT_SIZE_MB: u64 = 512;
/// MiB each fio verify job writes and reads back unless told otherwise.
pub const DEFAULT_FIO_SIZE_MB: u64 = 32;

/// Knobs of a run; the defaults match the QEMU runner and the NixOS checks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The target's gRPC address, `host:port`.
    pub target: String,
    /// The second node's gRPC address (`replication` only).
    pub node2: String,
    /// The bdev the cases export, e.g. `aio:///dev/vdb`.
    pub bdev_uri: String,
    /// The size the exported namespace must have, in bytes, if known.
    pub expect_size: Option<u64>,
    /// A regular file on the target, at least 4 KiB, that
    /// `basic/mayastor-clients` exports as an aio bdev (Mayastor's fixtures
    /// use `/tmp/aio-file.img`); the harnesses make it.
    pub aio_file: String,
    /// The target's NVMe/TCP discovery port.
    pub discovery_port: u16,
    /// Bytes each fio verify job writes and reads back.
    pub fio_size: u64,
    /// Deadline of one gRPC call.
    pub rpc_timeout: Duration,
    /// Deadline of one nvme-cli operation (discover, connect, disconnect).
    pub nvme_timeout: Duration,
    /// Deadline of one fio run.
    pub fio_timeout: Duration,
    /// The agent's token, when it was started with `--token-file`.
    pub token: Option<Token>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            target: DEFAULT_TARGET.into(),
            node2: DEFAULT_NODE2.into(),
            bdev_uri: DEFAULT_BDEV_URI.into(),
            expect_size: Some(DEFAULT_EXPECT_SIZE_MB << 20),
            aio_file: AIO_FILE.into(),
            discovery_port: agent::DEFAULT_DISCOVERY_PORT,
            fio_size: DEFAULT_FIO_SIZE_MB << 20,
            rpc_timeout: Duration::from_secs(10),
            nvme_timeout: Duration::from_secs(30),
            fio_timeout: Duration::from_secs(600),
            token: None,
        }
    }
}

/// The environment a case runs in.
pub struct Env {
    /// The run's settings.
    pub settings: Settings,
    /// The target's bdev API.
    pub target: Target,
    /// The data set the target's disk holds, as far as the run knows.
    pub carried: Carried,
}

impl Env {
    /// An environment that knows of no data set on the disk yet.
    pub fn new(settings: Settings, target: Target) -> Self {
        Self {
            settings,
            target,
            carried: Carried::default(),
        }
    }
}
