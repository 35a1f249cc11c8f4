//! The blocking client driver: one UDP socket connected to the server, a loop around a
//! [`ClientSession`], and the local-file side of downloads and uploads.
//!
//! Downloads are written to a hidden partial file beside the destination
//! (`.NAME.udpft-part`) and renamed into place only after the whole-file checksum matched,
//! so a failed download never leaves a partial file under the final name. A later `get`
//! of the same file resumes from the partial file. A server that answers *busy* is retried
//! with backoff until the overall deadline.

use crate::library::{check_name, FileSource};
use crate::net;
use crate::proto::client::{ClientSession, Request};
use crate::proto::listing::{self, Entry};
use crate::proto::session::{MemSink, Sink};
use crate::proto::wire::{ErrorCode, MAX_DATAGRAM};
use crate::proto::{Config, Failure, Outcome, Stats};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a client command failed. Each kind maps to an exit code (see [`ClientError::exit_code`]).
#[derive(Debug)]
pub enum ClientError {
    /// A local file or socket problem.
    Local {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The server refused or ended the transfer.
    Server {
        /// The server's code.
        code: ErrorCode,
        /// The message for the user (already sanitised).
        text: String,
    },
    /// The server stopped answering.
    NotResponding {
        /// The server's address.
        server: SocketAddr,
        /// Sends of the unanswered message.
        tries: u32,
        /// How long the client waited.
        elapsed: Duration,
    },
    /// The transfer failed at this end (checksum mismatch, a broken server...).
    Transfer {
        /// The code sent to the server.
        code: ErrorCode,
        /// What went wrong.
        text: String,
    },
}

impl ClientError {
    /// The process exit code for this error: 3 local, 4 refused by the server,
    /// 5 server not responding, 6 integrity (checksum), 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Local { .. } => 3,
            Self::Server { .. } => 4,
            Self::NotResponding { .. } => 5,
            Self::Transfer {
                code: ErrorCode::ChecksumMismatch,
                ..
            } => 6,
            Self::Transfer { .. } => 1,
        }
    }

    /// A local error with what was being done.
    pub fn local(context: impl Into<String>, source: io::Error) -> Self {
        Self::Local {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { context, source } => write!(f, "{context}: {source}"),
            Self::Server { text, .. } | Self::Transfer { text, .. } => f.write_str(text),
            Self::NotResponding {
                server,
                tries,
                elapsed,
            } => write!(
                f,
                "server {server} not responding ({tries} tries over {:.1} s)",
                elapsed.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// Replaces control characters (terminal escapes among them) by visible escapes, so text
/// from the network cannot drive the user's terminal.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`sanitize`] for raw bytes, with invalid UTF-8 shown as U+FFFD.
pub fn sanitize_bytes(bytes: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(bytes))
}

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
}

impl Report {
    /// Bytes moved this time per second.
    pub fn goodput(&self) -> f64 {
        (self.size - self.resumed_from) as f64 / self.elapsed.as_secs_f64().max(1e-9)
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

/// Where a download goes.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A file path (written via a partial file, renamed when verified).
    File(PathBuf),
    /// Standard output.
    Stdout,
}

/// A client of one server.
pub struct Client {
    server: SocketAddr,
    socket: UdpSocket,
    options: ClientOptions,
    ids: crate::ids::IdSource,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

type EventFn<'e> = dyn FnMut(Event<'_>) + 'e;

impl Client {
    /// A client of `server` with its own socket.
    ///
    /// # Errors
    /// If no socket can be bound or connected.
    pub fn new(server: SocketAddr, options: ClientOptions) -> Result<Self, ClientError> {
        let socket = net::bind(net::any_for(server), false)
            .and_then(|s| s.connect(server).map(|()| s))
            .map_err(|e| ClientError::local("cannot open a UDP socket", e))?;
        Ok(Self {
            server,
            socket,
            options,
            ids: crate::ids::IdSource::new(),
            inbuf: vec![0; MAX_DATAGRAM],
            outbuf: vec![0; MAX_DATAGRAM],
        })
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The library's files.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn list(&mut self) -> Result<Vec<Entry>, ClientError> {
        let sink = Arc::new(Mutex::new(MemSink::default()));
        let for_request = Arc::clone(&sink);
        self.transfer(
            &mut |_| {},
            &mut || {
                // Each try starts from an empty listing.
                *lock(&for_request) = MemSink::default();
                Ok(Request::List {
                    sink: Box::new(Arc::clone(&for_request)),
                })
            },
            "",
        )?;
        let bytes = std::mem::take(&mut lock(&sink).data);
        listing::decode(&bytes).ok_or_else(|| ClientError::Transfer {
            code: ErrorCode::BadRequest,
            text: "the server sent a malformed listing".into(),
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
        // A name the server could never serve is refused here, at once, rather than sent
        // as a request the server must drop as malformed (and then time out).
        refuse_bad_name(name)?;
        let name_bytes = name.as_bytes().to_vec();
        match dest {
            Destination::Stdout => self.transfer(
                events,
                &mut || {
                    Ok(Request::Get {
                        name: name_bytes.clone(),
                        sink: Box::new(StdoutSink(BufWriter::new(io::stdout()))),
                        offset: 0,
                        resume_crc: 0,
                    })
                },
                name,
            ),
            Destination::File(path) => self.get_file(name, path, resume, events),
        }
    }

    fn get_file(
        &mut self,
        name: &str,
        path: &Path,
        resume: bool,
        events: &mut EventFn<'_>,
    ) -> Result<Report, ClientError> {
        let partial = partial_path(path)?;
        if !resume {
            remove_if_exists(&partial)?;
        }
        let name_bytes = name.as_bytes().to_vec();
        let mut restarted = false;
        loop {
            let (offset, crc) = partial_state(&partial)?;
            if offset > 0 {
                events(Event::Resuming {
                    offset,
                    partial: &partial,
                });
            }
            let result = self.transfer(
                events,
                &mut || {
                    Ok(Request::Get {
                        name: name_bytes.clone(),
                        sink: Box::new(PartialSink::new(&partial, path, offset)),
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
                // The server could not resume (the file shrank): start over once.
                Err(ClientError::Transfer {
                    code: ErrorCode::Cancelled,
                    ..
                }) if offset > 0 && !restarted => {
                    restarted = true;
                    remove_if_exists(&partial)?;
                }
                Err(e) => {
                    if matches!(
                        &e,
                        ClientError::Transfer {
                            code: ErrorCode::ChecksumMismatch,
                            ..
                        }
                    ) {
                        // The partial bytes cannot be trusted: never resume from them.
                        let _ = fs::remove_file(&partial);
                    }
                    return Err(e);
                }
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
        refuse_bad_name(name)?;
        let shown = path.display().to_string();
        let name_bytes = name.as_bytes().to_vec();
        self.transfer(
            events,
            &mut || {
                let file = File::open(path)?;
                let (source, size) = FileSource::new(file)?;
                if !fs::metadata(path)?.is_file() {
                    return Err(io::Error::other("not a regular file"));
                }
                Ok(Request::Put {
                    name: name_bytes.clone(),
                    source: Box::new(source),
                    size,
                    overwrite,
                })
            },
            &shown,
        )
    }

    /// Runs one request to its end, retrying while the server is busy.
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
            let mut session = ClientSession::new(
                Instant::now(),
                &self.options.config,
                self.ids.next_id(),
                request,
            );
            let begun = Instant::now();
            self.drive(&mut session, events)?;
            let elapsed = begun.elapsed();
            match session.outcome() {
                Some(Outcome::Complete) => {
                    let (_, total) = session.progress();
                    return Ok(Report {
                        size: total.unwrap_or(0),
                        resumed_from: 0,
                        elapsed,
                        stats: session.stats(),
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
                    std::thread::sleep(jittered);
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

    fn error_of(&self, failure: Failure, what: &str) -> ClientError {
        match failure {
            Failure::Timeout { tries, elapsed } => ClientError::NotResponding {
                server: self.server,
                tries,
                elapsed,
            },
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

    /// The driver loop: timers, sends, and receiving until the next deadline.
    fn drive(
        &mut self,
        session: &mut ClientSession,
        events: &mut EventFn<'_>,
    ) -> Result<(), ClientError> {
        let mut receiver = net::Receiver::new().busy_poll(self.options.busy_poll);
        let mut next_report = Instant::now();
        loop {
            let now = Instant::now();
            session.handle_timeout(now);
            while let Some(len) = session.poll_transmit(now, &mut self.outbuf) {
                // A failed send is a lost datagram: the protocol's timers cover it.
                let _ = self.socket.send(&self.outbuf[..len]);
            }
            if now >= next_report || session.is_finished() {
                let (done, total) = session.progress();
                events(Event::Progress { done, total });
                next_report = now + Duration::from_millis(100);
            }
            if session.is_finished() {
                return Ok(());
            }
            let deadline = session.poll_timeout();
            let got = receiver
                .recv_until(&self.socket, &mut self.inbuf, deadline)
                .map_err(|e| ClientError::local("receive failed", e))?;
            if let Some((len, _)) = got {
                session.handle_datagram(Instant::now(), &self.inbuf[..len]);
            }
        }
    }
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

/// The hidden partial file beside `dest`: `.NAME.udpft-part`.
///
/// # Errors
/// If `dest` has no file name.
pub fn partial_path(dest: &Path) -> Result<PathBuf, ClientError> {
    let Some(file_name) = dest.file_name() else {
        return Err(ClientError::local(
            format!("{} is not a file path", dest.display()),
            io::Error::from(io::ErrorKind::InvalidInput),
        ));
    };
    let mut partial = std::ffi::OsString::from(".");
    // Long names would overflow the 255-byte limit with the extra 12 bytes: use a hash.
    if file_name.len() > 200 {
        let hash = crc32fast::hash(file_name.as_encoded_bytes());
        partial.push(format!("{hash:08x}"));
    } else {
        partial.push(file_name);
    }
    partial.push(".udpft-part");
    Ok(dest.with_file_name(partial))
}

fn remove_if_exists(path: &Path) -> Result<(), ClientError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ClientError::local(
            format!("cannot remove {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// Length and CRC32 of a partial file, (0, 0) if there is none.
fn partial_state(partial: &Path) -> Result<(u64, u32), ClientError> {
    let mut file = match File::open(partial) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => {
            return Err(ClientError::local(
                format!("cannot read {}", partial.display()),
                e,
            ))
        }
    };
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ClientError::local(format!("cannot read {}", partial.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.finalize()))
}

/// A download's partial file, created at the first byte (so a refused request leaves no
/// trace) and renamed to the destination on commit.
struct PartialSink {
    file: Option<BufWriter<File>>,
    partial: PathBuf,
    dest: PathBuf,
    offset: u64,
}

impl PartialSink {
    fn new(partial: &Path, dest: &Path, offset: u64) -> Self {
        Self {
            file: None,
            partial: partial.to_owned(),
            dest: dest.to_owned(),
            offset,
        }
    }

    fn file(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.partial)?;
            // Keep exactly the bytes the resume point counts.
            file.set_len(self.offset)?;
            self.file = Some(BufWriter::with_capacity(1 << 16, file));
        }
        Ok(self.file.as_mut().expect("just opened"))
    }
}

impl Sink for PartialSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file()?.write_all(data)
    }

    fn commit(&mut self) -> io::Result<()> {
        self.file()?;
        let file = self.file.take().expect("opened above");
        // Flushed and closed, then renamed: the destination appears whole or not at all
        // to every program. Unlike the server's uploads it is not fsynced (nor are curl's
        // or scp's downloads): a sync of a large file costs more than the transfer.
        drop(file.into_inner().map_err(|e| e.into_error())?);
        fs::rename(&self.partial, &self.dest)
    }
}

impl Drop for PartialSink {
    fn drop(&mut self) {
        // Keep what arrived for a later resume; just make sure it reached the file.
        if let Some(mut file) = self.file.take() {
            let _ = file.flush();
        }
    }
}

/// A download to standard output.
struct StdoutSink(BufWriter<io::Stdout>);

impl Sink for StdoutSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn commit(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
