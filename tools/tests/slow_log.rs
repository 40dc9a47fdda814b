//! The slow-operation log against a real server: a request at or above
//! `--slow-op-ms` is logged once, with its key (or, redacted, its length and hash), its
//! timing breakdown (queue, exec = storage + commit, network) and its core; with the
//! log off nothing is.

mod common;

use common::{Opts, Raw, Server};
use nextdb_proto::{BatchOp, Request, Response};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A BATCH that cannot finish within 1 ms: 4 MiB of values written to the log and
/// fsynced before the answer.
fn big_batch(first_key: &[u8]) -> Request {
    let ops = (0..64u32)
        .map(|i| BatchOp::Put {
            key: [first_key, &i.to_be_bytes()].concat(),
            value: vec![b'v'; 64 << 10],
            ttl_ms: None,
        })
        .collect();
    Request::Batch { atomic: false, ops }
}

fn start(extra: &[&str]) -> (tempfile::TempDir, Server) {
    start_with(2, extra)
}

fn start_with(shards: usize, extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        shards,
        extra: ["--log-format", "json"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
        ..Opts::default()
    };
    let s = Server::start(dir.path(), &opts);
    (dir, s)
}

fn run_batch(s: &Server, first_key: &[u8]) {
    let mut c = Raw::connect(s.addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    assert!(matches!(c.call(big_batch(first_key)), Response::Batch(_)));
}

/// The JSON slow-operation events among `lines` (stderr of the server).
fn slow_events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("stderr: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "nextdb::slow_op")
        .collect()
}

/// Waits for the first slow-operation event (it is logged once the answer is written,
/// which may be just after the client read it).
fn next_slow_event(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(l) = s.output.recv_timeout(Duration::from_millis(100)) {
            seen.push(l);
            if let Some(v) = slow_events(&seen).pop() {
                return v;
            }
        }
    }
    panic!("no slow-operation event:\n{}", seen.join("\n"));
}

#[test]
fn a_slow_batch_is_logged_with_its_key_breakdown_and_core() {
    let (_dir, s) = start(&["--slow-op-ms", "1"]);
    run_batch(&s, b"slow\x01key");
    let ev = next_slow_event(&s);
    let f = &ev["fields"];
    assert_eq!(f["op"], "batch", "{ev}");
    assert_eq!(f["key"], "slow\\x01key\\x00\\x00\\x00\\x00", "{ev}");
    assert_eq!(f["key_len"], 12, "{ev}");
    let total = f["total_us"].as_u64().unwrap();
    let exec = f["exec_us"].as_u64().unwrap();
    let network = f["network_us"].as_u64().unwrap();
    let queue = f["queue_us"].as_u64().unwrap();
    assert!(exec >= 1000, "{ev}");
    assert_eq!(total, queue + exec + network, "{ev}");
    assert_eq!(
        f["storage_us"].as_u64().unwrap() + f["commit_us"].as_u64().unwrap(),
        exec,
        "{ev}"
    );
    assert!(f["core"].as_u64().unwrap() < 2, "{ev}");
    assert_eq!(ev["level"], "WARN", "{ev}");
}

/// On a one-core node every write of the batch commits on the connection's core, so
/// its log commits (64 appends of 64 KiB, fsynced) show as commit time, apart from
/// the rest of its execution.
#[test]
fn a_slow_write_shows_its_log_commit_time_apart() {
    let (_dir, s) = start_with(1, &["--slow-op-ms", "1"]);
    run_batch(&s, b"commit-key");
    let ev = next_slow_event(&s);
    let f = &ev["fields"];
    let n = |k: &str| f[k].as_u64().unwrap_or_else(|| panic!("no {k}: {ev}"));
    assert!(n("commit_us") > 0, "{ev}");
    assert_eq!(n("storage_us") + n("commit_us"), n("exec_us"), "{ev}");
    assert_eq!(
        n("total_us"),
        n("queue_us") + n("exec_us") + n("network_us"),
        "{ev}"
    );
}

#[test]
fn redaction_hides_the_key() {
    let (_dir, s) = start(&["--slow-op-ms", "1", "--slow-op-redact"]);
    run_batch(&s, b"secret-key");
    let ev = next_slow_event(&s);
    let f = &ev["fields"];
    assert!(f.get("key").is_none(), "{ev}");
    assert_eq!(f["key_len"], 14, "{ev}");
    assert_eq!(f["key_hash"].as_str().map(str::len), Some(16), "{ev}");
    assert!(!ev.to_string().contains("secret"), "{ev}");
}

#[test]
fn with_the_log_off_a_slow_batch_is_not_logged() {
    let (_dir, s) = start(&["--slow-op-ms", "0"]);
    run_batch(&s, b"quiet");
    let (_, lines) = s.terminate();
    assert!(slow_events(&lines).is_empty(), "{}", lines.join("\n"));
}
