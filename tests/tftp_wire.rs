//! The TFTP codec from the outside: golden bytes of every packet, one rejection per
//! malformed form of `DecodeError`, every truncation of valid packets, the classifier that
//! tells TFTP from udpft, and fuzzing (proptest plus a seeded loop over random and mutated
//! datagrams): decoding never panics, and whatever decodes re-encodes to a packet that
//! decodes to the same thing.

use proptest::prelude::*;
use udpft::link::Rng;
use udpft::tftp::wire::{is_tftp, DecodeError, Mode, Options, Packet, Request, MAX_BLKSIZE};

/// RRQ "pxelinux.0", octet, blksize 1468 and tsize 0.
const RRQ: &[u8] = b"\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00tsize\x000\x00";

#[test]
fn golden_bytes_of_every_packet() {
    let Ok(Packet::Rrq(r)) = Packet::decode(RRQ) else {
        panic!()
    };
    assert_eq!(r.filename, b"pxelinux.0");
    assert_eq!(r.mode, Mode::Octet);
    let pairs: Vec<_> = r.options.iter().collect();
    assert_eq!(pairs, [(&b"blksize"[..], &b"1468"[..]), (b"tsize", b"0")]);
    let cases: [(&[u8], Packet<'_>); 6] = [
        (RRQ, Packet::Rrq(r)),
        (
            b"\x00\x02up.bin\x00NetASCII\x00",
            Packet::Wrq(Request {
                filename: b"up.bin",
                mode: Mode::Netascii,
                options: Options::EMPTY,
            }),
        ),
        (
            b"\x00\x03\x00\x07hi",
            Packet::Data {
                block: 7,
                data: b"hi",
            },
        ),
        (b"\x00\x04\xff\xff", Packet::Ack { block: 65_535 }),
        (
            b"\x00\x05\x00\x01no such file\x00",
            Packet::Error {
                code: 1,
                text: b"no such file",
            },
        ),
        (
            b"\x00\x06blksize\x00512\x00",
            Packet::Oack(Options::new(b"blksize\x00512\x00").unwrap()),
        ),
    ];
    for (bytes, packet) in cases {
        assert_eq!(Packet::decode(bytes), Ok(packet), "{bytes:?}");
        let mut buf = vec![0; packet.encoded_len()];
        let n = packet.encode(&mut buf);
        // Mode names are written in lower case.
        assert!(buf[..n].eq_ignore_ascii_case(bytes), "{bytes:?}");
    }
}

#[test]
fn one_rejection_per_malformed_form() {
    let cases: [(&[u8], DecodeError); 14] = [
        (b"", DecodeError::TooShort),
        (b"\x00", DecodeError::TooShort),
        (b"\x00\x07", DecodeError::UnknownOpcode(7)),
        (b"UF\x01\x05", DecodeError::UnknownOpcode(0x5546)),
        (b"\x00\x01file", DecodeError::Unterminated),
        (b"\x00\x01file\x00octet", DecodeError::Unterminated),
        (b"\x00\x01\x00octet\x00", DecodeError::EmptyFilename),
        (b"\x00\x01f\x00binary\x00", DecodeError::UnknownMode),
        (
            b"\x00\x01f\x00octet\x00blksize\x00",
            DecodeError::MissingValue,
        ),
        (b"\x00\x06\x00512\x00", DecodeError::EmptyOptionName),
        (b"\x00\x04\x00\x01\x00", DecodeError::TrailingBytes),
        (b"\x00\x05\x00\x01text\x00more", DecodeError::TrailingBytes),
        (b"\x00\x04\x00", DecodeError::TooShort),
        (b"\x00\x06", DecodeError::EmptyOack),
    ];
    for (bytes, error) in cases {
        assert_eq!(Packet::decode(bytes), Err(error), "{bytes:?}");
    }
    let mut long = vec![0, 3, 0, 1];
    long.resize(4 + MAX_BLKSIZE as usize + 1, 0xAA);
    assert_eq!(Packet::decode(&long), Err(DecodeError::DataTooLong));
    long.pop();
    assert!(Packet::decode(&long).is_ok());
    assert_eq!(
        Packet::decode(b"\x00\x05\x00\x01text"),
        Err(DecodeError::Unterminated)
    );
}

#[test]
fn every_truncation_of_a_request_is_rejected() {
    for n in 0..RRQ.len() {
        // Cutting inside the options leaves an unterminated or valueless option, or (at a
        // pair boundary) fewer options: never a panic, never the original.
        match Packet::decode(&RRQ[..n]) {
            Ok(Packet::Rrq(r)) => assert!(r.options.iter().count() < 2, "cut at {n}"),
            Ok(other) => panic!("cut at {n}: {other:?}"),
            Err(_) => {}
        }
    }
}

#[test]
fn the_classifier_tells_tftp_from_udpft() {
    for opcode in 1..=6u8 {
        assert!(is_tftp(&[0, opcode, 0, 0]));
    }
    for bytes in [
        &b""[..],
        b"\x00",
        b"\x00\x00",
        b"\x00\x07",
        b"UF\x01\x02",
        b"\x01\x01",
    ] {
        assert!(!is_tftp(bytes), "{bytes:?}");
    }
}

/// Decoding never panics; whatever decodes encodes to a packet that decodes the same.
fn check(bytes: &[u8]) {
    if let Ok(packet) = Packet::decode(bytes) {
        assert_eq!(
            packet.opcode() as u16,
            u16::from_be_bytes([bytes[0], bytes[1]])
        );
        let mut buf = vec![0; packet.encoded_len()];
        let n = packet.encode(&mut buf);
        assert_eq!(n, packet.encoded_len());
        let again = Packet::decode(&buf[..n]).expect("an encoded packet decodes");
        // Error texts may be clipped and modes lower-cased: compare what survives.
        match (packet, again) {
            (Packet::Error { code: a, .. }, Packet::Error { code: b, .. }) => assert_eq!(a, b),
            (a, b) => assert_eq!(a, b),
        }
    }
}

#[test]
fn random_and_mutated_datagrams_never_panic() {
    let mut rng = Rng::new(11);
    let seeds: [&[u8]; 5] = [
        RRQ,
        b"\x00\x03\x00\x01data",
        b"\x00\x04\x00\x01",
        b"\x00\x05\x00\x02x\x00",
        b"\x00\x06tsize\x009\x00",
    ];
    for i in 0..200_000 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let len = rng.below(80) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if len >= 2 && rng.chance(0.8) {
                b[0] = 0;
                b[1] = 1 + rng.below(6) as u8;
            }
            b
        } else {
            let mut b = seeds[i % seeds.len()].to_vec();
            for _ in 0..1 + rng.below(3) {
                match rng.below(3) {
                    0 if !b.is_empty() => {
                        let at = rng.below(b.len() as u64) as usize;
                        b[at] ^= 1 << rng.below(8);
                    }
                    1 if !b.is_empty() => {
                        b.truncate(rng.below(b.len() as u64) as usize);
                    }
                    _ => b.push(rng.next_u64() as u8),
                }
            }
            b
        };
        check(&bytes);
    }
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&bytes);
    }

    #[test]
    fn requests_round_trip(
        name in "[a-zA-Z0-9._/-]{1,40}",
        netascii in any::<bool>(),
        pairs in proptest::collection::vec(("[a-z]{1,10}", "[0-9]{1,6}"), 0..5),
    ) {
        let mut raw = Vec::new();
        for (n, v) in &pairs {
            raw.extend_from_slice(n.as_bytes());
            raw.push(0);
            raw.extend_from_slice(v.as_bytes());
            raw.push(0);
        }
        let packet = Packet::Rrq(Request {
            filename: name.as_bytes(),
            mode: if netascii { Mode::Netascii } else { Mode::Octet },
            options: Options::new(&raw).unwrap(),
        });
        let mut buf = vec![0; packet.encoded_len()];
        let n = packet.encode(&mut buf);
        prop_assert_eq!(Packet::decode(&buf[..n]), Ok(packet));
    }
}
