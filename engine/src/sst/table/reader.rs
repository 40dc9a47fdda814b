//! [`Table`]: an open table, its pinned index and filter, point reads and block reads
//! through the shared block cache.

use super::footer::{TableProperties, decode_footer};
use super::{BLOCK_TRAILER_BYTES, BlockHandle, FOOTER_BYTES, TYPE_LZ4, TYPE_NONE, TYPE_ZSTD};
use crate::cache::BlockCache;
use crate::codec;
use crate::config;
use crate::fs::ReadFile;
use crate::keys;
use crate::sst::block::{Block, BlockIter};
use crate::sst::bloom::{self, BloomFilter};
use crate::{Error, Result};
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;

/// Read-path counters of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Point reads (`get`).
    pub gets: u64,
    /// Point reads that consulted the filter.
    pub bloom_checks: u64,
    /// Point reads the filter answered "absent" (no block read needed).
    pub bloom_useful: u64,
    /// Point reads the filter let through that returned `None`. An upper bound of the
    /// filter's false positives: it also counts reads whose key exists only in versions
    /// newer than the read timestamp.
    pub bloom_false_positives: u64,
    /// Data blocks read from the file (cache misses).
    pub block_reads: u64,
}

#[derive(Default)]
struct StatCells {
    gets: Cell<u64>,
    bloom_checks: Cell<u64>,
    bloom_useful: Cell<u64>,
    bloom_false_positives: Cell<u64>,
    block_reads: Cell<u64>,
}

#[inline]
fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

thread_local! {
    /// One ZSTD decompression context per thread (= per core): creating one per
    /// block would allocate on every cache miss.
    static ZSTD_DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// A version found by [`Table::lookup`]: its timestamp and its stored value, borrowed
/// from the data block (kept alive by the hit even if the cache evicts it).
pub struct TableHit {
    block: Rc<Block>,
    pub ts: u64,
    value: std::ops::Range<usize>,
}

impl TableHit {
    /// The stored value (kind byte, expiry, user value: `keys::decode_value`).
    pub fn value(&self) -> &[u8] {
        self.block.slice(self.value.clone())
    }
}

/// An open SSTable.
pub struct Table<R: ReadFile> {
    file: R,
    path: Rc<Path>,
    file_number: u64,
    cache: Rc<BlockCache<Block>>,
    pub(super) index: Rc<Block>,
    filter: Option<BloomFilter>,
    props: TableProperties,
    /// End of the data blocks = first byte of the meta blocks.
    footer_offset: u64,
    stats: StatCells,
    /// Key buffer reused by `get`, so a point read does not allocate one per block.
    scratch: RefCell<Vec<u8>>,
}

impl<R: ReadFile> Table<R> {
    /// Opens a table: reads and verifies footer, index, filter and properties. Every
    /// failure is `Error::Corruption` naming the file and the offset (or an I/O error).
    /// `file_number` keys the table's blocks in `cache` and must be unique among the
    /// tables sharing it.
    pub async fn open(
        reader: R,
        file_number: u64,
        cache: Rc<BlockCache<Block>>,
    ) -> Result<Table<R>> {
        let path: Rc<Path> = Rc::from(reader.path());
        let size = reader.size();
        if size < FOOTER_BYTES as u64 {
            return Err(Error::corruption(
                path.to_path_buf(),
                0,
                format!(
                    "file of {size} bytes is shorter than the {FOOTER_BYTES}-byte footer (truncated?)"
                ),
            ));
        }
        let footer_offset = size - FOOTER_BYTES as u64;
        let footer = reader.read_exact_at(footer_offset, FOOTER_BYTES).await?;
        let corrupt = |off: u64, why: &str| Error::corruption(path.to_path_buf(), off, why);
        let [filter_h, props_h, index_h] = decode_footer(&footer, &path, footer_offset)?;
        let mut table = Table {
            file: reader,
            path: path.clone(),
            file_number,
            cache,
            index: Rc::new(Block::empty()),
            filter: None,
            props: TableProperties::default(),
            footer_offset,
            stats: StatCells::default(),
            scratch: RefCell::new(Vec::new()),
        };
        if filter_h != BlockHandle::default() {
            let raw = table
                .read_physical(filter_h, config::MAX_META_BLOCK_BYTES)
                .await?;
            let f = BloomFilter::decode(raw).map_err(|why| corrupt(filter_h.offset, why))?;
            table.filter = Some(f);
        }
        let raw = table
            .read_physical(props_h, config::MAX_META_BLOCK_BYTES)
            .await?;
        let mut props =
            TableProperties::decode(&raw).map_err(|why| corrupt(props_h.offset, why))?;
        props.file_size = size;
        table.props = props;
        let raw = table
            .read_physical(index_h, config::MAX_META_BLOCK_BYTES)
            .await?;
        table.index = Rc::new(Block::with_origin(raw, path, index_h.offset)?);
        Ok(table)
    }

    pub fn properties(&self) -> &TableProperties {
        &self.props
    }

    pub fn file_number(&self) -> u64 {
        self.file_number
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the table has a bloom filter.
    pub fn has_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// Bytes pinned by this table (index and filter), for memory accounting.
    pub fn pinned_bytes(&self) -> usize {
        self.index.memory_bytes() + self.filter.as_ref().map_or(0, BloomFilter::size)
    }

    pub fn stats(&self) -> TableStats {
        let s = &self.stats;
        TableStats {
            gets: s.gets.get(),
            bloom_checks: s.bloom_checks.get(),
            bloom_useful: s.bloom_useful.get(),
            bloom_false_positives: s.bloom_false_positives.get(),
            block_reads: s.block_reads.get(),
        }
    }

    /// Closes the file.
    pub async fn close(self) -> Result<()> {
        self.file.close().await
    }

    /// Point read: the first entry whose key is `>= ikey_seek` if it has the same user
    /// key (the newest version visible at the seek key's timestamp), else `None`.
    /// Copies the key and value out; the read path uses [`Table::lookup`].
    pub async fn get(&self, ikey_seek: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let uk = keys::user_key(ikey_seek);
        let hit = self.lookup(ikey_seek, bloom::key_hash(uk)).await?;
        Ok(hit.map(|h| (keys::internal_key(uk, h.ts), h.value().to_vec())))
    }

    /// True unless the filter says the table holds no version of the user key whose
    /// [`bloom::key_hash`] is `hash`.
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.may_contain_hash(hash))
    }

    /// False only if the table surely holds no version of `user_key` (`hash` =
    /// [`bloom::key_hash`] of it): outside the table's key range, or excluded by its
    /// filter.
    pub fn may_hold(&self, user_key: &[u8], hash: u64) -> bool {
        let p = &self.props;
        if p.num_entries == 0
            || user_key < keys::user_key(&p.smallest_key)
            || user_key > keys::user_key(&p.largest_key)
        {
            return false;
        }
        self.may_contain_hash(hash)
    }

    /// [`Table::get`] without copies: the value stays in the cached block the hit
    /// holds. `user_key_hash` is [`bloom::key_hash`] of the seek key's user key,
    /// computed once by a caller that probes several tables.
    pub async fn lookup(&self, ikey_seek: &[u8], user_key_hash: u64) -> Result<Option<TableHit>> {
        bump(&self.stats.gets);
        let uk = keys::user_key(ikey_seek);
        if let Some(f) = &self.filter {
            bump(&self.stats.bloom_checks);
            if !f.may_contain_hash(user_key_hash) {
                bump(&self.stats.bloom_useful);
                return Ok(None);
            }
        }
        let buf = std::mem::take(&mut *self.scratch.borrow_mut());
        let mut it = BlockIter::with_key_buffer(&*self.index, buf);
        it.seek(ikey_seek);
        if !it.valid() {
            it.status()?;
            self.put_scratch(it.into_key_buffer());
            return Ok(None);
        }
        let handle = self.decode_handle(it.value())?;
        let buf = it.into_key_buffer();
        let block = self.read_block(handle).await?;
        let mut it = BlockIter::with_key_buffer(&*block, buf);
        it.seek(ikey_seek);
        let found = if it.valid() && keys::user_key(it.key()) == uk {
            Some((keys::timestamp(it.key()), it.value_range()))
        } else {
            it.status()?;
            None
        };
        self.put_scratch(it.into_key_buffer());
        let Some((ts, value)) = found else {
            if self.filter.is_some() {
                bump(&self.stats.bloom_false_positives);
            }
            return Ok(None);
        };
        Ok(Some(TableHit { block, ts, value }))
    }

    fn put_scratch(&self, buf: Vec<u8>) {
        *self.scratch.borrow_mut() = buf;
    }

    pub(super) fn decode_handle(&self, v: &[u8]) -> Result<BlockHandle> {
        BlockHandle::decode(v).ok_or_else(|| {
            Error::corruption(
                self.path.to_path_buf(),
                self.index_offset(),
                "malformed block handle in index",
            )
        })
    }

    fn index_offset(&self) -> u64 {
        // The index is the last block before the footer.
        self.footer_offset
            .saturating_sub(self.index.size() as u64 + BLOCK_TRAILER_BYTES as u64)
    }

    /// A data block, from the cache or from the file (then cached).
    pub async fn read_block(&self, handle: BlockHandle) -> Result<Rc<Block>> {
        let key = (self.file_number, handle.offset);
        if let Some(b) = self.cache.get(key) {
            return Ok(b);
        }
        bump(&self.stats.block_reads);
        let data = self.read_physical(handle, config::MAX_BLOCK_BYTES).await?;
        let block = Rc::new(Block::with_origin(data, self.path.clone(), handle.offset)?);
        let charge = block.memory_bytes();
        self.cache.insert(key, block.clone(), charge);
        Ok(block)
    }

    /// Reads a block and its trailer, verifies the CRC and decompresses.
    async fn read_physical(&self, h: BlockHandle, max: usize) -> Result<Vec<u8>> {
        let corrupt = |why: String| Error::corruption(self.path.to_path_buf(), h.offset, why);
        let end = h
            .offset
            .checked_add(h.physical_size())
            .filter(|&e| e <= self.footer_offset);
        if end.is_none() || h.size > max as u64 {
            return Err(corrupt(format!(
                "block handle (offset {}, size {}) out of bounds",
                h.offset, h.size
            )));
        }
        let size = h.size as usize;
        let raw = self
            .read_range(h.offset, size + BLOCK_TRAILER_BYTES)
            .await?;
        self.decode_physical(h, raw, max)
    }

    /// Verifies the trailer of a block read from disk (payload and trailer) and
    /// decompresses it.
    fn decode_physical(&self, h: BlockHandle, mut raw: Vec<u8>, max: usize) -> Result<Vec<u8>> {
        let corrupt = |why: String| Error::corruption(self.path.to_path_buf(), h.offset, why);
        let size = h.size as usize;
        let ty = raw.get(size).copied().unwrap_or(u8::MAX);
        let stored = codec::read_u32_at(&raw, size + 1);
        let actual = codec::crc32c(raw.get(..size + 1).unwrap_or(&[]));
        if stored != Some(actual) {
            return Err(corrupt("block checksum mismatch".into()));
        }
        raw.truncate(size);
        match ty {
            TYPE_NONE => Ok(raw),
            TYPE_LZ4 | TYPE_ZSTD => {
                let n = codec::read_u32_at(&raw, 0).unwrap_or(u32::MAX) as usize;
                if n > max {
                    return Err(corrupt(format!("uncompressed size {n} exceeds {max}")));
                }
                let input = raw.get(4..).unwrap_or(&[]);
                let out = if ty == TYPE_LZ4 {
                    let mut out = vec![0u8; n];
                    lz4_flex::block::decompress_into(input, &mut out)
                        .ok()
                        .filter(|&m| m == n)
                        .map(|_| out)
                } else {
                    zstd_decompress(input, n).filter(|o| o.len() == n)
                };
                out.ok_or_else(|| corrupt(format!("type {ty} block does not decompress")))
            }
            other => Err(corrupt(format!("unknown compression type {other}"))),
        }
    }

    /// Reads the consecutive data blocks `handles` with one read and puts those not yet
    /// cached into the cache (iterator readahead). Best effort: a block that fails to
    /// verify is skipped, and the normal read path reports it when it is needed.
    pub async fn prefetch(&self, handles: &[BlockHandle]) -> Result<()> {
        let (Some(first), Some(last)) = (handles.first(), handles.last()) else {
            return Ok(());
        };
        if handles
            .iter()
            .all(|h| self.cache.get((self.file_number, h.offset)).is_some())
        {
            return Ok(());
        }
        let start = first.offset;
        let end = last.offset.saturating_add(last.physical_size());
        if end > self.footer_offset || end <= start {
            return Ok(());
        }
        let raw = self.read_range(start, (end - start) as usize).await?;
        bump(&self.stats.block_reads);
        for h in handles {
            let key = (self.file_number, h.offset);
            if self.cache.get(key).is_some() {
                continue;
            }
            let from = (h.offset - start) as usize;
            let Some(bytes) = raw.get(from..from + h.physical_size() as usize) else {
                break;
            };
            let Ok(data) = self.decode_physical(*h, bytes.to_vec(), config::MAX_BLOCK_BYTES) else {
                break;
            };
            let Ok(block) = Block::with_origin(data, self.path.clone(), h.offset) else {
                break;
            };
            let charge = block.memory_bytes();
            self.cache.insert(key, Rc::new(block), charge);
        }
        Ok(())
    }

    /// Reads `len` bytes at `pos`, split into reads of at most `MAX_IO_BYTES`.
    async fn read_range(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        if len <= config::MAX_IO_BYTES {
            return self.file.read_exact_at(pos, len).await;
        }
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = (len - out.len()).min(config::MAX_IO_BYTES);
            let part = self.file.read_exact_at(pos + out.len() as u64, n).await?;
            out.extend_from_slice(&part);
        }
        Ok(out)
    }
}

fn zstd_decompress(input: &[u8], n: usize) -> Option<Vec<u8>> {
    ZSTD_DCTX.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = zstd::bulk::Decompressor::new().ok();
        }
        let d = slot.as_mut()?;
        let mut out = Vec::with_capacity(n);
        d.decompress_to_buffer(input, &mut out).ok()?;
        Some(out)
    })
}

/// Duplicates an error for a sticky iterator status (errors are not `Clone`).
pub(super) fn dup_error(e: &Error) -> Error {
    match e {
        Error::Io { path, source } => Error::io(
            path.clone(),
            std::io::Error::new(source.kind(), source.to_string()),
        ),
        Error::Corruption {
            path,
            offset,
            reason,
        } => Error::corruption(path.clone(), *offset, reason.clone()),
        Error::Crashed => Error::Crashed,
        Error::Busy(s) => Error::Busy(s.clone()),
        other => Error::InvalidArgument(other.to_string()),
    }
}
