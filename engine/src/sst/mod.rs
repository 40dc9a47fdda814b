//! Sorted string tables: the immutable files of the LSM tree.
//!
//! - [`block`]: data and index blocks (prefix-compressed keys, restart points).
//! - [`bloom`]: the whole-table bloom filter over user keys.
//! - [`table`]: the file layout, split by job: footer and properties, [`TableBuilder`],
//!   [`Table`] (the reader) and [`TableIter`].
//!
//! The byte-level format is documented in `docs/formats.md`.

pub mod block;
pub mod bloom;
pub mod table;

#[cfg(test)]
mod tests;

pub use block::{Block, BlockBuilder, BlockIter};
pub use bloom::BloomFilter;
pub use table::{
    BlockHandle, Compression, Table, TableBuilder, TableHit, TableIter, TableOptions,
    TableProperties, TableStats,
};
