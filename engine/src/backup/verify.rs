//! `nextdb admin verify`: every checksum of a data directory, a shard directory or a
//! backup (backup manifest and its per-file checksums, `CURRENT` and the manifest,
//! every SSTable block, every log record), each problem naming the file and offset.
//!
//! Ownership: offline, one thread (the CLI's executor); it never writes.

use super::copy;
use super::manifest::{BACKUP_MANIFEST, BackupManifest};
use crate::cache::BlockCache;
use crate::config::VERIFY_CACHE_BYTES;
use crate::fs::{FileSystem, ReadFile};
use crate::log::parse_segment_name;
use crate::log::segment::SegmentReader;
use crate::sst::{Table, TableIter};
use crate::version::manifest;
use crate::{Error, Result};
use std::path::Path;
use std::rc::Rc;

/// What a verification found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Files whose checksums were checked.
    pub files: u64,
    /// One line per problem, naming the file (and the offset where known).
    pub problems: Vec<String>,
}

impl VerifyReport {
    fn problem(&mut self, e: &Error) {
        self.problems.push(e.to_string());
    }
}

/// Verifies `dir`: a backup (it holds `BACKUP`), a node's data directory (`shard-N`
/// directories) or one shard's directory (it holds `CURRENT`).
pub async fn verify<F: FileSystem>(fs: &F, dir: &Path) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    if !fs.exists(dir).await? {
        return Err(Error::InvalidArgument(format!(
            "{} does not exist",
            dir.display()
        )));
    }
    if fs.exists(&dir.join(BACKUP_MANIFEST)).await? {
        verify_backup_manifest(fs, dir, &mut r).await?;
    }
    if fs.exists(&dir.join("CURRENT")).await? {
        verify_shard(fs, dir, &mut r).await?;
        return Ok(r);
    }
    let shards: Vec<String> = fs
        .list_dir(dir)
        .await?
        .into_iter()
        .filter(|n| {
            n.strip_prefix("shard-")
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .collect();
    if shards.is_empty() && r.files == 0 {
        return Err(Error::InvalidArgument(format!(
            "{} is neither a data directory nor a backup (no shard-N directory, CURRENT or BACKUP)",
            dir.display()
        )));
    }
    for s in shards {
        verify_shard(fs, &dir.join(s), &mut r).await?;
    }
    Ok(r)
}

/// Reads and decodes `dir/BACKUP` (a corruption error names it).
pub async fn read_backup_manifest<F: FileSystem>(fs: &F, dir: &Path) -> Result<BackupManifest> {
    let path = dir.join(BACKUP_MANIFEST);
    let f = fs.open_read(&path).await?;
    let size = f.size();
    if size > crate::config::MAX_BACKUP_MANIFEST_BYTES {
        f.close().await?;
        return Err(Error::corruption(
            &path,
            0,
            format!("backup manifest of {size} bytes"),
        ));
    }
    let text = f.read_exact_at(0, size as usize).await?;
    f.close().await?;
    BackupManifest::decode(&path, &text)
}

/// Checks the backup manifest's own checksum, then each file's length and checksum.
async fn verify_backup_manifest<F: FileSystem>(
    fs: &F,
    dir: &Path,
    r: &mut VerifyReport,
) -> Result<()> {
    r.files += 1;
    let m = match read_backup_manifest(fs, dir).await {
        Ok(m) => m,
        Err(e @ Error::Corruption { .. }) => {
            r.problem(&e);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for f in &m.files {
        let path = dir.join(&f.path);
        r.files += 1;
        if !fs.exists(&path).await? {
            r.problems.push(format!(
                "{}: missing (listed in the backup manifest)",
                path.display()
            ));
            continue;
        }
        let have = copy::sum_file(fs, &path).await?;
        if have.size != f.size || have.crc32c != f.crc32c {
            r.problems.push(format!(
                "{}: {} bytes with crc32c {:08x}, the backup manifest says {} bytes with crc32c {:08x}",
                path.display(),
                have.size,
                have.crc32c,
                f.size,
                f.crc32c
            ));
        }
    }
    Ok(())
}

/// Checks one shard directory: `CURRENT` and the manifest, every SSTable (footer,
/// meta blocks, every data block) and every log segment (every flush and record).
async fn verify_shard<F: FileSystem>(fs: &F, dir: &Path, r: &mut VerifyReport) -> Result<()> {
    match manifest::recover(fs, dir).await {
        Ok(Some(state)) => {
            for (_, meta) in state.files() {
                let p = crate::db::table_path(dir, meta.number);
                if !fs.exists(&p).await? {
                    r.problems
                        .push(format!("{}: missing (named by the manifest)", p.display()));
                }
            }
        }
        Ok(None) => {}
        Err(e @ Error::Corruption { .. }) => r.problem(&e),
        Err(e) => return Err(e),
    }
    r.files += 2;
    let cache = Rc::new(BlockCache::new(VERIFY_CACHE_BYTES));
    for name in fs.list_dir(dir).await? {
        let Some(number) = name
            .strip_suffix(".sst")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        r.files += 1;
        if let Err(e) = verify_table(fs, &dir.join(&name), number, &cache).await {
            r.problem(&e);
        }
    }
    let log = dir.join("log");
    if fs.exists(&log).await? {
        let mut seqs: Vec<u64> = fs
            .list_dir(&log)
            .await?
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .collect();
        seqs.sort_unstable();
        for (i, seq) in seqs.iter().enumerate() {
            r.files += 1;
            let path = log.join(crate::log::segment_name(*seq));
            if let Err(e) = verify_segment(fs, &path, i + 1 == seqs.len()).await {
                r.problem(&e);
            }
        }
    }
    Ok(())
}

async fn verify_table<F: FileSystem>(
    fs: &F,
    path: &Path,
    number: u64,
    cache: &Rc<BlockCache<crate::sst::Block>>,
) -> Result<()> {
    let reader = fs.open_read(path).await?;
    let table = Rc::new(Table::open(reader, number, cache.clone()).await?);
    let mut it = TableIter::new(table);
    it.seek_to_first().await;
    while it.valid() {
        it.next().await;
    }
    it.status()
}

/// Reads every record of a segment; `last`: a torn tail is not an error.
pub async fn verify_segment<F: FileSystem>(fs: &F, path: &Path, last: bool) -> Result<u64> {
    let mut reader = SegmentReader::open(fs, path, last).await?;
    let mut n = 0;
    while reader.next().await?.is_some() {
        n += 1;
    }
    reader.close().await?;
    Ok(n)
}
