//! Every limit of the storage engine in one place. Fixed format constants are `const`;
//! tunables live in [`EngineConfig`] with production defaults.

/// Direct-I/O alignment: every write offset and length, and every log flush, is a
/// multiple of this.
pub const IO_ALIGN: u64 = 4096;
/// No single read or write is larger than this.
pub const MAX_IO_BYTES: usize = 1 << 20;
/// Write-behind buffers of a direct-I/O stream writer (SSTables): one buffer filling
/// while one is in flight keeps the device busy without pinning much memory.
pub const STREAM_WRITE_BEHIND: usize = 2;
/// RLIMIT_MEMLOCK the glommio driver asks for: io_uring rings and registered DMA
/// buffers are locked memory.
pub const MIN_MEMLOCK_BYTES: u64 = 512 << 20;
/// Registered I/O memory of a helper executor (tests, tools): small so that it fits
/// modest memlock limits; buffers beyond it come from the heap.
pub const LOCAL_EXECUTOR_IO_MEMORY_BYTES: usize = 1 << 20;

/// Preemption timer of an engine executor: the longest a task runs before glommio
/// polls I/O and timers and lets other tasks and queues have the core. It bounds how
/// long a long SCAN or a compaction slice keeps a foreground request waiting. Measured
/// on one pinned core (GETs arriving every 500 µs, each timed from its arrival, while
/// a full scan loops over 300,000 keys in the same executor; 3 runs each, every run
/// within 10% of the others): 100 ms gave GET p50 100 ms and p99 199 ms; 5 ms gave p50
/// 5.3 ms, p99 11.5 ms; 1 ms gave p50 1.2 ms, p99 5.4 ms. The engine suite's
/// fillrandom and readrandom throughput did not drop with 1 ms (245k and 272k op/s vs
/// 225k and 258k with 100 ms, 400,000 keys). A 1 ms timer parked glommio 0.9.0 with
/// runnable tasks (`runtime::executor_builder`); the patched copy in
/// `third_party/glommio` does not.
pub const PREEMPT_TIMER_US: u64 = 1000;
/// Scheduler shares of the background (flush and compaction) task queue; foreground
/// queues have glommio's default of 1000.
pub const BACKGROUND_SHARES: usize = 250;
/// Most shares a glommio task queue can have (it clamps above; 1 is the least).
pub const MAX_TASK_QUEUE_SHARES: usize = 1000;
/// How often glommio re-reads the background queue's shares, so a live change
/// (`Db::set_background_shares`) takes effect within this.
pub const BACKGROUND_SHARES_ADJUST: std::time::Duration = std::time::Duration::from_millis(100);

/// Largest user key the engine accepts.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// Largest value the engine accepts.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// Largest internal key: a user key plus the 8-byte timestamp suffix (`keys::TS_BYTES`).
pub const MAX_INTERNAL_KEY_BYTES: usize = MAX_KEY_BYTES + crate::keys::TS_BYTES;
/// Largest stored value: a user value plus its header (kind byte and, for `PutTtl`, the
/// 8-byte expiry).
pub const MAX_STORED_VALUE_BYTES: usize = MAX_VALUE_BYTES + 1 + 8;
/// Largest log record payload (one write batch).
pub const MAX_LOG_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// A log flush (one flush header and the records after it) is cut before a record that
/// would take it past this many bytes of records, unless it holds no record yet; so a
/// flush holds at most `max(MAX_LOG_FLUSH_BYTES, one record)`, and recovery, which
/// checks a whole flush before replaying any of it, holds at most that in memory.
pub const MAX_LOG_FLUSH_BYTES: usize = 16 * 1024 * 1024;

/// Group commits of one core's log in flight at once: the next batch's write is
/// issued while earlier fsyncs run, so a commit does not wait a whole write-and-fsync
/// round behind the one before (`log::inflight`).
pub const MAX_LOG_BATCHES_IN_FLIGHT: usize = 4;

/// Credit of the delayed write rate (`EngineConfig::delayed_write_rate_bytes_per_sec`)
/// a core keeps while no write waits: small writes up to this many bytes in a burst
/// pass a slowed engine without waiting.
pub const DELAYED_WRITE_BURST_BYTES: usize = 64 << 10;

/// Writes of at most this many bytes may take the small-write lane of the write gate
/// (`db::gate`): admitted at once, ahead of any queue, from a pool of their own.
pub const SMALL_WRITE_MAX_BYTES: usize = 16 << 10;

/// The small-write lane's pool: bytes of small writes admitted and not yet durable.
/// While large writers keep the gate's queue full, a small write enters the log at
/// once instead of waiting behind their group commits; the pool bounds what small
/// writes add to the log ahead of anyone.
pub const SMALL_WRITE_LANE_BYTES: usize = 64 << 10;

/// SSTable data blocks are cut once they reach this many bytes (before compression).
pub const DATA_BLOCK_BYTES: usize = 4096;
/// A restart point (full key, no prefix sharing) every this many entries. Measured
/// against 4 and 8 (engine suite, 500,000 keys, readrandom and seekrandom): no
/// difference above the run-to-run noise once the restart keys are decoded per
/// block (`sst::block`), so the denser 16 stays.
pub const BLOCK_RESTART_INTERVAL: usize = 16;
/// Row cache admission window: recent key hashes remembered (8 bytes each). A key
/// enters the row cache on its second miss while its hash is still here.
pub const ROW_CACHE_DOORKEEPER_SLOTS: usize = 4096;
/// Bloom filter bits per key (~1% false positives).
pub const BLOOM_BITS_PER_KEY: usize = 10;
/// Index blocks restart at every entry: they are small and pinned, and full keys make
/// the binary search over them exact without a linear step.
pub const INDEX_RESTART_INTERVAL: usize = 1;
/// Largest decoded (uncompressed) SSTable block. One entry can hold a key of
/// `MAX_KEY_BYTES` and a value of `MAX_VALUE_BYTES`, so a data block may exceed
/// `DATA_BLOCK_BYTES` by that much; anything larger on disk is corruption, and the bound
/// keeps a corrupt size field from triggering a huge allocation.
pub const MAX_BLOCK_BYTES: usize = 32 << 20;
/// Largest filter, index or properties block of one SSTable (they are read whole at
/// open and pinned). A 64 MiB table with 4 KiB blocks needs well under 2 MiB of each.
pub const MAX_META_BLOCK_BYTES: usize = 64 << 20;
/// A block is stored compressed only if compression saves at least 1/this of its size
/// (12.5%): smaller savings do not pay for the decompression on every cache miss.
pub const MIN_COMPRESSION_SAVING_DIVISOR: usize = 8;
/// Upper bound of bloom probes per key (the reader rejects filters claiming more).
pub const MAX_BLOOM_PROBES: u8 = 30;

/// Memtable arena: the first chunk's size. Chunks double from here up to
/// [`MEMTABLE_ARENA_MAX_CHUNK_BYTES`], so a tiny memtable (tests, idle shards) does not
/// pin a full chunk.
pub const MEMTABLE_ARENA_MIN_CHUNK_BYTES: usize = 4 << 10;
/// Memtable arena: the largest regular chunk. An entry bigger than a quarter of this gets
/// a chunk of its own, so big values neither waste nor split regular chunks. One huge
/// page, so that full-size chunks can be backed by one (see below).
pub const MEMTABLE_ARENA_MAX_CHUNK_BYTES: usize = MEMTABLE_ARENA_HUGE_PAGE_BYTES;
/// Memtable arena: chunks of this size are aligned to it and, on Linux, advised to use
/// transparent huge pages. Skip-list searches touch ~30 random nodes each; with 4 KiB
/// pages nearly every touch is also a TLB miss, which huge pages avoid.
pub const MEMTABLE_ARENA_HUGE_PAGE_BYTES: usize = 2 << 20;
/// Memtable skip list: the tallest tower. With branching 4, 12 levels index 4^12 (~16M)
/// entries without degrading, more than a memtable of `memtable_bytes` holds.
pub const MEMTABLE_MAX_HEIGHT: usize = 12;
/// Memtable skip list: each level holds 1 in this many nodes of the level below.
/// Must be a power of two (heights are drawn from pairs of random bits).
pub const MEMTABLE_BRANCHING: u32 = 4;
/// Memtable skip list: seed of the tower-height generator. Fixed so that a run is
/// reproducible (the simulator replays the same shapes).
pub const MEMTABLE_RNG_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// A manifest larger than this is rewritten as one snapshot record.
pub const MANIFEST_ROLL_BYTES: u64 = 4 << 20;

/// Largest backup manifest (`BACKUP`) a reader accepts: one line per file.
pub const MAX_BACKUP_MANIFEST_BYTES: u64 = 64 << 20;
/// Block cache of `admin verify` (it reads each block once).
pub const VERIFY_CACHE_BYTES: usize = 1 << 20;
/// Write buffer of a file copied into a backup or the log archive.
pub const BACKUP_COPY_BUFFER_BYTES: usize = MAX_IO_BYTES;

/// Iterator readahead: the first window once a scan is sequential, and the largest it
/// doubles to (one read each: fewer, larger direct reads for scans and compactions).
pub const ITER_READAHEAD_MIN_BYTES: usize = 32 << 10;
pub const ITER_READAHEAD_MAX_BYTES: usize = MAX_IO_BYTES;

/// Levels of the LSM tree, L0 included.
pub const NUM_LEVELS: usize = 7;

/// Tunables of one shard's engine. Defaults suit a production server; tests shrink them.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Bytes a memtable may hold before it is rotated and flushed.
    pub memtable_bytes: usize,
    /// Immutable memtables waiting for flush before writes stop.
    pub max_immutable_memtables: usize,
    /// Bytes of decompressed blocks the block cache keeps.
    pub block_cache_bytes: usize,
    /// Bytes of hot rows the row cache keeps (`row_cache`); 0: no row cache.
    pub row_cache_bytes: usize,
    /// Log segment size; a new segment starts once this is exceeded.
    pub log_segment_bytes: u64,
    /// Unsynced log bytes buffered before they are written out without waiting for a sync.
    pub log_buffer_bytes: usize,
    /// L0 file count that triggers compaction into L1.
    pub l0_compaction_trigger: usize,
    /// L0 file count from which each write is delayed.
    pub l0_slowdown_trigger: usize,
    /// L0 file count at which writes wait for compaction.
    pub l0_stop_trigger: usize,
    /// Target size of L1; each deeper level is `level_multiplier` times larger.
    pub level1_bytes: u64,
    pub level_multiplier: u64,
    /// Target size of one SSTable written by compaction.
    pub target_file_bytes: u64,
    /// Levels at or above this index (0-based) use ZSTD, shallower ones LZ4.
    pub zstd_from_level: usize,
    /// ZSTD compression level for cold data.
    pub zstd_level: i32,
    /// Buffer size of SSTable stream writers.
    pub sst_write_buffer_bytes: usize,
    /// A flat delay of every write while L0 is between the slowdown and stop
    /// triggers, on top of the delayed write rate. 0 in production: the rate is
    /// byte-proportional, this is not; tests set it to hold writes in `admit`.
    pub slowdown_delay_us: u64,
    /// Bytes of write batches a core admits that their writers have not yet seen
    /// durable; later writes queue, served in fair order (`db::gate`). Bounds what a
    /// small synced write finds ahead of it in the log: a group commit or two of this
    /// size, whatever other writers pipeline.
    pub write_in_flight_bytes: usize,
    /// Bytes per second admitted while the engine is slowed (every immutable memtable
    /// slot taken, or L0 at the slowdown trigger): a write of N bytes waits about
    /// N / rate, so a flood slows before the hard stall while a small write pays
    /// nearly nothing. RocksDB's `delayed_write_rate` default. 0: no delayed rate.
    pub delayed_write_rate_bytes_per_sec: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            memtable_bytes: 64 << 20,
            max_immutable_memtables: 2,
            block_cache_bytes: 256 << 20,
            row_cache_bytes: 32 << 20,
            log_segment_bytes: 64 << 20,
            log_buffer_bytes: 256 << 10,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            level1_bytes: 256 << 20,
            level_multiplier: 10,
            target_file_bytes: 64 << 20,
            zstd_from_level: 4,
            zstd_level: 3,
            sst_write_buffer_bytes: 1 << 20,
            slowdown_delay_us: 0,
            write_in_flight_bytes: 2 << 20,
            delayed_write_rate_bytes_per_sec: 16 << 20,
        }
    }
}

impl EngineConfig {
    /// A configuration with tiny limits so tests exercise rotation, flush and
    /// compaction with little data.
    pub fn small_for_tests() -> Self {
        EngineConfig {
            memtable_bytes: 64 << 10,
            max_immutable_memtables: 2,
            block_cache_bytes: 256 << 10,
            row_cache_bytes: 64 << 10,
            log_segment_bytes: 256 << 10,
            log_buffer_bytes: 16 << 10,
            l0_compaction_trigger: 2,
            l0_slowdown_trigger: 6,
            l0_stop_trigger: 10,
            level1_bytes: 256 << 10,
            level_multiplier: 4,
            target_file_bytes: 64 << 10,
            zstd_from_level: 2,
            zstd_level: 1,
            sst_write_buffer_bytes: 64 << 10,
            slowdown_delay_us: 0,
            write_in_flight_bytes: 2 << 20,
            delayed_write_rate_bytes_per_sec: 16 << 20,
        }
    }

    /// Rejects settings that cannot work together.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::InvalidArgument(m.to_string()));
        if self.memtable_bytes < 4096 {
            return bad("memtable_bytes must be at least 4096");
        }
        if !(self.l0_compaction_trigger <= self.l0_slowdown_trigger
            && self.l0_slowdown_trigger <= self.l0_stop_trigger)
        {
            return bad("need l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger");
        }
        if self.level_multiplier < 2 {
            return bad("level_multiplier must be at least 2");
        }
        if self.log_segment_bytes < IO_ALIGN * 4 {
            return bad("log_segment_bytes must be at least 16 KiB");
        }
        if self.write_in_flight_bytes == 0 {
            return bad("write_in_flight_bytes must be at least 1");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        Ok(())
    }

    /// Byte target of `level` (1-based levels; L0 is governed by file count).
    pub fn level_target_bytes(&self, level: usize) -> u64 {
        let mut t = self.level1_bytes;
        for _ in 1..level {
            t = t.saturating_mul(self.level_multiplier);
        }
        t
    }
}
