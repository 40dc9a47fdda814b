//! The blocking client against the fake server in `common`.

mod common;

use std::time::{Duration, Instant};

use common::{FakeServer, Options};
use nextdb_client::{
    BatchOp, BatchResult, Client, Config, Connection, Error, ErrorCode, Request, Response, TtlState,
};

fn secure() -> Options {
    Options {
        require_auth: true,
        ..Options::default()
    }
}

#[test]
fn handshake_without_auth() {
    let srv = FakeServer::start(Options::default());
    let mut conn = Connection::connect(&srv.config()).unwrap();
    assert!(conn.hello_ok().authenticated);
    assert_eq!(conn.hello_ok().server_name, "fake-nextdb");
    let pong = conn
        .execute(&Request::Ping {
            payload: b"x".to_vec(),
        })
        .unwrap();
    assert_eq!(
        pong,
        Response::Pong {
            payload: b"x".to_vec()
        }
    );
}

#[test]
fn handshake_with_scram() {
    let srv = FakeServer::start(secure());
    let conn = Connection::connect(&srv.auth_config()).unwrap();
    assert!(!conn.hello_ok().authenticated);
    assert_eq!(
        conn.hello_ok().version,
        nextdb_client::proto::limits::MAX_VERSION
    );
    let client = Client::connect(srv.auth_config()).unwrap();
    client.put(b"k", b"v").unwrap();
    assert_eq!(client.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn wrong_password_fails_without_retrying() {
    let srv = FakeServer::start(secure());
    let cfg = srv.config().credentials("alice", "nope");
    let err = Connection::connect(&cfg).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    let err = Client::connect(cfg).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    // One connection for Connection::connect, one for Client::connect: no retries.
    assert_eq!(srv.stats.get(&srv.stats.connections), 2);
}

#[test]
fn unknown_user_and_missing_credentials_fail() {
    let srv = FakeServer::start(secure());
    let err = Connection::connect(&srv.config().credentials("bob", "pw")).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    let err = Connection::connect(&srv.config()).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
}

#[test]
fn forged_server_signature_is_rejected() {
    let srv = FakeServer::start(Options {
        require_auth: true,
        forge_signature: true,
    });
    let err = Connection::connect(&srv.auth_config()).unwrap_err();
    match err {
        Error::Auth(m) => assert!(m.contains("signature"), "{m}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn crud_and_scan_all_through_tokens() {
    let srv = FakeServer::start(secure());
    let c = Client::connect(srv.auth_config()).unwrap();
    for i in 0..25u32 {
        c.put(format!("key{i:03}").as_bytes(), &i.to_le_bytes())
            .unwrap();
    }
    c.put(b"other", b"x").unwrap();
    assert_eq!(c.get(b"key007").unwrap(), Some(7u32.to_le_bytes().to_vec()));
    assert_eq!(c.get(b"absent").unwrap(), None);
    c.delete(b"key007").unwrap();
    assert_eq!(c.get(b"key007").unwrap(), None);

    let scans_before = srv.stats.get(&srv.stats.scans);
    let all = c.scan_all(b"key", Some(b"kez"), 7).unwrap();
    let keys: Vec<String> = all
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..25u32)
        .filter(|&i| i != 7)
        .map(|i| format!("key{i:03}"))
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(all[0].1, 0u32.to_le_bytes());
    // 24 entries, 7 per page: 4 pages.
    assert_eq!(srv.stats.get(&srv.stats.scans) - scans_before, 4);

    let page = c.scan(b"key", Some(b"kez"), 5, b"").unwrap();
    assert_eq!(page.entries.len(), 5);
    assert_eq!(page.token, b"key004");
    let next = c.scan(b"key", Some(b"kez"), 5, &page.token).unwrap();
    assert_eq!(next.entries[0].0, b"key005");
}

#[test]
fn other_operations() {
    let srv = FakeServer::start(Options::default());
    let c = Client::connect(srv.config()).unwrap();
    assert_eq!(c.incr(b"n", 5).unwrap(), 5);
    assert_eq!(c.incr(b"n", -2).unwrap(), 3);
    c.put(b"s", b"text").unwrap();
    let err = c.incr(b"s", 1).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotAnInteger));
    assert!(!err.is_retryable());

    let r = c.cas(b"c", None, Some(b"1")).unwrap();
    assert!(r.swapped);
    let r = c.cas(b"c", Some(b"2"), Some(b"3")).unwrap();
    assert!(!r.swapped);
    assert_eq!(r.current, Some(b"1".to_vec()));

    c.put_with_ttl(b"t", b"v", Duration::from_secs(30)).unwrap();
    assert_eq!(c.ttl(b"t").unwrap(), TtlState::ExpiresIn(30_000));
    assert!(c.expire(b"t", None).unwrap());
    assert_eq!(c.ttl(b"t").unwrap(), TtlState::Persistent);
    assert!(!c.expire(b"missing", Some(Duration::from_secs(1))).unwrap());
    assert_eq!(c.ttl(b"missing").unwrap(), TtlState::Missing);
    // Sub-millisecond TTLs must not turn into "no TTL" (0 on the wire).
    assert!(c.expire(b"t", Some(Duration::from_micros(10))).unwrap());
    assert_eq!(c.ttl(b"t").unwrap(), TtlState::ExpiresIn(1));

    let res = c
        .batch(
            true,
            vec![
                BatchOp::Put {
                    key: b"b1".to_vec(),
                    value: b"x".to_vec(),
                    ttl_ms: None,
                },
                BatchOp::Get {
                    key: b"b1".to_vec(),
                },
                BatchOp::Delete {
                    key: b"b1".to_vec(),
                },
            ],
        )
        .unwrap();
    assert_eq!(
        res,
        vec![
            BatchResult::Done,
            BatchResult::Value(Some(b"x".to_vec())),
            BatchResult::Done
        ]
    );
    c.ping().unwrap();
    assert!(c.stats().unwrap().starts_with('{'));
}

#[test]
fn invalid_arguments_are_caught_locally_and_keep_the_connection() {
    let srv = FakeServer::start(Options::default());
    let c = Client::connect(srv.config()).unwrap();
    let err = c.scan(b"", None, 0, b"").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = c.get(&vec![0u8; 70_000]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = c
        .put_with_ttl(b"k", b"v", Duration::from_secs(200 * 365 * 24 * 3600))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    c.ping().unwrap();
    assert_eq!(srv.stats.get(&srv.stats.connections), 1);
}

#[test]
fn pipeline_returns_responses_in_request_order() {
    let srv = FakeServer::start(Options::default());
    let mut conn = Connection::connect(&srv.config()).unwrap();
    let mut reqs = Vec::new();
    for i in 0..20u32 {
        reqs.push(Request::Put {
            key: format!("p{i}").into_bytes(),
            value: i.to_string().into_bytes(),
            ttl_ms: None,
        });
    }
    let out = conn.pipeline(&reqs).unwrap();
    assert_eq!(out, vec![Response::Done; 20]);
    let gets: Vec<Request> = (0..20u32)
        .map(|i| Request::Get {
            key: format!("p{i}").into_bytes(),
        })
        .collect();
    let out = conn.pipeline(&gets).unwrap();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r, &Response::Value(Some(i.to_string().into_bytes())));
    }
    // The fake server answered whole groups in reverse.
    assert!(srv.stats.get(&srv.stats.reordered) >= 2);

    // Mixed kinds and a per-request error through the Client.
    let c = Client::connect(srv.config()).unwrap();
    c.put(b"txt", b"abc").unwrap();
    let out = c
        .pipeline(vec![
            Request::Get {
                key: b"p3".to_vec(),
            },
            Request::Incr {
                key: b"txt".to_vec(),
                delta: 1,
            },
            Request::Stats,
            Request::Ping {
                payload: b"z".to_vec(),
            },
        ])
        .unwrap();
    assert_eq!(out[0], Response::Value(Some(b"3".to_vec())));
    assert!(
        matches!(out[1], Response::Error { code, .. } if code == ErrorCode::NotAnInteger as u16)
    );
    assert!(matches!(out[2], Response::Stats { .. }));
    assert_eq!(
        out[3],
        Response::Pong {
            payload: b"z".to_vec()
        }
    );
}

#[test]
fn busy_is_retried() {
    let srv = FakeServer::start(Options::default());
    let c = Client::connect(srv.config()).unwrap();
    c.put(b"busy-once:a", b"1").unwrap();
    assert_eq!(srv.stats.get(&srv.stats.busy_sent), 1);
    assert_eq!(c.get(b"busy-once:a").unwrap(), Some(b"1".to_vec()));
    // BUSY means "not applied": even INCR is resent.
    assert_eq!(c.incr(b"busy-once:n", 2).unwrap(), 2);
    assert_eq!(srv.stats.get(&srv.stats.busy_sent), 2);
    // Retries reuse the connection: BUSY does not close it.
    assert_eq!(srv.stats.get(&srv.stats.connections), 1);

    let no_retry = Client::new(srv.config().max_retries(0)).unwrap();
    let err = no_retry.get(b"busy-once:b").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Busy));
    assert!(err.is_retryable());
}

#[test]
fn lost_connection_is_retried_only_for_idempotent_requests() {
    let srv = FakeServer::start(Options::default());
    let c = Client::new(srv.config().max_retries(2)).unwrap();
    let err = c.get(b"__drop").unwrap_err();
    assert!(matches!(err, Error::Closed | Error::Io(_)), "{err:?}");
    assert_eq!(srv.stats.get(&srv.stats.drops), 3);
    let err = c.incr(b"__drop", 1).unwrap_err();
    assert!(matches!(err, Error::Closed | Error::Io(_)), "{err:?}");
    assert_eq!(srv.stats.get(&srv.stats.drops), 4);
    // The pool recovers with a fresh connection.
    c.put(b"k", b"v").unwrap();
}

#[test]
fn connection_closed_while_idle_is_not_reused() {
    let srv = FakeServer::start(Options::default());
    let c = Client::new(srv.config().pool_size(1).max_retries(0)).unwrap();
    c.put(b"__close_after", b"").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Without the check on checkout, this non-idempotent request would go to the dead
    // connection and fail with Closed (and, with no retries, surface it).
    assert_eq!(c.incr(b"n", 1).unwrap(), 1);
    assert_eq!(srv.stats.get(&srv.stats.connections), 2);
}

#[test]
fn request_timeout_when_the_server_never_answers() {
    let srv = FakeServer::start(Options::default());
    let cfg = srv
        .config()
        .request_timeout(Duration::from_millis(200))
        .max_retries(0);
    let mut conn = Connection::connect(&cfg).unwrap();
    let t = Instant::now();
    let err = conn
        .execute(&Request::Get {
            key: b"__hang".to_vec(),
        })
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // A late answer could still arrive: the connection is not reused.
    assert!(conn.is_broken());
    assert!(matches!(conn.execute(&Request::Stats), Err(Error::Closed)));

    let c = Client::new(cfg.max_retries(1)).unwrap();
    let t = Instant::now();
    assert!(matches!(c.get(b"__hang"), Err(Error::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(srv.stats.get(&srv.stats.hangs), 3);
    c.put(b"k", b"v").unwrap();
}

#[test]
fn connect_failures() {
    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = Config::new(format!("127.0.0.1:{port}"))
        .max_retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(2));
    let err = Client::new(cfg.clone()).unwrap().get(b"k").unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.is_retryable());
    // A dead first address falls through to a live one.
    let srv = FakeServer::start(Options::default());
    let cfg = cfg.addrs([format!("127.0.0.1:{port}"), srv.addr.clone()]);
    let mut conn = Connection::connect(&cfg).unwrap();
    conn.execute(&Request::Stats).unwrap();
}

#[test]
fn pool_is_shared_and_bounded_across_threads() {
    let srv = FakeServer::start(secure());
    let c = Client::connect(srv.auth_config().pool_size(3)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let k = format!("t{t}-{i}");
                    c.put(k.as_bytes(), k.as_bytes()).unwrap();
                    assert_eq!(c.get(k.as_bytes()).unwrap(), Some(k.into_bytes()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(srv.stats.get(&srv.stats.connections) <= 3);
    assert!(srv.stats.get(&srv.stats.max_concurrent) <= 3);
    assert_eq!(c.scan_all(b"t", Some(b"u"), 100).unwrap().len(), 400);
}

#[test]
fn url_config_connects() {
    let srv = FakeServer::start(secure());
    let c = Client::connect(Config::from_url(&format!("nextdb://alice:pw@{}", srv.addr)).unwrap())
        .unwrap();
    c.ping().unwrap();
}
