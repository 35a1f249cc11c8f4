//! The library listing: the bytes a List transfer carries, and their parsing.
//!
//! A listing is a sequence of entries, each `name_len:u16 name size:u64 mtime:i64`
//! (big-endian; `mtime` in seconds since the Unix epoch). It travels like a downloaded file,
//! so it may be any length and spans as many chunks as it needs.

use super::wire::MAX_NAME_LEN;
use byteorder::{ByteOrder, NetworkEndian};

/// One file in the library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file name (raw bytes: a hostile server may send anything; sanitise to print).
    pub name: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds since the Unix epoch.
    pub mtime: i64,
}

/// Appends the encoding of `entry` to `out`.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let name = &entry.name[..entry.name.len().min(MAX_NAME_LEN)];
    let mut fixed = [0u8; 8];
    NetworkEndian::write_u16(&mut fixed[..2], name.len() as u16);
    out.extend_from_slice(&fixed[..2]);
    out.extend_from_slice(name);
    NetworkEndian::write_u64(&mut fixed, entry.size);
    out.extend_from_slice(&fixed);
    NetworkEndian::write_i64(&mut fixed, entry.mtime);
    out.extend_from_slice(&fixed);
}

/// Parses a whole listing; `None` if it is malformed (truncated, empty or over-long names).
pub fn decode(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at_checked(2)?;
        let len = usize::from(NetworkEndian::read_u16(len));
        if len == 0 || len > MAX_NAME_LEN {
            return None;
        }
        let (name, rest) = rest.split_at_checked(len)?;
        let (size, rest) = rest.split_at_checked(8)?;
        let (mtime, rest) = rest.split_at_checked(8)?;
        entries.push(Entry {
            name: name.to_vec(),
            size: NetworkEndian::read_u64(size),
            mtime: NetworkEndian::read_i64(mtime),
        });
        bytes = rest;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            Entry {
                name: b"a.txt".to_vec(),
                size: 3,
                mtime: 1_700_000_000,
            },
            Entry {
                name: vec![b'x'; MAX_NAME_LEN],
                size: u64::MAX,
                mtime: -1,
            },
        ];
        let mut bytes = Vec::new();
        for e in &entries {
            encode_entry(e, &mut bytes);
        }
        assert_eq!(decode(&bytes), Some(entries));
    }

    #[test]
    fn truncated_listing_is_rejected() {
        let mut bytes = Vec::new();
        encode_entry(
            &Entry {
                name: b"a".to_vec(),
                size: 1,
                mtime: 2,
            },
            &mut bytes,
        );
        for cut in 1..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }
}
