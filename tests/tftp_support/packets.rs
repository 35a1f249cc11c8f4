//! TFTP packets for tests, built with the library's own encoder from readable arguments:
//! `rrq("f", "octet", &[("blksize", "8")])`, `data(1, b"..")`, `ack(1)`, `error(8, "..")`.

#![allow(dead_code)] // each test binary uses its own part of the helpers

use udpft::tftp::wire::{Mode, Options, Packet, Request};

fn options(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (name, value) in pairs {
        raw.extend_from_slice(name.as_bytes());
        raw.push(0);
        raw.extend_from_slice(value.as_bytes());
        raw.push(0);
    }
    raw
}

fn mode(name: &str) -> Mode {
    match name {
        "netascii" => Mode::Netascii,
        "mail" => Mode::Mail,
        _ => Mode::Octet,
    }
}

fn encode(packet: Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0; packet.encoded_len()];
    let n = packet.encode(&mut buf);
    buf.truncate(n);
    buf
}

fn request(name: &str, mode_name: &str, pairs: &[(&str, &str)], write: bool) -> Vec<u8> {
    let raw = options(pairs);
    let request = Request {
        filename: name.as_bytes(),
        mode: mode(mode_name),
        options: Options::new(&raw).expect("well-formed options"),
    };
    encode(if write {
        Packet::Wrq(request)
    } else {
        Packet::Rrq(request)
    })
}

/// A read request.
pub fn rrq(name: &str, mode_name: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    request(name, mode_name, pairs, false)
}

/// A write request.
pub fn wrq(name: &str, mode_name: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    request(name, mode_name, pairs, true)
}

/// DATA `block` with `bytes`.
pub fn data(block: u16, bytes: &[u8]) -> Vec<u8> {
    encode(Packet::Data { block, data: bytes })
}

/// ACK `block`.
pub fn ack(block: u16) -> Vec<u8> {
    encode(Packet::Ack { block })
}

/// ERROR `code` saying `text`.
pub fn error(code: u16, text: &str) -> Vec<u8> {
    encode(Packet::Error {
        code,
        text: text.as_bytes(),
    })
}

/// An OACK granting `pairs`.
pub fn oack(pairs: &[(&str, &str)]) -> Vec<u8> {
    let raw = options(pairs);
    encode(Packet::Oack(Options::new(&raw).expect("options")))
}

/// A readable form of a packet for assertion messages: `DATA 3 (512 B)`, `ACK 0`...
pub fn show(bytes: &[u8]) -> String {
    match Packet::decode(bytes) {
        Ok(Packet::Rrq(r)) => format!("RRQ {}", String::from_utf8_lossy(r.filename)),
        Ok(Packet::Wrq(r)) => format!("WRQ {}", String::from_utf8_lossy(r.filename)),
        Ok(Packet::Data { block, data }) => format!("DATA {block} ({} B)", data.len()),
        Ok(Packet::Ack { block }) => format!("ACK {block}"),
        Ok(Packet::Error { code, text }) => {
            format!("ERROR {code} {}", String::from_utf8_lossy(text))
        }
        Ok(Packet::Oack(o)) => format!(
            "OACK {}",
            String::from_utf8_lossy(o.as_bytes())
                .replace('\0', " ")
                .trim_end()
        ),
        Err(e) => format!("malformed ({e})"),
    }
}
