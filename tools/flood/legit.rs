//! The legitimate client whose experience the attacks are judged by: the library's own
//! [`Client`] from 127.0.0.1, as `udpft ls` and `udpft get` use it, timed from the moment
//! it is created until the listing is decoded or the download verified (its whole-file CRC
//! checked), waiting out any busy answers on the way.
//!
//! The download goes to `/dev/null` (a device is written into, never replaced), so disk
//! writes do not enter the times.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use udpft::client::{Client, ClientOptions, Destination, GetOptions};
use udpft::proto::Config;

/// How long the legitimate client keeps retrying a busy server before it gives up (the
/// real client's 30 s would let one failure dominate a run).
pub const BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// A legitimate operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `udpft ls`.
    Ls,
    /// `udpft get FILE`.
    Get,
}

/// One timed operation.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Which.
    pub op: Op,
    /// From start to verified result (or to the failure).
    pub took: Duration,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A legitimate client of one server.
#[derive(Clone, Debug)]
pub struct Legit {
    server: SocketAddr,
    file: String,
    size: u64,
    options: ClientOptions,
}

impl Legit {
    /// A client of `server` that downloads `file` (of `size` bytes).
    pub fn new(server: SocketAddr, file: &str, size: u64) -> Self {
        Self {
            server,
            file: file.to_owned(),
            size,
            options: ClientOptions {
                config: Config::default(),
                busy_patience: BUSY_PATIENCE,
                ..ClientOptions::default()
            },
        }
    }

    /// Lists the library once.
    pub fn ls(&self) -> Timing {
        self.timed(Op::Ls, |client| {
            client.list().map(|_| ()).map_err(|e| e.to_string())
        })
    }

    /// Downloads the file once and checks its size (the client checked its CRC).
    pub fn get(&self) -> Timing {
        let options = GetOptions {
            resume: false,
            no_clobber: false,
        };
        let dest = Destination::File(PathBuf::from("/dev/null"));
        self.timed(Op::Get, |client| {
            let report = client
                .get_with(&self.file, &dest, options, &mut |_| {})
                .map_err(|e| e.to_string())?;
            (report.size == self.size)
                .then_some(())
                .ok_or_else(|| format!("got {} bytes of {}", report.size, self.size))
        })
    }

    /// Times `work` with a new client. The time ends when the verified result is known, as
    /// the command line shows it; the client's short linger (answering a repeated final
    /// datagram, protocol.md §8.3.1) runs after that, untimed.
    fn timed(&self, op: Op, work: impl FnOnce(&mut Client) -> Result<(), String>) -> Timing {
        let start = Instant::now();
        let mut client = match Client::new(self.server, self.options.clone()) {
            Ok(client) => client,
            Err(e) => return timing(op, start, Err(e.to_string())),
        };
        let result = work(&mut client);
        let timed = timing(op, start, result);
        client.finish_lingering();
        timed
    }

    /// `ls` listings and `gets` downloads, interleaved (ls, get, ls, get…); no new one
    /// starts after `within` (an attack that makes each take seconds would otherwise make
    /// a phase take minutes).
    pub fn phase(&self, ls: u32, gets: u32, within: Duration) -> Vec<Timing> {
        let until = Instant::now() + within;
        let mut timings = Vec::new();
        for i in 0..ls.max(gets) {
            if i < ls && Instant::now() < until {
                timings.push(self.ls());
            }
            if i < gets && Instant::now() < until {
                timings.push(self.get());
            }
        }
        timings
    }
}

fn timing(op: Op, start: Instant, result: Result<(), String>) -> Timing {
    Timing {
        op,
        took: start.elapsed(),
        error: result.err(),
    }
}
