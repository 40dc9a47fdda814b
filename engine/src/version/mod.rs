//! Versions: immutable snapshots of the set of live SSTables per level.
//!
//! Owned by the shard's core. A `Version` is shared (`Rc`) by the engine and by every
//! reader that started on it, so a compaction can install a new version while old
//! readers finish on the old one. L0 files may overlap and are kept newest first; in
//! L1 and deeper, files are sorted by smallest key and never overlap (checked when a
//! version is built, in release builds too).

pub mod edit;
pub mod manifest;

use crate::config::NUM_LEVELS;
use crate::fs::FileSystem;
use crate::keys::{self, cmp_internal};
use crate::sst::Table;
pub use edit::{FileMeta, VersionEdit};
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

/// A live SSTable: its metadata and its open reader.
pub struct SstFile<F: FileSystem> {
    pub meta: FileMeta,
    pub table: Rc<Table<F::Reader>>,
    /// Set when a compaction removed the file from the current version; the file is
    /// deleted once the last version holding it is dropped.
    obsolete: Cell<bool>,
    graveyard: Rc<RefCell<Vec<u64>>>,
}

impl<F: FileSystem> SstFile<F> {
    pub fn new(
        meta: FileMeta,
        table: Rc<Table<F::Reader>>,
        graveyard: Rc<RefCell<Vec<u64>>>,
    ) -> Self {
        SstFile {
            meta,
            table,
            obsolete: Cell::new(false),
            graveyard,
        }
    }

    pub fn mark_obsolete(&self) {
        self.obsolete.set(true);
    }

    /// User-key range of the file.
    pub fn user_range(&self) -> (&[u8], &[u8]) {
        (
            keys::user_key(&self.meta.smallest),
            keys::user_key(&self.meta.largest),
        )
    }

    /// True if the file's user-key range intersects `[lo, hi]` (None = unbounded).
    pub fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        let (s, l) = self.user_range();
        !(hi.is_some_and(|h| s > h) || lo.is_some_and(|lo| l < lo))
    }
}

impl<F: FileSystem> Drop for SstFile<F> {
    fn drop(&mut self) {
        if self.obsolete.get() {
            self.graveyard.borrow_mut().push(self.meta.number);
        }
    }
}

/// The files of every level at one point in time.
pub struct Version<F: FileSystem> {
    pub levels: Vec<Vec<Rc<SstFile<F>>>>,
}

impl<F: FileSystem> Default for Version<F> {
    fn default() -> Self {
        Version {
            levels: (0..NUM_LEVELS).map(|_| Vec::new()).collect(),
        }
    }
}

impl<F: FileSystem> Version<F> {
    /// Builds the version that results from applying `edit`; `opened` holds the readers
    /// of the files the edit adds. Deleted files are marked obsolete.
    pub fn apply(&self, edit: &VersionEdit, opened: &mut HashMap<u64, Rc<SstFile<F>>>) -> Self {
        let mut levels = self.levels.clone();
        for &(level, number) in &edit.deleted {
            let files = &mut levels[level as usize];
            if let Some(pos) = files.iter().position(|f| f.meta.number == number) {
                files[pos].mark_obsolete();
                files.remove(pos);
            }
        }
        for (level, meta) in &edit.added {
            if let Some(f) = opened.remove(&meta.number) {
                // A file moved between levels keeps its reader and must not be deleted.
                f.obsolete.set(false);
                levels[*level as usize].push(f);
            }
        }
        levels[0].sort_by_key(|f| std::cmp::Reverse(f.meta.number));
        for files in levels.iter_mut().skip(1) {
            files.sort_by(|a, b| cmp_internal(&a.meta.smallest, &b.meta.smallest));
            for w in files.windows(2) {
                // Cheap and vital: overlapping files in L1+ would make reads wrong.
                assert!(
                    keys::user_key(&w[0].meta.largest) < keys::user_key(&w[1].meta.smallest),
                    "overlapping files {} and {} in one level",
                    w[0].meta.number,
                    w[1].meta.number
                );
            }
        }
        Version { levels }
    }

    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|f| f.meta.size).sum()
    }

    pub fn file_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// In a sorted level (L1+), the only file that may hold `ikey`.
    pub fn find_in_level(&self, level: usize, ikey: &[u8]) -> Option<&Rc<SstFile<F>>> {
        let files = &self.levels[level];
        let i = files.partition_point(|f| cmp_internal(&f.meta.largest, ikey) == Ordering::Less);
        let f = files.get(i)?;
        (cmp_internal(&f.meta.smallest, ikey) != Ordering::Greater
            || keys::user_key(&f.meta.smallest) == keys::user_key(ikey))
        .then_some(f)
    }

    /// Files of `level` whose user-key range intersects `[lo, hi]`.
    pub fn overlapping(
        &self,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Vec<Rc<SstFile<F>>> {
        self.levels[level]
            .iter()
            .filter(|f| f.overlaps(lo, hi))
            .cloned()
            .collect()
    }

    /// True if no level deeper than `level` has a file that may hold `user_key`: a
    /// tombstone for it written to `level` can then be dropped.
    pub fn is_bottom_for(&self, level: usize, user_key: &[u8]) -> bool {
        self.levels.iter().skip(level + 1).all(|files| {
            let i = files.partition_point(|f| keys::user_key(&f.meta.largest) < user_key);
            files
                .get(i)
                .is_none_or(|f| keys::user_key(&f.meta.smallest) > user_key)
        })
    }
}
