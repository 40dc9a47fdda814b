//! The operations a shard executes, as messages between cores (all `Send`).
//!
//! Keys here are the user's keys; the shard adds its namespace prefix before they
//! reach the engine.

use crate::error::ShardError;
use crate::stats::ShardStatsSnapshot;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Delete {
        key: Vec<u8>,
    },
}

impl BatchOp {
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Get { key } | BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        }
    }
}

/// The result of one batch operation, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResult {
    /// A GET's value (None: absent).
    Value(Option<Vec<u8>>),
    /// A PUT or DELETE applied.
    Done,
}

/// A key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlState {
    Missing,
    Persistent,
    ExpiresIn(u64),
}

#[derive(Debug, Clone)]
pub enum ShardOp {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Up to `limit` entries of `[start, end)` on this shard, together at most
    /// `max_bytes` (`SCAN_ENTRY_OVERHEAD_BYTES` counted per entry).
    Scan {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: usize,
        max_bytes: usize,
    },
    /// Applied atomically on this shard; GETs read the state before the writes and
    /// charge their values to `budget` (shared by every part of one request).
    Batch {
        ops: Vec<BatchOp>,
        budget: ResponseBudget,
    },
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        ttl_ms: Option<u64>,
    },
    Incr {
        key: Vec<u8>,
        delta: i64,
    },
    Expire {
        key: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Ttl {
        key: Vec<u8>,
    },
    Stats,
    /// Back this shard up (`nextdb admin backup`); runs outside admission control and
    /// the request deadline, like STATS: a backup takes as long as its copies.
    Backup(Box<nextdb_engine::db::BackupTarget>),
    /// Apply a live setting on this core (None: only read them), then answer with
    /// this core's settings (`settings.rs`). Outside admission control, like STATS:
    /// an operator tunes an overloaded node.
    Config(Option<crate::settings::Change>),
}

impl ShardOp {
    /// Whether the operation may write: once started it must run to completion.
    pub fn writes(&self) -> bool {
        match self {
            ShardOp::Put { .. }
            | ShardOp::Delete { .. }
            | ShardOp::Batch { .. }
            | ShardOp::Cas { .. }
            | ShardOp::Incr { .. }
            | ShardOp::Expire { .. } => true,
            ShardOp::Get { .. }
            | ShardOp::Scan { .. }
            | ShardOp::Ttl { .. }
            | ShardOp::Stats
            | ShardOp::Backup(_)
            | ShardOp::Config(_) => false,
        }
    }

    /// The key that routes a single-key operation (None: multi-key or node-wide).
    pub fn routing_key(&self) -> Option<&[u8]> {
        match self {
            ShardOp::Get { key }
            | ShardOp::Put { key, .. }
            | ShardOp::Delete { key }
            | ShardOp::Cas { key, .. }
            | ShardOp::Incr { key, .. }
            | ShardOp::Expire { key, .. }
            | ShardOp::Ttl { key } => Some(key),
            ShardOp::Scan { .. }
            | ShardOp::Batch { .. }
            | ShardOp::Stats
            | ShardOp::Backup(_)
            | ShardOp::Config(_) => None,
        }
    }
}

#[derive(Debug)]
pub enum ShardResult {
    Value(Option<Vec<u8>>),
    Done,
    /// Scan output; `next` is the first key not returned when the shard stopped at
    /// a limit (None: it reached the end of the range).
    Entries {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        next: Option<Vec<u8>>,
    },
    Batch(Vec<BatchResult>),
    Cas {
        swapped: bool,
        current: Option<Vec<u8>>,
    },
    Int(i64),
    Found(bool),
    Ttl(TtlState),
    Stats(Box<ShardStatsSnapshot>),
    Backup(Box<nextdb_engine::db::ShardBackup>),
    /// A core's settings after a CONFIG operation, in `settings::ALL` order.
    Settings(Vec<(crate::settings::Setting, String)>),
}

pub type ShardReply = Result<ShardResult, ShardError>;

/// Value bytes the answer to one request may still hold. The parts of a request that
/// run on several cores share one budget (an atomic: the cores are threads), so
/// together they never hold more than it, and the first part to overdraw it fails the
/// request instead of building an answer nobody can receive.
#[derive(Debug, Clone)]
pub struct ResponseBudget {
    left: Arc<AtomicUsize>,
    limit: usize,
}

impl ResponseBudget {
    pub fn new(bytes: usize) -> ResponseBudget {
        ResponseBudget {
            left: Arc::new(AtomicUsize::new(bytes)),
            limit: bytes,
        }
    }

    /// Takes `bytes` from the budget, or fails if fewer are left.
    pub fn charge(&self, bytes: usize) -> Result<(), ShardError> {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .map(|_| ())
            .map_err(|_| ShardError::ResponseTooLarge(self.limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_shared_by_its_clones_and_never_overdrawn() {
        let b = ResponseBudget::new(10);
        let part = b.clone();
        assert!(b.charge(6).is_ok());
        assert_eq!(part.charge(5), Err(ShardError::ResponseTooLarge(10)));
        assert!(part.charge(4).is_ok());
        assert!(b.charge(1).is_err());
        assert!(b.charge(0).is_ok());
    }
}
