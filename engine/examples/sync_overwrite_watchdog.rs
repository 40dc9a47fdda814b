//! Stall hunt for the synced-overwrite workload: fills a database with unsynced random
//! puts, reopens it, then runs several concurrent writers of synced puts while flushes
//! and compactions run in the low-share background queue, all on one executor with a
//! chosen preemption timer. A watchdog on its own OS thread exits with status 2 (after
//! printing the engine's state) if no put completes for `--stall-secs`, so a lost wakeup
//! shows as a failed run instead of a hang.
//!
//! `cargo run --release -p nextdb-engine --example sync_overwrite_watchdog -- \
//!     [--preempt-us 1000] [--runs 20] [--num 200000] [--writers 16] [--per-writer 2000]
//!     [--dir PATH]`
//!
//! `--dir` must be on a file system with O_DIRECT (not tmpfs). Not a benchmark: the
//! figures it prints are there to see that the run did real work.

use nextdb_engine::EngineConfig;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::glommio_fs::DmaFs;
use nextdb_engine::runtime::spawn_background;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Args {
    preempt_us: u64,
    runs: u32,
    num: u64,
    writers: u64,
    per_writer: u64,
    stall_secs: u64,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        preempt_us: 1000,
        runs: 20,
        num: 200_000,
        writers: 16,
        per_writer: 2000,
        stall_secs: 20,
        dir: std::env::temp_dir().join("nextdb-overwrite-watchdog"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = || v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--preempt-us" => a.preempt_us = n()?,
            "--runs" => a.runs = n()? as u32,
            "--num" => a.num = n()?,
            "--writers" => a.writers = n()?,
            "--per-writer" => a.per_writer = n()?,
            "--stall-secs" => a.stall_secs = n()?,
            "--dir" => a.dir = PathBuf::from(&v),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// Small memtables and levels, so the overwrite phase flushes and compacts many times.
fn config() -> EngineConfig {
    EngineConfig {
        memtable_bytes: 1 << 20,
        log_segment_bytes: 4 << 20,
        level1_bytes: 8 << 20,
        target_file_bytes: 2 << 20,
        block_cache_bytes: 64 << 20,
        ..EngineConfig::default()
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn key(n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&n.to_be_bytes());
    k
}

async fn open(dir: &Path) -> Result<Rc<Db<DmaFs>>, String> {
    let db = Db::open(DmaFs::new(), dir, config())
        .await
        .map_err(|e| e.to_string())?;
    spawn_background(&db).map_err(|e| e.to_string())?;
    Ok(db)
}

/// One fill + reopen + synced overwrite; `progress` counts completed puts.
async fn run_once(
    a: Args,
    seed: u64,
    progress: Arc<AtomicU64>,
    state: Arc<Mutex<String>>,
) -> Result<(), String> {
    let db = open(&a.dir).await?;
    let mut x = seed | 1;
    let value = [0x5au8; 100];
    for _ in 0..a.num {
        let k = key(xorshift(&mut x) % a.num);
        db.put(&k, &value, &WriteOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        progress.fetch_add(1, Ordering::Relaxed);
    }
    db.close().await.map_err(|e| e.to_string())?;
    drop(db);
    let db = open(&a.dir).await?;
    let reporter = {
        let db = db.clone();
        glommio::spawn_local(async move {
            loop {
                *state.lock().unwrap_or_else(|p| p.into_inner()) = db.debug_state();
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..a.writers {
        let db = db.clone();
        let progress = progress.clone();
        let (num, per) = (a.num, a.per_writer);
        tasks.push(glommio::spawn_local(async move {
            let mut x = seed.wrapping_add(w + 1) | 1;
            let sync = WriteOptions {
                sync: true,
                ttl_ms: None,
            };
            for _ in 0..per {
                let k = key(xorshift(&mut x) % num);
                db.put(&k, &value, &sync).await.map_err(|e| e.to_string())?;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await?;
    }
    drop(reporter);
    db.close().await.map_err(|e| e.to_string())
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(64);
        }
    };
    let _ = nextdb_engine::fs::glommio_fs::raise_memlock_limit();
    let progress = Arc::new(AtomicU64::new(0));
    let state = Arc::new(Mutex::new(String::new()));
    let done = Arc::new(AtomicBool::new(false));
    {
        let (progress, state, done) = (progress.clone(), state.clone(), done.clone());
        let stall = Duration::from_secs(a.stall_secs);
        std::thread::spawn(move || {
            let (mut last, mut since) = (0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let p = progress.load(Ordering::Relaxed);
                if p != last {
                    (last, since) = (p, Instant::now());
                } else if since.elapsed() >= stall {
                    let s = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    eprintln!("STALL: no put completed for {stall:?} after {p} puts\n{s}");
                    std::process::exit(2);
                }
            }
        });
    }
    for run in 0..a.runs {
        let _ = std::fs::remove_dir_all(&a.dir);
        let t = Instant::now();
        let (args, p, s) = (a.clone(), progress.clone(), state.clone());
        let res = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(nextdb_engine::config::LOCAL_EXECUTOR_IO_MEMORY_BYTES)
            .preempt_timer(Duration::from_micros(a.preempt_us))
            .spawn(move || async move { run_once(args, 0x9e37 + run as u64, p, s).await })
            .map_err(|e| e.to_string())
            .and_then(|h| h.join().map_err(|e| e.to_string()));
        match res {
            Ok(Ok(())) => println!("run {run}: ok in {:.1} s", t.elapsed().as_secs_f64()),
            Ok(Err(e)) | Err(e) => {
                eprintln!("run {run}: failed: {e}");
                std::process::exit(1);
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&a.dir);
    println!("{} runs without a stall", a.runs);
}
