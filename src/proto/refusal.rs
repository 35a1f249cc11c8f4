//! Refusals: a request the server will not serve (or a session it ends before it began), the
//! code and text the peer is told, and the rule that keeps such a reply small.
//!
//! A reply to a peer that has not proven its address may be at most
//! [`AMPLIFICATION_FACTOR`] times the datagram it answers (the QUIC rule, RFC 9000 §8.1), so
//! that spoofed requests cannot turn the server into an amplifier; texts are cut to fit.

use super::wire::{clip_text, clip_to, ErrorCode};

/// How many bytes a server may send to a peer whose address is not yet proven, per byte
/// received from it.
pub const AMPLIFICATION_FACTOR: usize = 3;

/// A request the server will not serve, and why; sent to the peer as an Error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The wire code.
    pub code: ErrorCode,
    /// What the client's user reads.
    pub text: String,
}

impl Refusal {
    /// A refusal with `code` and `text`.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    /// The server cannot take another session now: `why`.
    pub fn busy(why: &str) -> Self {
        Self::new(
            ErrorCode::Busy,
            format!("server busy: {why}, try again later"),
        )
    }

    /// The server is draining for shutdown.
    pub fn shutting_down() -> Self {
        Self::new(ErrorCode::ShuttingDown, "server is shutting down")
    }

    /// A datagram named a session this peer does not have.
    pub fn unknown_session() -> Self {
        Self::new(
            ErrorCode::UnknownSession,
            "no such session (it may have ended)",
        )
    }

    /// A request of protocol version `version`, which this server does not speak.
    pub fn unsupported_version(version: u8) -> Self {
        Self::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {version} is not supported; this server speaks versions {} and {}",
                super::wire::VERSION,
                super::wire::VERSION_WINDOWED
            ),
        )
    }
}

/// The longest prefix of `text` such that an Error datagram carrying it stays within
/// [`AMPLIFICATION_FACTOR`] times `received` bytes (the datagram it answers).
pub fn clip_error_text(text: &str, received: usize) -> &str {
    let budget = received
        .saturating_mul(AMPLIFICATION_FACTOR)
        .saturating_sub(super::wire::OVERHEAD + 2);
    clip_to(clip_text(text), budget)
}
