//! End-to-end tests of the `lossy-proxy` binary: a real proxy process between an in-process
//! udpft server and the client (library or CLI binary), on loopback sockets. They check that
//! transfers through an impaired link stay byte-identical, that the proxy keeps clients apart
//! and reports what it did, and that a download killed mid-way resumes through it.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions, Destination};
use udpft::library::Library;
use udpft::server::{self, ServerConfig, ServerHandle};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How long the proxy may live at most, should a test fail before stopping it.
const PROXY_LIFETIME_SECS: &str = "60";

/// Bounds every wait on the proxy's output.
const WAIT: Duration = Duration::from_secs(20);

/// A running `lossy-proxy` process, killed (by its PID) when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    start_line: String,
}

impl Proxy {
    /// Starts the proxy on a free loopback port in front of `upstream`, with extra `args`,
    /// and reads its listen address from its first line on stderr.
    fn start(upstream: SocketAddr, args: &[&str]) -> Result<Self, Box<dyn std::error::Error>> {
        let upstream = upstream.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lossy-proxy"))
            .args(["--listen", "127.0.0.1:0", "--upstream", &upstream])
            .args(["--duration", PROXY_LIFETIME_SECS])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proxy = Self {
            child,
            addr: "0.0.0.0:0".parse()?,
            lines,
            start_line: String::new(),
        };
        proxy.start_line = proxy.lines.recv_timeout(WAIT)?;
        let addr = proxy
            .start_line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_once(','))
            .map(|(addr, _)| addr)
            .ok_or_else(|| format!("unexpected start line: {}", proxy.start_line))?;
        proxy.addr = addr.parse()?;
        Ok(proxy)
    }

    /// Stops the proxy with SIGTERM and returns what it printed after its start line.
    fn stop(mut self) -> Result<String, Box<dyn std::error::Error>> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)?;
        let deadline = Instant::now() + WAIT;
        let mut output = String::new();
        // The reader thread ends, closing the channel, when the proxy exits.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("proxy did not stop; it printed:\n{output}").into())
                }
            }
        }
        let status = self.child.wait()?;
        assert!(status.success(), "proxy exited with {status}:\n{output}");
        Ok(output)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Deterministic, incompressible-looking test data.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// A server on a fresh library holding `files`.
fn server_with(
    dir: &Path,
    files: &[(&str, &[u8])],
) -> Result<(ServerHandle, PathBuf), Box<dyn std::error::Error>> {
    let root = dir.join("library");
    std::fs::create_dir_all(&root)?;
    for (name, bytes) in files {
        std::fs::write(root.join(name), bytes)?;
    }
    let library = Library::open(&root, Default::default())?;
    let server = server::spawn("127.0.0.1:0".parse()?, library, ServerConfig::default())?;
    Ok((server, root))
}

/// `key=value` lines into a map.
fn parse_stats(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(key, value)| Some((key.trim().to_owned(), value.trim().parse().ok()?)))
        .collect()
}

/// The value of `key=N` in the proxy's stderr line for `direction` ("up" or "down").
fn printed_count(output: &str, direction: &str, key: &str) -> Option<u64> {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("lossy-proxy: {direction} ")))?;
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn get(proxy: SocketAddr, name: &str, dest: &Path) -> Result<(), udpft::client::ClientError> {
    let mut client = Client::new(proxy, ClientOptions::default())?;
    client.get(name, &Destination::File(dest.to_owned()), true, &mut |_| {})?;
    Ok(())
}

fn put(proxy: SocketAddr, path: &Path, name: &str) -> Result<(), udpft::client::ClientError> {
    let mut client = Client::new(proxy, ClientOptions::default())?;
    client.put(path, name, false, &mut |_| {})?;
    Ok(())
}

/// Downloads and uploads a 256 KiB and a 1 MiB file through a proxy impaired by `args` (at
/// 10% loss each way), checks every byte, and checks that the proxy's printed and written
/// counters show each of `impaired` (e.g. "dropped") happening in both directions.
fn round_trips_through(args: &[&str], impaired: &[&str]) -> TestResult {
    let dir = tempfile::tempdir()?;
    let small = pattern(256 << 10, 1);
    let large = pattern(1 << 20, 2);
    let (server, root) = server_with(dir.path(), &[("small.bin", &small), ("large.bin", &large)])?;
    let stats_file = dir.path().join("proxy.stats");
    let stats_arg = stats_file.to_str().expect("UTF-8 temp path");
    let mut all_args = vec!["--loss", "10%", "--seed", "42", "--stats-file", stats_arg];
    all_args.extend_from_slice(args);
    let proxy = Proxy::start(server.addr, &all_args)?;
    assert!(
        proxy.start_line.contains("loss 10%"),
        "{}",
        proxy.start_line
    );

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    for (name, bytes) in [("small.bin", &small), ("large.bin", &large)] {
        get(proxy.addr, name, &out.join(name))?;
        assert!(
            std::fs::read(out.join(name))? == *bytes,
            "download of {name} differs"
        );
    }
    for (name, bytes) in [("small-up.bin", &small), ("large-up.bin", &large)] {
        let local = out.join(name);
        std::fs::write(&local, bytes)?;
        put(proxy.addr, &local, name)?;
        assert!(
            std::fs::read(root.join(name))? == *bytes,
            "upload of {name} differs"
        );
    }

    let printed = proxy.stop()?;
    let written = parse_stats(&std::fs::read_to_string(&stats_file)?);
    for direction in ["up", "down"] {
        for key in impaired {
            let shown = printed_count(&printed, direction, key);
            assert!(
                shown.is_some_and(|n| n > 0),
                "{direction} {key} should be > 0 at these rates:\n{printed}"
            );
            assert_eq!(
                written.get(&format!("{direction}.{key}")).copied(),
                shown,
                "stats file and stderr disagree on {direction}.{key}"
            );
        }
    }
    Ok(())
}

#[test]
fn transfers_stay_byte_identical_through_loss_duplicates_reordering_and_truncation() -> TestResult {
    round_trips_through(
        &["--dup", "0.05", "--reorder", "0.05", "--truncate", "0.02"],
        &["dropped", "duplicated", "reordered", "truncated"],
    )
}

/// Regression: a bit flipped in the version byte once drew a fatal UnsupportedVersion
/// reply; the CRC is now checked first, so it is dropped as corruption.
#[test]
fn transfers_stay_byte_identical_through_loss_duplicates_reordering_and_corruption() -> TestResult {
    round_trips_through(
        &["--dup", "0.05", "--reorder", "0.05", "--corrupt", "0.02"],
        &["dropped", "duplicated", "reordered", "corrupted"],
    )
}

/// The client decodes each datagram once for its session and its lingering ones; one that
/// fails its CRC must still be counted, once, by the session.
#[test]
fn a_download_counts_each_corrupted_datagram_once_and_lands_intact() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = pattern(1 << 20, 4);
    let (server, _root) = server_with(dir.path(), &[("file.bin", &data)])?;
    let stats_file = dir.path().join("proxy.stats");
    let stats_arg = stats_file.to_str().expect("UTF-8 temp path");
    let proxy = Proxy::start(
        server.addr,
        &[
            "--corrupt",
            "0.05",
            "--seed",
            "9",
            "--stats-file",
            stats_arg,
        ],
    )?;
    let dest = dir.path().join("file.bin");
    let mut client = Client::new(proxy.addr, ClientOptions::default())?;
    let report = client.get(
        "file.bin",
        &Destination::File(dest.clone()),
        true,
        &mut |_| {},
    )?;
    drop(client);
    assert!(std::fs::read(&dest)? == data, "download differs");
    proxy.stop()?;
    let written = parse_stats(&std::fs::read_to_string(&stats_file)?);
    let corrupted = written["down.corrupted"];
    assert!(corrupted > 0, "no corruption at 5 %: {written:?}");
    // Datagrams corrupted after the result was known reach only the linger, uncounted.
    assert!(
        report.stats.corrupted <= corrupted && report.stats.corrupted * 10 >= corrupted * 9,
        "client counted {} of {corrupted} corrupted datagrams",
        report.stats.corrupted
    );
    Ok(())
}

#[test]
fn perfect_link_passes_listing_and_files_through_untouched() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = pattern(256 << 10, 3);
    let (server, _root) = server_with(dir.path(), &[("file.bin", &data)])?;
    let stats_file = dir.path().join("proxy.stats");
    let proxy = Proxy::start(
        server.addr,
        &[
            "--stats-file",
            stats_file.to_str().expect("UTF-8 temp path"),
        ],
    )?;
    assert!(
        proxy.start_line.contains("up: none; down: none"),
        "{}",
        proxy.start_line
    );

    let listing = Client::new(proxy.addr, ClientOptions::default())?.list()?;
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].name, b"file.bin");
    assert_eq!(listing[0].size, data.len() as u64);
    let dest = dir.path().join("file.bin");
    get(proxy.addr, "file.bin", &dest)?;
    assert!(std::fs::read(&dest)? == data, "download differs");

    proxy.stop()?;
    let stats = parse_stats(&std::fs::read_to_string(&stats_file)?);
    for direction in ["up", "down"] {
        let offered = stats[&format!("{direction}.offered")];
        assert!(offered > 0, "{direction} carried nothing: {stats:?}");
        assert_eq!(stats[&format!("{direction}.forwarded")], offered);
        for key in [
            "dropped",
            "duplicated",
            "reordered",
            "corrupted",
            "truncated",
        ] {
            assert_eq!(stats[&format!("{direction}.{key}")], 0, "{direction}.{key}");
        }
    }
    assert_eq!(
        stats["clients"], 2,
        "one for the listing, one for the download"
    );
    Ok(())
}

#[test]
fn each_client_reaches_the_server_from_its_own_port_and_gets_its_own_replies() -> TestResult {
    let upstream = UdpSocket::bind("127.0.0.1:0")?;
    upstream.set_read_timeout(Some(WAIT))?;
    let proxy = Proxy::start(upstream.local_addr()?, &[])?;
    let alice = UdpSocket::bind("127.0.0.1:0")?;
    let bob = UdpSocket::bind("127.0.0.1:0")?;
    for client in [&alice, &bob] {
        client.set_read_timeout(Some(WAIT))?;
        client.connect(proxy.addr)?;
    }

    let mut buf = [0u8; 64];
    let mut peer_of = HashMap::new();
    // Alternate, and wait for each datagram, so arrival order is known.
    for (client, text) in [(&alice, "alice 1"), (&bob, "bob 1"), (&alice, "alice 2")] {
        client.send(text.as_bytes())?;
        let (len, from) = upstream.recv_from(&mut buf)?;
        assert_eq!(&buf[..len], text.as_bytes());
        let who = text.split(' ').next().expect("name");
        let seen = *peer_of.entry(who).or_insert(from);
        assert_eq!(seen, from, "{who} moved to another upstream port");
    }
    assert_ne!(peer_of["alice"], peer_of["bob"], "clients share a port");
    assert_ne!(
        peer_of["alice"],
        alice.local_addr()?,
        "proxy must not be transparent"
    );

    for who in ["bob", "alice"] {
        upstream.send_to(format!("to {who}").as_bytes(), peer_of[who])?;
    }
    for (client, who) in [(&alice, "alice"), (&bob, "bob")] {
        let len = client.recv(&mut buf)?;
        assert_eq!(&buf[..len], format!("to {who}").as_bytes());
    }
    let printed = proxy.stop()?;
    assert!(printed.contains("clients 2"), "{printed}");
    Ok(())
}

/// `--follow-reply-port`, as a TFTP server that answers from a fresh port per transfer needs
/// (tftpd-hpa): the first datagram goes to the server's port, the first port of the server's
/// address that answers becomes the client's server port, and replies from any other port
/// are dropped and counted.
#[test]
fn follow_reply_port_sticks_to_the_first_port_that_answers() -> TestResult {
    let listening = UdpSocket::bind("127.0.0.1:0")?;
    let transfer = UdpSocket::bind("127.0.0.1:0")?;
    let stray = UdpSocket::bind("127.0.0.1:0")?;
    for socket in [&listening, &transfer] {
        socket.set_read_timeout(Some(WAIT))?;
    }
    let proxy = Proxy::start(listening.local_addr()?, &["--follow-reply-port"])?;
    let client = UdpSocket::bind("127.0.0.1:0")?;
    client.connect(proxy.addr)?;
    client.set_read_timeout(Some(WAIT))?;
    let mut buf = [0u8; 64];

    client.send(b"request")?;
    let (len, relay) = listening.recv_from(&mut buf)?;
    assert_eq!(&buf[..len], b"request");
    transfer.send_to(b"first answer", relay)?;
    let len = client.recv(&mut buf)?;
    assert_eq!(&buf[..len], b"first answer");

    // A reply from a third port is not the client's server: dropped. The proof that it
    // was dropped, not late: the next reply from the transfer port arrives first.
    stray.send_to(b"stray", relay)?;
    transfer.send_to(b"second answer", relay)?;
    let len = client.recv(&mut buf)?;
    assert_eq!(&buf[..len], b"second answer");

    client.send(b"ack")?;
    let (len, from) = transfer.recv_from(&mut buf)?;
    assert_eq!((&buf[..len], from), (&b"ack"[..], relay));
    let printed = proxy.stop()?;
    assert!(printed.contains("replies from other ports 1"), "{printed}");
    Ok(())
}

/// A burst far larger than the bottleneck's queue: the datagrams that get through arrive in
/// the order sent, no sooner than the rate allows, and the rest are counted as queue drops
/// (not as random loss).
#[test]
fn a_burst_through_the_bottleneck_keeps_its_order_and_loses_the_overflow() -> TestResult {
    const BURST: u32 = 300;
    const LEN: usize = 1000;
    let dir = tempfile::tempdir()?;
    let stats_file = dir.path().join("proxy.stats");
    let stats_arg = stats_file.to_str().expect("UTF-8 temp path");
    let upstream = UdpSocket::bind("127.0.0.1:0")?;
    // 1000-byte datagrams at 1 MB/s: one per millisecond, ten queued behind it.
    let proxy = Proxy::start(
        upstream.local_addr()?,
        &[
            "--rate-up",
            "1MB/s",
            "--queue-up",
            "10",
            "--stats-file",
            stats_arg,
        ],
    )?;
    assert!(
        proxy
            .start_line
            .contains("up: bottleneck 1 MB/s, queue 10; down: none"),
        "{}",
        proxy.start_line
    );
    let client = UdpSocket::bind("127.0.0.1:0")?;
    client.connect(proxy.addr)?;
    let started = Instant::now();
    let mut datagram = [0u8; LEN];
    for seq in 0..BURST {
        datagram[..4].copy_from_slice(&seq.to_be_bytes());
        client.send(&datagram)?;
    }
    // Whatever got through has arrived once the upstream socket stays quiet for a while
    // (the bottleneck empties within 11 ms of the last send).
    upstream.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2 * LEN];
    let deadline = Instant::now() + WAIT;
    let mut last_arrival = Duration::ZERO;
    while let Ok(len) = upstream.recv(&mut buf) {
        last_arrival = started.elapsed();
        assert_eq!(len, LEN);
        got.push(u32::from_be_bytes(buf[..4].try_into()?));
        if Instant::now() > deadline {
            break;
        }
    }
    proxy.stop()?;
    let stats = parse_stats(&std::fs::read_to_string(&stats_file)?);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    assert_eq!(stats["up.offered"], u64::from(BURST));
    assert_eq!(stats["up.forwarded"], got.len() as u64);
    assert_eq!(
        stats["up.forwarded"] + stats["up.queue_dropped"],
        u64::from(BURST)
    );
    assert_eq!(stats["up.dropped"], 0, "a full queue is not random loss");
    assert!(
        stats["up.queue_dropped"] > 0,
        "the burst overflowed: {stats:?}"
    );
    assert_eq!(stats["up.queue_peak"], 10);
    // The n-th datagram through cannot leave before n × 1 ms after the first was sent
    // (lateness of a loaded machine only adds to this).
    let paced = Duration::from_millis(got.len() as u64);
    assert!(
        last_arrival >= paced,
        "{} through in {last_arrival:?}",
        got.len()
    );
    Ok(())
}

#[test]
fn idle_client_is_forgotten_and_comes_back_on_a_new_upstream_port() -> TestResult {
    let upstream = UdpSocket::bind("127.0.0.1:0")?;
    upstream.set_read_timeout(Some(WAIT))?;
    let idle = Duration::from_millis(200);
    let proxy = Proxy::start(upstream.local_addr()?, &["--idle-timeout", "0.2"])?;
    let client = UdpSocket::bind("127.0.0.1:0")?;
    client.connect(proxy.addr)?;
    let mut buf = [0u8; 16];
    client.send(b"first")?;
    let (_, first_port) = upstream.recv_from(&mut buf)?;

    // Stay silent past the idle timeout (a wait on the client's own socket, during which
    // nothing may arrive: the silence is the condition under test), then speak again; a
    // datagram that still finds the old slot (the expiry not yet run on a loaded machine)
    // refreshes it, so be silent again.
    let deadline = Instant::now() + WAIT;
    let mut waits = 0;
    loop {
        client.set_read_timeout(Some(idle * 2))?;
        assert!(
            client.recv(&mut buf).is_err(),
            "a datagram during the silence"
        );
        waits += 1;
        client.send(b"again")?;
        let (len, port) = upstream.recv_from(&mut buf)?;
        assert_eq!(&buf[..len], b"again");
        if port != first_port {
            break;
        }
        assert!(Instant::now() < deadline, "client never expired");
    }
    let printed = proxy.stop()?;
    let expired = printed
        .split_once("expired ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        expired.is_some_and(|n| n >= 1),
        "after {waits} waits:\n{printed}"
    );
    assert!(printed.contains("clients 2"), "{printed}");
    Ok(())
}

#[test]
fn download_killed_mid_transfer_resumes_through_the_proxy() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = pattern(8 << 20, 4);
    let (server, _root) = server_with(dir.path(), &[("big.bin", &data)])?;
    // 1 ms each way makes the transfer take seconds, so there is time to interrupt it.
    let proxy = Proxy::start(server.addr, &["--delay", "1", "--loss", "0.01"])?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let dest = out.join("big.bin");
    let partial = out.join(".big.bin.udpft-part");
    let udpft = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_udpft"));
        command
            .args(["get", "big.bin", "--chunk", "8192", "-o"])
            .arg(&dest)
            .args(["--server", &proxy.addr.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    };

    let mut first = udpft(&[]).stderr(Stdio::null()).spawn()?;
    let deadline = Instant::now() + WAIT;
    loop {
        if std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0) {
            break;
        }
        if let Some(status) = first.try_wait()? {
            return Err(format!("first get ended ({status}) before it could be killed").into());
        }
        if Instant::now() > deadline {
            let _ = first.kill();
            return Err("no partial file appeared".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill()?;
    first.wait()?;
    assert!(!dest.exists(), "a killed download must not appear complete");
    let kept = std::fs::metadata(&partial)?.len();
    assert!(
        kept > 0 && kept < data.len() as u64,
        "partial has {kept} bytes"
    );

    let second = udpft(&[]).output()?;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "second get failed: {stderr}");
    assert!(stderr.contains("resuming from byte"), "{stderr}");
    assert!(std::fs::read(&dest)? == data, "resumed download differs");
    assert!(!partial.exists(), "partial file left behind");
    proxy.stop()?;
    Ok(())
}

#[test]
fn help_documents_every_knob_and_bad_probabilities_are_refused() -> TestResult {
    let help = Command::new(env!("CARGO_BIN_EXE_lossy-proxy"))
        .arg("--help")
        .output()?;
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout)?;
    for knob in [
        "loss", "dup", "reorder", "corrupt", "truncate", "delay", "jitter", "rate", "queue",
    ] {
        for flag in [
            format!("--{knob} "),
            format!("--{knob}-up "),
            format!("--{knob}-down "),
        ] {
            assert!(help.contains(&flag), "--help lacks {flag}");
        }
    }
    for flag in [
        "--seed",
        "--duration",
        "--stats-file",
        "--listen",
        "--upstream",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }

    let refused = Command::new(env!("CARGO_BIN_EXE_lossy-proxy"))
        .args(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"])
        .args(["--loss", "150%", "--duration", "0"])
        .output()?;
    assert_eq!(refused.status.code(), Some(2), "usage errors exit with 2");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("outside 0..=1"));
    Ok(())
}
