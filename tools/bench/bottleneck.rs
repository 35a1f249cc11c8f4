//! `udpft-bench bottleneck`: congestion control through the real `lossy-proxy` (issue 10
//! §2, protocol.md §21). Three measurements, alternating within every round:
//!
//! * **one flow**: a window-256 download through `--rate R --queue N` (a bottleneck with a
//!   drop-tail queue, each way): its goodput ÷ R, and the datagrams the queue dropped ÷ the
//!   datagrams offered to it (the loss the transfer caused);
//! * **four flows**: four such downloads at once through one proxy: Jain's index of the bytes
//!   each moved while all four ran (read from their progress, interpolated to the moment the
//!   first one finished), their sum ÷ R, and the queue's drops;
//! * **random loss**: a window-64 download through a proxy losing `--random-loss` each way
//!   without a bottleneck, ÷ the same download through a loss-free proxy.
//!
//! Each measurement gets a fresh proxy, stopped after it so its counters can be read.

use crate::children::{locate_bin, start_proxy, start_server, ProxyChild, ProxySpec, ServerSpec};
use crate::download::{parse_chunk, Budget};
use crate::loss::parse_rate;
use crate::procfs;
use crate::results::{human_bytes, median, Cell, Table};
use crate::runargs::RunArgs;
use crate::transfer::{self, Download};
use crate::units::{parse_byte_rate, parse_size};
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};
use udpft::client::Event;
use udpft::proto::wire::{DEFAULT_CHUNK, MAX_WINDOW};

/// Arguments of `bottleneck`.
#[derive(Args, Debug)]
pub struct BottleneckArgs {
    /// The bottleneck's rate each way (units: 10MB/s, 80Mbit/s, 1e7).
    #[arg(long, default_value = "10MB/s", value_parser = parse_byte_rate)]
    pub rate: u64,
    /// Datagrams the bottleneck queues behind the one it sends (drop-tail).
    #[arg(long, default_value_t = 32)]
    pub queue: u32,
    /// The window of the bottleneck downloads.
    #[arg(long, default_value_t = MAX_WINDOW, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WINDOW)))]
    pub window: u16,
    /// Concurrent downloads sharing the bottleneck.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=64))]
    pub flows: u16,
    /// File of the one-flow download (units: B, KB, MB, KiB, MiB, GiB).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub size: u64,
    /// File of each of the concurrent downloads.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub flow_size: u64,
    /// Random loss each way of the random-loss measurement.
    #[arg(long, default_value = "5%", value_parser = parse_rate)]
    pub random_loss: f64,
    /// The window of the random-loss measurement.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WINDOW)))]
    pub random_window: u16,
    /// File of the random-loss measurement.
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    pub random_size: u64,
    /// Chunk size: a number, `default` (1430), `max` (65485) or `min`.
    #[arg(long, default_value_t = DEFAULT_CHUNK, value_parser = parse_chunk)]
    pub chunk: u16,
    /// Rounds (each: every measurement once, in a rotating order); medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    #[command(flatten)]
    pub run: RunArgs,
    /// File name stem of the outputs.
    #[arg(long, default_value = "bottleneck")]
    pub name: String,
}

/// The datagrams a proxy's queues were offered and dropped, both ways.
#[derive(Clone, Copy, Debug)]
struct QueueDrops {
    offered: u64,
    dropped: u64,
}

impl QueueDrops {
    fn fraction(self) -> f64 {
        self.dropped as f64 / self.offered.max(1) as f64
    }
}

/// One round's numbers.
struct Round {
    /// One flow: goodput MB/s and the queue's drops.
    single: (f64, QueueDrops),
    /// Several flows: MB/s each while all ran, their sum, and the queue's drops.
    shared: (Vec<f64>, QueueDrops),
    /// Loss-free and lossy goodput of the random-loss measurement.
    random: (f64, f64),
}

/// Jain's fairness index of `x`: (Σx)² ÷ (n · Σx²), 1 when all are equal, 1/n when one
/// takes everything.
pub fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    sum * sum / (x.len() as f64 * squares).max(f64::MIN_POSITIVE)
}

/// The bytes a flow had moved at `at`, interpolated between its progress samples.
fn bytes_at(samples: &[(Instant, u64)], at: Instant) -> f64 {
    let after = samples.partition_point(|&(t, _)| t <= at);
    match (after.checked_sub(1).map(|i| samples[i]), samples.get(after)) {
        (Some((t0, b0)), Some(&(t1, b1))) => {
            let span = (t1 - t0).as_secs_f64();
            let part = if span > 0.0 {
                (at - t0).as_secs_f64() / span
            } else {
                1.0
            };
            b0 as f64 + (b1 as f64 - b0 as f64) * part
        }
        (Some((_, b)), None) => b as f64,
        (None, _) => 0.0,
    }
}

struct Bench<'a> {
    args: &'a BottleneckArgs,
    proxy_bin: PathBuf,
    scratch: Scratch,
    server: SocketAddr,
    timeout: Duration,
    lifetime: Duration,
}

impl Bench<'_> {
    fn proxy(&self, loss: f64, bottleneck: bool, tag: &str, seed: u64) -> io::Result<ProxyChild> {
        let extra_args = if bottleneck {
            vec![
                format!("--rate={}", self.args.rate),
                format!("--queue={}", self.args.queue),
            ]
        } else {
            Vec::new()
        };
        start_proxy(
            &ProxySpec {
                bin: self.proxy_bin.clone(),
                upstream: self.server,
                loss,
                seed,
                lifetime: self.lifetime,
                extra_args,
            },
            self.scratch.path(),
            tag,
        )
    }

    fn download(
        &self,
        via: SocketAddr,
        window: u16,
        library: &TestLibrary,
        dest: &str,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<Download> {
        let options = transfer::windowed(self.args.chunk, window, self.timeout);
        transfer::download_with(
            via,
            options,
            library,
            &self.scratch.path().join(dest),
            events,
        )
    }

    fn stop(proxy: ProxyChild) -> io::Result<QueueDrops> {
        let stats = proxy.stop()?;
        Ok(QueueDrops {
            offered: stats.get("up.offered") + stats.get("down.offered"),
            dropped: stats.get("up.queue_dropped") + stats.get("down.queue_dropped"),
        })
    }

    fn single(&self, library: &TestLibrary, seed: u64) -> io::Result<(f64, QueueDrops)> {
        let proxy = self.proxy(0.0, true, &format!("single-{seed}"), seed)?;
        let result = self.download(
            proxy.addr,
            self.args.window,
            library,
            "single.bin",
            &mut |_| {},
        );
        let drops = Self::stop(proxy)?;
        Ok((result?.goodput, drops))
    }

    fn shared(&self, library: &TestLibrary, seed: u64) -> io::Result<(Vec<f64>, QueueDrops)> {
        let proxy = self.proxy(0.0, true, &format!("shared-{seed}"), seed)?;
        let flows = usize::from(self.args.flows);
        let start = Barrier::new(flows);
        let samples: Vec<Mutex<Vec<(Instant, u64)>>> =
            (0..flows).map(|_| Mutex::new(Vec::new())).collect();
        let results: Vec<io::Result<Download>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..flows)
                .map(|i| {
                    let (start, samples, addr) = (&start, &samples[i], proxy.addr);
                    scope.spawn(move || {
                        start.wait();
                        let mut record = |e: Event<'_>| {
                            if let Event::Progress { done, .. } = e {
                                let mut s = samples.lock().expect("not poisoned");
                                s.push((Instant::now(), done));
                            }
                        };
                        self.download(
                            addr,
                            self.args.window,
                            library,
                            &format!("flow-{i}.bin"),
                            &mut record,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a flow panicked")))
                })
                .collect()
        });
        let drops = Self::stop(proxy)?;
        for result in results {
            result?;
        }
        let samples: Vec<Vec<(Instant, u64)>> = samples
            .into_iter()
            .map(|m| m.into_inner().expect("not poisoned"))
            .collect();
        // While all ran: from the latest first sample to the earliest last one.
        let from = samples.iter().filter_map(|s| s.first()).map(|s| s.0).max();
        let to = samples.iter().filter_map(|s| s.last()).map(|s| s.0).min();
        let (Some(from), Some(to)) = (from, to) else {
            return Err(io::Error::other("a flow reported no progress"));
        };
        let span = (to - from).as_secs_f64().max(1e-9);
        let rates = samples
            .iter()
            .map(|s| (bytes_at(s, to) - bytes_at(s, from)) / span / 1e6)
            .collect();
        Ok((rates, drops))
    }

    fn random(&self, library: &TestLibrary, seed: u64, loss: f64) -> io::Result<f64> {
        let proxy = self.proxy(loss, false, &format!("random-{loss}-{seed}"), seed)?;
        let result = self.download(
            proxy.addr,
            self.args.random_window,
            library,
            "random.bin",
            &mut |_| {},
        );
        Self::stop(proxy)?;
        Ok(result?.goodput)
    }
}

/// Runs the three measurements and writes the report.
///
/// # Errors
/// If a child cannot be started, a download fails, or a file cannot be written.
pub fn run(args: &BottleneckArgs) -> io::Result<()> {
    let started = Instant::now();
    let budget = Budget::new(args.run.max_seconds)?;
    let load_before = procfs::load_text();
    let scratch = Scratch::create()?;
    let single_file = TestLibrary::create(scratch.path(), args.size, args.run.seed)?;
    let flow_file = TestLibrary::create(scratch.path(), args.flow_size, args.run.seed)?;
    let random_file = TestLibrary::create(scratch.path(), args.random_size, args.run.seed)?;
    let mut server = start_server(
        &ServerSpec {
            bin: locate_bin("udpft", args.run.server_bin.as_deref())?,
            root: single_file.root.clone(),
            extra_args: vec![format!(
                "--max-window={}",
                args.window.max(args.random_window)
            )],
        },
        &scratch.path().join("server.log"),
    )?;
    let timeout = args.run.timeout()?;
    let bench = Bench {
        args,
        proxy_bin: locate_bin("lossy-proxy", args.run.proxy_bin.as_deref())?,
        server: server.addr,
        timeout,
        lifetime: args.run.proxy_lifetime()?,
        scratch,
    };
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        if budget.left().is_zero() {
            break;
        }
        let seed = args.run.seed.wrapping_add(u64::from(r));
        let (mut single, mut shared, mut clean, mut lossy) = (None, None, None, None);
        for step in 0..4 {
            match (step + r) % 4 {
                0 => single = Some(bench.single(&single_file, seed)?),
                1 => shared = Some(bench.shared(&flow_file, seed)?),
                2 => clean = Some(bench.random(&random_file, seed, 0.0)?),
                _ => lossy = Some(bench.random(&random_file, seed, args.random_loss)?),
            }
        }
        let round = Round {
            single: single.expect("measured"),
            shared: shared.expect("measured"),
            random: (clean.expect("measured"), lossy.expect("measured")),
        };
        eprintln!(
            "udpft-bench: round {}/{}: one flow {:.2} MB/s ({} of {} dropped), {} flows {:?} MB/s, \
             random loss {:.1} vs {:.1} MB/s",
            r + 1,
            args.rounds,
            round.single.0,
            round.single.1.dropped,
            round.single.1.offered,
            args.flows,
            round.shared.0,
            round.random.1,
            round.random.0
        );
        rounds.push(round);
    }
    server.guard.stop()?;
    let load = format!("before {load_before}, after {}", procfs::load_text());
    let table = summary(args, &rounds);
    let markdown = report(args, &table, &rounds, &load, started.elapsed());
    args.run.write(&args.name, &table, &markdown)
}

fn summary(args: &BottleneckArgs, rounds: &[Round]) -> Table {
    let rate = args.rate as f64 / 1e6;
    let med = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let mut table = Table::new(&["measurement", "value", "aim", "detail"]);
    let mut row = |name: &str, value: f64, decimals: usize, aim: &str, detail: String| {
        table.push(vec![
            Cell::text(name),
            Cell::num(value, decimals),
            Cell::text(aim),
            Cell::text(detail),
        ]);
    };
    row(
        &format!("one window-{} flow: goodput ÷ bottleneck rate", args.window),
        med(&|r| r.single.0 / rate),
        3,
        "≥ 0.85",
        format!("{:.2} MB/s of {rate} MB/s", med(&|r| r.single.0)),
    );
    let (value, detail) = drop_figures(rounds, |r| r.single.1);
    row(
        "one flow: datagrams dropped at the queue (%)",
        value,
        3,
        "≤ 2 %",
        detail,
    );
    row(
        &format!("{} flows at once: Jain's index", args.flows),
        med(&|r| jain(&r.shared.0)),
        3,
        "≥ 0.9",
        format!(
            "MB/s each while all ran (median round): {}",
            median_round(rounds, |r| jain(&r.shared.0))
                .map(|r| {
                    r.shared
                        .0
                        .iter()
                        .map(|v| format!("{v:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        ),
    );
    row(
        &format!("{} flows: together ÷ bottleneck rate", args.flows),
        med(&|r| r.shared.0.iter().sum::<f64>() / rate),
        3,
        "-",
        String::new(),
    );
    let (value, detail) = drop_figures(rounds, |r| r.shared.1);
    row(
        &format!("{} flows: datagrams dropped at the queue (%)", args.flows),
        value,
        3,
        "≤ 2 %",
        detail,
    );
    row(
        &format!(
            "{}% random loss each way: window-{} goodput ÷ loss-free",
            args.random_loss * 100.0,
            args.random_window
        ),
        med(&|r| r.random.1 / r.random.0),
        3,
        "≥ 0.5",
        format!(
            "{:.1} MB/s vs {:.1} MB/s through a proxy without loss",
            med(&|r| r.random.1),
            med(&|r| r.random.0)
        ),
    );
    table
}

/// The median percentage of datagrams a queue dropped, and the counts behind it.
fn drop_figures(rounds: &[Round], of: impl Fn(&Round) -> QueueDrops) -> (f64, String) {
    let med = |f: &dyn Fn(QueueDrops) -> f64| {
        median(&rounds.iter().map(|r| f(of(r))).collect::<Vec<_>>())
    };
    (
        med(&|d| d.fraction() * 100.0),
        format!(
            "{:.0} of {:.0} datagrams",
            med(&|d| d.dropped as f64),
            med(&|d| d.offered as f64)
        ),
    )
}

/// The round whose `f` is the median (the lower middle of an even count).
fn median_round(rounds: &[Round], f: impl Fn(&Round) -> f64) -> Option<&Round> {
    let mut order: Vec<&Round> = rounds.iter().collect();
    order.sort_by(|a, b| f(a).total_cmp(&f(b)));
    order.get(order.len().saturating_sub(1) / 2).copied()
}

fn report(
    args: &BottleneckArgs,
    table: &Table,
    rounds: &[Round],
    load: &str,
    elapsed: Duration,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Congestion control through lossy-proxy (loopback, medians of {} rounds)\n",
        rounds.len()
    );
    let _ = writeln!(
        md,
        "`udpft-bench bottleneck` on {} CPU(s), load average (1, 5, 15 min) {load}; {:.0} s in all. \
         Bottleneck: `lossy-proxy --rate {} --queue {}` (each way); chunk {} B; files {} (one \
         flow), {} (each of {} flows), {} (random loss). MB = 10^6 bytes; every copy verified.\n",
        procfs::cpus(),
        elapsed.as_secs_f64(),
        args.rate,
        args.queue,
        args.chunk,
        human_bytes(args.size),
        human_bytes(args.flow_size),
        args.flows,
        human_bytes(args.random_size),
    );
    md.push_str(&table.to_markdown());
    let _ = writeln!(
        md,
        "\nEach value is the median over rounds. Drops count the datagrams the bottleneck's \
         drop-tail queue refused, both ways, over all it was offered. The flows' rates are \
         the bytes each moved between the moment all had reported progress and the moment \
         the first finished (progress read every 100 ms, interpolated). The random-loss \
         ratio sets the lossy download against a loss-free one through the same kind of \
         proxy, in the same round.\n\nRerun: `udpft-bench bottleneck --out DIR`."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_equal_and_one_over_n_when_one_takes_all() {
        assert!((jain(&[2.0, 2.0, 2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[8.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn bytes_are_interpolated_between_progress_samples() {
        let t = Instant::now();
        let samples = [(t, 0), (t + Duration::from_millis(100), 1000)];
        assert_eq!(bytes_at(&samples, t + Duration::from_millis(50)), 500.0);
        assert_eq!(bytes_at(&samples, t + Duration::from_secs(1)), 1000.0);
        assert_eq!(bytes_at(&samples[1..], t), 0.0);
    }
}
