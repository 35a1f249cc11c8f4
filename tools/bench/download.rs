//! `udpft-bench download`: goodput of a real `udpft serve` child against four references,
//! measured side by side: three raw UDP ones of the same datagram size (the stop-and-wait
//! ceiling with blocking receives, the same with spinning receives, both a Data-sized
//! request and an Ack-sized reply, and a one-way blast of the same datagrams) and a local
//! copy of the test file in chunk-sized reads and writes into the downloads' folder, the
//! bound of any download that writes the file.
//!
//! Every `--busy-poll` value gets its own server child (`udpft serve --busy-poll N`) and
//! client setting, so busy-polling on and off are compared in one run. For each chunk size,
//! a round measures every reference and every transfer once, in an order that rotates from
//! round to round so slow drifts of a shared, noisy machine hit all alike; the tables show
//! medians over rounds, and each ratio is the median of each round's own ratio. CPU per MB
//! is the server child's CPU time (from `/proc`) and this process's (the client) over the
//! transfer. At the end, each server sits idle for `--idle-seconds` and its CPU time over
//! that is reported: a server without clients must use next to none, busy-polling or not.

use crate::blast::{self, Blast, BlastSpec};
use crate::children::{locate_bin, start_server, ServerChild, ServerSpec};
use crate::filecopy::{self, FileCopy};
use crate::pingpong::{self, PingPong, PingPongSpec, Waiting, SPIN};
use crate::procfs;
use crate::results::{human_bytes, median, micros, Cell, OutputArgs, Table};
use crate::transfer::{self, Download};
use crate::units::parse_size;
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use udpft::proto::wire::{DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK, OVERHEAD};

/// Arguments of `download`.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Size of the test file (units: B, KB, MB, GB, KiB, MiB, GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Chunk sizes to try, comma-separated: numbers, `default` (1430), `max` (65485) or `min`.
    #[arg(long, default_value = "default,max", value_delimiter = ',', value_parser = parse_chunk)]
    pub chunks: Vec<u16>,
    /// Busy-poll caps to compare, in µs, comma-separated (0 = off): a server child and a
    /// client setting each.
    #[arg(long, default_value = "0,50", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll: Vec<u64>,
    /// Rounds per chunk size (each: every reference and every transfer once); medians are
    /// reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Extra `udpft serve` arguments, e.g. `--server-arg=--model=threads`.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Longest time one reference measurement runs, in seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub ceiling_seconds: f64,
    /// Most round trips of one ping-pong (and datagrams of one blast).
    #[arg(long, default_value_t = 50_000)]
    pub ceiling_count: u64,
    /// How long each server sits idle at the end while its CPU time is read (0: skip).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub idle_seconds: f64,
    /// The client gives up after this many seconds without progress.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// Stop starting new rounds after this many seconds overall (the rounds done so far
    /// are reported).
    #[arg(long, default_value_t = 900.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// Seed of the test file's bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also print every round's numbers.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Parses a chunk size: a number in range, or `default`, `max`, `min`.
pub fn parse_chunk(text: &str) -> Result<u16, String> {
    let chunk = match text.trim().to_ascii_lowercase().as_str() {
        "default" => DEFAULT_CHUNK,
        "max" => MAX_CHUNK,
        "min" => MIN_CHUNK,
        n => n
            .parse()
            .map_err(|_| format!("`{text}` is not a chunk size (a number, default, max, min)"))?,
    };
    if (MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        Ok(chunk)
    } else {
        Err(format!(
            "chunk {chunk} is outside {MIN_CHUNK}..={MAX_CHUNK}"
        ))
    }
}

/// Converts seconds from the command line, refusing negative and absurd values.
pub fn secs(value: f64, what: &str) -> io::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} must be a non-negative number of seconds"),
        )
    })
}

/// The `--max-seconds` budget of a run: new rounds start only while some is left.
pub struct Budget {
    started: Instant,
    limit: Duration,
}

impl Budget {
    /// A budget of `max_seconds` from now.
    ///
    /// # Errors
    /// If `max_seconds` is negative or absurd.
    pub fn new(max_seconds: f64) -> io::Result<Self> {
        Ok(Self {
            started: Instant::now(),
            limit: secs(max_seconds, "--max-seconds")?,
        })
    }

    /// The time left; once none is, says on stderr that the rounds done are reported.
    pub fn left(&self) -> Duration {
        let left = self.limit.saturating_sub(self.started.elapsed());
        if left.is_zero() {
            eprintln!(
                "udpft-bench: --max-seconds {} reached; reporting the rounds done",
                self.limit.as_secs_f64()
            );
        }
        left
    }
}

/// The references of one round.
#[derive(Clone, Copy)]
struct References {
    blocking: PingPong,
    spinning: PingPong,
    blast: Blast,
    file_copy: FileCopy,
}

/// One transfer of one round, with the CPU time it took.
struct Transfer {
    download: Download,
    /// Server CPU seconds over the transfer.
    server_cpu: f64,
    /// This process's CPU seconds over the transfer (the client).
    client_cpu: f64,
}

impl Transfer {
    fn mb(&self) -> f64 {
        (self.download.report.size - self.download.report.resumed_from) as f64 / 1e6
    }
}

/// One round: the references and a transfer per busy-poll value.
struct Round {
    refs: References,
    transfers: Vec<Transfer>,
}

/// What one round measures; rotated so no measurement always runs first.
#[derive(Clone, Copy)]
enum Step {
    Blocking,
    Spinning,
    Blast,
    FileCopy,
    Transfer(usize),
}

/// Shared by every measurement of the run.
struct Bench<'a> {
    args: &'a DownloadArgs,
    library: TestLibrary,
    dest: PathBuf,
    timeout: Duration,
    ceiling_time: Duration,
}

impl Bench<'_> {
    fn ping_pong(&self, chunk: u16, waiting: Waiting) -> io::Result<PingPong> {
        pingpong::measure(PingPongSpec::stop_and_wait(
            chunk,
            waiting,
            self.args.ceiling_count,
            self.ceiling_time,
        ))
    }

    fn blast(&self, chunk: u16) -> io::Result<Blast> {
        blast::measure(BlastSpec {
            datagram: usize::from(chunk) + OVERHEAD,
            count: self.args.ceiling_count * 4,
            max_time: self.ceiling_time,
        })
    }

    fn file_copy(&self, chunk: u16) -> io::Result<FileCopy> {
        // Beside the download, on its filesystem: where the client's partial file is written.
        let dest = self.dest.with_file_name("file-copy.bin");
        filecopy::measure(&self.library.file(), &dest, usize::from(chunk))
    }

    fn transfer(&self, server: &ServerChild, chunk: u16, busy_poll: u64) -> io::Result<Transfer> {
        let server_before = procfs::cpu_time(server.guard.pid())?;
        let client_before = procfs::cpu_time(std::process::id())?;
        let download = transfer::download(
            server.addr,
            chunk,
            Duration::from_micros(busy_poll),
            self.timeout,
            &self.library,
            &self.dest,
        )?;
        let server_after = procfs::cpu_time(server.guard.pid())?;
        let client_after = procfs::cpu_time(std::process::id())?;
        Ok(Transfer {
            download,
            server_cpu: server_after.total() - server_before.total(),
            client_cpu: client_after.own - client_before.own,
        })
    }

    fn round(&self, servers: &mut [ServerChild], chunk: u16, round: u32) -> io::Result<Round> {
        let mut steps = vec![Step::Blocking, Step::Spinning, Step::Blast, Step::FileCopy];
        steps.extend((0..servers.len()).map(Step::Transfer));
        let first = round as usize % steps.len();
        steps.rotate_left(first);
        let (mut blocking, mut spinning, mut blast, mut file_copy) = (None, None, None, None);
        let mut transfers: Vec<Option<Transfer>> = servers.iter().map(|_| None).collect();
        for step in steps {
            match step {
                Step::Blocking => blocking = Some(self.ping_pong(chunk, Waiting::Blocking)?),
                Step::Spinning => spinning = Some(self.ping_pong(chunk, Waiting::Spinning(SPIN))?),
                Step::Blast => blast = Some(self.blast(chunk)?),
                Step::FileCopy => file_copy = Some(self.file_copy(chunk)?),
                Step::Transfer(i) => {
                    if let Some(status) = servers[i].guard.exited() {
                        return Err(io::Error::other(format!(
                            "the server exited ({status}):\n{}",
                            servers[i].guard.log_tail()
                        )));
                    }
                    transfers[i] =
                        Some(self.transfer(&servers[i], chunk, self.args.busy_poll[i])?);
                }
            }
        }
        Ok(Round {
            refs: References {
                blocking: blocking.expect("measured"),
                spinning: spinning.expect("measured"),
                blast: blast.expect("measured"),
                file_copy: file_copy.expect("measured"),
            },
            transfers: transfers
                .into_iter()
                .map(|t| t.expect("measured"))
                .collect(),
        })
    }
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// If a child cannot be started, a measurement fails, or a file cannot be written.
pub fn run(args: &DownloadArgs) -> io::Result<()> {
    let budget = Budget::new(args.max_seconds)?;
    let load_before = procfs::load_text();
    let idle = secs(args.idle_seconds, "--idle-seconds")?;
    if args.busy_poll.is_empty() || args.chunks.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--chunks and --busy-poll need at least one value each",
        ));
    }
    let bin = locate_bin("udpft", args.server_bin.as_deref())?;
    let scratch = Scratch::create()?;
    eprintln!(
        "udpft-bench: writing a {} test file in {}",
        human_bytes(args.size),
        scratch.path().display()
    );
    let bench = Bench {
        args,
        library: TestLibrary::create(scratch.path(), args.size, args.seed)?,
        dest: scratch.path().join("downloaded.bin"),
        timeout: secs(args.timeout, "--timeout")?,
        ceiling_time: secs(args.ceiling_seconds, "--ceiling-seconds")?,
    };
    let mut servers = Vec::new();
    for &busy_poll in &args.busy_poll {
        let mut extra_args = vec![format!("--busy-poll={busy_poll}")];
        extra_args.extend(args.server_args.iter().cloned());
        let server = start_server(
            &ServerSpec {
                bin: bin.clone(),
                root: bench.library.root.clone(),
                extra_args,
            },
            &scratch.path().join(format!("server-bp{busy_poll}.log")),
        )?;
        eprintln!(
            "udpft-bench: server --busy-poll {busy_poll} is pid {} on {}",
            server.guard.pid(),
            server.addr
        );
        servers.push(server);
    }

    let mut report = Report::new();
    'chunks: for &chunk in &args.chunks {
        let mut rounds: Vec<Round> = Vec::new();
        for round in 0..args.rounds {
            if budget.left().is_zero() {
                if rounds.is_empty() {
                    break 'chunks;
                }
                break;
            }
            let r = bench.round(&mut servers, chunk, round)?;
            report.every_round(args, chunk, round, &r);
            rounds.push(r);
        }
        report.summarize(args, chunk, &rounds);
    }
    if !idle.is_zero() {
        let before: Vec<f64> = servers
            .iter()
            .map(|s| procfs::cpu_time(s.guard.pid()).map(|c| c.total()))
            .collect::<io::Result<_>>()?;
        eprintln!(
            "udpft-bench: leaving the servers idle for {:.0} s",
            idle.as_secs_f64()
        );
        std::thread::sleep(idle);
        for ((server, before), &busy_poll) in servers.iter().zip(before).zip(&args.busy_poll) {
            let cpu = procfs::cpu_time(server.guard.pid())?.total() - before;
            report.idle.push(vec![
                Cell::int(busy_poll),
                Cell::num(idle.as_secs_f64(), 0),
                Cell::num(cpu * 1e3, 0),
                Cell::num(cpu / idle.as_secs_f64() * 100.0, 2),
            ]);
        }
    }
    for server in &mut servers {
        server.guard.stop()?;
    }
    report.print(args, idle);
    println!(
        "\nLoad average (1, 5, 15 min) before {load_before}, after {}; {} CPU(s).",
        procfs::load_text(),
        procfs::cpus()
    );
    report
        .transfers
        .write_files(args.output.csv.as_deref(), args.output.json.as_deref())?;
    Ok(())
}

/// The tables as they fill.
struct Report {
    transfers: Table,
    references: Table,
    idle: Table,
    every_round: Table,
}

impl Report {
    fn new() -> Self {
        Self {
            transfers: Table::new(&[
                "chunk B",
                "busy-poll µs",
                "rounds",
                "goodput MB/s",
                "÷ blocking ceiling",
                "÷ spinning ceiling",
                "÷ blast",
                "÷ file copy",
                "server CPU ms/MB",
                "client CPU ms/MB",
                "retx",
                "dup data",
                "srtt µs",
            ]),
            references: Table::new(&[
                "chunk B",
                "blocking RTT µs (mean)",
                "blocking RTT µs (p50)",
                "blocking ceiling MB/s",
                "spinning RTT µs (mean)",
                "spinning RTT µs (p50)",
                "spinning ceiling MB/s",
                "blast MB/s",
                "blast lost",
                "blast stalls",
                "file copy MB/s",
            ]),
            idle: Table::new(&["busy-poll µs", "idle s", "server CPU ms", "server CPU %"]),
            every_round: Table::new(&[
                "chunk B",
                "round",
                "busy-poll µs",
                "goodput MB/s",
                "elapsed s",
                "blocking ceiling MB/s",
                "spinning ceiling MB/s",
                "blast MB/s",
                "file copy MB/s",
                "server CPU ms",
                "client CPU ms",
                "retx",
                "dup data",
            ]),
        }
    }

    fn every_round(&mut self, args: &DownloadArgs, chunk: u16, round: u32, r: &Round) {
        let payload = usize::from(chunk);
        let (blocking, spinning) = (
            r.refs.blocking.ceiling_mb_s(payload),
            r.refs.spinning.ceiling_mb_s(payload),
        );
        let blast = r.refs.blast.mb_s(payload);
        let file_copy = r.refs.file_copy.mb_s();
        for (t, &busy_poll) in r.transfers.iter().zip(&args.busy_poll) {
            let goodput = t.download.goodput;
            eprintln!(
                "udpft-bench: chunk {chunk} round {}/{} busy-poll {busy_poll} µs: {goodput:.1} MB/s = {:.2} × blocking ceiling ({blocking:.1}), {:.2} × spinning ceiling ({spinning:.1}), {:.2} × blast ({blast:.1}), {:.2} × file copy ({file_copy:.1})",
                round + 1,
                args.rounds,
                goodput / blocking,
                goodput / spinning,
                goodput / blast,
                goodput / file_copy,
            );
            self.every_round.push(vec![
                Cell::int(u64::from(chunk)),
                Cell::int(u64::from(round + 1)),
                Cell::int(busy_poll),
                Cell::num(goodput, 1),
                Cell::num(t.download.report.elapsed.as_secs_f64(), 3),
                Cell::num(blocking, 1),
                Cell::num(spinning, 1),
                Cell::num(blast, 1),
                Cell::num(file_copy, 1),
                Cell::num(t.server_cpu * 1e3, 0),
                Cell::num(t.client_cpu * 1e3, 0),
                Cell::int(t.download.report.stats.retransmitted),
                Cell::int(t.download.report.stats.duplicates),
            ]);
        }
    }

    fn summarize(&mut self, args: &DownloadArgs, chunk: u16, rounds: &[Round]) {
        let payload = usize::from(chunk);
        let med = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        for (i, &busy_poll) in args.busy_poll.iter().enumerate() {
            let stats = |r: &Round| r.transfers[i].download.report.stats.clone();
            self.transfers.push(vec![
                Cell::int(u64::from(chunk)),
                Cell::int(busy_poll),
                Cell::int(rounds.len() as u64),
                Cell::num(med(&|r| r.transfers[i].download.goodput), 1),
                Cell::num(
                    med(&|r| {
                        r.transfers[i].download.goodput / r.refs.blocking.ceiling_mb_s(payload)
                    }),
                    2,
                ),
                Cell::num(
                    med(&|r| {
                        r.transfers[i].download.goodput / r.refs.spinning.ceiling_mb_s(payload)
                    }),
                    2,
                ),
                Cell::num(
                    med(&|r| r.transfers[i].download.goodput / r.refs.blast.mb_s(payload)),
                    2,
                ),
                Cell::num(
                    med(&|r| r.transfers[i].download.goodput / r.refs.file_copy.mb_s()),
                    2,
                ),
                Cell::num(
                    med(&|r| r.transfers[i].server_cpu * 1e3 / r.transfers[i].mb()),
                    2,
                ),
                Cell::num(
                    med(&|r| r.transfers[i].client_cpu * 1e3 / r.transfers[i].mb()),
                    2,
                ),
                Cell::num(med(&|r| stats(r).retransmitted as f64), 0),
                Cell::num(med(&|r| stats(r).duplicates as f64), 0),
                Cell::num(med(&|r| stats(r).srtt.map_or(f64::NAN, micros)), 1),
            ]);
        }
        self.references.push(vec![
            Cell::int(u64::from(chunk)),
            Cell::num(med(&|r| micros(r.refs.blocking.mean_rtt)), 1),
            Cell::num(med(&|r| micros(r.refs.blocking.median_rtt)), 1),
            Cell::num(med(&|r| r.refs.blocking.ceiling_mb_s(payload)), 1),
            Cell::num(med(&|r| micros(r.refs.spinning.mean_rtt)), 1),
            Cell::num(med(&|r| micros(r.refs.spinning.median_rtt)), 1),
            Cell::num(med(&|r| r.refs.spinning.ceiling_mb_s(payload)), 1),
            Cell::num(med(&|r| r.refs.blast.mb_s(payload)), 1),
            Cell::num(med(&|r| r.refs.blast.lost() as f64), 0),
            Cell::num(med(&|r| r.refs.blast.stalls as f64), 0),
            Cell::num(med(&|r| r.refs.file_copy.mb_s()), 1),
        ]);
    }

    fn print(&self, args: &DownloadArgs, idle: Duration) {
        println!(
            "## Download goodput vs. raw UDP references and a file copy (loopback, {} file, medians of {} rounds)\n",
            human_bytes(args.size),
            args.rounds
        );
        print!("{}", self.transfers.to_markdown());
        println!(
            "\nMB = 10^6 bytes. busy-poll = the cap of `udpft serve --busy-poll` and of the \
             client (0 = off). Each ratio is the median over rounds of goodput / that round's \
             reference (below). CPU ms/MB = CPU time over the transfer per MB moved: the \
             server child's, and this process's (the client; /proc resolution 10 ms). retx = \
             the client's retransmissions, dup data = repeated Data datagrams it received, \
             srtt = its smoothed RTT at the end.\n"
        );
        print!("{}", self.references.to_markdown());
        println!(
            "\nceiling = chunk bytes / mean RTT of a raw UDP ping-pong of a (chunk + {OVERHEAD})-byte \
             request and a {OVERHEAD}-byte reply (a Data and its Ack); blocking = blocking \
             receives on both sides, spinning = each side spins up to {} µs on its \
             non-blocking socket before blocking. blast = chunk bytes per second at a receiver \
             that only counts, with the same datagrams sent one way as fast as it drains them \
             (stalls = credits that did not come within 100 ms). file copy = file bytes per \
             second of a local copy of the test file in chunk-sized reads and writes into a \
             new file beside the download (same folder and filesystem), not fsynced (nor is \
             the client's), timed from opening the source to closing the copy (the client's \
             time includes its close too), then removed. A download that writes the file \
             cannot be faster than writing it: at large chunks that, not the UDP round trip, \
             is the bound. The copy also reads the file (from the page cache), which the \
             client leaves to the server on the other side, so writing alone is faster: it \
             is a low estimate of that bound.",
            SPIN.as_micros()
        );
        if !self.idle.is_empty() {
            println!(
                "\n### Idle servers ({:.0} s without clients, after the transfers)\n",
                idle.as_secs_f64()
            );
            print!("{}", self.idle.to_markdown());
        }
        if args.verbose {
            println!("\n### Every round\n");
            print!("{}", self.every_round.to_markdown());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names_and_numbers_parse_within_range() {
        assert_eq!(parse_chunk("default"), Ok(DEFAULT_CHUNK));
        assert_eq!(parse_chunk("MAX"), Ok(MAX_CHUNK));
        assert_eq!(parse_chunk("8192"), Ok(8192));
        assert!(parse_chunk("10").is_err());
        assert!(parse_chunk("huge").is_err());
    }
}
