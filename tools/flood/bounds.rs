//! The flood's bounds, checked before a single datagram leaves: traffic goes to loopback
//! only (127.0.0.0/8 and ::1, as the source addresses too), and every flood is bounded in
//! count and in time, shared by all its threads, so it stops by itself however it is run.
//!
//! A bound is a hard cap, not a hint: [`Budget::take`] says no once the count is spent or the
//! deadline has passed, and the caps themselves are bounded ([`MAX_COUNT`], [`MAX_SECONDS`],
//! [`MAX_RATE`]), so no command line can ask for an endless flood.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most datagrams one flood may send.
pub const MAX_COUNT: u64 = 50_000_000;
/// The longest one flood may last.
pub const MAX_SECONDS: f64 = 600.0;
/// The highest rate one flood may ask for, in datagrams a second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// Whether `ip` is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `addr` if it is a loopback address with a port; otherwise why it is refused.
///
/// # Errors
/// A message naming the address, for any address that is not loopback (the unspecified
/// address included: a send to it reaches whatever the host picks) or has port 0.
pub fn check_target(addr: SocketAddr) -> Result<SocketAddr, String> {
    if !is_loopback(addr.ip()) {
        return Err(format!(
            "{addr} is not a loopback address: udpft-flood sends only to 127.0.0.0/8 or ::1"
        ));
    }
    if addr.port() == 0 {
        return Err(format!("{addr} has no port"));
    }
    Ok(addr)
}

/// `addr` if a flood socket may be bound to it (a loopback address, any port).
///
/// # Errors
/// A message naming the address otherwise.
pub fn check_source(addr: SocketAddr) -> Result<SocketAddr, String> {
    if is_loopback(addr.ip()) {
        Ok(addr)
    } else {
        Err(format!(
            "{addr} is not a loopback address: flood sockets bind only to 127.0.0.0/8 or ::1"
        ))
    }
}

/// A rate in datagrams a second, if it is positive and at most [`MAX_RATE`].
///
/// # Errors
/// Why the rate is refused.
pub fn check_rate(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE {
        Ok(rate)
    } else {
        Err(format!(
            "a rate of {rate} datagrams/s is outside (0, {MAX_RATE}]"
        ))
    }
}

/// How many datagrams a flood may send and until when: shared by its threads.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    taken: AtomicU64,
    deadline: Instant,
    stopped: AtomicBool,
}

impl Budget {
    /// At most `count` datagrams, for at most `duration` from now.
    ///
    /// # Errors
    /// If `count` is 0 or above [`MAX_COUNT`], or `duration` is zero or above
    /// [`MAX_SECONDS`].
    pub fn new(count: u64, duration: Duration) -> Result<Self, String> {
        if count == 0 || count > MAX_COUNT {
            return Err(format!("a count of {count} is outside 1..={MAX_COUNT}"));
        }
        if duration.is_zero() || duration.as_secs_f64() > MAX_SECONDS {
            return Err(format!(
                "a duration of {:.3} s is outside (0, {MAX_SECONDS}] s",
                duration.as_secs_f64()
            ));
        }
        Ok(Self {
            limit: count,
            taken: AtomicU64::new(0),
            deadline: Instant::now() + duration,
            stopped: AtomicBool::new(false),
        })
    }

    /// Takes one datagram's worth: `false` once the count is spent, the deadline passed
    /// (at `now`) or [`Budget::stop`] was called. Exact under contention: across all
    /// threads, at most `count` calls return `true`.
    pub fn take(&self, now: Instant) -> bool {
        !self.is_over(now) && self.take_count()
    }

    /// Takes one datagram's worth for closing what a flood opened (an Error per session it
    /// holds), after it stopped: within the count, whatever the deadline or a stop say.
    pub fn take_farewell(&self) -> bool {
        self.take_count()
    }

    fn take_count(&self) -> bool {
        self.taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < self.limit).then_some(t + 1)
            })
            .is_ok()
    }

    /// Whether the flood must stop at `now` (count spent, deadline passed or stopped).
    pub fn is_over(&self, now: Instant) -> bool {
        self.stopped.load(Ordering::Relaxed)
            || now >= self.deadline
            || self.taken.load(Ordering::Relaxed) >= self.limit
    }

    /// Ends the flood early (every later [`Budget::take`] fails).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Datagrams taken so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// When the flood ends at the latest.
    #[cfg(test)]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in [
            "127.0.0.1:6969",
            "127.1.2.3:1",
            "[::1]:6969",
            "[::ffff:127.0.0.1]:7",
        ] {
            let addr: SocketAddr = ok.parse().unwrap();
            assert_eq!(check_target(addr), Ok(addr), "{ok}");
        }
        for refused in [
            "10.0.0.1:6969",
            "192.168.1.20:6969",
            "8.8.8.8:53",
            "0.0.0.0:6969",
            "255.255.255.255:6969",
            "[::]:6969",
            "[fe80::1]:6969",
            "[::ffff:10.0.0.1]:6969",
            "128.0.0.1:6969",
        ] {
            let addr: SocketAddr = refused.parse().unwrap();
            assert!(check_target(addr).is_err(), "{refused} must be refused");
            assert!(check_source(addr).is_err(), "{refused} must be refused");
        }
        assert!(
            check_target("127.0.0.1:0".parse().unwrap()).is_err(),
            "no port"
        );
        assert!(check_source("127.9.9.9:0".parse().unwrap()).is_ok());
    }

    #[test]
    fn rates_and_bounds_are_capped() {
        assert!(check_rate(10_000.0).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_RATE * 2.0] {
            assert!(check_rate(bad).is_err(), "{bad}");
        }
        assert!(Budget::new(0, Duration::from_secs(1)).is_err());
        assert!(Budget::new(MAX_COUNT + 1, Duration::from_secs(1)).is_err());
        assert!(Budget::new(10, Duration::ZERO).is_err());
        assert!(Budget::new(10, Duration::from_secs_f64(MAX_SECONDS + 1.0)).is_err());
    }

    #[test]
    fn a_budget_stops_at_its_count_across_threads() {
        let budget = Arc::new(Budget::new(10_000, Duration::from_secs(60)).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    let mut granted = 0u64;
                    while budget.take(Instant::now()) {
                        granted += 1;
                    }
                    granted
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 10_000);
        assert_eq!(budget.taken(), 10_000);
        assert!(budget.is_over(Instant::now()));
    }

    #[test]
    fn a_budget_stops_at_its_deadline_and_when_stopped() {
        let budget = Budget::new(100, Duration::from_secs(5)).unwrap();
        let now = Instant::now();
        assert!(budget.take(now));
        assert!(!budget.take(budget.deadline()), "nothing at the deadline");
        assert!(!budget.take(budget.deadline() + Duration::from_secs(1)));
        assert!(budget.take(now), "still open before it");
        budget.stop();
        assert!(!budget.take(now), "nothing once stopped");
        assert_eq!(budget.taken(), 2);
    }
}
