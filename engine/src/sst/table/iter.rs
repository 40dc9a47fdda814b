//! [`TableIter`]: a bidirectional iterator over a whole table, with readahead once a
//! scan is sequential.

use super::reader::{Table, dup_error};
use crate::config;
use crate::fs::ReadFile;
use crate::sst::block::{Block, BlockIter};
use crate::{Error, Result};
use std::rc::Rc;

/// Forward block steps after a seek before an iterator starts reading ahead.
const READAHEAD_AFTER_BLOCKS: u32 = 2;

/// A bidirectional iterator over a whole table. It owns an `Rc` of the table and of
/// the current data block, so it stays valid while blocks leave the cache.
pub struct TableIter<R: ReadFile> {
    table: Rc<Table<R>>,
    index: BlockIter<Rc<Block>>,
    data: Option<BlockIter<Rc<Block>>>,
    /// Offset of the block `data` iterates, to skip reloading it on a nearby seek.
    data_offset: u64,
    err: Option<Error>,
    /// Forward block steps since the last seek; readahead starts after two.
    sequential: u32,
    /// File offset up to which blocks were read ahead.
    prefetched_until: u64,
    /// Size of the next readahead; doubles up to `ITER_READAHEAD_MAX_BYTES`.
    readahead: usize,
}

impl<R: ReadFile> TableIter<R> {
    /// An unpositioned iterator.
    pub fn new(table: Rc<Table<R>>) -> Self {
        let index = BlockIter::new(table.index.clone());
        TableIter {
            table,
            index,
            data: None,
            data_offset: u64::MAX,
            err: None,
            sequential: 0,
            prefetched_until: 0,
            readahead: config::ITER_READAHEAD_MIN_BYTES,
        }
    }

    /// The table this iterator reads.
    pub fn table(&self) -> &Rc<Table<R>> {
        &self.table
    }

    pub fn valid(&self) -> bool {
        self.err.is_none() && self.data.as_ref().is_some_and(BlockIter::valid)
    }

    pub fn key(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], BlockIter::key)
    }

    pub fn value(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], BlockIter::value)
    }

    /// The first error met (I/O or corruption); the iterator is invalid after one.
    pub fn status(&self) -> Result<()> {
        match &self.err {
            Some(e) => Err(dup_error(e)),
            None => Ok(()),
        }
    }

    pub async fn seek_to_first(&mut self) {
        self.err = None;
        // A scan from the start (compaction, full scans) reads ahead at once.
        self.sequential = READAHEAD_AFTER_BLOCKS;
        self.index.seek_to_first();
        if let Some(d) = self.load_block().await {
            d.seek_to_first();
        }
        self.skip_forward().await;
    }

    pub async fn seek_to_last(&mut self) {
        self.err = None;
        self.sequential = 0;
        self.index.seek_to_last();
        if let Some(d) = self.load_block().await {
            d.seek_to_last();
        }
        self.skip_backward().await;
    }

    /// Positions at the first entry `>= target` by `cmp_internal`.
    pub async fn seek(&mut self, target: &[u8]) {
        self.err = None;
        self.sequential = 0;
        self.index.seek(target);
        if let Some(d) = self.load_block().await {
            d.seek(target);
        }
        self.skip_forward().await;
    }

    pub async fn next(&mut self) {
        if !self.valid() {
            return;
        }
        if let Some(d) = &mut self.data {
            d.next();
        }
        self.skip_forward().await;
    }

    pub async fn prev(&mut self) {
        if !self.valid() {
            return;
        }
        if let Some(d) = &mut self.data {
            d.prev();
        }
        self.skip_backward().await;
    }

    /// Reads the next `readahead` bytes of data blocks, from the block the index is
    /// on, in one I/O into the cache, unless an earlier readahead covered it.
    async fn read_ahead(&mut self) {
        if !self.index.valid() {
            return;
        }
        let Ok(h) = self.table.decode_handle(self.index.value()) else {
            return;
        };
        if h.offset < self.prefetched_until {
            return;
        }
        let mut idx = BlockIter::new(self.table.index.clone());
        idx.seek(self.index.key());
        let mut handles = Vec::new();
        let mut bytes = 0u64;
        while idx.valid() && bytes < self.readahead as u64 {
            let Ok(h) = self.table.decode_handle(idx.value()) else {
                break;
            };
            bytes += h.physical_size();
            handles.push(h);
            idx.next();
        }
        if let Some(last) = handles.last() {
            self.prefetched_until = last.offset + last.physical_size();
        }
        // Errors surface on the normal read of the block that needs the bytes.
        let _ = self.table.prefetch(&handles).await;
        self.readahead = (self.readahead * 2).min(config::ITER_READAHEAD_MAX_BYTES);
    }

    /// Points `data` at the block the index iterator is on and returns it; `None`
    /// (with `data` cleared and maybe an error recorded) if there is none.
    async fn load_block(&mut self) -> Option<&mut BlockIter<Rc<Block>>> {
        if !self.index.valid() {
            if let Err(e) = self.index.status() {
                self.err = Some(e);
            }
            self.data = None;
            self.data_offset = u64::MAX;
            return None;
        }
        let handle = match self.table.decode_handle(self.index.value()) {
            Ok(h) => h,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        if self.data.is_none() || self.data_offset != handle.offset {
            match self.table.read_block(handle).await {
                Ok(b) => {
                    match &mut self.data {
                        Some(d) => d.reset(b),
                        None => self.data = Some(BlockIter::new(b)),
                    }
                    self.data_offset = handle.offset;
                }
                Err(e) => {
                    self.fail(e);
                    return None;
                }
            }
        }
        self.data.as_mut()
    }

    fn fail(&mut self, e: Error) {
        self.err = Some(e);
        self.data = None;
        self.data_offset = u64::MAX;
    }

    /// Returns true if `data` is positioned; records a block's corruption.
    fn data_ready(&mut self) -> Option<bool> {
        let d = self.data.as_ref()?;
        if d.valid() {
            return Some(true);
        }
        if let Err(e) = d.status() {
            self.fail(e);
            return None;
        }
        Some(false)
    }

    /// Moves to following blocks while the current one is exhausted.
    async fn skip_forward(&mut self) {
        while self.err.is_none() && self.data_ready() == Some(false) {
            self.index.next();
            self.sequential = self.sequential.saturating_add(1);
            if self.sequential >= READAHEAD_AFTER_BLOCKS {
                self.read_ahead().await;
            }
            match self.load_block().await {
                Some(d) => d.seek_to_first(),
                None => return,
            }
        }
    }

    /// Moves to preceding blocks while the current one is exhausted.
    async fn skip_backward(&mut self) {
        while self.err.is_none() && self.data_ready() == Some(false) {
            self.index.prev();
            match self.load_block().await {
                Some(d) => d.seek_to_last(),
                None => return,
            }
        }
    }
}
