//! The iterative *loop* server: the classic lesson's first model. It serves one session to
//! completion before it takes the next; a peer that asks meanwhile is told the server is
//! busy (its client waits and retries). The front door is the same as every model's, with
//! room for one session; the whole state of the loop is that one session.

use super::log::Logger;
use super::{
    earliest, flush_endpoint, flush_session, ProgressClock, ServerConfig, Shutdown, StatsLine,
    Stopping,
};
use crate::ids::SessionKey;
use crate::library::Library;
use crate::net;
use crate::proto::endpoint::{server_done, Action, Endpoint, Event, Key};
use crate::proto::stats::ServerStats;
use crate::proto::transfer::Transfer;
use crate::proto::wire::MAX_DATAGRAM;
use std::io;
use std::net::UdpSocket;
use std::time::Instant;

/// Serves `library` on `socket`, one session at a time, until `shutdown`.
///
/// # Errors
/// A socket error other than a timeout.
pub fn run(
    socket: &UdpSocket,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let mut policy = config.policy.clone();
    policy.limits.max_sessions = 1;
    policy.limits.full = "serving another client (iterative server)";
    let mut endpoint = Endpoint::new(policy, Box::new(library), SessionKey::boxed());
    let log = Logger::new(config.log);
    let mut current: Option<(Key, Transfer, ProgressClock)> = None;
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut stopping = Stopping::default();
    let mut stats_line = StatsLine::new(config.stats_every, Instant::now());
    loop {
        let now = Instant::now();
        stopping.poll(shutdown, &mut endpoint, now);
        stats_line.tick(now, endpoint.live(), endpoint.stats(), &log);
        endpoint.handle_timeout(now);
        while let Some(Action::Abort { key, code, text }) = endpoint.poll_action() {
            match &mut current {
                Some((k, transfer, _)) if *k == key => transfer.abort(code, text),
                _ => {}
            }
        }
        if let Some((key, transfer, progress)) = &mut current {
            transfer.handle_timeout(now);
            endpoint.stats_mut().sent += flush_session(socket, transfer, key.0, now, &mut outbuf);
            if progress.due(now) {
                endpoint.progress(*key, transfer.progress(), now);
            }
            if server_done(transfer) {
                let bytes = transfer.stats().bytes;
                if let Some(record) = endpoint.ended(*key, transfer.outcome(), bytes, now) {
                    log.session(&record);
                }
                current = None;
            }
        }
        flush_endpoint(socket, &mut endpoint, &mut outbuf);
        if endpoint.is_drained() {
            break;
        }
        let deadline = earliest([
            endpoint.poll_timeout(),
            current.as_ref().and_then(|(_, t, _)| t.poll_timeout()),
            current.as_ref().map(|(_, _, p)| p.at()),
        ]);
        let Some((len, peer)) = receiver.recv_until(socket, &mut inbuf, deadline)? else {
            continue;
        };
        let now = Instant::now();
        match endpoint.handle(now, peer, &inbuf[..len]) {
            Event::Nothing => {}
            Event::Open(grant, message) => {
                if let Some(mut transfer) = endpoint.start(now, &grant) {
                    transfer.handle_message(now, &message);
                    let key = (grant.peer, grant.session);
                    current = Some((key, transfer, ProgressClock::new(now)));
                }
            }
            Event::Deliver(key, message) => {
                if let Some((k, transfer, _)) = &mut current {
                    if *k == key {
                        transfer.handle_message(now, &message);
                    }
                }
            }
        }
        if let Some((key, transfer, _)) = &mut current {
            endpoint.stats_mut().sent += flush_session(socket, transfer, key.0, now, &mut outbuf);
        }
        flush_endpoint(socket, &mut endpoint, &mut outbuf);
    }
    Ok(endpoint.stats().clone())
}
