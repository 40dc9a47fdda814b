//! One partition's Raft group as a state machine: raft-rs's `RawNode` over
//! `GroupStorage`, with no I/O of its own.
//!
//! Ownership: the core that owns the partition (no locks; a simulator drives many of
//! them in one thread). Inputs: proposals, ticks, messages from peers, and "the log is
//! durable up to LSN" completions. Outputs (`GroupReady`): messages to send, records to
//! append to the core's log, committed entries to apply, and log records that may be
//! truncated. The driver appends a ready's records (one group commit covers every
//! group of the core), reports the LSN of the last one (`appended`), and calls
//! `on_durable` when the group commit returns; raft-rs counts an entry toward the
//! commit only after that, so a committed entry is durable here before it is applied.

use super::codec::{self, PersistedState};
use super::error::RaftError;
use super::storage::GroupStorage;
use crate::config::{
    RAFT_ELECTION_TICKS, RAFT_HEARTBEAT_TICKS, RAFT_MAX_COMMITTED_BYTES_PER_READY,
    RAFT_MAX_INFLIGHT_MSGS, RAFT_MAX_MSG_BYTES, RAFT_MAX_UNCOMMITTED_BYTES,
};
use raft::prelude::{Entry, Message};
use raft::{RawNode, StateRole};
use std::collections::VecDeque;

/// Position of a record in the core's log (the engine's LSN, or a simulator's).
pub type Lsn = u64;

/// The log groups of one partition's Raft group in the core's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogGroups {
    pub partition: u64,
    /// Its entries: record index and term are the entry's.
    pub entries: u64,
    /// Its state records: index is a counter, the last durable one wins.
    pub state: u64,
}

impl LogGroups {
    /// Log group 0 is the engine's own; partition p uses 2p+1 and 2p+2.
    pub fn of(partition: u64) -> LogGroups {
        LogGroups {
            partition,
            entries: 2 * partition + 1,
            state: 2 * partition + 2,
        }
    }
}

/// One record for the core's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWrite {
    pub group: u64,
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

/// What the driver must do for one ready, in this order: append `records`, send
/// `messages` (they need nothing persisted), apply `committed` (durable already),
/// then call `appended(number, lsn of the last record)`.
#[derive(Debug, Default)]
pub struct GroupReady {
    pub number: u64,
    pub records: Vec<LogWrite>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
}

/// What became possible once the log was durable far enough.
#[derive(Debug, Default)]
pub struct Durable {
    /// Messages that had to wait for the persistence (a follower's acks, votes).
    pub messages: Vec<Message>,
    /// (lsn, log group, index): once the log is durable up to `lsn` (the state record
    /// that supersedes them), records of the group at or below `index` are no longer
    /// needed.
    pub truncate: Vec<(Lsn, u64, u64)>,
}

/// A proposal's place in the log: it took effect iff the entry applied at `index`
/// has `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub index: u64,
    pub term: u64,
}

/// A ready handed out and not yet durable.
#[derive(Debug)]
struct InFlight {
    number: u64,
    /// Durable once the log is durable up to here (None: not appended yet).
    lsn: Option<Lsn>,
    messages: Vec<Message>,
    truncate: Vec<(u64, u64)>,
}

/// Limits and identity of one replica.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    pub replica_id: u64,
    /// The highest entry index whose effects survived the restart (the engine's
    /// flushed index for the group); 0 for a new group.
    pub applied: u64,
    pub cache_bytes: usize,
}

pub struct RaftGroup {
    node: RawNode<GroupStorage>,
    logs: LogGroups,
    /// Index of the last state record appended.
    state_index: u64,
    /// The window start recorded in the last state record.
    recorded_start: (u64, u64),
    in_flight: VecDeque<InFlight>,
    applied: u64,
    scratch: Vec<u8>,
}

fn raft_config(cfg: &GroupConfig) -> raft::Config {
    raft::Config {
        id: cfg.replica_id,
        election_tick: RAFT_ELECTION_TICKS,
        heartbeat_tick: RAFT_HEARTBEAT_TICKS,
        applied: cfg.applied,
        max_size_per_msg: RAFT_MAX_MSG_BYTES,
        max_inflight_msgs: RAFT_MAX_INFLIGHT_MSGS,
        check_quorum: true,
        pre_vote: true,
        max_uncommitted_size: RAFT_MAX_UNCOMMITTED_BYTES,
        max_committed_size_per_ready: RAFT_MAX_COMMITTED_BYTES_PER_READY,
        ..Default::default()
    }
}

impl RaftGroup {
    /// A replica of `logs.partition` over `storage` (new, or restored from the log
    /// with `state_index` the index of its last state record). Starts as a follower.
    pub fn new(
        cfg: &GroupConfig,
        logs: LogGroups,
        mut storage: GroupStorage,
        state_index: u64,
    ) -> Result<RaftGroup, RaftError> {
        // A flush can record an applied index above the commit index of the last
        // state record (a commit index reaches the log one ready after its entries
        // apply): entries that applied were committed, so the commit is at least it.
        let last = raft::Storage::last_index(&storage)?;
        if cfg.applied > last {
            return Err(RaftError::Corrupt {
                group: logs.partition,
                reason: format!("applied index {} above the last entry {last}", cfg.applied),
            });
        }
        let mut hs = storage.hard_state().clone();
        if hs.commit < cfg.applied {
            hs.commit = cfg.applied;
            storage.set_hard_state(hs);
        }
        let recorded_start = storage.start();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_config(cfg), storage, &logger)?;
        Ok(RaftGroup {
            node,
            logs,
            state_index,
            recorded_start,
            in_flight: VecDeque::new(),
            applied: cfg.applied,
            scratch: Vec::new(),
        })
    }

    pub fn logs(&self) -> LogGroups {
        self.logs
    }

    /// Appends `data` to the group's log if this replica leads it.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<Proposal, RaftError> {
        let not_leader = |g: &RaftGroup| RaftError::NotLeader {
            group: g.logs.partition,
            leader: g.node.raft.leader_id,
        };
        if self.node.raft.state != StateRole::Leader {
            return Err(not_leader(self));
        }
        match self.node.propose(Vec::new(), data) {
            Ok(()) => Ok(Proposal {
                index: self.node.raft.raft_log.last_index(),
                term: self.node.raft.term,
            }),
            Err(raft::Error::ProposalDropped) => Err(not_leader(self)),
            Err(e) => Err(e.into()),
        }
    }

    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        Ok(self.node.step(m)?)
    }

    pub fn tick(&mut self) {
        self.node.tick();
    }

    pub fn campaign(&mut self) -> Result<(), RaftError> {
        Ok(self.node.campaign()?)
    }

    /// The next batch of work, if any. Entries and state go to the storage (raft-rs
    /// reads them from there at once) and out as log records; raft-rs is told they
    /// are persisted only in `on_durable`.
    pub fn take_ready(&mut self) -> Result<Option<GroupReady>, RaftError> {
        if !self.node.has_ready() {
            return Ok(None);
        }
        let mut rd = self.node.ready();
        if !rd.snapshot().is_empty() {
            return Err(RaftError::Unsupported {
                group: self.logs.partition,
                what: "snapshot".into(),
            });
        }
        let mut out = GroupReady {
            number: rd.number(),
            messages: rd.take_messages(),
            committed: rd.take_committed_entries(),
            records: Vec::new(),
        };
        let held = rd.take_persisted_messages();
        let entries = rd.take_entries();
        for e in &entries {
            codec::encode_entry(&mut self.scratch, e);
            out.records.push(LogWrite {
                group: self.logs.entries,
                index: e.index,
                term: e.term,
                payload: self.scratch.clone(),
            });
        }
        self.node.mut_store().append(&entries)?;
        if let Some(hs) = rd.hs() {
            self.node.mut_store().set_hard_state(hs.clone());
        }
        let truncate = self.record_state(rd.hs().is_some(), &mut out.records);
        self.node.advance_append_async(rd);
        self.in_flight.push_back(InFlight {
            number: out.number,
            lsn: None,
            messages: held,
            truncate,
        });
        Ok(Some(out))
    }

    /// Adds a state record if the hard state or the window start changed; returns the
    /// records it supersedes, truncatable once it is durable.
    fn record_state(&mut self, hs_changed: bool, records: &mut Vec<LogWrite>) -> Vec<(u64, u64)> {
        let start = self.node.store().start();
        if !hs_changed && start == self.recorded_start {
            return Vec::new();
        }
        let state: PersistedState = self.node.store().persisted_state();
        codec::encode_state(&mut self.scratch, &state);
        self.state_index += 1;
        records.push(LogWrite {
            group: self.logs.state,
            index: self.state_index,
            term: state.hard_state.term,
            payload: self.scratch.clone(),
        });
        let mut truncate = vec![(self.logs.state, self.state_index - 1)];
        if start.0 > self.recorded_start.0 {
            truncate.push((self.logs.entries, start.0));
        }
        self.recorded_start = start;
        truncate
    }

    /// The driver appended ready `number`'s records; `lsn` is the last one's (None if
    /// it had none: it is durable with the ready before it).
    pub fn appended(&mut self, number: u64, lsn: Option<Lsn>) {
        let n = self.in_flight.len();
        assert!(n > 0, "appended without a ready");
        let prev = if n >= 2 {
            self.in_flight[n - 2].lsn.unwrap_or(0)
        } else {
            0
        };
        let f = &mut self.in_flight[n - 1];
        assert_eq!(f.number, number, "readies are appended in order");
        f.lsn = Some(lsn.unwrap_or(prev).max(prev));
    }

    /// The log is durable up to `durable`: every ready it covers is persisted.
    pub fn on_durable(&mut self, durable: Lsn) -> Durable {
        let mut out = Durable::default();
        let mut number = None;
        while let Some(f) = self.in_flight.front()
            && f.lsn.is_some_and(|l| l <= durable)
        {
            let Some(f) = self.in_flight.pop_front() else {
                break;
            };
            number = Some(f.number);
            out.messages.extend(f.messages);
            let lsn = f.lsn.unwrap_or(0);
            out.truncate
                .extend(f.truncate.into_iter().map(|(g, i)| (lsn, g, i)));
        }
        if let Some(n) = number {
            self.node.on_persist_ready(n);
        }
        out
    }

    /// The LSN the oldest unpersisted ready waits for.
    pub fn waiting_for(&self) -> Option<Lsn> {
        self.in_flight.front().and_then(|f| f.lsn)
    }

    /// Committed entries up to `index` were applied. `flushed`: the highest index
    /// whose effects are in SSTables; applied entries up to it may leave memory.
    pub fn applied_to(&mut self, index: u64, flushed: u64) {
        assert!(index >= self.applied, "applied index never goes back");
        self.node.advance_apply_to(index);
        self.applied = index;
        self.node.mut_store().trim(index.min(flushed));
    }

    /// Leader whose own term's first entry has applied: its state holds every
    /// committed write, so it may answer reads and take writes.
    pub fn serving(&self) -> bool {
        let r = &self.node.raft;
        r.state == StateRole::Leader && r.raft_log.term(self.applied).ok() == Some(r.term)
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn commit(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    pub fn storage(&self) -> &GroupStorage {
        self.node.store()
    }
}
