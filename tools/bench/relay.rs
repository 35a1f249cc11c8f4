//! What a path can relay *closed-loop*: `window` datagrams of a Data's size outstanding,
//! each answered by an Ack-sized reply, a new one sent per reply, through whatever relay
//! sits on the path (a `lossy-proxy` adding delay) or none. It is the reference a windowed
//! transfer is set against beside `window × chunk ÷ RTT` and the one-way blast: a transfer
//! is clocked by its acknowledgments just so, and a relay (or either end's scheduler) that
//! queues a window's datagrams behind each other shows here as a rate below the ceiling,
//! which the one-way blast, with no replies to wait for and no window, cannot show.
//!
//! Both ends block in their receives (no busy-polling), as the RTT reference of `path` does.
//! The rate is taken after the first window's replies (warm-up: the relay's first client,
//! the first wake-ups), from that reply to the last, in payload bytes (the chunk) per second.

use crate::blast;
use crate::path::with_echo;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use udpft::proto::wire::OVERHEAD;

/// What was measured.
#[derive(Clone, Copy, Debug)]
pub struct Relay {
    /// Replies counted after the warm-up.
    pub replies: u64,
    /// From the warm-up's end to the last reply.
    pub elapsed: Duration,
    /// Waits of [`REPLY_WAIT`](crate::path::REPLY_WAIT) without a reply (what was
    /// outstanding counted lost).
    pub stalls: u64,
}

impl Relay {
    /// `payload` useful bytes per reply, per second, in MB/s.
    pub fn mb_s(&self, payload: usize) -> f64 {
        self.replies as f64 * payload as f64 / self.elapsed.as_secs_f64().max(1e-12) / 1e6
    }
}

/// Keeps `window` requests of `chunk` + 22 bytes outstanding for up to `count` replies
/// after the warm-up, within `max_time`. `via` is given the echo's address and returns where
/// to send (the address itself for the bare path, or a relay in front of it).
///
/// # Errors
/// If a socket or the echo thread cannot be set up, `via` fails, or no reply was counted
/// after the warm-up.
pub fn closed_loop(
    chunk: u16,
    window: u16,
    count: u64,
    max_time: Duration,
    via: impl FnOnce(SocketAddr) -> io::Result<SocketAddr>,
) -> io::Result<Relay> {
    with_echo("relay echo", via, |socket| {
        drive(socket, chunk, window.max(1), count, max_time)
    })
}

fn drive(
    socket: &UdpSocket,
    chunk: u16,
    window: u16,
    count: u64,
    max_time: Duration,
) -> io::Result<Relay> {
    let request = vec![0x5au8; usize::from(chunk) + OVERHEAD];
    let mut reply = [0u8; 64];
    let warmup = u64::from(window);
    let (mut answered, mut stalls) = (0u64, 0u64);
    let mut timed_from: Option<(Instant, u64)> = None;
    let mut last = None;
    let started = Instant::now();
    // A full send buffer is a request lost, which the stall below makes up for.
    let send_window = || {
        for _ in 0..window {
            let _ = socket.send(&request);
        }
    };
    send_window();
    // Bounded by count (replies) and by time (stalls included).
    while started.elapsed() < max_time && timed_from.is_none_or(|(_, from)| answered - from < count)
    {
        match socket.recv(&mut reply) {
            Ok(_) => {
                let now = Instant::now();
                answered += 1;
                if answered == warmup {
                    timed_from = Some((now, answered));
                }
                last = Some(now);
                let _ = socket.send(&request);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if blast::timed_out(&e) => {
                stalls += 1;
                send_window();
            }
            Err(e) => return Err(e),
        }
    }
    match (timed_from, last) {
        (Some((from, n)), Some(last)) if answered > n => Ok(Relay {
            replies: answered - n,
            elapsed: last - from,
            stalls,
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "closed-loop relay at window {window}: {answered} replies, none timed after the warm-up ({stalls} stalls)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_closed_loop_counts_replies_beyond_the_warm_up() {
        let relay = closed_loop(1430, 8, 200, Duration::from_secs(5), Ok).expect("loopback");
        assert_eq!(relay.replies, 200);
        assert!(relay.mb_s(1430) > 0.0);
    }
}
