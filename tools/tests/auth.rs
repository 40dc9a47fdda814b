//! Authentication against real servers: an unknown user's salt tells nothing about
//! whether the user exists, and a failed AUTH ends the session.

mod common;

use common::{Opts, Raw, Server, add_user, err_code};
use nextdb_proto::scram::{ClientExchange, MECHANISM};
use nextdb_proto::{ErrorCode, Hello, Request, Response};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn secure() -> Opts {
    Opts {
        insecure: false,
        ..Opts::default()
    }
}

/// A HELLO that starts SCRAM with the client-first-message `first`.
fn scram_hello(first: Vec<u8>) -> Request {
    Request::Hello(Hello {
        min_version: 1,
        max_version: 1,
        client_name: "t".into(),
        mechanism: MECHANISM.into(),
        auth_data: first,
    })
}

/// The salt a node shows in its server-first-message for `user`.
fn salt_of(s: &Server, user: &str) -> String {
    let mut c = Raw::connect(s.addr);
    let (_, first) = ClientExchange::start(user);
    c.send(&scram_hello(first), 0);
    match c.recv().expect("no HELLO answer").1 {
        Response::HelloOk(ok) => {
            let text = String::from_utf8(ok.auth_data).unwrap();
            let salt = text.split(',').find_map(|a| a.strip_prefix("s="));
            salt.expect("no salt in server-first").to_string()
        }
        r => panic!("{r:?}"),
    }
}

fn node_dir(dir: &Path) {
    add_user(dir, "alice", "correct horse");
}

#[test]
fn unknown_user_salt_is_stable_per_node_and_secret() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    node_dir(d1.path());
    node_dir(d2.path());
    let a = Server::start(d1.path(), &secure());
    let b = Server::start(d2.path(), &secure());
    let salt_a = salt_of(&a, "mallory");
    assert_eq!(salt_of(&a, "mallory"), salt_a, "repeated attempts");
    assert_ne!(salt_of(&a, "eve"), salt_a, "another name");
    assert_ne!(salt_of(&b, "mallory"), salt_a, "another node");

    // Not a function of the name alone (what the old derivation was).
    use base64::Engine as _;
    use sha2::Digest as _;
    let public = sha2::Sha256::digest(b"nextdb-unknown-user:mallory");
    let public = base64::engine::general_purpose::STANDARD.encode(&public[..16]);
    assert_ne!(salt_a, public);

    // The secret is the node's own file, private to its owner, and survives restarts.
    let secret = d1.path().join("auth-secret");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(a);
    let a = Server::start(d1.path(), &secure());
    assert_eq!(salt_of(&a, "mallory"), salt_a, "after a restart");
}

#[test]
fn a_failed_auth_leaves_nothing_usable() {
    let dir = tempfile::tempdir().unwrap();
    node_dir(dir.path());
    let s = Server::start(dir.path(), &secure());
    for (user, password) in [("alice", "wrong"), ("mallory", "correct horse")] {
        let mut c = Raw::connect(s.addr);
        let (mut ex, first) = ClientExchange::start(user);
        c.send(&scram_hello(first), 0);
        let Response::HelloOk(ok) = c.recv().unwrap().1 else {
            panic!("no HelloOk")
        };
        // The proof, a write and a read in one burst: only the refusal comes back.
        let fin = ex.respond(password, &ok.auth_data).unwrap();
        let mut burst = Vec::new();
        Request::Auth { data: fin }.encode(1, &mut burst);
        let put = Request::Put {
            key: b"intruder".to_vec(),
            value: b"1".to_vec(),
            ttl_ms: None,
        };
        put.encode(2, &mut burst);
        Request::Get {
            key: b"intruder".to_vec(),
        }
        .encode(3, &mut burst);
        c.send_raw(&burst).unwrap();
        let (id, r) = c.recv().unwrap();
        assert_eq!((id, err_code(&r)), (1, Some(ErrorCode::AuthFailed as u16)));
        assert!(
            c.closed(),
            "{user}: the connection must close after AUTH_FAILED"
        );
    }
    let mut c = Raw::connect(s.addr);
    assert!(matches!(
        c.login("alice", "correct horse"),
        Response::AuthOk { .. }
    ));
    assert_eq!(
        c.call(Request::Get {
            key: b"intruder".to_vec()
        }),
        Response::Value(None)
    );
}
