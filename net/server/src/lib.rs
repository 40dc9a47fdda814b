//! `nextdb-net`: network services of a node. Today the native protocol v1 server
//! (`docs/protocol.md`); pgwire and HTTP follow. Everything here runs on a shard's
//! glommio executor and is owned by that core.

pub mod config;
pub mod conn;
pub mod dispatch;
pub mod server;
pub mod tls;
pub mod users;

pub use config::ServerConfig;
pub use server::serve;
pub use users::UserStore;
