//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use nextdb_engine::EngineConfig;
use std::future::Future;

/// Runs `f` on a glommio executor on this thread and returns its output.
pub fn run<T, Fut: Future<Output = T>>(f: impl FnOnce() -> Fut) -> T {
    nextdb_engine::fs::glommio_fs::run_local(f()).expect("start a glommio executor")
}

/// A tiny configuration so a few thousand writes exercise rotation, flush and
/// compaction across several levels.
pub fn tiny_config() -> EngineConfig {
    EngineConfig {
        memtable_bytes: 8 << 10,
        block_cache_bytes: 64 << 10,
        log_segment_bytes: 64 << 10,
        log_buffer_bytes: 8 << 10,
        level1_bytes: 32 << 10,
        target_file_bytes: 16 << 10,
        ..EngineConfig::small_for_tests()
    }
}

/// Deterministic value for key `k` written in round `r`.
pub fn value_for(k: u64, r: u64, len: usize) -> Vec<u8> {
    let mut v = format!("v{k}-{r}-").into_bytes();
    let mut x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ r;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

pub fn key_for(k: u64) -> Vec<u8> {
    format!("key{k:08}").into_bytes()
}

/// Compares two key/value lists and panics with the first difference (not the lists).
pub fn assert_same_rows(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)], ctx: &str) {
    let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        if g.0 != w.0 {
            panic!(
                "{ctx}: row {i}: key {} where {} was expected",
                show(&g.0),
                show(&w.0)
            );
        }
        if g.1 != w.1 {
            panic!(
                "{ctx}: row {i}: key {}: value differs ({} vs {} bytes)",
                show(&g.0),
                g.1.len(),
                w.1.len()
            );
        }
    }
    if got.len() != want.len() {
        let extra = if got.len() > want.len() {
            &got[want.len()]
        } else {
            &want[got.len()]
        };
        panic!(
            "{ctx}: {} rows where {} were expected; first unmatched key {}",
            got.len(),
            want.len(),
            show(&extra.0)
        );
    }
}
