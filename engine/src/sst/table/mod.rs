//! SSTable writer ([`TableBuilder`]) and reader ([`Table`], [`TableIter`]), one module
//! per job: `footer` (footer and properties block), `builder`, `reader`, `iter`.
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
//! open); data blocks go through the shared [`BlockCache`](crate::cache::BlockCache).

mod builder;
mod footer;
mod iter;
mod reader;

pub use builder::{TableBuilder, TableOptions};
pub use footer::TableProperties;
pub use iter::TableIter;
pub use reader::{Table, TableHit, TableStats};

use crate::codec::{self, Decoder};

/// Last 8 bytes of every table: "NXDBSST1" read as a little-endian u64.
pub const TABLE_MAGIC: u64 = 0x3154_5353_4244_584e;
/// Version of this layout, stored in the footer.
pub const FORMAT_VERSION: u32 = 1;
/// Compression type byte plus CRC-32C after every block payload.
pub const BLOCK_TRAILER_BYTES: usize = 5;
/// Three fixed-width handles (48), version (4), CRC (4), magic (8).
pub const FOOTER_BYTES: usize = 64;
/// Version byte at the start of the properties block.
pub const PROPERTIES_VERSION: u8 = 1;

/// Compression type bytes of the block trailer.
pub(super) const TYPE_NONE: u8 = 0;
pub(super) const TYPE_LZ4: u8 = 1;
pub(super) const TYPE_ZSTD: u8 = 2;

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
    pub(super) fn type_byte(self) -> u8 {
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
