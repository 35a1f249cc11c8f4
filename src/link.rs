//! A lossy link, as a pure function of a seed: what happens to each datagram that crosses
//! it (queued behind a bottleneck or dropped at its full queue, lost, duplicated, held back
//! so later ones overtake it, bit-flipped, truncated, delayed). Shared by the `lossy-proxy`
//! tool and the tests' simulated network, so both impair traffic the same way; like the
//! protocol core it reads no clock and draws no randomness of its own: the caller passes
//! `now` and the seed.
//!
//! A datagram first meets the bottleneck (when a rate is set): a router port that
//! serialises one datagram at a time at `rate` bytes per second and buffers at most `queue`
//! more in a FIFO, dropping arrivals to a full queue (drop-tail), which is how congestion
//! loses datagrams. Then it crosses the wire behind it, where the random impairments
//! happen: a datagram lost there has still used its share of the bottleneck.

use std::collections::VecDeque;
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
    /// Bottleneck rate in bytes (of UDP payload) per second; 0 means no bottleneck. A
    /// datagram of `len` bytes occupies the bottleneck for `len / rate` seconds.
    pub rate: u64,
    /// Datagrams the bottleneck buffers while another one is being sent (with a rate set);
    /// one that arrives to a full buffer is dropped. 0: only a datagram that finds the
    /// bottleneck idle gets through.
    pub queue: usize,
}

impl Impairments {
    /// Whether the link changes nothing (a reorder hold without reordering, or a queue
    /// without a bottleneck, changes nothing).
    pub fn is_perfect(&self) -> bool {
        let effective = Self {
            reorder_hold: Duration::ZERO,
            queue: 0,
            ..self.clone()
        };
        effective == Self::default()
    }
}

/// What the link did, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered to the link.
    pub offered: u64,
    /// Copies delivered (a duplicated datagram counts twice).
    pub forwarded: u64,
    /// Dropped at random (`loss`).
    pub dropped: u64,
    /// Dropped because the bottleneck's queue was full (congestion, not random loss).
    pub queue_dropped: u64,
    /// The most datagrams that waited in the bottleneck's queue at once.
    pub queue_peak: u64,
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
    /// `offered=… forwarded=… dropped=… queue_dropped=… queue_peak=… duplicated=… …`.
    pub fn summary(&self) -> String {
        format!(
            "offered={} forwarded={} dropped={} queue_dropped={} queue_peak={} duplicated={} reordered={} corrupted={} truncated={}",
            self.offered,
            self.forwarded,
            self.dropped,
            self.queue_dropped,
            self.queue_peak,
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

/// A bottleneck: one datagram at a time on the outgoing link, a bounded FIFO before it.
///
/// It keeps, for each datagram still in it, when that datagram starts and finishes being
/// sent, so its state is a function of the arrivals alone (times and sizes), with no timer
/// of its own: at any `now`, those finished have left, the one started is on the link, and
/// the rest wait. At most `queue + 1` entries are ever kept.
#[derive(Clone, Debug, Default)]
struct Bottleneck {
    /// (start, finish) of each datagram not yet sent completely, in arrival order.
    in_system: VecDeque<(Instant, Instant)>,
}

/// What the bottleneck did with an arrival.
enum Admission {
    /// Its last byte leaves the bottleneck at this instant; `queued` datagrams wait in the
    /// queue now, itself included (0: it went straight onto an idle link).
    Sent { leaves: Instant, queued: usize },
    /// The queue was full.
    Dropped,
}

impl Bottleneck {
    /// Takes a datagram of `len` bytes arriving at `now`. `now` may run slightly backwards
    /// between calls (threads of a proxy read the clock before taking turns): an arrival is
    /// then treated as arriving when the link is next free, never earlier.
    fn admit(&mut self, now: Instant, len: usize, rate: u64, queue: usize) -> Admission {
        while self.in_system.front().is_some_and(|&(_, done)| done <= now) {
            self.in_system.pop_front();
        }
        let busy = !self.in_system.is_empty();
        // Only the oldest can have started (the rest start when it finishes).
        let on_link = usize::from(
            self.in_system
                .front()
                .is_some_and(|&(start, _)| start <= now),
        );
        let waiting = self.in_system.len() - on_link;
        if busy && waiting >= queue {
            return Admission::Dropped;
        }
        let start = self
            .in_system
            .back()
            .map_or(now, |&(_, done)| done.max(now));
        let leaves = start + serialisation(len, rate);
        self.in_system.push_back((start, leaves));
        let queued = if busy { waiting + 1 } else { 0 };
        Admission::Sent { leaves, queued }
    }
}

/// How long `len` bytes occupy a link of `rate` bytes per second (rounded up to a
/// nanosecond, so a rate is never exceeded).
fn serialisation(len: usize, rate: u64) -> Duration {
    let nanos = (len as u128 * 1_000_000_000).div_ceil(u128::from(rate.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// One direction of a lossy link.
#[derive(Clone, Debug)]
pub struct Link {
    impairments: Impairments,
    rng: Rng,
    bottleneck: Bottleneck,
    stats: LinkStats,
}

impl Link {
    /// A link with these impairments, whose choices follow from `seed`.
    pub fn new(impairments: Impairments, seed: u64) -> Self {
        Self {
            impairments,
            rng: Rng::new(seed),
            bottleneck: Bottleneck::default(),
            stats: LinkStats::default(),
        }
    }

    /// Decides the fate of one datagram of `len` bytes sent at `now`: zero, one or two
    /// deliveries, pushed onto `out` (which is not cleared). Datagrams through a
    /// bottleneck leave it in the order they were offered.
    pub fn transmit(&mut self, now: Instant, len: usize, out: &mut Vec<Delivery>) {
        self.stats.offered += 1;
        let imp = &self.impairments;
        // Without a bottleneck a datagram is on the wire at once; the random choices below
        // are drawn in the same order either way, so a seed means the same losses.
        let now = if imp.rate == 0 {
            now
        } else {
            match self.bottleneck.admit(now, len, imp.rate, imp.queue) {
                Admission::Sent { leaves, queued } => {
                    self.stats.queue_peak = self.stats.queue_peak.max(queued as u64);
                    leaves
                }
                Admission::Dropped => {
                    self.stats.queue_dropped += 1;
                    return;
                }
            }
        };
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

    /// A link with only a bottleneck of `rate` bytes/s and `queue` datagrams.
    fn bottleneck(rate: u64, queue: usize) -> Link {
        Link::new(
            Impairments {
                rate,
                queue,
                ..Impairments::default()
            },
            1,
        )
    }

    #[test]
    fn throughput_through_the_bottleneck_equals_its_rate() {
        // 10 Mbit/s, offered twice that in datagrams of two sizes for 2 s: the link is busy
        // all along, so what has left it by any time is the rate times that time.
        let rate = 1_250_000;
        let mut link = bottleneck(rate, 20);
        let epoch = Instant::now();
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        let mut offered_bytes = 0u64;
        let mut t = Duration::ZERO;
        for i in 0.. {
            if t >= Duration::from_secs(2) {
                break;
            }
            let len = if i % 2 == 0 { 100 } else { 1400 };
            let before = out.len();
            link.transmit(epoch + t, len, &mut out);
            if out.len() > before {
                sizes.push(len as u64);
            }
            offered_bytes += len as u64;
            t += Duration::from_micros(300);
        }
        assert!(
            offered_bytes > 2 * 2 * rate * 9 / 10,
            "offered {offered_bytes}"
        );
        let horizon = epoch + Duration::from_secs(2);
        let left_by_horizon: u64 = out
            .iter()
            .zip(&sizes)
            .filter(|(d, _)| d.at <= horizon)
            .map(|(_, &len)| len)
            .sum();
        let expected = 2 * rate;
        assert!(
            left_by_horizon.abs_diff(expected) <= 1400,
            "{left_by_horizon} bytes left in 2 s, expected {expected}"
        );
        let stats = link.stats();
        assert!(stats.queue_dropped > 0);
        assert_eq!(stats.forwarded + stats.queue_dropped, stats.offered);
        assert_eq!(stats.dropped, 0, "no random loss was asked for");
        assert_eq!(stats.queue_peak, 20);
    }

    #[test]
    fn a_burst_larger_than_the_queue_loses_exactly_the_overflow() {
        let (rate, queue, overflow) = (1_000_000, 8, 5);
        let mut link = bottleneck(rate, queue);
        let now = Instant::now();
        let mut out = Vec::new();
        // One goes onto the link, `queue` wait behind it, the rest find the queue full.
        for _ in 0..1 + queue + overflow {
            link.transmit(now, 1000, &mut out);
        }
        assert_eq!(out.len(), 1 + queue);
        assert_eq!(link.stats().queue_dropped, overflow as u64);
        assert_eq!(link.stats().queue_peak, queue as u64);
        // Each leaves 1 ms (1000 B at 1 MB/s) after the one before.
        for (i, delivery) in out.iter().enumerate() {
            assert_eq!(delivery.at, now + Duration::from_millis(i as u64 + 1));
        }
        // Once the first has left there is room for exactly one more.
        let later = now + Duration::from_millis(1);
        link.transmit(later, 1000, &mut out);
        link.transmit(later, 1000, &mut out);
        assert_eq!(out.len(), 2 + queue);
        assert_eq!(link.stats().queue_dropped, overflow as u64 + 1);
        // Once all have left the link is idle again: a new one leaves after its own time.
        let idle = now + Duration::from_millis(100);
        link.transmit(idle, 500, &mut out);
        assert_eq!(
            out.last().map(|d| d.at),
            Some(idle + Duration::from_micros(500))
        );
    }

    #[test]
    fn a_bottleneck_without_a_queue_takes_only_what_finds_it_idle() {
        let mut link = bottleneck(1_000_000, 0);
        let now = Instant::now();
        let mut out = Vec::new();
        link.transmit(now, 1000, &mut out);
        link.transmit(now + Duration::from_micros(999), 1000, &mut out);
        link.transmit(now + Duration::from_millis(1), 1000, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(link.stats().queue_dropped, 1);
        assert_eq!(link.stats().queue_peak, 0);
    }

    #[test]
    fn the_bottleneck_keeps_datagrams_in_order() {
        let mut link = Link::new(
            Impairments {
                rate: 2_000_000,
                queue: 1000,
                delay: Duration::from_millis(1),
                ..Impairments::default()
            },
            3,
        );
        let mut rng = Rng::new(9);
        let epoch = Instant::now();
        let mut out = Vec::new();
        let mut t = Duration::ZERO;
        for _ in 0..5000 {
            t += Duration::from_nanos(rng.below(1_000_000));
            link.transmit(epoch + t, 1 + rng.below(1500) as usize, &mut out);
        }
        assert_eq!(out.len(), 5000, "the queue never filled");
        assert!(out.windows(2).all(|w| w[0].at < w[1].at), "FIFO order");
    }

    #[test]
    fn a_bottleneck_draws_no_randomness() {
        // A bottleneck too fast and too deep to matter makes the same random choices (which
        // datagrams are lost, duplicated, damaged) as no bottleneck with the same seed.
        let imp = Impairments {
            loss: 0.2,
            duplicate: 0.1,
            corrupt: 0.1,
            ..Impairments::default()
        };
        let now = Instant::now();
        let run = |imp: Impairments| {
            let mut link = Link::new(imp, 5);
            let mut out = Vec::new();
            for i in 0..1000 {
                link.transmit(now + Duration::from_millis(i), 100, &mut out);
            }
            out.iter().map(|d| d.damage).collect::<Vec<_>>()
        };
        let fast = Impairments {
            rate: 1 << 40,
            queue: 1 << 20,
            ..imp.clone()
        };
        assert_eq!(run(imp), run(fast));
    }
}
