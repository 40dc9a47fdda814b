//! Compaction: turning a pick into a job (with the overlapping files one level down)
//! and running it, or moving a file down without a rewrite.
//!
//! Ownership: the background task of the owning core, or a foreground task that
//! stalls with no background task running. One compaction at a time
//! (`compaction_lock`).

use super::Db;
use super::flush::TableOutput;
use super::gc::GcFilter;
use super::picker::{self, FileSummary};
use crate::Result;
use crate::config::NUM_LEVELS;
use crate::fs::FileSystem;
use crate::iter::{LevelIter, MergingIter, Source};
use crate::keys;
use crate::sst::TableIter;
use crate::version::{SstFile, Version, VersionEdit};
use std::collections::HashMap;
use std::rc::Rc;

/// Entries a compaction merges between two chances for foreground work to run.
const COMPACTION_YIELD_EVERY_ENTRIES: u32 = 256;

impl<F: FileSystem> Db<F> {
    /// The next compaction by `picker::pick` over the current version, as a job.
    fn pick_compaction(&self) -> Option<CompactionJob<F>> {
        let st = self.st.borrow();
        let v = &st.version;
        let summary: Vec<Vec<FileSummary<'_>>> = v
            .levels
            .iter()
            .map(|files| {
                files
                    .iter()
                    .map(|f| FileSummary {
                        bytes: f.meta.size,
                        largest: keys::user_key(&f.meta.largest),
                    })
                    .collect()
            })
            .collect();
        let pick = picker::pick(&summary, &self.cfg, &st.compact_pointer)?;
        let inputs = pick
            .inputs
            .iter()
            .map(|&i| v.levels[pick.level][i].clone())
            .collect();
        Some(CompactionJob::new(v, pick.level, inputs))
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
        if job.is_trivial_move() {
            return self.move_down(&job.inputs[0], job.level).await;
        }
        let out_level = job.level + 1;
        let mut edit = VersionEdit::default();
        let mut read_bytes = 0;
        for f in &job.inputs {
            read_bytes += f.meta.size;
            edit.deleted.push((job.level as u32, f.meta.number));
        }
        for f in &job.next_level {
            read_bytes += f.meta.size;
            edit.deleted.push((out_level as u32, f.meta.number));
        }
        let files = self.merge_into_tables(&job).await?;
        let mut opened = HashMap::new();
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

    /// Moves one file of `level` to the level below (nothing there overlaps it).
    async fn move_down(&self, f: &Rc<SstFile<F>>, level: usize) -> Result<()> {
        let mut edit = VersionEdit::default();
        edit.deleted.push((level as u32, f.meta.number));
        edit.added.push((level as u32 + 1, f.meta.clone()));
        let opened = HashMap::from([(f.meta.number, f.clone())]);
        self.st.borrow_mut().compact_pointer[level] =
            Some(keys::user_key(&f.meta.largest).to_vec());
        self.log_and_apply(edit, opened).await?;
        self.counters.borrow_mut().trivial_moves += 1;
        self.changed.notify_all();
        Ok(())
    }

    /// Merges the job's inputs through the GC filter into new tables of the level below.
    async fn merge_into_tables(&self, job: &CompactionJob<F>) -> Result<Vec<Rc<SstFile<F>>>> {
        let out_level = job.level + 1;
        let mut sources: Vec<Source<F>> = Vec::new();
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
            n = n.wrapping_add(1);
            if n.is_multiple_of(COMPACTION_YIELD_EVERY_ENTRIES) {
                // Compaction runs in a low-share queue: let foreground work in.
                glommio::yield_if_needed().await;
            }
        }
        out.finish().await
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
