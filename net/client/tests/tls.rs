//! TLS against the fake server in `common` (rustls server side, self-signed
//! certificates made with rcgen): blocking and async clients, verification failures,
//! protocol mismatches and `nextdbs://` URLs.

mod common;

use std::time::{Duration, Instant};

use common::{FakeServer, Options, TestCert};
use nextdb_client::{Client, Config, Connection, Error, Request, Response, TlsConfig};

fn secure() -> Options {
    Options {
        require_auth: true,
        ..Options::default()
    }
}

fn port(srv: &FakeServer) -> &str {
    srv.addr.rsplit_once(':').unwrap().1
}

/// A PEM file under the temp dir, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("nextdb-client-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn blocking_client_over_tls() {
    let cert = TestCert::localhost();
    let srv = FakeServer::start_tls(secure(), &cert);
    // Verified against the IP address SAN (the default name is the address's host).
    let cfg = srv.auth_config().tls(cert.client()).pool_size(1);
    let client = Client::connect(cfg).unwrap();
    client.put(b"k", b"v").unwrap();
    assert_eq!(client.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(client.incr(b"n", 2).unwrap(), 2);
    let out = client
        .pipeline((0..50).map(|i| Request::Get { key: vec![i] }).collect())
        .unwrap();
    assert_eq!(out.len(), 50);
    assert!(out.iter().all(|r| *r == Response::Value(None)));
    // A large value crosses many TLS records.
    let big = vec![7u8; 300_000];
    client.put(b"big", &big).unwrap();
    assert_eq!(client.get(b"big").unwrap(), Some(big));
    // The idle check did not discard the pooled TLS connection.
    assert_eq!(srv.stats.get(&srv.stats.connections), 1);

    // Verified against the DNS name SAN.
    let cfg = Config::new(format!("localhost:{}", port(&srv)))
        .credentials("alice", "pw")
        .tls(cert.client());
    let mut conn = Connection::connect(&cfg).unwrap();
    assert_eq!(conn.hello_ok().server_name, "fake-nextdb");
    let r = conn.execute(&Request::Get { key: b"k".to_vec() });
    assert_eq!(r.unwrap(), Response::Value(Some(b"v".to_vec())));
}

#[test]
fn tls_connection_closed_while_idle_is_not_reused() {
    let cert = TestCert::localhost();
    let srv = FakeServer::start_tls(Options::default(), &cert);
    let cfg = srv.config().tls(cert.client()).pool_size(1).max_retries(0);
    let c = Client::new(cfg).unwrap();
    c.put(b"__close_after", b"").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(c.incr(b"n", 1).unwrap(), 1);
    assert_eq!(srv.stats.get(&srv.stats.connections), 2);
}

#[test]
fn untrusted_certificate_is_a_tls_error() {
    let cert = TestCert::localhost();
    let other = TestCert::localhost();
    let srv = FakeServer::start_tls(secure(), &cert);
    let cfg = srv.auth_config().tls(other.client());
    let err = Connection::connect(&cfg).unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(!err.is_retryable());
    let err = Client::connect(cfg).unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    // Not retried: one connection each.
    assert_eq!(srv.stats.get(&srv.stats.connections), 2);
}

#[test]
fn name_mismatch_is_a_tls_error() {
    let cert = TestCert::localhost();
    let srv = FakeServer::start_tls(secure(), &cert);
    let cfg = srv
        .auth_config()
        .tls(cert.client().server_name("db.example"));
    let err = Connection::connect(&cfg).unwrap_err();
    match err {
        Error::Tls(m) => assert!(m.to_lowercase().contains("name"), "{m}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn unusable_ca_pem_is_rejected_up_front() {
    let cfg = Config::default().tls(TlsConfig::from_ca_pem("no certificate here"));
    assert!(matches!(Client::new(cfg.clone()), Err(Error::Tls(_))));
    assert!(matches!(Connection::connect(&cfg), Err(Error::Tls(_))));
}

#[test]
fn tls_client_against_plain_server_times_out() {
    let cert = TestCert::localhost();
    let srv = FakeServer::start(Options::default());
    let cfg = srv
        .config()
        .tls(cert.client())
        .connect_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let err = Connection::connect(&cfg).unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn plain_client_against_tls_server_fails() {
    let cert = TestCert::localhost();
    let srv = FakeServer::start_tls(Options::default(), &cert);
    let cfg = srv.config().connect_timeout(Duration::from_secs(2));
    let t = Instant::now();
    let err = Connection::connect(&cfg).unwrap_err();
    assert!(
        matches!(err, Error::Protocol(_) | Error::Closed | Error::Io(_)),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn nextdbs_urls() {
    let cert = TestCert::localhost();
    let srv = FakeServer::start_tls(secure(), &cert);
    let ca = TempFile::new("ca.pem", cert.cert_pem.as_bytes());

    let url = format!(
        "nextdbs://alice:pw@127.0.0.1:{}?ca_file={}",
        port(&srv),
        ca.path()
    );
    let cfg = Config::from_url(&url).unwrap();
    let tls = cfg.tls.as_ref().unwrap();
    assert_eq!(tls.ca_pem, cert.cert_pem.as_bytes());
    assert_eq!(tls.server_name, None);
    let client = Client::connect(cfg).unwrap();
    client.put(b"url", b"ok").unwrap();
    assert_eq!(client.get(b"url").unwrap(), Some(b"ok".to_vec()));

    let url = format!(
        "nextdbs://alice:pw@127.0.0.1:{}/?server_name=localhost&ca_file={}",
        port(&srv),
        ca.path()
    );
    let cfg = Config::from_url(&url).unwrap();
    assert_eq!(
        cfg.tls.as_ref().unwrap().server_name.as_deref(),
        Some("localhost")
    );
    Client::connect(cfg).unwrap().ping().unwrap();

    // Debug shows neither the password nor the PEM.
    let dbg = format!("{:?}", Config::from_url(&url).unwrap());
    assert!(!dbg.contains("pw\""), "{dbg}");
    assert!(!dbg.contains("BEGIN CERTIFICATE"), "{dbg}");

    assert!(matches!(
        Config::from_url("nextdbs://127.0.0.1"),
        Err(Error::InvalidArgument(_))
    ));
    let junk = TempFile::new("junk.pem", b"not a certificate");
    assert!(matches!(
        Config::from_url(&format!("nextdbs://127.0.0.1?ca_file={}", junk.path())),
        Err(Error::Tls(_))
    ));
    assert!(matches!(
        Config::from_url(&format!("nextdb://127.0.0.1?ca_file={}", ca.path())),
        Err(Error::InvalidArgument(_))
    ));
    assert!(
        Config::from_url("nextdb://127.0.0.1")
            .unwrap()
            .tls
            .is_none()
    );
}

#[cfg(feature = "async")]
mod aio {
    use super::*;
    use nextdb_client::aio;

    #[tokio::test]
    async fn async_client_over_tls() {
        let cert = TestCert::localhost();
        let srv = FakeServer::start_tls(secure(), &cert);
        let cfg = srv.auth_config().tls(cert.client()).pool_size(1);
        let client = aio::Client::connect(cfg).await.unwrap();
        client.put(b"k", b"v").await.unwrap();
        assert_eq!(client.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        let big = vec![9u8; 300_000];
        client.put(b"big", &big).await.unwrap();
        assert_eq!(client.get(b"big").await.unwrap(), Some(big));
        let out = client
            .pipeline((0..50).map(|i| Request::Get { key: vec![i] }).collect())
            .await
            .unwrap();
        assert_eq!(out.len(), 50);
        assert_eq!(srv.stats.get(&srv.stats.connections), 1);

        let cfg = Config::new(format!("localhost:{}", port(&srv)))
            .credentials("alice", "pw")
            .tls(cert.client());
        let mut conn = aio::Connection::connect(&cfg).await.unwrap();
        let r = conn.execute(&Request::Get { key: b"k".to_vec() }).await;
        assert_eq!(r.unwrap(), Response::Value(Some(b"v".to_vec())));
    }

    #[tokio::test]
    async fn async_tls_connection_closed_while_idle_is_not_reused() {
        let cert = TestCert::localhost();
        let srv = FakeServer::start_tls(Options::default(), &cert);
        let cfg = srv.config().tls(cert.client()).pool_size(1).max_retries(0);
        let c = aio::Client::new(cfg).unwrap();
        c.put(b"__close_after", b"").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.incr(b"n", 1).await.unwrap(), 1);
        assert_eq!(srv.stats.get(&srv.stats.connections), 2);
    }

    #[tokio::test]
    async fn async_tls_failures() {
        let cert = TestCert::localhost();
        let other = TestCert::localhost();
        let srv = FakeServer::start_tls(secure(), &cert);
        let err = aio::Client::connect(srv.auth_config().tls(other.client()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
        let cfg = srv
            .auth_config()
            .tls(cert.client().server_name("db.example"));
        let err = aio::Connection::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");

        let plain = FakeServer::start(Options::default());
        let cfg = plain
            .config()
            .tls(cert.client())
            .connect_timeout(Duration::from_millis(300));
        let t = Instant::now();
        let err = aio::Connection::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}
