//! The *thread per session* server. A dispatcher thread owns the listening loop and the
//! front door; each session a proven peer opens runs on its own thread, fed its datagrams
//! over a channel, sending on the shared socket and reporting its progress and its end
//! back. The cost this model shows: a thread (stack, scheduling) per client, and a copy and
//! a channel hop per datagram.

use super::log::Logger;
use super::{
    flush_endpoint, flush_session, ProgressClock, ServerConfig, Shutdown, StatsLine, Stopping,
};
use crate::ids::SessionKey;
use crate::library::Library;
use crate::net;
use crate::proto::endpoint::{server_done, Action, Endpoint, Event, Key, SHUTTING_DOWN};
use crate::proto::grant::Grant;
use crate::proto::refusal::Refusal;
use crate::proto::stats::ServerStats;
use crate::proto::wire::{ErrorCode, Message, MAX_DATAGRAM};
use crate::proto::{Config, Outcome};
use std::collections::HashMap;
use std::io;
use std::net::UdpSocket;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// What the dispatcher tells a session thread.
enum Inbound {
    /// A datagram from the peer, for this session.
    Datagram(Vec<u8>),
    /// End now, telling the peer why.
    Abort(ErrorCode, &'static str),
}

/// What a session thread tells the dispatcher.
enum Report {
    Opened,
    Refused(Key, Refusal),
    Progress(Key, u64),
    Ended {
        key: Key,
        outcome: Option<Outcome>,
        bytes: u64,
        sent: u64,
    },
}

struct Worker {
    inbox: Sender<Inbound>,
    thread: JoinHandle<()>,
}

/// Serves `library` on `socket` with a thread per session until `shutdown`.
///
/// # Errors
/// A socket error other than a timeout, or a failure to start a thread.
pub fn run(
    socket: &UdpSocket,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    // One handle for every thread: a session costs no file descriptor of its own for it.
    let shared = Arc::new(socket.try_clone()?);
    let mut endpoint = Endpoint::new(
        config.policy.clone(),
        Box::new(library.clone()),
        SessionKey::boxed(),
    );
    let log = Logger::new(config.log);
    let mut workers: HashMap<Key, Worker> = HashMap::new();
    let (report_tx, reports) = mpsc::channel::<Report>();
    // Datagram buffers come back from the session threads once handled, so the hand-off
    // copies each datagram but allocates only while the pool grows.
    let (recycle_tx, recycled) = mpsc::channel::<Vec<u8>>();
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut stopping = Stopping::default();
    let mut stats_line = StatsLine::new(config.stats_every, Instant::now());
    loop {
        let now = Instant::now();
        while let Ok(report) = reports.try_recv() {
            match report {
                Report::Opened => endpoint.opened(),
                Report::Refused(key, refusal) => {
                    endpoint.open_failed(key, Some(refusal));
                    join(workers.remove(&key));
                }
                Report::Progress(key, bytes) => endpoint.progress(key, bytes, now),
                Report::Ended {
                    key,
                    outcome,
                    bytes,
                    sent,
                } => {
                    endpoint.stats_mut().sent += sent;
                    if let Some(record) = endpoint.ended(key, outcome.as_ref(), bytes, now) {
                        log.session(&record);
                    }
                    join(workers.remove(&key));
                }
            }
        }
        stopping.poll(shutdown, &mut endpoint, now);
        stats_line.tick(now, endpoint.live(), endpoint.stats(), &log);
        endpoint.handle_timeout(now);
        while let Some(Action::Abort { key, code, text }) = endpoint.poll_action() {
            if let Some(worker) = workers.get(&key) {
                let _ = worker.inbox.send(Inbound::Abort(code, text));
            }
        }
        flush_endpoint(socket, &mut endpoint, &mut outbuf);
        if endpoint.is_drained() && workers.is_empty() {
            break;
        }
        let deadline = endpoint.poll_timeout();
        let Some((len, peer)) = receiver.recv_until(socket, &mut inbuf, deadline)? else {
            continue;
        };
        let datagram = &inbuf[..len];
        let copy = |recycled: &Receiver<Vec<u8>>| {
            let mut bytes = recycled.try_recv().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(datagram);
            bytes
        };
        match endpoint.handle(Instant::now(), peer, datagram) {
            Event::Nothing => {}
            Event::Open(grant, _) => {
                let key = (grant.peer, grant.session);
                let (inbox, inbox_rx) = mpsc::channel();
                let first = copy(&recycled);
                let (socket, library, session) = (
                    Arc::clone(&shared),
                    library.clone(),
                    config.policy.session.clone(),
                );
                let (reports, recycle) = (report_tx.clone(), recycle_tx.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("udpft-session-{:08x}", grant.session))
                    .spawn(move || {
                        let session = Session {
                            socket: &socket,
                            config: &session,
                            inbox: &inbox_rx,
                            reports: &reports,
                            recycle: &recycle,
                        };
                        session.run(&grant, first, library);
                    })?;
                workers.insert(key, Worker { inbox, thread });
            }
            // The thread may have just ended; then the datagram is as good as lost.
            Event::Deliver(key, _) => {
                if let Some(worker) = workers.get(&key) {
                    let _ = worker.inbox.send(Inbound::Datagram(copy(&recycled)));
                }
            }
        }
        flush_endpoint(socket, &mut endpoint, &mut outbuf);
    }
    Ok(endpoint.stats().clone())
}

fn join(worker: Option<Worker>) {
    if let Some(worker) = worker {
        drop(worker.inbox);
        let _ = worker.thread.join();
    }
}

/// What a session thread works with.
struct Session<'a> {
    socket: &'a UdpSocket,
    config: &'a Config,
    inbox: &'a Receiver<Inbound>,
    reports: &'a Sender<Report>,
    recycle: &'a Sender<Vec<u8>>,
}

impl Session<'_> {
    /// Opens the session of `grant` (handing it `first`, the datagram that proved its peer)
    /// and runs it until it is over.
    fn run(&self, grant: &Grant, first: Vec<u8>, mut library: Library) {
        let key = (grant.peer, grant.session);
        let peer = grant.peer;
        let mut transfer = match grant.start(Instant::now(), self.config, &mut library) {
            Ok(transfer) => transfer,
            Err(refusal) => {
                let _ = self.reports.send(Report::Refused(key, refusal));
                return;
            }
        };
        let _ = self.reports.send(Report::Opened);
        self.handle(&mut transfer, first);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut sent = 0;
        let mut progress = ProgressClock::new(Instant::now());
        loop {
            let now = Instant::now();
            transfer.handle_timeout(now);
            sent += flush_session(self.socket, &mut transfer, peer, now, &mut buf);
            if server_done(&transfer) {
                let _ = self.reports.send(Report::Ended {
                    key,
                    outcome: transfer.outcome().cloned(),
                    bytes: transfer.stats().bytes,
                    sent,
                });
                return;
            }
            if progress.due(now) {
                let _ = self
                    .reports
                    .send(Report::Progress(key, transfer.progress()));
            }
            let until = transfer
                .poll_timeout()
                .map_or(progress.at(), |t| t.min(progress.at()));
            let wait = until.saturating_duration_since(now).min(net::MAX_WAIT);
            match self.inbox.recv_timeout(wait) {
                Ok(Inbound::Datagram(bytes)) => self.handle(&mut transfer, bytes),
                Ok(Inbound::Abort(code, text)) => transfer.abort(code, text),
                Err(RecvTimeoutError::Disconnected) => {
                    transfer.abort(ErrorCode::ShuttingDown, SHUTTING_DOWN)
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            sent += flush_session(self.socket, &mut transfer, peer, Instant::now(), &mut buf);
        }
    }

    fn handle(&self, transfer: &mut crate::proto::Transfer, bytes: Vec<u8>) {
        if let Ok(message) = Message::decode(&bytes) {
            transfer.handle_message(Instant::now(), &message);
        }
        let _ = self.recycle.send(bytes);
    }
}
