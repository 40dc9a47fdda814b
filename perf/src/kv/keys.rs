//! Keys, values and key choosers of the `kv` suite.
//!
//! Keys are `key:%012d`, the format `redis-benchmark -r N` gives `key:__rand_int__`, so
//! our load and redis-benchmark's reads hit the same keys. Key numbers are chosen
//! uniformly or with the YCSB zipfian generator (Gray et al., "Quickly generating
//! billion-record synthetic databases"), its ranks scrambled over the key space by a
//! multiplicative permutation so the hot keys are not the first ones.

use crate::workload::ValueGen;

/// Digits of the key number (redis-benchmark pads `__rand_int__` to 12).
pub const KEY_DIGITS: usize = 12;
/// Bytes of every key: `key:` and 12 digits.
pub const KEY_BYTES: usize = 4 + KEY_DIGITS;

/// Writes `key:%012d` of `n` into `out` (numbers above 10^12 keep their low digits).
#[inline]
pub fn format_key(n: u64, out: &mut [u8; KEY_BYTES]) {
    out[..4].copy_from_slice(b"key:");
    let mut x = n;
    for i in (4..KEY_BYTES).rev() {
        out[i] = b'0' + (x % 10) as u8;
        x /= 10;
    }
}

/// xorshift64*: fast, seedable, good enough for choosing keys.
#[derive(Debug, Clone)]
pub struct FastRng(u64);

impl FastRng {
    pub fn new(seed: u64) -> Self {
        // SplitMix64 of the seed, so nearby seeds give unrelated streams (never 0).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        FastRng((z ^ (z >> 31)) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// YCSB's zipfian generator over ranks `0..n` (rank 0 the most popular).
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    /// 1 + 0.5^theta: below it (times zetan) the rank is 1.
    one_plus_half_pow_theta: f64,
}

/// `sum_{i=1..=n} 1 / i^theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| (i as f64).powf(-theta)).sum()
}

impl Zipfian {
    /// `n` ≥ 1 items, `theta` in (0, 1) (YCSB uses 0.99).
    pub fn new(n: u64, theta: f64) -> Self {
        let n = n.max(1);
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2.min(n), theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = if n > 2 {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        } else {
            0.0
        };
        Zipfian {
            n,
            alpha,
            zetan,
            eta,
            one_plus_half_pow_theta: 1.0 + 0.5f64.powf(theta),
        }
    }

    /// The rank for a uniform `u` in `[0, 1)`.
    #[inline]
    pub fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < self.one_plus_half_pow_theta || self.n == 2 {
            return 1;
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A bijection of `0..n` that scatters consecutive numbers: `(x * mult + add) mod n`
/// with `mult` coprime to `n` (multiplicative hashing).
#[derive(Debug, Clone, Copy)]
pub struct Scramble {
    n: u64,
    mult: u64,
    add: u64,
}

impl Scramble {
    pub fn new(n: u64) -> Self {
        let n = n.max(1);
        let mut mult = 0x9E37_79B9_7F4A_7C15 % n;
        while n > 2 && (mult < 2 || gcd(mult, n) != 1) {
            mult = (mult + 1) % n;
        }
        if n <= 2 {
            mult = 1;
        }
        Scramble {
            n,
            mult,
            add: 0xD6E8_FEB8_6659_FD93 % n,
        }
    }

    #[inline]
    pub fn map(&self, x: u64) -> u64 {
        ((u128::from(x) * u128::from(self.mult) + u128::from(self.add)) % u128::from(self.n)) as u64
    }
}

/// How key numbers are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    Uniform,
    /// Zipfian with theta 0.99, scrambled.
    Zipfian,
}

impl Dist {
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipfian => "zipfian",
        }
    }
}

/// Draws key numbers in `0..n` with a distribution; one per connection (own seed).
#[derive(Debug, Clone)]
pub struct KeyChooser {
    n: u64,
    rng: FastRng,
    zipf: Option<(Zipfian, Scramble)>,
}

/// YCSB's default skew.
pub const ZIPF_THETA: f64 = 0.99;

impl KeyChooser {
    /// `zipf` is shared setup (zeta(n) costs a pass over n); build it once with
    /// [`Zipfian::new`] and clone it into every chooser.
    pub fn new(n: u64, dist: Dist, zipf: Option<&Zipfian>, seed: u64) -> Self {
        let n = n.max(1);
        let zipf = match dist {
            Dist::Uniform => None,
            Dist::Zipfian => Some((
                zipf.cloned().unwrap_or_else(|| Zipfian::new(n, ZIPF_THETA)),
                Scramble::new(n),
            )),
        };
        KeyChooser {
            n,
            rng: FastRng::new(seed),
            zipf,
        }
    }

    #[inline]
    pub fn next(&mut self) -> u64 {
        match &self.zipf {
            None => self.rng.below(self.n),
            Some((z, s)) => s.map(z.rank(self.rng.unit())),
        }
    }
}

/// A pool of db_bench-style values (compressible to about half), handed out by index:
/// the same bytes for NextDB and Redis.
#[derive(Debug, Clone)]
pub struct ValuePool {
    pool: Vec<u8>,
    len: usize,
}

impl ValuePool {
    pub fn new(seed: u64, value_bytes: usize) -> Self {
        let size = value_bytes.max(1 << 20);
        let mut g = ValueGen::new(seed, size);
        ValuePool {
            pool: g.next(size).to_vec(),
            len: value_bytes,
        }
    }

    /// The `i`-th value (`value_bytes` long).
    #[inline]
    pub fn get(&self, i: u64) -> &[u8] {
        let slots = (self.pool.len() - self.len) as u64 + 1;
        let off = (i.wrapping_mul(97) % slots) as usize;
        &self.pool[off..off + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact probability of rank `r` among `n` with skew `theta`.
    fn probability(zetan: f64, r: u64) -> f64 {
        ((r + 1) as f64).powf(-ZIPF_THETA) / zetan
    }

    #[test]
    fn keys_have_redis_benchmark_format() {
        let mut k = [0u8; KEY_BYTES];
        format_key(123_456, &mut k);
        assert_eq!(&k, b"key:000000123456");
        format_key(0, &mut k);
        assert_eq!(&k, b"key:000000000000");
        format_key(999_999_999_999, &mut k);
        assert_eq!(&k, b"key:999999999999");
    }

    #[test]
    fn scramble_is_a_bijection() {
        for n in [1u64, 2, 3, 10, 97, 1000, 1024, 4096] {
            let s = Scramble::new(n);
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = s.map(x);
                assert!(y < n);
                assert!(!seen[y as usize], "n={n}: {y} twice");
                seen[y as usize] = true;
            }
        }
        // Neighbouring ranks land far apart.
        let s = Scramble::new(1_000_000);
        let d = s.map(1).abs_diff(s.map(0));
        assert!(d > 1000, "{d}");
    }

    #[test]
    fn uniform_covers_the_range_evenly() {
        let mut c = KeyChooser::new(10, Dist::Uniform, None, 7);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[c.next() as usize] += 1;
        }
        for n in counts {
            assert!((9_000..11_000).contains(&n), "{counts:?}");
        }
    }

    /// The zipfian ranks follow 1/r^theta: the head's frequencies match the formula,
    /// the tail is reached, and the skew is what YCSB's is.
    #[test]
    fn zipfian_matches_its_distribution() {
        let n = 1000u64;
        let z = Zipfian::new(n, ZIPF_THETA);
        let zetan = zeta(n, ZIPF_THETA);
        let mut rng = FastRng::new(11);
        let draws = 2_000_000u64;
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            let r = z.rank(rng.unit());
            assert!(r < n);
            counts[r as usize] += 1;
        }
        for r in [0u64, 1, 2, 5, 10, 50] {
            let want = probability(zetan, r) * draws as f64;
            let got = counts[r as usize] as f64;
            // Ranks 0 and 1 are exact; the others come from Gray's closed form, which
            // overweights ranks 2 and 3 (by about 17% and 11%, as YCSB's does) and is
            // within a few percent further out.
            let tol = match r {
                0 | 1 => 0.03,
                2 | 3 => 0.25,
                _ => 0.12,
            };
            assert!(
                (got - want).abs() / want < tol,
                "rank {r}: got {got}, want {want:.0}"
            );
        }
        // Decreasing popularity at the head.
        assert!(counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[10]);
        // The top 1% of ranks take about 1/zeta share: sum of 1/r^0.99 over 10 of 1000.
        let top: u64 = counts[..10].iter().sum();
        let want_top: f64 = (0..10).map(|r| probability(zetan, r)).sum();
        let share = top as f64 / draws as f64;
        assert!(
            (share - want_top).abs() < 0.03,
            "top 1% share {share} vs {want_top}"
        );
        assert!(share > 0.35, "zipfian 0.99 is skewed: {share}");
        // The tail is reached.
        assert!(counts[(n / 2) as usize..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn zipfian_chooser_scatters_hot_keys() {
        let n = 1_000_000u64;
        let z = Zipfian::new(n, ZIPF_THETA);
        let zetan = zeta(n, ZIPF_THETA);
        let mut c = KeyChooser::new(n, Dist::Zipfian, Some(&z), 3);
        let mut hot = std::collections::HashMap::new();
        for _ in 0..200_000 {
            let k = c.next();
            assert!(k < n);
            *hot.entry(k).or_insert(0u32) += 1;
        }
        let mut by_count: Vec<(u64, u32)> = hot.into_iter().collect();
        by_count.sort_by_key(|b| std::cmp::Reverse(b.1));
        // The hottest key is rank 0 mapped, drawn about p(0) of the time.
        let s = Scramble::new(n);
        assert_eq!(by_count[0].0, s.map(0));
        let p0 = by_count[0].1 as f64 / 200_000.0;
        assert!((p0 - probability(zetan, 0)).abs() < 0.01, "{p0}");
        // The ten hottest keys are not clustered at the start of the key space.
        assert!(by_count[..10].iter().filter(|(k, _)| *k < n / 10).count() < 5);
    }

    #[test]
    fn values_have_the_size_asked() {
        let p = ValuePool::new(1, 100);
        assert_eq!(p.get(0).len(), 100);
        assert_eq!(p.get(u64::MAX).len(), 100);
        assert_ne!(p.get(1), p.get(2));
        let big = ValuePool::new(1, 2 << 20);
        assert_eq!(big.get(5).len(), 2 << 20);
    }
}
