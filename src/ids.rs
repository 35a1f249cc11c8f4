//! Unpredictable 32-bit ids (server session ids, client request tokens).
//!
//! Each id is SipHash of a counter under a 128-bit key that the standard library draws from
//! the operating system's randomness (`RandomState`): a keyed pseudo-random function, so
//! another host that sees some ids cannot predict the next. This is the only randomness the
//! drivers hand to the sans-IO core.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A source of unpredictable non-zero `u32`s.
pub struct IdSource {
    key: RandomState,
    counter: u64,
}

impl IdSource {
    /// A source keyed from the OS's randomness.
    pub fn new() -> Self {
        Self {
            key: RandomState::new(),
            counter: 0,
        }
    }

    /// The next id; never 0 (0 means "no session" on the wire).
    pub fn next_id(&mut self) -> u32 {
        loop {
            let mut hasher = self.key.build_hasher();
            hasher.write_u64(self.counter);
            self.counter += 1;
            let id = hasher.finish() as u32;
            if id != 0 {
                return id;
            }
        }
    }

    /// A boxed generator for [`crate::proto::table::SessionTable::new`].
    pub fn boxed() -> Box<dyn FnMut() -> u32 + Send> {
        let mut source = Self::new();
        Box::new(move || source.next_id())
    }
}

impl Default for IdSource {
    fn default() -> Self {
        Self::new()
    }
}
