//! `GET /debug/state`: what every core is doing, as JSON — its queues (requests
//! in flight, Raft proposals waiting, writes waiting for fsync, memtables waiting
//! for flush), whether a flush or compaction runs, and its engine's shape. Built
//! from the same per-core snapshots as `/metrics`.

use nextdb_shard::stats::ShardStatsSnapshot;
use serde_json::{Value, json};

pub fn json(shards: &[ShardStatsSnapshot], uptime_seconds: f64, stopping: bool) -> Value {
    let cores: Vec<Value> = shards.iter().map(core).collect();
    json!({
        "node": {
            "shards": shards.len(),
            "uptime_seconds": uptime_seconds,
            "stopping": stopping,
        },
        "cores": cores,
    })
}

fn core(s: &ShardStatsSnapshot) -> Value {
    let e = &s.engine;
    let r = &s.raft;
    json!({
        "shard": s.shard,
        "requests_in_flight": s.in_flight,
        "requests_in_flight_limit": s.max_in_flight,
        "connections_open": s.conns.open,
        "requests_answered": s.ops.iter().map(|o| o.count).sum::<u64>(),
        "raft": {
            "term": r.term,
            "leader": r.leader,
            "serving": r.serving,
            "commit_index": r.commit_index,
            "applied_index": r.applied_index,
            "last_index": r.last_index,
            "pending_proposals": r.pending_proposals,
        },
        "engine": {
            "memtable_bytes": e.memtable_bytes,
            "immutable_memtables": e.immutable_memtables,
            "flush_running": e.flush_running,
            "compaction_running": e.compaction_running,
            "compaction_debt_bytes": e.compaction_debt_bytes,
            "pending_syncs": e.pending_syncs,
            "log_segments": e.log_segments,
            "levels": e.levels.iter().map(|l| json!({"files": l.files, "bytes": l.bytes})).collect::<Vec<_>>(),
            "background_error": e.background_error,
        },
    })
}
