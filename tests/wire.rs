//! The datagram codec from the outside: golden bytes for every message kind, round trips,
//! one rejection test per malformed form of [`DecodeError`], every truncation and every
//! single-bit flip of valid datagrams, and fuzzing (proptest plus a seeded loop over
//! hundreds of thousands of random and mutated datagrams) showing `decode` never panics and
//! that whatever decodes re-encodes to the very same bytes.

use byteorder::{ByteOrder, NetworkEndian};
use proptest::prelude::*;
use udpft::link::Rng;
use udpft::proto::wire::{
    Kind, Rule, HEADER_LEN, MAX_BITMAP, MAX_CHUNK, MAX_DATAGRAM, MAX_ERROR_TEXT, MAX_NAME_LEN,
    MAX_WINDOW, OVERHEAD, VERSION_WINDOWED,
};
use udpft::proto::{DecodeError, ErrorCode, Message};

/// Ack, session 0x01020304, seq 7, no payload.
const ACK: &[u8] = &[
    b'U', b'F', 1, 6, // magic, version, type
    0x01, 0x02, 0x03, 0x04, // session
    0, 0, 0, 0, 0, 0, 0, 7, // seq
    0, 0, // len
    0x5e, 0x74, 0xf6, 0x87, // crc32
];

/// Data, session 0xA1B2C3D4, seq 1, payload "hi!".
const DATA: &[u8] = &[
    b'U', b'F', 1, 5, //
    0xA1, 0xB2, 0xC3, 0xD4, //
    0, 0, 0, 0, 0, 0, 0, 1, //
    0, 3, //
    b'h', b'i', b'!', //
    0x87, 0x83, 0x12, 0x52,
];

/// Get, token 0xBEEF, chunk 1430, offset 0, name "a.txt".
const GET: &[u8] = &[
    b'U', b'F', 1, 2, //
    0, 0, 0xBE, 0xEF, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 15, //
    0x05, 0x96, // chunk 1430
    0, 0, 0, 0, 0, 0, 0, 0, // offset
    b'a', b'.', b't', b'x', b't', //
    0xe4, 0xba, 0x44, 0xe8,
];

/// Accept, session 0x11223344, token 0xBEEF, chunk 1430, size 1000, offset 0.
const ACCEPT: &[u8] = &[
    b'U', b'F', 1, 4, //
    0x11, 0x22, 0x33, 0x44, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 22, //
    0, 0, 0xBE, 0xEF, // token
    0x05, 0x96, // chunk
    0, 0, 0, 0, 0, 0, 0x03, 0xE8, // size
    0, 0, 0, 0, 0, 0, 0, 0, // offset
    0xa2, 0x65, 0x87, 0xd3,
];

/// Done, session 0x11223344, seq 2, size 1000, crc 0xDEADBEEF.
const DONE: &[u8] = &[
    b'U', b'F', 1, 7, //
    0x11, 0x22, 0x33, 0x44, //
    0, 0, 0, 0, 0, 0, 0, 2, //
    0, 12, //
    0, 0, 0, 0, 0, 0, 0x03, 0xE8, // size
    0xDE, 0xAD, 0xBE, 0xEF, // file crc
    0xd1, 0x9c, 0x41, 0x3d,
];

/// Error, session 5, code NotFound (1), text "nope".
const ERROR: &[u8] = &[
    b'U', b'F', 1, 8, //
    0, 0, 0, 5, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 6, //
    0, 1, // code
    b'n', b'o', b'p', b'e', //
    0xe8, 0x04, 0xa2, 0x26,
];

/// List, token 9, chunk 512.
const LIST: &[u8] = &[
    b'U', b'F', 1, 1, //
    0, 0, 0, 9, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 2, //
    0x02, 0x00, //
    0xff, 0x66, 0x66, 0x3c,
];

/// Put, token 0x10, chunk 64, size 65536, overwrite, name "up.bin".
const PUT: &[u8] = &[
    b'U', b'F', 1, 3, //
    0, 0, 0, 0x10, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 17, //
    0, 64, // chunk
    0, 0, 0, 0, 0, 1, 0, 0, // size
    1, // flags: overwrite
    b'u', b'p', b'.', b'b', b'i', b'n', //
    0x5d, 0x75, 0xd2, 0x19,
];

/// Version 2 (windowed, protocol.md §20.1): Get, token 0xBEEF, chunk 1430, window 64,
/// offset 0, name "a.txt".
const GET_WINDOWED: &[u8] = &[
    b'U', b'F', 2, 2, //
    0, 0, 0xBE, 0xEF, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 17, //
    0x05, 0x96, // chunk 1430
    0, 64, // window
    0, 0, 0, 0, 0, 0, 0, 0, // offset
    b'a', b'.', b't', b'x', b't', //
    0x6d, 0x60, 0x2f, 0x1d,
];

/// Version 2: Accept, session 0x11223344, token 0xBEEF, chunk 1430, window 64, size 1000.
const ACCEPT_WINDOWED: &[u8] = &[
    b'U', b'F', 2, 4, //
    0x11, 0x22, 0x33, 0x44, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 24, //
    0, 0, 0xBE, 0xEF, // token
    0x05, 0x96, // chunk
    0, 64, // window
    0, 0, 0, 0, 0, 0, 0x03, 0xE8, // size
    0, 0, 0, 0, 0, 0, 0, 0, // offset
    0x28, 0x8b, 0x12, 0x4a,
];

/// Version 2: the selective Ack, session 0x01020304: everything up to 7, and 9 and 11.
const SACK: &[u8] = &[
    b'U',
    b'F',
    2,
    6, //
    0x01,
    0x02,
    0x03,
    0x04, //
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    7, // cumulative
    0,
    1,           //
    0b1010_0000, // bit 7: message 9, bit 5: message 11
    0x3d,
    0xd7,
    0x44,
    0xd5,
];

/// Version 2: List, token 9, chunk 512, window 8.
const LIST_WINDOWED: &[u8] = &[
    b'U', b'F', 2, 1, //
    0, 0, 0, 9, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 4, //
    0x02, 0x00, 0, 8, //
    0xb8, 0xc9, 0x60, 0x53,
];

/// Version 2: Put, token 0x10, chunk 64, window 16, size 65536, overwrite, name "up.bin".
const PUT_WINDOWED: &[u8] = &[
    b'U', b'F', 2, 3, //
    0, 0, 0, 0x10, //
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 19, //
    0, 64, 0, 16, // chunk, window
    0, 0, 0, 0, 0, 1, 0, 0, // size
    1, // flags: overwrite
    b'u', b'p', b'.', b'b', b'i', b'n', //
    0xb5, 0x08, 0x6d, 0x9f,
];

/// Every golden datagram with the message it stands for.
fn golden() -> Vec<(&'static [u8], Message<'static>)> {
    vec![
        (
            ACK,
            Message::Ack {
                session: 0x0102_0304,
                seq: 7,
            },
        ),
        (
            DATA,
            Message::Data {
                session: 0xA1B2_C3D4,
                seq: 1,
                payload: b"hi!",
            },
        ),
        (
            GET,
            Message::Get {
                token: 0xBEEF,
                chunk: 1430,
                window: 1,
                offset: 0,
                name: b"a.txt",
            },
        ),
        (
            ACCEPT,
            Message::Accept {
                session: 0x1122_3344,
                token: 0xBEEF,
                chunk: 1430,
                window: 1,
                size: 1000,
                offset: 0,
            },
        ),
        (
            DONE,
            Message::Done {
                session: 0x1122_3344,
                seq: 2,
                size: 1000,
                crc: 0xDEAD_BEEF,
            },
        ),
        (
            ERROR,
            Message::Error {
                session: 5,
                code: ErrorCode::NotFound,
                text: b"nope",
            },
        ),
        (
            LIST,
            Message::List {
                token: 9,
                chunk: 512,
                window: 1,
            },
        ),
        (
            PUT,
            Message::Put {
                token: 0x10,
                chunk: 64,
                window: 1,
                size: 65536,
                overwrite: true,
                name: b"up.bin",
            },
        ),
        (
            GET_WINDOWED,
            Message::Get {
                token: 0xBEEF,
                chunk: 1430,
                window: 64,
                offset: 0,
                name: b"a.txt",
            },
        ),
        (
            ACCEPT_WINDOWED,
            Message::Accept {
                session: 0x1122_3344,
                token: 0xBEEF,
                chunk: 1430,
                window: 64,
                size: 1000,
                offset: 0,
            },
        ),
        (
            SACK,
            Message::Sack {
                session: 0x0102_0304,
                seq: 7,
                bitmap: &[0b1010_0000],
            },
        ),
        (
            LIST_WINDOWED,
            Message::List {
                token: 9,
                chunk: 512,
                window: 8,
            },
        ),
        (
            PUT_WINDOWED,
            Message::Put {
                token: 0x10,
                chunk: 64,
                window: 16,
                size: 65536,
                overwrite: true,
                name: b"up.bin",
            },
        ),
    ]
}

fn encode(message: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = message.encode(&mut buf);
    assert_eq!(n, message.encoded_len());
    buf.truncate(n);
    buf
}

/// Builds a datagram from raw parts with a correct CRC, so payload rules can be probed
/// without the encoder's own checks getting in the way.
fn raw(type_byte: u8, session: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![b'U', b'F', 1, type_byte];
    let mut field = [0u8; 8];
    NetworkEndian::write_u32(&mut field[..4], session);
    bytes.extend_from_slice(&field[..4]);
    NetworkEndian::write_u64(&mut field, seq);
    bytes.extend_from_slice(&field);
    NetworkEndian::write_u16(&mut field[..2], payload.len() as u16);
    bytes.extend_from_slice(&field[..2]);
    bytes.extend_from_slice(payload);
    seal(&mut bytes);
    bytes
}

/// Appends a CRC32 trailer over everything so far.
fn seal(bytes: &mut Vec<u8>) {
    let crc = crc32fast::hash(bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
}

/// Rewrites the trailer of a complete datagram after its body was changed.
fn reseal(bytes: &mut Vec<u8>) {
    bytes.truncate(bytes.len() - 4);
    seal(bytes);
}

#[test]
fn every_kind_encodes_to_its_golden_bytes() {
    for (bytes, message) in golden() {
        assert_eq!(encode(&message), bytes, "{message:?}");
    }
}

#[test]
fn every_golden_datagram_decodes_to_its_message() {
    for (bytes, message) in golden() {
        assert_eq!(Message::decode(bytes), Ok(message));
    }
}

#[test]
fn golden_set_covers_every_kind() {
    let kinds: Vec<Kind> = golden().iter().map(|(_, m)| m.kind()).collect();
    for kind in [
        Kind::List,
        Kind::Get,
        Kind::Put,
        Kind::Accept,
        Kind::Data,
        Kind::Ack,
        Kind::Done,
        Kind::Error,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} has no golden datagram");
    }
}

/// A spread of messages of every kind, including edge values.
fn samples() -> Vec<Message<'static>> {
    static BIG: [u8; MAX_CHUNK as usize] = [0xA5; MAX_CHUNK as usize];
    static NAME: [u8; MAX_NAME_LEN] = [b'n'; MAX_NAME_LEN];
    static TEXT: [u8; MAX_ERROR_TEXT] = [b't'; MAX_ERROR_TEXT];
    vec![
        Message::List {
            token: u32::MAX,
            chunk: 0,
            window: 1,
        },
        Message::Get {
            token: 1,
            chunk: u16::MAX,
            window: 1,
            offset: u64::MAX,
            name: &NAME,
        },
        Message::Get {
            token: 2,
            chunk: 64,
            window: 1,
            offset: 12,
            name: b"x",
        },
        Message::Put {
            token: 3,
            chunk: 1430,
            window: 1,
            size: 0,
            overwrite: false,
            name: b"empty",
        },
        Message::Put {
            token: 4,
            chunk: 1430,
            window: 1,
            size: u64::MAX,
            overwrite: true,
            name: &NAME,
        },
        Message::Accept {
            session: 0,
            token: 0,
            chunk: 0,
            window: 1,
            size: 0,
            offset: 0,
        },
        Message::Accept {
            session: u32::MAX,
            token: u32::MAX,
            chunk: MAX_CHUNK,
            window: 1,
            size: u64::MAX,
            offset: u64::MAX,
        },
        Message::Data {
            session: 7,
            seq: 1,
            payload: b"z",
        },
        Message::Data {
            session: 7,
            seq: u64::MAX,
            payload: &BIG,
        },
        Message::Ack { session: 0, seq: 0 },
        Message::Ack {
            session: u32::MAX,
            seq: u64::MAX,
        },
        Message::Done {
            session: 1,
            seq: 1,
            size: 0,
            crc: 0,
        },
        Message::Error {
            session: 9,
            code: ErrorCode::Unknown(0xFFFF),
            text: b"",
        },
        Message::Error {
            session: 9,
            code: ErrorCode::Cancelled,
            text: &TEXT,
        },
        Message::List {
            token: 1,
            chunk: 1430,
            window: MAX_WINDOW,
        },
        Message::Get {
            token: 2,
            chunk: 64,
            window: 2,
            offset: u64::MAX,
            name: &NAME,
        },
        Message::Put {
            token: 3,
            chunk: MAX_CHUNK,
            window: 200,
            size: 0,
            overwrite: false,
            name: b"w",
        },
        Message::Accept {
            session: u32::MAX,
            token: 1,
            chunk: 64,
            window: 2,
            size: u64::MAX,
            offset: 3,
        },
        Message::Sack {
            session: 5,
            seq: 0,
            bitmap: &[],
        },
        Message::Sack {
            session: 5,
            seq: u64::MAX,
            bitmap: &[0xFF; MAX_BITMAP],
        },
    ]
}

#[test]
fn every_kind_round_trips() {
    for message in samples() {
        let bytes = encode(&message);
        assert_eq!(Message::decode(&bytes), Ok(message));
    }
}

#[test]
fn every_error_code_round_trips() {
    for n in 0..=40u16 {
        let message = Message::Error {
            session: 1,
            code: ErrorCode::from_u16(n),
            text: b"why",
        };
        let bytes = encode(&message);
        assert_eq!(Message::decode(&bytes), Ok(message));
        assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
    }
}

#[test]
fn encoder_clips_an_over_long_error_text() {
    let text = vec![b'e'; MAX_ERROR_TEXT + 100];
    let bytes = encode(&Message::Error {
        session: 1,
        code: ErrorCode::Io,
        text: &text,
    });
    assert_eq!(bytes.len(), OVERHEAD + 2 + MAX_ERROR_TEXT);
    match Message::decode(&bytes) {
        Ok(Message::Error { text, .. }) => assert_eq!(text.len(), MAX_ERROR_TEXT),
        other => panic!("{other:?}"),
    }
}

// One test per malformed form, in the order the decoder checks them.

#[test]
fn too_short_is_rejected() {
    assert_eq!(Message::decode(&[]), Err(DecodeError::TooShort));
    assert_eq!(
        Message::decode(&ACK[..OVERHEAD - 1]),
        Err(DecodeError::TooShort)
    );
}

#[test]
fn bad_magic_is_rejected() {
    let mut bytes = ACK.to_vec();
    bytes[0] = b'X';
    reseal(&mut bytes);
    assert_eq!(Message::decode(&bytes), Err(DecodeError::BadMagic));
}

#[test]
fn unsupported_version_is_rejected() {
    let mut bytes = ACK.to_vec();
    bytes[2] = 3;
    reseal(&mut bytes);
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::UnsupportedVersion(3))
    );
}

#[test]
fn bad_crc_is_rejected() {
    let mut bytes = DATA.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(Message::decode(&bytes), Err(DecodeError::BadCrc));
}

#[test]
fn unknown_type_is_rejected() {
    // 9 is Sum (protocol.md §22): the first unknown type is 10.
    for t in [0u8, 10, 0xFF] {
        assert_eq!(
            Message::decode(&raw(t, 1, 0, b"")),
            Err(DecodeError::UnknownType(t))
        );
    }
}

#[test]
fn length_field_beyond_the_datagram_is_rejected() {
    let mut bytes = DATA.to_vec();
    bytes[17] = 4; // claims 4 payload bytes, holds 3
    reseal(&mut bytes);
    assert_eq!(Message::decode(&bytes), Err(DecodeError::LengthMismatch));
}

#[test]
fn bytes_past_the_declared_payload_are_rejected() {
    let mut bytes = DATA.to_vec();
    bytes[17] = 2; // claims 2 payload bytes, holds 3
    reseal(&mut bytes);
    assert_eq!(Message::decode(&bytes), Err(DecodeError::TrailingBytes));
}

#[test]
fn get_with_empty_name_is_rejected() {
    let bytes = raw(Kind::Get as u8, 1, 0, &[0x05, 0x96, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::BadPayload(Kind::Get, Rule::EmptyName))
    );
}

#[test]
fn get_with_over_long_name_is_rejected() {
    let mut payload = vec![0u8; 10];
    payload.extend(std::iter::repeat_n(b'n', MAX_NAME_LEN + 1));
    assert_eq!(
        Message::decode(&raw(Kind::Get as u8, 1, 0, &payload)),
        Err(DecodeError::BadPayload(Kind::Get, Rule::LongName))
    );
}

#[test]
fn put_with_unknown_flag_bits_is_rejected() {
    for flags in [0x02u8, 0x80, 0xFF] {
        let mut payload = vec![0, 64, 0, 0, 0, 0, 0, 0, 0, 1, flags];
        payload.extend_from_slice(b"f");
        assert_eq!(
            Message::decode(&raw(Kind::Put as u8, 1, 0, &payload)),
            Err(DecodeError::BadPayload(Kind::Put, Rule::UnknownFlags)),
            "flags {flags:#x}"
        );
    }
}

#[test]
fn data_numbered_zero_is_rejected() {
    assert_eq!(
        Message::decode(&raw(Kind::Data as u8, 1, 0, b"x")),
        Err(DecodeError::BadPayload(Kind::Data, Rule::ZeroSeq))
    );
}

#[test]
fn empty_data_is_rejected() {
    assert_eq!(
        Message::decode(&raw(Kind::Data as u8, 1, 1, b"")),
        Err(DecodeError::BadPayload(Kind::Data, Rule::EmptyData))
    );
}

#[test]
fn short_accept_is_rejected() {
    let full = &ACCEPT[HEADER_LEN..ACCEPT.len() - 4];
    for cut in 0..full.len() {
        assert_eq!(
            Message::decode(&raw(Kind::Accept as u8, 1, 0, &full[..cut])),
            Err(DecodeError::BadPayload(Kind::Accept, Rule::Short)),
            "accept payload of {cut} bytes"
        );
    }
}

#[test]
fn over_long_fixed_payloads_are_rejected() {
    let cases: [(Kind, &[u8]); 4] = [
        (Kind::List, LIST),
        (Kind::Accept, ACCEPT),
        (Kind::Done, DONE),
        (Kind::Ack, ACK),
    ];
    for (kind, bytes) in cases {
        let mut payload = bytes[HEADER_LEN..bytes.len() - 4].to_vec();
        payload.push(0);
        let seq = NetworkEndian::read_u64(&bytes[8..16]);
        assert_eq!(
            Message::decode(&raw(kind as u8, 1, seq, &payload)),
            Err(DecodeError::BadPayload(kind, Rule::Long)),
            "{kind:?}"
        );
    }
}

#[test]
fn nonzero_seq_on_a_request_or_accept_or_error_is_rejected() {
    let cases: [(Kind, &[u8]); 5] = [
        (Kind::List, LIST),
        (Kind::Get, GET),
        (Kind::Put, PUT),
        (Kind::Accept, ACCEPT),
        (Kind::Error, ERROR),
    ];
    for (kind, bytes) in cases {
        let payload = &bytes[HEADER_LEN..bytes.len() - 4];
        assert_eq!(
            Message::decode(&raw(kind as u8, 1, 1, payload)),
            Err(DecodeError::BadPayload(kind, Rule::NonZeroSeq)),
            "{kind:?}"
        );
    }
}

#[test]
fn error_text_longer_than_the_limit_is_rejected() {
    let mut payload = vec![0, 1];
    payload.extend(std::iter::repeat_n(b'e', MAX_ERROR_TEXT + 1));
    assert_eq!(
        Message::decode(&raw(Kind::Error as u8, 1, 0, &payload)),
        Err(DecodeError::BadPayload(Kind::Error, Rule::LongText))
    );
    payload.pop();
    assert!(Message::decode(&raw(Kind::Error as u8, 1, 0, &payload)).is_ok());
}

#[test]
fn error_without_code_is_rejected() {
    assert_eq!(
        Message::decode(&raw(Kind::Error as u8, 1, 0, &[0])),
        Err(DecodeError::BadPayload(Kind::Error, Rule::Short))
    );
}

#[test]
fn done_short_is_rejected() {
    assert_eq!(
        Message::decode(&raw(Kind::Done as u8, 1, 2, &[0; 11])),
        Err(DecodeError::BadPayload(Kind::Done, Rule::Short))
    );
}

/// Valid datagrams to damage: the golden set plus the samples.
fn corpus() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = golden().iter().map(|(b, _)| b.to_vec()).collect();
    all.extend(
        samples()
            .iter()
            .filter(|m| m.encoded_len() < 2048)
            .map(encode),
    );
    all
}

#[test]
fn every_truncation_of_a_valid_datagram_is_rejected() {
    for bytes in corpus() {
        for cut in 0..bytes.len() {
            assert!(
                Message::decode(&bytes[..cut]).is_err(),
                "{:?} cut to {cut} bytes decoded",
                Message::decode(&bytes)
            );
        }
    }
}

#[test]
fn every_single_bit_flip_of_a_valid_datagram_is_rejected() {
    let mut big = encode(&Message::Data {
        session: 3,
        seq: 77,
        payload: &[0x5A; 1430],
    });
    let mut all = corpus();
    all.push(std::mem::take(&mut big));
    for mut bytes in all {
        for bit in 0..bytes.len() * 8 {
            bytes[bit / 8] ^= 0x80 >> (bit % 8);
            assert!(
                Message::decode(&bytes).is_err(),
                "flip of bit {bit} decoded"
            );
            bytes[bit / 8] ^= 0x80 >> (bit % 8);
        }
        assert!(Message::decode(&bytes).is_ok());
    }
}

/// Asserts the decoder's contract for any input: no panic, and a datagram that decodes
/// re-encodes to exactly its bytes (there is one encoding per message).
fn check_any(bytes: &[u8]) {
    if let Ok(message) = Message::decode(bytes) {
        assert_eq!(encode(&message), bytes, "{message:?}");
    }
}

#[test]
fn seeded_random_and_mutated_datagrams_never_panic_and_round_trip() {
    let corpus = corpus();
    let mut rng = Rng::new(0x5EED_CAFE);
    let mut decoded = 0u64;
    for round in 0..200_000u64 {
        let bytes = match round % 4 {
            // Pure noise, mostly too short or bad magic.
            0 => {
                let len = rng.below(64) as usize;
                (0..len).map(|_| rng.next_u64() as u8).collect()
            }
            // A valid header and type with random payload and a correct CRC: reaches the
            // payload rules.
            1 => {
                let len = rng.below(40) as usize;
                let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let seq = if rng.chance(0.5) { 0 } else { rng.below(4) };
                raw(1 + rng.below(9) as u8, rng.next_u64() as u32, seq, &payload)
            }
            // A valid datagram with a few random bytes changed, CRC left alone.
            2 => {
                let mut b = corpus[rng.below(corpus.len() as u64) as usize].clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] = rng.next_u64() as u8;
                }
                b
            }
            // The same, CRC fixed up afterwards, and maybe resized.
            _ => {
                let mut b = corpus[rng.below(corpus.len() as u64) as usize].clone();
                b.truncate(b.len() - 4);
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] = rng.next_u64() as u8;
                }
                match rng.below(3) {
                    0 => b.truncate(rng.below(b.len() as u64 + 1) as usize),
                    1 => b.push(rng.next_u64() as u8),
                    _ => {}
                }
                seal(&mut b);
                b
            }
        };
        if Message::decode(&bytes).is_ok() {
            decoded += 1;
        }
        check_any(&bytes);
    }
    // The structured rounds must reach the success path, or the loop tests too little.
    assert!(decoded > 10_000, "only {decoded} decoded");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_any(&bytes);
    }

    #[test]
    fn arbitrary_bodies_with_a_valid_crc_round_trip(
        type_byte in 0u8..10,
        session in any::<u32>(),
        seq in prop_oneof![Just(0u64), Just(1u64), any::<u64>()],
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        check_any(&raw(type_byte, session, seq, &payload));
    }

    #[test]
    fn data_round_trips(
        session in any::<u32>(),
        seq in 1u64..,
        payload in proptest::collection::vec(any::<u8>(), 1..2000),
    ) {
        let message = Message::Data { session, seq, payload: &payload };
        let bytes = encode(&message);
        prop_assert_eq!(Message::decode(&bytes), Ok(message));
    }

    #[test]
    fn put_round_trips(
        token in any::<u32>(),
        chunk in any::<u16>(),
        size in any::<u64>(),
        overwrite in any::<bool>(),
        name in proptest::collection::vec(any::<u8>(), 1..=MAX_NAME_LEN),
    ) {
        let message = Message::Put { token, chunk, window: 1, size, overwrite, name: &name };
        let bytes = encode(&message);
        prop_assert_eq!(Message::decode(&bytes), Ok(message));
    }
}

#[test]
fn bad_payload_names_the_rule_it_broke() {
    let error = Message::decode(&raw(
        Kind::Put as u8,
        1,
        0,
        &[0, 64, 0, 0, 0, 0, 0, 0, 0, 1, 0x04, b'f'],
    ))
    .unwrap_err();
    assert_eq!(
        error,
        DecodeError::BadPayload(Kind::Put, Rule::UnknownFlags)
    );
    assert_eq!(
        error.to_string(),
        "malformed put payload: undefined flag bits set"
    );
}

#[test]
fn kind_and_error_code_tables_agree_with_protocol_md() {
    let kinds: Vec<(u8, &str)> = Kind::ALL.iter().map(|k| (*k as u8, k.name())).collect();
    assert_eq!(
        kinds,
        [
            (1, "list"),
            (2, "get"),
            (3, "put"),
            (4, "accept"),
            (5, "data"),
            (6, "ack"),
            (7, "done"),
            (8, "error"),
            (9, "sum")
        ]
    );
    let codes: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.to_u16()).collect();
    assert_eq!(codes, (0..=15).collect::<Vec<u16>>());
    assert_eq!(ErrorCode::ChecksumMismatch.to_string(), "checksum mismatch");
}

// Version 2: the windowed layouts (protocol.md §20.1).

/// A datagram of version 2 from raw parts with a correct CRC.
fn raw_windowed(type_byte: u8, session: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = raw(type_byte, session, seq, payload);
    bytes[2] = VERSION_WINDOWED;
    reseal(&mut bytes);
    bytes
}

#[test]
fn a_window_of_one_is_encoded_as_version_1_byte_for_byte() {
    let get = Message::Get {
        token: 0xBEEF,
        chunk: 1430,
        window: 1,
        offset: 0,
        name: b"a.txt",
    };
    assert_eq!(encode(&get), GET);
    assert_eq!(get.version(), 1);
    let accept = Message::Accept {
        session: 0x1122_3344,
        token: 0xBEEF,
        chunk: 1430,
        window: 1,
        size: 1000,
        offset: 0,
    };
    assert_eq!(encode(&accept), ACCEPT);
}

#[test]
fn a_windowed_datagram_with_a_window_outside_2_to_256_is_rejected() {
    for window in [0u16, 1, MAX_WINDOW + 1, u16::MAX] {
        let mut payload = vec![0x05, 0x96];
        payload.extend_from_slice(&window.to_be_bytes());
        assert_eq!(
            Message::decode(&raw_windowed(Kind::List as u8, 9, 0, &payload)),
            Err(DecodeError::BadPayload(Kind::List, Rule::BadWindow)),
            "window {window}"
        );
    }
}

#[test]
fn a_windowed_request_of_the_version_1_layout_is_rejected() {
    // A version-1 List payload (2 bytes) under version 2 lacks the window.
    assert_eq!(
        Message::decode(&raw_windowed(Kind::List as u8, 9, 0, &[0x05, 0x96])),
        Err(DecodeError::BadPayload(Kind::List, Rule::Short))
    );
}

#[test]
fn a_sack_bitmap_is_at_most_32_bytes_without_a_trailing_zero() {
    assert_eq!(
        Message::decode(&raw_windowed(
            Kind::Ack as u8,
            1,
            3,
            &[0xFF; MAX_BITMAP + 1]
        )),
        Err(DecodeError::BadPayload(Kind::Ack, Rule::LongBitmap))
    );
    assert_eq!(
        Message::decode(&raw_windowed(Kind::Ack as u8, 1, 3, &[0x80, 0])),
        Err(DecodeError::BadPayload(Kind::Ack, Rule::PaddedBitmap))
    );
    assert!(Message::decode(&raw_windowed(Kind::Ack as u8, 1, 3, &[0, 0x80])).is_ok());
}

#[test]
fn version_2_defines_no_data_done_error_or_sum() {
    for kind in [Kind::Data, Kind::Done, Kind::Error, Kind::Sum] {
        let bytes = raw_windowed(kind as u8, 1, 1, &[0; 12]);
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::UnknownType(kind as u8)),
            "{kind:?}"
        );
    }
}
