//! What every server loop shares, whatever its model: the buffers, the precise receive, the
//! view of the stop, the statistics line and the log ([`Driver`]), and the small steps of
//! moving datagrams (sending a session's queue, the front door's replies) and reporting
//! progress.

use super::log::Logger;
use super::stop::{Shutdown, Stopping};
use super::ServerConfig;
use crate::library::Library;
use crate::net;
use crate::proto::admission::Policy;
use crate::proto::endpoint::{Endpoint, PROGRESS_EVERY};
use crate::proto::server_session::ServerSession;
use crate::proto::stats::ServerStats;
use crate::proto::wire::MAX_DATAGRAM;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Sends one datagram. A failure is the same as a loss to the protocol (the timer
/// retransmits), so it is not an error of the loop.
pub(crate) fn send(socket: &UdpSocket, datagram: &[u8], peer: SocketAddr) {
    net::turnaround::sending();
    let _ = socket.send_to(datagram, peer);
}

/// Sends every reply the front door has queued.
pub(crate) fn flush_endpoint(socket: &UdpSocket, endpoint: &mut Endpoint, buf: &mut [u8]) {
    while let Some((peer, len)) = endpoint.poll_transmit(buf) {
        send(socket, &buf[..len], peer);
    }
}

/// Sends everything one session has queued to its peer; returns how many datagrams.
pub(crate) fn flush_session(
    socket: &UdpSocket,
    transfer: &mut ServerSession,
    peer: SocketAddr,
    now: Instant,
    buf: &mut [u8],
) -> u64 {
    let mut sent = 0;
    while let Some(datagram) = transfer.poll_transmit(now, buf) {
        sent += 1;
        send(socket, datagram, peer);
    }
    sent
}

/// When a driver that runs sessions itself next reports their progress.
#[derive(Debug)]
pub(crate) struct ProgressClock(Instant);

impl ProgressClock {
    pub(crate) fn new(now: Instant) -> Self {
        Self(now + PROGRESS_EVERY)
    }
    /// Whether a report is due at `now` (then the next one is set).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let due = now >= self.0;
        if due {
            self.0 = now + PROGRESS_EVERY;
        }
        due
    }
    /// When the next report is due.
    pub(crate) fn at(&self) -> Instant {
        self.0
    }
}

/// The earliest of some deadlines.
pub(crate) fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// How much of a loop's time goes to work rather than to waiting for datagrams: the driver
/// owns the clock, so it measures, and every [`LOAD_PERIOD`] hands the table the busy part
/// of the period, which decides what that means ([`crate::proto::share`]). A receive call
/// counts as waiting whole, its copy of the datagram included: a loop busy with 64 KiB
/// datagrams reads a little less busy than it is.
#[derive(Debug)]
pub(crate) struct LoadMeter {
    since: Instant,
    waited: Duration,
}

/// How often a loop reports its load: long enough to hold hundreds of datagrams, short
/// enough that a window shared too long (or too late) costs a few round trips.
pub(crate) const LOAD_PERIOD: Duration = Duration::from_millis(20);

impl LoadMeter {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            since: now,
            waited: Duration::ZERO,
        }
    }

    /// The loop spent `waited` in one receive (its spin included).
    pub(crate) fn waited(&mut self, waited: Duration) {
        self.waited += waited;
    }

    /// Once a period has passed at `now`: (busy, period), and a new period begins.
    pub(crate) fn sample(&mut self, now: Instant) -> Option<(Duration, Duration)> {
        let over = now.saturating_duration_since(self.since);
        if over < LOAD_PERIOD {
            return None;
        }
        let busy = over.saturating_sub(std::mem::take(&mut self.waited));
        self.since = now;
        Some((busy, over))
    }
}

/// The statistics line of `--stats-every`: printed at most that often, and only when a
/// counter changed since the last one.
#[derive(Debug)]
pub(crate) struct StatsLine {
    every: Option<Duration>,
    next: Option<Instant>,
    last: String,
}

impl StatsLine {
    pub(crate) fn new(every: Option<Duration>, now: Instant) -> Self {
        Self {
            every,
            next: every.map(|e| now + e),
            last: String::new(),
        }
    }
    pub(crate) fn tick(&mut self, now: Instant, live: usize, stats: &ServerStats, log: &Logger) {
        let (Some(every), Some(next)) = (self.every, self.next) else {
            return;
        };
        if now < next {
            return;
        }
        self.next = Some(now + every);
        let line = format!("live={live} {}", stats.summary());
        if line != self.last {
            log.stats(&line);
            self.last = line;
        }
    }
}

/// What every server loop keeps beside its front door: its datagram buffers, its precise
/// receive, its view of the stop, its statistics line and its log.
pub(crate) struct Driver {
    pub(crate) inbuf: Vec<u8>,
    pub(crate) outbuf: Vec<u8>,
    receiver: net::Receiver,
    stopping: Stopping,
    stats_line: StatsLine,
    pub(crate) log: Logger,
}

impl Driver {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            inbuf: vec![0u8; MAX_DATAGRAM],
            outbuf: vec![0u8; MAX_DATAGRAM],
            receiver: net::Receiver::new().busy_poll(config.busy_poll),
            stopping: Stopping::default(),
            stats_line: StatsLine::new(config.stats_every, Instant::now()),
            log: Logger::new(config.log),
        }
    }

    /// The front door every driver but the table's builds: `policy` over `library`, with a
    /// session key from the OS.
    pub(crate) fn endpoint(policy: Policy, library: Library) -> Endpoint {
        Endpoint::new(policy, Box::new(library), crate::ids::SessionKey::boxed())
    }

    /// The start of every round: a stop request, the statistics line, the front door's own
    /// timers.
    pub(crate) fn tick(&mut self, shutdown: &Shutdown, endpoint: &mut Endpoint, now: Instant) {
        self.stopping.poll(shutdown, endpoint, now);
        self.stats_line
            .tick(now, endpoint.live(), endpoint.stats(), &self.log);
        endpoint.handle_timeout(now);
    }

    /// Sends every reply the front door has queued.
    pub(crate) fn flush(&mut self, socket: &UdpSocket, endpoint: &mut Endpoint) {
        flush_endpoint(socket, endpoint, &mut self.outbuf);
    }

    /// Waits for the next datagram until `deadline`: its sender and length in `inbuf`.
    /// `sessions` live in this loop: busy-polling spins less the more there are.
    pub(crate) fn recv(
        &mut self,
        socket: &UdpSocket,
        deadline: Option<Instant>,
        sessions: usize,
    ) -> io::Result<Option<(SocketAddr, usize)>> {
        self.receiver.set_sessions(sessions);
        self.receiver
            .recv_until(socket, &mut self.inbuf, deadline)
            .map(|got| got.map(|(len, peer)| (peer, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_meter_reports_each_period_once_with_its_busy_part() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut load = LoadMeter::new(t0);
        load.waited(ms(5));
        assert_eq!(load.sample(t0 + ms(10)), None);
        load.waited(ms(1));
        assert_eq!(load.sample(t0 + ms(20)), Some((ms(14), ms(20))));
        // A new period: nothing waited in it yet, and it is not over.
        assert_eq!(load.sample(t0 + ms(30)), None);
        assert_eq!(load.sample(t0 + ms(45)), Some((ms(25), ms(25))));
    }
}
