//! A spoofer against a real server on 127.0.0.1:0 driven by raw UDP sockets: a valid
//! session id sent from another address disturbs nothing. (The amplification limit and the
//! address proof are tested in virtual time in `tests/sim_spoofing.rs` and
//! `tests/front_door.rs`, and against every model in `tests/admission.rs`.)

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use udpft::library::{Library, LibraryOptions};
use udpft::proto::admission::{Limits, Policy};
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
        window: 1,
        offset: 0,
        name: b"big.bin",
    }
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
