//! A TFTP request at the front door: judged before its peer has proven anything, answered
//! with one small first packet, and remembered as the terms of a grant until the peer's
//! answer proves it receives at its address (see [`crate::proto::endpoint`]).
//!
//! TFTP has no session id: the proof is the peer answering what was sent to it, from the
//! same address and port. So the first packet is what a TFTP client expects, and its
//! acknowledgement is the proof: an RRQ with options gets the OACK (proof: ACK 0); an RRQ
//! without options gets block 1 (proof: ACK 1; this is the one case where file bytes go to
//! an unproven peer, one block, once per request, as RFC 1350 leaves no other way); a WRQ
//! gets the OACK or ACK 0 (proof: DATA 1). The rules are the udpft protocol's, in the same
//! order (protocol.md §17.2): an upload must be allowed (`--tftp-write`, not read-only,
//! from an address allowed to upload), fit the size limit (a WRQ's `tsize`), have a name
//! the library takes, and not replace a file unless the server allows that
//! (`--tftp-overwrite`); a download needs a file the library has.

use super::codes::{TftpCode, TftpError};
use super::names::library_name;
use super::options::{self, negotiate, Direction, Granted};
use super::send::BlockSender;
use super::wire::{Mode, Packet, Request};
use crate::proto::admission::Policy;
use crate::proto::store::{FileInfo, Store};
use std::net::IpAddr;
use std::time::Instant;

/// What a server speaking TFTP allows, beside the udpft policy it shares.
#[derive(Clone, Debug)]
pub struct TftpPolicy {
    /// What option negotiation grants (block size, window, upload limit).
    pub options: options::Policy,
    /// Whether write requests are served at all (`--tftp-write`).
    pub write: bool,
    /// Whether an upload may replace an existing file (`--tftp-overwrite`): TFTP cannot ask.
    pub overwrite: bool,
    /// Bytes a second the server sends to unproven TFTP peers, in all.
    pub unproven_rate: u64,
    /// Bytes a second the server sends to the unproven TFTP peers of one source prefix (an
    /// IPv4 /24 or an IPv6 /56).
    pub unproven_prefix_rate: u64,
}

impl Default for TftpPolicy {
    fn default() -> Self {
        Self {
            options: options::Policy::default(),
            write: false,
            overwrite: false,
            unproven_rate: 1 << 20,
            unproven_prefix_rate: 64 << 10,
        }
    }
}

/// What went to the peer first, whose acknowledgement proves its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// The OACK of an RRQ or WRQ with options (proof: ACK 0, or DATA 1).
    Oack,
    /// Block 1 of an RRQ without options (proof: ACK 1).
    Block1,
    /// ACK 0 of a WRQ without options (proof: DATA 1).
    Ack0,
}

/// The terms of an accepted TFTP request.
#[derive(Clone, Debug)]
pub struct TftpTerms {
    /// A WRQ (upload).
    pub write: bool,
    /// The transfer runs in netascii mode.
    pub netascii: bool,
    /// The negotiated options.
    pub granted: Granted,
    /// The first packet sent.
    pub first: First,
    /// When it was first sent (for a round-trip sample at the proof).
    pub first_sent: Instant,
    /// How many times it was sent (a repeated request is answered again; Karn's rule).
    pub first_sends: u32,
    /// An upload may replace an existing file.
    pub overwrite: bool,
    /// The most bytes an upload may write (checked as they arrive: a WRQ need not say its
    /// size).
    pub max_upload: Option<u64>,
}

impl TftpTerms {
    /// Whether `packet` from the peer answers the first packet, proving its address.
    pub fn is_proof(&self, packet: &Packet<'_>) -> bool {
        match (self.first, packet) {
            (First::Oack, Packet::Ack { block: 0 }) => !self.write,
            (First::Block1, Packet::Ack { block: 1 }) => true,
            (First::Oack | First::Ack0, Packet::Data { block: 1, .. }) => self.write,
            _ => false,
        }
    }
}

/// A judged request: its terms, the library name and what the Accept-equivalent announced.
#[derive(Clone, Debug)]
pub struct Judged {
    /// The terms.
    pub terms: TftpTerms,
    /// The library name asked for.
    pub name: String,
    /// A download's file version and size.
    pub file: Option<FileInfo>,
}

/// Judges the RRQ or WRQ `packet` from `ip` (rules in the module docs) and writes the first
/// packet to send into `reply` (cleared first).
///
/// # Errors
/// The TFTP error to answer with; `None` if `packet` is not a request.
pub fn judge(
    now: Instant,
    tftp: &TftpPolicy,
    policy: &Policy,
    store: &mut dyn Store,
    ip: IpAddr,
    packet: &Packet<'_>,
    reply: &mut Vec<u8>,
) -> Result<Judged, Option<TftpError>> {
    let (request, write) = match packet {
        Packet::Rrq(request) => (request, false),
        Packet::Wrq(request) => (request, true),
        _ => return Err(None),
    };
    if request.mode == Mode::Mail {
        return Err(Some(TftpError::new(
            TftpCode::IllegalOperation,
            "mail mode is not supported",
        )));
    }
    if write {
        judge_write(now, tftp, policy, store, ip, request, reply).map_err(Some)
    } else {
        judge_read(now, tftp, store, request, reply).map_err(Some)
    }
}

fn judge_write(
    now: Instant,
    tftp: &TftpPolicy,
    policy: &Policy,
    store: &mut dyn Store,
    ip: IpAddr,
    request: &Request<'_>,
    reply: &mut Vec<u8>,
) -> Result<Judged, TftpError> {
    let refused = |text: &str| TftpError::new(TftpCode::AccessViolation, text);
    if !tftp.write || policy.read_only {
        return Err(refused("uploads are not allowed on this server"));
    }
    if !policy.upload_access.permits(ip) {
        return Err(refused("uploads from your address are not allowed"));
    }
    let mut limits = tftp.options.clone();
    limits.max_upload = match (limits.max_upload, policy.max_upload) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let granted = negotiate(request.options, Direction::Write, &limits)?;
    let name = library_name(request.filename)?;
    store
        .check_upload(name.as_bytes(), tftp.overwrite)
        .map_err(|r| TftpError::from_refusal(&r))?;
    let first = match granted.oack() {
        Some(options) => {
            encode_into(reply, &Packet::Oack(options));
            First::Oack
        }
        None => {
            encode_into(reply, &Packet::Ack { block: 0 });
            First::Ack0
        }
    };
    Ok(Judged {
        terms: TftpTerms {
            write: true,
            netascii: request.mode == Mode::Netascii,
            granted,
            first,
            first_sent: now,
            first_sends: 1,
            overwrite: tftp.overwrite,
            max_upload: limits.max_upload,
        },
        name: name.to_owned(),
        file: None,
    })
}

fn judge_read(
    now: Instant,
    tftp: &TftpPolicy,
    store: &mut dyn Store,
    request: &Request<'_>,
    reply: &mut Vec<u8>,
) -> Result<Judged, TftpError> {
    let name = library_name(request.filename)?;
    let refused = |r: crate::proto::refusal::Refusal| TftpError::from_refusal(&r);
    let file = store.inspect(name.as_bytes()).map_err(refused)?;
    let netascii = request.mode == Mode::Netascii;
    let direction = Direction::Read {
        size: file.size,
        netascii,
    };
    let granted = negotiate(request.options, direction, &tftp.options)?;
    let first = match granted.oack() {
        Some(options) => {
            encode_into(reply, &Packet::Oack(options));
            First::Oack
        }
        None => {
            // RFC 1350 leaves no other first answer than block 1: read that one block now
            // (the file is opened and closed again; nothing is held for the peer).
            let source = store.open(name.as_bytes(), &file).map_err(refused)?;
            let config = crate::proto::Config::for_server();
            let mut sender = BlockSender::new(now, &config, &granted, netascii, source);
            reply.clear();
            reply.resize(super::wire::MAX_PACKET, 0);
            let n = sender.poll_transmit(now, reply).unwrap_or(0);
            reply.truncate(n);
            First::Block1
        }
    };
    Ok(Judged {
        terms: TftpTerms {
            write: false,
            netascii,
            granted,
            first,
            first_sent: now,
            first_sends: 1,
            overwrite: false,
            max_upload: None,
        },
        name: name.to_owned(),
        file: Some(file),
    })
}

fn encode_into(reply: &mut Vec<u8>, packet: &Packet<'_>) {
    reply.clear();
    reply.resize(packet.encoded_len(), 0);
    let n = packet.encode(reply);
    reply.truncate(n);
}
