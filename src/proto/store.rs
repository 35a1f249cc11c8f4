//! What the server serves, as the front door and the sessions see it: the [`Store`] trait.
//!
//! A request is judged before its peer has proven its address, so the checks a request
//! needs ([`Store::listing`], [`Store::inspect`], [`Store::check_upload`]) open no file,
//! create nothing and must be cheap; only a proven peer's session opens the file or creates
//! the upload ([`Store::open`], [`Store::create`]), and only a proven peer's checksum reads
//! and hashes a file ([`Store::checksum`]). Which names are allowed is the store's to
//! decide.

use super::checksum::{hash_source, Checksum};
use super::refusal::Refusal;
use super::session::{Sink, Source};
use super::wire::Algo;
use std::sync::Arc;

/// What a download was promised: the file's size and an opaque stamp of its version (it
/// changes whenever the file's bytes may have), so the session can refuse a file that
/// changed between the Accept and the peer's proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The file's size in bytes.
    pub size: u64,
    /// The version stamp.
    pub version: u64,
}

/// The library, seen through what requests ask of it.
pub trait Store: Send {
    /// The encoded listing (see [`super::listing`]), shared: a store may keep one snapshot
    /// for as long as the library does not change, and must, since this runs for every
    /// unproven List request.
    ///
    /// # Errors
    /// A refusal to send to the client.
    fn listing(&mut self) -> Result<Arc<[u8]>, Refusal>;

    /// Another process committed an upload to this store's folder: a listing snapshot from
    /// before must not be reused. (A commit through this store says so itself.)
    fn committed(&mut self) {}

    /// Whether `name` can be downloaded, and its size and version; opens nothing.
    ///
    /// # Errors
    /// A refusal (no such file, bad name...).
    fn inspect(&mut self, name: &[u8]) -> Result<FileInfo, Refusal>;

    /// Whether an upload as `name` could be created (the name is allowed, and an existing
    /// file is a regular one that may be replaced only with `overwrite`); creates nothing.
    ///
    /// # Errors
    /// A refusal (bad name, exists...).
    fn check_upload(&mut self, name: &[u8], overwrite: bool) -> Result<(), Refusal>;

    /// Opens `name` for a proven download of the version `expected` described.
    ///
    /// # Errors
    /// A refusal; [`super::ErrorCode::FileChanged`] if the file is no longer that version.
    fn open(&mut self, name: &[u8], expected: &FileInfo) -> Result<Box<dyn Source>, Refusal>;

    /// Starts a proven upload of `size` bytes as `name`; the sink must leave nothing visible
    /// unless committed.
    ///
    /// # Errors
    /// A refusal (exists, bad name, disk...).
    fn create(&mut self, name: &[u8], size: u64, overwrite: bool)
        -> Result<Box<dyn Sink>, Refusal>;

    /// The checksum of `name` by `algo`, for a proven Sum of the version `expected`
    /// described: the whole file is read (a CRC32 the store remembers for that version is
    /// used instead). This is the one CPU-heavy call a store has; its caller chooses the
    /// thread it runs on.
    ///
    /// # Errors
    /// A refusal; [`super::ErrorCode::FileChanged`] if the file is not, or stops being, that
    /// version while it is hashed.
    fn checksum(
        &mut self,
        name: &[u8],
        expected: &FileInfo,
        algo: Algo,
    ) -> Result<Checksum, Refusal> {
        let mut source = self.open(name, expected)?;
        let shown = String::from_utf8_lossy(name);
        hash_source(source.as_mut(), expected.size, algo, &shown)
    }
}
