//! Faults in force: taking them effect, remembering them, undoing them.
//!
//! A fault is written to `<state dir>/faults.json` before it takes effect,
//! with its deadline on the boot clock (`CLOCK_BOOTTIME`, which counts
//! across restarts of the agent but not across reboots) and the boot id, so
//! that whatever happens to the agent the fault ends:
//! - while the agent runs, a task restores each fault at its deadline;
//! - an agent that re-executes itself (`Restart`) or is restarted by its
//!   service manager reads the file at start, imposes again what it rebuilt
//!   meanwhile (it completes shares, which relinks a downed port), and
//!   restores each fault at its deadline, or at once if that has passed;
//! - an agent that stops (SIGTERM) restores every fault before it exits;
//! - after a reboot the file's faults are void (the boot id differs): the
//!   link is up and configfs was rebuilt.
//!
//! A restore that fails is retried every second, a few times, and logged.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::link;
use super::record::{duration_ms, load, now_ms, save, Pending};
use super::ControlError;
use crate::agent::bdevs::BdevTable;
use crate::agent::serial::Serial;
use crate::proto::control as pb;

/// The longest fault, in seconds.
pub const MAX_SECONDS: u32 = 600;

/// How long after replying to `LinkDown` the link goes down, so that the
/// reply (which may travel over that link) gets out first.
pub const LINK_DOWN_DELAY: Duration = Duration::from_millis(250);

/// How often a failed restore is tried again, and how many times.
const RETRY: (Duration, u32) = (Duration::from_secs(1), 10);

/// What a fault took away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fault {
    /// A network interface set down.
    Link {
        /// Its name, e.g. `eth1`.
        interface: String,
    },
    /// The subsystems unlinked from one of the agent's ports.
    Port {
        /// The TCP port.
        port: u16,
        /// The NQNs that were linked to it.
        subsystems: Vec<String>,
    },
}

/// The faults in force on one agent.
pub struct Faults {
    target: Arc<Serial>,
    address: Ipv4Addr,
    /// The agent's discovery and I/O ports.
    ports: [u16; 2],
    path: PathBuf,
    pending: Mutex<Vec<Pending>>,
    wake: Notify,
}

impl Faults {
    /// The faults recorded in `path` (none if it is missing, from another
    /// boot, or unreadable, which is logged).
    pub fn open(target: Arc<Serial>, address: Ipv4Addr, ports: [u16; 2], path: PathBuf) -> Self {
        let pending = load(&path);
        if !pending.is_empty() {
            info!(
                "{} fault(s) from before the restart are still in force: {}",
                pending.len(),
                pending
                    .iter()
                    .map(|p| describe(&p.fault, address))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Self {
            target,
            address,
            ports,
            path,
            pending: Mutex::new(pending),
            wake: Notify::new(),
        }
    }

    /// The faults in force, with the time left until each is restored.
    pub fn list(&self) -> Vec<pb::Fault> {
        let now = now_ms();
        self.lock()
            .iter()
            .map(|p| self.to_proto(&p.fault, p.until_ms.saturating_sub(now)))
            .collect()
    }

    /// Takes the interface carrying the agent's address down for
    /// `seconds`, starting [`LINK_DOWN_DELAY`] from now.
    pub async fn link_down(self: &Arc<Self>, seconds: u32) -> Result<pb::Fault, ControlError> {
        check_seconds(seconds)?;
        let interface = link::interface_of(self.address)?;
        let fault = Fault::Link {
            interface: interface.clone(),
        };
        let outage = Duration::from_secs(seconds.into());
        let total = LINK_DOWN_DELAY + outage;
        self.add(fault.clone(), total)?;
        self.wake.notify_one();
        let this = Arc::clone(self);
        let downed = fault.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LINK_DOWN_DELAY).await;
            if let Err(e) = link::set(&interface, false).await {
                // It stays recorded: restoring sets up a link that is up.
                return error!("LinkDown: {e}");
            }
            // The outage counts from when the link is down (`ip` takes a
            // while on a slow machine); if the fault was restored meanwhile
            // (the agent is stopping), undo at once.
            if this.reschedule(&downed, outage) {
                info!("link {interface} is down for {seconds}s");
            } else if let Err(e) = link::set(&interface, true).await {
                error!("could not set link {interface} up again: {e}");
            }
            this.wake.notify_one();
        });
        Ok(self.to_proto(&fault, duration_ms(total)))
    }

    /// Unlinks every subsystem from TCP port `port` for `seconds`.
    pub async fn port_down(
        self: &Arc<Self>,
        port: u32,
        seconds: u32,
    ) -> Result<pb::Fault, ControlError> {
        check_seconds(seconds)?;
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(ControlError::PortRange(port))?;
        if !self.ports.contains(&port) {
            return Err(ControlError::UnknownPort {
                port,
                address: self.address,
                discovery: self.ports[0],
                io: self.ports[1],
            });
        }
        let total = Duration::from_secs(seconds.into());
        let this = Arc::clone(self);
        let fault = self
            .under_lock(&format!("PortDown({port}, {seconds})"), move |target| {
                this.unlink_port(target, port, total)
            })
            .await??;
        info!("{} for {seconds}s", describe(&fault, self.address));
        self.wake.notify_one();
        Ok(self.to_proto(&fault, duration_ms(total)))
    }

    fn unlink_port(
        &self,
        target: &mut BdevTable,
        port: u16,
        total: Duration,
    ) -> Result<Fault, ControlError> {
        let nvmet = target.nvmet();
        let idle = || ControlError::PortIdle {
            port,
            address: self.address,
        };
        self.check_free(&Fault::Port {
            port,
            subsystems: Vec::new(),
        })?;
        let dir = nvmet.find_port(port)?.ok_or_else(idle)?;
        let subsystems = nvmet.port_subsystems(&dir)?;
        if subsystems.is_empty() {
            return Err(idle());
        }
        let fault = Fault::Port {
            port,
            subsystems: subsystems.clone(),
        };
        self.add(fault.clone(), total)?;
        for (done, nqn) in subsystems.iter().enumerate() {
            if let Err(e) = nvmet.unlink_subsystem(&dir, nqn) {
                for back in &subsystems[..done] {
                    if let Err(e) = nvmet.link_subsystem(&dir, back) {
                        error!(
                            "PortDown failed and could not link {back} to port {port} again: {e}"
                        );
                    }
                }
                self.remove(&fault);
                return Err(e.into());
            }
        }
        Ok(fault)
    }

    /// Imposes again, at start, the faults still in force: a restarted
    /// agent completes its shares, which relinks a downed port, and a link
    /// may have been restored by hand.
    pub async fn resume(self: &Arc<Self>) {
        let now = now_ms();
        let live: Vec<Fault> = self
            .lock()
            .iter()
            .filter(|p| p.until_ms > now)
            .map(|p| p.fault.clone())
            .collect();
        for fault in live {
            let result = match &fault {
                Fault::Link { interface } => link::set(interface, false).await,
                Fault::Port { port, subsystems } => {
                    let (port, subsystems) = (*port, subsystems.clone());
                    let what = format!("imposing again: {}", describe(&fault, self.address));
                    self.under_lock(&what, move |target| {
                        let nvmet = target.nvmet();
                        let Some(dir) = nvmet.find_port(port)? else {
                            return Ok(());
                        };
                        let linked = nvmet.port_subsystems(&dir)?;
                        for nqn in subsystems.iter().filter(|n| linked.contains(n)) {
                            nvmet.unlink_subsystem(&dir, nqn)?;
                        }
                        Ok(())
                    })
                    .await
                    .and_then(|r| r)
                }
            };
            match result {
                Ok(()) => info!("{} again after the restart", describe(&fault, self.address)),
                Err(e) => warn!(
                    "could not impose {} again: {e}",
                    describe(&fault, self.address)
                ),
            }
        }
    }

    /// Restores each fault at its deadline; runs until dropped.
    pub async fn restore_when_due(self: Arc<Self>) {
        loop {
            let next = self.lock().iter().map(|p| p.until_ms).min();
            let wait = match next {
                Some(until) => Duration::from_millis(until.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
            let now = now_ms();
            let due = self.take(|p| p.until_ms <= now);
            for p in due {
                self.restore(p).await;
            }
        }
    }

    /// Restores every fault now (the agent is stopping).
    pub async fn restore_all(&self) {
        for p in self.take(|_| true) {
            self.restore(Pending {
                attempts: RETRY.1,
                ..p
            })
            .await;
        }
    }

    async fn restore(&self, mut p: Pending) {
        let what = describe(&p.fault, self.address);
        let result = match &p.fault {
            Fault::Link { interface } => link::set(interface, true).await,
            Fault::Port { port, subsystems } => {
                let (port, subsystems) = (*port, subsystems.clone());
                let doing = format!("restoring: {what}");
                self.under_lock(&doing, move |target| relink(target, port, &subsystems))
                    .await
                    .and_then(|r| r)
            }
        };
        match result {
            Ok(()) => info!("restored: {what}"),
            Err(e) if p.attempts + 1 < RETRY.1 => {
                warn!("could not restore {what} ({e}); trying again");
                p.attempts += 1;
                p.until_ms = now_ms() + duration_ms(RETRY.0);
                self.lock().push(p);
                self.save_or_log();
            }
            Err(e) => error!("could not restore {what}: {e}; giving up"),
        }
    }

    /// Records `fault` as in force for `total`, refusing a second fault on
    /// the same thing.
    fn add(&self, fault: Fault, total: Duration) -> Result<(), ControlError> {
        let now = now_ms();
        let mut pending = self.lock();
        in_force(&pending, &fault, self.address)?;
        pending.push(Pending {
            fault,
            until_ms: now + duration_ms(total),
            attempts: 0,
        });
        let result = save(&self.path, &pending);
        if result.is_err() {
            pending.pop();
        }
        result
    }

    /// Makes `fault`, if still in force, end `left` from now; returns
    /// whether it was in force.
    fn reschedule(&self, fault: &Fault, left: Duration) -> bool {
        let found = {
            let mut pending = self.lock();
            let found = pending.iter_mut().find(|p| &p.fault == fault);
            found
                .map(|p| p.until_ms = now_ms() + duration_ms(left))
                .is_some()
        };
        if found {
            self.save_or_log();
        }
        found
    }

    /// Fails if a fault on the same thing as `fault` is in force.
    fn check_free(&self, fault: &Fault) -> Result<(), ControlError> {
        in_force(&self.lock(), fault, self.address)
    }

    fn remove(&self, fault: &Fault) {
        self.lock().retain(|p| &p.fault != fault);
        self.save_or_log();
    }

    /// Removes and returns the faults that `pick` selects.
    fn take(&self, pick: impl Fn(&Pending) -> bool) -> Vec<Pending> {
        let taken = {
            let mut pending = self.lock();
            let (taken, kept) = pending.drain(..).partition(|p| pick(p));
            *pending = kept;
            taken
        };
        self.save_or_log();
        taken
    }

    fn save_or_log(&self) {
        if let Err(e) = save(&self.path, &self.lock()) {
            error!("{e}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn under_lock<T, F>(&self, what: &str, f: F) -> Result<T, ControlError>
    where
        T: Send + 'static,
        F: FnOnce(&mut BdevTable) -> T + Send + 'static,
    {
        Ok(self.target.run(what, f).await?)
    }

    fn to_proto(&self, fault: &Fault, left_ms: u64) -> pb::Fault {
        let (kind, target, subsystems) = match fault {
            Fault::Link { interface } => ("link", interface.clone(), Vec::new()),
            Fault::Port { port, subsystems } => (
                "port",
                format!("{}:{port}", self.address),
                subsystems.clone(),
            ),
        };
        pb::Fault {
            kind: kind.into(),
            target,
            subsystems,
            restored_in_ms: left_ms,
        }
    }
}

/// Links `subsystems` to port `port` again (those that still exist), and
/// removes the port if none does.
fn relink(target: &mut BdevTable, port: u16, subsystems: &[String]) -> Result<(), ControlError> {
    let nvmet = target.nvmet();
    let Some(dir) = nvmet.find_port(port)? else {
        warn!("port {port} is gone from configfs; nothing to link again");
        return Ok(());
    };
    for nqn in subsystems {
        if !nvmet.link_subsystem(&dir, nqn)? {
            info!("subsystem {nqn} was removed while port {port} was down");
        }
    }
    nvmet.remove_port_if_unused(&dir)?;
    Ok(())
}

fn check_seconds(seconds: u32) -> Result<(), ControlError> {
    if (1..=MAX_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(ControlError::Seconds(seconds))
    }
}

/// Fails if a fault of `pending` takes away what `fault` would.
fn in_force(pending: &[Pending], fault: &Fault, address: Ipv4Addr) -> Result<(), ControlError> {
    match pending.iter().find(|p| same_thing(&p.fault, fault)) {
        Some(p) => Err(ControlError::AlreadyDown {
            what: describe(&p.fault, address),
            left: Duration::from_millis(p.until_ms.saturating_sub(now_ms())),
        }),
        None => Ok(()),
    }
}

/// Whether two faults take away the same thing.
fn same_thing(a: &Fault, b: &Fault) -> bool {
    match (a, b) {
        (Fault::Link { .. }, Fault::Link { .. }) => true,
        (Fault::Port { port: x, .. }, Fault::Port { port: y, .. }) => x == y,
        _ => false,
    }
}

fn describe(fault: &Fault, address: Ipv4Addr) -> String {
    match fault {
        Fault::Link { interface } => format!("link {interface} down"),
        Fault::Port { port, subsystems } => format!(
            "port {address}:{port} unlinked from {}",
            subsystems.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_sameness() {
        assert!(check_seconds(0).is_err());
        assert!(check_seconds(1).is_ok());
        assert!(check_seconds(MAX_SECONDS).is_ok());
        assert!(check_seconds(MAX_SECONDS + 1).is_err());
        let port = |port| Fault::Port {
            port,
            subsystems: vec![],
        };
        assert!(same_thing(&port(8430), &port(8430)));
        assert!(!same_thing(&port(8430), &port(8420)));
        let link = Fault::Link {
            interface: "eth1".into(),
        };
        assert!(!same_thing(&link, &port(8430)));
    }
}
