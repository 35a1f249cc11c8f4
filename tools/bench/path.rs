//! The round trip of a path, as one chunk of a transfer sees it: a Data-sized request out,
//! an Ack-sized reply back, through whatever relay sits on the path (a `lossy-proxy` with
//! added delay) or none. It is the `RTT` of a window's ceiling `window × chunk ÷ RTT`.
//!
//! Unlike `pingpong` (the stop-and-wait ceiling of the bare loopback, blocking and
//! spinning), this one is measured with blocking receives only and through a relay: the echo
//! answers whichever address a request came from, so through a proxy its replies go back
//! through the proxy, delayed as the transfer's acknowledgments are.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpft::net;
use udpft::proto::wire::OVERHEAD;

/// How long the pinger (and the closed-loop relay's sender) waits for a reply before it
/// counts what it waits for lost and sends again.
pub(crate) const REPLY_WAIT: Duration = Duration::from_millis(200);

/// How often the echo looks at its stop flag while idle.
const ECHO_POLL: Duration = Duration::from_millis(50);

/// Round trips before timing starts (first wake-ups, the relay's first client).
const WARMUP: u64 = 20;

/// The bytes of the sequence number that opens every request and reply.
const SEQ_LEN: usize = 8;

/// A measured round trip.
#[derive(Clone, Copy, Debug)]
pub struct PathRtt {
    /// Pings not answered within [`REPLY_WAIT`].
    pub lost: u64,
    /// The median round trip.
    pub median: Duration,
}

impl PathRtt {
    /// `window × chunk ÷ RTT` in MB/s: the most a window of `window` chunks can move per
    /// round trip of this path.
    pub fn ceiling_mb_s(&self, window: u16, chunk: u16) -> f64 {
        f64::from(window) * f64::from(chunk) / self.median.as_secs_f64().max(1e-12) / 1e6
    }
}

/// Measures up to `count` round trips of a (`chunk` + 22)-byte request and a 22-byte reply
/// within `max_time`. `via` is given the echo's address and returns where to send (the
/// address itself for the bare path, or a relay started in front of it).
///
/// # Errors
/// If a socket or the echo thread cannot be set up, `via` fails, or no round trip was timed.
pub fn round_trip(
    chunk: u16,
    count: u64,
    max_time: Duration,
    via: impl FnOnce(SocketAddr) -> io::Result<SocketAddr>,
) -> io::Result<PathRtt> {
    with_echo("path echo", via, |socket| {
        ping(socket, chunk, count, max_time)
    })
}

/// Runs `measure` with a sender socket connected to where `via` says to send for an echo
/// thread's address (the echo itself, or a relay in front of it), its receives timing out
/// after [`REPLY_WAIT`]; stops the echo afterwards, by its flag.
///
/// # Errors
/// If a socket or the echo thread cannot be set up, `via` fails, or `measure` does.
pub(crate) fn with_echo<T>(
    name: &str,
    via: impl FnOnce(SocketAddr) -> io::Result<SocketAddr>,
    measure: impl FnOnce(&UdpSocket) -> io::Result<T>,
) -> io::Result<T> {
    let echo = net::bind("127.0.0.1:0".parse().expect("valid address"), false)?;
    echo.set_read_timeout(Some(ECHO_POLL))?;
    let echo_addr = echo.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || answer(&echo, &stopped))?;
    let result = via(echo_addr).and_then(|target| {
        let socket = net::bind("127.0.0.1:0".parse().expect("valid address"), false)?;
        socket.connect(target)?;
        socket.set_read_timeout(Some(REPLY_WAIT))?;
        measure(&socket)
    });
    stop.store(true, Ordering::Relaxed);
    thread
        .join()
        .map_err(|_| io::Error::other(format!("the {name} thread panicked")))?;
    result
}

/// The echo: answers each request with its first [`OVERHEAD`] bytes, to its sender.
fn answer(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((len, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len.min(OVERHEAD)], peer);
        }
    }
}

fn ping(socket: &UdpSocket, chunk: u16, count: u64, max_time: Duration) -> io::Result<PathRtt> {
    let mut request = vec![0x5au8; usize::from(chunk) + OVERHEAD];
    let mut reply = [0u8; 64];
    let mut rtts = Vec::new();
    let (mut seq, mut lost) = (0u64, 0u64);
    let started = Instant::now();
    // One ping per turn: bounded by count + warm-up + losses, the losses by time.
    while (rtts.len() as u64) < count && started.elapsed() < max_time {
        seq += 1;
        request[..SEQ_LEN].copy_from_slice(&seq.to_le_bytes());
        let sent = Instant::now();
        // A full send buffer is a lost ping, counted below.
        let _ = socket.send(&request);
        let answered = loop {
            match socket.recv(&mut reply) {
                Ok(len) if len >= SEQ_LEN && reply[..SEQ_LEN] == seq.to_le_bytes() => break true,
                // The late reply of an earlier ping.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        if !answered {
            lost += 1;
        } else if seq > WARMUP {
            rtts.push(sent.elapsed());
        }
    }
    if rtts.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no round trip of the path timed ({lost} pings lost)"),
        ));
    }
    rtts.sort_unstable();
    Ok(PathRtt {
        lost,
        median: rtts[rtts.len() / 2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_path_has_a_round_trip_and_a_ceiling_that_grows_with_the_window() {
        let rtt = round_trip(1430, 50, Duration::from_secs(5), Ok).expect("loopback");
        assert_eq!(rtt.lost, 0);
        assert!(rtt.median > Duration::ZERO);
        let one = rtt.ceiling_mb_s(1, 1430);
        assert!((rtt.ceiling_mb_s(64, 1430) / one - 64.0).abs() < 1e-9);
    }
}
