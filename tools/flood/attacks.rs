//! The attacks of issue 9 §2, each one a [`Attack`] that becomes one [`Script`] per flood
//! thread, and where their datagrams come from: many sockets spread over many loopback
//! addresses (127.0.X.Y, never 127.0.0.1, which is the legitimate client's), or, for
//! `same-address`, many ports of 127.0.0.1 itself.
//!
//! The unproven attacks ([`requests`]) never answer the server: a spoofer cannot, since the
//! server's replies go to the address it forged. The proven ones ([`proven`]) answer just
//! enough to prove their address and then hold, drip or churn what they opened.

use crate::blast::Script;
use crate::proven::{Drip, ListChurn, Resume};
use crate::requests::{Pattern, RequestShape, Requests};
use clap::{Args, ValueEnum};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use udpft::proto::wire::{Kind, DEFAULT_CHUNK, MAX_CHUNK};

/// One attack of issue 9 §2 (and two found while measuring them), or the control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Attack {
    /// Not an attack on the server: the `fds` flood aimed at a trivial echo on the same
    /// host ([`crate::sink`]), to measure what the flood costs the machine itself.
    Control,
    /// Get, List and Put requests from many addresses, never acknowledged, the same tokens
    /// repeated (refreshing their grants).
    Pending,
    /// Requests from the legitimate client's own address (127.0.0.1, many ports).
    SameAddress,
    /// Unproven Gets under ever-new tokens: each must cost no file descriptor.
    Fds,
    /// One-datagram Puts under ever-new names: each must cost no temporary file.
    Puts,
    /// Half-open Gets at 64 KiB chunks, ever-new tokens: memory must stay bounded.
    Memory,
    /// A storm of List requests against a library of 2000 files.
    List,
    /// Proven pairs (Get at offset = size, then Ack 0) against a large file, among unproven
    /// Gets at offset = size.
    Resume,
    /// Many proven sessions that acknowledge one datagram every few seconds each.
    Drip,
    /// `drip` at the largest chunk: each Ack moves 64 KiB, above the slow-session rate.
    #[value(name = "drip-64k")]
    Drip64k,
    /// `drip` from the legitimate client's own address (127.0.0.1), as many sessions as
    /// one address may hold: the per-address cap, unlike a full table, yields no slot.
    SameAddressDrip,
    /// Data and Ack datagrams for sessions that do not exist.
    Strangers,
    /// The List storm while one address keeps changing the folder (a proven Put opened
    /// and cancelled every 50 ms), so that the listing snapshot is never reused.
    ListChurn,
}

impl Attack {
    /// Every attack, in the order of the report.
    pub const ALL: [Self; 13] = [
        Self::Control,
        Self::Pending,
        Self::SameAddress,
        Self::Fds,
        Self::Puts,
        Self::Memory,
        Self::List,
        Self::Resume,
        Self::Drip,
        Self::Drip64k,
        Self::SameAddressDrip,
        Self::Strangers,
        Self::ListChurn,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Pending => "pending",
            Self::SameAddress => "same-address",
            Self::Fds => "fds",
            Self::Puts => "puts",
            Self::Memory => "memory",
            Self::List => "list",
            Self::Resume => "resume",
            Self::Drip => "drip",
            Self::Drip64k => "drip-64k",
            Self::SameAddressDrip => "same-address-drip",
            Self::Strangers => "strangers",
            Self::ListChurn => "list-churn",
        }
    }

    /// Whether its peers prove their address (so the server may hold a session for each).
    pub fn proves(self) -> bool {
        matches!(
            self,
            Self::Resume | Self::Drip | Self::Drip64k | Self::SameAddressDrip | Self::ListChurn
        )
    }

    /// Whether the library needs the 2000 small files of the listing attacks.
    pub fn needs_many_files(self) -> bool {
        matches!(self, Self::List | Self::ListChurn)
    }

    /// Whether the library needs the large file of the resume attack.
    pub fn needs_large_file(self) -> bool {
        self == Self::Resume
    }

    /// How many datagrams one phase of it sends at most, if the attack itself fixes it
    /// (`memory`: 100k half-open Gets).
    pub fn count(self) -> Option<u64> {
        (self == Self::Memory).then_some(100_000)
    }

    /// How long the flood runs before the legitimate client starts measuring: long enough
    /// for what it builds (grants, sessions) to be in place, and for drip sessions to be old
    /// enough to be judged slow.
    pub fn warmup(self, drip_every: Duration) -> Duration {
        match self {
            Self::Drip | Self::Drip64k | Self::SameAddressDrip => {
                Duration::from_secs(3) + drip_every
            }
            _ => Duration::from_secs(1),
        }
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The shape of a flood, shared by every attack.
#[derive(Args, Clone, Debug)]
pub struct Shape {
    /// Sending threads (the rate is split evenly between them; one sends 10,000 a second
    /// with room to spare).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Distinct loopback source addresses (127.0.X.Y, X from 1).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub addresses: u32,
    /// Source sockets in all, spread over the addresses.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=16_384))]
    pub sockets: u32,
    /// Tokens per socket that repeating attacks cycle through (distinct grants = sockets ×
    /// tokens; the server keeps 16,384 at most).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub tokens: u32,
    /// Proven pairs of the resume attack, per flood.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub pairs: u32,
    /// Sessions the drip attacks hold.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub sessions: u32,
    /// Seconds between two datagrams of one drip session.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub drip_every: f64,
}

impl Shape {
    /// The drip period.
    pub fn drip_period(&self) -> Duration {
        Duration::from_secs_f64(self.drip_every.clamp(0.01, 60.0))
    }
}

/// What the attacks ask the server for.
#[derive(Clone, Debug)]
pub struct Files {
    /// A file the library has (Gets, drips).
    pub name: String,
    /// A large file of the library and its size (resume).
    pub large: Option<(String, u64)>,
}

/// The source addresses of `attack`: `sockets` sockets, port 0, over `addresses` loopback
/// addresses (127.0.0.1 for `same-address`).
pub fn sources(attack: Attack, shape: &Shape) -> Vec<SocketAddr> {
    (0..shape.sockets)
        .map(|i| {
            let ip = if matches!(attack, Attack::SameAddress | Attack::SameAddressDrip) {
                Ipv4Addr::LOCALHOST
            } else {
                spread_address(i % shape.addresses)
            };
            SocketAddr::V4(SocketAddrV4::new(ip, 0))
        })
        .collect()
}

/// The `a`-th flood address: 127.0.1.1, 127.0.1.2, … 127.0.1.254, 127.0.2.1, …
pub fn spread_address(a: u32) -> Ipv4Addr {
    let x = 1 + a / 254;
    Ipv4Addr::new(127, (x >> 8) as u8, x as u8, (1 + a % 254) as u8)
}

/// The scripts of `attack`, one per thread, each with its share of the sources.
///
/// # Errors
/// If the attack needs a large file and none is given.
pub fn scripts(
    attack: Attack,
    shape: &Shape,
    files: &Files,
    seed: u64,
) -> Result<Vec<Box<dyn Script>>, String> {
    let all = sources(attack, shape);
    let threads = usize::from(shape.threads).min(all.len()).max(1);
    let share =
        |t: usize| -> Vec<SocketAddr> { all.iter().skip(t).step_by(threads).copied().collect() };
    let file = files.name.as_bytes().to_vec();
    let get = |chunk: u16| RequestShape {
        name: file.clone(),
        chunk,
        offset: 0,
    };
    let mut scripts: Vec<Box<dyn Script>> = Vec::new();
    for t in 0..threads {
        let sources = share(t);
        let seed = seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let script: Box<dyn Script> = match attack {
            Attack::Resume => {
                let (name, size) = files
                    .large
                    .clone()
                    .ok_or("the resume attack needs a large file (--large NAME:SIZE)")?;
                let pairs = share_of(shape.pairs, t, threads);
                Box::new(Resume::new(
                    sources,
                    name.into_bytes(),
                    size,
                    pairs,
                    shape.tokens,
                ))
            }
            Attack::Drip | Attack::Drip64k | Attack::SameAddressDrip => {
                let chunk = if attack == Attack::Drip64k {
                    MAX_CHUNK
                } else {
                    DEFAULT_CHUNK
                };
                let total = if attack == Attack::SameAddressDrip {
                    shape.sessions.min(PER_ADDRESS_CAP)
                } else {
                    shape.sessions
                };
                let sessions = share_of(total, t, threads);
                Box::new(Drip::new(
                    sources,
                    get(chunk),
                    sessions,
                    shape.drip_period(),
                ))
            }
            Attack::ListChurn => {
                let (pattern, chunk) = unproven(Attack::List, shape);
                let storm = Requests::new(sources, pattern, get(chunk), seed);
                // One churning address is enough; the other threads only storm.
                Box::new(ListChurn::new(storm, t == 0))
            }
            _ => {
                let (pattern, chunk) = unproven(attack, shape);
                Box::new(Requests::new(sources, pattern, get(chunk), seed))
            }
        };
        scripts.push(script);
    }
    Ok(scripts)
}

/// Live sessions one address may hold at the server by default (`--max-per-address`).
const PER_ADDRESS_CAP: u32 = 256;

/// What an unproven attack sends, and at which chunk.
fn unproven(attack: Attack, shape: &Shape) -> (Pattern, u16) {
    let refresh = |kinds| Pattern::Refresh {
        kinds,
        tokens: shape.tokens,
    };
    match attack {
        Attack::Pending | Attack::SameAddress => {
            (refresh(&[Kind::Get, Kind::List, Kind::Put]), DEFAULT_CHUNK)
        }
        Attack::List | Attack::ListChurn => (refresh(&[Kind::List]), DEFAULT_CHUNK),
        Attack::Puts => (Pattern::Fresh(Kind::Put), DEFAULT_CHUNK),
        Attack::Memory => (Pattern::Fresh(Kind::Get), MAX_CHUNK),
        Attack::Strangers => (Pattern::Strangers, DEFAULT_CHUNK),
        // fds, control, and the proven ones' unproven share: unproven Gets.
        _ => (Pattern::Fresh(Kind::Get), DEFAULT_CHUNK),
    }
}

/// Thread `t`'s share of `total` (the first threads take the remainder).
fn share_of(total: u32, t: usize, threads: usize) -> u32 {
    let (each, extra) = (total / threads as u32, total % threads as u32);
    each + u32::from((t as u32) < extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::is_loopback;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        shape: Shape,
    }

    fn shape() -> Shape {
        Cli::parse_from(["x"]).shape
    }

    #[test]
    fn sources_are_on_loopback_and_never_the_legitimate_address_unless_asked() {
        let shape = shape();
        for attack in Attack::ALL {
            let sources = sources(attack, &shape);
            assert_eq!(sources.len(), shape.sockets as usize);
            assert!(sources.iter().all(|s| is_loopback(s.ip())));
            let legit = sources
                .iter()
                .filter(|s| s.ip() == Ipv4Addr::LOCALHOST)
                .count();
            if matches!(attack, Attack::SameAddress | Attack::SameAddressDrip) {
                assert_eq!(legit, sources.len());
            } else {
                assert_eq!(legit, 0, "{attack}");
            }
        }
        assert_eq!(spread_address(0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(spread_address(254), Ipv4Addr::new(127, 0, 2, 1));
        assert_eq!(spread_address(254 * 300), Ipv4Addr::new(127, 1, 45, 1));
    }

    #[test]
    fn shares_add_up() {
        assert_eq!((0..3).map(|t| share_of(4096, t, 3)).sum::<u32>(), 4096);
        assert_eq!(share_of(1, 1, 2), 0);
    }

    #[test]
    fn every_attack_has_a_script_per_thread() {
        let shape = shape();
        let files = Files {
            name: "f".into(),
            large: Some(("big".into(), 1 << 20)),
        };
        for attack in Attack::ALL {
            let scripts = scripts(attack, &shape, &files, 1).unwrap();
            assert_eq!(scripts.len(), usize::from(shape.threads), "{attack}");
            let sockets: usize = scripts.iter().map(|s| s.sources().len()).sum();
            let churner = usize::from(attack == Attack::ListChurn);
            assert_eq!(sockets, shape.sockets as usize + churner, "{attack}");
        }
        let no_large = Files {
            large: None,
            ..files
        };
        assert!(scripts(Attack::Resume, &shape, &no_large, 1).is_err());
    }
}
