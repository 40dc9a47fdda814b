//! One log segment file: a header page, then records in page-aligned flushes.
//!
//! Header page (offset 0, 4096 bytes, zero-padded):
//! `magic:u64 = "NXDBLOG1" | version:u32 = 1 | seq:u64 | crc32c:u32` over the first
//! 20 bytes. Records start at [`FIRST_RECORD_OFFSET`].
//!
//! Used by the write-ahead log and by the manifest (a file of version edits).

use super::record::{self, Parsed};
use crate::codec;
use crate::config::{IO_ALIGN, MAX_IO_BYTES};
use crate::fs::{FileSystem, ReadFile, RwFile};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// "NXDBLOG1" read as a little-endian u64.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"NXDBLOG1");
pub const SEGMENT_VERSION: u32 = 1;
/// Records start after the header page.
pub const FIRST_RECORD_OFFSET: u64 = IO_ALIGN;

fn header_page(seq: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(IO_ALIGN as usize);
    codec::put_u64(&mut h, SEGMENT_MAGIC);
    codec::put_u32(&mut h, SEGMENT_VERSION);
    codec::put_u64(&mut h, seq);
    let crc = codec::crc32c(&h);
    codec::put_u32(&mut h, crc);
    h.resize(IO_ALIGN as usize, 0);
    h
}

/// Appends records to one segment. Owned by one task at a time (the log's leader).
pub struct SegmentWriter<F: FileSystem> {
    file: F::Rw,
    path: PathBuf,
    /// Page-aligned offset where the next flush starts.
    file_pos: u64,
    /// Encoded records not yet written.
    buf: Vec<u8>,
    /// Scratch for padded writes.
    io_buf: Vec<u8>,
}

impl<F: FileSystem> SegmentWriter<F> {
    /// Creates the file, writes and syncs its header page. The caller syncs the
    /// directory before relying on the name.
    pub async fn create(fs: &F, path: &Path, seq: u64) -> Result<Self> {
        let file = fs.create_rw(path).await?;
        file.write_at(0, &header_page(seq)).await?;
        file.sync().await?;
        Ok(SegmentWriter {
            file,
            path: path.to_path_buf(),
            file_pos: FIRST_RECORD_OFFSET,
            buf: Vec::new(),
            io_buf: Vec::new(),
        })
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

    /// Logical size: flushed pages plus buffered bytes.
    pub fn position(&self) -> u64 {
        self.file_pos + self.buf.len() as u64
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the buffered records, zero-padded to a page, at the next page boundary;
    /// no fsync. Returns bytes written.
    pub async fn flush(&mut self) -> Result<u64> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        let mut padded = record::page_ceil(self.buf.len() as u64) as usize;
        if (1..record::MIN_PADDING).contains(&(padded - self.buf.len())) {
            // Too little room for recognisable padding: pad through one more page.
            padded += IO_ALIGN as usize;
        }
        let mut written = 0u64;
        let mut off = 0usize;
        while off < padded {
            let n = (padded - off).min(MAX_IO_BYTES);
            self.io_buf.clear();
            let end = (off + n).min(self.buf.len());
            if off < end {
                self.io_buf.extend_from_slice(&self.buf[off..end]);
            }
            self.io_buf.resize(n, 0);
            self.file
                .write_at(self.file_pos + off as u64, &self.io_buf)
                .await?;
            off += n;
            written += n as u64;
        }
        self.file_pos += padded as u64;
        self.buf.clear();
        Ok(written)
    }

    /// Flush plus fdatasync. Returns bytes written.
    pub async fn sync(&mut self) -> Result<u64> {
        let n = self.flush().await?;
        self.file.sync().await?;
        Ok(n)
    }

    pub async fn close(self) -> Result<()> {
        self.file.close().await
    }
}

/// A record read back, with its file offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub group: u64,
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
    pub offset: u64,
}

/// Reads a segment with recovery semantics: streaming (reads of at most 1 MiB), skips
/// padding, stops at a torn or zero tail, and reports corruption followed by valid
/// records as an error naming the file and offset.
pub struct SegmentReader<F: FileSystem> {
    file: F::Reader,
    path: PathBuf,
    size: u64,
    /// File bytes [buf_start, buf_start + buf.len()).
    buf: Vec<u8>,
    buf_start: u64,
    pos: u64,
    /// End of the valid data once reading stopped: where a writer may continue.
    end: Option<u64>,
    seq: u64,
}

impl<F: FileSystem> SegmentReader<F> {
    /// Opens `path` and checks its header. An empty file, or one whose header page
    /// never reached the disk (all zeros), reads as a segment without records.
    pub async fn open(fs: &F, path: &Path) -> Result<Self> {
        let file = fs.open_read(path).await?;
        let size = file.size();
        let mut r = SegmentReader {
            file,
            path: path.to_path_buf(),
            size,
            buf: Vec::new(),
            buf_start: 0,
            pos: FIRST_RECORD_OFFSET,
            end: None,
            seq: 0,
        };
        if size < 24 {
            r.end = Some(FIRST_RECORD_OFFSET);
            return Ok(r);
        }
        let h = r.file.read_exact_at(0, 24).await?;
        if h.iter().all(|&b| b == 0) {
            r.end = Some(FIRST_RECORD_OFFSET);
            return Ok(r);
        }
        let magic = codec::read_u64_at(&h, 0).unwrap_or(0);
        let version = codec::read_u32_at(&h, 8).unwrap_or(0);
        let crc = codec::read_u32_at(&h, 20).unwrap_or(0);
        if magic != SEGMENT_MAGIC || codec::crc32c(&h[..20]) != crc {
            return Err(Error::corruption(path, 0, "bad segment header"));
        }
        if version != SEGMENT_VERSION {
            return Err(Error::corruption(
                path,
                8,
                format!("unknown segment version {version}"),
            ));
        }
        r.seq = codec::read_u64_at(&h, 12).unwrap_or(0);
        Ok(r)
    }

    /// Sequence number from the header (0 for an empty segment).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Where valid data ends; known once `next` returned `None`.
    pub fn end_offset(&self) -> Option<u64> {
        self.end
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes file bytes [pos, pos + n) available in `buf` if the file has them.
    async fn fill(&mut self, n: usize) -> Result<()> {
        // Drop consumed bytes so memory stays bounded by the largest record.
        if self.pos > self.buf_start {
            let consumed = ((self.pos - self.buf_start) as usize).min(self.buf.len());
            if consumed >= MAX_IO_BYTES || consumed == self.buf.len() {
                self.buf.drain(..consumed);
                self.buf_start += consumed as u64;
            }
        }
        let want_end = self.pos.saturating_add(n as u64).min(self.size);
        while self.buf_start + (self.buf.len() as u64) < want_end {
            let at = self.buf_start + self.buf.len() as u64;
            let len = ((self.size - at) as usize).min(MAX_IO_BYTES);
            let chunk = self.file.read_exact_at(at, len).await?;
            self.buf.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn window(&self) -> &[u8] {
        let start = (self.pos - self.buf_start) as usize;
        self.buf.get(start..).unwrap_or(&[])
    }

    /// The next record, or `None` at the end of valid data.
    pub async fn next(&mut self) -> Result<Option<OwnedRecord>> {
        if self.end.is_some() {
            return Ok(None);
        }
        let mut need = record::HEADER_BYTES;
        loop {
            if self.pos >= self.size {
                self.end = Some(record::page_ceil(self.pos));
                return Ok(None);
            }
            self.fill(need).await?;
            match record::parse(self.window()) {
                Parsed::Record { rec, next } => {
                    let out = OwnedRecord {
                        group: rec.group,
                        index: rec.index,
                        term: rec.term,
                        payload: rec.payload.to_vec(),
                        offset: self.pos,
                    };
                    self.pos += next as u64;
                    return Ok(Some(out));
                }
                Parsed::Padding => {
                    self.pos = record::page_ceil(self.pos + 1);
                    need = record::HEADER_BYTES;
                }
                Parsed::Short { need: n } if self.pos + (n as u64) <= self.size && n > need => {
                    need = n;
                }
                Parsed::Short { .. } | Parsed::Invalid(_) => {
                    let bad = self.pos;
                    return match self.find_valid_after(bad).await? {
                        Some(at) => Err(Error::corruption(
                            &self.path,
                            bad,
                            format!("invalid log record followed by a valid one at offset {at}"),
                        )),
                        None => {
                            // A torn or partially written final flush: the log ends here.
                            self.end = Some(record::page_ceil(bad));
                            Ok(None)
                        }
                    };
                }
            }
        }
    }

    /// Looks for a valid record at any later page boundary (each flush starts on one).
    async fn find_valid_after(&mut self, bad: u64) -> Result<Option<u64>> {
        let mut page = record::page_ceil(bad + 1);
        while page + (record::HEADER_BYTES as u64) <= self.size {
            let chunk_len = ((self.size - page) as usize).min(MAX_IO_BYTES);
            let chunk = self.file.read_exact_at(page, chunk_len).await?;
            let mut off = 0usize;
            while off + record::HEADER_BYTES <= chunk.len() {
                match record::parse(&chunk[off..]) {
                    Parsed::Record { .. } => return Ok(Some(page + off as u64)),
                    Parsed::Short { need } => {
                        let at = page + off as u64;
                        if at + need as u64 <= self.size {
                            let whole = self.file.read_exact_at(at, need).await?;
                            if matches!(record::parse(&whole), Parsed::Record { .. }) {
                                return Ok(Some(at));
                            }
                        }
                    }
                    Parsed::Padding | Parsed::Invalid(_) => {}
                }
                off += IO_ALIGN as usize;
            }
            page += chunk_len as u64;
        }
        Ok(None)
    }

    pub async fn close(self) -> Result<()> {
        self.file.close().await
    }
}
