//! The server's TFTP sessions: a read request (RRQ) served from a [`Source`], a write
//! request (WRQ) received into a [`Sink`], each for one peer address and port, once that
//! peer has proven it receives at its address.
//!
//! **No amplification** is the front door's to keep, not the session's: the front door
//! ([`crate::proto::endpoint`], judging with [`super::admit`]) answers a request with its
//! one first packet (the OACK, block 1 of an RRQ without options, or the WRQ's ACK 0),
//! one reply per request datagram and nothing on any timer, within a byte budget for
//! unproven peers per source prefix and in all, and keeps only a grant until the peer's
//! acknowledgement proves it (protocol.md §19.6). Only then does a session exist:
//! [`ServerSession::proven_read`] and [`ServerSession::proven_write`] go on from that first
//! packet, and from there retransmission, windows, rollover, netascii, the end of a transfer
//! and the limits of an upload are the session's halves' ([`BlockSender`],
//! [`BlockReceiver`]). Every reply goes out from the one listening port (single-port TFTP,
//! as dnsmasq's `--tftp-single-port`); the front door keys sessions by the peer's address and
//! port, and its tombstone answers a completed upload's repeated final block.

use super::admit::{First, TftpTerms};
use super::codes::TftpCode;
use super::options::Policy;
use super::recv::BlockReceiver;
use super::send::BlockSender;
use super::wire::Packet;
use crate::proto::session::{Config, Outcome, Sink, Source, Stats};
use std::time::Instant;

/// How a server runs TFTP, as the tests that start one describe it: the timers, what option
/// negotiation grants, and whether uploads are taken. A server runs by the front door's
/// [`super::admit::TftpPolicy`] and the session [`Config`] these become.
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
    /// Serving a read: blocks.
    Read(BlockSender),
    /// Receiving a write: blocks, acknowledged.
    Write(BlockReceiver),
}

/// One TFTP session of the server, for one peer address and port that proved itself.
pub struct ServerSession {
    half: Half,
}

impl ServerSession {
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
        Self {
            half: Half::Read(sender),
        }
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
        Self {
            half: Half::Write(receiver),
        }
    }

    /// The index of the last block acknowledged of a completed upload (its final ACK, which
    /// a peer whose ACK was lost asks for again by repeating the block), if it is one.
    pub fn final_block(&self) -> Option<u64> {
        match &self.half {
            Half::Write(receiver) if self.outcome() == Some(&Outcome::Complete) => {
                Some(receiver.last_block())
            }
            _ => None,
        }
    }

    /// Handles one datagram from the session's peer. Anything that makes no sense here (a
    /// request, which the front door answers; a stray or malformed datagram; an ACK after
    /// the end, or of an ERROR) changes nothing and sends nothing.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        match (&mut self.half, Packet::decode(datagram)) {
            (Half::Read(sender), Ok(Packet::Ack { block })) => {
                sender.handle_ack(now, block);
            }
            (Half::Read(sender), Ok(Packet::Error { code, text })) => {
                sender.handle_error(code, text)
            }
            (Half::Write(receiver), Ok(Packet::Data { block, data })) => {
                receiver.handle_data(now, block, data);
            }
            (Half::Write(receiver), Ok(Packet::Error { code, text })) => {
                receiver.handle_error(code, text)
            }
            (Half::Read(sender), _) => sender.note_ignored(),
            (Half::Write(receiver), _) => receiver.note_ignored(),
        }
    }

    /// Fires due timers; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.half {
            Half::Read(sender) => sender.handle_timeout(now),
            Half::Write(receiver) => receiver.handle_timeout(now),
        }
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`super::wire::MAX_PACKET`] bytes) and returns its length, or `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        match &mut self.half {
            Half::Read(sender) => sender.poll_transmit(now, buf),
            Half::Write(receiver) => receiver.poll_transmit(now, buf),
        }
    }

    /// The next deadline, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.half {
            Half::Read(sender) => sender.poll_timeout(),
            Half::Write(receiver) => receiver.poll_timeout(),
        }
    }

    /// Whether a datagram is waiting.
    pub fn wants_transmit(&self) -> bool {
        match &self.half {
            Half::Read(sender) => sender.wants_transmit(),
            Half::Write(receiver) => receiver.wants_transmit(),
        }
    }

    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.half {
            Half::Read(sender) => sender.outcome(),
            Half::Write(receiver) => receiver.outcome(),
        }
    }

    /// Ends the session, telling the peer why (shutdown, a slow session yielding its slot);
    /// an upload is discarded.
    pub fn abort(&mut self, code: TftpCode, text: &str) {
        match &mut self.half {
            Half::Read(sender) => sender.abort(code, text),
            Half::Write(receiver) => receiver.abort(code, text),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        match &self.half {
            Half::Read(sender) => sender.stats(),
            Half::Write(receiver) => receiver.stats(),
        }
    }
}
