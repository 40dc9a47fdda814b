//! Online backup of one shard: a consistent point (the manifest's version and the
//! log's durable cut, taken together), then the files copied while the core serves.
//!
//! Ownership: runs on the shard's core as one task (`Db::backup`); writers keep
//! committing meanwhile. The version it holds pins its SSTables (obsolete files are
//! deleted only once no version holds them) and a `GcPin` keeps the log's segments.

use super::{Db, log_dir, table_path};
use crate::backup::copy::{self, Sum};
use crate::backup::manifest::{FileEntry, ShardPoint};
use crate::fs::FileSystem;
use crate::log::segment::wall_clock_ms;
use crate::log::{LogCut, segment_name};
use crate::version::manifest::Manifest;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where one shard's backup goes, and the previous backup of the same shard (for an
/// incremental one): its directory and its files by name (`000004.sst`).
#[derive(Debug, Clone)]
pub struct BackupTarget {
    pub shard: u32,
    /// This shard's directory inside the backup (`BACKUP_DIR/shard-N`), created here.
    pub dir: PathBuf,
    /// Path prefix of this shard's files in the backup manifest (`shard-N`).
    pub rel: String,
    pub prev: Option<(PathBuf, BTreeMap<String, Sum>)>,
}

/// What one shard's backup holds.
#[derive(Debug, Clone)]
pub struct ShardBackup {
    pub point: ShardPoint,
    pub files: Vec<FileEntry>,
    /// Bytes written into the backup (copies), and files hard-linked from the
    /// previous backup instead.
    pub bytes_copied: u64,
    pub files_linked: u64,
}

impl<F: FileSystem> Db<F> {
    /// Backs this shard up into `t.dir` while writes continue: every write whose
    /// commit was acknowledged before the returned point's `time_ms` is in it, none
    /// sent after it. A `MANIFEST-000001` written as of the pinned version, the
    /// version's SSTables (hard-linked from the previous backup when it has the same
    /// name and checksum), and the log's closed segments plus the active one's
    /// durable prefix. Also archives that prefix when the log archives.
    pub async fn backup(&self, t: &BackupTarget) -> Result<ShardBackup> {
        crate::fs::create_dir_all_durable(&self.fs, &log_dir(&t.dir)).await?;
        self.log.sync(self.log.last_lsn()).await?;
        let lock = self.manifest_lock.lock().await;
        let _gc_pin = self.log.pin_gc();
        let snapshot = self.manifest.snapshot();
        let version = self.st.borrow().version.clone();
        let cut = self.log.wait_cut().await?;
        let time_ms = wall_clock_ms();
        drop(lock);
        Manifest::create(self.fs.clone(), &t.dir, 0, &snapshot).await?;
        let mut out = ShardBackup {
            point: ShardPoint {
                shard: t.shard,
                time_ms,
                log_seq: cut.active_seq,
                log_end: cut.active_end,
            },
            files: Vec::new(),
            bytes_copied: 0,
            files_linked: 0,
        };
        for name in ["CURRENT", "MANIFEST-000001"] {
            let sum = copy::sum_file(&self.fs, &t.dir.join(name)).await?;
            out.add(&t.rel, name, sum);
        }
        for f in version.levels.iter().flatten() {
            self.backup_table(t, f.meta.number, &mut out).await?;
        }
        self.backup_log(t, &cut, &mut out).await?;
        drop(version);
        Ok(out)
    }

    async fn backup_table(
        &self,
        t: &BackupTarget,
        number: u64,
        out: &mut ShardBackup,
    ) -> Result<()> {
        let src = table_path(&self.dir, number);
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::InvalidArgument("table path without a name".into()))?
            .to_string();
        if let Some((prev_dir, prev)) = &t.prev
            && let Some(want) = prev.get(&name)
        {
            let have = copy::sum_file(&self.fs, &src).await?;
            let to = t.dir.join(&name);
            // Another file system than the previous backup's: copy instead.
            if have == *want && self.fs.hard_link(&prev_dir.join(&name), &to).await.is_ok() {
                out.files_linked += 1;
                out.add(&t.rel, &name, have);
                return Ok(());
            }
        }
        let sum = copy::copy_durably(&self.fs, &src, &t.dir, &name, None).await?;
        out.bytes_copied += sum.size;
        out.add(&t.rel, &name, sum);
        Ok(())
    }

    async fn backup_log(
        &self,
        t: &BackupTarget,
        cut: &LogCut,
        out: &mut ShardBackup,
    ) -> Result<()> {
        let (src, dst) = (log_dir(&self.dir), log_dir(&t.dir));
        let rel = format!("{}/log", t.rel);
        let active = std::iter::once((cut.active_seq, Some(cut.active_end)));
        let all = cut.closed.iter().map(|&s| (s, None)).chain(active);
        for (seq, limit) in all {
            let name = segment_name(seq);
            let sum = copy::copy_durably(&self.fs, &src.join(&name), &dst, &name, limit).await?;
            out.bytes_copied += sum.size;
            out.add(&rel, &name, sum);
        }
        if let Some(archive) = self.log.archive_dir()
            && let Some(_copying) = self.log.begin_partial_archive(cut.active_seq)
        {
            // The active segment's durable prefix, so point-in-time restore reaches
            // this backup's point (the whole segment replaces it once sealed).
            let name = segment_name(cut.active_seq);
            let limit = Some(cut.active_end);
            copy::copy_durably(&self.fs, &src.join(&name), &archive, &name, limit).await?;
        }
        self.fs.sync_dir(&t.dir).await
    }
}

impl ShardBackup {
    fn add(&mut self, rel: &str, name: &str, sum: Sum) {
        self.files.push(FileEntry {
            path: format!("{rel}/{name}"),
            size: sum.size,
            crc32c: sum.crc32c,
        });
    }
}

/// The name of a shard's directory (`shard-N`) inside a data directory or backup.
pub fn shard_dir_name(shard: u32) -> String {
    format!("shard-{shard}")
}

/// Files of a previous backup's shard directory, by name, from its manifest entries.
pub fn prev_files(entries: &[FileEntry], rel: &str) -> BTreeMap<String, Sum> {
    let prefix = format!("{rel}/");
    entries
        .iter()
        .filter_map(|f| {
            let name = f.path.strip_prefix(&prefix)?;
            (!name.contains('/')).then(|| {
                (
                    name.to_string(),
                    Sum {
                        size: f.size,
                        crc32c: f.crc32c,
                    },
                )
            })
        })
        .collect()
}
