//! `udpft-bench`: benchmarks of udpft on loopback. `ceiling` measures the raw UDP
//! ping-pong that bounds any stop-and-wait transfer; `download` runs the real server as a
//! child process and sets the client's goodput against that ceiling; `loss` measures goodput
//! through `lossy-proxy` at several loss rates; `models` sets the server models against each
//! other under 1…N concurrent clients; `sessions` measures the memory of N open sessions.
//!
//! # Layout
//! * `children`: finding the binaries, starting and guarding server and proxy children.
//! * `pingpong`: the raw UDP ping-pong.
//! * `workload`: the scratch folder, the test file, byte-for-byte checks.
//! * `units`: sizes, probabilities and rates on the command line (shared with `lossy-proxy`).
//! * `transfer`: one verified download with the library client.
//! * `results`: tables (Markdown, CSV, JSON) and medians.
//! * `procfs`: a child's CPU time and memory, and the load average, from `/proc`.
//! * `svg`: a small hand-made SVG line chart.
//! * `download`, `loss`, `models`, `sessions`: the scenarios, one module each; a new
//!   scenario is one more module and one more [`Command`] variant.

#![deny(unsafe_code)]

mod children;
mod download;
mod loss;
mod models;
mod pingpong;
mod procfs;
mod results;
mod sessions;
mod svg;
mod transfer;
// parse_byte_rate serves lossy-proxy; no scenario here sets a bottleneck yet.
#[allow(dead_code)]
mod units;
mod workload;

use clap::{Args, Parser, Subcommand};
use pingpong::PingPongSpec;
use results::{micros, Cell, Table};
use std::io;
use std::process::ExitCode;
use udpft::proto::wire::{MAX_CHUNK, OVERHEAD};

const AFTER_HELP: &str = "\
All traffic stays on loopback (127.0.0.1). The machine is usually shared, so every scenario
alternates its measurements over several rounds and reports medians. MB = 10^6 bytes.

Examples:
  udpft-bench ceiling --chunk 1430
  udpft-bench download --size 64MiB --chunks default,max --rounds 3
  udpft-bench loss --size 16MiB --rates 0,1%,5%,10%
  udpft-bench models --clients 1,4,16,64 --size 4MiB --workers 2 --out docs/bench
  udpft-bench sessions --count 1000";

/// Benchmarks of udpft on loopback.
#[derive(Parser, Debug)]
#[command(name = "udpft-bench", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Raw UDP ping-pong on loopback: the stop-and-wait ceiling for one chunk size.
    ///
    /// One echo thread with its own socket answers a pinger that sends datagrams of exactly
    /// CHUNK + 22 bytes (udpft's per-datagram overhead) and waits for each echo. Prints the
    /// mean round trip and the ceiling CHUNK / RTT.
    Ceiling(CeilingArgs),
    /// Download goodput of the real server (a child process) against the ping-pong ceiling
    /// of the same datagram size, measured in alternation.
    Download(download::DownloadArgs),
    /// Download goodput through lossy-proxy at several loss rates.
    Loss(loss::LossArgs),
    /// The server models side by side: a server child per model × client count, that many
    /// concurrent verified transfers; goodput, completion times, server CPU and memory.
    ///
    /// Writes NAME.csv, NAME.json, NAME.md and two SVG charts (aggregate goodput and p99
    /// completion time against the client count) to --out.
    Models(models::ModelsArgs),
    /// Memory of a server holding N open sessions (raw sockets that validate each session
    /// and then stop acking), against the idle server.
    Sessions(sessions::SessionsArgs),
}

#[derive(Args, Debug)]
struct CeilingArgs {
    /// Chunk size in bytes; datagrams are CHUNK + 22 bytes.
    #[arg(long, value_parser = download::parse_chunk)]
    chunk: u16,
    /// Most timed round trips.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Longest run, in seconds.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    seconds: f64,
    /// Echo only this many bytes (as udpft's small acks) instead of the whole datagram.
    #[arg(long, value_name = "BYTES")]
    echo_bytes: Option<usize>,
}

fn ceiling(args: &CeilingArgs) -> io::Result<()> {
    let datagram = usize::from(args.chunk) + OVERHEAD;
    let result = pingpong::measure(PingPongSpec {
        datagram,
        echo: args.echo_bytes,
        count: args.count,
        max_time: download::secs(args.seconds, "--seconds")?,
    })?;
    let mut table = Table::new(&[
        "chunk B",
        "datagram B",
        "echo B",
        "round trips",
        "lost",
        "mean RTT µs",
        "median RTT µs",
        "ceiling MB/s",
    ]);
    table.push(vec![
        Cell::int(u64::from(args.chunk)),
        Cell::int(datagram as u64),
        Cell::int(args.echo_bytes.map_or(datagram, |n| n.clamp(8, datagram)) as u64),
        Cell::int(result.round_trips),
        Cell::int(result.lost),
        Cell::num(micros(result.mean_rtt), 2),
        Cell::num(micros(result.median_rtt), 2),
        Cell::num(result.ceiling_mb_s(usize::from(args.chunk)), 1),
    ]);
    print!("{}", table.to_markdown());
    println!("\nceiling = chunk bytes / mean RTT (MB = 10^6 bytes); max chunk is {MAX_CHUNK}.");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Ceiling(args) => ceiling(args),
        Command::Download(args) => download::run(args),
        Command::Loss(args) => loss::run(args),
        Command::Models(args) => models::run(args),
        Command::Sessions(args) => sessions::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udpft-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn download_defaults_to_the_default_and_largest_chunks() {
        let cli = Cli::parse_from(["udpft-bench", "download"]);
        let Command::Download(args) = cli.command else {
            panic!("download expected");
        };
        assert_eq!(args.chunks, vec![1430, MAX_CHUNK]);
        assert_eq!(args.size, 64 << 20);
        assert_eq!(args.rounds, 3);
    }

    #[test]
    fn models_defaults_to_four_models_and_four_client_counts() {
        let cli = Cli::parse_from(["udpft-bench", "models", "--workers", "2"]);
        let Command::Models(args) = cli.command else {
            panic!("models expected");
        };
        assert_eq!(args.models, udpft::server::Model::ALL.to_vec());
        assert_eq!(args.clients, vec![1, 4, 16, 64]);
        assert_eq!(args.size, 4 << 20);
        assert_eq!(args.workers, Some(2));
    }
}
