//! VMs a person keeps up: [`Runner::up`] boots them detached and writes
//! their state into a [`RunDir`]; [`exec`], [`status`] and [`down`] find
//! them there.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::channel::Channel;
use super::cluster::{agent_ready, free_port, stop};
use super::kept::KeptState;
use super::qemu::{peak_rss_kib, Lifetime, Qemu};
use super::run_dir::RunDir;
use super::runner::{interrupted, stream, OutputSink, Runner, RunnerError};
use super::spec::Accel;
use super::topology::Topology;
use super::up_state::{is_our_qemu, stray_qemus, UpState};
use super::{hostfs, VmError};
use crate::suite::state::DataSet;
use crate::suite::AgentSetup;

/// What `vm up` started.
#[derive(Debug, Clone)]
pub struct Up {
    /// How the CPUs run.
    pub accel: Accel,
    /// Host loopback port of the agent's gRPC.
    pub grpc_port: u16,
    /// The shared output dir, with the logs.
    pub out: PathBuf,
    /// Each VM's name and QEMU's peak RSS so far in MiB.
    pub rss_mib: Vec<(String, Option<u64>)>,
    /// QEMUs an interrupted `vm up` had left, killed first.
    pub strays_killed: Vec<u32>,
    /// The data set the target's disk holds, when it booted on a kept one.
    pub data_set: Option<DataSet>,
}

/// One VM as `vm status` sees it.
#[derive(Debug, Clone)]
pub struct VmStatus {
    /// Its name.
    pub name: String,
    /// Its QEMU's pid.
    pub pid: u32,
    /// Whether that QEMU still runs.
    pub running: bool,
    /// Its peak RSS in MiB, if running and readable.
    pub rss_mib: Option<u64>,
    /// Its console log.
    pub console: PathBuf,
}

/// What `vm status` found.
#[derive(Debug, Clone)]
pub struct Status {
    /// Every VM of the state file.
    pub vms: Vec<VmStatus>,
    /// Host loopback port of the agent's gRPC.
    pub grpc_port: u16,
    /// How many bdevs the agent lists, or why it did not answer.
    pub agent: Result<usize, String>,
}

impl Status {
    /// Whether every VM runs and the agent answers.
    pub fn healthy(&self) -> bool {
        self.vms.iter().all(|v| v.running) && self.agent.is_ok()
    }
}

/// What `vm down` did to each VM: its name, pid and whether it was still
/// running (and was stopped).
#[derive(Debug, Clone)]
pub struct Down {
    /// Each VM of the state file.
    pub stopped: Vec<(String, u32, bool)>,
    /// QEMUs no state file named, killed.
    pub strays_killed: Vec<u32>,
    /// Where the console logs stay.
    pub out: Option<PathBuf>,
}

/// The run dir of a `vm up` state dir: itself, with `out/` for the output.
pub fn state_run_dir(state_dir: PathBuf) -> RunDir {
    let out = state_dir.join("out");
    RunDir::kept(state_dir, out)
}

/// Loads the state of `dir`, failing with how to start VMs if there is
/// none; `hint` is the `--state-dir` flag to repeat in that advice.
fn load(dir: &RunDir, hint: &str) -> Result<UpState, RunnerError> {
    UpState::load(dir)
        .map_err(|e| RunnerError::Invalid(e.to_string()))?
        .ok_or_else(|| {
            RunnerError::Invalid(format!(
                "no VMs are up (no state in {}); start them with `nvmfcheck vm up{hint}`",
                dir.path().display()
            ))
        })
}

/// Kills QEMUs of `dir` that no state file names.
fn kill_strays(dir: &RunDir, topology: &Topology) -> Vec<u32> {
    let names: Vec<&str> = topology.vms.iter().map(|v| v.name).collect();
    let strays = stray_qemus(dir, &names);
    for &pid in &strays {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    strays
}

impl Runner {
    /// `vm up`: boots the pair detached, with the Control service on and no
    /// token (VMs to explore and script by hand), and writes their state
    /// into `dir`; `hint` is the `--state-dir` flag for advice. With
    /// `from_state`, the target's data disk is a copy of the disk that
    /// `vm run --keep-state` kept there.
    pub async fn up(
        &self,
        dir: &RunDir,
        grpc_port: Option<u16>,
        from_state: Option<&Path>,
        hint: &str,
    ) -> Result<Up, RunnerError> {
        let invalid = |e: VmError| RunnerError::Invalid(e.to_string());
        let kept = from_state.map(KeptState::load).transpose()?;
        hostfs::private_dir(dir.path()).map_err(invalid)?;
        if let Some(old) = UpState::load(dir).map_err(invalid)? {
            if old.vms.iter().any(|v| is_our_qemu(v.pid, &v.files)) {
                return Err(RunnerError::Invalid(format!(
                    "VMs are already up (state in {}); stop them with `nvmfcheck vm down{hint}`",
                    dir.path().display()
                )));
            }
            UpState::remove(dir).map_err(invalid)?;
        }
        let topology = Topology::pair();
        let strays_killed = kill_strays(dir, &topology);
        let prepared = self.prepare().await?;
        let port = match grpc_port {
            Some(p) => p,
            None => free_port().map_err(invalid)?,
        };
        let mut cfg = self.boot_config(&prepared, port, Lifetime::Detached, AgentSetup::Faults)?;
        cfg.data_from = kept.as_ref().map(|k| k.disk.clone());
        let cluster = self.boot(&cfg, &topology, dir).await?;
        let rss_mib = cluster
            .vms
            .iter()
            .map(|vm| (vm.name.clone(), vm.peak_rss_mib()))
            .collect();
        cluster.state(dir, cfg.accel).save(dir).map_err(invalid)?;
        cluster.detach();
        Ok(Up {
            accel: cfg.accel,
            grpc_port: port,
            out: dir.out().to_path_buf(),
            rss_mib,
            strays_killed,
            data_set: kept.and_then(|k| k.report.state),
        })
    }
}

/// `vm exec`: runs `argv` in VM `name` of the VMs in `dir`, its output to
/// `output`; returns its exit status.
pub async fn exec(
    dir: &RunDir,
    hint: &str,
    name: &str,
    argv: &[String],
    timeout: Duration,
    output: OutputSink<'_>,
) -> Result<i32, RunnerError> {
    let state = load(dir, hint)?;
    let vm = state
        .vm(name)
        .map_err(|e| RunnerError::Invalid(e.to_string()))?;
    if !is_our_qemu(vm.pid, &vm.files) {
        return Err(RunnerError::Invalid(format!(
            "the {name} VM (pid {}) is not running; see {} and restart with `nvmfcheck vm \
             down{hint}` and `nvmfcheck vm up{hint}`",
            vm.pid,
            vm.files.console.display()
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let channel = Channel::connect_free(name, &vm.files, deadline)
        .await
        .map_err(|e| RunnerError::Phase {
            phase: "exec",
            source: e,
        })?;
    tokio::select! {
        r = stream(&channel, argv, timeout, output) => r,
        why = interrupted() => Err(RunnerError::Interrupted {
            why,
            during: "the command ran; it was killed in the VM".into(),
        }),
    }
}

/// `vm down`: stops the VMs in `dir` and removes their sockets and images
/// (the logs stay); with no state, kills QEMUs an interrupted `vm up` left.
pub async fn down(dir: &RunDir, hint: &str) -> Result<Down, RunnerError> {
    let state = UpState::load(dir).map_err(|e| RunnerError::Invalid(e.to_string()))?;
    let Some(state) = state else {
        let strays_killed = kill_strays(dir, &Topology::pair());
        if strays_killed.is_empty() {
            load(dir, hint)?;
        }
        return Ok(Down {
            stopped: Vec::new(),
            strays_killed,
            out: None,
        });
    };
    let mut stopped = Vec::new();
    for vm in &state.vms {
        let running = is_our_qemu(vm.pid, &vm.files);
        if running {
            let mut qemu = Qemu::adopt(&vm.name, vm.pid);
            stop(&mut qemu, &vm.files, Duration::from_secs(5)).await;
        }
        stopped.push((vm.name.clone(), vm.pid, running));
    }
    let names: Vec<&str> = state.vms.iter().map(|v| v.name.as_str()).collect();
    // The state's own run dir: the one the VMs were booted in.
    RunDir::kept(state.run_dir.clone(), state.out_dir.clone()).clean(&names);
    UpState::remove(dir).map_err(|e| RunnerError::Invalid(e.to_string()))?;
    Ok(Down {
        stopped,
        strays_killed: Vec::new(),
        out: Some(state.out_dir),
    })
}

/// `vm status`: whether each VM of `dir` runs, and whether the agent
/// answers.
pub async fn status(dir: &RunDir, hint: &str) -> Result<Status, RunnerError> {
    let state = load(dir, hint)?;
    let vms = state
        .vms
        .iter()
        .map(|vm| {
            let running = is_our_qemu(vm.pid, &vm.files);
            VmStatus {
                name: vm.name.clone(),
                pid: vm.pid,
                running,
                rss_mib: running
                    .then(|| peak_rss_kib(vm.pid).map(|kib| kib / 1024))
                    .flatten(),
                console: vm.files.console.clone(),
            }
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let agent = agent_ready(state.grpc_port, None, deadline, None)
        .await
        .map_err(|e| e.to_string());
    Ok(Status {
        vms,
        grpc_port: state.grpc_port,
        agent,
    })
}
