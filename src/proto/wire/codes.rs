//! The number tables of the wire format, each written once: the message types ([`Kind`],
//! the type byte), the error codes ([`ErrorCode`], the code of an Error) and the checksum
//! algorithms ([`Algo`], the algorithm byte of a Sum).
//!
//! Each table is one invocation of [`code_table!`], which generates from the same rows the
//! enum, its number on the wire, the reverse lookup and the lower-case text, so a type or a
//! code cannot be added to one direction and forgotten in another.

/// Declares a table of wire numbers: the enum, `value` (its number), `from_value` (the
/// variant of a number, `None` if unknown), `text` (its name or description) and `ALL` (every
/// known variant, in table order). With `unknown Variant`, the enum also holds any other
/// number as `Variant(n)`, so a code from a newer peer can still be shown.
macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $int:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )*
        }
        $( unknown $(#[$umeta:meta])* $unknown:ident; )?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($int)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )*
            $( $(#[$umeta])* $unknown($int), )?
        }

        impl $name {
            /// Every known value, in table order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )* ];

            /// The number on the wire.
            pub fn value(self) -> $int {
                match self {
                    $( Self::$variant => $value, )*
                    $( Self::$unknown(n) => n, )?
                }
            }

            /// The known value with this number, if any.
            pub fn from_value(n: $int) -> Option<Self> {
                match n {
                    $( $value => Some(Self::$variant), )*
                    _ => None,
                }
            }

            /// The text of a known value; `None` for an unknown number.
            pub fn text(self) -> Option<&'static str> {
                match self {
                    $( Self::$variant => Some($text), )*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

code_table! {
    /// The message type byte (protocol.md §4).
    pub enum Kind: u8 {
        /// Client asks for the library listing.
        List = 1 => "list",
        /// Client asks to download a file.
        Get = 2 => "get",
        /// Client asks to upload a file.
        Put = 3 => "put",
        /// Server opens a session in answer to a request.
        Accept = 4 => "accept",
        /// One chunk of file (or listing) bytes.
        Data = 5 => "data",
        /// The receiver acknowledges what it has received.
        Ack = 6 => "ack",
        /// The sender's last message: the whole file's size and CRC32.
        Done = 7 => "done",
        /// Either side ends a session, or refuses a request, with a code and a text.
        Error = 8 => "error",
        /// Client asks for the checksum of a library file (protocol.md §22).
        Sum = 9 => "sum",
    }
}

impl Kind {
    /// The lower-case name used in logs and statistics.
    pub fn name(self) -> &'static str {
        self.text().unwrap_or("?")
    }

    /// Whether this type is a request of the first version (List, Get, Put): the only
    /// types a server answers with an Error when their version is not spoken
    /// (protocol.md §16). Sum, a later request, is not among them: §16 names 1–3.
    pub fn is_request(self) -> bool {
        matches!(self, Self::List | Self::Get | Self::Put)
    }
}

code_table! {
    /// The checksum algorithm a Sum asks for (protocol.md §22.1).
    pub enum Algo: u8 {
        /// SHA-256 (FIPS 180-4): a 32-byte digest, as `sha256sum` prints it.
        Sha256 = 1 => "sha256",
        /// CRC32 (IEEE, as everywhere in this protocol): 4 bytes, big-endian.
        Crc32 = 2 => "crc32",
    }
    unknown
        /// An algorithm this implementation does not know (the server refuses it).
        Unknown;
}

impl Algo {
    /// The length of its digest in bytes; 0 for an unknown algorithm.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Crc32 => 4,
            Self::Unknown(_) => 0,
        }
    }

    /// The algorithm of a number read from the wire; unknown numbers are kept.
    pub fn from_u8(n: u8) -> Self {
        Self::from_value(n).unwrap_or(Self::Unknown(n))
    }

    /// The lower-case name (`sha256`, `crc32`), or `algorithm N` for an unknown one.
    pub fn name(self) -> String {
        match self.text() {
            Some(text) => text.to_owned(),
            None => format!("algorithm {}", self.value()),
        }
    }
}

impl std::str::FromStr for Algo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.text() == Some(s))
            .ok_or_else(|| format!("unknown checksum algorithm {s:?} (sha256 or crc32)"))
    }
}

code_table! {
    /// Why a session ended or a request was refused; carried by an Error (protocol.md §13).
    pub enum ErrorCode: u16 {
        /// Anything not covered below.
        Other = 0 => "error",
        /// The named file is not in the library.
        NotFound = 1 => "no such file",
        /// The name is not allowed (traversal, separators, hidden, too long, not UTF-8).
        BadName = 2 => "name not allowed",
        /// Upload refused: the file exists and overwrite was not asked for.
        Exists = 3 => "file exists",
        /// The server cannot take another session now; try again later.
        Busy = 4 => "server busy",
        /// No live session has this id for this peer.
        UnknownSession = 5 => "unknown session",
        /// The whole-file checksum did not match: the transfer is void.
        ChecksumMismatch = 6 => "checksum mismatch",
        /// The peer stopped answering.
        Timeout = 7 => "timed out",
        /// A file-system error on the side that sends this (disk full, permission...).
        Io = 8 => "I/O error",
        /// The request or message made no sense in this state.
        BadRequest = 9 => "bad request",
        /// The datagram's protocol version is not spoken here.
        UnsupportedVersion = 10 => "unsupported protocol version",
        /// The upload is larger than the server allows.
        TooLarge = 11 => "file too large",
        /// The server does not accept uploads.
        ReadOnly = 12 => "server is read-only",
        /// The server is shutting down.
        ShuttingDown = 13 => "server shutting down",
        /// The file changed while it was being sent.
        FileChanged = 14 => "file changed during transfer",
        /// The user or the program cancelled the transfer.
        Cancelled = 15 => "cancelled",
    }
    unknown
        /// A code this implementation does not know (kept so it can be shown).
        Unknown;
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        self.value()
    }

    /// The code for a number read from the wire; unknown numbers are kept.
    pub fn from_u16(n: u16) -> Self {
        Self::from_value(n).unwrap_or(Self::Unknown(n))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.text(), self) {
            (Some(text), _) => f.write_str(text),
            (None, code) => write!(f, "error code {}", code.value()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_code_maps_to_its_number_and_back() {
        for &kind in Kind::ALL {
            assert_eq!(Kind::from_value(kind.value()), Some(kind));
        }
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code.to_u16()), code);
        }
        assert_eq!(Kind::ALL.len(), 9);
        for &algo in Algo::ALL {
            assert_eq!(Algo::from_u8(algo.value()), algo);
            assert_eq!(algo.name().parse(), Ok(algo));
        }
        assert_eq!(Algo::from_u8(7).name(), "algorithm 7");
        assert_eq!(ErrorCode::ALL.len(), 16);
        assert_eq!(ErrorCode::from_u16(99), ErrorCode::Unknown(99));
        assert_eq!(ErrorCode::Unknown(99).to_string(), "error code 99");
    }
}
