//! Runs RocksDB's `db_bench` and parses its report lines.

use crate::report::Measured;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Parses db_bench output: `name : X micros/op Y ops/sec ...` lines, each followed
/// (with `--histogram=1`) by `Percentiles: P50: a P75: b P99: c P99.9: d ...`.
pub fn parse(output: &str) -> Result<BTreeMap<String, Measured>, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        let line = line.trim();
        if let Some((name, rest)) = line.split_once(':') {
            let name = name.trim();
            if rest.contains("micros/op") && rest.contains("ops/sec") && !name.contains(' ') {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let ops = words
                    .iter()
                    .position(|w| *w == "ops/sec")
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| words[i].parse::<f64>().ok())
                    .ok_or_else(|| format!("cannot read ops/sec in {line:?}"))?;
                out.insert(
                    name.to_string(),
                    Measured {
                        ops_per_s: ops,
                        ..Measured::default()
                    },
                );
                current = Some(name.to_string());
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("Percentiles:") {
            let Some(name) = current.take() else { continue };
            let words: Vec<&str> = rest.split_whitespace().collect();
            let pick = |label: &str| -> Option<f64> {
                let i = words.iter().position(|w| *w == label)?;
                words.get(i + 1)?.parse().ok()
            };
            if let Some(m) = out.get_mut(&name) {
                m.p50_us = pick("P50:").ok_or("no P50")?;
                m.p99_us = pick("P99:").ok_or("no P99")?;
                m.p999_us = pick("P99.9:").unwrap_or(0.0);
            }
        }
    }
    if out.is_empty() {
        return Err("db_bench printed no results".into());
    }
    Ok(out)
}

/// Runs db_bench pinned to `cpu` with `args`; returns parsed results.
pub fn run(cpu: usize, db: &Path, args: &[String]) -> Result<BTreeMap<String, Measured>, String> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpu.to_string()).arg("db_bench");
    cmd.arg(format!("--db={}", db.display()));
    cmd.args(args);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run db_bench (install rocksdb-tools): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "db_bench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Debian's db_bench 7.8.3 on this kind of machine.
    const SAMPLE: &str = "DB path: [/tmp/dbb/db]
fillrandom   :      21.420 micros/op 46682 ops/sec 0.428 seconds 20000 operations;    5.2 MB/s
Microseconds per write:
Count: 20000 Average: 21.6434  StdDev: 235.90
Min: 5  Median: 8.5572  Max: 14639
Percentiles: P50: 8.56 P75: 9.86 P99: 28.92 P99.9: 3879.59 P99.99: 5500.00

DB path: [/tmp/dbb/db]
readrandom   :       3.927 micros/op 254598 ops/sec 0.079 seconds 20000 operations;   17.8 MB/s (12625 of 20000 found)

Microseconds per read:
Count: 20000 Average: 3.9341  StdDev: 94.49
Min: 0  Median: 1.5925  Max: 8103
Percentiles: P50: 1.59 P75: 2.25 P99: 5.56 P99.9: 53.27 P99.99: 5866.67
";

    #[test]
    fn parses_throughput_and_percentiles() {
        let r = parse(SAMPLE).unwrap();
        let f = &r["fillrandom"];
        assert_eq!(f.ops_per_s, 46682.0);
        assert_eq!((f.p50_us, f.p99_us, f.p999_us), (8.56, 28.92, 3879.59));
        assert_eq!(r["readrandom"].p99_us, 5.56);
        assert!(parse("nothing here").is_err());
    }
}
