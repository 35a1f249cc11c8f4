//! What is watched on the server while it is attacked, all from Linux's `/proc` and its log:
//! resident memory, open file descriptors, threads and child processes of the server
//! process, temporary upload files in its library, the host's count of UDP datagrams the
//! kernel dropped for want of buffer room, and the server's own `--stats-every` line.
//!
//! A [`Watch`] samples on its own thread every [`SAMPLE_EVERY`] and keeps the highest value
//! of each, so a phase's peak is seen even if it lasts a moment.

use crate::procfs;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use udpft::library::TEMP_PREFIX;

/// How often a [`Watch`] samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// One look at the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Resident memory of the server process (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Its open file descriptors.
    pub fds: u64,
    /// Its threads.
    pub threads: u64,
    /// Its live child processes.
    pub children: u64,
    /// Temporary upload files in the library.
    pub temp_files: u64,
}

impl Sample {
    /// The higher of each field.
    fn max(self, other: Self) -> Self {
        Self {
            rss_kib: self.rss_kib.max(other.rss_kib),
            fds: self.fds.max(other.fds),
            threads: self.threads.max(other.threads),
            children: self.children.max(other.children),
            temp_files: self.temp_files.max(other.temp_files),
        }
    }
}

/// Where to look: the server's process and library.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The server's PID.
    pub pid: u32,
    /// Its library folder.
    pub root: PathBuf,
}

impl Probe {
    /// Looks now; `None` if the process is gone.
    pub fn sample(&self) -> Option<Sample> {
        let memory = procfs::memory(self.pid).ok()?;
        Some(Sample {
            rss_kib: memory.rss_kib,
            fds: count_entries(Path::new(&format!("/proc/{}/fd", self.pid)), |_| true),
            threads: threads(self.pid).unwrap_or(0),
            children: procfs::children(self.pid).len() as u64,
            temp_files: count_entries(&self.root, |name| name.starts_with(TEMP_PREFIX)),
        })
    }

    /// CPU seconds of the server and its reaped children so far (0 if unreadable).
    pub fn cpu(&self) -> f64 {
        procfs::cpu_time(self.pid).map_or(0.0, |t| t.total())
    }
}

fn count_entries(dir: &Path, keep: impl Fn(&str) -> bool) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| keep(&e.file_name().to_string_lossy()))
            .count() as u64
    })
}

fn threads(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Samples a server on a thread of its own until stopped; keeps the peaks.
pub struct Watch {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<Sample>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Starts sampling `probe`.
    pub fn start(probe: &Probe) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new(probe.sample().unwrap_or_default()));
        let (probe, flag, into) = (probe.clone(), Arc::clone(&stop), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Some(sample) = probe.sample() {
                    let mut peak = into.lock().unwrap_or_else(PoisonError::into_inner);
                    *peak = peak.max(sample);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the peaks.
    pub fn stop(mut self) -> Sample {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        *self.peak.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The host's `RcvbufErrors` of UDP (`/proc/net/snmp`): datagrams the kernel dropped because
/// a socket's receive buffer was full, anyone's socket on this host.
pub fn udp_receive_drops() -> Option<u64> {
    let text = fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let at = header.iter().position(|h| *h == "RcvbufErrors")?;
    values.get(at)?.parse().ok()
}

/// The server's counters from one `stats` line (`live=3 received=… rate_limited=…`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pairs: Vec<(String, u64)>,
}

impl Counters {
    /// Parses the `key=value` pairs after `stats ` in a log line; `None` if it is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let (_, rest) = line.split_once(" stats ")?;
        let pairs = rest
            .split_whitespace()
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect();
        Some(Self { pairs })
    }

    /// A counter, 0 when the line leaves it out (the server omits zero counters).
    pub fn get(&self, key: &str) -> u64 {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, v)| *v)
    }

    /// The line's pairs again, for the report.
    pub fn text(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Reads a growing log from where the last call stopped.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
}

/// What the server's stats lines said over a stretch of its log.
#[derive(Clone, Debug, Default)]
pub struct StatsSeen {
    /// The highest `live` of any line.
    pub max_live: u64,
    /// The last line's counters.
    pub last: Option<Counters>,
}

impl LogTail {
    /// Starts at the current end of `path`.
    pub fn new(path: &Path) -> Self {
        let offset = fs::metadata(path).map_or(0, |m| m.len());
        Self {
            path: path.to_path_buf(),
            offset,
        }
    }

    /// The stats lines written since the last call.
    pub fn read(&mut self) -> StatsSeen {
        let mut seen = StatsSeen::default();
        let Ok(mut file) = fs::File::open(&self.path) else {
            return seen;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return seen;
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return seen;
        }
        // Keep a partial last line for the next call.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        for counters in text[..complete].lines().filter_map(Counters::parse) {
            seen.max_live = seen.max_live.max(counters.get("live"));
            seen.last = Some(counters);
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_are_parsed_and_missing_counters_are_zero() {
        let line = "2026-01-01T00:00:00Z stats live=3 received=100 sent=90 rate_limited=7";
        let c = Counters::parse(line).unwrap();
        assert_eq!(
            (c.get("live"), c.get("received"), c.get("rate_limited")),
            (3, 100, 7)
        );
        assert_eq!(c.get("yielded"), 0);
        assert!(Counters::parse("udpft: serving /x on 127.0.0.1:1").is_none());
    }

    #[test]
    fn a_log_is_read_from_where_it_was_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "t stats live=9\n").unwrap();
        let mut tail = LogTail::new(&path);
        let mut more = fs::read_to_string(&path).unwrap();
        more.push_str("t stats live=2\nt stats live=4 opened=1\nt stats li");
        fs::write(&path, more).unwrap();
        let seen = tail.read();
        assert_eq!(
            seen.max_live, 4,
            "the line before the tail is not read again"
        );
        assert_eq!(seen.last.unwrap().get("opened"), 1);
        assert!(tail.read().last.is_none(), "the partial line waits");
    }

    #[test]
    fn this_process_can_be_probed() {
        let probe = Probe {
            pid: std::process::id(),
            root: std::env::temp_dir(),
        };
        let sample = probe.sample().unwrap();
        assert!(sample.rss_kib > 0 && sample.fds > 0 && sample.threads > 0);
        assert!(udp_receive_drops().is_some());
    }
}
