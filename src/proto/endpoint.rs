//! The front door: every datagram a server receives passes through one [`Endpoint`], in
//! every server model, and comes out as one thing for the driver to do ([`Event`]).
//!
//! The endpoint owns what makes a server safe to expose, so that no model can forget a
//! rule: it decodes requests and counts malformed datagrams by kind; drops datagrams from
//! addresses the access list refuses (unanswered: a reply would confirm the server to a
//! scanner); judges requests ([`super::admission`]); answers an acceptable one with an
//! Accept while keeping only a small grant in a bounded cache ([`super::pending`]); and
//! opens a session only when the peer proves it receives at its address by sending a
//! datagram that carries the session id the Accept told it. Before that proof a peer costs
//! the server no file, no buffer, no session slot and O(1) work per datagram, and is sent
//! at most [`AMPLIFICATION_FACTOR`] times what it sent (one Accept or one Error per
//! datagram, never on a timer). Errors to strangers (for datagrams of no session) are
//! rate-limited too.
//!
//! The session id is a keyed hash of the peer and its request token (the key is the
//! driver's, drawn from the OS), so a repeated request gets the same Accept without the
//! endpoint looking anything up, and nobody elsewhere can guess it.
//!
//! It also keeps the table of live sessions' owners (peer, operation, name, progress) for
//! per-address limits, for picking a slow session to yield its slot when the server is
//! full, for the one log line each session ends with ([`Record`]), for shutdown, and for
//! answering a repeated Done after an upload's session has ended (a small tombstone instead
//! of a lingering session). The sessions themselves live in the driver: a table, a thread,
//! a child process.

use super::admission::Policy;
use super::grant::{Grant, Op};
use super::pending::Pending;
use super::refusal::{clip_error_text, Refusal, AMPLIFICATION_FACTOR};
use super::server_session::{End, Input, ServerSession};
use super::stats::ServerStats;
use super::store::Store;
use super::wire::{is_request_type, peek_session, DecodeError, ErrorCode, Kind, Message};
use super::{Failure, Outcome, WindowStats};
use crate::tftp::admit::judge as judge_tftp;
use crate::tftp::blocks::wire as block_number;
use crate::tftp::{Packet, TftpCode, TftpError};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A session's key: its peer and its session id.
pub type Key = (SocketAddr, u32);

/// A keyed hash of (peer, request token, attempt) to a session id: unpredictable to anyone
/// without the key. The driver supplies it ([`crate::ids::SessionKey`]).
pub type SessionMac = Box<dyn Fn(SocketAddr, u32, u32) -> u32 + Send>;

/// How often drivers report each live session's progress ([`Endpoint::progress`]).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The span over which a session's rate is judged.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// How often expired grants and tombstones are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long the "is any session slow?" answer for a full server is reused.
const CENSUS_EVERY: Duration = Duration::from_millis(100);

/// Checksums one IP address may have running at once (protocol.md §22.3): hashing is the
/// one request whose cost is CPU, not bandwidth, so a peer gets one at a time.
pub const MAX_SUMS_PER_ADDRESS: usize = 1;

/// Tombstones of completed uploads kept at most.
const MAX_TOMBS: usize = 4096;

/// Errors to strangers (for datagrams of no session, or of another protocol version) a
/// second, in all and per address (hashed into [`BUCKETS`]). Requests are not limited
/// here: each gets one reply (an Accept or a refusal) within the amplification limit.
const STRANGER_RATE: f64 = 2000.0;
const STRANGER_BURST: f64 = 400.0;
const PER_ADDRESS_RATE: f64 = 200.0;
const PER_ADDRESS_BURST: f64 = 50.0;
const BUCKETS: usize = 64;

/// What the driver does with a datagram.
#[derive(Debug)]
pub enum Event<'a> {
    /// Nothing: it was dropped, counted, or answered from the endpoint's own queue (send
    /// that with [`Endpoint::poll_transmit`]).
    Nothing,
    /// A peer proved its address: start the session of `grant` ([`Endpoint::start`], or
    /// [`Grant::start`] in a process with its own store) and hand it the datagram that
    /// proved it.
    Open(Box<Grant>, Input<'a>),
    /// For the live session `key`.
    Deliver(Key, Input<'a>),
}

/// Something the endpoint asks the driver to do to a live session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// End the session now, telling its peer `code` and `text` (a shutdown, or a slow
    /// session yielding its slot).
    Abort {
        /// The session.
        key: Key,
        /// The code its peer is told.
        code: ErrorCode,
        /// The text its peer is told.
        text: &'static str,
    },
}

/// The end of one session, for the log: who, what, how much, how long, how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The peer.
    pub peer: SocketAddr,
    /// What it asked.
    pub op: Op,
    /// The file name (raw bytes from the network: sanitise before printing).
    pub name: Vec<u8>,
    /// File bytes moved (sent and acknowledged, or received).
    pub bytes: u64,
    /// From the proof to the end.
    pub duration: Duration,
    /// The session spoke TFTP.
    pub tftp: bool,
    /// `None` if complete, else why it failed.
    pub failure: Option<Failure>,
    /// What a windowed sender's congestion window did (all zero otherwise).
    pub window: WindowStats,
}

/// What a shutdown is waiting for: live sessions by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Downloads (and listings) running.
    pub downloads: usize,
    /// Uploads running.
    pub uploads: usize,
}

/// What the peer of a session abandoned by a stop is told.
pub const SHUTTING_DOWN: &str = "server shutting down; run the same command again to resume";
/// What the peer of a slow session that yielded its slot is told.
pub const YIELDED: &str =
    "server busy: your transfer was too slow and yielded its slot; run the same command again to resume";

struct Live {
    token: u32,
    op: Op,
    tftp: bool,
    name: Box<[u8]>,
    started: Instant,
    done_seq: u64,
    /// Whether the session runs windowed (version 2, §20): its tombstone answers Data too.
    windowed: bool,
    progress: u64,
    /// The start of the current rate window: (when, bytes then).
    mark: (Instant, u64),
    /// Bytes a second over the last whole window.
    rate: Option<u64>,
    aborted: bool,
}

impl Live {
    fn rate(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.mark.0);
        if elapsed >= RATE_WINDOW {
            per_second(self.progress - self.mark.1, elapsed)
        } else {
            self.rate.unwrap_or(u64::MAX)
        }
    }

    fn is_slow(&self, now: Instant, min_rate: u64) -> bool {
        !self.aborted
            && now.saturating_duration_since(self.started) >= RATE_WINDOW
            && self.rate(now) < min_rate
    }
}

fn per_second(bytes: u64, over: Duration) -> u64 {
    (bytes as f64 / over.as_secs_f64().max(1e-9)) as u64
}

struct Tomb {
    /// The final sequence number (udpft Done) or block index (TFTP DATA) whose
    /// acknowledgement a repeat asks for.
    seq: u64,
    tftp: bool,
    until: Instant,
    /// A windowed upload's sender may retransmit a chunk rather than its Done when the Ack
    /// of Done is lost (§20.5): the tombstone answers those too, with a selective Ack.
    windowed: bool,
}

enum Body {
    Accept(Message<'static>),
    Error {
        code: ErrorCode,
        text: String,
        /// The size of the datagram answered: the reply may be at most 3× that.
        received: usize,
    },
    /// A version-1 Ack.
    Ack(u64),
    /// A selective Ack of a windowed session, with nothing above `seq`.
    Sack(u64),
    /// A TFTP packet, encoded already.
    Raw(Vec<u8>),
}

struct Reply {
    peer: SocketAddr,
    session: u32,
    body: Body,
}

/// A token bucket.
#[derive(Clone, Copy, Default)]
struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.take_n(now, rate, burst, 1.0)
    }

    /// Whether `cost` tokens are there now (refilling, taking none).
    fn can(&mut self, now: Instant, rate: f64, burst: f64, cost: f64) -> bool {
        let refill = self.last.map_or(burst, |t| {
            now.saturating_duration_since(t).as_secs_f64() * rate
        });
        self.tokens = (self.tokens + refill).min(burst);
        self.last = Some(now);
        self.tokens >= cost
    }

    /// Takes `cost` tokens if there are that many.
    fn take_n(&mut self, now: Instant, rate: f64, burst: f64, cost: f64) -> bool {
        let there = self.can(now, rate, burst, cost);
        if there {
            self.tokens -= cost;
        }
        there
    }
}

/// The front door of one server (one per loop; see the module docs).
pub struct Endpoint {
    policy: Policy,
    store: Box<dyn Store>,
    mac: SessionMac,
    pending: Pending,
    live: HashMap<Key, Live>,
    aborted: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Live checksums per IP address: at most [`MAX_SUMS_PER_ADDRESS`] each.
    sums: HashMap<IpAddr, usize>,
    tombs: HashMap<Key, Tomb>,
    tomb_order: VecDeque<Key>,
    replies: VecDeque<Reply>,
    actions: VecDeque<Action>,
    strangers: Bucket,
    buckets: [Bucket; BUCKETS],
    /// Bytes to unproven TFTP peers, in all and per source prefix.
    tftp_bytes: Bucket,
    tftp_prefixes: [Bucket; BUCKETS],
    /// When the grace period of a stop ends; `None` while serving.
    draining: Option<Instant>,
    grace_over: bool,
    next_sweep: Option<Instant>,
    census: Option<(Instant, bool)>,
    /// The same for the sessions of one address at its cap: (when, address, answer).
    census_of: Option<(Instant, IpAddr, bool)>,
    stats: ServerStats,
}

impl Endpoint {
    /// A front door deciding by `policy`, judging requests against `store`, naming
    /// sessions with `mac`.
    pub fn new(policy: Policy, store: Box<dyn Store>, mac: SessionMac) -> Self {
        let pending = Pending::new(policy.limits.max_unproven);
        Self {
            policy,
            store,
            mac,
            pending,
            live: HashMap::new(),
            aborted: 0,
            per_address: HashMap::new(),
            sums: HashMap::new(),
            tombs: HashMap::new(),
            tomb_order: VecDeque::new(),
            replies: VecDeque::new(),
            actions: VecDeque::new(),
            strangers: Bucket::default(),
            buckets: [Bucket::default(); BUCKETS],
            tftp_bytes: Bucket::default(),
            tftp_prefixes: [Bucket::default(); BUCKETS],
            draining: None,
            grace_over: false,
            next_sweep: None,
            census: None,
            census_of: None,
            stats: ServerStats::default(),
        }
    }

    /// The policy it decides by.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Handles one datagram from `peer`.
    pub fn handle<'a>(&mut self, now: Instant, peer: SocketAddr, datagram: &'a [u8]) -> Event<'a> {
        self.stats.received += 1;
        if !self.policy.access.permits(peer.ip()) {
            self.stats.denied += 1;
            return Event::Nothing;
        }
        if self.policy.tftp.is_some() && crate::tftp::is_tftp(datagram) {
            return self.handle_tftp(now, peer, datagram);
        }
        let message = match Message::decode(datagram) {
            Ok(message) => message,
            Err(error) => {
                self.stats.rejected[error.index()] += 1;
                // Only a request of another version is answered: never answer what might be
                // another version's error (two servers could answer each other forever).
                if let DecodeError::UnsupportedVersion(v) = error {
                    if is_request_type(datagram) {
                        let token = peek_session(datagram).unwrap_or(0);
                        let refusal = Refusal::unsupported_version(v);
                        self.refuse_stranger(now, peer, token, refusal, datagram.len());
                    }
                }
                return Event::Nothing;
            }
        };
        match message.kind() {
            Kind::List | Kind::Get | Kind::Put | Kind::Sum => {
                self.handle_request(now, peer, &message, datagram.len());
                Event::Nothing
            }
            Kind::Accept => {
                self.stats.unexpected += 1;
                Event::Nothing
            }
            Kind::Data | Kind::Ack | Kind::Done | Kind::Error => {
                self.route(now, peer, message, datagram.len())
            }
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        request: &Message<'_>,
        len: usize,
    ) {
        let token = request.session();
        if token == 0 {
            // A reply to token 0 could not be told from a reply to any other such request.
            self.stats.zero_token += 1;
            return;
        }
        let Some(session) = self.session_id(peer, token) else {
            return; // a repeat of a running session's request: a stale duplicate
        };
        if self.draining.is_some() {
            self.refuse_request(peer, token, Refusal::shutting_down(), len);
            return;
        }
        let judged = self
            .policy
            .judge(self.store.as_mut(), peer, session, request)
            .and_then(|grant| match self.capacity(now, peer.ip(), false) {
                Some(refusal) => Err(refusal),
                None => Ok(grant),
            });
        let mut grant = match judged {
            Ok(grant) => grant,
            Err(refusal) => {
                self.refuse_request(peer, token, refusal, len);
                return;
            }
        };
        // The Accept → proof round trip sets the session's first timeouts (an underestimate,
        // if the proof answered an earlier Accept, costs at most an early retransmission).
        grant.accepted_at = Some(now);
        // One Accept per request: 44 bytes, within 3× of the smallest request (24).
        self.queue(Reply {
            peer,
            session: token,
            body: Body::Accept(grant.accept()),
        });
        let expires = now + self.policy.session.timeout;
        if self.pending.insert(grant, expires, now) {
            self.stats.unproven_forgotten += 1;
        }
        self.next_sweep.get_or_insert(now + SWEEP_EVERY);
    }

    /// The session id for (peer, token): the first of a few keyed hashes that is non-zero
    /// and not a live session of another request; `None` if a live session already answers
    /// this very request.
    fn session_id(&self, peer: SocketAddr, token: u32) -> Option<u32> {
        for attempt in 0..8 {
            let id = (self.mac)(peer, token, attempt);
            match self.live.get(&(peer, id)) {
                _ if id == 0 => continue,
                Some(live) if live.token == token => return None,
                Some(_) => continue,
                None => return Some(id),
            }
        }
        None
    }

    fn route<'a>(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        message: Message<'a>,
        len: usize,
    ) -> Event<'a> {
        let key = (peer, message.session());
        if self.live.contains_key(&key) {
            return Event::Deliver(key, Input::Udpft(message));
        }
        if let Some(grant) = self.pending.take(peer, key.1, now) {
            if message.kind() == Kind::Error {
                return Event::Nothing; // the client gave up before it began
            }
            return self.prove(now, grant, Input::Udpft(message));
        }
        if let Some(tomb) = self.tombs.get(&key).filter(|t| !t.tftp) {
            // A completed upload's Ack of Done was lost: say it again (a windowed sender may
            // be retransmitting one of its chunks instead, §20.5).
            let repeated = match message {
                Message::Done { seq, .. } => seq == tomb.seq,
                Message::Data { seq, .. } => tomb.windowed && seq < tomb.seq,
                _ => false,
            };
            if repeated && now < tomb.until {
                let body = if tomb.windowed {
                    Body::Sack(tomb.seq)
                } else {
                    Body::Ack(tomb.seq)
                };
                self.queue(Reply {
                    peer,
                    session: key.1,
                    body,
                });
            }
            return Event::Nothing;
        }
        self.stats.unknown_session += 1;
        if message.kind() != Kind::Error {
            self.refuse_stranger(now, peer, key.1, Refusal::unknown_session(), len);
        }
        Event::Nothing
    }

    /// The peer of `grant` proved its address with `input`: admit its session, unless the
    /// server is stopping or full (a slow session may yield its slot).
    fn prove<'a>(&mut self, now: Instant, grant: Grant, input: Input<'a>) -> Event<'a> {
        self.stats.proven += 1;
        let key = (grant.peer, grant.session);
        let refusal = if self.draining.is_some() {
            Some(Refusal::shutting_down())
        } else {
            self.sum_busy(&grant)
                .or_else(|| self.capacity(now, grant.peer.ip(), true))
        };
        if let Some(refusal) = refusal {
            self.stats.refused += 1;
            if grant.tftp.is_some() {
                let error = TftpError::new(TftpCode::from_udpft(refusal.code), refusal.text);
                self.queue_tftp(key.0, &error);
            } else {
                self.refuse_proven(key, refusal);
            }
            return Event::Nothing;
        }
        self.live.insert(
            key,
            Live {
                token: grant.token,
                op: grant.op,
                tftp: grant.tftp.is_some(),
                name: grant.name().into(),
                started: now,
                done_seq: grant.done_seq(),
                windowed: grant.window > 1,
                progress: grant.offset,
                mark: (now, grant.offset),
                rate: None,
                aborted: false,
            },
        );
        *self.per_address.entry(grant.peer.ip()).or_insert(0) += 1;
        if grant.op == Op::Sum {
            *self.sums.entry(grant.peer.ip()).or_insert(0) += 1;
        }
        Event::Open(Box::new(grant), input)
    }

    /// Whether `grant` is a checksum from an address that has its share running already:
    /// then the refusal (Busy). Judged at the proof only, where the hashing would start: at
    /// a request, the end of the same client's previous checksum may still be on its way
    /// from the thread or process that ran it, and the client asks again at once.
    fn sum_busy(&self, grant: &Grant) -> Option<Refusal> {
        let running = self.sums.get(&grant.peer.ip()).copied().unwrap_or(0);
        (grant.op == Op::Sum && running >= MAX_SUMS_PER_ADDRESS)
            .then(|| Refusal::busy("one checksum at a time from your address"))
    }

    /// Whether a session from `ip` may start now: `None` if so, else the refusal. With
    /// `evict`, a full server asks its slowest slow session to yield its slot.
    fn capacity(&mut self, now: Instant, ip: IpAddr, evict: bool) -> Option<Refusal> {
        let limits = &self.policy.limits;
        if self.per_address.get(&ip).copied().unwrap_or(0) >= limits.max_per_address {
            // An address at its cap may still replace one of its own slow sessions: otherwise
            // slow-drip sessions from a shared address (a NAT, or a spoofer who proved it can
            // receive there) would lock everyone else behind it out.
            let refusal = Refusal::busy("too many sessions from your address");
            return self.make_room(now, evict, Some(ip), refusal);
        }
        if self.live.len() - self.aborted < limits.max_sessions {
            return None;
        }
        let refusal = Refusal::busy(limits.full);
        self.make_room(now, evict, None, refusal)
    }

    /// Room for one more session among those of `of` (`None`: all): before proof, whether a
    /// slow one could yield (cached, so unproven requests cost no scan each); at proof
    /// (`evict`), the slowest yields. `refusal` when none is slow.
    fn make_room(
        &mut self,
        now: Instant,
        evict: bool,
        of: Option<IpAddr>,
        refusal: Refusal,
    ) -> Option<Refusal> {
        if !evict {
            return (!self.any_slow(now, of)).then_some(refusal);
        }
        match self.slowest(now, of) {
            Some(key) => {
                self.yield_slot(key);
                None
            }
            None => Some(refusal),
        }
    }

    /// The live sessions of `of` (`None`: all) slow enough to yield.
    fn slow_sessions(
        &self,
        now: Instant,
        of: Option<IpAddr>,
    ) -> impl Iterator<Item = (&Key, &Live)> + '_ {
        let min_rate = self.policy.limits.min_rate;
        self.live.iter().filter(move |(key, live)| {
            of.is_none_or(|ip| key.0.ip() == ip) && live.is_slow(now, min_rate)
        })
    }

    /// The slowest of the slow live sessions of `of`.
    fn slowest(&self, now: Instant, of: Option<IpAddr>) -> Option<Key> {
        self.slow_sessions(now, of)
            .min_by_key(|(_, live)| live.rate(now))
            .map(|(key, _)| *key)
    }

    /// Ends the slow session `key` so that a new proven peer takes its slot.
    fn yield_slot(&mut self, key: Key) {
        self.stats.yielded += 1;
        self.census = None;
        self.census_of = None;
        self.abort(key, ErrorCode::Busy, YIELDED);
    }

    /// Whether a live session of `of` (`None`: any) is slow enough to yield; the answer is
    /// reused for [`CENSUS_EVERY`] (one for the whole table, one for the last address
    /// asked), so unproven requests cost no scan each.
    fn any_slow(&mut self, now: Instant, of: Option<IpAddr>) -> bool {
        let cached = match of {
            None => self.census,
            Some(ip) => self
                .census_of
                .filter(|&(_, at_ip, _)| at_ip == ip)
                .map(|(at, _, answer)| (at, answer)),
        };
        if let Some((at, answer)) = cached {
            if now.saturating_duration_since(at) < CENSUS_EVERY {
                return answer;
            }
        }
        let answer = self.slow_sessions(now, of).next().is_some();
        match of {
            None => self.census = Some((now, answer)),
            Some(ip) => self.census_of = Some((now, ip, answer)),
        }
        answer
    }

    /// Starts the session of a proven `grant` against this endpoint's store; `None` if the
    /// store refused (the peer is told, and the slot is freed).
    pub fn start(&mut self, now: Instant, grant: &Grant) -> Option<ServerSession> {
        match grant.start(now, &self.policy.session, self.store.as_mut()) {
            Ok(session) => {
                self.stats.opened += 1;
                Some(session)
            }
            Err(refusal) if grant.tftp.is_some() => {
                self.open_failed((grant.peer, grant.session), None);
                self.queue_tftp(grant.peer, &TftpError::from_refusal(&refusal));
                None
            }
            Err(refusal) => {
                self.open_failed((grant.peer, grant.session), Some(refusal));
                None
            }
        }
    }

    /// A session that was to start did not (the store refused): frees its slot, and tells
    /// its peer `refusal` unless the driver already did (`None`).
    pub fn open_failed(&mut self, key: Key, refusal: Option<Refusal>) {
        self.forget_live(key);
        self.stats.refused += 1;
        if let Some(refusal) = refusal {
            self.refuse_proven(key, refusal);
        }
    }

    /// The session `key` started elsewhere (a child process that opened it with its own
    /// store): counts it as opened.
    pub fn opened(&mut self) {
        self.stats.opened += 1;
    }

    /// A live session has moved `bytes` of its file so far (drivers report every
    /// [`PROGRESS_EVERY`]); its rate decides whether it yields when the server is full.
    pub fn progress(&mut self, key: Key, bytes: u64, now: Instant) {
        if let Some(live) = self.live.get_mut(&key) {
            live.progress = bytes;
            let elapsed = now.saturating_duration_since(live.mark.0);
            if elapsed >= RATE_WINDOW {
                live.rate = Some(per_second(bytes.saturating_sub(live.mark.1), elapsed));
                live.mark = (now, bytes);
            }
        }
    }

    /// An upload was committed to the store by another process (the fork model's child):
    /// the store's listing must not be reused from before it.
    pub fn committed(&mut self) {
        self.store.committed();
    }

    /// The live session `key` is over (see [`super::server_session::server_done`]), as
    /// `end` says: frees its slot, keeps a tombstone for a completed upload (to answer a
    /// repeated Done, or a repeated last TFTP block), and returns its log record.
    pub fn ended(&mut self, key: Key, end: &End, now: Instant) -> Option<Record> {
        let outcome = end.outcome.as_ref();
        let live = self.forget_live(key)?;
        self.stats.count_outcome(outcome);
        let complete = matches!(outcome, Some(Outcome::Complete));
        if complete && live.op == Op::Put {
            match (live.tftp, end.final_block) {
                (false, _) => self.bury(key, live.done_seq, false, live.windowed, now),
                (true, Some(block)) => self.bury(key, block, true, false, now),
                (true, None) => {}
            }
        }
        Some(Record {
            peer: key.0,
            op: live.op,
            name: live.name.into_vec(),
            bytes: end.bytes,
            duration: now.saturating_duration_since(live.started),
            tftp: live.tftp,
            window: end.window,
            failure: match outcome {
                Some(Outcome::Complete) => None,
                Some(Outcome::Failed(failure)) => Some(failure.clone()),
                None => Some(Failure::Local {
                    code: ErrorCode::Other,
                    text: "ended without an outcome".into(),
                }),
            },
        })
    }

    fn forget_live(&mut self, key: Key) -> Option<Live> {
        let live = self.live.remove(&key)?;
        if live.aborted {
            self.aborted -= 1;
        }
        let ip = key.0.ip();
        let counts: &mut [&mut HashMap<IpAddr, usize>] = if live.op == Op::Sum {
            &mut [&mut self.per_address, &mut self.sums]
        } else {
            &mut [&mut self.per_address]
        };
        for count in counts.iter_mut() {
            if let Some(n) = count.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    count.remove(&ip);
                }
            }
        }
        Some(live)
    }

    fn bury(&mut self, key: Key, seq: u64, tftp: bool, windowed: bool, now: Instant) {
        if self.tombs.len() >= MAX_TOMBS {
            if let Some(oldest) = self.tomb_order.pop_front() {
                self.tombs.remove(&oldest);
            }
        }
        let until = now + self.policy.session.linger_min;
        self.tombs.insert(
            key,
            Tomb {
                seq,
                tftp,
                until,
                windowed,
            },
        );
        self.tomb_order.push_back(key);
        self.next_sweep.get_or_insert(now + SWEEP_EVERY);
    }

    fn abort(&mut self, key: Key, code: ErrorCode, text: &'static str) {
        if let Some(live) = self.live.get_mut(&key) {
            if !live.aborted {
                live.aborted = true;
                self.aborted += 1;
                self.actions.push_back(Action::Abort { key, code, text });
            }
        }
    }

    /// Begins a stop: new requests are refused, uploads are abandoned at once (nothing
    /// half-written is kept), downloads may finish within the grace period.
    pub fn shutdown(&mut self, now: Instant) {
        if self.draining.is_some() {
            return;
        }
        self.draining = Some(now + self.policy.grace);
        let uploads: Vec<Key> = self
            .live
            .iter()
            .filter(|(_, l)| l.op == Op::Put)
            .map(|(k, _)| *k)
            .collect();
        for key in uploads {
            self.abort(key, ErrorCode::ShuttingDown, SHUTTING_DOWN);
        }
    }

    /// Stops now: every live session is abandoned.
    pub fn stop_now(&mut self, now: Instant) {
        self.shutdown(now);
        self.grace_over = true;
        let keys: Vec<Key> = self.live.keys().copied().collect();
        for key in keys {
            self.abort(key, ErrorCode::ShuttingDown, SHUTTING_DOWN);
        }
    }

    /// Whether a stop began.
    pub fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    /// Whether a stop began and no session is left: the driver may exit.
    pub fn is_drained(&self) -> bool {
        self.draining.is_some() && self.live.is_empty()
    }

    /// Live sessions by kind.
    pub fn live_counts(&self) -> LiveCounts {
        let uploads = self.live.values().filter(|l| l.op == Op::Put).count();
        LiveCounts {
            downloads: self.live.len() - uploads,
            uploads,
        }
    }

    /// Live sessions.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Unproven grants held (expired ones included until the next sweep).
    pub fn unproven(&self) -> usize {
        self.pending.len()
    }

    /// The next thing the driver must do to a session, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Sweeps what expired and ends a grace period that ran out. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now >= at) {
            self.pending.sweep(now);
            while let Some(key) = self.tomb_order.front().copied() {
                match self.tombs.get(&key) {
                    Some(tomb) if tomb.until > now => break,
                    _ => {
                        self.tombs.remove(&key);
                        self.tomb_order.pop_front();
                    }
                }
            }
            let idle = self.pending.is_empty() && self.tombs.is_empty();
            self.next_sweep = (!idle).then_some(now + SWEEP_EVERY);
        }
        if let Some(end) = self.draining {
            if now >= end && !self.grace_over {
                self.stop_now(now);
            }
        }
    }

    /// When [`Endpoint::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let grace = self.draining.filter(|_| !self.grace_over);
        match (self.next_sweep, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the next reply into `buf` (at least [`super::wire::MAX_DATAGRAM`] long) and
    /// returns its destination and length; `None` when none is queued.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let reply = self.replies.pop_front()?;
        self.stats.sent += 1;
        let session = reply.session;
        let len = match &reply.body {
            Body::Accept(accept) => accept.encode(buf),
            Body::Ack(seq) => Message::Ack { session, seq: *seq }.encode(buf),
            Body::Sack(seq) => Message::Sack {
                session,
                seq: *seq,
                bitmap: &[],
            }
            .encode(buf),
            Body::Raw(bytes) => {
                buf[..bytes.len()].copy_from_slice(bytes);
                bytes.len()
            }
            Body::Error {
                code,
                text,
                received,
            } => Message::Error {
                session,
                code: *code,
                text: clip_error_text(text, *received).as_bytes(),
            }
            .encode(buf),
        };
        Some((reply.peer, len))
    }

    /// Counters so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Counters, for the driver's own counts (datagrams its sessions sent).
    pub fn stats_mut(&mut self) -> &mut ServerStats {
        &mut self.stats
    }

    fn queue(&mut self, reply: Reply) {
        if self.replies.len() >= self.policy.limits.max_replies {
            self.stats.replies_dropped += 1;
        } else {
            self.replies.push_back(reply);
        }
    }

    /// Queues an Error for a peer that proved its address (no amplification limit).
    fn refuse_proven(&mut self, key: Key, refusal: Refusal) {
        self.queue(Reply {
            peer: key.0,
            session: key.1,
            body: Body::Error {
                code: refusal.code,
                text: refusal.text,
                received: usize::MAX / AMPLIFICATION_FACTOR,
            },
        });
    }

    /// Refuses a request of `received` bytes from a peer that has not proven its address:
    /// like the Accept it would otherwise get, one reply within the amplification limit.
    fn refuse_request(&mut self, peer: SocketAddr, token: u32, refusal: Refusal, received: usize) {
        self.stats.refused += 1;
        self.queue(Reply {
            peer,
            session: token,
            body: Body::Error {
                code: refusal.code,
                text: refusal.text,
                received,
            },
        });
    }

    /// Whether one more error may go to a stranger at `ip` now (the rate limits of
    /// protocol.md §17.4); counts one that may not.
    fn stranger_allowed(&mut self, now: Instant, ip: IpAddr) -> bool {
        let bucket = address_bucket(ip);
        let ok = self.strangers.take(now, STRANGER_RATE, STRANGER_BURST)
            && self.buckets[bucket].take(now, PER_ADDRESS_RATE, PER_ADDRESS_BURST);
        if !ok {
            self.stats.rate_limited += 1;
        }
        ok
    }

    /// Queues an Error for a peer that has not proven its address, in answer to a datagram
    /// of `received` bytes: clipped to the amplification limit, and rate-limited in all and
    /// per address.
    fn refuse_stranger(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        session: u32,
        refusal: Refusal,
        received: usize,
    ) {
        if !self.stranger_allowed(now, peer.ip()) {
            return;
        }
        self.queue(Reply {
            peer,
            session,
            body: Body::Error {
                code: refusal.code,
                text: refusal.text,
                received,
            },
        });
    }
}

impl Endpoint {
    /// The key of the TFTP session with `peer` (TFTP knows no session id: a peer's address
    /// and port are its session; the id only indexes it, keyed like udpft's).
    fn tftp_key(&self, peer: SocketAddr) -> Key {
        (peer, (self.mac)(peer, 0, u32::MAX) | 1)
    }

    /// A TFTP datagram (the server speaks TFTP on this socket too).
    fn handle_tftp<'a>(&mut self, now: Instant, peer: SocketAddr, datagram: &'a [u8]) -> Event<'a> {
        let Ok(packet) = Packet::decode(datagram) else {
            self.stats.tftp_malformed += 1;
            return Event::Nothing;
        };
        let key = self.tftp_key(peer);
        if matches!(packet, Packet::Rrq(_) | Packet::Wrq(_)) {
            self.tftp_request(now, key, &packet);
            return Event::Nothing;
        }
        if self.live.contains_key(&key) {
            return Event::Deliver(key, Input::Tftp(datagram));
        }
        if let Some(grant) = self.pending.get(peer, key.1, now) {
            let terms = grant.tftp.as_deref();
            if terms.is_some_and(|t| t.is_proof(&packet)) {
                let grant = self.pending.take(peer, key.1, now).expect("just found");
                return self.prove(now, grant, Input::Tftp(datagram));
            }
            if matches!(packet, Packet::Error { .. }) {
                // The client refused the OACK (ERROR 8) or gave up: nothing opens.
                self.pending.take(peer, key.1, now);
            }
            return Event::Nothing;
        }
        if let Some(tomb) = self.tombs.get(&key).filter(|t| t.tftp) {
            // A completed upload's last ACK was lost: the client repeats its last block.
            if let Packet::Data { block, .. } = packet {
                if block == block_number(tomb.seq) && now < tomb.until {
                    let ack = Packet::Ack { block };
                    let mut bytes = vec![0u8; ack.encoded_len()];
                    let n = ack.encode(&mut bytes);
                    bytes.truncate(n);
                    self.queue(Reply {
                        peer,
                        session: key.1,
                        body: Body::Raw(bytes),
                    });
                }
            }
            return Event::Nothing;
        }
        self.stats.unknown_session += 1;
        // Only a stray DATA is answered (ERROR 5); a stray ACK or ERROR (one that answers an
        // ERROR, or comes after the end) changes nothing and is not answered.
        if matches!(packet, Packet::Data { .. }) {
            let error = TftpError::new(TftpCode::UnknownTid, "unknown transfer ID");
            let bytes = tftp_bytes(&error);
            let (ip, len) = (peer.ip(), datagram.len());
            if self.stranger_allowed(now, ip) && bytes.len() <= AMPLIFICATION_FACTOR * len {
                self.queue(Reply {
                    peer,
                    session: key.1,
                    body: Body::Raw(bytes),
                });
            }
        }
        Event::Nothing
    }

    /// A TFTP read or write request: judged by the same rules as udpft's, answered with its
    /// first packet within the byte budget of unproven TFTP peers, and kept as a grant.
    fn tftp_request(&mut self, now: Instant, key: Key, packet: &Packet<'_>) {
        let peer = key.0;
        if self.live.contains_key(&key) {
            // A repeat of the request of a running session (boot ROMs send two): nothing
            // opens twice, nothing is answered.
            return;
        }
        let Some(tftp) = self.policy.tftp.clone() else {
            return;
        };
        let mut reply = Vec::new();
        let judged = if self.draining.is_some() {
            Err(Some(TftpError::new(
                TftpCode::Undefined,
                "server shutting down",
            )))
        } else {
            let store = self.store.as_mut();
            judge_tftp(
                now,
                &tftp,
                &self.policy,
                store,
                peer.ip(),
                packet,
                &mut reply,
            )
        };
        let mut judged = match judged {
            Ok(judged) => judged,
            Err(None) => return,
            Err(Some(error)) => {
                self.stats.refused += 1;
                let bytes = tftp_bytes(&error);
                if self.tftp_budget(now, peer.ip(), bytes.len(), &tftp) {
                    self.queue(Reply {
                        peer,
                        session: key.1,
                        body: Body::Raw(bytes),
                    });
                }
                return;
            }
        };
        if let Some(refusal) = self.capacity(now, peer.ip(), false) {
            self.stats.refused += 1;
            let error = TftpError::new(TftpCode::Undefined, refusal.text);
            let bytes = tftp_bytes(&error);
            if self.tftp_budget(now, peer.ip(), bytes.len(), &tftp) {
                self.queue(Reply {
                    peer,
                    session: key.1,
                    body: Body::Raw(bytes),
                });
            }
            return;
        }
        if !self.tftp_budget(now, peer.ip(), reply.len(), &tftp) {
            return;
        }
        // A repeated request (its answer was lost) is answered again; the first send's time
        // stays, and Karn's rule knows it was sent more than once.
        if let Some(earlier) = self
            .pending
            .get(peer, key.1, now)
            .and_then(|g| g.tftp.as_deref())
        {
            judged.terms.first_sent = earlier.first_sent;
            judged.terms.first_sends = earlier.first_sends + 1;
        }
        let op = if judged.terms.write { Op::Put } else { Op::Get };
        let mut grant = Grant::new(peer, key.1, 0, op, judged.name.as_bytes());
        grant.size = judged
            .file
            .map_or(judged.terms.granted.tsize.unwrap_or(0), |f| f.size);
        grant.file = judged.file;
        grant.tftp = Some(Box::new(judged.terms));
        self.queue(Reply {
            peer,
            session: key.1,
            body: Body::Raw(reply),
        });
        let expires = now + self.policy.session.timeout * 3;
        if self.pending.insert(grant, expires, now) {
            self.stats.unproven_forgotten += 1;
        }
        self.next_sweep.get_or_insert(now + SWEEP_EVERY);
    }

    /// Whether `bytes` more may go to an unproven TFTP peer at `ip` now, within the byte
    /// budgets in all and of its source prefix; counts what may not.
    fn tftp_budget(
        &mut self,
        now: Instant,
        ip: IpAddr,
        bytes: usize,
        tftp: &crate::tftp::admit::TftpPolicy,
    ) -> bool {
        let cost = bytes as f64;
        let total = tftp.unproven_rate as f64;
        let prefix = tftp.unproven_prefix_rate as f64;
        let bucket = prefix_bucket(ip);
        // Both budgets must allow it before either is spent: a prefix over its own budget
        // must not use up the budget of everyone else.
        let ok = self.tftp_prefixes[bucket].can(now, prefix, prefix, cost)
            && self.tftp_bytes.can(now, total, total, cost);
        if ok {
            self.tftp_prefixes[bucket].take_n(now, prefix, prefix, cost);
            self.tftp_bytes.take_n(now, total, total, cost);
        } else {
            self.stats.tftp_over_budget += 1;
        }
        ok
    }

    /// Queues a TFTP error for a peer that proved its address.
    fn queue_tftp(&mut self, peer: SocketAddr, error: &TftpError) {
        let key = self.tftp_key(peer);
        self.queue(Reply {
            peer,
            session: key.1,
            body: Body::Raw(tftp_bytes(error)),
        });
    }
}

fn tftp_bytes(error: &TftpError) -> Vec<u8> {
    let mut bytes = vec![0u8; 4 + error.text.len() + 1];
    let n = error.encode(&mut bytes);
    bytes.truncate(n);
    bytes
}

/// Which TFTP byte budget an address's source prefix (IPv4 /24, IPv6 /56) draws from.
fn prefix_bucket(ip: IpAddr) -> usize {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            address_bucket(IpAddr::from([o[0], o[1], o[2], 0]))
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[7..].fill(0);
            address_bucket(IpAddr::from(o))
        }
    }
}

/// Which per-address bucket `ip` draws from (FNV-1a of its bytes; collisions only share a
/// rate limit).
fn address_bucket(ip: IpAddr) -> usize {
    let fnv = |bytes: &[u8]| {
        bytes.iter().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        })
    };
    let hash = match ip.to_canonical() {
        IpAddr::V4(v4) => fnv(&v4.octets()),
        IpAddr::V6(v6) => fnv(&v6.octets()),
    };
    hash as usize % BUCKETS
}
