//! The agent as a process of its own, on the configfs model, measured from
//! outside against the bounds `docs/bad-input.md` states: peak memory and
//! log growth under huge requests, descriptors and CPU with hundreds of
//! idle connections, threads and answers behind a stuck configfs write.
//!
//! This test binary is also that agent process: started with
//! `NVMFCHECK_TEST_AGENT=<dir>` it serves an agent on a fake configfs on
//! 127.0.0.1, prints its address on stdout and stops when stdin closes.
//! `nvmfcheck agent` needs the kernel's configfs, and a test-only flag on
//! it would be one more thing its users see; a harness of its own
//! (libtest-mimic, `harness = false`) lets the binary be both, and it is a
//! test binary as cargo and nextest know them (filters, `--list`), with no
//! other binary to find. The tests run one at a time: each measures a
//! process's time.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nvmfcheck::agent::fake::FakeConfigfs;
use nvmfcheck::agent::fake::{FakeLoops, FakeLvm};
use nvmfcheck::agent::limits::MAX_MESSAGE_LEN;
use nvmfcheck::agent::Limits;
use nvmfcheck::agent::{Agent, AgentConfig};
use nvmfcheck::proto::control::control_client::ControlClient;
use nvmfcheck::proto::control::PortDownRequest;
use nvmfcheck::proto::mayastor::bdev_rpc_client::BdevRpcClient;
use nvmfcheck::proto::mayastor::Null;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

mod common;
use common::{share, uri};

/// Set in the agent process: its state directory.
const AGENT: &str = "NVMFCHECK_TEST_AGENT";
/// Optional: its connection cap, instead of the one from its file limit.
const MAX_CONNECTIONS: &str = "NVMFCHECK_TEST_AGENT_MAX_CONNECTIONS";
/// Optional: its request deadline in milliseconds.
const DEADLINE_MS: &str = "NVMFCHECK_TEST_AGENT_DEADLINE_MS";
/// Optional: the attribute whose next write blocks for good; the agent
/// prints `blocked` on stdout once a write reaches it.
const BLOCK_WRITE: &str = "NVMFCHECK_TEST_AGENT_BLOCK_WRITE";

/// Each async test as a trial named after it.
macro_rules! trials {
    ($($test:ident),* $(,)?) => {
        vec![$(trial(stringify!($test), $test)),*]
    };
}

fn main() -> ExitCode {
    if let Some(dir) = std::env::var_os(AGENT) {
        return agent_process(dir);
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = trials![
        eight_4mib_shares_cost_little_memory_and_log,
        idle_connections_at_the_file_limit_leave_room_and_close,
        accept_errors_back_off,
        requests_behind_a_stuck_write_are_unavailable_and_hold_no_thread,
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial<F: std::future::Future<Output = ()> + 'static>(name: &str, test: fn() -> F) -> Trial {
    Trial::test(name, move || {
        tokio::runtime::Runtime::new()?.block_on(test());
        Ok::<(), Failed>(())
    })
}

/// The agent process: logs as `nvmfcheck agent` does, on stderr.
fn agent_process(dir: OsString) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let env_number = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse::<u64>().expect("a number"))
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let stopped = runtime.block_on(async {
        let mut config = AgentConfig::new(Ipv4Addr::new(192, 168, 1, 2));
        config.state_dir = PathBuf::from(dir).join("state");
        // Control.PortDown is among the requests queued behind a stuck one.
        config.faults = true;
        let fs = Arc::new(FakeConfigfs::new());
        let blocked = std::env::var(BLOCK_WRITE)
            .ok()
            .map(|attr| fs.block_next_write(&attr));
        let loops = Arc::new(FakeLoops::new(&config.state_dir));
        let lvm = Arc::new(FakeLvm::new(config.state_dir.join("lvm")));
        let mut agent = Agent::start(
            &config,
            fs,
            loops,
            lvm,
            Arc::new(nvmfcheck::agent::fake::FakeNexusKernel::new(
                config.state_dir.join("md"),
            )),
        )
        .expect("the agent starts");
        if let Some(ms) = env_number(DEADLINE_MS) {
            agent = agent.with_request_deadline(Duration::from_millis(ms));
        }
        if let Some(n) = env_number(MAX_CONNECTIONS) {
            agent = agent.with_connection_limits(Limits {
                max_connections: usize::try_from(n).expect("a cap"),
                ..Limits::default()
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        println!("{}", listener.local_addr().expect("an address"));
        if let Some(blocked) = blocked {
            tokio::spawn(async move {
                while !blocked.reached() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                println!("blocked");
                // Held until the process ends.
                std::future::pending::<()>().await;
                drop(blocked);
            });
        }
        let stdin_closed = async {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
        };
        agent.serve(vec![listener], stdin_closed).await
    });
    match stopped {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An agent process, killed when dropped.
struct AgentProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Starts one with these environment variables, and at most `nofile`
    /// open files.
    fn start(env: &[(&str, &str)], nofile: Option<u64>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(AGENT, dir.path())
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe, and nothing else runs
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    setrlimit(Resource::RLIMIT_NOFILE, n, n).map_err(std::io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the agent did not start: {:?}\n{}",
                line,
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Self {
            child,
            stdout,
            addr,
            log,
            _dir: dir,
        }
    }

    /// Waits for the agent to print `line`.
    fn wait_for_line(&mut self, expected: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), expected, "{}", self.log());
    }

    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        status_field(self.child.id(), "VmHWM")
    }

    /// CPU time used so far, user and system, all threads.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which may hold spaces: state is
        // the 3rd field, utime and stime the 14th and 15th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // USER_HZ, the unit of /proc times, is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// The share of one core used over `span`.
    async fn cpu_share(&self, span: Duration) -> f64 {
        let before = self.cpu();
        tokio::time::sleep(span).await;
        (self.cpu() - before).as_secs_f64() / span.as_secs_f64()
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).unwrap().len()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .unwrap()
    }

    async fn client(&self) -> BdevRpcClient<Channel> {
        BdevRpcClient::new(self.channel().await)
    }
}

/// A number from `/proc/<pid>/status` (`VmHWM` in KiB, `Threads`).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    value.split_whitespace().next().unwrap().parse().unwrap()
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Eight Shares at once, each with a 4 MiB protocol, each on a connection
/// of its own from a stock tonic client: each gets a proper status (not an
/// HTTP/2 error) with a short message, the agent's peak memory rises by
/// less than 32 MiB and its log by less than 4 KiB a request.
async fn eight_4mib_shares_cost_little_memory_and_log() {
    let agent = AgentProcess::start(&[], None);
    let mut c = agent.client().await;
    c.create(uri("malloc:///m0?size_mb=1")).await.unwrap();
    c.list(Null {}).await.unwrap();
    let (rss, log) = (agent.peak_rss_kib(), agent.log_len());
    let proto = "p".repeat(4 << 20);
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut c = agent.client().await;
        let proto = proto.clone();
        calls.push(tokio::spawn(
            async move { c.share(share("m0", &proto)).await },
        ));
    }
    for call in calls {
        let e = call.await.unwrap().unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
        assert!(e.message().len() <= MAX_MESSAGE_LEN, "{e:?}");
    }
    c.list(Null {}).await.unwrap();
    let rss_rise = agent.peak_rss_kib() - rss;
    let log_each = (agent.log_len() - log) / 8;
    eprintln!("peak RSS rose by {rss_rise} KiB; the log grew by {log_each} bytes a request");
    assert!(rss_rise < 32 * 1024, "peak RSS rose by {rss_rise} KiB");
    assert!(log_each < 4096, "{log_each} bytes of log a request");
}

/// Makes sure this process may hold `n` more descriptors.
fn allow_files(n: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < n + 256 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(n + 1024), hard).unwrap();
    }
}

/// Holds `stream` idle: bare TCP, or HTTP/2 with the handshake done and
/// PINGs answered. Completes when the agent has closed it.
async fn idle_connection(mut stream: TcpStream, http2: bool) {
    if http2 {
        // The handshake fails, or the connection ends, when the agent
        // closes it.
        if let Ok((_send, conn)) = h2::client::handshake(stream).await {
            let _ = conn.await;
        }
    } else {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    }
}

/// With the agent at 256 open files and 300 idle connections held, `List`
/// on a new connection answers within 2 s, the agent uses under 10 % of a
/// core, and every idle connection is closed within 30 s.
async fn idle_connections_at_the_file_limit_leave_room_and_close() {
    allow_files(400);
    let agent = AgentProcess::start(&[], Some(256));
    let opened = Instant::now();
    let mut idle = Vec::new();
    for i in 0..300 {
        // Connected, in the agent's backlog at least, before the next.
        let stream = TcpStream::connect(agent.addr).await.unwrap();
        idle.push(tokio::spawn(idle_connection(stream, i % 2 == 1)));
    }
    // Time for the HTTP/2 handshakes the agent lets through.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    let list = async {
        let mut c = agent.client().await;
        c.list(Null {}).await
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), list).await;
    let took = asked.elapsed();
    eprintln!("List answered in {took:?} with 300 idle connections held");
    answer
        .unwrap_or_else(|_| panic!("no answer to List in 2 s\n{}", agent.log()))
        .unwrap();

    let cpu = agent.cpu_share(Duration::from_secs(5)).await;
    eprintln!("the agent used {:.1} % of a core", cpu * 100.0);
    assert!(cpu < 0.10, "{:.1} % of a core", cpu * 100.0);

    let closed_by = opened + Duration::from_secs(30);
    for (i, conn) in idle.into_iter().enumerate() {
        let left = closed_by.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, conn)
            .await
            .unwrap_or_else(|_| panic!("idle connection {i} still open after 30 s"))
            .unwrap();
    }
    eprintln!(
        "all idle connections closed {:?} after they were opened",
        opened.elapsed()
    );
    agent.client().await.list(Null {}).await.unwrap();
}

/// With the cap above the agent's file limit (256), 300 connections run it
/// out of descriptors: accept fails with EMFILE, and the agent backs off
/// instead of spinning, using under 10 % of a core.
async fn accept_errors_back_off() {
    allow_files(400);
    let agent = AgentProcess::start(&[(MAX_CONNECTIONS, "1000")], Some(256));
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(agent.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = agent.cpu_share(Duration::from_secs(5)).await;
    eprintln!("the agent used {:.1} % of a core", cpu * 100.0);
    let log = agent.log();
    assert!(log.contains("Too many open files"), "no EMFILE: {log}");
    assert!(cpu < 0.10, "{:.1} % of a core", cpu * 100.0);
}

/// With a configfs write stuck for good (in Share), 50 further requests
/// (of both services) answer UNAVAILABLE within their deadline, naming the
/// stuck one, and the agent stays under 20 threads; the stuck Share itself
/// is DEADLINE_EXCEEDED.
async fn requests_behind_a_stuck_write_are_unavailable_and_hold_no_thread() {
    let deadline = Duration::from_secs(2);
    let ms = deadline.as_millis().to_string();
    let mut agent = AgentProcess::start(&[(DEADLINE_MS, &ms), (BLOCK_WRITE, "enable")], None);
    let mut c = agent.client().await;
    c.create(uri("malloc:///m0?size_mb=1")).await.unwrap();
    let stuck = {
        let mut c = c.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            (c.share(share("m0", "nvmf")).await, asked.elapsed())
        })
    };
    agent.wait_for_line("blocked");
    let pid = agent.child.id();
    let most = Arc::new(AtomicU64::new(0));
    let watch = {
        let most = Arc::clone(&most);
        tokio::spawn(async move {
            loop {
                most.fetch_max(status_field(pid, "Threads"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let control = ControlClient::new(agent.channel().await);
    // 50 while the Share is within its deadline (they wait for it), then
    // 50 once it is past (they need not).
    unavailable(&c, &control, deadline, "within").await;
    let (result, took) = stuck.await.unwrap();
    let e = result.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(took < deadline + Duration::from_secs(1), "{took:?}");
    unavailable(&c, &control, deadline, "past").await;
    watch.abort();
    let most = most.load(Ordering::Relaxed);
    eprintln!("the agent had at most {most} threads");
    assert!(most < 20, "{most} threads");
}

/// Sends 50 requests at once, List, Create and PortDown: each must answer
/// UNAVAILABLE within `deadline` (and a second for the trip), naming the
/// stuck Share.
async fn unavailable(
    c: &BdevRpcClient<Channel>,
    control: &ControlClient<Channel>,
    deadline: Duration,
    wave: &str,
) {
    let mut calls = Vec::new();
    for i in 0..50 {
        let (mut c, mut control) = (c.clone(), control.clone());
        calls.push(tokio::spawn(async move {
            let asked = Instant::now();
            let result = match i % 3 {
                0 => c.list(Null {}).await.map(drop),
                1 => c
                    .create(uri(&format!("malloc:///w{i}?size_mb=1")))
                    .await
                    .map(drop),
                _ => {
                    let port = PortDownRequest {
                        port: 8430,
                        seconds: 5,
                    };
                    control.port_down(port).await.map(drop)
                }
            };
            (result, asked.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    let mut said = String::new();
    for call in calls {
        let (result, took) = call.await.unwrap();
        slowest = slowest.max(took);
        let e = result.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{wave}: {e:?}");
        assert!(
            e.message().contains("busy with Share(\"m0\""),
            "{wave}: {}",
            e.message()
        );
        said = e.message().to_string();
        assert!(took < deadline + Duration::from_secs(1), "{wave}: {took:?}");
    }
    eprintln!(
        "50 requests {wave} the stuck one's deadline: UNAVAILABLE, the slowest in {slowest:?}; the last said: {said}"
    );
}
