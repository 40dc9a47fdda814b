//! An arena-backed skip list over byte keys, ordered by a caller-supplied predicate.
//!
//! Owned by one memtable, hence by one shard's core, and single-threaded: there are no
//! atomics, and inserts take `&self` (all mutation goes through raw pointers into the
//! arena) so that readers holding `&[u8]` borrows or positions keep working while
//! the owner inserts, as in LevelDB's memtable.
//!
//! Node layout in the arena (see `docs/memtable.md`):
//!
//! ```text
//!   [next[h-1]] ... [next[1]] [next[0]] | value_ptr | value_len | key_len+height | key | value
//!   <------- h * 8 bytes ------------->  ^ the node pointer points here (16-byte header)
//! ```
//!
//! The tower sits *before* the header so the key is at a fixed offset from the node
//! pointer. Invariants the `unsafe` code relies on:
//! 1. Every node pointer handed out points at a header written completely before the
//!    node was linked, inside an arena chunk that lives as long as the list.
//! 2. A node's key bytes are never written after linking. Value bytes are never written
//!    after linking either: replacing a value allocates new bytes and swings `value_ptr`,
//!    so slices to the old value stay valid.
//! 3. `next[level]` is read only for `level < height` of that node; the search reaches a
//!    node at level `i` only through a link at level `i`, which exists only if the
//!    node's height exceeds `i`. The head node has the maximum height.

use super::arena::Arena;
use crate::config::{
    MAX_INTERNAL_KEY_BYTES, MEMTABLE_BRANCHING, MEMTABLE_MAX_HEIGHT, MEMTABLE_RNG_SEED,
};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

const _: () = assert!(MEMTABLE_BRANCHING.is_power_of_two() && MEMTABLE_BRANCHING >= 2);
const _: () = assert!(MEMTABLE_MAX_HEIGHT >= 1 && MEMTABLE_MAX_HEIGHT < 16);
const _: () = assert!(MAX_INTERNAL_KEY_BYTES < KEY_LEN_MASK as usize);

/// Fixed part of a node. Fields are only read and written through raw pointers, never
/// through references, so writes never conflict with outstanding borrows of the bytes
/// that follow.
#[repr(C)]
pub(crate) struct NodeHeader {
    /// The current value (inline after the key at first; elsewhere in the arena after
    /// a replacement).
    value_ptr: *const u8,
    value_len: u32,
    /// Key length in the low 28 bits, tower height in the high 4.
    key_len_height: u32,
}

const HEADER_BYTES: usize = size_of::<NodeHeader>();
const LINK_BYTES: usize = size_of::<*mut NodeHeader>();
const KEY_LEN_MASK: u32 = (1 << 28) - 1;
const HEIGHT_SHIFT: u32 = 28;

/// Raw position of a node; meaningful only together with the list that made it.
pub(crate) type RawNode = NonNull<NodeHeader>;

/// A node of a live list. Only the list creates these, from valid node pointers, and the
/// lifetime ties them to the list (and thus to its arena), which makes the accessors safe.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Node<'a> {
    ptr: RawNode,
    _list: PhantomData<&'a SkipList>,
}

impl<'a> Node<'a> {
    #[inline]
    fn height(self) -> usize {
        // SAFETY: invariant 1: `ptr` points at a fully written header.
        let packed = unsafe { (*self.ptr.as_ptr()).key_len_height };
        (packed >> HEIGHT_SHIFT) as usize
    }

    #[inline]
    fn link_slot(self, level: usize) -> *mut *mut NodeHeader {
        debug_assert!(level < self.height());
        // SAFETY: invariant 3: `level < height`, and the tower of `height` links lies
        // directly below the header in the same arena allocation.
        unsafe { self.ptr.as_ptr().cast::<*mut NodeHeader>().sub(level + 1) }
    }

    /// The successor at `level` (which must be below this node's height).
    #[inline]
    fn next(self, level: usize) -> Option<Node<'a>> {
        // SAFETY: the slot is in bounds (see `link_slot`) and was initialized before the
        // node was linked; it holds null or a valid node pointer (invariant 1).
        let p = unsafe { self.link_slot(level).read() };
        NonNull::new(p).map(|ptr| Node {
            ptr,
            _list: PhantomData,
        })
    }

    #[inline]
    fn set_next(self, level: usize, to: *mut NodeHeader) {
        // SAFETY: the slot is in bounds (see `link_slot`); no reference to it exists.
        unsafe { self.link_slot(level).write(to) }
    }

    /// The successor in key order.
    #[inline]
    pub(crate) fn next0(self) -> Option<Node<'a>> {
        self.next(0)
    }

    /// The internal key; immutable for the list's life (invariant 2).
    #[inline]
    pub(crate) fn key(self) -> &'a [u8] {
        let h = self.ptr.as_ptr();
        // SAFETY: invariants 1 and 2: `key_len` bytes of key follow the header in the
        // same allocation, initialized before linking and never written again.
        unsafe {
            let len = ((*h).key_len_height & KEY_LEN_MASK) as usize;
            std::slice::from_raw_parts(h.cast::<u8>().add(HEADER_BYTES), len)
        }
    }

    /// The current stored value. Later replacements do not change the returned slice.
    #[inline]
    pub(crate) fn value(self) -> &'a [u8] {
        let h = self.ptr.as_ptr();
        // SAFETY: invariant 2: `value_ptr`/`value_len` describe initialized arena bytes
        // that are never written again (replacement writes new bytes elsewhere).
        unsafe { std::slice::from_raw_parts((*h).value_ptr, (*h).value_len as usize) }
    }

    #[inline]
    pub(crate) fn raw(self) -> RawNode {
        self.ptr
    }
}

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// Key or value length does not fit the node format (callers check the engine's
    /// limits first; this is the list protecting its own encoding).
    TooLarge,
}

pub(crate) struct SkipList {
    /// Owns the memory of every node. Declared before nothing else that points into it
    /// needs dropping: nodes have no destructors.
    arena: Arena,
    head: RawNode,
    /// Current height of the list (levels in use at the head).
    height: Cell<usize>,
    /// xorshift64* state for tower heights; deterministic (fixed seed).
    rng: Cell<u64>,
}

impl SkipList {
    pub(crate) fn new() -> Self {
        let arena = Arena::new();
        let head = Self::alloc_node(&arena, MEMTABLE_MAX_HEIGHT, &[], &[])
            .unwrap_or_else(|| unreachable!("the empty head node always fits"));
        SkipList {
            arena,
            head,
            height: Cell::new(1),
            rng: Cell::new(MEMTABLE_RNG_SEED | 1),
        }
    }

    #[inline]
    fn head(&self) -> Node<'_> {
        Node {
            ptr: self.head,
            _list: PhantomData,
        }
    }

    /// Rebuilds a node from a position saved earlier.
    ///
    /// # Safety
    /// `raw` must have come from [`Node::raw`] on a node of this very list.
    #[inline]
    pub(crate) unsafe fn node(&self, raw: RawNode) -> Node<'_> {
        Node {
            ptr: raw,
            _list: PhantomData,
        }
    }

    pub(crate) fn arena_used_bytes(&self) -> usize {
        self.arena.used_bytes()
    }

    pub(crate) fn arena_allocated_bytes(&self) -> usize {
        self.arena.allocated_bytes()
    }

    /// Allocates and fills a node (tower links null); not yet linked.
    fn alloc_node(arena: &Arena, height: usize, key: &[u8], value: &[u8]) -> Option<RawNode> {
        if key.len() > MAX_INTERNAL_KEY_BYTES {
            return None;
        }
        let value_len = u32::try_from(value.len()).ok()?;
        let size = (height * LINK_BYTES)
            .checked_add(HEADER_BYTES)?
            .checked_add(key.len())?
            .checked_add(value.len())?;
        let base = arena.alloc(size)?.as_ptr();
        // SAFETY: `base` is 8-aligned and `size` bytes long (arena guarantee), which
        // covers the tower, the header (8-aligned: the tower is a multiple of 8 bytes),
        // the key and the value; the memory is fresh, so nothing else refers to it.
        unsafe {
            let tower = base.cast::<*mut NodeHeader>();
            for i in 0..height {
                tower.add(i).write(ptr::null_mut());
            }
            let node = base.add(height * LINK_BYTES).cast::<NodeHeader>();
            let key_ptr = node.cast::<u8>().add(HEADER_BYTES);
            ptr::copy_nonoverlapping(key.as_ptr(), key_ptr, key.len());
            let value_ptr = key_ptr.add(key.len());
            ptr::copy_nonoverlapping(value.as_ptr(), value_ptr, value.len());
            node.write(NodeHeader {
                value_ptr,
                value_len,
                key_len_height: key.len() as u32 | ((height as u32) << HEIGHT_SHIFT),
            });
            NonNull::new(node)
        }
    }

    fn random_height(&self) -> usize {
        // xorshift64*: cheap, and its high bits are good enough for tower heights.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // Each further level needs log2(branching) more leading zero bits: probability
        // 1/branching per level.
        let extra = (r.leading_zeros() / MEMTABLE_BRANCHING.trailing_zeros()) as usize;
        1 + extra.min(MEMTABLE_MAX_HEIGHT - 1)
    }

    /// The last node for which `before(key)` holds (the head if none), where `before` is
    /// monotone: true for a prefix of the list, false after. Records the last such node
    /// per level into `prev` when given (what an insert splices after).
    #[inline]
    fn find_last_before<F: Fn(&[u8]) -> bool>(
        &self,
        before: F,
        mut prev: Option<&mut [RawNode; MEMTABLE_MAX_HEIGHT]>,
    ) -> Node<'_> {
        let mut x = self.head();
        let mut level = self.height.get() - 1;
        // The node last found not `before` at a higher level: meeting it again lower down
        // needs no second comparison.
        let mut known_after: Option<Node<'_>> = None;
        let mut next = x.next(level);
        loop {
            if let Some(n) = next.filter(|_| next != known_after) {
                // Read `n`'s link at this level before comparing its key: link and key
                // often sit on different cache lines, and issuing both loads together
                // overlaps the two misses (the search is bound by memory latency).
                let after_n = n.next(level);
                if before(n.key()) {
                    x = n;
                    next = after_n;
                    continue;
                }
            }
            known_after = next;
            if let Some(p) = prev.as_deref_mut() {
                p[level] = x.ptr;
            }
            if level == 0 {
                return x;
            }
            level -= 1;
            next = x.next(level);
        }
    }

    /// First node `n` with `!before(n.key())`.
    #[inline]
    pub(crate) fn seek<F: Fn(&[u8]) -> bool>(&self, before: F) -> Option<Node<'_>> {
        self.find_last_before(before, None).next(0)
    }

    /// Last node `n` with `before(n.key())`.
    #[inline]
    pub(crate) fn seek_last_before<F: Fn(&[u8]) -> bool>(&self, before: F) -> Option<Node<'_>> {
        let x = self.find_last_before(before, None);
        (x.ptr != self.head).then_some(x)
    }

    #[inline]
    pub(crate) fn first(&self) -> Option<Node<'_>> {
        self.head().next(0)
    }

    #[inline]
    pub(crate) fn last(&self) -> Option<Node<'_>> {
        self.seek_last_before(|_| true)
    }

    /// Inserts `key` with `value`, where `before(k)` must be "k sorts before `key`" and
    /// `equal(k)` "k equals `key`" under the list's order. If an equal key exists its
    /// value is replaced and the previous value returned (`Ok((node, Some(old)))`).
    /// Returns the node that now holds `key`.
    pub(crate) fn insert<B, E>(
        &self,
        key: &[u8],
        value: &[u8],
        before: B,
        equal: E,
    ) -> Result<(RawNode, Option<&[u8]>), InsertError>
    where
        B: Fn(&[u8]) -> bool,
        E: Fn(&[u8]) -> bool,
    {
        let mut prev = [self.head; MEMTABLE_MAX_HEIGHT];
        let found = self.find_last_before(before, Some(&mut prev)).next(0);
        if let Some(n) = found.filter(|n| equal(n.key())) {
            return self.replace_value(n, value).map(|old| (n.ptr, Some(old)));
        }
        let height = self.random_height();
        let node =
            Self::alloc_node(&self.arena, height, key, value).ok_or(InsertError::TooLarge)?;
        if height > self.height.get() {
            // `prev` already holds the head for levels the list does not use yet.
            self.height.set(height);
        }
        for (level, &p) in prev.iter().enumerate().take(height) {
            // SAFETY: `p` came from `find_last_before` on this list (or is the head).
            let p = unsafe { self.node(p) };
            let new = Node {
                ptr: node,
                _list: PhantomData,
            };
            new.set_next(
                level,
                p.next(level).map_or(ptr::null_mut(), |n| n.ptr.as_ptr()),
            );
            p.set_next(level, node.as_ptr());
        }
        Ok((node, None))
    }

    /// Points `n` at a fresh arena copy of `value`; returns the old value.
    fn replace_value<'a>(&'a self, n: Node<'a>, value: &[u8]) -> Result<&'a [u8], InsertError> {
        let old = n.value();
        let len = u32::try_from(value.len()).map_err(|_| InsertError::TooLarge)?;
        let dst = self
            .arena
            .alloc(value.len())
            .ok_or(InsertError::TooLarge)?
            .as_ptr();
        let h = n.ptr.as_ptr();
        // SAFETY: `dst` is fresh arena memory of at least `value.len()` bytes. The header
        // fields are written through the raw pointer (no reference to them exists);
        // slices to the old value remain valid, as its bytes are left untouched.
        unsafe {
            ptr::copy_nonoverlapping(value.as_ptr(), dst, value.len());
            (*h).value_ptr = dst;
            (*h).value_len = len;
        }
        Ok(old)
    }
}
