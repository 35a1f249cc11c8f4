//! What the benchmarks read about a server child from Linux's `/proc`: its CPU time
//! (`/proc/PID/stat`), its memory (`VmRSS`, `VmHWM` in `/proc/PID/status`), its live child
//! processes (`/proc/PID/task/*/children`), the machine's load average (`/proc/loadavg`)
//! and this process's user id; and, from `getrusage(2)`, the CPU time of the children this
//! process has waited for (a client that ran to its exit, gone from `/proc` by then).
//!
//! CPU times in `stat` are in clock ticks (`USER_HZ`); the tick rate is asked of
//! `getconf CLK_TCK` once (the crate has no safe `sysconf` binding), falling back to 100, the
//! value Linux fixes for user space on every common architecture.

use std::io;
use std::process::Command;
use std::sync::OnceLock;

/// Clock ticks per second of the CPU times in `/proc/PID/stat`.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU time of a process, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    /// User plus system time of the process itself (all its threads).
    pub own: f64,
    /// User plus system time of its children that it has waited for (reaped).
    pub children: f64,
}

impl CpuTime {
    /// Both together.
    pub fn total(&self) -> f64 {
        self.own + self.children
    }
}

/// Reads `utime`, `stime`, `cutime` and `cstime` of process `pid`.
///
/// # Errors
/// If the process is gone or the file is not as expected.
pub fn cpu_time(pid: u32) -> io::Result<CpuTime> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_time(&text, ticks_per_second())
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/{pid}/stat: {text}")))
}

/// Fields 14–17 of a `stat` line, in seconds. The command name (field 2) is in parentheses
/// and may hold spaces, so the fields are counted from the last `)`.
fn parse_cpu_time(stat: &str, ticks: f64) -> Option<CpuTime> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14, the 12th here.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let (utime, stime, cutime, cstime) = (tick(11)?, tick(12)?, tick(13)?, tick(14)?);
    Some(CpuTime {
        own: (utime + stime) as f64 / ticks,
        children: (cutime + cstime) as f64 / ticks,
    })
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// The most it was ever resident (`VmHWM`, the high-water mark).
    pub peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of process `pid`.
///
/// # Errors
/// If the process is gone or the lines are missing.
pub fn memory(pid: u32) -> io::Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_memory(&text)
        .ok_or_else(|| io::Error::other(format!("no VmRSS/VmHWM in /proc/{pid}/status")))
}

fn parse_memory(status: &str) -> Option<Memory> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// The live child processes of `pid` (every thread's list), or an empty list if the kernel
/// does not publish them.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut all: Vec<u32> = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> Option<(f64, f64, f64)> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<f64>);
    Some((
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    ))
}

/// The load averages as one short text (`1.93 6.08 4.76`), `?` if unreadable.
pub fn load_text() -> String {
    load_average().map_or_else(
        || "?".to_owned(),
        |(a, b, c)| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

/// The effective user id of this process (`Uid:` in `/proc/self/status`).
pub fn effective_uid() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU seconds of every child this process has waited for so far.
///
/// # Errors
/// If `getrusage` fails.
pub fn reaped_children_cpu() -> io::Result<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// How many CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_are_counted_after_a_name_with_spaces_and_parentheses() {
        let stat = "1234 (udp ft) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0";
        let cpu = parse_cpu_time(stat, 100.0).unwrap();
        assert_eq!(cpu.own, 3.0);
        assert_eq!(cpu.children, 0.1);
        assert_eq!(cpu.total(), 3.1);
    }

    #[test]
    fn memory_lines_are_read_in_kib() {
        let status = "Name:\tudpft\nVmHWM:\t    9000 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 8192,
                peak_kib: 9000
            })
        );
        assert_eq!(parse_memory("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = std::process::id();
        assert!(cpu_time(me).is_ok());
        assert!(memory(me).unwrap().rss_kib > 0);
        assert!(load_average().is_some());
        assert!(effective_uid().is_some());
        assert!(reaped_children_cpu().is_ok_and(|cpu| cpu >= 0.0));
    }
}
