//! Corruption: flipped bits in a data block, an index block, the manifest and the
//! middle of the log give a clear error naming the file; a torn log tail is cut and
//! recovery succeeds.

mod common;

use common::{key_for, run, tiny_config, value_for};
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::SimFs;
use nextdb_engine::{EngineConfig, Error};
use std::path::{Path, PathBuf};

const DIR: &str = "/corrupt";

fn big_memtable() -> EngineConfig {
    // Nothing is flushed: every write stays in the log.
    EngineConfig {
        memtable_bytes: 64 << 20,
        log_segment_bytes: 16 << 20,
        ..tiny_config()
    }
}

async fn fill(fs: &SimFs, cfg: EngineConfig, n: u64, flush: bool) {
    let db = Db::open(fs.clone(), Path::new(DIR), cfg).await.unwrap();
    for k in 0..n {
        db.put(
            &key_for(k),
            &value_for(k, 0, 100),
            &WriteOptions {
                sync: k % 16 == 15,
                ttl_ms: None,
            },
        )
        .await
        .unwrap();
    }
    if flush {
        db.flush().await.unwrap();
    }
    db.close().await.unwrap();
}

fn files_with(fs: &SimFs, dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs
        .list_files()
        .into_iter()
        .filter(|p| p.starts_with(dir) && p.to_string_lossy().contains(suffix))
        .collect();
    v.sort();
    v
}

fn assert_corruption_names(e: &Error, file: &Path) {
    match e {
        Error::Corruption { path, .. } => {
            assert_eq!(path, file, "corruption error names the wrong file: {e}")
        }
        other => panic!(
            "expected a corruption error naming {}, got: {other}",
            file.display()
        ),
    }
}

#[test]
fn flipped_bit_in_a_data_block_is_reported_with_the_file() {
    run(|| async {
        let fs = SimFs::new(1);
        // One flushed table; compaction would not change the picture.
        fill(
            &fs,
            EngineConfig {
                memtable_bytes: 1 << 20,
                ..tiny_config()
            },
            200,
            true,
        )
        .await;
        let sst = files_with(&fs, DIR, ".sst");
        assert_eq!(sst.len(), 1, "expected one table, found {sst:?}");
        fs.flip_bit(&sst[0], 100, 3).unwrap();
        let db = Db::open(fs.clone(), Path::new(DIR), tiny_config())
            .await
            .unwrap();
        let mut saw = None;
        for k in 0..200 {
            if let Err(e) = db.get(&key_for(k)).await {
                saw = Some(e);
                break;
            }
        }
        let e = saw.expect("no read reported the flipped data block");
        assert_corruption_names(&e, &sst[0]);
        let scan = db.scan(None, None, usize::MAX, false).await;
        assert!(scan.is_err(), "a full scan read past a corrupt block");
    });
}

#[test]
fn flipped_bit_in_the_index_block_fails_open_naming_the_file() {
    run(|| async {
        let fs = SimFs::new(2);
        fill(
            &fs,
            EngineConfig {
                memtable_bytes: 1 << 20,
                ..tiny_config()
            },
            200,
            true,
        )
        .await;
        let sst = files_with(&fs, DIR, ".sst");
        assert_eq!(sst.len(), 1);
        let len = fs.file_len(&sst[0]).unwrap();
        // The index block sits right before the fixed-size footer at the end.
        let footer = nextdb_engine::sst::table::FOOTER_BYTES as u64;
        fs.flip_bit(&sst[0], len - footer - 12, 1).unwrap();
        let e = match Db::open(fs.clone(), Path::new(DIR), tiny_config()).await {
            Err(e) => e,
            Ok(db) => {
                // Index read lazily? Then the first read must fail.
                let mut err = None;
                for k in 0..200 {
                    if let Err(e) = db.get(&key_for(k)).await {
                        err = Some(e);
                        break;
                    }
                }
                err.expect("flipped index went unnoticed")
            }
        };
        assert_corruption_names(&e, &sst[0]);
    });
}

#[test]
fn flipped_bit_in_the_manifest_fails_open_naming_it() {
    run(|| async {
        let fs = SimFs::new(3);
        fill(
            &fs,
            EngineConfig {
                memtable_bytes: 1 << 20,
                ..tiny_config()
            },
            200,
            true,
        )
        .await;
        let m = files_with(&fs, DIR, "MANIFEST-");
        assert_eq!(m.len(), 1, "{m:?}");
        // Inside the first record's payload (past the segment header and record header).
        let off = nextdb_engine::log::segment::FIRST_RECORD_OFFSET + 40;
        fs.flip_bit(&m[0], off, 0).unwrap();
        let e = Db::open(fs.clone(), Path::new(DIR), tiny_config())
            .await
            .err()
            .expect("open succeeded");
        assert_corruption_names(&e, &m[0]);
    });
}

#[test]
fn flipped_bit_mid_log_fails_open_naming_the_segment() {
    run(|| async {
        let fs = SimFs::new(4);
        fill(&fs, big_memtable(), 2000, false).await;
        let logs = files_with(&fs, &format!("{DIR}/log"), ".log");
        assert!(!logs.is_empty());
        let seg = &logs[0];
        let len = fs.file_len(seg).unwrap();
        assert!(len > 64 << 10, "log too short for a mid-log flip: {len}");
        fs.flip_bit(seg, len / 3, 5).unwrap();
        let e = Db::open(fs.clone(), Path::new(DIR), big_memtable())
            .await
            .err()
            .expect("open succeeded");
        assert_corruption_names(&e, seg);
    });
}

#[test]
fn torn_log_tail_is_truncated_and_recovery_succeeds() {
    run(|| async {
        let fs = SimFs::new(5);
        let db = Db::open(fs.clone(), Path::new(DIR), big_memtable())
            .await
            .unwrap();
        let sync = WriteOptions {
            sync: true,
            ttl_ms: None,
        };
        for k in 0..300 {
            db.put(&key_for(k), &value_for(k, 0, 100), &sync)
                .await
                .unwrap();
        }
        // An unsynced tail, then a crash that keeps only part of the last write.
        for k in 300..400 {
            db.put(&key_for(k), &value_for(k, 0, 100), &WriteOptions::default())
                .await
                .unwrap();
        }
        drop(db);
        fs.crash();
        fs.restart();
        let logs = files_with(&fs, &format!("{DIR}/log"), ".log");
        let last = logs.last().unwrap();
        let len = fs.file_len(last).unwrap();
        // A torn final flush: a page of garbage after the last durable byte.
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
            .collect();
        let at = len.div_ceil(4096) * 4096;
        fs.write_raw(last, at, &garbage).unwrap();
        let db = Db::open(fs.clone(), Path::new(DIR), big_memtable())
            .await
            .expect("torn tail must recover");
        for k in 0..300 {
            assert_eq!(
                db.get(&key_for(k)).await.unwrap(),
                Some(value_for(k, 0, 100)),
                "synced key {k} lost"
            );
        }
        // The engine keeps working after the cut.
        db.put(b"after", b"ok", &sync).await.unwrap();
        db.close().await.unwrap();
        drop(db);
        let db = Db::open(fs.clone(), Path::new(DIR), big_memtable())
            .await
            .unwrap();
        assert_eq!(db.get(b"after").await.unwrap(), Some(b"ok".to_vec()));
    });
}
