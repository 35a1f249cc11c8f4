//! `udpft-bench window`: the second lesson in numbers, stop-and-wait against pipelining.
//! Goodput of real downloads over a grid of window × loss × added delay × chunk, each cell
//! beside its ceiling `window × chunk ÷ RTT` (RTT from a ping-pong through the same path,
//! measured in the same round), and, in the same run, the references a window is set
//! against: blocking stop-and-wait (client and server without busy-polling), a one-way UDP
//! blast of the same datagrams (through the proxy too: what the relay itself can carry), and
//! a TCP copy of the same file with `socat`.
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
//! second, or 64 MiB, whichever is smaller". The estimate is `min(ceiling, blast)` of the
//! first round, scaled by what the same window achieved at the previous loss rate; sizes are
//! fixed in the first round and kept. Every round measures the references first, then every
//! cell once, in an order that rotates from round to round; medians over rounds are shown,
//! and each ratio is the median of its rounds' own ratios. Windows the server cannot grant
//! (above `--max-window`, or above 4 MiB of datagrams in flight at large chunks) are not
//! measured twice: the cell of the granted window stands for them.

use crate::blast::{self, Blast, BlastSpec};
use crate::children::{locate_bin, start_proxy, start_server, ProxyChild, ProxySpec, ServerSpec};
use crate::download::{parse_chunk, secs, Budget};
use crate::loss::parse_rate;
use crate::path::{self, PathRtt};
use crate::procfs;
use crate::results::{human_bytes, median, micros, Cell, Table};
use crate::svg::{LineChart, Series, YScale};
use crate::tcp::{self, TcpCopy};
use crate::transfer::{self, Download};
use crate::units::parse_size;
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use udpft::client::ClientOptions;
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
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
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
    /// Folder for NAME.md, NAME.csv, NAME.json and NAME-CHUNK.svg (created if missing).
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// File name stem of the outputs.
    #[arg(long, default_value = "window")]
    pub name: String,
    /// The client gives up after this many seconds without progress.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// Stop starting new rounds after this many seconds overall.
    #[arg(long, default_value_t = 900.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// Seed of the file bytes and of the proxies' losses (round r: seed + r).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// The `lossy-proxy` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub proxy_bin: Option<PathBuf>,
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
#[derive(Clone, Copy)]
struct PathRefs {
    rtt: PathRtt,
    blast: Blast,
}

/// What one round measured.
#[derive(Default)]
struct Round {
    refs: HashMap<(u16, Path), PathRefs>,
    /// Blocking stop-and-wait, straight over loopback, per chunk.
    blocking: HashMap<u16, Download>,
    /// The TCP copy per chunk (socat blocks of the chunk's size).
    tcp: HashMap<u16, TcpCopy>,
    cells: HashMap<Key, Download>,
}

impl Round {
    fn refs(&self, chunk: u16, path: Path) -> Option<&PathRefs> {
        self.refs.get(&(chunk, path))
    }

    /// `window × chunk ÷ RTT` and the blast of a cell's path (measured without loss), in
    /// MB/s; `rates` is `--loss`.
    fn ceiling(&self, key: &Key, rates: &[f64]) -> Option<(f64, f64)> {
        let refs = self.refs(key.chunk, Path::of(key.delay, rates[key.loss]))?;
        Some((
            refs.rtt.ceiling_mb_s(key.window, key.chunk),
            refs.blast.mb_s(usize::from(key.chunk)),
        ))
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
    blocking_server: SocketAddr,
    /// The file each cell moves, chosen in its first round.
    sizes: HashMap<Key, usize>,
    /// goodput ÷ estimate of each (chunk, delay, window) at the last loss measured.
    efficiency: HashMap<(u16, Delay, u16), f64>,
    failures: Vec<String>,
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
                let proxy = self.proxy(upstream, path, loss, self.args.seed, tag)?;
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
        Ok(PathRefs { rtt, blast })
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
        let defaults = ClientOptions::default();
        let options = ClientOptions {
            config: Config {
                chunk,
                window,
                timeout: self.timeout,
                ..Config::default()
            },
            busy_poll: busy_poll.unwrap_or(defaults.busy_poll),
            ..defaults
        };
        transfer::download_with(
            server,
            options,
            &self.files[file],
            &self.scratch.path().join("downloaded.bin"),
            &mut |_| {},
        )
    }

    /// Measures one cell through `addr` (the server, or the proxy of its path), choosing its
    /// file in its first round.
    fn cell(&mut self, round: &Round, key: Key, addr: SocketAddr) -> Option<Download> {
        let loss = self.args.loss[key.loss];
        let file = match self.sizes.get(&key) {
            Some(&file) => file,
            None => {
                let (ceiling, blast) = round
                    .ceiling(&key, &self.args.loss)
                    .unwrap_or((f64::NAN, f64::NAN));
                let scale = self
                    .efficiency
                    .get(&(key.chunk, key.delay, key.window))
                    .copied()
                    .unwrap_or(1.0);
                let file = self.file_for(ceiling.min(blast) * scale);
                self.sizes.insert(key, file);
                file
            }
        };
        match self.download(addr, key.chunk, key.window, None, file) {
            Ok(d) => {
                if let Some((ceiling, blast)) = round.ceiling(&key, &self.args.loss) {
                    self.efficiency.insert(
                        (key.chunk, key.delay, key.window),
                        (d.goodput / ceiling.min(blast)).min(1.0),
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
    let budget = Budget::new(args.max_seconds)?;
    let load_before = procfs::load_text();
    let server_bin = locate_bin("udpft", args.server_bin.as_deref())?;
    let proxy_bin = locate_bin("lossy-proxy", args.proxy_bin.as_deref())?;
    let have_socat = tcp::available();
    if !have_socat {
        eprintln!("udpft-bench: socat not found (apt-get install -y socat): no TCP copy");
    }
    let scratch = Scratch::create()?;
    let mut files = Vec::new();
    let mut size = args.min_size.min(args.size);
    loop {
        files.push(TestLibrary::create(scratch.path(), size, args.seed)?);
        if size >= args.size {
            break;
        }
        size = (size * 2).min(args.size);
    }
    let root = files[0].root.clone();
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
    let timeout = secs(args.timeout, "--timeout")?;
    let mut bench = Bench {
        args,
        proxy_bin,
        files,
        timeout,
        ref_time: secs(args.ref_seconds, "--ref-seconds")?,
        lifetime: secs(args.max_seconds, "--max-seconds")? + timeout * 4 + Duration::from_secs(60),
        server: servers[0].addr,
        blocking_server: servers[1].addr,
        sizes: HashMap::new(),
        efficiency: HashMap::new(),
        failures: Vec::new(),
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
            let seed = args.seed.wrapping_add(u64::from(r));
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
    print!("{markdown}");
    std::fs::create_dir_all(&args.out)?;
    let stem = args.out.join(&args.name);
    report.cells.write_files(
        Some(&stem.with_extension("csv")),
        Some(&stem.with_extension("json")),
    )?;
    std::fs::write(stem.with_extension("md"), &markdown)?;
    for &chunk in &args.chunks {
        let chart = report.chart(args, chunk, &rounds, &load);
        std::fs::write(
            args.out.join(format!("{}-{chunk}.svg", args.name)),
            chart.to_svg(),
        )?;
    }
    eprintln!(
        "udpft-bench: wrote {0}.md, {0}.csv, {0}.json and {0}-CHUNK.svg in {1} ({2:.0} s)",
        args.name,
        args.out.display(),
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

/// The median over rounds of `f`, skipping rounds where it has no value.
fn over_rounds(rounds: &[Round], f: impl Fn(&Round) -> Option<f64>) -> f64 {
    median(&rounds.iter().filter_map(f).collect::<Vec<_>>())
}

/// The tables of a finished run.
struct Report {
    /// One row per cell: the CSV and JSON.
    cells: Table,
    references: Table,
    figures: Table,
    /// Per chunk: goodput by (path, loss) × window.
    pivots: Vec<(u16, Table)>,
}

impl Report {
    fn new(args: &WindowArgs, bench: &Bench<'_>, rounds: &[Round]) -> Self {
        let mut cells = Table::new(&[
            "chunk B",
            "delay each way",
            "path",
            "loss",
            "window asked",
            "window granted",
            "size B",
            "rounds",
            "goodput MB/s",
            "RTT µs",
            "ceiling W×chunk÷RTT MB/s",
            "blast MB/s",
            "÷ min(ceiling, blast)",
            "÷ window 1",
            "dup data",
            "client srtt µs",
        ]);
        let mut pivots = Vec::new();
        for &chunk in &args.chunks {
            let granted = granted_windows(args, chunk);
            let mut headers = vec!["delay each way".to_owned(), "loss".to_owned()];
            headers.extend(granted.values().map(|asked| {
                let names: Vec<String> = asked.iter().map(u16::to_string).collect();
                format!("W {}", names.join("/"))
            }));
            let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            let mut pivot = Table::new(&header_refs);
            for &delay in &args.delay {
                for (loss, &rate) in args.loss.iter().enumerate() {
                    let path = Path::of(delay, rate);
                    let mut row = vec![Cell::text(delay.name()), Cell::text(percent(rate))];
                    for (&window, asked) in &granted {
                        let key = Key {
                            chunk,
                            delay,
                            loss,
                            window,
                        };
                        let goodput = over_rounds(rounds, |r| r.cells.get(&key).map(|d| d.goodput));
                        row.push(Cell::num(goodput, 1));
                        let one = Key { window: 1, ..key };
                        let stats = |f: &dyn Fn(&Download) -> f64| {
                            over_rounds(rounds, |r| r.cells.get(&key).map(f))
                        };
                        cells.push(vec![
                            Cell::int(u64::from(chunk)),
                            Cell::text(delay.name()),
                            Cell::text(path.name()),
                            Cell::num(rate, 3),
                            Cell::text(
                                asked
                                    .iter()
                                    .map(u16::to_string)
                                    .collect::<Vec<_>>()
                                    .join("/"),
                            ),
                            Cell::int(u64::from(window)),
                            bench
                                .sizes
                                .get(&key)
                                .map_or_else(Cell::missing, |&f| Cell::int(bench.files[f].size)),
                            Cell::int(
                                rounds.iter().filter(|r| r.cells.contains_key(&key)).count() as u64
                            ),
                            Cell::num(goodput, 2),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    r.refs(chunk, path).map(|p| micros(p.rtt.median))
                                }),
                                1,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| r.ceiling(&key, &args.loss).map(|c| c.0)),
                                1,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| r.ceiling(&key, &args.loss).map(|c| c.1)),
                                1,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    let (c, b) = r.ceiling(&key, &args.loss)?;
                                    Some(r.cells.get(&key)?.goodput / c.min(b))
                                }),
                                2,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    Some(r.cells.get(&key)?.goodput / r.cells.get(&one)?.goodput)
                                }),
                                2,
                            ),
                            Cell::num(stats(&|d| d.report.stats.duplicates as f64), 0),
                            Cell::num(stats(&|d| d.report.stats.srtt.map_or(f64::NAN, micros)), 1),
                        ]);
                    }
                    pivot.push(row);
                }
                // The ceiling of each window on this delay's path.
                let mut row = vec![Cell::text(delay.name()), Cell::text("ceiling")];
                for &window in granted.keys() {
                    let key = Key {
                        chunk,
                        delay,
                        loss: 0,
                        window,
                    };
                    row.push(Cell::num(
                        over_rounds(rounds, |r| {
                            r.ceiling(&key, &args.loss).map(|(c, b)| c.min(b))
                        }),
                        1,
                    ));
                }
                pivot.push(row);
            }
            pivots.push((chunk, pivot));
        }

        let mut references = Table::new(&[
            "chunk B",
            "reference",
            "path",
            "MB/s",
            "RTT µs (median)",
            "lost",
        ]);
        for &chunk in &args.chunks {
            let payload = usize::from(chunk);
            let mut paths: Vec<Path> = rounds[0]
                .refs
                .keys()
                .filter(|k| k.0 == chunk)
                .map(|k| k.1)
                .collect();
            paths.sort();
            for path in paths {
                references.push(vec![
                    Cell::int(u64::from(chunk)),
                    Cell::text("stop-and-wait ceiling (chunk ÷ RTT)"),
                    Cell::text(path.name()),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| p.rtt.ceiling_mb_s(1, chunk))
                        }),
                        1,
                    ),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| micros(p.rtt.median))
                        }),
                        1,
                    ),
                    Cell::num(
                        over_rounds(rounds, |r| r.refs(chunk, path).map(|p| p.rtt.lost as f64)),
                        0,
                    ),
                ]);
                references.push(vec![
                    Cell::int(u64::from(chunk)),
                    Cell::text("one-way UDP blast"),
                    Cell::text(path.name()),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| p.blast.mb_s(payload))
                        }),
                        1,
                    ),
                    Cell::missing(),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| p.blast.lost() as f64)
                        }),
                        0,
                    ),
                ]);
            }
            references.push(vec![
                Cell::int(u64::from(chunk)),
                Cell::text("blocking stop-and-wait (busy-poll 0)"),
                Cell::text("direct"),
                Cell::num(
                    over_rounds(rounds, |r| r.blocking.get(&chunk).map(|d| d.goodput)),
                    1,
                ),
                Cell::missing(),
                Cell::missing(),
            ]);
            references.push(vec![
                Cell::int(u64::from(chunk)),
                Cell::text(format!("TCP copy (socat -b {chunk})")),
                Cell::text("direct"),
                Cell::num(
                    over_rounds(rounds, |r| r.tcp.get(&chunk).map(|c| c.goodput)),
                    1,
                ),
                Cell::missing(),
                Cell::missing(),
            ]);
        }

        Self {
            cells,
            references,
            figures: figures(args, rounds),
            pivots,
        }
    }

    fn markdown(
        &self,
        args: &WindowArgs,
        load: &str,
        elapsed: Duration,
        failures: &[String],
    ) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## Stop-and-wait vs pipelining: download goodput by window (loopback, medians of {} rounds)\n",
            args.rounds
        );
        let _ = writeln!(
            md,
            "`udpft-bench window` on {} CPU(s), load average (1, 5, 15 min) {load}; {:.0} s in all. \
             MB = 10^6 bytes. Every copy verified byte for byte.\n",
            procfs::cpus(),
            elapsed.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "### Figures (issue 10 §6), each the median of its rounds' own ratios\n"
        );
        md.push_str(&self.figures.to_markdown());
        for (chunk, pivot) in &self.pivots {
            let _ = writeln!(md, "\n### Goodput MB/s at {chunk}-byte chunks\n");
            md.push_str(&pivot.to_markdown());
        }
        let _ = writeln!(
            md,
            "\n`W a/b` = windows a and b asked for, both granted a (the server grants at most \
             --max-window {} and 4 MiB of datagrams in flight). delay = added one way, each \
             way, by lossy-proxy (`none`: straight over loopback, or through a proxy adding \
             nothing where there is loss). ceiling = min(window × chunk ÷ RTT, blast) of the \
             loss-free path of that delay, RTT the median of a ping-pong of a Data-sized \
             request and an Ack-sized reply through the same path, blast a one-way UDP blast \
             of the same datagrams through it (what the proxy itself can relay).\n",
            args.max_window
        );
        let _ = writeln!(md, "### References\n");
        md.push_str(&self.references.to_markdown());
        let _ = writeln!(
            md,
            "\nblocking stop-and-wait = window 1 with busy-polling off in client and server \
             (`--busy-poll 0`); the grid's cells use the defaults (adaptive busy-polling up to \
             50 µs). TCP copy = `socat -u` file to file over TCP on 127.0.0.1, from the \
             sender's start to both programs' exit.\n"
        );
        let _ = writeln!(md, "### Every cell\n");
        md.push_str(&self.cells.to_markdown());
        let _ = writeln!(
            md,
            "\nsize = the file the cell moved: the smallest of {} … {} that its estimated \
             goodput (the first round's ceiling, scaled by what the same window reached at \
             the previous loss) needs for {} s, or the largest. ÷ window 1 = goodput ÷ the \
             stop-and-wait cell of the same path and loss. dup data = repeated Data \
             datagrams the client received (the server's retransmissions that proved \
             unnecessary, and duplicates).",
            human_bytes(args.min_size.min(args.size)),
            human_bytes(args.size),
            args.cell_seconds
        );
        if !failures.is_empty() {
            let _ = writeln!(md, "\n### Failed measurements\n");
            for f in failures {
                let _ = writeln!(md, "* {f}");
            }
        }
        let _ = writeln!(
            md,
            "\nRerun: `udpft-bench window --rounds {} --out DIR` (`cargo build --release --bins` first).",
            args.rounds
        );
        md
    }

    fn chart(&self, args: &WindowArgs, chunk: u16, rounds: &[Round], load: &str) -> LineChart {
        let granted = granted_windows(args, chunk);
        let mut series = Vec::new();
        for &delay in &args.delay {
            for (loss, &rate) in args.loss.iter().enumerate() {
                series.push(Series {
                    name: format!("+{} {}", delay.name(), percent(rate)),
                    values: granted
                        .keys()
                        .map(|&window| {
                            let key = Key {
                                chunk,
                                delay,
                                loss,
                                window,
                            };
                            Some(over_rounds(rounds, |r| {
                                r.cells.get(&key).map(|d| d.goodput)
                            }))
                            .filter(|v| v.is_finite())
                        })
                        .collect(),
                });
            }
        }
        LineChart {
            title: format!("Download goodput by window, {chunk}-byte chunks"),
            x_label: "window (chunks in flight)".into(),
            y_label: "goodput MB/s (log)".into(),
            categories: granted.keys().map(u16::to_string).collect(),
            series,
            y_scale: YScale::Log10,
            note: Some(format!(
                "udpft-bench window: loopback, delay each way / loss each way, medians of {} rounds; load {load}",
                args.rounds
            )),
        }
    }
}

fn percent(rate: f64) -> String {
    format!("{}%", (rate * 1e4).round() / 1e2)
}

/// The closing figures of issue 10 §6, where the grid holds their cells.
fn figures(args: &WindowArgs, rounds: &[Round]) -> Table {
    let mut table = Table::new(&["figure", "measured", "aim"]);
    let loss0 = args.loss.iter().position(|&l| l == 0.0);
    let bare = args.delay.iter().find(|&&d| d == Delay::Bare).copied();
    let one_ms = args
        .delay
        .iter()
        .find(|&&d| d == Delay::Added(Duration::from_millis(1)))
        .copied();
    let cell = |r: &Round, chunk: u16, delay: Delay, window: u16| -> Option<f64> {
        r.cells
            .get(&Key {
                chunk,
                delay,
                loss: loss0?,
                window,
            })
            .map(|d| d.goodput)
    };
    let mut push = |name: String, value: f64, aim: &str| {
        if value.is_finite() {
            table.push(vec![Cell::text(name), Cell::num(value, 2), Cell::text(aim)]);
        }
    };
    for &chunk in &args.chunks {
        let payload = usize::from(chunk);
        let granted = granted_windows(args, chunk);
        let w64 = Config {
            window: args.max_window,
            ..Config::for_server()
        }
        .negotiate_window(64, chunk);
        let has = |w: u16| granted.contains_key(&w);
        if let Some(bare) = bare {
            for w in [64, 16].into_iter().filter(|&w| has(w)) {
                push(
                    format!("loopback {chunk} B: window {w} ÷ blocking stop-and-wait"),
                    over_rounds(rounds, |r| {
                        Some(cell(r, chunk, bare, w)? / r.blocking.get(&chunk)?.goodput)
                    }),
                    if w == 64 {
                        "≥ 5 (or ≥ 0.6 of the blast)"
                    } else {
                        "≥ 2 (65485 B)"
                    },
                );
                push(
                    format!("loopback {chunk} B: window {w} ÷ one-way blast"),
                    over_rounds(rounds, |r| {
                        Some(
                            cell(r, chunk, bare, w)?
                                / r.refs(chunk, Path::Direct)?.blast.mb_s(payload),
                        )
                    }),
                    "≥ 0.6 (1430 B, window 64)",
                );
                push(
                    format!("loopback {chunk} B: window {w} ÷ TCP copy"),
                    over_rounds(rounds, |r| {
                        Some(cell(r, chunk, bare, w)? / r.tcp.get(&chunk)?.goodput)
                    }),
                    "≥ 1 (65485 B, window 16)",
                );
            }
        }
        if let Some(one_ms) = one_ms {
            if has(w64) {
                push(
                    format!("1 ms each way, {chunk} B: window {w64} ÷ stop-and-wait"),
                    over_rounds(rounds, |r| {
                        Some(cell(r, chunk, one_ms, w64)? / cell(r, chunk, one_ms, 1)?)
                    }),
                    "≥ 20",
                );
                push(
                    format!("1 ms each way, {chunk} B: window {w64} ÷ min(window × chunk ÷ RTT, proxy relay)"),
                    over_rounds(rounds, |r| {
                        let key = Key {
                            chunk,
                            delay: one_ms,
                            loss: loss0?,
                            window: w64,
                        };
                        let (c, b) = r.ceiling(&key, &args.loss)?;
                        Some(cell(r, chunk, one_ms, w64)? / c.min(b))
                    }),
                    "≥ 0.8",
                );
            }
        }
    }
    table
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
