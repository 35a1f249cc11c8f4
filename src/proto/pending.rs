//! The grants of peers that have not yet proven their address: a bounded cache that is
//! cheap whatever arrives, and that nothing in it can ever crowd out a proven session
//! (sessions live elsewhere).
//!
//! Like a SYN cache, it is a fixed number of slots indexed by the session id (which is a
//! keyed hash of the peer and its request token, so a repeated request lands on its own
//! entry, and a flood cannot aim at a slot). Each grant has two candidate slots; a new one
//! takes a free or expired one, else the one that expires sooner, whose grant is forgotten
//! (its peer, if real, repeats the request). So every operation is O(1), a flood of spoofed
//! requests costs a bounded amount of memory, and a genuine peer's grant survives as long
//! as the flood takes to refill the cache (with 16,384 slots and 10,000 spoofed requests a
//! second, over a second: a LAN round trip is a millisecond). The slots are allocated in
//! pages as they fill and given back when a page empties, so memory returns to the baseline
//! once a flood has expired.

use super::grant::Grant;
use std::net::SocketAddr;
use std::time::Instant;

/// Slots per page: large enough that a page is one allocation the system gives back on free.
const PAGE_SLOTS: usize = 1024;

struct Slot {
    grant: Grant,
    expires: Instant,
}

/// The cache of unproven grants, keyed by (peer, session id).
pub struct Pending {
    pages: Vec<Option<Box<[Option<Slot>]>>>,
    /// Occupied slots per page (expired ones included until swept).
    used: Vec<usize>,
    len: usize,
}

impl Pending {
    /// A cache of about `capacity` slots (rounded up to whole pages, at least one).
    pub fn new(capacity: usize) -> Self {
        let pages = capacity.div_ceil(PAGE_SLOTS).max(1);
        Self {
            pages: (0..pages).map(|_| None).collect(),
            used: vec![0; pages],
            len: 0,
        }
    }

    fn slots(&self) -> usize {
        self.pages.len() * PAGE_SLOTS
    }

    /// The two candidate slots of a session id.
    fn candidates(&self, session: u32) -> [usize; 2] {
        let n = self.slots();
        let a = session as usize % n;
        let b = (session.rotate_left(16) ^ 0x9E37_79B9) as usize % n;
        [a, if b == a { (a + 1) % n } else { b }]
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        self.pages[index / PAGE_SLOTS].as_ref()?[index % PAGE_SLOTS].as_ref()
    }

    fn take_slot(&mut self, index: usize) -> Option<Slot> {
        let page = index / PAGE_SLOTS;
        let taken = self.pages[page].as_mut()?[index % PAGE_SLOTS].take();
        if taken.is_some() {
            self.used[page] -= 1;
            self.len -= 1;
            if self.used[page] == 0 {
                self.pages[page] = None;
            }
        }
        taken
    }

    fn put_slot(&mut self, index: usize, slot: Slot) {
        let page = index / PAGE_SLOTS;
        let cells = self.pages[page].get_or_insert_with(|| (0..PAGE_SLOTS).map(|_| None).collect());
        let cell = &mut cells[index % PAGE_SLOTS];
        if cell.is_none() {
            self.used[page] += 1;
            self.len += 1;
        }
        *cell = Some(slot);
    }

    fn find(&self, peer: SocketAddr, session: u32, now: Instant) -> Option<usize> {
        self.candidates(session).into_iter().find(|&i| {
            self.slot(i).is_some_and(|s| {
                s.grant.peer == peer && s.grant.session == session && s.expires > now
            })
        })
    }

    /// Keeps `grant` until `expires` (replacing its own earlier entry, if any); returns
    /// whether another unexpired grant had to be forgotten to make room.
    pub fn insert(&mut self, grant: Grant, expires: Instant, now: Instant) -> bool {
        let index = match self.find(grant.peer, grant.session, now) {
            Some(own) => own,
            None => {
                let [a, b] = self.candidates(grant.session);
                let free = |i| self.slot(i).is_none_or(|s| s.expires <= now);
                if free(a) {
                    a
                } else if free(b) {
                    b
                } else {
                    let sooner = |i| self.slot(i).map(|s| s.expires);
                    let victim = if sooner(a) <= sooner(b) { a } else { b };
                    self.take_slot(victim);
                    self.put_slot(victim, Slot { grant, expires });
                    return true;
                }
            }
        };
        self.put_slot(index, Slot { grant, expires });
        false
    }

    /// Whether (peer, session) has an unexpired grant.
    pub fn contains(&self, peer: SocketAddr, session: u32, now: Instant) -> bool {
        self.find(peer, session, now).is_some()
    }

    /// The unexpired grant of (peer, session), if there is one.
    pub fn get(&self, peer: SocketAddr, session: u32, now: Instant) -> Option<&Grant> {
        let index = self.find(peer, session, now)?;
        self.slot(index).map(|s| &s.grant)
    }

    /// Takes the unexpired grant of (peer, session), if there is one.
    pub fn take(&mut self, peer: SocketAddr, session: u32, now: Instant) -> Option<Grant> {
        let index = self.find(peer, session, now)?;
        self.take_slot(index).map(|s| s.grant)
    }

    /// Forgets every expired grant, and gives back the pages left empty.
    pub fn sweep(&mut self, now: Instant) {
        for index in 0..self.slots() {
            if self.slot(index).is_some_and(|s| s.expires <= now) {
                self.take_slot(index);
            }
        }
    }

    /// Grants held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no grant is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pages allocated now (for tests of the memory bound).
    pub fn pages_in_use(&self) -> usize {
        self.pages.iter().filter(|p| p.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::grant::Op;
    use std::time::Duration;

    fn grant(port: u16, session: u32) -> Grant {
        let peer = SocketAddr::from(([127, 0, 0, 1], port));
        Grant::new(peer, session, 7, Op::List, b"")
    }

    #[test]
    fn a_grant_is_found_until_it_expires() {
        let t0 = Instant::now();
        let mut p = Pending::new(16);
        let g = grant(1, 42);
        assert!(!p.insert(g.clone(), t0 + Duration::from_secs(1), t0));
        assert!(p.contains(g.peer, 42, t0));
        assert!(
            !p.contains(grant(2, 42).peer, 42, t0),
            "another peer's id is not it"
        );
        assert!(
            !p.contains(g.peer, 42, t0 + Duration::from_secs(1)),
            "expired"
        );
        assert!(p.take(g.peer, 42, t0).is_some());
        assert!(p.take(g.peer, 42, t0).is_none(), "taken once");
    }

    #[test]
    fn a_repeated_grant_replaces_its_own_entry() {
        let t0 = Instant::now();
        let mut p = Pending::new(16);
        for _ in 0..10 {
            assert!(!p.insert(grant(1, 42), t0 + Duration::from_secs(1), t0));
        }
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_flood_is_bounded_and_its_memory_comes_back() {
        let t0 = Instant::now();
        let mut p = Pending::new(4 * PAGE_SLOTS);
        let mut forgotten = 0;
        for i in 0..100_000u32 {
            let id = i.wrapping_mul(2_654_435_761);
            forgotten += u32::from(p.insert(
                grant((i % 60_000) as u16, id),
                t0 + Duration::from_secs(2),
                t0,
            ));
        }
        assert!(p.len() <= 4 * PAGE_SLOTS);
        assert!(forgotten > 90_000);
        assert_eq!(p.pages_in_use(), 4);
        p.sweep(t0 + Duration::from_secs(2));
        assert_eq!((p.len(), p.pages_in_use()), (0, 0));
    }
}
