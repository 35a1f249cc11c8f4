//! One measured download with the library client: `Client::get` of the test file into the
//! scratch folder, a byte-for-byte check against the original, and the goodput.

use crate::results::mb_per_s;
use crate::workload::{same_bytes, TestLibrary};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use udpft::client::{Client, ClientOptions, Destination, Event, Report};
use udpft::proto::Config;

/// A finished, verified download.
#[derive(Clone, Debug)]
pub struct Download {
    /// The client's report (size, elapsed, counters).
    pub report: Report,
    /// File bytes per second in MB/s (10^6 bytes).
    pub goodput: f64,
}

/// Downloads the test file from `server` with chunks of `chunk` bytes, busy-polling up to
/// `busy_poll`, into `dest`, checks it equals the library's copy, and removes it again.
///
/// # Errors
/// If the transfer fails or the copy differs.
pub fn download(
    server: SocketAddr,
    chunk: u16,
    busy_poll: Duration,
    timeout: Duration,
    library: &TestLibrary,
    dest: &Path,
) -> io::Result<Download> {
    let options = ClientOptions {
        config: Config {
            chunk,
            timeout,
            ..Config::default()
        },
        busy_poll,
        ..ClientOptions::default()
    };
    download_with(server, options, library, dest, &mut |_| {})
}

/// The client's default options but for the chunk and window to ask for and the give-up
/// time.
pub fn windowed(chunk: u16, window: u16, timeout: Duration) -> ClientOptions {
    ClientOptions {
        config: Config {
            chunk,
            window,
            timeout,
            ..Config::default()
        },
        ..ClientOptions::default()
    }
}

/// [`download`] with every client option chosen by the caller (a window, say), telling
/// `events` of the transfer's progress.
///
/// # Errors
/// If the transfer fails or the copy differs.
pub fn download_with(
    server: SocketAddr,
    options: ClientOptions,
    library: &TestLibrary,
    dest: &Path,
    events: &mut dyn FnMut(Event<'_>),
) -> io::Result<Download> {
    let (chunk, window) = (options.config.chunk, options.config.window);
    let mut client = Client::new(server, options).map_err(io::Error::other)?;
    let report = client
        .get(
            &library.name,
            &Destination::File(dest.to_path_buf()),
            false,
            events,
        )
        .map_err(|e| {
            io::Error::other(format!(
                "download with chunk {chunk}, window {window} failed: {e}"
            ))
        })?;
    if report.size != library.size {
        return Err(io::Error::other(format!(
            "the client reports {} bytes, the file has {}",
            report.size, library.size
        )));
    }
    if !same_bytes(&library.file(), dest)? {
        return Err(io::Error::other(format!(
            "the downloaded copy {} differs from the original",
            dest.display()
        )));
    }
    std::fs::remove_file(dest)?;
    Ok(Download {
        goodput: mb_per_s(report.size - report.resumed_from, report.elapsed),
        report,
    })
}
