//! Errors of the Raft glue.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RaftError {
    /// raft-rs refused a step, a proposal or a campaign.
    #[error("raft: {0}")]
    Raft(String),
    /// This replica is not the group's leader (or not yet serving): retry on the
    /// leader. `leader` is the replica id it believes leads, 0 if unknown.
    #[error("partition {group}: not the leader (leader hint {leader})")]
    NotLeader { group: u64, leader: u64 },
    /// The proposal was overwritten by another leader's entry: it never applied.
    #[error("partition {0}: the proposal was dropped by a leader change")]
    Dropped(u64),
    /// A Raft record recovered from the log does not decode, or the recovered
    /// records contradict each other (a gap in a group's entries).
    #[error("raft log of partition {group}: {reason}")]
    Corrupt { group: u64, reason: String },
    /// The core's log or engine refused (a poisoned log, a failed fsync).
    #[error("partition {group}: log: {reason}")]
    Log { group: u64, reason: String },
    /// An entry kind this build does not apply yet (membership change).
    #[error("partition {group}: unsupported entry: {what}")]
    Unsupported { group: u64, what: String },
    /// Applying a committed entry failed: the replica stops (its state machine
    /// would diverge from the log).
    #[error("partition {group}: applying entry {index} failed: {reason}")]
    Apply {
        group: u64,
        index: u64,
        reason: String,
    },
}

impl From<raft::Error> for RaftError {
    fn from(e: raft::Error) -> Self {
        RaftError::Raft(e.to_string())
    }
}
