//! Backup, point-in-time restore and verification of data directories and backups.
//!
//! The online part (`Db::backup`, `db/checkpoint.rs`) runs on each shard's core; the
//! rest runs offline on one thread (`restore`, `verify`). Formats in
//! `docs/formats.md` (backup manifest, log archive, flush commit times).

pub mod copy;
pub mod manifest;
pub mod restore;
pub mod verify;

use crate::Result;
use crate::fs::{FileSystem, atomic};
use std::path::Path;

/// Writes the backup manifest into `dir` (atomically: a backup without `BACKUP` is
/// incomplete, and restore and verify refuse it). The last step of a backup.
pub async fn write_backup_manifest<F: FileSystem>(
    fs: &F,
    dir: &Path,
    m: &manifest::BackupManifest,
) -> Result<()> {
    atomic::write_atomic(fs, dir, manifest::BACKUP_MANIFEST, m.encode().as_bytes()).await
}

#[cfg(test)]
mod tests;
