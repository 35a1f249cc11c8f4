//! Where a download goes, decided before the first datagram is sent, with the rules of
//! cp, scp and curl, so that no destination is ever damaged:
//!
//! * a folder (`-o DIR`, or any path ending in `/`) receives `DIR/NAME`;
//! * a symbolic link is followed: the download lands at its target, beside which the
//!   partial file lives, and the link stays a link;
//! * a regular file is replaced atomically (partial file, then rename) and the new file
//!   keeps the old one's permission bits and owner; one with other names (hard links) is
//!   written into once the download is verified, so every name sees it; with
//!   `--no-clobber` it is kept;
//! * anything else that exists (a character device such as `/dev/null`, a FIFO, a Unix
//!   socket) is written into, as a stream, never replaced;
//! * a destination that cannot be written (missing or read-only folder, a file we may not
//!   write) fails at once, naming the path.

use super::partial::{partial_path, Landing, PartialFile, Replaced};
use super::stream::Stream;
use super::ClientError;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Where a download goes.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A path: a file (written via a partial file, renamed when verified), a folder (the
    /// file goes inside it under its own name), or a device, FIFO or socket (written into).
    File(PathBuf),
    /// Standard output.
    Stdout,
}

impl Destination {
    /// Whether the download goes inside it under the file's own name: a folder, or a path
    /// ending in `/`.
    pub fn takes_name(&self) -> bool {
        match self {
            Self::Stdout => false,
            Self::File(path) => {
                path.as_os_str().as_bytes().ends_with(b"/")
                    || fs::metadata(path).is_ok_and(|m| m.is_dir())
            }
        }
    }
}

/// How a download treats its destination.
#[derive(Clone, Copy, Debug)]
pub struct GetOptions {
    /// Continue a partial file left by an earlier run (otherwise start over).
    pub resume: bool,
    /// Refuse to replace an existing regular file.
    pub no_clobber: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        Self {
            resume: true,
            no_clobber: false,
        }
    }
}

/// A destination resolved and opened for one download.
pub(crate) enum Target {
    /// Written into as the bytes arrive.
    Stream(Stream),
    /// Collected in a partial file, then renamed into place.
    File {
        partial: PartialFile,
        landing: Landing,
        /// The destination as the user will recognise it (`DIR/NAME`, the link's path).
        shown: String,
    },
}

/// The most symbolic links followed from one destination (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Resolves `dest` for a download of the library file `name` (a plain name, already
/// checked) and opens what must be opened before the request is sent.
///
/// # Errors
/// A local error naming the path when the destination cannot be written.
pub(crate) fn resolve(
    dest: &Destination,
    name: &str,
    options: GetOptions,
) -> Result<Target, ClientError> {
    let path = match dest {
        Destination::Stdout => return Ok(Target::Stream(Stream::stdout())),
        Destination::File(path) => path,
    };
    let path = if dest.takes_name() {
        path.join(name)
    } else {
        path.clone()
    };
    let shown = path.display().to_string();
    let cannot = |e: io::Error| ClientError::local(format!("cannot write {shown}"), e);
    let target = follow_links(&path).map_err(cannot)?;
    let replaces = match fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => {
            return Err(cannot(io::Error::from_raw_os_error(libc::EISDIR)))
        }
        Ok(meta) if !meta.is_file() => {
            let writer = open_special(&target, meta.file_type()).map_err(cannot)?;
            return Ok(Target::Stream(Stream::new(writer, shown)));
        }
        Ok(_) if options.no_clobber => {
            return Err(cannot(io::Error::from_raw_os_error(libc::EEXIST))
                .with_hint("not replaced (--no-clobber)".into()))
        }
        Ok(meta) => {
            // A file we may not write into is not ours to replace (cp, scp and curl
            // refuse it too); opening it for writing changes nothing in it.
            OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(cannot)?;
            Some(Replaced::of(&meta))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(cannot(e)),
    };
    let partial = PartialFile::open(partial_path(&target)?, !options.resume).map_err(cannot)?;
    Ok(Target::File {
        partial,
        landing: Landing {
            dest: target,
            replaces,
        },
        shown,
    })
}

/// The path `path` finally names once every symbolic link is followed (the last one may
/// point at nothing yet: the download creates it).
fn follow_links(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_owned();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&path)?;
                // A relative target is relative to the folder holding the link.
                path = match path.parent() {
                    Some(folder) if target.is_relative() => folder.join(target),
                    _ => target,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// Opens an existing file that is neither regular nor a folder for writing into it: a
/// Unix socket is connected to, anything else opened (a FIFO waits for its reader).
fn open_special(path: &Path, kind: fs::FileType) -> io::Result<Box<dyn Write + Send>> {
    if kind.is_socket() {
        return Ok(Box::new(UnixStream::connect(path)?));
    }
    Ok(Box::new(OpenOptions::new().write(true).open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_followed_relative_to_their_folder_and_loops_fail() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink("../target.bin", sub.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/link", dir.path().join("outer")).unwrap();
        assert_eq!(
            follow_links(&dir.path().join("outer")).unwrap(),
            dir.path().join("sub/../target.bin")
        );
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        let error = follow_links(&dir.path().join("loop")).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
    }
}
