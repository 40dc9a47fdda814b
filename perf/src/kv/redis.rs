//! The real `redis-benchmark`: running it and reading its report.
//!
//! Redis 7's `--csv` gives rps and p50/p95/p99 but not p99.9, so the suite reads the
//! default report instead: the "throughput summary" line, the "latency summary" table
//! (avg min p50 p95 p99 max, in ms) and the "Latency by percentile distribution"
//! (hdrhistogram steps; p99.9 is the first step at or above 99.9%).

use super::driver::Result;
use std::net::SocketAddr;
use std::process::Command;

/// What redis-benchmark reported.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: Option<f64>,
    pub requests: u64,
}

/// `redis-server --version`'s version, e.g. "7.0.15".
pub fn server_version(bin: &str) -> Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{bin} --version: {e} (install redis-server)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| format!("cannot read a version in {text:?}").into())
}

fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map(str::to_string)
}

/// The redis-benchmark command for `test` (`get` or `set`).
pub fn command(
    bin: &str,
    addr: SocketAddr,
    test: &str,
    requests: u64,
    connections: usize,
    pipeline: usize,
    keys: u64,
    value_bytes: usize,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-t")
        .arg(test)
        .arg("-n")
        .arg(requests.to_string())
        .arg("-c")
        .arg(connections.to_string())
        .arg("-P")
        .arg(pipeline.to_string())
        .arg("-r")
        .arg(keys.to_string())
        .arg("-d")
        .arg(value_bytes.to_string());
    cmd
}

/// The command line as text, for the JSON.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(mut cmd: Command) -> Result<BenchReport> {
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e} (install redis-tools)", describe(&cmd)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    parse_report(&text).ok_or_else(|| {
        format!(
            "cannot read redis-benchmark's report:\n{}",
            text.chars()
                .rev()
                .take(2000)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>()
        )
        .into()
    })
}

fn ms_to_us(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().map(|ms| ms * 1000.0)
}

/// Reads the default (non-CSV) report of one test.
pub fn parse_report(text: &str) -> Option<BenchReport> {
    // Progress lines end in '\r', not '\n'.
    let lines: Vec<&str> = text.split(['\n', '\r']).map(str::trim).collect();
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut p999 = None;
    let mut requests = None;
    let mut in_percentiles = false;
    for (i, l) in lines.iter().enumerate() {
        if let Some(rest) = l.strip_prefix("throughput summary:") {
            rps = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok());
        } else if l.starts_with("latency summary") {
            // Header line, then values: avg min p50 p95 p99 max.
            let header: Vec<&str> = lines.get(i + 1)?.split_whitespace().collect();
            let values: Vec<&str> = lines.get(i + 2)?.split_whitespace().collect();
            let col = |name: &str| {
                header
                    .iter()
                    .position(|h| *h == name)
                    .and_then(|j| values.get(j))
                    .and_then(|v| ms_to_us(v))
            };
            p50 = col("p50");
            p99 = col("p99");
        } else if l.starts_with("Latency by percentile distribution") {
            in_percentiles = true;
        } else if in_percentiles {
            // "99.902% <= 4.223 milliseconds (cumulative count 19981)"
            let Some((pct, rest)) = l.split_once("% <= ") else {
                in_percentiles = false;
                continue;
            };
            if p999.is_none() && pct.parse::<f64>().is_ok_and(|p| p >= 99.9) {
                p999 = rest.split_whitespace().next().and_then(ms_to_us);
            }
        } else if let Some((n, _)) = l.split_once(" requests completed in") {
            requests = n.trim().parse::<u64>().ok();
        }
    }
    Some(BenchReport {
        rps: rps?,
        p50_us: p50?,
        p99_us: p99?,
        p999_us: p999,
        requests: requests.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed output of redis-benchmark 7.0.15 (`-t set -n 20000 -c 50 -r 1000 -d 100`).
    const REPORT: &str = " SET: rps=0.0 (overall: 0.0) avg_msec=-nan (overall: -nan)\r SET: rps=45633.5 (overall: 45452.4) avg_msec=0.652 (overall: 0.652)\r                                                                    \r====== SET ======
  20000 requests completed in 0.40 seconds
  50 parallel clients
  100 bytes payload
  keep alive: 1
  host configuration \"save\": 
  host configuration \"appendonly\": no
  multi-thread: no

Latency by percentile distribution:
0.000% <= 0.191 milliseconds (cumulative count 1)
50.000% <= 0.511 milliseconds (cumulative count 10261)
99.805% <= 3.743 milliseconds (cumulative count 19961)
99.902% <= 4.223 milliseconds (cumulative count 19981)
99.951% <= 4.359 milliseconds (cumulative count 19991)
100.000% <= 4.567 milliseconds (cumulative count 20000)

Cumulative distribution of latencies:
0.000% <= 0.103 milliseconds (cumulative count 0)
99.875% <= 4.103 milliseconds (cumulative count 19975)
100.000% <= 5.103 milliseconds (cumulative count 20000)

Summary:
  throughput summary: 50377.83 requests per second
  latency summary (msec):
          avg       min       p50       p95       p99       max
        0.578     0.184     0.511     1.159     1.983     4.567
";

    #[test]
    fn reads_the_default_report() {
        let r = parse_report(REPORT).unwrap();
        assert_eq!(r.rps, 50377.83);
        assert!((r.p50_us - 511.0).abs() < 1e-6);
        assert!((r.p99_us - 1983.0).abs() < 1e-6);
        assert!((r.p999_us.unwrap() - 4223.0).abs() < 1e-6);
        assert_eq!(r.requests, 20000);
    }

    #[test]
    fn a_report_without_summary_is_none() {
        assert_eq!(parse_report("ERROR: connection refused"), None);
        // No percentile distribution: p99.9 is unknown, the rest is read.
        let cut: String = REPORT
            .lines()
            .filter(|l| !l.contains("% <= ") || l.contains("cumulative count 0)"))
            .map(|l| format!("{l}\n"))
            .collect();
        let r = parse_report(&cut).unwrap();
        assert_eq!(r.p999_us, None);
    }

    #[test]
    fn reads_the_server_version() {
        assert_eq!(
            parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
            Some("7.0.15".into())
        );
        assert_eq!(parse_version("nonsense"), None);
    }
}
