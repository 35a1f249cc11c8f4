//! The iterative *loop* server: the classic lesson's first model. It holds at most one
//! session and serves it to completion before it takes the next request; a peer that asks
//! meanwhile is told the server is busy (its client waits and retries). There is no session
//! table: one `Option` is the whole state, plus the completed uploads that still linger to
//! answer a repeated Done (they are finished work, so they do not keep the next client
//! waiting).

use super::{
    flush_session, record_end, recv_message, refuse, reply_unknown, Grace, ServerConfig, Shutdown,
    Stage, SHUTTING_DOWN,
};
use crate::ids::IdSource;
use crate::library::Library;
use crate::net;
use crate::proto::table::{open_session, Refusal, ServerSession, ServerStats};
use crate::proto::wire::{ErrorCode, Kind, MAX_DATAGRAM};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

/// The one session being served.
struct Current {
    peer: SocketAddr,
    token: u32,
    session: ServerSession,
}

/// Serves `library` on `socket`, one session at a time, until `shutdown`.
///
/// # Errors
/// A socket error other than a timeout.
pub fn run(
    socket: &UdpSocket,
    mut library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let mut stats = ServerStats::default();
    let mut ids = IdSource::new();
    let mut current: Option<Current> = None;
    let mut lingering: Vec<Current> = Vec::new();
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut grace = Grace::default();
    loop {
        let now = Instant::now();
        let stage = grace.check(shutdown, config, now);
        if let Some(c) = &mut current {
            stage.apply(&mut c.session);
        }
        for l in &mut lingering {
            if stage == Stage::Over {
                l.session.abort(ErrorCode::ShuttingDown, SHUTTING_DOWN);
            }
            l.session.handle_timeout(now);
            flush_session(socket, &mut l.session, l.peer, now, &mut outbuf, &mut stats);
        }
        lingering.retain(|l| {
            let finished = l.session.is_finished();
            if finished {
                record_end(&mut stats, l.peer, l.session.outcome());
            }
            !finished
        });
        if let Some(c) = &mut current {
            c.session.handle_timeout(now);
            flush_session(socket, &mut c.session, c.peer, now, &mut outbuf, &mut stats);
            if c.session.is_finished() {
                record_end(&mut stats, c.peer, c.session.outcome());
                current = None;
                continue;
            }
            if c.session.outcome().is_some() {
                // Done, only lingering now: take the next client.
                lingering.extend(current.take());
                continue;
            }
        } else if grace.draining() {
            // Completed uploads need not linger past the end.
            for l in &mut lingering {
                l.session.abort(ErrorCode::ShuttingDown, SHUTTING_DOWN);
                record_end(&mut stats, l.peer, l.session.outcome());
            }
            break;
        }
        let deadline = current
            .iter()
            .chain(&lingering)
            .filter_map(|c| c.session.poll_timeout())
            .min();
        let received = recv_message(
            &mut receiver,
            socket,
            &mut inbuf,
            deadline,
            &mut outbuf,
            &mut stats,
        )?;
        let Some((peer, datagram, message)) = received else {
            continue;
        };
        let len = datagram.len();
        let now = Instant::now();
        match message.kind() {
            Kind::List | Kind::Get | Kind::Put => {
                let token = message.session();
                match &current {
                    Some(c) if c.peer == peer && c.token == token => {
                        if let Some(c) = current.as_mut() {
                            c.session.handle_repeated_request(len);
                        }
                    }
                    Some(_) => {
                        let refusal = Refusal::busy("serving another client (iterative server)");
                        refuse(socket, peer, token, &refusal, len, &mut outbuf, &mut stats);
                    }
                    None if grace.draining() => {
                        refuse(
                            socket,
                            peer,
                            token,
                            &Refusal::shutting_down(),
                            len,
                            &mut outbuf,
                            &mut stats,
                        );
                    }
                    None => match open_session(
                        now,
                        &config.session,
                        &mut library,
                        ids.next_id(),
                        &message,
                        len,
                    ) {
                        Some(Ok(session)) => {
                            stats.opened += 1;
                            current = Some(Current {
                                peer,
                                token,
                                session,
                            });
                        }
                        Some(Err(refusal)) => {
                            refuse(socket, peer, token, &refusal, len, &mut outbuf, &mut stats);
                        }
                        None => {}
                    },
                }
            }
            Kind::Accept => stats.unexpected += 1,
            _ => {
                let key = (peer, message.session());
                match current
                    .iter_mut()
                    .chain(&mut lingering)
                    .find(|c| (c.peer, c.session.session()) == key)
                {
                    Some(c) => {
                        c.session.handle_message(now, &message);
                        flush_session(socket, &mut c.session, c.peer, now, &mut outbuf, &mut stats);
                    }
                    None => reply_unknown(socket, peer, &message, len, &mut outbuf, &mut stats),
                }
            }
        }
        if let Some(c) = &mut current {
            flush_session(socket, &mut c.session, c.peer, now, &mut outbuf, &mut stats);
        }
    }
    Ok(stats)
}
