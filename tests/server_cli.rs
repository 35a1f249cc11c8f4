//! The server's command line and log, through the real `udpft serve`: one timestamped line
//! per session when it ends (text or JSON), the statistics line only when something
//! changed, and Ctrl-C: the first announces what the stop waits for, the second stops now.

mod live;

use live::servers::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// Reads stderr lines until one satisfies `want` (or `within` passes).
fn line_where(server: &mut Server, within: Duration, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.proc.next_line(left) {
            Some(line) if want(&line) => return line,
            Some(_) => {}
            None => panic!("no such line; stderr: {}", server.proc.stderr_text()),
        }
    }
}

/// `2026-12-02T07:12:03Z`
fn is_timestamp(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
        && word.chars().filter(char::is_ascii_digit).count() == 14
}

#[test]
fn each_session_ends_with_one_timestamped_log_line() {
    let dirs = Dirs::with(&[("report.pdf", &[1u8; 3000])]);
    let mut server = Server::start("table", dirs.root(), &[]);
    let got = download(server.addr, "report.pdf", dirs.scratch(), "copy").expect("get");
    assert_eq!(got.len(), 3000);
    let line = line_where(&mut server, PROMPT, |l| l.contains(" get "));
    let words: Vec<&str> = line.split(' ').collect();
    assert!(is_timestamp(words[0]), "{line}");
    assert!(words[1].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(&words[2..5], ["get", "report.pdf", "2.93"], "{line}");
    assert_eq!(words[5], "KiB", "{line}");
    assert!(words[7] == "ms" || words[7] == "s", "{line}");
    assert_eq!(words.last(), Some(&"ok"), "{line}");
    // A failed session names the file and the reason.
    let _held = hold_session(server.addr, 7, b"report.pdf");
    drop(_held);
    let line = line_where(&mut server, Duration::from_secs(20), |l| {
        l.contains("failed:")
    });
    assert!(line.contains(" get report.pdf "), "{line}");
    assert!(line.contains("not responding"), "{line}");
}

#[test]
fn json_log_lines_are_one_object_each() {
    let dirs = Dirs::with(&[("a \"quoted\" name", b"x")]);
    let mut server = Server::start("fork", dirs.root(), &["--log-format", "json"]);
    download(server.addr, "a \"quoted\" name", dirs.scratch(), "copy").expect("get");
    let line = line_where(&mut server, PROMPT, |l| l.starts_with('{'));
    assert!(
        line.starts_with("{\"time\":\"") && line.ends_with('}'),
        "{line}"
    );
    for field in [
        "\"op\":\"get\"",
        "\"name\":\"a \\\"quoted\\\" name\"",
        "\"bytes\":1,",
        "\"outcome\":\"ok\"",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

#[test]
fn the_statistics_line_appears_only_when_something_changed() {
    let dirs = Dirs::with(&[("f", b"x")]);
    let mut server = Server::start("table", dirs.root(), &["--stats-every", "0.05"]);
    client(server.addr).list().expect("list");
    line_where(&mut server, PROMPT, |l| l.contains(" stats live=0 "));
    // Idle for twenty intervals: nothing changed, so no further line.
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while let Some(line) = server
        .proc
        .next_line(quiet_until.saturating_duration_since(Instant::now()))
    {
        assert!(
            !line.contains(" stats "),
            "a statistics line while idle: {line}"
        );
    }
}

#[test]
fn a_first_ctrl_c_says_what_the_stop_waits_for_and_a_second_stops_now() {
    let dirs = Dirs::with(&[("file", &[7u8; 100_000])]);
    let mut server = Server::start("table", dirs.root(), &["--grace", "30"]);
    let _held = hold_session(server.addr, 1, b"file");
    server.proc.signal(Signal::SIGINT);
    let line = line_where(&mut server, PROMPT, |l| l.starts_with("udpft: stopping"));
    assert_eq!(
        line,
        "udpft: stopping: 1 download finishing, up to 30 s; Ctrl-C again to stop now"
    );
    let asked = Instant::now();
    server.proc.signal(Signal::SIGINT);
    line_where(&mut server, PROMPT, |l| {
        l.starts_with("udpft: stopping now")
    });
    server.expect_exit();
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "the second Ctrl-C did not stop at once"
    );
}
