//! The blocking client driver: one UDP socket connected to the server, a loop around a
//! [`ClientSession`], and the local-file side of downloads and uploads.
//!
//! * Where a download goes is decided, and its destination opened, before the first
//!   datagram is sent (`destination.rs`): a regular file is written to a hidden partial file
//!   beside it and renamed into place only after the whole-file checksum matched (a later
//!   `get` resumes the partial file); devices, FIFOs and standard output are streamed into.
//! * A request's result is returned as soon as it is known. A completed download's
//!   receiver still *lingers* a few round trips to answer a repeated Done (its final Ack may
//!   have been lost): the client keeps that session and serves it while the next request
//!   runs, or when it is dropped.
//! * A server that answers *busy* is retried with backoff until the overall deadline; one
//!   whose host answers that nothing listens on the port (ICMP) fails at once.
//! * An interrupt flag (set by Ctrl-C) cancels the running transfer: the server is told
//!   (Error `Cancelled`) and a partial file is kept for resume.
//! * [`TftpClient`] (`tftp.rs`) does the same against any TFTP server, for `tftp://` URLs,
//!   with the same destinations, events and errors; what TFTP cannot do (resume, list,
//!   check the file) it says there.

mod destination;
mod error;
mod icmp;
mod partial;
mod stream;
mod tftp;

pub use self::destination::{Destination, GetOptions};
pub use self::error::{ClientError, EXIT_INTERRUPTED};
pub use self::partial::partial_path;
pub use self::tftp::{TftpClient, TftpFile, TftpOptions};
/// Kept here for the callers that used them from the client; they live in [`crate::text`].
pub use crate::text::{sanitize, sanitize_bytes};

use self::destination::Target;
use self::partial::{Landing, PartialFile};
use self::stream::Stream;
use crate::library::{check_name, FileSource};
use crate::net;
use crate::proto::checksum::Checksum;
use crate::proto::client::{ClientSession, Request};
use crate::proto::listing::{self, Entry};
use crate::proto::session::MemSink;
use crate::proto::wire::{Algo, ErrorCode, Message, MAX_DATAGRAM};
use crate::proto::{Config, Failure, Outcome, Stats};
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The result of a finished transfer.
#[derive(Clone, Debug)]
pub struct Report {
    /// The file's size.
    pub size: u64,
    /// Bytes that were already there (a resumed download).
    pub resumed_from: u64,
    /// Wall time of the transfer.
    pub elapsed: Duration,
    /// Protocol counters.
    pub stats: Stats,
    /// Where a download landed, as the user named it (`DIR/NAME`, a link); `None` for an
    /// upload, a listing or standard output.
    pub saved_as: Option<String>,
}

impl Report {
    /// Bytes moved this time per second.
    pub fn goodput(&self) -> f64 {
        self.moved() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Bytes moved this time (the file less a resumed prefix).
    pub fn moved(&self) -> u64 {
        self.size - self.resumed_from
    }
}

/// Something told about a transfer while it runs.
pub enum Event<'a> {
    /// `done` of `total` bytes (`total` is known once the server accepted).
    Progress {
        /// Bytes held by the receiver so far.
        done: u64,
        /// The file's size, once known.
        total: Option<u64>,
    },
    /// The server was busy; the client retries after `wait`.
    Busy {
        /// Back-off before the next try.
        wait: Duration,
    },
    /// A download continues a partial file from an earlier run.
    Resuming {
        /// Bytes already held.
        offset: u64,
        /// The partial file.
        partial: &'a Path,
    },
}

/// Client settings beyond the protocol's [`Config`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Timers, chunk size, give-up time.
    pub config: Config,
    /// How long to keep retrying a busy server.
    pub busy_patience: Duration,
    /// Longest adaptive spin before a blocking receive; zero: never spin.
    pub busy_poll: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            config: Config::default(),
            busy_patience: Duration::from_secs(30),
            busy_poll: net::DEFAULT_BUSY_POLL,
        }
    }
}

/// A client of one server.
pub struct Client {
    server: SocketAddr,
    socket: UdpSocket,
    options: ClientOptions,
    ids: crate::ids::IdSource,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    receiver: net::Receiver,
    /// Completed downloads whose receivers still linger (see the module doc).
    lingering: Vec<ClientSession>,
    interrupt: Option<Arc<AtomicBool>>,
    /// Further addresses of the server's name, tried in turn while nothing listens at
    /// the current one.
    fallbacks: Vec<SocketAddr>,
}

/// Why a driver loop stopped before the request's result was known (the TFTP driver's
/// too).
pub(crate) enum Stop {
    /// The server's host reported its port closed (ICMP port-unreachable).
    PortClosed {
        /// The server had accepted the request (it was there, and is gone).
        accepted: bool,
        /// Datagrams sent for the request.
        sent: u64,
    },
    /// Any other failure.
    Error(ClientError),
}

/// What a transfer calls with its [`Event`]s.
pub(crate) type EventFn<'e> = dyn FnMut(Event<'_>) + 'e;

/// How long a checksum waits at least for the server's hash (it sends nothing while it
/// hashes: a large file, or a queue of checksums before it, takes a while).
pub const SUM_PATIENCE: Duration = Duration::from_secs(60);

/// The longest single sleep of a busy back-off, so an interrupt is noticed promptly.
const SLEEP_SLICE: Duration = Duration::from_millis(20);

impl Client {
    /// A client of `server` with its own socket.
    ///
    /// # Errors
    /// If no socket can be bound or connected.
    pub fn new(server: SocketAddr, options: ClientOptions) -> Result<Self, ClientError> {
        let receiver = net::Receiver::connected().busy_poll(options.busy_poll);
        Ok(Self {
            server,
            socket: connected_socket(server)?,
            options,
            ids: crate::ids::IdSource::new(),
            inbuf: vec![0; MAX_DATAGRAM],
            outbuf: vec![0; MAX_DATAGRAM],
            receiver,
            lingering: Vec::new(),
            interrupt: None,
            fallbacks: Vec::new(),
        })
    }

    /// A client of `server` whose socket is bound to the local address `local` (a
    /// benchmark's clients on distinct loopback addresses, 127.0.0.0/8, are distinct peers
    /// to the server's per-address limits).
    ///
    /// # Errors
    /// If the socket cannot be bound or connected.
    pub fn bound(
        server: SocketAddr,
        local: IpAddr,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let mut client = Self::new(server, options)?;
        client.socket = net::bind(SocketAddr::new(local, 0), false)
            .and_then(|s| s.connect(server).map(|()| s))
            .map_err(|e| ClientError::local(format!("cannot bind a UDP socket to {local}"), e))?;
        Ok(client)
    }

    /// A client of the first of `addresses` (those of one host name, in the resolver's
    /// order of preference); while nothing listens at one, the next is tried.
    ///
    /// # Errors
    /// If `addresses` is empty or no socket can be bound or connected.
    pub fn connect(addresses: &[SocketAddr], options: ClientOptions) -> Result<Self, ClientError> {
        let Some((&first, rest)) = addresses.split_first() else {
            return Err(ClientError::local(
                "cannot connect",
                io::Error::new(io::ErrorKind::NotFound, "no address to connect to"),
            ));
        };
        let mut client = Self::new(first, options)?;
        client.fallbacks = rest.to_vec();
        Ok(client)
    }

    /// Moves on to the next address of the server's name; `false` if none is left.
    fn next_address(&mut self) -> Result<bool, ClientError> {
        if self.fallbacks.is_empty() {
            return Ok(false);
        }
        let server = self.fallbacks.remove(0);
        self.socket = connected_socket(server)?;
        self.server = server;
        self.receiver = net::Receiver::connected().busy_poll(self.options.busy_poll);
        self.lingering.clear();
        Ok(true)
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Cancels the running transfer whenever `flag` is set (a Ctrl-C handler sets it):
    /// the server is told, and the request fails with [`ErrorCode::Cancelled`]. The flag
    /// is left set; the caller clears it.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    fn interrupted(&self) -> bool {
        is_set(self.interrupt.as_ref())
    }

    /// The library's files.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn list(&mut self) -> Result<Vec<Entry>, ClientError> {
        let bytes = self.fetch_to_memory(&|sink| Request::List { sink }, "")?;
        listing::decode(&bytes).ok_or_else(|| ClientError::Transfer {
            code: ErrorCode::BadRequest,
            text: "the server sent a malformed listing".into(),
        })
    }

    /// Runs the request `make` builds around an in-memory sink (a fresh one each try) and
    /// returns what arrived in it.
    fn fetch_to_memory(
        &mut self,
        make: &dyn Fn(Box<dyn crate::proto::Sink>) -> Request,
        what: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let sink = Arc::new(Mutex::new(MemSink::default()));
        let for_request = Arc::clone(&sink);
        self.transfer(
            &mut |_| {},
            &mut || {
                // Each try starts from an empty sink.
                *lock(&for_request) = MemSink::default();
                Ok(make(Box::new(Arc::clone(&for_request))))
            },
            what,
        )?;
        let bytes = std::mem::take(&mut lock(&sink).data);
        Ok(bytes)
    }

    /// The checksum of the library's file `name` by `algo`, hashed by the server. The server
    /// hashes before it sends anything, so once it accepted, the wait for the record is
    /// given [`SUM_PATIENCE`] (or the `--timeout`, if longer) rather than the timeout alone.
    ///
    /// # Errors
    /// See [`ClientError`]; a file that changed while the server hashed it is
    /// [`ErrorCode::FileChanged`].
    pub fn sum(&mut self, name: &str, algo: Algo) -> Result<Checksum, ClientError> {
        let make = |sink| Request::Sum {
            name: name.as_bytes().to_vec(),
            algo,
            sink,
            patience: SUM_PATIENCE,
        };
        let bytes = self.fetch_to_memory(&make, name).map_err(|e| match e {
            // Silence is also what a server that predates checksums gives (protocol.md
            // §22.3): it drops a request of a type it does not know.
            ClientError::NotResponding {
                port_closed: false, ..
            } => e.with_hint("a server older than checksums (sum) does not answer them".into()),
            other => other,
        })?;
        Checksum::decode(algo, &bytes).ok_or_else(|| ClientError::Transfer {
            code: ErrorCode::BadRequest,
            text: "the server sent a malformed checksum".into(),
        })
    }

    /// Downloads `name` to `dest`, resuming a partial file left by an earlier run unless
    /// `resume` is false.
    ///
    /// # Errors
    /// See [`ClientError`]. On failure nothing appears under the destination's name.
    pub fn get(
        &mut self,
        name: &str,
        dest: &Destination,
        resume: bool,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let options = GetOptions {
            resume,
            ..GetOptions::default()
        };
        self.get_with(name, dest, options, events)
    }

    /// Downloads `name` to `dest` (see [`Destination`] for what each kind of destination
    /// receives). The destination is checked, and opened, before anything is sent.
    ///
    /// # Errors
    /// See [`ClientError`]. On failure nothing appears under the destination's name; a
    /// partial file that holds bytes is kept for resume, and the error says so.
    pub fn get_with(
        &mut self,
        name: &str,
        dest: &Destination,
        options: GetOptions,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        // A name the server could never serve is refused here, at once, rather than sent
        // as a request the server must drop as malformed (and then time out).
        refuse_bad_name(name)?;
        match destination::resolve(dest, name, options)? {
            Target::Stream(stream) => self.get_stream(name, &stream, events),
            Target::File {
                partial,
                landing,
                shown,
            } => self.get_file(name, partial, &landing, shown, events),
        }
    }

    fn get_stream(
        &mut self,
        name: &str,
        stream: &Stream,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let name_bytes = name.as_bytes().to_vec();
        let result = self.transfer(
            events,
            &mut || {
                Ok(Request::Get {
                    name: name_bytes.clone(),
                    sink: Box::new(stream.sink()),
                    offset: 0,
                    resume_crc: 0,
                })
            },
            name,
        );
        stream.blame(result)
    }

    fn get_file(
        &mut self,
        name: &str,
        partial: PartialFile,
        landing: &Landing,
        shown: String,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let error = match self.fill(name, &partial, landing, events) {
            Ok(mut report) => {
                report.saved_as = Some(shown);
                return Ok(report);
            }
            Err(error) => partial.blame(&shown, error),
        };
        let checksum = matches!(
            error,
            ClientError::Transfer {
                code: ErrorCode::ChecksumMismatch,
                ..
            }
        );
        if checksum || partial.len() == 0 {
            // Bytes that failed the checksum cannot be trusted: never resume from them.
            // An empty partial file is only the trace of a refused request.
            partial.discard();
            return Err(error);
        }
        let kept = format!(
            "the partial file {} is kept: run the same command again to resume",
            partial.path.display()
        );
        Err(error.with_hint(kept))
    }

    /// Runs the download into the partial file, resuming what it holds; starts over once
    /// if the server cannot resume (its file shrank).
    fn fill(
        &mut self,
        name: &str,
        partial: &PartialFile,
        landing: &Landing,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let cannot = |what: &str, e| {
            ClientError::local(format!("cannot {what} {}", partial.path.display()), e)
        };
        let name_bytes = name.as_bytes().to_vec();
        let mut restarted = false;
        loop {
            let (offset, crc) = partial.state().map_err(|e| cannot("read", e))?;
            if offset > 0 {
                events(Event::Resuming {
                    offset,
                    partial: &partial.path,
                });
            }
            let result = self.transfer(
                events,
                &mut || {
                    Ok(Request::Get {
                        name: name_bytes.clone(),
                        sink: Box::new(partial.sink(offset, landing)?),
                        offset,
                        resume_crc: crc,
                    })
                },
                name,
            );
            match result {
                Ok(mut report) => {
                    report.resumed_from = offset;
                    return Ok(report);
                }
                Err(ClientError::Transfer {
                    code: ErrorCode::Cancelled,
                    ..
                }) if offset > 0 && !restarted && !self.interrupted() => {
                    restarted = true;
                    partial.clear().map_err(|e| cannot("clear", e))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Uploads the file at `path` as `name`, replacing an existing file only if `overwrite`.
    ///
    /// # Errors
    /// See [`ClientError`]. On failure the library is left as it was.
    pub fn put(
        &mut self,
        path: &Path,
        name: &str,
        overwrite: bool,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let file = open_upload(path)?;
        self.put_file(&file, &path.display().to_string(), name, overwrite, events)
    }

    /// Uploads the open regular file `file` (named `shown` in messages) as `name`.
    ///
    /// # Errors
    /// See [`ClientError`]. On failure the library is left as it was.
    pub fn put_file(
        &mut self,
        file: &File,
        shown: &str,
        name: &str,
        overwrite: bool,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        refuse_bad_name(name)?;
        let name_bytes = name.as_bytes().to_vec();
        let result = self.transfer(
            events,
            &mut || {
                let (source, size) = FileSource::new(file.try_clone()?)?;
                Ok(Request::Put {
                    name: name_bytes.clone(),
                    source: Box::new(source),
                    size,
                    overwrite,
                })
            },
            shown,
        );
        match result {
            // The server read a different file than the one asked for: name it.
            Err(ClientError::Transfer {
                code: ErrorCode::FileChanged,
                ..
            }) => Err(ClientError::local(
                format!("cannot upload {shown}"),
                io::Error::other("the file changed while it was being sent"),
            )),
            other => other,
        }
    }

    /// Runs one request until its result is known, retrying while the server is busy.
    fn transfer(
        &mut self,
        events: &mut EventFn<'_>,
        make_request: &mut dyn FnMut() -> io::Result<Request>,
        what: &str,
    ) -> Result<Report, ClientError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            let request =
                make_request().map_err(|e| ClientError::local(format!("cannot use {what}"), e))?;
            let session = ClientSession::new(
                Instant::now(),
                &self.options.config,
                self.ids.next_id(),
                request,
            );
            let begun = Instant::now();
            let session = match self.drive(session, events) {
                Ok(session) => session,
                Err(Stop::PortClosed { accepted, sent }) => {
                    if !accepted && self.next_address()? {
                        continue;
                    }
                    return Err(self.port_closed(sent));
                }
                Err(Stop::Error(e)) => return Err(e),
            };
            let elapsed = begun.elapsed();
            let outcome = session.outcome();
            let (_, total) = session.progress();
            let stats = session.stats();
            if !session.is_finished() {
                self.lingering.push(session);
            }
            match outcome {
                Some(Outcome::Complete) => {
                    return Ok(Report {
                        size: total.unwrap_or(0),
                        resumed_from: 0,
                        elapsed,
                        stats,
                        saved_as: None,
                    });
                }
                Some(Outcome::Failed(Failure::Peer {
                    code: ErrorCode::Busy,
                    ..
                })) if started.elapsed() + wait < self.options.busy_patience => {
                    // Jitter: clients turned away together must not all come back together.
                    let jittered = wait
                        .mul_f64(0.5 + f64::from(self.ids.next_id()) / f64::from(u32::MAX) / 2.0);
                    events(Event::Busy { wait: jittered });
                    self.finish_lingering();
                    self.sleep(jittered);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Some(Outcome::Failed(failure)) => return Err(self.error_of(failure, what)),
                None => {
                    return Err(ClientError::Transfer {
                        code: ErrorCode::Other,
                        text: "transfer ended without an outcome".into(),
                    })
                }
            }
        }
    }

    /// Sleeps `wait`, or less if the interrupt flag is set meanwhile.
    fn sleep(&self, wait: Duration) {
        let until = Instant::now() + wait;
        while !self.interrupted() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(SLEEP_SLICE));
        }
    }

    fn error_of(&self, failure: Failure, what: &str) -> ClientError {
        match failure {
            Failure::Timeout { tries, elapsed } => ClientError::silent(self.server, tries, elapsed),
            Failure::Peer { code, text } => {
                let text = match code {
                    ErrorCode::NotFound if !what.is_empty() => {
                        format!("no such file on server: {}", sanitize(what))
                    }
                    _ if text.is_empty() => code.to_string(),
                    _ => format!("server: {}", sanitize(&text)),
                };
                ClientError::Server { code, text }
            }
            Failure::Local { code, text } => ClientError::Transfer { code, text },
        }
    }

    /// The driver loop: timers, sends, and receiving until the next deadline, until the
    /// request's result is known. Lingering sessions are served on the way.
    fn drive(
        &mut self,
        mut session: ClientSession,
        events: &mut EventFn<'_>,
    ) -> Result<ClientSession, Stop> {
        let mut next_report = Instant::now();
        loop {
            let now = Instant::now();
            session.handle_timeout(now);
            if self.interrupted() && session.outcome().is_none() {
                session.abort(ErrorCode::Cancelled, "cancelled by the user");
            }
            let refused = self.send_all(&mut session, now);
            if now >= next_report || session.outcome().is_some() {
                let (done, total) = session.progress();
                events(Event::Progress { done, total });
                next_report = now + Duration::from_millis(100);
            }
            // A complete download may still linger; its result is known.
            if session.is_finished() || session.outcome() == Some(Outcome::Complete) {
                return Ok(session);
            }
            if refused {
                return Err(Stop::port_closed(&session));
            }
            let deadline = self
                .lingering
                .iter()
                .filter_map(ClientSession::poll_timeout)
                .chain(session.poll_timeout())
                .min();
            match self
                .receiver
                .recv_until(&self.socket, &mut self.inbuf, deadline)
            {
                Ok(Some((len, _))) => self.route(len, Some(&mut session)),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(Stop::port_closed(&session))
                }
                Err(e) => {
                    return Err(Stop::Error(ClientError::local(
                        "cannot receive from the server",
                        e,
                    )))
                }
            }
        }
    }

    /// Hands the datagram in `inbuf[..len]` to the lingering sessions and to `session`;
    /// each takes only what belongs to it (its session id, or its request's token).
    fn route(&mut self, len: usize, session: Option<&mut ClientSession>) {
        let datagram = &self.inbuf[..len];
        // Decoded once for everyone: decoding checks the CRC32 of the whole datagram, which
        // at 64 KiB chunks is a tenth of the client's time.
        match Message::decode(datagram) {
            Ok(message) => {
                for lingering in &mut self.lingering {
                    lingering.handle_message(Instant::now(), &message);
                }
                if let Some(session) = session {
                    session.handle_message(Instant::now(), &message);
                }
            }
            // The session counts what it rejects (it decodes again, on this path only).
            Err(_) => {
                if let Some(session) = session {
                    session.handle_datagram(Instant::now(), datagram);
                }
            }
        }
    }

    /// Sends what `session` and the lingering sessions have due, then lets `session` do the
    /// work it deferred ([`ClientSession::idle`]); `true` if the kernel reported the
    /// server's port closed (an ICMP error surfaces on the next call on the socket, a send as
    /// much as a receive).
    fn send_all(&mut self, session: &mut ClientSession, now: Instant) -> bool {
        let mut refused = self.serve_lingering(now);
        refused |= self.send_due(session, now);
        // The Ack is out: the chunk it acknowledges is written while the next one travels,
        // not before the Ack (a failed write has its Error to send).
        session.idle();
        refused | self.send_due(session, now)
    }

    /// Sends what `session` has due; `true` if the server's port was reported closed.
    fn send_due(&mut self, session: &mut ClientSession, now: Instant) -> bool {
        let mut refused = false;
        while let Some(datagram) = session.poll_transmit(now, &mut self.outbuf) {
            refused |= send(&self.socket, datagram);
        }
        refused
    }

    /// Fires the lingering sessions' timers, sends what they have due and forgets those
    /// that ended; `true` if the server's port was reported closed.
    fn serve_lingering(&mut self, now: Instant) -> bool {
        let mut refused = false;
        for lingering in &mut self.lingering {
            lingering.handle_timeout(now);
            while let Some(datagram) = lingering.poll_transmit(now, &mut self.outbuf) {
                refused |= send(&self.socket, datagram);
            }
        }
        self.lingering.retain(|s| !s.is_finished());
        refused
    }

    /// The error for a server whose port is closed: nothing listens there (or no longer,
    /// if the request had been accepted). Lingering sessions have nobody left to answer.
    fn port_closed(&mut self, sent: u64) -> ClientError {
        self.lingering.clear();
        ClientError::port_closed(self.server, sent)
    }

    /// Serves the lingering sessions until each has ended (a few round trips at most).
    pub fn finish_lingering(&mut self) {
        loop {
            let refused = self.serve_lingering(Instant::now());
            let deadline = self
                .lingering
                .iter()
                .filter_map(ClientSession::poll_timeout)
                .min();
            if refused || deadline.is_none() {
                break;
            }
            match self
                .receiver
                .recv_until(&self.socket, &mut self.inbuf, deadline)
            {
                Ok(Some((len, _))) => self.route(len, None),
                Ok(None) => {}
                // The server is gone, or the socket broke: nobody is left to answer.
                Err(_) => break,
            }
        }
        self.lingering.clear();
    }
}

impl Drop for Client {
    /// Lets a completed download's receiver finish its linger (a few round trips), so a
    /// repeated Done is still answered after the result was handed out.
    fn drop(&mut self) {
        self.finish_lingering();
    }
}

impl Stop {
    fn port_closed(session: &ClientSession) -> Self {
        Self::PortClosed {
            accepted: session.progress().1.is_some(),
            sent: session.stats().sent,
        }
    }
}

/// Whether an interrupt `flag` (see [`Client::set_interrupt`]) is set.
fn is_set(flag: Option<&Arc<AtomicBool>>) -> bool {
    flag.is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// Opens the local file at `path` for an upload: a regular file (an upload announces its
/// size before its first byte).
///
/// # Errors
/// A local error naming the path if it cannot be opened or is not a regular file.
pub fn open_upload(path: &Path) -> Result<File, ClientError> {
    let shown = path.display();
    let cannot = |e| ClientError::local(format!("cannot read {shown}"), e);
    let file = File::open(path).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(ClientError::local(
            format!("cannot upload {shown}"),
            io::Error::other("not a regular file"),
        ));
    }
    Ok(file)
}

/// A UDP socket connected to `server`, so that only its datagrams arrive and its host's
/// ICMP errors are reported.
fn connected_socket(server: SocketAddr) -> Result<UdpSocket, ClientError> {
    net::bind(net::any_for(server), false)
        .and_then(|s| s.connect(server).map(|()| s))
        .map_err(|e| ClientError::local("cannot open a UDP socket", e))
}

/// Sends one datagram; `true` if the kernel reported the server's port closed. Any other
/// failed send is a lost datagram: the protocol's timers cover it.
fn send(socket: &UdpSocket, datagram: &[u8]) -> bool {
    crate::net::turnaround::sending();
    matches!(socket.send(datagram), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

/// Refuses, as the server would, a name no library can hold.
fn refuse_bad_name(name: &str) -> Result<(), ClientError> {
    check_name(name.as_bytes())
        .map(|_| ())
        .map_err(|r| ClientError::Server {
            code: r.code,
            text: sanitize(&r.text),
        })
}

fn lock(sink: &Mutex<MemSink>) -> std::sync::MutexGuard<'_, MemSink> {
    sink.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
