//! The real `udpft` binary as a client of a TFTP server nobody here wrote: tftpd-hpa's
//! `in.tftpd`, started by each test on a free loopback port and stopped by its PID.
//! `get tftp://HOST:PORT/NAME` and `put PATH tftp://...` move files byte-identical (0 B,
//! 1 B, one block, 5 MiB, 40 MiB at 512-byte blocks past the block-number rollover, several
//! in one command, IPv6), fall back when the server refuses options, land in the same
//! destinations as udpft downloads (folders, `-o -`, links, devices, `--no-clobber`,
//! nothing half-written, never resumed), and exit with the same codes (4 refused, 5 not
//! listening or silent, 3 local, 2 usage, 6 a size other than announced, 130 Ctrl-C).
//! `ls tftp://...` says that TFTP cannot list. Where tftpd-hpa is missing a test fails
//! under CI and is skipped (with its reason) elsewhere.
//!
//! What tftpd-hpa will not do (announce a wrong size, show the mode on the wire, grant an
//! option nobody asked for, named with a terminal escape) a scripted server on a raw
//! socket does.

mod live;
mod tftp_support;

use live::{
    assert_file_eq, closed_port, names_in, partial_in, run, run_with_input, udpft, wait_for,
    Finished, Running, Served, Silent, CHILD_DEADLINE,
};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::FileTypeExt;
use std::process::Stdio;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tftp_support::packets::{data, oack, show};
use tftp_support::tftpd::Tftpd;
use udpft::client::{ClientError, Destination, TftpClient, TftpFile, TftpOptions};
use udpft::link::seeded_bytes;
use udpft::proto::Config;
use udpft::tftp::wire::{Mode, Packet};

/// Writes `files` into the server's folder.
fn put_files(server: &Tftpd, files: &[(&str, &[u8])]) {
    for (name, bytes) in files {
        fs::write(server.path(name), bytes).expect("server file written");
    }
}

/// Runs `udpft ARGS`.
fn udpft_run(args: &[&str]) -> Finished {
    run(&mut udpft(args))
}

/// Asserts that `finished` exited with `code` and said `message` on standard error.
fn expect_failure(finished: &Finished, code: i32, message: &str) {
    finished.expect_code(code);
    assert!(
        finished.stderr.contains(message),
        "stderr {:?} lacks {message:?}",
        finished.stderr
    );
}

/// The count after "datagrams sent " in `-v`'s statistics line.
fn datagrams_sent(stderr: &str) -> u64 {
    let (_, after) = stderr
        .split_once("datagrams sent ")
        .unwrap_or_else(|| panic!("no statistics line in {stderr:?}"));
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[test]
fn downloads_are_byte_identical_one_file_or_several() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let five = seeded_bytes(1, 5 << 20);
    let block = seeded_bytes(2, 1468);
    put_files(
        &server,
        &[
            ("empty", b""),
            ("one", b"1"),
            ("block", &block),
            ("five.bin", &five),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = format!("{}/", dir.path().display());
    // Several URLs in one command, into a folder. A --server that would not resolve is
    // never looked at: only the udpft protocol needs it.
    let finished = udpft_run(&[
        "get",
        &server.url("empty"),
        &server.url("one"),
        &server.url("block"),
        &server.url("five.bin"),
        "-o",
        &out,
        "-v",
        "--server",
        "no-such-host.invalid",
    ]);
    finished.expect_code(0);
    assert_file_eq(&dir.path().join("empty"), b"");
    assert_file_eq(&dir.path().join("one"), b"1");
    assert_file_eq(&dir.path().join("block"), &block);
    assert_file_eq(&dir.path().join("five.bin"), &five);
    assert_eq!(names_in(dir.path()), ["block", "empty", "five.bin", "one"]);
    // -v: a summary line per file, its statistics, and the total.
    assert!(
        finished
            .stderr
            .contains(&format!("saved {out}five.bin  5.00 MiB in ")),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("smoothed RTT"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("4 files, 5.00 MiB in "),
        "{}",
        finished.stderr
    );
    // To standard output; -q says nothing.
    let piped = udpft_run(&["get", &server.url("five.bin"), "-o", "-", "-q"]);
    piped.expect_code(0);
    assert!(piped.stdout == five, "standard output byte-identical");
    assert_eq!(piped.stderr, "");
}

#[test]
fn a_40_mib_download_at_blksize_512_rolls_the_block_number_over() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let big = seeded_bytes(3, 40 << 20);
    put_files(&server, &[("big.bin", &big)]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.bin");
    let finished = run(udpft([
        "get",
        &server.url("big.bin"),
        "--blksize",
        "512",
        "-v",
        "-o",
    ])
    .arg(&dest));
    finished.expect_code(0);
    assert_file_eq(&dest, &big);
    // 81,920 blocks of 512 bytes (and a final empty one): numbers past 65,535 were used.
    let sent = datagrams_sent(&finished.stderr);
    assert!(sent > 81_920, "{sent} datagrams: not 512-byte blocks");
}

#[test]
fn uploads_land_whole_on_the_server() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let five = seeded_bytes(4, 5 << 20);
    let local = dir.path().join("five.bin");
    fs::write(&local, &five).unwrap();
    fs::write(dir.path().join("a.txt"), b"a").unwrap();
    fs::write(dir.path().join("b.txt"), b"bb").unwrap();
    let local = local.display().to_string();
    udpft_run(&["put", &local, &server.url("up.bin")]).expect_code(0);
    assert_file_eq(&server.path("up.bin"), &five);
    // A URL ending in / takes each file's own name.
    run(udpft(["put", "a.txt", "b.txt", &server.url("")]).current_dir(dir.path())).expect_code(0);
    assert_file_eq(&server.path("a.txt"), b"a");
    assert_file_eq(&server.path("b.txt"), b"bb");
    // Standard input, named with --as.
    run_with_input(
        &mut udpft(["put", "-", "--as", "piped.txt", &server.url("")]),
        b"from a pipe",
    )
    .expect_code(0);
    assert_file_eq(&server.path("piped.txt"), b"from a pipe");
    // Netascii: CR LF on the wire, which tftpd-hpa writes back as LF.
    fs::write(dir.path().join("text.txt"), b"one\ntwo\n").unwrap();
    run(udpft(["put", "text.txt", &server.url(""), "--netascii"]).current_dir(dir.path()))
        .expect_code(0);
    assert_file_eq(&server.path("text.txt"), b"one\ntwo\n");
}

#[test]
fn a_server_that_refuses_options_is_still_served() {
    let bytes = seeded_bytes(5, 100_000);
    // tftpd-hpa -r blksize: its OACK leaves blksize out, so the blocks are 512 bytes.
    // Refusing tsize too leaves no option to grant: no OACK, DATA 1 answers the request
    // and the client falls back to plain RFC 1350.
    for refused in [&["-r", "blksize"][..], &["-r", "blksize", "-r", "tsize"]] {
        let Some(server) = Tftpd::start(refused) else {
            return;
        };
        put_files(&server, &[("f.bin", &bytes)]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        let finished = run(udpft(["get", &server.url("f.bin"), "-v", "-o"]).arg(&dest));
        finished.expect_code(0);
        assert_file_eq(&dest, &bytes);
        let sent = datagrams_sent(&finished.stderr);
        assert!(sent >= 100_000 / 512, "{refused:?}: {sent} datagrams");
        let upload = dir.path().join("up.bin");
        fs::write(&upload, &bytes).unwrap();
        run(udpft(["put"]).arg(&upload).arg(server.url("up.bin"))).expect_code(0);
        assert_file_eq(&server.path("up.bin"), &bytes);
    }
}

#[test]
fn a_missing_file_is_refused_with_exit_4_and_leaves_nothing() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let finished = run(udpft(["get", &server.url("missing.bin")]).current_dir(dir.path()));
    expect_failure(
        &finished,
        4,
        &format!(
            "udpft: no such file on server: tftp://{}/missing.bin",
            server.addr
        ),
    );
    assert!(names_in(dir.path()).is_empty(), "no partial file left");
}

#[test]
fn an_upload_the_server_refuses_exits_4_with_its_words() {
    // Without -c, tftpd-hpa creates no new file.
    let Some(server) = Tftpd::start_on("127.0.0.1", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("new.txt"), b"new").unwrap();
    let finished = run(udpft(["put", "new.txt", &server.url("new.txt")]).current_dir(dir.path()));
    expect_failure(
        &finished,
        4,
        &format!("udpft: tftp://{}/new.txt: server: ", server.addr),
    );
    assert!(!server.path("new.txt").exists());
}

#[test]
fn ls_of_a_tftp_url_says_that_tftp_cannot_list() {
    let silent = Silent::new();
    let url = format!("tftp://{}/", silent.addr());
    let finished = udpft_run(&["ls", &url]);
    expect_failure(
        &finished,
        2,
        &format!("udpft: TFTP cannot list files ({url})"),
    );
    // A get of a folder URL cannot be answered either.
    let folder = udpft_run(&["get", &url]);
    expect_failure(&folder, 2, "names no file");
    assert!(!silent.received_anything(), "nothing was sent");
    // The shell takes the same lines: list is refused, get works.
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    put_files(&server, &[("a.txt", b"in the shell")]);
    let served = Served::with_files(&[]);
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "get {} -o {}\nlist {url}\n",
        server.url("a.txt"),
        dir.path().display()
    );
    let shell = run_with_input(
        &mut udpft(["shell", "--server", &served.addr().to_string()]),
        script.as_bytes(),
    );
    expect_failure(&shell, 2, "TFTP cannot list files");
    assert_file_eq(&dir.path().join("a.txt"), b"in the shell");
}

#[test]
fn destinations_are_those_of_udpft_downloads() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    let bytes = seeded_bytes(6, 300_000);
    fs::create_dir(server.path("sub")).unwrap();
    put_files(
        &server,
        &[
            ("f.bin", &bytes),
            ("sub/n.txt", b"nested"),
            (".hidden", b"h"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let get = |url: String, extra: &[&str]| {
        run(udpft(["get"]).arg(url).args(extra).current_dir(dir.path()))
    };
    // No -o: the last part of the name, in the current folder.
    get(server.url("sub/n.txt"), &[]).expect_code(0);
    assert_file_eq(&dir.path().join("n.txt"), b"nested");
    // A name that is no plain local name needs -o.
    let hidden = get(server.url(".hidden"), &[]);
    expect_failure(&hidden, 3, "under its own name");
    expect_failure(&hidden, 3, "choose one with -o PATH");
    get(server.url(".hidden"), &["-o", "h.txt"]).expect_code(0);
    assert_file_eq(&dir.path().join("h.txt"), b"h");
    // --no-clobber keeps an existing file.
    fs::write(dir.path().join("f.bin"), b"keep me").unwrap();
    let kept = get(server.url("f.bin"), &["-n"]);
    expect_failure(&kept, 3, "not replaced (--no-clobber)");
    assert_file_eq(&dir.path().join("f.bin"), b"keep me");
    // A stale partial file is never resumed: the download starts over and replaces.
    fs::write(partial_in(dir.path(), "f.bin"), b"stale bytes").unwrap();
    get(server.url("f.bin"), &[]).expect_code(0);
    assert_file_eq(&dir.path().join("f.bin"), &bytes);
    // A symbolic link is followed and stays a link.
    std::os::unix::fs::symlink("target.bin", dir.path().join("link")).unwrap();
    get(server.url("f.bin"), &["-o", "link"]).expect_code(0);
    assert_file_eq(&dir.path().join("target.bin"), &bytes);
    assert!(fs::symlink_metadata(dir.path().join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    // A device is written into, never replaced.
    get(server.url("f.bin"), &["-o", "/dev/null"]).expect_code(0);
    assert!(fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // A folder that does not exist is a local error.
    let missing = get(server.url("f.bin"), &["-o", "nope/f.bin"]);
    expect_failure(&missing, 3, "cannot write nope/f.bin");
    assert_eq!(
        names_in(dir.path()),
        ["f.bin", "h.txt", "link", "n.txt", "target.bin"],
        "no partial file left"
    );
}

#[test]
fn a_closed_port_fails_at_once_and_a_silent_one_after_the_timeout() {
    let closed = closed_port();
    // In process: the kernel's ICMP answer comes in a round trip.
    let mut client = TftpClient::new(Config::default());
    let file = TftpFile {
        addresses: vec![closed.parse().unwrap()],
        name: "x".into(),
        shown: format!("tftp://{closed}/x"),
    };
    let started = Instant::now();
    let error = client
        .get(
            &file,
            &Destination::Stdout,
            false,
            &TftpOptions::default(),
            &mut |_| {},
        )
        .expect_err("nothing listens there");
    let elapsed = started.elapsed();
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
    eprintln!("closed TFTP port: failed after {elapsed:?}");
    assert!(elapsed < Duration::from_millis(100), "took {elapsed:?}");
    // The binary, process start included.
    let finished = udpft_run(&["get", &format!("tftp://{closed}/x"), "-o", "-"]);
    expect_failure(
        &finished,
        5,
        &format!("udpft: nothing is listening at {closed}"),
    );
    assert!(
        finished.elapsed < Duration::from_secs(2),
        "{:?}",
        finished.elapsed
    );
    // A silent port is given --timeout.
    let silent = Silent::new();
    let finished = udpft_run(&[
        "get",
        &format!("tftp://{}/x", silent.addr()),
        "-o",
        "-",
        "--timeout",
        "0.5",
    ]);
    expect_failure(&finished, 5, "not responding (");
    assert!(finished.elapsed >= Duration::from_millis(500));
    assert!(silent.received_anything());
}

#[test]
fn usage_errors_exit_2_before_anything_is_sent() {
    let silent = Silent::new();
    let url = format!("tftp://{}/x", silent.addr());
    let folder = format!("tftp://{}/", silent.addr());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a"), b"a").unwrap();
    for (args, message) in [
        (vec!["get", "tftp://h:99999/x"], "is not a port number"),
        (vec!["get", "tftp://h/x%zz"], "two hexadecimal digits"),
        (vec!["get", &url, "--blksize", "7"], "--blksize"),
        (vec!["get", &url, "--windowsize", "0"], "--windowsize"),
        (
            vec!["put", "a", &url, "--force"],
            "TFTP cannot ask to replace a file",
        ),
        (vec!["put", "a", "a", &url], "names one file"),
        (vec!["put", "a", &url, "--as", "b"], "both name the upload"),
        (vec!["put", &url, "a"], "comes last"),
        (vec!["put", &folder], "needs a local PATH"),
        (vec!["ls", "name"], "it takes no name"),
    ] {
        let finished = run(udpft(&args).current_dir(dir.path()));
        assert_eq!(finished.code, 2, "{args:?}: {}", finished.stderr);
        assert!(
            finished.stderr.contains(message),
            "{args:?}: {}",
            finished.stderr
        );
    }
    assert!(!silent.received_anything(), "nothing was sent");
}

#[test]
fn ctrl_c_cancels_a_tftp_download_and_leaves_nothing() {
    let Some(server) = Tftpd::start(&[]) else {
        return;
    };
    put_files(&server, &[("big.bin", &seeded_bytes(7, 40 << 20))]);
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(
        udpft(["get", &server.url("big.bin"), "--blksize", "512"]).current_dir(dir.path()),
        Stdio::null(),
    );
    let partial = partial_in(dir.path(), "big.bin");
    wait_for("the download to start", CHILD_DEADLINE, || {
        fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    });
    live::interrupt(&running.child);
    let finished = running.finish_within(CHILD_DEADLINE);
    expect_failure(&finished, 130, "cancelled");
    assert!(
        names_in(dir.path()).is_empty(),
        "nothing left: TFTP cannot resume"
    );
}

#[test]
fn ipv6_urls_take_the_address_in_brackets() {
    if UdpSocket::bind("[::1]:0").is_err() {
        live::skip("no IPv6 loopback here");
        return;
    }
    let Some(server) = Tftpd::start_on("::1", &["-c"]) else {
        return;
    };
    put_files(&server, &[("six.txt", b"over IPv6")]);
    let url = format!("tftp://[::1]:{}/six.txt", server.addr.port());
    let finished = udpft_run(&["get", &url, "-o", "-"]);
    finished.expect_code(0);
    assert_eq!(finished.stdout, b"over IPv6");
}

/// A one-transfer TFTP "server" on a raw socket: it answers a request with `replies`, one
/// after each datagram of the client, and returns every datagram the client sent.
fn scripted(replies: Vec<Vec<u8>>) -> (SocketAddr, JoinHandle<Vec<Vec<u8>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 70_000];
        let Ok((n, client)) = socket.recv_from(&mut buf) else {
            return got;
        };
        got.push(buf[..n].to_vec());
        for reply in replies {
            socket.send_to(&reply, client).unwrap();
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => got.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        got
    });
    (addr, thread)
}

#[test]
fn a_file_of_another_size_than_announced_is_not_saved() {
    let (addr, server) = scripted(vec![oack(&[("tsize", "10")]), data(1, b"12345")]);
    let dir = tempfile::tempdir().unwrap();
    let finished = run(udpft(["get", &format!("tftp://{addr}/f")]).current_dir(dir.path()));
    expect_failure(
        &finished,
        6,
        "the server announced 10 bytes (tsize) but sent 5; nothing was saved",
    );
    assert!(
        names_in(dir.path()).is_empty(),
        "nothing saved, no partial file"
    );
    let got: Vec<String> = server.join().unwrap().iter().map(|d| show(d)).collect();
    assert_eq!(got[..2], ["RRQ f", "ACK 0"]);
    assert!(got[2].starts_with("ERROR"), "the server is told: {got:?}");
}

#[test]
fn netascii_is_asked_for_and_converted_to_local_line_ends() {
    for (url_tail, flag) in [("t.txt", Some("--netascii")), ("t.txt;mode=netascii", None)] {
        // A server that ignores options: DATA 1 answers the request.
        let (addr, server) = scripted(vec![data(1, b"a\r\nb\r\n")]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("t.txt");
        let mut command = udpft(["get", &format!("tftp://{addr}/{url_tail}"), "-o"]);
        command.arg(&dest).args(flag);
        run(&mut command).expect_code(0);
        assert_file_eq(&dest, b"a\nb\n");
        let got = server.join().unwrap();
        match Packet::decode(&got[0]) {
            Ok(Packet::Rrq(request)) => {
                assert_eq!(request.mode, Mode::Netascii);
                assert_eq!(request.filename, b"t.txt");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(show(&got[1]), "ACK 1");
    }
}

#[test]
fn an_option_the_server_grants_unasked_is_refused_and_shown_escaped() {
    // An OACK naming an option never asked for, with a terminal escape in its name.
    let (addr, server) = scripted(vec![oack(&[("\u{1b}[2Jevil", "1")])]);
    let finished = udpft_run(&["get", &format!("tftp://{addr}/f"), "-o", "-"]);
    expect_failure(&finished, 1, "was not asked for");
    assert!(!finished.stderr.contains('\u{1b}'), "{:?}", finished.stderr);
    assert!(
        finished.stderr.contains("\\u{1b}[2Jevil"),
        "{}",
        finished.stderr
    );
    let got: Vec<String> = server.join().unwrap().iter().map(|d| show(d)).collect();
    assert!(got[1].starts_with("ERROR 8"), "the server is told: {got:?}");
}
