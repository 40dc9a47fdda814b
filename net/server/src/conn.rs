//! One client connection: the handshake (`handshake.rs`), then pipelined requests.
//!
//! Owned by the core that accepted it. Requests are decoded as soon as their frame is
//! complete and started in arrival order; a request that finishes on its first poll
//! (memtable or cached read) is answered inline, any other runs in its own task so it
//! keeps making progress (it may be the core's group-commit leader) while this
//! connection waits on a slow socket. Responses go out in completion order, each
//! carrying its request id; all answers ready at one moment leave in one write.

use crate::config::{
    HANDSHAKE_TIMEOUT, MAX_HELD_RESPONSE_BYTES, MAX_IN_FLIGHT_PER_CONNECTION,
    MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION, MAX_PENDING_OUTPUT_BYTES, SHUTDOWN_GRACE,
    ServerConfig, WRITE_TIMEOUT,
};
use crate::dispatch;
use crate::frames::{Frame, FrameIo};
use crate::handshake::{self, Session};
use crate::slow_log::{self, KeyTag, SlowOp};
use event_listener::Event;
use futures_lite::future::{self, FutureExt};
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use nextdb_proto::{ErrorCode, ProtoError, Request, Response};
use nextdb_shard::ShardContext;
use nextdb_shard::op_timing::{Spent, Timed};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Finished {
    id: u32,
    opcode: u8,
    timing: ReqTiming,
    key: KeyTag,
    resp: Response,
}

/// When a request's bytes arrived and when it started (the slow-operation log's
/// queue time), and what it spent committing.
#[derive(Clone, Copy)]
struct ReqTiming {
    read_at: Instant,
    started: Instant,
    spent: Spent,
}

impl ReqTiming {
    fn now() -> ReqTiming {
        let t = Instant::now();
        ReqTiming {
            read_at: t,
            started: t,
            spent: Spent::default(),
        }
    }
}

/// Answers of requests that ran in their own task, waiting to be written.
#[derive(Default)]
struct Completions {
    done: RefCell<Vec<Finished>>,
    notify: Event,
    /// Requests started and not yet collected.
    in_flight: Cell<usize>,
    /// Encoded bytes of the requests started and not yet finished.
    in_flight_bytes: Cell<usize>,
    /// Approximate bytes of `done`.
    held_bytes: Cell<usize>,
    /// Set when `held_bytes` would pass `MAX_HELD_RESPONSE_BYTES`: close.
    overflow: Cell<bool>,
}

/// Roughly the bytes a response occupies (its variable-length payloads).
fn approx_size(r: &Response) -> usize {
    64 + match r {
        Response::Value(Some(v)) => v.len(),
        Response::Scan { entries, token } => {
            token.len()
                + entries
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 8)
                    .sum::<usize>()
        }
        Response::Batch(rs) => rs
            .iter()
            .map(|r| match r {
                nextdb_proto::BatchResult::Value(Some(v)) => v.len() + 5,
                _ => 5,
            })
            .sum(),
        Response::Cas {
            current: Some(v), ..
        } => v.len(),
        Response::Stats { json } | Response::Backup { json } => json.len(),
        Response::Config { settings } => settings.iter().map(|(n, v)| n.len() + v.len() + 8).sum(),
        Response::Error { message, .. } => message.len(),
        _ => 0,
    }
}

enum Wake {
    Read(std::io::Result<usize>),
    Completed,
    Stop,
}

/// An authenticated connection over `S`: a glommio `TcpStream`, or TLS over one.
struct Conn<S> {
    ctx: Rc<ShardContext>,
    io: FrameIo<S>,
    /// Holding it is what lets this connection run requests.
    session: Rc<Session>,
    comp: Rc<Completions>,
    /// Stop reading; finish what is in flight, flush, close.
    draining: bool,
    drain_deadline: Option<Instant>,
    /// Close right after the next flush (fatal protocol error).
    close_after_flush: bool,
    /// Whole frames wait in the read buffer because a per-connection limit was hit.
    backlog: bool,
    /// Slow requests answered and not yet written (`slow_log`).
    slow: Vec<SlowOp>,
    /// When the bytes being processed were read (a request's queue time starts).
    read_at: Instant,
}

/// Serves one accepted connection until it closes: plain, or TLS when the server has
/// a certificate (the TLS handshake counts against the authentication deadline).
pub async fn serve_connection(ctx: Rc<ShardContext>, cfg: Arc<ServerConfig>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    match cfg.tls.clone() {
        None => serve_stream(ctx, cfg, stream).await,
        Some(tls) => {
            let accept = futures_rustls::TlsAcceptor::from(tls).accept(stream);
            let timeout = async {
                glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            };
            match accept.or(timeout).await {
                Ok(tls_stream) => serve_stream(ctx, cfg, tls_stream).await,
                Err(e) => {
                    ctx.core.stats.borrow_mut().conns.protocol_errors += 1;
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
            }
        }
    }
}

async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Rc<ShardContext>,
    cfg: Arc<ServerConfig>,
    stream: S,
) {
    let mut io = FrameIo::new(stream, cfg.max_frame_bytes);
    // Without a session there is no `Conn`, so nothing below can run a request.
    let Some(session) = handshake::authenticate(&ctx, &cfg, &mut io).await else {
        let _ = io.stream.close().await;
        return;
    };
    let mut c = Conn {
        ctx,
        io,
        session: Rc::new(session),
        comp: Rc::new(Completions::default()),
        draining: false,
        drain_deadline: None,
        close_after_flush: false,
        // Frames pipelined behind the handshake are served first.
        backlog: true,
        slow: Vec::new(),
        read_at: Instant::now(),
    };
    if let Err(e) = c.run().await {
        tracing::debug!(error = %e, "connection closed with an error");
    }
    let _ = c.io.stream.close().await;
}

/// Refuses a connection with one error frame (too many connections, shutting down).
pub async fn refuse(mut stream: TcpStream, code: ErrorCode, message: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut out = Vec::new();
    Response::error(code, message).encode(0, 0, &mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn run(&mut self) -> std::io::Result<()> {
        loop {
            // Listening before collecting: a completion during the write below still
            // wakes the wait further down.
            let completed = self.comp.notify.listen();
            self.collect();
            if self.backlog && self.has_room() {
                self.process().await;
            }
            let written = self.io.flush().await?;
            self.ctx.core.stats.borrow_mut().conns.bytes_out += written as u64;
            if !self.slow.is_empty() {
                let (core, redact) = (self.ctx.core.id, self.ctx.core.live.slow_op_redact());
                slow_log::log_written(core, redact, &mut self.slow);
            }
            if self.should_close() {
                return Ok(());
            }
            if self.backlog && self.has_room() {
                continue;
            }
            match self.wait(completed).await {
                Wake::Read(Ok(0)) | Wake::Stop => self.draining = true,
                Wake::Read(Ok(n)) => {
                    self.read_at = Instant::now();
                    self.ctx.core.stats.borrow_mut().conns.bytes_in += n as u64;
                    self.process().await;
                }
                Wake::Read(Err(e)) => return Err(e),
                Wake::Completed => {}
            }
        }
    }

    /// Whether the connection is done: a fatal error was flushed, the client does not
    /// read its answers, or it is draining and nothing is left (or time is up).
    fn should_close(&mut self) -> bool {
        if self.close_after_flush {
            return true;
        }
        if self.comp.overflow.get() {
            self.ctx.core.stats.borrow_mut().conns.protocol_errors += 1;
            tracing::debug!("closing a connection that does not read its responses");
            return true;
        }
        if !self.draining {
            return false;
        }
        let d = *self
            .drain_deadline
            .get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
        self.comp.in_flight.get() == 0 || Instant::now() >= d
    }

    /// Waits for bytes from the client (when it may send more), a completion, or
    /// shutdown.
    async fn wait(&mut self, completed: event_listener::EventListener) -> Wake {
        let in_flight = self.comp.in_flight.get();
        let can_read = !self.draining && self.has_room();
        let (io, ctx, draining) = (&mut self.io, &self.ctx, self.draining);
        let read = async move {
            if can_read {
                Wake::Read(io.read_more().await)
            } else {
                future::pending().await
            }
        };
        let done = async move {
            if in_flight > 0 {
                completed.await;
                Wake::Completed
            } else {
                future::pending().await
            }
        };
        let stop = async move {
            if draining {
                // Re-check the drain deadline now and then.
                glommio::timer::sleep(Duration::from_millis(100)).await;
                Wake::Completed
            } else {
                ctx.stopped().await;
                Wake::Stop
            }
        };
        read.or(done).or(stop).await
    }

    /// Whether this connection may start more requests now.
    fn has_room(&self) -> bool {
        self.comp.in_flight.get() < MAX_IN_FLIGHT_PER_CONNECTION
            && self.comp.in_flight_bytes.get() < MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION
            && self.io.out.len() < MAX_PENDING_OUTPUT_BYTES
    }

    fn collect(&mut self) {
        let done = std::mem::take(&mut *self.comp.done.borrow_mut());
        if done.is_empty() {
            return;
        }
        self.comp
            .in_flight
            .set(self.comp.in_flight.get() - done.len());
        self.comp.held_bytes.set(0);
        for f in done {
            self.answer(f.id, f.opcode, f.timing, &f.key, &f.resp);
        }
    }

    fn answer(&mut self, id: u32, opcode: u8, t: ReqTiming, key: &KeyTag, resp: &Response) {
        let ok = !matches!(resp, Response::Error { .. });
        let micros = t.started.elapsed().as_micros() as u64;
        let op = dispatch::stats_index(opcode);
        self.ctx.core.stats.borrow_mut().record(op, micros, ok);
        resp.encode(opcode, id, &mut self.io.out);
        if micros >= self.ctx.core.live.slow_op_threshold_us() {
            self.slow.push(SlowOp {
                op: nextdb_shard::stats::OP_NAMES
                    .get(op)
                    .copied()
                    .unwrap_or("other"),
                key: *key,
                queue_us: t.started.duration_since(t.read_at).as_micros() as u64,
                exec_us: micros,
                commit_us: t.spent.commit_us,
                answered: Instant::now(),
            });
        }
    }

    /// Queues an error and closes the connection after flushing it.
    fn fatal(&mut self, id: u32, opcode: u8, code: ErrorCode, message: &str) {
        self.io.queue_fatal(&self.ctx, id, opcode, code, message);
        self.close_after_flush = true;
        self.draining = true;
    }

    /// Handles every complete frame in the read buffer.
    async fn process(&mut self) {
        self.backlog = false;
        while !self.close_after_flush {
            if !self.has_room() {
                // Leave the rest in the buffer until responses drain.
                self.backlog = self.io.has_buffered();
                break;
            }
            match self.io.next_frame() {
                Ok(Some(Frame {
                    id,
                    opcode,
                    bytes,
                    request: Ok(req),
                })) => self.on_request(id, opcode, bytes, req).await,
                Ok(Some(Frame {
                    id,
                    opcode,
                    request: Err(e),
                    ..
                })) => self.on_bad_request(id, opcode, e),
                Ok(None) => break,
                Err(e) => self.fatal(0, 0, e.code(), &e.to_string()),
            }
        }
    }

    fn on_bad_request(&mut self, id: u32, opcode: u8, e: ProtoError) {
        let code = e.code();
        if code.closes_connection() {
            self.fatal(id, opcode, code, &e.to_string());
        } else {
            let resp = Response::error(code, e.to_string());
            self.answer(id, opcode, ReqTiming::now(), &KeyTag::NONE, &resp);
        }
    }

    async fn on_request(&mut self, id: u32, opcode: u8, bytes: usize, req: Request) {
        match req {
            Request::Hello(_) | Request::Auth { .. } => {
                let msg = "the session is already authenticated";
                self.fatal(id, opcode, ErrorCode::ProtocolViolation, msg);
            }
            Request::Ping { payload } => {
                let pong = Response::Pong { payload };
                self.answer(id, opcode, ReqTiming::now(), &KeyTag::NONE, &pong);
            }
            req => self.start(id, opcode, bytes, req).await,
        }
    }

    /// Runs a request: answered inline if it completes on its first poll, else in
    /// its own task whose answer `collect` picks up.
    async fn start(&mut self, id: u32, opcode: u8, bytes: usize, req: Request) {
        let mut timing = ReqTiming {
            read_at: self.read_at,
            ..ReqTiming::now()
        };
        let key = KeyTag::of(&req);
        let (ctx, session) = (self.ctx.clone(), self.session.clone());
        let mut fut = Box::pin(Timed::new(async move {
            dispatch::execute(ctx, &session, req).await
        }));
        if let Some((resp, spent)) = future::poll_once(&mut fut).await {
            timing.spent = spent;
            self.answer(id, opcode, timing, &key, &resp);
            return;
        }
        let comp = self.comp.clone();
        comp.in_flight.set(comp.in_flight.get() + 1);
        comp.in_flight_bytes.set(comp.in_flight_bytes.get() + bytes);
        glommio::spawn_local(async move {
            let (resp, spent) = fut.await;
            timing.spent = spent;
            comp.in_flight_bytes.set(comp.in_flight_bytes.get() - bytes);
            let held = comp.held_bytes.get() + approx_size(&resp);
            if held > MAX_HELD_RESPONSE_BYTES {
                comp.overflow.set(true);
                comp.notify.notify(usize::MAX);
                return;
            }
            comp.held_bytes.set(held);
            comp.done.borrow_mut().push(Finished {
                id,
                opcode,
                timing,
                key,
                resp,
            });
            comp.notify.notify(usize::MAX);
        })
        .detach();
    }
}
