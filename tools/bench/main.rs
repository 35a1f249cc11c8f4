//! `udpft-bench`: benchmarks of udpft on loopback. `ceiling` measures the raw UDP
//! ping-pong that bounds any stop-and-wait transfer (blocking and spinning) and a one-way
//! blast of the same datagrams; `download` runs the real server as a child process and sets
//! the client's goodput against those references; `loss` measures goodput
//! through `lossy-proxy` at several loss rates; `models` sets the server models against each
//! other under 1…N concurrent clients; `sessions` measures the memory of N open sessions;
//! `tftpd` sets udpft beside tftpd-hpa with curl as its client; `tftp` sets one TFTP client
//! against tftpd-hpa and `udpft serve --tftp`; `window` sets windows against stop-and-wait
//! over a grid of loss and delay; `bottleneck` measures congestion control through the
//! proxy's bottleneck; `fairness` small downloads beside a windowed one.
//!
//! # Layout
//! * `children`: finding the binaries, starting and guarding server and proxy children.
//! * `pingpong`: the raw UDP ping-pong (Data-sized requests, Ack-sized replies).
//! * `blast`: the one-way UDP blast (straight, or through a relay).
//! * `path`: the round trip of a path (through a relay or not), for a window's ceiling.
//! * `relay`: what a path relays closed-loop, a window of requests answered by acks.
//! * `tcp`: a TCP copy of a file with socat.
//! * `filecopy`: a local copy of the test file, the bound of any download that writes it.
//! * `workload`: the scratch folder, the test file, byte-for-byte checks.
//! * `units`: sizes, probabilities and rates on the command line (shared with `lossy-proxy`).
//! * `transfer`: one verified download with the library client.
//! * `runargs`: the arguments the newer scenarios share (outputs, binaries, budget, seed).
//! * `results`: tables (Markdown, CSV, JSON) and medians.
//! * `procfs`: a child's CPU time and memory, and the load average, from `/proc`.
//! * `svg`: a small hand-made SVG line chart.
//! * `download`, `loss`, `models`, `sessions`, `tftpd`, `tftp`, `window`, `bottleneck`,
//!   `fairness`: the scenarios, one module each; a new
//!   scenario is one more module and one more [`Command`] variant.

#![deny(unsafe_code)]

mod blast;
mod bottleneck;
mod children;
mod download;
mod fairness;
mod filecopy;
mod loss;
mod models;
mod path;
mod pingpong;
mod procfs;
mod relay;
mod results;
mod runargs;
mod sessions;
mod sums;
mod svg;
mod tcp;
mod tftp;
mod tftpd;
mod transfer;
mod units;
mod window;
mod workload;

use blast::BlastSpec;
use clap::{Args, Parser, Subcommand};
use pingpong::{PingPongSpec, Waiting};
use results::{micros, Cell, Table};
use std::io;
use std::process::ExitCode;
use std::time::Duration;
use udpft::proto::wire::{MAX_CHUNK, OVERHEAD};

const AFTER_HELP: &str = "\
All traffic stays on loopback (127.0.0.1). The machine is usually shared, so every scenario
alternates its measurements over several rounds and reports medians. MB = 10^6 bytes.

Examples:
  udpft-bench ceiling --chunk 1430
  udpft-bench download --size 64MiB --chunks default,max --busy-poll 0,50 --rounds 3
  udpft-bench loss --size 16MiB --rates 0,1%,5%,10%
  udpft-bench models --clients 1,4,16,64 --size 4MiB --workers 2 --out docs/bench
  udpft-bench models --models table --clients 16,64 --busy-poll 0,50 --rounds 3 \
      --out docs/bench --name models-busypoll
  udpft-bench sessions --count 1000
  udpft-bench tftpd --size 64MiB --rounds 5
  udpft-bench window --rounds 3 --out docs/bench
  udpft-bench window --windows 1,16,64 --loss 0,5% --delay none,1 --chunks default --rounds 1
  udpft-bench bottleneck --rate 10MB/s --queue 32 --out docs/bench
  udpft-bench fairness --small-clients 8 --big-window 64 --out docs/bench
  udpft-bench tftp --size 64MiB --loss 0,5% --lossy-tftpd-size 512KiB --rounds 3
  udpft-bench tftp --client atftp --windows 1,16 --size 64MiB --rounds 3";

/// Benchmarks of udpft on loopback.
#[derive(Parser, Debug)]
#[command(name = "udpft-bench", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Raw UDP references on loopback for one chunk size: the stop-and-wait ceilings and a
    /// one-way blast.
    ///
    /// A pinger sends requests of CHUNK + 22 bytes (a Data datagram) to an echo thread that
    /// answers each with --reply bytes (an Ack, 22), once with blocking receives on both
    /// sides and once with each side spinning up to --spin µs before blocking; the ceiling
    /// is CHUNK / mean RTT. The blast sends the same datagrams one way as fast as the
    /// receiver drains them.
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
    /// udpft beside tftpd-hpa: curl against `in.tftpd` and `udpft get` against `udpft
    /// serve`, same file, matched block and chunk sizes, alternating rounds.
    ///
    /// Needs tftpd-hpa (`in.tftpd`) and curl installed, and root (`in.tftpd -s` chroots).
    Tftpd(tftpd::TftpdArgs),
    /// One TFTP client (curl, or atftp for windowsize) against tftpd-hpa and `udpft serve
    /// --tftp`, same file, alternating rounds, directly or through lossy-proxy at each
    /// --loss rate.
    ///
    /// Needs tftpd-hpa (`in.tftpd`), the client, and root (`in.tftpd -s` chroots).
    Tftp(tftp::TftpArgs),
    /// Memory of a server holding N open sessions (raw sockets that validate each session
    /// and then stop acking), against the idle server.
    Sessions(sessions::SessionsArgs),
    /// Stop-and-wait vs pipelining: download goodput over a grid of window × loss × added
    /// delay × chunk, each cell beside its ceiling window × chunk ÷ RTT, with blocking
    /// stop-and-wait, a one-way blast (also through the proxy) and a TCP copy (socat) in the
    /// same run.
    ///
    /// Writes NAME.md, NAME.csv, NAME.json and an SVG chart per chunk (goodput against the
    /// window, a line per delay and loss), and NAME-rounds.csv (every cell of every round)
    /// to --out. The full default grid took 8–9 minutes on a 2-core machine (cells up to
    /// 512 MiB).
    Window(window::WindowArgs),
    /// Congestion control through lossy-proxy: a window-256 download through a bottleneck
    /// with a drop-tail queue (goodput ÷ rate, datagrams dropped), several at once (Jain's
    /// index), and a window-64 download at random loss ÷ the same without loss.
    ///
    /// Writes NAME.md, NAME.csv and NAME.json to --out.
    Bottleneck(bottleneck::BottleneckArgs),
    /// One loop, fair to everyone: small stop-and-wait downloads from a table-model server,
    /// alone and beside a windowed download of a large file; p99 completion time beside ÷
    /// alone.
    ///
    /// Writes NAME.md, NAME.csv and NAME.json to --out.
    Fairness(fairness::FairnessArgs),
}

#[derive(Args, Debug)]
struct CeilingArgs {
    /// Chunk size in bytes; requests are CHUNK + 22 bytes.
    #[arg(long, value_parser = download::parse_chunk)]
    chunk: u16,
    /// Most timed round trips of each ping-pong, and most datagrams of the blast.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Longest run of each measurement, in seconds.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    seconds: f64,
    /// Bytes of each reply (udpft's Ack is 22).
    #[arg(long, value_name = "BYTES", default_value_t = OVERHEAD)]
    reply: usize,
    /// How long each side spins before blocking in the spinning ping-pong, in µs.
    #[arg(long, value_name = "MICROS", default_value_t = pingpong::SPIN.as_micros() as u64)]
    spin: u64,
}

fn ceiling(args: &CeilingArgs) -> io::Result<()> {
    let payload = usize::from(args.chunk);
    let request = payload + OVERHEAD;
    let max_time = download::secs(args.seconds, "--seconds")?;
    let mut table = Table::new(&[
        "reference",
        "request B",
        "reply B",
        "count",
        "lost",
        "mean RTT µs",
        "median RTT µs",
        "MB/s",
    ]);
    for waiting in [
        Waiting::Blocking,
        Waiting::Spinning(Duration::from_micros(args.spin)),
    ] {
        let result = pingpong::measure(PingPongSpec {
            request,
            reply: args.reply,
            waiting,
            count: args.count,
            max_time,
        })?;
        table.push(vec![
            Cell::text(format!("ping-pong, {}", waiting.name())),
            Cell::int(request as u64),
            Cell::int(args.reply as u64),
            Cell::int(result.round_trips),
            Cell::int(result.lost),
            Cell::num(micros(result.mean_rtt), 2),
            Cell::num(micros(result.median_rtt), 2),
            Cell::num(result.ceiling_mb_s(payload), 1),
        ]);
    }
    let blast = blast::measure(BlastSpec {
        datagram: request,
        count: args.count,
        max_time,
    })?;
    table.push(vec![
        Cell::text("one-way blast"),
        Cell::int(request as u64),
        Cell::missing(),
        Cell::int(blast.received),
        Cell::int(blast.lost()),
        Cell::missing(),
        Cell::missing(),
        Cell::num(blast.mb_s(payload), 1),
    ]);
    print!("{}", table.to_markdown());
    println!(
        "\nBlast: {} sent, {} counted, {} credit stalls (credits that did not come within \
         100 ms).",
        blast.sent, blast.received, blast.stalls
    );
    println!(
        "\nMB/s = chunk bytes per mean RTT for the ping-pongs, chunk bytes per second at the \
         receiver for the blast (MB = 10^6 bytes); spinning = each side spins up to {} µs \
         before blocking; max chunk is {MAX_CHUNK}.",
        args.spin
    );
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
        Command::Tftpd(args) => tftpd::run(args),
        Command::Window(args) => window::run(args),
        Command::Bottleneck(args) => bottleneck::run(args),
        Command::Fairness(args) => fairness::run(args),
        Command::Tftp(args) => tftp::run(args),
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
    fn tftp_defaults_to_curl_in_lockstep_on_a_perfect_link() {
        let cli = Cli::parse_from(["udpft-bench", "tftp"]);
        let Command::Tftp(args) = cli.command else {
            panic!("tftp expected");
        };
        assert_eq!(args.client, tftp::TftpClient::Curl);
        assert_eq!((args.blksize, args.windows.clone()), (1468, vec![1]));
        assert_eq!(args.loss, vec![0.0]);
        assert_eq!(args.size, 64 << 20);
        let cli = Cli::parse_from(["udpft-bench", "tftp", "--loss", "0,5%"]);
        let Command::Tftp(args) = cli.command else {
            panic!("tftp expected");
        };
        assert_eq!(args.loss, vec![0.0, 0.05]);
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
