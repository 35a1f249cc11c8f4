//! A one-way UDP blast: the most a sender can push through loopback to a receiver that
//! only counts, with datagrams of a transfer's size. It is the reference for anything that
//! keeps several datagrams in flight (a window): no protocol, no file, no waiting for each
//! datagram's reply.
//!
//! "As fast as the receiver drains them": UDP has no flow control, and a sender faster than
//! its receiver only fills the receive buffer and loses the rest, which measures the loss,
//! not the path. So the receiver returns a small credit (its count so far) every quarter
//! window, and the sender keeps at most a window of datagrams beyond the last credit, sized
//! to half the receive buffer so nothing is ever dropped. The rate is taken at the
//! receiver, from its first datagram to its last.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpft::net;
use udpft::proto::wire::MAX_DATAGRAM;

/// The most datagrams in flight beyond the last credit.
const MAX_WINDOW: u64 = 256;

/// What the kernel charges per datagram beyond its bytes (the socket buffer's bookkeeping),
/// for sizing the window to the receive buffer: an overestimate.
const PER_DATAGRAM_COST: usize = 1024;

/// How long the sender waits for a credit before it counts what is in flight as lost.
const CREDIT_WAIT: Duration = Duration::from_millis(100);

/// How long the receiver waits for the next datagram before it counts the blast over.
const IDLE_END: Duration = Duration::from_millis(200);

/// The sequence number that marks the end of a blast.
const END: u64 = u64::MAX;

/// Sent several times, so one loss does not leave the receiver waiting for `IDLE_END`.
const END_COPIES: usize = 3;

/// The bytes of the sequence number at the start of every datagram.
const SEQ_LEN: usize = 8;

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct BlastSpec {
    /// Bytes of each datagram.
    pub datagram: usize,
    /// Send at most this many...
    pub count: u64,
    /// ...for at most this long.
    pub max_time: Duration,
}

/// What was measured.
#[derive(Clone, Copy, Debug)]
pub struct Blast {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams the receiver counted.
    pub received: u64,
    /// Credits that did not come within [`CREDIT_WAIT`] (what was in flight counted lost).
    pub stalls: u64,
    /// From the receiver's first datagram to its last.
    pub elapsed: Duration,
}

impl Blast {
    /// `payload` useful bytes per datagram received, per second of the receiver's time, in
    /// MB/s.
    pub fn mb_s(&self, payload: usize) -> f64 {
        // n datagrams span n - 1 gaps.
        let spans = self.received.saturating_sub(1) as f64;
        spans * payload as f64 / self.elapsed.as_secs_f64().max(1e-12) / 1e6
    }

    /// Datagrams sent and never counted.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// What the receiving thread saw.
struct Counted {
    received: u64,
    elapsed: Duration,
}

/// Runs one blast on loopback.
///
/// # Errors
/// If a socket or the receiving thread cannot be set up, the size is out of range, or the
/// receiver saw fewer than two datagrams.
pub fn measure(spec: BlastSpec) -> io::Result<Blast> {
    measure_via(spec, Ok)
}

/// Runs one blast on loopback through a relay: `via` is given the receiver's address and
/// returns where the sender sends (a `lossy-proxy` started in front of the receiver, say).
/// The receiver returns its credits to whichever address the datagrams came from, so they
/// travel back through the relay too.
///
/// # Errors
/// As [`measure`], and whatever `via` returns.
pub fn measure_via(
    spec: BlastSpec,
    via: impl FnOnce(SocketAddr) -> io::Result<SocketAddr>,
) -> io::Result<Blast> {
    if !(SEQ_LEN..=MAX_DATAGRAM).contains(&spec.datagram) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "datagram size {} is outside {SEQ_LEN}..={MAX_DATAGRAM}",
                spec.datagram
            ),
        ));
    }
    let receiver = net::bind("127.0.0.1:0".parse().expect("valid address"), false)?;
    receiver.set_read_timeout(Some(IDLE_END))?;
    let buffer = socket2::SockRef::from(&receiver).recv_buffer_size()?;
    let window = ((buffer / 2 / (spec.datagram + PER_DATAGRAM_COST)) as u64).clamp(4, MAX_WINDOW);
    let sender = net::bind("127.0.0.1:0".parse().expect("valid address"), false)?;
    sender.connect(via(receiver.local_addr()?)?)?;
    sender.set_read_timeout(Some(CREDIT_WAIT))?;

    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let counter = std::thread::Builder::new()
        .name("blast-receiver".into())
        .spawn(move || count(&receiver, (window / 4).max(1), spec.max_time * 2, &stopped))?;

    let mut datagram = vec![0xa5u8; spec.datagram];
    let mut credit = [0u8; 64];
    let (mut sent, mut credited, mut stalls) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let result = (|| -> io::Result<()> {
        while sent < spec.count && started.elapsed() < spec.max_time {
            if sent - credited < window {
                datagram[..SEQ_LEN].copy_from_slice(&sent.to_le_bytes());
                // A full send buffer (ENOBUFS) is a datagram not sent: try it again.
                if sender.send(&datagram).is_ok() {
                    sent += 1;
                }
                continue;
            }
            match sender.recv(&mut credit) {
                Ok(len) if len >= SEQ_LEN => {
                    let count = u64::from_le_bytes(credit[..SEQ_LEN].try_into().expect("8 bytes"));
                    credited = credited.max(count.min(sent));
                }
                Ok(_) => {}
                Err(e) if timed_out(&e) => {
                    stalls += 1;
                    credited = sent;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })();
    datagram[..SEQ_LEN].copy_from_slice(&END.to_le_bytes());
    for _ in 0..END_COPIES {
        let _ = sender.send(&datagram[..SEQ_LEN]);
    }
    stop.store(true, Ordering::Relaxed);
    let counted = counter
        .join()
        .map_err(|_| io::Error::other("the blast receiver panicked"))?;
    result?;
    if counted.received < 2 {
        return Err(io::Error::other(format!(
            "the blast receiver counted {} of {sent} datagrams",
            counted.received
        )));
    }
    Ok(Blast {
        sent,
        received: counted.received,
        stalls,
        elapsed: counted.elapsed,
    })
}

/// The receiving side: counts datagrams and returns a credit every `credit_every` (to the
/// address the datagram came from: the sender, or the relay in between), until the end
/// mark, [`IDLE_END`] of silence after the first datagram, `limit`, or `stop` once idle.
fn count(socket: &UdpSocket, credit_every: u64, limit: Duration, stop: &AtomicBool) -> Counted {
    let mut buf = vec![0u8; 65_536];
    let (mut received, mut first, mut last) = (0u64, None, None);
    let started = Instant::now();
    while started.elapsed() < limit {
        match socket.recv_from(&mut buf) {
            Ok((len, _)) if len >= SEQ_LEN && buf[..SEQ_LEN] == END.to_le_bytes() => break,
            Ok((_, peer)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                received += 1;
                if received % credit_every == 0 {
                    let _ = socket.send_to(&received.to_le_bytes(), peer);
                }
            }
            // Silence: over once anything came, or once the sender is done.
            Err(_) if first.is_some() || stop.load(Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    let elapsed = match (first, last) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    };
    Counted { received, elapsed }
}

/// Whether a receive with a timeout ended because the timeout passed (the error kind differs
/// by platform).
pub(crate) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use udpft::proto::wire::OVERHEAD;

    #[test]
    fn a_blast_counts_every_datagram_of_a_bounded_run() {
        for datagram in [1430 + OVERHEAD, MAX_DATAGRAM] {
            let blast = measure(BlastSpec {
                datagram,
                count: 2000,
                max_time: Duration::from_secs(5),
            })
            .expect("loopback blast");
            assert_eq!(blast.sent, 2000);
            assert_eq!(blast.received + blast.lost(), blast.sent);
            assert!(blast.mb_s(datagram - OVERHEAD) > 0.0);
        }
    }
}
