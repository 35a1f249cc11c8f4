//! Real TFTP clients through the real `lossy-proxy` at 5 % loss each way (with duplication
//! and reordering; no corruption, which TFTP cannot detect): each still finishes with a
//! byte-identical file, because udpft's server retransmits on its adaptive timer whatever
//! the client's own timer would have taken seconds to recover.

mod live;
mod tftp_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tftp_support::driver::Driver;
use tftp_support::tools;
use udpft::link::seeded_bytes;
use udpft::tftp::ServerConfig;

/// A `lossy-proxy` process in front of `upstream`, killed by its PID when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lossy-proxy"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &upstream.to_string(),
            ])
            .args([
                "--loss",
                "5%",
                "--dup",
                "1%",
                "--reorder",
                "1%",
                "--seed",
                "11",
                "--duration",
                "120",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lossy-proxy starts");
        // Its first line names the address it listens on; it prints it at once.
        let mut line = String::new();
        let stderr = child.stderr.take().expect("piped");
        BufReader::new(stderr)
            .read_line(&mut line)
            .expect("start line");
        let addr = line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_once(','))
            .and_then(|(addr, _)| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected start line: {line}"));
        Self { child, addr }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client run: what it is, its program and package, its arguments before the local
/// path and after it.
type ClientRun<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>, Vec<&'a str>);

#[test]
fn real_clients_finish_byte_identical_through_5_percent_loss() {
    let library = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let bytes = seeded_bytes(21, 1 << 20);
    std::fs::write(library.path().join("f.bin"), &bytes).unwrap();
    let server = Driver::spawn(library.path(), ServerConfig::default());
    let proxy = Proxy::start(server.addr());
    let port = proxy.addr.port().to_string();
    let url = format!("tftp://127.0.0.1:{port}/f.bin");
    let clients: [ClientRun<'_>; 6] = [
        (
            "curl 512",
            "curl",
            "curl",
            vec!["-sS", "--tftp-blksize", "512", "-o"],
            vec![&url],
        ),
        (
            "curl 1468",
            "curl",
            "curl",
            vec!["-sS", "--tftp-blksize", "1468", "-o"],
            vec![&url],
        ),
        (
            "tftp-hpa",
            "tftp",
            "tftp-hpa",
            vec!["-m", "binary", "127.0.0.1", &port, "-c", "get", "f.bin"],
            vec![],
        ),
        (
            "atftp windowsize 4",
            "atftp",
            "atftp",
            vec![
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 4",
                "-g",
                "-r",
                "f.bin",
                "-l",
            ],
            vec!["127.0.0.1", &port],
        ),
        (
            "atftp lockstep",
            "atftp",
            "atftp",
            vec!["--option", "blksize 512", "-g", "-r", "f.bin", "-l"],
            vec!["127.0.0.1", &port],
        ),
        (
            "busybox",
            "busybox",
            "busybox",
            vec!["tftp", "-b", "1468", "-g", "-r", "f.bin", "-l"],
            vec!["127.0.0.1", &port],
        ),
    ];
    let mut runs: Vec<(&str, PathBuf, Command)> = Vec::new();
    for (what, name, package, before, after) in clients {
        let Some(program) = tools::find(name, package) else {
            continue;
        };
        let path = local.path().join(what.replace(' ', "-"));
        let mut c = Command::new(program);
        c.args(before).arg(&path).args(after);
        runs.push((what, path, c));
    }
    for (what, path, mut command) in runs {
        let done = live::run_within(&mut command, b"", Duration::from_secs(90));
        assert_eq!(done.code, 0, "{what}: {}{}", done.out(), done.stderr);
        let got = std::fs::read(&path).unwrap_or_default();
        assert!(
            got == bytes,
            "{what}: {} bytes differ from the 1 MiB sent",
            got.len()
        );
        eprintln!(
            "{what}: 1 MiB through 5 % loss each way in {:.1} s",
            done.elapsed.as_secs_f64()
        );
    }
}
