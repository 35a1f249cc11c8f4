//! Why a datagram is rejected: [`DecodeError`], one variant per check of protocol.md §3.1
//! in the order they run, and for the last check, [`Rule`], the payload rule that failed.

use super::codes::Kind;
use super::OVERHEAD;
use std::fmt;

/// The payload rule (protocol.md §4) a [`DecodeError::BadPayload`] broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The payload is shorter than its type's fixed fields.
    Short,
    /// Bytes follow the fixed fields of a type that has nothing after them.
    Long,
    /// A name field is empty.
    EmptyName,
    /// A name field is longer than `MAX_NAME_LEN`.
    LongName,
    /// An error text is longer than `MAX_ERROR_TEXT`.
    LongText,
    /// A Data payload is empty.
    EmptyData,
    /// A Put sets a flag bit this version does not define.
    UnknownFlags,
    /// A Data is numbered 0 (message 0 is the Accept).
    ZeroSeq,
    /// A type without a sequence number (requests, Accept, Error) has a non-zero `seq`.
    NonZeroSeq,
    /// A version-2 window outside `2 ..= MAX_WINDOW` (a window of 1 is version 1).
    BadWindow,
    /// A selective-acknowledgment bitmap longer than `MAX_BITMAP` bytes.
    LongBitmap,
    /// A selective-acknowledgment bitmap that ends in a zero byte (it has one encoding).
    PaddedBitmap,
}

impl Rule {
    /// What the rule says, for logs.
    pub fn text(self) -> &'static str {
        match self {
            Self::Short => "shorter than its fixed fields",
            Self::Long => "bytes after its fixed fields",
            Self::EmptyName => "empty name",
            Self::LongName => "name longer than 255 bytes",
            Self::LongText => "text longer than 512 bytes",
            Self::EmptyData => "no file bytes",
            Self::UnknownFlags => "undefined flag bits set",
            Self::ZeroSeq => "numbered 0",
            Self::NonZeroSeq => "non-zero seq on a type without one",
            Self::BadWindow => "window outside 2..=256",
            Self::LongBitmap => "bitmap longer than 32 bytes",
            Self::PaddedBitmap => "bitmap ends in a zero byte",
        }
    }
}

/// Why a datagram was rejected. One variant per malformed form, in the order checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than a header plus trailer.
    TooShort,
    /// Does not start with `UF`.
    BadMagic,
    /// The CRC32 trailer does not match the bytes before it.
    BadCrc,
    /// A version this implementation does not speak (with a valid CRC).
    UnsupportedVersion(u8),
    /// A message type byte this version does not define.
    UnknownType(u8),
    /// The length field claims more payload than the datagram holds.
    LengthMismatch,
    /// The datagram holds bytes past the payload the length field declares.
    TrailingBytes,
    /// The payload of a message of this type breaks this rule.
    BadPayload(Kind, Rule),
}

impl DecodeError {
    /// How many kinds of rejection there are (for counter arrays).
    pub const COUNT: usize = 8;

    /// A dense index for counting rejections by kind.
    pub fn index(self) -> usize {
        match self {
            Self::TooShort => 0,
            Self::BadMagic => 1,
            Self::UnsupportedVersion(_) => 2,
            Self::BadCrc => 3,
            Self::UnknownType(_) => 4,
            Self::LengthMismatch => 5,
            Self::TrailingBytes => 6,
            Self::BadPayload(..) => 7,
        }
    }

    /// The label for the counter at `index`.
    pub fn label(index: usize) -> &'static str {
        [
            "too_short",
            "bad_magic",
            "bad_version",
            "bad_crc",
            "unknown_type",
            "length_mismatch",
            "trailing_bytes",
            "bad_payload",
        ]
        .get(index)
        .copied()
        .unwrap_or("?")
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => write!(f, "datagram shorter than {OVERHEAD} bytes"),
            Self::BadMagic => f.write_str("not a udpft datagram (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Self::BadCrc => f.write_str("CRC32 mismatch"),
            Self::UnknownType(t) => write!(f, "unknown message type {t}"),
            Self::LengthMismatch => f.write_str("length field exceeds the datagram"),
            Self::TrailingBytes => f.write_str("bytes after the declared payload"),
            Self::BadPayload(kind, rule) => {
                write!(f, "malformed {} payload: {}", kind.name(), rule.text())
            }
        }
    }
}

impl std::error::Error for DecodeError {}
