//! Windows end to end through the real proxy (issue 10 §5): the real `udpft serve` (table
//! model) and the library client on loopback, with a real `lossy-proxy` between them that
//! adds 1 ms each way, loses 2 % each way at random and has a 4 MB/s bottleneck with a
//! drop-tail queue of 16 datagrams. At windows 1, 8 and 64, a download and an upload must
//! arrive byte for byte, each within a bound, and the proxy must have dropped datagrams of
//! the transfer (and queued them, at windows that outrun the bottleneck): the impairments
//! were exercised, not merely configured.

mod live;

use live::servers::{assert_same, Dirs, LossyProxy, Server};
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions, Destination};
use udpft::link::seeded_bytes;
use udpft::proto::Config;

/// The longest one case may take (a window-1 transfer of the small file takes about 1 s).
const CASE_BOUND: Duration = Duration::from_secs(10);

/// The impairments of every case, both ways; the seed is added per case.
const IMPAIRMENTS: [&str; 8] = [
    "--delay", "1", "--loss", "2%", "--rate", "4MB/s", "--queue", "16",
];

/// The file of a case: small enough for stop-and-wait at a 2 ms round trip, large enough at
/// a window to fill the bottleneck for a while. Neither is a multiple of the chunk size.
fn content(window: u16, seed: u64) -> Vec<u8> {
    let len = if window == 1 { 300_001 } else { (2 << 20) + 7 };
    seeded_bytes(seed, len)
}

fn options(window: u16) -> ClientOptions {
    ClientOptions {
        config: Config {
            window,
            timeout: Duration::from_secs(5),
            ..Config::default()
        },
        ..ClientOptions::default()
    }
}

/// Asserts the proxy's counters of the direction that carried the data show the loss (and,
/// when the window outruns the bottleneck, its queue) at work.
fn assert_impaired(proxy: LossyProxy, direction: &str, window: u16) {
    let counters = proxy.stop(direction);
    assert!(
        counters.get("dropped").copied().unwrap_or(0) > 0,
        "no datagram lost {direction}: {counters:?}"
    );
    if window >= 8 {
        assert!(
            counters.get("queue_peak").copied().unwrap_or(0) > 0,
            "the bottleneck never queued {direction}: {counters:?}"
        );
    }
}

/// A case's server (table model, windows up to 64) over `dirs` and the impairing proxy in
/// front of it, seeded with `seed`.
fn impaired(dirs: &Dirs, seed: u64) -> (Server, LossyProxy) {
    let server = Server::start("table", dirs.root(), &["--max-window", "64"]);
    let seed = seed.to_string();
    let mut args = IMPAIRMENTS.to_vec();
    args.extend(["--seed", &seed]);
    let proxy = LossyProxy::start(server.addr, &args);
    (server, proxy)
}

fn download_through_the_proxy(window: u16, seed: u64) {
    let bytes = content(window, seed);
    let dirs = Dirs::with(&[("file.bin", &bytes)]);
    let (server, proxy) = impaired(&dirs, seed);
    let dest = dirs.scratch().join("got.bin");
    let started = Instant::now();
    let report = Client::new(proxy.addr, options(window))
        .expect("client socket")
        .get(
            "file.bin",
            &Destination::File(dest.clone()),
            false,
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("window {window} download: {e}"));
    let elapsed = started.elapsed();
    let got = std::fs::read(&dest).expect("downloaded file");
    assert_same(&format!("window {window} download"), &got, &bytes);
    assert_eq!(report.size, bytes.len() as u64);
    assert!(
        elapsed < CASE_BOUND,
        "window {window} download took {elapsed:?}"
    );
    assert_impaired(proxy, "down", window);
    server.stop();
}

fn upload_through_the_proxy(window: u16, seed: u64) {
    let bytes = content(window, seed);
    let dirs = Dirs::with(&[]);
    let (server, proxy) = impaired(&dirs, seed);
    let local = dirs.scratch().join("local.bin");
    std::fs::write(&local, &bytes).expect("local file");
    let started = Instant::now();
    let report = Client::new(proxy.addr, options(window))
        .expect("client socket")
        .put(&local, "sent.bin", false, &mut |_| {})
        .unwrap_or_else(|e| panic!("window {window} upload: {e}"));
    let elapsed = started.elapsed();
    let got = dirs.read("sent.bin");
    assert_same(&format!("window {window} upload"), &got, &bytes);
    assert_eq!(report.size, bytes.len() as u64);
    assert!(
        elapsed < CASE_BOUND,
        "window {window} upload took {elapsed:?}"
    );
    assert_impaired(proxy, "up", window);
    server.stop();
}

#[test]
fn stop_and_wait_download_through_delay_loss_and_a_bottleneck() {
    download_through_the_proxy(1, 11);
}

#[test]
fn window_8_download_through_delay_loss_and_a_bottleneck() {
    download_through_the_proxy(8, 12);
}

#[test]
fn window_64_download_through_delay_loss_and_a_bottleneck() {
    download_through_the_proxy(64, 13);
}

#[test]
fn stop_and_wait_upload_through_delay_loss_and_a_bottleneck() {
    upload_through_the_proxy(1, 21);
}

#[test]
fn window_8_upload_through_delay_loss_and_a_bottleneck() {
    upload_through_the_proxy(8, 22);
}

#[test]
fn window_64_upload_through_delay_loss_and_a_bottleneck() {
    upload_through_the_proxy(64, 23);
}
