//! One client connection: handshake and authentication, then pipelined requests.
//!
//! Owned by the core that accepted it. Requests are decoded as soon as their frame is
//! complete and started in arrival order; a request that finishes on its first poll
//! (memtable or cached read) is answered inline, any other runs in its own task so it
//! keeps making progress (it may be the core's group-commit leader) while this
//! connection waits on a slow socket. Responses go out in completion order, each
//! carrying its request id; all answers ready at one moment leave in one write.

use crate::config::{
    HANDSHAKE_TIMEOUT, MAX_HELD_RESPONSE_BYTES, MAX_IN_FLIGHT_PER_CONNECTION,
    MAX_PENDING_OUTPUT_BYTES, READ_BUFFER_INITIAL_BYTES, READ_BUFFER_KEEP_BYTES, SERVER_NAME,
    SHUTDOWN_GRACE, ServerConfig, WRITE_TIMEOUT,
};
use crate::dispatch;
use futures_lite::future::{self, FutureExt};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use nextdb_engine::sync::Notify;
use nextdb_proto::frame::{self, HEADER_BYTES};
use nextdb_proto::limits::{MAX_VERSION, MIN_VERSION};
use nextdb_proto::message::{HelloOk, op};
use nextdb_proto::scram::{MECHANISM, ServerExchange};
use nextdb_proto::{ErrorCode, ProtoError, Request, Response};
use nextdb_shard::ShardContext;
use nextdb_shard::config::SLOTS;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

enum AuthState {
    AwaitHello,
    Scram(Box<ServerExchange>),
    Ready,
}

struct Finished {
    id: u32,
    opcode: u8,
    started: Instant,
    resp: Response,
}

/// Answers of requests that ran in their own task, waiting to be written.
#[derive(Default)]
struct Completions {
    done: RefCell<Vec<Finished>>,
    notify: Notify,
    /// Requests started and not yet collected.
    in_flight: Cell<usize>,
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
        Response::Stats { json } => json.len(),
        Response::Error { message, .. } => message.len(),
        _ => 0,
    }
}

enum Event {
    Read(std::io::Result<usize>),
    Completed,
    Stop,
    HandshakeTimeout,
}

/// A connection over `S`: a glommio `TcpStream`, or a TLS stream over one.
pub struct Conn<S> {
    ctx: Rc<ShardContext>,
    cfg: Arc<ServerConfig>,
    stream: S,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    auth: AuthState,
    comp: Rc<Completions>,
    /// Stop reading; finish what is in flight, flush, close.
    draining: bool,
    /// Close right after the next flush (fatal protocol error).
    close_after_flush: bool,
    /// Whole frames wait in the read buffer because a per-connection limit was hit.
    backlog: bool,
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
    let mut c = Conn {
        ctx,
        cfg,
        stream,
        rbuf: vec![0; READ_BUFFER_INITIAL_BYTES],
        start: 0,
        end: 0,
        out: Vec::new(),
        auth: AuthState::AwaitHello,
        comp: Rc::new(Completions::default()),
        draining: false,
        close_after_flush: false,
        backlog: false,
    };
    if let Err(e) = c.run().await {
        tracing::debug!(error = %e, "connection closed with an error");
    }
    let _ = c.stream.close().await;
}

/// Refuses a connection with one error frame (too many connections, shutting down).
pub async fn refuse(mut stream: TcpStream, code: ErrorCode, message: &str) {
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    let mut out = Vec::new();
    Response::error(code, message).encode(0, 0, &mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn run(&mut self) -> std::io::Result<()> {
        let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            // Created before collecting: a completion during the write below still
            // wakes the wait further down.
            let completed = self.comp.notify.wait();
            self.collect();
            if self.backlog && self.has_room() {
                self.process().await;
            }
            if !self.out.is_empty() {
                self.stream.write_all(&self.out).await?;
                self.ctx.core.stats.borrow_mut().conns.bytes_out += self.out.len() as u64;
                self.out.clear();
                if self.out.capacity() > READ_BUFFER_KEEP_BYTES {
                    self.out.shrink_to(READ_BUFFER_KEEP_BYTES);
                }
            }
            if self.close_after_flush {
                return Ok(());
            }
            if self.comp.overflow.get() {
                self.ctx.core.stats.borrow_mut().conns.protocol_errors += 1;
                tracing::debug!("closing a connection that does not read its responses");
                return Ok(());
            }
            if self.backlog && self.has_room() {
                continue;
            }
            let in_flight = self.comp.in_flight.get();
            if self.draining {
                if in_flight == 0 {
                    return Ok(());
                }
                let d = *drain_deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                if Instant::now() >= d {
                    return Ok(());
                }
            }
            let can_read = !self.draining
                && in_flight < MAX_IN_FLIGHT_PER_CONNECTION
                && self.out.len() < MAX_PENDING_OUTPUT_BYTES;
            let authenticated = matches!(self.auth, AuthState::Ready);
            if can_read && self.end == self.rbuf.len() {
                self.make_room(self.end - self.start + 1);
            }
            let ev = {
                let (stream, rbuf, end) = (&mut self.stream, &mut self.rbuf, self.end);
                let ctx = &self.ctx;
                let draining = self.draining;
                let read = async move {
                    if can_read {
                        Event::Read(stream.read(&mut rbuf[end..]).await)
                    } else {
                        future::pending().await
                    }
                };
                let done = async move {
                    if in_flight > 0 {
                        completed.await;
                        Event::Completed
                    } else {
                        future::pending().await
                    }
                };
                let stop = async move {
                    if draining {
                        // Re-check the drain deadline now and then.
                        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
                        Event::Completed
                    } else {
                        ctx.stopped().await;
                        Event::Stop
                    }
                };
                let timeout = async move {
                    if authenticated {
                        future::pending().await
                    } else {
                        let left = handshake_deadline.saturating_duration_since(Instant::now());
                        glommio::timer::sleep(left).await;
                        Event::HandshakeTimeout
                    }
                };
                read.or(done).or(stop.or(timeout)).await
            };
            match ev {
                Event::Read(Ok(0)) => self.draining = true,
                Event::Read(Ok(n)) => {
                    self.end += n;
                    self.ctx.core.stats.borrow_mut().conns.bytes_in += n as u64;
                    self.process().await;
                }
                Event::Read(Err(e)) => return Err(e),
                Event::Completed => {}
                Event::Stop => self.draining = true,
                Event::HandshakeTimeout => {
                    self.fatal(0, 0, ErrorCode::AuthRequired, "authentication timed out");
                }
            }
        }
    }

    /// Whether this connection may start more requests now.
    fn has_room(&self) -> bool {
        self.comp.in_flight.get() < MAX_IN_FLIGHT_PER_CONNECTION
            && self.out.len() < MAX_PENDING_OUTPUT_BYTES
    }

    /// Ensures `need` bytes of buffer from `start`, compacting or growing.
    fn make_room(&mut self, need: usize) {
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.rbuf.len() < need {
            let new_len = need
                .max(self.rbuf.len() * 2)
                .min(self.cfg.max_frame_bytes + 4);
            self.rbuf.resize(new_len.max(need), 0);
        }
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
            self.answer(f.id, f.opcode, f.started, &f.resp);
        }
    }

    fn answer(&mut self, id: u32, opcode: u8, started: Instant, resp: &Response) {
        let ok = !matches!(resp, Response::Error { .. });
        let micros = started.elapsed().as_micros() as u64;
        self.ctx
            .core
            .stats
            .borrow_mut()
            .record(dispatch::stats_index(opcode), micros, ok);
        resp.encode(opcode, id, &mut self.out);
    }

    /// Queues an error and closes the connection after flushing it.
    fn fatal(&mut self, id: u32, opcode: u8, code: ErrorCode, message: &str) {
        Response::error(code, message).encode(opcode, id, &mut self.out);
        let mut st = self.ctx.core.stats.borrow_mut();
        match code {
            ErrorCode::AuthFailed | ErrorCode::AuthRequired => st.conns.auth_failures += 1,
            _ => st.conns.protocol_errors += 1,
        }
        self.close_after_flush = true;
        self.draining = true;
    }

    /// Handles every complete frame in the read buffer.
    async fn process(&mut self) {
        self.backlog = false;
        while !self.close_after_flush {
            if !self.has_room() {
                // Leave the rest in the buffer until responses drain.
                self.backlog = self.start < self.end;
                break;
            }
            let buf = &self.rbuf[self.start..self.end];
            let h = match frame::decode_header(buf, self.cfg.max_frame_bytes) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    if let Some(total) = frame::frame_total_hint(buf)
                        && total > self.rbuf.len() - self.start
                    {
                        self.make_room(total);
                    }
                    break;
                }
                Err(e) => {
                    self.fatal(0, 0, e.code(), &e.to_string());
                    return;
                }
            };
            let decoded = Request::decode(h.opcode, h.flags, &buf[HEADER_BYTES..h.total]);
            self.start += h.total;
            match decoded {
                Ok(req) => self.on_request(h.request_id, h.opcode, req).await,
                Err(e) => self.on_bad_request(h.request_id, h.opcode, e),
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.rbuf.len() > READ_BUFFER_KEEP_BYTES {
                self.rbuf.truncate(READ_BUFFER_INITIAL_BYTES);
                self.rbuf.shrink_to_fit();
            }
        }
    }

    fn on_bad_request(&mut self, id: u32, opcode: u8, e: ProtoError) {
        if !matches!(self.auth, AuthState::Ready) {
            self.fatal(
                id,
                opcode,
                ErrorCode::AuthRequired,
                &format!("authenticate first ({e})"),
            );
            return;
        }
        let code = e.code();
        if code.closes_connection() {
            self.fatal(id, opcode, code, &e.to_string());
        } else {
            self.answer(
                id,
                opcode,
                Instant::now(),
                &Response::error(code, e.to_string()),
            );
        }
    }

    async fn on_request(&mut self, id: u32, opcode: u8, req: Request) {
        match std::mem::replace(&mut self.auth, AuthState::Ready) {
            AuthState::Ready => {}
            AuthState::AwaitHello => {
                self.auth = AuthState::AwaitHello;
                match req {
                    Request::Hello(h) => self.on_hello(id, h),
                    _ => self.fatal(id, opcode, ErrorCode::AuthRequired, "send HELLO first"),
                }
                return;
            }
            AuthState::Scram(ex) => {
                match req {
                    Request::Auth { data } => match ex.finish(&data) {
                        Ok((user, server_final)) => {
                            tracing::debug!(%user, "authenticated");
                            Response::AuthOk { data: server_final }.encode(
                                op::AUTH,
                                id,
                                &mut self.out,
                            );
                        }
                        Err(e) => self.fatal(id, opcode, ErrorCode::AuthFailed, &e.to_string()),
                    },
                    _ => {
                        self.auth = AuthState::AwaitHello;
                        self.fatal(
                            id,
                            opcode,
                            ErrorCode::AuthRequired,
                            "finish authentication first",
                        );
                    }
                }
                return;
            }
        }
        match req {
            Request::Hello(_) | Request::Auth { .. } => {
                self.fatal(
                    id,
                    opcode,
                    ErrorCode::ProtocolViolation,
                    "the session is already authenticated",
                );
            }
            Request::Ping { payload } => {
                self.answer(id, opcode, Instant::now(), &Response::Pong { payload });
            }
            req => {
                let started = Instant::now();
                let mut fut = Box::pin(dispatch::execute(self.ctx.clone(), req));
                if let Some(resp) = future::poll_once(&mut fut).await {
                    self.answer(id, opcode, started, &resp);
                    return;
                }
                let comp = self.comp.clone();
                comp.in_flight.set(comp.in_flight.get() + 1);
                glommio::spawn_local(async move {
                    let resp = fut.await;
                    let held = comp.held_bytes.get() + approx_size(&resp);
                    if held > MAX_HELD_RESPONSE_BYTES {
                        comp.overflow.set(true);
                        comp.notify.notify_all();
                        return;
                    }
                    comp.held_bytes.set(held);
                    comp.done.borrow_mut().push(Finished {
                        id,
                        opcode,
                        started,
                        resp,
                    });
                    comp.notify.notify_all();
                })
                .detach();
            }
        }
    }

    fn on_hello(&mut self, id: u32, h: nextdb_proto::Hello) {
        let lo = h.min_version.max(MIN_VERSION);
        let hi = h.max_version.min(MAX_VERSION);
        if lo > hi {
            let msg = format!(
                "client speaks versions {}..={}, this server {MIN_VERSION}..={MAX_VERSION}",
                h.min_version, h.max_version
            );
            self.fatal(id, op::HELLO, ErrorCode::UnsupportedVersion, &msg);
            return;
        }
        let mut ok = HelloOk {
            version: hi,
            server_name: SERVER_NAME.to_string(),
            shard: self.ctx.id as u16,
            shards: self.ctx.shards as u16,
            slots: SLOTS,
            authenticated: false,
            auth_data: Vec::new(),
        };
        // Start the SCRAM exchange once, noting whether it names a known user: an
        // insecure node still runs SCRAM for such a client, which requires mutual
        // authentication; anyone else is let in there without it.
        let scram = (h.mechanism == MECHANISM).then(|| {
            let known = Cell::new(false);
            let users = &self.cfg.users;
            let started = ServerExchange::start(&h.auth_data, |u| {
                let v = users.get(u).cloned();
                known.set(v.is_some());
                v
            });
            (started, known.get())
        });
        match scram {
            Some((_, false)) | None if self.cfg.insecure => {
                ok.authenticated = true;
                self.auth = AuthState::Ready;
            }
            Some((Ok((ex, server_first)), _)) => {
                ok.auth_data = server_first;
                self.auth = AuthState::Scram(Box::new(ex));
            }
            Some((Err(e), _)) => {
                self.fatal(id, op::HELLO, ErrorCode::AuthFailed, &e.to_string());
                return;
            }
            None => {
                let msg = format!(
                    "this server requires {MECHANISM} authentication (got {:?})",
                    h.mechanism
                );
                self.fatal(id, op::HELLO, ErrorCode::AuthFailed, &msg);
                return;
            }
        }
        Response::HelloOk(ok).encode(op::HELLO, id, &mut self.out);
    }
}
