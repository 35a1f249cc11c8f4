//! Transcript tests of the front door on its own ([`Endpoint`]): one datagram in, the exact
//! event and replies out, with explicit virtual times. Each pins one rule: nothing before
//! proof, the same Accept for a repeated request, the order of refusals, access lists,
//! capacity and slow sessions yielding, tombstones, rate limits, shutdown, the bounded
//! cache of unproven grants.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpft::proto::access::{parse_prefix, AccessList};
use udpft::proto::admission::{Limits, Policy};
use udpft::proto::endpoint::{Action, Endpoint, Event, SessionMac, YIELDED};
use udpft::proto::grant::Op;
use udpft::proto::refusal::{Refusal, AMPLIFICATION_FACTOR};
use udpft::proto::server_session::End;
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::store::{FileInfo, Store};
use udpft::proto::wire::{ErrorCode, Message, MAX_DATAGRAM};
use udpft::proto::{Config, Outcome, Sink, Source};

/// What the store was asked to do after proof.
#[derive(Clone, Default)]
struct Counts {
    opened: Arc<AtomicUsize>,
    created: Arc<AtomicUsize>,
}

/// A library holding `f` (100 bytes); `exists` also exists.
struct Counting(Counts);

impl Store for Counting {
    fn listing(&mut self) -> Result<Arc<[u8]>, Refusal> {
        Ok(Arc::from(&[][..]))
    }
    fn inspect(&mut self, name: &[u8]) -> Result<FileInfo, Refusal> {
        match name {
            b"f" | b"exists" => Ok(FileInfo {
                size: 100,
                version: 7,
            }),
            b"bad/name" => Err(Refusal::new(ErrorCode::BadName, "separator")),
            _ => Err(Refusal::new(ErrorCode::NotFound, "no such file")),
        }
    }
    fn check_upload(&mut self, name: &[u8], overwrite: bool) -> Result<(), Refusal> {
        match name {
            b"bad/name" => Err(Refusal::new(ErrorCode::BadName, "separator")),
            b"f" | b"exists" if !overwrite => Err(Refusal::new(ErrorCode::Exists, "exists")),
            _ => Ok(()),
        }
    }
    fn open(&mut self, name: &[u8], _: &FileInfo) -> Result<Box<dyn Source>, Refusal> {
        self.0.opened.fetch_add(1, Ordering::SeqCst);
        self.inspect(name)?;
        Ok(Box::new(MemSource(vec![5u8; 100])))
    }
    fn create(&mut self, _: &[u8], _: u64, _: bool) -> Result<Box<dyn Sink>, Refusal> {
        self.0.created.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(MemSink::default()))
    }
}

fn mac() -> SessionMac {
    Box::new(|peer, token, attempt| {
        token.wrapping_mul(2_654_435_761) ^ u32::from(peer.port()) ^ (attempt << 24) | 1
    })
}

fn peer(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

struct Door {
    endpoint: Endpoint,
    counts: Counts,
    t0: Instant,
    buf: Vec<u8>,
}

impl Door {
    fn new(policy: Policy) -> Self {
        let counts = Counts::default();
        let store = Box::new(Counting(counts.clone()));
        Self {
            endpoint: Endpoint::new(policy, store, mac()),
            counts,
            t0: Instant::now(),
            buf: vec![0; MAX_DATAGRAM],
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feeds `message` from `from` at `ms`; returns what came out: the event's kind and
    /// every reply (destination, bytes).
    fn feed(&mut self, ms: u64, from: SocketAddr, message: &Message<'_>) -> Fed {
        let mut bytes = vec![0u8; MAX_DATAGRAM];
        let n = message.encode(&mut bytes);
        self.feed_bytes(ms, from, &bytes[..n])
    }

    fn feed_bytes(&mut self, ms: u64, from: SocketAddr, bytes: &[u8]) -> Fed {
        let now = self.at(ms);
        let event = match self.endpoint.handle(now, from, bytes) {
            Event::Nothing => Happened::Nothing,
            Event::Deliver(key, _) => Happened::Deliver(key.1),
            Event::Open(grant, _) => Happened::Open(grant.op, grant.session),
        };
        let mut replies = Vec::new();
        while let Some((to, n)) = self.endpoint.poll_transmit(&mut self.buf) {
            replies.push((to, self.buf[..n].to_vec()));
        }
        Fed {
            event,
            replies,
            received: bytes.len(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Happened {
    Nothing,
    Open(Op, u32),
    Deliver(u32),
}

struct Fed {
    event: Happened,
    replies: Vec<(SocketAddr, Vec<u8>)>,
    received: usize,
}

impl Fed {
    /// The one reply, decoded.
    fn reply(&self) -> Message<'_> {
        assert_eq!(self.replies.len(), 1, "expected exactly one reply");
        Message::decode(&self.replies[0].1).expect("replies decode")
    }
    fn accepted_session(&self) -> u32 {
        match self.reply() {
            Message::Accept { session, .. } => session,
            other => panic!("expected an Accept, got {other:?}"),
        }
    }
    fn refusal(&self) -> ErrorCode {
        match self.reply() {
            Message::Error { code, .. } => code,
            other => panic!("expected an Error, got {other:?}"),
        }
    }
    fn within_amplification_limit(&self) -> bool {
        let sent: usize = self.replies.iter().map(|(_, b)| b.len()).sum();
        sent <= AMPLIFICATION_FACTOR * self.received
    }
}

fn end(outcome: Option<Outcome>, bytes: u64) -> End {
    End {
        outcome,
        bytes,
        final_block: None,
        window: Default::default(),
    }
}

fn get(token: u32, name: &[u8]) -> Message<'_> {
    Message::Get {
        token,
        chunk: 1024,
        window: 1,
        offset: 0,
        name,
    }
}

fn put(token: u32, name: &[u8], size: u64) -> Message<'_> {
    Message::Put {
        token,
        chunk: 1024,
        window: 1,
        size,
        overwrite: false,
        name,
    }
}

fn ack(session: u32, seq: u64) -> Message<'static> {
    Message::Ack { session, seq }
}

#[test]
fn a_request_gets_one_small_accept_and_opens_nothing() {
    let mut door = Door::new(Policy::default());
    let fed = door.feed(0, peer(1, 5000), &get(11, b"f"));
    assert_eq!(fed.event, Happened::Nothing);
    assert!(matches!(
        fed.reply(),
        Message::Accept {
            token: 11,
            size: 100,
            offset: 0,
            ..
        }
    ));
    assert!(fed.within_amplification_limit());
    assert_eq!(
        door.counts.opened.load(Ordering::SeqCst),
        0,
        "no file before proof"
    );
    assert_eq!(door.endpoint.live(), 0, "no session slot before proof");
    assert_eq!(door.endpoint.unproven(), 1);
    assert_eq!(
        door.endpoint.poll_timeout(),
        Some(door.at(1000)),
        "only a sweep is due"
    );
}

#[test]
fn a_repeated_request_gets_the_same_accept_and_nothing_more() {
    let mut door = Door::new(Policy::default());
    let first = door
        .feed(0, peer(1, 5000), &get(11, b"f"))
        .accepted_session();
    for ms in 1..20 {
        let again = door.feed(ms, peer(1, 5000), &get(11, b"f"));
        assert_eq!(again.accepted_session(), first);
    }
    assert_eq!(door.endpoint.unproven(), 1);
    assert_eq!(door.endpoint.live(), 0);
}

#[test]
fn ack_0_from_the_peer_opens_the_session_and_later_datagrams_are_delivered() {
    let mut door = Door::new(Policy::default());
    let p = peer(1, 5000);
    let session = door.feed(0, p, &get(11, b"f")).accepted_session();
    let fed = door.feed(1, p, &ack(session, 0));
    assert_eq!(fed.event, Happened::Open(Op::Get, session));
    assert!(fed.replies.is_empty());
    assert_eq!(door.endpoint.live(), 1);
    assert_eq!(
        door.feed(2, p, &ack(session, 1)).event,
        Happened::Deliver(session)
    );
    // A repeat of the request of a running session is a stale duplicate: no new Accept.
    assert!(door.feed(3, p, &get(11, b"f")).replies.is_empty());
}

#[test]
fn the_session_id_from_another_address_proves_nothing() {
    let mut door = Door::new(Policy::default());
    let session = door
        .feed(0, peer(1, 5000), &get(11, b"f"))
        .accepted_session();
    for other in [peer(1, 5001), peer(2, 5000)] {
        let fed = door.feed(1, other, &ack(session, 0));
        assert_eq!(fed.event, Happened::Nothing);
        assert_eq!(fed.refusal(), ErrorCode::UnknownSession);
        assert!(fed.within_amplification_limit());
    }
    assert_eq!(door.endpoint.live(), 0);
    // The real peer still can.
    let fed = door.feed(2, peer(1, 5000), &ack(session, 0));
    assert_eq!(fed.event, Happened::Open(Op::Get, session));
}

#[test]
fn an_upload_is_created_only_when_data_1_proves_its_peer() {
    let mut door = Door::new(Policy::default());
    let p = peer(1, 5000);
    let session = door.feed(0, p, &put(21, b"new", 10)).accepted_session();
    assert_eq!(door.counts.created.load(Ordering::SeqCst), 0);
    let data = Message::Data {
        session,
        seq: 1,
        payload: b"0123456789",
    };
    let fed = door.feed(1, p, &data);
    assert_eq!(fed.event, Happened::Open(Op::Put, session));
}

#[test]
fn an_error_from_the_client_forgets_its_grant() {
    let mut door = Door::new(Policy::default());
    let p = peer(1, 5000);
    let session = door.feed(0, p, &get(11, b"f")).accepted_session();
    let bye = Message::Error {
        session,
        code: ErrorCode::Cancelled,
        text: b"",
    };
    assert_eq!(door.feed(1, p, &bye).event, Happened::Nothing);
    let fed = door.feed(2, p, &ack(session, 0));
    assert_eq!(fed.event, Happened::Nothing, "the grant is gone");
}

#[test]
fn token_zero_is_dropped_unanswered_and_counted() {
    let mut door = Door::new(Policy::default());
    let fed = door.feed(0, peer(1, 5000), &get(0, b"f"));
    assert!(fed.replies.is_empty());
    assert_eq!(door.endpoint.stats().zero_token, 1);
}

#[test]
fn refused_addresses_are_dropped_unanswered_and_counted() {
    let policy = Policy {
        access: AccessList::new(
            vec![parse_prefix("127.0.0.0/24").unwrap()],
            vec![parse_prefix("127.0.0.66").unwrap()],
        ),
        ..Policy::default()
    };
    let mut door = Door::new(policy);
    for from in [peer(66, 5000), SocketAddr::from(([127, 0, 1, 1], 5000))] {
        let fed = door.feed(0, from, &get(11, b"f"));
        assert!(fed.replies.is_empty(), "{from} must get no reply");
        assert!(door.feed(0, from, &ack(1, 0)).replies.is_empty());
    }
    assert_eq!(door.endpoint.stats().denied, 4);
    assert_eq!(door.feed(0, peer(1, 5000), &get(11, b"f")).replies.len(), 1);
}

#[test]
fn uploads_from_outside_allow_upload_are_read_only_and_downloads_still_work() {
    let policy = Policy {
        upload_access: AccessList::new(vec![parse_prefix("127.0.0.2").unwrap()], vec![]),
        ..Policy::default()
    };
    let mut door = Door::new(policy);
    let outside = peer(1, 5000);
    assert_eq!(
        door.feed(0, outside, &put(1, b"new", 5)).refusal(),
        ErrorCode::ReadOnly
    );
    door.feed(0, outside, &get(2, b"f")).accepted_session();
    door.feed(0, peer(2, 5000), &put(3, b"new", 5))
        .accepted_session();
}

#[test]
fn refusals_come_in_one_order_read_only_size_name_existence_then_capacity() {
    let policy = Policy {
        read_only: true,
        max_upload: Some(10),
        ..Policy::default()
    };
    let mut door = Door::new(policy);
    let p = peer(1, 5000);
    // Read-only wins over everything a Put could also be refused for.
    assert_eq!(
        door.feed(0, p, &put(1, b"bad/name", 99)).refusal(),
        ErrorCode::ReadOnly
    );
    let policy = Policy {
        max_upload: Some(10),
        limits: Limits {
            max_sessions: 0,
            ..Limits::default()
        },
        ..Policy::default()
    };
    let mut door = Door::new(policy);
    // Too large before the name and before existence: a too-large Put of an existing name
    // is TooLarge.
    assert_eq!(
        door.feed(0, p, &put(2, b"bad/name", 99)).refusal(),
        ErrorCode::TooLarge
    );
    assert_eq!(
        door.feed(0, p, &put(3, b"exists", 99)).refusal(),
        ErrorCode::TooLarge
    );
    assert_eq!(
        door.feed(0, p, &put(4, b"bad/name", 5)).refusal(),
        ErrorCode::BadName
    );
    assert_eq!(
        door.feed(0, p, &put(5, b"exists", 5)).refusal(),
        ErrorCode::Exists
    );
    // A request that could never succeed says why, even when the server is full.
    assert_eq!(
        door.feed(0, p, &get(6, b"missing")).refusal(),
        ErrorCode::NotFound
    );
    assert_eq!(door.feed(0, p, &get(7, b"f")).refusal(), ErrorCode::Busy);
}

/// A server with room for one session.
fn room_for_one() -> Policy {
    Policy {
        limits: Limits {
            max_sessions: 1,
            ..Limits::default()
        },
        ..Policy::default()
    }
}

/// Opens a proven download from `p` with `token` at `ms`; returns its session id.
fn open(door: &mut Door, ms: u64, p: SocketAddr, token: u32) -> u32 {
    let session = door.feed(ms, p, &get(token, b"f")).accepted_session();
    let fed = door.feed(ms, p, &ack(session, 0));
    assert_eq!(fed.event, Happened::Open(Op::Get, session));
    session
}

#[test]
fn the_per_address_cap_counts_proven_sessions_only() {
    let policy = Policy {
        limits: Limits {
            max_per_address: 2,
            ..Limits::default()
        },
        ..Policy::default()
    };
    let mut door = Door::new(policy);
    // Any number of unproven requests from one address...
    for token in 100..400 {
        door.feed(0, peer(1, 6000), &get(token, b"f"))
            .accepted_session();
    }
    // ...leave its cap to proven sessions.
    open(&mut door, 1, peer(1, 5000), 1);
    open(&mut door, 1, peer(1, 5001), 2);
    assert_eq!(
        door.feed(2, peer(1, 5002), &get(3, b"f")).refusal(),
        ErrorCode::Busy
    );
    door.feed(2, peer(2, 5000), &get(4, b"f"))
        .accepted_session();
}

/// The slow-session rule from both sides: `slow` (a download from `old` opened at 0 ms)
/// keeps its slot while young, against a request from `newcomer`; once it moved 100 bytes in
/// 3 s (under 16 KiB/s) a new request is accepted, nothing yields before its proof, and its
/// proof makes `slow` yield.
fn a_slow_session_yields_to(mut door: Door, old: SocketAddr, newcomer: SocketAddr) -> Door {
    let slow = open(&mut door, 0, old, 1);
    assert_eq!(
        door.feed(100, newcomer, &get(2, b"f")).refusal(),
        ErrorCode::Busy,
        "a young session keeps its slot"
    );
    let now = door.at(3000);
    door.endpoint.progress((old, slow), 100, now);
    let session = door.feed(3000, newcomer, &get(3, b"f")).accepted_session();
    assert_eq!(
        door.endpoint.poll_action(),
        None,
        "nothing yields before proof"
    );
    let fed = door.feed(3001, newcomer, &ack(session, 0));
    assert_eq!(fed.event, Happened::Open(Op::Get, session));
    assert_eq!(
        door.endpoint.poll_action(),
        Some(Action::Abort {
            key: (old, slow),
            code: ErrorCode::Busy,
            text: YIELDED,
        })
    );
    door
}

#[test]
fn a_full_server_makes_a_slow_session_yield_its_slot_to_a_proven_peer() {
    let door = a_slow_session_yields_to(Door::new(room_for_one()), peer(1, 5000), peer(2, 5000));
    assert_eq!(door.endpoint.stats().yielded, 1);
}

#[test]
fn an_address_at_its_cap_makes_its_own_slow_session_yield() {
    // A newcomer from the same address (a NAT, say) replaces a slow session of that address,
    // as a newcomer replaces any slow session on a full server.
    let policy = Policy {
        limits: Limits {
            max_per_address: 1,
            ..Limits::default()
        },
        ..Policy::default()
    };
    let door = a_slow_session_yields_to(Door::new(policy), peer(1, 5000), peer(1, 5001));
    assert_eq!(door.endpoint.stats().yielded, 1);
}

#[test]
fn a_fast_session_keeps_its_slot_when_the_server_is_full() {
    let mut door = Door::new(room_for_one());
    let fast = open(&mut door, 0, peer(1, 5000), 1);
    let now = door.at(3000);
    door.endpoint.progress((peer(1, 5000), fast), 30 << 20, now);
    assert_eq!(
        door.feed(3000, peer(2, 5000), &get(2, b"f")).refusal(),
        ErrorCode::Busy
    );
}

#[test]
fn a_completed_upload_answers_a_repeated_done_from_its_tombstone() {
    let mut door = Door::new(Policy::default());
    let p = peer(1, 5000);
    let session = door.feed(0, p, &put(21, b"new", 10)).accepted_session();
    let data = Message::Data {
        session,
        seq: 1,
        payload: b"0123456789",
    };
    door.feed(1, p, &data);
    let now = door.at(2);
    let record = door
        .endpoint
        .ended((p, session), &end(Some(Outcome::Complete), 10), now)
        .expect("a record");
    assert_eq!(
        (record.op, record.bytes, record.failure),
        (Op::Put, 10, None)
    );
    assert_eq!(door.endpoint.live(), 0, "the slot is free at once");
    let done = Message::Done {
        session,
        seq: 2,
        size: 10,
        crc: crc32fast::hash(b"0123456789"),
    };
    let fed = door.feed(3, p, &done);
    assert_eq!(fed.reply(), ack(session, 2));
    // Nothing else is answered from a tombstone, and it expires with the linger time.
    assert!(door.feed(4, p, &data).replies.is_empty());
    let linger = Policy::default().session.linger_min.as_millis() as u64;
    door.endpoint.handle_timeout(door.at(linger + 1000));
    assert_eq!(
        door.feed(linger + 1001, p, &done).refusal(),
        ErrorCode::UnknownSession
    );
}

#[test]
fn errors_to_strangers_are_rate_limited() {
    let mut door = Door::new(Policy::default());
    let mut replies = 0;
    for i in 0..10_000u32 {
        let from = peer(1 + (i % 200) as u8, 5000 + (i % 1000) as u16);
        replies += door.feed(i as u64 / 10, from, &ack(i | 1, 3)).replies.len();
    }
    // 1 s of strangers: at most the burst plus a second's refill.
    assert!(
        replies <= 2400,
        "{replies} errors to strangers in one second"
    );
    assert!(replies >= 400, "some errors still go out: {replies}");
    assert!(door.endpoint.stats().rate_limited > 0);
}

#[test]
fn a_stop_refuses_requests_abandons_uploads_and_ends_everything_after_the_grace() {
    let policy = Policy {
        grace: Duration::from_secs(2),
        ..Policy::default()
    };
    let mut door = Door::new(policy);
    let download = open(&mut door, 0, peer(1, 5000), 1);
    let upload = door
        .feed(0, peer(1, 5001), &put(2, b"new", 10))
        .accepted_session();
    let data = Message::Data {
        session: upload,
        seq: 1,
        payload: b"0123456789",
    };
    door.feed(0, peer(1, 5001), &data);
    let now = door.at(10);
    door.endpoint.shutdown(now);
    assert!(matches!(
        door.endpoint.poll_action(),
        Some(Action::Abort { key, code: ErrorCode::ShuttingDown, .. }) if key.1 == upload
    ));
    assert_eq!(door.endpoint.poll_action(), None, "the download may finish");
    assert_eq!(
        door.feed(20, peer(2, 5000), &get(3, b"f")).refusal(),
        ErrorCode::ShuttingDown
    );
    door.endpoint.handle_timeout(door.at(2010));
    assert!(matches!(
        door.endpoint.poll_action(),
        Some(Action::Abort { key, .. }) if key.1 == download
    ));
    assert!(!door.endpoint.is_drained());
    for key in [(peer(1, 5000), download), (peer(1, 5001), upload)] {
        door.endpoint.ended(key, &end(None, 0), door.at(2020));
    }
    assert!(door.endpoint.is_drained());
}

#[test]
fn a_flood_of_unproven_requests_is_bounded_and_expires() {
    let policy = Policy {
        limits: Limits {
            max_unproven: 4096,
            ..Limits::default()
        },
        session: Config {
            timeout: Duration::from_secs(5),
            ..Config::for_server()
        },
        ..Policy::default()
    };
    let mut door = Door::new(policy);
    for i in 0..100_000u32 {
        let from = peer(1 + (i % 250) as u8, 1024 + (i % 60_000) as u16);
        door.feed(u64::from(i / 100), from, &get(i + 1, b"f"));
    }
    assert!(door.endpoint.unproven() <= 4096);
    assert!(door.endpoint.stats().unproven_forgotten > 90_000);
    assert_eq!(door.counts.opened.load(Ordering::SeqCst), 0);
    door.endpoint.handle_timeout(door.at(1000 + 5000 + 1000));
    assert_eq!(door.endpoint.unproven(), 0);
}

#[test]
fn a_request_of_another_version_is_told_which_version_is_spoken() {
    let mut door = Door::new(Policy::default());
    let mut bytes = vec![0u8; 64];
    let n = get(11, b"f").encode(&mut bytes);
    bytes[2] = 9;
    let crc = crc32fast::hash(&bytes[..n - 4]);
    bytes[n - 4..n].copy_from_slice(&crc.to_be_bytes());
    let fed = door.feed_bytes(0, peer(1, 5000), &bytes[..n]);
    assert!(matches!(
        fed.reply(),
        Message::Error {
            session: 11,
            code: ErrorCode::UnsupportedVersion,
            ..
        }
    ));
    assert!(fed.within_amplification_limit());
}
