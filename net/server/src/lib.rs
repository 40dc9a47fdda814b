//! `nextdb-net`: network services of a node: the native protocol v1 server
//! (`docs/protocol.md`) and the PostgreSQL wire protocol (`pg`); HTTP follows. Everything here runs on a shard's
//! glommio executor and is owned by that core.

pub mod auth_secret;
pub mod config;
pub mod conn;
pub mod dispatch;
pub mod file_error;
pub mod frames;
pub mod handshake;
pub mod pg;
pub mod server;
pub mod slow_log;
pub mod tls;
pub mod users;

pub use config::ServerConfig;

// The wire's limits are the node's: a key or value the decoder admits is one the
// shard can store, so no request fails deeper down for its size.
const _: () = assert!(
    nextdb_proto::limits::MAX_KEY_BYTES == nextdb_shard::config::MAX_KV_KEY_BYTES,
    "the protocol's key limit must equal the shard's"
);
const _: () = assert!(
    nextdb_proto::limits::MAX_VALUE_BYTES == nextdb_shard::config::MAX_KV_VALUE_BYTES,
    "the protocol's value limit must equal the shard's"
);
pub use server::serve;
pub use users::UserStore;
