//! `nextdb serve`: a node with one shard per core, and the native protocol and the
//! PostgreSQL protocol on every one.
//!
//! Settings come from flags, then `NEXTDB_*` environment variables, then a TOML file
//! (`--config`), then defaults; the resolved settings are printed at start.

use clap::Args;
use nextdb_net::{ServerConfig, UserStore};
use nextdb_shard::config::available_cores;
use nextdb_shard::node::Node;
use nextdb_shard::shutdown::Shutdown;
use nextdb_shard::{NodeConfig, SyncMode};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
pub const DEFAULT_DATA_DIR: &str = "nextdb-data";

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment win).
    #[arg(long, env = "NEXTDB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (a file system with O_DIRECT, e.g. ext4 or xfs).
    #[arg(long, env = "NEXTDB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the native protocol, bound on every core (SO_REUSEPORT).
    #[arg(long, env = "NEXTDB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the PostgreSQL protocol, bound on every core (SO_REUSEPORT).
    #[arg(long, env = "NEXTDB_PG_LISTEN")]
    pub pg_listen: Option<SocketAddr>,
    /// Address of the HTTP listener (`/metrics`, `/healthz`, `/readyz`,
    /// `/debug/state`, the dashboard at `/`), bound on every core (SO_REUSEPORT);
    /// `off` disables it. Default 127.0.0.1:8080.
    #[arg(long, env = "NEXTDB_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Each core's own native port, advertised in HELLO so shard-aware clients reach
    /// the core that owns a key: `auto` (default: an ephemeral port per core, on the
    /// --listen IP), `off`, or a number BASE (core i listens on BASE + i).
    #[arg(long, env = "NEXTDB_SHARD_PORTS")]
    pub shard_ports: Option<String>,
    /// Shards (one executor per core). Default: every core. Fixed once data exists.
    #[arg(long, env = "NEXTDB_SHARDS")]
    pub shards: Option<usize>,
    /// When a write is acknowledged: `fsync` (durable, default) or `none` (benchmarks
    /// only: once written to the log file, not fsynced; survives a process crash, a
    /// power loss may lose the last ~10 ms of acknowledged writes).
    #[arg(long, env = "NEXTDB_SYNC")]
    pub sync: Option<SyncMode>,
    /// Accept clients without authentication (local development only).
    #[arg(long, env = "NEXTDB_INSECURE")]
    pub insecure: Option<Option<bool>>,
    /// Memtable size per shard in MiB.
    #[arg(long, env = "NEXTDB_MEMTABLE_MB")]
    pub memtable_mb: Option<usize>,
    /// Block cache per shard in MiB.
    #[arg(long, env = "NEXTDB_BLOCK_CACHE_MB")]
    pub block_cache_mb: Option<usize>,
    /// Connections each core accepts before refusing new ones.
    #[arg(long, env = "NEXTDB_MAX_CONNECTIONS")]
    pub max_connections_per_shard: Option<usize>,
    /// Requests each core executes at once; beyond it the core answers BUSY.
    #[arg(long, env = "NEXTDB_MAX_REQUESTS_IN_FLIGHT")]
    pub max_requests_in_flight: Option<usize>,
    /// Deadline of a request on its core, in milliseconds (then TIMEOUT).
    #[arg(long, env = "NEXTDB_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Let the kernel place shard threads instead of pinning shard i to the i-th CPU
    /// this process may use (its affinity mask: `taskset`, a cgroup cpuset).
    #[arg(long, env = "NEXTDB_NO_PIN")]
    pub no_pin: Option<Option<bool>>,
    /// TLS certificate chain (PEM, leaf first): the native port then speaks TLS only.
    #[arg(long, env = "NEXTDB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "NEXTDB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log requests at least this slow, in milliseconds (0: off; default 100).
    #[arg(long, env = "NEXTDB_SLOW_OP_MS")]
    pub slow_op_ms: Option<u64>,
    /// The slow-operation log shows a key's length and a hash instead of its bytes.
    #[arg(long, env = "NEXTDB_SLOW_OP_REDACT")]
    pub slow_op_redact: Option<Option<bool>>,
    /// Format of the log on standard error: `text` (default) or `json` (one object a
    /// line).
    #[arg(long, env = "NEXTDB_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Copy every sealed log segment into DIR/shard-N (point-in-time restore with
    /// `nextdb admin restore --archive-dir DIR --to-time T`).
    #[arg(long, env = "NEXTDB_ARCHIVE_DIR")]
    pub archive_dir: Option<PathBuf>,
}

/// Format of the node's log (`tracing` events on standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The TOML file: the same settings, snake_case.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    pg_listen: Option<SocketAddr>,
    http_listen: Option<String>,
    shard_ports: Option<String>,
    shards: Option<usize>,
    sync: Option<String>,
    insecure: Option<bool>,
    memtable_mb: Option<usize>,
    block_cache_mb: Option<usize>,
    max_connections_per_shard: Option<usize>,
    max_requests_in_flight: Option<usize>,
    request_timeout_ms: Option<u64>,
    no_pin: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    slow_op_ms: Option<u64>,
    slow_op_redact: Option<bool>,
    log_format: Option<LogFormat>,
    archive_dir: Option<PathBuf>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub pg_listen: SocketAddr,
    /// None: no HTTP listener (`--http-listen off`).
    pub http_listen: Option<SocketAddr>,
    /// None: no per-core ports; Some(0): ephemeral; Some(base): base + core.
    pub shard_port_base: Option<u16>,
    pub shards: usize,
    pub sync: SyncMode,
    pub insecure: bool,
    pub memtable_mb: usize,
    pub block_cache_mb: usize,
    pub max_connections_per_shard: usize,
    pub max_requests_in_flight: usize,
    pub request_timeout_ms: u64,
    pub pin: bool,
    /// Certificate chain and key (PEM) for TLS on the native port.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Threshold of the slow-operation log (0: off).
    pub slow_op_ms: u64,
    pub slow_op_redact: bool,
    pub log_format: LogFormat,
    /// Log archive (absolute), if any.
    pub archive_dir: Option<PathBuf>,
}

fn flag(v: Option<Option<bool>>) -> Option<bool> {
    // `--insecure` alone means true; `--insecure=false` or NEXTDB_INSECURE=false too.
    v.map(|x| x.unwrap_or(true))
}

impl ServeArgs {
    pub fn resolve(self) -> Result<Settings, String> {
        let file: FileConfig = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let engine = nextdb_engine::EngineConfig::default();
        let sync = match (self.sync, file.sync) {
            (Some(s), _) => s,
            (None, Some(s)) => s.parse()?,
            (None, None) => SyncMode::Fsync,
        };
        let listen = match (self.listen, file.listen) {
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => DEFAULT_LISTEN
                .parse()
                .map_err(|e| format!("default listen address: {e}"))?,
        };
        let pg_listen = match (self.pg_listen, file.pg_listen) {
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => nextdb_net::config::PG_DEFAULT_LISTEN
                .parse()
                .map_err(|e| format!("default PostgreSQL address: {e}"))?,
        };
        let http_listen = parse_http_listen(
            self.http_listen
                .or(file.http_listen)
                .as_deref()
                .unwrap_or(nextdb_net::config::HTTP_DEFAULT_LISTEN),
        )?;
        let shard_port_base = parse_shard_ports(
            self.shard_ports
                .or(file.shard_ports)
                .as_deref()
                .unwrap_or("auto"),
        )?;
        let s = Settings {
            shard_port_base,
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            pg_listen,
            http_listen,
            shards: self.shards.or(file.shards).unwrap_or_else(available_cores),
            sync,
            insecure: flag(self.insecure).or(file.insecure).unwrap_or(false),
            memtable_mb: self
                .memtable_mb
                .or(file.memtable_mb)
                .unwrap_or(engine.memtable_bytes >> 20),
            block_cache_mb: self
                .block_cache_mb
                .or(file.block_cache_mb)
                .unwrap_or(engine.block_cache_bytes >> 20),
            max_connections_per_shard: self
                .max_connections_per_shard
                .or(file.max_connections_per_shard)
                .unwrap_or(nextdb_net::config::MAX_CONNECTIONS_PER_SHARD),
            max_requests_in_flight: self
                .max_requests_in_flight
                .or(file.max_requests_in_flight)
                .unwrap_or(nextdb_shard::config::MAX_REQUESTS_IN_FLIGHT_PER_CORE),
            request_timeout_ms: self
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .unwrap_or(nextdb_shard::config::REQUEST_TIMEOUT.as_millis() as u64),
            pin: !flag(self.no_pin).or(file.no_pin).unwrap_or(false),
            slow_op_ms: self
                .slow_op_ms
                .or(file.slow_op_ms)
                .unwrap_or(nextdb_shard::config::DEFAULT_SLOW_OP_MS),
            slow_op_redact: flag(self.slow_op_redact)
                .or(file.slow_op_redact)
                .unwrap_or(false),
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            archive_dir: match self.archive_dir.or(file.archive_dir) {
                Some(d) => Some(
                    std::path::absolute(&d)
                        .map_err(|e| format!("--archive-dir {}: {e}", d.display()))?,
                ),
                None => None,
            },
            tls: match (
                self.tls_cert.or(file.tls_cert),
                self.tls_key.or(file.tls_key),
            ) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(
                        "TLS needs both a certificate and a key (--tls-cert, --tls-key)".into(),
                    );
                }
            },
        };
        if s.shards == 0 || s.shards > 256 {
            return Err(format!("--shards must be 1..=256, not {}", s.shards));
        }
        if s.max_requests_in_flight == 0 || s.request_timeout_ms == 0 {
            return Err(
                "--max-requests-in-flight and --request-timeout-ms must be at least 1".into(),
            );
        }
        if s.memtable_mb == 0 || s.block_cache_mb == 0 {
            return Err("--memtable-mb and --block-cache-mb must be at least 1".into());
        }
        Ok(s)
    }
}

/// `off` → None, an address → Some(address).
fn parse_http_listen(v: &str) -> Result<Option<SocketAddr>, String> {
    match v {
        "off" => Ok(None),
        a => a
            .parse()
            .map(Some)
            .map_err(|_| format!("--http-listen is an address (IP:PORT) or off, not {a:?}")),
    }
}

/// `auto` → Some(0), `off` → None, a port → Some(port).
fn parse_shard_ports(v: &str) -> Result<Option<u16>, String> {
    match v {
        "auto" => Ok(Some(0)),
        "off" => Ok(None),
        n => match n.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(format!(
                "--shard-ports is auto, off or a port number, not {n:?}"
            )),
        },
    }
}

pub fn run(args: ServeArgs) -> i32 {
    let s = match args.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nextdb: {e}");
            return 2;
        }
    };
    init_log(s.log_format);
    match serve(s) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nextdb: {e}");
            1
        }
    }
}

/// Runs a node with `s` until SIGINT/SIGTERM.
pub fn serve(s: Settings) -> Result<(), String> {
    serve_with(s, Shutdown::new(), true)
}

/// Runs a node; `shutdown` lets an embedding caller (the demo) stop it.
pub fn serve_with(s: Settings, shutdown: Arc<Shutdown>, signals: bool) -> Result<(), String> {
    match Node::ensure_memlock(s.shards) {
        Ok(Some(note)) => eprintln!("nextdb: note: {note}"),
        Ok(None) => {}
        Err(e) => return Err(e.to_string()),
    }
    raise_nofile_limit();
    std::fs::create_dir_all(&s.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", s.data_dir.display()))?;
    let users = UserStore::load(&s.data_dir).map_err(|e| e.to_string())?;
    let mock_auth =
        nextdb_net::auth_secret::load_or_create(&s.data_dir).map_err(|e| e.to_string())?;
    if !s.insecure && users.is_empty() {
        return Err(format!(
            "no users in {}: create one with `nextdb admin user add NAME --data-dir {}` \
             (password from NEXTDB_PASSWORD or standard input), or start with --insecure \
             for local development",
            UserStore::path(&s.data_dir).display(),
            s.data_dir.display()
        ));
    }
    println!("nextdb {} starting", env!("CARGO_PKG_VERSION"));
    println!("  data_dir                  = {}", s.data_dir.display());
    println!("  listen                    = {}", s.listen);
    println!("  pg_listen                 = {}", s.pg_listen);
    println!(
        "  http_listen               = {}",
        s.http_listen.map_or("off".to_string(), |a| a.to_string())
    );
    println!(
        "  shard_ports               = {}",
        match s.shard_port_base {
            None => "off".to_string(),
            Some(0) => "auto".to_string(),
            Some(p) => format!("{p} + core"),
        }
    );
    println!(
        "  shards                    = {}{}",
        s.shards,
        if s.pin { " (pinned to cores)" } else { "" }
    );
    println!("  sync                      = {}", s.sync);
    println!("  memtable_mb               = {}", s.memtable_mb);
    println!("  block_cache_mb            = {}", s.block_cache_mb);
    println!(
        "  max_connections_per_shard = {}",
        s.max_connections_per_shard
    );
    println!("  max_requests_in_flight    = {}", s.max_requests_in_flight);
    println!("  request_timeout_ms        = {}", s.request_timeout_ms);
    println!("  slow_op_ms                = {}", s.slow_op_ms);
    println!("  slow_op_redact            = {}", s.slow_op_redact);
    if let Some(a) = &s.archive_dir {
        println!("  archive_dir               = {}", a.display());
    }
    let tls = match &s.tls {
        Some((cert, key)) => Some(nextdb_net::tls::server_config(cert, key)?),
        None => None,
    };
    println!(
        "  tls                       = {}",
        match &s.tls {
            Some((cert, _)) => format!("on ({})", cert.display()),
            None => "off".to_string(),
        }
    );
    println!(
        "  auth                      = {}",
        if s.insecure {
            "NONE (--insecure)".to_string()
        } else {
            format!("SCRAM-SHA-256 ({} users)", users.names().count())
        }
    );
    if s.insecure {
        eprintln!(
            "nextdb: WARNING: --insecure: any client can read and write without authenticating. Local development only."
        );
    }
    if s.sync == SyncMode::None {
        eprintln!(
            "nextdb: WARNING: --sync none: writes are acknowledged before they are fsynced; they survive a crash of this process, but a power loss may lose the last ~10 ms of acknowledged writes. Benchmarks only."
        );
    }
    if signals {
        shutdown
            .register_signals()
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    }
    let mut node = NodeConfig::new(s.data_dir.clone());
    node.shards = s.shards;
    node.sync = s.sync;
    node.pin_cores = s.pin;
    node.max_requests_in_flight = s.max_requests_in_flight;
    node.request_timeout = std::time::Duration::from_millis(s.request_timeout_ms);
    node.archive_dir = s.archive_dir.clone();
    node.engine.memtable_bytes = s.memtable_mb << 20;
    node.engine.block_cache_bytes = s.block_cache_mb << 20;
    node.slow_op_ms = s.slow_op_ms;
    node.slow_op_redact = s.slow_op_redact;
    let mut server = ServerConfig::new(s.listen, s.insecure, Arc::new(users));
    server.max_connections_per_shard = s.max_connections_per_shard;
    server.tls = tls;
    server.mock_auth = mock_auth;
    server.pg_listen = Some(s.pg_listen);
    server.shard_ports = Arc::new(nextdb_net::server::ShardPorts::new(s.shard_port_base));
    server.http = s
        .http_listen
        .map(|a| Arc::new(nextdb_net::http::HttpConfig::new(a)));
    let server = Arc::new(server);
    let result = Node::run(node, shutdown, move |ctx| {
        let server = server.clone();
        async move { nextdb_net::serve_node(ctx, server).await }
    });
    match result {
        Ok(()) => {
            println!("nextdb: stopped cleanly");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Sends `tracing` events at INFO and above (the slow-operation log among them) to
/// standard error, as text or one JSON object a line.
fn init_log(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false);
    // Err: a subscriber is already set (an embedding caller's); keep it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Raises the open-file limit to its hard limit: every connection is a descriptor,
/// and a node is expected to hold thousands of (mostly idle) connections.
fn raise_nofile_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
