//! The operations a shard executes, as messages between cores (all `Send`).
//!
//! Keys here are the user's keys; the shard adds its namespace prefix before they
//! reach the engine.

use crate::error::ShardError;
use crate::stats::ShardStatsSnapshot;
pub use nextdb_proto::message::{BatchOp, BatchResult, TtlState};

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
    /// Up to `limit` entries (and about `max_bytes`) of `[start, end)` on this shard.
    Scan {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: usize,
        max_bytes: usize,
    },
    /// Applied atomically on this shard; GETs read the state before the writes.
    Batch {
        ops: Vec<BatchOp>,
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
}

impl ShardOp {
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
            ShardOp::Scan { .. } | ShardOp::Batch { .. } | ShardOp::Stats => None,
        }
    }
}

#[derive(Debug)]
pub enum ShardResult {
    Value(Option<Vec<u8>>),
    Done,
    /// Scan output; `more` when the shard stopped at a limit, not at the range end.
    Entries {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        more: bool,
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
}

pub type ShardReply = Result<ShardResult, ShardError>;
