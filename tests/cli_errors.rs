//! The README's table of errors, checked command by command: each failing command prints
//! one line, `udpft: ...`, naming what failed (the path, the name, the address), and exits
//! with the code of its kind (2 bad usage, 3 local, 4 refused, 5 not responding). Also: a
//! server that is not listening fails in milliseconds (ICMP), while a silent one keeps the
//! timeout; the forms of `--server`; and names that would mislead a terminal are shown
//! escaped everywhere.

mod live;

use live::{closed_port, run, run_with_input, udpft, Served};
use std::fs;
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientError, ClientOptions};

/// One row of the table: the arguments (`{server}`, `{closed}` and `{tmp}` are filled in),
/// the exit code, and text the error line must contain.
struct Row {
    args: &'static [&'static str],
    code: i32,
    message: &'static str,
}

const TABLE: &[Row] = &[
    // 2: bad usage.
    Row {
        args: &["ls", "--server", "not an address"],
        code: 2,
        message: "is not HOST, HOST:PORT, an IP address or [IPv6]:PORT",
    },
    Row {
        args: &["ls", "--server", "host:99999"],
        code: 2,
        message: "\"99999\" is not a port number",
    },
    Row {
        args: &["get", "a.txt", "--chunk", "10", "--server", "{server}"],
        code: 2,
        message: "--chunk",
    },
    Row {
        args: &["get", "a.txt", "--timeout", "soon", "--server", "{server}"],
        code: 2,
        message: "is not a number of seconds",
    },
    Row {
        args: &["get", "a.txt", "-v", "-q", "--server", "{server}"],
        code: 2,
        message: "cannot be used with",
    },
    Row {
        args: &["get", "a.txt", "b.txt", "-o", "{tmp}/file", "--server", "{server}"],
        code: 2,
        message: "udpft: -o {tmp}/file must be a folder (or -) to receive several files",
    },
    Row {
        args: &["put", "-", "--server", "{server}"],
        code: 2,
        message: "udpft: put - reads standard input: name the upload with --as NAME",
    },
    Row {
        args: &["put", "{tmp}/up.txt", "{tmp}/up.txt", "--as", "x", "--server", "{server}"],
        code: 2,
        message: "udpft: --as names one file: give a single PATH with it",
    },
    Row {
        args: &["get", "[", "--server", "{server}"],
        code: 2,
        message: "udpft: bad pattern [",
    },
    // 3: local files.
    Row {
        args: &["get", "a.txt", "-o", "{tmp}/nope/x", "--server", "{server}"],
        code: 3,
        message: "udpft: cannot write {tmp}/nope/x: No such file or directory",
    },
    Row {
        args: &["get", "a.txt", "-o", "{tmp}/up.txt", "-n", "--server", "{server}"],
        code: 3,
        message: "udpft: cannot write {tmp}/up.txt: File exists; not replaced (--no-clobber)",
    },
    Row {
        args: &["put", "{tmp}/nope.txt", "--server", "{server}"],
        code: 3,
        message: "udpft: cannot read {tmp}/nope.txt: No such file or directory",
    },
    Row {
        args: &["put", "{tmp}", "--as", "dir", "--server", "{server}"],
        code: 3,
        message: "udpft: cannot upload {tmp}: not a regular file",
    },
    Row {
        args: &["serve", "--root", "{tmp}/missing", "--bind", "127.0.0.1:0"],
        code: 3,
        message: "udpft: cannot serve {tmp}/missing: No such file or directory; give --create to create it",
    },
    Row {
        args: &["serve", "--root", "{tmp}/up.txt", "--bind", "127.0.0.1:0"],
        code: 3,
        message: "udpft: cannot serve {tmp}/up.txt: Not a directory",
    },
    // 4: refused by the server.
    Row {
        args: &["get", "missing.txt", "--server", "{server}"],
        code: 4,
        message: "udpft: no such file on server: missing.txt",
    },
    Row {
        args: &["get", "no-match-*", "--server", "{server}"],
        code: 4,
        message: "udpft: no file on server matches no-match-*",
    },
    Row {
        args: &["get", "../a.txt", "--server", "{server}"],
        code: 4,
        message: "udpft: name not allowed: contains a path separator (use -o PATH",
    },
    Row {
        args: &["put", "{tmp}/up.txt", "--as", "a.txt", "--server", "{server}"],
        code: 4,
        message: "udpft: server: file exists: a.txt (use --force to overwrite)",
    },
    // 5: nobody answers.
    Row {
        args: &["ls", "--server", "{closed}"],
        code: 5,
        message: "udpft: nothing is listening at {closed}",
    },
];

#[test]
fn every_error_names_what_failed_and_exits_with_its_code() {
    let served = Served::with_files(&[("a.txt", b"a"), ("b.txt", b"b")]);
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("up.txt"), b"up").unwrap();
    fs::write(tmp.path().join("file"), b"a file").unwrap();
    let closed = closed_port();
    let fill = |text: &str| {
        text.replace("{server}", &served.addr().to_string())
            .replace("{closed}", &closed)
            .replace("{tmp}", &tmp.path().display().to_string())
    };
    for row in TABLE {
        let args: Vec<String> = row.args.iter().map(|a| fill(a)).collect();
        let finished = run(udpft(&args).current_dir(tmp.path()));
        let message = fill(row.message);
        assert_eq!(
            finished.code, row.code,
            "udpft {args:?}: exit {} (wanted {}), stderr {:?}",
            finished.code, row.code, finished.stderr
        );
        assert!(
            finished.stderr.contains(&message),
            "udpft {args:?}: stderr {:?} lacks {message:?}",
            finished.stderr
        );
        assert!(
            finished.stdout.is_empty(),
            "udpft {args:?}: {}",
            finished.out()
        );
    }
    // Nothing was written anywhere but where the rows asked.
    let mut left = live::names_in(tmp.path());
    left.sort();
    assert_eq!(left, ["file", "up.txt"]);
    assert_eq!(live::names_in(served.library.path()), ["a.txt", "b.txt"]);
}

#[test]
fn a_closed_port_fails_in_milliseconds() {
    let closed = closed_port();
    let mut client = Client::new(closed.parse().unwrap(), ClientOptions::default()).unwrap();
    let started = Instant::now();
    let error = client.list().expect_err("nothing listens there");
    let elapsed = started.elapsed();
    eprintln!("nothing-listening failure after {elapsed:?}");
    assert!(
        matches!(
            error,
            ClientError::NotResponding {
                port_closed: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 5);
    // The kernel's answer comes in a round trip; the give-up time is five seconds.
    assert!(elapsed < Duration::from_millis(100), "took {elapsed:?}");

    // The same through the binary, process start included.
    let finished = run(&mut udpft(["ls", "--server", &closed]));
    finished.expect_code(5);
    eprintln!("udpft ls against a closed port: {:?}", finished.elapsed);
    assert!(
        finished.elapsed < Duration::from_secs(2),
        "{:?}",
        finished.elapsed
    );
}

#[test]
fn a_name_with_several_addresses_moves_on_while_nothing_listens() {
    let served = Served::with_files(&[("found.txt", b"f")]);
    let addresses = [closed_port().parse().unwrap(), served.addr()];
    let mut client = Client::connect(&addresses, ClientOptions::default()).unwrap();
    let entries = client.list().expect("the second address answers");
    assert_eq!(entries.len(), 1);
    assert_eq!(client.server(), served.addr());
}

#[test]
fn a_silent_server_still_takes_the_timeout() {
    let silent = live::Silent::new();
    let finished = run(&mut udpft([
        "ls",
        "--timeout",
        "0.5",
        "--server",
        &silent.addr(),
    ]));
    finished.expect_code(5);
    assert!(
        finished.stderr.contains("not responding (") && finished.stderr.contains("tries over"),
        "{}",
        finished.stderr
    );
    assert!(finished.elapsed >= Duration::from_millis(500));
}

#[test]
fn server_names_and_addresses_resolve_with_or_without_port() {
    let served = Served::with_files(&[("here.txt", b"x")]);
    let port = served.addr().port();
    for server in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let listed = run(&mut udpft(["ls", "--server", &server]));
        listed.expect_code(0);
        assert!(
            listed.out().contains("here.txt"),
            "{server}: {}",
            listed.out()
        );
    }
    let Ok(v6) = Served::bound("[::1]:0".parse().unwrap(), &[("six.txt", b"6")]) else {
        live::skip("the IPv6 part: no IPv6 loopback here");
        return;
    };
    let port = v6.addr().port();
    let listed = run(&mut udpft(["ls", "--server", &format!("[::1]:{port}")]));
    listed.expect_code(0);
    assert!(listed.out().contains("six.txt"), "{}", listed.out());
    // Without brackets an IPv6 address has no port: 6969 is assumed.
    let parsed = run(&mut udpft(["ls", "--server", "::1", "--timeout", "0.2"]));
    assert!(
        parsed.stderr.contains("[::1]:6969") || parsed.code == 0,
        "{}",
        parsed.stderr
    );
}

/// A name that displays as `exe.txt` but ends in `.exe`, and one with an invisible
/// character (the server refuses control characters in names, so a terminal escape can
/// only come in other texts: see `tests/hardening.rs`).
const TRICKY: [&str; 2] = ["\u{202e}txt.exe", "zero\u{200b}width.txt"];

#[test]
fn names_that_would_mislead_the_terminal_are_escaped_everywhere() {
    let served = Served::with_files(&[(TRICKY[0], b"x"), (TRICKY[1], b"y")]);
    let server = served.addr().to_string();
    let listed = run(&mut udpft(["ls", "--server", &server]));
    listed.expect_code(0);
    let text = listed.out();
    assert!(text.contains("\\u{202e}txt.exe"), "{text}");
    assert!(text.contains("zero\\u{200b}width.txt"), "{text}");
    let json = run(&mut udpft(["ls", "--json", "--server", &server]));
    assert!(json.out().contains("\\u202etxt.exe"), "{}", json.out());
    // In messages, and in the shell.
    let missing = run(&mut udpft(["get", "\u{202e}gnissim", "--server", &server]));
    missing.expect_code(4);
    assert!(
        missing
            .stderr
            .contains("no such file on server: \\u{202e}gnissim"),
        "{}",
        missing.stderr
    );
    let shell = run_with_input(
        &mut udpft(["shell", "--server", &server]),
        "list\nget \u{202e}x\n".as_bytes(),
    );
    assert!(shell.out().contains("\\u{202e}txt.exe"), "{}", shell.out());
    assert!(shell.stderr.contains("\\u{202e}x"), "{}", shell.stderr);
    for output in [
        &text,
        &json.out(),
        &missing.stderr,
        &shell.out(),
        &shell.stderr,
    ] {
        assert!(
            !output.contains(['\u{202e}', '\u{200b}']),
            "a raw character reached the terminal: {output:?}"
        );
    }
}
