//! `udpft`, the command line: `serve` a library, or `ls`, `get`, `put` and `shell` as a
//! client. Argument parsing and printing live here; the work is done by the library crate.

#![deny(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use udpft::client::{
    sanitize, sanitize_bytes, Client, ClientError, ClientOptions, Destination, Event, Report,
};
use udpft::library::{Library, LibraryOptions};
use udpft::proto::listing::Entry;
use udpft::proto::wire::{DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK};
use udpft::proto::Config;
use udpft::server::{self, ServerConfig, Shutdown};

const EXIT_CODES: &str = "\
Exit codes: 0 success, 1 other failure, 2 bad usage, 3 local file or socket error,
4 refused by the server (no such file, exists, bad name, busy...), 5 server not responding,
6 whole-file checksum mismatch (nothing was saved).";

/// Reliable file transfer over UDP on lossy LAN links.
///
/// A server shares one folder (its library); clients list it, download files and upload new
/// ones. Every datagram carries a sequence number and a CRC32; transfers are stop-and-wait
/// and survive lost, duplicated, reordered, delayed and corrupted datagrams.
#[derive(Parser)]
#[command(name = "udpft", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a folder (the library) to clients until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// List the files of the server's library: size, modification time (UTC) and name.
    #[command(visible_alias = "list")]
    Ls {
        #[command(flatten)]
        common: ClientArgs,
        /// Print JSON (one array of {name, size, mtime}) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download a file from the library.
    ///
    /// The file is written to a hidden partial file beside the destination and renamed into
    /// place only once its whole-file checksum matched; a later `get` resumes it.
    Get {
        /// Name of the file in the library.
        name: String,
        /// Where to write it (default: NAME in the current folder; `-` for standard output).
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Ignore a partial file from an earlier run and start over.
        #[arg(long)]
        no_resume: bool,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Upload a local file into the library.
    Put {
        /// The local file.
        path: PathBuf,
        /// Name to give it in the library (default: the file's own name).
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Replace a file of that name if the library has one.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Interactive session: a menu, then a prompt taking list, get, put, help and quit.
    Shell {
        #[command(flatten)]
        common: ClientArgs,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// The folder to share; created if missing.
    #[arg(long, default_value = "library", value_name = "DIR")]
    root: PathBuf,
    /// Address and port to listen on (IPv4 or IPv6, e.g. [::1]:6969).
    #[arg(long, default_value = "127.0.0.1:6969", value_name = "ADDR:PORT")]
    bind: String,
    /// Largest chunk granted to a client, in bytes.
    #[arg(long, default_value_t = MAX_CHUNK, value_parser = clap::value_parser!(u16).range(i64::from(MIN_CHUNK)..=i64::from(MAX_CHUNK)))]
    max_chunk: u16,
    /// Give up on a peer that shows no progress for this many seconds.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_seconds)]
    timeout: Duration,
    /// Most sessions open at once; past that, clients are told the server is busy.
    #[arg(long, default_value_t = 4096)]
    max_sessions: usize,
    /// Most sessions open at once from one IP address (a completed upload that lingers does
    /// not count); past that, that address is told the server is busy (table model).
    #[arg(long, default_value_t = 256)]
    max_per_address: usize,
    /// Refuse uploads.
    #[arg(long)]
    read_only: bool,
    /// Refuse uploads larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    max_upload: Option<u64>,
    /// Server model: table (one loop, a session table), loop (iterative: one client at a
    /// time), threads (a thread per session) or fork (a process per session).
    #[arg(long, default_value = "table")]
    model: server::Model,
    /// Loops of the table model, each on its own socket (SO_REUSEPORT) and core.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Print a statistics line (live sessions, datagrams, rejects by kind) every this many
    /// seconds (table model).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    stats_every: Option<Duration>,
    /// On Ctrl-C or SIGTERM, let running downloads finish for this many seconds (uploads
    /// in progress are abandoned at once, leaving nothing behind).
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_seconds)]
    grace: Duration,
    /// Spin up to this many microseconds on the socket before blocking, while replies come
    /// that fast (adaptive; 0: never spin).
    #[arg(long, value_name = "MICROS", default_value = "50", value_parser = parse_busy_poll)]
    busy_poll: Duration,
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// The server, HOST:PORT.
    #[arg(
        long,
        env = "UDPFT_SERVER",
        default_value = "127.0.0.1:6969",
        value_name = "HOST:PORT"
    )]
    server: String,
    /// Chunk size to ask for, in bytes (the server may grant less).
    #[arg(long, default_value_t = DEFAULT_CHUNK, value_parser = clap::value_parser!(u16).range(i64::from(MIN_CHUNK)..=i64::from(MAX_CHUNK)))]
    chunk: u16,
    /// Give up when the server shows no progress for this many seconds.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_seconds)]
    timeout: Duration,
    /// After a transfer, print its statistics (datagrams, retransmissions, RTT, goodput).
    #[arg(short, long)]
    verbose: bool,
    /// Spin up to this many microseconds on the socket before blocking, while replies come
    /// that fast (adaptive; 0: never spin).
    #[arg(long, value_name = "MICROS", default_value = "50", value_parser = parse_busy_poll)]
    busy_poll: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Ls { common, json } => ls(&common, json),
        Command::Get {
            name,
            output,
            no_resume,
            common,
        } => get(&common, &name, output.as_deref(), !no_resume),
        Command::Put {
            path,
            name,
            force,
            common,
        } => put(&common, &path, name.as_deref(), force),
        Command::Shell { common } => shell(&common),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udpft: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The longest time option accepted: a day, far beyond any LAN wait.
const MAX_SECONDS: f64 = 86_400.0;

/// Parses a time option: seconds, fractions allowed, from 0 to a day.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=MAX_SECONDS).contains(&secs) {
        return Err(format!("{secs} is not between 0 and {MAX_SECONDS} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--busy-poll`: whole microseconds, at most 10,000.
fn parse_busy_poll(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(micros) if micros <= 10_000 => Ok(Duration::from_micros(micros)),
        _ => Err(format!(
            "{text:?} is not a number of microseconds in 0..=10000"
        )),
    }
}

fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    server
        .to_socket_addrs()
        .map_err(|e| ClientError::local(format!("cannot resolve {server}"), e))?
        .next()
        .ok_or_else(|| {
            ClientError::local(
                format!("cannot resolve {server}"),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })
}

fn serve(args: &ServeArgs) -> Result<(), ClientError> {
    let bind = resolve(&args.bind)?;
    let library = Library::open(
        &args.root,
        LibraryOptions {
            read_only: args.read_only,
            max_upload: args.max_upload,
        },
    )
    .map_err(|e| ClientError::local(format!("cannot open library {}", args.root.display()), e))?;
    let timeout = args.timeout;
    let config = ServerConfig {
        session: Config {
            chunk: args.max_chunk,
            timeout,
            // Linger as long as a client would retry a lost final Ack.
            linger_min: timeout,
            ..Config::default()
        },
        limits: udpft::proto::table::Limits {
            max_sessions: args.max_sessions,
            max_per_address: args.max_per_address,
            ..Default::default()
        },
        grace: args.grace,
        model: args.model,
        workers: usize::from(args.workers),
        stats_every: args.stats_every,
        busy_poll: args.busy_poll,
    };
    let sockets = server::bind_for(bind, &config)
        .map_err(|e| ClientError::local(format!("cannot listen on {bind}"), e))?;
    let local = sockets[0].local_addr().unwrap_or(bind);
    let shutdown = Shutdown::new();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, shutdown.flag())
            .map_err(|e| ClientError::local("cannot install signal handler", e))?;
    }
    eprintln!(
        "udpft: serving {} on {local} (model {}, Ctrl-C to stop)",
        library.root().display(),
        config.model
    );
    let stats = server::serve(sockets, library, &config, &shutdown)
        .map_err(|e| ClientError::local("server loop failed", e))?;
    eprintln!("udpft: stopped; {}", stats.summary());
    Ok(())
}

fn client(args: &ClientArgs) -> Result<Client, ClientError> {
    let options = ClientOptions {
        config: Config {
            chunk: args.chunk,
            timeout: args.timeout,
            ..Config::default()
        },
        busy_poll: args.busy_poll,
        ..ClientOptions::default()
    };
    Client::new(resolve(&args.server)?, options)
}

fn ls(args: &ClientArgs, json: bool) -> Result<(), ClientError> {
    let entries = client(args)?.list()?;
    let mut out = io::stdout().lock();
    let text = if json {
        listing_json(&entries)
    } else {
        listing_table(&entries)
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| ClientError::local("cannot write to standard output", e))
}

fn listing_table(entries: &[Entry]) -> String {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&format!(
            "{:>12}  {}  {}\n",
            entry.size,
            format_utc(entry.mtime),
            sanitize_bytes(&entry.name)
        ));
    }
    if entries.is_empty() {
        text.push_str("(the library is empty)\n");
    }
    text
}

fn listing_json(entries: &[Entry]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{{\"name\":{},\"size\":{},\"mtime\":{}}}",
                json_string(&String::from_utf8_lossy(&e.name)),
                e.size,
                e.mtime
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

/// A JSON string literal (RFC 8259 escaping).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `YYYY-MM-DD HH:MM` in UTC for seconds since the Unix epoch (civil-from-days).
fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Shows progress on stderr when it is a terminal; stays quiet otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(label: &str) -> Self {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} {bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template"),
            );
            bar.set_message(label.to_owned());
            bar
        });
        Self { bar }
    }

    fn event(&self, event: Event<'_>) {
        match event {
            Event::Progress { done, total } => {
                if let Some(bar) = &self.bar {
                    if let Some(total) = total {
                        bar.set_length(total);
                    }
                    bar.set_position(done);
                }
            }
            Event::Busy { wait } => self.say(&format!(
                "server busy, retrying in {:.1} s…",
                wait.as_secs_f64()
            )),
            Event::Resuming { offset, partial } => self.say(&format!(
                "resuming from byte {offset} ({})",
                partial.display()
            )),
        }
    }

    fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("udpft: {text}")),
            None => eprintln!("udpft: {text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_report(verbose: bool, report: &Report) {
    if !verbose {
        return;
    }
    let s = &report.stats;
    let srtt = s.srtt.map_or("n/a".to_owned(), |d| {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    });
    eprintln!(
        "udpft: {} bytes in {:.3} s, goodput {:.2} MB/s; datagrams sent {} (retransmitted {}), received {} (duplicates {}, corrupted {}); smoothed RTT {srtt}",
        report.size - report.resumed_from,
        report.elapsed.as_secs_f64(),
        report.goodput() / 1e6,
        s.sent,
        s.retransmitted,
        s.received,
        s.duplicates,
        s.corrupted,
    );
}

fn get(
    args: &ClientArgs,
    name: &str,
    output: Option<&Path>,
    resume: bool,
) -> Result<(), ClientError> {
    let mut client = client(args)?;
    get_with(&mut client, args.verbose, name, output, resume)
}

fn get_with(
    client: &mut Client,
    verbose: bool,
    name: &str,
    output: Option<&Path>,
    resume: bool,
) -> Result<(), ClientError> {
    let dest = match output {
        Some(path) if path == Path::new("-") => Destination::Stdout,
        Some(path) => Destination::File(path.to_owned()),
        None => {
            // Only a plain name may become a local path: never write outside this folder.
            udpft::library::check_name(name.as_bytes()).map_err(|r| ClientError::Server {
                code: r.code,
                text: format!(
                    "{} (use -o PATH to choose where to save it)",
                    sanitize(&r.text)
                ),
            })?;
            Destination::File(PathBuf::from(name))
        }
    };
    let progress = Progress::new(name);
    let result = client.get(name, &dest, resume, &mut |e| progress.event(e));
    progress.finish();
    print_report(verbose, &result?);
    Ok(())
}

fn put(args: &ClientArgs, path: &Path, name: Option<&str>, force: bool) -> Result<(), ClientError> {
    let mut client = client(args)?;
    put_with(&mut client, args.verbose, path, name, force)
}

fn put_with(
    client: &mut Client,
    verbose: bool,
    path: &Path,
    name: Option<&str>,
    force: bool,
) -> Result<(), ClientError> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                ClientError::local(
                    format!(
                        "{} has no usable file name; give one with --as",
                        path.display()
                    ),
                    io::Error::from(io::ErrorKind::InvalidInput),
                )
            })?
            .to_owned(),
    };
    let progress = Progress::new(&name);
    let result = client.put(path, &name, force, &mut |e| progress.event(e));
    progress.finish();
    print_report(verbose, &result?);
    Ok(())
}

fn menu(server: SocketAddr) -> String {
    let title = format!("udpft shell: server {server}");
    let lines = [
        title.as_str(),
        "",
        "list        show the files in the library",
        "get NAME    download NAME into this folder",
        "put PATH    upload a local file",
        "help        show this menu",
        "quit        leave (also Ctrl-D)",
    ];
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 2;
    let mut text = format!("┌{}┐\n", "─".repeat(width));
    for (i, line) in lines.iter().enumerate() {
        if i == 1 {
            text.push_str(&format!("├{}┤\n", "─".repeat(width)));
            continue;
        }
        text.push_str(&format!("│ {line:<w$} │\n", w = width - 2));
    }
    text.push_str(&format!("└{}┘\n", "─".repeat(width)));
    text
}

fn shell(args: &ClientArgs) -> Result<(), ClientError> {
    let mut client = client(args)?;
    print!("{}", menu(client.server()));
    let stdin = io::stdin();
    let mut line = String::new();
    loop {
        print!("udpft> ");
        let _ = io::stdout().flush();
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => {
                println!();
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => return Err(ClientError::local("cannot read standard input", e)),
        }
        let line = line.trim();
        let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let result = match (command, rest.is_empty()) {
            ("", _) => Ok(()),
            ("list" | "ls", _) => client
                .list()
                .map(|entries| print!("{}", listing_table(&entries))),
            ("get", false) => get_with(&mut client, args.verbose, rest, None, true)
                .map(|()| println!("saved {}", sanitize(rest))),
            ("put", false) => put_with(&mut client, args.verbose, Path::new(rest), None, false)
                .map(|()| println!("uploaded {}", sanitize(rest))),
            ("get" | "put", true) => {
                println!(
                    "usage: {command} {}",
                    if command == "get" { "NAME" } else { "PATH" }
                );
                Ok(())
            }
            ("help" | "?", _) => {
                print!("{}", menu(client.server()));
                Ok(())
            }
            ("quit" | "exit" | "q", _) => return Ok(()),
            (other, _) => {
                println!("unknown command: {} (type help)", sanitize(other));
                Ok(())
            }
        };
        if let Err(e) = result {
            // The shell keeps going after an error.
            println!("error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06");
    }

    #[test]
    fn busy_poll_takes_whole_microseconds_up_to_ten_thousand() {
        assert_eq!(parse_busy_poll("0"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("50"), Ok(Duration::from_micros(50)));
        assert!(parse_busy_poll("10001").is_err());
        assert!(parse_busy_poll("1.5").is_err());
    }

    #[test]
    fn json_strings_escape_quotes_and_controls() {
        assert_eq!(json_string("a\"b\\c\x1b"), "\"a\\\"b\\\\c\\u001b\"");
    }
}
