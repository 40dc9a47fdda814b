//! Child process of the engine's real crash test: opens the engine on glommio direct
//! I/O in the directory given as the first argument and writes synced batches from the
//! index given as the second argument onward, printing `ack N` after batch N is
//! acknowledged. The parent kills it with SIGKILL at a random moment and checks that
//! every acknowledged batch survived. Not a user tool.

use nextdb_engine::EngineConfig;
use nextdb_engine::batch::WriteBatch;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::glommio_fs::{DmaFs, run_local};
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

/// Keys written per batch; the parent uses the same layout.
const BATCH_KEYS: u64 = 4;
/// Concurrent writer tasks, so group commit covers several batches per fsync.
const WRITERS: u64 = 8;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(start)) = (args.next(), args.next()) else {
        eprintln!("usage: nextdb-crash-writer DIR START");
        std::process::exit(2);
    };
    let Ok(start) = start.parse::<u64>() else {
        eprintln!("START must be a number");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let res = run_local(async move {
        let cfg = EngineConfig {
            memtable_bytes: 256 << 10,
            log_segment_bytes: 1 << 20,
            level1_bytes: 1 << 20,
            target_file_bytes: 256 << 10,
            ..EngineConfig::default()
        };
        let db = match Db::open(DmaFs::new(), &dir, cfg).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("open failed: {e}");
                std::process::exit(1);
            }
        };
        if let Err(e) = nextdb_engine::runtime::spawn_background(&db) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let db: Rc<Db<DmaFs>> = db.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut i = start + w;
                loop {
                    let mut b = WriteBatch::new();
                    for j in 0..BATCH_KEYS {
                        let k = i * BATCH_KEYS + j;
                        let v = format!("value-{k}-{}", "x".repeat((k % 64) as usize));
                        if b.put(format!("key{k:010}").as_bytes(), v.as_bytes())
                            .is_err()
                        {
                            std::process::exit(1);
                        }
                    }
                    if let Err(e) = db
                        .write(
                            &b,
                            &WriteOptions {
                                sync: true,
                                ttl_ms: None,
                            },
                        )
                        .await
                    {
                        eprintln!("write failed: {e}");
                        std::process::exit(1);
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {i}");
                    let _ = out.flush();
                    i += WRITERS;
                }
            }));
        }
        if let Some(t) = tasks.into_iter().next() {
            t.await;
        }
    });
    if let Err(e) = res {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
