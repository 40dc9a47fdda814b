//! The `engine` suite: NextDB's storage engine and RocksDB's db_bench, same workloads,
//! same options, both pinned to one CPU (per-core numbers), in one invocation.
//!
//! Both sides follow one [`Step`] plan computed from `--benchmarks`, with db_bench's
//! rules: a fill starts from an empty database, every other benchmark runs on the
//! database the previous ones left. db_bench needs a new process whenever its flags
//! change (the synced, multi-threaded `overwrite`), which reopens the database and
//! empties its block cache; NextDB closes and reopens its database at the same points.
//! Before the first read after writes or a reopen, both sides settle (flush the
//! memtable, wait for compactions) and warm the block cache with a full scan, all
//! unmeasured: reads are measured on SSTables behind a hot block cache, the same state
//! on both sides.

use crate::dbbench;
use crate::report::{self, Measured, Row};
use crate::workload::{Rng, ValueGen, key};
use hdrhistogram::Histogram;
use nextdb_engine::EngineConfig;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::glommio_fs::DmaFs;
use nextdb_engine::iter::ReadOptions;
use serde_json::json;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// The benchmarks run by default, in db_bench's order of execution.
pub const DEFAULT_BENCHMARKS: &str = "fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom";

#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Keys in the key space and puts per fill (db_bench --num).
    #[arg(long, default_value_t = 2_000_000)]
    pub num: u64,
    /// Comma-separated benchmarks, run in this order (db_bench --benchmarks): fillseq,
    /// fillrandom, overwrite, readrandom, readseq, seekrandom.
    #[arg(long, default_value = DEFAULT_BENCHMARKS)]
    pub benchmarks: String,
    /// Operations of readrandom, seekrandom and readseq (db_bench --reads); default --num.
    #[arg(long)]
    pub reads: Option<u64>,
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Synced puts of `overwrite` in total, spread over --sync-writers concurrent
    /// writers; default --num / 32 (fsync-bound, so far fewer than the fills).
    #[arg(long)]
    pub sync_writes: Option<u64>,
    /// Concurrent writers of `overwrite` (db_bench --threads; NextDB tasks).
    #[arg(long, default_value_t = 16)]
    pub sync_writers: u64,
    /// Block cache bytes on both sides (large enough that reads run on a hot cache).
    #[arg(long, default_value_t = 1 << 30)]
    pub cache_bytes: usize,
    /// Skip the unmeasured flush, compaction wait and full scan before reads (reads then
    /// run on whatever memtable, L0 and cache state the writes left).
    #[arg(long)]
    pub no_warmup: bool,
    /// Data directory: a file system with O_DIRECT (ext4, xfs; not tmpfs or /dev/shm).
    #[arg(long, default_value = "target/perf/engine-data")]
    pub dir: PathBuf,
    #[arg(long, default_value = "target/perf/engine.json")]
    pub out: PathBuf,
    /// CPU both engines are pinned to.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// Seed base of key choices and values (db_bench --seed, plus 1000 for each further
    /// db_bench process; 0 would make db_bench seed from the clock).
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
    /// Run only NextDB (debugging).
    #[arg(long, conflicts_with = "peer_only")]
    pub nextdb_only: bool,
    /// Run only db_bench (debugging).
    #[arg(long)]
    pub peer_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadRandom,
    ReadSeq,
    SeekRandom,
}

impl Bench {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "fillseq" => Bench::FillSeq,
            "fillrandom" => Bench::FillRandom,
            "overwrite" => Bench::Overwrite,
            "readrandom" => Bench::ReadRandom,
            "readseq" => Bench::ReadSeq,
            "seekrandom" => Bench::SeekRandom,
            other => {
                return Err(format!(
                    "unknown benchmark {other:?}; known: {DEFAULT_BENCHMARKS}"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Bench::FillSeq => "fillseq",
            Bench::FillRandom => "fillrandom",
            Bench::Overwrite => "overwrite",
            Bench::ReadRandom => "readrandom",
            Bench::ReadSeq => "readseq",
            Bench::SeekRandom => "seekrandom",
        }
    }

    /// Starts from an empty database.
    fn is_fill(self) -> bool {
        matches!(self, Bench::FillSeq | Bench::FillRandom)
    }

    fn is_write(self) -> bool {
        matches!(self, Bench::FillSeq | Bench::FillRandom | Bench::Overwrite)
    }

    /// Every put waits for its fsync, with several concurrent writers.
    fn synced(self) -> bool {
        self == Bench::Overwrite
    }
}

/// One benchmark of the plan both sides follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub bench: Bench,
    /// db_bench starts a new process here; NextDB closes and reopens its database
    /// (a fill starts a fresh one either way).
    pub new_process: bool,
    /// Settle and scan everything, unmeasured, before this benchmark.
    pub warmup: bool,
}

/// Orders the benchmarks into steps (see the module comment).
pub fn plan(benches: &[Bench], warmup: bool) -> Result<Vec<Step>, String> {
    let mut steps = Vec::with_capacity(benches.len());
    let mut have_db = false;
    // (synced, started on an existing database) of the current db_bench process.
    let mut process: Option<(bool, bool)> = None;
    // The block cache may miss: data was written or the database reopened.
    let mut cold = true;
    for &b in benches {
        if !b.is_fill() && !have_db {
            return Err(format!(
                "{} needs a database: put fillseq or fillrandom before it",
                b.name()
            ));
        }
        let new_process = match process {
            None => true,
            Some((synced, existing)) => synced != b.synced() || (b.is_fill() && existing),
        };
        if new_process {
            process = Some((b.synced(), !b.is_fill()));
            cold = true;
        }
        let w = warmup && !b.is_write() && cold;
        if !b.is_write() {
            cold = false;
        }
        if b.is_write() {
            cold = true;
        }
        have_db |= b.is_fill();
        steps.push(Step {
            bench: b,
            new_process,
            warmup: w,
        });
    }
    if steps.is_empty() {
        return Err("no benchmarks given".into());
    }
    Ok(steps)
}

/// The arguments after validation.
struct Setup {
    args: EngineArgs,
    reads: u64,
    /// Synced puts per writer of `overwrite`.
    sync_per_writer: u64,
    steps: Vec<Step>,
}

impl Setup {
    fn sync_total(&self) -> u64 {
        self.sync_per_writer * self.args.sync_writers
    }
}

fn setup(args: EngineArgs) -> Result<Setup, String> {
    if args.num == 0 {
        return Err("--num must be at least 1".into());
    }
    if !(8..=1024).contains(&args.key_size) {
        return Err("--key-size must be 8..=1024 (db_bench's key number takes 8 bytes)".into());
    }
    if args.value_size == 0 || args.value_size > 1 << 20 {
        return Err("--value-size must be 1..=1048576".into());
    }
    if args.sync_writers == 0 {
        return Err("--sync-writers must be at least 1".into());
    }
    if args.seed == 0 {
        return Err("--seed must not be 0 (db_bench would seed from the clock)".into());
    }
    let benches = args
        .benchmarks
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Bench::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let steps = plan(&benches, !args.no_warmup)?;
    let reads = args.reads.unwrap_or(args.num);
    let total = args.sync_writes.unwrap_or(args.num / 32);
    let sync_per_writer = (total / args.sync_writers).max(1);
    Ok(Setup {
        args,
        reads,
        sync_per_writer,
        steps,
    })
}

pub fn run(args: EngineArgs) -> Result<(), String> {
    let s = setup(args)?;
    let args = &s.args;
    let mut nextdb = Vec::new();
    let mut peer = Vec::new();
    let mut peer_name = "rocksdb db_bench".to_string();
    let mut peer_commands = Vec::new();
    let mut assertions = false;
    if !args.peer_only {
        println!("== NextDB engine (pinned to CPU {})", args.cpu);
        nextdb = run_nextdb(&s)?;
    }
    if !args.nextdb_only {
        println!("== RocksDB db_bench (pinned to CPU {})", args.cpu);
        let r = run_db_bench(&s)?;
        peer = r.results;
        peer_commands = r.commands;
        assertions = r.assertions_enabled;
        peer_name = format!(
            "rocksdb db_bench {}",
            r.version.as_deref().unwrap_or("(unknown version)")
        );
    }
    let rows: Vec<Row> = s
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| Row {
            name: st.bench.name().to_string(),
            nextdb: nextdb.get(i).cloned(),
            peer: peer.get(i).cloned(),
        })
        .collect();
    let cfg = engine_config(args);
    let config = json!({
        "num": args.num,
        "reads": s.reads,
        "benchmarks": s.steps.iter().map(|st| st.bench.name()).collect::<Vec<_>>(),
        "key_size": args.key_size,
        "value_size": args.value_size,
        "compression_ratio": 0.5,
        "seed": args.seed,
        "cpu_pinned": args.cpu,
        "per_core": "NextDB: one glommio executor fixed to cpu_pinned, flush and compaction in a \
            low-share task queue of the same executor; db_bench: taskset to cpu_pinned, so its \
            foreground and background threads share that one CPU",
        "block_cache_bytes": args.cache_bytes,
        "memtable_bytes": cfg.memtable_bytes,
        "max_write_buffers": cfg.max_immutable_memtables + 1,
        "l0_triggers": [cfg.l0_compaction_trigger, cfg.l0_slowdown_trigger, cfg.l0_stop_trigger],
        "level1_bytes": cfg.level1_bytes,
        "level_multiplier": cfg.level_multiplier,
        "target_file_bytes": cfg.target_file_bytes,
        "block_bytes": nextdb_engine::config::DATA_BLOCK_BYTES,
        "bloom_bits_per_key": nextdb_engine::config::BLOOM_BITS_PER_KEY,
        "compression": format!("lz4 on both sides (NextDB uses zstd from level {}; data this size stays above it)", cfg.zstd_from_level),
        "direct_io": "NextDB: O_DIRECT for every file; db_bench: --use_direct_reads=1 \
            --use_direct_io_for_flush_and_compaction=1 (its WAL stays buffered)",
        "unsynced_writes": format!(
            "fillseq, fillrandom: sync=false on both sides. NextDB appends each put to an \
             in-memory log buffer that is written out (no fsync) once it holds {} bytes and \
             fsynced by the next group commit or close: a process crash may lose up to that \
             much acknowledged data. RocksDB (--sync=0) write()s each put's WAL record to the \
             OS page cache: it survives a process crash, not a power loss.",
            cfg.log_buffer_bytes
        ),
        "synced_writes": format!(
            "overwrite: {} writers x {} puts, each put waits until the log holding it is \
             fdatasynced; concurrent writers share one write + fdatasync (group commit) on \
             both sides. NextDB: {} tasks on the one executor; db_bench: --sync=1 --threads={} \
             --writes={}. Keys uniform over 0..num.",
            args.sync_writers, s.sync_per_writer, args.sync_writers, args.sync_writers,
            s.sync_per_writer
        ),
        "sync_writes": s.sync_total(),
        "sync_writers": args.sync_writers,
        "reads_on": if args.no_warmup {
            "the database as the earlier benchmarks left it, block cache as it is (cold after a reopen)"
        } else {
            "SSTables behind a hot block cache: before the first read after writes or a reopen, \
             both sides flush the memtable, wait for compactions and scan everything \
             (unmeasured; db_bench: flush, waitforcompaction, readtocache)"
        },
        "readrandom_keys": "uniform over 0..num as in db_bench, so only keys the fills happened \
            to write are found (see found)",
        "seekrandom": "a new iterator per seek, seek, compare the key (db_bench --seek_nexts=0)",
        "peer_assertions_enabled": assertions,
        "peer_commands": peer_commands,
        "nextdb_engine_config": format!("{cfg:?}"),
    });
    report::write("engine", &peer_name, config, &rows, &args.out)
}

fn fresh_dir(p: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", p.display())),
    }
    std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn hist() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant histogram bounds are valid")
}

/// NextDB's configuration: its defaults (which equal RocksDB's for everything both
/// have) with the benchmark's block cache.
fn engine_config(args: &EngineArgs) -> EngineConfig {
    EngineConfig {
        block_cache_bytes: args.cache_bytes,
        ..EngineConfig::default()
    }
}

fn report_line(name: &str, m: &Measured) {
    let found = m
        .found
        .zip(m.ops)
        .map(|(f, n)| format!("  ({f} of {n} found)"))
        .unwrap_or_default();
    println!(
        "{name:<12} {:>10.0} ops/s  p50 {:>8.2} us  p99 {:>8.2} us  p99.9 {:>8.2} us{found}",
        m.ops_per_s, m.p50_us, m.p99_us, m.p999_us
    );
}

// ----- NextDB -----

fn run_nextdb(s: &Setup) -> Result<Vec<Measured>, String> {
    if let Err(e) = nextdb_engine::fs::glommio_fs::raise_memlock_limit() {
        eprintln!("warning: {e}");
    }
    let args = s.args.clone();
    let steps = s.steps.clone();
    let (reads, per) = (s.reads, s.sync_per_writer);
    let handle = nextdb_engine::runtime::executor_builder(glommio::Placement::Fixed(args.cpu))
        .name("nextdb-bench")
        .spawn(move || async move { nextdb_suite(args, steps, reads, per).await })
        .map_err(|e| format!("cannot start executor: {e}"))?;
    handle.join().map_err(|e| format!("executor failed: {e}"))?
}

async fn open(dir: &Path, args: &EngineArgs) -> Result<Rc<Db<DmaFs>>, String> {
    let db = Db::open(DmaFs::new(), dir, engine_config(args))
        .await
        .map_err(|e| format!("open {}: {e}", dir.display()))?;
    // Flush and compaction run beside the benchmark in a queue with fewer shares.
    nextdb_engine::runtime::spawn_background(&db).map_err(|e| e.to_string())?;
    Ok(db)
}

async fn close(db: Option<Rc<Db<DmaFs>>>) -> Result<(), String> {
    if let Some(db) = db {
        db.close().await.map_err(|e| format!("close: {e}"))?;
    }
    Ok(())
}

fn err(e: nextdb_engine::Error) -> String {
    e.to_string()
}

async fn nextdb_suite(
    args: EngineArgs,
    steps: Vec<Step>,
    reads: u64,
    sync_per_writer: u64,
) -> Result<Vec<Measured>, String> {
    let dir = args.dir.join("nextdb");
    let mut out = Vec::new();
    let mut db: Option<Rc<Db<DmaFs>>> = None;
    let mut kbuf = Vec::new();
    let unsynced = WriteOptions::default();
    let (num, ks, vs) = (args.num, args.key_size, args.value_size);
    for (i, step) in steps.iter().enumerate() {
        // Every benchmark draws its own keys and values, as db_bench's threads do.
        let seed = args.seed.wrapping_add(1000 * i as u64);
        if step.bench.is_fill() {
            close(db.take()).await?;
            fresh_dir(&dir)?;
            db = Some(open(&dir, &args).await?);
        } else if step.new_process {
            close(db.take()).await?;
            db = Some(open(&dir, &args).await?);
        }
        let Some(d) = db.clone() else {
            return Err(format!("{}: no database", step.bench.name()));
        };
        if step.warmup {
            let t = Instant::now();
            d.flush().await.map_err(err)?;
            d.wait_for_compactions().await.map_err(err)?;
            let mut it = d.iter(ReadOptions::default()).await.map_err(err)?;
            it.seek_to_first().await.map_err(err)?;
            let mut n = 0u64;
            while it.valid() {
                black_box((it.key().len(), it.value().len()));
                n += 1;
                it.next().await.map_err(err)?;
            }
            println!(
                "  (warm-up: settled and scanned {n} entries in {:.2} s)",
                t.elapsed().as_secs_f64()
            );
        }
        let mut rng = Rng::new(seed);
        let mut h = hist();
        let m = match step.bench {
            Bench::FillSeq | Bench::FillRandom => {
                let mut vg = ValueGen::new(seed, vs);
                let t = Instant::now();
                for n in 0..num {
                    let k = if step.bench == Bench::FillSeq {
                        n
                    } else {
                        rng.below(num)
                    };
                    key(k, ks, &mut kbuf);
                    let v = vg.next(vs);
                    let t0 = Instant::now();
                    d.put(&kbuf, v, &unsynced).await.map_err(err)?;
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                }
                Measured::from_hist(num, t.elapsed().as_secs_f64(), &h)
            }
            Bench::Overwrite => {
                let t = Instant::now();
                let mut tasks = Vec::new();
                for w in 0..args.sync_writers {
                    let d = d.clone();
                    let seed = seed.wrapping_add(w + 1);
                    tasks.push(glommio::spawn_local(async move {
                        let mut h = hist();
                        let mut rng = Rng::new(seed);
                        let mut vg = ValueGen::new(seed, vs);
                        let mut kbuf = Vec::new();
                        let sync = WriteOptions {
                            sync: true,
                            ttl_ms: None,
                        };
                        for _ in 0..sync_per_writer {
                            key(rng.below(num), ks, &mut kbuf);
                            let v = vg.next(vs);
                            let t0 = Instant::now();
                            d.put(&kbuf, v, &sync).await.map_err(err)?;
                            h.saturating_record(t0.elapsed().as_nanos() as u64);
                        }
                        Ok::<_, String>(h)
                    }));
                }
                // Watchdog: if the phase takes far longer than it should, say where
                // it is stuck.
                let watch = {
                    let d = d.clone();
                    glommio::spawn_local(async move {
                        loop {
                            glommio::timer::sleep(std::time::Duration::from_secs(30)).await;
                            eprintln!(
                                "overwrite still running after 30 s more:\n{}",
                                d.debug_state()
                            );
                        }
                    })
                };
                for task in tasks {
                    let part = task.await?;
                    h.add(&part)
                        .map_err(|e| format!("merging histograms: {e}"))?;
                }
                drop(watch);
                let total = sync_per_writer * args.sync_writers;
                Measured::from_hist(total, t.elapsed().as_secs_f64(), &h)
            }
            Bench::ReadRandom => {
                let mut found = 0u64;
                let t = Instant::now();
                for _ in 0..reads {
                    key(rng.below(num), ks, &mut kbuf);
                    let t0 = Instant::now();
                    if let Some(v) = d.get(&kbuf).await.map_err(err)? {
                        black_box(v);
                        found += 1;
                    }
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                }
                let mut m = Measured::from_hist(reads, t.elapsed().as_secs_f64(), &h);
                m.found = Some(found);
                m
            }
            Bench::ReadSeq => {
                // As db_bench: one iterator from the first key, at most --reads entries.
                let t = Instant::now();
                let mut it = d.iter(ReadOptions::default()).await.map_err(err)?;
                it.seek_to_first().await.map_err(err)?;
                let mut n = 0u64;
                while n < reads && it.valid() {
                    let t0 = Instant::now();
                    black_box((it.key().len(), it.value().len()));
                    it.next().await.map_err(err)?;
                    n += 1;
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                }
                drop(it);
                Measured::from_hist(n, t.elapsed().as_secs_f64(), &h)
            }
            Bench::SeekRandom => {
                // As db_bench without tailing iterators: a new iterator per seek.
                let mut found = 0u64;
                let t = Instant::now();
                for _ in 0..reads {
                    key(rng.below(num), ks, &mut kbuf);
                    let t0 = Instant::now();
                    let mut it = d.iter(ReadOptions::default()).await.map_err(err)?;
                    it.seek(&kbuf).await.map_err(err)?;
                    if it.valid() && it.key() == kbuf.as_slice() {
                        found += 1;
                    }
                    drop(it);
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                }
                let mut m = Measured::from_hist(reads, t.elapsed().as_secs_f64(), &h);
                m.found = Some(found);
                m
            }
        };
        report_line(step.bench.name(), &m);
        out.push(m);
    }
    if let Some(d) = &db {
        println!("  engine stats at the end: {:?}", d.stats());
    }
    close(db).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

// ----- RocksDB db_bench -----

struct PeerRun {
    /// One result per step, in plan order.
    results: Vec<Measured>,
    version: Option<String>,
    assertions_enabled: bool,
    /// The db_bench command lines, for the record.
    commands: Vec<String>,
}

/// db_bench flags shared by every process: the same data and the same options as
/// NextDB's configuration.
fn db_bench_common(s: &Setup) -> Vec<String> {
    let a = &s.args;
    let cfg = engine_config(a);
    vec![
        format!("--num={}", a.num),
        format!("--reads={}", s.reads),
        format!("--key_size={}", a.key_size),
        format!("--value_size={}", a.value_size),
        "--compression_ratio=0.5".into(),
        "--histogram=1".into(),
        "--compression_type=lz4".into(),
        format!("--bloom_bits={}", nextdb_engine::config::BLOOM_BITS_PER_KEY),
        format!("--block_size={}", nextdb_engine::config::DATA_BLOCK_BYTES),
        format!("--cache_size={}", a.cache_bytes),
        format!("--write_buffer_size={}", cfg.memtable_bytes),
        format!(
            "--max_write_buffer_number={}",
            cfg.max_immutable_memtables + 1
        ),
        format!(
            "--level0_file_num_compaction_trigger={}",
            cfg.l0_compaction_trigger
        ),
        format!(
            "--level0_slowdown_writes_trigger={}",
            cfg.l0_slowdown_trigger
        ),
        format!("--level0_stop_writes_trigger={}", cfg.l0_stop_trigger),
        format!("--max_bytes_for_level_base={}", cfg.level1_bytes),
        format!("--max_bytes_for_level_multiplier={}", cfg.level_multiplier),
        format!("--target_file_size_base={}", cfg.target_file_bytes),
        "--use_direct_reads=1".into(),
        "--use_direct_io_for_flush_and_compaction=1".into(),
        "--seek_nexts=0".into(),
    ]
}

fn run_db_bench(s: &Setup) -> Result<PeerRun, String> {
    let a = &s.args;
    let dir = a.dir.join("rocksdb");
    fresh_dir(&dir)?;
    let mut run = PeerRun {
        results: Vec::new(),
        version: None,
        assertions_enabled: false,
        commands: Vec::new(),
    };
    // Split the plan into processes.
    let mut groups: Vec<&[Step]> = Vec::new();
    let mut start = 0;
    for i in 1..=s.steps.len() {
        if i == s.steps.len() || s.steps[i].new_process {
            groups.push(&s.steps[start..i]);
            start = i;
        }
    }
    for (g, group) in groups.into_iter().enumerate() {
        let first = group[0].bench;
        let mut list = Vec::new();
        // Names db_bench reports, in order; `None` for the warm-up's report.
        let mut expect: Vec<Option<&str>> = Vec::new();
        for st in group {
            if st.warmup {
                list.push("flush");
                list.push("waitforcompaction");
                list.push("readtocache");
                expect.push(None);
            }
            list.push(st.bench.name());
            expect.push(Some(st.bench.name()));
        }
        let mut args = db_bench_common(s);
        // db_bench seeds the n-th benchmark thread of a process with seed + n: without
        // a new base per process, readrandom in a later process would replay
        // fillrandom's keys and find every one of them.
        args.push(format!("--seed={}", a.seed.wrapping_add(1000 * g as u64)));
        args.push(format!("--benchmarks={}", list.join(",")));
        args.push(format!("--use_existing_db={}", u8::from(!first.is_fill())));
        if first.synced() {
            args.push("--sync=1".into());
            args.push(format!("--threads={}", a.sync_writers));
            args.push(format!("--writes={}", s.sync_per_writer));
        } else {
            args.push("--sync=0".into());
            args.push("--threads=1".into());
        }
        run.commands.push(format!(
            "taskset -c {} db_bench --db={} {}",
            a.cpu,
            dir.display(),
            args.join(" ")
        ));
        let out = dbbench::run(a.cpu, &dir, &args)?;
        run.version = run.version.or(out.version);
        run.assertions_enabled |= out.assertions_enabled;
        if out.reports.len() != expect.len() {
            return Err(format!(
                "db_bench reported {} benchmarks, expected {} ({})",
                out.reports.len(),
                expect.len(),
                list.join(",")
            ));
        }
        for (r, e) in out.reports.into_iter().zip(expect) {
            match e {
                None if r.name == "readtocache" => {
                    println!("  (warm-up: readtocache {:.0} ops/s)", r.measured.ops_per_s)
                }
                Some(name) if r.name == name => {
                    report_line(name, &r.measured);
                    run.results.push(r.measured);
                }
                _ => {
                    return Err(format!(
                        "db_bench reported {:?} where {} was expected",
                        r.name,
                        e.unwrap_or("readtocache")
                    ));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn benches(s: &str) -> Vec<Bench> {
        s.split(',').map(|b| Bench::parse(b).unwrap()).collect()
    }

    fn step(bench: Bench, new_process: bool, warmup: bool) -> Step {
        Step {
            bench,
            new_process,
            warmup,
        }
    }

    #[test]
    fn default_plan() {
        use Bench::*;
        let p = plan(&benches(DEFAULT_BENCHMARKS), true).unwrap();
        assert_eq!(
            p,
            vec![
                step(FillSeq, true, false),
                step(FillRandom, false, false),
                // Different flags: a new db_bench process, NextDB reopens.
                step(Overwrite, true, false),
                step(ReadRandom, true, true),
                step(ReadSeq, false, false),
                step(SeekRandom, false, false),
            ]
        );
        let p = plan(&benches("fillrandom,readrandom,fillseq,readseq"), true).unwrap();
        assert_eq!(
            p,
            vec![
                step(FillRandom, true, false),
                step(ReadRandom, false, true),
                step(FillSeq, false, false),
                step(ReadSeq, false, true),
            ]
        );
        let p = plan(&benches("fillseq,overwrite,fillseq"), false).unwrap();
        assert_eq!(
            p.iter().map(|s| s.new_process).collect::<Vec<_>>(),
            [true, true, true]
        );
        assert!(p.iter().all(|s| !s.warmup));
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(plan(&benches("readrandom,fillseq"), true).is_err());
        assert!(plan(&[], true).is_err());
        assert!(Bench::parse("readwhilewriting").is_err());
        let args = |b: &str| EngineArgs {
            num: 10,
            benchmarks: b.into(),
            reads: None,
            key_size: 16,
            value_size: 100,
            sync_writes: None,
            sync_writers: 16,
            cache_bytes: 1 << 20,
            no_warmup: false,
            dir: "x".into(),
            out: "x.json".into(),
            cpu: 0,
            seed: 1,
            nextdb_only: false,
            peer_only: false,
        };
        assert!(setup(args("fillseq,nope")).is_err());
        let s = setup(args("fillseq,readseq")).unwrap();
        assert_eq!((s.reads, s.sync_per_writer), (10, 1));
        assert!(
            setup(EngineArgs {
                key_size: 4,
                ..args("fillseq")
            })
            .is_err()
        );
    }
}
