//! The `udpft` command line against a real in-process server on loopback: `ls` (table and
//! JSON), `get` (to a path, to standard output, to the current folder, resuming a partial
//! file), `put` (with and without `--force`), the shell fed by a pipe, `--help`, the
//! `UDPFT_SERVER` variable, and refusals. More in `cli_destinations.rs` (where downloads
//! go), `cli_errors.rs` (the table of messages and exit codes), `cli_files.rs` (several
//! files, patterns, `put -`) and `cli_shell.rs` (the shell on a pseudo-terminal).

mod live;

use live::{assert_file_eq, names_in, partial_in, run, run_with_input, udpft, Served};
use std::time::Duration;
use udpft::link::seeded_bytes;

// ---------------------------------------------------------------------------------------
// --help

#[test]
fn help_of_each_subcommand_exits_zero_and_names_its_options() {
    let cases: [(&str, &[&str]); 7] = [
        (
            "serve",
            &["--root", "--bind", "--model", "--timeout", "--read-only"],
        ),
        ("ls", &["--json", "--server", "--timeout"]),
        (
            "get",
            &[
                "--output",
                "--no-resume",
                "--no-clobber",
                "--fail-fast",
                "--server",
                "--chunk",
                "--quiet",
                "replaced",
            ],
        ),
        ("put", &["--as", "--force", "--server", "standard input"]),
        ("shell", &["--server", "--timeout"]),
        ("ls", &["--human"]),
        ("completions", &["bash", "zsh", "fish"]),
    ];
    for (subcommand, options) in cases {
        let help = run(&mut udpft([subcommand, "--help"]));
        help.expect_code(0);
        let text = help.out();
        for option in options {
            assert!(
                text.contains(option),
                "`udpft {subcommand} --help` does not mention {option}:\n{text}"
            );
        }
    }
    let top = run(&mut udpft(["--help"]));
    top.expect_code(0);
    for subcommand in [
        "serve",
        "ls",
        "get",
        "put",
        "shell",
        "completions",
        "man",
        "Exit codes",
    ] {
        assert!(top.out().contains(subcommand), "{}", top.out());
    }
}

// ---------------------------------------------------------------------------------------
// ls

/// A parsed JSON value: just enough of RFC 8259 to check `ls --json`.
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn field(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parses one JSON document (with surrounding whitespace); `None` if it is not JSON.
fn parse_json(text: &str) -> Option<Json> {
    let mut parser = JsonParser {
        chars: text.chars().collect(),
        at: 0,
    };
    let value = parser.value()?;
    parser.skip_space();
    (parser.at == parser.chars.len()).then_some(value)
}

struct JsonParser {
    chars: Vec<char>,
    at: usize,
}

impl JsonParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Option<Json> {
        for expected in word.chars() {
            (self.next()? == expected).then_some(())?;
        }
        Some(value)
    }

    fn value(&mut self) -> Option<Json> {
        self.skip_space();
        match self.peek()? {
            '[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_space();
                if self.peek()? == ']' {
                    self.at += 1;
                    return Some(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.skip_space();
                    match self.next()? {
                        ',' => {}
                        ']' => return Some(Json::Array(items)),
                        _ => return None,
                    }
                }
            }
            '{' => {
                self.at += 1;
                let mut fields = Vec::new();
                self.skip_space();
                if self.peek()? == '}' {
                    self.at += 1;
                    return Some(Json::Object(fields));
                }
                loop {
                    self.skip_space();
                    let key = self.string()?;
                    self.skip_space();
                    (self.next()? == ':').then_some(())?;
                    fields.push((key, self.value()?));
                    self.skip_space();
                    match self.next()? {
                        ',' => {}
                        '}' => return Some(Json::Object(fields)),
                        _ => return None,
                    }
                }
            }
            '"' => self.string().map(Json::Text),
            't' => self.literal("true", Json::Bool(true)),
            'f' => self.literal("false", Json::Bool(false)),
            'n' => self.literal("null", Json::Null),
            _ => self.number(),
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.at;
        while matches!(self.peek(), Some('-' | '+' | '.' | 'e' | 'E' | '0'..='9')) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        text.parse().ok().map(Json::Number)
    }

    fn string(&mut self) -> Option<String> {
        (self.next()? == '"').then_some(())?;
        let mut out = String::new();
        loop {
            match self.next()? {
                '"' => return Some(out),
                '\\' => match self.next()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = (0..4).map(|_| self.next()).collect::<Option<_>>()?;
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                },
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }
}

#[test]
fn json_checker_accepts_json_and_rejects_non_json() {
    assert_eq!(
        parse_json(r#" [{"a":1,"b":"x\"y\u00e9"}, true, null] "#),
        Some(Json::Array(vec![
            Json::Object(vec![
                ("a".into(), Json::Number(1.0)),
                ("b".into(), Json::Text("x\"y\u{e9}".into()))
            ]),
            Json::Bool(true),
            Json::Null
        ]))
    );
    for bad in ["[", "[1,]", "{\"a\" 1}", "\"raw\ncontrol\"", "[1] x", "'a'"] {
        assert_eq!(parse_json(bad), None, "{bad:?}");
    }
}

const QUOTED: &str = "say \"hi\".txt";

#[test]
fn ls_prints_a_table_of_sizes_and_names_without_hidden_files() {
    let served = Served::with_files(&[
        ("alpha.txt", b"abc"),
        ("zeta.bin", &[0; 5000]),
        (".hidden", b"secret"),
    ]);
    let listed = run(&mut udpft(["ls", "--server", &served.addr().to_string()]));
    listed.expect_code(0);
    let text = listed.out();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].trim_start().starts_with("3 "), "{text}");
    assert!(lines[0].ends_with("  alpha.txt"), "{text}");
    assert!(lines[1].trim_start().starts_with("5000 "), "{text}");
    assert!(lines[1].ends_with("  zeta.bin"), "{text}");
    assert!(!text.contains("hidden"), "{text}");

    // The alias `list` works the same.
    let aliased = run(&mut udpft(["list", "--server", &served.addr().to_string()]));
    aliased.expect_code(0);
    assert_eq!(aliased.out(), text);
}

#[test]
fn ls_of_an_empty_library_says_so() {
    let served = Served::with_files(&[]);
    let listed = run(&mut udpft(["ls", "--server", &served.addr().to_string()]));
    listed.expect_code(0);
    assert_eq!(listed.out(), "(the library is empty)\n");
    let json = run(&mut udpft([
        "ls",
        "--json",
        "--server",
        &served.addr().to_string(),
    ]));
    json.expect_code(0);
    assert_eq!(parse_json(&json.out()), Some(Json::Array(vec![])));
}

#[test]
fn ls_json_is_an_array_of_name_size_mtime_objects() {
    let served = Served::with_files(&[
        ("b.bin", &[1; 1431]),
        ("a.txt", b""),
        (QUOTED, b"q"),
        ("caf\u{e9}.txt", b"cafe"),
        (".hidden", b"secret"),
    ]);
    let listed = run(&mut udpft([
        "ls",
        "--json",
        "--server",
        &served.addr().to_string(),
    ]));
    listed.expect_code(0);
    let Some(Json::Array(items)) = parse_json(&listed.out()) else {
        panic!("not a JSON array: {}", listed.out());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as f64;
    let mut seen = Vec::new();
    for item in &items {
        let (Some(Json::Text(name)), Some(Json::Number(size)), Some(Json::Number(mtime))) =
            (item.field("name"), item.field("size"), item.field("mtime"))
        else {
            panic!("entry without name, size and mtime: {item:?}");
        };
        let Json::Object(fields) = item else {
            unreachable!("field() found fields")
        };
        assert_eq!(fields.len(), 3, "{item:?}");
        // Files written a moment ago: a modification time within a day of now.
        assert!((mtime - now).abs() < 86_400.0, "{item:?}");
        seen.push((name.clone(), *size as u64));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("a.txt".to_owned(), 0),
            ("b.bin".to_owned(), 1431),
            ("caf\u{e9}.txt".to_owned(), 4),
            (QUOTED.to_owned(), 1),
        ]
    );
}

#[test]
fn udpft_server_variable_is_honoured() {
    let served = Served::with_files(&[("from-env.txt", b"env")]);
    let listed = run(udpft(["ls"]).env("UDPFT_SERVER", served.addr().to_string()));
    listed.expect_code(0);
    assert!(listed.out().contains("from-env.txt"), "{}", listed.out());
}

// ---------------------------------------------------------------------------------------
// get

#[test]
fn get_to_dash_writes_the_bytes_to_stdout() {
    let original = seeded_bytes(1, 20_000);
    let served = Served::with_files(&[("data.bin", &original)]);
    let cwd = tempfile::tempdir().expect("folder");
    let got = run(udpft([
        "get",
        "data.bin",
        "-o",
        "-",
        "--server",
        &served.addr().to_string(),
    ])
    .current_dir(cwd.path()));
    got.expect_code(0);
    assert!(got.stdout == original, "stdout differs from the file");
    assert!(names_in(cwd.path()).is_empty(), "nothing saved to disk");
}

#[test]
fn get_without_output_saves_name_in_the_current_folder() {
    let original = seeded_bytes(2, 4000);
    let served = Served::with_files(&[("here.bin", &original)]);
    let cwd = tempfile::tempdir().expect("folder");
    run(udpft(["get", "here.bin", "--server", &served.addr().to_string()]).current_dir(cwd.path()))
        .expect_code(0);
    assert_file_eq(&cwd.path().join("here.bin"), &original);
    assert_eq!(names_in(cwd.path()), ["here.bin"]);
}

/// Runs `udpft get NAME` (with `extra` arguments) in an empty folder and checks it is
/// refused with exit code 4, `message` on stderr, and nothing written.
fn assert_get_refused(served: &Served, name: &str, extra: &[&str], message: &str) {
    let cwd = tempfile::tempdir().expect("folder");
    let refused = run(udpft(["get", name])
        .args(extra)
        .args(["--server", &served.addr().to_string()])
        .current_dir(cwd.path()));
    refused.expect_code(4);
    assert!(
        refused.stderr.starts_with("udpft: ") && refused.stderr.contains(message),
        "get {name:?} {extra:?}: stderr {:?} lacks {message:?}",
        refused.stderr
    );
    assert!(
        names_in(cwd.path()).is_empty(),
        "get {name:?} {extra:?} left {:?}",
        names_in(cwd.path())
    );
}

#[test]
fn traversal_names_are_refused_and_nothing_is_written() {
    let served = Served::with_files(&[("x", b"x"), ("passwd", b"not that one")]);
    for (name, why) in [
        ("../x", "contains a path separator"),
        ("a/b", "contains a path separator"),
        ("/etc/passwd", "contains a path separator"),
        ("..", "not a file name"),
    ] {
        // With -o the client refuses the name at once, by the server's own rule (the
        // server's refusal of raw requests is tested in tests/hardening.rs).
        assert_get_refused(
            &served,
            name,
            &["-o", "out"],
            &format!("name not allowed: {why}"),
        );
        // Without -o the client refuses to turn it into a local path.
        assert_get_refused(
            &served,
            name,
            &[],
            &format!("name not allowed: {why} (use -o PATH"),
        );
    }
}

#[test]
fn hidden_file_exists_but_is_refused_and_not_listed() {
    let served = Served::with_files(&[(".hidden", b"secret"), ("shown", b"ok")]);
    assert!(served.path(".hidden").is_file());
    assert_get_refused(
        &served,
        ".hidden",
        &["-o", "out"],
        "name not allowed: hidden files are not served",
    );
    assert_get_refused(
        &served,
        ".hidden",
        &[],
        "name not allowed: hidden files are not served",
    );
    let listed = run(&mut udpft([
        "ls",
        "--json",
        "--server",
        &served.addr().to_string(),
    ]));
    listed.expect_code(0);
    assert!(!listed.out().contains("hidden"), "{}", listed.out());
    assert!(listed.out().contains("shown"), "{}", listed.out());
}

#[test]
fn missing_file_is_refused_and_leaves_no_file_or_partial() {
    let served = Served::with_files(&[("present", b"here")]);
    assert_get_refused(&served, "missing", &[], "no such file on server: missing");
    assert_get_refused(
        &served,
        "missing",
        &["-o", "elsewhere.bin"],
        "no such file on server: missing",
    );
    let to_stdout = run(&mut udpft([
        "get",
        "missing",
        "-o",
        "-",
        "--server",
        &served.addr().to_string(),
    ]));
    to_stdout.expect_code(4);
    assert!(to_stdout.stdout.is_empty(), "{}", to_stdout.out());
}

#[test]
fn get_from_a_stopped_server_fails_at_once_as_nothing_listens() {
    let mut served = Served::with_files(&[("gone.bin", b"data")]);
    let addr = served.addr().to_string();
    served.stop();
    let cwd = tempfile::tempdir().expect("folder");
    let failed = run(udpft(["get", "gone.bin", "--server", &addr]).current_dir(cwd.path()));
    failed.expect_code(5);
    assert_eq!(
        failed.stderr,
        format!("udpft: nothing is listening at {addr}\n")
    );
    // The host's ICMP answer, not the five seconds of patience.
    assert!(
        failed.elapsed < Duration::from_secs(2),
        "{:?}",
        failed.elapsed
    );
    assert!(
        names_in(cwd.path()).is_empty(),
        "{:?}",
        names_in(cwd.path())
    );
}

#[test]
fn ls_of_a_silent_server_is_not_responding_within_the_timeout() {
    // A socket that never answers: the client cannot tell it from a dead server.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let addr = silent.local_addr().expect("address").to_string();
    let failed = run(&mut udpft(["ls", "--timeout", "1", "--server", &addr]));
    failed.expect_code(5);
    assert!(
        failed.stderr.contains("not responding"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.elapsed < Duration::from_secs(4),
        "{:?}",
        failed.elapsed
    );
}

#[test]
fn a_malformed_server_address_is_bad_usage() {
    let failed = run(&mut udpft(["ls", "--server", "not an address"]));
    failed.expect_code(2);
    assert!(
        failed.stderr.contains("is not HOST, HOST:PORT"),
        "{}",
        failed.stderr
    );
    let from_env = run(udpft(["ls"]).env("UDPFT_SERVER", "host:port"));
    from_env.expect_code(2);
    assert!(
        from_env.stderr.contains("not a port number"),
        "{}",
        from_env.stderr
    );
}

// ---------------------------------------------------------------------------------------
// resume

#[test]
fn get_resumes_from_a_correct_partial_file() {
    let original = seeded_bytes(3, 100_000);
    let served = Served::with_files(&[("big.bin", &original)]);
    let cwd = tempfile::tempdir().expect("folder");
    let kept = 40_000;
    let partial = partial_in(cwd.path(), "big.bin");
    std::fs::write(&partial, &original[..kept]).expect("partial written");
    let resumed = run(
        udpft(["get", "big.bin", "--server", &served.addr().to_string()]).current_dir(cwd.path()),
    );
    resumed.expect_code(0);
    assert!(
        resumed
            .stderr
            .contains(&format!("resuming from byte {kept}")),
        "{}",
        resumed.stderr
    );
    assert_file_eq(&cwd.path().join("big.bin"), &original);
    assert!(!partial.exists(), "the partial file became the file");
}

#[test]
fn get_with_no_resume_ignores_a_partial_file() {
    let original = seeded_bytes(4, 10_000);
    let served = Served::with_files(&[("f.bin", &original)]);
    let cwd = tempfile::tempdir().expect("folder");
    std::fs::write(partial_in(cwd.path(), "f.bin"), [0xee; 3000]).expect("partial written");
    let fresh = run(udpft([
        "get",
        "f.bin",
        "--no-resume",
        "--server",
        &served.addr().to_string(),
    ])
    .current_dir(cwd.path()));
    fresh.expect_code(0);
    assert!(!fresh.stderr.contains("resuming"), "{}", fresh.stderr);
    assert_file_eq(&cwd.path().join("f.bin"), &original);
    assert_eq!(names_in(cwd.path()), ["f.bin"]);
}

#[test]
fn get_with_a_wrong_partial_fails_checksum_then_succeeds() {
    let original = seeded_bytes(5, 50_000);
    let served = Served::with_files(&[("f.bin", &original)]);
    let cwd = tempfile::tempdir().expect("folder");
    let partial = partial_in(cwd.path(), "f.bin");
    std::fs::write(&partial, [0x5a; 20_000]).expect("garbage partial written");
    let args = ["get", "f.bin", "--server", &served.addr().to_string()];

    let failed = run(udpft(args).current_dir(cwd.path()));
    failed.expect_code(6);
    assert!(
        failed.stderr.contains("resuming from byte 20000"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("checksum"), "{}", failed.stderr);
    assert!(!cwd.path().join("f.bin").exists(), "nothing under NAME");
    assert!(!partial.exists(), "the untrustworthy partial file is gone");

    let retried = run(udpft(args).current_dir(cwd.path()));
    retried.expect_code(0);
    assert!(!retried.stderr.contains("resuming"), "{}", retried.stderr);
    assert_file_eq(&cwd.path().join("f.bin"), &original);
}

// ---------------------------------------------------------------------------------------
// put

#[test]
fn put_of_an_existing_name_is_refused_without_force_and_replaces_with_force() {
    let served = Served::with_files(&[("taken.txt", b"original")]);
    let server = served.addr().to_string();
    let local = tempfile::tempdir().expect("folder");
    let replacement = local.path().join("taken.txt");
    std::fs::write(&replacement, b"replacement bytes").expect("local file written");

    let refused = run(udpft(["put"]).arg(&replacement).args(["--server", &server]));
    refused.expect_code(4);
    assert!(
        refused.stderr.contains("file exists: taken.txt"),
        "{}",
        refused.stderr
    );
    assert_file_eq(&served.path("taken.txt"), b"original");

    run(udpft(["put"])
        .arg(&replacement)
        .args(["--force", "--server", &server]))
    .expect_code(0);
    assert_file_eq(&served.path("taken.txt"), b"replacement bytes");
    assert_eq!(names_in(served.library.path()), ["taken.txt"]);
}

#[test]
fn put_under_a_traversal_or_hidden_name_is_refused() {
    let served = Served::with_files(&[]);
    let local = tempfile::tempdir().expect("folder");
    let file = local.path().join("f.txt");
    std::fs::write(&file, b"f").expect("local file written");
    for name in ["../x", "a/b", "/etc/passwd", "..", ".hidden"] {
        let refused = run(udpft(["put"]).arg(&file).args([
            "--as",
            name,
            "--server",
            &served.addr().to_string(),
        ]));
        refused.expect_code(4);
        assert!(
            refused.stderr.contains("name not allowed"),
            "{name}: {}",
            refused.stderr
        );
    }
    assert!(names_in(served.library.path()).is_empty());
}

#[test]
fn put_of_a_missing_local_file_is_a_local_error() {
    let served = Served::with_files(&[]);
    let local = tempfile::tempdir().expect("folder");
    let failed = run(udpft(["put"])
        .arg(local.path().join("nope.txt"))
        .args(["--server", &served.addr().to_string()]));
    failed.expect_code(3);
    assert!(failed.stderr.contains("nope.txt"), "{}", failed.stderr);
    assert!(names_in(served.library.path()).is_empty());
}

// ---------------------------------------------------------------------------------------
// shell

#[test]
fn a_piped_shell_runs_every_command_quietly_and_exits_with_the_first_failure() {
    let original = seeded_bytes(7, 3000);
    let served = Served::with_files(&[
        ("NAME.bin", &original),
        ("r\u{e9}sum\u{e9} 2026.pdf", b"quoted"),
    ]);
    let cwd = tempfile::tempdir().expect("folder");
    let upload_dir = tempfile::tempdir().expect("upload folder");
    let upload = upload_dir.path().join("sent.txt");
    std::fs::write(&upload, b"sent from the shell").expect("local file written");
    let input = format!(
        "list\nget NAME.bin\nbogus\nget missing\nget \"r\u{e9}sum\u{e9} 2026.pdf\" -o copy.pdf\n\
         put {0} --as renamed.txt\nput {0} --as renamed.txt\nput {0} --as renamed.txt --force\n\
         help\nquit\nget NAME.bin -o after-quit.bin\n",
        upload.display()
    );
    let session = run_with_input(
        udpft(["shell", "--server", &served.addr().to_string()]).current_dir(cwd.path()),
        input.as_bytes(),
    );
    // `bogus` (bad usage, 2) failed first; `get missing` (4) failed too.
    session.expect_code(2);
    let out = session.out();
    // No prompt and no menu at start: the only menu is the one `help` asked for.
    assert!(!out.contains("udpft>"), "{out}");
    assert_eq!(out.matches("┌").count(), 1, "{out}");
    assert!(
        out.starts_with("        3000  "),
        "the listing comes first:\n{out}"
    );
    let err = &session.stderr;
    let expected_in_order = [
        "udpft: unknown command: bogus (type help)",
        "udpft: no such file on server: missing",
        // The hint names what the shell takes: the next line does just that.
        "udpft: server: file exists: renamed.txt (use --force to overwrite)",
    ];
    let mut from = 0;
    for expected in expected_in_order {
        let Some(at) = err[from..].find(expected) else {
            panic!("{expected:?} missing (or out of order) in:\n{err}");
        };
        from += at + expected.len();
    }
    // Every command ran, in order, until `quit`.
    assert_file_eq(&cwd.path().join("NAME.bin"), &original);
    assert_file_eq(&cwd.path().join("copy.pdf"), b"quoted");
    assert_file_eq(&served.path("renamed.txt"), b"sent from the shell");
    assert!(!cwd.path().join("after-quit.bin").exists());
}

#[test]
fn a_piped_shell_that_succeeds_exits_zero() {
    let served = Served::with_files(&[("a.txt", b"a")]);
    let cwd = tempfile::tempdir().expect("folder");
    let session = run_with_input(
        udpft(["shell", "--server", &served.addr().to_string()]).current_dir(cwd.path()),
        b"# a comment\n\nget a.txt -o b.txt\nlist --json\n",
    );
    session.expect_code(0);
    assert!(session.stderr.is_empty(), "{}", session.stderr);
    assert_file_eq(&cwd.path().join("b.txt"), b"a");
}

#[test]
fn shell_ends_cleanly_at_end_of_input() {
    let served = Served::with_files(&[]);
    let session = run_with_input(
        &mut udpft(["shell", "--server", &served.addr().to_string()]),
        b"list\n",
    );
    session.expect_code(0);
    assert!(
        session.out().contains("(the library is empty)"),
        "{}",
        session.out()
    );
}
