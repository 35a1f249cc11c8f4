//! Unpredictable 32-bit ids: server session ids (a keyed hash of the request) and client
//! request tokens.
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

/// The key under which a server names its sessions: a keyed hash (SipHash under a key
/// drawn from the OS) of the peer, its request token and an attempt number, so that a
/// repeated request gets the same session id and no other host can predict one.
pub struct SessionKey(RandomState);

impl SessionKey {
    /// A fresh key from the OS's randomness.
    pub fn new() -> Self {
        Self(RandomState::new())
    }

    /// The session id of (peer, token, attempt).
    pub fn id(&self, peer: std::net::SocketAddr, token: u32, attempt: u32) -> u32 {
        let mut hasher = self.0.build_hasher();
        std::hash::Hash::hash(&peer, &mut hasher);
        hasher.write_u32(token);
        hasher.write_u32(attempt);
        hasher.finish() as u32
    }

    /// The key as the front door takes it ([`crate::proto::endpoint::SessionMac`]).
    pub fn boxed() -> crate::proto::endpoint::SessionMac {
        let key = Self::new();
        Box::new(move |peer, token, attempt| key.id(peer, token, attempt))
    }
}

impl Default for SessionKey {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for IdSource {
    fn default() -> Self {
        Self::new()
    }
}
