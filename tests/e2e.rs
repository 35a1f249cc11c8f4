//! End-to-end transfers over real loopback sockets: an in-process server (`server::spawn`
//! on 127.0.0.1 port 0, or `[::1]`) serving a temporary library, and the real `udpft`
//! binary or the library's [`Client`] as clients. Covers byte-identical downloads and
//! uploads at the chunk-size edges and of a 5 MiB file, eight clients at once, symlinks
//! leading out of the library, and the server's answers to raw malformed datagrams.

mod live;

use live::{assert_file_eq, names_in, run, udpft, Served, CHUNK};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;
use udpft::client::{Client, ClientError, ClientOptions, Destination};
use udpft::link::seeded_bytes;
use udpft::proto::wire::{Kind, MAGIC, VERSION};
use udpft::proto::{DecodeError, ErrorCode, Message};

const FIVE_MIB: usize = 5 << 20;

fn client_of(server: SocketAddr) -> Client {
    Client::new(server, ClientOptions::default()).expect("client socket")
}

fn client_get(client: &mut Client, name: &str, dest: &Path) -> Result<(), ClientError> {
    client
        .get(name, &Destination::File(dest.to_owned()), true, &mut |_| {})
        .map(|_| ())
}

fn client_put(client: &mut Client, path: &Path, name: &str) -> Result<(), ClientError> {
    client.put(path, name, false, &mut |_| {}).map(|_| ())
}

/// Downloads and uploads a file of `size` bytes with the CLI, then with [`Client`], and
/// checks every copy is byte-identical.
fn round_trip_of_size(size: usize) {
    let original = seeded_bytes(size as u64 + 1, size);
    let mut served = Served::with_files(&[("file.bin", &original)]);
    let server = served.addr().to_string();
    let local = tempfile::tempdir().expect("local folder");

    let fetched = local.path().join("fetched.bin");
    run(udpft(["get", "file.bin", "-o"])
        .arg(&fetched)
        .args(["--server", &server]))
    .expect_code(0);
    assert_file_eq(&fetched, &original);

    run(udpft(["put"])
        .arg(&fetched)
        .args(["--as", "uploaded.bin", "--server", &server]))
    .expect_code(0);
    assert_file_eq(&served.path("uploaded.bin"), &original);

    let mut client = client_of(served.addr());
    let by_api = local.path().join("by-api.bin");
    client_get(&mut client, "uploaded.bin", &by_api).expect("library get");
    assert_file_eq(&by_api, &original);
    client_put(&mut client, &by_api, "by-api.bin").expect("library put");
    assert_file_eq(&served.path("by-api.bin"), &original);

    // Nothing but the finished files: no partial or temporary file left on either side.
    assert_eq!(names_in(local.path()), ["by-api.bin", "fetched.bin"]);
    assert_eq!(
        names_in(served.library.path()),
        ["by-api.bin", "file.bin", "uploaded.bin"]
    );
    let stats = served.stop();
    assert_eq!(stats.completed, 4, "{}", stats.summary());
    assert_eq!(stats.failed, 0, "{}", stats.summary());
}

#[test]
fn empty_file_round_trips_byte_identical() {
    round_trip_of_size(0);
}

#[test]
fn one_byte_file_round_trips_byte_identical() {
    round_trip_of_size(1);
}

#[test]
fn exactly_one_chunk_round_trips_byte_identical() {
    round_trip_of_size(CHUNK);
}

#[test]
fn one_chunk_plus_one_byte_round_trips_byte_identical() {
    round_trip_of_size(CHUNK + 1);
}

#[test]
fn five_mib_random_file_round_trips_byte_identical() {
    round_trip_of_size(FIVE_MIB);
}

#[test]
fn listing_through_the_client_shows_names_and_sizes_sorted() {
    let served = Served::with_files(&[("b.txt", b"bee"), ("a.txt", b""), ("c.bin", &[7; 3000])]);
    let entries = client_of(served.addr()).list().expect("listing");
    let seen: Vec<(String, u64)> = entries
        .iter()
        .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.size))
        .collect();
    assert_eq!(
        seen,
        [
            ("a.txt".to_owned(), 0),
            ("b.txt".to_owned(), 3),
            ("c.bin".to_owned(), 3000)
        ]
    );
}

#[test]
fn eight_clients_at_once_download_and_upload_byte_identical() {
    const CLIENTS: usize = 8;
    const SIZE: usize = 300_000;
    let originals: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| seeded_bytes(100 + i as u64, SIZE + i * 997))
        .collect();
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("file-{i}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(originals.iter().map(Vec::as_slice))
        .collect();
    let mut served = Served::with_files(&files);
    let server = served.addr();
    let local = tempfile::tempdir().expect("local folder");

    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (name, local) = (&names[i], local.path());
                scope.spawn(move || {
                    let fetched = local.join(format!("got-{i}.bin"));
                    let upload_as = format!("up-{i}.bin");
                    // Half the clients are CLI processes, half library clients on threads.
                    if i % 2 == 0 {
                        let server = server.to_string();
                        run(udpft(["get", name.as_str(), "-o"])
                            .arg(&fetched)
                            .args(["--server", &server]))
                        .expect_code(0);
                        run(udpft(["put"])
                            .arg(&fetched)
                            .args(["--as", &upload_as, "--server", &server]))
                        .expect_code(0);
                    } else {
                        let mut client = client_of(server);
                        client_get(&mut client, name, &fetched).expect("get");
                        client_put(&mut client, &fetched, &upload_as).expect("put");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("client worker");
        }
    });

    for (i, original) in originals.iter().enumerate() {
        assert_file_eq(&local.path().join(format!("got-{i}.bin")), original);
        assert_file_eq(&served.path(&format!("up-{i}.bin")), original);
    }
    let stats = served.stop();
    assert!(stats.completed >= 2 * CLIENTS as u64, "{}", stats.summary());
    assert_eq!(stats.failed, 0, "{}", stats.summary());
}

#[test]
fn symlink_out_of_the_library_is_neither_listed_nor_served_nor_overwritten() {
    let outside = tempfile::tempdir().expect("outside folder");
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, b"top secret").expect("secret written");
    let served = Served::with_files(&[("plain.txt", b"plain")]);
    std::os::unix::fs::symlink(&secret, served.path("escape.txt")).expect("symlink");
    let server = served.addr().to_string();
    let local = tempfile::tempdir().expect("local folder");

    let names: Vec<Vec<u8>> = client_of(served.addr())
        .list()
        .expect("listing")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [b"plain.txt".to_vec()]);

    let dest = local.path().join("escape.txt");
    let refused = run(udpft(["get", "escape.txt", "-o"])
        .arg(&dest)
        .args(["--server", &server]));
    refused.expect_code(4);
    assert!(
        refused
            .stderr
            .contains("no such file on server: escape.txt"),
        "{}",
        refused.stderr
    );
    assert!(names_in(local.path()).is_empty(), "nothing saved");

    let payload = local.path().join("payload.txt");
    std::fs::write(&payload, b"overwritten").expect("payload written");
    run(udpft(["put"])
        .arg(&payload)
        .args(["--as", "escape.txt", "--force", "--server", &server]))
    .expect_code(4);
    assert_file_eq(&secret, b"top secret");
}

#[test]
fn server_on_ipv6_loopback_serves_a_download() {
    let original = seeded_bytes(6, 10_000);
    let served = match Served::bound(
        "[::1]:0".parse().expect("address"),
        &[("v6.bin", &original)],
    ) {
        Ok(served) => served,
        Err(e) => {
            println!("note: skipping the IPv6 test, cannot bind [::1]: {e}");
            return;
        }
    };
    let local = tempfile::tempdir().expect("local folder");
    let dest = local.path().join("v6.bin");
    run(udpft(["get", "v6.bin", "-o"])
        .arg(&dest)
        .args(["--server", &served.addr().to_string()]))
    .expect_code(0);
    assert_file_eq(&dest, &original);
}

/// A UDP socket on loopback talking to `server`, with a short receive timeout.
fn raw_socket(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("raw socket");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    socket
}

/// Sends `datagram` and returns the first reply, retrying a few times (a loopback datagram
/// is rarely lost, but the test should not depend on it).
fn exchange(socket: &UdpSocket, datagram: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 65_536];
    for _ in 0..6 {
        socket.send(datagram).expect("send");
        match socket.recv(&mut buf) {
            Ok(len) => return buf[..len].to_vec(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("receive failed: {e}"),
        }
    }
    panic!("no reply from the server");
}

/// A datagram built by hand, header field by field, with a correct CRC32 trailer.
fn hand_built(version: u8, kind: u8, session: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::new();
    datagram.extend_from_slice(b"UF");
    datagram.push(version);
    datagram.push(kind);
    datagram.extend_from_slice(&session.to_be_bytes());
    datagram.extend_from_slice(&seq.to_be_bytes());
    datagram.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    datagram.extend_from_slice(payload);
    let crc = crc32fast::hash(&datagram);
    datagram.extend_from_slice(&crc.to_be_bytes());
    datagram
}

fn expect_error(reply: &[u8], session: u32, code: ErrorCode) {
    match Message::decode(reply) {
        Ok(Message::Error {
            session: got_session,
            code: got_code,
            ..
        }) => {
            assert_eq!(got_code, code);
            assert_eq!(got_session, session);
        }
        other => panic!("expected an Error {code:?}, got {other:?}"),
    }
}

#[test]
fn another_protocol_version_is_answered_with_unsupported_version() {
    assert_eq!(MAGIC, *b"UF");
    assert_eq!(VERSION, 1);
    let served = Served::with_files(&[]);
    let socket = raw_socket(served.addr());
    // A List request of version 3 (no such version): the chunk size is its whole payload.
    let datagram = hand_built(3, Kind::List as u8, 0x1234_5678, 0, &1430u16.to_be_bytes());
    expect_error(
        &exchange(&socket, &datagram),
        0x1234_5678,
        ErrorCode::UnsupportedVersion,
    );
}

#[test]
fn a_datagram_for_an_unknown_session_is_answered_with_unknown_session() {
    let served = Served::with_files(&[]);
    let socket = raw_socket(served.addr());
    let mut buf = [0u8; 64];
    let len = Message::Ack {
        session: 0xdead_beef,
        seq: 3,
    }
    .encode(&mut buf);
    expect_error(
        &exchange(&socket, &buf[..len]),
        0xdead_beef,
        ErrorCode::UnknownSession,
    );
}

#[test]
fn server_stats_count_rejected_datagrams_by_kind() {
    let mut served = Served::with_files(&[]);
    let socket = raw_socket(served.addr());
    let too_short = b"UF".to_vec();
    let mut bad_magic = hand_built(VERSION, Kind::Ack as u8, 1, 1, &[]);
    bad_magic[0] = b'X';
    let mut bad_crc = hand_built(VERSION, Kind::Ack as u8, 1, 1, &[]);
    *bad_crc.last_mut().expect("trailer") ^= 0xff;
    let unknown_type = hand_built(VERSION, 99, 1, 0, &[]);
    for garbage in [&too_short, &bad_magic, &bad_crc, &bad_crc, &unknown_type] {
        socket.send(garbage).expect("send");
    }
    // The server handles its datagrams in order, so once this one is answered the garbage
    // before it has been counted.
    let mut buf = [0u8; 64];
    let len = Message::Ack { session: 9, seq: 1 }.encode(&mut buf);
    expect_error(
        &exchange(&socket, &buf[..len]),
        9,
        ErrorCode::UnknownSession,
    );

    let stats = served.stop();
    assert_eq!(stats.rejected_total(), 5, "{}", stats.summary());
    assert_eq!(stats.rejected[DecodeError::TooShort.index()], 1);
    assert_eq!(stats.rejected[DecodeError::BadMagic.index()], 1);
    assert_eq!(stats.rejected[DecodeError::BadCrc.index()], 2);
    assert_eq!(stats.rejected[DecodeError::UnknownType(99).index()], 1);
    assert!(stats.unknown_session >= 1, "{}", stats.summary());
}
