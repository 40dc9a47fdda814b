//! `nextdb-net`: network services of a node: the native protocol server
//! (`docs/protocol.md`), the PostgreSQL wire protocol (`pg`) and HTTP (`http`:
//! metrics, health, the dashboard). Everything here runs on a shard's glommio
//! executor and is owned by that core.

pub mod auth_secret;
pub mod config;
pub mod conn;
pub mod dispatch;
pub mod file_error;
pub mod frames;
pub mod handshake;
pub mod http;
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

/// Every service of a node on this core: HTTP (when configured; bound before the
/// others report the core ready), PostgreSQL and the native protocol.
pub async fn serve_node(
    ctx: std::rc::Rc<nextdb_shard::ShardContext>,
    cfg: std::sync::Arc<ServerConfig>,
) {
    let Some(http_cfg) = cfg.http.clone() else {
        return pg::serve_all(ctx, cfg).await;
    };
    let listener = match http::bind(&ctx, &http_cfg).await {
        Ok(l) => l,
        Err(e) => return ctx.fail(e),
    };
    let http = http::serve(ctx.clone(), http_cfg, listener);
    futures_lite::future::zip(pg::serve_all(ctx, cfg), http).await;
}
