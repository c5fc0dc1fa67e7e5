//! The second half of `vm bench`: one boot of the pair in which the guest
//! halves of the benchmark run (`nvmfcheck bench ...`, see
//! [`crate::bench`]): the data path in the target and from the initiator,
//! the control path and the scale bench from the initiator, and the
//! agent's memory read in the target while the scale bench's bdevs are
//! all shared.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::channel::Channel;
use super::cluster::{free_port, Cluster};
use super::qemu::Lifetime;
use super::run_dir::RunDir;
use super::runner::{interrupted, Prepared, Runner, RunnerError};
use super::topology::Topology;
use super::TARGET_IP;
use crate::bench::control::ControlPath;
use crate::bench::data_path::{self, Figures, Row};
use crate::bench::record::Scale;
use crate::bench::scale;
use crate::suite::AgentSetup;

/// Where the guest daemon writes the agent's pid, in the target.
pub const AGENT_PID_FILE: &str = "/run/nvmfcheck/agent.pid";

/// How the guest halves run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadParams {
    /// Seconds each data-path job runs, on each side.
    pub job_secs: u64,
    /// Calls of each kind in the control path.
    pub calls: u32,
    /// Bdevs of the scale bench.
    pub bdevs: u32,
}

/// What the boot measured.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Local vs fabric, per job.
    pub data_path: Vec<Row>,
    /// Call latencies.
    pub control: ControlPath,
    /// Many bdevs.
    pub scale: Scale,
}

/// The target's data disk, as the target sees it and as a bdev URI.
const DISK: &str = "/dev/vdb";

impl Runner {
    /// Boots the pair into `dir` and runs the guest halves there.
    pub(crate) async fn workload(
        &self,
        prepared: &Prepared,
        dir: &RunDir,
        params: WorkloadParams,
    ) -> Result<Workload, RunnerError> {
        let setup = AgentSetup::Faults;
        let port = free_port().map_err(|source| RunnerError::Phase {
            phase: "boot",
            source,
        })?;
        let cfg = self.boot_config(prepared, port, Lifetime::Owned, setup)?;
        let cluster = self.boot(&cfg, &Topology::for_setup(setup), dir).await?;
        let steps = Steps {
            runner: self,
            cluster: &cluster,
            exe: cfg.exe.display().to_string(),
            target: setup.grpc_target(TARGET_IP),
            params,
        };
        let result = tokio::select! {
            r = steps.run() => r,
            e = cluster.died() => Err(RunnerError::Phase { phase: "bench", source: e }),
            why = interrupted() => Err(RunnerError::Interrupted {
                why,
                during: "the bench ran".into(),
            }),
        };
        cluster.shutdown(Duration::from_secs(5)).await;
        result
    }
}

/// The guest halves, in order.
struct Steps<'a> {
    runner: &'a Runner,
    cluster: &'a Cluster,
    exe: String,
    /// The agent's gRPC address from the initiator.
    target: String,
    params: WorkloadParams,
}

impl Steps<'_> {
    async fn run(&self) -> Result<Workload, RunnerError> {
        let p = self.params;
        let secs = p.job_secs.to_string();
        let jobs = data_path::JOBS.len() as u64;
        // Each side's jobs, with room for fio and the connect around them.
        let data_timeout = Duration::from_secs(jobs * (p.job_secs * 2 + 60) + 120);
        let local: Vec<Figures> = self
            .json(
                "target",
                "data path in the target",
                &["bench", "data-path", "--device", DISK, "--secs", &secs],
                data_timeout,
            )
            .await?;
        let uri = format!("aio://{DISK}");
        let fabric: Vec<Figures> = self
            .json(
                "initiator",
                "data path over NVMe/TCP",
                &[
                    "bench",
                    "data-path",
                    "--over-fabric",
                    &uri,
                    "--secs",
                    &secs,
                    "--target",
                    &self.target,
                ],
                data_timeout,
            )
            .await?;
        let calls = p.calls.to_string();
        // A call takes milliseconds; a minute per 100 calls is far beyond.
        let control_timeout = Duration::from_secs(60 + u64::from(p.calls) * 3 * 60 / 100);
        let control: ControlPath = self
            .json(
                "initiator",
                "control path",
                &[
                    "bench",
                    "control",
                    "--calls",
                    &calls,
                    "--target",
                    &self.target,
                ],
                control_timeout,
            )
            .await?;
        let bdevs = p.bdevs.to_string();
        let scale_timeout = Duration::from_secs(900);
        let scale_args = |phase: &'static str| {
            vec![
                "bench",
                "scale",
                phase,
                "--bdevs",
                &bdevs,
                "--target",
                &self.target,
            ]
        };
        let up: scale::Up = self
            .json(
                "initiator",
                "scale: share and connect",
                &scale_args("up"),
                scale_timeout,
            )
            .await?;
        let agent_rss_mib = self.agent_rss_mib().await?;
        let down: scale::Down = self
            .json(
                "initiator",
                "scale: disconnect and unshare",
                &scale_args("down"),
                scale_timeout,
            )
            .await?;
        Ok(Workload {
            data_path: data_path::rows(&local, &fabric),
            control,
            scale: Scale {
                up,
                agent_rss_mib,
                down,
            },
        })
    }

    fn channel(&self, vm: &str) -> Result<&Channel, RunnerError> {
        self.cluster
            .vm(vm)
            .and_then(|vm| vm.channel())
            .map_err(|source| RunnerError::Phase {
                phase: "bench",
                source,
            })
    }

    /// Runs `nvmfcheck <args>` in `vm` and parses its stdout as JSON.
    async fn json<T: DeserializeOwned>(
        &self,
        vm: &str,
        what: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<T, RunnerError> {
        let mut argv = vec![self.exe.clone()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = self.output(vm, what, &argv, timeout).await?;
        serde_json::from_str(&out).map_err(|e| {
            RunnerError::Invalid(format!(
                "bench, {what}: `{}` printed no figures ({e}): {out}",
                argv.join(" ")
            ))
        })
    }

    /// Runs `argv` in `vm`: its stdout, or an error with its stderr.
    async fn output(
        &self,
        vm: &str,
        what: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<String, RunnerError> {
        self.runner.progress.say(format!("bench: {what}"));
        let started = std::time::Instant::now();
        let out = self
            .channel(vm)?
            .output(argv, timeout)
            .await
            .map_err(|source| RunnerError::Phase {
                phase: "bench",
                source,
            })?;
        if out.code != 0 {
            return Err(RunnerError::Invalid(format!(
                "bench, {what}: `{}` in the {vm} VM exited {}: {}",
                argv.join(" "),
                out.code,
                out.stderr.trim()
            )));
        }
        self.runner.progress.say(format!(
            "bench: {what} done in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(out.stdout)
    }

    /// The agent's resident memory in MiB, from `/proc` in the target.
    async fn agent_rss_mib(&self) -> Result<f64, RunnerError> {
        let timeout = Duration::from_secs(30);
        let cat = |path: &str| vec!["cat".to_string(), path.to_string()];
        let pid = self
            .output("target", "the agent's pid", &cat(AGENT_PID_FILE), timeout)
            .await?;
        let status_file = format!("/proc/{}/status", pid.trim());
        let status = self
            .output("target", "the agent's memory", &cat(&status_file), timeout)
            .await?;
        vm_rss_kib(&status)
            .map(|kib| kib as f64 / 1024.0)
            .ok_or_else(|| RunnerError::Invalid(format!("{status_file} has no VmRSS line")))
    }
}

/// The `VmRSS:` line of a `/proc/<pid>/status`, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tnvmfcheck\nVmPeak:\t  99999 kB\nVmRSS:\t   24576 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status), Some(24576));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }
}
