//! Transcript tests of a checksum (Sum, protocol.md §22) at the front door and in the session
//! table, with explicit virtual times and an in-memory store that counts what it reads:
//! nothing is hashed before Ack 0 proves the peer, refusals come before proof and within the
//! amplification limit, one checksum at a time per address, a full queue of offloaded
//! checksums answers Busy under the session id, and a file that changed is an error, never a
//! checksum.

use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpft::proto::admission::{Limits, Policy};
use udpft::proto::checksum::Checksum;
use udpft::proto::endpoint::SessionMac;
use udpft::proto::refusal::{Refusal, AMPLIFICATION_FACTOR};
use udpft::proto::session::MemSource;
use udpft::proto::store::{FileInfo, Store};
use udpft::proto::table::{SessionTable, QUEUE_FULL};
use udpft::proto::wire::{Algo, ErrorCode, Message, MAX_DATAGRAM};
use udpft::proto::{Sink, Source};

/// The bytes of the library's file `f`.
const F: [u8; 100] = [5u8; 100];

/// A library of `f` (100 bytes), `empty` (0 bytes) and `changing` (which changes while it
/// is read); it counts the files opened, which a checksum must do to hash one.
struct Counting(Arc<AtomicUsize>);

/// A source whose file changed by the time its last byte was read.
struct Changing;

impl Source for Changing {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        MemSource(F.to_vec()).read_at(offset, buf)
    }
    fn unchanged(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }
}

impl Store for Counting {
    fn listing(&mut self) -> Result<Arc<[u8]>, Refusal> {
        Ok(Arc::from(&[][..]))
    }
    fn inspect(&mut self, name: &[u8]) -> Result<FileInfo, Refusal> {
        let size = match name {
            b"f" | b"changing" => 100,
            b"empty" => 0,
            b".hidden" => return Err(Refusal::new(ErrorCode::BadName, "hidden")),
            b"bad/name" => return Err(Refusal::new(ErrorCode::BadName, "separator")),
            _ => return Err(Refusal::new(ErrorCode::NotFound, "no such file")),
        };
        Ok(FileInfo { size, version: 7 })
    }
    fn check_upload(&mut self, _: &[u8], _: bool) -> Result<(), Refusal> {
        Ok(())
    }
    fn open(&mut self, name: &[u8], _: &FileInfo) -> Result<Box<dyn Source>, Refusal> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(match name {
            b"changing" => Box::new(Changing),
            b"empty" => Box::new(MemSource(Vec::new())),
            _ => Box::new(MemSource(F.to_vec())),
        })
    }
    fn create(&mut self, _: &[u8], _: u64, _: bool) -> Result<Box<dyn Sink>, Refusal> {
        Err(Refusal::new(ErrorCode::ReadOnly, "read-only"))
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

fn sum(token: u32, name: &[u8]) -> Message<'_> {
    Message::Sum {
        token,
        chunk: 1430,
        algo: Algo::Sha256,
        name,
    }
}

fn ack(session: u32, seq: u64) -> Message<'static> {
    Message::Ack { session, seq }
}

/// A session table over [`Counting`], fed one datagram at a time at explicit times.
struct Table {
    table: SessionTable,
    opened: Arc<AtomicUsize>,
    t0: Instant,
}

/// One datagram out: where it went and its bytes.
struct Out(SocketAddr, Vec<u8>);

impl Out {
    fn message(&self) -> Message<'_> {
        Message::decode(&self.1).expect("the server sends well-formed datagrams")
    }
}

impl Table {
    fn new(limits: Limits) -> Self {
        let opened = Arc::new(AtomicUsize::new(0));
        let policy = Policy {
            limits,
            ..Policy::default()
        };
        let store = Box::new(Counting(Arc::clone(&opened)));
        Self {
            table: SessionTable::new(policy, store, mac()),
            opened,
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn hashed(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }

    /// Feeds `message` from `from` at `ms`; returns every datagram sent in answer.
    fn feed(&mut self, ms: u64, from: SocketAddr, message: &Message<'_>) -> Vec<Out> {
        let mut bytes = vec![0u8; MAX_DATAGRAM];
        let n = message.encode(&mut bytes);
        let now = self.at(ms);
        self.table.handle_datagram(now, from, &bytes[..n]);
        let mut out = Vec::new();
        while let Some((to, datagram)) = self.table.poll_transmit(now, &mut bytes) {
            out.push(Out(to, datagram.to_vec()));
        }
        out
    }

    /// A Sum of `name` from `from` that the server accepts: its session id, after checking
    /// the Accept (the record's length, offset 0) and its size against the request's.
    fn accepted(&mut self, ms: u64, from: SocketAddr, token: u32, name: &[u8]) -> u32 {
        let request = sum(token, name);
        let out = self.feed(ms, from, &request);
        assert_eq!(out.len(), 1, "one reply to a request");
        assert_eq!(out[0].0, from, "the reply goes to the request's address");
        assert!(out[0].1.len() <= AMPLIFICATION_FACTOR * request.encoded_len());
        match out[0].message() {
            Message::Accept {
                session,
                token: echoed,
                size,
                offset,
                window,
                ..
            } => {
                assert_eq!((echoed, size, offset, window), (token, 40, 0, 1));
                session
            }
            other => panic!("expected an Accept, got {other:?}"),
        }
    }
}

/// The one reply in `out`: an Error, as (session field, code, text).
fn error_of(out: &[Out]) -> (u32, ErrorCode, String) {
    assert_eq!(out.len(), 1, "expected exactly one reply");
    match out[0].message() {
        Message::Error {
            session,
            code,
            text,
        } => (session, code, String::from_utf8_lossy(text).into_owned()),
        other => panic!("expected an Error, got {other:?}"),
    }
}

#[test]
fn nothing_is_hashed_until_ack_0_proves_the_peer_then_the_record_is_sent() {
    let mut t = Table::new(Limits::default());
    let p = peer(1, 5000);
    let session = t.accepted(0, p, 11, b"f");
    // Repeats get the same Accept; a spoofed proof from elsewhere is an unknown session.
    for ms in 1..10 {
        assert_eq!(t.accepted(ms, p, 11, b"f"), session);
    }
    let spoofed = t.feed(10, peer(2, 5000), &ack(session, 0));
    assert_eq!(error_of(&spoofed).1, ErrorCode::UnknownSession);
    assert_eq!(t.hashed(), 0, "nothing is read before the proof");

    let out = t.feed(11, p, &ack(session, 0));
    assert_eq!(t.hashed(), 1, "the proof starts the hash");
    assert_eq!(out.len(), 1);
    let Message::Data {
        seq: 1, payload, ..
    } = out[0].message()
    else {
        panic!("expected Data 1");
    };
    let record = Checksum::decode(Algo::Sha256, payload).expect("a SHA-256 record");
    assert_eq!(record.size, 100);
    assert_eq!(record.digest, Sha256::digest(F).to_vec());
    let out = t.feed(12, p, &ack(session, 1));
    let Message::Done {
        seq: 2, size, crc, ..
    } = out[0].message()
    else {
        panic!("expected Done 2");
    };
    assert_eq!((size, crc), (40, crc32fast::hash(payload)));
    assert!(t.feed(13, p, &ack(session, 2)).is_empty());
    assert!(
        t.table.is_empty(),
        "the session ended with its Done acknowledged"
    );
}

#[test]
fn hidden_missing_bad_too_large_and_unknown_algorithm_are_refused_before_proof() {
    let mut t = Table::new(Limits {
        max_sum: 50,
        ..Limits::default()
    });
    let p = peer(1, 5000);
    for (token, name, code) in [
        (1, &b".hidden"[..], ErrorCode::BadName),
        (2, b"bad/name", ErrorCode::BadName),
        (3, b"missing", ErrorCode::NotFound),
        (4, b"f", ErrorCode::TooLarge),
    ] {
        let request = sum(token, name);
        let out = t.feed(u64::from(token), p, &request);
        let (session, got, _) = error_of(&out);
        assert_eq!(
            (session, got),
            (token, code),
            "{}",
            String::from_utf8_lossy(name)
        );
        assert!(out[0].1.len() <= AMPLIFICATION_FACTOR * request.encoded_len());
    }
    let unknown = Message::Sum {
        token: 5,
        chunk: 1430,
        algo: Algo::Unknown(9),
        name: b"empty",
    };
    let (session, code, text) = error_of(&t.feed(5, p, &unknown));
    assert_eq!((session, code), (5, ErrorCode::BadRequest));
    assert!(text.contains("algorithm 9"), "{text}");
    assert_eq!(t.hashed(), 0);
    assert_eq!(t.table.endpoint().live(), 0);
}

#[test]
fn an_address_gets_one_checksum_at_a_time() {
    let mut t = Table::new(Limits::default());
    // Offloaded and never completed: the first checksum stays live.
    t.table.offload_checksums(4);
    let first = t.accepted(0, peer(1, 5000), 11, b"f");
    assert!(t.feed(1, peer(1, 5000), &ack(first, 0)).is_empty());
    assert_eq!(t.table.computing(), 1);
    // Another port of the same address is accepted, and refused when it proves its address
    // (where its hash would start)...
    let second = t.accepted(2, peer(1, 5001), 12, b"f");
    let (session, code, text) = error_of(&t.feed(2, peer(1, 5001), &ack(second, 0)));
    assert_eq!((session, code), (second, ErrorCode::Busy));
    assert!(text.contains("one checksum at a time"), "{text}");
    assert_eq!(t.table.computing(), 1);
    // ...while another address is served.
    let other = t.accepted(3, peer(2, 5000), 13, b"f");
    assert!(t.feed(4, peer(2, 5000), &ack(other, 0)).is_empty());
    assert_eq!(t.table.computing(), 2);
}

#[test]
fn a_full_queue_of_offloaded_checksums_answers_busy_and_the_table_never_hashes() {
    let mut t = Table::new(Limits::default());
    t.table.offload_checksums(1);
    let (a, b) = (peer(1, 5000), peer(2, 5000));
    let sa = t.accepted(0, a, 11, b"f");
    let sb = t.accepted(1, b, 12, b"f");
    assert!(
        t.feed(2, a, &ack(sa, 0)).is_empty(),
        "hashed elsewhere: nothing yet"
    );
    let job = t.table.poll_job().expect("a job for the driver");
    assert_eq!(
        (job.key, job.name.as_slice(), job.algo),
        ((a, sa), &b"f"[..], Algo::Sha256)
    );
    assert_eq!(
        job.file,
        FileInfo {
            size: 100,
            version: 7
        }
    );
    // The queue holds one job: the second proven checksum is told to come back later.
    let (session, code, text) = error_of(&t.feed(3, b, &ack(sb, 0)));
    assert_eq!((session, code), (sb, ErrorCode::Busy));
    assert!(text.contains(QUEUE_FULL), "{text}");
    assert!(t.table.poll_job().is_none());
    assert_eq!(t.hashed(), 0, "the table hashed nothing itself");
    // The result comes back: the session starts and sends its record.
    let sum = Checksum {
        algo: Algo::Sha256,
        size: 100,
        digest: Sha256::digest(F).to_vec(),
    };
    let now = t.at(50);
    t.table.completed(now, job.key, Ok(sum.clone()));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (to, datagram) = t.table.poll_transmit(now, &mut buf).expect("Data 1");
    assert_eq!(to, a);
    let Ok(Message::Data {
        seq: 1, payload, ..
    }) = Message::decode(datagram)
    else {
        panic!("expected Data 1");
    };
    assert_eq!(payload, &sum.encode()[..]);
    assert_eq!(t.table.computing(), 0);
    // With room again, the refused peer's retry (a new token) is queued.
    let again = t.accepted(60, b, 13, b"f");
    assert!(t.feed(61, b, &ack(again, 0)).is_empty());
    assert_eq!(t.table.computing(), 1);
}

#[test]
fn a_file_that_changes_while_hashed_is_file_changed_under_the_session_id() {
    let mut t = Table::new(Limits::default());
    let p = peer(1, 5000);
    let session = t.accepted(0, p, 11, b"changing");
    let (to, code, text) = error_of(&t.feed(1, p, &ack(session, 0)));
    assert_eq!((to, code), (session, ErrorCode::FileChanged));
    assert_eq!(
        text,
        "changing changed while it was being hashed; try again"
    );
    assert_eq!(t.table.endpoint().live(), 0, "its slot is free again");
    // An offloaded hash that found the same comes back as the same error.
    t.table.offload_checksums(2);
    let session = t.accepted(2, p, 12, b"f");
    assert!(t.feed(3, p, &ack(session, 0)).is_empty());
    let job = t.table.poll_job().expect("a job");
    let changed = Refusal::new(
        ErrorCode::FileChanged,
        "f changed while it was being hashed",
    );
    let now = t.at(4);
    t.table.completed(now, job.key, Err(changed));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (_, datagram) = t.table.poll_transmit(now, &mut buf).expect("the Error");
    let Ok(Message::Error {
        session: s, code, ..
    }) = Message::decode(datagram)
    else {
        panic!("expected an Error");
    };
    assert_eq!((s, code), (session, ErrorCode::FileChanged));
    assert_eq!(t.table.endpoint().live(), 0);
}

#[test]
fn an_empty_file_has_the_checksum_of_nothing() {
    let mut t = Table::new(Limits::default());
    let p = peer(1, 5000);
    let session = t.accepted(0, p, 11, b"empty");
    let out = t.feed(1, p, &ack(session, 0));
    let Message::Data { payload, .. } = out[0].message() else {
        panic!("expected Data 1");
    };
    let record = Checksum::decode(Algo::Sha256, payload).expect("a record");
    assert_eq!(record.size, 0);
    assert_eq!(record.digest, Sha256::digest(b"").to_vec());
}
