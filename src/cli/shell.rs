//! `udpft shell`: the interactive client.
//!
//! On a terminal: the framed menu (the project's heritage), then a prompt with line
//! editing, history (kept in the user's data folder, bounded) and Tab completion; Ctrl-C
//! cancels a running transfer (keeping its partial file) or clears the line being typed,
//! and Ctrl-D or `quit` leaves. Fed by a pipe (`udpft shell < script`): no menu, no
//! prompt, every command run in order, and the exit code of the first that failed, as
//! `sftp -b` reports one.
//!
//! Each line is split like a shell's (quotes, backslashes) and parsed by the same clap
//! definitions as the command line, so `get a b -o DIR` and `put PATH --as NAME --force`
//! mean what they mean there.

use super::args::{ShellCommand, ShellLine};
use super::commands::{self, Context};
use super::complete::{Names, ShellHelper};
use super::failure::Failure;
use clap::{CommandFactory, Parser};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};
use std::io::{self, BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use udpft::client::{ClientError, EXIT_INTERRUPTED};
use udpft::text::sanitize;

/// The most lines the history keeps.
const HISTORY_SIZE: usize = 1000;

const PROMPT: &str = "udpft> ";

/// What a line asks the shell to do next.
enum Next {
    Continue,
    Quit,
}

/// Runs the shell until `quit`, the end of input, or (fed by a pipe) a Ctrl-C.
pub(crate) fn run(ctx: &mut Context) -> Result<(), Failure> {
    // The shell is a client of the udpft server first: a name that does not resolve ends it.
    ctx.client()?;
    if io::stdin().is_terminal() {
        interactive(ctx)
    } else {
        batch(ctx)
    }
}

fn batch(ctx: &mut Context) -> Result<(), Failure> {
    let names: Names = Rc::default();
    let mut first_failure = None;
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| ClientError::local("cannot read standard input", e))?;
        match execute(ctx, &line, &names) {
            Ok(Next::Continue) => {}
            Ok(Next::Quit) => break,
            Err(failure) => {
                first_failure.get_or_insert(failure.shown().exit_code());
            }
        }
        if ctx.interrupt.load(Ordering::Relaxed) {
            // A script is stopped by Ctrl-C as a whole, as `sh` stops one.
            first_failure.get_or_insert(EXIT_INTERRUPTED);
            break;
        }
    }
    match first_failure {
        None | Some(0) => Ok(()),
        Some(code) => Err(Failure::Reported(code)),
    }
}

fn interactive(ctx: &mut Context) -> Result<(), Failure> {
    print!("{}", menu(ctx.client()?.server()));
    let names: Names = Rc::default();
    // The names for completion: a failure here is shown, and the prompt still comes.
    match ctx.client()?.list() {
        Ok(entries) => *names.borrow_mut() = names_of(&entries),
        Err(e) => Failure::from(e).show(),
    }
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)
        .map_err(|e| readline_error(&e))?
        .auto_add_history(true)
        // Like bash: the common prefix first, then every candidate listed.
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|e| readline_error(&e))?;
    editor.set_helper(Some(ShellHelper::new(Rc::clone(&names))));
    let history = history_path();
    if let Some(path) = &history {
        // No history yet is the normal first run.
        let _ = editor.load_history(path);
    }
    loop {
        // A download's receiver lingers a few round trips after its result was shown;
        // that ends before the prompt waits on the user.
        ctx.finish_lingering();
        let line = editor.readline(PROMPT);
        // A Ctrl-C that cancelled the previous command (or came between commands) is
        // spent: it must not cancel the next one.
        ctx.interrupt.store(false, Ordering::Relaxed);
        match line {
            Ok(line) => match execute(ctx, &line, &names) {
                Ok(Next::Continue) => {}
                Ok(Next::Quit) => break,
                Err(failure) => failure.show(),
            },
            // Ctrl-C at the prompt: the line is dropped, the shell stays.
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(readline_error(&e)),
        }
    }
    if let Some(path) = &history {
        if let Some(folder) = path.parent() {
            let _ = std::fs::create_dir_all(folder);
        }
        if let Err(e) = editor.save_history(path) {
            eprintln!("udpft: cannot save the history to {}: {e}", path.display());
        }
    }
    Ok(())
}

fn readline_error(e: &ReadlineError) -> Failure {
    ClientError::local("cannot read the terminal", io::Error::other(e.to_string())).into()
}

/// Where the history is kept: `$XDG_DATA_HOME/udpft/history`, by default
/// `~/.local/share/udpft/history`.
fn history_path() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
        })?;
    Some(data.join("udpft").join("history"))
}

fn names_of(entries: &[udpft::proto::listing::Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| String::from_utf8(e.name.clone()).ok())
        .collect()
}

/// Runs one line.
fn execute(ctx: &mut Context, line: &str, names: &Names) -> Result<Next, Failure> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Next::Continue);
    }
    let Some(words) = shlex::split(line) else {
        return Err(Failure::Usage(format!(
            "cannot read this line (a quote is not closed): {}",
            sanitize(line)
        )));
    };
    if let Some(first) = words.first() {
        if ShellLine::command().find_subcommand(first).is_none() && !first.starts_with('-') {
            return Err(Failure::Usage(format!(
                "unknown command: {} (type help)",
                sanitize(first)
            )));
        }
    }
    let parsed = match ShellLine::try_parse_from(&words) {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => {
            // `get --help` and the like: clap's text is the answer.
            super::output::print_out(e.render().to_string())?;
            return Ok(Next::Continue);
        }
        Err(e) => return Err(Failure::Usage(clap_message(&e))),
    };
    match parsed.command {
        ShellCommand::List(args) => {
            let entries = commands::ls(ctx, &args)?;
            *names.borrow_mut() = names_of(&entries);
        }
        ShellCommand::Get(args) => commands::get(ctx, &args)?,
        ShellCommand::Put(args) => {
            let uploaded = commands::put(ctx, &args);
            let mut known = names.borrow_mut();
            for name in uploaded.as_ref().map_or(&[][..], Vec::as_slice) {
                if !known.contains(name) {
                    known.push(name.clone());
                }
            }
            known.sort();
            uploaded?;
        }
        ShellCommand::Sum(args) => commands::sum(ctx, &args)?,
        ShellCommand::Help => super::output::print_out(menu(ctx.client()?.server()))?,
        ShellCommand::Quit => return Ok(Next::Quit),
    }
    Ok(Next::Continue)
}

/// A clap error as one line or a few, without its `error: ` prefix (the shell adds
/// `udpft: `).
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let text = text.trim_end();
    text.strip_prefix("error: ").unwrap_or(text).to_owned()
}

/// The framed menu, shown at start and on `help`.
fn menu(server: SocketAddr) -> String {
    let title = format!("udpft shell: server {server}");
    let lines = [
        title.as_str(),
        "",
        "list [-l]                  show the files in the library",
        "get NAME… [-o PATH] [-n]   download (NAME may be a quoted '*.pattern')",
        "put PATH… [--as NAME]      upload local files (--force replaces)",
        "sum NAME… [--algo crc32]   checksums hashed by the server (sha256sum lines)",
        "get/put … tftp://HOST/NAME the same with a TFTP server (no list, no resume)",
        "COMMAND --help             every option of a command",
        "help                       show this menu",
        "quit                       leave (also Ctrl-D)",
        "",
        "Tab completes, Up/Down recall, Ctrl-C cancels a transfer",
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
