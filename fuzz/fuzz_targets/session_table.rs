//! Fuzz target: the server's session table fed arbitrary datagram sequences from a few
//! peers, with time moving forward. It must never panic, never emit a datagram that does
//! not decode, never hold more sessions than its limit, and must end empty once every
//! timer has run out.
//!
//! Input format: a sequence of records `[peer: u8][advance_ms: u8][len: u8][bytes; len]`;
//! a record whose first byte has the top bit set replays a valid request instead (so the
//! fuzzer reaches live sessions quickly).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use udpft::proto::session::{MemSink, MemSource, Sink, Source};
use udpft::proto::table::{Limits, Refusal, SessionTable, Store};
use udpft::proto::wire::{ErrorCode, Message, MAX_DATAGRAM};
use udpft::proto::Config;

const MAX_SESSIONS: usize = 4;

/// A library of one file, in memory.
struct OneFile;

impl Store for OneFile {
    fn listing(&mut self) -> Result<Vec<u8>, Refusal> {
        Ok(vec![
            0, 1, b'f', 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0,
        ])
    }
    fn open(&mut self, name: &[u8]) -> Result<(Box<dyn Source>, u64), Refusal> {
        match name {
            b"f" => Ok((Box::new(MemSource(b"123456789".to_vec())), 9)),
            _ => Err(Refusal::new(ErrorCode::NotFound, "no such file")),
        }
    }
    fn create(&mut self, _: &[u8], size: u64, _: bool) -> Result<Box<dyn Sink>, Refusal> {
        if size > 1 << 20 {
            return Err(Refusal::new(ErrorCode::TooLarge, "too large"));
        }
        Ok(Box::new(MemSink::default()))
    }
}

fuzz_target!(|data: &[u8]| {
    let config = Config {
        chunk: 4,
        ..Config::default()
    };
    let limits = Limits {
        max_sessions: MAX_SESSIONS,
        ..Limits::default()
    };
    let mut next = 0u32;
    let mut table = SessionTable::new(
        config,
        limits,
        Box::new(OneFile),
        Box::new(move || {
            next += 1;
            next
        }),
    );
    let start = Instant::now();
    let mut now = start;
    let mut out = vec![0u8; MAX_DATAGRAM];
    let mut request = vec![0u8; 64];
    let mut rest = data;
    while let [head, advance, len, tail @ ..] = rest {
        let peer = SocketAddr::from(([10, 0, 0, head & 3], 1000));
        now += Duration::from_millis(u64::from(*advance));
        let datagram: &[u8] = if head & 0x80 != 0 {
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
