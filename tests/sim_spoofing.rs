//! Spoofed peers in the simulated network, in virtual time: a request from an address that
//! never answers gets one small Accept per datagram and nothing else, however long the
//! server's timers run; data flows only after the peer echoes the session id; the server's
//! session table stays empty until then. (The same rules against real servers of every
//! model are in `tests/admission.rs`.)

mod common;

use common::{lan, Sim, SERVER};
use std::net::SocketAddr;
use std::time::Duration;
use udpft::proto::refusal::AMPLIFICATION_FACTOR;
use udpft::proto::wire::{Kind, DEFAULT_CHUNK, MAX_DATAGRAM};
use udpft::proto::Message;

/// An address no endpoint of the simulation answers from.
const SPOOFED: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 9, 9)),
    4242,
);

fn encode(message: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = message.encode(&mut buf);
    buf.truncate(n);
    buf
}

/// What reached the spoofed address, decoded to kinds, and its total size.
fn replies(sim: &Sim) -> (Vec<Kind>, usize) {
    let to_us = sim.strays.iter().filter(|(to, _)| *to == SPOOFED);
    let kinds = to_us
        .clone()
        .map(|(_, b)| Message::decode(b).expect("server datagrams decode").kind())
        .collect();
    (kinds, to_us.map(|(_, b)| b.len()).sum())
}

#[test]
fn a_spoofed_request_gets_one_accept_per_datagram_and_nothing_on_any_timer() {
    let mut sim = Sim::new(31, lan());
    sim.add_file("big.bin", common::random_bytes(31, 1 << 20));
    let get = encode(&Message::Get {
        token: 0x5eed,
        chunk: DEFAULT_CHUNK,
        window: 1,
        offset: 0,
        name: b"big.bin",
    });
    for i in 0..5 {
        sim.inject(SPOOFED, SERVER, get.clone(), Duration::from_millis(i));
    }
    // Every timer of the server runs out (its grants expire after its timeout).
    assert!(sim.run_bounded(100_000, Duration::from_secs(60)));
    let (kinds, received) = replies(&sim);
    assert_eq!(kinds, vec![Kind::Accept; 5]);
    assert!(received <= AMPLIFICATION_FACTOR * 5 * get.len());
    assert_eq!(sim.max_live_sessions, 0, "a session opened before proof");
}

#[test]
fn a_listing_flows_only_after_the_peer_echoes_its_session_id() {
    let mut sim = Sim::new(32, lan());
    sim.add_file("a", b"x".to_vec());
    let list = encode(&Message::List {
        token: 77,
        chunk: DEFAULT_CHUNK,
        window: 1,
    });
    sim.inject(SPOOFED, SERVER, list, Duration::ZERO);
    // A second of virtual time: the Accept, and nothing on the server's timers.
    assert!(!sim.run_bounded(100_000, Duration::from_secs(1)));
    let accept = sim
        .strays
        .iter()
        .find(|(to, _)| *to == SPOOFED)
        .map(|(_, b)| b.clone())
        .expect("an Accept");
    let Ok(Message::Accept { session, .. }) = Message::decode(&accept) else {
        panic!("not an Accept")
    };
    assert_eq!(replies(&sim).0, vec![Kind::Accept]);
    let ack = encode(&Message::Ack { session, seq: 0 });
    sim.inject(SPOOFED, SERVER, ack, Duration::ZERO);
    assert!(sim.run_until(10_000, |s| replies(s).0.len() == 2));
    assert_eq!(replies(&sim).0, vec![Kind::Accept, Kind::Data]);
}

#[test]
fn an_echo_of_the_session_id_from_another_address_opens_nothing() {
    let mut sim = Sim::new(33, lan());
    sim.add_file("big.bin", common::random_bytes(33, 4096));
    let get = encode(&Message::Get {
        token: 9,
        chunk: DEFAULT_CHUNK,
        window: 1,
        offset: 0,
        name: b"big.bin",
    });
    sim.inject(SPOOFED, SERVER, get, Duration::ZERO);
    assert!(sim.run_until(10_000, |s| !s.strays.is_empty()));
    let session = sim
        .strays
        .iter()
        .find_map(|(_, b)| match Message::decode(b) {
            Ok(Message::Accept { session, .. }) => Some(session),
            _ => None,
        })
        .expect("an Accept");
    let elsewhere = SocketAddr::new(SPOOFED.ip(), 4343);
    sim.inject(
        elsewhere,
        SERVER,
        encode(&Message::Ack { session, seq: 0 }),
        Duration::ZERO,
    );
    assert!(sim.run_until(10_000, |s| s.table.stats().unknown_session == 1));
    assert!(!sim.run_bounded(100_000, Duration::from_secs(1)));
    assert_eq!(sim.max_live_sessions, 0);
    assert_eq!(sim.table.stats().unknown_session, 1);
}
