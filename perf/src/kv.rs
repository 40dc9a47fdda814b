//! The `kv` suite: the NextDB server over its native protocol against Redis 7 on the
//! same machine, same keys (`key:%012d`), value size, connections and pipeline depth.
//!
//! Both servers are driven by one load generator ([`driver`]: single-threaded tokio,
//! like redis-benchmark's one event loop), so the client costs the same on both sides;
//! the uniform GET and the SET rows also run the real `redis-benchmark` against Redis,
//! reported beside our driver's Redis numbers. Servers run as child processes, one
//! side after the other, never at the same time:
//!
//! - NextDB `--sync none` and Redis without persistence for the reads and the mix;
//! - NextDB `--sync fsync` and Redis `appendfsync always` for the durable PUT row.
//!
//! Each server is loaded with every key first (pipelined writes, unmeasured).

mod driver;
mod keys;
mod native;
mod redis;
mod resp;
mod servers;

use crate::report::{self, Measured};
use driver::{BoxError, Result, RunResult, Workload};
use keys::{Dist, ValuePool};
use serde_json::{Value, json};
use servers::Server;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct KvArgs {
    /// Keys loaded into each server before the runs; reads choose among them.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Measured seconds of each run (after --warmup-secs).
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Unmeasured seconds at the start of each run, same connections and load.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Connections of every row (default: the row's own, 50 or 64).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Pipeline depth of every row (default: the row's own, 1 or 16).
    #[arg(long)]
    pub pipeline: Option<usize>,
    /// Comma-separated rows to run (default: all): get_uniform_c50_p1,
    /// get_uniform_c50_p16, get_zipfian_c50_p1, put_durable_c64_p1,
    /// mixed_90_10_uniform_c50_p1, get_uniform_c50_p1_half_peak.
    #[arg(long)]
    pub only: Option<String>,
    /// The NextDB server binary (`nextdb serve ...`).
    #[arg(long, default_value = "target/release/nextdb")]
    pub nextdb_bin: PathBuf,
    /// `--sync` of the NextDB server for every row but the durable PUT (which always
    /// uses fsync).
    #[arg(long, default_value = "none")]
    pub volatile_sync: String,
    /// Do not load the keys first (GETs then miss; for debugging).
    #[arg(long)]
    pub skip_load: bool,
    /// Connections and pipeline depth of the load.
    #[arg(long, default_value_t = 8)]
    pub load_connections: usize,
    #[arg(long, default_value_t = 128)]
    pub load_pipeline: usize,
    /// Rate (ops/s) of the half-peak row; default half of NextDB's measured
    /// get_uniform peak (Redis's with --peer-only).
    #[arg(long)]
    pub half_peak_rate: Option<f64>,
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
    /// NextDB shards. The default, 1, gives NextDB the same CPU budget as Redis (one
    /// server thread on CPU 0, the load generator on CPU 1): a per-core comparison.
    /// With 2 shards on this 2-core machine the shards share CPUs with the client.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Do not pin: servers and load generator go wherever the kernel puts them.
    #[arg(long)]
    pub no_pin: bool,
    /// Run only NextDB.
    #[arg(long, conflicts_with = "peer_only")]
    pub nextdb_only: bool,
    /// Run only Redis (and redis-benchmark).
    #[arg(long)]
    pub peer_only: bool,
}

/// One row of the default plan.
#[derive(Debug, Clone)]
struct RowSpec {
    /// The default name; `--only` matches it or the name after overrides.
    id: &'static str,
    dist: Dist,
    get_ratio: f64,
    connections: usize,
    pipeline: usize,
    /// Runs on the fsync'ing servers.
    durable: bool,
    /// Paced at half of the peak GET throughput.
    half_peak: bool,
    /// Also run `redis-benchmark -t TEST` for the peer.
    redis_benchmark: Option<&'static str>,
    meaning: &'static str,
}

fn default_rows() -> Vec<RowSpec> {
    let get = |id, dist, pipeline, rb, meaning| RowSpec {
        id,
        dist,
        get_ratio: 1.0,
        connections: 50,
        pipeline,
        durable: false,
        half_peak: false,
        redis_benchmark: rb,
        meaning,
    };
    vec![
        get(
            "get_uniform_c50_p1",
            Dist::Uniform,
            1,
            Some("get"),
            "GET, uniform keys, 50 connections, one request in flight each",
        ),
        get(
            "get_uniform_c50_p16",
            Dist::Uniform,
            16,
            Some("get"),
            "GET, uniform keys, 50 connections, batches of 16 pipelined requests",
        ),
        get(
            "get_zipfian_c50_p1",
            Dist::Zipfian,
            1,
            None,
            "GET, zipfian keys (theta 0.99, scrambled), 50 connections, unpipelined",
        ),
        RowSpec {
            id: "put_durable_c64_p1",
            dist: Dist::Uniform,
            get_ratio: 0.0,
            connections: 64,
            pipeline: 1,
            durable: true,
            half_peak: false,
            redis_benchmark: Some("set"),
            meaning: "PUT/SET acknowledged after fsync (group commit; Redis appendfsync always), \
                      uniform keys, 64 connections",
        },
        RowSpec {
            id: "mixed_90_10_uniform_c50_p1",
            get_ratio: 0.9,
            ..get(
                "",
                Dist::Uniform,
                1,
                None,
                "90% GET / 10% PUT, uniform keys, 50 connections, unpipelined, not fsynced",
            )
        },
        RowSpec {
            id: "get_uniform_c50_p1_half_peak",
            half_peak: true,
            ..get(
                "",
                Dist::Uniform,
                1,
                None,
                "GET as get_uniform_c50_p1 but paced at half of NextDB's peak: the p99 target",
            )
        },
    ]
}

impl RowSpec {
    fn name(&self) -> String {
        let (c, p) = (self.connections, self.pipeline);
        let dist = self.dist.name();
        let mut n = if self.durable {
            format!("put_durable_c{c}_p{p}")
        } else if self.get_ratio >= 1.0 {
            format!("get_{dist}_c{c}_p{p}")
        } else {
            let g = (self.get_ratio * 100.0).round() as u32;
            format!("mixed_{g}_{}_{dist}_c{c}_p{p}", 100 - g)
        };
        if self.half_peak {
            n.push_str("_half_peak");
        }
        n
    }
}

/// One side's numbers for one row.
#[derive(Debug, Clone)]
struct Side {
    m: Measured,
    errors: u64,
    misses: u64,
    gets: u64,
    puts: u64,
    first_error: Option<String>,
}

impl Side {
    fn from_run(r: &RunResult) -> Side {
        let mut m = Measured::from_hist(r.ops, r.secs, &r.hist);
        m.found = Some(r.gets - r.misses);
        Side {
            m,
            errors: r.errors,
            misses: r.misses,
            gets: r.gets,
            puts: r.puts,
            first_error: r.first_error.clone(),
        }
    }

    fn json(&self, name: Option<&str>, source: Option<&str>) -> Value {
        let mut v = self.m.json();
        v["gets"] = json!(self.gets);
        v["puts"] = json!(self.puts);
        v["misses"] = json!(self.misses);
        v["errors"] = json!(self.errors);
        if let Some(e) = &self.first_error {
            v["first_error"] = json!(e);
        }
        if let Some(n) = name {
            v["name"] = json!(n);
        }
        if let Some(s) = source {
            v["source"] = json!(s);
        }
        v
    }
}

#[derive(Debug, Clone)]
struct RbSide {
    report: redis::BenchReport,
    command: String,
}

struct RowResult {
    spec: RowSpec,
    rate: Option<f64>,
    nextdb: Option<Side>,
    peer: Option<Side>,
    rb: Option<RbSide>,
}

fn ratio(n: &Option<Side>, p_ops: Option<f64>) -> Option<f64> {
    match (n, p_ops) {
        (Some(n), Some(p)) if p > 0.0 => Some(n.m.ops_per_s / p),
        _ => None,
    }
}

impl RowResult {
    fn ratio(&self) -> Option<f64> {
        ratio(&self.nextdb, self.peer.as_ref().map(|p| p.m.ops_per_s))
    }
    fn ratio_rb(&self) -> Option<f64> {
        ratio(&self.nextdb, self.rb.as_ref().map(|r| r.report.rps))
    }
}

struct Ctx {
    args: KvArgs,
    values: Arc<ValuePool>,
    redis_name: String,
}

impl Ctx {
    fn workload(&self, spec: &RowSpec, rate: Option<f64>) -> Workload {
        Workload {
            keys: self.args.keys,
            dist: spec.dist,
            get_ratio: spec.get_ratio,
            connections: spec.connections,
            pipeline: spec.pipeline,
            warmup: Duration::from_secs_f64(self.args.warmup_secs),
            duration: Duration::from_secs_f64(self.args.duration_secs),
            rate,
            seed: self.args.seed,
        }
    }

    fn load(&self, s: &mut Server) -> Result<()> {
        if self.args.skip_load {
            return Ok(());
        }
        eprint!("  loading {} keys into {} ... ", self.args.keys, s.name);
        let secs = driver::load(
            s.addr,
            s.proto,
            self.args.keys,
            &self.values,
            self.args.load_connections,
            self.args.load_pipeline,
        )?;
        eprintln!("{secs:.1} s ({:.0} keys/s)", self.args.keys as f64 / secs);
        if s.proto == driver::Proto::Native {
            let waited = servers::settle_nextdb(s.addr, std::time::Duration::from_secs(180))?;
            eprintln!(
                "  waited {:.1} s for flushes and compactions to settle",
                waited.as_secs_f64()
            );
        }
        s.check_alive()
    }

    fn run_row(&self, s: &mut Server, spec: &RowSpec, rate: Option<f64>) -> Result<Side> {
        let r = driver::run(s.addr, s.proto, &self.workload(spec, rate), &self.values)?;
        s.check_alive()?;
        let side = Side::from_run(&r);
        eprintln!(
            "  {:<34} {:<36} {:>10.0} op/s  p50 {:>8.1} us  p99 {:>8.1} us  p999 {:>8.1} us{}",
            spec.name(),
            s.name,
            side.m.ops_per_s,
            side.m.p50_us,
            side.m.p99_us,
            side.m.p999_us,
            if r.errors > 0 || r.misses > 0 {
                format!("  ({} errors, {} misses)", r.errors, r.misses)
            } else {
                String::new()
            }
        );
        Ok(side)
    }
}

/// Half of a measured peak, when the half-peak row's rate was not given.
fn peak_rate(results: &[RowResult], nextdb: bool) -> Option<f64> {
    results
        .iter()
        .find(|r| r.spec.id == "get_uniform_c50_p1")
        .and_then(|r| if nextdb { &r.nextdb } else { &r.peer }.as_ref())
        .map(|s| s.m.ops_per_s / 2.0)
}

pub fn run(args: KvArgs) -> std::result::Result<(), String> {
    run_inner(args).map_err(|e| e.to_string())
}

fn run_inner(args: KvArgs) -> Result<()> {
    if args.keys == 0 || args.value_bytes == 0 {
        return Err("--keys and --value-bytes must be at least 1".into());
    }
    if !(args.duration_secs > 0.0 && args.warmup_secs >= 0.0) {
        return Err("--duration-secs must be positive and --warmup-secs not negative".into());
    }
    if args.shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    if !args.no_pin {
        servers::pin_current_thread(servers::CLIENT_CPU)?;
        eprintln!(
            "placement: servers on CPU {}{} (NextDB {} shard(s), Redis's main thread), load generator and redis-benchmark on CPU {}",
            servers::SERVER_CPU,
            if args.shards > 1 {
                format!("..{}", servers::SERVER_CPU + args.shards - 1)
            } else {
                String::new()
            },
            args.shards,
            servers::CLIENT_CPU
        );
    }
    let mut specs = default_rows();
    for s in &mut specs {
        if let Some(c) = args.connections {
            s.connections = c.max(1);
        }
        if let Some(p) = args.pipeline {
            s.pipeline = p.max(1);
        }
    }
    if let Some(only) = &args.only {
        let want: Vec<&str> = only
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for w in &want {
            if !specs.iter().any(|s| s.id == *w || s.name() == *w) {
                return Err(format!(
                    "unknown row {w:?}; rows: {}",
                    specs.iter().map(|s| s.id).collect::<Vec<_>>().join(", ")
                )
                .into());
            }
        }
        specs.retain(|s| want.iter().any(|w| s.id == *w || s.name() == *w));
    }
    let mut seen = std::collections::HashSet::new();
    specs.retain(|s| seen.insert(s.name()));

    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let redis_version = if args.nextdb_only {
        None
    } else {
        Some(redis::server_version(&args.redis_server)?)
    };
    let redis_name = format!("redis {}", redis_version.as_deref().unwrap_or("?"));
    let ctx = Ctx {
        values: Arc::new(ValuePool::new(args.seed, args.value_bytes)),
        args,
        redis_name,
    };
    let mut results: Vec<RowResult> = specs
        .iter()
        .map(|s| RowResult {
            spec: s.clone(),
            rate: None,
            nextdb: None,
            peer: None,
            rb: None,
        })
        .collect();
    let mut half_peak_from = ctx
        .args
        .half_peak_rate
        .map(|_| "--half-peak-rate".to_string());

    // NextDB first: its peak sets the half-peak row's rate for both sides.
    if !ctx.args.peer_only {
        run_side(&ctx, &mut results, true, &mut half_peak_from)?;
    }
    if !ctx.args.nextdb_only {
        run_side(&ctx, &mut results, false, &mut half_peak_from)?;
    }
    let config = json!({
        "keys": ctx.args.keys,
        "value_bytes": ctx.args.value_bytes,
        "key_format": "key:%012d",
        "duration_secs": ctx.args.duration_secs,
        "warmup_secs": ctx.args.warmup_secs,
        "loaded": !ctx.args.skip_load,
        "load_connections": ctx.args.load_connections,
        "load_pipeline": ctx.args.load_pipeline,
        "nextdb_bin": ctx.args.nextdb_bin.display().to_string(),
        "nextdb_shards": ctx.args.shards,
        "pinned": !ctx.args.no_pin,
        "server_cpu": servers::SERVER_CPU,
        "client_cpu": servers::CLIENT_CPU,
        "nextdb_sync": {"reads_and_mixed": ctx.args.volatile_sync, "put_durable": "fsync"},
        "redis_version": redis_version,
        "redis_persistence": {
            "reads_and_mixed": "--save '' --appendonly no",
            "put_durable": "--save '' --appendonly yes --appendfsync always",
        },
        "zipf_theta": keys::ZIPF_THETA,
        "half_peak_rate": results.iter().find(|r| r.spec.half_peak).and_then(|r| r.rate),
        "half_peak_from": half_peak_from,
        "client": "nextdb-perf driver: one current_thread tokio runtime, one task per connection",
        "seed": ctx.args.seed,
    });
    write_report(&ctx, &results, config)
}

/// Runs every selected row on one side: NextDB (`nextdb`) or Redis.
fn run_side(
    ctx: &Ctx,
    results: &mut [RowResult],
    nextdb: bool,
    half_peak_from: &mut Option<String>,
) -> Result<()> {
    let a = &ctx.args;
    for durable in [false, true] {
        if !results.iter().any(|r| r.spec.durable == durable) {
            continue;
        }
        let mut server = if nextdb {
            let sync = if durable {
                "fsync"
            } else {
                a.volatile_sync.as_str()
            };
            servers::start_nextdb(&a.nextdb_bin, &a.dir, sync, a.shards, !a.no_pin)?
        } else {
            servers::start_redis(&a.redis_server, &a.dir, durable, !a.no_pin)?
        };
        eprintln!("{} on {}", server.name, server.addr);
        ctx.load(&mut server)?;
        for i in 0..results.len() {
            if results[i].spec.durable != durable {
                continue;
            }
            let spec = results[i].spec.clone();
            let mut rate = None;
            if spec.half_peak {
                rate = a
                    .half_peak_rate
                    .or(results[i].rate)
                    .or_else(|| peak_rate(results, true));
                if rate.is_some() && half_peak_from.is_none() {
                    *half_peak_from = Some("half of NextDB's get_uniform_c50_p1".into());
                }
                if rate.is_none() && !nextdb {
                    rate = peak_rate(results, false);
                    if rate.is_some() {
                        *half_peak_from =
                            Some("half of Redis's get_uniform_c50_p1 (no NextDB run)".into());
                    }
                }
                if rate.is_none() {
                    // The peak row was not selected: measure it, unreported.
                    let peak_spec = RowSpec {
                        half_peak: false,
                        ..spec.clone()
                    };
                    eprintln!("  measuring the peak for the half-peak row");
                    let peak = ctx.run_row(&mut server, &peak_spec, None)?;
                    rate = Some(peak.m.ops_per_s / 2.0);
                    *half_peak_from = Some(format!(
                        "half of {}'s peak, measured for this row",
                        if nextdb { "NextDB" } else { "Redis" }
                    ));
                }
                results[i].rate = rate;
            }
            let side = ctx.run_row(&mut server, &spec, rate)?;
            if nextdb {
                results[i].nextdb = Some(side.clone());
            } else {
                results[i].peer = Some(side.clone());
                if let (Some(test), false) = (spec.redis_benchmark, a.no_redis_benchmark) {
                    // As many requests as our driver did in the same time.
                    let n = ((side.m.ops_per_s * a.duration_secs) as u64).max(10_000);
                    let mut cmd = redis::command(
                        &a.redis_benchmark,
                        server.addr,
                        test,
                        n,
                        spec.connections,
                        spec.pipeline,
                        a.keys,
                        a.value_bytes,
                    );
                    if !a.no_pin {
                        servers::pin_child(&mut cmd, &[servers::CLIENT_CPU]);
                    }
                    let command = redis::describe(&cmd);
                    let report = redis::run(cmd)?;
                    server.check_alive()?;
                    eprintln!(
                        "  {:<34} {:<36} {:>10.0} op/s  p50 {:>8.1} us  p99 {:>8.1} us  p999 {:>8} us",
                        spec.name(),
                        "redis-benchmark",
                        report.rps,
                        report.p50_us,
                        report.p99_us,
                        report.p999_us.map_or("-".into(), |v| format!("{v:.1}")),
                    );
                    results[i].rb = Some(RbSide { report, command });
                }
            }
        }
        server.stop()?;
    }
    Ok(())
}

/// The targets, evaluated on the rows that ran with their default parameters.
fn targets(results: &[RowResult]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in results {
        if r.spec.name() != r.spec.id {
            continue;
        }
        match r.spec.id {
            "get_uniform_c50_p1" | "get_uniform_c50_p16" => {
                for (peer, x) in [
                    ("redis (nextdb-perf driver)", r.ratio()),
                    ("redis-benchmark", r.ratio_rb()),
                ] {
                    if let Some(x) = x {
                        out.push(
                            json!({"row": r.spec.id, "target": format!("ratio vs {peer} >= 1.0"),
                                        "value": (x * 1000.0).round() / 1000.0, "met": x >= 1.0}),
                        );
                    }
                }
            }
            "put_durable_c64_p1" => {
                if let Some(n) = &r.nextdb {
                    out.push(json!({"row": r.spec.id, "target": "nextdb ops_per_s >= 100000",
                                    "value": n.m.ops_per_s.round(), "met": n.m.ops_per_s >= 100_000.0}));
                }
            }
            "get_uniform_c50_p1_half_peak" => {
                if let Some(n) = &r.nextdb {
                    out.push(json!({"row": r.spec.id, "target": "nextdb p99_us <= 1000",
                                    "value": n.m.p99_us, "met": n.m.p99_us <= 1000.0}));
                }
            }
            _ => {}
        }
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn write_report(ctx: &Ctx, results: &[RowResult], config: Value) -> Result<()> {
    let w = results
        .iter()
        .map(|r| r.spec.name().len())
        .max()
        .unwrap_or(0)
        .max(10);
    let dash = "-";
    println!(
        "\n{:<w$} {:>11} {:>8} {:>8} {:>8} | {:<24} {:>11} {:>8} {:>8} {:>8} | {:>6}",
        "row",
        "nextdb op/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "peer",
        "op/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "ratio"
    );
    let cells = |m: Option<(f64, f64, f64, Option<f64>)>| match m {
        Some((ops, p50, p99, p999)) => format!(
            "{ops:>11.0} {p50:>8.1} {p99:>8.1} {:>8}",
            p999.map_or("-".into(), |v| format!("{v:.1}"))
        ),
        None => format!("{dash:>11} {dash:>8} {dash:>8} {dash:>8}"),
    };
    let side_cells = |s: &Option<Side>| {
        cells(
            s.as_ref()
                .map(|s| (s.m.ops_per_s, s.m.p50_us, s.m.p99_us, Some(s.m.p999_us))),
        )
    };
    let fmt_ratio = |x: Option<f64>| x.map_or(dash.to_string(), |x| format!("{x:.2}x"));
    let mut rows_json = Vec::new();
    for r in results {
        let name = r.spec.name();
        println!(
            "{name:<w$} {} | {:<24} {} | {:>6}",
            side_cells(&r.nextdb),
            "redis (our driver)",
            side_cells(&r.peer),
            fmt_ratio(r.ratio())
        );
        if let Some(rb) = &r.rb {
            let b = &rb.report;
            println!(
                "{:<w$} {:>11} {:>8} {:>8} {:>8} | {:<24} {} | {:>6}",
                "",
                "",
                "",
                "",
                "",
                "redis (redis-benchmark)",
                cells(Some((b.rps, b.p50_us, b.p99_us, b.p999_us))),
                fmt_ratio(r.ratio_rb())
            );
        }
        let rb_json = r.rb.as_ref().map(|rb| {
            json!({
                "name": ctx.redis_name,
                "source": "redis-benchmark",
                "ops_per_s": round2(rb.report.rps),
                "p50_us": round2(rb.report.p50_us),
                "p99_us": round2(rb.report.p99_us),
                "p999_us": rb.report.p999_us.map(round2),
                "ops": rb.report.requests,
                "command": rb.command,
            })
        });
        rows_json.push(json!({
            "name": name,
            "meaning": r.spec.meaning,
            "params": {
                "dist": r.spec.dist.name(),
                "get_ratio": r.spec.get_ratio,
                "connections": r.spec.connections,
                "pipeline": r.spec.pipeline,
                "durable": r.spec.durable,
                "rate_ops_per_s": r.rate.map(f64::round),
            },
            "nextdb": r.nextdb.as_ref().map(|s| s.json(None, Some("nextdb-perf driver, native protocol v1"))),
            "peer": r.peer.as_ref().map(|s| s.json(Some(&ctx.redis_name), Some("nextdb-perf driver, RESP"))),
            "ratio": r.ratio().map(|x| (x * 1000.0).round() / 1000.0),
            "peer_redis_benchmark": rb_json,
            "ratio_vs_redis_benchmark": r.ratio_rb().map(|x| (x * 1000.0).round() / 1000.0),
        }));
    }
    let targets = targets(results);
    if !targets.is_empty() {
        println!("\ntargets:");
        for t in &targets {
            println!(
                "  {:<34} {:<45} {:>12} {}",
                t["row"].as_str().unwrap_or(""),
                t["target"].as_str().unwrap_or(""),
                t["value"].to_string(),
                if t["met"] == json!(true) {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
    let doc = json!({
        "suite": "kv",
        "machine": report::machine(),
        "config": config,
        "results": rows_json,
        "targets": targets,
    });
    let out = &ctx.args.out;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(out, text + "\n")
        .map_err(|e| BoxError::from(format!("{}: {e}", out.display())))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rows_have_their_names() {
        let rows = default_rows();
        for r in &rows {
            assert_eq!(r.name(), r.id, "{r:?}");
        }
        let mut r = rows[4].clone();
        r.connections = 8;
        assert_eq!(r.name(), "mixed_90_10_uniform_c8_p1");
    }
}
