//! The one workload loop both embedded engines run: NextDB's `Db` and the RocksDB
//! crate (in `perf/rocksdb-peer`) implement [`Engine`], and [`suite`] drives either
//! with the same keys, values, order of operations and timing (`Instant` around every
//! operation, hdrhistogram in nanoseconds). Reads check the length of every value they
//! get back; a wrong length is counted, and the report gives such a row no ratio.

use super::{Bench, Setup, Step};
use crate::report::Measured;
use crate::workload::{Rng, ValueGen, key};
use hdrhistogram::Histogram;
use std::path::Path;
use std::time::Instant;

/// What one engine offers the loop. Each side runs on one single-threaded executor
/// (glommio for NextDB, a blocking `block_on` for RocksDB), so no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Engine: Sized {
    /// Opens the database in `dir`, creating it when missing.
    async fn open(dir: &Path, s: &Setup) -> Result<Self, String>;
    /// Makes everything written durable and closes.
    async fn close(self) -> Result<(), String>;
    async fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), String>;
    /// The length of the key's value, if the key is there.
    async fn get_len(&self, key: &[u8]) -> Result<Option<usize>, String>;
    /// A new iterator, seeked to `key`: whether it stands on exactly `key`.
    async fn seek_exact(&self, key: &[u8]) -> Result<bool, String>;
    /// One iterator from the first key over at most `limit` entries, calling
    /// `each(value_len)` on every entry; returns how many it saw.
    async fn scan(&self, limit: u64, each: &mut dyn FnMut(usize)) -> Result<u64, String>;
    /// Flushes the memtable and waits until no compaction is pending.
    async fn settle(&self) -> Result<(), String>;
    /// Runs `spec.writers` concurrent [`synced_writer`]s (tasks or threads, as the
    /// engine's users would) and merges their histograms.
    async fn synced_writers(&self, spec: WriterSpec) -> Result<Histogram<u64>, String>;
    /// (log + flush + compaction bytes written) / user bytes written since open.
    fn write_amplification(&self) -> Option<f64>;
}

/// The synced `overwrite`: what every writer does.
#[derive(Debug, Clone, Copy)]
pub struct WriterSpec {
    pub writers: u64,
    pub per_writer: u64,
    pub num: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub seed: u64,
}

pub fn hist() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant histogram bounds are valid")
}

fn elapsed_ns(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Writer `w` of a synced overwrite: `per_writer` puts, each waiting for its fsync.
pub async fn synced_writer<E: Engine>(
    e: &E,
    spec: WriterSpec,
    w: u64,
) -> Result<Histogram<u64>, String> {
    let seed = spec.seed.wrapping_add(w + 1);
    let mut h = hist();
    let mut rng = Rng::new(seed);
    let mut vg = ValueGen::new(seed, spec.value_size);
    let mut kbuf = Vec::new();
    for _ in 0..spec.per_writer {
        key(rng.below(spec.num), spec.key_size, &mut kbuf);
        let v = vg.next(spec.value_size);
        let t0 = Instant::now();
        e.put(&kbuf, v, true).await?;
        h.saturating_record(elapsed_ns(t0));
    }
    Ok(h)
}

fn fresh_dir(p: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", p.display())),
    }
    std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Runs the plan on engine `E` in `dir`: one [`Measured`] per step.
pub async fn suite<E: Engine>(s: &Setup, dir: &Path, rep: u64) -> Result<Vec<Measured>, String> {
    let mut out = Vec::new();
    let mut db: Option<E> = None;
    for (i, step) in s.steps.iter().enumerate() {
        // Every benchmark draws its own keys and values, as db_bench's threads do; a
        // repeat draws new ones.
        let seed = s.args.seed.wrapping_add(1000 * i as u64 + 100_000 * rep);
        if step.bench.is_fill() || step.new_process {
            if let Some(d) = db.take() {
                d.close().await?;
            }
            if step.bench.is_fill() {
                fresh_dir(dir)?;
            }
            db = Some(E::open(dir, s).await?);
        }
        let Some(d) = db.as_ref() else {
            return Err(format!("{}: no database", step.bench.name()));
        };
        let settle_secs = if step.warmup {
            Some(warm_up(d).await?)
        } else {
            None
        };
        let mut m = run_step(d, s, step, seed).await?;
        m.settle_secs = settle_secs;
        m.write_amplification = d.write_amplification();
        super::report_line(step.bench.name(), &m);
        out.push(m);
    }
    if let Some(d) = db {
        d.close().await?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(out)
}

/// Settles and scans everything, unmeasured: reads then run on SSTables behind a hot
/// block cache. Returns the seconds the settling took.
async fn warm_up<E: Engine>(d: &E) -> Result<f64, String> {
    let t = Instant::now();
    d.settle().await?;
    let settle = t.elapsed().as_secs_f64();
    let n = d.scan(u64::MAX, &mut |_| {}).await?;
    println!(
        "  (warm-up: settled in {settle:.2} s, scanned {n} entries in {:.2} s)",
        t.elapsed().as_secs_f64() - settle
    );
    Ok(settle)
}

async fn run_step<E: Engine>(d: &E, s: &Setup, step: &Step, seed: u64) -> Result<Measured, String> {
    let cpu = crate::cpu::CpuMeter::start();
    let mut m = match step.bench {
        Bench::FillSeq | Bench::FillRandom => fill(d, s, step.bench, seed).await?,
        Bench::Overwrite => {
            let spec = WriterSpec {
                writers: s.args.sync_writers,
                per_writer: s.sync_per_writer,
                num: s.num,
                key_size: s.args.key_size,
                value_size: s.args.value_size,
                seed,
            };
            let t = Instant::now();
            let h = d.synced_writers(spec).await?;
            Measured::from_hist(s.sync_total(), t.elapsed().as_secs_f64(), &h)
        }
        Bench::ReadRandom => read_random(d, s, seed).await?,
        Bench::ReadSeq => read_seq(d, s).await?,
        Bench::SeekRandom => seek_random(d, s, seed).await?,
    };
    m.cpu = Some(cpu.stop());
    Ok(m)
}

async fn fill<E: Engine>(d: &E, s: &Setup, bench: Bench, seed: u64) -> Result<Measured, String> {
    let (num, ks, vs) = (s.num, s.args.key_size, s.args.value_size);
    let mut rng = Rng::new(seed);
    let mut vg = ValueGen::new(seed, vs);
    let mut kbuf = Vec::new();
    let mut h = hist();
    let t = Instant::now();
    for n in 0..num {
        let k = if bench == Bench::FillSeq {
            n
        } else {
            rng.below(num)
        };
        key(k, ks, &mut kbuf);
        let v = vg.next(vs);
        let t0 = Instant::now();
        d.put(&kbuf, v, false).await?;
        h.saturating_record(elapsed_ns(t0));
    }
    Ok(Measured::from_hist(num, t.elapsed().as_secs_f64(), &h))
}

async fn read_random<E: Engine>(d: &E, s: &Setup, seed: u64) -> Result<Measured, String> {
    let (num, ks, vs) = (s.num, s.args.key_size, s.args.value_size);
    let mut rng = Rng::new(seed);
    let mut kbuf = Vec::new();
    let mut h = hist();
    let (mut found, mut bad) = (0u64, 0u64);
    let t = Instant::now();
    for _ in 0..s.reads {
        key(rng.below(num), ks, &mut kbuf);
        let t0 = Instant::now();
        let got = d.get_len(&kbuf).await?;
        h.saturating_record(elapsed_ns(t0));
        if let Some(len) = got {
            found += 1;
            bad += u64::from(len != vs);
        }
    }
    let mut m = Measured::from_hist(s.reads, t.elapsed().as_secs_f64(), &h);
    m.found = Some(found);
    m.bad_values = bad;
    Ok(m)
}

async fn read_seq<E: Engine>(d: &E, s: &Setup) -> Result<Measured, String> {
    let vs = s.args.value_size;
    let mut h = hist();
    let mut bad = 0u64;
    let t = Instant::now();
    let mut last = t;
    let n = d
        .scan(s.reads, &mut |len| {
            let now = Instant::now();
            h.saturating_record(u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX));
            last = now;
            bad += u64::from(len != vs);
        })
        .await?;
    let mut m = Measured::from_hist(n, t.elapsed().as_secs_f64(), &h);
    m.bad_values = bad;
    Ok(m)
}

async fn seek_random<E: Engine>(d: &E, s: &Setup, seed: u64) -> Result<Measured, String> {
    let (num, ks) = (s.num, s.args.key_size);
    let mut rng = Rng::new(seed);
    let mut kbuf = Vec::new();
    let mut h = hist();
    let mut found = 0u64;
    let t = Instant::now();
    for _ in 0..s.reads {
        key(rng.below(num), ks, &mut kbuf);
        let t0 = Instant::now();
        found += u64::from(d.seek_exact(&kbuf).await?);
        h.saturating_record(elapsed_ns(t0));
    }
    let mut m = Measured::from_hist(s.reads, t.elapsed().as_secs_f64(), &h);
    m.found = Some(found);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A model engine: a BTreeMap, one value of every length the test wants.
    struct Model {
        map: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
        /// Values read back this much shorter than written (0: honest).
        shorten: usize,
    }

    impl Engine for Model {
        async fn open(_: &Path, _: &Setup) -> Result<Self, String> {
            Ok(Model {
                map: RefCell::new(BTreeMap::new()),
                shorten: 0,
            })
        }
        async fn close(self) -> Result<(), String> {
            Ok(())
        }
        async fn put(&self, k: &[u8], v: &[u8], _: bool) -> Result<(), String> {
            self.map.borrow_mut().insert(k.to_vec(), v.to_vec());
            Ok(())
        }
        async fn get_len(&self, k: &[u8]) -> Result<Option<usize>, String> {
            Ok(self.map.borrow().get(k).map(|v| v.len() - self.shorten))
        }
        async fn seek_exact(&self, k: &[u8]) -> Result<bool, String> {
            Ok(self
                .map
                .borrow()
                .range(k.to_vec()..)
                .next()
                .is_some_and(|(f, _)| f == k))
        }
        async fn scan(&self, limit: u64, each: &mut dyn FnMut(usize)) -> Result<u64, String> {
            let mut n = 0;
            for v in self
                .map
                .borrow()
                .values()
                .take(limit.try_into().unwrap_or(usize::MAX))
            {
                each(v.len() - self.shorten);
                n += 1;
            }
            Ok(n)
        }
        async fn settle(&self) -> Result<(), String> {
            Ok(())
        }
        async fn synced_writers(&self, spec: WriterSpec) -> Result<Histogram<u64>, String> {
            let mut h = hist();
            for w in 0..spec.writers {
                h.add(synced_writer(self, spec, w).await?)
                    .map_err(|e| e.to_string())?;
            }
            Ok(h)
        }
        fn write_amplification(&self) -> Option<f64> {
            None
        }
    }

    #[test]
    fn reads_count_found_keys_and_bad_value_lengths() {
        let s = super::super::tests::setup_for("fillrandom,readrandom,seekrandom,readseq", 2000);
        let m = Model {
            map: RefCell::new(BTreeMap::new()),
            shorten: 0,
        };
        futures_lite::future::block_on(async {
            fill(&m, &s, Bench::FillRandom, 7).await.unwrap();
            let distinct = m.map.borrow().len() as f64;
            let r = read_random(&m, &s, 8).await.unwrap();
            // Uniform keys over the same space: about the share the fill wrote.
            let share = r.found.unwrap() as f64 / s.reads as f64;
            assert!((share - distinct / 2000.0).abs() < 0.06, "{share}");
            assert_eq!(r.bad_values, 0);
            let k = seek_random(&m, &s, 9).await.unwrap();
            assert!(k.found.unwrap() > 0);
            let q = read_seq(&m, &s).await.unwrap();
            assert_eq!(q.ops, Some(distinct as u64));
            assert_eq!(q.bad_values, 0);
        });
        let short = Model { shorten: 1, ..m };
        futures_lite::future::block_on(async {
            let r = read_random(&short, &s, 8).await.unwrap();
            assert_eq!(r.bad_values, r.found.unwrap());
            assert!(r.bad_values > 0);
            let q = read_seq(&short, &s).await.unwrap();
            assert_eq!(q.bad_values, q.ops.unwrap());
        });
    }
}
