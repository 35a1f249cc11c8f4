//! `udpft-flood`: the attacks of issue 9 §2 ("nothing before proof") as a bounded flood
//! tool, and the measurement of what a legitimate client suffers under each of them.
//!
//! Every flood is bounded in count and in time and stops by itself; it sends only to
//! loopback (127.0.0.0/8 or ::1: any other target is refused), from sockets bound to
//! loopback addresses (Linux's loopback accepts all of 127/8, so 127.0.X.Y make many
//! spoofable-looking sources on one host).
//!
//! # Layout
//! * `bounds`: the loopback rule, and the count-and-time [`bounds::Budget`] of a flood.
//! * `blast`: the engine: paced sending threads, replies read and answered, counts.
//! * `attacks`: the attacks, their source addresses, one script per thread.
//! * `requests`: the unproven floods (requests and strays nobody answers).
//! * `proven`: the attacks that prove their address (resume pairs, drips, folder churn).
//! * `legit`: the legitimate client that is timed.
//! * `observe`: the server's memory, descriptors, threads, children, temporary files, CPU
//!   and counters.
//! * `sink`: the control's trivial echo (what a flood costs the machine, not the server).
//! * `measure`: attacks × models, alternating unloaded and loaded phases, the report.
//! * `merge`: a report written by several runs, a few attacks each.
//! * shared with `udpft-bench` (`tools/bench/`): `children` (starting and stopping servers),
//!   `procfs`, `results` (tables), `units` (sizes), `workload` (test files).

#![deny(unsafe_code)]

mod attacks;
mod blast;
mod bounds;
mod legit;
mod measure;
mod merge;
mod observe;
mod proven;
mod requests;
mod sink;

// Shared with udpft-bench; not every function of them is used here.
#[allow(dead_code)]
#[path = "../bench/children.rs"]
mod children;
#[allow(dead_code)]
#[path = "../bench/procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "../bench/results.rs"]
mod results;
#[allow(dead_code)]
#[path = "../bench/units.rs"]
mod units;
#[allow(dead_code)]
#[path = "../bench/workload.rs"]
mod workload;

use attacks::{Attack, Files, Shape};
use bounds::{check_target, Budget};
use clap::{Args, Parser, Subcommand};
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use udpft::proto::wire::Kind;

const AFTER_HELP: &str = "\
Traffic goes to loopback only (127.0.0.0/8, ::1); every flood stops by itself at its count or
its time, whichever comes first.

Examples:
  udpft-flood run --attack pending --target 127.0.0.1:6969 --rate 10000 --seconds 5
  udpft-flood run --attack resume --target 127.0.0.1:6969 --large big.iso:1073741824
  udpft-flood measure --attack pending,drip --model table,fork --rounds 3 --out docs/bench
  udpft-flood measure --out docs/bench          # every attack against every model";

/// Bounded floods against a udpft server on loopback (issue 9 §2).
#[derive(Parser, Debug)]
#[command(name = "udpft-flood", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One flood against a running server; prints what was sent and received.
    Run(RunArgs),
    /// Every attack against every model (fresh servers), with a legitimate client timed
    /// with and without the flood; writes NAME.csv, NAME.json and NAME.md to --out.
    Measure(measure::MeasureArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The attack.
    #[arg(long)]
    attack: Attack,
    /// The server (loopback only).
    #[arg(long, default_value = "127.0.0.1:6969")]
    target: SocketAddr,
    /// Datagrams a second, all threads together.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Longest run, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    seconds: f64,
    /// Most datagrams.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// A file of the server's library (for Gets and drips).
    #[arg(long, default_value = "welcome.txt")]
    file: String,
    /// A large file of the library and its size in bytes, NAME:SIZE (resume).
    #[arg(long, value_name = "NAME:SIZE", value_parser = parse_large)]
    large: Option<(String, u64)>,
    /// Seed of the flood's random choices.
    #[arg(long, default_value_t = 9)]
    seed: u64,
    #[command(flatten)]
    shape: Shape,
}

fn parse_large(text: &str) -> Result<(String, u64), String> {
    let (name, size) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not NAME:SIZE"))?;
    let size = units::parse_size(size)?;
    Ok((name.to_owned(), size))
}

fn run(args: &RunArgs) -> io::Result<()> {
    let target = check_target(args.target).map_err(io::Error::other)?;
    let seconds = Duration::from_secs_f64(args.seconds.clamp(0.0, bounds::MAX_SECONDS));
    let budget = Arc::new(Budget::new(args.count, seconds).map_err(io::Error::other)?);
    let files = Files {
        name: args.file.clone(),
        large: args.large.clone(),
    };
    let scripts =
        attacks::scripts(args.attack, &args.shape, &files, args.seed).map_err(io::Error::other)?;
    eprintln!(
        "udpft-flood: {} against {target} at {:.0}/s for at most {:.1} s or {} datagrams",
        args.attack,
        args.rate,
        seconds.as_secs_f64(),
        args.count
    );
    let tally = blast::run(target, scripts, args.rate, &budget)?;
    println!(
        "sent {} datagrams ({} bytes, {} answers, {} send errors) in {:.2} s: {:.0}/s",
        tally.sent,
        tally.sent_bytes,
        tally.answers,
        tally.send_errors,
        tally.elapsed.as_secs_f64(),
        tally.rate()
    );
    println!(
        "received {} datagrams ({} bytes): {:.3} per datagram sent, {:.3}× the bytes sent",
        tally.received,
        tally.received_bytes,
        tally.replies_per_datagram(),
        tally.amplification()
    );
    let kinds = [Kind::Accept, Kind::Data, Kind::Ack, Kind::Done, Kind::Error];
    let by_kind: Vec<String> = kinds
        .iter()
        .map(|k| format!("{}={}", k.name(), tally.received_of(*k)))
        .collect();
    println!("received by kind: {}", by_kind.join(" "));
    println!("budget used: {} of {}", budget.taken(), args.count);
    for (name, value) in &tally.notes {
        println!("{name}={value}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run(args),
        Command::Measure(args) => measure::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udpft-flood: {e}");
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
    fn run_refuses_a_target_off_loopback_before_sending() {
        let cli = Cli::parse_from([
            "udpft-flood",
            "run",
            "--attack",
            "pending",
            "--target",
            "10.1.2.3:6969",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("run expected");
        };
        let error = run(&args).expect_err("refused");
        assert!(
            error.to_string().contains("not a loopback address"),
            "{error}"
        );
    }

    #[test]
    fn run_stops_at_its_count() {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = sink.local_addr().unwrap().to_string();
        let cli = Cli::parse_from([
            "udpft-flood",
            "run",
            "--attack",
            "strangers",
            "--target",
            &target,
            "--rate",
            "100000",
            "--count",
            "500",
            "--seconds",
            "30",
            "--sockets",
            "8",
            "--addresses",
            "4",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("run expected");
        };
        let started = std::time::Instant::now();
        run(&args).unwrap();
        // 500 datagrams at 100,000/s: the count, not the 30 s, ended it.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn measure_defaults_to_every_attack_and_model() {
        let cli = Cli::parse_from(["udpft-flood", "measure"]);
        let Command::Measure(args) = cli.command else {
            panic!("measure expected");
        };
        assert_eq!(args.attacks, Attack::ALL.to_vec());
        assert_eq!(args.models, udpft::server::Model::ALL.to_vec());
        assert_eq!(args.rate, 10_000.0);
    }

    #[test]
    fn large_files_are_named_with_their_size() {
        assert_eq!(
            parse_large("big.iso:64MiB"),
            Ok(("big.iso".into(), 64 << 20))
        );
        assert!(parse_large("big.iso").is_err());
    }
}
