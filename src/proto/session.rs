//! Pieces both halves of a transfer share: configuration, per-transfer statistics, outcomes,
//! and the [`Source`] and [`Sink`] traits through which a session reads and writes file bytes.
//!
//! Nothing here reads a clock: every time is an [`Instant`] handed in by the driver.

use super::wire::{ErrorCode, DEFAULT_CHUNK, MAX_CHUNK, MAX_WINDOW, MIN_CHUNK, OVERHEAD};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// Timers, retry limits and sizes of a session. Both ends of a transfer use one each.
#[derive(Clone, Debug)]
pub struct Config {
    /// The chunk size a client asks for, or the largest a server grants.
    pub chunk: u16,
    /// The window a client asks for (1: stop-and-wait, the protocol of version 1), or the
    /// largest a server grants (protocol.md §20.2).
    pub window: u16,
    /// Retransmission timeout before any round trip has been measured.
    pub rto_initial: Duration,
    /// The floor of the retransmission timeout. LAN round trips are tens of microseconds to a
    /// few milliseconds, so the floor is far below TCP's one second.
    pub rto_min: Duration,
    /// The ceiling that exponential backoff stops at. A LAN round trip is far below it; a
    /// low ceiling keeps a long run of losses from spacing the tries so far apart that the
    /// give-up time allows only a handful (at 250 ms, 20 tries fit in 5 s).
    pub rto_max: Duration,
    /// Give up when the peer has shown no progress for this long.
    pub timeout: Duration,
    /// The shortest time a receiver lingers after acknowledging Done, to answer a repeated
    /// Done whose Ack was lost. A client keeps it short (it is waiting to exit); a server
    /// sets it to `timeout`, so a sender that keeps retrying is always answered.
    pub linger_min: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chunk: DEFAULT_CHUNK,
            window: 1,
            rto_initial: Duration::from_millis(100),
            rto_min: Duration::from_micros(100),
            rto_max: Duration::from_millis(250),
            timeout: Duration::from_secs(5),
            linger_min: Duration::from_millis(20),
        }
    }
}

impl Config {
    /// A server's configuration: it grants chunks up to [`MAX_CHUNK`], and lingers after a
    /// completed upload for as long as the client would retry a lost final Ack.
    pub fn for_server() -> Self {
        let client = Self::default();
        Self {
            chunk: MAX_CHUNK,
            window: DEFAULT_MAX_WINDOW,
            linger_min: client.timeout,
            ..client
        }
    }

    /// The chunk size a server grants for a request of `asked`: at least [`MIN_CHUNK`],
    /// at most this config's `chunk` and [`MAX_CHUNK`].
    pub fn negotiate_chunk(&self, asked: u16) -> u16 {
        asked.min(self.chunk).clamp(MIN_CHUNK, MAX_CHUNK)
    }

    /// The window a server grants for a request of `asked` with the granted `chunk`: at most
    /// this config's `window` and [`MAX_WINDOW`], and small enough that the chunks one
    /// session holds in flight stay within [`MAX_WINDOW_BYTES`]; at least 1 (protocol.md
    /// §20.2).
    pub fn negotiate_window(&self, asked: u16, chunk: u16) -> u16 {
        let datagram = u64::from(chunk) + OVERHEAD as u64;
        let by_memory = u16::try_from(MAX_WINDOW_BYTES / datagram).unwrap_or(u16::MAX);
        asked.min(self.window).min(by_memory).clamp(1, MAX_WINDOW)
    }
}

/// The window a server grants at most by default (`udpft serve --max-window`).
pub const DEFAULT_MAX_WINDOW: u16 = 64;

/// The most bytes of datagrams one session keeps in flight: a server shrinks the window it
/// grants for large chunks to stay within it (64 chunks of 65,485 bytes).
pub const MAX_WINDOW_BYTES: u64 = 4 << 20;

/// Counters of one transfer, as seen from one end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams this end sent (including retransmissions).
    pub sent: u64,
    /// Of those, retransmissions.
    pub retransmitted: u64,
    /// Of those, retransmissions found spurious (a sender's count): the original copy was
    /// acknowledged sooner after the retransmission than any round trip, or (stop-and-wait)
    /// the receiver acknowledged both copies.
    pub spurious: u64,
    /// Valid datagrams received.
    pub received: u64,
    /// Received datagrams that repeated one already handled.
    pub duplicates: u64,
    /// Received datagrams that failed to decode (bad CRC and the like), as counted by
    /// whoever decodes them for this session.
    pub corrupted: u64,
    /// File bytes moved (sent by a sender, written by a receiver).
    pub bytes: u64,
    /// The smoothed round trip at the end, if measured.
    pub srtt: Option<Duration>,
    /// A sender's congestion window now, in messages (1 in stop-and-wait; 0 for a receiver).
    pub cwnd: u64,
    /// The longest this end waited for anything new from its peer while the transfer ran
    /// (a delivery acknowledged, for a sender; a chunk or the Done, for a receiver): after a
    /// single loss, about one retransmission timeout.
    pub longest_silence: Duration,
    /// What a windowed sender's congestion window did: its time-weighted mean and its
    /// decreases by cause (all zero for stop-and-wait and for a receiver).
    pub window: super::WindowStats,
}

/// How a transfer ended, from this end's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte arrived and the whole-file checksum matched.
    Complete,
    /// The transfer failed; nothing was committed.
    Failed(Failure),
}

/// Why a transfer failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The peer stopped answering: `tries` sends of the last message over `elapsed`.
    Timeout {
        /// How many times the unanswered message was sent.
        tries: u32,
        /// Time since the peer last made progress.
        elapsed: Duration,
    },
    /// The peer sent an error.
    Peer {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's explanation (raw, sanitise before printing).
        text: String,
    },
    /// This end failed (disk, checksum, a broken peer) and told the peer so.
    Local {
        /// The code sent to the peer.
        code: ErrorCode,
        /// The explanation.
        text: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { tries, elapsed } => write!(
                f,
                "not responding ({tries} tries over {:.1} s)",
                elapsed.as_secs_f64()
            ),
            Self::Peer { code, text } | Self::Local { code, text } if text.is_empty() => {
                write!(f, "{code}")
            }
            Self::Peer { text, .. } | Self::Local { text, .. } => f.write_str(text),
        }
    }
}

impl Failure {
    /// The peer ended the transfer with an Error of `code` and `text` (raw bytes from the
    /// network, kept as lossy UTF-8).
    pub fn from_peer(code: ErrorCode, text: &[u8]) -> Self {
        Self::Peer {
            code,
            text: String::from_utf8_lossy(text).into_owned(),
        }
    }

    /// The protocol code that best describes this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::Peer { code, .. } | Self::Local { code, .. } => *code,
        }
    }
}

/// Where a sender's bytes come from. `read_at` fills `buf` from `offset` and returns the
/// count read; fewer than asked only at the end of the source.
pub trait Source: Send {
    /// Reads up to `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// Any I/O error; the transfer then fails with [`ErrorCode::Io`].
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Called once every byte has been read: `Ok(false)` if the source changed meanwhile
    /// (a file that grew, shrank or was replaced), so the transfer fails rather than deliver
    /// a copy that never existed.
    ///
    /// # Errors
    /// Any I/O error while checking.
    fn unchanged(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// The whole source's CRC32, if it is remembered for this version of the file, so that a
    /// resumed download need not hash the bytes before its offset (a repeated request for a
    /// resume must not cost the server a read of the whole prefix each time).
    ///
    /// With `claim`, a source whose CRC nobody is computing answers [`FileCrc::Unknown`] and
    /// makes the caller the one computing it (others then get [`FileCrc::Pending`] until the
    /// caller calls [`Source::remember_crc`] or drops the source); without `claim` the answer
    /// is only `Known` or `Unknown`.
    fn file_crc(&mut self, claim: bool) -> FileCrc {
        let _ = claim;
        FileCrc::Unknown
    }

    /// Records the whole source's CRC32 for this version (after every byte was read and the
    /// source found unchanged).
    fn remember_crc(&mut self, crc: u32) {
        let _ = crc;
    }
}

/// What a [`Source`] knows of its whole-file CRC32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileCrc {
    /// Remembered for this version of the file.
    Known(u32),
    /// Not known: compute it (with a claim, the caller now holds it).
    Unknown,
    /// Another transfer is computing it now: ask again shortly.
    Pending,
}

/// Where a receiver's bytes go. Bytes arrive in order, each exactly once.
pub trait Sink: Send {
    /// Appends `data`.
    ///
    /// # Errors
    /// Any I/O error (disk full...); the transfer then fails with [`ErrorCode::Io`].
    fn write(&mut self, data: &[u8]) -> io::Result<()>;

    /// Makes the received file visible under its final name. Called only after the
    /// whole-file checksum matched. A sink dropped without `commit` must leave no file
    /// under the final name.
    ///
    /// # Errors
    /// Any I/O error; the transfer then fails with [`ErrorCode::Io`].
    fn commit(&mut self) -> io::Result<()>;

    /// The driver has sent what was due and is about to wait for the next datagram: a sink
    /// may do work it deferred here (write out a chunk it holds), off the round trip.
    ///
    /// # Errors
    /// Any I/O error; the transfer then fails with [`ErrorCode::Io`].
    fn idle(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`Source`] over bytes in memory: a listing snapshot shared by every session that sends
/// it (`MemSource<Arc<[u8]>>`), and the tests' and simulator's files.
#[derive(Clone, Debug, Default)]
pub struct MemSource<T = Vec<u8>>(pub T);

impl<T: AsRef<[u8]> + Send> Source for MemSource<T> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let bytes = self.0.as_ref();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
}

/// A [`Sink`] into memory that records whether it was committed (listings, tests).
#[derive(Clone, Debug, Default)]
pub struct MemSink {
    /// The bytes written so far.
    pub data: Vec<u8>,
    /// Whether `commit` was called.
    pub committed: bool,
}

impl Sink for MemSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        self.committed = true;
        Ok(())
    }
}

/// A sink shared with its creator, so the creator can read what arrived after the
/// session (which owns the box) is gone.
impl Sink for std::sync::Arc<std::sync::Mutex<MemSink>> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        lock(self).write(data)
    }
    fn commit(&mut self) -> io::Result<()> {
        lock(self).commit()
    }
}

fn lock(sink: &std::sync::Mutex<MemSink>) -> std::sync::MutexGuard<'_, MemSink> {
    sink.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Number of Data messages for `len` bytes in chunks of `chunk`.
pub fn chunk_count(len: u64, chunk: u16) -> u64 {
    len.div_ceil(u64::from(chunk.max(1)))
}

/// A deadline `after` from `now`; on overflow, a century away (never "due at once").
pub(crate) fn deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
