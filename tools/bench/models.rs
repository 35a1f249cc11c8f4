//! `udpft-bench models`: the server models side by side. For every model × client count, a
//! fresh `udpft serve --model M` child (behind `lossy-proxy` when `--loss` > 0) serves that
//! many concurrent clients — threads of this process, each with its own
//! [`udpft::client::Client`] and socket — each moving one file of `--size`. Every copy is
//! checked byte for byte. Per cell the table shows the aggregate goodput (all bytes over
//! the wall time from the first client's start to the last one's finish), the clients'
//! completion times (p50, p99, max, measured from the common start, so a client of the loop
//! model that waited for its turn counts its wait), the busy answers clients retried on,
//! the server's CPU time and peak RSS, and failures.
//!
//! A raw UDP ping-pong of the same round trip (a Data-sized request, an Ack-sized reply) is
//! measured before and after the cells, with blocking and with spinning receives; its mean
//! gives the stop-and-wait ceilings chunk ÷ RTT against which each model's single-client
//! goodput is set.
//!
//! `--workload sum` and `--workload mixed` meet the models with CPU-bound requests, remote
//! checksums, instead (`sums.rs`).
//!
//! Bounded in time: cells stop being started after `--max-seconds`, a client gives up
//! after `--timeout` without progress, and waits for a busy server only as long as the
//! budget has left. Every child runs under a [`crate::children::ChildGuard`], which stops
//! it by PID on every path.

use crate::children::{locate_bin, start_proxy, start_server, ProxySpec, ServerSpec};
use crate::download::{parse_chunk, secs};
use crate::loss::parse_rate;
use crate::pingpong::{self, PingPong, PingPongSpec, Waiting};
use crate::procfs::{self, CpuTime, Memory};
use crate::results::{human_bytes, mb_per_s, median, micros, Cell, Table};
use crate::svg::{LineChart, Series, YScale};
use crate::units::parse_size;
use crate::workload::{same_bytes, Scratch, TestLibrary};
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions, Destination, Event, Report};
use udpft::proto::wire::{DEFAULT_CHUNK, OVERHEAD};
use udpft::proto::Config;
use udpft::server::Model;

/// How long the server may let downloads finish after SIGTERM (below the guard's wait, so
/// a stop is always graceful and the server prints its counters).
const SERVER_GRACE_SECS: &str = "2";

/// How long to wait for the fork model's session children to exit before reading the
/// server's CPU time (a child's time is added to its parent's only once it is reaped).
const CHILDREN_EXIT_WITHIN: Duration = Duration::from_secs(8);

/// The busy-poll cap of `udpft serve` and the client by default, µs.
const DEFAULT_BUSY_POLL_MICROS: u64 = udpft::net::DEFAULT_BUSY_POLL.as_micros() as u64;

/// Errors shown per cell at most (the rest are counted).
const ERRORS_SHOWN: usize = 3;

/// The shortest a client waits for a busy server, even when the budget is nearly spent.
const MIN_BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// Which way the files go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// Every client downloads.
    Get,
    /// Every client uploads its own file under a unique name.
    Put,
}

/// What the clients ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Downloads (or uploads, `--op put`) of `--size` by each client count.
    Transfers,
    /// Checksums of one large file (`udpft sum`; see `sums.rs`).
    Sum,
    /// Small downloads, alone and while other clients ask for checksums.
    Mixed,
}

/// Which files downloads read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Files {
    /// One library file, downloaded by every client.
    Shared,
    /// A file per client (same bytes, separate files).
    Own,
}

/// Arguments of `models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Server models, comma-separated: loop, table, threads, fork.
    #[arg(long, default_value = "loop,table,threads,fork", value_delimiter = ',')]
    pub models: Vec<Model>,
    /// Concurrent client counts, comma-separated.
    #[arg(long, default_value = "1,4,16,64", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: Vec<u32>,
    /// Bytes each client moves (units: B, KB, MB, GB, KiB, MiB, GiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    pub size: u64,
    /// Download or upload.
    #[arg(long, value_enum, default_value_t = Op::Get)]
    pub op: Op,
    /// Downloads: one shared file, or each client its own.
    #[arg(long, value_enum, default_value_t = Files::Shared)]
    pub files: Files,
    /// Loss rate each way through lossy-proxy (`0.01` or `1%`); 0 connects directly.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub loss: f64,
    /// Also run the table model with this many worker loops (shown as `table-wN`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..=256))]
    pub workers: Option<u16>,
    /// Chunk size: a number, `default` (1430), `max` (65485) or `min`.
    #[arg(long, default_value_t = DEFAULT_CHUNK, value_parser = parse_chunk)]
    pub chunk: u16,
    /// Rounds of every cell; medians are reported (failures are summed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Folder for the CSV, JSON, Markdown and SVG files (created if missing).
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// File name stem of the outputs: NAME.csv, NAME.json, NAME.md, NAME-goodput.svg,
    /// NAME-p99.svg.
    #[arg(long, default_value = "models")]
    pub name: String,
    /// Run the loop model with at most this many clients (it serves one at a time by
    /// design, so large counts take long); larger cells are skipped and listed as such.
    #[arg(long, value_name = "N")]
    pub loop_max_clients: Option<u32>,
    /// Stop starting new cells after this many seconds overall.
    #[arg(long, default_value_t = 900.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// A client gives up after this many seconds without progress.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// Length of each of the two ping-pong measurements (before and after the cells).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub ceiling_seconds: f64,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// The `lossy-proxy` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub proxy_bin: Option<PathBuf>,
    /// Extra `udpft serve` arguments for every model, e.g. `--server-arg=--timeout=1`.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Seed of the file bytes and of the proxy's losses.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// What the clients ask for: transfers, checksums (sum), or small downloads beside
    /// checksums (mixed; `--clients`' largest count downloads `--size` `--downloads` times).
    #[arg(long, value_enum, default_value_t = Workload::Transfers)]
    pub workload: Workload,
    /// Sum and mixed: the size of the file the checksum clients hash.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub sum_size: u64,
    /// Sum and mixed: clients asking for checksums at once, each on its own loopback address.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=250))]
    pub sum_clients: u32,
    /// Sum: checksums each checksum client asks for.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub sums: u32,
    /// Mixed: downloads each download client makes, one after another.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub downloads: u32,
    /// Sum and mixed: the hashing threads of the `table-cpuN` variant (`--cpu-workers`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub cpu_workers: u16,
    /// Busy-poll caps in microseconds, comma-separated, for the server (`--busy-poll`) and
    /// its clients alike; with more than one, every model runs once per value (shown as
    /// `table bp0`, `table bp50`, ...).
    #[arg(long, default_value = "50", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll: Vec<u64>,
}

/// A server set-up under test: a model, and for the table model a worker count.
#[derive(Clone, Debug)]
struct Variant {
    label: String,
    model: Model,
    workers: u16,
    /// The busy-poll cap of the server and its clients, µs.
    busy_poll: u64,
}

impl Variant {
    fn server_args(&self) -> Vec<String> {
        let mut args = vec![
            "--model".to_owned(),
            self.model.name().to_owned(),
            "--grace".to_owned(),
            SERVER_GRACE_SECS.to_owned(),
            format!("--busy-poll={}", self.busy_poll),
        ];
        if self.workers > 1 {
            args.extend(["--workers".to_owned(), self.workers.to_string()]);
        }
        args
    }
}

/// The variants in the order asked, with `table-wN` right after `table`, each once per
/// busy-poll cap (labelled with it when there are several).
fn variants(models: &[Model], workers: Option<u16>, busy_polls: &[u64]) -> Vec<Variant> {
    let base = model_variants(models, workers);
    match busy_polls {
        [] => base,
        [only] => base
            .into_iter()
            .map(|v| Variant {
                busy_poll: *only,
                ..v
            })
            .collect(),
        several => base
            .iter()
            .flat_map(|v| {
                several.iter().map(move |&busy_poll| Variant {
                    label: format!("{} bp{busy_poll}", v.label),
                    busy_poll,
                    ..v.clone()
                })
            })
            .collect(),
    }
}

/// The model variants in the order asked, with `table-wN` right after `table`.
fn model_variants(models: &[Model], workers: Option<u16>) -> Vec<Variant> {
    let mut list: Vec<Variant> = Vec::new();
    for &model in models {
        if list.iter().any(|v| v.model == model && v.workers == 1) {
            continue;
        }
        list.push(Variant {
            label: model.name().to_owned(),
            model,
            workers: 1,
            busy_poll: DEFAULT_BUSY_POLL_MICROS,
        });
        if let (Model::Table, Some(n)) = (model, workers) {
            list.push(Variant {
                label: format!("table-w{n}"),
                model,
                workers: n,
                busy_poll: DEFAULT_BUSY_POLL_MICROS,
            });
        }
    }
    if let Some(n) = workers {
        if !list.iter().any(|v| v.workers > 1) {
            list.push(Variant {
                label: format!("table-w{n}"),
                model: Model::Table,
                workers: n,
                busy_poll: DEFAULT_BUSY_POLL_MICROS,
            });
        }
    }
    list
}

/// The counters on the server's last line (`udpft: stopped; received=… opened=…`).
#[derive(Clone, Debug, Default)]
struct ServerCounters {
    failed: u64,
    refused: u64,
}

fn parse_stopped_line(log: &str) -> Option<ServerCounters> {
    let line = log.lines().rev().find(|l| l.contains("udpft: stopped;"))?;
    let value = |key: &str| {
        line.split_whitespace()
            .find_map(|t| t.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
    };
    Some(ServerCounters {
        failed: value("failed")?,
        refused: value("refused")?,
    })
}

/// One client's transfer.
struct ClientRun {
    result: Result<Report, String>,
    started: Instant,
    finished: Instant,
    busy: u64,
    /// Get: where the copy went. Put: the uploaded file in the library.
    copy: PathBuf,
    /// What the copy must equal.
    original: PathBuf,
}

/// One measured cell (one round of one variant × client count).
#[derive(Clone, Debug, Default)]
struct CellRun {
    goodput: f64,
    wall: f64,
    p50: f64,
    p99: f64,
    max: f64,
    busy: u64,
    failed: u64,
    cpu: CpuTime,
    memory: Memory,
    server: Option<ServerCounters>,
    clean_exit: bool,
    children_left: usize,
    load1: f64,
    errors: Vec<String>,
}

/// The nearest-rank percentile `p` (0..=100) of sorted `values`; NaN if empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What every cell shares: binaries, files, settings.
struct Bench<'a> {
    args: &'a ModelsArgs,
    server_bin: PathBuf,
    proxy_bin: Option<PathBuf>,
    scratch: &'a Path,
    library: TestLibrary,
    /// Get with `--files own`: client i reads `own[i]`.
    own: Vec<String>,
    timeout: Duration,
}

impl Bench<'_> {
    /// Runs one cell; `patience` bounds each client's waiting for a busy server.
    fn cell(
        &self,
        variant: &Variant,
        clients: u32,
        round: u32,
        patience: Duration,
    ) -> io::Result<CellRun> {
        let tag = format!("{}-{clients}-{round}", variant.label);
        let load1 = procfs::load_average().map_or(f64::NAN, |l| l.0);
        let mut extra_args = variant.server_args();
        extra_args.extend(self.args.server_args.iter().cloned());
        let mut server = start_server(
            &ServerSpec {
                bin: self.server_bin.clone(),
                root: self.library.root.clone(),
                extra_args,
            },
            &self.scratch.join(format!("server-{tag}.log")),
        )?;
        let pid = server.guard.pid();
        let proxy = match &self.proxy_bin {
            Some(bin) => Some(start_proxy(
                &ProxySpec {
                    bin: bin.clone(),
                    upstream: server.addr,
                    loss: self.args.loss,
                    seed: self.args.seed.wrapping_add(u64::from(round)),
                    lifetime: patience + self.timeout * 4 + Duration::from_secs(60),
                    extra_args: Vec::new(),
                },
                self.scratch,
                &tag,
            )?),
            None => None,
        };
        let target = proxy.as_ref().map_or(server.addr, |p| p.addr);

        let busy_poll = Duration::from_micros(variant.busy_poll);
        let runs = self.run_clients(target, clients, &tag, patience, busy_poll);

        // The fork model's session children are added to its CPU time once reaped.
        let mut children_left = procfs::children(pid).len();
        if variant.model == Model::Fork {
            let deadline = Instant::now() + CHILDREN_EXIT_WITHIN;
            while children_left > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                children_left = procfs::children(pid).len();
            }
        }
        let alive = server.guard.exited().is_none();
        let cpu = procfs::cpu_time(pid).unwrap_or_default();
        let memory = procfs::memory(pid).unwrap_or_default();
        if let Some(proxy) = proxy {
            let _ = proxy.stop();
        }
        let status = server.guard.stop()?;
        let server_counters = parse_stopped_line(&server.guard.log_text());
        if !alive {
            return Err(io::Error::other(format!(
                "the {} server exited during the cell ({status}):\n{}",
                variant.label,
                server.guard.log_tail()
            )));
        }

        // Check every copy now that the clock has stopped, and clean up.
        let mut errors = Vec::new();
        let mut failed = 0;
        let mut bytes = 0;
        let mut completions = Vec::new();
        for run in &runs {
            let verdict = match &run.result {
                Ok(report) if report.size != self.library.size => Err(format!(
                    "reported {} bytes, expected {}",
                    report.size, self.library.size
                )),
                Ok(_) => match same_bytes(&run.original, &run.copy) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!("{} differs from the original", run.copy.display())),
                    Err(e) => Err(format!("cannot compare {}: {e}", run.copy.display())),
                },
                Err(e) => Err(e.clone()),
            };
            let _ = std::fs::remove_file(&run.copy);
            match verdict {
                Ok(()) => {
                    bytes += self.library.size;
                    completions.push(run.finished);
                }
                Err(e) => {
                    failed += 1;
                    errors.push(e);
                }
            }
        }
        let first_start = runs.iter().map(|r| r.started).min();
        let last_finish = completions.iter().max().copied();
        let wall = match (first_start, last_finish) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        let mut times: Vec<f64> = completions
            .iter()
            .filter_map(|f| Some(f.saturating_duration_since(first_start?).as_secs_f64()))
            .collect();
        times.sort_by(f64::total_cmp);
        Ok(CellRun {
            goodput: if bytes > 0 {
                mb_per_s(bytes, wall)
            } else {
                0.0
            },
            wall: wall.as_secs_f64(),
            p50: percentile(&times, 50.0),
            p99: percentile(&times, 99.0),
            max: times.last().copied().unwrap_or(f64::NAN),
            busy: runs.iter().map(|r| r.busy).sum(),
            failed,
            cpu,
            memory,
            server: server_counters,
            clean_exit: status.success(),
            children_left,
            load1,
            errors,
        })
    }

    /// Starts `clients` threads, lets them begin together, and collects their runs.
    fn run_clients(
        &self,
        target: SocketAddr,
        clients: u32,
        tag: &str,
        patience: Duration,
        busy_poll: Duration,
    ) -> Vec<ClientRun> {
        let options = ClientOptions {
            config: Config {
                chunk: self.args.chunk,
                timeout: self.timeout,
                ..Config::default()
            },
            busy_patience: patience,
            busy_poll,
        };
        let barrier = Barrier::new(clients as usize);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients as usize)
                .map(|i| {
                    let (options, barrier) = (options.clone(), &barrier);
                    std::thread::Builder::new()
                        .name(format!("bench-client-{i}"))
                        .spawn_scoped(scope, move || {
                            self.one_client(i, target, options, barrier, tag)
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|_| self.lost_client("client thread panicked")),
                    // The barrier would wait forever for a thread that never started.
                    Err(e) => panic!("cannot start a client thread: {e}"),
                })
                .collect()
        })
    }

    fn lost_client(&self, why: &str) -> ClientRun {
        let now = Instant::now();
        ClientRun {
            result: Err(why.to_owned()),
            started: now,
            finished: now,
            busy: 0,
            copy: self.scratch.join("nothing"),
            original: self.library.file(),
        }
    }

    fn one_client(
        &self,
        i: usize,
        target: SocketAddr,
        options: ClientOptions,
        barrier: &Barrier,
        tag: &str,
    ) -> ClientRun {
        let client = Client::new(target, options);
        let (copy, original, remote) = match self.args.op {
            Op::Get => {
                let name = match self.args.files {
                    Files::Shared => self.library.name.clone(),
                    Files::Own => self.own[i].clone(),
                };
                (
                    self.scratch.join(format!("copy-{tag}-{i}.bin")),
                    self.library.root.join(&name),
                    name,
                )
            }
            Op::Put => {
                let name = format!("up-{tag}-{i}.bin");
                (self.library.root.join(&name), self.library.file(), name)
            }
        };
        barrier.wait();
        let started = Instant::now();
        let mut busy = 0;
        let mut events = |e: Event<'_>| {
            if let Event::Busy { .. } = e {
                busy += 1;
            }
        };
        let result = client.and_then(|mut c| match self.args.op {
            Op::Get => c.get(
                &remote,
                &Destination::File(copy.clone()),
                false,
                &mut events,
            ),
            Op::Put => c.put(&original, &remote, false, &mut events),
        });
        let finished = Instant::now();
        ClientRun {
            result: result.map_err(|e| e.to_string()),
            started,
            finished,
            busy,
            copy,
            original,
        }
    }
}

/// Medians over the rounds of one cell (failures and busy answers summed).
struct CellSummary {
    variant: String,
    clients: u32,
    goodput: f64,
    wall: f64,
    p50: f64,
    p99: f64,
    max: f64,
    busy: u64,
    cpu: f64,
    peak_mib: f64,
    failed: u64,
    refused: u64,
    server_failed: u64,
    clean: bool,
    children_left: usize,
    load1: f64,
    errors: Vec<String>,
}

fn summarize(variant: &str, clients: u32, runs: &[CellRun]) -> CellSummary {
    let med = |f: &dyn Fn(&CellRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    CellSummary {
        variant: variant.to_owned(),
        clients,
        goodput: med(&|r| r.goodput),
        wall: med(&|r| r.wall),
        p50: med(&|r| r.p50),
        p99: med(&|r| r.p99),
        max: med(&|r| r.max),
        busy: runs.iter().map(|r| r.busy).sum(),
        cpu: med(&|r| r.cpu.total()),
        peak_mib: med(&|r| r.memory.peak_kib as f64 / 1024.0),
        failed: runs.iter().map(|r| r.failed).sum(),
        refused: runs
            .iter()
            .map(|r| r.server.as_ref().map_or(0, |s| s.refused))
            .sum(),
        server_failed: runs
            .iter()
            .map(|r| r.server.as_ref().map_or(0, |s| s.failed))
            .sum(),
        clean: runs.iter().all(|r| r.clean_exit && r.server.is_some()),
        children_left: runs.iter().map(|r| r.children_left).max().unwrap_or(0),
        load1: med(&|r| r.load1),
        errors: runs
            .iter()
            .flat_map(|r| r.errors.iter().cloned())
            .take(ERRORS_SHOWN)
            .collect(),
    }
}

/// Runs the benchmark, prints its tables and writes its files.
///
/// # Errors
/// If the binaries or the scratch files are missing, the ceiling cannot be measured, or an
/// output file cannot be written. A cell that fails is reported and the run goes on.
pub fn run(args: &ModelsArgs) -> io::Result<()> {
    match args.workload {
        Workload::Transfers => {}
        Workload::Sum => return crate::sums::run(args, false),
        Workload::Mixed => return crate::sums::run(args, true),
    }
    let started = Instant::now();
    let budget = secs(args.max_seconds, "--max-seconds")?;
    let timeout = secs(args.timeout, "--timeout")?;
    let ceiling_time = secs(args.ceiling_seconds, "--ceiling-seconds")?;
    if args.models.is_empty() || args.clients.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--models and --clients need at least one value each",
        ));
    }
    let server_bin = locate_bin("udpft", args.server_bin.as_deref())?;
    let proxy_bin = if args.loss > 0.0 {
        Some(locate_bin("lossy-proxy", args.proxy_bin.as_deref())?)
    } else {
        None
    };
    std::fs::create_dir_all(&args.out)?;
    let load_before = procfs::load_text();
    let variants = variants(&args.models, args.workers, &args.busy_poll);
    let mut clients = args.clients.clone();
    clients.sort_unstable();
    clients.dedup();
    let most = clients.last().copied().unwrap_or(1);

    let scratch = Scratch::create()?;
    eprintln!(
        "udpft-bench: {} test file(s) of {} in {}; load average {load_before}",
        if args.files == Files::Own && args.op == Op::Get {
            most
        } else {
            1
        },
        human_bytes(args.size),
        scratch.path().display()
    );
    let library = TestLibrary::create(scratch.path(), args.size, args.seed)?;
    let mut own = Vec::new();
    if args.op == Op::Get && args.files == Files::Own {
        for i in 0..most {
            let name = format!("own-{i}.bin");
            std::fs::copy(library.file(), library.root.join(&name))?;
            own.push(name);
        }
    }
    let bench = Bench {
        args,
        server_bin,
        proxy_bin,
        scratch: scratch.path(),
        library,
        own,
        timeout,
    };

    let spec = |waiting| PingPongSpec::stop_and_wait(args.chunk, waiting, 1_000_000, ceiling_time);
    let spinning = Waiting::Spinning(pingpong::SPIN);
    let blocking_before = pingpong::measure(spec(Waiting::Blocking))?;
    let spinning_before = pingpong::measure(spec(spinning))?;

    // Rounds outermost, then client counts, then variants: a drift in the machine's load
    // touches every model alike rather than one model's whole column.
    let mut runs: Vec<Vec<Vec<CellRun>>> = vec![vec![Vec::new(); clients.len()]; variants.len()];
    let mut skipped: Vec<String> = Vec::new();
    let mut out_of_time = false;
    for round in 0..args.rounds {
        for (c, &n) in clients.iter().enumerate() {
            for (v, variant) in variants.iter().enumerate() {
                if variant.model == Model::Loop && args.loop_max_clients.is_some_and(|max| n > max)
                {
                    if round == 0 {
                        skipped.push(format!(
                            "{} × {n} clients (--loop-max-clients {})",
                            variant.label,
                            args.loop_max_clients.unwrap_or(0)
                        ));
                    }
                    continue;
                }
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    out_of_time = true;
                    continue;
                }
                let cell_started = Instant::now();
                match bench.cell(variant, n, round, left.max(MIN_BUSY_PATIENCE)) {
                    Ok(run) => {
                        eprintln!(
                            "udpft-bench: {} × {n} round {}: {:.1} MB/s, p99 {:.3} s, busy {}, failed {}, cpu {:.2} s, peak RSS {:.1} MiB ({:.1} s, load {:.2})",
                            variant.label,
                            round + 1,
                            run.goodput,
                            run.p99,
                            run.busy,
                            run.failed,
                            run.cpu.total(),
                            run.memory.peak_kib as f64 / 1024.0,
                            cell_started.elapsed().as_secs_f64(),
                            run.load1
                        );
                        for e in run.errors.iter().take(ERRORS_SHOWN) {
                            eprintln!("udpft-bench:   failure: {e}");
                        }
                        runs[v][c].push(run);
                    }
                    Err(e) => {
                        eprintln!(
                            "udpft-bench: {} × {n} round {}: cell failed: {e}",
                            variant.label,
                            round + 1
                        );
                        runs[v][c].push(CellRun {
                            failed: u64::from(n),
                            errors: vec![e.to_string()],
                            goodput: f64::NAN,
                            p50: f64::NAN,
                            p99: f64::NAN,
                            max: f64::NAN,
                            load1: f64::NAN,
                            ..CellRun::default()
                        });
                    }
                }
            }
        }
    }
    if out_of_time {
        skipped.push(format!(
            "cells left after --max-seconds {} (see the table for what ran)",
            args.max_seconds
        ));
    }
    let ceilings = Ceilings {
        blocking: Ceiling::new(
            blocking_before,
            pingpong::measure(spec(Waiting::Blocking))?,
            args.chunk,
        ),
        spinning: Ceiling::new(
            spinning_before,
            pingpong::measure(spec(spinning))?,
            args.chunk,
        ),
    };
    let load_after = procfs::load_text();

    let summaries: Vec<Vec<Option<CellSummary>>> = variants
        .iter()
        .zip(&runs)
        .map(|(variant, per_count)| {
            clients
                .iter()
                .zip(per_count)
                .map(|(&n, cell)| (!cell.is_empty()).then(|| summarize(&variant.label, n, cell)))
                .collect()
        })
        .collect();

    let report = render_report(
        args,
        &clients,
        &summaries,
        &ceilings,
        &skipped,
        &format!("before {load_before}, after {load_after}"),
        started.elapsed(),
    );
    print!("{}", report.markdown);
    let stem = args.out.join(&args.name);
    report.table.write_files(
        Some(&stem.with_extension("csv")),
        Some(&stem.with_extension("json")),
    )?;
    std::fs::write(stem.with_extension("md"), &report.markdown)?;
    let charts = charts(args, &variants, &clients, &summaries, &report.note);
    std::fs::write(
        args.out.join(format!("{}-goodput.svg", args.name)),
        charts.0.to_svg(),
    )?;
    std::fs::write(
        args.out.join(format!("{}-p99.svg", args.name)),
        charts.1.to_svg(),
    )?;
    eprintln!(
        "udpft-bench: wrote {0}.csv, {0}.json, {0}.md, {0}-goodput.svg, {0}-p99.svg in {1}",
        args.name,
        args.out.display()
    );
    let failed: u64 = summaries.iter().flatten().flatten().map(|s| s.failed).sum();
    if failed > 0 {
        return Err(io::Error::other(format!(
            "{failed} transfer(s) failed (see the table)"
        )));
    }
    Ok(())
}

/// One stop-and-wait ceiling: a ping-pong measured before and after the cells.
struct Ceiling {
    before: PingPong,
    after: PingPong,
    /// chunk ÷ mean RTT of both, MB/s.
    mb_s: f64,
}

impl Ceiling {
    fn new(before: PingPong, after: PingPong, chunk: u16) -> Self {
        let mean_rtt = (before.mean_rtt + after.mean_rtt) / 2;
        let mb_s = PingPong { mean_rtt, ..before }.ceiling_mb_s(usize::from(chunk));
        Self {
            before,
            after,
            mb_s,
        }
    }
}

/// The ping-pong ceilings with blocking and with spinning receives.
struct Ceilings {
    blocking: Ceiling,
    spinning: Ceiling,
}

struct Rendered {
    markdown: String,
    table: Table,
    /// One line describing the run, for the charts.
    note: String,
}

#[allow(clippy::too_many_arguments)]
fn render_report(
    args: &ModelsArgs,
    clients: &[u32],
    summaries: &[Vec<Option<CellSummary>>],
    ceilings: &Ceilings,
    skipped: &[String],
    load: &str,
    elapsed: Duration,
) -> Rendered {
    let op = match args.op {
        Op::Get => match args.files {
            Files::Shared => "get (one shared file)",
            Files::Own => "get (a file per client)",
        },
        Op::Put => "put (a new file per client)",
    };
    let mut table = Table::new(&[
        "model",
        "clients",
        "goodput MB/s",
        "÷ blocking ceiling",
        "wall s",
        "p50 s",
        "p99 s",
        "max s",
        "busy retries",
        "server CPU s",
        "server CPU %",
        "CPU ms/MB",
        "peak RSS MiB",
        "refused",
        "failed",
        "load 1m",
    ]);
    for (c, _) in clients.iter().enumerate() {
        for per_variant in summaries {
            let Some(s) = &per_variant[c] else { continue };
            let total_mb = args.size as f64 * f64::from(s.clients) / 1e6;
            table.push(vec![
                Cell::text(&s.variant),
                Cell::int(u64::from(s.clients)),
                Cell::num(s.goodput, 1),
                Cell::num(s.goodput / ceilings.blocking.mb_s, 2),
                Cell::num(s.wall, 3),
                Cell::num(s.p50, 3),
                Cell::num(s.p99, 3),
                Cell::num(s.max, 3),
                Cell::int(s.busy),
                Cell::num(s.cpu, 2),
                Cell::num(s.cpu / s.wall * 100.0, 0),
                Cell::num(s.cpu * 1e3 / total_mb, 1),
                Cell::num(s.peak_mib, 1),
                Cell::int(s.refused),
                Cell::int(s.failed),
                Cell::num(s.load1, 2),
            ]);
        }
    }
    let mut single = Table::new(&[
        "model",
        "1-client goodput MB/s",
        "blocking ceiling MB/s",
        "fraction",
        "spinning ceiling MB/s",
        "fraction",
    ]);
    if let Some(c) = clients.iter().position(|&n| n == 1) {
        for per_variant in summaries {
            if let Some(s) = &per_variant[c] {
                single.push(vec![
                    Cell::text(&s.variant),
                    Cell::num(s.goodput, 1),
                    Cell::num(ceilings.blocking.mb_s, 1),
                    Cell::num(s.goodput / ceilings.blocking.mb_s, 2),
                    Cell::num(ceilings.spinning.mb_s, 1),
                    Cell::num(s.goodput / ceilings.spinning.mb_s, 2),
                ]);
            }
        }
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Server models: {} of {} by 1–{} concurrent clients (chunk {} B{}, {} round{})\n",
        op,
        human_bytes(args.size),
        clients.last().copied().unwrap_or(1),
        args.chunk,
        if args.loss > 0.0 {
            format!(
                ", {:.1}% loss each way through lossy-proxy",
                args.loss * 100.0
            )
        } else {
            ", loopback, no proxy".to_owned()
        },
        args.rounds,
        if args.rounds == 1 { "" } else { "s, medians" }
    );
    md.push_str(&table.to_markdown());
    let _ = writeln!(
        md,
        "\nMB = 10^6 bytes. goodput = all clients' verified bytes / wall time from the first \
         client's start to the last one's finish. ÷ blocking ceiling = that / the \
         stop-and-wait ceiling with blocking receives below. p50/p99/max = clients' completion times (nearest rank), counted from \
         the common start, so waiting for a busy server is included. busy retries = busy \
         answers the clients backed off on. server CPU = user + system time of the server \
         process and its reaped children (utime+stime+cutime+cstime), read before it was \
         stopped; server CPU % = that / wall time (100% = one core busy all along; \
         fork's children are counted, so it can exceed 100%). CPU ms/MB = server CPU per \
         MB moved. peak RSS = the server process's VmHWM; for fork, the session children's \
         memory is NOT included (each child is a copy-on-write fork of the parent). refused = \
         the server's own count (busy and other refusals). failed = transfers that errored \
         or whose copy differed (must be 0)."
    );
    for (name, ceiling) in [
        ("blocking receives", &ceilings.blocking),
        (
            &*format!("each side spinning up to {} µs", pingpong::SPIN.as_micros()),
            &ceilings.spinning,
        ),
    ] {
        let _ = writeln!(
            md,
            "\nPing-pong ceiling, {name}: {}-byte requests, {OVERHEAD}-byte replies (a Data \
             and its Ack), mean RTT {:.1} µs before and {:.1} µs after the cells → ceiling = \
             {} B / {:.1} µs = {:.1} MB/s.",
            usize::from(args.chunk) + OVERHEAD,
            micros(ceiling.before.mean_rtt),
            micros(ceiling.after.mean_rtt),
            args.chunk,
            micros((ceiling.before.mean_rtt + ceiling.after.mean_rtt) / 2),
            ceiling.mb_s
        );
    }
    md.push('\n');
    if single.is_empty() {
        md.push_str("(no 1-client cell was run)\n");
    } else {
        md.push_str(&single.to_markdown());
    }
    let cpus = procfs::cpus();
    let _ = writeln!(
        md,
        "\nMachine: {cpus} CPU(s); load average (1, 5, 15 min) {load}; the clients run as \
         threads of the benchmark on the same machine, competing with the server for the \
         CPUs. Total run time {:.0} s.",
        elapsed.as_secs_f64()
    );
    for per_variant in summaries {
        for s in per_variant.iter().flatten() {
            if !s.clean {
                let _ = writeln!(
                    md,
                    "\nNote: the {} server of the {}-client cell did not stop cleanly \
                     (no exit 0 with its counters line).",
                    s.variant, s.clients
                );
            }
            if s.children_left > 0 {
                let _ = writeln!(
                    md,
                    "\nNote: {} session children of the {} server ({} clients) were still \
                     running when its CPU time was read; their time is missing.",
                    s.children_left, s.variant, s.clients
                );
            }
            for e in &s.errors {
                let _ = writeln!(md, "\nFailure ({} × {}): {e}", s.variant, s.clients);
            }
            if s.server_failed > 0 {
                let _ = writeln!(
                    md,
                    "\nNote: the {} server ({} clients) counted {} failed session(s) of its own \
                     (the clients' transfers are checked separately above).",
                    s.variant, s.clients, s.server_failed
                );
            }
        }
    }
    for s in skipped {
        let _ = writeln!(md, "\nSkipped: {s}.");
    }
    let note = format!(
        "{} of {} per client, chunk {} B{}; {} CPU(s), load {}",
        match args.op {
            Op::Get => "get",
            Op::Put => "put",
        },
        human_bytes(args.size),
        args.chunk,
        if args.loss > 0.0 {
            format!(", loss {:.1}%", args.loss * 100.0)
        } else {
            String::new()
        },
        cpus,
        load
    );
    Rendered {
        markdown: md,
        table,
        note,
    }
}

/// Aggregate goodput and p99 completion time against the client count, a line per variant.
fn charts(
    args: &ModelsArgs,
    variants: &[Variant],
    clients: &[u32],
    summaries: &[Vec<Option<CellSummary>>],
    note: &str,
) -> (LineChart, LineChart) {
    let categories: Vec<String> = clients.iter().map(u32::to_string).collect();
    let series = |f: &dyn Fn(&CellSummary) -> f64| -> Vec<Series> {
        variants
            .iter()
            .zip(summaries)
            .map(|(variant, cells)| Series {
                name: variant.label.clone(),
                values: cells
                    .iter()
                    .map(|cell| cell.as_ref().map(f).filter(|v| v.is_finite()))
                    .collect(),
            })
            .collect()
    };
    let what = match args.op {
        Op::Get => "downloads",
        Op::Put => "uploads",
    };
    let goodput = LineChart {
        title: format!("Aggregate goodput of concurrent {what} by server model"),
        x_label: "concurrent clients".into(),
        y_label: "aggregate goodput, MB/s".into(),
        categories: categories.clone(),
        series: series(&|s| s.goodput),
        y_scale: YScale::Linear,
        note: Some(note.to_owned()),
    };
    let p99 = LineChart {
        title: format!("p99 completion time of concurrent {what} by server model"),
        x_label: "concurrent clients".into(),
        y_label: "p99 completion time, s (log scale)".into(),
        categories,
        series: series(&|s| s.p99),
        y_scale: YScale::Log10,
        note: Some(note.to_owned()),
    };
    (goodput, p99)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_add_a_table_variant_right_after_table() {
        let labels: Vec<String> = variants(&Model::ALL, Some(2), &[50])
            .into_iter()
            .map(|v| v.label)
            .collect();
        assert_eq!(labels, ["loop", "table", "table-w2", "threads", "fork"]);
        let plain: Vec<String> = variants(&[Model::Loop, Model::Loop], None, &[])
            .into_iter()
            .map(|v| v.label)
            .collect();
        assert_eq!(plain, ["loop"]);
    }

    #[test]
    fn several_busy_poll_caps_run_every_model_once_per_cap() {
        let list = variants(&[Model::Table, Model::Threads], None, &[0, 50]);
        let labels: Vec<(&str, u64)> = list.iter().map(|v| (&*v.label, v.busy_poll)).collect();
        assert_eq!(
            labels,
            [
                ("table bp0", 0),
                ("table bp50", 50),
                ("threads bp0", 0),
                ("threads bp50", 50)
            ]
        );
        assert!(list[0].server_args().contains(&"--busy-poll=0".to_owned()));
        let single = variants(&[Model::Table], None, &[20]);
        assert_eq!((&*single[0].label, single[0].busy_poll), ("table", 20));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values[..16], 99.0), 16.0);
        assert_eq!(percentile(&[3.0], 50.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn server_counters_come_from_its_last_line() {
        let log = "udpft: serving /x on 127.0.0.1:1 (model loop, Ctrl-C to stop)\n\
                   udpft: stopped; received=10 sent=12 opened=3 completed=2 failed=1 refused=7 unknown_session=0\n";
        let c = parse_stopped_line(log).unwrap();
        assert_eq!((c.failed, c.refused), (1, 7));
        assert!(parse_stopped_line("udpft: serving\n").is_none());
    }
}
