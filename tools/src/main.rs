//! `nextdb`: the command-line entry point.

mod admin;
mod backup;
mod config;
mod demo;
mod kv;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: buffers allocated on one core and freed on
/// another (cross-core requests) made glibc's arena locks a measurable cost, and
/// mimalloc's per-thread heaps free remote blocks without a lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "nextdb",
    version,
    about = "NextDB: a distributed, multi-model database"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process and matched at once: the size of the largest variant
// (`serve`'s flags) costs nothing, and boxing it would only complicate clap's derive.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Runs a node: one shard per core, the native protocol on every core.
    Serve(serve::ServeArgs),
    /// Key-value commands against a running node.
    Kv(kv::KvArgs),
    /// Node administration: users, stats.
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// Starts a local node, loads sample data and runs a short session, then an
    /// interactive shell when standard input is a terminal.
    Demo {
        /// Data directory (must be on a file system with O_DIRECT, e.g. ext4 or xfs).
        #[arg(long, default_value = "nextdb-demo-data")]
        dir: PathBuf,
        /// Number of sample records to load.
        #[arg(long, default_value_t = 10_000)]
        records: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Serve(args) => serve::run(args),
        Cmd::Kv(args) => kv::run(args),
        Cmd::Admin(cmd) => admin::run(cmd),
        Cmd::Demo { dir, records } => demo::run(dir, records),
    };
    std::process::exit(code);
}
