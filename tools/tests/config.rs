//! Live settings against a real server (`nextdb admin config`, CONFIG in the native
//! protocol): a change reaches every core at once and shows where an operator looks
//! (the slow-operation log, `/metrics`), bad names and values get stable codes, and
//! the node keeps serving.

mod common;

use common::http;
use common::{Opts, Raw, Server, bin, err_code, free_port};
use nextdb_proto::{BatchOp, ConfigRequest, ErrorCode, Request, Response};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn start(extra: &[&str], sync: &'static str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        sync,
        ..Opts::default()
    };
    let s = Server::start(dir.path(), &opts);
    (dir, s)
}

fn connect(addr: SocketAddr) -> Raw {
    let mut c = Raw::connect(addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    c
}

fn set(c: &mut Raw, name: &str, value: &str) -> Response {
    c.call(Request::Config(ConfigRequest::Set {
        name: name.into(),
        value: value.into(),
    }))
}

fn get(c: &mut Raw, name: Option<&str>) -> Response {
    c.call(Request::Config(ConfigRequest::Get {
        name: name.map(str::to_string),
    }))
}

fn one(name: &str, value: &str) -> Response {
    Response::Config {
        settings: vec![(name.to_string(), value.to_string())],
    }
}

/// A BATCH that cannot finish within 1 ms: 4 MiB of values written and fsynced.
fn big_batch(round: u64) -> Request {
    let ops = (0..64u32)
        .map(|i| BatchOp::Put {
            key: format!("load-{}-{i}", round % 4).into_bytes(),
            value: vec![b'v'; 64 << 10],
            ttl_ms: None,
        })
        .collect();
    Request::Batch { atomic: false, ops }
}

/// The JSON slow-operation events among server output lines.
fn slow_events(lines: &[String]) -> usize {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("stderr: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "nextdb::slow_op")
        .count()
}

/// Output lines arriving within `d`.
fn lines_for(s: &Server, d: Duration) -> Vec<String> {
    let end = Instant::now() + d;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Ok(l) = s.output.recv_timeout(left) {
            out.push(l);
        }
    }
    out
}

/// A writer of big batches on its own connection until `stop`; counts batches done.
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = connect(addr);
        let mut round = 0;
        while !stop.load(Ordering::Relaxed) {
            assert!(matches!(c.call(big_batch(round)), Response::Batch(_)));
            round += 1;
            done.fetch_add(1, Ordering::Relaxed);
        }
    })
}

fn wait_batches(done: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while done.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "the load stopped making progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_slow_op_threshold_changes_under_load() {
    let (_dir, s) = start(&["--log-format", "json", "--slow-op-ms", "0"], "fsync");
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let writer = load(s.addr, stop.clone(), done.clone());
    let mut c = connect(s.addr);
    wait_batches(&done, 2);
    assert_eq!(slow_events(&lines_for(&s, Duration::from_millis(200))), 0);

    assert_eq!(set(&mut c, "slow_op_ms", "1"), one("slow_op_ms", "1"));
    let n = done.load(Ordering::Relaxed);
    wait_batches(&done, n + 3);
    let on = lines_for(&s, Duration::from_millis(300));
    assert!(
        slow_events(&on) > 0,
        "no slow-op line at 1 ms:\n{}",
        on.join("\n")
    );

    assert_eq!(set(&mut c, "slow_op_ms", "0"), one("slow_op_ms", "0"));
    // Lines of requests answered before the change may still be in the pipe.
    lines_for(&s, Duration::from_millis(300));
    let n = done.load(Ordering::Relaxed);
    wait_batches(&done, n + 3);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(get(&mut c, Some("slow_op_ms")), one("slow_op_ms", "0"));
    let (_, off) = s.terminate();
    assert_eq!(
        slow_events(&off),
        0,
        "slow-op lines with the log off:\n{}",
        off.join("\n")
    );
}

/// Each shard's value of a per-shard `/metrics` family.
fn per_shard(metrics: &str, family: &str) -> Vec<f64> {
    let prefix = format!("{family}{{");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

fn read_all(c: &mut Raw, rounds: u64) {
    for round in 0..rounds {
        let ops = (0..64u32)
            .map(|i| BatchOp::Get {
                key: format!("cache-{round}-{i}").into_bytes(),
            })
            .collect();
        let r = c.call(Request::Batch { atomic: false, ops });
        assert!(matches!(r, Response::Batch(_)), "{r:?}");
    }
}

#[test]
fn shrinking_the_block_cache_shows_in_metrics_and_holds_under_reads() {
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = web.to_string();
    let (_dir, s) = start(&["--http-listen", &listen], "none");
    let mut c = connect(s.addr);
    // 24 MiB over two shards with 8 MiB memtables: most of it flushed to tables,
    // whose blocks the reads then pull into the 16 MiB caches.
    let rounds = 6;
    for round in 0..rounds {
        let ops = (0..64u32)
            .map(|i| BatchOp::Put {
                key: format!("cache-{round}-{i}").into_bytes(),
                value: vec![round as u8; 64 << 10],
                ttl_ms: None,
            })
            .collect();
        assert!(matches!(
            c.call(Request::Batch { atomic: false, ops }),
            Response::Batch(_)
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        read_all(&mut c, rounds);
        let m = http::get(web, "/metrics").body;
        if per_shard(&m, "nextdb_block_cache_bytes")
            .iter()
            .any(|&b| b > 2.0 * 1048576.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the block caches never filled:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_eq!(
        set(&mut c, "block_cache_mb", "1"),
        one("block_cache_mb", "1")
    );
    for _ in 0..3 {
        let m = http::get(web, "/metrics").body;
        assert_eq!(
            per_shard(&m, "nextdb_block_cache_capacity_bytes"),
            [1048576.0; 2]
        );
        let used = per_shard(&m, "nextdb_block_cache_bytes");
        assert!(
            used.len() == 2 && used.iter().all(|&b| b <= 1048576.0),
            "{used:?}"
        );
        read_all(&mut c, rounds);
    }
    // Growing back keeps serving and shows too.
    assert_eq!(
        set(&mut c, "block_cache_mb", "32"),
        one("block_cache_mb", "32")
    );
    let m = http::get(web, "/metrics").body;
    assert_eq!(
        per_shard(&m, "nextdb_block_cache_capacity_bytes"),
        [33554432.0; 2]
    );
}

#[test]
fn unknown_names_and_bad_values_get_stable_codes_and_the_node_keeps_serving() {
    let (_dir, s) = start(&[], "none");
    let mut c = connect(s.addr);
    let before = get(&mut c, None);
    let Response::Config { settings } = &before else {
        panic!("{before:?}")
    };
    let names: Vec<&str> = settings.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "slow_op_ms",
            "slow_op_redact",
            "block_cache_mb",
            "row_cache_mb",
            "background_shares"
        ]
    );
    assert_eq!(settings[2].1, "16", "the serve flag is the default");

    let unknown = ErrorCode::UnknownSetting as u16;
    let invalid = ErrorCode::InvalidArgument as u16;
    assert_eq!(err_code(&set(&mut c, "block_cache", "8")), Some(unknown));
    assert_eq!(err_code(&get(&mut c, Some("nope"))), Some(unknown));
    for (name, value) in [
        ("slow_op_ms", "fast"),
        ("slow_op_ms", "-1"),
        ("slow_op_ms", "3600001"),
        ("slow_op_redact", "yes"),
        ("block_cache_mb", "0"),
        ("block_cache_mb", "1048577"),
        ("row_cache_mb", "1.5"),
        ("background_shares", "0"),
        ("background_shares", "1001"),
    ] {
        assert_eq!(
            err_code(&set(&mut c, name, value)),
            Some(invalid),
            "{name} = {value}"
        );
    }
    // Nothing changed, and the same connection still serves data.
    assert_eq!(get(&mut c, None), before);
    let put = Request::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ttl_ms: None,
    };
    assert_eq!(c.call(put), Response::Done);
    assert_eq!(
        c.call(Request::Get { key: b"k".to_vec() }),
        Response::Value(Some(b"v".to_vec()))
    );
    // Valid changes to the other settings apply on every core.
    assert_eq!(
        set(&mut c, "background_shares", "1000"),
        one("background_shares", "1000")
    );
    assert_eq!(set(&mut c, "row_cache_mb", "0"), one("row_cache_mb", "0"));

    // Like BACKUP, CONFIG needs an authenticated session.
    let mut anon = Raw::connect(s.addr);
    let r = set(&mut anon, "slow_op_ms", "1");
    assert_eq!(err_code(&r), Some(ErrorCode::AuthRequired as u16));
    assert_eq!(get(&mut c, Some("slow_op_ms")), one("slow_op_ms", "100"));
}

fn cli(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin())
        .args(["admin", "config"])
        .args(args)
        .args(["--addr", &addr.to_string()])
        .output()
        .expect("run nextdb admin config");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_cli_sets_and_gets() {
    let (_dir, s) = start(&[], "none");
    let (ok, out, err) = cli(s.addr, &["set", "slow_op_redact", "true"]);
    assert!(ok, "{err}");
    assert_eq!(out, "slow_op_redact = true\n");
    let (ok, out, _) = cli(s.addr, &["get", "slow_op_redact"]);
    assert!(ok);
    assert_eq!(out, "slow_op_redact = true\n");
    let (ok, out, _) = cli(s.addr, &["get"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.contains("slow_op_redact = true\n") && out.contains("block_cache_mb = 16\n"),
        "{out}"
    );

    let (ok, out, err) = cli(s.addr, &["set", "slow_op_msec", "5"]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("UNKNOWN_SETTING"), "{err}");
    let (ok, _, err) = cli(s.addr, &["set", "block_cache_mb", "lots"]);
    assert!(!ok);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("block_cache_mb"),
        "{err}"
    );
}
