//! `udpft-bench tftpd`: udpft beside the TFTP server most Linux systems ship, tftpd-hpa
//! (`in.tftpd`), over the same file on loopback, each with a real client as a separate
//! process: curl (`curl tftp://… --tftp-blksize N`) against `in.tftpd`, and `udpft get`
//! against `udpft serve`. TFTP (RFC 1350, with the block-size option of RFC 2348) is
//! stop-and-wait like udpft, so block size and chunk size are matched pairwise (1428 against
//! 1430, 65464 against 65485 by default).
//!
//! Each round downloads the file once with curl and once per `--busy-poll` value with
//! `udpft get`, in an order that rotates from round to round; every copy is compared with
//! the original byte for byte; the table shows medians over rounds, and each ratio is the
//! median of each round's own udpft ÷ tftpd-hpa. A transfer's time is its client process's
//! wall time, from start to exit, for both alike. CPU per MB is the server's and the
//! client's. The client's comes from `getrusage` once it has exited; `udpft serve`'s from
//! its `/proc` entry. tftpd-hpa serves each transfer in a child process and ignores
//! SIGCHLD, so the kernel reaps those children without adding their times to the parent's:
//! their CPU is sampled from their own `/proc` entries every [`SAMPLE_EVERY`] while they
//! run, which misses up to that much (plus a clock tick) per transfer.
//!
//! `in.tftpd` is started by this process on a free loopback port in the foreground (`-L`),
//! confined to the scratch library (`-s`, which needs root: it chroots), and stopped by its
//! PID.

use crate::children::{
    free_udp_port, locate_bin, start_server, ChildGuard, ServerChild, ServerSpec,
};
use crate::download::{secs, Budget};
use crate::procfs;
use crate::results::{finish, human_bytes, mb_per_s, median, Cell, OutputArgs, Table};
use crate::units::parse_size;
use crate::workload::{same_bytes, Scratch, TestLibrary};
use clap::Args;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use udpft::proto::wire::{MAX_CHUNK, MIN_CHUNK};

/// How long `in.tftpd` gets to start answering.
const TFTPD_READY_WITHIN: Duration = Duration::from_secs(5);

/// How long tftpd-hpa's transfer child gets to exit after its client did.
const CHILD_EXIT_WITHIN: Duration = Duration::from_secs(2);

/// How often the CPU time of tftpd-hpa's transfer children is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// `udpft get --timeout`: give up after this long without progress.
const UDPFT_STALL_SECS: &str = "10";

/// The block sizes RFC 2348 allows.
const BLKSIZE_RANGE: std::ops::RangeInclusive<u16> = 8..=65464;

/// Arguments of `tftpd`.
#[derive(Args, Debug)]
pub struct TftpdArgs {
    /// Size of the test file (units: B, KB, MB, GB, KiB, MiB, GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Pairs BLKSIZE:CHUNK to compare, comma-separated: the TFTP block size curl asks for
    /// and the udpft chunk size.
    #[arg(long, default_value = "1428:1430,65464:65485", value_delimiter = ',', value_parser = parse_pair)]
    pub pairs: Vec<(u16, u16)>,
    /// Busy-poll caps of `udpft serve` and `udpft get`, in µs, comma-separated (0 = off):
    /// a server child and a row each.
    #[arg(long, default_value = "0,50", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll: Vec<u64>,
    /// Rounds per pair (each: every transfer once); medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub udpft_bin: Option<PathBuf>,
    /// tftpd-hpa's server (default: `in.tftpd` on PATH, /usr/sbin or /sbin).
    #[arg(long, value_name = "PATH")]
    pub tftpd_bin: Option<PathBuf>,
    /// The curl binary (default: `curl` on PATH).
    #[arg(long, value_name = "PATH")]
    pub curl_bin: Option<PathBuf>,
    /// curl gives up after this many seconds (`--max-time`); `udpft get` gives up after
    /// 10 s without progress.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub timeout: f64,
    /// Stop starting new rounds after this many seconds overall.
    #[arg(long, default_value_t = 1800.0, value_name = "SECS")]
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

/// Parses `BLKSIZE:CHUNK`, each within its protocol's range.
fn parse_pair(text: &str) -> Result<(u16, u16), String> {
    let (blksize, chunk) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not BLKSIZE:CHUNK (e.g. 1428:1430)"))?;
    let number = |t: &str| {
        t.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{t}` in `{text}` is not a size"))
    };
    let (blksize, chunk) = (number(blksize)?, number(chunk)?);
    if !BLKSIZE_RANGE.contains(&blksize) {
        return Err(format!(
            "block size {blksize} is outside 8..=65464 (RFC 2348)"
        ));
    }
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        return Err(format!(
            "chunk {chunk} is outside {MIN_CHUNK}..={MAX_CHUNK}"
        ));
    }
    Ok((blksize, chunk))
}

/// A program from `explicit`, else the first `name` on PATH or in the system folders.
pub fn locate_program(name: &str, package: &str, explicit: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} not found (Debian package `{package}`: apt-get install {package})"),
            )
        })
}

/// The bytes of a TFTP read request for `name` in octet mode (RFC 1350 §5).
pub fn read_request(name: &str) -> Vec<u8> {
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(name.as_bytes());
    rrq.push(0);
    rrq.extend_from_slice(b"octet\0");
    rrq
}

/// Starts `in.tftpd` serving `root` on a free loopback port and waits until it answers a
/// request (for a file that does not exist: an ERROR packet, opcode 5).
pub fn start_tftpd(bin: &Path, root: &Path, log: &Path) -> io::Result<(ChildGuard, SocketAddr)> {
    let addr = free_udp_port()?;
    let mut command = Command::new(bin);
    // -u root: the chroot (-s) needs root, and the scratch files belong to us.
    command
        .args(["-L", "-u", "root", "-a", &addr.to_string(), "-s"])
        .arg(root);
    let mut guard = ChildGuard::spawn("in.tftpd", command, log)?;
    let probe = UdpSocket::bind("127.0.0.1:0")?;
    probe.set_read_timeout(Some(Duration::from_millis(50)))?;
    let rrq = read_request("no-such-file-udpft-bench");
    let deadline = Instant::now() + TFTPD_READY_WITHIN;
    let mut buf = [0u8; 516];
    while Instant::now() < deadline {
        if let Some(status) = guard.exited() {
            return Err(io::Error::other(format!(
                "in.tftpd exited at start ({status}): {}",
                guard.log_tail()
            )));
        }
        probe.send_to(&rrq, addr)?;
        if let Ok((len, _)) = probe.recv_from(&mut buf) {
            if len >= 2 && buf[..2] == [0, 5] {
                return Ok((guard, addr));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("in.tftpd on {addr} did not answer within {TFTPD_READY_WITHIN:?}"),
    ))
}

/// Samples the CPU time of `parent`'s child processes every [`SAMPLE_EVERY`] until told to
/// stop; the thread returns the sum over every child seen of its last sample.
struct ChildrenCpu {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<f64>,
}

impl ChildrenCpu {
    fn start(parent: u32) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("cpu-sampler".into())
            .spawn(move || {
                let mut seen: HashMap<u32, f64> = HashMap::new();
                loop {
                    let last_round = stopped.load(Ordering::Relaxed);
                    for child in procfs::children(parent) {
                        if let Ok(cpu) = procfs::cpu_time(child) {
                            seen.insert(child, cpu.own);
                        }
                    }
                    if last_round {
                        break seen.values().sum();
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(f64::NAN)
    }
}

/// One client run: its goodput over its wall time and the CPU it and the server used.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// File bytes over the client process's wall time, MB/s.
    pub goodput: f64,
    /// Server CPU seconds over the run.
    pub server_cpu: f64,
    /// Client CPU seconds.
    pub client_cpu: f64,
}

/// Where a client run writes, and what its copy must equal.
pub struct ClientRun<'a> {
    /// What the error messages call the client.
    pub what: &'a str,
    /// The server's process, whose CPU time is measured.
    pub server_pid: u32,
    /// The server works in child processes (tftpd-hpa): sample their CPU time while they run.
    pub sample_children: bool,
    /// The original file.
    pub original: &'a Path,
    /// Where the client writes its copy (removed before and after).
    pub dest: &'a Path,
    /// Kill the client after this long (for clients without a time limit of their own);
    /// `None`: a blocking wait.
    pub limit: Option<Duration>,
}

/// How often a client with a [`ClientRun::limit`] is checked for its exit.
const POLL_EXIT_EVERY: Duration = Duration::from_millis(2);

/// Runs `command` (a client writing [`ClientRun::dest`]) to its exit, checks the copy
/// against the original, and measures.
///
/// # Errors
/// If the client cannot start, fails, outlives its limit, or its copy differs.
pub fn run_client(run: &ClientRun, mut command: Command) -> io::Result<Run> {
    let (what, server_pid, dest) = (run.what, run.server_pid, run.dest);
    let _ = std::fs::remove_file(dest);
    let sampler = run
        .sample_children
        .then(|| ChildrenCpu::start(server_pid))
        .transpose()?;
    let server_before = procfs::cpu_time(server_pid)?.total();
    let client_before = procfs::reaped_children_cpu()?;
    let started = Instant::now();
    let log = dest.with_extension("client.log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {what}: {e}")))?;
    let status = match run.limit {
        // Clients that bound their own time (curl --max-time, udpft's no-progress
        // timeout) get a blocking wait; polling would steal a core from the transfer.
        None => child.wait()?,
        Some(limit) => loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > limit {
                // Child::kill sends SIGKILL to this child's PID only.
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{what} did not finish within {:.0} s", limit.as_secs_f64()),
                ));
            }
            std::thread::sleep(POLL_EXIT_EVERY);
        },
    };
    let elapsed = started.elapsed();
    let client_cpu = procfs::reaped_children_cpu()? - client_before;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(io::Error::other(format!(
            "{what} failed ({status}): {}",
            text.trim()
        )));
    }
    let mut server_cpu = procfs::cpu_time(server_pid)?.total() - server_before;
    if let Some(sampler) = sampler {
        // Until the transfer child has finished its last work (and exited).
        let deadline = Instant::now() + CHILD_EXIT_WITHIN;
        while !procfs::children(server_pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(SAMPLE_EVERY);
        }
        server_cpu += sampler.finish();
    }
    if !same_bytes(run.original, dest)? {
        return Err(io::Error::other(format!(
            "{what}: the copy differs from the original"
        )));
    }
    std::fs::remove_file(dest)?;
    Ok(Run {
        goodput: mb_per_s(std::fs::metadata(run.original)?.len(), elapsed),
        server_cpu,
        client_cpu,
    })
}

/// One round of one pair: curl against tftpd-hpa, and `udpft get` per busy-poll value.
struct PairRound {
    tftp: Run,
    udpft: Vec<Run>,
}

/// The servers and what every transfer needs.
struct Bench<'a> {
    args: &'a TftpdArgs,
    library: TestLibrary,
    dest: PathBuf,
    curl: PathBuf,
    udpft: PathBuf,
    tftpd: (ChildGuard, SocketAddr),
    servers: Vec<ServerChild>,
    timeout: Duration,
}

impl Bench<'_> {
    /// Runs `command` to its exit, checks the copy, and measures.
    /// With `sample_children`, the server's CPU includes its children's, sampled while they
    /// run.
    fn client(
        &mut self,
        what: &str,
        command: Command,
        server_pid: u32,
        sample_children: bool,
    ) -> io::Result<Run> {
        let original = self.library.file();
        run_client(
            &ClientRun {
                what,
                server_pid,
                sample_children,
                original: &original,
                dest: &self.dest,
                limit: None,
            },
            command,
        )
    }

    fn curl(&mut self, blksize: u16) -> io::Result<Run> {
        let url = format!("tftp://{}/{}", self.tftpd.1, self.library.name);
        let mut command = Command::new(&self.curl);
        command
            .args(["--silent", "--show-error", "--tftp-blksize"])
            .arg(blksize.to_string())
            .arg("--max-time")
            .arg(self.timeout.as_secs().max(1).to_string())
            .arg("--output")
            .arg(&self.dest)
            .arg(url);
        let pid = self.tftpd.0.pid();
        self.client(
            &format!("curl --tftp-blksize {blksize}"),
            command,
            pid,
            true,
        )
    }

    fn udpft(&mut self, chunk: u16, server: usize) -> io::Result<Run> {
        let busy_poll = self.args.busy_poll[server];
        let mut command = Command::new(&self.udpft);
        command
            .arg("get")
            .arg(&self.library.name)
            .arg("--output")
            .arg(&self.dest)
            .arg("--no-resume")
            .arg("--server")
            .arg(self.servers[server].addr.to_string())
            .arg("--chunk")
            .arg(chunk.to_string())
            .arg("--timeout")
            .arg(UDPFT_STALL_SECS)
            .arg(format!("--busy-poll={busy_poll}"));
        let pid = self.servers[server].guard.pid();
        self.client(
            &format!("udpft get --chunk {chunk} --busy-poll {busy_poll}"),
            command,
            pid,
            false,
        )
    }

    /// One round: curl once, `udpft get` once per server, rotated by `round`.
    fn round(&mut self, (blksize, chunk): (u16, u16), round: u32) -> io::Result<PairRound> {
        // None: curl; Some(i): udpft against server i.
        let mut order: Vec<Option<usize>> = vec![None];
        order.extend((0..self.servers.len()).map(Some));
        let first = round as usize % order.len();
        order.rotate_left(first);
        let mut tftp = None;
        let mut udpft: Vec<Option<Run>> = vec![None; self.servers.len()];
        for step in order {
            match step {
                None => tftp = Some(self.curl(blksize)?),
                Some(i) => udpft[i] = Some(self.udpft(chunk, i)?),
            }
        }
        Ok(PairRound {
            tftp: tftp.expect("measured"),
            udpft: udpft.into_iter().map(|r| r.expect("measured")).collect(),
        })
    }
}

/// Runs the comparison and prints its table.
///
/// # Errors
/// If a program is missing, a server cannot be started, a transfer fails or its copy
/// differs, or a file cannot be written.
pub fn run(args: &TftpdArgs) -> io::Result<()> {
    let budget = Budget::new(args.max_seconds)?;
    let load_before = procfs::load_text();
    if args.pairs.is_empty() || args.busy_poll.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--pairs and --busy-poll need at least one value each",
        ));
    }
    if procfs::effective_uid() != Some(0) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "in.tftpd -s chroots into the library, which needs root: run this as root",
        ));
    }
    let tftpd_bin = locate_program("in.tftpd", "tftpd-hpa", args.tftpd_bin.as_deref())?;
    let curl = locate_program("curl", "curl", args.curl_bin.as_deref())?;
    let udpft = locate_bin("udpft", args.udpft_bin.as_deref())?;
    let scratch = Scratch::create()?;
    eprintln!(
        "udpft-bench: writing a {} test file in {}",
        human_bytes(args.size),
        scratch.path().display()
    );
    let library = TestLibrary::create(scratch.path(), args.size, args.seed)?;
    let tftpd = start_tftpd(&tftpd_bin, &library.root, &scratch.path().join("tftpd.log"))?;
    eprintln!(
        "udpft-bench: in.tftpd is pid {} on {}",
        tftpd.0.pid(),
        tftpd.1
    );
    let mut servers = Vec::new();
    for &busy_poll in &args.busy_poll {
        let server = start_server(
            &ServerSpec {
                bin: udpft.clone(),
                root: library.root.clone(),
                extra_args: vec![format!("--busy-poll={busy_poll}")],
            },
            &scratch.path().join(format!("server-bp{busy_poll}.log")),
        )?;
        eprintln!(
            "udpft-bench: udpft serve --busy-poll {busy_poll} is pid {} on {}",
            server.guard.pid(),
            server.addr
        );
        servers.push(server);
    }
    let mut bench = Bench {
        args,
        dest: scratch.path().join("copy.bin"),
        library,
        curl,
        udpft,
        tftpd,
        servers,
        timeout: secs(args.timeout, "--timeout")?,
    };

    let mut summary = Table::new(&[
        "blksize B",
        "chunk B",
        "busy-poll µs",
        "rounds",
        "tftpd-hpa + curl MB/s",
        "udpft MB/s",
        "udpft ÷ tftpd-hpa",
        "in.tftpd CPU ms/MB",
        "curl CPU ms/MB",
        "udpft serve CPU ms/MB",
        "udpft get CPU ms/MB",
    ]);
    let mut every_round = Table::new(&[
        "blksize B",
        "chunk B",
        "round",
        "busy-poll µs",
        "tftpd-hpa + curl MB/s",
        "udpft MB/s",
        "udpft ÷ tftpd-hpa",
    ]);
    let mb = args.size as f64 / 1e6;
    'pairs: for &pair in &args.pairs {
        let mut rounds: Vec<PairRound> = Vec::new();
        for round in 0..args.rounds {
            if budget.left().is_zero() {
                if rounds.is_empty() {
                    break 'pairs;
                }
                break;
            }
            let r = bench.round(pair, round)?;
            let tftp = &r.tftp;
            for (run, &busy_poll) in r.udpft.iter().zip(&args.busy_poll) {
                eprintln!(
                    "udpft-bench: {}:{} round {}/{}: tftpd-hpa {:.1} MB/s, udpft (busy-poll {busy_poll}) {:.1} MB/s: {:.2}×",
                    pair.0,
                    pair.1,
                    round + 1,
                    args.rounds,
                    tftp.goodput,
                    run.goodput,
                    run.goodput / tftp.goodput
                );
                every_round.push(vec![
                    Cell::int(u64::from(pair.0)),
                    Cell::int(u64::from(pair.1)),
                    Cell::int(u64::from(round + 1)),
                    Cell::int(busy_poll),
                    Cell::num(tftp.goodput, 1),
                    Cell::num(run.goodput, 1),
                    Cell::num(run.goodput / tftp.goodput, 2),
                ]);
            }
            rounds.push(r);
        }
        let med = |f: &dyn Fn(&PairRound) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        for (i, &busy_poll) in args.busy_poll.iter().enumerate() {
            summary.push(vec![
                Cell::int(u64::from(pair.0)),
                Cell::int(u64::from(pair.1)),
                Cell::int(busy_poll),
                Cell::int(rounds.len() as u64),
                Cell::num(med(&|r| r.tftp.goodput), 1),
                Cell::num(med(&|r| r.udpft[i].goodput), 1),
                Cell::num(med(&|r| r.udpft[i].goodput / r.tftp.goodput), 2),
                Cell::num(med(&|r| r.tftp.server_cpu * 1e3 / mb), 2),
                Cell::num(med(&|r| r.tftp.client_cpu * 1e3 / mb), 2),
                Cell::num(med(&|r| r.udpft[i].server_cpu * 1e3 / mb), 2),
                Cell::num(med(&|r| r.udpft[i].client_cpu * 1e3 / mb), 2),
            ]);
        }
    }
    bench.tftpd.0.stop()?;
    for server in &mut bench.servers {
        server.guard.stop()?;
    }

    println!(
        "## udpft beside tftpd-hpa (loopback, {} file, medians of {} rounds)\n",
        human_bytes(args.size),
        args.rounds
    );
    print!("{}", summary.to_markdown());
    println!(
        "\nMB = 10^6 bytes; goodput = file bytes / the client process's wall time (start to \
         exit), every copy verified byte for byte. tftpd-hpa: `in.tftpd -L -s` with curl \
         (`--tftp-blksize BLKSIZE`) as its client; udpft: `udpft serve --busy-poll N` with \
         `udpft get --chunk CHUNK --busy-poll N` (0 = off). The ratio is the median over \
         rounds of each round's udpft ÷ tftpd-hpa (the tftpd-hpa figure is the same for \
         every busy-poll row of a pair). CPU ms/MB = user + system time per MB: udpft serve's \
         from /proc, in.tftpd's transfer children's sampled from /proc every 5 ms while they \
         run (the kernel reaps them without adding to in.tftpd's times), the clients' from \
         getrusage; 10 ms clock ticks."
    );
    println!(
        "\nLoad average (1, 5, 15 min) before {load_before}, after {}; {} CPU(s).",
        procfs::load_text(),
        procfs::cpus()
    );
    finish(&summary, &every_round, args.verbose, &args.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_take_a_block_size_and_a_chunk_within_their_ranges() {
        assert_eq!(parse_pair("1428:1430"), Ok((1428, 1430)));
        assert_eq!(parse_pair(" 65464 : 65485 "), Ok((65464, 65485)));
        assert!(parse_pair("1428").is_err());
        assert!(parse_pair("4:1430").is_err());
        assert!(parse_pair("65465:1430").is_err());
        assert!(parse_pair("1428:65486").is_err());
        assert!(parse_pair("big:1430").is_err());
    }

    #[test]
    fn a_read_request_is_opcode_name_and_octet_mode() {
        assert_eq!(read_request("f"), b"\0\x01f\0octet\0");
    }
}
