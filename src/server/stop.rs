//! How a server stops: the request (a signal, or [`Shutdown::request`]) and each loop's
//! view of it. The first request begins a graceful stop (the front door refuses new
//! requests, abandons uploads, gives downloads the grace period) and says on stderr what it
//! waits for; a second one stops at once.

use crate::proto::endpoint::{Endpoint, LiveCounts};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a running server is asked to stop. The first request (Ctrl-C, SIGTERM, or
/// [`Shutdown::request`]) begins a graceful stop; a second one stops at once.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Raised by a signal handler or [`Shutdown::request`]; a loop takes it down.
    requested: Arc<AtomicBool>,
    /// 0 serving, 1 stopping gracefully, 2 stopping now.
    stage: Arc<AtomicU8>,
}

impl Shutdown {
    /// A flag nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the server to stop (again: to stop now); it notices within [`net::MAX_WAIT`].
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }
    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst) || self.stage.load(Ordering::SeqCst) > 0
    }
    /// The flag signal handlers raise.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.requested)
    }
    /// Takes down a raised flag, moving the stop one stage on; `true` if this call did.
    fn advance(&self) -> bool {
        if !self.requested.swap(false, Ordering::SeqCst) {
            return false;
        }
        let _ = self
            .stage
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| Some((s + 1).min(2)));
        true
    }
}

/// One loop's view of the stop: which stage it has applied.
#[derive(Debug, Default)]
pub(crate) struct Stopping {
    applied: u8,
}

impl Stopping {
    /// Applies a stop request to `endpoint`: a graceful stop begins (uploads abandoned,
    /// downloads given the grace period) or, on a second request, everything stops now. The
    /// loop that took the request says so on stderr.
    pub(crate) fn poll(&mut self, shutdown: &Shutdown, endpoint: &mut Endpoint, now: Instant) {
        let announce = shutdown.advance();
        let stage = shutdown.stage.load(Ordering::SeqCst);
        if stage <= self.applied {
            return;
        }
        let counts = endpoint.live_counts();
        if stage == 1 {
            if announce {
                announce_stop(counts, endpoint.policy().grace);
            }
            endpoint.shutdown(now);
        } else {
            if announce {
                let n = counts.downloads + counts.uploads;
                eprintln!("udpft: stopping now ({n} sessions abandoned)");
            }
            endpoint.stop_now(now);
        }
        self.applied = stage;
    }
}

fn announce_stop(counts: LiveCounts, grace: Duration) {
    let plural = |n: usize, what: &str| match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    };
    let mut line = String::from("udpft: stopping");
    if counts.downloads > 0 {
        line.push_str(&format!(
            ": {} finishing, up to {} s",
            plural(counts.downloads, "download"),
            grace.as_secs_f64()
        ));
    }
    if counts.uploads > 0 {
        line.push_str(&format!("; {} abandoned", plural(counts.uploads, "upload")));
    }
    line.push_str("; Ctrl-C again to stop now");
    eprintln!("{line}");
}
