//! The library: the one folder a server shares, seen through the [`Store`] trait.
//!
//! Names from the network are checked before they touch the file system ([`check_name`]):
//! one plain, visible, printable component of at most 255 bytes of UTF-8 — no `..`, no
//! separators, no NUL, no absolute or drive paths. Only regular files directly in the root
//! are listed or served, and symlinks are never followed, so nothing outside the root can
//! be reached. Uploads go to a hidden temporary file beside their final place and appear
//! under their name only when committed after the whole-file checksum matched; a dropped,
//! uncommitted upload removes its temporary file.

use crate::proto::listing::{self, Entry};
use crate::proto::session::{Sink, Source};
use crate::proto::table::{Refusal, Store};
use crate::proto::wire::{ErrorCode, MAX_NAME_LEN};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Prefix of the hidden temporary files of uploads in progress.
pub const TEMP_PREFIX: &str = ".udpft-tmp.";

/// Checks a file name received from the network and returns it as text.
///
/// # Errors
/// A [`Refusal`] with [`ErrorCode::BadName`] saying what is wrong with the name.
pub fn check_name(name: &[u8]) -> Result<&str, Refusal> {
    let bad = |why: &str| {
        Err(Refusal::new(
            ErrorCode::BadName,
            format!("name not allowed: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 255 bytes");
    }
    let Ok(text) = std::str::from_utf8(name) else {
        return bad("not valid UTF-8");
    };
    if text == "." || text == ".." {
        return bad("not a file name");
    }
    if text.contains(['/', '\\']) {
        return bad("contains a path separator");
    }
    if text.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if text.starts_with('.') {
        return bad("hidden files are not served");
    }
    let bytes = text.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return bad("looks like a drive path");
    }
    Ok(text)
}

/// Options of a served library.
#[derive(Clone, Debug, Default)]
pub struct LibraryOptions {
    /// Refuse every upload.
    pub read_only: bool,
    /// Refuse uploads larger than this many bytes.
    pub max_upload: Option<u64>,
}

/// A folder served as a library.
#[derive(Clone, Debug)]
pub struct Library {
    root: PathBuf,
    options: LibraryOptions,
}

impl Library {
    /// Opens `root` as a library, creating it if missing, and removes temporary files that
    /// an earlier run left behind (an upload cut short by a crash).
    ///
    /// # Errors
    /// If the folder cannot be created or read.
    pub fn open(root: &Path, options: LibraryOptions) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self { root, options })
    }

    /// The library's folder (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every listable file: regular, visible, with an acceptable name; sorted by name.
    ///
    /// # Errors
    /// If the folder cannot be read.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for dirent in fs::read_dir(&self.root)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if check_name(name.as_bytes()).is_err() {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks: a link is never "a file".
            let Ok(meta) = dirent.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            entries.push(Entry {
                name: name.as_bytes().to_vec(),
                size: meta.len(),
                mtime: mtime_secs(&meta),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn path_of(&self, name: &[u8]) -> Result<PathBuf, Refusal> {
        Ok(self.root.join(check_name(name)?))
    }
}

fn mtime_secs(meta: &Metadata) -> i64 {
    match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(d)) => d.as_secs() as i64,
        Ok(Err(before)) => -(before.duration().as_secs() as i64),
        Err(_) => 0,
    }
}

fn io_refusal(what: &str, e: &io::Error) -> Refusal {
    let code = match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        _ => ErrorCode::Io,
    };
    Refusal::new(code, format!("{what}: {e}"))
}

impl Store for Library {
    fn listing(&mut self) -> Result<Vec<u8>, Refusal> {
        let entries = self
            .entries()
            .map_err(|e| io_refusal("cannot read the library", &e))?;
        let mut bytes = Vec::new();
        for entry in &entries {
            listing::encode_entry(entry, &mut bytes);
        }
        Ok(bytes)
    }

    fn open(&mut self, name: &[u8]) -> Result<(Box<dyn Source>, u64), Refusal> {
        let path = self.path_of(name)?;
        let shown = String::from_utf8_lossy(name);
        let not_found = || Refusal::new(ErrorCode::NotFound, format!("no such file: {shown}"));
        // O_NOFOLLOW: a symlink fails to open rather than lead out of the root.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => not_found(),
                _ if e.raw_os_error() == Some(libc::ELOOP) => not_found(),
                _ => io_refusal(&format!("cannot open {shown}"), &e),
            })?;
        let (source, size) =
            FileSource::new(file).map_err(|e| io_refusal(&format!("cannot open {shown}"), &e))?;
        if !source.meta.is_file() {
            return Err(not_found());
        }
        Ok((Box::new(source), size))
    }

    fn create(
        &mut self,
        name: &[u8],
        size: u64,
        overwrite: bool,
    ) -> Result<Box<dyn Sink>, Refusal> {
        if self.options.read_only {
            return Err(Refusal::new(
                ErrorCode::ReadOnly,
                "server is read-only: uploads are refused",
            ));
        }
        let path = self.path_of(name)?;
        let shown = String::from_utf8_lossy(name).into_owned();
        if let Some(limit) = self.options.max_upload {
            if size > limit {
                return Err(Refusal::new(
                    ErrorCode::TooLarge,
                    format!("{shown} is {size} bytes; this server takes at most {limit}"),
                ));
            }
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                return Err(Refusal::new(
                    ErrorCode::BadName,
                    format!("{shown} exists and is not a regular file"),
                ))
            }
            Ok(_) if !overwrite => {
                return Err(Refusal::new(
                    ErrorCode::Exists,
                    format!("file exists: {shown} (use --force to overwrite)"),
                ))
            }
            _ => {}
        }
        let (file, temp) = create_temp(&self.root)
            .map_err(|e| io_refusal("cannot create a temporary file", &e))?;
        Ok(Box::new(UploadSink {
            file: Some(BufWriter::with_capacity(1 << 16, file)),
            temp,
            path,
            overwrite,
            committed: false,
        }))
    }
}

/// Creates a fresh hidden temporary file in `dir` for an upload. Its name carries only a
/// random id, so it fits wherever the final name (up to 255 bytes) fits.
fn create_temp(dir: &Path) -> io::Result<(File, PathBuf)> {
    let mut ids = crate::ids::IdSource::new();
    loop {
        let temp = dir.join(format!("{TEMP_PREFIX}{:08x}", ids.next_id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((file, temp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A file being sent (a library file to a client, or a local file to a server); it
/// notices if the file changes underneath.
pub struct FileSource {
    file: File,
    meta: Metadata,
    /// Bytes read ahead: small chunks are served from here, so a download of 1430-byte
    /// chunks costs one `pread` per [`READ_BLOCK`] instead of one per chunk.
    block: Vec<u8>,
    block_start: u64,
}

/// How much a [`FileSource`] reads at once for small chunks. Small enough that a thousand
/// open sessions stay cheap.
const READ_BLOCK: usize = 16 << 10;

impl FileSource {
    /// Wraps an open file and returns it with its size.
    ///
    /// # Errors
    /// If the file's metadata cannot be read.
    pub fn new(file: File) -> io::Result<(Self, u64)> {
        let meta = file.metadata()?;
        let size = meta.len();
        Ok((
            Self {
                file,
                meta,
                block: Vec::new(),
                block_start: 0,
            },
            size,
        ))
    }
}

impl Source for FileSource {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() > READ_BLOCK / 2 {
            return self.file.read_at(buf, offset);
        }
        let end = self.block_start + self.block.len() as u64;
        if offset < self.block_start || offset + buf.len() as u64 > end {
            self.block.resize(READ_BLOCK, 0);
            let n = self.file.read_at(&mut self.block, offset)?;
            self.block.truncate(n);
            self.block_start = offset;
        }
        let from = (offset - self.block_start) as usize;
        let n = buf.len().min(self.block.len().saturating_sub(from));
        buf[..n].copy_from_slice(&self.block[from..from + n]);
        Ok(n)
    }

    fn unchanged(&mut self) -> io::Result<bool> {
        let now = self.file.metadata()?;
        Ok(now.len() == self.meta.len()
            && now.mtime() == self.meta.mtime()
            && now.mtime_nsec() == self.meta.mtime_nsec())
    }
}

/// An upload in progress: a hidden temporary file, renamed into place on commit.
struct UploadSink {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    path: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl Sink for UploadSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.write_all(data),
            None => Err(io::Error::other("upload already closed")),
        }
    }

    fn commit(&mut self) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("upload already closed"))?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        if self.overwrite {
            fs::rename(&self.temp, &self.path)?;
        } else {
            // A hard link fails if the name appeared meanwhile: never clobber.
            fs::hard_link(&self.temp, &self.path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(e.kind(), "file exists (created during the upload)")
                } else {
                    e
                }
            })?;
            // The file is in place: the upload is committed. A temporary name that cannot
            // be removed now is hidden, and removed at the next start.
            let _ = fs::remove_file(&self.temp);
        }
        self.committed = true;
        // Make the new name durable too.
        if let Some(dir) = self.path.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for UploadSink {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_or_hide_are_refused() {
        for name in [
            &b""[..],
            b".",
            b"..",
            b"../etc/passwd",
            b"a/b",
            b"a\\b",
            b"/etc/passwd",
            b"nul\0byte",
            b".hidden",
            b"C:evil",
            b"esc\x1b[2J",
            b"\xff\xfe",
            &[b'a'; 256],
        ] {
            assert!(check_name(name).is_err(), "{:?} should be refused", name);
        }
    }

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "report.pdf",
            "a",
            "x..y",
            "été.txt",
            "with space",
            &"a".repeat(255),
        ] {
            assert_eq!(check_name(name.as_bytes()), Ok(name));
        }
    }
}
