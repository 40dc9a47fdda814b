//! Limits at their exact boundaries against a real server: the largest key the
//! protocol admits is one the node stores; one byte more is a clear error, and the
//! connection and the server stay up.

mod common;

use common::{Opts, Raw, Server, err_code};
use nextdb_proto::limits::MAX_KEY_BYTES;
use nextdb_proto::{BatchOp, BatchResult, ErrorCode, Request, Response};

fn key_of(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

#[test]
fn the_largest_key_works_everywhere_and_one_byte_more_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let mut c = Raw::connect(s.addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));

    let max = key_of(MAX_KEY_BYTES, b'a');
    let put = |k: &[u8], v: &[u8]| Request::Put {
        key: k.to_vec(),
        value: v.to_vec(),
        ttl_ms: None,
    };
    assert_eq!(c.call(put(&max, b"1")), Response::Done);
    assert_eq!(
        c.call(Request::Get { key: max.clone() }),
        Response::Value(Some(b"1".to_vec()))
    );
    assert_eq!(
        c.call(Request::Cas {
            key: max.clone(),
            expected: Some(b"1".to_vec()),
            new: Some(b"2".to_vec()),
            ttl_ms: None,
        }),
        Response::Cas {
            swapped: true,
            current: Some(b"1".to_vec())
        }
    );
    let max_b = key_of(MAX_KEY_BYTES, b'b');
    assert_eq!(
        c.call(Request::Batch {
            atomic: false,
            ops: vec![
                BatchOp::Put {
                    key: max_b.clone(),
                    value: b"3".to_vec(),
                    ttl_ms: None
                },
                BatchOp::Get { key: max.clone() },
            ],
        }),
        Response::Batch(vec![
            BatchResult::Done,
            BatchResult::Value(Some(b"2".to_vec()))
        ])
    );
    assert_eq!(
        c.call(Request::Incr {
            key: max_b.clone(),
            delta: 1
        }),
        Response::Int(4)
    );

    // A page of one entry ends at the longest key: its token resumes after it.
    let scan = |token: Vec<u8>| Request::Scan {
        start: max.clone(),
        end: None,
        limit: 1,
        token,
    };
    let token = match c.call(scan(Vec::new())) {
        Response::Scan { entries, token } => {
            assert_eq!(entries, vec![(max.clone(), b"2".to_vec())]);
            assert!(!token.is_empty());
            token
        }
        r => panic!("{r:?}"),
    };
    match c.call(scan(token)) {
        Response::Scan { entries, .. } => {
            assert_eq!(entries, vec![(max_b.clone(), b"4".to_vec())])
        }
        r => panic!("{r:?}"),
    }

    // One byte more: INVALID_ARGUMENT from every request that carries a key.
    let over = key_of(MAX_KEY_BYTES + 1, b'c');
    let too_long = [
        put(&over, b"x"),
        Request::Get { key: over.clone() },
        Request::Cas {
            key: over.clone(),
            expected: None,
            new: Some(b"x".to_vec()),
            ttl_ms: None,
        },
        Request::Batch {
            atomic: false,
            ops: vec![BatchOp::Put {
                key: over.clone(),
                value: b"x".to_vec(),
                ttl_ms: None,
            }],
        },
        Request::Scan {
            start: over.clone(),
            end: None,
            limit: 1,
            token: Vec::new(),
        },
    ];
    for req in too_long {
        let opcode = req.opcode();
        let mut frame = Vec::new();
        req.encode(7, &mut frame);
        c.send_raw(&frame).unwrap();
        let (id, r) = c.recv().expect("the connection must stay open");
        assert_eq!(
            (id, err_code(&r)),
            (7, Some(ErrorCode::InvalidArgument as u16)),
            "opcode {opcode:#x}: {r:?}"
        );
    }
    assert_eq!(
        c.call(Request::Get { key: max }),
        Response::Value(Some(b"2".to_vec()))
    );
    let mut other = Raw::connect(s.addr);
    assert!(matches!(other.hello_none(), Response::HelloOk(_)));
    assert_eq!(
        other.call(Request::Get { key: max_b }),
        Response::Value(Some(b"4".to_vec()))
    );
}
