//! The client's side of one request: ask (List, Get, Put or Sum), wait for the server's Accept,
//! then run its half of the [`Transfer`].
//!
//! The request is repeated on a timer (exponential backoff from `rto_initial`) until an
//! Accept or an Error naming the request's token arrives, or until `timeout` passes.

use super::rtt::Rtt;
use super::session::{deadline, Config, Failure, Outcome, Sink, Source, Stats};
use super::transfer::{Opening, Plan, Transfer};
use super::wire::{DecodeError, ErrorCode, Message, MAX_WINDOW, MIN_CHUNK};
use std::time::Instant;

/// What the client asks for.
pub enum Request {
    /// The library listing, received into the sink.
    List {
        /// Where the encoded listing goes.
        sink: Box<dyn Sink>,
    },
    /// Download `name` into the sink, from `offset` (the sink already holds the bytes
    /// before it, whose CRC32 is `resume_crc`).
    Get {
        /// File name in the library.
        name: Vec<u8>,
        /// Where the bytes go.
        sink: Box<dyn Sink>,
        /// Bytes already held (resume), 0 for a fresh download.
        offset: u64,
        /// CRC32 of the bytes already held.
        resume_crc: u32,
    },
    /// Upload `size` bytes from the source as `name`.
    Put {
        /// File name to create in the library.
        name: Vec<u8>,
        /// Where the bytes come from.
        source: Box<dyn Source>,
        /// Exact size of the upload.
        size: u64,
        /// Replace an existing file.
        overwrite: bool,
    },
    /// The checksum of `name` by `algo`; its record (protocol.md §22) goes into the sink.
    Sum {
        /// File name in the library.
        name: Vec<u8>,
        /// The algorithm.
        algo: super::wire::Algo,
        /// Where the record goes.
        sink: Box<dyn Sink>,
        /// How long to wait for the record's first chunk once accepted, if longer than the
        /// config's timeout: the server hashes the whole file before it sends anything.
        patience: std::time::Duration,
    },
}

enum Phase {
    /// Request sent (or about to be); waiting for Accept.
    Requesting {
        request: Request,
        resend_at: Option<Instant>,
        pending: bool,
        tries: u32,
        /// When the request was last sent: its Accept measures the session's first round trip.
        last_sent: Option<Instant>,
    },
    /// The server accepted: the transfer runs (boxed: a transfer is far larger than the
    /// other phases, and it is made once per session).
    Transfer(Box<Transfer>),
    /// Refused or gave up before a session opened.
    Ended(Failure),
}

/// Why an Accept of `size` bytes from `offset` does not answer `request` (protocol.md §6.2):
/// a listing starts at 0, a download where it asked to and not past the end, an upload at 0
/// with the size it announced. `None` if it does.
fn unasked(request: &Request, size: u64, offset: u64) -> Option<(ErrorCode, String)> {
    match *request {
        Request::List { .. } if offset != 0 => Some((
            ErrorCode::BadRequest,
            format!("server offered a listing from byte {offset}"),
        )),
        // Cancelled: the driver may start over without the partial file.
        Request::Get { offset: asked, .. } if offset != asked => Some((
            ErrorCode::Cancelled,
            format!("server resumed at byte {offset}, not {asked}"),
        )),
        Request::Get { .. } if offset > size => Some((
            ErrorCode::BadRequest,
            format!("server offered byte {offset} of a {size}-byte file"),
        )),
        Request::Put { size: asked, .. } if size != asked || offset != 0 => Some((
            ErrorCode::BadRequest,
            format!("server accepted {size} bytes from byte {offset}, not {asked} from 0"),
        )),
        Request::Sum { algo, .. }
            if size != super::checksum::Checksum::record_len(algo) || offset != 0 =>
        {
            Some((
                ErrorCode::BadRequest,
                format!("server offered a {size}-byte {} record", algo.name()),
            ))
        }
        _ => None,
    }
}

/// One client request and the transfer it opens.
pub struct ClientSession {
    token: u32,
    config: Config,
    phase: Phase,
    rtt: Rtt,
    started: Instant,
    /// Datagrams that failed to decode, by [`DecodeError::index`].
    rejected: [u64; DecodeError::COUNT],
    /// The file's size, once the server accepted.
    accepted_size: Option<u64>,
    /// An Error to send once to a session the client will not use.
    farewell: Option<(u32, ErrorCode)>,
    /// The window asked for: the config's, until a server that does not speak windows
    /// refuses it (protocol.md §20.2); then 1.
    window: u16,
}

impl ClientSession {
    /// Starts `request` with the client-chosen `token` (random, non-zero: it tells this
    /// request's Accept and Error apart from stray ones).
    pub fn new(now: Instant, config: &Config, token: u32, request: Request) -> Self {
        Self {
            token,
            config: config.clone(),
            phase: Phase::Requesting {
                request,
                resend_at: None,
                pending: true,
                tries: 0,
                last_sent: None,
            },
            rtt: Rtt::new(config),
            started: now,
            rejected: [0; DecodeError::COUNT],
            accepted_size: None,
            farewell: None,
            window: config.window.clamp(1, MAX_WINDOW),
        }
    }

    /// Handles one datagram from the server (any bytes: malformed ones are counted).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        match Message::decode(datagram) {
            Ok(message) => self.handle_message(now, &message),
            Err(e) => self.rejected[e.index()] += 1,
        }
    }

    /// Handles one decoded message from the server.
    pub fn handle_message(&mut self, now: Instant, message: &Message<'_>) {
        match &mut self.phase {
            Phase::Requesting { .. } => self.handle_reply(now, message),
            Phase::Transfer(transfer) if message.session() == transfer.session() => {
                transfer.handle_message(now, message)
            }
            Phase::Transfer(_) => match *message {
                // Another session opened for this very request (protocol.md §6.2): never
                // used; closed at once so the server stops retransmitting its Accept.
                Message::Accept { session, token, .. } if token == self.token => {
                    self.farewell = Some((session, ErrorCode::Cancelled));
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn handle_reply(&mut self, now: Instant, message: &Message<'_>) {
        match *message {
            Message::Accept {
                session,
                token,
                chunk,
                window,
                size,
                offset,
            } if token == self.token => {
                // Never trust a chunk or window we did not ask for: they size our buffers.
                let unasked = if !(MIN_CHUNK..=self.config.chunk.max(MIN_CHUNK)).contains(&chunk) {
                    Some(format!(
                        "server granted chunk size {chunk}, which was not asked for"
                    ))
                } else if window > self.window {
                    Some(format!(
                        "server granted window {window}, which was not asked for"
                    ))
                } else {
                    None
                };
                match unasked {
                    None => {
                        // The latest request's round trip: it only sets the first timeouts
                        // (an underestimate, if an earlier copy was answered, costs at most
                        // an early repeat).
                        let handshake = match self.phase {
                            Phase::Requesting {
                                last_sent: Some(sent),
                                ..
                            } => Some(now.saturating_duration_since(sent)),
                            _ => None,
                        };
                        self.open(now, session, chunk, window, size, offset);
                        if let (Phase::Transfer(transfer), Some(rtt)) = (&mut self.phase, handshake)
                        {
                            transfer.seed_rtt(rtt);
                        }
                    }
                    Some(text) => {
                        self.farewell = Some((session, ErrorCode::BadRequest));
                        self.phase = Phase::Ended(Failure::Local {
                            code: ErrorCode::BadRequest,
                            text,
                        });
                    }
                }
            }
            Message::Error {
                session,
                code: ErrorCode::UnsupportedVersion,
                ..
            } if session == self.token && self.window > 1 => {
                // A server of version 1 does not speak windows: ask again, stop-and-wait,
                // at once (the same token: no session was opened for it, §20.2).
                self.window = 1;
                if let Phase::Requesting {
                    resend_at, pending, ..
                } = &mut self.phase
                {
                    *resend_at = None;
                    *pending = true;
                }
            }
            Message::Error {
                session,
                code,
                text,
            } if session == self.token => {
                self.phase = Phase::Ended(Failure::from_peer(code, text));
            }
            _ => {}
        }
    }

    fn open(
        &mut self,
        now: Instant,
        session: u32,
        chunk: u16,
        window: u16,
        size: u64,
        offset: u64,
    ) {
        let Phase::Requesting { request, .. } = std::mem::replace(
            &mut self.phase,
            Phase::Ended(Failure::Local {
                code: ErrorCode::Other,
                text: String::new(),
            }),
        ) else {
            return;
        };
        if let Some((code, text)) = unasked(&request, size, offset) {
            // Close the session the server opened, so it stops at once.
            self.farewell = Some((session, code));
            self.phase = Phase::Ended(Failure::Local { code, text });
            return;
        }
        self.accepted_size = Some(size);
        let plan = |opening, prefix_crc| Plan {
            session,
            size,
            offset,
            chunk,
            window,
            opening,
            prefix_crc,
        };
        let config = &self.config;
        self.phase = Phase::Transfer(Box::new(match request {
            Request::List { sink } => {
                Transfer::receive(now, config, plan(Opening::AckAccept, 0), sink)
            }
            Request::Sum { sink, patience, .. } => {
                let config = Config {
                    timeout: config.timeout.max(patience),
                    ..config.clone()
                };
                Transfer::receive(now, &config, plan(Opening::AckAccept, 0), sink)
            }
            Request::Get {
                sink, resume_crc, ..
            } => Transfer::receive(now, config, plan(Opening::AckAccept, resume_crc), sink),
            Request::Put { source, .. } => {
                Transfer::send(now, config, plan(Opening::Data, 0), source)
            }
        }));
    }

    /// The driver has sent what was due and is about to wait: a download's sink may write
    /// what it deferred. Call it, then send again (a failed write has an Error due).
    pub fn idle(&mut self) {
        if let Phase::Transfer(transfer) = &mut self.phase {
            transfer.idle();
        }
    }

    /// Fires whatever timer is due; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Requesting {
                resend_at,
                pending,
                tries,
                ..
            } => {
                if resend_at.is_some_and(|at| now >= at) {
                    let elapsed = now.saturating_duration_since(self.started);
                    if elapsed >= self.config.timeout {
                        let tries = *tries;
                        self.phase = Phase::Ended(Failure::Timeout { tries, elapsed });
                    } else {
                        self.rtt.back_off();
                        *resend_at = None;
                        *pending = true;
                    }
                }
            }
            Phase::Transfer(transfer) => transfer.handle_timeout(now),
            Phase::Ended(_) => {}
        }
    }

    /// Ends the request from this side (Ctrl-C, say), telling the server if a session is open.
    pub fn abort(&mut self, code: ErrorCode, text: &str) {
        match &mut self.phase {
            Phase::Transfer(transfer) => transfer.abort(code, text),
            Phase::Requesting { .. } => {
                self.phase = Phase::Ended(Failure::Local {
                    code,
                    text: text.to_owned(),
                })
            }
            Phase::Ended(_) => {}
        }
    }

    /// The next datagram for the server (encoded into `buf`, or an upload's Data handed out
    /// where it was read, without a copy); `None` when nothing is due.
    #[must_use]
    pub fn poll_transmit<'a>(&'a mut self, now: Instant, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        if let Some((session, code)) = self.farewell.take() {
            let text = b"client closes this session";
            let len = Message::Error {
                session,
                code,
                text,
            }
            .encode(buf);
            return Some(&buf[..len]);
        }
        let token = self.token;
        let chunk = self.config.chunk;
        let window = self.window;
        match &mut self.phase {
            Phase::Requesting {
                request,
                resend_at,
                pending,
                tries,
                last_sent,
            } => {
                if !*pending {
                    return None;
                }
                *pending = false;
                *tries += 1;
                *last_sent = Some(now);
                // The last try waits out the rest of the give-up time.
                let remaining = self
                    .config
                    .timeout
                    .saturating_sub(now.saturating_duration_since(self.started));
                *resend_at = Some(deadline(now, self.rtt.rto().min(remaining)));
                let message = match request {
                    Request::List { .. } => Message::List {
                        token,
                        chunk,
                        window,
                    },
                    Request::Get { name, offset, .. } => Message::Get {
                        token,
                        chunk,
                        window,
                        offset: *offset,
                        name,
                    },
                    Request::Put {
                        name,
                        size,
                        overwrite,
                        ..
                    } => Message::Put {
                        token,
                        chunk,
                        window,
                        size: *size,
                        overwrite: *overwrite,
                        name,
                    },
                    Request::Sum { name, algo, .. } => Message::Sum {
                        token,
                        chunk,
                        algo: *algo,
                        name,
                    },
                };
                let len = message.encode(buf);
                Some(&buf[..len])
            }
            Phase::Transfer(transfer) => transfer.poll_transmit(now, buf),
            Phase::Ended(_) => None,
        }
    }

    /// When [`ClientSession::handle_timeout`] should next be called; `None` when finished.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Requesting { resend_at, .. } => *resend_at,
            Phase::Transfer(transfer) => transfer.poll_timeout(),
            Phase::Ended(_) => None,
        }
    }

    /// How the request ended, once it has. A complete download may still be lingering
    /// (see [`ClientSession::is_finished`]).
    pub fn outcome(&self) -> Option<Outcome> {
        match &self.phase {
            Phase::Requesting { .. } => None,
            Phase::Transfer(transfer) => transfer.outcome().cloned(),
            Phase::Ended(failure) => Some(Outcome::Failed(failure.clone())),
        }
    }

    /// Whether nothing remains to send or wait for.
    pub fn is_finished(&self) -> bool {
        match &self.phase {
            Phase::Requesting { .. } => false,
            Phase::Transfer(transfer) => transfer.is_finished() && self.farewell.is_none(),
            Phase::Ended(_) => self.farewell.is_none(),
        }
    }

    /// `(bytes done, total size)`; the total is known once the server accepted.
    pub fn progress(&self) -> (u64, Option<u64>) {
        let total = self.accepted_size;
        match &self.phase {
            Phase::Transfer(transfer) => (transfer.progress(), total),
            _ => (0, total),
        }
    }

    /// Counters of the transfer so far, with the datagrams that failed to decode.
    pub fn stats(&self) -> Stats {
        let mut stats = match &self.phase {
            Phase::Transfer(transfer) => transfer.stats(),
            _ => Stats {
                srtt: self.rtt.srtt(),
                ..Stats::default()
            },
        };
        stats.corrupted = self.rejected.iter().sum();
        stats
    }
}
