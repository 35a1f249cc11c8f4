//! The *process per session* server, as the classic forking server does it. The parent
//! listens; for each new request it forks a child that opens and serves that one session
//! and exits. The child binds its own socket to the server's address (SO_REUSEPORT) and
//! connects it to its peer, so the kernel delivers that peer's datagrams to the child (a
//! connected socket is preferred over the listening one) while the client still sees one
//! server address. The parent reaps children as they exit (no zombies) and runs at most
//! `max_sessions` of them; past that, requests are told the server is busy.
//!
//! The fork itself is the crate's only unsafe code, in [`fork_child`]. It must run in a
//! single-threaded process (`udpft serve --model fork`), which is why
//! [`super::spawn`] refuses this model.

use super::{
    admission, flush_session, log_failure, recv_message, refuse, reply_unknown, send_error, Grace,
    ServerConfig, Shutdown, Stage,
};
use crate::ids::IdSource;
use crate::library::Library;
use crate::net;
use crate::proto::table::{open_session, ServerStats};
use crate::proto::wire::{Kind, Message, MAX_DATAGRAM};
use crate::proto::Outcome;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Exit codes of a session child.
const EXIT_COMPLETE: i32 = 0;
const EXIT_FAILED: i32 = 1;
const EXIT_REFUSED: i32 = 3;
const EXIT_NO_SOCKET: i32 = 4;

struct Child {
    key: (SocketAddr, u32),
    token: u32,
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
    let mut stats = ServerStats::default();
    let mut ids = IdSource::new();
    let mut children: HashMap<Pid, Child> = HashMap::new();
    let mut sessions: HashMap<(SocketAddr, u32), Pid> = HashMap::new();
    let mut requests: HashMap<(SocketAddr, u32), u32> = HashMap::new();
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut outbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut grace = Grace::default();
    loop {
        reap(&mut children, &mut sessions, &mut requests, &mut stats);
        match grace.check(shutdown, config, Instant::now()) {
            // Pass the stop on: a `kill PID` reaches only the parent. Each child then runs
            // its own grace period (abandoning an upload at once, finishing a download).
            Stage::Began => {
                for pid in children.keys() {
                    let _ = kill(*pid, Signal::SIGTERM);
                }
            }
            // The children's grace periods end at about the same time as ours; give them a
            // moment to clean up and exit, then stop any that are left.
            Stage::Over => {
                let deadline = Instant::now() + Duration::from_secs(2);
                while !children.is_empty() && Instant::now() < deadline {
                    reap(&mut children, &mut sessions, &mut requests, &mut stats);
                    std::thread::sleep(Duration::from_millis(5));
                }
                for pid in children.keys() {
                    let _ = kill(*pid, Signal::SIGKILL);
                }
                let deadline = Instant::now() + Duration::from_secs(1);
                while !children.is_empty() && Instant::now() < deadline {
                    reap(&mut children, &mut sessions, &mut requests, &mut stats);
                    std::thread::yield_now();
                }
                break;
            }
            Stage::Serving | Stage::Draining => {}
        }
        if grace.draining() && children.is_empty() {
            break;
        }
        // Wake often enough to reap exited children promptly.
        let deadline = Some(Instant::now() + Duration::from_millis(20));
        let received = recv_message(
            &mut receiver,
            socket,
            &mut inbuf,
            deadline,
            &mut outbuf,
            &mut stats,
        )?;
        let Some((peer, datagram, message)) = received else {
            continue;
        };
        let len = datagram.len();
        match message.kind() {
            Kind::List | Kind::Get | Kind::Put => {
                let token = message.session();
                if requests.contains_key(&(peer, token)) {
                    continue;
                }
                let max = config.limits.max_sessions;
                if let Some(no) = admission(&grace, children.len(), max, "session processes") {
                    refuse(socket, peer, token, &no, len, &mut outbuf, &mut stats);
                    continue;
                }
                let id = ids.next_id();
                match fork_child()? {
                    Forked::Child => {
                        let code =
                            serve_child(local, peer, id, &message, len, library, config, shutdown);
                        std::process::exit(code);
                    }
                    Forked::Parent(pid) => {
                        stats.opened += 1;
                        children.insert(
                            pid,
                            Child {
                                key: (peer, id),
                                token,
                            },
                        );
                        sessions.insert((peer, id), pid);
                        requests.insert((peer, token), id);
                    }
                }
            }
            Kind::Accept => stats.unexpected += 1,
            _ => {
                // A datagram for a child's session that arrived before the child connected
                // its socket: the child's timers recover it, as from a loss.
                if !sessions.contains_key(&(peer, message.session())) {
                    reply_unknown(socket, peer, &message, len, &mut outbuf, &mut stats);
                }
            }
        }
    }
    Ok(stats)
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

/// Collects every child that has exited, counting its outcome by its exit code.
fn reap(
    children: &mut HashMap<Pid, Child>,
    sessions: &mut HashMap<(SocketAddr, u32), Pid>,
    requests: &mut HashMap<(SocketAddr, u32), u32>,
    stats: &mut ServerStats,
) {
    while !children.is_empty() {
        let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, _, _)) => (pid, EXIT_FAILED),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if let Some(child) = children.remove(&pid) {
            sessions.remove(&child.key);
            requests.remove(&(child.key.0, child.token));
            match code {
                EXIT_COMPLETE => stats.completed += 1,
                EXIT_REFUSED => {
                    stats.opened -= 1;
                    stats.refused += 1;
                }
                _ => stats.failed += 1,
            }
        }
    }
}

/// The child's whole life: open the session, serve it on a socket connected to the peer,
/// and return the exit code.
#[allow(clippy::too_many_arguments)] // each is one plain fact the child inherits
fn serve_child(
    local: SocketAddr,
    peer: SocketAddr,
    id: u32,
    request: &Message<'_>,
    request_len: usize,
    mut library: Library,
    config: &ServerConfig,
    shutdown: &Shutdown,
) -> i32 {
    let Ok(socket) = net::bind(local, true).and_then(|s| s.connect(peer).map(|()| s)) else {
        return EXIT_NO_SOCKET;
    };
    let mut stats = ServerStats::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut session = match open_session(
        Instant::now(),
        &config.session,
        &mut library,
        id,
        request,
        request_len,
    ) {
        Some(Ok(session)) => session,
        Some(Err(refusal)) => {
            send_error(
                &socket,
                peer,
                request.session(),
                &refusal,
                request_len,
                &mut buf,
                &mut stats,
            );
            return EXIT_REFUSED;
        }
        None => return EXIT_REFUSED,
    };
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut grace = Grace::default();
    loop {
        let now = Instant::now();
        let stage = grace.check(shutdown, config, now);
        stage.apply(&mut session);
        session.handle_timeout(now);
        flush_session(&socket, &mut session, peer, now, &mut buf, &mut stats);
        if session.is_finished() {
            return match session.outcome() {
                Some(Outcome::Complete) => EXIT_COMPLETE,
                Some(Outcome::Failed(failure)) => {
                    log_failure(peer, failure);
                    EXIT_FAILED
                }
                None => EXIT_FAILED,
            };
        }
        match receiver.recv_until(&socket, &mut inbuf, session.poll_timeout()) {
            Ok(Some((len, _))) => {
                if let Ok(message) = Message::decode(&inbuf[..len]) {
                    if message.session() == id {
                        session.handle_message(Instant::now(), &message);
                    } else if message.session() == request.session() {
                        session.handle_repeated_request(len);
                    }
                }
            }
            Ok(None) => {}
            Err(_) => return EXIT_NO_SOCKET,
        }
    }
}
