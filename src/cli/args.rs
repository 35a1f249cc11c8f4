//! The command line's grammar, as clap definitions. The interactive shell parses its lines
//! with the same argument structs ([`LsArgs`], [`GetArgs`], [`PutArgs`], [`SumArgs`]), so a
//! flag means the same thing typed at the prompt as on the command line; the man page and
//! the shell completion scripts are generated from them too.

use super::address::ServerAddr;
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use std::path::PathBuf;
use std::time::Duration;
use udpft::proto::access::parse_prefix;
use udpft::proto::wire::{Algo, DEFAULT_CHUNK, MAX_CHUNK, MAX_WINDOW, MIN_CHUNK};
use udpft::server;
use udpft::server::log::LogFormat;
use udpft::tftp::client::DEFAULT_WINDOW;
use udpft::tftp::wire::{MAX_BLKSIZE, MIN_BLKSIZE};

const EXIT_CODES: &str = "\
Exit codes: 0 success, 1 other failure, 2 bad usage, 3 local file or socket error,
4 refused by the server (no such file, exists, bad name, busy...), 5 server not responding
or nothing listening, 6 whole-file checksum mismatch (nothing was saved), 130 interrupted
(Ctrl-C). With several files, the code of the first failure. A TFTP server's error is a
refusal (4); `ls tftp://...` is bad usage (2): TFTP cannot list.";

/// Reliable file transfer over UDP on lossy LAN links.
///
/// A server shares one folder (its library); clients list it, download files and upload new
/// ones. Every datagram carries a sequence number and a CRC32; transfers are stop-and-wait
/// and survive lost, duplicated, reordered, delayed and corrupted datagrams.
#[derive(Parser)]
#[command(name = "udpft", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

pub(crate) const LS_ABOUT: &str =
    "List the files of the server's library: size, modification time (UTC) and name";
pub(crate) const LS_LONG: &str = "\
List the files of the server's library: size, modification time (UTC) and name.

TFTP cannot list: `ls tftp://HOST/` says so and exits 2 (a TFTP server only answers requests
for names the client already knows).";

pub(crate) const GET_ABOUT: &str = "Download files from the library";
pub(crate) const GET_LONG: &str = "\
Download files from the library.

Each file is written to a hidden partial file beside its destination and renamed into place
only once its whole-file checksum matched; a later `get` resumes it. An existing local file
is replaced (as curl, scp and tftp do), keeping its permissions; -n keeps it instead. A
destination that is a device, a FIFO or a socket is written into, never replaced; a symbolic
link is followed. NAME may be a quoted pattern ('*.iso'), matched against the server's
listing.

NAME may also be a URL of a file on any TFTP server: tftp://HOST[:PORT]/NAME (port 69 by
default; IPv6 as tftp://[::1]:6969/NAME; %XX escapes; ;mode=netascii at the end, as RFC 3617
writes it). The same destinations apply. TFTP cannot resume: such a download always starts
over, and one that fails leaves nothing behind. Nor can it check the file beyond the UDP
checksum (udpft's own protocol checks every datagram and the whole file); in octet mode a file
whose size is not the one the server announced is not saved.";

pub(crate) const PUT_ABOUT: &str = "Upload local files into the library";
pub(crate) const PUT_LONG: &str = "\
Upload local files into the library.

A name the library already has is refused unless --force is given. `-` reads standard input
(with --as NAME): it is first copied to a temporary file, as the protocol sends only uploads
whose size is known.

The last argument may be a URL on any TFTP server: `put PATH tftp://HOST[:PORT]/NAME`, or a
URL ending in / (tftp://HOST/ or tftp://HOST/DIR/) to send each file under its own name (or
--as NAME). TFTP cannot ask to replace a file: the server decides, so --force does not apply.";

pub(crate) const SUM_ABOUT: &str =
    "Print the checksums of library files, hashed by the server (like sha256sum)";
pub(crate) const SUM_LONG: &str = "\
Print the checksums of library files, hashed by the server: one `HEX  NAME` line each, as
sha256sum prints them, so `sha256sum -c` can check a copy against them. Nothing is
downloaded: the server reads the file and sends 40 bytes back. NAME may be a quoted
pattern ('*.iso'), matched against the server's listing.

--algo crc32 prints the CRC32 every udpft transfer ends with (answered at once when the
server remembers it for that version of the file). A file that changes while the server
hashes it is an error, never a checksum of mixed bytes; run the command again.";

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve a folder (the library) to clients until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    #[command(visible_alias = "list", about = LS_ABOUT, long_about = LS_LONG)]
    Ls {
        #[command(flatten)]
        args: LsArgs,
        #[command(flatten)]
        common: ClientArgs,
    },
    #[command(about = GET_ABOUT, long_about = GET_LONG)]
    Get {
        #[command(flatten)]
        args: GetArgs,
        #[command(flatten)]
        common: ClientArgs,
    },
    #[command(about = PUT_ABOUT, long_about = PUT_LONG)]
    Put {
        #[command(flatten)]
        args: PutArgs,
        #[command(flatten)]
        common: ClientArgs,
    },
    #[command(about = SUM_ABOUT, long_about = SUM_LONG)]
    Sum {
        #[command(flatten)]
        args: SumArgs,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Interactive session: a menu, then a prompt taking list, get, put, sum (with the same
    /// options as the commands), help and quit. Fed by a pipe, it runs the commands in order.
    Shell {
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `udpft man | man -l -`.
    Man,
}

/// The options of `ls` (also `list` in the shell).
#[derive(Args, Clone, Debug)]
pub(crate) struct LsArgs {
    /// Print JSON (one array of {name, size, mtime}) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Sizes in KiB, MiB and GiB (like the progress bar) instead of bytes.
    #[arg(short = 'l', long = "human")]
    pub(crate) human: bool,
    /// Nothing: ls lists the server --server names. Given a tftp:// URL, ls says that TFTP
    /// cannot list (exit 2).
    #[arg(value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Show each file's checksum beside it, hashed by the server (--algo chooses which).
    #[arg(long)]
    pub(crate) sum: bool,
    /// With --sum: the checksum algorithm.
    #[arg(long, default_value = "sha256", value_name = "ALGO", requires = "sum", value_parser = parse_algo)]
    pub(crate) algo: Algo,
}

/// The options of `sum`.
#[derive(Args, Clone, Debug)]
pub(crate) struct SumArgs {
    /// Names of files in the library, or quoted patterns ('*.iso').
    #[arg(required = true, value_name = "NAME")]
    pub(crate) names: Vec<String>,
    /// The checksum algorithm: sha256 or crc32.
    #[arg(long, default_value = "sha256", value_name = "ALGO", value_parser = parse_algo)]
    pub(crate) algo: Algo,
    /// Stop at the first file that fails (by default every file is tried).
    #[arg(long)]
    pub(crate) fail_fast: bool,
}

/// Parses `--algo`: sha256 or crc32.
fn parse_algo(text: &str) -> Result<Algo, String> {
    text.parse()
}

/// The options of `get`.
#[derive(Args, Clone, Debug)]
pub(crate) struct GetArgs {
    /// Names of files in the library, quoted patterns ('*.iso', 'report-202?.pdf'), or
    /// tftp://HOST[:PORT]/NAME URLs of files on a TFTP server.
    #[arg(required = true, value_name = "NAME")]
    pub(crate) names: Vec<String>,
    /// Where to write: a file, a folder (DIR or DIR/: saves DIR/NAME), or `-` for standard
    /// output. With several files, a folder (or `-`). Default: NAME in the current folder.
    #[arg(short, long, value_name = "PATH")]
    pub(crate) output: Option<PathBuf>,
    /// Ignore a partial file from an earlier run and start over.
    #[arg(long)]
    pub(crate) no_resume: bool,
    /// Do not replace an existing local file (the default is to replace it).
    #[arg(short = 'n', long)]
    pub(crate) no_clobber: bool,
    /// Stop at the first file that fails (by default every file is tried).
    #[arg(long)]
    pub(crate) fail_fast: bool,
    #[command(flatten)]
    pub(crate) tftp: TftpArgs,
}

/// The options of `put`.
#[derive(Args, Clone, Debug)]
pub(crate) struct PutArgs {
    /// Local files to upload (`-`: standard input, with --as); the last may be a
    /// tftp://HOST[:PORT]/NAME URL (or tftp://HOST/ for the files' own names): they go to
    /// that TFTP server.
    #[arg(required = true, value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
    /// Name to give the file in the library (default: the file's own name); one PATH only.
    #[arg(long = "as", value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Replace a file of that name if the library has one.
    #[arg(long)]
    pub(crate) force: bool,
    /// Stop at the first file that fails (by default every file is tried).
    #[arg(long)]
    pub(crate) fail_fast: bool,
    #[command(flatten)]
    pub(crate) tftp: TftpArgs,
}

/// The heading of the TFTP options in `--help`.
const TFTP_HEADING: &str = "TFTP (tftp:// URLs)";

/// What a transfer with a TFTP server (a tftp:// URL) asks for. Each is an option of
/// RFC 2347; a server that ignores options gets plain RFC 1350 (512-byte blocks, lockstep).
#[derive(Args, Clone, Debug)]
pub(crate) struct TftpArgs {
    /// Block size to ask the server for, 8 to 65464 bytes (RFC 2348) [default: a full
    /// Ethernet frame: 1468 over IPv4, 1448 over IPv6].
    #[arg(long, value_name = "BYTES", help_heading = TFTP_HEADING, value_parser = clap::value_parser!(u16).range(i64::from(MIN_BLKSIZE)..=i64::from(MAX_BLKSIZE)))]
    pub(crate) blksize: Option<u16>,
    /// Blocks the sender may send before an ACK (RFC 7440), 1 to 65535; 1 asks for none
    /// (RFC 1350's lockstep).
    #[arg(long, value_name = "BLOCKS", help_heading = TFTP_HEADING, default_value_t = DEFAULT_WINDOW, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) windowsize: u16,
    /// Netascii mode (text: CR LF line ends on the wire, LF on disk) instead of octet; a URL
    /// ending in ;mode=netascii or ;mode=octet chooses for itself.
    #[arg(long, help_heading = TFTP_HEADING)]
    pub(crate) netascii: bool,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The folder to share [default: ./library, created if missing]. A folder named here
    /// must exist, unless --create is given.
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
    /// Create the --root folder if it does not exist.
    #[arg(long)]
    pub(crate) create: bool,
    /// Address and port to listen on (IPv4 or IPv6, e.g. [::1]:6969; the port defaults to
    /// 6969).
    #[arg(long, default_value = "127.0.0.1:6969", value_name = "ADDR:PORT")]
    pub(crate) bind: ServerAddr,
    /// Largest chunk granted to a client, in bytes.
    #[arg(long, default_value_t = MAX_CHUNK, value_parser = clap::value_parser!(u16).range(i64::from(MIN_CHUNK)..=i64::from(MAX_CHUNK)))]
    pub(crate) max_chunk: u16,
    /// Largest window granted to a client (chunks in flight; 1: stop-and-wait only). Shrunk
    /// for large chunks so one session holds at most 4 MiB.
    #[arg(long, default_value_t = udpft::proto::session::DEFAULT_MAX_WINDOW, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WINDOW)))]
    pub(crate) max_window: u16,
    /// Give up on a peer that shows no progress for this many seconds.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// Most sessions open at once; past that, clients are told the server is busy.
    #[arg(long, default_value_t = 4096)]
    pub(crate) max_sessions: usize,
    /// Most sessions open at once from one IP address; past that, that address is told the
    /// server is busy. Only peers that proved their address count.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_per_address: usize,
    /// Serve only these addresses (CIDR prefixes or single addresses, IPv4 or IPv6;
    /// repeatable). Datagrams from anyone else are dropped unanswered. Default: everyone.
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix)]
    pub(crate) allow: Vec<IpNet>,
    /// Never serve these addresses (repeatable; wins over --allow).
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix)]
    pub(crate) deny: Vec<IpNet>,
    /// Take uploads only from these addresses (repeatable); the others may list and
    /// download but are told the server is read-only. Default: everyone.
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix)]
    pub(crate) allow_upload: Vec<IpNet>,
    /// Spin up to this many microseconds on the socket before blocking, while replies come
    /// that fast (adaptive, and less with many sessions or a busy machine; 0: never spin).
    #[arg(long, value_name = "MICROS", default_value = "50", value_parser = parse_busy_poll)]
    pub(crate) busy_poll: Duration,
    /// Speak TFTP too, on the same socket(s) (RFC 1350 with blksize, tsize, timeout and
    /// windowsize options): every PXE ROM, curl, tftp-hpa, atftp and busybox client works.
    /// Off by default: TFTP has no address proof (its unproven peers get at most one packet
    /// per request, within a byte budget).
    #[arg(long)]
    pub(crate) tftp: bool,
    /// With --tftp: take TFTP uploads (WRQ), atomically, never replacing a file.
    #[arg(long, requires = "tftp")]
    pub(crate) tftp_write: bool,
    /// With --tftp-write: a TFTP upload may replace an existing file (TFTP cannot ask).
    #[arg(long, requires = "tftp_write")]
    pub(crate) tftp_overwrite: bool,
    /// Bytes a second sent to TFTP peers that have not answered yet, in all.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub(crate) tftp_unproven_rate: u64,
    /// Bytes a second sent to the unanswered TFTP peers of one source prefix (IPv4 /24,
    /// IPv6 /56).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 10)]
    pub(crate) tftp_unproven_prefix_rate: u64,
    /// After binding, run as this user (needs root; e.g. to bind TFTP's port 69).
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,
    /// With --user: run as this group instead of the user's primary group.
    #[arg(long, value_name = "NAME", requires = "user")]
    pub(crate) group: Option<String>,
    /// Keep running as root even though TFTP uploads are allowed (not advised: use --user).
    #[arg(long)]
    pub(crate) allow_root: bool,
    /// How each session's log line is written: text, or json (one object a line).
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Refuse uploads.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Refuse uploads larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_upload: Option<u64>,
    /// Server model: table (one loop, a session table), loop (iterative: one client at a
    /// time), threads (a thread per session) or fork (a process per session).
    #[arg(long, default_value = "table")]
    pub(crate) model: server::Model,
    /// Loops of the table model, each on its own socket (SO_REUSEPORT) and core.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) workers: u16,
    /// Threads of the table model that hash checksums (sum), so its loop keeps serving
    /// datagrams meanwhile; 0 hashes on the loop itself [default: the number of cores].
    /// A full queue (as many checksums waiting as workers) answers busy.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    pub(crate) cpu_workers: Option<u16>,
    /// The largest file a checksum (sum) may hash, in bytes; larger ones are refused.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 30)]
    pub(crate) max_sum: u64,
    /// Print a statistics line (live sessions, datagrams, rejects by kind) every this many
    /// seconds, when something changed.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) stats_every: Option<Duration>,
    /// On Ctrl-C or SIGTERM, let running downloads finish for this many seconds (uploads
    /// in progress are abandoned at once, leaving nothing behind).
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) grace: Duration,
}

/// The options every client command takes.
#[derive(Args, Clone)]
pub(crate) struct ClientArgs {
    /// The server: HOST or HOST:PORT (port 6969 if none is given; IPv6 as ::1 or [::1]:PORT).
    #[arg(
        long,
        env = "UDPFT_SERVER",
        default_value = "127.0.0.1:6969",
        value_name = "HOST[:PORT]"
    )]
    pub(crate) server: ServerAddr,
    /// Chunk size to ask for, in bytes (the server may grant less).
    #[arg(long, default_value_t = DEFAULT_CHUNK, value_parser = clap::value_parser!(u16).range(i64::from(MIN_CHUNK)..=i64::from(MAX_CHUNK)))]
    pub(crate) chunk: u16,
    /// Chunks in flight to ask for (1: stop-and-wait; the server may grant fewer).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WINDOW)))]
    pub(crate) window: u16,
    /// Give up when the server shows no progress for this many seconds.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// After each transfer, print its statistics (datagrams, retransmissions, RTT, goodput),
    /// also when standard error is not a terminal.
    #[arg(short, long, conflicts_with = "quiet")]
    pub(crate) verbose: bool,
    /// Print nothing but errors: no progress bar, no summary, no notes.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Spin up to this many microseconds on the socket before blocking, while replies come
    /// that fast (adaptive; 0: never spin).
    #[arg(long, value_name = "MICROS", default_value = "50", value_parser = parse_busy_poll)]
    pub(crate) busy_poll: Duration,
}

/// One line typed at the shell's prompt (or read from its script).
#[derive(Parser)]
#[command(
    name = "udpft>",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true,
    override_usage = "COMMAND [OPTIONS] [ARGS]  (type help for the menu, COMMAND --help for its options)"
)]
pub(crate) struct ShellLine {
    #[command(subcommand)]
    pub(crate) command: ShellCommand,
}

/// The shell's commands: the client commands, with the same options, and the shell's own.
#[derive(Subcommand)]
pub(crate) enum ShellCommand {
    #[command(visible_alias = "ls", about = LS_ABOUT, long_about = LS_LONG)]
    List(LsArgs),
    #[command(about = GET_ABOUT, long_about = GET_LONG)]
    Get(GetArgs),
    #[command(about = PUT_ABOUT, long_about = PUT_LONG)]
    Put(PutArgs),
    #[command(about = SUM_ABOUT, long_about = SUM_LONG)]
    Sum(SumArgs),
    /// Show the menu.
    #[command(visible_alias = "?")]
    Help,
    /// Leave the shell (also Ctrl-D).
    #[command(visible_aliases = ["exit", "q"])]
    Quit,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
        ShellLine::command().debug_assert();
    }

    #[test]
    fn time_options_are_bounded() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("1e9").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn busy_poll_takes_whole_microseconds_up_to_ten_thousand() {
        assert_eq!(parse_busy_poll("0"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("50"), Ok(Duration::from_micros(50)));
        assert!(parse_busy_poll("10001").is_err());
        assert!(parse_busy_poll("1.5").is_err());
    }
}
