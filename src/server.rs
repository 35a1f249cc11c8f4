//! The server drivers: each owns sockets and a clock and drives the sans-IO core.
//!
//! [`run_table`] is the main model: one thread, one UDP socket, one loop over a
//! [`SessionTable`] that serves every peer at once. The loop receives until the next
//! datagram or the table's next deadline, hands the datagram to the table, fires due timers
//! and sends everything the table queued.

use crate::library::Library;
use crate::net;
use crate::proto::table::{Limits, ServerStats, SessionTable};
use crate::proto::wire::{ErrorCode, MAX_DATAGRAM};
use crate::proto::Config;
use std::io;
use std::net::{SocketAddr, UdpSocket};
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

/// What a server needs besides its socket.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Session timers and the largest chunk granted.
    pub session: Config,
    /// Session-table limits.
    pub limits: Limits,
    /// After a stop request, how long running downloads may take to finish.
    pub grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session: Config {
                chunk: crate::proto::wire::MAX_CHUNK,
                ..Config::default()
            },
            limits: Limits::default(),
            grace: Duration::from_secs(10),
        }
    }
}

/// Serves `library` on `socket` with one loop over a session table until `shutdown` is
/// requested; then stops taking sessions, lets downloads finish for `config.grace`,
/// abandons the rest, and returns the counters.
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
    let mut receiver = net::Receiver::new();
    let mut grace_ends: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if shutdown.is_requested() && grace_ends.is_none() {
            table.drain();
            grace_ends = Some(now + config.grace);
        }
        if let Some(end) = grace_ends {
            if table.is_empty() {
                break;
            }
            if now >= end {
                table.abort_all(ErrorCode::ShuttingDown, "server shutting down");
                flush(socket, &mut table, now, &mut outbuf);
                break;
            }
        }
        table.handle_timeout(now);
        flush(socket, &mut table, now, &mut outbuf);
        let deadline = table.poll_timeout();
        if let Some((len, peer)) = receiver.recv_until(socket, &mut inbuf, deadline)? {
            table.handle_datagram(Instant::now(), peer, &inbuf[..len]);
            flush(socket, &mut table, Instant::now(), &mut outbuf);
        }
    }
    Ok(table.stats().clone())
}

/// Sends everything the table has queued.
fn flush(socket: &UdpSocket, table: &mut SessionTable, now: Instant, buf: &mut [u8]) {
    while let Some((peer, len)) = table.poll_transmit(now, buf) {
        send(socket, &buf[..len], peer);
    }
}

/// Sends one datagram. A failure is the same as a loss to the protocol (the timer
/// retransmits), so it is not an error of the loop.
pub fn send(socket: &UdpSocket, datagram: &[u8], peer: SocketAddr) {
    let _ = socket.send_to(datagram, peer);
}

/// A server running on a thread of this process (tests, benchmarks).
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

/// Starts the session-table server on `bind` (port 0 picks a free port) on a new thread.
///
/// # Errors
/// If the socket cannot be bound.
pub fn spawn(bind: SocketAddr, library: Library, config: ServerConfig) -> io::Result<ServerHandle> {
    let socket = net::bind(bind, false)?;
    let addr = socket.local_addr()?;
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("udpft-server".into())
        .spawn(move || run_table(&socket, library, &config, &stop))?;
    Ok(ServerHandle {
        addr,
        shutdown,
        thread: Some(thread),
    })
}
