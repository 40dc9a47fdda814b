//! NextDB's engine as an [`Engine`] of the workload loop: one glommio executor fixed
//! to the suite's CPU, flush and compaction in a background queue with a quarter of
//! the foreground's shares, synced writers as tasks on the same executor.

use super::workload::{Engine, WriterSpec, hist, synced_writer};
use super::{EngineArgs, Setup};
use crate::report::Measured;
use hdrhistogram::Histogram;
use nextdb_engine::EngineConfig;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::glommio_fs::DmaFs;
use nextdb_engine::iter::ReadOptions;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// Block size and bloom bits of NextDB's tables, for the peers' options.
pub use nextdb_engine::config::{BLOOM_BITS_PER_KEY, DATA_BLOCK_BYTES};

/// NextDB's configuration: its defaults (which equal RocksDB's for everything both
/// have) with the benchmark's block cache.
pub fn engine_config(args: &EngineArgs) -> EngineConfig {
    EngineConfig {
        block_cache_bytes: args.cache_bytes,
        ..EngineConfig::default()
    }
}

#[derive(Clone)]
pub struct NextDb(Rc<Db<DmaFs>>);

fn err(e: nextdb_engine::Error) -> String {
    e.to_string()
}

impl Engine for NextDb {
    async fn open(dir: &Path, s: &Setup) -> Result<Self, String> {
        let db = Db::open(DmaFs::new(), dir, engine_config(&s.args))
            .await
            .map_err(|e| format!("open {}: {e}", dir.display()))?;
        nextdb_engine::runtime::spawn_background(&db).map_err(err)?;
        Ok(NextDb(db))
    }

    async fn close(self) -> Result<(), String> {
        println!("  engine stats at close: {:?}", self.0.stats());
        self.0.close().await.map_err(|e| format!("close: {e}"))
    }

    async fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), String> {
        let opts = WriteOptions { sync, ttl_ms: None };
        self.0.put(key, value, &opts).await.map_err(err)
    }

    async fn get_len(&self, key: &[u8]) -> Result<Option<usize>, String> {
        Ok(self.0.get(key).await.map_err(err)?.map(|v| v.len()))
    }

    async fn seek_exact(&self, key: &[u8]) -> Result<bool, String> {
        let mut it = self.0.iter(ReadOptions::default()).await.map_err(err)?;
        it.seek(key).await.map_err(err)?;
        Ok(it.valid() && it.key() == key)
    }

    async fn scan(&self, limit: u64, each: &mut dyn FnMut(usize)) -> Result<u64, String> {
        let mut it = self.0.iter(ReadOptions::default()).await.map_err(err)?;
        it.seek_to_first().await.map_err(err)?;
        let mut n = 0u64;
        while n < limit && it.valid() {
            std::hint::black_box(it.key().len());
            each(it.value().len());
            n += 1;
            it.next().await.map_err(err)?;
        }
        Ok(n)
    }

    async fn settle(&self) -> Result<(), String> {
        self.0.flush().await.map_err(err)?;
        self.0.wait_for_compactions().await.map_err(err)
    }

    async fn synced_writers(&self, spec: WriterSpec) -> Result<Histogram<u64>, String> {
        let tasks: Vec<_> = (0..spec.writers)
            .map(|w| {
                let e = self.clone();
                glommio::spawn_local(async move { synced_writer(&e, spec, w).await })
            })
            .collect();
        // If the phase takes far longer than it should, say where it is stuck.
        let db = self.0.clone();
        let watch = glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_secs(30)).await;
                eprintln!(
                    "overwrite still running after 30 s more:\n{}",
                    db.debug_state()
                );
            }
        });
        let mut h = hist();
        for t in tasks {
            h.add(t.await?)
                .map_err(|e| format!("merging histograms: {e}"))?;
        }
        drop(watch);
        Ok(h)
    }

    fn write_amplification(&self) -> Option<f64> {
        let s = self.0.stats();
        // Nothing written since the last open (a read row after a reopen): no ratio.
        (s.user_bytes_written > 0).then_some(s.write_amplification)
    }
}

/// Runs the plan on NextDB: one executor fixed to `--cpu`, a fresh directory.
pub fn run(s: &Setup, rep: u64) -> Result<Vec<Measured>, String> {
    if let Err(e) = nextdb_engine::fs::glommio_fs::raise_memlock_limit() {
        eprintln!("warning: {e}");
    }
    let s2 = s.clone();
    let handle = nextdb_engine::runtime::executor_builder(glommio::Placement::Fixed(s.args.cpu))
        .name("nextdb-bench")
        .spawn(move || async move {
            let dir = s2.args.dir.join("nextdb");
            super::workload::suite::<NextDb>(&s2, &dir, rep).await
        })
        .map_err(|e| format!("cannot start executor: {e}"))?;
    handle.join().map_err(|e| format!("executor failed: {e}"))?
}
