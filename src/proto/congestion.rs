//! The sender's congestion window: how many messages of a windowed session may be in the
//! network at once, between 1 and the granted window (protocol.md §21).
//!
//! The controller is delay-based, after TCP Vegas (Brakmo and Peterson, 1995; the variant of
//! Linux's `tcp_vegas.c`): once per round trip it compares the smallest round trip of that
//! round with the smallest ever seen (the path's base round trip) and estimates how many of
//! its messages wait in queues, `backlog = cwnd × (rtt − base) / rtt`. It adds one message
//! per round trip while fewer than its *target* `α` wait, removes one while more than
//! `β = 2α` do, and holds otherwise; in slow start it doubles each round trip until
//! [`GAMMA`] wait. A bottleneck's queue therefore holds a few messages of each flow and does
//! not overflow, and flows of the same path share it (each keeps the same few queued).
//! Before the excess `rtt − base` counts as queue, a *jitter allowance* is taken off it: two
//! mean deviations of the rounds' smallest round trips (at most half the base, or
//! [`MIN_JITTER_CAP`] if that is more), since a
//! round's minimum that moves from round to round without a queue (a relay's timer, a busy
//! scheduler) would otherwise read, scaled by a large window, as several messages queued.
//!
//! Loss is classified after TCP Veno (Fu and Liew, 2003), by the backlog that stood through
//! the last two rounds (the smaller of their estimates): a loss while it exceeds `β` is
//! congestion (a queue overflowed) and halves the window, once per round
//! trip; a loss while less waits is most likely random loss of the link, which a smaller
//! window would not prevent, so the window stays, and so does slow start. But a drop-tail queue shared by several
//! flows overflows while each holds only its share, so a loss while at least `α` of ours
//! wait also lowers the target `α` (by a quarter, down to [`MIN_TARGET`], once per round
//! trip), and every loss-free round raises it again (by [`TARGET_STEP`], up to
//! [`TARGET`]): flows whose queue does not fit shrink their claim on it until it fits, while
//! on a path that only loses at random the target settles low and the window stays full.
//! Two timeouts in a row without any delivery between them (a path that stopped delivering)
//! restart from [`MIN_CWND`] in slow start. A slow start that ended on the delay signal
//! alone, before any loss to congestion or timeout, resumes when [`SPURIOUS_EXIT_ROUNDS`] rounds in a row among the
//! [`SPURIOUS_EXIT_SPAN`] after its exit find the queue empty (less than [`EMPTY_QUEUE`]
//! waiting): the delay it ended on was the path's noise, not a queue (HyStart++'s
//! spurious-exit test, RFC 9406 §4.3), and growing by one message per round trip from there
//! would leave a long path half used for dozens of round trips. A resumed slow start's exit
//! never sets the window below where it resumed, and a transfer resumes at most
//! [`MAX_RESUMES`] times: on a path whose noise ends every slow start, the cycle would
//! otherwise keep the window below what Vegas's own rounds reach. Window 1 (stop-and-wait)
//! has no controller.

use super::share::window_share;
use std::time::{Duration, Instant};

/// What a sender's congestion window did over a transfer, for `-v` and the server's log: its
/// time-weighted mean (integrated at the `now`s the sender marks, [`Congestion::mark`]), and
/// every decrease by its cause. All zero for stop-and-wait and for a receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// The window integrated over the time data was being sent, in message-nanoseconds.
    pub cwnd_ns: u128,
    /// The time over which `cwnd_ns` was integrated.
    pub span: Duration,
    /// The largest window reached.
    pub max_cwnd: u64,
    /// Halvings on a loss read as congestion (a loss while the backlog exceeded `β`).
    pub cut_congestion: u64,
    /// Decreases after a retransmission timeout (a halving on the first, a restart on the
    /// second in a row).
    pub cut_timeout: u64,
    /// Decreases by the delay signal: a round whose backlog exceeded `β`, or slow start's
    /// exit to the delivered rate.
    pub cut_backlog: u64,
    /// Returns to slow start after an exit on the delay signal that the following rounds
    /// showed spurious (the queue stayed empty, no loss yet).
    pub resumed: u64,
    /// Rounds of congestion avoidance measured.
    pub rounds: u64,
    /// Of those, rounds that held the window (backlog between `α` and `β`; the controller's
    /// "enough queued"): a window that never grows though the path has room shows here.
    pub rounds_held: u64,
}

impl WindowStats {
    /// The time-weighted mean window, if any time was integrated.
    pub fn mean_cwnd(&self) -> Option<f64> {
        (!self.span.is_zero()).then(|| self.cwnd_ns as f64 / self.span.as_nanos() as f64)
    }

    /// All decreases.
    pub fn cuts(&self) -> u64 {
        self.cut_congestion + self.cut_timeout + self.cut_backlog
    }
}

/// The queue target `α` a flow starts with and returns to (Vegas's default): fewer queued
/// messages than `α`, grow by one per round trip; more than `2α`, shrink by one.
pub(crate) const TARGET: f64 = 2.0;
/// The smallest target: half a message queued on average still keeps a bottleneck busy.
pub(crate) const MIN_TARGET: f64 = 0.5;
/// What each loss-free round trip adds back to the target.
pub(crate) const TARGET_STEP: f64 = 0.125;
/// Slow start ends once this many messages wait in queues.
pub(crate) const GAMMA: f64 = 1.0;
/// The window a session starts with (at most the granted one): small, so a session that
/// never gets going holds few buffers.
pub(crate) const INITIAL_CWND: u32 = 4;
/// A round whose queue estimate is below this many messages found the path empty: half of
/// what ends slow start ([`GAMMA`]), so the window that slow start's exit leaves (the
/// delivered rate plus one message) does not count as empty.
pub(crate) const EMPTY_QUEUE: f64 = GAMMA / 2.0;
/// Consecutive empty rounds after a delay exit from slow start that resume it.
pub(crate) const SPURIOUS_EXIT_ROUNDS: u32 = 2;
/// Rounds after a delay exit from slow start in which empty rounds can show it spurious
/// (RFC 9406's conservative slow start lasts as many): later, an empty path is a competitor
/// that left, which Vegas's `+1` per round trip reclaims without a burst.
pub(crate) const SPURIOUS_EXIT_SPAN: u32 = 5;
/// How many times a transfer resumes slow start at most.
pub(crate) const MAX_RESUMES: u64 = 2;
/// A round that lost more than this share of the window shows a queue overflowing: it ends
/// slow start (every loss in slow start reads as random, since a round with more than
/// [`GAMMA`] queued already ended it) and is never an empty round.
pub(crate) const HEAVY_LOSS_SHARE: f64 = 0.25;
/// The smallest window the controller goes down to.
pub(crate) const MIN_CWND: u32 = 1;
/// Round-trip samples of the current round after which slow start may end early (the
/// delay test of HyStart: a queue is seen before the round is over).
pub(crate) const EARLY_EXIT_SAMPLES: u32 = 8;
/// The jitter allowance, in mean deviations of the rounds' smallest round trips: that much
/// of a round's excess over the base is taken as the path's noise, not as a queue.
pub(crate) const JITTER_DEVIATIONS: f64 = 2.0;
/// The gain of the smoothed round minimum and of its mean deviation (RFC 6298's β, per
/// round rather than per sample).
const JITTER_GAIN: f64 = 0.25;
/// The jitter allowance never exceeds this fraction of the base round trip, so a path whose
/// delay swings wildly still has a queue estimate (and its losses a cause)...
const MAX_JITTER_SHARE: f64 = 0.5;
/// ... unless that is below this: a busy machine's scheduling noise (tens of microseconds)
/// is not a queue however short the path. On loopback (a base of 10–30 µs) half the base
/// left most of that noise to read as queue, which held windows at 4 of 64.
const MIN_JITTER_CAP: Duration = Duration::from_micros(50);

/// One round trip's worth of measurement.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    /// The round ends when a message sent at or after this transmission is delivered.
    end_tx: u64,
    /// The smallest round trip measured in it.
    min_rtt: Option<Duration>,
    /// How many round trips were measured in it.
    samples: u32,
}

/// A windowed sender's congestion window.
#[derive(Clone, Debug)]
pub(crate) struct Congestion {
    cwnd: u32,
    ceiling: u32,
    /// The share of a busy server loop this session may hold (see
    /// [`Congestion::share_loop`]); the granted window when the loop has room.
    share: u32,
    /// The window the share last held down, given back when the share lifts (0: none).
    held_down: u32,
    slow_start: bool,
    base_rtt: Option<Duration>,
    round: Round,
    /// The queue estimate of the last complete round, in messages.
    backlog: f64,
    /// The estimate of the round before it: a loss is judged by the smaller of the two.
    prev_backlog: f64,
    /// The queue target `α` (and `β = 2α`), in messages.
    target: f64,
    /// Losses presumed in the current round, and in the last complete one.
    round_losses: u32,
    last_round_losses: u32,
    /// Losses of messages sent before this transmission belong to the congestion event the
    /// window already answered.
    recovery_end: u64,
    /// Retransmission timeouts since the last delivery.
    timeouts: u32,
    /// Whether a loss to congestion or a timeout was seen: from then on, slow start's exit
    /// stands.
    lost: bool,
    /// Rounds of congestion avoidance left in which the last delay exit from slow start can
    /// still prove spurious (0: none). Opened by the exit only while resuming is allowed: no
    /// loss to congestion or timeout yet, fewer than [`MAX_RESUMES`] resumptions.
    exit_span: u32,
    /// Rounds in a row within that span that found the queue empty.
    empty_rounds: u32,
    /// The window a resumed slow start began from (0: not resumed): its exit keeps at least
    /// this much, so resuming never ends below where it began.
    resume_floor: u32,
    /// The smoothed smallest round trip of a round, in seconds, and its mean deviation:
    /// how much a round's minimum moves from round to round without any queue to explain it.
    round_min_avg: Option<f64>,
    round_min_dev: f64,
    /// Counters of what the window did, and its time-weighted mean so far.
    stats: WindowStats,
    /// Up to when the window has been integrated into that mean (see [`Congestion::mark`]).
    marked: Option<Instant>,
}

impl Congestion {
    /// A controller within the granted `window`.
    pub(crate) fn new(window: u16) -> Self {
        let ceiling = u32::from(window.max(1));
        Self {
            cwnd: INITIAL_CWND.min(ceiling),
            ceiling,
            share: ceiling,
            held_down: 0,
            slow_start: true,
            base_rtt: None,
            round: Round::default(),
            backlog: 0.0,
            prev_backlog: 0.0,
            target: TARGET,
            round_losses: 0,
            last_round_losses: 0,
            recovery_end: 0,
            timeouts: 0,
            lost: false,
            exit_span: 0,
            empty_rounds: 0,
            resume_floor: 0,
            round_min_avg: None,
            round_min_dev: 0.0,
            stats: WindowStats::default(),
            marked: None,
        }
    }

    /// Adds the window as it stood since the last mark to its time-weighted mean, before an
    /// event at `now` may change it. The sender marks while Data flows, the window's time:
    /// the first mark only starts the clock.
    pub(crate) fn mark(&mut self, now: Instant) {
        if let Some(mark) = self.marked {
            let span = now.saturating_duration_since(mark);
            self.stats.cwnd_ns += u128::from(self.cwnd) * span.as_nanos();
            self.stats.span += span;
        }
        self.marked = Some(now);
    }

    /// What the window did so far: its decreases, rounds and time-weighted mean.
    pub(crate) fn stats(&self) -> WindowStats {
        WindowStats {
            max_cwnd: self.stats.max_cwnd.max(u64::from(self.cwnd)),
            ..self.stats
        }
    }

    /// How many messages may be in the network.
    pub(crate) fn window(&self) -> usize {
        self.cwnd as usize
    }

    /// The most the window may be now: the granted window, or less while a busy server
    /// loop holds this session to its share of it.
    fn limit(&self) -> u32 {
        self.ceiling.min(self.share)
    }

    /// Holds the window to this session's share of a busy server loop, as one of its
    /// `sessions` (1: the loop has room, the granted window; protocol.md §21.4). A window
    /// above the share comes down at once, and what it was is given back (within the new
    /// share) when the share grows: the hold answered the loop's time, not the path's, and
    /// Vegas's `+1` per round trip would take a long path hundreds of round trips to climb
    /// back after a busy moment.
    pub(crate) fn share_loop(&mut self, sessions: u32) {
        self.share = window_share(self.ceiling, sessions).max(MIN_CWND);
        let limit = self.limit();
        if self.cwnd > limit {
            self.held_down = self.held_down.max(self.cwnd);
            self.cwnd = limit;
        } else if self.held_down > self.cwnd {
            self.cwnd = self.held_down.min(limit);
            if self.cwnd == self.held_down {
                self.held_down = 0;
            }
        }
    }

    /// The queue estimate of the last round, in messages.
    #[cfg(test)]
    pub(crate) fn backlog(&self) -> f64 {
        self.backlog
    }

    /// Whether the window still doubles each round trip.
    #[cfg(test)]
    pub(crate) fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// Takes a round trip of the path measured before any data was sent (the handshake) as
    /// the base round trip: flows that start together would otherwise measure their base
    /// behind each other's first messages, and each count the others' queue as path.
    pub(crate) fn seed_base(&mut self, rtt: Duration) {
        let rtt = rtt.max(Duration::from_nanos(1));
        self.base_rtt = Some(self.base_rtt.map_or(rtt, |b| b.min(rtt)));
    }

    /// An acknowledgment delivered `delivered` messages, the latest-sent of them being
    /// transmission `newest_tx`; `rtt` is its round trip if it was sent once. `next_tx` is the
    /// order the next transmission will have.
    pub(crate) fn on_ack(
        &mut self,
        delivered: u64,
        rtt: Option<Duration>,
        newest_tx: u64,
        next_tx: u64,
    ) {
        if delivered == 0 {
            return;
        }
        self.timeouts = 0;
        if let Some(rtt) = rtt {
            let rtt = rtt.max(Duration::from_nanos(1));
            self.base_rtt = Some(self.base_rtt.map_or(rtt, |b| b.min(rtt)));
            self.round.min_rtt = Some(self.round.min_rtt.map_or(rtt, |m| m.min(rtt)));
            self.round.samples += 1;
        }
        if self.slow_start {
            self.cwnd = self.cwnd.saturating_add(delivered as u32);
            if self.round.samples >= EARLY_EXIT_SAMPLES {
                // Do not wait for the round to end to see the queue that doubling builds.
                self.end_slow_start_if_queued();
            }
        }
        if newest_tx >= self.round.end_tx {
            self.end_round();
            self.round = Round {
                end_tx: next_tx,
                ..Round::default()
            };
        }
        self.cwnd = self.cwnd.clamp(MIN_CWND.min(self.ceiling), self.limit());
        self.stats.max_cwnd = self.stats.max_cwnd.max(u64::from(self.cwnd));
    }

    /// The once-per-round-trip adjustment of Vegas.
    fn end_round(&mut self) {
        self.last_round_losses = std::mem::take(&mut self.round_losses);
        if self.last_round_losses == 0 {
            self.target = (self.target + TARGET_STEP).min(TARGET);
        }
        let (Some(base), Some(rtt)) = (self.base_rtt, self.round.min_rtt) else {
            return;
        };
        let (base, rtt) = (base.as_secs_f64(), rtt.as_secs_f64());
        self.prev_backlog = self.backlog;
        self.backlog = self.queued(base, rtt);
        self.follow_jitter(rtt);
        if self.slow_start {
            if self.heavy_loss() {
                // A queue overflowing faster than the round minimum shows it (a shallow
                // buffer, unpaced bursts): stop doubling, keep the window, and let Vegas's
                // rounds take it from here. Not a delay exit: no resumption follows.
                self.leave_slow_start();
                return;
            }
            self.end_slow_start_if_queued();
            return;
        }
        self.stats.rounds += 1;
        if self.resume_after_spurious_exit() {
            return;
        }
        if self.backlog > 2.0 * self.target {
            self.cwnd -= 1;
            self.held_down = 0;
            self.stats.cut_backlog += 1;
        } else if self.backlog < self.target {
            self.cwnd += 1;
        } else {
            self.stats.rounds_held += 1;
        }
    }

    /// Resumes slow start if its last exit was spurious: the exit was on the delay signal,
    /// with no loss to congestion or timeout before it and fewer than [`MAX_RESUMES`]
    /// resumptions (the exit opens `exit_span` only then), and
    /// [`SPURIOUS_EXIT_ROUNDS`] rounds in a row among the [`SPURIOUS_EXIT_SPAN`] after the exit
    /// (this one included) found the queue empty, so the delay that ended it did not come
    /// from a queue. Returns whether it did. Without a jitter allowance a real queue keeps
    /// the estimate at or above the exit's one extra message; with one, a queue up to the
    /// allowance reads as empty too, and the span, the cap and the floor bound what that
    /// costs: at most two more slow starts, each ended by the same test, none ending lower.
    fn resume_after_spurious_exit(&mut self) -> bool {
        if self.exit_span == 0 {
            return false;
        }
        self.exit_span -= 1;
        if self.cwnd >= self.limit() {
            self.exit_span = 0;
            return false;
        }
        if self.backlog >= EMPTY_QUEUE || self.heavy_loss() {
            // A round that lost a good part of its window is not an empty path, whatever
            // the allowance made of its round trips.
            self.empty_rounds = 0;
            return false;
        }
        self.empty_rounds += 1;
        if self.empty_rounds < SPURIOUS_EXIT_ROUNDS {
            return false;
        }
        self.exit_span = 0;
        self.resume_floor = self.cwnd;
        self.slow_start = true;
        self.stats.resumed += 1;
        true
    }

    /// Whether the last round lost more than [`HEAVY_LOSS_SHARE`] of the window (and more
    /// than two messages): what a queue overflowing looks like, where random loss of a few
    /// percent loses one or two.
    fn heavy_loss(&self) -> bool {
        self.last_round_losses > 2
            && f64::from(self.last_round_losses) > HEAVY_LOSS_SHARE * f64::from(self.cwnd)
    }

    /// How many of the window's messages wait in queues, by a round's smallest round trip
    /// `rtt` against the `base` (seconds): Vegas's `cwnd × (rtt − base) / rtt`, less the
    /// jitter allowance from the excess (protocol.md §21.2). Without it, a path whose
    /// smallest round trip of a round moves by ±150 µs from round to round (a relay's timer
    /// and either end's scheduler, with dozens of messages in flight) reads as several
    /// messages queued at a window of 50 though nothing queues, and the window stops
    /// growing far below what the path carries.
    fn queued(&self, base: f64, rtt: f64) -> f64 {
        let excess = (rtt - base - self.jitter_allowance(base)).max(0.0);
        f64::from(self.cwnd) * excess / rtt
    }

    /// The part of a round's excess over the base taken as noise: [`JITTER_DEVIATIONS`]
    /// mean deviations of the rounds' minima, at most [`MAX_JITTER_SHARE`] of the base.
    fn jitter_allowance(&self, base: f64) -> f64 {
        let cap = (MAX_JITTER_SHARE * base).max(MIN_JITTER_CAP.as_secs_f64());
        (JITTER_DEVIATIONS * self.round_min_dev).min(cap)
    }

    /// Folds a round's smallest round trip (seconds) into the smoothed round minimum and
    /// its mean deviation, as RFC 6298 does with samples (deviation first). A standing
    /// queue moves the round minimum little from round to round (by about a message as the
    /// window steps), so it keeps the allowance small; noise keeps it as wide as the noise.
    fn follow_jitter(&mut self, rtt: f64) {
        match self.round_min_avg {
            None => self.round_min_avg = Some(rtt),
            Some(avg) => {
                self.round_min_dev += JITTER_GAIN * ((rtt - avg).abs() - self.round_min_dev);
                self.round_min_avg = Some(avg + JITTER_GAIN * (rtt - avg));
            }
        }
    }

    /// Ends slow start once more than [`GAMMA`] messages wait in queues (by this round's
    /// smallest round trip), setting the window to the rate actually delivered.
    fn end_slow_start_if_queued(&mut self) {
        let (Some(base), Some(rtt)) = (self.base_rtt, self.round.min_rtt) else {
            return;
        };
        let cwnd = f64::from(self.cwnd);
        let (base, rtt) = (base.as_secs_f64(), rtt.as_secs_f64());
        let backlog = self.queued(base, rtt);
        if backlog > GAMMA {
            self.backlog = backlog;
            let floor = self.leave_slow_start();
            // The rate delivered, by the round trip less what the path's noise explains; a
            // resumed slow start keeps at least the window it resumed from.
            let rtt = (rtt - self.jitter_allowance(base)).max(base);
            let target = ((cwnd * base / rtt) as u32 + 1).max(floor);
            // Whether the next rounds may still show this exit spurious.
            if !self.lost && self.stats.resumed < MAX_RESUMES {
                self.exit_span = SPURIOUS_EXIT_SPAN;
                self.empty_rounds = 0;
            }
            if target < self.cwnd {
                let reached = self.cwnd.min(self.ceiling);
                self.stats.max_cwnd = self.stats.max_cwnd.max(u64::from(reached));
                self.cwnd = target;
                self.stats.cut_backlog += 1;
            }
        }
    }

    /// A message whose latest copy was transmission `lost_tx` is presumed lost.
    pub(crate) fn on_loss(&mut self, lost_tx: u64, next_tx: u64) {
        if self.loss(lost_tx, next_tx) {
            self.stats.cut_congestion += 1;
        }
    }

    /// [`Congestion::on_loss`]; returns whether the window was cut.
    fn loss(&mut self, lost_tx: u64, next_tx: u64) -> bool {
        self.round_losses = self.round_losses.saturating_add(1);
        // The queue that stood through the last two rounds: an overflowing queue stands, while
        // one round's spike of the round trip (noise the allowance did not cover) does not,
        // and a loss then is no more congestion than on an empty path.
        let standing = self.backlog.min(self.prev_backlog);
        if lost_tx < self.recovery_end || standing < self.target {
            // Part of an event already answered, or random loss: a queue that holds fewer
            // of our messages than we aim for did not overflow because of us. Nor does it
            // end slow start: a smaller window, or a slower-growing one, would not prevent
            // it. (In slow start every loss reads so, since a round with more than GAMMA
            // queued ended it; a queue that builds ends it by its delay beyond the jitter
            // allowance, or by a round's heavy loss, `heavy_loss`.)
            return false;
        }
        // A queue overflowed with our share in it: the doubling ends, for good, and a window
        // a busy loop held down is not given back (the path has spoken).
        self.end_slow_start_for_good();
        self.held_down = 0;
        self.recovery_end = next_tx;
        let before = self.cwnd;
        if standing > 2.0 * self.target {
            // Congestion: a queue overflowed while holding many of ours.
            self.cwnd = (self.cwnd / 2).max(MIN_CWND).min(self.ceiling);
        }
        // Perhaps our share of a queue too small for every flow's target: claim less.
        self.target = (self.target * 0.75).max(MIN_TARGET);
        self.cwnd < before
    }

    /// Ends slow start, and any chance to resume it: the path has shown its limit by a loss
    /// to congestion or a timeout, after which Vegas's `+1` is the safe way up.
    fn end_slow_start_for_good(&mut self) {
        self.leave_slow_start();
        self.lost = true;
        self.exit_span = 0;
    }

    /// Ends slow start, however it ends; returns the window a resumed one began from (0 if
    /// it was not resumed), which only its delay exit keeps.
    fn leave_slow_start(&mut self) -> u32 {
        self.slow_start = false;
        std::mem::take(&mut self.resume_floor)
    }

    /// The retransmission timer expired for a message whose latest copy was `lost_tx`.
    pub(crate) fn on_timeout(&mut self, lost_tx: u64, next_tx: u64) {
        self.timeouts += 1;
        // Whatever the queue, nothing came back for a whole timeout.
        self.end_slow_start_for_good();
        self.held_down = 0;
        if self.timeouts >= 2 {
            // Nothing got through for two timeouts: start over, carefully.
            if self.cwnd > MIN_CWND.min(self.ceiling) {
                self.stats.cut_timeout += 1;
            }
            self.cwnd = MIN_CWND.min(self.ceiling);
            self.slow_start = true;
            self.backlog = 0.0;
            self.prev_backlog = 0.0;
            self.recovery_end = next_tx;
            return;
        }
        if self.loss(lost_tx, next_tx) {
            self.stats.cut_timeout += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Runs `rounds` round trips of a flow that keeps its window full, each delivering the
    /// whole window at round trip `rtt(cwnd)`; returns the windows after each round.
    /// Transmissions are numbered on from the controller's last round.
    fn run(c: &mut Congestion, rounds: usize, rtt: impl Fn(u32) -> Duration) -> Vec<usize> {
        let mut tx = c.round.end_tx.saturating_sub(1);
        let mut out = Vec::new();
        for _ in 0..rounds {
            let sent = c.window() as u64;
            let first = tx + 1;
            tx += sent;
            let r = rtt(c.window() as u32);
            for t in first..=tx {
                c.on_ack(1, Some(r), t, tx + 1);
            }
            out.push(c.window());
        }
        out
    }

    #[test]
    fn without_queueing_the_window_grows_to_the_ceiling() {
        let mut c = Congestion::new(64);
        assert_eq!(c.window(), 4);
        let windows = run(&mut c, 10, |_| us(100));
        assert_eq!(*windows.last().unwrap(), 64);
        assert!(c.in_slow_start());
    }

    #[test]
    fn a_busy_loops_share_holds_the_window_down_at_once_and_lifting_it_lets_it_grow() {
        let mut c = Congestion::new(64);
        run(&mut c, 10, |_| us(100));
        assert_eq!(c.window(), 64);
        // One of nine sessions of a busy loop: 64 / 9 = 7, at once, and it stays there on a
        // path with room.
        c.share_loop(9);
        assert_eq!(c.window(), 7);
        let windows = run(&mut c, 5, |_| us(100));
        assert!(windows.iter().all(|&w| w == 7), "{windows:?}");
        // The loop has room again: the path's room is the window's.
        c.share_loop(1);
        let windows = run(&mut c, 10, |_| us(100));
        assert_eq!(*windows.last().unwrap(), 64, "{windows:?}");
    }

    #[test]
    fn a_window_a_busy_loop_held_down_comes_back_at_once_unless_the_path_spoke() {
        // Past slow start, Vegas would climb back one message per round trip: the share
        // gives back what it took as soon as it lifts.
        let mut c = Congestion::new(64);
        run(&mut c, 10, |_| us(100));
        c.end_slow_start_for_good();
        assert_eq!(c.window(), 64);
        c.share_loop(16);
        assert_eq!(c.window(), 4);
        run(&mut c, 3, |_| us(100));
        c.share_loop(2);
        assert_eq!(c.window(), 32, "given back within the new share");
        c.share_loop(1);
        assert_eq!(c.window(), 64, "all of it once the loop has room");
        // A loss to congestion while held: the path has spoken, nothing is given back.
        c.share_loop(16);
        c.backlog = 10.0;
        c.prev_backlog = 10.0;
        c.on_loss(c.round.end_tx, c.round.end_tx + 1);
        c.share_loop(1);
        assert!(c.window() < 8, "{}", c.window());
    }

    #[test]
    fn a_bottleneck_holds_the_window_at_its_rate_plus_a_few_queued() {
        // 10 messages per 100 µs of base round trip fit the path; more wait in a queue, each
        // adding 10 µs.
        let mut c = Congestion::new(256);
        let windows = run(&mut c, 60, |w| {
            us(100 + 10 * u64::from(w.saturating_sub(10)))
        });
        let last = *windows.last().unwrap();
        assert!((12..=15).contains(&last), "{windows:?}");
        assert!(!c.in_slow_start());
        assert!(
            c.backlog() >= 1.0 && c.backlog() <= 2.0 * TARGET + 1.0,
            "{}",
            c.backlog()
        );
    }

    #[test]
    fn the_window_shrinks_when_the_queue_grows_and_regrows_when_it_drains() {
        let mut c = Congestion::new(256);
        run(&mut c, 40, |w| {
            us(100 + 10 * u64::from(w.saturating_sub(30)))
        });
        let wide = c.window();
        // Another flow takes half the path: the same window now queues.
        let narrow = run(&mut c, 40, |w| {
            us(100 + 20 * u64::from(w.saturating_sub(15)))
        });
        assert!(
            *narrow.last().unwrap() < wide - 10,
            "{wide} then {narrow:?}"
        );
        // It leaves again.
        let regrown = run(&mut c, 40, |w| {
            us(100 + 10 * u64::from(w.saturating_sub(30)))
        });
        assert!(
            *regrown.last().unwrap() >= wide - 2,
            "{wide} then {regrown:?}"
        );
    }

    #[test]
    fn random_loss_does_not_shrink_the_window_congestion_halves_it_once_per_event() {
        let mut c = Congestion::new(64);
        run(&mut c, 10, |_| us(100));
        let full = c.window();
        // Losses with no queue: random.
        for lost in 1..20 {
            c.on_loss(lost, 1000);
        }
        assert_eq!(c.window(), full);
        // A queue: the first loss halves, the others of that window do not.
        let mut c = Congestion::new(256);
        run(&mut c, 30, |w| {
            us(100 + 10 * u64::from(w.saturating_sub(10)))
        });
        c.backlog = 2.0 * TARGET + 2.0;
        c.prev_backlog = c.backlog;
        let before = c.window();
        c.on_loss(500, 600);
        c.on_loss(501, 600);
        assert_eq!(c.window(), (before / 2).max(MIN_CWND as usize));
        c.on_loss(600, 700);
        assert_eq!(c.window(), (before / 4).max(MIN_CWND as usize));
    }

    #[test]
    fn losses_with_our_share_queued_lower_the_target_and_calm_rounds_raise_it() {
        let mut c = Congestion::new(256);
        run(&mut c, 30, |w| {
            us(100 + 10 * u64::from(w.saturating_sub(10)))
        });
        c.backlog = TARGET;
        c.prev_backlog = TARGET;
        let window = c.window();
        c.on_loss(1_000, 2_000);
        assert_eq!(c.target, TARGET * 0.75);
        assert_eq!(
            c.window(),
            window,
            "not halved: the queue held only our target"
        );
        c.on_loss(1_001, 2_001);
        assert_eq!(c.target, TARGET * 0.75, "once per round trip");
        for round in 0..20 {
            c.backlog = TARGET;
            c.prev_backlog = TARGET;
            c.on_loss(2_000 + round * 10, 2_010 + round * 10);
        }
        assert_eq!(c.target, MIN_TARGET);
        run(&mut c, 40, |w| {
            us(100 + 10 * u64::from(w.saturating_sub(10)))
        });
        assert_eq!(c.target, TARGET);
    }

    #[test]
    fn a_loss_after_one_rounds_spike_is_random_a_standing_queue_is_congestion() {
        let mut c = Congestion::new(256);
        run(&mut c, 30, |w| {
            us(100 + 10 * u64::from(w.saturating_sub(10)))
        });
        // One round's round trip spiked (noise), the round before held no queue.
        c.prev_backlog = 0.0;
        c.backlog = 2.0 * TARGET + 4.0;
        let window = c.window();
        c.on_loss(1_000, 2_000);
        assert_eq!(c.window(), window, "a spike is no overflowing queue");
        assert_eq!(c.target, TARGET, "nor our share of one");
        // Two rounds with the queue standing: congestion.
        c.prev_backlog = c.backlog;
        c.on_loss(2_000, 3_000);
        assert_eq!(c.window(), (window / 2).max(MIN_CWND as usize));
    }

    #[test]
    fn two_timeouts_in_a_row_start_over() {
        let mut c = Congestion::new(64);
        run(&mut c, 10, |_| us(100));
        c.on_timeout(1, 100);
        assert_eq!(c.window(), 64, "a random loss of the oldest message");
        c.on_timeout(100, 101);
        assert_eq!(c.window(), MIN_CWND as usize);
        assert!(c.in_slow_start());
    }

    /// A deterministic noise of ±`amplitude` µs: a fixed, uneven cycle (no randomness in
    /// the core's tests).
    fn noise(round: usize, amplitude: i64) -> i64 {
        const CYCLE: [i64; 7] = [0, 9, -4, 10, -10, 3, -7];
        CYCLE[round % CYCLE.len()] * amplitude / 10
    }

    #[test]
    fn a_round_minimum_that_jitters_without_a_queue_does_not_stop_the_window() {
        // Base 2.1 ms, and each round's smallest round trip 100..=400 µs above it at random
        // (what a relay's timer and two busy schedulers give, issue 10): no queue at all, the
        // extra round trip is the same whatever the window. Without the allowance this reads
        // as 2..8 messages queued at a window of 50, and the window settled near 30.
        let mut c = Congestion::new(64);
        c.seed_base(us(2_100));
        let round = std::cell::Cell::new(0usize);
        let windows = run(&mut c, 300, |_| {
            round.set(round.get() + 1);
            Duration::from_micros((2_350 + noise(round.get(), 150)) as u64)
        });
        let tail = &windows[windows.len() - 100..];
        let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
        assert!(mean >= 58.0, "mean {mean} of {windows:?}");
        let allowance = c.jitter_allowance(0.002_1);
        assert!(
            (0.000_05..=0.000_4).contains(&allowance),
            "the allowance follows the noise: {allowance}"
        );
    }

    #[test]
    fn a_queue_still_holds_the_window_through_jitter() {
        // The bottleneck of the test above, 10 messages per 100 µs of base, with each round's
        // minimum moved by up to ±5 µs: the window still stops a few messages above the rate.
        let mut c = Congestion::new(256);
        let round = std::cell::Cell::new(0usize);
        let windows = run(&mut c, 120, |w| {
            round.set(round.get() + 1);
            let queue = 10 * i64::from(w.saturating_sub(10));
            Duration::from_micros((100 + queue + 5 + noise(round.get(), 5)) as u64)
        });
        let tail = &windows[windows.len() - 40..];
        assert!(tail.iter().all(|w| (11..=18).contains(w)), "{windows:?}");
    }

    #[test]
    fn the_allowance_is_at_most_half_the_base() {
        // A round minimum that swings by several base round trips still leaves a queue
        // estimate: the allowance stops at half the base.
        let mut c = Congestion::new(64);
        let round = std::cell::Cell::new(0usize);
        run(&mut c, 50, |_| {
            round.set(round.get() + 1);
            Duration::from_micros((400 + noise(round.get(), 300)) as u64)
        });
        let base = c.base_rtt.expect("measured").as_secs_f64();
        assert!(c.round_min_dev * JITTER_DEVIATIONS > MAX_JITTER_SHARE * base);
        assert_eq!(c.jitter_allowance(base), MAX_JITTER_SHARE * base);
    }

    #[test]
    fn a_granted_window_below_the_initial_one_is_respected() {
        let mut c = Congestion::new(2);
        assert_eq!(c.window(), 2);
        run(&mut c, 5, |_| us(100));
        assert_eq!(c.window(), 2);
    }

    /// A path that carries 60 messages per 100 µs round trip (one per 5/3 µs, so each one
    /// beyond waits that much longer): its round trip at `w` messages in flight, plus `spike`
    /// µs of noise.
    fn sixty(w: u32, spike: u64) -> Duration {
        us(100 + spike) + Duration::from_nanos(5_000 * u64::from(w.saturating_sub(60)) / 3)
    }

    /// Slow start up to a window of 32, then one round whose smallest round trip spikes by
    /// half the base (a descheduled end, not a queue): slow start ends at the rate it seems
    /// to have delivered.
    fn exit_on_a_spike(c: &mut Congestion) -> usize {
        while c.window() < 32 {
            run(c, 1, |w| sixty(w, 0));
        }
        run(c, 1, |w| sixty(w, 50));
        assert!(!c.in_slow_start());
        c.window()
    }

    #[test]
    fn a_slow_start_ended_by_noise_resumes_once_the_queue_stays_empty() {
        let mut c = Congestion::new(256);
        let exit = exit_on_a_spike(&mut c);
        assert!(exit < 40, "{exit}");
        // Growing by one per round would take twenty rounds to fill the path; two empty
        // rounds show the exit spurious, and doubling resumes until the real queue ends it.
        let windows = run(&mut c, 6, |w| sixty(w, 0));
        assert_eq!(c.stats().resumed, 1, "{exit} then {windows:?}");
        assert!(
            windows.last().is_some_and(|&w| (60..=70).contains(&w)),
            "{exit} then {windows:?}"
        );
        // At the path's rate it stays: a queue is never empty.
        let windows = run(&mut c, 30, |w| sixty(w, 0));
        assert_eq!(c.stats().resumed, 1, "{windows:?}");
        assert!(windows.iter().all(|w| (60..=70).contains(w)), "{windows:?}");
    }

    #[test]
    fn a_random_loss_neither_ends_slow_start_nor_stops_its_resumption() {
        // In slow start, losses with no queue standing: the doubling goes on.
        let mut c = Congestion::new(256);
        run(&mut c, 2, |w| sixty(w, 0));
        let before = c.window();
        c.on_loss(1, 1000);
        c.on_loss(2, 1000);
        assert!(c.in_slow_start());
        assert_eq!(run(&mut c, 1, |w| sixty(w, 0)), [2 * before]);
        // After a spurious exit too: the exit is still shown spurious and slow start resumes.
        let mut c = Congestion::new(256);
        let exit = exit_on_a_spike(&mut c);
        c.on_loss(1, 1000);
        assert_eq!(c.window(), exit);
        run(&mut c, 6, |w| sixty(w, 0));
        assert_eq!(c.stats().resumed, 1);
    }

    #[test]
    fn noise_that_ends_every_slow_start_does_not_hold_the_window_down() {
        // Every second round's smallest round trip is 50 µs late: each slow start, the first
        // and the resumed ones, ends on it. The cap and the floor leave Vegas's rounds, which
        // tolerate such noise (the band `α..2α`), to fill the path.
        for (period, spike) in [(2, 50), (3, 50), (2, 25), (4, 10)] {
            let mut c = Congestion::new(64);
            let mut sum = 0;
            for round in 0..300 {
                let late = if round % period == period - 1 {
                    spike
                } else {
                    0
                };
                let w = run(&mut c, 1, |w| sixty(w, late))[0];
                if round >= 100 {
                    sum += w;
                }
            }
            let mean = sum as f64 / 200.0;
            assert!(c.stats().resumed <= MAX_RESUMES, "{:?}", c.stats());
            assert!(
                mean >= 58.0,
                "period {period}, {spike} µs: mean window {mean:.1}"
            );
        }
    }

    #[test]
    fn an_empty_path_long_after_the_exit_is_reclaimed_by_vegas_not_by_slow_start() {
        // A path of 30, after slow start: then the others leave and it carries 200.
        let mut c = Congestion::new(1024);
        let thirty =
            |w: u32| us(100) + Duration::from_nanos(100_000 * u64::from(w.saturating_sub(30)) / 30);
        run(&mut c, 100, thirty);
        let before = c.window();
        let resumed = c.stats().resumed;
        let wide = |w: u32| us(100) + Duration::from_nanos(500 * u64::from(w.saturating_sub(200)));
        let windows = run(&mut c, 10, wide);
        assert_eq!(c.stats().resumed, resumed);
        assert_eq!(windows, (before + 1..=before + 10).collect::<Vec<_>>());
    }

    #[test]
    fn after_a_timeout_the_exit_from_slow_start_stands() {
        let mut c = Congestion::new(256);
        let exit = exit_on_a_spike(&mut c);
        // The first timeout of a message is a loss: no resumption after it.
        c.on_timeout(1, 1000);
        let windows = run(&mut c, 6, |w| sixty(w, 0));
        assert_eq!(c.stats().resumed, 0);
        assert_eq!(windows, (exit + 1..=exit + 6).collect::<Vec<_>>());
    }

    #[test]
    fn a_loss_with_a_queue_standing_ends_slow_start_for_good() {
        let mut c = Congestion::new(256);
        run(&mut c, 3, |w| sixty(w, 0));
        // Two rounds that each measured a queue of 5 (above `2α`): a loss now is congestion.
        (c.backlog, c.prev_backlog) = (5.0, 5.0);
        c.on_loss(c.round.end_tx, c.round.end_tx + 10);
        assert!(!c.in_slow_start());
        assert!(c.lost && c.exit_span == 0);
        assert_eq!(c.stats().cut_congestion, 1);
    }

    #[test]
    fn heavy_losses_end_slow_start_and_never_make_an_empty_round() {
        // Slow start at 32 on a path with room: a round that loses 10 of them (a shallow
        // buffer overflowing by bursts) ends it, without a cut and with no resumption after.
        let mut c = Congestion::new(256);
        while c.window() < 32 {
            run(&mut c, 1, |w| sixty(w, 0));
        }
        for lost in 0..10 {
            c.on_loss(c.round.end_tx + lost, c.round.end_tx + 100);
        }
        run(&mut c, 2, |w| sixty(w, 0));
        assert!(!c.in_slow_start());
        assert_eq!(c.stats().cuts(), 0);
        let before = c.window();
        assert_eq!(
            run(&mut c, 6, |w| sixty(w, 0)),
            (before + 1..=before + 6).collect::<Vec<_>>()
        );
        assert_eq!(c.stats().resumed, 0);
        // After a spurious exit, rounds that lose a quarter of the window are not empty.
        let mut c = Congestion::new(256);
        exit_on_a_spike(&mut c);
        for _ in 0..6 {
            let w = c.window() as u64;
            for lost in 0..w / 3 {
                c.on_loss(c.round.end_tx + lost, c.round.end_tx + 100);
            }
            run(&mut c, 1, |w| sixty(w, 0));
        }
        assert_eq!(c.stats().resumed, 0);
    }
}
