//! Bad input against a real server: each gets a clear error or a closed connection,
//! and every other client keeps being served.

mod common;

use common::{Opts, Raw, Server, add_user, err_code};
use nextdb_proto::ErrorCode;
use nextdb_proto::Request;
use nextdb_proto::Response;
use std::time::Duration;

fn get(k: &str) -> Request {
    Request::Get {
        key: k.as_bytes().to_vec(),
    }
}

fn put(k: &str, v: &[u8]) -> Request {
    Request::Put {
        key: k.as_bytes().to_vec(),
        value: v.to_vec(),
        ttl_ms: None,
    }
}

/// A healthy client still gets served.
fn assert_serves(s: &Server) {
    let mut c = Raw::connect(s.addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    assert_eq!(c.call(put("probe", b"ok")), Response::Done);
    assert_eq!(c.call(get("probe")), Response::Value(Some(b"ok".to_vec())));
}

#[test]
fn authentication_is_required_before_any_data() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice", "correct horse");
    let s = Server::start(
        dir.path(),
        &Opts {
            insecure: false,
            ..Opts::default()
        },
    );

    // A request before HELLO.
    let mut c = Raw::connect(s.addr);
    c.send(&put("x", b"1"), 5);
    let (_, r) = c.recv().unwrap();
    assert_eq!(err_code(&r), Some(ErrorCode::AuthRequired as u16));
    assert!(c.closed());

    // Mechanism NONE on a secure server.
    let mut c = Raw::connect(s.addr);
    let r = c.hello_none();
    assert_eq!(err_code(&r), Some(ErrorCode::AuthFailed as u16), "{r:?}");
    assert!(c.closed());

    // Wrong password, unknown user.
    for (u, p) in [("alice", "wrong"), ("mallory", "correct horse")] {
        let mut c = Raw::connect(s.addr);
        let r = c.login(u, p);
        assert_eq!(
            err_code(&r),
            Some(ErrorCode::AuthFailed as u16),
            "{u}: {r:?}"
        );
        assert!(c.closed());
    }

    // A request between HELLO and AUTH.
    let mut c = Raw::connect(s.addr);
    let (_, first) = nextdb_proto::scram::ClientExchange::start("alice");
    c.send(
        &Request::Hello(nextdb_proto::Hello {
            min_version: 1,
            max_version: 1,
            client_name: "t".into(),
            mechanism: "SCRAM-SHA-256".into(),
            auth_data: first,
        }),
        0,
    );
    assert!(matches!(c.recv().unwrap().1, Response::HelloOk(_)));
    c.send(&get("x"), 1);
    assert_eq!(
        err_code(&c.recv().unwrap().1),
        Some(ErrorCode::AuthRequired as u16)
    );
    assert!(c.closed());

    // The right password works, and nothing above wrote anything.
    let mut c = Raw::connect(s.addr);
    assert!(matches!(
        c.login("alice", "correct horse"),
        Response::AuthOk { .. }
    ));
    assert_eq!(c.call(get("x")), Response::Value(None));
    // HELLO again is a protocol violation.
    let r = c.hello_none();
    assert_eq!(err_code(&r), Some(ErrorCode::ProtocolViolation as u16));
}

#[test]
fn version_negotiation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let mut c = Raw::connect(s.addr);
    c.send(
        &Request::Hello(nextdb_proto::Hello {
            min_version: 7,
            max_version: 9,
            client_name: "future".into(),
            mechanism: "NONE".into(),
            auth_data: vec![],
        }),
        0,
    );
    assert_eq!(
        err_code(&c.recv().unwrap().1),
        Some(ErrorCode::UnsupportedVersion as u16)
    );
    assert!(c.closed());
    let mut c = Raw::connect(s.addr);
    c.send(
        &Request::Hello(nextdb_proto::Hello {
            min_version: 1,
            max_version: 9,
            client_name: "newer".into(),
            mechanism: "NONE".into(),
            auth_data: vec![],
        }),
        0,
    );
    match c.recv().unwrap().1 {
        Response::HelloOk(ok) => {
            // The newest version both sides speak: the server's.
            assert_eq!(ok.version, nextdb_proto::limits::MAX_VERSION);
            assert_eq!(ok.shards, 2);
            assert_eq!(ok.slots, 16384);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn malformed_truncated_oversized_and_unknown_frames() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());

    // Oversized: a length of 1 GiB is refused before any of it is read.
    let mut c = Raw::connect(s.addr);
    c.hello_none();
    c.send_raw(&[0, 0, 0, 0x40, 0x20, 0, 1, 0, 0, 0]).unwrap();
    let (id, r) = c.recv().unwrap();
    assert_eq!(
        (id, err_code(&r)),
        (0, Some(ErrorCode::FrameTooLarge as u16))
    );
    assert!(c.closed());

    // Shorter than a header.
    let mut c = Raw::connect(s.addr);
    c.hello_none();
    c.send_raw(&[2, 0, 0, 0, 0x20, 0]).unwrap();
    assert_eq!(
        err_code(&c.recv().unwrap().1),
        Some(ErrorCode::Malformed as u16)
    );
    assert!(c.closed());

    // A body whose key length runs past the frame.
    let mut c = Raw::connect(s.addr);
    c.hello_none();
    c.send_raw(&[10, 0, 0, 0, 0x20, 0, 9, 0, 0, 0, 200, 0, 0, 0])
        .unwrap();
    let (id, r) = c.recv().unwrap();
    assert_eq!((id, err_code(&r)), (9, Some(ErrorCode::Malformed as u16)));
    assert!(c.closed());

    // Unknown opcode: an error, and the connection stays usable.
    let mut c = Raw::connect(s.addr);
    c.hello_none();
    c.send_raw(&[6, 0, 0, 0, 0x7e, 0, 3, 0, 0, 0]).unwrap();
    let (id, r) = c.recv().unwrap();
    assert_eq!((id, err_code(&r)), (3, Some(ErrorCode::UnknownOp as u16)));
    assert_eq!(c.call(put("still", b"here")), Response::Done);

    // A key above the limit: INVALID_ARGUMENT, connection stays.
    let big = vec![b'k'; 70_000];
    let mut b = Vec::new();
    Request::Get { key: big }.encode(4, &mut b);
    c.send_raw(&b).unwrap();
    let (id, r) = c.recv().unwrap();
    assert_eq!(
        (id, err_code(&r)),
        (4, Some(ErrorCode::InvalidArgument as u16))
    );
    assert_eq!(
        c.call(get("still")),
        Response::Value(Some(b"here".to_vec()))
    );

    // Half a frame, then the client goes away.
    let mut c = Raw::connect(s.addr);
    c.hello_none();
    c.send_raw(&[100, 0, 0, 0, 0x21, 0, 1, 0]).unwrap();
    drop(c);

    // Random garbage from many clients.
    let mut rng = 12345u64;
    for _ in 0..50 {
        let mut c = Raw::connect(s.addr);
        let n = (rng % 300) as usize + 1;
        let junk: Vec<u8> = (0..n)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (rng >> 33) as u8
            })
            .collect();
        let _ = c.send_raw(&junk);
        c.s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = c.recv();
    }
    assert_serves(&s);
}

#[test]
fn slow_readers_and_idle_connections_do_not_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let mut w = Raw::connect(s.addr);
    w.hello_none();
    let big = vec![7u8; 1 << 20];
    assert_eq!(w.call(put("big", &big)), Response::Done);

    // A client pipelines thousands of 1 MiB GETs and never reads the answers.
    let mut slow = Raw::connect(s.addr);
    slow.hello_none();
    slow.s.set_nonblocking(true).unwrap();
    let mut frame = Vec::new();
    for i in 0..2000 {
        get("big").encode(i, &mut frame);
    }
    let _ = slow.send_raw(&frame);

    // Thousands of idle connections (some mid-handshake, some never speaking).
    let limit = common::raise_nofile();
    let idle_n = 3000.min(limit.saturating_sub(200) as usize);
    let mut idle = Vec::new();
    for i in 0..idle_n {
        let mut c = Raw::connect(s.addr);
        if i % 2 == 0 {
            c.hello_none();
        }
        idle.push(c);
    }
    assert_serves(&s);
    let rss = s.rss_kib();
    assert!(
        rss < 1_000_000,
        "server RSS {rss} KiB with {idle_n} idle connections"
    );
    let mut c = Raw::connect(s.addr);
    c.hello_none();
    match c.call(Request::Stats) {
        Response::Stats { json } => {
            assert!(json.contains("\"open\""), "{json}");
        }
        r => panic!("{r:?}"),
    }
    drop(idle);
    drop(slow);
    assert_serves(&s);
}
