//! The glue between one partition's Raft group and its core's engine.
//!
//! Ownership: the core that owns the partition (`ShardCore` holds it). Every write is
//! propose → append (the core's group commit) → commit → apply → reply:
//! `replicate` proposes synchronously (so a caller's key-lock check and its place in
//! the log are one step), then `drive_until` runs the group until its entry applied.
//! Whoever waits drives: `pump` (synchronous) moves every ready's records into the
//! engine's log (`Db::append_log`), marks what the log made durable as persisted, and
//! applies committed entries (`Db::apply_entry`, no second log write); between pumps a
//! waiter awaits the log's group commit (`Db::sync_log_to`), which many waiters of
//! this core — of every group on it — share. The group's state lives in the group, not
//! in the waiting futures, so a waiter that is dropped loses nothing.
//!
//! On disk (`docs/formats.md`): entries and state records in the core's log, the
//! applied index of the group in the engine's manifest (written at flush). Restart:
//! the engine hands back the group's records, the storage is rebuilt, raft-rs starts
//! at the manifest's applied index and re-delivers the committed entries above it.

use super::error::RaftError;
use super::group::{GroupConfig, LogGroups, Lsn, Proposal, RaftGroup};
use super::storage::GroupStorage;
use crate::config::{RAFT_LOG_CACHE_BYTES, RAFT_SINGLE_NODE_ID, SyncMode};
use nextdb_engine::db::Db;
use nextdb_engine::fs::FileSystem;
use nextdb_engine::sync::Notify;
use raft::prelude::{ConfState, Entry, EntryType};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct Replica<F: FileSystem> {
    db: Rc<Db<F>>,
    group: RefCell<RaftGroup>,
    logs: LogGroups,
    sync: SyncMode,
    /// Proposals waiting for their index to apply: (index, term) → outcome.
    waiters: RefCell<BTreeMap<(u64, u64), Outcome>>,
    /// Truncations waiting for the log to be durable past their state record.
    truncations: RefCell<Vec<(Lsn, u64, u64)>>,
    /// Woken after every pump that did something.
    changed: Notify,
    /// Set when applying an entry failed: the replica answers nothing after it.
    failed: RefCell<Option<RaftError>>,
    serving: Cell<bool>,
}

/// A proposal's outcome once its index applied (None until then).
type Outcome = Option<Result<(), RaftError>>;

/// How a waiter takes part in the group commit it waits for. A log flush whose
/// leader future is dropped mid-write poisons the log, so a waiter that may be
/// dropped (a read past its deadline) leaves the flush to a task of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leads {
    Inline,
    Detached,
}

/// Removes a proposal's waiter when its future ends or is dropped.
struct WaiterGuard<'a, F: FileSystem> {
    replica: &'a Replica<F>,
    key: (u64, u64),
}

impl<F: FileSystem> Drop for WaiterGuard<'_, F> {
    fn drop(&mut self) {
        self.replica.waiters.borrow_mut().remove(&self.key);
    }
}

fn log_error(group: u64) -> impl Fn(nextdb_engine::Error) -> RaftError {
    move |e| RaftError::Log {
        group,
        reason: e.to_string(),
    }
}

impl<F: FileSystem> Replica<F> {
    /// Opens partition `partition`'s group of one voter on `db` (just opened: its
    /// recovered records of the group are taken here) and elects it; it serves once
    /// its first entry of the new term applied (the first `wait_serving` drives that).
    pub fn open_single(db: Rc<Db<F>>, partition: u64, sync: SyncMode) -> Result<Self, RaftError> {
        let logs = LogGroups::of(partition);
        let states = db.take_recovered_log(logs.state);
        let entries = db.take_recovered_log(logs.entries);
        let voters = ConfState {
            voters: vec![RAFT_SINGLE_NODE_ID],
            ..Default::default()
        };
        let flushed = db.flushed_index(logs.entries);
        let storage = GroupStorage::restore_above(
            partition,
            &states,
            &entries,
            voters,
            RAFT_LOG_CACHE_BYTES,
            flushed,
        )?;
        let state_index = states.last().map_or(0, |r| r.index);
        let start = storage.start();
        let cfg = GroupConfig {
            replica_id: RAFT_SINGLE_NODE_ID,
            applied: flushed,
            cache_bytes: RAFT_LOG_CACHE_BYTES,
        };
        let mut group = RaftGroup::new(&cfg, logs, storage, state_index)?;
        // What the recovered (durable) state record superseded can go.
        db.truncate_log_group(logs.state, state_index.saturating_sub(1));
        db.truncate_log_group(logs.entries, start.0);
        // With no other voter there is nobody to wait for.
        group.campaign()?;
        Ok(Replica {
            db,
            group: RefCell::new(group),
            logs,
            sync,
            waiters: RefCell::new(BTreeMap::new()),
            truncations: RefCell::new(Vec::new()),
            changed: Notify::new(),
            failed: RefCell::new(None),
            serving: Cell::new(false),
        })
    }

    /// Appends `data` (an encoded write batch) to the group's log and returns once it
    /// is committed and applied (durable, with `SyncMode::Fsync`). The proposal is
    /// made before the first suspension point.
    pub async fn replicate(&self, data: Vec<u8>) -> Result<(), RaftError> {
        self.check_failed()?;
        // The slow-operation log's commit time (`op_timing`), failures included.
        let _charge = CommitCharge(std::time::Instant::now());
        let p: Proposal = self.group.borrow_mut().propose(data)?;
        let key = (p.index, p.term);
        self.waiters.borrow_mut().insert(key, None);
        let _guard = WaiterGuard { replica: self, key };
        self.drive_until(
            |r| r.waiters.borrow().get(&key).is_some_and(Option::is_some),
            Leads::Inline,
        )
        .await?;
        let outcome = self.waiters.borrow_mut().remove(&key).flatten();
        if self.sync == SyncMode::None {
            // No fsync, but the record reaches the file before the answer (one write
            // shared by every writer waiting), so a process crash loses no
            // acknowledged write; a power loss may lose the last `SYNC_NONE_INTERVAL`.
            self.db
                .write_out_log()
                .await
                .map_err(log_error(self.logs.partition))?;
        }
        outcome.unwrap_or(Err(RaftError::Dropped(self.logs.partition)))
    }

    /// Returns once every entry proposed so far has applied: a read-modify-write that
    /// holds its key calls it before reading, so a write proposed before it took the
    /// key is in the state it reads.
    pub async fn barrier(&self) -> Result<(), RaftError> {
        let target = self.group.borrow().last_index();
        self.drive_until(|r| r.group.borrow().applied() >= target, Leads::Inline)
            .await
    }

    /// Returns once the replica serves (leader with its term's first entry applied).
    /// Reads call it under a deadline that may drop them: the group commits they
    /// start run in tasks of their own.
    pub async fn wait_serving(&self) -> Result<(), RaftError> {
        if self.serving.get() {
            return Ok(());
        }
        self.drive_until(|r| r.serving.get(), Leads::Detached).await
    }

    /// Whether the replica serves now (`wait_serving` would return at once).
    pub fn serving(&self) -> bool {
        self.serving.get()
    }

    fn check_failed(&self) -> Result<(), RaftError> {
        match &*self.failed.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Runs the group until `done`: pumps, then waits for the group commit the oldest
    /// unpersisted ready needs (or, with nothing to persist, for another pump).
    async fn drive_until(
        &self,
        done: impl Fn(&Self) -> bool,
        leads: Leads,
    ) -> Result<(), RaftError> {
        loop {
            let changed = self.changed.wait();
            self.pump()?;
            if done(self) {
                return Ok(());
            }
            let waiting = self.group.borrow().waiting_for();
            match (waiting, self.sync, leads) {
                (Some(lsn), SyncMode::Fsync, Leads::Inline) => self
                    .db
                    .sync_log_to(lsn)
                    .await
                    .map_err(log_error(self.logs.partition))?,
                (Some(lsn), SyncMode::Fsync, Leads::Detached) => {
                    let db = self.db.clone();
                    let sync = glommio::spawn_local(async move { db.sync_log_to(lsn).await });
                    if let Some(r) = sync.detach().await {
                        r.map_err(log_error(self.logs.partition))?;
                    }
                }
                _ => changed.await,
            }
        }
    }

    /// What the log has made durable, as raft-rs must count it: with `SyncMode::None`
    /// a record counts once appended (acknowledged before its fsync, by design).
    fn durable_mark(&self) -> Lsn {
        match self.sync {
            SyncMode::Fsync => self.db.durable_lsn(),
            SyncMode::None => Lsn::MAX,
        }
    }

    /// Synchronous: persisted readies to raft-rs, every ready's records to the log,
    /// committed entries to the engine, until the group has nothing more to do now.
    fn pump(&self) -> Result<(), RaftError> {
        self.check_failed()?;
        let mut progressed = false;
        loop {
            let rd = {
                let mut g = self.group.borrow_mut();
                let durable = g.on_durable(self.durable_mark());
                // Messages: a group of one voter has no peers (the transport to other
                // nodes comes with clusters).
                self.truncations.borrow_mut().extend(durable.truncate);
                let Some(rd) = g.take_ready()? else {
                    break;
                };
                let mut last = None;
                for r in &rd.records {
                    let lsn = self
                        .db
                        .append_log(r.group, r.index, r.term, &r.payload)
                        .map_err(log_error(self.logs.partition))?;
                    last = Some(lsn);
                }
                g.appended(rd.number, last);
                rd
            };
            progressed = true;
            if let Err(e) = self.apply(&rd.committed) {
                self.fail(e.clone());
                return Err(e);
            }
        }
        self.release_truncations();
        self.serving.set(self.group.borrow().serving());
        if progressed {
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Applies committed entries in order and settles the proposals they decide.
    fn apply(&self, committed: &[Entry]) -> Result<(), RaftError> {
        let Some(last) = committed.last() else {
            return Ok(());
        };
        let group = self.logs.partition;
        for e in committed {
            if e.entry_type != EntryType::EntryNormal {
                return Err(RaftError::Unsupported {
                    group,
                    what: format!("{:?} at index {}", e.entry_type, e.index),
                });
            }
            // Empty entries are a new leader's first entry of its term.
            if !e.data.is_empty() {
                self.db
                    .apply_entry(self.logs.entries, e.index, &e.data)
                    .map_err(|err| RaftError::Apply {
                        group,
                        index: e.index,
                        reason: err.to_string(),
                    })?;
            }
            let mut waiters = self.waiters.borrow_mut();
            for ((_, term), outcome) in waiters.range_mut((e.index, 0)..=(e.index, u64::MAX)) {
                *outcome = Some(if *term == e.term {
                    Ok(())
                } else {
                    Err(RaftError::Dropped(group))
                });
            }
        }
        let flushed = self.db.flushed_index(self.logs.entries);
        self.group.borrow_mut().applied_to(last.index, flushed);
        Ok(())
    }

    /// Hands the log the truncations whose superseding state record is durable.
    fn release_truncations(&self) {
        let durable = self.db.durable_lsn();
        self.truncations.borrow_mut().retain(|&(lsn, group, upto)| {
            if lsn > durable {
                return true;
            }
            self.db.truncate_log_group(group, upto);
            false
        });
    }

    fn fail(&self, e: RaftError) {
        tracing::error!(error = %e, "raft replica stopped");
        self.failed.borrow_mut().get_or_insert(e.clone());
        for outcome in self.waiters.borrow_mut().values_mut() {
            outcome.get_or_insert(Err(e.clone()));
        }
        self.changed.notify_all();
    }

    /// The group, for inspection (tests, stats).
    pub fn group(&self) -> std::cell::Ref<'_, RaftGroup> {
        self.group.borrow()
    }

    /// The group's indexes and role, for STATS and `/metrics`.
    pub fn stats(&self) -> crate::stats::RaftSnapshot {
        let g = self.group.borrow();
        crate::stats::RaftSnapshot {
            term: g.term(),
            commit_index: g.commit(),
            applied_index: g.applied(),
            last_index: g.last_index(),
            leader: g.is_leader(),
            serving: self.serving.get(),
            pending_proposals: self.waiters.borrow().len(),
        }
    }
}

/// Charges the time from its creation to its drop to the polled request's commit
/// time (`op_timing`): a `replicate` that returns early or is dropped counts too.
struct CommitCharge(std::time::Instant);

impl Drop for CommitCharge {
    fn drop(&mut self) {
        crate::op_timing::charge_commit(self.0.elapsed());
    }
}
