//! A test-only TFTP server over the sans-IO sessions, until `udpft serve --tftp` exists:
//! one socket on 127.0.0.1:0, one loop on its own thread, a map of sessions keyed by the
//! peer's address and port, and every reply sent from the listening port (single-port).
//!
//! Routing, in the order the front door will do it: a datagram that is not TFTP is dropped;
//! one from a peer with a session goes to it (a new request from a peer whose session has
//! ended replaces it); a request from a new peer opens a session or is answered with its
//! error; DATA from an unknown peer gets ERROR 5; anything else from an unknown peer (an
//! ACK, an ERROR) is dropped, so two confused peers never answer each other.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use udpft::library::{Library, LibraryOptions};
use udpft::tftp::wire::{Opcode, Packet, MAX_PACKET};
use udpft::tftp::{is_tftp, server, ServerConfig, ServerSession, TftpCode, TftpError};

/// What the driver counted.
#[derive(Clone, Debug, Default)]
pub struct DriverStats {
    /// Datagrams and bytes received.
    pub received: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Sessions opened.
    pub opened: u64,
    /// Sessions that ended complete.
    pub completed: u64,
}

/// A running test server.
pub struct Driver {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<DriverStats>>,
}

impl Driver {
    /// Serves the folder `root` with `config` on 127.0.0.1 (a free port).
    pub fn spawn(root: &Path, config: ServerConfig) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("local address");
        let library = Library::open(root, LibraryOptions::default()).expect("library opens");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || serve(socket, library, config, &flag));
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the loop and returns its counters.
    pub fn stop(&mut self) -> DriverStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("driver thread"))
            .unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The longest the loop blocks before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

fn serve(
    socket: UdpSocket,
    mut library: Library,
    config: ServerConfig,
    stop: &AtomicBool,
) -> DriverStats {
    let mut sessions: HashMap<SocketAddr, ServerSession> = HashMap::new();
    let mut stats = DriverStats::default();
    let mut buf = vec![0u8; MAX_PACKET + 1];
    let mut out = vec![0u8; MAX_PACKET];
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let deadline = sessions.values().filter_map(|s| s.poll_timeout()).min();
        let wait = deadline
            .map_or(POLL, |d| d.saturating_duration_since(now))
            .clamp(Duration::from_micros(50), POLL);
        socket.set_read_timeout(Some(wait)).expect("set timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                stats.received += 1;
                stats.bytes_in += n as u64;
                let datagram = &buf[..n];
                route(
                    Instant::now(),
                    &socket,
                    &mut library,
                    &config,
                    &mut sessions,
                    &mut stats,
                    peer,
                    datagram,
                    &mut out,
                );
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {}
        }
        let now = Instant::now();
        for (peer, session) in sessions.iter_mut() {
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
            flush(&socket, *peer, session, now, &mut out, &mut stats);
        }
        sessions.retain(|_, s| {
            let done = s.is_finished();
            if done && s.outcome() == Some(&udpft::proto::Outcome::Complete) {
                stats.completed += 1;
            }
            !done
        });
    }
    stats
}

#[allow(clippy::too_many_arguments)]
fn route(
    now: Instant,
    socket: &UdpSocket,
    library: &mut Library,
    config: &ServerConfig,
    sessions: &mut HashMap<SocketAddr, ServerSession>,
    stats: &mut DriverStats,
    peer: SocketAddr,
    datagram: &[u8],
    out: &mut [u8],
) {
    if !is_tftp(datagram) {
        return;
    }
    let request = matches!(datagram[1], 1 | 2);
    if let Some(session) = sessions.get_mut(&peer) {
        if !(request && session.outcome().is_some()) {
            session.handle_datagram(now, datagram);
            flush(socket, peer, session, now, out, stats);
            return;
        }
        sessions.remove(&peer);
    }
    if request {
        match server::open(now, config, library, datagram) {
            Ok(mut session) => {
                stats.opened += 1;
                flush(socket, peer, &mut session, now, out, stats);
                sessions.insert(peer, session);
            }
            Err(Some(error)) => send(socket, peer, &out_error(&error, out), stats),
            Err(None) => {}
        }
    } else if matches!(
        Packet::decode(datagram).map(|p| p.opcode()),
        Ok(Opcode::Data)
    ) {
        let error = TftpError::new(TftpCode::UnknownTid, "unknown transfer ID");
        send(socket, peer, &out_error(&error, out), stats);
    }
}

fn out_error(error: &TftpError, out: &mut [u8]) -> Vec<u8> {
    let n = error.encode(out);
    out[..n].to_vec()
}

fn flush(
    socket: &UdpSocket,
    peer: SocketAddr,
    session: &mut ServerSession,
    now: Instant,
    out: &mut [u8],
    stats: &mut DriverStats,
) {
    while let Some(n) = session.poll_transmit(now, out) {
        stats.sent += 1;
        stats.bytes_out += n as u64;
        let _ = socket.send_to(&out[..n], peer);
    }
}

fn send(socket: &UdpSocket, peer: SocketAddr, bytes: &[u8], stats: &mut DriverStats) {
    stats.sent += 1;
    stats.bytes_out += bytes.len() as u64;
    let _ = socket.send_to(bytes, peer);
}
