//! End-to-end: a real `nextdb serve` process on loopback, driven through the Rust
//! client and the CLI.

mod common;

use common::{Opts, Server, add_user, bin};
use nextdb_client::{BatchOp, BatchResult, Client, Config, Error, ErrorCode, TtlState};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

fn client(s: &Server) -> Client {
    Client::connect(Config::new(s.addr.to_string()).pool_size(8)).expect("connect")
}

#[test]
fn operations_and_many_concurrent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let c = client(&s);

    // Basic operations.
    c.put(b"a", b"1").unwrap();
    assert_eq!(c.get(b"a").unwrap(), Some(b"1".to_vec()));
    c.delete(b"a").unwrap();
    assert_eq!(c.get(b"a").unwrap(), None);
    assert_eq!(c.get(b"").unwrap(), None);

    // CAS: create-if-absent, swap, mismatch, delete-if-equal.
    let r = c.cas(b"lock", None, Some(b"owner1")).unwrap();
    assert!(r.swapped);
    let r = c.cas(b"lock", None, Some(b"owner2")).unwrap();
    assert!(!r.swapped);
    assert_eq!(r.current, Some(b"owner1".to_vec()));
    assert!(c.cas(b"lock", Some(b"owner1"), None).unwrap().swapped);
    assert_eq!(c.get(b"lock").unwrap(), None);

    // INCR.
    assert_eq!(c.incr(b"n", 5).unwrap(), 5);
    assert_eq!(c.incr(b"n", -7).unwrap(), -2);
    c.put(b"text", b"abc").unwrap();
    match c.incr(b"text", 1) {
        Err(Error::Server { code, .. }) => assert_eq!(code, Some(ErrorCode::NotAnInteger)),
        r => panic!("{r:?}"),
    }

    // TTL and EXPIRE.
    c.put_with_ttl(b"t", b"v", Duration::from_millis(300))
        .unwrap();
    match c.ttl(b"t").unwrap() {
        TtlState::ExpiresIn(ms) => assert!(ms <= 300 && ms > 0),
        t => panic!("{t:?}"),
    }
    assert_eq!(c.ttl(b"n").unwrap(), TtlState::Persistent);
    assert_eq!(c.ttl(b"missing").unwrap(), TtlState::Missing);
    assert!(c.expire(b"n", Some(Duration::from_secs(100))).unwrap());
    assert!(!c.expire(b"missing", Some(Duration::from_secs(1))).unwrap());
    assert_eq!(c.incr(b"n", 1).unwrap(), -1);
    assert!(
        matches!(c.ttl(b"n").unwrap(), TtlState::ExpiresIn(_)),
        "INCR keeps the TTL"
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get(b"t").unwrap(), None);
    assert!(c.expire(b"n", None).unwrap());
    assert_eq!(c.ttl(b"n").unwrap(), TtlState::Persistent);

    // Batches: non-atomic across shards, atomic must stay in one partition.
    let ops: Vec<BatchOp> = (0..100)
        .map(|i| BatchOp::Put {
            key: format!("b:{i:03}").into_bytes(),
            value: vec![b'x'; i],
            ttl_ms: None,
        })
        .collect();
    let r = c.batch(false, ops).unwrap();
    assert_eq!(r.len(), 100);
    let gets: Vec<BatchOp> = (0..100)
        .map(|i| BatchOp::Get {
            key: format!("b:{i:03}").into_bytes(),
        })
        .collect();
    for (i, r) in c.batch(false, gets).unwrap().into_iter().enumerate() {
        assert_eq!(r, BatchResult::Value(Some(vec![b'x'; i])));
    }
    let cross = vec![
        BatchOp::Put {
            key: b"b:000".to_vec(),
            value: b"1".to_vec(),
            ttl_ms: None,
        },
        BatchOp::Put {
            key: b"b:001".to_vec(),
            value: b"1".to_vec(),
            ttl_ms: None,
        },
        BatchOp::Put {
            key: b"b:002".to_vec(),
            value: b"1".to_vec(),
            ttl_ms: None,
        },
        BatchOp::Put {
            key: b"b:003".to_vec(),
            value: b"1".to_vec(),
            ttl_ms: None,
        },
    ];
    match c.batch(true, cross) {
        Err(Error::Server { code, .. }) => assert_eq!(code, Some(ErrorCode::CrossPartition)),
        r => panic!("atomic batch over two shards: {r:?}"),
    }
    assert_eq!(
        c.get(b"b:000").unwrap(),
        Some(Vec::new()),
        "nothing of the refused batch applied"
    );
    let one = vec![
        BatchOp::Put {
            key: b"solo".to_vec(),
            value: b"1".to_vec(),
            ttl_ms: None,
        },
        BatchOp::Delete {
            key: b"solo".to_vec(),
        },
    ];
    c.batch(true, one).unwrap();

    // Many concurrent clients, each with its own keys, plus a shared counter.
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let c = client(&s);
            std::thread::spawn(move || {
                let mut model = BTreeMap::new();
                for i in 0..300u32 {
                    let k = format!("t{t:02}:{:04}", i % 50).into_bytes();
                    match i % 4 {
                        0 | 1 => {
                            let v = format!("{t}-{i}").into_bytes();
                            c.put(&k, &v).unwrap();
                            model.insert(k, v);
                        }
                        2 => {
                            c.delete(&k).unwrap();
                            model.remove(&k);
                        }
                        _ => assert_eq!(c.get(&k).unwrap(), model.get(&k).cloned()),
                    }
                    if i % 10 == 0 {
                        c.incr(b"shared", 1).unwrap();
                    }
                }
                for (k, v) in &model {
                    assert_eq!(c.get(k).unwrap().as_ref(), Some(v));
                }
                model
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    assert_eq!(
        c.get(b"shared").unwrap(),
        Some(b"480".to_vec()),
        "16 x 30 increments"
    );

    // SCAN across shards, in pages, matches the model exactly.
    let got = c.scan_all(b"t0", Some(b"t2"), 37).unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = all.into_iter().collect();
    assert_eq!(got, want);
    let page = c.scan(b"b:", Some(b"b;"), 10, &[]).unwrap();
    assert_eq!(page.entries.len(), 10);
    assert!(!page.token.is_empty());
    let rest = c.scan(b"b:", Some(b"b;"), 1000, &page.token).unwrap();
    assert_eq!(rest.entries.len(), 90);
    assert!(rest.token.is_empty());
    assert_eq!(rest.entries[0].0, b"b:010".to_vec());

    // STATS sees all of it.
    let stats: serde_json::Value = serde_json::from_str(&c.stats().unwrap()).unwrap();
    assert!(stats["node"]["ops"]["put"]["count"].as_u64().unwrap() > 2000);
    assert_eq!(stats["shards"].as_array().unwrap().len(), 2);
}

#[test]
fn pipelined_requests_come_back_matched() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let c = client(&s);
    use nextdb_client::{Request, Response};
    let puts: Vec<Request> = (0..500)
        .map(|i| Request::Put {
            key: format!("p{i}").into_bytes(),
            value: format!("{i}").into_bytes(),
            ttl_ms: None,
        })
        .collect();
    for r in c.pipeline(puts).unwrap() {
        assert_eq!(r, Response::Done);
    }
    let gets: Vec<Request> = (0..500)
        .map(|i| Request::Get {
            key: format!("p{i}").into_bytes(),
        })
        .collect();
    for (i, r) in c.pipeline(gets).unwrap().into_iter().enumerate() {
        assert_eq!(r, Response::Value(Some(format!("{i}").into_bytes())));
    }
}

#[test]
fn cli_kv_and_admin_against_an_authenticated_node() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "ops", "s3cret");
    let s = Server::start(
        dir.path(),
        &Opts {
            insecure: false,
            ..Opts::default()
        },
    );
    let run = |args: &[&str], pw: &str| {
        let out = Command::new(bin())
            .args(args)
            .args(["--addr", &s.addr.to_string(), "--user", "ops"])
            .env("NEXTDB_PASSWORD", pw)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(run(&["kv", "put", "city:1", "Lyon"], "s3cret").0, Some(0));
    assert_eq!(run(&["kv", "put", "city:2", "Oslo"], "s3cret").0, Some(0));
    let (code, out, _) = run(&["kv", "get", "city:1"], "s3cret");
    assert_eq!((code, out.trim()), (Some(0), "Lyon"));
    let (code, out, _) = run(&["kv", "scan", "--prefix", "city:"], "s3cret");
    assert_eq!(code, Some(0));
    assert!(
        out.contains("city:1 = Lyon") && out.contains("city:2 = Oslo") && out.contains("(2 rows)"),
        "{out}"
    );
    assert_eq!(run(&["kv", "del", "city:1"], "s3cret").0, Some(0));
    assert_eq!(run(&["kv", "get", "city:1"], "s3cret").0, Some(1));
    let (code, _, err) = run(&["kv", "get", "city:2"], "wrong");
    assert_ne!(code, Some(0));
    assert!(
        err.contains("AUTH_FAILED") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    let (code, out, err) = run(&["admin", "stats"], "s3cret");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("shard 0") && out.contains("shard 1") && out.contains("put"),
        "{out}"
    );
}

#[test]
fn graceful_shutdown_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let addr = s.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let c = Client::connect(Config::new(addr.to_string()).max_retries(0)).unwrap();
                let mut acked = Vec::new();
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = format!("g{t}:{i}");
                    match c.put(k.as_bytes(), b"v") {
                        Ok(()) => acked.push(k),
                        Err(_) => break,
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (code, lines) = s.terminate();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("stopped cleanly")),
        "{lines:?}"
    );
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(!acked.is_empty());
    let s = Server::start(dir.path(), &Opts::default());
    let c = client(&s);
    for k in &acked {
        assert_eq!(
            c.get(k.as_bytes()).unwrap(),
            Some(b"v".to_vec()),
            "{k} lost"
        );
    }
}

#[test]
fn restarting_with_another_shard_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    s.terminate();
    let out = Command::new(bin())
        .args([
            "serve",
            "--insecure",
            "--shards",
            "3",
            "--listen",
            "127.0.0.1:1",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shards 2"));
}

#[test]
fn credentials_require_mutual_authentication_even_on_an_insecure_node() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "dev", "pw");
    let s = Server::start(dir.path(), &Opts::default());
    // A known user gets a real SCRAM exchange (and a verified server signature).
    let c = Client::connect(Config::new(s.addr.to_string()).credentials("dev", "pw")).unwrap();
    c.put(b"k", b"v").unwrap();
    // A wrong password is refused, as on a secure node.
    let r = Client::connect(
        Config::new(s.addr.to_string())
            .credentials("dev", "nope")
            .max_retries(0),
    );
    assert!(matches!(r, Err(Error::Auth(_))), "{:?}", r.err());
    // An unknown user would be let in without authentication: the client refuses.
    let r = Client::connect(
        Config::new(s.addr.to_string())
            .credentials("ghost", "pw")
            .max_retries(0),
    );
    assert!(matches!(r, Err(Error::Auth(_))), "{:?}", r.err());
    // Without credentials the insecure node still serves.
    assert_eq!(client(&s).get(b"k").unwrap(), Some(b"v".to_vec()));
}
