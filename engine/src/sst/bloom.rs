//! Whole-table bloom filter over user keys.
//!
//! A point read at any timestamp asks "does this table hold any version of user key
//! K?", so the filter is built over user keys (the internal key without its timestamp
//! suffix), one entry per distinct user key.
//!
//! Probing uses double hashing (Kirsch–Mitzenmacher): one 64-bit hash `h`, a delta
//! `d = rotl(h, 21) | 1`, and probe `i` at `h + i·d` reduced onto the bit array by a
//! multiply-shift (`(x · nbits) >> 64`), which is cheaper than a modulo and uniform
//! for a well-mixed `x`. The hash is MurmurHash64A (seed [`HASH_SEED`]); it is part
//! of the on-disk format.
//!
//! Filter block: `bits[nbytes] | probes u8 | version u8` (version [`FILTER_VERSION`]).

use crate::config;

/// Seed of the key hash (format constant).
pub const HASH_SEED: u64 = 0x6e78_6462_626c_6f6d;
/// Version byte at the end of every filter block.
pub const FILTER_VERSION: u8 = 1;

/// MurmurHash64A of `data`.
#[inline]
pub fn hash64(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let mut k = u64::from_le_bytes(a);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The hash of a user key as the filter uses it.
#[inline]
pub fn key_hash(user_key: &[u8]) -> u64 {
    hash64(user_key, HASH_SEED)
}

/// Probes per key for `bits_per_key` bits: `bits_per_key · ln 2` minimizes the false
/// positive rate.
pub fn probes_for(bits_per_key: usize) -> u8 {
    let k = (bits_per_key as f64 * std::f64::consts::LN_2).round() as usize;
    k.clamp(1, usize::from(config::MAX_BLOOM_PROBES)) as u8
}

#[inline]
fn probe_positions(h: u64, nbits: u64, probes: u8) -> impl Iterator<Item = u64> {
    let delta = h.rotate_left(21) | 1;
    (0..u64::from(probes)).map(move |i| {
        let x = h.wrapping_add(i.wrapping_mul(delta));
        ((u128::from(x) * u128::from(nbits)) >> 64) as u64
    })
}

/// Builds the filter block from the hashes of the distinct user keys.
pub fn build_filter(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
    let probes = probes_for(bits_per_key);
    // At least 64 bits so that tiny tables do not saturate.
    let nbits = (hashes.len().saturating_mul(bits_per_key)).max(64);
    let nbytes = nbits.div_ceil(8);
    let nbits = (nbytes * 8) as u64;
    let mut out = vec![0u8; nbytes + 2];
    for &h in hashes {
        for p in probe_positions(h, nbits, probes) {
            out[(p / 8) as usize] |= 1 << (p % 8);
        }
    }
    out[nbytes] = probes;
    out[nbytes + 1] = FILTER_VERSION;
    out
}

/// A decoded filter block.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    bits: Vec<u8>,
    probes: u8,
}

impl BloomFilter {
    /// Parses a filter block; `Err(reason)` if it is malformed (the caller names file
    /// and offset).
    pub fn decode(mut block: Vec<u8>) -> Result<BloomFilter, &'static str> {
        let n = block.len();
        if n < 2 {
            return Err("filter block shorter than its trailer");
        }
        if block[n - 1] != FILTER_VERSION {
            return Err("unknown filter version");
        }
        let probes = block[n - 2];
        if probes == 0 || probes > config::MAX_BLOOM_PROBES {
            return Err("filter probe count out of range");
        }
        block.truncate(n - 2);
        Ok(BloomFilter {
            bits: block,
            probes,
        })
    }

    /// False only if no version of `user_key` is in the table.
    #[inline]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(key_hash(user_key))
    }

    #[inline]
    pub fn may_contain_hash(&self, h: u64) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let nbits = (self.bits.len() * 8) as u64;
        probe_positions(h, nbits, self.probes).all(|p| {
            self.bits
                .get((p / 8) as usize)
                .is_some_and(|b| b & (1 << (p % 8)) != 0)
        })
    }

    /// Bytes of the bit array.
    pub fn size(&self) -> usize {
        self.bits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(keys: &[Vec<u8>]) -> BloomFilter {
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        BloomFilter::decode(build_filter(&hashes, config::BLOOM_BITS_PER_KEY)).unwrap()
    }

    #[test]
    fn no_false_negatives() {
        for n in [0usize, 1, 10, 1000, 20_000] {
            let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("user{i}").into_bytes()).collect();
            let f = filter(&keys);
            for k in &keys {
                assert!(f.may_contain(k));
            }
        }
    }

    #[test]
    fn false_positive_rate_near_one_percent() {
        let n = 50_000;
        let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("key-{i:08}").into_bytes()).collect();
        let f = filter(&keys);
        let trials = 200_000;
        let fp = (0..trials)
            .filter(|i| f.may_contain(format!("other-{i:08}").as_bytes()))
            .count();
        let rate = fp as f64 / trials as f64;
        // 10 bits/key and 7 probes give ~0.8% in theory.
        assert!(rate < 0.015, "false positive rate {rate}");
        assert!(rate > 0.002, "suspiciously low false positive rate {rate}");
    }

    #[test]
    fn hash_is_stable() {
        // The hash is part of the on-disk format: these values must never change.
        assert_eq!(hash64(b"", HASH_SEED), hash64(b"", HASH_SEED));
        let a = hash64(b"hello world", 0);
        let b = hash64(b"hello worle", 0);
        assert_ne!(a, b);
        assert_eq!(key_hash(b"abc"), 0x047c_079c_495d_3e16);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(BloomFilter::decode(vec![]).is_err());
        assert!(BloomFilter::decode(vec![0, 7, 9]).is_err());
        assert!(BloomFilter::decode(vec![0, 0, FILTER_VERSION]).is_err());
        assert!(BloomFilter::decode(vec![0, 200, FILTER_VERSION]).is_err());
        let f = BloomFilter::decode(vec![7, FILTER_VERSION]).unwrap();
        assert!(f.may_contain(b"anything"));
    }
}
