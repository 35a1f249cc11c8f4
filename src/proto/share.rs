//! A busy loop's fair share: how many messages a windowed session of one server loop may
//! keep in flight while the loop is short of time (protocol.md §21.4).
//!
//! One loop serves its sessions in the order their datagrams arrive, so a session's share
//! of the loop is about its share of the datagrams waiting for it: a stop-and-wait session
//! has one at a time, a windowed session up to its window. While the loop has time to spare
//! that costs no one anything, and the window is the session's to use (its congestion
//! controller still keeps the path's queues short). While it has none (the driver reports
//! more than [`BUSY_SHARE`] of a period spent working rather than waiting), each windowed
//! sender is held to an equal share of its granted window among the sessions that competed
//! for the loop in that period (whose peers sent it a datagram), at least [`MIN_SHARE`]: one window-64 download beside eight stop-and-wait ones then keeps 7
//! in flight instead of the dozens that left every small one waiting behind it. The rule
//! reads no clock: the driver measures, the table decides (`SessionTable::observe_load`).

use std::time::Duration;

/// A loop that spent more than this share of a period working (not waiting for a
/// datagram, spinning included as waiting) is short of time.
pub const BUSY_SHARE: f64 = 0.5;

/// The smallest share a windowed session is held to: a few messages still overlap one
/// round trip's wait with the next chunk's work.
pub const MIN_SHARE: u32 = 4;

/// The window a session granted `granted` messages may use while it is one of `sessions`
/// of a busy loop (1: the loop has room, the whole grant).
pub(crate) fn window_share(granted: u32, sessions: u32) -> u32 {
    if sessions <= 1 {
        return granted;
    }
    (granted / sessions).max(MIN_SHARE).min(granted)
}

/// Whether the loop is short of time, and so among how many sessions windows are shared.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopShare {
    /// The sessions windows are shared among now (0 or 1: not shared).
    among: u32,
}

impl LoopShare {
    /// Takes the driver's measure of the last period (`busy` of `over` spent working) and
    /// the `sessions` that competed for the loop in it; returns the sessions windows are now
    /// shared among if that changed (1: not shared any more).
    pub fn observe(&mut self, busy: Duration, over: Duration, sessions: usize) -> Option<u32> {
        let short = !over.is_zero() && busy.as_secs_f64() > BUSY_SHARE * over.as_secs_f64();
        let among = if short {
            u32::try_from(sessions).unwrap_or(u32::MAX).max(1)
        } else {
            1
        };
        (among != self.among.max(1)).then(|| {
            self.among = among;
            among
        })
    }

    /// The sessions windows are shared among now (1: not shared).
    pub fn among(&self) -> u32 {
        self.among.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_loop_with_time_to_spare_shares_nothing() {
        let mut share = LoopShare::default();
        assert_eq!(share.observe(ms(4), ms(20), 9), None);
        assert_eq!(share.among(), 1);
        assert_eq!(window_share(64, share.among()), 64);
    }

    #[test]
    fn a_busy_loop_shares_each_grant_among_its_sessions_down_to_the_minimum() {
        let mut share = LoopShare::default();
        assert_eq!(share.observe(ms(15), ms(20), 9), Some(9));
        assert_eq!(window_share(64, 9), 7);
        assert_eq!(window_share(64, 30), MIN_SHARE);
        // Never above the grant, and a lone session keeps all of it, busy or not.
        assert_eq!(window_share(2, 9), 2);
        assert_eq!(window_share(64, 1), 64);
        // Unchanged, nothing to tell; fewer sessions, a larger share; room again, the grant.
        assert_eq!(share.observe(ms(15), ms(20), 9), None);
        assert_eq!(share.observe(ms(15), ms(20), 3), Some(3));
        assert_eq!(share.observe(ms(9), ms(20), 3), Some(1));
        assert_eq!(share.among(), 1);
    }
}
