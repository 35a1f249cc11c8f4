//! The wire format: every udpft datagram, byte by byte, as `protocol.md` specifies it.
//!
//! A datagram is an 18-byte header, a payload of `len` bytes and a 4-byte CRC32 trailer
//! that covers every byte before it. All integers are big-endian ([`NetworkEndian`]).
//!
//! ```text
//!  0      2     3     4          8                 16     18          18+len   22+len
//!  +------+-----+-----+----------+-----------------+------+-- ... --+--------+
//!  | "UF" | ver | type| session  |       seq       | len  | payload |  crc32 |
//!  +------+-----+-----+----------+-----------------+------+-- ... --+--------+
//! ```
//!
//! [`Message::decode`] checks a datagram in a fixed order (size, magic, CRC, version, type,
//! length field, then the payload rules of its type) and returns one [`DecodeError`] per
//! malformed form; it never panics, whatever the input. [`Message::encode`] writes into a
//! caller's buffer, so the hot path allocates nothing.

use byteorder::{ByteOrder, NetworkEndian};
use std::fmt;

/// The two bytes every udpft datagram starts with: ASCII `UF`.
pub const MAGIC: [u8; 2] = *b"UF";
/// The protocol version this implementation speaks.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = field::LEN.end;
/// Bytes after the payload (the CRC32).
pub const TRAILER_LEN: usize = 4;
/// Header plus trailer: what every datagram costs beyond its payload.
pub const OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// The largest UDP payload IPv4 can carry (65535 − 20 IP − 8 UDP).
pub const MAX_DATAGRAM: usize = 65_507;
/// The largest data chunk: the largest datagram less our overhead.
pub const MAX_CHUNK: u16 = (MAX_DATAGRAM - OVERHEAD) as u16;
/// The default chunk: a whole datagram fits a 1500-byte Ethernet MTU over IPv6
/// (1500 − 40 IPv6 − 8 UDP − 22 udpft = 1430), and so over IPv4 too, with no fragmentation.
pub const DEFAULT_CHUNK: u16 = 1430;
/// The smallest chunk a server accepts; smaller requests are raised to it.
pub const MIN_CHUNK: u16 = 64;
/// The longest file name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The longest error text, in bytes.
pub const MAX_ERROR_TEXT: usize = 512;

/// Byte ranges of the header fields.
mod field {
    use std::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..2;
    pub(super) const VERSION: usize = 2;
    pub(super) const TYPE: usize = 3;
    pub(super) const SESSION: Range<usize> = 4..8;
    pub(super) const SEQ: Range<usize> = 8..16;
    pub(super) const LEN: Range<usize> = 16..18;
}

/// The message type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client asks for the library listing.
    List = 1,
    /// Client asks to download a file.
    Get = 2,
    /// Client asks to upload a file.
    Put = 3,
    /// Server opens a session in answer to a request.
    Accept = 4,
    /// One chunk of file (or listing) bytes.
    Data = 5,
    /// The receiver acknowledges the message with this sequence number.
    Ack = 6,
    /// The sender's last message: the whole file's size and CRC32.
    Done = 7,
    /// Either side ends a session, or refuses a request, with a code and a text.
    Error = 8,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::List,
            2 => Self::Get,
            3 => Self::Put,
            4 => Self::Accept,
            5 => Self::Data,
            6 => Self::Ack,
            7 => Self::Done,
            8 => Self::Error,
            _ => return None,
        })
    }

    /// The lower-case name used in logs and statistics.
    pub fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Get => "get",
            Self::Put => "put",
            Self::Accept => "accept",
            Self::Data => "data",
            Self::Ack => "ack",
            Self::Done => "done",
            Self::Error => "error",
        }
    }
}

/// Why a session ended or a request was refused; carried by [`Message::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Anything not covered below.
    Other,
    /// The named file is not in the library.
    NotFound,
    /// The name is not allowed (traversal, separators, hidden, too long, not UTF-8).
    BadName,
    /// Upload refused: the file exists and overwrite was not asked for.
    Exists,
    /// The server cannot take another session now; try again later.
    Busy,
    /// No live session has this id for this peer.
    UnknownSession,
    /// The whole-file checksum did not match: the transfer is void.
    ChecksumMismatch,
    /// The peer stopped answering.
    Timeout,
    /// A file-system error on the side that sends this (disk full, permission...).
    Io,
    /// The request or message made no sense in this state.
    BadRequest,
    /// The datagram's protocol version is not spoken here.
    UnsupportedVersion,
    /// The upload is larger than the server allows.
    TooLarge,
    /// The server does not accept uploads.
    ReadOnly,
    /// The server is shutting down.
    ShuttingDown,
    /// The file changed while it was being sent.
    FileChanged,
    /// The user or the program cancelled the transfer.
    Cancelled,
    /// A code this implementation does not know (kept so it can be shown).
    Unknown(u16),
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Other => 0,
            Self::NotFound => 1,
            Self::BadName => 2,
            Self::Exists => 3,
            Self::Busy => 4,
            Self::UnknownSession => 5,
            Self::ChecksumMismatch => 6,
            Self::Timeout => 7,
            Self::Io => 8,
            Self::BadRequest => 9,
            Self::UnsupportedVersion => 10,
            Self::TooLarge => 11,
            Self::ReadOnly => 12,
            Self::ShuttingDown => 13,
            Self::FileChanged => 14,
            Self::Cancelled => 15,
            Self::Unknown(n) => n,
        }
    }

    /// The code for a number read from the wire.
    pub fn from_u16(n: u16) -> Self {
        match n {
            0 => Self::Other,
            1 => Self::NotFound,
            2 => Self::BadName,
            3 => Self::Exists,
            4 => Self::Busy,
            5 => Self::UnknownSession,
            6 => Self::ChecksumMismatch,
            7 => Self::Timeout,
            8 => Self::Io,
            9 => Self::BadRequest,
            10 => Self::UnsupportedVersion,
            11 => Self::TooLarge,
            12 => Self::ReadOnly,
            13 => Self::ShuttingDown,
            14 => Self::FileChanged,
            15 => Self::Cancelled,
            n => Self::Unknown(n),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Other => "error",
            Self::NotFound => "no such file",
            Self::BadName => "name not allowed",
            Self::Exists => "file exists",
            Self::Busy => "server busy",
            Self::UnknownSession => "unknown session",
            Self::ChecksumMismatch => "checksum mismatch",
            Self::Timeout => "timed out",
            Self::Io => "I/O error",
            Self::BadRequest => "bad request",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::TooLarge => "file too large",
            Self::ReadOnly => "server is read-only",
            Self::ShuttingDown => "server shutting down",
            Self::FileChanged => "file changed during transfer",
            Self::Cancelled => "cancelled",
            Self::Unknown(n) => return write!(f, "error code {n}"),
        };
        f.write_str(text)
    }
}

/// One decoded datagram. Borrowed fields point into the datagram's bytes.
///
/// Requests (`List`, `Get`, `Put`) carry the client's `token` in the header's session
/// field, since no session exists yet; the server's [`Message::Accept`] echoes it and
/// names the new `session`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Ask for the library listing.
    List {
        /// The client's request token.
        token: u32,
        /// The chunk size the client would like.
        chunk: u16,
    },
    /// Ask to download `name`, starting at byte `offset` (0 unless resuming).
    Get {
        /// The client's request token.
        token: u32,
        /// The chunk size the client would like.
        chunk: u16,
        /// First byte wanted; the bytes before it the client already holds.
        offset: u64,
        /// The file name, as raw bytes (the library validates it).
        name: &'a [u8],
    },
    /// Ask to upload `size` bytes as `name`.
    Put {
        /// The client's request token.
        token: u32,
        /// The chunk size the client would like.
        chunk: u16,
        /// The file's exact size.
        size: u64,
        /// Replace an existing file of that name.
        overwrite: bool,
        /// The file name, as raw bytes.
        name: &'a [u8],
    },
    /// The server accepts a request and opens `session`.
    Accept {
        /// The new session id, chosen by the server, unpredictable.
        session: u32,
        /// The request token this answers.
        token: u32,
        /// The negotiated chunk size.
        chunk: u16,
        /// The size of the whole file (or listing).
        size: u64,
        /// The first byte that will be sent (downloads), 0 otherwise.
        offset: u64,
    },
    /// Chunk number `seq` (1-based) of the transfer.
    Data {
        /// The session.
        session: u32,
        /// The chunk number, from 1.
        seq: u64,
        /// The chunk's bytes.
        payload: &'a [u8],
    },
    /// Acknowledges the message numbered `seq` (0 is the Accept).
    Ack {
        /// The session.
        session: u32,
        /// The sequence number acknowledged.
        seq: u64,
    },
    /// The transfer's last message, numbered one past the last chunk.
    Done {
        /// The session.
        session: u32,
        /// One past the last chunk number.
        seq: u64,
        /// The whole file's size.
        size: u64,
        /// CRC32 (IEEE) of the whole file.
        crc: u32,
    },
    /// Ends a session, or refuses a request (then `session` is the request's token).
    Error {
        /// The session or request token.
        session: u32,
        /// Why.
        code: ErrorCode,
        /// A human-readable explanation (UTF-8, not trusted: sanitise before printing).
        text: &'a [u8],
    },
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
    /// A version other than [`VERSION`] (with a valid CRC).
    UnsupportedVersion(u8),
    /// A message type byte this version does not define.
    UnknownType(u8),
    /// The length field claims more payload than the datagram holds.
    LengthMismatch,
    /// The datagram holds bytes past the payload the length field declares.
    TrailingBytes,
    /// The payload does not have the layout its type requires.
    BadPayload(Kind),
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
            Self::BadPayload(_) => 7,
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
            Self::BadPayload(k) => write!(f, "malformed {} payload", k.name()),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Whether a datagram that failed with [`DecodeError::UnsupportedVersion`] is a request
/// (type byte List, Get or Put): the only kind a server answers with a version error, so
/// that no two servers can answer each other's errors forever.
pub fn is_request_type(datagram: &[u8]) -> bool {
    matches!(datagram.get(field::TYPE), Some(1..=3))
}

/// Reads the session field of a datagram that passed [`Message::decode`]'s first checks,
/// without decoding the rest; used to address an error reply. `None` if too short.
pub fn peek_session(datagram: &[u8]) -> Option<u32> {
    datagram.get(field::SESSION).map(NetworkEndian::read_u32)
}

/// A bounds-checked cursor over a payload; every read returns `None` past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(NetworkEndian::read_u16)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(NetworkEndian::read_u32)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(NetworkEndian::read_u64)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Payload sizes of the fixed-layout messages.
const GET_FIXED: usize = 2 + 8;
const PUT_FIXED: usize = 2 + 8 + 1;
const ACCEPT_LEN: usize = 4 + 2 + 8 + 8;
const DONE_LEN: usize = 8 + 4;
const PUT_FLAG_OVERWRITE: u8 = 0x01;

impl<'a> Message<'a> {
    /// Decodes one datagram, checking size, magic, CRC, version, type, length field and
    /// payload layout, in that order.
    ///
    /// # Errors
    /// The first check that fails, as a [`DecodeError`]. Never panics.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        if datagram.len() < OVERHEAD {
            return Err(DecodeError::TooShort);
        }
        if datagram[field::MAGIC] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        // The CRC comes before the version: a bit flipped in the version byte must read as
        // corruption (dropped), not as another protocol version (answered and fatal).
        // Every version keeps the CRC32 trailer over all preceding bytes.
        let (covered, trailer) = datagram.split_at(datagram.len() - TRAILER_LEN);
        if crc32fast::hash(covered) != NetworkEndian::read_u32(trailer) {
            return Err(DecodeError::BadCrc);
        }
        let version = datagram[field::VERSION];
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let type_byte = datagram[field::TYPE];
        let kind = Kind::from_u8(type_byte).ok_or(DecodeError::UnknownType(type_byte))?;
        let declared = usize::from(NetworkEndian::read_u16(&datagram[field::LEN]));
        let actual = covered.len() - HEADER_LEN;
        if declared > actual {
            return Err(DecodeError::LengthMismatch);
        }
        if declared < actual {
            return Err(DecodeError::TrailingBytes);
        }
        let session = NetworkEndian::read_u32(&datagram[field::SESSION]);
        let seq = NetworkEndian::read_u64(&datagram[field::SEQ]);
        let payload = &covered[HEADER_LEN..];
        Self::decode_payload(kind, session, seq, payload).ok_or(DecodeError::BadPayload(kind))
    }

    /// The per-type payload rules; `None` means [`DecodeError::BadPayload`].
    fn decode_payload(kind: Kind, session: u32, seq: u64, payload: &'a [u8]) -> Option<Self> {
        let mut r = Reader { rest: payload };
        let message = match kind {
            Kind::List => Self::List {
                token: session,
                chunk: r.u16()?,
            },
            Kind::Get => Self::Get {
                token: session,
                chunk: r.u16()?,
                offset: r.u64()?,
                name: name_field(r.rest())?,
            },
            Kind::Put => {
                let chunk = r.u16()?;
                let size = r.u64()?;
                let flags = r.u8()?;
                if flags & !PUT_FLAG_OVERWRITE != 0 {
                    return None;
                }
                Self::Put {
                    token: session,
                    chunk,
                    size,
                    overwrite: flags & PUT_FLAG_OVERWRITE != 0,
                    name: name_field(r.rest())?,
                }
            }
            Kind::Accept => Self::Accept {
                session,
                token: r.u32()?,
                chunk: r.u16()?,
                size: r.u64()?,
                offset: r.u64()?,
            },
            Kind::Data => {
                if seq == 0 || payload.is_empty() {
                    return None;
                }
                Self::Data {
                    session,
                    seq,
                    payload: r.rest(),
                }
            }
            Kind::Ack => Self::Ack { session, seq },
            Kind::Done => Self::Done {
                session,
                seq,
                size: r.u64()?,
                crc: r.u32()?,
            },
            Kind::Error => {
                let code = ErrorCode::from_u16(r.u16()?);
                let text = r.rest();
                if text.len() > MAX_ERROR_TEXT {
                    return None;
                }
                Self::Error {
                    session,
                    code,
                    text,
                }
            }
        };
        // Sequence numbers only mean something on Data, Ack and Done.
        let seq_allowed = matches!(kind, Kind::Data | Kind::Ack | Kind::Done);
        (r.is_empty() && (seq_allowed || seq == 0)).then_some(message)
    }

    /// The message type.
    pub fn kind(&self) -> Kind {
        match self {
            Self::List { .. } => Kind::List,
            Self::Get { .. } => Kind::Get,
            Self::Put { .. } => Kind::Put,
            Self::Accept { .. } => Kind::Accept,
            Self::Data { .. } => Kind::Data,
            Self::Ack { .. } => Kind::Ack,
            Self::Done { .. } => Kind::Done,
            Self::Error { .. } => Kind::Error,
        }
    }

    /// The header's session field (the token, for requests).
    pub fn session(&self) -> u32 {
        match *self {
            Self::List { token, .. } | Self::Get { token, .. } | Self::Put { token, .. } => token,
            Self::Accept { session, .. }
            | Self::Data { session, .. }
            | Self::Ack { session, .. }
            | Self::Done { session, .. }
            | Self::Error { session, .. } => session,
        }
    }

    fn seq(&self) -> u64 {
        match *self {
            Self::Data { seq, .. } | Self::Ack { seq, .. } | Self::Done { seq, .. } => seq,
            _ => 0,
        }
    }

    fn payload_len(&self) -> usize {
        match self {
            Self::List { .. } => 2,
            Self::Get { name, .. } => GET_FIXED + name.len(),
            Self::Put { name, .. } => PUT_FIXED + name.len(),
            Self::Accept { .. } => ACCEPT_LEN,
            Self::Data { payload, .. } => payload.len(),
            Self::Ack { .. } => 0,
            Self::Done { .. } => DONE_LEN,
            Self::Error { text, .. } => 2 + text.len().min(MAX_ERROR_TEXT),
        }
    }

    /// The datagram's length once encoded.
    pub fn encoded_len(&self) -> usize {
        OVERHEAD + self.payload_len()
    }

    /// Encodes the message into the front of `buf` and returns the datagram's length.
    /// An error text longer than [`MAX_ERROR_TEXT`] is cut to fit.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Message::encoded_len`] (a bug in the caller: buffers are
    /// [`MAX_DATAGRAM`] long and payloads at most [`MAX_CHUNK`]), or if the payload does not
    /// fit the 16-bit length field.
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        let payload_len = self.payload_len();
        assert!(payload_len <= usize::from(u16::MAX), "payload too large");
        let total = OVERHEAD + payload_len;
        let buf = &mut buf[..total];
        buf[field::MAGIC].copy_from_slice(&MAGIC);
        buf[field::VERSION] = VERSION;
        buf[field::TYPE] = self.kind() as u8;
        NetworkEndian::write_u32(&mut buf[field::SESSION], self.session());
        NetworkEndian::write_u64(&mut buf[field::SEQ], self.seq());
        NetworkEndian::write_u16(&mut buf[field::LEN], payload_len as u16);
        let p = &mut buf[HEADER_LEN..HEADER_LEN + payload_len];
        match *self {
            Self::List { chunk, .. } => NetworkEndian::write_u16(p, chunk),
            Self::Get {
                chunk,
                offset,
                name,
                ..
            } => {
                NetworkEndian::write_u16(&mut p[0..2], chunk);
                NetworkEndian::write_u64(&mut p[2..10], offset);
                p[GET_FIXED..].copy_from_slice(name);
            }
            Self::Put {
                chunk,
                size,
                overwrite,
                name,
                ..
            } => {
                NetworkEndian::write_u16(&mut p[0..2], chunk);
                NetworkEndian::write_u64(&mut p[2..10], size);
                p[10] = if overwrite { PUT_FLAG_OVERWRITE } else { 0 };
                p[PUT_FIXED..].copy_from_slice(name);
            }
            Self::Accept {
                token,
                chunk,
                size,
                offset,
                ..
            } => {
                NetworkEndian::write_u32(&mut p[0..4], token);
                NetworkEndian::write_u16(&mut p[4..6], chunk);
                NetworkEndian::write_u64(&mut p[6..14], size);
                NetworkEndian::write_u64(&mut p[14..22], offset);
            }
            Self::Data { payload, .. } => p.copy_from_slice(payload),
            Self::Ack { .. } => {}
            Self::Done { size, crc, .. } => {
                NetworkEndian::write_u64(&mut p[0..8], size);
                NetworkEndian::write_u32(&mut p[8..12], crc);
            }
            Self::Error { code, text, .. } => {
                NetworkEndian::write_u16(&mut p[0..2], code.to_u16());
                let text = &text[..text.len().min(MAX_ERROR_TEXT)];
                p[2..].copy_from_slice(text);
            }
        }
        let crc = crc32fast::hash(&buf[..HEADER_LEN + payload_len]);
        NetworkEndian::write_u32(&mut buf[HEADER_LEN + payload_len..], crc);
        total
    }
}

/// Completes a Data datagram whose `payload_len` payload bytes are already in place at
/// `buf[HEADER_LEN..]`: writes the header and the CRC32 trailer, and returns the datagram's
/// length. This lets a sender read file bytes straight into the datagram, with no copy.
///
/// # Panics
/// If `buf` is shorter than `OVERHEAD + payload_len` or `payload_len` exceeds `u16::MAX`.
pub fn seal_data(buf: &mut [u8], session: u32, seq: u64, payload_len: usize) -> usize {
    let len = u16::try_from(payload_len).expect("payload fits the length field");
    buf[field::MAGIC].copy_from_slice(&MAGIC);
    buf[field::VERSION] = VERSION;
    buf[field::TYPE] = Kind::Data as u8;
    NetworkEndian::write_u32(&mut buf[field::SESSION], session);
    NetworkEndian::write_u64(&mut buf[field::SEQ], seq);
    NetworkEndian::write_u16(&mut buf[field::LEN], len);
    let end = HEADER_LEN + payload_len;
    let crc = crc32fast::hash(&buf[..end]);
    NetworkEndian::write_u32(&mut buf[end..end + TRAILER_LEN], crc);
    end + TRAILER_LEN
}

/// A name field must be 1..=[`MAX_NAME_LEN`] bytes; its content is the library's to judge.
fn name_field(name: &[u8]) -> Option<&[u8]> {
    (!name.is_empty() && name.len() <= MAX_NAME_LEN).then_some(name)
}

/// Cuts an error text at a character boundary so it fits [`MAX_ERROR_TEXT`].
pub fn clip_text(text: &str) -> &str {
    clip_to(text, MAX_ERROR_TEXT)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn clip_to(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ack for session 0x01020304, seq 7, byte by byte.
    const ACK_BYTES: [u8; 22] = [
        b'U', b'F', 1, 6, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0x00, 0x00, 0x00,
        0x00,
    ];

    fn golden_ack() -> Vec<u8> {
        let mut bytes = ACK_BYTES.to_vec();
        let crc = crc32fast::hash(&bytes[..HEADER_LEN]);
        NetworkEndian::write_u32(&mut bytes[HEADER_LEN..], crc);
        bytes
    }

    #[test]
    fn ack_encodes_to_golden_bytes() {
        let mut buf = [0u8; 64];
        let n = Message::Ack {
            session: 0x0102_0304,
            seq: 7,
        }
        .encode(&mut buf);
        assert_eq!(&buf[..n], &golden_ack()[..]);
    }

    #[test]
    fn golden_ack_decodes() {
        let bytes = golden_ack();
        assert_eq!(
            Message::decode(&bytes),
            Ok(Message::Ack {
                session: 0x0102_0304,
                seq: 7
            })
        );
    }

    #[test]
    fn sealed_data_equals_encoded_data() {
        let payload = b"some file bytes";
        let mut sealed = vec![0u8; OVERHEAD + payload.len()];
        sealed[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        let n = seal_data(&mut sealed, 7, 9, payload.len());
        let mut encoded = vec![0u8; OVERHEAD + payload.len()];
        let m = Message::Data {
            session: 7,
            seq: 9,
            payload,
        }
        .encode(&mut encoded);
        assert_eq!(sealed[..n], encoded[..m]);
    }

    #[test]
    fn a_flipped_version_bit_reads_as_corruption() {
        let mut bytes = golden_ack();
        bytes[2] = 9;
        assert_eq!(Message::decode(&bytes), Err(DecodeError::BadCrc));
    }

    #[test]
    fn another_version_with_a_valid_crc_is_unsupported() {
        let mut bytes = golden_ack();
        bytes[2] = 2;
        let crc = crc32fast::hash(&bytes[..HEADER_LEN]);
        NetworkEndian::write_u32(&mut bytes[HEADER_LEN..], crc);
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn clip_text_respects_char_boundaries() {
        let long = "é".repeat(MAX_ERROR_TEXT);
        let clipped = clip_text(&long);
        assert!(clipped.len() <= MAX_ERROR_TEXT);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
