//! A grant: what the front door promised a request it accepted, kept until the peer proves
//! its address and then turned into a session by [`Grant::start`].
//!
//! A grant is small, owns nothing (no file, no buffer: the name is held inline), and
//! carries everything the session needs: the request's terms, the version of the file the
//! Accept described, or the listing snapshot whose size the Accept announced. The same
//! function starts the session in every model, whether in the front door's process or in a
//! forked child with its own store.

use super::checksum::Checksum;
use super::refusal::Refusal;
use super::server_session::ServerSession;
use super::session::{chunk_count, Config, MemSource};
use super::store::{FileInfo, Store};
use super::transfer::{Opening, Plan, Transfer};
use super::wire::{Algo, Message, MAX_NAME_LEN};
use crate::tftp::admit::TftpTerms;
use crate::tftp::ServerSession as TftpSession;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// The listing.
    List,
    /// A download.
    Get,
    /// An upload.
    Put,
    /// A checksum (its transfer carries the result, protocol.md §22).
    Sum,
}

impl Op {
    /// The lower-case name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Get => "get",
            Self::Put => "put",
            Self::Sum => "sum",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The terms of an accepted request, before its peer proved its address.
#[derive(Clone)]
pub struct Grant {
    /// The peer the Accept went to.
    pub peer: SocketAddr,
    /// The session id the Accept named.
    pub session: u32,
    /// The request's token.
    pub token: u32,
    /// What was asked.
    pub op: Op,
    name: [u8; MAX_NAME_LEN],
    name_len: u8,
    /// The granted chunk size.
    pub chunk: u16,
    /// The granted window (1: stop-and-wait, answered in version 1).
    pub window: u16,
    /// The size the Accept announced.
    pub size: u64,
    /// The first byte sent (a resumed download), 0 otherwise.
    pub offset: u64,
    /// An upload may replace an existing file.
    pub overwrite: bool,
    /// The version of the file a download's Accept described.
    pub file: Option<FileInfo>,
    /// The listing snapshot a List's Accept described.
    pub listing: Option<Arc<[u8]>>,
    /// When the (latest) Accept went out: the proof that answers it measures the session's
    /// first round trip.
    pub accepted_at: Option<Instant>,
    /// The terms of a TFTP request (`None`: the udpft protocol).
    pub tftp: Option<Box<TftpTerms>>,
    /// The algorithm of a Sum.
    pub algo: Option<Algo>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("peer", &self.peer)
            .field("session", &self.session)
            .field("op", &self.op)
            .field("name", &String::from_utf8_lossy(self.name()))
            .field("size", &self.size)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// A grant of `op` on `name` (at most [`MAX_NAME_LEN`] bytes: the codec's limit) with
    /// the rest of its terms zero; the caller fills them in.
    pub fn new(peer: SocketAddr, session: u32, token: u32, op: Op, name: &[u8]) -> Self {
        let name_len = name.len().min(MAX_NAME_LEN);
        let mut inline = [0u8; MAX_NAME_LEN];
        inline[..name_len].copy_from_slice(&name[..name_len]);
        Self {
            peer,
            session,
            token,
            op,
            name: inline,
            name_len: name_len as u8,
            chunk: 0,
            window: 1,
            size: 0,
            offset: 0,
            overwrite: false,
            file: None,
            listing: None,
            accepted_at: None,
            tftp: None,
            algo: None,
        }
    }

    /// The file name asked for (empty for a listing).
    pub fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len)]
    }

    /// The Accept that tells the peer these terms.
    pub fn accept(&self) -> Message<'static> {
        Message::Accept {
            session: self.session,
            token: self.token,
            chunk: self.chunk,
            window: self.window,
            size: self.size,
            offset: self.offset,
        }
    }

    /// The sequence number of the transfer's Done (for the acknowledgement of a repeated
    /// Done after an upload's session has ended).
    pub fn done_seq(&self) -> u64 {
        chunk_count(self.size - self.offset.min(self.size), self.chunk) + 1
    }

    /// The session these terms open, now that the peer proved its address: the file is
    /// opened (it must still be the version the Accept described) or the upload created.
    ///
    /// The Accept went out already and the peer's datagram acknowledged it, so a download
    /// starts at Data 1; an upload's receiver starts waiting for Data 1 (the proving
    /// datagram, which the caller hands it next). A TFTP session goes on from the packet the
    /// front door sent first.
    ///
    /// # Errors
    /// The store's refusal, to send to the peer under the session id.
    pub fn start(
        &self,
        now: Instant,
        config: &Config,
        store: &mut dyn Store,
    ) -> Result<ServerSession, Refusal> {
        if let Some(terms) = &self.tftp {
            return self.start_tftp(now, config, store, terms);
        }
        let plan = |opening| Plan {
            session: self.session,
            size: self.size,
            offset: self.offset,
            chunk: self.chunk,
            window: self.window,
            opening,
            prefix_crc: 0,
        };
        let mut transfer = match self.op {
            Op::List => {
                let listing = self.listing.clone().unwrap_or_else(|| Arc::from(&[][..]));
                Transfer::send(
                    now,
                    config,
                    plan(Opening::Data),
                    Box::new(MemSource(listing)),
                )
            }
            Op::Get => {
                let source = store.open(self.name(), &self.file_info())?;
                Transfer::send(now, config, plan(Opening::Data), source)
            }
            Op::Put => {
                let sink = store.create(self.name(), self.size, self.overwrite)?;
                let opening = Opening::Accept { token: self.token };
                Transfer::receive(now, config, plan(opening), sink)
            }
            Op::Sum => {
                let algo = self.algo.unwrap_or(Algo::Sha256);
                let sum = store.checksum(self.name(), &self.file_info(), algo)?;
                return Ok(self.start_sum(now, config, &sum));
            }
        };
        // The proof answered the Accept: the session's first round trip, so that its first
        // retransmission timer follows the path instead of `rto_initial`, and a windowed
        // sender's congestion base is measured before any data of its own is queued
        // (protocol.md §9.1, §21.2).
        if let Some(sent) = self.accepted_at {
            transfer.seed_rtt(now.saturating_duration_since(sent));
        }
        Ok(ServerSession::Udpft(transfer))
    }

    /// The session of a proven Sum whose checksum is known (hashed by [`Grant::start`] on
    /// the caller's thread, or by a worker of the table's pool): it sends the record like a
    /// tiny listing, from Data 1.
    pub fn start_sum(&self, now: Instant, config: &Config, sum: &Checksum) -> ServerSession {
        let record: Arc<[u8]> = sum.encode().into();
        let plan = Plan {
            session: self.session,
            size: record.len() as u64,
            offset: 0,
            chunk: self.chunk,
            window: 1,
            opening: Opening::Data,
            prefix_crc: 0,
        };
        ServerSession::Udpft(Transfer::send(
            now,
            config,
            plan,
            Box::new(MemSource(record)),
        ))
    }

    fn start_tftp(
        &self,
        now: Instant,
        config: &Config,
        store: &mut dyn Store,
        terms: &TftpTerms,
    ) -> Result<ServerSession, Refusal> {
        let session = if terms.write {
            let sink = store.create(self.name(), self.size, terms.overwrite)?;
            TftpSession::proven_write(now, config, terms, sink, terms.max_upload)
        } else {
            let source = store.open(self.name(), &self.file_info())?;
            TftpSession::proven_read(now, config, terms, source)
        };
        Ok(ServerSession::Tftp(Box::new(session)))
    }

    /// The version of the file a download's or a Sum's Accept described.
    pub fn file_info(&self) -> FileInfo {
        self.file.unwrap_or(FileInfo {
            size: self.size,
            version: 0,
        })
    }
}
