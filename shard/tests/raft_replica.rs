//! The Raft glue over the real engine on a simulated disk: what a restart rebuilds
//! (hard state, entries, applied index) and that a power loss keeps every
//! acknowledged write of the single-node Raft write path.

use nextdb_engine::EngineConfig;
use nextdb_engine::db::Db;
use nextdb_engine::fs::sim::SimFs;
use nextdb_shard::admission::Admission;
use nextdb_shard::config::SyncMode;
use nextdb_shard::exec::ShardCore;
use nextdb_shard::ops::{ShardOp, ShardResult};
use raft::Storage;
use raft::prelude::HardState;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

const DIR: &str = "/raft";

/// Small memtables and segments, so a few hundred writes flush and rotate.
fn config() -> EngineConfig {
    EngineConfig {
        memtable_bytes: 4 << 10,
        log_segment_bytes: 64 << 10,
        log_buffer_bytes: 4 << 10,
        ..EngineConfig::small_for_tests()
    }
}

async fn open(fs: &SimFs) -> (Rc<Db<SimFs>>, ShardCore<SimFs>) {
    let db = Db::open(fs.clone(), Path::new(DIR), config())
        .await
        .expect("open");
    let admission = Admission::new(64, Duration::from_secs(10));
    let core = ShardCore::new(0, db.clone(), SyncMode::Fsync, admission).expect("raft group");
    (db, core)
}

async fn put(core: &ShardCore<SimFs>, i: u32) {
    let op = ShardOp::Put {
        key: format!("k{i}").into_bytes(),
        value: format!("v{i}").into_bytes(),
        ttl_ms: None,
    };
    let r = core.execute(op).await;
    assert!(matches!(r, Ok(ShardResult::Done)), "put k{i}: {r:?}");
}

async fn assert_all_present(core: &ShardCore<SimFs>, n: u32) {
    for i in 0..n {
        let op = ShardOp::Get {
            key: format!("k{i}").into_bytes(),
        };
        let want = format!("v{i}").into_bytes();
        match core.execute(op).await {
            Ok(ShardResult::Value(Some(v))) => assert_eq!(v, want, "key k{i}"),
            other => panic!("key k{i}: {other:?}"),
        }
    }
}

/// What the group's storage and the engine hold of the group.
#[derive(Debug, PartialEq)]
struct Seen {
    hard_state: HardState,
    start: (u64, u64),
    last: u64,
    terms: Vec<u64>,
    applied: u64,
}

fn seen(core: &ShardCore<SimFs>) -> Seen {
    let g = core.replica().group();
    let s = g.storage();
    let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
    Seen {
        hard_state: s.hard_state().clone(),
        start: s.start(),
        last,
        terms: (first..=last).map(|i| s.term(i).unwrap()).collect(),
        applied: g.applied(),
    }
}

#[test]
fn a_restart_restores_hard_state_entries_and_applied_index() {
    nextdb_engine::fs::glommio_fs::run_local(async {
        let fs = SimFs::new(11);
        let (db, core) = open(&fs).await;
        for i in 0..300 {
            put(&core, i).await;
        }
        db.flush().await.expect("flush");
        // Entries above the flushed index: only the log holds their effects.
        for i in 300..340 {
            put(&core, i).await;
        }
        let before = seen(&core);
        let flushed = db.flushed_index(1);
        assert!(flushed > 0 && flushed < before.last, "{flushed} {before:?}");
        assert_eq!(before.applied, before.last);
        db.close().await.expect("close");
        drop(core);
        drop(db);

        let (db, core) = open(&fs).await;
        let after = seen(&core);
        assert_eq!(after.hard_state, before.hard_state);
        assert_eq!((after.start, after.last), (before.start, before.last));
        assert_eq!(after.terms, before.terms);
        // The manifest's applied index is where the group resumes applying.
        assert_eq!(after.applied, flushed);
        assert_eq!(db.flushed_index(1), flushed);
        assert_all_present(&core, 340).await;
        // Serving means a new term's first entry applied, after everything before.
        let (term, applied) = {
            let g = core.replica().group();
            (g.term(), g.applied())
        };
        assert!(term > before.hard_state.term);
        assert_eq!(applied, before.last + 1);
        db.close().await.expect("close");
    })
    .expect("executor");
}

#[test]
fn a_power_loss_keeps_every_acknowledged_write() {
    nextdb_engine::fs::glommio_fs::run_local(async {
        let fs = SimFs::new(12);
        fs.set_adversarial_power_loss(true);
        let (db, core) = open(&fs).await;
        for i in 0..200 {
            put(&core, i).await;
        }
        // Power fails: every page not fsynced may be lost.
        fs.crash();
        drop(core);
        drop(db);
        fs.restart();
        let (db, core) = open(&fs).await;
        assert_all_present(&core, 200).await;
        db.close().await.expect("close");
    })
    .expect("executor");
}
