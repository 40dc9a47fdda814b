//! Raft: every partition is a Raft group, on one node too (a group of one voter), so
//! a single node and a cluster run the same write path.
//!
//! - `group`: one partition's group as a sans-IO state machine over raft-rs's
//!   `RawNode` (proposals, ticks, messages and log-durable completions in; messages,
//!   log records, committed entries and truncation points out). A simulator drives it
//!   directly (`shard/tests/raft_sim.rs`).
//! - `storage`: raft-rs's `Storage` over the core's log: hard state, configuration
//!   and the recent entries in memory, rebuilt from the log's records on restart.
//! - `codec`: the bytes of the glue's log records (`docs/formats.md`).
//! - `replica`: the glue between a group and its core's engine: the Raft log *is* the
//!   engine's log (records appended by the core's group commit), committed entries are
//!   applied to the engine without a second log write, and the engine's manifest
//!   records each group's applied index for recovery.

pub mod codec;
pub mod error;
pub mod group;
pub mod replica;
pub mod storage;

pub use error::RaftError;
pub use group::{GroupConfig, GroupReady, LogGroups, LogWrite, Lsn, Proposal, RaftGroup};
pub use replica::Replica;
pub use storage::GroupStorage;
