//! The memtable: the shard's in-memory write buffer, an arena-allocated skip list of
//! `(internal key, stored value)` entries ordered by [`keys::cmp_internal`] (user key
//! ascending, newest version first).
//!
//! Ownership: a memtable belongs to one shard's core. The engine inserts into it and
//! shares it as `Rc<MemTable>` with live iterators; the type is `!Send + !Sync`.
//! Entries are never moved or freed before the memtable is dropped, so an iterator (which
//! holds an `Rc`) stays valid while the engine keeps inserting, as in LevelDB. Memory is
//! reclaimed all at once when the last `Rc` goes, after the memtable has been flushed.
//!
//! Layout and invariants: `docs/memtable.md`.

mod arena;
mod skiplist;

#[cfg(test)]
mod tests;

use crate::config::{MAX_INTERNAL_KEY_BYTES, MAX_STORED_VALUE_BYTES};
use crate::keys::{self, TS_BYTES, ValueKind};
use crate::{Error, Result};
use skiplist::{InsertError, Node, RawNode, SkipList};
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::marker::PhantomData;
use std::rc::Rc;

/// Hasher for the index's keys, which are already keyed, well-mixed 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Where a user key's newest version is, for point reads.
#[derive(Clone, Copy)]
enum Slot {
    /// The node of the newest version of the only user key with this hash.
    Node(RawNode),
    /// Two user keys share the hash: search the list.
    Collision,
}

/// Bytes one index entry costs (key, slot, control byte, load factor), for sizing.
const INDEX_ENTRY_BYTES: usize = 32;

/// One shard's memtable. See the module documentation.
pub struct MemTable {
    list: SkipList,
    /// Point-lookup index: user-key hash → newest version. A skip-list search is a
    /// chain of cache misses (~20 at a million entries); this is one or two. Misses are
    /// answered without touching the list. Owned by the core, like everything here.
    index: RefCell<HashMap<u64, Slot, BuildHasherDefault<PreHashed>>>,
    /// Keys the index's hash of user keys: SipHash-1-3 under a key drawn from the OS
    /// per thread and stepped per memtable (std's `RandomState`). User keys come from
    /// clients, so an unkeyed hash (CRC-32C is linear: four chosen bytes force any
    /// value) would let them choose keys that all share one slot or one probe chain.
    /// SipHash is a keyed PRF: without the key, collisions cost ~2^64 tries. The
    /// block cache, whose keys no client chooses, uses a fast unkeyed hash instead.
    hasher: RandomState,
    /// Distinct internal keys held.
    entries: Cell<usize>,
    /// Entries whose current value is a tombstone.
    deletions: Cell<usize>,
    /// Smallest and largest timestamp inserted (`u64::MAX` / `0` while empty).
    min_ts: Cell<u64>,
    max_ts: Cell<u64>,
    /// Belongs to one core: never `Send` or `Sync`, whatever the fields become.
    _owned_by_core: PhantomData<*const ()>,
}

impl Default for MemTable {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTable")
            .field("entries", &self.len())
            .field("deletions", &self.num_deletions())
            .field("approximate_bytes", &self.approximate_bytes())
            .finish_non_exhaustive()
    }
}

#[inline]
fn is_tombstone(value: &[u8]) -> bool {
    value.first() == Some(&(ValueKind::Delete as u8))
}

impl MemTable {
    pub fn new() -> Self {
        MemTable {
            list: SkipList::new(),
            index: RefCell::new(HashMap::default()),
            hasher: RandomState::new(),
            entries: Cell::new(0),
            deletions: Cell::new(0),
            min_ts: Cell::new(u64::MAX),
            max_ts: Cell::new(0),
            _owned_by_core: PhantomData,
        }
    }

    /// Hash of a user key for the point-lookup index (keyed; see `hasher`).
    #[inline]
    fn key_hash(&self, user_key: &[u8]) -> u64 {
        self.hasher.hash_one(user_key)
    }

    /// Inserts `value` (a stored value: `ValueKind` byte first) under the internal key
    /// `ikey`. An equal internal key already present gets its value replaced (the later
    /// write of a batch wins); the old bytes stay in the arena until the memtable is
    /// dropped. Errors only for keys shorter than the timestamp suffix or keys and
    /// values beyond the engine's limits; nothing is inserted then.
    pub fn insert(&self, ikey: &[u8], value: &[u8]) -> Result<()> {
        if ikey.len() < TS_BYTES || ikey.len() > MAX_INTERNAL_KEY_BYTES {
            return Err(Error::InvalidArgument(format!(
                "memtable key of {} bytes: an internal key has {TS_BYTES}..={MAX_INTERNAL_KEY_BYTES}",
                ikey.len()
            )));
        }
        if value.len() > MAX_STORED_VALUE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "memtable value of {} bytes exceeds {MAX_STORED_VALUE_BYTES}",
                value.len()
            )));
        }
        let (node, replaced) = self
            .list
            .insert(
                ikey,
                value,
                |k| keys::cmp_internal(k, ikey) == Ordering::Less,
                |k| keys::cmp_internal(k, ikey) == Ordering::Equal,
            )
            .map_err(|InsertError::TooLarge| {
                Error::InvalidArgument("memtable entry too large".to_string())
            })?;
        let dead = is_tombstone(value);
        match replaced {
            None => {
                self.entries.set(self.entries.get() + 1);
                if dead {
                    self.deletions.set(self.deletions.get() + 1);
                }
            }
            Some(old) => match (is_tombstone(old), dead) {
                (false, true) => self.deletions.set(self.deletions.get() + 1),
                (true, false) => self.deletions.set(self.deletions.get() - 1),
                _ => {}
            },
        }
        let ts = keys::timestamp(ikey);
        let uk = keys::user_key(ikey);
        {
            let mut index = self.index.borrow_mut();
            let slot = index.entry(self.key_hash(uk)).or_insert(Slot::Node(node));
            if let Slot::Node(cur) = *slot {
                // SAFETY: `cur` came from this list's insert.
                let ck = unsafe { self.list.node(cur) }.key();
                if keys::user_key(ck) != uk {
                    *slot = Slot::Collision;
                } else if keys::timestamp(ck) < ts {
                    *slot = Slot::Node(node);
                }
            }
        }
        self.min_ts.set(self.min_ts.get().min(ts));
        self.max_ts.set(self.max_ts.get().max(ts));
        Ok(())
    }

    /// The newest version of `user_key` with timestamp `<= read_ts`: its timestamp and
    /// stored value (tombstones included; the caller interprets the `ValueKind`).
    pub fn get(&self, user_key: &[u8], read_ts: u64) -> Option<(u64, &[u8])> {
        let slot = self.index.borrow().get(&self.key_hash(user_key)).copied();
        match slot {
            None => return None,
            Some(Slot::Collision) => {}
            Some(Slot::Node(raw)) => {
                // Versions of one user key are adjacent, newest first: walk from the
                // newest to the first one the read may see.
                // SAFETY: `raw` came from this list's insert.
                let mut n = Some(unsafe { self.list.node(raw) });
                while let Some(node) = n {
                    let k = node.key();
                    if keys::user_key(k) != user_key {
                        return None;
                    }
                    let ts = keys::timestamp(k);
                    if ts <= read_ts {
                        return Some((ts, node.value()));
                    }
                    n = node.next0();
                }
                return None;
            }
        }
        // Seek to internal_key(user_key, read_ts) without building it: compare the node's
        // user key, then its suffix, exactly as `cmp_internal` would.
        let suffix = (u64::MAX - read_ts).to_be_bytes();
        let n = self.list.seek(|k| {
            let (uk, sk) = k.split_at(k.len().saturating_sub(TS_BYTES));
            match uk.cmp(user_key) {
                Ordering::Equal => sk < &suffix[..],
                o => o == Ordering::Less,
            }
        })?;
        let k = n.key();
        (keys::user_key(k) == user_key).then(|| (keys::timestamp(k), n.value()))
    }

    /// False only if the memtable holds no version of `user_key` (its index has no
    /// entry for the key's hash): one hash probe, no list search.
    pub fn may_contain_user_key(&self, user_key: &[u8]) -> bool {
        self.index.borrow().contains_key(&self.key_hash(user_key))
    }

    /// Bytes of the arena in use (entries, links and replaced values, with padding):
    /// what the engine compares with `memtable_bytes` to decide rotation.
    #[inline]
    pub fn approximate_bytes(&self) -> usize {
        self.list.arena_used_bytes() + self.index.borrow().capacity() * INDEX_ENTRY_BYTES
    }

    /// Bytes the arena took from the allocator (used bytes plus unused chunk tails):
    /// the memtable's real memory footprint.
    #[inline]
    pub fn allocated_bytes(&self) -> usize {
        self.list.arena_allocated_bytes() + self.index.borrow().capacity() * INDEX_ENTRY_BYTES
    }

    /// Number of distinct internal keys.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.get()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.get() == 0
    }

    /// Entries whose current value is a tombstone (`ValueKind::Delete`).
    #[inline]
    pub fn num_deletions(&self) -> usize {
        self.deletions.get()
    }

    /// Smallest timestamp inserted, `None` while empty.
    #[inline]
    pub fn min_ts(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.min_ts.get())
    }

    /// Largest timestamp inserted, `None` while empty.
    #[inline]
    pub fn max_ts(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.max_ts.get())
    }

    /// An unpositioned iterator sharing this memtable.
    pub fn iter(self: &Rc<Self>) -> MemIter {
        MemIter::new(Rc::clone(self))
    }
}

/// A cursor over a memtable in internal-key order. Holds an `Rc` to the memtable, so it
/// stays valid (and keeps its position) while the owner inserts: entries inserted after
/// the current position are seen by `next`, entries before it by `prev`.
///
/// Moving an invalid iterator (`next`/`prev`) leaves it invalid; `key`/`value` of an
/// invalid iterator are empty.
pub struct MemIter {
    table: Rc<MemTable>,
    /// Current node of `table.list`, `None` when not valid.
    node: Option<RawNode>,
}

impl std::fmt::Debug for MemIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemIter")
            .field("valid", &self.valid())
            .finish_non_exhaustive()
    }
}

impl MemIter {
    pub fn new(table: Rc<MemTable>) -> Self {
        MemIter { table, node: None }
    }

    /// The memtable this iterator reads.
    pub fn table(&self) -> &Rc<MemTable> {
        &self.table
    }

    #[inline]
    fn current(&self) -> Option<Node<'_>> {
        // SAFETY: `node` was saved by this iterator from a node of `self.table.list`, and
        // the `Rc` keeps that list (and its arena) alive.
        self.node.map(|raw| unsafe { self.table.list.node(raw) })
    }

    #[inline]
    pub fn valid(&self) -> bool {
        self.node.is_some()
    }

    /// Positions at the first entry `>= target` (an internal key).
    pub fn seek(&mut self, target: &[u8]) {
        self.node = self
            .table
            .list
            .seek(|k| keys::cmp_internal(k, target) == Ordering::Less)
            .map(Node::raw);
    }

    /// Positions at the last entry `<= target` (an internal key).
    pub fn seek_for_prev(&mut self, target: &[u8]) {
        self.node = self
            .table
            .list
            .seek_last_before(|k| keys::cmp_internal(k, target) != Ordering::Greater)
            .map(Node::raw);
    }

    pub fn seek_to_first(&mut self) {
        self.node = self.table.list.first().map(Node::raw);
    }

    pub fn seek_to_last(&mut self) {
        self.node = self.table.list.last().map(Node::raw);
    }

    #[inline]
    pub fn next(&mut self) {
        self.node = self.current().and_then(Node::next0).map(Node::raw);
    }

    /// Moves to the previous entry: a search for the last key below the current one,
    /// O(log n), as the list has no back links.
    pub fn prev(&mut self) {
        self.node = self.current().and_then(|cur| {
            let key = cur.key();
            self.table
                .list
                .seek_last_before(|k| keys::cmp_internal(k, key) == Ordering::Less)
                .map(Node::raw)
        });
    }

    /// The current internal key (empty when not valid).
    #[inline]
    pub fn key(&self) -> &[u8] {
        self.current().map_or(&[], Node::key)
    }

    /// The current stored value (empty when not valid).
    #[inline]
    pub fn value(&self) -> &[u8] {
        self.current().map_or(&[], Node::value)
    }
}
