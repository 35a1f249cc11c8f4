//! Turnaround: how long this process holds a datagram before it answers, measured only in a
//! build with the `turnaround` feature (`cargo build --release --features turnaround`), so
//! the ordinary build reads no extra clock and pays nothing.
//!
//! A stop-and-wait chunk's time is the two sides' turnarounds (from a receive returning a
//! datagram to the first send after it) plus the time each datagram spends between one
//! side's send and the other side's receive returning (the kernel, the wake-up or the spin).
//! The ping-pong ceiling has the second part only. So measuring the turnaround on both sides
//! splits a chunk's time into the work of each side, in series with the round trip, and the
//! round trip itself ([`report`] prints the mean at exit; `tools/profile.sh` uses it). A
//! datagram that no send follows before the next wait (a duplicate, a stray) is not counted.

#[cfg(feature = "turnaround")]
mod imp {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    static TOTAL_NANOS: AtomicU64 = AtomicU64::new(0);
    static COUNT: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// When this thread's last receive returned a datagram not yet answered.
        static RECEIVED: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    pub(super) fn waiting() {
        RECEIVED.with(|r| r.set(None));
    }

    pub(super) fn received() {
        RECEIVED.with(|r| r.set(Some(Instant::now())));
    }

    pub(super) fn sending() {
        if let Some(at) = RECEIVED.with(Cell::take) {
            let nanos = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
            TOTAL_NANOS.fetch_add(nanos, Ordering::Relaxed);
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn report() {
        let count = COUNT.load(Ordering::Relaxed);
        if count > 0 {
            let mean = TOTAL_NANOS.load(Ordering::Relaxed) as f64 / count as f64 / 1000.0;
            eprintln!("turnaround: {count} datagrams answered, mean {mean:.2} µs");
        }
    }
}

#[cfg(not(feature = "turnaround"))]
mod imp {
    pub(super) fn waiting() {}
    pub(super) fn received() {}
    pub(super) fn sending() {}
    pub(super) fn report() {}
}

/// A wait begins: a datagram still unanswered is forgotten.
#[inline]
pub fn waiting() {
    imp::waiting();
}

/// A receive just returned a datagram.
#[inline]
pub fn received() {
    imp::received();
}

/// A send is about to be made: the first one after a datagram ends its turnaround.
#[inline]
pub fn sending() {
    imp::sending();
}

/// Prints the count and mean turnaround on stderr (nothing without the feature, or when
/// nothing was answered).
pub fn report() {
    imp::report();
}
