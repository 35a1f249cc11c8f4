//! The partial file of a download to a regular file: a hidden file beside the destination
//! (`.NAME.udpft-part`) that collects the bytes, is resumed by a later `get`, and is renamed
//! over the destination only once the whole-file checksum matched.
//!
//! It is opened before the request is sent, so a destination that cannot be written fails
//! at once, not after the transfer; a partial file still empty when the download fails is
//! removed again, so a refused request leaves no trace.

use super::ClientError;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::proto::session::Sink;

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

/// What the finished download must look like: where it goes and, when it replaces a
/// file, that file's permission bits and owner.
#[derive(Clone, Debug)]
pub(crate) struct Landing {
    /// The file the partial file is renamed to (a symlink's target, never the link).
    pub(crate) dest: PathBuf,
    /// The replaced file's mode and owner, kept by the new file.
    pub(crate) replaces: Option<Replaced>,
}

/// The mode and owner of a file a download replaces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Replaced {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Its names (hard links): with others, it is written into, not replaced.
    pub(crate) links: u64,
}

impl Replaced {
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        Self {
            // Set-id bits are not carried over to new contents (the kernel clears them on
            // a write into the file too).
            mode: meta.mode() & 0o1777,
            uid: meta.uid(),
            gid: meta.gid(),
            links: meta.nlink(),
        }
    }
}

/// The opened partial file of one download.
pub(crate) struct PartialFile {
    /// Its path.
    pub(crate) path: PathBuf,
    file: File,
    /// The first write or commit error of the sinks made from it.
    fault: Fault,
}

/// An I/O error a sink met, kept for the driver: the protocol core only reports
/// "write error", the driver names the path.
pub(crate) type Fault = Arc<Mutex<Option<io::Error>>>;

/// Takes the error recorded in `fault`, if any.
pub(crate) fn take_fault(fault: &Fault) -> Option<io::Error> {
    fault
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// Keeps `error` in `fault` unless an earlier one is there.
pub(crate) fn record(fault: &Fault, error: &io::Error) {
    let mut slot = fault
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if slot.is_none() {
        *slot = Some(io::Error::new(error.kind(), error.to_string()));
    }
}

impl PartialFile {
    /// Opens (or creates) the partial file at `path`; with `fresh`, drops what it held.
    pub(crate) fn open(path: PathBuf, fresh: bool) -> io::Result<Self> {
        // Read too: the resume point's CRC is computed from this handle.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        if fresh {
            file.set_len(0)?;
        }
        Ok(Self {
            path,
            file,
            fault: Fault::default(),
        })
    }

    /// Length and CRC32 of the bytes held.
    pub(crate) fn state(&self) -> io::Result<(u64, u32)> {
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0; 1 << 16];
        let mut len = 0u64;
        loop {
            let n = self.file.read_at(&mut buf, len)?;
            if n == 0 {
                return Ok((len, hasher.finalize()));
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
    }

    /// Drops every byte held (the server could not resume: start over).
    pub(crate) fn clear(&self) -> io::Result<()> {
        self.file.set_len(0)
    }

    /// Bytes held now (0 if that cannot be read).
    pub(crate) fn len(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// A sink appending after the first `offset` bytes and landing as `landing` on commit.
    pub(crate) fn sink(&self, offset: u64, landing: &Landing) -> io::Result<PartialSink> {
        Ok(PartialSink {
            file: None,
            handle: Some(self.file.try_clone()?),
            path: self.path.clone(),
            landing: landing.clone(),
            offset,
            fault: Arc::clone(&self.fault),
            held: Vec::new(),
        })
    }

    /// The error a sink met, if any.
    pub(crate) fn fault(&self) -> Option<io::Error> {
        take_fault(&self.fault)
    }

    /// A download's `error`, or, if a local write or commit caused it, that error naming
    /// the destination (`shown`) rather than the protocol's "write error".
    pub(crate) fn blame(&self, shown: &str, error: ClientError) -> ClientError {
        match self.fault() {
            Some(fault) => ClientError::local(format!("cannot write {shown}"), fault),
            None => error,
        }
    }

    /// Removes the partial file: its bytes cannot be trusted, or there are none.
    pub(crate) fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Receives one try of a download into the partial file.
pub(crate) struct PartialSink {
    file: Option<BufWriter<File>>,
    handle: Option<File>,
    path: PathBuf,
    landing: Landing,
    offset: u64,
    fault: Fault,
    /// A large chunk received and acknowledged, to be written when the driver is idle
    /// ([`Sink::idle`]); empty when none waits. Nothing else waits in `file`'s buffer then.
    held: Vec<u8>,
}

impl PartialSink {
    /// Writes the held chunk, if any, to the file (after what its buffer holds).
    fn settle(&mut self) -> io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let result = self.file().and_then(|file| file.get_mut().write_all(&held));
        // The buffer's memory is kept for the next chunk.
        self.held = held;
        self.held.clear();
        result
    }

    fn file(&mut self) -> io::Result<&mut BufWriter<File>> {
        if let Some(file) = self.handle.take() {
            // Keep exactly the bytes the resume point counts.
            file.set_len(self.offset)?;
            self.file = Some(BufWriter::with_capacity(1 << 16, file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("partial file already committed"))
    }

    fn land(&mut self) -> io::Result<()> {
        self.settle()?;
        self.file()?;
        let file = self.file.take().expect("opened above");
        // Flushed and closed, then renamed: the destination appears whole or not at all
        // to every program. Unlike the server's uploads it is not fsynced (nor are curl's
        // or scp's downloads): a sync of a large file costs more than the transfer.
        let file = file.into_inner().map_err(|e| e.into_error())?;
        if self.landing.replaces.is_some_and(|old| old.links > 1) {
            // A file with other names (hard links): a rename would leave those names with
            // the old bytes. The verified bytes are written into it instead, as cp and curl
            // do (this one step is not atomic; the file keeps its inode, mode and owner).
            drop(file);
            let mut verified = File::open(&self.path)?;
            let mut dest = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&self.landing.dest)?;
            io::copy(&mut verified, &mut dest)?;
            drop(dest);
            return fs::remove_file(&self.path);
        }
        if let Some(old) = self.landing.replaces {
            // The replaced file's owner first (only root may give a file away; anyone
            // else keeps their own), then its mode, which a change of owner may clear.
            let _ = std::os::unix::fs::fchown(&file, Some(old.uid), Some(old.gid));
            file.set_permissions(Permissions::from_mode(old.mode))?;
        }
        drop(file);
        fs::rename(&self.path, &self.landing.dest)
    }
}

/// Chunks at least this large are held and written when the driver is idle, after its Ack
/// has gone out; smaller ones go through the file's buffer.
///
/// The buffer saves a system call per small chunk (about 45 chunks of 1430 bytes per
/// write). A 65485-byte chunk does not fit beside another in its 64 KiB, and writing it
/// before the Ack put a 64 KiB write (about 20 µs, and a page-cache stall now and then) on
/// every round trip: held, it costs one copy on the round trip (a few µs) and is written
/// while the next chunk travels.
const HELD_WRITE: usize = 16 << 10;

impl Sink for PartialSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let result = self.settle().and_then(|()| {
            let file = self.file()?;
            if data.len() < HELD_WRITE {
                return file.write_all(data);
            }
            // In order: what the buffer holds reaches the file before the held chunk.
            file.flush()?;
            self.held.extend_from_slice(data);
            Ok(())
        });
        if let Err(e) = &result {
            record(&self.fault, e);
        }
        result
    }

    fn idle(&mut self) -> io::Result<()> {
        let result = self.settle();
        if let Err(e) = &result {
            record(&self.fault, e);
        }
        result
    }

    fn commit(&mut self) -> io::Result<()> {
        let result = self.land();
        if let Err(e) = &result {
            record(&self.fault, e);
        }
        result
    }
}

impl Drop for PartialSink {
    fn drop(&mut self) {
        // Keep what arrived for a later resume; just make sure it reached the file.
        let _ = self.settle();
        if let Some(mut file) = self.file.take() {
            let _ = file.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_chunks_wait_for_idle_small_ones_for_the_buffer_and_all_land_in_order() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("part");
        let dest = dir.path().join("dest");
        let partial = PartialFile::open(path.clone(), true).expect("open");
        let landing = Landing {
            dest: dest.clone(),
            replaces: None,
        };
        let mut sink = partial.sink(0, &landing).expect("sink");
        let on_disk = || fs::metadata(&path).expect("metadata").len();
        let small = vec![1u8; 1430];
        let large = vec![2u8; 65485];
        sink.write(&small).expect("write");
        assert_eq!(on_disk(), 0, "a small chunk waits in the buffer");
        sink.write(&large).expect("write");
        assert_eq!(
            on_disk(),
            small.len() as u64,
            "a large chunk flushes what the buffer holds and waits for idle"
        );
        sink.idle().expect("idle");
        assert_eq!(
            on_disk(),
            (small.len() + large.len()) as u64,
            "written when idle"
        );
        sink.idle().expect("idle");
        // Without an idle between them, the held chunk goes out before the next one.
        sink.write(&large[..HELD_WRITE]).expect("write");
        sink.write(&small).expect("write");
        sink.write(&large).expect("write");
        sink.commit().expect("commit");
        let expected = [&small[..], &large, &large[..HELD_WRITE], &small, &large].concat();
        assert_eq!(fs::read(&dest).expect("read"), expected);
    }

    #[test]
    fn a_held_chunk_reaches_the_partial_file_when_the_sink_is_dropped() {
        // An interrupted download keeps every acknowledged byte for its resume.
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("part");
        let partial = PartialFile::open(path.clone(), true).expect("open");
        let landing = Landing {
            dest: dir.path().join("dest"),
            replaces: None,
        };
        let mut sink = partial.sink(0, &landing).expect("sink");
        sink.write(&[3u8; 65485]).expect("write");
        drop(sink);
        assert_eq!(fs::read(&path).expect("read"), vec![3u8; 65485]);
    }
}
