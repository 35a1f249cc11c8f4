//! `udpft-bench models --workload sum|mixed`: the server models meet CPU-bound work, the
//! remote checksum (`udpft sum`, protocol.md §22).
//!
//! * `sum`: `--sum-clients` clients at once, each on its own loopback address (a server
//!   runs one checksum per address at a time), each asking `--sums` times for the SHA-256
//!   of one `--sum-size` file. Per model: the hashing throughput (bytes hashed over the wall
//!   time), the checksums' completion times and the server's CPU. Every answer is checked
//!   against the file's SHA-256, computed here.
//! * `mixed`: `--clients` clients each downloading a small `--size` file `--downloads`
//!   times in a row, alone, and then again while the checksum clients hash the large file
//!   over and over until the downloads are done. Per model: the downloads' p99 (each
//!   download timed on its own) and goodput with and without checksums, their ratio, the
//!   checksums' MB/s, the server's CPU. Every copy is checked byte for byte.
//!
//! The table model runs twice: plain (`--cpu-workers 0`: it hashes on its loop) and with a
//! worker pool (`--cpu-workers N`, shown as `table-cpuN`). Cells alternate by round, so a
//! drift of the machine's load touches every model alike; each cell is a fresh server.

use crate::children::{start_server, ServerSpec};
use crate::models::{percentile, ModelsArgs};
use crate::procfs::{self, CpuTime};
use crate::results::{human_bytes, mb_per_s, median, Cell, Table};
use crate::svg::{LineChart, Series, YScale};
use crate::workload::{same_bytes, TestLibrary};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions, Destination};
use udpft::proto::wire::Algo;
use udpft::proto::Config;
use udpft::server::Model;

/// Checksums a client of the mixed workload asks at most (it stops when the downloads are
/// done; this bounds it if they never are).
const MAX_SUMS_PER_CLIENT: usize = 200;

/// A server set-up: its label and its `serve` arguments.
#[derive(Clone, Debug)]
struct Variant {
    label: String,
    model: Model,
    args: Vec<String>,
}

/// The variants: each model asked, with the table model plain and with its worker pool.
fn variants(models: &[Model], cpu_workers: u16) -> Vec<Variant> {
    let with = |label: String, model: Model, extra: &[String]| {
        let mut args = vec![
            "--model".to_owned(),
            model.name().to_owned(),
            "--grace".to_owned(),
            "2".to_owned(),
        ];
        args.extend(extra.iter().cloned());
        Variant { label, model, args }
    };
    let mut list = Vec::new();
    for &model in models {
        if list.iter().any(|v: &Variant| v.model == model) {
            continue;
        }
        if model == Model::Table {
            list.push(with("table".into(), model, &["--cpu-workers=0".into()]));
            list.push(with(
                format!("table-cpu{cpu_workers}"),
                model,
                &[format!("--cpu-workers={cpu_workers}")],
            ));
        } else {
            list.push(with(model.name().into(), model, &[]));
        }
    }
    list
}

/// The `i`th checksum client's own loopback address (127.0.0.0/8 is all loopback).
fn sum_address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (i % 250) as u8))
}

/// One request a client made: when it started and ended, and whether its answer was right.
type Timed = (Instant, Instant, Result<(), String>);

/// What the checksum clients, or the download clients, did in one cell.
#[derive(Clone, Debug, Default)]
struct Requests {
    /// Completion time of each request that succeeded, sorted.
    times: Vec<f64>,
    /// Bytes of those (hashed, or downloaded).
    bytes: u64,
    /// From the first one's start to the last one's end.
    wall: Duration,
    failed: u64,
    errors: Vec<String>,
}

impl Requests {
    /// The tally of the clients' requests, each worth `size` bytes; a client thread that
    /// panicked counts as one failure.
    fn of(clients: Vec<std::thread::Result<Vec<Timed>>>, size: u64) -> Self {
        let mut tally = Self::default();
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        for client in clients {
            let Ok(client) = client else {
                tally.failed += 1;
                continue;
            };
            for (start, end, result) in client {
                match result {
                    Ok(()) => {
                        tally.times.push(end.duration_since(start).as_secs_f64());
                        tally.bytes += size;
                        first = Some(first.map_or(start, |f| f.min(start)));
                        last = Some(last.map_or(end, |l| l.max(end)));
                    }
                    Err(e) => {
                        tally.failed += 1;
                        tally.errors.push(e);
                    }
                }
            }
        }
        if let (Some(a), Some(b)) = (first, last) {
            tally.wall = b.duration_since(a);
        }
        tally.times.sort_by(f64::total_cmp);
        tally
    }
}

/// One cell: a fresh server, what its clients did, its CPU time.
#[derive(Clone, Debug, Default)]
struct Run {
    sums: Requests,
    downloads: Requests,
    cpu: CpuTime,
    /// Wall time of the whole cell's client work (for CPU %).
    wall: Duration,
}

struct Bench<'a> {
    args: &'a ModelsArgs,
    server_bin: PathBuf,
    scratch: &'a Path,
    small: TestLibrary,
    big: TestLibrary,
    big_sha: String,
    options: ClientOptions,
}

impl Bench<'_> {
    /// Runs one cell of `variant`: `downloads` clients (0: none) and `sum_clients` checksum
    /// clients at once; checksums stop after `sums` each, or when the downloads are done if
    /// there are any.
    fn cell(
        &self,
        variant: &Variant,
        tag: &str,
        downloads: u32,
        sum_clients: u32,
    ) -> io::Result<Run> {
        let mut server = start_server(
            &ServerSpec {
                bin: self.server_bin.clone(),
                root: self.small.root.clone(),
                extra_args: variant.args.clone(),
            },
            &self.scratch.join(format!("server-{tag}.log")),
        )?;
        let pid = server.guard.pid();
        let addr = server.addr;
        let done = AtomicBool::new(false);
        let barrier = Barrier::new((downloads + sum_clients) as usize);
        let started = Instant::now();
        let (sums, fetched) = std::thread::scope(|scope| {
            let (done, barrier) = (&done, &barrier);
            let summers: Vec<_> = (0..sum_clients as usize)
                .map(|i| {
                    scope.spawn(move || self.sum_client(i, addr, downloads > 0, done, barrier))
                })
                .collect();
            let getters: Vec<_> = (0..downloads as usize)
                .map(|i| scope.spawn(move || self.download_client(i, addr, tag, barrier)))
                .collect();
            let fetched: Vec<_> = getters.into_iter().map(|h| h.join()).collect();
            done.store(true, Ordering::SeqCst);
            let sums: Vec<_> = summers.into_iter().map(|h| h.join()).collect();
            (sums, fetched)
        });
        let wall = started.elapsed();
        if variant.model == Model::Fork {
            let deadline = Instant::now() + Duration::from_secs(8);
            while !procfs::children(pid).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let cpu = procfs::cpu_time(pid).unwrap_or_default();
        server.guard.stop()?;
        Ok(Run {
            sums: Requests::of(sums, self.big.size),
            downloads: Requests::of(fetched, self.small.size),
            cpu,
            wall,
        })
    }

    /// One checksum client: `--sums` checksums, or (`until_done`) as many as fit before
    /// `done` is set.
    fn sum_client(
        &self,
        i: usize,
        addr: SocketAddr,
        until_done: bool,
        done: &AtomicBool,
        barrier: &Barrier,
    ) -> Vec<Timed> {
        let client = Client::bound(addr, sum_address(i), self.options.clone());
        barrier.wait();
        let mut client = match client {
            Ok(client) => client,
            Err(e) => return vec![(Instant::now(), Instant::now(), Err(e.to_string()))],
        };
        let count = if until_done {
            MAX_SUMS_PER_CLIENT
        } else {
            self.args.sums as usize
        };
        let mut results = Vec::new();
        for _ in 0..count {
            if until_done && done.load(Ordering::SeqCst) {
                break;
            }
            let start = Instant::now();
            let result = match client.sum(&self.big.name, Algo::Sha256) {
                Ok(sum) if sum.hex() == self.big_sha => Ok(()),
                Ok(sum) => Err(format!("wrong checksum {}", sum.hex())),
                Err(e) => Err(e.to_string()),
            };
            results.push((start, Instant::now(), result));
        }
        results
    }

    /// One download client: `--downloads` downloads of the small file in a row, each timed
    /// and checked.
    fn download_client(
        &self,
        i: usize,
        addr: SocketAddr,
        tag: &str,
        barrier: &Barrier,
    ) -> Vec<Timed> {
        let client = Client::new(addr, self.options.clone());
        barrier.wait();
        let mut client = match client {
            Ok(client) => client,
            Err(e) => return vec![(Instant::now(), Instant::now(), Err(e.to_string()))],
        };
        let copy = self.scratch.join(format!("copy-{tag}-{i}.bin"));
        let mut results = Vec::new();
        for _ in 0..self.args.downloads {
            let start = Instant::now();
            let got = client.get(
                &self.small.name,
                &Destination::File(copy.clone()),
                false,
                &mut |_| {},
            );
            let end = Instant::now();
            let result = match got {
                Ok(_) => match same_bytes(&self.small.file(), &copy) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("a copy differs from the original".to_owned()),
                    Err(e) => Err(format!("cannot compare a copy: {e}")),
                },
                Err(e) => Err(e.to_string()),
            };
            let _ = std::fs::remove_file(&copy);
            results.push((start, end, result));
        }
        results
    }
}

/// The SHA-256 of the file at `path`, in hex.
fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Runs the `sum` or the `mixed` workload (`mixed` when `mixed`), prints its table and
/// writes its files.
///
/// # Errors
/// If the binaries or files are missing or an output cannot be written; failed checksums
/// or downloads are reported and make the run fail at the end.
pub fn run(args: &ModelsArgs, mixed: bool) -> io::Result<()> {
    let started = Instant::now();
    let server_bin = crate::children::locate_bin("udpft", args.server_bin.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let scratch = crate::workload::Scratch::create()?;
    let load_before = procfs::load_text();
    let big = TestLibrary::create(scratch.path(), args.sum_size, args.seed)?;
    let small = TestLibrary::create(scratch.path(), args.size, args.seed + 1)?;
    let big_sha = sha256_of(&big.file())?;
    eprintln!(
        "udpft-bench: {} to hash and {} to download in {}; load average {load_before}",
        human_bytes(big.size),
        human_bytes(small.size),
        scratch.path().display()
    );
    let bench = Bench {
        args,
        server_bin,
        scratch: scratch.path(),
        small,
        big,
        big_sha,
        options: ClientOptions {
            config: Config {
                chunk: args.chunk,
                timeout: Duration::from_secs_f64(args.timeout),
                ..Config::default()
            },
            busy_patience: Duration::from_secs(120),
            ..ClientOptions::default()
        },
    };
    let variants = variants(&args.models, args.cpu_workers);
    // [variant] -> (runs alone, runs mixed); the sum workload fills only the second.
    let mut runs: Vec<(Vec<Run>, Vec<Run>)> = vec![(Vec::new(), Vec::new()); variants.len()];
    for round in 0..args.rounds {
        for (v, variant) in variants.iter().enumerate() {
            let clients = args.clients.iter().copied().max().unwrap_or(16);
            let cells: &[(bool, u32, u32)] = if mixed {
                &[(false, clients, 0), (true, clients, args.sum_clients)]
            } else {
                &[(true, 0, args.sum_clients)]
            };
            for &(with_sums, downloads, sum_clients) in cells {
                let tag = format!("{}-{}-{round}", variant.label, u8::from(with_sums));
                let run = bench.cell(variant, &tag, downloads, sum_clients)?;
                let downloads = if mixed {
                    format!(
                        "downloads p99 {:.3} s ({} ok, {} failed), ",
                        percentile(&run.downloads.times, 99.0),
                        run.downloads.times.len(),
                        run.downloads.failed
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "udpft-bench: {} {} round {}: {downloads}checksums {:.1} MB/s ({} ok, {} failed), server CPU {:.2} s, load {:.2}",
                    variant.label,
                    if with_sums { "with checksums" } else { "alone" },
                    round + 1,
                    mb_per_s(run.sums.bytes, run.sums.wall),
                    run.sums.times.len(),
                    run.sums.failed,
                    run.cpu.total(),
                    procfs::load_average().map_or(f64::NAN, |l| l.0),
                );
                for e in run.sums.errors.iter().chain(&run.downloads.errors).take(3) {
                    eprintln!("udpft-bench:   failure: {e}");
                }
                if with_sums {
                    runs[v].1.push(run);
                } else {
                    runs[v].0.push(run);
                }
            }
        }
    }
    let load = format!("before {load_before}, after {}", procfs::load_text());
    let (markdown, table, charts) = if mixed {
        render_mixed(args, &variants, &runs, &load, started.elapsed())
    } else {
        render_sum(args, &variants, &runs, &load, started.elapsed())
    };
    print!("{markdown}");
    let name = format!("{}-{}", args.name, if mixed { "mixed" } else { "sum" });
    let stem = args.out.join(&name);
    table.write_files(
        Some(&stem.with_extension("csv")),
        Some(&stem.with_extension("json")),
    )?;
    std::fs::write(stem.with_extension("md"), &markdown)?;
    for (suffix, chart) in &charts {
        std::fs::write(
            args.out.join(format!("{name}-{suffix}.svg")),
            chart.to_svg(),
        )?;
    }
    eprintln!(
        "udpft-bench: wrote {name}.csv, .json, .md and SVGs in {}",
        args.out.display()
    );
    let failed: u64 = runs
        .iter()
        .flat_map(|(a, b)| a.iter().chain(b))
        .map(|r| r.sums.failed + r.downloads.failed)
        .sum();
    if failed > 0 {
        return Err(io::Error::other(format!(
            "{failed} request(s) failed (see above)"
        )));
    }
    Ok(())
}

/// Medians of `f` over `runs`.
fn med(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

fn sum_rate(r: &Run) -> f64 {
    mb_per_s(r.sums.bytes, r.sums.wall)
}

type Rendered = (String, Table, Vec<(&'static str, LineChart)>);

fn render_sum(
    args: &ModelsArgs,
    variants: &[Variant],
    runs: &[(Vec<Run>, Vec<Run>)],
    load: &str,
    elapsed: Duration,
) -> Rendered {
    let plain = variants
        .iter()
        .position(|v| v.label == "table")
        .map(|i| med(&runs[i].1, sum_rate));
    let mut table = Table::new(&[
        "model",
        "checksums",
        "hashed MB/s",
        "÷ plain table",
        "p50 s",
        "p99 s",
        "server CPU s",
        "server CPU %",
        "failed",
    ]);
    for (variant, (_, with)) in variants.iter().zip(runs) {
        let rate = med(with, sum_rate);
        table.push(vec![
            Cell::text(&variant.label),
            Cell::int(with.iter().map(|r| r.sums.times.len() as u64).sum()),
            Cell::num(rate, 1),
            plain.map_or_else(Cell::missing, |p| Cell::num(rate / p, 2)),
            Cell::num(med(with, |r| percentile(&r.sums.times, 50.0)), 3),
            Cell::num(med(with, |r| percentile(&r.sums.times, 99.0)), 3),
            Cell::num(med(with, |r| r.cpu.total()), 2),
            Cell::num(
                med(with, |r| r.cpu.total() / r.wall.as_secs_f64() * 100.0),
                0,
            ),
            Cell::int(with.iter().map(|r| r.sums.failed).sum()),
        ]);
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Server models hashing: {} clients (each on its own loopback address), {} SHA-256 checksums each of one {} file ({} round{})\n",
        args.sum_clients,
        args.sums,
        human_bytes(args.sum_size),
        args.rounds,
        if args.rounds == 1 { "" } else { "s, medians" }
    );
    md.push_str(&table.to_markdown());
    let _ = writeln!(
        md,
        "\nhashed MB/s = bytes of the checksums that matched (MB = 10^6 bytes) / the time from \
         the first checksum's start to the last one's end; ÷ plain table = that / the table \
         model's hashing on its loop (`--cpu-workers 0`), measured in the same run. p50/p99 = \
         each checksum's time, from its request to its answer (a server that is hashing for \
         someone else makes it wait). server CPU = user + system time of the server and its \
         reaped children; % of the wall time (100% = one core all along). Every answer was \
         checked against the file's SHA-256.\n\nMachine: {} CPU(s); load average {load}. \
         Total run time {:.0} s.",
        procfs::cpus(),
        elapsed.as_secs_f64()
    );
    let chart = LineChart {
        title: "Checksum throughput by server model".into(),
        x_label: "server model".into(),
        y_label: "hashed MB/s".into(),
        categories: variants.iter().map(|v| v.label.clone()).collect(),
        series: vec![Series {
            name: "SHA-256".into(),
            values: runs.iter().map(|(_, w)| Some(med(w, sum_rate))).collect(),
        }],
        y_scale: YScale::Linear,
        note: Some(format!(
            "{} clients × {} checksums of {}; {} CPU(s), load {load}",
            args.sum_clients,
            args.sums,
            human_bytes(args.sum_size),
            procfs::cpus()
        )),
    };
    (md, table, vec![("mbps", chart)])
}

fn render_mixed(
    args: &ModelsArgs,
    variants: &[Variant],
    runs: &[(Vec<Run>, Vec<Run>)],
    load: &str,
    elapsed: Duration,
) -> Rendered {
    let p99 = |r: &Run| percentile(&r.downloads.times, 99.0);
    let goodput = |r: &Run| mb_per_s(r.downloads.bytes, r.downloads.wall);
    let mut table = Table::new(&[
        "model",
        "downloads",
        "p99 alone s",
        "p99 with checksums s",
        "p99 ÷ alone",
        "goodput alone MB/s",
        "goodput with checksums MB/s",
        "checksums",
        "hashed MB/s",
        "server CPU % alone",
        "server CPU % with checksums",
        "failed",
    ]);
    let cpu_pct = |r: &Run| r.cpu.total() / r.wall.as_secs_f64() * 100.0;
    for (variant, (alone, with)) in variants.iter().zip(runs) {
        table.push(vec![
            Cell::text(&variant.label),
            Cell::int(with.iter().map(|r| r.downloads.times.len() as u64).sum()),
            Cell::num(med(alone, p99), 4),
            Cell::num(med(with, p99), 4),
            Cell::num(med(with, p99) / med(alone, p99), 2),
            Cell::num(med(alone, goodput), 1),
            Cell::num(med(with, goodput), 1),
            Cell::int(with.iter().map(|r| r.sums.times.len() as u64).sum()),
            Cell::num(med(with, sum_rate), 1),
            Cell::num(med(alone, cpu_pct), 0),
            Cell::num(med(with, cpu_pct), 0),
            Cell::int(
                alone
                    .iter()
                    .chain(with)
                    .map(|r| r.downloads.failed + r.sums.failed)
                    .sum(),
            ),
        ]);
    }
    let clients = args.clients.iter().copied().max().unwrap_or(16);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Server models, mixed: {clients} clients × {} downloads of {} each, alone and while {} clients hash a {} file over and over ({} round{})\n",
        args.downloads,
        human_bytes(args.size),
        args.sum_clients,
        human_bytes(args.sum_size),
        args.rounds,
        if args.rounds == 1 { "" } else { "s, medians" }
    );
    md.push_str(&table.to_markdown());
    let _ = writeln!(
        md,
        "\np99 = the 99th percentile (nearest rank) of the downloads' own times, request to \
         verified copy; alone and with checksums are two cells of the same round, one after \
         the other, each with a fresh server. goodput = the downloads' bytes (MB = 10^6) / \
         the time from the first download's start to the last one's end. hashed MB/s = the \
         checksums' bytes / their own span. server CPU % = the server's (and reaped \
         children's) CPU time / the cell's wall time. The checksum clients stop asking when \
         the downloads are done.\n\nMachine: {} CPU(s); load average {load}; the clients are \
         threads of the benchmark on the same machine. Total run time {:.0} s.",
        procfs::cpus(),
        elapsed.as_secs_f64()
    );
    let chart = LineChart {
        title: "p99 of small downloads, alone and beside checksums".into(),
        x_label: "server model".into(),
        y_label: "p99 download time, s (log scale)".into(),
        categories: variants.iter().map(|v| v.label.clone()).collect(),
        series: vec![
            Series {
                name: "alone".into(),
                values: runs.iter().map(|(a, _)| Some(med(a, p99))).collect(),
            },
            Series {
                name: "with checksums".into(),
                values: runs.iter().map(|(_, w)| Some(med(w, p99))).collect(),
            },
        ],
        y_scale: YScale::Log10,
        note: Some(format!(
            "{clients} × {} downloads of {}, {} checksum clients of {}; {} CPU(s), load {load}",
            args.downloads,
            human_bytes(args.size),
            args.sum_clients,
            human_bytes(args.sum_size),
            procfs::cpus()
        )),
    };
    (md, table, vec![("p99", chart)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_model_runs_plain_and_with_its_pool() {
        let list = variants(&Model::ALL, 2);
        let labels: Vec<&str> = list.iter().map(|v| &*v.label).collect();
        assert_eq!(labels, ["loop", "table", "table-cpu2", "threads", "fork"]);
        assert!(list[1].args.contains(&"--cpu-workers=0".to_owned()));
        assert!(list[2].args.contains(&"--cpu-workers=2".to_owned()));
    }

    #[test]
    fn checksum_clients_have_distinct_loopback_addresses() {
        assert_ne!(sum_address(0), sum_address(1));
        assert!(sum_address(7).is_loopback());
    }
}
