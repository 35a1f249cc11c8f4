//! The TFTP wire format (RFC 1350, with the OACK of RFC 2347): every packet, byte by byte.
//!
//! A TFTP packet starts with a two-byte big-endian opcode, 1 to 6:
//!
//! ```text
//!  RRQ / WRQ   | 01/02 | filename | 0 | mode | 0 | opt1 | 0 | value1 | 0 | ...
//!  DATA        | 03    | block (2 bytes) | 0..=65464 bytes of data
//!  ACK         | 04    | block (2 bytes)
//!  ERROR       | 05    | code (2 bytes)  | text | 0
//!  OACK        | 06    | opt1 | 0 | value1 | 0 | ...
//! ```
//!
//! [`Packet::decode`] checks length, opcode and then the layout of that opcode, and returns
//! one [`DecodeError`] per malformed form; it never panics, whatever the input.
//! [`Packet::encode`] writes into a caller's buffer. [`is_tftp`] is the classifier a shared
//! socket uses to tell TFTP from udpft datagrams, which start with `UF` (0x55 0x46).

use byteorder::{ByteOrder, NetworkEndian};
use std::fmt;

/// The smallest block size a client may ask for (RFC 2348).
pub const MIN_BLKSIZE: u16 = 8;
/// The largest block size (RFC 2348): 65464 data bytes fit an IPv4 datagram with room to
/// spare for IP options.
pub const MAX_BLKSIZE: u16 = 65_464;
/// The block size of RFC 1350, used when no other is negotiated.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Bytes before a DATA packet's data: opcode and block number.
pub const DATA_HEADER_LEN: usize = 4;
/// The largest packet this codec produces or accepts (a DATA of [`MAX_BLKSIZE`]); a
/// request or OACK may use the same room.
pub const MAX_PACKET: usize = DATA_HEADER_LEN + MAX_BLKSIZE as usize;
/// The longest error text sent, in bytes (errors stay small: they may answer a spoofed
/// request).
pub const MAX_ERROR_TEXT: usize = 200;

/// The opcode of a TFTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Opcode {
    /// Read request: the client asks for a file.
    Rrq = 1,
    /// Write request: the client offers a file.
    Wrq = 2,
    /// One block of the file.
    Data = 3,
    /// Acknowledges a block (or, as block 0, a WRQ or an OACK).
    Ack = 4,
    /// Ends the transfer with a code and a text.
    Error = 5,
    /// Option acknowledgment: the options the server grants (RFC 2347).
    Oack = 6,
}

impl Opcode {
    fn from_u16(n: u16) -> Option<Self> {
        Some(match n {
            1 => Self::Rrq,
            2 => Self::Wrq,
            3 => Self::Data,
            4 => Self::Ack,
            5 => Self::Error,
            6 => Self::Oack,
            _ => return None,
        })
    }
}

/// Whether a datagram is TFTP: its first two bytes are an opcode 1..=6 (0x00 0x01 to
/// 0x00 0x06). A udpft datagram starts with `UF` (0x55 0x46) and is never TFTP.
pub fn is_tftp(datagram: &[u8]) -> bool {
    matches!(datagram, [0, 1..=6, ..])
}

/// The transfer mode of a request (RFC 1350 §5), named case-insensitively on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Text: lines end in CR LF on the wire, a bare CR is CR NUL (see `netascii`).
    Netascii,
    /// Bytes as they are.
    Octet,
    /// Obsolete mail delivery; decoded so it can be refused clearly.
    Mail,
}

impl Mode {
    /// The mode's name as sent on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Netascii => "netascii",
            Self::Octet => "octet",
            Self::Mail => "mail",
        }
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        [Self::Netascii, Self::Octet, Self::Mail]
            .into_iter()
            .find(|m| bytes.eq_ignore_ascii_case(m.name().as_bytes()))
    }
}

/// The option pairs of a request or an OACK, as they are on the wire: a sequence of
/// `name NUL value NUL`. Checked once when decoded, so iterating cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Options<'a> {
    raw: &'a [u8],
}

impl<'a> Options<'a> {
    /// No options.
    pub const EMPTY: Options<'static> = Options { raw: &[] };

    /// Checks `raw` (pairs of NUL-terminated strings, names not empty).
    ///
    /// # Errors
    /// [`DecodeError::Unterminated`] if a string lacks its NUL, [`DecodeError::MissingValue`]
    /// if the last name has no value, [`DecodeError::EmptyOptionName`] for an empty name.
    pub fn new(raw: &'a [u8]) -> Result<Self, DecodeError> {
        let mut rest = raw;
        while !rest.is_empty() {
            let (name, after) = split_cstr(rest).ok_or(DecodeError::Unterminated)?;
            if name.is_empty() {
                return Err(DecodeError::EmptyOptionName);
            }
            if after.is_empty() {
                return Err(DecodeError::MissingValue);
            }
            let (_, after) = split_cstr(after).ok_or(DecodeError::Unterminated)?;
            rest = after;
        }
        Ok(Self { raw })
    }

    /// Whether there are no options.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The (name, value) pairs, in order.
    pub fn iter(&self) -> OptionIter<'a> {
        OptionIter { rest: self.raw }
    }
}

/// Iterator over the pairs of [`Options`].
#[derive(Clone, Debug)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, after) = split_cstr(self.rest)?;
        let (value, after) = split_cstr(after)?;
        self.rest = after;
        Some((name, value))
    }
}

/// Appends one option pair to `out` (for building a request or an OACK).
pub fn push_option(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(value.to_string().as_bytes());
    out.push(0);
}

/// A read or write request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The file name, raw (the library judges it).
    pub filename: &'a [u8],
    /// The transfer mode.
    pub mode: Mode,
    /// The options asked for (RFC 2347).
    pub options: Options<'a>,
}

/// One decoded TFTP packet. Borrowed fields point into the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request.
    Rrq(Request<'a>),
    /// Write request.
    Wrq(Request<'a>),
    /// Block `block` of the file; a block shorter than the block size ends the file.
    Data {
        /// The block number (it rolls over past 65535).
        block: u16,
        /// The block's bytes.
        data: &'a [u8],
    },
    /// Acknowledges block `block`.
    Ack {
        /// The block number acknowledged.
        block: u16,
    },
    /// Ends the transfer.
    Error {
        /// The TFTP error code (see `codes`).
        code: u16,
        /// The explanation, raw (sanitise before printing).
        text: &'a [u8],
    },
    /// The options the server grants.
    Oack(Options<'a>),
}

/// Why a datagram is not a well-formed TFTP packet. One variant per malformed form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than its opcode's fixed fields.
    TooShort,
    /// An opcode other than 1..=6.
    UnknownOpcode(u16),
    /// A string field (name, mode, option, error text) has no terminating NUL.
    Unterminated,
    /// A request with an empty file name.
    EmptyFilename,
    /// A request whose mode is not netascii, octet or mail.
    UnknownMode,
    /// An option name with no value after it.
    MissingValue,
    /// An option with an empty name.
    EmptyOptionName,
    /// Bytes after the end of an ACK or an ERROR.
    TrailingBytes,
    /// A DATA block longer than [`MAX_BLKSIZE`].
    DataTooLong,
    /// An OACK that grants no option.
    EmptyOack,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("packet too short"),
            Self::UnknownOpcode(n) => write!(f, "unknown opcode {n}"),
            Self::Unterminated => f.write_str("string field without its NUL"),
            Self::EmptyFilename => f.write_str("empty file name"),
            Self::UnknownMode => f.write_str("unknown transfer mode"),
            Self::MissingValue => f.write_str("option without a value"),
            Self::EmptyOptionName => f.write_str("option with an empty name"),
            Self::TrailingBytes => f.write_str("bytes past the end of the packet"),
            Self::DataTooLong => f.write_str("data block longer than 65464 bytes"),
            Self::EmptyOack => f.write_str("OACK without options"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Splits `bytes` at its first NUL: the string before it and the bytes after it.
fn split_cstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..nul], &bytes[nul + 1..]))
}

impl<'a> Packet<'a> {
    /// Decodes one datagram.
    ///
    /// # Errors
    /// The first malformed form found, as a [`DecodeError`].
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let (op, body) = datagram
            .split_first_chunk::<2>()
            .ok_or(DecodeError::TooShort)?;
        let op = u16::from_be_bytes(*op);
        let opcode = Opcode::from_u16(op).ok_or(DecodeError::UnknownOpcode(op))?;
        match opcode {
            Opcode::Rrq | Opcode::Wrq => {
                let request = decode_request(body)?;
                Ok(if opcode == Opcode::Rrq {
                    Self::Rrq(request)
                } else {
                    Self::Wrq(request)
                })
            }
            Opcode::Data => {
                let (block, data) = body.split_first_chunk::<2>().ok_or(DecodeError::TooShort)?;
                if data.len() > usize::from(MAX_BLKSIZE) {
                    return Err(DecodeError::DataTooLong);
                }
                Ok(Self::Data {
                    block: u16::from_be_bytes(*block),
                    data,
                })
            }
            Opcode::Ack => {
                let (block, rest) = body.split_first_chunk::<2>().ok_or(DecodeError::TooShort)?;
                if !rest.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                Ok(Self::Ack {
                    block: u16::from_be_bytes(*block),
                })
            }
            Opcode::Error => {
                let (code, rest) = body.split_first_chunk::<2>().ok_or(DecodeError::TooShort)?;
                let (text, after) = split_cstr(rest).ok_or(DecodeError::Unterminated)?;
                if !after.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                Ok(Self::Error {
                    code: u16::from_be_bytes(*code),
                    text,
                })
            }
            Opcode::Oack => {
                let options = Options::new(body)?;
                if options.is_empty() {
                    return Err(DecodeError::EmptyOack);
                }
                Ok(Self::Oack(options))
            }
        }
    }

    /// The packet's opcode.
    pub fn opcode(&self) -> Opcode {
        match self {
            Self::Rrq(_) => Opcode::Rrq,
            Self::Wrq(_) => Opcode::Wrq,
            Self::Data { .. } => Opcode::Data,
            Self::Ack { .. } => Opcode::Ack,
            Self::Error { .. } => Opcode::Error,
            Self::Oack(_) => Opcode::Oack,
        }
    }

    /// The encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Self::Rrq(r) | Self::Wrq(r) => {
                r.filename.len() + 1 + r.mode.name().len() + 1 + r.options.raw.len()
            }
            Self::Data { data, .. } => 2 + data.len(),
            Self::Ack { .. } => 2,
            Self::Error { text, .. } => 2 + error_text(text).len() + 1,
            Self::Oack(options) => options.raw.len(),
        }
    }

    /// Writes the packet into `buf` and returns its length. An error text is cut at its
    /// first NUL and at [`MAX_ERROR_TEXT`] bytes.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Packet::encoded_len`].
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        let len = self.encoded_len();
        let out = &mut buf[..len];
        NetworkEndian::write_u16(&mut out[..2], self.opcode() as u16);
        let mut at = 2;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        match self {
            Self::Rrq(r) | Self::Wrq(r) => {
                put(r.filename);
                put(&[0]);
                put(r.mode.name().as_bytes());
                put(&[0]);
                put(r.options.raw);
            }
            Self::Data { block, data } => {
                put(&block.to_be_bytes());
                put(data);
            }
            Self::Ack { block } => put(&block.to_be_bytes()),
            Self::Error { code, text } => {
                put(&code.to_be_bytes());
                put(error_text(text));
                put(&[0]);
            }
            Self::Oack(options) => put(options.raw),
        }
        len
    }
}

fn decode_request(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    let (filename, rest) = split_cstr(body).ok_or(DecodeError::Unterminated)?;
    if filename.is_empty() {
        return Err(DecodeError::EmptyFilename);
    }
    let (mode, rest) = split_cstr(rest).ok_or(DecodeError::Unterminated)?;
    let mode = Mode::parse(mode).ok_or(DecodeError::UnknownMode)?;
    // Some boot ROMs pad their requests with NULs: padding after the last pair is no option.
    let end = rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 2);
    let options = Options::new(&rest[..end.min(rest.len())])?;
    Ok(Request {
        filename,
        mode,
        options,
    })
}

/// The part of `text` an ERROR carries: up to its first NUL, at most [`MAX_ERROR_TEXT`]
/// bytes, cut on a character boundary when it is UTF-8.
fn error_text(text: &[u8]) -> &[u8] {
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    match std::str::from_utf8(text) {
        Ok(s) => crate::proto::wire::clip_to(s, MAX_ERROR_TEXT).as_bytes(),
        Err(_) => &text[..text.len().min(MAX_ERROR_TEXT)],
    }
}

/// Encodes DATA `block` around `len` data bytes already in `buf[DATA_HEADER_LEN..]` (so a
/// sender can read file bytes straight into the packet) and returns the packet's length.
///
/// # Panics
/// If `buf` is shorter than `DATA_HEADER_LEN + len`.
pub fn seal_data(buf: &mut [u8], block: u16, len: usize) -> usize {
    NetworkEndian::write_u16(&mut buf[..2], Opcode::Data as u16);
    NetworkEndian::write_u16(&mut buf[2..4], block);
    DATA_HEADER_LEN + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_after_the_last_option_is_ignored() {
        let bytes = b"\0\x01f\0octet\0blksize\x001468\0\0\0\0";
        let Ok(Packet::Rrq(r)) = Packet::decode(bytes) else {
            panic!("decodes")
        };
        assert_eq!(r.options.as_bytes(), b"blksize\x001468\0");
        let bytes = b"\0\x01f\0octet\0\0\0";
        let Ok(Packet::Rrq(r)) = Packet::decode(bytes) else {
            panic!("decodes")
        };
        assert!(r.options.is_empty());
    }

    #[test]
    fn error_text_is_cut_at_nul_and_length() {
        let long = "é".repeat(300);
        let packet = Packet::Error {
            code: 1,
            text: long.as_bytes(),
        };
        let mut buf = [0u8; 1024];
        let n = packet.encode(&mut buf);
        assert!(n <= 2 + 2 + MAX_ERROR_TEXT + 1);
        let Ok(Packet::Error { text, .. }) = Packet::decode(&buf[..n]) else {
            panic!("decodes")
        };
        assert!(std::str::from_utf8(text).is_ok());
        let n = Packet::Error {
            code: 1,
            text: b"a\0b",
        }
        .encode(&mut buf);
        assert_eq!(&buf[..n], b"\0\x05\0\x01a\0");
    }
}
