//! The dashboard: one self-contained page (`dashboard.html`, embedded in the
//! binary; no CDN, no library) and the JSON it polls every second, `/api/dashboard`.
//!
//! The JSON holds counters since start, not rates: the page keeps the last minutes
//! of samples and differences consecutive ones (throughput, and latency percentiles
//! of each interval from the difference of two cumulative histograms), so the node
//! keeps no time series and a page opened later still works.

use crate::config::{DASHBOARD_BUCKETS_PER_OCTAVE, DASHBOARD_LATENCY_BUCKETS};
use hdrhistogram::Histogram;
use nextdb_shard::stats::{OP_NAMES, ShardStatsSnapshot};
use serde_json::{Value, json};

pub const PAGE: &str = include_str!("dashboard.html");

/// Upper bound (µs) of dashboard bucket `i`: 2^(i / buckets per octave) rounded
/// up, and at least i + 1 so that the narrow buckets below ~20 µs stay distinct.
pub fn bucket_bound_us(i: usize) -> u64 {
    let log = 2f64
        .powf(i as f64 / f64::from(DASHBOARD_BUCKETS_PER_OCTAVE))
        .ceil() as u64;
    log.max(i as u64 + 1)
}

/// The first bucket whose bound holds `us` (the last one holds everything above).
fn bucket_of(us: u64) -> usize {
    let (mut lo, mut hi) = (0, DASHBOARD_LATENCY_BUCKETS - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if bucket_bound_us(mid) >= us {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Adds the counts of `h` into `buckets` (non-cumulative).
fn add_histogram(buckets: &mut [u64], h: &Histogram<u64>) {
    for v in h.iter_recorded() {
        buckets[bucket_of(v.value_iterated_to())] += v.count_at_value();
    }
}

/// The document `/api/dashboard` answers.
pub fn json(shards: &[ShardStatsSnapshot], uptime_us: u64) -> Value {
    let mut ops_total: Vec<(u64, Vec<u64>)> = OP_NAMES
        .iter()
        .map(|_| (0, vec![0; DASHBOARD_LATENCY_BUCKETS]))
        .collect();
    let mut per_shard = Vec::with_capacity(shards.len());
    for s in shards {
        let mut latency = vec![0u64; DASHBOARD_LATENCY_BUCKETS];
        let mut requests = 0u64;
        for (o, total) in s.ops.iter().zip(ops_total.iter_mut()) {
            requests += o.count;
            total.0 += o.count;
            add_histogram(&mut latency, &o.latency_us);
            add_histogram(&mut total.1, &o.latency_us);
        }
        let e = &s.engine;
        per_shard.push(json!({
            "shard": s.shard,
            "requests": requests,
            "latency": latency,
            "in_flight": s.in_flight,
            "memtable_bytes": e.memtable_bytes,
            "l0_files": e.levels.first().map_or(0, |l| l.files),
            "compaction_debt_bytes": e.compaction_debt_bytes,
            "compactions": e.compactions,
            "flushes": e.flushes,
            "compaction_running": e.compaction_running,
            "stalls": e.stall_count,
            "stall_us": e.stall_micros,
            "delays": e.delayed_count,
            "delay_us": e.delayed_micros,
        }));
    }
    let ops: serde_json::Map<String, Value> = OP_NAMES
        .iter()
        .zip(ops_total)
        .map(|(name, (count, latency))| {
            (
                (*name).to_string(),
                json!({"count": count, "latency": latency}),
            )
        })
        .collect();
    let bounds: Vec<u64> = (0..DASHBOARD_LATENCY_BUCKETS)
        .map(bucket_bound_us)
        .collect();
    json!({
        "uptime_us": uptime_us,
        "bounds_us": bounds,
        "shards": per_shard,
        "ops": ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_lands_in_the_first_bucket_whose_bound_holds_it() {
        for us in [
            1u64, 2, 3, 7, 100, 1_000, 1_001, 65_536, 999_999, 60_000_000,
        ] {
            let i = bucket_of(us);
            assert!(us <= bucket_bound_us(i), "{us} above bucket {i}");
            assert!(
                i == 0 || us > bucket_bound_us(i - 1),
                "{us} fits bucket {}",
                i - 1
            );
        }
        assert_eq!(bucket_of(u64::MAX), DASHBOARD_LATENCY_BUCKETS - 1);
    }
}
