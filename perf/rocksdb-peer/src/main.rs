//! `nextdb-perf-rocksdb`: `nextdb-perf` with the `rocksdb` crate as the engine
//! suite's main peer. The crate's database runs under the same workload loop and the
//! same timing as NextDB ([`nextdb_perf::engine::workload`]), with the options
//! db_bench gets from NextDB's configuration.
//!
//! Unsynced writes match NextDB's: with `manual_wal_flush` RocksDB keeps WAL records
//! in its own buffer of `log_buffer_bytes` and writes them out (no fsync) when it is
//! full, as NextDB's log buffer does; a synced put flushes and syncs the WAL.

use hdrhistogram::Histogram;
use nextdb_perf::engine::nextdb::{BLOOM_BITS_PER_KEY, DATA_BLOCK_BYTES, engine_config};
use nextdb_perf::engine::workload::{Engine, WriterSpec, hist, suite, synced_writer};
use nextdb_perf::engine::{CratePeer, Setup};
use nextdb_perf::report::Measured;
use rocksdb::statistics::Ticker;
use rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, Options, WaitForCompactOptions, WriteOptions,
};
use std::path::Path;

/// The crate and the RocksDB release it bundles (librocksdb-sys 0.19.0+11.8.1, pinned
/// by this crate's Cargo.lock).
const NAME: &str = "rocksdb-crate 0.25 (RocksDB 11.8.1, NDEBUG)";

struct Rocks {
    db: DB,
    opts: Options,
    unsynced: WriteOptions,
    synced: WriteOptions,
}

fn err(e: rocksdb::Error) -> String {
    e.to_string()
}

fn options(s: &Setup) -> Options {
    let cfg = engine_config(&s.args);
    let mut o = Options::default();
    o.create_if_missing(true);
    o.enable_statistics();
    o.set_write_buffer_size(cfg.memtable_bytes);
    o.set_max_write_buffer_number(
        i32::try_from(cfg.max_immutable_memtables + 1).unwrap_or(i32::MAX),
    );
    let int = |x: usize| i32::try_from(x).unwrap_or(i32::MAX);
    o.set_level_zero_file_num_compaction_trigger(int(cfg.l0_compaction_trigger));
    o.set_level_zero_slowdown_writes_trigger(int(cfg.l0_slowdown_trigger));
    o.set_level_zero_stop_writes_trigger(int(cfg.l0_stop_trigger));
    o.set_max_bytes_for_level_base(cfg.level1_bytes);
    o.set_max_bytes_for_level_multiplier(cfg.level_multiplier as f64);
    o.set_target_file_size_base(cfg.target_file_bytes);
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_use_direct_reads(true);
    o.set_use_direct_io_for_flush_and_compaction(true);
    o.set_manual_wal_flush(true);
    o.set_writable_file_max_buffer_size(cfg.log_buffer_bytes as u64);
    let mut t = BlockBasedOptions::default();
    t.set_block_size(DATA_BLOCK_BYTES);
    t.set_bloom_filter(BLOOM_BITS_PER_KEY as f64, false);
    t.set_block_cache(&Cache::new_lru_cache(s.args.cache_bytes));
    o.set_block_based_table_factory(&t);
    o
}

impl Engine for Rocks {
    async fn open(dir: &Path, s: &Setup) -> Result<Self, String> {
        let opts = options(s);
        let db = DB::open(&opts, dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        Ok(Rocks {
            db,
            opts,
            unsynced: WriteOptions::default(),
            synced,
        })
    }

    async fn close(self) -> Result<(), String> {
        // The buffered WAL tail reaches the file, as NextDB's close fsyncs its log.
        self.db.flush_wal(true).map_err(err)?;
        drop(self.db);
        Ok(())
    }

    async fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), String> {
        let o = if sync { &self.synced } else { &self.unsynced };
        self.db.put_opt(key, value, o).map_err(err)
    }

    async fn get_len(&self, key: &[u8]) -> Result<Option<usize>, String> {
        Ok(self.db.get_pinned(key).map_err(err)?.map(|v| v.len()))
    }

    async fn seek_exact(&self, key: &[u8]) -> Result<bool, String> {
        let mut it = self.db.raw_iterator();
        it.seek(key);
        it.status().map_err(err)?;
        Ok(it.valid() && it.key() == Some(key))
    }

    async fn scan(&self, limit: u64, each: &mut dyn FnMut(usize)) -> Result<u64, String> {
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        let mut n = 0u64;
        while n < limit && it.valid() {
            std::hint::black_box(it.key().map(<[u8]>::len));
            each(it.value().map_or(0, <[u8]>::len));
            n += 1;
            it.next();
        }
        it.status().map_err(err)?;
        Ok(n)
    }

    async fn settle(&self) -> Result<(), String> {
        self.db.flush().map_err(err)?;
        self.db
            .wait_for_compact(&WaitForCompactOptions::default())
            .map_err(err)
    }

    async fn synced_writers(&self, spec: WriterSpec) -> Result<Histogram<u64>, String> {
        // Threads, as db_bench --threads and RocksDB's users do; all share the cpuset.
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..spec.writers)
                .map(|w| {
                    sc.spawn(move || futures_lite::future::block_on(synced_writer(self, spec, w)))
                })
                .collect();
            let mut h = hist();
            for t in handles {
                let part = t
                    .join()
                    .map_err(|_| "a writer thread panicked".to_string())??;
                h.add(part)
                    .map_err(|e| format!("merging histograms: {e}"))?;
            }
            Ok(h)
        })
    }

    fn write_amplification(&self) -> Option<f64> {
        let t = |k| self.opts.get_ticker_count(k) as f64;
        let user = t(Ticker::BytesWritten);
        let written =
            t(Ticker::WalFileBytes) + t(Ticker::FlushWriteBytes) + t(Ticker::CompactWriteBytes);
        (user > 0.0).then(|| written / user)
    }
}

fn run(s: &Setup, rep: u64) -> Result<Vec<Measured>, String> {
    let dir = s.args.dir.join("rocksdb-crate");
    futures_lite::future::block_on(suite::<Rocks>(s, &dir, rep))
}

fn main() {
    let peer = CratePeer {
        name: NAME.into(),
        run,
        unsynced: "manual_wal_flush with a WAL buffer of log_buffer_bytes: each put's WAL \
                   record stays in RocksDB's buffer until it is full, then is written out \
                   (no fsync), as NextDB's log buffer; a process crash may lose up to that \
                   much acknowledged data, a power loss too"
            .into(),
    };
    nextdb_perf::main_with(Some(&peer));
}
