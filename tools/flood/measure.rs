//! `udpft-flood measure`: each attack against each server model, judged by what a
//! legitimate client sees. For every (attack, model) a fresh `udpft serve` child serves a
//! library made for the attack; then, round after round, the client's `ls` and 4 MiB `get`
//! are timed once with no flood and once during the flood (alternating, so both see the
//! same machine), while the server's memory, descriptors, threads, children, temporary
//! files and CPU are sampled and its `--stats-every` line is read. After the last round the
//! flood's leftovers (unproven grants) are left to expire and the memory is read again.
//!
//! The verdict holds each row to issue 9's targets: `ls` and `get` within 2× of unloaded,
//! at ≥ 10,000 datagrams/s for the unproven floods; peak RSS under 64 MiB and back to
//! baseline after expiry; no descriptor, temporary file, thread or process per unproven
//! request. The loop model serves one client at a time by design: its rows are reported,
//! not judged.

use crate::attacks::{self, Attack, Files, Shape};
use crate::blast::{self, Tally};
use crate::bounds::{Budget, MAX_COUNT};
use crate::children::{locate_bin, start_server, ServerChild, ServerSpec};
use crate::legit::{Legit, Op, Timing};
use crate::merge;
use crate::observe::{udp_receive_drops, Counters, LogTail, Probe, Sample, StatsSeen, Watch};
use crate::results::{median, Cell, Table};
use crate::sink::EchoSink;
use crate::units::parse_size;
use crate::workload::{Scratch, TestLibrary};
use clap::Args;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpft::server::Model;

/// The rate the targets are stated at.
const TARGET_RATE: f64 = 10_000.0;
/// The most a legitimate operation may slow down under attack.
const TARGET_RATIO: f64 = 2.0;
/// The most resident memory a server may use under an unproven flood.
const TARGET_RSS_MIB: f64 = 64.0;
/// Slack allowed over the baseline for "back to baseline" (allocator rounding).
const RSS_SLACK_MIB: f64 = 2.0;
/// Descriptors, threads or processes the legitimate client's own sessions may add.
const LEGIT_SLACK: u64 = 4;
/// The descriptor limit the `fds` attack runs the server under (issue 9's machine).
const FDS_ATTACK_LIMIT: u64 = 1024;
/// Pause after a loaded phase, so what it left (closed sessions) is gone before the next.
const SETTLE: Duration = Duration::from_secs(1);
/// Text after this line of an existing report is kept when the report is written again.
const NOTES_MARKER: &str = "<!-- notes below are kept when the table is regenerated -->";

/// Arguments of `measure`.
#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// Attacks to run (comma-separated; default: all).
    #[arg(long = "attack", value_delimiter = ',', default_values_t = Attack::ALL.to_vec())]
    pub attacks: Vec<Attack>,
    /// Server models to attack (comma-separated; default: all four).
    #[arg(long = "model", value_delimiter = ',', default_values_t = Model::ALL.to_vec())]
    pub models: Vec<Model>,
    /// Flood rate, datagrams a second (all threads together).
    #[arg(long, default_value_t = TARGET_RATE)]
    pub rate: f64,
    /// Rounds of (unloaded, loaded) phases.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Listings per phase.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub ls: u32,
    /// Downloads per phase.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub gets: u32,
    /// No new legitimate operation starts after this many seconds of a phase.
    #[arg(long, default_value_t = 20.0, value_name = "SECS")]
    pub ops_within: f64,
    /// A loaded phase floods for at least this long.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub seconds: f64,
    /// A loaded phase floods for at most this long (a hard bound, whatever the client does).
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// After the last round, wait this long for the flood's grants to expire before the
    /// memory is read again (the server's timeout is 5 s, its sweep 1 s).
    #[arg(long, default_value_t = 8.0, value_name = "SECS")]
    pub expiry: f64,
    /// Size of the file the legitimate client downloads.
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    pub size: u64,
    /// Size of the large file of the resume attack.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub large: u64,
    /// Small files in the library of the listing attacks.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub files: u32,
    /// Run every server with RLIMIT_NOFILE set to this (soft and hard); by default the
    /// `fds` attack runs under 1024 and the others under this process's own limit.
    #[arg(long, value_name = "N")]
    pub fd_limit: Option<u64>,
    /// The flood's shape.
    #[command(flatten)]
    pub shape: Shape,
    /// Seed of the flood's random choices.
    #[arg(long, default_value_t = 9)]
    pub seed: u64,
    /// Folder for NAME.csv, NAME.json and NAME.md (created if missing).
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// File name stem of the outputs.
    #[arg(long, default_value = "attacks")]
    pub name: String,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Extra `udpft serve` arguments.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Keep the rows of an earlier report at --out/--name for every (attack, model) this run
    /// does not measure (so the attacks can be measured a few at a time).
    #[arg(long)]
    pub merge: bool,
}

/// One phase: the client's timings, and what the server did meanwhile.
#[derive(Debug, Default)]
struct Phase {
    timings: Vec<Timing>,
    wall: Duration,
    cpu: f64,
    /// CPU seconds of this process (the flood, the legitimate client, the sampler).
    tool_cpu: f64,
    peak: Sample,
    drops: u64,
    stats: StatsSeen,
    tally: Option<Tally>,
}

/// Everything measured for one (attack, model).
#[derive(Debug)]
struct Run {
    attack: Attack,
    model: Model,
    fd_limit: Option<u64>,
    unloaded: Vec<Phase>,
    loaded: Vec<Phase>,
    baseline: Sample,
    after: Sample,
    last_counters: Option<Counters>,
    /// The host's load averages when the run began (the machine is shared).
    load: String,
    /// The command line that measured it.
    command: String,
}

/// Runs every (attack, model), prints each row as it comes, writes the report.
///
/// # Errors
/// A server that cannot be started, a flood that cannot bind, a report that cannot be
/// written.
pub fn run(args: &MeasureArgs) -> io::Result<()> {
    let bin = locate_bin("udpft", args.server_bin.as_deref())?;
    fs::create_dir_all(&args.out)?;
    let scratch = Scratch::create()?;
    let mut runs = Vec::new();
    for &attack in &args.attacks {
        let dir = scratch.path().join(attack.name());
        fs::create_dir_all(&dir)?;
        let library = build_library(&dir, attack, args)?;
        for &model in &args.models {
            eprintln!("udpft-flood: {attack} against {model}…");
            let run = run_one(&bin, &dir, &library, attack, model, args)?;
            runs.push(run);
            eprintln!("{}", summary_line(&runs[runs.len() - 1], &runs));
            // Written after every row, so a long run that is stopped keeps what it measured.
            write_report(&runs, args)?;
        }
    }
    print!("{}", table(&runs, true).to_markdown());
    Ok(())
}

/// The library of one attack: the legitimate client's file, plus the 2000 small files of
/// the listing attacks or the large file of the resume attack.
fn build_library(
    dir: &Path,
    attack: Attack,
    args: &MeasureArgs,
) -> io::Result<(TestLibrary, Files)> {
    let library = TestLibrary::create(dir, args.size, args.seed)?;
    if attack.needs_many_files() {
        for i in 0..args.files {
            fs::write(
                library.root.join(format!("file-{i:05}.txt")),
                format!("small file {i}\n"),
            )?;
        }
    }
    let large = if attack.needs_large_file() {
        let big = TestLibrary::create(dir, args.large, args.seed + 1)?;
        Some((big.name, big.size))
    } else {
        None
    };
    let files = Files {
        name: library.name.clone(),
        large,
    };
    Ok((library, files))
}

fn run_one(
    bin: &Path,
    dir: &Path,
    (library, files): &(TestLibrary, Files),
    attack: Attack,
    model: Model,
    args: &MeasureArgs,
) -> io::Result<Run> {
    let log = dir.join(format!("server-{model}.log"));
    let mut extra_args = vec![
        "--model".to_owned(),
        model.name().to_owned(),
        "--stats-every".to_owned(),
        "1".to_owned(),
    ];
    extra_args.extend(args.server_args.iter().cloned());
    let fd_limit = args
        .fd_limit
        .or((attack == Attack::Fds).then_some(FDS_ATTACK_LIMIT));
    let spec = ServerSpec {
        bin: server_program(bin, dir, fd_limit)?,
        root: library.root.clone(),
        extra_args,
    };
    let mut server = start_server(&spec, &log)?;
    let probe = Probe {
        pid: server.guard.pid(),
        root: library.root.clone(),
    };
    let legit = Legit::new(server.addr, &library.name, library.size);
    // Warm up: the first listing and download allocate what every later one reuses.
    let _ = (legit.ls(), legit.get());
    std::thread::sleep(SETTLE);
    let baseline = probe.sample().unwrap_or_default();
    let mut tail = LogTail::new(&log);
    let mut run = Run {
        attack,
        model,
        fd_limit,
        unloaded: Vec::new(),
        loaded: Vec::new(),
        baseline,
        after: Sample::default(),
        last_counters: None,
        load: crate::procfs::load_text(),
        command: command_line(),
    };
    for round in 0..args.rounds {
        run.unloaded.push(phase(
            &probe, &legit, &mut tail, None, &server, args, round,
        )?);
        run.loaded.push(phase(
            &probe,
            &legit,
            &mut tail,
            Some((attack, files)),
            &server,
            args,
            round,
        )?);
        std::thread::sleep(SETTLE);
    }
    std::thread::sleep(Duration::from_secs_f64(args.expiry.clamp(0.0, 600.0)));
    run.after = probe.sample().unwrap_or_default();
    run.last_counters = tail
        .read()
        .last
        .or_else(|| run.loaded.iter().rev().find_map(|p| p.stats.last.clone()));
    if let Some(status) = server.guard.exited() {
        eprintln!(
            "udpft-flood: the server exited during the run ({status}):\n{}",
            server.guard.log_tail()
        );
    }
    let _ = server.guard.stop();
    Ok(run)
}

/// This process's command line, its program named as the binary is.
fn command_line() -> String {
    let mut words: Vec<String> = std::env::args().skip(1).collect();
    words.insert(0, "udpft-flood".to_owned());
    words.join(" ")
}

/// The program to start the server with: `bin` itself, or, under a descriptor limit, a
/// shell script in `dir` that sets RLIMIT_NOFILE (soft and hard: `ulimit -n`) and then
/// `exec`s `bin` (same PID), so the limit holds for the server alone and this process
/// keeps its own.
fn server_program(bin: &Path, dir: &Path, limit: Option<u64>) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let Some(limit) = limit else {
        return Ok(bin.to_path_buf());
    };
    let script = dir.join(format!("udpft-nofile-{limit}.sh"));
    let quoted = bin.display().to_string().replace('\'', "'\\''");
    fs::write(
        &script,
        format!("#!/bin/sh\nulimit -n {limit} || exit 1\nexec '{quoted}' \"$@\"\n"),
    )?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

/// One phase: the legitimate operations, with the flood of `attack` running if given.
fn phase(
    probe: &Probe,
    legit: &Legit,
    tail: &mut LogTail,
    attack: Option<(Attack, &Files)>,
    server: &ServerChild,
    args: &MeasureArgs,
    round: u32,
) -> io::Result<Phase> {
    let (cpu0, drops0, start) = (probe.cpu(), udp_receive_drops(), Instant::now());
    let tool0 = own_cpu();
    let watch = Watch::start(probe);
    let mut flood = None;
    let mut echo = None;
    if let Some((attack, files)) = attack {
        let scripts = attacks::scripts(attack, &args.shape, files, args.seed + u64::from(round))
            .map_err(io::Error::other)?;
        let max = Duration::from_secs_f64(args.max_seconds.clamp(1.0, crate::bounds::MAX_SECONDS));
        let count = attack
            .count()
            .unwrap_or_else(|| ((args.rate * max.as_secs_f64()) as u64).min(MAX_COUNT));
        let budget = Arc::new(Budget::new(count, max).map_err(io::Error::other)?);
        let target = if attack == Attack::Control {
            echo.insert(EchoSink::start()?).addr()
        } else {
            server.addr
        };
        let (rate, shared) = (args.rate, Arc::clone(&budget));
        let thread = std::thread::spawn(move || blast::run(target, scripts, rate, &shared));
        flood = Some((attack, budget, thread));
        std::thread::sleep(attack.warmup(args.shape.drip_period()));
    }
    let within = Duration::from_secs_f64(args.ops_within.clamp(0.1, 600.0));
    let timings = legit.phase(args.ls, args.gets, within);
    let mut tally = None;
    if let Some((attack, budget, thread)) = flood {
        let at_least = start + Duration::from_secs_f64(args.seconds.max(0.0));
        // A flood fixed in count (memory) runs until it is spent; the others until the
        // phase has lasted long enough. The budget's own deadline bounds both.
        while !thread.is_finished() && (attack.count().is_some() || Instant::now() < at_least) {
            std::thread::sleep(Duration::from_millis(20));
        }
        budget.stop();
        tally = Some(
            thread
                .join()
                .map_err(|_| io::Error::other("the flood thread panicked"))??,
        );
    }
    drop(echo);
    let peak = watch.stop();
    let wall = start.elapsed();
    Ok(Phase {
        timings,
        wall,
        cpu: probe.cpu() - cpu0,
        tool_cpu: own_cpu() - tool0,
        peak,
        drops: match (drops0, udp_receive_drops()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        },
        stats: tail.read(),
        tally,
    })
}

/// Median time of `op` over `phases`, in ms (successful operations only), and failures.
fn op_median(phases: &[Phase], op: Op) -> (f64, usize) {
    let timings = phases
        .iter()
        .flat_map(|p| &p.timings)
        .filter(|t| t.op == op);
    let (ok, failed): (Vec<&Timing>, Vec<&Timing>) = timings.partition(|t| t.error.is_none());
    let ms: Vec<f64> = ok.iter().map(|t| t.took.as_secs_f64() * 1e3).collect();
    (median(&ms), failed.len())
}

/// The lowest and highest per-round ratio of `op` (each round's loaded median over its own
/// unloaded median): how much the machine's noise moves the ratio.
fn round_range(run: &Run, op: Op) -> (f64, f64) {
    let ratios: Vec<f64> = run
        .unloaded
        .iter()
        .zip(&run.loaded)
        .map(|(u, l)| {
            op_median(std::slice::from_ref(l), op).0 / op_median(std::slice::from_ref(u), op).0
        })
        .filter(|r| r.is_finite())
        .collect();
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (low, high)
}

fn range_text((low, high): (f64, f64)) -> String {
    if low.is_finite() {
        format!("{low:.2}–{high:.2}")
    } else {
        "-".to_owned()
    }
}

/// The first failure messages of the loaded phases.
fn failures(phases: &[Phase]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for t in phases.iter().flat_map(|p| &p.timings) {
        if let Some(e) = &t.error {
            let line = format!("{:?}: {e} (after {:.1} s)", t.op, t.took.as_secs_f64());
            if seen.len() < 3
                && !seen
                    .iter()
                    .any(|s| s.starts_with(&line[..line.len().min(40)]))
            {
                seen.push(line);
            }
        }
    }
    seen
}

fn total_tally(phases: &[Phase]) -> Tally {
    let mut total = Tally::default();
    let mut elapsed = Duration::ZERO;
    for tally in phases.iter().filter_map(|p| p.tally.as_ref()) {
        total.sent += tally.sent;
        total.sent_bytes += tally.sent_bytes;
        total.received += tally.received;
        total.received_bytes += tally.received_bytes;
        total.answers += tally.answers;
        elapsed += tally.elapsed;
        for (name, value) in &tally.notes {
            match total.notes.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => *v += value,
                None => total.notes.push((name, *value)),
            }
        }
    }
    total.elapsed = elapsed;
    total
}

/// CPU seconds this process has used.
fn own_cpu() -> f64 {
    crate::procfs::cpu_time(std::process::id()).map_or(0.0, |t| t.own)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn cpu_percent(phases: &[Phase], cpu: impl Fn(&Phase) -> f64) -> f64 {
    let cpu: f64 = phases.iter().map(cpu).sum();
    let wall: f64 = phases.iter().map(|p| p.wall.as_secs_f64()).sum();
    100.0 * cpu / wall.max(1e-9)
}

fn server_cpu(phase: &Phase) -> f64 {
    phase.cpu
}

fn tool_cpu(phase: &Phase) -> f64 {
    phase.tool_cpu
}

fn peak(phases: &[Phase]) -> Sample {
    phases.iter().fold(Sample::default(), |a, p| Sample {
        rss_kib: a.rss_kib.max(p.peak.rss_kib),
        fds: a.fds.max(p.peak.fds),
        threads: a.threads.max(p.peak.threads),
        children: a.children.max(p.peak.children),
        temp_files: a.temp_files.max(p.peak.temp_files),
    })
}

/// What a row measured, in numbers.
struct Figures {
    rate: f64,
    ls: (f64, f64, usize),
    get: (f64, f64, usize),
    unloaded_failed: usize,
    peak: Sample,
    tally: Tally,
    max_live: u64,
    drops: u64,
}

fn figures(run: &Run) -> Figures {
    let (ls_u, ls_uf) = op_median(&run.unloaded, Op::Ls);
    let (ls_l, ls_lf) = op_median(&run.loaded, Op::Ls);
    let (get_u, get_uf) = op_median(&run.unloaded, Op::Get);
    let (get_l, get_lf) = op_median(&run.loaded, Op::Get);
    let tally = total_tally(&run.loaded);
    Figures {
        rate: tally.rate(),
        ls: (ls_u, ls_l, ls_lf),
        get: (get_u, get_l, get_lf),
        unloaded_failed: ls_uf + get_uf,
        peak: peak(&run.loaded),
        max_live: run
            .loaded
            .iter()
            .map(|p| p.stats.max_live)
            .max()
            .unwrap_or(0),
        drops: run.loaded.iter().map(|p| p.drops).sum(),
        tally,
    }
}

/// The targets a row misses (empty: it meets them all).
fn verdict(run: &Run, f: &Figures) -> Vec<String> {
    let mut misses = Vec::new();
    let ratio = |(u, l, _): (f64, f64, usize)| l / u;
    // A ratio that could not be measured (every loaded operation failed) misses too.
    let within = |r: f64| r <= TARGET_RATIO;
    if !within(ratio(f.ls)) {
        misses.push(format!("ls {:.1}×", ratio(f.ls)));
    }
    if !within(ratio(f.get)) {
        misses.push(format!("get {:.1}×", ratio(f.get)));
    }
    if f.ls.2 + f.get.2 > 0 {
        misses.push(format!("{} legit failed", f.ls.2 + f.get.2));
    }
    if run.attack.proves() {
        return misses;
    }
    if f.rate < TARGET_RATE * 0.95 {
        misses.push(format!("flood only {:.0}/s", f.rate));
    }
    let base = run.baseline;
    if mib(f.peak.rss_kib) >= TARGET_RSS_MIB {
        misses.push(format!("RSS {:.0} MiB", mib(f.peak.rss_kib)));
    }
    if mib(run.after.rss_kib) > mib(base.rss_kib) + RSS_SLACK_MIB {
        misses.push(format!(
            "RSS after {:.1} MiB (base {:.1})",
            mib(run.after.rss_kib),
            mib(base.rss_kib)
        ));
    }
    if f.peak.fds > base.fds + LEGIT_SLACK {
        misses.push(format!("fds {}→{}", base.fds, f.peak.fds));
    }
    if f.peak.temp_files > 0 {
        misses.push(format!("{} temp files", f.peak.temp_files));
    }
    if f.peak.threads > base.threads + LEGIT_SLACK {
        misses.push(format!("threads {}→{}", base.threads, f.peak.threads));
    }
    if f.peak.children > LEGIT_SLACK {
        misses.push(format!("{} processes", f.peak.children));
    }
    misses
}

/// The verdict of `run`, with the control's ratios for the same model among `runs` (what
/// the flood costs the machine alone) when a target is missed.
fn verdict_text(run: &Run, f: &Figures, runs: &[Run]) -> String {
    let misses = verdict(run, f);
    if run.attack == Attack::Control {
        return "control (the machine's share)".to_owned();
    }
    if misses.is_empty() {
        return "ok".to_owned();
    }
    let control = runs
        .iter()
        .find(|r| r.attack == Attack::Control && r.model == run.model)
        .map(|c| {
            let c = figures(c);
            format!(
                " [control: ls {:.1}×, get {:.1}×]",
                c.ls.1 / c.ls.0,
                c.get.1 / c.get.0
            )
        })
        .unwrap_or_default();
    let judged = if run.model == Model::Loop {
        "(loop, not judged)"
    } else {
        "MISS:"
    };
    format!("{judged} {}{control}", misses.join("; "))
}

fn summary_line(run: &Run, runs: &[Run]) -> String {
    let f = figures(run);
    format!(
        "  {} / {}: flood {:.0}/s; ls {:.1} → {:.1} ms ({:.2}×), get {:.1} → {:.1} ms ({:.2}×), {} failed; RSS {:.1}/{:.1}/{:.1} MiB; fds {}/{}; temp {}; threads {}; procs {}; {}",
        run.attack,
        run.model,
        f.rate,
        f.ls.0,
        f.ls.1,
        f.ls.1 / f.ls.0,
        f.get.0,
        f.get.1,
        f.get.1 / f.get.0,
        f.ls.2 + f.get.2,
        mib(run.baseline.rss_kib),
        mib(f.peak.rss_kib),
        mib(run.after.rss_kib),
        run.baseline.fds,
        f.peak.fds,
        f.peak.temp_files,
        f.peak.threads,
        f.peak.children,
        verdict_text(run, &f, runs)
    )
}

/// The report table: `compact` joins related numbers in one cell (Markdown); otherwise one
/// number a column (CSV, JSON).
fn table(runs: &[Run], compact: bool) -> Table {
    let mut table = if compact {
        Table::new(&[
            "attack",
            "model",
            "flood /s",
            "ls ms unloaded → loaded",
            "ls ×",
            "ls × per round",
            "get ms unloaded → loaded",
            "get ×",
            "get × per round",
            "RSS MiB base / peak / after",
            "fds base / peak",
            "temp files",
            "threads / procs peak",
            "server CPU % unloaded / loaded",
            "tool CPU % unloaded / loaded",
            "replies / datagram",
            "bytes out / in",
            "live peak",
            "verdict",
        ])
    } else {
        Table::new(&[
            "attack",
            "model",
            "fd_limit",
            "flood_rate",
            "flood_sent",
            "ls_unloaded_ms",
            "ls_loaded_ms",
            "ls_ratio",
            "ls_ratio_min",
            "ls_ratio_max",
            "ls_failed",
            "get_unloaded_ms",
            "get_loaded_ms",
            "get_ratio",
            "get_ratio_min",
            "get_ratio_max",
            "get_failed",
            "unloaded_failed",
            "rss_base_mib",
            "rss_peak_mib",
            "rss_after_mib",
            "fds_base",
            "fds_peak",
            "fds_after",
            "temp_files_peak",
            "threads_base",
            "threads_peak",
            "procs_peak",
            "cpu_unloaded_pct",
            "cpu_loaded_pct",
            "tool_cpu_unloaded_pct",
            "tool_cpu_loaded_pct",
            "replies",
            "replies_per_datagram",
            "amplification_bytes",
            "udp_rcvbuf_drops",
            "live_peak",
            "load_average",
            "server_counters",
            "flood_notes",
            "verdict",
        ])
    };
    for run in runs {
        let f = figures(run);
        let ratio = |(u, l, _): (f64, f64, usize)| l / u;
        if compact {
            table.push(vec![
                Cell::text(run.attack.name()),
                Cell::text(run.model.name()),
                Cell::num(f.rate, 0),
                Cell::text(format!("{:.1} → {:.1}", f.ls.0, f.ls.1)),
                Cell::num(ratio(f.ls), 2),
                Cell::text(range_text(round_range(run, Op::Ls))),
                Cell::text(format!("{:.0} → {:.0}", f.get.0, f.get.1)),
                Cell::num(ratio(f.get), 2),
                Cell::text(range_text(round_range(run, Op::Get))),
                Cell::text(format!(
                    "{:.1} / {:.1} / {:.1}",
                    mib(run.baseline.rss_kib),
                    mib(f.peak.rss_kib),
                    mib(run.after.rss_kib)
                )),
                Cell::text(format!("{} / {}", run.baseline.fds, f.peak.fds)),
                Cell::int(f.peak.temp_files),
                Cell::text(format!("{} / {}", f.peak.threads, f.peak.children)),
                Cell::text(format!(
                    "{:.0} / {:.0}",
                    cpu_percent(&run.unloaded, server_cpu),
                    cpu_percent(&run.loaded, server_cpu)
                )),
                Cell::text(format!(
                    "{:.0} / {:.0}",
                    cpu_percent(&run.unloaded, tool_cpu),
                    cpu_percent(&run.loaded, tool_cpu)
                )),
                Cell::num(f.tally.replies_per_datagram(), 2),
                Cell::num(f.tally.amplification(), 2),
                Cell::int(f.max_live),
                Cell::text(verdict_text(run, &f, runs)),
            ]);
        } else {
            table.push(vec![
                Cell::text(run.attack.name()),
                Cell::text(run.model.name()),
                run.fd_limit.map_or_else(Cell::missing, Cell::int),
                Cell::num(f.rate, 1),
                Cell::int(f.tally.sent),
                Cell::num(f.ls.0, 3),
                Cell::num(f.ls.1, 3),
                Cell::num(ratio(f.ls), 3),
                Cell::num(round_range(run, Op::Ls).0, 3),
                Cell::num(round_range(run, Op::Ls).1, 3),
                Cell::int(f.ls.2 as u64),
                Cell::num(f.get.0, 3),
                Cell::num(f.get.1, 3),
                Cell::num(ratio(f.get), 3),
                Cell::num(round_range(run, Op::Get).0, 3),
                Cell::num(round_range(run, Op::Get).1, 3),
                Cell::int(f.get.2 as u64),
                Cell::int(f.unloaded_failed as u64),
                Cell::num(mib(run.baseline.rss_kib), 2),
                Cell::num(mib(f.peak.rss_kib), 2),
                Cell::num(mib(run.after.rss_kib), 2),
                Cell::int(run.baseline.fds),
                Cell::int(f.peak.fds),
                Cell::int(run.after.fds),
                Cell::int(f.peak.temp_files),
                Cell::int(run.baseline.threads),
                Cell::int(f.peak.threads),
                Cell::int(f.peak.children),
                Cell::num(cpu_percent(&run.unloaded, server_cpu), 1),
                Cell::num(cpu_percent(&run.loaded, server_cpu), 1),
                Cell::num(cpu_percent(&run.unloaded, tool_cpu), 1),
                Cell::num(cpu_percent(&run.loaded, tool_cpu), 1),
                Cell::int(f.tally.received),
                Cell::num(f.tally.replies_per_datagram(), 4),
                Cell::num(f.tally.amplification(), 4),
                Cell::int(f.drops),
                Cell::int(f.max_live),
                Cell::text(run.load.clone()),
                Cell::text(
                    run.last_counters
                        .as_ref()
                        .map(Counters::text)
                        .unwrap_or_default(),
                ),
                Cell::text(notes_text(&f.tally)),
                Cell::text(verdict_text(run, &f, runs)),
            ]);
        }
    }
    table
}

fn notes_text(tally: &Tally) -> String {
    tally
        .notes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes NAME.csv, NAME.json and NAME.md; the Markdown keeps the notes an earlier report
/// had after [`NOTES_MARKER`], and with `--merge` every format keeps the earlier report's
/// rows of what this run did not measure again.
fn write_report(runs: &[Run], args: &MeasureArgs) -> io::Result<()> {
    let stem = args.out.join(&args.name);
    let earlier = |ext: &str| -> String {
        if args.merge {
            fs::read_to_string(stem.with_extension(ext)).unwrap_or_default()
        } else {
            String::new()
        }
    };
    let full = table(runs, false);
    fs::write(
        stem.with_extension("csv"),
        merge::csv(&full.to_csv(), &earlier("csv")),
    )?;
    fs::write(
        stem.with_extension("json"),
        merge::json(&full.to_json(), &earlier("json")),
    )?;
    let md_path = stem.with_extension("md");
    let old_md = fs::read_to_string(&md_path).unwrap_or_default();
    let notes = old_md
        .split_once(NOTES_MARKER)
        .map_or_else(|| "\n".to_owned(), |(_, rest)| rest.to_owned());
    let old_rows = if args.merge {
        old_md
            .split_once(NOTES_MARKER)
            .map_or(&old_md[..], |(rows, _)| rows)
    } else {
        ""
    };
    let mut md = format!(
        "## Attacks on the front door (issue 9 §2): a legitimate client's ls and {} get during bounded floods at {:.0} datagrams/s (loopback; rounds and shape: each row's command, in its notes)\n\n",
        crate::results::human_bytes(args.size),
        args.rate,
    );
    md.push_str(&merge::markdown_table(
        &table(runs, true).to_markdown(),
        old_rows,
    ));
    md.push_str(LEGEND);
    md.push_str(
        "\n### Server counters and flood notes (last stats line after the last loaded phase)\n\n",
    );
    let bullets: Vec<String> = runs.iter().map(notes_bullet).collect();
    for bullet in merge::bullets(&bullets, old_rows) {
        md.push_str(&bullet);
    }
    let _ = write!(
        md,
        "\nRerun: each row's `measured by` command (with `--merge` it replaces only its own rows).\n\n{NOTES_MARKER}"
    );
    md.push_str(&notes);
    fs::write(md_path, md)
}

/// The notes of one row: its conditions, what the flood sent and received, the server's
/// last counters, the first failures, and the command that measured it.
fn notes_bullet(run: &Run) -> String {
    let f = figures(run);
    let mut bullet = format!(
        "* **{} / {}**{} (load average {}): flood sent {} datagrams ({} answers), received {} ({} bytes); UDP receive-buffer drops on the host: {}; {}. Server: `{}`.\n",
        run.attack,
        run.model,
        run.fd_limit
            .map(|l| format!(" (RLIMIT_NOFILE {l})"))
            .unwrap_or_default(),
        run.load,
        f.tally.sent,
        f.tally.answers,
        f.tally.received,
        f.tally.received_bytes,
        f.drops,
        match notes_text(&f.tally) {
            n if n.is_empty() => "no flood notes".to_owned(),
            n => n,
        },
        run.last_counters
            .as_ref()
            .map(Counters::text)
            .unwrap_or_else(|| "no stats line".into())
    );
    for failure in failures(&run.loaded) {
        let _ = writeln!(bullet, "  * loaded failure: {failure}");
    }
    let _ = writeln!(bullet, "  * measured by: `{}`", run.command);
    bullet
}

const LEGEND: &str = "
flood /s = datagrams the flood actually sent per second while it ran (answers included). ls / get ms = medians of the
legitimate client's successful operations, with no flood (unloaded) and during the flood (loaded), alternating phases
of the same run; × = loaded ÷ unloaded. The client is the library's `Client` from 127.0.0.1, timed from its creation to
the verified result, busy retries included (it gives up after 10 s of busy answers); × per round = the lowest and
highest ratio of one round's loaded median to the same round's unloaded median (the machine is shared: the spread is
its noise). RSS = the server process's
VmRSS before the first flood, its peak during the floods (sampled every 50 ms), and after the grants expired (8 s after
the last flood); fds = its open descriptors; temp files = upload temporaries in the library; threads / procs = the
server's threads and child processes (fork: sessions), peaks during the floods. For fork, the children's memory and
descriptors are not included. server CPU % = server CPU time (its own and reaped children's) ÷ wall time (100 = one
core); tool CPU % = this process's (the flood, the legitimate client, the sampler). control = the same flood as `fds`
aimed at a trivial echo on the same host instead of the server: the slowdown it causes is the machine's share (the
flood's own sends, loopback delivery, two shared cores), which no server can avoid.
replies / datagram = datagrams the flood's sockets received per datagram they sent; bytes out / in = bytes the server
sent to them ÷ bytes they sent (what a spoofer would gain by aiming the flood at a victim). live peak = the highest
`live=` of the server's `--stats-every 1` lines during the floods. verdict = issue 9's targets: ls and get ≤ 2×, no
legitimate failure; for the unproven floods also ≥ 10,000 datagrams/s, RSS < 64 MiB and back within 2 MiB of the
baseline, and no descriptor, temporary file, thread or process beyond the legitimate client's own. The proven attacks
(resume, drip, drip-64k, same-address-drip, list-churn) may hold sessions: they are judged only by the legitimate client. The loop model
serves one client at a time by design: reported, not judged.
";
