//! The *table* model, the main one: one thread, one UDP socket, one loop over a
//! [`SessionTable`] that serves every peer at once. The loop fires due timers, sends what
//! the table has queued, and sleeps until the next deadline or datagram; everything else is
//! the table's (and its front door's).

use super::{send, Driver, ServerConfig, Shutdown};
use crate::ids::SessionKey;
use crate::library::Library;
use crate::proto::stats::ServerStats;
use crate::proto::table::SessionTable;
use std::io;
use std::net::UdpSocket;
use std::time::Instant;

/// Serves `library` on `socket` with one loop over a session table until `shutdown` is
/// requested and every session is over; returns the counters.
///
/// # Errors
/// A socket error other than a timeout.
pub fn run(
    socket: &UdpSocket,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let policy = config.policy.clone();
    let mut table = SessionTable::new(policy, Box::new(library), SessionKey::boxed());
    let mut driver = Driver::new(config);
    loop {
        let now = Instant::now();
        driver.tick(shutdown, table.endpoint_mut(), now);
        table.handle_timeout(now);
        flush(socket, &mut table, now, &mut driver);
        if table.is_drained() {
            break;
        }
        if let Some((peer, len)) = driver.recv(socket, table.poll_timeout(), table.len())? {
            let now = Instant::now();
            table.handle_datagram(now, peer, &driver.inbuf[..len]);
            flush(socket, &mut table, now, &mut driver);
        }
    }
    Ok(table.stats().clone())
}

/// Sends everything the table has queued, and logs the sessions that ended.
fn flush(socket: &UdpSocket, table: &mut SessionTable, now: Instant, driver: &mut Driver) {
    while let Some((peer, len)) = table.poll_transmit(now, &mut driver.outbuf) {
        send(socket, &driver.outbuf[..len], peer);
    }
    while let Some(record) = table.poll_record() {
        driver.log.session(&record);
    }
}
