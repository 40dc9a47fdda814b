//! Counters and statistics of one engine (for `admin stats`, metrics and benchmarks).

use super::Db;
use crate::config::EngineConfig;
use crate::fs::FileSystem;

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
    /// Log records appended, group commits (fdatasyncs) and their summed duration:
    /// records / syncs is the group-commit batch size.
    pub log_records: u64,
    pub log_syncs: u64,
    pub log_sync_micros: u64,
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
    /// Writes that queued at the write gate (in-flight bytes or the delayed write
    /// rate), and the time they spent there.
    pub delayed_count: u64,
    pub delayed_micros: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_hit_rate: f64,
    pub cache_bytes: u64,
    /// The block cache's byte budget now (`Db::set_block_cache_bytes` changes it).
    pub cache_capacity_bytes: u64,
    /// Point reads a table answered from the row cache, and the rows it holds.
    pub row_cache_hits: u64,
    pub row_cache_entries: usize,
    /// Bytes the row cache holds and its budget (0 and 0 without a row cache).
    pub row_cache_bytes: u64,
    pub row_cache_capacity_bytes: u64,
    /// Bytes compaction must rewrite to bring every level within its target:
    /// L0's bytes once it reaches `l0_compaction_trigger` files, plus each deeper
    /// level's bytes over `level_target_bytes` (RocksDB's pending-compaction estimate,
    /// without the fan-out factor).
    pub compaction_debt_bytes: u64,
    /// A flush or a compaction is running (or picking its inputs) now.
    pub flush_running: bool,
    pub compaction_running: bool,
    /// Synced writes appended and waiting for their group commit's fsync.
    pub pending_syncs: usize,
    /// Log segment files on disk.
    pub log_segments: usize,
    /// Why background work stopped (writes are refused after it).
    pub background_error: Option<String>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) user_bytes: u64,
    pub(super) flush_bytes: u64,
    pub(super) compaction_read: u64,
    pub(super) compaction_written: u64,
    pub(super) flushes: u64,
    pub(super) compactions: u64,
    pub(super) trivial_moves: u64,
    pub(super) stall_count: u64,
    pub(super) stall_micros: u64,
    pub(super) delayed_count: u64,
    pub(super) delayed_micros: u64,
}

/// Bytes compaction owes (`DbStats::compaction_debt_bytes`).
fn compaction_debt(levels: &[LevelStats], cfg: &EngineConfig) -> u64 {
    let mut debt = 0u64;
    for (level, l) in levels.iter().enumerate() {
        if level == 0 {
            if l.files >= cfg.l0_compaction_trigger {
                debt = debt.saturating_add(l.bytes);
            }
        } else {
            debt = debt.saturating_add(l.bytes.saturating_sub(cfg.level_target_bytes(level)));
        }
    }
    debt
}

impl<F: FileSystem> Db<F> {
    pub fn stats(&self) -> DbStats {
        let st = self.st.borrow();
        let c = self.counters.borrow();
        let log = self.log.stats();
        let cache = self.cache.stats();
        let row = self
            .row_cache
            .as_ref()
            .map(|r| r.stats())
            .unwrap_or_default();
        let levels: Vec<LevelStats> = st
            .version
            .levels
            .iter()
            .map(|f| LevelStats {
                files: f.len(),
                bytes: f.iter().map(|x| x.meta.size).sum(),
            })
            .collect();
        let written = log.bytes_written + c.flush_bytes + c.compaction_written;
        let debt = compaction_debt(&levels, &self.cfg);
        let lookups = cache.hits + cache.misses;
        DbStats {
            levels,
            memtable_bytes: st.mem.approximate_bytes(),
            immutable_memtables: st.imm.len(),
            last_ts: st.last_ts,
            user_bytes_written: c.user_bytes,
            log_bytes_written: log.bytes_written,
            log_records: log.records,
            log_syncs: log.syncs,
            log_sync_micros: log.sync_micros,
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
            delayed_count: c.delayed_count,
            delayed_micros: c.delayed_micros,
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_hit_rate: if lookups == 0 {
                0.0
            } else {
                cache.hits as f64 / lookups as f64
            },
            cache_bytes: cache.bytes_used as u64,
            cache_capacity_bytes: cache.capacity as u64,
            row_cache_hits: row.hits,
            row_cache_bytes: row.bytes_used as u64,
            row_cache_capacity_bytes: row.capacity as u64,
            row_cache_entries: row.entries,
            compaction_debt_bytes: debt,
            flush_running: self.flush_lock.is_locked(),
            compaction_running: self.compaction_lock.is_locked(),
            pending_syncs: st.pending_sync.len(),
            log_segments: log.segments,
            background_error: st.bg_error.clone(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_debt_counts_l0_at_its_trigger_and_bytes_over_each_target() {
        let cfg = EngineConfig::default();
        let l = |files, bytes| LevelStats { files, bytes };
        let under = cfg.l0_compaction_trigger - 1;
        assert_eq!(compaction_debt(&[l(under, 100), l(1, 10)], &cfg), 0);
        let t1 = cfg.level_target_bytes(1);
        let t2 = cfg.level_target_bytes(2);
        let levels = [
            l(cfg.l0_compaction_trigger, 100),
            l(3, t1 + 7),
            l(2, t2 - 1),
        ];
        assert_eq!(compaction_debt(&levels, &cfg), 100 + 7);
    }
}
