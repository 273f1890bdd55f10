//! SHA-256 checksums of files, and verification against expected values.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use genlab_core::{Error, Result};
use sha2::{Digest, Sha256};

/// Lower-case hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of the file at `path`, lower-case hex (streamed, constant memory).
pub fn sha256_file(path: &Path) -> Result<String> {
    let f = File::open(path).map_err(|e| Error::io("opening for checksum", path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| Error::io("reading for checksum", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The error for a file whose checksum is not the expected one.
pub fn checksum_mismatch(path: &Path, expected: &str, found: &str) -> Error {
    Error::Data(format!(
        "checksum mismatch for {}: expected sha256 {expected}, found {found}",
        path.display()
    ))
}

/// Checks that `path` exists and has SHA-256 `expected` (hex, any case).
pub fn verify_file(path: &Path, expected: &str) -> Result<()> {
    if !path.is_file() {
        return Err(Error::Data(format!(
            "{} is missing (expected a file with sha256 {expected})",
            path.display()
        )));
    }
    let found = sha256_file(path)?;
    if !found.eq_ignore_ascii_case(expected) {
        return Err(checksum_mismatch(path, expected, &found));
    }
    Ok(())
}

/// Checks every `(file name, sha256)` pair inside `dir`; the first failure is returned.
pub fn verify_files(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (name, sha) in files {
        verify_file(&dir.join(name), sha)?;
    }
    Ok(())
}

/// A writer that hashes everything written through it.
pub(crate) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer and the hex digest of all bytes written.
    pub(crate) fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_files_accepts_good_and_names_bad() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"abc").unwrap();
        std::fs::write(dir.path().join("b.bin"), b"hello").unwrap();
        let good_a = sha256_bytes(b"abc");
        let good_b = sha256_bytes(b"hello");
        verify_files(dir.path(), &[("a.bin", &good_a), ("b.bin", &good_b)]).unwrap();
        // Upper-case expected hex is fine.
        verify_file(&dir.path().join("a.bin"), &good_a.to_uppercase()).unwrap();

        let e = verify_files(dir.path(), &[("a.bin", &good_a), ("b.bin", &good_a)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.bin") && e.contains(&good_a) && e.contains(&good_b),
            "{e}"
        );
        let e = verify_files(dir.path(), &[("missing.bin", &good_a)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.bin") && e.contains("missing"), "{e}");
    }

    #[test]
    fn hashing_writer_matches_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        let (inner, digest) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(digest, sha256_bytes(b"abc"));
    }
}
