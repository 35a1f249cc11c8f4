//! The server drivers: each owns sockets and a clock and drives the sans-IO core. A model is
//! only a driver; every model speaks the same protocol through the same session code.
//!
//! * [`Model::Table`] ([`run_table`]): one thread, one UDP socket, one loop over a
//!   [`SessionTable`] that serves every peer at once; with `workers > 1`, several such loops,
//!   each with its own socket on the same address (SO_REUSEPORT).
//! * [`Model::Loop`] ([`iterative`]): serves one session to completion before the next;
//!   others are told the server is busy.
//! * [`Model::Threads`] ([`threads`]): a dispatcher thread hands each session's datagrams to
//!   that session's own thread.
//! * [`Model::Fork`] ([`fork`]): a child process per session.
//!
//! Shutdown is graceful in every model: new requests are refused, uploads are abandoned at
//! once (their temporary files removed), downloads may finish within the grace period.

pub mod fork;
pub mod iterative;
pub mod threads;

use crate::library::Library;
use crate::net;
use crate::proto::table::{
    clip_error_text, reject, unknown_session, Limits, Refusal, ServerSession, ServerStats,
    SessionTable,
};
use crate::proto::wire::{ErrorCode, Message, MAX_DATAGRAM};
use crate::proto::{Config, Failure, Outcome};
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a running server is asked to stop.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
}

impl Shutdown {
    /// A flag nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the server to stop; it notices within [`net::MAX_WAIT`].
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }
    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
    /// The flag itself, for signal handlers.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.requested)
    }
}

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

/// What a server needs besides its socket.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Session timers and the largest chunk granted.
    pub session: Config,
    /// Session limits (`max_sessions` bounds threads and child processes too).
    pub limits: Limits,
    /// After a stop request, how long running downloads may take to finish.
    pub grace: Duration,
    /// The server model.
    pub model: Model,
    /// Loops of the table model, each on its own socket and thread.
    pub workers: usize,
    /// Print a statistics line (live sessions and counters) this often (table model).
    pub stats_every: Option<Duration>,
    /// Longest adaptive spin before a blocking receive (table model); zero: never spin.
    pub busy_poll: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session: Config::for_server(),
            limits: Limits::default(),
            grace: Duration::from_secs(10),
            model: Model::Table,
            workers: 1,
            stats_every: None,
            busy_poll: net::DEFAULT_BUSY_POLL,
        }
    }
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
    match config.model {
        Model::Loop => iterative::run(first, library, config, shutdown),
        Model::Threads => threads::run(first, library, config, shutdown),
        Model::Fork => fork::run(first, library, config, shutdown),
        Model::Table if sockets.len() == 1 => run_table(first, library, config, shutdown),
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
                .spawn(move || run_table(&socket, library, &config, &shutdown))
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

/// Serves `library` on `socket` with one loop over a session table until `shutdown` is
/// requested; then stops taking sessions, abandons uploads, lets downloads finish for
/// `config.grace`, abandons the rest, and returns the counters.
///
/// # Errors
/// A socket error other than a timeout.
pub fn run_table(
    socket: &UdpSocket,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let mut table = SessionTable::new(
        config.session.clone(),
        config.limits.clone(),
        Box::new(library),
        crate::ids::IdSource::boxed(),
    );
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new().busy_poll(config.busy_poll);
    let mut grace = Grace::default();
    let mut next_stats = config.stats_every.map(|every| Instant::now() + every);
    loop {
        let now = Instant::now();
        if let (Some(at), Some(every)) = (next_stats, config.stats_every) {
            if now >= at {
                eprintln!(
                    "udpft: stats live={} {}",
                    table.len(),
                    table.stats().summary()
                );
                next_stats = Some(now + every);
            }
        }
        match grace.check(shutdown, config, now) {
            Stage::Serving => {}
            Stage::Began => {
                table.drain();
                table.abort_uploads(ErrorCode::ShuttingDown, SHUTTING_DOWN);
            }
            Stage::Draining if table.is_empty() => break,
            Stage::Draining => {}
            Stage::Over => {
                table.abort_all(ErrorCode::ShuttingDown, SHUTTING_DOWN);
                flush(socket, &mut table, now, &mut outbuf);
                break;
            }
        }
        table.handle_timeout(now);
        flush(socket, &mut table, now, &mut outbuf);
        let deadline = table.poll_timeout();
        receiver.set_sessions(table.len());
        if let Some((len, peer)) = receiver.recv_until(socket, &mut inbuf, deadline)? {
            table.handle_datagram(Instant::now(), peer, &inbuf[..len]);
            flush(socket, &mut table, Instant::now(), &mut outbuf);
        }
    }
    Ok(table.stats().clone())
}

/// Where a server is in its shutdown.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// No stop requested.
    Serving,
    /// A stop was just requested: refuse new sessions, abandon uploads.
    Began,
    /// Within the grace period.
    Draining,
    /// The grace period is over: abandon everything.
    Over,
}

impl Stage {
    /// Whether a session must be abandoned now: an upload as soon as the stop begins
    /// (nothing half-written is kept), any session once the grace period is over.
    pub(crate) fn abandons(&self, upload: bool) -> bool {
        *self == Self::Over || (*self == Self::Began && upload)
    }

    /// Abandons `session` if this stage says so, telling its peer.
    pub(crate) fn apply(&self, session: &mut ServerSession) {
        if self.abandons(session.is_upload()) {
            session.abort(ErrorCode::ShuttingDown, SHUTTING_DOWN);
        }
    }
}

/// What a peer is told when its session is abandoned by a shutdown.
pub(crate) const SHUTTING_DOWN: &str = "server shutting down";

/// Tracks the grace period after a stop request.
#[derive(Debug, Default)]
pub(crate) struct Grace {
    ends: Option<Instant>,
}

impl Grace {
    pub(crate) fn check(
        &mut self,
        shutdown: &Shutdown,
        config: &ServerConfig,
        now: Instant,
    ) -> Stage {
        match self.ends {
            None if shutdown.is_requested() => {
                self.ends = Some(now + config.grace);
                Stage::Began
            }
            None => Stage::Serving,
            Some(end) if now >= end => Stage::Over,
            Some(_) => Stage::Draining,
        }
    }

    pub(crate) fn draining(&self) -> bool {
        self.ends.is_some()
    }
}

/// Sends everything the table has queued, and logs the sessions that failed.
fn flush(socket: &UdpSocket, table: &mut SessionTable, now: Instant, buf: &mut [u8]) {
    while let Some((peer, len)) = table.poll_transmit(now, buf) {
        send(socket, &buf[..len], peer);
    }
    while let Some((peer, failure)) = table.poll_failure() {
        log_failure(peer, &failure);
    }
}

/// One line on stderr for a session that failed: which peer, and why (for a silent peer,
/// the tries and the time).
pub(crate) fn log_failure(peer: SocketAddr, failure: &Failure) {
    let why = crate::client::sanitize(&failure.to_string());
    eprintln!("udpft: session with {peer} failed: {why}");
}

/// Counts a session's end and logs it if it failed.
pub(crate) fn record_end(stats: &mut ServerStats, peer: SocketAddr, outcome: Option<&Outcome>) {
    stats.count_outcome(outcome);
    if let Some(Outcome::Failed(failure)) = outcome {
        log_failure(peer, failure);
    }
}

/// Sends one datagram. A failure is the same as a loss to the protocol (the timer
/// retransmits), so it is not an error of the loop.
pub fn send(socket: &UdpSocket, datagram: &[u8], peer: SocketAddr) {
    let _ = socket.send_to(datagram, peer);
}

/// Sends everything one session has queued to its peer.
pub(crate) fn flush_session(
    socket: &UdpSocket,
    session: &mut ServerSession,
    peer: SocketAddr,
    now: Instant,
    buf: &mut [u8],
    stats: &mut ServerStats,
) {
    while let Some(len) = session.poll_transmit(now, buf) {
        stats.sent += 1;
        send(socket, &buf[..len], peer);
    }
}

/// Sends an Error datagram in answer to one of `received` bytes, its text clipped so the
/// reply stays within the amplification limit.
pub(crate) fn send_error(
    socket: &UdpSocket,
    peer: SocketAddr,
    session: u32,
    refusal: &Refusal,
    received: usize,
    buf: &mut [u8],
    stats: &mut ServerStats,
) {
    stats.sent += 1;
    let len = Message::Error {
        session,
        code: refusal.code,
        text: clip_error_text(&refusal.text, received).as_bytes(),
    }
    .encode(buf);
    send(socket, &buf[..len], peer);
}

/// The models without a table wait for their next datagram here: until `deadline`, then
/// decode it, counting and answering rejects the way the table does ([`reject`]). Returns
/// the sender, the datagram and its message; `None` if the wait brought nothing valid.
pub(crate) fn recv_message<'a>(
    receiver: &mut net::Receiver,
    socket: &UdpSocket,
    inbuf: &'a mut [u8],
    deadline: Option<Instant>,
    outbuf: &mut [u8],
    stats: &mut ServerStats,
) -> io::Result<Option<(SocketAddr, &'a [u8], Message<'a>)>> {
    let Some((len, peer)) = receiver.recv_until(socket, inbuf, deadline)? else {
        return Ok(None);
    };
    let datagram: &'a [u8] = &inbuf[..len];
    stats.received += 1;
    match Message::decode(datagram) {
        Ok(message) => Ok(Some((peer, datagram, message))),
        Err(e) => {
            if let Some((session, refusal)) = reject(stats, datagram, e) {
                send_error(socket, peer, session, &refusal, len, outbuf, stats);
            }
            Ok(None)
        }
    }
}

/// Answers a well-formed datagram that belongs to no live session, as the table does
/// ([`unknown_session`]).
pub(crate) fn reply_unknown(
    socket: &UdpSocket,
    peer: SocketAddr,
    message: &Message<'_>,
    received: usize,
    buf: &mut [u8],
    stats: &mut ServerStats,
) {
    if let Some(refusal) = unknown_session(stats, message) {
        let session = message.session();
        send_error(socket, peer, session, &refusal, received, buf, stats);
    }
}

/// Whether a model without a table takes a new request, given `live` sessions of at most
/// `max`: `None` if it does, else why not (shutting down, or full: `what` is in use).
pub(crate) fn admission(grace: &Grace, live: usize, max: usize, what: &str) -> Option<Refusal> {
    if grace.draining() {
        Some(Refusal::shutting_down())
    } else if live >= max {
        Some(Refusal::busy(&format!("all {what} in use")))
    } else {
        None
    }
}

/// Refuses a request of `received` bytes: counts it and sends the Error.
pub(crate) fn refuse(
    socket: &UdpSocket,
    peer: SocketAddr,
    token: u32,
    refusal: &Refusal,
    received: usize,
    buf: &mut [u8],
    stats: &mut ServerStats,
) {
    stats.refused += 1;
    send_error(socket, peer, token, refusal, received, buf, stats);
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
