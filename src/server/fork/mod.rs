//! The *process per session* server, as the classic forking server does it. The parent
//! listens and runs the front door; when a peer proves its address, the parent forks a
//! child that opens and serves that one session and exits. The child binds its own socket
//! to the server's address (SO_REUSEPORT) and connects it to its peer, so the kernel
//! delivers that peer's datagrams to the child (a connected socket is preferred over the
//! listening one) while the client still sees one server address. Children report their
//! progress and their end over a Unix datagram socket ([`report`]); the parent reaps them
//! (no zombies), and asks one to end with a signal (SIGUSR1: yield its slot, SIGUSR2: the
//! server stops). A completed upload's child exits at once: the parent's front door answers
//! a repeated Done, so the child's socket never captures the client's next request.
//!
//! The fork itself is the crate's only unsafe code, in [`fork_child`]. It must run in a
//! single-threaded process (`udpft serve --model fork`), which is why [`super::spawn`]
//! refuses this model.

mod child;
mod report;

use super::log::Logger;
use super::{Driver, ServerConfig, Shutdown};
use crate::library::Library;
use crate::proto::endpoint::{Action, Endpoint, Event, Key};
use crate::proto::server_session::End;
use crate::proto::stats::ServerStats;
use crate::proto::wire::ErrorCode;
use crate::proto::{Failure, Outcome, WindowStats};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// How often the parent wakes, at least, to read its children's reports and reap them.
const REAP_EVERY: Duration = Duration::from_millis(20);

/// How long children may take to exit after being told to stop now, before they are killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

struct Child {
    key: Key,
    /// Whether its end was reported (else its exit is a failure).
    ended: bool,
}

/// Serves `library` on `socket` with a child process per session until `shutdown`.
///
/// # Errors
/// A socket error other than a timeout, or a failed fork.
pub fn run(
    socket: &UdpSocket,
    library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> io::Result<ServerStats> {
    let local = socket.local_addr()?;
    let mut endpoint = Driver::endpoint(config.policy.clone(), library.clone());
    let mut driver = Driver::new(config);
    let (reports, report_tx) = UnixDatagram::pair()?;
    reports.set_nonblocking(true)?;
    let mut children: HashMap<Pid, Child> = HashMap::new();
    let mut report_buf = vec![0u8; report::MAX_REPORT];
    let mut kill_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let log = driver.log;
        report::apply(
            &reports,
            &mut children,
            &mut endpoint,
            &log,
            now,
            &mut report_buf,
        );
        reap(&mut children, &mut endpoint, &log, now);
        driver.tick(shutdown, &mut endpoint, now);
        while let Some(Action::Abort { key, code, .. }) = endpoint.poll_action() {
            let signal = match code {
                ErrorCode::Busy => Signal::SIGUSR1,
                _ => Signal::SIGUSR2,
            };
            for (pid, _) in children.iter().filter(|(_, c)| c.key == key) {
                let _ = kill(*pid, signal);
            }
            if code != ErrorCode::Busy {
                kill_at.get_or_insert(now + EXIT_GRACE);
            }
        }
        if kill_at.is_some_and(|at| now >= at) {
            for pid in children.keys() {
                let _ = kill(*pid, Signal::SIGKILL);
            }
        }
        driver.flush(socket, &mut endpoint);
        if endpoint.is_drained() && children.is_empty() {
            break;
        }
        let deadline = Some(
            endpoint
                .poll_timeout()
                .map_or(now + REAP_EVERY, |at| at.min(now + REAP_EVERY)),
        );
        let Some((peer, len)) = driver.recv(socket, deadline, endpoint.live())? else {
            continue;
        };
        let now = Instant::now();
        // Reports sent before this datagram arrived come first: a child says its upload is
        // committed before its final Ack goes out, so a List that follows sees the file.
        report::apply(
            &reports,
            &mut children,
            &mut endpoint,
            &driver.log,
            now,
            &mut report_buf,
        );
        // A datagram for a child's session that reached the parent (before the child
        // connected its socket, or after it exited) is as good as lost: the timers recover.
        if let Event::Open(grant, _) = endpoint.handle(now, peer, &driver.inbuf[..len]) {
            match fork_child()? {
                Forked::Child => {
                    drop(reports);
                    let first = driver.inbuf[..len].to_vec();
                    let code = child::serve(local, &grant, &first, library, config, &report_tx);
                    std::process::exit(code);
                }
                Forked::Parent(pid) => {
                    let key = (grant.peer, grant.session);
                    children.insert(pid, Child { key, ended: false });
                }
            }
        }
        driver.flush(socket, &mut endpoint);
    }
    Ok(endpoint.stats().clone())
}

/// Collects every child that has exited; one that died before reporting its end failed.
fn reap(children: &mut HashMap<Pid, Child>, endpoint: &mut Endpoint, log: &Logger, now: Instant) {
    while !children.is_empty() {
        let pid = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => pid,
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if let Some(child) = children.remove(&pid) {
            if !child.ended {
                let died = Outcome::Failed(Failure::Local {
                    code: ErrorCode::Other,
                    text: "the session's process died".into(),
                });
                let end = End {
                    outcome: Some(died),
                    bytes: 0,
                    final_block: None,
                    window: WindowStats::default(),
                };
                if let Some(record) = endpoint.ended(child.key, &end, now) {
                    log.session(&record);
                }
            }
        }
    }
}

enum Forked {
    Parent(Pid),
    Child,
}

/// Forks this process.
#[allow(unsafe_code)]
fn fork_child() -> io::Result<Forked> {
    // SAFETY: fork is sound only if no other thread could hold a lock (allocator, stdio)
    // that the child will need. The fork model runs its loop on the process's only thread:
    // `udpft serve --model fork` starts no threads, and `server::spawn` refuses this model.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}
