//! Every limit and default of the node, in one place.

use nextdb_engine::EngineConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Hash slots: a key's slot is `crc32c(key) % SLOTS`. Fixed for the life of a data
/// directory (recorded in its `NODE` file); partitions own contiguous slot ranges.
pub const SLOTS: u32 = 16384;

/// Depth of each cross-core queue (per ordered pair of cores). A full queue makes the
/// sender wait, which stops its connection from reading more requests.
pub const MESH_QUEUE_DEPTH: usize = 1024;

/// Requests one core executes at once (its own connections' and those routed to it
/// from other cores); beyond it the core answers BUSY. Only requests that did not
/// finish on their first poll hold a slot (writes waiting for their group commit,
/// reads waiting for I/O), so this bounds a core's tasks and the request buffers they
/// pin. Above what the benchmarks' loads keep waiting per core (8 connections x 128
/// pipelined writes over the cores), so a healthy node never answers BUSY.
pub const MAX_REQUESTS_IN_FLIGHT_PER_CORE: usize = 4096;
/// How long a request may run on its core before it is answered TIMEOUT.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a core checks the process-wide shutdown flag.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// How often a started core checks whether every core has opened its engine, and a
/// drained one whether every core has drained (both wait on other threads).
pub const OPEN_POLL: Duration = Duration::from_millis(2);
pub const DRAIN_POLL: Duration = Duration::from_millis(5);

/// With `--sync=none`, how often each core fsyncs its log.
pub const SYNC_NONE_INTERVAL: Duration = Duration::from_millis(10);

/// Registered I/O memory per executor (locked memory: counts against RLIMIT_MEMLOCK).
pub const IO_MEMORY_PER_SHARD: usize = nextdb_engine::config::LOCAL_EXECUTOR_IO_MEMORY_BYTES;
/// Locked memory the node needs besides the registered buffers (io_uring rings).
pub const MEMLOCK_MARGIN_BYTES: u64 = 1 << 20;

/// The user-key namespace byte of the key-value API inside each engine. 0x00 is kept
/// for the node's own records; SQL tables get their own prefixes later.
pub const KV_NAMESPACE: u8 = 0x01;
/// Bytes the shard puts before every KV key before it reaches the engine.
pub const KV_PREFIX_BYTES: usize = 1;
/// Largest KV key: the engine's key limit less the namespace prefix. The native
/// protocol's `MAX_KEY_BYTES` must equal it (the server asserts so at compile time).
pub const MAX_KV_KEY_BYTES: usize = nextdb_engine::config::MAX_KEY_BYTES - KV_PREFIX_BYTES;
/// Largest KV value: the engine's own limit (values are stored unprefixed).
pub const MAX_KV_VALUE_BYTES: usize = nextdb_engine::config::MAX_VALUE_BYTES;

/// What a scanned entry costs beyond its key and value bytes (its two buffers in
/// memory), so a page of empty entries is bounded by bytes too.
pub const SCAN_ENTRY_OVERHEAD_BYTES: usize = 2 * std::mem::size_of::<Vec<u8>>();

/// Raft (`raft/`). The replica id of a node that runs without peers: every partition
/// is a group of this one voter.
pub const RAFT_SINGLE_NODE_ID: u64 = 1;
/// Ticks without a leader's word before a follower campaigns (raft-rs randomizes it
/// within [1, 2) times this), and between a leader's heartbeats.
pub const RAFT_ELECTION_TICKS: usize = 10;
pub const RAFT_HEARTBEAT_TICKS: usize = 2;
/// Largest append message to one follower, and appends in flight to it.
pub const RAFT_MAX_MSG_BYTES: u64 = 1 << 20;
pub const RAFT_MAX_INFLIGHT_MSGS: usize = 256;
/// Proposed but uncommitted entry bytes a leader accepts before refusing proposals
/// (the core's write gate bounds it far lower on a healthy node).
pub const RAFT_MAX_UNCOMMITTED_BYTES: u64 = 64 << 20;
/// Committed entry bytes handed to the engine per ready.
pub const RAFT_MAX_COMMITTED_BYTES_PER_READY: u64 = 16 << 20;
/// Applied entries a group keeps in memory (for followers that fall behind) beyond
/// those not yet flushed to SSTables, which it always keeps (recovery replays them).
pub const RAFT_LOG_CACHE_BYTES: usize = 4 << 20;

/// When a PUT is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// After its log record is fsynced (group commit). The default.
    Fsync,
    /// Once its log record is written to the file, without fsync; the log is fsynced
    /// every `SYNC_NONE_INTERVAL`. Benchmarks only: survives a process crash, but a
    /// power loss may lose the acknowledged writes of the last interval.
    None,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fsync" => Ok(SyncMode::Fsync),
            "none" => Ok(SyncMode::None),
            _ => Err(format!("unknown sync mode {s:?} (expected fsync or none)")),
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::Fsync => "fsync",
            SyncMode::None => "none",
        })
    }
}

/// Default threshold of the slow-operation log, in milliseconds.
pub const DEFAULT_SLOW_OP_MS: u64 = 100;

/// Ranges of the live settings (`settings.rs`, `nextdb admin config set`); sizes are
/// per core. The slow-operation threshold tops out at an hour (anything slower is a
/// request the deadline already ended).
pub const MAX_SLOW_OP_MS: u64 = 3_600_000;
/// A block cache of at least 1 MiB (`serve` refuses 0 too) and at most 1 TiB.
pub const MIN_BLOCK_CACHE_MB: u64 = 1;
pub const MAX_BLOCK_CACHE_MB: u64 = 1 << 20;
/// A row cache of 0 (keeps nothing) up to 1 TiB.
pub const MAX_ROW_CACHE_MB: u64 = 1 << 20;
/// The flush and compaction queue's scheduler shares: glommio's range for a task
/// queue (foreground queues have 1000; the engine starts it at `BACKGROUND_SHARES`).
pub const MIN_BACKGROUND_SHARES: u64 = 1;
pub const MAX_BACKGROUND_SHARES: u64 = nextdb_engine::config::MAX_TASK_QUEUE_SHARES as u64;

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Number of shards (executors); each is pinned to CPU `i % cpus`.
    pub shards: usize,
    pub sync: SyncMode,
    pub engine: EngineConfig,
    /// Pin shard i to CPU i (false: let the kernel place threads; tests on busy hosts).
    pub pin_cores: bool,
    /// Requests each core executes at once before answering BUSY.
    pub max_requests_in_flight: usize,
    /// Deadline of a request on its core.
    pub request_timeout: Duration,
    /// Requests at least this slow are logged (`live.rs`); 0: the log is off.
    pub slow_op_ms: u64,
    /// The slow-operation log shows a key's length and hash, not its bytes.
    pub slow_op_redact: bool,
    /// Where each shard archives its sealed log segments (`ARCHIVE/shard-N`), for
    /// point-in-time restore; None: no archive.
    pub archive_dir: Option<PathBuf>,
}

impl NodeConfig {
    pub fn new(data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            data_dir,
            shards: available_cores(),
            sync: SyncMode::Fsync,
            engine: EngineConfig::default(),
            pin_cores: true,
            max_requests_in_flight: MAX_REQUESTS_IN_FLIGHT_PER_CORE,
            request_timeout: REQUEST_TIMEOUT,
            slow_op_ms: DEFAULT_SLOW_OP_MS,
            slow_op_redact: false,
            archive_dir: None,
        }
    }
}

/// CPUs this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The CPU numbers this process may run on (its affinity mask, as `taskset` or a
/// cgroup cpuset left it), in increasing order; empty if the kernel will not say.
/// Shard `i` is pinned to entry `i` (modulo the count): pinning to CPU `i` itself
/// would leave the mask an operator chose (`taskset -c 4-7` ran every shard on 0–3)
/// or, under a cpuset, fail to start.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain bits; zeroed is the empty set, and the kernel
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is this thread; `set` is valid for `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}
