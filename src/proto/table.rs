//! The session table: every live session of one server loop, served from one thread.
//!
//! Datagrams go through the [`Endpoint`] (the front door every model shares); what it
//! admits lives here, keyed by (peer, session id), with a min-heap of deadlines and a queue
//! of sessions that have something to send, served round-robin one datagram at a time so a
//! session with much to send cannot starve the others, and while the driver reports the
//! loop short of time a windowed session is held to its share of it ([`super::share`]).
//! Sessions that end leave a [`Record`] for the driver to log.
//!
//! A checksum (Sum) is the one session whose start costs CPU: the whole file is hashed
//! before its record can be sent. By default the table hashes it where it starts, on the
//! loop's own thread (every other peer waits meanwhile). With
//! [`SessionTable::offload_checksums`] it hands the hashing to the driver instead, as a
//! [`Job`] ([`SessionTable::poll_job`]), and starts the session when the driver brings the
//! result back ([`SessionTable::completed`]); at most the given number of jobs may be out at
//! once, and a proven Sum beyond that is answered Busy. The table itself never waits.

use super::admission::Policy;
use super::checksum::Checksum;
use super::endpoint::PROGRESS_EVERY;
use super::endpoint::{Action, Endpoint, Event, Key, LiveCounts, Record, SessionMac};
use super::grant::{Grant, Op};
use super::refusal::Refusal;
use super::server_session::{server_done, End, ServerSession};
use super::share::LoopShare;
use super::stats::ServerStats;
use super::store::FileInfo;
use super::store::Store;
use super::wire::Algo;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Records of ended sessions kept for the driver between two collections.
pub const MAX_RECORDS: usize = 1024;

/// A checksum for the driver to compute (on a worker, with its own clone of the store:
/// [`super::store::Store::checksum`]) and bring back to [`SessionTable::completed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The session it starts.
    pub key: Key,
    /// The file.
    pub name: Vec<u8>,
    /// The version of the file the Accept described.
    pub file: FileInfo,
    /// The algorithm.
    pub algo: Algo,
}

/// What a full queue of checksums tells a proven Sum.
pub const QUEUE_FULL: &str = "checksum queue full";

struct Entry {
    transfer: ServerSession,
    /// The deadline last pushed onto the timer heap, to tell live heap entries from stale.
    armed: Option<Instant>,
    queued: bool,
    /// A datagram from its peer arrived since the last load report (or it just opened): it
    /// competes for the loop ([`SessionTable::observe_load`]).
    heard: bool,
}

/// Every live session of one server loop, behind its front door.
pub struct SessionTable {
    endpoint: Endpoint,
    sessions: HashMap<Key, Entry>,
    /// Sessions with a datagram to send, in order.
    ready: VecDeque<Key>,
    /// Min-heap of (deadline, session); entries whose deadline no longer matches the
    /// session's `armed` are stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, Key)>>,
    /// Scratch list of the sessions due in one `handle_timeout` call.
    due: Vec<Key>,
    records: VecDeque<Record>,
    next_progress: Option<Instant>,
    /// The session whose datagram the last `poll_transmit` handed out, and when: its
    /// bookkeeping waits until the datagram has been sent.
    polled: Option<(Key, Instant)>,
    /// Checksum jobs out at most (`None`: hash where the session starts).
    offload: Option<usize>,
    /// The grants of checksums being computed elsewhere, by session.
    computing: HashMap<Key, Box<Grant>>,
    /// Checksum jobs not yet taken by the driver.
    jobs: VecDeque<Job>,
    /// Whether the loop is short of time, by the driver's measure: windowed sessions then
    /// share it (protocol.md §21.4).
    share: LoopShare,
}

impl SessionTable {
    /// An empty table serving `store` by `policy`; `mac` names sessions (the driver keys it
    /// from the OS's randomness: see [`crate::ids::SessionKey`]).
    pub fn new(policy: Policy, store: Box<dyn Store>, mac: SessionMac) -> Self {
        Self {
            endpoint: Endpoint::new(policy, store, mac),
            sessions: HashMap::new(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            records: VecDeque::new(),
            next_progress: None,
            polled: None,
            offload: None,
            computing: HashMap::new(),
            jobs: VecDeque::new(),
            share: LoopShare::default(),
        }
    }

    /// The driver's measure of the loop's load: of the last `over`, `busy` went to work
    /// rather than to waiting for a datagram (spinning counts as waiting). While more than
    /// half did, each windowed sender is held to an equal share of its granted window among
    /// the sessions that compete for the loop: those whose peer sent a datagram in the
    /// period, or that opened in it (protocol.md §21.4, [`super::share`]). An idle or
    /// lingering session, or one whose peer went quiet, takes no share.
    pub fn observe_load(&mut self, busy: Duration, over: Duration) {
        let mut heard = 0;
        for entry in self.sessions.values_mut() {
            heard += usize::from(std::mem::take(&mut entry.heard));
        }
        if let Some(among) = self.share.observe(busy, over, heard) {
            for entry in self.sessions.values_mut() {
                entry.transfer.share_loop(among);
            }
        }
    }

    /// Hands checksums to the driver ([`SessionTable::poll_job`]) instead of hashing them on
    /// the caller's thread, with at most `max_jobs` out at once (queued or being computed);
    /// a proven Sum beyond that is refused with Busy ([`QUEUE_FULL`]).
    pub fn offload_checksums(&mut self, max_jobs: usize) {
        self.offload = Some(max_jobs);
    }

    /// The next checksum to compute, if any. Call after every `handle_*` call.
    pub fn poll_job(&mut self) -> Option<Job> {
        self.jobs.pop_front()
    }

    /// Checksums out (queued or being computed).
    pub fn computing(&self) -> usize {
        self.computing.len()
    }

    /// The result of the checksum job `key`: its session starts and sends the record, or
    /// its peer is told the refusal. A result for a session that ended meanwhile (aborted
    /// by a stop, say) is dropped.
    pub fn completed(&mut self, now: Instant, key: Key, result: Result<Checksum, Refusal>) {
        let Some(grant) = self.computing.remove(&key) else {
            return;
        };
        match result {
            Ok(sum) => {
                let session = grant.start_sum(now, &self.endpoint.policy().session, &sum);
                self.endpoint.opened();
                self.insert(key, session, now);
            }
            Err(refusal) => self.endpoint.open_failed(key, Some(refusal)),
        }
    }

    /// Takes `grant`'s checksum off this thread if the table offloads them: `None` once it
    /// is queued (or refused), `Some(grant)` to start it here.
    fn queue_job(&mut self, grant: Box<Grant>) -> Option<Box<Grant>> {
        let max = match self.offload {
            Some(max) if grant.op == Op::Sum => max,
            _ => return Some(grant),
        };
        let key = (grant.peer, grant.session);
        if self.computing.len() >= max {
            self.endpoint
                .open_failed(key, Some(Refusal::busy(QUEUE_FULL)));
            return None;
        }
        self.jobs.push_back(Job {
            key,
            name: grant.name().to_vec(),
            file: grant.file_info(),
            algo: grant.algo.unwrap_or(Algo::Sha256),
        });
        self.computing.insert(key, grant);
        None
    }

    fn insert(&mut self, key: Key, mut transfer: ServerSession, now: Instant) {
        transfer.share_loop(self.share.among());
        self.sessions.insert(
            key,
            Entry {
                transfer,
                armed: None,
                queued: false,
                heard: true,
            },
        );
        self.next_progress.get_or_insert(now + PROGRESS_EVERY);
        self.after_activity(key, now);
    }

    /// Handles one datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        self.settle();
        match self.endpoint.handle(now, peer, datagram) {
            Event::Nothing => {}
            Event::Open(grant, message) => {
                let Some(grant) = self.queue_job(grant) else {
                    return self.apply_actions(now);
                };
                if let Some(mut transfer) = self.endpoint.start(now, &grant) {
                    transfer.handle(now, &message);
                    self.insert((grant.peer, grant.session), transfer, now);
                }
            }
            Event::Deliver(key, message) => {
                if let Some(entry) = self.sessions.get_mut(&key) {
                    entry.heard = true;
                    entry.transfer.handle(now, &message);
                    self.after_activity(key, now);
                }
            }
        }
        self.apply_actions(now);
    }

    fn apply_actions(&mut self, now: Instant) {
        while let Some(Action::Abort { key, code, text }) = self.endpoint.poll_action() {
            if self.computing.remove(&key).is_some() {
                // A hash already running elsewhere goes on; its result will find nothing.
                self.jobs.retain(|job| job.key != key);
                self.endpoint
                    .open_failed(key, Some(Refusal::new(code, text)));
                continue;
            }
            if let Some(entry) = self.sessions.get_mut(&key) {
                entry.transfer.abort(code, text);
                self.after_activity(key, now);
            }
        }
    }

    /// After a session handled input or fired a timer: queue it to send, re-arm its
    /// timer, or retire it.
    fn after_activity(&mut self, key: Key, now: Instant) {
        let Some(entry) = self.sessions.get_mut(&key) else {
            return;
        };
        if entry.transfer.wants_transmit() {
            if !entry.queued {
                entry.queued = true;
                self.ready.push_back(key);
            }
            return;
        }
        if server_done(&entry.transfer) {
            self.retire(key, now);
            return;
        }
        // Push a timer only when the deadline comes earlier than the one armed: most moves
        // are later (every Ack pushes a retransmission deadline back), and an armed timer
        // that fires early is harmless (the session finds nothing due and is re-armed), so
        // the heap holds about one entry per session instead of one per datagram.
        match entry.transfer.poll_timeout() {
            None => entry.armed = None,
            Some(at) if entry.armed.is_none_or(|armed| at < armed) => {
                entry.armed = Some(at);
                self.timers.push(Reverse((at, key)));
            }
            Some(_) => {}
        }
    }

    fn retire(&mut self, key: Key, now: Instant) {
        if let Some(entry) = self.sessions.remove(&key) {
            let record = self.endpoint.ended(key, &End::of(&entry.transfer), now);
            if let Some(record) = record {
                if self.records.len() < MAX_RECORDS {
                    self.records.push_back(record);
                }
            }
        }
    }

    /// Fires every timer that is due at `now` (the front door's and the sessions'), and
    /// reports the sessions' progress to the front door. Spurious calls are harmless.
    ///
    /// Each session due fires once per call: the due ones are collected first, so a session
    /// that re-arms for `now` again (one that works in steps) waits for the next call, and
    /// the datagrams of other peers are served in between.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        self.endpoint.handle_timeout(now);
        self.apply_actions(now);
        if self.next_progress.is_some_and(|at| now >= at) {
            for (key, entry) in &self.sessions {
                self.endpoint.progress(*key, entry.transfer.progress(), now);
            }
            self.next_progress = (!self.sessions.is_empty()).then_some(now + PROGRESS_EVERY);
        }
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
                entry.transfer.handle_timeout(now);
                self.after_activity(key, now);
            }
        }
        self.due = due;
    }

    /// The next datagram to send and its destination; `None` when nothing is queued. A
    /// reply is encoded into `buf`; a session's Data is handed out from where its sender read
    /// and sealed it (no copy). Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit<'a>(
        &'a mut self,
        now: Instant,
        buf: &'a mut [u8],
    ) -> Option<(SocketAddr, &'a [u8])> {
        self.settle();
        if let Some((peer, len)) = self.endpoint.poll_transmit(buf) {
            return Some((peer, &buf[..len]));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(entry) = self.sessions.get_mut(&key) else {
                continue;
            };
            entry.queued = false;
            match entry.transfer.prepare_transmit(now, buf) {
                Some(out) => {
                    self.endpoint.stats_mut().sent += 1;
                    // The datagram lives in the session until it is sent: its bookkeeping
                    // (requeue, re-arm, retire) waits for the next call.
                    self.polled = Some((key, now));
                    let transfer = &self.sessions.get(&key)?.transfer;
                    return Some((key.0, transfer.datagram(out, buf)));
                }
                None => self.after_activity(key, now),
            }
        }
        None
    }

    /// Does the bookkeeping of the session whose datagram the last
    /// [`SessionTable::poll_transmit`] handed out.
    fn settle(&mut self) {
        if let Some((key, at)) = self.polled.take() {
            self.after_activity(key, at);
        }
    }

    /// The earliest deadline, or `None` if no timer runs. Valid after
    /// [`SessionTable::poll_transmit`] returned `None`; the driver sleeps until then or the
    /// next datagram, whichever comes first.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.settle();
        // Drop stale entries from the top so the answer is a live deadline.
        let mut earliest = None;
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            match self.sessions.get(&key) {
                Some(entry) if entry.armed == Some(at) => {
                    earliest = Some(at);
                    break;
                }
                _ => {
                    self.timers.pop();
                }
            }
        }
        [earliest, self.endpoint.poll_timeout(), self.next_progress]
            .into_iter()
            .flatten()
            .min()
    }

    /// The record of the next session that ended since the last call, for the driver to
    /// log; at most [`MAX_RECORDS`] wait (the rest are only counted).
    pub fn poll_record(&mut self) -> Option<Record> {
        self.records.pop_front()
    }

    /// Begins a stop (see [`Endpoint::shutdown`]).
    pub fn shutdown(&mut self, now: Instant) {
        self.settle();
        self.endpoint.shutdown(now);
        self.apply_actions(now);
    }

    /// Abandons every session now.
    pub fn stop_now(&mut self, now: Instant) {
        self.settle();
        self.endpoint.stop_now(now);
        self.apply_actions(now);
    }

    /// Whether a stop began and every session is over.
    pub fn is_drained(&self) -> bool {
        self.endpoint.is_drained()
    }

    /// Live sessions by kind.
    pub fn live_counts(&self) -> LiveCounts {
        self.endpoint.live_counts()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The front door (for its counters and state).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The front door, for a driver's stop request ([`Endpoint::shutdown`],
    /// [`Endpoint::stop_now`]); the aborts it asks for are applied at the next
    /// [`SessionTable::handle_timeout`].
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// Counters so far.
    pub fn stats(&self) -> &ServerStats {
        self.endpoint.stats()
    }
}
