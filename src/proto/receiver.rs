//! The receiving half of a transfer: writes each chunk once, in order, and acknowledges
//! what it holds.
//!
//! A [`Receiver`] expects Data 1..=n then Done n+1. A chunk it already has is acknowledged
//! again and never written twice; a chunk from beyond its window is dropped (the sender
//! cannot have sent it yet, so it can only be a stray). With a window above 1, chunks that
//! arrive ahead of a missing one wait in a [`Reorder`] buffer until it arrives, and every
//! acknowledgment says which of them are held (selective acknowledgment). On Done it checks
//! the whole-file size and CRC32, commits the sink, acknowledges, and then *lingers* a while
//! to acknowledge a repeated Done in case its Ack was lost. The receiver sends only in
//! answer to what it receives, except for its greeting, which it repeats on a timer until
//! Data 1 arrives: the server's Accept of an upload, or the client's Ack 0 of a download
//! (which proves the client's address, so the server's anti-amplification budget cannot
//! stall the start). See `protocol.md`, "Stop-and-wait". With a window it also has a second
//! timer: it acknowledges every second in-order chunk, and the Ack of the first waits for
//! the second's at most a quarter of a round trip (and `rto_min`; protocol.md §20.3, "Every
//! second chunk").
//!
//! A chunk that arrives in order is written (and hashed) from the datagram it arrived in,
//! with no copy on the way to the sink, before its Ack goes out; chunks held above a hole are
//! written from their buffers when it fills. Nothing is committed until the whole-file
//! checksum matches, and a failed write fails the transfer.

use super::reorder::{Place, Reorder};
use super::rtt::Rtt;
use super::session::{chunk_count, deadline, Config, Failure, Outcome, Sink, Stats};
use super::transfer::{Opening, Plan};
use super::wire::{clip_text, ErrorCode, Message, MAX_BITMAP};
use std::time::{Duration, Instant};

/// A windowed receiver holds the Ack of an in-order chunk back at most this fraction of
/// the path's smallest round trip, and never longer than the shortest retransmission
/// timeout a sender may have (`rto_min`): the round trips it knows are one-off samples that
/// may include the peer's first file read, and a hold longer than the sender's timer would
/// make it resend the chunk (protocol.md §20.3).
const ACK_DELAY_SHARE: u32 = 4;

/// How a receiver opens its side of the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Greeting {
    /// Server side of an upload: send Accept (message 0), repeat it on a timer until the
    /// first Data arrives.
    Accept {
        /// The client's request token to echo.
        token: u32,
    },
    /// Client side of a download or listing: Ack 0 at once, again each time the server's
    /// Accept arrives, and on a timer until the first Data arrives.
    AckAccept,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Receiving,
    /// Complete; still answering a repeated Done until `until`.
    Linger {
        until: Instant,
    },
    /// Nothing more to do.
    Done,
    Failed,
}

/// Receives one file (or listing) from one peer into a [`Sink`].
pub struct Receiver {
    session: u32,
    greeting: Greeting,
    sink: Box<dyn Sink>,
    size: u64,
    offset: u64,
    chunk: u16,
    chunks: u64,
    /// The granted window: 1 is stop-and-wait (version 1, each Ack names one message);
    /// above, every acknowledgment is selective ([`Message::Sack`]).
    window: u64,
    /// The next message number wanted in order.
    expected: u64,
    /// Chunks held above a hole (window > 1).
    reorder: Reorder,
    /// The Done's size and CRC, when it arrived ahead of a hole.
    early_done: Option<(u64, u32)>,
    hasher: crc32fast::Hasher,
    state: State,
    /// The acknowledgment to send: the number of the message it answers.
    ack_pending: Option<u64>,
    /// Windowed: when the acknowledgment of the last chunk, held back for the next one to
    /// share it, goes out on its own (protocol.md §20.3, every second chunk).
    ack_deferred: Option<Instant>,
    greet_pending: bool,
    greet_at: Option<Instant>,
    error_pending: Option<(ErrorCode, String)>,
    outcome: Option<Outcome>,
    config: Config,
    /// Estimates the round trip from "Ack k sent" to "Data k+1 arrived", to size the
    /// linger and the greeting's retransmission.
    rtt: Rtt,
    /// When the Ack of `expected - 1` was sent, if sent exactly once (Karn).
    ack_sent_at: Option<Instant>,
    /// The round trip the handshake measured, if any (a server's upload receiver measures
    /// none itself: its front door sent the Accept).
    handshake_rtt: Option<Duration>,
    ack_tries: u32,
    /// When the peer last sent something new (protocol.md §9.3): a chunk not held before,
    /// or the Done. Duplicates, stale or stray datagrams do not keep a stalled transfer alive.
    progress_at: Instant,
    stats: Stats,
}

impl Receiver {
    /// A receiver of the bytes `plan.offset..plan.size` of a file; the sink already holds
    /// the bytes before the offset, whose CRC32 is `plan.prefix_crc`. With
    /// [`Opening::Accept`] it greets with the server's Accept (an upload); otherwise with
    /// the client's Ack 0 (a download or listing).
    pub fn new(now: Instant, config: &Config, plan: Plan, sink: Box<dyn Sink>) -> Self {
        let Plan {
            session,
            size,
            chunk,
            window,
            prefix_crc: resume_crc,
            ..
        } = plan;
        let offset = plan.offset.min(size);
        let greeting = match plan.opening {
            Opening::Accept { token } => Greeting::Accept { token },
            Opening::AckAccept | Opening::Data => Greeting::AckAccept,
        };
        let window = u64::from(window.max(1));
        Self {
            session,
            greeting,
            sink,
            size,
            offset,
            chunk,
            chunks: chunk_count(size - offset, chunk),
            window,
            expected: 1,
            reorder: Reorder::new(window, usize::from(chunk)),
            early_done: None,
            hasher: crc32fast::Hasher::new_with_initial_len(resume_crc, offset),
            state: State::Receiving,
            ack_pending: None,
            ack_deferred: None,
            greet_pending: true,
            greet_at: None,
            error_pending: None,
            outcome: None,
            config: config.clone(),
            rtt: Rtt::new(config),
            ack_sent_at: None,
            handshake_rtt: None,
            ack_tries: 0,
            progress_at: now,
            stats: Stats::default(),
        }
    }

    /// Something new arrived at `now`: the give-up clock starts again, and the wait since the
    /// last such moment counts toward the longest silence.
    fn progressed(&mut self, now: Instant) {
        let silence = now.saturating_duration_since(self.progress_at);
        self.stats.longest_silence = self.stats.longest_silence.max(silence);
        self.progress_at = now;
    }

    /// Takes a round trip measured in the handshake (see [`super::Transfer::seed_rtt`]).
    pub fn seed_rtt(&mut self, rtt: Duration) {
        self.rtt.seed(rtt);
        self.handshake_rtt = Some(rtt);
    }

    /// The session this receiver belongs to.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Bytes of the file held in order so far, counting a resumed prefix (for progress bars).
    pub fn received_bytes(&self) -> u64 {
        let chunks_done = (self.expected - 1).min(self.chunks);
        (self.offset + chunks_done * u64::from(self.chunk)).min(self.size)
    }

    /// Handles one decoded datagram addressed to this session.
    pub fn handle_message(&mut self, now: Instant, message: &Message<'_>) {
        self.stats.received += 1;
        if self.state == State::Failed || self.state == State::Done {
            return;
        }
        match *message {
            Message::Data { seq, payload, .. } => self.handle_data(now, seq, payload),
            Message::Done { seq, size, crc, .. } => self.handle_done(now, seq, size, crc),
            Message::Accept { .. }
                if self.greeting == Greeting::AckAccept && self.expected == 1 =>
            {
                // Our Ack 0 was lost, or is late: answer again.
                self.stats.duplicates += 1;
                self.send_ack(0, true);
            }
            // After completion an error changes nothing (the peer may have retired the
            // session and be answering a repeated Ack): just stop lingering.
            Message::Error { .. } if self.outcome.is_some() => self.state = State::Done,
            Message::Error { code, text, .. } => {
                self.state = State::Failed;
                self.ack_pending = None;
                self.ack_deferred = None;
                self.greet_at = None;
                self.outcome = Some(Outcome::Failed(Failure::from_peer(code, text)));
            }
            _ => self.stats.duplicates += 1,
        }
    }

    fn send_ack(&mut self, seq: u64, repeat: bool) {
        self.ack_pending = Some(seq);
        if repeat {
            // The round trip of a repeated Ack is ambiguous (Karn).
            self.ack_sent_at = None;
        }
    }

    /// The length chunk `seq` must have: the whole chunk, or what is left for the last.
    fn chunk_len(&self, seq: u64) -> u64 {
        let at = self.offset + (seq - 1) * u64::from(self.chunk);
        (self.size - at).min(u64::from(self.chunk))
    }

    fn handle_data(&mut self, now: Instant, seq: u64, payload: &[u8]) {
        if seq > self.chunks {
            // Beyond the file: no sender sent it, lingering or not (protocol.md §8.3).
            self.stats.duplicates += 1;
            return;
        }
        if self.state != State::Receiving || seq < self.expected {
            // Already written: acknowledge again, write nothing.
            self.stats.duplicates += 1;
            self.send_ack(seq, true);
            return;
        }
        let place = if seq == self.expected {
            None
        } else {
            Some(self.reorder.place(self.expected, seq))
        };
        match place {
            Some(Place::Future) => {
                self.stats.duplicates += 1;
                return;
            }
            Some(Place::Held) => {
                self.stats.duplicates += 1;
                self.send_ack(seq, true);
                return;
            }
            Some(Place::Ahead) | None => {}
        }
        let want = self.chunk_len(seq);
        if payload.len() as u64 != want {
            self.fail(
                ErrorCode::BadRequest,
                format!("chunk {seq} has {} bytes, expected {want}", payload.len()),
            );
            return;
        }
        self.stats.bytes += payload.len() as u64;
        self.progressed(now);
        if place == Some(Place::Ahead) {
            self.reorder.hold(self.expected, seq, payload);
            self.send_ack(seq, true);
            return;
        }
        if let Some(sent) = self.ack_sent_at.take() {
            self.rtt.sample(now.saturating_duration_since(sent));
        }
        if seq == 1 {
            self.greet_pending = false;
            self.greet_at = None;
        }
        // Written from the datagram it arrived in: no copy before the sink.
        if !self.write(payload) {
            return;
        }
        let hole = !self.reorder.is_empty();
        if !self.advance() {
            return;
        }
        self.ack_tries = 0;
        let acked = self.expected - 1;
        match self.ack_delay() {
            // The chunk filled no hole (whose news the sender needs at once), more are to
            // come, and no Ack is held back yet: this one can wait for the next chunk's,
            // which covers both (cumulative). The second of two goes out at once.
            Some(delay) if !hole && self.ack_deferred.is_none() && self.expected <= self.chunks => {
                self.ack_deferred = Some(deadline(now, delay));
            }
            _ => self.send_ack(acked, false),
        }
        if self.expected == self.chunks + 1 {
            if let Some((size, crc)) = self.early_done.take() {
                self.finish(now, size, crc);
            }
        }
    }

    /// Message `expected` arrived in order and was written: moves past it, and past every
    /// held message that follows it without a gap, writing those in order; `false` if a write
    /// failed (the transfer has then failed).
    fn advance(&mut self) -> bool {
        self.expected += 1;
        while let (Some((buf, len)), _) = self.reorder.shift() {
            let written = self.write(&buf[..len]);
            self.reorder.recycle(buf);
            if !written {
                return false;
            }
            self.expected += 1;
        }
        true
    }

    /// The driver is about to wait: the sink may write what it deferred. A failure fails the
    /// transfer (an Error is then due).
    pub fn idle(&mut self) {
        if self.state != State::Receiving {
            return;
        }
        if let Err(e) = self.sink.idle() {
            self.fail(ErrorCode::Io, format!("write error: {e}"));
        }
    }

    /// Writes and hashes the next bytes of the file; `false` if that failed (the transfer has
    /// then failed).
    fn write(&mut self, bytes: &[u8]) -> bool {
        if let Err(e) = self.sink.write(bytes) {
            self.fail(ErrorCode::Io, format!("write error: {e}"));
            return false;
        }
        self.hasher.update(bytes);
        true
    }

    fn handle_done(&mut self, now: Instant, seq: u64, size: u64, crc: u32) {
        let done_seq = self.chunks + 1;
        if seq != done_seq {
            self.stats.duplicates += 1;
            return;
        }
        if self.state != State::Receiving {
            // Our Ack of Done was lost: say it again.
            self.stats.duplicates += 1;
            self.send_ack(seq, true);
            return;
        }
        if self.expected != done_seq {
            if self.reorder.place(self.expected, seq) == Place::Ahead {
                // Data is missing, but the Done is within the window: keep it.
                self.progressed(now);
                self.early_done = Some((size, crc));
                self.reorder.hold_done(self.expected, seq);
                self.send_ack(seq, true);
            } else {
                self.stats.duplicates += 1;
            }
            return;
        }
        // The Done answers the Ack of the last chunk (or Ack 0): a round trip, if that Ack
        // went out once.
        if let Some(sent) = self.ack_sent_at.take() {
            self.rtt.sample(now.saturating_duration_since(sent));
        }
        self.progressed(now);
        self.finish(now, size, crc);
    }

    /// Every chunk is here and so is the Done: verify, commit, acknowledge, linger.
    fn finish(&mut self, now: Instant, size: u64, crc: u32) {
        let done_seq = self.chunks + 1;
        self.greet_pending = false;
        self.greet_at = None;
        if size != self.size || crc != self.hasher.clone().finalize() {
            self.fail(
                ErrorCode::ChecksumMismatch,
                "whole-file checksum mismatch: transfer discarded".into(),
            );
            return;
        }
        if let Err(e) = self.sink.commit() {
            let code = match e.kind() {
                std::io::ErrorKind::AlreadyExists => ErrorCode::Exists,
                _ => ErrorCode::Io,
            };
            self.fail(code, format!("cannot save file: {e}"));
            return;
        }
        self.expected = done_seq + 1;
        self.send_ack(done_seq, false);
        self.outcome = Some(Outcome::Complete);
        self.state = State::Linger {
            until: deadline(now, self.linger()),
        };
    }

    /// How long to keep answering a repeated Done: several retransmission timeouts of the
    /// round trip seen so far (without the backoff of the greeting; `rto_initial` if no
    /// round trip was measured), at least `linger_min`, at most the give-up time.
    fn linger(&self) -> Duration {
        (self.rtt.settled_rto() * 8)
            .max(self.config.linger_min)
            .min(self.config.timeout)
    }

    fn fail(&mut self, code: ErrorCode, text: String) {
        self.error_pending = Some((code, text.clone()));
        self.state = State::Failed;
        self.ack_pending = None;
        self.ack_deferred = None;
        self.greet_pending = false;
        self.greet_at = None;
        self.outcome = Some(Outcome::Failed(Failure::Local { code, text }));
    }

    /// Ends the transfer from this side, telling the peer why (cancel, shutdown).
    pub fn abort(&mut self, code: ErrorCode, text: &str) {
        if self.outcome.is_none() {
            self.fail(code, text.to_owned());
        } else if matches!(self.state, State::Linger { .. }) {
            self.state = State::Done;
        }
    }

    /// Fires whatever timer is due (greeting retransmission, end of linger, give-up); does
    /// nothing otherwise, so spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Linger { until } if now >= until => self.state = State::Done,
            State::Receiving => {
                let silent = now.saturating_duration_since(self.progress_at);
                if silent >= self.config.timeout {
                    let tries = self.ack_tries.max(1);
                    self.fail(ErrorCode::Timeout, "timed out".into());
                    self.outcome = Some(Outcome::Failed(Failure::Timeout {
                        tries,
                        elapsed: silent,
                    }));
                } else if self.greet_at.is_some_and(|at| now >= at) {
                    self.rtt.back_off();
                    self.greet_at = None;
                    self.greet_pending = true;
                    self.ack_sent_at = None; // Karn: a repeated greeting gives no sample
                    self.stats.retransmitted += 1;
                }
                if self.ack_deferred.is_some_and(|at| now >= at) {
                    // No second chunk came in time: the held-back Ack goes alone.
                    self.ack_deferred = None;
                    self.ack_pending = Some(self.expected - 1);
                }
            }
            _ => {}
        }
    }

    /// The next datagram to send, encoded into `buf`, or `None`. Call until `None` after
    /// every `handle_*` call.
    #[must_use]
    pub fn poll_transmit<'a>(&mut self, now: Instant, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let len = self.prepare(now, buf)?;
        Some(&buf[..len])
    }

    /// Encodes the next datagram to send into `buf` and returns its length, or `None`.
    pub(crate) fn prepare(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some((code, text)) = self.error_pending.take() {
            self.stats.sent += 1;
            return Some(
                Message::Error {
                    session: self.session,
                    code,
                    text: clip_text(&text).as_bytes(),
                }
                .encode(buf),
            );
        }
        if self.greet_pending {
            self.greet_pending = false;
            self.greet_at = Some(deadline(now, self.rtt.rto()));
            if let Greeting::Accept { token } = self.greeting {
                // Data 1 answers the Accept: a round trip, if the Accept went out once.
                self.ack_sent_at = (self.stats.retransmitted == 0).then_some(now);
                self.stats.sent += 1;
                return Some(
                    Message::Accept {
                        session: self.session,
                        token,
                        chunk: self.chunk,
                        window: self.window as u16,
                        size: self.size,
                        offset: self.offset,
                    }
                    .encode(buf),
                );
            }
            // A client repeats its Ack 0 on this timer until Data 1 arrives: it proves the
            // client's address, so the server may go on (anti-amplification) even when
            // the server may not repeat its Accept any more.
            self.ack_pending = Some(0);
        }
        let seq = self.ack_pending.take()?;
        // The next chunk answers this Ack only in stop-and-wait (or the greeting, Ack 0): a
        // windowed sender does not wait for each Ack, so those are no round trips.
        let answered = self.window == 1 || seq == 0;
        if seq + 1 == self.expected
            && self.ack_tries == 0
            && self.state == State::Receiving
            && answered
        {
            self.ack_sent_at = Some(now);
        }
        self.ack_tries += 1;
        self.stats.sent += 1;
        if self.window == 1 {
            return Some(
                Message::Ack {
                    session: self.session,
                    seq,
                }
                .encode(buf),
            );
        }
        // Cumulative: this Ack also answers a chunk whose Ack was held back.
        self.ack_deferred = None;
        let mut bitmap = [0u8; MAX_BITMAP];
        let len = self.reorder.bitmap(&mut bitmap);
        Some(
            Message::Sack {
                session: self.session,
                seq: self.expected - 1,
                bitmap: &bitmap[..len],
            }
            .encode(buf),
        )
    }

    /// When [`Receiver::handle_timeout`] should next be called, or `None` once finished.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Receiving => {
                let give_up = deadline(self.progress_at, self.config.timeout);
                let timers = [self.greet_at, self.ack_deferred].into_iter().flatten();
                Some(timers.fold(give_up, Instant::min))
            }
            State::Linger { until } => Some(until),
            State::Done | State::Failed => None,
        }
    }

    /// How long a windowed receiver may hold back the Ack of an in-order chunk for the next
    /// one to share it: a quarter of the smallest round trip it measured or the handshake
    /// did, at most `rto_min` ([`ACK_DELAY_SHARE`]), so the sender's clock slows by far less
    /// than a round trip when no second chunk comes. `None` (acknowledge at once) in
    /// stop-and-wait, where the sender waits for each Ack, and before any round trip is
    /// known.
    fn ack_delay(&self) -> Option<Duration> {
        if self.window == 1 {
            return None;
        }
        let rtt = self
            .rtt
            .min_rtt()
            .into_iter()
            .chain(self.handshake_rtt)
            .min()?;
        Some((rtt / ACK_DELAY_SHARE).min(self.config.rto_min))
    }

    /// Whether a datagram is waiting for [`Receiver::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        self.ack_pending.is_some() || self.greet_pending || self.error_pending.is_some()
    }

    /// How the transfer ended, once it has (a complete receiver may still be lingering).
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Whether nothing remains to send or wait for: the session can be dropped.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed) && !self.wants_transmit()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            srtt: self.rtt.srtt(),
            ..self.stats.clone()
        }
    }
}
