//! The server's counters: datagrams in and out, rejects by kind, sessions by outcome, and
//! what the front door dropped and why. Every model keeps the same counters, since every
//! model drives the same front door.

use super::session::Outcome;
use super::wire::DecodeError;

/// Counters of a server's life, shown in its statistics line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Malformed datagrams, by [`DecodeError::index`].
    pub rejected: [u64; DecodeError::COUNT],
    /// Well-formed datagrams for no live session.
    pub unknown_session: u64,
    /// Well-formed datagrams that made no sense here (an Accept sent to a server...).
    pub unexpected: u64,
    /// Sessions opened (the peer proved its address and the store opened the file).
    pub opened: u64,
    /// Sessions that ended complete.
    pub completed: u64,
    /// Sessions that failed.
    pub failed: u64,
    /// Requests refused (no such file, busy...).
    pub refused: u64,
    /// Error replies not sent because the reply queue was full.
    pub replies_dropped: u64,
    /// Datagrams from addresses the access list refuses (dropped without a reply).
    pub denied: u64,
    /// Requests with token 0 (dropped: a reply could not be told from another request's).
    pub zero_token: u64,
    /// Peers that proved their address, opening a session.
    pub proven: u64,
    /// Unproven requests forgotten to make room for newer ones.
    pub unproven_forgotten: u64,
    /// Slow sessions that yielded their slot to a new peer when the server was full.
    pub yielded: u64,
    /// Replies to strangers not sent because they came too fast.
    pub rate_limited: u64,
    /// TFTP datagrams that did not decode.
    pub tftp_malformed: u64,
    /// Replies to unproven TFTP peers not sent: over the byte budget of their prefix or of
    /// the server.
    pub tftp_over_budget: u64,
}

impl ServerStats {
    /// All malformed datagrams.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// One line for logs: `received=… sent=… sessions opened=… …  rejected bad_crc=…`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "received={} sent={} opened={} completed={} failed={} refused={} unknown_session={} unexpected={} rejected={}",
            self.received,
            self.sent,
            self.opened,
            self.completed,
            self.failed,
            self.refused,
            self.unknown_session,
            self.unexpected,
            self.rejected_total()
        );
        for (label, n) in [
            ("denied", self.denied),
            ("zero_token", self.zero_token),
            ("unproven_forgotten", self.unproven_forgotten),
            ("yielded", self.yielded),
            ("rate_limited", self.rate_limited),
            ("tftp_malformed", self.tftp_malformed),
            ("tftp_over_budget", self.tftp_over_budget),
            ("replies_dropped", self.replies_dropped),
        ] {
            if n > 0 {
                line.push_str(&format!(" {label}={n}"));
            }
        }
        for (i, n) in self.rejected.iter().enumerate() {
            if *n > 0 {
                line.push_str(&format!(" {}={n}", DecodeError::label(i)));
            }
        }
        line
    }

    /// Adds another table's counters (for servers with several loops).
    pub fn add(&mut self, other: &Self) {
        self.received += other.received;
        self.sent += other.sent;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
        self.unknown_session += other.unknown_session;
        self.unexpected += other.unexpected;
        self.opened += other.opened;
        self.completed += other.completed;
        self.failed += other.failed;
        self.refused += other.refused;
        self.replies_dropped += other.replies_dropped;
        self.denied += other.denied;
        self.zero_token += other.zero_token;
        self.proven += other.proven;
        self.unproven_forgotten += other.unproven_forgotten;
        self.yielded += other.yielded;
        self.rate_limited += other.rate_limited;
        self.tftp_malformed += other.tftp_malformed;
        self.tftp_over_budget += other.tftp_over_budget;
    }

    /// Counts a finished session by its outcome.
    pub fn count_outcome(&mut self, outcome: Option<&Outcome>) {
        match outcome {
            Some(Outcome::Complete) => self.completed += 1,
            _ => self.failed += 1,
        }
    }
}
