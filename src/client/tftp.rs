//! TFTP transfers for the client, against any TFTP server: `get tftp://HOST[:PORT]/NAME`
//! and `put PATH tftp://HOST[:PORT]/NAME`. A blocking driver around the sans-IO
//! [`ClientSession`] of [`crate::tftp::client`] (options, fallback to RFC 1350, the
//! transfer-ID rule, rollover, adaptive timers all live there).
//!
//! What works as for udpft transfers: the destination is resolved and opened before the
//! request is sent (folders, symbolic links, devices and FIFOs written into,
//! `--no-clobber`); a regular file is collected in the hidden partial file and renamed into
//! place only once the last block arrived; progress events; Ctrl-C (the server is told with
//! an ERROR); the exit codes of [`ClientError`] (a TFTP error from the server is a refusal,
//! exit 4; silence is exit 5; local files exit 3); and a host whose port is closed fails at
//! once, trying the name's next address first. A download's receiver lingers after its
//! result is known, to acknowledge a repeated last block, before the next transfer starts
//! or when the client is dropped.
//!
//! What TFTP cannot do: resume (a download always starts over, and one that fails leaves
//! nothing behind), list, or check the file beyond the UDP checksum. One check it allows is
//! made: in octet mode a file whose size differs from the one the server announced
//! (`tsize`) is not saved (exit 6, as a checksum mismatch).
//!
//! Each transfer has its own socket, so its port is its own transfer ID. The socket is not
//! connected (the server answers from a port of its choosing); ICMP errors still reach it
//! (see `icmp.rs`).

use super::destination::{self, Target};
use super::icmp;
use super::{ClientError, Destination, Event, EventFn, GetOptions, Report, Stop};
use crate::library::{check_name, FileSource};
use crate::net;
use crate::proto::session::Sink;
use crate::proto::wire::ErrorCode;
use crate::proto::{Config, Failure, Outcome};
use crate::text::sanitize;
use crate::tftp::client::{mtu_blksize, ClientConfig, ClientSession, DEFAULT_WINDOW};
use crate::tftp::wire::{Mode, MAX_PACKET};
use crate::tftp::TftpCode;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a TFTP transfer asks the server for.
#[derive(Clone, Debug)]
pub struct TftpOptions {
    /// The block size; `None`: one that fills an Ethernet frame ([`mtu_blksize`]).
    pub blksize: Option<u16>,
    /// The window (RFC 7440); 1 asks for none (lockstep, as RFC 1350).
    pub windowsize: u16,
    /// Octet or netascii.
    pub mode: Mode,
}

impl Default for TftpOptions {
    fn default() -> Self {
        Self {
            blksize: None,
            windowsize: DEFAULT_WINDOW,
            mode: Mode::Octet,
        }
    }
}

impl TftpOptions {
    /// The session's configuration for `server`.
    fn session(&self, timing: &Config, server: SocketAddr) -> ClientConfig {
        ClientConfig {
            timing: timing.clone(),
            blksize: Some(self.blksize.unwrap_or_else(|| mtu_blksize(server))),
            windowsize: (self.windowsize > 1).then_some(self.windowsize),
            tsize: true,
            mode: self.mode,
        }
    }
}

/// A file on a TFTP server.
#[derive(Clone, Debug)]
pub struct TftpFile {
    /// The server's addresses (those of its name, in the resolver's order); while nothing
    /// listens at one, the next is tried.
    pub addresses: Vec<SocketAddr>,
    /// The file's name on the server, as the request carries it.
    pub name: String,
    /// How messages name it (the URL, sanitised).
    pub shown: String,
}

impl TftpFile {
    /// The last part of the name (after any `/`): the local file name of a download that
    /// is not told where to go, or goes into a folder.
    ///
    /// # Errors
    /// A local error when that part cannot name a local file (empty, `..`, hidden, with
    /// control characters...): the user must choose a path.
    pub fn local_name(&self) -> Result<&str, ClientError> {
        let last = self.name.rsplit('/').next().unwrap_or(&self.name);
        check_name(last.as_bytes()).map_err(|r| {
            ClientError::local(
                format!("cannot save {} under its own name", self.shown),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}; choose one with -o PATH", sanitize(&r.text)),
                ),
            )
        })
    }
}

/// A client of TFTP servers: one transfer at a time, each on its own socket.
pub struct TftpClient {
    timing: Config,
    interrupt: Option<Arc<AtomicBool>>,
    /// A completed download still answering a repeated last block.
    lingering: Option<Transfer>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

/// One transfer's socket and session.
struct Transfer {
    socket: UdpSocket,
    receiver: net::Receiver,
    session: ClientSession,
    /// Where the request went.
    server: SocketAddr,
}

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

impl TftpClient {
    /// A client whose transfers run on `timing` (its `timeout` is the give-up time; its
    /// `linger_min`, how long a download's last ACK is kept ready to repeat).
    pub fn new(timing: Config) -> Self {
        Self {
            timing,
            interrupt: None,
            lingering: None,
            inbuf: vec![0; MAX_PACKET + 1],
            outbuf: vec![0; MAX_PACKET],
        }
    }

    /// Cancels the running transfer whenever `flag` is set (see
    /// [`super::Client::set_interrupt`]).
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    fn interrupted(&self) -> bool {
        super::is_set(self.interrupt.as_ref())
    }

    /// Downloads `file` to `dest` (see [`Destination`]), never resuming: a partial file
    /// from an earlier run is started over.
    ///
    /// # Errors
    /// See [`ClientError`]. On failure nothing appears under the destination's name and no
    /// partial file is left.
    pub fn get(
        &mut self,
        file: &TftpFile,
        dest: &Destination,
        no_clobber: bool,
        options: &TftpOptions,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        // Only a plain name may become a local path; one that is not needed is not checked.
        let local = if dest.takes_name() {
            file.local_name()?
        } else {
            ""
        };
        let get_options = GetOptions {
            resume: false,
            no_clobber,
        };
        match destination::resolve(dest, local, get_options)? {
            Target::Stream(stream) => {
                let result =
                    self.download(file, options, &mut || Ok(Box::new(stream.sink())), events);
                stream.blame(result)
            }
            Target::File {
                partial,
                landing,
                shown,
            } => {
                let result = self.download(
                    file,
                    options,
                    &mut || Ok(Box::new(partial.sink(0, &landing)?)),
                    events,
                );
                match result {
                    Ok(mut report) => {
                        report.saved_as = Some(shown);
                        Ok(report)
                    }
                    Err(error) => {
                        let error = partial.blame(&shown, error);
                        // Nothing to resume from: TFTP cannot continue a transfer.
                        partial.discard();
                        Err(error)
                    }
                }
            }
        }
    }

    fn download(
        &mut self,
        file: &TftpFile,
        options: &TftpOptions,
        make_sink: &mut dyn FnMut() -> io::Result<Box<dyn Sink>>,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let announced = Announced::default();
        let check = (options.mode == Mode::Octet).then_some(&announced);
        let timing = self.timing.clone();
        let result = self.run(
            file,
            &file.shown,
            &mut |now, server| {
                let sink = Checked {
                    inner: make_sink()?,
                    written: 0,
                    announced: announced.clone(),
                };
                let config = options.session(&timing, server);
                Ok(ClientSession::download(
                    now,
                    config,
                    server,
                    &file.name,
                    Box::new(sink),
                ))
            },
            check,
            None,
            events,
        );
        match announced.mismatch() {
            Some((announced, got)) => Err(ClientError::Transfer {
                code: ErrorCode::ChecksumMismatch,
                text: format!(
                    "{}: the server announced {announced} bytes (tsize) but sent {got}; nothing was saved",
                    file.shown
                ),
            }),
            None => result,
        }
    }

    /// Uploads the open regular file `local` (named `shown` in messages) as `file`. TFTP
    /// cannot ask to replace a file: whether an existing one is replaced is the server's
    /// rule.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn put(
        &mut self,
        local: &File,
        shown: &str,
        file: &TftpFile,
        options: &TftpOptions,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let cannot = |e| ClientError::local(format!("cannot read {shown}"), e);
        let size = local.metadata().map_err(cannot)?.len();
        let timing = self.timing.clone();
        let result = self.run(
            file,
            shown,
            &mut |now, server| {
                let (source, size) = FileSource::new(local.try_clone()?)?;
                let config = options.session(&timing, server);
                Ok(ClientSession::upload(
                    now,
                    config,
                    server,
                    &file.name,
                    Box::new(source),
                    size,
                ))
            },
            None,
            Some(size),
            events,
        );
        match result {
            // The local file could not be read, or changed while it was sent: name it.
            Err(ClientError::Transfer {
                code: ErrorCode::Other,
                text,
            }) => Err(ClientError::local(
                format!("cannot upload {shown}"),
                io::Error::other(text),
            )),
            other => other,
        }
    }

    /// Runs one transfer, made by `make` for a server address, to its result; moves on to
    /// the next address while nothing listens at one. `what` names the local side in
    /// messages; `announced` learns the server's `tsize`; `upload_size` is the size of an
    /// upload (`None` for a download, whose size is the announced one).
    fn run(
        &mut self,
        file: &TftpFile,
        what: &str,
        make: &mut dyn FnMut(Instant, SocketAddr) -> io::Result<ClientSession>,
        announced: Option<&Announced>,
        upload_size: Option<u64>,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        self.finish_lingering();
        let mut addresses = file.addresses.iter().copied().peekable();
        loop {
            let Some(server) = addresses.next() else {
                return Err(ClientError::local(
                    format!("cannot connect to {}", file.shown),
                    io::Error::new(io::ErrorKind::NotFound, "no address to connect to"),
                ));
            };
            let session = make(Instant::now(), server)
                .map_err(|e| ClientError::local(format!("cannot use {what}"), e))?;
            let mut transfer = Transfer::open(server, session)?;
            let begun = Instant::now();
            match self.drive(&mut transfer, announced, upload_size, events) {
                Ok(()) => {}
                Err(Stop::PortClosed { accepted, sent }) => {
                    if !accepted && addresses.peek().is_some() {
                        continue;
                    }
                    let at = transfer.session.peer().unwrap_or(server);
                    return Err(ClientError::port_closed(at, sent));
                }
                Err(Stop::Error(e)) => return Err(e),
            }
            let session = &transfer.session;
            let report = Report {
                size: session.progress(),
                resumed_from: 0,
                elapsed: begun.elapsed(),
                stats: session.stats(),
                saved_as: None,
            };
            return match session.outcome().cloned() {
                Some(Outcome::Complete) => {
                    if !session.is_finished() {
                        self.lingering = Some(transfer);
                    }
                    Ok(report)
                }
                Some(Outcome::Failed(failure)) => {
                    Err(self.error_of(failure, &transfer, file, upload_size.is_none()))
                }
                None => Err(ClientError::Transfer {
                    code: ErrorCode::Other,
                    text: "transfer ended without an outcome".into(),
                }),
            };
        }
    }

    /// The driver loop: timers, sends, and receiving until the next deadline, until the
    /// transfer's result is known (and its last datagram sent).
    fn drive(
        &mut self,
        transfer: &mut Transfer,
        announced: Option<&Announced>,
        total: Option<u64>,
        events: &mut EventFn<'_>,
    ) -> Result<(), Stop> {
        let mut next_report = Instant::now();
        loop {
            let now = Instant::now();
            transfer.session.handle_timeout(now);
            if self.interrupted() && transfer.session.outcome().is_none() {
                transfer
                    .session
                    .abort(TftpCode::Undefined, "cancelled by the user");
            }
            transfer.send_due(now, &mut self.outbuf)?;
            let ended = transfer.session.outcome().is_some();
            if now >= next_report || ended {
                events(Event::Progress {
                    done: transfer.session.progress(),
                    total: total.or(transfer.session.size()),
                });
                next_report = now + PROGRESS_EVERY;
            }
            if ended && !transfer.session.wants_transmit() {
                return Ok(());
            }
            match transfer.receive(&mut self.inbuf) {
                Ok(()) => {
                    if let (Some(announced), Some(size)) = (announced, transfer.session.size()) {
                        announced.set(size);
                    }
                }
                Err(e) => transfer.socket_error(e)?,
            }
        }
    }

    fn error_of(
        &self,
        failure: Failure,
        transfer: &Transfer,
        file: &TftpFile,
        download: bool,
    ) -> ClientError {
        match failure {
            _ if self.interrupted() => ClientError::Transfer {
                code: ErrorCode::Cancelled,
                text: "cancelled by the user".into(),
            },
            Failure::Timeout { tries, elapsed } => {
                let server = transfer.session.peer().unwrap_or(transfer.server);
                ClientError::silent(server, tries, elapsed)
            }
            Failure::Peer { code, text } => {
                let text = match code {
                    ErrorCode::NotFound if download => {
                        format!("no such file on server: {}", file.shown)
                    }
                    _ if text.is_empty() => format!("{}: {code}", file.shown),
                    _ => format!("{}: server: {}", file.shown, sanitize(&text)),
                };
                ClientError::Server { code, text }
            }
            // This end's words, but they may quote the server (an option it granted unasked).
            Failure::Local { code, text } => ClientError::Transfer {
                code,
                text: sanitize(&text),
            },
        }
    }

    /// Lets a completed download's receiver finish its linger (answering a repeated last
    /// block), at most the give-up time.
    pub fn finish_lingering(&mut self) {
        let Some(mut transfer) = self.lingering.take() else {
            return;
        };
        let until = Instant::now() + self.timing.timeout;
        while Instant::now() < until {
            let now = Instant::now();
            transfer.session.handle_timeout(now);
            if transfer.send_due(now, &mut self.outbuf).is_err() || transfer.session.is_finished() {
                return;
            }
            if transfer.receive(&mut self.inbuf).is_err() {
                // The server is gone, or the socket broke: nobody is left to answer.
                return;
            }
        }
    }
}

impl Drop for TftpClient {
    fn drop(&mut self) {
        self.finish_lingering();
    }
}

impl Transfer {
    /// A new socket (a new transfer ID) for `session`, talking to `server`.
    fn open(server: SocketAddr, session: ClientSession) -> Result<Self, ClientError> {
        let socket = net::bind(net::any_for(server), false)
            .and_then(|socket| icmp::report_errors(&socket).map(|()| socket))
            .map_err(|e| ClientError::local("cannot open a UDP socket", e))?;
        Ok(Self {
            socket,
            // Reports ECONNREFUSED (an ICMP error), which `socket_error` sorts out.
            receiver: net::Receiver::connected(),
            session,
            server,
        })
    }

    /// Waits for a datagram until the session's next deadline (at most
    /// [`net::MAX_WAIT`]) and hands it to the session.
    fn receive(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let deadline = self.session.poll_timeout();
        if let Some((len, from)) = self.receiver.recv_until(&self.socket, buf, deadline)? {
            self.session
                .handle_datagram(Instant::now(), from, &buf[..len]);
        }
        Ok(())
    }

    /// Sends what the session has due. A failed send is a lost datagram (the timers cover
    /// it), unless it reports that nothing listens where the transfer talks to.
    fn send_due(&mut self, now: Instant, buf: &mut [u8]) -> Result<(), Stop> {
        let mut icmp = false;
        while let Some((to, len)) = self.session.poll_transmit(now, buf) {
            if let Err(e) = self.socket.send_to(&buf[..len], to) {
                icmp |= e.kind() == io::ErrorKind::ConnectionRefused;
            }
        }
        if icmp {
            self.read_icmp()?;
        }
        Ok(())
    }

    /// Sorts out an error from a receive: an ICMP error about another address (a stray's
    /// closed port) changes nothing; one saying nothing listens where this transfer talks
    /// to stops it; an error that is no ICMP report is the socket's.
    fn socket_error(&self, error: io::Error) -> Result<(), Stop> {
        if self.read_icmp()? > 0 || error.kind() == io::ErrorKind::Interrupted {
            return Ok(());
        }
        Err(Stop::Error(ClientError::local(
            "cannot receive from the server",
            error,
        )))
    }

    /// Reads the queued ICMP errors; `Err` if the host the transfer talks to (the server's
    /// transfer ID once known, else where the request went) said its port is closed.
    fn read_icmp(&self) -> Result<usize, Stop> {
        let queued = icmp::drain(&self.socket);
        let peer = self.session.peer().unwrap_or(self.server);
        if queued.refused.contains(&peer) {
            return Err(Stop::PortClosed {
                accepted: self.session.peer().is_some(),
                sent: self.session.stats().sent,
            });
        }
        Ok(queued.errors)
    }
}

/// The size the server announced for a download (`tsize`), and a mismatch once seen.
#[derive(Clone, Debug, Default)]
struct Announced(Arc<Mutex<AnnouncedSize>>);

#[derive(Debug, Default)]
struct AnnouncedSize {
    size: Option<u64>,
    /// The size received instead, when it differed.
    mismatch: Option<u64>,
}

impl Announced {
    fn lock(&self) -> std::sync::MutexGuard<'_, AnnouncedSize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, size: u64) {
        self.lock().size = Some(size);
    }

    /// The announced and the received size, if they differed.
    fn mismatch(&self) -> Option<(u64, u64)> {
        let state = self.lock();
        Some((state.size?, state.mismatch?))
    }
}

/// A download's sink that refuses to commit a file whose size is not the one announced.
struct Checked {
    inner: Box<dyn Sink>,
    written: u64,
    announced: Announced,
}

impl Sink for Checked {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.written += data.len() as u64;
        self.inner.write(data)
    }

    fn commit(&mut self) -> io::Result<()> {
        let mut state = self.announced.lock();
        if let Some(size) = state.size.filter(|&size| size != self.written) {
            state.mismatch = Some(self.written);
            return Err(io::Error::other(format!(
                "{} bytes received, {size} announced",
                self.written
            )));
        }
        drop(state);
        self.inner.commit()
    }
}
