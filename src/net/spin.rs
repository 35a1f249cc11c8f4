//! When to spin before blocking: the adaptive busy-polling policy of [`super::Receiver`].
//!
//! Most of a loopback round trip is the wake-up from a blocking receive (here a median
//! 108 µs with blocking receives against 6.5 µs when both sides spin, for a 1452-byte
//! request and a 22-byte reply). Spinning on a non-blocking socket for a few microseconds
//! before blocking removes that wake-up whenever the reply comes within the spin, and wastes
//! the spin when it does not. So the policy spins only while replies have been coming soon,
//! and backs off when they do not:
//!
//! * it starts at no spin; a wait that ends with a datagram soon after it began (within the
//!   cap plus a wake-up's worth of time) starts spinning at [`START`], and each later such
//!   wait the spin missed doubles it, up to the cap (a reply just beyond the spin);
//! * a spin that catches the datagram keeps the budget as it is;
//! * [`GIVE_UP_AFTER`] spins in a row that catch nothing (replies come, but later than the
//!   cap: a LAN round trip, say) stop spinning for the next [`HOLD_OFF`] waits, so a peer
//!   beyond reach costs a few wasted spins per [`HOLD_OFF`] waits, not one per wait;
//! * a datagram that came only long after the wait began halves the budget, and a wait that
//!   found nothing at all (idle: no peer, or a lost datagram) stops spinning, so an idle
//!   server never spins;
//! * the budget shrinks as the number of live sessions grows (cap ÷ sessions): many
//!   sessions mean datagrams are often already queued, and spinning loops compete with the
//!   peers' own processes for the machine's cores.
//!
//! It is sans-IO like the protocol core: it reads no clock and touches no socket; the
//! receiver tells it how each wait went and asks it for the next spin budget.

use std::time::Duration;

/// The default cap of the spin: long enough for a loopback round trip of the largest
/// datagram when both sides spin (17 µs measured here), short against a wake-up.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// The first spin once replies come soon.
pub const START: Duration = Duration::from_micros(8);

/// How much longer than the spin cap a blocking wait may take and still count as "the
/// datagram came soon": the wake-up from a blocking receive (about 50 µs here, half of the
/// blocking round trip above), with room to spare.
pub const WAKE_ALLOWANCE: Duration = Duration::from_micros(100);

/// Consecutive spins that catch nothing before the policy stops spinning for a while.
pub const GIVE_UP_AFTER: u32 = 4;

/// Waits without spinning after giving up, before spinning may start again.
pub const HOLD_OFF: u32 = 64;

/// How one wait on the socket went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A datagram arrived while spinning.
    Caught,
    /// A datagram arrived after the spin (if any) ended, `after` the wait began.
    Woke {
        /// From the start of the wait to the datagram.
        after: Duration,
        /// Whether a spin ran first (and missed).
        spun: bool,
    },
    /// The wait ended at its deadline without a datagram, `waited` after it began.
    Empty {
        /// How long the wait lasted.
        waited: Duration,
    },
}

/// The adaptive busy-polling policy: how long to spin before the next blocking wait.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpinPolicy {
    /// The longest spin; zero turns spinning off.
    cap: Duration,
    /// The current spin, before the share per session is taken.
    budget: Duration,
    /// Spins in a row that caught nothing.
    misses: u32,
    /// Waits left before spinning may start again after giving up.
    hold_off: u32,
    /// Live sessions sharing the loop (at least 1).
    sessions: usize,
}

impl SpinPolicy {
    /// A policy that spins at most `cap` per wait; [`Duration::ZERO`] never spins.
    pub fn new(cap: Duration) -> Self {
        Self {
            cap,
            sessions: 1,
            ..Self::default()
        }
    }

    /// The cap this policy was made with.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Tells the policy how many sessions the loop now serves (0 counts as 1).
    pub fn set_sessions(&mut self, sessions: usize) {
        self.sessions = sessions.max(1);
    }

    /// The longest spin worth trying before the next blocking wait (zero: do not spin).
    #[must_use]
    pub fn budget(&self) -> Duration {
        self.budget.min(self.share())
    }

    /// The cap divided among the live sessions.
    fn share(&self) -> Duration {
        self.cap / u32::try_from(self.sessions).unwrap_or(u32::MAX).max(1)
    }

    /// Learns from how a wait went.
    pub fn observe(&mut self, wait: Wait) {
        if self.cap.is_zero() {
            return;
        }
        // Later than this, a datagram did not come "soon": spinning would not have caught it.
        let soon = self.share() + WAKE_ALLOWANCE;
        match wait {
            Wait::Caught => self.misses = 0,
            Wait::Woke { after, spun } => {
                if spun {
                    self.misses += 1;
                    if self.misses >= GIVE_UP_AFTER {
                        self.budget = Duration::ZERO;
                        self.misses = 0;
                        self.hold_off = HOLD_OFF;
                        return;
                    }
                }
                if self.hold_off > 0 {
                    self.hold_off -= 1;
                } else if after <= soon {
                    self.budget = if self.budget.is_zero() {
                        START
                    } else {
                        self.budget * 2
                    }
                    .min(self.cap);
                } else {
                    self.budget /= 2;
                    if self.budget < START {
                        self.budget = Duration::ZERO;
                    }
                }
            }
            // A wait its deadline cut short says nothing about the traffic.
            Wait::Empty { waited } if waited <= soon => {}
            Wait::Empty { .. } => {
                self.budget = Duration::ZERO;
                self.misses = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = DEFAULT_BUSY_POLL;

    fn us(micros: u64) -> Duration {
        Duration::from_micros(micros)
    }

    /// A wait whose datagram came `after` the start, with or without a spin before.
    fn woke(policy: &SpinPolicy, after: Duration) -> Wait {
        Wait::Woke {
            after,
            spun: !policy.budget().is_zero(),
        }
    }

    /// The budget once replies have come soon a few times.
    fn warmed_up() -> SpinPolicy {
        let mut policy = SpinPolicy::new(CAP);
        for _ in 0..4 {
            let wait = woke(&policy, us(60));
            policy.observe(wait);
        }
        policy
    }

    #[test]
    fn off_never_spins() {
        let mut policy = SpinPolicy::new(Duration::ZERO);
        for _ in 0..10 {
            policy.observe(Wait::Woke {
                after: us(5),
                spun: false,
            });
        }
        assert_eq!(policy.budget(), Duration::ZERO);
    }

    #[test]
    fn replies_that_come_soon_grow_the_spin_up_to_the_cap() {
        let mut policy = SpinPolicy::new(CAP);
        assert_eq!(
            policy.budget(),
            Duration::ZERO,
            "no spin before any traffic"
        );
        let mut budgets = Vec::new();
        for _ in 0..4 {
            // A blocking wait's wake-up makes even a quick reply look 60 µs late.
            let wait = woke(&policy, us(60));
            policy.observe(wait);
            budgets.push(policy.budget());
        }
        assert_eq!(budgets, [us(8), us(16), us(32), CAP]);
    }

    #[test]
    fn spins_that_catch_their_datagram_keep_spinning() {
        let mut policy = warmed_up();
        for _ in 0..1000 {
            policy.observe(Wait::Caught);
        }
        assert_eq!(policy.budget(), CAP);
        // An occasional miss between catches changes nothing.
        for _ in 0..100 {
            let wait = woke(&policy, us(70));
            policy.observe(wait);
            policy.observe(Wait::Caught);
        }
        assert_eq!(policy.budget(), CAP);
    }

    #[test]
    fn an_idle_wait_stops_spinning_until_traffic_returns() {
        let mut policy = warmed_up();
        policy.observe(Wait::Empty {
            waited: Duration::from_millis(100),
        });
        assert_eq!(policy.budget(), Duration::ZERO);
        // Idle stays idle: no spin however many empty waits follow.
        for _ in 0..10 {
            policy.observe(Wait::Empty {
                waited: Duration::from_millis(100),
            });
        }
        assert_eq!(policy.budget(), Duration::ZERO);
        let wait = woke(&policy, us(40));
        policy.observe(wait);
        assert_eq!(policy.budget(), START, "traffic is back");
    }

    #[test]
    fn a_wait_cut_short_by_its_deadline_is_not_idleness() {
        let mut policy = warmed_up();
        policy.observe(Wait::Empty { waited: us(20) });
        assert_eq!(policy.budget(), CAP);
    }

    #[test]
    fn replies_beyond_reach_stop_the_spin_for_a_while() {
        // A LAN round trip: replies 1 ms after each wait began, far beyond any spin.
        let mut policy = warmed_up();
        let mut spins = 0;
        for _ in 0..1000 {
            if !policy.budget().is_zero() {
                spins += 1;
            }
            let wait = woke(&policy, Duration::from_millis(1));
            policy.observe(wait);
        }
        assert!(spins <= 3, "{spins} spins for late replies");
        assert_eq!(policy.budget(), Duration::ZERO);
    }

    #[test]
    fn replies_just_beyond_the_cap_waste_few_spins() {
        // Replies come 70 µs after the wait began (after wake-up): soon enough to tempt the
        // policy, too late for a 50 µs spin to catch. Growing spins then give up, hold off,
        // and try again: a few wasted spins per HOLD_OFF waits.
        let mut policy = SpinPolicy::new(CAP);
        let mut spins = 0;
        let waits = 10 * (HOLD_OFF + GIVE_UP_AFTER);
        for _ in 0..waits {
            if !policy.budget().is_zero() {
                spins += 1;
            }
            let wait = woke(&policy, us(70));
            policy.observe(wait);
        }
        assert!(
            spins <= 10 * GIVE_UP_AFTER + GIVE_UP_AFTER,
            "{spins} of {waits} waits spun"
        );
        assert!(spins >= GIVE_UP_AFTER, "it kept trying");
    }

    #[test]
    fn more_sessions_mean_shorter_spins() {
        let mut policy = warmed_up();
        policy.set_sessions(2);
        assert_eq!(policy.budget(), CAP / 2);
        policy.set_sessions(64);
        assert!(policy.budget() < us(1));
        policy.set_sessions(0);
        assert_eq!(policy.budget(), CAP);
    }
}
