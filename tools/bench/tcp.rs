//! A TCP copy of a file over loopback with `socat`, the reference a windowed transfer is set
//! against: a receiving `socat` listens on a free port and writes what it receives to a
//! file, a sending `socat` reads the file and connects, both moving blocks of the chunk's
//! size (`-b`). The copy is timed from the sender's start to both programs' exit, checked
//! byte for byte, and removed.
//!
//! The receiver is known to be listening once the kernel lists its port in the LISTEN state
//! in `/proc/net/tcp`: connecting to find out would use up its one connection.

use crate::children::ChildGuard;
use crate::results::mb_per_s;
use crate::workload::same_bytes;
use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long `socat` gets to listen, and the copy to finish beyond its deadline.
const WITHIN: Duration = Duration::from_secs(10);

/// A finished, verified copy.
#[derive(Clone, Copy, Debug)]
pub struct TcpCopy {
    /// File bytes per second in MB/s, from the sender's start to the end of both programs.
    pub goodput: f64,
}

/// Whether `socat` can be run here.
pub fn available() -> bool {
    Command::new("socat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Copies `source` to `dest` over TCP on 127.0.0.1 with `socat` moving `block`-byte blocks;
/// `scratch` holds the two programs' logs.
///
/// # Errors
/// If socat cannot be started, does not listen or finish in time, fails, or the copy
/// differs.
pub fn copy(source: &Path, dest: &Path, block: u16, scratch: &Path) -> io::Result<TcpCopy> {
    // A port that was free a moment ago.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let block = format!("-b{block}");
    let mut receiver = Command::new("socat");
    receiver
        .args(["-u", &block])
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
        .arg(format!("CREATE:{}", dest.display()));
    let mut receiver =
        ChildGuard::spawn("socat (receiver)", receiver, &scratch.join("socat-in.log"))?;
    let deadline = Instant::now() + WITHIN;
    while !listening(port)? {
        if receiver.exited().is_some() || Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "socat did not listen on 127.0.0.1:{port}:\n{}",
                receiver.log_tail()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let mut sender = Command::new("socat");
    sender
        .args(["-u", &block])
        .arg(format!("OPEN:{},rdonly", source.display()))
        .arg(format!("TCP:127.0.0.1:{port}"));
    let mut sender = ChildGuard::spawn("socat (sender)", sender, &scratch.join("socat-out.log"))?;
    let deadline = Instant::now() + WITHIN;
    let (sent, received) = loop {
        if let (Some(a), Some(b)) = (sender.exited(), receiver.exited()) {
            break (a, b);
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("the socat copy did not finish in time"));
        }
        // Both are usually done within milliseconds of each other: poll finely.
        std::thread::sleep(Duration::from_micros(200));
    };
    let elapsed = started.elapsed();
    if !sent.success() || !received.success() {
        return Err(io::Error::other(format!(
            "socat failed ({sent}, {received}):\n{}\n{}",
            sender.log_tail(),
            receiver.log_tail()
        )));
    }
    if !same_bytes(source, dest)? {
        return Err(io::Error::other("the socat copy differs from the original"));
    }
    std::fs::remove_file(dest)?;
    Ok(TcpCopy {
        goodput: mb_per_s(std::fs::metadata(source)?.len(), elapsed),
    })
}

/// Whether a socket listens on 127.0.0.1:`port` (`/proc/net/tcp`: local address
/// `0100007F:PORT`, state `0A`).
fn listening(port: u16) -> io::Result<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    Ok(listed(&table, port))
}

fn listed(table: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let address = fields.next();
        let state = fields.nth(1);
        address == Some(local.as_str()) && state == Some("0A")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_is_found_in_the_kernel_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
                     0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n   \
                     1: 0100007F:1F91 0100007F:D431 01 00000000:00000000\n";
        assert!(listed(table, 0x1F90));
        // Established, not listening.
        assert!(!listed(table, 0x1F91));
        assert!(!listed(table, 80));
    }
}
