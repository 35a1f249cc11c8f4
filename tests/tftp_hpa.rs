//! udpft's TFTP client session against a server nobody here wrote: tftpd-hpa's `in.tftpd`,
//! started by the test on a free loopback port and stopped by its PID. Download, upload,
//! options refused (`-r blksize`: the OACK leaves it out; all options refused: plain
//! RFC 1350), and block-number rollover. Skipped with a printed reason where tftpd-hpa is
//! not installed, and failed under CI.

mod live;
mod tftp_support;

use std::net::UdpSocket;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tftp_support::tftpd::Tftpd;
use udpft::link::seeded_bytes;
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::{Outcome, Stats};
use udpft::tftp::client::{ClientConfig, ClientSession};
use udpft::tftp::wire::MAX_PACKET;

/// Drives `session` on a real socket until it finishes (at most 60 s); returns its outcome
/// and statistics.
fn drive(mut session: ClientSession) -> (Option<Outcome>, Stats, ClientSession) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0; MAX_PACKET];
    let mut incoming = vec![0; MAX_PACKET + 1];
    loop {
        let now = Instant::now();
        assert!(now < deadline, "transfer still running after 60 s");
        while let Some((to, n)) = session.poll_transmit(now, &mut buf) {
            socket.send_to(&buf[..n], to).unwrap();
        }
        if session.is_finished() {
            break;
        }
        let wait = session
            .poll_timeout()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(now)
            })
            .clamp(Duration::from_micros(50), Duration::from_millis(100));
        socket.set_read_timeout(Some(wait)).unwrap();
        if let Ok((n, from)) = socket.recv_from(&mut incoming) {
            session.handle_datagram(Instant::now(), from, &incoming[..n]);
        }
        session.handle_timeout(Instant::now());
    }
    (session.outcome().cloned(), session.stats(), session)
}

fn download(
    server: &Tftpd,
    name: &str,
    config: ClientConfig,
) -> (Option<Outcome>, Vec<u8>, Stats, ClientSession) {
    let sink = Arc::new(Mutex::new(MemSink::default()));
    let session = ClientSession::download(
        Instant::now(),
        config,
        server.addr,
        name,
        Box::new(sink.clone()),
    );
    let (outcome, stats, session) = drive(session);
    let got = sink.lock().unwrap();
    assert!(got.committed || outcome != Some(Outcome::Complete));
    (outcome, got.data.clone(), stats, session)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn downloads_from_tftpd_hpa_with_options() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let bytes = seeded_bytes(1, 5 << 20);
    write(&server.path("five.bin"), &bytes);
    let (outcome, got, stats, session) =
        download(&server, "five.bin", ClientConfig::for_server(server.addr));
    assert_eq!(outcome, Some(Outcome::Complete));
    assert!(got == bytes, "5 MiB byte-identical");
    assert_eq!(session.size(), Some(bytes.len() as u64), "tsize granted");
    assert!(!session.fell_back());
    // blksize 1468 granted: about 3,572 blocks, not 10,240.
    assert!(stats.sent < 4000, "{} ACKs sent", stats.sent);
    assert_ne!(
        session.peer(),
        Some(server.addr),
        "tftpd-hpa answers from a new port (its TID)"
    );
}

#[test]
fn uploads_to_tftpd_hpa() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let bytes = seeded_bytes(2, 1 << 20);
    let session = ClientSession::upload(
        Instant::now(),
        ClientConfig::for_server(server.addr),
        server.addr,
        "up.bin",
        Box::new(MemSource(bytes.clone())),
        bytes.len() as u64,
    );
    let (outcome, _, _) = drive(session);
    assert_eq!(outcome, Some(Outcome::Complete));
    assert_eq!(std::fs::read(server.path("up.bin")).unwrap(), bytes);
}

#[test]
fn a_refused_option_is_left_out_and_all_refused_falls_back_to_rfc_1350() {
    let Some(server) = Tftpd::start(&["-r", "blksize"]) else {
        return;
    };
    let bytes = seeded_bytes(3, 100_000);
    write(&server.path("f"), &bytes);
    let (outcome, got, stats, session) =
        download(&server, "f", ClientConfig::for_server(server.addr));
    assert_eq!(outcome, Some(Outcome::Complete));
    assert!(got == bytes);
    assert!(!session.fell_back(), "an OACK (tsize) still came");
    assert!(
        stats.sent >= 100_000 / 512,
        "512-byte blocks: {} ACKs",
        stats.sent
    );
    drop(server);
    let Some(server) = Tftpd::start(&["-r", "blksize", "-r", "tsize"]) else {
        return;
    };
    write(&server.path("f"), &bytes);
    let (outcome, got, _, session) = download(&server, "f", ClientConfig::for_server(server.addr));
    assert_eq!(outcome, Some(Outcome::Complete));
    assert!(got == bytes);
    assert!(session.fell_back(), "no OACK: DATA 1 answered the request");
}

#[test]
fn block_numbers_roll_over_against_tftpd_hpa() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    // 65,600 blocks of 512 bytes.
    let bytes = seeded_bytes(4, 65_600 * 512 + 1);
    write(&server.path("big"), &bytes);
    let config = ClientConfig {
        blksize: None,
        windowsize: None,
        ..ClientConfig::for_server(server.addr)
    };
    let (outcome, got, _, _) = download(&server, "big", config);
    assert_eq!(outcome, Some(Outcome::Complete));
    assert!(
        got.len() == bytes.len() && got == bytes,
        "rolled-over download byte-identical"
    );
}

#[test]
fn a_missing_file_is_the_servers_error() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let (outcome, _, _, _) = download(&server, "missing", ClientConfig::for_server(server.addr));
    match outcome {
        Some(Outcome::Failed(udpft::proto::Failure::Peer { code, .. })) => {
            assert_eq!(code, udpft::proto::ErrorCode::NotFound)
        }
        other => panic!("{other:?}"),
    }
}
