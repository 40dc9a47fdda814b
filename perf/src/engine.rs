//! The `engine` suite: NextDB's storage engine and RocksDB's db_bench, same workloads,
//! same options, both pinned to one CPU (per-core numbers), in one invocation.

use crate::dbbench;
use crate::report::{self, Measured, Row};
use crate::workload::{Rng, ValueGen, key};
use hdrhistogram::Histogram;
use nextdb_engine::EngineConfig;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::glommio_fs::DmaFs;
use nextdb_engine::iter::ReadOptions;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Keys in the database (db_bench --num).
    #[arg(long, default_value_t = 2_000_000)]
    pub num: u64,
    /// Random reads and seeks (db_bench --reads); default: --num.
    #[arg(long)]
    pub reads: Option<u64>,
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Synced overwrites in total, spread over --sync-writers concurrent writers.
    #[arg(long, default_value_t = 64_000)]
    pub sync_writes: u64,
    #[arg(long, default_value_t = 16)]
    pub sync_writers: u64,
    /// Block cache bytes on both sides (large enough that reads run on a hot cache).
    #[arg(long, default_value_t = 1 << 30)]
    pub cache_bytes: usize,
    /// Data directory (a file system with O_DIRECT: ext4, xfs; not tmpfs).
    #[arg(long, default_value = "target/perf/engine-data")]
    pub dir: PathBuf,
    #[arg(long, default_value = "target/perf/engine.json")]
    pub out: PathBuf,
    /// CPU both engines are pinned to.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
    /// Run only NextDB (debugging).
    #[arg(long)]
    pub nextdb_only: bool,
    /// Run only db_bench (debugging).
    #[arg(long)]
    pub peer_only: bool,
}

const NAMES: [&str; 6] = [
    "fillseq",
    "fillrandom",
    "readseq",
    "readrandom",
    "seekrandom",
    "overwrite",
];

pub fn run(args: EngineArgs) -> Result<(), String> {
    let reads = args.reads.unwrap_or(args.num);
    let mut nextdb = BTreeMap::new();
    let mut peer = BTreeMap::new();
    if !args.peer_only {
        println!("== NextDB engine (pinned to CPU {})", args.cpu);
        nextdb = run_nextdb(&args, reads)?;
    }
    if !args.nextdb_only {
        println!("== RocksDB db_bench (pinned to CPU {})", args.cpu);
        peer = run_db_bench(&args, reads)?;
    }
    let rows: Vec<Row> = NAMES
        .iter()
        .map(|n| Row {
            name: n.to_string(),
            nextdb: nextdb.get(*n).cloned(),
            peer: peer.get(*n).cloned(),
        })
        .collect();
    let config = json!({
        "num": args.num, "reads": reads, "key_size": args.key_size,
        "value_size": args.value_size, "cache_bytes": args.cache_bytes,
        "sync_writes": args.sync_writes, "sync_writers": args.sync_writers,
        "cpu_pinned": args.cpu,
        "writes": "fillseq/fillrandom unsynced (log written, fsynced only by group commits); overwrite: every put fsynced, sync_writers concurrent writers",
        "compression": "lz4 (nextdb: lz4 above L4, zstd from L4)",
        "direct_io": "both (nextdb always; db_bench --use_direct_reads --use_direct_io_for_flush_and_compaction)",
    });
    report::write("engine", "rocksdb db_bench 7.8.3", config, &rows, &args.out)
}

fn fresh_dir(p: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn hist() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant histogram bounds are valid")
}

fn engine_config(args: &EngineArgs) -> EngineConfig {
    EngineConfig {
        block_cache_bytes: args.cache_bytes,
        ..EngineConfig::default()
    }
}

fn run_nextdb(args: &EngineArgs, reads: u64) -> Result<BTreeMap<String, Measured>, String> {
    if let Err(e) = nextdb_engine::fs::glommio_fs::raise_memlock_limit() {
        eprintln!("warning: {e}");
    }
    let args = args.clone();
    let handle = nextdb_engine::runtime::executor_builder(glommio::Placement::Fixed(args.cpu))
        .name("nextdb-bench")
        .spawn(move || async move { nextdb_suite(args, reads).await })
        .map_err(|e| format!("cannot start executor: {e}"))?;
    handle.join().map_err(|e| format!("executor failed: {e}"))?
}

async fn open(dir: &Path, args: &EngineArgs) -> Result<Rc<Db<DmaFs>>, String> {
    let db = Db::open(DmaFs::new(), dir, engine_config(args))
        .await
        .map_err(|e| e.to_string())?;
    // Flush and compaction run beside the benchmark in a queue with fewer shares.
    nextdb_engine::runtime::spawn_background(&db).map_err(|e| e.to_string())?;
    Ok(db)
}

async fn nextdb_suite(args: EngineArgs, reads: u64) -> Result<BTreeMap<String, Measured>, String> {
    let mut out = BTreeMap::new();
    let base = args.dir.join("nextdb");
    let mut vg = ValueGen::new(args.seed);
    let mut kbuf = Vec::new();

    // fillseq on a fresh database.
    let d1 = base.join("seq");
    fresh_dir(&d1)?;
    let db = open(&d1, &args).await?;
    let mut seq = 0u64;
    let m = fill(&db, &args, &mut vg, || {
        seq += 1;
        seq - 1
    })
    .await?;
    out.insert("fillseq".into(), m);
    report_line("fillseq", &out["fillseq"]);
    db.close().await.map_err(|e| e.to_string())?;
    drop(db);
    let _ = std::fs::remove_dir_all(&d1);

    // fillrandom, then reads on the same database.
    let d2 = base.join("random");
    fresh_dir(&d2)?;
    let db = open(&d2, &args).await?;
    let mut rng = Rng::new(args.seed);
    let m = fill(&db, &args, &mut vg, || rng.below(args.num)).await?;
    out.insert("fillrandom".into(), m);
    report_line("fillrandom", &out["fillrandom"]);

    // readseq: one iterator over everything.
    let mut h = hist();
    let mut it = db
        .iter(ReadOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    it.seek_to_first().await.map_err(|e| e.to_string())?;
    let mut n = 0u64;
    while it.valid() {
        n += 1;
        let t0 = Instant::now();
        it.next().await.map_err(|e| e.to_string())?;
        let _ = h.record(t0.elapsed().as_nanos() as u64);
    }
    drop(it);
    out.insert(
        "readseq".into(),
        Measured::from_hist(n, t.elapsed().as_secs_f64(), &h),
    );
    report_line("readseq", &out["readseq"]);

    // readrandom: uniform keys over the key space (about 63% exist, as in db_bench).
    let mut h = hist();
    let mut found = 0u64;
    let t = Instant::now();
    for _ in 0..reads {
        key(rng.below(args.num), args.key_size, &mut kbuf);
        let t0 = Instant::now();
        if db.get(&kbuf).await.map_err(|e| e.to_string())?.is_some() {
            found += 1;
        }
        let _ = h.record(t0.elapsed().as_nanos() as u64);
    }
    out.insert(
        "readrandom".into(),
        Measured::from_hist(reads, t.elapsed().as_secs_f64(), &h),
    );
    report_line("readrandom", &out["readrandom"]);
    println!("  ({found} of {reads} found)");

    // seekrandom: a new iterator per seek, as db_bench does without tailing iterators.
    let mut h = hist();
    let mut found = 0u64;
    let t = Instant::now();
    for _ in 0..reads {
        key(rng.below(args.num), args.key_size, &mut kbuf);
        let t0 = Instant::now();
        let mut it = db
            .iter(ReadOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        it.seek(&kbuf).await.map_err(|e| e.to_string())?;
        if it.valid() && it.key() == kbuf.as_slice() {
            found += 1;
        }
        drop(it);
        let _ = h.record(t0.elapsed().as_nanos() as u64);
    }
    out.insert(
        "seekrandom".into(),
        Measured::from_hist(reads, t.elapsed().as_secs_f64(), &h),
    );
    report_line("seekrandom", &out["seekrandom"]);
    println!("  ({found} of {reads} found)");
    println!("  stats after reads: {:?}", db.stats());
    db.close().await.map_err(|e| e.to_string())?;
    drop(db);

    // overwrite with synced group commit: reopen (as db_bench does), concurrent writers.
    let db = open(&d2, &args).await?;
    let per = args.sync_writes / args.sync_writers.max(1);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.sync_writers {
        let db = db.clone();
        let (num, ks, vs, seed) = (args.num, args.key_size, args.value_size, args.seed + w + 1);
        tasks.push(glommio::spawn_local(async move {
            let mut h = hist();
            let mut rng = Rng::new(seed);
            let mut vg = ValueGen::new(seed);
            let mut kbuf = Vec::new();
            let sync = WriteOptions {
                sync: true,
                ttl_ms: None,
            };
            for _ in 0..per {
                key(rng.below(num), ks, &mut kbuf);
                let v = vg.next(vs);
                let t0 = Instant::now();
                db.put(&kbuf, v, &sync).await.map_err(|e| e.to_string())?;
                let _ = h.record(t0.elapsed().as_nanos() as u64);
            }
            Ok::<_, String>(h)
        }));
    }
    // Watchdog: if the phase takes far longer than it should, say where it is stuck.
    let watch = {
        let db = db.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(std::time::Duration::from_secs(30)).await;
                eprintln!(
                    "overwrite still running after 30 s more:\n{}",
                    db.debug_state()
                );
            }
        })
    };
    let mut h = hist();
    for task in tasks {
        let part = task.await?;
        let _ = h.add(&part);
    }
    drop(watch);
    let total = per * args.sync_writers;
    out.insert(
        "overwrite".into(),
        Measured::from_hist(total, t.elapsed().as_secs_f64(), &h),
    );
    report_line("overwrite", &out["overwrite"]);
    println!("  stats: {:?}", db.stats());
    db.close().await.map_err(|e| e.to_string())?;
    drop(db);
    let _ = std::fs::remove_dir_all(&base);
    Ok(out)
}

/// Puts `args.num` keys (numbers from `next_key`) without sync, timing each put.
async fn fill(
    db: &Db<DmaFs>,
    args: &EngineArgs,
    vg: &mut ValueGen,
    mut next_key: impl FnMut() -> u64,
) -> Result<Measured, String> {
    let unsynced = WriteOptions::default();
    let mut kbuf = Vec::new();
    let mut h = hist();
    let t = Instant::now();
    for _ in 0..args.num {
        key(next_key(), args.key_size, &mut kbuf);
        let v = vg.next(args.value_size);
        let t0 = Instant::now();
        db.put(&kbuf, v, &unsynced)
            .await
            .map_err(|e| e.to_string())?;
        let _ = h.record(t0.elapsed().as_nanos() as u64);
    }
    Ok(Measured::from_hist(args.num, t.elapsed().as_secs_f64(), &h))
}

fn report_line(name: &str, m: &Measured) {
    println!(
        "{name:<12} {:>10.0} ops/s  p50 {:>8.2} us  p99 {:>8.2} us  p99.9 {:>8.2} us",
        m.ops_per_s, m.p50_us, m.p99_us, m.p999_us
    );
}

fn run_db_bench(args: &EngineArgs, reads: u64) -> Result<BTreeMap<String, Measured>, String> {
    let base = args.dir.join("rocksdb");
    let common = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            format!("--num={}", args.num),
            format!("--reads={reads}"),
            format!("--key_size={}", args.key_size),
            format!("--value_size={}", args.value_size),
            "--histogram=1".into(),
            "--compression_type=lz4".into(),
            "--bloom_bits=10".into(),
            format!("--cache_size={}", args.cache_bytes),
            "--write_buffer_size=67108864".into(),
            "--max_write_buffer_number=3".into(),
            "--use_direct_reads=1".into(),
            "--use_direct_io_for_flush_and_compaction=1".into(),
            format!("--seed={}", args.seed),
        ];
        v.extend_from_slice(extra);
        v
    };
    let mut out = BTreeMap::new();
    let d1 = base.join("seq");
    fresh_dir(&d1)?;
    let r = dbbench::run(args.cpu, &d1, &common(&["--benchmarks=fillseq".into()]))?;
    out.extend(r);
    let _ = std::fs::remove_dir_all(&d1);

    let d2 = base.join("random");
    fresh_dir(&d2)?;
    let r = dbbench::run(
        args.cpu,
        &d2,
        &common(&["--benchmarks=fillrandom,readseq,readrandom,seekrandom".into()]),
    )?;
    out.extend(r);
    let per = args.sync_writes / args.sync_writers.max(1);
    let r = dbbench::run(
        args.cpu,
        &d2,
        &common(&[
            "--benchmarks=overwrite".into(),
            "--use_existing_db=1".into(),
            "--sync=1".into(),
            format!("--threads={}", args.sync_writers),
            format!("--writes={per}"),
        ]),
    )?;
    out.extend(r);
    for name in NAMES {
        if let Some(m) = out.get(name) {
            report_line(name, m);
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(out)
}
