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
/// Adversarial runs sync one batch in this many.
const ADVERSARIAL_SYNC_EVERY: u64 = 8;

/// Writes batches `start..end` (each: 3 keys, synced) and records the acknowledged
/// ones; stops at the first error (the simulated crash).
async fn write_batches(
    db: &Db<SimFs>,
    start: u64,
    end: u64,
    acked: &mut BTreeSet<u64>,
) -> Result<(), Error> {
    write_batches_synced_every(db, start, end, 1, acked).await
}

/// As [`write_batches`], but only every `sync_every`-th batch is synced; the others
/// are written unsynced (they reach the log in larger, multi-page flushes). A synced
/// batch acknowledges itself and every batch before it (the log is replayed in order).
async fn write_batches_synced_every(
    db: &Db<SimFs>,
    start: u64,
    end: u64,
    sync_every: u64,
    acked: &mut BTreeSet<u64>,
) -> Result<(), Error> {
    for i in start..end {
        let opts = WriteOptions {
            sync: (i + 1) % sync_every == 0,
            ttl_ms: None,
        };
        let mut b = WriteBatch::new();
        for j in 0..BATCH_KEYS {
            let k = i * BATCH_KEYS + j;
            b.put(&key_for(k), &value_for(k, 0, 40 + (k % 50) as usize))?;
        }
        db.write(&b, &opts).await?;
        if opts.sync {
            acked.extend(start..=i);
        }
        if i % 97 == 0 {
            db.flush().await?;
        }
        if i % 251 == 0 {
            db.compact_range(None, None).await?;
        }
    }
    Ok(())
}

/// Every acknowledged batch is complete; every other batch is all-or-nothing; and the
/// batches present in each round of 400 are a prefix of the round (batch i was issued
/// after batch i-1 returned, so recovering i without i-1 replayed the log past a hole;
/// a new round starts after a recovery, which may have lost the last round's tail).
async fn verify(db: &Db<SimFs>, upto: u64, acked: &BTreeSet<u64>, ctx: &str) {
    let mut first_missing = None;
    for i in 0..upto {
        if i % 400 == 0 {
            first_missing = None;
        }
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
        if present == 0 {
            first_missing.get_or_insert(i);
        } else if let Some(m) = first_missing {
            panic!("{ctx}: batch {i} recovered but batch {m} before it is missing");
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

async fn crash_cycle(seed: u64, crash_at: u64, second_crash: u64, adversarial: bool) {
    // Adversarial runs sync every 8th batch, so unsynced multi-page flushes can lose
    // pages out of order.
    let sync_every = if adversarial {
        ADVERSARIAL_SYNC_EVERY
    } else {
        1
    };
    let fs = SimFs::new(seed);
    // Half the crashes keep a torn prefix of each file's last unsynced write.
    fs.set_torn_write_probability(0.5);
    // Or: any subset of unsynced pages and a prefix of unsynced name changes survive.
    fs.set_adversarial_power_loss(adversarial);
    let mut acked = BTreeSet::new();
    fs.crash_after_ops(crash_at);
    let ctx = format!("seed {seed} crash at op {crash_at} (adversarial {adversarial})");
    if let Ok(db) = Db::open(fs.clone(), Path::new(DIR), tiny_config()).await {
        let r = write_batches_synced_every(&db, 0, 400, sync_every, &mut acked).await;
        assert!(
            r.is_err(),
            "{ctx}: workload finished before the crash point"
        );
    }
    let db = open_after_crash(&fs, &ctx).await;
    verify(&db, 400, &acked, &ctx).await;
    // Keep writing on the recovered engine, crash again, and check both rounds.
    fs.crash_after_ops(second_crash);
    let _ = write_batches_synced_every(&db, 400, 800, sync_every, &mut acked).await;
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
            crash_cycle(n, n, 1 + (n * 7919) % 400, false).await;
            n += step;
        }
    });
}

/// The same workload under adversarial power loss: any subset of unsynced pages (not
/// only a suffix), unsynced truncations and a prefix of unsynced creations, renames and
/// removals survive each crash. Crash points and loss choices derive from the seed.
#[test]
fn adversarial_power_loss_keeps_every_acknowledged_write() {
    run(|| async {
        let fs = SimFs::new(1);
        let db = Db::open(fs.clone(), Path::new(DIR), tiny_config())
            .await
            .unwrap();
        let mut acked = BTreeSet::new();
        write_batches_synced_every(&db, 0, 400, ADVERSARIAL_SYNC_EVERY, &mut acked)
            .await
            .unwrap();
        let total = fs.ops_count();
        let seeds: u64 = std::env::var("NEXTDB_ADVERSARIAL_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(150);
        for seed in 1..=seeds {
            // The first 60 seeds crash at each op of the first open and the first
            // writes; the rest spread crash points over the run.
            let crash_at = if seed <= 60 {
                seed
            } else {
                1 + (seed * 104_729) % total
            };
            crash_cycle(seed, crash_at, 1 + (seed * 7919) % 400, true).await;
        }
    });
}
