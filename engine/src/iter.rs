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
use crate::version::SstFile;
use std::cmp::Ordering;
use std::rc::Rc;

/// Iterates the files of one sorted level (L1+) as a single run, opening each file's
/// iterator only when the scan reaches it.
pub struct LevelIter<F: FileSystem> {
    files: Vec<Rc<SstFile<F>>>,
    idx: usize,
    cur: Option<TableIter<F::Reader>>,
}

impl<F: FileSystem> LevelIter<F> {
    pub fn new(files: Vec<Rc<SstFile<F>>>) -> Self {
        LevelIter {
            files,
            idx: 0,
            cur: None,
        }
    }

    fn open(&mut self, idx: usize) -> bool {
        match self.files.get(idx) {
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
        if !self.files.is_empty() && self.open(self.files.len() - 1) {
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
pub struct MergingIter<F: FileSystem> {
    sources: Vec<Source<F>>,
    current: Option<usize>,
    dir: Direction,
}

impl<F: FileSystem> MergingIter<F> {
    pub fn new(sources: Vec<Source<F>>) -> Self {
        MergingIter {
            sources,
            current: None,
            dir: Direction::Forward,
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
            if s.valid()
                && best
                    .is_none_or(|b| cmp_internal(s.key(), self.sources[b].key()) == Ordering::Less)
            {
                best = Some(i);
            }
        }
        self.current = best;
    }

    fn find_largest(&mut self) {
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

    pub async fn seek(&mut self, target: &[u8]) -> Result<()> {
        for s in &mut self.sources {
            s.seek(target).await?;
        }
        self.dir = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    pub async fn seek_to_first(&mut self) -> Result<()> {
        for s in &mut self.sources {
            s.seek_to_first().await?;
        }
        self.dir = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    pub async fn seek_to_last(&mut self) -> Result<()> {
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
        self.find_smallest();
        Ok(())
    }

    pub async fn prev(&mut self) -> Result<()> {
        let Some(cur) = self.current else {
            return Ok(());
        };
        if self.dir != Direction::Reverse {
            // Every other source must be moved to the last entry before the current key.
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
    /// Keeps the snapshot (and its timestamp's versions) alive while iterating.
    _pin: Option<Box<dyn std::any::Any>>,
}

impl<F: FileSystem> DbIter<F> {
    pub(crate) fn new(
        inner: MergingIter<F>,
        read_ts: u64,
        opts: ReadOptions,
        pin: Option<Box<dyn std::any::Any>>,
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
            _pin: pin,
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
            Some(l) if key < l.as_slice() => l.clone(),
            _ => key.to_vec(),
        };
        keys::encode_internal(&mut self.seek_buf, &target, self.read_ts);
        let t = std::mem::take(&mut self.seek_buf);
        self.inner.seek(&t).await?;
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
