//! Per-key linearizability of read-modify-write operations against plain writes.
//!
//! A plain PUT must not slip between the read and the write of an INCR or CAS on the
//! same key. The window is widest when writes are delayed before they commit: here L0
//! sits at the slowdown trigger, so every write waits `slowdown_delay_us` in the
//! engine's admission step. The PUT starts first; the INCR starts while the PUT is
//! delayed. Whatever order they take, the outcome must be one of the two serial ones.

use nextdb_engine::EngineConfig;
use nextdb_engine::db::Db;
use nextdb_engine::fs::sim::SimFs;
use nextdb_shard::config::SyncMode;
use nextdb_shard::exec::ShardCore;
use nextdb_shard::ops::{ShardOp, ShardResult};
use std::path::Path;
use std::rc::Rc;

/// The node's admission bounds; far above what the test's clients put in flight.
fn admission() -> nextdb_shard::admission::Admission {
    nextdb_shard::admission::Admission::new(4096, std::time::Duration::from_secs(60))
}
use std::time::Duration;

fn slowed_config() -> EngineConfig {
    EngineConfig {
        // No compaction picks L0 and every write is delayed once: the window is 20 ms.
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 2,
        l0_stop_trigger: 64,
        slowdown_delay_us: 20_000,
        ..EngineConfig::small_for_tests()
    }
}

/// A shard on a simulated disk whose L0 is at the slowdown trigger. No background
/// task runs, so nothing compacts L0 away while the test runs.
async fn slowed_shard() -> Rc<ShardCore<SimFs>> {
    let fs = SimFs::new(7);
    let db = Db::open(fs, Path::new("/lin"), slowed_config())
        .await
        .expect("open");
    let core =
        Rc::new(ShardCore::new(0, db.clone(), SyncMode::Fsync, admission()).expect("raft group"));
    for i in 0..2u8 {
        let put = ShardOp::Put {
            key: vec![b'f', i],
            value: b"filler".to_vec(),
            ttl_ms: None,
        };
        core.execute(put).await.expect("filler put");
        db.flush().await.expect("flush");
    }
    core
}

fn int_of(r: ShardResult) -> i64 {
    match r {
        ShardResult::Int(n) => n,
        other => panic!("INCR answered {other:?}"),
    }
}

async fn get(core: &ShardCore<SimFs>, key: &[u8]) -> Option<Vec<u8>> {
    match core.execute(ShardOp::Get { key: key.to_vec() }).await {
        Ok(ShardResult::Value(v)) => v,
        other => panic!("GET answered {other:?}"),
    }
}

#[test]
fn put_cannot_slip_between_incr_read_and_write() {
    nextdb_engine::fs::glommio_fs::run_local(async {
        let core = slowed_shard().await;
        let key = b"counter".to_vec();
        let set = |v: &str| ShardOp::Put {
            key: key.clone(),
            value: v.as_bytes().to_vec(),
            ttl_ms: None,
        };
        core.execute(set("5")).await.expect("initial put");

        let c = core.clone();
        let op = set("100");
        let put = glommio::spawn_local(async move { c.execute(op).await });
        // Let the PUT pass its key check and start waiting in the engine.
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let c = core.clone();
        let incr = glommio::spawn_local(async move {
            c.execute(ShardOp::Incr {
                key: b"counter".to_vec(),
                delta: 1,
            })
            .await
        });
        put.await.expect("put");
        let incremented = int_of(incr.await.expect("incr"));
        let last = get(&core, &key).await;
        let last = String::from_utf8(last.expect("key exists")).expect("utf8");
        // Serial orders: PUT then INCR → INCR answers 101, the key holds 101;
        // INCR then PUT → INCR answers 6, the key holds 100.
        let serial = (incremented == 101 && last == "101") || (incremented == 6 && last == "100");
        assert!(
            serial,
            "not linearizable: INCR answered {incremented}, the key holds {last}"
        );
    })
    .expect("executor");
}

#[test]
fn put_cannot_slip_between_cas_read_and_write() {
    nextdb_engine::fs::glommio_fs::run_local(async {
        let core = slowed_shard().await;
        let key = b"k".to_vec();
        let set = |v: &str| ShardOp::Put {
            key: key.clone(),
            value: v.as_bytes().to_vec(),
            ttl_ms: None,
        };
        core.execute(set("old")).await.expect("initial put");

        let c = core.clone();
        let op = set("put");
        let put = glommio::spawn_local(async move { c.execute(op).await });
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let c = core.clone();
        let cas = glommio::spawn_local(async move {
            c.execute(ShardOp::Cas {
                key: b"k".to_vec(),
                expected: Some(b"old".to_vec()),
                new: Some(b"cas".to_vec()),
                ttl_ms: None,
            })
            .await
        });
        put.await.expect("put");
        let swapped = match cas.await.expect("cas") {
            ShardResult::Cas { swapped, .. } => swapped,
            other => panic!("CAS answered {other:?}"),
        };
        let last = get(&core, &key).await.expect("key exists");
        // CAS first: swapped, then the PUT wins → "put". PUT first: the CAS sees "put"
        // and does not swap → "put". A swapped CAS that leaves "cas" overwrote the PUT
        // it never saw.
        assert_eq!(
            last,
            b"put".to_vec(),
            "not linearizable: CAS swapped={swapped} and the key holds {:?}",
            String::from_utf8_lossy(&last)
        );
    })
    .expect("executor");
}
