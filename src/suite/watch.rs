//! Watching a subsystem's I/O on the host while fio runs and a fault
//! strikes: how many I/Os its namespaces completed, the longest time none
//! did (the stall), and each controller's state as it changes.
//!
//! It samples sysfs every [`SAMPLE`]: for each controller of the
//! subsystem, its `state` and the I/Os its namespace disks completed
//! ([`Sysfs::completed_ios`]). Per-path disks count the I/O of their path,
//! so the sum is the subsystem's, whichever path carried it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::nvme::sysfs::Sysfs;
use crate::nvme::NvmeError;
use crate::suite::CheckError;

/// How often sysfs is read.
const SAMPLE: Duration = Duration::from_millis(100);

/// What the watch saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// I/Os completed since the watch started.
    pub completed: u64,
    /// The longest time between two samples that saw I/O complete.
    pub longest_stall: Duration,
    /// Each controller's state changes: (time since start, controller,
    /// state), `gone` when it disappeared.
    pub changes: Vec<(Duration, String, String)>,
    /// The controllers of the subsystem and their states, now.
    pub states: BTreeMap<String, String>,
    sampled: bool,
    last_count: u64,
    last_progress: Option<Instant>,
    started: Instant,
}

impl Seen {
    fn new() -> Self {
        Self {
            completed: 0,
            longest_stall: Duration::ZERO,
            changes: Vec::new(),
            states: BTreeMap::new(),
            sampled: false,
            last_count: 0,
            last_progress: None,
            started: Instant::now(),
        }
    }

    /// Takes one sample: the summed counters and the controllers' states.
    /// The sum drops when a controller goes (its disks' counters go with
    /// it); only rises count, as completed I/O and as progress.
    fn record(&mut self, count: u64, states: BTreeMap<String, String>, at: Instant) {
        if self.sampled && count > self.last_count {
            self.completed += count - self.last_count;
            if let Some(before) = self.last_progress {
                self.longest_stall = self.longest_stall.max(at - before);
            }
            self.last_progress = Some(at);
        }
        self.sampled = true;
        self.last_count = count;
        let since = at - self.started;
        for (ctrl, state) in &states {
            if self.states.get(ctrl) != Some(state) {
                self.changes.push((since, ctrl.clone(), state.clone()));
            }
        }
        for ctrl in self.states.keys().filter(|c| !states.contains_key(*c)) {
            self.changes.push((since, ctrl.clone(), "gone".into()));
        }
        self.states = states;
    }

    /// Whether every controller is `live` and there are `n` of them.
    pub fn all_live(&self, n: usize) -> bool {
        self.states.len() == n && self.states.values().all(|s| s == "live")
    }

    /// Whether `ctrl` was seen in a state other than `live` (or gone).
    pub fn left_live(&self, ctrl: &str) -> bool {
        self.changes
            .iter()
            .any(|(_, c, s)| c == ctrl && s != "live")
    }

    /// The state changes after the first sample, as text for a note.
    pub fn describe_changes(&self) -> String {
        let first = self.changes.first().map_or(Duration::ZERO, |c| c.0);
        let shown: Vec<String> = self
            .changes
            .iter()
            .filter(|(t, _, _)| *t > first)
            .map(|(t, c, s)| format!("{c} {s} at {:.1} s", t.as_secs_f64()))
            .collect();
        if shown.is_empty() {
            "controllers stayed live".into()
        } else {
            shown.join(", ")
        }
    }
}

/// A running watch, cheap to clone; it stops when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct IoWatch {
    seen: Arc<Mutex<Seen>>,
    _task: Arc<Sampler>,
}

/// The sampling task, stopped when dropped.
struct Sampler(tokio::task::JoinHandle<()>);

impl Drop for Sampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl IoWatch {
    /// Starts watching the controllers of subsystem `nqn`.
    pub fn start(nqn: &str) -> Self {
        let seen = Arc::new(Mutex::new(Seen::new()));
        let (nqn, shared) = (nqn.to_string(), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            loop {
                let nqn = nqn.clone();
                // sysfs reads can block on a wedged driver: off the runtime,
                // and a sample that does not come back is simply missed.
                let read = tokio::task::spawn_blocking(move || sample(&Sysfs::host(), &nqn));
                if let Ok(Ok(Ok((count, states)))) = tokio::time::timeout(SAMPLE * 10, read).await {
                    lock(&shared).record(count, states, Instant::now());
                }
                tokio::time::sleep(SAMPLE).await;
            }
        });
        Self {
            seen,
            _task: Arc::new(Sampler(task)),
        }
    }

    /// What the watch saw so far.
    pub fn seen(&self) -> Seen {
        lock(&self.seen).clone()
    }

    /// Waits until `cond` holds of what was seen, for at most `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Seen) -> bool,
    ) -> Result<Seen, CheckError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.seen();
            if cond(&seen) {
                return Ok(seen);
            }
            if Instant::now() >= deadline {
                return Err(CheckError::Failed(format!(
                    "{what} did not happen within {}s; seen: {} I/Os completed, controllers {:?}, \
                     changes: {}",
                    timeout.as_secs_f64(),
                    seen.completed,
                    seen.states,
                    seen.describe_changes()
                )));
            }
            tokio::time::sleep(SAMPLE).await;
        }
    }

    /// Waits until `ios` more I/Os completed than when the watch started:
    /// fio is past its start-up and into its workload.
    pub async fn wait_for_io(&self, ios: u64, timeout: Duration) -> Result<Seen, CheckError> {
        self.wait_for(&format!("{ios} I/Os completing"), timeout, |s| {
            s.completed >= ios
        })
        .await
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One sample: the completed I/Os of the subsystem's namespace disks,
/// summed, and its controllers' states.
fn sample(sys: &Sysfs, nqn: &str) -> Result<(u64, BTreeMap<String, String>), NvmeError> {
    let mut count = 0;
    let mut states = BTreeMap::new();
    for controller in sys.controllers(nqn)? {
        count += sys.completed_ios(&controller)?;
        let state = sys.controller_state(&controller);
        states.insert(controller, state);
    }
    Ok((count, states))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::sysfs::fake::{FakeSysfs, NQN};

    #[test]
    fn sums_the_paths_of_the_subsystem_only() {
        let tree = FakeSysfs::new();
        tree.controller("nvme0", NQN);
        tree.controller("nvme1", NQN);
        tree.state("nvme1", "connecting");
        tree.controller("nvme2", "nqn.other");
        tree.stat("nvme0", "nvme0c0n1", 10, 5);
        tree.stat("nvme1", "nvme0c1n1", 1, 2);
        tree.stat("nvme2", "nvme2n1", 100, 100);
        let (count, states) = sample(&tree.sysfs(), NQN).unwrap();
        assert_eq!(count, 18);
        assert_eq!(
            states.into_iter().collect::<Vec<_>>(),
            [
                ("nvme0".to_string(), "live".to_string()),
                ("nvme1".to_string(), "connecting".to_string())
            ]
        );
    }

    #[test]
    fn the_stall_is_the_longest_gap_between_progress() {
        let mut seen = Seen::new();
        let t0 = seen.started;
        let states = |s: &str| BTreeMap::from([("nvme0".to_string(), s.to_string())]);
        let at = |ms| t0 + Duration::from_millis(ms);
        seen.record(100, states("live"), at(0));
        seen.record(150, states("live"), at(100));
        seen.record(150, states("connecting"), at(200));
        seen.record(150, states("connecting"), at(2100));
        seen.record(160, states("live"), at(2200));
        seen.record(200, states("live"), at(2300));
        assert_eq!(seen.completed, 100);
        assert_eq!(seen.longest_stall, Duration::from_millis(2100));
        // A controller that goes takes its counters along: not a loss of
        // completed I/O, and not progress.
        seen.record(20, states("live"), at(2350));
        seen.record(30, states("live"), at(2360));
        assert_eq!(seen.completed, 110);
        assert_eq!(seen.longest_stall, Duration::from_millis(2100));
        assert!(seen.all_live(1) && !seen.all_live(2));
        assert!(seen.left_live("nvme0"));
        assert!(!seen.left_live("nvme1"));
        assert_eq!(
            seen.describe_changes(),
            "nvme0 connecting at 0.2 s, nvme0 live at 2.2 s"
        );
        seen.record(0, BTreeMap::new(), at(2400));
        assert_eq!(seen.completed, 110);
        assert!(seen.describe_changes().ends_with("nvme0 gone at 2.4 s"));
    }
}
