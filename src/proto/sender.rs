//! The sending half of a transfer: it numbers its messages, keeps them in a [`Flight`] until
//! they are acknowledged, and retransmits only what is missing.
//!
//! Message 0 is the server's Accept (when the sender is the server answering a download),
//! 1..=n are the Data chunks and n+1 is Done with the whole-file CRC32. Up to the plan's
//! window of message numbers are open at once; window 1 is stop-and-wait (protocol.md §8),
//! where message `k+1` goes out only once Ack `k` arrived. A duplicate or late Ack never
//! causes a send (no Sorcerer's Apprentice): only the retransmission timer and evidence of a
//! hole (a later message delivered, [`Flight::detect_losses`]) do.
//!
//! The sender reads *ahead*: right after a message goes out (on the driver's next
//! `poll_transmit` call) it reads the next chunk straight into a datagram buffer and seals it
//! (header and CRC), so that when the window opens, that Data is ready for the wire.
//!
//! Done carries the whole file's CRC32. A sender computes it as it reads, unless its
//! [`Source`] remembers it for this version of the file ([`Source::file_crc`]); a resumed
//! download needs it for bytes it never sends, so a resume whose CRC is not remembered
//! hashes the whole file once (in steps, after the peer proved its address) and the source
//! remembers it for every later resume of that version.

use super::congestion::Congestion;
use super::flight::Flight;
use super::rtt::Rtt;
use super::session::{chunk_count, deadline, Config, Failure, FileCrc, Outcome, Source, Stats};
use super::transfer::{Opening, Plan};
use super::wire::{clip_text, seal_data, ErrorCode, Message, HEADER_LEN, OVERHEAD};
use std::time::{Duration, Instant};

/// Bytes hashed per timer call when a resume needs the whole file's CRC: large files are
/// hashed in steps, so one resume cannot stall a loop that serves other sessions.
const HASH_STEP: u64 = 1 << 20;

/// Windows' worth of deliveries without a spurious retransmission after which the
/// reordering window narrows by a quarter round trip again.
const REORDER_CALM: u64 = 16;

/// The widest reordering window, in quarters of the smallest round trip (it is also capped
/// at the smoothed round trip).
const MAX_REORDER_QUARTERS: u32 = 16;

/// How often a resume whose file CRC another transfer is computing asks again.
const CRC_POLL: Duration = Duration::from_millis(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Message 0, the Accept, is in flight (the server of a download or listing).
    Opening,
    /// Hashing the whole file for a resumed download whose CRC nobody remembers, after the
    /// peer acknowledged the Accept (so a spoofed request makes the server read nothing) and
    /// before Data 1.
    Hashing { done: u64 },
    /// Waiting for another transfer that is computing the file's CRC (resume).
    AwaitCrc,
    /// Data and Done flow, within the window.
    Sending,
    /// Ack of Done arrived.
    Done,
    /// Gave up, or the peer sent an error.
    Failed,
}

/// Where the datagram a `prepare` call produced lies.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Out {
    /// In the caller's buffer, this many bytes.
    Buf(usize),
    /// In the flight: the kept datagram of this Data message.
    Kept(u64),
}

/// Sends one file (or listing) to one peer.
pub struct Sender {
    session: u32,
    /// The request token to echo in message 0, for a server's sender.
    accept: Option<u32>,
    source: Box<dyn Source>,
    size: u64,
    offset: u64,
    chunk: u16,
    /// The granted window (for the Accept).
    window: u16,
    chunks: u64,
    /// The whole file's CRC32 once known (remembered by the source, or hashed in full);
    /// until then `hasher` takes every byte read, in order.
    file_crc: Option<u32>,
    hasher: crc32fast::Hasher,
    phase: Phase,
    flight: Flight,
    /// The congestion window of a windowed session (none for stop-and-wait); boxed, as
    /// only windowed senders have one and it would otherwise make every session larger.
    congestion: Option<Box<Congestion>>,
    /// The next new Data datagram, read and sealed ahead: (message, buffer, length).
    ready: Option<(u64, Vec<u8>, usize)>,
    /// Reading ahead is due on the next `poll_transmit` call (after the send).
    read_ahead_due: bool,
    /// An error to tell the peer, sent once.
    error_pending: Option<(ErrorCode, String)>,
    /// Whether the Accept went out: before it, the client knows only its request token,
    /// so an error must carry the token to reach it.
    accept_sent: bool,
    outcome: Option<Outcome>,
    config: Config,
    rtt: Rtt,
    /// The retransmission timer of the oldest unacknowledged message (RFC 6298).
    rto_at: Option<Instant>,
    /// The timer expired: the oldest message goes again whatever the congestion window
    /// (which may have shrunk below what is still counted in flight).
    rto_due: bool,
    /// When a message waiting out its reordering window would be presumed lost.
    reorder_at: Option<Instant>,
    /// When the next step of hashing (or of asking for the file's CRC) is due.
    step_at: Option<Instant>,
    /// How many quarters of the smallest round trip a message may trail one sent after it
    /// before it is presumed lost: 1, plus one for each retransmission found spurious, and
    /// back down one after each [`REORDER_CALM`] windows' worth of deliveries without one
    /// (RFC 8985 §6.2.1, which does the same with D-SACK).
    reorder_quarters: u32,
    /// Messages delivered since a retransmission was last found spurious.
    calm: u64,
    progress_at: Instant,
    /// The last message of a stop-and-wait sender acknowledged after retransmissions: (its
    /// number, when its first copy went out, when it was acknowledged).
    retried: Option<(u64, Instant, Instant)>,
    /// The last message of a stop-and-wait sender acknowledged after being sent once.
    once: Option<u64>,
    /// Whether the path has shown that it loses or duplicates datagrams (a retransmitted
    /// message acknowledged once, a message sent once acknowledged twice): from then on a
    /// second Ack may be a duplicate and proves no stall (`second_ack`).
    doubtful: bool,
    stats: Stats,
}

impl Sender {
    /// A sender of the bytes `plan.offset..plan.size` of `source`, with up to `plan.window`
    /// messages in flight. With [`Opening::Accept`], message 0 is an Accept (the server's side
    /// of a download); otherwise the first message is Data 1 (the client's side of an upload).
    pub fn new(now: Instant, config: &Config, plan: Plan, source: Box<dyn Source>) -> Self {
        let Plan {
            session,
            size,
            chunk,
            window,
            ..
        } = plan;
        let offset = plan.offset.min(size);
        let accept = match plan.opening {
            Opening::Accept { token } => Some(token),
            Opening::AckAccept | Opening::Data => None,
        };
        let first = u64::from(accept.is_none());
        let mut sender = Self {
            session,
            accept,
            source,
            size,
            offset,
            chunk,
            window,
            chunks: chunk_count(size - offset, chunk),
            file_crc: None,
            hasher: crc32fast::Hasher::new(),
            phase: Phase::Opening,
            flight: Flight::new(first, u64::from(window), usize::from(chunk) + OVERHEAD),
            congestion: (window > 1).then(|| Box::new(Congestion::new(window))),
            ready: None,
            read_ahead_due: false,
            error_pending: None,
            accept_sent: false,
            outcome: None,
            config: config.clone(),
            rtt: Rtt::new(config),
            rto_at: None,
            rto_due: false,
            reorder_at: None,
            step_at: None,
            reorder_quarters: 1,
            calm: 0,
            progress_at: now,
            retried: None,
            once: None,
            doubtful: false,
            stats: Stats::default(),
        };
        if accept.is_none() {
            sender.start_data(now);
        }
        sender
    }

    /// Takes a round trip measured before the transfer (see [`super::Transfer::seed_rtt`]).
    pub fn seed_rtt(&mut self, rtt: Duration) {
        self.rtt.seed(rtt);
        if let Some(congestion) = &mut self.congestion {
            congestion.seed_base(rtt);
        }
    }

    /// Holds a windowed sender's congestion window to its share of a busy server loop, as
    /// one of its `sessions` (1: the loop has room; protocol.md §21.4); nothing for
    /// stop-and-wait.
    pub fn share_loop(&mut self, sessions: u32) {
        if let Some(congestion) = &mut self.congestion {
            congestion.share_loop(sessions);
        }
    }

    /// The session this sender belongs to.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Bytes of the file acknowledged so far, counting a resumed prefix (for progress bars).
    pub fn acked_bytes(&self) -> u64 {
        match self.phase {
            Phase::Sending => {
                let chunks_done = self.flight.base().saturating_sub(1).min(self.chunks);
                (self.offset + chunks_done * u64::from(self.chunk)).min(self.size)
            }
            Phase::Done => self.size,
            Phase::Opening | Phase::Hashing { .. } | Phase::AwaitCrc | Phase::Failed => self.offset,
        }
    }

    /// Handles one decoded datagram addressed to this session.
    pub fn handle_message(&mut self, now: Instant, message: &Message<'_>) {
        self.stats.received += 1;
        match *message {
            Message::Ack { seq, .. } => self.handle_ack(now, seq, None),
            Message::Sack { seq, bitmap, .. } => self.handle_ack(now, seq, Some(bitmap)),
            Message::Error { code, text, .. } => {
                if self.outcome.is_none() {
                    self.stop(Outcome::Failed(Failure::from_peer(code, text)));
                }
            }
            // A repeated Accept (client upload) or anything else is not for a sender.
            _ => self.stats.duplicates += 1,
        }
    }

    /// An acknowledgment: every message up to `cumulative` arrived, and in a windowed
    /// session, so did those the `bitmap` names (bit 7 of byte 0 is `cumulative + 2`).
    fn handle_ack(&mut self, now: Instant, cumulative: u64, bitmap: Option<&[u8]>) {
        if !matches!(self.phase, Phase::Opening | Phase::Sending) {
            self.stats.duplicates += 1;
            return;
        }
        self.integrate_window(now);
        let selective = bitmap
            .into_iter()
            .flat_map(|bits| bits.iter().enumerate())
            .flat_map(|(byte, bits)| {
                (0..8)
                    .filter(move |bit| bits & (0x80 >> bit) != 0)
                    .map(move |bit| byte as u64 * 8 + bit)
            })
            .map(|i| cumulative + 2 + i);
        let acked = self
            .flight
            .ack(now, cumulative, selective, self.rtt.min_rtt());
        if acked.delivered == 0 {
            // An old Ack (a duplicate or a late one), or one for a message not yet sent.
            self.stats.duplicates += 1;
            if bitmap.is_none() {
                self.second_ack(cumulative);
            }
            return;
        }
        if bitmap.is_none() && acked.advanced {
            // A retransmitted message acknowledged once: its first copy was lost.
            self.doubtful |= self.retried.is_some();
            self.retried = acked.retried.map(|(seq, first)| (seq, first, now));
            self.once = acked.once;
        }
        if let Some(rtt) = acked.sample {
            self.rtt.sample(rtt);
        } else if acked.advanced {
            self.rtt.end_back_off();
        }
        if let Some(late) = acked.spurious_sample {
            // A retransmission was needless: the first copy took this long (Eifel, RFC 4015).
            // As a sample it replaces the backoff, and widens the timeout to the delays this
            // path really has.
            self.rtt.sample(late);
        }
        let next_tx = self.flight.next_tx();
        if let Some(congestion) = &mut self.congestion {
            congestion.on_ack(acked.delivered, acked.sample, acked.newest_tx, next_tx);
        }
        self.adapt_reordering(acked.spurious, acked.delivered);
        let silence = now.saturating_duration_since(self.progress_at);
        self.stats.longest_silence = self.stats.longest_silence.max(silence);
        self.progress_at = now;
        if acked.advanced {
            // RFC 6298 (5.2, 5.3): stop the timer when nothing is outstanding, else restart it.
            self.rto_at = (!self.flight.is_empty()).then(|| deadline(now, self.rtt.rto()));
        }
        if self.flight.base() > self.chunks + 1 {
            self.stop(Outcome::Complete);
            self.phase = Phase::Done;
            return;
        }
        if self.phase == Phase::Opening && self.flight.base() == 1 {
            self.start_data(now);
            return;
        }
        self.look_for_losses(now);
    }

    /// A stop-and-wait receiver acknowledges every copy of a message it gets: a second Ack of
    /// the message just acknowledged after a timeout means both copies arrived, so the
    /// retransmission was spurious, and the first Ack answered the first copy — its round
    /// trip is a sample despite Karn's rule (a stall at either end, longer than the RTO,
    /// which the timer must learn to wait out; protocol.md §9.1). A duplicated Ack of a
    /// retransmission that answered a lost first copy reads the same. So once the path has
    /// shown that it loses or duplicates (`doubtful`), the sample only enters SRTT and
    /// RTTVAR ([`Rtt::sample_inferred`]): one such Ack after every retransmission would
    /// otherwise ratchet the timer up. Until then it is a full sample, so a stall widens the
    /// timer for the next thousand round trips as one at the sender does.
    fn second_ack(&mut self, seq: u64) {
        if self.once == Some(seq) {
            self.once = None;
            self.doubtful = true;
        }
        if let Some((retried, first_sent, acked_at)) = self.retried {
            if retried == seq {
                self.retried = None;
                self.stats.spurious += 1;
                let rtt = acked_at.saturating_duration_since(first_sent);
                if self.doubtful {
                    self.rtt.sample_inferred(rtt);
                } else {
                    self.rtt.sample(rtt);
                }
            }
        }
    }

    /// Marks lost what the latest deliveries show missing, and arms the reordering timer
    /// for what they may soon show.
    fn look_for_losses(&mut self, now: Instant) {
        let (lost, wake) = self.flight.detect_losses(now, self.reorder_window());
        self.reorder_at = wake;
        let next_tx = self.flight.next_tx();
        if let (Some(lost), Some(congestion)) = (lost, &mut self.congestion) {
            congestion.on_loss(lost, next_tx);
        }
    }

    /// How long a message may trail one sent after it before it is presumed lost: a
    /// quarter of the smallest round trip (RFC 8985 §6.2) times `reorder_quarters`, at most
    /// the smoothed round trip.
    fn reorder_window(&self) -> Duration {
        let (Some(min), Some(srtt)) = (self.rtt.min_rtt(), self.rtt.srtt()) else {
            return Duration::ZERO;
        };
        (min / 4 * self.reorder_quarters).min(srtt)
    }

    /// Widens the reordering window when retransmissions turn out spurious (the path
    /// reorders more than it allowed), and narrows it again after a calm stretch.
    fn adapt_reordering(&mut self, spurious: u64, delivered: u64) {
        self.stats.spurious += spurious;
        if spurious > 0 {
            self.reorder_quarters = (self.reorder_quarters + 1).min(MAX_REORDER_QUARTERS);
            self.calm = 0;
            return;
        }
        self.calm += delivered;
        if self.calm >= REORDER_CALM * u64::from(self.window) && self.reorder_quarters > 1 {
            self.reorder_quarters -= 1;
            self.calm = 0;
        }
    }

    /// Moves on to Data 1. A resumed download needs the whole file's CRC first: remembered
    /// by the source, or hashed here in steps of timer calls (so that one resume cannot stall
    /// a loop serving other sessions), or awaited while another transfer hashes it.
    fn start_data(&mut self, now: Instant) {
        let resuming = self.offset > 0;
        match self.source.file_crc(resuming) {
            FileCrc::Known(crc) => {
                self.file_crc = Some(crc);
                self.phase = Phase::Sending;
            }
            FileCrc::Unknown if !resuming => self.phase = Phase::Sending,
            FileCrc::Unknown => self.wait(Phase::Hashing { done: 0 }, now),
            FileCrc::Pending => self.wait(Phase::AwaitCrc, deadline(now, CRC_POLL)),
        }
    }

    /// Enters a phase that sends nothing until the step timer fires at `at`.
    fn wait(&mut self, phase: Phase, at: Instant) {
        self.phase = phase;
        self.step_at = Some(at);
    }

    /// Feeds up to [`HASH_STEP`] more bytes of the file to the whole-file CRC; returns how
    /// many bytes are hashed so far.
    fn hash_step(&mut self, mut done: u64) -> Result<u64, Failure> {
        let stop = (done + HASH_STEP).min(self.size);
        let mut buf = self.flight.buffer();
        let result = loop {
            if done >= stop {
                break Ok(done);
            }
            let want = (stop - done).min(buf.len() as u64) as usize;
            match self.source.read_at(done, &mut buf[..want]) {
                Err(e) => break Err(local(ErrorCode::Io, format!("read error: {e}"))),
                Ok(0) => break Err(local(ErrorCode::FileChanged, "file shrank".into())),
                Ok(n) => {
                    self.hasher.update(&buf[..n]);
                    done += n as u64;
                }
            }
        };
        self.flight.recycle(buf);
        result
    }

    /// Reads Data `seq` into a buffer, feeds it to the whole-file CRC (chunks are read in
    /// order, once each) and seals it as a datagram.
    fn read_chunk(&mut self, seq: u64) -> Result<(Vec<u8>, usize), Failure> {
        let at = self.offset + (seq - 1) * u64::from(self.chunk);
        let want = (self.size - at).min(u64::from(self.chunk)) as usize;
        let mut buf = self.flight.buffer();
        let payload = &mut buf[HEADER_LEN..HEADER_LEN + want];
        let mut filled = 0;
        while filled < want {
            match self
                .source
                .read_at(at + filled as u64, &mut payload[filled..])
            {
                Ok(0) => {
                    self.flight.recycle(buf);
                    return Err(local(
                        ErrorCode::FileChanged,
                        "file shrank during transfer".into(),
                    ));
                }
                Ok(n) => filled += n,
                Err(e) => {
                    self.flight.recycle(buf);
                    return Err(local(ErrorCode::Io, format!("read error: {e}")));
                }
            }
        }
        if self.file_crc.is_none() {
            self.hasher.update(payload);
        }
        let len = seal_data(&mut buf, self.session, seq, want);
        Ok((buf, len))
    }

    fn check_unchanged(&mut self) -> Result<(), Failure> {
        match self.source.unchanged() {
            Ok(true) => Ok(()),
            Ok(false) => Err(local(
                ErrorCode::FileChanged,
                "file changed during transfer".into(),
            )),
            Err(e) => Err(local(ErrorCode::Io, format!("read error: {e}"))),
        }
    }

    /// Ends the transfer with `outcome`: nothing more is sent but a pending error.
    fn stop(&mut self, outcome: Outcome) {
        self.phase = Phase::Failed;
        self.read_ahead_due = false;
        self.rto_at = None;
        self.reorder_at = None;
        self.step_at = None;
        if let Some((_, buf, _)) = self.ready.take() {
            self.flight.recycle(buf);
        }
        self.outcome = Some(outcome);
    }

    fn fail(&mut self, failure: Failure) {
        if let Failure::Local { code, text } = &failure {
            self.error_pending = Some((*code, text.clone()));
        }
        self.stop(Outcome::Failed(failure));
    }

    /// Ends the transfer from this side, telling the peer why (cancel, shutdown).
    pub fn abort(&mut self, code: ErrorCode, text: &str) {
        if self.outcome.is_none() {
            self.fail(local(code, text.to_owned()));
        }
    }

    /// Fires whichever timer is due (hashing step, reordering, retransmission); does nothing
    /// otherwise, so spurious calls are harmless. Gives up once the peer has made no progress
    /// for `timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if self.step_at.is_some_and(|at| now >= at) {
            self.step_at = None;
            self.step(now);
            return;
        }
        if self.reorder_at.is_some_and(|at| now >= at) {
            self.look_for_losses(now);
        }
        if self.rto_at.is_none_or(|at| now < at) {
            return;
        }
        let elapsed = now.saturating_duration_since(self.progress_at);
        if elapsed >= self.config.timeout {
            let tries = self.flight.tries(self.flight.base());
            self.fail(Failure::Timeout { tries, elapsed });
            // The peer is presumed gone; tell it anyway in case only its sends are lost.
            self.error_pending = Some((ErrorCode::Timeout, "timed out".into()));
            return;
        }
        self.integrate_window(now);
        self.rtt.back_off();
        self.rto_at = None;
        self.rto_due = true;
        let next_tx = self.flight.next_tx();
        if let (Some(lost), Some(congestion)) =
            (self.flight.mark_oldest_lost(), &mut self.congestion)
        {
            congestion.on_timeout(lost, next_tx);
        }
    }

    /// One step of the phases that wait on the file's CRC.
    fn step(&mut self, now: Instant) {
        match self.phase {
            Phase::Hashing { done } => match self.hash_step(done) {
                Err(failure) => self.fail(failure),
                Ok(done) if done < self.size => {
                    // Due again at once; drivers fire each session once per round, so
                    // other sessions are served between steps.
                    self.wait(Phase::Hashing { done }, now);
                }
                Ok(_) => match self.check_unchanged() {
                    Err(failure) => self.fail(failure),
                    Ok(()) => {
                        let crc = self.hasher.clone().finalize();
                        self.source.remember_crc(crc);
                        self.file_crc = Some(crc);
                        self.progress_at = now;
                        self.phase = Phase::Sending;
                    }
                },
            },
            Phase::AwaitCrc => {
                let elapsed = now.saturating_duration_since(self.progress_at);
                if elapsed >= self.config.timeout {
                    self.fail(local(
                        ErrorCode::Busy,
                        "the file's checksum is still being computed".into(),
                    ));
                } else {
                    self.start_data(now);
                }
            }
            _ => {}
        }
    }

    /// Adds the window as it stood since the last event to its time-weighted mean, before
    /// the event at `now` may change it; only while Data flows (the Accept's round trip and a
    /// resume's hashing say nothing of the window).
    fn integrate_window(&mut self, now: Instant) {
        if let (Some(congestion), Phase::Sending) = (&mut self.congestion, &self.phase) {
            congestion.mark(now);
        }
    }

    /// The congestion window: how many messages may be in the network at once.
    fn cwnd(&self) -> usize {
        self.congestion.as_ref().map_or(usize::MAX, |c| c.window())
    }

    /// Whether message `next` may go out for the first time now.
    fn may_send_new(&self) -> bool {
        let next = self.flight.next();
        match self.phase {
            Phase::Opening => next == 0,
            Phase::Sending => {
                next <= self.chunks + 1
                    && self.flight.has_room()
                    && self.flight.in_flight() < self.cwnd()
            }
            _ => false,
        }
    }

    /// The next datagram to send, or `None` when nothing is due. A control message is
    /// encoded into `buf` (at least [`super::wire::MAX_DATAGRAM`] long); a Data datagram is
    /// handed out where it was read and sealed, in the flight, and never copied. Call until
    /// `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit<'a>(&'a mut self, now: Instant, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let out = self.prepare(now, buf)?;
        Some(self.datagram(out, buf))
    }

    /// The bytes of a datagram [`Sender::prepare`] produced.
    pub(crate) fn datagram<'a>(&'a self, out: Out, buf: &'a [u8]) -> &'a [u8] {
        match out {
            Out::Buf(len) => &buf[..len],
            Out::Kept(seq) => self.flight.datagram(seq).unwrap_or_default(),
        }
    }

    /// Decides the next datagram to send: an error, a retransmission, a new message; and when
    /// there is none, reads the next chunk ahead.
    pub(crate) fn prepare(&mut self, now: Instant, buf: &mut [u8]) -> Option<Out> {
        if let Some((code, text)) = self.error_pending.take() {
            self.stats.sent += 1;
            let session = match self.accept {
                Some(token) if !self.accept_sent => token,
                _ => self.session,
            };
            return Some(Out::Buf(
                Message::Error {
                    session,
                    code,
                    text: clip_text(&text).as_bytes(),
                }
                .encode(buf),
            ));
        }
        if !matches!(self.phase, Phase::Opening | Phase::Sending) {
            return None;
        }
        if let Some(seq) = self
            .flight
            .next_lost()
            .filter(|_| self.rto_due || self.flight.in_flight() < self.cwnd())
        {
            self.rto_due = false;
            self.flight.resend(now, seq);
            self.stats.retransmitted += 1;
            if seq == self.flight.base() {
                // The oldest message went again: its timer counts from now, or it would expire
                // just before this copy could be acknowledged (as Linux re-arms it).
                self.rto_at = Some(deadline(now, self.rtt.rto()));
            }
            return Some(self.emit(now, seq, buf));
        }
        if self.may_send_new() {
            let seq = self.flight.next();
            if seq >= 1 && seq <= self.chunks {
                let datagram = match self.ready.take() {
                    Some((ready, ready_buf, len)) if ready == seq => (ready_buf, len),
                    other => {
                        if let Some((_, stale, _)) = other {
                            self.flight.recycle(stale);
                        }
                        match self.read_chunk(seq) {
                            Ok(datagram) => datagram,
                            Err(failure) => {
                                self.fail(failure);
                                return self.prepare(now, buf);
                            }
                        }
                    }
                };
                self.stats.bytes += (datagram.1 - OVERHEAD) as u64;
                self.flight.send_new(now, Some(datagram));
            } else {
                if seq > self.chunks {
                    if let Err(failure) = self.finish_reading() {
                        self.fail(failure);
                        return self.prepare(now, buf);
                    }
                }
                self.flight.send_new(now, None);
            }
            self.read_ahead_due = true;
            return Some(self.emit(now, seq, buf));
        }
        if self.read_ahead_due {
            // The message just sent is out: use the wait to prepare the next one.
            self.read_ahead_due = false;
            let next = self.flight.next();
            if self.phase == Phase::Sending
                && next >= 1
                && next <= self.chunks
                && self.ready.is_none()
            {
                match self.read_chunk(next) {
                    Ok((ready, len)) => self.ready = Some((next, ready, len)),
                    Err(failure) => {
                        self.fail(failure);
                        return self.prepare(now, buf);
                    }
                }
            }
        }
        None
    }

    /// Every byte has been read: checks the file did not change and settles its CRC.
    fn finish_reading(&mut self) -> Result<(), Failure> {
        self.check_unchanged()?;
        if self.file_crc.is_none() {
            // Every byte was read and the file did not change: remember its CRC.
            let crc = self.hasher.clone().finalize();
            self.source.remember_crc(crc);
            self.file_crc = Some(crc);
        }
        Ok(())
    }

    /// Counts a send of message `seq`, arms the retransmission timer if it is not running
    /// (RFC 6298 5.1), and says where its datagram is.
    fn emit(&mut self, now: Instant, seq: u64, buf: &mut [u8]) -> Out {
        self.stats.sent += 1;
        if self.rto_at.is_none() {
            self.rto_at = Some(deadline(now, self.rtt.rto()));
        }
        if seq >= 1 && seq <= self.chunks {
            return Out::Kept(seq);
        }
        let message = if seq == 0 {
            self.accept_sent = true;
            Message::Accept {
                session: self.session,
                token: self.accept.unwrap_or(0),
                chunk: self.chunk,
                window: self.window,
                size: self.size,
                offset: self.offset,
            }
        } else {
            Message::Done {
                session: self.session,
                seq,
                size: self.size,
                crc: self
                    .file_crc
                    .unwrap_or_else(|| self.hasher.clone().finalize()),
            }
        };
        Out::Buf(message.encode(buf))
    }

    /// When [`Sender::handle_timeout`] should next be called, or `None` if no timer runs.
    /// Valid after `poll_transmit` has returned `None`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.rto_at, self.reorder_at, self.step_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a datagram is waiting for [`Sender::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        self.error_pending.is_some()
            || self.read_ahead_due
            || matches!(self.phase, Phase::Opening | Phase::Sending)
                && (self.flight.next_lost().is_some()
                    && (self.rto_due || self.flight.in_flight() < self.cwnd())
                    || self.may_send_new())
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Whether nothing remains to send or wait for: the session can be dropped.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some() && !self.wants_transmit()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            srtt: self.rtt.srtt(),
            cwnd: self.cwnd().min(usize::from(self.window)) as u64,
            window: self
                .congestion
                .as_ref()
                .map(|c| c.stats())
                .unwrap_or_default(),
            ..self.stats.clone()
        }
    }
}

fn local(code: ErrorCode, text: String) -> Failure {
    Failure::Local { code, text }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A source over `bytes` that counts what is read and answers `crc` for the file's CRC.
    struct Counting {
        bytes: Vec<u8>,
        read: Arc<AtomicU64>,
        crc: FileCrc,
        remembered: Arc<AtomicU64>,
    }

    impl Source for Counting {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let start = (offset as usize).min(self.bytes.len());
            let n = buf.len().min(self.bytes.len() - start);
            buf[..n].copy_from_slice(&self.bytes[start..start + n]);
            self.read.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
        fn file_crc(&mut self, _claim: bool) -> FileCrc {
            self.crc
        }
        fn remember_crc(&mut self, crc: u32) {
            self.remembered
                .store(u64::from(crc) | 1 << 32, Ordering::SeqCst);
        }
    }

    /// Resumes a download at `offset` of `len` bytes whose source answers `crc`; returns the
    /// Done's CRC, the bytes read and what the source was asked to remember.
    fn resume(len: usize, offset: u64, crc: FileCrc) -> (u32, u64, Option<u32>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let read = Arc::new(AtomicU64::new(0));
        let remembered = Arc::new(AtomicU64::new(0));
        let source = Counting {
            bytes,
            read: Arc::clone(&read),
            crc,
            remembered: Arc::clone(&remembered),
        };
        let plan = Plan {
            session: 9,
            size: len as u64,
            offset,
            chunk: 1024,
            window: 1,
            opening: Opening::Accept { token: 1 },
            prefix_crc: 0,
        };
        let t0 = Instant::now();
        let mut sender = Sender::new(t0, &Config::for_server(), plan, Box::new(source));
        let mut buf = vec![0u8; 2048];
        let accept = sender.poll_transmit(t0, &mut buf).expect("Accept");
        assert!(matches!(
            Message::decode(accept),
            Ok(Message::Accept { .. })
        ));
        let ack = Message::Ack { session: 9, seq: 0 };
        sender.handle_message(t0, &ack);
        // Hashing (if any) runs in timer steps, each due at once.
        let mut now = t0;
        let done = loop {
            sender.handle_timeout(now);
            if let Some(datagram) = sender.poll_transmit(now, &mut buf) {
                match Message::decode(datagram) {
                    Ok(Message::Done { crc, .. }) => break crc,
                    other => panic!("expected Done, got {other:?}"),
                }
            }
            now += Duration::from_micros(1);
        };
        let remembered = remembered.load(Ordering::SeqCst);
        let remembered = (remembered >> 32 == 1).then_some(remembered as u32);
        (done, read.load(Ordering::SeqCst), remembered)
    }

    #[test]
    fn a_resume_at_the_end_with_a_remembered_crc_reads_nothing() {
        let (done, read, remembered) = resume(3 << 20, 3 << 20, FileCrc::Known(0x1234_5678));
        assert_eq!(done, 0x1234_5678);
        assert_eq!(read, 0, "no byte of the prefix may be read");
        assert_eq!(remembered, None);
    }

    #[test]
    fn a_resume_with_no_remembered_crc_hashes_the_file_once_and_remembers_it() {
        let len = 3 << 20;
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let (done, read, remembered) = resume(len, len as u64, FileCrc::Unknown);
        assert_eq!(done, crc32fast::hash(&bytes));
        assert_eq!(read, len as u64);
        assert_eq!(remembered, Some(done));
    }
}
