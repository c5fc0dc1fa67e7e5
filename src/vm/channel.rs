//! The host's end of a VM's control channel (the protocol is in
//! [`super::protocol`]): QEMU exposes each virtio-serial control port as a
//! unix socket on the host.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::protocol::{encode, ExecRequest, LineSplitter, Reply, Request, CTL_PORTS};
use super::VmError;
use crate::agent::limits::shown;

/// What a running command sends the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chunk of stdout.
    Stdout(String),
    /// A chunk of stderr.
    Stderr(String),
    /// It exited with this status.
    Exit(i32),
    /// It could not run, was killed at its deadline, or the VM went away.
    Error(String),
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Event>>>>;

/// The host's end of a VM's control channel.
#[derive(Debug)]
pub struct Channel {
    name: String,
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    /// Marks the port as taken for other host processes.
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A command's output, collected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status.
    pub code: i32,
    /// All of stdout.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
}

fn chan_err(name: &str, what: impl std::fmt::Display) -> VmError {
    VmError::Channel(format!("{name} VM control channel: {what}"))
}

impl Channel {
    /// Connects to the first control port of the VM that no other host
    /// process holds (an exclusive lock on `<socket>.lock` marks it), so
    /// that several commands can run at once from different processes.
    pub async fn connect_free(
        name: &str,
        files: &super::spec::VmFiles,
        deadline: Instant,
    ) -> Result<Self, VmError> {
        use nix::fcntl::{Flock, FlockArg};
        for i in 0..CTL_PORTS {
            let socket = files.ctl_port(i);
            let lock_path = PathBuf::from(format!("{}.lock", socket.display()));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(super::io_error(format!(
                    "cannot open {}",
                    lock_path.display()
                )))?;
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                let mut ch = Self::connect(name, &socket, deadline).await?;
                ch._lock = Some(lock);
                return Ok(ch);
            }
        }
        Err(chan_err(
            name,
            format!("all {CTL_PORTS} control ports are in use by other nvmfcheck processes"),
        ))
    }

    /// Connects to the socket at `path` (waiting for it to appear) and
    /// opens a session; fails if the guest does not answer by `deadline`.
    pub async fn connect(name: &str, path: &Path, deadline: Instant) -> Result<Self, VmError> {
        let start = Instant::now();
        let timeout = |what: &str| VmError::Timeout {
            what: format!("{name} VM: {what}"),
            after: deadline.saturating_duration_since(start),
            log: None,
        };
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(chan_err(
                        name,
                        format!("cannot connect to {}: {e}", path.display()),
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (read, mut write) = stream.into_split();
        let mut lines = Lines::new(read);
        let nonce = uuid::Uuid::new_v4().to_string();
        let hello = encode(&Request::Hello {
            hello: nonce.clone(),
        });
        // The guest may not have opened its port yet and may drop what came
        // before; say hello until it answers.
        let answered = async {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tick.tick() => write.write_all(&hello).await.map_err(|e| chan_err(name, e))?,
                    line = lines.next_line() => {
                        let line = line.map_err(|e| chan_err(name, e))?
                            .ok_or_else(|| chan_err(name, "QEMU closed the socket"))?;
                        match serde_json::from_str(&line) {
                            Ok(Reply::Hello { hello, name: r }) if hello == nonce => {
                                if r != name {
                                    return Err(chan_err(name, format!("the {r} VM answered")));
                                }
                                return Ok(());
                            }
                            _ => continue,
                        }
                    }
                }
            }
        };
        tokio::time::timeout_at(deadline.into(), answered)
            .await
            .map_err(|_| timeout("waiting for the guest daemon's hello"))??;
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(dispatch(name.to_string(), lines, pending.clone()));
        Ok(Self {
            name: name.to_string(),
            write: tokio::sync::Mutex::new(write),
            pending,
            // Ids differ between connections, so that output of an older
            // session cannot pass for this one's.
            next_id: AtomicU64::new(u64::from(uuid::Uuid::new_v4().as_fields().0) << 16),
            reader,
            _lock: None,
        })
    }

    /// Which VM this is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts `argv` in the guest; its events arrive on the returned
    /// receiver, ending with `Exit` or `Error`.
    pub async fn start(
        &self,
        argv: &[String],
        env: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<mpsc::UnboundedReceiver<Event>, VmError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .map_err(|_| chan_err(&self.name, "poisoned lock"))?
            .insert(id, tx);
        let req = encode(&Request::Exec(ExecRequest {
            id,
            argv: argv.to_vec(),
            env,
            timeout_secs: timeout.as_secs().max(1),
        }));
        self.write
            .lock()
            .await
            .write_all(&req)
            .await
            .map_err(|e| chan_err(&self.name, e))?;
        Ok(rx)
    }

    /// Runs `argv` with `env` added to the guest's base environment,
    /// handing each output chunk to `on_output` as it comes, and returns its
    /// exit status. The host gives up 10 s after the guest's own deadline,
    /// in case the guest hangs.
    pub async fn run(
        &self,
        argv: &[String],
        env: BTreeMap<String, String>,
        timeout: Duration,
        mut on_output: impl FnMut(&Event),
    ) -> Result<i32, VmError> {
        let mut rx = self.start(argv, env, timeout).await?;
        let cmdline = argv.join(" ");
        let wait = async {
            while let Some(ev) = rx.recv().await {
                match ev {
                    Event::Exit(code) => return Ok(code),
                    Event::Error(e) => {
                        return Err(chan_err(&self.name, format!("`{cmdline}`: {e}")));
                    }
                    out => on_output(&out),
                }
            }
            Err(chan_err(&self.name, format!("`{cmdline}`: no exit status")))
        };
        tokio::time::timeout(timeout + Duration::from_secs(10), wait)
            .await
            .map_err(|_| VmError::Timeout {
                what: format!("{} VM: `{cmdline}` (the guest did not report)", self.name),
                after: timeout + Duration::from_secs(10),
                log: None,
            })?
    }

    /// Runs `argv` and collects its output.
    pub async fn output(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput, VmError> {
        let mut out = ExecOutput::default();
        out.code = self
            .run(argv, BTreeMap::new(), timeout, |ev| match ev {
                Event::Stdout(s) => out.stdout.push_str(s),
                Event::Stderr(s) => out.stderr.push_str(s),
                _ => {}
            })
            .await?;
        Ok(out)
    }
}

/// The lines a guest sends, split by a [`LineSplitter`], so that however
/// long a line the guest sends, the host holds at most
/// [`super::protocol::MAX_LINE`] bytes of it.
struct Lines<R> {
    read: R,
    split: LineSplitter,
    ready: std::collections::VecDeque<String>,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(read: R) -> Self {
        Self {
            read,
            split: LineSplitter::default(),
            ready: Default::default(),
            buf: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    /// The next line, or `None` at the end of the stream. Cancel safe, as
    /// `select!` needs: a read that is dropped has read nothing, and what a
    /// read returns is stored before the next await.
    async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(line));
            }
            let n = self.read.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.ready.extend(self.split.push(&self.buf[..n]));
        }
    }
}

async fn dispatch(name: String, mut lines: Lines<OwnedReadHalf>, pending: Pending) {
    let why = loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break "the VM closed the channel (did QEMU exit?)".to_string(),
            Err(e) => break format!("reading the channel failed: {e}"),
        };
        let Ok(reply) = serde_json::from_str::<Reply>(&line) else {
            tracing::warn!("{name} VM sent an unreadable line: {}", shown(&line));
            continue;
        };
        let (id, ev) = match reply {
            Reply::Hello { .. } => continue,
            Reply::Stdout { id, stdout } => (id, Event::Stdout(stdout)),
            Reply::Stderr { id, stderr } => (id, Event::Stderr(stderr)),
            Reply::Exit { id, exit } => (id, Event::Exit(exit)),
            Reply::Error { id, error } => (id, Event::Error(error)),
        };
        let Ok(mut map) = pending.lock() else { return };
        let last = matches!(ev, Event::Exit(_) | Event::Error(_));
        if let Some(tx) = map.get(&id) {
            let _ = tx.send(ev);
        }
        if last {
            map.remove(&id);
        }
    };
    if let Ok(mut map) = pending.lock() {
        for (_, tx) in map.drain() {
            let _ = tx.send(Event::Error(why.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::protocol::MAX_LINE;

    /// A line longer than the limit costs the host no more than the limit,
    /// and the lines after it are read as they are.
    #[tokio::test]
    async fn a_huge_line_is_cut_and_the_next_one_read() {
        let mut stream = vec![b'x'; 3 * MAX_LINE];
        stream.extend_from_slice(b"\n{\"id\":1,\"exit\":0}\nno end");
        let mut lines = Lines::new(stream.as_slice());
        assert_eq!(lines.next_line().await.unwrap().unwrap().len(), MAX_LINE);
        let reply: Reply =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(reply, Reply::Exit { id: 1, exit: 0 });
        // A line the stream does not end is no line.
        assert_eq!(lines.next_line().await.unwrap(), None);
    }
}
