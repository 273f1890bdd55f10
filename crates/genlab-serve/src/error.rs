//! The error type of genlab-serve.
//!
//! A bad setting of the server itself (the runs directory, the port, the token) is a
//! [`genlab_core::Error::Setting`] carried in [`ServeError::Genlab`], so that a front end can
//! name it the way it takes it (the command line prints `--port`). Errors of a request
//! become an HTTP status and a one-line message that the page shows.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An error of the genlab libraries (a bad setting, a corrupt checkpoint, ...).
    #[error(transparent)]
    Genlab(#[from] genlab_core::Error),
    /// A request named a path that is not inside the runs directory (or does not exist
    /// there). The message never repeats what lies outside.
    #[error("{0}")]
    Path(String),
    /// A request parameter is missing or out of its range: what was expected, what came.
    #[error("{param} {problem}")]
    Param { param: String, problem: String },
    /// The job queue is full: try again when a job has finished.
    #[error("the job queue is full ({queued} waiting, {running} running); try again when a job has finished")]
    QueueFull { queued: usize, running: usize },
    /// No such job, run or result.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is going on (the run is training, the result was
    /// already saved, ...).
    #[error("{0}")]
    Conflict(String),
    /// A file could not be read or written.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl ServeError {
    /// A [`ServeError::Param`] error.
    pub fn param(param: impl Into<String>, problem: impl Into<String>) -> Self {
        ServeError::Param {
            param: param.into(),
            problem: problem.into(),
        }
    }

    /// Wraps an I/O error with the action and the path it concerned.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        ServeError::Io {
            action,
            path: path.into(),
            cause,
        }
    }

    /// The HTTP status this error answers a request with.
    pub fn status(&self) -> u16 {
        use genlab_core::Error as G;
        match self {
            ServeError::Path(_) => 403,
            ServeError::NotFound(_) => 404,
            ServeError::Param { .. } => 400,
            ServeError::QueueFull { .. } => 503,
            ServeError::Conflict(_) => 409,
            ServeError::Io { .. } => 500,
            ServeError::Genlab(e) => match e {
                G::Setting { .. } | G::InvalidInput(_) | G::Config(_) => 400,
                G::RunDirInUse { .. } => 409,
                G::Checkpoint(_) | G::Data(_) => 422,
                _ => 500,
            },
        }
    }
}

impl From<genlab_report::ReportError> for ServeError {
    fn from(e: genlab_report::ReportError) -> Self {
        match e {
            genlab_report::ReportError::Io {
                action,
                path,
                source,
            } => ServeError::io(action, path, source),
            other => genlab_core::Error::InvalidInput(other.to_string()).into(),
        }
    }
}
