//! Socket plumbing for the drivers: binding a UDP socket with room for bursts, and
//! receiving with a precise deadline, spinning briefly first while replies come fast
//! ([`spin`]).

pub mod spin;
pub mod turnaround;

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use socket2::{Domain, Protocol, Socket, Type};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

pub use spin::{SpinPolicy, Wait, DEFAULT_BUSY_POLL};

/// Kernel socket buffer size asked for: room for many clients' datagrams in a burst.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket to `addr`. With `reuse_port`, several sockets may bind the same
/// address and the kernel spreads peers over them (SO_REUSEPORT).
///
/// # Errors
/// Any error from creating, configuring or binding the socket.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` should mean IPv6 and IPv4 alike where the system allows it.
        let _ = socket.set_only_v6(false);
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Best effort: the kernel caps these at its own limits.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The unspecified address of `peer`'s family, port 0: where a client binds to talk to it.
pub fn any_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("valid address"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("valid address"),
    }
}

/// Receives until a datagram arrives or a deadline passes, as precisely as the deadline
/// needs and with as few system calls as that allows.
///
/// A socket receive timeout (`SO_RCVTIMEO`) costs nothing per datagram but is rounded up to
/// whole kernel ticks (about 8 ms here): fine for a wait of tens of milliseconds (an idle
/// timeout, a linger), ruinous for a sub-millisecond retransmission timer. So a long wait is
/// one blocking `recvfrom` under the socket's timeout (set again only when it would end the
/// wait late, or far too early), and a short one is `ppoll(2)`, with nanosecond resolution,
/// then a non-blocking `recvfrom`. A wake-up without a datagram (a spurious one, or a
/// datagram the kernel dropped on a bad UDP checksum) is an empty wait, never a hang.
///
/// With busy-polling ([`Receiver::busy_poll`]), a wait first spins on the non-blocking
/// socket for as long as its [`SpinPolicy`] says, so a reply that comes within microseconds
/// is taken without the wake-up of a blocking receive. The policy learns from each wait,
/// and from how long the receiving thread waits for a CPU (so a busy-polling receiver
/// belongs to the thread that first waits with it).
#[derive(Debug, Default)]
pub struct Receiver {
    /// When to spin before blocking (never, unless [`Receiver::busy_poll`] asked for it).
    spin: SpinPolicy,
    /// How long this thread has waited for a CPU, for the spin policy (opened by the first
    /// wait that may spin; `None` where the system does not tell).
    run_delay: Option<RunDelay>,
    /// The socket's mode as last set (`Some(true)`: non-blocking).
    nonblocking: Option<bool>,
    /// The socket's receive timeout as last set.
    timeout: Option<Duration>,
    /// Datagrams seemed to be queued at the last call: try a non-blocking receive before
    /// paying for a poll (a busy server finds its socket seldom empty).
    backlog: bool,
    /// Report `ECONNREFUSED` instead of treating it as an empty wait (see
    /// [`Receiver::connected`]).
    report_refused: bool,
}

/// The longest single wait, so a loop notices a stop request within this time.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// Waits at least this long use the socket's coarse timeout; shorter ones use `ppoll`.
const COARSE_WAIT: Duration = Duration::from_millis(20);

/// A poll that returns sooner than this found a datagram already queued.
const BACKLOG_HINT: Duration = Duration::from_micros(3);

impl Receiver {
    /// A receiver that has not touched the socket's mode or timeout yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver for a socket connected to its one peer (a client's): an ICMP
    /// port-unreachable from that peer, which the kernel reports as `ECONNREFUSED`, is
    /// returned as that error, so the caller learns in a round trip that nothing listens
    /// there. (A server's socket serves many peers: one peer's closed port says nothing
    /// about the others, so [`Receiver::new`] treats it as an empty wait.)
    pub fn connected() -> Self {
        Self {
            report_refused: true,
            ..Self::default()
        }
    }

    /// Waits without spinning (see [`Receiver::recv_until`]).
    fn wait_until(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<Option<(usize, SocketAddr)>> {
        let wait = match deadline {
            Some(at) => at.saturating_duration_since(Instant::now()).min(MAX_WAIT),
            None => MAX_WAIT,
        };
        if wait >= COARSE_WAIT {
            self.set_nonblocking(socket, false)?;
            let keep = self
                .timeout
                .is_some_and(|current| current <= wait && wait <= current * 2);
            if !keep {
                socket.set_read_timeout(Some(wait))?;
                self.timeout = Some(wait);
            }
        } else {
            self.set_nonblocking(socket, true)?;
            if self.backlog {
                match socket.recv_from(buf) {
                    Ok(got) => return Ok(Some(got)),
                    Err(e) if is_timeout(&e) => self.backlog = false,
                    Err(e) if self.is_reported(&e) => return Err(e),
                    Err(_) => {}
                }
            }
            // A zero wait still looks: a loop with work due at once must not starve the
            // socket.
            let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
            let polled = Instant::now();
            match ppoll(&mut fds, Some(TimeSpec::from(wait)), None) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            // Ready without having to wait: more are probably queued behind it.
            self.backlog = polled.elapsed() < BACKLOG_HINT;
        }
        self.settle(socket.recv_from(buf))
    }

    /// What a receive's result means for the wait: a datagram, an empty wait, or an error.
    fn settle(
        &self,
        received: io::Result<(usize, SocketAddr)>,
    ) -> io::Result<Option<(usize, SocketAddr)>> {
        match received {
            Ok(got) => Ok(Some(got)),
            Err(e) if is_timeout(&e) => Ok(None),
            Err(e) if self.is_reported(&e) => Err(e),
            // A previous send to a closed port can surface here (ICMP); on a socket that
            // serves many peers it says nothing about this one, so it is an empty wait.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `e` is the peer's closed port and this receiver reports it.
    fn is_reported(&self, e: &io::Error) -> bool {
        self.report_refused && e.kind() == io::ErrorKind::ConnectionRefused
    }

    fn set_nonblocking(&mut self, socket: &UdpSocket, nonblocking: bool) -> io::Result<()> {
        if self.nonblocking != Some(nonblocking) {
            socket.set_nonblocking(nonblocking)?;
            self.nonblocking = Some(nonblocking);
        }
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Busy-polling: the spin before a blocking wait.
impl Receiver {
    /// This receiver, spinning adaptively for at most `cap` before each blocking wait
    /// (see [`SpinPolicy`]); [`Duration::ZERO`] turns spinning off.
    #[must_use]
    pub fn busy_poll(mut self, cap: Duration) -> Self {
        self.spin = SpinPolicy::new(cap);
        self
    }

    /// Tells the spin policy how many sessions share this receiver's loop (spins shrink as
    /// they grow).
    pub fn set_sessions(&mut self, sessions: usize) {
        self.spin.set_sessions(sessions);
    }

    /// Waits for one datagram until `deadline` (at most [`MAX_WAIT`]), spinning first when
    /// the policy says a reply is due soon. `Ok(None)` means the wait ended without a
    /// datagram.
    ///
    /// # Errors
    /// Socket errors other than the timeout itself.
    pub fn recv_until(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<Option<(usize, SocketAddr)>> {
        turnaround::waiting();
        let got = self.recv_until_inner(socket, buf, deadline);
        if let Ok(Some(_)) = got {
            turnaround::received();
        }
        got
    }

    fn recv_until_inner(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<Option<(usize, SocketAddr)>> {
        let started = Instant::now();
        self.report_run_delay(started);
        let left = deadline.map_or(MAX_WAIT, |at| at.saturating_duration_since(started));
        let budget = self.spin.budget().min(left);
        let spun = !budget.is_zero();
        if spun {
            self.set_nonblocking(socket, true)?;
            match spin_recv(socket, buf, budget) {
                Ok(Some(got)) => {
                    self.spin.observe(Wait::Caught {
                        after: started.elapsed(),
                    });
                    return Ok(Some(got));
                }
                Ok(None) => {}
                Err(e) => return self.settle(Err(e)),
            }
        }
        let got = self.wait_until(socket, buf, deadline)?;
        let elapsed = started.elapsed();
        self.spin.observe(match got {
            Some(_) => Wait::Woke {
                after: elapsed,
                spun,
            },
            None => Wait::Empty { waited: elapsed },
        });
        Ok(got)
    }
}

impl Receiver {
    /// Every [`RUN_DELAY_EVERY`], tells the spin policy how long this thread waited for a
    /// CPU since the last time.
    fn report_run_delay(&mut self, now: Instant) {
        if self.spin.cap().is_zero() {
            return;
        }
        if self.run_delay.is_none() {
            self.run_delay = RunDelay::open(now);
        }
        if let Some((delay, over)) = self.run_delay.as_mut().and_then(|r| r.sample(now)) {
            self.spin.observe_run_delay(delay, over);
        }
    }
}

/// How often a busy-polling receiver reads its thread's run delay.
const RUN_DELAY_EVERY: Duration = Duration::from_millis(2);

/// The time the thread that opened it has spent waiting for a CPU: the second field of
/// `/proc/thread-self/schedstat` (nanoseconds), read again with one `pread` of the file
/// kept open (about a microsecond, every [`RUN_DELAY_EVERY`]).
#[derive(Debug)]
struct RunDelay {
    file: File,
    /// When the last sample was taken, and what it read.
    at: Instant,
    total: Duration,
}

impl RunDelay {
    fn open(now: Instant) -> Option<Self> {
        let file = File::open("/proc/thread-self/schedstat").ok()?;
        let total = Self::read(&file)?;
        Some(Self {
            file,
            at: now,
            total,
        })
    }

    fn read(file: &File) -> Option<Duration> {
        let mut buf = [0u8; 96];
        let len = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..len]).ok()?;
        let nanos = text.split_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    }

    /// (run delay, wall time) since the last sample, once [`RUN_DELAY_EVERY`] has passed.
    fn sample(&mut self, now: Instant) -> Option<(Duration, Duration)> {
        let over = now.saturating_duration_since(self.at);
        if over < RUN_DELAY_EVERY {
            return None;
        }
        let total = Self::read(&self.file)?;
        let delay = total.saturating_sub(self.total);
        (self.at, self.total) = (now, total);
        Some((delay, over))
    }
}

/// Receives on a non-blocking `socket` until a datagram arrives or `budget` has passed
/// (`Ok(None)`). Each try is one `recvfrom`; errors other than "nothing yet" are returned
/// as they are.
///
/// # Errors
/// Any receive error but `WouldBlock` and `Interrupted`. On a blocking socket the first
/// try blocks as the socket's timeout says.
pub fn spin_recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    budget: Duration,
) -> io::Result<Option<(usize, SocketAddr)>> {
    let started = Instant::now();
    loop {
        match socket.recv_from(buf) {
            Ok(got) => return Ok(Some(got)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if started.elapsed() >= budget {
            return Ok(None);
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = bind("127.0.0.1:0".parse().expect("address"), false).expect("bind");
        let b = bind("127.0.0.1:0".parse().expect("address"), false).expect("bind");
        a.connect(b.local_addr().expect("address"))
            .expect("connect");
        (a, b)
    }

    #[test]
    fn a_spin_takes_a_queued_datagram_and_gives_up_after_its_budget() {
        let (sender, receiver) = pair();
        receiver.set_nonblocking(true).expect("non-blocking");
        let mut buf = [0u8; 64];
        let started = Instant::now();
        let budget = Duration::from_micros(300);
        assert_eq!(spin_recv(&receiver, &mut buf, budget).expect("spin"), None);
        assert!(started.elapsed() >= budget, "gave up early");
        sender.send(b"ping").expect("send");
        let got = spin_recv(&receiver, &mut buf, Duration::from_secs(5)).expect("spin");
        assert_eq!(got.map(|(n, _)| &buf[..n]), Some(&b"ping"[..]));
    }

    #[test]
    fn a_busy_polling_receiver_delivers_every_datagram_and_ends_empty_waits() {
        let (sender, socket) = pair();
        let mut receiver = Receiver::new().busy_poll(DEFAULT_BUSY_POLL);
        let mut buf = [0u8; 64];
        for i in 0..200u32 {
            sender.send(&i.to_be_bytes()).expect("send");
            let deadline = Instant::now() + Duration::from_secs(5);
            let got = receiver
                .recv_until(&socket, &mut buf, Some(deadline))
                .expect("receive");
            assert_eq!(got.map(|(n, _)| &buf[..n]), Some(&i.to_be_bytes()[..]));
        }
        for wait in [
            Duration::ZERO,
            Duration::from_micros(200),
            Duration::from_millis(30),
        ] {
            let deadline = Instant::now() + wait;
            let got = receiver
                .recv_until(&socket, &mut buf, Some(deadline))
                .expect("receive");
            assert_eq!(got, None);
            assert!(Instant::now() >= deadline, "returned before its deadline");
        }
    }

    #[test]
    fn a_thread_reads_its_run_delay_at_most_every_interval() {
        let start = Instant::now();
        let Some(mut run_delay) = RunDelay::open(start) else {
            eprintln!("SKIPPED: /proc/thread-self/schedstat is not readable here");
            return;
        };
        assert_eq!(run_delay.sample(start + RUN_DELAY_EVERY / 2), None);
        let later = start + RUN_DELAY_EVERY;
        let (delay, over) = run_delay.sample(later).expect("a sample");
        assert_eq!(over, RUN_DELAY_EVERY);
        assert!(delay < Duration::from_secs(1), "{delay:?}");
        assert_eq!(run_delay.sample(later + RUN_DELAY_EVERY / 2), None);
    }
}
