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
//!
//! * `codes`: the type and error-code tables ([`Kind`], [`ErrorCode`]), each written once.
//! * `layout`: every payload's fixed fields at their byte ranges, one table per layout,
//!   from which both directions are generated.
//! * `error`: [`DecodeError`] and the payload [`Rule`] a malformed datagram broke.

mod codes;
mod error;
mod layout;

pub use codes::{Algo, ErrorCode, Kind};
pub use error::{DecodeError, Rule};

use byteorder::{ByteOrder, NetworkEndian};
use layout::Tail;

/// The two bytes every udpft datagram starts with: ASCII `UF`.
pub const MAGIC: [u8; 2] = *b"UF";
/// The protocol version every implementation speaks: stop-and-wait.
pub const VERSION: u8 = 1;
/// The version of windowed sessions (protocol.md §20): the layouts of the windowed
/// requests, Accept and acknowledgment. Data, Done and Error have only their version-1
/// layout, in every session.
pub const VERSION_WINDOWED: u8 = 2;
/// The largest window a client may ask for.
pub const MAX_WINDOW: u16 = 256;
/// The longest selective-acknowledgment bitmap: bits for the 255 messages above a hole,
/// the most a window of [`MAX_WINDOW`] can have outstanding there.
pub const MAX_BITMAP: usize = 32;
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

/// One decoded datagram. Borrowed fields point into the datagram's bytes.
///
/// Requests (`List`, `Get`, `Put`) carry the client's `token` in the header's session
/// field, since no session exists yet; the server's [`Message::Accept`] echoes it and
/// names the new `session`.
///
/// A request or Accept with a `window` of 2 or more is a *windowed* one: it is encoded in
/// the layouts of version 2 (protocol.md §20.1), and so is [`Message::Sack`]; everything
/// else, including a window of 1, is version 1, byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Ask for the library listing.
    List {
        /// The client's request token.
        token: u32,
        /// The chunk size the client would like.
        chunk: u16,
        /// The window the client would like (1: stop-and-wait, version 1).
        window: u16,
    },
    /// Ask to download `name`, starting at byte `offset` (0 unless resuming).
    Get {
        /// The client's request token.
        token: u32,
        /// The chunk size the client would like.
        chunk: u16,
        /// The window the client would like (1: stop-and-wait, version 1).
        window: u16,
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
        /// The window the client would like (1: stop-and-wait, version 1).
        window: u16,
        /// The file's exact size.
        size: u64,
        /// Replace an existing file of that name.
        overwrite: bool,
        /// The file name, as raw bytes.
        name: &'a [u8],
    },
    /// Ask for the checksum of `name` by `algo` (protocol.md §22): a small transfer of
    /// the result, served only after the peer proved its address.
    Sum {
        /// The client's request token.
        token: u32,
        /// The chunk size the client would like.
        chunk: u16,
        /// The algorithm asked for (any byte decodes; the server refuses unknown ones).
        algo: Algo,
        /// The file name, as raw bytes (the library validates it).
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
        /// The granted window (1: stop-and-wait, version 1).
        window: u16,
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
    /// The acknowledgment of a windowed session (version 2, type Ack): every message up to
    /// `seq` arrived, and so did those the bitmap names.
    Sack {
        /// The session.
        session: u32,
        /// Every message numbered `seq` or less has arrived (cumulative).
        seq: u64,
        /// Bit 7 of byte 0 is message `seq + 2`, bit 6 is `seq + 3`, ...: set for each
        /// message that arrived above the hole at `seq + 1`. No trailing zero byte.
        bitmap: &'a [u8],
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

/// Whether a datagram that failed with [`DecodeError::UnsupportedVersion`] is a request
/// (type byte List, Get or Put): the only kind a server answers with a version error, so
/// that no two servers can answer each other's errors forever.
pub fn is_request_type(datagram: &[u8]) -> bool {
    let kind = datagram.get(field::TYPE).and_then(|&t| Kind::from_value(t));
    kind.is_some_and(Kind::is_request)
}

/// Reads the session field of a datagram that passed [`Message::decode`]'s first checks,
/// without decoding the rest; used to address an error reply. `None` if too short.
pub fn peek_session(datagram: &[u8]) -> Option<u32> {
    datagram.get(field::SESSION).map(NetworkEndian::read_u32)
}

/// The shape of each type's payload in each version: its fixed layout's length and what may
/// follow it; `None` where the version does not define the type. With [`layout`]'s tables
/// this is the whole payload grammar of protocol.md §4 and §20.1, written once for decoding
/// and encoding alike.
fn shape(version: u8, kind: Kind) -> Option<(usize, Tail)> {
    Some(match (version, kind) {
        (VERSION, Kind::List) => (layout::List::LEN, Tail::None),
        (VERSION, Kind::Get) => (layout::Get::LEN, Tail::Name),
        (VERSION, Kind::Put) => (layout::Put::LEN, Tail::Name),
        (VERSION, Kind::Sum) => (layout::Sum::LEN, Tail::Name),
        (VERSION, Kind::Accept) => (layout::Accept::LEN, Tail::None),
        (VERSION, Kind::Data) => (0, Tail::Bytes),
        (VERSION, Kind::Ack) => (0, Tail::None),
        (VERSION, Kind::Done) => (layout::Done::LEN, Tail::None),
        (VERSION, Kind::Error) => (layout::Error::LEN, Tail::Text),
        (VERSION_WINDOWED, Kind::List) => (layout::ListWindowed::LEN, Tail::None),
        (VERSION_WINDOWED, Kind::Get) => (layout::GetWindowed::LEN, Tail::Name),
        (VERSION_WINDOWED, Kind::Put) => (layout::PutWindowed::LEN, Tail::Name),
        (VERSION_WINDOWED, Kind::Accept) => (layout::AcceptWindowed::LEN, Tail::None),
        (VERSION_WINDOWED, Kind::Ack) => (0, Tail::Bitmap),
        _ => return None,
    })
}

/// Checks what follows the fixed fields against the rule of its kind of tail.
fn check_tail(tail: Tail, bytes: &[u8]) -> Result<(), Rule> {
    match tail {
        Tail::None if !bytes.is_empty() => Err(Rule::Long),
        Tail::Name if bytes.is_empty() => Err(Rule::EmptyName),
        Tail::Name if bytes.len() > MAX_NAME_LEN => Err(Rule::LongName),
        Tail::Text if bytes.len() > MAX_ERROR_TEXT => Err(Rule::LongText),
        Tail::Bytes if bytes.is_empty() => Err(Rule::EmptyData),
        Tail::Bitmap if bytes.len() > MAX_BITMAP => Err(Rule::LongBitmap),
        Tail::Bitmap if bytes.last() == Some(&0) => Err(Rule::PaddedBitmap),
        _ => Ok(()),
    }
}

/// A version-2 window must be 2 ..= [`MAX_WINDOW`]: a window of 1 is version 1.
fn windowed(window: u16) -> Result<u16, Rule> {
    if (2..=MAX_WINDOW).contains(&window) {
        Ok(window)
    } else {
        Err(Rule::BadWindow)
    }
}

/// The Put flags byte for `overwrite`.
fn put_flags(overwrite: bool) -> u8 {
    if overwrite {
        layout::PUT_FLAG_OVERWRITE
    } else {
        0
    }
}

/// Whether a Put flags byte sets only defined bits; then whether it asks to overwrite.
fn overwrite_of(flags: u8) -> Result<bool, Rule> {
    if flags & !layout::PUT_FLAG_OVERWRITE != 0 {
        return Err(Rule::UnknownFlags);
    }
    Ok(flags & layout::PUT_FLAG_OVERWRITE != 0)
}

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
        if version != VERSION && version != VERSION_WINDOWED {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let type_byte = datagram[field::TYPE];
        let kind = Kind::from_value(type_byte).ok_or(DecodeError::UnknownType(type_byte))?;
        let (fixed_len, tail) = shape(version, kind).ok_or(DecodeError::UnknownType(type_byte))?;
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
        let decode = || {
            let (fixed, rest) = payload.split_at_checked(fixed_len).ok_or(Rule::Short)?;
            check_tail(tail, rest)?;
            let message = Self::from_fields(version, kind, session, seq, fixed, rest)?;
            // Sequence numbers only mean something on Data, Ack and Done; Data counts from 1.
            match kind {
                Kind::Data if seq == 0 => Err(Rule::ZeroSeq),
                Kind::Data | Kind::Ack | Kind::Done => Ok(message),
                _ if seq != 0 => Err(Rule::NonZeroSeq),
                _ => Ok(message),
            }
        };
        decode().map_err(|rule| DecodeError::BadPayload(kind, rule))
    }

    /// The message of a payload whose shape was checked: its fixed fields, read from the
    /// layout of its version and type, and its tail.
    fn from_fields(
        version: u8,
        kind: Kind,
        session: u32,
        seq: u64,
        fixed: &[u8],
        rest: &'a [u8],
    ) -> Result<Self, Rule> {
        let token = session;
        Ok(match (version, kind) {
            // Version 1 has no window field: its requests ask for stop-and-wait (§20.1).
            (version, Kind::List) => {
                let (chunk, window) = if version == VERSION {
                    (layout::List::read(fixed).chunk, 1)
                } else {
                    let l = layout::ListWindowed::read(fixed);
                    (l.chunk, windowed(l.window)?)
                };
                Self::List {
                    token,
                    chunk,
                    window,
                }
            }
            (version, Kind::Get) => {
                let (chunk, window, offset) = if version == VERSION {
                    let l = layout::Get::read(fixed);
                    (l.chunk, 1, l.offset)
                } else {
                    let l = layout::GetWindowed::read(fixed);
                    (l.chunk, windowed(l.window)?, l.offset)
                };
                Self::Get {
                    token,
                    chunk,
                    window,
                    offset,
                    name: rest,
                }
            }
            (version, Kind::Put) => {
                let (chunk, window, size, flags) = if version == VERSION {
                    let l = layout::Put::read(fixed);
                    (l.chunk, 1, l.size, l.flags)
                } else {
                    let l = layout::PutWindowed::read(fixed);
                    (l.chunk, windowed(l.window)?, l.size, l.flags)
                };
                Self::Put {
                    token,
                    chunk,
                    window,
                    size,
                    overwrite: overwrite_of(flags)?,
                    name: rest,
                }
            }
            (_, Kind::Sum) => {
                let layout::Sum { chunk, algo } = layout::Sum::read(fixed);
                Self::Sum {
                    token,
                    chunk,
                    algo: Algo::from_u8(algo),
                    name: rest,
                }
            }
            (VERSION, Kind::Accept) => {
                let layout::Accept {
                    token,
                    chunk,
                    size,
                    offset,
                } = layout::Accept::read(fixed);
                Self::Accept {
                    session,
                    token,
                    chunk,
                    window: 1,
                    size,
                    offset,
                }
            }
            (_, Kind::Accept) => {
                let layout::AcceptWindowed {
                    token,
                    chunk,
                    window,
                    size,
                    offset,
                } = layout::AcceptWindowed::read(fixed);
                let window = windowed(window)?;
                Self::Accept {
                    session,
                    token,
                    chunk,
                    window,
                    size,
                    offset,
                }
            }
            (_, Kind::Data) => Self::Data {
                session,
                seq,
                payload: rest,
            },
            (VERSION, Kind::Ack) => Self::Ack { session, seq },
            (_, Kind::Ack) => Self::Sack {
                session,
                seq,
                bitmap: rest,
            },
            (_, Kind::Done) => {
                let layout::Done { size, crc } = layout::Done::read(fixed);
                Self::Done {
                    session,
                    seq,
                    size,
                    crc,
                }
            }
            (_, Kind::Error) => {
                let layout::Error { code } = layout::Error::read(fixed);
                Self::Error {
                    session,
                    code: ErrorCode::from_u16(code),
                    text: rest,
                }
            }
        })
    }

    /// The message type.
    pub fn kind(&self) -> Kind {
        match self {
            Self::List { .. } => Kind::List,
            Self::Get { .. } => Kind::Get,
            Self::Put { .. } => Kind::Put,
            Self::Sum { .. } => Kind::Sum,
            Self::Accept { .. } => Kind::Accept,
            Self::Data { .. } => Kind::Data,
            Self::Ack { .. } | Self::Sack { .. } => Kind::Ack,
            Self::Done { .. } => Kind::Done,
            Self::Error { .. } => Kind::Error,
        }
    }

    /// The protocol version the message is encoded in: [`VERSION_WINDOWED`] for a windowed
    /// request or Accept and for a [`Message::Sack`], [`VERSION`] for everything else.
    pub fn version(&self) -> u8 {
        match *self {
            Self::List { window, .. }
            | Self::Get { window, .. }
            | Self::Put { window, .. }
            | Self::Accept { window, .. }
                if window > 1 =>
            {
                VERSION_WINDOWED
            }
            Self::Sack { .. } => VERSION_WINDOWED,
            _ => VERSION,
        }
    }

    /// The header's session field (the token, for requests).
    pub fn session(&self) -> u32 {
        match *self {
            Self::List { token, .. }
            | Self::Get { token, .. }
            | Self::Put { token, .. }
            | Self::Sum { token, .. } => token,
            Self::Accept { session, .. }
            | Self::Data { session, .. }
            | Self::Ack { session, .. }
            | Self::Sack { session, .. }
            | Self::Done { session, .. }
            | Self::Error { session, .. } => session,
        }
    }

    /// The header's sequence number (0 on types without one).
    pub fn seq(&self) -> u64 {
        match *self {
            Self::Data { seq, .. }
            | Self::Ack { seq, .. }
            | Self::Sack { seq, .. }
            | Self::Done { seq, .. } => seq,
            _ => 0,
        }
    }

    /// The bytes after the fixed fields (a name, a text, file bytes, a bitmap), as they will
    /// be sent.
    fn tail(&self) -> &'a [u8] {
        match *self {
            Self::Get { name, .. } | Self::Put { name, .. } | Self::Sum { name, .. } => name,
            Self::Data { payload, .. } => payload,
            Self::Sack { bitmap, .. } => bitmap,
            Self::Error { text, .. } => &text[..text.len().min(MAX_ERROR_TEXT)],
            _ => &[],
        }
    }

    /// The length of the fixed fields of this message's layout.
    fn fixed_len(&self) -> usize {
        shape(self.version(), self.kind()).map_or(0, |(len, _)| len)
    }

    /// The datagram's length once encoded.
    pub fn encoded_len(&self) -> usize {
        OVERHEAD + self.fixed_len() + self.tail().len()
    }

    /// Encodes the message into the front of `buf` and returns the datagram's length.
    /// An error text longer than [`MAX_ERROR_TEXT`] is cut to fit. A window of 0 is encoded
    /// as 1 (version 1).
    ///
    /// # Panics
    /// If `buf` is shorter than [`Message::encoded_len`] (a bug in the caller: buffers are
    /// [`MAX_DATAGRAM`] long and payloads at most [`MAX_CHUNK`]), or if the payload does not
    /// fit the 16-bit length field.
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        let version = self.version();
        let fixed_len = self.fixed_len();
        let tail = self.tail();
        let payload_len = fixed_len + tail.len();
        let total = write_header(
            buf,
            version,
            self.kind(),
            self.session(),
            self.seq(),
            payload_len,
        );
        let (fixed, rest) = buf[HEADER_LEN..HEADER_LEN + payload_len].split_at_mut(fixed_len);
        let windowed = version == VERSION_WINDOWED;
        match *self {
            Self::List { chunk, window, .. } if windowed => {
                layout::ListWindowed { chunk, window }.write(fixed)
            }
            Self::List { chunk, .. } => layout::List { chunk }.write(fixed),
            Self::Get {
                chunk,
                window,
                offset,
                ..
            } if windowed => layout::GetWindowed {
                chunk,
                window,
                offset,
            }
            .write(fixed),
            Self::Get { chunk, offset, .. } => layout::Get { chunk, offset }.write(fixed),
            Self::Put {
                chunk,
                window,
                size,
                overwrite,
                ..
            } if windowed => {
                let flags = put_flags(overwrite);
                layout::PutWindowed {
                    chunk,
                    window,
                    size,
                    flags,
                }
                .write(fixed)
            }
            Self::Put {
                chunk,
                size,
                overwrite,
                ..
            } => layout::Put {
                chunk,
                size,
                flags: put_flags(overwrite),
            }
            .write(fixed),
            Self::Accept {
                token,
                chunk,
                window,
                size,
                offset,
                ..
            } if windowed => layout::AcceptWindowed {
                token,
                chunk,
                window,
                size,
                offset,
            }
            .write(fixed),
            Self::Accept {
                token,
                chunk,
                size,
                offset,
                ..
            } => layout::Accept {
                token,
                chunk,
                size,
                offset,
            }
            .write(fixed),
            Self::Sum { chunk, algo, .. } => layout::Sum {
                chunk,
                algo: algo.value(),
            }
            .write(fixed),
            Self::Done { size, crc, .. } => layout::Done { size, crc }.write(fixed),
            Self::Error { code, .. } => layout::Error {
                code: code.to_u16(),
            }
            .write(fixed),
            Self::Data { .. } | Self::Ack { .. } | Self::Sack { .. } => {}
        }
        rest.copy_from_slice(tail);
        seal(buf, payload_len);
        total
    }
}

/// Writes the header of a datagram of `kind` with `payload_len` payload bytes into `buf`
/// and returns the datagram's whole length.
///
/// # Panics
/// If `buf` is shorter than the datagram or the payload does not fit the length field.
fn write_header(
    buf: &mut [u8],
    version: u8,
    kind: Kind,
    session: u32,
    seq: u64,
    payload_len: usize,
) -> usize {
    let len = u16::try_from(payload_len).expect("payload fits the length field");
    let total = OVERHEAD + payload_len;
    let header = &mut buf[..total];
    header[field::MAGIC].copy_from_slice(&MAGIC);
    header[field::VERSION] = version;
    header[field::TYPE] = kind.value();
    NetworkEndian::write_u32(&mut header[field::SESSION], session);
    NetworkEndian::write_u64(&mut header[field::SEQ], seq);
    NetworkEndian::write_u16(&mut header[field::LEN], len);
    total
}

/// Writes the CRC32 trailer over the header and `payload_len` payload bytes.
fn seal(buf: &mut [u8], payload_len: usize) {
    let end = HEADER_LEN + payload_len;
    let crc = crc32fast::hash(&buf[..end]);
    NetworkEndian::write_u32(&mut buf[end..end + TRAILER_LEN], crc);
}

/// Completes a Data datagram whose `payload_len` payload bytes are already in place at
/// `buf[HEADER_LEN..]`: writes the header and the CRC32 trailer, and returns the datagram's
/// length. This lets a sender read file bytes straight into the datagram, with no copy.
///
/// # Panics
/// If `buf` is shorter than `OVERHEAD + payload_len` or `payload_len` exceeds `u16::MAX`.
pub fn seal_data(buf: &mut [u8], session: u32, seq: u64, payload_len: usize) -> usize {
    let total = write_header(buf, VERSION, Kind::Data, session, seq, payload_len);
    seal(buf, payload_len);
    total
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
        bytes[2] = 3;
        let crc = crc32fast::hash(&bytes[..HEADER_LEN]);
        NetworkEndian::write_u32(&mut bytes[HEADER_LEN..], crc);
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::UnsupportedVersion(3))
        );
    }

    /// The worked example of protocol.md §22.1.
    const SUM_BYTES: [u8; 30] = [
        0x55, 0x46, 0x01, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x08, 0x05,
        0x96, 0x01, b'a', b'.', b't', b'x', b't', 0x58, 0xa3, 0x7c, 0x13,
    ];

    #[test]
    fn sum_encodes_to_the_golden_bytes_of_protocol_md_and_back() {
        let sum = Message::Sum {
            token: 0x0A0B_0C0D,
            chunk: 1430,
            algo: Algo::Sha256,
            name: b"a.txt",
        };
        let mut buf = [0u8; 64];
        let n = sum.encode(&mut buf);
        assert_eq!(&buf[..n], &SUM_BYTES[..]);
        assert_eq!(Message::decode(&SUM_BYTES), Ok(sum));
        assert_eq!(sum.version(), VERSION);
    }

    #[test]
    fn a_sum_of_an_unknown_algorithm_decodes_and_one_without_a_name_does_not() {
        let unknown = Message::Sum {
            token: 1,
            chunk: 1430,
            algo: Algo::Unknown(7),
            name: b"f",
        };
        let mut buf = [0u8; 64];
        let n = unknown.encode(&mut buf);
        assert_eq!(Message::decode(&buf[..n]), Ok(unknown));
        // Cut the name off: the length field and CRC are made right, the payload is short.
        let mut bytes = buf[..n - TRAILER_LEN - 1].to_vec();
        NetworkEndian::write_u16(&mut bytes[field::LEN], 3);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::BadPayload(Kind::Sum, Rule::EmptyName))
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
