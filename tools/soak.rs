//! `udpft-soak`: a bounded soak test of a real `udpft serve` child process, optionally behind
//! a `lossy-proxy` child. Many client threads download and upload random files for a fixed
//! time; every byte is checked, the server's memory (RSS) is sampled after a warm-up and
//! again once the load stopped and the sessions drained, and the server's own statistics
//! lines tell whether any session was left behind. The run passes (exit 0) only if nothing
//! was corrupted or lost, no transfer failed, no session was left, and the memory stayed
//! flat; the summary says which criterion failed otherwise.
//!
//! File contents are never stored: byte `i` of a file is a pure function of the file's
//! content seed and `i` ([`content_word`]), so both sides of every comparison are generated
//! on the fly, block by block, and compared exactly.
//!
//! Children are started by this process only, stopped by their PID (SIGTERM, then SIGKILL
//! after a deadline) from guards that also run on early returns; the scratch folder (the
//! library and the clients' folders) is removed by a guard as well.

// The process helpers of udpft-bench, shared rather than written again; the soak uses only
// part of each.
#[allow(dead_code)]
#[path = "bench/children.rs"]
mod children;
#[allow(dead_code)]
#[path = "bench/procfs.rs"]
mod procfs;

use clap::Parser;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use udpft::client::{Client, ClientError, ClientOptions, Destination, Event};
use udpft::library::TEMP_PREFIX;
use udpft::proto::wire::DEFAULT_CHUNK;
use udpft::proto::Config;

/// How long a child gets to print its first line (its address).
const START_WITHIN: Duration = Duration::from_secs(10);

/// How long the server gets to exit after SIGTERM before it is killed. Its default grace
/// for running downloads is 10 s; after the drain there should be none.
const SERVER_STOP_WITHIN: Duration = Duration::from_secs(15);

/// How long the proxy gets to exit after SIGTERM before it is killed.
const PROXY_STOP_WITHIN: Duration = Duration::from_secs(5);

/// How long to wait, after the load stopped, for the server to report `live=0`. The server
/// lingers after a completed upload for its timeout (5 s), so this must exceed that.
const DRAIN_WITHIN: Duration = Duration::from_secs(15);

/// The shortest warm-up before the first memory sample.
const MIN_WARM_UP: Duration = Duration::from_secs(5);

/// Largest end/warm-up RSS ratio that passes.
const RSS_RATIO_LIMIT: f64 = 1.10;

/// Interval of the progress line and of RSS sampling during the run.
const TICK: Duration = Duration::from_secs(1);

/// Progress lines on stderr every this many ticks.
const PROGRESS_EVERY_TICKS: u32 = 5;

/// Block size of file generation and comparison.
const BLOCK: usize = 64 << 10;

/// Chunk sizes the clients ask for, one picked per transfer.
const CHUNKS: [u16; 4] = [DEFAULT_CHUNK, 512, 8192, 32768];

/// How long a client keeps retrying a server that answers *busy*.
const BUSY_PATIENCE: Duration = Duration::from_secs(30);

/// Most server/proxy stderr lines kept (the stats line arrives every second).
const MAX_KEPT_LINES: usize = 10_000;

/// Failure examples kept per reason.
const EXAMPLES_PER_REASON: usize = 3;

/// Soak test of a udpft server: many clients get and put random files for a while, through
/// an optional lossy proxy; every byte is verified, server memory and sessions are checked.
///
/// Exit code 0 only if no transfer was corrupted, lost or failed, no session was left at the
/// end, and the server's RSS at the end is within 10% of its RSS after the warm-up.
#[derive(Parser, Debug)]
#[command(name = "udpft-soak", version)]
struct Cli {
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    seconds: f64,
    /// Client threads running transfers at once.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Loss probability each way through lossy-proxy (0 runs without the proxy).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    loss: f64,
    /// Smallest file (bytes; K/KiB, M/MiB, G/GiB suffixes are powers of 1024).
    #[arg(long, default_value = "4KiB", value_parser = parse_size, value_name = "SIZE")]
    size_min: u64,
    /// Largest file.
    #[arg(long, default_value = "2MiB", value_parser = parse_size, value_name = "SIZE")]
    size_max: u64,
    /// Files in the library at the start (targets of the downloads).
    #[arg(long, default_value_t = 32)]
    files: usize,
    /// Seed of every random choice (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Server model passed to `udpft serve --model` (live sessions are reported by `table`).
    #[arg(long, default_value = "table")]
    model: String,
    /// When to take the warm-up RSS sample, in seconds into the run (default: 10% of
    /// --seconds, at least 5 s).
    #[arg(long, value_name = "SECS")]
    warm_up: Option<f64>,
    /// Clients give up on a server that shows no progress for this many seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    client_timeout: f64,
    /// Also write the summary to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Parses `4096`, `4K`, `4KiB`, `2M`, `2MiB`, `1G`, `1GiB` (powers of 1024; a `B` suffix
/// alone means bytes).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 4096, 4KiB, 2MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{text}`: unknown size unit (use K, M, G)")),
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// `1.5 MiB`-style text for a byte count.
fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

// ---------------------------------------------------------------------------------------
// Randomness and file contents
// ---------------------------------------------------------------------------------------

/// One step of SplitMix64: a good 64-bit mix of `x`.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small seeded generator (SplitMix64 sequence) for the soak's choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(splitmix(seed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: the bias is far below anything a soak could notice.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A size in `min..=max`, uniform in its logarithm so small and large files both occur.
    fn size(&mut self, min: u64, max: u64) -> u64 {
        if max <= min {
            return min;
        }
        let lo = (min.max(1) as f64).ln();
        let hi = (max as f64).ln();
        let size = (lo + (hi - lo) * self.unit()).exp().round() as u64;
        size.clamp(min, max)
    }
}

/// The 8 bytes at word `index` of the file with content seed `seed`.
fn content_word(seed: u64, index: u64) -> [u8; 8] {
    splitmix(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes()
}

/// Fills `buf` with the file's bytes starting at `offset` (a multiple of 8).
fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    debug_assert_eq!(offset % 8, 0);
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let word = content_word(seed, offset / 8 + i as u64);
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// A file whose contents are known: a length and a content seed.
#[derive(Clone, Copy, Debug)]
struct Content {
    size: u64,
    seed: u64,
}

impl Content {
    /// Writes the contents to a new file at `path`.
    fn write_to(self, path: &Path) -> io::Result<()> {
        let mut out = BufWriter::with_capacity(BLOCK, File::create(path)?);
        let mut buf = vec![0u8; BLOCK];
        let mut offset = 0u64;
        while offset < self.size {
            let n = (self.size - offset).min(BLOCK as u64) as usize;
            fill(self.seed, offset, &mut buf[..n]);
            out.write_all(&buf[..n])?;
            offset += n as u64;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    /// Compares the file at `path` with the contents, byte for byte.
    fn check(self, path: &Path) -> io::Result<Verdict> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Absent),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len != self.size {
            return Ok(Verdict::Differs(format!(
                "{len} bytes instead of {}",
                self.size
            )));
        }
        let mut got = vec![0u8; BLOCK];
        let mut want = vec![0u8; BLOCK];
        let mut offset = 0u64;
        while offset < self.size {
            let n = (self.size - offset).min(BLOCK as u64) as usize;
            file.read_exact(&mut got[..n])?;
            fill(self.seed, offset, &mut want[..n]);
            if got[..n] != want[..n] {
                let at = got[..n]
                    .iter()
                    .zip(&want[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Ok(Verdict::Differs(format!(
                    "first difference at byte {}",
                    offset + at as u64
                )));
            }
            offset += n as u64;
        }
        Ok(Verdict::Same)
    }
}

/// How a file compared with its known contents.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Same,
    Absent,
    Differs(String),
}

// ---------------------------------------------------------------------------------------
// Scratch folder and child processes
// ---------------------------------------------------------------------------------------

/// A fresh folder under the system's temp folder, removed with its contents when dropped.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new() -> io::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("udpft-soak-{}-{nanos:09}", std::process::id()));
        fs::create_dir(&path)?;
        Ok(Self { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("udpft-soak: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// The lines a child wrote to stderr so far, and whether it closed stderr.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    dropped: usize,
    closed: bool,
}

/// A child process whose stderr is read line by line by a thread (so the pipe never fills),
/// stopped by its PID (SIGTERM, then SIGKILL) when dropped.
struct ChildProc {
    name: &'static str,
    child: Child,
    lines: Arc<(Mutex<Lines>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ChildProc {
    fn spawn(name: &'static str, mut command: Command) -> io::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        let stderr = child.stderr.take().expect("stderr was piped");
        let lines = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        let for_reader = Arc::clone(&lines);
        let reader = std::thread::Builder::new()
            .name(format!("{name} stderr"))
            .spawn(move || {
                let (mutex, arrived) = &*for_reader;
                // Ends at EOF, i.e. when the child exits (or closes stderr).
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut kept = lock(mutex);
                    if kept.lines.len() >= MAX_KEPT_LINES {
                        // Keep the first line (the address) and the newest ones.
                        kept.lines.remove(1);
                        kept.dropped += 1;
                    }
                    kept.lines.push(line);
                    arrived.notify_all();
                }
                lock(mutex).closed = true;
                arrived.notify_all();
            })?;
        Ok(Self {
            name,
            child,
            lines,
            reader: Some(reader),
            status: None,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until some line satisfies `pick` (returning its answer), stderr closes, or
    /// `within` passes.
    fn wait_for<T>(
        &self,
        within: Duration,
        mut pick: impl FnMut(usize, &str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        let (mutex, arrived) = &*self.lines;
        let mut kept = lock(mutex);
        let mut seen = 0;
        loop {
            let base = kept.dropped;
            for (i, line) in kept.lines.iter().enumerate().skip(seen) {
                // Line numbers count dropped lines too, so they never go back.
                let number = if i == 0 { 0 } else { i + base };
                if let Some(answer) = pick(number, line) {
                    return Some(answer);
                }
            }
            seen = kept.lines.len();
            let now = Instant::now();
            if kept.closed || now >= deadline {
                return None;
            }
            kept = arrived
                .wait_timeout(kept, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            // Lines may have been dropped from the middle meanwhile: rescan what is new.
            seen = seen.saturating_sub(kept.dropped - base);
        }
    }

    /// The live-session count of the newest `udpft: stats` line.
    fn last_live(&self) -> Option<u64> {
        lock(&self.lines.0)
            .lines
            .iter()
            .rev()
            .find_map(|line| live_sessions(line))
    }

    /// A copy of the lines so far.
    fn lines(&self) -> Vec<String> {
        lock(&self.lines.0).lines.clone()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// SIGTERM to the child's PID, up to `within` for it to exit, then SIGKILL. Returns how
    /// it ended and whether it had to be killed; its stderr reader is joined.
    fn stop(&mut self, within: Duration) -> (Option<ExitStatus>, bool) {
        let mut killed = false;
        if self.exited().is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + within;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.exited().is_none() {
                eprintln!(
                    "udpft-soak: {} (pid {}) still running {:.0} s after SIGTERM; killing it",
                    self.name,
                    self.child.id(),
                    within.as_secs_f64()
                );
                // Child::kill sends SIGKILL to this child's PID only.
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
                killed = true;
            }
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (self.status, killed)
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// The address in `udpft: serving ROOT on ADDR (model ...)`.
fn server_address(line: &str) -> Option<SocketAddr> {
    let head = line.strip_prefix("udpft: serving ")?;
    let head = &head[..head.rfind(" (model ")?];
    head.rsplit_once(" on ")?.1.parse().ok()
}

/// The address in `lossy-proxy: listening on ADDR, forwarding to ...`.
fn proxy_address(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("listening on ")?.1;
    rest.split([',', ' ']).next()?.parse().ok()
}

/// The live-session count of a `udpft: stats live=N ...` line.
fn live_sessions(line: &str) -> Option<u64> {
    line.strip_prefix("udpft: stats live=")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------------------

/// What the clients counted. Shared by all client threads (one lock per transfer).
#[derive(Default)]
struct Tally {
    gets_ok: u64,
    puts_ok: u64,
    bytes: u64,
    /// Failed transfers by reason, with a few full messages each.
    failed: BTreeMap<String, (u64, Vec<String>)>,
    /// Downloads whose bytes differ from the known contents.
    corrupted: Vec<String>,
    /// Uploads that returned Ok but whose library file is absent or different.
    missing: Vec<String>,
    /// Local problems of the soak itself (cannot write a scratch file...).
    harness: Vec<String>,
    /// Times a client was told the server is busy (and retried after a back-off).
    busy_retries: u64,
}

impl Tally {
    fn failed_total(&self) -> u64 {
        self.failed.values().map(|(n, _)| n).sum()
    }

    fn fail(&mut self, reason: String, example: String) {
        let entry = self.failed.entry(reason).or_default();
        entry.0 += 1;
        if entry.1.len() < EXAMPLES_PER_REASON {
            entry.1.push(example);
        }
    }
}

/// A short, countable reason for a client error.
fn reason_of(error: &ClientError) -> String {
    match error {
        ClientError::Local { context, .. } => format!("local: {context}"),
        ClientError::Server { code, .. } => format!("refused by server: {code}"),
        ClientError::NotResponding { .. } => "server not responding".into(),
        ClientError::Transfer { code, .. } => format!("transfer failed: {code}"),
    }
}

/// Everything a client thread needs.
struct Load {
    server: SocketAddr,
    library: PathBuf,
    files: Vec<(String, Content)>,
    size_min: u64,
    size_max: u64,
    timeout: Duration,
    ends: Instant,
    stop: Arc<AtomicBool>,
    tally: Mutex<Tally>,
    started: Instant,
}

impl Load {
    fn running(&self) -> bool {
        Instant::now() < self.ends && !self.stop.load(Ordering::Relaxed)
    }

    fn count_busy(&self, event: &Event<'_>) {
        if matches!(event, Event::Busy { .. }) {
            lock(&self.tally).busy_retries += 1;
        }
    }

    fn at(&self) -> String {
        format!("t={:.1}s", self.started.elapsed().as_secs_f64())
    }
}

/// One client thread's state: its choices and its clients (sockets), one per chunk size.
///
/// The clients are kept for the whole run rather than made per transfer: each socket is a
/// distinct peer for the proxy, whose table of peers is bounded (`--max-clients`) and
/// forgets one only after `--idle-timeout` of silence.
struct Worker {
    rng: Rng,
    clients: [Option<Client>; CHUNKS.len()],
}

impl Worker {
    /// A client asking for a random one of [`CHUNKS`].
    fn client(&mut self, load: &Load) -> Result<&mut Client, ClientError> {
        let pick = self.rng.below(CHUNKS.len() as u64) as usize;
        let slot = &mut self.clients[pick];
        if slot.is_none() {
            *slot = Some(Client::new(
                load.server,
                ClientOptions {
                    config: Config {
                        chunk: CHUNKS[pick],
                        timeout: load.timeout,
                        ..Config::default()
                    },
                    busy_patience: BUSY_PATIENCE,
                    ..ClientOptions::default()
                },
            )?);
        }
        Ok(slot.as_mut().expect("filled above"))
    }
}

/// One client thread: get or put, at random, until the load ends.
fn run_client(load: &Load, index: usize, seed: u64, dir: &Path) {
    let mut me = Worker {
        rng: Rng::new(seed ^ splitmix(index as u64 + 1)),
        clients: Default::default(),
    };
    let download = dir.join("download");
    let upload = dir.join("upload");
    let mut puts = 0u64;
    while load.running() {
        if me.rng.below(2) == 0 {
            let (name, content) = &load.files[me.rng.below(load.files.len() as u64) as usize];
            get_and_check(load, &mut me, name, *content, &download);
        } else {
            let content = Content {
                size: me.rng.size(load.size_min, load.size_max),
                seed: me.rng.next_u64(),
            };
            let name = format!("soak-{index}-{puts}");
            puts += 1;
            put_and_check(load, &mut me, &name, content, &upload, &download);
        }
    }
}

/// Downloads `name` to `dest` and compares it with `content`.
fn get_and_check(load: &Load, me: &mut Worker, name: &str, content: Content, dest: &Path) {
    let result = me.client(load).and_then(|client| {
        client.get(
            name,
            &Destination::File(dest.to_path_buf()),
            false,
            &mut |e| load.count_busy(&e),
        )
    });
    let verdict = match result {
        Err(e) => {
            lock(&load.tally).fail(reason_of(&e), format!("{} get {name}: {e}", load.at()));
            return;
        }
        Ok(_) => content.check(dest),
    };
    let _ = fs::remove_file(dest);
    let mut tally = lock(&load.tally);
    match verdict {
        Ok(Verdict::Same) => {
            tally.gets_ok += 1;
            tally.bytes += content.size;
        }
        Ok(Verdict::Absent) => {
            tally.corrupted.push(format!(
                "{} get {name}: returned Ok but wrote no file",
                load.at()
            ));
        }
        Ok(Verdict::Differs(how)) => {
            tally
                .corrupted
                .push(format!("{} get {name}: {how}", load.at()));
        }
        Err(e) => {
            tally
                .harness
                .push(format!("cannot read the download of {name}: {e}"));
        }
    }
}

/// Uploads fresh contents as `name`, checks the library file, sometimes downloads it back,
/// then removes it from the library (so the disk use stays bounded).
fn put_and_check(
    load: &Load,
    me: &mut Worker,
    name: &str,
    content: Content,
    source: &Path,
    download: &Path,
) {
    if let Err(e) = content.write_to(source) {
        lock(&load.tally)
            .harness
            .push(format!("cannot write {}: {e}", source.display()));
        return;
    }
    let result = me
        .client(load)
        .and_then(|client| client.put(source, name, false, &mut |e| load.count_busy(&e)));
    let _ = fs::remove_file(source);
    if let Err(e) = result {
        lock(&load.tally).fail(reason_of(&e), format!("{} put {name}: {e}", load.at()));
        return;
    }
    let in_library = load.library.join(name);
    let verdict = content.check(&in_library);
    {
        let mut tally = lock(&load.tally);
        match verdict {
            Ok(Verdict::Same) => {
                tally.puts_ok += 1;
                tally.bytes += content.size;
            }
            Ok(Verdict::Absent) => {
                tally.missing.push(format!(
                    "{} put {name}: returned Ok but the library has no such file",
                    load.at()
                ));
                return;
            }
            Ok(Verdict::Differs(how)) => {
                tally.missing.push(format!(
                    "{} put {name}: library file differs: {how}",
                    load.at()
                ));
                return;
            }
            Err(e) => {
                tally
                    .harness
                    .push(format!("cannot read {}: {e}", in_library.display()));
                return;
            }
        }
    }
    // Half the uploads also go back through the server.
    if me.rng.below(2) == 0 && load.running() {
        get_and_check(load, me, name, content, download);
    }
    if let Err(e) = fs::remove_file(&in_library) {
        lock(&load.tally)
            .harness
            .push(format!("cannot remove {}: {e}", in_library.display()));
    }
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

/// One pass/fail criterion of the run.
struct Criterion {
    passed: bool,
    text: String,
}

fn criterion(passed: bool, text: String) -> Criterion {
    Criterion { passed, text }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("udpft-soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_args(cli: &Cli) -> Result<(Duration, Duration, Duration), String> {
    let seconds = Duration::try_from_secs_f64(cli.seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--seconds must be a positive number")?;
    let timeout = Duration::try_from_secs_f64(cli.client_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--client-timeout must be a positive number")?;
    let warm_up = match cli.warm_up {
        None => (seconds / 10).max(MIN_WARM_UP).min(seconds),
        Some(secs) => Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| *d <= seconds)
            .ok_or("--warm-up must be a number of seconds within --seconds")?,
    };
    if cli.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if cli.files == 0 {
        return Err("--files must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&cli.loss) {
        return Err("--loss must be within 0..=1".into());
    }
    if cli.size_min > cli.size_max {
        return Err("--size-min is larger than --size-max".into());
    }
    Ok((seconds, timeout, warm_up))
}

#[allow(clippy::too_many_lines)] // One straight sequence of stages, each commented.
fn run(cli: &Cli) -> Result<bool, String> {
    let (seconds, client_timeout, warm_up) = check_args(cli)?;
    let seed = cli.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let udpft_bin = children::locate_bin("udpft", None).map_err(|e| e.to_string())?;
    let proxy_bin = if cli.loss > 0.0 {
        Some(children::locate_bin("lossy-proxy", None).map_err(|e| e.to_string())?)
    } else {
        None
    };

    // Ctrl-C or SIGTERM ends the load early; the clean-up still runs.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }

    // The scratch folder is declared first so that it is removed last, after the children.
    let setting_up = Instant::now();
    let scratch = ScratchDir::new().map_err(|e| format!("cannot create a temp folder: {e}"))?;
    let library = scratch.path.join("library");
    fs::create_dir(&library).map_err(|e| format!("cannot create the library: {e}"))?;
    let mut rng = Rng::new(seed);
    let mut files = Vec::with_capacity(cli.files);
    let mut library_bytes = 0;
    for i in 0..cli.files {
        let content = Content {
            size: rng.size(cli.size_min, cli.size_max),
            seed: rng.next_u64(),
        };
        let name = format!("lib-{i:03}.bin");
        content
            .write_to(&library.join(&name))
            .map_err(|e| format!("cannot write the library file {name}: {e}"))?;
        library_bytes += content.size;
        files.push((name, content));
    }
    let client_dirs: Vec<PathBuf> = (0..cli.clients)
        .map(|i| scratch.path.join(format!("client-{i:03}")))
        .collect();
    for dir in &client_dirs {
        fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }

    // The server.
    let mut command = Command::new(&udpft_bin);
    command
        .arg("serve")
        .arg("--root")
        .arg(&library)
        .args(["--bind", "127.0.0.1:0", "--model", &cli.model])
        .args(["--stats-every", "1"]);
    let mut server = ChildProc::spawn("udpft server", command).map_err(|e| e.to_string())?;
    let server_addr = server
        .wait_for(START_WITHIN, |_, line| server_address(line))
        .ok_or_else(|| {
            format!(
                "the server printed no address within {:.0} s; its stderr:\n{}",
                START_WITHIN.as_secs_f64(),
                server.lines().join("\n")
            )
        })?;

    // The proxy, if there is loss.
    let proxy_lifetime = seconds + Duration::from_secs(60);
    let mut proxy = match &proxy_bin {
        None => None,
        Some(bin) => {
            let mut command = Command::new(bin);
            command
                .args(["--listen", "127.0.0.1:0", "--upstream"])
                .arg(server_addr.to_string())
                .arg("--loss")
                .arg(cli.loss.to_string())
                .args(["--dup", "0.01", "--reorder", "0.01", "--corrupt", "0.005"])
                .arg("--seed")
                .arg(seed.to_string())
                .arg("--duration")
                .arg(format!("{:.0}", proxy_lifetime.as_secs_f64()));
            Some(ChildProc::spawn("lossy-proxy", command).map_err(|e| e.to_string())?)
        }
    };
    let target = match &proxy {
        None => server_addr,
        Some(proxy) => proxy
            .wait_for(START_WITHIN, |_, line| proxy_address(line))
            .ok_or_else(|| {
                format!(
                    "lossy-proxy printed no address within {:.0} s; its stderr:\n{}",
                    START_WITHIN.as_secs_f64(),
                    proxy.lines().join("\n")
                )
            })?,
    };

    let title = format!(
        "udpft soak: {:.0} s, {} clients, loss {}, model {}, seed {seed}",
        seconds.as_secs_f64(),
        cli.clients,
        cli.loss,
        cli.model
    );
    eprintln!(
        "udpft-soak: {title}; server pid {} on {server_addr}{}; library {} files, {}",
        server.pid(),
        match &proxy {
            Some(p) => format!(", lossy-proxy pid {} on {target}", p.pid()),
            None => String::new(),
        },
        files.len(),
        human(library_bytes as f64)
    );

    // The load.
    let started = Instant::now();
    let load = Arc::new(Load {
        server: target,
        library: library.clone(),
        files,
        size_min: cli.size_min,
        size_max: cli.size_max,
        timeout: client_timeout,
        ends: started + seconds,
        stop: Arc::clone(&stop),
        tally: Mutex::new(Tally::default()),
        started,
    });
    let setup_time = started.duration_since(setting_up);
    let mut workers = Vec::with_capacity(cli.clients);
    for (index, dir) in client_dirs.iter().enumerate() {
        let load = Arc::clone(&load);
        let dir = dir.clone();
        let worker = std::thread::Builder::new()
            .name(format!("client {index}"))
            .spawn(move || run_client(&load, index, seed, &dir))
            .map_err(|e| format!("cannot start client thread {index}: {e}"))?;
        workers.push(worker);
    }

    // Watch the run: RSS every tick, the warm-up sample, a progress line now and then.
    let warm_up_at = started + warm_up;
    let mut warm_rss: Option<(u64, Duration)> = None;
    let mut peak_rss = 0u64;
    // (seconds into the run, server RSS, live sessions of its latest stats line)
    let mut timeline: Vec<(f64, Option<u64>, Option<u64>)> = Vec::new();
    let mut server_died = None;
    let mut tick = 0u32;
    while load.running() {
        let next = (started + TICK * (tick + 1)).min(load.ends);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        tick += 1;
        if let Some(status) = server.exited() {
            server_died = Some(status);
            eprintln!("udpft-soak: the server exited during the run ({status}); stopping");
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let rss = procfs::memory(server.pid()).ok().map(|m| m.rss_kib * 1024);
        peak_rss = peak_rss.max(rss.unwrap_or(0));
        if tick.is_multiple_of(PROGRESS_EVERY_TICKS) {
            timeline.push((started.elapsed().as_secs_f64(), rss, server.last_live()));
        }
        if warm_rss.is_none() && Instant::now() >= warm_up_at {
            warm_rss = rss.map(|r| (r, started.elapsed()));
        }
        if tick.is_multiple_of(PROGRESS_EVERY_TICKS) {
            let tally = lock(&load.tally);
            eprintln!(
                "udpft-soak: t={:>3.0}s ok={} failed={} corrupted={} missing={} moved={} server rss={}",
                started.elapsed().as_secs_f64(),
                tally.gets_ok + tally.puts_ok,
                tally.failed_total(),
                tally.corrupted.len(),
                tally.missing.len(),
                human(tally.bytes as f64),
                rss.map_or("?".into(), |r| human(r as f64)),
            );
        }
    }
    let load_time = started.elapsed();

    // Let the transfers in flight finish; each is bounded by its size and the client
    // timeout.
    eprintln!("udpft-soak: load over; waiting for the transfers in flight");
    for worker in workers {
        if worker.join().is_err() {
            lock(&load.tally)
                .harness
                .push("a client thread panicked".into());
        }
    }
    let stopped_load = Instant::now();
    let drain_from = server
        .lines()
        .len()
        .saturating_add(lock(&server.lines.0).dropped);

    // Sessions: wait for a stats line, printed after the load stopped, that says live=0.
    let mut last_live = None;
    let drained = server.wait_for(DRAIN_WITHIN, |number, line| {
        let live = live_sessions(line)?;
        if number < drain_from {
            return None;
        }
        last_live = Some(live);
        (live == 0).then(|| stopped_load.elapsed())
    });
    let end_rss = procfs::memory(server.pid()).ok().map(|m| m.rss_kib * 1024);
    let leftover_temps = fs::read_dir(&library)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
                .count()
        })
        .unwrap_or(0);

    // Stop the children and collect their last words.
    let stopping = Instant::now();
    let (server_status, server_killed) = server.stop(SERVER_STOP_WITHIN);
    let server_stop_time = stopping.elapsed();
    let server_lines = server.lines();
    let server_final = server_lines
        .iter()
        .rev()
        .find(|l| l.starts_with("udpft: stopped"))
        .cloned();
    let server_errors: Vec<String> = server_lines
        .iter()
        .filter(|l| !l.starts_with("udpft: stats ") && !l.starts_with("udpft: serving "))
        .filter(|l| !l.starts_with("udpft: stopped"))
        .cloned()
        .collect();
    let proxy_report = proxy.as_mut().map(|proxy| {
        let (status, killed) = proxy.stop(PROXY_STOP_WITHIN);
        let lines: Vec<String> = proxy
            .lines()
            .into_iter()
            .filter(|l| !l.contains("listening on"))
            .collect();
        (status, killed, lines)
    });

    // The summary.
    let tally = lock(&load.tally);
    let ok = tally.gets_ok + tally.puts_ok;
    let failed = tally.failed_total();
    let mut out = String::new();
    let _ = writeln!(out, "# {title}");
    let _ = writeln!(
        out,
        "- sizes {}..{} (log-uniform), library {} files ({}), chunks {:?}, client timeout {:.0} s",
        human(cli.size_min as f64),
        human(cli.size_max as f64),
        load.files.len(),
        human(library_bytes as f64),
        CHUNKS,
        client_timeout.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- set-up (library, server, proxy) {:.1} s; load ran {:.1} s, transfers in flight finished {:.1} s later",
        setup_time.as_secs_f64(),
        load_time.as_secs_f64(),
        stopped_load
            .duration_since(started + load_time)
            .as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- transfers ok: {ok} (gets {}, puts {}), {} verified, {}/s",
        tally.gets_ok,
        tally.puts_ok,
        human(tally.bytes as f64),
        human(tally.bytes as f64 / load_time.as_secs_f64().max(1e-9))
    );
    let _ = writeln!(
        out,
        "- busy answers (retried after a back-off, not failures): {}",
        tally.busy_retries
    );
    let _ = writeln!(out, "- failed: {failed}");
    for (reason, (n, examples)) in &tally.failed {
        let _ = writeln!(out, "  - {n} × {reason}");
        for example in examples {
            let _ = writeln!(out, "    - {example}");
        }
    }
    let _ = writeln!(out, "- corrupted: {}", tally.corrupted.len());
    for what in tally.corrupted.iter().take(10) {
        let _ = writeln!(out, "  - {what}");
    }
    let _ = writeln!(out, "- missing: {}", tally.missing.len());
    for what in tally.missing.iter().take(10) {
        let _ = writeln!(out, "  - {what}");
    }
    if !tally.harness.is_empty() {
        let _ = writeln!(out, "- soak's own errors: {}", tally.harness.len());
        for what in tally.harness.iter().take(10) {
            let _ = writeln!(out, "  - {what}");
        }
    }
    let rss_ratio = match (warm_rss, end_rss) {
        (Some((warm, _)), Some(end)) if warm > 0 => Some(end as f64 / warm as f64),
        _ => None,
    };
    let _ = writeln!(
        out,
        "- server RSS: warm-up {}, end {}, peak {}, ratio {}",
        warm_rss.map_or("not sampled".into(), |(r, at)| format!(
            "{} (at {:.0} s)",
            human(r as f64),
            at.as_secs_f64()
        )),
        end_rss.map_or("not sampled".into(), |r| human(r as f64)),
        human(peak_rss.max(end_rss.unwrap_or(0)) as f64),
        rss_ratio.map_or("n/a".into(), |r| format!("{r:.4}"))
    );
    let peak_live = server_lines.iter().filter_map(|l| live_sessions(l)).max();
    let _ = writeln!(
        out,
        "- server over time (t: RSS, live sessions): {}; peak live sessions {}",
        timeline
            .iter()
            .map(|(t, rss, live)| format!(
                "{t:.0}s: {}, {}",
                rss.map_or("?".into(), |r| human(r as f64)),
                live.map_or("?".into(), |l| l.to_string())
            ))
            .collect::<Vec<_>>()
            .join(" | "),
        peak_live.map_or("?".into(), |l| l.to_string())
    );
    let _ = writeln!(
        out,
        "- sessions after the load: {}",
        match (drained, last_live) {
            (Some(after), _) => format!(
                "live=0 (reported {:.1} s after the load)",
                after.as_secs_f64()
            ),
            (None, Some(live)) => format!(
                "live={live} still after {:.0} s",
                DRAIN_WITHIN.as_secs_f64()
            ),
            (None, None) => "no stats line from the server (model without --stats-every?)".into(),
        }
    );
    let _ = writeln!(
        out,
        "- upload temp files left in the library: {leftover_temps}"
    );
    let _ = writeln!(
        out,
        "- server: {}, {:.1} s after SIGTERM{}; {}",
        server_status.map_or("unknown exit".into(), |s| s.to_string()),
        server_stop_time.as_secs_f64(),
        if server_killed {
            " (KILLED after the deadline)"
        } else {
            ""
        },
        server_final
            .as_deref()
            .unwrap_or("no `udpft: stopped` line")
    );
    if let Some(status) = server_died {
        let _ = writeln!(out, "- the server exited DURING the run: {status}");
    }
    for line in server_errors.iter().take(10) {
        let _ = writeln!(out, "  - server said: {line}");
    }
    match &proxy_report {
        None => {
            let _ = writeln!(out, "- proxy: none (--loss 0)");
        }
        Some((status, killed, lines)) => {
            let _ = writeln!(
                out,
                "- proxy (--loss {} --dup 0.01 --reorder 0.01 --corrupt 0.005): {}{}",
                cli.loss,
                status.map_or("unknown exit".into(), |s| s.to_string()),
                if *killed {
                    " (KILLED after the deadline)"
                } else {
                    ""
                }
            );
            for line in lines {
                let _ = writeln!(out, "  - {line}");
            }
        }
    }

    let criteria = [
        criterion(
            tally.corrupted.is_empty(),
            format!("corrupted == 0 (got {})", tally.corrupted.len()),
        ),
        criterion(
            tally.missing.is_empty(),
            format!("missing == 0 (got {})", tally.missing.len()),
        ),
        criterion(failed == 0, format!("failed == 0 (got {failed})")),
        criterion(
            drained.is_some(),
            format!(
                "live sessions == 0 within {:.0} s after the load (last seen: {})",
                DRAIN_WITHIN.as_secs_f64(),
                last_live.map_or("none reported".into(), |l| l.to_string())
            ),
        ),
        criterion(
            rss_ratio.is_some_and(|r| r <= RSS_RATIO_LIMIT),
            format!(
                "end RSS / warm-up RSS <= {RSS_RATIO_LIMIT:.2} (got {})",
                rss_ratio.map_or("n/a".into(), |r| format!("{r:.4}"))
            ),
        ),
        criterion(
            ok > 0,
            format!("at least one transfer completed (got {ok})"),
        ),
        criterion(
            server_died.is_none() && server_status.is_some_and(|s| s.success()) && !server_killed,
            "the server ran throughout and exited cleanly on SIGTERM".into(),
        ),
        criterion(
            leftover_temps == 0,
            format!("no upload temp files left in the library (got {leftover_temps})"),
        ),
        criterion(
            tally.harness.is_empty(),
            format!("no errors of the soak itself (got {})", tally.harness.len()),
        ),
    ];
    let passed = criteria.iter().all(|c| c.passed);
    let _ = writeln!(
        out,
        "\n## Verdict: {}",
        if passed { "PASS" } else { "FAIL" }
    );
    for c in &criteria {
        let _ = writeln!(
            out,
            "- [{}] {}{}",
            if c.passed { "x" } else { " " },
            c.text,
            if c.passed { "" } else { "  <-- FAILED" }
        );
    }
    drop(tally);
    print!("{out}");
    if let Some(path) = &cli.out {
        fs::write(path, &out).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn addresses_are_read_from_the_first_lines() {
        assert_eq!(
            server_address(
                "udpft: serving /tmp/x on y/library on 127.0.0.1:4242 (model table, Ctrl-C to stop)"
            ),
            Some("127.0.0.1:4242".parse().unwrap())
        );
        assert_eq!(
            proxy_address("lossy-proxy: listening on 127.0.0.1:40123, forwarding to 127.0.0.1:1"),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(live_sessions("udpft: stats live=17 received=3"), Some(17));
        assert_eq!(live_sessions("udpft: stopped; received=3"), None);
    }

    #[test]
    fn contents_are_checked_byte_for_byte() {
        let dir = ScratchDir::new().unwrap();
        let path = dir.path.join("f");
        let content = Content {
            size: 3 * BLOCK as u64 + 5,
            seed: 7,
        };
        content.write_to(&path).unwrap();
        assert_eq!(content.check(&path).unwrap(), Verdict::Same);
        let mut bytes = fs::read(&path).unwrap();
        bytes[BLOCK + 3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(content.check(&path).unwrap(), Verdict::Differs(_)));
        fs::remove_file(&path).unwrap();
        assert_eq!(content.check(&path).unwrap(), Verdict::Absent);
    }

    #[test]
    fn log_uniform_sizes_stay_in_range() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let size = rng.size(4096, 2 << 20);
            assert!((4096..=2 << 20).contains(&size));
        }
        assert_eq!(rng.size(10, 10), 10);
    }
}
