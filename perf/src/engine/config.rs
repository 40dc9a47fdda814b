//! The `config` object of `engine.json`: every option, the engines' settings and what
//! each side promises for unsynced and synced writes.

use super::nextdb::engine_config;
use super::{CratePeer, Setup};
use serde_json::{Value, json};

fn unsynced(s: &Setup, krate: Option<&CratePeer>) -> Value {
    let cfg = engine_config(&s.args);
    json!({
        "nextdb": format!(
            "put with sync=false appends to an in-memory log buffer, written out (no fsync) \
             once it holds {} bytes and fsynced by the next group commit or close: a process \
             crash may lose up to that much acknowledged data, a power loss too",
            cfg.log_buffer_bytes
        ),
        "rocksdb_crate": krate.map(|k| k.unsynced.clone()),
        "db_bench": "--sync=0: RocksDB write()s each put's WAL record to the OS page cache: \
            it survives a process crash, not a power loss (db_bench has no flag to buffer \
            its WAL like the other two sides)",
    })
}

fn engine_options(s: &Setup) -> Value {
    let (args, cfg) = (&s.args, engine_config(&s.args));
    json!({
        "block_cache_bytes": args.cache_bytes,
        "memtable_bytes": cfg.memtable_bytes,
        "max_write_buffers": cfg.max_immutable_memtables + 1,
        "l0_triggers": [cfg.l0_compaction_trigger, cfg.l0_slowdown_trigger, cfg.l0_stop_trigger],
        "level1_bytes": cfg.level1_bytes,
        "level_multiplier": cfg.level_multiplier,
        "target_file_bytes": cfg.target_file_bytes,
        "block_bytes": nextdb_engine::config::DATA_BLOCK_BYTES,
        "bloom_bits_per_key": nextdb_engine::config::BLOOM_BITS_PER_KEY,
        "compression": format!("lz4 on every side (NextDB uses zstd from level {}; data this \
            size stays above it)", cfg.zstd_from_level),
        "direct_io": "NextDB: O_DIRECT for every file; RocksDB (crate and db_bench): \
            use_direct_reads and use_direct_io_for_flush_and_compaction (its WAL stays buffered)",
        "nextdb_engine_config": format!("{cfg:?}"),
    })
}

pub fn json(
    s: &Setup,
    krate: Option<&CratePeer>,
    db_bench_commands: &[String],
    confinement: Option<String>,
) -> Value {
    let args = &s.args;
    json!({
        "num": s.num,
        "quick": args.quick,
        "reads": s.reads,
        "repeats": args.repeats,
        "repeat_order": "every repeat runs the whole plan on nextdb, then the rocksdb crate, \
            then db_bench; medians and min/max over the repeats; ratio = median / median",
        "benchmarks": s.steps.iter().map(|st| st.bench.name()).collect::<Vec<_>>(),
        "key_size": args.key_size,
        "value_size": args.value_size,
        "compression_ratio": 0.5,
        "seed": args.seed,
        "cpu": args.cpu,
        "confinement": confinement.map_or_else(
            || "none (--no-pin): only NextDB's executor is pinned".to_string(),
            |c| format!("{c} holding only CPU {}: the engine, its io_uring workers, RocksDB's \
                background threads and db_bench all share that CPU", args.cpu)),
        "engine_options": engine_options(s),
        "unsynced_writes": unsynced(s, krate),
        "synced_writes": format!(
            "overwrite: {} writers x {} puts, each put waits until the log holding it is \
             fdatasynced; concurrent writers share one write + fdatasync (group commit) on \
             every side. NextDB: tasks on its one executor; rocksdb crate: threads; \
             db_bench: --sync=1 --threads={}. Keys uniform over 0..num.",
            args.sync_writers, s.sync_per_writer, args.sync_writers
        ),
        "sync_writes": s.sync_total(),
        "reads_on": if args.no_warmup {
            "the database as the earlier benchmarks left it, block cache as it is"
        } else {
            "SSTables behind a hot block cache: before the first read after writes or a \
             reopen, every side flushes, waits for compactions (settle_secs) and scans \
             everything, unmeasured (db_bench: flush, waitforcompaction, readtocache)"
        },
        "value_check": "the workload loop checks the length of every value read \
            (bad_values); db_bench does not report it",
        "write_amplification": "(log + flush + compaction bytes written) / user bytes \
            written since the database was opened, at the end of the row; db_bench: not reported",
        "seekrandom": "a new iterator per seek, seek, compare the key (db_bench --seek_nexts=0)",
        "db_bench_commands": db_bench_commands,
    })
}
