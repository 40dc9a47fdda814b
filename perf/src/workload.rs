//! Keys and values generated exactly as RocksDB's db_bench generates them, so both
//! engines see the same data.

/// db_bench's `GenerateKeyFromInt` without prefixes: the key number as 8 big-endian
/// bytes, padded with ASCII '0' to `key_size`.
pub fn key(n: u64, key_size: usize, out: &mut Vec<u8>) {
    out.clear();
    let be = n.to_be_bytes();
    let take = key_size.min(8);
    out.extend_from_slice(&be[8 - take..]);
    out.resize(key_size.max(take), b'0');
}

/// db_bench's `RandomGenerator` with compression ratio 0.5: a pool of at least 1 MiB
/// (and at least one value) made of 100-byte pieces, each 50 random printable bytes
/// written twice, handed out as consecutive slices.
pub struct ValueGen {
    pool: Vec<u8>,
    pos: usize,
}

impl ValueGen {
    pub fn new(seed: u64, max_len: usize) -> Self {
        let size = max_len.max(1 << 20);
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut pool = Vec::with_capacity(size + 100);
        while pool.len() < size {
            let piece: Vec<u8> = (0..50).map(|_| b' ' + (next() % 95) as u8).collect();
            pool.extend_from_slice(&piece);
            pool.extend_from_slice(&piece);
        }
        ValueGen { pool, pos: 0 }
    }

    /// The next `len` bytes of the pool (wrapping to its start like db_bench); `len`
    /// is clamped to the pool size given by `new`.
    pub fn next(&mut self, len: usize) -> &[u8] {
        let len = len.min(self.pool.len());
        if self.pos + len > self.pool.len() {
            self.pos = 0;
        }
        let s = &self.pool[self.pos..self.pos + len];
        self.pos += len;
        s
    }
}

/// A fast seeded generator for key numbers (uniform in `0..n`).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((u128::from(self.0) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_db_bench_layout() {
        let mut k = Vec::new();
        key(0x0102, 16, &mut k);
        assert_eq!(&k[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&k[8..], b"00000000");
        let mut a = Vec::new();
        let mut b = Vec::new();
        key(5, 16, &mut a);
        key(300, 16, &mut b);
        assert!(a < b, "keys sort by number");
    }

    #[test]
    fn values_compress_to_about_half() {
        let mut g = ValueGen::new(1, 100);
        let v = g.next(100).to_vec();
        assert_eq!(&v[..50], &v[50..]);
        assert!(v.iter().all(|b| (b' '..=b'~').contains(b)));
        // Consecutive values differ, and LZ4 halves a run of them.
        let many: Vec<u8> = (0..1000).flat_map(|_| g.next(100).to_vec()).collect();
        assert_ne!(&many[..100], &many[100..200]);
        let c = lz4_flex::compress(&many).len() as f64 / many.len() as f64;
        assert!((0.45..0.65).contains(&c), "compressed to {c}");
        // Values larger than the default pool still work.
        let mut big = ValueGen::new(2, 3 << 20);
        assert_eq!(big.next(3 << 20).len(), 3 << 20);
    }
}
