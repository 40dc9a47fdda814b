//! `GET /metrics`: every core's counters in the Prometheus text exposition format
//! 0.0.4. Built on the core that answers the scrape from the snapshots the other
//! cores sent it (the STATS path), so the serving path pays nothing for it: no
//! atomic, no lock, no extra work per request.
//!
//! Every per-core series carries `shard="N"`; node totals are sums over that label
//! (`sum without (shard) (...)`), which Prometheus computes, so no series is
//! exported twice. `nextdb_node_*` families describe the node itself.

use crate::config::METRICS_LATENCY_BUCKETS_US;
use nextdb_shard::stats::{OP_NAMES, ShardStatsSnapshot};
use std::fmt::Write as _;

/// What the node reports about itself beside its cores.
pub struct NodeInfo<'a> {
    pub version: &'a str,
    pub sync: &'a str,
    pub uptime_seconds: f64,
    pub ready: bool,
}

/// One exposition document under construction.
struct Exposition {
    out: String,
}

type Getter = fn(&ShardStatsSnapshot) -> f64;

/// Per-core families: name, type, help, value. Kept in one table so every family
/// gets its HELP and TYPE lines and the same label.
const SHARD_FAMILIES: &[(&str, &str, &str, Getter)] = &[
    (
        "nextdb_network_receive_bytes_total",
        "counter",
        "Bytes received from native-protocol clients.",
        |s| s.conns.bytes_in as f64,
    ),
    (
        "nextdb_network_transmit_bytes_total",
        "counter",
        "Bytes sent to native-protocol clients.",
        |s| s.conns.bytes_out as f64,
    ),
    (
        "nextdb_connections_open",
        "gauge",
        "Native-protocol connections open on the core.",
        |s| s.conns.open as f64,
    ),
    (
        "nextdb_connections_accepted_total",
        "counter",
        "Native-protocol connections accepted.",
        |s| s.conns.accepted as f64,
    ),
    (
        "nextdb_connections_rejected_total",
        "counter",
        "Native-protocol connections refused at the per-core limit.",
        |s| s.conns.refused as f64,
    ),
    (
        "nextdb_auth_failures_total",
        "counter",
        "Failed authentications.",
        |s| s.conns.auth_failures as f64,
    ),
    (
        "nextdb_protocol_errors_total",
        "counter",
        "Connections closed for a protocol violation.",
        |s| s.conns.protocol_errors as f64,
    ),
    (
        "nextdb_requests_in_flight",
        "gauge",
        "Requests executing on the core (admission permits out).",
        |s| s.in_flight as f64,
    ),
    (
        "nextdb_requests_in_flight_limit",
        "gauge",
        "Requests the core executes at once before answering BUSY.",
        |s| s.max_in_flight as f64,
    ),
    (
        "nextdb_cross_core_sent_total",
        "counter",
        "Operations this core sent to another core.",
        |s| s.cross_core_sent as f64,
    ),
    (
        "nextdb_cross_core_received_total",
        "counter",
        "Operations this core ran for another core.",
        |s| s.cross_core_received as f64,
    ),
    (
        "nextdb_forwarded_requests_total",
        "counter",
        "Single-key requests this core forwarded to the key's owner.",
        |s| s.forwarded as f64,
    ),
    (
        "nextdb_memtable_bytes",
        "gauge",
        "Bytes in the active memtable.",
        |s| s.engine.memtable_bytes as f64,
    ),
    (
        "nextdb_immutable_memtables",
        "gauge",
        "Full memtables waiting for flush.",
        |s| s.engine.immutable_memtables as f64,
    ),
    ("nextdb_l0_files", "gauge", "SSTables in level 0.", |s| {
        s.engine.levels.first().map_or(0, |l| l.files) as f64
    }),
    (
        "nextdb_compaction_debt_bytes",
        "gauge",
        "Bytes compaction must rewrite to bring every level within its target.",
        |s| s.engine.compaction_debt_bytes as f64,
    ),
    (
        "nextdb_compaction_running",
        "gauge",
        "1 while a compaction runs on the core.",
        |s| u8::from(s.engine.compaction_running) as f64,
    ),
    (
        "nextdb_flush_running",
        "gauge",
        "1 while a memtable flush runs on the core.",
        |s| u8::from(s.engine.flush_running) as f64,
    ),
    (
        "nextdb_compactions_total",
        "counter",
        "Compactions finished (trivial moves included).",
        |s| s.engine.compactions as f64,
    ),
    (
        "nextdb_compaction_trivial_moves_total",
        "counter",
        "Compactions that moved a file down without rewriting it.",
        |s| s.engine.trivial_moves as f64,
    ),
    (
        "nextdb_compaction_read_bytes_total",
        "counter",
        "Bytes compactions read.",
        |s| s.engine.compaction_bytes_read as f64,
    ),
    (
        "nextdb_compaction_written_bytes_total",
        "counter",
        "Bytes compactions wrote.",
        |s| s.engine.compaction_bytes_written as f64,
    ),
    (
        "nextdb_flushes_total",
        "counter",
        "Memtables flushed to level 0.",
        |s| s.engine.flushes as f64,
    ),
    (
        "nextdb_flush_written_bytes_total",
        "counter",
        "Bytes flushes wrote.",
        |s| s.engine.flush_bytes_written as f64,
    ),
    (
        "nextdb_write_stalls_total",
        "counter",
        "Writes that stopped for a flush or compaction (L0 at its stop trigger, or no memtable room).",
        |s| s.engine.stall_count as f64,
    ),
    (
        "nextdb_write_stall_seconds_total",
        "counter",
        "Time writes spent stopped.",
        |s| s.engine.stall_micros as f64 / 1e6,
    ),
    (
        "nextdb_write_delays_total",
        "counter",
        "Writes that queued at the write gate (in-flight bytes or the delayed write rate).",
        |s| s.engine.delayed_count as f64,
    ),
    (
        "nextdb_write_delay_seconds_total",
        "counter",
        "Time writes spent queued at the write gate.",
        |s| s.engine.delayed_micros as f64 / 1e6,
    ),
    (
        "nextdb_block_cache_hits_total",
        "counter",
        "Block cache hits.",
        |s| s.engine.cache_hits as f64,
    ),
    (
        "nextdb_block_cache_misses_total",
        "counter",
        "Block cache misses.",
        |s| s.engine.cache_misses as f64,
    ),
    (
        "nextdb_block_cache_bytes",
        "gauge",
        "Bytes held by the block cache.",
        |s| s.engine.cache_bytes as f64,
    ),
    (
        "nextdb_block_cache_capacity_bytes",
        "gauge",
        "The block cache's byte budget (changes with `admin config set block_cache_mb`).",
        |s| s.engine.cache_capacity_bytes as f64,
    ),
    (
        "nextdb_row_cache_hits_total",
        "counter",
        "Point reads answered from the row cache.",
        |s| s.engine.row_cache_hits as f64,
    ),
    (
        "nextdb_row_cache_entries",
        "gauge",
        "Rows held by the row cache.",
        |s| s.engine.row_cache_entries as f64,
    ),
    (
        "nextdb_row_cache_bytes",
        "gauge",
        "Bytes held by the row cache.",
        |s| s.engine.row_cache_bytes as f64,
    ),
    (
        "nextdb_row_cache_capacity_bytes",
        "gauge",
        "The row cache's byte budget (changes with `admin config set row_cache_mb`).",
        |s| s.engine.row_cache_capacity_bytes as f64,
    ),
    (
        "nextdb_user_written_bytes_total",
        "counter",
        "Bytes of user writes (keys and values).",
        |s| s.engine.user_bytes_written as f64,
    ),
    (
        "nextdb_write_amplification_ratio",
        "gauge",
        "(log + flush + compaction bytes written) / user bytes written.",
        |s| s.engine.write_amplification,
    ),
    (
        "nextdb_log_written_bytes_total",
        "counter",
        "Bytes written to the log.",
        |s| s.engine.log_bytes_written as f64,
    ),
    (
        "nextdb_log_records_total",
        "counter",
        "Records appended to the log.",
        |s| s.engine.log_records as f64,
    ),
    (
        "nextdb_log_group_commit_batch_size",
        "gauge",
        "Log records per group commit (fsync), averaged since start.",
        |s| {
            if s.engine.log_syncs == 0 {
                0.0
            } else {
                s.engine.log_records as f64 / s.engine.log_syncs as f64
            }
        },
    ),
    (
        "nextdb_log_pending_syncs",
        "gauge",
        "Synced writes waiting for their group commit's fsync.",
        |s| s.engine.pending_syncs as f64,
    ),
    ("nextdb_log_segments", "gauge", "Log segment files.", |s| {
        s.engine.log_segments as f64
    }),
    (
        "nextdb_background_error",
        "gauge",
        "1 once the engine's background work failed (writes are refused).",
        |s| u8::from(s.engine.background_error.is_some()) as f64,
    ),
    (
        "nextdb_raft_term",
        "gauge",
        "Raft term of the core's partition group.",
        |s| s.raft.term as f64,
    ),
    (
        "nextdb_raft_commit_index",
        "gauge",
        "Raft commit index of the core's partition group.",
        |s| s.raft.commit_index as f64,
    ),
    (
        "nextdb_raft_applied_index",
        "gauge",
        "Raft applied index of the core's partition group.",
        |s| s.raft.applied_index as f64,
    ),
    (
        "nextdb_raft_last_index",
        "gauge",
        "Last Raft log index of the core's partition group.",
        |s| s.raft.last_index as f64,
    ),
    (
        "nextdb_raft_leader",
        "gauge",
        "1 while this replica leads its partition group.",
        |s| u8::from(s.raft.leader) as f64,
    ),
    (
        "nextdb_raft_serving",
        "gauge",
        "1 while the partition group serves (leader, recovery done).",
        |s| u8::from(s.raft.serving) as f64,
    ),
    (
        "nextdb_raft_pending_proposals",
        "gauge",
        "Raft proposals waiting to apply.",
        |s| s.raft.pending_proposals as f64,
    ),
];

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: f64) {
        let _ = if labels.is_empty() {
            writeln!(self.out, "{name} {}", number(value))
        } else {
            writeln!(self.out, "{name}{{{labels}}} {}", number(value))
        };
    }
}

/// A sample value: integers without a fraction, `+Inf`/`NaN` as the format spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole `/metrics` document.
pub fn render(shards: &[ShardStatsSnapshot], node: &NodeInfo<'_>) -> String {
    let mut e = Exposition {
        out: String::with_capacity(64 << 10),
    };
    node_families(&mut e, shards.len(), node);
    request_families(&mut e, shards);
    for &(name, kind, help, get) in SHARD_FAMILIES {
        e.family(name, kind, help);
        for s in shards {
            e.sample(name, &format!("shard=\"{}\"", s.shard), get(s));
        }
    }
    level_families(&mut e, shards);
    log_fsync_family(&mut e, shards);
    e.out
}

fn node_families(e: &mut Exposition, shards: usize, node: &NodeInfo<'_>) {
    e.family(
        "nextdb_node_info",
        "gauge",
        "Always 1; labels name the build and settings.",
    );
    let labels = format!(
        "version=\"{}\",sync=\"{}\"",
        escape(node.version),
        escape(node.sync)
    );
    e.sample("nextdb_node_info", &labels, 1.0);
    e.family(
        "nextdb_node_shards",
        "gauge",
        "Shards (one per core) of the node.",
    );
    e.sample("nextdb_node_shards", "", shards as f64);
    e.family(
        "nextdb_node_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    );
    e.sample("nextdb_node_uptime_seconds", "", node.uptime_seconds);
    e.family(
        "nextdb_node_ready",
        "gauge",
        "1 while every shard serves (what /readyz answers).",
    );
    e.sample("nextdb_node_ready", "", u8::from(node.ready) as f64);
}

/// Requests by operation: count, errors, and latency as a histogram whose buckets
/// come from the core's hdrhistogram (3 significant digits, so a bucket's bound is
/// exact to 0.1%; `_sum` is the histogram's mean × count, exact to the same).
fn request_families(e: &mut Exposition, shards: &[ShardStatsSnapshot]) {
    e.family(
        "nextdb_requests_total",
        "counter",
        "Native-protocol requests answered, by operation.",
    );
    for s in shards {
        for (op, o) in OP_NAMES.iter().zip(&s.ops) {
            e.sample(
                "nextdb_requests_total",
                &format!("shard=\"{}\",op=\"{op}\"", s.shard),
                o.count as f64,
            );
        }
    }
    e.family(
        "nextdb_request_errors_total",
        "counter",
        "Requests answered with an error, by operation.",
    );
    for s in shards {
        for (op, o) in OP_NAMES.iter().zip(&s.ops) {
            e.sample(
                "nextdb_request_errors_total",
                &format!("shard=\"{}\",op=\"{op}\"", s.shard),
                o.errors as f64,
            );
        }
    }
    let name = "nextdb_request_duration_seconds";
    e.family(
        name,
        "histogram",
        "Time from a request decoded to its response encoded, by operation.",
    );
    for s in shards {
        for (op, o) in OP_NAMES.iter().zip(&s.ops) {
            let labels = format!("shard=\"{}\",op=\"{op}\"", s.shard);
            histogram(e, name, &labels, &o.latency_us);
        }
    }
}

/// One histogram's `_bucket`, `_sum` and `_count` lines.
fn histogram(e: &mut Exposition, name: &str, labels: &str, h: &hdrhistogram::Histogram<u64>) {
    let mut counts = [0u64; METRICS_LATENCY_BUCKETS_US.len()];
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        if let Some(i) = METRICS_LATENCY_BUCKETS_US
            .iter()
            .position(|&le| value <= le)
        {
            counts[i] += v.count_at_value();
        }
    }
    let mut cumulative = 0u64;
    for (le, c) in METRICS_LATENCY_BUCKETS_US.iter().zip(counts) {
        cumulative += c;
        let le_s = *le as f64 / 1e6;
        e.sample(
            &format!("{name}_bucket"),
            &format!("{labels},le=\"{le_s}\""),
            cumulative as f64,
        );
    }
    let total = h.len();
    assert!(
        cumulative <= total,
        "histogram buckets count more than the histogram holds"
    );
    e.sample(
        &format!("{name}_bucket"),
        &format!("{labels},le=\"+Inf\""),
        total as f64,
    );
    e.sample(
        &format!("{name}_sum"),
        labels,
        h.mean() * total as f64 / 1e6,
    );
    e.sample(&format!("{name}_count"), labels, total as f64);
}

fn level_families(e: &mut Exposition, shards: &[ShardStatsSnapshot]) {
    e.family("nextdb_level_files", "gauge", "SSTables per LSM level.");
    for s in shards {
        for (level, l) in s.engine.levels.iter().enumerate() {
            e.sample(
                "nextdb_level_files",
                &format!("shard=\"{}\",level=\"{level}\"", s.shard),
                l.files as f64,
            );
        }
    }
    e.family(
        "nextdb_level_bytes",
        "gauge",
        "Bytes of SSTables per LSM level.",
    );
    for s in shards {
        for (level, l) in s.engine.levels.iter().enumerate() {
            e.sample(
                "nextdb_level_bytes",
                &format!("shard=\"{}\",level=\"{level}\"", s.shard),
                l.bytes as f64,
            );
        }
    }
}

/// Log group commits as a summary without quantiles: the engine keeps their count
/// and summed time (write + fdatasync), so the mean fsync latency is `_sum / _count`.
fn log_fsync_family(e: &mut Exposition, shards: &[ShardStatsSnapshot]) {
    let name = "nextdb_log_fsync_seconds";
    e.family(
        name,
        "summary",
        "Log group commits (write + fdatasync) and their summed duration.",
    );
    for s in shards {
        let labels = format!("shard=\"{}\"", s.shard);
        e.sample(
            &format!("{name}_sum"),
            &labels,
            s.engine.log_sync_micros as f64 / 1e6,
        );
        e.sample(&format!("{name}_count"), &labels, s.engine.log_syncs as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;
    use nextdb_shard::stats::{ConnStats, OpStats, RaftSnapshot};

    fn snapshot(shard: usize, latencies_us: &[u64]) -> ShardStatsSnapshot {
        let ops = OP_NAMES
            .iter()
            .map(|_| OpStats {
                count: 0,
                errors: 0,
                latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            })
            .collect::<Vec<_>>();
        let mut s = ShardStatsSnapshot {
            shard,
            ops,
            conns: ConnStats::default(),
            forwarded: 0,
            cross_core_sent: 0,
            cross_core_received: 0,
            in_flight: 0,
            max_in_flight: 8,
            raft: RaftSnapshot::default(),
            engine: Default::default(),
        };
        for &us in latencies_us {
            s.ops[0].count += 1;
            s.ops[0].latency_us.record(us).unwrap();
        }
        s
    }

    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.rsplit_once(' ').is_some_and(|(k, _)| k == series))
            .unwrap_or_else(|| panic!("no {series}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    #[test]
    fn latency_histograms_are_cumulative_with_inf_equal_to_count() {
        let info = NodeInfo {
            version: "0.1.0",
            sync: "fsync",
            uptime_seconds: 1.5,
            ready: true,
        };
        let text = render(
            &[snapshot(0, &[30, 200, 3_000, 20_000_000]), snapshot(1, &[])],
            &info,
        );
        let b = |le: &str| {
            value(
                &text,
                &format!(
                    "nextdb_request_duration_seconds_bucket{{shard=\"0\",op=\"get\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(b("0.00005"), 1.0);
        assert_eq!(b("0.00025"), 2.0);
        assert_eq!(b("0.005"), 3.0);
        assert_eq!(b("10"), 3.0);
        assert_eq!(b("+Inf"), 4.0);
        let count = "nextdb_request_duration_seconds_count{shard=\"0\",op=\"get\"}";
        assert_eq!(value(&text, count), 4.0);
        let sum = value(
            &text,
            "nextdb_request_duration_seconds_sum{shard=\"0\",op=\"get\"}",
        );
        assert!((sum - 20.00323).abs() < 0.05, "{sum}");
        assert_eq!(
            value(&text, "nextdb_requests_total{shard=\"1\",op=\"get\"}"),
            0.0
        );
        assert_eq!(value(&text, "nextdb_node_shards"), 2.0);
        // Every sample's family is declared first, once.
        let mut declared = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(declared.insert(rest.split(' ').next().unwrap().to_string()));
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{line}");
            }
        }
    }
}
