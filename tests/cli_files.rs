//! Commands over several files, against a real server: `get a b c -o DIR` and `put a b c`
//! try every file, report each, close with a total and exit with the first failure's code
//! (unless `--fail-fast`); quoted patterns are matched against the server's listing;
//! `put -` uploads standard input. Also the documentation commands (`completions`, `man`)
//! and what `serve` says when it starts.

mod live;

use live::{assert_file_eq, names_in, run, run_with_input, udpft, Served};
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use udpft::link::seeded_bytes;

fn server(served: &Served) -> [String; 2] {
    ["--server".into(), served.addr().to_string()]
}

#[test]
fn get_of_several_files_saves_each_and_closes_with_a_total() {
    let files = [
        ("a.bin", seeded_bytes(1, 1000)),
        ("b.bin", seeded_bytes(2, 20_000)),
        ("c.bin", seeded_bytes(3, 0)),
    ];
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let served = Served::with_files(&listed);
    let dir = tempfile::tempdir().unwrap();
    let finished = run(udpft(["get", "a.bin", "b.bin", "c.bin", "-o"])
        .arg(dir.path())
        .arg("-v")
        .args(server(&served)));
    finished.expect_code(0);
    for (name, bytes) in &files {
        assert_file_eq(&dir.path().join(name), bytes);
    }
    let err = &finished.stderr;
    for name in ["a.bin", "b.bin", "c.bin"] {
        let saved = format!("saved {}  ", dir.path().join(name).display());
        assert_eq!(err.matches(&saved).count(), 1, "{saved:?} in {err}");
    }
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("3 files, 20.51 KiB in "),
        "closing line {last:?}"
    );
}

#[test]
fn every_file_is_tried_and_the_first_failure_gives_the_exit_code() {
    let served = Served::with_files(&[("a.txt", b"a"), ("c.txt", b"c")]);
    let dir = tempfile::tempdir().unwrap();
    let finished = run(udpft(["get", "a.txt", "missing.txt", "c.txt"])
        .args(server(&served))
        .current_dir(dir.path()));
    finished.expect_code(4);
    assert_eq!(
        finished.stderr,
        "udpft: no such file on server: missing.txt\n"
    );
    assert_eq!(names_in(dir.path()), ["a.txt", "c.txt"]);

    // --fail-fast stops at the first failure.
    let dir = tempfile::tempdir().unwrap();
    let finished = run(
        udpft(["get", "a.txt", "missing.txt", "c.txt", "--fail-fast"])
            .args(server(&served))
            .current_dir(dir.path()),
    );
    finished.expect_code(4);
    assert_eq!(names_in(dir.path()), ["a.txt"]);
}

#[test]
fn quoted_patterns_are_matched_against_the_listing() {
    let served = Served::with_files(&[
        ("one.iso", b"1"),
        ("two.iso", b"2"),
        ("notes.txt", b"n"),
        ("[literal].txt", b"l"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    run(udpft(["get", "*.iso"])
        .args(server(&served))
        .current_dir(dir.path()))
    .expect_code(0);
    assert_eq!(names_in(dir.path()), ["one.iso", "two.iso"]);

    // Several patterns, a file matched twice is fetched once, and a listed name with
    // pattern characters stands for itself.
    let dir = tempfile::tempdir().unwrap();
    let finished = run(udpft(["get", "t*", "*o.iso", "[literal].txt", "-o"])
        .arg(dir.path())
        .arg("-v")
        .args(server(&served)));
    finished.expect_code(0);
    assert_eq!(names_in(dir.path()), ["[literal].txt", "two.iso"]);
    assert_eq!(
        finished.stderr.matches("saved ").count(),
        2,
        "{}",
        finished.stderr
    );
}

#[test]
fn put_of_several_files_uploads_each_and_reports_refusals() {
    let served = Served::with_files(&[("taken.txt", b"original")]);
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.txt", "taken.txt", "y.txt"] {
        fs::write(dir.path().join(name), name.as_bytes()).unwrap();
    }
    let finished = run(udpft(["put", "x.txt", "taken.txt", "y.txt"])
        .args(server(&served))
        .current_dir(dir.path()));
    finished.expect_code(4);
    assert!(
        finished.stderr.contains("file exists: taken.txt"),
        "{}",
        finished.stderr
    );
    assert_file_eq(&served.path("x.txt"), b"x.txt");
    assert_file_eq(&served.path("y.txt"), b"y.txt");
    assert_file_eq(&served.path("taken.txt"), b"original");
    run(udpft(["put", "taken.txt", "--force"])
        .args(server(&served))
        .current_dir(dir.path()))
    .expect_code(0);
    assert_file_eq(&served.path("taken.txt"), b"taken.txt");
}

#[test]
fn put_dash_uploads_standard_input_under_the_given_name() {
    let served = Served::with_files(&[]);
    let bytes = seeded_bytes(4, 100_000);
    let finished = run_with_input(
        udpft(["put", "-", "--as", "from-stdin.bin"]).args(server(&served)),
        &bytes,
    );
    finished.expect_code(0);
    assert_file_eq(&served.path("from-stdin.bin"), &bytes);
    // Empty input is an empty file.
    run_with_input(
        udpft(["put", "-", "--as", "empty.bin"]).args(server(&served)),
        b"",
    )
    .expect_code(0);
    assert_file_eq(&served.path("empty.bin"), b"");
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    for (shell, marker) in [
        ("bash", "_udpft()"),
        ("zsh", "#compdef udpft"),
        ("fish", "complete -c udpft"),
    ] {
        let script = run(&mut udpft(["completions", shell]));
        script.expect_code(0);
        assert!(script.out().contains(marker), "{shell}: {}", script.out());
        assert!(script.out().contains("no-clobber"), "{shell}");
    }
    let unknown = run(&mut udpft(["completions", "tcsh"]));
    unknown.expect_code(2);
    let man = run(&mut udpft(["man"]));
    man.expect_code(0);
    let page = man.out();
    assert!(
        page.starts_with(".ie") || page.contains(".TH udpft"),
        "{page}"
    );
    for word in ["serve", "get", "put", "shell", "Exit codes"] {
        assert!(page.contains(word), "the manual page lacks {word}");
    }
}

/// Starts `udpft serve ARGS` and returns its first line on standard error, then stops it
/// with Ctrl-C (SIGINT to its PID) and checks it stopped cleanly.
fn first_serve_line(args: &[&str], cwd: &std::path::Path) -> String {
    let mut child = udpft(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(pipe).lines();
        let _ = tx.send(lines.next());
        // Drain the rest, so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let first = rx.recv_timeout(live::CHILD_DEADLINE);
    live::interrupt(&child);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > live::CHILD_DEADLINE {
            let _ = child.kill();
            panic!(
                "udpft serve (pid {}) did not stop on SIGINT: killed",
                child.id()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(status.success(), "{status:?}");
    match first {
        Ok(Some(Ok(line))) => line,
        other => panic!("no first line from udpft serve: {other:?}"),
    }
}

#[test]
fn serve_says_which_folder_it_serves_and_refuses_a_mistyped_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("a.txt"), b"a").unwrap();
    fs::write(root.join("b.txt"), b"b").unwrap();
    let line = first_serve_line(&["--root", "shared"], dir.path());
    let canonical = root.canonicalize().unwrap();
    assert!(
        line.starts_with(&format!(
            "udpft: serving {} (2 files) on 127.0.0.1:",
            canonical.display()
        )),
        "{line}"
    );

    let failed =
        run(udpft(["serve", "--root", "shaerd", "--bind", "127.0.0.1:0"]).current_dir(dir.path()));
    failed.expect_code(3);
    assert!(failed.stderr.contains("give --create"), "{}", failed.stderr);
    assert!(!dir.path().join("shaerd").exists());

    let line = first_serve_line(&["--root", "new", "--create"], dir.path());
    assert!(line.contains("(0 files, just created)"), "{line}");
    assert!(dir.path().join("new").is_dir());

    // Without --root: ./library, created if missing.
    let line = first_serve_line(&[], dir.path());
    assert!(line.contains("library (0 files, just created)"), "{line}");
}
