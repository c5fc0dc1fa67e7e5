//! `Control.PowerCycle`: the machine the agent runs on resets at once, as a
//! power cut and restore would. The kernel's SysRq `b` reboots without
//! syncing or unmounting anything, so what the page cache held is lost and
//! the disks keep only what reached them; a VM whose hypervisor resets
//! rather than exits on a reboot (the QEMU runner's targets that allow it,
//! any NixOS test node) then boots again on the same disks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{error, warn};

/// Where the kernel takes SysRq commands from root, whatever
/// `kernel.sysrq` says (that sysctl gates the keyboard only).
pub const SYSRQ_TRIGGER: &str = "/proc/sysrq-trigger";

/// How long after replying the machine resets, so that the reply gets out.
pub const RESET_DELAY: Duration = Duration::from_millis(250);

/// The kernel's boot id, which changes at every boot; empty if unreadable.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Writes SysRq `b` to `trigger` after [`RESET_DELAY`], in the background.
/// Nothing is synced first: that is the point.
pub fn reset_soon(trigger: PathBuf) {
    warn!(
        "PowerCycle: resetting this machine in {} ms, without sync",
        RESET_DELAY.as_millis()
    );
    tokio::spawn(async move {
        tokio::time::sleep(RESET_DELAY).await;
        if let Err(e) = write_b(&trigger) {
            error!("PowerCycle: cannot write b to {}: {e}", trigger.display());
        }
    });
}

fn write_b(trigger: &Path) -> std::io::Result<()> {
    // Opened for writing only, never created: a missing trigger is an error.
    let mut f = std::fs::OpenOptions::new().write(true).open(trigger)?;
    f.write_all(b"b")
}
