//! Spoofed peers and amplification, against a real server on 127.0.0.1:0 driven by raw UDP
//! sockets: before a peer proves it receives at its address (by echoing the session id the
//! server chose), the server sends it at most three times the bytes it received from it, and
//! no file or listing data; a valid session id sent from another address disturbs nothing;
//! an address past its session cap is told the server is busy.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use udpft::library::{Library, LibraryOptions};
use udpft::proto::admission::{Limits, Policy};
use udpft::proto::refusal::AMPLIFICATION_FACTOR;
use udpft::proto::wire::{Kind, DEFAULT_CHUNK, MAX_DATAGRAM};
use udpft::proto::{Config, ErrorCode, Message};
use udpft::server::{self, ServerConfig, ServerHandle};

/// A server over a library holding `big.bin` (1 MiB), giving up on silent peers after 1 s.
fn start(limits: Limits) -> (tempfile::TempDir, ServerHandle) {
    let root = tempfile::tempdir().expect("library");
    std::fs::write(root.path().join("big.bin"), vec![7u8; 1 << 20]).expect("file");
    let library = Library::open(root.path(), LibraryOptions::default()).expect("library");
    let config = ServerConfig {
        policy: Policy {
            session: Config {
                timeout: Duration::from_secs(1),
                linger_min: Duration::from_secs(1),
                ..Config::for_server()
            },
            limits,
            grace: Duration::from_millis(200),
            ..Policy::default()
        },
        ..ServerConfig::default()
    };
    let server = server::spawn("127.0.0.1:0".parse().unwrap(), library, config).expect("spawn");
    (root, server)
}

fn socket_on(ip: &str, server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(format!("{ip}:0")).expect("bind");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    socket
}

fn send(socket: &UdpSocket, message: &Message<'_>) -> usize {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = message.encode(&mut buf);
    socket.send(&buf[..n]).expect("send");
    n
}

/// Every datagram the socket receives until `quiet` passes without one (at most `limit`).
fn drain(socket: &UdpSocket, quiet: Duration, limit: Duration) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while start.elapsed() < limit && last.elapsed() < quiet {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(buf[..n].to_vec());
            last = Instant::now();
        }
    }
    got
}

/// Waits (bounded) for the first datagram that decodes and satisfies `want`.
fn wait_for(socket: &UdpSocket, want: impl Fn(&Message<'_>) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            if Message::decode(&buf[..n]).is_ok_and(|m| want(&m)) {
                return buf[..n].to_vec();
            }
        }
    }
    panic!("no such datagram within 5 s");
}

fn get(token: u32) -> Message<'static> {
    Message::Get {
        token,
        chunk: DEFAULT_CHUNK,
        offset: 0,
        name: b"big.bin",
    }
}

fn kinds(datagrams: &[Vec<u8>]) -> Vec<Kind> {
    datagrams
        .iter()
        .filter_map(|d| Message::decode(d).ok().map(|m| m.kind()))
        .collect()
}

#[test]
fn an_unproven_peer_gets_at_most_three_times_what_it_sent_and_no_data() {
    let (_root, server) = start(Limits::default());
    let socket = socket_on("127.0.0.1", server.addr);
    // A spoofed request: the "peer" never answers, whatever comes back.
    let sent = send(&socket, &get(0x5eed));
    let got = drain(&socket, Duration::from_millis(1500), Duration::from_secs(4));
    let received: usize = got.iter().map(Vec::len).sum();
    assert!(!got.is_empty(), "the server answered nothing at all");
    assert!(
        received <= AMPLIFICATION_FACTOR * sent,
        "{received} bytes sent back for {sent} received: {:?}",
        kinds(&got)
    );
    assert!(
        !kinds(&got).contains(&Kind::Data),
        "file data flowed to an unproven address"
    );
    server.stop().expect("stop");
}

#[test]
fn repeated_requests_add_to_the_budget_but_data_still_waits_for_the_proof() {
    let (_root, server) = start(Limits::default());
    let socket = socket_on("127.0.0.1", server.addr);
    let mut sent = 0;
    for _ in 0..5 {
        sent += send(&socket, &get(0xabc));
    }
    let got = drain(&socket, Duration::from_millis(1500), Duration::from_secs(4));
    let received: usize = got.iter().map(Vec::len).sum();
    assert!(received <= AMPLIFICATION_FACTOR * sent);
    assert!(!kinds(&got).contains(&Kind::Data));
    server.stop().expect("stop");
}

#[test]
fn a_listing_flows_only_after_the_peer_echoes_its_session_id() {
    let (_root, server) = start(Limits::default());
    let socket = socket_on("127.0.0.1", server.addr);
    send(
        &socket,
        &Message::List {
            token: 77,
            chunk: DEFAULT_CHUNK,
        },
    );
    let accept = wait_for(&socket, |m| m.kind() == Kind::Accept);
    let Ok(Message::Accept { session, .. }) = Message::decode(&accept) else {
        unreachable!()
    };
    // Before the echo: nothing but (repeated) Accepts.
    let before = drain(
        &socket,
        Duration::from_millis(300),
        Duration::from_millis(600),
    );
    assert!(
        kinds(&before).iter().all(|k| *k == Kind::Accept),
        "{:?}",
        kinds(&before)
    );
    send(&socket, &Message::Ack { session, seq: 0 });
    wait_for(
        &socket,
        |m| matches!(m, Message::Data { session: s, seq: 1, .. } if *s == session),
    );
    server.stop().expect("stop");
}

#[test]
fn a_valid_session_id_from_another_address_disturbs_nothing() {
    let (_root, server) = start(Limits::default());
    let peer = socket_on("127.0.0.1", server.addr);
    let spoofer = socket_on("127.0.0.1", server.addr);
    send(&peer, &get(1));
    let accept = wait_for(&peer, |m| m.kind() == Kind::Accept);
    let Ok(Message::Accept { session, .. }) = Message::decode(&accept) else {
        unreachable!()
    };
    send(&peer, &Message::Ack { session, seq: 0 });
    wait_for(&peer, |m| matches!(m, Message::Data { seq: 1, .. }));
    // The spoofer knows the session id but not the peer's address: it acknowledges ahead
    // and tries to cancel the session.
    send(&spoofer, &Message::Ack { session, seq: 1 });
    send(
        &spoofer,
        &Message::Error {
            session,
            code: ErrorCode::Cancelled,
            text: b"spoofed",
        },
    );
    let reply = wait_for(&spoofer, |m| m.kind() == Kind::Error);
    assert!(matches!(
        Message::decode(&reply),
        Ok(Message::Error {
            code: ErrorCode::UnknownSession,
            ..
        })
    ));
    // The session is untouched: the real peer's Ack 1 brings Data 2.
    send(&peer, &Message::Ack { session, seq: 1 });
    wait_for(
        &peer,
        |m| matches!(m, Message::Data { session: s, seq: 2, .. } if *s == session),
    );
    let stats = server.stop().expect("stop");
    assert!(stats.unknown_session >= 2, "{}", stats.summary());
}

#[test]
fn an_address_past_its_session_cap_is_told_busy_and_others_are_not() {
    let (_root, server) = start(Limits {
        max_per_address: 2,
        ..Limits::default()
    });
    let socket = socket_on("127.0.0.1", server.addr);
    // Requests whose peers never prove their address hold no slot: many of them from this
    // address do not count against its cap.
    for token in 100..164 {
        send(&socket, &get(token));
        wait_for(
            &socket,
            |m| matches!(m, Message::Accept { token: t, .. } if *t == token),
        );
    }
    // Two proven sessions (Ack 0) fill its cap.
    for token in [1, 2] {
        send(&socket, &get(token));
        let accept = wait_for(
            &socket,
            |m| matches!(m, Message::Accept { token: t, .. } if *t == token),
        );
        let session = Message::decode(&accept).expect("accept").session();
        send(&socket, &Message::Ack { session, seq: 0 });
        wait_for(&socket, |m| {
            m.session() == session && m.kind() == Kind::Data
        });
    }
    send(&socket, &get(3));
    let refusal = wait_for(&socket, |m| m.session() == 3 && m.kind() == Kind::Error);
    let Ok(Message::Error { code, text, .. }) = Message::decode(&refusal) else {
        unreachable!()
    };
    assert_eq!(code, ErrorCode::Busy);
    assert!(String::from_utf8_lossy(text).contains("your address"));
    // Another address is not affected.
    let other = socket_on("127.0.0.2", server.addr);
    send(&other, &get(4));
    wait_for(&other, |m| matches!(m, Message::Accept { token: 4, .. }));
    server.stop().expect("stop");
}
