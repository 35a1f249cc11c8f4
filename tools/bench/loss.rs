//! `udpft-bench loss`: goodput of downloads through a `lossy-proxy` child at several loss
//! rates, against the 0%-loss goodput through the same kind of proxy (so the proxy's own
//! cost is not counted as loss).
//!
//! One server child serves every run; each round gets a fresh proxy (seeded with
//! `--seed` + round), stopped after the download so its counters can be read. The server's
//! retransmissions are not visible to the client, so they are derived from the proxy: the
//! datagrams the server sent down to the client, less the Accept, the data chunks and the
//! Done a clean transfer needs.

use crate::children::{locate_bin, start_proxy, start_server, ProxySpec, ServerSpec};
use crate::download::{parse_chunk, secs, Budget};
use crate::results::{finish, human_bytes, median, micros, Cell, OutputArgs, Table};
use crate::transfer;
use crate::units::{parse_probability, parse_size};
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use udpft::proto::wire::DEFAULT_CHUNK;

/// Arguments of `loss`.
#[derive(Args, Debug)]
pub struct LossArgs {
    /// Size of the test file (units: B, KB, MB, GB, KiB, MiB, GiB).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub size: u64,
    /// Loss rates (each direction), comma-separated: `0.05` or `5%`. 0 is always measured,
    /// as the reference.
    #[arg(long, default_value = "0,0.01,0.05,0.10", value_delimiter = ',', value_parser = parse_rate)]
    pub rates: Vec<f64>,
    /// Chunk size: a number, `default` (1430), `max` (65485) or `min`.
    #[arg(long, default_value_t = DEFAULT_CHUNK, value_parser = parse_chunk)]
    pub chunk: u16,
    /// Rounds per rate; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// The `lossy-proxy` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub proxy_bin: Option<PathBuf>,
    /// Extra `udpft serve` arguments, e.g. `--server-arg=--model=threads`.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Extra `lossy-proxy` arguments, e.g. `--proxy-arg=--dup=0.01`.
    #[arg(long = "proxy-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub proxy_args: Vec<String>,
    /// Seed of the losses (round r uses seed + r) and of the test file's bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The client gives up after this many seconds without progress.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// Stop starting new rounds after this many seconds overall.
    #[arg(long, default_value_t = 900.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// Also print every round's numbers.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Parses a loss rate: `0.05` or `5%`, within 0..1 (a link that loses everything moves nothing).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match parse_probability(text)? {
        value if value < 1.0 => Ok(value),
        _ => Err(format!("`{text}` is outside 0..1")),
    }
}

/// One download through one proxy.
struct Run {
    goodput: f64,
    client_retx: u64,
    dup_data: u64,
    server_retx: u64,
    dropped: u64,
    srtt_us: f64,
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// If a child cannot be started, a download fails, or a file cannot be written.
pub fn run(args: &LossArgs) -> io::Result<()> {
    let budget = Budget::new(args.max_seconds)?;
    let timeout = secs(args.timeout, "--timeout")?;
    let server_bin = locate_bin("udpft", args.server_bin.as_deref())?;
    let proxy_bin = locate_bin("lossy-proxy", args.proxy_bin.as_deref())?;
    let mut rates = args.rates.clone();
    if !rates.contains(&0.0) {
        rates.insert(0, 0.0);
    }
    rates.sort_by(f64::total_cmp);
    rates.dedup();

    let scratch = Scratch::create()?;
    let library = TestLibrary::create(scratch.path(), args.size, args.seed)?;
    let mut server = start_server(
        &ServerSpec {
            bin: server_bin,
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
    // A clean download: the Accept, every chunk, the Done.
    let clean_down = library.size.div_ceil(u64::from(args.chunk)) + 2;

    let mut every_round = Table::new(&[
        "loss",
        "round",
        "goodput MB/s",
        "client retx",
        "dup data",
        "server retx",
        "dropped",
        "srtt µs",
    ]);
    let mut medians: Vec<(f64, usize, [f64; 6])> = Vec::new();
    'rates: for &rate in &rates {
        let mut runs: Vec<Run> = Vec::new();
        for round in 0..args.rounds {
            let left = budget.left();
            if left.is_zero() {
                if runs.is_empty() {
                    break 'rates;
                }
                break;
            }
            let proxy = start_proxy(
                &ProxySpec {
                    bin: proxy_bin.clone(),
                    upstream: server.addr,
                    loss: rate,
                    seed: args.seed.wrapping_add(u64::from(round)),
                    lifetime: left + timeout + Duration::from_secs(10),
                    extra_args: args.proxy_args.clone(),
                },
                scratch.path(),
                &format!("{rate}-{round}"),
            )?;
            let download = transfer::download(
                proxy.addr,
                args.chunk,
                udpft::net::DEFAULT_BUSY_POLL,
                timeout,
                &library,
                &dest,
            );
            let counters = proxy.stop()?;
            let download = download?;
            let run = Run {
                goodput: download.goodput,
                client_retx: download.report.stats.retransmitted,
                dup_data: download.report.stats.duplicates,
                server_retx: counters.get("down.offered").saturating_sub(clean_down),
                dropped: counters.get("up.dropped") + counters.get("down.dropped"),
                srtt_us: download.report.stats.srtt.map_or(f64::NAN, micros),
            };
            eprintln!(
                "udpft-bench: loss {:.1}% round {}/{}: goodput {:.1} MB/s, {} dropped, server retx {}",
                rate * 100.0,
                round + 1,
                args.rounds,
                run.goodput,
                run.dropped,
                run.server_retx
            );
            every_round.push(vec![
                Cell::num(rate, 3),
                Cell::int(u64::from(round + 1)),
                Cell::num(run.goodput, 2),
                Cell::int(run.client_retx),
                Cell::int(run.dup_data),
                Cell::int(run.server_retx),
                Cell::int(run.dropped),
                Cell::num(run.srtt_us, 1),
            ]);
            runs.push(run);
        }
        let med = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        medians.push((
            rate,
            runs.len(),
            [
                med(&|r| r.goodput),
                med(&|r| r.client_retx as f64),
                med(&|r| r.dup_data as f64),
                med(&|r| r.server_retx as f64),
                med(&|r| r.dropped as f64),
                med(&|r| r.srtt_us),
            ],
        ));
    }
    server.guard.stop()?;

    let reference = medians
        .iter()
        .find(|(rate, ..)| *rate == 0.0)
        .map_or(f64::NAN, |(_, _, m)| m[0]);
    let mut summary = Table::new(&[
        "loss",
        "rounds",
        "goodput MB/s",
        "vs 0%",
        "client retx",
        "dup data",
        "server retx",
        "dropped",
        "srtt µs",
    ]);
    for (rate, rounds, m) in &medians {
        summary.push(vec![
            Cell::num(*rate, 3),
            Cell::int(*rounds as u64),
            Cell::num(m[0], 2),
            Cell::num(m[0] / reference, 3),
            Cell::num(m[1], 0),
            Cell::num(m[2], 0),
            Cell::num(m[3], 0),
            Cell::num(m[4], 0),
            Cell::num(m[5], 1),
        ]);
    }
    println!(
        "## Download goodput through lossy-proxy ({} file, chunk {} B, medians of {} rounds)\n",
        human_bytes(args.size),
        args.chunk,
        args.rounds
    );
    print!("{}", summary.to_markdown());
    println!(
        "\nloss = drop probability in each direction. vs 0% = goodput / goodput through the \
         proxy at 0% loss. client retx = the client's retransmissions; dup data = repeated \
         data datagrams it received; server retx = datagrams the server sent beyond a clean \
         transfer's {clean_down} (counted by the proxy); dropped = datagrams the proxy \
         dropped, both ways."
    );
    finish(&summary, &every_round, args.verbose, &args.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_fractions_and_percentages_below_one() {
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert_eq!(parse_rate("10%"), Ok(0.1));
        assert!(parse_rate("1").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("lots").is_err());
    }
}
