//! The receiving half of a TFTP transfer: numbered blocks written in order to a [`Sink`],
//! used by the server for a write (an upload) and by the client for a read.
//!
//! Blocks are taken only in order. The receiver acknowledges every `windowsize` blocks
//! (RFC 7440; every block when the window is one), the final block at once, and, when it
//! sees a gap in a window, the last block it has in order, once, so the sender resumes
//! there. A repeat of the block it acknowledged last is acknowledged again (its ACK was
//! lost); other repeats are counted and ignored. If no block arrives within the RFC 6298
//! timeout, the last ACK is repeated with the timeout doubled.
//!
//! A block shorter than the block size ends the file: the sink is committed (for the
//! library, the upload appears under its name only then) and only after that is the final
//! ACK sent. The receiver then lingers, to answer a repeated final block whose ACK was lost.

use super::blocks::wire;
use super::codes::{TftpCode, TftpError};
use super::netascii::Decoder;
use super::options::Granted;
use super::send::peer_failure;
use super::wire::Packet;
use crate::proto::rtt::Rtt;
use crate::proto::session::{deadline, Config, Failure, Outcome, Sink, Stats};
use std::io;
use std::time::{Duration, Instant};

/// Receives one file as numbered blocks.
pub struct BlockReceiver {
    sink: Box<dyn Sink>,
    decoder: Option<Decoder>,
    blksize: usize,
    window: u64,
    /// The next block expected.
    next: u64,
    /// In-order blocks since the last ACK sent.
    since_ack: u64,
    /// A gap in this window was already reported.
    gap_acked: bool,
    ack_due: bool,
    /// The block the last ACK named, when it was sent and how many times.
    ack_index: Option<u64>,
    ack_sent_at: Option<Instant>,
    ack_tries: u32,
    /// File bytes written, and the most allowed.
    written: u64,
    max: Option<u64>,
    rtt: Rtt,
    retransmit_at: Option<Instant>,
    progress_at: Instant,
    give_up: Duration,
    linger: Duration,
    linger_until: Option<Instant>,
    outcome: Option<Outcome>,
    error_pending: Option<TftpError>,
    /// Decoded netascii of one block.
    scratch: Vec<u8>,
    stats: Stats,
}

impl BlockReceiver {
    /// A receiver into `sink` with the negotiated `granted` parameters, expecting block 1.
    /// With `ack_first`, ACK 0 is due at once (the client's answer to an OACK); `max` bounds
    /// the file's size (an upload limit).
    pub fn new(
        now: Instant,
        config: &Config,
        granted: &Granted,
        netascii: bool,
        sink: Box<dyn Sink>,
        max: Option<u64>,
        ack_first: bool,
    ) -> Self {
        Self {
            sink,
            decoder: netascii.then(Decoder::new),
            blksize: usize::from(granted.blksize),
            window: u64::from(granted.windowsize.max(1)),
            next: 1,
            since_ack: 0,
            gap_acked: false,
            ack_due: ack_first,
            ack_index: None,
            ack_sent_at: None,
            ack_tries: 0,
            written: 0,
            max,
            rtt: Rtt::new(config),
            retransmit_at: None,
            progress_at: now,
            give_up: granted.give_up(config.timeout),
            linger: config.linger_min,
            linger_until: None,
            outcome: None,
            error_pending: None,
            scratch: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Folds in a round trip measured before the first block (the request and its OACK).
    pub fn sample_rtt(&mut self, rtt: Duration) {
        self.rtt.sample(rtt);
    }

    /// The peer repeated what ACK 0 answers (its OACK): ACK 0 is due again, if no block
    /// has arrived yet.
    pub fn repeat_first_ack(&mut self) {
        self.stats.received += 1;
        self.stats.duplicates += 1;
        if self.next == 1 && self.outcome.is_none() {
            self.ack_due = true;
        }
    }

    /// The index of the last block received in order (0: none).
    pub fn last_block(&self) -> u64 {
        self.next - 1
    }

    /// Counts a datagram the session received and ignored.
    pub fn note_ignored(&mut self) {
        self.stats.received += 1;
        self.stats.duplicates += 1;
    }

    fn complete(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Complete))
    }

    /// Handles DATA `number` carrying `data`; returns whether it was the block expected
    /// (the proof, for a server, that the peer is there).
    pub fn handle_data(&mut self, now: Instant, number: u16, data: &[u8]) -> bool {
        self.stats.received += 1;
        if self.outcome.is_some() || number != wire(self.next) {
            self.stats.duplicates += 1;
            if number == wire(self.next - 1) && self.next > 1 {
                // The block acknowledged last, again: its ACK was lost.
                self.ack_due = self.outcome.is_none() || self.complete();
            } else if self.outcome.is_none()
                && u64::from(number.wrapping_sub(wire(self.next))) < self.window
                && !std::mem::replace(&mut self.gap_acked, true)
            {
                // A later block of this window: one went missing. Say where we are, once.
                self.ack_due = true;
            }
            return false;
        }
        if data.len() > self.blksize {
            self.fail(TftpError::new(
                TftpCode::IllegalOperation,
                format!(
                    "block of {} bytes is larger than the block size {}",
                    data.len(),
                    self.blksize
                ),
            ));
            return false;
        }
        if let Err(error) = self.write(data, data.len() < self.blksize) {
            self.fail(error);
            return false;
        }
        if self.since_ack == 0 && self.ack_tries == 1 {
            if let Some(sent) = self.ack_sent_at {
                // Karn: only an ACK sent once gives a sample.
                self.rtt.sample(now.saturating_duration_since(sent));
            }
        }
        self.stats.bytes += data.len() as u64;
        self.next += 1;
        self.since_ack += 1;
        self.gap_acked = false;
        self.progress_at = now;
        if data.len() < self.blksize {
            if let Err(e) = self.sink.commit() {
                self.fail(storage_error("cannot save the file", &e));
                return false;
            }
            self.outcome = Some(Outcome::Complete);
            self.retransmit_at = None;
            self.linger_until = Some(deadline(now, self.linger));
            self.ack_due = true;
        } else {
            if self.since_ack >= self.window {
                self.ack_due = true;
            }
            self.retransmit_at = Some(deadline(now, self.rtt.rto()));
        }
        true
    }

    /// Writes one block's bytes (decoded, in netascii mode); `last` ends the stream.
    fn write(&mut self, data: &[u8], last: bool) -> Result<(), TftpError> {
        let bytes = match &mut self.decoder {
            Some(decoder) => {
                self.scratch.clear();
                decoder.decode(data, &mut self.scratch);
                if last {
                    decoder.finish(&mut self.scratch);
                }
                &self.scratch[..]
            }
            None => data,
        };
        self.written += bytes.len() as u64;
        if let Some(max) = self.max.filter(|&max| self.written > max) {
            return Err(TftpError::new(
                TftpCode::DiskFull,
                format!("upload refused: this server takes at most {max} bytes"),
            ));
        }
        self.sink
            .write(bytes)
            .map_err(|e| storage_error("write error", &e))
    }

    /// The peer ended the transfer with an ERROR.
    pub fn handle_error(&mut self, code: u16, text: &[u8]) {
        self.stats.received += 1;
        if self.outcome.is_none() {
            self.retransmit_at = None;
            self.ack_due = false;
            self.outcome = Some(Outcome::Failed(peer_failure(code, text)));
        }
    }

    /// Fires the timer if due (spurious calls are harmless): repeat the last ACK with the
    /// timeout doubled, give up after the give-up time, or end the linger.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.complete() {
            if self.linger_until.is_some_and(|at| now >= at) {
                self.linger_until = None;
            }
            return;
        }
        if self.outcome.is_some() || self.retransmit_at.is_none_or(|at| now < at) {
            return;
        }
        let elapsed = now.saturating_duration_since(self.progress_at);
        if elapsed >= self.give_up {
            self.outcome = Some(Outcome::Failed(Failure::Timeout {
                tries: self.ack_tries,
                elapsed,
            }));
            self.retransmit_at = None;
            self.ack_due = false;
            self.error_pending = Some(TftpError::new(TftpCode::Undefined, "timed out"));
            return;
        }
        self.rtt.back_off();
        self.retransmit_at = None;
        self.ack_due = true;
    }

    /// Writes the next datagram into `buf` and returns its length; `None` when nothing is
    /// due. Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(error) = self.error_pending.take() {
            self.stats.sent += 1;
            return Some(error.encode(buf));
        }
        if !std::mem::take(&mut self.ack_due) {
            return None;
        }
        let index = self.next - 1;
        if self.ack_index == Some(index) {
            self.ack_tries += 1;
            self.stats.retransmitted += 1;
        } else {
            self.ack_index = Some(index);
            self.ack_tries = 1;
        }
        self.ack_sent_at = Some(now);
        self.since_ack = 0;
        self.stats.sent += 1;
        if self.outcome.is_none() {
            self.retransmit_at = Some(deadline(now, self.rtt.rto()));
        }
        Some(Packet::Ack { block: wire(index) }.encode(buf))
    }

    fn fail(&mut self, error: TftpError) {
        self.retransmit_at = None;
        self.ack_due = false;
        self.outcome = Some(Outcome::Failed(error.failure()));
        self.error_pending = Some(error);
    }

    /// Ends the transfer from this side, telling the peer `text`; nothing is committed.
    pub fn abort(&mut self, code: TftpCode, text: &str) {
        if self.outcome.is_none() {
            self.fail(TftpError::new(code, text));
        }
    }

    /// The next deadline, if a timer runs (the linger, once complete).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.complete() {
            self.linger_until
        } else {
            self.retransmit_at
        }
    }

    /// Whether a datagram is waiting for [`BlockReceiver::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        self.error_pending.is_some() || self.ack_due
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Whether nothing remains to send or wait for (a complete transfer lingers first).
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some() && !self.wants_transmit() && self.linger_until.is_none()
    }

    /// File bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            srtt: self.rtt.srtt(),
            ..self.stats.clone()
        }
    }
}

/// A storage failure as TFTP says it: disk full (3) when the disk is full, otherwise
/// "not defined" with the system's words.
fn storage_error(what: &str, e: &io::Error) -> TftpError {
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC) {
        TftpError::new(TftpCode::DiskFull, "disk full")
    } else {
        TftpError::new(TftpCode::Undefined, format!("{what}: {e}"))
    }
}
