//! Whole TFTP transfers in simulated time: udpft's TFTP client session against its server
//! sessions through seeded lossy links (`udpft::link::Link`: loss, duplication, reordering,
//! delay and jitter; no corruption, which TFTP cannot detect). A sweep over loss rates,
//! seeds, windows, block sizes and file sizes, both directions; block-number rollover under
//! loss; netascii; and what one lost block costs. Virtual time only: nothing sleeps.

mod tftp_support;

mod live;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use udpft::link::{Delivery, Impairments, Link, Rng};
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::{Outcome, Stats};
use udpft::tftp::client::{ClientConfig, ClientSession};
use udpft::tftp::wire::{Mode, Packet, MAX_PACKET};
use udpft::tftp::{ServerConfig, ServerSession};

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 69);

/// What one simulated transfer does.
#[derive(Clone)]
struct Case {
    upload: bool,
    size: usize,
    blksize: Option<u16>,
    window: Option<u16>,
    mode: Mode,
    link: Impairments,
    seed: u64,
}

impl Case {
    fn new(size: usize) -> Self {
        Self {
            upload: false,
            size,
            blksize: Some(1468),
            window: Some(4),
            mode: Mode::Octet,
            link: lan(),
            seed: 1,
        }
    }
}

fn lan() -> Impairments {
    Impairments {
        delay: Duration::from_micros(500),
        ..Impairments::default()
    }
}

fn lossy(loss: f64) -> Impairments {
    Impairments {
        loss,
        duplicate: 0.02,
        reorder: 0.02,
        jitter: Duration::from_micros(200),
        ..lan()
    }
}

fn file(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x7F7F);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// The result of a run.
struct Run {
    client: Option<Outcome>,
    server: Option<Outcome>,
    received: Vec<u8>,
    committed: bool,
    elapsed: Duration,
    server_stats: Stats,
}

/// Runs `case` until both ends finish; `drop` may discard chosen datagrams (by direction,
/// `true` = client to server, and decoded packet) before the link sees them.
fn run(case: &Case, drop: impl FnMut(bool, &Packet<'_>) -> bool) -> Run {
    run_file(case, &file(case.seed, case.size), drop)
}

/// [`run`] with the file's bytes given.
fn run_file(case: &Case, bytes: &[u8], mut drop: impl FnMut(bool, &Packet<'_>) -> bool) -> Run {
    let epoch = Instant::now();
    let bytes = bytes.to_vec();
    let bytes_sent = bytes.clone();
    let client_config = ClientConfig {
        blksize: case.blksize,
        windowsize: case.window,
        mode: case.mode,
        ..ClientConfig::for_server(SERVER)
    };
    let sink = Arc::new(Mutex::new(MemSink::default()));
    let mut client = if case.upload {
        ClientSession::upload(
            epoch,
            client_config,
            SERVER,
            "f",
            Box::new(MemSource(bytes.clone())),
            bytes.len() as u64,
        )
    } else {
        ClientSession::download(epoch, client_config, SERVER, "f", Box::new(sink.clone()))
    };
    let server_config = ServerConfig {
        allow_write: true,
        ..ServerConfig::default()
    };
    let mut server: Option<ServerSession> = None;
    let mut up = Link::new(case.link.clone(), case.seed);
    let mut down = Link::new(case.link.clone(), case.seed ^ 0xD0);
    // In flight: (arrival, counter) -> (to the server?, bytes).
    let mut flight: BTreeMap<(Instant, u64), (bool, Vec<u8>)> = BTreeMap::new();
    let mut counter = 0u64;
    let mut now = epoch;
    let mut buf = vec![0; MAX_PACKET];
    let mut deliveries: Vec<Delivery> = Vec::new();
    for _step in 0..5_000_000 {
        // Everything the two ends want to send now goes onto the links.
        while let Some((to, n)) = client.poll_transmit(now, &mut buf) {
            assert_eq!(to.ip(), SERVER.ip());
            let packet = Packet::decode(&buf[..n]).expect("the client sends well-formed packets");
            if !drop(true, &packet) {
                deliveries.clear();
                up.transmit(now, n, &mut deliveries);
                for d in &deliveries {
                    counter += 1;
                    flight.insert((d.at, counter), (true, buf[..n].to_vec()));
                }
            }
        }
        if let Some(session) = server.as_mut() {
            while let Some(n) = session.poll_transmit(now, &mut buf) {
                let packet =
                    Packet::decode(&buf[..n]).expect("the server sends well-formed packets");
                if !drop(false, &packet) {
                    deliveries.clear();
                    down.transmit(now, n, &mut deliveries);
                    for d in &deliveries {
                        counter += 1;
                        flight.insert((d.at, counter), (false, buf[..n].to_vec()));
                    }
                }
            }
        }
        let server_done = server.as_ref().is_none_or(|s| s.is_finished());
        if client.is_finished() && server_done && (server.is_some() || client.outcome().is_some()) {
            break;
        }
        let next = [
            flight.keys().next().map(|k| k.0),
            client.poll_timeout(),
            server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        if let Some((&key, _)) = flight.iter().next().filter(|(k, _)| k.0 <= now) {
            let (to_server, bytes) = flight.remove(&key).expect("in flight");
            let file_bytes = &bytes_sent;
            if to_server {
                match server.as_mut() {
                    Some(session) => session.handle_datagram(now, &bytes),
                    None => {
                        server = Some(open_server(
                            now,
                            &server_config,
                            &bytes,
                            case.upload,
                            file_bytes,
                        ));
                    }
                }
            } else {
                client.handle_datagram(now, SERVER, &bytes);
            }
        }
        client.handle_timeout(now);
        if let Some(session) = server.as_mut() {
            session.handle_timeout(now);
        }
    }
    let received = if case.upload {
        UPLOADS.with(|u| u.borrow().clone())
    } else {
        sink.lock().unwrap().data.clone()
    };
    let committed = if case.upload {
        UPLOAD_COMMITTED.with(|c| *c.borrow())
    } else {
        sink.lock().unwrap().committed
    };
    Run {
        client: client.outcome().cloned(),
        server: server.as_ref().and_then(|s| s.outcome().cloned()),
        received,
        committed,
        elapsed: now - epoch,
        server_stats: server.as_ref().map(|s| s.stats()).unwrap_or_default(),
    }
}

thread_local! {
    static UPLOADS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static UPLOAD_COMMITTED: std::cell::RefCell<bool> = const { std::cell::RefCell::new(false) };
}

/// A sink that publishes what it received through the thread-locals above.
struct UploadSink;

impl udpft::proto::Sink for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        UPLOADS.with(|u| u.borrow_mut().extend_from_slice(data));
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        UPLOAD_COMMITTED.with(|c| *c.borrow_mut() = true);
        Ok(())
    }
}

fn open_server(
    now: Instant,
    config: &ServerConfig,
    request: &[u8],
    upload: bool,
    file: &[u8],
) -> ServerSession {
    if upload {
        UPLOADS.with(|u| u.borrow_mut().clear());
        UPLOAD_COMMITTED.with(|c| *c.borrow_mut() = false);
        ServerSession::write(now, config, request, Box::new(UploadSink)).expect("write opens")
    } else {
        let size = file.len() as u64;
        ServerSession::read(
            now,
            config,
            request,
            Box::new(MemSource(file.to_vec())),
            size,
        )
        .expect("read opens")
    }
}

fn assert_transferred(case: &Case, run: &Run, what: &str) {
    assert_eq!(run.client, Some(Outcome::Complete), "client: {what}");
    // The one ambiguity TFTP leaves: a download's final ACK lost (every time the last block
    // was repeated, while the client lingered) leaves the server unsure, and it gives up;
    // the client has the file. An upload's server always knows.
    let unsure = !case.upload
        && matches!(
            run.server,
            Some(Outcome::Failed(udpft::proto::Failure::Timeout { .. }))
        );
    assert!(
        run.server == Some(Outcome::Complete) || unsure,
        "server: {what}: {:?}",
        run.server
    );
    assert!(run.committed, "not committed: {what}");
    assert!(
        run.received == file(case.seed, case.size),
        "bytes differ: {what}"
    );
}

#[test]
fn downloads_and_uploads_survive_loss_duplication_and_reordering() {
    let mut runs = 0;
    for upload in [false, true] {
        for &loss in &[0.0, 0.05, 0.2] {
            for &(blksize, window) in &[
                (None, None),
                (Some(1468), Some(1)),
                (Some(512), Some(4)),
                (Some(1468), Some(16)),
            ] {
                for &size in &[0, 1, 512, 1468, 20_000] {
                    for seed in 0..3 {
                        let case = Case {
                            upload,
                            size,
                            blksize,
                            window,
                            link: lossy(loss),
                            seed: seed + size as u64,
                            ..Case::new(size)
                        };
                        let result = run(&case, |_, _| false);
                        let what = format!(
                            "upload={upload} loss={loss} blksize={blksize:?} window={window:?} size={size} seed={}",
                            case.seed
                        );
                        assert_transferred(&case, &result, &what);
                        runs += 1;
                    }
                }
            }
        }
    }
    assert_eq!(runs, 2 * 3 * 4 * 5 * 3);
}

#[test]
fn block_numbers_roll_over_under_loss() {
    // 65,600 blocks of 512 bytes: past 65535 the numbers start again at 0.
    let case = Case {
        size: 65_600 * 512 + 100,
        blksize: None,
        window: None,
        link: lossy(0.01),
        ..Case::new(0)
    };
    let mut saw_zero = false;
    let result = run(&case, |to_server, packet| {
        if let (false, Packet::Data { block: 0, .. }) = (to_server, packet) {
            saw_zero = true;
        }
        false
    });
    assert!(saw_zero, "block 0 after 65535 was sent");
    assert_transferred(&case, &result, "rollover");
}

#[test]
fn netascii_text_arrives_with_unix_line_ends() {
    let text: Vec<u8> = (0..5000)
        .map(|i| match i % 37 {
            0 => b'\n',
            17 => b'\r',
            _ => b'a' + (i % 26) as u8,
        })
        .collect();
    for window in [None, Some(8)] {
        for loss in [0.0, 0.1] {
            let case = Case {
                mode: Mode::Netascii,
                blksize: Some(100),
                window,
                link: lossy(loss),
                ..Case::new(0)
            };
            let result = run_file(&case, &text, |_, _| false);
            assert_eq!(result.client, Some(Outcome::Complete));
            assert!(
                result.received == text,
                "netascii round trip, window {window:?} loss {loss}"
            );
        }
    }
}

#[test]
fn one_lost_block_costs_about_a_round_trip() {
    // 1 ms round trips; a fixed 1 s TFTP timer would make one loss cost a second.
    let case = Case {
        size: 100 * 512,
        blksize: None,
        window: None,
        ..Case::new(0)
    };
    let clean = run(&case, |_, _| false);
    assert_transferred(&case, &clean, "clean");
    let mut dropped = false;
    let lossy = run(&case, |to_server, packet| {
        let hit = !to_server && !dropped && matches!(packet, Packet::Data { block: 50, .. });
        dropped |= hit;
        hit
    });
    assert!(dropped);
    assert_transferred(&case, &lossy, "one block lost");
    let cost = lossy.elapsed - clean.elapsed;
    assert!(
        cost < Duration::from_millis(5),
        "one lost block cost {cost:?}"
    );
    assert_eq!(
        lossy.server_stats.retransmitted, 1,
        "exactly the lost block was resent"
    );
}

#[test]
fn duplicated_acks_never_multiply_the_data() {
    // Every datagram delivered twice: a Sorcerer's Apprentice server would double its
    // sends at every block.
    let case = Case {
        size: 200 * 512,
        blksize: None,
        window: None,
        link: Impairments {
            duplicate: 1.0,
            ..lan()
        },
        ..Case::new(0)
    };
    let result = run(&case, |_, _| false);
    assert_transferred(&case, &result, "all duplicated");
    let blocks = 201;
    assert!(
        result.server_stats.sent <= blocks + 5,
        "server sent {} datagrams for {blocks} blocks",
        result.server_stats.sent
    );
}
