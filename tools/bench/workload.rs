//! What the benchmarks move: a scratch folder (removed at the end) holding a server library
//! with one file of pseudo-random bytes, and the check that a downloaded copy is identical.
//!
//! The bytes come from a seeded SplitMix64 stream: reproducible, not compressible, and made
//! without a random-number crate.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A folder under the system's temporary folder, removed with everything in it on drop.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new, empty folder named for this process and the current time.
    ///
    /// # Errors
    /// If it cannot be created.
    pub fn create() -> io::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("udpft-bench-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A library folder with one test file.
pub struct TestLibrary {
    /// The library folder (the server's `--root`).
    pub root: PathBuf,
    /// The file's name in the library.
    pub name: String,
    /// The file's size.
    pub size: u64,
}

impl TestLibrary {
    /// Creates `dir/library/bench-SIZE.bin` with `size` pseudo-random bytes from `seed`.
    ///
    /// # Errors
    /// If the folder or file cannot be written.
    pub fn create(dir: &Path, size: u64, seed: u64) -> io::Result<Self> {
        let root = dir.join("library");
        fs::create_dir_all(&root)?;
        let name = format!("bench-{size}.bin");
        let mut out = BufWriter::with_capacity(1 << 20, File::create(root.join(&name))?);
        let mut stream = SplitMix64(seed);
        let mut block = vec![0u8; 1 << 16];
        let mut left = size;
        while left > 0 {
            for word in block.chunks_exact_mut(8) {
                word.copy_from_slice(&stream.next().to_le_bytes());
            }
            let n = left.min(block.len() as u64) as usize;
            out.write_all(&block[..n])?;
            left -= n as u64;
        }
        // On disk before any measurement: the kernel would otherwise write a fresh file of
        // hundreds of MiB back while the first cells run (30 s after it was written),
        // taking CPU from the transfers being timed.
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(Self { root, name, size })
    }

    /// The file's path in the library.
    pub fn file(&self) -> PathBuf {
        self.root.join(&self.name)
    }
}

/// Whether the files at `a` and `b` hold the same bytes.
///
/// # Errors
/// If either cannot be read.
pub fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    if fs::metadata(a)?.len() != fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, well-mixed 64-bit generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_file_has_the_size_asked_and_compares_equal_to_a_copy() {
        let scratch = Scratch::create().unwrap();
        let lib = TestLibrary::create(scratch.path(), 100_003, 7).unwrap();
        assert_eq!(fs::metadata(lib.file()).unwrap().len(), 100_003);
        let copy = scratch.path().join("copy");
        fs::copy(lib.file(), &copy).unwrap();
        assert!(same_bytes(&lib.file(), &copy).unwrap());
        let mut bytes = fs::read(&copy).unwrap();
        bytes[50_000] ^= 1;
        fs::write(&copy, bytes).unwrap();
        assert!(!same_bytes(&lib.file(), &copy).unwrap());
    }
}
