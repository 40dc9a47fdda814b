//! HTTP/1.1 on every core (`--http-listen`): `/metrics` (Prometheus), `/healthz`,
//! `/readyz`, `/debug/state` and the dashboard at `/` with its JSON.
//!
//! Like the other listeners, every core binds the address with SO_REUSEPORT and
//! serves the connections the kernel gives it, on its own executor: no second
//! runtime, no thread of its own. A scrape that lands on a core gathers every
//! core's snapshot over the mesh (the STATS path, `Router::stats_snapshots`), so
//! serving KV requests pays nothing for it. `request` parses (httparse) and checks
//! the limits of `config.rs`, `conn` runs one connection, `routes` answers.

pub mod conn;
pub mod dashboard;
pub mod metrics;
pub mod request;
pub mod response;
pub mod routes;
pub mod state;

use crate::config::{HTTP_MAX_CONNECTIONS_PER_SHARD, HTTP_PORT_WAIT, SHUTDOWN_GRACE};
use futures_lite::AsyncWriteExt;
use futures_lite::future::FutureExt;
use glommio::net::{TcpListener, TcpStream};
use nextdb_shard::ShardContext;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The node's HTTP settings, shared by every core (read-only but for the port core
/// 0 bound, which the others read once).
#[derive(Debug)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// When the node started (`nextdb_node_uptime_seconds`).
    pub started: Instant,
    /// The port core 0 bound; with `listen` on port 0 the other cores bind it too,
    /// so the node has one HTTP port.
    bound_port: AtomicU16,
}

impl HttpConfig {
    pub fn new(listen: SocketAddr) -> HttpConfig {
        HttpConfig {
            listen,
            started: Instant::now(),
            bound_port: AtomicU16::new(0),
        }
    }

    /// The address core `shard` binds: `listen`, or for port 0 core 0's port once
    /// core 0 has bound it (None while it has not).
    fn addr_for(&self, shard: usize) -> Option<SocketAddr> {
        if self.listen.port() != 0 || shard == 0 {
            return Some(self.listen);
        }
        match self.bound_port.load(Ordering::Acquire) {
            0 => None,
            p => Some(SocketAddr::new(self.listen.ip(), p)),
        }
    }
}

/// Binds this core's HTTP listener. Cores other than 0 wait (bounded) for core 0's
/// port when the configured port is 0.
pub async fn bind(ctx: &ShardContext, cfg: &HttpConfig) -> Result<TcpListener, String> {
    let give_up = Instant::now() + HTTP_PORT_WAIT;
    let addr = loop {
        if let Some(a) = cfg.addr_for(ctx.id()) {
            break a;
        }
        if Instant::now() > give_up || ctx.is_stopping() {
            return Err("core 0 did not bind the HTTP port".into());
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    };
    let l = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} (HTTP): {e}"))?;
    if ctx.id() == 0 {
        let bound = l.local_addr().map_err(|e| format!("HTTP listener: {e}"))?;
        cfg.bound_port.store(bound.port(), Ordering::Release);
        println!("nextdb: http on {bound}");
    }
    Ok(l)
}

/// Accepts HTTP connections on this core until shutdown, at most
/// `HTTP_MAX_CONNECTIONS_PER_SHARD` at once (more are answered 503 and closed).
pub async fn serve(ctx: Rc<ShardContext>, cfg: std::sync::Arc<HttpConfig>, listener: TcpListener) {
    let open = Rc::new(Cell::new(0usize));
    while let Some(stream) = crate::server::accept_next(&ctx, &listener, "HTTP").await {
        if open.get() >= HTTP_MAX_CONNECTIONS_PER_SHARD {
            glommio::spawn_local(refuse(stream)).detach();
            continue;
        }
        open.set(open.get() + 1);
        let (ctx2, cfg2, open2) = (ctx.clone(), cfg.clone(), open.clone());
        glommio::spawn_local(async move {
            conn::serve_connection(&ctx2, &cfg2, stream).await;
            open2.set(open2.get() - 1);
        })
        .detach();
    }
    drop(listener);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

async fn refuse(mut stream: TcpStream) {
    let r = response::Response::text(503, "too many HTTP connections on this core");
    let wire = r.encode(false, false);
    let write = async { stream.write_all(&wire).await.is_ok() }.or(async {
        glommio::timer::sleep(crate::config::HTTP_WRITE_TIMEOUT).await;
        false
    });
    let _ = write.await;
    let _ = stream.close().await;
}
