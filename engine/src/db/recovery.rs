//! The steps of `Db::open`: read the manifest, open its tables, replay the log above
//! the applied index into memtables, keep the Raft groups' records for the core's
//! Raft glue (it re-applies their committed entries above each group's applied index
//! itself), and remove files a crash left behind.
//!
//! Ownership: the task that opens the `Db`, before anything else can reach it.

use super::write::insert_batch;
use super::{Db, LOCAL_GROUP, RecoveredRecord, log_dir, table_path};
use crate::cache::BlockCache;
use crate::config::EngineConfig;
use crate::fs::FileSystem;
use crate::log::Log;
use crate::memtable::MemTable;
use crate::sst::{Block, Table};
use crate::version::manifest::{self, Recovered};
use crate::version::{SstFile, Version, VersionEdit};
use crate::{Error, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::rc::Rc;

/// What the log replay rebuilt: the open log, the memtables (the last one active) and
/// the timestamps recovered.
pub(super) struct Replayed<F: FileSystem> {
    pub(super) log: Log<F>,
    pub(super) mem: Rc<MemTable>,
    pub(super) imm: VecDeque<Rc<MemTable>>,
    pub(super) last_ts: u64,
    /// Highest index of `LOCAL_GROUP` already in tables (replay starts above it).
    pub(super) applied: u64,
    /// Every record of the other (Raft) groups, in log order, for the core's Raft glue.
    pub(super) other_groups: BTreeMap<u64, Vec<RecoveredRecord>>,
}

/// The manifest's state, or an empty one for a new database.
pub(super) async fn read_manifest<F: FileSystem>(fs: &F, dir: &Path) -> Result<Recovered> {
    Ok(manifest::recover(fs, dir).await?.unwrap_or_default())
}

/// Opens every table the manifest names and builds the version holding them.
pub(super) async fn open_tables<F: FileSystem>(
    fs: &F,
    dir: &Path,
    recovered: &Recovered,
    cache: &Rc<BlockCache<Block>>,
    graveyard: &Rc<RefCell<Vec<u64>>>,
) -> Result<Version<F>> {
    let mut opened = HashMap::new();
    let mut base_edit = VersionEdit::default();
    for (level, meta) in recovered.files() {
        let reader = fs.open_read(&table_path(dir, meta.number)).await?;
        let table = Table::open(reader, meta.number, cache.clone()).await?;
        let file = SstFile::new(meta.clone(), Rc::new(table), graveyard.clone());
        opened.insert(meta.number, Rc::new(file));
        base_edit.added.push((level, meta));
    }
    Ok(Version::default().apply(&base_edit, &mut opened))
}

/// Opens the log and replays its `LOCAL_GROUP` records above the applied index into
/// fresh memtables (a new one each time one fills up), then lets the log drop what the
/// tables already hold.
pub(super) async fn replay_log<F: FileSystem>(
    fs: &F,
    dir: &Path,
    cfg: &EngineConfig,
    recovered: &Recovered,
) -> Result<Replayed<F>> {
    let applied = recovered.applied(LOCAL_GROUP);
    let mut last_ts = recovered.last_ts;
    let mut mems: Vec<MemTable> = vec![MemTable::new()];
    let (mut ikey, mut val) = (Vec::new(), Vec::new());
    let mut other_groups: BTreeMap<u64, Vec<RecoveredRecord>> = BTreeMap::new();
    let log = Log::open(fs.clone(), &log_dir(dir), cfg, |rec| {
        if rec.group != LOCAL_GROUP {
            // Raft groups: the glue decides what is committed and re-applies it.
            other_groups
                .entry(rec.group)
                .or_default()
                .push(RecoveredRecord {
                    index: rec.index,
                    term: rec.term,
                    payload: rec.payload.to_vec(),
                });
            return Ok(());
        }
        if rec.index <= applied {
            return Ok(());
        }
        let ts = rec.index;
        last_ts = last_ts.max(ts);
        let mem = mems
            .last_mut()
            .ok_or_else(|| Error::InvalidArgument("no memtable".into()))?;
        // `Log::open` reports this at the record's segment and offset.
        insert_batch(mem, ts, rec.payload, &mut ikey, &mut val).map_err(|e| {
            Error::corruption(log_dir(dir), 0, format!("bad batch at index {ts}: {e}"))
        })?;
        if mem.approximate_bytes() >= cfg.memtable_bytes {
            mems.push(MemTable::new());
        }
        Ok(())
    })
    .await?;
    log.truncate_group(LOCAL_GROUP, applied);
    let mut imm: VecDeque<Rc<MemTable>> = mems.into_iter().map(Rc::new).collect();
    let mem = imm.pop_back().unwrap_or_else(|| Rc::new(MemTable::new()));
    Ok(Replayed {
        log,
        mem,
        imm,
        last_ts,
        applied,
        other_groups,
    })
}

impl<F: FileSystem> Db<F> {
    /// Removes table files left by a crash mid-flush or mid-compaction.
    pub(super) async fn remove_orphans(&self) -> Result<()> {
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
}
