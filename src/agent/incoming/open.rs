//! The connections being served: their number within the cap, and how
//! busy each is, to close the one idle the longest when the cap is reached
//! and each once it has been idle too long.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

// The tokio clock for idle times, which tests can pause.
use tokio::time::Instant as Clock;

use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use super::accept::due;
use super::CLOSE_GRACE;

/// The connections being served: one permit of `slots` each, and how busy
/// each is, to pick one to close at the cap.
pub(super) struct Open {
    cap: usize,
    slots: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    warned: Mutex<Option<Instant>>,
}

/// A connection's place among the [`Open`] ones, given up when dropped.
pub(super) struct Slot {
    id: u64,
    pub(super) activity: Arc<Activity>,
    open: Arc<Open>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.conns().remove(&self.id);
    }
}

impl Open {
    pub(super) fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            cap,
            slots: Arc::new(Semaphore::new(cap)),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            warned: Mutex::new(None),
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, or one made by closing the
    /// connection idle the longest; or, with none idle, the first freed.
    pub(super) async fn room(self: &Arc<Self>) -> Slot {
        let permit = loop {
            if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                break permit;
            }
            let evicted = self.close_longest_idle();
            if due(&mut self.warned.lock().unwrap_or_else(PoisonError::into_inner)) {
                warn!(
                    "{} gRPC connections are open, the most allowed: {}",
                    self.cap,
                    if evicted {
                        "closing the longest idle ones to make room"
                    } else {
                        "new ones wait until one closes"
                    }
                );
            }
            // The closed one frees its slot within moments; with none
            // idle, one may become idle meanwhile, so look again shortly.
            let wait = Arc::clone(&self.slots).acquire_owned();
            if let Ok(Ok(permit)) = tokio::time::timeout(CLOSE_GRACE, wait).await {
                break permit;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        self.conns().insert(id, Arc::clone(&activity));
        Slot {
            id,
            activity,
            open: Arc::clone(self),
            _permit: permit,
        }
    }

    /// Asks the connection idle the longest, if any, to close.
    fn close_longest_idle(&self) -> bool {
        let conns = self.conns();
        let longest = conns
            .values()
            .filter(|a| !a.closing.load(Ordering::Relaxed))
            .filter_map(|a| a.idle_since().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, activity)) => {
                activity.closing.store(true, Ordering::Relaxed);
                activity.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Waits until every connection has closed.
    pub(super) async fn all_closed(&self) {
        let cap = u32::try_from(self.cap).unwrap_or(u32::MAX);
        let _all = self.slots.acquire_many(cap).await;
    }
}

/// How many requests a connection has in flight, since when none, and
/// whether it ever had one.
#[derive(Debug, Clone, Copy)]
struct Load {
    in_flight: usize,
    since: Clock,
    used: bool,
}

/// A connection's load, and the request to close it at the cap.
pub(super) struct Activity {
    load: watch::Sender<Load>,
    close: Notify,
    closing: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            load: watch::Sender::new(Load {
                in_flight: 0,
                since: Clock::now(),
                used: false,
            }),
            close: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// Whether the connection has carried a request.
    pub(super) fn used(&self) -> bool {
        self.load.borrow().used
    }

    /// Completes once the connection is to close to make room.
    pub(super) async fn asked_to_close(&self) {
        self.close.notified().await;
    }

    /// When the connection last became idle, if it is.
    pub(super) fn idle_since(&self) -> Option<Clock> {
        let load = *self.load.borrow();
        (load.in_flight == 0).then_some(load.since)
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.load.send_modify(|l| {
            l.in_flight += 1;
            l.used = true;
        });
        InFlight(Arc::clone(self))
    }

    /// Completes once the connection has been idle for `timeout`.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        let mut load = self.load.subscribe();
        loop {
            let now = *load.borrow_and_update();
            if now.in_flight == 0 {
                tokio::select! {
                    () = tokio::time::sleep_until(now.since + timeout) => return,
                    _ = load.changed() => {}
                }
            } else if load.changed().await.is_err() {
                // Not while `self` lives; never idle then.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A request in flight on a connection.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.load.send_modify(|l| {
            l.in_flight -= 1;
            l.since = Clock::now();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_means_no_request_in_flight_for_the_timeout() {
        let activity = Arc::new(Activity::new());
        let timeout = Duration::from_secs(20);
        let start = tokio::time::Instant::now();
        let request = activity.begin();
        assert!(activity.used() && activity.idle_since().is_none());
        let idle = activity.idle_for(timeout);
        tokio::pin!(idle);
        tokio::select! {
            () = &mut idle => panic!("idle with a request in flight"),
            () = tokio::time::sleep(timeout * 2) => {}
        }
        drop(request);
        idle.await;
        assert_eq!(start.elapsed(), timeout * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_is_asked_to_close() {
        let open = Arc::new(Open::new(3));
        let oldest = open.room().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = open.room().await;
        let _request = busy.activity.begin();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let newer = open.room().await;
        let fourth = tokio::spawn({
            let open = Arc::clone(&open);
            async move { open.room().await }
        });
        // The oldest, idle, is asked; the busy and the newer are not.
        let asked = |slot: &Slot| {
            let activity = Arc::clone(&slot.activity);
            async move {
                tokio::time::timeout(Duration::from_secs(60), activity.asked_to_close())
                    .await
                    .is_ok()
            }
        };
        assert!(asked(&oldest).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!fourth.is_finished());
        drop(oldest);
        let fourth = fourth.await.unwrap();
        assert!(!asked(&busy).await && !asked(&newer).await && !asked(&fourth).await);
        drop((busy, newer, fourth));
        open.all_closed().await;
    }
}
