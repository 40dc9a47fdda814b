//! The write-ahead log of one shard: a directory of segments shared by every log group
//! on the core (the engine's own group 0 and every Raft group's entries and state),
//! with group commit and per-group truncation.
//!
//! Ownership: one `Log` per core, used by many tasks of that core's executor. Appends
//! are synchronous (they only buffer); `sync` is the group commit: the first task that
//! needs durability becomes the leader, writes everything appended so far in one write
//! and one `fdatasync`, then wakes every task whose record it covered. A failed write
//! or fsync poisons the log: nothing later is acknowledged (a failed fsync must not be
//! retried: the kernel may have dropped the dirty pages).

pub mod record;
pub mod segment;

pub use record::LogRecord;
use segment::{OwnedRecord, SegmentReader, SegmentWriter};

use crate::config::EngineConfig;
use crate::fs::{FileSystem, RwFile};
use crate::sync::Notify;
use crate::{Error, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Position of a record in the log: records are numbered 1, 2, 3, … in append order.
pub type Lsn = u64;

/// Counters of the log.
#[derive(Debug, Clone, Default)]
pub struct LogStats {
    pub bytes_written: u64,
    pub syncs: u64,
    pub records: u64,
    pub segments: usize,
}

#[derive(Debug, Default, Clone)]
struct SegmentMeta {
    /// group → (min index, max index) of the records in the segment.
    groups: HashMap<u64, (u64, u64)>,
}

impl SegmentMeta {
    fn note(&mut self, group: u64, index: u64) {
        let e = self.groups.entry(group).or_insert((index, index));
        e.0 = e.0.min(index);
        e.1 = e.1.max(index);
    }

    fn merge(&mut self, other: &SegmentMeta) {
        for (&g, &(lo, hi)) in &other.groups {
            self.note(g, lo);
            self.note(g, hi);
        }
    }
}

struct Inner<F: FileSystem> {
    /// The active segment's writer; `None` while the leader has it out for I/O.
    writer: Option<SegmentWriter<F>>,
    active_seq: u64,
    /// Encoded records appended since the last flush, and what they hold.
    pending: Vec<u8>,
    pending_meta: SegmentMeta,
    last_lsn: Lsn,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    flushing: bool,
    poisoned: Option<String>,
    /// Metadata of every segment on disk, the active one included.
    segments: BTreeMap<u64, SegmentMeta>,
    /// group → highest index no longer needed.
    truncated: HashMap<u64, u64>,
    /// group → (last index appended or replayed, appended by this run): the writer's
    /// half of the density check recovery makes.
    appended: HashMap<u64, (u64, bool)>,
    stats: LogStats,
}

/// The shard's write-ahead log.
pub struct Log<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    segment_bytes: u64,
    buffer_bytes: usize,
    inner: RefCell<Inner<F>>,
    /// Wakes tasks waiting for a flush to finish.
    flushed: Notify,
}

/// Releases the leader role of a flush whose future was dropped before it finished.
struct LeaderGuard<'a, F: FileSystem> {
    log: &'a Log<F>,
    armed: bool,
}

impl<F: FileSystem> Drop for LeaderGuard<'_, F> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut i = self.log.inner.borrow_mut();
        i.flushing = false;
        if i.writer.is_none() {
            i.poisoned
                .get_or_insert_with(|| "a log flush was cancelled mid-write".to_string());
        }
        drop(i);
        self.log.flushed.notify_all();
    }
}

/// File name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("log-{seq:016}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Recovery's check that each group's indexes are dense: after a group's first
/// record, each next one is the previous index + 1. The one exception is a group's
/// first record in a segment a recovery started ([`segment::FLAG_RUN_START`]): the
/// previous run's unsynced tail was cut, and the engine may continue above indexes it
/// handed out but never made durable; the index must still increase.
#[derive(Default)]
struct DenseIndexes {
    /// group → last index seen.
    last: HashMap<u64, u64>,
    records: u64,
}

impl DenseIndexes {
    fn check(&mut self, rec: &OwnedRecord, path: &Path, first_in_run_start: bool) -> Result<()> {
        if let Some(&prev) = self.last.get(&rec.group) {
            let ok = rec.index == prev + 1 || (first_in_run_start && rec.index > prev);
            if !ok {
                return Err(Error::corruption(
                    path,
                    rec.offset,
                    format!(
                        "log group {} index {} follows index {prev}: records are missing",
                        rec.group, rec.index
                    ),
                ));
            }
        }
        self.last.insert(rec.group, rec.index);
        self.records += 1;
        Ok(())
    }
}

/// Replays one segment through `replay`, checking index density; cuts a torn tail off
/// the last segment so a later recovery never mistakes it for corruption in the
/// middle of the log.
async fn replay_segment<F: FileSystem>(
    fs: &F,
    path: &Path,
    last: bool,
    dense: &mut DenseIndexes,
    replay: &mut impl FnMut(LogRecord<'_>) -> Result<()>,
) -> Result<SegmentMeta> {
    let mut r = SegmentReader::open(fs, path, last).await?;
    let run_start = r.is_run_start();
    let mut meta = SegmentMeta::default();
    while let Some(rec) = r.next().await? {
        let first_here = !meta.groups.contains_key(&rec.group);
        dense.check(&rec, path, run_start && first_here)?;
        meta.note(rec.group, rec.index);
        replay(LogRecord {
            group: rec.group,
            index: rec.index,
            term: rec.term,
            payload: &rec.payload,
        })
        .map_err(|e| match e {
            // The callback judges the payload, not where it lies: name the record's
            // segment and offset so an operator can find it.
            Error::Corruption { reason, .. } => Error::corruption(path, rec.offset, reason),
            other => other,
        })?;
    }
    let end = r.end_offset().unwrap_or(0);
    r.close().await?;
    if last {
        let f = fs.open_rw(path).await?;
        if f.size().await? > end {
            f.truncate(end).await?;
            f.sync().await?;
        }
        f.close().await?;
    }
    Ok(meta)
}

impl<F: FileSystem> Log<F> {
    /// Opens the log in `dir`: replays every record in order through `replay`, cuts a
    /// torn tail off the last segment, and starts a new segment for appends. A
    /// `Corruption` that `replay` returns is reported at the record's segment and
    /// offset, whatever place it named. A hole (a
    /// damaged flush followed by valid data it cannot be an unsynced tail of) or a gap
    /// in a group's indexes is `Error::Corruption` naming the file and offset.
    pub async fn open(
        fs: F,
        dir: &Path,
        cfg: &EngineConfig,
        mut replay: impl FnMut(LogRecord<'_>) -> Result<()>,
    ) -> Result<Self> {
        crate::fs::create_dir_all_durable(&fs, dir).await?;
        let mut seqs: Vec<u64> = fs
            .list_dir(dir)
            .await?
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .collect();
        seqs.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut dense = DenseIndexes::default();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_name(seq));
            let last = i + 1 == seqs.len();
            let meta = replay_segment(&fs, &path, last, &mut dense, &mut replay).await?;
            segments.insert(seq, meta);
        }
        let records = dense.records;
        let active_seq = seqs.last().copied().unwrap_or(0) + 1;
        let writer = SegmentWriter::create(
            &fs,
            &dir.join(segment_name(active_seq)),
            active_seq,
            segment::FLAG_RUN_START,
        )
        .await?;
        fs.sync_dir(dir).await?;
        segments.insert(active_seq, SegmentMeta::default());
        let stats = LogStats {
            records,
            segments: segments.len(),
            ..LogStats::default()
        };
        Ok(Log {
            fs,
            dir: dir.to_path_buf(),
            segment_bytes: cfg.log_segment_bytes,
            buffer_bytes: cfg.log_buffer_bytes,
            inner: RefCell::new(Inner {
                writer: Some(writer),
                active_seq,
                pending: Vec::new(),
                pending_meta: SegmentMeta::default(),
                last_lsn: 0,
                written_lsn: 0,
                durable_lsn: 0,
                flushing: false,
                poisoned: None,
                segments,
                truncated: HashMap::new(),
                appended: dense
                    .last
                    .into_iter()
                    .map(|(g, i)| (g, (i, false)))
                    .collect(),
                stats,
            }),
            flushed: Notify::new(),
        })
    }

    /// Buffers a record; returns its LSN. Durable only after `sync(lsn)`.
    pub fn append(&self, group: u64, index: u64, term: u64, payload: &[u8]) -> Result<Lsn> {
        if payload.len() > crate::config::MAX_LOG_RECORD_BYTES {
            return Err(Error::InvalidArgument(format!(
                "log record of {} bytes above the limit",
                payload.len()
            )));
        }
        let mut i = self.inner.borrow_mut();
        if let Some(p) = &i.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        match i.appended.get(&group) {
            Some(&(prev, this_run)) if index <= prev || (this_run && index != prev + 1) => {
                return Err(Error::InvalidArgument(format!(
                    "log group {group}: index {index} after {prev} (indexes of a group are dense)"
                )));
            }
            _ => {}
        }
        i.appended.insert(group, (index, true));
        record::encode(&mut i.pending, group, index, term, payload);
        i.pending_meta.note(group, index);
        i.last_lsn += 1;
        i.stats.records += 1;
        Ok(i.last_lsn)
    }

    /// LSN of the last appended record.
    pub fn last_lsn(&self) -> Lsn {
        self.inner.borrow().last_lsn
    }

    /// Every record up to this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.borrow().durable_lsn
    }

    /// True once buffered bytes exceed the buffer limit (the caller should `flush`).
    pub fn needs_flush(&self) -> bool {
        self.inner.borrow().pending.len() >= self.buffer_bytes
    }

    /// Returns once every record up to `lsn` is durable (group commit).
    pub async fn sync(&self, lsn: Lsn) -> Result<()> {
        self.write_out(lsn, true).await
    }

    /// Writes buffered records without fsync (bounds memory for unsynced writers).
    pub async fn flush(&self) -> Result<()> {
        let lsn = self.last_lsn();
        self.write_out(lsn, false).await
    }

    async fn write_out(&self, lsn: Lsn, durable: bool) -> Result<()> {
        loop {
            let wait = {
                let i = self.inner.borrow();
                if let Some(p) = &i.poisoned {
                    return Err(Error::Poisoned(p.clone()));
                }
                let done = if durable {
                    i.durable_lsn
                } else {
                    i.written_lsn
                };
                if done >= lsn {
                    return Ok(());
                }
                i.flushing.then(|| self.flushed.wait())
            };
            match wait {
                Some(w) => w.await,
                None => self.lead(durable).await?,
            }
        }
    }

    /// The leader: takes everything appended so far, writes it (and fsyncs it when
    /// `durable`), rotates the segment if it is full, and wakes the waiters.
    async fn lead(&self, durable: bool) -> Result<()> {
        self.inner.borrow_mut().flushing = true;
        // If this future is dropped mid-flush (a caller cancelled), the guard releases
        // leadership; if the buffer was already taken, the log is poisoned, since its
        // records may never reach the disk.
        let mut guard = LeaderGuard {
            log: self,
            armed: true,
        };
        // Let every other task that is ready in this executor tick append first: one
        // write and one fdatasync then cover all of them.
        futures_lite::future::yield_now().await;
        let (mut writer, bytes, meta, upto, seq) = {
            let mut i = self.inner.borrow_mut();
            i.flushing = true;
            let Some(w) = i.writer.take() else {
                i.flushing = false;
                return Err(Error::Poisoned("log writer missing".into()));
            };
            let bytes = std::mem::take(&mut i.pending);
            let meta = std::mem::take(&mut i.pending_meta);
            (w, bytes, meta, i.last_lsn, i.active_seq)
        };
        writer.append_encoded(&bytes);
        let res = async {
            let mut n = writer.flush().await?;
            if durable || writer.position() >= self.segment_bytes {
                n += writer.sync().await?;
            }
            Ok::<u64, Error>(n)
        }
        .await;
        let res = match res {
            Ok(n) => {
                // Rotate once the segment is full; the old one is synced above.
                if writer.position() >= self.segment_bytes {
                    match self.rotate(seq + 1).await {
                        Ok(new_writer) => {
                            let old = std::mem::replace(&mut writer, new_writer);
                            let _ = old.close().await;
                            Ok((n, Some(seq + 1)))
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    Ok((n, None))
                }
            }
            Err(e) => Err(e),
        };
        guard.armed = false;
        let out = {
            let mut i = self.inner.borrow_mut();
            i.flushing = false;
            i.writer = Some(writer);
            match res {
                Ok((n, rotated)) => {
                    if let Some(m) = i.segments.get_mut(&seq) {
                        m.merge(&meta);
                    }
                    if let Some(new_seq) = rotated {
                        i.active_seq = new_seq;
                        i.segments.insert(new_seq, SegmentMeta::default());
                        i.durable_lsn = upto;
                    }
                    i.written_lsn = upto;
                    if durable {
                        i.durable_lsn = upto;
                        i.stats.syncs += 1;
                    }
                    i.stats.bytes_written += n;
                    i.stats.segments = i.segments.len();
                    Ok(())
                }
                Err(e) => {
                    i.poisoned = Some(e.to_string());
                    Err(e)
                }
            }
        };
        self.flushed.notify_all();
        out
    }

    async fn rotate(&self, seq: u64) -> Result<SegmentWriter<F>> {
        let w = SegmentWriter::create(&self.fs, &self.dir.join(segment_name(seq)), seq, 0).await?;
        self.fs.sync_dir(&self.dir).await?;
        Ok(w)
    }

    /// Records that `group` no longer needs records with index <= `upto`.
    pub fn truncate_group(&self, group: u64, upto: u64) {
        let mut i = self.inner.borrow_mut();
        let t = i.truncated.entry(group).or_insert(0);
        *t = (*t).max(upto);
    }

    /// Removes closed segments whose every record is truncated; returns how many.
    pub async fn gc(&self) -> Result<usize> {
        let dead: Vec<u64> = {
            let i = self.inner.borrow();
            i.segments
                .iter()
                .filter(|(seq, meta)| {
                    **seq != i.active_seq
                        && meta
                            .groups
                            .iter()
                            .all(|(g, (_, hi))| i.truncated.get(g).is_some_and(|t| t >= hi))
                })
                .map(|(s, _)| *s)
                .collect()
        };
        if dead.is_empty() {
            return Ok(0);
        }
        for seq in &dead {
            self.fs.remove(&self.dir.join(segment_name(*seq))).await?;
        }
        self.fs.sync_dir(&self.dir).await?;
        let mut i = self.inner.borrow_mut();
        for seq in &dead {
            i.segments.remove(seq);
        }
        i.stats.segments = i.segments.len();
        Ok(dead.len())
    }

    pub fn stats(&self) -> LogStats {
        self.inner.borrow().stats.clone()
    }

    /// One line describing the group-commit state (for diagnosing stalls).
    pub fn debug_state(&self) -> String {
        let i = self.inner.borrow();
        format!(
            "log: last_lsn {} written_lsn {} durable_lsn {} flushing {} pending {} bytes, writer {}, poisoned {:?}",
            i.last_lsn,
            i.written_lsn,
            i.durable_lsn,
            i.flushing,
            i.pending.len(),
            if i.writer.is_some() {
                "present"
            } else {
                "taken"
            },
            i.poisoned
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests;
