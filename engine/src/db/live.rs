//! Settings of a running engine that its owning core changes without a restart
//! (`nextdb admin config set`): the cache budgets and the background queue's
//! scheduler shares. Nothing here is persisted: a reopened engine starts from its
//! `EngineConfig` again.

use super::Db;
use crate::fs::FileSystem;
use crate::runtime::LiveShares;
use crate::{Error, Result};
use std::rc::Rc;

impl<F: FileSystem> Db<F> {
    /// The block cache's byte budget now.
    pub fn block_cache_bytes(&self) -> usize {
        self.cache.capacity()
    }

    /// Resizes the block cache; shrinking evicts down to the new budget at once.
    pub fn set_block_cache_bytes(&self, bytes: usize) {
        self.cache.set_capacity(bytes);
    }

    /// The row cache's byte budget now; None when the engine runs without one.
    pub fn row_cache_bytes(&self) -> Option<usize> {
        self.row_cache.as_ref().map(|r| r.stats().capacity)
    }

    /// Resizes the row cache (0 empties it and keeps nothing). An engine opened
    /// without a row cache (`row_cache_bytes` 0) has none to resize.
    pub fn set_row_cache_bytes(&self, bytes: usize) -> Result<()> {
        match &self.row_cache {
            Some(r) => {
                r.set_capacity(bytes);
                Ok(())
            }
            None => Err(Error::InvalidArgument(
                "the engine was opened without a row cache".into(),
            )),
        }
    }

    /// Scheduler shares of the flush and compaction task queue (foreground queues
    /// have 1000).
    pub fn background_shares(&self) -> usize {
        self.background_shares.get()
    }

    /// Sets them (clamped to 1..=1000); glommio applies them within
    /// `config::BACKGROUND_SHARES_ADJUST`.
    pub fn set_background_shares(&self, shares: usize) {
        self.background_shares.set(shares);
    }

    /// The queue's shares manager, for `runtime::spawn_background`.
    pub(crate) fn background_shares_manager(&self) -> Rc<LiveShares> {
        self.background_shares.clone()
    }
}
