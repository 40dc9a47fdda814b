//! Counters and latency histograms of one shard (owned by its core; no atomics).
//!
//! Latency is recorded by the service that answers the client (request decoded →
//! response encoded), so it includes any hop to another core. STATS gathers a
//! snapshot from every core and merges the histograms for node totals.

use hdrhistogram::Histogram;
use nextdb_engine::db::DbStats;
use serde_json::{Value, json};

/// Operation kinds with their own counters, in protocol order.
pub const OP_NAMES: [&str; 11] = [
    "get", "put", "delete", "scan", "batch", "cas", "incr", "expire", "ttl", "ping", "stats",
];

/// Highest latency a histogram tracks (larger values are clamped): 60 s in µs.
const MAX_TRACKED_US: u64 = 60_000_000;

#[derive(Clone)]
pub struct OpStats {
    pub count: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            count: 0,
            errors: 0,
            latency_us: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
                .expect("static histogram bounds are valid"),
        }
    }
}

/// Connection counters of one core.
#[derive(Debug, Clone, Default)]
pub struct ConnStats {
    pub open: u64,
    pub accepted: u64,
    pub refused: u64,
    pub auth_failures: u64,
    pub protocol_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub struct Stats {
    pub ops: Vec<OpStats>,
    pub conns: ConnStats,
    /// Single-key requests this core received and sent to their owner on another
    /// core (a subset of `cross_core_sent`, which also counts multi-key fan-out).
    pub forwarded: u64,
    pub cross_core_sent: u64,
    pub cross_core_received: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ops: (0..OP_NAMES.len()).map(|_| OpStats::new()).collect(),
            conns: ConnStats::default(),
            forwarded: 0,
            cross_core_sent: 0,
            cross_core_received: 0,
        }
    }
}

impl Stats {
    /// Records one answered request of kind `op` (an index into `OP_NAMES`).
    #[inline]
    pub fn record(&mut self, op: usize, micros: u64, ok: bool) {
        if let Some(s) = self.ops.get_mut(op) {
            s.count += 1;
            if !ok {
                s.errors += 1;
            }
            s.latency_us
                .saturating_record(micros.clamp(1, MAX_TRACKED_US));
        }
    }
}

/// What a core reports to STATS and to the HTTP endpoints (`/metrics`,
/// `/debug/state`): built on the owning core when asked, sent across cores.
pub struct ShardStatsSnapshot {
    pub shard: usize,
    pub ops: Vec<OpStats>,
    pub conns: ConnStats,
    pub forwarded: u64,
    pub cross_core_sent: u64,
    pub cross_core_received: u64,
    /// Requests executing on the core now (admission permits out), and the bound.
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub raft: RaftSnapshot,
    pub engine: DbStats,
}

/// The state of a core's partition's Raft group.
#[derive(Debug, Clone, Default)]
pub struct RaftSnapshot {
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub leader: bool,
    /// Serving reads and writes (`Replica::serving`: leader, its term's first entry
    /// applied, recovery done).
    pub serving: bool,
    /// Proposals waiting for their entry to apply.
    pub pending_proposals: usize,
}

impl std::fmt::Debug for ShardStatsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardStatsSnapshot(shard {})", self.shard)
    }
}

fn op_json(s: &OpStats) -> Value {
    let h = &s.latency_us;
    json!({
        "count": s.count,
        "errors": s.errors,
        "p50_us": h.value_at_quantile(0.50),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

fn ops_json(ops: &[OpStats]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, s) in OP_NAMES.iter().zip(ops) {
        if s.count > 0 {
            m.insert((*name).to_string(), op_json(s));
        }
    }
    Value::Object(m)
}

/// The STATS document: per shard, then node totals with merged histograms.
pub fn node_json(shards: &[ShardStatsSnapshot], sync: &str) -> Value {
    let mut total: Vec<OpStats> = (0..OP_NAMES.len()).map(|_| OpStats::new()).collect();
    let mut conns = ConnStats::default();
    let mut per_shard = Vec::new();
    for s in shards {
        for (t, o) in total.iter_mut().zip(&s.ops) {
            t.count += o.count;
            t.errors += o.errors;
            // Same bounds on both sides: adding cannot fail.
            let _ = t.latency_us.add(&o.latency_us);
        }
        conns.open += s.conns.open;
        conns.accepted += s.conns.accepted;
        conns.refused += s.conns.refused;
        conns.auth_failures += s.conns.auth_failures;
        conns.protocol_errors += s.conns.protocol_errors;
        conns.bytes_in += s.conns.bytes_in;
        conns.bytes_out += s.conns.bytes_out;
        per_shard.push(json!({
            "shard": s.shard,
            "ops": ops_json(&s.ops),
            "connections": conns_json(&s.conns),
            "cross_core": {"sent": s.cross_core_sent, "received": s.cross_core_received, "forwarded": s.forwarded},
            "engine": engine_json(&s.engine),
        }));
    }
    json!({
        "node": {
            "shards": shards.len(),
            "sync": sync,
            "ops": ops_json(&total),
            "connections": conns_json(&conns),
        },
        "shards": per_shard,
    })
}

fn conns_json(c: &ConnStats) -> Value {
    json!({
        "open": c.open,
        "accepted": c.accepted,
        "refused": c.refused,
        "auth_failures": c.auth_failures,
        "protocol_errors": c.protocol_errors,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
    })
}

/// The engine's counters as JSON.
pub fn engine_json(s: &DbStats) -> Value {
    json!({
        "levels": s.levels.iter().map(|l| json!({"files": l.files, "bytes": l.bytes})).collect::<Vec<_>>(),
        "memtable_bytes": s.memtable_bytes,
        "immutable_memtables": s.immutable_memtables,
        "user_bytes_written": s.user_bytes_written,
        "log_bytes_written": s.log_bytes_written,
        "log_records": s.log_records,
        "log_syncs": s.log_syncs,
        "log_sync_micros": s.log_sync_micros,
        "write_amplification": s.write_amplification,
        "flushes": s.flushes,
        "compactions": s.compactions,
        "stall_count": s.stall_count,
        "stall_micros": s.stall_micros,
        "delayed_count": s.delayed_count,
        "delayed_micros": s.delayed_micros,
        "cache_hit_rate": s.cache_hit_rate,
        "cache_bytes": s.cache_bytes,
    })
}
