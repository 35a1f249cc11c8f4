//! A remote checksum (protocol.md §22): the record a Sum transfer carries, and the hashing
//! of one file version that produces it.
//!
//! The record is `size:u64 digest` (big-endian size, then the digest's bytes: 32 for
//! SHA-256, 4 for CRC32), so its length is known from the algorithm alone and the Accept can
//! announce it before anything is hashed; it then travels like a tiny listing (Data, Done).
//!
//! [`hash_source`] reads a file through the [`Source`] trait, so it runs wherever its caller
//! puts it: inline in a server loop or a session's thread or process, or on a worker of the
//! table's pool. It takes no clock and no thread of its own. A file that is not the version
//! the Accept described, that ends early, or whose version changes while it is read gives
//! [`ErrorCode::FileChanged`]: never a checksum of bytes from two versions. A CRC32 already
//! known for the version (the library's whole-file memory) is used without reading.

use super::refusal::Refusal;
use super::session::{FileCrc, Source};
use super::wire::{Algo, ErrorCode};
use byteorder::{ByteOrder, NetworkEndian};
use sha2::{Digest, Sha256};

/// How much is read at once while hashing.
const HASH_BLOCK: usize = 256 << 10;

/// The checksum of one file version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    /// The algorithm.
    pub algo: Algo,
    /// The size of the file hashed.
    pub size: u64,
    /// The digest (SHA-256: 32 bytes; CRC32: 4 bytes, big-endian).
    pub digest: Vec<u8>,
}

impl Checksum {
    /// The length of the record of `algo` on the wire.
    pub fn record_len(algo: Algo) -> u64 {
        8 + algo.digest_len() as u64
    }

    /// The record as a Sum transfer carries it.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; 8];
        NetworkEndian::write_u64(&mut bytes, self.size);
        bytes.extend_from_slice(&self.digest);
        bytes
    }

    /// Reads a record of `algo`; `None` if it is not exactly that long.
    pub fn decode(algo: Algo, bytes: &[u8]) -> Option<Self> {
        if algo.digest_len() == 0 || bytes.len() as u64 != Self::record_len(algo) {
            return None;
        }
        let (size, digest) = bytes.split_at(8);
        Some(Self {
            algo,
            size: NetworkEndian::read_u64(size),
            digest: digest.to_vec(),
        })
    }

    /// The digest in lower-case hexadecimal, as `sha256sum` prints it.
    pub fn hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The running state of one algorithm.
enum Hasher {
    Sha256(Box<Sha256>),
    Crc32(crc32fast::Hasher),
}

impl Hasher {
    fn new(algo: Algo) -> Option<Self> {
        match algo {
            Algo::Sha256 => Some(Self::Sha256(Box::default())),
            Algo::Crc32 => Some(Self::Crc32(crc32fast::Hasher::new())),
            Algo::Unknown(_) => None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Crc32(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
        }
    }
}

/// The refusal for a file that is no longer the version being hashed.
fn changed(shown: &str) -> Refusal {
    Refusal::new(
        ErrorCode::FileChanged,
        format!("{shown} changed while it was being hashed; try again"),
    )
}

/// Hashes the `size` bytes of `source` (opened as the version whose size that is) by
/// `algo`; `shown` names the file in a refusal.
///
/// # Errors
/// [`ErrorCode::FileChanged`] if the file ends early or its version changed by the end;
/// [`ErrorCode::Io`] on a read error; [`ErrorCode::BadRequest`] for an unknown algorithm.
pub fn hash_source(
    source: &mut dyn Source,
    size: u64,
    algo: Algo,
    shown: &str,
) -> Result<Checksum, Refusal> {
    let checksum = |digest| Checksum { algo, size, digest };
    if algo == Algo::Crc32 {
        if let FileCrc::Known(crc) = source.file_crc(true) {
            return Ok(checksum(crc.to_be_bytes().to_vec()));
        }
    }
    let mut hasher = Hasher::new(algo).ok_or_else(|| {
        Refusal::new(
            ErrorCode::BadRequest,
            format!("unknown checksum {}", algo.name()),
        )
    })?;
    let mut block = vec![0u8; HASH_BLOCK.min(size as usize).max(1)];
    let mut offset = 0u64;
    while offset < size {
        let want = block.len().min((size - offset) as usize);
        let n = source
            .read_at(offset, &mut block[..want])
            .map_err(|e| Refusal::new(ErrorCode::Io, format!("cannot read {shown}: {e}")))?;
        if n == 0 {
            return Err(changed(shown)); // it shrank
        }
        hasher.update(&block[..n]);
        offset += n as u64;
    }
    // The bytes hashed are one version's only if the version is still the one opened.
    match source.unchanged() {
        Ok(true) => {}
        Ok(false) => return Err(changed(shown)),
        Err(e) => {
            return Err(Refusal::new(
                ErrorCode::Io,
                format!("cannot check {shown}: {e}"),
            ))
        }
    }
    let digest = hasher.finish();
    if algo == Algo::Crc32 {
        let crc = NetworkEndian::read_u32(&digest);
        source.remember_crc(crc);
    }
    Ok(checksum(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::session::MemSource;

    #[test]
    fn sha256_and_crc32_match_their_check_values() {
        let mut source = MemSource(b"123456789".to_vec());
        let sha = hash_source(&mut source, 9, Algo::Sha256, "f").expect("hashed");
        assert_eq!(
            sha.hex(),
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"
        );
        let crc = hash_source(&mut source, 9, Algo::Crc32, "f").expect("hashed");
        assert_eq!(crc.hex(), "cbf43926");
        let empty = hash_source(&mut MemSource(Vec::new()), 0, Algo::Sha256, "e").expect("ok");
        assert_eq!(
            empty.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_file_shorter_than_its_version_said_is_a_change() {
        let mut source = MemSource(b"short".to_vec());
        let refusal = hash_source(&mut source, 9, Algo::Sha256, "f").expect_err("refused");
        assert_eq!(refusal.code, ErrorCode::FileChanged);
    }

    #[test]
    fn records_round_trip_and_have_the_length_of_their_algorithm() {
        let sum = Checksum {
            algo: Algo::Crc32,
            size: 7,
            digest: vec![1, 2, 3, 4],
        };
        let bytes = sum.encode();
        assert_eq!(bytes.len() as u64, Checksum::record_len(Algo::Crc32));
        assert_eq!(Checksum::decode(Algo::Crc32, &bytes), Some(sum));
        assert_eq!(Checksum::decode(Algo::Sha256, &bytes), None);
        assert_eq!(Checksum::decode(Algo::Unknown(9), &bytes[..8]), None);
    }
}
