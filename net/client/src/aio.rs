//! The async client on tokio (feature `async`). Same behaviour as the blocking one:
//! the protocol logic lives in the shared sans-IO `session` module, the retry policy
//! in `retry`; this module only moves bytes and enforces timeouts with
//! `tokio::time::timeout`.
//!
//! It needs a tokio runtime with the I/O and time drivers enabled
//! (`Builder::enable_all`, as `#[tokio::main]` does).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use nextdb_proto::{BatchOp, BatchResult, HelloOk, Request, Response, TtlState};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ops::{self, CasResult, ScanAll, ScanPage};
use crate::retry;
use crate::routes::{Routes, Target};
use crate::session::{
    self, Frame, Handshake, IdGen, Pending, ResponseReader, Step, placeholder_hello,
};
use crate::tls::{self, TlsConfig};

/// The transport: plain TCP, or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the idle connection is still open with nothing unasked waiting, without
    /// blocking. Plain: any byte read here would be unsolicited, so consuming it is
    /// harmless (the connection is dropped then). TLS: the records that have arrived
    /// are read and processed (see `tls::is_idle`: a TLS 1.3 session ticket is fine).
    fn is_idle(&mut self) -> bool {
        match self {
            Stream::Plain(s) => {
                let mut b = [0u8; 1];
                matches!(s.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => {
                let (tcp, conn) = s.get_mut();
                tls::is_idle(conn, &mut TryRead(tcp))
            }
        }
    }
}

/// `std::io::Read` over tokio's non-blocking `try_read` (`WouldBlock` when empty).
struct TryRead<'a>(&'a TcpStream);

impl io::Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            Stream::Tls(s) => f.debug_tuple("Tls").field(s.get_ref().0).finish(),
        }
    }
}

/// One authenticated TCP (or TLS, see [`Config::tls`]) connection; see
/// [`crate::Connection`] for the semantics.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    reader: ResponseReader,
    ids: IdGen,
    wbuf: Vec<u8>,
    hello_ok: HelloOk,
    /// The address it was opened to, as configured (`host:port`).
    addr: String,
    request_timeout: Duration,
    /// Set while an exchange is in progress and after a failure: a future dropped
    /// midway (the caller's own timeout or `select!`) leaves a partial frame or a
    /// stale response on the stream, so the connection must not be reused.
    broken: bool,
}

impl Connection {
    /// Connects to the first address of `cfg.addrs` that accepts and completes the
    /// handshake.
    pub async fn connect(cfg: &Config) -> Result<Connection> {
        Connection::connect_from(cfg, None, 0).await
    }

    /// Like `connect`, trying the addresses in turn starting at `first`. `built`: the
    /// rustls config already built from `cfg.tls` (built here if `None`).
    pub(crate) async fn connect_from(
        cfg: &Config,
        built: Option<&Arc<ClientConfig>>,
        first: usize,
    ) -> Result<Connection> {
        if cfg.addrs.is_empty() {
            return Err(Error::InvalidArgument("no addresses configured".into()));
        }
        let tls = tls::resolve(cfg, built)?;
        let n = cfg.addrs.len();
        let mut last = Error::Closed;
        for i in 0..n {
            let addr = &cfg.addrs[(first + i) % n];
            match Connection::connect_addr(cfg, tls.as_ref(), addr).await {
                Ok(c) => return Ok(c),
                Err(e @ (Error::Auth(_) | Error::InvalidArgument(_))) => return Err(e),
                Err(e) => {
                    tracing::debug!(addr = %addr, error = %e, "connect failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Connects to `addr` only (a core's own port, for shard-aware routing).
    pub(crate) async fn connect_to(
        cfg: &Config,
        built: Option<&Arc<ClientConfig>>,
        addr: &str,
    ) -> Result<Connection> {
        let tls = tls::resolve(cfg, built)?;
        Connection::connect_addr(cfg, tls.as_ref(), addr).await
    }

    async fn connect_addr(
        cfg: &Config,
        tls: Option<&(Arc<ClientConfig>, &TlsConfig)>,
        addr: &str,
    ) -> Result<Connection> {
        let tls = match tls {
            Some((config, t)) => Some((config, tls::server_name(t, addr)?)),
            None => None,
        };
        let resolved = timeout(cfg.connect_timeout, tokio::net::lookup_host(addr))
            .await
            .map_err(|_| Error::Timeout)??;
        let mut last = None;
        for sa in resolved {
            let deadline = Instant::now() + cfg.connect_timeout;
            let tcp = match timeout_at(deadline, TcpStream::connect(sa)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = Some(Error::Io(e));
                    continue;
                }
                Err(_) => {
                    last = Some(Error::Timeout);
                    continue;
                }
            };
            // Requests are small and latency-bound: do not let Nagle hold them back.
            tcp.set_nodelay(true)?;
            // TLS speaks from the first byte: its handshake precedes HELLO, within the
            // same connect timeout.
            let stream = match &tls {
                Some((config, name)) => {
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                    let s = timeout_at(deadline, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| Error::Timeout)??;
                    Stream::Tls(Box::new(s))
                }
                None => Stream::Plain(tcp),
            };
            let mut conn = Connection {
                stream,
                reader: ResponseReader::default(),
                ids: IdGen::default(),
                wbuf: Vec::new(),
                hello_ok: placeholder_hello(),
                addr: addr.to_owned(),
                request_timeout: cfg.request_timeout,
                broken: true,
            };
            conn.hello_ok = timeout_at(deadline, conn.handshake(cfg))
                .await
                .map_err(|_| Error::Timeout)??;
            conn.broken = false;
            tracing::debug!(addr = %sa, server = %conn.hello_ok.server_name, "connected");
            return Ok(conn);
        }
        Err(last.unwrap_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{addr} resolves to no address"),
            ))
        }))
    }

    async fn handshake(&mut self, cfg: &Config) -> Result<HelloOk> {
        let (mut hs, hello) = Handshake::start(cfg)?;
        write_all(&mut self.stream, &hello).await?;
        loop {
            let f = read_frame(&mut self.stream, &mut self.reader).await?;
            match hs.step(f)? {
                Step::Send(bytes) => write_all(&mut self.stream, &bytes).await?,
                Step::Done(h) => return Ok(h),
            }
        }
    }

    /// The server's answer to HELLO: version, server name, shard layout.
    pub fn hello_ok(&self) -> &HelloOk {
        &self.hello_ok
    }

    /// Whether an earlier failure (or a cancelled request) left this connection
    /// unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether an idle connection still looks usable: not closed by the server and no
    /// unasked bytes waiting (see the blocking `Connection` and `Stream::is_idle`).
    fn is_reusable(&mut self) -> bool {
        !self.broken && self.stream.is_idle()
    }

    /// Sends one request and waits for its response; an error response becomes
    /// `Err(Error::Server)`.
    pub async fn execute(&mut self, req: &Request) -> Result<Response> {
        let mut out = self.round_trip(std::slice::from_ref(req)).await?;
        let resp = out
            .pop()
            .ok_or_else(|| Error::UnexpectedResponse("no response".into()))?;
        session::into_result(resp)
    }

    /// Sends all `reqs` in one write; responses in request order, errors in place. See
    /// [`crate::Connection::pipeline`].
    pub async fn pipeline(&mut self, reqs: &[Request]) -> Result<Vec<Response>> {
        self.round_trip(reqs).await
    }

    async fn round_trip(&mut self, reqs: &[Request]) -> Result<Vec<Response>> {
        if self.broken {
            return Err(Error::Closed);
        }
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut wbuf = std::mem::take(&mut self.wbuf);
        wbuf.clear();
        self.broken = true;
        let res = match Pending::encode(reqs, &mut self.ids, &mut wbuf) {
            Ok(pending) => timeout(
                self.request_timeout,
                exchange(&mut self.stream, &mut self.reader, &wbuf, pending),
            )
            .await
            .unwrap_or(Err(Error::Timeout)),
            Err(e) => Err(e),
        };
        self.wbuf = wbuf;
        self.broken = match &res {
            Ok(out) => session::closes_connection(out),
            Err(e) => session::breaks_connection(e),
        };
        res
    }
}

async fn exchange(
    stream: &mut Stream,
    reader: &mut ResponseReader,
    bytes: &[u8],
    mut pending: Pending,
) -> Result<Vec<Response>> {
    write_all(stream, bytes).await?;
    while !pending.is_done() {
        let f = read_frame(stream, reader).await?;
        pending.accept(f)?;
    }
    Ok(pending.finish())
}

/// Writes and flushes: TLS may keep records buffered until flushed.
async fn write_all(stream: &mut Stream, bytes: &[u8]) -> Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

async fn read_frame(stream: &mut Stream, reader: &mut ResponseReader) -> Result<Frame> {
    loop {
        if let Some(f) = reader.next_frame()? {
            return Ok(f);
        }
        let n = match stream.read(reader.spare()).await {
            Ok(n) => n,
            // TLS reports a TCP close without close_notify as UnexpectedEof.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(Error::Closed);
        }
        reader.filled(n);
    }
}

/// A client for tokio: a bounded pool of connections opened on demand, with retries.
/// Cloning is cheap and clones share the pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// Built once from `config.tls`.
    tls: Option<Arc<ClientConfig>>,
    /// Connections for requests that may go to any core.
    pool: Pool,
    /// Once a node's HELLO answer described its cores (and `config.shard_aware`):
    /// the routes, and one pool per core of connections to that core's own port.
    shards: OnceLock<ShardPools>,
    next_addr: AtomicUsize,
}

#[derive(Debug)]
struct Pool {
    /// One permit per connection the pool may have open.
    permits: Semaphore,
    /// Never held across an await, so a std mutex suffices.
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    fn new(size: usize) -> Pool {
        Pool {
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::new()),
        }
    }
}

#[derive(Debug)]
struct ShardPools {
    routes: Routes,
    pools: Vec<Pool>,
}

/// A pool permit plus its connection; gives the connection back (if healthy) when
/// dropped, including when the caller's future is cancelled.
struct Slot<'a> {
    inner: &'a Inner,
    pool: &'a Pool,
    target: Target,
    _permit: SemaphorePermit<'a>,
    conn: Option<Connection>,
}

impl Slot<'_> {
    async fn connection(&mut self) -> Result<&mut Connection> {
        let reusable = self.conn.as_mut().is_some_and(Connection::is_reusable);
        let conn = match self.conn.take() {
            Some(c) if reusable => c,
            _ => self.inner.open(self.target).await?,
        };
        Ok(self.conn.insert(conn))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        // Runs before `_permit` is released, so the next holder finds the connection.
        if let Some(c) = self.conn.take()
            && !c.is_broken()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(c);
        }
    }
}

impl Inner {
    /// A slot of the pool for `target` (any core, or the core that owns the keys).
    async fn acquire(&self, target: Target) -> Result<Slot<'_>> {
        let pool = match (target, self.shards.get()) {
            (Target::Shard(s), Some(sp)) => sp.pools.get(s).unwrap_or(&self.pool),
            _ => &self.pool,
        };
        let permit = timeout(self.config.request_timeout, pool.permits.acquire())
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::Closed)?;
        let conn = pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        Ok(Slot {
            inner: self,
            pool,
            target,
            _permit: permit,
            conn,
        })
    }

    /// Where `reqs` should go: the core that owns the key of a single request, once
    /// the routes are known; a pipeline goes to any core.
    fn target(&self, reqs: &[Request]) -> Target {
        match (self.shards.get(), reqs) {
            (Some(sp), [req]) => sp.routes.target(req),
            _ => Target::Any,
        }
    }

    /// Opens a connection for `target`: to the core's own port when it has one,
    /// else (or if that fails for a reason another address might not have) to the
    /// configured addresses, whose HELLO answer may teach the routes.
    async fn open(&self, target: Target) -> Result<Connection> {
        let own = match (target, self.shards.get()) {
            (Target::Shard(s), Some(sp)) => sp.routes.addr(s),
            _ => None,
        };
        if let Some(addr) = own {
            match Connection::connect_to(&self.config, self.tls.as_ref(), addr).await {
                Ok(c) => return Ok(c),
                Err(e @ (Error::Auth(_) | Error::InvalidArgument(_) | Error::Tls(_))) => {
                    return Err(e);
                }
                // Still correct through any core (it forwards), only slower.
                Err(e) => tracing::debug!(addr, error = %e, "shard port failed; using any core"),
            }
        }
        let first = self.next_addr.fetch_add(1, Ordering::Relaxed);
        let c = Connection::connect_from(&self.config, self.tls.as_ref(), first).await?;
        if self.config.shard_aware
            && self.shards.get().is_none()
            && let Some(routes) = Routes::learn(c.hello_ok(), &c.addr)
        {
            let size = self.config.pool_size.clamp(1, Semaphore::MAX_PERMITS);
            let pools = (0..routes.shards()).map(|_| Pool::new(size)).collect();
            // Another task may have learned them first: either copy will do.
            let _ = self.shards.set(ShardPools { routes, pools });
        }
        Ok(c)
    }
}

impl Client {
    /// A client that opens connections on first use. Fails only on an unusable config
    /// (including a TLS config whose CA PEM holds no usable certificate).
    pub fn new(config: Config) -> Result<Client> {
        if config.addrs.is_empty() {
            return Err(Error::InvalidArgument("no addresses configured".into()));
        }
        let size = config.pool_size.clamp(1, Semaphore::MAX_PERMITS);
        let tls = tls::connector(&config)?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                tls,
                pool: Pool::new(size),
                shards: OnceLock::new(),
                next_addr: AtomicUsize::new(0),
            }),
        })
    }

    /// Like [`new`](Client::new), and opens one connection now so that a wrong address
    /// or password shows up here rather than on the first request.
    pub async fn connect(config: Config) -> Result<Client> {
        let client = Client::new(config)?;
        let mut slot = client.inner.acquire(Target::Any).await?;
        slot.connection().await?;
        drop(slot);
        Ok(client)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether requests go straight to the core that owns their key: shard-aware, and
    /// the node described its cores (learned with the first connection).
    pub fn routes_by_key(&self) -> bool {
        self.inner.shards.get().is_some()
    }

    /// Runs `reqs` on a pooled connection, retrying per [`retry::should_retry`].
    /// `single`: one request whose error response is an `Err` (and so may be retried),
    /// as opposed to a pipeline whose per-request errors stay in place.
    async fn run(&self, reqs: &[Request], single: bool) -> Result<Vec<Response>> {
        let inner = &*self.inner;
        let idempotent = reqs.iter().all(Request::is_idempotent);
        let target = if single {
            inner.target(reqs)
        } else {
            Target::Any
        };
        let mut slot = inner.acquire(target).await?;
        let mut attempt = 0;
        loop {
            let (res, sent) = match (slot.connection().await, reqs) {
                (Ok(conn), [req]) if single => (conn.execute(req).await.map(|r| vec![r]), true),
                (Ok(conn), _) => (conn.pipeline(reqs).await, true),
                (Err(e), _) => (Err(e), false),
            };
            let err = match res {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if attempt >= inner.config.max_retries || !retry::should_retry(&err, sent, idempotent) {
                return Err(err);
            }
            let delay = retry::backoff(&inner.config, attempt);
            tracing::debug!(error = %err, attempt, ?delay, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sends any request (retried if safe); an error response is `Err(Error::Server)`.
    pub async fn execute(&self, req: Request) -> Result<Response> {
        let mut out = self.run(std::slice::from_ref(&req), true).await?;
        out.pop()
            .ok_or_else(|| Error::UnexpectedResponse("no response".into()))
    }

    /// Sends `reqs` on one connection in one write; responses in request order, errors
    /// in place. Retried as a whole after a connection failure only if every request
    /// is idempotent.
    pub async fn pipeline(&self, reqs: Vec<Request>) -> Result<Vec<Response>> {
        self.run(&reqs, false).await
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        ops::into_value(self.execute(ops::get(key)).await?)
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        ops::into_done(self.execute(ops::put(key, value, None)?).await?)
    }

    /// Writes `key` so that it expires after `ttl` (rounded up to whole milliseconds).
    pub async fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<()> {
        ops::into_done(self.execute(ops::put(key, value, Some(ttl))?).await?)
    }

    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        ops::into_done(self.execute(ops::delete(key)).await?)
    }

    /// One page of keys in `[start, end)`; pass the returned token back to continue.
    pub async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
        token: &[u8],
    ) -> Result<ScanPage> {
        ops::into_scan(self.execute(ops::scan(start, end, limit, token)).await?)
    }

    /// Every pair in `[start, end)`, fetched `page_size` at a time (not a snapshot).
    pub async fn scan_all(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        page_size: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut s = ScanAll::new(start, end, page_size);
        while s.page(ops::into_scan(self.execute(s.request()).await?)?)? {}
        Ok(s.out)
    }

    /// Several operations in one request; `atomic` applies all or none.
    pub async fn batch(&self, atomic: bool, ops: Vec<BatchOp>) -> Result<Vec<BatchResult>> {
        let n = ops.len();
        ops::into_batch(self.execute(ops::batch(atomic, ops)).await?, n)
    }

    /// Compare-and-swap; see [`crate::Client::cas`].
    pub async fn cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<CasResult> {
        ops::into_cas(self.execute(ops::cas(key, expected, new)).await?)
    }

    /// Adds `delta`; see [`crate::Client::incr`].
    pub async fn incr(&self, key: &[u8], delta: i64) -> Result<i64> {
        ops::into_int(self.execute(ops::incr(key, delta)).await?)
    }

    /// Sets (`Some`) or removes (`None`) the key's TTL; returns whether the key exists.
    pub async fn expire(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool> {
        ops::into_found(self.execute(ops::expire(key, ttl)?).await?)
    }

    pub async fn ttl(&self, key: &[u8]) -> Result<TtlState> {
        ops::into_ttl(self.execute(ops::ttl(key)).await?)
    }

    pub async fn ping(&self) -> Result<()> {
        ops::into_pong(self.execute(ops::ping()).await?)
    }

    /// The node's statistics as JSON text.
    pub async fn stats(&self) -> Result<String> {
        ops::into_stats(self.execute(Request::Stats).await?)
    }

    /// The node's live settings as (name, value) pairs: every one, or only `name`.
    pub async fn config_get(&self, name: Option<&str>) -> Result<Vec<(String, String)>> {
        ops::into_settings(self.execute(ops::config(name, None)).await?)
    }

    /// Sets a live setting on every core of the node (not persisted); answers with
    /// its value once every core has it.
    pub async fn config_set(&self, name: &str, value: &str) -> Result<Vec<(String, String)>> {
        ops::into_settings(self.execute(ops::config(Some(name), Some(value))).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn client_and_its_futures_are_send() {
        let c = Client::new(Config::default()).unwrap();
        assert_send(&c.get(b"k"));
        assert_send(&c.pipeline(Vec::new()));
        assert_send(&c.scan_all(b"", None, 10));
        fn sync<T: Send + Sync + Clone>() {}
        sync::<Client>();
    }
}
