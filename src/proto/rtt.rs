//! The round-trip estimator and retransmission timeout of RFC 6298, shared by every
//! sender, receiver and request timer. It reads no clock: round trips are measured by the
//! caller from the `now`s it is handed.
//!
//! Beside RFC 6298's mean deviation it remembers the largest recent *spike*, a round trip's
//! excess over the smoothed one, and keeps the timeout above `SRTT + 1.5 × spike`
//! (protocol.md §9.1). On loopback or a LAN the round trip is tens of microseconds but
//! either end may be descheduled for milliseconds now and then; the mean deviation forgets
//! such a stall within a few samples, and the next one fires the timer for nothing. The
//! spike decays by 1/1024 per sample, so it lasts about a thousand round trips: a path
//! whose ends stall once in that many keeps its timer above them, and a quiet path keeps
//! a tight one.

use super::session::Config;
use std::time::Duration;

/// How many samples a spike takes to decay by a factor of e (it loses 1/this per sample).
const SPIKE_MEMORY: u32 = 1024;

/// Round-trip estimator and retransmission timeout (RFC 6298).
///
/// Karn's rule is the caller's: feed [`Rtt::sample`] only with round trips of messages
/// that were sent exactly once.
#[derive(Clone, Debug)]
pub struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The largest excess of a recent sample over the smoothed round trip, decaying.
    spike: Duration,
    min_rtt: Option<Duration>,
    rto: Duration,
    min: Duration,
    max: Duration,
    /// `rto_initial`, clamped.
    initial: Duration,
}

impl Rtt {
    /// A fresh estimator whose timeout starts at `config.rto_initial`.
    pub fn new(config: &Config) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            spike: Duration::ZERO,
            min_rtt: None,
            rto: config.rto_initial.clamp(config.rto_min, config.rto_max),
            min: config.rto_min,
            max: config.rto_max,
            initial: config.rto_initial.clamp(config.rto_min, config.rto_max),
        }
    }

    /// Folds in one measured round trip (RFC 6298 §2.2–2.3, alpha 1/8, beta 1/4, K 4).
    pub fn sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |min| min.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
                let excess = rtt.saturating_sub(srtt);
                self.spike = (self.spike - self.spike / SPIKE_MEMORY).max(excess);
            }
        }
        self.rto = self.settled_rto();
    }

    /// Folds in a round trip inferred rather than measured (a stop-and-wait sender's second
    /// Ack of a retransmitted message, which a duplicated Ack imitates): into SRTT and RTTVAR
    /// as RFC 6298 does, which forget it within a few samples, but not into the spike or the
    /// smallest round trip — one duplicated Ack after every retransmission would otherwise
    /// ratchet the timeout up, each inferred round trip being the previous timeout's length.
    pub fn sample_inferred(&mut self, rtt: Duration) {
        let (spike, min_rtt) = (self.spike, self.min_rtt);
        self.sample(rtt);
        self.spike = spike;
        self.min_rtt = min_rtt.or(self.min_rtt);
        self.rto = self.settled_rto();
    }

    /// Takes a round trip measured in the handshake as the first timeout's measure: until a
    /// sample arrives, the timeout is what that sample would give (`3 × rtt`, as a first
    /// sample's `SRTT + 4·RTTVAR` is) instead of `rto_initial`. It is not a sample itself: it
    /// may be inflated (the datagram that answered was a repeat, which the measuring side
    /// cannot tell), so the first real sample starts the estimate afresh.
    pub fn seed(&mut self, rtt: Duration) {
        if self.srtt.is_none() {
            self.rto = (rtt * 3).clamp(self.min, self.max);
            self.initial = self.rto;
        }
    }

    /// The message whose retries backed the timeout off got through: the next message starts
    /// from the estimate again (protocol.md §9.1). RFC 6298 keeps the backoff until a valid
    /// sample (Karn), but on a lossy link a retried message never gives one, and the backoff
    /// then compounds from message to message, hundreds of milliseconds of silence after a
    /// few unlucky losses; the retries of any one message still back off exponentially.
    pub fn end_back_off(&mut self) {
        self.rto = self.settled_rto();
    }

    /// Doubles the timeout after a retransmission, up to the ceiling (RFC 6298 §5.5).
    pub fn back_off(&mut self) {
        self.rto = (self.rto * 2).min(self.max);
    }

    /// The timeout the samples alone give (RFC 6298 §2), without the backoff of
    /// retransmissions since: `rto_initial` (clamped) until a round trip is measured. A
    /// receiver sizes its linger with it (protocol.md §8.3.1): backoff answers loss, and must
    /// not stretch how long a complete receiver waits.
    pub fn settled_rto(&self) -> Duration {
        match self.srtt {
            Some(srtt) => {
                let deviation = srtt + self.rttvar * 4;
                let stall = srtt + self.spike * 2;
                deviation.max(stall).clamp(self.min, self.max)
            }
            None => self.initial,
        }
    }

    /// The largest recent excess of a round trip over the smoothed one (decaying).
    pub fn spike(&self) -> Duration {
        self.spike
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The smallest round trip measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The smoothed round trip, once one has been measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}
