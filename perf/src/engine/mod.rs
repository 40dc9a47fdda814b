//! The `engine` suite: NextDB's storage engine against RocksDB, same workloads, same
//! options, one CPU for everything (a cgroup cpuset holding only `--cpu`: the engine,
//! its io_uring workers, RocksDB's background threads and db_bench all share it).
//!
//! Peers: the `rocksdb` crate (bundled librocksdb, release, NDEBUG) driven by the same
//! Rust workload loop and timing as NextDB ([`workload`]), and Debian's `db_bench`
//! (assertions on) with its own loop and timing. The crate's side lives in the
//! `nextdb-perf-rocksdb` binary (`perf/rocksdb-peer`, outside the workspace, so tests
//! and lints never compile librocksdb) and reaches this module as a [`CratePeer`].
//!
//! Every side follows one [`Step`] plan computed from `--benchmarks`, with db_bench's
//! rules: a fill starts from an empty database, every other benchmark runs on the
//! database the previous ones left. db_bench needs a new process whenever its flags
//! change (the synced, multi-threaded `overwrite`), which reopens the database and
//! empties its block cache; the embedded engines close and reopen at the same points.
//! Before the first read after writes or a reopen, every side settles (flush the
//! memtable, wait for compactions) and warms the block cache with a full scan, all
//! unmeasured. The whole plan runs `--repeats` times, sides alternating (A/B/C, A/B/C,
//! ...); the report gives medians and spreads.

mod config;
mod db_bench;
pub mod nextdb;
pub mod workload;

use crate::report::{self, Measured, Row, Side};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The benchmarks run by default, in db_bench's order of execution.
pub const DEFAULT_BENCHMARKS: &str = "fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom";
/// `--num` of the reference configuration and of `--quick`.
pub const DEFAULT_NUM: u64 = 2_000_000;
pub const QUICK_NUM: u64 = 100_000;

#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Keys in the key space and puts per fill (db_bench --num); default 2,000,000
    /// (100,000 with --quick).
    #[arg(long)]
    pub num: Option<u64>,
    /// A short run that shows the suite works (100,000 keys), not final figures.
    #[arg(long)]
    pub quick: bool,
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
    /// Concurrent writers of `overwrite` (db_bench --threads; NextDB tasks; crate threads).
    #[arg(long, default_value_t = 16)]
    pub sync_writers: u64,
    /// Block cache bytes on every side (large enough that reads run on a hot cache).
    #[arg(long, default_value_t = 1 << 30)]
    pub cache_bytes: usize,
    /// Skip the unmeasured flush, compaction wait and full scan before reads.
    #[arg(long)]
    pub no_warmup: bool,
    /// Times the whole plan runs on every side, sides alternating (at least 1).
    #[arg(long, default_value_t = 3)]
    pub repeats: u64,
    /// Data directory: a file system with O_DIRECT (ext4, xfs; not tmpfs or /dev/shm).
    #[arg(long, default_value = "target/perf/engine-data")]
    pub dir: PathBuf,
    #[arg(long, default_value = "target/perf/engine.json")]
    pub out: PathBuf,
    /// The one CPU of every side (the suite's cpuset).
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// No cpuset: only NextDB's executor is pinned (debugging; not a fair comparison).
    #[arg(long)]
    pub no_pin: bool,
    /// Seed base of key choices and values (db_bench --seed, plus 1000 for each further
    /// db_bench process; 0 would make db_bench seed from the clock).
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
    /// Run only NextDB (debugging).
    #[arg(long, conflicts_with = "peer_only")]
    pub nextdb_only: bool,
    /// Run only the peers (debugging).
    #[arg(long)]
    pub peer_only: bool,
    /// Leave out db_bench.
    #[arg(long)]
    pub no_db_bench: bool,
    /// Run without the RocksDB crate (then db_bench is the main peer); needed when
    /// this binary was built without it (`nextdb-perf` rather than `nextdb-perf-rocksdb`).
    #[arg(long)]
    pub no_rocksdb_crate: bool,
}

/// The RocksDB crate's side, handed in by `nextdb-perf-rocksdb`.
pub struct CratePeer {
    /// `rocksdb-crate VERSION (RocksDB X.Y.Z, NDEBUG)`.
    pub name: String,
    /// Runs the plan once (repeat `rep`) in this process.
    pub run: fn(&Setup, u64) -> Result<Vec<Measured>, String>,
    /// What an unsynced write promises on this side.
    pub unsynced: String,
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

    /// What the row measures, for the JSON and the HTML report.
    pub fn meaning(self) -> &'static str {
        match self {
            Bench::FillSeq => "num unsynced puts of keys in order into an empty database",
            Bench::FillRandom => {
                "num unsynced puts of uniform keys (with repetition) into an empty database"
            }
            Bench::Overwrite => {
                "synced puts of uniform keys from concurrent writers (group commit)"
            }
            Bench::ReadRandom => {
                "point reads of uniform keys on a settled database behind a hot cache"
            }
            Bench::ReadSeq => "one iterator from the first key over reads entries",
            Bench::SeekRandom => "a new iterator per seek to a uniform key",
        }
    }

    /// Starts from an empty database.
    pub(crate) fn is_fill(self) -> bool {
        matches!(self, Bench::FillSeq | Bench::FillRandom)
    }

    pub(crate) fn is_write(self) -> bool {
        matches!(self, Bench::FillSeq | Bench::FillRandom | Bench::Overwrite)
    }

    /// Every put waits for its fsync, with several concurrent writers.
    pub(crate) fn synced(self) -> bool {
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
#[derive(Debug, Clone)]
pub struct Setup {
    pub args: EngineArgs,
    pub num: u64,
    pub reads: u64,
    /// Synced puts per writer of `overwrite`.
    pub sync_per_writer: u64,
    pub steps: Vec<Step>,
}

impl Setup {
    pub fn sync_total(&self) -> u64 {
        self.sync_per_writer * self.args.sync_writers
    }
}

fn check_args(args: &EngineArgs) -> Result<(), String> {
    if args.num == Some(0) {
        return Err("--num must be at least 1".into());
    }
    if !(8..=1024).contains(&args.key_size) {
        return Err("--key-size must be 8..=1024 (db_bench's key number takes 8 bytes)".into());
    }
    if args.value_size == 0 || args.value_size > 1 << 20 {
        return Err("--value-size must be 1..=1048576".into());
    }
    if args.sync_writers == 0 || args.repeats == 0 {
        return Err("--sync-writers and --repeats must be at least 1".into());
    }
    if args.seed == 0 {
        return Err("--seed must not be 0 (db_bench would seed from the clock)".into());
    }
    Ok(())
}

pub fn setup(mut args: EngineArgs) -> Result<Setup, String> {
    check_args(&args)?;
    let benches = args
        .benchmarks
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Bench::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let steps = plan(&benches, !args.no_warmup)?;
    let num = args
        .num
        .unwrap_or(if args.quick { QUICK_NUM } else { DEFAULT_NUM });
    args.num = Some(num);
    let reads = args.reads.unwrap_or(num);
    let total = args.sync_writes.unwrap_or(num / 32);
    let sync_per_writer = (total / args.sync_writers).max(1);
    Ok(Setup {
        args,
        num,
        reads,
        sync_per_writer,
        steps,
    })
}

pub(crate) fn report_line(name: &str, m: &Measured) {
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

/// The repeated runs of every side, one list of steps per repeat.
struct Runs {
    nextdb: Side,
    krate: Option<Side>,
    db_bench: Option<Side>,
    db_bench_commands: Vec<String>,
}

/// Moves this process (and so every engine thread, io_uring worker and db_bench child)
/// into a cpuset holding only `--cpu`.
fn confine(s: &Setup) -> Result<Option<crate::cpu::Cpusets>, String> {
    if s.args.no_pin {
        return Ok(None);
    }
    let sets = crate::cpu::Cpusets::new()?;
    let set = sets.set("engine", &[s.args.cpu])?;
    sets.enter(&set)?;
    println!(
        "every side runs in a {} holding CPU {}",
        sets.describe(),
        set.cpus()
    );
    Ok(Some(sets))
}

fn run_repeats(s: &Setup, krate: Option<&CratePeer>) -> Result<Runs, String> {
    let a = &s.args;
    let mut runs = Runs {
        nextdb: Side::new("nextdb", json!({"source": "nextdb-perf workload loop"})),
        krate: krate.map(|k| {
            Side::new(
                &k.name,
                json!({"assertions": false,
            "source": "nextdb-perf workload loop (the same code and timing as nextdb)"}),
            )
        }),
        db_bench: None,
        db_bench_commands: Vec::new(),
    };
    for rep in 0..a.repeats {
        if !a.peer_only {
            println!("== NextDB engine, repeat {}/{}", rep + 1, a.repeats);
            runs.nextdb.runs.extend(nextdb::run(s, rep)?);
        }
        if a.nextdb_only {
            continue;
        }
        if let (Some(k), Some(side)) = (krate, runs.krate.as_mut()) {
            println!("== {}, repeat {}/{}", k.name, rep + 1, a.repeats);
            side.runs.extend((k.run)(s, rep)?);
        }
        if !a.no_db_bench {
            println!("== RocksDB db_bench, repeat {}/{}", rep + 1, a.repeats);
            let r = db_bench::run(s, rep)?;
            let side = runs.db_bench.get_or_insert_with(|| {
                let name = format!("rocksdb db_bench {}", r.version.as_deref().unwrap_or("?"));
                Side::new(
                    name,
                    json!({"source": "db_bench's own loop and histogram (1 us buckets)"}),
                )
            });
            side.extra["assertions"] = json!(r.assertions_enabled);
            side.runs.extend(r.results);
            runs.db_bench_commands = r.commands;
        }
    }
    Ok(runs)
}

/// Step `i`'s runs of a side that ran the whole plan `repeats` times.
fn step_side(side: &Side, i: usize, steps: usize) -> Option<Side> {
    if side.runs.is_empty() {
        return None;
    }
    let runs = side.runs.iter().skip(i).step_by(steps).cloned().collect();
    Some(Side {
        runs,
        ..side.clone()
    })
}

fn rows(s: &Setup, runs: &Runs) -> Vec<Row> {
    let n = s.steps.len();
    s.steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let db_bench = runs.db_bench.as_ref().and_then(|d| step_side(d, i, n));
            let krate = runs.krate.as_ref().and_then(|k| step_side(k, i, n));
            let (peer, others) = match krate {
                Some(k) => (
                    Some(k),
                    db_bench
                        .map(|d| vec![("db_bench".to_string(), d)])
                        .unwrap_or_default(),
                ),
                None => (db_bench, Vec::new()),
            };
            Row {
                name: st.bench.name().to_string(),
                info: json!({"meaning": st.bench.meaning()}),
                nextdb: step_side(&runs.nextdb, i, n),
                peer,
                others,
            }
        })
        .collect()
}

/// The targets: fillrandom, readrandom, seekrandom >= 1.5x the NDEBUG peer.
fn targets(rows: &[Row], krate: bool) -> Value {
    let out: Vec<Value> = rows
        .iter()
        .filter(|r| krate && matches!(r.name.as_str(), "fillrandom" | "readrandom" | "seekrandom"))
        .map(|r| {
            let x = r.ratio().ok();
            json!({"row": r.name, "target": "ratio vs the rocksdb crate (NDEBUG) >= 1.5",
                   "value": x.map(|x| (x * 1000.0).round() / 1000.0), "met": x.is_some_and(|x| x >= 1.5)})
        })
        .collect();
    json!(out)
}

pub fn run(args: EngineArgs, krate: Option<&CratePeer>) -> Result<(), String> {
    let s = setup(args)?;
    let krate = if s.args.no_rocksdb_crate || s.args.nextdb_only {
        None
    } else {
        krate
    };
    if krate.is_none() && !s.args.no_rocksdb_crate && !s.args.nextdb_only {
        return Err(
            "this binary has no RocksDB crate peer: run `scripts/bench engine` (it builds \
                    nextdb-perf-rocksdb) or pass --no-rocksdb-crate to compare with db_bench only"
                .into(),
        );
    }
    let cpusets = confine(&s)?;
    let runs = run_repeats(&s, krate)?;
    let rows = rows(&s, &runs);
    let confinement = cpusets.as_ref().map(|c| c.describe());
    let config = config::json(&s, krate, &runs.db_bench_commands, confinement);
    let extra = json!({"targets": targets(&rows, krate.is_some())});
    drop(cpusets);
    report::write("engine", config, &rows, extra, &s.args.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn benches(s: &str) -> Vec<Bench> {
        s.split(',').map(|b| Bench::parse(b).unwrap()).collect()
    }

    pub(crate) fn args_for(benchmarks: &str, num: u64) -> EngineArgs {
        EngineArgs {
            num: Some(num),
            quick: false,
            benchmarks: benchmarks.into(),
            reads: None,
            key_size: 16,
            value_size: 100,
            sync_writes: None,
            sync_writers: 4,
            cache_bytes: 1 << 20,
            no_warmup: false,
            repeats: 3,
            dir: "x".into(),
            out: "x.json".into(),
            cpu: 0,
            no_pin: false,
            seed: 1,
            nextdb_only: false,
            peer_only: false,
            no_db_bench: false,
            no_rocksdb_crate: false,
        }
    }

    pub(crate) fn setup_for(benchmarks: &str, num: u64) -> Setup {
        setup(args_for(benchmarks, num)).unwrap()
    }

    #[test]
    fn quick_and_repeats() {
        let quick = EngineArgs {
            num: None,
            quick: true,
            ..args_for("fillseq", 1)
        };
        assert_eq!(setup(quick).unwrap().num, QUICK_NUM);
        let full = EngineArgs {
            num: None,
            ..args_for("fillseq", 1)
        };
        assert_eq!(setup(full).unwrap().num, DEFAULT_NUM);
        let none = EngineArgs {
            repeats: 0,
            ..args_for("fillseq", 1)
        };
        assert!(setup(none).is_err());
    }

    /// Rows take step i of every repeat: repeats of a 2-step plan interleave.
    #[test]
    fn rows_collect_each_step_over_the_repeats() {
        let s = setup_for("fillseq,readseq", 10);
        let m = |x: f64| Measured {
            ops_per_s: x,
            ..Measured::default()
        };
        let side = Side {
            name: "n".into(),
            runs: vec![m(1.0), m(10.0), m(2.0), m(20.0), m(3.0), m(30.0)],
            extra: json!({}),
        };
        let runs = Runs {
            nextdb: side.clone(),
            krate: Some(side),
            db_bench: None,
            db_bench_commands: vec![],
        };
        let r = rows(&s, &runs);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].nextdb.as_ref().unwrap().median_ops(), Some(2.0));
        assert_eq!(r[1].peer.as_ref().unwrap().median_ops(), Some(20.0));
        assert!(r[1].others.is_empty());
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
        let args = |b: &str| args_for(b, 10);
        assert!(setup(args("fillseq,nope")).is_err());
        let s = setup(args("fillseq,readseq")).unwrap();
        assert_eq!((s.reads, s.sync_per_writer), (10, 1));
        assert_eq!(s.num, 10);
        assert!(
            setup(EngineArgs {
                key_size: 4,
                ..args("fillseq")
            })
            .is_err()
        );
    }
}
