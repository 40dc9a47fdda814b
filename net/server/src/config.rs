//! Limits and settings of the native protocol server, in one place.

use crate::server::ShardPorts;
use crate::users::UserStore;
use nextdb_proto::scram::MockAuthSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Connections one core accepts before refusing with TOO_MANY_CONNECTIONS.
pub const MAX_CONNECTIONS_PER_SHARD: usize = 20_000;
/// Time a client has from connecting to finishing authentication.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not read its responses for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests one connection may have in flight; beyond it the server stops reading
/// from the socket until some complete (pipelining back-pressure).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// Request bytes (encoded frames) one connection may have executing in their own
/// tasks; beyond it the server stops reading from the socket until some complete. The
/// count bound above alone let a pipeline of 1 MiB PUTs hold a gigabyte per
/// connection. A request is admitted while the connection is below the bound, so one
/// frame of any legal size still runs.
pub const MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION: usize = 8 << 20;
/// Response bytes one connection may have queued before the server stops reading.
pub const MAX_PENDING_OUTPUT_BYTES: usize = 4 << 20;
/// Response bytes one connection may hold (queued and finished-but-unsent). Beyond
/// it the client is not reading what it asked for: the connection is closed, as
/// Redis does with its client output buffer limit. Bounds memory per connection.
pub const MAX_HELD_RESPONSE_BYTES: usize = 64 << 20;
/// Read buffer of a connection: starts small (idle connections stay cheap), grows to
/// hold one whole frame, and shrinks back when it empties.
pub const READ_BUFFER_INITIAL_BYTES: usize = 4096;
pub const READ_BUFFER_KEEP_BYTES: usize = 64 << 10;
/// Time in-flight requests get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// PostgreSQL protocol: bytes of a startup packet (PostgreSQL allows 10,000).
pub const PG_MAX_STARTUP_BYTES: usize = 10_000;
/// PostgreSQL protocol: bytes of one client message (type byte and length word
/// included). Larger messages are refused and the connection closed.
pub const PG_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// PostgreSQL protocol: bytes read from the socket at once.
pub const PG_READ_CHUNK_BYTES: usize = 16 << 10;
/// PostgreSQL protocol: prepared statements and portals one session may hold.
pub const PG_MAX_PREPARED_PER_SESSION: usize = 10_000;
/// PostgreSQL protocol: the version reported in `server_version` (the dialect and
/// protocol behaviour NextDB follows).
pub const PG_SERVER_VERSION: &str = "15.0";
/// Default address of the PostgreSQL protocol listener.
pub const PG_DEFAULT_LISTEN: &str = "127.0.0.1:5433";
/// HTTP (`http/`): default address of the listener (`/metrics`, the dashboard).
pub const HTTP_DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// HTTP: bytes of a request's line and headers together; past it 431 and close.
pub const HTTP_MAX_HEAD_BYTES: usize = 8 << 10;
/// HTTP: headers of one request; past it 431 and close.
pub const HTTP_MAX_HEADERS: usize = 32;
/// HTTP: bytes of a request body. No endpoint takes one; a client's small body is
/// read and dropped (the connection stays usable), a larger one is 413 and close.
pub const HTTP_MAX_BODY_BYTES: usize = 4 << 10;
/// HTTP: time a client has from the first byte of a request to the end of its
/// body; a slower client is answered 408 and closed (slowloris).
pub const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP: an idle keep-alive connection (no byte of a next request) is closed after it.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTP: a client that does not read a response for this long is closed.
pub const HTTP_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP: after an error answer the server reads and drops what the client still
/// sends, up to these bytes and this time, before it closes (a close with unread
/// bytes is a reset, which can destroy the answer before the client reads it).
pub const HTTP_LINGER_MAX_BYTES: usize = 256 << 10;
pub const HTTP_LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP: connections one core serves at once; more are answered 503 and closed.
pub const HTTP_MAX_CONNECTIONS_PER_SHARD: usize = 64;
/// HTTP: requests one keep-alive connection may send before the server closes it.
pub const HTTP_MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
/// HTTP: bytes read from the socket at once.
pub const HTTP_READ_CHUNK_BYTES: usize = 4 << 10;
/// HTTP: how long cores other than 0 wait for core 0 to bind an ephemeral HTTP
/// port (`--http-listen` with port 0) before giving up.
pub const HTTP_PORT_WAIT: Duration = Duration::from_secs(10);
/// `/metrics`: upper bounds (µs) of the request-latency histogram's buckets (then
/// +Inf), Prometheus's usual spread from 50 µs to 10 s.
pub const METRICS_LATENCY_BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// Dashboard JSON: latency buckets are 2^(1/4) apart from 1 µs (four per octave,
/// ~19% wide), this many of them (to ~67 s, past the longest tracked latency).
pub const DASHBOARD_BUCKETS_PER_OCTAVE: u32 = 4;
pub const DASHBOARD_LATENCY_BUCKETS: usize = 105;
/// Name the server reports in HELLO.
pub const SERVER_NAME: &str = concat!("nextdb ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Accept sessions without authentication (local development only).
    pub insecure: bool,
    pub users: Arc<UserStore>,
    /// Keys the salt unknown users are shown; `auth_secret::load_or_create` reads
    /// the node's own (a fresh one here, for embedders without a data directory).
    pub mock_auth: MockAuthSecret,
    pub max_frame_bytes: usize,
    pub max_connections_per_shard: usize,
    /// TLS on the native port (None: plain TCP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Address of the PostgreSQL protocol listener (None: not served).
    pub pg_listen: Option<SocketAddr>,
    /// Each core's own native listener, for shard-aware clients (`server::ShardPorts`;
    /// on by default, each core on an ephemeral port of the `listen` IP).
    pub shard_ports: Arc<ShardPorts>,
    /// The HTTP listener (`/metrics`, the dashboard; None: not served).
    pub http: Option<Arc<crate::http::HttpConfig>>,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, insecure: bool, users: Arc<UserStore>) -> ServerConfig {
        ServerConfig {
            listen,
            insecure,
            users,
            mock_auth: MockAuthSecret::generate(),
            max_frame_bytes: nextdb_proto::limits::MAX_FRAME_BYTES,
            max_connections_per_shard: MAX_CONNECTIONS_PER_SHARD,
            tls: None,
            pg_listen: None,
            shard_ports: Arc::new(ShardPorts::new(Some(0))),
            http: None,
        }
    }
}
