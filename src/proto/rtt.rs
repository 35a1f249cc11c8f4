//! The round-trip estimator and retransmission timeout of RFC 6298, shared by every
//! sender, receiver and request timer. It reads no clock: round trips are measured by the
//! caller from the `now`s it is handed.

use super::session::Config;
use std::time::Duration;

/// Round-trip estimator and retransmission timeout (RFC 6298).
///
/// Karn's rule is the caller's: feed [`Rtt::sample`] only with round trips of messages
/// that were sent exactly once.
#[derive(Clone, Debug)]
pub struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
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
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.rto = (srtt + self.rttvar * 4).clamp(self.min, self.max);
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
            Some(srtt) => (srtt + self.rttvar * 4).clamp(self.min, self.max),
            None => self.initial,
        }
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
