//! The agent's gRPC connections: accepted from one or more listeners and
//! served over HTTP/2 within bounds, so that idle or abandoned connections
//! cannot starve a legitimate client of descriptors or a core.
//!
//! - **A cap** ([`Limits::max_connections`]): by default below the open-file
//!   limit, so that descriptors remain for the agent's own work (configfs,
//!   the state file, `ip`). At the cap, the connection idle the longest is
//!   closed to make room for the new one; if none is idle, the new one
//!   waits (in the kernel's backlog) until a connection ends. So a flood of
//!   idle connections cannot lock out a client that has something to ask,
//!   while a connection with a request in flight is never cut.
//! - **Idle timeout** ([`Limits::idle_timeout`]): a connection with no
//!   request in flight for that long is closed. Keepalive PINGs do not
//!   count as activity.
//! - **Keepalive**: HTTP/2 PINGs ([`Limits::keepalive_interval`], dropped
//!   if one goes unanswered for [`Limits::keepalive_timeout`]) and TCP
//!   keepalive find peers that vanished while a request was in flight.
//! - **Accept errors back off**: a listener that fails to accept (`EMFILE`:
//!   out of descriptors) stays readable, and retrying at once would spin a
//!   core; the agent waits 10 ms, doubling to 1 s, and logs the error.
//!
//! A connection that has carried requests is closed gracefully (HTTP/2
//! GOAWAY; requests in flight finish), and dropped if it has not closed
//! [`CLOSE_GRACE`] later with none in flight (a peer that ignores the
//! GOAWAY). One that never carried a request is dropped at once: no client
//! can lose anything there, and a peer that never even finished the
//! handshake would never close.
//!
//! tonic's own server has no idle timeout, retries a failed accept at once
//! and gives no handle on single connections, so the agent serves tonic's
//! [`Routes`] on hyper's HTTP/2 connections itself.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tonic::service::Routes;
use tracing::{debug, info, warn};

/// The most connections served at once, whatever the open-file limit.
pub const MAX_CONNECTIONS: usize = 256;

/// Descriptors kept for the agent's own work when the cap is derived from
/// the open-file limit.
const RESERVED_FDS: u64 = 64;

/// How long a closing connection with no request in flight may take to
/// close before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Concurrent requests (HTTP/2 streams) per connection: requests run one
/// at a time anyway, so more would only hold memory.
const MAX_STREAMS: u32 = 32;

/// TCP keepalive: first probe after this much silence, then every
/// [`TCP_KEEPALIVE_INTERVAL`], [`TCP_KEEPALIVE_PROBES`] times.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_PROBES: u32 = 3;

/// The back-off after a failed accept: the first wait and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// How often at most the cap or accept errors are logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Bounds on the agent's gRPC connections; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 PING is sent.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
}

impl Default for Limits {
    /// A cap from this process's open-file limit ([`connection_cap`]), a
    /// 20 s idle timeout, a PING every 10 s answered within 10 s.
    fn default() -> Self {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        Self {
            max_connections: connection_cap(nofile),
            idle_timeout: Duration::from_secs(20),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// The cap for an open-file limit of `nofile`: [`MAX_CONNECTIONS`], or
/// fewer so that [`RESERVED_FDS`] descriptors (or half of them, with a
/// small limit) remain for the agent's own work; at least 1.
pub fn connection_cap(nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_FDS).max(nofile / 2).max(1);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(MAX_CONNECTIONS)
}

/// Serves `routes` on connections from `listeners` within `limits` until
/// `shutdown` completes; then stops accepting (the listeners are closed),
/// closes every connection gracefully and returns once all are closed.
pub async fn serve(
    listeners: Vec<TcpListener>,
    routes: Routes,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Open::new(limits.max_connections));
    let (stop_tx, stop) = watch::channel(false);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .max_concurrent_streams(MAX_STREAMS);
    let hyper_routes = TowerToHyperService::new(routes);
    let accepting = async {
        let mut accept = Accept::new(&listeners);
        loop {
            let (stream, peer) = accept.next().await;
            let slot = open.room().await;
            configure(&stream);
            let conn = Connection {
                stream,
                peer,
                slot,
                idle_timeout: limits.idle_timeout,
                stop: stop.clone(),
            };
            tokio::spawn(conn.serve(http2.clone(), hyper_routes.clone()));
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = accepting => {}
    }
    drop(listeners);
    let _ = stop_tx.send(true);
    open.all_closed().await;
}

/// Sets TCP keepalive and no delay on an accepted connection; a failure
/// only costs that.
fn configure(stream: &TcpStream) {
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let set = setsockopt(stream, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepIdle, &secs(TCP_KEEPALIVE_IDLE)))
        .and_then(|()| {
            setsockopt(
                stream,
                sockopt::TcpKeepInterval,
                &secs(TCP_KEEPALIVE_INTERVAL),
            )
        })
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepCount, &TCP_KEEPALIVE_PROBES));
    if let Err(e) = set {
        debug!("cannot set TCP keepalive on a gRPC connection: {e}");
    }
    // Requests are small; waiting to fill a segment only adds latency.
    if let Err(e) = stream.set_nodelay(true) {
        debug!("cannot set TCP_NODELAY on a gRPC connection: {e}");
    }
}

/// Accepts from several listeners in turn, backing off on errors.
struct Accept<'a> {
    listeners: &'a [TcpListener],
    /// The listener polled first next time, so that none starves another.
    turn: usize,
    backoff: Duration,
    /// When the current run of errors began, and how many it has had.
    failing: Option<(Instant, u64)>,
    warned: Option<Instant>,
}

impl<'a> Accept<'a> {
    fn new(listeners: &'a [TcpListener]) -> Self {
        Self {
            listeners,
            turn: 0,
            backoff: BACKOFF.0,
            failing: None,
            warned: None,
        }
    }

    /// The next connection; never fails, waits out errors.
    async fn next(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.poll_listeners().await {
                Ok(accepted) => {
                    if let Some((since, errors)) = self.failing.take() {
                        info!(
                            "accepting gRPC connections again after {errors} failed accept(s) over {:.1}s",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    self.backoff = BACKOFF.0;
                    return accepted;
                }
                // The peer gave up before we took it: nothing is wrong here.
                Err(e) if per_connection(&e) => debug!("a gRPC connection was lost in accept: {e}"),
                Err(e) => {
                    let (_, errors) = self.failing.get_or_insert((Instant::now(), 0));
                    *errors += 1;
                    if due(&mut self.warned) {
                        warn!(
                            "cannot accept gRPC connections: {e}; retrying with back-off up to {}s (is the open-file limit, ulimit -n, too low?)",
                            BACKOFF.1.as_secs()
                        );
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }

    async fn poll_listeners(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| {
            let n = self.listeners.len();
            for i in 0..n {
                let k = (self.turn + i) % n;
                if let Poll::Ready(result) = self.listeners[k].poll_accept(cx) {
                    self.turn = k + 1;
                    return Poll::Ready(result);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// Errors that concern one connection, not the listener.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Whether a rate-limited warning last given at `last` is due again; if so,
/// records that it is given now.
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// The connections being served: one permit of `slots` each, and how busy
/// each is, to pick one to close at the cap.
struct Open {
    cap: usize,
    slots: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    warned: Mutex<Option<Instant>>,
}

/// A connection's place among the [`Open`] ones, given up when dropped.
struct Slot {
    id: u64,
    activity: Arc<Activity>,
    open: Arc<Open>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.conns().remove(&self.id);
    }
}

impl Open {
    fn new(cap: usize) -> Self {
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
    async fn room(self: &Arc<Self>) -> Slot {
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
    async fn all_closed(&self) {
        let cap = u32::try_from(self.cap).unwrap_or(u32::MAX);
        let _all = self.slots.acquire_many(cap).await;
    }
}

/// How many requests a connection has in flight, since when none, and
/// whether it ever had one.
#[derive(Debug, Clone, Copy)]
struct Load {
    in_flight: usize,
    since: Instant,
    used: bool,
}

/// A connection's load, and the request to close it at the cap.
struct Activity {
    load: watch::Sender<Load>,
    close: Notify,
    closing: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            load: watch::Sender::new(Load {
                in_flight: 0,
                since: Instant::now(),
                used: false,
            }),
            close: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// When the connection last became idle, if it is.
    fn idle_since(&self) -> Option<Instant> {
        let load = *self.load.borrow();
        (load.in_flight == 0).then_some(load.since)
    }

    /// Counts a request in flight until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.load.send_modify(|l| {
            l.in_flight += 1;
            l.used = true;
        });
        InFlight(Arc::clone(self))
    }

    /// Completes once the connection has been idle for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        let mut load = self.load.subscribe();
        loop {
            let now = *load.borrow_and_update();
            if now.in_flight == 0 {
                tokio::select! {
                    () = tokio::time::sleep_until((now.since + timeout).into()) => return,
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
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.load.send_modify(|l| {
            l.in_flight -= 1;
            l.since = Instant::now();
        });
    }
}

/// One accepted connection, to be served.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn serve(
        mut self,
        http2: hyper::server::conn::http2::Builder<TokioExecutor>,
        routes: TowerToHyperService<Routes>,
    ) {
        let activity = Arc::clone(&self.slot.activity);
        let counted = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = counted.begin();
            let reply = routes.call(request);
            async move {
                let reply: Result<_, Infallible> = reply.await;
                drop(in_flight);
                reply
            }
        });
        let served = http2.serve_connection(TokioIo::new(self.stream), service);
        tokio::pin!(served);
        let why = tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    debug!("gRPC connection from {} ended: {e}", self.peer);
                }
                return;
            }
            () = activity.idle_for(self.idle_timeout) => "idle",
            () = activity.close.notified() => "at the cap, idle the longest",
            _ = self.stop.wait_for(|stop| *stop) => "the agent is stopping",
        };
        debug!("closing the gRPC connection from {}: {why}", self.peer);
        if !activity.load.borrow().used {
            return;
        }
        served.as_mut().graceful_shutdown();
        loop {
            match tokio::time::timeout(CLOSE_GRACE, served.as_mut()).await {
                Ok(_) => break,
                Err(_) if activity.idle_since().is_some() => {
                    debug!(
                        "dropping the gRPC connection from {}: not closed {}s after GOAWAY",
                        self.peer,
                        CLOSE_GRACE.as_secs()
                    );
                    break;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_agent() {
        assert_eq!(connection_cap(1 << 20), MAX_CONNECTIONS);
        assert_eq!(connection_cap(256), 192);
        assert_eq!(connection_cap(100), 50);
        assert_eq!(connection_cap(1), 1);
        assert_eq!(connection_cap(0), 1);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut last = None;
        assert!(due(&mut last));
        assert!(!due(&mut last));
        last = Some(Instant::now() - WARN_EVERY);
        assert!(due(&mut last));
    }
}
