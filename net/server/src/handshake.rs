//! Session start: HELLO, then (unless the node is insecure) the SCRAM exchange.
//!
//! [`authenticate`] is the only way to obtain a [`Session`], and the request
//! dispatcher takes one: a connection whose handshake failed has no session, so it
//! cannot reach the dispatcher at all. It is closed after its error is flushed.

use crate::config::{HANDSHAKE_TIMEOUT, SERVER_NAME, ServerConfig};
use crate::frames::{Frame, FrameIo};
use futures_lite::future::FutureExt;
use futures_lite::{AsyncRead, AsyncWrite};
use nextdb_proto::SlotRange;
use nextdb_proto::limits::{MAX_VERSION, MIN_VERSION, TOPOLOGY_VERSION};
use nextdb_proto::message::{HelloOk, op};
use nextdb_proto::scram::{MECHANISM, ServerExchange};
use nextdb_proto::{ErrorCode, Hello, Request, Response};
use nextdb_shard::ShardContext;
use nextdb_shard::config::SLOTS;
use std::cell::Cell;
use std::time::Instant;

/// Proof that a connection authenticated (or that the insecure node let it in).
/// Constructed only by [`authenticate`].
#[derive(Debug)]
pub struct Session {
    /// The SCRAM user; None on an insecure node's unauthenticated session.
    user: Option<String>,
}

impl Session {
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// Where the exchange stands between two frames.
enum Handshake {
    AwaitHello,
    Scram(Box<ServerExchange>),
}

/// What one frame did to the exchange.
enum Step {
    Next(Handshake),
    Authenticated(Session),
    /// An error is queued; the connection closes after flushing it.
    Refused,
}

enum Wait {
    Read(std::io::Result<usize>),
    Timeout,
    Stop,
}

/// Runs the handshake on `io`. Some: the session, with any frames the client sent
/// after it still buffered. None: the connection must close (its error is flushed).
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &ShardContext,
    cfg: &ServerConfig,
    io: &mut FrameIo<S>,
) -> Option<Session> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut state = Handshake::AwaitHello;
    loop {
        loop {
            let frame = match io.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    io.queue_fatal(ctx, 0, 0, e.code(), &e.to_string());
                    return refuse(io).await;
                }
            };
            match step(ctx, cfg, state, frame, io) {
                Step::Next(s) => state = s,
                Step::Authenticated(session) => return Some(session),
                Step::Refused => return refuse(io).await,
            }
        }
        if io.flush().await.is_err() {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = async { Wait::Read(io.read_more().await) }
            .or(async {
                glommio::timer::sleep(left).await;
                Wait::Timeout
            })
            .or(async {
                ctx.stopped().await;
                Wait::Stop
            })
            .await;
        match wait {
            Wait::Read(Ok(0)) | Wait::Read(Err(_)) | Wait::Stop => return None,
            Wait::Read(Ok(n)) => ctx.core.stats.borrow_mut().conns.bytes_in += n as u64,
            Wait::Timeout => {
                let msg = "authentication timed out";
                io.queue_fatal(ctx, 0, 0, ErrorCode::AuthRequired, msg);
                return refuse(io).await;
            }
        }
    }
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(io: &mut FrameIo<S>) -> Option<Session> {
    let _ = io.flush().await;
    None
}

fn step<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &ShardContext,
    cfg: &ServerConfig,
    state: Handshake,
    frame: Frame,
    io: &mut FrameIo<S>,
) -> Step {
    let Frame {
        id,
        opcode,
        request,
        ..
    } = frame;
    let mut refuse = |code, msg: &str| {
        io.queue_fatal(ctx, id, opcode, code, msg);
        Step::Refused
    };
    match (state, request) {
        (Handshake::AwaitHello, Ok(Request::Hello(h))) => on_hello(ctx, cfg, id, h, io),
        (Handshake::AwaitHello, Ok(_)) => refuse(ErrorCode::AuthRequired, "send HELLO first"),
        (Handshake::Scram(ex), Ok(Request::Auth { data })) => match ex.finish(&data) {
            Ok((user, server_final)) => {
                tracing::debug!(%user, "authenticated");
                let ok = Response::AuthOk { data: server_final };
                ok.encode(op::AUTH, id, &mut io.out);
                Step::Authenticated(Session { user: Some(user) })
            }
            Err(e) => refuse(ErrorCode::AuthFailed, &e.to_string()),
        },
        (Handshake::Scram(_), Ok(_)) => {
            refuse(ErrorCode::AuthRequired, "finish authentication first")
        }
        (_, Err(e)) => refuse(
            ErrorCode::AuthRequired,
            &format!("authenticate first ({e})"),
        ),
    }
}

fn on_hello<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &ShardContext,
    cfg: &ServerConfig,
    id: u32,
    h: Hello,
    io: &mut FrameIo<S>,
) -> Step {
    let lo = h.min_version.max(MIN_VERSION);
    let hi = h.max_version.min(MAX_VERSION);
    if lo > hi {
        let msg = format!(
            "client speaks versions {}..={}, this server {MIN_VERSION}..={MAX_VERSION}",
            h.min_version, h.max_version
        );
        io.queue_fatal(ctx, id, op::HELLO, ErrorCode::UnsupportedVersion, &msg);
        return Step::Refused;
    }
    let mut ok = HelloOk {
        version: hi,
        server_name: SERVER_NAME.to_string(),
        shard: ctx.id() as u16,
        shards: ctx.shards as u16,
        slots: SLOTS,
        authenticated: false,
        auth_data: Vec::new(),
        partitions: Vec::new(),
        shard_ports: Vec::new(),
    };
    if hi >= TOPOLOGY_VERSION {
        ok.partitions = ctx
            .map
            .partitions()
            .iter()
            .map(|p| SlotRange {
                start: p.start,
                end: p.end,
                shard: p.shard as u16,
            })
            .collect();
        ok.shard_ports = cfg.shard_ports.ports(ctx.shards);
    }
    // Start the SCRAM exchange once, noting whether it names a known user: an
    // insecure node still runs SCRAM for such a client, which requires mutual
    // authentication; anyone else is let in there without it.
    let scram = (h.mechanism == MECHANISM).then(|| {
        let known = Cell::new(false);
        let lookup = |u: &str| {
            let v = cfg.users.get(u).cloned();
            known.set(v.is_some());
            v
        };
        let started = ServerExchange::start(&h.auth_data, lookup, &cfg.mock_auth);
        (started, known.get())
    });
    let next = match scram {
        Some((_, false)) | None if cfg.insecure => {
            ok.authenticated = true;
            Step::Authenticated(Session { user: None })
        }
        Some((Ok((ex, server_first)), _)) => {
            ok.auth_data = server_first;
            Step::Next(Handshake::Scram(Box::new(ex)))
        }
        Some((Err(e), _)) => {
            io.queue_fatal(ctx, id, op::HELLO, ErrorCode::AuthFailed, &e.to_string());
            return Step::Refused;
        }
        None => {
            let msg = format!(
                "this server requires {MECHANISM} authentication (got {:?})",
                h.mechanism
            );
            io.queue_fatal(ctx, id, op::HELLO, ErrorCode::AuthFailed, &msg);
            return Step::Refused;
        }
    };
    Response::HelloOk(ok).encode(op::HELLO, id, &mut io.out);
    next
}
