//! Real crash test: a child process writes synced batches on glommio direct I/O and
//! prints each acknowledgement; the parent `kill -9`s it at random moments (20+
//! cycles), reopens the engine and checks every acknowledged batch.

mod common;

use common::run;
use nextdb_engine::EngineConfig;
use nextdb_engine::db::Db;
use nextdb_engine::fs::glommio_fs::DmaFs;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BATCH_KEYS: u64 = 4;

fn data_dir() -> PathBuf {
    // Under target/: a real disk file system (O_DIRECT), unlike tmpfs.
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the child until killed; returns the acknowledged batch numbers.
fn run_child_and_kill(dir: &std::path::Path, start: u64, kill_after: Duration) -> Vec<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nextdb-crash-writer"))
        .arg(dir)
        .arg(start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash writer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line
                .strip_prefix("ack ")
                .and_then(|n| n.parse::<u64>().ok())
                && tx.send(n).is_err()
            {
                break;
            }
        }
    });
    // Wait for the first acknowledgement (the child has recovered and is writing),
    // then let it run for the chosen time and kill it mid-flight.
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("child produced no ack in 60 s");
    let t = Instant::now();
    while t.elapsed() < kill_after {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SIGKILL: no destructors, no flush.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "child exited on its own: {status}");
    reader.join().unwrap();
    let mut acked = vec![first];
    acked.extend(rx.try_iter());
    acked
}

#[test]
fn kill_9_under_synced_writes_loses_nothing_acknowledged() {
    let dir = data_dir();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let mut all_acked: Vec<u64> = Vec::new();
    let mut next_start = 0u64;
    let cycles = 20;
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(rng.gen_range(5..400));
        let acked = run_child_and_kill(&dir, next_start, kill_after);
        assert!(!acked.is_empty());
        next_start = acked.iter().max().unwrap() + 1 + 64;
        all_acked.extend(acked);
        let check = all_acked.clone();
        let d = dir.clone();
        let missing = run(move || async move {
            let db = Db::open(DmaFs::new(), &d, EngineConfig::default())
                .await
                .expect("recovery failed");
            let mut missing = Vec::new();
            for &i in &check {
                for j in 0..BATCH_KEYS {
                    let k = i * BATCH_KEYS + j;
                    let want = format!("value-{k}-{}", "x".repeat((k % 64) as usize));
                    let got = db
                        .get(format!("key{k:010}").as_bytes())
                        .await
                        .expect("read");
                    if got.as_deref() != Some(want.as_bytes()) {
                        missing.push(k);
                    }
                }
            }
            db.close().await.unwrap();
            missing
        });
        assert!(
            missing.is_empty(),
            "cycle {cycle}: {} acknowledged keys lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    assert!(
        all_acked.len() > 100,
        "too few acknowledged writes ({}) to mean anything",
        all_acked.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
