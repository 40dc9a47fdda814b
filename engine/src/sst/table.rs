//! SSTable writer ([`TableBuilder`]) and reader ([`Table`], [`TableIter`]).
//!
//! File layout (byte by byte in `docs/formats.md`):
//!
//! ```text
//! data block*  filter block  properties block  index block  footer (64 bytes)
//! ```
//!
//! Every block is stored as `payload | type u8 | crc32c u32 LE` where the CRC covers
//! payload and type, and `type` says how the payload is compressed. A [`BlockHandle`]
//! names a block by offset and payload size (trailer excluded). The index maps the last
//! key of each data block (or a shorter separator) to its handle. The footer holds the
//! three meta handles, the format version, its own CRC and the magic number.
//!
//! The reader keeps the index and the filter pinned in the [`Table`] (they are not
//! charged to the block cache: their memory is owned by whoever keeps the table
//! open); data blocks go through the shared [`BlockCache`].

use super::block::{Block, BlockBuilder, BlockIter};
use super::bloom::{self, BloomFilter};
use crate::cache::BlockCache;
use crate::codec::{self, Decoder};
use crate::config;
use crate::fs::{ReadFile, StreamWriter};
use crate::keys;
use crate::{Error, Result};
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::path::Path;
use std::rc::Rc;

/// Last 8 bytes of every table: "NXDBSST1" read as a little-endian u64.
pub const TABLE_MAGIC: u64 = 0x3154_5353_4244_584e;
/// Version of this layout, stored in the footer.
pub const FORMAT_VERSION: u32 = 1;
/// Compression type byte plus CRC-32C after every block payload.
pub const BLOCK_TRAILER_BYTES: usize = 5;
/// Three fixed-width handles (48), version (4), CRC (4), magic (8).
pub const FOOTER_BYTES: usize = 64;
/// Forward block steps after a seek before an iterator starts reading ahead.
const READAHEAD_AFTER_BLOCKS: u32 = 2;
/// Version byte at the start of the properties block.
pub const PROPERTIES_VERSION: u8 = 1;

/// Compression type bytes of the block trailer.
const TYPE_NONE: u8 = 0;
const TYPE_LZ4: u8 = 1;
const TYPE_ZSTD: u8 = 2;

/// How data blocks are compressed (meta blocks are always stored raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// LZ4 block format: hot levels, where decompression speed matters most.
    Lz4,
    /// ZSTD at the given level: cold levels, where size matters most.
    Zstd(i32),
}

impl Compression {
    fn type_byte(self) -> u8 {
        match self {
            Compression::None => TYPE_NONE,
            Compression::Lz4 => TYPE_LZ4,
            Compression::Zstd(_) => TYPE_ZSTD,
        }
    }
}

/// Where a block lives: offset of its first byte and payload length (the 5-byte
/// trailer follows the payload and is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    /// Varint form, used as index values.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        codec::put_varint(out, self.offset);
        codec::put_varint(out, self.size);
    }

    /// Decodes the varint form; `None` if malformed.
    pub fn decode(buf: &[u8]) -> Option<BlockHandle> {
        let mut d = Decoder::new(buf);
        let offset = d.varint().ok()?;
        let size = d.varint().ok()?;
        Some(BlockHandle { offset, size })
    }

    /// Bytes on disk including the trailer.
    pub fn physical_size(&self) -> u64 {
        self.size + BLOCK_TRAILER_BYTES as u64
    }
}

/// How to build a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    pub compression: Compression,
    /// Data blocks are cut once their uncompressed size reaches this.
    pub block_bytes: usize,
    /// A restart point every this many entries of a data block.
    pub restart_interval: usize,
    /// Bloom bits per distinct user key; 0 writes no filter.
    pub bloom_bits_per_key: usize,
}

impl TableOptions {
    /// Options for a table written to `level` (0-based): LZ4 for hot levels, ZSTD from
    /// `cfg.zstd_from_level` on.
    pub fn for_level(cfg: &config::EngineConfig, level: usize) -> Self {
        let compression = if level >= cfg.zstd_from_level {
            Compression::Zstd(cfg.zstd_level)
        } else {
            Compression::Lz4
        };
        TableOptions {
            compression,
            ..TableOptions::default()
        }
    }
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            compression: Compression::None,
            block_bytes: config::DATA_BLOCK_BYTES,
            restart_interval: config::BLOCK_RESTART_INTERVAL,
            bloom_bits_per_key: config::BLOOM_BITS_PER_KEY,
        }
    }
}

/// Facts about a table, written in its properties block and returned by
/// [`TableBuilder::finish`]. Sizes are bytes on disk, trailers included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableProperties {
    pub num_entries: u64,
    /// Entries whose value starts with `ValueKind::Delete` (tombstones).
    pub num_deletions: u64,
    pub raw_key_bytes: u64,
    pub raw_value_bytes: u64,
    pub num_data_blocks: u64,
    pub data_size: u64,
    pub index_size: u64,
    pub filter_size: u64,
    /// Smallest and largest internal keys (empty for an empty table).
    pub smallest_key: Vec<u8>,
    pub largest_key: Vec<u8>,
    /// Timestamp range of the entries (0, 0 for an empty table).
    pub min_ts: u64,
    pub max_ts: u64,
    /// Whole file, footer included (not stored: known from the file itself).
    pub file_size: u64,
    pub compression: Compression,
}

impl TableProperties {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96 + self.smallest_key.len() + self.largest_key.len());
        codec::put_u8(&mut b, PROPERTIES_VERSION);
        for v in [
            self.num_entries,
            self.num_deletions,
            self.raw_key_bytes,
            self.raw_value_bytes,
            self.num_data_blocks,
            self.data_size,
            self.index_size,
            self.filter_size,
            self.min_ts,
            self.max_ts,
        ] {
            codec::put_varint(&mut b, v);
        }
        codec::put_u8(&mut b, self.compression.type_byte());
        let level = match self.compression {
            Compression::Zstd(l) => l,
            _ => 0,
        };
        codec::put_varint_i64(&mut b, i64::from(level));
        codec::put_bytes(&mut b, &self.smallest_key);
        codec::put_bytes(&mut b, &self.largest_key);
        b
    }

    /// Decodes a properties block. Trailing bytes are ignored so that later versions
    /// can append fields.
    fn decode(buf: &[u8]) -> std::result::Result<TableProperties, &'static str> {
        let mut d = Decoder::new(buf);
        let bad = |_| "truncated or malformed properties";
        if d.u8().map_err(bad)? != PROPERTIES_VERSION {
            return Err("unknown properties version");
        }
        let mut n = [0u64; 10];
        for v in &mut n {
            *v = d.varint().map_err(bad)?;
        }
        let compression = match (d.u8().map_err(bad)?, d.varint_i64().map_err(bad)?) {
            (TYPE_NONE, _) => Compression::None,
            (TYPE_LZ4, _) => Compression::Lz4,
            (TYPE_ZSTD, l) => {
                Compression::Zstd(i32::try_from(l).map_err(|_| "zstd level out of range")?)
            }
            _ => return Err("unknown compression in properties"),
        };
        let smallest_key = d.bytes().map_err(bad)?.to_vec();
        let largest_key = d.bytes().map_err(bad)?.to_vec();
        Ok(TableProperties {
            num_entries: n[0],
            num_deletions: n[1],
            raw_key_bytes: n[2],
            raw_value_bytes: n[3],
            num_data_blocks: n[4],
            data_size: n[5],
            index_size: n[6],
            filter_size: n[7],
            min_ts: n[8],
            max_ts: n[9],
            smallest_key,
            largest_key,
            file_size: 0,
            compression,
        })
    }
}

/// Writes blocks with their trailers and keeps the compression scratch buffers.
struct BlockWriter<W: StreamWriter> {
    writer: W,
    scratch: Vec<u8>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl<W: StreamWriter> BlockWriter<W> {
    /// Compresses (if it pays), appends the trailer and writes one block.
    async fn write_block(
        &mut self,
        contents: &[u8],
        compression: Compression,
    ) -> Result<BlockHandle> {
        let offset = self.writer.position();
        let mut ty = TYPE_NONE;
        if compression != Compression::None && self.compress(contents, compression)? {
            // Keep the block raw unless compression saves at least 1/8 of it.
            let limit = contents.len() - contents.len() / config::MIN_COMPRESSION_SAVING_DIVISOR;
            if self.scratch.len() <= limit {
                ty = compression.type_byte();
            }
        }
        let payload: &[u8] = if ty == TYPE_NONE {
            contents
        } else {
            &self.scratch
        };
        let crc = codec::crc32c_pair(payload, &[ty]);
        let mut trailer = Vec::with_capacity(BLOCK_TRAILER_BYTES);
        codec::put_u8(&mut trailer, ty);
        codec::put_u32(&mut trailer, crc);
        self.writer.write(payload).await?;
        self.writer.write(&trailer).await?;
        Ok(BlockHandle {
            offset,
            size: payload.len() as u64,
        })
    }

    /// Compresses `contents` into `scratch` as `u32 LE uncompressed size | compressed`.
    /// Returns false if the compressor failed (the block is then stored raw).
    fn compress(&mut self, contents: &[u8], compression: Compression) -> Result<bool> {
        let s = &mut self.scratch;
        s.clear();
        codec::put_u32(s, contents.len() as u32);
        match compression {
            Compression::None => Ok(false),
            Compression::Lz4 => {
                s.resize(
                    4 + lz4_flex::block::get_maximum_output_size(contents.len()),
                    0,
                );
                match lz4_flex::block::compress_into(contents, &mut s[4..]) {
                    Ok(n) => {
                        s.truncate(4 + n);
                        Ok(true)
                    }
                    Err(_) => Ok(false),
                }
            }
            Compression::Zstd(level) => {
                if self.zstd.is_none() {
                    let c = zstd::bulk::Compressor::new(level)
                        .map_err(|e| Error::io(self.writer.path(), e))?;
                    self.zstd = Some(c);
                }
                let Some(z) = self.zstd.as_mut() else {
                    return Ok(false);
                };
                s.resize(4 + zstd::zstd_safe::compress_bound(contents.len()), 0);
                match z.compress_to_buffer(contents, &mut s[4..]) {
                    Ok(n) => {
                        s.truncate(4 + n);
                        Ok(true)
                    }
                    Err(_) => Ok(false),
                }
            }
        }
    }
}

/// Builds one SSTable from internal keys added in strictly increasing order.
pub struct TableBuilder<W: StreamWriter> {
    out: BlockWriter<W>,
    opts: TableOptions,
    data: BlockBuilder,
    index: BlockBuilder,
    /// Hashes of the distinct user keys, for the filter built at `finish`.
    hashes: Vec<u64>,
    last_key: Vec<u8>,
    /// Handle of the last flushed data block, whose index entry waits for the next key
    /// so that a short separator can be chosen.
    pending: Option<BlockHandle>,
    props: TableProperties,
    sep: Vec<u8>,
    handle_buf: Vec<u8>,
}

impl<W: StreamWriter> TableBuilder<W> {
    pub fn new(writer: W, opts: TableOptions) -> Self {
        let mut opts = opts;
        opts.block_bytes = opts.block_bytes.clamp(64, config::MAX_BLOCK_BYTES / 2);
        opts.restart_interval = opts.restart_interval.max(1);
        TableBuilder {
            out: BlockWriter {
                writer,
                scratch: Vec::new(),
                zstd: None,
            },
            opts,
            data: BlockBuilder::new(opts.restart_interval),
            index: BlockBuilder::new(config::INDEX_RESTART_INTERVAL),
            hashes: Vec::new(),
            last_key: Vec::new(),
            pending: None,
            props: TableProperties {
                compression: opts.compression,
                ..TableProperties::default()
            },
            sep: Vec::new(),
            handle_buf: Vec::new(),
        }
    }

    /// Adds an entry. Panics (in release builds too) if `ikey` is not strictly greater
    /// than the previous key by [`keys::cmp_internal`]: an out-of-order table would
    /// silently lose data, so this is a bug to stop at, not an input error.
    pub async fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        if ikey.len() < keys::TS_BYTES || ikey.len() > config::MAX_KEY_BYTES + keys::TS_BYTES {
            return Err(Error::InvalidArgument(format!(
                "internal key of {} bytes is out of range",
                ikey.len()
            )));
        }
        // Header varints take at most 30 bytes; one entry must fit a block on its own.
        let entry_bytes = ikey.len() + value.len() + 30;
        if entry_bytes + 8 > config::MAX_BLOCK_BYTES - self.opts.block_bytes {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes is too large for a table block",
                value.len()
            )));
        }
        assert!(
            self.props.num_entries == 0
                || keys::cmp_internal(ikey, &self.last_key) == Ordering::Greater,
            "TableBuilder::add: keys must be strictly increasing"
        );
        if let Some(handle) = self.pending.take() {
            shortest_separator(&mut self.sep, &self.last_key, ikey);
            self.handle_buf.clear();
            handle.encode_to(&mut self.handle_buf);
            self.index.add(&self.sep, &self.handle_buf);
        }
        let uk = keys::user_key(ikey);
        if self.opts.bloom_bits_per_key > 0
            && (self.props.num_entries == 0 || uk != keys::user_key(&self.last_key))
        {
            self.hashes.push(bloom::key_hash(uk));
        }
        let p = &mut self.props;
        let ts = keys::timestamp(ikey);
        if p.num_entries == 0 {
            p.smallest_key = ikey.to_vec();
            p.min_ts = ts;
            p.max_ts = ts;
        } else {
            p.min_ts = p.min_ts.min(ts);
            p.max_ts = p.max_ts.max(ts);
        }
        p.num_entries += 1;
        if value.first() == Some(&(keys::ValueKind::Delete as u8)) {
            p.num_deletions += 1;
        }
        p.raw_key_bytes += ikey.len() as u64;
        p.raw_value_bytes += value.len() as u64;
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);
        self.data.add(ikey, value);
        if self.data.size_estimate() >= self.opts.block_bytes {
            self.flush_data().await?;
        }
        Ok(())
    }

    /// Bytes written so far plus what the open blocks and the filter will add.
    pub fn estimated_file_size(&self) -> u64 {
        let filter = self.hashes.len() * self.opts.bloom_bits_per_key / 8;
        self.out.writer.position()
            + (self.data.size_estimate() + self.index.size_estimate() + filter + FOOTER_BYTES)
                as u64
    }

    /// Entries added so far.
    pub fn num_entries(&self) -> u64 {
        self.props.num_entries
    }

    async fn flush_data(&mut self) -> Result<()> {
        if self.data.is_empty() {
            return Ok(());
        }
        let handle = self
            .out
            .write_block(self.data.finish(), self.opts.compression)
            .await?;
        self.data.reset();
        self.props.num_data_blocks += 1;
        self.pending = Some(handle);
        Ok(())
    }

    /// Writes the remaining blocks and the footer, syncs and closes the file.
    pub async fn finish(mut self) -> Result<TableProperties> {
        self.flush_data().await?;
        if let Some(handle) = self.pending.take() {
            // The last block's index key is its last key: no successor is needed.
            self.handle_buf.clear();
            handle.encode_to(&mut self.handle_buf);
            self.index.add(&self.last_key, &self.handle_buf);
        }
        let data_end = self.out.writer.position();
        let filter_handle = if self.opts.bloom_bits_per_key > 0 {
            let filter = bloom::build_filter(&self.hashes, self.opts.bloom_bits_per_key);
            self.out.write_block(&filter, Compression::None).await?
        } else {
            // Offset and size 0: no filter.
            BlockHandle::default()
        };
        let index_bytes = self.index.finish();
        let mut props = std::mem::take(&mut self.props);
        props.largest_key = self.last_key.clone();
        props.data_size = data_end;
        props.filter_size = if filter_handle.size > 0 {
            filter_handle.physical_size()
        } else {
            0
        };
        props.index_size = (index_bytes.len() + BLOCK_TRAILER_BYTES) as u64;
        let props_handle = self
            .out
            .write_block(&props.encode(), Compression::None)
            .await?;
        let index_handle = self
            .out
            .write_block(self.index.finish(), Compression::None)
            .await?;
        let footer = encode_footer(&filter_handle, &props_handle, &index_handle);
        self.out.writer.write(&footer).await?;
        props.file_size = self.out.writer.finish().await?;
        Ok(props)
    }
}

/// Sets `out` to a key `s` with `a <= s < b` (by `cmp_internal`) that is as short as
/// cheaply possible, so index blocks hold short keys. Falls back to `a`.
fn shortest_separator(out: &mut Vec<u8>, a: &[u8], b: &[u8]) {
    out.clear();
    let (ua, ub) = (keys::user_key(a), keys::user_key(b));
    if ua < ub {
        let p = ua.iter().zip(ub).take_while(|(x, y)| x == y).count();
        // ua < ub and p < len(ua) imply ub[p] exists and ua[p] < ub[p]. Any s that
        // keeps ua[..p], and then is larger than ua at some position i but still
        // smaller than ub (below ub[p] at p, or equal to ua[p] < ub[p] there), lies
        // strictly between them: increment ua[p] if that stays below ub[p], else the
        // first later byte of ua that can be incremented.
        let at = match (ua.get(p), ub.get(p)) {
            (Some(&ca), Some(&cb)) if ca < 0xff && ca + 1 < cb => Some(p),
            (Some(_), Some(_)) => (p + 1..ua.len()).find(|&i| ua[i] < 0xff),
            _ => None,
        };
        // Only worth it if the separator is shorter than `a`.
        if let Some(i) = at.filter(|&i| i + 1 + keys::TS_BYTES < a.len()) {
            out.extend_from_slice(&ua[..i]);
            out.push(ua[i] + 1);
            // The newest timestamp makes this the smallest internal key of s.
            out.extend_from_slice(&(u64::MAX - keys::MAX_TS).to_be_bytes());
            return;
        }
    }
    out.extend_from_slice(a);
}

fn encode_footer(filter: &BlockHandle, props: &BlockHandle, index: &BlockHandle) -> Vec<u8> {
    let mut f = Vec::with_capacity(FOOTER_BYTES);
    for h in [filter, props, index] {
        codec::put_u64(&mut f, h.offset);
        codec::put_u64(&mut f, h.size);
    }
    codec::put_u32(&mut f, FORMAT_VERSION);
    let crc = codec::crc32c(&f);
    codec::put_u32(&mut f, crc);
    codec::put_u64(&mut f, TABLE_MAGIC);
    f
}

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

/// An open SSTable.
pub struct Table<R: ReadFile> {
    file: R,
    path: Rc<Path>,
    file_number: u64,
    cache: Rc<BlockCache<Block>>,
    index: Rc<Block>,
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
        if codec::read_u64_at(&footer, 56) != Some(TABLE_MAGIC) {
            return Err(corrupt(
                footer_offset,
                "bad magic number in footer (not an SSTable, or truncated)",
            ));
        }
        if codec::read_u32_at(&footer, 52) != Some(codec::crc32c(&footer[..52])) {
            return Err(corrupt(footer_offset, "footer checksum mismatch"));
        }
        let version = codec::read_u32_at(&footer, 48).unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(corrupt(
                footer_offset,
                &format!("unsupported format version {version}"),
            ));
        }
        let mut d = Decoder::new(&footer);
        let mut handles = [BlockHandle::default(); 3];
        for h in &mut handles {
            let offset = d
                .u64()
                .map_err(|_| corrupt(footer_offset, "short footer"))?;
            let size = d
                .u64()
                .map_err(|_| corrupt(footer_offset, "short footer"))?;
            *h = BlockHandle { offset, size };
        }
        let [filter_h, props_h, index_h] = handles;
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
        self.index.size() + self.filter.as_ref().map_or(0, BloomFilter::size)
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
    pub async fn get(&self, ikey_seek: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        bump(&self.stats.gets);
        let uk = keys::user_key(ikey_seek);
        if let Some(f) = &self.filter {
            bump(&self.stats.bloom_checks);
            if !f.may_contain(uk) {
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
            Some((it.key().to_vec(), it.value().to_vec()))
        } else {
            it.status()?;
            None
        };
        if found.is_none() && self.filter.is_some() {
            bump(&self.stats.bloom_false_positives);
        }
        self.put_scratch(it.into_key_buffer());
        Ok(found)
    }

    fn put_scratch(&self, buf: Vec<u8>) {
        *self.scratch.borrow_mut() = buf;
    }

    fn decode_handle(&self, v: &[u8]) -> Result<BlockHandle> {
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
        let charge = block.size();
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
            let charge = block.size();
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
fn dup_error(e: &Error) -> Error {
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

/// A bidirectional iterator over a whole table. It owns an `Rc` of the table and of
/// the current data block, so it stays valid while blocks leave the cache.
pub struct TableIter<R: ReadFile> {
    table: Rc<Table<R>>,
    index: BlockIter<Rc<Block>>,
    data: Option<BlockIter<Rc<Block>>>,
    /// Offset of the block `data` iterates, to skip reloading it on a nearby seek.
    data_offset: u64,
    err: Option<Error>,
    /// Forward block steps since the last seek; readahead starts after two.
    sequential: u32,
    /// File offset up to which blocks were read ahead.
    prefetched_until: u64,
    /// Size of the next readahead; doubles up to `ITER_READAHEAD_MAX_BYTES`.
    readahead: usize,
}

impl<R: ReadFile> TableIter<R> {
    /// An unpositioned iterator.
    pub fn new(table: Rc<Table<R>>) -> Self {
        let index = BlockIter::new(table.index.clone());
        TableIter {
            table,
            index,
            data: None,
            data_offset: u64::MAX,
            err: None,
            sequential: 0,
            prefetched_until: 0,
            readahead: config::ITER_READAHEAD_MIN_BYTES,
        }
    }

    pub fn valid(&self) -> bool {
        self.err.is_none() && self.data.as_ref().is_some_and(BlockIter::valid)
    }

    pub fn key(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], BlockIter::key)
    }

    pub fn value(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], BlockIter::value)
    }

    /// The first error met (I/O or corruption); the iterator is invalid after one.
    pub fn status(&self) -> Result<()> {
        match &self.err {
            Some(e) => Err(dup_error(e)),
            None => Ok(()),
        }
    }

    pub async fn seek_to_first(&mut self) {
        self.err = None;
        // A scan from the start (compaction, full scans) reads ahead at once.
        self.sequential = READAHEAD_AFTER_BLOCKS;
        self.index.seek_to_first();
        if let Some(d) = self.load_block().await {
            d.seek_to_first();
        }
        self.skip_forward().await;
    }

    pub async fn seek_to_last(&mut self) {
        self.err = None;
        self.sequential = 0;
        self.index.seek_to_last();
        if let Some(d) = self.load_block().await {
            d.seek_to_last();
        }
        self.skip_backward().await;
    }

    /// Positions at the first entry `>= target` by `cmp_internal`.
    pub async fn seek(&mut self, target: &[u8]) {
        self.err = None;
        self.sequential = 0;
        self.index.seek(target);
        if let Some(d) = self.load_block().await {
            d.seek(target);
        }
        self.skip_forward().await;
    }

    pub async fn next(&mut self) {
        if !self.valid() {
            return;
        }
        if let Some(d) = &mut self.data {
            d.next();
        }
        self.skip_forward().await;
    }

    pub async fn prev(&mut self) {
        if !self.valid() {
            return;
        }
        if let Some(d) = &mut self.data {
            d.prev();
        }
        self.skip_backward().await;
    }

    /// Reads the next `readahead` bytes of data blocks, from the block the index is
    /// on, in one I/O into the cache, unless an earlier readahead covered it.
    async fn read_ahead(&mut self) {
        if !self.index.valid() {
            return;
        }
        let Ok(h) = self.table.decode_handle(self.index.value()) else {
            return;
        };
        if h.offset < self.prefetched_until {
            return;
        }
        let mut idx = BlockIter::new(self.table.index.clone());
        idx.seek(self.index.key());
        let mut handles = Vec::new();
        let mut bytes = 0u64;
        while idx.valid() && bytes < self.readahead as u64 {
            let Ok(h) = self.table.decode_handle(idx.value()) else {
                break;
            };
            bytes += h.physical_size();
            handles.push(h);
            idx.next();
        }
        if let Some(last) = handles.last() {
            self.prefetched_until = last.offset + last.physical_size();
        }
        // Errors surface on the normal read of the block that needs the bytes.
        let _ = self.table.prefetch(&handles).await;
        self.readahead = (self.readahead * 2).min(config::ITER_READAHEAD_MAX_BYTES);
    }

    /// Points `data` at the block the index iterator is on and returns it; `None`
    /// (with `data` cleared and maybe an error recorded) if there is none.
    async fn load_block(&mut self) -> Option<&mut BlockIter<Rc<Block>>> {
        if !self.index.valid() {
            if let Err(e) = self.index.status() {
                self.err = Some(e);
            }
            self.data = None;
            self.data_offset = u64::MAX;
            return None;
        }
        let handle = match self.table.decode_handle(self.index.value()) {
            Ok(h) => h,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        if self.data.is_none() || self.data_offset != handle.offset {
            match self.table.read_block(handle).await {
                Ok(b) => {
                    match &mut self.data {
                        Some(d) => d.reset(b),
                        None => self.data = Some(BlockIter::new(b)),
                    }
                    self.data_offset = handle.offset;
                }
                Err(e) => {
                    self.fail(e);
                    return None;
                }
            }
        }
        self.data.as_mut()
    }

    fn fail(&mut self, e: Error) {
        self.err = Some(e);
        self.data = None;
        self.data_offset = u64::MAX;
    }

    /// Returns true if `data` is positioned; records a block's corruption.
    fn data_ready(&mut self) -> Option<bool> {
        let d = self.data.as_ref()?;
        if d.valid() {
            return Some(true);
        }
        if let Err(e) = d.status() {
            self.fail(e);
            return None;
        }
        Some(false)
    }

    /// Moves to following blocks while the current one is exhausted.
    async fn skip_forward(&mut self) {
        while self.err.is_none() && self.data_ready() == Some(false) {
            self.index.next();
            self.sequential = self.sequential.saturating_add(1);
            if self.sequential >= READAHEAD_AFTER_BLOCKS {
                self.read_ahead().await;
            }
            match self.load_block().await {
                Some(d) => d.seek_to_first(),
                None => return,
            }
        }
    }

    /// Moves to preceding blocks while the current one is exhausted.
    async fn skip_backward(&mut self) {
        while self.err.is_none() && self.data_ready() == Some(false) {
            self.index.prev();
            match self.load_block().await {
                Some(d) => d.seek_to_last(),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::internal_key;

    fn sep(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        shortest_separator(&mut out, a, b);
        assert_ne!(keys::cmp_internal(a, &out), Ordering::Greater, "a > sep");
        assert_eq!(keys::cmp_internal(&out, b), Ordering::Less, "sep >= b");
        out
    }

    #[test]
    fn separators_lie_between_and_are_short() {
        let s = sep(
            &internal_key(b"00123xxxx", 5),
            &internal_key(b"00126xxxx", 5),
        );
        assert_eq!(keys::user_key(&s), b"00124");
        let s = sep(
            &internal_key(b"00147xxxx", 5),
            &internal_key(b"00150xxxx", 5),
        );
        assert_eq!(keys::user_key(&s), b"00148");
        let s = sep(&internal_key(b"ab\xff\xffzzz", 5), &internal_key(b"ac", 5));
        assert_eq!(keys::user_key(&s), b"ab\xff\xff{");
        // No room to shorten: the first key itself.
        let a = internal_key(b"ab", 5);
        assert_eq!(sep(&a, &internal_key(b"ab", 3)), a);
        assert_eq!(sep(&a, &internal_key(b"abc", 3)), a);
        assert_eq!(sep(&a, &internal_key(b"ac", 3)), a);
        let a = internal_key(b"a\xff\xff", 5);
        assert_eq!(sep(&a, &internal_key(b"b", 3)), a);
    }

    #[test]
    fn random_separators_are_ordered() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        for _ in 0..20_000 {
            let k = |rng: &mut rand::rngs::SmallRng| {
                let n = rng.gen_range(0..6);
                let uk: Vec<u8> = (0..n)
                    .map(|_| {
                        *[0u8, 1, 2, 0xfe, 0xff]
                            .get(rng.gen_range(0..5))
                            .unwrap_or(&0)
                    })
                    .collect();
                internal_key(&uk, rng.gen_range(0..3))
            };
            let (x, y) = (k(&mut rng), k(&mut rng));
            match keys::cmp_internal(&x, &y) {
                Ordering::Less => {
                    sep(&x, &y);
                }
                Ordering::Greater => {
                    sep(&y, &x);
                }
                Ordering::Equal => {}
            }
        }
    }
}
