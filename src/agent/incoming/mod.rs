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

mod accept;
mod open;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::service::Routes;
use tracing::debug;

use accept::Accept;
use open::{Open, Slot};

/// The most connections served at once, whatever the open-file limit.
pub const MAX_CONNECTIONS: usize = 256;

/// Descriptors kept for the agent's own work when the cap is derived from
/// the open-file limit.
const RESERVED_FDS: u64 = 64;

/// How long a closing connection with no request in flight may take to
/// close before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Concurrent requests (HTTP/2 streams) per connection: the least RFC 9113
/// recommends; requests run one at a time anyway, so more would only hold
/// memory.
const MAX_STREAMS: u32 = 100;

/// TCP keepalive: first probe after this much silence, then every
/// [`TCP_KEEPALIVE_INTERVAL`], [`TCP_KEEPALIVE_PROBES`] times.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_PROBES: u32 = 3;

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
    /// A cap from this process's open-file limit (`connection_cap`), a
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
            () = activity.asked_to_close() => "at the cap, idle the longest",
            _ = self.stop.wait_for(|stop| *stop) => "the agent is stopping",
        };
        debug!("closing the gRPC connection from {}: {why}", self.peer);
        if !activity.used() {
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
}
