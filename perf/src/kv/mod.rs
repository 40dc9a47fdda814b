//! The `kv` suite: the NextDB server over its native protocol against Redis 7 on the
//! same machine, same keys (`key:%012d`), value size, connections and pipeline depth.
//!
//! Both servers are driven by one load generator (closed loop: [`driver`]; paced
//! latency rows: [`open_loop`]), so the client costs the same on both sides; the
//! uniform GET and the SET rows also run the real `redis-benchmark` against Redis.
//! Each server runs in a cgroup cpuset of its own CPUs and the driver in one of its
//! CPU ([`crate::cpu`]). Servers come in two groups, each started, loaded and settled
//! once: NextDB `--sync none` with Redis without persistence (reads, mix, latency),
//! then NextDB `--sync fsync` with Redis `appendfsync always` (durable PUT). Within a
//! group every row runs A/B/A/B (`--repeats` times each side, alternating), so a
//! disturbance on the shared machine hits both sides alike; the JSON gives medians and
//! spreads, and the ratio is of the medians.

mod driver;
mod keys;
mod native;
mod open_loop;
mod output;
mod plan;
mod redis;
mod resp;
mod scrape;
mod servers;

use crate::cpu::{CpuMeter, CpuSet, Cpusets};
use crate::report::{Measured, Side};
use driver::{Result, RunResult, Workload};
use keys::ValuePool;
use plan::RowSpec;
use serde_json::json;
use servers::Server;
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The longest a side may take to settle before a row.
const SETTLE_MAX: Duration = Duration::from_secs(120);

#[derive(clap::Args, Debug, Clone)]
pub struct KvArgs {
    /// Keys loaded into each server before the runs; reads choose among them
    /// (default 1,000,000; 100,000 with --quick).
    #[arg(long)]
    pub keys: Option<u64>,
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Measured seconds of each run (default 10; 2 with --quick).
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Unmeasured seconds at the start of each run, same connections and load
    /// (default 2; 0.5 with --quick).
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    /// A short run that shows the suite works, not final figures.
    #[arg(long)]
    pub quick: bool,
    /// Runs of every row on each side, alternating NextDB / Redis (at least 1).
    #[arg(long, default_value_t = 3)]
    pub repeats: u64,
    /// Connections of every row (default: the row's own, 50 or 64).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Pipeline depth of every row (default: the row's own, 1 or 16).
    #[arg(long)]
    pub pipeline: Option<usize>,
    /// Comma-separated rows to run (default: all; `--help` of the README lists them).
    #[arg(long)]
    pub only: Option<String>,
    /// The NextDB server binary (`nextdb serve ...`).
    #[arg(long, default_value = "target/release/nextdb")]
    pub nextdb_bin: PathBuf,
    /// `--sync` of the NextDB server for every row but the durable PUT (fsync).
    #[arg(long, default_value = "none")]
    pub volatile_sync: String,
    /// Do not load the keys first (GETs then miss and rows get no ratio; debugging).
    #[arg(long)]
    pub skip_load: bool,
    /// Connections and pipeline depth of the load.
    #[arg(long, default_value_t = 8)]
    pub load_connections: usize,
    #[arg(long, default_value_t = 128)]
    pub load_pipeline: usize,
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    #[arg(long, default_value = "redis-benchmark")]
    pub redis_benchmark: String,
    /// Do not run redis-benchmark (only our driver against Redis).
    #[arg(long)]
    pub no_redis_benchmark: bool,
    /// Server data directories and logs (fsync must reach a disk: not tmpfs).
    #[arg(long, default_value = "target/perf/kv-data")]
    pub dir: PathBuf,
    #[arg(long, default_value = "target/perf/kv.json")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// NextDB shards, and Redis io-threads, on CPUs 0..N; the driver keeps the last
    /// CPU. 1 (the default) is the per-core comparison; 2 is the scaling row (row names
    /// get `_shards2`), meaningful only with more CPUs than shards.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// NextDB rows: every driver connection is one connection per core of the node
    /// (its shard ports, from HELLO), each request sent on the connection of the core
    /// that owns its key, as shard-aware clients do; row names get `_shard_aware`.
    /// Meaningful with --shards 2 or more.
    #[arg(long)]
    pub shard_aware: bool,
    /// The cost of observability: every NextDB repeat runs twice, without and then
    /// with the node's `/metrics` scraped every second as a Prometheus server would;
    /// the scraped runs are the row's `peer_nextdb_metrics_scraped` and
    /// `ratio_vs_nextdb_metrics_scraped` is unscraped / scraped throughput.
    #[arg(long)]
    pub scrape_metrics: bool,
    /// No cpusets: servers and driver go wherever the kernel puts them.
    #[arg(long)]
    pub no_pin: bool,
    /// Run only NextDB.
    #[arg(long, conflicts_with = "peer_only")]
    pub nextdb_only: bool,
    /// Run only Redis (and redis-benchmark).
    #[arg(long)]
    pub peer_only: bool,
}

/// The arguments with the defaults of the run's mode filled in.
#[derive(Debug, Clone)]
struct Params {
    keys: u64,
    duration: Duration,
    warmup: Duration,
}

fn params(a: &KvArgs) -> Result<Params> {
    let (keys, duration, warmup) = if a.quick {
        (100_000, 2.0, 0.5)
    } else {
        (1_000_000, 10.0, 2.0)
    };
    let duration = a.duration_secs.unwrap_or(duration);
    let warmup = a.warmup_secs.unwrap_or(warmup);
    if !(duration > 0.0 && warmup >= 0.0 && duration.is_finite() && warmup.is_finite()) {
        return Err("--duration-secs must be positive and --warmup-secs not negative".into());
    }
    let p = Params {
        keys: a.keys.unwrap_or(keys),
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
    };
    if p.keys == 0 || a.value_bytes == 0 || a.repeats == 0 || a.shards == 0 {
        return Err("--keys, --value-bytes, --repeats and --shards must be at least 1".into());
    }
    Ok(p)
}

/// The cpusets of a run: one per server kind and one for the driver, which this
/// process enters.
struct Placement {
    sets: Cpusets,
    server: CpuSet,
    redis: CpuSet,
    client_cpu: usize,
}

fn place(a: &KvArgs) -> Result<Option<Placement>> {
    if a.no_pin {
        return Ok(None);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_cpus, client_cpu) = servers::placement(a.shards, cpus);
    let sets = Cpusets::new()?;
    let server = sets.set("nextdb", &server_cpus)?;
    let redis = sets.set("redis", &server_cpus)?;
    let client = sets.set("driver", &[client_cpu])?;
    sets.enter(&client)?;
    eprintln!(
        "placement ({}): servers on CPUs {}, driver and redis-benchmark on CPU {client_cpu}",
        sets.describe(),
        server.cpus()
    );
    Ok(Some(Placement {
        sets,
        server,
        redis,
        client_cpu,
    }))
}

/// One row's results over the repeats.
struct RowResult {
    spec: RowSpec,
    /// The open-loop rate of each side (latency rows).
    rates: (Option<f64>, Option<f64>),
    nextdb: Side,
    peer: Side,
    rb: Option<Side>,
    /// NextDB's runs with `/metrics` scraped (`--scrape-metrics`), paired with `nextdb`.
    scraped: Side,
}

struct Ctx {
    args: KvArgs,
    p: Params,
    values: Arc<ValuePool>,
    redis_name: String,
    placement: Option<Placement>,
    /// Each side's peak GET rate when get_uniform_c50_p1 was not among the rows.
    measured_peak: (Cell<Option<f64>>, Cell<Option<f64>>),
    /// The data directory's commit latency, measured before the durable rows.
    disk: Option<crate::disk::FsyncProbe>,
    /// `--scrape-metrics`: one scrape's cost on the idle, loaded node.
    scrape_cost: Cell<Option<scrape::ScrapeCost>>,
}

/// A server of one side and what it cost to get it ready.
struct Running {
    server: Server,
    nextdb: bool,
}

impl Ctx {
    fn workload(&self, spec: &RowSpec, rate: Option<f64>) -> Workload {
        Workload {
            keys: self.p.keys,
            dist: spec.dist,
            get_ratio: spec.get_ratio,
            connections: spec.connections,
            pipeline: spec.pipeline,
            warmup: self.p.warmup,
            duration: self.p.duration,
            rate,
            value_bytes: self.args.value_bytes,
            seed: self.args.seed,
            shard_aware: spec.shard_aware,
        }
    }

    fn start(&self, nextdb: bool, durable: bool) -> Result<Running> {
        let a = &self.args;
        let server = if nextdb {
            let sync = if durable {
                "fsync"
            } else {
                a.volatile_sync.as_str()
            };
            let set = self.placement.as_ref().map(|p| &p.server);
            servers::start_nextdb(&a.nextdb_bin, &a.dir, sync, a.shards, set)?
        } else {
            let set = self.placement.as_ref().map(|p| &p.redis);
            servers::start_redis(&a.redis_server, &a.dir, durable, a.shards, set)?
        };
        eprintln!("{} on {}", server.name, server.addr);
        let mut r = Running { server, nextdb };
        self.load(&mut r.server)?;
        Ok(r)
    }

    fn load(&self, s: &mut Server) -> Result<()> {
        if self.args.skip_load {
            return Ok(());
        }
        let a = &self.args;
        eprint!("  loading {} keys into {} ... ", self.p.keys, s.name);
        let secs = driver::load(
            s.addr,
            s.proto,
            self.p.keys,
            &self.values,
            a.load_connections,
            a.load_pipeline,
        )?;
        eprintln!("{secs:.1} s ({:.0} keys/s)", self.p.keys as f64 / secs);
        s.check_alive()
    }

    /// Seconds until the side's background work is done (flush and compaction for
    /// NextDB, a save or AOF rewrite for Redis).
    fn settle(&self, r: &Running) -> Result<f64> {
        let d = if r.nextdb {
            servers::settle_nextdb(r.server.addr, SETTLE_MAX)?
        } else {
            servers::settle_redis(r.server.addr, SETTLE_MAX)?
        };
        Ok(d.as_secs_f64())
    }

    /// One measured run of `spec` against a running server.
    fn measure(&self, r: &mut Running, spec: &RowSpec, rate: Option<f64>) -> Result<Measured> {
        let w = self.workload(spec, rate);
        let syncs_before = match (r.nextdb, spec.durable) {
            (true, true) => Some(servers::nextdb_log_syncs(r.server.addr)?),
            _ => None,
        };
        let scraper = match (spec.scraped, r.server.http) {
            (true, Some(http)) if r.nextdb => Some(scrape::Scraper::start(http)),
            _ => None,
        };
        let cpu = CpuMeter::start_with_server(r.server.pid());
        let (res, lag) = match rate {
            Some(_) => open_loop::run(r.server.addr, r.server.proto, &w, &self.values)
                .map(|(x, l)| (x, Some(l)))?,
            None => (
                driver::run(r.server.addr, r.server.proto, &w, &self.values)?,
                None,
            ),
        };
        let cpu = cpu.stop();
        if let Some(s) = scraper {
            let scrapes = s.stop()?;
            eprintln!("  /metrics scraped {scrapes} times during the run");
        }
        r.server.check_alive()?;
        let mut m = measured(&res);
        m.server_cpu_us_per_op = cpu
            .server_cpu_pct
            .filter(|_| m.ops_per_s > 0.0)
            .map(|pct| pct / 100.0 * 1e6 / m.ops_per_s);
        m.cpu = Some(cpu);
        m.send_lag_p99_us = lag;
        if r.nextdb {
            m.write_amplification = servers::nextdb_write_amplification(r.server.addr)?;
        }
        if let Some(before) = syncs_before {
            // The syncs of the warm-up are counted too, over the warm-up's time as well.
            let syncs = servers::nextdb_log_syncs(r.server.addr)?.saturating_sub(before);
            let secs = (w.warmup + w.duration).as_secs_f64();
            m.log_commits_per_s = Some(syncs as f64 / secs);
        }
        eprintln!(
            "  {:<40} {:<34} {:>10.0} op/s  p50 {:>8.1} us  p99 {:>8.1} us  p999 {:>8.1} us",
            spec.name(self.args.shards),
            r.server.name,
            m.ops_per_s,
            m.p50_us,
            m.p99_us,
            m.p999_us
        );
        Ok(m)
    }
}

fn measured(r: &RunResult) -> Measured {
    let mut m = Measured::from_hist(r.ops, r.secs, &r.hist);
    m.found = Some(r.gets - r.misses);
    m.errors = r.errors;
    m.misses = r.misses;
    m.bad_values = r.bad_values;
    m.first_error = r.first_error.clone();
    m
}

pub fn run(args: KvArgs) -> std::result::Result<(), String> {
    run_inner(args).map_err(|e| e.to_string())
}

fn run_inner(args: KvArgs) -> Result<()> {
    let p = params(&args)?;
    let specs = plan::select(&args)?;
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let redis_version = if args.nextdb_only {
        None
    } else {
        Some(redis::server_version(&args.redis_server)?)
    };
    let mut ctx = Ctx {
        values: Arc::new(ValuePool::new(args.seed, args.value_bytes)),
        redis_name: format!("redis {}", redis_version.as_deref().unwrap_or("?")),
        placement: place(&args)?,
        p,
        args,
        measured_peak: Default::default(),
        disk: None,
        scrape_cost: Cell::new(None),
    };
    if results_need_disk(&ctx.args)? {
        let probe = crate::disk::fsync_probe(&ctx.args.dir)
            .map_err(|e| format!("fsync probe in {}: {e}", ctx.args.dir.display()))?;
        eprintln!(
            "disk: 4 KiB overwrite + fdatasync p50 {:.0} us, p99 {:.0} us: at most {:.0} \
             commits/s one at a time",
            probe.p50_us,
            probe.p99_us,
            probe.serial_commits_per_s()
        );
        ctx.disk = Some(probe);
    }
    let mut results: Vec<RowResult> = specs
        .into_iter()
        .map(|spec| RowResult {
            spec,
            rates: (None, None),
            nextdb: Side::new(
                "nextdb",
                json!({"source": "nextdb-perf driver, native protocol v1"}),
            ),
            peer: Side::new(
                ctx.redis_name.clone(),
                json!({"source": "nextdb-perf driver, RESP"}),
            ),
            rb: None,
            scraped: Side::new(
                "nextdb, /metrics scraped every second",
                json!({"source": "nextdb-perf driver, native protocol v1, plus a scraper"}),
            ),
        })
        .collect();
    for durable in [false, true] {
        if results.iter().any(|r| r.spec.durable == durable) {
            run_group(&ctx, &mut results, durable)?;
        }
    }
    output::write(&ctx, &results, redis_version)
}

/// Whether a durable row will run (the disk probe is for them).
fn results_need_disk(a: &KvArgs) -> Result<bool> {
    Ok(plan::select(a)?.iter().any(|s| s.durable) && !a.peer_only)
}

/// Starts one server of each side (as selected), then runs every row of the group.
fn run_group(ctx: &Ctx, results: &mut [RowResult], durable: bool) -> Result<()> {
    let mut nextdb = (!ctx.args.peer_only)
        .then(|| ctx.start(true, durable))
        .transpose()?;
    let mut redis = (!ctx.args.nextdb_only)
        .then(|| ctx.start(false, durable))
        .transpose()?;
    if let Some(r) = nextdb.as_ref() {
        probe_scrape_cost(ctx, &r.server)?;
    }
    for i in 0..results.len() {
        if results[i].spec.durable != durable {
            continue;
        }
        let rates = rates(ctx, results, i, nextdb.as_mut(), redis.as_mut())?;
        let row = &mut results[i];
        row.rates = rates;
        run_row(ctx, row, nextdb.as_mut(), redis.as_mut())?;
    }
    for r in [nextdb.as_mut(), redis.as_mut()].into_iter().flatten() {
        r.server.stop()?;
    }
    Ok(())
}

/// `--scrape-metrics`: measures what one scrape costs the idle node, once.
fn probe_scrape_cost(ctx: &Ctx, s: &Server) -> Result<()> {
    let (true, None, Some(http), Some(pid)) = (
        ctx.args.scrape_metrics,
        ctx.scrape_cost.get(),
        s.http,
        s.pid(),
    ) else {
        return Ok(());
    };
    let c = scrape::probe_cost(http, pid)?;
    eprintln!(
        "  one /metrics scrape ({} bytes) costs the idle node {:.2} ms of CPU: {:.2}% of a core at one a second",
        c.bytes,
        c.server_cpu_ms,
        c.share_of_core_pct()
    );
    ctx.scrape_cost.set(Some(c));
    Ok(())
}

/// The open-loop rates of row `i` on each side: its fraction of that side's peak
/// (the median of get_uniform_c50_p1, or a peak measured for the purpose).
fn rates(
    ctx: &Ctx,
    results: &[RowResult],
    i: usize,
    nextdb: Option<&mut Running>,
    redis: Option<&mut Running>,
) -> Result<(Option<f64>, Option<f64>)> {
    let Some(f) = results[i].spec.peak_fraction else {
        return Ok((None, None));
    };
    let peak_row = results.iter().find(|r| r.spec.id == plan::PEAK_ROW);
    let peak = |r: Option<&mut Running>,
                side: fn(&RowResult) -> &Side,
                cache: &Cell<Option<f64>>|
     -> Result<Option<f64>> {
        let Some(r) = r else { return Ok(None) };
        if let Some(p) = peak_row
            .and_then(|row| side(row).median_ops())
            .or(cache.get())
        {
            return Ok(Some(p * f));
        }
        eprintln!("  measuring {}'s peak for the latency rows", r.server.name);
        let spec = plan::peak_spec(ctx.args.connections);
        let p = ctx.measure(r, &spec, None)?.ops_per_s;
        cache.set(Some(p));
        Ok(Some(p * f))
    };
    let n = peak(nextdb, |r| &r.nextdb, &ctx.measured_peak.0)?;
    let p = peak(redis, |r| &r.peer, &ctx.measured_peak.1)?;
    Ok((n, p))
}

/// Runs one row A/B/A/B: each side settles first, then the repeats alternate.
fn run_row(
    ctx: &Ctx,
    row: &mut RowResult,
    mut nextdb: Option<&mut Running>,
    mut redis: Option<&mut Running>,
) -> Result<()> {
    let settle_n = nextdb.as_deref().map(|r| ctx.settle(r)).transpose()?;
    let settle_p = redis.as_deref().map(|r| ctx.settle(r)).transpose()?;
    for rep in 0..ctx.args.repeats {
        if let Some(r) = nextdb.as_deref_mut() {
            let mut m = ctx.measure(r, &row.spec, row.rates.0)?;
            m.settle_secs = settle_n.filter(|_| rep == 0);
            row.nextdb.runs.push(m);
            if ctx.args.scrape_metrics {
                let spec = RowSpec {
                    scraped: true,
                    ..row.spec.clone()
                };
                let m = ctx.measure(r, &spec, row.rates.0)?;
                row.scraped.runs.push(m);
            }
        }
        if let Some(r) = redis.as_deref_mut() {
            let mut m = ctx.measure(r, &row.spec, row.rates.1)?;
            m.settle_secs = settle_p.filter(|_| rep == 0);
            let ops = m.ops_per_s;
            row.peer.runs.push(m);
            redis_benchmark(ctx, row, r, ops)?;
        }
    }
    Ok(())
}

/// The real redis-benchmark right after our driver's Redis run, as many requests as
/// our driver did in the same time.
fn redis_benchmark(
    ctx: &Ctx,
    row: &mut RowResult,
    r: &mut Running,
    driver_ops_per_s: f64,
) -> Result<()> {
    let a = &ctx.args;
    let Some(test) = row.spec.redis_benchmark.filter(|_| !a.no_redis_benchmark) else {
        return Ok(());
    };
    let n = ((driver_ops_per_s * ctx.p.duration.as_secs_f64()) as u64).max(10_000);
    let s = &row.spec;
    let cmd = redis::command(
        &a.redis_benchmark,
        r.server.addr,
        test,
        n,
        s.connections,
        s.pipeline,
        ctx.p.keys,
        a.value_bytes,
    );
    let command = redis::describe(&cmd);
    let cpu = CpuMeter::start();
    let report = redis::run(cmd)?;
    r.server.check_alive()?;
    let mut m = Measured {
        ops_per_s: report.rps,
        p50_us: report.p50_us,
        p99_us: report.p99_us,
        p999_us: report.p999_us.unwrap_or(f64::NAN),
        ops: Some(report.requests),
        cpu: Some(cpu.stop()),
        ..Measured::default()
    };
    m.curve_from_percentiles();
    m.curve.retain(|&(_, us)| us.is_finite());
    eprintln!(
        "  {:<40} {:<34} {:>10.0} op/s  p50 {:>8.1} us  p99 {:>8.1} us",
        s.name(a.shards),
        "redis-benchmark",
        m.ops_per_s,
        m.p50_us,
        m.p99_us
    );
    let name = format!("{} (redis-benchmark)", ctx.redis_name);
    let side = row
        .rb
        .get_or_insert_with(|| Side::new(name, json!({"source": "redis-benchmark"})));
    side.extra["command"] = json!(command);
    side.runs.push(m);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_keeps_the_driver_off_the_server_cpus() {
        assert_eq!(servers::placement(1, 2), (vec![0], 1));
        // The scaling row on two CPUs: the driver shares the second shard's CPU.
        assert_eq!(servers::placement(2, 2), (vec![0, 1], 1));
        assert_eq!(servers::placement(2, 4), (vec![0, 1], 3));
        assert_eq!(servers::placement(4, 2), (vec![0, 1], 1));
    }

    #[test]
    fn measured_counts_what_the_gates_need() {
        let mut r = RunResult::new(2.0).unwrap();
        r.record(true, native::Outcome::Hit(100), 100, Some(1000))
            .unwrap();
        r.record(true, native::Outcome::Hit(99), 100, Some(1000))
            .unwrap();
        r.record(true, native::Outcome::Miss, 100, Some(1000))
            .unwrap();
        // Outside the window: not counted.
        r.record(true, native::Outcome::Hit(99), 100, None).unwrap();
        let m = measured(&r);
        assert_eq!(
            (m.ops, m.found, m.misses, m.bad_values),
            (Some(3), Some(2), 1, 1)
        );
        assert_eq!(m.ops_per_s, 1.5);
    }
}
