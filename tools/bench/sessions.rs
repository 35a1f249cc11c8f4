//! `udpft-bench sessions`: what an open session costs a server in memory. A real
//! `udpft serve` child is measured idle, then made to hold N open download sessions at once,
//! and measured again: resident memory (`VmRSS`, `VmHWM`) with N sessions and the cost per
//! session over the idle server.
//!
//! The sessions are opened with raw UDP sockets, not the client library: each socket sends
//! valid Get requests under several tokens, answers every Accept with Ack 0 (which proves
//! the client's address, so the server may send at full rate) and waits until Data 1 shows
//! the session is live; then it never acks again. Each session then sits retransmitting
//! Data 1 until the server's `--timeout` (30 s here) gives up on it — long enough to measure.
//!
//! The server allows at most 256 sessions per IP address, so the sockets are spread over
//! several loopback addresses (127.0.0.2, 127.0.0.3…; all of 127/8 is loopback on Linux).
//!
//! `--window 1,64` measures each window in turn in the same run (a fresh server each): a
//! windowed session that is never acknowledged past Ack 0 must hold only the buffers of
//! what it sent, not one per chunk of its window (issue 10 §3: within 2× of window 1).

use crate::children::{locate_bin, start_server, ServerSpec};
use crate::download::secs;
use crate::procfs::{self, Memory};
use crate::results::{Cell, Table};
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use udpft::proto::wire::{Message, DEFAULT_CHUNK, MAX_DATAGRAM};
use udpft::server::Model;

/// How often an unanswered Get or Ack 0 is sent again.
const RESEND_EVERY: Duration = Duration::from_millis(200);

/// How long the idle server is left alone before it is measured.
const IDLE_SETTLE: Duration = Duration::from_millis(300);

/// Size of the file every session downloads: far more than the one chunk each receives.
const FILE_SIZE: u64 = 1 << 20;

/// The server's target for 1000 open sessions.
const TARGET_MIB: f64 = 64.0;

/// Arguments of `sessions`.
#[derive(Args, Debug)]
pub struct SessionsArgs {
    /// Sessions to hold open at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Windows each session asks for, measured in turn (comma-separated; 1: stop-and-wait).
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub window: Vec<u16>,
    /// Server model (the fork model's sessions live in child processes, not counted).
    #[arg(long, default_value = "table")]
    pub model: Model,
    /// Worker loops of the table model.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Request tokens (sessions) per client socket.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub per_socket: u32,
    /// Sessions per loopback source address (the server allows 256 per address).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub per_address: u32,
    /// The server's `--timeout`: how long an un-acked session stays open.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub server_timeout: f64,
    /// How long opening the sessions may take.
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    pub open_within: f64,
    /// Pause between the last session opening and the measurement.
    #[arg(long, default_value_t = 1.5, value_name = "SECS")]
    pub settle: f64,
    /// Folder for the CSV, JSON and Markdown files (created if missing).
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// File name stem of the outputs.
    #[arg(long, default_value = "sessions")]
    pub name: String,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Extra `udpft serve` arguments.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

/// Where one session of ours stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Get sent at this time, no Accept yet.
    Requested(Instant),
    /// Accepted as this session (windowed or not); Ack 0 sent at this time, no Data yet.
    Accepted(u32, bool, Instant),
    /// Data 1 arrived: the session is live and validated.
    Open,
    /// The server answered with an error (busy, too many sessions...).
    Refused,
}

/// One raw client socket and the sessions it holds.
struct Holder {
    socket: UdpSocket,
    /// Token of each of its sessions, and its state.
    sessions: Vec<(u32, State)>,
    by_token: HashMap<u32, usize>,
    by_session: HashMap<u32, usize>,
}

/// The result of opening the sessions.
#[derive(Debug, Default)]
struct Opened {
    open: u32,
    refused: u32,
    refusals: Vec<String>,
    took: Duration,
}

/// Sessions held open by raw sockets.
struct Crowd {
    holders: Vec<Holder>,
    server: SocketAddr,
    name: Vec<u8>,
    /// The window every Get asks for.
    window: u16,
    buf: Vec<u8>,
}

impl Crowd {
    fn new(
        server: SocketAddr,
        name: &str,
        window: u16,
        count: u32,
        per_socket: u32,
        per_address: u32,
    ) -> io::Result<Self> {
        let mut holders = Vec::new();
        // Tokens unique across runs of this process and across sockets.
        let base = (std::process::id() % 1000) * 100_000;
        let mut placed = 0;
        while placed < count {
            let address = 2 + placed / per_address;
            let ip = Ipv4Addr::new(127, 0, (address >> 8) as u8, (address & 0xff) as u8);
            let socket = UdpSocket::bind(SocketAddrV4::new(ip, 0)).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot bind a socket on {ip}: {e}"))
            })?;
            socket.set_nonblocking(true)?;
            // A socket never straddles two addresses, so each address keeps to its share.
            let room = per_address - placed % per_address;
            let n = per_socket.min(count - placed).min(room);
            let sessions: Vec<(u32, State)> = (0..n)
                .map(|j| (base + placed + j + 1, State::Requested(Instant::now())))
                .collect();
            let by_token = sessions
                .iter()
                .enumerate()
                .map(|(i, (t, _))| (*t, i))
                .collect();
            holders.push(Holder {
                socket,
                sessions,
                by_token,
                by_session: HashMap::new(),
            });
            placed += n;
        }
        Ok(Self {
            holders,
            server,
            name: name.as_bytes().to_vec(),
            window,
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    fn send_get(&mut self, h: usize, token: u32) {
        let len = Message::Get {
            token,
            chunk: DEFAULT_CHUNK,
            window: self.window,
            offset: 0,
            name: &self.name,
        }
        .encode(&mut self.buf);
        let _ = self.holders[h]
            .socket
            .send_to(&self.buf[..len], self.server);
    }

    fn send_ack0(&mut self, h: usize, session: u32, windowed: bool) {
        let ack = if windowed {
            Message::Sack {
                session,
                seq: 0,
                bitmap: &[],
            }
        } else {
            Message::Ack { session, seq: 0 }
        };
        let len = ack.encode(&mut self.buf);
        let _ = self.holders[h]
            .socket
            .send_to(&self.buf[..len], self.server);
    }

    /// Reads everything waiting on every socket and moves the sessions along; returns how
    /// many datagrams were read.
    fn drain(&mut self, refusals: &mut Vec<String>) -> usize {
        let mut inbuf = vec![0u8; MAX_DATAGRAM];
        let mut read = 0;
        for h in 0..self.holders.len() {
            // At most a socket buffer's worth per turn, so one socket cannot starve the rest.
            for _ in 0..4096 {
                let len = match self.holders[h].socket.recv_from(&mut inbuf) {
                    Ok((len, _)) => len,
                    Err(_) => break,
                };
                read += 1;
                let Ok(message) = Message::decode(&inbuf[..len]) else {
                    continue;
                };
                let now = Instant::now();
                match message {
                    Message::Accept {
                        session,
                        token,
                        window,
                        ..
                    } => {
                        let Some(&i) = self.holders[h].by_token.get(&token) else {
                            continue;
                        };
                        match self.holders[h].sessions[i].1 {
                            State::Requested(_) | State::Accepted(..) => {
                                let windowed = window > 1;
                                self.holders[h].sessions[i].1 =
                                    State::Accepted(session, windowed, now);
                                self.holders[h].by_session.insert(session, i);
                                self.send_ack0(h, session, windowed);
                            }
                            State::Open | State::Refused => {}
                        }
                    }
                    Message::Data { session, .. } => {
                        if let Some(&i) = self.holders[h].by_session.get(&session) {
                            if let State::Accepted(..) = self.holders[h].sessions[i].1 {
                                self.holders[h].sessions[i].1 = State::Open;
                            }
                        }
                    }
                    Message::Error {
                        session,
                        code,
                        text,
                    } => {
                        // Before an Accept, an error carries the request token.
                        let index = self.holders[h]
                            .by_token
                            .get(&session)
                            .or_else(|| self.holders[h].by_session.get(&session))
                            .copied();
                        if let Some(i) = index {
                            if self.holders[h].sessions[i].1 != State::Open {
                                self.holders[h].sessions[i].1 = State::Refused;
                                if refusals.len() < 3 {
                                    refusals
                                        .push(format!("{code}: {}", String::from_utf8_lossy(text)));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        read
    }

    /// Sends every Get, then keeps answering and resending until every session is open or
    /// refused, or `within` passes.
    fn open_all(&mut self, within: Duration) -> Opened {
        let started = Instant::now();
        let mut refusals = Vec::new();
        for h in 0..self.holders.len() {
            for i in 0..self.holders[h].sessions.len() {
                let token = self.holders[h].sessions[i].0;
                self.holders[h].sessions[i].1 = State::Requested(Instant::now());
                self.send_get(h, token);
            }
            // Keep up with the answers as they come, so no socket buffer overflows.
            self.drain(&mut refusals);
        }
        while started.elapsed() < within {
            let read = self.drain(&mut refusals);
            let now = Instant::now();
            let mut pending = 0;
            for h in 0..self.holders.len() {
                for i in 0..self.holders[h].sessions.len() {
                    let (token, state) = self.holders[h].sessions[i];
                    match state {
                        State::Requested(at) => {
                            pending += 1;
                            if now.duration_since(at) >= RESEND_EVERY {
                                self.holders[h].sessions[i].1 = State::Requested(now);
                                self.send_get(h, token);
                            }
                        }
                        State::Accepted(session, windowed, at) => {
                            pending += 1;
                            if now.duration_since(at) >= RESEND_EVERY {
                                self.holders[h].sessions[i].1 =
                                    State::Accepted(session, windowed, now);
                                self.send_ack0(h, session, windowed);
                            }
                        }
                        State::Open | State::Refused => {}
                    }
                }
            }
            if pending == 0 {
                break;
            }
            if read == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let count = |want: fn(&State) -> bool| {
            self.holders
                .iter()
                .flat_map(|h| h.sessions.iter())
                .filter(|(_, s)| want(s))
                .count() as u32
        };
        Opened {
            open: count(|s| *s == State::Open),
            refused: count(|s| *s == State::Refused),
            refusals,
            took: started.elapsed(),
        }
    }

    /// Keeps the sockets drained (answers nothing) for `pause`.
    fn idle(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut ignored = Vec::new();
        while Instant::now() < until {
            if self.drain(&mut ignored) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn addresses(&self) -> usize {
        let mut ips: Vec<_> = self
            .holders
            .iter()
            .filter_map(|h| h.socket.local_addr().ok().map(|a| a.ip()))
            .collect();
        ips.sort();
        ips.dedup();
        ips.len()
    }
}

/// The `live=N` of the server's last statistics line.
fn last_live_count(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.split_once("udpft: stats live=")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What one server held, measured.
struct Measured {
    window: u16,
    idle: Memory,
    loaded: Memory,
    cpu: f64,
    live: Option<u64>,
    opened: Opened,
    sockets: usize,
    addresses: usize,
    status: std::process::ExitStatus,
}

impl Measured {
    fn per_session_kib(&self) -> f64 {
        if self.opened.open > 0 {
            (self.loaded.rss_kib as f64 - self.idle.rss_kib as f64) / f64::from(self.opened.open)
        } else {
            f64::NAN
        }
    }
}

/// Starts a server, opens the sessions at `window` and measures it.
fn measure(
    args: &SessionsArgs,
    window: u16,
    bin: &std::path::Path,
    library: &TestLibrary,
    scratch: &Scratch,
) -> io::Result<Measured> {
    let open_within = secs(args.open_within, "--open-within")?;
    let settle = secs(args.settle, "--settle")?;
    let mut extra_args = vec![
        "--model".to_owned(),
        args.model.name().to_owned(),
        "--timeout".to_owned(),
        args.server_timeout.to_string(),
        "--grace".to_owned(),
        "1".to_owned(),
        "--stats-every".to_owned(),
        "1".to_owned(),
        "--max-sessions".to_owned(),
        (args.count as usize + 64).max(4096).to_string(),
        "--max-window".to_owned(),
        window.to_string(),
    ];
    if args.workers > 1 {
        extra_args.extend(["--workers".to_owned(), args.workers.to_string()]);
    }
    extra_args.extend(args.server_args.iter().cloned());
    let mut server = start_server(
        &ServerSpec {
            bin: bin.to_path_buf(),
            root: library.root.clone(),
            extra_args,
        },
        &scratch.path().join(format!("server-w{window}.log")),
    )?;
    let pid = server.guard.pid();
    std::thread::sleep(IDLE_SETTLE);
    let idle: Memory = procfs::memory(pid)?;
    eprintln!(
        "udpft-bench: {} server pid {pid} on {}: idle RSS {:.1} MiB; opening {} sessions at window {window}",
        args.model,
        server.addr,
        mib(idle.rss_kib),
        args.count
    );
    let mut crowd = Crowd::new(
        server.addr,
        &library.name,
        window,
        args.count,
        args.per_socket,
        args.per_address,
    )?;
    let opened = crowd.open_all(open_within);
    crowd.idle(settle);
    let loaded: Memory = procfs::memory(pid)?;
    let cpu = procfs::cpu_time(pid).unwrap_or_default().total();
    let live = last_live_count(&server.guard.log_text());
    let alive = server.guard.exited().is_none();
    eprintln!(
        "udpft-bench: window {window}: {} open, {} refused in {:.2} s; RSS {:.1} MiB (peak {:.1} MiB)",
        opened.open,
        opened.refused,
        opened.took.as_secs_f64(),
        mib(loaded.rss_kib),
        mib(loaded.peak_kib)
    );
    let sockets = crowd.holders.len();
    let addresses = crowd.addresses();
    drop(crowd);
    let status = server.guard.stop()?;
    if !alive {
        return Err(io::Error::other(format!(
            "the server exited while holding the sessions ({status}):\n{}",
            server.guard.log_tail()
        )));
    }
    Ok(Measured {
        window,
        idle,
        loaded,
        cpu,
        live,
        opened,
        sockets,
        addresses,
        status,
    })
}

/// Runs the measurement, prints it and writes its files.
///
/// # Errors
/// If the server cannot be started or measured, sockets cannot be bound, or a file cannot
/// be written.
pub fn run(args: &SessionsArgs) -> io::Result<()> {
    let bin = locate_bin("udpft", args.server_bin.as_deref())?;
    let server_timeout = secs(args.server_timeout, "--server-timeout")?;
    let open_within = secs(args.open_within, "--open-within")?;
    let settle = secs(args.settle, "--settle")?;
    if open_within + settle + Duration::from_secs(2) >= server_timeout {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--server-timeout must exceed --open-within + --settle + 2 s, or sessions close before the measurement",
        ));
    }
    std::fs::create_dir_all(&args.out)?;
    let load_before = procfs::load_text();
    let scratch = Scratch::create()?;
    let library = TestLibrary::create(scratch.path(), FILE_SIZE, 1)?;
    let mut runs = Vec::new();
    for &window in &args.window {
        runs.push(measure(args, window, &bin, &library, &scratch)?);
    }

    let mut table = Table::new(&[
        "model",
        "window",
        "sessions asked",
        "open",
        "refused",
        "server live",
        "idle RSS MiB",
        "RSS MiB",
        "peak RSS MiB",
        "per session KiB",
        "RSS / first window",
        "server CPU s",
        "open time s",
    ]);
    let label = if args.workers > 1 {
        format!("{}-w{}", args.model, args.workers)
    } else {
        args.model.to_string()
    };
    let first_rss = runs.first().map_or(f64::NAN, |m| mib(m.loaded.rss_kib));
    for m in &runs {
        table.push(vec![
            Cell::text(label.clone()),
            Cell::int(u64::from(m.window)),
            Cell::int(u64::from(args.count)),
            Cell::int(u64::from(m.opened.open)),
            Cell::int(u64::from(m.opened.refused)),
            m.live.map_or_else(Cell::missing, Cell::int),
            Cell::num(mib(m.idle.rss_kib), 1),
            Cell::num(mib(m.loaded.rss_kib), 1),
            Cell::num(mib(m.loaded.peak_kib), 1),
            Cell::num(m.per_session_kib(), 1),
            Cell::num(mib(m.loaded.rss_kib) / first_rss, 2),
            Cell::num(m.cpu, 2),
            Cell::num(m.opened.took.as_secs_f64(), 2),
        ]);
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Memory of {} open sessions ({} model)\n",
        args.count, args.model
    );
    md.push_str(&table.to_markdown());
    let (sockets, addresses) = runs.first().map_or((0, 0), |m| (m.sockets, m.addresses));
    let _ = writeln!(
        md,
        "\nEach session is a download of a {} KiB file, validated (Ack 0) and then left \
         un-acked, so the server holds it retransmitting what it sent until its --timeout of \
         {} s. Each window is asked by every Get and granted by a fresh server (--max-window \
         set to it), one after the other in this run. {} raw sockets on {} loopback \
         addresses, up to {} sessions each. RSS = VmRSS of the server process {:.1} s after \
         the last session opened; idle RSS was read before any session; per session = (RSS − \
         idle RSS) / open sessions; RSS / first window compares each row with the first. \
         server live = the live count of the server's own last statistics line. Load average \
         before: {load_before}; after: {}.",
        FILE_SIZE >> 10,
        args.server_timeout,
        sockets,
        addresses,
        args.per_socket,
        args.settle,
        procfs::load_text()
    );
    if args.model == Model::Fork {
        md.push_str(
            "\nNote: the fork model serves each session in a child process; their memory is \
             not in the parent's RSS shown here.\n",
        );
    }
    for m in &runs {
        let rss = mib(m.loaded.rss_kib);
        let verdict = if rss < TARGET_MIB { "met" } else { "NOT met" };
        let _ = writeln!(
            md,
            "\nTarget: RSS with {} open sessions at window {} below {TARGET_MIB:.0} MiB: {verdict} ({rss:.1} MiB).",
            m.opened.open, m.window,
        );
        if m.window != runs[0].window {
            let ratio = rss / first_rss;
            let verdict = if ratio <= 2.0 { "met" } else { "NOT met" };
            let _ = writeln!(
                md,
                "Target: window {} within 2× of window {}'s RSS: {verdict} ({ratio:.2}×).",
                m.window, runs[0].window
            );
        }
        for r in &m.opened.refusals {
            let _ = writeln!(md, "\nA refusal: {}", udpft::client::sanitize(r));
        }
        if !m.status.success() {
            let _ = writeln!(
                md,
                "\nNote: the window-{} server did not exit cleanly ({}).",
                m.window, m.status
            );
        }
    }
    print!("{md}");
    let stem = args.out.join(&args.name);
    table.write_files(
        Some(&stem.with_extension("csv")),
        Some(&stem.with_extension("json")),
    )?;
    std::fs::write(stem.with_extension("md"), &md)?;
    if let Some(m) = runs.iter().find(|m| m.opened.open < args.count) {
        return Err(io::Error::other(format!(
            "only {} of {} sessions opened at window {}",
            m.opened.open, args.count, m.window
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_count_is_read_from_the_last_statistics_line() {
        let log =
            "udpft: serving x\nudpft: stats live=3 received=1\nudpft: stats live=999 received=9\n";
        assert_eq!(last_live_count(log), Some(999));
        assert_eq!(last_live_count("udpft: serving x\n"), None);
    }

    #[test]
    fn sockets_keep_each_address_within_its_share() {
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let crowd = Crowd::new(server, "f", 1, 450, 20, 200).unwrap();
        let total: usize = crowd.holders.iter().map(|h| h.sessions.len()).sum();
        assert_eq!(total, 450);
        assert_eq!(crowd.addresses(), 3);
        let mut per_ip: HashMap<_, usize> = HashMap::new();
        for h in &crowd.holders {
            *per_ip
                .entry(h.socket.local_addr().unwrap().ip())
                .or_default() += h.sessions.len();
        }
        assert!(per_ip.values().all(|&n| n <= 200), "{per_ip:?}");
    }
}
