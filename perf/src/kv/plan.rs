//! The rows of the `kv` suite and their names.

use super::KvArgs;
use super::driver::Result;
use super::keys::Dist;

/// The closed-loop row whose median throughput is each side's peak: the latency rows
/// run at fractions of it.
pub const PEAK_ROW: &str = "get_uniform_c50_p1";

/// One row of the default plan.
#[derive(Debug, Clone)]
pub struct RowSpec {
    /// The default name; `--only` matches it or the name after overrides.
    pub id: &'static str,
    pub dist: Dist,
    pub get_ratio: f64,
    pub connections: usize,
    pub pipeline: usize,
    /// Runs on the fsync'ing servers.
    pub durable: bool,
    /// Open loop at this fraction of each side's own peak (latency rows).
    pub peak_fraction: Option<f64>,
    /// Also run `redis-benchmark -t TEST` for the peer.
    pub redis_benchmark: Option<&'static str>,
    pub meaning: &'static str,
    /// NextDB side: the driver routes each request to the core that owns its key
    /// (`--shard-aware`); the name gets `_shard_aware`.
    pub shard_aware: bool,
    /// NextDB side: `/metrics` is scraped every second during the measured run (the
    /// paired runs of `--scrape-metrics`); the name gets `_metrics_scraped`.
    pub scraped: bool,
}

fn get(
    id: &'static str,
    dist: Dist,
    pipeline: usize,
    rb: Option<&'static str>,
    meaning: &'static str,
) -> RowSpec {
    RowSpec {
        id,
        dist,
        get_ratio: 1.0,
        connections: 50,
        pipeline,
        durable: false,
        peak_fraction: None,
        redis_benchmark: rb,
        meaning,
        shard_aware: false,
        scraped: false,
    }
}

fn paced(id: &'static str, fraction: f64, meaning: &'static str) -> RowSpec {
    RowSpec {
        peak_fraction: Some(fraction),
        ..get(id, Dist::Uniform, 1, None, meaning)
    }
}

pub fn default_rows() -> Vec<RowSpec> {
    vec![
        get(
            PEAK_ROW,
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
        paced(
            "get_uniform_c50_p1_quarter_peak",
            0.25,
            "GET open loop at 25% of each server's own peak (get_uniform_c50_p1): latency",
        ),
        paced(
            "get_uniform_c50_p1_half_peak",
            0.5,
            "GET open loop at 50% of each server's own peak: the p99 target",
        ),
        paced(
            "get_uniform_c50_p1_three_quarter_peak",
            0.75,
            "GET open loop at 75% of each server's own peak: latency",
        ),
        RowSpec {
            get_ratio: 0.9,
            ..get(
                "mixed_90_10_uniform_c50_p1",
                Dist::Uniform,
                1,
                None,
                "90% GET / 10% PUT, uniform keys, 50 connections, unpipelined, not fsynced",
            )
        },
        RowSpec {
            get_ratio: 0.0,
            connections: 64,
            durable: true,
            ..get(
                "put_durable_c64_p1",
                Dist::Uniform,
                1,
                Some("set"),
                "PUT/SET acknowledged after fsync (group commit; Redis appendfsync always), uniform keys, 64 connections",
            )
        },
    ]
}

/// The spec that measures a side's peak when [`PEAK_ROW`] is not among the rows.
pub fn peak_spec(connections: Option<usize>) -> RowSpec {
    let mut s = default_rows().swap_remove(0);
    if let Some(c) = connections {
        s.connections = c.max(1);
    }
    s
}

fn fraction_name(f: f64) -> String {
    match (f * 100.0).round() as u32 {
        25 => "quarter_peak".into(),
        50 => "half_peak".into(),
        75 => "three_quarter_peak".into(),
        p => format!("peak{p}"),
    }
}

impl RowSpec {
    pub fn name(&self, shards: usize) -> String {
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
        if let Some(f) = self.peak_fraction {
            n = format!("{n}_{}", fraction_name(f));
        }
        if shards > 1 {
            n = format!("{n}_shards{shards}");
        }
        if self.shard_aware {
            n = format!("{n}_shard_aware");
        }
        if self.scraped {
            n = format!("{n}_metrics_scraped");
        }
        n
    }
}

/// The rows `--only`, `--connections` and `--pipeline` ask for, in plan order.
pub fn select(args: &KvArgs) -> Result<Vec<RowSpec>> {
    let mut specs = default_rows();
    for s in &mut specs {
        // Closed-loop rows only: the open-loop sender writes one connection each.
        s.shard_aware = args.shard_aware && s.peak_fraction.is_none();
        if let Some(c) = args.connections {
            s.connections = c.max(1);
        }
        // Latency rows send one request per write; only closed-loop rows pipeline.
        if let (Some(p), None) = (args.pipeline, s.peak_fraction) {
            s.pipeline = p.max(1);
        }
    }
    if let Some(only) = &args.only {
        let want: Vec<&str> = only
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let matches = |s: &RowSpec, w: &str| s.id == w || s.name(args.shards) == w;
        if let Some(w) = want.iter().find(|w| !specs.iter().any(|s| matches(s, w))) {
            let ids: Vec<&str> = specs.iter().map(|s| s.id).collect();
            return Err(format!("unknown row {w:?}; rows: {}", ids.join(", ")).into());
        }
        specs.retain(|s| want.iter().any(|w| matches(s, w)));
    }
    let mut seen = std::collections::HashSet::new();
    specs.retain(|s| seen.insert(s.name(args.shards)));
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rows_have_their_names() {
        let rows = default_rows();
        for r in &rows {
            assert_eq!(r.name(1), r.id, "{r:?}");
        }
        let mut r = rows[6].clone();
        r.connections = 8;
        assert_eq!(r.name(1), "mixed_90_10_uniform_c8_p1");
        assert_eq!(rows[4].name(2), "get_uniform_c50_p1_half_peak_shards2");
        assert!(rows.iter().any(|r| r.id == "get_uniform_c50_p1_half_peak"));
        assert_eq!(peak_spec(None).id, PEAK_ROW);
    }
}
