//! The four server models (loop, table, threads, fork) behind the real `udpft serve` binary:
//! the same end-to-end suite against each, and what sets them apart — the loop answers
//! *busy*, the fork model reaps its children, threads and fork cap their sessions, the
//! table runs several workers, and every model shuts down gracefully on SIGTERM.
//!
//! Every server runs as a child process (the fork model must own a single-threaded
//! process, and running all four the same way keeps them comparable). A [`Proc`] guard stops
//! and reaps each child with a deadline; nothing waits a fixed time, every wait polls a
//! condition. Children stay in the test's process group (a Ctrl-C of the test run stops
//! them too), except where a test signals a server's whole group.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions, Destination, Event};
use udpft::library::TEMP_PREFIX;
use udpft::link::Rng;
use udpft::net;
use udpft::proto::client::{ClientSession, Request};
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::wire::MAX_DATAGRAM;
use udpft::proto::{Config, ErrorCode, Failure, Message, Outcome};

const UDPFT: &str = env!("CARGO_BIN_EXE_udpft");
const LOSSY_PROXY: &str = env!("CARGO_BIN_EXE_lossy-proxy");

/// Every model, by its command-line name.
const MODELS: [&str; 4] = ["loop", "table", "threads", "fork"];

/// Generous bound for anything that should take milliseconds on loopback.
const PROMPT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

/// A child process whose stderr is read line by line on a thread. Dropped before it was
/// reaped, it gets SIGTERM, then (past a deadline) SIGKILL, for its whole process group if
/// it leads one.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    stderr: Vec<String>,
    reaped: bool,
    own_group: bool,
}

impl Proc {
    /// Spawns `command` with stdin and stdout null and stderr piped; with `own_group`, as
    /// the leader of a new process group.
    fn spawn(command: &mut Command, own_group: bool) -> Self {
        if own_group {
            command.process_group(0);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child process");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            // Ends at EOF: when the process and every child of it closed stderr.
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                if tx.send(text).is_err() {
                    break;
                }
                line.clear();
            }
        });
        Self {
            child,
            lines,
            stderr: Vec::new(),
            reaped: false,
            own_group,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal own child");
    }

    /// The next stderr line, if one comes within `within`.
    fn next_line(&mut self, within: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(within).ok()?;
        self.stderr.push(line.clone());
        Some(line)
    }

    /// Waits until the process exited and its stderr is closed, at most `within`.
    fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stderr.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => return None,
            }
        }
        let status = poll_until(deadline, || self.child.try_wait().expect("try_wait"))?;
        self.reaped = true;
        Some(status)
    }

    /// Everything read from stderr so far.
    fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        let exited = poll_until(deadline, || self.child.try_wait().ok().flatten());
        if exited.is_none() {
            if self.own_group {
                // Not reaped yet, so the group id is still this child's: its session
                // processes (fork model) go with it.
                let _ = killpg(self.pid(), Signal::SIGKILL);
            } else {
                let _ = kill(self.pid(), Signal::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it yields a value or `deadline` passes.
fn poll_until<T>(deadline: Instant, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A `udpft serve` process on a free loopback port.
struct Server {
    proc: Proc,
    addr: SocketAddr,
    model: String,
}

impl Server {
    /// Starts `udpft serve --model MODEL` on `root` with `extra` arguments and reads the
    /// address it bound from its first stderr line.
    fn start(model: &str, root: &Path, extra: &[&str]) -> Self {
        Self::start_with(model, root, extra, false)
    }

    /// [`Server::start`], optionally as the leader of its own process group.
    fn start_with(model: &str, root: &Path, extra: &[&str], own_group: bool) -> Self {
        let mut proc = Proc::spawn(
            Command::new(UDPFT)
                .args(["serve", "--bind", "127.0.0.1:0", "--model", model, "--root"])
                .arg(root)
                .args(extra),
            own_group,
        );
        let line = proc.next_line(PROMPT).unwrap_or_else(|| {
            panic!(
                "udpft serve --model {model} printed nothing: {}",
                proc.stderr_text()
            )
        });
        // udpft: serving ROOT on ADDR (model M, Ctrl-C to stop)
        let marker = format!(" (model {model}");
        let addr = line
            .starts_with("udpft: serving ")
            .then(|| line.split_once(&marker))
            .flatten()
            .and_then(|(head, _)| head.rsplit_once(" on "))
            .and_then(|(_, addr)| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from udpft serve: {line:?}"));
        Self {
            proc,
            addr,
            model: model.to_owned(),
        }
    }

    fn pid(&self) -> Pid {
        self.proc.pid()
    }

    /// Sends SIGTERM and returns the `stopped;` line after checking the exit status.
    fn stop(mut self) -> String {
        self.proc.signal(Signal::SIGTERM);
        self.expect_exit()
    }

    /// Waits for a clean exit (a stop was already asked for) and returns the stats line.
    fn expect_exit(&mut self) -> String {
        let status = self.proc.wait(Duration::from_secs(20)).unwrap_or_else(|| {
            panic!(
                "{} server did not exit; stderr: {}",
                self.model,
                self.proc.stderr_text()
            )
        });
        let stderr = self.proc.stderr_text();
        assert!(
            status.success(),
            "{} server exited with {status}; stderr: {stderr}",
            self.model
        );
        stderr
            .lines()
            .find(|l| l.starts_with("udpft: stopped; "))
            .unwrap_or_else(|| panic!("no `stopped;` line from {}: {stderr}", self.model))
            .to_owned()
    }
}

// ---------------------------------------------------------------------------------------
// Files and clients
// ---------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Asserts equality of file contents without printing megabytes on failure.
fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    let first_difference = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{what}: got {} bytes, want {}; first difference at {first_difference:?}",
        got.len(),
        want.len()
    );
}

fn options() -> ClientOptions {
    ClientOptions {
        config: Config {
            timeout: Duration::from_secs(10),
            ..Config::default()
        },
        // The loop model serves one client at a time: the others wait their turn.
        busy_patience: Duration::from_secs(60),
        ..ClientOptions::default()
    }
}

fn client(addr: SocketAddr) -> Client {
    Client::new(addr, options()).expect("client socket")
}

/// Downloads `name` into `dir` and returns its bytes.
fn download(addr: SocketAddr, name: &str, dir: &Path, local: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(local);
    client(addr)
        .get(name, &Destination::File(path.clone()), false, &mut |_| {})
        .map_err(|e| format!("get {name}: {e}"))?;
    fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))
}

/// Uploads `bytes` (written to a file in `dir` first) as `name`.
fn upload(addr: SocketAddr, name: &str, bytes: &[u8], dir: &Path) -> Result<(), String> {
    let path = dir.join(format!("local-{name}"));
    fs::write(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    client(addr)
        .put(&path, name, false, &mut |_| {})
        .map(|_| ())
        .map_err(|e| format!("put {name}: {e}"))
}

/// The library's hidden temporary files (uploads in progress or left behind).
fn temp_files(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root)
        .expect("read library")
        .map(|entry| entry.expect("library entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(TEMP_PREFIX))
        })
        .collect()
}

/// A library folder and a scratch folder for the client side.
struct Dirs {
    library: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

impl Dirs {
    /// A library holding `files`.
    fn with(files: &[(&str, &[u8])]) -> Self {
        let dirs = Self {
            library: tempfile::tempdir().expect("library dir"),
            scratch: tempfile::tempdir().expect("scratch dir"),
        };
        for (name, bytes) in files {
            fs::write(dirs.library.path().join(name), bytes).expect("write library file");
        }
        dirs
    }

    fn root(&self) -> &Path {
        self.library.path()
    }

    fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.root().join(name)).unwrap_or_else(|e| panic!("library file {name}: {e}"))
    }
}

/// `clients` threads at once, even ones downloading `shared` (whose bytes are `want`),
/// odd ones uploading a file of their own; every transfer must arrive byte-identical.
fn concurrent_clients(addr: SocketAddr, dirs: &Dirs, clients: usize, shared: &str, want: &[u8]) {
    let uploads: Vec<Vec<u8>> = (0..clients)
        .map(|i| random_bytes(100 + i as u64, (256 << 10) + 97 * i))
        .collect();
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let upload_bytes = &uploads[i];
                scope.spawn(move || {
                    if i % 2 == 0 {
                        let got = download(addr, shared, dirs.scratch(), &format!("conc-{i}"))?;
                        (got == want)
                            .then_some(())
                            .ok_or_else(|| format!("client {i}: download differs"))
                    } else {
                        upload(addr, &format!("conc-{i}"), upload_bytes, dirs.scratch())
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for (i, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|e| panic!("concurrent client {i}: {e}"));
    }
    for i in (1..clients).step_by(2) {
        assert_same(
            &format!("uploaded conc-{i}"),
            &dirs.read(&format!("conc-{i}")),
            &uploads[i],
        );
    }
}

// ---------------------------------------------------------------------------------------
// Raw datagrams and a stepped client
// ---------------------------------------------------------------------------------------

/// A fresh loopback socket connected to `server`.
fn raw_socket(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind raw socket");
    socket.connect(server).expect("connect raw socket");
    socket
}

/// Sends one datagram. A failure (an ICMP error from a server that has exited) is the
/// same as a loss to the caller.
fn send_message(socket: &UdpSocket, message: &Message<'_>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let len = message.encode(&mut buf);
    let _ = socket.send(&buf[..len]);
}

fn get_request(token: u32, name: &[u8]) -> Message<'_> {
    Message::Get {
        token,
        chunk: 1430,
        offset: 0,
        name,
    }
}

/// What a server answered a request with.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Accepted,
    Refused(ErrorCode),
}

/// Sends a Get for `name` with `token` (repeated every 200 ms) until an Accept or Error
/// naming `token` arrives; the socket is left as it is (the session, if any, unacknowledged).
fn request(socket: &UdpSocket, token: u32, name: &[u8], within: Duration) -> Option<Answer> {
    let deadline = Instant::now() + within;
    let mut receiver = net::Receiver::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while Instant::now() < deadline {
        send_message(socket, &get_request(token, name));
        let resend = (Instant::now() + Duration::from_millis(200)).min(deadline);
        while let Some((len, _)) = receiver
            .recv_until(socket, &mut buf, Some(resend))
            .expect("receive")
        {
            match Message::decode(&buf[..len]) {
                Ok(Message::Accept { token: t, .. }) if t == token => {
                    return Some(Answer::Accepted)
                }
                Ok(Message::Error { session, code, .. }) if session == token => {
                    return Some(Answer::Refused(code))
                }
                _ => {}
            }
        }
    }
    None
}

/// Opens a download of `name` and never acknowledges it: the server holds the session
/// until its `--timeout`. The returned socket keeps the peer's port.
fn hold_session(server: SocketAddr, token: u32, name: &[u8]) -> UdpSocket {
    let socket = raw_socket(server);
    let answer = request(&socket, token, name, PROMPT);
    assert_eq!(
        answer,
        Some(Answer::Accepted),
        "held session {token} not accepted"
    );
    socket
}

/// Asks for a file that does not exist until the server answers with `ShuttingDown` or
/// exits (proof that it noticed a stop request), accepting `NotFound` meanwhile.
fn await_shutting_down(server: &Server, also_fine: Option<ErrorCode>) {
    let socket = raw_socket(server.addr);
    let deadline = Instant::now() + PROMPT;
    for token in 0x5000_0000u32.. {
        if has_exited(server.pid()) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "server never said it is shutting down");
        match request(
            &socket,
            token,
            b"no-such-file",
            left.min(Duration::from_millis(500)),
        ) {
            Some(Answer::Refused(ErrorCode::ShuttingDown)) => return,
            Some(Answer::Refused(code)) if Some(code) == also_fine => return,
            Some(Answer::Refused(ErrorCode::NotFound)) | None => {}
            Some(other) => panic!("unexpected answer while stopping: {other:?}"),
        }
    }
}

/// A client request driven step by step over a real socket, so a test can pause it.
struct Stepper {
    socket: UdpSocket,
    session: ClientSession,
    receiver: net::Receiver,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

impl Stepper {
    fn new(server: SocketAddr, token: u32, request: Request) -> Self {
        let config = Config {
            timeout: Duration::from_secs(10),
            ..Config::default()
        };
        Self {
            socket: raw_socket(server),
            session: ClientSession::new(Instant::now(), &config, token, request),
            receiver: net::Receiver::new(),
            inbuf: vec![0; MAX_DATAGRAM],
            outbuf: vec![0; MAX_DATAGRAM],
        }
    }

    /// Drives the session until `pause` holds, it finishes, or `within` passes; returns
    /// whether it paused or finished.
    fn run_until(&mut self, within: Duration, pause: impl Fn(&ClientSession) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let now = Instant::now();
            self.session.handle_timeout(now);
            while let Some(len) = self.session.poll_transmit(now, &mut self.outbuf) {
                let _ = self.socket.send(&self.outbuf[..len]);
            }
            if pause(&self.session) || self.session.is_finished() {
                return true;
            }
            if now >= deadline {
                return false;
            }
            let until = self
                .session
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline));
            if let Some((len, _)) = self
                .receiver
                .recv_until(&self.socket, &mut self.inbuf, Some(until))
                .expect("receive")
            {
                self.session
                    .handle_datagram(Instant::now(), &self.inbuf[..len]);
            }
        }
    }

    /// Drives the session to its end and returns its outcome.
    fn finish(&mut self) -> Outcome {
        assert!(
            self.run_until(Duration::from_secs(30), |_| false),
            "transfer did not end"
        );
        self.session
            .outcome()
            .expect("finished session has an outcome")
    }
}

/// Whether some bytes of the transfer were acknowledged (upload) or received (download).
fn under_way(session: &ClientSession) -> bool {
    session.progress().0 > 0
}

// ---------------------------------------------------------------------------------------
// Processes under a server
// ---------------------------------------------------------------------------------------

/// Whether our child `pid` has exited (it is a zombie until we reap it).
fn has_exited(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat[stat.rfind(')')? + 1..].trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// The children of `parent` and their states (`Z` is a zombie), from /proc/*/stat.
fn children_of(parent: Pid) -> Vec<(i32, char)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            // A process may exit while we look: then it is not a child any more.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            (ppid == parent.as_raw()).then_some((pid, state))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. The end-to-end suite, against every model
// ---------------------------------------------------------------------------------------

/// The suite every model passes, the server started with `extra` arguments.
fn end_to_end_suite(model: &str, extra: &[&str]) {
    let big = random_bytes(1, 1 << 20);
    let small = b"a small text file\n".to_vec();
    let dirs = Dirs::with(&[("big.bin", &big), ("empty", b""), ("small.txt", &small)]);
    let server = Server::start(model, dirs.root(), extra);
    let addr = server.addr;

    let mut entries = client(addr).list().expect("list");
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let listed: Vec<(&[u8], u64)> = entries.iter().map(|e| (&e.name[..], e.size)).collect();
    assert_eq!(
        listed,
        [
            (&b"big.bin"[..], 1 << 20),
            (b"empty", 0),
            (b"small.txt", small.len() as u64)
        ],
        "{model}: listing"
    );

    for (name, want) in [
        ("big.bin", &big),
        ("empty", &Vec::new()),
        ("small.txt", &small),
    ] {
        let got = download(addr, name, dirs.scratch(), name).expect("download");
        assert_same(&format!("{model}: get {name}"), &got, want);
    }

    let up_big = random_bytes(2, 1 << 20);
    upload(addr, "up-big.bin", &up_big, dirs.scratch()).expect("upload 1 MiB");
    upload(addr, "up-empty", b"", dirs.scratch()).expect("upload empty file");
    assert_same(
        &format!("{model}: put up-big.bin"),
        &dirs.read("up-big.bin"),
        &up_big,
    );
    assert_same(
        &format!("{model}: put up-empty"),
        &dirs.read("up-empty"),
        b"",
    );

    concurrent_clients(addr, &dirs, 8, "big.bin", &big);
    assert_eq!(
        temp_files(dirs.root()),
        Vec::<PathBuf>::new(),
        "{model}: temporary files left"
    );

    let stopped = server.stop();
    assert!(stopped.contains(" failed=0 "), "{model}: {stopped}");
}

#[test]
fn loop_model_passes_the_end_to_end_suite() {
    // A server lingers after a completed upload for its --timeout (to answer a repeated
    // Done), and the loop serves no one else meanwhile; waiting clients retry in lockstep
    // every 2 s (no jitter in the client's backoff). A short timeout keeps the turn-taking
    // of the concurrent clients to one round each.
    end_to_end_suite("loop", &["--timeout", "1"]);
}

#[test]
fn table_model_passes_the_end_to_end_suite() {
    end_to_end_suite("table", &[]);
}

#[test]
fn threads_model_passes_the_end_to_end_suite() {
    end_to_end_suite("threads", &[]);
}

#[test]
fn fork_model_passes_the_end_to_end_suite() {
    end_to_end_suite("fork", &[]);
}

// ---------------------------------------------------------------------------------------
// 2. The loop answers busy
// ---------------------------------------------------------------------------------------

#[test]
fn loop_model_answers_busy_while_serving_and_serves_the_waiting_client_after() {
    let content = random_bytes(3, 256 << 10);
    let dirs = Dirs::with(&[("file", b"held"), ("wanted.bin", &content)]);
    let server = Server::start("loop", dirs.root(), &["--timeout", "2"]);
    let addr = server.addr;

    // The one session the loop serves, held open until the server's timeout.
    let _held = hold_session(addr, 0x4001, b"file");

    let mut cli = Proc::spawn(
        Command::new(UDPFT)
            .args(["get", "wanted.bin", "--server", &addr.to_string(), "-o"])
            .arg(dirs.scratch().join("cli.bin")),
        false,
    );
    let mut busy = 0;
    let report = client(addr)
        .get(
            "wanted.bin",
            &Destination::File(dirs.scratch().join("lib.bin")),
            false,
            &mut |event| {
                if let Event::Busy { .. } = event {
                    busy += 1;
                }
            },
        )
        .expect("download after the busy period");
    assert!(busy >= 1, "the client was never told the server is busy");
    assert_eq!(report.size, content.len() as u64);
    assert_same(
        "library client",
        &fs::read(dirs.scratch().join("lib.bin")).expect("downloaded file"),
        &content,
    );

    let status = cli.wait(Duration::from_secs(60)).expect("udpft get exits");
    let stderr = cli.stderr_text();
    assert!(status.success(), "udpft get: {status}; stderr: {stderr}");
    assert!(
        stderr.contains("server busy, retrying"),
        "udpft get did not say the server was busy: {stderr}"
    );
    assert_same(
        "command-line client",
        &fs::read(dirs.scratch().join("cli.bin")).expect("downloaded file"),
        &content,
    );

    let stopped = server.stop();
    assert!(!stopped.contains(" refused=0 "), "{stopped}");
}

// ---------------------------------------------------------------------------------------
// 3. The fork model leaves no zombie
// ---------------------------------------------------------------------------------------

#[test]
fn fork_model_reaps_every_session_process() {
    let content = random_bytes(4, 64 << 10);
    let dirs = Dirs::with(&[("file", b"held"), ("data.bin", &content)]);
    let server = Server::start("fork", dirs.root(), &["--timeout", "2"]);
    let addr = server.addr;
    let pid = server.pid();

    // The scan sees a session process while one is open (so an empty scan means something).
    let held = hold_session(addr, 0x4002, b"file");
    let live = poll_until(Instant::now() + PROMPT, || {
        let children = children_of(pid);
        (!children.is_empty()).then_some(children)
    });
    assert!(live.is_some(), "no session process seen under the server");

    for i in 0..3 {
        let got = download(addr, "data.bin", dirs.scratch(), &format!("dl-{i}")).expect("get");
        assert_same("fork get", &got, &content);
        upload(addr, &format!("up-{i}"), &content, dirs.scratch()).expect("put");
        client(addr).list().expect("list");
    }
    drop(held);

    // Sessions end on their own (the held one at its timeout); each process is reaped.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = poll_until(deadline, || children_of(pid).is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "children left under the fork server: {:?}",
        children_of(pid)
    );
    assert!(
        !children_of(pid).iter().any(|(_, state)| *state == 'Z'),
        "zombies under the fork server"
    );

    let stopped = server.stop();
    assert!(stopped.contains(" completed=9 "), "{stopped}");
}

// ---------------------------------------------------------------------------------------
// 4. threads and fork respect --max-sessions
// ---------------------------------------------------------------------------------------

fn refuses_sessions_past_the_limit(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents of file")]);
    let server = Server::start(
        model,
        dirs.root(),
        &["--max-sessions", "2", "--timeout", "2"],
    );
    let addr = server.addr;

    let held = [
        hold_session(addr, 0x4101, b"file"),
        hold_session(addr, 0x4102, b"file"),
    ];
    let third = raw_socket(addr);
    let answer = request(&third, 0x4103, b"file", PROMPT);
    assert_eq!(
        answer,
        Some(Answer::Refused(ErrorCode::Busy)),
        "{model}: third session past --max-sessions 2"
    );

    // Once the held sessions time out, their slots are free again.
    drop(held);
    let got = download(addr, "file", dirs.scratch(), "after").expect("download after");
    assert_same("after the limit", &got, b"contents of file");
    server.stop();
}

#[test]
fn threads_model_refuses_sessions_past_max_sessions() {
    refuses_sessions_past_the_limit("threads");
}

#[test]
fn fork_model_refuses_sessions_past_max_sessions() {
    refuses_sessions_past_the_limit("fork");
}

// ---------------------------------------------------------------------------------------
// 5. Table workers
// ---------------------------------------------------------------------------------------

#[test]
fn table_model_with_two_workers_serves_eight_concurrent_clients() {
    let shared = random_bytes(5, 512 << 10);
    let dirs = Dirs::with(&[("shared.bin", &shared)]);
    let server = Server::start("table", dirs.root(), &["--workers", "2"]);
    concurrent_clients(server.addr, &dirs, 8, "shared.bin", &shared);
    let stopped = server.stop();
    assert!(stopped.contains(" completed=8 "), "{stopped}");
}

// ---------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------

/// How the test asks the server to stop.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM to the server process only (`kill PID`).
    Process,
    /// SIGTERM to its whole process group (Ctrl-C in a terminal, systemd).
    Group,
}

/// A server for a shutdown test: the leader of its own group if the test signals the group.
fn start_for_stop(model: &str, root: &Path, extra: &[&str], stop: Stop) -> Server {
    Server::start_with(model, root, extra, matches!(stop, Stop::Group))
}

fn send_stop(server: &Server, stop: Stop) {
    match stop {
        Stop::Process => server.proc.signal(Signal::SIGTERM),
        Stop::Group => killpg(server.pid(), Signal::SIGTERM).expect("signal own group"),
    }
}

fn sigterm_lets_a_running_download_finish(model: &str, stop: Stop) {
    let content = random_bytes(6, 256 << 10);
    let dirs = Dirs::with(&[("movie.bin", &content)]);
    let mut server = start_for_stop(model, dirs.root(), &["--grace", "10"], stop);

    let sink = Arc::new(Mutex::new(MemSink::default()));
    let mut download = Stepper::new(
        server.addr,
        0x4201,
        Request::Get {
            name: b"movie.bin".to_vec(),
            sink: Box::new(Arc::clone(&sink)),
            offset: 0,
            resume_crc: 0,
        },
    );
    assert!(
        download.run_until(PROMPT, under_way),
        "download never started"
    );
    assert!(
        !download.session.is_finished(),
        "download finished too soon"
    );

    send_stop(&server, stop);
    // The loop model answers Busy to everyone while its one session runs.
    let busy_is_fine = (model == "loop").then_some(ErrorCode::Busy);
    await_shutting_down(&server, busy_is_fine);

    let outcome = download.finish();
    assert_eq!(outcome, Outcome::Complete, "{model}: download at SIGTERM");
    let got = std::mem::take(&mut sink.lock().expect("sink").data);
    assert_same(&format!("{model}: download at SIGTERM"), &got, &content);

    let stopped = server.expect_exit();
    assert!(stopped.contains(" completed=1 "), "{model}: {stopped}");
}

fn sigterm_abandons_a_running_upload(model: &str, stop: Stop) {
    let dirs = Dirs::with(&[]);
    let mut server = start_for_stop(model, dirs.root(), &["--grace", "10"], stop);

    let content = random_bytes(7, 256 << 10);
    let mut upload = Stepper::new(
        server.addr,
        0x4301,
        Request::Put {
            name: b"upload.bin".to_vec(),
            size: content.len() as u64,
            source: Box::new(MemSource(content)),
            overwrite: false,
        },
    );
    assert!(upload.run_until(PROMPT, under_way), "upload never started");
    assert!(!upload.session.is_finished(), "upload finished too soon");
    assert_eq!(temp_files(dirs.root()).len(), 1, "upload's temporary file");

    send_stop(&server, stop);
    let busy_is_fine = (model == "loop").then_some(ErrorCode::Busy);
    await_shutting_down(&server, busy_is_fine);

    match upload.finish() {
        Outcome::Failed(Failure::Peer {
            code: ErrorCode::ShuttingDown,
            ..
        }) => {}
        other => panic!("{model}: upload at SIGTERM ended with {other:?}"),
    }
    let stopped = server.expect_exit();
    assert!(stopped.contains(" completed=0 "), "{model}: {stopped}");
    assert!(
        !dirs.root().join("upload.bin").exists(),
        "{model}: abandoned upload appeared"
    );
    assert_eq!(
        temp_files(dirs.root()),
        Vec::<PathBuf>::new(),
        "{model}: temporary file left"
    );
}

#[test]
fn loop_model_on_sigterm_finishes_the_running_download() {
    sigterm_lets_a_running_download_finish("loop", Stop::Process);
}

#[test]
fn table_model_on_sigterm_finishes_the_running_download() {
    sigterm_lets_a_running_download_finish("table", Stop::Process);
}

#[test]
fn threads_model_on_sigterm_finishes_the_running_download() {
    sigterm_lets_a_running_download_finish("threads", Stop::Process);
}

#[test]
fn fork_model_on_sigterm_finishes_the_running_download() {
    sigterm_lets_a_running_download_finish("fork", Stop::Process);
}

#[test]
fn loop_model_on_sigterm_abandons_the_running_upload() {
    sigterm_abandons_a_running_upload("loop", Stop::Process);
}

#[test]
fn table_model_on_sigterm_abandons_the_running_upload() {
    sigterm_abandons_a_running_upload("table", Stop::Process);
}

#[test]
fn threads_model_on_sigterm_abandons_the_running_upload() {
    sigterm_abandons_a_running_upload("threads", Stop::Process);
}

/// A `kill PID` reaches only the fork model's parent, which must pass the stop on to its
/// session processes (the test after this one signals the whole group instead).
#[test]
fn fork_model_on_sigterm_abandons_the_running_upload() {
    sigterm_abandons_a_running_upload("fork", Stop::Process);
}

#[test]
fn fork_model_on_sigterm_to_its_group_abandons_the_running_upload() {
    sigterm_abandons_a_running_upload("fork", Stop::Group);
}

/// An upload stalled at SIGTERM must not outlive the grace period as a temporary file.
fn stalled_upload_leaves_nothing_after_the_grace_period(model: &str, stop: Stop) {
    let dirs = Dirs::with(&[]);
    let mut server = start_for_stop(model, dirs.root(), &["--grace", "1"], stop);
    let content = random_bytes(9, 256 << 10);
    let mut upload = Stepper::new(
        server.addr,
        0x4401,
        Request::Put {
            name: b"stalled.bin".to_vec(),
            size: content.len() as u64,
            source: Box::new(MemSource(content)),
            overwrite: false,
        },
    );
    assert!(upload.run_until(PROMPT, under_way), "upload never started");
    assert_eq!(temp_files(dirs.root()).len(), 1, "upload's temporary file");

    // The client goes quiet; the server stops on its own within the grace period.
    send_stop(&server, stop);
    server.expect_exit();
    drop(upload);
    assert!(
        !dirs.root().join("stalled.bin").exists(),
        "{model}: upload appeared"
    );
    assert_eq!(
        temp_files(dirs.root()),
        Vec::<PathBuf>::new(),
        "{model}: temporary file left"
    );
}

#[test]
fn table_model_on_sigterm_leaves_no_temporary_file_of_a_stalled_upload() {
    stalled_upload_leaves_nothing_after_the_grace_period("table", Stop::Process);
}

#[test]
fn fork_model_on_sigterm_to_its_group_leaves_no_temporary_file_of_a_stalled_upload() {
    stalled_upload_leaves_nothing_after_the_grace_period("fork", Stop::Group);
}

/// A session process that never heard of the stop would be SIGKILLed by the parent at the
/// end of the grace period, and nothing would remove its temporary file.
#[test]
fn fork_model_on_sigterm_leaves_no_temporary_file_of_a_stalled_upload() {
    stalled_upload_leaves_nothing_after_the_grace_period("fork", Stop::Process);
}

// ---------------------------------------------------------------------------------------
// 7. Every model behind the lossy proxy
// ---------------------------------------------------------------------------------------

/// A `lossy-proxy` in front of `upstream`, dropping `loss` of the datagrams each way.
fn start_proxy(upstream: SocketAddr, loss: &str, seed: u64) -> (Proc, SocketAddr) {
    let mut proxy = Proc::spawn(
        Command::new(LOSSY_PROXY).args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.to_string(),
            "--loss",
            loss,
            "--seed",
            &seed.to_string(),
            "--duration",
            "120",
        ]),
        false,
    );
    let line = proxy
        .next_line(PROMPT)
        .unwrap_or_else(|| panic!("lossy-proxy printed nothing: {}", proxy.stderr_text()));
    // listening on ADDR:PORT, ...
    let addr = line
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from lossy-proxy: {line:?}"));
    (proxy, addr)
}

/// Gets and puts a 256 KiB file through a proxy dropping 10% each way with `seed`.
fn move_files_through_loss(model: &str, seed: u64, content: &[u8]) {
    let dirs = Dirs::with(&[("lossy.bin", content)]);
    let server = Server::start(model, dirs.root(), &[]);
    let (proxy, addr) = start_proxy(server.addr, "0.1", seed);
    let got = download(addr, "lossy.bin", dirs.scratch(), "got.bin")
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    assert_same(&format!("{model}: get through loss"), &got, content);
    upload(addr, "back.bin", content, dirs.scratch()).unwrap_or_else(|e| panic!("{model}: {e}"));
    assert_same(
        &format!("{model}: put through loss"),
        &dirs.read("back.bin"),
        content,
    );
    drop(proxy);
    server.stop();
}

#[test]
fn every_model_moves_files_through_ten_percent_loss_each_way() {
    let content = random_bytes(8, 256 << 10);
    let seeds = [11, 12, 13, 15];
    std::thread::scope(|scope| {
        for (model, seed) in MODELS.into_iter().zip(seeds) {
            let content = &content;
            scope.spawn(move || move_files_through_loss(model, seed, content));
        }
    });
}

/// With seed 14 the proxy drops the client's first two Acks of the Accept. The server may
/// repeat its Accept only within 3x the bytes of the request (anti-amplification) until the
/// client echoes the session id, so the client must repeat Ack 0 on its own timer until
/// Data 1 arrives, or both ends wait until they time out (a stall once seen here).
#[test]
fn a_download_survives_losing_the_acks_of_the_accept() {
    move_files_through_loss("table", 14, &random_bytes(8, 256 << 10));
}
