//! Booting the VMs of a [`Topology`], and watching and stopping them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::channel::Channel;
use super::guest_kernel::GuestKernel;
use super::qemu::{pid_alive, Lifetime, Qemu};
use super::qmp::Qmp;
use super::relay::Relay;
use super::run_dir::RunDir;
use super::spec::{Accel, Link, VmFiles, VmSpec};
use super::topology::{Topology, VmPlan};
use super::up_state::{UpState, VmState};
use super::{io_error, LogTail, Progress, Role, VmError};
use crate::client::Target;
use crate::suite::AgentSetup;
use crate::token::Token;

/// How often the agent is asked whether it is up while VMs boot.
const AGENT_POLL: Duration = Duration::from_millis(100);

/// What the VMs boot from, and how.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// The guest kernel.
    pub kernel: GuestKernel,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The nvmfcheck binary, run in every guest at this host path.
    pub exe: PathBuf,
    /// KVM or TCG.
    pub accel: Accel,
    /// Memory of each VM.
    pub memory_mib: u32,
    /// Deadline for every VM to be ready.
    pub boot_timeout: Duration,
    /// Whether the VMs die with this process.
    pub lifetime: Lifetime,
    /// How the targets run their agents.
    pub setup: AgentSetup,
    /// Loopback port forwarded to the agent of the topology's forwarded VM.
    pub grpc_port: u16,
    /// The image the first target's data disk is a copy of; blank without.
    pub data_from: Option<PathBuf>,
}

/// One booted VM.
#[derive(Debug)]
pub struct Vm {
    /// Its name.
    pub name: String,
    /// What it runs.
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
            name: self.name.clone(),
            status,
            log: Some(self.log_tail(&[])),
        }
    }

    /// The control channel; an error if it is not connected.
    pub fn channel(&self) -> Result<&Channel, VmError> {
        self.channel
            .as_ref()
            .ok_or_else(|| VmError::Channel(format!("{} VM: no control channel", self.name)))
    }

    /// Whether its kernel panicked, as its console says: a VM that boots
    /// again in place would otherwise hide it.
    pub fn panicked(&self) -> bool {
        std::fs::read(&self.files.console)
            .is_ok_and(|log| log.windows(PANIC.len()).any(|w| w == PANIC.as_bytes()))
    }

    /// QEMU's peak RSS in MiB, if it can be read.
    pub fn peak_rss_mib(&self) -> Option<u64> {
        super::qemu::peak_rss_kib(self.qemu.pid).map(|kib| kib / 1024)
    }
}

/// What the kernel prints when it panics.
const PANIC: &str = "Kernel panic - not syncing";

/// The VMs of a topology, booted and ready.
#[derive(Debug)]
pub struct Cluster {
    /// In the topology's order.
    pub vms: Vec<Vm>,
    /// Loopback port forwarded to an agent, if a VM has the forward.
    pub grpc_port: Option<u16>,
    /// Time from the start of boot until each VM was ready.
    pub ready_after: Vec<(String, Duration)>,
    /// The file of the agent's token, if its setup needs one; removed at
    /// shutdown.
    pub token_file: Option<PathBuf>,
    /// The relays of networks of more than two VMs; they stop with the
    /// cluster.
    relays: Vec<Relay>,
}

/// A free loopback port (racy by nature; QEMU fails clearly if it is taken).
pub fn free_port() -> Result<u16, VmError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_error("cannot find a free loopback port"))
}

fn spec(cfg: &BootConfig, topology: &Topology, dir: &RunDir, vm: &VmPlan) -> VmSpec {
    let links = topology.networks_of(vm.name).map(|(i, net)| {
        let socket = dir.network_socket(topology, i, vm.name);
        if net.served_by(vm.name) {
            Link::Server(socket)
        } else {
            Link::Client(socket)
        }
    });
    let mut append = Vec::new();
    if vm.role == Role::Target {
        append.push(format!("nvmfcheck.setup={}", cfg.setup));
    }
    VmSpec {
        name: vm.name.to_string(),
        role: vm.role,
        host: vm.host,
        accel: cfg.accel,
        kernel: cfg.kernel.vmlinux.clone(),
        initrd: cfg.initrd.clone(),
        exe: cfg.exe.clone(),
        out_dir: dir.out().to_path_buf(),
        files: dir.vm_files(vm.name),
        memory_mib: cfg.memory_mib,
        links: links.collect(),
        addresses: topology.addresses(vm),
        grpc_port: vm.forward.then_some((cfg.grpc_port, cfg.setup.link_port())),
        disks: dir
            .disks(vm.name, vm.data_disk)
            .into_iter()
            .map(|(path, _)| path)
            .collect(),
        append,
        reboots: vm.role == Role::Target && cfg.setup.power_cycle(),
    }
}

/// Writes a fresh random token at `path`, readable by this user only, where
/// the guests find it.
fn write_token(path: PathBuf) -> Result<(PathBuf, Token), VmError> {
    use std::io::Write;
    let _ = std::fs::remove_file(&path);
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    super::hostfs::create_new(&path)?
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

impl Cluster {
    /// Boots the VMs of `topology` in its order (a link's client starts
    /// once its server made the socket) and waits until every guest daemon
    /// said hello and the forwarded agent answers `BdevRpc.List`. On any
    /// failure every QEMU started is killed.
    pub async fn boot(
        cfg: &BootConfig,
        topology: &Topology,
        dir: &RunDir,
        progress: &Progress,
    ) -> Result<Cluster, VmError> {
        topology.check().map_err(VmError::Invalid)?;
        let start = Instant::now();
        let deadline = start + cfg.boot_timeout;
        dir.prepare(topology, cfg.data_from.as_deref())?;
        let token = if cfg.setup.needs_token() {
            Some(write_token(dir.token())?)
        } else {
            None
        };
        let relays = start_relays(topology, dir, cfg.lifetime)?;
        let mut guard = KillUnlessReady(Vec::new());
        let mut vms: Vec<Vm> = Vec::new();
        for plan in &topology.vms {
            // A client's netdev connects at startup: the socket must exist.
            for (i, net) in topology.networks_of(plan.name) {
                if !net.relayed() && !net.served_by(plan.name) {
                    let server = vms.iter_mut().find(|v| net.served_by(&v.name));
                    if let Some(server) = server {
                        wait_for_socket(server, &dir.link_socket(i), deadline, cfg).await?;
                    }
                }
            }
            let spec = spec(cfg, topology, dir, plan);
            let qemu = Qemu::spawn(&spec, cfg.lifetime)?;
            guard.0.push(qemu.pid);
            progress.say(format!(
                "{}: QEMU started (pid {}, {})",
                plan.name,
                qemu.pid,
                cfg.accel.name()
            ));
            vms.push(Vm {
                name: plan.name.to_string(),
                role: plan.role,
                qemu,
                files: spec.files,
                channel: None,
            });
        }
        let token_for_ready = token.as_ref().map(|(_, t)| t);
        let ready = vms.iter().zip(&topology.vms).map(|(vm, plan)| {
            let agent_log = dir.agent_log(&vm.name);
            async move {
                let agent_log = &agent_log;
                let ch = watch(vm, Channel::connect_free(&vm.name, &vm.files, deadline)).await?;
                progress.say(format!("{}: guest daemon up", vm.name));
                if plan.forward {
                    let n = watch(
                        vm,
                        agent_ready(cfg.grpc_port, token_for_ready, deadline, Some(agent_log)),
                    )
                    .await
                    .map_err(|e| match e {
                        VmError::Timeout { what, after, .. } => VmError::Timeout {
                            what: format!("{} VM: {what}", vm.name),
                            after,
                            log: Some(vm.log_tail(std::slice::from_ref(agent_log))),
                        },
                        e => e,
                    })?;
                    progress.say(format!(
                        "{}: agent answers BdevRpc.List ({n} bdevs)",
                        vm.name
                    ));
                }
                Ok::<_, VmError>((ch, start.elapsed()))
            }
        });
        // The first failure ends the wait for the others too.
        let ready = futures_util::future::try_join_all(ready).await?;
        let mut ready_after = Vec::new();
        for (vm, (ch, after)) in vms.iter_mut().zip(ready) {
            vm.channel = Some(ch);
            ready_after.push((vm.name.clone(), after));
        }
        guard.0.clear();
        Ok(Cluster {
            vms,
            grpc_port: topology.forwarded().map(|_| cfg.grpc_port),
            ready_after,
            token_file: token.map(|(path, _)| path),
            relays,
        })
    }

    /// The VM called `name`.
    pub fn vm(&self, name: &str) -> Result<&Vm, VmError> {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| VmError::Invalid(format!("no VM called {name:?}")))
    }

    /// The VM that runs the checks.
    pub fn initiator(&self) -> Result<&Vm, VmError> {
        self.vms
            .iter()
            .find(|v| v.role == Role::Initiator)
            .ok_or_else(|| VmError::Invalid("no VM runs the checks".into()))
    }

    /// When the last VM was ready.
    pub fn ready(&self) -> Duration {
        self.ready_after
            .iter()
            .map(|(_, t)| *t)
            .max()
            .unwrap_or_default()
    }

    /// Resolves when any QEMU exits, with the error naming the VM and
    /// showing its logs; pair it with a step that needs every VM.
    pub async fn died(&self) -> VmError {
        loop {
            for vm in &self.vms {
                if !pid_alive(vm.qemu.pid) {
                    return vm.exited("it exited while the VMs were in use".into());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The first VM whose kernel panicked, as an error showing its console.
    pub fn panic(&self) -> Option<VmError> {
        let vm = self.vms.iter().find(|vm| vm.panicked())?;
        Some(VmError::Panicked {
            name: vm.name.clone(),
            log: vm.log_tail(&[]),
        })
    }

    /// What `vm up` writes down about these VMs.
    pub fn state(&self, dir: &RunDir, accel: Accel) -> UpState {
        UpState {
            grpc_port: self.grpc_port.unwrap_or(0),
            run_dir: dir.path().to_path_buf(),
            out_dir: dir.out().to_path_buf(),
            accel,
            vms: self
                .vms
                .iter()
                .map(|vm| VmState {
                    name: vm.name.clone(),
                    pid: vm.qemu.pid,
                    files: vm.files.clone(),
                })
                .collect(),
        }
    }

    /// Lets the VMs outlive this process (`vm up`): closes the channels.
    pub fn detach(mut self) {
        for vm in &mut self.vms {
            vm.channel = None;
            vm.qemu.detach();
        }
    }

    /// Stops every VM: QMP `quit`, then SIGKILL after `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        let stops = self.vms.iter_mut().map(|vm| {
            vm.channel = None;
            stop(&mut vm.qemu, &vm.files, grace)
        });
        futures_util::future::join_all(stops).await;
        self.relays.clear();
        if let Some(path) = &self.token_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Starts a relay for each network of more than two VMs. Relays live in
/// this process, so VMs that must outlive it (`vm up`) cannot use them.
fn start_relays(
    topology: &Topology,
    dir: &RunDir,
    lifetime: Lifetime,
) -> Result<Vec<Relay>, VmError> {
    let relayed = topology
        .networks
        .iter()
        .enumerate()
        .filter(|(_, n)| n.relayed());
    let mut relays = Vec::new();
    for (i, net) in relayed {
        if lifetime == Lifetime::Detached {
            return Err(VmError::Invalid(format!(
                "network {}: VMs that outlive the runner cannot share a network of more than \
                 two (its relay runs in the runner)",
                net.members.join(" + ")
            )));
        }
        let sockets = net.members.iter().map(|m| dir.relay_socket(i, m));
        relays.push(Relay::start(sockets.collect())?);
    }
    Ok(relays)
}

/// Waits until `server`'s QEMU made the link socket at `socket`.
async fn wait_for_socket(
    server: &mut Vm,
    socket: &std::path::Path,
    deadline: Instant,
    cfg: &BootConfig,
) -> Result<(), VmError> {
    while !socket.exists() {
        if let Some(status) = server.qemu.exit_status() {
            return Err(server.exited(status));
        }
        if Instant::now() > deadline {
            return Err(VmError::Timeout {
                what: format!("{} VM: creating the link socket", server.name),
                after: cfg.boot_timeout,
                log: Some(server.log_tail(&[])),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Runs `fut` unless the VM's QEMU exits first; adds the VM's logs to a
/// timeout that has none.
async fn watch<T>(
    vm: &Vm,
    fut: impl std::future::Future<Output = Result<T, VmError>>,
) -> Result<T, VmError> {
    let pid = vm.qemu.pid;
    let died = async {
        while pid_alive(pid) {
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
            if !pid_alive(pid) {
                return Err(vm.exited("it exited while booting".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    r.map_err(|e| match e {
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
    })
}

/// Waits until the agent behind loopback `port` answers `BdevRpc.List`;
/// returns the number of bdevs. When `agent_log` (the guest daemon's log of
/// the agent) says the agent exited, fails at once instead of at the
/// deadline.
pub async fn agent_ready(
    port: u16,
    token: Option<&Token>,
    deadline: Instant,
    agent_log: Option<&std::path::Path>,
) -> Result<usize, VmError> {
    let start = Instant::now();
    let addr = format!("127.0.0.1:{port}");
    let list = || async {
        let target = Target::connect_with_token(&addr, Duration::from_secs(3), token.cloned());
        target.await?.list().await.map(|b| b.len())
    };
    let exited = async {
        let Some(log) = agent_log else {
            return std::future::pending().await;
        };
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(super::guest::AGENT_EXITED) {
                return LogTail::read(&[log.to_path_buf()], 15);
            }
            tokio::time::sleep(AGENT_POLL).await;
        }
    };
    tokio::select! {
        r = crate::client::retry(deadline, AGENT_POLL, list) => r.map_err(|last| VmError::Timeout {
            what: format!("the agent answering BdevRpc.List on {addr} (last error: {last})"),
            after: start.elapsed(),
            log: None,
        }),
        log = exited => Err(VmError::AgentExited { log }),
    }
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
    fn a_panic_in_a_console_is_found_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let vm = |name: &str, console: &str| {
            let files = VmFiles::new(name, dir.path(), dir.path());
            std::fs::write(&files.console, console).unwrap();
            Vm {
                name: name.into(),
                role: Role::Target,
                qemu: Qemu::adopt(name, u32::MAX - 1),
                files,
                channel: None,
            }
        };
        let quiet = vm(
            "node1",
            "sysrq: Resetting\n[    0.000000] Linux version 6.1\n",
        );
        let panicked = vm(
            "node2",
            "[   12.3] Kernel panic - not syncing: Attempted to kill init!\n",
        );
        assert!(!quiet.panicked() && panicked.panicked());
        let cluster = |vms| Cluster {
            vms,
            grpc_port: None,
            ready_after: Vec::new(),
            token_file: None,
            relays: Vec::new(),
        };
        assert!(cluster(vec![vm("node1", "fine\n")]).panic().is_none());
        let e = cluster(vec![quiet, panicked]).panic().unwrap().to_string();
        assert!(e.starts_with("node2 VM: its kernel panicked"), "{e}");
        assert!(e.contains("Attempted to kill init"), "{e}");
    }
}
