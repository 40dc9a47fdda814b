//! Soak: a real 2-core node under a mixed load (GET, PUT, DELETE, SCAN, INCR, BATCH
//! over several connections, every answer checked against a model) with a watchdog
//! that reports any request slower than `STALL_BOUND` and any second in which nothing
//! completed, and takes the node's thread stacks (gdb) at the first stall. It hunts
//! the lost wakeup of issue 2 (every task parked, 1 ms preemption timer on: the
//! engine's `PREEMPT_TIMER_US`).
//!
//! `cargo test` runs it for `DEFAULT_SECS`; `scripts/soak MINUTES` runs it longer
//! (`NEXTDB_SOAK_SECS`). It prints a summary either way and fails on any wrong
//! answer, error, stall or silent second.

mod common;

use common::{Opts, Server};
use hdrhistogram::Histogram;
use nextdb_client::{BatchOp, BatchResult, Client, Config};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds of load when `NEXTDB_SOAK_SECS` is not set.
const DEFAULT_SECS: u64 = 60;
/// A request slower than this is a stall.
const STALL_BOUND: Duration = Duration::from_secs(2);
/// This long without a single completion (with requests in flight) is a silent period.
const SILENT_BOUND: Duration = Duration::from_secs(1);
const WATCH_TICK: Duration = Duration::from_millis(100);
/// Client-side request timeout: far beyond the node's own (10 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections (one worker thread each, each owning its keys).
const WORKERS: usize = 8;
/// Keys per worker.
const KEYS_PER_WORKER: u64 = 500;

/// Operation kinds, in the order of the summary.
const KINDS: [&str; 6] = ["get", "put", "delete", "scan", "incr", "batch"];

/// What a worker shows the watchdog: when its current request started (ns since the
/// soak's start, 0 when idle) and which kind it is.
#[derive(Default)]
struct Beacon {
    started_ns: AtomicU64,
    kind: AtomicU64,
}

struct Shared {
    t0: Instant,
    stop: AtomicBool,
    completions: AtomicU64,
    beacons: Vec<Beacon>,
    events: Mutex<Vec<String>>,
    /// Spans (ns since start) in which the watchdog itself was held up.
    pauses: Mutex<Vec<(u64, u64)>>,
    /// Requests slower than `STALL_BOUND`: (start, end) in ns since start, and what.
    slow: Mutex<Vec<(u64, u64, String)>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn event(&self, e: String) {
        println!("soak watchdog: {e}");
        self.events.lock().unwrap().push(e);
    }
}

#[derive(Default)]
struct Tally {
    ops: [u64; 6],
    errors: Vec<String>,
    wrong: Vec<String>,
    /// Latency in µs of every request.
    hist: Option<Histogram<u64>>,
}

#[test]
fn soak_mixed_load_without_stalls() {
    let secs = std::env::var("NEXTDB_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        completions: AtomicU64::new(0),
        beacons: (0..WORKERS).map(|_| Beacon::default()).collect(),
        events: Mutex::new(Vec::new()),
        pauses: Mutex::new(Vec::new()),
        slow: Mutex::new(Vec::new()),
    });
    let watchdog = {
        let (sh, pid) = (shared.clone(), s.pid());
        std::thread::spawn(move || watch(&sh, pid))
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (sh, addr) = (shared.clone(), s.addr);
            std::thread::spawn(move || work(w, &sh, addr.to_string()))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    shared.stop.store(true, Ordering::Relaxed);
    let mut total = Tally {
        hist: Some(Histogram::new(3).unwrap()),
        ..Tally::default()
    };
    for w in workers {
        let t = w.join().unwrap();
        for (a, b) in total.ops.iter_mut().zip(t.ops) {
            *a += b;
        }
        total.errors.extend(t.errors);
        total.wrong.extend(t.wrong);
        if let (Some(h), Some(th)) = (total.hist.as_mut(), t.hist.as_ref()) {
            h.add(th).unwrap();
        }
    }
    let (stalls, silent) = watchdog.join().unwrap();
    let unexplained = slow_outside_pauses(&shared);
    let stats = Client::connect(Config::new(s.addr.to_string()))
        .and_then(|c| c.stats())
        .unwrap_or_else(|e| format!("(no STATS: {e})"));
    summary(secs, &total, stalls, silent, &shared);
    println!("soak: node STATS at the end: {stats}");
    assert!(total.wrong.is_empty(), "wrong answers: {:?}", total.wrong);
    assert!(total.errors.is_empty(), "errors: {:?}", total.errors);
    assert!(
        unexplained.is_empty(),
        "requests slower than {STALL_BOUND:?} while the test itself ran on time: {unexplained:?}"
    );
    assert_eq!(
        (stalls, silent),
        (0, 0),
        "the watchdog saw stalls (see its events above)"
    );
    assert!(total.ops.iter().all(|&n| n > 0), "every kind ran");
}

/// Slow requests that no pause of the watchdog overlaps: the node's own stalls.
fn slow_outside_pauses(sh: &Shared) -> Vec<String> {
    let pauses = sh.pauses.lock().unwrap();
    let slow = sh.slow.lock().unwrap();
    for (from, to, what) in slow.iter() {
        println!(
            "soak: slow request: {what} (from {:.1} s to {:.1} s)",
            *from as f64 / 1e9,
            *to as f64 / 1e9
        );
    }
    slow.iter()
        .filter(|(from, to, _)| !pauses.iter().any(|(a, b)| a < to && from < b))
        .map(|(_, _, what)| what.clone())
        .collect()
}

fn summary(secs: u64, t: &Tally, stalls: u64, silent: u64, sh: &Shared) {
    let h = t.hist.as_ref().unwrap();
    let ops: u64 = t.ops.iter().sum();
    let kinds: Vec<String> = KINDS
        .iter()
        .zip(t.ops)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "soak summary: {secs} s, {WORKERS} connections, {ops} ops ({:.0}/s: {}), {} errors, \
         {} wrong answers, latency p50 {} µs p99 {} µs p999 {} µs max {} µs, \
         {stalls} stalls (> {:?}), {silent} silent periods (>= {:?} without a completion), \
         {} watchdog events",
        ops as f64 / secs as f64,
        kinds.join(", "),
        t.errors.len(),
        t.wrong.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        STALL_BOUND,
        SILENT_BOUND,
        sh.events.lock().unwrap().len()
    );
}

/// The watchdog: every tick, any request in flight longer than the bound is a stall
/// (reported once per request), and a span without completions a silent period. The
/// first finding takes the node's stacks. A tick that came late by more than
/// `SILENT_BOUND` is a pause of this process too (the machine was overloaded or
/// paused, not only the node): it is recorded, so that a slow request inside it is
/// not blamed on the node. Returns (stalls, silent periods).
fn watch(sh: &Shared, pid: i32) -> (u64, u64) {
    let mut reported = vec![0u64; sh.beacons.len()];
    let (mut stalls, mut silent) = (0u64, 0u64);
    let mut last_count = sh.completions.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let mut silent_reported = false;
    let mut stacks_taken = false;
    let mut last_tick = sh.now_ns();
    // The end of the last pause: requests and silences begun before it are not the node's.
    let mut pause_end = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(WATCH_TICK);
        let tick = sh.now_ns();
        let late = tick
            .saturating_sub(last_tick)
            .saturating_sub(WATCH_TICK.as_nanos() as u64);
        if late > SILENT_BOUND.as_nanos() as u64 {
            sh.pauses.lock().unwrap().push((last_tick, tick));
            pause_end = tick;
            sh.event(format!(
                "pause: the watchdog itself woke {:.1} s late (at {:.1} s): the machine held the test up too",
                late as f64 / 1e9,
                tick as f64 / 1e9
            ));
        }
        last_tick = tick;
        let mut found = false;
        for (i, b) in sh.beacons.iter().enumerate() {
            // The beacon before the clock: a request started after `now` is not stale.
            let started = b.started_ns.load(Ordering::Relaxed);
            let now = sh.now_ns();
            if started > pause_end
                && reported[i] != started
                && now.saturating_sub(started) > STALL_BOUND.as_nanos() as u64
            {
                reported[i] = started;
                stalls += 1;
                found = true;
                let kind = KINDS[b.kind.load(Ordering::Relaxed) as usize];
                sh.event(format!(
                    "stall: connection {i} {kind} in flight for {:.1} s (at {:.1} s)",
                    (now - started) as f64 / 1e9,
                    now as f64 / 1e9
                ));
            }
        }
        let now = sh.now_ns();
        let count = sh.completions.load(Ordering::Relaxed);
        if count != last_count {
            last_count = count;
            last_change = Instant::now();
            silent_reported = false;
        } else if !silent_reported
            && last_change.elapsed() >= SILENT_BOUND
            && now.saturating_sub(last_change.elapsed().as_nanos() as u64) > pause_end
        {
            silent_reported = true;
            silent += 1;
            found = true;
            sh.event(format!(
                "silent: no request completed for {:?} (at {:.1} s)",
                last_change.elapsed(),
                now as f64 / 1e9
            ));
        }
        if found && !stacks_taken {
            stacks_taken = true;
            sh.event(format!("node stacks:\n{}", stacks(pid)));
        }
    }
    (stalls, silent)
}

/// Every thread's stack of process `pid`, by gdb.
fn stacks(pid: i32) -> String {
    let out = std::process::Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .output();
    match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("(gdb failed: {e})"),
    }
}

/// One connection's loop: random operations on the worker's own keys, each answer
/// checked against the worker's model of them.
fn work(w: usize, sh: &Shared, addr: String) -> Tally {
    // Half the connections route by key, half land on one core and get forwarded.
    // No client-side timeout short enough for a pause of this process to hit: a
    // request that timed out here may still apply, and the model could not tell. A
    // stalled node still fails the test (its own TIMEOUT error, the watchdog).
    let cfg = Config::new(addr)
        .pool_size(1)
        .max_retries(0)
        .request_timeout(CLIENT_TIMEOUT)
        .shard_aware(w.is_multiple_of(2));
    let c = Client::connect(cfg).unwrap();
    let mut rng = StdRng::seed_from_u64(w as u64);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut counter = 0i64;
    let mut t = Tally {
        hist: Some(Histogram::new(3).unwrap()),
        ..Tally::default()
    };
    while !sh.stop.load(Ordering::Relaxed) {
        let kind = pick(&mut rng);
        sh.beacons[w].kind.store(kind as u64, Ordering::Relaxed);
        let started = Instant::now();
        let start_ns = sh.now_ns().max(1);
        sh.beacons[w].started_ns.store(start_ns, Ordering::Relaxed);
        let r = one_op(&c, w, kind, &mut rng, &mut model, &mut counter);
        sh.beacons[w].started_ns.store(0, Ordering::Relaxed);
        let us = started.elapsed().as_micros() as u64;
        if started.elapsed() > STALL_BOUND {
            let what = format!(
                "connection {w} {} took {:.2} s",
                KINDS[kind],
                us as f64 / 1e6
            );
            sh.slow.lock().unwrap().push((start_ns, sh.now_ns(), what));
        }
        if let Some(h) = t.hist.as_mut() {
            h.record(us.max(1)).unwrap();
        }
        sh.completions.fetch_add(1, Ordering::Relaxed);
        t.ops[kind] += 1;
        match r {
            Ok(None) => {}
            Ok(Some(wrong)) => t.wrong.push(format!("connection {w}: {wrong}")),
            Err(e) => t
                .errors
                .push(format!("connection {w} {}: {e}", KINDS[kind])),
        }
        if t.errors.len() + t.wrong.len() > 10 {
            break;
        }
    }
    t
}

fn pick(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..100) {
        0..40 => 0,
        40..65 => 1,
        65..75 => 2,
        75..80 => 3,
        80..90 => 4,
        _ => 5,
    }
}

fn key_of(w: usize, i: u64) -> Vec<u8> {
    format!("soak:{w:02}:{i:05}").into_bytes()
}

/// Runs one operation; Ok(Some(..)) describes a wrong answer.
fn one_op(
    c: &Client,
    w: usize,
    kind: usize,
    rng: &mut StdRng,
    model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    counter: &mut i64,
) -> nextdb_client::Result<Option<String>> {
    let k = key_of(w, rng.gen_range(0..KEYS_PER_WORKER));
    Ok(match kind {
        0 => {
            let got = c.get(&k)?;
            (got.as_ref() != model.get(&k)).then(|| format!("GET {k:?}: {got:?}"))
        }
        1 => {
            let v = random_value(rng);
            c.put(&k, &v)?;
            model.insert(k, v);
            None
        }
        2 => {
            c.delete(&k)?;
            model.remove(&k);
            None
        }
        3 => {
            let (lo, hi) = (key_of(w, 0), key_of(w, KEYS_PER_WORKER));
            let got = c.scan_all(&lo, Some(&hi), 100)?;
            let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            (got != want).then(|| format!("SCAN: {} entries, model {}", got.len(), want.len()))
        }
        4 => {
            let delta = rng.gen_range(-5..=5);
            *counter += delta;
            let got = c.incr(format!("soak:{w:02}:counter").as_bytes(), delta)?;
            (got != *counter).then(|| format!("INCR: {got}, model {counter}"))
        }
        _ => batch(c, w, rng, model)?,
    })
}

/// A value of 10 to 210 bytes.
fn random_value(rng: &mut StdRng) -> Vec<u8> {
    let pad = "x".repeat(rng.gen_range(0..200));
    format!("v{}-{pad}", rng.r#gen::<u32>()).into_bytes()
}

/// A non-atomic BATCH of a few GETs, PUTs and DELETEs (on one or both cores); GETs
/// read the state before the batch's writes.
fn batch(
    c: &Client,
    w: usize,
    rng: &mut StdRng,
    model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) -> nextdb_client::Result<Option<String>> {
    let mut ops = Vec::new();
    let mut keys_used = Vec::new();
    for _ in 0..rng.gen_range(1..8) {
        let k = key_of(w, rng.gen_range(0..KEYS_PER_WORKER));
        if keys_used.contains(&k) {
            continue;
        }
        keys_used.push(k.clone());
        ops.push(match rng.gen_range(0..3) {
            0 => BatchOp::Get { key: k },
            1 => BatchOp::Put {
                key: k,
                value: format!("b{}", rng.r#gen::<u32>()).into_bytes(),
                ttl_ms: None,
            },
            _ => BatchOp::Delete { key: k },
        });
    }
    let got = c.batch(false, ops.clone())?;
    for (op, r) in ops.into_iter().zip(got) {
        match (op, r) {
            (BatchOp::Get { key }, BatchResult::Value(v)) => {
                if v.as_ref() != model.get(&key) {
                    return Ok(Some(format!("BATCH GET {key:?}: {v:?}")));
                }
            }
            (BatchOp::Put { key, value, .. }, BatchResult::Done) => {
                model.insert(key, value);
            }
            (BatchOp::Delete { key }, BatchResult::Done) => {
                model.remove(&key);
            }
            (op, r) => return Ok(Some(format!("BATCH {op:?} answered {r:?}"))),
        }
    }
    Ok(None)
}
