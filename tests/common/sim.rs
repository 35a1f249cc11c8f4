//! A simulated network with a virtual clock for driving udpft's sans-IO core: clients
//! ([`ClientSession`]) and one server ([`SessionTable`] over an in-memory [`Store`]) exchange
//! datagrams through seeded lossy [`Link`]s, one per direction per client.
//!
//! Like quinn's test `Pair`, time is `epoch + Duration`: `epoch` is read once and the clock
//! only ever jumps forward to the next event (a datagram's arrival or an endpoint's
//! deadline), so a run never sleeps and is a pure function of its seed. Datagrams in flight
//! wait in a queue ordered by (arrival time, insertion counter). A hook may override the
//! link for chosen datagrams (drop the first Data, deliver an Ack twice...), and every send
//! and every arrival is recorded in a transcript the tests inspect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use udpft::link::{Damage, Delivery, Impairments, Link, LinkStats, Rng};
use udpft::proto::admission::{Limits, Policy};
use udpft::proto::client::{ClientSession, Request};
use udpft::proto::listing::{self, Entry};
use udpft::proto::refusal::Refusal;
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::store::{FileInfo, Store};
use udpft::proto::table::SessionTable;
use udpft::proto::wire::{Kind, MAX_DATAGRAM};
use udpft::proto::{Config, ErrorCode, Failure, Message, Outcome, Sink, Stats};

/// The server's address. No socket ever binds it: addresses are only keys.
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6969);

/// The address of client number `index`: 10.0.1.x, a distinct port each.
pub fn client_addr(index: usize) -> SocketAddr {
    let host = 1 + (index % 250) as u8;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, host)),
        5000 + index as u16,
    )
}

/// A LAN link: intact, 500 µs one way.
pub fn lan() -> Impairments {
    Impairments {
        delay: Duration::from_micros(500),
        ..Impairments::default()
    }
}

/// Deterministic file contents for `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0xF11E);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// The library's files, shared between the store (owned by the table) and the test.
pub type Files = Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A deterministic stand-in for the server's keyed session-id hash: the same seed names
/// the same sessions, so a run is a pure function of its seed.
pub fn seeded_mac(seed: u64) -> udpft::proto::endpoint::SessionMac {
    Box::new(move |peer, token, attempt| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (seed, peer, token, attempt).hash(&mut hasher);
        hasher.finish() as u32
    })
}

/// An in-memory [`Store`]: a map of name to bytes. Uploads become visible only on commit.
pub struct MemStore {
    files: Files,
}

impl MemStore {
    /// A store over `files`.
    pub fn new(files: Files) -> Self {
        Self { files }
    }
}

fn check_name(name: &[u8]) -> Result<(), Refusal> {
    if name.is_empty() || name.contains(&b'/') || name.starts_with(b".") {
        return Err(Refusal::new(ErrorCode::BadName, "name not allowed"));
    }
    Ok(())
}

impl Store for MemStore {
    fn listing(&mut self) -> Result<Arc<[u8]>, Refusal> {
        let files = lock(&self.files);
        let mut names: Vec<&Vec<u8>> = files.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            listing::encode_entry(
                &Entry {
                    name: name.clone(),
                    size: files[name].len() as u64,
                    mtime: 0,
                },
                &mut out,
            );
        }
        Ok(out.into())
    }

    fn inspect(&mut self, name: &[u8]) -> Result<FileInfo, Refusal> {
        check_name(name)?;
        let files = lock(&self.files);
        let bytes = files
            .get(name)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such file"))?;
        Ok(FileInfo {
            size: bytes.len() as u64,
            version: u64::from(crc32fast::hash(bytes)),
        })
    }

    fn check_upload(&mut self, name: &[u8], overwrite: bool) -> Result<(), Refusal> {
        check_name(name)?;
        if !overwrite && lock(&self.files).contains_key(name) {
            return Err(Refusal::new(ErrorCode::Exists, "file exists"));
        }
        Ok(())
    }

    fn open(
        &mut self,
        name: &[u8],
        expected: &FileInfo,
    ) -> Result<Box<dyn udpft::proto::Source>, Refusal> {
        if self.inspect(name)? != *expected {
            return Err(Refusal::new(ErrorCode::FileChanged, "file changed"));
        }
        let bytes = lock(&self.files)[name].clone();
        Ok(Box::new(MemSource(bytes)))
    }

    fn create(
        &mut self,
        name: &[u8],
        size: u64,
        overwrite: bool,
    ) -> Result<Box<dyn Sink>, Refusal> {
        self.check_upload(name, overwrite)?;
        Ok(Box::new(Upload {
            name: name.to_vec(),
            data: Vec::with_capacity(size.min(1 << 24) as usize),
            files: Arc::clone(&self.files),
        }))
    }
}

/// An upload in progress: invisible in the store until committed.
struct Upload {
    name: Vec<u8>,
    data: Vec<u8>,
    files: Files,
}

impl Sink for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        lock(&self.files).insert(self.name.clone(), std::mem::take(&mut self.data));
        Ok(())
    }
}

/// One datagram as an endpoint sent it.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Position in [`Sim::sent`].
    pub index: usize,
    /// Virtual time since the epoch.
    pub at: Duration,
    /// Sender's address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Its kind, if it decodes (everything an endpoint sends should).
    pub kind: Option<Kind>,
    /// Header session field (the token, for requests).
    pub session: u32,
    /// Sequence number (0 where the kind has none).
    pub seq: u64,
    /// Bytes.
    pub len: usize,
    /// How many datagrams of this kind `from` sent before this one.
    pub nth_of_kind: usize,
    /// Whether the test injected it rather than an endpoint sending it.
    pub injected: bool,
    /// The datagram's bytes, as sent.
    pub bytes: Vec<u8>,
}

/// One copy of a datagram arriving at its destination.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// Virtual time since the epoch.
    pub at: Duration,
    /// The send this is a copy of (index into [`Sim::sent`]).
    pub sent: usize,
    /// Whether the bytes arrived unchanged.
    pub intact: bool,
}

/// What happens to one sent datagram, as a hook decides.
pub enum Fate {
    /// Whatever the link's impairments say.
    Link,
    /// Lost.
    Drop,
    /// Delivered as these copies (delay after the send, damage), bypassing the link.
    Deliver(Vec<(Duration, Damage)>),
}

/// A test's say over individual datagrams.
pub type Hook = Box<dyn FnMut(&Sent) -> Fate>;

/// Drops the `n`-th (0-based) datagram of `kind` sent by `from`, leaves the rest to the link.
pub fn drop_nth(from: SocketAddr, kind: Kind, n: usize) -> Hook {
    Box::new(move |s: &Sent| {
        if s.from == from && s.kind == Some(kind) && s.nth_of_kind == n {
            Fate::Drop
        } else {
            Fate::Link
        }
    })
}

/// A host at `at` that is descheduled now and then, as a busy machine's processes are: stalls
/// start a uniform `0..2 × every` after the previous one ended and last a uniform
/// `0..=longest`, and a datagram that reaches the host (`delay` after it was sent) during a
/// stall is handled when the stall ends, in order. Everything else is left to the link.
pub fn stalls(
    at: SocketAddr,
    seed: u64,
    every: Duration,
    longest: Duration,
    delay: Duration,
) -> Hook {
    let mut rng = Rng::new(seed ^ 0x57A1);
    let nanos = |d: Duration| d.as_nanos() as u64;
    let mut stall = (Duration::ZERO, Duration::ZERO);
    Box::new(move |s: &Sent| {
        if s.to != at {
            return Fate::Link;
        }
        let arrives = s.at + delay;
        while stall.1 <= arrives {
            let start = stall.1 + Duration::from_nanos(rng.below(2 * nanos(every) + 1));
            stall = (
                start,
                start + Duration::from_nanos(rng.below(nanos(longest) + 1)),
            );
        }
        if arrives >= stall.0 {
            Fate::Deliver(vec![(stall.1 - s.at, Damage::None)])
        } else {
            Fate::Link
        }
    })
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The listing.
    List,
    /// Download of a name.
    Get(Vec<u8>),
    /// Upload of bytes as a name.
    Put(Vec<u8>, Vec<u8>),
}

/// One simulated client host.
pub struct Client {
    /// Its address.
    pub addr: SocketAddr,
    /// Its request.
    pub session: ClientSession,
    /// What it asked for.
    pub ask: Ask,
    /// Where a download or listing lands.
    pub sink: Arc<Mutex<MemSink>>,
    /// Client to server.
    pub up: Link,
    /// Server to client.
    pub down: Link,
    /// When it started, since the epoch.
    pub started: Duration,
    /// When its outcome became known, since the epoch.
    pub ended: Option<Duration>,
}

struct InFlight {
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
    sent: usize,
    intact: bool,
}

/// The simulated network: clients, one session table, the links and the virtual clock.
pub struct Sim {
    /// The real instant virtual time counts from; read once.
    pub epoch: Instant,
    now: Instant,
    seed: u64,
    impairments: Impairments,
    /// The config new clients use (tests may change it before adding clients).
    pub client_config: Config,
    queue: BTreeMap<(Instant, u64), InFlight>,
    counter: u64,
    /// Every client, by index.
    pub clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, usize>,
    /// The server.
    pub table: SessionTable,
    /// The server's library.
    pub files: Files,
    hook: Option<Hook>,
    /// Every datagram sent, in order.
    pub sent: Vec<Sent>,
    /// Every copy delivered, in order.
    pub arrivals: Vec<Arrival>,
    kind_counts: HashMap<(SocketAddr, Option<Kind>), usize>,
    /// Datagrams that arrived at an address with no endpoint (replies to injected strays).
    pub strays: Vec<(SocketAddr, Vec<u8>)>,
    /// Steps taken.
    pub steps: u64,
    /// The most sessions the table held at once.
    pub max_live_sessions: usize,
    /// Copies the hook dropped or rerouted.
    pub hooked: u64,
    /// Timers fire up to this late (a seeded draw per deadline), as a loaded machine's do;
    /// zero: exactly on time.
    pub timer_slack: Duration,
    /// The server speaks version 1 only, as a server from before windows: it answers a
    /// request of any other version with Error `UnsupportedVersion` and drops every other
    /// datagram of another version (protocol.md §16), before its table sees them.
    pub version_1_server: bool,
    /// A bottleneck ([`bottleneck`]) every client's datagrams to the server cross before
    /// their own link.
    pub bottleneck_up: Option<Link>,
    /// A bottleneck every datagram from the server crosses before the client's own link.
    pub bottleneck_down: Option<Link>,
    buf: Vec<u8>,
}

impl Sim {
    /// A network whose every client link has `impairments`, and a server configured as
    /// real servers are (`Config::for_server()`).
    pub fn new(seed: u64, impairments: Impairments) -> Self {
        Self::with_server(seed, impairments, Config::for_server(), Limits::default())
    }

    /// A network with a server of this config and limits.
    pub fn with_server(
        seed: u64,
        impairments: Impairments,
        config: Config,
        limits: Limits,
    ) -> Self {
        let files: Files = Arc::default();
        let policy = Policy {
            session: config,
            limits,
            ..Policy::default()
        };
        let table = SessionTable::new(
            policy,
            Box::new(MemStore::new(Arc::clone(&files))),
            seeded_mac(seed),
        );
        let epoch = Instant::now();
        Self {
            epoch,
            now: epoch,
            seed,
            impairments,
            client_config: Config::default(),
            queue: BTreeMap::new(),
            counter: 0,
            clients: Vec::new(),
            by_addr: HashMap::new(),
            table,
            files,
            hook: None,
            sent: Vec::new(),
            arrivals: Vec::new(),
            kind_counts: HashMap::new(),
            strays: Vec::new(),
            steps: 0,
            max_live_sessions: 0,
            hooked: 0,
            timer_slack: Duration::ZERO,
            version_1_server: false,
            bottleneck_up: None,
            bottleneck_down: None,
            buf: vec![0; MAX_DATAGRAM],
        }
    }

    /// Installs a hook deciding the fate of each sent datagram.
    pub fn set_hook(&mut self, hook: Hook) {
        self.hook = Some(hook);
    }

    /// Puts a file in the server's library.
    pub fn add_file(&mut self, name: &str, bytes: Vec<u8>) {
        lock(&self.files).insert(name.as_bytes().to_vec(), bytes);
    }

    /// A file of the server's library, if present (committed uploads only).
    pub fn stored(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.files).get(name.as_bytes()).cloned()
    }

    /// Virtual time since the epoch.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Starts a download of `name`; returns the client's index.
    pub fn get(&mut self, name: &str) -> usize {
        let sink = Arc::new(Mutex::new(MemSink::default()));
        let request = Request::Get {
            name: name.as_bytes().to_vec(),
            sink: Box::new(Arc::clone(&sink)),
            offset: 0,
            resume_crc: 0,
        };
        self.add_client(Ask::Get(name.as_bytes().to_vec()), request, sink)
    }

    /// Starts a download of `name` that resumes after the `held` bytes (which its sink
    /// already holds, as a partial file would); returns the client's index.
    pub fn get_resumed(&mut self, name: &str, held: &[u8]) -> usize {
        let sink = Arc::new(Mutex::new(MemSink {
            data: held.to_vec(),
            committed: false,
        }));
        let request = Request::Get {
            name: name.as_bytes().to_vec(),
            sink: Box::new(Arc::clone(&sink)),
            offset: held.len() as u64,
            resume_crc: crc32fast::hash(held),
        };
        self.add_client(Ask::Get(name.as_bytes().to_vec()), request, sink)
    }

    /// Starts an upload of `bytes` as `name`; returns the client's index.
    pub fn put(&mut self, name: &str, bytes: Vec<u8>, overwrite: bool) -> usize {
        let request = Request::Put {
            name: name.as_bytes().to_vec(),
            source: Box::new(MemSource(bytes.clone())),
            size: bytes.len() as u64,
            overwrite,
        };
        let sink = Arc::new(Mutex::new(MemSink::default()));
        self.add_client(Ask::Put(name.as_bytes().to_vec(), bytes), request, sink)
    }

    /// Starts a listing request; returns the client's index.
    pub fn list(&mut self) -> usize {
        let sink = Arc::new(Mutex::new(MemSink::default()));
        let request = Request::List {
            sink: Box::new(Arc::clone(&sink)),
        };
        self.add_client(Ask::List, request, sink)
    }

    fn add_client(&mut self, ask: Ask, request: Request, sink: Arc<Mutex<MemSink>>) -> usize {
        let index = self.clients.len();
        let addr = client_addr(index);
        let link_seed = |direction: u64| {
            Rng::new(self.seed ^ (index as u64 * 2 + direction).wrapping_mul(0x9E37_79B9))
                .next_u64()
        };
        let token = 0x7000_0000 + index as u32 + 1;
        let client = Client {
            addr,
            session: ClientSession::new(self.now, &self.client_config, token, request),
            ask,
            sink,
            up: Link::new(self.impairments.clone(), link_seed(0)),
            down: Link::new(self.impairments.clone(), link_seed(1)),
            started: self.elapsed(),
            ended: None,
        };
        self.clients.push(client);
        self.by_addr.insert(addr, index);
        self.flush();
        index
    }

    /// Puts raw bytes on the wire from `from` to `to`, arriving `after` from now, bypassing
    /// links and hook.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>, after: Duration) {
        let index = self.record(from, to, &bytes, true);
        self.enqueue(after, from, to, bytes, index, true);
    }

    fn record(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8], injected: bool) -> usize {
        let (kind, session, seq) = match Message::decode(bytes) {
            Ok(m) => {
                let seq = match m {
                    Message::Data { seq, .. }
                    | Message::Ack { seq, .. }
                    | Message::Sack { seq, .. }
                    | Message::Done { seq, .. } => seq,
                    _ => 0,
                };
                (Some(m.kind()), m.session(), seq)
            }
            Err(_) => (None, 0, 0),
        };
        // Injected datagrams do not shift the numbering hooks match on.
        let count = self.kind_counts.entry((from, kind)).or_insert(0);
        let nth_of_kind = *count;
        if !injected {
            *count += 1;
        }
        let index = self.sent.len();
        self.sent.push(Sent {
            index,
            at: self.elapsed(),
            from,
            to,
            kind,
            session,
            seq,
            len: bytes.len(),
            nth_of_kind,
            injected,
            bytes: bytes.to_vec(),
        });
        index
    }

    fn enqueue(
        &mut self,
        after: Duration,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
        sent: usize,
        intact: bool,
    ) {
        self.counter += 1;
        self.queue.insert(
            (self.now + after, self.counter),
            InFlight {
                to,
                from,
                bytes,
                sent,
                intact,
            },
        );
    }

    /// An endpoint sends: record, ask the hook, then the link, and queue the copies.
    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let index = self.record(from, to, bytes, false);
        let fate = match &mut self.hook {
            Some(hook) => hook(&self.sent[index]),
            None => Fate::Link,
        };
        let mut deliveries = Vec::new();
        let bottleneck = if from == SERVER {
            self.bottleneck_down.as_mut()
        } else if to == SERVER {
            self.bottleneck_up.as_mut()
        } else {
            None
        };
        let leaves = match bottleneck {
            Some(b) if matches!(fate, Fate::Link) => {
                let mut out = Vec::new();
                b.transmit(self.now, bytes.len(), &mut out);
                out.first().map(|d| d.at)
            }
            _ => Some(self.now),
        };
        let Some(leaves) = leaves else {
            return; // the bottleneck's queue was full: congestion
        };
        match fate {
            Fate::Link => {
                let link = if from == SERVER {
                    self.by_addr.get(&to).map(|&i| &mut self.clients[i].down)
                } else {
                    self.by_addr.get(&from).map(|&i| &mut self.clients[i].up)
                };
                match link {
                    Some(link) => link.transmit(leaves, bytes.len(), &mut deliveries),
                    // To or from an address no client owns: a perfect wire.
                    None => deliveries.push(Delivery {
                        at: self.now,
                        damage: Damage::None,
                    }),
                }
            }
            Fate::Drop => self.hooked += 1,
            Fate::Deliver(copies) => {
                self.hooked += 1;
                deliveries.extend(copies.into_iter().map(|(after, damage)| Delivery {
                    at: self.now + after,
                    damage,
                }));
            }
        }
        for delivery in deliveries {
            let mut copy = bytes.to_vec();
            let out = delivery.damage.apply(&mut copy).to_vec();
            let after = delivery.at.saturating_duration_since(self.now);
            let intact = delivery.damage == Damage::None;
            self.enqueue(after, from, to, out, index, intact);
        }
    }

    /// Drains every endpoint's pending datagrams onto the wire.
    fn flush(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        for i in 0..self.clients.len() {
            // The datagram may live in the session (no copy there): the wire takes a copy.
            while let Some(bytes) = self.clients[i]
                .session
                .poll_transmit(self.now, &mut buf)
                .map(<[u8]>::to_vec)
            {
                let from = self.clients[i].addr;
                self.send(from, SERVER, &bytes);
            }
        }
        while let Some((to, bytes)) = self
            .table
            .poll_transmit(self.now, &mut buf)
            .map(|(to, d)| (to, d.to_vec()))
        {
            self.send(SERVER, to, &bytes);
        }
        self.buf = buf;
        let elapsed = self.elapsed();
        for client in &mut self.clients {
            if client.ended.is_none() && client.session.outcome().is_some() {
                client.ended = Some(elapsed);
            }
        }
        self.max_live_sessions = self.max_live_sessions.max(self.table.len());
    }

    /// The earliest endpoint deadline. A finished client is done with, as a real driver
    /// would drop it; its `poll_timeout` is not consulted (a sender ended by the peer's
    /// Error keeps reporting a stale deadline, see `finished_client_has_no_deadline`).
    fn next_deadline(&mut self) -> Option<Instant> {
        let clients = self
            .clients
            .iter()
            .filter(|c| !c.session.is_finished())
            .filter_map(|c| c.session.poll_timeout());
        clients.chain(self.table.poll_timeout()).min()
    }

    /// Whether nothing is in flight and no endpoint has a deadline: nothing can happen.
    pub fn is_idle(&mut self) -> bool {
        self.queue.is_empty() && self.next_deadline().is_none()
    }

    /// Delivers the next datagram or fires the next deadline, jumping the clock to it.
    /// Returns false if there was nothing to do.
    pub fn step(&mut self) -> bool {
        let arrival = self.queue.first_key_value().map(|(key, _)| key.0);
        let deadline = self.next_deadline().map(|d| self.late(d));
        match (arrival, deadline) {
            (None, None) => return false,
            // A datagram due no later than every deadline goes first.
            (Some(at), None) => self.deliver_next(at),
            (Some(at), Some(deadline)) if at <= deadline => self.deliver_next(at),
            (_, Some(deadline)) => self.fire_deadlines(deadline),
        }
        self.steps += 1;
        self.flush();
        true
    }

    /// When a timer due at `deadline` actually fires: up to `timer_slack` later, the same
    /// for the same deadline (so the run stays a function of its seed).
    fn late(&self, deadline: Instant) -> Instant {
        if self.timer_slack.is_zero() {
            return deadline;
        }
        let key = deadline.saturating_duration_since(self.epoch).as_nanos() as u64;
        let slack = Rng::new(self.seed ^ key).below(self.timer_slack.as_nanos() as u64 + 1);
        deadline + Duration::from_nanos(slack)
    }

    fn deliver_next(&mut self, at: Instant) {
        let Some((_, flight)) = self.queue.pop_first() else {
            return;
        };
        self.now = self.now.max(at);
        self.arrivals.push(Arrival {
            at: self.elapsed(),
            sent: flight.sent,
            intact: flight.intact,
        });
        if flight.to == SERVER && self.version_1_server && is_other_version(&flight.bytes) {
            if let Some(reply) = version_1_refusal(&flight.bytes) {
                self.send(SERVER, flight.from, &reply);
            }
        } else if flight.to == SERVER {
            self.table
                .handle_datagram(self.now, flight.from, &flight.bytes);
        } else if let Some(&i) = self.by_addr.get(&flight.to) {
            self.clients[i]
                .session
                .handle_datagram(self.now, &flight.bytes);
        } else {
            self.strays.push((flight.to, flight.bytes));
        }
    }

    fn fire_deadlines(&mut self, deadline: Instant) {
        self.now = self.now.max(deadline);
        let now = self.now;
        for client in &mut self.clients {
            let due = client.session.poll_timeout().is_some_and(|d| d <= now);
            if due && !client.session.is_finished() {
                client.session.handle_timeout(now);
            }
        }
        if self.table.poll_timeout().is_some_and(|d| d <= now) {
            self.table.handle_timeout(now);
        }
    }

    /// Steps until nothing can happen any more, or a bound is hit. Returns true iff the
    /// network went idle with every client finished and the table empty.
    pub fn run_bounded(&mut self, max_steps: u64, max_virtual_time: Duration) -> bool {
        loop {
            if self.is_idle() {
                return self.clients.iter().all(|c| c.session.is_finished())
                    && self.table.is_empty();
            }
            if self.steps >= max_steps || self.elapsed() > max_virtual_time {
                return false;
            }
            self.step();
        }
    }

    /// [`Sim::run_bounded`] with generous bounds, asserting it finished.
    pub fn run(&mut self) {
        let finished = self.run_bounded(2_000_000, Duration::from_secs(600));
        assert!(
            finished,
            "simulation did not finish: {} steps, {:?} virtual, {} in flight, table {}",
            self.steps,
            self.elapsed(),
            self.queue.len(),
            self.table.len()
        );
    }

    /// Steps until `done` holds; false if the network went idle first or `max_steps` passed.
    pub fn run_until(&mut self, max_steps: u64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        false
    }

    /// Client `i`'s outcome.
    pub fn outcome(&self, i: usize) -> Option<Outcome> {
        self.clients[i].session.outcome()
    }

    /// Client `i`'s transfer counters.
    pub fn stats(&self, i: usize) -> Stats {
        self.clients[i].session.stats()
    }

    /// The bytes client `i` received, and whether its sink was committed.
    pub fn received(&self, i: usize) -> (Vec<u8>, bool) {
        let sink = lock(&self.clients[i].sink);
        (sink.data.clone(), sink.committed)
    }

    /// Link counters of client `i`: (up, down).
    pub fn link_stats(&self, i: usize) -> (LinkStats, LinkStats) {
        (
            self.clients[i].up.stats().clone(),
            self.clients[i].down.stats().clone(),
        )
    }

    /// Sends from `from` of `kind`.
    pub fn sends(&self, from: SocketAddr, kind: Kind) -> impl Iterator<Item = &Sent> + '_ {
        self.sent
            .iter()
            .filter(move |s| s.from == from && s.kind == Some(kind))
    }

    /// The longest stretch in which one end of `client`'s transfer received nothing *new*
    /// intact from the other, a new message being the first intact arrival of its (kind,
    /// session, seq). Progress on either side of a stop-and-wait transfer needs a new
    /// message, so a clean timeout implies a silence of at least the configured timeout.
    pub fn longest_silence(&self, client: usize) -> Duration {
        let (start, end) = self.silence_window(client);
        end - start
    }

    /// The sends from `from_index` on, one line each with the fate of every copy, for
    /// reading a failing run.
    pub fn transcript(&self, from_index: usize) -> String {
        let mut copies: HashMap<usize, Vec<String>> = HashMap::new();
        for a in &self.arrivals {
            let note = if a.intact { "" } else { " damaged" };
            copies
                .entry(a.sent)
                .or_default()
                .push(format!("{:?}{note}", a.at));
        }
        let mut out = String::new();
        for s in self.sent.iter().skip(from_index) {
            let name = |addr: SocketAddr| {
                if addr == SERVER {
                    "server".to_string()
                } else {
                    format!("{addr}")
                }
            };
            let arrived = copies.remove(&s.index).unwrap_or_default();
            out.push_str(&format!(
                "#{} {:?} {} -> {} {:?} s={:08x} seq={} len={} arrived={:?}\n",
                s.index,
                s.at,
                name(s.from),
                name(s.to),
                s.kind,
                s.session,
                s.seq,
                s.len,
                arrived
            ));
        }
        out
    }

    /// Where [`Sim::longest_silence`] lies, as (start, end) since the epoch.
    pub fn silence_window(&self, client: usize) -> (Duration, Duration) {
        let addr = self.clients[client].addr;
        let since = self.clients[client].started;
        let until = self.clients[client].ended.unwrap_or_else(|| self.elapsed());
        let mut best = (since, since);
        for (from, to) in [(SERVER, addr), (addr, SERVER)] {
            let mut seen = HashSet::new();
            let mut last = since;
            let mut consider = |start: Duration, end: Duration| {
                if end.saturating_sub(start) > best.1.saturating_sub(best.0) {
                    best = (start, end);
                }
            };
            for arrival in &self.arrivals {
                let sent = &self.sent[arrival.sent];
                if arrival.at > until {
                    break;
                }
                if !arrival.intact || sent.from != from || sent.to != to {
                    continue;
                }
                if seen.insert((sent.kind, sent.session, sent.seq)) {
                    consider(last, arrival.at);
                    last = arrival.at;
                }
            }
            consider(last, until);
        }
        best
    }

    /// Every wait of `client` for something new from the server (a download's or listing's
    /// receiver), with how many datagrams between the two (either way) were lost in it:
    /// (the wait, the losses). A wait with one loss, after one without, is the recovery from
    /// a single loss ([`Sim::single_loss_waits`]).
    pub fn waits_with_losses(&self, client: usize) -> Vec<(Duration, usize)> {
        let addr = self.clients[client].addr;
        let ours = |s: &Sent| (s.from, s.to) == (SERVER, addr) || (s.from, s.to) == (addr, SERVER);
        let arrived: HashSet<usize> = self
            .arrivals
            .iter()
            .filter(|a| a.intact)
            .map(|a| a.sent)
            .collect();
        let mut seen = HashSet::new();
        let mut news = vec![self.clients[client].started];
        for arrival in self.arrivals.iter().filter(|a| a.intact) {
            let sent = &self.sent[arrival.sent];
            if (sent.from, sent.to) == (SERVER, addr)
                && seen.insert((sent.kind, sent.session, sent.seq))
            {
                news.push(arrival.at);
            }
        }
        // Lost sends of ours before each send (the sends are in time order).
        let mut lost_before = vec![0];
        for s in &self.sent {
            let lost = ours(s) && !arrived.contains(&s.index);
            lost_before.push(lost_before.last().copied().unwrap_or(0) + usize::from(lost));
        }
        let at = |t: Duration| self.sent.partition_point(|s| s.at < t);
        news.windows(2)
            .map(|w| (w[1] - w[0], lost_before[at(w[1])] - lost_before[at(w[0])]))
            .collect()
    }

    /// The recoveries of `client` from single losses: each wait for something new with one
    /// loss in it that follows a wait without loss (a loss right after another finds its
    /// timer backed off, and is a run of losses, not a single one). The first wait, for the
    /// Accept, is left out: a request has no round trip yet and repeats after `rto_initial`.
    pub fn single_loss_waits(&self, client: usize) -> Vec<Duration> {
        self.single_loss_waits_after(client, Duration::ZERO)
    }

    /// [`Sim::single_loss_waits`] that begin `settled` or more after the client started.
    pub fn single_loss_waits_after(&self, client: usize, settled: Duration) -> Vec<Duration> {
        let mut begins = self.clients[client].started;
        let mut out = Vec::new();
        let waits = self.waits_with_losses(client);
        for (i, &(wait, lost)) in waits.iter().enumerate() {
            let calm_before = i > 0 && waits[i - 1].1 == 0;
            if calm_before && lost == 1 && begins >= self.clients[client].started + settled {
                out.push(wait);
            }
            begins += wait;
        }
        out
    }

    /// Datagrams other than Errors the server and `client` sent each other in
    /// `start..end`: the tries of whoever was waiting.
    pub fn sends_within(&self, client: usize, start: Duration, end: Duration) -> usize {
        let addr = self.clients[client].addr;
        self.sent
            .iter()
            .filter(|s| s.at >= start && s.at < end && !s.injected)
            .filter(|s| s.kind != Some(Kind::Error))
            .filter(|s| (s.from, s.to) == (SERVER, addr) || (s.from, s.to) == (addr, SERVER))
            .count()
    }

    /// A one-line account of client `i`'s run, for assertion messages.
    pub fn describe(&self, i: usize) -> String {
        let (up, down) = self.link_stats(i);
        format!(
            "client {i} {:?}: outcome {:?} after {:?}; stats {:?}; up [{}]; down [{}]; server [{}]; {} steps, {:?} virtual",
            self.clients[i].ask.clone().short(),
            self.outcome(i),
            self.clients[i].ended,
            self.stats(i),
            up.summary(),
            down.summary(),
            self.table.stats().summary(),
            self.steps,
            self.elapsed(),
        )
    }
}

/// A bottleneck shared by every client in one direction: the shared link model with only a
/// rate (bytes per second) and a drop-tail queue of `queue` datagrams.
pub fn bottleneck(rate: u64, queue: usize) -> Link {
    Link::new(
        Impairments {
            rate,
            queue,
            ..Impairments::default()
        },
        0,
    )
}

/// Whether `bytes` is an intact datagram of a version other than 1.
fn is_other_version(bytes: &[u8]) -> bool {
    matches!(
        Message::decode(bytes),
        Ok(_) | Err(udpft::proto::DecodeError::UnsupportedVersion(_))
    ) && bytes[2] != udpft::proto::wire::VERSION
}

/// What a server of version 1 answers to a datagram of another version: an Error
/// `UnsupportedVersion` (version 1) to a request, nothing to anything else.
fn version_1_refusal(bytes: &[u8]) -> Option<Vec<u8>> {
    if !udpft::proto::wire::is_request_type(bytes) {
        return None;
    }
    let session = udpft::proto::wire::peek_session(bytes)?;
    let mut buf = vec![0u8; 256];
    let n = Message::Error {
        session,
        code: ErrorCode::UnsupportedVersion,
        text: format!(
            "protocol version {} is not supported; this server speaks version 1",
            bytes[2]
        )
        .as_bytes(),
    }
    .encode(&mut buf);
    buf.truncate(n);
    Some(buf)
}

impl Ask {
    fn short(self) -> String {
        match self {
            Ask::List => "list".into(),
            Ask::Get(name) => format!("get {}", String::from_utf8_lossy(&name)),
            Ask::Put(name, bytes) => {
                format!(
                    "put {} ({} bytes)",
                    String::from_utf8_lossy(&name),
                    bytes.len()
                )
            }
        }
    }
}

/// Whether a failure is a clean give-up: our own timeout, or the peer telling us it timed out.
pub fn is_clean_timeout(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failed(Failure::Timeout { .. })
            | Outcome::Failed(Failure::Peer {
                code: ErrorCode::Timeout,
                ..
            })
    )
}
