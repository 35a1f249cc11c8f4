//! Live servers and clients on real sockets, for the tests that run them (as opposed to the
//! simulated network of `tests/common`): an in-process server over a temporary library, the
//! real `udpft` binary run as a child process with a deadline (it is killed by its PID and
//! the test fails if it overstays), a silent UDP socket and a closed port to talk to, and
//! ([`servers`]) `udpft serve` processes of any model with raw protocol sockets.

#![allow(dead_code)] // each test binary uses its own part of the helpers

/// One test per server model for a suite `fn(model: &str)`: a module named for the suite
/// holding a test per model (`end_to_end_suite::fork`), so every model runs the same code.
#[allow(unused_macros)] // only the per-model suites use it
macro_rules! for_models {
    ($suite:ident) => {
        for_models!($suite: loop_model "loop", table "table", threads "threads", fork "fork");
    };
    ($suite:ident: $($test:ident $model:literal),+) => {
        mod $suite {
            $(
                #[test]
                fn $test() {
                    super::$suite($model)
                }
            )+
        }
    };
}

pub mod servers;

/// Says that the calling test could not do what it is for here, and why: on stderr, and in
/// the file `$UDPFT_SKIPPED` names (CI counts its lines as skipped tests, not passes).
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    eprintln!("SKIPPED: {test}: {reason}");
    if let Some(path) = std::env::var_os("UDPFT_SKIPPED") {
        use std::io::Write;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use udpft::library::{Library, LibraryOptions};
use udpft::server::{self, ServerConfig, ServerHandle};

/// The longest any child process may run before it is killed and the test fails.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// The default chunk size of the client (one datagram's payload).
pub const CHUNK: usize = udpft::proto::wire::DEFAULT_CHUNK as usize;

/// A running in-process server sharing a temporary library folder.
pub struct Served {
    /// The library folder (removed when dropped).
    pub library: TempDir,
    /// The server; `None` once stopped.
    pub server: Option<ServerHandle>,
}

impl Served {
    /// A server on 127.0.0.1 (a free port) sharing a library holding `files`.
    pub fn with_files(files: &[(&str, &[u8])]) -> Self {
        Self::bound("127.0.0.1:0".parse().expect("address"), files).expect("server starts")
    }

    /// A server on `bind` sharing a library holding `files`.
    ///
    /// # Errors
    /// If the server cannot bind `bind`.
    pub fn bound(bind: SocketAddr, files: &[(&str, &[u8])]) -> std::io::Result<Self> {
        Self::configured(bind, files, ServerConfig::default())
    }

    /// A server on `bind` with `config`, sharing a library holding `files`.
    ///
    /// # Errors
    /// If the server cannot bind `bind`.
    pub fn configured(
        bind: SocketAddr,
        files: &[(&str, &[u8])],
        config: ServerConfig,
    ) -> std::io::Result<Self> {
        let library = tempfile::tempdir().expect("temporary library folder");
        for (name, bytes) in files {
            std::fs::write(library.path().join(name), bytes).expect("library file written");
        }
        let opened = Library::open(library.path(), LibraryOptions::default())?;
        let server = server::spawn(bind, opened, config)?;
        Ok(Self {
            library,
            server: Some(server),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("server running").addr
    }

    /// The path of `name` in the library folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.library.path().join(name)
    }

    /// Stops the server and returns its counters.
    pub fn stop(&mut self) -> udpft::proto::stats::ServerStats {
        self.server
            .take()
            .expect("server running")
            .stop()
            .expect("server loop ends cleanly")
    }
}

/// A command running the real `udpft` binary with `args`, with `UDPFT_SERVER` removed so the
/// caller's environment cannot change what a test talks to.
pub fn udpft<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_udpft"));
    command.args(args).env_remove("UDPFT_SERVER");
    command
}

/// How a child process ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code.
    pub code: i32,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error, as text.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Finished {
    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with the child's output unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "exit code {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code,
            self.out(),
            self.stderr
        );
        self
    }
}

/// Runs `command` to its end with empty input, within [`CHILD_DEADLINE`]; a child still
/// running then is killed by its PID and the test fails.
pub fn run(command: &mut Command) -> Finished {
    run_within(command, b"", CHILD_DEADLINE)
}

/// [`run`] with `stdin` as the child's input.
pub fn run_with_input(command: &mut Command, stdin: &[u8]) -> Finished {
    run_within(command, stdin, CHILD_DEADLINE)
}

/// [`run`] with a chosen deadline.
pub fn run_within(command: &mut Command, stdin: &[u8], deadline: Duration) -> Finished {
    let mut running = Running::start(command, Stdio::piped());
    let mut input = running.child.stdin.take().expect("piped stdin");
    let input_bytes = stdin.to_vec();
    // Written on its own thread so a child that does not read yet never blocks the test.
    let writer = thread::spawn(move || {
        // A child that exits without reading its input closes the pipe: not an error here.
        let _ = input.write_all(&input_bytes);
    });
    let finished = running.finish_within(deadline);
    writer.join().expect("stdin writer");
    finished
}

/// A child process still running, its output collected on threads (so a chatty child never
/// blocks on a full pipe). Dropped unfinished, it is killed by its PID.
pub struct Running {
    /// The child.
    pub child: Child,
    started: Instant,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts `command` with `stdin`, collecting its standard output and error.
    pub fn start(command: &mut Command, stdin: Stdio) -> Self {
        let mut running = Self::start_with_stdout(command, stdin);
        let mut out_pipe = running.child.stdout.take().expect("piped stdout");
        running.stdout = Some(thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out_pipe.read_to_end(&mut bytes);
            bytes
        }));
        running
    }

    /// Starts `command` with `stdin`, collecting its standard error; its standard output
    /// is left in `child.stdout` for the caller to read.
    pub fn start_with_stdout(command: &mut Command, stdin: Stdio) -> Self {
        let started = Instant::now();
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("udpft binary starts");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let stderr = thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = err_pipe.read_to_end(&mut bytes);
            bytes
        });
        Self {
            child,
            started,
            stdout: None,
            stderr: Some(stderr),
        }
    }

    /// Waits for the child to end within `deadline` of its start; a child still running
    /// then is killed by its PID and the test fails.
    pub fn finish_within(mut self, deadline: Duration) -> Finished {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                break status;
            }
            if self.started.elapsed() > deadline {
                // `Child::kill` signals exactly this child's PID.
                let pid = self.child.id();
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("udpft (pid {pid}) still running after {deadline:?}: killed");
            }
            thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        let stdout = self
            .stdout
            .take()
            .map_or_else(Vec::new, |t| t.join().expect("stdout reader"));
        let stderr = self.stderr.take().expect("stderr reader").join();
        let stderr = String::from_utf8_lossy(&stderr.expect("stderr reader")).into_owned();
        Finished {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            elapsed,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `condition` holds, checking every few milliseconds, for at most `deadline`;
/// panics naming `what` if it never does.
pub fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A small tmpfs mounted for one test on a folder inside its temporary folder, unmounted
/// when dropped (a disk that fills up, for real).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`1m`) on `path`; `None` where this process may not mount
    /// (not root, or no such capability in the container).
    pub fn mount(path: &Path, size: &str) -> Option<Self> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Self(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Sends `child` what Ctrl-C sends (SIGINT), to its PID.
pub fn interrupt(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a PID"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT sent");
}

/// A UDP socket on loopback that never answers, and can tell whether anything was sent to
/// it: a "server" for checking that a command failed before sending a single datagram.
pub struct Silent {
    socket: std::net::UdpSocket,
}

impl Silent {
    /// Binds a free loopback port.
    pub fn new() -> Self {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
        socket.set_nonblocking(true).expect("non-blocking");
        Self { socket }
    }

    /// Its address, as `--server` takes it.
    pub fn addr(&self) -> String {
        self.socket.local_addr().expect("address").to_string()
    }

    /// Whether a datagram has arrived (call after the client ended).
    pub fn received_anything(&self) -> bool {
        let mut buf = [0u8; 2048];
        self.socket.recv_from(&mut buf).is_ok()
    }
}

/// A loopback UDP port where nothing listens (bound a moment, then released): the kernel
/// answers datagrams to it with ICMP port-unreachable.
pub fn closed_port() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe socket");
    socket.local_addr().expect("address").to_string()
}

/// Asserts that the file at `path` holds exactly `expected` (without dumping megabytes).
pub fn assert_file_eq(path: &Path, expected: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
    assert_eq!(got.len(), expected.len(), "{}: length", path.display());
    assert!(got == expected, "{}: contents differ", path.display());
}

/// The hidden partial file a download of `name` keeps in `dir`.
pub fn partial_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.udpft-part"))
}

/// The names of the entries of `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("folder readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
