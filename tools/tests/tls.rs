//! TLS on the native port: the client verifies the node's certificate, the protocol
//! runs unchanged inside, and plaintext clients are turned away.

mod common;

use common::{Opts, Raw, Server, add_user};
use nextdb_client::{Client, Config, Error, TlsConfig};
use std::time::Duration;

/// A self-signed certificate for localhost and 127.0.0.1: (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("rcgen");
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

#[test]
fn tls_sessions_with_scram_and_refused_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let cert_path = dir.path().join("node.crt");
    let key_path = dir.path().join("node.key");
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let data = dir.path().join("data");
    add_user(&data, "app", "pw");
    let s = Server::start(
        &data,
        &Opts {
            insecure: false,
            extra: vec![
                "--tls-cert".into(),
                cert_path.display().to_string(),
                "--tls-key".into(),
                key_path.display().to_string(),
            ],
            ..Opts::default()
        },
    );

    // The right CA: a full session.
    let c = Client::connect(
        Config::new(s.addr.to_string())
            .credentials("app", "pw")
            .tls(TlsConfig::from_ca_pem(cert.as_bytes().to_vec())),
    )
    .unwrap();
    c.put(b"secret", b"value").unwrap();
    assert_eq!(c.get(b"secret").unwrap(), Some(b"value".to_vec()));

    // Another CA: the handshake fails, nothing is sent.
    let (other, _) = self_signed();
    let r = Client::connect(
        Config::new(s.addr.to_string())
            .credentials("app", "pw")
            .max_retries(0)
            .tls(TlsConfig::from_ca_pem(other.into_bytes())),
    );
    assert!(matches!(r, Err(Error::Tls(_))), "{:?}", r.err());

    // Plaintext against the TLS port: closed, and the node keeps serving.
    let mut raw = Raw::connect(s.addr);
    raw.s
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    raw.hello_none_nowait();
    assert!(raw.closed());
    assert_eq!(c.get(b"secret").unwrap(), Some(b"value".to_vec()));
}
