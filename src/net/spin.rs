//! When to spin before blocking: the adaptive busy-polling policy of [`super::Receiver`].
//!
//! Most of a loopback round trip on an idle machine is the wake-up from a blocking receive
//! (here a median 108 µs with blocking receives against 6.5 µs when both sides spin, for a
//! 1452-byte request and a 22-byte reply). Spinning on a non-blocking socket for a few
//! microseconds before blocking removes that wake-up whenever the reply comes within the
//! spin, and wastes the spin when it does not. On a busy machine the opposite holds: a
//! wake-up is cheap (the CPU is not idle), and a spinning loop only takes a core from the
//! peer it waits for. So the policy spins only while that pays, and backs off when not:
//!
//! * it starts at no spin; a wait that ends with a datagram soon after it began (within the
//!   cap plus a wake-up's worth of time) starts spinning at [`START`], and each later such
//!   wait the spin missed doubles it, up to the cap (a reply just beyond the spin);
//! * a spin that catches the datagram keeps the budget as it is;
//! * [`GIVE_UP_AFTER`] spins in a row that catch nothing (replies come, but later than the
//!   cap: a LAN round trip, say) stop spinning for the next [`HOLD_OFF`] waits, so a peer
//!   beyond reach costs a few wasted spins per [`HOLD_OFF`] waits, not one per wait;
//! * every [`PROBE_EVERY`] catches, one wait does not spin, to measure what a blocking
//!   receive costs now; when it is not at least [`MIN_GAIN`] slower than the spins' catches
//!   (a busy machine: wake-ups are cheap, and spinning slows the peer), spinning stops for a
//!   hold-off that doubles with each such verdict in a row, up to [`MAX_HOLD_OFF`] waits;
//! * a datagram that came only long after the wait began halves the budget, and a wait that
//!   found nothing at all (idle: no peer, or a lost datagram) stops spinning, so an idle
//!   server never spins;
//! * the budget shrinks as the number of live sessions grows (cap ÷ sessions): many
//!   sessions mean datagrams are often already queued, and spinning loops compete with the
//!   peers' own processes for the machine's cores;
//! * and it stops when the machine has no core to spare: the receiver reports, every few
//!   milliseconds, how long its thread waited for a CPU; a thread that waited more than
//!   [`MAX_RUN_DELAY_PERCENT`] of the time holds off for a number of reports that doubles
//!   while that lasts (up to [`MAX_CONTENDED_REPORTS`]; spinning resumes only after a quiet
//!   report) and halves with each quiet report while spinning. A spinning loop on a busy
//!   machine takes the core its peer needs to answer, and loses the scheduler's preference
//!   for threads that sleep, so its wake-ups get slower too.
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

/// The longest hold-off after probes found that spinning does not pay.
pub const MAX_HOLD_OFF: u32 = 4096;

/// Catches between two probes (waits without a spin, to measure a blocking receive): rare
/// enough that the probes' wake-ups cost little where spinning pays.
pub const PROBE_EVERY: u32 = 256;

/// How much sooner than a blocking receive a spin must get its datagrams to be worth the
/// core it occupies.
pub const MIN_GAIN: Duration = Duration::from_micros(10);

/// A spinning thread that waits for a CPU more than this share of the time (in percent)
/// has no core to spare.
pub const MAX_RUN_DELAY_PERCENT: u32 = 5;

/// The longest hold-off after run-delay reports found the machine busy, in reports.
pub const MAX_CONTENDED_REPORTS: u32 = 64;

/// How one wait on the socket went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A datagram arrived while spinning, `after` the wait began.
    Caught {
        /// From the start of the wait to the datagram.
        after: Duration,
    },
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
    /// The hold-off the next "spinning does not pay" verdict imposes.
    next_hold_off: u32,
    /// Live sessions sharing the loop (at least 1).
    sessions: usize,
    /// Smoothed time from the start of a wait to a datagram a spin caught.
    caught_after: Option<Duration>,
    /// Smoothed time from the start of a wait to a datagram that woke a blocking receive
    /// (no spin before it) soon after.
    woke_after: Option<Duration>,
    /// Catches since the last probe.
    since_probe: u32,
    /// The next wait is a probe: it does not spin.
    probing: bool,
    /// Whether a spin ran since the last run-delay report.
    spun_since_report: bool,
    /// Run-delay reports left before spinning may start again on a busy machine.
    contended: u32,
    /// The hold-off, in reports, the next busy verdict imposes.
    next_contended: u32,
}

/// `average` moved 1/8 of the way to `sample` (the first sample is taken as it is).
fn smooth(average: Option<Duration>, sample: Duration) -> Option<Duration> {
    Some(average.map_or(sample, |avg| (avg * 7 + sample) / 8))
}

impl SpinPolicy {
    /// A policy that spins at most `cap` per wait; [`Duration::ZERO`] never spins.
    pub fn new(cap: Duration) -> Self {
        Self {
            cap,
            sessions: 1,
            next_hold_off: HOLD_OFF,
            next_contended: 1,
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
        if self.probing || self.contended > 0 {
            return Duration::ZERO;
        }
        self.budget.min(self.share())
    }

    /// The cap divided among the live sessions.
    fn share(&self) -> Duration {
        self.cap / u32::try_from(self.sessions).unwrap_or(u32::MAX).max(1)
    }

    /// Stops spinning for `waits` waits.
    fn hold_off(&mut self, waits: u32) {
        self.budget = Duration::ZERO;
        self.misses = 0;
        self.hold_off = waits;
    }

    /// Learns from how a wait went.
    pub fn observe(&mut self, wait: Wait) {
        if self.cap.is_zero() {
            return;
        }
        // Later than this, a datagram did not come "soon": spinning would not have caught it.
        let soon = self.share() + WAKE_ALLOWANCE;
        let probe = std::mem::take(&mut self.probing);
        match wait {
            Wait::Caught { after } => {
                self.spun_since_report = true;
                self.misses = 0;
                self.caught_after = smooth(self.caught_after, after);
                self.since_probe += 1;
                if self.since_probe >= PROBE_EVERY {
                    self.since_probe = 0;
                    self.probing = true;
                }
            }
            Wait::Woke { after, spun: true } => {
                self.spun_since_report = true;
                self.misses += 1;
                if self.misses >= GIVE_UP_AFTER {
                    self.hold_off(HOLD_OFF);
                } else {
                    self.grow_or_shrink(after, soon);
                }
            }
            Wait::Woke { after, spun: false } => {
                if after <= soon {
                    self.woke_after = smooth(self.woke_after, after);
                }
                if probe {
                    self.judge();
                } else if self.hold_off > 0 {
                    self.hold_off -= 1;
                } else {
                    self.grow_or_shrink(after, soon);
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

    /// Learns that this thread waited `delay` for a CPU over the last `over` of wall time.
    /// Meant to be called every few milliseconds. A busy report starts (or, at the end of
    /// one, renews) a hold-off twice as long as the last; a quiet report from a period that
    /// spun halves the next one. (Blocking threads wait for a CPU too when the machine is
    /// busy, so a report need not follow a spin to count as busy; but only a spin shows
    /// that spinning itself leaves the machine a core to spare.)
    pub fn observe_run_delay(&mut self, delay: Duration, over: Duration) {
        let spun = std::mem::take(&mut self.spun_since_report);
        if self.contended > 1 {
            self.contended -= 1;
            return;
        }
        // The last report of a hold-off is judged too: no spin before a quiet one.
        self.contended = 0;
        if delay * 100 > over * MAX_RUN_DELAY_PERCENT {
            self.contended = self.next_contended;
            self.next_contended = (self.next_contended * 2).min(MAX_CONTENDED_REPORTS);
        } else if spun {
            // Halved, not reset: a thread back from a hold-off of blocking waits is
            // favoured by the scheduler for a moment, which says little of the load.
            self.next_contended = (self.next_contended / 2).max(1);
        }
    }

    /// After a probe: keeps spinning if blocking receives are clearly slower than the
    /// spins' catches, else holds off (longer each time in a row).
    fn judge(&mut self) {
        let (Some(caught), Some(woke)) = (self.caught_after, self.woke_after) else {
            return;
        };
        if woke >= caught + MIN_GAIN {
            self.next_hold_off = HOLD_OFF;
        } else {
            let waits = self.next_hold_off;
            self.hold_off(waits);
            self.next_hold_off = (waits * 2).min(MAX_HOLD_OFF);
        }
    }

    /// A datagram that came `after` the wait began, not caught by a spin: soon enough for a
    /// (longer) spin to catch the next one, or not.
    fn grow_or_shrink(&mut self, after: Duration, soon: Duration) {
        if after <= soon {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = DEFAULT_BUSY_POLL;

    fn us(micros: u64) -> Duration {
        Duration::from_micros(micros)
    }

    /// A peer whose datagram comes `reply` after each wait begins; a blocking receive
    /// notices it `wake_up` later. Runs `waits` waits and returns how many of them spun.
    fn run(policy: &mut SpinPolicy, waits: u32, reply: Duration, wake_up: Duration) -> u32 {
        let mut spins = 0;
        for _ in 0..waits {
            let budget = policy.budget();
            let wait = if budget.is_zero() {
                Wait::Woke {
                    after: reply + wake_up,
                    spun: false,
                }
            } else if reply <= budget {
                spins += 1;
                Wait::Caught { after: reply }
            } else {
                spins += 1;
                Wait::Woke {
                    after: reply + wake_up,
                    spun: true,
                }
            };
            policy.observe(wait);
        }
        spins
    }

    /// The budget once replies have come soon a few times.
    fn warmed_up() -> SpinPolicy {
        let mut policy = SpinPolicy::new(CAP);
        for _ in 0..4 {
            let spun = !policy.budget().is_zero();
            policy.observe(Wait::Woke {
                after: us(60),
                spun,
            });
        }
        policy
    }

    #[test]
    fn off_never_spins() {
        let mut policy = SpinPolicy::new(Duration::ZERO);
        assert_eq!(run(&mut policy, 100, us(5), us(50)), 0);
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
            let spun = !policy.budget().is_zero();
            policy.observe(Wait::Woke {
                after: us(60),
                spun,
            });
            budgets.push(policy.budget());
        }
        assert_eq!(budgets, [us(8), us(16), us(32), CAP]);
    }

    #[test]
    fn where_wake_ups_are_slow_nearly_every_wait_spins() {
        // An idle machine: the reply comes 5 µs after the wait begins, a blocking receive
        // sees it 60 µs later. Only the probes (one per PROBE_EVERY catches) do not spin.
        let mut policy = SpinPolicy::new(CAP);
        let waits = 10 * PROBE_EVERY;
        let spins = run(&mut policy, waits, us(5), us(60));
        let blocking = waits - spins;
        assert!(
            blocking <= 5 + waits / PROBE_EVERY,
            "{blocking} of {waits} waits blocked"
        );
        assert_eq!(
            policy.budget(),
            START,
            "a spin of 8 µs catches every 5 µs reply"
        );
    }

    #[test]
    fn where_wake_ups_are_cheap_spinning_stops_for_longer_and_longer() {
        // A busy machine: waking costs 2 µs, and the spins catch replies no sooner than a
        // blocking receive gets them. Each probe stops spinning, for twice as long as the
        // last time.
        let mut policy = SpinPolicy::new(CAP);
        let waits = 20 * PROBE_EVERY;
        let spins = run(&mut policy, waits, us(6), us(2));
        assert!(spins < waits / 3, "{spins} of {waits} waits spun");
        let later = run(&mut policy, waits, us(6), us(2));
        assert!(
            later < spins / 2,
            "spins {spins} then {later}: the hold-off grows"
        );
    }

    #[test]
    fn spins_that_catch_their_datagram_keep_spinning() {
        let mut policy = warmed_up();
        for _ in 0..100 {
            policy.observe(Wait::Caught { after: us(5) });
        }
        assert_eq!(policy.budget(), CAP);
        // An occasional miss between catches changes nothing.
        for _ in 0..50 {
            policy.observe(Wait::Woke {
                after: us(70),
                spun: true,
            });
            policy.observe(Wait::Caught { after: us(5) });
        }
        assert_eq!(policy.budget(), CAP);
    }

    #[test]
    fn an_idle_wait_stops_spinning_until_traffic_returns() {
        let mut policy = warmed_up();
        let idle = Wait::Empty {
            waited: Duration::from_millis(100),
        };
        for _ in 0..10 {
            policy.observe(idle);
            assert_eq!(policy.budget(), Duration::ZERO);
        }
        policy.observe(Wait::Woke {
            after: us(40),
            spun: false,
        });
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
        let spins = run(&mut policy, 1000, Duration::from_millis(1), us(50));
        assert!(spins <= 3, "{spins} spins for late replies");
        assert_eq!(policy.budget(), Duration::ZERO);
    }

    #[test]
    fn replies_just_beyond_the_cap_waste_few_spins() {
        // Replies 60 µs after the wait began: soon enough to tempt the policy, too late for
        // a 50 µs spin. Growing spins give up, hold off, and try again: a few wasted spins
        // per HOLD_OFF waits.
        let mut policy = SpinPolicy::new(CAP);
        let waits = 10 * (HOLD_OFF + GIVE_UP_AFTER);
        let spins = run(&mut policy, waits, us(60), us(10));
        assert!(spins <= 11 * GIVE_UP_AFTER, "{spins} of {waits} waits spun");
        assert!(spins >= GIVE_UP_AFTER, "it kept trying");
    }

    #[test]
    fn a_busy_machine_stops_the_spin_for_longer_and_longer() {
        let mut policy = warmed_up();
        let ms = Duration::from_millis;
        let report = |policy: &mut SpinPolicy, delay| {
            if !policy.budget().is_zero() {
                policy.observe(Wait::Caught { after: us(5) });
            }
            policy.observe_run_delay(delay, ms(2));
        };
        // Waiting for a CPU 1% of the time: a core to spare.
        report(&mut policy, us(20));
        assert_eq!(policy.budget(), CAP);
        // 25%: no spin for 1, then 2, then 4 reports.
        let mut off = Vec::new();
        for _ in 0..3 {
            report(&mut policy, us(500));
            let mut reports = 0;
            while policy.budget().is_zero() {
                report(&mut policy, Duration::ZERO);
                reports += 1;
            }
            off.push(reports);
        }
        assert_eq!(off, [1, 2, 4]);
        // Each quiet report while spinning halves the next hold-off (8, then 4, then 2).
        report(&mut policy, Duration::ZERO);
        report(&mut policy, Duration::ZERO);
        report(&mut policy, us(500));
        let mut reports = 0;
        while policy.budget().is_zero() {
            report(&mut policy, Duration::ZERO);
            reports += 1;
        }
        assert_eq!(reports, 2);
    }

    #[test]
    fn a_busy_machine_stops_the_spin_before_it_spins() {
        // Many threads waiting for two cores: a blocking thread waits for a CPU too.
        let mut policy = warmed_up();
        let busy = Duration::from_millis(1);
        policy.observe_run_delay(busy, Duration::from_millis(2));
        assert_eq!(policy.budget(), Duration::ZERO);
        // While busy reports go on, the hold-off is renewed at its end: no spin between.
        for _ in 0..200 {
            policy.observe_run_delay(busy, Duration::from_millis(2));
            assert_eq!(policy.budget(), Duration::ZERO);
        }
        // Once quiet, spinning resumes within the longest hold-off.
        let mut quiet = 0;
        while policy.budget().is_zero() {
            policy.observe_run_delay(Duration::ZERO, Duration::from_millis(2));
            quiet += 1;
            assert!(quiet <= MAX_CONTENDED_REPORTS, "still held off");
        }
        assert_eq!(policy.budget(), CAP);
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
