//! A lossy link, as a pure function of a seed: what happens to each datagram that crosses
//! it (lost, duplicated, held back so later ones overtake it, bit-flipped, truncated,
//! delayed). Shared by the `lossy-proxy` tool and the tests' simulated network, so both
//! impair traffic the same way; like the protocol core it reads no clock and draws no
//! randomness of its own: the caller passes `now` and the seed.

use std::time::{Duration, Instant};

/// The impairments of one direction of a link. Probabilities are in `0.0..=1.0`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairments {
    /// Chance a datagram is dropped.
    pub loss: f64,
    /// Chance a datagram is delivered twice.
    pub duplicate: f64,
    /// Chance a datagram is held back by `reorder_hold` so that later ones overtake it.
    pub reorder: f64,
    /// Chance one bit of the datagram is flipped.
    pub corrupt: f64,
    /// Chance the datagram is cut short at a random length.
    pub truncate: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// How long a reordered datagram is held back (default 1 ms when zero).
    pub reorder_hold: Duration,
}

impl Impairments {
    /// Whether the link changes nothing.
    pub fn is_perfect(&self) -> bool {
        *self == Self::default()
    }
}

/// What the link did, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered to the link.
    pub offered: u64,
    /// Copies delivered (a duplicated datagram counts twice).
    pub forwarded: u64,
    /// Dropped.
    pub dropped: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Held back to be overtaken.
    pub reordered: u64,
    /// Bit-flipped.
    pub corrupted: u64,
    /// Cut short.
    pub truncated: u64,
}

impl LinkStats {
    /// `forwarded=… dropped=… duplicated=… reordered=… corrupted=… truncated=…`.
    pub fn summary(&self) -> String {
        format!(
            "offered={} forwarded={} dropped={} duplicated={} reordered={} corrupted={} truncated={}",
            self.offered,
            self.forwarded,
            self.dropped,
            self.duplicated,
            self.reordered,
            self.corrupted,
            self.truncated
        )
    }
}

/// One copy of a datagram to deliver at `at`. The bytes are the original, changed in place
/// as `damage` says (so the hot path copies only when it must).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When it arrives.
    pub at: Instant,
    /// How its bytes differ from the original.
    pub damage: Damage,
}

/// How a delivered copy differs from the datagram that was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Intact.
    None,
    /// Bit `bit` (0 = most significant of byte 0) flipped.
    FlipBit {
        /// Which bit, counted over the whole datagram.
        bit: usize,
    },
    /// Only the first `len` bytes arrive.
    Truncate {
        /// Bytes kept.
        len: usize,
    },
}

impl Damage {
    /// Applies the damage to a copy of the datagram's bytes and returns the bytes to deliver.
    pub fn apply<'a>(&self, bytes: &'a mut [u8]) -> &'a [u8] {
        match *self {
            Self::None => bytes,
            Self::FlipBit { bit } => {
                if let Some(byte) = bytes.get_mut(bit / 8) {
                    *byte ^= 0x80 >> (bit % 8);
                }
                bytes
            }
            Self::Truncate { len } => &bytes[..len.min(bytes.len())],
        }
    }
}

/// A seeded pseudo-random generator (SplitMix64): small, fast, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The next `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }

    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// `len` bytes from [`Rng`] seeded with `seed`: reproducible file contents for tests,
/// benchmarks and the soak test, incompressible enough to exercise every path.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// One direction of a lossy link.
#[derive(Clone, Debug)]
pub struct Link {
    impairments: Impairments,
    rng: Rng,
    stats: LinkStats,
}

impl Link {
    /// A link with these impairments, whose choices follow from `seed`.
    pub fn new(impairments: Impairments, seed: u64) -> Self {
        Self {
            impairments,
            rng: Rng::new(seed),
            stats: LinkStats::default(),
        }
    }

    /// Decides the fate of one datagram of `len` bytes sent at `now`: zero, one or two
    /// deliveries, pushed onto `out` (which is not cleared).
    pub fn transmit(&mut self, now: Instant, len: usize, out: &mut Vec<Delivery>) {
        let imp = &self.impairments;
        self.stats.offered += 1;
        if self.rng.chance(imp.loss) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(imp.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let imp = &self.impairments;
            let mut delay = imp.delay;
            if !imp.jitter.is_zero() {
                let jitter = self.rng.below(imp.jitter.as_nanos() as u64 + 1);
                delay += Duration::from_nanos(jitter);
            }
            if self.rng.chance(imp.reorder) {
                self.stats.reordered += 1;
                delay += if imp.reorder_hold.is_zero() {
                    Duration::from_millis(1)
                } else {
                    imp.reorder_hold
                };
            }
            let damage = if len > 0 && self.rng.chance(imp.corrupt) {
                self.stats.corrupted += 1;
                Damage::FlipBit {
                    bit: self.rng.below(len as u64 * 8) as usize,
                }
            } else if len > 0 && self.rng.chance(imp.truncate) {
                self.stats.truncated += 1;
                Damage::Truncate {
                    len: self.rng.below(len as u64) as usize,
                }
            } else {
                Damage::None
            };
            self.stats.forwarded += 1;
            out.push(Delivery {
                at: now + delay,
                damage,
            });
        }
    }

    /// What the link has done so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_fate() {
        let imp = Impairments {
            loss: 0.3,
            duplicate: 0.2,
            reorder: 0.2,
            corrupt: 0.1,
            ..Impairments::default()
        };
        let now = Instant::now();
        let run = |seed| {
            let mut link = Link::new(imp.clone(), seed);
            let mut out = Vec::new();
            for _ in 0..1000 {
                link.transmit(now, 100, &mut out);
            }
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn loss_rate_is_roughly_as_asked() {
        let mut link = Link::new(
            Impairments {
                loss: 0.1,
                ..Impairments::default()
            },
            1,
        );
        let mut out = Vec::new();
        for _ in 0..100_000 {
            link.transmit(Instant::now(), 10, &mut out);
        }
        let dropped = link.stats().dropped as f64 / 100_000.0;
        assert!((0.09..0.11).contains(&dropped), "dropped {dropped}");
    }

    #[test]
    fn damage_flips_exactly_one_bit() {
        let mut bytes = [0u8; 4];
        let out = Damage::FlipBit { bit: 9 }.apply(&mut bytes);
        assert_eq!(out, &[0, 0x40, 0, 0]);
    }
}
