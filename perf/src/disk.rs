//! What the disk under a benchmark's data directory can do, measured in the same run,
//! so durable rows are read against the physical limit rather than only against the
//! peer: the latency of one 4 KiB `O_DIRECT` overwrite followed by `fdatasync` (what a
//! log commit costs when nothing else shares it). One commit at a time can reach at
//! most `1 / mean latency` commits per second; more acknowledged writes per second
//! than that need group commit.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes of one probe write (one log page).
const WRITE_BYTES: usize = 4096;
/// The probe file's size: writes cycle over it, preallocated and written once first
/// so every timed write is an overwrite (no metadata for `fdatasync` to flush).
const FILE_BYTES: usize = 4 << 20;
/// The probe stops after this long or `MAX_SYNCS`, whichever comes first.
const PROBE_TIME: Duration = Duration::from_secs(2);
const MAX_SYNCS: u64 = 20_000;

/// The disk's commit latency, as measured.
#[derive(Debug, Clone)]
pub struct FsyncProbe {
    pub syncs: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl FsyncProbe {
    /// Commits per second one writer at a time can reach: the physical limit of an
    /// ungrouped log.
    pub fn serial_commits_per_s(&self) -> f64 {
        if self.mean_us > 0.0 {
            1e6 / self.mean_us
        } else {
            0.0
        }
    }

    pub fn json(&self) -> Value {
        let r = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "method": format!("{WRITE_BYTES}-byte O_DIRECT overwrite + fdatasync, one at a \
                time, in a preallocated {} MiB file in the data directory", FILE_BYTES >> 20),
            "syncs": self.syncs,
            "mean_us": r(self.mean_us),
            "p50_us": r(self.p50_us),
            "p99_us": r(self.p99_us),
            "serial_commits_per_s": self.serial_commits_per_s().round(),
        })
    }
}

/// A 4 KiB-aligned buffer for `O_DIRECT`.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("valid layout");
        // SAFETY: non-zero size, valid alignment; freed in `Drop` with the same layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Aligned { ptr, layout }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` owns `layout.size()` initialised (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn prepare(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let chunk = Aligned::new(1 << 20);
    for off in (0..FILE_BYTES).step_by(1 << 20) {
        f.write_all_at(chunk.bytes(), off as u64)?;
    }
    f.sync_all()?;
    Ok(f)
}

/// Measures commit latency in `dir` (the file system the servers' logs live on).
pub fn fsync_probe(dir: &Path) -> std::io::Result<FsyncProbe> {
    let path = dir.join("fsync-probe.tmp");
    let f = prepare(&path)?;
    let page = Aligned::new(WRITE_BYTES);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let (mut syncs, mut total_ns) = (0u64, 0u128);
    let start = Instant::now();
    while start.elapsed() < PROBE_TIME && syncs < MAX_SYNCS {
        let off = (syncs as usize * WRITE_BYTES) % FILE_BYTES;
        let t = Instant::now();
        f.write_all_at(page.bytes(), off as u64)?;
        f.sync_data()?;
        let ns = t.elapsed().as_nanos();
        total_ns += ns;
        let _ = hist.record(ns.min(u128::from(u64::MAX)) as u64);
        syncs += 1;
    }
    drop(f);
    std::fs::remove_file(&path)?;
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(FsyncProbe {
        syncs,
        mean_us: total_ns as f64 / syncs.max(1) as f64 / 1000.0,
        p50_us: us(0.5),
        p99_us: us(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_times_real_commits_and_cleans_up() {
        // O_DIRECT needs a file system that has it (the temporary directory here).
        let dir = tempfile::tempdir().unwrap();
        let p = fsync_probe(dir.path()).unwrap();
        assert!(p.syncs > 0 && p.mean_us > 0.0 && p.p99_us >= p.p50_us);
        assert!(p.serial_commits_per_s() > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
