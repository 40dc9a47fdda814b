//! Crash test on the simulated file system: crash at every Nth I/O operation, restart
//! (unsynced data lost, torn last writes), recover, and check that every acknowledged
//! batch is there in full, that no batch is half applied, and that a clean crash never
//! reports corruption.

mod common;

use common::{key_for, run, tiny_config, value_for};
use nextdb_engine::Error;
use nextdb_engine::batch::WriteBatch;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::SimFs;
use std::collections::BTreeSet;
use std::path::Path;

const BATCH_KEYS: u64 = 3;
const DIR: &str = "/crash";

/// Writes batches `start..end` (each: 3 keys, synced) and records the acknowledged
/// ones; stops at the first error (the simulated crash).
async fn write_batches(
    db: &Db<SimFs>,
    start: u64,
    end: u64,
    acked: &mut BTreeSet<u64>,
) -> Result<(), Error> {
    let opts = WriteOptions {
        sync: true,
        ttl_ms: None,
    };
    for i in start..end {
        let mut b = WriteBatch::new();
        for j in 0..BATCH_KEYS {
            let k = i * BATCH_KEYS + j;
            b.put(&key_for(k), &value_for(k, 0, 40 + (k % 50) as usize))?;
        }
        db.write(&b, &opts).await?;
        acked.insert(i);
        if i % 97 == 0 {
            db.flush().await?;
        }
        if i % 251 == 0 {
            db.compact_range(None, None).await?;
        }
    }
    Ok(())
}

/// Every acknowledged batch is complete; every other batch is all-or-nothing.
async fn verify(db: &Db<SimFs>, upto: u64, acked: &BTreeSet<u64>, ctx: &str) {
    for i in 0..upto {
        let mut present = 0;
        for j in 0..BATCH_KEYS {
            let k = i * BATCH_KEYS + j;
            match db.get(&key_for(k)).await {
                Ok(Some(v)) => {
                    assert_eq!(
                        v,
                        value_for(k, 0, 40 + (k % 50) as usize),
                        "{ctx}: wrong value for key {k}"
                    );
                    present += 1;
                }
                Ok(None) => {}
                Err(e) => panic!("{ctx}: read error after recovery: {e}"),
            }
        }
        if acked.contains(&i) {
            assert_eq!(present, BATCH_KEYS, "{ctx}: acknowledged batch {i} lost");
        } else {
            assert!(
                present == 0 || present == BATCH_KEYS,
                "{ctx}: batch {i} half applied ({present}/3)"
            );
        }
    }
}

async fn open_after_crash(fs: &SimFs, ctx: &str) -> std::rc::Rc<Db<SimFs>> {
    fs.restart();
    match Db::open(fs.clone(), Path::new(DIR), tiny_config()).await {
        Ok(db) => db,
        Err(e) => panic!("{ctx}: recovery after a clean crash failed: {e}"),
    }
}

async fn crash_cycle(seed: u64, crash_at: u64, second_crash: u64) {
    let fs = SimFs::new(seed);
    // Half the crashes keep a torn prefix of each file's last unsynced write.
    fs.set_torn_write_probability(0.5);
    let mut acked = BTreeSet::new();
    fs.crash_after_ops(crash_at);
    let ctx = format!("seed {seed} crash at op {crash_at}");
    if let Ok(db) = Db::open(fs.clone(), Path::new(DIR), tiny_config()).await {
        let r = write_batches(&db, 0, 400, &mut acked).await;
        assert!(
            r.is_err(),
            "{ctx}: workload finished before the crash point"
        );
    }
    let db = open_after_crash(&fs, &ctx).await;
    verify(&db, 400, &acked, &ctx).await;
    // Keep writing on the recovered engine, crash again, and check both rounds.
    fs.crash_after_ops(second_crash);
    let _ = write_batches(&db, 400, 800, &mut acked).await;
    drop(db);
    let ctx2 = format!("{ctx}, then at +{second_crash}");
    let db = open_after_crash(&fs, &ctx2).await;
    verify(&db, 800, &acked, &ctx2).await;
}

#[test]
fn crash_at_every_nth_io() {
    run(|| async {
        // Count the I/O operations of an uncrashed run to choose crash points.
        let fs = SimFs::new(1);
        let db = Db::open(fs.clone(), Path::new(DIR), tiny_config())
            .await
            .unwrap();
        let mut acked = BTreeSet::new();
        write_batches(&db, 0, 400, &mut acked).await.unwrap();
        let total = fs.ops_count();
        assert!(total > 100, "workload did too little I/O ({total} ops)");
        let runs: u64 = std::env::var("NEXTDB_CRASH_POINTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        let step = (total / runs).max(1);
        let mut n = 1;
        while n < total {
            crash_cycle(n, n, 1 + (n * 7919) % 400).await;
            n += step;
        }
    });
}
