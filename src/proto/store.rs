//! What the server serves, as the front door and the sessions see it: the [`Store`] trait.
//!
//! A request is judged before its peer has proven its address, so the checks a request
//! needs ([`Store::listing`], [`Store::inspect`], [`Store::check_upload`]) open no file,
//! create nothing and must be cheap; only a proven peer's session opens the file or creates
//! the upload ([`Store::open`], [`Store::create`]). Which names are allowed is the store's
//! to decide.

use super::refusal::Refusal;
use super::session::{Sink, Source};
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
}
