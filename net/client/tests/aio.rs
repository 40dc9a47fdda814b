//! The async client (feature `async`) against the fake server in `common`.

#![cfg(feature = "async")]

mod common;

use std::time::{Duration, Instant};

use common::{FakeServer, Options};
use nextdb_client::aio::{Client, Connection};
use nextdb_client::{BatchOp, BatchResult, Error, ErrorCode, Request, Response, TtlState};

fn secure() -> Options {
    Options {
        require_auth: true,
        ..Options::default()
    }
}

#[tokio::test]
async fn handshake_with_and_without_auth() {
    let open = FakeServer::start(Options::default());
    let conn = Connection::connect(&open.config()).await.unwrap();
    assert!(conn.hello_ok().authenticated);

    let srv = FakeServer::start(secure());
    let mut conn = Connection::connect(&srv.auth_config()).await.unwrap();
    assert!(!conn.hello_ok().authenticated);
    assert_eq!(
        conn.execute(&Request::Ping {
            payload: b"a".to_vec()
        })
        .await
        .unwrap(),
        Response::Pong {
            payload: b"a".to_vec()
        }
    );
}

#[tokio::test]
async fn wrong_password_and_forged_signature_fail() {
    let srv = FakeServer::start(secure());
    let err = Client::connect(srv.config().credentials("alice", "nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    let err = Connection::connect(&srv.config()).await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");

    let forged = FakeServer::start(Options {
        require_auth: true,
        forge_signature: true,
    });
    let err = Connection::connect(&forged.auth_config())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
}

#[tokio::test]
async fn crud_scan_and_other_operations() {
    let srv = FakeServer::start(secure());
    let c = Client::connect(srv.auth_config()).await.unwrap();
    for i in 0..23u32 {
        c.put(format!("key{i:03}").as_bytes(), i.to_string().as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(c.get(b"key005").await.unwrap(), Some(b"5".to_vec()));
    c.delete(b"key005").await.unwrap();
    assert_eq!(c.get(b"key005").await.unwrap(), None);
    let before = srv.stats.get(&srv.stats.scans);
    let all = c.scan_all(b"key", None, 5).await.unwrap();
    assert_eq!(all.len(), 22);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(srv.stats.get(&srv.stats.scans) - before, 5);
    let page = c.scan(b"key", None, 3, b"").await.unwrap();
    assert_eq!(page.token, b"key002");

    assert_eq!(c.incr(b"n", 7).await.unwrap(), 7);
    assert!(c.cas(b"n", Some(b"7"), Some(b"8")).await.unwrap().swapped);
    c.put_with_ttl(b"t", b"v", Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(c.ttl(b"t").await.unwrap(), TtlState::ExpiresIn(1500));
    assert!(c.expire(b"t", None).await.unwrap());
    assert_eq!(c.ttl(b"t").await.unwrap(), TtlState::Persistent);
    let res = c
        .batch(
            false,
            vec![
                BatchOp::Get { key: b"n".to_vec() },
                BatchOp::Delete { key: b"n".to_vec() },
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        res,
        vec![BatchResult::Value(Some(b"8".to_vec())), BatchResult::Done]
    );
    c.ping().await.unwrap();
    assert!(c.stats().await.unwrap().contains("keys"));
}

#[tokio::test]
async fn pipeline_returns_responses_in_request_order() {
    let srv = FakeServer::start(Options::default());
    let mut conn = Connection::connect(&srv.config()).await.unwrap();
    let puts: Vec<Request> = (0..16u32)
        .map(|i| Request::Put {
            key: format!("p{i:02}").into_bytes(),
            value: i.to_string().into_bytes(),
            ttl_ms: None,
        })
        .collect();
    assert_eq!(
        conn.pipeline(&puts).await.unwrap(),
        vec![Response::Done; 16]
    );
    let c = Client::new(srv.config()).unwrap();
    let mut reqs: Vec<Request> = (0..16u32)
        .map(|i| Request::Get {
            key: format!("p{i:02}").into_bytes(),
        })
        .collect();
    reqs.push(Request::Incr {
        key: b"p03".to_vec(),
        delta: i64::MAX,
    });
    let out = c.pipeline(reqs).await.unwrap();
    for (i, r) in out.iter().take(16).enumerate() {
        assert_eq!(r, &Response::Value(Some(i.to_string().into_bytes())));
    }
    assert!(
        matches!(out[16], Response::Error { code, .. } if code == ErrorCode::NotAnInteger as u16)
    );
    assert!(srv.stats.get(&srv.stats.reordered) >= 2);
}

#[tokio::test]
async fn busy_is_retried_and_lost_connections_only_for_idempotent() {
    let srv = FakeServer::start(Options::default());
    let c = Client::new(srv.config().max_retries(2)).unwrap();
    c.put(b"busy-once:x", b"1").await.unwrap();
    assert_eq!(c.get(b"busy-once:x").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(srv.stats.get(&srv.stats.busy_sent), 1);

    assert!(c.get(b"__drop").await.is_err());
    assert_eq!(srv.stats.get(&srv.stats.drops), 3);
    assert!(c.incr(b"__drop", 1).await.is_err());
    assert_eq!(srv.stats.get(&srv.stats.drops), 4);
    c.ping().await.unwrap();
}

#[tokio::test]
async fn connection_closed_while_idle_is_not_reused() {
    let srv = FakeServer::start(Options::default());
    let c = Client::new(srv.config().pool_size(1).max_retries(0)).unwrap();
    c.put(b"__close_after", b"").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.incr(b"n", 1).await.unwrap(), 1);
    assert_eq!(srv.stats.get(&srv.stats.connections), 2);
}

#[tokio::test]
async fn request_timeout_when_the_server_never_answers() {
    let srv = FakeServer::start(Options::default());
    let cfg = srv
        .config()
        .request_timeout(Duration::from_millis(200))
        .max_retries(0);
    let mut conn = Connection::connect(&cfg).await.unwrap();
    let t = Instant::now();
    let err = conn
        .execute(&Request::Get {
            key: b"__hang".to_vec(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(conn.is_broken());

    let c = Client::new(cfg).unwrap();
    assert!(matches!(c.get(b"__hang").await, Err(Error::Timeout)));
    c.put(b"k", b"v").await.unwrap();
    assert_eq!(c.get(b"k").await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn cancelled_request_does_not_poison_the_pool() {
    let srv = FakeServer::start(Options::default());
    let c = Client::new(srv.config().pool_size(1)).unwrap();
    // The caller gives up first; the connection must not be handed out again with a
    // stale response pending.
    let r = tokio::time::timeout(Duration::from_millis(100), c.get(b"__hang")).await;
    assert!(r.is_err());
    c.put(b"a", b"1").await.unwrap();
    assert_eq!(c.get(b"a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(srv.stats.get(&srv.stats.connections), 2);
}

#[tokio::test]
async fn pool_is_bounded_under_concurrency() {
    let srv = FakeServer::start(secure());
    let c = Client::connect(srv.auth_config().pool_size(2))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let k = format!("t{t}-{i}");
                c.put(k.as_bytes(), b"v").await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(srv.stats.get(&srv.stats.connections) <= 2);
    assert_eq!(c.scan_all(b"t", Some(b"u"), 50).await.unwrap().len(), 120);
}
