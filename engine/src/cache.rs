//! The block cache of one shard: decompressed blocks keyed by `(file_number, offset)`,
//! bounded by a byte budget, evicting the least recently used entry first.
//!
//! It is single-threaded on purpose (thread-per-core: each executor owns its cache), so
//! it uses `RefCell` and `Rc` instead of locks and atomics. Every operation is O(1)
//! except [`BlockCache::erase_file`], which is O(blocks of that file): entries live in
//! a slab of nodes linked into one LRU list and into one list per file, and a hash map
//! finds a node by key.
//!
//! Values are handed out as `Rc<V>`: evicting an entry only drops the cache's
//! reference, so a reader that still holds a block keeps it alive until it is done.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Cache key: the table's file number and the block's offset in that file. File numbers
/// are never reused by the engine, so a key always names the same bytes.
pub type CacheKey = (u64, u64);

/// Bookkeeping bytes charged per entry on top of the caller's charge (node, map slot),
/// so that a cache of many tiny blocks still respects its budget roughly.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Counters of one cache, copied out by [`BlockCache::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    /// Entries dropped to make room (not counting `erase_file` or replacements).
    pub evictions: u64,
    /// Bytes currently charged (caller charges plus per-entry overhead).
    pub bytes_used: usize,
    pub capacity: usize,
    pub entries: usize,
}

/// Sentinel index for "no node".
const NIL: u32 = u32::MAX;

struct Node<V> {
    key: CacheKey,
    value: Option<Rc<V>>,
    charge: usize,
    // LRU list: `prev` is towards the most recently used end.
    prev: u32,
    next: u32,
    // List of the nodes of one file, for `erase_file`.
    fprev: u32,
    fnext: u32,
}

/// A fast hasher for the two-u64 keys: file numbers and offsets are not attacker
/// controlled, so SipHash's DoS resistance buys nothing and costs a lot on the hot path.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // Final avalanche so that offsets (multiples of ~4 KiB) spread over all buckets.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type KeyMap = HashMap<CacheKey, u32, BuildHasherDefault<KeyHasher>>;
type FileMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

struct Inner<V> {
    map: KeyMap,
    /// Head of each file's node list.
    files: FileMap,
    nodes: Vec<Node<V>>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next victim.
    tail: u32,
    stats: CacheStats,
}

/// A byte-bounded LRU cache shared by the tasks of one executor through `Rc`.
pub struct BlockCache<V> {
    inner: RefCell<Inner<V>>,
}

impl<V> BlockCache<V> {
    /// A cache that keeps at most `capacity_bytes` of charged bytes.
    pub fn new(capacity_bytes: usize) -> Self {
        BlockCache {
            inner: RefCell::new(Inner {
                map: KeyMap::default(),
                files: FileMap::default(),
                nodes: Vec::new(),
                free: Vec::new(),
                head: NIL,
                tail: NIL,
                stats: CacheStats {
                    capacity: capacity_bytes,
                    ..CacheStats::default()
                },
            }),
        }
    }

    /// Looks up a block and marks it most recently used.
    pub fn get(&self, key: CacheKey) -> Option<Rc<V>> {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        match inner.map.get(&key).copied() {
            Some(idx) => {
                inner.stats.hits += 1;
                inner.unlink_lru(idx);
                inner.push_front(idx);
                inner.nodes[idx as usize].value.clone()
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    /// Inserts (or replaces) a block charged `charge` bytes, evicting least recently
    /// used blocks until the cache fits its budget. A block larger than the whole
    /// budget is not cached at all (the caller still has its `Rc`).
    pub fn insert(&self, key: CacheKey, value: Rc<V>, charge: usize) {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        let charge = charge.saturating_add(ENTRY_OVERHEAD_BYTES);
        if let Some(idx) = inner.map.get(&key).copied() {
            inner.remove_node(idx);
        }
        if charge > inner.stats.capacity {
            return;
        }
        while inner.stats.bytes_used + charge > inner.stats.capacity && inner.tail != NIL {
            let victim = inner.tail;
            inner.remove_node(victim);
            inner.stats.evictions += 1;
        }
        let idx = inner.alloc(Node {
            key,
            value: Some(value),
            charge,
            prev: NIL,
            next: NIL,
            fprev: NIL,
            fnext: NIL,
        });
        inner.map.insert(key, idx);
        inner.push_front(idx);
        inner.link_file(idx);
        inner.stats.bytes_used += charge;
        inner.stats.entries += 1;
        inner.stats.inserts += 1;
    }

    /// Drops every block of `file_number` (called when a table is deleted).
    pub fn erase_file(&self, file_number: u64) {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        while let Some(&idx) = inner.files.get(&file_number) {
            inner.remove_node(idx);
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        self.inner.borrow().stats
    }

    /// The byte budget.
    pub fn capacity(&self) -> usize {
        self.inner.borrow().stats.capacity
    }

    /// Changes the byte budget of a running cache (`admin config set`). Shrinking
    /// evicts least recently used blocks until the cache fits at once, so the budget
    /// holds from the moment this returns; growing keeps every entry.
    pub fn set_capacity(&self, capacity_bytes: usize) {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        inner.stats.capacity = capacity_bytes;
        while inner.stats.bytes_used > capacity_bytes && inner.tail != NIL {
            let victim = inner.tail;
            inner.remove_node(victim);
            inner.stats.evictions += 1;
        }
        assert!(inner.stats.bytes_used <= capacity_bytes);
    }
}

impl<V> Inner<V> {
    fn alloc(&mut self, node: Node<V>) -> u32 {
        match self.free.pop() {
            Some(idx) => {
                self.nodes[idx as usize] = node;
                idx
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn push_front(&mut self, idx: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[idx as usize];
            n.prev = NIL;
            n.next = old;
        }
        if old != NIL {
            self.nodes[old as usize].prev = idx;
        } else {
            self.tail = idx;
        }
        self.head = idx;
    }

    fn unlink_lru(&mut self, idx: u32) {
        let (p, n) = {
            let node = &self.nodes[idx as usize];
            (node.prev, node.next)
        };
        if p != NIL {
            self.nodes[p as usize].next = n;
        } else {
            self.head = n;
        }
        if n != NIL {
            self.nodes[n as usize].prev = p;
        } else {
            self.tail = p;
        }
    }

    fn link_file(&mut self, idx: u32) {
        let file = self.nodes[idx as usize].key.0;
        let old = self.files.insert(file, idx).unwrap_or(NIL);
        self.nodes[idx as usize].fnext = old;
        self.nodes[idx as usize].fprev = NIL;
        if old != NIL {
            self.nodes[old as usize].fprev = idx;
        }
    }

    fn unlink_file(&mut self, idx: u32) {
        let (file, p, n) = {
            let node = &self.nodes[idx as usize];
            (node.key.0, node.fprev, node.fnext)
        };
        if p != NIL {
            self.nodes[p as usize].fnext = n;
        } else if n != NIL {
            self.files.insert(file, n);
        } else {
            self.files.remove(&file);
        }
        if n != NIL {
            self.nodes[n as usize].fprev = p;
        }
    }

    /// Unlinks a node from both lists and the map and returns its slot to the free list.
    fn remove_node(&mut self, idx: u32) {
        self.unlink_lru(idx);
        self.unlink_file(idx);
        let node = &mut self.nodes[idx as usize];
        let key = node.key;
        let charge = node.charge;
        // Drop the value now so that the memory is released even if the slot stays free.
        node.value = None;
        self.map.remove(&key);
        self.free.push(idx);
        self.stats.bytes_used -= charge;
        self.stats.entries -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: usize = ENTRY_OVERHEAD_BYTES;

    #[test]
    fn hit_and_miss_accounting() {
        let c: BlockCache<u32> = BlockCache::new(10 * (100 + O));
        assert!(c.get((1, 0)).is_none());
        c.insert((1, 0), Rc::new(7), 100);
        assert_eq!(c.get((1, 0)).as_deref(), Some(&7));
        assert_eq!(c.get((1, 0)).as_deref(), Some(&7));
        assert!(c.get((1, 4096)).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.entries), (2, 2, 1, 1));
        assert_eq!(s.bytes_used, 100 + O);
        assert_eq!(s.capacity, 10 * (100 + O));
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let c: BlockCache<u64> = BlockCache::new(3 * (1000 + O));
        for i in 0..3 {
            c.insert((1, i), Rc::new(i), 1000);
        }
        // Touch 0 so 1 is the LRU victim.
        assert!(c.get((1, 0)).is_some());
        c.insert((1, 3), Rc::new(3), 1000);
        assert!(c.get((1, 1)).is_none());
        assert!(c.get((1, 0)).is_some());
        assert!(c.get((1, 2)).is_some());
        assert!(c.get((1, 3)).is_some());
        assert_eq!(c.stats().evictions, 1);
        // One big block pushes out as many as needed.
        c.insert((2, 0), Rc::new(99), 2500);
        let s = c.stats();
        assert!(s.bytes_used <= s.capacity);
        assert_eq!(s.entries, 1);
        assert!(c.get((2, 0)).is_some());
        // Larger than the whole budget: not cached, nothing evicted.
        c.insert((2, 1), Rc::new(1), 10_000);
        assert!(c.get((2, 1)).is_none());
        assert!(c.get((2, 0)).is_some());
    }

    #[test]
    fn replace_updates_charge() {
        let c: BlockCache<u8> = BlockCache::new(10_000);
        c.insert((1, 0), Rc::new(1), 100);
        c.insert((1, 0), Rc::new(2), 300);
        assert_eq!(c.get((1, 0)).as_deref(), Some(&2));
        let s = c.stats();
        assert_eq!(s.entries, 1);
        assert_eq!(s.bytes_used, 300 + O);
    }

    #[test]
    fn erase_file_drops_only_that_file() {
        let c: BlockCache<u64> = BlockCache::new(1 << 20);
        for f in 1..=3u64 {
            for off in 0..50u64 {
                c.insert((f, off * 4096), Rc::new(f * 1000 + off), 100);
            }
        }
        c.erase_file(2);
        assert_eq!(c.stats().entries, 100);
        for off in 0..50u64 {
            assert!(c.get((2, off * 4096)).is_none());
            assert_eq!(c.get((1, off * 4096)).as_deref(), Some(&(1000 + off)));
            assert_eq!(c.get((3, off * 4096)).as_deref(), Some(&(3000 + off)));
        }
        c.erase_file(1);
        c.erase_file(3);
        c.erase_file(42);
        let s = c.stats();
        assert_eq!((s.entries, s.bytes_used), (0, 0));
        // Slots are reused after erasure.
        c.insert((5, 0), Rc::new(5), 10);
        assert_eq!(c.get((5, 0)).as_deref(), Some(&5));
    }

    #[test]
    fn evicted_value_stays_alive_for_its_holder() {
        let c: BlockCache<Vec<u8>> = BlockCache::new(200 + O);
        c.insert((1, 0), Rc::new(vec![1; 10]), 200);
        let held = c.get((1, 0)).unwrap();
        c.insert((1, 1), Rc::new(vec![2; 10]), 200);
        assert!(c.get((1, 0)).is_none());
        assert_eq!(held.len(), 10);
    }

    #[test]
    fn shrinking_evicts_the_least_recently_used_down_to_the_new_budget() {
        let c: BlockCache<u64> = BlockCache::new(10 * (1000 + O));
        for i in 0..10 {
            c.insert((1, i), Rc::new(i), 1000);
        }
        // Touch the oldest so it survives the shrink.
        assert!(c.get((1, 0)).is_some());
        c.set_capacity(3 * (1000 + O));
        let s = c.stats();
        assert_eq!((s.entries, s.capacity), (3, 3 * (1000 + O)));
        assert!(s.bytes_used <= s.capacity);
        assert_eq!(s.evictions, 7);
        for i in [0, 8, 9] {
            assert!(
                c.get((1, i)).is_some(),
                "block {i} was among the most recent"
            );
        }
        // Later inserts respect the smaller budget.
        c.insert((2, 0), Rc::new(20), 1000);
        let s = c.stats();
        assert!(s.bytes_used <= s.capacity && s.entries == 3, "{s:?}");
    }

    #[test]
    fn growing_keeps_every_entry_and_admits_more() {
        let c: BlockCache<u64> = BlockCache::new(2 * (1000 + O));
        c.insert((1, 0), Rc::new(0), 1000);
        c.insert((1, 1), Rc::new(1), 1000);
        c.set_capacity(4 * (1000 + O));
        assert_eq!(c.stats().entries, 2);
        c.insert((1, 2), Rc::new(2), 1000);
        c.insert((1, 3), Rc::new(3), 1000);
        let s = c.stats();
        assert_eq!((s.entries, s.evictions), (4, 0));
        for i in 0..4 {
            assert_eq!(c.get((1, i)).as_deref(), Some(&i));
        }
        // A block larger than the old budget but within the new one is now cached.
        c.set_capacity(10_000 + O);
        c.insert((3, 0), Rc::new(30), 10_000);
        assert!(c.get((3, 0)).is_some());
        // Zero empties the cache and caches nothing more.
        c.set_capacity(0);
        c.insert((4, 0), Rc::new(40), 1);
        let s = c.stats();
        assert_eq!((s.entries, s.bytes_used), (0, 0));
    }

    #[test]
    fn random_ops_keep_invariants() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let cap = 50_000;
        let c: BlockCache<u64> = BlockCache::new(cap);
        let mut model: std::collections::HashMap<CacheKey, u64> = Default::default();
        for i in 0..20_000u64 {
            let key = (rng.gen_range(0..8u64), rng.gen_range(0..64u64));
            match rng.gen_range(0..10) {
                0..=4 => {
                    c.insert(key, Rc::new(i), rng.gen_range(0..2000));
                    model.insert(key, i);
                }
                5 => c.erase_file(key.0),
                _ => {
                    if let Some(v) = c.get(key) {
                        // Whatever is cached is the latest value inserted for the key.
                        assert_eq!(model.get(&key), Some(&*v));
                    }
                }
            }
            let s = c.stats();
            assert!(s.bytes_used <= cap);
        }
    }
}
