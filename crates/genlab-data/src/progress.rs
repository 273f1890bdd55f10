//! Progress reporting for long operations (downloads), without any terminal dependency.
//!
//! Library code reports through [`Progress`]; the binary implements it with a progress bar,
//! tests and quiet runs use [`NoProgress`].

use std::io::{self, Read};

/// Receives progress of long operations.
pub trait Progress {
    /// A step starts; `total_bytes` when its size is known.
    fn start(&mut self, what: &str, total_bytes: Option<u64>);
    /// `bytes` more were processed in the current step.
    fn advance(&mut self, bytes: u64);
    /// The step `what` finished.
    fn finish(&mut self, what: &str);
    /// A message for the user (e.g. why a fallback source is used).
    fn note(&mut self, msg: &str);
}

/// Discards all progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _what: &str, _total_bytes: Option<u64>) {}
    fn advance(&mut self, _bytes: u64) {}
    fn finish(&mut self, _what: &str) {}
    fn note(&mut self, _msg: &str) {}
}

/// A reader that reports the bytes read through it.
pub(crate) struct ProgressReader<'a, R: Read> {
    inner: R,
    progress: &'a mut dyn Progress,
}

impl<'a, R: Read> ProgressReader<'a, R> {
    pub(crate) fn new(inner: R, progress: &'a mut dyn Progress) -> Self {
        Self { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
