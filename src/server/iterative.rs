//! The iterative *loop* server: the classic lesson's first model. It serves one session to
//! completion before it takes the next; a peer that asks meanwhile is told the server is
//! busy (its client waits and retries). The front door is the same as every model's, with
//! room for one session; the whole state of the loop is that one session.

use super::{earliest, flush_session, Driver, ProgressClock, ServerConfig, Shutdown};
use crate::library::Library;
use crate::proto::endpoint::{Action, Event, Key};
use crate::proto::server_session::{server_done, End, ServerSession};
use crate::proto::stats::ServerStats;
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
    let mut endpoint = Driver::endpoint(policy, library);
    let mut driver = Driver::new(config);
    let mut current: Option<(Key, ServerSession, ProgressClock)> = None;
    loop {
        let now = Instant::now();
        driver.tick(shutdown, &mut endpoint, now);
        while let Some(Action::Abort { key, code, text }) = endpoint.poll_action() {
            match &mut current {
                Some((k, transfer, _)) if *k == key => transfer.abort(code, text),
                _ => {}
            }
        }
        if let Some((key, transfer, progress)) = &mut current {
            transfer.handle_timeout(now);
            let sent = flush_session(socket, transfer, key.0, now, &mut driver.outbuf);
            endpoint.stats_mut().sent += sent;
            if progress.due(now) {
                endpoint.progress(*key, transfer.progress(), now);
            }
            if server_done(transfer) {
                if let Some(record) = endpoint.ended(*key, &End::of(transfer), now) {
                    driver.log.session(&record);
                }
                current = None;
            }
        }
        driver.flush(socket, &mut endpoint);
        if endpoint.is_drained() {
            break;
        }
        let deadline = earliest([
            endpoint.poll_timeout(),
            current.as_ref().and_then(|(_, t, _)| t.poll_timeout()),
            current.as_ref().map(|(_, _, p)| p.at()),
        ]);
        let Some((peer, len)) = driver.recv(socket, deadline, endpoint.live())? else {
            continue;
        };
        let now = Instant::now();
        match endpoint.handle(now, peer, &driver.inbuf[..len]) {
            Event::Nothing => {}
            Event::Open(grant, message) => {
                // The one slot is taken only by a slow session the front door just asked to
                // yield it: it ends now, telling its peer, before the new one starts.
                if let Some((key, mut transfer, _)) = current.take() {
                    while let Some(Action::Abort { code, text, .. }) = endpoint.poll_action() {
                        transfer.abort(code, text);
                    }
                    let sent = flush_session(socket, &mut transfer, key.0, now, &mut driver.outbuf);
                    endpoint.stats_mut().sent += sent;
                    if let Some(record) = endpoint.ended(key, &End::of(&transfer), now) {
                        driver.log.session(&record);
                    }
                }
                if let Some(mut transfer) = endpoint.start(now, &grant) {
                    transfer.handle(now, &message);
                    let key = (grant.peer, grant.session);
                    current = Some((key, transfer, ProgressClock::new(now)));
                }
            }
            Event::Deliver(key, message) => {
                if let Some((k, transfer, _)) = &mut current {
                    if *k == key {
                        transfer.handle(now, &message);
                    }
                }
            }
        }
        if let Some((key, transfer, _)) = &mut current {
            let sent = flush_session(socket, transfer, key.0, now, &mut driver.outbuf);
            endpoint.stats_mut().sent += sent;
        }
        driver.flush(socket, &mut endpoint);
    }
    Ok(endpoint.stats().clone())
}
