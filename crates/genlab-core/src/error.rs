//! The error type of every genlab library crate.
//!
//! Each variant carries enough context to tell the user what was wrong and what was
//! expected; the binary prints it through anyhow, libraries never panic on bad input.

use std::path::PathBuf;

/// Result alias used across genlab's library crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written. The OS error is part of the message and not
    /// also exposed as `source()`, so error chains (`{:#}` in the binary) print it once.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The tensor library reported a failure (shape mismatch, unsupported op...).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A configuration key, value or file was invalid.
    #[error("config: {0}")]
    Config(String),
    /// A checkpoint is missing, corrupt or belongs to something else.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A dataset is missing, corrupt or does not match its expected checksum/format.
    #[error("data: {0}")]
    Data(String),
    /// An argument was out of its valid range.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A setting the caller chose (or left out) is wrong. `setting` names it as the library
    /// does (`model`, `steps`, `temperature`, or a config key such as `train.lr`); a front
    /// end that takes it under another name (a command-line flag) says so when it reports
    /// the error. `problem` says what was wrong and what was expected, phrased to follow the
    /// setting's name ("must be at least 1, got 0").
    #[error("{setting} {problem}")]
    Setting { setting: String, problem: String },
    /// A numeric failure detected at run time (NaN/inf loss, diverged sampler).
    #[error("numeric: {0}")]
    Numeric(String),
    /// The run was interrupted (Ctrl-C) after saving its state.
    #[error("interrupted")]
    Interrupted,
    /// Another live process holds the lock of a run directory (it is training there).
    #[error(
        "run directory {} is in use by {}; wait for it or choose another directory",
        .dir.display(),
        holder_text(.pid, .started)
    )]
    RunDirInUse {
        dir: PathBuf,
        /// The holder's process id, when its lock file could be read.
        pid: Option<u32>,
        /// When the holder took the lock (UTC, human-readable), when it could be read.
        started: Option<String>,
    },
}

/// "process 123 (started ...)", or what is known of the holder of a run directory.
fn holder_text(pid: &Option<u32>, started: &Option<String>) -> String {
    match (pid, started) {
        (Some(p), Some(s)) => format!("process {p} (started {s})"),
        (Some(p), None) => format!("process {p}"),
        // The holder has locked the file but not yet written itself into it, or the OS
        // keeps a locked file unreadable (Windows).
        _ => "another process".to_string(),
    }
}

impl Error {
    /// Wraps an I/O error with the action and the path it concerned.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}

impl Error {
    /// `unknown {what} `{name}` (known: a, b, c)`: a name that no registry entry has, with
    /// the names that exist.
    pub fn unknown<S: AsRef<str>>(
        what: &str,
        name: &str,
        known: impl IntoIterator<Item = S>,
    ) -> Self {
        let known: Vec<String> = known.into_iter().map(|k| k.as_ref().to_string()).collect();
        Error::InvalidInput(format!(
            "unknown {what} `{name}` (known: {})",
            known.join(", ")
        ))
    }

    /// A [`Error::Setting`] error.
    pub fn setting(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Setting {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

/// Returns `Err(Error::InvalidInput)` with a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::Error::InvalidInput(format!($($arg)*)))
    };
}
