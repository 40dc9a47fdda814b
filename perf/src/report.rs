//! Results: the printed table and `target/perf/SUITE.json` in the project's schema.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::path::Path;

/// Throughput and latency of one side of one benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Operations done (the count behind `ops_per_s`), when known.
    pub ops: Option<u64>,
    /// Lookups that found their key (readrandom, seekrandom): both sides must agree
    /// closely, or they did not run the same workload.
    pub found: Option<u64>,
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
            found: None,
        }
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "ops_per_s": round(self.ops_per_s),
            "p50_us": round(self.p50_us),
            "p99_us": round(self.p99_us),
            "p999_us": round(self.p999_us),
        });
        if let Some(n) = self.ops {
            v["ops"] = json!(n);
        }
        if let Some(n) = self.found {
            v["found"] = json!(n);
        }
        v
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One benchmark, both sides.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub nextdb: Option<Measured>,
    pub peer: Option<Measured>,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        match (&self.nextdb, &self.peer) {
            (Some(n), Some(p)) if p.ops_per_s > 0.0 => Some(n.ops_per_s / p.ops_per_s),
            _ => None,
        }
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
    // A shared machine: the load when the run started says how quiet it was.
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

/// Prints the table and writes the JSON file.
pub fn write(
    suite: &str,
    peer_name: &str,
    config: Value,
    rows: &[Row],
    out: &Path,
) -> Result<(), String> {
    println!(
        "\n{:<12} {:>12} {:>9} {:>9} {:>12} {:>9} {:>9} {:>7}",
        "benchmark", "nextdb op/s", "p50 us", "p99 us", "peer op/s", "p50 us", "p99 us", "ratio"
    );
    let cell = |m: &Option<Measured>| match m {
        Some(m) => format!("{:>12.0} {:>9.2} {:>9.2}", m.ops_per_s, m.p50_us, m.p99_us),
        None => format!("{:>12} {:>9} {:>9}", "-", "-", "-"),
    };
    let mut results = Vec::new();
    for r in rows {
        let ratio = r.ratio();
        println!(
            "{:<12} {} {} {:>7}",
            r.name,
            cell(&r.nextdb),
            cell(&r.peer),
            ratio.map_or("-".to_string(), |x| format!("{x:.2}x"))
        );
        results.push(json!({
            "name": r.name,
            "nextdb": r.nextdb.as_ref().map(Measured::json),
            "peer": r.peer.as_ref().map(|p| {
                let mut v = p.json();
                v["name"] = json!(peer_name);
                v
            }),
            "ratio": ratio.map(|x| (x * 1000.0).round() / 1000.0),
        }));
    }
    let doc = json!({
        "suite": suite,
        "machine": machine(),
        "config": config,
        "results": results,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(out, text + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_schema() {
        let dir = std::env::temp_dir().join(format!("nextdb-perf-{}", std::process::id()));
        let out = dir.join("nested").join("x.json");
        let m = Measured {
            ops_per_s: 200.0,
            p50_us: 1.0,
            p99_us: 2.0,
            p999_us: 3.0,
            ops: Some(1000),
            found: Some(630),
        };
        let rows = vec![
            Row {
                name: "readrandom".into(),
                nextdb: Some(m.clone()),
                peer: Some(Measured {
                    ops_per_s: 100.0,
                    ..m.clone()
                }),
            },
            Row {
                name: "fillseq".into(),
                nextdb: Some(m),
                peer: None,
            },
        ];
        write("engine", "rocksdb", json!({"num": 1000}), &rows, &out).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(v["suite"], "engine");
        assert_eq!(v["config"]["num"], 1000);
        for k in ["cpus", "kernel", "cpu_model"] {
            assert!(v["machine"].get(k).is_some(), "machine.{k}");
        }
        let r = &v["results"][0];
        assert_eq!(r["name"], "readrandom");
        assert_eq!(r["ratio"], 2.0);
        assert_eq!(r["peer"]["name"], "rocksdb");
        assert_eq!(r["peer"]["ops_per_s"], 100.0);
        for k in ["ops_per_s", "p50_us", "p99_us", "p999_us"] {
            assert!(r["nextdb"][k].is_f64(), "nextdb.{k}");
        }
        assert_eq!(r["nextdb"]["p99_us"], 2.0);
        assert_eq!(r["nextdb"]["found"], 630);
        // A side that did not run is null, and so is the ratio.
        assert!(v["results"][1]["peer"].is_null());
        assert!(v["results"][1]["ratio"].is_null());
        let _ = std::fs::remove_dir_all(dir);
    }
}
