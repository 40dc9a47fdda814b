//! [`TableBuilder`]: writes a table from internal keys added in increasing order.

use super::footer::{TableProperties, encode_footer};
use super::{BLOCK_TRAILER_BYTES, BlockHandle, Compression, FOOTER_BYTES, TYPE_NONE};
use crate::codec;
use crate::config;
use crate::fs::StreamWriter;
use crate::keys;
use crate::sst::block::BlockBuilder;
use crate::sst::bloom;
use crate::{Error, Result};
use std::cmp::Ordering;

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
