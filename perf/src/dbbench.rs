//! Runs RocksDB's `db_bench` and parses what it prints.
//!
//! With `--histogram=1`, db_bench 7.8.3 prints for every benchmark a report line and,
//! a few lines later, the percentiles of its latency histogram (microseconds):
//!
//! ```text
//! readrandom   :       3.384 micros/op 283607 ops/sec 0.011 seconds 3000 operations;   19.5 MB/s (1864 of 3000 found)
//!
//! Microseconds per read:
//! Count: 3000 Average: 3.4117  StdDev: 15.91
//! Min: 1  Median: 1.8242  Max: 503
//! Percentiles: P50: 1.82 P75: 2.48 P99: 8.18 P99.9: 315.00 P99.99: 503.00
//! ```
//!
//! With several threads the line holds the totals of all threads (ops/sec is the sum)
//! and the histogram merges theirs. `waitforcompaction` prints no report line. Its
//! version goes to standard error (`RocksDB:    version 7.8.3`).

use crate::report::Measured;
use std::path::Path;
use std::process::Command;

/// One report of one benchmark, in the order db_bench printed them.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: String,
    pub measured: Measured,
}

fn number<T: std::str::FromStr>(word: &str, what: &str, line: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("db_bench output: cannot read {what} from {word:?} in {line:?}"))
}

/// Parses a report line (`name : X micros/op Y ops/sec S seconds N operations; ...`);
/// `Ok(None)` for any other line.
fn parse_report_line(line: &str) -> Result<Option<Report>, String> {
    let Some((name, rest)) = line.split_once(':') else {
        return Ok(None);
    };
    let name = name.trim();
    let words: Vec<&str> = rest.split_whitespace().collect();
    if name.is_empty()
        || name.contains(char::is_whitespace)
        || words.get(1) != Some(&"micros/op")
        || words.get(3) != Some(&"ops/sec")
    {
        return Ok(None);
    }
    let ops_per_s: f64 = number(words[2], "ops/sec", line)?;
    let ops = match (words.get(6), words.get(7)) {
        (Some(n), Some(w)) if w.starts_with("operations") => Some(number::<u64>(n, "ops", line)?),
        _ => None,
    };
    // `(F of N found)` after readrandom and seekrandom.
    let found = match rest.rfind('(') {
        Some(i) if rest.trim_end().ends_with("found)") => {
            let inner: Vec<&str> = rest[i + 1..].split_whitespace().collect();
            match inner.as_slice() {
                [f, "of", _, "found)"] => Some(number::<u64>(f, "found count", line)?),
                _ => {
                    return Err(format!(
                        "db_bench output: unexpected found count in {line:?}"
                    ));
                }
            }
        }
        _ => None,
    };
    Ok(Some(Report {
        name: name.to_string(),
        measured: Measured {
            ops_per_s,
            ops,
            found,
            ..Measured::default()
        },
    }))
}

/// Parses a whole db_bench standard output. Every report line must be followed by its
/// `Percentiles:` line before the next report (run with `--histogram=1`).
pub fn parse(output: &str) -> Result<Vec<Report>, String> {
    let mut out: Vec<Report> = Vec::new();
    let mut waiting_for_percentiles = false;
    for line in output.lines() {
        let line = line.trim();
        if let Some(r) = parse_report_line(line)? {
            if waiting_for_percentiles {
                return Err(format!(
                    "db_bench output: no percentiles for {:?} (run with --histogram=1)",
                    out.last().map_or("", |r| r.name.as_str())
                ));
            }
            out.push(r);
            waiting_for_percentiles = true;
            continue;
        }
        let Some(rest) = line.strip_prefix("Percentiles:") else {
            continue;
        };
        let Some(last) = out.last_mut().filter(|_| waiting_for_percentiles) else {
            return Err(format!(
                "db_bench output: percentiles without a report: {line:?}"
            ));
        };
        waiting_for_percentiles = false;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let pick = |label: &str| -> Result<f64, String> {
            let i = words
                .iter()
                .position(|w| *w == label)
                .ok_or_else(|| format!("db_bench output: no {label} in {line:?}"))?;
            let w = words
                .get(i + 1)
                .ok_or_else(|| format!("db_bench output: nothing after {label} in {line:?}"))?;
            number(w, label, line)
        };
        last.measured.p50_us = pick("P50:")?;
        last.measured.p99_us = pick("P99:")?;
        last.measured.p999_us = pick("P99.9:")?;
    }
    if waiting_for_percentiles {
        return Err("db_bench output: the last report has no percentiles".into());
    }
    if out.is_empty() {
        return Err("db_bench printed no results".into());
    }
    Ok(out)
}

/// The RocksDB version db_bench reports (`RocksDB:    version 7.8.3`), if any.
pub fn parse_version(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("RocksDB:")?;
        let v = rest.trim().strip_prefix("version")?.trim();
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// What one db_bench process printed.
pub struct Output {
    pub reports: Vec<Report>,
    pub version: Option<String>,
    /// db_bench warns when it was built with assertions (Debian's build is).
    pub assertions_enabled: bool,
}

/// Runs db_bench on database `db` with `args`, in this process's cpuset.
pub fn run(db: &Path, args: &[String]) -> Result<Output, String> {
    let mut cmd = Command::new("db_bench");
    cmd.arg(format!("--db={}", db.display()));
    cmd.args(args);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run db_bench (install rocksdb-tools): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "db_bench {} failed ({}):\n{stdout}\n{stderr}",
            args.join(" "),
            out.status
        ));
    }
    Ok(Output {
        reports: parse(&stdout).map_err(|e| format!("{e}\nfull output:\n{stdout}"))?,
        version: parse_version(&stderr).or_else(|| parse_version(&stdout)),
        assertions_enabled: stdout.contains("Assertions are enabled"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Standard output of Debian's db_bench 7.8.3 on this project's test machine:
    // `--benchmarks=fillseq,fillrandom,waitforcompaction,readtocache,readrandom,readseq,
    // seekrandom --num=5000 --reads=3000 --histogram=1 ...`, then a synced overwrite
    // with 4 threads on the existing database.
    const READS: &str = include_str!("testdata/db_bench_7.8.3_reads.txt");
    const SYNC: &str = include_str!("testdata/db_bench_7.8.3_sync.txt");

    #[test]
    fn parses_real_output_in_order() {
        let r = parse(READS).unwrap();
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "fillseq",
                "fillrandom",
                "readtocache",
                "readrandom",
                "readseq",
                "seekrandom"
            ]
        );
        let f = &r[0].measured;
        assert_eq!(f.ops_per_s, 169073.0);
        assert_eq!((f.p50_us, f.p99_us, f.p999_us), (3.0, 14.8, 282.5));
        assert_eq!((f.ops, f.found), (Some(5000), None));
        let rr = &r[3].measured;
        assert_eq!(rr.ops_per_s, 283607.0);
        assert_eq!((rr.p50_us, rr.p99_us, rr.p999_us), (1.82, 8.18, 315.0));
        assert_eq!((rr.ops, rr.found), (Some(3000), Some(1864)));
        assert_eq!(r[2].measured.ops, Some(3134));
        assert_eq!(r[5].measured.found, Some(1865));
        assert_eq!(r[5].measured.p99_us, 7.5);
    }

    #[test]
    fn parses_multi_threaded_synced_output() {
        let r = parse(SYNC).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "overwrite");
        let m = &r[0].measured;
        assert_eq!((m.ops_per_s, m.ops), (3531.0, Some(2000)));
        assert_eq!(
            (m.p50_us, m.p99_us, m.p999_us),
            (735.29, 12242.86, 140000.0)
        );
    }

    #[test]
    fn rejects_bad_output() {
        assert!(parse("nothing here").is_err());
        // A report without percentiles (no --histogram=1).
        let no_hist =
            "readrandom   :       3.384 micros/op 283607 ops/sec 0.011 seconds 3000 operations;";
        assert!(parse(no_hist).is_err());
        // A malformed number is an error, not a zero.
        let bad = "readrandom   :       3.384 micros/op 28x607 ops/sec 0.011 seconds 3000 operations;\n\
                   Percentiles: P50: 1.82 P75: 2.48 P99: 8.18 P99.9: 315.00 P99.99: 503.00";
        assert!(parse(bad).is_err());
        let bad_pct = "readrandom   :       3.384 micros/op 283607 ops/sec 0.011 seconds 3000 operations;\n\
                   Percentiles: P50: 1.82 P75: 2.48 P99: x P99.9: 315.00";
        assert!(parse(bad_pct).is_err());
    }

    #[test]
    fn reads_the_version() {
        let err = "RocksDB:    version 7.8.3\nDate:       Sat Nov 28 08:09:54 2026\n";
        assert_eq!(parse_version(err).as_deref(), Some("7.8.3"));
        assert_eq!(parse_version("no version"), None);
    }
}
