//! TFTP's error codes (RFC 1350 §5, RFC 2347 for code 8), and their mapping to and from
//! udpft's [`ErrorCode`]s, so a refusal of the library reads the same in both protocols
//! and a TFTP server's error lands on the udpft client's exit codes.

use crate::proto::wire::ErrorCode;

/// A TFTP error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TftpCode {
    /// 0: not defined, see the text.
    Undefined,
    /// 1: file not found.
    NotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTid,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: option negotiation refused (RFC 2347).
    OptionRefused,
    /// A code no RFC defines (kept so it can be shown).
    Other(u16),
}

impl TftpCode {
    /// The number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Undefined => 0,
            Self::NotFound => 1,
            Self::AccessViolation => 2,
            Self::DiskFull => 3,
            Self::IllegalOperation => 4,
            Self::UnknownTid => 5,
            Self::FileExists => 6,
            Self::NoSuchUser => 7,
            Self::OptionRefused => 8,
            Self::Other(n) => n,
        }
    }

    /// The code for a number read from the wire.
    pub fn from_u16(n: u16) -> Self {
        match n {
            0 => Self::Undefined,
            1 => Self::NotFound,
            2 => Self::AccessViolation,
            3 => Self::DiskFull,
            4 => Self::IllegalOperation,
            5 => Self::UnknownTid,
            6 => Self::FileExists,
            7 => Self::NoSuchUser,
            8 => Self::OptionRefused,
            n => Self::Other(n),
        }
    }

    /// The TFTP code that tells a TFTP peer what a udpft `code` means.
    pub fn from_udpft(code: ErrorCode) -> Self {
        match code {
            ErrorCode::NotFound => Self::NotFound,
            ErrorCode::BadName | ErrorCode::ReadOnly => Self::AccessViolation,
            ErrorCode::TooLarge => Self::DiskFull,
            ErrorCode::BadRequest => Self::IllegalOperation,
            ErrorCode::UnknownSession => Self::UnknownTid,
            ErrorCode::Exists => Self::FileExists,
            _ => Self::Undefined,
        }
    }

    /// The udpft code closest to this TFTP code (for outcomes and the client's exit codes).
    pub fn to_udpft(self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::AccessViolation | Self::NoSuchUser => ErrorCode::BadName,
            Self::DiskFull => ErrorCode::TooLarge,
            Self::IllegalOperation | Self::OptionRefused => ErrorCode::BadRequest,
            Self::UnknownTid => ErrorCode::UnknownSession,
            Self::FileExists => ErrorCode::Exists,
            Self::Undefined | Self::Other(_) => ErrorCode::Other,
        }
    }
}

/// A TFTP error to send: a code and a clear text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpError {
    /// The code.
    pub code: TftpCode,
    /// What the peer's user reads.
    pub text: String,
}

impl TftpError {
    /// An error of `code` saying `text`.
    pub fn new(code: TftpCode, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    /// The TFTP form of a refusal of the library (or of the server's limits).
    pub fn from_refusal(refusal: &crate::proto::refusal::Refusal) -> Self {
        Self::new(TftpCode::from_udpft(refusal.code), refusal.text.clone())
    }

    /// The failure of a transfer this end stopped with this error.
    pub fn failure(&self) -> crate::proto::Failure {
        crate::proto::Failure::Local {
            code: self.code.to_udpft(),
            text: self.text.clone(),
        }
    }

    /// The ERROR packet of this error, written into `buf`; returns its length.
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        super::wire::Packet::Error {
            code: self.code.to_u16(),
            text: self.text.as_bytes(),
        }
        .encode(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..20 {
            assert_eq!(TftpCode::from_u16(n).to_u16(), n);
        }
    }

    #[test]
    fn library_refusals_map_to_their_tftp_codes() {
        assert_eq!(TftpCode::from_udpft(ErrorCode::NotFound).to_u16(), 1);
        assert_eq!(TftpCode::from_udpft(ErrorCode::BadName).to_u16(), 2);
        assert_eq!(TftpCode::from_udpft(ErrorCode::ReadOnly).to_u16(), 2);
        assert_eq!(TftpCode::from_udpft(ErrorCode::TooLarge).to_u16(), 3);
        assert_eq!(TftpCode::from_udpft(ErrorCode::BadRequest).to_u16(), 4);
        assert_eq!(TftpCode::from_udpft(ErrorCode::UnknownSession).to_u16(), 5);
        assert_eq!(TftpCode::from_udpft(ErrorCode::Exists).to_u16(), 6);
        assert_eq!(TftpCode::from_udpft(ErrorCode::Busy).to_u16(), 0);
    }
}
