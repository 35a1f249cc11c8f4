//! One half of a transfer (a [`Transfer`]: sender or receiver) on its own, driven by a
//! script: datagrams in at explicit times, and the exact datagrams and deadline expected out.
//! Times are microseconds since the script's epoch; nothing sleeps. Every method is
//! `#[track_caller]`, so a failing step points at its line in the test.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::wire::MAX_DATAGRAM;
use udpft::proto::{Config, Message, Opening, Outcome, Plan, Sink, Stats, Transfer};

/// The session id every scripted plan uses.
pub const SESSION: u32 = 0x5E55_1011;
/// The request token every scripted plan uses.
pub const TOKEN: u32 = 0x7000_0001;

/// A plan of `size` bytes in chunks of `chunk`, window `window`, opening as `opening`.
pub fn plan(size: u64, chunk: u16, window: u16, opening: Opening) -> Plan {
    Plan {
        session: SESSION,
        size,
        offset: 0,
        chunk,
        window,
        opening,
        prefix_crc: 0,
    }
}

/// A sink whose bytes the script can read after the half took it, and that can be told to
/// fail its writes.
#[derive(Clone, Default)]
pub struct SharedSink {
    /// What was written and whether it was committed.
    pub inner: Arc<Mutex<MemSink>>,
    /// Writes made (each call once).
    pub writes: Arc<Mutex<Vec<usize>>>,
}

impl Sink for SharedSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.writes.lock().unwrap().push(data.len());
        self.inner.lock().unwrap().data.extend_from_slice(data);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        self.inner.lock().unwrap().committed = true;
        Ok(())
    }
}

/// A half of a transfer under a script.
pub struct Script {
    /// The half.
    pub half: Transfer,
    /// Time zero.
    pub epoch: Instant,
    /// Where a receiver writes.
    pub sink: SharedSink,
    buf: Vec<u8>,
}

/// `epoch + us` microseconds.
pub fn at(epoch: Instant, us: u64) -> Instant {
    epoch + Duration::from_micros(us)
}

impl Script {
    /// A sender of `bytes` under `plan` and `config`, started at time 0.
    pub fn sender(config: &Config, plan: Plan, bytes: Vec<u8>) -> Self {
        let epoch = Instant::now();
        Self {
            half: Transfer::send(epoch, config, plan, Box::new(MemSource(bytes))),
            epoch,
            sink: SharedSink::default(),
            buf: vec![0; MAX_DATAGRAM],
        }
    }

    /// A receiver under `plan` and `config`, started at time 0.
    pub fn receiver(config: &Config, plan: Plan) -> Self {
        let epoch = Instant::now();
        let sink = SharedSink::default();
        Self {
            half: Transfer::receive(epoch, config, plan, Box::new(sink.clone())),
            epoch,
            sink,
            buf: vec![0; MAX_DATAGRAM],
        }
    }

    /// The instant `us` microseconds after the epoch.
    pub fn at(&self, us: u64) -> Instant {
        at(self.epoch, us)
    }

    /// Feeds `message` at `us`.
    #[track_caller]
    pub fn recv(&mut self, us: u64, message: Message<'_>) {
        let bytes = encode(&message);
        let decoded = Message::decode(&bytes).expect("a scripted message encodes validly");
        self.half.handle_message(self.at(us), &decoded);
    }

    /// Fires the half's timers at `us`.
    #[track_caller]
    pub fn fire(&mut self, us: u64) {
        self.half.handle_timeout(self.at(us));
    }

    /// Everything the half sends at `us`, encoded.
    pub fn drain(&mut self, us: u64) -> Vec<Vec<u8>> {
        let now = self.at(us);
        let mut out = Vec::new();
        while let Some(n) = self.half.poll_transmit(now, &mut self.buf) {
            out.push(self.buf[..n].to_vec());
            assert!(out.len() < 10_000, "the half never stops sending");
        }
        out
    }

    /// Asserts the half sends exactly `expected` at `us`, in this order.
    #[track_caller]
    pub fn expect(&mut self, us: u64, expected: &[Message<'_>]) {
        let sent = self.drain(us);
        let got: Vec<String> = sent
            .iter()
            .map(|bytes| format!("{:?}", Message::decode(bytes)))
            .collect();
        let want: Vec<String> = expected
            .iter()
            .map(|m| format!("{:?}", Ok::<_, ()>(*m)))
            .collect();
        assert_eq!(got, want, "at {us} µs");
        for (bytes, message) in sent.iter().zip(expected) {
            assert_eq!(*bytes, encode(message), "at {us} µs: bytes of {message:?}");
        }
    }

    /// Asserts the half sends nothing at `us`.
    #[track_caller]
    pub fn expect_nothing(&mut self, us: u64) {
        self.expect(us, &[]);
    }

    /// Asserts the half's next deadline is `us` (`None`: no timer runs).
    #[track_caller]
    pub fn expect_deadline(&self, us: Option<u64>) {
        let got = self
            .half
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.epoch).as_micros() as u64);
        assert_eq!(got, us, "deadline");
    }

    /// The half's outcome.
    pub fn outcome(&self) -> Option<Outcome> {
        self.half.outcome().cloned()
    }

    /// The half's counters.
    pub fn stats(&self) -> Stats {
        self.half.stats()
    }

    /// What a receiver wrote, and whether it committed.
    pub fn written(&self) -> (Vec<u8>, bool) {
        let inner = self.sink.inner.lock().unwrap();
        (inner.data.clone(), inner.committed)
    }
}

/// The bytes of `message`.
pub fn encode(message: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = message.encode(&mut buf);
    buf.truncate(n);
    buf
}

/// Ack `seq` of the scripted session.
pub fn ack(seq: u64) -> Message<'static> {
    Message::Ack {
        session: SESSION,
        seq,
    }
}

/// Data `seq` of the scripted session.
pub fn data(seq: u64, payload: &[u8]) -> Message<'_> {
    Message::Data {
        session: SESSION,
        seq,
        payload,
    }
}

/// Done `seq` of the scripted session for a file of `bytes`.
pub fn done(seq: u64, bytes: &[u8]) -> Message<'static> {
    Message::Done {
        session: SESSION,
        seq,
        size: bytes.len() as u64,
        crc: crc32fast::hash(bytes),
    }
}

/// The server's Accept of the scripted session, stop-and-wait.
pub fn accept(chunk: u16, size: u64) -> Message<'static> {
    accept_windowed(chunk, 1, size)
}

/// The server's Accept of the scripted session granting `window`.
pub fn accept_windowed(chunk: u16, window: u16, size: u64) -> Message<'static> {
    Message::Accept {
        session: SESSION,
        token: TOKEN,
        chunk,
        window,
        size,
        offset: 0,
    }
}

/// The selective acknowledgment of the scripted session: everything up to `seq`, and the
/// messages `bitmap` names above it.
pub fn sack(seq: u64, bitmap: &[u8]) -> Message<'_> {
    Message::Sack {
        session: SESSION,
        seq,
        bitmap,
    }
}
