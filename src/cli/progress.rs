//! What the client says on standard error while and after it works: a progress bar per
//! file and, once it is done, one summary line in its place (`saved report.pdf  12.40 MiB
//! in 0.9 s (13.80 MiB/s)`, as scp leaves one), and a total after several files. All of
//! it only on a terminal, or with `-v` (which adds each transfer's statistics); `-q`
//! leaves only errors.

use super::output::{duration, rate, size};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};
use udpft::client::{Event, Report};

/// How much the client says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Voice {
    /// Progress bars and summary lines (standard error is a terminal, no `-q`).
    pub(crate) lines: bool,
    /// Statistics after each transfer, and summary lines even off a terminal (`-v`).
    pub(crate) verbose: bool,
    /// Notes (resuming, server busy) are shown (no `-q`).
    pub(crate) notes: bool,
}

impl Voice {
    /// The voice for the `-v` and `-q` flags.
    pub(crate) fn new(verbose: bool, quiet: bool) -> Self {
        Self {
            lines: !quiet && io::stderr().is_terminal(),
            verbose,
            notes: !quiet,
        }
    }

    fn summaries(self) -> bool {
        self.lines || self.verbose
    }
}

/// The progress of one transfer.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    voice: Voice,
}

impl Progress {
    /// A progress bar labelled `label` (a sanitised name), if the voice shows one.
    pub(crate) fn new(label: &str, voice: Voice) -> Self {
        let bar = voice.lines.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} {bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template"),
            );
            bar.set_message(label.to_owned());
            bar
        });
        Self { bar, voice }
    }

    /// Follows one event of the transfer.
    pub(crate) fn event(&self, event: Event<'_>) {
        match event {
            Event::Progress { done, total } => {
                if let Some(bar) = &self.bar {
                    if let Some(total) = total {
                        bar.set_length(total);
                    }
                    bar.set_position(done);
                }
            }
            Event::Busy { wait } => self.note(&format!(
                "server busy, retrying in {:.1} s…",
                wait.as_secs_f64()
            )),
            Event::Resuming { offset, partial } => self.note(&format!(
                "resuming from byte {offset} ({})",
                partial.display()
            )),
        }
    }

    fn note(&self, text: &str) {
        if !self.voice.notes {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(format!("udpft: {text}")),
            None => eprintln!("udpft: {text}"),
        }
    }

    /// Ends the bar: in its place, `done` (`saved report.pdf`) with size, time and rate.
    pub(crate) fn finish(self, done: &str, report: &Report) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.voice.summaries() {
            let resumed = match report.resumed_from {
                0 => String::new(),
                from => format!(", resumed at {}", size(from)),
            };
            eprintln!(
                "{done}  {} in {} ({}{resumed})",
                size(report.moved()),
                duration(report.elapsed),
                rate(report.moved(), report.elapsed)
            );
        }
        if self.voice.verbose {
            eprintln!("udpft: {}", statistics(report));
        }
    }

    /// Ends the bar of a transfer that failed (its error is shown by the caller).
    pub(crate) fn abandon(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The statistics line of `-v`, in the units of the bar.
fn statistics(report: &Report) -> String {
    let s = &report.stats;
    let srtt = s.srtt.map_or("n/a".to_owned(), |d| {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    });
    // Only a sender has a congestion window: an upload's (or a windowed one's) line says
    // what it did; a download's window is the server's, in its log.
    let window = s.window.mean_cwnd().map_or(String::new(), |mean| {
        format!(
            "; congestion window mean {mean:.1}, max {}, decreases {} (congestion loss {}, timeout {}, delay {}), rounds held {} of {}, slow start resumed {}",
            s.window.max_cwnd,
            s.window.cuts(),
            s.window.cut_congestion,
            s.window.cut_timeout,
            s.window.cut_backlog,
            s.window.rounds_held,
            s.window.rounds,
            s.window.resumed,
        )
    });
    format!(
        "{} in {}, goodput {}; datagrams sent {} (retransmitted {}), received {} (duplicates {}, corrupted {}); smoothed RTT {srtt}; longest silence {:.3} ms{window}",
        size(report.moved()),
        duration(report.elapsed),
        rate(report.moved(), report.elapsed),
        s.sent,
        s.retransmitted,
        s.received,
        s.duplicates,
        s.corrupted,
        s.longest_silence.as_secs_f64() * 1e3,
    )
}

/// The running total of a command over several files.
pub(crate) struct Tally {
    started: Instant,
    done: u32,
    failed: u32,
    bytes: u64,
    voice: Voice,
}

impl Tally {
    /// A tally starting now.
    pub(crate) fn new(voice: Voice) -> Self {
        Self {
            started: Instant::now(),
            done: 0,
            failed: 0,
            bytes: 0,
            voice,
        }
    }

    /// Counts one finished file.
    pub(crate) fn add(&mut self, report: &Report) {
        self.done += 1;
        self.bytes += report.moved();
    }

    /// Counts one failed file.
    pub(crate) fn fail(&mut self) {
        self.failed += 1;
    }

    /// The closing line after several files: `3 files, 12.40 MiB in 0.9 s`.
    pub(crate) fn close(&self) {
        if self.done + self.failed < 2 || !self.voice.summaries() {
            return;
        }
        let elapsed = self.started.elapsed();
        let failed = match self.failed {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        eprintln!("{}{failed}", self.line(elapsed));
    }

    fn line(&self, elapsed: Duration) -> String {
        let files = if self.done == 1 { "file" } else { "files" };
        format!(
            "{} {files}, {} in {}",
            self.done,
            size(self.bytes),
            duration(elapsed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_counts_files_and_bytes() {
        let quiet = Voice {
            lines: false,
            verbose: false,
            notes: false,
        };
        let mut tally = Tally::new(quiet);
        let report = Report {
            size: 5 << 20,
            resumed_from: 1 << 20,
            elapsed: Duration::from_millis(400),
            stats: Default::default(),
            saved_as: None,
        };
        tally.add(&report);
        tally.add(&report);
        assert_eq!(
            tally.line(Duration::from_millis(900)),
            "2 files, 8.00 MiB in 900 ms"
        );
    }
}
