//! The real server with TFTP on (what `udpft serve --tftp` runs), in this process: the
//! table model on 127.0.0.1:0 behind the one front door, every reply from the listening
//! port. Tests describe the TFTP side with `udpft::tftp::ServerConfig` (timers, option
//! limits, writes allowed, overwrite) and get the server's counters back at the stop.

use std::net::SocketAddr;
use std::path::Path;
use udpft::library::{Library, LibraryOptions};
use udpft::proto::admission::Policy;
use udpft::proto::stats::ServerStats;
use udpft::server::{self, ServerHandle};
use udpft::tftp::admit::TftpPolicy;
use udpft::tftp::ServerConfig;

/// A running server.
pub struct Driver {
    addr: SocketAddr,
    server: Option<ServerHandle>,
}

impl Driver {
    /// Serves the folder `root` with TFTP as `config` says on 127.0.0.1 (a free port).
    pub fn spawn(root: &Path, config: ServerConfig) -> Self {
        Self::with(root, config, TftpPolicy::default())
    }

    /// As [`Driver::spawn`], with the budget of unproven peers of `budget`.
    pub fn with(root: &Path, config: ServerConfig, budget: TftpPolicy) -> Self {
        let library = Library::open(root, LibraryOptions::default()).expect("library opens");
        let policy = Policy {
            session: config.timing,
            tftp: Some(TftpPolicy {
                options: config.policy,
                write: config.allow_write,
                overwrite: config.overwrite,
                ..budget
            }),
            ..Policy::default()
        };
        let config = server::ServerConfig {
            policy,
            ..server::ServerConfig::default()
        };
        let server = server::spawn("127.0.0.1:0".parse().expect("address"), library, config)
            .expect("server starts");
        Self {
            addr: server.addr,
            server: Some(server),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and returns its counters.
    pub fn stop(&mut self) -> ServerStats {
        self.server
            .take()
            .map(|s| s.stop().expect("server stops"))
            .unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}
