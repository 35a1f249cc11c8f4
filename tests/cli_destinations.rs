//! Where `udpft get -o PATH` puts a download, for every kind of destination, with the real
//! binary against a real server: a destination is never damaged. A FIFO, a character
//! device and a Unix socket are written into (never replaced by a regular file), a symbolic
//! link stays a link while its target gets the bytes, a replaced file keeps its permission
//! bits, a folder receives `DIR/NAME`, `--no-clobber` keeps an existing file, and a
//! destination that cannot be written fails before a single datagram is sent. A disk
//! that fills is a local error that keeps the partial file, and a closed output pipe ends
//! the client quietly.
//!
//! Every test works inside its own temporary folder and touches nothing outside it.

mod live;

use live::{
    assert_file_eq, names_in, run, udpft, wait_for, Running, Served, Silent, CHILD_DEADLINE,
};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;
use udpft::link::seeded_bytes;

/// Runs `udpft get NAME -o DEST` (plus `extra`) against `served`, in `cwd`.
fn get(served: &Served, name: &str, dest: &Path, extra: &[&str]) -> live::Finished {
    run(udpft(["get", name, "-o"])
        .arg(dest)
        .args(extra)
        .args(["--server", &served.addr().to_string()]))
}

#[test]
fn a_fifo_is_written_into_and_stays_a_fifo() {
    let original = seeded_bytes(11, 200_000);
    let served = Served::with_files(&[("data.bin", &original)]);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let reader = {
        let fifo = fifo.clone();
        thread::spawn(move || {
            let mut bytes = Vec::new();
            fs::File::open(&fifo)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            bytes
        })
    };
    get(&served, "data.bin", &fifo, &[]).expect_code(0);
    assert!(
        reader.join().unwrap() == original,
        "the reader got other bytes"
    );
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(names_in(dir.path()), ["pipe"], "no partial file beside it");
}

#[test]
fn a_character_device_is_written_into_and_stays_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("null");
    // The null device's numbers (1, 3), made inside the test's folder: needs root.
    let made = Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        live::skip("cannot create a character device here (mknod needs root)");
        return;
    }
    let served = Served::with_files(&[("big.bin", &seeded_bytes(12, 300_000))]);
    get(&served, "big.bin", &device, &[]).expect_code(0);
    let meta = fs::symlink_metadata(&device).unwrap();
    assert!(meta.file_type().is_char_device(), "{meta:?}");
    assert_eq!(names_in(dir.path()), ["null"], "no partial file beside it");
}

#[test]
fn a_unix_socket_is_connected_to_and_written_into() {
    let original = seeded_bytes(13, 50_000);
    let served = Served::with_files(&[("data.bin", &original)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socket");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        bytes
    });
    get(&served, "data.bin", &path, &[]).expect_code(0);
    assert!(
        reader.join().unwrap() == original,
        "the listener got other bytes"
    );
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
}

#[test]
fn a_symlink_stays_a_link_and_its_target_gets_the_download() {
    let original = seeded_bytes(14, 5000);
    let served = Served::with_files(&[("data.bin", &original)]);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.bin");
    fs::write(&target, b"old contents").unwrap();
    let link = dir.path().join("link.bin");
    std::os::unix::fs::symlink("target.bin", &link).unwrap();
    get(&served, "data.bin", &link, &[]).expect_code(0);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("target.bin"));
    assert_file_eq(&target, &original);
    assert_eq!(names_in(dir.path()), ["link.bin", "target.bin"]);

    // A link to nothing yet: its target is created, the link kept.
    let dangling = dir.path().join("dangling.bin");
    std::os::unix::fs::symlink("created.bin", &dangling).unwrap();
    get(&served, "data.bin", &dangling, &[]).expect_code(0);
    assert!(fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_file_eq(&dir.path().join("created.bin"), &original);
}

#[test]
fn a_replaced_file_keeps_its_permission_bits() {
    let original = seeded_bytes(15, 3000);
    let served = Served::with_files(&[("data.bin", &original)]);
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.bin");
    fs::write(&private, b"secret").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    get(&served, "data.bin", &private, &[]).expect_code(0);
    assert_file_eq(&private, &original);
    let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

#[test]
fn a_file_with_other_names_is_written_into_so_every_name_sees_the_download() {
    let original = seeded_bytes(17, 5000);
    let served = Served::with_files(&[("data.bin", &original)]);
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.bin");
    let other = dir.path().join("other.bin");
    fs::write(&one, b"old bytes").unwrap();
    fs::hard_link(&one, &other).unwrap();
    let inode = fs::metadata(&one).unwrap().ino();
    get(&served, "data.bin", &one, &[]).expect_code(0);
    assert_file_eq(&one, &original);
    assert_file_eq(&other, &original);
    assert_eq!(
        fs::metadata(&one).unwrap().ino(),
        inode,
        "the file was replaced"
    );
    assert_eq!(
        live::names_in(dir.path()),
        ["one.bin", "other.bin"],
        "no partial left"
    );
}

#[test]
fn a_folder_receives_the_file_under_its_name() {
    let original = seeded_bytes(16, 2000);
    let served = Served::with_files(&[("data.bin", &original)]);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("into");
    fs::create_dir(&folder).unwrap();
    get(&served, "data.bin", &folder, &[]).expect_code(0);
    assert_file_eq(&folder.join("data.bin"), &original);
    fs::remove_file(folder.join("data.bin")).unwrap();
    // With a trailing slash too.
    let mut slashed = folder.clone().into_os_string();
    slashed.push("/");
    get(&served, "data.bin", Path::new(&slashed), &[]).expect_code(0);
    assert_file_eq(&folder.join("data.bin"), &original);
    assert_eq!(names_in(&folder), ["data.bin"]);
}

/// Runs `udpft get data.bin -o DEST` against a socket that never answers and checks it
/// fails at once with exit 3 and `message`, having sent nothing.
fn assert_refused_before_sending(dest: &Path, extra: &[&str], message: &str) {
    let silent = Silent::new();
    let failed = run(udpft(["get", "data.bin", "-o"])
        .arg(dest)
        .args(extra)
        .args(["--server", &silent.addr()]));
    failed.expect_code(3);
    assert_eq!(failed.stderr, format!("udpft: {message}\n"));
    assert!(
        !silent.received_anything(),
        "a datagram was sent before the destination was checked"
    );
}

#[test]
fn a_missing_parent_folder_fails_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("nope").join("x.bin");
    assert_refused_before_sending(
        &dest,
        &[],
        &format!("cannot write {}: No such file or directory", dest.display()),
    );
    // A path ending in / names a folder, which must exist.
    let mut folder = dir.path().join("nodir").into_os_string();
    folder.push("/");
    assert_refused_before_sending(
        Path::new(&folder),
        &[],
        &format!(
            "cannot write {}: No such file or directory",
            dir.path().join("nodir").join("data.bin").display()
        ),
    );
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );
}

#[test]
fn a_folder_in_the_way_fails_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data.bin");
    fs::create_dir(&folder).unwrap();
    // `-o DIR` where DIR/NAME is itself a folder.
    assert_refused_before_sending(
        dir.path(),
        &[],
        &format!("cannot write {}: Is a directory", folder.display()),
    );
}

#[test]
fn no_clobber_keeps_an_existing_file_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("kept.bin");
    fs::write(&existing, b"keep me").unwrap();
    assert_refused_before_sending(
        &existing,
        &["--no-clobber"],
        &format!(
            "cannot write {}: File exists; not replaced (--no-clobber)",
            existing.display()
        ),
    );
    assert_file_eq(&existing, b"keep me");
    assert_eq!(names_in(dir.path()), ["kept.bin"], "no partial file left");
    // -n is the short form; a file that does not exist yet is written.
    let served = Served::with_files(&[("data.bin", b"new")]);
    get(&served, "data.bin", &dir.path().join("fresh.bin"), &["-n"]).expect_code(0);
    assert_file_eq(&dir.path().join("fresh.bin"), b"new");
}

#[test]
fn a_refused_download_leaves_no_partial_file() {
    let served = Served::with_files(&[]);
    let dir = tempfile::tempdir().unwrap();
    let failed = get(&served, "missing.bin", &dir.path().join("out.bin"), &[]);
    failed.expect_code(4);
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );
}

#[test]
fn a_disk_that_fills_is_a_local_error_that_keeps_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    fs::create_dir(&small).unwrap();
    let Some(_mount) = live::Tmpfs::mount(&small, "1m") else {
        live::skip("cannot mount a tmpfs here (needs root)");
        return;
    };
    let served = Served::with_files(&[("big.bin", &seeded_bytes(17, 3 << 20))]);
    let dest = small.join("big.bin");
    let failed = get(&served, "big.bin", &dest, &[]);
    failed.expect_code(3);
    let partial = small.join(".big.bin.udpft-part");
    assert_eq!(
        failed.stderr,
        format!(
            "udpft: cannot write {}: No space left on device; the partial file {} is kept: \
             run the same command again to resume\n",
            dest.display(),
            partial.display()
        )
    );
    assert!(!dest.exists());
    assert!(fs::metadata(&partial).unwrap().len() > 0);
}

#[test]
fn a_closed_output_pipe_ends_the_client_quietly() {
    let served = Served::with_files(&[("big.bin", &seeded_bytes(18, 5 << 20))]);
    let mut running = Running::start_with_stdout(
        &mut udpft([
            "get",
            "big.bin",
            "-o",
            "-",
            "--server",
            &served.addr().to_string(),
        ]),
        Stdio::null(),
    );
    // Like `| head -c 10`: read ten bytes, then close the pipe.
    let mut stdout = running.child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let finished = running.finish_within(CHILD_DEADLINE);
    finished.expect_code(0);
    assert!(finished.stderr.is_empty(), "{:?}", finished.stderr);
}

/// Starts `udpft get big.bin` in `dir` with small chunks (so it runs for seconds) and
/// returns once its partial file holds bytes.
fn slow_download(served: &Served, dir: &Path) -> (Running, std::path::PathBuf) {
    let running = Running::start(
        udpft([
            "get",
            "big.bin",
            "--chunk",
            "512",
            "--server",
            &served.addr().to_string(),
        ])
        .current_dir(dir),
        Stdio::null(),
    );
    let partial = dir.join(".big.bin.udpft-part");
    wait_for("the download to start", CHILD_DEADLINE, || {
        fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    });
    (running, partial)
}

#[test]
fn a_download_into_the_current_folder_can_be_resumed_after_the_server_stops() {
    // The server stops mid-download without waiting (grace 0): the client is told, keeps
    // its partial file and says how to resume.
    let mut config = udpft::server::ServerConfig::default();
    config.policy.grace = Duration::ZERO;
    let mut served = Served::configured(
        "127.0.0.1:0".parse().unwrap(),
        &[("big.bin", &seeded_bytes(19, 16 << 20))],
        config,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (running, partial) = slow_download(&served, dir.path());
    served.stop();
    let finished = running.finish_within(CHILD_DEADLINE);
    // Told by the server (4), or by its host once it is gone (5).
    assert!(
        finished.code == 4 || finished.code == 5,
        "exit {}: {}",
        finished.code,
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .contains("is kept: run the same command again to resume"),
        "{}",
        finished.stderr
    );
    assert!(fs::metadata(&partial).unwrap().len() > 0);
    assert!(!dir.path().join("big.bin").exists());
}

#[test]
fn ctrl_c_cancels_a_download_and_keeps_its_partial_file() {
    let served = Served::with_files(&[("big.bin", &seeded_bytes(20, 16 << 20))]);
    let dir = tempfile::tempdir().unwrap();
    let (running, partial) = slow_download(&served, dir.path());
    // What Ctrl-C sends.
    live::interrupt(&running.child);
    let finished = running.finish_within(CHILD_DEADLINE);
    finished.expect_code(130);
    assert_eq!(
        finished.stderr,
        "udpft: cancelled by the user; the partial file .big.bin.udpft-part is kept: run the \
         same command again to resume\n"
    );
    assert!(fs::metadata(&partial).unwrap().len() > 0);
    assert!(!dir.path().join("big.bin").exists());
}
