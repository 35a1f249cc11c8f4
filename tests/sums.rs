//! `udpft sum` against every server model (`loop`, `table`, `table --cpu-workers 0|2`,
//! `threads`, `fork`) behind the real `udpft serve` binary: the SHA-256 lines match what
//! `sha256sum` prints for the same files (0 B, 1 B and 8 MiB) and pass `sha256sum -c`, the
//! CRC32s match `crc32fast`, and hidden, missing and badly named files are refused with
//! exit code 4 while the other names are still answered. `ls --sum` and the shell's `sum`
//! show the same checksums.

#[macro_use]
mod live;

use live::servers::{Dirs, Server};
use live::{run, run_with_input, udpft, Finished, Silent};
use std::path::Path;
use std::process::Command;
use udpft::link::seeded_bytes;

/// The files every suite checks: empty, one byte, and a large one (not a multiple of any
/// block size).
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("one", b"x".to_vec()),
        ("big.bin", seeded_bytes(12, (8 << 20) + 7)),
    ]
}

/// What `sha256sum NAME…` prints in `dir`.
fn sha256sum(dir: &Path, names: &[&str]) -> String {
    let out = Command::new("sha256sum")
        .args(names)
        .current_dir(dir)
        .output()
        .expect("sha256sum (coreutils) runs");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8(out.stdout).expect("text")
}

fn sum_at(server: &Server, args: &[&str]) -> Finished {
    let addr = server.addr.to_string();
    run(udpft(["sum", "--server", &addr]).args(args))
}

/// The suite each model passes; `model` is the model's name and any serve options.
fn sum_suite(model: &str) {
    let mut words = model.split_whitespace();
    let name = words.next().expect("a model");
    let extra: Vec<&str> = words.collect();
    let files = files();
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, &b[..])).collect();
    let mut library = listed.clone();
    library.push((".hidden", b"secret"));
    let dirs = Dirs::with(&library);
    let server = Server::start(name, dirs.root(), &extra);
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();

    let sha = sum_at(&server, &names);
    sha.expect_code(0);
    assert_eq!(sha.out(), sha256sum(dirs.root(), &names), "{model}: sha256");
    let check = Command::new("sha256sum")
        .args(["-c", "--strict", "-"])
        .current_dir(dirs.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&sha.stdout)?;
            child.wait()
        })
        .expect("sha256sum -c runs");
    assert!(check.success(), "{model}: sha256sum -c accepts the lines");

    let mut args = vec!["--algo", "crc32"];
    args.extend(&names);
    let crc = sum_at(&server, &args);
    crc.expect_code(0);
    let want: String = files
        .iter()
        .map(|(n, b)| format!("{:08x}  {n}\n", crc32fast::hash(b)))
        .collect();
    assert_eq!(crc.out(), want, "{model}: crc32");

    // Refusals name the file, and the names around them are still answered.
    let mixed = sum_at(&server, &["one", ".hidden", "missing", "a\\b", "empty"]);
    mixed.expect_code(4);
    assert_eq!(
        mixed.out(),
        sha256sum(dirs.root(), &["one", "empty"]),
        "{model}: the good names"
    );
    for expected in [
        "hidden files are not served",
        "no such file on server: missing",
        "contains a path separator",
    ] {
        assert!(
            mixed.stderr.contains(expected),
            "{model}: stderr lacks {expected:?}: {}",
            mixed.stderr
        );
    }
    server.stop();
}

for_models!(sum_suite:
    loop_model "loop",
    table "table",
    table_hashing_on_the_loop "table --cpu-workers 0",
    table_with_two_cpu_workers "table --cpu-workers 2",
    threads "threads",
    fork "fork"
);

#[test]
fn ls_sum_and_the_shells_sum_show_the_same_checksums_as_sha256sum() {
    let files = files();
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, &b[..])).collect();
    let dirs = Dirs::with(&listed);
    let server = Server::start("table", dirs.root(), &[]);
    let addr = server.addr.to_string();
    let want = sha256sum(dirs.root(), &["big.bin", "empty", "one"]);
    let digests: Vec<&str> = want.lines().map(|l| &l[..64]).collect();

    let ls = run(&mut udpft(["ls", "--sum", "--server", &addr]));
    ls.expect_code(0);
    let shown: Vec<String> = ls
        .out()
        .lines()
        .map(|l| l.rsplit("  ").next().expect("a column").to_owned())
        .collect();
    assert_eq!(
        shown, digests,
        "ls --sum: one digest per listed file, in order"
    );

    let json = run(&mut udpft(["ls", "--sum", "--json", "--server", &addr]));
    json.expect_code(0);
    assert!(
        json.out().contains("\"name\":\"one\",\"size\":1,"),
        "{}",
        json.out()
    );
    assert!(json
        .out()
        .contains(&format!("\"sha256\":\"{}\"", digests[2])));

    let shell = run_with_input(
        &mut udpft(["shell", "--server", &addr]),
        b"sum big.bin empty one\n",
    );
    shell.expect_code(0);
    assert_eq!(shell.out(), want, "the shell's sum");
    server.stop();
}

#[test]
fn a_server_that_never_answers_a_sum_is_said_to_be_perhaps_older_than_checksums() {
    let silent = Silent::new();
    let addr = silent.addr();
    let out = run(&mut udpft([
        "sum",
        "--server",
        &addr,
        "--timeout",
        "0.3",
        "f",
    ]));
    out.expect_code(5);
    assert!(silent.received_anything(), "the request was sent");
    assert!(
        out.stderr
            .contains("a server older than checksums (sum) does not answer them"),
        "{}",
        out.stderr
    );
}
