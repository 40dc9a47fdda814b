//! The engine of one shard: write path, read path, flush, compaction, recovery.
//!
//! Ownership: a `Db` lives on exactly one core and is shared by that core's tasks as
//! `Rc<Db<F>>`. Foreground tasks call `write` (or `admit`/`commit`/`wait_durable`),
//! `get` and `iter`; one background task (`run_background`, spawned by the owner into a
//! task queue with fewer shares) flushes memtables and runs compactions. State sits in
//! a `RefCell` that is never borrowed across an `.await`.
//!
//! Durability: every write batch is a log record (group 0, index = its timestamp). A
//! write with `sync` returns only after its record is fsynced (group commit in `log`).
//! Reads see a write only once it is durable or was written without `sync`, so a read
//! never returns data that a crash could take back after a synced writer was told it
//! failed. Flushed memtables advance the manifest's applied index of group 0, after
//! which the log may drop the records they hold. The core's Raft glue writes its own
//! log groups (`append_log`) and applies committed entries (`apply_entry`); a flush
//! records in the manifest the highest entry of each Raft group its memtable held.
//!
//! Modules, by job: `write` (admit, commit, apply, stalls), `read` (visible timestamp,
//! gets, iterators), `flush` (memtable to L0, manifest edits), `compaction` (jobs and
//! their execution) with its pure `picker`, `gc` (which versions survive), `recovery`
//! (the steps of `open`), `background` (the loops and `close`), `checkpoint` (online
//! backup: a consistent point and the copies), `stats`.

mod background;
mod checkpoint;
mod compaction;
mod flush;
mod gate;
mod gc;
mod live;
mod picker;
mod read;
mod recovery;
mod stats;
mod write;

pub use checkpoint::{BackupTarget, ShardBackup, prev_files, shard_dir_name};
pub use read::{Entry, Snapshot};
pub use stats::{DbStats, LevelStats};
pub use write::{Commit, WriteOptions, WritePermit};

use crate::cache::BlockCache;
use crate::config::{EngineConfig, NUM_LEVELS};
use crate::fs::FileSystem;
use crate::log::Log;
use crate::memtable::MemTable;
use crate::row_cache::RowCache;
use crate::sst::Block;
use crate::sync::{AsyncLock, Notify};
use crate::version::Version;
use crate::version::manifest::Manifest;
use crate::{Error, Result};
use stats::Counters;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The log group the engine writes its own batches to (`commit`); every other log
/// group belongs to the core's Raft glue (`append_log` / `apply_entry`).
pub const LOCAL_GROUP: u64 = 0;

/// Log group → highest entry index.
pub type GroupIndexes = BTreeMap<u64, u64>;

/// A record of a non-local log group as recovery found it: the Raft glue rebuilds its
/// state from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRecord {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

struct State<F: FileSystem> {
    mem: Rc<MemTable>,
    /// Full memtables waiting for flush, oldest first.
    imm: VecDeque<Rc<MemTable>>,
    version: Rc<Version<F>>,
    last_ts: u64,
    next_file_number: u64,
    /// Highest log index of group 0 that is in SSTables.
    applied: u64,
    /// Raft groups (every log group but `LOCAL_GROUP`): the highest entry index applied
    /// into the active memtable, and into each immutable one (parallel to `imm`), so a
    /// flush records in the manifest exactly the entries its table holds.
    mem_entries: GroupIndexes,
    imm_entries: VecDeque<GroupIndexes>,
    /// Raft groups: highest entry index whose effects are in SSTables (the manifest's
    /// applied index); recovery re-applies the group's committed entries above it.
    flushed_entries: GroupIndexes,
    /// Records of every log group but `LOCAL_GROUP` found by recovery, until the
    /// core's Raft glue takes them (`take_recovered_log`).
    recovered_log: BTreeMap<u64, Vec<RecoveredRecord>>,
    /// Synced writes whose fsync has not completed: (ts, lsn), in ts order.
    pending_sync: VecDeque<(u64, u64)>,
    /// Round-robin compaction cursor per level (largest user key last compacted).
    compact_pointer: Vec<Option<Vec<u8>>>,
    /// Set once background work failed; writes are refused after it.
    bg_error: Option<String>,
    closing: bool,
    payload_buf: Vec<u8>,
    ikey_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// One shard's storage engine.
pub struct Db<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    cfg: EngineConfig,
    log: Log<F>,
    cache: Rc<BlockCache<Block>>,
    /// Hot rows per table (`row_cache`); None when `row_cache_bytes` is 0.
    row_cache: Option<RowCache>,
    manifest: Manifest<F>,
    st: RefCell<State<F>>,
    snapshots: Rc<RefCell<BTreeMap<u64, usize>>>,
    graveyard: Rc<RefCell<Vec<u64>>>,
    counters: RefCell<Counters>,
    /// Wakes the background loops (new immutable memtable, new L0 file, closing).
    bg_wake: Notify,
    /// Wakes stalled writers and `flush` callers (a flush or compaction finished).
    changed: Notify,
    flush_lock: AsyncLock,
    compaction_lock: AsyncLock,
    manifest_lock: AsyncLock,
    background_running: Cell<bool>,
    /// Scheduler shares of the flush and compaction task queue, read by glommio
    /// (`runtime::spawn_background`) and changed live (`live.rs`).
    background_shares: Rc<crate::runtime::LiveShares>,
    /// Fair admission of write bytes (`gate`): the in-flight bound and the delayed
    /// write rate.
    gate: Rc<gate::WriteGate>,
}

/// Path of SSTable `number` in `dir`.
pub fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}.sst"))
}

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

impl<F: FileSystem> State<F> {
    /// Makes the active memtable immutable (it waits for flush) with the Raft entry
    /// indexes it holds.
    fn rotate(&mut self) {
        let full = std::mem::replace(&mut self.mem, Rc::new(MemTable::new()));
        self.imm.push_back(full);
        self.imm_entries
            .push_back(std::mem::take(&mut self.mem_entries));
        assert_eq!(self.imm.len(), self.imm_entries.len());
    }
}

impl<F: FileSystem> Db<F> {
    /// Opens (or creates) the engine in `dir`, recovering from the manifest and the log.
    pub async fn open(fs: F, dir: &Path, cfg: EngineConfig) -> Result<Rc<Self>> {
        cfg.validate()?;
        crate::fs::create_dir_all_durable(&fs, &log_dir(dir)).await?;
        let cache = Rc::new(BlockCache::new(cfg.block_cache_bytes));
        let graveyard = Rc::new(RefCell::new(Vec::new()));
        let recovered = recovery::read_manifest(&fs, dir).await?;
        let version = recovery::open_tables(&fs, dir, &recovered, &cache, &graveyard).await?;
        let replayed = recovery::replay_log(&fs, dir, &cfg, &recovered).await?;
        // Start a fresh manifest holding the recovered state, then drop orphans.
        let next_file_number = recovered.next_file_number.max(1);
        let snapshot = recovered.snapshot_edit(next_file_number, replayed.last_ts);
        let manifest = Manifest::create(fs.clone(), dir, recovered.manifest_seq, &snapshot).await?;
        let imm_entries = replayed.imm.iter().map(|_| GroupIndexes::new()).collect();
        let st = State {
            mem: replayed.mem,
            imm: replayed.imm,
            version: Rc::new(version),
            last_ts: replayed.last_ts,
            next_file_number,
            applied: replayed.applied,
            mem_entries: GroupIndexes::new(),
            imm_entries,
            flushed_entries: recovered.applied_groups(LOCAL_GROUP),
            recovered_log: replayed.other_groups,
            pending_sync: VecDeque::new(),
            compact_pointer: vec![None; NUM_LEVELS],
            bg_error: None,
            closing: false,
            payload_buf: Vec::new(),
            ikey_buf: Vec::new(),
            value_buf: Vec::new(),
        };
        let gate = gate::WriteGate::new(
            gate::GateLimits {
                in_flight_bytes: cfg.write_in_flight_bytes,
                rate_bytes_per_sec: cfg.delayed_write_rate_bytes_per_sec,
                burst_bytes: crate::config::DELAYED_WRITE_BURST_BYTES,
            },
            std::time::Instant::now(),
        );
        let row_cache = (cfg.row_cache_bytes > 0).then(|| RowCache::new(cfg.row_cache_bytes));
        let db = Rc::new(Db {
            fs,
            dir: dir.to_path_buf(),
            cfg,
            log: replayed.log,
            cache,
            row_cache,
            manifest,
            st: RefCell::new(st),
            snapshots: Rc::new(RefCell::new(BTreeMap::new())),
            graveyard,
            counters: RefCell::new(Counters::default()),
            bg_wake: Notify::new(),
            changed: Notify::new(),
            flush_lock: AsyncLock::default(),
            compaction_lock: AsyncLock::default(),
            manifest_lock: AsyncLock::default(),
            background_running: Cell::new(false),
            background_shares: Rc::new(crate::runtime::LiveShares::new(
                crate::config::BACKGROUND_SHARES,
            )),
            gate: Rc::new(gate),
        });
        db.remove_orphans().await?;
        Ok(db)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while a sealed log segment waits to be copied into the archive.
    pub fn archive_pending(&self) -> bool {
        self.log.wants_archive()
    }

    /// Archives every sealed log segment into `dir` from now on (point-in-time
    /// restore); the background task copies them. `dir` is created.
    pub async fn set_log_archive(&self, dir: &Path) -> Result<()> {
        crate::fs::create_dir_all_durable(&self.fs, dir).await?;
        self.log.set_archive(dir);
        self.bg_wake.notify_all();
        Ok(())
    }

    /// Takes what recovery found of log group `group` (a Raft group's entries or
    /// state records), in log order; empty for a new group or a second call.
    pub fn take_recovered_log(&self, group: u64) -> Vec<RecoveredRecord> {
        self.st
            .borrow_mut()
            .recovered_log
            .remove(&group)
            .unwrap_or_default()
    }

    /// Highest index of Raft log group `group` whose entry's effects are in SSTables
    /// (the manifest's applied index of the group); 0 if none.
    pub fn flushed_index(&self, group: u64) -> u64 {
        self.st
            .borrow()
            .flushed_entries
            .get(&group)
            .copied()
            .unwrap_or(0)
    }

    /// Records the first background error (writes are refused from then on) and wakes
    /// stalled writers so they see it.
    fn set_error(&self, e: &Error) {
        tracing::error!(error = %e, "storage engine background work failed");
        let mut st = self.st.borrow_mut();
        if st.bg_error.is_none() {
            st.bg_error = Some(e.to_string());
        }
        drop(st);
        self.changed.notify_all();
    }
}
