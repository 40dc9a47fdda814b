//! Flush: an immutable memtable becomes an L0 table; version edits reach the manifest.
//!
//! Ownership: the background task of the owning core, or a foreground task that
//! stalls with no background task running (then it does the work inline). One flush
//! at a time (`flush_lock`), one manifest write at a time (`manifest_lock`).

use super::gc::GcFilter;
use super::{Db, LOCAL_GROUP, table_path};
use crate::Result;
use crate::fs::FileSystem;
use crate::keys;
use crate::sst::{Table, TableBuilder, TableOptions};
use crate::version::{FileMeta, SstFile, VersionEdit};
use std::collections::HashMap;
use std::rc::Rc;

impl<F: FileSystem> Db<F> {
    /// Flushes the active memtable (and any waiting ones) to L0 and waits for it.
    pub async fn flush(&self) -> Result<()> {
        {
            let mut st = self.st.borrow_mut();
            if !st.mem.is_empty() {
                st.rotate();
            }
        }
        while self.flush_one().await? {}
        Ok(())
    }

    /// Versions with a timestamp at or below this are visible to every reader; older
    /// versions shadowed by one of them can go.
    pub(super) fn gc_threshold(&self) -> u64 {
        let visible = {
            let mut st = self.st.borrow_mut();
            self.visible_ts(&mut st)
        };
        match self.snapshots.borrow().keys().next() {
            Some(&s) => s.min(visible),
            None => visible,
        }
    }

    pub(super) fn new_file_number(&self) -> u64 {
        let mut st = self.st.borrow_mut();
        let n = st.next_file_number;
        st.next_file_number += 1;
        n
    }

    /// Flushes the oldest immutable memtable; false if there was none.
    pub(super) async fn flush_one(&self) -> Result<bool> {
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
        let entries = {
            let st = self.st.borrow();
            edit.applied.push((LOCAL_GROUP, st.applied.max(max_ts)));
            let entries = st.imm_entries.front().cloned().unwrap_or_default();
            edit.applied.extend(entries.iter().map(|(&g, &i)| (g, i)));
            entries
        };
        self.log_and_apply(edit, opened).await?;
        {
            let mut st = self.st.borrow_mut();
            st.imm.pop_front();
            st.imm_entries.pop_front();
            st.applied = st.applied.max(max_ts);
            for (g, i) in entries {
                let flushed = st.flushed_entries.entry(g).or_insert(0);
                *flushed = (*flushed).max(i);
            }
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
    pub(super) async fn log_and_apply(
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

    /// Deletes table files no version refers to any more.
    pub(super) async fn delete_obsolete(&self) -> Result<()> {
        let dead: Vec<u64> = std::mem::take(&mut *self.graveyard.borrow_mut());
        if dead.is_empty() {
            return Ok(());
        }
        for n in &dead {
            self.cache.erase_file(*n);
            if let Some(rc) = &self.row_cache {
                rc.erase_file(*n);
            }
            self.fs.remove(&table_path(&self.dir, *n)).await?;
        }
        self.fs.sync_dir(&self.dir).await
    }
}

/// Writes a sorted stream into tables of about `target` bytes, cutting only between
/// user keys so that one key's versions never span two files of a level.
pub(super) struct TableOutput<'a, F: FileSystem> {
    db: &'a Db<F>,
    level: usize,
    target: u64,
    cur: Option<(u64, TableBuilder<F::Writer>)>,
    last_uk: Vec<u8>,
    done: Vec<Rc<SstFile<F>>>,
}

impl<'a, F: FileSystem> TableOutput<'a, F> {
    pub(super) fn new(db: &'a Db<F>, level: usize, target: u64) -> Self {
        TableOutput {
            db,
            level,
            target,
            cur: None,
            last_uk: Vec::new(),
            done: Vec::new(),
        }
    }

    pub(super) async fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
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

    pub(super) async fn finish(mut self) -> Result<Vec<Rc<SstFile<F>>>> {
        self.close_current().await?;
        Ok(self.done)
    }
}
