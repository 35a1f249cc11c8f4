//! `udpft-bench window`: the second lesson in numbers, stop-and-wait against pipelining.
//! Goodput of real downloads over a grid of window × loss × added delay × chunk, each cell
//! beside its ceiling `window × chunk ÷ RTT` (RTT from a ping-pong through the same path,
//! measured in the same round), and, in the same run, the references a window is set
//! against: blocking stop-and-wait (client and server without busy-polling), a one-way UDP
//! blast of the same datagrams (through the proxy too: what the relay itself can carry), the
//! closed-loop relay of the cell's window (`relay`: that many Data-sized datagrams
//! outstanding through the same path, each answered by an Ack-sized reply, as a transfer is
//! clocked), and a TCP copy of the same file with `socat`. A cell's estimate is
//! `min(window × chunk ÷ RTT, blast, closed-loop relay)`.
//!
//! # Paths
//! A cell without added delay and without loss is a download straight over loopback
//! (`direct`). Loss needs the proxy: a cell with loss but no added delay goes through a
//! `lossy-proxy` adding none (`proxy +0 ms`); a cell with an added delay goes through a proxy
//! adding it each way. The references of a path (RTT and blast) are measured through a proxy
//! of the same delay without loss (a ping or a credit lost to random loss would stall the
//! measurement, not describe the path).
//!
//! # Sizes and rounds
//! A cell moves the smallest file of a ladder (`--min-size`, doubling up to `--size`) that
//! its estimated goodput needs to run `--cell-seconds`, or the largest: "at least half a
//! second, or 512 MiB, whichever is smaller". The ladder reaches 512 MiB because the
//! references (blast, closed-loop relay) are steady rates: a window-64 transfer at
//! 65485-byte chunks through 1 ms each way moves 64 MiB in some 30 round trips, a third of
//! them slow start's, and would be set against a rate it spends most of its time ramping up
//! to. The estimate is `min(ceiling, blast, relay)` of the
//! first round, scaled by what the same window achieved at the previous loss rate; sizes are
//! fixed in the first round and kept. Every round measures the references first, then every
//! cell once, in an order that rotates from round to round; medians over rounds are shown,
//! and each ratio is the median of its rounds' own ratios. Windows the server cannot grant
//! (above `--max-window`, or above 4 MiB of datagrams in flight at large chunks) are not
//! measured twice: the cell of the granted window stands for them.

mod report;

use crate::blast::{self, Blast, BlastSpec};
use crate::children::{locate_bin, start_proxy, start_server, ProxyChild, ProxySpec, ServerSpec};
use crate::download::{parse_chunk, secs, Budget};
use crate::loss::parse_rate;
use crate::path::{self, PathRtt};
use crate::procfs;
use crate::relay::{self, Relay};
use crate::results::human_bytes;
use crate::runargs::RunArgs;
use crate::tcp::{self, TcpCopy};
use crate::transfer::{self, Download};
use crate::units::parse_size;
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use report::Report;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use udpft::proto::wire::{MAX_WINDOW, OVERHEAD};
use udpft::proto::Config;

/// Arguments of `window`.
#[derive(Args, Debug)]
pub struct WindowArgs {
    /// Windows to ask for, comma-separated (1 = stop-and-wait).
    #[arg(long, default_value = "1,2,4,8,16,32,64,128,256", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WINDOW)))]
    pub windows: Vec<u16>,
    /// Loss rates each way, comma-separated: `0.05` or `5%`.
    #[arg(long, default_value = "0,1%,5%,10%", value_delimiter = ',', value_parser = parse_rate)]
    pub loss: Vec<f64>,
    /// Added one-way delays, comma-separated: `none` (straight over loopback when there is
    /// no loss) or milliseconds each way through lossy-proxy (`0`, `1`, `0.5`).
    #[arg(long, default_value = "none,1", value_delimiter = ',', value_parser = parse_delay)]
    pub delay: Vec<Delay>,
    /// Chunk sizes, comma-separated: numbers, `default` (1430), `max` (65485) or `min`.
    #[arg(long, default_value = "default,max", value_delimiter = ',', value_parser = parse_chunk)]
    pub chunks: Vec<u16>,
    /// The largest file a cell moves (units: B, KB, MB, KiB, MiB, GiB).
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    pub size: u64,
    /// The smallest file a cell moves; the ladder of files doubles from it up to --size.
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub min_size: u64,
    /// How long a cell should run, by its estimated goodput (it moves --size at most).
    #[arg(long, default_value_t = 0.5, value_name = "SECS")]
    pub cell_seconds: f64,
    /// Rounds of every cell and reference; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// The server's --max-window.
    #[arg(long, default_value_t = MAX_WINDOW, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WINDOW)))]
    pub max_window: u16,
    /// Longest run of each reference measurement (RTT, blast), in seconds.
    #[arg(long, default_value_t = 0.3, value_name = "SECS")]
    pub ref_seconds: f64,
    /// Most round trips of an RTT measurement (and a blast's datagrams ÷ 4).
    #[arg(long, default_value_t = 5_000)]
    pub ref_count: u64,
    #[command(flatten)]
    pub run: RunArgs,
    /// File name stem of the outputs.
    #[arg(long, default_value = "window")]
    pub name: String,
    /// Also print every cell of every round as it is measured.
    #[arg(short, long)]
    pub verbose: bool,
}

/// An added one-way delay: none at all (no proxy unless there is loss), or this much through
/// the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Delay {
    /// Straight over loopback.
    Bare,
    /// Through lossy-proxy adding this much each way.
    Added(Duration),
}

impl Delay {
    fn name(self) -> String {
        match self {
            Self::Bare => "none".into(),
            Self::Added(d) => format!("{} ms", d.as_secs_f64() * 1e3),
        }
    }
}

/// Parses `none` or a number of milliseconds.
pub fn parse_delay(text: &str) -> Result<Delay, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(Delay::Bare);
    }
    t.trim_end_matches("ms")
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|ms| (0.0..=1000.0).contains(ms))
        .map(|ms| Delay::Added(Duration::from_secs_f64(ms / 1e3)))
        .ok_or_else(|| format!("`{text}` is not `none` or milliseconds within 0..=1000"))
}

/// Where a transfer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Path {
    /// Straight over loopback.
    Direct,
    /// Through lossy-proxy with this added delay each way.
    Proxy(Duration),
}

impl Path {
    fn of(delay: Delay, loss: f64) -> Self {
        match delay {
            Delay::Bare if loss == 0.0 => Self::Direct,
            Delay::Bare => Self::Proxy(Duration::ZERO),
            Delay::Added(d) => Self::Proxy(d),
        }
    }

    fn name(self) -> String {
        match self {
            Self::Direct => "direct".into(),
            Self::Proxy(d) => format!("proxy +{} ms", d.as_secs_f64() * 1e3),
        }
    }

    /// `lossy-proxy` arguments beyond the loss.
    fn proxy_args(self) -> Vec<String> {
        match self {
            Self::Direct => Vec::new(),
            Self::Proxy(d) => vec![format!("--delay={}", d.as_secs_f64() * 1e3)],
        }
    }
}

/// One cell of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    chunk: u16,
    delay: Delay,
    /// Index into `--loss`.
    loss: usize,
    /// The window granted (the one asked for, unless the server grants fewer).
    window: u16,
}

/// The references of one path and chunk in one round.
#[derive(Clone)]
struct PathRefs {
    rtt: PathRtt,
    blast: Blast,
    /// The closed-loop relay of each granted window.
    relay: BTreeMap<u16, Relay>,
}

/// What a cell is set against: its ceiling `window × chunk ÷ RTT`, the path's blast and the
/// closed-loop relay of its window, in MB/s.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    ceiling: f64,
    blast: f64,
    relay: f64,
}

impl Estimate {
    /// The lowest of the three (a missing relay, NaN, is passed over).
    fn min(&self) -> f64 {
        self.ceiling.min(self.blast).min(self.relay)
    }
}

/// What the server's congestion window did in one cell's download, from the server's log
/// line of the session (the sender of a download is the server: the client cannot see it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ServerWindow {
    /// The time-weighted mean window.
    mean: f64,
    /// Decreases on a loss read as congestion, after timeouts, and by the delay signal.
    cut_loss: u64,
    cut_timeout: u64,
    cut_delay: u64,
    /// Returns to slow start after a spurious exit (0 in the line of a server before them).
    resumed: u64,
}

impl ServerWindow {
    /// Reads ` window mean M max X cuts N (loss L timeout T delay D) held H/R resumed S`
    /// from a session line of the server's text log (`resumed` may be absent).
    fn parse(line: &str) -> Option<Self> {
        let rest = line.split_once(" window mean ")?.1;
        let words: Vec<&str> = rest
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        let after = |key: &str| -> Option<&str> {
            let i = words.iter().position(|w| *w == key)?;
            words.get(i + 1).copied()
        };
        Some(Self {
            mean: words.first()?.parse().ok()?,
            cut_loss: after("loss")?.parse().ok()?,
            cut_timeout: after("timeout")?.parse().ok()?,
            cut_delay: after("delay")?.parse().ok()?,
            resumed: after("resumed").map_or(Some(0), |n| n.parse().ok())?,
        })
    }
}

/// How long a cell waits for the server's log line of its download: the server logs a
/// session when the client's last Ack reaches it, just after the client returns.
const SERVER_LINE_WAIT: Duration = Duration::from_millis(500);

/// What one round measured.
#[derive(Default)]
struct Round {
    refs: HashMap<(u16, Path), PathRefs>,
    /// Blocking stop-and-wait, straight over loopback, per chunk.
    blocking: HashMap<u16, Download>,
    /// The TCP copy per chunk (socat blocks of the chunk's size).
    tcp: HashMap<u16, TcpCopy>,
    cells: HashMap<Key, Download>,
    /// The server's congestion window in each windowed cell, where its log said.
    windows: HashMap<Key, ServerWindow>,
}

impl Round {
    fn refs(&self, chunk: u16, path: Path) -> Option<&PathRefs> {
        self.refs.get(&(chunk, path))
    }

    /// `window × chunk ÷ RTT`, the blast and the closed-loop relay of a cell's path
    /// (measured without loss), in MB/s; `rates` is `--loss`.
    fn ceiling(&self, key: &Key, rates: &[f64]) -> Option<Estimate> {
        let refs = self.refs(key.chunk, Path::of(key.delay, rates[key.loss]))?;
        let payload = usize::from(key.chunk);
        Some(Estimate {
            ceiling: refs.rtt.ceiling_mb_s(key.window, key.chunk),
            blast: refs.blast.mb_s(payload),
            relay: refs
                .relay
                .get(&key.window)
                .map_or(f64::NAN, |r| r.mb_s(payload)),
        })
    }
}

/// Everything the run shares.
struct Bench<'a> {
    args: &'a WindowArgs,
    proxy_bin: PathBuf,
    scratch: Scratch,
    /// The ladder of test files, smallest first.
    files: Vec<TestLibrary>,
    timeout: Duration,
    ref_time: Duration,
    lifetime: Duration,
    /// The server with busy-polling (the default) and the one without.
    server: SocketAddr,
    /// The log of `server`, whose session lines carry each download's window.
    server_log: PathBuf,
    blocking_server: SocketAddr,
    /// The file each cell moves, chosen in its first round.
    sizes: HashMap<Key, usize>,
    /// goodput ÷ estimate of each (chunk, delay, window) at the last loss measured.
    efficiency: HashMap<(u16, Delay, u16), f64>,
    failures: Vec<String>,
    /// The server's window in the last cell measured.
    last_window: Option<ServerWindow>,
}

impl Bench<'_> {
    fn proxy(
        &self,
        upstream: SocketAddr,
        path: Path,
        loss: f64,
        seed: u64,
        tag: &str,
    ) -> io::Result<ProxyChild> {
        start_proxy(
            &ProxySpec {
                bin: self.proxy_bin.clone(),
                upstream,
                loss,
                seed,
                lifetime: self.lifetime,
                extra_args: path.proxy_args(),
            },
            self.scratch.path(),
            tag,
        )
    }

    /// `upstream` itself for the direct path, else a new proxy in front of it (kept in
    /// `keep` while it is used).
    fn via(
        &self,
        upstream: SocketAddr,
        path: Path,
        loss: f64,
        tag: &str,
        keep: &mut Option<ProxyChild>,
    ) -> io::Result<SocketAddr> {
        match path {
            Path::Direct => Ok(upstream),
            Path::Proxy(_) => {
                let proxy = self.proxy(upstream, path, loss, self.args.run.seed, tag)?;
                let addr = proxy.addr;
                *keep = Some(proxy);
                Ok(addr)
            }
        }
    }

    fn path_refs(&self, chunk: u16, path: Path, round: u32) -> io::Result<PathRefs> {
        let tag = format!("ref-{chunk}-{}-{round}", path.name().replace(' ', ""));
        let mut proxy = None;
        let rtt = path::round_trip(chunk, self.args.ref_count, self.ref_time, |echo| {
            self.via(echo, path, 0.0, &format!("{tag}-rtt"), &mut proxy)
        })?;
        drop(proxy.take());
        let blast = blast::measure_via(
            BlastSpec {
                datagram: usize::from(chunk) + OVERHEAD,
                count: self.args.ref_count * 4,
                max_time: self.ref_time,
            },
            |receiver| self.via(receiver, path, 0.0, &format!("{tag}-blast"), &mut proxy),
        )?;
        drop(proxy.take());
        let mut relays = BTreeMap::new();
        for window in granted_windows(self.args, chunk).into_keys() {
            let relay =
                relay::closed_loop(chunk, window, self.args.ref_count, self.ref_time, |echo| {
                    self.via(echo, path, 0.0, &format!("{tag}-relay{window}"), &mut proxy)
                })?;
            drop(proxy.take());
            relays.insert(window, relay);
        }
        Ok(PathRefs {
            rtt,
            blast,
            relay: relays,
        })
    }

    /// The smallest file of the ladder that moving at `mb_s` takes `--cell-seconds`, or the
    /// largest.
    fn file_for(&self, mb_s: f64) -> usize {
        let bytes = mb_s * 1e6 * self.args.cell_seconds;
        self.files
            .iter()
            .position(|f| f.size as f64 >= bytes)
            .unwrap_or(self.files.len() - 1)
    }

    fn download(
        &self,
        server: SocketAddr,
        chunk: u16,
        window: u16,
        busy_poll: Option<Duration>,
        file: usize,
    ) -> io::Result<Download> {
        let mut options = transfer::windowed(chunk, window, self.timeout);
        if let Some(busy_poll) = busy_poll {
            options.busy_poll = busy_poll;
        }
        transfer::download_with(
            server,
            options,
            &self.files[file],
            &self.scratch.path().join("downloaded.bin"),
            &mut |_| {},
        )
    }

    /// The session lines of the busy-polling server's log that carry a window.
    fn window_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.server_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" window mean "))
            .map(str::to_owned)
            .collect()
    }

    /// The window of the download that just ended: the first line beyond `before`, waited
    /// for up to [`SERVER_LINE_WAIT`] (in bounded steps).
    fn server_window(&self, before: usize) -> Option<ServerWindow> {
        let started = Instant::now();
        loop {
            if let Some(line) = self.window_lines().get(before) {
                return ServerWindow::parse(line);
            }
            if started.elapsed() >= SERVER_LINE_WAIT {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Measures one cell through `addr` (the server, or the proxy of its path), choosing its
    /// file in its first round.
    fn cell(&mut self, round: &Round, key: Key, addr: SocketAddr) -> Option<Download> {
        let loss = self.args.loss[key.loss];
        let file = match self.sizes.get(&key) {
            Some(&file) => file,
            None => {
                let estimate = round
                    .ceiling(&key, &self.args.loss)
                    .map_or(f64::NAN, |e| e.min());
                let scale = self
                    .efficiency
                    .get(&(key.chunk, key.delay, key.window))
                    .copied()
                    .unwrap_or(1.0);
                let file = self.file_for(estimate * scale);
                self.sizes.insert(key, file);
                file
            }
        };
        let lines_before = self.window_lines().len();
        match self.download(addr, key.chunk, key.window, None, file) {
            Ok(d) => {
                if key.window > 1 {
                    self.last_window = self.server_window(lines_before);
                }
                if let Some(estimate) = round.ceiling(&key, &self.args.loss) {
                    self.efficiency.insert(
                        (key.chunk, key.delay, key.window),
                        (d.goodput / estimate.min()).min(1.0),
                    );
                }
                if self.args.verbose {
                    eprintln!(
                        "udpft-bench: chunk {} delay {} loss {:.0}% window {}: {} in {:.3} s, {:.1} MB/s",
                        key.chunk,
                        key.delay.name(),
                        loss * 100.0,
                        key.window,
                        human_bytes(self.files[file].size),
                        d.report.elapsed.as_secs_f64(),
                        d.goodput
                    );
                }
                Some(d)
            }
            Err(e) => {
                let text = format!(
                    "chunk {} delay {} loss {loss} window {}: {e}",
                    key.chunk,
                    key.delay.name(),
                    key.window
                );
                eprintln!("udpft-bench: FAILED {text}");
                self.failures.push(text);
                None
            }
        }
    }
}

/// The granted windows of `--windows` at `chunk`, each once, and what was asked for each.
fn granted_windows(args: &WindowArgs, chunk: u16) -> BTreeMap<u16, Vec<u16>> {
    let server = Config {
        window: args.max_window,
        ..Config::for_server()
    };
    let mut granted: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    for &asked in &args.windows {
        granted
            .entry(server.negotiate_window(asked, chunk))
            .or_default()
            .push(asked);
    }
    granted
}

/// Runs the grid and writes its outputs.
///
/// # Errors
/// If a child cannot be started, a reference fails, a file cannot be written, or a cell's
/// transfer failed (after the whole grid ran and was written).
pub fn run(args: &WindowArgs) -> io::Result<()> {
    if args.windows.is_empty()
        || args.loss.is_empty()
        || args.delay.is_empty()
        || args.chunks.is_empty()
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--windows, --loss, --delay and --chunks need at least one value each",
        ));
    }
    let started = Instant::now();
    let budget = Budget::new(args.run.max_seconds)?;
    let load_before = procfs::load_text();
    let server_bin = locate_bin("udpft", args.run.server_bin.as_deref())?;
    let proxy_bin = locate_bin("lossy-proxy", args.run.proxy_bin.as_deref())?;
    let have_socat = tcp::available();
    if !have_socat {
        eprintln!("udpft-bench: socat not found (apt-get install -y socat): no TCP copy");
    }
    let scratch = Scratch::create()?;
    let mut files = Vec::new();
    let mut size = args.min_size.min(args.size);
    loop {
        files.push(TestLibrary::create(scratch.path(), size, args.run.seed)?);
        if size >= args.size {
            break;
        }
        size = (size * 2).min(args.size);
    }
    let root = files[0].root.clone();
    let bench_scratch_log = scratch.path().join("server-bp.log");
    let max_window = format!("--max-window={}", args.max_window);
    let mut servers = Vec::new();
    for (tag, busy_poll) in [("bp", None), ("bp0", Some("--busy-poll=0"))] {
        let mut extra_args = vec![max_window.clone()];
        extra_args.extend(busy_poll.map(str::to_owned));
        servers.push(start_server(
            &ServerSpec {
                bin: server_bin.clone(),
                root: root.clone(),
                extra_args,
            },
            &scratch.path().join(format!("server-{tag}.log")),
        )?);
    }
    let timeout = args.run.timeout()?;
    let mut bench = Bench {
        args,
        proxy_bin,
        files,
        timeout,
        ref_time: secs(args.ref_seconds, "--ref-seconds")?,
        lifetime: args.run.proxy_lifetime()?,
        server: servers[0].addr,
        server_log: bench_scratch_log.clone(),
        blocking_server: servers[1].addr,
        sizes: HashMap::new(),
        efficiency: HashMap::new(),
        failures: Vec::new(),
        last_window: None,
        scratch,
    };

    // The loss-free path of every delay, and the proxy without delay if loss needs it.
    let mut ref_paths: Vec<Path> = args.delay.iter().map(|&d| Path::of(d, 0.0)).collect();
    ref_paths.extend(
        args.delay
            .iter()
            .flat_map(|&d| args.loss.iter().map(move |&l| Path::of(d, l))),
    );
    ref_paths.sort();
    ref_paths.dedup();
    // The groups of cells sharing a proxy: (chunk, delay, loss index).
    let mut groups: Vec<(u16, Delay, usize)> = Vec::new();
    for &chunk in &args.chunks {
        for &delay in &args.delay {
            for loss in 0..args.loss.len() {
                groups.push((chunk, delay, loss));
            }
        }
    }
    // In the first round, losses are visited in increasing order, so each cell's size can
    // be scaled by what the same window reached at the previous loss.
    let mut loss_order: Vec<usize> = (0..args.loss.len()).collect();
    loss_order.sort_by(|&a, &b| args.loss[a].total_cmp(&args.loss[b]));
    groups.sort_by_key(|&(chunk, delay, loss)| {
        (
            args.chunks.iter().position(|&c| c == chunk),
            delay,
            loss_order.iter().position(|&l| l == loss),
        )
    });

    let mut rounds: Vec<Round> = Vec::new();
    for r in 0..args.rounds {
        if budget.left().is_zero() {
            break;
        }
        eprintln!("udpft-bench: round {}/{}", r + 1, args.rounds);
        let mut round = Round::default();
        for &chunk in &args.chunks {
            for &path in &ref_paths {
                round
                    .refs
                    .insert((chunk, path), bench.path_refs(chunk, path, r)?);
            }
            let direct = round.refs(chunk, Path::Direct).map(|refs| refs.rtt);
            let file = bench.file_for(direct.map_or(f64::NAN, |rtt| rtt.ceiling_mb_s(1, chunk)));
            match bench.download(bench.blocking_server, chunk, 1, Some(Duration::ZERO), file) {
                Ok(d) => {
                    round.blocking.insert(chunk, d);
                }
                Err(e) => bench.failures.push(format!("blocking stop-and-wait: {e}")),
            }
            if have_socat {
                let largest = bench.files.last().expect("one file at least");
                let copy = tcp::copy(
                    &largest.file(),
                    &bench.scratch.path().join("tcp-copy.bin"),
                    chunk,
                    bench.scratch.path(),
                );
                match copy {
                    Ok(c) => {
                        round.tcp.insert(chunk, c);
                    }
                    Err(e) => bench.failures.push(format!("TCP copy: {e}")),
                }
            }
        }
        let mut order = groups.clone();
        if r > 0 {
            let len = order.len();
            order.rotate_left(r as usize * 5 % len);
        }
        for (chunk, delay, loss) in order {
            let path = Path::of(delay, args.loss[loss]);
            let tag = format!("cell-{chunk}-{}-{loss}-{r}", delay.name().replace(' ', ""));
            let seed = args.run.seed.wrapping_add(u64::from(r));
            let proxy = match path {
                Path::Direct => None,
                Path::Proxy(_) => {
                    Some(bench.proxy(bench.server, path, args.loss[loss], seed, &tag)?)
                }
            };
            let addr = proxy.as_ref().map_or(bench.server, |p| p.addr);
            let mut windows: Vec<u16> = granted_windows(args, chunk).into_keys().collect();
            let len = windows.len();
            windows.rotate_left(r as usize % len);
            for window in windows {
                let key = Key {
                    chunk,
                    delay,
                    loss,
                    window,
                };
                if let Some(d) = bench.cell(&round, key, addr) {
                    round.cells.insert(key, d);
                    if let Some(w) = bench.last_window.take() {
                        round.windows.insert(key, w);
                    }
                }
            }
            if let Some(p) = proxy {
                p.stop()?;
            }
        }
        rounds.push(round);
    }
    for server in &mut servers {
        server.guard.stop()?;
    }
    if rounds.is_empty() {
        return Err(io::Error::other("no round fitted in --max-seconds"));
    }
    let load = format!("before {load_before}, after {}", procfs::load_text());
    let report = Report::new(args, &bench, &rounds);
    let markdown = report.markdown(args, &load, started.elapsed(), &bench.failures);
    args.run.write(&args.name, &report.cells, &markdown)?;
    report::every_round(args, &bench, &rounds).write_files(
        Some(&args.run.out.join(format!("{}-rounds.csv", args.name))),
        None,
    )?;
    for &chunk in &args.chunks {
        let chart = report.chart(args, chunk, &rounds, &load);
        std::fs::write(
            args.run.out.join(format!("{}-{chunk}.svg", args.name)),
            chart.to_svg(),
        )?;
    }
    eprintln!(
        "udpft-bench: wrote {0}.md, {0}.csv, {0}.json, {0}-rounds.csv and {0}-CHUNK.svg in {1} ({2:.0} s)",
        args.name,
        args.run.out.display(),
        started.elapsed().as_secs_f64()
    );
    if bench.failures.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} measurement(s) failed (listed in the report)",
            bench.failures.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: WindowArgs,
    }

    #[test]
    fn the_server_window_is_read_from_its_session_line() {
        let line = "2026-12-04T02:30:30Z 127.0.0.1:54338 get big.bin 32.00 MiB 1.5 s ok window mean 52.3 max 64 cuts 153 (loss 0 timeout 2 delay 151) held 77/457 resumed 2";
        let window = ServerWindow {
            mean: 52.3,
            cut_loss: 0,
            cut_timeout: 2,
            cut_delay: 151,
            resumed: 2,
        };
        assert_eq!(ServerWindow::parse(line), Some(window));
        // A server from before slow start could resume: none.
        let older = line.strip_suffix(" resumed 2").unwrap();
        assert_eq!(
            ServerWindow::parse(older),
            Some(ServerWindow {
                resumed: 0,
                ..window
            })
        );
        assert_eq!(ServerWindow::parse("... get a 1 B 1 ms ok"), None);
    }

    #[test]
    fn delays_are_none_or_milliseconds() {
        assert_eq!(parse_delay("none"), Ok(Delay::Bare));
        assert_eq!(parse_delay("1"), Ok(Delay::Added(Duration::from_millis(1))));
        assert_eq!(
            parse_delay("0.5ms"),
            Ok(Delay::Added(Duration::from_micros(500)))
        );
        assert!(parse_delay("-1").is_err());
        assert!(parse_delay("soon").is_err());
    }

    #[test]
    fn loss_needs_the_proxy_even_without_delay() {
        assert_eq!(Path::of(Delay::Bare, 0.0), Path::Direct);
        assert_eq!(Path::of(Delay::Bare, 0.01), Path::Proxy(Duration::ZERO));
        let d = Duration::from_millis(1);
        assert_eq!(Path::of(Delay::Added(d), 0.0), Path::Proxy(d));
    }

    #[test]
    fn windows_the_server_cannot_grant_are_measured_once() {
        let args = Wrapper::parse_from(["x"]).args;
        let small = granted_windows(&args, 1430);
        assert_eq!(
            small.keys().copied().collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 128, 256]
        );
        // At the largest chunk, 4 MiB in flight is 64 datagrams.
        let large = granted_windows(&args, udpft::proto::wire::MAX_CHUNK);
        assert_eq!(large.keys().copied().max(), Some(64));
        assert_eq!(large[&64], [64, 128, 256]);
    }
}
