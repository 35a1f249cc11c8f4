//! Datagram buffers for one half of a transfer, allocated when they are first needed and
//! reused afterwards.
//!
//! A transfer holds a buffer per chunk in flight (the sender keeps each sealed Data datagram
//! for retransmission; the receiver keeps each chunk that arrived ahead of a hole), so its
//! memory follows what is in flight now, never the window it was granted: a session that is
//! idle, slow or congested holds few buffers. Freed buffers wait in a short spare list
//! rather than going back to the allocator at once, since the next one is usually needed a
//! moment later.

/// Spare buffers kept for reuse; beyond this many, freed buffers are dropped.
const SPARES: usize = 4;

/// Buffers of one size for one half of a transfer.
#[derive(Debug)]
pub(crate) struct Pool {
    len: usize,
    spare: Vec<Vec<u8>>,
}

impl Pool {
    /// A pool of buffers `len` bytes long; nothing is allocated yet.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            len,
            spare: Vec::new(),
        }
    }

    /// A buffer of the pool's length (contents unspecified).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| vec![0; self.len])
    }

    /// Gives a buffer back.
    pub(crate) fn give(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARES {
            self.spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_made_on_demand_and_reused() {
        let mut pool = Pool::new(8);
        let a = pool.take();
        let b = pool.take();
        assert_eq!((a.len(), b.len()), (8, 8));
        pool.give(a);
        pool.give(b);
        let c = pool.take();
        assert_eq!(c.len(), 8);
        assert_eq!(pool.spare.len(), 1);
    }
}
