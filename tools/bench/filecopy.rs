//! The file-copy reference: the test file read in chunk-sized reads and written, in
//! chunk-sized writes, to a new file in the folder the client's downloads go to, then
//! removed. A download that writes the file cannot be faster than writing it, and at large
//! chunks a new file in the page cache (not the UDP round trip) is what bounds it. Like the
//! client, it does not fsync: the bytes need only reach the page cache. It reads the file
//! as well, as a local copy does, while the client leaves reading to its server (another
//! process), so writing alone is faster than this: it is a low estimate of the bound.

use crate::results::mb_per_s;
use crate::workload::read_full;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// One measured copy.
#[derive(Clone, Copy, Debug)]
pub struct FileCopy {
    /// Bytes copied.
    pub bytes: u64,
    /// From opening the source to the copy's close (the client's elapsed time ends after
    /// it closes its file too).
    pub elapsed: Duration,
}

impl FileCopy {
    /// File bytes per second in MB/s (10^6 bytes).
    pub fn mb_s(&self) -> f64 {
        mb_per_s(self.bytes, self.elapsed)
    }
}

/// Copies `source` to the new file `dest` in `chunk`-byte reads and writes, times it, and
/// removes `dest` (not timed), whether the copy succeeded or not: a copy left behind would
/// make every later one fail to create it.
///
/// # Errors
/// If either file cannot be opened, read or written, or `dest` already exists.
pub fn measure(source: &Path, dest: &Path, chunk: usize) -> io::Result<FileCopy> {
    let started = Instant::now();
    let copied = copy(source, dest, chunk);
    let elapsed = started.elapsed();
    let removed = match &copied {
        // `create_new` refused a file that is not ours: leave it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        _ => fs::remove_file(dest),
    };
    let bytes = copied?;
    removed?;
    Ok(FileCopy { bytes, elapsed })
}

/// The copy itself, up to and including closing `dest`; returns the bytes copied.
fn copy(source: &Path, dest: &Path, chunk: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; chunk.max(1)];
    let mut from = File::open(source)?;
    // A new file, as each download's partial file is: rewriting an existing one would
    // measure overwriting cached pages, not allocating them.
    let mut to = File::options().write(true).create_new(true).open(dest)?;
    let mut bytes = 0;
    loop {
        let n = read_full(&mut from, &mut buf)?;
        if n == 0 {
            return Ok(bytes);
        }
        to.write_all(&buf[..n])?;
        bytes += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{same_bytes, Scratch, TestLibrary};

    #[test]
    fn copies_byte_for_byte_and_the_measured_copy_leaves_no_file() {
        let scratch = Scratch::create().unwrap();
        let lib = TestLibrary::create(scratch.path(), 100_003, 3).unwrap();
        let dest = scratch.path().join("copy");
        assert_eq!(copy(&lib.file(), &dest, 1430).unwrap(), 100_003);
        assert!(same_bytes(&lib.file(), &dest).unwrap());
        fs::remove_file(&dest).unwrap();
        let measured = measure(&lib.file(), &dest, 65_485).unwrap();
        assert_eq!(measured.bytes, 100_003);
        assert!(measured.mb_s() > 0.0);
        assert!(!dest.exists());
    }
}
