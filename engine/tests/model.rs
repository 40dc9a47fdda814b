//! Model test: random sequences of put / delete / batch / flush / compact / reopen /
//! snapshot reads / scans, checked against a `BTreeMap` after every step.

mod common;

use common::{assert_same_rows, run, tiny_config};
use nextdb_engine::batch::WriteBatch;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::SimFs;
use nextdb_engine::iter::ReadOptions;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn rand_key(rng: &mut SmallRng) -> Vec<u8> {
    // Small key space for many overwrites; some keys are prefixes of others.
    let k = rng.gen_range(0..300u32);
    if k % 7 == 0 {
        format!("k{}", k / 7).into_bytes()
    } else {
        format!("k{k:04}").into_bytes()
    }
}

fn rand_value(rng: &mut SmallRng) -> Vec<u8> {
    let len = if rng.gen_bool(0.05) {
        rng.gen_range(500..3000)
    } else {
        rng.gen_range(0..64)
    };
    (0..len).map(|_| rng.r#gen::<u8>()).collect()
}

async fn check_scan(db: &Db<SimFs>, model: &Model, rng: &mut SmallRng) {
    let lo = rng.gen_bool(0.5).then(|| rand_key(rng));
    let hi = rng.gen_bool(0.5).then(|| rand_key(rng));
    let expect: Vec<(Vec<u8>, Vec<u8>)> = model
        .iter()
        .filter(|(k, _)| lo.as_ref().is_none_or(|l| *k >= l) && hi.as_ref().is_none_or(|h| *k < h))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fwd = db
        .scan(lo.as_deref(), hi.as_deref(), usize::MAX, false)
        .await
        .unwrap();
    assert_same_rows(&fwd, &expect, &format!("forward scan [{lo:?}, {hi:?})"));
    let rev = db
        .scan(lo.as_deref(), hi.as_deref(), usize::MAX, true)
        .await
        .unwrap();
    let mut e = expect.clone();
    e.reverse();
    assert_same_rows(&rev, &e, &format!("reverse scan [{lo:?}, {hi:?})"));
    // Mixed directions: forward three steps then back two must match the model.
    let mut it = db
        .iter(ReadOptions {
            read_ts: None,
            lower_bound: lo.clone(),
            upper_bound: hi.clone(),
        })
        .await
        .unwrap();
    it.seek_to_first().await.unwrap();
    let mut pos = 0usize;
    for step in 0..6 {
        let back = step % 3 == 2;
        if back {
            it.prev().await.unwrap();
            pos = pos.wrapping_sub(1);
        } else {
            it.next().await.unwrap();
            pos += 1;
        }
        match expect.get(pos) {
            Some((k, v)) if pos != usize::MAX => {
                assert!(it.valid(), "iterator ended early at {pos}");
                assert_eq!(it.key(), k.as_slice());
                assert_eq!(it.value(), v.as_slice());
            }
            _ => {
                assert!(!it.valid());
                break;
            }
        }
    }
}

/// Seeks (each on a new iterator, as a point-like seek does, and some on one reused
/// iterator), then moves both ways: the merging iterator defers the sources that
/// cannot hold the sought key, and every move after it must still match the model.
async fn check_seeks(db: &Db<SimFs>, model: &Model, rng: &mut SmallRng) {
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    let mut reused = db.iter(ReadOptions::default()).await.unwrap();
    for round in 0..8 {
        let target = rand_key(rng);
        let pos = keys.partition_point(|k| **k < target);
        let mut fresh;
        let it = if round % 2 == 0 {
            fresh = db.iter(ReadOptions::default()).await.unwrap();
            &mut fresh
        } else {
            &mut reused
        };
        it.seek(&target).await.unwrap();
        let moves: [i64; 4] = [0, 1, 1, -1];
        let mut at = pos as i64;
        for (i, m) in moves.iter().enumerate() {
            match m {
                1 => it.next().await.unwrap(),
                -1 => it.prev().await.unwrap(),
                _ => {}
            }
            at += m;
            let what = format!("seek {target:?} then move {i}");
            match usize::try_from(at).ok().and_then(|a| keys.get(a)) {
                Some(k) => {
                    assert!(it.valid(), "{what}: ended early");
                    assert_eq!(it.key(), k.as_slice(), "{what}");
                    assert_eq!(it.value(), model[*k].as_slice(), "{what}");
                }
                None => {
                    assert!(!it.valid(), "{what}: valid past the end");
                    break;
                }
            }
        }
    }
}

async fn run_seed(seed: u64, steps: usize) {
    let fs = SimFs::new(seed);
    let dir = Path::new("/db");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut db: Rc<Db<SimFs>> = Db::open(fs.clone(), dir, tiny_config()).await.unwrap();
    let mut model = Model::new();
    let mut snaps: Vec<(nextdb_engine::db::Snapshot, Model)> = Vec::new();
    let sync = WriteOptions {
        sync: true,
        ttl_ms: None,
    };
    for step in 0..steps {
        match rng.gen_range(0..100) {
            0..=49 => {
                let (k, v) = (rand_key(&mut rng), rand_value(&mut rng));
                db.put(
                    &k,
                    &v,
                    &WriteOptions {
                        sync: rng.gen_bool(0.3),
                        ttl_ms: None,
                    },
                )
                .await
                .unwrap();
                model.insert(k, v);
            }
            50..=64 => {
                let k = rand_key(&mut rng);
                db.delete(&k, &sync).await.unwrap();
                model.remove(&k);
            }
            65..=72 => {
                let mut b = WriteBatch::new();
                let mut m2 = model.clone();
                for _ in 0..rng.gen_range(1..8) {
                    let k = rand_key(&mut rng);
                    if rng.gen_bool(0.7) {
                        let v = rand_value(&mut rng);
                        b.put(&k, &v).unwrap();
                        m2.insert(k, v);
                    } else {
                        b.delete(&k).unwrap();
                        m2.remove(&k);
                    }
                }
                db.write(&b, &sync).await.unwrap();
                model = m2;
            }
            73..=77 => db.flush().await.unwrap(),
            78..=80 => {
                let a = rand_key(&mut rng);
                let b = rand_key(&mut rng);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                db.compact_range(Some(&lo), Some(&hi)).await.unwrap();
            }
            81..=82 => db.compact_range(None, None).await.unwrap(),
            83..=84 => {
                db.close().await.unwrap();
                drop(db);
                snaps.clear();
                db = Db::open(fs.clone(), dir, tiny_config()).await.unwrap();
            }
            85..=87 => {
                if snaps.len() < 4 {
                    snaps.push((db.snapshot(), model.clone()));
                }
            }
            88..=90 => {
                if let Some((snap, m)) = snaps.pop() {
                    for _ in 0..20 {
                        let k = rand_key(&mut rng);
                        let got = db.get_at(&k, Some(snap.ts())).await.unwrap();
                        assert!(
                            got.as_ref() == m.get(&k),
                            "seed {seed} step {step}: snapshot get {:?}",
                            String::from_utf8_lossy(&k)
                        );
                    }
                    let mut it = db
                        .iter(ReadOptions {
                            read_ts: Some(snap.ts()),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    it.seek_to_first().await.unwrap();
                    let mut got = Vec::new();
                    while it.valid() {
                        got.push((it.key().to_vec(), it.value().to_vec()));
                        it.next().await.unwrap();
                    }
                    let want: Vec<_> = m.into_iter().collect();
                    if got != want && std::env::var("NEXTDB_DEBUG").is_ok() {
                        for (k, _) in got
                            .iter()
                            .filter(|(k, _)| !want.iter().any(|(w, _)| w == k))
                        {
                            let g = db.get_at(k, Some(snap.ts())).await.unwrap();
                            eprintln!(
                                "extra key {:?}: get_at -> {:?}; stats {:?}",
                                String::from_utf8_lossy(k),
                                g.map(|v| v.len()),
                                db.stats().levels
                            );
                            db.debug_versions(k).await;
                        }
                    }
                    assert_same_rows(
                        &got,
                        &want,
                        &format!("seed {seed} step {step}: snapshot scan at ts {}", snap.ts()),
                    );
                }
            }
            91..=95 => {
                check_scan(&db, &model, &mut rng).await;
                check_seeks(&db, &model, &mut rng).await;
            }
            _ => {
                let _ = db.compact_once().await.unwrap();
            }
        }
        for _ in 0..3 {
            let k = rand_key(&mut rng);
            let got = db.get(&k).await.unwrap();
            assert!(
                got.as_ref() == model.get(&k),
                "seed {seed} step {step}: get {:?}: got {:?} bytes, want {:?}",
                String::from_utf8_lossy(&k),
                got.as_ref().map(|v| v.len()),
                model.get(&k).map(|v| v.len())
            );
        }
    }
    check_scan(&db, &model, &mut rng).await;
    check_seeks(&db, &model, &mut rng).await;
    db.compact_range(None, None).await.unwrap();
    let all = db.scan(None, None, usize::MAX, false).await.unwrap();
    assert_same_rows(
        &all,
        &model.into_iter().collect::<Vec<_>>(),
        &format!("seed {seed}: final scan"),
    );
    db.close().await.unwrap();
}

#[test]
fn model_random_sequences() {
    let seeds: u64 = std::env::var("NEXTDB_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    run(move || async move {
        for seed in 0..seeds {
            run_seed(seed, 1500).await;
        }
    });
}

#[test]
fn ttl_expires_and_is_dropped_at_the_bottom() {
    run(|| async {
        let fs = SimFs::new(7);
        let db = Db::open(fs, Path::new("/ttl"), tiny_config())
            .await
            .unwrap();
        db.put(
            b"short",
            b"v",
            &WriteOptions {
                sync: true,
                ttl_ms: Some(1),
            },
        )
        .await
        .unwrap();
        db.put(
            b"long",
            b"v",
            &WriteOptions {
                sync: true,
                ttl_ms: Some(3_600_000),
            },
        )
        .await
        .unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(db.get(b"short").await.unwrap(), None);
        assert_eq!(db.get(b"long").await.unwrap(), Some(b"v".to_vec()));
        db.compact_range(None, None).await.unwrap();
        let st = db.stats();
        let entries: u64 = st.levels.iter().map(|l| l.files as u64).sum();
        assert!(entries >= 1);
        assert_eq!(db.scan(None, None, 10, false).await.unwrap().len(), 1);
    });
}
