//! The server's admission rules, in the one order every model applies them
//! (protocol.md §17.2): what a request must pass before it is accepted, and the limits on
//! how many sessions may run.
//!
//! A request is judged before its peer has proven its address, so every check here is
//! cheap and opens nothing: the access list (a refused address is dropped, unanswered), then
//! shutting down, then what the request itself asks (read-only, size, name, existence:
//! answered so that a client is not told "busy" for a request that could never succeed),
//! then capacity. The capacity is judged again when the peer proves its address, since
//! sessions may have started meanwhile.

use super::access::AccessList;
use super::checksum::Checksum;
use super::grant::{Grant, Op};
use super::refusal::Refusal;
use super::session::Config;
use super::store::Store;
use super::wire::{ErrorCode, Message};
use crate::tftp::admit::TftpPolicy;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How many sessions may run, and the bounds of the front door's own memory.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Live (proven) sessions at most; past that, requests are refused with Busy unless a
    /// slow session can yield its slot.
    pub max_sessions: usize,
    /// Live (proven) sessions from one IP address at most.
    pub max_per_address: usize,
    /// Replies queued at most; past that they are dropped (and counted).
    pub max_replies: usize,
    /// Unproven grants remembered at most (see [`super::pending`]).
    pub max_unproven: usize,
    /// A session that has moved fewer bytes a second than this over its last few seconds
    /// yields its slot to a new peer when the server is full.
    pub min_rate: u64,
    /// What a full server says in its Busy refusal.
    pub full: &'static str,
    /// The largest file a Sum may hash (its whole cost, protocol.md §22.3).
    pub max_sum: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 4096,
            max_per_address: 256,
            max_replies: 1024,
            max_unproven: 16_384,
            min_rate: 16 << 10,
            full: "too many sessions",
            max_sum: 64 << 30,
        }
    }
}

/// Everything the front door decides by.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Session timers and the largest chunk granted.
    pub session: Config,
    /// Session limits.
    pub limits: Limits,
    /// Who may use the server at all.
    pub access: AccessList,
    /// Who may upload (the others get ReadOnly).
    pub upload_access: AccessList,
    /// Refuse every upload.
    pub read_only: bool,
    /// Refuse uploads larger than this many bytes.
    pub max_upload: Option<u64>,
    /// After a stop request, how long running downloads may take to finish.
    pub grace: Duration,
    /// TFTP on the same socket (`--tftp`), and what it allows; `None`: udpft only.
    pub tftp: Option<TftpPolicy>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            session: Config::for_server(),
            limits: Limits::default(),
            access: AccessList::everyone(),
            upload_access: AccessList::everyone(),
            read_only: false,
            max_upload: None,
            grace: Duration::from_secs(10),
            tftp: None,
        }
    }
}

impl Policy {
    /// The terms a request gets, by the request-level rules in order: an upload must come
    /// from an address allowed to upload to a server that takes uploads, fit the size limit,
    /// and have a name the store can create; a download a file the store has; a listing a
    /// listing the store can make. The result is a [`Grant`] for `session`; the front door
    /// judges capacity and draining itself.
    ///
    /// # Errors
    /// The refusal to send.
    pub fn judge(
        &self,
        store: &mut dyn Store,
        peer: SocketAddr,
        session: u32,
        request: &Message<'_>,
    ) -> Result<Grant, Refusal> {
        match *request {
            Message::List {
                token,
                chunk,
                window,
            } => {
                let listing = store.listing()?;
                let mut grant = Grant::new(peer, session, token, Op::List, b"");
                grant.chunk = self.session.negotiate_chunk(chunk);
                grant.window = self.session.negotiate_window(window, grant.chunk);
                grant.size = listing.len() as u64;
                grant.listing = Some(listing);
                Ok(grant)
            }
            Message::Get {
                token,
                chunk,
                window,
                offset,
                name,
            } => {
                let file = store.inspect(name)?;
                let mut grant = Grant::new(peer, session, token, Op::Get, name);
                grant.chunk = self.session.negotiate_chunk(chunk);
                grant.window = self.session.negotiate_window(window, grant.chunk);
                grant.size = file.size;
                // A resume point past the end means the file changed: start over.
                grant.offset = if offset > file.size { 0 } else { offset };
                grant.file = Some(file);
                Ok(grant)
            }
            Message::Put {
                token,
                chunk,
                window,
                size,
                overwrite,
                name,
            } => {
                self.may_upload(peer.ip(), name, size)?;
                store.check_upload(name, overwrite)?;
                let mut grant = Grant::new(peer, session, token, Op::Put, name);
                grant.chunk = self.session.negotiate_chunk(chunk);
                grant.window = self.session.negotiate_window(window, grant.chunk);
                grant.size = size;
                grant.overwrite = overwrite;
                Ok(grant)
            }
            Message::Sum {
                token,
                chunk,
                algo,
                name,
            } => {
                if algo.digest_len() == 0 {
                    return Err(Refusal::new(
                        ErrorCode::BadRequest,
                        format!(
                            "unknown checksum {}: this server knows sha256 and crc32",
                            algo.name()
                        ),
                    ));
                }
                let file = store.inspect(name)?;
                let limit = self.limits.max_sum;
                if file.size > limit {
                    return Err(Refusal::new(
                        ErrorCode::TooLarge,
                        format!(
                            "{} is {} bytes; this server checksums files of at most {limit}",
                            String::from_utf8_lossy(name),
                            file.size
                        ),
                    ));
                }
                let mut grant = Grant::new(peer, session, token, Op::Sum, name);
                grant.chunk = self.session.negotiate_chunk(chunk);
                grant.size = Checksum::record_len(algo);
                grant.file = Some(file);
                grant.algo = Some(algo);
                Ok(grant)
            }
            _ => Err(Refusal::new(ErrorCode::BadRequest, "not a request")),
        }
    }

    /// The server's own rules for an upload of `size` bytes from `ip`: read-only first (for
    /// the whole server, or for addresses outside `--allow-upload`), then the size limit.
    fn may_upload(&self, ip: IpAddr, name: &[u8], size: u64) -> Result<(), Refusal> {
        if self.read_only {
            return Err(Refusal::new(
                ErrorCode::ReadOnly,
                "server is read-only: uploads are refused",
            ));
        }
        if !self.upload_access.permits(ip) {
            return Err(Refusal::new(
                ErrorCode::ReadOnly,
                "uploads from your address are not allowed",
            ));
        }
        match self.max_upload {
            Some(limit) if size > limit => Err(Refusal::new(
                ErrorCode::TooLarge,
                format!(
                    "{} is {size} bytes; this server takes at most {limit}",
                    String::from_utf8_lossy(name)
                ),
            )),
            _ => Ok(()),
        }
    }
}
