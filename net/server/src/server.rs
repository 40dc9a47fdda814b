//! The native protocol listeners of one core. Every core binds the node's address
//! with SO_REUSEPORT, so the kernel spreads connections over the cores; and, unless
//! configured off, an address of its own (the node's IP, its shard port), published in
//! [`ShardPorts`] and advertised in HELLO, so a shard-aware client can reach the core
//! that owns a key without a hop between cores.

use crate::config::{SHUTDOWN_GRACE, ServerConfig};
use crate::conn::{refuse, serve_connection};
use futures_lite::AsyncWriteExt;
use futures_lite::future::FutureExt;
use glommio::net::TcpListener;
use nextdb_proto::ErrorCode;
use nextdb_shard::ShardContext;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The shard ports of a node: how each core picks its own listener's port, and the
/// ports bound so far (shared by every core: each writes its own once, HELLO reads all).
#[derive(Debug)]
pub struct ShardPorts {
    /// None: no per-core listeners. Some(0): each core binds an ephemeral port.
    /// Some(base): core `i` binds `base + i`.
    base: Option<u16>,
    /// shard → bound port (0: not bound yet, or none).
    bound: RwLock<Vec<u16>>,
}

impl ShardPorts {
    pub fn new(base: Option<u16>) -> ShardPorts {
        ShardPorts {
            base,
            bound: RwLock::new(Vec::new()),
        }
    }

    /// Whether cores listen on ports of their own.
    pub fn enabled(&self) -> bool {
        self.base.is_some()
    }

    /// The address core `shard` listens on, beside the node's `listen` address.
    fn addr_for(&self, listen: SocketAddr, shard: usize) -> Option<Result<SocketAddr, String>> {
        let base = self.base?;
        if base == 0 {
            return Some(Ok(SocketAddr::new(listen.ip(), 0)));
        }
        Some(
            u16::try_from(usize::from(base) + shard)
                .map(|p| SocketAddr::new(listen.ip(), p))
                .map_err(|_| format!("shard port {base} + {shard} is above 65535")),
        )
    }

    fn publish(&self, shard: usize, port: u16) {
        // A plain list of ports: consistent even if a holder panicked.
        let mut b = self.bound.write().unwrap_or_else(PoisonError::into_inner);
        if b.len() <= shard {
            b.resize(shard + 1, 0);
        }
        b[shard] = port;
    }

    /// The port of every shard `0..shards` (0 for one not bound); empty when off.
    pub fn ports(&self, shards: usize) -> Vec<u16> {
        if !self.enabled() {
            return Vec::new();
        }
        let b = self.bound.read().unwrap_or_else(PoisonError::into_inner);
        (0..shards)
            .map(|s| b.get(s).copied().unwrap_or(0))
            .collect()
    }
}

enum Accepted {
    Conn(glommio::Result<glommio::net::TcpStream, ()>),
    Stop,
}

/// The next connection `listener` accepts on this core, or None once the node stops.
/// A failed accept (out of descriptors, a connection reset before accept) is logged
/// with `protocol` and retried after a short pause: the listener keeps serving.
pub(crate) async fn accept_next(
    ctx: &ShardContext,
    listener: &TcpListener,
    protocol: &str,
) -> Option<glommio::net::TcpStream> {
    loop {
        let ev = async { Accepted::Conn(listener.accept().await) }
            .or(async {
                ctx.stopped().await;
                Accepted::Stop
            })
            .await;
        match ev {
            Accepted::Stop => return None,
            Accepted::Conn(Ok(s)) => return Some(s),
            Accepted::Conn(Err(e)) => {
                tracing::warn!(error = %e, protocol, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
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
    let own = match bind_shard_port(&ctx, &cfg) {
        Ok(l) => l,
        Err(e) => return ctx.fail(e),
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let open = Rc::new(Cell::new(0usize));
    let own_loop = own.map(|l| {
        let (ctx, cfg, open) = (ctx.clone(), cfg.clone(), open.clone());
        glommio::spawn_local(accept_loop(ctx, cfg, l, open))
    });
    ctx.mark_ready(&format!("native protocol on {addr}"));
    accept_loop(ctx.clone(), cfg, listener, open.clone()).await;
    if let Some(l) = own_loop {
        l.await;
    }
    // Connections see the same stop signal and drain themselves.
    let deadline = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(1);
    while open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Binds this core's own listener (if shard ports are on) and publishes its port.
fn bind_shard_port(ctx: &ShardContext, cfg: &ServerConfig) -> Result<Option<TcpListener>, String> {
    let Some(addr) = cfg.shard_ports.addr_for(cfg.listen, ctx.id()) else {
        return Ok(None);
    };
    let addr = addr?;
    let l = TcpListener::bind(addr)
        .map_err(|e| format!("cannot listen on {addr} (shard port): {e}"))?;
    let port = l
        .local_addr()
        .map_err(|e| format!("shard port of core {}: {e}", ctx.id()))?
        .port();
    cfg.shard_ports.publish(ctx.id(), port);
    Ok(Some(l))
}

/// Accepts connections on `listener` until shutdown; `open` counts this core's
/// connections over all its native listeners.
async fn accept_loop(
    ctx: Rc<ShardContext>,
    cfg: Arc<ServerConfig>,
    listener: TcpListener,
    open: Rc<Cell<usize>>,
) {
    while let Some(mut stream) = accept_next(&ctx, &listener, "native").await {
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
}

#[cfg(test)]
mod tests {
    use glommio::net::TcpListener;
    use nextdb_engine::runtime::testing::run_bounded;
    use std::time::Duration;

    /// A core serves its listeners from one task (`serve_node` zips them), so every
    /// connection accepted on one listener polls the idle listeners' pending accepts
    /// again. Unpatched glommio kept one more clone of the task's waker per poll; at
    /// 32,767 the task's reference count overflowed and the core panicked (the
    /// hostile suite's reconnect storm found it: ~30,000 native connections and no
    /// PostgreSQL one). 40,000 polls of one pending accept must leave the task alive.
    #[test]
    fn a_pending_accept_polled_40000_times_keeps_one_waker() {
        run_bounded(Duration::from_secs(60), || async {
            let idle = TcpListener::bind("127.0.0.1:0").expect("bind");
            let accept = async { idle.accept().await.map(|_| ()) };
            let busy = async {
                for _ in 0..40_000 {
                    futures_lite::future::yield_now().await;
                }
            };
            // `or`: the busy side finishes; the accept is dropped still pending.
            let done = futures_lite::future::or(async { accept.await.is_ok() }, async {
                busy.await;
                false
            });
            assert!(!done.await, "nothing connected to the idle listener");
        });
    }
}
