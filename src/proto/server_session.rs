//! A server's session, whichever protocol opened it: a udpft [`Transfer`] or a TFTP session
//! ([`crate::tftp::ServerSession`]). The front door opens both the same way (after the peer
//! proved its address) and every model drives both through this one type, so a second
//! protocol on the same port is a second decoder at the door, not a second server.

use super::sender::Out;
use super::session::{Outcome, Stats};
use super::transfer::Transfer;
use super::wire::{ErrorCode, Message};
use super::WindowStats;
use crate::tftp::{ServerSession as TftpSession, TftpCode};
use std::time::Instant;

/// A datagram for a session, as the front door hands it over.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A udpft datagram, already decoded.
    Udpft(Message<'a>),
    /// A TFTP datagram, raw (the session decodes it).
    Tftp(&'a [u8]),
}

/// One live session of a server.
// A session is built once and stays where its driver put it: the size of the larger
// variant costs nothing on the path of a datagram.
#[allow(clippy::large_enum_variant)]
pub enum ServerSession {
    /// The udpft protocol.
    Udpft(Transfer),
    /// TFTP.
    Tftp(Box<TftpSession>),
}

impl ServerSession {
    /// Handles one datagram for this session (one of the other protocol is ignored).
    pub fn handle(&mut self, now: Instant, input: &Input<'_>) {
        match (self, input) {
            (Self::Udpft(t), Input::Udpft(message)) => t.handle_message(now, message),
            (Self::Tftp(t), Input::Tftp(bytes)) => t.handle_datagram(now, bytes),
            _ => {}
        }
    }

    /// Handles one raw datagram for this session (drivers that hand raw bytes to the
    /// thread or process that runs the session).
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        match self {
            Self::Udpft(t) => {
                if let Ok(message) = Message::decode(bytes) {
                    if message.session() == t.session() {
                        t.handle_message(now, &message);
                    }
                }
            }
            Self::Tftp(t) => t.handle_datagram(now, bytes),
        }
    }

    /// Holds a windowed udpft sender to its share of a busy server loop, as one of its
    /// `sessions` (protocol.md §21.4); TFTP's window is the client's to choose.
    pub fn share_loop(&mut self, sessions: u32) {
        if let Self::Udpft(t) = self {
            t.share_loop(sessions);
        }
    }

    /// Fires due timers; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            Self::Udpft(t) => t.handle_timeout(now),
            Self::Tftp(t) => t.handle_timeout(now),
        }
    }

    /// The next datagram to send, or `None`: encoded into `buf` (at least
    /// [`super::wire::MAX_DATAGRAM`] long), or, for a udpft sender's Data, handed out from
    /// where it was read and sealed (no copy).
    #[must_use]
    pub fn poll_transmit<'a>(&'a mut self, now: Instant, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let out = self.prepare_transmit(now, buf)?;
        Some(self.datagram(out, buf))
    }

    /// Decides the next datagram to send without handing it out yet (for a caller that must
    /// do its own bookkeeping first): see [`ServerSession::datagram`].
    pub(crate) fn prepare_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Out> {
        match self {
            Self::Udpft(t) => t.prepare_transmit(now, buf),
            Self::Tftp(t) => t.poll_transmit(now, buf).map(Out::Buf),
        }
    }

    /// The bytes of a datagram [`ServerSession::prepare_transmit`] produced.
    pub(crate) fn datagram<'a>(&'a self, out: Out, buf: &'a [u8]) -> &'a [u8] {
        match (self, out) {
            (Self::Udpft(t), out) => t.datagram(out, buf),
            (Self::Tftp(_), Out::Buf(len)) => &buf[..len],
            (Self::Tftp(_), Out::Kept(_)) => &[],
        }
    }

    /// The next deadline, if a timer runs.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::Udpft(t) => t.poll_timeout(),
            Self::Tftp(t) => t.poll_timeout(),
        }
    }

    /// Whether a datagram (or deferred work) waits for [`ServerSession::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        match self {
            Self::Udpft(t) => t.wants_transmit(),
            Self::Tftp(t) => t.wants_transmit(),
        }
    }

    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            Self::Udpft(t) => t.outcome(),
            Self::Tftp(t) => t.outcome(),
        }
    }

    /// Ends the session, telling the peer why (in its protocol's terms).
    pub fn abort(&mut self, code: ErrorCode, text: &str) {
        match self {
            Self::Udpft(t) => t.abort(code, text),
            Self::Tftp(t) => t.abort(TftpCode::from_udpft(code), text),
        }
    }

    /// File bytes moved so far (counting a resumed prefix), for the front door's judgement
    /// of slow sessions.
    pub fn progress(&self) -> u64 {
        match self {
            Self::Udpft(t) => t.progress(),
            Self::Tftp(t) => t.stats().bytes,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        match self {
            Self::Udpft(t) => t.stats(),
            Self::Tftp(t) => t.stats(),
        }
    }

    /// The last block of a completed TFTP upload, whose ACK a tombstone repeats.
    pub fn final_block(&self) -> Option<u64> {
        match self {
            Self::Udpft(_) => None,
            Self::Tftp(t) => t.final_block(),
        }
    }
}

/// How a session ended, as its driver tells the front door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// The outcome (`None`: it ended without one, its thread or process died).
    pub outcome: Option<Outcome>,
    /// File bytes moved.
    pub bytes: u64,
    /// The last block of a completed TFTP upload.
    pub final_block: Option<u64>,
    /// What the session's congestion window did, if it was a windowed sender (zero
    /// otherwise, and from the fork model's children, whose reports do not carry it).
    pub window: WindowStats,
}

impl End {
    /// The end of `session`.
    pub fn of(session: &ServerSession) -> Self {
        Self {
            outcome: session.outcome().cloned(),
            bytes: session.stats().bytes,
            final_block: session.final_block(),
            window: session.stats().window,
        }
    }
}

/// Whether a server session is over: it has an outcome and nothing left to send. A completed
/// upload does not linger (its final acknowledgement is out; the front door's tombstone
/// answers a repeat), so its thread, process or slot is free at once.
pub fn server_done(session: &ServerSession) -> bool {
    session.outcome().is_some() && !session.wants_transmit()
}
