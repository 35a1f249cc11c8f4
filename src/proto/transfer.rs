//! One transfer, whichever way its bytes flow: the [`Plan`] both ends agree on in the
//! handshake, and [`Transfer`], the single type through which a server session and a client
//! session drive their [`Sender`] or [`Receiver`] half.
//!
//! A plan is plain data: the session id, the file's size, where the transfer starts, the
//! chunk size and how the transfer opens. Everything a half needs to start comes from it, so
//! that adding a negotiated parameter means adding a field here, not an argument to every
//! constructor.

use super::receiver::Receiver;
use super::sender::{Out, Sender};
use super::session::{Config, Outcome, Sink, Source, Stats};
use super::wire::{ErrorCode, Message};
use std::time::Instant;

/// How a half opens the transfer (message 0 of the session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The server's side: message 0 is its Accept, echoing the client's request `token`; it is
    /// sent by the server's sender (download, listing) or receiver (upload).
    Accept {
        /// The client's request token to echo.
        token: u32,
    },
    /// The client's receiving side (download, listing): Ack 0 answers the server's Accept, and
    /// is repeated on a timer until Data 1 arrives.
    AckAccept,
    /// The client's sending side (upload): the server's Accept already arrived, so the first
    /// message is Data 1.
    Data,
}

/// What both ends agreed on for one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The session id, chosen by the server.
    pub session: u32,
    /// The whole file's (or listing's) size in bytes.
    pub size: u64,
    /// The first byte transferred (a resumed download); the bytes before it the receiver
    /// already holds. At most `size`.
    pub offset: u64,
    /// The negotiated chunk size.
    pub chunk: u16,
    /// The granted window: how many message numbers may be open at once (1: stop-and-wait).
    pub window: u16,
    /// How this end opens the transfer.
    pub opening: Opening,
    /// For a receiver that resumes: the CRC32 of the bytes before `offset` it already holds
    /// (0 when `offset` is 0). Unused by a sender.
    pub prefix_crc: u32,
}

/// A transfer in either direction: the one place that delegates to the half at work.
pub enum Transfer {
    /// This end sends the bytes.
    Sending(Sender),
    /// This end receives the bytes.
    Receiving(Receiver),
}

impl Transfer {
    /// A transfer that sends `plan.size` bytes of `source`.
    pub fn send(now: Instant, config: &Config, plan: Plan, source: Box<dyn Source>) -> Self {
        Self::Sending(Sender::new(now, config, plan, source))
    }

    /// A transfer that receives `plan.size` bytes into `sink`.
    pub fn receive(now: Instant, config: &Config, plan: Plan, sink: Box<dyn Sink>) -> Self {
        Self::Receiving(Receiver::new(now, config, plan, sink))
    }

    /// Handles one decoded datagram addressed to this transfer's session.
    pub fn handle_message(&mut self, now: Instant, message: &Message<'_>) {
        match self {
            Self::Sending(s) => s.handle_message(now, message),
            Self::Receiving(r) => r.handle_message(now, message),
        }
    }

    /// Feeds a round trip measured in the handshake (a client's request and its Accept, a
    /// server's Accept and the proof that answers it) to this half's estimator: its first
    /// retransmission timer (or its greeting's) then follows the path instead of
    /// `rto_initial`, and a windowed sender takes it as the path's base round trip, measured
    /// before any data of its own was queued (protocol.md §9.1, §21.2).
    pub fn seed_rtt(&mut self, rtt: std::time::Duration) {
        match self {
            Self::Sending(s) => s.seed_rtt(rtt),
            Self::Receiving(r) => r.seed_rtt(rtt),
        }
    }

    /// Holds a windowed sender to its share of a busy server loop, as one of its
    /// `sessions` (see [`super::sender::Sender::share_loop`]); a receiver has no window to
    /// hold.
    pub fn share_loop(&mut self, sessions: u32) {
        if let Self::Sending(s) = self {
            s.share_loop(sessions);
        }
    }

    /// The driver has sent what was due and is about to wait: a receiver's sink may write
    /// what it deferred ([`super::session::Sink::idle`]). Call it, then send again.
    pub fn idle(&mut self) {
        if let Self::Receiving(r) = self {
            r.idle();
        }
    }

    /// Fires due timers; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            Self::Sending(s) => s.handle_timeout(now),
            Self::Receiving(r) => r.handle_timeout(now),
        }
    }

    /// The next datagram to send, or `None`: encoded into `buf` (at least
    /// [`super::wire::MAX_DATAGRAM`] long), or, for a sender's Data, handed out from where it
    /// was read and sealed (no copy). Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit<'a>(&'a mut self, now: Instant, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let out = self.prepare_transmit(now, buf)?;
        Some(self.datagram(out, buf))
    }

    /// Decides the next datagram to send without handing it out yet (for a caller that must
    /// do its own bookkeeping first): see [`Transfer::datagram`].
    pub(crate) fn prepare_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Out> {
        match self {
            Self::Sending(s) => s.prepare(now, buf),
            Self::Receiving(r) => r.prepare(now, buf).map(Out::Buf),
        }
    }

    /// The bytes of a datagram [`Transfer::prepare_transmit`] produced.
    pub(crate) fn datagram<'a>(&'a self, out: Out, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Self::Sending(s) => s.datagram(out, buf),
            Self::Receiving(_) => match out {
                Out::Buf(len) => &buf[..len],
                Out::Kept(_) => &[],
            },
        }
    }

    /// The next deadline, if a timer runs.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::Sending(s) => s.poll_timeout(),
            Self::Receiving(r) => r.poll_timeout(),
        }
    }

    /// Whether a datagram (or deferred work) waits for [`Transfer::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        match self {
            Self::Sending(s) => s.wants_transmit(),
            Self::Receiving(r) => r.wants_transmit(),
        }
    }

    /// Whether nothing remains to send or wait for.
    pub fn is_finished(&self) -> bool {
        match self {
            Self::Sending(s) => s.is_finished(),
            Self::Receiving(r) => r.is_finished(),
        }
    }

    /// How it ended, once it has (a complete receiver may still linger).
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            Self::Sending(s) => s.outcome(),
            Self::Receiving(r) => r.outcome(),
        }
    }

    /// The session id.
    pub fn session(&self) -> u32 {
        match self {
            Self::Sending(s) => s.session(),
            Self::Receiving(r) => r.session(),
        }
    }

    /// Whether this end receives the bytes.
    pub fn is_receiving(&self) -> bool {
        matches!(self, Self::Receiving(_))
    }

    /// Bytes of the file done so far (acknowledged by the peer, or held), counting a resumed
    /// prefix.
    pub fn progress(&self) -> u64 {
        match self {
            Self::Sending(s) => s.acked_bytes(),
            Self::Receiving(r) => r.received_bytes(),
        }
    }

    /// Ends the transfer from this side, telling the peer why.
    pub fn abort(&mut self, code: ErrorCode, text: &str) {
        match self {
            Self::Sending(s) => s.abort(code, text),
            Self::Receiving(r) => r.abort(code, text),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        match self {
            Self::Sending(s) => s.stats(),
            Self::Receiving(r) => r.stats(),
        }
    }
}
