//! Limits at their exact boundaries against a real server: the largest key the
//! protocol admits is one the node stores; one byte more is a clear error, and the
//! connection and the server stay up.

mod common;

use common::{Opts, Raw, Server, err_code};
use nextdb_proto::limits::{MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_SCAN_BYTES};
use nextdb_proto::{BatchOp, BatchResult, ErrorCode, Request, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// Samples the server's resident memory every few milliseconds until told to stop;
/// kills the server once it passes `kill_kib` (so a regression cannot take the
/// machine down). Returns the highest sample.
fn watch_rss(pid: i32, kill_kib: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak = peak.max(rss);
            if rss > kill_kib {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    })
}

#[test]
fn a_batch_whose_answer_is_too_large_is_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let mut c = Raw::connect(s.addr);
    c.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    let big = vec![7u8; 1 << 20];
    let put = Request::Put {
        key: b"big".to_vec(),
        value: big.clone(),
        ttl_ms: None,
    };
    assert_eq!(c.call(put), Response::Done);

    let stop = Arc::new(AtomicBool::new(false));
    let watch = watch_rss(s.pid(), 3 << 20, stop.clone());
    let gets: Vec<BatchOp> = (0..MAX_BATCH_OPS)
        .map(|_| BatchOp::Get {
            key: b"big".to_vec(),
        })
        .collect();
    for atomic in [false, true] {
        let ops = gets.clone();
        let r = c.call(Request::Batch { atomic, ops });
        assert_eq!(
            err_code(&r),
            Some(ErrorCode::ResponseTooLarge as u16),
            "atomic {atomic}: {}",
            match &r {
                Response::Batch(rs) => format!("an answer of {} results", rs.len()),
                other => format!("{other:?}"),
            }
        );
    }
    stop.store(true, Ordering::Relaxed);
    let peak_kib = watch.join().unwrap();
    assert!(
        peak_kib < 1 << 20,
        "the server's RSS reached {peak_kib} KiB"
    );

    // The connection and the server still serve; a batch within the limit works.
    let few = vec![
        BatchOp::Get {
            key: b"big".to_vec()
        };
        8
    ];
    match c.call(Request::Batch {
        atomic: false,
        ops: few,
    }) {
        Response::Batch(rs) => {
            assert_eq!(rs.len(), 8);
            assert!(
                rs.iter()
                    .all(|r| *r == BatchResult::Value(Some(big.clone())))
            );
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn a_scan_over_many_shards_stays_within_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        shards: 4,
        ..Opts::default()
    };
    let s = Server::start(dir.path(), &opts);
    let mut c = Raw::connect(s.addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    // 48 values of 300 KiB and two larger than a shard's 1 MiB share: about 17 MiB
    // over four shards, several pages of at most 4 MiB.
    let n = 50;
    for i in 0..n {
        let len = if i < 48 { 300 << 10 } else { 3 << 19 };
        let put = Request::Put {
            key: format!("key{i:03}").into_bytes(),
            value: vec![i as u8; len],
            ttl_ms: None,
        };
        assert_eq!(c.call(put), Response::Done);
    }
    let mut seen = Vec::new();
    let mut token = Vec::new();
    loop {
        let scan = Request::Scan {
            start: Vec::new(),
            end: None,
            limit: 10_000,
            token,
        };
        let Response::Scan { entries, token: t } = c.call(scan) else {
            panic!("scan failed")
        };
        let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(bytes <= MAX_SCAN_BYTES, "a page of {bytes} bytes");
        assert!(
            !entries.is_empty() || t.is_empty(),
            "an empty page must end the scan"
        );
        seen.extend(entries.into_iter().map(|(k, _)| k));
        if t.is_empty() {
            break;
        }
        token = t;
    }
    let want: Vec<Vec<u8>> = (0..n).map(|i| format!("key{i:03}").into_bytes()).collect();
    assert_eq!(seen, want);
}
