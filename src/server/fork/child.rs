//! A session child's whole life: bind a socket connected to the peer, open the session the
//! parent's front door granted, serve it, report to the parent, and exit. SIGUSR1 asks it to
//! yield its slot (the server is full and it is slow), SIGUSR2 to stop (the server stops);
//! Ctrl-C reaching the whole process group changes nothing here: the parent decides.

use super::super::{flush_session, ProgressClock, ServerConfig};
use super::report::Report;
use crate::library::Library;
use crate::net;
use crate::proto::endpoint::{SHUTTING_DOWN, YIELDED};
use crate::proto::grant::{Grant, Op};
use crate::proto::server_session::{server_done, End};
use crate::proto::wire::{ErrorCode, Message, MAX_DATAGRAM};
use crate::proto::{Outcome, WindowStats};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Exit codes of a session child (the parent learns the outcome from its reports).
const EXIT_COMPLETE: i32 = 0;
const EXIT_FAILED: i32 = 1;
const EXIT_REFUSED: i32 = 3;

/// Serves the session of `grant`, proven by the datagram `first`; returns the exit code.
pub(super) fn serve(
    local: SocketAddr,
    grant: &Grant,
    first: &[u8],
    mut library: Library,
    config: &ServerConfig,
    reports: &UnixDatagram,
) -> i32 {
    let pid = std::process::id();
    let say = |report: Report| {
        let _ = reports.send(&report.encode(pid));
    };
    let yield_now = Arc::new(AtomicBool::new(false));
    let stop_now = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&yield_now));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGUSR2, Arc::clone(&stop_now));
    let peer = grant.peer;
    let Ok(socket) = net::bind(local, true).and_then(|s| s.connect(peer).map(|()| s)) else {
        say(Report::Ended {
            end: End {
                outcome: None,
                bytes: 0,
                final_block: None,
                window: WindowStats::default(),
            },
            sent: 0,
        });
        return EXIT_FAILED;
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut transfer = match grant.start(Instant::now(), &config.policy.session, &mut library) {
        Ok(transfer) => transfer,
        Err(refusal) => {
            let len = Message::Error {
                session: grant.session,
                code: refusal.code,
                text: refusal.text.as_bytes(),
            }
            .encode(&mut buf);
            let _ = socket.send(&buf[..len]);
            say(Report::Refused);
            return EXIT_REFUSED;
        }
    };
    say(Report::Opened);
    transfer.handle_datagram(Instant::now(), first);
    let mut inbuf = vec![0u8; MAX_DATAGRAM];
    let mut receiver = net::Receiver::new();
    let mut progress = ProgressClock::new(Instant::now());
    let mut sent = 0;
    let mut committed = false;
    loop {
        let now = Instant::now();
        if yield_now.swap(false, Ordering::SeqCst) {
            transfer.abort(ErrorCode::Busy, YIELDED);
        }
        if stop_now.swap(false, Ordering::SeqCst) {
            transfer.abort(ErrorCode::ShuttingDown, SHUTTING_DOWN);
        }
        transfer.handle_timeout(now);
        if !committed && grant.op == Op::Put && transfer.outcome() == Some(&Outcome::Complete) {
            // Told before the final Ack goes out, so the client's next List sees the file.
            committed = true;
            say(Report::Committed);
        }
        sent += flush_session(&socket, &mut transfer, peer, now, &mut buf);
        if server_done(&transfer) {
            let end = End::of(&transfer);
            let complete = matches!(end.outcome, Some(Outcome::Complete));
            say(Report::Ended { end, sent });
            return if complete { EXIT_COMPLETE } else { EXIT_FAILED };
        }
        if progress.due(now) {
            say(Report::Progress(transfer.progress()));
        }
        let deadline = transfer
            .poll_timeout()
            .map_or(progress.at(), |at| at.min(progress.at()));
        match receiver.recv_until(&socket, &mut inbuf, Some(deadline)) {
            Ok(Some((len, _))) => transfer.handle_datagram(Instant::now(), &inbuf[..len]),
            Ok(None) => {}
            Err(_) => transfer.abort(ErrorCode::Io, "the session's socket failed"),
        }
    }
}
