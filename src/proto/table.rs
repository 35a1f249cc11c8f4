//! The server's core: turning requests into sessions, and the per-peer session table that
//! serves every peer at once from one loop.
//!
//! [`open_session`] answers one request (List, Get or Put) with a [`ServerSession`] or a
//! refusal; every server model uses it. [`SessionTable`] keys sessions by the peer's address
//! and the session id, routes each datagram to its session, fires due timers from a
//! min-heap of deadlines, and queues what the sessions want to send. A datagram for no live
//! session gets an Error reply and disturbs nothing; malformed datagrams are counted by kind.

use super::session::{Config, Failure, MemSource, Outcome, Sink, Source};
use super::transfer::{Opening, Plan, Transfer};
use super::wire::{clip_text, clip_to, DecodeError, ErrorCode, Kind, Message};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// A request the server will not serve, and why; sent to the peer as an Error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The wire code.
    pub code: ErrorCode,
    /// What the client's user reads.
    pub text: String,
}

impl Refusal {
    /// A refusal with `code` and `text`.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    /// The server cannot take another session now: `why`.
    pub fn busy(why: &str) -> Self {
        Self::new(
            ErrorCode::Busy,
            format!("server busy: {why}, try again later"),
        )
    }

    /// The server is draining for shutdown.
    pub fn shutting_down() -> Self {
        Self::new(ErrorCode::ShuttingDown, "server is shutting down")
    }

    /// A datagram named a session this peer does not have.
    pub fn unknown_session() -> Self {
        Self::new(
            ErrorCode::UnknownSession,
            "no such session (it may have ended)",
        )
    }

    /// A request of protocol version `version`, which this server does not speak.
    pub fn unsupported_version(version: u8) -> Self {
        Self::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {version} is not supported; this server speaks versions {} and {}",
                super::wire::VERSION,
                super::wire::VERSION_WINDOWED
            ),
        )
    }
}

/// Counts a datagram that failed to decode, by kind; for a request of another protocol
/// version, returns the refusal to send and the session field to address it to. Every other
/// malformed datagram is dropped silently (never answer what might be an error of another
/// version: two servers could answer each other forever).
pub fn reject(
    stats: &mut ServerStats,
    datagram: &[u8],
    error: DecodeError,
) -> Option<(u32, Refusal)> {
    stats.rejected[error.index()] += 1;
    match error {
        DecodeError::UnsupportedVersion(v) if super::wire::is_request_type(datagram) => {
            let session = super::wire::peek_session(datagram).unwrap_or(0);
            Some((session, Refusal::unsupported_version(v)))
        }
        _ => None,
    }
}

/// Counts a well-formed datagram that belongs to no live session; returns the refusal to
/// send, unless it is itself an Error (two confused peers must not answer each other).
pub fn unknown_session(stats: &mut ServerStats, message: &Message<'_>) -> Option<Refusal> {
    stats.unknown_session += 1;
    (message.kind() != Kind::Error).then(Refusal::unknown_session)
}

/// What the server serves: the library, seen through the three things a request can ask.
/// Implementations decide which names are allowed.
pub trait Store {
    /// The encoded listing (see [`super::listing`]).
    ///
    /// # Errors
    /// A refusal to send to the client.
    fn listing(&mut self) -> Result<Vec<u8>, Refusal>;

    /// Opens `name` for download: its bytes and its size.
    ///
    /// # Errors
    /// A refusal (no such file, bad name...).
    fn open(&mut self, name: &[u8]) -> Result<(Box<dyn Source>, u64), Refusal>;

    /// Starts an upload of `size` bytes as `name`; the returned sink must leave nothing
    /// visible unless committed.
    ///
    /// # Errors
    /// A refusal (exists, bad name, read-only...).
    fn create(&mut self, name: &[u8], size: u64, overwrite: bool)
        -> Result<Box<dyn Sink>, Refusal>;
}

/// How many bytes a server may send to a peer whose address is not yet proven, per byte
/// received from it (the QUIC rule, RFC 9000 §8.1): spoofed requests cannot turn the
/// server into an amplifier.
pub const AMPLIFICATION_FACTOR: usize = 3;

/// One server-side session: sending a file or listing, or receiving an upload.
///
/// Until the peer proves it receives at its address, by sending a datagram that carries
/// the session id (which only the Accept told it), the session sends at most
/// [`AMPLIFICATION_FACTOR`] times the bytes received from the peer; a datagram over that
/// budget is withheld, as if lost, and the timers try again once the budget allows (a
/// repeated request adds to it). Data and listings flow only after the proof, since the
/// first Data follows the peer's Ack of the Accept.
pub struct ServerSession {
    half: Transfer,
    validated: bool,
    credit: usize,
}

impl ServerSession {
    fn new(half: Transfer, request_len: usize) -> Self {
        Self {
            half,
            validated: false,
            credit: request_len.saturating_mul(AMPLIFICATION_FACTOR),
        }
    }

    /// Handles one decoded datagram addressed to this session.
    pub fn handle_message(&mut self, now: Instant, message: &Message<'_>) {
        if message.session() == self.session() {
            self.validated = true;
        }
        self.half.handle_message(now, message);
    }
    /// A repeat of the request that opened the session arrived, `len` bytes long: it adds
    /// to what may be sent before the peer's address is proven.
    pub fn handle_repeated_request(&mut self, len: usize) {
        self.credit = self
            .credit
            .saturating_add(len.saturating_mul(AMPLIFICATION_FACTOR));
    }
    /// Fires due timers; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.half.handle_timeout(now);
    }
    /// The next datagram to send, if any, within the amplification budget.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        loop {
            let len = self.half.poll_transmit(now, buf)?;
            if self.validated {
                return Some(len);
            }
            if len <= self.credit {
                self.credit -= len;
                return Some(len);
            }
            // Over budget: withheld, as if lost on the way.
        }
    }
    /// The next deadline, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.half.poll_timeout()
    }
    /// Whether a datagram is waiting.
    pub fn wants_transmit(&self) -> bool {
        self.half.wants_transmit()
    }
    /// Whether the session can be dropped.
    pub fn is_finished(&self) -> bool {
        self.half.is_finished()
    }
    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.half.outcome()
    }
    /// The session id.
    pub fn session(&self) -> u32 {
        self.half.session()
    }
    /// Whether this session receives an upload (a shutdown abandons those at once).
    pub fn is_upload(&self) -> bool {
        self.half.is_receiving()
    }
    /// Ends the session, telling the peer why.
    pub fn abort(&mut self, code: ErrorCode, text: &str) {
        self.half.abort(code, text);
    }
}

/// The longest prefix of `text` such that an Error datagram carrying it stays within
/// [`AMPLIFICATION_FACTOR`] times `received` bytes (the datagram it answers).
pub fn clip_error_text(text: &str, received: usize) -> &str {
    let budget = received
        .saturating_mul(AMPLIFICATION_FACTOR)
        .saturating_sub(super::wire::OVERHEAD + 2);
    clip_to(clip_text(text), budget)
}

/// Answers a request message (a datagram of `request_len` bytes) with a new session
/// numbered `session`, or a refusal. Any other message is not a request: `None`.
pub fn open_session(
    now: Instant,
    config: &Config,
    store: &mut dyn Store,
    session: u32,
    request: &Message<'_>,
    request_len: usize,
) -> Option<Result<ServerSession, Refusal>> {
    let plan = |token: u32, chunk: u16, window: u16, size: u64, offset: u64| Plan {
        session,
        size,
        offset,
        chunk: config.negotiate_chunk(chunk),
        window: config.negotiate_window(window, config.negotiate_chunk(chunk)),
        opening: Opening::Accept { token },
        prefix_crc: 0,
    };
    let result = match *request {
        Message::List {
            token,
            chunk,
            window,
        } => store.listing().map(|listing| {
            let size = listing.len() as u64;
            let plan = plan(token, chunk, window, size, 0);
            Transfer::send(now, config, plan, Box::new(MemSource(listing)))
        }),
        Message::Get {
            token,
            chunk,
            window,
            offset,
            name,
        } => store.open(name).map(|(source, size)| {
            // A resume point past the end means the file changed: start over.
            let offset = if offset > size { 0 } else { offset };
            let plan = plan(token, chunk, window, size, offset);
            Transfer::send(now, config, plan, source)
        }),
        Message::Put {
            token,
            chunk,
            window,
            size,
            overwrite,
            name,
        } => store
            .create(name, size, overwrite)
            .map(|sink| Transfer::receive(now, config, plan(token, chunk, window, size, 0), sink)),
        _ => return None,
    };
    Some(result.map(|half| ServerSession::new(half, request_len)))
}

/// Counters of a server's life, shown in its statistics line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Malformed datagrams, by [`DecodeError::index`].
    pub rejected: [u64; DecodeError::COUNT],
    /// Well-formed datagrams for no live session.
    pub unknown_session: u64,
    /// Well-formed datagrams that made no sense here (an Accept sent to a server...).
    pub unexpected: u64,
    /// Sessions opened.
    pub opened: u64,
    /// Sessions that ended complete.
    pub completed: u64,
    /// Sessions that failed.
    pub failed: u64,
    /// Requests refused (no such file, busy...).
    pub refused: u64,
    /// Error replies not sent because the reply queue was full.
    pub replies_dropped: u64,
}

impl ServerStats {
    /// All malformed datagrams.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// One line for logs: `received=… sent=… sessions opened=… …  rejected bad_crc=…`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "received={} sent={} opened={} completed={} failed={} refused={} unknown_session={} unexpected={} rejected={}",
            self.received,
            self.sent,
            self.opened,
            self.completed,
            self.failed,
            self.refused,
            self.unknown_session,
            self.unexpected,
            self.rejected_total()
        );
        for (i, n) in self.rejected.iter().enumerate() {
            if *n > 0 {
                line.push_str(&format!(" {}={n}", DecodeError::label(i)));
            }
        }
        line
    }

    /// Adds another table's counters (for servers with several loops).
    pub fn add(&mut self, other: &Self) {
        self.received += other.received;
        self.sent += other.sent;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
        self.unknown_session += other.unknown_session;
        self.unexpected += other.unexpected;
        self.opened += other.opened;
        self.completed += other.completed;
        self.failed += other.failed;
        self.refused += other.refused;
        self.replies_dropped += other.replies_dropped;
    }

    /// Counts a finished session by its outcome.
    pub fn count_outcome(&mut self, outcome: Option<&Outcome>) {
        match outcome {
            Some(Outcome::Complete) => self.completed += 1,
            _ => self.failed += 1,
        }
    }
}

/// Limits of a session table.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Live sessions at most; past that, requests are refused with Busy.
    pub max_sessions: usize,
    /// Live sessions from one IP address at most; past that, its requests get Busy.
    pub max_per_address: usize,
    /// Error replies queued at most; past that they are dropped (and counted).
    pub max_replies: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 4096,
            max_per_address: 256,
            max_replies: 1024,
        }
    }
}

type Key = (SocketAddr, u32);

/// Failed sessions kept for the driver to log between two collections.
pub const MAX_FAILURES_KEPT: usize = 64;

/// One session fewer for `ip` in the per-address count.
fn uncount(per_address: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = per_address.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_address.remove(&ip);
        }
    }
}

struct Entry {
    session: ServerSession,
    token: u32,
    /// The deadline last pushed onto the timer heap, to tell live heap entries from stale.
    armed: Option<Instant>,
    queued: bool,
    /// Whether the session counts against its address's cap: only until it completes (a
    /// completed upload lingers, cheaply, and must not keep its client's next one out).
    counted: bool,
}

struct Reply {
    peer: SocketAddr,
    session: u32,
    refusal: Refusal,
    /// Size of the datagram answered: the reply may be at most 3× that (amplification).
    received: usize,
}

/// Every live session of one server loop, keyed by (peer address, session id).
pub struct SessionTable {
    config: Config,
    limits: Limits,
    store: Box<dyn Store>,
    next_id: Box<dyn FnMut() -> u32 + Send>,
    sessions: HashMap<Key, Entry>,
    /// (peer, request token) → session id, so a repeated request opens nothing new.
    requests: HashMap<Key, u32>,
    /// Live sessions per peer IP address, for the per-address cap.
    per_address: HashMap<IpAddr, usize>,
    /// Sessions with a datagram to send, in order.
    ready: VecDeque<Key>,
    /// Min-heap of (deadline, session); entries whose deadline no longer matches the
    /// session's `armed` are stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, Key)>>,
    /// Scratch list of the sessions due in one `handle_timeout` call (kept to reuse its
    /// allocation).
    due: Vec<Key>,
    replies: VecDeque<Reply>,
    /// Failed sessions not yet collected by [`SessionTable::poll_failure`].
    failures: VecDeque<(SocketAddr, Failure)>,
    draining: bool,
    stats: ServerStats,
}

impl SessionTable {
    /// An empty table serving `store`. `next_id` draws session ids: it must be
    /// unpredictable to other hosts (the driver seeds it from the OS).
    pub fn new(
        config: Config,
        limits: Limits,
        store: Box<dyn Store>,
        next_id: Box<dyn FnMut() -> u32 + Send>,
    ) -> Self {
        Self {
            config,
            limits,
            store,
            next_id,
            sessions: HashMap::new(),
            requests: HashMap::new(),
            per_address: HashMap::new(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            replies: VecDeque::new(),
            failures: VecDeque::new(),
            draining: false,
            stats: ServerStats::default(),
        }
    }

    /// Handles one datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        let message = match Message::decode(datagram) {
            Ok(message) => message,
            Err(e) => {
                if let Some((session, refusal)) = reject(&mut self.stats, datagram, e) {
                    self.reply(peer, session, refusal, datagram.len());
                }
                return;
            }
        };
        match message.kind() {
            Kind::List | Kind::Get | Kind::Put => {
                self.handle_request(now, peer, &message, datagram.len())
            }
            Kind::Accept => self.stats.unexpected += 1,
            Kind::Data | Kind::Ack | Kind::Done | Kind::Error => {
                let key = (peer, message.session());
                let Some(entry) = self.sessions.get_mut(&key) else {
                    if let Some(refusal) = unknown_session(&mut self.stats, &message) {
                        self.reply(peer, message.session(), refusal, datagram.len());
                    }
                    return;
                };
                entry.session.handle_message(now, &message);
                self.after_activity(key);
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
        if let Some(&id) = self.requests.get(&(peer, token)) {
            // A repeat of a request whose session is open: its Accept is on a timer
            // already; the repeat only adds to the amplification budget.
            if let Some(entry) = self.sessions.get_mut(&(peer, id)) {
                entry.session.handle_repeated_request(len);
            }
            return;
        }
        let per_address = self.per_address.get(&peer.ip()).copied().unwrap_or(0);
        let refusal = if self.draining {
            Some(Refusal::shutting_down())
        } else if self.sessions.len() >= self.limits.max_sessions {
            Some(Refusal::busy("too many sessions"))
        } else if per_address >= self.limits.max_per_address {
            Some(Refusal::busy("too many sessions from your address"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.refuse(peer, token, refusal, len);
            return;
        }
        let id = self.fresh_id(peer);
        match open_session(now, &self.config, self.store.as_mut(), id, request, len) {
            Some(Ok(session)) => {
                self.stats.opened += 1;
                let key = (peer, id);
                self.requests.insert((peer, token), id);
                *self.per_address.entry(peer.ip()).or_insert(0) += 1;
                self.sessions.insert(
                    key,
                    Entry {
                        session,
                        token,
                        armed: None,
                        queued: false,
                        counted: true,
                    },
                );
                self.after_activity(key);
            }
            Some(Err(refusal)) => self.refuse(peer, token, refusal, len),
            None => {}
        }
    }

    /// A non-zero session id not in use by `peer`.
    fn fresh_id(&mut self, peer: SocketAddr) -> u32 {
        loop {
            let id = (self.next_id)();
            if id != 0 && !self.sessions.contains_key(&(peer, id)) {
                return id;
            }
        }
    }

    fn refuse(&mut self, peer: SocketAddr, token: u32, refusal: Refusal, received: usize) {
        self.stats.refused += 1;
        self.reply(peer, token, refusal, received);
    }

    /// Queues an Error for `peer` in answer to a datagram of `received` bytes.
    fn reply(&mut self, peer: SocketAddr, session: u32, refusal: Refusal, received: usize) {
        if self.replies.len() >= self.limits.max_replies {
            self.stats.replies_dropped += 1;
            return;
        }
        self.replies.push_back(Reply {
            peer,
            session,
            refusal,
            received,
        });
    }

    /// After a session handled input or fired a timer: queue it to send, re-arm its
    /// timer, or retire it.
    fn after_activity(&mut self, key: Key) {
        let Some(entry) = self.sessions.get_mut(&key) else {
            return;
        };
        if entry.counted && entry.session.outcome().is_some() {
            entry.counted = false;
            uncount(&mut self.per_address, key.0.ip());
        }
        if entry.session.wants_transmit() {
            if !entry.queued {
                entry.queued = true;
                self.ready.push_back(key);
            }
            return;
        }
        if entry.session.is_finished() {
            self.retire(key);
            return;
        }
        // Push a timer only when the deadline comes earlier than the one armed: most moves
        // are later (every Ack pushes a retransmission deadline back), and an armed timer
        // that fires early is harmless (the session finds nothing due and is re-armed), so
        // the heap holds about one entry per session instead of one per datagram.
        match entry.session.poll_timeout() {
            None => entry.armed = None,
            Some(at) if entry.armed.is_none_or(|armed| at < armed) => {
                entry.armed = Some(at);
                self.timers.push(Reverse((at, key)));
            }
            Some(_) => {}
        }
    }

    fn retire(&mut self, key: Key) {
        if let Some(entry) = self.sessions.remove(&key) {
            self.stats.count_outcome(entry.session.outcome());
            if let Some(Outcome::Failed(failure)) = entry.session.outcome() {
                if self.failures.len() < MAX_FAILURES_KEPT {
                    self.failures.push_back((key.0, failure.clone()));
                }
            }
            self.requests.remove(&(key.0, entry.token));
            if entry.counted {
                uncount(&mut self.per_address, key.0.ip());
            }
        }
    }

    /// Fires every session timer that is due at `now`. Spurious calls are harmless.
    ///
    /// Each session due fires once per call: the due ones are collected first, so a session
    /// that re-arms for `now` again (one that works in steps) waits for the next call, and
    /// the datagrams of other peers are served in between.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match self.sessions.get_mut(&key) {
                // Live, not stale (the session may have re-armed since).
                Some(entry) if entry.armed == Some(at) => {
                    entry.armed = None;
                    due.push(key);
                }
                _ => {}
            }
        }
        for key in due.drain(..) {
            if let Some(entry) = self.sessions.get_mut(&key) {
                entry.session.handle_timeout(now);
                self.after_activity(key);
            }
        }
        self.due = due;
    }

    /// Writes the next datagram to send into `buf` and returns its destination and length;
    /// `None` when nothing is queued. Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if let Some(reply) = self.replies.pop_front() {
            self.stats.sent += 1;
            let len = Message::Error {
                session: reply.session,
                code: reply.refusal.code,
                text: clip_error_text(&reply.refusal.text, reply.received).as_bytes(),
            }
            .encode(buf);
            return Some((reply.peer, len));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(entry) = self.sessions.get_mut(&key) else {
                continue;
            };
            entry.queued = false;
            let sent = entry.session.poll_transmit(now, buf);
            self.after_activity(key);
            if let Some(len) = sent {
                self.stats.sent += 1;
                return Some((key.0, len));
            }
        }
        None
    }

    /// The earliest session deadline, or `None` if no timer runs. Valid after
    /// [`SessionTable::poll_transmit`] returned `None`; the driver sleeps until then or the
    /// next datagram, whichever comes first.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop stale entries from the top so the answer is a live deadline.
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            match self.sessions.get(&key) {
                Some(entry) if entry.armed == Some(at) => return Some(at),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// Stops taking new sessions (they get a ShuttingDown error); live ones continue.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Aborts every live session, telling each peer `text`. Uploads are discarded.
    pub fn abort_all(&mut self, code: ErrorCode, text: &str) {
        let keys: Vec<Key> = self.sessions.keys().copied().collect();
        for key in keys {
            if let Some(entry) = self.sessions.get_mut(&key) {
                entry.session.abort(code, text);
            }
            self.after_activity(key);
        }
    }

    /// Aborts every live upload (a shutdown abandons them at once; their temporary files
    /// are removed), telling each peer `text`.
    pub fn abort_uploads(&mut self, code: ErrorCode, text: &str) {
        let keys: Vec<Key> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.session.is_upload())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(entry) = self.sessions.get_mut(&key) {
                entry.session.abort(code, text);
            }
            self.after_activity(key);
        }
    }

    /// The next session that failed since the last call, with its peer, for the driver to
    /// log; at most [`MAX_FAILURES_KEPT`] wait (the rest are only counted).
    pub fn poll_failure(&mut self) -> Option<(SocketAddr, Failure)> {
        self.failures.pop_front()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Counters so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}
