//! The unproven attacks' datagrams: requests (or strays) sent round-robin from a thread's
//! sockets and never answered, as a spoofer would send them. What varies is the
//! [`Pattern`]: the same tokens again and again (each repeat refreshes a grant the server
//! keeps), ever-new tokens (each one a new grant, a new name), or datagrams for sessions
//! that do not exist.

use crate::blast::{Out, Script};
use std::net::SocketAddr;
use std::time::Instant;
use udpft::proto::wire::{ErrorCode, Kind, Message, DEFAULT_CHUNK};

/// Size announced by the attacks' Puts.
const PUT_SIZE: u64 = 1 << 20;

/// Payload of a stranger's Data.
const STRANGER_PAYLOAD: usize = 512;

/// Which datagrams an unproven attack sends.
#[derive(Clone, Copy, Debug)]
pub enum Pattern {
    /// Requests of these kinds in turn, under `tokens` tokens per socket, repeated.
    Refresh {
        /// Request kinds, cycled.
        kinds: &'static [Kind],
        /// Tokens per socket.
        tokens: u32,
    },
    /// Requests of one kind, each under a new token (and, for a Put, a new name).
    Fresh(Kind),
    /// Data and Ack datagrams under random session ids.
    Strangers,
}

/// What the requests ask for.
#[derive(Clone, Debug)]
pub struct RequestShape {
    /// The file a Get names.
    pub name: Vec<u8>,
    /// The chunk asked for.
    pub chunk: u16,
    /// A Get's offset.
    pub offset: u64,
}

/// One thread's unproven flood.
pub struct Requests {
    sources: Vec<SocketAddr>,
    pattern: Pattern,
    shape: RequestShape,
    n: u64,
    rng: u64,
    name: Vec<u8>,
    payload: Vec<u8>,
}

impl Requests {
    /// A flood of `pattern` from `sources`, asking for `shape`; `seed` draws the strangers'
    /// session ids.
    pub fn new(sources: Vec<SocketAddr>, pattern: Pattern, shape: RequestShape, seed: u64) -> Self {
        Self {
            sources,
            pattern,
            shape,
            n: 0,
            rng: seed | 1,
            name: Vec::new(),
            payload: vec![0u8; STRANGER_PAYLOAD],
        }
    }

    /// SplitMix64 (a tiny, well-mixed generator: no crate for a few lines).
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Writes request `kind` under `token` from source `source` into `buf`.
    fn request(&mut self, kind: Kind, token: u32, source: usize, buf: &mut [u8]) -> usize {
        let shape = &self.shape;
        match kind {
            Kind::List => Message::List {
                token,
                chunk: shape.chunk,
                window: 1,
            }
            .encode(buf),
            Kind::Put => {
                self.name.clear();
                self.name
                    .extend_from_slice(format!("flood-{source}-{token:08x}.bin").as_bytes());
                Message::Put {
                    token,
                    chunk: shape.chunk,
                    window: 1,
                    size: PUT_SIZE,
                    overwrite: false,
                    name: &self.name,
                }
                .encode(buf)
            }
            _ => Message::Get {
                token,
                chunk: shape.chunk,
                window: 1,
                offset: shape.offset,
                name: &shape.name,
            }
            .encode(buf),
        }
    }

    /// The next request, for [`crate::proven`]'s scripts that mix requests with their own.
    pub fn next_request(&mut self, buf: &mut [u8]) -> Out {
        let sources = self.sources.len() as u64;
        let source = (self.n % sources) as usize;
        let round = self.n / sources;
        self.n += 1;
        let len = match self.pattern {
            Pattern::Refresh { kinds, tokens } => {
                let token = 1 + (round % u64::from(tokens)) as u32;
                let kind = kinds[((round + source as u64) % kinds.len() as u64) as usize];
                self.request(kind, token, source, buf)
            }
            Pattern::Fresh(kind) => {
                // Tokens never repeat on a socket (the high bit keeps them clear of the
                // refreshing attacks' small ones).
                let token = 0x8000_0000 | (round as u32 & 0x7fff_ffff);
                self.request(kind, token, source, buf)
            }
            Pattern::Strangers => {
                let bits = self.random();
                let session = (bits as u32).max(1);
                if bits >> 63 == 0 {
                    Message::Ack {
                        session,
                        seq: bits >> 40,
                    }
                    .encode(buf)
                } else {
                    Message::Data {
                        session,
                        seq: 1 + (bits >> 48),
                        payload: &self.payload,
                    }
                    .encode(buf)
                }
            }
        };
        Out { source, len }
    }

    /// The sources of this flood.
    pub fn source_list(&self) -> &[SocketAddr] {
        &self.sources
    }
}

impl Script for Requests {
    fn sources(&self) -> Vec<SocketAddr> {
        self.sources.clone()
    }

    fn next(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Out> {
        Some(self.next_request(buf))
    }
}

/// An Error that closes `session` (what a client sends when it gives up), into `buf`.
pub fn cancel(session: u32, buf: &mut [u8]) -> usize {
    Message::Error {
        session,
        code: ErrorCode::Cancelled,
        text: b"",
    }
    .encode(buf)
}

/// A Get of `name` at `offset` under `token`, at the default chunk unless `chunk` says.
pub fn get(token: u32, name: &[u8], offset: u64, chunk: Option<u16>, buf: &mut [u8]) -> usize {
    Message::Get {
        token,
        chunk: chunk.unwrap_or(DEFAULT_CHUNK),
        window: 1,
        offset,
        name,
    }
    .encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use udpft::proto::wire::MAX_DATAGRAM;

    fn flood(pattern: Pattern) -> Requests {
        let sources = vec![
            "127.0.1.1:0".parse().unwrap(),
            "127.0.1.2:0".parse().unwrap(),
        ];
        let shape = RequestShape {
            name: b"file".to_vec(),
            chunk: 1430,
            offset: 0,
        };
        Requests::new(sources, pattern, shape, 7)
    }

    fn decode_all(flood: &mut Requests, n: usize) -> Vec<(usize, Kind, u32)> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        (0..n)
            .map(|_| {
                let out = flood.next(Instant::now(), &mut buf).unwrap();
                let m = Message::decode(&buf[..out.len]).expect("well-formed");
                (out.source, m.kind(), m.session())
            })
            .collect()
    }

    #[test]
    fn refreshing_requests_repeat_their_tokens_and_alternate_sources() {
        let mut f = flood(Pattern::Refresh {
            kinds: &[Kind::Get, Kind::List, Kind::Put],
            tokens: 3,
        });
        let sent = decode_all(&mut f, 12);
        assert_eq!(sent[0].0, 0);
        assert_eq!(sent[1].0, 1);
        let tokens: Vec<u32> = sent.iter().map(|s| s.2).collect();
        assert_eq!(tokens, [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
        assert!(sent.iter().any(|s| s.1 == Kind::Put) && sent.iter().any(|s| s.1 == Kind::List));
    }

    #[test]
    fn fresh_requests_never_repeat_a_token_on_a_socket() {
        let mut f = flood(Pattern::Fresh(Kind::Put));
        let sent = decode_all(&mut f, 1000);
        let mut seen = std::collections::HashSet::new();
        for (source, kind, token) in sent {
            assert_eq!(kind, Kind::Put);
            assert!(seen.insert((source, token)), "repeated");
        }
    }

    #[test]
    fn strangers_are_well_formed_data_and_acks() {
        let mut f = flood(Pattern::Strangers);
        let sent = decode_all(&mut f, 200);
        assert!(sent
            .iter()
            .all(|s| matches!(s.1, Kind::Ack | Kind::Data) && s.2 != 0));
        assert!(sent.iter().any(|s| s.1 == Kind::Ack) && sent.iter().any(|s| s.1 == Kind::Data));
    }
}
