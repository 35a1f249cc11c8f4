//! A session thread's whole life: open the session its grant describes (with its own clone
//! of the library), hand it the datagram that proved its peer, then run it on the datagrams
//! the dispatcher forwards, sending on the shared socket, reporting progress now and then
//! and its end once.

use super::super::{flush_session, ProgressClock};
use super::{Inbound, Report};
use crate::library::Library;
use crate::net;
use crate::proto::endpoint::SHUTTING_DOWN;
use crate::proto::grant::Grant;
use crate::proto::server_session::{server_done, End, ServerSession};
use crate::proto::wire::{ErrorCode, MAX_DATAGRAM};
use crate::proto::Config;
use std::net::UdpSocket;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

/// What a session thread works with.
pub(super) struct Session<'a> {
    pub(super) socket: &'a UdpSocket,
    pub(super) config: &'a Config,
    pub(super) inbox: &'a Receiver<Inbound>,
    pub(super) reports: &'a Sender<Report>,
    pub(super) recycle: &'a Sender<Vec<u8>>,
}

impl Session<'_> {
    /// Opens the session of `grant` (handing it `first`, the datagram that proved its peer)
    /// and runs it until it is over.
    pub(super) fn run(&self, grant: &Grant, first: Vec<u8>, mut library: Library) {
        let key = (grant.peer, grant.session);
        let peer = grant.peer;
        let mut transfer = match grant.start(Instant::now(), self.config, &mut library) {
            Ok(transfer) => transfer,
            Err(refusal) => {
                let _ = self.reports.send(Report::Refused(key, refusal));
                return;
            }
        };
        let _ = self.reports.send(Report::Opened);
        self.handle(&mut transfer, first);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut sent = 0;
        let mut progress = ProgressClock::new(Instant::now());
        loop {
            let now = Instant::now();
            transfer.handle_timeout(now);
            sent += flush_session(self.socket, &mut transfer, peer, now, &mut buf);
            if server_done(&transfer) {
                let _ = self.reports.send(Report::Ended {
                    key,
                    end: End::of(&transfer),
                    sent,
                });
                return;
            }
            if progress.due(now) {
                let _ = self
                    .reports
                    .send(Report::Progress(key, transfer.progress()));
            }
            let until = transfer
                .poll_timeout()
                .map_or(progress.at(), |t| t.min(progress.at()));
            let wait = until.saturating_duration_since(now).min(net::MAX_WAIT);
            match self.inbox.recv_timeout(wait) {
                Ok(Inbound::Datagram(bytes)) => self.handle(&mut transfer, bytes),
                Ok(Inbound::Abort(code, text)) => transfer.abort(code, text),
                Err(RecvTimeoutError::Disconnected) => {
                    transfer.abort(ErrorCode::ShuttingDown, SHUTTING_DOWN)
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            sent += flush_session(self.socket, &mut transfer, peer, Instant::now(), &mut buf);
        }
    }

    fn handle(&self, transfer: &mut ServerSession, bytes: Vec<u8>) {
        transfer.handle_datagram(Instant::now(), &bytes);
        let _ = self.recycle.send(bytes);
    }
}
