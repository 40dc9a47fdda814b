//! `nextdb admin backup`: the node's online backup. The core that received the
//! request checks the paths, asks every core to back its shard up (each on its own
//! core, concurrently: `Db::backup`), copies the node's own small files (`NODE`,
//! `users`) and writes the backup manifest `BACKUP` last, so a directory without it
//! is an incomplete backup that restore and verify refuse.
//!
//! Ownership: the requesting core runs this; the shards' copies run on their cores.

use crate::error::ShardError;
use crate::ops::{ShardOp, ShardResult};
use crate::router::{Router, Transport, join_all};
use nextdb_engine::backup::copy::Sum;
use nextdb_engine::backup::manifest::{BACKUP_MANIFEST, BackupManifest, FileEntry};
use nextdb_engine::db::{BackupTarget, ShardBackup, prev_files, shard_dir_name};
use nextdb_engine::fs::FileSystem;
use nextdb_engine::log::segment::wall_clock_ms;
use serde_json::json;
use std::path::Path;

/// Node-level files a backup carries besides the shards (small: read in one go).
const NODE_FILES: [&str; 2] = ["NODE", "users"];

impl<F: FileSystem, T: Transport> Router<F, T> {
    /// Backs the node up into `to` (absolute; missing or an empty directory),
    /// incrementally against the backup `prev` when given. Returns a JSON summary.
    pub async fn backup(&self, to: &Path, prev: Option<&Path>) -> Result<String, ShardError> {
        let started = std::time::Instant::now();
        prepare_target(to)?;
        let prev_manifest = match prev {
            Some(p) => Some(read_prev(p, self.shards)?),
            None => None,
        };
        let calls: Vec<_> = (0..self.shards)
            .map(|s| {
                let rel = shard_dir_name(s as u32);
                let target = BackupTarget {
                    shard: s as u32,
                    dir: to.join(&rel),
                    prev: prev
                        .zip(prev_manifest.as_ref())
                        .map(|(p, m)| (p.join(&rel), prev_files(&m.files, &rel))),
                    rel,
                };
                self.call(s, ShardOp::Backup(Box::new(target)))
            })
            .collect();
        let mut shards: Vec<ShardBackup> = Vec::new();
        for r in join_all(calls).await {
            match r? {
                ShardResult::Backup(b) => shards.push(*b),
                _ => {
                    return Err(ShardError::Internal(
                        "backup answered with another result".into(),
                    ));
                }
            }
        }
        let mut m = BackupManifest {
            created_ms: wall_clock_ms(),
            shards: shards.iter().map(|b| b.point).collect(),
            files: shards
                .iter()
                .flat_map(|b| b.files.iter().cloned())
                .collect(),
        };
        let data_dir = self.core.db.dir().parent().unwrap_or(Path::new("."));
        copy_node_files(data_dir, to, &mut m.files)?;
        nextdb_engine::fs::atomic::write_atomic_blocking(
            to,
            BACKUP_MANIFEST,
            m.encode().as_bytes(),
            0o644,
        )
        .map_err(|e| ShardError::Storage(format!("cannot write {BACKUP_MANIFEST}: {e}")))?;
        let copied: u64 = shards.iter().map(|b| b.bytes_copied).sum();
        Ok(json!({
            "to": to.display().to_string(),
            "shards": m.shards.iter().map(|p| json!({
                "shard": p.shard, "time_ms": p.time_ms, "log_seq": p.log_seq, "log_end": p.log_end,
            })).collect::<Vec<_>>(),
            "files": m.files.len(),
            "bytes": m.files.iter().map(|f| f.size).sum::<u64>(),
            "bytes_copied": copied,
            "files_linked": shards.iter().map(|b| b.files_linked).sum::<u64>(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })
        .to_string())
    }
}

/// `to` must be absolute (the server resolves it, not the client) and either missing
/// or an empty directory; it is created.
fn prepare_target(to: &Path) -> Result<(), ShardError> {
    if !to.is_absolute() {
        return Err(ShardError::InvalidArgument(format!(
            "backup directory {} is not an absolute path",
            to.display()
        )));
    }
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ShardError::InvalidArgument(format!(
                    "backup directory {} is not empty",
                    to.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ShardError::InvalidArgument(format!(
                "backup directory {}: {e}",
                to.display()
            )));
        }
    }
    std::fs::create_dir_all(to)
        .map_err(|e| ShardError::Storage(format!("cannot create {}: {e}", to.display())))
}

/// The previous backup's manifest; it must be a complete backup of a node with the
/// same number of shards.
fn read_prev(prev: &Path, shards: usize) -> Result<BackupManifest, ShardError> {
    let path = prev.join(BACKUP_MANIFEST);
    if !prev.is_absolute() {
        return Err(ShardError::InvalidArgument(format!(
            "previous backup {} is not an absolute path",
            prev.display()
        )));
    }
    let text = std::fs::read(&path).map_err(|e| {
        ShardError::InvalidArgument(format!(
            "{} is not a complete backup ({}: {e})",
            prev.display(),
            path.display()
        ))
    })?;
    let m = BackupManifest::decode(&path, &text)
        .map_err(|e| ShardError::InvalidArgument(format!("previous backup: {e}")))?;
    if m.shards.len() != shards {
        return Err(ShardError::InvalidArgument(format!(
            "previous backup {} holds {} shards, this node has {shards}",
            prev.display(),
            m.shards.len()
        )));
    }
    Ok(m)
}

/// Copies `NODE` and `users` (when present) from the data directory into the backup.
fn copy_node_files(
    data_dir: &Path,
    to: &Path,
    files: &mut Vec<FileEntry>,
) -> Result<(), ShardError> {
    for name in NODE_FILES {
        let bytes = match std::fs::read(data_dir.join(name)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ShardError::Storage(format!("cannot read {name}: {e}"))),
        };
        nextdb_engine::fs::atomic::write_atomic_blocking(to, name, &bytes, 0o600).map_err(|e| {
            ShardError::Storage(format!("cannot write {name} into the backup: {e}"))
        })?;
        let sum = Sum {
            size: bytes.len() as u64,
            crc32c: nextdb_engine::codec::crc32c(&bytes),
        };
        files.push(FileEntry {
            path: name.to_string(),
            size: sum.size,
            crc32c: sum.crc32c,
        });
    }
    Ok(())
}
