//! `nextdb admin restore`: a data directory rebuilt from a backup, optionally rolled
//! forward through the log archive to a moment.
//!
//! The restored log of each shard is the backup's, then the archived segments that
//! follow the backup's cut, cut at the first flush whose commit time is after the
//! moment (a flush boundary, so the result is an ordinary log whose last segment
//! ends cleanly). A node started on it recovers as after a clean stop: the Raft
//! groups re-apply every entry in the kept flushes.
//!
//! Ownership: offline, one thread (the CLI's executor).

use super::copy;
use super::manifest::{BackupManifest, ShardPoint};
use super::verify::{read_backup_manifest, verify};
use crate::fs::FileSystem;
use crate::log::segment::SegmentReader;
use crate::log::segment_name;
use crate::{Error, Result};
use std::path::Path;

/// What a restore did, per shard: the moment its log reaches (commit time of the
/// last flush kept, or the backup's point) and the last segment it holds.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub shards: Vec<(u32, u64)>,
    pub files: u64,
}

/// Restores `backup` into `dest` (which must be missing or empty). With `to_ms`, the
/// log of each shard is rolled forward from the archive `archive/shard-N` through
/// every flush committed at or before `to_ms`. Refuses a backup that fails
/// verification, a moment before the backup's point, and a moment past the archive's
/// end (nothing proves the archive holds every write up to it).
pub async fn restore<F: FileSystem>(
    fs: &F,
    backup: &Path,
    archive: Option<&Path>,
    to_ms: Option<u64>,
    dest: &Path,
) -> Result<RestoreReport> {
    let report = verify(fs, backup).await?;
    if !fs
        .exists(&backup.join(super::manifest::BACKUP_MANIFEST))
        .await?
    {
        return Err(Error::InvalidArgument(format!(
            "{} is not a backup (no BACKUP file)",
            backup.display()
        )));
    }
    if let Some(p) = report.problems.first() {
        return Err(Error::InvalidArgument(format!(
            "the backup is corrupt ({} problems), nothing restored; first: {p}",
            report.problems.len()
        )));
    }
    if fs.exists(dest).await? && !fs.list_dir(dest).await?.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} is not empty; restore into a new directory",
            dest.display()
        )));
    }
    let m = read_backup_manifest(fs, backup).await?;
    if to_ms.is_some() && archive.is_none() {
        return Err(Error::InvalidArgument(
            "a restore to a moment needs the log archive (--archive-dir)".into(),
        ));
    }
    let mut out = RestoreReport::default();
    copy_backup_files(fs, backup, &m, dest, &mut out).await?;
    for p in &m.shards {
        let reached = match (to_ms, archive) {
            (Some(t), Some(a)) => roll_forward(fs, &m, p, a, t, dest).await?,
            _ => p.time_ms,
        };
        out.shards.push((p.shard, reached));
    }
    Ok(out)
}

async fn copy_backup_files<F: FileSystem>(
    fs: &F,
    backup: &Path,
    m: &BackupManifest,
    dest: &Path,
    out: &mut RestoreReport,
) -> Result<()> {
    for f in &m.files {
        let to = dest.join(&f.path);
        let (Some(dir), Some(name)) = (to.parent(), to.file_name().and_then(|n| n.to_str())) else {
            return Err(Error::InvalidArgument(format!(
                "bad path {} in the backup",
                f.path
            )));
        };
        crate::fs::create_dir_all_durable(fs, dir).await?;
        let sum = copy::copy_durably(fs, &backup.join(&f.path), dir, name, None).await?;
        if sum.size != f.size || sum.crc32c != f.crc32c {
            return Err(Error::corruption(
                backup.join(&f.path),
                0,
                "changed while it was restored",
            ));
        }
        out.files += 1;
    }
    Ok(())
}

/// Rolls shard `p`'s restored log forward through the archive to `to_ms`; returns
/// the commit time of the last flush kept.
async fn roll_forward<F: FileSystem>(
    fs: &F,
    m: &BackupManifest,
    p: &ShardPoint,
    archive: &Path,
    to_ms: u64,
    dest: &Path,
) -> Result<u64> {
    let rel = crate::db::shard_dir_name(p.shard);
    if to_ms < p.time_ms {
        return Err(Error::InvalidArgument(format!(
            "shard {}: the moment {to_ms} is before the backup's point {}; use an older backup",
            p.shard, p.time_ms
        )));
    }
    let (arch, log) = (archive.join(&rel), dest.join(&rel).join("log"));
    check_archive_continues(fs, m, p, &arch).await?;
    let mut reached = p.time_ms;
    let mut seq = p.log_seq;
    loop {
        let name = segment_name(seq);
        let src = arch.join(&name);
        if !fs.exists(&src).await? {
            return Err(Error::InvalidArgument(format!(
                "shard {}: the log archive ends at {reached} (segment {seq} is not archived), \
                 before the moment {to_ms}; choose an earlier moment",
                p.shard
            )));
        }
        let (cut, last_ms) = first_flush_after(fs, &src, to_ms).await?;
        reached = reached.max(last_ms);
        match cut {
            Some(at) => {
                copy::copy_durably(fs, &src, &log, &name, Some(at)).await?;
                return Ok(reached);
            }
            None => {
                copy::copy_durably(fs, &src, &log, &name, None).await?;
                seq += 1;
            }
        }
    }
}

/// The archive must hold the backup's partial active segment as a prefix of its own
/// copy: the same segment, not another node's or another run's.
async fn check_archive_continues<F: FileSystem>(
    fs: &F,
    m: &BackupManifest,
    p: &ShardPoint,
    arch: &Path,
) -> Result<()> {
    let rel = format!(
        "{}/log/{}",
        crate::db::shard_dir_name(p.shard),
        segment_name(p.log_seq)
    );
    let want = m.by_path().get(rel.as_str()).map(|f| f.crc32c);
    let src = arch.join(segment_name(p.log_seq));
    let continues = match want {
        Some(w) if fs.exists(&src).await? => {
            copy::sum_prefix(fs, &src, p.log_end).await.ok() == Some(w)
        }
        _ => false,
    };
    if continues {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "shard {}: the log archive {} does not continue this backup (its segment {} is \
         missing or differs from the backup's); was it made with --archive-dir {}?",
        p.shard,
        arch.display(),
        p.log_seq,
        arch.parent()
            .map_or_else(String::new, |d| d.display().to_string())
    )))
}

/// The offset of the first flush of `path` committed after `to_ms` (`None`: every
/// flush is at or before it), and the latest commit time at or before `to_ms`.
async fn first_flush_after<F: FileSystem>(
    fs: &F,
    path: &Path,
    to_ms: u64,
) -> Result<(Option<u64>, u64)> {
    let mut r = SegmentReader::open(fs, path, true).await?;
    let mut last_ms = 0;
    let mut cut = None;
    while let Some(rec) = r.next().await? {
        if rec.commit_ms > to_ms {
            cut = Some(rec.flush_offset);
            break;
        }
        last_ms = last_ms.max(rec.commit_ms);
    }
    r.close().await?;
    Ok((cut, last_ms))
}
