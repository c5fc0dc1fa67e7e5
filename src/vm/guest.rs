//! The daemon inside each guest (`nvmfcheck vm guest`, hidden).
//!
//! The init script (which stays PID 1 and reaps orphans) starts it in the
//! chroot of the host root. It serves the control channel (see
//! `super::channel`) and, on the target, runs the agent. When it ends,
//! the init powers the VM off.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use super::protocol::{
    encode, ExecRequest, LineSplitter, Reply, Request, Utf8Carry, CTL_PORTS, PORT_NAME,
};
use super::{io_error, Role, VmError, FORWARD_IP, GUEST_OUT_DIR, TOKEN_FILE};
use crate::suite::AgentSetup;

/// What the daemon logs when the agent ends; the host watches the agent log
/// for it to fail a boot at once.
pub const AGENT_EXITED: &str = "nvmfcheck: the agent exited";

/// `PATH` and friends for commands run over the channel. The host root is
/// read-only in the guest; `/tmp` is a tmpfs, so it is home and the working
/// dir (fio, for one, writes verify state files there).
const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/tmp"),
    ("LANG", "C.UTF-8"),
    ("TERM", "dumb"),
];

/// What the guest's init tells its daemon (from the kernel command line).
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// The VM's name.
    pub name: String,
    /// Whether it runs the agent.
    pub role: Role,
    /// How the agent runs.
    pub setup: AgentSetup,
    /// The VM's address on its first link: where its agent serves shares.
    pub address: String,
    /// Whether the VM has the host's forward NIC, where the agent then
    /// serves gRPC too.
    pub forward: bool,
}

/// Runs the guest daemon; a target's agent runs as `cfg.setup` says.
pub async fn main(cfg: GuestConfig) -> Result<(), VmError> {
    kmsg("guest daemon started");
    // First, as it is the slowest part of the target's readiness.
    if cfg.role == Role::Target {
        start_agent(&cfg.name, cfg.setup, &cfg.address, cfg.forward);
        make_aio_file();
    }
    let name = cfg.name;
    let ports = find_ports(Duration::from_secs(10)).await?;
    kmsg("control ports found");
    let mut served = tokio::task::JoinSet::new();
    for port in ports {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&port)
            .map_err(io_error(format!("cannot open {}", port.display())))?;
        let writer = file
            .try_clone()
            .map_err(io_error("cannot duplicate the port's handle"))?;
        eprintln!("nvmfcheck: {name} guest daemon serving {}", port.display());
        served.spawn(serve(name.clone(), file, writer, true));
    }
    served.join_all().await;
    Ok(())
}

/// Logs to the kernel log, timestamped, readable with `dmesg` in the guest.
fn kmsg(msg: &str) {
    // One write is one record.
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = f.write_all(format!("<6>nvmfcheck: {msg}\n").as_bytes());
    }
}

/// The `/dev` nodes of the control ports, found by name in sysfs (there is
/// no udev to make `/dev/virtio-ports/<name>`). Ports appear one by one;
/// after `wait`, whatever was found is served.
async fn find_ports(wait: Duration) -> Result<Vec<PathBuf>, VmError> {
    let start = Instant::now();
    loop {
        let mut found = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/sys/class/virtio-ports") {
            for entry in dir.flatten() {
                let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                let dev = Path::new("/dev").join(entry.file_name());
                if name.trim().starts_with(PORT_NAME) && dev.exists() {
                    found.push(dev);
                }
            }
        }
        if found.len() == CTL_PORTS || (start.elapsed() > wait && !found.is_empty()) {
            return Ok(found);
        }
        if start.elapsed() > wait {
            return Err(VmError::Channel(format!(
                "no virtio-serial port named {PORT_NAME}.* in /sys/class/virtio-ports"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes the sparse file `basic/mayastor-clients` exports as an aio bdev
/// (on the guest's tmpfs /tmp). Failing is logged: that case then fails
/// naming the missing file.
fn make_aio_file() {
    let made = std::fs::File::create(crate::suite::AIO_FILE)
        .and_then(|f| f.set_len(crate::suite::AIO_FILE_SIZE));
    if let Err(e) = made {
        eprintln!("cannot make {}: {e}", crate::suite::AIO_FILE);
    }
}

/// Starts the agent; its output goes to the console and to `<name>.agent.log` in
/// the output share. Failing to start is logged, not fatal: the host's
/// readiness check then fails and shows the log.
fn start_agent(name: &str, setup: AgentSetup, address: &str, forward: bool) {
    let log_path = Path::new(GUEST_OUT_DIR).join(super::run_dir::agent_log_file(name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path);
    let log = Arc::new(std::sync::Mutex::new(log.ok()));
    let say = move |line: &str| {
        eprintln!("agent: {line}");
        if let Ok(mut guard) = log.lock() {
            if let Some(f) = guard.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return say(&format!("cannot find the nvmfcheck binary: {e}")),
    };
    let token = Path::new(GUEST_OUT_DIR).join(TOKEN_FILE);
    let mut args: Vec<String> = ["agent", "--address", address].map(String::from).into();
    if forward {
        // The host's loopback forward lands here.
        args.extend([
            "--listen".into(),
            format!("{FORWARD_IP}:{}", setup.link_port()),
        ]);
    }
    args.extend(setup.agent_args(address, &token.display().to_string()));
    say(&format!("starting {} {}", exe.display(), args.join(" ")));
    let spawned = tokio::process::Command::new(&exe)
        .args(args)
        .env_clear()
        .envs(BASE_ENV.iter().copied())
        .current_dir("/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return say(&format!("cannot start the agent: {e}")),
    };
    // For `vm bench`, which reads the agent's memory from /proc.
    if let Some(pid) = child.id() {
        if let Err(e) = std::fs::write(super::workload::AGENT_PID_FILE, pid.to_string()) {
            say(&format!(
                "cannot write {}: {e}",
                super::workload::AGENT_PID_FILE
            ));
        }
    }
    let say = Arc::new(say);
    let mut pumps = tokio::task::JoinSet::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let say = say.clone();
        pumps.spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                say(&line);
            }
        });
    }
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => format!("cannot wait for it: {e}"),
        };
        // Its last words first: the host stops reading at the exit line.
        let _ = tokio::time::timeout(Duration::from_secs(1), pumps.join_all()).await;
        say(&format!("{AGENT_EXITED} ({status})"));
    });
}

/// What the port's reader thread reports.
#[derive(Debug)]
enum Incoming {
    Line(String),
    /// The host closed its end: the session is over.
    Disconnected,
}

/// Where replies go: to the writer thread, tagged with their session so
/// that output of a finished session is dropped, not sent to the next. The
/// queue is bounded: a host that reads slowly slows the command down
/// instead of filling the guest's memory.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<(u64, Vec<u8>)>,
    session: u64,
}

impl Outbox {
    async fn send(&self, reply: &Reply) {
        let _ = self.tx.send((self.session, encode(reply))).await;
    }
}

/// Serves the channel over `reader`/`writer` until the reader fails.
/// `reconnects`: an end of file means the host went away and may come back
/// (a virtio port), rather than the end (a socket in tests).
pub async fn serve(
    name: String,
    reader: impl Read + Send + 'static,
    writer: impl Write + Send + 'static,
    reconnects: bool,
) {
    let (in_tx, mut in_rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || read_lines(reader, in_tx, reconnects));
    let current = Arc::new(AtomicU64::new(0));
    let (out_tx, mut out_rx) = mpsc::channel::<(u64, Vec<u8>)>(64);
    let writer_session = current.clone();
    std::thread::spawn(move || {
        let mut writer = writer;
        while let Some((session, line)) = out_rx.blocking_recv() {
            if session == writer_session.load(Ordering::SeqCst) {
                let _ = writer.write_all(&line).and_then(|()| writer.flush());
            }
        }
    });
    let mut session = 0;
    let mut running: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    while let Some(ev) = in_rx.recv().await {
        running.retain(|_, task| !task.is_finished());
        let out = Outbox {
            tx: out_tx.clone(),
            session,
        };
        match ev {
            Incoming::Line(line) => match serde_json::from_str::<Request>(&line) {
                Ok(Request::Hello { hello }) => {
                    kmsg("hello");
                    out.send(&Reply::Hello {
                        hello,
                        name: name.clone(),
                    })
                    .await
                }
                Ok(Request::Exec(req)) => {
                    let id = req.id;
                    if let Some(old) = running.insert(id, tokio::spawn(exec(req, out))) {
                        old.abort();
                    }
                }
                Err(e) => eprintln!("nvmfcheck: unreadable request {line:?}: {e}"),
            },
            Incoming::Disconnected => {
                // Aborting drops each command's guard, which kills it.
                for (_, task) in running.drain() {
                    task.abort();
                }
                session += 1;
                current.store(session, Ordering::SeqCst);
            }
        }
    }
}

fn read_lines(mut reader: impl Read, tx: mpsc::UnboundedSender<Incoming>, reconnects: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = LineSplitter::default();
    let mut connected = false;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => {
                lines.clear();
                if connected {
                    connected = false;
                    if tx.send(Incoming::Disconnected).is_err() {
                        return;
                    }
                }
                if !reconnects {
                    return;
                }
                // A virtio port reads as end of file while no host is
                // connected; poll() does not help (it reports HUP).
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(n) => {
                connected = true;
                for text in lines.push(&buf[..n]) {
                    if tx.send(Incoming::Line(text)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Kills a command's whole process group when dropped (end, deadline, or
/// the session ending), so nothing it started lingers.
struct GroupKill(Pid);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

async fn exec(req: ExecRequest, out: Outbox) {
    let id = req.id;
    match run_command(&req, &out).await {
        Ok(exit) => out.send(&Reply::Exit { id, exit }).await,
        Err(error) => out.send(&Reply::Error { id, error }).await,
    }
}

async fn pump(mut from: impl AsyncRead + Unpin, id: u64, stderr: bool, out: Outbox) {
    let mut carry = Utf8Carry::default();
    let mut buf = vec![0u8; 16 * 1024];
    let reply = |text: String| {
        if stderr {
            Reply::Stderr { id, stderr: text }
        } else {
            Reply::Stdout { id, stdout: text }
        }
    };
    loop {
        let text = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => carry.push(&buf[..n]),
        };
        if !text.is_empty() {
            out.send(&reply(text)).await;
        }
    }
    let rest = carry.finish();
    if !rest.is_empty() {
        out.send(&reply(rest)).await;
    }
}

async fn run_command(req: &ExecRequest, out: &Outbox) -> Result<i32, String> {
    let (program, args) = req.argv.split_first().ok_or("empty argv")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(BASE_ENV.iter().copied())
        .envs(&req.env)
        .current_dir("/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let pid = child.id().ok_or("the command exited at once")?;
    let _guard = GroupKill(Pid::from_raw(pid as i32));
    let mut pumps = tokio::task::JoinSet::new();
    if let Some(s) = child.stdout.take() {
        pumps.spawn(pump(s, req.id, false, out.clone()));
    }
    if let Some(s) = child.stderr.take() {
        pumps.spawn(pump(s, req.id, true, out.clone()));
    }
    let limit = Duration::from_secs(req.timeout_secs);
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("waiting for `{program}` failed: {e}")),
        Err(_) => {
            return Err(format!(
                "`{}` did not finish within {}s and was killed",
                req.argv.join(" "),
                req.timeout_secs
            ))
        }
    };
    // Output still buffered in the pipes; something the command left in
    // the background may hold them open, so do not wait long.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while pumps.join_next().await.is_some() {}
    })
    .await;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::channel::{Channel, Event};

    /// A guest daemon serving a unix socket on the host, and a channel to it.
    async fn pair() -> (Channel, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (s, _) = tokio::task::spawn_blocking(move || listener.accept().unwrap())
                .await
                .unwrap();
            let w = s.try_clone().unwrap();
            serve("initiator".into(), s, w, false).await;
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let ch = Channel::connect("initiator", &path, deadline)
            .await
            .unwrap();
        (ch, dir)
    }

    fn argv(s: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), s.into()]
    }

    #[tokio::test]
    async fn runs_commands_streams_output_and_reports_status() {
        let (ch, _dir) = pair().await;
        let out = ch
            .output(
                &argv("echo out; echo err >&2; exit 3"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (3, "out\n", "err\n")
        );
        let out = ch
            .output(&argv("kill -9 $$"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.code, 128 + 9);
        let err = ch
            .output(&["/no/such/program".into()], Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot start `/no/such/program`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn commands_run_concurrently() {
        let (ch, _dir) = pair().await;
        let start = Instant::now();
        let (cmd_a, cmd_b) = (argv("sleep 1; echo a"), argv("sleep 1; echo b"));
        let a = ch.output(&cmd_a, Duration::from_secs(10));
        let b = ch.output(&cmd_b, Duration::from_secs(10));
        let (a, b) = tokio::join!(a, b);
        assert_eq!(a.unwrap().stdout, "a\n");
        assert_eq!(b.unwrap().stdout, "b\n");
        assert!(
            start.elapsed() < Duration::from_millis(1900),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_is_killed_with_its_children() {
        let (ch, dir) = pair().await;
        let marker = dir.path().join("survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let start = Instant::now();
        let err = ch
            .output(&argv(&script), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did not finish within 1s"),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!marker.exists(), "a child of the killed command lived on");
    }

    #[tokio::test]
    async fn large_output_arrives_whole() {
        let (ch, _dir) = pair().await;
        let mut rx = ch
            .start(
                &argv("head -c 3000000 /dev/zero | tr '\\0' x"),
                Default::default(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        let mut n = 0;
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Stdout(s) => n += s.len(),
                Event::Exit(code) => {
                    assert_eq!(code, 0);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(n, 3_000_000);
    }
}
