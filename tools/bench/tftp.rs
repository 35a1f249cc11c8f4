//! `udpft-bench tftp`: one TFTP client, two TFTP servers. The same client program (curl, or
//! atftp for RFC 7440 windowsize) downloads the same file from tftpd-hpa (`in.tftpd`) and
//! from `udpft serve --tftp`, in alternating rounds, directly or through `lossy-proxy` at
//! each `--loss` rate. So the figure is about the servers alone: the same client asks for
//! the same options (block size, and with atftp a window) of both.
//!
//! Through the proxy the servers differ in how they answer: udpft answers from its listening
//! port, tftpd-hpa from a fresh port per transfer, which the proxy follows
//! (`--follow-reply-port`, used for both so both pay the same relay). tftpd-hpa retransmits
//! on a fixed timer (the `timeout` the client asks, 1 s here; curl asks for that when its
//! `--connect-timeout` is at most 5 s, and 6 s by default), so at 5 % loss each way a 64 MiB
//! file would take over an hour: at loss, tftpd-hpa's cell may use a smaller file
//! (`--lossy-tftpd-size`), and the table says which file each figure moved.
//!
//! Each round downloads once per window and server, in an order that rotates from round to
//! round; every copy is compared byte for byte; the table shows medians over rounds, and
//! each ratio is the median of each round's own ratio. Timing and CPU as in `tftpd` (the
//! client process's wall time; tftpd-hpa's transfer children sampled from `/proc`).

use crate::children::{locate_bin, start_proxy, start_server, ProxyChild, ProxySpec, ServerSpec};
use crate::download::{secs, Budget};
use crate::loss::parse_rate;
use crate::procfs;
use crate::results::{finish, human_bytes, median, Cell, OutputArgs, Table};
use crate::tftpd::{locate_program, run_client, start_tftpd, ClientRun, Run};
use crate::units::parse_size;
use crate::workload::{Scratch, TestLibrary};
use clap::{Args, ValueEnum};
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// curl asks for `timeout` = its connect timeout ÷ 5, at least 1 s: 1 s, tftpd-hpa's own
/// default retransmission timer, rather than the 6 s of curl's default.
const CURL_CONNECT_TIMEOUT_SECS: &str = "5";

/// The TFTP client both servers are measured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TftpClient {
    /// `curl tftp://…` (asks for blksize, tsize and timeout; no windowsize).
    Curl,
    /// `atftp` (asks for blksize and, with `--windows`, windowsize: RFC 7440).
    Atftp,
}

impl TftpClient {
    fn name(self) -> &'static str {
        match self {
            Self::Curl => "curl",
            Self::Atftp => "atftp",
        }
    }
}

/// Arguments of `tftp`.
#[derive(Args, Debug)]
pub struct TftpArgs {
    /// Size of the test file (units: B, KB, MB, GB, KiB, MiB, GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// The file tftpd-hpa serves at a loss rate above 0 (its 1 s timer makes every loss cost
    /// a second); udpft still serves --size.
    #[arg(long, default_value = "512KiB", value_parser = parse_size)]
    pub lossy_tftpd_size: u64,
    /// The client both servers are measured with.
    #[arg(long, value_enum, default_value_t = TftpClient::Curl)]
    pub client: TftpClient,
    /// The block size the client asks for (RFC 2348).
    #[arg(long, default_value_t = 1468, value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub blksize: u16,
    /// Windows the client asks for, comma-separated (RFC 7440; atftp only; 1 = lockstep).
    #[arg(long, default_value = "1", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=65535))]
    pub windows: Vec<u16>,
    /// Loss rates each way through lossy-proxy, comma-separated (`5%` or `0.05`); 0
    /// connects directly.
    #[arg(long, default_value = "0", value_delimiter = ',', value_parser = parse_rate)]
    pub loss: Vec<f64>,
    /// Rounds per loss rate (each: every window × server once); medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// `udpft serve --busy-poll` (µs; 0 = off).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll: u64,
    /// A client run is killed (and the benchmark fails) after this many seconds.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub timeout: f64,
    /// Stop starting new rounds after this many seconds overall.
    #[arg(long, default_value_t = 900.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub udpft_bin: Option<PathBuf>,
    /// The `lossy-proxy` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub proxy_bin: Option<PathBuf>,
    /// tftpd-hpa's server (default: `in.tftpd` on PATH, /usr/sbin or /sbin).
    #[arg(long, value_name = "PATH")]
    pub tftpd_bin: Option<PathBuf>,
    /// The client binary (default: `curl` or `atftp` on PATH).
    #[arg(long, value_name = "PATH")]
    pub client_bin: Option<PathBuf>,
    /// Seed of the test files' bytes and of the proxy's losses.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also print every round's numbers.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The two servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Tftpd,
    Udpft,
}

impl Server {
    const BOTH: [Server; 2] = [Server::Tftpd, Server::Udpft];

    fn index(self) -> usize {
        self as usize
    }

    /// What the tables call it.
    fn name(self) -> &'static str {
        match self {
            Self::Tftpd => "tftpd-hpa",
            Self::Udpft => "udpft serve --tftp",
        }
    }
}

/// One round of one loss rate: per window, a run per server (indexed by [`Server::index`]).
type LossRound = Vec<[Run; 2]>;

/// What one loss rate's cell reaches: where each server is addressed, and the proxies.
struct LossCell {
    targets: [SocketAddr; 2],
    proxies: Vec<ProxyChild>,
}

/// What every run needs.
struct Bench<'a> {
    args: &'a TftpArgs,
    client: PathBuf,
    /// The big file, and the smaller one tftpd-hpa serves at loss.
    big: TestLibrary,
    small: TestLibrary,
    dest: PathBuf,
    pids: [u32; 2],
    limit: Duration,
}

impl Bench<'_> {
    /// The library file `server` serves at `loss`.
    fn file(&self, server: Server, loss: f64) -> &TestLibrary {
        if server == Server::Tftpd && loss > 0.0 {
            &self.small
        } else {
            &self.big
        }
    }

    fn command(&self, target: SocketAddr, name: &str, window: u16) -> Command {
        let mut command = Command::new(&self.client);
        command.args(client_args(
            self.args.client,
            &Ask {
                blksize: self.args.blksize,
                window,
                limit: self.limit,
            },
            &self.dest,
            target,
            name,
        ));
        command
    }

    fn run(&self, server: Server, target: SocketAddr, window: u16, loss: f64) -> io::Result<Run> {
        let library = self.file(server, loss);
        let what = format!(
            "{} (window {window}) against {}",
            self.args.client.name(),
            server.name()
        );
        let original = library.file();
        run_client(
            &ClientRun {
                what: &what,
                server_pid: self.pids[server.index()],
                sample_children: server == Server::Tftpd,
                original: &original,
                dest: &self.dest,
                limit: Some(self.limit),
            },
            self.command(target, &library.name, window),
        )
    }

    /// One round: every window × server once, in an order rotated by `round`.
    fn round(&self, cell: &LossCell, loss: f64, round: u32) -> io::Result<LossRound> {
        let mut order: Vec<(usize, Server)> = (0..self.args.windows.len())
            .flat_map(|w| Server::BOTH.map(|s| (w, s)))
            .collect();
        let first = round as usize % order.len();
        order.rotate_left(first);
        let mut runs: Vec<[Option<Run>; 2]> = vec![[None, None]; self.args.windows.len()];
        for (w, server) in order {
            let window = self.args.windows[w];
            runs[w][server.index()] =
                Some(self.run(server, cell.targets[server.index()], window, loss)?);
        }
        Ok(runs
            .into_iter()
            .map(|pair| pair.map(|r| r.expect("measured")))
            .collect())
    }
}

/// What the client asks of the server, and how long it may take.
struct Ask {
    blksize: u16,
    window: u16,
    limit: Duration,
}

/// The arguments that make `client` download `name` from `target` into `dest`.
fn client_args(
    client: TftpClient,
    ask: &Ask,
    dest: &Path,
    target: SocketAddr,
    name: &str,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(a.into());
    match client {
        TftpClient::Curl => {
            for a in ["--silent", "--show-error", "--tftp-blksize"] {
                push(a);
            }
            push(&ask.blksize.to_string());
            push("--connect-timeout");
            push(CURL_CONNECT_TIMEOUT_SECS);
            push("--max-time");
            push(&format!("{:.0}", ask.limit.as_secs_f64().max(1.0)));
            push("--output");
            args.push(dest.into());
            args.push(format!("tftp://{target}/{name}").into());
        }
        TftpClient::Atftp => {
            push("--option");
            push(&format!("blksize {}", ask.blksize));
            push("--option");
            push(&format!("windowsize {}", ask.window));
            for a in ["-g", "-r", name, "-l"] {
                push(a);
            }
            args.push(dest.into());
            args.push(target.ip().to_string().into());
            args.push(target.port().to_string().into());
        }
    }
    args
}

/// Runs the comparison and prints its tables.
///
/// # Errors
/// If a program is missing, a child cannot be started, a transfer fails or its copy
/// differs, or a file cannot be written.
pub fn run(args: &TftpArgs) -> io::Result<()> {
    let budget = Budget::new(args.max_seconds)?;
    let load_before = procfs::load_text();
    if args.loss.is_empty() || args.windows.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--loss and --windows need at least one value each",
        ));
    }
    if args.client == TftpClient::Curl && args.windows != [1] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "curl does not ask for windowsize: use --client atftp for --windows",
        ));
    }
    if procfs::effective_uid() != Some(0) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "in.tftpd -s chroots into the library, which needs root: run this as root",
        ));
    }
    let tftpd_bin = locate_program("in.tftpd", "tftpd-hpa", args.tftpd_bin.as_deref())?;
    let client_name = args.client.name();
    let client = locate_program(client_name, client_name, args.client_bin.as_deref())?;
    let udpft = locate_bin("udpft", args.udpft_bin.as_deref())?;
    let proxy_bin = if args.loss.iter().any(|&l| l > 0.0) {
        Some(locate_bin("lossy-proxy", args.proxy_bin.as_deref())?)
    } else {
        None
    };
    let scratch = Scratch::create()?;
    eprintln!(
        "udpft-bench: writing {} and {} test files in {}",
        human_bytes(args.size),
        human_bytes(args.lossy_tftpd_size),
        scratch.path().display()
    );
    let big = TestLibrary::create(scratch.path(), args.size, args.seed)?;
    let small = TestLibrary::create(scratch.path(), args.lossy_tftpd_size, args.seed)?;
    let mut tftpd = start_tftpd(&tftpd_bin, &big.root, &scratch.path().join("tftpd.log"))?;
    let mut server = start_server(
        &ServerSpec {
            bin: udpft,
            root: big.root.clone(),
            extra_args: vec!["--tftp".into(), format!("--busy-poll={}", args.busy_poll)],
        },
        &scratch.path().join("udpft.log"),
    )?;
    eprintln!(
        "udpft-bench: in.tftpd is pid {} on {}, udpft serve --tftp pid {} on {}",
        tftpd.0.pid(),
        tftpd.1,
        server.guard.pid(),
        server.addr
    );
    let limit = secs(args.timeout, "--timeout")?;
    let bench = Bench {
        args,
        client,
        dest: scratch.path().join("copy.bin"),
        big,
        small,
        pids: [tftpd.0.pid(), server.guard.pid()],
        limit,
    };
    let direct = [tftpd.1, server.addr];

    let mut report = Report::new(args);
    'loss: for (cell_no, &loss) in args.loss.iter().enumerate() {
        let cell = match &proxy_bin {
            Some(bin) if loss > 0.0 => {
                let mut proxies = Vec::new();
                for server in Server::BOTH {
                    proxies.push(start_proxy(
                        &ProxySpec {
                            bin: bin.clone(),
                            upstream: direct[server.index()],
                            loss,
                            seed: args.seed + cell_no as u64,
                            lifetime: Duration::from_secs_f64(args.max_seconds) + limit,
                            extra_args: vec!["--follow-reply-port".into()],
                        },
                        scratch.path(),
                        &format!("{cell_no}-{server:?}"),
                    )?);
                }
                LossCell {
                    targets: [proxies[0].addr, proxies[1].addr],
                    proxies,
                }
            }
            _ => LossCell {
                targets: direct,
                proxies: Vec::new(),
            },
        };
        let mut rounds: Vec<LossRound> = Vec::new();
        for round in 0..args.rounds {
            if budget.left().is_zero() {
                if rounds.is_empty() {
                    break 'loss;
                }
                break;
            }
            let r = bench.round(&cell, loss, round)?;
            report.every_round(&bench, loss, round, &r);
            rounds.push(r);
        }
        report.summarize(&bench, loss, &rounds);
        for (server, proxy) in Server::BOTH.into_iter().zip(cell.proxies) {
            let stats = proxy.stop()?;
            report.proxies.push(vec![
                Cell::text(percent(loss)),
                Cell::text(server.name()),
                Cell::int(stats.get("up.offered")),
                Cell::int(stats.get("up.dropped")),
                Cell::int(stats.get("down.offered")),
                Cell::int(stats.get("down.dropped")),
                Cell::int(stats.get("foreign_replies")),
            ]);
        }
    }
    tftpd.0.stop()?;
    server.guard.stop()?;
    report.print(args);
    println!(
        "\nLoad average (1, 5, 15 min) before {load_before}, after {}; {} CPU(s).",
        procfs::load_text(),
        procfs::cpus()
    );
    finish(
        &report.summary,
        &report.every_round,
        args.verbose,
        &args.output,
    )
}

/// A loss rate as a percentage, to a tenth of a percent (`5 %`, `0.5 %`).
fn percent(loss: f64) -> String {
    format!("{} %", (loss * 1000.0).round() / 10.0)
}

/// A goodput in MB/s for the tables: slow ones (tftpd-hpa under loss) with enough digits
/// to tell apart.
fn rate(mb_s: f64) -> Cell {
    Cell::num(mb_s, if mb_s < 1.0 { 4 } else { 2 })
}

/// The tables as they fill.
struct Report {
    summary: Table,
    every_round: Table,
    proxies: Table,
}

impl Report {
    fn new(args: &TftpArgs) -> Self {
        let client = args.client.name();
        Self {
            summary: Table::new(&[
                "loss each way",
                "client",
                "windowsize",
                "rounds",
                "tftpd-hpa file",
                "tftpd-hpa MB/s",
                "udpft file",
                "udpft MB/s",
                "udpft ÷ tftpd-hpa",
                "tftpd-hpa ÷ its window 1",
                "udpft ÷ its window 1",
                "in.tftpd CPU ms/MB",
                "udpft serve CPU ms/MB",
                &format!("{client} CPU ms/MB (tftpd-hpa, udpft)"),
            ]),
            every_round: Table::new(&[
                "loss each way",
                "round",
                "windowsize",
                "tftpd-hpa MB/s",
                "udpft MB/s",
                "udpft ÷ tftpd-hpa",
            ]),
            proxies: Table::new(&[
                "loss each way",
                "server",
                "up offered",
                "up dropped",
                "down offered",
                "down dropped",
                "replies from other ports",
            ]),
        }
    }

    fn every_round(&mut self, bench: &Bench, loss: f64, round: u32, r: &LossRound) {
        for (runs, &window) in r.iter().zip(&bench.args.windows) {
            let [tftpd, udpft] = runs;
            eprintln!(
                "udpft-bench: loss {} round {}/{} window {window}: tftpd-hpa {:.4} MB/s, udpft {:.2} MB/s: {:.2}×",
                percent(loss),
                round + 1,
                bench.args.rounds,
                tftpd.goodput,
                udpft.goodput,
                udpft.goodput / tftpd.goodput
            );
            self.every_round.push(vec![
                Cell::text(percent(loss)),
                Cell::int(u64::from(round + 1)),
                Cell::int(u64::from(window)),
                rate(tftpd.goodput),
                rate(udpft.goodput),
                Cell::num(udpft.goodput / tftpd.goodput, 2),
            ]);
        }
    }

    fn summarize(&mut self, bench: &Bench, loss: f64, rounds: &[LossRound]) {
        let med = |f: &dyn Fn(&LossRound) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        let windows = &bench.args.windows;
        let lockstep = windows.iter().position(|&w| w == 1);
        let mb = |s: Server| bench.file(s, loss).size as f64 / 1e6;
        let (t, u) = (Server::Tftpd.index(), Server::Udpft.index());
        for (w, &window) in windows.iter().enumerate() {
            let vs_lockstep = |s: usize| match lockstep {
                Some(one) if one != w => {
                    Cell::num(med(&|r| r[w][s].goodput / r[one][s].goodput), 2)
                }
                _ => Cell::missing(),
            };
            let client_cpu = format!(
                "{:.2}, {:.2}",
                med(&|r| r[w][t].client_cpu * 1e3 / mb(Server::Tftpd)),
                med(&|r| r[w][u].client_cpu * 1e3 / mb(Server::Udpft))
            );
            self.summary.push(vec![
                Cell::text(percent(loss)),
                Cell::text(bench.args.client.name()),
                Cell::int(u64::from(window)),
                Cell::int(rounds.len() as u64),
                Cell::text(human_bytes(bench.file(Server::Tftpd, loss).size)),
                rate(med(&|r| r[w][t].goodput)),
                Cell::text(human_bytes(bench.file(Server::Udpft, loss).size)),
                rate(med(&|r| r[w][u].goodput)),
                Cell::num(med(&|r| r[w][u].goodput / r[w][t].goodput), 2),
                vs_lockstep(t),
                vs_lockstep(u),
                Cell::num(med(&|r| r[w][t].server_cpu * 1e3 / mb(Server::Tftpd)), 2),
                Cell::num(med(&|r| r[w][u].server_cpu * 1e3 / mb(Server::Udpft)), 2),
                Cell::text(client_cpu),
            ]);
        }
    }

    fn print(&self, args: &TftpArgs) {
        println!(
            "## One TFTP client ({}, blksize {}), two servers: tftpd-hpa and `udpft serve --tftp` (loopback, medians of {} rounds)\n",
            args.client.name(),
            args.blksize,
            args.rounds
        );
        print!("{}", self.summary.to_markdown());
        println!(
            "\nMB = 10^6 bytes; goodput = file bytes / the client process's wall time (start to \
             exit), every copy verified byte for byte. Both servers are asked the same options \
             by the same client; curl runs with --connect-timeout {CURL_CONNECT_TIMEOUT_SECS}, \
             so it asks for a 1 s timeout (tftpd-hpa's own default timer). tftpd-hpa 5.2 does \
             not implement windowsize: it leaves the option out of its OACK and the client \
             falls back to lockstep. At a loss rate above 0 both go through lossy-proxy \
             (--follow-reply-port for both), and tftpd-hpa may move a smaller file \
             (--lossy-tftpd-size): goodput is a rate, so the ratio still compares the servers. \
             Each ratio is the median over rounds of that round's own ratio. CPU ms/MB as in \
             `udpft-bench tftpd` (10 ms clock ticks; small files read as 0 or 10 ms)."
        );
        if !self.proxies.is_empty() {
            println!("\n### What the proxies did (over all rounds)\n");
            print!("{}", self.proxies.to_markdown());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_index_their_runs_in_order() {
        assert_eq!(Server::BOTH.map(Server::index), [0, 1]);
    }

    #[test]
    fn both_clients_ask_for_the_block_size_and_atftp_for_the_window() {
        let ask = Ask {
            blksize: 1468,
            window: 16,
            limit: Duration::from_secs(300),
        };
        let target: SocketAddr = "127.0.0.1:6969".parse().unwrap();
        let text = |client| {
            client_args(client, &ask, Path::new("/tmp/copy"), target, "f.bin")
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text(TftpClient::Curl),
            "--silent --show-error --tftp-blksize 1468 --connect-timeout 5 --max-time 300 \
             --output /tmp/copy tftp://127.0.0.1:6969/f.bin"
        );
        assert_eq!(
            text(TftpClient::Atftp),
            "--option blksize 1468 --option windowsize 16 -g -r f.bin -l /tmp/copy 127.0.0.1 6969"
        );
    }

    #[test]
    fn loss_rates_print_as_percent() {
        assert_eq!(percent(0.05), "5 %");
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(percent(0.005), "0.5 %");
    }
}
