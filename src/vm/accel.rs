//! Choosing KVM or TCG. `/dev/kvm` existing proves nothing (on some hosts it
//! exists and KVM guests hang), so `auto` boots the guest kernel under KVM
//! with a hard deadline and takes KVM only if the kernel prints its banner.
//! The verdict is cached per boot of the host.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::spec::{Accel, QBOOT, QEMU};
use super::{io_error, VmError};
use crate::atomic_file;

/// How long the kernel may take to print its first line under KVM.
/// Under a working KVM the banner comes within half a second of QEMU's
/// start.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(3);

/// The chosen accelerator and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why, for a person.
    pub reason: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    boot_id: String,
    verdict: Verdict,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Decides between KVM and TCG for `auto`, probing with `vmlinux` and
/// caching the verdict in `cache` until the host reboots.
pub async fn auto(vmlinux: &Path, cache: &Path) -> Result<Verdict, VmError> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Ok(Verdict {
            accel: Accel::Tcg,
            reason: format!("/dev/kvm cannot be opened ({e})"),
        });
    }
    let path = cache.join("accel-probe.json");
    let id = boot_id();
    if let Some(c) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Cached>(&b).ok())
        .filter(|c| c.boot_id == id && !id.is_empty())
    {
        return Ok(Verdict {
            reason: format!(
                "{} (probed earlier since this host booted)",
                c.verdict.reason
            ),
            ..c.verdict
        });
    }
    let verdict = probe(vmlinux).await?;
    let cached = Cached {
        boot_id: id,
        verdict: verdict.clone(),
    };
    if let Ok(bytes) = serde_json::to_vec(&cached) {
        atomic_file::replace(&path, &bytes)
            .map_err(io_error(format!("cannot write {}", path.display())))?;
    }
    Ok(verdict)
}

/// Boots `vmlinux` under KVM until its banner appears or the deadline.
pub async fn probe(vmlinux: &Path) -> Result<Verdict, VmError> {
    let mut cmd = tokio::process::Command::new(QEMU);
    // A hung KVM guest must not outlive a runner that is killed meanwhile.
    super::qemu::die_with_parent(&mut cmd);
    let mut child = cmd
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-accel", "kvm", "-cpu", "host", "-m", "128", "-smp", "1"])
        .args(["-bios", QBOOT, "-no-reboot", "-serial", "stdio", "-kernel"])
        .arg(vmlinux)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_error(format!("cannot start {QEMU} for the KVM probe")))?;
    let mut stdout = child.stdout.take();
    let seen = tokio::time::timeout(PROBE_DEADLINE, async {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(out) = stdout.as_mut() {
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
            if text.windows(13).any(|w| w == b"Linux version") {
                return true;
            }
        }
        false
    })
    .await;
    let _ = child.kill().await;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut stderr)).await;
    }
    Ok(match seen {
        Ok(true) => Verdict {
            accel: Accel::Kvm,
            reason: "a KVM guest booted in the probe".into(),
        },
        Ok(false) => Verdict {
            accel: Accel::Tcg,
            reason: format!(
                "the KVM probe's QEMU ended without kernel output: {}",
                stderr.trim()
            ),
        },
        Err(_) => Verdict {
            accel: Accel::Tcg,
            reason: format!(
                "a KVM guest printed nothing within {}s (KVM hangs on this host)",
                PROBE_DEADLINE.as_secs()
            ),
        },
    })
}
