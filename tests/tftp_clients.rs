//! TFTP clients nobody here wrote, against udpft's TFTP sessions on a real socket (the
//! single-port test driver of `tftp_support::driver`): tftp-hpa's `tftp`, `atftp`,
//! `busybox tftp` and `curl`, each at every block size it can ask for (512, 1468, 65464)
//! with files of 0 B, 1 B, exactly one block and 5 MiB of random bytes, byte-identical;
//! 40 MiB at 512-byte blocks (block numbers roll over) once; netascii with tftp-hpa's
//! default mode; windowsize with atftp; uploads, and uploads refused; missing files, bad
//! names, the `/` prefix, folders. Then the amplification rules with a raw socket that
//! never acknowledges. A missing client fails under CI and is skipped (with a printed
//! reason) elsewhere.

mod live;
mod tftp_support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tftp_support::driver::Driver;
use tftp_support::packets::{ack, rrq, show};
use tftp_support::tools;
use udpft::link::seeded_bytes;
use udpft::proto::Config;
use udpft::tftp::admit::TftpPolicy;
use udpft::tftp::options::Policy;
use udpft::tftp::wire::{Packet, MAX_PACKET};
use udpft::tftp::ServerConfig;

/// The longest one client run may take.
const DEADLINE: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

/// A library folder and a folder for the clients' files, with a server on the library.
struct Setup {
    library: TempDir,
    local: TempDir,
    server: Driver,
}

impl Setup {
    fn new(config: ServerConfig) -> Self {
        let library = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        let server = Driver::spawn(library.path(), config);
        Self {
            library,
            local,
            server,
        }
    }

    fn writable() -> Self {
        Self::new(ServerConfig {
            allow_write: true,
            ..ServerConfig::default()
        })
    }

    fn put_file(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.library.path().join(name), bytes).unwrap();
    }

    fn local(&self, name: &str) -> PathBuf {
        self.local.path().join(name)
    }

    fn port(&self) -> String {
        self.server.addr().port().to_string()
    }

    fn url(&self, name: &str) -> String {
        format!("tftp://127.0.0.1:{}/{name}", self.port())
    }
}

/// The real clients, each with the block sizes it can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    TftpHpa,
    Atftp,
    Busybox,
    Curl,
}

impl Client {
    const ALL: [Self; 4] = [Self::TftpHpa, Self::Atftp, Self::Busybox, Self::Curl];

    fn program(self) -> Option<PathBuf> {
        match self {
            Self::TftpHpa => tools::find("tftp", "tftp-hpa"),
            Self::Atftp => tools::find("atftp", "atftp"),
            Self::Busybox => tools::find("busybox", "busybox"),
            Self::Curl => tools::find("curl", "curl"),
        }
    }

    /// tftp-hpa's client sends no options: 512-byte blocks only.
    fn blksizes(self) -> &'static [usize] {
        match self {
            Self::TftpHpa => &[512],
            _ => &[512, 1468, 65_464],
        }
    }

    /// The command that downloads `remote` into `local` (octet mode) at `blksize`.
    fn get(self, program: &Path, s: &Setup, remote: &str, local: &Path, blksize: usize) -> Command {
        self.command(program, s, false, remote, local, blksize)
    }

    /// The command that uploads `local` as `remote` (octet mode) at `blksize`.
    fn put(self, program: &Path, s: &Setup, local: &Path, remote: &str, blksize: usize) -> Command {
        self.command(program, s, true, remote, local, blksize)
    }

    fn command(
        self,
        program: &Path,
        s: &Setup,
        put: bool,
        remote: &str,
        local: &Path,
        blksize: usize,
    ) -> Command {
        let mut c = Command::new(program);
        let local = local.to_str().unwrap();
        let port = s.port();
        let size = blksize.to_string();
        let (verb, flag) = if put { ("put", "-p") } else { ("get", "-g") };
        match self {
            Self::TftpHpa => {
                let files = if put {
                    [local, remote]
                } else {
                    [remote, local]
                };
                c.args(["-m", "binary", "127.0.0.1", &port, "-c", verb])
                    .args(files);
            }
            Self::Atftp => {
                c.args([
                    "--option",
                    &format!("blksize {blksize}"),
                    flag,
                    "-r",
                    remote,
                    "-l",
                    local,
                    "127.0.0.1",
                    &port,
                ]);
            }
            Self::Busybox => {
                c.args([
                    "tftp",
                    "-b",
                    &size,
                    flag,
                    "-r",
                    remote,
                    "-l",
                    local,
                    "127.0.0.1",
                    &port,
                ]);
            }
            Self::Curl => {
                let way = if put { "-T" } else { "-o" };
                c.args(["-sS", "--tftp-blksize", &size, way, local, &s.url(remote)]);
            }
        }
        c
    }
}

fn run(command: &mut Command) -> live::Finished {
    live::run_within(command, b"", DEADLINE)
}

/// Everything a client printed, both streams.
fn printed(done: &live::Finished) -> String {
    format!("{}{}", done.out(), done.stderr)
}

fn assert_same(path: &Path, expected: &[u8], what: &str) {
    let got = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{what}: {} not written: {e}", path.display()));
    assert!(
        got.len() == expected.len() && got == expected,
        "{what}: {} bytes, expected {}",
        got.len(),
        expected.len()
    );
}

#[test]
fn every_client_downloads_every_size_at_every_block_size_byte_identical() {
    let s = Setup::new(ServerConfig::default());
    let big = seeded_bytes(5, 5 * MIB);
    s.put_file("big.bin", &big);
    s.put_file("empty", b"");
    s.put_file("one", b"x");
    let mut ran = 0;
    for client in Client::ALL {
        let Some(program) = client.program() else {
            continue;
        };
        for &blksize in client.blksizes() {
            let block = seeded_bytes(blksize as u64, blksize);
            let block_name = format!("block{blksize}");
            s.put_file(&block_name, &block);
            for (name, bytes) in [
                ("empty", &b""[..]),
                ("one", b"x"),
                (&block_name[..], &block[..]),
                ("big.bin", &big[..]),
            ] {
                let local = s.local(&format!("{client:?}-{blksize}-{name}"));
                let what = format!("{client:?} get {name} at blksize {blksize}");
                let done = run(&mut client.get(&program, &s, name, &local, blksize));
                assert_eq!(done.code, 0, "{what}: {}", printed(&done));
                assert_same(&local, bytes, &what);
                ran += 1;
            }
        }
    }
    eprintln!("{ran} downloads verified");
}

#[test]
fn a_40_mib_download_at_512_byte_blocks_rolls_over() {
    let s = Setup::new(ServerConfig::default());
    let Some(program) = Client::Curl.program() else {
        return;
    };
    let bytes = seeded_bytes(40, 40 * MIB);
    s.put_file("huge.bin", &bytes);
    let local = s.local("huge.bin");
    let started = Instant::now();
    let done = run(&mut Client::Curl.get(&program, &s, "huge.bin", &local, 512));
    assert_eq!(done.code, 0, "{}", printed(&done));
    assert_same(&local, &bytes, "40 MiB at 512");
    eprintln!(
        "40 MiB in 81,920 blocks of 512 bytes (rolled over): {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn tftp_hpa_default_netascii_mode_stores_lf_and_sends_cr_lf() {
    let mut s = Setup::writable();
    let text = b"first line\nsecond\r bare cr\n\nlast line without end";
    s.put_file("notes.txt", text);
    // On the wire: CR LF (and CR NUL), as a raw netascii request shows.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
        .send_to(&rrq("notes.txt", "netascii", &[]), s.server.addr())
        .unwrap();
    let mut buf = vec![0; MAX_PACKET];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(
        from,
        s.server.addr(),
        "single port: the reply comes from the listening port"
    );
    let Ok(Packet::Data { block: 1, data }) = Packet::decode(&buf[..n]) else {
        panic!("{}", show(&buf[..n]))
    };
    assert_eq!(
        data,
        b"first line\r\nsecond\r\0 bare cr\r\n\r\nlast line without end"
    );
    socket.send_to(&ack(1), s.server.addr()).unwrap();
    let Some(program) = Client::TftpHpa.program() else {
        return;
    };
    // tftp-hpa's default mode is netascii: the file on disk ends its lines in LF.
    let local = s.local("notes.txt");
    let done = run(Command::new(&program).args([
        "127.0.0.1",
        &s.port(),
        "-c",
        "get",
        "notes.txt",
        local.to_str().unwrap(),
    ]));
    assert_eq!(done.code, 0, "{}", printed(&done));
    assert_same(&local, text, "netascii download");
    // And back: an upload in netascii is stored with LF.
    let done = run(Command::new(&program).args([
        "127.0.0.1",
        &s.port(),
        "-c",
        "put",
        local.to_str().unwrap(),
        "back.txt",
    ]));
    assert_eq!(done.code, 0, "{}", printed(&done));
    s.server.stop();
    assert_same(&s.library.path().join("back.txt"), text, "netascii upload");
}

#[test]
fn atftp_negotiates_a_window() {
    let mut s = Setup::new(ServerConfig::default());
    let Some(program) = Client::Atftp.program() else {
        return;
    };
    let bytes = seeded_bytes(8, 5 * MIB);
    s.put_file("w.bin", &bytes);
    let local = s.local("w.bin");
    let done = run(Command::new(&program).args([
        "--option",
        "blksize 1468",
        "--option",
        "windowsize 8",
        "-g",
        "-r",
        "w.bin",
        "-l",
        local.to_str().unwrap(),
        "127.0.0.1",
        &s.port(),
    ]));
    assert_eq!(done.code, 0, "{}", printed(&done));
    assert_same(&local, &bytes, "windowsize 8");
    let stats = s.server.stop();
    let blocks = bytes.len() / 1468 + 1;
    // One ACK per window of 8, not one per block.
    assert!(
        (stats.received as usize) < blocks / 4,
        "{} datagrams received for {blocks} blocks",
        stats.received
    );
}

#[test]
fn every_client_uploads_byte_identical_and_nothing_half_written_is_visible() {
    let mut s = Setup::writable();
    let bytes = seeded_bytes(3, 2 * MIB + 77);
    let local = s.local("upload.bin");
    std::fs::write(&local, &bytes).unwrap();
    std::fs::write(s.local("empty"), b"").unwrap();
    let mut expected = Vec::new();
    for client in Client::ALL {
        let Some(program) = client.program() else {
            continue;
        };
        for &blksize in client.blksizes() {
            let remote = format!("{client:?}-{blksize}.bin");
            let done = run(&mut client.put(&program, &s, &local, &remote, blksize));
            assert_eq!(
                done.code,
                0,
                "{client:?} put at {blksize}: {}",
                printed(&done)
            );
            expected.push((remote, bytes.clone()));
        }
        let remote = format!("{client:?}-empty");
        let done = run(&mut client.put(&program, &s, &s.local("empty"), &remote, 512));
        assert_eq!(done.code, 0, "{client:?} put empty: {}", printed(&done));
        expected.push((remote, Vec::new()));
    }
    s.server.stop();
    for (name, bytes) in &expected {
        assert_same(&s.library.path().join(name), bytes, name);
    }
    let names = live::names_in(s.library.path());
    assert_eq!(
        names.len(),
        expected.len(),
        "no temporary files left: {names:?}"
    );
}

#[test]
fn uploads_are_refused_without_write_access_and_existing_files_are_kept() {
    let mut s = Setup::new(ServerConfig::default());
    let Some(curl) = Client::Curl.program() else {
        return;
    };
    std::fs::write(s.local("f"), b"new").unwrap();
    let done = run(&mut Client::Curl.put(&curl, &s, &s.local("f"), "f", 512));
    // curl's exit code 69 is TFTP's access violation (its message text is unreliable).
    assert_eq!(done.code, 69, "{}", printed(&done));
    s.server.stop();
    assert!(live::names_in(s.library.path()).is_empty());
    let s = Setup::writable();
    s.put_file("kept", b"old");
    std::fs::write(s.local("f"), b"new").unwrap();
    let done = run(&mut Client::Curl.put(&curl, &s, &s.local("f"), "kept", 512));
    // 73: TFTP's "file already exists".
    assert_eq!(
        done.code,
        73,
        "an existing file is not overwritten: {}",
        printed(&done)
    );
    assert_eq!(
        std::fs::read(s.library.path().join("kept")).unwrap(),
        b"old"
    );
}

#[test]
fn missing_files_bad_names_folders_and_the_slash_prefix() {
    let s = Setup::new(ServerConfig::default());
    s.put_file("pxelinux.0", b"boot image");
    std::fs::create_dir(s.library.path().join("boot")).unwrap();
    std::fs::write(s.library.path().join("boot/inner"), b"hidden in a folder").unwrap();
    let Some(tftp) = Client::TftpHpa.program() else {
        return;
    };
    let get = |remote: &str| {
        let local = s.local("out");
        let _ = std::fs::remove_file(&local);
        let done = run(Command::new(&tftp).args([
            "-m",
            "binary",
            "127.0.0.1",
            &s.port(),
            "-c",
            "get",
            remote,
            local.to_str().unwrap(),
        ]));
        (done, std::fs::read(&local).ok())
    };
    let (done, got) = get("/pxelinux.0");
    assert_eq!(done.code, 0, "{}", printed(&done));
    assert_eq!(got.as_deref(), Some(&b"boot image"[..]));
    for (remote, code) in [
        ("missing", "Error code 1"),
        ("boot/inner", "Error code 1"),
        ("/boot/inner", "Error code 1"),
        ("../etc/passwd", "Error code 1"),
        (".hidden", "Error code 2"),
        ("..", "Error code 2"),
    ] {
        let (done, _) = get(remote);
        assert!(
            printed(&done).contains(code),
            "{remote}: {}",
            printed(&done)
        );
    }
    if let Some(curl) = Client::Curl.program() {
        let done = run(Command::new(&curl).args([
            "-sS",
            "-o",
            s.local("x").to_str().unwrap(),
            &s.url("missing"),
        ]));
        // 68: TFTP's "file not found".
        assert_eq!(done.code, 68, "{}", printed(&done));
    }
}

// ---- amplification ---------------------------------------------------------------------

/// A server whose unproven sessions give up after 0.9 s (3 × 0.3 s), so a test can watch
/// one end.
fn quick() -> Setup {
    Setup::new(ServerConfig {
        timing: Config {
            timeout: Duration::from_millis(300),
            ..Config::for_server()
        },
        policy: Policy::default(),
        ..ServerConfig::default()
    })
}

/// Sends `request` from `sockets` (each once) and collects every byte that comes back
/// until 1.5 s pass (the sessions give up at 0.9 s); returns (bytes sent, bytes received,
/// datagrams received).
fn never_ack(s: &Setup, sockets: &[UdpSocket], request: &[u8]) -> (usize, usize, usize) {
    for socket in sockets {
        socket.send_to(request, s.server.addr()).unwrap();
    }
    let until = Instant::now() + Duration::from_millis(1500);
    let (mut received, mut datagrams) = (0, 0);
    let mut buf = vec![0; MAX_PACKET];
    for socket in sockets {
        socket.set_nonblocking(true).unwrap();
    }
    while Instant::now() < until {
        let mut any = false;
        for socket in sockets {
            while let Ok(n) = socket.recv(&mut buf) {
                received += n;
                datagrams += 1;
                any = true;
            }
        }
        if !any {
            // Wait for the next datagram on the first socket, up to the end of the window.
            sockets[0].set_nonblocking(false).unwrap();
            let left = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            sockets[0]
                .set_read_timeout(Some(left.min(Duration::from_millis(50))))
                .unwrap();
            if let Ok(n) = sockets[0].recv(&mut buf) {
                received += n;
                datagrams += 1;
            }
            sockets[0].set_nonblocking(true).unwrap();
        }
    }
    (request.len() * sockets.len(), received, datagrams)
}

fn sockets(n: usize) -> Vec<UdpSocket> {
    (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect()
}

#[test]
fn a_peer_that_never_acknowledges_gets_one_datagram_per_request() {
    let s = quick();
    s.put_file("file.bin", &seeded_bytes(9, MIB));
    // Without options: block 1 once, never again.
    let plain = rrq("file.bin", "octet", &[]);
    let (sent, received, datagrams) = never_ack(&s, &sockets(1), &plain);
    assert_eq!(datagrams, 1);
    assert_eq!(received, 516);
    eprintln!(
        "RRQ without options: {sent} B in, {received} B out: ratio {:.1}",
        received as f64 / sent as f64
    );
    // With options: only the OACK.
    let with = rrq(
        "file.bin",
        "octet",
        &[("blksize", "65464"), ("tsize", "0"), ("windowsize", "64")],
    );
    let (sent, received, datagrams) = never_ack(&s, &sockets(1), &with);
    assert_eq!(datagrams, 1);
    assert!(
        received <= sent,
        "OACK {received} B for a request of {sent} B"
    );
    eprintln!(
        "RRQ with options: {sent} B in, {received} B out: ratio {:.2}",
        received as f64 / sent as f64
    );
    // A flood from many ports of one prefix: at most one datagram per request, and no
    // more bytes than the prefix's budget for unproven peers allows (a burst of a second's
    // worth, 64 KiB by default, and its refill over the 1.5 s watched).
    let (sent, received, datagrams) = never_ack(&s, &sockets(200), &plain);
    let budget = TftpPolicy::default().unproven_prefix_rate as usize;
    assert!(datagrams <= 200);
    assert!(
        received <= budget + budget * 3 / 2 + 516,
        "{received} B to unproven peers of one prefix"
    );
    eprintln!(
        "flood of 200 RRQs from 200 ports: {sent} B in, {received} B out ({datagrams} \
         datagrams): ratio {:.1}",
        received as f64 / sent as f64
    );
    let (sent, received, _) = never_ack(&s, &sockets(200), &with);
    assert!(received <= sent);
    eprintln!(
        "flood of 200 RRQs with options: ratio {:.2}",
        received as f64 / sent as f64
    );
}

#[test]
fn replies_come_from_the_listening_port_and_unknown_peers_get_error_5() {
    let s = Setup::new(ServerConfig::default());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
        .send_to(&tftp_support::packets::data(1, b"stray"), s.server.addr())
        .unwrap();
    let mut buf = vec![0; MAX_PACKET];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(from, s.server.addr());
    assert!(
        show(&buf[..n]).starts_with("ERROR 5"),
        "{}",
        show(&buf[..n])
    );
    // An ACK from an unknown peer is dropped without a word.
    socket.send_to(&ack(3), s.server.addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(socket.recv_from(&mut buf).is_err());
    let _: SocketAddr = from;
}
