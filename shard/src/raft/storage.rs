//! raft-rs's `Storage` over the core's log: the adapter a group's `RawNode` reads.
//!
//! Ownership: one per Raft group, inside its `RawNode`, on the core that owns the
//! partition. Durability is not done here: the glue (`group.rs`) hands every entry and
//! state change to the core's log as records (`codec.rs`) and tells raft-rs they are
//! persisted once the log's group commit covers them. This type keeps what raft-rs
//! reads synchronously: the hard state, the configuration, and the group's recent
//! entries in memory — every entry not yet flushed to SSTables (recovery needs them,
//! and followers catch up from them) plus applied ones up to `cache_bytes`. An entry
//! raft-rs asks for below the window is `Compacted` (a snapshot would be needed:
//! not built yet).

use super::codec::{self, PersistedState};
use super::error::RaftError;
use nextdb_engine::db::RecoveredRecord;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use std::collections::VecDeque;

#[derive(Debug)]
pub struct GroupStorage {
    group: u64,
    hard_state: HardState,
    conf_state: ConfState,
    /// (index, term) of the entry just before `entries`: where the window starts.
    start: (u64, u64),
    entries: VecDeque<Entry>,
    entries_bytes: usize,
    /// Applied entries kept in memory beyond those not yet flushed.
    cache_bytes: usize,
}

fn entry_bytes(e: &Entry) -> usize {
    e.data.len() + e.context.len() + 32
}

impl GroupStorage {
    /// A new group with configuration `conf_state` and an empty log.
    pub fn new(group: u64, conf_state: ConfState, cache_bytes: usize) -> GroupStorage {
        GroupStorage {
            group,
            hard_state: HardState::default(),
            conf_state,
            start: (0, 0),
            entries: VecDeque::new(),
            entries_bytes: 0,
            cache_bytes,
        }
    }

    /// Rebuilds a group from what the log held after a restart: its state records
    /// (the last one wins) and its entry records in log order, where an entry at an
    /// index already held replaces it and every later one (a new leader overwrote an
    /// uncommitted suffix). A ready's entries precede its state record in the log, so
    /// a crash can keep entries whose state record it lost (never the reverse): with
    /// no state record at all the group starts from an empty hard state and
    /// `initial_conf` (its bootstrap configuration).
    pub fn restore(
        group: u64,
        states: &[RecoveredRecord],
        entries: &[RecoveredRecord],
        initial_conf: ConfState,
        cache_bytes: usize,
    ) -> Result<GroupStorage, RaftError> {
        Self::restore_above(group, states, entries, initial_conf, cache_bytes, u64::MAX)
    }

    /// [`GroupStorage::restore`] for an engine whose tables hold the group's entries
    /// only up to `flushed`. A node restored to a moment (`nextdb admin restore
    /// --to-time`) has a backup's tables and a log rolled forward past them: its last
    /// state record may start the window above `flushed` (the entries in between
    /// went into tables the backup does not have). The window then starts at
    /// `flushed`, with the entries the log still holds above it; missing ones are
    /// corruption.
    pub fn restore_above(
        group: u64,
        states: &[RecoveredRecord],
        entries: &[RecoveredRecord],
        initial_conf: ConfState,
        cache_bytes: usize,
        flushed: u64,
    ) -> Result<GroupStorage, RaftError> {
        let state = match states.last() {
            Some(last) => codec::decode_state(group, &last.payload)?,
            None => PersistedState {
                conf_state: initial_conf,
                ..PersistedState::default()
            },
        };
        let mut s = GroupStorage::new(group, state.conf_state, cache_bytes);
        s.hard_state = state.hard_state;
        s.start = state.log_start;
        if flushed < s.start.0 {
            // The newest record at that index wins (a later one replaced it).
            let term = entries
                .iter()
                .rev()
                .find(|r| r.index == flushed)
                .map(|r| r.term);
            s.start = match term {
                Some(t) => (flushed, t),
                None if flushed == 0 => (0, 0),
                None => {
                    return Err(RaftError::Corrupt {
                        group,
                        reason: format!(
                            "the tables hold entries up to {flushed} but the log starts at {} \
                             without entry {flushed}",
                            state.log_start.0
                        ),
                    });
                }
            };
        }
        let start = s.start.0;
        for r in entries.iter().filter(|r| r.index > start) {
            let e = codec::decode_entry(group, r.index, r.term, &r.payload)?;
            s.append(std::slice::from_ref(&e))?;
        }
        // Everything up to the commit index was durable before the state record that
        // names it (one log, written in order), so the log cannot end below it.
        if s.last() < s.hard_state.commit {
            return Err(RaftError::Corrupt {
                group,
                reason: format!(
                    "commit index {} above the last entry {}",
                    s.hard_state.commit,
                    s.last()
                ),
            });
        }
        Ok(s)
    }

    fn last(&self) -> u64 {
        self.start.0 + self.entries.len() as u64
    }

    /// Appends entries raft-rs handed over in a ready; an entry at an index already
    /// held replaces it and everything after it.
    pub fn append(&mut self, ents: &[Entry]) -> Result<(), RaftError> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        if first.index <= self.start.0 || first.index > self.last() + 1 {
            return Err(RaftError::Corrupt {
                group: self.group,
                reason: format!(
                    "entry {} outside the window ({}, {}]",
                    first.index,
                    self.start.0,
                    self.last() + 1
                ),
            });
        }
        let keep = (first.index - self.start.0 - 1) as usize;
        for e in self.entries.drain(keep..) {
            self.entries_bytes -= entry_bytes(&e);
        }
        for e in ents {
            assert_eq!(
                e.index,
                self.last() + 1,
                "entries of a ready are consecutive"
            );
            self.entries_bytes += entry_bytes(e);
            self.entries.push_back(e.clone());
        }
        Ok(())
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The state a state record must hold now.
    pub fn persisted_state(&self) -> PersistedState {
        PersistedState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            log_start: self.start,
        }
    }

    /// Where the window starts: (index, term) of the entry before the first kept.
    pub fn start(&self) -> (u64, u64) {
        self.start
    }

    /// Drops entries at or below `upto` (applied and flushed, so neither recovery
    /// nor this replica needs them) from the front of the window while it holds more
    /// than `cache_bytes`. Returns true if the window start moved.
    pub fn trim(&mut self, upto: u64) -> bool {
        let before = self.start;
        while self.entries_bytes > self.cache_bytes
            && let Some(e) = self.entries.front()
            && e.index <= upto
        {
            self.start = (e.index, e.term);
            self.entries_bytes -= entry_bytes(e);
            self.entries.pop_front();
        }
        self.start != before
    }

    fn unavailable(&self, idx: u64) -> raft::Error {
        if idx <= self.start.0 {
            raft::Error::Store(StorageError::Compacted)
        } else {
            raft::Error::Store(StorageError::Unavailable)
        }
    }
}

impl Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.start.0 {
            return Err(self.unavailable(low));
        }
        if high > self.last() + 1 || low > high {
            return Err(self.unavailable(high));
        }
        let from = (low - self.start.0 - 1) as usize;
        let to = (high - self.start.0 - 1) as usize;
        let mut out: Vec<Entry> = self.entries.range(from..to).cloned().collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.start.0 {
            return Ok(self.start.1);
        }
        if idx < self.start.0 || idx > self.last() {
            return Err(self.unavailable(idx));
        }
        Ok(self.entries[(idx - self.start.0 - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.start.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Snapshots are cut from the LSM in a later step; until then a follower that
        // fell behind the window waits (raft-rs retries).
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::Entry;

    fn entry_record(index: u64, term: u64) -> RecoveredRecord {
        let e = Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        };
        let mut payload = Vec::new();
        codec::encode_entry(&mut payload, &e);
        RecoveredRecord {
            index,
            term,
            payload,
        }
    }

    fn state_record(commit: u64, log_start: (u64, u64)) -> RecoveredRecord {
        let st = PersistedState {
            hard_state: HardState {
                term: 1,
                vote: 1,
                commit,
                ..Default::default()
            },
            conf_state: ConfState {
                voters: vec![1],
                ..Default::default()
            },
            log_start,
        };
        let mut payload = Vec::new();
        codec::encode_state(&mut payload, &st);
        RecoveredRecord {
            index: 1,
            term: 1,
            payload,
        }
    }

    /// A log rolled forward past the tables (point-in-time restore): the last state
    /// record starts the window at 6, the tables hold entries up to 3 only. The
    /// window must start at 3 so that entries 4..=6 are applied again.
    #[test]
    fn window_starts_at_the_flushed_index_when_the_log_moved_past_it() {
        let entries: Vec<_> = (1..=10).map(|i| entry_record(i, 1)).collect();
        let states = [state_record(10, (6, 1))];
        let conf = ConfState::default();
        let s =
            GroupStorage::restore_above(0, &states, &entries, conf.clone(), 1 << 20, 3).unwrap();
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.last_index().unwrap(), 10);
        let got = s
            .entries(4, 7, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        // Tables at or past the window start: the state record decides, as before.
        let s =
            GroupStorage::restore_above(0, &states, &entries, conf.clone(), 1 << 20, 8).unwrap();
        assert_eq!(s.first_index().unwrap(), 7);
        // The entry at the flushed index is gone from the log: corruption, not a guess.
        let holes: Vec<_> = (5..=10).map(|i| entry_record(i, 1)).collect();
        assert!(GroupStorage::restore_above(0, &states, &holes, conf, 1 << 20, 3).is_err());
    }
}
