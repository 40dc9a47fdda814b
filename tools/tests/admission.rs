//! Overload: more concurrent slow requests than a core admits get BUSY, none waits
//! past the deadline, and every acknowledged write is there afterwards.

mod common;

use common::{Opts, Raw, Server, err_code};
use nextdb_proto::{ErrorCode, Request, Response};
use nextdb_shard::routing::PartitionMap;
use std::time::{Duration, Instant};

const SHARDS: usize = 2;
const IN_FLIGHT: usize = 4;
const TIMEOUT_MS: u64 = 3000;
const CONNECTIONS: usize = 16;
const PIPELINE: usize = 6;
const VALUE_BYTES: usize = 1 << 20;

/// Keys that shard 0 owns, so the whole load lands on one core.
fn keys_on_shard_0(n: usize) -> Vec<Vec<u8>> {
    let map = PartitionMap::even(SHARDS);
    (0..)
        .map(|i| format!("flood:{i}").into_bytes())
        .filter(|k| map.shard_of(k) == 0)
        .take(n)
        .collect()
}

fn value_of(key: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; VALUE_BYTES];
    for (i, b) in v.iter_mut().enumerate() {
        *b = key[i % key.len()];
    }
    v
}

#[test]
fn a_flooded_core_answers_busy_in_time_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        shards: SHARDS,
        extra: vec![
            "--max-requests-in-flight".into(),
            IN_FLIGHT.to_string(),
            "--request-timeout-ms".into(),
            TIMEOUT_MS.to_string(),
        ],
        ..Opts::default()
    };
    let s = Server::start(dir.path(), &opts);
    let keys = keys_on_shard_0(CONNECTIONS * PIPELINE);
    let addr = s.addr;
    let clients: Vec<_> = keys
        .chunks(PIPELINE)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                let mut c = Raw::connect(addr);
                assert!(matches!(c.hello_none(), Response::HelloOk(_)));
                let mut burst = Vec::new();
                for (i, k) in chunk.iter().enumerate() {
                    let put = Request::Put {
                        key: k.clone(),
                        value: value_of(k),
                        ttl_ms: None,
                    };
                    put.encode(i as u32, &mut burst);
                }
                let sent = Instant::now();
                c.send_raw(&burst).unwrap();
                let mut answers = Vec::new();
                for _ in 0..chunk.len() {
                    let (id, r) = c.recv().expect("connection closed");
                    answers.push((chunk[id as usize].clone(), r, sent.elapsed()));
                }
                answers
            })
        })
        .collect();
    let answers: Vec<_> = clients
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();

    let (mut done, mut busy) = (Vec::new(), 0);
    for (key, r, took) in &answers {
        // The deadline, plus the time to send and write a whole pipeline of values.
        assert!(
            *took < Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(10),
            "an answer took {took:?}"
        );
        match r {
            Response::Done => done.push(key.clone()),
            r if err_code(r) == Some(ErrorCode::Busy as u16) => busy += 1,
            r if err_code(r) == Some(ErrorCode::Timeout as u16) => {}
            r => panic!("unexpected answer {r:?}"),
        }
    }
    assert!(busy > 0, "no BUSY among {} answers", answers.len());
    assert!(!done.is_empty(), "nothing was admitted");

    let mut c = Raw::connect(s.addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    for k in &done {
        let got = c.call(Request::Get { key: k.clone() });
        assert_eq!(
            got,
            Response::Value(Some(value_of(k))),
            "acknowledged {k:?}"
        );
    }
    let (code, _) = s.terminate();
    assert_eq!(code, Some(0));
}
