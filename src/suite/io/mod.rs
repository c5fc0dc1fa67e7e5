//! The `io` category: no byte is lost when the path is pushed and broken.
//!
//! Every data case writes with verification and reads back, and passes
//! only with fio's exit status 0 and no verify error, except where a case
//! provokes errors on purpose and asserts them. Each case starts from a
//! target and initiator with nothing shared or connected and leaves them
//! so (its cleanup undoes what a failure left). `docs/io.md` lists the
//! cases, what each proves and the blktests and SPDK cases they match.
//!
//! Sizes are chosen for TCG (about 700 4 KiB IOPS at queue depth 1), so
//! that the category takes minutes; fio jobs are bound by size, never by
//! time (see [`crate::fio`]).

use std::time::Duration;

use crate::client::Control;
use crate::nvme::{self, ConnectOptions, Namespace, ShareUri};
use crate::proto::mayastor::Bdev;

use super::fabric;
use super::{AgentSetup, CaseFuture, Category, CheckError, Env, Steps};

mod discard;
mod from_basic;
mod link;
mod matrix;
mod multipath;
mod persistence;
mod reset;
mod restart;
mod subsystems;
mod teardown;
mod whole;

/// How long a restarted agent or a restored link may take to answer again.
const AGENT_BACK: Duration = Duration::from_secs(60);

/// Seconds the host keeps reconnecting a lost controller in the fault
/// cases: longer than any fault they make.
const CTRL_LOSS_TMO: i32 = 60;

pub(super) fn category() -> Category {
    Category {
        name: "io",
        about: "no byte is lost when the path is pushed and broken: verify matrix, reconnects, \
                multipath, resets, restarts, teardown and link loss",
        depends_on: &["basic"],
        setup: AgentSetup::Faults,
        leaves_state: false,
        cases: vec![
            // First: before any other case writes over basic's data set.
            from_basic::case(),
            matrix::case(),
            persistence::case(),
            whole::case(),
            discard::case(),
            subsystems::case(),
            multipath::case(),
            reset::case(),
            restart::case(),
            teardown::case(),
            link::ride_out(),
            link::beyond_tmo(),
        ],
    }
}

/// The run's bdev, shared and connected through the share URI's port.
struct Session {
    bdev: Bdev,
    share: ShareUri,
    ns: Namespace,
}

impl Session {
    /// Shares the run's bdev (created if missing) and connects to it.
    async fn open(
        env: &Env,
        steps: &mut Steps,
        opts: &ConnectOptions,
    ) -> Result<Session, CheckError> {
        let uri = &env.settings.bdev_uri;
        let bdev = steps
            .run("should list the bdev", fabric::ensure_bdev(env, uri, uri))
            .await?;
        let share = fabric::share(env, steps, &bdev).await?;
        let ns = fabric::connect(steps, &bdev, &share, opts).await?;
        Ok(Session { bdev, share, ns })
    }

    /// Disconnects and unshares.
    async fn close(self, env: &Env, steps: &mut Steps) -> Result<(), CheckError> {
        fabric::disconnect(env, steps, &self.share.nqn).await?;
        fabric::unshare(env, steps, &self.bdev.name).await
    }
}

/// Connect options of the fault cases: the host reconnects every second
/// for [`CTRL_LOSS_TMO`] seconds, so a path comes back soon after its fault.
fn resilient(env: &Env) -> ConnectOptions {
    ConnectOptions {
        ctrl_loss_tmo: Some(CTRL_LOSS_TMO),
        reconnect_delay: Some(1),
        ..fabric::connect_options(env)
    }
}

/// The agent's `Control` service (faults, restart).
async fn control(env: &Env) -> Result<Control, CheckError> {
    Ok(Control::connect(
        &env.settings.target,
        env.settings.rpc_timeout,
        env.settings.token.clone(),
    )
    .await?)
}

/// The one controller the host has of `nqn`, as a step.
async fn only_controller(env: &Env, steps: &mut Steps, nqn: &str) -> Result<String, CheckError> {
    steps
        .run("should have one controller of the subsystem", async {
            let conn = nvme::connection(nqn, env.settings.nvme_timeout).await?;
            match conn.map(|c| c.controllers).as_deref() {
                Some([one]) => Ok(one.clone()),
                other => Err(CheckError::Failed(format!(
                    "{nqn} has controllers {other:?}, expected one"
                ))),
            }
        })
        .await
}

/// The cleanup of every case: no fault in force (a case that failed
/// half-way may have left one), the run's bdev neither connected nor
/// shared.
fn cleanup<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        fabric::wait_for_agent(env, AGENT_BACK).await?;
        wait_for_no_fault(env).await?;
        fabric::teardown(env, steps, &env.settings.bdev_uri).await
    })
}

/// Waits until the agent has no fault in force, for at most
/// [`AGENT_BACK`]; a target without the `Control` service has none.
async fn wait_for_no_fault(env: &Env) -> Result<(), CheckError> {
    let control = control(env).await?;
    let deadline = std::time::Instant::now() + AGENT_BACK;
    loop {
        let why = match control.info().await {
            Ok(info) if info.faults.is_empty() => return Ok(()),
            Ok(info) => format!("faults in force: {:?}", info.faults),
            Err(e) if e.code() == Some(tonic::Code::Unimplemented) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= deadline {
            return Err(CheckError::Failed(format!(
                "the agent did not end its faults within {}s: {why}",
                AGENT_BACK.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A size in bytes for step names: `512 B`, `4 KiB`, `128 KiB`, `8 MiB`.
fn size_name(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_named_in_binary_units() {
        assert_eq!(size_name(512), "512 B");
        assert_eq!(size_name(4096), "4 KiB");
        assert_eq!(size_name(128 << 10), "128 KiB");
        assert_eq!(size_name(512 << 20), "512 MiB");
        assert_eq!(size_name(1536), "1536 B");
    }

    #[test]
    fn io_runs_after_basic() {
        let reg = super::super::registry();
        let basic = reg.iter().position(|c| c.name == "basic").unwrap();
        let io = reg.iter().position(|c| c.name == "io").unwrap();
        assert!(basic < io);
        assert_eq!(reg[io].depends_on, ["basic"]);
        let mut names: Vec<_> = reg[io].cases.iter().map(|c| c.name).collect();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "case names are unique");
        assert!(reg[io].cases.iter().all(|c| c.cleanup.is_some()));
        // basic leaves its data set last, io reads it first.
        assert_eq!(reg[basic].cases.last().map(|c| c.name), Some("data-set"));
        assert!(reg[basic].leaves_state && !reg[io].leaves_state);
        assert_eq!(reg[io].cases[0].name, "state-from-basic");
    }
}
