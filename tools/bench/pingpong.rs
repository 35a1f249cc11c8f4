//! The raw UDP ping-pong that bounds what a stop-and-wait transfer can reach on this host:
//! an echo thread with its own socket, and a pinger that sends one datagram, waits for the
//! reply, and sends the next. No protocol, no CRC, no file: only the kernel's loopback path
//! and the two wake-ups (or spins) per round trip that one chunk of a udpft transfer costs
//! at least.
//!
//! The round trip is shaped like udpft's: the request is a Data datagram (chunk + 22 bytes
//! of header and trailer), the reply an Ack (22 bytes), not the request echoed whole (which
//! at 64 KiB doubles the copying and overstates the round trip). It is measured two ways,
//! both ceilings of a stop-and-wait transfer: with blocking receives on both sides (what a
//! driver without busy-polling pays), and with each side spinning on its non-blocking
//! socket for up to [`SPIN`] before blocking (what busy-polling can reach).
//!
//! Both sockets are set up with [`udpft::net::bind`], like the client's and the server's, so
//! the buffer sizes match the real transfer.

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use udpft::net;
use udpft::proto::wire::{MAX_DATAGRAM, OVERHEAD};

/// How long the pinger waits for a reply before it counts the ping lost and sends again.
const ECHO_WAIT: Duration = Duration::from_millis(100);

/// How often the echo thread looks at its stop flag while idle.
const ECHO_POLL: Duration = Duration::from_millis(50);

/// Pings sent before timing starts (caches, first wake-ups, socket buffers).
const WARMUP: u64 = 50;

/// How long each side spins before blocking in the spinning variant.
pub const SPIN: Duration = Duration::from_micros(50);

/// The bytes of a reply: the sequence number the pinger matches it by.
const SEQ_LEN: usize = 8;

/// How each side waits for the next datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// A blocking receive.
    Blocking,
    /// Spin on the non-blocking socket for up to this long, then block.
    Spinning(Duration),
}

impl Waiting {
    /// `blocking` or `spinning`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blocking => "blocking",
            Self::Spinning(_) => "spinning",
        }
    }
}

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct PingPongSpec {
    /// Bytes of each request.
    pub request: usize,
    /// Bytes of each reply (at least 8: the sequence number).
    pub reply: usize,
    /// How both sides wait.
    pub waiting: Waiting,
    /// Stop after this many timed round trips...
    pub count: u64,
    /// ...or after this long, whichever comes first.
    pub max_time: Duration,
}

impl PingPongSpec {
    /// The round trip of one stop-and-wait chunk: a Data datagram of `chunk` bytes out, an
    /// Ack back.
    pub fn stop_and_wait(chunk: u16, waiting: Waiting, count: u64, max_time: Duration) -> Self {
        Self {
            request: usize::from(chunk) + OVERHEAD,
            reply: OVERHEAD,
            waiting,
            count,
            max_time,
        }
    }
}

/// What was measured.
#[derive(Clone, Copy, Debug)]
pub struct PingPong {
    /// Timed round trips.
    pub round_trips: u64,
    /// Pings whose reply did not come back within [`ECHO_WAIT`] (sent again).
    pub lost: u64,
    /// Mean round trip.
    pub mean_rtt: Duration,
    /// Median round trip.
    pub median_rtt: Duration,
}

impl PingPong {
    /// The stop-and-wait ceiling for `payload` useful bytes per round trip, in MB/s.
    pub fn ceiling_mb_s(&self, payload: usize) -> f64 {
        payload as f64 / self.mean_rtt.as_secs_f64().max(1e-12) / 1e6
    }
}

/// One socket of the ping-pong, set up for its way of waiting.
struct Side {
    socket: UdpSocket,
    waiting: Waiting,
    /// The longest blocking wait.
    wait: Duration,
}

impl Side {
    fn bind(waiting: Waiting, wait: Duration) -> io::Result<Self> {
        let socket = net::bind("127.0.0.1:0".parse().expect("valid address"), false)?;
        match waiting {
            Waiting::Blocking => socket.set_read_timeout(Some(wait))?,
            // Non-blocking for good: a spin that misses blocks in ppoll, so the mode never
            // changes between datagrams.
            Waiting::Spinning(_) => socket.set_nonblocking(true)?,
        }
        Ok(Self {
            socket,
            waiting,
            wait,
        })
    }

    /// The next datagram, or `None` once the wait is over.
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        if let Waiting::Spinning(spin) = self.waiting {
            if let Some(got) = net::spin_recv(&self.socket, buf, spin)? {
                return Ok(Some(got));
            }
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            match ppoll(&mut fds, Some(TimeSpec::from(self.wait)), None) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.socket.recv_from(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The echo side: a thread answering every datagram until dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(reply: usize, waiting: Waiting) -> io::Result<Self> {
        let side = Side::bind(waiting, ECHO_POLL)?;
        let addr = side.socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pingpong-echo".into())
            .spawn(move || echo_loop(&side, reply, &stopped))?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn echo_loop(side: &Side, reply: usize, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match side.receive(&mut buf) {
            Ok(Some((len, peer))) => {
                // The reply starts with the ping's sequence number, so a short reply still
                // names the ping it answers.
                let reply = reply.clamp(SEQ_LEN, len.max(SEQ_LEN));
                let _ = side.socket.send_to(&buf[..reply], peer);
            }
            Ok(None) => {}
            // A send error reported on this socket (ICMP from a gone pinger): keep serving.
            Err(_) => {}
        }
    }
}

/// Runs one ping-pong measurement on loopback.
///
/// # Errors
/// If a socket or the echo thread cannot be set up, or a size is out of range.
pub fn measure(spec: PingPongSpec) -> io::Result<PingPong> {
    if !(SEQ_LEN..=MAX_DATAGRAM).contains(&spec.request)
        || !(SEQ_LEN..=MAX_DATAGRAM).contains(&spec.reply)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "request {} and reply {} bytes must be within {SEQ_LEN}..={MAX_DATAGRAM}",
                spec.request, spec.reply
            ),
        ));
    }
    let echo = Echo::start(spec.reply, spec.waiting)?;
    let side = Side::bind(spec.waiting, ECHO_WAIT)?;
    side.socket.connect(echo.addr)?;
    let mut ping = vec![0x5au8; spec.request];
    let mut reply = vec![0u8; 65_536];
    let mut rtts = Vec::with_capacity(spec.count.min(1 << 20) as usize);
    let mut lost = 0;
    let started = Instant::now();
    let mut seq: u64 = 0;
    // Every loop turn sends one ping; the total is bounded by count + warm-up + losses,
    // and the losses by time (each costs ECHO_WAIT).
    while (rtts.len() as u64) < spec.count && started.elapsed() < spec.max_time {
        seq += 1;
        ping[..SEQ_LEN].copy_from_slice(&seq.to_le_bytes());
        let sent_at = Instant::now();
        side.socket.send(&ping)?;
        let answered = loop {
            match side.receive(&mut reply)? {
                // A reply to an earlier, given-up ping: skip it.
                Some((len, _)) if len < SEQ_LEN || reply[..SEQ_LEN] != seq.to_le_bytes() => {}
                Some(_) => break true,
                None => break false,
            }
        };
        let rtt = sent_at.elapsed();
        if !answered {
            lost += 1;
        } else if seq > WARMUP {
            rtts.push(rtt);
        }
    }
    drop(echo);
    if rtts.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no timed round trip within {:.1} s ({lost} pings lost)",
                spec.max_time.as_secs_f64()
            ),
        ));
    }
    let total: Duration = rtts.iter().sum();
    let mean_rtt = total / rtts.len() as u32;
    rtts.sort_unstable();
    Ok(PingPong {
        round_trips: rtts.len() as u64,
        lost,
        mean_rtt,
        median_rtt: rtts[rtts.len() / 2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use udpft::proto::wire::MAX_CHUNK;

    #[test]
    fn blocking_ping_pong_measures_round_trips_of_the_largest_chunk() {
        let spec =
            PingPongSpec::stop_and_wait(MAX_CHUNK, Waiting::Blocking, 20, Duration::from_secs(5));
        assert_eq!((spec.request, spec.reply), (MAX_DATAGRAM, OVERHEAD));
        let result = measure(spec).expect("loopback ping-pong");
        assert_eq!(result.round_trips, 20);
        assert!(result.mean_rtt > Duration::ZERO);
        assert!(result.ceiling_mb_s(usize::from(MAX_CHUNK)) > 0.0);
    }

    #[test]
    fn spinning_ping_pong_matches_replies_to_their_pings() {
        let result = measure(PingPongSpec::stop_and_wait(
            1430,
            Waiting::Spinning(SPIN),
            10,
            Duration::from_secs(5),
        ))
        .expect("loopback ping-pong");
        assert_eq!(result.round_trips, 10);
    }

    #[test]
    fn sizes_outside_a_datagram_are_refused() {
        let spec = PingPongSpec {
            request: MAX_DATAGRAM + 1,
            reply: OVERHEAD,
            waiting: Waiting::Blocking,
            count: 1,
            max_time: Duration::from_secs(1),
        };
        assert!(measure(spec).is_err());
        assert!(measure(PingPongSpec {
            request: 100,
            reply: 4,
            ..spec
        })
        .is_err());
    }
}
