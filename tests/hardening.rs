//! Hardening of a real server against hostile peers and a hostile file system: a storm of
//! malformed and stray datagrams while real transfers run, names that try to leave or hide
//! in the library, names that would drive a terminal, a full disk, files that change while
//! they are sent, stale temporary files, read-only and size-capped libraries, and a
//! graceful shutdown with transfers in flight. Every server runs in-process on 127.0.0.1:0.

mod live;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use udpft::client::{sanitize, Client, ClientError, ClientOptions, Destination, Report};
use udpft::library::{check_name, Library, LibraryOptions, TEMP_PREFIX};
use udpft::link::{seeded_bytes, Rng};
use udpft::proto::stats::ServerStats;
use udpft::proto::wire::{Kind, Rule, DEFAULT_CHUNK, MAX_DATAGRAM};
use udpft::proto::{Config, DecodeError, ErrorCode, Message};
use udpft::server::{self, Model, ServerConfig, ServerHandle};

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn write_random(path: &Path, seed: u64, len: usize) -> Vec<u8> {
    let bytes = seeded_bytes(seed, len);
    fs::write(path, &bytes).expect("write test file");
    bytes
}

fn start(root: &Path, options: LibraryOptions, config: ServerConfig) -> ServerHandle {
    let library = Library::open(root, options).expect("open library");
    server::spawn("127.0.0.1:0".parse().unwrap(), library, config).expect("spawn server")
}

/// A server whose shutdown does not wait long for stray downloads.
fn quick_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.policy.grace = Duration::from_secs(1);
    config
}

fn client(server: SocketAddr, chunk: u16) -> Client {
    let options = ClientOptions {
        config: Config {
            chunk,
            ..Config::default()
        },
        ..ClientOptions::default()
    };
    Client::new(server, options).expect("client socket")
}

fn get(server: SocketAddr, chunk: u16, name: &str, dest: &Path) -> Result<Report, ClientError> {
    client(server, chunk).get(
        name,
        &Destination::File(dest.to_owned()),
        false,
        &mut |_| {},
    )
}

fn put(
    server: SocketAddr,
    path: &Path,
    name: &str,
    overwrite: bool,
) -> Result<Report, ClientError> {
    client(server, DEFAULT_CHUNK).put(path, name, overwrite, &mut |_| {})
}

fn listed_names(server: SocketAddr) -> Vec<Vec<u8>> {
    let entries = client(server, DEFAULT_CHUNK).list().expect("listing");
    entries.into_iter().map(|e| e.name).collect()
}

/// Names of the upload temporary files in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read library")
        .map(|e| {
            e.expect("dirent")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with(TEMP_PREFIX))
        .collect()
}

/// The code a client error carries, whichever side gave it.
fn code_of(error: &ClientError) -> Option<ErrorCode> {
    match error {
        ClientError::Server { code, .. } | ClientError::Transfer { code, .. } => Some(*code),
        _ => None,
    }
}

/// Polls `ready` until it holds, failing the test after `limit`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

fn stop(server: ServerHandle) -> ServerStats {
    server.stop().expect("server loop ended cleanly")
}

/// Recomputes the CRC32 trailer over every byte before it.
fn fix_crc(datagram: &mut [u8]) {
    let n = datagram.len();
    let crc = crc32fast::hash(&datagram[..n - 4]);
    datagram[n - 4..].copy_from_slice(&crc.to_be_bytes());
}

fn encode(message: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = message.encode(&mut buf);
    buf.truncate(n);
    buf
}

// ---------------------------------------------------------------------------------------
// Raw requests
// ---------------------------------------------------------------------------------------

/// What the server said to one raw request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Refused(ErrorCode, String),
    Accepted,
    /// Nothing: the server answered a later request first, so it dropped this one.
    Silent,
}

/// Sends `request` from a fresh socket, then a barrier request (a Get of a missing file),
/// and returns the server's answer to `request`. The table and iterative servers handle
/// one socket's datagrams in order and answer each at once, so an answer to the barrier
/// first means `request` got none. An Accept is cancelled at once so no session lingers.
fn ask(server: SocketAddr, request: &Message<'_>) -> Answer {
    exchange(server, request, true)
}

/// Sends `request` and waits for the answer to it (any server model); `barrier` as [`ask`].
fn exchange(server: SocketAddr, request: &Message<'_>, barrier: bool) -> Answer {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let token = request.session();
    let barrier_token = token.wrapping_add(1);
    socket.send(&encode(request)).expect("send request");
    if barrier {
        let barrier = Message::Get {
            token: barrier_token,
            chunk: DEFAULT_CHUNK,
            window: 1,
            offset: 0,
            name: b"barrier-not-in-library",
        };
        socket.send(&encode(&barrier)).expect("send barrier");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        match Message::decode(&buf[..n]) {
            Ok(Message::Error {
                session,
                code,
                text,
            }) if session == token => {
                return Answer::Refused(code, String::from_utf8_lossy(text).into_owned())
            }
            Ok(Message::Accept {
                session, token: t, ..
            }) if t == token => {
                let cancel = Message::Error {
                    session,
                    code: ErrorCode::Cancelled,
                    text: b"test cancels",
                };
                let _ = socket.send(&encode(&cancel));
                return Answer::Accepted;
            }
            Ok(m) if barrier && m.session() == barrier_token => return Answer::Silent,
            _ => {}
        }
    }
    panic!("no answer to {request:?} within 5 s");
}

// ---------------------------------------------------------------------------------------
// 1. A storm of hostile datagrams during real transfers
// ---------------------------------------------------------------------------------------

/// A well-formed message that is not a request, for a random session.
fn stray_message(rng: &mut Rng) -> Vec<u8> {
    let session = rng.next_u64() as u32;
    let seq = 1 + rng.below(1 << 20);
    let payload = {
        let len = 1 + rng.below(200) as usize;
        rng.bytes(len)
    };
    match rng.below(4) {
        0 => encode(&Message::Ack { session, seq }),
        1 => encode(&Message::Data {
            session,
            seq,
            payload: &payload,
        }),
        2 => encode(&Message::Done {
            session,
            seq,
            size: rng.next_u64(),
            crc: rng.next_u64() as u32,
        }),
        _ => encode(&Message::Error {
            session,
            code: ErrorCode::Other,
            text: b"stray",
        }),
    }
}

/// The `i`th hostile datagram of a sender, and the rejection it must cause if it reaches
/// the server intact (`None` for random bytes, whose fate is random, and for well-formed
/// strays, which count as unknown sessions).
fn hostile(rng: &mut Rng, i: u64) -> (Vec<u8>, Option<DecodeError>) {
    if i % 500 == 250 {
        // A few datagrams near the largest UDP payload.
        let len = 65_000 + rng.below(508) as usize;
        return (rng.bytes(len), None);
    }
    match i % 11 {
        0 => {
            let len = rng.below(1500) as usize;
            (rng.bytes(len), None)
        }
        1 => {
            let len = rng.below(22) as usize;
            (rng.bytes(len), Some(DecodeError::TooShort))
        }
        2 => {
            // A valid datagram cut short: too short, or a CRC over the wrong bytes.
            let mut d = stray_message(rng);
            let len = rng.below(d.len() as u64) as usize;
            d.truncate(len);
            (d, None)
        }
        3 => {
            // A valid datagram with a few bits flipped past the version byte: CRC32
            // detects every error of up to three bits at these lengths.
            let mut d = stray_message(rng);
            let flips = 1 + rng.below(3) as usize;
            let mut bits: Vec<u64> = Vec::new();
            while bits.len() < flips {
                // Distinct bits: flipping one twice would undo it.
                let bit = 24 + rng.below((d.len() as u64 - 3) * 8);
                if !bits.contains(&bit) {
                    bits.push(bit);
                }
            }
            for bit in bits {
                d[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            (d, Some(DecodeError::BadCrc))
        }
        4 => (stray_message(rng), None),
        5 => {
            let mut d = stray_message(rng);
            d[2] = 3;
            fix_crc(&mut d);
            (d, Some(DecodeError::UnsupportedVersion(3)))
        }
        6 => {
            // A length field claiming more than the datagram holds, up to absurd.
            let mut d = stray_message(rng);
            let actual = (d.len() - 22) as u64;
            let claimed = actual + 1 + rng.below(u64::from(u16::MAX) - actual);
            d[16..18].copy_from_slice(&(claimed as u16).to_be_bytes());
            fix_crc(&mut d);
            (d, Some(DecodeError::LengthMismatch))
        }
        7 => {
            // A length field claiming less than the datagram holds.
            let payload = {
                let len = 1 + rng.below(200) as usize;
                rng.bytes(len)
            };
            let mut d = encode(&Message::Data {
                session: rng.next_u64() as u32,
                seq: 1,
                payload: &payload,
            });
            let claimed = rng.below(payload.len() as u64) as u16;
            d[16..18].copy_from_slice(&claimed.to_be_bytes());
            fix_crc(&mut d);
            (d, Some(DecodeError::TrailingBytes))
        }
        8 => {
            let mut d = stray_message(rng);
            d[0] = b'X';
            (d, Some(DecodeError::BadMagic))
        }
        9 => {
            let mut d = stray_message(rng);
            let kind = 10 + rng.below(246) as u8; // 1..=9 are the types of version 1
            d[3] = kind;
            fix_crc(&mut d);
            (d, Some(DecodeError::UnknownType(kind)))
        }
        _ => {
            // Data must have a sequence number of at least 1.
            let d = encode(&Message::Data {
                session: rng.next_u64() as u32,
                seq: 0,
                payload: b"x",
            });
            (d, Some(DecodeError::BadPayload(Kind::Data, Rule::ZeroSeq)))
        }
    }
}

/// Sends hostile datagrams to `server` until at least `quota` are sent and `calm` is set,
/// at most `cap` of them and for at most `limit`; reads and drops every reply. Returns the
/// datagrams sent.
fn storm(
    server: SocketAddr,
    seed: u64,
    quota: u64,
    cap: u64,
    limit: Duration,
    calm: &AtomicBool,
) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_nonblocking(true).expect("non-blocking");
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let started = Instant::now();
    let mut sent = 0;
    for i in 0..cap {
        if started.elapsed() > limit || (i >= quota && calm.load(Ordering::SeqCst)) {
            break;
        }
        let (datagram, expected) = hostile(&mut rng, i);
        if let Some(expected) = expected {
            assert_eq!(
                Message::decode(&datagram).err().map(DecodeError::index),
                Some(expected.index()),
                "generator {i} makes the wrong rejection"
            );
        }
        if socket.send_to(&datagram, server).is_ok() {
            sent += 1;
        }
        for _ in 0..64 {
            if socket.recv_from(&mut buf).is_err() {
                break;
            }
        }
    }
    sent
}

#[test]
fn transfers_complete_intact_through_a_storm_of_hostile_datagrams() {
    storm_during_transfers(Model::Table);
}

#[test]
fn transfers_complete_intact_through_a_storm_on_the_threads_model() {
    storm_during_transfers(Model::Threads);
}

#[test]
fn transfers_complete_intact_through_a_storm_on_the_iterative_model() {
    storm_during_transfers(Model::Loop);
}

/// Four real transfers (two downloads, two uploads of 2 MiB) while four sockets send tens
/// of thousands of hostile datagrams to a server of `model`.
fn storm_during_transfers(model: Model) {
    let library = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let size = 2 * MIB + 12_345;
    let mut expected = Vec::new();
    for i in 0..2u64 {
        let name = format!("down{i}.bin");
        expected.push((
            local.path().join(&name),
            write_random(&library.path().join(&name), 100 + i, size),
        ));
        let source = local.path().join(format!("source{i}.bin"));
        let bytes = write_random(&source, 200 + i, size);
        expected.push((library.path().join(format!("up{i}.bin")), bytes));
    }
    let config = ServerConfig {
        model,
        ..quick_config()
    };
    let server = start(library.path(), LibraryOptions::default(), config);
    let addr = server.addr;

    let calm = Arc::new(AtomicBool::new(false));
    let stormers: Vec<_> = (0..4u64)
        .map(|s| {
            let calm = Arc::clone(&calm);
            thread::spawn(move || {
                storm(
                    addr,
                    0x5707 + s,
                    10_000,
                    25_000,
                    Duration::from_secs(20),
                    &calm,
                )
            })
        })
        .collect();
    type Transfer = Box<dyn FnOnce() -> Result<Report, ClientError> + Send>;
    let transfers: Vec<Transfer> = (0..2u64)
        .flat_map(|i| {
            let down_dest = local.path().join(format!("down{i}.bin"));
            let up_source = local.path().join(format!("source{i}.bin"));
            [
                Box::new(move || get(addr, DEFAULT_CHUNK, &format!("down{i}.bin"), &down_dest))
                    as Transfer,
                Box::new(move || put(addr, &up_source, &format!("up{i}.bin"), false)),
            ]
        })
        .collect();
    let results: Vec<_> = if model == Model::Loop {
        // One session at a time: concurrent clients would only wait out "busy" back-offs.
        thread::spawn(move || transfers.into_iter().map(|t| t()).collect())
            .join()
            .unwrap()
    } else {
        let running: Vec<_> = transfers.into_iter().map(thread::spawn).collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    };
    calm.store(true, Ordering::SeqCst);
    let hostile_sent: u64 = stormers.into_iter().map(|t| t.join().unwrap()).sum();
    let stats = stop(server);

    for result in &results {
        let report = result.as_ref().expect("transfer failed under the storm");
        assert_eq!(report.size, size as u64);
    }
    for (path, bytes) in &expected {
        let got = fs::read(path).expect("transferred file");
        assert!(
            got == *bytes,
            "{} differs from what was sent",
            path.display()
        );
    }
    assert!(
        hostile_sent >= 40_000,
        "only {hostile_sent} hostile datagrams sent"
    );
    let summary = stats.summary();
    eprintln!("{model}: {hostile_sent} hostile datagrams; server: {summary}");
    for kind in 0..DecodeError::COUNT {
        assert!(
            stats.rejected[kind] > 0,
            "no {} rejection counted: {summary}",
            DecodeError::label(kind)
        );
    }
    assert!(stats.rejected_total() <= hostile_sent, "{summary}");
    assert!(stats.unknown_session > 0, "{summary}");
    assert!(stats.completed >= 4, "{summary}");
    assert_eq!(
        stats.opened, 4,
        "hostile datagrams opened sessions: {summary}"
    );
    assert!(temp_files(library.path()).is_empty());
}

// ---------------------------------------------------------------------------------------
// 2, 3. Names that escape, hide or would drive a terminal
// ---------------------------------------------------------------------------------------

/// How the server must answer a Get of a name.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused by the name check.
    BadName,
    /// A plain name, but not a regular file in the root.
    NotFound,
    /// Longer than the wire allows: dropped as a malformed datagram, unanswered.
    Malformed,
}

#[test]
fn names_that_escape_or_hide_are_refused_and_never_listed() {
    let library = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let root = library.path();
    let secret = elsewhere.path().join("secret.txt");
    fs::write(&secret, b"outside the library").unwrap();
    fs::write(root.join("target.txt"), b"inside the library").unwrap();
    std::os::unix::fs::symlink(&secret, root.join("outside_link")).unwrap();
    std::os::unix::fs::symlink(root.join("target.txt"), root.join("inside_link")).unwrap();
    // Not regular files: a folder, and a FIFO (whose blocking open would hang the server).
    fs::create_dir(root.join("subdir")).unwrap();
    fs::write(root.join("subdir").join("inner.txt"), b"one level down").unwrap();
    let made_fifo = Command::new("mkfifo").arg(root.join("fifo")).status();
    assert!(made_fifo.is_ok_and(|s| s.success()), "mkfifo failed");
    // Files that exist under names the server must not serve, where the OS allows them.
    for name in [&b"a\\b"[..], b"C:evil", b"C:\\x", b".hidden", b"\xff\xfe"] {
        fs::write(root.join(std::ffi::OsStr::from_bytes(name)), b"not served").unwrap();
    }
    let long = vec![b'a'; 256];
    let table = [
        (&b".."[..], Expect::BadName),
        (b"../x", Expect::BadName),
        (b"a/b", Expect::BadName),
        (b"a\\b", Expect::BadName),
        (b"/etc/passwd", Expect::BadName),
        (b"C:evil", Expect::BadName),
        (b"C:\\x", Expect::BadName),
        (b"nul\0x", Expect::BadName),
        (&long, Expect::Malformed),
        (b"\xff\xfe", Expect::BadName),
        (b".hidden", Expect::BadName),
        (b"outside_link", Expect::NotFound),
        (b"inside_link", Expect::NotFound),
        (b"subdir", Expect::NotFound),
        (b"fifo", Expect::NotFound),
    ];
    let server = start(root, LibraryOptions::default(), quick_config());
    let mut ids = udpft::ids::IdSource::new();
    let mut malformed = 0;
    for (name, expect) in table {
        let shown = String::from_utf8_lossy(name);
        let checked = check_name(name);
        match expect {
            Expect::NotFound => assert!(checked.is_ok(), "{shown:?}: {checked:?}"),
            _ => assert_eq!(
                checked.map_err(|r| r.code),
                Err(ErrorCode::BadName),
                "{shown:?}"
            ),
        }
        let get = Message::Get {
            token: ids.next_id() | 1,
            chunk: DEFAULT_CHUNK,
            window: 1,
            offset: 0,
            name,
        };
        let put = Message::Put {
            token: ids.next_id() | 1,
            chunk: DEFAULT_CHUNK,
            window: 1,
            size: 10,
            overwrite: true,
            name,
        };
        let got = ask(server.addr, &get);
        let put_got = ask(server.addr, &put);
        match expect {
            Expect::BadName => {
                assert!(
                    matches!(got, Answer::Refused(ErrorCode::BadName, _)),
                    "get {shown:?}: {got:?}"
                );
                assert!(
                    matches!(put_got, Answer::Refused(ErrorCode::BadName, _)),
                    "put {shown:?}: {put_got:?}"
                );
            }
            Expect::NotFound => {
                assert!(
                    matches!(got, Answer::Refused(ErrorCode::NotFound, _)),
                    "get {shown:?}: {got:?}"
                );
                // Not a regular file: an upload may not replace it either.
                assert!(
                    matches!(put_got, Answer::Refused(ErrorCode::BadName, _)),
                    "put {shown:?}: {put_got:?}"
                );
            }
            Expect::Malformed => {
                assert_eq!(got, Answer::Silent, "get {shown:?}");
                assert_eq!(put_got, Answer::Silent, "put {shown:?}");
                malformed += 2;
            }
        }
    }
    let listed = listed_names(server.addr);
    for (name, _) in table {
        assert!(
            !listed.iter().any(|l| l == name),
            "{:?} listed",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(listed, vec![b"target.txt".to_vec()]);
    let stats = stop(server);
    assert_eq!(
        stats.opened,
        1,
        "only the listing opens a session: {}",
        stats.summary()
    );
    assert!(
        stats.rejected[DecodeError::BadPayload(Kind::Get, Rule::EmptyName).index()] >= malformed
    );
    assert_eq!(fs::read(&secret).unwrap(), b"outside the library");
    assert_eq!(
        fs::read(root.join("target.txt")).unwrap(),
        b"inside the library"
    );
    assert!(fs::symlink_metadata(root.join("outside_link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(root.join("inside_link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(root.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(fs::symlink_metadata(root.join("subdir")).unwrap().is_dir());
    assert!(temp_files(root).is_empty());
}

#[test]
fn names_with_control_characters_are_never_listed_nor_served() {
    let library = tempfile::tempdir().unwrap();
    let root = library.path();
    fs::write(root.join("plain.txt"), b"fine").unwrap();
    for name in ["evil\x1b[2Jname", "two\nlines", "bell\x07", "del\x7f"] {
        fs::write(root.join(name), b"escape").unwrap();
    }
    let server = start(root, LibraryOptions::default(), quick_config());
    assert_eq!(listed_names(server.addr), vec![b"plain.txt".to_vec()]);
    let get = Message::Get {
        token: 77,
        chunk: DEFAULT_CHUNK,
        window: 1,
        offset: 0,
        name: b"evil\x1b[2Jname",
    };
    assert!(matches!(
        ask(server.addr, &get),
        Answer::Refused(ErrorCode::BadName, _)
    ));
    stop(server);
}

/// Regression: `Client::get` once sent such names, which the server drops as malformed,
/// so the user saw "server not responding" after the whole timeout.
#[test]
fn a_client_refuses_names_the_wire_cannot_carry_at_once() {
    let library = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let server = start(library.path(), LibraryOptions::default(), quick_config());
    for name in [String::new(), "a".repeat(256)] {
        let started = Instant::now();
        let error = get(server.addr, DEFAULT_CHUNK, &name, &local.path().join("x"))
            .expect_err("no such name can exist");
        assert!(
            matches!(
                error,
                ClientError::Server {
                    code: ErrorCode::BadName,
                    ..
                }
            ),
            "{}-byte name: {error:?}",
            name.len()
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }
    stop(server);
}

#[test]
fn sanitize_removes_terminal_escapes() {
    for text in [
        "a\x1b[31mb",
        "\x1b]0;title\x07",
        "line\nbreak\r",
        "\u{9b}31m",
    ] {
        let clean = sanitize(text);
        assert!(
            !clean.chars().any(char::is_control),
            "{text:?} -> {clean:?}"
        );
    }
    assert_eq!(sanitize("plain été"), "plain été");
}

// ---------------------------------------------------------------------------------------
// 4. File-system faults
// ---------------------------------------------------------------------------------------

#[test]
fn uploads_that_fill_the_disk_fail_with_io_and_leave_the_library_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("library");
    fs::create_dir(&root).unwrap();
    let Some(_mount) = live::Tmpfs::mount(&root, "1m") else {
        live::skip("cannot mount a tmpfs here (needs root)");
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let small = local.path().join("small.bin");
    let small_bytes = write_random(&small, 1, 1000);
    let big = local.path().join("big.bin");
    write_random(&big, 2, 3 * MIB);
    let server = start(&root, LibraryOptions::default(), quick_config());
    put(server.addr, &small, "data.bin", false).expect("a small upload fits");

    for (name, overwrite) in [("data.bin", true), ("new.bin", false)] {
        let error = put(server.addr, &big, name, overwrite).expect_err("3 MiB cannot fit 1 MiB");
        assert!(
            matches!(
                error,
                ClientError::Server {
                    code: ErrorCode::Io,
                    ..
                }
            ),
            "upload as {name}: {error:?}"
        );
        assert_eq!(error.exit_code(), 4);
        assert!(
            error.to_string().contains("space"),
            "unclear message: {error}"
        );
    }
    let stats = stop(server);
    assert_eq!(stats.failed, 2, "{}", stats.summary());
    assert_eq!(fs::read(root.join("data.bin")).unwrap(), small_bytes);
    assert!(!root.join("new.bin").exists());
    assert!(temp_files(&root).is_empty(), "{:?}", temp_files(&root));
}

/// Whether this process can create a file in `dir`.
fn can_write(dir: &Path) -> bool {
    let probe = dir.join("write-probe");
    let written = fs::write(&probe, b"x").is_ok();
    let _ = fs::remove_file(&probe);
    written
}

/// Restores a folder's mode when dropped, so it can be removed even after a failure.
struct RestoreMode<'a>(&'a Path);

impl Drop for RestoreMode<'_> {
    fn drop(&mut self) {
        let _ = fs::set_permissions(self.0, fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn uploads_into_an_unwritable_library_fail_with_io_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("library");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("existing.bin"), b"old").unwrap();
    let _restore = RestoreMode(&root);
    fs::set_permissions(&root, fs::Permissions::from_mode(0o555)).unwrap();
    let mut _mount = None;
    if can_write(&root) {
        // Root ignores permissions; a read-only file system stops everyone.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let Some(mount) = live::Tmpfs::mount(&root, "1m") else {
            live::skip("permissions do not stop this user and no tmpfs can be mounted");
            return;
        };
        _mount = Some(mount);
        fs::write(root.join("existing.bin"), b"old").unwrap();
        let remounted = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            remounted && !can_write(&root),
            "cannot make the library read-only"
        );
    }
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source.bin");
    write_random(&source, 3, 10_000);
    let server = start(&root, LibraryOptions::default(), quick_config());
    for (name, overwrite) in [("up.bin", false), ("existing.bin", true)] {
        let error = put(server.addr, &source, name, overwrite).expect_err("cannot write");
        assert!(
            matches!(
                error,
                ClientError::Server {
                    code: ErrorCode::Io,
                    ..
                }
            ),
            "upload as {name}: {error:?}"
        );
        assert!(
            error.to_string().contains("temporary file"),
            "unclear message: {error}"
        );
    }
    let stats = stop(server);
    assert_eq!(stats.refused, 2, "{}", stats.summary());
    let names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["existing.bin"]);
    assert_eq!(fs::read(root.join("existing.bin")).unwrap(), b"old");
}

/// Downloads an 8 MiB file, calls `change` on the library file as soon as the client's
/// partial file holds bytes, and returns the download's result and whether the file
/// appeared under its final name.
fn download_while(change: impl FnOnce(&Path)) -> (Result<Report, ClientError>, bool) {
    let library = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let served = library.path().join("moving.bin");
    write_random(&served, 4, 8 * MIB);
    // Last modified long ago, so any change now gives it a new modification time even
    // where file times are coarse.
    let long_ago = std::time::UNIX_EPOCH + Duration::from_secs(86_400);
    let file = fs::OpenOptions::new().write(true).open(&served).unwrap();
    file.set_modified(long_ago).unwrap();
    drop(file);
    let server = start(library.path(), LibraryOptions::default(), quick_config());
    let dest = local.path().join("moving.bin");
    let partial = udpft::client::partial_path(&dest).unwrap();
    let addr = server.addr;
    let download = {
        let dest = dest.clone();
        // A modest chunk keeps the transfer long (about half a second) next to the poll.
        thread::spawn(move || get(addr, 512, "moving.bin", &dest))
    };
    wait_for("the download to start", Duration::from_secs(10), || {
        file_len(&partial) > 0 || download.is_finished()
    });
    assert!(
        !download.is_finished(),
        "the download ended before the file changed"
    );
    change(&served);
    let result = download.join().unwrap();
    stop(server);
    (result, dest.exists())
}

#[test]
fn a_file_that_shrinks_during_a_download_fails_it_with_file_changed() {
    let (result, appeared) = download_while(|path| {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(4 * MIB as u64).unwrap();
    });
    let error = result.expect_err("the file shrank");
    assert_eq!(code_of(&error), Some(ErrorCode::FileChanged), "{error:?}");
    assert!(
        error.to_string().contains("changed") || error.to_string().contains("shrank"),
        "{error}"
    );
    assert!(
        !appeared,
        "a failed download left a file under its final name"
    );
}

#[test]
fn a_file_that_grows_during_a_download_fails_it_with_file_changed() {
    let (result, appeared) = download_while(|path| {
        let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(b"more bytes than announced").unwrap();
    });
    let error = result.expect_err("the file grew");
    assert_eq!(code_of(&error), Some(ErrorCode::FileChanged), "{error:?}");
    assert!(error.to_string().contains("changed"), "{error}");
    assert!(
        !appeared,
        "a failed download left a file under its final name"
    );
}

#[test]
fn a_file_rewritten_in_place_during_a_download_fails_it_with_file_changed() {
    let (result, appeared) = download_while(|path| {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(&[0u8; 4096], 7 * MIB as u64).unwrap();
    });
    let error = result.expect_err("the file changed (same size, new bytes)");
    assert_eq!(code_of(&error), Some(ErrorCode::FileChanged), "{error:?}");
    assert!(
        !appeared,
        "a failed download left a file under its final name"
    );
}

#[test]
fn a_file_rewritten_in_place_with_its_mtime_restored_fails_the_download() {
    // What `rsync --inplace -t` does: same size, new bytes, the old modification time put
    // back. The change time (which nobody can set back) reveals it.
    let (result, appeared) = download_while(|path| {
        let mtime = fs::metadata(path).unwrap().modified().unwrap();
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(&[0u8; 4096], 7 * MIB as u64).unwrap();
        file.set_modified(mtime).unwrap();
        assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), mtime);
    });
    let error = result.expect_err("the file changed (same size and mtime, new bytes)");
    assert_eq!(code_of(&error), Some(ErrorCode::FileChanged), "{error:?}");
    assert!(
        !appeared,
        "a failed download left a file under its final name"
    );
}

#[test]
fn stale_temporary_files_are_removed_at_start_and_never_listed() {
    let library = tempfile::tempdir().unwrap();
    let root = library.path();
    let stale = root.join(format!("{TEMP_PREFIX}0badf00d.report.pdf"));
    fs::write(&stale, b"half an upload").unwrap();
    fs::write(root.join("report.pdf"), b"the real one").unwrap();
    let server = start(root, LibraryOptions::default(), quick_config());
    assert!(!stale.exists(), "a stale temporary file survived the start");
    // One that appears later (an upload in progress) is hidden, so never listed either.
    let live = root.join(format!("{TEMP_PREFIX}12345678.other.bin"));
    fs::write(&live, b"in progress").unwrap();
    assert_eq!(listed_names(server.addr), vec![b"report.pdf".to_vec()]);
    let name = live.file_name().unwrap().as_bytes();
    let get = Message::Get {
        token: 99,
        chunk: DEFAULT_CHUNK,
        window: 1,
        offset: 0,
        name,
    };
    assert!(matches!(
        ask(server.addr, &get),
        Answer::Refused(ErrorCode::BadName, _)
    ));
    stop(server);
}

// ---------------------------------------------------------------------------------------
// 5. Read-only and size-capped libraries
// ---------------------------------------------------------------------------------------

#[test]
fn a_read_only_library_refuses_uploads_with_read_only() {
    let library = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source.bin");
    write_random(&source, 5, 2000);
    let mut config = quick_config();
    config.policy.read_only = true;
    let server = start(library.path(), LibraryOptions::default(), config);
    let error = put(server.addr, &source, "up.bin", false).expect_err("read-only");
    assert!(
        matches!(
            error,
            ClientError::Server {
                code: ErrorCode::ReadOnly,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("read-only"),
        "unclear message: {error}"
    );
    stop(server);
    assert_eq!(fs::read_dir(library.path()).unwrap().count(), 0);
}

#[test]
fn uploads_over_max_upload_are_refused_with_too_large() {
    let library = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let too_big = local.path().join("too_big.bin");
    write_random(&too_big, 6, 2000);
    let just_fits = local.path().join("just_fits.bin");
    let fits = write_random(&just_fits, 7, 1000);
    let mut config = quick_config();
    config.policy.max_upload = Some(1000);
    let server = start(library.path(), LibraryOptions::default(), config);
    let error = put(server.addr, &too_big, "big.bin", false).expect_err("over the limit");
    assert!(
        matches!(
            error,
            ClientError::Server {
                code: ErrorCode::TooLarge,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("2000") && text.contains("1000"),
        "unclear message: {text}"
    );
    put(server.addr, &just_fits, "fits.bin", false).expect("1000 bytes are allowed");
    stop(server);
    assert!(!library.path().join("big.bin").exists());
    assert_eq!(fs::read(library.path().join("fits.bin")).unwrap(), fits);
    assert!(temp_files(library.path()).is_empty());
}

// ---------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------

#[test]
fn stop_lets_a_running_download_finish_and_abandons_a_running_upload() {
    stop_during_transfers(Model::Table);
}

#[test]
fn stop_on_the_threads_model_lets_a_download_finish_and_abandons_an_upload() {
    stop_during_transfers(Model::Threads);
}

/// Stops a server of `model` (grace 10 s) while a download and an upload of 8 MiB run.
fn stop_during_transfers(model: Model) {
    let library = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let served = write_random(&library.path().join("down.bin"), 8, 8 * MIB);
    let source = local.path().join("up.bin");
    write_random(&source, 9, 8 * MIB);
    let mut config = ServerConfig {
        model,
        ..ServerConfig::default()
    };
    config.policy.grace = Duration::from_secs(10);
    let server = start(library.path(), LibraryOptions::default(), config);
    let addr = server.addr;
    let dest = local.path().join("down.bin");
    let partial = udpft::client::partial_path(&dest).unwrap();
    // Modest chunks keep both transfers running for about half a second.
    let download = {
        let dest = dest.clone();
        thread::spawn(move || get(addr, 512, "down.bin", &dest))
    };
    let upload =
        thread::spawn(move || client(addr, 512).put(&source, "up.bin", false, &mut |_| {}));
    let root = library.path().to_owned();
    wait_for("both transfers to run", Duration::from_secs(10), || {
        let uploading = temp_files(&root)
            .iter()
            .any(|name| file_len(&root.join(name)) > 0);
        (file_len(&partial) > 0 && uploading) || download.is_finished() || upload.is_finished()
    });
    assert!(
        !download.is_finished() && !upload.is_finished(),
        "a transfer ended before the stop"
    );
    let stopper = thread::spawn(move || stop(server));
    // While the download drains, new requests are refused. A probe that beats the stop
    // request is accepted and at once cancelled: no session ever opens for it (its peer
    // never proved its address), so it costs nothing and counts as no failure.
    let mut beaten = 0;
    for token in 1..=1000u32 {
        let probe = Message::Get {
            token: token << 1,
            chunk: DEFAULT_CHUNK,
            window: 1,
            offset: 0,
            name: b"down.bin",
        };
        // No barrier: the threads model answers from several threads, in no fixed order.
        match exchange(addr, &probe, false) {
            Answer::Accepted => beaten += 1,
            Answer::Refused(ErrorCode::ShuttingDown, _) => break,
            other => panic!("probe during the drain: {other:?}"),
        }
        assert!(token < 1000, "no probe refused during the drain");
    }
    let stats = stopper.join().unwrap();

    let report = download
        .join()
        .unwrap()
        .expect("the download finishes within the grace");
    assert_eq!(report.size, served.len() as u64);
    assert!(
        fs::read(&dest).unwrap() == served,
        "downloaded file differs"
    );
    let error = upload.join().unwrap().expect_err("the upload is abandoned");
    assert_eq!(code_of(&error), Some(ErrorCode::ShuttingDown), "{error:?}");
    assert!(!library.path().join("up.bin").exists());
    assert!(temp_files(library.path()).is_empty());
    assert_eq!(
        (stats.completed, stats.failed, stats.opened),
        (1, 1, 2),
        "{} ({beaten} probes beat the stop)",
        stats.summary()
    );
}
