//! `kv.json` and `kv.html`: the rows as report rows, the run's configuration and the
//! issue's targets.

use super::driver::Result;
use super::{Ctx, RowResult, keys};
use crate::report::{self, Row};
use serde_json::{Value, json};

fn row(ctx: &Ctx, r: &RowResult) -> Row {
    let s = &r.spec;
    let nonempty = |side: &report::Side| (!side.runs.is_empty()).then(|| side.clone());
    Row {
        name: s.name(ctx.args.shards),
        info: json!({
            "meaning": s.meaning,
            "params": {
                "dist": s.dist.name(),
                "get_ratio": s.get_ratio,
                "connections": s.connections,
                "pipeline": s.pipeline,
                "durable": s.durable,
                "open_loop": s.peak_fraction.is_some(),
                "fraction_of_peak": s.peak_fraction,
                "rate_ops_per_s": {"nextdb": r.rates.0.map(f64::round), "peer": r.rates.1.map(f64::round)},
            },
        }),
        nextdb: nonempty(&r.nextdb),
        peer: nonempty(&r.peer),
        others: r
            .rb
            .iter()
            .map(|s| ("redis_benchmark".to_string(), s.clone()))
            .chain(nonempty(&r.scraped).map(|s| ("nextdb_metrics_scraped".to_string(), s)))
            .collect(),
    }
}

/// The targets, on the rows that ran with their default parameters.
fn targets(rows: &[Row], results: &[RowResult], shards: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for (row, r) in rows.iter().zip(results) {
        if row.name != r.spec.id || shards != 1 {
            continue;
        }
        let p99 = |row: &Row| {
            row.nextdb
                .as_ref()
                .and_then(|n| n.spread(|m| m.p99_us))
                .map(|s| s.median)
        };
        let (target, value, met) = match r.spec.id {
            "get_uniform_c50_p1" | "get_uniform_c50_p16" => {
                let x = row.ratio().ok();
                ("ratio vs redis >= 1.0", x, x.is_some_and(|x| x >= 1.0))
            }
            "put_durable_c64_p1" => {
                let x = row.ratio().ok();
                (
                    "ratio vs redis appendfsync always >= 1.5",
                    x,
                    x.is_some_and(|x| x >= 1.5),
                )
            }
            "get_uniform_c50_p1_half_peak" => {
                let x = p99(row);
                (
                    "nextdb p99_us <= 1000 at 50% of its peak",
                    x,
                    x.is_some_and(|x| x <= 1000.0),
                )
            }
            _ => continue,
        };
        let value = value.map(|x| (x * 1000.0).round() / 1000.0);
        out.push(json!({"row": row.name, "target": target, "value": value, "met": met}));
    }
    out
}

fn config(ctx: &Ctx, redis_version: Option<String>) -> Value {
    let a = &ctx.args;
    let pl = ctx.placement.as_ref();
    json!({
        "keys": ctx.p.keys,
        "value_bytes": a.value_bytes,
        "key_format": "key:%012d",
        "quick": a.quick,
        "duration_secs": ctx.p.duration.as_secs_f64(),
        "warmup_secs": ctx.p.warmup.as_secs_f64(),
        "repeats": a.repeats,
        "repeat_order": "per row: nextdb, redis (then redis-benchmark), repeated --repeats times; \
            medians and min/max over the repeats; ratio = median / median",
        "loaded": !a.skip_load,
        "load_connections": a.load_connections,
        "load_pipeline": a.load_pipeline,
        "nextdb_bin": a.nextdb_bin.display().to_string(),
        "nextdb_shards": a.shards,
        "redis_io_threads": a.shards,
        "confinement": pl.map(|p| p.sets.describe()),
        "server_cpus": pl.map(|p| p.server.cpus().to_string()),
        "driver_cpu": pl.map(|p| p.client_cpu),
        "scaling_note": (a.shards > 1).then_some("NextDB shards and Redis io-threads share the \
            CPUs 0..shards; the driver keeps the last CPU, shared with a server when the \
            machine has no more CPUs than shards: meaningful only on a bigger machine"),
        "nextdb_sync": {"reads_and_mixed": a.volatile_sync, "put_durable": "fsync"},
        "redis_version": redis_version,
        "redis_persistence": {
            "reads_and_mixed": "--save '' --appendonly no --auto-aof-rewrite-percentage 0",
            "put_durable": "--save '' --appendonly yes --appendfsync always --auto-aof-rewrite-percentage 0",
        },
        "zipf_theta": keys::ZIPF_THETA,
        "client": "closed loop: one current_thread tokio runtime, one task per connection; \
            open loop (latency rows): one sender thread on a fixed schedule, one reader task \
            per connection, latency from each request's due time",
        "gates": format!("no ratio when a side had errors, unexpected misses, values of the wrong \
            length, or found counts more than {}% apart", report::FOUND_TOLERANCE * 100.0),
        "seed": a.seed,
        "disk_commit_latency": ctx.disk.as_ref().map(crate::disk::FsyncProbe::json),
        "metrics_scrape_cost": ctx.scrape_cost.get().map(|c| json!({
            "server_cpu_ms_per_scrape": (c.server_cpu_ms * 1000.0).round() / 1000.0,
            "bytes": c.bytes,
            "share_of_core_pct_at_one_per_second": (c.share_of_core_pct() * 1000.0).round() / 1000.0,
        })),
    })
}

pub fn write(ctx: &Ctx, results: &[RowResult], redis_version: Option<String>) -> Result<()> {
    let rows: Vec<Row> = results.iter().map(|r| row(ctx, r)).collect();
    let targets = targets(&rows, results, ctx.args.shards);
    for t in &targets {
        println!(
            "target {:<38} {:<42} {:>10} {}",
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
    report::write(
        "kv",
        config(ctx, redis_version),
        &rows,
        json!({"targets": targets}),
        &ctx.args.out,
    )?;
    Ok(())
}
