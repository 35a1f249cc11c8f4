//! The raw UDP ping-pong that bounds what a stop-and-wait transfer can reach on this host:
//! an echo thread with its own socket, and a pinger that sends one datagram, waits for its
//! echo, and sends the next. No protocol, no CRC, no file: only the kernel's loopback path
//! and two thread wake-ups per round trip, which is what one chunk of a udpft transfer costs
//! at least.
//!
//! Both sockets are set up with [`udpft::net::bind`], like the client's and the server's, so
//! the buffer sizes match the real transfer.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use udpft::net;

/// How long the pinger waits for an echo before it counts the ping lost and sends again.
const ECHO_WAIT: Duration = Duration::from_millis(100);

/// How often the echo thread looks at its stop flag while idle.
const ECHO_POLL: Duration = Duration::from_millis(50);

/// Pings sent before timing starts (caches, first wake-ups, socket buffers).
const WARMUP: u64 = 50;

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct PingPongSpec {
    /// Bytes of each ping (a udpft chunk plus its 22 bytes of overhead).
    pub datagram: usize,
    /// Bytes of each echo; `None` echoes the whole ping back.
    pub echo: Option<usize>,
    /// Stop after this many timed round trips...
    pub count: u64,
    /// ...or after this long, whichever comes first.
    pub max_time: Duration,
}

/// What was measured.
#[derive(Clone, Copy, Debug)]
pub struct PingPong {
    /// Timed round trips.
    pub round_trips: u64,
    /// Pings whose echo did not come back within [`ECHO_WAIT`] (sent again).
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

/// The echo side: a thread answering every datagram until dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(echo: Option<usize>) -> io::Result<Self> {
        let socket = net::bind("127.0.0.1:0".parse().expect("valid address"), false)?;
        socket.set_read_timeout(Some(ECHO_POLL))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pingpong-echo".into())
            .spawn(move || echo_loop(&socket, echo, &stopped))?;
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

fn echo_loop(socket: &UdpSocket, echo: Option<usize>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                // The reply starts with the ping's sequence number, so a short echo still
                // names the ping it answers.
                let reply = echo.map_or(len, |n| n.max(8).min(len));
                let _ = socket.send_to(&buf[..reply], peer);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // A send error reported on this socket (ICMP from a gone pinger): keep serving.
            Err(_) => {}
        }
    }
}

/// Runs one ping-pong measurement on loopback.
///
/// # Errors
/// If a socket or the echo thread cannot be set up, or the datagram size is out of range.
pub fn measure(spec: PingPongSpec) -> io::Result<PingPong> {
    if !(8..=udpft::proto::wire::MAX_DATAGRAM).contains(&spec.datagram) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("datagram size {} is outside 8..=65507", spec.datagram),
        ));
    }
    let echo = Echo::start(spec.echo)?;
    let socket = net::bind("127.0.0.1:0".parse().expect("valid address"), false)?;
    socket.connect(echo.addr)?;
    socket.set_read_timeout(Some(ECHO_WAIT))?;
    let mut ping = vec![0x5au8; spec.datagram];
    let mut reply = vec![0u8; 65_536];
    let mut rtts = Vec::with_capacity(spec.count.min(1 << 20) as usize);
    let mut lost = 0;
    let started = Instant::now();
    let mut seq: u64 = 0;
    // Every loop turn sends one ping; the total is bounded by count + warm-up + losses,
    // and the losses by time (each costs ECHO_WAIT).
    while (rtts.len() as u64) < spec.count && started.elapsed() < spec.max_time {
        seq += 1;
        ping[..8].copy_from_slice(&seq.to_le_bytes());
        let sent_at = Instant::now();
        socket.send(&ping)?;
        let answered = loop {
            match socket.recv(&mut reply) {
                // An echo of an earlier, given-up ping: skip it.
                Ok(len) if len < 8 || reply[..8] != seq.to_le_bytes() => continue,
                Ok(_) => break true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
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

    #[test]
    fn ping_pong_measures_round_trips_of_the_largest_datagram() {
        let result = measure(PingPongSpec {
            datagram: udpft::proto::wire::MAX_DATAGRAM,
            echo: None,
            count: 20,
            max_time: Duration::from_secs(5),
        })
        .expect("loopback ping-pong");
        assert_eq!(result.round_trips, 20);
        assert!(result.mean_rtt > Duration::ZERO);
        assert!(result.ceiling_mb_s(65_485) > 0.0);
    }

    #[test]
    fn short_echoes_still_match_their_pings() {
        let result = measure(PingPongSpec {
            datagram: 1452,
            echo: Some(22),
            count: 10,
            max_time: Duration::from_secs(5),
        })
        .expect("loopback ping-pong");
        assert_eq!(result.round_trips, 10);
    }
}
