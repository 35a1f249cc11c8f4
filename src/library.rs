//! The library: the one folder a server shares, seen through the [`Store`] trait.
//!
//! Requests are judged before their peers prove their address, so the checks they need open
//! nothing: a download is inspected with one `lstat`, an upload's name and existence too, and
//! the listing is a snapshot kept while the folder does not change (built at most once a
//! second however many listings are asked). Files are opened, and uploads created, only for
//! proven peers; a file is served only if it is still the version its Accept described.
//!
//! Names from the network are checked before they touch the file system ([`check_name`]):
//! one plain, visible, printable component of at most 255 bytes of UTF-8 — no `..`, no
//! separators, no NUL, no absolute or drive paths. Only regular files directly in the root
//! are listed or served, and symlinks are never followed, so nothing outside the root can
//! be reached. Uploads go to a hidden temporary file beside their final place and appear
//! under their name only when committed after the whole-file checksum matched; a dropped,
//! uncommitted upload removes its temporary file.

use crate::proto::listing::{self, Entry};
use crate::proto::refusal::Refusal;
use crate::proto::session::{FileCrc, Sink, Source};
use crate::proto::store::{FileInfo, Store};
use crate::proto::wire::{ErrorCode, MAX_NAME_LEN};
use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Create the folder if it does not exist (otherwise a missing folder is an error: a
    /// mistyped path must not silently serve a new empty folder).
    pub create: bool,
}

/// A folder served as a library. Clones share one memory of file checksums and one listing
/// snapshot.
#[derive(Clone, Debug)]
pub struct Library {
    root: PathBuf,
    crcs: Crcs,
    listing: Arc<Mutex<Option<Snapshot>>>,
    /// Bumped by every upload this library commits, so its snapshot is never stale for them.
    generation: Arc<AtomicU64>,
}

/// A listing snapshot and what it was built from.
#[derive(Debug)]
struct Snapshot {
    bytes: Arc<[u8]>,
    folder: FolderStamp,
    generation: u64,
    built: SystemTime,
}

/// How long a listing snapshot is reused at most: a file rewritten in place (which changes
/// no entry of the folder) shows its new size and time in the listing within this time.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

/// A snapshot younger than this is reused even though the folder changed since (an upload
/// opened or cancelled, a file copied in by someone else): a folder that changes all the time
/// must not make every List request, proven or not, read the whole folder again (a List storm
/// while a peer opens and cancels uploads every 50 ms did exactly that). A commit of this
/// library's own (a new generation) is always shown at once.
const SNAPSHOT_MIN_AGE: Duration = Duration::from_millis(250);

/// File times tick coarsely (the kernel's clock tick): a snapshot built within this time of
/// the folder's last change may have missed a change in the same tick, so it is not reused.
const FOLDER_SETTLE: Duration = Duration::from_millis(100);

/// What changes whenever an entry is added to, removed from or renamed in a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FolderStamp {
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FolderStamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Library {
    /// Opens `root` as a library (creating it if missing, with `options.create`), and
    /// removes temporary files that an earlier run left behind (an upload cut short by a
    /// crash).
    ///
    /// # Errors
    /// If the folder is missing (without `create`), is not a folder, or cannot be created
    /// or read.
    pub fn open(root: &Path, options: LibraryOptions) -> io::Result<Self> {
        if options.create {
            fs::create_dir_all(root)?;
        }
        let root = root.canonicalize()?;
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            root,
            crcs: Crcs::default(),
            listing: Arc::default(),
            generation: Arc::default(),
        })
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

/// Whole seconds since the epoch, as POSIX `st_mtime` has them: rounded toward negative
/// infinity (protocol.md §11), so a time before 1970 is not moved forward.
fn mtime_secs(meta: &Metadata) -> i64 {
    meta.mtime()
}

fn io_refusal(what: &str, e: &io::Error) -> Refusal {
    let code = match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        _ => ErrorCode::Io,
    };
    Refusal::new(code, format!("{what}: {e}"))
}

impl Library {
    /// The listing snapshot, rebuilt when this library committed an upload, or when the
    /// folder changed or the snapshot is older than [`SNAPSHOT_TTL`] — but not more often
    /// than every [`SNAPSHOT_MIN_AGE`] for those two.
    fn snapshot(&self) -> io::Result<Arc<[u8]>> {
        let folder = FolderStamp::of(&fs::metadata(&self.root)?);
        let generation = self.generation.load(Ordering::SeqCst);
        let now = SystemTime::now();
        let mut cached = self.listing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(snapshot) = cached.as_ref() {
            let fresh = now
                .duration_since(snapshot.built)
                .is_ok_and(|age| age < SNAPSHOT_TTL);
            let settled = UNIX_EPOCH
                + Duration::new(folder.mtime.0.max(0) as u64, folder.mtime.1 as u32)
                + FOLDER_SETTLE
                <= snapshot.built;
            let young = now
                .duration_since(snapshot.built)
                .is_ok_and(|age| age < SNAPSHOT_MIN_AGE);
            let unchanged = fresh && settled && snapshot.folder == folder;
            if snapshot.generation == generation && (young || unchanged) {
                return Ok(Arc::clone(&snapshot.bytes));
            }
        }
        let mut bytes = Vec::new();
        for entry in &self.entries()? {
            listing::encode_entry(entry, &mut bytes);
        }
        let bytes: Arc<[u8]> = bytes.into();
        *cached = Some(Snapshot {
            bytes: Arc::clone(&bytes),
            folder,
            generation,
            built: now,
        });
        Ok(bytes)
    }

    /// The metadata of `name`'s regular file in the root (a symlink is never followed), or
    /// the refusal.
    fn regular(&self, name: &[u8]) -> Result<(PathBuf, Option<Metadata>), Refusal> {
        let path = self.path_of(name)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) => Ok((path, Some(meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((path, None)),
            Err(e) => Err(io_refusal(
                &format!("cannot look up {}", String::from_utf8_lossy(name)),
                &e,
            )),
        }
    }
}

fn not_found(name: &[u8]) -> Refusal {
    Refusal::new(
        ErrorCode::NotFound,
        format!("no such file: {}", String::from_utf8_lossy(name)),
    )
}

impl Store for Library {
    fn listing(&mut self) -> Result<Arc<[u8]>, Refusal> {
        self.snapshot()
            .map_err(|e| io_refusal("cannot read the library", &e))
    }

    fn committed(&mut self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn inspect(&mut self, name: &[u8]) -> Result<FileInfo, Refusal> {
        match self.regular(name)? {
            (_, Some(meta)) if meta.is_file() => Ok(FileInfo {
                size: meta.len(),
                version: Version::of(&meta).stamp(),
            }),
            _ => Err(not_found(name)),
        }
    }

    fn check_upload(&mut self, name: &[u8], overwrite: bool) -> Result<(), Refusal> {
        let shown = String::from_utf8_lossy(name);
        match self.regular(name)? {
            (_, Some(meta)) if !meta.is_file() => Err(Refusal::new(
                ErrorCode::BadName,
                format!("{shown} exists and is not a regular file"),
            )),
            (_, Some(_)) if !overwrite => Err(Refusal::new(
                ErrorCode::Exists,
                format!("file exists: {shown} (use --force to overwrite)"),
            )),
            _ => Ok(()),
        }
    }

    fn open(&mut self, name: &[u8], expected: &FileInfo) -> Result<Box<dyn Source>, Refusal> {
        let path = self.path_of(name)?;
        let shown = String::from_utf8_lossy(name);
        // O_NOFOLLOW: a symlink fails to open rather than lead out of the root.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => not_found(name),
                _ if e.raw_os_error() == Some(libc::ELOOP) => not_found(name),
                _ => io_refusal(&format!("cannot open {shown}"), &e),
            })?;
        let (mut source, _) =
            FileSource::new(file).map_err(|e| io_refusal(&format!("cannot open {shown}"), &e))?;
        if !source.meta.is_file() {
            return Err(not_found(name));
        }
        if source.version.stamp() != expected.version {
            return Err(Refusal::new(
                ErrorCode::FileChanged,
                format!("{shown} changed since it was offered; try again"),
            ));
        }
        source.crcs = Some(self.crcs.clone());
        Ok(Box::new(source))
    }

    fn create(
        &mut self,
        name: &[u8],
        _size: u64,
        overwrite: bool,
    ) -> Result<Box<dyn Sink>, Refusal> {
        // Judged before proof already; judged again, since the folder may have changed.
        self.check_upload(name, overwrite)?;
        let path = self.path_of(name)?;
        let (file, temp) = create_temp(&self.root)
            .map_err(|e| io_refusal("cannot create a temporary file", &e))?;
        Ok(Box::new(UploadSink {
            file: Some(BufWriter::with_capacity(1 << 16, file)),
            temp,
            path,
            overwrite,
            committed: false,
            generation: Arc::clone(&self.generation),
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

/// One version of a file: what changes whenever its bytes may have. The modification time
/// alone is not enough (`touch -d` and `rsync --inplace -t` set it back), but nobody can set
/// the change time back, and a replaced file has another inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    /// An opaque stamp of this version (for [`FileInfo::version`]).
    fn stamp(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }

    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The whole-file CRC32s of the library's file versions, remembered so that a resumed
/// download costs no hashing of its prefix once any transfer has read that version whole.
/// Shared by every clone of a library (the threads of one server).
#[derive(Clone, Debug, Default)]
struct Crcs(Arc<Mutex<HashMap<Version, Option<u32>>>>);

/// Versions remembered at most (12 bytes of CRC and key each, about 64 bytes in the map).
const MAX_CRCS: usize = 4096;

impl Crcs {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Version, Option<u32>>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What is known of `version`'s CRC; with `claim`, an unknown one is marked as being
    /// computed (`None` in the map) by the caller.
    fn lookup(&self, version: Version, claim: bool) -> FileCrc {
        self.with(|map| match map.get(&version) {
            Some(Some(crc)) => FileCrc::Known(*crc),
            Some(None) => FileCrc::Pending,
            None => {
                if claim {
                    make_room(map);
                    map.insert(version, None);
                }
                FileCrc::Unknown
            }
        })
    }

    fn remember(&self, version: Version, crc: u32) {
        self.with(|map| {
            make_room(map);
            map.insert(version, Some(crc));
        });
    }

    /// Withdraws a claim that did not end in a CRC.
    fn release(&self, version: Version) {
        self.with(|map| {
            if map.get(&version) == Some(&None) {
                map.remove(&version);
            }
        });
    }
}

/// Forgets an arbitrary remembered version when the map is full (a bounded memory: the cost
/// of forgetting is one more hash of that file).
fn make_room(map: &mut HashMap<Version, Option<u32>>) {
    if map.len() >= MAX_CRCS {
        if let Some(victim) = map.keys().next().copied() {
            map.remove(&victim);
        }
    }
}

/// A file being sent (a library file to a client, or a local file to a server); it
/// notices if the file changes underneath.
pub struct FileSource {
    file: File,
    meta: Metadata,
    version: Version,
    /// The library's remembered CRCs, for a library file.
    crcs: Option<Crcs>,
    /// Whether this source claimed the computation of its version's CRC.
    claimed: bool,
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
                version: Version::of(&meta),
                meta,
                crcs: None,
                claimed: false,
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
        Ok(Version::of(&self.file.metadata()?) == self.version)
    }

    fn file_crc(&mut self, claim: bool) -> FileCrc {
        let Some(crcs) = &self.crcs else {
            return FileCrc::Unknown;
        };
        if self.claimed {
            // Computing it is this source's own job already.
            return FileCrc::Unknown;
        }
        let answer = crcs.lookup(self.version, claim);
        if claim && answer == FileCrc::Unknown {
            self.claimed = true;
        }
        answer
    }

    fn remember_crc(&mut self, crc: u32) {
        if let Some(crcs) = &self.crcs {
            crcs.remember(self.version, crc);
            self.claimed = false;
        }
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        if let (true, Some(crcs)) = (self.claimed, &self.crcs) {
            crcs.release(self.version);
        }
    }
}

/// An upload in progress: a hidden temporary file, renamed into place on commit.
struct UploadSink {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    path: PathBuf,
    overwrite: bool,
    committed: bool,
    /// The library's generation, bumped once the new file is in place.
    generation: Arc<AtomicU64>,
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
        self.generation.fetch_add(1, Ordering::SeqCst);
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

#[cfg(test)]
mod version_tests {
    use super::*;
    use crate::proto::checksum::hash_source;
    use crate::proto::wire::Algo;
    use sha2::Digest;
    use std::time::{Duration, SystemTime};

    fn open(library: &mut Library, name: &[u8]) -> Box<dyn Source> {
        let info = library.inspect(name).expect("inspected");
        library
            .open(name, &info)
            .map_err(|r| r.text)
            .expect("opens")
    }

    fn library_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, Library) {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(name), bytes).expect("file written");
        let library = Library::open(dir.path(), LibraryOptions::default()).expect("library");
        (dir, library)
    }

    #[test]
    fn a_rewrite_in_place_with_its_mtime_restored_is_a_change() {
        let (dir, mut library) = library_with("f", b"old bytes");
        let path = dir.path().join("f");
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime set");
        let mut source = open(&mut library, b"f");
        assert!(source.unchanged().expect("stat"));
        // What `rsync --inplace -t` does: same size, new bytes, the old mtime put back.
        let file = File::options().write(true).open(&path).expect("open");
        file.write_all_at(b"new bytes", 0).expect("rewrite");
        file.set_modified(mtime).expect("mtime restored");
        assert_eq!(
            fs::metadata(&path).expect("stat").modified().ok(),
            Some(mtime)
        );
        assert!(
            !source.unchanged().expect("stat"),
            "ctime must reveal the rewrite"
        );
    }

    /// A library file that someone changes right after the hasher's first read.
    struct Meddled {
        inner: Box<dyn Source>,
        meddle: Option<Box<dyn FnOnce() + Send>>,
    }

    impl Source for Meddled {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read_at(offset, buf)?;
            if let Some(meddle) = self.meddle.take() {
                meddle();
            }
            Ok(n)
        }
        fn unchanged(&mut self) -> io::Result<bool> {
            self.inner.unchanged()
        }
    }

    /// Hashes a 1 MiB library file that `meddle` changes (given its path) right after the
    /// first read; returns the refusal.
    fn hash_meddled(meddle: impl FnOnce(&Path) + Send + 'static) -> Refusal {
        let (dir, mut library) = library_with("big", &vec![7u8; 1 << 20]);
        let info = library.inspect(b"big").expect("inspected");
        let inner = library
            .open(b"big", &info)
            .map_err(|r| r.text)
            .expect("opens");
        let path = dir.path().join("big");
        let mut source = Meddled {
            inner,
            meddle: Some(Box::new(move || meddle(&path))),
        };
        hash_source(&mut source, info.size, Algo::Sha256, "big").expect_err("refused")
    }

    #[test]
    fn a_file_that_grows_while_it_is_hashed_gives_file_changed_not_a_checksum() {
        let refusal = hash_meddled(|path| {
            let file = File::options().append(true).open(path).expect("open");
            (&file).write_all(b"more").expect("appended");
        });
        assert_eq!(refusal.code, ErrorCode::FileChanged);
        assert_eq!(
            refusal.text,
            "big changed while it was being hashed; try again"
        );
    }

    #[test]
    fn a_file_cut_short_while_it_is_hashed_gives_file_changed_not_a_checksum() {
        let refusal = hash_meddled(|path| {
            File::options()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(1000))
                .expect("truncated");
        });
        assert_eq!(refusal.code, ErrorCode::FileChanged);
    }

    #[test]
    fn a_checksum_of_an_unchanged_file_is_its_sha256_and_a_crc32_is_remembered() {
        let bytes = vec![7u8; 1 << 20];
        let (_dir, mut library) = library_with("big", &bytes);
        let info = library.inspect(b"big").expect("inspected");
        let sha = library
            .checksum(b"big", &info, Algo::Sha256)
            .expect("hashed");
        assert_eq!(sha.size, 1 << 20);
        assert_eq!(sha.digest, sha2::Sha256::digest(&bytes).to_vec());
        let crc = library
            .checksum(b"big", &info, Algo::Crc32)
            .expect("hashed");
        assert_eq!(crc.digest, crc32fast::hash(&bytes).to_be_bytes());
        assert_eq!(
            open(&mut library, b"big").file_crc(false),
            FileCrc::Known(crc32fast::hash(&bytes)),
            "the CRC32 is remembered for this version"
        );
    }

    #[test]
    fn a_file_crc_is_computed_once_per_version_and_shared() {
        let (dir, mut library) = library_with("f", b"some bytes");
        let mut open = || open(&mut library, b"f");
        let mut first = open();
        let mut second = open();
        assert_eq!(second.file_crc(false), FileCrc::Unknown);
        assert_eq!(first.file_crc(true), FileCrc::Unknown, "first claims");
        assert_eq!(second.file_crc(true), FileCrc::Pending, "claimed by first");
        drop(first);
        assert_eq!(second.file_crc(true), FileCrc::Unknown, "released on drop");
        second.remember_crc(0xDEAD_BEEF);
        assert_eq!(open().file_crc(true), FileCrc::Known(0xDEAD_BEEF));
        // A new version is a new file: nothing is known of it.
        fs::write(dir.path().join("f"), b"other bytes").expect("rewritten");
        assert_eq!(open().file_crc(false), FileCrc::Unknown);
    }
}
