//! One log segment file: a header page, then records in page-aligned flushes, each
//! opened by a flush header that states its length (see `record` and
//! `docs/formats.md`).
//!
//! Header page (offset 0, 4096 bytes, zero-padded):
//! `magic:u64 = "NXDBLOG1" | version:u32 = 3 | seq:u64 | salt:u64 | flags:u32 |
//! crc32c:u32` over the first 32 bytes. Records start at [`FIRST_RECORD_OFFSET`].
//!
//! Used by the write-ahead log and by the manifest (a file of version edits).

use super::record::{self, FlushHeader};
use crate::codec;
use crate::config::{IO_ALIGN, MAX_IO_BYTES, MAX_LOG_FLUSH_BYTES};
use crate::fs::{FileSystem, ReadFile, RwFile};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// "NXDBLOG1" read as a little-endian u64.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"NXDBLOG1");
/// Version 2 added the salt, the flags and flush headers; version 3 a commit time in
/// every flush header (point-in-time restore). Version 2 segments are still read (their
/// flushes have commit time 0). Version 1 segments (records padded with zeros, no flush
/// headers) are refused: their zero padding cannot be told from a lost page, which is
/// the defect version 2 fixes.
pub const SEGMENT_VERSION: u32 = 3;
/// The oldest segment format this release reads.
pub const OLDEST_READABLE_VERSION: u32 = 2;
/// Records start after the header page.
pub const FIRST_RECORD_OFFSET: u64 = IO_ALIGN;
/// Bytes of the segment header that carry data (the rest of the page is zero).
const SEGMENT_HEADER_BYTES: usize = 36;
/// The smallest unit a device writes atomically: a torn page keeps a prefix of these.
const SECTOR_BYTES: usize = 512;
/// Flag: the segment was started by a recovery (`Log::open`), not by rotation, so a
/// group's first index in it may skip indexes the previous run never made durable.
pub const FLAG_RUN_START: u32 = 1;

fn header_page(seq: u64, salt: u64, flags: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(IO_ALIGN as usize);
    codec::put_u64(&mut h, SEGMENT_MAGIC);
    codec::put_u32(&mut h, SEGMENT_VERSION);
    codec::put_u64(&mut h, seq);
    codec::put_u64(&mut h, salt);
    codec::put_u32(&mut h, flags);
    let crc = codec::crc32c(&h);
    codec::put_u32(&mut h, crc);
    assert_eq!(h.len(), SEGMENT_HEADER_BYTES);
    h.resize(IO_ALIGN as usize, 0);
    h
}

/// Flushes encoded for writing: whole pages at page-aligned offsets, each piece at
/// most `MAX_IO_BYTES`. Written by whoever holds the file (`Log` overlaps the writes
/// and fsyncs of several group commits this way).
pub struct Prepared {
    pub pieces: Vec<(u64, Vec<u8>)>,
    /// The file offset after the last piece.
    pub end: u64,
    /// Bytes of all pieces.
    pub bytes: u64,
}

impl Prepared {
    /// Writes every piece, in order.
    pub async fn write_to<R: RwFile>(&self, file: &R) -> Result<()> {
        for (at, data) in &self.pieces {
            file.write_at(*at, data).await?;
        }
        Ok(())
    }
}

/// Appends records to one segment. Owned by one task at a time (the log's leader);
/// the file is shared (`Rc`) with the writes and fsyncs of group commits in flight.
pub struct SegmentWriter<F: FileSystem> {
    file: Rc<F::Rw>,
    path: PathBuf,
    /// Page-aligned offset where the next flush starts.
    file_pos: u64,
    /// Every byte below this offset is fsynced (stated in each flush header).
    synced_pos: u64,
    /// Keys the flush headers' checksums: random per segment and never shown to
    /// clients, so a payload cannot hold a header that verifies.
    salt: u64,
    /// Encoded records not yet written.
    buf: Vec<u8>,
    /// The file's blocks were written before this segment began (a zero-filled
    /// spare): flushes overwrite them, so `fdatasync` has no file size or
    /// extent to journal, only the data to flush.
    preallocated: bool,
    /// Commit time of the last flush encoded: the next is never below it, so a
    /// wall clock stepping back cannot reorder flushes in time.
    last_commit_ms: u64,
}

/// Milliseconds since the Unix epoch by the wall clock (0 if it reads before 1970).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<F: FileSystem> SegmentWriter<F> {
    /// Creates the file, writes and syncs its header page. The caller syncs the
    /// directory before relying on the name. `flags` as [`FLAG_RUN_START`].
    pub async fn create(fs: &F, path: &Path, seq: u64, flags: u32) -> Result<Self> {
        let file = fs.create_rw(path).await?;
        Self::start(file, path, seq, flags, false).await
    }

    /// Starts segment `seq` in an existing file of zeros (a spare from
    /// [`write_spare`], renamed to `path` by the caller): only the header page is
    /// written, with a fresh salt.
    pub async fn reuse(fs: &F, path: &Path, seq: u64, flags: u32) -> Result<Self> {
        let file = fs.open_rw(path).await?;
        Self::start(file, path, seq, flags, true).await
    }

    async fn start(file: F::Rw, path: &Path, seq: u64, flags: u32, pre: bool) -> Result<Self> {
        let salt = rand::random::<u64>();
        file.write_at(0, &header_page(seq, salt, flags)).await?;
        file.sync().await?;
        Ok(SegmentWriter {
            file: Rc::new(file),
            path: path.to_path_buf(),
            file_pos: FIRST_RECORD_OFFSET,
            synced_pos: FIRST_RECORD_OFFSET,
            salt,
            buf: Vec::new(),
            preallocated: pre,
            last_commit_ms: 0,
        })
    }

    /// True if flushes overwrite blocks written before the segment began.
    pub fn preallocated(&self) -> bool {
        self.preallocated
    }

    /// Ends a full segment before a later one starts: cuts the file at the end of its
    /// last flush (a spare's unused zeros would read as damage in a segment that is
    /// not the last) and syncs. Returns the file's size.
    pub async fn seal(self) -> Result<u64> {
        debug_assert!(
            self.buf.is_empty(),
            "sealing a segment with unwritten records"
        );
        if self.file.size().await? > self.file_pos {
            self.file.truncate(self.file_pos).await?;
        }
        self.file.sync().await?;
        let pos = self.file_pos;
        self.close().await?;
        Ok(pos)
    }

    /// The file, for writes and fsyncs of prepared flushes.
    pub fn file(&self) -> Rc<F::Rw> {
        self.file.clone()
    }

    /// Every byte below this offset is fsynced (a flush boundary).
    pub fn synced_pos(&self) -> u64 {
        self.synced_pos
    }

    /// Records that every byte below `pos` is fsynced (stated in later flush headers).
    pub fn note_synced(&mut self, pos: u64) {
        self.synced_pos = self.synced_pos.max(pos);
    }

    /// Buffers one record.
    pub fn append(&mut self, group: u64, index: u64, term: u64, payload: &[u8]) -> Result<()> {
        if payload.len() > crate::config::MAX_LOG_RECORD_BYTES {
            return Err(Error::InvalidArgument(format!(
                "log record of {} bytes above the limit",
                payload.len()
            )));
        }
        record::encode(&mut self.buf, group, index, term, payload);
        Ok(())
    }

    /// Buffers already encoded records (the log encodes while a flush is in flight).
    pub fn append_encoded(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Logical size: flushed pages plus buffered bytes (with one flush header).
    pub fn position(&self) -> u64 {
        let pending = if self.buf.is_empty() {
            0
        } else {
            record::FLUSH_HEADER_BYTES + self.buf.len()
        };
        self.file_pos + pending as u64
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the buffered records as one or more flushes (each a header, records and
    /// zero padding to a page) at the next page boundary; no fsync. Returns bytes
    /// written.
    pub async fn flush(&mut self) -> Result<u64> {
        let p = self.prepare();
        p.write_to(&*self.file).await?;
        Ok(p.bytes)
    }

    /// Encodes the buffered records as flushes at the next page boundaries and
    /// advances the write position past them; the caller writes them. A flush header
    /// states the durable point known now, which is never more than the truth.
    pub fn prepare(&mut self) -> Prepared {
        let start = self.file_pos;
        let mut pieces = Vec::new();
        let mut from = 0usize;
        while from < self.buf.len() {
            let (to, count) = self.cut_flush(from);
            self.encode_flush(from, to, count, &mut pieces);
            from = to;
        }
        self.buf.clear();
        Prepared {
            pieces,
            end: self.file_pos,
            bytes: self.file_pos - start,
        }
    }

    /// The records from `buf[from]` that go into one flush: as many whole records as
    /// fit in `MAX_LOG_FLUSH_BYTES`, at least one. Returns (end, record count).
    fn cut_flush(&self, from: usize) -> (usize, u32) {
        let mut to = from;
        let mut count = 0u32;
        while to < self.buf.len() {
            let len = record::record_len_at(&self.buf[to..]);
            // The buffer holds only records this process encoded.
            assert!(
                len.is_some_and(|l| to + l <= self.buf.len()),
                "log buffer holds a partial record"
            );
            let len = len.unwrap_or(0);
            if count > 0 && to + len - from > MAX_LOG_FLUSH_BYTES {
                break;
            }
            to += len;
            count += 1;
        }
        (to, count)
    }

    /// Encodes one flush holding `buf[from..to]` (`count` records) at `file_pos` into
    /// pieces of at most `MAX_IO_BYTES`, and moves `file_pos` past it.
    fn encode_flush(&mut self, from: usize, to: usize, count: u32, out: &mut Vec<(u64, Vec<u8>)>) {
        self.last_commit_ms = self.last_commit_ms.max(wall_clock_ms());
        let h = FlushHeader {
            offset: self.file_pos,
            records_len: (to - from) as u64,
            durable_through: self.synced_pos,
            record_count: count,
            commit_ms: self.last_commit_ms,
        };
        let body_len = record::FLUSH_HEADER_BYTES + (to - from);
        let total = record::page_ceil(body_len as u64) as usize;
        let mut body = Vec::with_capacity(total);
        record::encode_flush_header(&mut body, self.salt, &h);
        body.extend_from_slice(&self.buf[from..to]);
        body.resize(total, 0);
        if total <= MAX_IO_BYTES {
            out.push((self.file_pos, body));
        } else {
            for (k, piece) in body.chunks(MAX_IO_BYTES).enumerate() {
                out.push((self.file_pos + (k * MAX_IO_BYTES) as u64, piece.to_vec()));
            }
        }
        self.file_pos += total as u64;
    }

    /// Flush plus fdatasync. Returns bytes written.
    pub async fn sync(&mut self) -> Result<u64> {
        let n = self.flush().await?;
        self.file.sync().await?;
        self.synced_pos = self.file_pos;
        Ok(n)
    }

    /// Closes the file; an error if a write or fsync of a prepared flush still holds it.
    pub async fn close(self) -> Result<()> {
        match Rc::try_unwrap(self.file) {
            Ok(f) => f.close().await,
            Err(_) => Err(Error::Poisoned(format!(
                "{}: closed while a write is in flight",
                self.path.display()
            ))),
        }
    }
}

/// Writes a spare segment file at `path`: `bytes` of zeros, synced, so that a segment
/// later started in it ([`SegmentWriter::reuse`]) only overwrites blocks. Gives up
/// (returning `Ok(false)`, the file left for the caller to remove) once `stop` says so.
pub async fn write_spare<F: FileSystem>(
    fs: &F,
    path: &Path,
    bytes: u64,
    stop: impl Fn() -> bool,
) -> Result<bool> {
    let file = fs.create_rw(path).await?;
    let zeros = vec![0u8; MAX_IO_BYTES];
    let mut at = 0u64;
    while at < bytes {
        if stop() {
            file.close().await?;
            return Ok(false);
        }
        let n = (bytes - at).min(MAX_IO_BYTES as u64) as usize;
        file.write_at(at, &zeros[..n]).await?;
        at += n as u64;
    }
    file.sync().await?;
    file.close().await?;
    Ok(true)
}

/// A record read back, with its file offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub group: u64,
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
    pub offset: u64,
    /// File offset of the header of the flush that holds the record.
    pub flush_offset: u64,
    /// The flush's commit time (0 in a version-2 segment).
    pub commit_ms: u64,
}

/// Reads a segment with recovery semantics, one flush at a time: a flush's records are
/// returned only once the whole flush verified, so a damaged flush replays nothing.
/// Damage is a torn tail (reading stops, [`SegmentReader::end_offset`] is the damaged
/// flush's start) only if it may come from a power cut; otherwise it is an error naming
/// the file and offset. The rule is on `SegmentReader::on_damage` and in
/// `docs/formats.md`.
pub struct SegmentReader<F: FileSystem> {
    file: F::Reader,
    path: PathBuf,
    size: u64,
    seq: u64,
    salt: u64,
    flags: u32,
    /// Segment format version (2 or 3): decides the flush header's length.
    version: u32,
    /// Header offset and commit time of the current flush.
    flush_header_at: u64,
    flush_commit_ms: u64,
    /// True for the last segment of the log (or a manifest): only its tail can be
    /// unsynced. Earlier segments were fsynced whole before the next one started.
    may_tear: bool,
    /// Offset of the next flush header.
    next_flush: u64,
    /// Records of the current, verified flush, and the file offset of its first byte.
    flush: Vec<u8>,
    flush_at: u64,
    cursor: usize,
    /// End of the valid data once reading stopped: where a writer may continue.
    end: Option<u64>,
}

impl<F: FileSystem> SegmentReader<F> {
    /// Opens `path` and checks its header. An empty file, or one whose header page
    /// never reached the disk (all zeros), reads as a segment without records.
    /// `may_tear`: the segment is the last one written, so its tail may be torn.
    pub async fn open(fs: &F, path: &Path, may_tear: bool) -> Result<Self> {
        let file = fs.open_read(path).await?;
        let size = file.size();
        let mut r = SegmentReader {
            file,
            path: path.to_path_buf(),
            size,
            seq: 0,
            salt: 0,
            flags: 0,
            version: SEGMENT_VERSION,
            flush_header_at: FIRST_RECORD_OFFSET,
            flush_commit_ms: 0,
            may_tear,
            next_flush: FIRST_RECORD_OFFSET,
            flush: Vec::new(),
            flush_at: FIRST_RECORD_OFFSET,
            cursor: 0,
            end: None,
        };
        if size < SEGMENT_HEADER_BYTES as u64 {
            r.end = Some(FIRST_RECORD_OFFSET);
            return Ok(r);
        }
        let h = r.file.read_exact_at(0, SEGMENT_HEADER_BYTES).await?;
        if h.iter().all(|&b| b == 0) {
            r.end = Some(FIRST_RECORD_OFFSET);
            return Ok(r);
        }
        let magic = codec::read_u64_at(&h, 0).unwrap_or(0);
        let version = codec::read_u32_at(&h, 8).unwrap_or(0);
        if magic != SEGMENT_MAGIC {
            return Err(Error::corruption(path, 0, "bad segment magic"));
        }
        if !(OLDEST_READABLE_VERSION..=SEGMENT_VERSION).contains(&version) {
            return Err(Error::corruption(
                path,
                8,
                format!(
                    "segment format version {version} is not read by this release \
                     (versions {OLDEST_READABLE_VERSION} to {SEGMENT_VERSION}; version 1 \
                     logs predate flush headers)"
                ),
            ));
        }
        r.version = version;
        let crc = codec::read_u32_at(&h, 32).unwrap_or(0);
        if codec::crc32c(&h[..32]) != crc {
            return Err(Error::corruption(path, 0, "bad segment header checksum"));
        }
        r.seq = codec::read_u64_at(&h, 12).unwrap_or(0);
        r.salt = codec::read_u64_at(&h, 20).unwrap_or(0);
        r.flags = codec::read_u32_at(&h, 28).unwrap_or(0);
        Ok(r)
    }

    /// Sequence number from the header (0 for an empty segment).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// True if a recovery started this segment (see [`FLAG_RUN_START`]).
    pub fn is_run_start(&self) -> bool {
        self.flags & FLAG_RUN_START != 0
    }

    /// The segment's format version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The segment's salt (keys its flush headers).
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// Where valid data ends; known once `next` returned `None`.
    pub fn end_offset(&self) -> Option<u64> {
        self.end
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next record, or `None` at the end of valid data.
    pub async fn next(&mut self) -> Result<Option<OwnedRecord>> {
        loop {
            if self.end.is_some() {
                return Ok(None);
            }
            if self.cursor < self.flush.len() {
                let at = self.cursor;
                let record::Parsed::Record { rec, next } = record::parse(&self.flush[at..]) else {
                    // The whole flush verified when it was loaded; this is a bug.
                    return Err(Error::corruption(
                        &self.path,
                        self.flush_at + at as u64,
                        "verified flush no longer parses",
                    ));
                };
                self.cursor += next;
                return Ok(Some(OwnedRecord {
                    group: rec.group,
                    index: rec.index,
                    term: rec.term,
                    payload: rec.payload.to_vec(),
                    offset: self.flush_at + at as u64,
                    flush_offset: self.flush_header_at,
                    commit_ms: self.flush_commit_ms,
                }));
            }
            self.load_flush().await?;
        }
    }

    /// Reads and verifies the flush at `next_flush`, or decides where the data ends.
    async fn load_flush(&mut self) -> Result<()> {
        let p = self.next_flush;
        self.flush.clear();
        self.cursor = 0;
        if p >= self.size {
            self.end = Some(p);
            return Ok(());
        }
        let header_len = record::flush_header_len(self.version);
        let head_len = (self.size - p).min(header_len as u64) as usize;
        let head = self.file.read_exact_at(p, head_len).await?;
        let Some(h) = record::decode_flush_header_of(&head, self.salt, p, self.version) else {
            let n = header_len as u64;
            return self.on_damage(p, p, n, "no valid flush header").await;
        };
        let start = p + header_len as u64;
        let end = start + h.records_len;
        if end > self.size {
            return self
                .on_damage(
                    p,
                    start,
                    h.records_len,
                    "flush runs past the end of the file",
                )
                .await;
        }
        let body = self.read_range(start, end).await?;
        if let Err(bad) = record::check_flush_records(&body, h.record_count) {
            let at = start + bad.at as u64;
            return self.on_damage(p, at, bad.need as u64, bad.reason).await;
        }
        self.flush = body;
        self.flush_at = start;
        self.flush_header_at = p;
        self.flush_commit_ms = h.commit_ms;
        self.next_flush = record::page_ceil(end);
        Ok(())
    }

    /// Reads file bytes [from, to) in pieces of at most `MAX_IO_BYTES`.
    async fn read_range(&self, from: u64, to: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((to - from) as usize);
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(MAX_IO_BYTES);
            out.extend_from_slice(&self.file.read_exact_at(at, n).await?);
            at += n as u64;
        }
        Ok(out)
    }

    /// The flush at `p` is damaged: bytes [bad, bad + bad_len) do not verify. Decides
    /// between a torn tail (reading ends at `p`, nothing of the flush is replayed) and
    /// corruption:
    /// - a later flush whose header (keyed by the salt, so not client data) states the
    ///   file durable past `p` proves the damaged bytes had been fsynced: corruption;
    /// - in a segment other than the last, everything was fsynced: corruption;
    /// - with no valid flush after it, the damaged flush is the last one: a torn tail;
    /// - with later flushes that prove nothing, the damage is an unsynced tail lost out
    ///   of order only if it looks like lost pages (an all-zero page, or bytes past
    ///   the end of the file); bit damage is not what a power cut does: corruption.
    async fn on_damage(&mut self, p: u64, bad: u64, bad_len: u64, why: &str) -> Result<()> {
        let later = self.later_flushes(p).await?;
        let proven = later.filter(|&(_, durable)| durable > p);
        let torn = match (self.may_tear, later) {
            (false, _) => false,
            (true, None) => true,
            (true, Some(_)) => proven.is_none() && self.has_lost_page(bad, bad_len).await?,
        };
        if torn {
            self.end = Some(p);
            return Ok(());
        }
        let reason = match (proven, later) {
            (Some((q, durable)), _) => format!(
                "{why} at offset {bad} in the flush at {p}, though the flush at {q} records \
                 the file durable through {durable}"
            ),
            (None, Some((q, _))) => format!(
                "{why} at offset {bad} in the flush at {p}, followed by a valid flush at {q}"
            ),
            (None, None) => format!(
                "{why} at offset {bad} in the flush at {p} of a segment that later segments \
                 follow (it was fsynced whole)"
            ),
        };
        Err(Error::corruption(&self.path, p, reason))
    }

    /// Valid flush headers at page boundaries after `p`: the first one's offset and the
    /// largest durable point any of them states.
    async fn later_flushes(&self, p: u64) -> Result<Option<(u64, u64)>> {
        let mut found: Option<(u64, u64)> = None;
        let mut page = p + IO_ALIGN;
        while page < self.size {
            let n = ((self.size - page) as usize).min(MAX_IO_BYTES);
            let chunk = self.file.read_exact_at(page, n).await?;
            for off in (0..n).step_by(IO_ALIGN as usize) {
                let at = page + off as u64;
                if let Some(h) =
                    record::decode_flush_header_of(&chunk[off..], self.salt, at, self.version)
                {
                    let first = found.map_or(at, |f| f.0);
                    let durable = found.map_or(0, |f| f.1).max(h.durable_through);
                    found = Some((first, durable));
                }
            }
            page += n as u64;
        }
        Ok(found)
    }

    /// True if a page overlapping [bad, bad + len) ends in a zero sector (a lost page
    /// reads as zeros, a torn one as a prefix of its sectors) or lies past the end of
    /// the file: what a lost, never-synced write leaves.
    async fn has_lost_page(&self, bad: u64, len: u64) -> Result<bool> {
        let first = bad / IO_ALIGN * IO_ALIGN;
        let last = record::page_ceil(bad.saturating_add(len.max(1)));
        if last > self.size {
            return Ok(true);
        }
        let mut page = first;
        while page < last {
            let n = ((last - page) as usize).min(MAX_IO_BYTES);
            let chunk = self.file.read_exact_at(page, n).await?;
            if chunk.chunks(IO_ALIGN as usize).any(|pg| {
                pg[pg.len().saturating_sub(SECTOR_BYTES)..]
                    .iter()
                    .all(|&b| b == 0)
            }) {
                return Ok(true);
            }
            page += n as u64;
        }
        Ok(false)
    }

    pub async fn close(self) -> Result<()> {
        self.file.close().await
    }
}
