//! QEMU command lines.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::protocol::{CTL_PORTS, PORT_NAME};
use super::{Role, VmError, FORWARD_IP};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// qboot: a tiny firmware that boots a PVH kernel straight away.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// How the guest CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's emulator.
    Tcg,
}

impl Accel {
    /// The `-accel` name.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// One end of a VM-to-VM link: a `-netdev stream` over a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Listens on the socket.
    Server(PathBuf),
    /// Connects to the socket; it must exist already.
    Client(PathBuf),
}

/// The files of one VM: sockets, logs, disks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmFiles {
    /// Unix socket of the first control port (virtio-serial); the others
    /// are [`VmFiles::ctl_port`].
    pub ctl: PathBuf,
    /// Unix socket of QMP.
    pub qmp: PathBuf,
    /// QEMU's pid file.
    pub pidfile: PathBuf,
    /// The guest's serial console.
    pub console: PathBuf,
    /// QEMU's own stderr.
    pub qemu_log: PathBuf,
}

impl VmFiles {
    /// The socket of control port `i` (`0..CTL_PORTS`).
    pub fn ctl_port(&self, i: usize) -> PathBuf {
        match i {
            0 => self.ctl.clone(),
            i => PathBuf::from(format!("{}.{i}", self.ctl.display())),
        }
    }

    /// The usual names for VM `n`: sockets in `run_dir`, logs in `log_dir`.
    pub fn new(n: &str, run_dir: &Path, log_dir: &Path) -> Self {
        Self {
            ctl: run_dir.join(format!("{n}.ctl")),
            qmp: run_dir.join(format!("{n}.qmp")),
            pidfile: run_dir.join(format!("{n}.pid")),
            console: log_dir.join(format!("{n}.console.log")),
            qemu_log: log_dir.join(format!("{n}.qemu.log")),
        }
    }
}

/// Everything that makes one VM's command line.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The VM's name (its hostname).
    pub name: String,
    /// What it runs.
    pub role: Role,
    /// Its host number: its MACs, and its address on each link.
    pub host: u8,
    /// How to run the CPU.
    pub accel: Accel,
    /// The uncompressed kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The nvmfcheck binary at its host path (run in the guest from 9p).
    pub exe: PathBuf,
    /// The host dir shared writable as the guest's output dir.
    pub out_dir: PathBuf,
    /// Sockets and logs.
    pub files: VmFiles,
    /// Guest memory.
    pub memory_mib: u32,
    /// Its links to other VMs, one NIC each, in order.
    pub links: Vec<Link>,
    /// Its addresses (`addr/prefix`), one per NIC: the links', then the
    /// forward's.
    pub addresses: Vec<String>,
    /// Loopback port forwarded to the agent (target only), and the port
    /// the agent serves beyond loopback, where it lands.
    pub grpc_port: Option<(u16, u16)>,
    /// Raw disk images, in order: `vda`, `vdb`, ….
    pub disks: Vec<PathBuf>,
    /// Extra kernel command line words.
    pub append: Vec<String>,
    /// Whether a reboot of the guest boots it again in the same QEMU
    /// (a target that may `Control.PowerCycle` itself) rather than ending
    /// QEMU, which the runner then takes as the VM dying.
    pub reboots: bool,
}

/// Escapes a value for QEMU's `key=value,…` option syntax.
fn opt(path: &Path) -> Result<String, VmError> {
    let s = path
        .to_str()
        .ok_or_else(|| VmError::Invalid(format!("{}: QEMU needs UTF-8 paths", path.display())))?;
    Ok(s.replace(',', ",,"))
}

/// A path for an option that takes a plain value (`-kernel`, `-initrd`,
/// `-pidfile`), where QEMU gives commas no meaning that can be escaped.
fn plain(path: &Path) -> Result<String, VmError> {
    let s = opt(path)?;
    if s.contains(',') {
        return Err(VmError::Invalid(format!(
            "{}: QEMU cannot take a comma in this path; use another dir",
            path.display()
        )));
    }
    Ok(s)
}

/// The kernel command line of `spec`.
pub fn kernel_cmdline(spec: &VmSpec) -> Result<String, VmError> {
    let exe = spec
        .exe
        .to_str()
        .filter(|s| !s.contains(char::is_whitespace));
    let exe = exe.ok_or_else(|| {
        VmError::Invalid(format!(
            "the nvmfcheck binary's path {} has spaces or is not UTF-8; it cannot go on the \
             guest's kernel command line: move the binary",
            spec.exe.display()
        ))
    })?;
    let mut words = vec![
        "console=ttyS0".to_string(),
        "quiet".into(),
        // Reboot at once on a panic: with -no-reboot QEMU then exits; a VM
        // that reboots in place shows it in its console (`panicked`).
        "panic=-1".into(),
        // Each of these saves boot time under TCG (measured with
        // initcall_debug): ACPI IRQ-link routing took ~110 ms per PCI
        // device (virtio uses MSI-X, so legacy IRQs are not needed), the
        // crypto self-tests ~300 ms; the rest skip probes and checks that
        // mean nothing in a throwaway VM. Not `tsc=reliable`: it turns off
        // the clocksource watchdog, and on a loaded host a guest's TSC
        // calibration once came out so wrong that its clock ran ~20x fast
        // (a 600 s fio deadline passed in 25 s of host time); the watchdog
        // catches such a TSC and falls back to the HPET.
        "acpi=noirq".into(),
        "cryptomgr.notests".into(),
        "no_timer_check".into(),
        "nowatchdog".into(),
        "audit=0".into(),
        "lsm=capability".into(),
        "i8042.noaux".into(),
        "i8042.nokbd".into(),
        "i8042.nopnp".into(),
        "mitigations=off".into(),
        format!("nvmfcheck.role={}", spec.role),
        format!("nvmfcheck.name={}", spec.name),
        format!("nvmfcheck.ips={}", spec.addresses.join(",")),
        format!("nvmfcheck.exe={exe}"),
    ];
    if spec.grpc_port.is_some() {
        words.push("nvmfcheck.forward=1".into());
    }
    words.extend(spec.append.iter().cloned());
    Ok(words.join(" "))
}

/// A stable MAC for each VM (by host number) and NIC, so that VMs differ on
/// a link.
fn mac(host: u8, nic: u8) -> String {
    format!("52:54:00:12:{nic:02x}:{host:02x}")
}

/// The PCI slot of NIC `i`: the links' NICs, then the forward's, in slots
/// after every other device, so that the guest names them eth0, eth1, …
/// in that order (interfaces are named in probe order).
fn nic_slot(i: usize) -> usize {
    0x10 + i
}

/// The full QEMU argument list (without the program).
pub fn argv(spec: &VmSpec) -> Result<Vec<OsString>, VmError> {
    let f = &spec.files;
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("nvmfcheck-{},process=nvmfcheck-{}", spec.name, spec.name),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-machine".into(),
        "pc".into(),
        "-accel".into(),
        match spec.accel {
            // A 64 MiB translation cache (QEMU's default is 1 GiB, filled
            // as code runs) saved 35-50 MiB RSS per VM with no slowdown
            // of a CPU-bound fio verify job.
            Accel::Tcg => "tcg,tb-size=64".into(),
            Accel::Kvm => "kvm".into(),
        },
        "-cpu".into(),
        match spec.accel {
            Accel::Kvm => "host".into(),
            Accel::Tcg => "max".into(),
        },
        "-smp".into(),
        "1".into(),
        "-m".into(),
        spec.memory_mib.to_string(),
        "-kernel".into(),
        plain(&spec.kernel)?,
        "-initrd".into(),
        plain(&spec.initrd)?,
        "-append".into(),
        kernel_cmdline(spec)?,
        "-pidfile".into(),
        plain(&f.pidfile)?,
        "-chardev".into(),
        format!("file,id=console,path={}", opt(&f.console)?),
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        format!("socket,id=qmp,path={},server=on,wait=off", opt(&f.qmp)?),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
    ];
    // A VM that reboots in place keeps QEMU's default firmware (SeaBIOS):
    // with qboot, a replication node reset by SysRq b under load once never
    // booted again (its CPU spun in 32-bit code after qboot jumped to the
    // kernel's PVH entry), which was not reproduced by hand; every SeaBIOS
    // reset since has booted.
    if !spec.reboots {
        a.extend(["-bios".into(), QBOOT.into(), "-no-reboot".into()]);
    }
    for (i, link) in spec.links.iter().enumerate() {
        let (server, path) = match link {
            Link::Server(p) => ("on", p),
            Link::Client(p) => ("off", p),
        };
        a.extend([
            "-netdev".into(),
            format!(
                "stream,id=link{i},server={server},addr.type=unix,addr.path={}",
                opt(path)?
            ),
            "-device".into(),
            format!(
                "virtio-net-pci,netdev=link{i},mac={},addr={:#x}",
                mac(spec.host, 0x34 + i as u8),
                nic_slot(i)
            ),
        ]);
    }
    if let Some((port, guest_port)) = spec.grpc_port {
        a.extend([
            "-netdev".into(),
            format!(
                "user,id=fwd,restrict=on,hostfwd=tcp:127.0.0.1:{port}-{FORWARD_IP}:{guest_port}"
            ),
            "-device".into(),
            format!(
                "virtio-net-pci,netdev=fwd,mac={},addr={:#x}",
                mac(spec.host, 0x33),
                nic_slot(spec.links.len())
            ),
        ]);
    }
    // Several control ports, because QEMU serves one client per socket:
    // each `vm exec` takes a free one.
    a.extend(["-device".into(), "virtio-serial-pci,addr=0x4".into()]);
    for i in 0..CTL_PORTS {
        a.extend([
            "-chardev".into(),
            format!(
                "socket,id=ctl{i},path={},server=on,wait=off",
                opt(&f.ctl_port(i))?
            ),
            "-device".into(),
            format!("virtserialport,chardev=ctl{i},name={PORT_NAME}.{i}"),
        ]);
    }
    // The host root: `readonly=on` makes QEMU refuse every change, even
    // from a guest that remounts it read-write. It cannot be
    // `mapped-xattr`: that model reads a symlink's target from the
    // content of a regular file, so the host's real symlinks (/lib64 ->
    // usr/lib64) fail with ELOOP and no binary starts. The output share
    // is `mapped-xattr`: what guest root sets (owner, mode, file type)
    // stays in `user.virtfs.*` xattrs, and on the host each file is a
    // plain file of QEMU's user, mode 0600 (dirs 0700); with `none`, guest
    // root made real setuid-root files and symlinks there. README: "What
    // the guests can do to the host".
    a.extend([
        "-fsdev".into(),
        "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap".into(),
        "-device".into(),
        "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,addr=0x5".into(),
        "-fsdev".into(),
        format!(
            "local,id=out,path={},security_model=mapped-xattr,multidevs=remap",
            opt(&spec.out_dir)?
        ),
        "-device".into(),
        "virtio-9p-pci,fsdev=out,mount_tag=out,addr=0x6".into(),
    ]);
    // cache=writeback: measured in the target (fio 4k QD1 on vdb) at ~3000
    // write / ~4600 read IOPS against ~2300 / ~2000 with cache=none, and
    // it works where the image lies on tmpfs (no O_DIRECT); the images are
    // thrown away, so host-side durability does not matter.
    for (i, disk) in spec.disks.iter().enumerate() {
        a.extend([
            "-drive".into(),
            format!(
                "if=none,id=disk{i},format=raw,cache=writeback,aio=threads,file={}",
                opt(disk)?
            ),
            "-device".into(),
            format!("virtio-blk-pci,drive=disk{i},addr={:#x}", 0x7 + i),
        ]);
    }
    Ok(a.into_iter().map(OsString::from).collect())
}

/// Fails naming the Debian package when QEMU or qboot is missing.
pub fn check_installed() -> Result<(), VmError> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(QEMU).is_file()))
        .unwrap_or(false);
    if !on_path {
        return Err(VmError::Missing {
            what: QEMU.into(),
            package: "qemu-system-x86",
        });
    }
    if !Path::new(QBOOT).is_file() {
        return Err(VmError::Missing {
            what: QBOOT.into(),
            package: "qemu-system-data",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: Role) -> VmSpec {
        let run = Path::new("/run/x");
        let target = role == Role::Target;
        VmSpec {
            name: role.name().into(),
            role,
            host: if target { 2 } else { 1 },
            accel: Accel::Tcg,
            kernel: "/c/vmlinux".into(),
            initrd: "/c/initrd.cpio".into(),
            exe: "/usr/bin/nvmfcheck".into(),
            out_dir: "/out".into(),
            files: VmFiles::new(role.name(), run, Path::new("/out")),
            memory_mib: 512,
            links: vec![if target {
                Link::Server(run.join("link"))
            } else {
                Link::Client(run.join("link"))
            }],
            addresses: vec!["192.168.1.2/24".into(), "10.0.2.15/24".into()],
            grpc_port: target.then_some((40000, 10124)),
            disks: if role == Role::Target {
                vec!["/run/x/vda".into(), "/run/x/vdb".into()]
            } else {
                vec![]
            },
            append: vec![],
            reboots: false,
        }
    }

    fn joined(role: Role) -> String {
        argv(&spec(role))
            .unwrap()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn target_serves_the_link_and_forwards_only_grpc_on_loopback() {
        let a = joined(Role::Target);
        assert!(
            a.contains("-netdev stream,id=link0,server=on,addr.type=unix,addr.path=/run/x/link")
        );
        // The link's NIC is eth0, the forward's eth1.
        assert!(a.contains("virtio-net-pci,netdev=link0,mac=52:54:00:12:34:02,addr=0x10"));
        assert!(a.contains("virtio-net-pci,netdev=fwd,mac=52:54:00:12:33:02,addr=0x11"));
        assert!(a.contains("nvmfcheck.name=target nvmfcheck.ips=192.168.1.2/24,10.0.2.15/24"));
        assert!(a.contains("user,id=fwd,restrict=on,hostfwd=tcp:127.0.0.1:40000-10.0.2.15:10124"));
        assert!(a.contains("nvmfcheck.role=target"));
        // vda first, so the blank disk is vdb.
        assert!(a.contains("id=disk0,format=raw,cache=writeback,aio=threads,file=/run/x/vda"));
        assert!(a.contains("id=disk1,format=raw,cache=writeback,aio=threads,file=/run/x/vdb"));
        assert!(a.contains("-accel tcg,tb-size=64 -cpu max -smp 1 -m 512 -kernel /c/vmlinux"));
        assert!(a.contains(" -bios /usr/share/qemu/qboot.rom -no-reboot "));
        assert_eq!(a.matches("virtserialport,").count(), CTL_PORTS);
        // The root is shared read-only, the output dir with the guest's
        // owners, modes and file types kept in xattrs, never made real.
        assert!(a.contains("local,id=hostroot,path=/,security_model=none,readonly=on,"));
        assert!(a.contains("local,id=out,path=/out,security_model=mapped-xattr,"));
        assert!(a.contains("socket,id=ctl1,path=/run/x/target.ctl.1,server=on,wait=off"));
        // A reboot ends QEMU unless the VM may reset itself.
        let mut resets = spec(Role::Target);
        resets.reboots = true;
        let a: Vec<_> = argv(&resets).unwrap();
        assert!(
            !a.iter().any(|w| w == "-no-reboot" || w == "-bios"),
            "{a:?}"
        );
    }

    #[test]
    fn initiator_connects_and_has_no_other_nic_or_disk() {
        let a = joined(Role::Initiator);
        assert!(a.contains("stream,id=link0,server=off"));
        assert!(!a.contains("user,"));
        assert!(!a.contains("-drive"));
        assert_eq!(a.matches("virtio-net-pci").count(), 1);
        assert_ne!(mac(1, 0x34), mac(2, 0x34));
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let mut s = spec(Role::Target);
        s.out_dir = "/out,1".into();
        let a: Vec<_> = argv(&s)
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert!(a.iter().any(|a| a.contains("path=/out,,1,")), "{a:?}");
        s.initrd = "/c/initrd,1.cpio".into();
        assert!(argv(&s).unwrap_err().to_string().contains("comma"));
    }

    #[test]
    fn an_exe_path_with_spaces_is_refused() {
        let mut s = spec(Role::Target);
        s.exe = "/my dir/nvmfcheck".into();
        let err = argv(&s).unwrap_err().to_string();
        assert!(err.contains("spaces"), "{err}");
    }
}
