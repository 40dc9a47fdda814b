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
use std::cell::Cell;
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::rc::Rc;

/// One shard's memtable. See the module documentation.
pub struct MemTable {
    list: SkipList,
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
            entries: Cell::new(0),
            deletions: Cell::new(0),
            min_ts: Cell::new(u64::MAX),
            max_ts: Cell::new(0),
            _owned_by_core: PhantomData,
        }
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
        let replaced = self
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
        self.min_ts.set(self.min_ts.get().min(ts));
        self.max_ts.set(self.max_ts.get().max(ts));
        Ok(())
    }

    /// The newest version of `user_key` with timestamp `<= read_ts`: its timestamp and
    /// stored value (tombstones included; the caller interprets the `ValueKind`).
    pub fn get(&self, user_key: &[u8], read_ts: u64) -> Option<(u64, &[u8])> {
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

    /// Bytes of the arena in use (entries, links and replaced values, with padding):
    /// what the engine compares with `memtable_bytes` to decide rotation.
    #[inline]
    pub fn approximate_bytes(&self) -> usize {
        self.list.arena_used_bytes()
    }

    /// Bytes the arena took from the allocator (used bytes plus unused chunk tails):
    /// the memtable's real memory footprint.
    #[inline]
    pub fn allocated_bytes(&self) -> usize {
        self.list.arena_allocated_bytes()
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
