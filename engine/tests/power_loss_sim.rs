//! Power loss on the simulated file system, beyond `crash_sim.rs`: there a crash
//! loses every unsynced write except a torn prefix of the last one; here the disk
//! behind a power cut is a write-back cache that persisted an arbitrary subset of the
//! unsynced 4 KiB pages, in any order (as a drive without power-loss protection may).
//! After recovery, every synced write must be there and the writes present must be a
//! prefix of the log order: a lost page in the middle of an unsynced log flush must
//! not let recovery replay the records behind it. See docs/testing.md, "Power loss".
//!
//! CI runs `DEFAULT_SEEDS` seeds; `NEXTDB_POWER_LOSS_SEEDS=N` runs N (full mode),
//! `NEXTDB_POWER_LOSS_SEED=S` runs only seed S (to reproduce a failure).

mod common;

use common::{key_for, run, tiny_config, value_for};
use nextdb_engine::Error;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::sim::SimFs;
use nextdb_engine::fs::{FileSystem, ReadFile};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

const DIR: &str = "/power";
const PAGE_BYTES: usize = 4096;
const DEFAULT_SEEDS: u64 = 150;
/// Largest read the file-system contract allows at once is far above this.
const READ_CHUNK_BYTES: usize = 64 << 10;

fn value(i: u64) -> Vec<u8> {
    value_for(i, 0, 20 + (i % 7) as usize * 300)
}

/// Every file's current (pre-crash) contents, synced or not.
async fn snapshot(fs: &SimFs) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for path in fs.list_files() {
        let f = fs.open_read(&path).await.expect("open for snapshot");
        let len = f.size() as usize;
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            let n = READ_CHUNK_BYTES.min(len - bytes.len());
            let chunk = f
                .read_exact_at(bytes.len() as u64, n)
                .await
                .expect("read for snapshot");
            bytes.extend_from_slice(&chunk);
        }
        out.push((path, bytes));
    }
    out
}

/// After `restart` (durable state only), lands each unsynced page of each surviving
/// file with probability 1/2: an arbitrary subset, so later pages may survive while
/// earlier ones are lost. Returns how many pages it landed.
fn land_random_pages(fs: &SimFs, before: &[(PathBuf, Vec<u8>)], rng: &mut SmallRng) -> usize {
    let mut landed = 0;
    for (path, current) in before {
        let Ok(durable) = fs.read_durable(path) else {
            continue; // Its name never became durable: the file is gone.
        };
        for (p, page) in current.chunks(PAGE_BYTES).enumerate() {
            let off = p * PAGE_BYTES;
            let old = durable.get(off..(off + page.len()).min(durable.len()));
            if old == Some(page) || !rng.gen_bool(0.5) {
                continue;
            }
            fs.write_raw(path, off as u64, page).expect("land page");
            landed += 1;
        }
    }
    landed
}

/// What recovery did with a power-cut state that passed the checks.
enum Outcome {
    Recovered,
    /// Recovery reported corruption and refused to open: safe, but the node would not
    /// start without an operator.
    Refused(String),
}

/// One seed: write, cut the power at a random write, recover, check. Err: what went
/// wrong, with the seed and the cut.
async fn power_cut(seed: u64) -> Result<Outcome, String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let fs = SimFs::new(seed);
    let db = Db::open(fs.clone(), Path::new(DIR), tiny_config())
        .await
        .expect("open");
    let cut_at = rng.gen_range(1..1500u64);
    let mut synced_upto: Option<u64> = None;
    for i in 0..cut_at {
        // Mostly unsynced writes (they reach the log file unsynced once its buffer
        // fills), one in eight synced: the acknowledged ones.
        let sync = rng.gen_ratio(1, 8);
        let opts = WriteOptions { sync, ttl_ms: None };
        db.put(&key_for(i), &value(i), &opts).await.expect("put");
        if sync {
            synced_upto = Some(i);
        }
    }
    let before = snapshot(&fs).await;
    fs.crash();
    drop(db);
    fs.restart();
    let landed = land_random_pages(&fs, &before, &mut rng);
    let ctx = format!(
        "seed {seed}: power cut after {cut_at} writes (synced up to {synced_upto:?}), \
         {landed} unsynced pages landed"
    );
    let db = match Db::open(fs.clone(), Path::new(DIR), tiny_config()).await {
        Ok(db) => db,
        Err(e @ Error::Corruption { .. }) => return Ok(Outcome::Refused(format!("{ctx}: {e}"))),
        Err(e) => return Err(format!("{ctx}: recovery after a power cut failed: {e}")),
    };
    let mut present = Vec::with_capacity(cut_at as usize);
    for i in 0..cut_at {
        match db.get(&key_for(i)).await {
            Ok(Some(v)) => {
                assert_eq!(v, value(i), "{ctx}: wrong value for write {i}");
                present.push(true);
            }
            Ok(None) => present.push(false),
            Err(e) => return Err(format!("{ctx}: read of write {i} failed: {e}")),
        }
    }
    check_prefix(&present, synced_upto, &ctx).map(|()| Outcome::Recovered)
}

/// Every synced write is present, and the present writes are a prefix of the log.
fn check_prefix(present: &[bool], synced_upto: Option<u64>, ctx: &str) -> Result<(), String> {
    let prefix = present.iter().take_while(|p| **p).count();
    if let Some(s) = synced_upto.filter(|s| prefix as u64 <= *s) {
        return Err(format!(
            "{ctx}: synced write {prefix} lost (writes up to {s} were acknowledged)"
        ));
    }
    if let Some(after_hole) = present[prefix..].iter().position(|p| *p) {
        return Err(format!(
            "{ctx}: write {prefix} is missing but write {} is present: recovery replayed \
             past a hole",
            prefix + after_hole
        ));
    }
    Ok(())
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("NEXTDB_POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("NEXTDB_POWER_LOSS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (1..=n).collect()
}

/// Runs every seed; returns the failures and the refusals (`NEXTDB_POWER_LOSS_SURVEY`
/// set: all of them; else up to the first failure).
async fn run_seeds(refusal_fails: bool) -> (Vec<String>, Vec<String>) {
    let survey = std::env::var_os("NEXTDB_POWER_LOSS_SURVEY").is_some();
    let (mut failures, mut refusals) = (Vec::new(), Vec::new());
    for seed in seeds() {
        match power_cut(seed).await {
            Ok(Outcome::Recovered) => {}
            Ok(Outcome::Refused(e)) if !refusal_fails => refusals.push(e),
            Ok(Outcome::Refused(e)) | Err(e) => failures.push(e),
        }
        if !failures.is_empty() && !survey {
            break;
        }
    }
    (failures, refusals)
}

/// Safety: no acknowledged write lost, no write recovered past a hole. Refusing to
/// open (corruption reported) is safe, and counted.
#[test]
fn power_cut_never_loses_synced_writes_nor_replays_past_a_hole() {
    run(|| async {
        let (failures, refusals) = run_seeds(false).await;
        eprintln!(
            "{} of {} power cuts refused to open",
            refusals.len(),
            seeds().len()
        );
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

/// Availability: a power cut loses only unsynced writes, so recovery must open (cut
/// the log at the first hole after the synced data) rather than report corruption.
#[test]
fn power_cut_recovers_without_an_operator() {
    run(|| async {
        let (failures, _) = run_seeds(true).await;
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

/// The checker itself: a lost synced write and a hole are both reported.
#[test]
fn prefix_check_reports_lost_synced_writes_and_holes() {
    assert!(check_prefix(&[true, true, false], Some(1), "t").is_ok());
    assert!(check_prefix(&[false, false], None, "t").is_ok());
    let lost = check_prefix(&[true, false, false], Some(1), "t").unwrap_err();
    assert!(lost.contains("synced write 1 lost"), "{lost}");
    let hole = check_prefix(&[true, false, true], Some(0), "t").unwrap_err();
    assert!(hole.contains("replayed past a hole"), "{hole}");
}
