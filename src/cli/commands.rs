//! The client commands, `ls`, `get` and `put`, run against one [`Client`]: the same code
//! for the command line and for each line of the shell. A command over several files
//! tries every file (unless `--fail-fast`), shows each failure as it happens, and ends with
//! the exit code of the first.

use super::args::{ClientArgs, GetArgs, LsArgs, PutArgs};
use super::failure::Failure;
use super::output::{listing_json, listing_table, print_out};
use super::progress::{Progress, Tally, Voice};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use udpft::client::{Client, ClientError, ClientOptions, Destination, GetOptions, Report};
use udpft::library::check_name;
use udpft::proto::listing::Entry;
use udpft::proto::wire::ErrorCode;
use udpft::proto::Config;
use udpft::text::sanitize;

/// A client and how it speaks, for one command or one shell.
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) voice: Voice,
    /// Set by Ctrl-C: the running transfer is cancelled, and the command stops.
    pub(crate) interrupt: Arc<AtomicBool>,
}

impl Context {
    /// A client of the server the options name, cancelled by `interrupt`.
    ///
    /// # Errors
    /// If the server's name does not resolve or no socket can be opened.
    pub(crate) fn connect(args: &ClientArgs, interrupt: Arc<AtomicBool>) -> Result<Self, Failure> {
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
        let mut client = Client::connect(&args.server.resolve()?, options)?;
        client.set_interrupt(Arc::clone(&interrupt));
        Ok(Self {
            client,
            voice: Voice::new(args.verbose, args.quiet),
            interrupt,
        })
    }

    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }
}

/// `ls`: prints the listing at once and returns it (the shell completes names from it).
pub(crate) fn ls(ctx: &mut Context, args: &LsArgs) -> Result<Vec<Entry>, Failure> {
    let entries = ctx.client.list()?;
    let text = if args.json {
        listing_json(&entries)
    } else {
        listing_table(&entries, args.human)
    };
    print_out(&text)?;
    Ok(entries)
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

/// `get NAME… [-o PATH]`.
pub(crate) fn get(ctx: &mut Context, args: &GetArgs) -> Result<(), Failure> {
    let names = expand(ctx, &args.names)?;
    let output = args.output.as_deref();
    if let Some(path) = output {
        let folder = path == Path::new("-")
            || path.as_os_str().as_encoded_bytes().ends_with(b"/")
            || path.is_dir();
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
    for name in &names {
        let result = get_one(ctx, name, output, options);
        if !run.record(result) || ctx.interrupted() {
            break;
        }
    }
    run.close()
}

fn get_one(
    ctx: &mut Context,
    name: &str,
    output: Option<&Path>,
    options: GetOptions,
) -> Result<Report, Failure> {
    let dest = match output {
        Some(path) if path == Path::new("-") => Destination::Stdout,
        Some(path) => Destination::File(path.to_owned()),
        None => {
            // Only a plain name may become a local path: never write outside this folder.
            check_name(name.as_bytes()).map_err(|r| ClientError::Server {
                code: r.code,
                text: format!(
                    "{} (use -o PATH to choose where to save it)",
                    sanitize(&r.text)
                ),
            })?;
            Destination::File(PathBuf::from(name))
        }
    };
    let shown = sanitize(name);
    let progress = Progress::new(&shown, ctx.voice);
    match ctx
        .client
        .get_with(name, &dest, options, &mut |e| progress.event(e))
    {
        Ok(report) => {
            let done = match &report.saved_as {
                Some(path) => format!("saved {}", sanitize(path)),
                None => format!("got {shown}"),
            };
            progress.finish(&done, &report);
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
    let is_pattern = |name: &str| name.contains(['*', '?', '[']);
    if !asked.iter().any(|name| is_pattern(name)) {
        return Ok(asked.to_vec());
    }
    let listed: Vec<String> = ctx
        .client
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

/// `put PATH… [--as NAME] [--force]`; returns the names now in the library (for the
/// shell's completion).
pub(crate) fn put(ctx: &mut Context, args: &PutArgs) -> Result<Vec<String>, Failure> {
    if args.name.is_some() && args.paths.len() > 1 {
        return Err(Failure::Usage(
            "--as names one file: give a single PATH with it".into(),
        ));
    }
    let mut run = Run::new(ctx.voice, args.fail_fast);
    let mut uploaded = Vec::new();
    for path in &args.paths {
        let result = put_one(ctx, path, args.name.as_deref(), args.force);
        if let Ok((name, _)) = &result {
            uploaded.push(name.clone());
        }
        if !run.record(result.map(|(_, report)| report)) || ctx.interrupted() {
            break;
        }
    }
    run.close().map(|()| uploaded)
}

fn put_one(
    ctx: &mut Context,
    path: &Path,
    name: Option<&str>,
    force: bool,
) -> Result<(String, Report), Failure> {
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
    let shown = sanitize(&name);
    let progress = Progress::new(&shown, ctx.voice);
    let mut events = |e: udpft::client::Event<'_>| progress.event(e);
    let result = if stdin {
        spool_stdin().and_then(|file| {
            ctx.client
                .put_file(&file, "standard input", &name, force, &mut events)
        })
    } else {
        ctx.client.put(path, &name, force, &mut events)
    };
    match result {
        Ok(report) => {
            progress.finish(&format!("uploaded {shown}"), &report);
            Ok((name, report))
        }
        Err(e) => {
            progress.abandon();
            Err(e.into())
        }
    }
}

/// Copies standard input to an unnamed temporary file (gone when closed): an upload must
/// announce its size before its first byte (protocol.md, §7.3), which a pipe cannot tell.
fn spool_stdin() -> Result<File, ClientError> {
    let cannot = |e| ClientError::local("cannot copy standard input to a temporary file", e);
    let mut file = tempfile::tempfile().map_err(cannot)?;
    io::copy(&mut io::stdin().lock(), &mut file).map_err(cannot)?;
    Ok(file)
}
