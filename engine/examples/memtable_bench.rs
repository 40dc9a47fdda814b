//! Quick throughput check of the memtable on one core: random 16-byte user keys, 100-byte
//! values. Run with `cargo run --release -p nextdb-engine --example memtable_bench [N]`.
//! Not a benchmark of record (those live in `perf/`); a figure to watch while tuning.

use nextdb_engine::keys::{self, ValueKind};
use nextdb_engine::memtable::MemTable;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(400_000);
    let mut seed = 0x1234_5678_9abc_def1u64;
    let user_keys: Vec<[u8; 16]> = (0..n)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&xorshift(&mut seed).to_be_bytes());
            k[8..].copy_from_slice(&xorshift(&mut seed).to_be_bytes());
            k
        })
        .collect();
    let ikeys: Vec<Vec<u8>> = user_keys
        .iter()
        .enumerate()
        .map(|(i, k)| keys::internal_key(k, i as u64 + 1))
        .collect();
    let mut value = vec![0x5au8; 100];
    value[0] = ValueKind::Put as u8;

    let t = Rc::new(MemTable::new());
    let start = Instant::now();
    for k in &ikeys {
        if let Err(e) = t.insert(k, &value) {
            eprintln!("insert failed: {e}");
            return;
        }
    }
    let ins = start.elapsed();

    // Point reads of present keys in a different random order, at the newest timestamp.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (xorshift(&mut seed) % (i as u64 + 1)) as usize);
    }
    let start = Instant::now();
    let mut found = 0usize;
    for &i in &order {
        if black_box(t.get(&user_keys[i], u64::MAX)).is_some() {
            found += 1;
        }
    }
    let gets = start.elapsed();

    // Reads of absent keys.
    let start = Instant::now();
    let mut absent_found = 0usize;
    for _ in 0..n {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&xorshift(&mut seed).to_be_bytes());
        if black_box(t.get(&k, u64::MAX)).is_some() {
            absent_found += 1;
        }
    }
    let misses = start.elapsed();

    let start = Instant::now();
    let mut it = t.iter();
    it.seek_to_first();
    let mut scanned = 0usize;
    while it.valid() {
        black_box(it.key());
        scanned += 1;
        it.next();
    }
    let scan = start.elapsed();

    let rate = |ops: usize, d: std::time::Duration| ops as f64 / d.as_secs_f64();
    println!("entries           {n}");
    println!(
        "arena             {:.1} MiB used, {:.1} MiB allocated ({:.1} B/entry)",
        t.approximate_bytes() as f64 / 1048576.0,
        t.allocated_bytes() as f64 / 1048576.0,
        t.approximate_bytes() as f64 / n as f64
    );
    println!("insert            {:>12.0} /s", rate(n, ins));
    println!(
        "get (hit)         {:>12.0} /s  ({found} found)",
        rate(n, gets)
    );
    println!(
        "get (miss)        {:>12.0} /s  ({absent_found} found)",
        rate(n, misses)
    );
    println!(
        "scan              {:>12.0} /s  ({scanned} entries)",
        rate(scanned, scan)
    );
}
