//! The memtable's bump allocator.
//!
//! Owned by one memtable, hence by one shard's core. Memory is handed out in 8-byte
//! aligned pieces from chunks obtained from the global allocator; nothing is freed or
//! moved until the arena itself is dropped. That is the property the skip list builds
//! on: a pointer into the arena stays valid for the arena's whole life, so iterators can
//! keep reading while new entries are inserted.

use crate::config::{
    MEMTABLE_ARENA_HUGE_PAGE_BYTES, MEMTABLE_ARENA_MAX_CHUNK_BYTES, MEMTABLE_ARENA_MIN_CHUNK_BYTES,
};
use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

const _: () = assert!(MEMTABLE_ARENA_HUGE_PAGE_BYTES.is_power_of_two());

/// Alignment of every allocation: enough for the pointers and `u32`s of skip-list nodes.
pub(crate) const ARENA_ALIGN: usize = 8;

/// One block obtained from the global allocator; freed when dropped.
struct Chunk {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc(self.layout)` in `Arena::new_chunk` and is
        // freed exactly once, here. The arena drops its chunks only when it is dropped
        // itself, and nothing handed out by the arena outlives the arena (the memtable
        // ties every borrow to itself, and iterators hold an `Rc` to it).
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Bump allocator over growing chunks. Interior mutability (`Cell`/`RefCell`) because
/// the memtable inserts through `&self` while readers hold shared borrows; the raw
/// pointers and cells keep the type `!Send + !Sync`, as everything the shard owns.
pub(crate) struct Arena {
    /// Next free byte of the current chunk (dangling when there is none yet).
    cursor: Cell<*mut u8>,
    /// Free bytes left at `cursor`.
    remaining: Cell<usize>,
    /// Size of the next regular chunk; doubles up to the maximum.
    next_chunk_bytes: Cell<usize>,
    /// Bytes handed out, alignment padding included.
    used: Cell<usize>,
    /// Bytes obtained from the global allocator.
    allocated: Cell<usize>,
    /// Every chunk, kept only to free them on drop. Touched only when a chunk is added.
    chunks: RefCell<Vec<Chunk>>,
}

impl Arena {
    pub(crate) fn new() -> Self {
        Arena {
            cursor: Cell::new(std::ptr::null_mut()),
            remaining: Cell::new(0),
            next_chunk_bytes: Cell::new(MEMTABLE_ARENA_MIN_CHUNK_BYTES),
            used: Cell::new(0),
            allocated: Cell::new(0),
            chunks: RefCell::new(Vec::new()),
        }
    }

    /// Bytes handed out so far (what the memtable holds, padding included).
    #[inline]
    pub(crate) fn used_bytes(&self) -> usize {
        self.used.get()
    }

    /// Bytes taken from the global allocator (used bytes plus chunk tails not yet used
    /// or abandoned).
    #[inline]
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.allocated.get()
    }

    /// Returns `size` bytes (rounded up to [`ARENA_ALIGN`]), uninitialized and aligned to
    /// [`ARENA_ALIGN`], valid until the arena is dropped (zero is served as one unit). `None` only if `size` is too
    /// large to describe as a `Layout`; the caller bounds sizes far below that.
    #[inline]
    pub(crate) fn alloc(&self, size: usize) -> Option<NonNull<u8>> {
        // At least one unit, so every allocation is a distinct, non-null pointer.
        let size = size.max(1).checked_add(ARENA_ALIGN - 1)? & !(ARENA_ALIGN - 1);
        if size <= self.remaining.get() {
            let p = self.cursor.get();
            // SAFETY: `size <= remaining`, so `p + size` stays inside the current chunk
            // (or one past its end), which is a single live allocation.
            self.cursor.set(unsafe { p.add(size) });
            self.remaining.set(self.remaining.get() - size);
            self.used.set(self.used.get() + size);
            // `p` is non-null: `remaining > 0` only once a chunk was installed.
            return NonNull::new(p);
        }
        self.alloc_slow(size)
    }

    #[cold]
    fn alloc_slow(&self, size: usize) -> Option<NonNull<u8>> {
        if size > MEMTABLE_ARENA_MAX_CHUNK_BYTES / 4 {
            // A big entry gets its own chunk, and the current chunk keeps its free tail
            // for the small entries that follow.
            let p = self.new_chunk(size)?;
            self.used.set(self.used.get() + size);
            return Some(p);
        }
        // Abandon the current chunk's tail (less than a quarter of a chunk at most once
        // chunks are full-size) and start a new one.
        let chunk_bytes = self.next_chunk_bytes.get().max(size);
        self.next_chunk_bytes
            .set((chunk_bytes * 2).min(MEMTABLE_ARENA_MAX_CHUNK_BYTES));
        let p = self.new_chunk(chunk_bytes)?;
        // SAFETY: the chunk is `chunk_bytes >= size` long, so `p + size` is in bounds.
        self.cursor.set(unsafe { p.as_ptr().add(size) });
        self.remaining.set(chunk_bytes - size);
        self.used.set(self.used.get() + size);
        Some(p)
    }

    fn new_chunk(&self, bytes: usize) -> Option<NonNull<u8>> {
        let huge = bytes & (MEMTABLE_ARENA_HUGE_PAGE_BYTES - 1) == 0;
        let align = if huge {
            MEMTABLE_ARENA_HUGE_PAGE_BYTES
        } else {
            ARENA_ALIGN
        };
        let layout = Layout::from_size_align(bytes, align).ok()?;
        // SAFETY: `bytes > 0` (every caller asks for at least one aligned unit).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        if huge {
            advise_huge_pages(ptr, bytes);
        }
        self.chunks.borrow_mut().push(Chunk { ptr, layout });
        self.allocated.set(self.allocated.get() + bytes);
        Some(ptr)
    }
}

/// Asks the kernel to back a huge-page-aligned chunk with transparent huge pages. Only
/// advice: failure (or a kernel with THP off) just leaves normal pages.
// Miri cannot call madvise; under it the advice is skipped (scripts/miri).
#[cfg(all(target_os = "linux", not(miri)))]
fn advise_huge_pages(ptr: NonNull<u8>, bytes: usize) {
    // SAFETY: the range is exactly one live allocation of ours, aligned to the huge page
    // size; MADV_HUGEPAGE changes no contents and cannot invalidate the memory.
    unsafe {
        libc::madvise(ptr.as_ptr().cast(), bytes, libc::MADV_HUGEPAGE);
    }
}

#[cfg(any(not(target_os = "linux"), miri))]
fn advise_huge_pages(_ptr: NonNull<u8>, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_disjoint_and_accounted() {
        let a = Arena::new();
        let mut seen: Vec<(usize, usize)> = Vec::new();
        for size in [1usize, 7, 8, 9, 100, 4000, 5000, 300_000, 3, 2 << 20] {
            let p = a.alloc(size).unwrap().as_ptr() as usize;
            assert_eq!(p % ARENA_ALIGN, 0);
            for &(q, n) in &seen {
                assert!(p + size <= q || q + n <= p, "overlap");
            }
            seen.push((p, size));
        }
        let rounded: usize = seen.iter().map(|&(_, n)| n.div_ceil(8) * 8).sum();
        assert_eq!(a.used_bytes(), rounded);
        assert!(a.allocated_bytes() >= a.used_bytes());
    }

    #[test]
    fn chunks_grow_geometrically() {
        let a = Arena::new();
        a.alloc(8).unwrap();
        assert_eq!(a.allocated_bytes(), MEMTABLE_ARENA_MIN_CHUNK_BYTES);
        // Fill a few chunks with small pieces: chunk sizes double, capped at the maximum.
        for _ in 0..100_000 {
            a.alloc(64).unwrap();
        }
        assert!(a.allocated_bytes() < a.used_bytes() + 2 * MEMTABLE_ARENA_MAX_CHUNK_BYTES);
    }
}
