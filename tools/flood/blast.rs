//! The engine that sends a flood: several threads, each owning its share of the attack's
//! source sockets (bound to loopback addresses), sending at an even share of the target rate,
//! reading every reply the server sends back, and answering those an attack answers (an Ack
//! 0 that proves an address). It stops when its [`Budget`] says so: the count is spent, the
//! deadline passed, or the caller stopped it.
//!
//! Pacing is by ticks: a thread wakes every [`TICK`] (or sooner at low rates), sends
//! everything due since the last wake, and reads what is queued on its sockets (one
//! non-blocking `ppoll` over them to find which). A thread that falls behind (descheduled on a busy machine)
//! catches up by at most [`MAX_LAG`] worth of datagrams, so the rate it reports is the rate it
//! achieved, not one it pretends to.

use crate::bounds::{check_rate, check_source, check_target, Budget};
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpft::proto::wire::{Kind, MAX_DATAGRAM};

/// How often a thread wakes, at most, to send what is due and read what arrived (at
/// 10,000 datagrams a second: bursts of 10).
const TICK: Duration = Duration::from_millis(1);

/// How far behind schedule a thread may fall before it gives up the missed datagrams.
const MAX_LAG: Duration = Duration::from_millis(50);

/// Replies read from one socket in one turn, so one busy socket cannot starve the others.
const READ_BURST: usize = 256;

/// Kernel buffer asked for each flood socket (the kernel caps it at `rmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// One datagram a script wants sent: from which of its sources, how long (in the buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out {
    /// Index into the script's [`Script::sources`].
    pub source: usize,
    /// Bytes written into the buffer.
    pub len: usize,
}

/// One thread's share of an attack: its source addresses, what it sends, how it answers.
pub trait Script: Send {
    /// The addresses its sockets bind to (loopback only; port 0 for an ephemeral one).
    fn sources(&self) -> Vec<SocketAddr>;

    /// The next paced datagram, written into `buf`; `None` if nothing is due at `now`
    /// (the thread then waits for its next tick).
    fn next(&mut self, now: Instant, buf: &mut [u8]) -> Option<Out>;

    /// A datagram from the server arrived on `source`; an answer to send at once (from the
    /// same source) is written into `buf`.
    fn reply(
        &mut self,
        _now: Instant,
        _source: usize,
        _datagram: &[u8],
        _buf: &mut [u8],
    ) -> Option<usize> {
        None
    }

    /// After the flood: datagrams that close what it opened (an Error per held session),
    /// one per call until `None`. Still counted against the budget's count.
    fn farewell(&mut self, _buf: &mut [u8]) -> Option<Out> {
        None
    }

    /// What the script itself counted (sessions opened, refused...), as `name=value` pairs.
    fn notes(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// What a flood sent and received.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Datagrams sent (paced, answers and farewells).
    pub sent: u64,
    /// Their bytes (UDP payload).
    pub sent_bytes: u64,
    /// Of those, answers to replies (proofs of address).
    pub answers: u64,
    /// Sends the kernel refused (full buffer and the like).
    pub send_errors: u64,
    /// Datagrams received from the server.
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// Received datagrams by message type (index = type byte; 0 = not udpft).
    pub by_kind: [u64; 9],
    /// From the first send to the last.
    pub elapsed: Duration,
    /// The scripts' own counters, summed by name.
    pub notes: Vec<(&'static str, u64)>,
}

impl Tally {
    fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.sent_bytes += other.sent_bytes;
        self.answers += other.answers;
        self.send_errors += other.send_errors;
        self.received += other.received;
        self.received_bytes += other.received_bytes;
        for (a, b) in self.by_kind.iter_mut().zip(other.by_kind) {
            *a += b;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        for (name, value) in &other.notes {
            match self.notes.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => *total += value,
                None => self.notes.push((name, *value)),
            }
        }
    }

    /// Datagrams a second actually sent.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Replies received per datagram sent.
    pub fn replies_per_datagram(&self) -> f64 {
        self.received as f64 / (self.sent as f64).max(1.0)
    }

    /// Bytes received per byte sent: the amplification a spoofer would get.
    pub fn amplification(&self) -> f64 {
        self.received_bytes as f64 / (self.sent_bytes as f64).max(1.0)
    }

    /// Received datagrams of one message type.
    pub fn received_of(&self, kind: Kind) -> u64 {
        self.by_kind[kind as usize]
    }
}

/// Runs `scripts` (one thread each) against `target` at `rate` datagrams a second in all,
/// within `budget`; returns when every thread has stopped.
///
/// # Errors
/// A refused target, source or rate, or a socket that cannot be bound.
pub fn run(
    target: SocketAddr,
    scripts: Vec<Box<dyn Script>>,
    rate: f64,
    budget: &Arc<Budget>,
) -> io::Result<Tally> {
    let target = check_target(target).map_err(io::Error::other)?;
    let rate = check_rate(rate).map_err(io::Error::other)?;
    if scripts.is_empty() {
        return Err(io::Error::other("an attack needs at least one script"));
    }
    let share = rate / scripts.len() as f64;
    // Bind everything before the first datagram, so a bad source fails the whole flood.
    let mut prepared = Vec::new();
    for script in scripts {
        let sockets = script
            .sources()
            .into_iter()
            .map(bind_source)
            .collect::<io::Result<Vec<_>>>()?;
        prepared.push((script, sockets));
    }
    let threads: Vec<_> = prepared
        .into_iter()
        .enumerate()
        .map(|(i, (script, sockets))| {
            let budget = Arc::clone(budget);
            std::thread::Builder::new()
                .name(format!("flood-{i}"))
                .spawn(move || drive(target, script, &sockets, share, &budget))
        })
        .collect::<io::Result<_>>()?;
    let mut total = Tally::default();
    for thread in threads {
        let tally = thread
            .join()
            .map_err(|_| io::Error::other("a flood thread panicked"))?;
        total.add(&tally);
    }
    Ok(total)
}

/// A non-blocking UDP socket on the loopback address `addr`, with a large receive buffer
/// so that replies are counted rather than dropped by the kernel.
fn bind_source(addr: SocketAddr) -> io::Result<UdpSocket> {
    let addr = check_source(addr).map_err(io::Error::other)?;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind a flood socket on {addr}: {e}"),
        )
    })?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// One thread's loop (see the module docs).
fn drive(
    target: SocketAddr,
    mut script: Box<dyn Script>,
    sockets: &[UdpSocket],
    rate: f64,
    budget: &Budget,
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let start = Instant::now();
    let mut last_send = start;
    let mut paced: f64 = 0.0;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let max_lag = (rate * MAX_LAG.as_secs_f64()).max(1.0);
    let send = |tally: &mut Tally, source: usize, bytes: &[u8]| match sockets[source]
        .send_to(bytes, target)
    {
        Ok(_) => {
            tally.sent += 1;
            tally.sent_bytes += bytes.len() as u64;
        }
        Err(_) => tally.send_errors += 1,
    };
    'flood: loop {
        let now = Instant::now();
        if budget.is_over(now) {
            break;
        }
        let due = now.duration_since(start).as_secs_f64() * rate;
        paced = paced.max(due - max_lag);
        while paced < due {
            let Some(out) = script.next(now, &mut buf) else {
                paced = due; // nothing due: no burst later to make up for it
                break;
            };
            if !budget.take(now) {
                break 'flood;
            }
            send(&mut tally, out.source, &buf[..out.len]);
            last_send = now;
            paced += 1.0;
        }
        // Read what has arrived, without waiting: replies wait in the sockets' buffers for
        // at most a tick, which keeps the flood's own CPU small (one poll a tick, not one
        // wake-up per reply).
        let mut fds: Vec<PollFd> = sockets
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        let ready =
            matches!(ppoll(&mut fds, Some(TimeSpec::from(Duration::ZERO)), None), Ok(n) if n > 0);
        let readable: Vec<usize> = if ready {
            fds.iter()
                .enumerate()
                .filter(|(_, fd)| fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        drop(fds);
        for source in readable {
            for _ in 0..READ_BURST {
                let Ok((len, _)) = sockets[source].recv_from(&mut inbuf) else {
                    break;
                };
                tally.received += 1;
                tally.received_bytes += len as u64;
                tally.by_kind[kind_index(&inbuf[..len])] += 1;
                let now = Instant::now();
                if let Some(answer) = script.reply(now, source, &inbuf[..len], &mut buf) {
                    if !budget.take(now) {
                        break 'flood;
                    }
                    send(&mut tally, source, &buf[..answer]);
                    tally.answers += 1;
                    last_send = now;
                }
            }
        }
        // Sleep to the next tick, or sooner if the next datagram is due sooner.
        let next_due = start + Duration::from_secs_f64((paced + 1.0) / rate);
        let wake = next_due.max(now + TICK.min(interval));
        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(TICK));
    }
    while let Some(out) = script.farewell(&mut buf) {
        if !budget.take_farewell() {
            break;
        }
        send(&mut tally, out.source, &buf[..out.len]);
        last_send = Instant::now();
    }
    tally.elapsed = last_send.saturating_duration_since(start);
    tally.notes = script.notes();
    tally
}

/// The message-type byte of a udpft datagram as an index of [`Tally::by_kind`] (0 if the
/// datagram is not one).
fn kind_index(datagram: &[u8]) -> usize {
    match datagram {
        [b'U', b'F', _, kind @ 1..=8, ..] => usize::from(*kind),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends numbered 8-byte datagrams from one loopback socket.
    struct Counter {
        n: u64,
    }

    impl Script for Counter {
        fn sources(&self) -> Vec<SocketAddr> {
            vec!["127.0.0.1:0".parse().unwrap()]
        }
        fn next(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Out> {
            buf[..8].copy_from_slice(&self.n.to_be_bytes());
            self.n += 1;
            Some(Out { source: 0, len: 8 })
        }
    }

    fn sink() -> (UdpSocket, SocketAddr) {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sink.local_addr().unwrap();
        (sink, addr)
    }

    fn counters(n: usize) -> Vec<Box<dyn Script>> {
        (0..n)
            .map(|_| Box::new(Counter { n: 0 }) as Box<dyn Script>)
            .collect()
    }

    #[test]
    fn a_flood_stops_at_its_count() {
        let (_sink, addr) = sink();
        let budget = Arc::new(Budget::new(3_000, Duration::from_secs(60)).unwrap());
        let tally = run(addr, counters(3), 1_000_000.0, &budget).unwrap();
        assert_eq!(tally.sent + tally.send_errors, 3_000);
        assert_eq!(budget.taken(), 3_000);
    }

    #[test]
    fn a_flood_stops_at_its_deadline() {
        let (_sink, addr) = sink();
        let lasting = Duration::from_millis(300);
        let started = Instant::now();
        let budget = Arc::new(Budget::new(10_000_000, lasting).unwrap());
        let tally = run(addr, counters(2), 2_000.0, &budget).unwrap();
        let took = started.elapsed();
        // A bound, not a performance claim: the flood ended by itself near its deadline
        // (threads wake at least every TICK), far from its count.
        assert!(took >= lasting, "ended early: {took:?}");
        assert!(took < lasting + Duration::from_secs(2), "ran on: {took:?}");
        assert!(
            tally.sent < 10_000,
            "the rate bounds the count too: {}",
            tally.sent
        );
        assert!(tally.sent > 0);
    }

    #[test]
    fn a_flood_refuses_a_target_off_loopback() {
        let budget = Arc::new(Budget::new(10, Duration::from_secs(1)).unwrap());
        let error = run(
            "192.0.2.1:6969".parse().unwrap(),
            counters(1),
            10.0,
            &budget,
        )
        .expect_err("refused");
        assert!(
            error.to_string().contains("not a loopback address"),
            "{error}"
        );
        assert_eq!(budget.taken(), 0, "nothing was sent");
    }

    #[test]
    fn a_script_source_off_loopback_is_refused_before_any_send() {
        struct Elsewhere;
        impl Script for Elsewhere {
            fn sources(&self) -> Vec<SocketAddr> {
                vec!["0.0.0.0:0".parse().unwrap()]
            }
            fn next(&mut self, _: Instant, _: &mut [u8]) -> Option<Out> {
                Some(Out { source: 0, len: 1 })
            }
        }
        let (_sink, addr) = sink();
        let budget = Arc::new(Budget::new(10, Duration::from_secs(1)).unwrap());
        let scripts: Vec<Box<dyn Script>> = vec![Box::new(Counter { n: 0 }), Box::new(Elsewhere)];
        assert!(run(addr, scripts, 10.0, &budget).is_err());
        assert_eq!(budget.taken(), 0, "nothing was sent");
    }

    #[test]
    fn kinds_are_read_from_the_header() {
        assert_eq!(kind_index(b"UF\x01\x06rest"), 6);
        assert_eq!(kind_index(b"UF\x01\x09rest"), 0);
        assert_eq!(kind_index(b"xx"), 0);
    }
}
