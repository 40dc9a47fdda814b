//! The open-loop driver of the latency rows: requests go out on a fixed schedule
//! whatever the server does, and each is timed from when it was due, not from when it
//! was sent, so a server that falls behind shows it in its latency (no coordinated
//! omission).
//!
//! One dedicated sender thread owns the schedule: request `i` (over all connections)
//! is due at `start + i / rate` on connection `i mod C`. It sleeps until the next
//! request is due (timer slack 1 ns, so the wake-up is µs-precise), then writes every
//! request that has come due, so requests keep flowing while earlier ones are still in
//! flight: several per connection when the server is slow. Replies are read by one task
//! per connection on a single-threaded tokio runtime; the request id (native) or the
//! reply's place in order (RESP) gives the request's due time from the schedule alone,
//! so sender and readers share no state. After the last request the readers drain the
//! backlog: every request sent is answered and counted.

use super::driver::{self, BoxError, Conn, Proto, Result, RunResult, Workload, encode_request};
use super::keys::{FastRng, KEY_BYTES, KeyChooser, ValuePool, ZIPF_THETA, Zipfian, format_key};
use hdrhistogram::Histogram;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the readers wait for the backlog after the last request was due.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the sender waits for a full socket to take more bytes before checking again.
const SEND_POLL_MS: i32 = 100;

/// The fixed schedule of an open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    /// Nanoseconds between two requests (over all connections).
    interval_ns: f64,
    connections: u64,
    /// Requests in the whole run (warm-up included).
    pub total: u64,
}

impl Schedule {
    pub fn new(start: Instant, rate: f64, connections: usize, span: Duration) -> Schedule {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        assert!(connections > 0, "at least one connection");
        Schedule {
            start,
            interval_ns: 1e9 / rate,
            connections: connections as u64,
            total: (span.as_secs_f64() * rate).floor() as u64,
        }
    }

    /// When request `i` is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.interval_ns).round() as u64)
    }

    /// (connection, sequence number on it) of request `i`.
    pub fn conn_of(&self, i: u64) -> (usize, u64) {
        ((i % self.connections) as usize, i / self.connections)
    }

    /// When the `seq`-th request of connection `conn` is due.
    pub fn due_of(&self, conn: usize, seq: u64) -> Instant {
        self.due(seq * self.connections + conn as u64)
    }

    /// How many requests connection `conn` gets in the whole run.
    pub fn per_conn(&self, conn: usize) -> u64 {
        let c = conn as u64;
        if c >= self.connections {
            return 0;
        }
        self.total / self.connections + u64::from(c < self.total % self.connections)
    }

    /// How many requests are due at `now` (all of those with `due(i) <= now`).
    pub fn due_by(&self, now: Instant) -> u64 {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return 0;
        };
        let n = (elapsed.as_nanos() as f64 / self.interval_ns).floor() as u64 + 1;
        let mut n = n.min(self.total);
        // Float rounding: never count a request whose due time is still ahead.
        while n > 0 && self.due(n - 1) > now {
            n -= 1;
        }
        n
    }
}

fn elapsed_ns(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

/// Writes all of `buf` to a non-blocking socket, waiting for room when it is full.
fn write_all(s: &mut std::net::TcpStream, buf: &[u8]) -> Result<()> {
    let mut pos = 0;
    while pos < buf.len() {
        match s.write(&buf[pos..]) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => pos += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut p = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut p, 1, SEND_POLL_MS) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sleeps until `t` with 1 ns timer slack (set per thread by the sender).
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

struct Sender {
    socks: Vec<std::net::TcpStream>,
    proto: Proto,
    sched: Schedule,
    keys: KeyChooser,
    rng: FastRng,
    values: Arc<ValuePool>,
}

/// The sender thread: writes every request when it comes due. Returns how late the
/// writes were against the schedule (the client's own precision), in ns.
fn send(mut s: Sender) -> Result<Histogram<u64>> {
    // SAFETY: prctl on the calling thread only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut lag = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3)?;
    let mut bufs: Vec<Vec<u8>> = vec![Vec::with_capacity(4096); s.socks.len()];
    let mut key = [0u8; KEY_BYTES];
    let mut next = 0u64;
    while next < s.sched.total {
        let now = Instant::now();
        let upto = s.sched.due_by(now);
        if upto <= next {
            sleep_until(s.sched.due(next));
            continue;
        }
        for i in next..upto {
            let (c, seq) = s.sched.conn_of(i);
            format_key(s.keys.next(), &mut key);
            // The id is the sequence number: the reader finds the due time from it.
            encode_request(
                s.proto,
                true,
                &key,
                s.values.get(s.rng.next_u64()),
                seq as u32,
                &mut bufs[c],
            );
            lag.saturating_record(elapsed_ns(s.sched.due(i), now).max(1));
        }
        for (sock, buf) in s.socks.iter_mut().zip(bufs.iter_mut()) {
            if !buf.is_empty() {
                write_all(sock, buf)?;
                buf.clear();
            }
        }
        next = upto;
    }
    Ok(lag)
}

/// Reads every reply of connection `c` and times it from its request's due time.
async fn receive(
    mut conn: Conn,
    c: usize,
    sched: Schedule,
    measure_from: Instant,
    w: Arc<Workload>,
) -> Result<RunResult> {
    let mut st = RunResult::new(w.duration.as_secs_f64())?;
    for k in 0..sched.per_conn(c) {
        let (rid, outcome) = conn.read_reply().await?;
        let done = Instant::now();
        let seq = rid.map_or(k, u64::from);
        if seq >= sched.per_conn(c) {
            return Err(format!("reply for request id {seq}, which was never sent").into());
        }
        let due = sched.due_of(c, seq);
        let ns = (due >= measure_from).then(|| elapsed_ns(due, done));
        st.record(true, outcome, w.value_bytes, ns)?;
    }
    Ok(st)
}

fn split(conn: Conn) -> Result<(std::net::TcpStream, Conn)> {
    assert_eq!(
        conn.rpos,
        conn.rbuf.len(),
        "no reply may be pending after the handshake"
    );
    let std = conn.stream.into_std()?;
    let writer = std.try_clone()?;
    let reader = Conn {
        stream: tokio::net::TcpStream::from_std(std)?,
        proto: conn.proto,
        rbuf: conn.rbuf,
        rpos: conn.rpos,
        wbuf: Vec::new(),
        hello: conn.hello,
    };
    Ok((writer, reader))
}

/// Runs the GET workload `w` open-loop at `w.rate` requests per second.
pub fn run(
    addr: SocketAddr,
    proto: Proto,
    w: &Workload,
    values: &Arc<ValuePool>,
) -> Result<(RunResult, f64)> {
    let rate = w
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or("an open-loop run needs a positive rate")?;
    if w.get_ratio < 1.0 || w.connections == 0 {
        return Err("open-loop runs are GET-only, with at least one connection".into());
    }
    let w = Arc::new(w.clone());
    let values = Arc::clone(values);
    driver::runtime()?.block_on(async move {
        let conns = driver::connect_all(addr, proto, w.connections).await?;
        let (socks, readers): (Vec<_>, Vec<_>) = conns
            .into_iter()
            .map(split)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let sched = Schedule::new(
            Instant::now() + Duration::from_millis(10),
            rate,
            w.connections,
            w.warmup + w.duration,
        );
        let measure_from = sched.start + w.warmup;
        let zipf = (w.dist == super::keys::Dist::Zipfian).then(|| Zipfian::new(w.keys, ZIPF_THETA));
        let sender = Sender {
            socks,
            proto,
            sched,
            keys: KeyChooser::new(w.keys, w.dist, zipf.as_ref(), w.seed),
            rng: FastRng::new(w.seed ^ 0x5EED),
            values,
        };
        let sender = std::thread::Builder::new()
            .name("open-loop-sender".into())
            .spawn(move || send(sender))?;
        let tasks: Vec<_> = readers
            .into_iter()
            .enumerate()
            .map(|(c, r)| tokio::spawn(receive(r, c, sched, measure_from, Arc::clone(&w))))
            .collect();
        let deadline = sched.due(sched.total) + DRAIN_TIMEOUT;
        let mut out = RunResult::new(w.duration.as_secs_f64())?;
        for t in tasks {
            let st = tokio::time::timeout_at(deadline.into(), t)
                .await
                .map_err(|_| {
                    BoxError::from("the backlog did not drain: the server stopped answering")
                })???;
            out.merge(st)?;
        }
        let lag = sender
            .join()
            .map_err(|_| BoxError::from("the sender thread panicked"))??;
        Ok((out, lag.value_at_quantile(0.99) as f64 / 1000.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_requests_evenly_over_connections() {
        let t0 = Instant::now();
        // 1000 requests/s for 2 s over 3 connections: one every millisecond.
        let s = Schedule::new(t0, 1000.0, 3, Duration::from_secs(2));
        assert_eq!(s.total, 2000);
        assert_eq!(s.due(0), t0);
        assert_eq!(s.due(7) - s.due(6), Duration::from_millis(1));
        assert_eq!(s.conn_of(7), (1, 2));
        assert_eq!(s.due_of(1, 2), s.due(7));
        let per: Vec<u64> = (0..3).map(|c| s.per_conn(c)).collect();
        assert_eq!(per, vec![667, 667, 666]);
        assert_eq!(per.iter().sum::<u64>(), s.total);
        assert_eq!(s.per_conn(3), 0);
        // Every request of a connection is due 3 ms after the one before.
        assert_eq!(s.due_of(2, 5) - s.due_of(2, 4), Duration::from_millis(3));
    }

    #[test]
    fn due_by_counts_exactly_the_requests_whose_time_has_come() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1_000_000.0 / 3.0, 4, Duration::from_millis(10));
        assert_eq!(s.due_by(t0), 1, "request 0 is due at the start");
        for us in [1u64, 2, 3, 100, 2999, 3000, 3001, 9_999] {
            let now = t0 + Duration::from_micros(us);
            let n = s.due_by(now);
            assert!(s.due(n - 1) <= now, "{us}: request {} counted early", n - 1);
            assert!(n == s.total || s.due(n) > now, "{us}: request {n} missed");
        }
        assert_eq!(s.due_by(t0 + Duration::from_secs(5)), s.total);
        let before = t0.checked_sub(Duration::from_micros(1));
        if let Some(b) = before {
            assert_eq!(s.due_by(b), 0);
        }
    }

    /// A RESP server on loopback that answers every GET with `value` and, once, stops
    /// answering for `stall` after its 10th request.
    fn stalling_server(value: &'static [u8], stall: Duration) -> SocketAddr {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let (mut buf, mut pos, mut served) = (Vec::new(), 0, 0);
            let mut tmp = [0u8; 4096];
            loop {
                while let Ok(Some((_, n))) = super::super::resp::parse(&buf[pos..]) {
                    pos += n;
                    served += 1;
                    if served == 10 {
                        std::thread::sleep(stall);
                    }
                    let mut out = format!("${}\r\n", value.len()).into_bytes();
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
                match s.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
        });
        addr
    }

    /// A server that stalls shows the stall in the latency of every request due
    /// during it (timed from the schedule, not from the write), and every request
    /// sent is answered and counted (the backlog drains).
    #[test]
    fn a_stall_is_measured_from_the_schedule_and_the_backlog_drains() {
        let stall = Duration::from_millis(150);
        let addr = stalling_server(b"12345678", stall);
        let w = Workload {
            keys: 100,
            dist: super::super::keys::Dist::Uniform,
            get_ratio: 1.0,
            connections: 1,
            pipeline: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(500),
            rate: Some(1000.0),
            value_bytes: 8,
            seed: 1,
            shard_aware: false,
        };
        let values = Arc::new(ValuePool::new(1, 8));
        let (r, _lag) = run(addr, Proto::Resp, &w, &values).unwrap();
        assert_eq!(
            r.ops, 500,
            "every scheduled request is answered and measured"
        );
        assert_eq!((r.errors, r.misses, r.bad_values), (0, 0, 0));
        // The request due when the stall began waited for all of it.
        assert!(
            r.hist.max() >= (stall.as_nanos() as u64) * 9 / 10,
            "max {} ns",
            r.hist.max()
        );
        // Requests due during the stall all carry part of it: well over 1% of them.
        assert!(
            r.hist.value_at_quantile(0.99) >= 50_000_000,
            "p99 {} ns",
            r.hist.value_at_quantile(0.99)
        );
        // A wrong value length is counted.
        let addr = stalling_server(b"1234567", Duration::ZERO);
        let (r, _) = run(addr, Proto::Resp, &w, &values).unwrap();
        assert_eq!(r.bad_values, 500);
    }
}
