//! `nextdb admin backup | restore | verify`. A backup runs inside the node (through the
//! native protocol's BACKUP request: the node copies its own files while it serves);
//! restore and verify run here, on one glommio executor, against directories.

use crate::kv::ConnArgs;
use clap::Args;
use nextdb_engine::backup::{restore as engine_restore, verify as engine_verify};
use nextdb_engine::fs::glommio_fs::{DmaFs, run_local};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the CLI waits for a backup to finish (the node copies every file first).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Directory to create the backup in, on the node's machine (missing or empty).
    #[arg(long)]
    pub to: PathBuf,
    /// A previous backup: files it already holds (same name and checksum) are
    /// hard-linked from it instead of copied.
    #[arg(long)]
    pub incremental_from: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup to restore.
    #[arg(long)]
    pub from: PathBuf,
    /// The log archive the node wrote with `serve --archive-dir`.
    #[arg(long)]
    pub archive_dir: Option<PathBuf>,
    /// Roll forward to this moment: RFC 3339 (`2026-11-29T19:05:00Z`) or Unix
    /// milliseconds. Without it, the backup's own point.
    #[arg(long)]
    pub to_time: Option<String>,
    /// The data directory to create (missing or empty).
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A data directory, one shard's directory or a backup.
    pub dir: PathBuf,
}

/// The path as the node sees it: absolute, resolved against this process's working
/// directory (the node runs elsewhere).
fn absolute(p: &Path) -> Result<String, String> {
    let abs = std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?;
    abs.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not UTF-8", abs.display()))
}

pub fn backup(a: &BackupArgs) -> Result<(), String> {
    let to = absolute(&a.to)?;
    let prev = a.incremental_from.as_deref().map(absolute).transpose()?;
    let client = a.conn.connect_with_timeout(BACKUP_TIMEOUT)?;
    let json = client
        .backup(&to, prev.as_deref())
        .map_err(|e| format!("backup into {to} failed: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("bad BACKUP answer: {e}"))?;
    println!(
        "backup in {to}: {} files, {} bytes ({} copied, {} files linked from the previous backup) in {} ms",
        v["files"], v["bytes"], v["bytes_copied"], v["files_linked"], v["elapsed_ms"]
    );
    if let Some(shards) = v["shards"].as_array() {
        for s in shards {
            println!(
                "  shard {}: consistent at {} (log segment {} through byte {})",
                s["shard"],
                format_ms(s["time_ms"].as_u64().unwrap_or(0)),
                s["log_seq"],
                s["log_end"]
            );
        }
    }
    Ok(())
}

/// Unix milliseconds from RFC 3339 or a plain integer.
pub fn parse_time(t: &str) -> Result<u64, String> {
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    let d = chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
        format!(
            "--to-time {t:?} is neither RFC 3339 (2026-11-29T19:05:00Z) nor Unix milliseconds: {e}"
        )
    })?;
    u64::try_from(d.timestamp_millis()).map_err(|_| format!("--to-time {t:?} is before 1970"))
}

fn format_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map_or_else(|| ms.to_string(), |d| format!("{} ({ms})", d.to_rfc3339()))
}

pub fn restore(a: &RestoreArgs) -> Result<(), String> {
    let to_ms = a.to_time.as_deref().map(parse_time).transpose()?;
    if !a.from.exists() {
        return Err(format!("backup {} does not exist", a.from.display()));
    }
    let (from, to) = (a.from.clone(), a.to.clone());
    let archive = a.archive_dir.clone();
    let r = run_local(async move {
        engine_restore::restore(&DmaFs::new(), &from, archive.as_deref(), to_ms, &to).await
    })?
    .map_err(|e| format!("restore refused: {e}"))?;
    println!("restored {} files into {}", r.files, a.to.display());
    for (shard, ms) in &r.shards {
        println!("  shard {shard}: state as of {}", format_ms(*ms));
    }
    Ok(())
}

pub fn verify(a: &VerifyArgs) -> Result<(), String> {
    let dir = a.dir.clone();
    let r = run_local(async move { engine_verify::verify(&DmaFs::new(), &dir).await })?
        .map_err(|e| format!("cannot verify {}: {e}", a.dir.display()))?;
    for p in &r.problems {
        println!("CORRUPT {p}");
    }
    if r.problems.is_empty() {
        println!("{}: {} files verified, no damage", a.dir.display(), r.files);
        Ok(())
    } else {
        Err(format!(
            "{}: {} problems in {} files",
            a.dir.display(),
            r.problems.len(),
            r.files
        ))
    }
}
