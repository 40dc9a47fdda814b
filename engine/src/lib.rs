//! `nextdb-engine`: the storage engine of one shard.
//!
//! Ownership: every value in this crate is owned by exactly one core (one glommio
//! executor). Nothing here is `Send`; cores exchange data by messages in `nextdb-shard`.
//! The file system sits behind [`fs::FileSystem`] so the same engine runs on glommio
//! direct I/O in production and on the seeded, fault-injecting simulator in tests.

pub mod backup;
pub mod batch;
pub mod cache;
pub mod codec;
pub mod config;
pub mod db;
pub mod error;
pub mod fs;
pub mod iter;
pub mod keys;
pub mod log;
pub mod memtable;
pub mod row_cache;
pub mod runtime;
pub mod sst;
pub mod sync;
pub mod version;

pub use config::EngineConfig;
pub use error::{Error, Result};
