//! `udpft-bench fairness`: is one loop fair to everyone (issue 10 §3)? Against one `udpft
//! serve --model table` child (one thread, one loop for every session), `--small-clients`
//! stop-and-wait clients each download a small file `--repeats` times in a row, once alone
//! and once beside a windowed download of a large file that runs the whole time (started
//! first, restarted while the small ones run). The figure is the p99 of the small
//! downloads' completion times beside it ÷ alone (aim ≤ 2); rounds alternate which comes
//! first.

use crate::children::{locate_bin, start_server, ServerSpec};
use crate::download::{parse_chunk, Budget};
use crate::models::percentile;
use crate::procfs;
use crate::results::{human_bytes, median, Cell, Table};
use crate::runargs::RunArgs;
use crate::transfer::{self, Download};
use crate::units::parse_size;
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use udpft::client::Event;
use udpft::proto::wire::{DEFAULT_CHUNK, MAX_WINDOW};

/// How long the large download may take to show progress before the small ones start.
const BIG_STARTS_WITHIN: Duration = Duration::from_secs(10);

/// Arguments of `fairness`.
#[derive(Args, Debug)]
pub struct FairnessArgs {
    /// Concurrent stop-and-wait clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub small_clients: u16,
    /// Downloads each small client makes in a row per round.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeats: u32,
    /// The small file (units: B, KB, MB, KiB, MiB, GiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub small_size: u64,
    /// The large file.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub big_size: u64,
    /// The window of the large download.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WINDOW)))]
    pub big_window: u16,
    /// Chunk size of every download: a number, `default` (1430), `max` or `min`.
    #[arg(long, default_value_t = DEFAULT_CHUNK, value_parser = parse_chunk)]
    pub chunk: u16,
    /// Rounds (each: alone and beside, in alternating order).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Extra `udpft serve` arguments, e.g. `--server-arg=--busy-poll=0`.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
    /// File name stem of the outputs.
    #[arg(long, default_value = "fairness")]
    pub name: String,
}

/// One run of the small clients.
struct Run {
    /// Completion times of every small download, in seconds.
    times: Vec<f64>,
    /// The large download's goodput over the run (MB/s), if it ran beside.
    big: Option<f64>,
}

struct Bench<'a> {
    args: &'a FairnessArgs,
    scratch: Scratch,
    server: SocketAddr,
    small: TestLibrary,
    big: TestLibrary,
    timeout: Duration,
}

impl Bench<'_> {
    fn download(
        &self,
        window: u16,
        library: &TestLibrary,
        dest: &str,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<Download> {
        let options = transfer::windowed(self.args.chunk, window, self.timeout);
        let dest = self.scratch.path().join(dest);
        transfer::download_with(self.server, options, library, &dest, events)
    }

    /// The small clients, each downloading `--repeats` times; with `beside`, while the large
    /// download runs.
    fn run(&self, beside: bool) -> io::Result<Run> {
        let done = AtomicBool::new(false);
        let big_bytes = AtomicU64::new(0);
        std::thread::scope(|scope| {
            let big = beside.then(|| {
                scope.spawn(|| -> io::Result<()> {
                    // Bounded: it stops once the small ones are done, and each download ends.
                    while !done.load(Ordering::Relaxed) {
                        let before = big_bytes.load(Ordering::Relaxed);
                        let mut seen = |e: Event<'_>| {
                            if let Event::Progress { done, .. } = e {
                                big_bytes.store(before + done, Ordering::Relaxed);
                            }
                        };
                        self.download(self.args.big_window, &self.big, "big.bin", &mut seen)?;
                    }
                    Ok(())
                })
            });
            if beside {
                let deadline = Instant::now() + BIG_STARTS_WITHIN;
                while big_bytes.load(Ordering::Relaxed) == 0 {
                    if Instant::now() > deadline {
                        done.store(true, Ordering::Relaxed);
                        return Err(io::Error::other("the large download showed no progress"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let started = Instant::now();
            let bytes_before = big_bytes.load(Ordering::Relaxed);
            let smalls: Vec<_> = (0..self.args.small_clients)
                .map(|i| {
                    scope.spawn(move || -> io::Result<Vec<f64>> {
                        (0..self.args.repeats)
                            .map(|_| {
                                let d = self.download(
                                    1,
                                    &self.small,
                                    &format!("small-{i}.bin"),
                                    &mut |_| {},
                                )?;
                                Ok(d.report.elapsed.as_secs_f64())
                            })
                            .collect()
                    })
                })
                .collect();
            let mut times = Vec::new();
            let mut failure = None;
            for handle in smalls {
                match handle.join() {
                    Ok(Ok(t)) => times.extend(t),
                    Ok(Err(e)) => failure = Some(e),
                    Err(_) => failure = Some(io::Error::other("a small client panicked")),
                }
            }
            let elapsed = started.elapsed().as_secs_f64();
            let moved = big_bytes.load(Ordering::Relaxed) - bytes_before;
            done.store(true, Ordering::Relaxed);
            if let Some(big) = big {
                big.join()
                    .map_err(|_| io::Error::other("the large download panicked"))??;
            }
            if let Some(e) = failure {
                return Err(e);
            }
            Ok(Run {
                times,
                big: beside.then(|| moved as f64 / elapsed / 1e6),
            })
        })
    }
}

/// Runs the rounds and writes the report.
///
/// # Errors
/// If the server cannot be started, a download fails, or a file cannot be written.
pub fn run(args: &FairnessArgs) -> io::Result<()> {
    let started = Instant::now();
    let budget = Budget::new(args.run.max_seconds)?;
    let load_before = procfs::load_text();
    let scratch = Scratch::create()?;
    let small = TestLibrary::create(scratch.path(), args.small_size, args.run.seed)?;
    let big = TestLibrary::create(scratch.path(), args.big_size, args.run.seed)?;
    let mut extra_args = vec![
        "--model=table".to_owned(),
        format!("--max-window={}", args.big_window),
    ];
    extra_args.extend(args.server_args.iter().cloned());
    let mut server = start_server(
        &ServerSpec {
            bin: locate_bin("udpft", args.run.server_bin.as_deref())?,
            root: small.root.clone(),
            extra_args,
        },
        &scratch.path().join("server.log"),
    )?;
    let bench = Bench {
        args,
        server: server.addr,
        small,
        big,
        timeout: args.run.timeout()?,
        scratch,
    };
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for r in 0..args.rounds {
        if budget.left().is_zero() {
            break;
        }
        for with_big in [r % 2 == 1, r % 2 == 0] {
            let run = bench.run(with_big)?;
            let mut sorted = run.times.clone();
            sorted.sort_by(f64::total_cmp);
            eprintln!(
                "udpft-bench: round {}/{} {}: p50 {:.1} ms, p99 {:.1} ms{}",
                r + 1,
                args.rounds,
                if with_big { "beside" } else { "alone" },
                percentile(&sorted, 50.0) * 1e3,
                percentile(&sorted, 99.0) * 1e3,
                run.big
                    .map(|b| format!(", large download {b:.1} MB/s"))
                    .unwrap_or_default()
            );
            if with_big {
                beside.push(run);
            } else {
                alone.push(run);
            }
        }
    }
    server.guard.stop()?;
    let load = format!("before {load_before}, after {}", procfs::load_text());
    let table = summary(&alone, &beside);
    let markdown = report(args, &table, alone.len(), &load, started.elapsed());
    args.run.write(&args.name, &table, &markdown)
}

/// Every run's times pooled and sorted.
fn pooled(runs: &[Run]) -> Vec<f64> {
    let mut all: Vec<f64> = runs.iter().flat_map(|r| r.times.iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    all
}

fn per_run(runs: &[Run], p: f64) -> Vec<f64> {
    runs.iter()
        .map(|r| {
            let mut t = r.times.clone();
            t.sort_by(f64::total_cmp);
            percentile(&t, p)
        })
        .collect()
}

fn summary(alone: &[Run], beside: &[Run]) -> Table {
    let (a, b) = (pooled(alone), pooled(beside));
    let mut table = Table::new(&[
        "small downloads",
        "count",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "large download MB/s",
    ]);
    for (name, times, runs) in [("alone", &a, alone), ("beside the large one", &b, beside)] {
        table.push(vec![
            Cell::text(name),
            Cell::int(times.len() as u64),
            Cell::num(percentile(times, 50.0) * 1e3, 2),
            Cell::num(percentile(times, 90.0) * 1e3, 2),
            Cell::num(percentile(times, 99.0) * 1e3, 2),
            Cell::num(times.last().copied().unwrap_or(f64::NAN) * 1e3, 2),
            match median(&runs.iter().filter_map(|r| r.big).collect::<Vec<_>>()) {
                big if big.is_finite() => Cell::num(big, 1),
                _ => Cell::missing(),
            },
        ]);
    }
    let ratio = |p: f64| percentile(&b, p) / percentile(&a, p);
    // The same ratio round by round (each beside-run against the alone-run of its round).
    let rounds: Vec<f64> = per_run(beside, 99.0)
        .iter()
        .zip(per_run(alone, 99.0))
        .map(|(b, a)| b / a)
        .collect();
    table.push(vec![
        Cell::text("beside ÷ alone, pooled (aim: p99 ≤ 2)"),
        Cell::missing(),
        Cell::num(ratio(50.0), 2),
        Cell::num(ratio(90.0), 2),
        Cell::num(ratio(99.0), 2),
        Cell::num(ratio(100.0), 2),
        Cell::missing(),
    ]);
    table.push(vec![
        Cell::text("beside ÷ alone, round by round (median)"),
        Cell::int(rounds.len() as u64),
        Cell::missing(),
        Cell::missing(),
        Cell::num(median(&rounds), 2),
        Cell::missing(),
        Cell::missing(),
    ]);
    table
}

fn report(
    args: &FairnessArgs,
    table: &Table,
    rounds: usize,
    load: &str,
    elapsed: Duration,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## One loop, fair to everyone: small stop-and-wait downloads beside a window-{} download ({rounds} rounds)\n",
        args.big_window
    );
    let _ = writeln!(
        md,
        "`udpft-bench fairness` on {} CPU(s), load average (1, 5, 15 min) {load}; {:.0} s in all. \
         One `udpft serve --model table` child on loopback; {} stop-and-wait clients each \
         download {} {} times in a row, alone and beside a window-{} download of {} that runs \
         throughout; chunk {} B; rounds alternate which comes first.\n",
        procfs::cpus(),
        elapsed.as_secs_f64(),
        args.small_clients,
        human_bytes(args.small_size),
        args.repeats,
        args.big_window,
        human_bytes(args.big_size),
        args.chunk
    );
    md.push_str(&table.to_markdown());
    let _ = writeln!(
        md,
        "\nPercentiles (nearest rank) of every small download's completion time, pooled over \
         the rounds; the last row is the median over rounds of each round's own p99 ratio \
         (count = rounds). The large download's rate is what it moved while the \
         small ones ran.\n\nRerun: `udpft-bench fairness --out DIR`."
    );
    md
}
