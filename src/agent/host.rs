//! Preparing the host for the agent: the kernel target modules, configfs,
//! a tmpfs for malloc bdevs, and the default address for shares.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, FsType};
use tracing::{info, warn};

use crate::cmd::Cmd;

/// `CONFIGFS_MAGIC` from `linux/magic.h`.
const CONFIGFS_MAGIC: FsType = FsType(0x6265_6570);

/// The host cannot run the agent.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No `nvmet` directory in configfs.
    #[error("{} does not exist: the kernel NVMe target is not available; load it with `modprobe nvmet-tcp` and mount configfs (`mount -t configfs none /sys/kernel/config`), then start the agent again", .path.display())]
    NoNvmet {
        /// `<configfs>/nvmet`.
        path: PathBuf,
    },
    /// A mount failed.
    #[error("cannot mount {what} on {}: {cause} (the agent must run as root)", .path.display())]
    Mount {
        /// `configfs` or `tmpfs`.
        what: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The OS error.
        cause: nix::Error,
    },
    /// A directory cannot be created.
    #[error("cannot create directory {}: {cause}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// No address to serve on.
    #[error("no network interface that is up has an IPv4 address other than loopback; give one with --address")]
    NoAddress,
}

/// Makes sure `<configfs>/nvmet` exists: loads `nvmet-tcp` if it is not
/// loaded (which pulls in `nvmet`), mounts configfs on `configfs` if
/// nothing is mounted there. Loads `loop` too, for block sizes the
/// kernel target cannot give a file or device by itself, and `dm-mod`,
/// which LVM2 needs for pools and replicas.
pub async fn prepare_target(configfs: &Path) -> Result<(), KernelError> {
    load_module(
        "nvmet-tcp",
        Path::new("/sys/module/nvmet_tcp"),
        "the kernel may load it itself when a port is enabled",
    )
    .await;
    load_module(
        "loop",
        Path::new("/dev/loop-control"),
        "bdevs whose block size needs a loop device cannot be shared",
    )
    .await;
    load_module(
        "dm-mod",
        Path::new("/dev/mapper/control"),
        "pools and replicas (LVM2) cannot be made",
    )
    .await;
    let nvmet = configfs.join("nvmet");
    if !nvmet.is_dir() && configfs.is_dir() && !is_fs(configfs, CONFIGFS_MAGIC) {
        mount_fs("configfs", "configfs", configfs, MsFlags::empty(), None)?;
        info!("mounted configfs on {}", configfs.display());
    }
    if nvmet.is_dir() {
        Ok(())
    } else {
        Err(KernelError::NoNvmet { path: nvmet })
    }
}

/// Mounts a tmpfs on `dir` unless it already is on tmpfs or ramfs, so that
/// malloc bdevs live in RAM. The mount outlives the agent, as the shares do.
pub fn ensure_tmpfs(dir: &Path) -> Result<(), KernelError> {
    std::fs::create_dir_all(dir).map_err(|cause| KernelError::CreateDir {
        path: dir.to_path_buf(),
        cause,
    })?;
    if super::device::in_ram(dir).unwrap_or(false) {
        return Ok(());
    }
    mount_fs(
        "tmpfs",
        "nvmfcheck-malloc",
        dir,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )?;
    info!("mounted a tmpfs on {} for malloc bdevs", dir.display());
    Ok(())
}

/// Mounts a filesystem of type `fstype` from `source` on `path`.
fn mount_fs(
    fstype: &'static str,
    source: &str,
    path: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), KernelError> {
    mount(Some(source), path, Some(fstype), flags, data).map_err(|cause| KernelError::Mount {
        what: fstype,
        path: path.to_path_buf(),
        cause,
    })
}

/// Loads `module` unless `present` exists; a failure is only logged, with
/// what it costs.
async fn load_module(module: &str, present: &Path, otherwise: &str) {
    if present.exists() {
        return;
    }
    let modprobe = Cmd::new("modprobe")
        .arg(module)
        .timeout(Duration::from_secs(30));
    match modprobe.run().await {
        Ok(_) => info!("loaded the {module} kernel module"),
        Err(e) => warn!("{e}; {otherwise}"),
    }
}

fn is_fs(path: &Path, magic: FsType) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == magic)
}

/// The first IPv4 address, other than loopback, of an interface that is up.
pub fn default_address() -> Result<Ipv4Addr, KernelError> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|_| KernelError::NoAddress)?;
    addrs
        .filter(|a| {
            a.flags.contains(InterfaceFlags::IFF_UP)
                && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|s| s.ip())))
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .ok_or(KernelError::NoAddress)
}
