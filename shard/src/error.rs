//! Errors of shard operations. The native protocol server maps each to one stable
//! error code (`nextdb_net::dispatch::error_code`).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ShardError {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("value is not a decimal 64-bit integer or the result overflows")]
    NotAnInteger,
    #[error("an atomic batch must stay within one partition; keys map to {0} partitions")]
    CrossPartition(usize),
    #[error("shard {0} is overloaded")]
    Busy(usize),
    #[error("the response would exceed {0} bytes; split the request")]
    ResponseTooLarge(usize),
    #[error("the request did not finish within {0} ms (a write may still apply)")]
    Timeout(u64),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
    /// `admin config` named a setting the node does not have.
    #[error("unknown setting {0}")]
    UnknownSetting(String),
}

impl From<nextdb_engine::Error> for ShardError {
    fn from(e: nextdb_engine::Error) -> Self {
        match e {
            nextdb_engine::Error::InvalidArgument(m) => ShardError::InvalidArgument(m),
            other => ShardError::Storage(other.to_string()),
        }
    }
}

impl From<crate::raft::RaftError> for ShardError {
    fn from(e: crate::raft::RaftError) -> Self {
        use crate::raft::RaftError;
        match e {
            RaftError::Log { reason, .. } => ShardError::Storage(reason),
            RaftError::Apply { .. } | RaftError::Corrupt { .. } => {
                ShardError::Storage(e.to_string())
            }
            // Leadership moves only in clusters (not built yet): the client retries.
            other => ShardError::Internal(other.to_string()),
        }
    }
}
