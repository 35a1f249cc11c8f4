//! The server drivers: each owns sockets, threads or processes and a clock, and drives the
//! sans-IO core. A model is only a driver: every model passes every datagram through the
//! same front door ([`crate::proto::endpoint::Endpoint`]), so every rule (limits, access
//! lists, address proof, shutdown) holds in every model, and runs the same session code.
//!
//! * [`Model::Table`] ([`table`]): one thread, one UDP socket, one loop over a
//!   [`crate::proto::table::SessionTable`] that serves every peer at once; with
//!   `workers > 1`, several such loops, each with its own socket on the same address
//!   (SO_REUSEPORT); with `cpu_workers > 0`, each loop hashes checksums on that many
//!   threads of its own (`pool`) instead of on itself.
//! * [`Model::Loop`] ([`iterative`]): serves one session to completion before the next;
//!   others are told the server is busy.
//! * [`Model::Threads`] ([`threads`]): a dispatcher thread hands each session's datagrams to
//!   that session's own thread.
//! * [`Model::Fork`] ([`fork`]): a child process per session.
//!
//! Here: the models and their configuration, binding, serving, and a server on a thread of
//! this process (tests, benchmarks); what the loops share is in `driver` and `stop`, the
//! log in [`log`].

mod driver;
pub mod fork;
pub mod iterative;
pub mod log;
mod pool;
mod stop;
pub mod table;
pub mod threads;

pub(crate) use driver::{earliest, flush_session, send, Driver, ProgressClock};
pub use stop::Shutdown;

use crate::library::Library;
use crate::net;
use crate::proto::admission::Policy;
use crate::proto::stats::ServerStats;
use log::LogFormat;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::thread::JoinHandle;
use std::time::Duration;

/// The server models users can compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Model {
    /// Iterative: one session at a time.
    Loop,
    /// One loop over a per-peer session table (the default).
    #[default]
    Table,
    /// A thread per session.
    Threads,
    /// A process per session.
    Fork,
}

impl Model {
    /// Every model, in the order the benchmark shows them.
    pub const ALL: [Self; 4] = [Self::Loop, Self::Table, Self::Threads, Self::Fork];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Loop => "loop",
            Self::Table => "table",
            Self::Threads => "threads",
            Self::Fork => "fork",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown model {s:?} (loop, table, threads or fork)"))
    }
}

/// What a server needs besides its sockets and its library.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// What the front door decides by: limits, access lists, timers, grace period.
    pub policy: Policy,
    /// The server model.
    pub model: Model,
    /// Loops of the table model, each on its own socket and thread.
    pub workers: usize,
    /// Threads of each table loop that hash checksums, fed through a bounded queue; 0:
    /// the loop hashes itself (stalling its other peers meanwhile).
    pub cpu_workers: usize,
    /// Print a statistics line this often, when something changed.
    pub stats_every: Option<Duration>,
    /// How session log lines are written.
    pub log: LogFormat,
    /// Longest adaptive spin before a blocking receive (see [`net::Receiver::busy_poll`]);
    /// zero: never spin.
    pub busy_poll: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            model: Model::Table,
            workers: 1,
            cpu_workers: 0,
            stats_every: None,
            log: LogFormat::Text,
            busy_poll: net::DEFAULT_BUSY_POLL,
        }
    }
}

/// The default of `--cpu-workers`: one hashing thread per core.
pub fn default_cpu_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Binds the sockets `config.model` needs on `bind` (port 0 picks a free port).
///
/// # Errors
/// If a socket cannot be bound.
pub fn bind_for(bind: SocketAddr, config: &ServerConfig) -> io::Result<Vec<UdpSocket>> {
    // The fork model's children bind the same address, connected to their peer.
    let reuse = config.model == Model::Fork || config.workers > 1;
    let first = net::bind(bind, reuse)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    if config.model == Model::Table {
        for _ in 1..config.workers {
            sockets.push(net::bind(addr, true)?);
        }
    }
    Ok(sockets)
}

/// File descriptors kept free for what is not a session (listings, the sockets, logs), so
/// a full table never makes a listing fail with "Too many open files".
const FD_RESERVE: u64 = 64;

/// Raises the soft limit on open files to the hard limit, and returns the number of
/// sessions that fit beside [`FD_RESERVE`] (each in-process session holds at most one
/// file), or `None` if the limit cannot be read.
fn session_fd_budget() -> Option<usize> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let soft = if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    Some(usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX))
}

/// Serves `library` on `sockets` (from [`bind_for`]) with `config.model` until `shutdown`.
///
/// # Errors
/// A socket error other than a timeout, or a failure to start a thread or process.
pub fn serve(
    sockets: Vec<UdpSocket>,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let Some(first) = sockets.first() else {
        return Err(io::Error::other("no socket to serve on"));
    };
    let mut config = config.clone();
    // Sessions in this process share its file descriptors (the fork model's children each
    // have their own).
    if config.model != Model::Fork {
        if let Some(budget) = session_fd_budget() {
            let per_loop = budget / sockets.len().max(1);
            let limits = &mut config.policy.limits;
            limits.max_sessions = limits.max_sessions.min(per_loop.max(1));
        }
    }
    let config = &config;
    match config.model {
        Model::Loop => iterative::run(first, library, config, shutdown),
        Model::Threads => threads::run(first, library, config, shutdown),
        Model::Fork => fork::run(first, library, config, shutdown),
        Model::Table if sockets.len() == 1 => table::run(first, library, config, shutdown),
        Model::Table => run_workers(sockets, library, config, shutdown),
    }
}

/// Several table loops, one per socket and thread; the kernel keeps each peer on one socket.
fn run_workers(
    sockets: Vec<UdpSocket>,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let workers: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let (library, config, shutdown) = (library.clone(), config.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("udpft-worker-{i}"))
                .spawn(move || table::run(&socket, library, &config, &shutdown))
        })
        .collect::<io::Result<_>>()?;
    let mut total = ServerStats::default();
    for worker in workers {
        let stats = worker
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("worker panicked")))?;
        total.add(&stats);
    }
    Ok(total)
}

/// A server running on threads of this process (tests, benchmarks). Not for the fork model,
/// which must own its process.
pub struct ServerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<io::Result<ServerStats>>>,
}

impl ServerHandle {
    /// Asks the server to stop and waits for its counters.
    ///
    /// # Errors
    /// The server loop's error, if it failed.
    pub fn stop(mut self) -> io::Result<ServerStats> {
        self.shutdown.request();
        let thread = self.thread.take().expect("joined once");
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("server thread panicked")))
    }

    /// The server's stop request (to ask for a graceful stop, then a stop now).
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown.request();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a server on `bind` (port 0 picks a free port) on a new thread.
///
/// # Errors
/// If the socket cannot be bound, or `config.model` is [`Model::Fork`].
pub fn spawn(bind: SocketAddr, library: Library, config: ServerConfig) -> io::Result<ServerHandle> {
    if config.model == Model::Fork {
        return Err(io::Error::other(
            "the fork model must run in its own process (udpft serve --model fork)",
        ));
    }
    let sockets = bind_for(bind, &config)?;
    let addr = sockets[0].local_addr()?;
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("udpft-server".into())
        .spawn(move || serve(sockets, library, &config, &stop))?;
    Ok(ServerHandle {
        addr,
        shutdown,
        thread: Some(thread),
    })
}
