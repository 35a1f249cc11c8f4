//! The *thread per session* server. A dispatcher thread owns the listening loop: it opens
//! sessions and hands each session's datagrams, over a channel, to a thread that runs only
//! that session and sends from a clone of the socket. At most `max_sessions` threads run;
//! past that, requests are told the server is busy. The cost this model shows: a thread
//! (stack, scheduling) per client, and a copy and a channel hop per datagram.

use super::{
    admission, flush_session, record_end, recv_message, refuse, reply_unknown, Grace, ServerConfig,
    Shutdown, SHUTTING_DOWN,
};
use crate::ids::IdSource;
use crate::library::Library;
use crate::net;
use crate::proto::table::{open_session, ServerSession, ServerStats};
use crate::proto::wire::{ErrorCode, Kind, Message, MAX_DATAGRAM};
use crate::proto::Outcome;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the dispatcher tells a session thread.
enum Inbound {
    /// A datagram from the peer, already checked by the dispatcher.
    Datagram(Vec<u8>),
    /// The request that opened the session came again, this many bytes long.
    RepeatedRequest(usize),
    /// Stop now (shutdown), telling the peer.
    Abort,
}

/// A session thread's report when it ends.
struct Ended {
    key: (SocketAddr, u32),
    outcome: Option<Outcome>,
    sent: u64,
}

struct Worker {
    token: u32,
    upload: bool,
    inbox: Sender<Inbound>,
    thread: JoinHandle<()>,
}

/// Serves `library` on `socket` with a thread per session until `shutdown`.
///
/// # Errors
/// A socket error other than a timeout, or a failure to start a thread.
pub fn run(
    socket: &UdpSocket,
    mut library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let mut stats = ServerStats::default();
    let mut ids = IdSource::new();
    let mut workers: HashMap<(SocketAddr, u32), Worker> = HashMap::new();
    let mut requests: HashMap<(SocketAddr, u32), u32> = HashMap::new();
    let (ended_tx, ended_rx) = mpsc::channel::<Ended>();
    // Datagram buffers come back from the session threads once handled, so the hand-off
    // copies each datagram but allocates only while the pool grows.
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut grace = Grace::default();
    loop {
        while let Ok(ended) = ended_rx.try_recv() {
            if let Some(worker) = workers.remove(&ended.key) {
                requests.remove(&(ended.key.0, worker.token));
                let _ = worker.thread.join();
            }
            stats.sent += ended.sent;
            record_end(&mut stats, ended.key.0, ended.outcome.as_ref());
        }
        let stage = grace.check(shutdown, config, Instant::now());
        for worker in workers.values() {
            if stage.abandons(worker.upload) {
                let _ = worker.inbox.send(Inbound::Abort);
            }
        }
        if grace.draining() && workers.is_empty() {
            break;
        }
        let received = recv_message(
            &mut receiver,
            socket,
            &mut inbuf,
            None,
            &mut outbuf,
            &mut stats,
        )?;
        let Some((peer, datagram, message)) = received else {
            continue;
        };
        let len = datagram.len();
        match message.kind() {
            Kind::List | Kind::Get | Kind::Put => {
                let token = message.session();
                if let Some(id) = requests.get(&(peer, token)) {
                    // A repeat: the session's Accept is on its timer; the repeat adds to
                    // the amplification budget.
                    if let Some(worker) = workers.get(&(peer, *id)) {
                        let _ = worker.inbox.send(Inbound::RepeatedRequest(len));
                    }
                    continue;
                }
                let max = config.limits.max_sessions;
                if let Some(no) = admission(&grace, workers.len(), max, "session threads") {
                    refuse(socket, peer, token, &no, len, &mut outbuf, &mut stats);
                    continue;
                }
                let id = loop {
                    let id = ids.next_id();
                    if !workers.contains_key(&(peer, id)) {
                        break id;
                    }
                };
                match open_session(
                    Instant::now(),
                    &config.session,
                    &mut library,
                    id,
                    &message,
                    len,
                ) {
                    Some(Ok(session)) => {
                        stats.opened += 1;
                        let upload = session.is_upload();
                        let (inbox, inbox_rx) = mpsc::channel();
                        let socket = socket.try_clone()?;
                        let ended = ended_tx.clone();
                        let recycle = recycle_tx.clone();
                        let thread = std::thread::Builder::new()
                            .name(format!("udpft-session-{id:08x}"))
                            .spawn(move || {
                                let ended_with =
                                    serve_session(&socket, peer, session, &inbox_rx, &recycle);
                                let _ = ended.send(Ended {
                                    key: (peer, id),
                                    outcome: ended_with.0,
                                    sent: ended_with.1,
                                });
                            })?;
                        requests.insert((peer, token), id);
                        workers.insert(
                            (peer, id),
                            Worker {
                                token,
                                upload,
                                inbox,
                                thread,
                            },
                        );
                    }
                    Some(Err(refusal)) => {
                        refuse(socket, peer, token, &refusal, len, &mut outbuf, &mut stats);
                    }
                    None => {}
                }
            }
            Kind::Accept => stats.unexpected += 1,
            _ => match workers.get(&(peer, message.session())) {
                // The thread may have just ended; then the datagram is as good as lost.
                Some(worker) => {
                    let mut bytes = recycle_rx.try_recv().unwrap_or_default();
                    bytes.clear();
                    bytes.extend_from_slice(datagram);
                    let _ = worker.inbox.send(Inbound::Datagram(bytes));
                }
                None => reply_unknown(socket, peer, &message, len, &mut outbuf, &mut stats),
            },
        }
    }
    Ok(stats)
}

/// Runs one session on its own thread until it finishes; returns its outcome and the
/// datagrams it sent.
fn serve_session(
    socket: &UdpSocket,
    peer: SocketAddr,
    mut session: ServerSession,
    inbox: &Receiver<Inbound>,
    recycle: &Sender<Vec<u8>>,
) -> (Option<Outcome>, u64) {
    let mut stats = ServerStats::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let now = Instant::now();
        session.handle_timeout(now);
        flush_session(socket, &mut session, peer, now, &mut buf, &mut stats);
        if session.is_finished() {
            return (session.outcome().cloned(), stats.sent);
        }
        let wait = session
            .poll_timeout()
            .map_or(net::MAX_WAIT, |at| at.saturating_duration_since(now))
            .max(Duration::from_micros(1));
        match inbox.recv_timeout(wait) {
            Ok(Inbound::Datagram(bytes)) => {
                if let Ok(message) = Message::decode(&bytes) {
                    session.handle_message(Instant::now(), &message);
                }
                let _ = recycle.send(bytes);
            }
            Ok(Inbound::RepeatedRequest(len)) => session.handle_repeated_request(len),
            Ok(Inbound::Abort) | Err(RecvTimeoutError::Disconnected) => {
                session.abort(ErrorCode::ShuttingDown, SHUTTING_DOWN);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        flush_session(
            socket,
            &mut session,
            peer,
            Instant::now(),
            &mut buf,
            &mut stats,
        );
    }
}
