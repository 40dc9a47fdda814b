//! `nextdb-perf backup`: online backup throughput of one shard's engine against the
//! disk's sequential write speed, measured in the same run on the same file system.
//!
//! The engine is loaded with `--mb` MiB of incompressible values (flushed to
//! SSTables), then: the peer side writes `--mb` MiB sequentially to one file through
//! the same direct-I/O driver and fsyncs it (the disk's speed for a copy's writes);
//! the NextDB side runs `Db::backup` (reads, checksums and writes every file while
//! the engine is open). The ratio is backup MB/s over sequential-write MB/s: 1.0
//! means the backup runs at the disk's write speed. An incremental backup against the
//! first (nothing new: tables are linked) is reported as a second row. One run each:
//! the figure is bandwidth, not a latency distribution.

use crate::report::machine;
use clap::Args;
use nextdb_engine::EngineConfig;
use nextdb_engine::backup::manifest::BackupManifest;
use nextdb_engine::db::{BackupTarget, Db, WriteOptions, prev_files, shard_dir_name};
use nextdb_engine::fs::glommio_fs::{DmaFs, run_local};
use nextdb_engine::fs::{FileSystem, StreamWriter};
use rand::RngCore;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bytes of each value loaded (random, so compression keeps the data's size).
const VALUE_BYTES: usize = 1024;
/// Bytes of each sequential write of the disk measurement.
const SEQ_CHUNK_BYTES: usize = 1 << 20;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// MiB of data to load and back up (and to write sequentially).
    #[arg(long, default_value_t = 256)]
    pub mb: u64,
    /// Working directory (on the disk to measure); removed afterwards.
    #[arg(long, default_value = "target/perf/backup-work")]
    pub dir: PathBuf,
    /// Where the JSON result goes.
    #[arg(long, default_value = "target/perf/backup.json")]
    pub out: PathBuf,
}

struct Figures {
    seq_mb_s: f64,
    seq_secs: f64,
    full: (u64, f64, u64),
    incremental: (u64, f64, u64),
}

pub fn run(args: BackupArgs) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let dir = std::path::absolute(&args.dir).map_err(|e| e.to_string())?;
    let mb = args.mb;
    let fig = run_local(async move { measure(&dir, mb).await })??;
    let _ = std::fs::remove_dir_all(&args.dir);
    let mb_s = |(bytes, secs, _): (u64, f64, u64)| bytes as f64 / (1 << 20) as f64 / secs;
    let row = |name: &str, (bytes, secs, copied): (u64, f64, u64)| {
        let v = mb_s((bytes, secs, copied));
        println!(
            "{name:<24} {v:>9.1} MB/s  ({bytes} bytes in {secs:.2} s, {copied} copied)  vs disk {:.1} MB/s  ratio {:.2}",
            fig.seq_mb_s,
            v / fig.seq_mb_s
        );
        json!({
            "name": name,
            "nextdb": {"ops_per_s": v, "unit": "MB/s", "bytes": bytes, "bytes_copied": copied, "secs": secs,
                       "p50_us": null, "p99_us": null},
            "peer": {"name": "sequential write + fsync, same disk", "ops_per_s": fig.seq_mb_s, "unit": "MB/s",
                     "secs": fig.seq_secs, "p50_us": null, "p99_us": null},
            "ratio": v / fig.seq_mb_s,
        })
    };
    let doc = json!({
        "suite": "backup",
        "machine": machine(),
        "config": {"mb": args.mb, "value_bytes": VALUE_BYTES},
        "results": [row("full backup", fig.full), row("incremental (no change)", fig.incremental)],
    });
    if let Some(d) = args.out.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, text + "\n").map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

async fn measure(dir: &Path, mb: u64) -> Result<Figures, String> {
    let fs = DmaFs::new();
    let e = |e: nextdb_engine::Error| e.to_string();
    let db = Db::open(fs, &dir.join("data/shard-0"), EngineConfig::default())
        .await
        .map_err(e)?;
    nextdb_engine::runtime::spawn_background(&db).map_err(e)?;
    let opts = WriteOptions {
        sync: false,
        ttl_ms: None,
    };
    let mut value = vec![0u8; VALUE_BYTES];
    for i in 0..(mb << 20) / VALUE_BYTES as u64 {
        rand::thread_rng().fill_bytes(&mut value);
        db.put(format!("key{i:012}").as_bytes(), &value, &opts)
            .await
            .map_err(e)?;
    }
    db.flush().await.map_err(e)?;
    let (seq_secs, seq_bytes) = sequential_write(&fs, &dir.join("seq.bin"), mb << 20)
        .await
        .map_err(e)?;
    fs.remove(&dir.join("seq.bin")).await.map_err(e)?;
    let full = backup(&db, &dir.join("b1"), None).await.map_err(e)?;
    let incremental = backup(&db, &dir.join("b2"), Some(&dir.join("b1")))
        .await
        .map_err(e)?;
    db.close().await.map_err(e)?;
    Ok(Figures {
        seq_mb_s: seq_bytes as f64 / (1 << 20) as f64 / seq_secs,
        seq_secs,
        full,
        incremental,
    })
}

async fn sequential_write(
    fs: &DmaFs,
    path: &Path,
    bytes: u64,
) -> nextdb_engine::Result<(f64, u64)> {
    let mut chunk = vec![0u8; SEQ_CHUNK_BYTES];
    rand::thread_rng().fill_bytes(&mut chunk);
    let started = Instant::now();
    let mut w = fs.create_stream(path, SEQ_CHUNK_BYTES).await?;
    let mut done = 0u64;
    while done < bytes {
        w.write(&chunk).await?;
        done += SEQ_CHUNK_BYTES as u64;
    }
    w.finish().await?;
    Ok((started.elapsed().as_secs_f64(), done))
}

/// (bytes in the backup, seconds, bytes copied).
async fn backup(
    db: &Db<DmaFs>,
    to: &Path,
    prev: Option<&Path>,
) -> nextdb_engine::Result<(u64, f64, u64)> {
    let rel = shard_dir_name(0);
    let prev = match prev {
        Some(p) => {
            let text =
                std::fs::read(p.join("BACKUP")).map_err(|e| nextdb_engine::Error::io(p, e))?;
            let m = BackupManifest::decode(&p.join("BACKUP"), &text)?;
            Some((p.join(&rel), prev_files(&m.files, &rel)))
        }
        None => None,
    };
    let t = BackupTarget {
        shard: 0,
        dir: to.join(&rel),
        rel,
        prev,
    };
    let started = Instant::now();
    let b = db.backup(&t).await?;
    let m = BackupManifest {
        created_ms: 0,
        shards: vec![b.point],
        files: b.files.clone(),
    };
    nextdb_engine::backup::write_backup_manifest(&DmaFs::new(), to, &m).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok((b.files.iter().map(|f| f.size).sum(), secs, b.bytes_copied))
}
