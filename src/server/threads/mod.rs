//! The *thread per session* server. A dispatcher thread owns the listening loop and the
//! front door; each session a proven peer opens runs on its own thread, fed its datagrams
//! over a channel, sending on the shared socket and reporting its progress and its end
//! back ([`session`]). The cost this model shows: a thread (stack, scheduling) per client, and a copy and
//! a channel hop per datagram.

mod session;

use super::{Driver, ServerConfig, Shutdown};
use crate::library::Library;
use crate::proto::endpoint::{Action, Event, Key};
use crate::proto::refusal::Refusal;
use crate::proto::server_session::End;
use crate::proto::stats::ServerStats;
use crate::proto::wire::ErrorCode;
use session::Session;
use std::collections::HashMap;
use std::io;
use std::net::UdpSocket;
use std::sync::mpsc::{self, Receiver, Sender};
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
    Ended { key: Key, end: End, sent: u64 },
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
    let mut endpoint = Driver::endpoint(config.policy.clone(), library.clone());
    let mut driver = Driver::new(config);
    let mut workers: HashMap<Key, Worker> = HashMap::new();
    let (report_tx, reports) = mpsc::channel::<Report>();
    // Datagram buffers come back from the session threads once handled, so the hand-off
    // copies each datagram but allocates only while the pool grows.
    let (recycle_tx, recycled) = mpsc::channel::<Vec<u8>>();
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
                Report::Ended { key, end, sent } => {
                    endpoint.stats_mut().sent += sent;
                    if let Some(record) = endpoint.ended(key, &end, now) {
                        driver.log.session(&record);
                    }
                    join(workers.remove(&key));
                }
            }
        }
        driver.tick(shutdown, &mut endpoint, now);
        while let Some(Action::Abort { key, code, text }) = endpoint.poll_action() {
            if let Some(worker) = workers.get(&key) {
                let _ = worker.inbox.send(Inbound::Abort(code, text));
            }
        }
        driver.flush(socket, &mut endpoint);
        if endpoint.is_drained() && workers.is_empty() {
            break;
        }
        let deadline = endpoint.poll_timeout();
        let Some((peer, len)) = driver.recv(socket, deadline, endpoint.live())? else {
            continue;
        };
        let datagram = &driver.inbuf[..len];
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
        driver.flush(socket, &mut endpoint);
    }
    Ok(endpoint.stats().clone())
}

fn join(worker: Option<Worker>) {
    if let Some(worker) = worker {
        drop(worker.inbox);
        let _ = worker.thread.join();
    }
}
