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
        }
    }
}
