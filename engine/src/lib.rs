//! `nextdb-engine`: the storage engine of one shard.
//!
//! Ownership: every value in this crate is owned by exactly one core (one glommio
//! executor). Nothing here is `Send`; cores exchange data by messages in `nextdb-shard`.
//! The file system sits behind [`fs::FileSystem`] so the same engine runs on glommio
//! direct I/O in production and on the seeded, fault-injecting simulator in tests.

pub mod cache;
pub mod codec;
pub mod config;
pub mod error;
pub mod fs;
pub mod keys;
pub mod memtable;
pub mod sst;

pub use config::EngineConfig;
pub use error::{Error, Result};
