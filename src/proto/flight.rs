//! What a sender has in flight: the one place that knows which messages were sent, which
//! the receiver has acknowledged, and which are presumed lost.
//!
//! A [`Flight`] holds the messages from the oldest unacknowledged one (`base`) up to the
//! next one never sent (`next`); at most `window` message numbers are open at once
//! (`next − base ≤ window`), so stop-and-wait is simply a flight of window 1. Each sealed
//! Data datagram is kept, byte for byte, until it is acknowledged, so a retransmission is
//! the same bytes; its buffer comes from a [`Pool`] when it is first needed.
//!
//! Acknowledgments are cumulative ("every message up to `k` arrived") plus, in a windowed
//! session, the later messages that arrived too (selective). Loss is inferred in two ways
//! (protocol.md §20.4):
//! * the retransmission timer (RFC 6298) of the oldest unacknowledged message, kept by the
//!   sender, which marks that one message lost ([`Flight::mark_oldest_lost`]);
//! * time-based detection after RFC 8985 (RACK): once a message sent *later* than `m` has
//!   been delivered, `m` is lost if it was sent at least a reordering window earlier, or as
//!   soon as that window has passed ([`Flight::detect_losses`]). Evidence is a delivery,
//!   never the mere arrival of an acknowledgment, so duplicated or late acknowledgments can
//!   never cause a send (no Sorcerer's Apprentice), and a message is retransmitted again
//!   only after something sent after its retransmission was delivered.

use super::buffers::Pool;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How one message in flight stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Sent; no news yet.
    Unacked,
    /// The receiver said it arrived (selectively, above the cumulative point).
    Sacked,
    /// Presumed lost: waits to be retransmitted.
    Lost,
}

/// One message between `base` and `next`.
#[derive(Debug)]
struct Sent {
    seq: u64,
    /// The sealed Data datagram (`None` for the Accept and Done, encoded when sent).
    datagram: Option<Vec<u8>>,
    len: usize,
    first_sent: Instant,
    last_sent: Instant,
    tries: u32,
    /// The order of its latest transmission among all of this flight's transmissions.
    tx: u64,
    standing: Standing,
}

/// The most recently sent transmission known to have been delivered (RACK's reference).
#[derive(Clone, Copy, Debug)]
struct Delivered {
    tx: u64,
    rtt: Duration,
}

/// What one acknowledgment told the flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Acked {
    /// Messages newly known delivered (cumulatively or selectively).
    pub(crate) delivered: u64,
    /// Of those, messages that were Data, with their payload bytes.
    pub(crate) data_bytes: u64,
    /// A round-trip sample (Karn: from a message sent exactly once), if any.
    pub(crate) sample: Option<Duration>,
    /// Whether the cumulative point moved.
    pub(crate) advanced: bool,
    /// Retransmitted messages whose delivery came sooner after the retransmission than any
    /// round trip: an earlier copy arrived, so that retransmission was spurious (the timer or
    /// the reordering window was too short; the detection of Eifel, RFC 3522, by timing).
    pub(crate) spurious: u64,
    /// The round trip of the first copy of such a message (the shortest, if several): an
    /// earlier copy was delivered, so this is what its delivery took (a valid sample despite
    /// Karn's rule).
    pub(crate) spurious_sample: Option<Duration>,
    /// The newest message delivered that was sent more than once and not found spurious by
    /// timing, with when its first copy went out: if the receiver later acknowledges it
    /// again, it had both copies (see `Sender::handle_ack`).
    pub(crate) retried: Option<(u64, Instant)>,
    /// The newest message delivered that was sent exactly once: if the receiver
    /// acknowledges it again, the path duplicated a datagram.
    pub(crate) once: Option<u64>,
    /// The transmission order of the latest-sent message delivered (0: none).
    pub(crate) newest_tx: u64,
}

/// A sender's messages in flight.
#[derive(Debug)]
pub(crate) struct Flight {
    window: u64,
    base: u64,
    next: u64,
    sent: VecDeque<Sent>,
    tx: u64,
    delivered: Option<Delivered>,
    pool: Pool,
}

impl Flight {
    /// An empty flight whose first message will be `first`, with at most `window` message
    /// numbers open at once and Data datagrams of up to `datagram_len` bytes.
    pub(crate) fn new(first: u64, window: u64, datagram_len: usize) -> Self {
        Self {
            window: window.max(1),
            base: first,
            next: first,
            sent: VecDeque::new(),
            tx: 0,
            delivered: None,
            pool: Pool::new(datagram_len),
        }
    }

    /// The oldest message not acknowledged (or the next to send, when none is out).
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// The next message never sent.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Whether nothing sent is unacknowledged.
    pub(crate) fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Whether message `next` may be sent for the first time: its number lies within the
    /// window above the oldest unacknowledged one (the receiver buffers no further).
    pub(crate) fn has_room(&self) -> bool {
        self.next - self.base < self.window
    }

    /// Messages sent and neither delivered nor presumed lost: what the network holds.
    pub(crate) fn in_flight(&self) -> usize {
        self.sent
            .iter()
            .filter(|s| s.standing == Standing::Unacked)
            .count()
    }

    /// A buffer for the next Data datagram (from the pool: allocated only when needed).
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.pool.take()
    }

    /// Gives back a buffer that was not sent after all.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    /// Records the first transmission of message `next` (a Data datagram of `len` bytes in
    /// `datagram`, or a control message when `None`), and returns its number.
    pub(crate) fn send_new(&mut self, now: Instant, datagram: Option<(Vec<u8>, usize)>) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.tx += 1;
        let (datagram, len) = match datagram {
            Some((buf, len)) => (Some(buf), len),
            None => (None, 0),
        };
        self.sent.push_back(Sent {
            seq,
            datagram,
            len,
            first_sent: now,
            last_sent: now,
            tries: 1,
            tx: self.tx,
            standing: Standing::Unacked,
        });
        seq
    }

    /// The oldest message presumed lost, waiting to be retransmitted.
    pub(crate) fn next_lost(&self) -> Option<u64> {
        self.sent
            .iter()
            .find(|s| s.standing == Standing::Lost)
            .map(|s| s.seq)
    }

    /// Records a retransmission of `seq`; returns how many times it has now been sent.
    pub(crate) fn resend(&mut self, now: Instant, seq: u64) -> u32 {
        self.tx += 1;
        let tx = self.tx;
        match self.get_mut(seq) {
            Some(s) => {
                s.tries += 1;
                s.last_sent = now;
                s.tx = tx;
                s.standing = Standing::Unacked;
                s.tries
            }
            None => 0,
        }
    }

    /// The kept Data datagram of `seq`, if it is one.
    pub(crate) fn datagram(&self, seq: u64) -> Option<&[u8]> {
        let s = self.get(seq)?;
        s.datagram.as_deref().map(|d| &d[..s.len])
    }

    /// How many times `seq` has been sent (0 if it is not in flight).
    pub(crate) fn tries(&self, seq: u64) -> u32 {
        self.get(seq).map_or(0, |s| s.tries)
    }

    /// Handles an acknowledgment at `now`: every message up to `cumulative` arrived, and so
    /// did those in `selective` (numbers above it). Numbers outside the flight are ignored:
    /// an acknowledgment of what was never sent proves nothing. `min_rtt` (the smallest
    /// round trip seen) tells whether a retransmitted message's delivery can be credited to
    /// its latest transmission.
    pub(crate) fn ack(
        &mut self,
        now: Instant,
        cumulative: u64,
        selective: impl IntoIterator<Item = u64>,
        min_rtt: Option<Duration>,
    ) -> Acked {
        let mut acked = Acked::default();
        let mut newest: Option<(Instant, u64, u32)> = None;
        let mut credit = |acked: &mut Acked, s: &Sent| {
            acked.delivered += 1;
            if s.datagram.is_some() {
                acked.data_bytes += (s.len - super::wire::OVERHEAD) as u64;
            }
            let since = now.saturating_duration_since(s.last_sent);
            if s.tries > 1 && min_rtt.is_some_and(|min| since < min) {
                acked.spurious += 1;
                let original = now.saturating_duration_since(s.first_sent);
                acked.spurious_sample =
                    Some(acked.spurious_sample.map_or(original, |o| o.min(original)));
            } else if s.tries > 1 && acked.retried.is_none_or(|(seq, _)| s.seq > seq) {
                acked.retried = Some((s.seq, s.first_sent));
            }
            if s.tries == 1 && acked.once.is_none_or(|seq| s.seq > seq) {
                acked.once = Some(s.seq);
            }
            if newest.is_none_or(|(_, tx, _)| s.tx > tx) {
                newest = Some((s.last_sent, s.tx, s.tries));
            }
        };
        if cumulative >= self.base && cumulative < self.next {
            while let Some(front) = self.sent.front() {
                if front.seq > cumulative {
                    break;
                }
                let s = self.sent.pop_front().expect("front exists");
                if s.standing != Standing::Sacked {
                    credit(&mut acked, &s);
                }
                if let Some(buf) = s.datagram {
                    self.pool.give(buf);
                }
            }
            self.base = cumulative + 1;
            acked.advanced = true;
        }
        for seq in selective {
            if seq <= cumulative || seq < self.base || seq >= self.next {
                continue;
            }
            if let Some(index) = self.index(seq) {
                let s = &mut self.sent[index];
                if s.standing != Standing::Sacked {
                    s.standing = Standing::Sacked;
                    credit(&mut acked, &self.sent[index]);
                }
            }
        }
        // Karn: a sample only from a message sent exactly once; the newest is the best.
        if let Some((sent, tx, tries)) = newest {
            acked.newest_tx = tx;
            let rtt = now.saturating_duration_since(sent);
            if tries == 1 {
                acked.sample = Some(rtt);
            }
            self.note_delivered(now, sent, tx, tries, min_rtt);
        }
        acked
    }

    /// Updates RACK's reference with a delivered transmission. A retransmitted message
    /// acknowledged sooner than the smallest round trip after its retransmission was
    /// delivered by an earlier copy: its latest send time would make older messages look
    /// lost, so it is not used.
    fn note_delivered(
        &mut self,
        now: Instant,
        sent: Instant,
        tx: u64,
        tries: u32,
        min_rtt: Option<Duration>,
    ) {
        let rtt = now.saturating_duration_since(sent);
        if tries > 1 && min_rtt.is_none_or(|min| rtt < min) {
            return;
        }
        if self.delivered.is_none_or(|d| tx > d.tx) {
            self.delivered = Some(Delivered { tx, rtt });
        }
    }

    /// Marks lost every unacknowledged message sent before the latest delivered one by at
    /// least `reorder` (RFC 8985 §6.2). Returns the transmission order of the earliest-sent
    /// one marked, if any, and when the next one would be, if one is waiting for its
    /// reordering window to pass.
    pub(crate) fn detect_losses(
        &mut self,
        now: Instant,
        reorder: Duration,
    ) -> (Option<u64>, Option<Instant>) {
        let Some(reference) = self.delivered else {
            return (None, None);
        };
        let mut first_lost: Option<u64> = None;
        let mut wake: Option<Instant> = None;
        for s in self.sent.iter_mut() {
            if s.standing != Standing::Unacked || s.tx >= reference.tx {
                continue;
            }
            let due = s.last_sent + reference.rtt + reorder;
            if now >= due {
                s.standing = Standing::Lost;
                first_lost = Some(first_lost.map_or(s.tx, |t| t.min(s.tx)));
            } else {
                wake = Some(wake.map_or(due, |w| w.min(due)));
            }
        }
        (first_lost, wake)
    }

    /// The transmission order the next transmission will have.
    pub(crate) fn next_tx(&self) -> u64 {
        self.tx + 1
    }

    /// Marks the oldest unacknowledged message lost (its retransmission timer expired);
    /// returns the transmission order of its latest copy, or `None` if nothing is outstanding.
    pub(crate) fn mark_oldest_lost(&mut self) -> Option<u64> {
        let s = self
            .sent
            .iter_mut()
            .find(|s| s.standing != Standing::Sacked)?;
        s.standing = Standing::Lost;
        Some(s.tx)
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let index = usize::try_from(seq.checked_sub(self.sent.front()?.seq)?).ok()?;
        (index < self.sent.len()).then_some(index)
    }

    fn get(&self, seq: u64) -> Option<&Sent> {
        self.sent.get(self.index(seq)?)
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Sent> {
        let index = self.index(seq)?;
        self.sent.get_mut(index)
    }
}
