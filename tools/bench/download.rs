//! `udpft-bench download`: goodput of a real `udpft serve` child against the raw UDP
//! ping-pong ceiling of the same datagram size, measured side by side.
//!
//! For each chunk size, rounds alternate the two measurements (ceiling first in even rounds,
//! transfer first in odd ones) so slow drifts of a shared, noisy machine hit both alike; the
//! table shows medians over rounds, and the ratio is the median of each round's own
//! goodput / ceiling.

use crate::children::{locate_bin, start_server, ServerSpec};
use crate::pingpong::{self, PingPong, PingPongSpec};
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
    /// Rounds per chunk size (each: one ceiling and one transfer); medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Extra `udpft serve` arguments, e.g. `--server-arg=--model=threads`.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Longest time one ping-pong measurement runs, in seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub ceiling_seconds: f64,
    /// Most round trips of one ping-pong measurement.
    #[arg(long, default_value_t = 50_000)]
    pub ceiling_count: u64,
    /// Echo only this many bytes in the ping-pong (as udpft's small acks) instead of the
    /// whole datagram.
    #[arg(long, value_name = "BYTES")]
    pub echo_bytes: Option<usize>,
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

/// One round: a ceiling and a transfer with the same datagram size.
struct Round {
    ceiling: PingPong,
    download: Download,
}

impl Round {
    fn ratio(&self, chunk: u16) -> f64 {
        self.download.goodput / self.ceiling.ceiling_mb_s(usize::from(chunk))
    }
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// If a child cannot be started, a measurement fails, or a file cannot be written.
pub fn run(args: &DownloadArgs) -> io::Result<()> {
    let started = Instant::now();
    let budget = secs(args.max_seconds, "--max-seconds")?;
    let timeout = secs(args.timeout, "--timeout")?;
    let ceiling_time = secs(args.ceiling_seconds, "--ceiling-seconds")?;
    let bin = locate_bin("udpft", args.server_bin.as_deref())?;
    let scratch = Scratch::create()?;
    eprintln!(
        "udpft-bench: writing a {} test file in {}",
        human_bytes(args.size),
        scratch.path().display()
    );
    let library = TestLibrary::create(scratch.path(), args.size, args.seed)?;
    let mut server = start_server(
        &ServerSpec {
            bin,
            root: library.root.clone(),
            extra_args: args.server_args.clone(),
        },
        &scratch.path().join("server.log"),
    )?;
    eprintln!(
        "udpft-bench: server pid {} on {}",
        server.guard.pid(),
        server.addr
    );
    let dest = scratch.path().join("downloaded.bin");

    let mut summary = Table::new(&[
        "chunk B",
        "file",
        "rounds",
        "goodput MB/s",
        "ping-pong RTT µs",
        "ceiling MB/s",
        "ratio",
        "retx",
        "dup data",
        "srtt µs",
    ]);
    let mut every_round = Table::new(&[
        "chunk B",
        "round",
        "goodput MB/s",
        "elapsed s",
        "ping-pong RTT µs",
        "ping-pong p50 µs",
        "ceiling MB/s",
        "ratio",
        "retx",
        "dup data",
        "srtt µs",
    ]);
    'chunks: for &chunk in &args.chunks {
        let datagram = usize::from(chunk) + OVERHEAD;
        let spec = PingPongSpec {
            datagram,
            echo: args.echo_bytes,
            count: args.ceiling_count,
            max_time: ceiling_time,
        };
        let mut rounds: Vec<Round> = Vec::new();
        for round in 0..args.rounds {
            if started.elapsed() >= budget {
                eprintln!(
                    "udpft-bench: --max-seconds {} reached; reporting the rounds done",
                    args.max_seconds
                );
                if rounds.is_empty() {
                    break 'chunks;
                }
                break;
            }
            if let Some(status) = server.guard.exited() {
                return Err(io::Error::other(format!(
                    "the server exited ({status}):\n{}",
                    server.guard.log_tail()
                )));
            }
            let measure_transfer =
                || transfer::download(server.addr, chunk, timeout, &library, &dest);
            let (ceiling, download) = if round % 2 == 0 {
                let c = pingpong::measure(spec)?;
                (c, measure_transfer()?)
            } else {
                let d = measure_transfer()?;
                (pingpong::measure(spec)?, d)
            };
            let r = Round { ceiling, download };
            eprintln!(
                "udpft-bench: chunk {chunk} round {}/{}: goodput {:.1} MB/s, ping-pong {:.1} µs -> ceiling {:.1} MB/s, ratio {:.2}",
                round + 1,
                args.rounds,
                r.download.goodput,
                micros(r.ceiling.mean_rtt),
                r.ceiling.ceiling_mb_s(usize::from(chunk)),
                r.ratio(chunk)
            );
            every_round.push(vec![
                Cell::int(u64::from(chunk)),
                Cell::int(u64::from(round + 1)),
                Cell::num(r.download.goodput, 1),
                Cell::num(r.download.report.elapsed.as_secs_f64(), 3),
                Cell::num(micros(r.ceiling.mean_rtt), 1),
                Cell::num(micros(r.ceiling.median_rtt), 1),
                Cell::num(r.ceiling.ceiling_mb_s(usize::from(chunk)), 1),
                Cell::num(r.ratio(chunk), 3),
                Cell::int(r.download.report.stats.retransmitted),
                Cell::int(r.download.report.stats.duplicates),
                r.download
                    .report
                    .stats
                    .srtt
                    .map_or_else(Cell::missing, |d| Cell::num(micros(d), 1)),
            ]);
            rounds.push(r);
        }
        let med = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        summary.push(vec![
            Cell::int(u64::from(chunk)),
            Cell::text(human_bytes(args.size)),
            Cell::int(rounds.len() as u64),
            Cell::num(med(&|r| r.download.goodput), 1),
            Cell::num(med(&|r| micros(r.ceiling.mean_rtt)), 1),
            Cell::num(med(&|r| r.ceiling.ceiling_mb_s(usize::from(chunk))), 1),
            Cell::num(med(&|r| r.ratio(chunk)), 3),
            Cell::num(med(&|r| r.download.report.stats.retransmitted as f64), 0),
            Cell::num(med(&|r| r.download.report.stats.duplicates as f64), 0),
            Cell::num(
                med(&|r| r.download.report.stats.srtt.map_or(f64::NAN, micros)),
                1,
            ),
        ]);
    }
    server.guard.stop()?;

    println!(
        "## Download goodput vs. ping-pong ceiling (loopback, medians of {} rounds)\n",
        args.rounds
    );
    print!("{}", summary.to_markdown());
    let echo = args
        .echo_bytes
        .map_or("echoed whole".to_owned(), |n| format!("echoed as {n} B"));
    println!(
        "\nMB = 10^6 bytes. ceiling = chunk bytes / mean RTT of a raw UDP ping-pong of \
         (chunk + {OVERHEAD})-byte datagrams, {echo}; ratio = median over rounds of goodput / \
         that round's ceiling. retx = the client's retransmissions, dup data = repeated data \
         datagrams it received, srtt = its smoothed RTT at the end."
    );
    if args.verbose {
        println!("\n### Every round\n");
        print!("{}", every_round.to_markdown());
    }
    summary.write_files(args.output.csv.as_deref(), args.output.json.as_deref())?;
    Ok(())
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
