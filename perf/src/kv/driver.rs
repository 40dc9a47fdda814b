//! The closed-loop load generator, one for both servers so the client costs the same:
//! a single-threaded tokio runtime (like redis-benchmark's one event loop), one task
//! per connection, each writing `pipeline` requests in one write and reading all their
//! replies before the next batch. Latency is per request, from the batch's write to
//! its reply, in a per-task hdrhistogram merged at the end. Every GET reply's value
//! length is checked against what the load wrote. Paced (latency) runs use
//! [`super::open_loop`] instead.

use super::keys::{
    Dist, FastRng, KEY_BYTES, KeyChooser, ValuePool, ZIPF_THETA, Zipfian, format_key,
};
use super::native::{self, Outcome};
use super::resp::{self, Reply};
use hdrhistogram::Histogram;
use nextdb_proto::{HelloOk, Response, SlotMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;

/// Which wire protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// NextDB's native protocol v1.
    Native,
    /// RESP2 (Redis).
    Resp,
}

/// One benchmark run's parameters.
#[derive(Debug, Clone)]
pub struct Workload {
    pub keys: u64,
    pub dist: Dist,
    /// Fraction of operations that are GETs; the rest are PUT / SET.
    pub get_ratio: f64,
    pub connections: usize,
    pub pipeline: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second over all connections (open loop only).
    pub rate: Option<f64>,
    /// The length of every value the load wrote: a GET must read back this many bytes.
    pub value_bytes: usize,
    pub seed: u64,
    /// Native protocol: each connection is one per core, requests sent to the owner.
    pub shard_aware: bool,
}

/// What a run measured (only requests sent and answered inside the measured window).
#[derive(Debug)]
pub struct RunResult {
    pub ops: u64,
    pub gets: u64,
    pub puts: u64,
    /// GETs that found no value (after a load there should be none).
    pub misses: u64,
    /// GET replies whose value is not `value_bytes` long.
    pub bad_values: u64,
    /// Error replies (not counted in `ops`).
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency in nanoseconds.
    pub hist: Histogram<u64>,
    pub secs: f64,
}

impl RunResult {
    pub fn new(secs: f64) -> Result<RunResult> {
        Ok(RunResult {
            ops: 0,
            gets: 0,
            puts: 0,
            misses: 0,
            bad_values: 0,
            errors: 0,
            first_error: None,
            hist: new_hist()?,
            secs,
        })
    }

    /// Counts one reply; `latency_ns` when it falls in the measured window.
    pub fn record(
        &mut self,
        is_get: bool,
        outcome: Outcome,
        value_bytes: usize,
        latency_ns: Option<u64>,
    ) -> Result<()> {
        if let Outcome::Error {
            code,
            message,
            closes,
        } = outcome
        {
            if closes {
                return Err(format!("error {code}: {message}").into());
            }
            self.errors += u64::from(latency_ns.is_some());
            self.first_error
                .get_or_insert(format!("error {code}: {message}"));
            return Ok(());
        }
        let Some(ns) = latency_ns else {
            return Ok(());
        };
        self.ops += 1;
        if is_get {
            self.gets += 1;
            match outcome {
                Outcome::Miss => self.misses += 1,
                Outcome::Hit(len) => self.bad_values += u64::from(len != value_bytes),
                _ => self.bad_values += 1,
            }
        } else {
            self.puts += 1;
        }
        self.hist.saturating_record(ns.max(1));
        Ok(())
    }

    pub fn merge(&mut self, o: RunResult) -> Result<()> {
        self.ops += o.ops;
        self.gets += o.gets;
        self.puts += o.puts;
        self.misses += o.misses;
        self.bad_values += o.bad_values;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.hist.add(&o.hist)?;
        Ok(())
    }
}

fn new_hist() -> Result<Histogram<u64>> {
    // 1 ns .. 100 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 100_000_000_000, 3)?)
}

/// A connection after its handshake, with its buffers.
pub struct Conn {
    pub(super) stream: TcpStream,
    pub(super) proto: Proto,
    pub(super) rbuf: Vec<u8>,
    pub(super) rpos: usize,
    pub(super) wbuf: Vec<u8>,
    /// The HELLO answer (native protocol).
    pub(super) hello: Option<HelloOk>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, proto: Proto) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            proto,
            rbuf: Vec::with_capacity(64 << 10),
            rpos: 0,
            wbuf: Vec::with_capacity(16 << 10),
            hello: None,
        };
        if proto == Proto::Native {
            c.wbuf.clear();
            native::encode_hello(0, &mut c.wbuf);
            c.stream.write_all(&c.wbuf).await?;
            match c.read_frame().await? {
                Response::HelloOk(h) if h.authenticated => c.hello = Some(h),
                Response::HelloOk(_) => {
                    return Err(
                        "HELLO: the server wants authentication (start it with --insecure)".into(),
                    );
                }
                Response::Error { code, message } => {
                    return Err(format!("HELLO refused: error {code}: {message}").into());
                }
                other => return Err(format!("HELLO: unexpected reply {other:?}").into()),
            }
        }
        Ok(c)
    }

    /// Reads more bytes into the buffer; EOF is an error (a reply was expected).
    async fn fill(&mut self) -> Result<()> {
        if self.rpos > 0 && self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        } else if self.rpos > (32 << 10) {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < (16 << 10) {
            self.rbuf.reserve(64 << 10);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }

    /// The next native frame as a `Response` (handshake and PING only).
    async fn read_frame(&mut self) -> Result<Response> {
        loop {
            if let Some((_, r, n)) = native::decode_frame(&self.rbuf[self.rpos..])? {
                self.rpos += n;
                return Ok(r);
            }
            self.fill().await?;
        }
    }

    /// The next reply: the request id it answers (native) or None (RESP: in order).
    pub async fn read_reply(&mut self) -> Result<(Option<u32>, Outcome)> {
        loop {
            let buf = &self.rbuf[self.rpos..];
            let parsed = match self.proto {
                Proto::Native => native::decode(buf)?.map(|(id, o, n)| (Some(id), o, n)),
                Proto::Resp => resp::parse(buf)?.map(|(r, n)| (None, resp_outcome(r), n)),
            };
            if let Some((id, o, n)) = parsed {
                self.rpos += n;
                return Ok((id, o));
            }
            self.fill().await?;
        }
    }

    /// PING, answered (readiness checks).
    pub async fn ping(&mut self) -> Result<()> {
        self.wbuf.clear();
        match self.proto {
            Proto::Native => native::encode_ping(1, &mut self.wbuf),
            Proto::Resp => resp::encode_command(&[b"PING"], &mut self.wbuf),
        }
        self.stream.write_all(&self.wbuf).await?;
        match self.proto {
            Proto::Native => match self.read_frame().await? {
                Response::Pong { .. } => Ok(()),
                other => Err(format!("PING: unexpected reply {other:?}").into()),
            },
            Proto::Resp => match self.read_reply().await? {
                (_, Outcome::Done) => Ok(()),
                (_, other) => Err(format!("PING: unexpected reply {other:?}").into()),
            },
        }
    }

    #[inline]
    pub(super) fn push_request(&mut self, is_get: bool, key: &[u8], value: &[u8], id: u32) {
        encode_request(self.proto, is_get, key, value, id, &mut self.wbuf);
    }
}

/// Appends one GET or PUT / SET request.
#[inline]
pub fn encode_request(
    proto: Proto,
    is_get: bool,
    key: &[u8],
    value: &[u8],
    id: u32,
    out: &mut Vec<u8>,
) {
    match (proto, is_get) {
        (Proto::Native, true) => native::encode_get(key, id, out),
        (Proto::Native, false) => native::encode_put(key, value, id, out),
        (Proto::Resp, true) => resp::encode_get(key, out),
        (Proto::Resp, false) => resp::encode_set(key, value, out),
    }
}

fn resp_outcome(r: Reply<'_>) -> Outcome {
    match r {
        Reply::Bulk(Some(v)) => Outcome::Hit(v.len()),
        Reply::Bulk(None) => Outcome::Miss,
        Reply::Error(e) => Outcome::Error {
            code: 0,
            message: String::from_utf8_lossy(e).into_owned(),
            closes: false,
        },
        Reply::Simple(_) | Reply::Int(_) | Reply::Array(_) => Outcome::Done,
    }
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Connects, does the handshake and one PING; for waiting until a server is up.
pub fn probe(addr: SocketAddr, proto: Proto, timeout: Duration) -> Result<()> {
    runtime()?.block_on(async move {
        tokio::time::timeout(timeout, async move {
            let mut c = Conn::connect(addr, proto).await?;
            c.ping().await
        })
        .await
        .map_err(|_| BoxError::from("timed out"))?
    })
}

pub(super) async fn connect_all(addr: SocketAddr, proto: Proto, n: usize) -> Result<Vec<Conn>> {
    let handles: Vec<_> = (0..n)
        .map(|_| tokio::spawn(Conn::connect(addr, proto)))
        .collect();
    let mut conns = Vec::with_capacity(n);
    for h in handles {
        conns.push(h.await??);
    }
    Ok(conns)
}

/// Writes keys `0..keys` (value `i` of the pool for key `i`) over `connections`
/// connections, `depth` requests per batch. Returns the seconds it took.
pub fn load(
    addr: SocketAddr,
    proto: Proto,
    keys: u64,
    values: &Arc<ValuePool>,
    connections: usize,
    depth: usize,
) -> Result<f64> {
    let connections = connections.max(1);
    let depth = depth.max(1);
    runtime()?.block_on(async move {
        let start = Instant::now();
        let conns = connect_all(addr, proto, connections).await?;
        let mut handles = Vec::new();
        for (i, mut c) in conns.into_iter().enumerate() {
            let lo = keys * i as u64 / connections as u64;
            let hi = keys * (i as u64 + 1) / connections as u64;
            let values = Arc::clone(values);
            handles.push(tokio::spawn(async move {
                let mut key = [0u8; KEY_BYTES];
                let mut id = 0u32;
                let mut next = lo;
                while next < hi {
                    let end = (next + depth as u64).min(hi);
                    c.wbuf.clear();
                    for k in next..end {
                        format_key(k, &mut key);
                        c.push_request(false, &key, values.get(k), id);
                        id = id.wrapping_add(1);
                    }
                    c.stream.write_all(&c.wbuf).await?;
                    for _ in next..end {
                        match c.read_reply().await? {
                            (_, Outcome::Done) => {}
                            (_, other) => return Err(format!("load: {other:?}").into()),
                        }
                    }
                    next = end;
                }
                Ok::<(), BoxError>(())
            }));
        }
        for h in handles {
            h.await??;
        }
        Ok(start.elapsed().as_secs_f64())
    })
}

/// The measured window of a closed-loop run.
struct Window {
    /// Requests sent from here on and answered before `end` are measured.
    measure_from: Instant,
    end: Instant,
}

/// One batch in flight on a connection.
struct Batch {
    is_get: Vec<bool>,
    answered: Vec<bool>,
    first_id: u32,
    sent: Instant,
}

fn fill_batch(
    c: &mut Conn,
    b: &mut Batch,
    keys: &mut KeyChooser,
    rng: &mut FastRng,
    w: &Workload,
    values: &ValuePool,
    id: &mut u32,
) {
    let mut key = [0u8; KEY_BYTES];
    c.wbuf.clear();
    b.first_id = *id;
    for g in b.is_get.iter_mut() {
        *g = w.get_ratio >= 1.0 || rng.unit() < w.get_ratio;
        format_key(keys.next(), &mut key);
        c.push_request(*g, &key, values.get(rng.next_u64()), *id);
        *id = id.wrapping_add(1);
    }
    b.answered.iter_mut().for_each(|a| *a = false);
}

async fn read_batch(
    c: &mut Conn,
    b: &mut Batch,
    w: &Workload,
    win: &Window,
    st: &mut RunResult,
) -> Result<()> {
    for n in 0..b.is_get.len() {
        let (rid, outcome) = c.read_reply().await?;
        take_reply(b, rid, n, outcome, w, win, st)?;
    }
    Ok(())
}

/// Books the reply to request `rid` (RESP: the `n`th of the batch).
fn take_reply(
    b: &mut Batch,
    rid: Option<u32>,
    n: usize,
    outcome: Outcome,
    w: &Workload,
    win: &Window,
    st: &mut RunResult,
) -> Result<()> {
    let done = Instant::now();
    let slot = match rid {
        Some(r) => r.wrapping_sub(b.first_id) as usize,
        None => n,
    };
    if slot >= b.is_get.len() || b.answered[slot] {
        return Err(format!("reply for request id {rid:?}, which is not in flight").into());
    }
    b.answered[slot] = true;
    let measured = b.sent >= win.measure_from && done <= win.end;
    let ns =
        measured.then(|| u64::try_from(done.duration_since(b.sent).as_nanos()).unwrap_or(u64::MAX));
    st.record(b.is_get[slot], outcome, w.value_bytes, ns)
}

/// A shard-aware driver connection: one connection per core of the node, on the
/// cores' own ports, and the node's partition map.
pub struct Routed {
    map: SlotMap,
    conns: Vec<Conn>,
}

impl Routed {
    pub async fn connect(addr: SocketAddr) -> Result<Routed> {
        let first = Conn::connect(addr, Proto::Native).await?;
        let h = first
            .hello
            .ok_or_else(|| BoxError::from("no HELLO answer"))?;
        let map = SlotMap::new(h.slots, h.shards, &h.partitions)?;
        if h.shard_ports.len() != usize::from(h.shards) || h.shard_ports.contains(&0) {
            return Err("--shard-aware: the node advertises no shard ports".into());
        }
        let mut conns = Vec::with_capacity(h.shard_ports.len());
        for &port in &h.shard_ports {
            conns.push(Conn::connect(SocketAddr::new(addr.ip(), port), Proto::Native).await?);
        }
        Ok(Routed { map, conns })
    }
}

/// [`drive`] for a shard-aware connection: each batch's requests go to their keys'
/// cores (one write per core), and all replies are read before the next batch.
async fn drive_routed(
    mut r: Routed,
    w: Arc<Workload>,
    values: Arc<ValuePool>,
    zipf: Option<Arc<Zipfian>>,
    index: usize,
    win: Arc<Window>,
) -> Result<RunResult> {
    let seed = w.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut keys = KeyChooser::new(w.keys, w.dist, zipf.as_deref(), seed);
    let mut rng = FastRng::new(seed ^ 0xABCD);
    let pipeline = w.pipeline.max(1);
    let mut st = RunResult::new(w.duration.as_secs_f64())?;
    let mut b = Batch {
        is_get: vec![false; pipeline],
        answered: vec![false; pipeline],
        first_id: 0,
        sent: Instant::now(),
    };
    let mut per_conn = vec![0usize; r.conns.len()];
    let mut key = [0u8; KEY_BYTES];
    let mut id: u32 = 0;
    while Instant::now() < win.end {
        r.conns.iter_mut().for_each(|c| c.wbuf.clear());
        per_conn.iter_mut().for_each(|n| *n = 0);
        b.first_id = id;
        for g in b.is_get.iter_mut() {
            *g = w.get_ratio >= 1.0 || rng.unit() < w.get_ratio;
            format_key(keys.next(), &mut key);
            let s = usize::from(r.map.shard_of(&key));
            r.conns[s].push_request(*g, &key, values.get(rng.next_u64()), id);
            per_conn[s] += 1;
            id = id.wrapping_add(1);
        }
        b.answered.iter_mut().for_each(|a| *a = false);
        b.sent = Instant::now();
        for (c, &n) in r.conns.iter_mut().zip(&per_conn) {
            if n > 0 {
                c.stream.write_all(&c.wbuf).await?;
            }
        }
        for (c, &n) in r.conns.iter_mut().zip(&per_conn) {
            for i in 0..n {
                let (rid, outcome) = c.read_reply().await?;
                take_reply(&mut b, rid, i, outcome, &w, &win, &mut st)?;
            }
        }
    }
    Ok(st)
}

/// One connection's closed loop: a batch, all its replies, the next batch.
async fn drive(
    mut c: Conn,
    w: Arc<Workload>,
    values: Arc<ValuePool>,
    zipf: Option<Arc<Zipfian>>,
    index: usize,
    win: Arc<Window>,
) -> Result<RunResult> {
    let seed = w.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut keys = KeyChooser::new(w.keys, w.dist, zipf.as_deref(), seed);
    let mut rng = FastRng::new(seed ^ 0xABCD);
    let pipeline = w.pipeline.max(1);
    let mut st = RunResult::new(w.duration.as_secs_f64())?;
    let mut b = Batch {
        is_get: vec![false; pipeline],
        answered: vec![false; pipeline],
        first_id: 0,
        sent: Instant::now(),
    };
    let mut id: u32 = 0;
    while Instant::now() < win.end {
        fill_batch(&mut c, &mut b, &mut keys, &mut rng, &w, &values, &mut id);
        b.sent = Instant::now();
        c.stream.write_all(&c.wbuf).await?;
        read_batch(&mut c, &mut b, &w, &win, &mut st).await?;
    }
    Ok(st)
}

fn check_workload(w: &Workload) -> Result<Option<Arc<Zipfian>>> {
    if w.connections == 0 || w.pipeline == 0 {
        return Err("connections and pipeline must be at least 1".into());
    }
    Ok(match w.dist {
        Dist::Zipfian => Some(Arc::new(Zipfian::new(w.keys, ZIPF_THETA))),
        Dist::Uniform => None,
    })
}

/// Runs `w` closed-loop against the server at `addr`: warm-up, then the measured window.
pub fn run(
    addr: SocketAddr,
    proto: Proto,
    w: &Workload,
    values: &Arc<ValuePool>,
) -> Result<RunResult> {
    let zipf = check_workload(w)?;
    if w.rate.is_some() {
        return Err("a paced workload runs open-loop (open_loop::run)".into());
    }
    let w = Arc::new(w.clone());
    let values = Arc::clone(values);
    if w.shard_aware && proto == Proto::Native {
        return run_routed(addr, w, values);
    }
    runtime()?.block_on(async move {
        let conns = connect_all(addr, proto, w.connections).await?;
        let measure_from = Instant::now() + w.warmup;
        let win = Arc::new(Window {
            measure_from,
            end: measure_from + w.duration,
        });
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                tokio::spawn(drive(
                    c,
                    Arc::clone(&w),
                    Arc::clone(&values),
                    zipf.clone(),
                    i,
                    Arc::clone(&win),
                ))
            })
            .collect();
        // A server that stops answering must not hang the suite.
        let deadline = win.end + Duration::from_secs(30);
        let mut out = RunResult::new(w.duration.as_secs_f64())?;
        for h in handles {
            let st = tokio::time::timeout_at(deadline.into(), h)
                .await
                .map_err(|_| BoxError::from("the server stopped answering"))???;
            out.merge(st)?;
        }
        Ok(out)
    })
}

/// [`run`] with shard-aware connections (`Workload::shard_aware`).
fn run_routed(addr: SocketAddr, w: Arc<Workload>, values: Arc<ValuePool>) -> Result<RunResult> {
    let zipf = check_workload(&w)?;
    runtime()?.block_on(async move {
        let mut conns = Vec::with_capacity(w.connections);
        for _ in 0..w.connections {
            conns.push(Routed::connect(addr).await?);
        }
        let measure_from = Instant::now() + w.warmup;
        let win = Arc::new(Window {
            measure_from,
            end: measure_from + w.duration,
        });
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let (w, values, zipf, win) = (w.clone(), values.clone(), zipf.clone(), win.clone());
                tokio::spawn(drive_routed(c, w, values, zipf, i, win))
            })
            .collect();
        let deadline = win.end + Duration::from_secs(30);
        let mut out = RunResult::new(w.duration.as_secs_f64())?;
        for h in handles {
            let st = tokio::time::timeout_at(deadline.into(), h)
                .await
                .map_err(|_| BoxError::from("the server stopped answering"))???;
            out.merge(st)?;
        }
        Ok(out)
    })
}
