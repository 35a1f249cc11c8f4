//! The client commands, `ls`, `get`, `put` and `sum`, run against one [`Client`] (the udpft
//! server `--server` names) and one [`TftpClient`] (for `tftp://` URLs): the same code for
//! the command line and for each line of the shell. A command over several files tries
//! every file (unless `--fail-fast`), shows each failure as it happens, and ends with the
//! exit code of the first.

use super::address::ServerAddr;
use super::args::{ClientArgs, GetArgs, LsArgs, PutArgs, SumArgs, TftpArgs};
use super::failure::Failure;
use super::output::{listing_json, listing_table, print_out, sum_line, summed_json, summed_table};
use super::progress::{Progress, Tally, Voice};
use super::url::{is_tftp, TftpUrl};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use udpft::client::{
    open_upload, Client, ClientError, ClientOptions, Destination, Event, GetOptions, Report,
    TftpClient, TftpOptions,
};
use udpft::library::check_name;
use udpft::proto::checksum::Checksum;
use udpft::proto::listing::Entry;
use udpft::proto::wire::ErrorCode;
use udpft::proto::Config;
use udpft::text::sanitize;
use udpft::tftp::wire::Mode;

/// The clients and how they speak, for one command or one shell.
pub(crate) struct Context {
    /// The udpft server's client, once a command needed it.
    client: Option<Client>,
    server: ServerAddr,
    options: ClientOptions,
    /// Transfers with TFTP servers.
    tftp: TftpClient,
    pub(crate) voice: Voice,
    /// Set by Ctrl-C: the running transfer is cancelled, and the command stops.
    pub(crate) interrupt: Arc<AtomicBool>,
}

impl Context {
    /// The clients the options describe, cancelled by `interrupt`. The udpft server's
    /// name is resolved when a command first needs it (one with only `tftp://` URLs never
    /// does).
    pub(crate) fn new(args: &ClientArgs, interrupt: Arc<AtomicBool>) -> Self {
        let options = ClientOptions {
            config: Config {
                chunk: args.chunk,
                window: args.window,
                timeout: args.timeout,
                // The receiver lingers after a download for 8 retransmission timeouts of
                // the measured round trip, with no fixed floor: a few milliseconds on a
                // LAN, and the result is shown before it (see `Client`).
                linger_min: Duration::ZERO,
                ..Config::default()
            },
            busy_poll: args.busy_poll,
            ..ClientOptions::default()
        };
        // TFTP's receiver lingers a fixed while (the default's) after the last block.
        let mut tftp = TftpClient::new(Config {
            timeout: args.timeout,
            ..Config::default()
        });
        tftp.set_interrupt(Arc::clone(&interrupt));
        Self {
            client: None,
            server: args.server.clone(),
            options,
            tftp,
            voice: Voice::new(args.verbose, args.quiet),
            interrupt,
        }
    }

    /// The udpft server's client, connected on first use.
    ///
    /// # Errors
    /// If the server's name does not resolve or no socket can be opened.
    pub(crate) fn client(&mut self) -> Result<&mut Client, Failure> {
        if self.client.is_none() {
            let mut client = Client::connect(&self.server.resolve()?, self.options.clone())?;
            client.set_interrupt(Arc::clone(&self.interrupt));
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Lets the downloads whose receivers still linger finish (before the shell waits on
    /// the user).
    pub(crate) fn finish_lingering(&mut self) {
        if let Some(client) = &mut self.client {
            client.finish_lingering();
        }
        self.tftp.finish_lingering();
    }

    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }
}

/// `ls`: prints the listing at once and returns it (the shell completes names from it).
pub(crate) fn ls(ctx: &mut Context, args: &LsArgs) -> Result<Vec<Entry>, Failure> {
    if let Some(url) = &args.url {
        let shown = sanitize(url);
        return Err(Failure::Usage(if is_tftp(url) {
            format!(
                "TFTP cannot list files ({shown}): a TFTP server only answers requests for \
                 names the client knows; download one with get tftp://HOST[:PORT]/NAME"
            )
        } else {
            format!("ls lists the server --server names; it takes no {shown}")
        }));
    }
    let entries = ctx.client()?.list()?;
    if args.sum {
        return ls_sums(ctx, args, entries);
    }
    let text = if args.json {
        listing_json(&entries)
    } else {
        listing_table(&entries, args.human)
    };
    print_out(&text)?;
    Ok(entries)
}

/// `ls --sum`: the listing with each file's checksum, asked one file at a time. A file the
/// server cannot hash (it changed, it went away) shows its error in that column, and the
/// command ends with the exit code of the first such failure.
fn ls_sums(ctx: &mut Context, args: &LsArgs, entries: Vec<Entry>) -> Result<Vec<Entry>, Failure> {
    let interrupt = Arc::clone(&ctx.interrupt);
    let client = ctx.client()?;
    let mut first_failure = None;
    let mut sums: Vec<Result<Checksum, String>> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let name = String::from_utf8_lossy(&entry.name).into_owned();
        let sum = client.sum(&name, args.algo).map_err(|e| {
            first_failure.get_or_insert(e.exit_code());
            e.to_string()
        });
        sums.push(sum);
        if interrupt.load(Ordering::Relaxed) {
            first_failure.get_or_insert(udpft::client::EXIT_INTERRUPTED);
            break;
        }
    }
    sums.resize_with(entries.len(), || Err("not asked (interrupted)".into()));
    let text = if args.json {
        summed_json(&entries, &sums, args.algo)
    } else {
        summed_table(&entries, &sums, args.human)
    };
    print_out(&text)?;
    match first_failure {
        None => Ok(entries),
        Some(code) => Err(Failure::Reported(code)),
    }
}

/// `sum NAME… [--algo sha256|crc32]`: one `HEX  NAME` line a file, as sha256sum prints
/// them, each as soon as it is known; a failure is an error line, and the next file is
/// asked (unless `--fail-fast`).
pub(crate) fn sum(ctx: &mut Context, args: &SumArgs) -> Result<(), Failure> {
    let names = expand(ctx, &args.names)?;
    let mut first_failure = None;
    for name in &names {
        match ctx.client()?.sum(name, args.algo) {
            Ok(sum) => print_out(sum_line(&sum, name))?,
            Err(e) => {
                let failure = Failure::from(e).shown();
                first_failure.get_or_insert(failure.exit_code());
                if args.fail_fast || ctx.interrupted() {
                    break;
                }
            }
        }
    }
    match first_failure {
        None => Ok(()),
        Some(code) => Err(Failure::Reported(code)),
    }
}

/// How a command over several files is going: the first failure's exit code.
struct Run {
    tally: Tally,
    first_failure: Option<i32>,
    fail_fast: bool,
}

impl Run {
    fn new(voice: Voice, fail_fast: bool) -> Self {
        Self {
            tally: Tally::new(voice),
            first_failure: None,
            fail_fast,
        }
    }

    /// Counts one file's result; `false` when the command must stop here.
    fn record(&mut self, result: Result<Report, Failure>) -> bool {
        match result {
            Ok(report) => {
                self.tally.add(&report);
                true
            }
            Err(Failure::Client(e)) if e.is_closed_pipe() => {
                // The reader has what it wanted: nothing more to write, nothing to say.
                self.first_failure.get_or_insert(0);
                false
            }
            Err(failure) => {
                let stop =
                    self.fail_fast || matches!(&failure, Failure::Client(e) if e.is_cancelled());
                let code = failure.shown().exit_code();
                self.tally.fail();
                self.first_failure.get_or_insert(code);
                !stop
            }
        }
    }

    fn close(self) -> Result<(), Failure> {
        self.tally.close();
        match self.first_failure {
            None | Some(0) => Ok(()),
            Some(code) => Err(Failure::Reported(code)),
        }
    }
}

/// `get NAME… [-o PATH]`; a NAME may be a `tftp://` URL.
pub(crate) fn get(ctx: &mut Context, args: &GetArgs) -> Result<(), Failure> {
    // Every URL is read before anything is sent, and the udpft server resolved if needed.
    let mut urls = Vec::new();
    for name in &args.names {
        match TftpUrl::parse(name) {
            Some(Ok(url)) if url.is_folder() => {
                return Err(Failure::Usage(format!(
                    "{url} names no file: TFTP cannot list a folder, give the file's name"
                )))
            }
            Some(Ok(url)) => urls.push(url),
            Some(Err(e)) => return Err(Failure::Usage(e)),
            None => {
                ctx.client()?;
            }
        }
    }
    let names = expand(ctx, &args.names)?;
    let output = args.output.as_deref();
    if let Some(path) = output {
        let folder = path == Path::new("-") || Destination::File(path.to_owned()).takes_name();
        if names.len() > 1 && !folder {
            return Err(Failure::Usage(format!(
                "-o {} must be a folder (or -) to receive several files",
                path.display()
            )));
        }
    }
    let options = GetOptions {
        resume: !args.no_resume,
        no_clobber: args.no_clobber,
    };
    let mut run = Run::new(ctx.voice, args.fail_fast);
    let mut urls = urls.into_iter();
    for name in &names {
        let url = if is_tftp(name) { urls.next() } else { None };
        let result = match url {
            Some(url) => get_tftp(ctx, name, &url, output, options, &args.tftp),
            None => get_one(ctx, name, output, options),
        };
        if !run.record(result) || ctx.interrupted() {
            break;
        }
    }
    run.close()
}

/// Where `-o` sends a download; `local` is the download's own name, for no `-o`.
fn destination(
    output: Option<&Path>,
    local: impl FnOnce() -> Result<String, ClientError>,
) -> Result<Destination, ClientError> {
    Ok(match output {
        Some(path) if path == Path::new("-") => Destination::Stdout,
        Some(path) => Destination::File(path.to_owned()),
        None => Destination::File(PathBuf::from(local()?)),
    })
}

fn get_one(
    ctx: &mut Context,
    name: &str,
    output: Option<&Path>,
    options: GetOptions,
) -> Result<Report, Failure> {
    let dest = destination(output, || {
        // Only a plain name may become a local path: never write outside this folder.
        check_name(name.as_bytes())
            .map(str::to_owned)
            .map_err(|r| ClientError::Server {
                code: r.code,
                text: format!(
                    "{} (use -o PATH to choose where to save it)",
                    sanitize(&r.text)
                ),
            })
    })?;
    let voice = ctx.voice;
    let client = ctx.client()?;
    with_progress(voice, name, saved(name), |events| {
        client.get_with(name, &dest, options, events)
    })
}

/// `get tftp://HOST[:PORT]/NAME`: never resumed (TFTP cannot), so `--no-resume` changes
/// nothing.
fn get_tftp(
    ctx: &mut Context,
    name: &str,
    url: &TftpUrl,
    output: Option<&Path>,
    options: GetOptions,
    tftp: &TftpArgs,
) -> Result<Report, Failure> {
    let file = url.file(url.name.clone())?;
    let dest = destination(output, || file.local_name().map(str::to_owned))?;
    let asked = tftp_options(tftp, url);
    let client = &mut ctx.tftp;
    with_progress(ctx.voice, name, saved(name), |events| {
        client.get(&file, &dest, options.no_clobber, &asked, events)
    })
}

/// What a transfer with the TFTP server of `url` asks for.
fn tftp_options(args: &TftpArgs, url: &TftpUrl) -> TftpOptions {
    let flag = if args.netascii {
        Mode::Netascii
    } else {
        Mode::Octet
    };
    TftpOptions {
        blksize: args.blksize,
        windowsize: args.windowsize,
        mode: url.mode.unwrap_or(flag),
    }
}

/// What a download of `name` did, for its summary line: `saved PATH` (or `got NAME`, to
/// standard output).
fn saved(name: &str) -> impl FnOnce(&Report) -> String + '_ {
    move |report| match &report.saved_as {
        Some(path) => format!("saved {}", sanitize(path)),
        None => format!("got {}", sanitize(name)),
    }
}

/// Runs one transfer of `name` with its progress bar; once it is done, its summary line
/// says `done` of its report.
fn with_progress(
    voice: Voice,
    name: &str,
    done: impl FnOnce(&Report) -> String,
    transfer: impl FnOnce(&mut dyn FnMut(Event<'_>)) -> Result<Report, ClientError>,
) -> Result<Report, Failure> {
    let progress = Progress::new(&sanitize(name), voice);
    match transfer(&mut |e| progress.event(e)) {
        Ok(report) => {
            progress.finish(&done(&report), &report);
            Ok(report)
        }
        Err(e) => {
            progress.abandon();
            Err(e.into())
        }
    }
}

/// The names `get` asks for: each name as given, or for a pattern (`*`, `?`, `[...]`,
/// quoted so the local shell leaves it alone) the library's names that match it, like
/// sftp's `mget`. A pattern that is also a listed name stands for that name.
fn expand(ctx: &mut Context, asked: &[String]) -> Result<Vec<String>, Failure> {
    // A TFTP server cannot be listed: its URLs are names as they stand.
    let is_pattern = |name: &str| !is_tftp(name) && name.contains(['*', '?', '[']);
    if !asked.iter().any(|name| is_pattern(name)) {
        return Ok(asked.to_vec());
    }
    let listed: Vec<String> = ctx
        .client()?
        .list()?
        .into_iter()
        .filter_map(|entry| String::from_utf8(entry.name).ok())
        .filter(|name| check_name(name.as_bytes()).is_ok())
        .collect();
    let mut names = Vec::new();
    for name in asked {
        if !is_pattern(name) || listed.contains(name) {
            names.push(name.clone());
            continue;
        }
        let pattern = glob::Pattern::new(name)
            .map_err(|e| Failure::Usage(format!("bad pattern {}: {e}", sanitize(name))))?;
        let before = names.len();
        names.extend(listed.iter().filter(|n| pattern.matches(n)).cloned());
        if names.len() == before {
            return Err(ClientError::Server {
                code: ErrorCode::NotFound,
                text: format!("no file on server matches {}", sanitize(name)),
            }
            .into());
        }
    }
    // A file matched by two patterns is fetched once.
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    Ok(names)
}

/// `put PATH… [--as NAME] [--force]`, or `put PATH… tftp://HOST[:PORT]/NAME`; returns
/// the names now in the udpft library (for the shell's completion).
pub(crate) fn put(ctx: &mut Context, args: &PutArgs) -> Result<Vec<String>, Failure> {
    let (paths, url) = match args.paths.split_last() {
        Some((last, rest)) => match TftpUrl::parse(&last.to_string_lossy()) {
            Some(url) => (rest, Some(url.map_err(Failure::Usage)?)),
            None => (&args.paths[..], None),
        },
        None => (&args.paths[..], None),
    };
    if let Some(path) = paths.iter().find(|p| is_tftp(&p.to_string_lossy())) {
        return Err(Failure::Usage(format!(
            "{}: a tftp:// URL comes last, after the local files",
            sanitize(&path.to_string_lossy())
        )));
    }
    if args.name.is_some() && paths.len() > 1 {
        return Err(Failure::Usage(
            "--as names one file: give a single PATH with it".into(),
        ));
    }
    match &url {
        Some(url) => check_tftp_put(url, paths, args)?,
        None => {
            ctx.client()?;
        }
    }
    let mut run = Run::new(ctx.voice, args.fail_fast);
    let mut uploaded = Vec::new();
    for path in paths {
        let result = put_one(ctx, path, args, url.as_ref());
        if let (Ok((name, _)), None) = (&result, &url) {
            uploaded.push(name.clone());
        }
        if !run.record(result.map(|(_, report)| report)) || ctx.interrupted() {
            break;
        }
    }
    run.close().map(|()| uploaded)
}

/// Refuses what an upload to a TFTP server cannot do.
fn check_tftp_put(url: &TftpUrl, paths: &[PathBuf], args: &PutArgs) -> Result<(), Failure> {
    let refuse = |text: String| Err(Failure::Usage(text));
    if paths.is_empty() {
        return refuse(format!("put needs a local PATH before {url}"));
    }
    if args.force {
        return refuse(format!(
            "TFTP cannot ask to replace a file (--force): whether {url} replaces one is the \
             server's rule"
        ));
    }
    if !url.is_folder() && paths.len() > 1 {
        return refuse(format!(
            "{url} names one file: give a single PATH, or end the URL with / to send each \
             file under its own name"
        ));
    }
    if !url.is_folder() && args.name.is_some() {
        return refuse(format!("--as and {url} both name the upload: give one"));
    }
    Ok(())
}

/// Uploads `path`, to the udpft server or to the TFTP server of `url`; returns the name
/// it was given.
fn put_one(
    ctx: &mut Context,
    path: &Path,
    args: &PutArgs,
    url: Option<&TftpUrl>,
) -> Result<(String, Report), Failure> {
    let (name, force) = (args.name.as_deref(), args.force);
    let stdin = path == Path::new("-");
    let name = match (name, stdin) {
        (Some(name), _) => name.to_owned(),
        (None, true) => {
            return Err(Failure::Usage(
                "put - reads standard input: name the upload with --as NAME".into(),
            ))
        }
        (None, false) => path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                ClientError::local(
                    format!("cannot upload {}", path.display()),
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "no usable file name; give one with --as",
                    ),
                )
            })?
            .to_owned(),
    };
    let voice = ctx.voice;
    let report = match url {
        Some(url) => {
            let remote = if url.is_folder() {
                format!("{}{name}", url.name)
            } else {
                url.name.clone()
            };
            let file = url.file(remote)?;
            let asked = tftp_options(&args.tftp, url);
            let client = &mut ctx.tftp;
            with_progress(
                voice,
                &name,
                |_| format!("uploaded {}", file.shown),
                |events| {
                    let (local, shown) = if stdin {
                        (spool_stdin()?, "standard input".to_owned())
                    } else {
                        (open_upload(path)?, path.display().to_string())
                    };
                    client.put(&local, &shown, &file, &asked, events)
                },
            )?
        }
        None => {
            let client = ctx.client()?;
            let shown = sanitize(&name);
            with_progress(
                voice,
                &name,
                |_| format!("uploaded {shown}"),
                |events| {
                    if stdin {
                        let file = spool_stdin()?;
                        client.put_file(&file, "standard input", &name, force, events)
                    } else {
                        client.put(path, &name, force, events)
                    }
                },
            )?
        }
    };
    Ok((name, report))
}

/// Copies standard input to an unnamed temporary file (gone when closed): an upload must
/// announce its size before its first byte (protocol.md, §7.3), which a pipe cannot tell.
fn spool_stdin() -> Result<File, ClientError> {
    let cannot = |e| ClientError::local("cannot copy standard input to a temporary file", e);
    let mut file = tempfile::tempfile().map_err(cannot)?;
    io::copy(&mut io::stdin().lock(), &mut file).map_err(cannot)?;
    Ok(file)
}
