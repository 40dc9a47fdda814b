//! Settings a running engine changes (`db::live`): a block cache shrink holds under
//! further reads and keeps answers right, a grow keeps what is cached, the row cache
//! resizes or says it does not exist, and the background shares stay in glommio's
//! range.

mod common;

use common::run;
use nextdb_engine::EngineConfig;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::SimFs;
use std::path::Path;
use std::rc::Rc;

const W: WriteOptions = WriteOptions {
    sync: false,
    ttl_ms: None,
};

async fn open(row_cache_bytes: usize) -> Rc<Db<SimFs>> {
    let cfg = EngineConfig {
        block_cache_bytes: 4 << 20,
        row_cache_bytes,
        ..EngineConfig::small_for_tests()
    };
    Db::open(SimFs::new(7), Path::new("/live"), cfg)
        .await
        .unwrap()
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

async fn read_all(db: &Db<SimFs>, n: u32) {
    for i in 0..n {
        let v = db.get(&key(i)).await.unwrap();
        assert_eq!(v.as_deref(), Some(&[i as u8; 1000][..]), "key {i}");
    }
}

#[test]
fn the_block_cache_shrinks_under_reads_and_grows_back() {
    run(|| async {
        let db = open(0).await;
        let n = 2000;
        for i in 0..n {
            db.put(&key(i), &[i as u8; 1000], &W).await.unwrap();
        }
        db.flush().await.unwrap();
        read_all(&db, n).await;
        let full = db.stats().cache_bytes;
        assert!(full > 1 << 20, "2 MB of tables read: {full} bytes cached");

        db.set_block_cache_bytes(256 << 10);
        let s = db.stats();
        assert_eq!(s.cache_capacity_bytes, 256 << 10);
        assert!(
            s.cache_bytes <= 256 << 10,
            "{} bytes after the shrink",
            s.cache_bytes
        );
        read_all(&db, n).await;
        assert!(db.stats().cache_bytes <= 256 << 10);

        db.set_block_cache_bytes(8 << 20);
        let kept = db.stats().cache_bytes;
        read_all(&db, n).await;
        let s = db.stats();
        assert_eq!(s.cache_capacity_bytes, 8 << 20);
        assert!(
            s.cache_bytes > kept.max(1 << 20),
            "{} bytes after the grow",
            s.cache_bytes
        );
        db.close().await.unwrap();
    });
}

#[test]
fn the_row_cache_resizes_only_where_there_is_one() {
    run(|| async {
        let without = open(0).await;
        assert_eq!(without.row_cache_bytes(), None);
        assert!(without.set_row_cache_bytes(1 << 20).is_err());
        without.close().await.unwrap();

        let db = open(1 << 20).await;
        assert_eq!(db.row_cache_bytes(), Some(1 << 20));
        db.set_row_cache_bytes(0).unwrap();
        assert_eq!(db.row_cache_bytes(), Some(0));
        assert_eq!(db.stats().row_cache_bytes, 0);
        db.close().await.unwrap();
    });
}

#[test]
fn background_shares_stay_within_glommio_range() {
    run(|| async {
        let db = open(0).await;
        assert_eq!(
            db.background_shares(),
            nextdb_engine::config::BACKGROUND_SHARES
        );
        db.set_background_shares(0);
        assert_eq!(db.background_shares(), 1);
        db.set_background_shares(5000);
        assert_eq!(
            db.background_shares(),
            nextdb_engine::config::MAX_TASK_QUEUE_SHARES
        );
        db.close().await.unwrap();
    });
}
