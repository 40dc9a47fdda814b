//! Typed errors of the storage engine.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine. Corruption always names the file and
/// the byte offset, so an operator can find the damaged spot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error (or an injected one in the simulator).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checksum or structural check failed where the data must be intact.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The simulated machine has crashed; every operation fails until restart.
    #[error("simulated crash: the file system is down")]
    Crashed,
    /// The caller passed something the engine cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The engine is overloaded (for example writes stopped behind compaction);
    /// retrying later is safe.
    #[error("busy, retry later: {0}")]
    Busy(String),
    /// An earlier fatal error (failed log write or sync) poisoned the engine: nothing
    /// more is acknowledged until it is reopened and recovered.
    #[error("engine is read-only after a fatal error: {0}")]
    Poisoned(String),
}

impl Error {
    /// Wraps an `std::io::Error` with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The error as an `std::io::Error`, for callers outside the engine that report
    /// file errors as such (the I/O error itself when there is one).
    pub fn into_io(self) -> std::io::Error {
        match self {
            Error::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        }
    }

    /// Builds a corruption error naming file and offset.
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for errors a client may retry unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Busy(_))
    }
}
