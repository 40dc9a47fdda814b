//! `nextdb-perf`: benchmark suites that run NextDB and its peers in the same
//! invocation and report medians of repeated runs, ratios that pass validity gates,
//! and latency percentiles (hdrhistogram), as JSON and as a self-contained HTML page.
//!
//! The library is shared by two binaries: `nextdb-perf` (this crate) and
//! `nextdb-perf-rocksdb` (`perf/rocksdb-peer`, outside the workspace), which adds the
//! RocksDB crate as the engine suite's main peer.

pub mod backup;
pub mod cpu;
pub mod dbbench;
pub mod disk;
pub mod engine;
pub mod html;
pub mod kv;
pub mod report;
pub mod stats;
pub mod workload;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nextdb-perf", about = "NextDB benchmarks against their peers")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// Storage engine vs RocksDB: the rocksdb crate (NDEBUG) and db_bench.
    Engine(engine::EngineArgs),
    /// NextDB server (native protocol) vs Redis 7 (our driver and redis-benchmark).
    Kv(kv::KvArgs),
    /// Online backup throughput vs the disk's sequential write speed (same run).
    Backup(backup::BackupArgs),
}

/// Parses the command line and runs the suite; `krate` is the RocksDB crate's engine
/// side when the binary has one.
pub fn main_with(krate: Option<&engine::CratePeer>) {
    let cli = Cli::parse();
    let res = match cli.suite {
        Suite::Engine(args) => engine::run(args, krate),
        Suite::Kv(args) => kv::run(args),
        Suite::Backup(args) => backup::run(args),
    };
    if let Err(e) = res {
        eprintln!("nextdb-perf: {e}");
        std::process::exit(1);
    }
}
