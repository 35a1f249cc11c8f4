//! Child processes of the benchmarks: finding the `udpft` and `lossy-proxy` binaries,
//! starting a real server or proxy, waiting until it answers, and a guard that stops it by
//! its PID however the benchmark ends (return, error or panic).
//!
//! Each child's stderr goes to a log file in the run's scratch folder, never to a pipe: a
//! pipe nobody drains would block the child once full. The log also tells us the proxy's
//! address (its first line) and explains a child that died early.

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions};
use udpft::proto::Config;

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Pause between checks of a child's state while waiting for it (start-up, exit).
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// How long a server gets to start answering.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// Tries at starting a server on a fresh port (another program may take the port between
/// our probe and the server's bind).
const PORT_TRIES: u32 = 5;

/// The path of `name` in the folder of this executable (where cargo puts all the crate's
/// binaries), unless `explicit` names one.
///
/// # Errors
/// If the binary is not there.
pub fn locate_bin(name: &str, explicit: Option<&Path>) -> io::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| io::Error::other("the executable has no folder"))?
            .join(name),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found (build it with `cargo build --release --bins`, or pass its path)",
                path.display()
            ),
        ))
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago: bound to port 0, then released.
///
/// # Errors
/// If no socket can be bound.
pub fn free_udp_port() -> io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// A running child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Starts `command` with its stderr (and stdout) appended to `log`.
    ///
    /// # Errors
    /// If the log cannot be created or the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> io::Result<Self> {
        let err = File::create(log)?;
        let out = err.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// What the child wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Asks the child to stop (SIGTERM to its PID), waits up to [`STOP_GRACE`], then
    /// kills it (SIGKILL to its PID). Returns how it ended.
    ///
    /// # Errors
    /// If waiting for the child fails.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            std::thread::sleep(CHECK_EVERY);
        }
        eprintln!(
            "udpft-bench: {} (pid {}) ignored SIGTERM for {:.0} s; killing it",
            self.name,
            self.child.id(),
            STOP_GRACE.as_secs_f64()
        );
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// How to run a `udpft serve` child. Extra arguments (`--model`, `--workers`...) go to the
/// server as they are.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The `udpft` binary.
    pub bin: PathBuf,
    /// The library folder.
    pub root: PathBuf,
    /// Further `serve` arguments.
    pub extra_args: Vec<String>,
}

/// A server child that answered a listing.
pub struct ServerChild {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The process.
    pub guard: ChildGuard,
}

/// Starts `udpft serve` on a free loopback port and waits until it answers a listing.
/// The child's output goes to `log`.
///
/// # Errors
/// If no try started a server that answers within [`READY_WITHIN`].
pub fn start_server(spec: &ServerSpec, log: &Path) -> io::Result<ServerChild> {
    let mut last_error = io::Error::other("no try made");
    for _ in 0..PORT_TRIES {
        let addr = free_udp_port()?;
        let mut command = Command::new(&spec.bin);
        command
            .arg("serve")
            .arg("--root")
            .arg(&spec.root)
            .arg("--bind")
            .arg(addr.to_string())
            .args(&spec.extra_args);
        let mut guard = ChildGuard::spawn("udpft server", command, log)?;
        match wait_until_answering(addr, &mut guard) {
            Ok(()) => return Ok(ServerChild { addr, guard }),
            Err(e) => {
                let _ = guard.stop();
                last_error =
                    io::Error::new(e.kind(), format!("{e}; server log:\n{}", guard.log_tail()));
            }
        }
    }
    Err(last_error)
}

/// Polls the server with short listings until one succeeds, the child exits, or
/// [`READY_WITHIN`] passes.
fn wait_until_answering(addr: SocketAddr, guard: &mut ChildGuard) -> io::Result<()> {
    let options = ClientOptions {
        config: Config {
            rto_initial: Duration::from_millis(20),
            timeout: Duration::from_millis(250),
            ..Config::default()
        },
        busy_patience: Duration::from_millis(250),
        ..ClientOptions::default()
    };
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(status) = guard.exited() {
            return Err(io::Error::other(format!(
                "server on {addr} exited at start ({status})"
            )));
        }
        let answer = Client::new(addr, options.clone()).and_then(|mut c| c.list());
        match answer {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "server on {addr} did not answer within {:.0} s: {e}",
                        READY_WITHIN.as_secs_f64()
                    ),
                ))
            }
            // Refused (ICMP port unreachable) before the bind: come back shortly.
            Err(_) => std::thread::sleep(CHECK_EVERY),
        }
    }
}

/// How to run a `lossy-proxy` child in front of a server.
#[derive(Clone, Debug)]
pub struct ProxySpec {
    /// The `lossy-proxy` binary.
    pub bin: PathBuf,
    /// The server to forward to.
    pub upstream: SocketAddr,
    /// Loss probability each way.
    pub loss: f64,
    /// Seed of the impairment choices.
    pub seed: u64,
    /// The proxy stops by itself after this long, even if the benchmark is killed.
    pub lifetime: Duration,
    /// Further arguments (`--dup`, `--delay`...).
    pub extra_args: Vec<String>,
}

/// A proxy child and where clients reach it.
pub struct ProxyChild {
    /// Where clients send.
    pub addr: SocketAddr,
    /// Where its counters are written when it stops.
    pub stats_file: PathBuf,
    /// The process.
    pub guard: ChildGuard,
}

/// The per-direction counters a proxy wrote at stop (`up.offered`, `down.dropped`...).
#[derive(Clone, Debug, Default)]
pub struct ProxyStats {
    lines: Vec<(String, u64)>,
}

impl ProxyStats {
    /// A counter by key (`down.offered`), 0 if absent.
    pub fn get(&self, key: &str) -> u64 {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, v)| *v)
    }
}

impl ProxyChild {
    /// Stops the proxy (SIGTERM) and reads the counters it wrote.
    ///
    /// # Errors
    /// If the proxy did not write its stats file.
    pub fn stop(mut self) -> io::Result<ProxyStats> {
        self.guard.stop()?;
        let text = std::fs::read_to_string(&self.stats_file).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "proxy wrote no stats file {}: {e}; log:\n{}",
                    self.stats_file.display(),
                    self.guard.log_tail()
                ),
            )
        })?;
        let lines = text
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once('=')?;
                Some((key.trim().to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        Ok(ProxyStats { lines })
    }
}

/// Starts `lossy-proxy --listen 127.0.0.1:0` and learns its address from the first line of
/// its log (`lossy-proxy: listening on ADDR, ...`). `scratch` holds its log and stats file;
/// `tag` keeps several proxies' files apart.
///
/// # Errors
/// If the proxy does not print its address within [`READY_WITHIN`].
pub fn start_proxy(spec: &ProxySpec, scratch: &Path, tag: &str) -> io::Result<ProxyChild> {
    let log = scratch.join(format!("proxy-{tag}.log"));
    let stats_file = scratch.join(format!("proxy-{tag}.stats"));
    let _ = std::fs::remove_file(&stats_file);
    let mut command = Command::new(&spec.bin);
    command
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--upstream")
        .arg(spec.upstream.to_string())
        .arg("--loss")
        .arg(spec.loss.to_string())
        .arg("--seed")
        .arg(spec.seed.to_string())
        .arg("--duration")
        .arg(format!("{:.3}", spec.lifetime.as_secs_f64()))
        .arg("--stats-file")
        .arg(&stats_file)
        .args(&spec.extra_args);
    let mut guard = ChildGuard::spawn("lossy-proxy", command, &log)?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(addr) = listen_address(&guard.log_text()) {
            return Ok(ProxyChild {
                addr,
                stats_file,
                guard,
            });
        }
        if let Some(status) = guard.exited() {
            return Err(io::Error::other(format!(
                "lossy-proxy exited at start ({status}):\n{}",
                guard.log_tail()
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "lossy-proxy printed no address within {:.0} s:\n{}",
                    READY_WITHIN.as_secs_f64(),
                    guard.log_tail()
                ),
            ));
        }
        std::thread::sleep(CHECK_EVERY);
    }
}

/// The address in `lossy-proxy: listening on 127.0.0.1:PORT, forwarding to ...`.
fn listen_address(log: &str) -> Option<SocketAddr> {
    let first = log.lines().next()?;
    let rest = first.split_once("listening on ")?.1;
    let addr = rest.split([',', ' ']).next()?;
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_address_is_read_from_its_first_line() {
        let log =
            "lossy-proxy: listening on 127.0.0.1:40123, forwarding to 127.0.0.1:6969; up: none\n";
        assert_eq!(
            listen_address(log),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(listen_address("lossy-proxy: cannot listen\n"), None);
        assert_eq!(listen_address(""), None);
    }

    #[test]
    fn free_port_is_on_loopback_and_nonzero() {
        let addr = free_udp_port().unwrap();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
    }
}
