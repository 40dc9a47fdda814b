//! The blocking client on `std::net`: [`Connection`] is one socket, [`Client`] a
//! shareable pool of them with retries.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nextdb_proto::{BatchOp, BatchResult, HelloOk, Request, Response, TtlState};
use rustls::ClientConfig;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ops::{self, CasResult, ScanAll, ScanPage};
use crate::retry;
use crate::routes::{Routes, Target};
use crate::session::{
    self, Frame, Handshake, IdGen, Pending, ResponseReader, Step, placeholder_hello,
};
use crate::tls::{self, Stream, TlsConfig};

/// One authenticated TCP (or TLS, see [`Config::tls`]) connection. Requests on it are
/// sequential (`&mut self`); [`pipeline`](Connection::pipeline) sends many at once.
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
    /// Set when the stream's state is unknown (an error or timeout mid-exchange could
    /// leave a stale response in flight): the connection must not be reused.
    broken: bool,
}

impl Connection {
    /// Connects to the first address of `cfg.addrs` that accepts and completes the
    /// handshake.
    pub fn connect(cfg: &Config) -> Result<Connection> {
        Connection::connect_from(cfg, None, 0)
    }

    /// Like `connect`, trying the addresses in turn starting at `first`. `built`: the
    /// rustls config already built from `cfg.tls` (built here if `None`).
    pub(crate) fn connect_from(
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
            match Connection::connect_addr(cfg, tls.as_ref(), addr) {
                Ok(c) => return Ok(c),
                // Credentials and configuration are the same for every node.
                Err(e @ (Error::Auth(_) | Error::InvalidArgument(_))) => return Err(e),
                Err(e) => {
                    tracing::debug!(addr = %addr, error = %e, "connect failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn connect_addr(
        cfg: &Config,
        tls: Option<&(Arc<ClientConfig>, &TlsConfig)>,
        addr: &str,
    ) -> Result<Connection> {
        let tls = match tls {
            Some((config, t)) => Some((config, tls::server_name(t, addr)?)),
            None => None,
        };
        let mut last = None;
        for sa in addr.to_socket_addrs()? {
            let deadline = Instant::now() + cfg.connect_timeout;
            let tcp = match TcpStream::connect_timeout(&sa, cfg.connect_timeout) {
                Ok(s) => s,
                Err(e) => {
                    last = Some(io_error(e));
                    continue;
                }
            };
            // Requests are small and latency-bound: do not let Nagle hold them back.
            tcp.set_nodelay(true)?;
            // TLS speaks from the first byte: its handshake precedes HELLO, within the
            // same connect timeout.
            let stream = match &tls {
                Some((config, name)) => Stream::tls(tcp, Arc::clone(config), name.clone(), || {
                    remaining(deadline)
                })?,
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
            conn.hello_ok = conn.handshake(cfg, deadline)?;
            conn.broken = false;
            tracing::debug!(addr = %sa, server = %conn.hello_ok.server_name, "connected");
            return Ok(conn);
        }
        Err(last.unwrap_or_else(|| {
            Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{addr} resolves to no address"),
            ))
        }))
    }

    fn handshake(&mut self, cfg: &Config, deadline: Instant) -> Result<HelloOk> {
        let (mut hs, hello) = Handshake::start(cfg)?;
        self.write(&hello, deadline)?;
        loop {
            let f = self.read_frame(deadline)?;
            match hs.step(f)? {
                Step::Send(bytes) => self.write(&bytes, deadline)?,
                Step::Done(h) => return Ok(h),
            }
        }
    }

    /// The server's answer to HELLO: version, server name, shard layout.
    pub fn hello_ok(&self) -> &HelloOk {
        &self.hello_ok
    }

    /// Connects to `addr` only (a core's own port, for shard-aware routing).
    pub(crate) fn connect_to(
        cfg: &Config,
        built: Option<&Arc<ClientConfig>>,
        addr: &str,
    ) -> Result<Connection> {
        let tls = tls::resolve(cfg, built)?;
        Connection::connect_addr(cfg, tls.as_ref(), addr)
    }

    /// Whether an earlier failure left this connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether an idle connection still looks usable: the server has not closed it and
    /// sent nothing unasked (such as a SHUTTING_DOWN error). Checked before a pooled
    /// connection is reused, so a server's idle timeout does not fail the next request
    /// (which, if not idempotent, could not be retried).
    ///
    /// Plain TCP: a non-blocking peek must find nothing. TLS: the TLS records that have
    /// arrived are read and processed without blocking (a TLS 1.3 session ticket,
    /// which servers send unasked after the handshake, is fine); they must leave no
    /// plaintext and no close.
    fn is_reusable(&mut self) -> bool {
        !self.broken && self.stream.is_idle()
    }

    /// Sends one request and waits for its response; an error response becomes
    /// `Err(Error::Server)`.
    pub fn execute(&mut self, req: &Request) -> Result<Response> {
        let mut out = self.round_trip(std::slice::from_ref(req))?;
        let resp = out
            .pop()
            .ok_or_else(|| Error::UnexpectedResponse("no response".into()))?;
        session::into_result(resp)
    }

    /// Sends all `reqs` in one write and returns their responses in request order,
    /// whatever order the server answered in. An error answering one request stays in
    /// its place as `Response::Error`.
    ///
    /// All requests are written before any response is read, so a pipeline whose
    /// requests and responses both overflow the socket buffers can stall until the
    /// request timeout: keep pipelines to a few megabytes.
    pub fn pipeline(&mut self, reqs: &[Request]) -> Result<Vec<Response>> {
        self.round_trip(reqs)
    }

    fn round_trip(&mut self, reqs: &[Request]) -> Result<Vec<Response>> {
        if self.broken {
            return Err(Error::Closed);
        }
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut wbuf = std::mem::take(&mut self.wbuf);
        wbuf.clear();
        let res = Pending::encode(reqs, &mut self.ids, &mut wbuf)
            .and_then(|pending| self.exchange(&wbuf, pending));
        self.wbuf = wbuf;
        self.broken = match &res {
            Ok(out) => session::closes_connection(out),
            Err(e) => session::breaks_connection(e),
        };
        res
    }

    fn exchange(&mut self, bytes: &[u8], mut pending: Pending) -> Result<Vec<Response>> {
        let deadline = Instant::now() + self.request_timeout;
        self.write(bytes, deadline)?;
        while !pending.is_done() {
            let f = self.read_frame(deadline)?;
            pending.accept(f)?;
        }
        Ok(pending.finish())
    }

    fn write(&mut self, bytes: &[u8], deadline: Instant) -> Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            self.stream
                .tcp()
                .set_write_timeout(Some(remaining(deadline)?))?;
            match self.stream.write(rest) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        // TLS buffers records that a timed-out socket write left behind; a no-op on
        // plain TCP.
        loop {
            self.stream
                .tcp()
                .set_write_timeout(Some(remaining(deadline)?))?;
            match self.stream.flush() {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
    }

    fn read_frame(&mut self, deadline: Instant) -> Result<Frame> {
        loop {
            if let Some(f) = self.reader.next_frame()? {
                return Ok(f);
            }
            self.stream
                .tcp()
                .set_read_timeout(Some(remaining(deadline)?))?;
            match self.stream.read(self.reader.spare()) {
                // TLS reports a TCP close without close_notify as UnexpectedEof.
                Ok(0) => return Err(Error::Closed),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(Error::Closed),
                Ok(n) => self.reader.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
    }
}

/// Time left before `deadline`, or `Timeout`. Never zero: std rejects a zero timeout.
fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout);
    }
    Ok(left)
}

/// A socket timeout surfaces as WouldBlock (Unix) or TimedOut (Windows); a TLS
/// failure becomes `Error::Tls`.
pub(crate) fn io_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::from(e),
    }
}

/// A thread-safe client: a bounded pool of connections opened on demand, with retries.
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
    /// Where the next new connection starts in `config.addrs`, to spread connections.
    next_addr: AtomicUsize,
}

#[derive(Debug)]
struct ShardPools {
    routes: Routes,
    pools: Vec<Pool>,
}

impl Inner {
    /// The pool a request with `target` draws from.
    fn pool(&self, target: Target) -> &Pool {
        match (target, self.shards.get()) {
            (Target::Shard(s), Some(sp)) => sp.pools.get(s).unwrap_or(&self.pool),
            _ => &self.pool,
        }
    }

    /// Where `req` should go: the core that owns its keys, once the routes are known.
    fn target(&self, req: &Request) -> Target {
        self.shards
            .get()
            .map_or(Target::Any, |sp| sp.routes.target(req))
    }

    /// Opens a connection for `target`: to the core's own port when it has one,
    /// else (or if that fails for a reason another address might not have) to the
    /// configured addresses, whose HELLO answer may teach the routes.
    fn open(&self, target: Target) -> Result<Connection> {
        let own = match (target, self.shards.get()) {
            (Target::Shard(s), Some(sp)) => sp.routes.addr(s),
            _ => None,
        };
        if let Some(addr) = own {
            match Connection::connect_to(&self.config, self.tls.as_ref(), addr) {
                Ok(c) => return Ok(c),
                Err(e @ (Error::Auth(_) | Error::InvalidArgument(_) | Error::Tls(_))) => {
                    return Err(e);
                }
                // Still correct through any core (it forwards), only slower.
                Err(e) => tracing::debug!(addr, error = %e, "shard port failed; using any core"),
            }
        }
        let first = self.next_addr.fetch_add(1, Ordering::Relaxed);
        let c = Connection::connect_from(&self.config, self.tls.as_ref(), first)?;
        self.learn(&c);
        Ok(c)
    }

    fn learn(&self, c: &Connection) {
        if !self.config.shard_aware || self.shards.get().is_some() {
            return;
        }
        if let Some(routes) = Routes::learn(c.hello_ok(), &c.addr) {
            let pools = (0..routes.shards())
                .map(|_| Pool::new(self.pool.size))
                .collect();
            // Another thread may have learned them first: either copy will do.
            let _ = self.shards.set(ShardPools { routes, pools });
        }
    }
}

#[derive(Debug)]
struct Pool {
    state: Mutex<PoolState>,
    freed: Condvar,
    size: usize,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Connection>,
    /// Slots handed out; `idle.len() + out <= size` always.
    out: usize,
}

impl Pool {
    fn new(size: usize) -> Pool {
        Pool {
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
            size,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is two plain fields, consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `wait` for a free slot for requests to `target`; it comes with an
    /// idle connection if any.
    fn acquire(&self, wait: Duration, target: Target) -> Result<Slot<'_>> {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        while st.out >= self.size {
            let left = remaining(deadline)?;
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        st.out += 1;
        let conn = st.idle.pop();
        Ok(Slot {
            pool: self,
            conn,
            target,
        })
    }
}

/// A claim on one pool slot; gives its connection back (if healthy) when dropped, so
/// an early return or panic cannot leak the slot.
struct Slot<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
    target: Target,
}

impl Slot<'_> {
    /// The slot's connection, opened now if it has none or its last one broke.
    fn connection(&mut self, inner: &Inner) -> Result<&mut Connection> {
        let reusable = self.conn.as_mut().is_some_and(Connection::is_reusable);
        let conn = match self.conn.take() {
            Some(c) if reusable => c,
            _ => inner.open(self.target)?,
        };
        Ok(self.conn.insert(conn))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        st.out -= 1;
        if let Some(c) = self.conn.take()
            && !c.is_broken()
        {
            st.idle.push(c);
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

impl Client {
    /// A client that opens connections on first use. Fails only on an unusable config
    /// (including a TLS config whose CA PEM holds no usable certificate).
    pub fn new(config: Config) -> Result<Client> {
        if config.addrs.is_empty() {
            return Err(Error::InvalidArgument("no addresses configured".into()));
        }
        let size = config.pool_size.max(1);
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
    /// or password shows up here rather than on the first request (and a shard-aware
    /// client learns the node's cores before it).
    pub fn connect(config: Config) -> Result<Client> {
        let client = Client::new(config)?;
        let mut slot = client
            .inner
            .pool
            .acquire(client.inner.config.request_timeout, Target::Any)?;
        slot.connection(&client.inner)?;
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

    /// Runs `f` on a pooled connection for `target`, retrying per
    /// [`retry::should_retry`].
    fn with_retry<T>(
        &self,
        target: Target,
        idempotent: bool,
        mut f: impl FnMut(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let inner = &*self.inner;
        // One slot for all attempts: a retry reconnects in place instead of queueing
        // behind other callers again.
        let pool = inner.pool(target);
        let mut slot = pool.acquire(inner.config.request_timeout, target)?;
        let mut attempt = 0;
        loop {
            let (res, sent) = match slot.connection(inner) {
                Ok(conn) => (f(conn), true),
                Err(e) => (Err(e), false),
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
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// Sends any request (retried if safe); an error response is `Err(Error::Server)`.
    pub fn execute(&self, req: Request) -> Result<Response> {
        let target = self.inner.target(&req);
        self.with_retry(target, req.is_idempotent(), |c| c.execute(&req))
    }

    /// Sends `reqs` on one connection (to any core) in one write; responses in request
    /// order, errors in place (see [`Connection::pipeline`]). Retried as a whole after a connection
    /// failure only if every request is idempotent.
    pub fn pipeline(&self, reqs: Vec<Request>) -> Result<Vec<Response>> {
        let idempotent = reqs.iter().all(Request::is_idempotent);
        self.with_retry(Target::Any, idempotent, |c| c.pipeline(&reqs))
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        ops::into_value(self.execute(ops::get(key))?)
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        ops::into_done(self.execute(ops::put(key, value, None)?)?)
    }

    /// Writes `key` so that it expires after `ttl` (rounded up to whole milliseconds).
    pub fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<()> {
        ops::into_done(self.execute(ops::put(key, value, Some(ttl))?)?)
    }

    pub fn delete(&self, key: &[u8]) -> Result<()> {
        ops::into_done(self.execute(ops::delete(key))?)
    }

    /// One page of keys in `[start, end)`; pass the returned token back to continue
    /// (an empty token starts at `start`).
    pub fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
        token: &[u8],
    ) -> Result<ScanPage> {
        ops::into_scan(self.execute(ops::scan(start, end, limit, token))?)
    }

    /// Every pair in `[start, end)`, fetched `page_size` at a time. Not a snapshot:
    /// writes between pages may or may not be seen.
    pub fn scan_all(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        page_size: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut s = ScanAll::new(start, end, page_size);
        while s.page(ops::into_scan(self.execute(s.request())?)?)? {}
        Ok(s.out)
    }

    /// Several operations in one request; `atomic` applies them all or none (they must
    /// then fall in one partition). Results in operation order.
    pub fn batch(&self, atomic: bool, ops: Vec<BatchOp>) -> Result<Vec<BatchResult>> {
        let n = ops.len();
        ops::into_batch(self.execute(ops::batch(atomic, ops))?, n)
    }

    /// Sets `key` to `new` (`None`: deletes it) if its value is `expected` (`None`:
    /// absent). Not retried after a lost connection: it may have applied.
    pub fn cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<CasResult> {
        ops::into_cas(self.execute(ops::cas(key, expected, new))?)
    }

    /// Adds `delta` to the decimal integer at `key` (absent counts as 0); returns the
    /// new value. Not retried after a lost connection: it may have applied.
    pub fn incr(&self, key: &[u8], delta: i64) -> Result<i64> {
        ops::into_int(self.execute(ops::incr(key, delta))?)
    }

    /// Sets (`Some`) or removes (`None`) the key's TTL; returns whether the key exists.
    pub fn expire(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool> {
        ops::into_found(self.execute(ops::expire(key, ttl)?)?)
    }

    pub fn ttl(&self, key: &[u8]) -> Result<TtlState> {
        ops::into_ttl(self.execute(ops::ttl(key))?)
    }

    pub fn ping(&self) -> Result<()> {
        ops::into_pong(self.execute(ops::ping())?)
    }

    /// The node's statistics as JSON text.
    pub fn stats(&self) -> Result<String> {
        ops::into_stats(self.execute(Request::Stats)?)
    }

    /// Backs the node up into `to` (an absolute path on the server; missing or
    /// empty), copying only files not already in the backup `incremental_from`.
    /// Returns the node's JSON summary. Never retried (the directory is no longer
    /// empty after a first attempt); the request timeout must cover the copy.
    pub fn backup(&self, to: &str, incremental_from: Option<&str>) -> Result<String> {
        ops::into_backup(self.execute(Request::Backup {
            to: to.to_string(),
            incremental_from: incremental_from.unwrap_or_default().to_string(),
        })?)
    }

    /// The node's live settings as (name, value) pairs: every one, or only `name`.
    pub fn config_get(&self, name: Option<&str>) -> Result<Vec<(String, String)>> {
        ops::into_settings(self.execute(ops::config(name, None))?)
    }

    /// Sets a live setting on every core of the node (not persisted: a restart
    /// returns to the `serve` flags); answers with its value once every core has it.
    pub fn config_set(&self, name: &str, value: &str) -> Result<Vec<(String, String)>> {
        ops::into_settings(self.execute(ops::config(Some(name), Some(value)))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn client_is_send_sync_clone() {
        assert_send_sync::<Client>();
    }

    #[test]
    fn empty_addrs_is_rejected() {
        let cfg = Config::default().addrs(Vec::<String>::new());
        assert!(matches!(Client::new(cfg), Err(Error::InvalidArgument(_))));
    }
}
