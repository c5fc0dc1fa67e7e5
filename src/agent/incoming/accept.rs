//! Accepting from one or more listeners, backing off when accept fails.

use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

/// The back-off after a failed accept: the first wait and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// How often at most the cap or accept errors are logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Accepts from several listeners in turn, backing off on errors.
pub(super) struct Accept<'a> {
    listeners: &'a [TcpListener],
    /// The listener polled first next time, so that none starves another.
    turn: usize,
    backoff: Duration,
    /// When the current run of errors began, and how many it has had.
    failing: Option<(Instant, u64)>,
    warned: Option<Instant>,
}

impl<'a> Accept<'a> {
    pub(super) fn new(listeners: &'a [TcpListener]) -> Self {
        Self {
            listeners,
            turn: 0,
            backoff: BACKOFF.0,
            failing: None,
            warned: None,
        }
    }

    /// The next connection; never fails, waits out errors.
    pub(super) async fn next(&mut self) -> (TcpStream, SocketAddr) {
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
pub(super) fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited() {
        let mut last = None;
        assert!(due(&mut last));
        assert!(!due(&mut last));
        last = Some(Instant::now() - WARN_EVERY);
        assert!(due(&mut last));
    }
}
