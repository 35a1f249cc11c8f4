//! The server's TFTP sessions: a read request (RRQ) served from a [`Source`], a write
//! request (WRQ) received into a [`Sink`], each for one peer address and port.
//!
//! [`open`] turns a decoded request into a [`ServerSession`] or the TFTP error to answer
//! it with, using the library's [`Store`] and its name rules; a driver (or the front door)
//! keys sessions by the peer's address and port and answers every datagram from the one
//! listening port (single-port TFTP, as dnsmasq's `--tftp-single-port`).
//!
//! **No amplification.** TFTP has no way for a peer to prove its address but to answer
//! what was sent to it. Until it has (an ACK of the OACK or of block 1 for a read; DATA 1
//! for a write), a session sends exactly one datagram per request datagram received (the
//! OACK, or block 1 when the request has no option, or the WRQ's ACK 0/OACK) and nothing
//! on its timers; if the peer stays silent, the session ends without a word. A repeat of
//! the request (the client's own retry) is answered once more; a silent peer is waited for
//! [`UNPROVEN_WAIT_FACTOR`] times the give-up time, so a client whose first ACK was lost is
//! still heard when it repeats it. So an RRQ with options is
//! answered only by the small OACK, DATA flows only after ACK 0 from that address and port,
//! and an RRQ without options gets block 1 once per request, never retransmitted.

use super::admit::{First, TftpTerms};
use super::codes::{TftpCode, TftpError};
use super::names::library_name;
use super::options::{negotiate, Direction, Granted, Policy};
use super::recv::BlockReceiver;
use super::send::BlockSender;
use super::wire::{Mode, Options, Packet, Request};
use crate::proto::session::{Config, Outcome, Sink, Source, Stats};
use crate::proto::store::Store;
use std::time::Instant;

/// An unproven session waits this many times the give-up time for its peer: long enough to
/// hear a client's own retry (tftp-hpa and atftp repeat after 5 s, curl after 6 s) when its
/// ACK, or our one answer, was lost.
pub const UNPROVEN_WAIT_FACTOR: u32 = 3;

/// How a server runs its TFTP sessions.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Timers (RFC 6298 bounds, the give-up time, the linger after an upload).
    pub timing: Config,
    /// What option negotiation grants.
    pub policy: Policy,
    /// Whether write requests are served at all.
    pub allow_write: bool,
    /// Whether an upload may replace an existing file (TFTP cannot ask for it).
    pub overwrite: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            timing: Config::for_server(),
            policy: Policy::default(),
            allow_write: false,
            overwrite: false,
        }
    }
}

/// The two kinds of session.
enum Half {
    /// Serving a read: the OACK (if any), then blocks.
    Read {
        sender: BlockSender,
        oack: Option<Vec<u8>>,
        /// The OACK awaits its ACK 0; when it first went out, and how often (Karn: only
        /// an OACK sent once gives an RTT sample).
        awaiting_ack0: bool,
        oack_sent_at: Option<Instant>,
        oack_sends: u32,
        proven: bool,
    },
    /// Receiving a write: ACK 0 or the OACK, then blocks.
    Write {
        receiver: BlockReceiver,
        oack: Option<Vec<u8>>,
        proven: bool,
    },
}

/// One TFTP session of the server, for one peer address and port.
pub struct ServerSession {
    half: Half,
    /// The request that opened the session, to recognise the client's retries.
    request: Vec<u8>,
    /// Datagrams that may still be sent before the peer is proven.
    credit: u32,
    /// How long an unproven session waits for its peer, and until when (silently).
    unproven_wait: std::time::Duration,
    unproven_until: Instant,
}

/// Opens a session for `request` (the decoded `datagram`) from the library `store`.
///
/// # Errors
/// The TFTP error to answer with: a bad name (2, or 1 for folders), no such file (1), a
/// refused write (2), an existing file (6), an upload over the limit (3), the mail mode (4).
/// `Err(None)` if the packet is not a request at all (nothing to answer).
pub fn open(
    now: Instant,
    config: &ServerConfig,
    store: &mut dyn Store,
    datagram: &[u8],
) -> Result<ServerSession, Option<TftpError>> {
    let (request, write) = match Packet::decode(datagram) {
        Ok(Packet::Rrq(r)) => (r, false),
        Ok(Packet::Wrq(r)) => (r, true),
        _ => return Err(None),
    };
    if request.mode == Mode::Mail {
        return Err(Some(TftpError::new(
            TftpCode::IllegalOperation,
            "mail mode is not supported",
        )));
    }
    let name = library_name(request.filename)?;
    let half = if write {
        if !config.allow_write {
            return Err(Some(TftpError::new(
                TftpCode::AccessViolation,
                "uploads are not allowed on this server",
            )));
        }
        let granted = negotiate(request.options, Direction::Write, &config.policy)?;
        let announced = granted.tsize.unwrap_or(0);
        let sink = store
            .create(name.as_bytes(), announced, config.overwrite)
            .map_err(|r| TftpError::from_refusal(&r))?;
        write_half(now, config, &request, &granted, sink)
    } else {
        let refused = |r| TftpError::from_refusal(&r);
        let info = store.inspect(name.as_bytes()).map_err(refused)?;
        let source = store.open(name.as_bytes(), &info).map_err(refused)?;
        read_half(now, config, &request, source, info.size)?
    };
    Ok(ServerSession::new(half, datagram, now, config))
}

fn write_half(
    now: Instant,
    config: &ServerConfig,
    request: &Request<'_>,
    granted: &Granted,
    sink: Box<dyn Sink>,
) -> Half {
    Half::Write {
        oack: oack_bytes(granted),
        receiver: BlockReceiver::new(
            now,
            &config.timing,
            granted,
            request.mode == Mode::Netascii,
            sink,
            config.policy.max_upload,
            false,
        ),
        proven: false,
    }
}

fn oack_bytes(granted: &Granted) -> Option<Vec<u8>> {
    granted.oack().map(|o| o.as_bytes().to_vec())
}

fn read_half(
    now: Instant,
    config: &ServerConfig,
    request: &Request<'_>,
    source: Box<dyn Source>,
    size: u64,
) -> Result<Half, TftpError> {
    let netascii = request.mode == Mode::Netascii;
    let granted = negotiate(
        request.options,
        Direction::Read { size, netascii },
        &config.policy,
    )?;
    let oack = oack_bytes(&granted);
    Ok(Half::Read {
        awaiting_ack0: oack.is_some(),
        oack,
        oack_sent_at: None,
        oack_sends: 0,
        sender: BlockSender::new(now, &config.timing, &granted, netascii, source),
        proven: false,
    })
}

impl ServerSession {
    fn new(half: Half, request: &[u8], now: Instant, config: &ServerConfig) -> Self {
        Self {
            half,
            request: request.to_vec(),
            credit: 1,
            unproven_wait: config.timing.timeout * UNPROVEN_WAIT_FACTOR,
            unproven_until: crate::proto::session::deadline(
                now,
                config.timing.timeout * UNPROVEN_WAIT_FACTOR,
            ),
        }
    }

    /// The session of a read whose peer just proved its address at `now` by acknowledging
    /// the first packet of `terms` (the OACK, or block 1): it goes on from there.
    pub fn proven_read(
        now: Instant,
        config: &Config,
        terms: &TftpTerms,
        source: Box<dyn Source>,
    ) -> Self {
        let mut sender = BlockSender::new(now, config, &terms.granted, terms.netascii, source);
        let once = terms.first_sends == 1;
        match terms.first {
            First::Block1 => {
                // The front door sent block 1 and the peer acknowledged it: rebuild it (to
                // know where block 2 starts) as sent then, and take the acknowledgement. Sent
                // more than once (the request was repeated), it is a retransmission: Karn's
                // rule takes no round trip from its ACK.
                let mut scratch = vec![0u8; super::wire::MAX_PACKET];
                let _ = sender.poll_transmit(terms.first_sent, &mut scratch);
                if !once {
                    sender.resend_first();
                    let _ = sender.poll_transmit(terms.first_sent, &mut scratch);
                }
                sender.handle_ack(now, 1);
            }
            _ if once => sender.sample_rtt(now.saturating_duration_since(terms.first_sent)),
            _ => {}
        }
        Self::proven(
            Half::Read {
                sender,
                oack: None,
                awaiting_ack0: false,
                oack_sent_at: None,
                oack_sends: 0,
                proven: true,
            },
            now,
        )
    }

    /// The session of a write whose peer just proved its address (its DATA 1, which the
    /// caller hands the session next), into `sink`, at most `max` bytes.
    pub fn proven_write(
        now: Instant,
        config: &Config,
        terms: &TftpTerms,
        sink: Box<dyn Sink>,
        max: Option<u64>,
    ) -> Self {
        let mut receiver = BlockReceiver::new(
            now,
            config,
            &terms.granted,
            terms.netascii,
            sink,
            max,
            false,
        );
        if terms.first_sends == 1 {
            receiver.sample_rtt(now.saturating_duration_since(terms.first_sent));
        }
        Self::proven(
            Half::Write {
                receiver,
                oack: None,
                proven: true,
            },
            now,
        )
    }

    fn proven(half: Half, now: Instant) -> Self {
        Self {
            half,
            request: Vec::new(),
            credit: 0,
            unproven_wait: std::time::Duration::ZERO,
            unproven_until: now,
        }
    }

    /// The index of the last block acknowledged of a completed upload (its final ACK, which
    /// a peer whose ACK was lost asks for again by repeating the block), if it is one.
    pub fn final_block(&self) -> Option<u64> {
        match &self.half {
            Half::Write { receiver, .. } if self.outcome() == Some(&Outcome::Complete) => {
                Some(receiver.last_block())
            }
            _ => None,
        }
    }

    /// A read session for `request` served from `source` of `size` bytes (for drivers
    /// that open files themselves, and tests).
    ///
    /// # Errors
    /// As [`open`], for what the request itself asks.
    pub fn read(
        now: Instant,
        config: &ServerConfig,
        request_datagram: &[u8],
        source: Box<dyn Source>,
        size: u64,
    ) -> Result<Self, Option<TftpError>> {
        let Ok(Packet::Rrq(request)) = Packet::decode(request_datagram) else {
            return Err(None);
        };
        Ok(Self::new(
            read_half(now, config, &request, source, size)?,
            request_datagram,
            now,
            config,
        ))
    }

    /// A write session for `request` received into `sink` (drivers, tests).
    ///
    /// # Errors
    /// As [`open`], for what the request itself asks.
    pub fn write(
        now: Instant,
        config: &ServerConfig,
        request_datagram: &[u8],
        sink: Box<dyn Sink>,
    ) -> Result<Self, Option<TftpError>> {
        let Ok(Packet::Wrq(request)) = Packet::decode(request_datagram) else {
            return Err(None);
        };
        let granted = negotiate(request.options, Direction::Write, &config.policy)?;
        Ok(Self::new(
            write_half(now, config, &request, &granted, sink),
            request_datagram,
            now,
            config,
        ))
    }

    /// Whether the peer has answered what was sent to it (an ACK of the OACK or of a
    /// block; DATA 1 of an upload).
    pub fn is_proven(&self) -> bool {
        match &self.half {
            Half::Read { proven, .. } | Half::Write { proven, .. } => *proven,
        }
    }

    /// Whether this session receives an upload.
    pub fn is_upload(&self) -> bool {
        matches!(self.half, Half::Write { .. })
    }

    /// Handles one datagram from the session's peer. A repeat of the opening request earns
    /// one more answer while the peer is unproven; anything that makes no sense here (a
    /// stray or malformed datagram, an ACK after the end, an ACK of an ERROR) changes
    /// nothing and sends nothing.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(packet) = Packet::decode(datagram) else {
            self.note_ignored();
            return;
        };
        if matches!(packet, Packet::Rrq(_) | Packet::Wrq(_)) {
            if datagram == self.request && !self.is_proven() && self.outcome().is_none() {
                self.credit += 1;
                self.unproven_until = crate::proto::session::deadline(now, self.unproven_wait);
                self.resend_first();
            } else {
                self.note_ignored();
            }
            return;
        }
        match (&mut self.half, packet) {
            (
                Half::Read {
                    sender,
                    awaiting_ack0,
                    oack_sent_at,
                    oack_sends,
                    proven,
                    ..
                },
                Packet::Ack { block },
            ) => {
                if *awaiting_ack0 {
                    if block == 0 && *oack_sends > 0 {
                        *awaiting_ack0 = false;
                        *proven = true;
                        if let (Some(sent), 1) = (*oack_sent_at, *oack_sends) {
                            sender.sample_rtt(now.saturating_duration_since(sent));
                        }
                    } else {
                        sender.note_ignored();
                    }
                } else if sender.handle_ack(now, block) {
                    *proven = true;
                }
            }
            (Half::Read { sender, .. }, Packet::Error { code, text }) => {
                sender.handle_error(code, text)
            }
            (
                Half::Write {
                    receiver, proven, ..
                },
                Packet::Data { block, data },
            ) => {
                // DATA 1 answers our ACK 0 or OACK: the peer is there, even if the block
                // turns out to be bad (then it hears why).
                if receiver.handle_data(now, block, data) || block == 1 {
                    *proven = true;
                }
            }
            (Half::Write { receiver, .. }, Packet::Error { code, text }) => {
                receiver.handle_error(code, text)
            }
            _ => self.note_ignored(),
        }
    }

    fn note_ignored(&mut self) {
        match &mut self.half {
            Half::Read { sender, .. } => sender.note_ignored(),
            Half::Write { receiver, .. } => receiver.note_ignored(),
        }
    }

    /// The first answer is due again (the request was repeated).
    fn resend_first(&mut self) {
        match &mut self.half {
            Half::Read {
                sender,
                awaiting_ack0,
                ..
            } if !*awaiting_ack0 => sender.resend_first(),
            // The OACK, ACK 0 or WRQ's OACK is due again by the credit alone.
            _ => {}
        }
    }

    /// Fires due timers; spurious calls are harmless. An unproven session never
    /// retransmits: at its deadline it ends, silently.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_proven() {
            if now >= self.unproven_until {
                self.credit = 0;
                match &mut self.half {
                    Half::Read { sender, .. } => sender.expire(now),
                    Half::Write { receiver, .. } => receiver.expire(now),
                }
            }
            return;
        }
        match &mut self.half {
            Half::Read { sender, .. } => sender.handle_timeout(now),
            Half::Write { receiver, .. } => receiver.handle_timeout(now),
        }
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`super::wire::MAX_PACKET`] bytes) and returns its length, or `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let proven = self.is_proven();
        if !proven && self.credit == 0 {
            return None;
        }
        let len = match &mut self.half {
            Half::Read {
                sender,
                oack,
                awaiting_ack0,
                oack_sent_at,
                oack_sends,
                ..
            } => {
                if *awaiting_ack0 && sender.outcome().is_none() {
                    // Only the credit lets an OACK out: one per request received.
                    let options = oack.as_deref().and_then(|o| Options::new(o).ok())?;
                    oack_sent_at.get_or_insert(now);
                    *oack_sends += 1;
                    Some(Packet::Oack(options).encode(buf))
                } else {
                    sender.poll_transmit(now, buf)
                }
            }
            Half::Write {
                receiver,
                oack,
                proven,
            } => {
                if !*proven && receiver.outcome().is_none() {
                    let packet = match oack.as_deref().and_then(|o| Options::new(o).ok()) {
                        Some(options) => Packet::Oack(options),
                        None => Packet::Ack { block: 0 },
                    };
                    Some(packet.encode(buf))
                } else {
                    receiver.poll_transmit(now, buf)
                }
            }
        }?;
        if !proven {
            self.credit -= 1;
        }
        Some(len)
    }

    /// The next deadline, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_proven() {
            return self.outcome().is_none().then_some(self.unproven_until);
        }
        match &self.half {
            Half::Read { sender, .. } => sender.poll_timeout(),
            Half::Write { receiver, .. } => receiver.poll_timeout(),
        }
    }

    /// Whether a datagram is waiting.
    pub fn wants_transmit(&self) -> bool {
        if !self.is_proven() && self.credit == 0 {
            return false;
        }
        match &self.half {
            Half::Read {
                sender,
                awaiting_ack0,
                ..
            } => (*awaiting_ack0 && sender.outcome().is_none()) || sender.wants_transmit(),
            Half::Write {
                receiver, proven, ..
            } => (!*proven && receiver.outcome().is_none()) || receiver.wants_transmit(),
        }
    }

    /// Whether the session can be dropped.
    pub fn is_finished(&self) -> bool {
        if !self.is_proven() && self.credit == 0 && self.outcome().is_some() {
            // Whatever it would still say goes unsaid: the peer never showed up.
            return true;
        }
        match &self.half {
            Half::Read { sender, .. } => sender.is_finished(),
            Half::Write { receiver, .. } => receiver.is_finished(),
        }
    }

    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.half {
            Half::Read { sender, .. } => sender.outcome(),
            Half::Write { receiver, .. } => receiver.outcome(),
        }
    }

    /// Ends the session, telling the peer why (shutdown); an upload is discarded. A peer
    /// never proven is told nothing.
    pub fn abort(&mut self, code: TftpCode, text: &str) {
        let now_silent = !self.is_proven();
        match &mut self.half {
            Half::Read { sender, .. } => sender.abort(code, text),
            Half::Write { receiver, .. } => receiver.abort(code, text),
        }
        if now_silent {
            self.credit = 0;
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        match &self.half {
            Half::Read { sender, .. } => sender.stats(),
            Half::Write { receiver, .. } => receiver.stats(),
        }
    }
}
