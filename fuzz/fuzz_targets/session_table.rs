//! Fuzz target: the server's session table fed arbitrary datagram sequences from a few
//! peers, with time moving forward. It must never panic, never emit a datagram that does
//! not decode, never hold more sessions than its limit, and must end empty once every
//! timer has run out.
//!
//! Input format: a sequence of records `[peer: u8][advance_ms: u8][len: u8][bytes; len]`;
//! a record whose first byte has the top bit set replays a valid request with token `len`
//! instead, and one with the next bit set the Ack 0 that proves it (the session ids are a
//! known function of the token here), so the fuzzer reaches live sessions quickly.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use std::sync::Arc;
use udpft::proto::admission::{Limits, Policy};
use udpft::proto::refusal::Refusal;
use udpft::proto::session::{MemSink, MemSource, Sink, Source};
use udpft::proto::store::{FileInfo, Store};
use udpft::proto::table::SessionTable;
use udpft::proto::wire::{ErrorCode, Message, MAX_DATAGRAM};
use udpft::proto::Config;

const MAX_SESSIONS: usize = 4;

/// A library of one file, in memory.
struct OneFile;

impl Store for OneFile {
    fn listing(&mut self) -> Result<Arc<[u8]>, Refusal> {
        Ok(Arc::from(
            &[0, 1, b'f', 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ))
    }
    fn inspect(&mut self, name: &[u8]) -> Result<FileInfo, Refusal> {
        match name {
            b"f" => Ok(FileInfo {
                size: 9,
                version: 1,
            }),
            _ => Err(Refusal::new(ErrorCode::NotFound, "no such file")),
        }
    }
    fn check_upload(&mut self, _: &[u8], _: bool) -> Result<(), Refusal> {
        Ok(())
    }
    fn open(&mut self, name: &[u8], _: &FileInfo) -> Result<Box<dyn Source>, Refusal> {
        self.inspect(name)?;
        Ok(Box::new(MemSource(b"123456789".to_vec())))
    }
    fn create(&mut self, _: &[u8], size: u64, _: bool) -> Result<Box<dyn Sink>, Refusal> {
        if size > 1 << 20 {
            return Err(Refusal::new(ErrorCode::TooLarge, "too large"));
        }
        Ok(Box::new(MemSink::default()))
    }
}

/// The session id of a token (attempt 0), as this target's key names them.
fn session_of(token: u32) -> u32 {
    token.wrapping_mul(2_654_435_761) | 1
}

fuzz_target!(|data: &[u8]| {
    let policy = Policy {
        session: Config {
            chunk: 4,
            ..Config::default()
        },
        limits: Limits {
            max_sessions: MAX_SESSIONS,
            ..Limits::default()
        },
        ..Policy::default()
    };
    let mut table = SessionTable::new(
        policy,
        Box::new(OneFile),
        Box::new(|_, token, attempt| session_of(token).wrapping_add(attempt << 1)),
    );
    let start = Instant::now();
    let mut now = start;
    let mut out = vec![0u8; MAX_DATAGRAM];
    let mut request = vec![0u8; 64];
    let mut rest = data;
    while let [head, advance, len, tail @ ..] = rest {
        let peer = SocketAddr::from(([10, 0, 0, head & 3], 1000));
        now += Duration::from_millis(u64::from(*advance));
        let datagram: &[u8] = if head & 0xC0 == 0xC0 {
            let n = Message::Ack {
                session: session_of(u32::from(*len)),
                seq: 0,
            }
            .encode(&mut request);
            rest = tail;
            &request[..n]
        } else if head & 0x80 != 0 {
            let n = Message::Get {
                token: u32::from(*len),
                chunk: 4,
                window: 1,
                offset: 0,
                name: b"f",
            }
            .encode(&mut request);
            rest = tail;
            &request[..n]
        } else {
            let n = usize::from(*len).min(tail.len());
            let (bytes, after) = tail.split_at(n);
            rest = after;
            bytes
        };
        table.handle_datagram(now, peer, datagram);
        table.handle_timeout(now);
        while let Some((_, n)) = table.poll_transmit(now, &mut out) {
            assert!(
                Message::decode(&out[..n]).is_ok(),
                "the table sent a malformed datagram"
            );
        }
        assert!(table.len() <= MAX_SESSIONS);
    }
    // With no more input, every session must end by its timers.
    for _ in 0..10_000 {
        let Some(at) = table.poll_timeout() else {
            break;
        };
        now = now.max(at);
        table.handle_timeout(now);
        while table.poll_transmit(now, &mut out).is_some() {}
    }
    assert_eq!(table.len(), 0, "sessions left after every timer ran out");
});
