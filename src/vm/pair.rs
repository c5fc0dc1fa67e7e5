//! Booting and tearing down the target/initiator pair.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::channel::Channel;
use super::guest_kernel::GuestKernel;
use super::hostfs;
use super::protocol::CTL_PORTS;
use super::qemu::{Lifetime, Qemu};
use super::qmp::Qmp;
use super::spec::{Accel, Link, VmFiles, VmSpec};
use super::up_state::{PairState, VmState};
use super::{io_error, LogTail, Progress, Role, VmError, TOKEN_FILE};
use crate::client::{ClientError, Target};
use crate::suite::AgentSetup;
use crate::token::Token;
use uuid::Uuid;

/// Size of the target's blank data disk, `/dev/vdb`.
pub const DATA_DISK_BYTES: u64 = 512 << 20;
/// Longest unix socket path the kernel accepts (`sun_path`, with the NUL).
const SUN_PATH_MAX: usize = 107;

/// What the pair is booted from and where its files go.
#[derive(Debug, Clone)]
pub struct PairConfig {
    /// The guest kernel.
    pub kernel: GuestKernel,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The nvmfcheck binary, run in both guests at this host path.
    pub exe: PathBuf,
    /// KVM or TCG.
    pub accel: Accel,
    /// Sockets and disk images: private to this user (see [`hostfs`]).
    pub run_dir: PathBuf,
    /// Shared writable with both guests; console and QEMU logs go here too.
    pub out_dir: PathBuf,
    /// Loopback port forwarded to the target's agent.
    pub grpc_port: u16,
    /// Memory of each VM.
    pub memory_mib: u32,
    /// Deadline for both VMs to be ready.
    pub boot_timeout: Duration,
    /// Whether the VMs die with this process.
    pub lifetime: Lifetime,
    /// How the target runs its agent.
    pub setup: AgentSetup,
}

/// One booted VM.
#[derive(Debug)]
pub struct Vm {
    /// Which VM.
    pub role: Role,
    /// Its QEMU.
    pub qemu: Qemu,
    /// Its sockets and logs.
    pub files: VmFiles,
    /// Its control channel, once connected.
    pub channel: Option<Channel>,
}

impl Vm {
    /// The VM's logs, for error messages.
    pub fn log_tail(&self, extra: &[PathBuf]) -> LogTail {
        let mut paths = vec![self.files.console.clone(), self.files.qemu_log.clone()];
        paths.extend_from_slice(extra);
        LogTail::read(&paths, 15)
    }

    fn exited(&self, status: String) -> VmError {
        VmError::QemuExited {
            role: self.role,
            status,
            log: Some(self.log_tail(&[])),
        }
    }

    /// The control channel; an error if it is not connected.
    pub fn channel(&self) -> Result<&Channel, VmError> {
        self.channel
            .as_ref()
            .ok_or_else(|| VmError::Channel(format!("{} VM: no control channel", self.role)))
    }
}

/// The two VMs, booted and ready.
#[derive(Debug)]
pub struct Pair {
    /// Exports the disk; runs the agent.
    pub target: Vm,
    /// Runs the checks.
    pub initiator: Vm,
    /// Loopback port forwarded to the agent.
    pub grpc_port: u16,
    /// Times from the start of boot until each VM was ready.
    pub ready_after: [(Role, Duration); 2],
    /// The file of the agent's token, if its setup needs one; removed at
    /// shutdown.
    pub token_file: Option<PathBuf>,
}

/// A free loopback port (racy by nature; QEMU fails clearly if it is taken).
pub fn free_port() -> Result<u16, VmError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_error("cannot find a free loopback port"))
}

fn check_socket_path(p: &Path) -> Result<(), VmError> {
    if p.as_os_str().len() > SUN_PATH_MAX {
        return Err(VmError::Invalid(format!(
            "{}: too long for a unix socket ({} bytes at most); use a shorter dir",
            p.display(),
            SUN_PATH_MAX
        )));
    }
    Ok(())
}

/// A new sparse disk image (see [`hostfs::create_new`]: QEMU writes what
/// the guest writes to it, so it must be no other file).
fn sparse_file(path: &Path, bytes: u64) -> Result<(), VmError> {
    let f = hostfs::create_new(path)?;
    f.set_len(bytes)
        .map_err(io_error(format!("cannot size {}", path.display())))
}

fn spec(cfg: &PairConfig, role: Role) -> VmSpec {
    let link = cfg.run_dir.join("link.sock");
    let target = role == Role::Target;
    VmSpec {
        role,
        accel: cfg.accel,
        kernel: cfg.kernel.vmlinux.clone(),
        initrd: cfg.initrd.clone(),
        exe: cfg.exe.clone(),
        out_dir: cfg.out_dir.clone(),
        files: VmFiles::new(role, &cfg.run_dir, &cfg.out_dir),
        memory_mib: cfg.memory_mib,
        link: if target {
            Link::Server(link)
        } else {
            Link::Client(link)
        },
        grpc_port: target.then_some((cfg.grpc_port, cfg.setup.link_port())),
        // A tiny vda first, so the blank data disk is vdb as in the NixOS
        // test (where vda is the root disk).
        disks: if target {
            vec![
                cfg.run_dir.join("target-vda.img"),
                cfg.run_dir.join("target-vdb.img"),
            ]
        } else {
            vec![]
        },
        append: if target {
            vec![format!("nvmfcheck.setup={}", cfg.setup)]
        } else {
            vec![]
        },
    }
}

/// Writes a fresh random token into `<out>/`[`TOKEN_FILE`], readable by
/// this user only, where both guests find it.
fn write_token(out_dir: &Path) -> Result<(PathBuf, Token), VmError> {
    use std::io::Write;
    let path = out_dir.join(TOKEN_FILE);
    let _ = std::fs::remove_file(&path);
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    hostfs::create_new(&path)?
        .write_all(secret.as_bytes())
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    let token = Token::read(&path).map_err(|e| VmError::Invalid(e.to_string()))?;
    Ok((path, token))
}

/// Kills the QEMUs started so far unless boot succeeds (a detached QEMU
/// is not killed by dropping its handle).
struct KillUnlessReady(Vec<u32>);

impl Drop for KillUnlessReady {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Pair {
    /// Boots the target, then the initiator, and waits until the target's
    /// agent answers `BdevRpc.List` and both guest daemons said hello.
    /// On any failure every QEMU started is killed.
    pub async fn boot(cfg: &PairConfig, progress: &Progress) -> Result<Pair, VmError> {
        let start = Instant::now();
        let deadline = start + cfg.boot_timeout;
        for dir in [&cfg.run_dir, &cfg.out_dir] {
            std::fs::create_dir_all(dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
        }
        hostfs::check_user_xattrs(&cfg.out_dir)?;
        let specs = [spec(cfg, Role::Target), spec(cfg, Role::Initiator)];
        for s in &specs {
            let ports = (0..CTL_PORTS).map(|i| s.files.ctl_port(i));
            for p in ports.chain([s.files.qmp.clone()]) {
                check_socket_path(&p)?;
                let _ = std::fs::remove_file(&p);
            }
        }
        // The daemon appends to the agent's log; an old one would end this
        // boot at once if it says the agent exited.
        let agent_log = cfg.out_dir.join("agent.log");
        let _ = std::fs::remove_file(&agent_log);
        let token = if cfg.setup.needs_token() {
            Some(write_token(&cfg.out_dir)?)
        } else {
            None
        };
        let token_for_ready = token.as_ref().map(|(_, t)| t);
        let link = cfg.run_dir.join("link.sock");
        check_socket_path(&link)?;
        let _ = std::fs::remove_file(&link);
        // Logs of an earlier run into the same out dir, and the images of
        // an earlier pair in a `vm up` state dir, go; removing does not
        // follow a symlink. The console logs are then made here, new and
        // not through a symlink, since QEMU opens them following one.
        for s in &specs {
            for old in s.disks.iter().chain([&s.files.console, &s.files.qemu_log]) {
                let _ = std::fs::remove_file(old);
            }
            hostfs::create_new(&s.files.console)?;
        }
        sparse_file(&specs[0].disks[0], 1 << 20)?;
        sparse_file(&specs[0].disks[1], DATA_DISK_BYTES)?;

        let mut guard = KillUnlessReady(Vec::new());
        let qemu = Qemu::spawn(&specs[0], cfg.lifetime)?;
        guard.0.push(qemu.pid);
        progress.say(format!(
            "target: QEMU started (pid {}, {})",
            qemu.pid,
            cfg.accel.name()
        ));
        let mut target = Vm {
            role: Role::Target,
            qemu,
            files: specs[0].files.clone(),
            channel: None,
        };
        // The initiator's netdev connects at startup: the target's socket
        // has to exist first.
        while !link.exists() {
            if let Some(status) = target.qemu.exit_status() {
                return Err(target.exited(status));
            }
            if Instant::now() > deadline {
                return Err(VmError::Timeout {
                    what: "target VM: creating the link socket".into(),
                    after: cfg.boot_timeout,
                    log: Some(target.log_tail(&[])),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let qemu = Qemu::spawn(&specs[1], cfg.lifetime)?;
        guard.0.push(qemu.pid);
        progress.say(format!("initiator: QEMU started (pid {})", qemu.pid));
        let mut initiator = Vm {
            role: Role::Initiator,
            qemu,
            files: specs[1].files.clone(),
            channel: None,
        };

        let (t, i) = (&target, &initiator);
        let target_ready = async {
            let ch = watch(t, Channel::connect_free(Role::Target, &t.files, deadline)).await?;
            progress.say("target: guest daemon up");
            let n = watch(
                t,
                agent_ready(cfg.grpc_port, token_for_ready, deadline, Some(&agent_log)),
            )
            .await
            .map_err(|e| match e {
                VmError::Timeout { what, after, .. } => VmError::Timeout {
                    what,
                    after,
                    log: Some(t.log_tail(std::slice::from_ref(&agent_log))),
                },
                e => e,
            })?;
            progress.say(format!("target: agent answers BdevRpc.List ({n} bdevs)"));
            Ok::<_, VmError>((ch, start.elapsed()))
        };
        let initiator_ready = async {
            let ch = watch(
                i,
                Channel::connect_free(Role::Initiator, &i.files, deadline),
            )
            .await?;
            progress.say("initiator: guest daemon up");
            Ok::<_, VmError>((ch, start.elapsed()))
        };
        // The first failure ends the wait for the other VM too.
        let ((t_ch, t_after), (i_ch, i_after)) = tokio::try_join!(
            async { target_ready.await.map_err(|e| with_log(e, t)) },
            async { initiator_ready.await.map_err(|e| with_log(e, i)) },
        )?;
        target.channel = Some(t_ch);
        initiator.channel = Some(i_ch);
        guard.0.clear();
        Ok(Pair {
            target,
            initiator,
            grpc_port: cfg.grpc_port,
            ready_after: [(Role::Target, t_after), (Role::Initiator, i_after)],
            token_file: token.map(|(path, _)| path),
        })
    }

    /// Both VMs.
    pub fn vms(&self) -> [&Vm; 2] {
        [&self.target, &self.initiator]
    }

    /// The VM with `role`.
    pub fn vm(&self, role: Role) -> &Vm {
        match role {
            Role::Target => &self.target,
            Role::Initiator => &self.initiator,
        }
    }

    /// Resolves when either QEMU exits, with the error naming the VM and
    /// showing its logs; pair it with a step that needs both VMs.
    pub async fn died(&self) -> VmError {
        loop {
            for vm in self.vms() {
                if !super::qemu::pid_alive(vm.qemu.pid) {
                    return vm.exited("it exited while the pair was in use".into());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What `vm up` writes down about this pair.
    pub fn state(&self, cfg: &PairConfig) -> PairState {
        PairState {
            grpc_port: self.grpc_port,
            run_dir: cfg.run_dir.clone(),
            out_dir: cfg.out_dir.clone(),
            accel: cfg.accel,
            vms: self
                .vms()
                .iter()
                .map(|vm| VmState {
                    role: vm.role,
                    pid: vm.qemu.pid,
                    files: vm.files.clone(),
                })
                .collect(),
        }
    }

    /// Lets the VMs outlive this process (`vm up`): closes the channels.
    pub fn detach(mut self) {
        for vm in [&mut self.target, &mut self.initiator] {
            vm.channel = None;
            vm.qemu.detach();
        }
    }

    /// Stops both VMs: QMP `quit`, then SIGKILL after `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        let (t, i) = (&mut self.target, &mut self.initiator);
        t.channel = None;
        i.channel = None;
        tokio::join!(
            stop(&mut t.qemu, &t.files, grace),
            stop(&mut i.qemu, &i.files, grace)
        );
        if let Some(path) = &self.token_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Adds the VM's logs to an error that has none.
fn with_log(e: VmError, vm: &Vm) -> VmError {
    match e {
        VmError::Timeout {
            what,
            after,
            log: None,
        } => VmError::Timeout {
            what,
            after,
            log: Some(vm.log_tail(&[])),
        },
        e => e,
    }
}

/// Runs `fut` unless the VM's QEMU exits first.
async fn watch<T>(
    vm: &Vm,
    fut: impl std::future::Future<Output = Result<T, VmError>>,
) -> Result<T, VmError> {
    let pid = vm.qemu.pid;
    let died = async {
        while super::qemu::pid_alive(pid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let r = tokio::select! {
        r = fut => r,
        () = died => return Err(vm.exited("it exited while booting".into())),
    };
    // A channel or gRPC error is often QEMU going away: say that instead.
    if r.is_err() {
        for _ in 0..10 {
            if !super::qemu::pid_alive(pid) {
                return Err(vm.exited("it exited while booting".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    r
}

/// Waits until the agent behind `port` answers `BdevRpc.List`; returns the
/// number of bdevs. When `agent_log` (the guest daemon's log of the agent)
/// says the agent exited, fails at once instead of at the deadline.
pub async fn agent_ready(
    port: u16,
    token: Option<&Token>,
    deadline: Instant,
    agent_log: Option<&Path>,
) -> Result<usize, VmError> {
    let start = Instant::now();
    loop {
        let last = match list_once(port, token).await {
            Ok(n) => return Ok(n),
            Err(e) => e,
        };
        if let Some(log) = agent_log {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(super::guest::AGENT_EXITED) {
                return Err(VmError::AgentExited {
                    log: LogTail::read(&[log.to_path_buf()], 15),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                what: format!(
                    "target VM: the agent answering BdevRpc.List on 127.0.0.1:{port} (last \
                     error: {last})"
                ),
                after: start.elapsed(),
                log: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list_once(port: u16, token: Option<&Token>) -> Result<usize, ClientError> {
    let addr = format!("127.0.0.1:{port}");
    let target = Target::connect_with_token(&addr, Duration::from_secs(3), token.cloned()).await?;
    Ok(target.list().await?.len())
}

/// Stops one QEMU: QMP `quit`, then SIGKILL if it is still there after
/// `grace`.
pub async fn stop(qemu: &mut Qemu, files: &VmFiles, grace: Duration) {
    if qemu.exit_status().is_some() {
        return;
    }
    let quit = async {
        let qmp = Qmp::connect(&files.qmp, Duration::from_secs(2)).await?;
        qmp.quit().await
    };
    let _ = tokio::time::timeout(grace, quit).await;
    if tokio::time::timeout(grace, qemu.wait()).await.is_err() {
        qemu.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), qemu.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_an_image_path_fails_its_creation_and_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let image = dir.path().join("target-vdb.img");
        std::os::unix::fs::symlink(&victim, &image).unwrap();
        let err = sparse_file(&image, DATA_DISK_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&image.display().to_string()), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }
}
