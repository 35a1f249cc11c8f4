//! The *table* model, the main one: one thread, one UDP socket, one loop over a
//! [`SessionTable`] that serves every peer at once. The loop fires due timers, sends what
//! the table has queued, and sleeps until the next deadline or datagram; everything else is
//! the table's (and its front door's). It also times its own waits, and tells the table
//! every 20 ms how busy the loop was, which holds windowed sessions to a share of a busy
//! loop (protocol.md §21.4). With `cpu_workers` it hashes checksums on a [`Pool`] of
//! threads instead of on the loop, and wakes for their results.

use super::driver::LoadMeter;
use super::pool::{Pool, RESULT_POLL};
use super::{earliest, send, Driver, ServerConfig, Shutdown};
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
    let pool = match config.cpu_workers {
        0 => None,
        n => Some(Pool::start(n, &library)?),
    };
    let mut table = SessionTable::new(policy, Box::new(library), SessionKey::boxed());
    if let Some(pool) = &pool {
        table.offload_checksums(pool.capacity());
    }
    let mut driver = Driver::new(config);
    let mut load = LoadMeter::new(Instant::now());
    loop {
        let now = Instant::now();
        driver.tick(shutdown, table.endpoint_mut(), now);
        table.handle_timeout(now);
        if let Some(pool) = &pool {
            pool.exchange(&mut table, now);
        }
        flush(socket, &mut table, now, &mut driver);
        if table.is_drained() {
            break;
        }
        let results = (table.computing() > 0).then(|| now + RESULT_POLL);
        let deadline = earliest([table.poll_timeout(), results]);
        let waiting = Instant::now();
        let got = driver.recv(socket, deadline, table.len())?;
        let now = Instant::now();
        load.waited(now - waiting);
        if let Some((busy, over)) = load.sample(now) {
            table.observe_load(busy, over);
        }
        if let Some((peer, len)) = got {
            table.handle_datagram(now, peer, &driver.inbuf[..len]);
            if let Some(pool) = &pool {
                pool.exchange(&mut table, now);
            }
            flush(socket, &mut table, now, &mut driver);
        }
    }
    Ok(table.stats().clone())
}

/// Sends everything the table has queued, and logs the sessions that ended.
fn flush(socket: &UdpSocket, table: &mut SessionTable, now: Instant, driver: &mut Driver) {
    while let Some((peer, datagram)) = table.poll_transmit(now, &mut driver.outbuf) {
        send(socket, datagram, peer);
    }
    while let Some(record) = table.poll_record() {
        driver.log.session(&record);
    }
}
