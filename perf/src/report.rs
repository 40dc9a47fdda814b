//! Results: the printed table, `target/perf/SUITE.json` in the project's schema and the
//! HTML report beside it.
//!
//! Every side of every row is a set of repeated runs; the JSON gives the median and
//! the spread (min, max) of each figure, and the ratio is of the medians. A row only
//! gets a ratio when both sides pass the validity gates ([`gate`]); otherwise `ratio`
//! is null and `ratio_reason` says why.

use crate::cpu::CpuUse;
use crate::stats::{Spread, median_index};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::path::Path;

/// Found counts of the two sides may differ by this fraction at most.
pub const FOUND_TOLERANCE: f64 = 0.01;

/// Percentiles of the latency curves (the HTML report's HDR plots).
pub const CURVE_PERCENTILES: [f64; 12] = [
    0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// Throughput, latency and validity counters of one run of one side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Operations done (the count behind `ops_per_s`), when known.
    pub ops: Option<u64>,
    /// Lookups that found their key: as a share of `ops`, both sides must agree
    /// within [`FOUND_TOLERANCE`], or they did not run the same workload.
    pub found: Option<u64>,
    /// Operations that failed (not counted in `ops`).
    pub errors: u64,
    /// Reads that should have found their key and did not.
    pub misses: u64,
    /// Values read back with a length other than the one written.
    pub bad_values: u64,
    pub first_error: Option<String>,
    /// Seconds the side spent settling (flush, compactions) before this run.
    pub settle_secs: Option<f64>,
    /// Bytes the engine wrote (log, flush, compaction) per user byte, when known.
    pub write_amplification: Option<f64>,
    pub cpu: Option<CpuUse>,
    /// (percentile, µs) points of the latency distribution.
    pub curve: Vec<(f64, f64)>,
    /// Open-loop runs: the p99 of how late the sender wrote requests against their
    /// schedule (the client's own precision; latency already counts it).
    pub send_lag_p99_us: Option<f64>,
    /// Durable rows: the server's log commits (fdatasyncs) per second during the run.
    pub log_commits_per_s: Option<f64>,
    /// Server CPU time per operation in µs (all its threads; the warm-up's CPU is
    /// charged at the measured rate), where the server is a process of its own.
    pub server_cpu_us_per_op: Option<f64>,
}

/// A latency histogram in nanoseconds as (percentile, µs) points.
pub fn curve_of(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_PERCENTILES
        .iter()
        .map(|&p| (p, h.value_at_quantile(p / 100.0) as f64 / 1000.0))
        .collect()
}

impl Measured {
    /// From an operation count, elapsed seconds and a histogram in nanoseconds.
    pub fn from_hist(ops: u64, secs: f64, h: &Histogram<u64>) -> Self {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Measured {
            ops_per_s: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            p50_us: us(0.50),
            p99_us: us(0.99),
            p999_us: us(0.999),
            ops: Some(ops),
            curve: curve_of(h),
            ..Measured::default()
        }
    }

    /// A curve from the three percentiles a peer's own tool reports.
    pub fn curve_from_percentiles(&mut self) {
        self.curve = vec![
            (50.0, self.p50_us),
            (99.0, self.p99_us),
            (99.9, self.p999_us),
        ];
    }

    fn run_json(&self) -> Value {
        let mut v = json!({
            "ops_per_s": round(self.ops_per_s),
            "p50_us": round(self.p50_us),
            "p99_us": round(self.p99_us),
            "p999_us": round(self.p999_us),
        });
        if let Some(c) = &self.cpu {
            v["cpu"] = c.json();
        }
        v
    }
}

pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One side of one row: a name and its repeated runs.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub name: String,
    pub runs: Vec<Measured>,
    /// Fields merged into the side's JSON (source, assertions, command, ...).
    pub extra: Value,
}

impl Side {
    pub fn new(name: impl Into<String>, extra: Value) -> Side {
        Side {
            name: name.into(),
            runs: Vec::new(),
            extra,
        }
    }

    pub fn spread(&self, f: impl Fn(&Measured) -> f64) -> Option<Spread> {
        Spread::of(&self.runs.iter().map(f).collect::<Vec<_>>())
    }

    pub fn median_ops(&self) -> Option<f64> {
        self.spread(|m| m.ops_per_s).map(|s| s.median)
    }

    /// The run with the median throughput.
    pub fn median_run(&self) -> Option<&Measured> {
        let ops: Vec<f64> = self.runs.iter().map(|m| m.ops_per_s).collect();
        median_index(&ops).map(|i| &self.runs[i])
    }

    fn sum(&self, f: impl Fn(&Measured) -> u64) -> u64 {
        self.runs.iter().map(f).sum()
    }

    fn median_of(&self, f: impl Fn(&Measured) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        Spread::of(&v).map(|s| s.median)
    }

    /// The median found count (`None` when the benchmark does not count hits).
    pub fn found(&self) -> Option<f64> {
        self.median_of(|m| m.found.map(|f| f as f64))
    }

    /// The median share of operations that found their key: what the gate compares,
    /// since closed-loop sides do different numbers of operations in the same time.
    pub fn found_share(&self) -> Option<f64> {
        self.median_of(|m| match (m.found, m.ops) {
            (Some(f), Some(n)) if n > 0 => Some(f as f64 / n as f64),
            _ => None,
        })
    }

    pub fn json(&self) -> Value {
        let mut v = json!({"name": self.name, "repeats": self.runs.len()});
        for (k, f) in [
            (
                "ops_per_s",
                (|m: &Measured| m.ops_per_s) as fn(&Measured) -> f64,
            ),
            ("p50_us", |m| m.p50_us),
            ("p99_us", |m| m.p99_us),
            ("p999_us", |m| m.p999_us),
        ] {
            if let Some(s) = self.spread(f) {
                v[k] = json!(round(s.median));
                v[format!("{k}_min")] = json!(round(s.min));
                v[format!("{k}_max")] = json!(round(s.max));
            }
        }
        v["ops"] = json!(self.median_of(|m| m.ops.map(|o| o as f64)).map(f64::round));
        v["found"] = json!(self.found().map(f64::round));
        v["errors"] = json!(self.sum(|m| m.errors));
        v["misses"] = json!(self.sum(|m| m.misses));
        v["bad_values"] = json!(self.sum(|m| m.bad_values));
        if let Some(e) = self.runs.iter().find_map(|m| m.first_error.clone()) {
            v["first_error"] = json!(e);
        }
        v["settle_secs"] = json!(self.median_of(|m| m.settle_secs).map(round));
        v["write_amplification"] = json!(self.median_of(|m| m.write_amplification).map(round));
        if let Some(c) = self.median_of(|m| m.log_commits_per_s) {
            v["log_commits_per_s"] = json!(c.round());
            if let Some(ops) = self.spread(|m| m.ops_per_s) {
                v["writes_per_log_commit"] = json!(round(ops.median / c.max(1.0)));
            }
        }
        if let Some(s) = Spread::of(
            &self
                .runs
                .iter()
                .filter_map(|m| m.server_cpu_us_per_op)
                .collect::<Vec<_>>(),
        ) {
            v["server_cpu_us_per_op"] = json!(round(s.median));
            v["server_cpu_us_per_op_min"] = json!(round(s.min));
            v["server_cpu_us_per_op_max"] = json!(round(s.max));
        }
        if let Some(lag) = self.median_of(|m| m.send_lag_p99_us) {
            v["send_lag_p99_us"] = json!(round(lag));
        }
        v["runs"] = json!(self.runs.iter().map(Measured::run_json).collect::<Vec<_>>());
        if let Some(m) = self.median_run() {
            v["cpu"] = m.cpu.as_ref().map_or(Value::Null, CpuUse::json);
            v["hdr"] = json!(
                m.curve
                    .iter()
                    .map(|&(p, us)| json!([p, round(us)]))
                    .collect::<Vec<_>>()
            );
        }
        if let Value::Object(extra) = &self.extra {
            for (k, x) in extra {
                v[k] = x.clone();
            }
        }
        v
    }
}

/// Why a side's runs cannot be compared, if they cannot.
fn side_fault(label: &str, s: &Side) -> Option<String> {
    if s.runs.is_empty() {
        return Some(format!("{label} did not run"));
    }
    let errors = s.sum(|m| m.errors);
    if errors > 0 {
        return Some(format!("{label}: {errors} errors"));
    }
    let misses = s.sum(|m| m.misses);
    if misses > 0 {
        return Some(format!("{label}: {misses} unexpected misses"));
    }
    let bad = s.sum(|m| m.bad_values);
    if bad > 0 {
        return Some(format!(
            "{label}: {bad} values read back with the wrong length"
        ));
    }
    if s.runs.iter().any(|m| m.ops_per_s <= 0.0) {
        return Some(format!("{label}: a run measured no operations"));
    }
    None
}

/// The validity gates: the ratio of the medians NextDB / peer, or why there is none.
pub fn gate(nextdb: &Side, peer: &Side) -> Result<f64, String> {
    if let Some(r) = side_fault("nextdb", nextdb).or_else(|| side_fault("peer", peer)) {
        return Err(r);
    }
    if let (Some(a), Some(b)) = (nextdb.found_share(), peer.found_share()) {
        let top = a.max(b);
        // The epsilon keeps a difference of exactly the tolerance inside it.
        if top > 0.0 && (a - b).abs() / top > FOUND_TOLERANCE + 1e-9 {
            return Err(format!(
                "found counts differ by more than {}%: nextdb found {:.2}% of its lookups, the peer {:.2}%",
                FOUND_TOLERANCE * 100.0,
                a * 100.0,
                b * 100.0
            ));
        }
    }
    match (nextdb.median_ops(), peer.median_ops()) {
        (Some(n), Some(p)) if p > 0.0 => Ok(n / p),
        _ => Err("no throughput to compare".into()),
    }
}

/// One benchmark, both sides (and any further peers).
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    /// Fields merged into the row's JSON (meaning, params, ...).
    pub info: Value,
    pub nextdb: Option<Side>,
    /// The main peer: `peer` and `ratio` in the JSON.
    pub peer: Option<Side>,
    /// Further peers by key: `peer_KEY` and `ratio_vs_KEY` in the JSON.
    pub others: Vec<(String, Side)>,
}

fn ratio_json(n: Option<&Side>, p: Option<&Side>) -> (Value, Option<String>) {
    match (n, p) {
        (Some(n), Some(p)) => match gate(n, p) {
            Ok(r) => (json!((r * 1000.0).round() / 1000.0), None),
            Err(reason) => (Value::Null, Some(reason)),
        },
        (None, _) => (Value::Null, Some("nextdb did not run".into())),
        (_, None) => (Value::Null, Some("the peer did not run".into())),
    }
}

impl Row {
    pub fn ratio(&self) -> Result<f64, String> {
        match (&self.nextdb, &self.peer) {
            (Some(n), Some(p)) => gate(n, p),
            _ => Err("a side did not run".into()),
        }
    }

    pub fn json(&self) -> Value {
        let mut v = json!({"name": self.name});
        if let Value::Object(info) = &self.info {
            for (k, x) in info {
                v[k] = x.clone();
            }
        }
        v["nextdb"] = self.nextdb.as_ref().map_or(Value::Null, Side::json);
        v["peer"] = self.peer.as_ref().map_or(Value::Null, Side::json);
        let (r, reason) = ratio_json(self.nextdb.as_ref(), self.peer.as_ref());
        v["ratio"] = r;
        v["ratio_reason"] = json!(reason);
        for (key, side) in &self.others {
            v[format!("peer_{key}")] = side.json();
            let (r, reason) = ratio_json(self.nextdb.as_ref(), Some(side));
            v[format!("ratio_vs_{key}")] = r;
            v[format!("ratio_vs_{key}_reason")] = json!(reason);
        }
        v
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// What machine the numbers came from.
pub fn machine() -> Value {
    let cpu_model = read_trimmed("/proc/cpuinfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    let mem_total_bytes = read_trimmed("/proc/meminfo").and_then(|s| {
        let kb = s.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
        kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
    });
    // A shared machine: the load when the run ended says how quiet it was.
    let loadavg = read_trimmed("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
        "cpu_model": cpu_model,
        "mem_total_bytes": mem_total_bytes.map(|k| k * 1024),
        "loadavg_at_end": loadavg,
    })
}

fn cell(s: Option<&Side>) -> String {
    match s.and_then(|s| Some((s.spread(|m| m.ops_per_s)?, s.median_run()?))) {
        Some((ops, m)) => format!(
            "{:>10.0} {:>13} {:>8.1} {:>8.1}",
            ops.median,
            format!("{:.0}-{:.0}", ops.min, ops.max),
            m.p50_us,
            m.p99_us
        ),
        None => format!("{:>10} {:>13} {:>8} {:>8}", "-", "-", "-", "-"),
    }
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(10);
    println!(
        "\n{:<w$} {:>10} {:>13} {:>8} {:>8} | {:<22} {:>10} {:>13} {:>8} {:>8} | ratio",
        "row",
        "nextdb op/s",
        "min-max",
        "p50 us",
        "p99 us",
        "peer",
        "op/s",
        "min-max",
        "p50 us",
        "p99 us"
    );
    let show =
        |r: Result<f64, String>| r.map_or_else(|e| format!("- ({e})"), |x| format!("{x:.2}x"));
    for r in rows {
        let peer_name = r.peer.as_ref().map_or("-", |p| p.name.as_str());
        println!(
            "{:<w$} {} | {:<22} {} | {}",
            r.name,
            cell(r.nextdb.as_ref()),
            truncate(peer_name, 22),
            cell(r.peer.as_ref()),
            show(r.ratio())
        );
        for (_, s) in &r.others {
            let ratio = r
                .nextdb
                .as_ref()
                .map_or(Err("nextdb did not run".into()), |n| gate(n, s));
            println!(
                "{:<w$} {:>42} | {:<22} {} | {}",
                "",
                "",
                truncate(&s.name, 22),
                cell(Some(s)),
                show(ratio)
            );
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Prints the table and writes the JSON document and the HTML report beside it.
pub fn write(
    suite: &str,
    config: Value,
    rows: &[Row],
    extra: Value,
    out: &Path,
) -> Result<(), String> {
    print_table(rows);
    let mut doc = json!({
        "suite": suite,
        "machine": machine(),
        "config": config,
        "results": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    if let Value::Object(extra) = extra {
        for (k, x) in extra {
            doc[k] = x;
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(out, text + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    let html = out.with_extension("html");
    std::fs::write(&html, crate::html::render(&doc))
        .map_err(|e| format!("{}: {e}", html.display()))?;
    println!("\nwrote {} and {}", out.display(), html.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ops: f64, found: Option<u64>) -> Measured {
        Measured {
            ops_per_s: ops,
            p50_us: 1.0,
            p99_us: 2.0,
            p999_us: 3.0,
            ops: Some(1000),
            found,
            ..Measured::default()
        }
    }

    fn side(name: &str, runs: Vec<Measured>) -> Side {
        Side {
            name: name.into(),
            runs,
            extra: json!({"source": "test"}),
        }
    }

    #[test]
    fn ratio_is_of_the_medians() {
        let n = side(
            "nextdb",
            vec![run(300.0, None), run(100.0, None), run(200.0, None)],
        );
        let p = side(
            "peer",
            vec![run(50.0, None), run(100.0, None), run(1000.0, None)],
        );
        assert_eq!(gate(&n, &p), Ok(2.0));
        let v = Row {
            name: "readrandom".into(),
            info: json!({"meaning": "m"}),
            nextdb: Some(n),
            peer: Some(p),
            others: vec![],
        }
        .json();
        assert_eq!(v["ratio"], 2.0);
        assert!(v["ratio_reason"].is_null());
        assert_eq!(v["meaning"], "m");
        assert_eq!(v["nextdb"]["ops_per_s"], 200.0);
        assert_eq!(v["nextdb"]["ops_per_s_min"], 100.0);
        assert_eq!(v["nextdb"]["ops_per_s_max"], 300.0);
        assert_eq!(v["nextdb"]["runs"].as_array().unwrap().len(), 3);
        assert_eq!(v["peer"]["source"], "test");
    }

    #[test]
    fn a_value_length_mismatch_gets_no_ratio() {
        let n = side("nextdb", vec![run(300.0, None)]);
        let mut bad = run(100.0, None);
        bad.bad_values = 1;
        let p = side("peer", vec![run(100.0, None), bad]);
        let err = gate(&n, &p).unwrap_err();
        assert!(err.contains("wrong length"), "{err}");
        let row = Row {
            name: "get".into(),
            nextdb: Some(n),
            peer: Some(p),
            ..Row::default()
        };
        let v = row.json();
        assert!(v["ratio"].is_null());
        assert!(v["ratio_reason"].as_str().unwrap().contains("wrong length"));
        assert_eq!(v["peer"]["bad_values"], 1);
    }

    #[test]
    fn errors_misses_and_found_counts_gate_the_ratio() {
        let ok = side("nextdb", vec![run(100.0, Some(1000))]);
        let mut e = run(100.0, Some(1000));
        e.errors = 2;
        assert!(
            gate(&ok, &side("p", vec![e]))
                .unwrap_err()
                .contains("2 errors")
        );
        let mut m = run(100.0, Some(1000));
        m.misses = 1;
        assert!(
            gate(&side("n", vec![m]), &ok)
                .unwrap_err()
                .contains("misses")
        );
        // 1% apart passes, more does not.
        assert!(gate(&ok, &side("p", vec![run(100.0, Some(990))])).is_ok());
        let far = gate(&ok, &side("p", vec![run(100.0, Some(980))])).unwrap_err();
        assert!(far.contains("found counts differ"), "{far}");
        assert!(gate(&ok, &side("p", vec![])).is_err());
    }

    #[test]
    fn json_has_the_schema_and_the_html_is_written() {
        let dir = std::env::temp_dir().join(format!("nextdb-perf-{}", std::process::id()));
        let out = dir.join("nested").join("x.json");
        let rows = vec![
            Row {
                name: "readrandom".into(),
                nextdb: Some(side("nextdb", vec![run(200.0, Some(630))])),
                peer: Some(side("rocksdb-crate 11", vec![run(100.0, Some(631))])),
                others: vec![(
                    "db_bench".into(),
                    side("db_bench", vec![run(50.0, Some(629))]),
                )],
                ..Row::default()
            },
            Row {
                name: "fillseq".into(),
                nextdb: Some(side("nextdb", vec![run(200.0, None)])),
                ..Row::default()
            },
        ];
        write(
            "engine",
            json!({"num": 1000}),
            &rows,
            json!({"targets": []}),
            &out,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(v["suite"], "engine");
        assert_eq!(v["config"]["num"], 1000);
        assert!(v["targets"].is_array());
        for k in ["cpus", "kernel", "cpu_model"] {
            assert!(v["machine"].get(k).is_some(), "machine.{k}");
        }
        let r = &v["results"][0];
        assert_eq!(r["ratio"], 2.0);
        assert_eq!(r["ratio_vs_db_bench"], 4.0);
        assert_eq!(r["peer"]["name"], "rocksdb-crate 11");
        assert_eq!(r["peer_db_bench"]["found"], 629.0);
        for k in ["ops_per_s", "p50_us", "p99_us", "p999_us"] {
            assert!(r["nextdb"][k].is_f64(), "nextdb.{k}");
        }
        assert!(v["results"][1]["peer"].is_null());
        assert!(v["results"][1]["ratio"].is_null());
        let html = std::fs::read_to_string(out.with_extension("html")).unwrap();
        assert!(html.contains("<svg") && html.contains("readrandom"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
