//! The row cache never serves a stale version: every write, delete, flush and
//! compaction of a cached key, snapshot reads below a cached version, and expiry.
//! Each case first makes sure the key is in the row cache (its hits rise), so the
//! read that follows the change would see a stale entry if one were served.

mod common;

use common::run;
use nextdb_engine::EngineConfig;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::SimFs;
use std::path::Path;
use std::rc::Rc;

const W: WriteOptions = WriteOptions {
    sync: true,
    ttl_ms: None,
};

async fn open(seed: u64) -> Rc<Db<SimFs>> {
    let cfg = EngineConfig {
        row_cache_bytes: 1 << 20,
        ..EngineConfig::small_for_tests()
    };
    Db::open(SimFs::new(seed), Path::new("/rc"), cfg)
        .await
        .unwrap()
}

/// Reads `key` until a read is served by the row cache; returns what it read.
async fn read_cached(db: &Db<SimFs>, key: &[u8]) -> Option<Vec<u8>> {
    let before = db.stats().row_cache_hits;
    for _ in 0..4 {
        let v = db.get(key).await.unwrap();
        if db.stats().row_cache_hits > before {
            return v;
        }
    }
    panic!("{key:?} never came from the row cache");
}

#[test]
fn writes_deletes_flushes_and_compactions_never_serve_stale_rows() {
    run(|| async {
        let db = open(1).await;
        db.put(b"k", b"v1", &W).await.unwrap();
        db.put(b"other", b"o", &W).await.unwrap();
        db.flush().await.unwrap();
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"v1"[..]));

        // A write after a cached read: served from the memtable, then from the
        // flushed table, then from the compacted one.
        db.put(b"k", b"v2", &W).await.unwrap();
        assert_eq!(db.get(b"k").await.unwrap().as_deref(), Some(&b"v2"[..]));
        db.flush().await.unwrap();
        assert_eq!(db.get(b"k").await.unwrap().as_deref(), Some(&b"v2"[..]));
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"v2"[..]));
        db.compact_range(None, None).await.unwrap();
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"v2"[..]));

        // An overwrite that reaches the deepest level by flush and compaction while
        // the older version is cached.
        db.put(b"k", b"v3", &W).await.unwrap();
        db.flush().await.unwrap();
        db.compact_range(None, None).await.unwrap();
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"v3"[..]));

        // A delete: in the memtable, flushed, compacted away.
        db.delete(b"k", &W).await.unwrap();
        assert_eq!(db.get(b"k").await.unwrap(), None);
        db.flush().await.unwrap();
        assert_eq!(db.get(b"k").await.unwrap(), None);
        db.compact_range(None, None).await.unwrap();
        assert_eq!(db.get(b"k").await.unwrap(), None);
        assert_eq!(read_cached(&db, b"other").await.as_deref(), Some(&b"o"[..]));

        // Written again after the delete.
        db.put(b"k", b"v4", &W).await.unwrap();
        db.flush().await.unwrap();
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"v4"[..]));
        db.close().await.unwrap();
    });
}

#[test]
fn snapshot_reads_below_a_cached_version_read_the_table() {
    run(|| async {
        let db = open(2).await;
        db.put(b"k", b"old", &W).await.unwrap();
        let snap = db.snapshot();
        db.put(b"k", b"new", &W).await.unwrap();
        // Both versions in one table.
        db.flush().await.unwrap();
        // The snapshot first (its reads find a newer version, which they do not
        // cache), then the latest state, cached.
        for _ in 0..3 {
            let v = db.get_at(b"k", Some(snap.ts())).await.unwrap();
            assert_eq!(v.as_deref(), Some(&b"old"[..]));
        }
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"new"[..]));
        for _ in 0..3 {
            let v = db.get_at(b"k", Some(snap.ts())).await.unwrap();
            assert_eq!(v.as_deref(), Some(&b"old"[..]));
        }
        // A compaction keeps the version the snapshot sees.
        db.compact_range(None, None).await.unwrap();
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"new"[..]));
        let v = db.get_at(b"k", Some(snap.ts())).await.unwrap();
        assert_eq!(v.as_deref(), Some(&b"old"[..]));
        drop(snap);
        db.close().await.unwrap();
    });
}

#[test]
fn an_expired_cached_row_reads_as_absent() {
    run(|| async {
        let db = open(3).await;
        let ttl = WriteOptions {
            sync: true,
            ttl_ms: Some(50),
        };
        db.put(b"k", b"short", &ttl).await.unwrap();
        db.flush().await.unwrap();
        assert_eq!(read_cached(&db, b"k").await.as_deref(), Some(&b"short"[..]));
        glommio::timer::sleep(std::time::Duration::from_millis(80)).await;
        assert_eq!(db.get(b"k").await.unwrap(), None);
        db.close().await.unwrap();
    });
}
