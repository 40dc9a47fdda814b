//! Shard-aware routing end to end, against a real 2-core node: a client that learned
//! the node's partition map and shard ports sends every single-key request to the
//! core that owns its key, so no core forwards any (the per-core `forwarded` counter
//! of STATS stays 0), and the answers are right; multi-key requests still work through
//! any core. The same load without shard-aware routing is forwarded (so the counter
//! and the test can tell the difference), and a version-1 client still gets a
//! version-1 HELLO answer.

mod common;

use common::{Opts, Raw, Server};
use nextdb_client::{BatchOp, BatchResult, Client, Config, TtlState};
use nextdb_proto::scram::MECHANISM_NONE;
use nextdb_proto::{Hello, Request, Response};
use std::time::Duration;

const KEYS: usize = 2000;

/// Per-core `cross_core.forwarded`, and per-core GET counts, from a STATS document.
fn forwarded_and_gets(c: &Client) -> (Vec<u64>, Vec<u64>) {
    let v: serde_json::Value = serde_json::from_str(&c.stats().unwrap()).unwrap();
    let shards = v["shards"].as_array().unwrap();
    let fwd = shards
        .iter()
        .map(|s| s["cross_core"]["forwarded"].as_u64().unwrap())
        .collect();
    let gets = shards
        .iter()
        .map(|s| s["ops"]["get"]["count"].as_u64().unwrap_or(0))
        .collect();
    (fwd, gets)
}

fn key(i: usize) -> Vec<u8> {
    format!("sa:{i:06}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

#[test]
fn a_shard_aware_client_never_makes_a_core_forward() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let c = Client::connect(Config::new(s.addr.to_string()).pool_size(1)).unwrap();
    assert!(c.routes_by_key(), "the node advertised its shard ports");
    for i in 0..KEYS {
        c.put(&key(i), &value(i)).unwrap();
    }
    for i in 0..KEYS {
        assert_eq!(c.get(&key(i)).unwrap(), Some(value(i)), "key {i}");
    }
    for i in (0..KEYS).step_by(10) {
        c.delete(&key(i)).unwrap();
        assert_eq!(c.get(&key(i)).unwrap(), None);
    }
    assert_eq!(c.incr(b"sa:counter", 5).unwrap(), 5);
    assert_eq!(c.incr(b"sa:counter", -2).unwrap(), 3);
    assert!(c.cas(b"sa:cas", None, Some(b"x")).unwrap().swapped);
    assert!(c.expire(b"sa:cas", Some(Duration::from_secs(60))).unwrap());
    assert!(matches!(c.ttl(b"sa:cas").unwrap(), TtlState::ExpiresIn(_)));
    // One-core batches go to their owner; a batch across cores to any core.
    let one = vec![BatchOp::Get { key: key(1) }];
    assert_eq!(
        c.batch(true, one).unwrap(),
        vec![BatchResult::Value(Some(value(1)))]
    );
    let across: Vec<BatchOp> = (1..50).map(|i| BatchOp::Get { key: key(i) }).collect();
    let got = c.batch(false, across).unwrap();
    assert_eq!(got.len(), 49);
    for (i, r) in (1..50).zip(got) {
        let want = (i % 10 != 0).then(|| value(i));
        assert_eq!(r, BatchResult::Value(want), "batch key {i}");
    }
    let all = c.scan_all(b"sa:0", Some(b"sa:1"), 300).unwrap();
    assert_eq!(all.len(), KEYS - KEYS / 10, "SCAN through any core");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let (fwd, gets) = forwarded_and_gets(&c);
    assert_eq!(
        fwd,
        vec![0, 0],
        "a shard-aware client's requests hopped cores"
    );
    assert!(
        gets.iter().all(|&g| g > 0),
        "both cores served GETs: {gets:?}"
    );

    // Not shard-aware: connections land on one core, which forwards the other's keys.
    let plain = Client::connect(
        Config::new(s.addr.to_string())
            .pool_size(1)
            .shard_aware(false),
    )
    .unwrap();
    assert!(!plain.routes_by_key());
    for i in 1..200 {
        let want = (i % 10 != 0).then(|| value(i));
        assert_eq!(plain.get(&key(i)).unwrap(), want);
    }
    let (fwd, _) = forwarded_and_gets(&plain);
    assert!(
        fwd.iter().sum::<u64>() > 0,
        "without routing some requests must be forwarded: {fwd:?}"
    );
}

#[test]
fn version_1_clients_and_nodes_without_shard_ports_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        extra: vec!["--shard-ports".into(), "off".into()],
        ..Opts::default()
    };
    let s = Server::start(dir.path(), &opts);
    let c = Client::connect(Config::new(s.addr.to_string())).unwrap();
    assert!(!c.routes_by_key(), "no shard ports, no routing");
    c.put(b"k", b"v").unwrap();
    assert_eq!(c.get(b"k").unwrap(), Some(b"v".to_vec()));
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let mut raw = Raw::connect(s.addr);
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        client_name: "v1".into(),
        mechanism: MECHANISM_NONE.into(),
        auth_data: Vec::new(),
    };
    raw.send(&Request::Hello(hello), 0);
    match raw.recv() {
        Some((0, Response::HelloOk(h))) => {
            assert_eq!(h.version, 1);
            assert!(h.partitions.is_empty() && h.shard_ports.is_empty());
        }
        other => panic!("HELLO answer: {other:?}"),
    }
    raw.send(&Request::Get { key: b"k".to_vec() }, 1);
    assert!(matches!(raw.recv(), Some((1, Response::Value(None)))));
}
