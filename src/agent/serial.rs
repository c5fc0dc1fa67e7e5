//! The [`BdevTable`], one request at a time, each within a deadline, with no
//! thread held by the requests that wait.
//!
//! A configfs operation blocks in the kernel, so each request's work runs
//! on a blocking thread. The target's lock is an async mutex taken before
//! that thread is started: a request that waits for an earlier one waits
//! as a future, not as a parked thread. A configfs operation stuck in the
//! kernel so holds one thread, and the requests after it hold none, however
//! many there are.
//!
//! A request ends in one of these ways (the gRPC code both services give
//! it is [`Stuck::code`]):
//! - its work finished within the deadline: its result;
//! - its work is still running at the deadline: [`Stuck::Timeout`]
//!   (`DEADLINE_EXCEEDED`); the work goes on in the background and keeps
//!   the lock until it ends, since a thread blocked in the kernel cannot be
//!   interrupted;
//! - it could not have the lock within the deadline, or the request that
//!   holds it is already past its own deadline (stuck: waiting would be
//!   in vain): [`Stuck::Busy`] (`UNAVAILABLE`, which clients retry),
//!   naming that request and for how long it has run;
//! - its work panicked: [`Stuck::Crashed`] (`INTERNAL`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;
use tonic::Code;

use super::bdevs::BdevTable;

/// How long one request may take, waiting for earlier ones included,
/// unless [`Serial::set_deadline`] says otherwise.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Why [`Serial::run`] has no result. Its text follows the request's name
/// (`Share("m0", ...) did not finish within 30s: ...`).
#[derive(Debug, thiserror::Error)]
pub enum Stuck {
    /// The work panicked.
    #[error("crashed in the agent: {0}")]
    Crashed(tokio::task::JoinError),
    /// The work did not finish within the deadline (it goes on).
    #[error("did not finish within {}s: the kernel may be stuck in a configfs operation (see dmesg and the agent's log); it goes on in the background", .deadline.as_secs())]
    Timeout {
        /// The deadline.
        deadline: Duration,
    },
    /// An earlier request held the target for the whole deadline, or is
    /// past its own; this one was not started.
    #[error("was not started: the agent is busy with {holder}, which has been running for {}s{}; try again later", .running.as_secs(), stuck_note(.stuck))]
    Busy {
        /// The request holding the target, as logged (or "earlier
        /// requests" when this one waited behind several).
        holder: String,
        /// How long it has been running.
        running: Duration,
        /// Whether it is past its deadline.
        stuck: bool,
    },
}

fn stuck_note(stuck: &bool) -> &'static str {
    if *stuck {
        ", past its deadline: it is stuck in the kernel (see dmesg)"
    } else {
        ""
    }
}

impl Stuck {
    /// The gRPC status code it travels as.
    pub fn code(&self) -> Code {
        match self {
            Self::Crashed(_) => Code::Internal,
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::Busy { .. } => Code::Unavailable,
        }
    }
}

/// What holds the target now.
struct Holder {
    what: String,
    since: Instant,
}

/// The target, shared by the gRPC services; see the module documentation.
pub struct Serial {
    target: Arc<tokio::sync::Mutex<BdevTable>>,
    holder: Arc<Mutex<Option<Holder>>>,
    /// In milliseconds; atomic so that a test can shorten it on an agent
    /// whose services already share this.
    deadline_ms: AtomicU64,
}

/// The target's lock on a blocking thread; forgets its holder before the
/// lock is released (fields drop after `drop`), also when the work panics.
struct Held {
    holder: Arc<Mutex<Option<Holder>>>,
    target: OwnedMutexGuard<BdevTable>,
}

impl Drop for Held {
    fn drop(&mut self) {
        *lock(&self.holder) = None;
    }
}

fn lock(holder: &Mutex<Option<Holder>>) -> std::sync::MutexGuard<'_, Option<Holder>> {
    holder.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Serial {
    /// Serves `target`, each request within `deadline`.
    pub fn new(target: BdevTable, deadline: Duration) -> Self {
        let serial = Self {
            target: Arc::new(tokio::sync::Mutex::new(target)),
            holder: Arc::new(Mutex::new(None)),
            deadline_ms: AtomicU64::new(0),
        };
        serial.set_deadline(deadline);
        serial
    }

    /// Changes the deadline of the requests from now on.
    pub fn set_deadline(&self, deadline: Duration) {
        let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self.deadline_ms.store(ms, Ordering::Relaxed);
    }

    /// The deadline of each request.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms.load(Ordering::Relaxed))
    }

    /// Runs `f` (the request `what`, as logged) on the target under its
    /// lock on a blocking thread, within the deadline; see the module
    /// documentation.
    pub async fn run<T, F>(&self, what: &str, f: F) -> Result<T, Stuck>
    where
        T: Send + 'static,
        F: FnOnce(&mut BdevTable) -> T + Send + 'static,
    {
        let deadline = self.deadline();
        let started = Instant::now();
        if let Some(busy) = self.busy(deadline, true) {
            return Err(busy);
        }
        let waiting = Arc::clone(&self.target).lock_owned();
        let in_line = || Stuck::Busy {
            holder: "earlier requests".into(),
            running: started.elapsed(),
            stuck: false,
        };
        let Ok(target) = tokio::time::timeout(deadline, waiting).await else {
            return Err(self.busy(deadline, false).unwrap_or_else(in_line));
        };
        // Work that could not be waited for is not started.
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(in_line());
        }
        *lock(&self.holder) = Some(Holder {
            what: what.to_string(),
            since: Instant::now(),
        });
        let held = Held {
            holder: Arc::clone(&self.holder),
            target,
        };
        let job = tokio::task::spawn_blocking(move || {
            let mut held = held;
            f(&mut held.target)
        });
        match tokio::time::timeout(left, job).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(join)) => Err(Stuck::Crashed(join)),
            Err(_) => Err(Stuck::Timeout { deadline }),
        }
    }

    /// [`Stuck::Busy`] for the request holding the target, if one does
    /// (and, with `only_stuck`, only if it is past the deadline).
    fn busy(&self, deadline: Duration, only_stuck: bool) -> Option<Stuck> {
        let holder = lock(&self.holder);
        let h = holder.as_ref()?;
        let running = h.since.elapsed();
        let stuck = running >= deadline;
        (stuck || !only_stuck).then(|| Stuck::Busy {
            holder: h.what.clone(),
            running,
            stuck,
        })
    }
}
