//! Socket plumbing for the drivers: binding a UDP socket with room for bursts, and
//! receiving with a precise deadline.

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

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
#[derive(Debug, Default)]
pub struct Receiver {
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

    /// Waits for one datagram until `deadline` (at most [`MAX_WAIT`]).
    /// `Ok(None)` means the wait ended without a datagram.
    ///
    /// # Errors
    /// Socket errors other than the timeout itself.
    pub fn recv_until(
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
        match socket.recv_from(buf) {
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
