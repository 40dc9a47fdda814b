//! The footer (last 64 bytes: three meta-block handles, format version, checksum,
//! magic) and the properties block, both encoded and decoded here.

use super::{
    BlockHandle, Compression, FOOTER_BYTES, FORMAT_VERSION, PROPERTIES_VERSION, TABLE_MAGIC,
    TYPE_LZ4, TYPE_NONE, TYPE_ZSTD,
};
use crate::codec::{self, Decoder};
use crate::{Error, Result};
use std::path::Path;

/// Facts about a table, written in its properties block and returned by
/// [`TableBuilder::finish`](super::TableBuilder::finish). Sizes are bytes on disk, trailers included.
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
    pub(super) fn encode(&self) -> Vec<u8> {
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
    pub(super) fn decode(buf: &[u8]) -> std::result::Result<TableProperties, &'static str> {
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

/// The footer naming the filter, properties and index blocks.
pub(super) fn encode_footer(
    filter: &BlockHandle,
    props: &BlockHandle,
    index: &BlockHandle,
) -> Vec<u8> {
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

/// Decodes and verifies the footer read at `footer_offset` of the table at `path`:
/// magic, checksum, version. Returns the (filter, properties, index) handles.
pub(super) fn decode_footer(
    footer: &[u8],
    path: &Path,
    footer_offset: u64,
) -> Result<[BlockHandle; 3]> {
    let corrupt = |why: &str| Error::corruption(path.to_path_buf(), footer_offset, why);
    if footer.len() != FOOTER_BYTES || codec::read_u64_at(footer, 56) != Some(TABLE_MAGIC) {
        return Err(corrupt(
            "bad magic number in footer (not an SSTable, or truncated)",
        ));
    }
    if codec::read_u32_at(footer, 52) != Some(codec::crc32c(&footer[..52])) {
        return Err(corrupt("footer checksum mismatch"));
    }
    let version = codec::read_u32_at(footer, 48).unwrap_or(0);
    if version != FORMAT_VERSION {
        return Err(corrupt(&format!("unsupported format version {version}")));
    }
    let mut d = Decoder::new(footer);
    let mut handles = [BlockHandle::default(); 3];
    for h in &mut handles {
        let offset = d.u64().map_err(|_| corrupt("short footer"))?;
        let size = d.u64().map_err(|_| corrupt("short footer"))?;
        *h = BlockHandle { offset, size };
    }
    Ok(handles)
}
