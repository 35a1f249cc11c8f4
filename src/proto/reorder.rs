//! What a receiver holds ahead of a hole: the chunks that arrived after a missing one, kept
//! until the missing one arrives so that the sink is written in order, each byte once.
//!
//! With `e` the next message the receiver needs in order, a [`Reorder`] keeps messages
//! `e + 1 ..= e + window − 1`, the most a sender of that window can have outstanding above
//! `e`; anything further is refused by the receiver as from the future. Its slots double as
//! the selective part of the receiver's acknowledgment (protocol.md §20.3): bit `i` of the
//! bitmap says message `e + 1 + i` is held. Stop-and-wait is the window of 1, where nothing
//! is ever held.

use super::buffers::Pool;
use super::wire::MAX_BITMAP;
use std::collections::VecDeque;

/// Chunks held above the next message wanted.
#[derive(Debug)]
pub(crate) struct Reorder {
    window: u64,
    /// Slot `i` is message `e + 1 + i`: its bytes and length, once arrived.
    slots: VecDeque<Option<(Vec<u8>, usize)>>,
    pool: Pool,
    /// Message `e + 1 + i` arrived and holds no bytes (the Done): its slot index.
    done_at: Option<usize>,
}

/// Where a message stands against what the receiver holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Already held (or already written): a duplicate.
    Held,
    /// Within the window above the hole, not held yet.
    Ahead,
    /// Beyond the window: the sender could not have sent it yet.
    Future,
}

impl Reorder {
    /// Nothing held yet, for a receiver of `window` and chunks of up to `chunk` bytes.
    pub(crate) fn new(window: u64, chunk: usize) -> Self {
        Self {
            window: window.max(1),
            slots: VecDeque::new(),
            pool: Pool::new(chunk),
            done_at: None,
        }
    }

    /// Where message `seq` stands when the receiver needs `expected` next (`seq` > it).
    pub(crate) fn place(&self, expected: u64, seq: u64) -> Place {
        let Some(ahead) = seq.checked_sub(expected + 1) else {
            return Place::Held;
        };
        if ahead >= self.window - 1 {
            return Place::Future;
        }
        match self.slots.get(ahead as usize) {
            Some(Some(_)) => Place::Held,
            _ if self.done_at == Some(ahead as usize) => Place::Held,
            _ => Place::Ahead,
        }
    }

    /// Holds `bytes` as message `seq`, which [`Reorder::place`] found `Ahead`.
    pub(crate) fn hold(&mut self, expected: u64, seq: u64, bytes: &[u8]) {
        let index = self.slot(expected, seq);
        let mut buf = self.pool.take();
        buf[..bytes.len()].copy_from_slice(bytes);
        self.slots[index] = Some((buf, bytes.len()));
    }

    /// Whether nothing is held: no hole below a message that arrived.
    pub(crate) fn is_empty(&self) -> bool {
        self.done_at.is_none() && self.slots.iter().all(Option::is_none)
    }

    /// Notes that the Done, message `seq`, arrived ahead of a hole.
    pub(crate) fn hold_done(&mut self, expected: u64, seq: u64) {
        self.done_at = Some(self.slot(expected, seq));
    }

    fn slot(&mut self, expected: u64, seq: u64) -> usize {
        let index = (seq - expected - 1) as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        index
    }

    /// The receiver's next wanted message moved up by one: the slot of the message it now
    /// wants leaves the buffer. Returns its bytes if it was held (the receiver then writes
    /// them and moves up again), and whether it was the held Done.
    pub(crate) fn shift(&mut self) -> (Option<(Vec<u8>, usize)>, bool) {
        let done = self.done_at == Some(0);
        self.done_at = self.done_at.and_then(|i| i.checked_sub(1));
        (self.slots.pop_front().flatten(), done)
    }

    /// Returns a buffer [`Reorder::shift`] handed out, once written.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    /// Writes the bitmap of held messages into `out` (bit 7 of byte 0 is message
    /// `e + 1`), without trailing zero bytes, and returns its length.
    pub(crate) fn bitmap(&self, out: &mut [u8; MAX_BITMAP]) -> usize {
        out.fill(0);
        let mut len = 0;
        let held = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i)
            .chain(self.done_at);
        for i in held.filter(|&i| i < MAX_BITMAP * 8) {
            out[i / 8] |= 0x80 >> (i % 8);
            len = len.max(i / 8 + 1);
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_ahead_of_a_hole_come_out_in_order() {
        let mut r = Reorder::new(8, 4);
        // Expecting 1; 3 and 4 arrive.
        assert_eq!(r.place(1, 3), Place::Ahead);
        r.hold(1, 3, b"ccc");
        r.hold(1, 4, b"dddd");
        assert_eq!(r.place(1, 3), Place::Held);
        assert_eq!(r.place(1, 9), Place::Future);
        let mut bits = [0u8; MAX_BITMAP];
        assert_eq!(r.bitmap(&mut bits), 1);
        assert_eq!(bits[0], 0b0110_0000);
        // 1 arrives and is written: now 2 is wanted, and its slot was empty.
        assert_eq!(r.shift().0, None);
        // 2 arrives: now 3 is wanted, and held.
        let (three, _) = r.shift();
        assert_eq!(three.map(|(b, n)| b[..n].to_vec()), Some(b"ccc".to_vec()));
        let (four, _) = r.shift();
        assert_eq!(four.map(|(_, n)| n), Some(4));
        assert_eq!(r.bitmap(&mut bits), 0);
    }

    #[test]
    fn stop_and_wait_holds_nothing() {
        let r = Reorder::new(1, 4);
        assert_eq!(r.place(5, 6), Place::Future);
        assert_eq!(r.place(5, 4), Place::Held);
    }
}
