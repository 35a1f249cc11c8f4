//! The four server models (loop, table, threads, fork) behind the real `udpft serve` binary:
//! the same end-to-end suite against each, and what sets them apart — the loop answers
//! *busy*, the fork model reaps its children, threads and fork cap their sessions, the
//! table runs several workers, and every model shuts down gracefully on SIGTERM.
//!
//! Every server runs as a child process (the fork model must own a single-threaded
//! process, and running all four the same way keeps them comparable). A [`Proc`] guard stops
//! and reaps each child with a deadline; nothing waits a fixed time, every wait polls a
//! condition. Children stay in the test's process group (a Ctrl-C of the test run stops
//! them too), except where a test signals a server's whole group.

#[macro_use]
mod live;

use live::servers::*;
use nix::sys::signal::{killpg, Signal};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use udpft::client::{Destination, Event};
use udpft::link::seeded_bytes;
use udpft::proto::client::Request;
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::{ErrorCode, Failure, Outcome};

const LOSSY_PROXY: &str = env!("CARGO_BIN_EXE_lossy-proxy");

// ---------------------------------------------------------------------------------------
// 1. The end-to-end suite, against every model
// ---------------------------------------------------------------------------------------

/// The suite every model passes.
fn end_to_end_suite(model: &str) {
    let big = seeded_bytes(1, 1 << 20);
    let small = b"a small text file\n".to_vec();
    let dirs = Dirs::with(&[("big.bin", &big), ("empty", b""), ("small.txt", &small)]);
    let server = Server::start(model, dirs.root(), &[]);
    let addr = server.addr;

    let mut entries = client(addr).list().expect("list");
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let listed: Vec<(&[u8], u64)> = entries.iter().map(|e| (&e.name[..], e.size)).collect();
    assert_eq!(
        listed,
        [
            (&b"big.bin"[..], 1 << 20),
            (b"empty", 0),
            (b"small.txt", small.len() as u64)
        ],
        "{model}: listing"
    );

    for (name, want) in [
        ("big.bin", &big),
        ("empty", &Vec::new()),
        ("small.txt", &small),
    ] {
        let got = download(addr, name, dirs.scratch(), name).expect("download");
        assert_same(&format!("{model}: get {name}"), &got, want);
    }

    let up_big = seeded_bytes(2, 1 << 20);
    upload(addr, "up-big.bin", &up_big, dirs.scratch()).expect("upload 1 MiB");
    upload(addr, "up-empty", b"", dirs.scratch()).expect("upload empty file");
    assert_same(
        &format!("{model}: put up-big.bin"),
        &dirs.read("up-big.bin"),
        &up_big,
    );
    assert_same(
        &format!("{model}: put up-empty"),
        &dirs.read("up-empty"),
        b"",
    );

    concurrent_clients(addr, &dirs, 8, "big.bin", &big);
    assert_eq!(
        temp_files(dirs.root()),
        Vec::<PathBuf>::new(),
        "{model}: temporary files left"
    );

    let stopped = server.stop();
    assert!(stopped.contains(" failed=0 "), "{model}: {stopped}");
}

for_models!(end_to_end_suite);

// ---------------------------------------------------------------------------------------
// 2. The loop answers busy
// ---------------------------------------------------------------------------------------

#[test]
fn loop_model_answers_busy_while_serving_and_serves_the_waiting_client_after() {
    let content = seeded_bytes(3, 256 << 10);
    let dirs = Dirs::with(&[("file", b"held"), ("wanted.bin", &content)]);
    let server = Server::start("loop", dirs.root(), &["--timeout", "2"]);
    let addr = server.addr;

    // The one session the loop serves, held open until the server's timeout.
    let _held = hold_session(addr, 0x4001, b"file");

    let mut cli = Proc::spawn(
        Command::new(UDPFT)
            .args(["get", "wanted.bin", "--server", &addr.to_string(), "-o"])
            .arg(dirs.scratch().join("cli.bin")),
        false,
    );
    let mut busy = 0;
    let report = client(addr)
        .get(
            "wanted.bin",
            &Destination::File(dirs.scratch().join("lib.bin")),
            false,
            &mut |event| {
                if let Event::Busy { .. } = event {
                    busy += 1;
                }
            },
        )
        .expect("download after the busy period");
    assert!(busy >= 1, "the client was never told the server is busy");
    assert_eq!(report.size, content.len() as u64);
    assert_same(
        "library client",
        &fs::read(dirs.scratch().join("lib.bin")).expect("downloaded file"),
        &content,
    );

    let status = cli.wait(Duration::from_secs(60)).expect("udpft get exits");
    let stderr = cli.stderr_text();
    assert!(status.success(), "udpft get: {status}; stderr: {stderr}");
    assert!(
        stderr.contains("server busy, retrying"),
        "udpft get did not say the server was busy: {stderr}"
    );
    assert_same(
        "command-line client",
        &fs::read(dirs.scratch().join("cli.bin")).expect("downloaded file"),
        &content,
    );

    let stopped = server.stop();
    assert!(!stopped.contains(" refused=0 "), "{stopped}");
}

// ---------------------------------------------------------------------------------------
// 3. The fork model leaves no zombie
// ---------------------------------------------------------------------------------------

#[test]
fn fork_model_reaps_every_session_process() {
    let content = seeded_bytes(4, 64 << 10);
    let dirs = Dirs::with(&[("file", b"held"), ("data.bin", &content)]);
    let server = Server::start("fork", dirs.root(), &["--timeout", "2"]);
    let addr = server.addr;
    let pid = server.pid();

    // The scan sees a session process while one is open (so an empty scan means something).
    let held = hold_session(addr, 0x4002, b"file");
    let live = poll_until(Instant::now() + PROMPT, || {
        let children = children_of(pid);
        (!children.is_empty()).then_some(children)
    });
    assert!(live.is_some(), "no session process seen under the server");

    for i in 0..3 {
        let got = download(addr, "data.bin", dirs.scratch(), &format!("dl-{i}")).expect("get");
        assert_same("fork get", &got, &content);
        upload(addr, &format!("up-{i}"), &content, dirs.scratch()).expect("put");
        client(addr).list().expect("list");
    }
    drop(held);

    // Sessions end on their own (the held one at its timeout); each process is reaped.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = poll_until(deadline, || children_of(pid).is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "children left under the fork server: {:?}",
        children_of(pid)
    );
    assert!(
        !children_of(pid).iter().any(|(_, state)| *state == 'Z'),
        "zombies under the fork server"
    );

    let stopped = server.stop();
    assert!(stopped.contains(" completed=9 "), "{stopped}");
}

// ---------------------------------------------------------------------------------------
// 4. threads and fork respect --max-sessions
// ---------------------------------------------------------------------------------------

fn refuses_sessions_past_the_limit(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents of file")]);
    let server = Server::start(
        model,
        dirs.root(),
        &["--max-sessions", "2", "--timeout", "2"],
    );
    let addr = server.addr;

    let held = [
        hold_session(addr, 0x4101, b"file"),
        hold_session(addr, 0x4102, b"file"),
    ];
    let third = raw_socket(addr);
    let answer = request(&third, 0x4103, b"file", PROMPT);
    assert_eq!(
        answer,
        Some(Answer::Refused(ErrorCode::Busy)),
        "{model}: third session past --max-sessions 2"
    );

    // Once the held sessions time out, their slots are free again.
    drop(held);
    let got = download(addr, "file", dirs.scratch(), "after").expect("download after");
    assert_same("after the limit", &got, b"contents of file");
    server.stop();
}

for_models!(refuses_sessions_past_the_limit: table "table", threads "threads", fork "fork");

// ---------------------------------------------------------------------------------------
// 5. Table workers
// ---------------------------------------------------------------------------------------

#[test]
fn table_model_with_two_workers_serves_eight_concurrent_clients() {
    let shared = seeded_bytes(5, 512 << 10);
    let dirs = Dirs::with(&[("shared.bin", &shared)]);
    let server = Server::start("table", dirs.root(), &["--workers", "2"]);
    concurrent_clients(server.addr, &dirs, 8, "shared.bin", &shared);
    let stopped = server.stop();
    assert!(stopped.contains(" completed=8 "), "{stopped}");
}

// ---------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------

/// How the test asks the server to stop.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM to the server process only (`kill PID`).
    Process,
    /// SIGTERM to its whole process group (Ctrl-C in a terminal, systemd).
    Group,
}

/// A server for a shutdown test: the leader of its own group if the test signals the group.
fn start_for_stop(model: &str, root: &Path, extra: &[&str], stop: Stop) -> Server {
    Server::start_with(model, root, extra, matches!(stop, Stop::Group))
}

fn send_stop(server: &Server, stop: Stop) {
    match stop {
        Stop::Process => server.proc.signal(Signal::SIGTERM),
        Stop::Group => killpg(server.pid(), Signal::SIGTERM).expect("signal own group"),
    }
}

fn sigterm_lets_a_running_download_finish(model: &str, stop: Stop) {
    let content = seeded_bytes(6, 256 << 10);
    let dirs = Dirs::with(&[("movie.bin", &content)]);
    let mut server = start_for_stop(model, dirs.root(), &["--grace", "10"], stop);

    let sink = Arc::new(Mutex::new(MemSink::default()));
    let mut download = Stepper::new(
        server.addr,
        0x4201,
        Request::Get {
            name: b"movie.bin".to_vec(),
            sink: Box::new(Arc::clone(&sink)),
            offset: 0,
            resume_crc: 0,
        },
    );
    assert!(
        download.run_until(PROMPT, under_way),
        "download never started"
    );
    assert!(
        !download.session.is_finished(),
        "download finished too soon"
    );

    send_stop(&server, stop);
    // The loop model answers Busy to everyone while its one session runs.
    let busy_is_fine = (model == "loop").then_some(ErrorCode::Busy);
    await_shutting_down(&server, busy_is_fine);

    let outcome = download.finish();
    assert_eq!(outcome, Outcome::Complete, "{model}: download at SIGTERM");
    let got = std::mem::take(&mut sink.lock().expect("sink").data);
    assert_same(&format!("{model}: download at SIGTERM"), &got, &content);

    let stopped = server.expect_exit();
    assert!(stopped.contains(" completed=1 "), "{model}: {stopped}");
}

fn sigterm_abandons_a_running_upload(model: &str, stop: Stop) {
    let dirs = Dirs::with(&[]);
    let mut server = start_for_stop(model, dirs.root(), &["--grace", "10"], stop);

    let content = seeded_bytes(7, 256 << 10);
    let mut upload = Stepper::new(
        server.addr,
        0x4301,
        Request::Put {
            name: b"upload.bin".to_vec(),
            size: content.len() as u64,
            source: Box::new(MemSource(content)),
            overwrite: false,
        },
    );
    assert!(upload.run_until(PROMPT, under_way), "upload never started");
    assert!(!upload.session.is_finished(), "upload finished too soon");
    assert_eq!(temp_files(dirs.root()).len(), 1, "upload's temporary file");

    send_stop(&server, stop);
    let busy_is_fine = (model == "loop").then_some(ErrorCode::Busy);
    await_shutting_down(&server, busy_is_fine);

    match upload.finish() {
        Outcome::Failed(Failure::Peer {
            code: ErrorCode::ShuttingDown,
            ..
        }) => {}
        other => panic!("{model}: upload at SIGTERM ended with {other:?}"),
    }
    let stopped = server.expect_exit();
    assert!(stopped.contains(" completed=0 "), "{model}: {stopped}");
    assert!(
        !dirs.root().join("upload.bin").exists(),
        "{model}: abandoned upload appeared"
    );
    assert_eq!(
        temp_files(dirs.root()),
        Vec::<PathBuf>::new(),
        "{model}: temporary file left"
    );
}

fn download_finishes_on_sigterm(model: &str) {
    sigterm_lets_a_running_download_finish(model, Stop::Process);
}
for_models!(download_finishes_on_sigterm);

fn upload_is_abandoned_on_sigterm(model: &str) {
    sigterm_abandons_a_running_upload(model, Stop::Process);
}
for_models!(upload_is_abandoned_on_sigterm);

#[test]
fn fork_model_on_sigterm_to_its_group_abandons_the_running_upload() {
    sigterm_abandons_a_running_upload("fork", Stop::Group);
}

/// An upload stalled at SIGTERM must not outlive the grace period as a temporary file.
fn stalled_upload_leaves_nothing_after_the_grace_period(model: &str, stop: Stop) {
    let dirs = Dirs::with(&[]);
    let mut server = start_for_stop(model, dirs.root(), &["--grace", "1"], stop);
    let content = seeded_bytes(9, 256 << 10);
    let mut upload = Stepper::new(
        server.addr,
        0x4401,
        Request::Put {
            name: b"stalled.bin".to_vec(),
            size: content.len() as u64,
            source: Box::new(MemSource(content)),
            overwrite: false,
        },
    );
    assert!(upload.run_until(PROMPT, under_way), "upload never started");
    assert_eq!(temp_files(dirs.root()).len(), 1, "upload's temporary file");

    // The client goes quiet; the server stops on its own within the grace period.
    send_stop(&server, stop);
    server.expect_exit();
    drop(upload);
    assert!(
        !dirs.root().join("stalled.bin").exists(),
        "{model}: upload appeared"
    );
    assert_eq!(
        temp_files(dirs.root()),
        Vec::<PathBuf>::new(),
        "{model}: temporary file left"
    );
}

fn stalled_upload_leaves_nothing_on_sigterm(model: &str) {
    stalled_upload_leaves_nothing_after_the_grace_period(model, Stop::Process);
}
for_models!(stalled_upload_leaves_nothing_on_sigterm);

#[test]
fn fork_model_on_sigterm_to_its_group_leaves_no_temporary_file_of_a_stalled_upload() {
    stalled_upload_leaves_nothing_after_the_grace_period("fork", Stop::Group);
}

// ---------------------------------------------------------------------------------------
// 7. Every model behind the lossy proxy
// ---------------------------------------------------------------------------------------

/// A `lossy-proxy` in front of `upstream`, dropping `loss` of the datagrams each way.
fn start_proxy(upstream: SocketAddr, loss: &str, seed: u64) -> (Proc, SocketAddr) {
    let mut proxy = Proc::spawn(
        Command::new(LOSSY_PROXY).args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.to_string(),
            "--loss",
            loss,
            "--seed",
            &seed.to_string(),
            "--duration",
            "120",
        ]),
        false,
    );
    let line = proxy
        .next_line(PROMPT)
        .unwrap_or_else(|| panic!("lossy-proxy printed nothing: {}", proxy.stderr_text()));
    // listening on ADDR:PORT, ...
    let addr = line
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from lossy-proxy: {line:?}"));
    (proxy, addr)
}

/// Gets and puts a 256 KiB file through a proxy dropping 10% each way with `seed`.
fn move_files_through_loss(model: &str, seed: u64, content: &[u8]) {
    let dirs = Dirs::with(&[("lossy.bin", content)]);
    let server = Server::start(model, dirs.root(), &[]);
    let (proxy, addr) = start_proxy(server.addr, "0.1", seed);
    let got = download(addr, "lossy.bin", dirs.scratch(), "got.bin")
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    assert_same(&format!("{model}: get through loss"), &got, content);
    upload(addr, "back.bin", content, dirs.scratch()).unwrap_or_else(|e| panic!("{model}: {e}"));
    assert_same(
        &format!("{model}: put through loss"),
        &dirs.read("back.bin"),
        content,
    );
    drop(proxy);
    server.stop();
}

#[test]
fn every_model_moves_files_through_ten_percent_loss_each_way() {
    let content = seeded_bytes(8, 256 << 10);
    let seeds = [11, 12, 13, 15];
    std::thread::scope(|scope| {
        for (model, seed) in MODELS.into_iter().zip(seeds) {
            let content = &content;
            scope.spawn(move || move_files_through_loss(model, seed, content));
        }
    });
}

/// With seed 14 the proxy drops the client's first two Acks of the Accept. The server may
/// repeat its Accept only within 3x the bytes of the request (anti-amplification) until the
/// client echoes the session id, so the client must repeat Ack 0 on its own timer until
/// Data 1 arrives, or both ends wait until they time out (a stall once seen here).
#[test]
fn a_download_survives_losing_the_acks_of_the_accept() {
    move_files_through_loss("table", 14, &seeded_bytes(8, 256 << 10));
}

// ---------------------------------------------------------------------------------------
// 7. One client socket, one command after another
// ---------------------------------------------------------------------------------------

/// A shell's pattern: one client (one socket) uploads, then lists, then downloads. An
/// upload's session ends once committed (a tombstone, not a lingering session, answers a
/// repeated Done), so in the fork model no child's connected socket is left to capture the
/// same client's next request; a client that gives up after 1 s would fail if one were.
fn one_socket_serves_command_after_command(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents")]);
    let server = Server::start(model, dirs.root(), &[]);
    let mut client = udpft::client::Client::new(
        server.addr,
        udpft::client::ClientOptions {
            config: udpft::proto::Config {
                timeout: Duration::from_secs(1),
                ..udpft::proto::Config::default()
            },
            ..options()
        },
    )
    .expect("client socket");
    let local = dirs.scratch().join("up.bin");
    fs::write(&local, seeded_bytes(30, 5000)).expect("local file");
    for round in 0..3 {
        let name = format!("up-{round}.bin");
        client.put(&local, &name, false, &mut |_| {}).expect("put");
        let listed = client.list().expect("list right after put");
        assert!(listed.iter().any(|e| e.name == name.as_bytes()), "{model}");
        let dest = Destination::File(dirs.scratch().join(format!("down-{round}")));
        client
            .get(&name, &dest, false, &mut |_| {})
            .expect("get right after list");
    }
}
for_models!(one_socket_serves_command_after_command);
