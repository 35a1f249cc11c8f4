//! The sending half of a TFTP transfer: blocks of a [`Source`] sent in a fixed window
//! (RFC 7440; a window of one is RFC 1350's lockstep), used by the server for a read and
//! by the client for a write.
//!
//! Up to `windowsize` blocks are in flight. An ACK of block *n* acknowledges every block up
//! to *n* and starts the next window at *n* + 1 (RFC 7440 §4: a receiver that saw a gap
//! acknowledges the last block it has in order, and sending resumes after it). Only the
//! timer retransmits, from the first unacknowledged block; an ACK that acknowledges nothing
//! new (a duplicate, a late one) never causes a send, so the Sorcerer's Apprentice cannot
//! happen. From the second timeout in a row on, the retransmission also carries the block
//! after the highest ever sent, which unsticks a receiver that already holds everything sent
//! and answers repeats only once (atftp). The timer is RFC 6298's ([`Rtt`]: smoothed round
//! trip, Karn's rule, backoff), so on a LAN a lost block costs about a round trip.
//!
//! A block is built straight into the datagram that carries it, each time it is sent: in
//! octet mode read from its offset, in netascii mode encoded from the file offset and
//! encoder state remembered at the start of every block in flight (a [`Cursor`]). Nothing is
//! buffered and nothing copied after the read; a retransmission reads the block again
//! (from the page cache), which costs what a copy would, and only when something was lost.

use super::blocks::{resolve, wire};
use super::codes::{TftpCode, TftpError};
use super::netascii::Encoder;
use super::options::Granted;
use super::wire::{seal_data, DATA_HEADER_LEN};
use crate::proto::rtt::Rtt;
use crate::proto::session::{deadline, Config, Failure, Outcome, Source, Stats};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many blocks past the window a retransmission round may reach
/// ([`BlockSender::handle_timeout`]).
const MAX_PROBES: u64 = 4;

/// Where a block starts: a file offset, and (netascii) the encoder's state there.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    offset: u64,
    encoder: Encoder,
}

/// Sends one file as numbered blocks.
pub struct BlockSender {
    source: Box<dyn Source>,
    netascii: bool,
    blksize: usize,
    window: u64,
    /// The highest block acknowledged (0: none).
    acked: u64,
    /// The next block to send.
    next: u64,
    /// The highest block ever sent.
    high_sent: u64,
    /// The highest block ever retransmitted (Karn: no RTT sample from those).
    retx_high: u64,
    /// The last block the current retransmission round may send, when past the window
    /// (0: none; see [`BlockSender::handle_timeout`]).
    round_end: u64,
    /// The final block (shorter than `blksize`), once built.
    last: Option<u64>,
    /// Cursors of blocks `acked + 1 ..`, one past the highest built.
    cursors: VecDeque<Cursor>,
    /// First-send times of blocks `acked + 1 ..= high_sent`.
    sent_at: VecDeque<Instant>,
    /// Raw file bytes before netascii encoding.
    scratch: Vec<u8>,
    rtt: Rtt,
    retransmit_at: Option<Instant>,
    progress_at: Instant,
    give_up: Duration,
    timeouts: u32,
    outcome: Option<Outcome>,
    error_pending: Option<TftpError>,
    stats: Stats,
}

impl BlockSender {
    /// A sender of `source` with the negotiated `granted` parameters, starting at block 1
    /// (sent on the first [`BlockSender::poll_transmit`]).
    pub fn new(
        now: Instant,
        config: &Config,
        granted: &Granted,
        netascii: bool,
        source: Box<dyn Source>,
    ) -> Self {
        let blksize = usize::from(granted.blksize.max(1));
        let mut cursors = VecDeque::new();
        cursors.push_back(Cursor::default());
        Self {
            source,
            netascii,
            blksize,
            window: u64::from(granted.windowsize.max(1)),
            acked: 0,
            next: 1,
            high_sent: 0,
            retx_high: 0,
            round_end: 0,
            last: None,
            cursors,
            sent_at: VecDeque::new(),
            scratch: if netascii {
                vec![0; blksize]
            } else {
                Vec::new()
            },
            rtt: Rtt::new(config),
            retransmit_at: None,
            progress_at: now,
            give_up: granted.give_up(config.timeout),
            timeouts: 0,
            outcome: None,
            error_pending: None,
            stats: Stats::default(),
        }
    }

    /// Folds in a round trip measured before the first block (an OACK and its ACK 0).
    pub fn sample_rtt(&mut self, rtt: Duration) {
        self.rtt.sample(rtt);
    }

    /// Counts a datagram the session received and ignored.
    pub fn note_ignored(&mut self) {
        self.stats.received += 1;
        self.stats.duplicates += 1;
    }

    /// Handles ACK `number`; returns whether it acknowledged a block not acknowledged
    /// before (a duplicate or stray ACK changes nothing and sends nothing).
    pub fn handle_ack(&mut self, now: Instant, number: u16) -> bool {
        self.stats.received += 1;
        let new = if self.outcome.is_some() {
            None
        } else {
            resolve(number, self.acked + 1, self.high_sent)
        };
        let Some(acked) = new else {
            self.stats.duplicates += 1;
            return false;
        };
        let newly = (acked - self.acked) as usize;
        if acked > self.retx_high {
            if let Some(&sent) = self.sent_at.get(newly - 1) {
                self.rtt.sample(now.saturating_duration_since(sent));
            }
        }
        self.sent_at.drain(..newly.min(self.sent_at.len()));
        self.cursors.drain(..newly.min(self.cursors.len() - 1));
        self.acked = acked;
        self.progress_at = now;
        self.timeouts = 0;
        self.round_end = 0;
        self.retransmit_at = None;
        if Some(acked) == self.last {
            self.outcome = Some(Outcome::Complete);
            return true;
        }
        // The next window starts right after the acknowledged block.
        self.next = acked + 1;
        true
    }

    /// The peer ended the transfer with an ERROR.
    pub fn handle_error(&mut self, code: u16, text: &[u8]) {
        self.stats.received += 1;
        if self.outcome.is_none() {
            self.retransmit_at = None;
            self.outcome = Some(Outcome::Failed(peer_failure(code, text)));
        }
    }

    /// Fires the retransmission timer if due (spurious calls are harmless): resend from the
    /// first unacknowledged block with the timeout doubled, or give up once the peer has
    /// been silent for the give-up time.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() || self.retransmit_at.is_none_or(|at| now < at) {
            return;
        }
        let elapsed = now.saturating_duration_since(self.progress_at);
        if elapsed >= self.give_up {
            self.outcome = Some(Outcome::Failed(Failure::Timeout {
                tries: self.timeouts + 1,
                elapsed,
            }));
            self.retransmit_at = None;
            self.error_pending = Some(TftpError::new(TftpCode::Undefined, "timed out"));
            return;
        }
        self.rtt.back_off();
        self.timeouts += 1;
        self.retransmit_at = None;
        self.next = self.acked + 1;
        // From the second timeout in a row on, the round resends everything in flight and
        // one block more than was ever sent. A receiver that answers repeats only once and
        // then ignores them until its own timer fires (atftp: 5 s, which our retransmissions
        // keep resetting) is stuck once both its ACKs are lost; whatever it holds, the round
        // carries the block that is in order for it, and it moves again. Each such round
        // follows two more lost ACKs, so a few blocks past the window bound it.
        self.round_end = if self.timeouts >= 2 {
            let in_flight = self.high_sent.max(self.acked + self.window);
            (in_flight + 1).min(self.acked + self.window + MAX_PROBES)
        } else {
            0
        };
    }

    /// The first unacknowledged block is due again at once; sent, it counts as a
    /// retransmission, so by Karn's rule its ACK gives no round-trip sample (the server
    /// rebuilding a block 1 the front door sent more than once).
    pub fn resend_first(&mut self) {
        if self.outcome.is_none() {
            self.next = self.acked + 1;
        }
    }

    fn can_send(&self) -> bool {
        self.outcome.is_none()
            && self.next <= (self.acked + self.window).max(self.round_end)
            && self.last.is_none_or(|last| self.next <= last)
    }

    /// Writes the next datagram into `buf` (at least [`super::wire::MAX_PACKET`] long, or
    /// the block size plus 4) and returns its length; `None` when nothing is due. Call
    /// until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(error) = self.error_pending.take() {
            self.stats.sent += 1;
            return Some(error.encode(buf));
        }
        if !self.can_send() {
            return None;
        }
        let index = self.next;
        let len = match self.build(index, buf) {
            Ok(len) => len,
            Err(error) => {
                self.fail(error);
                return self.poll_transmit(now, buf);
            }
        };
        if index > self.high_sent {
            self.high_sent = index;
            self.sent_at.push_back(now);
            self.stats.bytes += (len - DATA_HEADER_LEN) as u64;
        } else {
            self.stats.retransmitted += 1;
            self.retx_high = self.retx_high.max(index);
        }
        self.stats.sent += 1;
        self.next += 1;
        if self.retransmit_at.is_none() {
            self.retransmit_at = Some(deadline(now, self.rtt.rto()));
        }
        Some(len)
    }

    /// Builds block `index` (between the first unacknowledged and one past the highest
    /// built) into the datagram `buf`; returns the datagram's length.
    fn build(&mut self, index: u64, buf: &mut [u8]) -> Result<usize, TftpError> {
        let slot = (index - self.acked - 1) as usize;
        let cursor = self.cursors[slot];
        let blksize = self.blksize;
        let out = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + blksize];
        let (len, end) = if self.netascii {
            let raw = read_full(self.source.as_mut(), cursor.offset, &mut self.scratch)?;
            let mut encoder = cursor.encoder;
            let (used, written) = encoder.encode(&self.scratch[..raw], out);
            let end = Cursor {
                offset: cursor.offset + used as u64,
                encoder,
            };
            (written, end)
        } else {
            let n = read_full(self.source.as_mut(), cursor.offset, out)?;
            let end = Cursor {
                offset: cursor.offset + n as u64,
                encoder: Encoder::new(),
            };
            (n, end)
        };
        if let Some(was) = self.cursors.get(slot + 1) {
            // Built before: a retransmission must read as the block did (a file cut or grown
            // since would send a short block early, or a final one of another length).
            if was.offset != end.offset {
                return Err(file_changed());
            }
        } else {
            if len < blksize {
                // The final block: the file must not have changed while it was sent.
                match self.source.unchanged() {
                    Ok(true) => {}
                    Ok(false) => return Err(file_changed()),
                    Err(e) => {
                        return Err(TftpError::new(
                            TftpCode::Undefined,
                            format!("read error: {e}"),
                        ))
                    }
                }
                self.last = Some(index);
            }
            self.cursors.push_back(end);
        }
        Ok(seal_data(buf, wire(index), len))
    }

    fn fail(&mut self, error: TftpError) {
        self.retransmit_at = None;
        self.outcome = Some(Outcome::Failed(error.failure()));
        self.error_pending = Some(error);
    }

    /// Ends the transfer from this side, telling the peer `text`.
    pub fn abort(&mut self, code: TftpCode, text: &str) {
        if self.outcome.is_none() {
            self.fail(TftpError::new(code, text));
        }
    }

    /// The next deadline, if a timer runs.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retransmit_at
    }

    /// Whether a datagram is waiting for [`BlockSender::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        self.error_pending.is_some() || self.can_send()
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Whether nothing remains to send: the transfer can be dropped.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some() && self.error_pending.is_none()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            srtt: self.rtt.srtt(),
            ..self.stats.clone()
        }
    }
}

/// The error of a transfer whose file changed while it was sent.
fn file_changed() -> TftpError {
    TftpError::new(TftpCode::Undefined, "file changed during transfer")
}

/// Reads from `offset` until `buf` is full or the source ends; returns the count.
fn read_full(source: &mut dyn Source, offset: u64, buf: &mut [u8]) -> Result<usize, TftpError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = source
            .read_at(offset + filled as u64, &mut buf[filled..])
            .map_err(|e| TftpError::new(TftpCode::Undefined, format!("read error: {e}")))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// The failure of a transfer the peer ended with ERROR `code` saying `text`.
pub(crate) fn peer_failure(code: u16, text: &[u8]) -> Failure {
    Failure::from_peer(super::codes::TftpCode::from_u16(code).to_udpft(), text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tftp::wire::{Packet, MAX_PACKET};
    use std::io;
    use std::sync::{Arc, Mutex};

    /// A file that another process may cut or grow while it is sent.
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Source for Shared {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let bytes = self.0.lock().unwrap();
            let start = (offset as usize).min(bytes.len());
            let n = buf.len().min(bytes.len() - start);
            buf[..n].copy_from_slice(&bytes[start..start + n]);
            Ok(n)
        }
    }

    /// A lockstep sender of `file` (512-byte blocks) and the file's handle.
    fn sender(file: Vec<u8>) -> (BlockSender, Arc<Mutex<Vec<u8>>>, Instant) {
        let now = Instant::now();
        let shared = Arc::new(Mutex::new(file));
        let source = Box::new(Shared(Arc::clone(&shared)));
        let s = BlockSender::new(now, &Config::default(), &Granted::default(), false, source);
        (s, shared, now)
    }

    /// What the sender sends at `now`, as block numbers and lengths, or ERROR texts.
    fn sends(s: &mut BlockSender, now: Instant) -> Vec<String> {
        let mut buf = vec![0; MAX_PACKET];
        let mut out = Vec::new();
        while let Some(n) = s.poll_transmit(now, &mut buf) {
            out.push(match Packet::decode(&buf[..n]) {
                Ok(Packet::Data { block, data }) => format!("DATA {block} {}", data.len()),
                Ok(Packet::Error { text, .. }) => {
                    format!("ERROR {}", String::from_utf8_lossy(text))
                }
                other => panic!("unexpected {other:?}"),
            });
        }
        out
    }

    #[test]
    fn a_retransmission_is_read_again_and_must_read_as_it_was_sent() {
        for (cut_to, what) in [(700, "cut into block 2"), (1100, "grown past block 3")] {
            let (mut s, file, t0) = sender(vec![7; 1000]);
            assert_eq!(sends(&mut s, t0), ["DATA 1 512"]);
            s.handle_ack(t0 + Duration::from_millis(1), 1);
            let t1 = t0 + Duration::from_millis(1);
            assert_eq!(sends(&mut s, t1), ["DATA 2 488"], "{what}");
            // The file changes; block 2's ACK is lost, and the timer reads it again.
            file.lock().unwrap().resize(cut_to, 7);
            let late = t1 + Duration::from_secs(1);
            s.handle_timeout(late);
            assert_eq!(
                sends(&mut s, late),
                ["ERROR file changed during transfer"],
                "{what}"
            );
            assert!(matches!(s.outcome(), Some(Outcome::Failed(_))), "{what}");
        }
    }

    #[test]
    fn an_unchanged_block_is_sent_again_as_it_was() {
        let (mut s, _file, t0) = sender(vec![7; 1000]);
        assert_eq!(sends(&mut s, t0), ["DATA 1 512"]);
        let late = t0 + Duration::from_secs(1);
        s.handle_timeout(late);
        assert_eq!(sends(&mut s, late), ["DATA 1 512"]);
    }
}
