//! `lossy-proxy`: a UDP relay between any number of clients and one server that impairs the
//! traffic (a bottleneck with a drop-tail queue, loss, duplication, reordering, bit flips,
//! truncation, delay, jitter) with the seeded [`udpft::link`] model, one independent
//! [`Link`] per direction. All clients share each direction's link, so they share its
//! bottleneck as flows through one router port do.
//!
//! Each client gets its own upstream socket (same address family as the server, port 0,
//! connected to it), so the server sees every client as a distinct peer and its replies map
//! back to the right client. With `--follow-reply-port` (for a TFTP server that answers from
//! a fresh port per transfer, as tftpd-hpa does) that socket is not connected: the first port
//! of the server's address that answers becomes the client's transfer ID (RFC 1350 §4), later
//! datagrams of the client go there, and replies from other ports are dropped and counted.
//!
//! # Design
//! The relay uses blocking sockets and threads rather than one event loop, which keeps each
//! direction's code straight-line and adds one thread wake-up per hop:
//! * one thread blocks on the listen socket and relays client→server ("up");
//! * one thread per client blocks on that client's upstream socket and relays server→client
//!   ("down"); it also expires the client after `--idle-timeout` of silence in both
//!   directions (its read timeout is the time left until then, so an idle client costs one
//!   wake-up per timeout, not a polling loop);
//! * one timer thread sends the datagrams the link holds back (delay, jitter, reordering)
//!   from a [`BinaryHeap`] ordered by (due time, arrival counter), sleeping on a condition
//!   variable until the earliest is due.
//!
//! A datagram the link delivers at once (no delay configured) is sent by the thread that
//! received it, so the pass-through path adds no thread hand-off and no timer wait: one
//! `recv`, one uncontended lock around [`Link::transmit`], one `send`. Resources are bounded:
//! at most `--max-clients` clients (datagrams from further ones are dropped and counted), and
//! at most [`QUEUE_BYTES`] bytes held in the timer queue (beyond that a datagram is dropped
//! and counted).
//!
//! The main thread only waits for Ctrl-C/SIGTERM (a `signal-hook` iterator), `--duration`,
//! or a fatal socket error; then it prints the per-direction counters and writes them to
//! `--stats-file`, and the process exits.

#![forbid(unsafe_code)]

// The proxy parses rates and probabilities, not sizes.
#[allow(dead_code)]
#[path = "bench/units.rs"]
mod units;

use clap::Parser;
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use udpft::link::{Damage, Delivery, Impairments, Link, LinkStats};
use udpft::net;
use units::{parse_byte_rate, parse_probability as probability};

/// Most bytes of datagrams held in the timer queue at once.
const QUEUE_BYTES: usize = 64 << 20;

/// Receive buffer: the largest UDP payload fits.
const DATAGRAM_BUFFER: usize = 65_536;

/// Stack of a per-client thread: it keeps its buffers on the heap.
const CLIENT_STACK: usize = 256 << 10;

/// Datagrams a bottleneck buffers unless `--queue` says otherwise: a modest router port.
const DEFAULT_QUEUE: u32 = 100;

/// The most `--queue` accepts (the timer queue's byte bound applies as well).
const MAX_QUEUE: i64 = 1_000_000;

/// XORed into `--seed` for the down direction, so the two links make independent choices.
const DOWN_SEED_MIX: u64 = 0xD0E5_D0E5_5EED_F00D;

const AFTER_HELP: &str = "\
Directions: \"up\" is client -> server, \"down\" is server -> client. Each impairment applies to
both directions unless a per-direction value (--loss-up, --delay-down, ...) overrides it.
Probabilities are numbers in 0..=1 or percentages (\"0.05\" and \"5%\" are the same).

Example: 10% loss each way, 5% duplicates and reordering, 2 ms delay to the server only:
  lossy-proxy --listen 127.0.0.1:7000 --upstream 127.0.0.1:6969 \\
              --loss 10% --dup 0.05 --reorder 0.05 --delay-up 2

Example: a 100 Mbit/s bottleneck towards the clients with room for 32 datagrams:
  lossy-proxy --listen 127.0.0.1:7000 --upstream 127.0.0.1:6969 \\
              --rate-down 100Mbit/s --queue-down 32

At stop (Ctrl-C, SIGTERM or --duration) the per-direction counters are printed to stderr
and, with --stats-file, written as key=value lines.";

/// A UDP relay that impairs traffic between clients and one server.
///
/// Relays datagrams between any number of clients and one upstream server, dropping,
/// duplicating, reordering, corrupting, truncating and delaying them as asked, with seeded
/// and independent choices per direction. Every client gets its own upstream socket, so the
/// server sees each client as a distinct peer.
#[derive(Parser, Debug)]
#[command(name = "lossy-proxy", version, after_help = AFTER_HELP)]
struct Cli {
    /// Address and port clients send to. Port 0 picks a free port; the first line on stderr
    /// says which (`listening on ADDR:PORT, ...`).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: String,
    /// The server to forward to.
    #[arg(long, value_name = "ADDR:PORT")]
    upstream: String,

    /// Chance a datagram is dropped.
    #[arg(long, value_name = "P", default_value = "0", value_parser = probability, help_heading = "Impairments (both directions)")]
    loss: f64,
    /// Chance a datagram is delivered twice.
    #[arg(long, value_name = "P", default_value = "0", value_parser = probability, help_heading = "Impairments (both directions)")]
    dup: f64,
    /// Chance a datagram is held back by --reorder-hold so later ones overtake it.
    #[arg(long, value_name = "P", default_value = "0", value_parser = probability, help_heading = "Impairments (both directions)")]
    reorder: f64,
    /// Chance one random bit of a datagram is flipped.
    #[arg(long, value_name = "P", default_value = "0", value_parser = probability, help_heading = "Impairments (both directions)")]
    corrupt: f64,
    /// Chance a datagram is cut short at a random length.
    #[arg(long, value_name = "P", default_value = "0", value_parser = probability, help_heading = "Impairments (both directions)")]
    truncate: f64,
    /// Fixed one-way delay added to every datagram, in milliseconds (fractions allowed).
    #[arg(long, value_name = "MS", default_value = "0", value_parser = millis, help_heading = "Impairments (both directions)")]
    delay: Duration,
    /// Extra one-way delay, uniform in 0..=MS, drawn per datagram (so it also reorders).
    #[arg(long, value_name = "MS", default_value = "0", value_parser = millis, help_heading = "Impairments (both directions)")]
    jitter: Duration,
    /// How long a datagram picked by --reorder is held back, in milliseconds.
    #[arg(long, value_name = "MS", default_value = "1", value_parser = millis, help_heading = "Impairments (both directions)")]
    reorder_hold: Duration,
    /// A bottleneck of this many bytes per second (0: none), shared by all clients: each
    /// datagram occupies it for its length / RATE.
    #[arg(long, value_name = "RATE", default_value = "0", value_parser = parse_byte_rate, help_heading = "Impairments (both directions)")]
    rate: u64,
    /// Datagrams the bottleneck buffers behind the one it is sending; past that, arrivals
    /// are dropped (drop-tail).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QUEUE, value_parser = clap::value_parser!(u32).range(0..=MAX_QUEUE), help_heading = "Impairments (both directions)")]
    queue: u32,

    /// --loss for client -> server only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    loss_up: Option<f64>,
    /// --loss for server -> client only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    loss_down: Option<f64>,
    /// --dup for client -> server only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    dup_up: Option<f64>,
    /// --dup for server -> client only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    dup_down: Option<f64>,
    /// --reorder for client -> server only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    reorder_up: Option<f64>,
    /// --reorder for server -> client only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    reorder_down: Option<f64>,
    /// --corrupt for client -> server only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    corrupt_up: Option<f64>,
    /// --corrupt for server -> client only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    corrupt_down: Option<f64>,
    /// --truncate for client -> server only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    truncate_up: Option<f64>,
    /// --truncate for server -> client only.
    #[arg(long, value_name = "P", value_parser = probability, help_heading = "Per-direction overrides")]
    truncate_down: Option<f64>,
    /// --delay for client -> server only.
    #[arg(long, value_name = "MS", value_parser = millis, help_heading = "Per-direction overrides")]
    delay_up: Option<Duration>,
    /// --delay for server -> client only.
    #[arg(long, value_name = "MS", value_parser = millis, help_heading = "Per-direction overrides")]
    delay_down: Option<Duration>,
    /// --jitter for client -> server only.
    #[arg(long, value_name = "MS", value_parser = millis, help_heading = "Per-direction overrides")]
    jitter_up: Option<Duration>,
    /// --jitter for server -> client only.
    #[arg(long, value_name = "MS", value_parser = millis, help_heading = "Per-direction overrides")]
    jitter_down: Option<Duration>,
    /// --reorder-hold for client -> server only.
    #[arg(long, value_name = "MS", value_parser = millis, help_heading = "Per-direction overrides")]
    reorder_hold_up: Option<Duration>,
    /// --reorder-hold for server -> client only.
    #[arg(long, value_name = "MS", value_parser = millis, help_heading = "Per-direction overrides")]
    reorder_hold_down: Option<Duration>,
    /// --rate for client -> server only.
    #[arg(long, value_name = "RATE", value_parser = parse_byte_rate, help_heading = "Per-direction overrides")]
    rate_up: Option<u64>,
    /// --rate for server -> client only.
    #[arg(long, value_name = "RATE", value_parser = parse_byte_rate, help_heading = "Per-direction overrides")]
    rate_down: Option<u64>,
    /// --queue for client -> server only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=MAX_QUEUE), help_heading = "Per-direction overrides")]
    queue_up: Option<u32>,
    /// --queue for server -> client only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=MAX_QUEUE), help_heading = "Per-direction overrides")]
    queue_down: Option<u32>,

    /// Seed of the impairment choices (the down direction uses a value derived from it), so
    /// a run's pattern of losses can be repeated.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Stop by itself after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    duration: Option<Duration>,
    /// At stop, also write the counters to this file as key=value lines.
    #[arg(long, value_name = "PATH")]
    stats_file: Option<PathBuf>,
    /// Most clients relayed at once; datagrams from further clients are dropped.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_clients: usize,
    /// Forget a client (and close its upstream socket) after this many seconds without a
    /// datagram in either direction.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    idle_timeout: Duration,
    /// TFTP servers that answer from a new port per transfer (tftpd-hpa): the first port of
    /// the server's address that answers a client becomes that client's server port; replies
    /// from other ports are dropped (a TFTP client would answer them with ERROR 5).
    #[arg(long)]
    follow_reply_port: bool,
}

/// Parses a non-negative number of milliseconds.
fn millis(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1e3).ok())
        .ok_or_else(|| format!("`{text}` is not a non-negative number of milliseconds"))
}

/// Parses a non-negative number of seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("`{text}` is not a non-negative number of seconds"))
}

impl Cli {
    /// The impairments of one direction: the per-direction values where given, else the
    /// both-ways ones.
    fn impairments(&self, direction: Direction) -> Impairments {
        fn pick<T>(direction: Direction, up: Option<T>, down: Option<T>) -> Option<T> {
            match direction {
                Direction::Up => up,
                Direction::Down => down,
            }
        }
        Impairments {
            loss: pick(direction, self.loss_up, self.loss_down).unwrap_or(self.loss),
            duplicate: pick(direction, self.dup_up, self.dup_down).unwrap_or(self.dup),
            reorder: pick(direction, self.reorder_up, self.reorder_down).unwrap_or(self.reorder),
            corrupt: pick(direction, self.corrupt_up, self.corrupt_down).unwrap_or(self.corrupt),
            truncate: pick(direction, self.truncate_up, self.truncate_down)
                .unwrap_or(self.truncate),
            delay: pick(direction, self.delay_up, self.delay_down).unwrap_or(self.delay),
            jitter: pick(direction, self.jitter_up, self.jitter_down).unwrap_or(self.jitter),
            reorder_hold: pick(direction, self.reorder_hold_up, self.reorder_hold_down)
                .unwrap_or(self.reorder_hold),
            rate: pick(direction, self.rate_up, self.rate_down).unwrap_or(self.rate),
            queue: pick(direction, self.queue_up, self.queue_down).unwrap_or(self.queue) as usize,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

/// Where a datagram goes once the link lets it through.
#[derive(Clone)]
enum Target {
    /// To the server, on this client's upstream socket.
    Up(Arc<ClientSlot>),
    /// To this client, from the listen socket.
    Down(SocketAddr),
}

/// One client: its own upstream socket and when it was last heard from or written to.
struct ClientSlot {
    socket: UdpSocket,
    /// With `--follow-reply-port`: the server port that answered first (0: none yet, send to
    /// `--upstream`). Unused when the socket is connected.
    reply_port: AtomicU16,
    /// Milliseconds since the proxy started, at the last datagram either way.
    last_active_ms: AtomicU64,
}

/// A datagram the link holds back until `at`.
struct Pending {
    at: Instant,
    /// Arrival order, so datagrams due at the same instant leave in the order they came.
    order: u64,
    target: Target,
    bytes: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// The timer queue: held-back datagrams, earliest first.
#[derive(Default)]
struct TimerQueue {
    heap: BinaryHeap<Reverse<Pending>>,
    next_order: u64,
    bytes: usize,
}

/// Counters of the relay itself (the links count their own impairments).
#[derive(Default)]
struct RelayCounters {
    clients: AtomicU64,
    clients_refused: AtomicU64,
    clients_expired: AtomicU64,
    queue_full: AtomicU64,
    send_errors: AtomicU64,
    /// Replies from a server port other than the client's transfer ID (`--follow-reply-port`).
    foreign_replies: AtomicU64,
}

/// Everything the relay threads share.
struct Relay {
    listen: UdpSocket,
    upstream: SocketAddr,
    started: Instant,
    max_clients: usize,
    idle_timeout: Duration,
    follow_reply_port: bool,
    up: Mutex<Link>,
    down: Mutex<Link>,
    clients: Mutex<HashMap<SocketAddr, Arc<ClientSlot>>>,
    timers: Mutex<TimerQueue>,
    timer_wake: Condvar,
    counters: RelayCounters,
}

/// Locks, going on with the data if another thread panicked while holding it: every
/// structure here stays consistent between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Errors of a blocking receive that mean "nothing this time", not a broken socket.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            // An ICMP error from an earlier send (the server or a client went away).
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// Per-thread scratch space for relaying.
struct Scratch {
    deliveries: Vec<Delivery>,
    damaged: Vec<u8>,
}

impl Scratch {
    fn new() -> Self {
        Self {
            deliveries: Vec::with_capacity(2),
            damaged: Vec::with_capacity(DATAGRAM_BUFFER),
        }
    }
}

impl Relay {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Passes one datagram through the link of `direction`: sends the copies due now, queues
    /// the ones held back.
    fn relay(&self, direction: Direction, datagram: &[u8], target: &Target, scratch: &mut Scratch) {
        let now = Instant::now();
        let link = match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        };
        lock(link).transmit(now, datagram.len(), &mut scratch.deliveries);
        for delivery in scratch.deliveries.drain(..) {
            let bytes: &[u8] = match delivery.damage {
                Damage::None => datagram,
                damage => {
                    scratch.damaged.clear();
                    scratch.damaged.extend_from_slice(datagram);
                    damage.apply(&mut scratch.damaged)
                }
            };
            if delivery.at <= now {
                self.send(target, bytes);
            } else {
                self.hold(delivery.at, target, bytes);
            }
        }
    }

    fn send(&self, target: &Target, bytes: &[u8]) {
        let result = match target {
            Target::Up(slot) if self.follow_reply_port => {
                let port = slot.reply_port.load(Ordering::Relaxed);
                let to = match port {
                    0 => self.upstream,
                    port => SocketAddr::new(self.upstream.ip(), port),
                };
                slot.socket.send_to(bytes, to)
            }
            Target::Up(slot) => slot.socket.send(bytes),
            Target::Down(client) => self.listen.send_to(bytes, client),
        };
        // A failed send is one more lost datagram on a lossy link; only count it.
        if result.is_err() {
            self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a copy of `bytes` to be sent at `at`, waking the timer thread if it is now the
    /// earliest.
    fn hold(&self, at: Instant, target: &Target, bytes: &[u8]) {
        let mut queue = lock(&self.timers);
        if queue.bytes + bytes.len() > QUEUE_BYTES {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let order = queue.next_order;
        queue.next_order += 1;
        queue.bytes += bytes.len();
        queue.heap.push(Reverse(Pending {
            at,
            order,
            target: target.clone(),
            bytes: bytes.to_vec(),
        }));
        let earliest = queue.heap.peek().is_some_and(|p| p.0.order == order);
        drop(queue);
        if earliest {
            self.timer_wake.notify_one();
        }
    }

    /// The timer thread: sends held-back datagrams when they fall due.
    fn run_timers(&self) {
        let mut due = Vec::new();
        loop {
            let mut queue = lock(&self.timers);
            loop {
                let now = Instant::now();
                let next = queue.heap.peek().map(|p| p.0.at);
                match next {
                    Some(at) if at <= now => {
                        while queue.heap.peek().is_some_and(|p| p.0.at <= now) {
                            let Reverse(pending) = queue.heap.pop().expect("peeked");
                            queue.bytes -= pending.bytes.len();
                            due.push(pending);
                        }
                        break;
                    }
                    Some(at) => {
                        queue = self
                            .timer_wake
                            .wait_timeout(queue, at - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    None => {
                        queue = self
                            .timer_wake
                            .wait(queue)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
            drop(queue);
            for pending in due.drain(..) {
                self.send(&pending.target, &pending.bytes);
            }
        }
    }

    /// The up thread: receives from clients and relays to the server. Returns only on a
    /// socket error that will not go away.
    fn run_up(self: &Arc<Self>) -> io::Error {
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let mut scratch = Scratch::new();
        loop {
            match self.listen.recv_from(&mut buf) {
                Ok((len, client)) => {
                    if let Some(slot) = self.client(client) {
                        self.relay(Direction::Up, &buf[..len], &Target::Up(slot), &mut scratch);
                    }
                }
                Err(e) if is_transient(&e) => {}
                Err(e) => return e,
            }
        }
    }

    /// The slot of `client`, opened (with its upstream socket and down thread) on its first
    /// datagram; `None` when the client cannot be taken (too many, or no socket).
    fn client(self: &Arc<Self>, client: SocketAddr) -> Option<Arc<ClientSlot>> {
        let now_ms = self.elapsed_ms();
        let mut clients = lock(&self.clients);
        if let Some(slot) = clients.get(&client) {
            // Touched under the map lock, so the down thread cannot expire it meanwhile.
            slot.last_active_ms.store(now_ms, Ordering::Relaxed);
            return Some(Arc::clone(slot));
        }
        if clients.len() >= self.max_clients {
            if self
                .counters
                .clients_refused
                .fetch_add(1, Ordering::Relaxed)
                == 0
            {
                eprintln!(
                    "lossy-proxy: {} clients already; dropping datagrams from new ones",
                    self.max_clients
                );
            }
            return None;
        }
        let slot = match self.open_upstream() {
            Ok(socket) => Arc::new(ClientSlot {
                socket,
                reply_port: AtomicU16::new(0),
                last_active_ms: AtomicU64::new(now_ms),
            }),
            Err(e) => {
                eprintln!("lossy-proxy: cannot open an upstream socket for {client}: {e}");
                self.counters
                    .clients_refused
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let relay = Arc::clone(self);
        let for_thread = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name(format!("down {client}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || relay.run_down(client, &for_thread));
        if let Err(e) = spawned {
            eprintln!("lossy-proxy: cannot start a thread for {client}: {e}");
            self.counters
                .clients_refused
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.counters.clients.fetch_add(1, Ordering::Relaxed);
        clients.insert(client, Arc::clone(&slot));
        Some(slot)
    }

    /// A socket of the server's family on a free port, connected to the server (so it
    /// receives only the server's datagrams), or with `--follow-reply-port` not connected
    /// (the down thread filters by the server's address and the client's server port).
    fn open_upstream(&self) -> io::Result<UdpSocket> {
        let socket = net::bind(net::any_for(self.upstream), false)?;
        if !self.follow_reply_port {
            socket.connect(self.upstream)?;
        }
        socket.set_read_timeout(Some(self.idle_timeout.max(Duration::from_millis(1))))?;
        Ok(socket)
    }

    /// A down thread: receives the server's replies to `client` and relays them, until the
    /// client has been idle for the idle timeout.
    fn run_down(&self, client: SocketAddr, slot: &Arc<ClientSlot>) {
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let mut scratch = Scratch::new();
        let target = Target::Down(client);
        let idle_ms = self.idle_timeout.as_millis() as u64;
        loop {
            match self.receive_reply(slot, &mut buf) {
                Ok(None) => {}
                Ok(Some(len)) => {
                    slot.last_active_ms
                        .store(self.elapsed_ms(), Ordering::Relaxed);
                    self.relay(Direction::Down, &buf[..len], &target, &mut scratch);
                }
                Err(e) if is_transient(&e) => {
                    let mut clients = lock(&self.clients);
                    let last = slot.last_active_ms.load(Ordering::Relaxed);
                    match idle_left(self.elapsed_ms(), last, idle_ms) {
                        None => {
                            if clients.get(&client).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                                clients.remove(&client);
                            }
                            self.counters
                                .clients_expired
                                .fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        // Wake up again exactly when the client would be idle long enough.
                        Some(left) => {
                            drop(clients);
                            let _ = slot.socket.set_read_timeout(Some(left));
                        }
                    }
                }
                Err(e) => {
                    eprintln!("lossy-proxy: upstream socket of {client} failed: {e}");
                    lock(&self.clients).remove(&client);
                    return;
                }
            }
        }
    }

    /// One datagram from the server on `slot`'s socket: its length, or `None` for a datagram
    /// that is not the server's (`--follow-reply-port`: another address, or a port other than
    /// the first that answered).
    fn receive_reply(&self, slot: &ClientSlot, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if !self.follow_reply_port {
            return slot.socket.recv(buf).map(Some);
        }
        let (len, from) = slot.socket.recv_from(buf)?;
        if from.ip() != self.upstream.ip() {
            return Ok(None);
        }
        let fixed = match slot.reply_port.compare_exchange(
            0,
            from.port(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => from.port(),
            Err(port) => port,
        };
        if fixed == from.port() {
            Ok(Some(len))
        } else {
            self.counters
                .foreign_replies
                .fetch_add(1, Ordering::Relaxed);
            Ok(None)
        }
    }

    /// The counters as `key=value` lines.
    fn stats_lines(&self, elapsed: Duration) -> String {
        let mut text = String::new();
        for (name, link) in [("up", &self.up), ("down", &self.down)] {
            let s: LinkStats = lock(link).stats().clone();
            for (key, value) in [
                ("offered", s.offered),
                ("forwarded", s.forwarded),
                ("dropped", s.dropped),
                ("queue_dropped", s.queue_dropped),
                ("queue_peak", s.queue_peak),
                ("duplicated", s.duplicated),
                ("reordered", s.reordered),
                ("corrupted", s.corrupted),
                ("truncated", s.truncated),
            ] {
                let _ = writeln!(text, "{name}.{key}={value}");
            }
        }
        let c = &self.counters;
        for (key, counter) in [
            ("clients", &c.clients),
            ("clients_refused", &c.clients_refused),
            ("clients_expired", &c.clients_expired),
            ("queue_full", &c.queue_full),
            ("send_errors", &c.send_errors),
            ("foreign_replies", &c.foreign_replies),
        ] {
            let _ = writeln!(text, "{key}={}", counter.load(Ordering::Relaxed));
        }
        let _ = writeln!(text, "elapsed_secs={:.3}", elapsed.as_secs_f64());
        text
    }
}

/// A short description of one direction's impairments for the start line.
fn describe(imp: &Impairments) -> String {
    if imp.is_perfect() {
        return "none".into();
    }
    let pct = |p: f64| format!("{}%", (p * 1e4).round() / 1e2);
    let ms = |d: Duration| format!("{}ms", (d.as_secs_f64() * 1e6).round() / 1e3);
    let mut parts = Vec::new();
    for (name, p) in [
        ("loss", imp.loss),
        ("dup", imp.duplicate),
        ("reorder", imp.reorder),
        ("corrupt", imp.corrupt),
        ("truncate", imp.truncate),
    ] {
        if p > 0.0 {
            parts.push(format!("{name} {}", pct(p)));
        }
    }
    if !imp.delay.is_zero() {
        parts.push(format!("delay {}", ms(imp.delay)));
    }
    if !imp.jitter.is_zero() {
        parts.push(format!("jitter {}", ms(imp.jitter)));
    }
    if imp.reorder > 0.0 {
        parts.push(format!("hold {}", ms(imp.reorder_hold)));
    }
    if imp.rate > 0 {
        parts.push(format!(
            "bottleneck {} MB/s, queue {}",
            imp.rate as f64 / 1e6,
            imp.queue
        ));
    }
    if parts.is_empty() {
        // Only a reorder hold or a queue was set, which change nothing alone.
        return "none".into();
    }
    parts.join(", ")
}

fn resolve(text: &str, what: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {what} {text}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {what} {text}"))
}

/// Why the proxy stopped.
enum Stop {
    Signal(i32),
    Duration,
    Failed(String),
}

fn run(cli: &Cli) -> Result<(), String> {
    let listen_addr = resolve(&cli.listen, "--listen")?;
    let upstream = resolve(&cli.upstream, "--upstream")?;
    let listen = net::bind(listen_addr, false)
        .map_err(|e| format!("cannot listen on {listen_addr}: {e}"))?;
    let local = listen
        .local_addr()
        .map_err(|e| format!("cannot read the listen address: {e}"))?;
    let (up, down) = (
        cli.impairments(Direction::Up),
        cli.impairments(Direction::Down),
    );
    let start_line = format!(
        "lossy-proxy: listening on {local}, forwarding to {upstream}; up: {}; down: {}; seed {}",
        describe(&up),
        describe(&down),
        cli.seed
    );
    let relay = Arc::new(Relay {
        listen,
        upstream,
        started: Instant::now(),
        max_clients: cli.max_clients.max(1),
        idle_timeout: cli.idle_timeout,
        follow_reply_port: cli.follow_reply_port,
        up: Mutex::new(Link::new(up, cli.seed)),
        down: Mutex::new(Link::new(down, cli.seed ^ DOWN_SEED_MIX)),
        clients: Mutex::new(HashMap::new()),
        timers: Mutex::new(TimerQueue::default()),
        timer_wake: Condvar::new(),
        counters: RelayCounters::default(),
    });

    let (stop_tx, stop_rx) = mpsc::channel::<Stop>();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let on_signal = stop_tx.clone();
    spawn("signals", move || {
        if let Some(signal) = signals.forever().next() {
            let _ = on_signal.send(Stop::Signal(signal));
        }
    })?;
    let timers = Arc::clone(&relay);
    spawn("timers", move || timers.run_timers())?;
    let up = Arc::clone(&relay);
    spawn("up", move || {
        let e = up.run_up();
        let _ = stop_tx.send(Stop::Failed(format!("listen socket failed: {e}")));
    })?;
    eprintln!("{start_line}");

    let stop = match cli.duration {
        Some(limit) => stop_rx.recv_timeout(limit).unwrap_or(Stop::Duration),
        None => stop_rx
            .recv()
            .unwrap_or_else(|_| Stop::Failed("relay threads ended".into())),
    };
    let elapsed = relay.started.elapsed();
    let reason = match &stop {
        Stop::Signal(signal) => match *signal {
            signal_hook::consts::SIGINT => "SIGINT".into(),
            signal_hook::consts::SIGTERM => "SIGTERM".into(),
            other => format!("signal {other}"),
        },
        Stop::Duration => "--duration elapsed".into(),
        Stop::Failed(why) => why.clone(),
    };
    report(&relay, elapsed, &reason, cli.stats_file.as_ref())?;
    match stop {
        Stop::Failed(why) => Err(why),
        Stop::Signal(_) | Stop::Duration => Ok(()),
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}

/// Prints the counters to stderr and writes them to the stats file if asked.
fn report(
    relay: &Relay,
    elapsed: Duration,
    reason: &str,
    stats_file: Option<&PathBuf>,
) -> Result<(), String> {
    let up = lock(&relay.up).stats().clone();
    let down = lock(&relay.down).stats().clone();
    let c = &relay.counters;
    eprintln!(
        "lossy-proxy: stopped after {:.1} s ({reason}); clients {} (refused {}, expired {}), queue full {}, send errors {}, replies from other ports {}",
        elapsed.as_secs_f64(),
        c.clients.load(Ordering::Relaxed),
        c.clients_refused.load(Ordering::Relaxed),
        c.clients_expired.load(Ordering::Relaxed),
        c.queue_full.load(Ordering::Relaxed),
        c.send_errors.load(Ordering::Relaxed),
        c.foreign_replies.load(Ordering::Relaxed),
    );
    eprintln!("lossy-proxy: up   (client -> server): {}", up.summary());
    eprintln!("lossy-proxy: down (server -> client): {}", down.summary());
    if let Some(path) = stats_file {
        std::fs::write(path, relay.stats_lines(elapsed))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lossy-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How much longer a client last active at `last_ms` (milliseconds since the start) may
/// stay silent at `now_ms` before it is forgotten, or `None` if its `idle_ms` ran out.
fn idle_left(now_ms: u64, last_ms: u64, idle_ms: u64) -> Option<Duration> {
    let idle = now_ms.saturating_sub(last_ms);
    (idle < idle_ms).then(|| Duration::from_millis((idle_ms - idle).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_forgotten_once_its_idle_time_ran_out() {
        assert_eq!(
            idle_left(1_000, 1_000, 200),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            idle_left(1_150, 1_000, 200),
            Some(Duration::from_millis(50))
        );
        assert_eq!(idle_left(1_199, 1_000, 200), Some(Duration::from_millis(1)));
        assert_eq!(idle_left(1_200, 1_000, 200), None);
        assert_eq!(idle_left(5_000, 1_000, 200), None);
        // A clock read before the last activity (threads) is no idleness at all.
        assert_eq!(idle_left(900, 1_000, 200), Some(Duration::from_millis(200)));
    }

    /// The command line with a listen and an upstream address and then `knobs`.
    fn parse(knobs: &[&str]) -> Result<Cli, clap::Error> {
        let fixed = [
            "lossy-proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ];
        Cli::try_parse_from(fixed.iter().chain(knobs))
    }

    #[test]
    fn per_direction_values_override_both_ways_ones() {
        let cli = parse(&["--loss", "10%", "--loss-down", "0.2", "--delay-up", "2.5"])
            .expect("valid arguments");
        let (up, down) = (
            cli.impairments(Direction::Up),
            cli.impairments(Direction::Down),
        );
        assert_eq!((up.loss, down.loss), (0.1, 0.2));
        assert_eq!(up.delay, Duration::from_micros(2500));
        assert_eq!(down.delay, Duration::ZERO);
    }

    #[test]
    fn a_bottleneck_is_set_per_direction_with_units() {
        let cli = parse(&[
            "--rate",
            "12.5MB/s",
            "--rate-up",
            "100Mbit/s",
            "--queue-down",
            "8",
        ])
        .expect("valid arguments");
        let (up, down) = (
            cli.impairments(Direction::Up),
            cli.impairments(Direction::Down),
        );
        assert_eq!((up.rate, down.rate), (12_500_000, 12_500_000));
        assert_eq!((up.queue, down.queue), (DEFAULT_QUEUE as usize, 8));
        assert_eq!(describe(&down), "bottleneck 12.5 MB/s, queue 8");
        let plain = parse(&[]).expect("valid arguments");
        assert_eq!(describe(&plain.impairments(Direction::Up)), "none");
        assert!(parse(&["--rate", "fast"]).is_err());
        assert!(parse(&["--queue", "-1"]).is_err());
    }

    #[test]
    fn held_datagrams_leave_in_due_then_arrival_order() {
        let now = Instant::now();
        let pending = |at_ms, order| Pending {
            at: now + Duration::from_millis(at_ms),
            order,
            target: Target::Down("127.0.0.1:9".parse().expect("address")),
            bytes: Vec::new(),
        };
        let mut heap = BinaryHeap::new();
        for (at, order) in [(2, 0), (1, 1), (1, 2), (0, 3)] {
            heap.push(Reverse(pending(at, order)));
        }
        let orders: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|p| p.0.order)).collect();
        assert_eq!(orders, [3, 1, 2, 0]);
    }
}
