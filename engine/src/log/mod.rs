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

mod inflight;
pub mod record;
pub mod segment;

use inflight::InFlight;
pub use record::LogRecord;
use segment::{OwnedRecord, Prepared, SegmentReader, SegmentWriter};

use crate::config::{EngineConfig, MAX_LOG_BATCHES_IN_FLIGHT};
use crate::fs::{FileSystem, RwFile};
use crate::sync::Notify;
use crate::{Error, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// Position of a record in the log: records are numbered 1, 2, 3, … in append order.
pub type Lsn = u64;

/// Counters of the log.
#[derive(Debug, Clone, Default)]
pub struct LogStats {
    pub bytes_written: u64,
    /// Group commits (fdatasyncs of the active segment).
    pub syncs: u64,
    /// Microseconds spent in those group commits' write and fdatasync, summed.
    pub sync_micros: u64,
    pub records: u64,
    pub segments: usize,
    /// Spare segments zero-filled by the background.
    pub spares_written: u64,
    /// Group commits started while another was still in flight.
    pub overlapped_batches: u64,
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
    /// The active segment's writer; `None` while a rotation has it out.
    writer: Option<SegmentWriter<F>>,
    active_seq: u64,
    /// Encoded records appended since the last flush, and what they hold.
    pending: Vec<u8>,
    pending_meta: SegmentMeta,
    last_lsn: Lsn,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    /// A leader is starting a batch, or rotating: nobody else may start one.
    flushing: bool,
    inflight: InFlight,
    poisoned: Option<String>,
    spare: Spare,
    /// Metadata of every segment on disk, the active one included.
    segments: BTreeMap<u64, SegmentMeta>,
    /// group → highest index no longer needed.
    truncated: HashMap<u64, u64>,
    /// group → (last index appended or replayed, appended by this run): the writer's
    /// half of the density check recovery makes.
    appended: HashMap<u64, (u64, bool)>,
    /// Backups copying segments: `gc` deletes nothing while this is above 0.
    gc_pins: u32,
    /// Where sealed segments are copied (`--archive-dir`), and the closed segments
    /// not copied there yet (`gc` keeps them).
    archive: Option<PathBuf>,
    unarchived: std::collections::BTreeSet<u64>,
    /// A backup is copying this (active) segment's prefix into the archive: the
    /// archiver leaves the segment alone until it is done, so the whole segment's
    /// copy lands after the prefix's, never before.
    partial_archive: Option<u64>,
    stats: LogStats,
}

/// A consistent cut of the log for a backup: every record acknowledged durable before
/// it was taken lies in `closed` or in the first `active_end` bytes of `active_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCut {
    /// Closed segments still holding needed records, in order (complete files).
    pub closed: Vec<u64>,
    pub active_seq: u64,
    /// A flush boundary of the active segment below which every byte is fsynced.
    pub active_end: u64,
}

/// Keeps `Log::gc` from deleting segments while a backup copies them; released on drop.
pub struct GcPin<'a, F: FileSystem> {
    log: &'a Log<F>,
}

/// A backup copying the active segment's prefix into the archive; see
/// `Log::begin_partial_archive`.
pub struct PartialArchive<'a, F: FileSystem> {
    log: &'a Log<F>,
}

impl<F: FileSystem> Drop for PartialArchive<'_, F> {
    fn drop(&mut self) {
        self.log.inner.borrow_mut().partial_archive = None;
        self.log.sealed.notify_all();
    }
}

impl<F: FileSystem> Drop for GcPin<'_, F> {
    fn drop(&mut self) {
        let mut i = self.log.inner.borrow_mut();
        assert!(i.gc_pins > 0, "gc pin released twice");
        i.gc_pins -= 1;
    }
}

/// One group commit: records up to `upto`, encoded into segment `seq`.
struct Batch<F: FileSystem> {
    id: u64,
    upto: Lsn,
    seq: u64,
    /// fsynced before it finishes (asked for, or rotating).
    durable: bool,
    rotate: bool,
    spare_ready: bool,
    prepared: Prepared,
    /// Dropped before the batch is booked, so a rotation can close the file.
    file: Option<Rc<<F as FileSystem>::Rw>>,
    started: Instant,
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
    /// Wakes the archiver: a segment was sealed.
    sealed: Notify,
}

/// The file the next segment starts in, prepared off the commit path so a rotation
/// costs a rename and a header page, and every flush of the new segment overwrites
/// written blocks (an fdatasync then journals no size or extent change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spare {
    /// None: the background may write one.
    Wanted,
    /// The background is zero-filling it.
    Preparing,
    /// [`SPARE_NAME`] holds a synced file of at least `log_segment_bytes`.
    Ready,
    /// Writing one failed once: rotations create plain segments for the rest of the run.
    Unavailable,
}

/// File name of the spare segment; not a segment name, so recovery ignores it (and
/// `Log::open` removes it).
pub const SPARE_NAME: &str = "log-spare.tmp";

/// A spare holds `log_segment_bytes` and 1/16 more, so the flush that crosses the
/// segment size usually still lands on written blocks.
const SPARE_HEADROOM_DIVISOR: u64 = 16;

/// Cleans up after a leader whose future was dropped before it finished: releases
/// the leader role if it still held it, and poisons the log if its batch had started
/// (its records may never reach the disk).
struct LeaderGuard<'a, F: FileSystem> {
    log: &'a Log<F>,
    armed: bool,
    leading: bool,
    batch: bool,
}

impl<F: FileSystem> Drop for LeaderGuard<'_, F> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut i = self.log.inner.borrow_mut();
        if self.leading {
            i.flushing = false;
        }
        if self.batch {
            i.inflight.finish();
            i.poisoned
                .get_or_insert_with(|| "a log write was cancelled mid-flight".to_string());
        }
        drop(i);
        self.log.flushed.notify_all();
    }
}

/// File name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("log-{seq:016}.log")
}

/// Sequence number of a segment file name (`None` for other names).
pub fn parse_segment_name(name: &str) -> Option<u64> {
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

impl<F: FileSystem> Inner<F> {
    /// Closed segments every one of whose records is truncated.
    fn dead_segments(&self) -> impl Iterator<Item = u64> + '_ {
        self.segments
            .iter()
            .filter(|(seq, meta)| {
                **seq != self.active_seq
                    && meta
                        .groups
                        .iter()
                        .all(|(g, (_, hi))| self.truncated.get(g).is_some_and(|t| t >= hi))
            })
            .map(|(s, _)| *s)
    }
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
        let names = fs.list_dir(dir).await?;
        if names.iter().any(|n| n == SPARE_NAME) {
            // A spare from the last run, maybe half written: start over.
            fs.remove(&dir.join(SPARE_NAME)).await?;
        }
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
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
                inflight: InFlight::default(),
                poisoned: None,
                spare: Spare::Wanted,
                segments,
                truncated: HashMap::new(),
                appended: dense
                    .last
                    .into_iter()
                    .map(|(g, i)| (g, (i, false)))
                    .collect(),
                gc_pins: 0,
                archive: None,
                unarchived: Default::default(),
                partial_archive: None,
                stats,
            }),
            flushed: Notify::new(),
            sealed: Notify::new(),
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
                let busy = i.flushing
                    || i.inflight.covers(lsn, durable)
                    || i.inflight.active() >= MAX_LOG_BATCHES_IN_FLIGHT;
                busy.then(|| self.flushed.wait())
            };
            match wait {
                Some(w) => w.await,
                None => self.lead(durable).await?,
            }
        }
    }

    /// The leader: starts a batch of everything appended so far, lets the next leader
    /// start the one after it at once (unless this one rotates the segment), writes
    /// and (when `durable`) fsyncs it, and wakes the waiters.
    async fn lead(&self, durable: bool) -> Result<()> {
        self.inner.borrow_mut().flushing = true;
        let mut guard = LeaderGuard {
            log: self,
            armed: true,
            leading: true,
            batch: false,
        };
        // Let every other task that is ready in this executor tick append first: one
        // write and one fdatasync then cover all of them.
        futures_lite::future::yield_now().await;
        let mut b = self.start_batch(durable)?;
        guard.batch = true;
        if !b.rotate {
            guard.leading = false;
            self.inner.borrow_mut().flushing = false;
            self.flushed.notify_all();
        }
        let mut res = self.run_batch(&b).await;
        if res.is_ok() && b.rotate {
            b.file = None;
            res = self.rotate_after(&b).await;
        }
        guard.armed = false;
        self.finish_batch(b, res)
    }

    /// Takes the appended records into a new batch: encodes them at the next offsets
    /// of the active segment and decides whether the segment rotates after it (full,
    /// or a spare is ready and the active segment was not preallocated: the first
    /// segment of a run).
    fn start_batch(&self, durable: bool) -> Result<Batch<F>> {
        let mut guard = self.inner.borrow_mut();
        let i = &mut *guard;
        let spare_ready = i.spare == Spare::Ready;
        let Some(w) = i.writer.as_mut() else {
            return Err(Error::Poisoned("log writer missing".into()));
        };
        w.append_encoded(&std::mem::take(&mut i.pending));
        let rotate = w.position() >= self.segment_bytes || (spare_ready && !w.preallocated());
        let prepared = w.prepare();
        let file = Some(w.file());
        let meta = std::mem::take(&mut i.pending_meta);
        if let Some(m) = i.segments.get_mut(&i.active_seq) {
            m.merge(&meta);
        }
        let upto = i.last_lsn;
        let durable = durable || rotate;
        i.stats.overlapped_batches += u64::from(i.inflight.active() > 0);
        Ok(Batch {
            id: i.inflight.start(upto, durable),
            upto,
            seq: i.active_seq,
            durable,
            rotate,
            spare_ready,
            prepared,
            file,
            started: Instant::now(),
        })
    }

    /// Writes the batch; if durable, waits until every earlier batch's write has
    /// completed (an fsync covers only writes completed before it) and fsyncs.
    async fn run_batch(&self, b: &Batch<F>) -> Result<()> {
        let file = b
            .file
            .clone()
            .ok_or_else(|| Error::Poisoned("log batch without a file".into()))?;
        b.prepared.write_to(&*file).await?;
        {
            let mut i = self.inner.borrow_mut();
            if let Some(lsn) = i.inflight.written(b.id) {
                i.written_lsn = i.written_lsn.max(lsn);
            }
        }
        self.flushed.notify_all();
        if !b.durable {
            return Ok(());
        }
        self.wait_until(|i| i.inflight.earlier_written(b.id))
            .await?;
        file.sync().await
    }

    /// Waits until `ready` holds (re-checked at every batch event) or the log is
    /// poisoned.
    async fn wait_until(&self, ready: impl Fn(&Inner<F>) -> bool) -> Result<()> {
        loop {
            let w = {
                let i = self.inner.borrow();
                if let Some(p) = &i.poisoned {
                    return Err(Error::Poisoned(p.clone()));
                }
                if ready(&i) {
                    return Ok(());
                }
                self.flushed.wait()
            };
            w.await;
        }
    }

    /// The rotating leader, its batch synced: once every other batch has finished
    /// (none holds the file), seals the segment and starts the next one.
    async fn rotate_after(&self, b: &Batch<F>) -> Result<()> {
        self.wait_until(|i| i.inflight.active() == 1).await?;
        let writer = self.inner.borrow_mut().writer.take();
        let writer = writer.ok_or_else(|| Error::Poisoned("log writer missing".into()))?;
        // The old segment is cut to its data and synced before the next one is named:
        // a crash in between leaves it the last segment, complete.
        writer.seal().await?;
        let next = self.rotate(b.seq + 1, b.spare_ready).await?;
        let mut i = self.inner.borrow_mut();
        i.writer = Some(next);
        i.active_seq = b.seq + 1;
        i.segments.insert(b.seq + 1, SegmentMeta::default());
        if i.archive.is_some() {
            i.unarchived.insert(b.seq);
        }
        drop(i);
        self.sealed.notify_all();
        Ok(())
    }

    /// Books a finished batch (or poisons the log with its error) and wakes waiters.
    fn finish_batch(&self, mut b: Batch<F>, res: Result<()>) -> Result<()> {
        b.file = None;
        let mut i = self.inner.borrow_mut();
        i.inflight.finish();
        if b.rotate {
            i.flushing = false;
        }
        let out = match res {
            Ok(()) => {
                if b.durable {
                    i.durable_lsn = i.durable_lsn.max(b.upto);
                    i.stats.syncs += 1;
                    i.stats.sync_micros += b.started.elapsed().as_micros() as u64;
                    if !b.rotate
                        && let Some(w) = i.writer.as_mut()
                    {
                        w.note_synced(b.prepared.end);
                    }
                }
                i.stats.bytes_written += b.prepared.bytes;
                i.stats.segments = i.segments.len();
                Ok(())
            }
            Err(e) => {
                i.poisoned.get_or_insert_with(|| e.to_string());
                Err(e)
            }
        };
        drop(i);
        self.flushed.notify_all();
        out
    }

    /// Starts segment `seq`: in the spare when one is ready, else in a new file.
    async fn rotate(&self, seq: u64, spare_ready: bool) -> Result<SegmentWriter<F>> {
        let path = self.dir.join(segment_name(seq));
        let w = if spare_ready {
            self.inner.borrow_mut().spare = Spare::Wanted;
            self.fs.rename(&self.dir.join(SPARE_NAME), &path).await?;
            SegmentWriter::reuse(&self.fs, &path, seq, 0).await?
        } else {
            SegmentWriter::create(&self.fs, &path, seq, 0).await?
        };
        self.fs.sync_dir(&self.dir).await?;
        Ok(w)
    }

    /// True when no spare segment is ready or being written: the owner's background
    /// task should call [`Log::prepare_spare`].
    pub fn wants_spare(&self) -> bool {
        let i = self.inner.borrow();
        i.spare == Spare::Wanted && i.poisoned.is_none()
    }

    /// Zero-fills the spare segment the next rotation starts in (off the commit path;
    /// the owner's background task calls it when [`Log::wants_spare`]). Stops early,
    /// returning `Ok(false)`, once `stop` says so. After an error rotations create
    /// plain segments for the rest of the run: a spare is an optimisation.
    pub async fn prepare_spare(&self, stop: impl Fn() -> bool) -> Result<bool> {
        {
            let mut i = self.inner.borrow_mut();
            if i.spare != Spare::Wanted {
                return Ok(false);
            }
            i.spare = Spare::Preparing;
        }
        let seg = record::page_ceil(self.segment_bytes);
        let bytes = seg + record::page_ceil(seg / SPARE_HEADROOM_DIVISOR);
        let res = segment::write_spare(&self.fs, &self.dir.join(SPARE_NAME), bytes, stop).await;
        let mut i = self.inner.borrow_mut();
        i.spare = match &res {
            Ok(true) => Spare::Ready,
            Ok(false) => Spare::Wanted,
            Err(_) => Spare::Unavailable,
        };
        i.stats.spares_written += u64::from(matches!(res, Ok(true)));
        res
    }

    /// Records that `group` no longer needs records with index <= `upto`.
    pub fn truncate_group(&self, group: u64, upto: u64) {
        let mut i = self.inner.borrow_mut();
        let t = i.truncated.entry(group).or_insert(0);
        *t = (*t).max(upto);
    }

    /// Removes closed segments whose every record is truncated; returns how many.
    ///
    /// A dead segment is deleted, never recycled as the spare: power loss may drop
    /// any unsynced page of the active segment while keeping a later one, and a dropped
    /// page of a recycled file reads as its old bytes, which recovery could not tell
    /// from bit damage (it can tell zeros: rule 4 of `docs/formats.md`).
    pub async fn gc(&self) -> Result<usize> {
        let dead: Vec<u64> = {
            let i = self.inner.borrow();
            if i.gc_pins > 0 {
                return Ok(0);
            }
            i.dead_segments()
                .filter(|s| !i.unarchived.contains(s))
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

    /// Stops `gc` from deleting segments until the pin drops (a backup copying them).
    pub fn pin_gc(&self) -> GcPin<'_, F> {
        self.inner.borrow_mut().gc_pins += 1;
        GcPin { log: self }
    }

    /// The log's durable cut now: closed segments with needed records, and the
    /// active segment's fsynced prefix. Call after `sync` and with a [`GcPin`] held so
    /// the closed segments stay. `None` while a rotation holds the writer.
    pub fn cut(&self) -> Option<LogCut> {
        let i = self.inner.borrow();
        let w = i.writer.as_ref()?;
        let dead: std::collections::HashSet<u64> = i.dead_segments().collect();
        let closed = i
            .segments
            .keys()
            .copied()
            .filter(|s| *s != i.active_seq && !dead.contains(s))
            .collect();
        Some(LogCut {
            closed,
            active_seq: i.active_seq,
            active_end: w.synced_pos(),
        })
    }

    /// Archives every closed segment from now on into `dir` (point-in-time restore):
    /// the owner's background task copies each once it is sealed (`archive_next`), and
    /// `gc` keeps a segment until it is copied. Segments closed before this call
    /// (recovered ones) are queued too; copies already in `dir` are replaced.
    pub fn set_archive(&self, dir: &Path) {
        let mut i = self.inner.borrow_mut();
        i.archive = Some(dir.to_path_buf());
        let active = i.active_seq;
        let closed: Vec<u64> = i
            .segments
            .keys()
            .copied()
            .filter(|s| *s != active)
            .collect();
        i.unarchived.extend(closed);
    }

    /// The archive directory, if archiving.
    pub fn archive_dir(&self) -> Option<PathBuf> {
        self.inner.borrow().archive.clone()
    }

    /// True when a sealed segment waits to be archived (and no backup is copying its
    /// prefix there).
    pub fn wants_archive(&self) -> bool {
        let i = self.inner.borrow();
        let next = i.unarchived.first();
        next.is_some() && next != i.partial_archive.as_ref() && i.poisoned.is_none()
    }

    /// Starts copying the durable prefix of segment `seq` into the archive (a
    /// backup): `Some` if the log archives and `seq` is still the active segment (a
    /// sealed one is, or will be, archived whole). The archiver leaves the segment
    /// alone until the guard drops (also when the backup's future is dropped).
    pub fn begin_partial_archive(&self, seq: u64) -> Option<PartialArchive<'_, F>> {
        let mut i = self.inner.borrow_mut();
        let ok = i.archive.is_some() && i.active_seq == seq && i.partial_archive.is_none();
        if ok {
            i.partial_archive = Some(seq);
        }
        ok.then_some(PartialArchive { log: self })
    }

    /// The log's durable cut, waiting for a rotation under way to finish.
    pub async fn wait_cut(&self) -> Result<LogCut> {
        loop {
            let w = self.flushed.wait();
            if let Some(c) = self.cut() {
                return Ok(c);
            }
            if let Some(p) = &self.inner.borrow().poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            w.await;
        }
    }

    /// Resolves once a segment was sealed (the archiver's wake-up).
    pub fn sealed_wait(&self) -> crate::sync::Wait {
        self.sealed.wait()
    }

    /// Copies the oldest sealed, unarchived segment into the archive directory
    /// (through a temporary name, synced, renamed). Returns false if none waits.
    pub async fn archive_next(&self) -> Result<bool> {
        let (seq, dir) = {
            let i = self.inner.borrow();
            match (i.unarchived.first(), &i.archive) {
                (Some(&s), Some(d)) if i.partial_archive != Some(s) => (s, d.clone()),
                _ => return Ok(false),
            }
        };
        let name = segment_name(seq);
        crate::backup::copy::copy_durably(&self.fs, &self.dir.join(&name), &dir, &name, None)
            .await?;
        self.inner.borrow_mut().unarchived.remove(&seq);
        Ok(true)
    }

    /// One line describing the group-commit state (for diagnosing stalls).
    pub fn debug_state(&self) -> String {
        let i = self.inner.borrow();
        format!(
            "log: last_lsn {} written_lsn {} durable_lsn {} flushing {} batches in flight {} pending {} bytes, writer {}, poisoned {:?}",
            i.last_lsn,
            i.written_lsn,
            i.durable_lsn,
            i.flushing,
            i.inflight.active(),
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
