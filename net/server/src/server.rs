//! The native protocol listener of one core. Every core binds the same address with
//! SO_REUSEPORT, so the kernel spreads connections over the cores.

use crate::config::{SHUTDOWN_GRACE, ServerConfig};
use crate::conn::{refuse, serve_connection};
use futures_lite::AsyncWriteExt;
use futures_lite::future::FutureExt;
use glommio::net::TcpListener;
use nextdb_proto::ErrorCode;
use nextdb_shard::ShardContext;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

enum Accepted {
    Conn(glommio::Result<glommio::net::TcpStream, ()>),
    Stop,
}

/// Serves the native protocol on this core until shutdown, then waits for its
/// connections to finish what they have in flight.
pub async fn serve(ctx: Rc<ShardContext>, cfg: Arc<ServerConfig>) {
    let listener = match TcpListener::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            ctx.fail(format!("cannot listen on {}: {e}", cfg.listen));
            return;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    ctx.mark_ready(&format!("native protocol on {addr}"));
    let open = Rc::new(Cell::new(0usize));
    loop {
        let ev = async { Accepted::Conn(listener.accept().await) }
            .or(async {
                ctx.stopped().await;
                Accepted::Stop
            })
            .await;
        let mut stream = match ev {
            Accepted::Stop => break,
            Accepted::Conn(Ok(s)) => s,
            Accepted::Conn(Err(e)) => {
                // Out of descriptors or a connection reset before accept: keep serving.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut st = ctx.core.stats.borrow_mut();
        if open.get() >= cfg.max_connections_per_shard {
            st.conns.refused += 1;
            drop(st);
            if cfg.tls.is_some() {
                // No error frame before a TLS handshake: just close.
                glommio::spawn_local(async move {
                    let _ = stream.close().await;
                })
                .detach();
            } else {
                glommio::spawn_local(refuse(
                    stream,
                    ErrorCode::TooManyConnections,
                    "this core has too many connections; try again later",
                ))
                .detach();
            }
            continue;
        }
        st.conns.accepted += 1;
        st.conns.open += 1;
        drop(st);
        open.set(open.get() + 1);
        let (ctx2, cfg2, open2) = (ctx.clone(), cfg.clone(), open.clone());
        glommio::spawn_local(async move {
            serve_connection(ctx2.clone(), cfg2, stream).await;
            open2.set(open2.get() - 1);
            ctx2.core.stats.borrow_mut().conns.open -= 1;
        })
        .detach();
    }
    drop(listener);
    // Connections see the same stop signal and drain themselves.
    let deadline = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(1);
    while open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}
