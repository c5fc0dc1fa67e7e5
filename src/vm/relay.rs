//! A frame relay joining more than two VMs on one network, on the host and
//! without privileges: each member's NIC is a `-netdev stream` client of a
//! unix socket the relay serves, and every frame one member sends goes to
//! all the others (a hub; the guests' NICs drop what is not theirs). Two
//! VMs need none: one serves the other's stream directly.
//!
//! QEMU's stream framing is a 4-byte big-endian length, then the frame.
//! The relay lives in the runner's process: its VMs die with it anyway.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::{io_error, VmError};

/// QEMU's largest frame (`NET_BUFSIZE`: 4 KiB of headroom over 64 KiB); a
/// longer length is not a frame, and ends that member's connection.
const MAX_FRAME: usize = 4096 + 65536;
/// Frames queued for a member that reads slowly; more are dropped, as a
/// switch drops them, rather than stalling the others.
const QUEUE: usize = 256;

/// Each member's queue, with the number of the connection it belongs to.
type Members = Arc<Mutex<Vec<Option<(u64, mpsc::Sender<Vec<u8>>)>>>>;

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    tasks: tokio::task::JoinSet<()>,
}

impl Relay {
    /// Serves one socket per member at `sockets` (which must not exist).
    /// A member that connects again replaces its earlier connection.
    pub fn start(sockets: Vec<PathBuf>) -> Result<Relay, VmError> {
        let members: Members = Arc::new(Mutex::new(vec![None; sockets.len()]));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, path) in sockets.into_iter().enumerate() {
            let listener = UnixListener::bind(&path)
                .map_err(io_error(format!("cannot serve {}", path.display())))?;
            tasks.spawn(serve(i, listener, Arc::clone(&members)));
        }
        Ok(Relay { tasks })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// A task that is stopped when this is dropped, so that stopping the
/// relay (aborting its tasks) stops the tasks they started too.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepts member `me`'s connections, one at a time.
async fn serve(me: usize, listener: UnixListener, members: Members) {
    let mut _current: Option<AbortOnDrop> = None;
    let mut conn = 0;
    while let Ok((stream, _)) = listener.accept().await {
        conn += 1;
        // The earlier connection's task stops as this replaces it.
        _current = Some(AbortOnDrop(tokio::spawn(member(
            me,
            conn,
            stream,
            Arc::clone(&members),
        ))));
    }
}

/// Relays one member's connection: what it sends to the others, what they
/// send to it.
async fn member(me: usize, conn: u64, stream: UnixStream, members: Members) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    {
        let mut m = members.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = m.get_mut(me) {
            *slot = Some((conn, tx));
        }
    }
    let _writer = AbortOnDrop(tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let len = (frame.len() as u32).to_be_bytes();
            if write.write_all(&len).await.is_err() || write.write_all(&frame).await.is_err() {
                break;
            }
        }
    }));
    let _ = forward(me, read, &members).await;
    // Unless a newer connection of the member took the slot already.
    let mut m = members.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(slot) = m.get_mut(me) {
        if slot.as_ref().is_some_and(|(c, _)| *c == conn) {
            *slot = None;
        }
    }
}

/// Reads member `me`'s frames and queues each for every other member,
/// until its connection ends or sends a length that is no frame.
async fn forward(me: usize, mut read: OwnedReadHalf, members: &Members) -> std::io::Result<()> {
    loop {
        let len = read.read_u32().await? as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(std::io::Error::other(format!("a frame of {len} bytes")));
        }
        let mut frame = vec![0; len];
        read.read_exact(&mut frame).await?;
        let others: Vec<mpsc::Sender<Vec<u8>>> = {
            let m = members.lock().unwrap_or_else(PoisonError::into_inner);
            m.iter()
                .enumerate()
                .filter(|(i, _)| *i != me)
                .filter_map(|(_, slot)| slot.as_ref().map(|(_, tx)| tx.clone()))
                .collect()
        };
        for tx in others {
            // Full: that member reads too slowly; the frame is dropped.
            let _ = tx.try_send(frame.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn send(s: &mut UnixStream, frame: &[u8]) {
        s.write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(frame).await.unwrap();
    }

    async fn recv(s: &mut UnixStream) -> Option<Vec<u8>> {
        let got = tokio::time::timeout(Duration::from_millis(300), async {
            let len = s.read_u32().await.ok()? as usize;
            let mut frame = vec![0; len];
            s.read_exact(&mut frame).await.ok()?;
            Some(frame)
        });
        got.await.ok().flatten()
    }

    async fn connected(dir: &std::path::Path, n: usize) -> Vec<UnixStream> {
        let mut streams = Vec::new();
        for i in 0..n {
            streams.push(
                UnixStream::connect(dir.join(format!("{i}.sock")))
                    .await
                    .unwrap(),
            );
        }
        // The relay registers each member once it accepted it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        streams
    }

    fn relay(dir: &std::path::Path, n: usize) -> Relay {
        Relay::start((0..n).map(|i| dir.join(format!("{i}.sock"))).collect()).unwrap()
    }

    #[tokio::test]
    async fn a_frame_reaches_every_other_member_and_not_its_sender() {
        let dir = tempfile::tempdir().unwrap();
        let _relay = relay(dir.path(), 3);
        let mut s = connected(dir.path(), 3).await;
        send(&mut s[0], b"from zero").await;
        assert_eq!(recv(&mut s[1]).await.unwrap(), b"from zero");
        assert_eq!(recv(&mut s[2]).await.unwrap(), b"from zero");
        assert_eq!(recv(&mut s[0]).await, None);
        send(&mut s[2], b"from two").await;
        assert_eq!(recv(&mut s[0]).await.unwrap(), b"from two");
        assert_eq!(recv(&mut s[1]).await.unwrap(), b"from two");
    }

    #[tokio::test]
    async fn a_length_that_is_no_frame_ends_only_that_members_connection() {
        let dir = tempfile::tempdir().unwrap();
        let _relay = relay(dir.path(), 3);
        let mut s = connected(dir.path(), 3).await;
        s[0].write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), s[0].read(&mut byte));
        assert_eq!(closed.await.unwrap().unwrap(), 0);
        send(&mut s[1], b"still here").await;
        assert_eq!(recv(&mut s[2]).await.unwrap(), b"still here");
    }

    #[tokio::test]
    async fn a_member_that_connects_again_gets_the_frames() {
        let dir = tempfile::tempdir().unwrap();
        let _relay = relay(dir.path(), 2);
        let mut s = connected(dir.path(), 2).await;
        drop(s.remove(1));
        let mut again = UnixStream::connect(dir.path().join("1.sock"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&mut s[0], b"hello again").await;
        assert_eq!(recv(&mut again).await.unwrap(), b"hello again");
    }

    #[tokio::test]
    async fn dropping_the_relay_closes_its_members() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay(dir.path(), 2);
        let mut s = connected(dir.path(), 2).await;
        drop(relay);
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), s[0].read(&mut byte));
        assert_eq!(read.await.unwrap().unwrap_or(0), 0);
    }
}
