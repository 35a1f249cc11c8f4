//! Transcripts of the TFTP sessions (smoltcp's `recv!`/`send!` style): one datagram in at
//! an explicit virtual time, the exact datagrams out, and the next deadline. Each test pins
//! one rule of `udpft::tftp::server` or `udpft::tftp::client`: option negotiation, the
//! amplification rules, adaptive retransmission and its backoff, no Sorcerer's Apprentice,
//! the fixed window, rollover, netascii, the end of a session, uploads, names, the client's
//! fallback and transfer IDs. Nothing sleeps.

mod tftp_support;

mod live;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tftp_support::packets::{ack, data, error, oack, rrq, show, wrq};
use udpft::library::{Library, LibraryOptions};
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::{ErrorCode, Failure, Outcome};
use udpft::tftp::client::{ClientConfig, ClientSession};
use udpft::tftp::options::Policy;
use udpft::tftp::wire::{Mode, MAX_PACKET};
use udpft::tftp::{server, ServerConfig, ServerSession, TftpCode};

/// A session under test and its virtual clock.
struct Script {
    epoch: Instant,
    session: ServerSession,
}

impl Script {
    fn at(&self, ms: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(ms / 1000.0)
    }

    /// Feeds `datagram` at `ms` and returns what the session sends in answer.
    fn recv(&mut self, ms: f64, datagram: &[u8]) -> Vec<String> {
        let now = self.at(ms);
        self.session.handle_datagram(now, datagram);
        self.drain(now)
    }

    /// Fires the timers at `ms` and returns what the session sends.
    fn tick(&mut self, ms: f64) -> Vec<String> {
        let now = self.at(ms);
        self.session.handle_timeout(now);
        self.drain(now)
    }

    fn drain(&mut self, now: Instant) -> Vec<String> {
        let mut buf = vec![0; MAX_PACKET];
        let mut out = Vec::new();
        while let Some(n) = self.session.poll_transmit(now, &mut buf) {
            out.push(show(&buf[..n]));
            assert!(out.len() < 100_000, "runaway session");
        }
        out
    }

    /// The next deadline, in ms after the epoch.
    fn deadline_ms(&self) -> Option<f64> {
        self.session
            .poll_timeout()
            .map(|t| t.duration_since(self.epoch).as_secs_f64() * 1000.0)
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        allow_write: true,
        ..ServerConfig::default()
    }
}

/// A read session for `request` over `file`, after the request at time 0; returns the
/// script and what the session sent first.
fn read(request: &[u8], file: &[u8]) -> (Script, Vec<String>) {
    read_with(config(), request, file)
}

fn read_with(config: ServerConfig, request: &[u8], file: &[u8]) -> (Script, Vec<String>) {
    let epoch = Instant::now();
    let session = ServerSession::read(
        epoch,
        &config,
        request,
        Box::new(MemSource(file.to_vec())),
        file.len() as u64,
    )
    .unwrap_or_else(|e| panic!("session opens: {e:?}"));
    let mut script = Script { epoch, session };
    let first = script.drain(epoch);
    (script, first)
}

fn write_with(config: ServerConfig, request: &[u8]) -> (Script, Arc<Mutex<MemSink>>, Vec<String>) {
    let epoch = Instant::now();
    let sink = Arc::new(Mutex::new(MemSink::default()));
    let session = ServerSession::write(epoch, &config, request, Box::new(sink.clone()))
        .unwrap_or_else(|e| panic!("session opens: {e:?}"));
    let mut script = Script { epoch, session };
    let first = script.drain(epoch);
    (script, sink, first)
}

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

// ---- amplification -------------------------------------------------------------------

#[test]
fn an_rrq_with_options_gets_only_the_oack_until_ack_0() {
    let (mut s, first) = read(
        &rrq("f", "octet", &[("blksize", "8"), ("tsize", "0")]),
        &bytes(20),
    );
    assert_eq!(first, ["OACK blksize 8 tsize 20"]);
    // No timer ever sends anything to a peer that has not answered.
    for ms in [100.0, 250.0, 1000.0, 4999.0, 14_999.0] {
        assert!(s.tick(ms).is_empty());
    }
    // It waits three give-up times (15 s) for the peer, then ends silently.
    assert_eq!(s.deadline_ms(), Some(15_000.0));
    assert!(s.tick(15_000.0).is_empty());
    assert!(s.session.is_finished());
    assert!(matches!(
        s.session.outcome(),
        Some(Outcome::Failed(Failure::Timeout { .. }))
    ));
}

#[test]
fn data_flows_only_after_ack_0_of_the_oack() {
    let (mut s, _) = read(&rrq("f", "octet", &[("blksize", "8")]), &bytes(20));
    // An ACK of a block never sent proves nothing and sends nothing.
    assert!(s.recv(1.0, &ack(1)).is_empty());
    assert!(!s.session.is_proven());
    assert_eq!(s.recv(2.0, &ack(0)), ["DATA 1 (8 B)"]);
    assert!(s.session.is_proven());
}

#[test]
fn an_rrq_without_options_gets_block_1_once_and_no_retransmission() {
    let (mut s, first) = read(&rrq("f", "octet", &[]), &bytes(2000));
    assert_eq!(first, ["DATA 1 (512 B)"]);
    for ms in [0.2, 100.0, 500.0, 2000.0, 4999.0, 15_000.0] {
        assert!(s.tick(ms).is_empty(), "nothing on the timer at {ms} ms");
    }
    assert!(
        s.session.is_finished(),
        "the unproven session ends silently"
    );
}

#[test]
fn a_first_ack_repeated_after_the_clients_own_timeout_is_still_heard() {
    // Block 1 went out, its ACK was lost; tftp-hpa repeats the ACK 5 s later.
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(2000));
    assert!(s.tick(5000.0).is_empty());
    assert_eq!(s.recv(5001.0, &ack(1)), ["DATA 2 (512 B)"]);
}

#[test]
fn a_repeated_request_is_answered_once_more_and_no_more() {
    let request = rrq("f", "octet", &[]);
    let (mut s, _) = read(&request, &bytes(2000));
    assert_eq!(s.recv(1000.0, &request), ["DATA 1 (512 B)"]);
    // Another request (not the same bytes) from the same peer opens nothing here.
    assert!(s.recv(1001.0, &rrq("g", "octet", &[])).is_empty());
    let with_options = rrq("f", "octet", &[("blksize", "8")]);
    let (mut s, _) = read(&with_options, &bytes(20));
    assert_eq!(s.recv(900.0, &with_options), ["OACK blksize 8"]);
}

#[test]
fn a_wrq_is_answered_once_and_not_on_timers() {
    let (mut s, _, first) = write_with(config(), &wrq("up", "octet", &[]));
    assert_eq!(first, ["ACK 0"]);
    assert!(s.tick(250.0).is_empty());
    assert!(s.tick(4000.0).is_empty());
    let (mut s, _, first) = write_with(config(), &wrq("up", "octet", &[("blksize", "1000")]));
    assert_eq!(first, ["OACK blksize 1000"]);
    assert!(s.tick(1000.0).is_empty());
}

// ---- retransmission --------------------------------------------------------------------

#[test]
fn a_lost_block_costs_about_a_round_trip_with_backoff() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    // The peer answers in 1 ms: that round trip is the estimator's first sample.
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    // RTO = SRTT + 4 RTTVAR = 1 ms + 4 × 0.5 ms = 3 ms after the send.
    let due = s.deadline_ms().expect("timer runs");
    assert!((due - 4.0).abs() < 0.01, "deadline {due} ms");
    assert!(s.tick(3.9).is_empty(), "not before its deadline");
    assert_eq!(s.tick(4.0), ["DATA 2 (512 B)"]);
    // Backoff: the next wait is twice as long.
    let due = s.deadline_ms().unwrap();
    assert!((due - 10.0).abs() < 0.01, "backed-off deadline {due} ms");
    assert_eq!(s.recv(9.0, &ack(2)), ["DATA 3 (512 B)"]);
}

#[test]
fn after_two_timeouts_in_a_row_the_next_block_goes_out_too() {
    // A receiver that holds block 2 and answers repeats only once (atftp) is unstuck by
    // block 3, which is in order for it.
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    let at = s.deadline_ms().unwrap();
    assert_eq!(s.tick(at), ["DATA 2 (512 B)"]);
    let at = s.deadline_ms().unwrap();
    assert_eq!(s.tick(at), ["DATA 2 (512 B)", "DATA 3 (512 B)"]);
    assert_eq!(s.recv(at + 1.0, &ack(3)), ["DATA 4 (512 B)"]);
}

#[test]
fn the_timer_has_a_floor_and_a_ceiling() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(5000));
    // A 10 µs round trip: the floor (100 µs) holds.
    assert_eq!(s.recv(0.01, &ack(1)), ["DATA 2 (512 B)"]);
    let due = s.deadline_ms().unwrap();
    assert!((due - 0.11).abs() < 0.001, "floored deadline {due}");
    let mut now = due;
    for i in 0..12 {
        let out = s.tick(now);
        assert_eq!(out[0], "DATA 2 (512 B)");
        assert_eq!(out.len(), if i == 0 { 1 } else { 2 }, "{out:?}");
        let next = s.deadline_ms().unwrap();
        assert!(
            next - now <= 250.001,
            "backoff capped at 250 ms: {}",
            next - now
        );
        now = next;
    }
}

#[test]
fn a_duplicate_ack_never_causes_a_send() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    // The Sorcerer's Apprentice: a late duplicate of ACK 1 must not resend DATA 2.
    assert!(s.recv(1.5, &ack(1)).is_empty());
    assert!(s.recv(1.6, &ack(0)).is_empty());
    assert_eq!(s.recv(2.0, &ack(2)), ["DATA 3 (512 B)"]);
    assert!(s.recv(2.1, &ack(2)).is_empty());
}

#[test]
fn a_silent_peer_is_given_up_after_the_timeout() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    let mut last = Vec::new();
    while let Some(at) = s.deadline_ms() {
        last = s.tick(at);
        assert!(at < 6000.0);
    }
    assert_eq!(last, ["ERROR 0 timed out"]);
    assert!(matches!(
        s.session.outcome(),
        Some(Outcome::Failed(Failure::Timeout { .. }))
    ));
}

#[test]
fn a_granted_timeout_is_echoed_and_lengthens_the_give_up_time() {
    let (mut s, first) = read(&rrq("f", "octet", &[("timeout", "6")]), &bytes(3000));
    assert_eq!(first, ["OACK timeout 6"]);
    assert_eq!(s.recv(1.0, &ack(0)), ["DATA 1 (512 B)"]);
    // Retransmission stays adaptive (well under the client's 6 s)...
    assert!(s.deadline_ms().unwrap() < 200.0);
    let mut at = 0.0;
    while let Some(next) = s.deadline_ms() {
        at = next;
        s.tick(at);
    }
    // ...and a silent peer is waited for twice its timeout.
    assert!((12_000.0..12_300.0).contains(&at), "gave up at {at} ms");
}

// ---- the window ------------------------------------------------------------------------

#[test]
fn a_window_sends_windowsize_blocks_and_resumes_after_the_ack() {
    let opts = [("blksize", "8"), ("windowsize", "4")];
    let (mut s, first) = read(&rrq("f", "octet", &opts), &bytes(100));
    assert_eq!(first, ["OACK blksize 8 windowsize 4"]);
    let window = |a: u16, b: u16| {
        (a..=b)
            .map(|n| format!("DATA {n} (8 B)"))
            .collect::<Vec<_>>()
    };
    assert_eq!(s.recv(1.0, &ack(0)), window(1, 4));
    // ACK 4 acknowledges all four: the next window.
    assert_eq!(s.recv(2.0, &ack(4)), window(5, 8));
    // ACK 6 (block 7 was lost): the next window starts at 7.
    assert_eq!(s.recv(3.0, &ack(6)), window(7, 10));
    // An old ACK changes nothing.
    assert!(s.recv(3.1, &ack(5)).is_empty());
    // On timeout, resend from the first unacknowledged block.
    let at = s.deadline_ms().unwrap();
    assert_eq!(s.tick(at), window(7, 10));
    assert_eq!(
        s.recv(at + 1.0, &ack(10)),
        [&window(11, 12)[..], &["DATA 13 (4 B)".to_string()]].concat()
    );
    assert!(s.recv(at + 2.0, &ack(13)).is_empty());
    assert_eq!(s.session.outcome(), Some(&Outcome::Complete));
}

#[test]
fn the_window_is_granted_up_to_the_server_maximum() {
    let config = ServerConfig {
        policy: Policy {
            max_window: 8,
            ..Policy::default()
        },
        ..config()
    };
    let (_, first) = read_with(
        config,
        &rrq("f", "octet", &[("windowsize", "64")]),
        &bytes(9),
    );
    assert_eq!(first, ["OACK windowsize 8"]);
}

// ---- rollover --------------------------------------------------------------------------

#[test]
fn block_numbers_roll_over_from_65535_to_0() {
    let blocks = 65_537usize;
    let file = bytes(blocks * 8 - 3);
    let (mut s, _) = read(&rrq("big", "octet", &[("blksize", "8")]), &file);
    let mut ms = 1.0;
    assert_eq!(s.recv(ms, &ack(0)), ["DATA 1 (8 B)"]);
    for index in 1..blocks as u64 {
        ms += 0.01;
        let out = s.recv(ms, &ack(index as u16));
        let next = ((index + 1) % 65_536) as u16;
        let len = if index + 1 == blocks as u64 { 5 } else { 8 };
        assert_eq!(
            out,
            [format!("DATA {next} ({len} B)")],
            "after ACK of block {index}"
        );
    }
    // Block 65537 went out as 1; its ACK completes the transfer.
    assert!(s.recv(ms + 0.01, &ack(1)).is_empty());
    assert_eq!(s.session.outcome(), Some(&Outcome::Complete));
    assert_eq!(s.session.stats().bytes, file.len() as u64);
}

// ---- netascii --------------------------------------------------------------------------

#[test]
fn netascii_is_converted_on_the_fly_and_gets_no_tsize() {
    let (mut s, first) = read(
        &rrq("t", "netascii", &[("blksize", "8"), ("tsize", "0")]),
        b"ab\ncd\r\nx\n",
    );
    assert_eq!(
        first,
        ["OACK blksize 8"],
        "tsize is not offered in netascii"
    );
    // "ab\r\ncd\r\0\r\nx\r\n" = 13 bytes on the wire: one full block, then 5.
    assert_eq!(s.recv(1.0, &ack(0)), ["DATA 1 (8 B)"]);
    assert_eq!(s.recv(2.0, &ack(1)), ["DATA 2 (5 B)"]);
    assert!(s.recv(3.0, &ack(2)).is_empty());
    assert_eq!(s.session.outcome(), Some(&Outcome::Complete));
}

// ---- the end ---------------------------------------------------------------------------

#[test]
fn after_the_end_strays_and_acks_change_nothing() {
    let (mut s, first) = read(&rrq("f", "octet", &[]), b"abc");
    assert_eq!(first, ["DATA 1 (3 B)"]);
    assert!(s.recv(1.0, &ack(1)).is_empty());
    assert_eq!(s.session.outcome(), Some(&Outcome::Complete));
    assert!(s.session.is_finished());
    for stray in [
        ack(1),
        ack(2),
        data(1, b"x"),
        error(0, "bye"),
        b"\x00\x09junk".to_vec(),
    ] {
        assert!(s.recv(2.0, &stray).is_empty(), "{}", show(&stray));
    }
    assert_eq!(s.session.outcome(), Some(&Outcome::Complete));
}

#[test]
fn an_ack_of_our_error_changes_nothing() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    s.session
        .abort(TftpCode::Undefined, "server is shutting down");
    assert_eq!(s.drain(s.at(2.0)), ["ERROR 0 server is shutting down"]);
    assert!(s.recv(3.0, &ack(2)).is_empty());
    assert!(s.recv(3.1, &ack(0)).is_empty());
    assert!(s.session.is_finished());
    assert_eq!(s.deadline_ms(), None);
}

#[test]
fn error_8_in_answer_to_the_oack_ends_the_session_cleanly() {
    let (mut s, _) = read(&rrq("f", "octet", &[("blksize", "9000")]), &bytes(20));
    assert!(s.recv(1.0, &error(8, "blksize too large")).is_empty());
    assert!(s.session.is_finished());
    match s.session.outcome() {
        Some(Outcome::Failed(Failure::Peer { code, text })) => {
            assert_eq!(*code, ErrorCode::BadRequest);
            assert_eq!(text, "blksize too large");
        }
        other => panic!("{other:?}"),
    }
    assert!(s.tick(6000.0).is_empty());
}

// ---- uploads ---------------------------------------------------------------------------

#[test]
fn an_upload_is_committed_only_when_complete_and_then_acknowledged() {
    let (mut s, sink, first) = write_with(config(), &wrq("up", "octet", &[]));
    assert_eq!(first, ["ACK 0"]);
    let block = bytes(512);
    assert_eq!(s.recv(1.0, &data(1, &block)), ["ACK 1"]);
    assert!(!sink.lock().unwrap().committed);
    // A repeat of block 1 (our ACK was lost) is acknowledged again, not written twice.
    assert_eq!(s.recv(1.5, &data(1, &block)), ["ACK 1"]);
    assert_eq!(s.recv(2.0, &data(2, b"tail")), ["ACK 2"]);
    let got = sink.lock().unwrap().clone();
    assert!(got.committed);
    assert_eq!(got.data, [&block[..], b"tail"].concat());
    // It lingers to answer a repeated final block, then ends.
    assert_eq!(s.recv(100.0, &data(2, b"tail")), ["ACK 2"]);
    assert!(!s.session.is_finished());
    let end = s.deadline_ms().unwrap();
    assert!(s.tick(end).is_empty());
    assert!(s.session.is_finished());
}

#[test]
fn an_upload_retransmits_its_ack_when_data_stops() {
    let (mut s, _, _) = write_with(config(), &wrq("up", "octet", &[]));
    assert_eq!(s.recv(1.0, &data(1, &bytes(512))), ["ACK 1"]);
    let due = s.deadline_ms().unwrap();
    assert_eq!(s.tick(due), ["ACK 1"]);
}

#[test]
fn an_upload_over_the_limit_is_refused_before_any_data_or_stopped_when_it_grows() {
    let limited = ServerConfig {
        policy: Policy {
            max_upload: Some(600),
            ..Policy::default()
        },
        ..config()
    };
    let refused = ServerSession::write(
        Instant::now(),
        &limited,
        &wrq("up", "octet", &[("tsize", "601")]),
        Box::new(MemSink::default()),
    );
    assert!(matches!(refused, Err(Some(e)) if e.code == TftpCode::DiskFull));
    // Without tsize the limit is enforced as bytes arrive; nothing is committed.
    let (mut s, sink, _) = write_with(limited, &wrq("up", "octet", &[]));
    assert_eq!(s.recv(1.0, &data(1, &bytes(512))), ["ACK 1"]);
    let out = s.recv(2.0, &data(2, &bytes(512)));
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("ERROR 3"), "{out:?}");
    assert!(!sink.lock().unwrap().committed);
}

#[test]
fn an_upload_block_larger_than_negotiated_is_an_illegal_operation() {
    let (mut s, _, first) = write_with(config(), &wrq("up", "octet", &[("blksize", "8")]));
    assert_eq!(first, ["OACK blksize 8"]);
    let out = s.recv(1.0, &data(1, &bytes(9)));
    assert!(out[0].starts_with("ERROR 4"), "{out:?}");
}

#[test]
fn a_netascii_upload_is_stored_with_lf_line_ends() {
    let (mut s, sink, _) = write_with(config(), &wrq("t", "netascii", &[("blksize", "8")]));
    // "one\r\ntwo\r\n" split so that a CR LF straddles the blocks.
    assert_eq!(s.recv(1.0, &data(1, b"one\r\ntwo")), ["ACK 1"]);
    assert_eq!(s.recv(2.0, &data(2, b"\r\n")), ["ACK 2"]);
    assert_eq!(sink.lock().unwrap().data, b"one\ntwo\n");
}

// ---- requests against a real library ---------------------------------------------------

fn library(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::create_dir(dir.path().join("boot")).unwrap();
    std::fs::write(dir.path().join("boot/inner"), b"x").unwrap();
    let lib = Library::open(dir.path(), LibraryOptions::default()).unwrap();
    (dir, lib)
}

fn refusal(config: &ServerConfig, lib: &mut Library, request: &[u8]) -> (TftpCode, String) {
    match server::open(Instant::now(), config, lib, request) {
        Err(Some(e)) => (e.code, e.text),
        Err(None) => panic!("not a request"),
        Ok(_) => panic!("{} was served", show(request)),
    }
}

#[test]
fn names_follow_the_library_rules_with_a_leading_slash_for_the_root() {
    let (_dir, mut lib) = library(&[("pxelinux.0", b"boot me"), ("exists", b"1")]);
    let cfg = config();
    for name in ["pxelinux.0", "/pxelinux.0"] {
        assert!(server::open(Instant::now(), &cfg, &mut lib, &rrq(name, "octet", &[])).is_ok());
    }
    let cases = [
        ("missing", TftpCode::NotFound),
        ("boot/inner", TftpCode::NotFound),
        ("/boot/inner", TftpCode::NotFound),
        ("../etc/passwd", TftpCode::NotFound),
        ("..", TftpCode::AccessViolation),
        (".hidden", TftpCode::AccessViolation),
        ("boot", TftpCode::NotFound),
    ];
    for (name, code) in cases {
        let (got, text) = refusal(&cfg, &mut lib, &rrq(name, "octet", &[]));
        assert_eq!(got, code, "{name}: {text}");
        assert!(!text.is_empty());
    }
    assert_eq!(
        refusal(&cfg, &mut lib, &wrq("exists", "octet", &[])).0,
        TftpCode::FileExists
    );
    assert_eq!(
        refusal(&cfg, &mut lib, &rrq("pxelinux.0", "mail", &[])).0,
        TftpCode::IllegalOperation
    );
    let read_only = ServerConfig::default();
    let (code, text) = refusal(&read_only, &mut lib, &wrq("new", "octet", &[]));
    assert_eq!(code, TftpCode::AccessViolation);
    assert!(text.contains("not allowed"), "{text}");
}

// ---- the client ------------------------------------------------------------------------

const SERVER: &str = "127.0.0.1:69";

struct ClientScript {
    epoch: Instant,
    client: ClientSession,
    sink: Arc<Mutex<MemSink>>,
}

impl ClientScript {
    fn download(config: ClientConfig) -> (Self, Vec<(u16, String)>) {
        let epoch = Instant::now();
        let sink = Arc::new(Mutex::new(MemSink::default()));
        let client = ClientSession::download(epoch, config, server(), "f", Box::new(sink.clone()));
        let mut s = Self {
            epoch,
            client,
            sink,
        };
        let out = s.drain(0.0);
        (s, out)
    }

    fn at(&self, ms: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(ms / 1000.0)
    }

    fn recv(&mut self, ms: f64, port: u16, datagram: &[u8]) -> Vec<(u16, String)> {
        let from = SocketAddr::new(server().ip(), port);
        self.client.handle_datagram(self.at(ms), from, datagram);
        self.drain(ms)
    }

    fn drain(&mut self, ms: f64) -> Vec<(u16, String)> {
        let mut buf = vec![0; MAX_PACKET];
        let mut out = Vec::new();
        while let Some((to, n)) = self.client.poll_transmit(self.at(ms), &mut buf) {
            out.push((to.port(), show(&buf[..n])));
        }
        out
    }
}

fn server() -> SocketAddr {
    SERVER.parse().unwrap()
}

fn sent(pairs: &[(u16, &str)]) -> Vec<(u16, String)> {
    pairs.iter().map(|(p, s)| (*p, s.to_string())).collect()
}

#[test]
fn the_client_asks_for_mtu_blocks_tsize_and_a_window() {
    let (_, out) = ClientScript::download(ClientConfig::for_server(server()));
    assert_eq!(out, sent(&[(69, "RRQ f")]));
    let mut buf = vec![0; MAX_PACKET];
    let epoch = Instant::now();
    let mut c = ClientSession::download(
        epoch,
        ClientConfig::for_server(server()),
        server(),
        "f",
        Box::new(MemSink::default()),
    );
    let (_, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &rrq(
            "f",
            "octet",
            &[("blksize", "1468"), ("tsize", "0"), ("windowsize", "16")]
        )[..]
    );
}

#[test]
fn the_client_takes_the_server_port_from_its_first_reply() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    let out = c.recv(1.0, 40_000, &oack(&[("blksize", "8"), ("tsize", "11")]));
    assert_eq!(out, sent(&[(40_000, "ACK 0")]));
    assert_eq!(c.client.size(), Some(11));
    // Another port of the server: ERROR 5 there, nothing changes here.
    assert_eq!(
        c.recv(1.5, 40_001, &data(1, b"evilevil")),
        sent(&[(40_001, "ERROR 5 unknown transfer ID")])
    );
    assert!(
        c.recv(1.6, 40_001, &error(0, "x")).is_empty(),
        "an ERROR is never answered"
    );
    assert_eq!(
        c.recv(2.0, 40_000, &data(1, b"12345678")),
        sent(&[(40_000, "ACK 1")])
    );
    assert_eq!(
        c.recv(3.0, 40_000, &data(2, b"abc")),
        sent(&[(40_000, "ACK 2")])
    );
    assert_eq!(c.client.outcome(), Some(&Outcome::Complete));
    assert_eq!(c.sink.lock().unwrap().data, b"12345678abc");
    assert!(c.sink.lock().unwrap().committed);
}

#[test]
fn the_client_falls_back_to_rfc_1350_when_options_are_ignored() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    assert_eq!(
        c.recv(1.0, 1234, &data(1, &bytes(512))),
        sent(&[(1234, "ACK 1")])
    );
    assert!(c.client.fell_back());
    assert_eq!(c.recv(2.0, 1234, &data(2, b"")), sent(&[(1234, "ACK 2")]));
    assert_eq!(c.client.outcome(), Some(&Outcome::Complete));
}

#[test]
fn the_client_asks_again_without_options_after_error_8() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    assert_eq!(
        c.recv(1.0, 69, &error(8, "no options")),
        sent(&[(69, "RRQ f")])
    );
    let mut buf = vec![0; MAX_PACKET];
    let epoch = Instant::now();
    let mut plain = ClientSession::download(
        epoch,
        ClientConfig::for_server(server()),
        server(),
        "f",
        Box::new(MemSink::default()),
    );
    plain.handle_datagram(epoch, server(), &error(8, "no options"));
    let (_, n) = plain.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(&buf[..n], &rrq("f", "octet", &[])[..]);
}

#[test]
fn the_client_refuses_an_oack_that_grants_more_than_asked() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    let out = c.recv(1.0, 5000, &oack(&[("blksize", "9000")]));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 5000);
    assert!(out[0].1.starts_with("ERROR 8"), "{out:?}");
    assert!(matches!(
        c.client.outcome(),
        Some(Outcome::Failed(Failure::Local { .. }))
    ));
    assert!(c.client.is_finished());
}

#[test]
fn the_client_repeats_its_request_on_a_doubling_timer_then_gives_up() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    let mut times = Vec::new();
    while let Some(at) = c.client.poll_timeout() {
        let ms = at.duration_since(c.epoch).as_secs_f64() * 1000.0;
        c.client.handle_timeout(at);
        if !c.drain(ms).is_empty() {
            times.push(ms.round());
        }
    }
    assert_eq!(times, [500.0, 1500.0, 3500.0]);
    assert!(matches!(
        c.client.outcome(),
        Some(Outcome::Failed(Failure::Timeout { .. }))
    ));
}

#[test]
fn the_client_uploads_and_falls_back_on_ack_0() {
    let epoch = Instant::now();
    let file = bytes(700);
    let mut c = ClientSession::upload(
        epoch,
        ClientConfig::for_server(server()),
        server(),
        "up",
        Box::new(MemSource(file.clone())),
        700,
    );
    let mut buf = vec![0; MAX_PACKET];
    let (_, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &wrq(
            "up",
            "octet",
            &[("blksize", "1468"), ("tsize", "700"), ("windowsize", "16")]
        )[..]
    );
    let from: SocketAddr = "127.0.0.1:7777".parse().unwrap();
    c.handle_datagram(epoch, from, &ack(0));
    let (to, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!((to, show(&buf[..n])), (from, "DATA 1 (512 B)".to_string()));
    assert!(
        c.poll_transmit(epoch, &mut buf).is_none(),
        "lockstep after the fallback"
    );
    c.handle_datagram(epoch, from, &ack(1));
    let (_, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(show(&buf[..n]), "DATA 2 (188 B)");
    c.handle_datagram(epoch, from, &ack(2));
    assert_eq!(c.outcome(), Some(&Outcome::Complete));
}

#[test]
fn the_client_in_netascii_stores_lf() {
    let config = ClientConfig {
        mode: Mode::Netascii,
        ..ClientConfig::for_server(server())
    };
    let (mut c, _) = ClientScript::download(config);
    c.recv(1.0, 99, &data(1, b"a\r\nb\r\0c"));
    assert_eq!(c.sink.lock().unwrap().data, b"a\nb\rc");
}
