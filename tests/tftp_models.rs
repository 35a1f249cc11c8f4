//! TFTP on the same port in every server model, through the real `udpft serve --tftp`:
//! curl and busybox download and upload byte-identical files, a missing file is TFTP's
//! error 1, and the udpft protocol keeps working on the same socket. And the privilege
//! rule: TFTP uploads as root are refused unless `--allow-root` says otherwise.

#[macro_use]
mod live;
mod tftp_support;

use live::servers::*;
use std::fs;
use std::process::Command;
use tftp_support::tools;
use udpft::link::seeded_bytes;

fn serves_tftp_beside_udpft_on_one_port(model: &str) {
    let (Some(curl), Some(busybox)) = (
        tools::find("curl", "curl"),
        tools::find("busybox", "busybox"),
    ) else {
        return;
    };
    let content = seeded_bytes(61, 1 << 20);
    let dirs = Dirs::with(&[("boot.img", &content)]);
    let args = ["--tftp", "--tftp-write", "--allow-root"];
    let server = Server::start(model, dirs.root(), &args);
    let port = server.addr.port().to_string();
    let url = |name: &str| format!("tftp://127.0.0.1:{port}/{name}");
    // Download: curl with a large block, busybox plain.
    let by_curl = dirs.scratch().join("by-curl");
    let done = live::run(
        Command::new(&curl)
            .args(["-sS", "--tftp-blksize", "1468", &url("boot.img"), "-o"])
            .arg(&by_curl),
    );
    assert!((done.code == 0), "{model}: curl: {}", done.stderr);
    assert!(
        fs::read(&by_curl).unwrap() == content,
        "{model}: curl's copy differs"
    );
    let by_busybox = dirs.scratch().join("by-busybox");
    let done = live::run(
        Command::new(&busybox)
            .args(["tftp", "-g", "-r", "boot.img", "-l"])
            .arg(&by_busybox)
            .args(["127.0.0.1", &port]),
    );
    assert!((done.code == 0), "{model}: busybox: {}", done.stderr);
    assert!(
        fs::read(&by_busybox).unwrap() == content,
        "{model}: busybox's copy differs"
    );
    // Upload: the file appears whole, under its name.
    let upload = seeded_bytes(62, 300_000);
    let local = dirs.scratch().join("up.bin");
    fs::write(&local, &upload).unwrap();
    let done = live::run(
        Command::new(&curl)
            .args(["-sS", "-T"])
            .arg(&local)
            .arg(url("up.bin")),
    );
    assert!((done.code == 0), "{model}: curl upload: {}", done.stderr);
    assert!(
        fs::read(dirs.root().join("up.bin")).unwrap() == upload,
        "{model}: upload differs"
    );
    // A missing file: TFTP's "file not found" (curl's exit code 68).
    let done = live::run(Command::new(&curl).args(["-sS", &url("missing"), "-o", "/dev/null"]));
    assert_eq!(done.code, 68, "{model}: {}", done.stderr);
    // The udpft protocol on the same socket.
    let got = download(server.addr, "up.bin", dirs.scratch(), "via-udpft").expect("udpft get");
    assert!(got == upload, "{model}: udpft's copy differs");
    let stopped = server.stop();
    assert!(stopped.contains(" failed=0 "), "{model}: {stopped}");
}
for_models!(serves_tftp_beside_udpft_on_one_port);

#[test]
fn tftp_uploads_as_root_are_refused_unless_allowed() {
    if !nix::unistd::geteuid().is_root() {
        return live::skip("the rule is about running as root");
    }
    let dirs = Dirs::with(&[("f", b"x")]);
    let done = live::run(
        Command::new(UDPFT)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--tftp",
                "--tftp-write",
                "--root",
            ])
            .arg(dirs.root()),
    );
    assert_eq!(done.code, 3, "{}", done.stderr);
    assert!(done.stderr.contains("root"), "{}", done.stderr);
}
