//! SSTable blocks: sorted entries with prefix-compressed keys and restart points.
//!
//! Layout of a decoded block (see `docs/formats.md`):
//!
//! ```text
//! entry*  restart[0..n] (u32 LE each)  n (u32 LE)
//! entry = varint shared | varint unshared | varint value_len | key[shared..] | value
//! ```
//!
//! Every `restart_interval`-th entry is a restart point: it stores its whole key
//! (`shared == 0`), and its offset is listed in the restart array, so a seek binary
//! searches the restart keys and then scans at most one interval. Keys are internal
//! keys and are ordered by [`keys::cmp_internal`]; prefix sharing itself is bytewise,
//! which is correct for any order.
//!
//! [`Block`] never panics on corrupt bytes: construction validates the restart array,
//! and the iterator checks every entry it decodes and reports a corruption through
//! [`BlockIter::status`].

use crate::codec::{self, DecodeError, Decoder};
use crate::keys;
use crate::{Error, Result};
use std::cmp::Ordering;
use std::ops::Deref;
use std::path::Path;
use std::rc::Rc;

/// Builds one block in memory.
#[derive(Debug)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    /// Entries since the last restart point.
    counter: usize,
    restart_interval: usize,
    last_key: Vec<u8>,
    entries: usize,
    finished: bool,
}

impl BlockBuilder {
    /// A builder with a restart point every `restart_interval` entries (at least 1).
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            counter: 0,
            restart_interval: restart_interval.max(1),
            last_key: Vec::new(),
            entries: 0,
            finished: false,
        }
    }

    /// Appends an entry. Keys must arrive in increasing order (the table builder checks
    /// it); the block itself only relies on it for seeks.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(!self.finished, "add after finish without reset");
        let shared = if self.entries > 0 && self.counter < self.restart_interval {
            common_prefix(&self.last_key, key)
        } else {
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
            0
        };
        let unshared = key.len() - shared;
        codec::put_varint(&mut self.buf, shared as u64);
        codec::put_varint(&mut self.buf, unshared as u64);
        codec::put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.counter += 1;
        self.entries += 1;
    }

    /// Size of the block if it were finished now.
    #[inline]
    pub fn size_estimate(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// Entries added since the last reset.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The key added last (empty when the block is empty).
    #[inline]
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the restart array and returns the finished block bytes. Call
    /// [`BlockBuilder::reset`] before adding again.
    pub fn finish(&mut self) -> &[u8] {
        if !self.finished {
            for &r in &self.restarts {
                codec::put_u32(&mut self.buf, r);
            }
            codec::put_u32(&mut self.buf, self.restarts.len() as u32);
            self.finished = true;
        }
        &self.buf
    }

    /// Empties the builder, keeping its allocations.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.counter = 0;
        self.last_key.clear();
        self.entries = 0;
        self.finished = false;
    }
}

/// The first 8 bytes of an internal key's user key, zero-padded, as a big-endian
/// integer: integers order like the byte strings wherever they differ.
#[inline]
fn user_key_prefix(ikey: &[u8]) -> u64 {
    let uk = keys::user_key(ikey);
    let mut a = [0u8; 8];
    let n = uk.len().min(8);
    a[..n].copy_from_slice(&uk[..n]);
    u64::from_be_bytes(a)
}

#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A decoded block (decompressed, checksum already verified by the table reader).
///
/// The restart keys are decoded once, when the block is parsed (on a cache miss, or
/// when a table opens for its pinned index): `restart_prefixes[i]` holds the first 8
/// bytes of restart key `i`'s user key and `restart_keys[i]` where its whole key
/// lies, so a seek's binary search compares integers in one contiguous array and
/// touches a key's bytes only when the prefixes tie.
pub struct Block {
    data: Vec<u8>,
    /// Offset of the restart array = end of the entries.
    restarts_off: usize,
    num_restarts: usize,
    restart_prefixes: Box<[u64]>,
    /// `(offset, length)` of each restart entry's key inside `data`.
    restart_keys: Box<[(u32, u32)]>,
    /// File and offset of the block, for corruption errors found while iterating.
    origin: Option<(Rc<Path>, u64)>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("bytes", &self.data.len())
            .field("restarts", &self.num_restarts)
            .finish()
    }
}

impl Block {
    /// Parses a block that came from nowhere in particular (tests, fuzzing); errors
    /// name the path `<block>` and the offset inside the block.
    pub fn new(data: Vec<u8>) -> Result<Block> {
        Self::parse(data, None)
    }

    /// Parses a block read from `path` at `file_offset`; errors name that spot.
    pub fn with_origin(data: Vec<u8>, path: Rc<Path>, file_offset: u64) -> Result<Block> {
        Self::parse(data, Some((path, file_offset)))
    }

    fn parse(data: Vec<u8>, origin: Option<(Rc<Path>, u64)>) -> Result<Block> {
        let mut b = Block {
            data,
            restarts_off: 0,
            num_restarts: 0,
            restart_prefixes: Box::default(),
            restart_keys: Box::default(),
            origin,
        };
        let len = b.data.len();
        let Some(n) = len
            .checked_sub(4)
            .and_then(|p| codec::read_u32_at(&b.data, p))
        else {
            return Err(b.corruption(0, "block shorter than its restart count"));
        };
        let n = n as usize;
        if n > (len - 4) / 4 {
            return Err(b.corruption(len - 4, "restart count exceeds block size"));
        }
        let restarts_off = len - 4 - 4 * n;
        if n == 0 && restarts_off != 0 {
            return Err(b.corruption(restarts_off, "entries without restart points"));
        }
        if n > 0 && restarts_off == 0 {
            return Err(b.corruption(0, "restart points without entries"));
        }
        // Restart offsets must start at 0, increase strictly and stay inside the entries:
        // the iterator then never has to bounds-check them again.
        let mut prev: Option<usize> = None;
        for i in 0..n {
            let pos = restarts_off + 4 * i;
            let r = codec::read_u32_at(&b.data, pos).unwrap_or(u32::MAX) as usize;
            let ok = match prev {
                None => r == 0,
                Some(p) => r > p && r < restarts_off,
            };
            if !ok {
                return Err(b.corruption(pos, "restart array out of order or out of bounds"));
            }
            prev = Some(r);
        }
        b.restarts_off = restarts_off;
        b.num_restarts = n;
        b.decode_restart_keys()?;
        Ok(b)
    }

    /// Fills `restart_prefixes` and `restart_keys`; a malformed restart entry is
    /// corruption of the whole block.
    fn decode_restart_keys(&mut self) -> Result<()> {
        let mut prefixes = Vec::with_capacity(self.num_restarts);
        let mut keys = Vec::with_capacity(self.num_restarts);
        for i in 0..self.num_restarts {
            let off = self.restart(i);
            let Some((start, len)) = self.locate_restart_key(off) else {
                return Err(self.corruption(off, "malformed restart entry"));
            };
            let key = &self.data[start..start + len];
            prefixes.push(user_key_prefix(key));
            // Both fit: the block is at most `MAX_META_BLOCK_BYTES` (checked by the reader
            // before decoding), far below 4 GiB.
            keys.push((start as u32, len as u32));
        }
        self.restart_prefixes = prefixes.into_boxed_slice();
        self.restart_keys = keys.into_boxed_slice();
        Ok(())
    }

    /// Where the whole key of the restart entry at `off` lies (restart entries share
    /// nothing); `None` if the entry is malformed.
    fn locate_restart_key(&self, off: usize) -> Option<(usize, usize)> {
        let entries = self.data.get(..self.restarts_off)?;
        let mut d = Decoder::new(entries.get(off..)?);
        let (shared, unshared, vlen) = entry_header(&mut d).ok()?;
        if shared != 0 {
            return None;
        }
        let start = off + d.position();
        d.take(unshared).ok()?;
        d.take(vlen).ok()?;
        u32::try_from(start + unshared).ok()?;
        Some((start, unshared))
    }

    /// A block without entries.
    pub fn empty() -> Block {
        Block {
            data: vec![0; 4],
            restarts_off: 0,
            num_restarts: 0,
            restart_prefixes: Box::default(),
            restart_keys: Box::default(),
            origin: None,
        }
    }

    /// Bytes of the decoded block (its on-disk payload once decompressed).
    #[inline]
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// Bytes `range` of the decoded block (empty if out of range).
    #[inline]
    pub fn slice(&self, range: std::ops::Range<usize>) -> &[u8] {
        self.data.get(range).unwrap_or(&[])
    }

    /// Bytes the block holds in memory: the decoded bytes and the decoded restart keys
    /// (what the cache is charged, and what a pinned index costs).
    #[inline]
    pub fn memory_bytes(&self) -> usize {
        self.data.len() + self.num_restarts * (8 + 8)
    }

    #[inline]
    pub fn num_restarts(&self) -> usize {
        self.num_restarts
    }

    /// An iterator borrowing this block.
    pub fn iter(&self) -> BlockIter<&Block> {
        BlockIter::new(self)
    }

    /// A corruption error at byte `in_block` of this (decoded) block.
    pub fn corruption(&self, in_block: usize, reason: &str) -> Error {
        match &self.origin {
            Some((path, off)) => Error::corruption(
                path.to_path_buf(),
                *off,
                format!("{reason} (byte {in_block} of the decoded block)"),
            ),
            None => Error::corruption("<block>", in_block as u64, reason),
        }
    }

    /// Orders restart key `i` against `target` (whose user-key prefix is `tprefix`):
    /// the prefixes decide unless they tie. A strict order of the zero-padded 8-byte
    /// prefixes implies the same strict order of the user keys (a shorter key that
    /// ties with a longer one up to its end pads with 0, never above the other's
    /// byte), hence of the internal keys.
    #[inline]
    fn cmp_restart(&self, i: usize, tprefix: u64, target: &[u8]) -> Ordering {
        match self.restart_prefixes[i].cmp(&tprefix) {
            Ordering::Equal => {
                let (start, len) = self.restart_keys[i];
                let (start, len) = (start as usize, len as usize);
                keys::cmp_internal(&self.data[start..start + len], target)
            }
            o => o,
        }
    }

    /// Offset of restart point `i` (validated at construction).
    #[inline]
    fn restart(&self, i: usize) -> usize {
        codec::read_u32_at(&self.data, self.restarts_off + 4 * i)
            .map_or(self.restarts_off, |r| r as usize)
    }
}

/// Decodes the three varints of an entry header.
#[inline]
fn entry_header(d: &mut Decoder<'_>) -> std::result::Result<(usize, usize, usize), DecodeError> {
    // Fast path (as LevelDB does): all three lengths fit in one byte each.
    if let Ok(h) = d.clone().take(3)
        && (h[0] | h[1] | h[2]) < 0x80
    {
        let _ = d.take(3);
        return Ok((usize::from(h[0]), usize::from(h[1]), usize::from(h[2])));
    }
    let shared = d.len_varint()?;
    let unshared = d.len_varint()?;
    let vlen = d.len_varint()?;
    Ok((shared, unshared, vlen))
}

/// A cursor over one block. Generic over how it holds the block: `&Block` for short
/// lived use, `Rc<Block>` inside table iterators (the block may leave the cache while
/// the iterator still reads it). The key buffer is reused across entries and across
/// [`BlockIter::reset`], so steady-state iteration does not allocate.
pub struct BlockIter<B: Deref<Target = Block>> {
    block: B,
    /// Offset of the current entry; `restarts_off` when not positioned.
    current: usize,
    /// Offset of the entry after the current one.
    next_off: usize,
    /// Restart region the current entry belongs to.
    restart_index: usize,
    key: Vec<u8>,
    val_start: usize,
    val_end: usize,
    err: Option<(usize, &'static str)>,
}

impl<B: Deref<Target = Block>> BlockIter<B> {
    /// An unpositioned iterator.
    pub fn new(block: B) -> Self {
        Self::with_key_buffer(block, Vec::new())
    }

    /// An unpositioned iterator that reuses `buf` for keys.
    pub fn with_key_buffer(block: B, mut buf: Vec<u8>) -> Self {
        buf.clear();
        let end = block.restarts_off;
        BlockIter {
            block,
            current: end,
            next_off: end,
            restart_index: 0,
            key: buf,
            val_start: 0,
            val_end: 0,
            err: None,
        }
    }

    /// Switches to another block, keeping the key buffer; unpositioned afterwards.
    pub fn reset(&mut self, block: B) {
        self.block = block;
        self.err = None;
        self.invalidate();
    }

    /// Gives the key buffer back for reuse.
    pub fn into_key_buffer(self) -> Vec<u8> {
        self.key
    }

    /// The block being iterated.
    pub fn block(&self) -> &Block {
        &self.block
    }

    #[inline]
    pub fn valid(&self) -> bool {
        self.err.is_none() && self.current < self.block.restarts_off
    }

    /// Current internal key (only meaningful while `valid`).
    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Current value (only meaningful while `valid`).
    #[inline]
    pub fn value(&self) -> &[u8] {
        self.block
            .data
            .get(self.val_start..self.val_end)
            .unwrap_or(&[])
    }

    /// Where the current value lies in the block (only meaningful while `valid`).
    #[inline]
    pub fn value_range(&self) -> std::ops::Range<usize> {
        self.val_start..self.val_end
    }

    /// `Err(Corruption)` once a malformed entry was met; the iterator is then invalid.
    pub fn status(&self) -> Result<()> {
        match self.err {
            Some((off, reason)) => Err(self.block.corruption(off, reason)),
            None => Ok(()),
        }
    }

    pub fn seek_to_first(&mut self) {
        if self.err.is_some() {
            return;
        }
        if self.block.num_restarts == 0 {
            self.invalidate();
            return;
        }
        self.seek_to_restart(0);
        self.parse_next();
    }

    pub fn seek_to_last(&mut self) {
        if self.err.is_some() {
            return;
        }
        let n = self.block.num_restarts;
        if n == 0 {
            self.invalidate();
            return;
        }
        self.seek_to_restart(n - 1);
        if !self.parse_next() {
            return;
        }
        while self.next_off < self.block.restarts_off {
            if !self.parse_next() {
                return;
            }
        }
    }

    /// Positions at the first entry whose key is `>= target` (by `cmp_internal`), or
    /// makes the iterator invalid if there is none.
    pub fn seek(&mut self, target: &[u8]) {
        if self.err.is_some() {
            return;
        }
        let n = self.block.num_restarts;
        if n == 0 {
            self.invalidate();
            return;
        }
        // Last restart point whose key is < target: the answer lies in its interval
        // or is the next restart key.
        let block = &*self.block;
        let tprefix = user_key_prefix(target);
        let (mut left, mut right) = (0usize, n - 1);
        while left < right {
            let mid = (left + right).div_ceil(2);
            if block.cmp_restart(mid, tprefix, target) == Ordering::Less {
                left = mid;
            } else {
                right = mid - 1;
            }
        }
        self.seek_to_restart(left);
        while self.parse_next() {
            if keys::cmp_internal(&self.key, target) != Ordering::Less {
                return;
            }
        }
    }

    pub fn next(&mut self) {
        if self.valid() {
            self.parse_next();
        }
    }

    pub fn prev(&mut self) {
        if !self.valid() {
            return;
        }
        let original = self.current;
        // Back up to the restart point before the current entry, then scan forward to
        // the entry that ends where the current one starts.
        while self.block.restart(self.restart_index) >= original {
            if self.restart_index == 0 {
                self.invalidate();
                return;
            }
            self.restart_index -= 1;
        }
        self.seek_to_restart(self.restart_index);
        while self.parse_next() {
            if self.next_off >= original {
                return;
            }
        }
    }

    #[inline]
    fn seek_to_restart(&mut self, i: usize) {
        self.key.clear();
        self.restart_index = i;
        self.next_off = self.block.restart(i);
        self.current = self.block.restarts_off;
    }

    #[inline]
    fn invalidate(&mut self) {
        self.current = self.block.restarts_off;
        self.next_off = self.block.restarts_off;
        self.key.clear();
    }

    fn corrupt(&mut self, off: usize, reason: &'static str) {
        self.err = Some((off, reason));
        self.invalidate();
    }

    /// Decodes the entry at `next_off`; false at the end of the block or on corruption.
    #[inline]
    fn parse_next(&mut self) -> bool {
        let block = &*self.block;
        let end = block.restarts_off;
        let cur = self.next_off;
        if cur >= end {
            self.invalidate();
            return false;
        }
        let Some(entries) = block.data.get(cur..end) else {
            self.corrupt(cur, "entry offset out of bounds");
            return false;
        };
        let mut d = Decoder::new(entries);
        let Ok((shared, unshared, vlen)) = entry_header(&mut d) else {
            self.corrupt(cur, "malformed entry header");
            return false;
        };
        if shared > self.key.len() {
            self.corrupt(cur, "entry shares more bytes than the previous key has");
            return false;
        }
        let Ok(delta) = d.take(unshared) else {
            self.corrupt(cur, "entry key runs past the entries");
            return false;
        };
        let val_start = cur + d.position();
        if d.take(vlen).is_err() {
            self.corrupt(cur, "entry value runs past the entries");
            return false;
        }
        // Advance the restart region; a restart entry must not share a prefix, or a
        // seek (which starts there with an empty key) would decode another key.
        let n = block.num_restarts;
        while self.restart_index + 1 < n && block.restart(self.restart_index + 1) <= cur {
            self.restart_index += 1;
        }
        if shared != 0 && block.restart(self.restart_index) == cur {
            self.corrupt(cur, "restart entry shares a prefix");
            return false;
        }
        self.key.truncate(shared);
        self.key.extend_from_slice(delta);
        self.current = cur;
        self.val_start = val_start;
        self.val_end = val_start + vlen;
        self.next_off = self.val_end;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::internal_key;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn build(entries: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Block {
        let mut b = BlockBuilder::new(interval);
        for (k, v) in entries {
            b.add(k, v);
        }
        Block::new(b.finish().to_vec()).unwrap()
    }

    fn sorted_entries(raw: Vec<(Vec<u8>, u64, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<(Vec<u8>, Vec<u8>)> = raw
            .into_iter()
            .map(|(u, ts, val)| (internal_key(&u, ts), val))
            .collect();
        v.sort_by(|a, b| keys::cmp_internal(&a.0, &b.0));
        v.dedup_by(|a, b| keys::cmp_internal(&a.0, &b.0) == Ordering::Equal);
        v
    }

    fn check_block(entries: &[(Vec<u8>, Vec<u8>)], interval: usize, targets: &[Vec<u8>]) {
        let block = build(entries, interval);
        let mut it = block.iter();
        // Forward.
        it.seek_to_first();
        for (k, v) in entries {
            assert!(it.valid());
            assert_eq!(it.key(), &k[..]);
            assert_eq!(it.value(), &v[..]);
            it.next();
        }
        assert!(!it.valid());
        it.status().unwrap();
        // Backward.
        it.seek_to_last();
        for (k, v) in entries.iter().rev() {
            assert!(it.valid());
            assert_eq!(it.key(), &k[..]);
            assert_eq!(it.value(), &v[..]);
            it.prev();
        }
        assert!(!it.valid());
        it.status().unwrap();
        // Seeks, then one step each way.
        for t in targets {
            let pos = entries.partition_point(|(k, _)| keys::cmp_internal(k, t) == Ordering::Less);
            it.seek(t);
            if pos == entries.len() {
                assert!(!it.valid());
                continue;
            }
            assert_eq!(it.key(), &entries[pos].0[..]);
            it.prev();
            if pos == 0 {
                assert!(!it.valid());
            } else {
                assert_eq!(it.key(), &entries[pos - 1].0[..]);
                it.next();
                it.next();
                match entries.get(pos + 1) {
                    Some(e) => assert_eq!(it.key(), &e.0[..]),
                    None => assert!(!it.valid()),
                }
            }
        }
        it.status().unwrap();
    }

    #[test]
    fn empty_block() {
        let mut b = BlockBuilder::new(16);
        let block = Block::new(b.finish().to_vec()).unwrap();
        let mut it = block.iter();
        it.seek_to_first();
        assert!(!it.valid());
        it.seek_to_last();
        assert!(!it.valid());
        it.seek(b"x");
        assert!(!it.valid());
        it.status().unwrap();
    }

    #[test]
    fn versions_and_prefix_keys() {
        let raw = vec![
            (b"a".to_vec(), 9, b"a9".to_vec()),
            (b"a".to_vec(), 3, b"a3".to_vec()),
            (b"ab".to_vec(), 5, b"ab5".to_vec()),
            (b"abc".to_vec(), 1, vec![]),
            (b"b".to_vec(), 7, b"b7".to_vec()),
        ];
        let entries = sorted_entries(raw);
        let targets = vec![
            internal_key(b"a", 100),
            internal_key(b"a", 5),
            internal_key(b"a", 1),
            internal_key(b"ab", 5),
            internal_key(b"ab", 4),
            internal_key(b"", 0),
            internal_key(b"zz", 0),
        ];
        for interval in [1, 2, 16] {
            check_block(&entries, interval, &targets);
        }
        let block = build(&entries, 16);
        let mut it = block.iter();
        it.seek(&internal_key(b"a", 5));
        assert_eq!(it.value(), b"a3");
    }

    #[test]
    fn many_entries_random() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let raw: Vec<_> = (0..3000)
            .map(|_| {
                let n = rng.gen_range(0..12);
                let k: Vec<u8> = (0..n).map(|_| rng.gen_range(b'a'..b'e')).collect();
                let v: Vec<u8> = (0..rng.gen_range(0..20)).map(|_| rng.r#gen()).collect();
                (k, rng.gen_range(0..5u64), v)
            })
            .collect();
        let entries = sorted_entries(raw);
        let targets: Vec<Vec<u8>> = (0..500)
            .map(|_| {
                let n = rng.gen_range(0..12);
                let k: Vec<u8> = (0..n).map(|_| rng.gen_range(b'a'..b'f')).collect();
                internal_key(&k, rng.gen_range(0..6u64))
            })
            .chain(entries.iter().take(50).map(|e| e.0.clone()))
            .collect();
        for interval in [1, 3, 16] {
            check_block(&entries, interval, &targets);
        }
    }

    #[test]
    fn rejects_bad_restart_arrays() {
        assert!(Block::new(vec![]).is_err());
        assert!(Block::new(vec![1, 2, 3]).is_err());
        // Restart count larger than the block.
        assert!(Block::new(vec![0xff, 0, 0, 0]).is_err());
        // Entries but no restarts.
        assert!(Block::new(vec![0, 1, 0, 0, 0, 0, 0]).is_err());
        // First restart not at 0.
        let mut b = vec![0, 1, 0, b'k'];
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        let e = Block::new(b).unwrap_err();
        assert!(matches!(e, Error::Corruption { .. }), "{e}");
    }

    #[test]
    fn malformed_entry_sets_status() {
        let entries = sorted_entries(
            (0..40u64)
                .map(|i| (format!("key{i:03}").into_bytes(), i, vec![b'v'; 10]))
                .collect(),
        );
        let block = build(&entries, 4);
        let mut data = block.data.clone();
        // Turn the 2nd entry's value length into a long varint (it swallows the next
        // byte): the value then runs past the entries.
        let first_len = 3 + entries[0].0.len() + entries[0].1.len();
        data[first_len + 2] = 0xff;
        let block = Block::with_origin(data, Rc::from(Path::new("/db/000007.sst")), 8192).unwrap();
        let mut it = block.iter();
        it.seek_to_first();
        assert!(it.valid());
        it.next();
        assert!(!it.valid());
        match it.status() {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!(path, Path::new("/db/000007.sst"));
                assert_eq!(offset, 8192);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    /// Feeds random and mutated bytes to the decoder: it must never panic, and every
    /// iteration must terminate.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(99);
        let entries = sorted_entries(
            (0..200u64)
                .map(|i| {
                    (
                        format!("k{:05}", i * 7).into_bytes(),
                        i % 3,
                        vec![b'x'; (i % 9) as usize],
                    )
                })
                .collect(),
        );
        let good = build(&entries, 16).data.clone();
        for round in 0..4000 {
            let data: Vec<u8> = if round % 2 == 0 {
                let n = rng.gen_range(0..300);
                let mut d: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                // Often give it a plausible restart count so parsing goes deeper.
                if n >= 8 && rng.gen_bool(0.7) {
                    let cnt = rng.gen_range(1..3u32);
                    d[n - 4..].copy_from_slice(&cnt.to_le_bytes());
                    d[n - 8..n - 4].copy_from_slice(&0u32.to_le_bytes());
                }
                d
            } else {
                let mut d = good.clone();
                for _ in 0..rng.gen_range(1..6) {
                    let i = rng.gen_range(0..d.len());
                    d[i] = rng.r#gen();
                }
                if rng.gen_bool(0.2) {
                    d.truncate(rng.gen_range(0..d.len()));
                }
                d
            };
            exercise(data, &mut rng);
        }
    }

    fn exercise(data: Vec<u8>, rng: &mut rand::rngs::SmallRng) {
        let Ok(block) = Block::new(data) else { return };
        let limit = block.size() + 1;
        let mut it = block.iter();
        it.seek_to_first();
        let mut n = 0;
        while it.valid() && n <= limit {
            let _ = (it.key().len(), it.value().len());
            it.next();
            n += 1;
        }
        assert!(n <= limit);
        let _ = it.status();
        let mut it = block.iter();
        it.seek_to_last();
        let mut n = 0;
        while it.valid() && n <= limit {
            it.prev();
            n += 1;
        }
        assert!(n <= limit);
        let mut it = block.iter();
        let t: Vec<u8> = (0..rng.gen_range(0..12)).map(|_| rng.r#gen()).collect();
        it.seek(&t);
        let _ = it.status();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn block_matches_sorted_vec(
            raw in prop::collection::vec(
                (prop::collection::vec(0u8..4, 0..6), 0u64..4, prop::collection::vec(any::<u8>(), 0..8)),
                0..120),
            targets in prop::collection::vec((prop::collection::vec(0u8..5, 0..6), 0u64..5), 0..30),
            interval in 1usize..20,
        ) {
            let entries = sorted_entries(raw);
            let targets: Vec<Vec<u8>> =
                targets.into_iter().map(|(k, ts)| internal_key(&k, ts)).collect();
            check_block(&entries, interval, &targets);
        }
    }
}
