//! The guest's initramfs, assembled at run time: busybox-static, an `/init`
//! script, and the kernel modules the guests need with their dependencies.
//!
//! The init loads the modules, mounts the host's root read-only over 9p,
//! mounts the kernel filesystems and tmpfs on the writable paths, brings up
//! the network and starts `nvmfcheck vm guest` in a chroot of the host
//! root; it stays PID 1 to reap orphans.
//! One image serves both roles: the role and the binary's path come on the
//! kernel command line, so the image is cached by content.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use cpio::newc::Builder;

use super::guest_kernel::{content_key, GuestKernel};
use super::modules::ModuleIndex;
use super::{io_error, Role, VmError, GUEST_OUT_DIR};
use crate::atomic_file;

/// Where busybox-static installs its binary on Debian.
pub const BUSYBOX: &str = "/bin/busybox";

/// Modules both guests load: devices, the 9p shares.
pub const BASE_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_console",
    "virtio_blk",
    "9pnet_virtio",
    "9p",
];

/// Modules one role loads in addition.
pub fn role_modules(role: Role) -> &'static [&'static str] {
    match role {
        Role::Target => &[
            "configfs",
            "nvmet",
            "nvmet_tcp",
            "loop",
            "dm_mod",
            "raid1",
            "nvme_tcp",
        ],
        Role::Initiator => &["nvme_tcp"],
    }
}

/// 9p mount options of the read-only host root. `cache=loose` lets the guest
/// keep pages and metadata of the (unchanging) host files, which is what
/// makes starting fio and nvme-cli over 9p fast.
pub const ROOT_9P_OPTS: &str = "trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose";
/// 9p mount options of the writable output share: no cache, so what the
/// guest writes is on the host as soon as the write returns.
pub const OUT_9P_OPTS: &str = "trans=virtio,version=9p2000.L,msize=512000";

/// The `/init` script. `@OUT@`, `@ROOT_OPTS@`, `@OUT_OPTS@` are filled in.
const INIT: &str = r#"#!/bin/busybox sh
# nvmfcheck guest init (generated): modules, host root over 9p, chroot.
b=/bin/busybox
fail() { echo "nvmfcheck-init: $*" >&2; $b poweroff -f; }
$b mount -t proc proc /proc
$b mount -t sysfs sys /sys
$b mount -t devtmpfs dev /dev
# On the console (whose log the host shows when a boot hangs) and, with
# the kernel's timestamps, in `dmesg`.
log() {
  read up _ < /proc/uptime
  echo "[$up] nvmfcheck-init: $*"
  echo "<6>nvmfcheck-init: $*" > /dev/kmsg
}
log start
for w in $($b cat /proc/cmdline); do
  case "$w" in
    nvmfcheck.role=*) role="${w#*=}" ;;
    nvmfcheck.name=*) name="${w#*=}" ;;
    nvmfcheck.ips=*) ips="${w#*=}" ;;
    nvmfcheck.forward=1) forward=--forward ;;
    nvmfcheck.exe=*) exe="${w#*=}" ;;
    nvmfcheck.setup=*) setup="${w#*=}" ;;
  esac
done
[ -n "$role" ] && [ -n "$name" ] && [ -n "$exe" ] || fail "nvmfcheck.role=, nvmfcheck.name= and nvmfcheck.exe= are needed on the kernel command line"
$b hostname "$name"
for m in $($b cat /modules/base.list /modules/$role.list); do
  $b insmod /modules/$m.ko || fail "cannot load module $m"
done
log modules loaded
r=/newroot
$b mkdir -p $r
$b mount -t 9p -o @ROOT_OPTS@ hostroot $r || fail "cannot mount the host root over 9p"
# A view of the host root that the tmpfs mounts below do not cover.
$b mount --bind $r /hostroot
$b mount -t proc proc $r/proc
$b mount -t sysfs sys $r/sys
$b mount -t devtmpfs dev $r/dev
$b mkdir -p $r/dev/shm
for d in /dev/shm /tmp /run /var/tmp /var/lib; do
  $b mount -t tmpfs -o mode=1777 tmpfs $r$d || fail "cannot mount tmpfs on $d"
  case "$exe" in
    "$d"/*)
      # The binary lies below a dir that is now a tmpfs: show it there.
      $b mkdir -p "$r${exe%/*}" && $b touch "$r$exe" &&
        $b mount --bind "/hostroot$exe" "$r$exe" || fail "cannot show $exe in the guest"
      ;;
  esac
done
[ -d /sys/module/configfs ] && $b mount -t configfs configfs $r/sys/kernel/config
$b mkdir -p $r@OUT@
$b mount -t 9p -o @OUT_OPTS@ out $r@OUT@ || fail "cannot mount the output share"
$b ip link set lo up
# One address a NIC, in order: the links', then the host forward's.
n=0
for a in ${ips//,/ }; do
  $b ip addr add $a dev eth$n && $b ip link set eth$n up || fail "cannot configure eth$n"
  n=$((n + 1))
done
address="${ips%%/*}"
log start the guest daemon
# This shell stays PID 1: its `wait` reaps every orphan (waitpid(-1)) until
# the daemon's job ends; then the VM powers off and QEMU exits.
(
  $b chroot $r "$exe" vm guest --role "$role" --name "$name" --address "$address" --setup "${setup:-faults}" $forward
  echo "nvmfcheck-init: the guest daemon exited ($?); powering off" >&2
  $b poweroff -f
) &
wait
$b poweroff -f
"#;

/// The init script as written into the image.
pub fn init_script() -> String {
    INIT.replace("@OUT@", GUEST_OUT_DIR)
        .replace("@ROOT_OPTS@", ROOT_9P_OPTS)
        .replace("@OUT_OPTS@", OUT_9P_OPTS)
}

/// The directories of the image.
const DIRS: &[&str] = &[
    "bin", "dev", "proc", "sys", "modules", "newroot", "hostroot",
];

/// The files of the image, as `(path, mode, contents)`; directories have no
/// contents.
pub fn entries(
    busybox: Vec<u8>,
    modules: &[(String, Vec<u8>)],
    lists: &[(&str, Vec<String>)],
) -> Vec<(String, u32, Option<Vec<u8>>)> {
    let mut out: Vec<(String, u32, Option<Vec<u8>>)> = DIRS
        .iter()
        .map(|d| (d.to_string(), 0o040755, None))
        .collect();
    out.push(("bin/busybox".into(), 0o100755, Some(busybox)));
    out.push(("init".into(), 0o100755, Some(init_script().into_bytes())));
    for (name, ko) in modules {
        out.push((format!("modules/{name}.ko"), 0o100644, Some(ko.clone())));
    }
    for (list, names) in lists {
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        out.push((
            format!("modules/{list}.list"),
            0o100644,
            Some(text.into_bytes()),
        ));
    }
    out
}

/// Writes a newc cpio archive of `entries`.
pub fn cpio(entries: Vec<(String, u32, Option<Vec<u8>>)>) -> Result<Vec<u8>, VmError> {
    let inputs = entries.into_iter().map(|(name, mode, data)| {
        let nlink = if data.is_none() { 2 } else { 1 };
        (
            Builder::new(&name).mode(mode).nlink(nlink),
            Cursor::new(data.unwrap_or_default()),
        )
    });
    cpio::write_cpio(inputs, Vec::new())
        .map_err(|e| VmError::Kernel(format!("cannot build the initramfs: {e}")))
}

fn check_busybox(bytes: &[u8]) -> Result<(), VmError> {
    let missing = || VmError::Missing {
        what: format!("a static busybox at {BUSYBOX}"),
        package: "busybox-static",
    };
    if !bytes.starts_with(b"\x7fELF") {
        return Err(missing());
    }
    // A dynamic busybox (Debian's `busybox` package) names its ELF
    // interpreter; it cannot run before the host root is mounted.
    if bytes.windows(14).any(|w| w == b"/lib64/ld-linu") {
        return Err(missing());
    }
    Ok(())
}

/// Size and modification time of `path`, as bytes for a cache key.
fn stamp(path: &Path) -> Vec<u8> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{mtime}", meta.len()).into_bytes()
}

/// The cache key of an image: everything it is built from, with files
/// stood for by their size and mtime, so a cache hit reads no module.
fn key(kernel: &GuestKernel) -> String {
    let lists: Vec<&str> = BASE_MODULES
        .iter()
        .chain(Role::ALL.iter().flat_map(|r| role_modules(*r)))
        .copied()
        .collect();
    content_key(&[
        env!("CARGO_PKG_VERSION").as_bytes(),
        b"unsigned modules",
        init_script().as_bytes(),
        DIRS.join(",").as_bytes(),
        lists.join(",").as_bytes(),
        &stamp(Path::new(BUSYBOX)),
        kernel.modules.as_os_str().as_encoded_bytes(),
        &stamp(&kernel.modules),
        kernel.version.as_bytes(),
    ])
}

/// Builds the initramfs for `kernel`, or finds it in `cache`, and returns
/// its path.
pub fn build(kernel: &GuestKernel, cache: &Path) -> Result<PathBuf, VmError> {
    let path = cache
        .join("initramfs")
        .join(format!("{}-{}.cpio", kernel.version, key(kernel)));
    if path.is_file() {
        return Ok(path);
    }
    let busybox = std::fs::read(BUSYBOX).map_err(|_| VmError::Missing {
        what: format!("busybox ({BUSYBOX})"),
        package: "busybox-static",
    })?;
    check_busybox(&busybox)?;
    let index = ModuleIndex::scan(&kernel.modules)?;
    let base = index.closure(BASE_MODULES)?;
    let mut all: Vec<(String, PathBuf)> = base.clone();
    let mut lists = vec![("base", base.iter().map(|(n, _)| n.clone()).collect())];
    for role in Role::ALL {
        let extra: Vec<(String, PathBuf)> = index
            .closure(role_modules(role))?
            .into_iter()
            .filter(|(n, _)| !base.iter().any(|(b, _)| b == n))
            .collect();
        lists.push((role.name(), extra.iter().map(|(n, _)| n.clone()).collect()));
        for m in extra {
            if !all.iter().any(|(n, _)| *n == m.0) {
                all.push(m);
            }
        }
    }
    let mut modules = Vec::new();
    for (name, path) in all {
        let mut ko =
            std::fs::read(&path).map_err(io_error(format!("cannot read {}", path.display())))?;
        super::modules::strip_signature(&mut ko);
        modules.push((name, ko));
    }
    atomic_file::replace(&path, &cpio(entries(busybox, &modules, &lists))?)
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_holds_init_busybox_modules_and_lists() {
        let image = cpio(entries(
            b"\x7fELF busybox".to_vec(),
            &[("virtio".into(), b"ko".to_vec())],
            &[("base", vec!["virtio".into()]), ("target", vec![])],
        ))
        .unwrap();
        let mut names = Vec::new();
        let mut rest = &image[..];
        loop {
            let reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            names.push((reader.entry().name().to_string(), reader.entry().mode()));
            rest = reader.finish().unwrap();
        }
        assert!(names.contains(&("init".into(), 0o100755)));
        assert!(names.contains(&("bin/busybox".into(), 0o100755)));
        assert!(names.contains(&("modules/virtio.ko".into(), 0o100644)));
        assert!(names.contains(&("modules/base.list".into(), 0o100644)));
        assert!(names.contains(&("newroot".into(), 0o040755)));
    }

    #[test]
    fn init_execs_the_guest_daemon_in_the_chroot() {
        let s = init_script();
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(s.contains("vm guest --role"));
        assert!(s.contains("\nwait\n"), "PID 1 must keep reaping");
        assert!(s.contains(GUEST_OUT_DIR));
        assert!(!s.contains('@'), "unfilled placeholder in:\n{s}");
    }

    #[test]
    fn a_dynamic_busybox_is_refused_naming_the_package() {
        let err = check_busybox(b"\x7fELF...../lib64/ld-linux-x86-64.so.2").unwrap_err();
        assert!(err.to_string().contains("busybox-static"), "{err}");
        check_busybox(b"\x7fELF static").unwrap();
    }
}
