//! The error type of genlab-report.
//!
//! This crate stands alone (it depends on no other genlab crate), so it carries its own
//! small error enum; bad arguments are reported as [`ReportError::InvalidInput`] with a
//! message saying what was expected, never as a panic.

use std::path::PathBuf;

/// Result alias used throughout genlab-report.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// Everything that can go wrong while drawing or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An argument was out of its valid range (what was expected, what came).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The image codec failed to encode a picture.
    #[error("image encoding: {0}")]
    Encode(#[from] image::ImageError),
}

impl ReportError {
    /// Wraps an I/O error with the action and the path it concerned.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`ReportError::InvalidInput`] with a formatted message.
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ReportError::InvalidInput(msg.into())
    }
}
