//! Read iterators: a merging iterator over memtables and SSTables, and the user-facing
//! [`DbIter`] that resolves versions at a read timestamp, hides tombstones and expired
//! values, and honours bounds in both directions.
//!
//! Everything here belongs to one core; iterators hold `Rc`s to the memtables and the
//! version they read, so flushes and compactions never pull data from under them.

use crate::Result;
use crate::fs::FileSystem;
use crate::keys::{self, cmp_internal};
use crate::memtable::MemIter;
use crate::sst::TableIter;
use crate::sst::bloom;
use crate::version::{SstFile, Version};
use std::cmp::Ordering;
use std::ops::Range;
use std::rc::Rc;

/// The files a [`LevelIter`] walks: a list of its own (compaction inputs), or a range
/// of one level of a version the iterator keeps alive (reads: no copy of the level's
/// file list per iterator).
enum LevelFiles<F: FileSystem> {
    Owned(Vec<Rc<SstFile<F>>>),
    InVersion {
        version: Rc<Version<F>>,
        level: usize,
        range: Range<usize>,
    },
}

impl<F: FileSystem> LevelFiles<F> {
    fn as_slice(&self) -> &[Rc<SstFile<F>>] {
        match self {
            LevelFiles::Owned(v) => v,
            LevelFiles::InVersion {
                version,
                level,
                range,
            } => version.levels[*level].get(range.clone()).unwrap_or(&[]),
        }
    }
}

/// Iterates the files of one sorted level (L1+) as a single run, opening each file's
/// iterator only when the scan reaches it.
pub struct LevelIter<F: FileSystem> {
    files: LevelFiles<F>,
    idx: usize,
    cur: Option<TableIter<F::Reader>>,
}

impl<F: FileSystem> LevelIter<F> {
    /// Iterates `files`, which must be sorted and disjoint.
    pub fn new(files: Vec<Rc<SstFile<F>>>) -> Self {
        LevelIter {
            files: LevelFiles::Owned(files),
            idx: 0,
            cur: None,
        }
    }

    /// Iterates the files `range` of sorted level `level` of `version`.
    pub fn in_version(version: Rc<Version<F>>, level: usize, range: Range<usize>) -> Self {
        assert!(level > 0 && range.end <= version.levels[level].len());
        LevelIter {
            files: LevelFiles::InVersion {
                version,
                level,
                range,
            },
            idx: 0,
            cur: None,
        }
    }

    fn open(&mut self, idx: usize) -> bool {
        match self.files.as_slice().get(idx) {
            Some(f) => {
                self.idx = idx;
                self.cur = Some(TableIter::new(f.table.clone()));
                true
            }
            None => {
                self.cur = None;
                false
            }
        }
    }

    /// False only if no file of the level can hold a version of `user_key`
    /// (`hash` = its filter hash): no file's range covers it, or that file's filter
    /// excludes it.
    fn may_hold(&self, user_key: &[u8], hash: u64) -> bool {
        let files = self.files.as_slice();
        let i = files.partition_point(|f| keys::user_key(&f.meta.largest) < user_key);
        files.get(i).is_some_and(|f| {
            keys::user_key(&f.meta.smallest) <= user_key && f.table.may_contain_hash(hash)
        })
    }

    fn cur_valid(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.valid())
    }

    async fn skip_forward(&mut self) -> Result<()> {
        while !self.cur_valid() {
            if let Some(c) = &self.cur {
                c.status()?;
            }
            if !self.open(self.idx + 1) {
                return Ok(());
            }
            if let Some(c) = self.cur.as_mut() {
                c.seek_to_first().await;
                c.status()?;
            }
        }
        Ok(())
    }

    async fn skip_backward(&mut self) -> Result<()> {
        while !self.cur_valid() {
            if let Some(c) = &self.cur {
                c.status()?;
            }
            if self.idx == 0 || self.cur.is_none() {
                self.cur = None;
                return Ok(());
            }
            self.open(self.idx - 1);
            if let Some(c) = self.cur.as_mut() {
                c.seek_to_last().await;
                c.status()?;
            }
        }
        Ok(())
    }

    async fn seek(&mut self, target: &[u8]) -> Result<()> {
        let i = self
            .files
            .as_slice()
            .partition_point(|f| cmp_internal(&f.meta.largest, target) == Ordering::Less);
        if self.open(i) {
            if let Some(c) = self.cur.as_mut() {
                c.seek(target).await;
                c.status()?;
            }
            self.skip_forward().await?;
        }
        Ok(())
    }

    async fn seek_to_first(&mut self) -> Result<()> {
        if self.open(0) {
            if let Some(c) = self.cur.as_mut() {
                c.seek_to_first().await;
                c.status()?;
            }
            self.skip_forward().await?;
        }
        Ok(())
    }

    async fn seek_to_last(&mut self) -> Result<()> {
        let n = self.files.as_slice().len();
        if n > 0 && self.open(n - 1) {
            if let Some(c) = self.cur.as_mut() {
                c.seek_to_last().await;
                c.status()?;
            }
            self.skip_backward().await?;
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<()> {
        if let Some(c) = self.cur.as_mut() {
            c.next().await;
            c.status()?;
        }
        self.skip_forward().await
    }

    async fn prev(&mut self) -> Result<()> {
        if let Some(c) = self.cur.as_mut() {
            c.prev().await;
            c.status()?;
        }
        self.skip_backward().await
    }

    fn key(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[][..], |c| c.key())
    }

    fn value(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[][..], |c| c.value())
    }
}

/// One input of the merging iterator.
pub enum Source<F: FileSystem> {
    Mem(MemIter),
    Table(TableIter<F::Reader>),
    Level(LevelIter<F>),
}

impl<F: FileSystem> Source<F> {
    /// False only if the source surely holds no version of `user_key` (`hash` = its
    /// filter hash): the memtable's index, a table's key range and filter say so.
    fn may_hold(&self, user_key: &[u8], hash: u64) -> bool {
        match self {
            Source::Mem(m) => m.table().may_contain_user_key(user_key),
            Source::Table(x) => x.table().may_hold(user_key, hash),
            Source::Level(l) => l.may_hold(user_key, hash),
        }
    }

    async fn seek(&mut self, t: &[u8]) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.seek(t);
                Ok(())
            }
            Source::Table(x) => {
                x.seek(t).await;
                x.status()
            }
            Source::Level(l) => l.seek(t).await,
        }
    }

    async fn seek_to_first(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.seek_to_first();
                Ok(())
            }
            Source::Table(x) => {
                x.seek_to_first().await;
                x.status()
            }
            Source::Level(l) => l.seek_to_first().await,
        }
    }

    async fn seek_to_last(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.seek_to_last();
                Ok(())
            }
            Source::Table(x) => {
                x.seek_to_last().await;
                x.status()
            }
            Source::Level(l) => l.seek_to_last().await,
        }
    }

    async fn next(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.next();
                Ok(())
            }
            Source::Table(x) => {
                x.next().await;
                x.status()
            }
            Source::Level(l) => l.next().await,
        }
    }

    async fn prev(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.prev();
                Ok(())
            }
            Source::Table(x) => {
                x.prev().await;
                x.status()
            }
            Source::Level(l) => l.prev().await,
        }
    }

    fn valid(&self) -> bool {
        match self {
            Source::Mem(m) => m.valid(),
            Source::Table(x) => x.valid(),
            Source::Level(l) => l.cur_valid(),
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Source::Mem(m) => m.key(),
            Source::Table(x) => x.key(),
            Source::Level(l) => l.key(),
        }
    }

    fn value(&self) -> &[u8] {
        match self {
            Source::Mem(m) => m.value(),
            Source::Table(x) => x.value(),
            Source::Level(l) => l.value(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Reverse,
}

/// Merges sorted sources into one sorted stream of internal keys. The source count is
/// small (memtables + L0 files + one per level), so a linear pick beats a heap.
///
/// [`MergingIter::seek_lazily`] leaves unpositioned the sources that cannot hold the
/// target's user key (bloom-skipped files, memtables without it): every key they
/// hold at or after the target has a larger user key, so while the smallest positioned
/// key still has the target's user key it is the smallest of all, and a point-like
/// seek that finds its key never reads those sources. They are sought (`settle`) as
/// soon as the merged position moves past that user key, or on any other move.
pub struct MergingIter<F: FileSystem> {
    sources: Vec<Source<F>>,
    current: Option<usize>,
    dir: Direction,
    /// Bit `i`: source `i` still owes a seek to `lazy_target` (only sources 0..64 are
    /// ever deferred).
    lazy: u64,
    lazy_target: Vec<u8>,
}

impl<F: FileSystem> MergingIter<F> {
    pub fn new(sources: Vec<Source<F>>) -> Self {
        MergingIter {
            sources,
            current: None,
            dir: Direction::Forward,
            lazy: 0,
            lazy_target: Vec::new(),
        }
    }

    pub fn valid(&self) -> bool {
        self.current.is_some()
    }

    pub fn key(&self) -> &[u8] {
        self.current.map_or(&[][..], |i| self.sources[i].key())
    }

    pub fn value(&self) -> &[u8] {
        self.current.map_or(&[][..], |i| self.sources[i].value())
    }

    fn find_smallest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if self.lazy & bit(i) == 0
                && s.valid()
                && best
                    .is_none_or(|b| cmp_internal(s.key(), self.sources[b].key()) == Ordering::Less)
            {
                best = Some(i);
            }
        }
        self.current = best;
    }

    fn find_largest(&mut self) {
        debug_assert_eq!(self.lazy, 0, "reverse moves settle deferred seeks first");
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate().rev() {
            if s.valid()
                && best.is_none_or(|b| {
                    cmp_internal(s.key(), self.sources[b].key()) == Ordering::Greater
                })
            {
                best = Some(i);
            }
        }
        self.current = best;
    }

    /// Forward: picks the smallest positioned key, first seeking the deferred sources
    /// if that key's user key is not the deferred target's.
    async fn find_smallest_settled(&mut self) -> Result<()> {
        self.find_smallest();
        if self.lazy == 0 {
            return Ok(());
        }
        let target_uk = keys::user_key(&self.lazy_target);
        if self
            .current
            .is_some_and(|c| keys::user_key(self.sources[c].key()) == target_uk)
        {
            return Ok(());
        }
        self.settle().await?;
        self.find_smallest();
        Ok(())
    }

    /// Seeks every deferred source to the deferred target.
    async fn settle(&mut self) -> Result<()> {
        while self.lazy != 0 {
            let i = self.lazy.trailing_zeros() as usize;
            self.lazy &= !bit(i);
            self.sources[i].seek(&self.lazy_target).await?;
        }
        Ok(())
    }

    pub async fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.lazy = 0;
        for s in &mut self.sources {
            s.seek(target).await?;
        }
        self.dir = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    /// Like [`MergingIter::seek`], but defers the sources that hold no version of the
    /// target's user key (see the type's documentation).
    pub async fn seek_lazily(&mut self, target: &[u8]) -> Result<()> {
        self.lazy = 0;
        self.lazy_target.clear();
        self.lazy_target.extend_from_slice(target);
        let uk = keys::user_key(target);
        let hash = bloom::key_hash(uk);
        for (i, s) in self.sources.iter_mut().enumerate() {
            if i < 64 && !s.may_hold(uk, hash) {
                self.lazy |= bit(i);
            } else {
                s.seek(target).await?;
            }
        }
        self.dir = Direction::Forward;
        self.find_smallest_settled().await
    }

    pub async fn seek_to_first(&mut self) -> Result<()> {
        self.lazy = 0;
        for s in &mut self.sources {
            s.seek_to_first().await?;
        }
        self.dir = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    pub async fn seek_to_last(&mut self) -> Result<()> {
        self.lazy = 0;
        for s in &mut self.sources {
            s.seek_to_last().await?;
        }
        self.dir = Direction::Reverse;
        self.find_largest();
        Ok(())
    }

    pub async fn next(&mut self) -> Result<()> {
        let Some(cur) = self.current else {
            return Ok(());
        };
        if self.dir != Direction::Forward {
            debug_assert_eq!(self.lazy, 0);
            // Every other source must be moved to the first entry after the current key.
            let key = self.sources[cur].key().to_vec();
            for (i, s) in self.sources.iter_mut().enumerate() {
                if i == cur {
                    continue;
                }
                s.seek(&key).await?;
                if s.valid() && cmp_internal(s.key(), &key) == Ordering::Equal {
                    s.next().await?;
                }
            }
            self.dir = Direction::Forward;
        }
        self.sources[cur].next().await?;
        self.find_smallest_settled().await
    }

    pub async fn prev(&mut self) -> Result<()> {
        let Some(cur) = self.current else {
            return Ok(());
        };
        if self.dir != Direction::Reverse {
            // Every other source must be moved to the last entry before the current key;
            // deferred sources are among them (their seek below replaces the deferred one).
            self.lazy = 0;
            let key = self.sources[cur].key().to_vec();
            for (i, s) in self.sources.iter_mut().enumerate() {
                if i == cur {
                    continue;
                }
                s.seek(&key).await?;
                if s.valid() {
                    s.prev().await?;
                } else {
                    s.seek_to_last().await?;
                }
            }
            self.dir = Direction::Reverse;
        }
        self.sources[cur].prev().await?;
        self.find_largest();
        Ok(())
    }
}

/// The lazy mask bit of source `i` (0 for sources past the mask's 64 bits).
#[inline]
fn bit(i: usize) -> u64 {
    1u64.checked_shl(i as u32).unwrap_or(0)
}

/// Options of a user-level read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Read as of this timestamp (None: the latest visible state).
    pub read_ts: Option<u64>,
    /// Inclusive lower bound on user keys.
    pub lower_bound: Option<Vec<u8>>,
    /// Exclusive upper bound on user keys.
    pub upper_bound: Option<Vec<u8>>,
}

impl ReadOptions {
    /// Bounds that cover exactly the keys starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        ReadOptions {
            read_ts: None,
            lower_bound: Some(prefix.to_vec()),
            upper_bound: prefix_successor(prefix),
        }
    }
}

/// The smallest key greater than every key that starts with `prefix` (None if there is
/// none, i.e. the prefix is all 0xff).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

/// The user-facing iterator: one entry per live user key, newest version at or below
/// the read timestamp, bounded, forward or reverse.
pub struct DbIter<F: FileSystem> {
    inner: MergingIter<F>,
    read_ts: u64,
    now_ms: u64,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    dir: Direction,
    valid: bool,
    key: Vec<u8>,
    value: Vec<u8>,
    seek_buf: Vec<u8>,
    /// Keeps the files the iterator reads alive while iterating.
    _version: Option<Rc<Version<F>>>,
}

impl<F: FileSystem> DbIter<F> {
    pub(crate) fn new(
        inner: MergingIter<F>,
        read_ts: u64,
        opts: ReadOptions,
        version: Option<Rc<Version<F>>>,
    ) -> Self {
        DbIter {
            inner,
            read_ts,
            now_ms: keys::now_ms(),
            lower: opts.lower_bound,
            upper: opts.upper_bound,
            dir: Direction::Forward,
            valid: false,
            key: Vec::new(),
            value: Vec::new(),
            seek_buf: Vec::new(),
            _version: version,
        }
    }

    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current user key (empty when not valid).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current value (empty when not valid).
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    fn above_upper(&self, uk: &[u8]) -> bool {
        self.upper.as_deref().is_some_and(|u| uk >= u)
    }

    fn below_lower(&self, uk: &[u8]) -> bool {
        self.lower.as_deref().is_some_and(|l| uk < l)
    }

    /// Positions at the first user key >= `key` (clamped to the bounds).
    pub async fn seek(&mut self, key: &[u8]) -> Result<()> {
        let target = match &self.lower {
            Some(l) if key < l.as_slice() => l.as_slice(),
            _ => key,
        };
        keys::encode_internal(&mut self.seek_buf, target, self.read_ts);
        let t = std::mem::take(&mut self.seek_buf);
        self.inner.seek_lazily(&t).await?;
        self.seek_buf = t;
        self.dir = Direction::Forward;
        self.find_next(None).await
    }

    pub async fn seek_to_first(&mut self) -> Result<()> {
        match self.lower.clone() {
            Some(l) => self.seek(&l).await,
            None => {
                self.inner.seek_to_first().await?;
                self.dir = Direction::Forward;
                self.find_next(None).await
            }
        }
    }

    /// Positions at the last user key < the upper bound.
    pub async fn seek_to_last(&mut self) -> Result<()> {
        match self.upper.clone() {
            Some(u) => {
                // The first internal key of `u` at the newest timestamp; step before it.
                keys::encode_internal(&mut self.seek_buf, &u, keys::MAX_TS);
                let t = std::mem::take(&mut self.seek_buf);
                self.inner.seek(&t).await?;
                self.seek_buf = t;
                if self.inner.valid() {
                    self.inner.prev().await?;
                } else {
                    self.inner.seek_to_last().await?;
                }
            }
            None => self.inner.seek_to_last().await?,
        }
        self.dir = Direction::Reverse;
        self.find_prev().await
    }

    pub async fn next(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        glommio::yield_if_needed().await;
        if self.dir == Direction::Reverse {
            // The inner iterator sits before the current key's versions: step onto them.
            if self.inner.valid() {
                self.inner.next().await?;
            } else {
                self.inner.seek_to_first().await?;
            }
            self.dir = Direction::Forward;
        }
        let skip = std::mem::take(&mut self.key);
        self.find_next(Some(skip)).await
    }

    pub async fn prev(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        if self.dir == Direction::Forward {
            // Step the inner iterator back past every version of the current key.
            loop {
                self.inner.prev().await?;
                if !self.inner.valid() || keys::user_key(self.inner.key()) < self.key.as_slice() {
                    break;
                }
            }
            self.dir = Direction::Reverse;
        }
        self.find_prev().await
    }

    /// Forward: settle on the newest visible live version of the next user key,
    /// skipping versions of `skip` (a key already returned or found deleted).
    async fn find_next(&mut self, mut skip: Option<Vec<u8>>) -> Result<()> {
        self.valid = false;
        while self.inner.valid() {
            let ikey = self.inner.key();
            let uk = keys::user_key(ikey);
            if self.above_upper(uk) {
                return Ok(());
            }
            let visible = keys::timestamp(ikey) <= self.read_ts;
            let skipped = skip.as_deref() == Some(uk);
            if visible && !skipped {
                match keys::decode_value(self.inner.value()) {
                    Some(v) if !v.is_dead(self.now_ms) => {
                        self.key.clear();
                        self.key.extend_from_slice(uk);
                        self.value.clear();
                        self.value.extend_from_slice(v.value);
                        self.valid = true;
                        return Ok(());
                    }
                    _ => {
                        let mut s = skip.take().unwrap_or_default();
                        s.clear();
                        s.extend_from_slice(uk);
                        skip = Some(s);
                    }
                }
            }
            self.inner.next().await?;
        }
        Ok(())
    }

    /// Reverse: versions of one user key arrive oldest first; keep the newest visible
    /// one and stop once the scan reaches a smaller user key with a live candidate.
    async fn find_prev(&mut self) -> Result<()> {
        let mut live = false;
        self.key.clear();
        while self.inner.valid() {
            let ikey = self.inner.key();
            let uk = keys::user_key(ikey);
            if keys::timestamp(ikey) <= self.read_ts && !self.above_upper(uk) {
                if live && uk < self.key.as_slice() {
                    break;
                }
                if self.below_lower(uk) {
                    break;
                }
                match keys::decode_value(self.inner.value()) {
                    Some(v) if !v.is_dead(self.now_ms) => {
                        live = true;
                        self.key.clear();
                        self.key.extend_from_slice(uk);
                        self.value.clear();
                        self.value.extend_from_slice(v.value);
                    }
                    _ => {
                        live = false;
                        self.key.clear();
                    }
                }
            }
            self.inner.prev().await?;
        }
        self.valid = live;
        if !live {
            self.dir = Direction::Forward;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
    }
}
