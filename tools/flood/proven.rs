//! The attacks whose peers prove their address, as a real host (not a spoofer) can: they
//! read the server's Accept and answer it with the session id it names, so the server opens
//! a session for each; then they hold what they opened as cheaply as they can.
//!
//! * [`Resume`]: Get at offset = size, then Ack 0: each pair makes the server check the
//!   whole-file CRC of a file it sends nothing of; the pairs sit among unproven Gets at
//!   offset = size.
//! * [`Drip`]: sessions that acknowledge one datagram every few seconds each, so they make
//!   almost no progress but never time out; an evicted one is opened again.
//! * [`ListChurn`]: a List storm while one address opens an upload (Put, Data 1) and cancels
//!   it every [`CHURN_EVERY`], so that the library folder never stays unchanged.
//!
//! Each one closes every session it still holds when the flood ends (an Error `Cancelled`
//! each, what a client that gives up sends), so the next phase starts from an idle server.

use crate::blast::{Out, Script};
use crate::requests::{cancel, get, RequestShape, Requests};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use udpft::proto::wire::{Message, DEFAULT_CHUNK};

/// How often a drip session repeats an unanswered request, and how long it waits after a
/// refusal before it asks again (under a new token).
const REQUEST_AGAIN: Duration = Duration::from_millis(500);

/// How often the churning address opens and cancels an upload.
pub const CHURN_EVERY: Duration = Duration::from_millis(50);

/// First token of the proven scripts (clear of the unproven ones' small tokens).
const FIRST_TOKEN: u32 = 0x4000_0000;

/// Proven resume pairs among unproven resumes (see the module docs).
pub struct Resume {
    sources: Vec<SocketAddr>,
    name: Vec<u8>,
    size: u64,
    pairs_left: u32,
    tokens: u32,
    n: u64,
    next_token: u32,
    /// (source, token) of pairs whose Accept has not come yet.
    awaiting: HashMap<(usize, u32), ()>,
    /// (source, session) of every proven session, to close at the end.
    proven: Vec<(usize, u32)>,
    proofs: u64,
    refused: u64,
    dones: u64,
}

impl Resume {
    /// `pairs` proven pairs first, then unproven resumes under `tokens` tokens per socket.
    pub fn new(
        sources: Vec<SocketAddr>,
        name: Vec<u8>,
        size: u64,
        pairs: u32,
        tokens: u32,
    ) -> Self {
        Self {
            sources,
            name,
            size,
            pairs_left: pairs,
            tokens,
            n: 0,
            next_token: FIRST_TOKEN,
            awaiting: HashMap::new(),
            proven: Vec::new(),
            proofs: 0,
            refused: 0,
            dones: 0,
        }
    }
}

impl Script for Resume {
    fn sources(&self) -> Vec<SocketAddr> {
        self.sources.clone()
    }

    fn next(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Out> {
        let source = (self.n % self.sources.len() as u64) as usize;
        let round = self.n / self.sources.len() as u64;
        self.n += 1;
        let token = if self.pairs_left > 0 {
            self.pairs_left -= 1;
            self.next_token += 1;
            self.awaiting.insert((source, self.next_token), ());
            self.next_token
        } else {
            1 + (round % u64::from(self.tokens)) as u32
        };
        let len = get(token, &self.name, self.size, None, buf);
        Some(Out { source, len })
    }

    fn reply(
        &mut self,
        _now: Instant,
        source: usize,
        datagram: &[u8],
        buf: &mut [u8],
    ) -> Option<usize> {
        match Message::decode(datagram).ok()? {
            Message::Accept { session, token, .. } => {
                self.awaiting.remove(&(source, token))?;
                self.proven.push((source, session));
                self.proofs += 1;
                Some(Message::Ack { session, seq: 0 }.encode(buf))
            }
            Message::Error { session, .. } => {
                if self.awaiting.remove(&(source, session)).is_some() {
                    self.refused += 1;
                }
                None
            }
            Message::Done { .. } => {
                self.dones += 1;
                None
            }
            _ => None,
        }
    }

    fn farewell(&mut self, buf: &mut [u8]) -> Option<Out> {
        let (source, session) = self.proven.pop()?;
        Some(Out {
            source,
            len: cancel(session, buf),
        })
    }

    fn notes(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("pairs_proven", self.proofs),
            ("pairs_refused", self.refused),
            ("dones_received", self.dones),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DripState {
    /// Request sent under this token; no Accept yet.
    Asked { token: u32 },
    /// Proven as `session`; the highest Data received so far.
    Open { session: u32, highest: u64 },
}

struct DripSession {
    source: usize,
    state: DripState,
    /// Bumped on every change, so stale timer entries are told apart.
    generation: u32,
}

/// Sessions that make one datagram of progress every `every` (see the module docs).
pub struct Drip {
    sources: Vec<SocketAddr>,
    shape: RequestShape,
    every: Duration,
    sessions: Vec<DripSession>,
    /// (due, session index, generation), earliest first.
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    by_token: HashMap<(usize, u32), usize>,
    by_session: HashMap<(usize, u32), usize>,
    next_token: u32,
    opened: u64,
    refused: u64,
    ended: u64,
}

impl Drip {
    /// `count` sessions over `sources`, asking for `shape`, one Ack each every `every`.
    pub fn new(sources: Vec<SocketAddr>, shape: RequestShape, count: u32, every: Duration) -> Self {
        let now = Instant::now();
        let sessions: Vec<DripSession> = (0..count as usize)
            .map(|i| DripSession {
                source: i % sources.len(),
                state: DripState::Asked { token: 0 },
                generation: 0,
            })
            .collect();
        let timers = (0..sessions.len()).map(|i| Reverse((now, i, 0))).collect();
        Self {
            sources,
            shape,
            every,
            sessions,
            timers,
            by_token: HashMap::new(),
            by_session: HashMap::new(),
            next_token: FIRST_TOKEN,
            opened: 0,
            refused: 0,
            ended: 0,
        }
    }

    fn arm(&mut self, i: usize, at: Instant) {
        let s = &mut self.sessions[i];
        s.generation = s.generation.wrapping_add(1);
        self.timers.push(Reverse((at, i, s.generation)));
    }

    /// Session `i` asks again under a new token, after `delay`.
    fn ask_again(&mut self, i: usize, now: Instant, delay: Duration) {
        let source = self.sessions[i].source;
        if let DripState::Open { session, .. } = self.sessions[i].state {
            self.by_session.remove(&(source, session));
        }
        self.sessions[i].state = DripState::Asked { token: 0 };
        self.arm(i, now + delay);
    }
}

impl Script for Drip {
    fn sources(&self) -> Vec<SocketAddr> {
        self.sources.clone()
    }

    fn next(&mut self, now: Instant, buf: &mut [u8]) -> Option<Out> {
        loop {
            let Reverse((at, i, generation)) = *self.timers.peek()?;
            if at > now {
                return None;
            }
            self.timers.pop();
            if self.sessions[i].generation != generation {
                continue; // stale
            }
            let source = self.sessions[i].source;
            let len = match self.sessions[i].state {
                DripState::Asked { token } => {
                    let token = if token == 0 {
                        self.next_token += 1;
                        self.by_token.insert((source, self.next_token), i);
                        self.next_token
                    } else {
                        token
                    };
                    self.sessions[i].state = DripState::Asked { token };
                    self.arm(i, now + REQUEST_AGAIN);
                    let chunk = Some(self.shape.chunk);
                    get(token, &self.shape.name, self.shape.offset, chunk, buf)
                }
                DripState::Open { session, highest } => {
                    self.arm(i, now + self.every);
                    Message::Ack {
                        session,
                        seq: highest,
                    }
                    .encode(buf)
                }
            };
            return Some(Out { source, len });
        }
    }

    fn reply(
        &mut self,
        now: Instant,
        source: usize,
        datagram: &[u8],
        buf: &mut [u8],
    ) -> Option<usize> {
        match Message::decode(datagram).ok()? {
            Message::Accept { session, token, .. } => {
                let i = self.by_token.remove(&(source, token))?;
                if self.sessions[i].state != (DripState::Asked { token }) {
                    return None;
                }
                self.sessions[i].state = DripState::Open {
                    session,
                    highest: 0,
                };
                self.by_session.insert((source, session), i);
                self.opened += 1;
                self.arm(i, now + self.every);
                // The proof: Ack 0 at once; from now on one Ack per period.
                Some(Message::Ack { session, seq: 0 }.encode(buf))
            }
            Message::Data { session, seq, .. } => {
                let i = *self.by_session.get(&(source, session))?;
                if let DripState::Open { highest, .. } = &mut self.sessions[i].state {
                    *highest = (*highest).max(seq);
                }
                None
            }
            Message::Done { session, .. } => {
                // The file ended: start another session in its place.
                let i = *self.by_session.get(&(source, session))?;
                self.ended += 1;
                self.ask_again(i, now, Duration::ZERO);
                Some(cancel(session, buf))
            }
            Message::Error { session, .. } => {
                // A refusal (under the token) or an eviction (under the session id).
                let i = self
                    .by_token
                    .remove(&(source, session))
                    .or_else(|| self.by_session.get(&(source, session)).copied())?;
                self.refused += 1;
                self.ask_again(i, now, REQUEST_AGAIN);
                None
            }
            _ => None,
        }
    }

    fn farewell(&mut self, buf: &mut [u8]) -> Option<Out> {
        let (&(source, session), _) = self.by_session.iter().next()?;
        self.by_session.remove(&(source, session));
        Some(Out {
            source,
            len: cancel(session, buf),
        })
    }

    fn notes(&self) -> Vec<(&'static str, u64)> {
        let open = self
            .sessions
            .iter()
            .filter(|s| matches!(s.state, DripState::Open { .. }))
            .count();
        vec![
            ("drip_open_at_end", open as u64),
            ("drip_opened", self.opened),
            ("drip_refused_or_evicted", self.refused),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Churn {
    Idle,
    /// Put sent under this token.
    Asked(u32),
    /// Data 1 sent in this session (the proof; the server now holds a temporary file).
    Proven(u32),
}

/// A List storm plus, on one thread, the churning upload (see the module docs).
pub struct ListChurn {
    storm: Requests,
    churns: bool,
    state: Churn,
    next_churn: Instant,
    token: u32,
    data: Vec<u8>,
    cycles: u64,
}

impl ListChurn {
    /// `storm`'s Lists, and a churning upload from one more socket if `churns`.
    pub fn new(storm: Requests, churns: bool) -> Self {
        Self {
            storm,
            churns,
            state: Churn::Idle,
            next_churn: Instant::now(),
            token: FIRST_TOKEN,
            data: vec![0x5a; usize::from(DEFAULT_CHUNK)],
            cycles: 0,
        }
    }

    fn churn_source(&self) -> usize {
        self.storm.source_list().len()
    }
}

impl Script for ListChurn {
    fn sources(&self) -> Vec<SocketAddr> {
        let mut sources = self.storm.source_list().to_vec();
        if self.churns {
            sources.push("127.0.0.2:0".parse().expect("valid address"));
        }
        sources
    }

    fn next(&mut self, now: Instant, buf: &mut [u8]) -> Option<Out> {
        if self.churns && now >= self.next_churn {
            self.next_churn = now + CHURN_EVERY;
            self.token += 1;
            self.state = Churn::Asked(self.token);
            let name = format!("churn-{:08x}.bin", self.token);
            let len = Message::Put {
                token: self.token,
                chunk: DEFAULT_CHUNK,
                window: 1,
                size: 1 << 20,
                overwrite: false,
                name: name.as_bytes(),
            }
            .encode(buf);
            return Some(Out {
                source: self.churn_source(),
                len,
            });
        }
        Some(self.storm.next_request(buf))
    }

    fn reply(
        &mut self,
        _now: Instant,
        source: usize,
        datagram: &[u8],
        buf: &mut [u8],
    ) -> Option<usize> {
        if !self.churns || source != self.churn_source() {
            return None;
        }
        match (Message::decode(datagram).ok()?, self.state) {
            (Message::Accept { session, token, .. }, Churn::Asked(asked)) if token == asked => {
                self.state = Churn::Proven(session);
                Some(
                    Message::Data {
                        session,
                        seq: 1,
                        payload: &self.data,
                    }
                    .encode(buf),
                )
            }
            (Message::Ack { session, seq: 1 }, Churn::Proven(proven)) if session == proven => {
                self.state = Churn::Idle;
                self.cycles += 1;
                Some(cancel(session, buf))
            }
            _ => None,
        }
    }

    fn farewell(&mut self, buf: &mut [u8]) -> Option<Out> {
        let Churn::Proven(session) = self.state else {
            return None;
        };
        self.state = Churn::Idle;
        Some(Out {
            source: self.churn_source(),
            len: cancel(session, buf),
        })
    }

    fn notes(&self) -> Vec<(&'static str, u64)> {
        vec![("uploads_opened_and_cancelled", self.cycles)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use udpft::proto::wire::{Kind, MAX_DATAGRAM};

    fn two_sources() -> Vec<SocketAddr> {
        vec![
            "127.0.1.1:0".parse().unwrap(),
            "127.0.1.2:0".parse().unwrap(),
        ]
    }

    #[test]
    fn a_resume_pair_proves_with_ack_0_and_is_closed_at_the_end() {
        let mut r = Resume::new(two_sources(), b"big".to_vec(), 1000, 1, 4);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let now = Instant::now();
        let out = r.next(now, &mut buf).unwrap();
        let Message::Get { token, offset, .. } = Message::decode(&buf[..out.len]).unwrap() else {
            panic!("a Get");
        };
        assert_eq!(offset, 1000, "at offset = size");
        let mut accept = vec![0u8; 64];
        let n = Message::Accept {
            session: 77,
            token,
            chunk: 1430,
            window: 1,
            size: 1000,
            offset: 1000,
        }
        .encode(&mut accept);
        let answer = r
            .reply(now, out.source, &accept[..n], &mut buf)
            .expect("Ack 0");
        assert_eq!(
            Message::decode(&buf[..answer]).unwrap(),
            Message::Ack {
                session: 77,
                seq: 0
            }
        );
        assert!(
            r.reply(now, out.source, &accept[..n], &mut buf).is_none(),
            "proven once"
        );
        // After the pairs: unproven resumes, whose Accepts are not answered.
        let out = r.next(now, &mut buf).unwrap();
        let m = Message::decode(&buf[..out.len]).unwrap();
        assert_eq!(m.kind(), Kind::Get);
        let farewell = r.farewell(&mut buf).expect("the session is closed");
        assert_eq!(
            Message::decode(&buf[..farewell.len]).unwrap().kind(),
            Kind::Error
        );
        assert!(r.farewell(&mut buf).is_none());
    }

    #[test]
    fn a_drip_session_acks_once_per_period() {
        let shape = RequestShape {
            name: b"f".to_vec(),
            chunk: 1430,
            offset: 0,
        };
        let every = Duration::from_secs(3);
        let mut d = Drip::new(two_sources(), shape, 1, every);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let t0 = Instant::now() + Duration::from_millis(1);
        let out = d.next(t0, &mut buf).expect("the request");
        let token = Message::decode(&buf[..out.len]).unwrap().session();
        assert!(d.next(t0, &mut buf).is_none(), "nothing more due");
        let mut reply = vec![0u8; 64];
        let n = Message::Accept {
            session: 9,
            token,
            chunk: 1430,
            window: 1,
            size: 5000,
            offset: 0,
        }
        .encode(&mut reply);
        assert!(
            d.reply(t0, out.source, &reply[..n], &mut buf).is_some(),
            "Ack 0"
        );
        let mut data = vec![0u8; 2000];
        let n = Message::Data {
            session: 9,
            seq: 1,
            payload: &[1; 1430],
        }
        .encode(&mut data);
        assert!(
            d.reply(t0, out.source, &data[..n], &mut buf).is_none(),
            "not acked at once"
        );
        assert!(
            d.next(t0 + every / 2, &mut buf).is_none(),
            "not before the period"
        );
        let out = d.next(t0 + every, &mut buf).expect("the period's Ack");
        assert_eq!(
            Message::decode(&buf[..out.len]).unwrap(),
            Message::Ack { session: 9, seq: 1 }
        );
        assert!(d.farewell(&mut buf).is_some());
    }
}
