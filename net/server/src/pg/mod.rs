//! The PostgreSQL wire protocol (3.0) on every core: `session` is the state machine
//! (startup, SCRAM-SHA-256 or trust under `--insecure`, simple and extended query),
//! `frame` cuts and checks client messages before pgwire's codec decodes them, `kv`
//! gives the SQL engine this core's router, and [`serve`] is the thin glommio
//! driver: accept, read, feed the session, write what it answers.

pub mod frame;
pub mod kv;
pub mod session;

use crate::config::{
    HANDSHAKE_TIMEOUT, PG_READ_CHUNK_BYTES, SHUTDOWN_GRACE, ServerConfig, WRITE_TIMEOUT,
};
use futures_lite::future::FutureExt;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use kv::RouterKv;
use nextdb_shard::ShardContext;
use nextdb_sql::Engine;
use session::{AuthConfig, Flow, PgSession};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves the native protocol and, when configured, PostgreSQL on this core. The
/// PostgreSQL listener is bound before the native one reports the core ready.
pub async fn serve_all(ctx: Rc<ShardContext>, cfg: Arc<ServerConfig>) {
    let Some(addr) = cfg.pg_listen else {
        return crate::serve(ctx, cfg).await;
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => return ctx.fail(format!("cannot listen on {addr} (PostgreSQL): {e}")),
    };
    let pg = serve(ctx.clone(), cfg.clone(), listener);
    futures_lite::future::zip(crate::serve(ctx, cfg), pg).await;
}

/// Accepts PostgreSQL connections on this core until shutdown.
pub async fn serve(ctx: Rc<ShardContext>, cfg: Arc<ServerConfig>, listener: TcpListener) {
    let engine = Rc::new(Engine::new(RouterKv { ctx: ctx.clone() }));
    let auth = AuthConfig {
        insecure: cfg.insecure,
        users: cfg.users.clone(),
        mock: cfg.mock_auth.clone(),
    };
    let open = Rc::new(Cell::new(0usize));
    let mut next_pid = (ctx.id() as i32) << 24;
    while let Some(stream) = crate::server::accept_next(&ctx, &listener, "PostgreSQL").await {
        if open.get() >= cfg.max_connections_per_shard {
            glommio::spawn_local(refuse(stream)).detach();
            continue;
        }
        open.set(open.get() + 1);
        next_pid = next_pid.wrapping_add(1);
        let session = PgSession::new(engine.clone(), auth.clone(), next_pid);
        let (ctx2, open2) = (ctx.clone(), open.clone());
        glommio::spawn_local(async move {
            connection(&ctx2, session, stream).await;
            open2.set(open2.get() - 1);
        })
        .detach();
    }
    drop(listener);
    let deadline = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(1);
    while open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

async fn refuse(mut stream: TcpStream) {
    // 53300 too_many_connections, as a FATAL ErrorResponse, before any startup.
    let out = session::fatal_message("53300", "sorry, too many clients already");
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

enum Wait {
    Read(std::io::Result<usize>),
    Timeout,
    Stop,
}

/// Moves bytes between one socket and its session until either side closes.
async fn connection<K: nextdb_sql::Kv>(
    ctx: &ShardContext,
    mut session: PgSession<K>,
    mut stream: TcpStream,
) {
    let mut buf = vec![0u8; PG_READ_CHUNK_BYTES];
    let auth_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let authenticating = !session.is_authenticated();
        let left = auth_deadline.saturating_duration_since(Instant::now());
        let wait = async { Wait::Read(stream.read(&mut buf).await) }
            .or(async {
                if authenticating {
                    glommio::timer::sleep(left).await;
                } else {
                    futures_lite::future::pending::<()>().await;
                }
                Wait::Timeout
            })
            .or(async {
                ctx.stopped().await;
                Wait::Stop
            })
            .await;
        let n = match wait {
            Wait::Read(Ok(0)) | Wait::Read(Err(_)) | Wait::Stop | Wait::Timeout => break,
            Wait::Read(Ok(n)) => n,
        };
        let flow = session.feed(&buf[..n]).await;
        let out = session.take_output();
        let write = async { stream.write_all(&out).await.is_ok() }
            .or(async {
                glommio::timer::sleep(WRITE_TIMEOUT).await;
                false
            })
            .await;
        if !write || flow == Flow::Close {
            break;
        }
    }
    let _ = stream.close().await;
}
