//! The manifest: a log of checksummed [`VersionEdit`]s that says which SSTables are
//! live, plus `CURRENT`, which names the manifest in force.
//!
//! A manifest file is a log segment (same record framing as the write-ahead log, see
//! `docs/formats.md`): its first record is a full snapshot of the state, each later
//! record a delta. A new manifest is written whole, fsynced, and then made current by
//! writing `CURRENT.tmp`, renaming it over `CURRENT` and fsyncing the directory, so a
//! crash leaves either the old or the new manifest in force, never a mix. Owned by the
//! shard's core; calls are serialized by the engine's manifest lock.

use super::edit::{FileMeta, VersionEdit};
use crate::config::MANIFEST_ROLL_BYTES;
use crate::fs::{FileSystem, ReadFile, atomic};
use crate::log::segment::{SegmentReader, SegmentWriter};
use crate::{Error, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const CURRENT: &str = "CURRENT";
const PREFIX: &str = "MANIFEST-";

fn manifest_name(seq: u64) -> String {
    format!("{PREFIX}{seq:06}")
}

/// The state a manifest describes, rebuilt by applying its edits in order.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Sequence number of the manifest this came from (0: none yet).
    pub manifest_seq: u64,
    pub next_file_number: u64,
    pub last_ts: u64,
    applied: HashMap<u64, u64>,
    /// file number → (level, metadata)
    files: BTreeMap<u64, (u32, FileMeta)>,
}

impl Recovered {
    /// Applies one edit. Errors if it deletes a file that is not live at that level.
    pub fn apply(&mut self, e: &VersionEdit) -> std::result::Result<(), String> {
        if let Some(n) = e.next_file_number {
            self.next_file_number = self.next_file_number.max(n);
        }
        if let Some(t) = e.last_ts {
            self.last_ts = self.last_ts.max(t);
        }
        for &(g, i) in &e.applied {
            let a = self.applied.entry(g).or_insert(0);
            *a = (*a).max(i);
        }
        for &(level, number) in &e.deleted {
            match self.files.get(&number) {
                Some((l, _)) if *l == level => {
                    self.files.remove(&number);
                }
                _ => return Err(format!("edit deletes file {number} not live at L{level}")),
            }
        }
        for (level, meta) in &e.added {
            self.files.insert(meta.number, (*level, meta.clone()));
            self.next_file_number = self.next_file_number.max(meta.number + 1);
        }
        Ok(())
    }

    /// Live files as (level, metadata).
    pub fn files(&self) -> Vec<(u32, FileMeta)> {
        self.files.values().cloned().collect()
    }

    /// Applied log index of `group` (0 if none recorded).
    pub fn applied(&self, group: u64) -> u64 {
        self.applied.get(&group).copied().unwrap_or(0)
    }

    /// The applied index of every group but `except`.
    pub fn applied_groups(&self, except: u64) -> std::collections::BTreeMap<u64, u64> {
        self.applied
            .iter()
            .filter(|(g, _)| **g != except)
            .map(|(&g, &i)| (g, i))
            .collect()
    }

    /// One edit that recreates this whole state.
    pub fn snapshot_edit(&self, next_file_number: u64, last_ts: u64) -> VersionEdit {
        let mut applied: Vec<(u64, u64)> = self.applied.iter().map(|(&g, &i)| (g, i)).collect();
        applied.sort_unstable();
        VersionEdit {
            next_file_number: Some(next_file_number.max(self.next_file_number)),
            last_ts: Some(last_ts.max(self.last_ts)),
            applied,
            deleted: Vec::new(),
            added: self.files.values().cloned().collect(),
        }
    }
}

/// Reads `CURRENT` and replays the manifest it names. `None` for a new, empty directory.
pub async fn recover<F: FileSystem>(fs: &F, dir: &Path) -> Result<Option<Recovered>> {
    let current = dir.join(CURRENT);
    if !fs.exists(&current).await? {
        // The first open writes MANIFEST-000001, fsyncs it, then makes CURRENT; a
        // power cut in between may leave the manifest's name durable without CURRENT
        // (file systems may commit a new name with the file's own fsync). No table
        // exists yet and no write was acknowledged: start empty. Any other manifest or
        // any table means CURRENT was lost from a used directory: corruption.
        let names = fs.list_dir(dir).await?;
        let first = manifest_name(1);
        if names
            .iter()
            .any(|n| (n.starts_with(PREFIX) && *n != first) || n.ends_with(".sst"))
        {
            return Err(Error::corruption(
                current,
                0,
                "CURRENT is missing but manifest or table files exist",
            ));
        }
        return Ok(None);
    }
    let f = fs.open_read(&current).await?;
    let size = f.size();
    if size == 0 || size > 256 {
        return Err(Error::corruption(
            &current,
            0,
            format!("bad CURRENT size {size}"),
        ));
    }
    let raw = f.read_exact_at(0, size as usize).await?;
    f.close().await?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| Error::corruption(&current, 0, "CURRENT is not UTF-8"))?;
    let name = text
        .strip_suffix('\n')
        .ok_or_else(|| Error::corruption(&current, 0, "CURRENT lacks its newline"))?;
    let seq = name
        .strip_prefix(PREFIX)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Error::corruption(&current, 0, format!("CURRENT names {name:?}")))?;
    let path = dir.join(name);
    let mut state = Recovered {
        manifest_seq: seq,
        ..Recovered::default()
    };
    let mut reader = SegmentReader::open(fs, &path, true).await?;
    let mut count = 0u64;
    while let Some(rec) = reader.next().await? {
        let edit = VersionEdit::decode(&rec.payload)
            .map_err(|e| Error::corruption(&path, rec.offset, format!("bad version edit: {e}")))?;
        state
            .apply(&edit)
            .map_err(|e| Error::corruption(&path, rec.offset, e))?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::corruption(
            &path,
            0,
            "manifest holds no snapshot record",
        ));
    }
    Ok(Some(state))
}

/// Removes manifest files other than `keep_seq` (left by a crash mid-switch or by
/// earlier runs). Returns true if it removed any.
pub async fn remove_stale<F: FileSystem>(fs: &F, dir: &Path, keep_seq: u64) -> Result<bool> {
    let keep = manifest_name(keep_seq);
    let mut removed = false;
    for n in fs.list_dir(dir).await? {
        if (n.starts_with(PREFIX) && n != keep) || n == format!("{CURRENT}{}", atomic::TMP_SUFFIX) {
            fs.remove(&dir.join(&n)).await?;
            removed = true;
        }
    }
    Ok(removed)
}

struct Inner<F: FileSystem> {
    writer: Option<SegmentWriter<F>>,
    seq: u64,
    state: Recovered,
}

/// The manifest in force, open for appending edits.
pub struct Manifest<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    inner: RefCell<Inner<F>>,
}

impl<F: FileSystem> Manifest<F> {
    /// Writes a new manifest whose first record is `snapshot` and makes it current.
    /// `prev` is the recovered state (its manifest sequence number is bumped).
    pub async fn create(fs: F, dir: &Path, prev_seq: u64, snapshot: &VersionEdit) -> Result<Self> {
        let mut state = Recovered::default();
        state.apply(snapshot).map_err(Error::InvalidArgument)?;
        let seq = prev_seq + 1;
        state.manifest_seq = seq;
        let writer = write_new(&fs, dir, seq, snapshot).await?;
        Ok(Manifest {
            fs,
            dir: dir.to_path_buf(),
            inner: RefCell::new(Inner {
                writer: Some(writer),
                seq,
                state,
            }),
        })
    }

    /// One edit recreating the state the manifest holds now (a backup's manifest).
    /// Consistent with the installed version only while the engine's manifest lock is
    /// held (an edit is applied here before its version is installed).
    pub fn snapshot(&self) -> VersionEdit {
        let inner = self.inner.borrow();
        let s = &inner.state;
        s.snapshot_edit(s.next_file_number, s.last_ts)
    }

    /// Sequence number of the manifest in force.
    pub fn number(&self) -> u64 {
        self.inner.borrow().seq
    }

    /// Appends `edit` durably; rolls over to a fresh manifest once this one is large.
    /// Callers serialize calls (the engine's manifest lock).
    pub async fn append(&self, edit: &VersionEdit) -> Result<()> {
        let (mut writer, roll) = {
            let mut inner = self.inner.borrow_mut();
            inner.state.apply(edit).map_err(|e| {
                Error::InvalidArgument(format!("refusing inconsistent version edit: {e}"))
            })?;
            let w = inner
                .writer
                .take()
                .ok_or_else(|| Error::Poisoned("an earlier manifest write failed".into()))?;
            let roll = w.position() >= MANIFEST_ROLL_BYTES;
            (w, roll)
        };
        if roll {
            let (seq, snap) = {
                let inner = self.inner.borrow();
                let s = &inner.state;
                (
                    inner.seq + 1,
                    s.snapshot_edit(s.next_file_number, s.last_ts),
                )
            };
            let new_writer = write_new(&self.fs, &self.dir, seq, &snap).await?;
            writer.close().await?;
            self.fs
                .remove(&self.dir.join(manifest_name(seq - 1)))
                .await?;
            self.fs.sync_dir(&self.dir).await?;
            let mut inner = self.inner.borrow_mut();
            inner.seq = seq;
            inner.state.manifest_seq = seq;
            inner.writer = Some(new_writer);
            return Ok(());
        }
        writer.append(0, 0, 0, &edit.encode())?;
        writer.sync().await?;
        // Only a successful write puts the writer back; after a failure the manifest
        // refuses further edits (the on-disk state is unknown until reopen).
        self.inner.borrow_mut().writer = Some(writer);
        Ok(())
    }
}

/// Writes manifest `seq` holding `snapshot`, fsyncs it and points `CURRENT` at it
/// (`fs::atomic::write_atomic`: a crash leaves the old or the new manifest current).
async fn write_new<F: FileSystem>(
    fs: &F,
    dir: &Path,
    seq: u64,
    snapshot: &VersionEdit,
) -> Result<SegmentWriter<F>> {
    let path = dir.join(manifest_name(seq));
    let mut w = SegmentWriter::create(fs, &path, seq, 0).await?;
    w.append(0, 0, 0, &snapshot.encode())?;
    w.sync().await?;
    // The new manifest is durable (synced above) before CURRENT can name it.
    let current = format!("{}\n", manifest_name(seq));
    atomic::write_atomic(fs, dir, CURRENT, current.as_bytes()).await?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::glommio_fs::run_local;
    use crate::fs::sim::SimFs;

    /// A first open that crashed after `MANIFEST-000001` reached the disk by name but
    /// before `CURRENT` did starts empty instead of refusing the directory.
    #[test]
    fn first_manifest_without_current_is_a_fresh_directory() {
        run_local(async {
            let fs = SimFs::new(1);
            let dir = Path::new("/shard");
            crate::fs::create_dir_all_durable(&fs, dir).await.unwrap();
            let m = Manifest::create(fs.clone(), dir, 0, &VersionEdit::default())
                .await
                .unwrap();
            assert_eq!(m.number(), 1);
            fs.remove(&dir.join(CURRENT)).await.unwrap();
            fs.sync_dir(dir).await.unwrap();
            assert!(recover(&fs, dir).await.unwrap().is_none());
            // A later manifest without CURRENT is a used directory: refused.
            Manifest::create(fs.clone(), dir, 1, &VersionEdit::default())
                .await
                .unwrap();
            fs.remove(&dir.join(CURRENT)).await.unwrap();
            assert!(matches!(
                recover(&fs, dir).await,
                Err(Error::Corruption { .. })
            ));
        })
        .unwrap();
    }
}
