//! Downloads that are written straight into their destination, in order, with no partial
//! file: standard output, and destinations that are not regular files (a character device
//! such as `/dev/null`, a FIFO, a Unix socket), which curl and cp also write into rather
//! than replace. Nothing can be resumed or checked before it is written here; the
//! whole-file checksum still fails the command if the bytes were wrong.

use super::partial::{record, take_fault, Fault};
use super::{ClientError, Report};
use crate::proto::session::Sink;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex, PoisonError};

/// A writer shared by the tries of one download (a busy server is asked again with a new
/// request, each with its own sink).
#[derive(Clone)]
pub(crate) struct Stream {
    writer: Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>,
    fault: Fault,
    /// How the destination is named in messages.
    pub(crate) shown: String,
}

impl Stream {
    /// A stream into `writer`, named `shown` in messages.
    pub(crate) fn new(writer: Box<dyn Write + Send>, shown: String) -> Self {
        Self {
            writer: Arc::new(Mutex::new(BufWriter::with_capacity(1 << 16, writer))),
            fault: Fault::default(),
            shown,
        }
    }

    /// Standard output.
    pub(crate) fn stdout() -> Self {
        Self::new(Box::new(io::stdout()), "standard output".into())
    }

    /// A sink for one try.
    pub(crate) fn sink(&self) -> StreamSink {
        StreamSink(self.clone())
    }

    /// The error a write met, if any.
    pub(crate) fn fault(&self) -> Option<io::Error> {
        take_fault(&self.fault)
    }

    /// A download's `result`, with a failure that a write into the stream caused named
    /// as such (the protocol core only knows "write error").
    pub(crate) fn blame(&self, result: Result<Report, ClientError>) -> Result<Report, ClientError> {
        match (result, self.fault()) {
            (Err(_), Some(fault)) => Err(ClientError::local(
                format!("cannot write {}", self.shown),
                fault,
            )),
            (result, _) => result,
        }
    }

    fn with<T>(
        &self,
        op: impl FnOnce(&mut BufWriter<Box<dyn Write + Send>>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let result = op(&mut writer);
        if let Err(e) = &result {
            record(&self.fault, e);
        }
        result
    }
}

/// The [`Sink`] of one try of a streamed download.
pub(crate) struct StreamSink(Stream);

impl Sink for StreamSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.with(|w| w.write_all(data))
    }

    fn commit(&mut self) -> io::Result<()> {
        self.0.with(|w| w.flush())
    }
}
