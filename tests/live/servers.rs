//! Real server processes for the tests: `udpft serve` as a child process (any model) with
//! its stderr read on a thread and a guard that stops and reaps it with a deadline, raw UDP
//! sockets that speak the protocol by hand (requests, held sessions), library folders, and
//! the processes under a server (the fork model's children).

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions, Destination};
use udpft::library::TEMP_PREFIX;
use udpft::link::seeded_bytes;
use udpft::net;
use udpft::proto::client::{ClientSession, Request};
use udpft::proto::wire::MAX_DATAGRAM;
use udpft::proto::{Config, ErrorCode, Message, Outcome};

/// The `udpft` binary under test.
pub const UDPFT: &str = env!("CARGO_BIN_EXE_udpft");

pub const MODELS: [&str; 4] = ["loop", "table", "threads", "fork"];

/// Generous bound for anything that should take milliseconds on loopback.
pub const PROMPT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

/// A child process whose stderr is read line by line on a thread. Dropped before it was
/// reaped, it gets SIGTERM, then (past a deadline) SIGKILL, for its whole process group if
/// it leads one.
pub struct Proc {
    pub child: Child,
    pub lines: Receiver<String>,
    pub stderr: Vec<String>,
    pub reaped: bool,
    pub own_group: bool,
}

impl Proc {
    /// Spawns `command` with stdin and stdout null and stderr piped; with `own_group`, as
    /// the leader of a new process group.
    pub fn spawn(command: &mut Command, own_group: bool) -> Self {
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

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal own child");
    }

    /// The next stderr line, if one comes within `within`.
    pub fn next_line(&mut self, within: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(within).ok()?;
        self.stderr.push(line.clone());
        Some(line)
    }

    /// Waits until the process exited and its stderr is closed, at most `within`.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
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
    pub fn stderr_text(&self) -> String {
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
pub fn poll_until<T>(deadline: Instant, mut check: impl FnMut() -> Option<T>) -> Option<T> {
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
pub struct Server {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub model: String,
}

impl Server {
    /// Starts `udpft serve --model MODEL` on `root` with `extra` arguments and reads the
    /// address it bound from its first stderr line.
    pub fn start(model: &str, root: &Path, extra: &[&str]) -> Self {
        Self::start_with(model, root, extra, false)
    }

    /// [`Server::start`], optionally as the leader of its own process group.
    pub fn start_with(model: &str, root: &Path, extra: &[&str], own_group: bool) -> Self {
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

    pub fn pid(&self) -> Pid {
        self.proc.pid()
    }

    /// Sends SIGTERM and returns the `stopped;` line after checking the exit status.
    pub fn stop(mut self) -> String {
        self.proc.signal(Signal::SIGTERM);
        self.expect_exit()
    }

    /// Waits for a clean exit (a stop was already asked for) and returns the stats line.
    pub fn expect_exit(&mut self) -> String {
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

/// The `lossy-proxy` binary under test.
pub const LOSSY_PROXY: &str = env!("CARGO_BIN_EXE_lossy-proxy");

/// A `lossy-proxy` process on a free loopback port in front of a server; it stops by itself
/// after two minutes should a test never stop it.
pub struct LossyProxy {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl LossyProxy {
    /// Starts `lossy-proxy` in front of `upstream` with `args` (impairments, seed) and reads
    /// its address from its first stderr line.
    pub fn start(upstream: SocketAddr, args: &[&str]) -> Self {
        let mut proc = Proc::spawn(
            Command::new(LOSSY_PROXY)
                .args(["--listen", "127.0.0.1:0", "--upstream"])
                .arg(upstream.to_string())
                .args(["--duration", "120"])
                .args(args),
            false,
        );
        let line = proc
            .next_line(PROMPT)
            .unwrap_or_else(|| panic!("lossy-proxy printed nothing: {}", proc.stderr_text()));
        // lossy-proxy: listening on ADDR:PORT, forwarding to ...
        let addr = line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split([',', ' ']).next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from lossy-proxy: {line:?}"));
        Self { proc, addr }
    }

    /// Stops the proxy (SIGTERM) and returns the counters of `direction` (`up` or `down`)
    /// it printed, by name (`dropped`, `queue_peak`...).
    pub fn stop(mut self, direction: &str) -> std::collections::HashMap<String, u64> {
        self.proc.signal(Signal::SIGTERM);
        self.proc
            .wait(PROMPT)
            .unwrap_or_else(|| panic!("lossy-proxy did not stop: {}", self.proc.stderr_text()));
        let prefix = format!("lossy-proxy: {direction} ");
        let stderr = self.proc.stderr_text();
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {direction} counters from lossy-proxy: {stderr}"));
        line.split_whitespace()
            .filter_map(|field| {
                let (key, value) = field.split_once('=')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Files and clients
// ---------------------------------------------------------------------------------------

/// Asserts equality of file contents without printing megabytes on failure.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    let first_difference = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{what}: got {} bytes, want {}; first difference at {first_difference:?}",
        got.len(),
        want.len()
    );
}

pub fn options() -> ClientOptions {
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

pub fn client(addr: SocketAddr) -> Client {
    Client::new(addr, options()).expect("client socket")
}

/// Downloads `name` into `dir` and returns its bytes.
pub fn download(addr: SocketAddr, name: &str, dir: &Path, local: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(local);
    client(addr)
        .get(name, &Destination::File(path.clone()), false, &mut |_| {})
        .map_err(|e| format!("get {name}: {e}"))?;
    fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))
}

/// Uploads `bytes` (written to a file in `dir` first) as `name`.
pub fn upload(addr: SocketAddr, name: &str, bytes: &[u8], dir: &Path) -> Result<(), String> {
    let path = dir.join(format!("local-{name}"));
    fs::write(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    client(addr)
        .put(&path, name, false, &mut |_| {})
        .map(|_| ())
        .map_err(|e| format!("put {name}: {e}"))
}

/// The library's hidden temporary files (uploads in progress or left behind).
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
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
pub struct Dirs {
    pub library: tempfile::TempDir,
    pub scratch: tempfile::TempDir,
}

impl Dirs {
    /// A library holding `files`.
    pub fn with(files: &[(&str, &[u8])]) -> Self {
        let dirs = Self {
            library: tempfile::tempdir().expect("library dir"),
            scratch: tempfile::tempdir().expect("scratch dir"),
        };
        for (name, bytes) in files {
            fs::write(dirs.library.path().join(name), bytes).expect("write library file");
        }
        dirs
    }

    pub fn root(&self) -> &Path {
        self.library.path()
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.root().join(name)).unwrap_or_else(|e| panic!("library file {name}: {e}"))
    }
}

/// `clients` threads at once, even ones downloading `shared` (whose bytes are `want`),
/// odd ones uploading a file of their own; every transfer must arrive byte-identical.
pub fn concurrent_clients(
    addr: SocketAddr,
    dirs: &Dirs,
    clients: usize,
    shared: &str,
    want: &[u8],
) {
    let uploads: Vec<Vec<u8>> = (0..clients)
        .map(|i| seeded_bytes(100 + i as u64, (256 << 10) + 97 * i))
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
pub fn raw_socket(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind raw socket");
    socket.connect(server).expect("connect raw socket");
    socket
}

/// Sends one datagram. A failure (an ICMP error from a server that has exited) is the
/// same as a loss to the caller.
pub fn send_message(socket: &UdpSocket, message: &Message<'_>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let len = message.encode(&mut buf);
    let _ = socket.send(&buf[..len]);
}

pub fn get_request(token: u32, name: &[u8]) -> Message<'_> {
    Message::Get {
        token,
        chunk: 1430,
        window: 1,
        offset: 0,
        name,
    }
}

/// What a server answered a request with.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted, opening this session id.
    Accepted(u32),
    Refused(ErrorCode),
}

/// Sends a Get for `name` with `token` (repeated every 200 ms) until an Accept or Error
/// naming `token` arrives; the socket is left as it is (the session, if any, unacknowledged).
pub fn request(socket: &UdpSocket, token: u32, name: &[u8], within: Duration) -> Option<Answer> {
    ask(socket, &get_request(token, name), within)
}

/// Sends the request `message` (repeated every 200 ms) until an Accept or Error naming its
/// token arrives.
pub fn ask(socket: &UdpSocket, message: &Message<'_>, within: Duration) -> Option<Answer> {
    let token = message.session();
    let deadline = Instant::now() + within;
    let mut receiver = net::Receiver::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while Instant::now() < deadline {
        send_message(socket, message);
        let resend = (Instant::now() + Duration::from_millis(200)).min(deadline);
        while let Some((len, _)) = receiver
            .recv_until(socket, &mut buf, Some(resend))
            .expect("receive")
        {
            match Message::decode(&buf[..len]) {
                Ok(Message::Accept {
                    token: t, session, ..
                }) if t == token => return Some(Answer::Accepted(session)),
                Ok(Message::Error { session, code, .. }) if session == token => {
                    return Some(Answer::Refused(code))
                }
                _ => {}
            }
        }
    }
    None
}

/// A socket bound to the loopback address `ip` (any of 127/8), connected to `server`.
pub fn socket_from(ip: &str, server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("bind raw socket");
    socket.connect(server).expect("connect raw socket");
    socket
}

/// Opens a download of `name`, proves this socket's address (Ack 0, so the server opens
/// the session) and never acknowledges a chunk: the server holds the session until its
/// `--timeout`. The returned socket keeps the peer's port.
pub fn hold_session(server: SocketAddr, token: u32, name: &[u8]) -> UdpSocket {
    let socket = raw_socket(server);
    let Some(Answer::Accepted(session)) = request(&socket, token, name, PROMPT) else {
        panic!("held session {token} not accepted");
    };
    send_message(&socket, &Message::Ack { session, seq: 0 });
    // Data 1 shows the session is open (until then a stop would find nothing to wait for).
    let deadline = Instant::now() + PROMPT;
    let mut receiver = net::Receiver::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while Instant::now() < deadline {
        if let Some((len, _)) = receiver
            .recv_until(&socket, &mut buf, Some(deadline))
            .expect("receive")
        {
            if matches!(Message::decode(&buf[..len]), Ok(Message::Data { session: s, .. }) if s == session)
            {
                return socket;
            }
        }
    }
    panic!("held session {token} never sent Data 1");
}

/// Asks for a file that does not exist until the server answers with `ShuttingDown` or
/// exits (proof that it noticed a stop request), accepting `NotFound` meanwhile.
pub fn await_shutting_down(server: &Server, also_fine: Option<ErrorCode>) {
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
pub struct Stepper {
    pub socket: UdpSocket,
    pub session: ClientSession,
    pub receiver: net::Receiver,
    pub inbuf: Vec<u8>,
    pub outbuf: Vec<u8>,
}

impl Stepper {
    pub fn new(server: SocketAddr, token: u32, request: Request) -> Self {
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
    pub fn run_until(&mut self, within: Duration, pause: impl Fn(&ClientSession) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let now = Instant::now();
            self.session.handle_timeout(now);
            while let Some(datagram) = self.session.poll_transmit(now, &mut self.outbuf) {
                let _ = self.socket.send(datagram);
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
    pub fn finish(&mut self) -> Outcome {
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
pub fn under_way(session: &ClientSession) -> bool {
    session.progress().0 > 0
}

// ---------------------------------------------------------------------------------------
// Processes under a server
// ---------------------------------------------------------------------------------------

/// Whether our child `pid` has exited (it is a zombie until we reap it).
pub fn has_exited(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat[stat.rfind(')')? + 1..].trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// The children of `parent` and their states (`Z` is a zombie), from /proc/*/stat.
pub fn children_of(parent: Pid) -> Vec<(i32, char)> {
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
