//! The write path as explicit steps: `admit` (may suspend), `commit` (synchronous),
//! `wait_durable`. A caller that checks something after `admit` and then commits sees
//! no other commit in between, which is what per-key locks of the shard rely on.

mod common;

use common::{key_for, tiny_config, value_for};
use nextdb_engine::batch::WriteBatch;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::{OpKind, SimFs};
use nextdb_engine::runtime::testing::run_bounded;
use nextdb_engine::{EngineConfig, Error};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

const WRITERS: u64 = 8;
const ROUNDS: u64 = 60;
const KEYS: u64 = 3;

/// One commit as seen by the test: who committed what, at which timestamp.
#[derive(Clone, Copy)]
struct Event {
    ts: u64,
    key: u64,
    writer: u64,
    /// First or last write of a locked section.
    marks_lock: bool,
}

/// Writer `w`: takes a key's lock (checked right after `admit`, taken with the commit
/// of its first write), writes a second time while holding it across awaits, then
/// releases it. Unlocked writers of the same key must never commit in between.
async fn locked_writer(
    db: Rc<Db<SimFs>>,
    w: u64,
    locks: Rc<RefCell<HashMap<u64, u64>>>,
    log: Rc<RefCell<Vec<Event>>>,
) {
    let sync = WriteOptions {
        sync: true,
        ttl_ms: None,
    };
    for r in 0..ROUNDS {
        let key = (w + r) % KEYS;
        let mut b = WriteBatch::new();
        b.put(&key_for(key), &value_for(key, r, 400)).unwrap();
        let c = loop {
            let _admitted = db.admit(b.byte_size()).await.unwrap();
            if locks.borrow().contains_key(&key) {
                glommio::timer::sleep(Duration::from_micros(200)).await;
                continue;
            }
            let before = db.written_ts();
            let c = db.commit(&b, &sync).unwrap();
            assert_eq!(
                c.ts(),
                before + 1,
                "another commit ran between admit and commit"
            );
            break c;
        };
        let lock = r % 2 == 0;
        if lock {
            locks.borrow_mut().insert(key, w);
        }
        log.borrow_mut().push(Event {
            ts: c.ts(),
            key,
            writer: w,
            marks_lock: lock,
        });
        db.wait_durable(&c).await.unwrap();
        if lock {
            // A second write under the lock; the lock holder itself need not check.
            let _admitted = db.admit(b.byte_size()).await.unwrap();
            let c = db.commit(&b, &sync).unwrap();
            log.borrow_mut().push(Event {
                ts: c.ts(),
                key,
                writer: w,
                marks_lock: true,
            });
            db.wait_durable(&c).await.unwrap();
            locks.borrow_mut().remove(&key);
        }
    }
}

/// Every commit of a key between a lock holder's two writes must be the holder's.
fn check_lock_intervals(events: &[Event]) {
    let mut events = events.to_vec();
    events.sort_by_key(|e| e.ts);
    let mut held: HashMap<u64, u64> = HashMap::new();
    for e in &events {
        match held.get(&e.key) {
            Some(&holder) if holder != e.writer => panic!(
                "writer {} committed key {} at ts {} while writer {holder} held its lock",
                e.writer, e.key, e.ts
            ),
            Some(_) if e.marks_lock => {
                held.remove(&e.key);
            }
            None if e.marks_lock => {
                held.insert(e.key, e.writer);
            }
            _ => {}
        }
    }
    assert!(held.is_empty(), "a lock section was not closed: {held:?}");
}

/// Tiny memtables, and a delay in `admit` whenever L0 holds a file, so that writers
/// often suspend in `admit` while others commit.
fn stalling_config() -> EngineConfig {
    EngineConfig {
        max_immutable_memtables: 1,
        l0_compaction_trigger: 1,
        l0_slowdown_trigger: 1,
        l0_stop_trigger: 8,
        slowdown_delay_us: 50,
        ..tiny_config()
    }
}

#[test]
fn check_after_admit_then_commit_is_atomic() {
    run_bounded(Duration::from_secs(60), || async {
        let db = Db::open(SimFs::new(71), Path::new("/admit"), stalling_config())
            .await
            .unwrap();
        nextdb_engine::runtime::spawn_background(&db).unwrap();
        let locks = Rc::new(RefCell::new(HashMap::new()));
        let log = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| glommio::spawn_local(locked_writer(db.clone(), w, locks.clone(), log.clone())))
            .collect();
        for t in tasks {
            t.await;
        }
        let events = log.borrow().clone();
        assert_eq!(events.len() as u64, WRITERS * ROUNDS * 3 / 2);
        check_lock_intervals(&events);
        let st = db.stats();
        assert!(
            st.flushes > 0,
            "the run never flushed: admit never had to wait"
        );
        db.close().await.unwrap();
    });
}

#[test]
fn commit_of_an_empty_batch_changes_nothing() {
    run_bounded(Duration::from_secs(30), || async {
        let db = Db::open(SimFs::new(72), Path::new("/empty"), tiny_config())
            .await
            .unwrap();
        db.put(b"k", b"v", &WriteOptions::default()).await.unwrap();
        let before = db.written_ts();
        let e = db
            .commit(&WriteBatch::new(), &WriteOptions::default())
            .expect_err("an empty batch was committed");
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert_eq!(db.written_ts(), before);
        // `write` keeps treating an empty batch as a no-op.
        db.write(&WriteBatch::new(), &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(db.written_ts(), before);
        let mut b = WriteBatch::new();
        b.put(b"k2", b"v2").unwrap();
        let c = db.commit(&b, &WriteOptions::default()).unwrap();
        assert_eq!(c.ts(), before + 1);
        assert!(!c.sync());
        db.wait_durable(&c).await.unwrap();
        assert_eq!(db.get(b"k2").await.unwrap(), Some(b"v2".to_vec()));
    });
}

#[test]
fn synced_commit_is_invisible_until_durable() {
    run_bounded(Duration::from_secs(30), || async {
        let db = Db::open(SimFs::new(73), Path::new("/vis"), tiny_config())
            .await
            .unwrap();
        let mut b = WriteBatch::new();
        b.put(b"k", b"v").unwrap();
        let sync = WriteOptions {
            sync: true,
            ttl_ms: None,
        };
        let c = db.commit(&b, &sync).unwrap();
        assert_eq!(db.get(b"k").await.unwrap(), None);
        db.wait_durable(&c).await.unwrap();
        assert_eq!(db.get(b"k").await.unwrap(), Some(b"v".to_vec()));
    });
}

#[test]
fn commit_after_a_background_error_is_refused() {
    run_bounded(Duration::from_secs(30), || async {
        let fs = SimFs::new(74);
        let db = Db::open(fs.clone(), Path::new("/bgerr"), tiny_config())
            .await
            .unwrap();
        let mut k = 0;
        while db.stats().immutable_memtables == 0 {
            db.put(&key_for(k), &value_for(k, 0, 100), &WriteOptions::default())
                .await
                .unwrap();
            k += 1;
        }
        db.sync_log().await.unwrap();
        let last = db.written_ts();
        // The next write of any file is the flush's table: it fails in the background.
        fs.fail_op(1, OpKind::Write);
        nextdb_engine::runtime::spawn_background(&db).unwrap();
        // `admit` reports the error once the background flush has failed.
        let e = loop {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            if let Err(e) = db.admit(1).await {
                break e;
            }
        };
        assert!(matches!(e, Error::Poisoned(_)), "{e}");
        let mut b = WriteBatch::new();
        b.put(b"after", b"x").unwrap();
        let e = db
            .commit(&b, &WriteOptions::default())
            .expect_err("a commit was accepted after a background error");
        assert!(matches!(e, Error::Poisoned(_)), "{e}");
        assert_eq!(db.written_ts(), last, "a refused commit took a timestamp");
        assert!(matches!(db.admit(1).await, Err(Error::Poisoned(_))));
    });
}
