//! `nextdb-perf`: benchmark suites that run NextDB and a peer in the same invocation and
//! report throughput ratios and latency percentiles (hdrhistogram).

mod dbbench;
mod engine;
mod kv;
mod report;
mod workload;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "nextdb-perf", about = "NextDB benchmarks against their peers")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// Storage engine vs RocksDB's db_bench (fillseq, fillrandom, readrandom, ...).
    Engine(engine::EngineArgs),
    /// NextDB server (native protocol) vs Redis 7 (our driver and redis-benchmark).
    Kv(kv::KvArgs),
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.suite {
        Suite::Engine(args) => engine::run(args),
        Suite::Kv(args) => kv::run(args),
    };
    if let Err(e) = res {
        eprintln!("nextdb-perf: {e}");
        std::process::exit(1);
    }
}

/// Where results go by default: `target/perf/SUITE.json` under the workspace.
pub fn default_out(suite: &str) -> PathBuf {
    PathBuf::from("target/perf").join(format!("{suite}.json"))
}
