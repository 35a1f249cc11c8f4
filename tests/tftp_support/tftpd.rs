//! A real TFTP server nobody here wrote: tftpd-hpa's `in.tftpd`, started by a test on a free
//! loopback port over a temporary folder, ready (it has answered a request) before the test
//! talks to it, and killed by its PID when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a started server may take to answer its first request.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Tries at a free port (another test may take the port between its probe and the bind).
const STARTS: usize = 5;

/// A running `in.tftpd`, killed (by its PID) when dropped.
pub struct Tftpd {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    root: TempDir,
}

impl Tftpd {
    /// Starts `in.tftpd` on a free 127.0.0.1 port, allowing uploads of new files (`-c`),
    /// with `extra` arguments (`-r blksize`: refuse an option); `None` if it is not
    /// installed (outside CI, after saying so).
    pub fn start(extra: &[&str]) -> Option<Self> {
        let mut args = vec!["-c"];
        args.extend_from_slice(extra);
        Self::start_on("127.0.0.1", &args)
    }

    /// Starts `in.tftpd` on a free port of `ip` (`127.0.0.1`, `::1`) with exactly `args`
    /// beyond the listening ones (no `-c`: no new files).
    ///
    /// # Panics
    /// If it does not answer within [`READY_WITHIN`] after [`STARTS`] tries.
    pub fn start_on(ip: &str, args: &[&str]) -> Option<Self> {
        let program = super::tools::find("in.tftpd", "tftpd-hpa")?;
        let mut root = tempfile::tempdir().expect("server folder");
        for _ in 0..STARTS {
            // A free port: bound and released just before tftpd binds it.
            let probe = UdpSocket::bind((ip, 0)).expect("probe socket");
            let addr = probe.local_addr().expect("probe address");
            drop(probe);
            // -L: stay in the foreground; -u root: keep running as the test's user (root
            // here), so the folder's files are readable; -p: no permission checks beyond
            // the system's.
            let child = Command::new(&program)
                .args(["-L", "-a", &addr.to_string(), "-u", "root", "-p"])
                .args(args)
                .arg("-s")
                .arg(root.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("in.tftpd starts");
            let mut server = Self { child, addr, root };
            if server.ready() {
                return Some(server);
            }
            // Its port was taken: it is killed, and another port tried in the same folder.
            root = server.into_root();
        }
        panic!("in.tftpd did not start on a free port of {ip} in {STARTS} tries");
    }

    /// Whether it answers a read request (for a file it does not have) before
    /// [`READY_WITHIN`]; `false` as soon as it has exited (its bind failed).
    fn ready(&mut self) -> bool {
        let socket = UdpSocket::bind((self.addr.ip(), 0)).expect("probe socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let request = super::packets::rrq("udpft-ready-probe", "octet", &[]);
        let deadline = Instant::now() + READY_WITHIN;
        let mut buf = [0u8; 600];
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            let _ = socket.send_to(&request, self.addr);
            if socket.recv_from(&mut buf).is_ok() {
                return true;
            }
        }
        false
    }

    /// Kills it and returns its folder.
    fn into_root(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().expect("placeholder folder");
        std::mem::replace(&mut self.root, placeholder)
    }

    /// The path of `name` in the served folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The served folder.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The URL of `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("tftp://{}/{name}", self.addr)
    }
}

impl Drop for Tftpd {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
