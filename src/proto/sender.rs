//! The sending half of a transfer: stop-and-wait, one message in flight.
//!
//! A [`Sender`] numbers its messages: 0 is the server's Accept (when the sender is the
//! server answering a download), 1..=n are the Data chunks and n+1 is Done with the
//! whole-file CRC32. It sends message `k`, waits for Ack `k`, then sends `k+1`. Only its
//! timer retransmits; a duplicate Ack never causes a send (no Sorcerer's Apprentice).
//! See `protocol.md`, "Stop-and-wait".
//!
//! Stop-and-wait leaves the link idle while the next chunk is read, so the sender reads
//! *ahead*: right after Data `k` goes out (on the driver's next `poll_transmit` call) it
//! reads chunk `k+1` straight into a second datagram buffer and seals it (header and CRC),
//! so that when Ack `k` arrives, Data `k+1` is one copy away from the wire.
//!
//! Done carries the whole file's CRC32. A sender computes it as it reads, unless its
//! [`Source`] remembers it for this version of the file ([`Source::file_crc`]); a resumed
//! download needs it for bytes it never sends, so a resume whose CRC is not remembered
//! hashes the whole file once (in steps, after the peer proved its address) and the source
//! remembers it for every later resume of that version.

use super::rtt::Rtt;
use super::session::{chunk_count, deadline, Config, Failure, FileCrc, Outcome, Source, Stats};
use super::transfer::{Opening, Plan};
use super::wire::{clip_text, seal_data, ErrorCode, Message, HEADER_LEN, OVERHEAD};
use std::time::{Duration, Instant};

/// Bytes hashed per timer call when a resume needs the whole file's CRC: large files are
/// hashed in steps, so one resume cannot stall a loop that serves other sessions.
const HASH_STEP: u64 = 1 << 20;

/// How often a resume whose file CRC another transfer is computing asks again.
const CRC_POLL: Duration = Duration::from_millis(2);

#[derive(Debug)]
enum State {
    /// Hashing the whole file for a resumed download whose CRC nobody remembers, after the
    /// peer acknowledged the Accept (so a spoofed request makes the server read nothing) and
    /// before Data 1.
    Hashing { done: u64 },
    /// Waiting for another transfer that is computing the file's CRC (resume).
    AwaitCrc,
    /// Message `seq` is (or is about to be) in flight.
    AwaitAck { seq: u64 },
    /// Ack of Done arrived.
    Done,
    /// Gave up, or the peer sent an error.
    Failed,
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
    chunks: u64,
    /// The whole file's CRC32 once known (remembered by the source, or hashed in full);
    /// until then `hasher` takes every byte read, in order.
    file_crc: Option<u32>,
    hasher: crc32fast::Hasher,
    /// The sealed Data datagram in flight, read once and kept for retransmission.
    current: Vec<u8>,
    current_len: usize,
    /// The next Data datagram, read and sealed ahead while `current` is in flight.
    ahead: Vec<u8>,
    ahead_len: usize,
    ahead_seq: Option<u64>,
    /// Reading ahead is due on the next `poll_transmit` call (after the send).
    read_ahead_due: bool,
    state: State,
    transmit_pending: bool,
    /// An error to tell the peer, sent once.
    error_pending: Option<(ErrorCode, String)>,
    /// Whether the Accept went out: before it, the client knows only its request token,
    /// so an error must carry the token to reach it.
    accept_sent: bool,
    outcome: Option<Outcome>,
    config: Config,
    rtt: Rtt,
    /// When the message in flight was first sent (for an RTT sample) and its send count.
    first_sent: Option<Instant>,
    tries: u32,
    retransmit_at: Option<Instant>,
    progress_at: Instant,
    stats: Stats,
}

impl Sender {
    /// A sender of the bytes `plan.offset..plan.size` of `source`. With
    /// [`Opening::Accept`], message 0 is an Accept (the server's side of a download);
    /// otherwise the first message is Data 1 (the client's side of an upload).
    pub fn new(now: Instant, config: &Config, plan: Plan, source: Box<dyn Source>) -> Self {
        let Plan {
            session,
            size,
            chunk,
            ..
        } = plan;
        let offset = plan.offset.min(size);
        let accept = match plan.opening {
            Opening::Accept { token } => Some(token),
            Opening::AckAccept | Opening::Data => None,
        };
        let mut sender = Self {
            session,
            accept,
            source,
            size,
            offset,
            chunk,
            chunks: chunk_count(size - offset, chunk),
            file_crc: None,
            hasher: crc32fast::Hasher::new(),
            current: vec![0; usize::from(chunk) + OVERHEAD],
            current_len: 0,
            ahead: vec![0; usize::from(chunk) + OVERHEAD],
            ahead_len: 0,
            ahead_seq: None,
            read_ahead_due: false,
            state: State::AwaitAck { seq: 0 },
            transmit_pending: true,
            error_pending: None,
            accept_sent: false,
            outcome: None,
            config: config.clone(),
            rtt: Rtt::new(config),
            first_sent: None,
            tries: 0,
            retransmit_at: None,
            progress_at: now,
            stats: Stats::default(),
        };
        if accept.is_none() {
            sender.start_data(now);
        }
        sender
    }

    /// Feeds up to [`HASH_STEP`] more bytes of the file to the whole-file CRC; returns how
    /// many bytes are hashed so far.
    fn hash_step(&mut self, mut done: u64) -> Result<u64, Failure> {
        let stop = (done + HASH_STEP).min(self.size);
        while done < stop {
            let want = (stop - done).min(self.ahead.len() as u64) as usize;
            let n = self
                .source
                .read_at(done, &mut self.ahead[..want])
                .map_err(|e| local(ErrorCode::Io, format!("read error: {e}")))?;
            if n == 0 {
                return Err(local(ErrorCode::FileChanged, "file shrank".into()));
            }
            self.hasher.update(&self.ahead[..n]);
            done += n as u64;
        }
        Ok(done)
    }

    /// The session this sender belongs to.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Bytes of the file acknowledged so far, counting a resumed prefix (for progress bars).
    pub fn acked_bytes(&self) -> u64 {
        match self.state {
            State::AwaitAck { seq } => {
                let chunks_done = seq.saturating_sub(1).min(self.chunks);
                (self.offset + chunks_done * u64::from(self.chunk)).min(self.size)
            }
            State::Done => self.size,
            State::Hashing { .. } | State::AwaitCrc | State::Failed => self.offset,
        }
    }

    /// Handles one decoded datagram addressed to this session.
    pub fn handle_message(&mut self, now: Instant, message: &Message<'_>) {
        self.stats.received += 1;
        match *message {
            Message::Ack { seq, .. } => self.handle_ack(now, seq),
            Message::Error { code, text, .. } => {
                if self.outcome.is_none() {
                    self.state = State::Failed;
                    self.transmit_pending = false;
                    self.read_ahead_due = false;
                    self.retransmit_at = None;
                    self.outcome = Some(Outcome::Failed(Failure::from_peer(code, text)));
                }
            }
            // A repeated Accept (client upload) or anything else is not for a sender.
            _ => self.stats.duplicates += 1,
        }
    }

    fn handle_ack(&mut self, now: Instant, acked: u64) {
        let State::AwaitAck { seq } = self.state else {
            self.stats.duplicates += 1;
            return;
        };
        if acked != seq || self.transmit_pending && self.first_sent.is_none() {
            // An old Ack (a duplicate or a late one), or one for a message not yet sent.
            self.stats.duplicates += 1;
            return;
        }
        if self.tries == 1 {
            if let Some(sent) = self.first_sent {
                // Karn: only messages sent exactly once give a sample.
                self.rtt.sample(now.saturating_duration_since(sent));
            }
        }
        self.progress_at = now;
        if seq == self.chunks + 1 {
            self.state = State::Done;
            self.retransmit_at = None;
            self.outcome = Some(Outcome::Complete);
            return;
        }
        if seq == 0 {
            self.start_data(now);
            return;
        }
        self.advance_to(seq + 1);
    }

    /// Moves on to Data 1. A resumed download needs the whole file's CRC first: remembered
    /// by the source, or hashed here in steps of timer calls (so that one resume cannot stall
    /// a loop serving other sessions), or awaited while another transfer hashes it.
    fn start_data(&mut self, now: Instant) {
        let resuming = self.offset > 0;
        match self.source.file_crc(resuming) {
            FileCrc::Known(crc) => {
                self.file_crc = Some(crc);
                self.advance_to(1);
            }
            FileCrc::Unknown if !resuming => self.advance_to(1),
            FileCrc::Unknown => self.wait(State::Hashing { done: 0 }, now),
            FileCrc::Pending => self.wait(State::AwaitCrc, deadline(now, CRC_POLL)),
        }
    }

    /// Enters a state that sends nothing until the timer fires at `at`.
    fn wait(&mut self, state: State, at: Instant) {
        self.state = state;
        self.transmit_pending = false;
        self.first_sent = None;
        self.tries = 0;
        self.retransmit_at = Some(at);
    }

    /// Prepares message `seq` (a Data chunk or Done) for sending.
    fn advance_to(&mut self, seq: u64) {
        self.state = State::AwaitAck { seq };
        self.first_sent = None;
        self.tries = 0;
        self.retransmit_at = None;
        if seq <= self.chunks {
            if self.ahead_seq != Some(seq) {
                if let Err(failure) = self.read_ahead(seq) {
                    self.fail(failure);
                    return;
                }
            }
            std::mem::swap(&mut self.current, &mut self.ahead);
            self.current_len = self.ahead_len;
            self.ahead_seq = None;
            self.read_ahead_due = seq < self.chunks;
        } else if let Err(failure) = self.check_unchanged() {
            self.fail(failure);
            return;
        } else if self.file_crc.is_none() {
            // Every byte was read and the file did not change: remember its CRC.
            let crc = self.hasher.clone().finalize();
            self.source.remember_crc(crc);
            self.file_crc = Some(crc);
        }
        self.transmit_pending = true;
    }

    /// Reads chunk `seq` into the `ahead` buffer, feeds it to the whole-file CRC (chunks are
    /// read in order, once each) and seals it as a Data datagram.
    fn read_ahead(&mut self, seq: u64) -> Result<(), Failure> {
        let at = self.offset + (seq - 1) * u64::from(self.chunk);
        let want = (self.size - at).min(u64::from(self.chunk)) as usize;
        let payload = &mut self.ahead[HEADER_LEN..HEADER_LEN + want];
        let mut filled = 0;
        while filled < want {
            let n = self
                .source
                .read_at(at + filled as u64, &mut payload[filled..])
                .map_err(|e| local(ErrorCode::Io, format!("read error: {e}")))?;
            if n == 0 {
                return Err(local(
                    ErrorCode::FileChanged,
                    "file shrank during transfer".into(),
                ));
            }
            filled += n;
        }
        if self.file_crc.is_none() {
            self.hasher.update(payload);
        }
        self.ahead_len = seal_data(&mut self.ahead, self.session, seq, want);
        self.ahead_seq = Some(seq);
        Ok(())
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

    fn fail(&mut self, failure: Failure) {
        if let Failure::Local { code, text } = &failure {
            self.error_pending = Some((*code, text.clone()));
        }
        self.state = State::Failed;
        self.transmit_pending = false;
        self.read_ahead_due = false;
        self.retransmit_at = None;
        self.outcome = Some(Outcome::Failed(failure));
    }

    /// Ends the transfer from this side, telling the peer why (cancel, shutdown).
    pub fn abort(&mut self, code: ErrorCode, text: &str) {
        if self.outcome.is_none() {
            self.fail(local(code, text.to_owned()));
        }
    }

    /// Fires the retransmission timer if it is due; does nothing otherwise, so spurious
    /// calls are harmless. Gives up once the peer has made no progress for `timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(at) = self.retransmit_at else { return };
        if now < at || self.outcome.is_some() {
            return;
        }
        if let State::Hashing { done } = self.state {
            match self.hash_step(done) {
                Err(failure) => self.fail(failure),
                Ok(done) if done < self.size => {
                    self.state = State::Hashing { done };
                    // Due again at once; drivers fire each session once per round, so
                    // other sessions are served between steps.
                    self.retransmit_at = Some(now);
                }
                Ok(_) => match self.check_unchanged() {
                    Err(failure) => self.fail(failure),
                    Ok(()) => {
                        let crc = self.hasher.clone().finalize();
                        self.source.remember_crc(crc);
                        self.file_crc = Some(crc);
                        self.progress_at = now;
                        self.advance_to(1);
                    }
                },
            }
            return;
        }
        let elapsed = now.saturating_duration_since(self.progress_at);
        if matches!(self.state, State::AwaitCrc) {
            if elapsed >= self.config.timeout {
                self.fail(local(
                    ErrorCode::Busy,
                    "the file's checksum is still being computed".into(),
                ));
            } else {
                self.start_data(now);
            }
            return;
        }
        if elapsed >= self.config.timeout {
            let tries = self.tries;
            self.fail(Failure::Timeout { tries, elapsed });
            // The peer is presumed gone; tell it anyway in case only its sends are lost.
            self.error_pending = Some((ErrorCode::Timeout, "timed out".into()));
            return;
        }
        self.rtt.back_off();
        self.retransmit_at = None;
        self.transmit_pending = true;
    }

    /// Writes the next datagram to send into `buf` (at least [`super::wire::MAX_DATAGRAM`]
    /// long) and returns its length, or `None` when nothing is due. Call until `None` after
    /// every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some((code, text)) = self.error_pending.take() {
            self.stats.sent += 1;
            let session = match self.accept {
                Some(token) if !self.accept_sent => token,
                _ => self.session,
            };
            return Some(
                Message::Error {
                    session,
                    code,
                    text: clip_text(&text).as_bytes(),
                }
                .encode(buf),
            );
        }
        let State::AwaitAck { seq } = self.state else {
            return None;
        };
        if !self.transmit_pending {
            // The message in flight is out: use the wait to prepare the next one.
            if self.read_ahead_due {
                self.read_ahead_due = false;
                if let Err(failure) = self.read_ahead(seq + 1) {
                    self.fail(failure);
                    return self.poll_transmit(now, buf);
                }
            }
            return None;
        }
        self.transmit_pending = false;
        let len = if seq >= 1 && seq <= self.chunks {
            buf[..self.current_len].copy_from_slice(&self.current[..self.current_len]);
            self.current_len
        } else {
            self.encode_control(seq, buf)
        };
        if self.tries == 0 {
            self.first_sent = Some(now);
            if seq >= 1 && seq <= self.chunks {
                self.stats.bytes += (self.current_len - OVERHEAD) as u64;
            }
        } else {
            self.stats.retransmitted += 1;
        }
        self.tries += 1;
        self.stats.sent += 1;
        self.retransmit_at = Some(deadline(now, self.rtt.rto()));
        Some(len)
    }

    /// Encodes message `seq` when it is not Data: the Accept (0) or Done (n+1).
    fn encode_control(&mut self, seq: u64, buf: &mut [u8]) -> usize {
        let message = if seq == 0 {
            self.accept_sent = true;
            let token = self.accept.unwrap_or(0);
            Message::Accept {
                session: self.session,
                token,
                chunk: self.chunk,
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
        message.encode(buf)
    }

    /// When [`Sender::handle_timeout`] should next be called, or `None` if no timer runs.
    /// Valid after `poll_transmit` has returned `None`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retransmit_at
    }

    /// Whether a datagram is waiting for [`Sender::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        self.transmit_pending || self.error_pending.is_some() || self.read_ahead_due
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
            opening: Opening::Accept { token: 1 },
            prefix_crc: 0,
        };
        let t0 = Instant::now();
        let mut sender = Sender::new(t0, &Config::for_server(), plan, Box::new(source));
        let mut buf = vec![0u8; 2048];
        let n = sender.poll_transmit(t0, &mut buf).expect("Accept");
        assert!(matches!(
            Message::decode(&buf[..n]),
            Ok(Message::Accept { .. })
        ));
        let ack = Message::Ack { session: 9, seq: 0 };
        sender.handle_message(t0, &ack);
        // Hashing (if any) runs in timer steps, each due at once.
        let mut now = t0;
        let done = loop {
            sender.handle_timeout(now);
            if let Some(n) = sender.poll_transmit(now, &mut buf) {
                match Message::decode(&buf[..n]) {
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
