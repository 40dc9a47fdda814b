//! The engine of one shard: write path, read path, flush, compaction, recovery.
//!
//! Ownership: a `Db` lives on exactly one core and is shared by that core's tasks as
//! `Rc<Db<F>>`. Foreground tasks call `write`/`get`/`iter`; one background task
//! (`run_background`, spawned by the owner into a task queue with fewer shares) flushes
//! memtables and runs compactions. State sits in a `RefCell` that is never borrowed
//! across an `.await`.
//!
//! Durability: every write batch is a log record (group 0, index = its timestamp). A
//! write with `sync` returns only after its record is fsynced (group commit in `log`).
//! Reads see a write only once it is durable or was written without `sync`, so a read
//! never returns data that a crash could take back after a synced writer was told it
//! failed. Flushed memtables advance the manifest's applied index of group 0, after
//! which the log may drop the records they hold.

use crate::batch::{self, WriteBatch};
use crate::cache::BlockCache;
use crate::config::{EngineConfig, MAX_KEY_BYTES, MAX_VALUE_BYTES, NUM_LEVELS};
use crate::fs::FileSystem;
use crate::iter::{DbIter, LevelIter, MergingIter, ReadOptions, Source};
use crate::keys;
use crate::log::{Log, Lsn};
use crate::memtable::MemTable;
use crate::sst::{Block, Table, TableBuilder, TableIter, TableOptions};
use crate::sync::{AsyncLock, Notify};
use crate::version::manifest::{self, Manifest};
use crate::version::{FileMeta, SstFile, Version, VersionEdit};
use crate::{Error, Result};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The log group the engine writes its own batches to (Raft groups come later).
pub const LOCAL_GROUP: u64 = 0;

/// Options of one write.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Wait until the write is fsynced (group commit) before returning.
    pub sync: bool,
    /// Time to live in milliseconds (puts only).
    pub ttl_ms: Option<u64>,
}

/// The ticket of one `Db::commit`: its timestamp, its log position, and whether its
/// writer asked for durability. `Db::wait_durable` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a synced commit is invisible until `wait_durable` covers it"]
pub struct Commit {
    ts: u64,
    lsn: Lsn,
    sync: bool,
}

impl Commit {
    /// The timestamp the batch was applied at (its log index in `LOCAL_GROUP`).
    pub fn ts(&self) -> u64 {
        self.ts
    }

    /// The log position of its record.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// True if the writer asked to wait for the fsync.
    pub fn sync(&self) -> bool {
        self.sync
    }
}

/// Sizes of one level.
#[derive(Debug, Clone, Default)]
pub struct LevelStats {
    pub files: usize,
    pub bytes: u64,
}

/// Counters of one engine, for `admin stats` and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct DbStats {
    pub levels: Vec<LevelStats>,
    pub memtable_bytes: usize,
    pub immutable_memtables: usize,
    pub last_ts: u64,
    pub user_bytes_written: u64,
    pub log_bytes_written: u64,
    pub flush_bytes_written: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    /// (log + flush + compaction bytes written) / user bytes written.
    pub write_amplification: f64,
    pub flushes: u64,
    pub compactions: u64,
    pub trivial_moves: u64,
    pub stall_count: u64,
    pub stall_micros: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_hit_rate: f64,
    pub cache_bytes: u64,
}

#[derive(Default)]
struct Counters {
    user_bytes: u64,
    flush_bytes: u64,
    compaction_read: u64,
    compaction_written: u64,
    flushes: u64,
    compactions: u64,
    trivial_moves: u64,
    stall_count: u64,
    stall_micros: u64,
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

/// A live value with its expiry (milliseconds since the Unix epoch), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub expires_at_ms: Option<u64>,
}

/// A consistent read point. Versions it can see are kept by compaction until it drops.
pub struct Snapshot {
    ts: u64,
    registry: Rc<RefCell<BTreeMap<u64, usize>>>,
}

impl Snapshot {
    pub fn ts(&self) -> u64 {
        self.ts
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut r = self.registry.borrow_mut();
        if let Some(n) = r.get_mut(&self.ts) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.ts);
            }
        }
    }
}

/// One shard's storage engine.
pub struct Db<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    cfg: EngineConfig,
    log: Log<F>,
    cache: Rc<BlockCache<Block>>,
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
}

/// Path of SSTable `number` in `dir`.
pub fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}.sst"))
}

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

impl<F: FileSystem> Db<F> {
    /// Opens (or creates) the engine in `dir`, recovering from the manifest and the log.
    pub async fn open(fs: F, dir: &Path, cfg: EngineConfig) -> Result<Rc<Self>> {
        cfg.validate()?;
        crate::fs::create_dir_all_durable(&fs, &log_dir(dir)).await?;
        let cache = Rc::new(BlockCache::new(cfg.block_cache_bytes));
        let graveyard = Rc::new(RefCell::new(Vec::new()));

        let recovered = manifest::recover(&fs, dir).await?.unwrap_or_default();
        let mut opened = HashMap::new();
        let mut base_edit = VersionEdit::default();
        for (level, meta) in recovered.files() {
            let path = table_path(dir, meta.number);
            let reader = fs.open_read(&path).await?;
            let table = Table::open(reader, meta.number, cache.clone()).await?;
            opened.insert(
                meta.number,
                Rc::new(SstFile::new(
                    meta.clone(),
                    Rc::new(table),
                    graveyard.clone(),
                )),
            );
            base_edit.added.push((level, meta));
        }
        let version = Version::default().apply(&base_edit, &mut opened);

        // Replay the log above the applied index into fresh memtables.
        let applied = recovered.applied(LOCAL_GROUP);
        let mut last_ts = recovered.last_ts;
        let mut mems: Vec<MemTable> = vec![MemTable::new()];
        let memtable_bytes = cfg.memtable_bytes;
        let mut ikey = Vec::new();
        let mut val = Vec::new();
        let log = Log::open(fs.clone(), &log_dir(dir), &cfg, |rec| {
            if rec.group != LOCAL_GROUP || rec.index <= applied {
                return Ok(());
            }
            let ts = rec.index;
            last_ts = last_ts.max(ts);
            let mem = mems
                .last_mut()
                .ok_or_else(|| Error::InvalidArgument("no memtable".into()))?;
            insert_batch(mem, ts, rec.payload, &mut ikey, &mut val).map_err(|e| {
                Error::corruption(log_dir(dir), 0, format!("bad batch at index {ts}: {e}"))
            })?;
            if mem.approximate_bytes() >= memtable_bytes {
                mems.push(MemTable::new());
            }
            Ok(())
        })
        .await?;

        log.truncate_group(LOCAL_GROUP, applied);
        let mut mems: VecDeque<Rc<MemTable>> = mems.into_iter().map(Rc::new).collect();
        let mem = mems.pop_back().unwrap_or_else(|| Rc::new(MemTable::new()));
        let next_file_number = recovered.next_file_number.max(1);

        // Start a fresh manifest holding the recovered state, then drop orphans.
        let snapshot = recovered.snapshot_edit(next_file_number, last_ts);
        let manifest = Manifest::create(fs.clone(), dir, recovered.manifest_seq, &snapshot).await?;

        let db = Rc::new(Db {
            fs,
            dir: dir.to_path_buf(),
            cfg,
            log,
            cache,
            manifest,
            st: RefCell::new(State {
                mem,
                imm: mems,
                version: Rc::new(version),
                last_ts,
                next_file_number,
                applied,
                pending_sync: VecDeque::new(),
                compact_pointer: vec![None; NUM_LEVELS],
                bg_error: None,
                closing: false,
                payload_buf: Vec::new(),
                ikey_buf: Vec::new(),
                value_buf: Vec::new(),
            }),
            snapshots: Rc::new(RefCell::new(BTreeMap::new())),
            graveyard,
            counters: RefCell::new(Counters::default()),
            bg_wake: Notify::new(),
            changed: Notify::new(),
            flush_lock: AsyncLock::default(),
            compaction_lock: AsyncLock::default(),
            manifest_lock: AsyncLock::default(),
            background_running: Cell::new(false),
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

    fn set_error(&self, e: &Error) {
        tracing::error!(error = %e, "storage engine background work failed");
        let mut st = self.st.borrow_mut();
        if st.bg_error.is_none() {
            st.bg_error = Some(e.to_string());
        }
        drop(st);
        self.changed.notify_all();
    }

    // ----- write path -----

    pub async fn put(&self, key: &[u8], value: &[u8], opts: &WriteOptions) -> Result<()> {
        let mut b = WriteBatch::new();
        let exp = opts.ttl_ms.map(|t| keys::now_ms().saturating_add(t));
        b.put_with_expiry(key, value, exp)?;
        self.write(&b, opts).await
    }

    pub async fn delete(&self, key: &[u8], opts: &WriteOptions) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key)?;
        self.write(&b, opts).await
    }

    /// Applies `batch` atomically at one new timestamp: `admit`, `commit`,
    /// `wait_durable`. An empty batch is a no-op.
    pub async fn write(&self, batch: &WriteBatch, opts: &WriteOptions) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.admit().await?;
        let c = self.commit(batch, opts)?;
        self.wait_durable(&c).await
    }

    /// The first step of a write and the only one that may suspend before the commit:
    /// gives the scheduler its turn, then waits (or works inline) until the memtables
    /// and L0 have room. Called by foreground tasks of the owning core. After it
    /// returns, the caller may check whatever it must (a key lock) and `commit` without
    /// an `.await` in between: no other task of the core can commit in that window.
    pub async fn admit(&self) -> Result<()> {
        // A write that never waits for I/O would never let the low-share compaction
        // queue run: give the scheduler its chance (a flag check unless it is time).
        glommio::yield_if_needed().await;
        self.make_room().await
    }

    /// The second step of a write, synchronous: takes the next timestamp, appends the
    /// batch to the log as record (`LOCAL_GROUP`, ts, term 0), applies it to the
    /// memtable at that timestamp and returns the ticket for `wait_durable`. A synced
    /// commit stays invisible to readers until its record is durable, so its caller
    /// must `wait_durable` (or some later group commit must cover it). Errors: an empty
    /// batch (`InvalidArgument`), a background error or a poisoned log (`Poisoned`);
    /// nothing is committed then.
    pub fn commit(&self, batch: &WriteBatch, opts: &WriteOptions) -> Result<Commit> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument("empty write batch".into()));
        }
        self.check_bg_error()?;
        let mut payload = std::mem::take(&mut self.st.borrow_mut().payload_buf);
        payload.clear();
        batch.encode_into(&mut payload);
        let ts = self.st.borrow().last_ts + 1;
        let res = self
            .append_log(LOCAL_GROUP, ts, 0, &payload)
            .and_then(|lsn| {
                self.apply(ts, &payload).inspect_err(|e| {
                    // The log holds a record the memtable lacks: recovery would replay
                    // it, so nothing more may be acknowledged from this state.
                    self.set_error(e);
                })?;
                Ok(lsn)
            });
        self.st.borrow_mut().payload_buf = payload;
        let lsn = res?;
        if opts.sync {
            let mut st = self.st.borrow_mut();
            assert!(
                st.pending_sync
                    .back()
                    .is_none_or(|&(t, l)| t < ts && l < lsn)
            );
            st.pending_sync.push_back((ts, lsn));
        }
        Ok(Commit {
            ts,
            lsn,
            sync: opts.sync,
        })
    }

    /// Appends `payload` to the core's log as record (`group`, `index`, `term`);
    /// durable only after a group commit covers the returned LSN. Called by `commit`
    /// (group `LOCAL_GROUP`, index = timestamp) and, later, by the core's Raft glue,
    /// which appends, replicates and then `apply`s the same payload without a second
    /// log write. Synchronous: it only buffers.
    pub fn append_log(&self, group: u64, index: u64, term: u64, payload: &[u8]) -> Result<Lsn> {
        let before = self.log.last_lsn();
        let lsn = self.log.append(group, index, term, payload)?;
        assert_eq!(lsn, before + 1, "log LSNs are consecutive");
        Ok(lsn)
    }

    /// Applies an encoded batch (`payload`, as logged) to the memtable at timestamp
    /// `ts`, rotating the memtable once it is full. Called by `commit` and, later, by
    /// the core's Raft glue once an entry is committed. Assumes the record is already
    /// in the log (recovery replays it if the memtable is lost) and that `ts` is above
    /// every timestamp applied before (asserted). The whole batch is decoded and
    /// checked before anything is inserted, so a malformed payload changes nothing.
    pub fn apply(&self, ts: u64, payload: &[u8]) -> Result<()> {
        check_payload(payload)?;
        let mut guard = self.st.borrow_mut();
        let st = &mut *guard;
        assert!(ts > st.last_ts, "timestamps strictly increase");
        insert_batch(&st.mem, ts, payload, &mut st.ikey_buf, &mut st.value_buf)?;
        st.last_ts = ts;
        if st.mem.approximate_bytes() >= self.cfg.memtable_bytes {
            let full = std::mem::replace(&mut st.mem, Rc::new(MemTable::new()));
            st.imm.push_back(full);
            self.bg_wake.notify_all();
        }
        self.counters.borrow_mut().user_bytes += payload.len() as u64;
        Ok(())
    }

    /// The last step of a write: for a synced commit, returns once its log record is
    /// durable (one group commit covers every commit waiting at the time); for an
    /// unsynced one, writes the log buffer out (no fsync) once it is over its bound.
    pub async fn wait_durable(&self, c: &Commit) -> Result<()> {
        if c.sync {
            self.log.sync(c.lsn).await
        } else if self.log.needs_flush() {
            self.log.flush().await
        } else {
            Ok(())
        }
    }

    fn check_bg_error(&self) -> Result<()> {
        match &self.st.borrow().bg_error {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    /// Waits while too many memtables await flush or L0 is at the stop trigger; delays
    /// writes while L0 is above the slowdown trigger (bounded foreground latency).
    async fn make_room(&self) -> Result<()> {
        let mut slowed = false;
        let mut stalled_at: Option<Instant> = None;
        loop {
            let (imm, l0) = {
                let st = self.st.borrow();
                if let Some(e) = &st.bg_error {
                    return Err(Error::Poisoned(e.clone()));
                }
                (st.imm.len(), st.version.levels[0].len())
            };
            if imm >= self.cfg.max_immutable_memtables || l0 >= self.cfg.l0_stop_trigger {
                if !self.background_running.get() {
                    // Nobody else will make room: do the work inline.
                    if imm > 0 {
                        self.flush_one().await?;
                    } else {
                        self.compact_once().await?;
                    }
                    continue;
                }
                stalled_at.get_or_insert_with(Instant::now);
                let w = self.changed.wait();
                self.bg_wake.notify_all();
                w.await;
                continue;
            }
            if l0 >= self.cfg.l0_slowdown_trigger && !slowed && self.cfg.slowdown_delay_us > 0 {
                slowed = true;
                let t = Instant::now();
                glommio::timer::sleep(Duration::from_micros(self.cfg.slowdown_delay_us)).await;
                let mut c = self.counters.borrow_mut();
                c.stall_count += 1;
                c.stall_micros += t.elapsed().as_micros() as u64;
                continue;
            }
            break;
        }
        if let Some(t) = stalled_at {
            let mut c = self.counters.borrow_mut();
            c.stall_count += 1;
            c.stall_micros += t.elapsed().as_micros() as u64;
        }
        Ok(())
    }

    /// Makes every write so far durable (one group commit).
    pub async fn sync_log(&self) -> Result<()> {
        let lsn = self.log.last_lsn();
        self.log.sync(lsn).await
    }

    // ----- read path -----

    /// The newest timestamp whose writes are all visible: durable, or written unsynced.
    fn visible_ts(&self, st: &mut State<F>) -> u64 {
        let durable = self.log.durable_lsn();
        while let Some(&(ts, lsn)) = st.pending_sync.front() {
            if lsn <= durable {
                st.pending_sync.pop_front();
            } else {
                return ts - 1;
            }
        }
        st.last_ts
    }

    /// Takes a snapshot at the current visible state.
    pub fn snapshot(&self) -> Snapshot {
        let ts = {
            let mut st = self.st.borrow_mut();
            self.visible_ts(&mut st)
        };
        *self.snapshots.borrow_mut().entry(ts).or_insert(0) += 1;
        Snapshot {
            ts,
            registry: self.snapshots.clone(),
        }
    }

    /// Reads the latest visible value of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_at(key, None).await
    }

    /// The timestamp of the newest write, durable or not. A read-modify-write reads at
    /// this timestamp: its own write is logged after every write it can see, so it is
    /// acknowledged only once they are durable too (a failed fsync poisons the log).
    pub fn written_ts(&self) -> u64 {
        self.st.borrow().last_ts
    }

    /// Reads `key` as of `read_ts` (or the latest visible state) with its expiry in
    /// milliseconds since the Unix epoch, if it has one.
    pub async fn get_entry(&self, key: &[u8], read_ts: Option<u64>) -> Result<Option<Entry>> {
        self.get_mapped(key, read_ts, |raw, now| {
            keys::decode_value(raw)
                .filter(|v| !v.is_dead(now))
                .map(|v| Entry {
                    value: v.value.to_vec(),
                    expires_at_ms: v.expires_at_ms,
                })
        })
        .await
    }

    /// Reads `key` as of `read_ts` (a snapshot's timestamp), or the latest if None.
    pub async fn get_at(&self, key: &[u8], read_ts: Option<u64>) -> Result<Option<Vec<u8>>> {
        self.get_mapped(key, read_ts, live_value).await
    }

    /// Finds the newest version of `key` visible at `read_ts` and maps its stored form
    /// (kind, expiry, value) with `map` while it is borrowed from the memtable or block.
    async fn get_mapped<T>(
        &self,
        key: &[u8],
        read_ts: Option<u64>,
        map: impl Fn(&[u8], u64) -> Option<T>,
    ) -> Result<Option<T>> {
        // Reads served from memory never wait: let the scheduler run background work.
        glommio::yield_if_needed().await;
        let now = keys::now_ms();
        let (version, ts) = {
            let mut st = self.st.borrow_mut();
            let ts = match read_ts {
                Some(t) => t,
                None => self.visible_ts(&mut st),
            };
            if let Some((_, v)) = st.mem.get(key, ts) {
                return Ok(map(v, now));
            }
            for m in st.imm.iter().rev() {
                if let Some((_, v)) = m.get(key, ts) {
                    return Ok(map(v, now));
                }
            }
            (st.version.clone(), ts)
        };
        let seek = keys::internal_key(key, ts);
        for f in &version.levels[0] {
            if !f.overlaps(Some(key), Some(key)) {
                continue;
            }
            if let Some((ik, v)) = f.table.get(&seek).await?
                && keys::user_key(&ik) == key
            {
                return Ok(map(&v, now));
            }
        }
        for level in 1..NUM_LEVELS {
            if let Some(f) = version.find_in_level(level, &seek)
                && let Some((ik, v)) = f.table.get(&seek).await?
                && keys::user_key(&ik) == key
            {
                return Ok(map(&v, now));
            }
        }
        Ok(None)
    }

    /// An iterator over live keys as of `opts.read_ts` (or the latest visible state).
    pub async fn iter(&self, opts: ReadOptions) -> Result<DbIter<F>> {
        let (sources, ts, pin) = {
            let mut st = self.st.borrow_mut();
            let ts = match opts.read_ts {
                Some(t) => t,
                None => self.visible_ts(&mut st),
            };
            let lo = opts.lower_bound.as_deref();
            let hi = opts.upper_bound.as_deref();
            let mut sources: Vec<Source<F>> = Vec::new();
            sources.push(Source::Mem(st.mem.iter()));
            for m in st.imm.iter().rev() {
                sources.push(Source::Mem(m.iter()));
            }
            let v = st.version.clone();
            for f in &v.levels[0] {
                if f.overlaps(lo, hi) {
                    sources.push(Source::Table(TableIter::new(f.table.clone())));
                }
            }
            for level in 1..NUM_LEVELS {
                let files: Vec<_> = v.levels[level]
                    .iter()
                    .filter(|f| f.overlaps(lo, hi))
                    .cloned()
                    .collect();
                if !files.is_empty() {
                    sources.push(Source::Level(LevelIter::new(files)));
                }
            }
            let pin: Box<dyn std::any::Any> = Box::new(v);
            (sources, ts, pin)
        };
        Ok(DbIter::new(MergingIter::new(sources), ts, opts, Some(pin)))
    }

    /// Collects up to `limit` live entries of `[start, end)`, in reverse if asked.
    pub async fn scan(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let opts = ReadOptions {
            read_ts: None,
            lower_bound: start.map(<[u8]>::to_vec),
            upper_bound: end.map(<[u8]>::to_vec),
        };
        let mut it = self.iter(opts).await?;
        if reverse {
            it.seek_to_last().await?;
        } else {
            it.seek_to_first().await?;
        }
        let mut out = Vec::new();
        while it.valid() && out.len() < limit {
            out.push((it.key().to_vec(), it.value().to_vec()));
            if reverse {
                it.prev().await?;
            } else {
                it.next().await?;
            }
        }
        Ok(out)
    }

    // ----- flush -----

    /// Flushes the active memtable (and any waiting ones) to L0 and waits for it.
    pub async fn flush(&self) -> Result<()> {
        {
            let mut st = self.st.borrow_mut();
            if !st.mem.is_empty() {
                let full = std::mem::replace(&mut st.mem, Rc::new(MemTable::new()));
                st.imm.push_back(full);
            }
        }
        while self.flush_one().await? {}
        Ok(())
    }

    /// Versions with a timestamp at or below this are visible to every reader; older
    /// versions shadowed by one of them can go.
    fn gc_threshold(&self) -> u64 {
        let visible = {
            let mut st = self.st.borrow_mut();
            self.visible_ts(&mut st)
        };
        match self.snapshots.borrow().keys().next() {
            Some(&s) => s.min(visible),
            None => visible,
        }
    }

    fn new_file_number(&self) -> u64 {
        let mut st = self.st.borrow_mut();
        let n = st.next_file_number;
        st.next_file_number += 1;
        n
    }

    /// Flushes the oldest immutable memtable; false if there was none.
    async fn flush_one(&self) -> Result<bool> {
        let _g = self.flush_lock.lock().await;
        let Some(imm) = self.st.borrow().imm.front().cloned() else {
            return Ok(false);
        };
        let gc_ts = self.gc_threshold();
        let mut it = imm.iter();
        it.seek_to_first();
        let mut filter = GcFilter::new(gc_ts, keys::now_ms());
        let mut out = TableOutput::new(self, 0, u64::MAX);
        while it.valid() {
            if filter.keep(it.key(), it.value(), |_| false) {
                out.add(it.key(), it.value()).await?;
            }
            it.next();
        }
        let files = out.finish().await?;
        let max_ts = imm.max_ts().unwrap_or(0);
        let mut edit = VersionEdit::default();
        let mut opened = HashMap::new();
        let mut written = 0;
        for f in files {
            written += f.meta.size;
            edit.added.push((0, f.meta.clone()));
            opened.insert(f.meta.number, f);
        }
        {
            let st = self.st.borrow();
            edit.applied.push((LOCAL_GROUP, st.applied.max(max_ts)));
        }
        self.log_and_apply(edit, opened).await?;
        {
            let mut st = self.st.borrow_mut();
            st.imm.pop_front();
            st.applied = st.applied.max(max_ts);
        }
        {
            let mut c = self.counters.borrow_mut();
            c.flushes += 1;
            c.flush_bytes += written;
        }
        self.log.truncate_group(LOCAL_GROUP, max_ts);
        self.log.gc().await?;
        self.changed.notify_all();
        self.bg_wake.notify_all();
        Ok(true)
    }

    /// Writes `edit` to the manifest, then installs the resulting version.
    async fn log_and_apply(
        &self,
        mut edit: VersionEdit,
        mut opened: HashMap<u64, Rc<SstFile<F>>>,
    ) -> Result<()> {
        let _g = self.manifest_lock.lock().await;
        {
            let st = self.st.borrow();
            edit.next_file_number = Some(st.next_file_number);
            edit.last_ts = Some(st.last_ts);
        }
        // New table files must be durable by name before the manifest points at them.
        if !edit.added.is_empty() {
            self.fs.sync_dir(&self.dir).await?;
        }
        self.manifest.append(&edit).await?;
        let mut st = self.st.borrow_mut();
        // Files that move levels keep their readers.
        for (_, meta) in &edit.added {
            if !opened.contains_key(&meta.number)
                && let Some(f) = st
                    .version
                    .levels
                    .iter()
                    .flatten()
                    .find(|f| f.meta.number == meta.number)
            {
                opened.insert(meta.number, f.clone());
            }
        }
        let v = st.version.apply(&edit, &mut opened);
        st.version = Rc::new(v);
        Ok(())
    }

    // ----- compaction -----

    fn pick_compaction(&self) -> Option<CompactionJob<F>> {
        let st = self.st.borrow();
        let v = &st.version;
        let mut best = (0usize, 0f64);
        let l0_score = v.levels[0].len() as f64 / self.cfg.l0_compaction_trigger as f64;
        if l0_score >= 1.0 {
            best = (0, l0_score);
        }
        for level in 1..NUM_LEVELS - 1 {
            let s = v.level_bytes(level) as f64 / self.cfg.level_target_bytes(level) as f64;
            if s >= 1.0 && s > best.1 {
                best = (level, s);
            }
        }
        if best.1 < 1.0 {
            return None;
        }
        let level = best.0;
        let inputs: Vec<Rc<SstFile<F>>> = if level == 0 {
            v.levels[0].clone()
        } else {
            let files = &v.levels[level];
            let after = st.compact_pointer[level].as_deref();
            let f = files
                .iter()
                .find(|f| after.is_none_or(|p| keys::user_key(&f.meta.largest) > p))
                .or_else(|| files.first())?;
            vec![f.clone()]
        };
        Some(CompactionJob::new(v, level, inputs))
    }

    /// Runs one compaction if any level is over its target; false if none was needed.
    pub async fn compact_once(&self) -> Result<bool> {
        let _g = self.compaction_lock.lock().await;
        let Some(job) = self.pick_compaction() else {
            return Ok(false);
        };
        self.run_compaction(job).await?;
        Ok(true)
    }

    /// Compacts every file overlapping `[start, end]` down to the bottom level.
    pub async fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()> {
        self.flush().await?;
        let _g = self.compaction_lock.lock().await;
        // Push everything in range down to the deepest non-empty level (at least L1);
        // the last step drops tombstones and shadowed versions.
        let bottom = {
            let st = self.st.borrow();
            (1..NUM_LEVELS)
                .rev()
                .find(|&l| !st.version.levels[l].is_empty())
                .unwrap_or(1)
        };
        for level in 0..bottom {
            let job = {
                let st = self.st.borrow();
                let inputs = st.version.overlapping(level, start, end);
                if inputs.is_empty() {
                    continue;
                }
                CompactionJob::new(&st.version, level, inputs)
            };
            self.run_compaction(job).await?;
        }
        Ok(())
    }

    /// Runs compactions until no level is over its target.
    pub async fn wait_for_compactions(&self) -> Result<()> {
        while self.flush_one().await? {}
        while self.compact_once().await? {}
        Ok(())
    }

    async fn run_compaction(&self, job: CompactionJob<F>) -> Result<()> {
        let out_level = job.level + 1;
        let mut edit = VersionEdit::default();
        let mut opened = HashMap::new();
        if job.is_trivial_move() {
            let f = &job.inputs[0];
            edit.deleted.push((job.level as u32, f.meta.number));
            edit.added.push((out_level as u32, f.meta.clone()));
            opened.insert(f.meta.number, f.clone());
            self.st.borrow_mut().compact_pointer[job.level] =
                Some(keys::user_key(&f.meta.largest).to_vec());
            self.log_and_apply(edit, opened).await?;
            self.counters.borrow_mut().trivial_moves += 1;
            self.changed.notify_all();
            return Ok(());
        }
        let mut sources: Vec<Source<F>> = Vec::new();
        let mut read_bytes = 0;
        if job.level == 0 {
            for f in &job.inputs {
                sources.push(Source::Table(TableIter::new(f.table.clone())));
            }
        } else {
            sources.push(Source::Level(LevelIter::new(job.inputs.clone())));
        }
        if !job.next_level.is_empty() {
            sources.push(Source::Level(LevelIter::new(job.next_level.clone())));
        }
        for f in job.inputs.iter().chain(job.next_level.iter()) {
            read_bytes += f.meta.size;
            edit.deleted.push((
                if job.inputs.iter().any(|x| Rc::ptr_eq(x, f)) {
                    job.level as u32
                } else {
                    out_level as u32
                },
                f.meta.number,
            ));
        }
        let mut merged = MergingIter::new(sources);
        merged.seek_to_first().await?;
        let version = self.st.borrow().version.clone();
        let mut filter = GcFilter::new(self.gc_threshold(), keys::now_ms());
        let mut out = TableOutput::new(self, out_level, self.cfg.target_file_bytes);
        let mut n = 0u32;
        while merged.valid() {
            if filter.keep(merged.key(), merged.value(), |uk| {
                version.is_bottom_for(out_level, uk)
            }) {
                out.add(merged.key(), merged.value()).await?;
            }
            merged.next().await?;
            n += 1;
            if n.is_multiple_of(256) {
                // Compaction runs in a low-share queue: let foreground work in.
                glommio::yield_if_needed().await;
            }
        }
        let files = out.finish().await?;
        let mut written = 0;
        for f in files {
            written += f.meta.size;
            edit.added.push((out_level as u32, f.meta.clone()));
            opened.insert(f.meta.number, f);
        }
        if let Some(last) = job.inputs.last() {
            self.st.borrow_mut().compact_pointer[job.level] =
                Some(keys::user_key(&last.meta.largest).to_vec());
        }
        drop(version);
        self.log_and_apply(edit, opened).await?;
        {
            let mut c = self.counters.borrow_mut();
            c.compactions += 1;
            c.compaction_read += read_bytes;
            c.compaction_written += written;
        }
        self.delete_obsolete().await?;
        self.changed.notify_all();
        Ok(())
    }

    /// Deletes table files no version refers to any more.
    async fn delete_obsolete(&self) -> Result<()> {
        let dead: Vec<u64> = std::mem::take(&mut *self.graveyard.borrow_mut());
        if dead.is_empty() {
            return Ok(());
        }
        for n in &dead {
            self.cache.erase_file(*n);
            self.fs.remove(&table_path(&self.dir, *n)).await?;
        }
        self.fs.sync_dir(&self.dir).await
    }

    /// Removes table files left by a crash mid-flush or mid-compaction.
    async fn remove_orphans(&self) -> Result<()> {
        let live: std::collections::HashSet<u64> = {
            let st = self.st.borrow();
            st.version
                .levels
                .iter()
                .flatten()
                .map(|f| f.meta.number)
                .collect()
        };
        let mut removed = false;
        for name in self.fs.list_dir(&self.dir).await? {
            if let Some(num) = name
                .strip_suffix(".sst")
                .and_then(|n| n.parse::<u64>().ok())
                && !live.contains(&num)
            {
                self.fs.remove(&self.dir.join(&name)).await?;
                removed = true;
            }
        }
        if manifest::remove_stale(&self.fs, &self.dir, self.manifest.number()).await? {
            removed = true;
        }
        if removed {
            self.fs.sync_dir(&self.dir).await?;
        }
        Ok(())
    }

    // ----- background -----

    /// The flush and compaction loops. Spawn this once into a low-priority task queue;
    /// it returns after `close`. Without it, writers do the work inline when they stall.
    pub async fn run_background(self: Rc<Self>) {
        self.background_running.set(true);
        let flusher = async {
            loop {
                let w = self.bg_wake.wait();
                if self.st.borrow().closing {
                    break;
                }
                match self.flush_one().await {
                    Ok(true) => continue,
                    Ok(false) => w.await,
                    Err(e) => {
                        self.set_error(&e);
                        break;
                    }
                }
            }
        };
        let compactor = async {
            loop {
                let w = self.bg_wake.wait();
                if self.st.borrow().closing {
                    break;
                }
                match self.compact_once().await {
                    Ok(true) => continue,
                    Ok(false) => w.await,
                    Err(e) => {
                        self.set_error(&e);
                        break;
                    }
                }
            }
        };
        futures_lite::future::zip(flusher, compactor).await;
        self.background_running.set(false);
        self.changed.notify_all();
    }

    /// Syncs the log and stops the background loops. Memtables are not flushed: the
    /// log holds them and recovery replays it.
    pub async fn close(&self) -> Result<()> {
        self.st.borrow_mut().closing = true;
        self.bg_wake.notify_all();
        let r = self.sync_log().await;
        while self.background_running.get() {
            let w = self.changed.wait();
            self.bg_wake.notify_all();
            w.await;
        }
        r
    }

    /// Prints every stored version of `key` in every source (debugging aid for tests).
    #[doc(hidden)]
    pub async fn debug_versions(&self, key: &[u8]) {
        let (mem, imm, version) = {
            let st = self.st.borrow();
            (st.mem.clone(), st.imm.clone(), st.version.clone())
        };
        let dump = |src: &str, k: &[u8], v: &[u8]| {
            if keys::user_key(k) == key {
                eprintln!("  {src}: ts {} kind {:?}", keys::timestamp(k), v.first());
            }
        };
        for (name, m) in std::iter::once(("mem".to_string(), &mem))
            .chain(imm.iter().enumerate().map(|(i, m)| (format!("imm{i}"), m)))
        {
            let mut it = m.iter();
            it.seek(&keys::internal_key(key, keys::MAX_TS));
            while it.valid() && keys::user_key(it.key()) == key {
                dump(&name, it.key(), it.value());
                it.next();
            }
        }
        for (l, files) in version.levels.iter().enumerate() {
            for f in files {
                let mut it = TableIter::new(f.table.clone());
                it.seek(&keys::internal_key(key, keys::MAX_TS)).await;
                while it.valid() && keys::user_key(it.key()) == key {
                    dump(
                        &format!("L{l} file {}", f.meta.number),
                        it.key(),
                        it.value(),
                    );
                    it.next().await;
                }
            }
        }
    }

    /// A few lines describing internal state (for diagnosing stalls).
    pub fn debug_state(&self) -> String {
        let st = self.st.borrow();
        format!(
            "{}\ndb: imm {} l0 {} pending_sync {} bg_error {:?} closing {} background {}",
            self.log.debug_state(),
            st.imm.len(),
            st.version.levels[0].len(),
            st.pending_sync.len(),
            st.bg_error,
            st.closing,
            self.background_running.get()
        )
    }

    pub fn stats(&self) -> DbStats {
        let st = self.st.borrow();
        let c = self.counters.borrow();
        let log = self.log.stats();
        let cache = self.cache.stats();
        let levels = st
            .version
            .levels
            .iter()
            .map(|f| LevelStats {
                files: f.len(),
                bytes: f.iter().map(|x| x.meta.size).sum(),
            })
            .collect();
        let written = log.bytes_written + c.flush_bytes + c.compaction_written;
        let lookups = cache.hits + cache.misses;
        DbStats {
            levels,
            memtable_bytes: st.mem.approximate_bytes(),
            immutable_memtables: st.imm.len(),
            last_ts: st.last_ts,
            user_bytes_written: c.user_bytes,
            log_bytes_written: log.bytes_written,
            flush_bytes_written: c.flush_bytes,
            compaction_bytes_read: c.compaction_read,
            compaction_bytes_written: c.compaction_written,
            write_amplification: if c.user_bytes == 0 {
                0.0
            } else {
                written as f64 / c.user_bytes as f64
            },
            flushes: c.flushes,
            compactions: c.compactions,
            trivial_moves: c.trivial_moves,
            stall_count: c.stall_count,
            stall_micros: c.stall_micros,
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_hit_rate: if lookups == 0 {
                0.0
            } else {
                cache.hits as f64 / lookups as f64
            },
            cache_bytes: cache.bytes_used as u64,
        }
    }
}

fn malformed(e: crate::codec::DecodeError) -> Error {
    Error::InvalidArgument(format!("malformed write batch: {e}"))
}

/// Decodes every operation of an encoded batch and checks it against the memtable's
/// limits, so that inserting it afterwards cannot fail halfway.
fn check_payload(payload: &[u8]) -> Result<()> {
    for op in batch::decode(payload).map_err(malformed)? {
        let op = op.map_err(malformed)?;
        if op.key.is_empty() || op.key.len() > MAX_KEY_BYTES || op.value.len() > MAX_VALUE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "batch operation with a {}-byte key and a {}-byte value",
                op.key.len(),
                op.value.len()
            )));
        }
    }
    Ok(())
}

/// Inserts every operation of an encoded batch into `mem` at timestamp `ts` (the write
/// path's `apply` and recovery's replay share it, so both store the same bytes).
fn insert_batch(
    mem: &MemTable,
    ts: u64,
    payload: &[u8],
    ikey: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<()> {
    for op in batch::decode(payload).map_err(malformed)? {
        let op = op.map_err(malformed)?;
        keys::encode_internal(ikey, op.key, ts);
        value.clear();
        keys::encode_value(value, op.kind, op.expires_at_ms, op.value);
        mem.insert(ikey, value)?;
    }
    Ok(())
}

fn live_value(stored: &[u8], now_ms: u64) -> Option<Vec<u8>> {
    match keys::decode_value(stored) {
        Some(v) if !v.is_dead(now_ms) => Some(v.value.to_vec()),
        _ => None,
    }
}

/// Decides which versions survive a flush or compaction. Versions newer than the GC
/// threshold stay; of the rest, only the newest per user key stays, and it goes too
/// if it is a tombstone or expired and no deeper level can hold the key.
struct GcFilter {
    gc_ts: u64,
    now_ms: u64,
    last_uk: Vec<u8>,
    has_last: bool,
    seen_below: bool,
}

impl GcFilter {
    fn new(gc_ts: u64, now_ms: u64) -> Self {
        GcFilter {
            gc_ts,
            now_ms,
            last_uk: Vec::new(),
            has_last: false,
            seen_below: false,
        }
    }

    fn keep(&mut self, ikey: &[u8], value: &[u8], is_bottom: impl Fn(&[u8]) -> bool) -> bool {
        let uk = keys::user_key(ikey);
        if !self.has_last || uk != self.last_uk.as_slice() {
            self.last_uk.clear();
            self.last_uk.extend_from_slice(uk);
            self.has_last = true;
            self.seen_below = false;
        }
        if keys::timestamp(ikey) > self.gc_ts {
            return true;
        }
        if self.seen_below {
            return false;
        }
        self.seen_below = true;
        let dead = keys::decode_value(value).is_none_or(|v| v.is_dead(self.now_ms));
        !(dead && is_bottom(uk))
    }
}

/// What a compaction reads: some files of `level` and the overlapping files below.
struct CompactionJob<F: FileSystem> {
    level: usize,
    inputs: Vec<Rc<SstFile<F>>>,
    next_level: Vec<Rc<SstFile<F>>>,
}

impl<F: FileSystem> CompactionJob<F> {
    fn new(v: &Version<F>, level: usize, mut inputs: Vec<Rc<SstFile<F>>>) -> Self {
        let range = |files: &[Rc<SstFile<F>>]| {
            (
                files
                    .iter()
                    .map(|f| f.user_range().0)
                    .min()
                    .map(<[u8]>::to_vec),
                files
                    .iter()
                    .map(|f| f.user_range().1)
                    .max()
                    .map(<[u8]>::to_vec),
            )
        };
        let (mut lo, mut hi) = range(&inputs);
        if level == 0 {
            // L0 files overlap: take every L0 file that overlaps the range, widening it
            // until it is stable, so no older version of a key stays above newer ones
            // that move down (and no dropped tombstone can uncover an older value).
            loop {
                let all = v.overlapping(0, lo.as_deref(), hi.as_deref());
                if all.len() == inputs.len() {
                    break;
                }
                inputs = all;
                (lo, hi) = range(&inputs);
            }
        }
        let next_level = match (&lo, &hi) {
            (Some(lo), Some(hi)) => v.overlapping(level + 1, Some(lo), Some(hi)),
            _ => Vec::new(),
        };
        CompactionJob {
            level,
            inputs,
            next_level,
        }
    }

    fn is_trivial_move(&self) -> bool {
        self.level > 0 && self.inputs.len() == 1 && self.next_level.is_empty()
    }
}

/// Writes a sorted stream into tables of about `target` bytes, cutting only between
/// user keys so that one key's versions never span two files of a level.
struct TableOutput<'a, F: FileSystem> {
    db: &'a Db<F>,
    level: usize,
    target: u64,
    cur: Option<(u64, TableBuilder<F::Writer>)>,
    last_uk: Vec<u8>,
    done: Vec<Rc<SstFile<F>>>,
}

impl<'a, F: FileSystem> TableOutput<'a, F> {
    fn new(db: &'a Db<F>, level: usize, target: u64) -> Self {
        TableOutput {
            db,
            level,
            target,
            cur: None,
            last_uk: Vec::new(),
            done: Vec::new(),
        }
    }

    async fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        let uk = keys::user_key(ikey);
        let cut = match &self.cur {
            Some((_, b)) => b.estimated_file_size() >= self.target && uk != self.last_uk.as_slice(),
            None => false,
        };
        if cut {
            self.close_current().await?;
        }
        if self.cur.is_none() {
            let number = self.db.new_file_number();
            let path = table_path(&self.db.dir, number);
            let w = self
                .db
                .fs
                .create_stream(&path, self.db.cfg.sst_write_buffer_bytes)
                .await?;
            self.cur = Some((
                number,
                TableBuilder::new(w, TableOptions::for_level(&self.db.cfg, self.level)),
            ));
        }
        if let Some((_, b)) = self.cur.as_mut() {
            b.add(ikey, value).await?;
        }
        self.last_uk.clear();
        self.last_uk.extend_from_slice(uk);
        Ok(())
    }

    async fn close_current(&mut self) -> Result<()> {
        let Some((number, b)) = self.cur.take() else {
            return Ok(());
        };
        let props = b.finish().await?;
        let path = table_path(&self.db.dir, number);
        let reader = self.db.fs.open_read(&path).await?;
        let table = Table::open(reader, number, self.db.cache.clone()).await?;
        let meta = FileMeta {
            number,
            size: props.file_size,
            smallest: props.smallest_key.clone(),
            largest: props.largest_key.clone(),
            entries: props.num_entries,
            deletions: props.num_deletions,
            min_ts: props.min_ts,
            max_ts: props.max_ts,
        };
        self.done.push(Rc::new(SstFile::new(
            meta,
            Rc::new(table),
            self.db.graveyard.clone(),
        )));
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<Rc<SstFile<F>>>> {
        self.close_current().await?;
        Ok(self.done)
    }
}
