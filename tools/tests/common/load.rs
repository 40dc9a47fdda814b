//! Load and observation helpers for the hostile-client suite: a raw client that never
//! panics on what a hostile peer may see (resets, timeouts), a well-behaved probe
//! client that measures its own latency and remembers every acknowledged write, and
//! samplers of the server process's resident memory and open descriptors.

use hdrhistogram::Histogram;
use nextdb_proto::frame::{HEADER_BYTES, decode_header};
use nextdb_proto::limits::{MAX_VERSION, MIN_VERSION};
use nextdb_proto::scram::MECHANISM_NONE;
use nextdb_proto::{ErrorCode, Hello, Request, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a read from the server produced.
#[derive(Debug)]
pub enum Got {
    Frame(u32, Response),
    /// The server closed (EOF or reset).
    Closed,
    /// Nothing within the read timeout.
    Silent,
}

/// A raw connection for hostile use: I/O errors are outcomes, not panics; a response
/// the protocol cannot decode is a server bug and does panic.
pub struct Wire {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Wire> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Wire { s, buf: Vec::new() })
    }

    pub fn send(&mut self, req: &Request, id: u32) -> std::io::Result<()> {
        let mut b = Vec::new();
        req.encode(id, &mut b);
        self.s.write_all(&b)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    pub fn hello_none(&mut self) -> std::io::Result<()> {
        self.send(&hello_none_request(), 0)
    }

    /// Sends HELLO and waits for HelloOk; false if the server refused or closed.
    pub fn login_insecure(&mut self) -> bool {
        self.hello_none().is_ok() && matches!(self.recv(), Got::Frame(_, Response::HelloOk(_)))
    }

    /// The next frame, or Closed / Silent. Panics on an undecodable response.
    pub fn recv(&mut self) -> Got {
        loop {
            match decode_header(&self.buf, usize::MAX) {
                Ok(Some(h)) => {
                    let body = &self.buf[HEADER_BYTES..h.total];
                    let r = Response::decode(h.opcode, h.flags, body).unwrap_or_else(|e| {
                        panic!(
                            "server sent an undecodable response (opcode {:#x}): {e}",
                            h.opcode
                        )
                    });
                    self.buf.drain(..h.total);
                    return Got::Frame(h.request_id, r);
                }
                Ok(None) => {}
                Err(e) => panic!("server sent a bad frame header: {e}"),
            }
            let mut tmp = vec![0u8; 1 << 16];
            match self.s.read(&mut tmp) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Got::Silent;
                }
                Err(_) => return Got::Closed,
            }
        }
    }

    /// Sends one request and waits for its answer (None: closed or silent).
    pub fn call(&mut self, req: &Request, id: u32) -> Option<Response> {
        self.send(req, id).ok()?;
        match self.recv() {
            Got::Frame(got, r) => {
                assert_eq!(got, id, "response to the wrong request id");
                Some(r)
            }
            _ => None,
        }
    }

    /// True if the server has closed this connection (polls without blocking long).
    pub fn closed_by_server(&mut self) -> bool {
        let _ = self.s.set_read_timeout(Some(Duration::from_millis(50)));
        loop {
            match self.recv() {
                Got::Closed => return true,
                Got::Silent => return false,
                Got::Frame(..) => {}
            }
        }
    }
}

pub fn hello_none_request() -> Request {
    Request::Hello(Hello {
        min_version: MIN_VERSION,
        max_version: MAX_VERSION,
        client_name: "hostile".into(),
        mechanism: MECHANISM_NONE.into(),
        auth_data: Vec::new(),
    })
}

pub fn code_of(r: &Response) -> Option<u16> {
    match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// Overload answers a well-behaved client must expect and retry.
pub fn is_retryable(code: u16) -> bool {
    code == ErrorCode::Busy as u16 || code == ErrorCode::Timeout as u16
}

/// What the well-behaved probe saw.
pub struct ProbeReport {
    pub hist: Histogram<u64>,
    /// Every write the node acknowledged: key and value.
    pub acked: Vec<(Vec<u8>, Vec<u8>)>,
    pub retries: u64,
    /// Anything a well-behaved client must never see.
    pub failures: Vec<String>,
}

impl ProbeReport {
    pub fn p99_us(&self) -> u64 {
        self.hist.value_at_quantile(0.99)
    }
}

/// A well-behaved client: PUT a fresh key, GET an earlier acknowledged one, one
/// request at a time, for `run_for`; records every request's round trip (µs).
pub fn probe(addr: SocketAddr, tag: &str, seed: u64, run_for: Duration) -> ProbeReport {
    let mut rep = ProbeReport {
        hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
        acked: Vec::new(),
        retries: 0,
        failures: Vec::new(),
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut w = match Wire::connect(addr) {
        Ok(w) => w,
        Err(e) => {
            rep.failures.push(format!("probe cannot connect: {e}"));
            return rep;
        }
    };
    if !w.login_insecure() {
        rep.failures.push("probe HELLO refused".into());
        return rep;
    }
    let end = Instant::now() + run_for;
    let mut i = 0u64;
    while Instant::now() < end && rep.failures.len() < 5 {
        let key = format!("wb/{tag}/{i:08}").into_bytes();
        let value: Vec<u8> = (0..rng.gen_range(1..200)).map(|_| rng.r#gen()).collect();
        let put = Request::Put {
            key: key.clone(),
            value: value.clone(),
            ttl_ms: None,
        };
        match timed_call(&mut w, &put, &mut rep) {
            Some(Response::Done) => rep.acked.push((key, value)),
            other => rep.failures.push(format!("PUT {i}: {other:?}")),
        }
        if !rep.acked.is_empty() {
            let (k, v) = rep.acked[rng.gen_range(0..rep.acked.len())].clone();
            match timed_call(&mut w, &Request::Get { key: k.clone() }, &mut rep) {
                Some(Response::Value(Some(got))) if got == v => {}
                other => rep.failures.push(format!(
                    "GET {} after ack: {other:?}",
                    String::from_utf8_lossy(&k)
                )),
            }
        }
        i += 1;
    }
    rep
}

/// One request with retries on BUSY/TIMEOUT; the recorded latency spans the retries.
fn timed_call(w: &mut Wire, req: &Request, rep: &mut ProbeReport) -> Option<Response> {
    let t = Instant::now();
    let mut r = w.call(req, 7);
    while let Some(code) = r.as_ref().and_then(code_of) {
        if !is_retryable(code) || t.elapsed() > Duration::from_secs(30) {
            break;
        }
        rep.retries += 1;
        std::thread::sleep(Duration::from_millis(1));
        r = w.call(req, 7);
    }
    rep.hist
        .saturating_record(t.elapsed().as_micros().max(1) as u64);
    r
}

/// Samples a process's VmRSS every 20 ms in a thread; kills the process when it
/// passes `kill_above_kib`, so a runaway node cannot take the machine down with it.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    pub max_kib: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl RssWatch {
    pub fn start(pid: i32, kill_above_kib: u64) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let max_kib = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max_kib.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let rss = rss_kib(pid);
                m.fetch_max(rss, Ordering::Relaxed);
                if rss > kill_above_kib {
                    // SAFETY: signalling our own child process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            stop,
            max_kib,
            handle: Some(handle),
        }
    }

    /// Stops sampling; returns the largest RSS seen (KiB).
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.max_kib.load(Ordering::Relaxed)
    }
}

pub fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of a process (sockets included).
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Lowers the calling thread to nice 19, so attackers on the node's own two cores
/// take only the CPU the node and the probe leave idle, as attackers on another
/// machine would.
pub fn attacker_priority() {
    // SAFETY: gettid and setpriority on the calling thread; no memory is involved.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}
