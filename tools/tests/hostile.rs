//! Hostile clients against a real node. Each test starts a node, measures a
//! well-behaved client's p99 alone, then runs it again beside one attack and checks:
//! the node stays up and answers, its RSS stays under `RSS_BOUND_KIB`, the
//! well-behaved p99 stays within `max(3 × unloaded, unloaded + P99_FLOOR_US)`, every
//! write the well-behaved client saw acknowledged is readable at the end, and the
//! node's open descriptors return to their level before the attack.
//!
//! CI runs each attack for `DEFAULT_ATTACK_SECS` with seed `DEFAULT_SEED`;
//! `NEXTDB_HOSTILE_SECONDS` and `NEXTDB_HOSTILE_SEED` change both (docs/testing.md).

mod common;

use common::load::{Got, ProbeReport, RssWatch, Wire, code_of, fd_count, probe, rss_kib};
use common::{Opts, Server};
use nextdb_proto::frame::{HEADER_BYTES, begin_frame, end_frame};
use nextdb_proto::limits::{
    MAX_BATCH_OPS, MAX_FRAME_BYTES, MAX_KEY_BYTES, MAX_SCAN_BYTES, MAX_SCAN_LIMIT,
    MAX_STRING_BYTES, MAX_TTL_MS, MAX_VALUE_BYTES,
};
use nextdb_proto::{BatchOp, ErrorCode, Request, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest resident memory the node may reach during any attack. The node runs two
/// cores with 8 MiB memtables and a 16 MiB block cache (`common::Opts`); its idle RSS
/// is about 60 MiB. Per connection the server holds at most one frame (32 MiB) being
/// read and 64 MiB of responses, and no attack here uses more than 8 connections that
/// send large frames, so a node that honours its per-connection bounds stays well
/// under this; one that buffers without bound crosses it within seconds.
const RSS_BOUND_KIB: u64 = 1024 * 1024;
/// Absolute floor of the well-behaved client's p99 budget under attack, on top of
/// its unloaded p99 (CI has two shared cores; fsync latency alone varies by ms).
const P99_FLOOR_US: u64 = 20_000;
const DEFAULT_ATTACK_SECS: u64 = 8;
const DEFAULT_SEED: u64 = 0x5eed_0007;
/// The server closes a connection that has not authenticated within 10 s
/// (`nextdb_net::config::HANDSHAKE_TIMEOUT`); slack for a loaded machine.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(15);

/// One node at a time: the latency comparison needs the machine to itself.
static SERIAL: Mutex<()> = Mutex::new(());

fn attack_time() -> Duration {
    let secs = std::env::var("NEXTDB_HOSTILE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ATTACK_SECS);
    Duration::from_secs(secs)
}

fn seed() -> u64 {
    std::env::var("NEXTDB_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

type Spawn = fn(SocketAddr, u64, Arc<AtomicBool>) -> Vec<JoinHandle<()>>;

/// Runs `spawn`'s attackers for at least `min_attack` beside the probe and checks
/// everything the module comment promises.
fn under_attack(name: &str, spawn: Spawn, min_attack: Duration) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::raise_nofile();
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &Opts::default());
    let pid = s.pid();
    let ctx = format!("attack {name}, seed {seed}");
    // Warm up (first fsyncs, memtable arenas), then the unloaded figure.
    let _ = probe(s.addr, "warm", seed, Duration::from_secs(1));
    let alone = probe(s.addr, "alone", seed ^ 1, Duration::from_secs(3));
    let idle_fds = fd_count(pid);
    let idle_rss = rss_kib(pid);
    let watch = RssWatch::start(pid, RSS_BOUND_KIB);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = spawn(s.addr, seed, stop.clone());
    let attack = attack_time().max(min_attack);
    let loaded = probe(s.addr, "loaded", seed ^ 2, attack);
    stop.store(true, Ordering::Relaxed);
    let attacker_panics: Vec<String> = attackers
        .into_iter()
        .filter_map(|h| h.join().err())
        .map(|e| panic_text(&e))
        .collect();
    let max_rss = watch.finish();
    let summary = format!(
        "{ctx}: unloaded p99 {} µs, loaded p99 {} µs ({} requests, {} retries), \
         RSS idle {} MiB, max {} MiB",
        alone.p99_us(),
        loaded.p99_us(),
        loaded.hist.len(),
        loaded.retries,
        idle_rss / 1024,
        max_rss / 1024
    );
    eprintln!("{summary}");
    assert!(
        max_rss < RSS_BOUND_KIB,
        "{summary}: RSS passed the {} MiB bound (the watchdog killed the node)",
        RSS_BOUND_KIB / 1024
    );
    assert!(
        matches!(s.child.try_wait(), Ok(None)),
        "{summary}: the node died"
    );
    assert!(attacker_panics.is_empty(), "{summary}: {attacker_panics:?}");
    for (what, rep) in [("unloaded", &alone), ("loaded", &loaded)] {
        assert!(
            rep.failures.is_empty(),
            "{summary}: {what} probe: {:?}",
            rep.failures
        );
    }
    let budget = (3 * alone.p99_us()).max(alone.p99_us() + P99_FLOOR_US);
    assert!(
        loaded.p99_us() <= budget,
        "{summary}: p99 over its budget of {budget} µs"
    );
    check_after(&s, &[&alone, &loaded], idle_fds, &summary);
}

/// The node answers a new client, reads back every acknowledged write, and releases
/// the attackers' descriptors.
fn check_after(s: &Server, reports: &[&ProbeReport], idle_fds: usize, summary: &str) {
    let mut w = Wire::connect(s.addr).expect("connect after the attack");
    assert!(
        w.login_insecure(),
        "{summary}: HELLO refused after the attack"
    );
    let mut n = 0;
    for rep in reports {
        for (k, v) in &rep.acked {
            let got = w.call(&Request::Get { key: k.clone() }, 1);
            assert_eq!(
                got,
                Some(Response::Value(Some(v.clone()))),
                "{summary}: acknowledged write {} not readable",
                String::from_utf8_lossy(k)
            );
            n += 1;
        }
    }
    assert!(n > 0, "{summary}: the probe had no write acknowledged");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fds = fd_count(s.pid());
    while fds > idle_fds + 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fds = fd_count(s.pid());
    }
    assert!(
        fds <= idle_fds + 8,
        "{summary}: {fds} descriptors open 15 s after the attack, {idle_fds} before"
    );
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "attacker panicked".into())
}

fn threads(
    n: u64,
    seed: u64,
    stop: &Arc<AtomicBool>,
    f: fn(u64, SmallRng, &AtomicBool),
) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|t| {
            let stop = stop.clone();
            let rng = SmallRng::seed_from_u64(seed.wrapping_add(t * 0x9e37_79b9));
            std::thread::spawn(move || {
                common::load::attacker_priority();
                f(t, rng, &stop)
            })
        })
        .collect()
}

/// What an extreme request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Ok,
    /// Refused: INVALID_ARGUMENT (connection stays) or MALFORMED (closes).
    Refused,
    /// Exactly this error code.
    Code(ErrorCode),
}

/// Codes after which the server closes the connection.
fn closes(code: u16) -> bool {
    [1, 2, 4, 5, 6, 11, 14, 16].contains(&code)
}

fn key(t: u64, name: &str, len: usize) -> Vec<u8> {
    let mut k = format!("evil/{t}/{name}/").into_bytes();
    k.resize(len.max(k.len()), b'k');
    k
}

/// Every request type at and just past its limits, in one connection's order.
fn extreme_cases(t: u64, rng: &mut SmallRng) -> Vec<(Request, Expect)> {
    let big = |n: usize, rng: &mut SmallRng| -> Vec<u8> { (0..n).map(|_| rng.r#gen()).collect() };
    let long_key = key(t, "long", MAX_KEY_BYTES - 1);
    let counter = key(t, "n", 0);
    let puts: Vec<BatchOp> = (0..MAX_BATCH_OPS)
        .map(|i| BatchOp::Put {
            key: key(t, &format!("b{i}"), 0),
            value: vec![b'v'; 100],
            ttl_ms: None,
        })
        .collect();
    let gets: Vec<BatchOp> = (0..MAX_BATCH_OPS)
        .map(|i| BatchOp::Get {
            key: key(t, &format!("b{i}"), 0),
        })
        .collect();
    let mut too_many = gets.clone();
    too_many.push(BatchOp::Delete {
        key: counter.clone(),
    });
    let scan = |limit, token: Vec<u8>| Request::Scan {
        start: b"evil/".to_vec(),
        end: Some(b"evil0".to_vec()),
        limit,
        token,
    };
    use Expect::*;
    vec![
        (
            Request::Ping {
                payload: big(MAX_STRING_BYTES, rng),
            },
            Ok,
        ),
        (Request::Stats, Ok),
        (
            Request::Put {
                key: long_key.clone(),
                value: big(MAX_VALUE_BYTES, rng),
                ttl_ms: None,
            },
            Ok,
        ),
        (
            Request::Get {
                key: long_key.clone(),
            },
            Ok,
        ),
        (
            Request::Put {
                key: key(t, "v", 0),
                value: vec![0; MAX_VALUE_BYTES + 1],
                ttl_ms: None,
            },
            Refused,
        ),
        (
            Request::Get {
                key: key(t, "k", MAX_KEY_BYTES + 1),
            },
            Refused,
        ),
        (
            Request::Batch {
                atomic: false,
                ops: puts,
            },
            Ok,
        ),
        (
            Request::Batch {
                atomic: false,
                ops: gets.clone(),
            },
            Ok,
        ),
        (
            Request::Batch {
                atomic: true,
                ops: gets[..100].to_vec(),
            },
            Code(ErrorCode::CrossPartition),
        ),
        (
            Request::Batch {
                atomic: false,
                ops: too_many,
            },
            Refused,
        ),
        (scan(MAX_SCAN_LIMIT, Vec::new()), Ok),
        (scan(0, Vec::new()), Refused),
        (scan(MAX_SCAN_LIMIT + 1, Vec::new()), Refused),
        (scan(10, big(64, rng)), Refused),
        (
            Request::Cas {
                key: long_key.clone(),
                expected: Some(big(8 << 20, rng)),
                new: Some(big(8 << 20, rng)),
                ttl_ms: None,
            },
            Ok,
        ),
        (
            Request::Put {
                key: counter.clone(),
                value: b"0".to_vec(),
                ttl_ms: None,
            },
            Ok,
        ),
        (
            Request::Incr {
                key: counter.clone(),
                delta: i64::MAX,
            },
            Ok,
        ),
        (
            Request::Incr {
                key: counter.clone(),
                delta: 1,
            },
            Code(ErrorCode::NotAnInteger),
        ),
        (
            Request::Incr {
                key: long_key.clone(),
                delta: -1,
            },
            Code(ErrorCode::NotAnInteger),
        ),
        (
            Request::Expire {
                key: long_key.clone(),
                ttl_ms: Some(MAX_TTL_MS),
            },
            Ok,
        ),
        (
            Request::Expire {
                key: long_key.clone(),
                ttl_ms: Some(MAX_TTL_MS + 1),
            },
            Refused,
        ),
        (
            Request::Ttl {
                key: long_key.clone(),
            },
            Ok,
        ),
        (Request::Delete { key: long_key }, Ok),
    ]
}

/// Checks one answer against its expectation; returns true if the server closed.
fn check_answer(req: &Request, exp: Expect, got: Option<Response>) -> bool {
    let what = format!("{exp:?} for {}", describe(req));
    let Some(r) = got else {
        panic!("no answer ({what}): the node closed or went silent for 10 s");
    };
    let code = code_of(&r);
    if code.is_some_and(common::load::is_retryable) {
        return false;
    }
    match (exp, code) {
        (Expect::Ok, None) => false,
        (Expect::Refused, Some(c)) if c == ErrorCode::InvalidArgument as u16 => false,
        (Expect::Refused, Some(c)) if c == ErrorCode::Malformed as u16 => true,
        (Expect::Code(want), Some(c)) if c == want as u16 => closes(c),
        _ => panic!("{what}: got {r:?}"),
    }
}

fn describe_response(r: &Response) -> String {
    let mut s = format!("{r:?}");
    s.truncate(120);
    s
}

fn describe(req: &Request) -> String {
    let mut s = format!("{req:?}");
    s.truncate(120);
    s
}

fn extreme_attacker(t: u64, mut rng: SmallRng, stop: &AtomicBool) {
    let addr = ADDR.lock().unwrap().expect("address set");
    let cases = extreme_cases(t, &mut rng);
    'conn: while !stop.load(Ordering::Relaxed) {
        let mut w = Wire::connect(addr).expect("attacker connect");
        assert!(w.login_insecure(), "attacker HELLO refused");
        for (i, (req, exp)) in cases.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break 'conn;
            }
            let got = w.call(req, i as u32 + 1);
            if check_answer(req, *exp, got) {
                continue 'conn;
            }
        }
        // Unknown opcode: UNKNOWN_OP, and the connection stays usable.
        let mut f = Vec::new();
        let start = begin_frame(&mut f, 0x7f, 0, 99);
        end_frame(&mut f, start);
        w.send_raw(&f).expect("send unknown opcode");
        match w.recv() {
            Got::Frame(99, r) => assert_eq!(code_of(&r), Some(ErrorCode::UnknownOp as u16)),
            other => panic!("unknown opcode: {other:?}"),
        }
        let ping = Request::Ping {
            payload: b"still".to_vec(),
        };
        assert_eq!(
            w.call(&ping, 5),
            Some(Response::Pong {
                payload: b"still".to_vec()
            })
        );
    }
}

/// The attackers' fn-pointer signature has no room for the address; one test runs
/// at a time (`SERIAL`), so one slot serves.
static ADDR: Mutex<Option<SocketAddr>> = Mutex::new(None);

fn set_addr(addr: SocketAddr) {
    *ADDR.lock().unwrap() = Some(addr);
}

fn addr() -> SocketAddr {
    ADDR.lock().unwrap().expect("address set")
}

#[test]
fn every_request_type_at_its_limits() {
    under_attack(
        "extreme requests",
        |a, seed, stop| {
            set_addr(a);
            threads(2, seed, &stop, extreme_attacker)
        },
        Duration::ZERO,
    );
}

/// Frames that are garbage, of impossible length, truncated, or whose inner lengths
/// disagree with the frame: each gets an error and a close, or just a close; the
/// node never answers with a malformed frame and never stops serving.
fn garbage_attacker(_t: u64, mut rng: SmallRng, stop: &AtomicBool) {
    let addr = addr();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut w) = Wire::connect(addr) else {
            continue;
        };
        let variant = rng.gen_range(0..7);
        let login_first = variant >= 3;
        if login_first && !w.login_insecure() {
            panic!("garbage attacker: HELLO refused");
        }
        let frame = garbage_frame(variant, &mut rng);
        if w.send_raw(&frame).is_err() {
            continue;
        }
        match variant {
            // Truncated, then the client goes away: nothing to answer.
            5 => {}
            // Random bytes after login may form a frame that is still incomplete;
            // the node may wait for the rest. It must not answer garbage with garbage.
            6 => {
                let _ = w.s.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = w.recv();
            }
            _ => match w.recv() {
                Got::Frame(_, r) => {
                    let code = code_of(&r).unwrap_or_else(|| panic!("variant {variant}: {r:?}"));
                    assert!(closes(code), "variant {variant}: code {code} must close");
                    assert!(
                        matches!(w.recv(), Got::Closed),
                        "variant {variant}: not closed"
                    );
                }
                Got::Closed => {}
                Got::Silent => panic!("variant {variant}: no answer within 10 s"),
            },
        }
    }
}

fn garbage_frame(variant: u32, rng: &mut SmallRng) -> Vec<u8> {
    let mut f = Vec::new();
    match variant {
        // Length below the header, before HELLO and after.
        0 | 3 => {
            f.extend_from_slice(&rng.gen_range(0u32..6).to_le_bytes());
            f.extend((0..6).map(|_| rng.r#gen::<u8>()));
        }
        // Length above the maximum frame.
        1 | 4 => {
            let len = rng.gen_range(MAX_FRAME_BYTES as u32 + 1..=u32::MAX);
            f.extend_from_slice(&len.to_le_bytes());
            f.extend((0..6).map(|_| rng.r#gen::<u8>()));
        }
        // HELLO with a random body.
        2 => {
            let start = begin_frame(&mut f, 0x01, 0, 0);
            f.extend((0..rng.gen_range(0..64)).map(|_| rng.r#gen::<u8>()));
            end_frame(&mut f, start);
        }
        // A PUT cut short (the client then leaves).
        5 => {
            Request::Put {
                key: b"evil/cut".to_vec(),
                value: vec![1; 5000],
                ttl_ms: None,
            }
            .encode(9, &mut f);
            f.truncate(rng.gen_range(1..f.len()));
        }
        _ => f.extend((0..rng.gen_range(1..4096)).map(|_| rng.r#gen::<u8>())),
    }
    f
}

/// A PUT whose key length field points past the end of the frame.
fn lying_put() -> Vec<u8> {
    let mut f = Vec::new();
    Request::Put {
        key: b"evil/lie".to_vec(),
        value: b"v".to_vec(),
        ttl_ms: None,
    }
    .encode(3, &mut f);
    let body = HEADER_BYTES;
    // The key is the body's first field: a u32 length, then the bytes (docs/protocol.md).
    f[body..body + 4].copy_from_slice(&(u32::MAX / 2).to_le_bytes());
    f
}

#[test]
fn garbage_truncated_and_lying_frames() {
    // The lying PUT alone first: MALFORMED and a close, or INVALID_ARGUMENT (the frame
    // length still delimits it) and a connection that keeps working.
    {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let s = Server::start(dir.path(), &Opts::default());
        let mut w = Wire::connect(s.addr).unwrap();
        assert!(w.login_insecure());
        w.send_raw(&lying_put()).unwrap();
        match w.recv() {
            Got::Frame(_, r) if code_of(&r) == Some(ErrorCode::Malformed as u16) => {
                assert!(matches!(w.recv(), Got::Closed), "MALFORMED must close");
            }
            Got::Frame(_, r) if code_of(&r) == Some(ErrorCode::InvalidArgument as u16) => {
                let ping = Request::Ping {
                    payload: b"after".to_vec(),
                };
                assert_eq!(
                    w.call(&ping, 4),
                    Some(Response::Pong {
                        payload: b"after".to_vec()
                    })
                );
            }
            Got::Closed => {}
            other => panic!("lying PUT: {other:?}"),
        }
    }
    under_attack(
        "garbage frames",
        |a, seed, stop| {
            set_addr(a);
            threads(2, seed, &stop, garbage_attacker)
        },
        Duration::ZERO,
    );
}

/// Slowloris: connections that dribble a HELLO one byte every 500 ms (slower than
/// the handshake deadline allows) or never send anything must be closed by the node
/// within `HANDSHAKE_DEADLINE`; authenticated ones that dribble a PUT may stay, but
/// must not slow anyone else down.
fn slowloris_attacker(t: u64, _rng: SmallRng, stop: &AtomicBool) {
    let addr = addr();
    let opened = Instant::now();
    let mut hello = Vec::new();
    common::load::hello_none_request().encode(0, &mut hello);
    let mut put = Vec::new();
    Request::Put {
        key: format!("evil/slow/{t}").into_bytes(),
        value: vec![7; 64],
        ttl_ms: None,
    }
    .encode(1, &mut put);
    let mut pre_auth: Vec<Wire> = (0..96).filter_map(|_| Wire::connect(addr).ok()).collect();
    let mut authed: Vec<Wire> = (0..16)
        .filter_map(|_| Wire::connect(addr).ok())
        .filter_map(|mut w| w.login_insecure().then_some(w))
        .collect();
    assert_eq!(authed.len(), 16, "slow authenticated connections refused");
    let mut step = 0;
    while !stop.load(Ordering::Relaxed) || opened.elapsed() < HANDSHAKE_DEADLINE {
        // Half the pre-auth connections dribble; the other half stay silent.
        for w in pre_auth.iter_mut().step_by(2) {
            if let Some(b) = hello.get(step) {
                let _ = w.send_raw(&[*b]);
            }
        }
        for w in authed.iter_mut() {
            if let Some(b) = put.get(step) {
                let _ = w.send_raw(&[*b]);
            }
        }
        step += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let open = pre_auth
        .iter_mut()
        .map(|w| w.closed_by_server())
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open,
        0,
        "{open} unauthenticated connections still open {:?} after connecting",
        opened.elapsed()
    );
}

#[test]
fn slowloris_connections() {
    under_attack(
        "slowloris",
        |a, seed, stop| {
            set_addr(a);
            threads(1, seed, &stop, slowloris_attacker)
        },
        HANDSHAKE_DEADLINE,
    );
}

/// Connections opened and dropped as fast as possible: closed at once, after
/// HELLO, after pipelining requests without reading, or reset (SO_LINGER 0).
fn storm_attacker(t: u64, mut rng: SmallRng, stop: &AtomicBool) {
    let addr = addr();
    // Reads, so that the storm is connection churn, not write load.
    let mut put = Vec::new();
    for i in 0..50u32 {
        Request::Get {
            key: format!("evil/storm/{t}/{i}").into_bytes(),
        }
        .encode(i, &mut put);
    }
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut w) = Wire::connect(addr) else {
            continue;
        };
        STORM_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        match rng.gen_range(0..4) {
            0 => {}
            1 => {
                let _ = w.hello_none();
            }
            2 => {
                if w.login_insecure() {
                    let _ = w.send_raw(&put);
                }
            }
            _ => {
                let _ = w.hello_none();
                let _ = w.send_raw(&put);
                let _ = socket_reset(&w.s);
            }
        }
    }
}

static STORM_CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn socket_reset(s: &std::net::TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket we own, with a correctly sized value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn reconnect_storm() {
    under_attack(
        "reconnect storm",
        |a, seed, stop| {
            set_addr(a);
            threads(2, seed, &stop, storm_attacker)
        },
        Duration::ZERO,
    );
    eprintln!(
        "reconnect storm: {} connections",
        STORM_CONNECTIONS.load(Ordering::Relaxed)
    );
}

/// Pipelines that never read, as fast as the node takes them: GETs of a 1 MiB value
/// (large responses) or PUTs of 1 MiB values (large requests). The node must stop
/// reading (back-pressure) or close the connection, not buffer without bound.
fn pipeline_attacker(t: u64, rng: SmallRng, stop: &AtomicBool, puts: bool) {
    let addr = addr();
    let key = format!("evil/big/{t}").into_bytes();
    let mut rng = rng;
    let value: Vec<u8> = (0..1 << 20).map(|_| rng.r#gen()).collect();
    let mut setup = Wire::connect(addr).expect("connect");
    assert!(setup.login_insecure());
    let put = Request::Put {
        key: key.clone(),
        value,
        ttl_ms: None,
    };
    assert_eq!(setup.call(&put, 1), Some(Response::Done));
    let mut pipeline = Vec::new();
    for i in 0..16u32 {
        if puts {
            put.encode(i, &mut pipeline);
        } else {
            Request::Get { key: key.clone() }.encode(i, &mut pipeline);
        }
    }
    let mut conns: Vec<Wire> = (0..4)
        .filter_map(|_| Wire::connect(addr).ok())
        .filter_map(|mut w| w.login_insecure().then_some(w))
        .collect();
    for w in &conns {
        let _ = w.s.set_write_timeout(Some(Duration::from_millis(200)));
    }
    while !stop.load(Ordering::Relaxed) {
        for w in conns.iter_mut() {
            // Blocked writes (the node stopped reading) time out; keep pushing.
            let _ = w.send_raw(&pipeline);
        }
    }
}

/// One attacker (four connections): eight reached 770 MiB in one run (see
/// docs/testing.md, findings), too near the bound for a stable CI check.
#[test]
fn unread_pipelines_of_large_responses() {
    under_attack(
        "unread GET pipelines",
        |a, seed, stop| {
            set_addr(a);
            threads(1, seed, &stop, |t, rng, stop| {
                pipeline_attacker(t, rng, stop, false)
            })
        },
        Duration::ZERO,
    );
}

/// Two attackers (eight connections) flood synced 1 MiB PUTs. Memory is bounded per
/// connection (requests in flight, in bytes); the well-behaved client's latency by the
/// engine's write gate: a bound on each core's bytes not yet durable, a reserve above
/// it for small writes, fair order among waiters and a byte-proportional delay while
/// flushes fall behind (docs/ARCHITECTURE.md, write admission).
#[test]
fn unread_pipelines_of_large_requests() {
    under_attack(
        "unread PUT pipelines",
        |a, seed, stop| {
            set_addr(a);
            threads(2, seed, &stop, |t, rng, stop| {
                pipeline_attacker(t, rng, stop, true)
            })
        },
        Duration::ZERO,
    );
}

/// A BATCH of 10,000 GETs of a 1 MiB value asks for a 10 GiB response; SCAN pages
/// must stay near `MAX_SCAN_BYTES` whatever the number of cores. Either is answered
/// within its bound or refused with a clear error, and RSS stays bounded.
#[test]
fn responses_are_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &Opts::default());
    let watch = RssWatch::start(s.pid(), RSS_BOUND_KIB);
    let mut w = Wire::connect(s.addr).unwrap();
    assert!(w.login_insecure());
    let value = vec![0xabu8; 1 << 20];
    for i in 0..24 {
        let put = Request::Put {
            key: format!("big/{i:02}").into_bytes(),
            value: value.clone(),
            ttl_ms: None,
        };
        assert_eq!(w.call(&put, 1), Some(Response::Done));
    }
    let scan = Request::Scan {
        start: b"big/".to_vec(),
        end: None,
        limit: MAX_SCAN_LIMIT,
        token: Vec::new(),
    };
    match w.call(&scan, 2) {
        Some(Response::Scan { entries, .. }) => {
            let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
            assert!(
                bytes <= MAX_SCAN_BYTES + MAX_KEY_BYTES + MAX_VALUE_BYTES.min(1 << 20),
                "SCAN page of {bytes} bytes exceeds the {MAX_SCAN_BYTES}-byte budget"
            );
        }
        other => panic!("SCAN: {other:?}"),
    }
    let ops = (0..MAX_BATCH_OPS)
        .map(|_| BatchOp::Get {
            key: b"big/00".to_vec(),
        })
        .collect();
    let _ = w.s.set_read_timeout(Some(Duration::from_secs(60)));
    let got = w.call(&Request::Batch { atomic: false, ops }, 3);
    let max_rss = watch.finish();
    assert!(
        max_rss < RSS_BOUND_KIB,
        "RSS reached {} MiB (the watchdog killed the node)",
        max_rss / 1024
    );
    assert!(matches!(s.child.try_wait(), Ok(None)), "the node died");
    let code = got.as_ref().and_then(code_of);
    assert!(
        code.is_some_and(|c| c == ErrorCode::ResponseTooLarge as u16),
        "a 10 GiB BATCH answer must be refused with RESPONSE_TOO_LARGE, got {}",
        got.map(|r| describe_response(&r))
            .unwrap_or_else(|| "no answer".into())
    );
}
