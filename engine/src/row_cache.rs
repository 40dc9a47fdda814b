//! The row cache of one shard: for hot keys, the newest version a table holds, so a
//! repeated point read skips that table's index search and block search.
//!
//! Entries are keyed by `(file number, user key)` and hold the newest version of the
//! key *in that file* (timestamp and stored value). Tables are immutable and file
//! numbers are never reused, so an entry can never go stale: a later write lives in
//! a memtable, which every read consults first; a flush or compaction writes new
//! files under new numbers, and the version a read walks decides which files it asks.
//! A read at a timestamp below the cached version's (a snapshot) simply goes to the
//! table. Entries of deleted tables are erased with the table's blocks.
//!
//! Admission: a key enters only on its second miss within a short window (a
//! direct-mapped table of recent key hashes, `config::ROW_CACHE_DOORKEEPER_SLOTS`),
//! so uniform reads over a large key space do not churn the cache for nothing
//! while hot keys enter at once.
//!
//! Ownership: the shard's core, like the block cache (`Rc`, `RefCell`, no locks).

use crate::cache::{BlockCache, CacheStats};
use crate::config;
use std::cell::RefCell;
use std::rc::Rc;

/// The newest version of one user key in one table.
pub struct RowEntry {
    user_key: Box<[u8]>,
    /// The version's timestamp.
    pub ts: u64,
    /// The stored value (kind byte, expiry, user value: `keys::decode_value`).
    pub value: Box<[u8]>,
}

/// Bytes an entry costs beyond its key and value (the entry and its boxes).
const ROW_ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<RowEntry>() + 16;

/// See the module documentation.
pub struct RowCache {
    /// Keyed by `(file number, filter hash of the user key)`; the entry's own user key
    /// settles hash collisions (a colliding key misses and replaces it on admission).
    entries: BlockCache<RowEntry>,
    doorkeeper: RefCell<Box<[u64]>>,
}

impl RowCache {
    /// A cache of at most `capacity_bytes` of entries.
    pub fn new(capacity_bytes: usize) -> Self {
        const { assert!(config::ROW_CACHE_DOORKEEPER_SLOTS > 0) };
        RowCache {
            entries: BlockCache::new(capacity_bytes),
            doorkeeper: RefCell::new(
                vec![0; config::ROW_CACHE_DOORKEEPER_SLOTS].into_boxed_slice(),
            ),
        }
    }

    /// The cached newest version of `user_key` (filter hash `hash`) in file `file`.
    pub fn get(&self, file: u64, user_key: &[u8], hash: u64) -> Option<Rc<RowEntry>> {
        self.entries
            .get((file, hash))
            .filter(|e| &*e.user_key == user_key)
    }

    /// Offers the newest version of `user_key` in file `file`, found by a table read;
    /// it is cached if the key missed recently too.
    pub fn offer(&self, file: u64, user_key: &[u8], hash: u64, ts: u64, value: &[u8]) {
        let slot_hash = hash ^ file.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        {
            let mut door = self.doorkeeper.borrow_mut();
            let n = door.len();
            let slot = &mut door[(slot_hash % n as u64) as usize];
            if *slot != slot_hash {
                *slot = slot_hash;
                return;
            }
        }
        let entry = RowEntry {
            user_key: user_key.into(),
            ts,
            value: value.into(),
        };
        let charge = user_key.len() + value.len() + ROW_ENTRY_OVERHEAD_BYTES;
        self.entries.insert((file, hash), Rc::new(entry), charge);
    }

    /// Drops every entry of a deleted table.
    pub fn erase_file(&self, file: u64) {
        self.entries.erase_file(file);
    }

    pub fn stats(&self) -> CacheStats {
        self.entries.stats()
    }

    /// Changes the byte budget (`BlockCache::set_capacity`: shrinking evicts at
    /// once; 0 keeps nothing).
    pub fn set_capacity(&self, capacity_bytes: usize) {
        self.entries.set_capacity(capacity_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_on_the_second_offer_and_checks_the_key() {
        let c = RowCache::new(1 << 20);
        c.offer(7, b"k", 42, 5, b"\x01v");
        assert!(
            c.get(7, b"k", 42).is_none(),
            "first offer only marks the key"
        );
        c.offer(7, b"k", 42, 5, b"\x01v");
        let e = c.get(7, b"k", 42).expect("second offer admits");
        assert_eq!((e.ts, &*e.value), (5, &b"\x01v"[..]));
        // Same hash, other key or other file: a miss.
        assert!(c.get(7, b"other", 42).is_none());
        assert!(c.get(8, b"k", 42).is_none());
        c.erase_file(7);
        assert!(c.get(7, b"k", 42).is_none());
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let c = RowCache::new(64 << 10);
        for i in 0..10_000u64 {
            let k = i.to_be_bytes();
            c.offer(1, &k, i, 1, &[1u8; 100]);
            c.offer(1, &k, i, 1, &[1u8; 100]);
        }
        let s = c.stats();
        assert!(s.bytes_used <= 64 << 10, "{s:?}");
        assert!(s.entries > 100, "{s:?}");
    }
}
