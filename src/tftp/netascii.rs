//! Netascii (RFC 1350 §5, after the Telnet NVT of RFC 764): text whose lines end in CR LF on
//! the wire, and whose bare CR travels as CR NUL. Files are stored the Unix way (LF).
//!
//! Both directions stream: a CR LF pair may be split across two DATA blocks, so the
//! [`Encoder`] carries the second byte of an expansion that did not fit, and the
//! [`Decoder`] carries a CR until it sees what follows. The sizes on the wire and on disk
//! differ (every LF and CR costs one byte more on the wire), which is why a netascii
//! download's `tsize` is not offered (see protocol.md, "TFTP").

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const NUL: u8 = 0;

/// Converts file bytes to netascii, block by block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    /// The second byte of an expansion (LF of CR LF, NUL of CR NUL) still to be written.
    carry: Option<u8>,
}

impl Encoder {
    /// A fresh encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a byte of an expansion is still to be written.
    pub fn has_carry(&self) -> bool {
        self.carry.is_some()
    }

    /// Encodes as much of `input` as fits in `out`; returns (input bytes consumed, output
    /// bytes written). It fills `out` unless `input` runs out first.
    pub fn encode(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let mut written = 0;
        if let Some(byte) = self.carry {
            let Some(slot) = out.first_mut() else {
                return (0, 0);
            };
            *slot = byte;
            written = 1;
            self.carry = None;
        }
        let mut consumed = 0;
        for &byte in input {
            if written == out.len() {
                break;
            }
            consumed += 1;
            let (first, second) = match byte {
                LF => (CR, Some(LF)),
                CR => (CR, Some(NUL)),
                other => (other, None),
            };
            out[written] = first;
            written += 1;
            if let Some(second) = second {
                if written == out.len() {
                    self.carry = Some(second);
                    break;
                }
                out[written] = second;
                written += 1;
            }
        }
        (consumed, written)
    }
}

/// Converts netascii from the wire back to file bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoder {
    /// The last byte seen was a CR whose meaning depends on the next one.
    after_cr: bool,
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, appending file bytes to `out`: CR LF becomes LF, CR NUL becomes CR.
    /// A CR followed by anything else is kept as it is (senders that do not follow the
    /// rule lose nothing).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            if self.after_cr {
                self.after_cr = false;
                match byte {
                    LF => {
                        out.push(LF);
                        continue;
                    }
                    NUL => {
                        out.push(CR);
                        continue;
                    }
                    _ => out.push(CR),
                }
            }
            if byte == CR {
                self.after_cr = true;
            } else {
                out.push(byte);
            }
        }
    }

    /// Ends the stream: a CR left at the very end is kept.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.after_cr) {
            out.push(CR);
        }
    }
}

/// The netascii form of `bytes`, in one piece (tests, small texts).
pub fn encode_all(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0; bytes.len() * 2];
    let (_, n) = Encoder::new().encode(bytes, &mut out);
    out.truncate(n);
    out
}

/// The file bytes of netascii `wire`, in one piece.
pub fn decode_all(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut decoder = Decoder::new();
    decoder.decode(wire, &mut out);
    decoder.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn line_ends_and_bare_cr() {
        assert_eq!(encode_all(b"a\nb\rc"), b"a\r\nb\r\0c");
        assert_eq!(decode_all(b"a\r\nb\r\0c"), b"a\nb\rc");
        assert_eq!(decode_all(b"x\ry\r"), b"x\ry\r");
    }

    /// Encodes `bytes` into blocks of `block` bytes, as a sender does, and returns them.
    fn blocks(bytes: &[u8], block: usize) -> Vec<Vec<u8>> {
        let mut encoder = Encoder::new();
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            let mut buf = vec![0; block];
            let (used, n) = encoder.encode(&bytes[at..], &mut buf);
            at += used;
            buf.truncate(n);
            let last = n < block;
            out.push(buf);
            if last {
                return out;
            }
        }
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(bytes in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(0u8), any::<u8>()], 0..600)) {
            prop_assert_eq!(decode_all(&encode_all(&bytes)), bytes);
        }

        #[test]
        fn blocks_split_anywhere_join_to_the_whole(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..300),
            block in 1usize..9,
        ) {
            let parts = blocks(&bytes, block);
            prop_assert!(parts[..parts.len() - 1].iter().all(|p| p.len() == block));
            let wire: Vec<u8> = parts.concat();
            prop_assert_eq!(&wire, &encode_all(&bytes));
            // Decoding block by block gives the same file as decoding at once.
            let mut decoder = Decoder::new();
            let mut file = Vec::new();
            for part in &parts {
                decoder.decode(part, &mut file);
            }
            decoder.finish(&mut file);
            prop_assert_eq!(file, bytes);
        }
    }
}
