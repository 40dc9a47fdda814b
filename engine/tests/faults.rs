//! Injected I/O errors: a failed log fsync fails the write that waited for it, poisons
//! the engine (no later write is acknowledged), and recovery after a restart keeps
//! every write acknowledged before the failure.

mod common;

use common::{key_for, run, tiny_config, value_for};
use nextdb_engine::Error;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::{OpKind, SimFs};
use std::path::Path;

#[test]
fn failed_fsync_poisons_and_recovery_keeps_acknowledged_writes() {
    run(|| async {
        let fs = SimFs::new(11);
        let dir = Path::new("/eio");
        let db = Db::open(fs.clone(), dir, tiny_config()).await.unwrap();
        let sync = WriteOptions {
            sync: true,
            ttl_ms: None,
        };
        for k in 0..50 {
            db.put(&key_for(k), &value_for(k, 0, 60), &sync)
                .await
                .unwrap();
        }
        fs.fail_op(1, OpKind::Sync);
        let e = db
            .put(b"doomed", b"x", &sync)
            .await
            .expect_err("write survived a failed fsync");
        assert!(
            matches!(e, Error::Io { .. } | Error::Poisoned(_)),
            "unexpected error: {e}"
        );
        let e = db
            .put(b"after", b"x", &sync)
            .await
            .expect_err("engine accepted a write after a failed fsync");
        assert!(
            matches!(e, Error::Poisoned(_)),
            "expected Poisoned, got: {e}"
        );
        // Reads of acknowledged data still work.
        assert_eq!(
            db.get(&key_for(7)).await.unwrap(),
            Some(value_for(7, 0, 60))
        );
        drop(db);
        fs.crash();
        fs.restart();
        let db = Db::open(fs.clone(), dir, tiny_config()).await.unwrap();
        for k in 0..50 {
            assert_eq!(
                db.get(&key_for(k)).await.unwrap(),
                Some(value_for(k, 0, 60)),
                "key {k}"
            );
        }
        assert_eq!(db.get(b"after").await.unwrap(), None);
        db.put(b"again", b"ok", &sync).await.unwrap();
    });
}

#[test]
fn failed_table_write_during_flush_is_an_error_not_data_loss() {
    run(|| async {
        let fs = SimFs::new(12);
        let dir = Path::new("/eio2");
        let db = Db::open(fs.clone(), dir, tiny_config()).await.unwrap();
        let sync = WriteOptions {
            sync: true,
            ttl_ms: None,
        };
        for k in 0..40 {
            db.put(&key_for(k), &value_for(k, 0, 60), &sync)
                .await
                .unwrap();
        }
        fs.fail_op(1, OpKind::Write);
        // The flush writes a table; its first write fails.
        let r = db.flush().await;
        assert!(r.is_err(), "flush hid an I/O error");
        drop(db);
        fs.crash();
        fs.restart();
        let db = Db::open(fs.clone(), dir, tiny_config()).await.unwrap();
        for k in 0..40 {
            assert_eq!(
                db.get(&key_for(k)).await.unwrap(),
                Some(value_for(k, 0, 60)),
                "key {k}"
            );
        }
    });
}
