//! The *table* model, the main one: one thread, one UDP socket, one loop over a
//! [`SessionTable`] that serves every peer at once. The loop fires due timers, sends what
//! the table has queued, and sleeps until the next deadline or datagram; everything else is
//! the table's (and its front door's).

use super::log::Logger;
use super::{send, ServerConfig, Shutdown, StatsLine, Stopping};
use crate::ids::SessionKey;
use crate::library::Library;
use crate::net;
use crate::proto::stats::ServerStats;
use crate::proto::table::SessionTable;
use crate::proto::wire::MAX_DATAGRAM;
use std::io;
use std::net::UdpSocket;
use std::time::Instant;

/// Serves `library` on `socket` with one loop over a session table until `shutdown` is
/// requested and every session is over (see [`Stopping`]); returns the counters.
///
/// # Errors
/// A socket error other than a timeout.
pub fn run(
    socket: &UdpSocket,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let mut table = SessionTable::new(
        config.policy.clone(),
        Box::new(library),
        SessionKey::boxed(),
    );
    let log = Logger::new(config.log);
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut stopping = Stopping::default();
    let mut stats_line = StatsLine::new(config.stats_every, Instant::now());
    loop {
        let now = Instant::now();
        stopping.poll(shutdown, table.endpoint_mut(), now);
        stats_line.tick(now, table.len(), table.stats(), &log);
        table.handle_timeout(now);
        flush(socket, &mut table, now, &mut outbuf, &log);
        if table.is_drained() {
            break;
        }
        let deadline = table.poll_timeout();
        if let Some((len, peer)) = receiver.recv_until(socket, &mut inbuf, deadline)? {
            let now = Instant::now();
            table.handle_datagram(now, peer, &inbuf[..len]);
            flush(socket, &mut table, now, &mut outbuf, &log);
        }
    }
    Ok(table.stats().clone())
}

/// Sends everything the table has queued, and logs the sessions that ended.
fn flush(socket: &UdpSocket, table: &mut SessionTable, now: Instant, buf: &mut [u8], log: &Logger) {
    while let Some((peer, len)) = table.poll_transmit(now, buf) {
        send(socket, &buf[..len], peer);
    }
    while let Some(record) = table.poll_record() {
        log.session(&record);
    }
}
