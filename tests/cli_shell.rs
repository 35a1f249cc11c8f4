//! The interactive shell on a pseudo-terminal, as a person uses it: Up-arrow recalls the
//! last command (also in the next session: the history is kept), Tab completes commands
//! and remote names, Ctrl-C at the prompt clears the line, Ctrl-C during a transfer
//! cancels it (keeping the partial file) and the shell goes on, Ctrl-D leaves. And on a
//! terminal a finished download leaves one summary line, which `-q` silences.
//!
//! Every wait is a deadline on the expected text (expectrl), never a fixed sleep.

mod live;

use expectrl::process::unix::{PtyStream, UnixProcess, WaitStatus};
use expectrl::{Eof, Expect};
use live::{wait_for, Served, CHILD_DEADLINE};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use udpft::link::seeded_bytes;

/// A program on a pseudo-terminal.
type Session = expectrl::Session<UnixProcess, PtyStream>;

/// How long any expected text may take to appear (a loaded 2-core machine is slow).
const EXPECT_WITHIN: Duration = Duration::from_secs(30);

const PROMPT: &str = "udpft> ";
const UP: &str = "\x1b[A";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";

/// `udpft ARGS` on a pseudo-terminal, in `cwd`, with `home` as its home folder.
fn spawn(args: &[&str], cwd: &Path, home: &Path) -> Session {
    let mut command = Command::new(env!("CARGO_BIN_EXE_udpft"));
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("UDPFT_SERVER")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", home)
        .env("TERM", "xterm");
    let mut session = expectrl::Session::spawn(command).expect("udpft starts on a pseudo-terminal");
    session.set_expect_timeout(Some(EXPECT_WITHIN));
    session
}

/// The shell of `served` on a pseudo-terminal, at its first prompt.
fn shell(served: &Served, cwd: &Path, home: &Path, extra: &[&str]) -> Session {
    let server = served.addr().to_string();
    let mut args = vec!["shell", "--server", &server];
    args.extend_from_slice(extra);
    let mut session = spawn(&args, cwd, home);
    session.expect("udpft shell: server").expect("the menu");
    session.expect(PROMPT).expect("the first prompt");
    session
}

/// Text the terminal showed before `needle`, once it appears.
fn until(session: &mut Session, needle: &str) -> String {
    let found = session
        .expect(needle)
        .unwrap_or_else(|e| panic!("{needle:?} did not appear: {e}"));
    String::from_utf8_lossy(found.before()).into_owned()
}

/// Leaves with Ctrl-D and checks the shell exited 0.
fn leave(mut session: Session) {
    session.send(CTRL_D).unwrap();
    session.expect(Eof).expect("the shell ends");
    let status = session.get_process().wait().unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}

#[test]
fn up_arrow_recalls_the_last_command_also_in_the_next_session() {
    let served = Served::with_files(&[("notes.txt", b"n")]);
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();

    let mut session = shell(&served, cwd.path(), home.path(), &[]);
    session.send("list\r").unwrap();
    until(&mut session, "notes.txt");
    until(&mut session, PROMPT);
    // Up recalls `list`; Enter runs it again.
    session.send(UP).unwrap();
    until(&mut session, "list");
    session.send("\r").unwrap();
    until(&mut session, "notes.txt");
    until(&mut session, PROMPT);
    // Ctrl-C at the prompt drops the line being typed, and the shell stays.
    session.send("bogus").unwrap();
    until(&mut session, "bogus");
    session.send(CTRL_C).unwrap();
    // What was typed ahead of the Ctrl-C's new prompt would go with the line.
    until(&mut session, PROMPT);
    session.send("list\r").unwrap();
    let shown = until(&mut session, "notes.txt");
    assert!(!shown.contains("unknown command"), "{shown}");
    until(&mut session, PROMPT);
    leave(session);

    let history = home.path().join(".local/share/udpft/history");
    let kept = std::fs::read_to_string(&history).expect("the history is kept");
    assert!(kept.lines().any(|l| l == "list"), "{kept}");
    assert!(
        !kept.contains("bogus"),
        "a cancelled line is not history: {kept}"
    );

    // The next session recalls it too.
    let mut session = shell(&served, cwd.path(), home.path(), &[]);
    session.send(UP).unwrap();
    until(&mut session, "list");
    session.send("\r").unwrap();
    until(&mut session, "notes.txt");
    until(&mut session, PROMPT);
    leave(session);
}

#[test]
fn tab_completes_commands_remote_names_and_local_paths_and_a_download_leaves_a_summary() {
    let served = Served::with_files(&[("résumé 2026.pdf", b"pdf bytes"), ("notes.txt", b"n")]);
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut session = shell(&served, cwd.path(), home.path(), &[]);
    session.send("ge\t").unwrap();
    until(&mut session, "get ");
    session.send("rés\t").unwrap();
    until(&mut session, "'résumé 2026.pdf'");
    session.send("\r").unwrap();
    // On a terminal the bar gives way to one summary line.
    let line = until(&mut session, " in ");
    assert!(line.contains("saved résumé 2026.pdf  9 B"), "{line:?}");
    until(&mut session, PROMPT);
    live::assert_file_eq(&cwd.path().join("résumé 2026.pdf"), b"pdf bytes");

    // `put` completes local paths; what it uploaded is then completed for `get`.
    std::fs::write(cwd.path().join("upload-me.txt"), b"up").unwrap();
    session.send("put uplo\t").unwrap();
    until(&mut session, "upload-me.txt");
    session.send("\r").unwrap();
    until(&mut session, "uploaded upload-me.txt");
    until(&mut session, PROMPT);
    session.send("get uplo\t").unwrap();
    until(&mut session, "upload-me.txt");
    session.send(" -o again.txt\r").unwrap();
    until(&mut session, "saved again.txt");
    until(&mut session, PROMPT);
    live::assert_file_eq(&cwd.path().join("again.txt"), b"up");
    leave(session);
}

#[test]
fn ctrl_c_cancels_a_transfer_keeps_its_partial_file_and_the_shell_goes_on() {
    let served = Served::with_files(&[("big.bin", &seeded_bytes(5, 32 << 20)), ("small", b"s")]);
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    // Small chunks keep the download running for seconds.
    let mut session = shell(&served, cwd.path(), home.path(), &["--chunk", "512"]);
    session.send("get big.bin\r").unwrap();
    let partial = cwd.path().join(".big.bin.udpft-part");
    wait_for("the download to start", CHILD_DEADLINE, || {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    });
    session.send(CTRL_C).unwrap();
    until(&mut session, "cancelled by the user; the partial file");
    until(
        &mut session,
        "is kept: run the same command again to resume",
    );
    until(&mut session, PROMPT);
    assert!(!cwd.path().join("big.bin").exists());
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < 32 << 20, "{kept} bytes kept");
    // The shell goes on, and a second Ctrl-C later is a fresh one.
    session.send("get small\r").unwrap();
    until(&mut session, "saved small");
    until(&mut session, PROMPT);
    live::assert_file_eq(&cwd.path().join("small"), b"s");
    leave(session);
}

#[test]
fn on_a_terminal_quiet_leaves_nothing_but_errors() {
    let served = Served::with_files(&[("a.txt", b"a")]);
    let cwd = tempfile::tempdir().unwrap();
    let server = served.addr().to_string();
    let mut loud = spawn(
        &["get", "a.txt", "--server", &server],
        cwd.path(),
        cwd.path(),
    );
    let shown = until(&mut loud, " in ");
    assert!(shown.contains("saved a.txt  1 B"), "{shown:?}");
    loud.expect(Eof).unwrap();

    let mut quiet = spawn(
        &["get", "a.txt", "-o", "b.txt", "-q", "--server", &server],
        cwd.path(),
        cwd.path(),
    );
    let found = quiet.expect(Eof).unwrap();
    assert!(
        found.as_bytes().is_empty(),
        "{:?}",
        String::from_utf8_lossy(found.as_bytes())
    );
    let status = quiet.get_process().wait().unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    live::assert_file_eq(&cwd.path().join("b.txt"), b"a");
}
