//! Whole-node simulation: several shards of one node on one simulated machine
//! (`SimFs`), routed by the partition map, with their flush and compaction running,
//! many concurrent clients overwriting, deleting, incrementing and comparing-and-
//! setting a small set of keys, and the machine crashing (power loss: unsynced data
//! lost, last writes torn) or failing I/O (EIO) at seeded points. After every run the
//! history of every key must be linearizable — which also proves that no
//! acknowledged write was lost, since a final read follows every crash.
//!
//! `NEXTDB_SIM_SEEDS` sets how many seeds run (CI runs a bounded sample);
//! `NEXTDB_SIM_SEED` replays one seed.

mod common;

use common::linearizable::{Event, Op, check};
use nextdb_engine::EngineConfig;
use nextdb_engine::db::Db;
use nextdb_engine::fs::sim::{OpKind, SimFs};
use nextdb_shard::config::SyncMode;
use nextdb_shard::exec::ShardCore;
use nextdb_shard::ops::{BatchOp, BatchResult, ResponseBudget, ShardOp, ShardResult};
use nextdb_shard::routing::PartitionMap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

/// The node's admission bounds; far above what the test's clients put in flight.
fn admission() -> nextdb_shard::admission::Admission {
    nextdb_shard::admission::Admission::new(4096, std::time::Duration::from_secs(60))
}
use std::time::Duration;

const SHARDS: usize = 3;
const KEYS: u64 = 12;
const CLIENTS: usize = 8;
const OPS_PER_CLIENT: usize = 60;
const ROUNDS: usize = 3;
/// A run that takes longer than this has hung (a lost wakeup, a stuck writer).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn key(k: u64) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

/// A tiny engine so a few hundred writes rotate memtables, flush and compact. Odd
/// seeds also delay writes while L0 has two files or more (a slow disk's write
/// stalls), which opens wide windows between a write's admission and its commit.
fn tiny_config(seed: u64) -> EngineConfig {
    let slow = seed % 2 == 1;
    EngineConfig {
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: if slow { 2 } else { 6 },
        slowdown_delay_us: if slow { 300 } else { 0 },
        memtable_bytes: 4 << 10,
        block_cache_bytes: 64 << 10,
        log_segment_bytes: 64 << 10,
        log_buffer_bytes: 4 << 10,
        level1_bytes: 16 << 10,
        target_file_bytes: 8 << 10,
        ..EngineConfig::small_for_tests()
    }
}

/// The recorded history: per key, every operation with logical call/return times.
#[derive(Default)]
struct History {
    clock: Cell<u64>,
    events: RefCell<BTreeMap<Vec<u8>, Vec<Event>>>,
}

impl History {
    fn tick(&self) -> u64 {
        let t = self.clock.get() + 1;
        self.clock.set(t);
        t
    }

    fn record(&self, key: &[u8], op: Op, call: u64, ret: Option<u64>) {
        self.events
            .borrow_mut()
            .entry(key.to_vec())
            .or_default()
            .push(Event { op, call, ret });
    }
}

/// The node under test: one engine per shard, all on one simulated machine.
struct SimNode {
    seed: u64,
    fs: SimFs,
    map: PartitionMap,
    cores: Vec<Rc<ShardCore<SimFs>>>,
}

impl SimNode {
    /// Recovers every shard. A fault armed for the round may still be pending and hit
    /// recovery (an EIO): the process would die and be restarted, so the whole
    /// machine restarts (every shard's handles go stale) and recovery runs again.
    /// Any other recovery error is a bug.
    async fn open(fs: &SimFs, seed: u64) -> SimNode {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_open(fs, seed).await {
                Ok(dbs) => return Self::serve(fs, seed, dbs),
                Err(e) => last = e,
            }
            fs.restart();
        }
        panic!("seed {seed}: recovery kept failing with I/O errors: {last}")
    }

    async fn try_open(fs: &SimFs, seed: u64) -> Result<Vec<Rc<Db<SimFs>>>, String> {
        let mut dbs = Vec::new();
        for s in 0..SHARDS {
            let dir = PathBuf::from(format!("/node/shard-{s}"));
            match Db::open(fs.clone(), &dir, tiny_config(seed)).await {
                Ok(db) => dbs.push(db),
                Err(e @ nextdb_engine::Error::Io { .. }) => {
                    for db in &dbs {
                        let _ = db.close().await;
                    }
                    return Err(e.to_string());
                }
                Err(e) => panic!("seed {seed}: shard {s}: recovery failed: {e}"),
            }
        }
        Ok(dbs)
    }

    fn serve(fs: &SimFs, seed: u64, dbs: Vec<Rc<Db<SimFs>>>) -> SimNode {
        let mut cores = Vec::new();
        for (s, db) in dbs.into_iter().enumerate() {
            nextdb_engine::runtime::spawn_background(&db).expect("background");
            cores.push(Rc::new(ShardCore::new(s, db, SyncMode::Fsync, admission())));
        }
        SimNode {
            seed,
            fs: fs.clone(),
            map: PartitionMap::even(SHARDS),
            cores,
        }
    }

    fn core_for(&self, key: &[u8]) -> &ShardCore<SimFs> {
        &self.cores[self.map.shard_of(key)]
    }

    /// Power loss: the machine stops, every engine lets go, the machine restarts.
    async fn power_cycle(self) -> SimNode {
        self.fs.crash();
        for c in &self.cores {
            let _ = c.db.close().await;
        }
        let (fs, seed) = (self.fs.clone(), self.seed);
        drop(self);
        fs.restart();
        SimNode::open(&fs, seed).await
    }
}

fn int(v: &[u8]) -> i64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a value that is no integer: {v:?}"))
}

fn opt_int(v: &Option<Vec<u8>>) -> Option<i64> {
    v.as_deref().map(int)
}

/// One client operation: runs it and records it (an error leaves the outcome unknown).
async fn client_op(node: &SimNode, h: &History, rng: &mut SmallRng, unique: i64) -> bool {
    let k = key(rng.gen_range(0..KEYS));
    let core = node.core_for(&k);
    let call = h.tick();
    let choice = rng.gen_range(0..100);
    let (op, shard_op) = match choice {
        0..=34 => (
            Op::Put(unique),
            ShardOp::Put {
                key: k.clone(),
                value: unique.to_string().into_bytes(),
                ttl_ms: None,
            },
        ),
        35..=44 => (Op::Delete, ShardOp::Delete { key: k.clone() }),
        45..=69 => (Op::Get(None), ShardOp::Get { key: k.clone() }),
        70..=84 => {
            let delta = rng.gen_range(1..5);
            (
                Op::Incr { delta, result: 0 },
                ShardOp::Incr {
                    key: k.clone(),
                    delta,
                },
            )
        }
        _ => {
            let expected = if rng.gen_bool(0.3) {
                None
            } else {
                Some(rng.gen_range(0..4) as i64)
            };
            let new = if rng.gen_bool(0.2) {
                None
            } else {
                Some(unique)
            };
            (
                Op::Cas {
                    expected,
                    new,
                    swapped: false,
                    seen: None,
                },
                ShardOp::Cas {
                    key: k.clone(),
                    expected: expected.map(|v| v.to_string().into_bytes()),
                    new: new.map(|v| v.to_string().into_bytes()),
                    ttl_ms: None,
                },
            )
        }
    };
    let reply = core.execute(shard_op).await;
    let ret = h.tick();
    let observed = match (op, reply) {
        (op @ (Op::Put(_) | Op::Delete), Ok(ShardResult::Done)) => op,
        (Op::Get(_), Ok(ShardResult::Value(v))) => Op::Get(opt_int(&v)),
        (Op::Incr { delta, .. }, Ok(ShardResult::Int(result))) => Op::Incr { delta, result },
        (Op::Cas { expected, new, .. }, Ok(ShardResult::Cas { swapped, current })) => Op::Cas {
            expected,
            new,
            swapped,
            seen: opt_int(&current),
        },
        (op, Err(_)) => {
            // A failed read changed nothing; a failed write may or may not have.
            if op.writes() {
                h.record(&k, op, call, None);
            }
            return false;
        }
        (op, Ok(other)) => panic!("{op:?} answered {other:?}"),
    };
    h.record(&k, observed, call, Some(ret));
    true
}

/// An atomic multi-key batch of puts and deletes on one shard.
async fn client_batch(node: &SimNode, h: &History, rng: &mut SmallRng, unique: i64) -> bool {
    let shard = rng.gen_range(0..SHARDS);
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(key)
        .filter(|k| node.map.shard_of(k) == shard)
        .take(3)
        .collect();
    let call = h.tick();
    let mut ops = Vec::new();
    let mut model = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if rng.gen_bool(0.8) {
            let v = unique * 10 + i as i64;
            ops.push(BatchOp::Put {
                key: k.clone(),
                value: v.to_string().into_bytes(),
                ttl_ms: None,
            });
            model.push((k.clone(), Op::Put(v)));
        } else {
            ops.push(BatchOp::Delete { key: k.clone() });
            model.push((k.clone(), Op::Delete));
        }
    }
    let reply = node.cores[shard]
        .execute(ShardOp::Batch {
            ops,
            budget: ResponseBudget::new(1 << 20),
        })
        .await;
    let ret = h.tick();
    let ok = match reply {
        Ok(ShardResult::Batch(rs)) => {
            assert!(rs.iter().all(|r| matches!(r, BatchResult::Done)));
            true
        }
        Ok(other) => panic!("BATCH answered {other:?}"),
        Err(_) => false,
    };
    for (k, op) in model {
        h.record(&k, op, call, ok.then_some(ret));
    }
    ok
}

/// Concurrent clients until each finishes its operations or hits the fault.
async fn run_clients(node: &SimNode, h: &History, seed: u64, round: usize) {
    let node_ref = node;
    let clients = (0..CLIENTS).map(|c| async move {
        let mut rng = SmallRng::seed_from_u64(seed ^ ((round * CLIENTS + c) as u64) << 32);
        for i in 0..OPS_PER_CLIENT {
            let unique = ((round * CLIENTS + c) * 10_000 + i) as i64 + 1_000;
            let ok = if rng.gen_bool(0.1) {
                client_batch(node_ref, h, &mut rng, unique).await
            } else {
                client_op(node_ref, h, &mut rng, unique).await
            };
            if !ok {
                return;
            }
            if rng.gen_bool(0.3) {
                futures_lite::future::yield_now().await;
            }
        }
    });
    let all: Vec<_> = clients.map(Box::pin).collect();
    join_all(all).await;
}

async fn join_all<F: std::future::Future<Output = ()>>(mut futs: Vec<std::pin::Pin<Box<F>>>) {
    futures_lite::future::poll_fn(|cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// Reads every key once (after recovery), into the history.
async fn read_all(node: &SimNode, h: &History) {
    for k in (0..KEYS).map(key) {
        let call = h.tick();
        match node
            .core_for(&k)
            .execute(ShardOp::Get { key: k.clone() })
            .await
        {
            Ok(ShardResult::Value(v)) => {
                let ret = h.tick();
                h.record(&k, Op::Get(opt_int(&v)), call, Some(ret));
            }
            other => panic!("seed {}: read after recovery failed: {other:?}", node.seed),
        }
    }
}

/// Arms this round's fault: a power loss or an EIO after a seeded number of I/Os.
fn arm_fault(fs: &SimFs, rng: &mut SmallRng) -> String {
    let after = rng.gen_range(20..2_000);
    match rng.gen_range(0..4) {
        0 => {
            fs.fail_op(rng.gen_range(1..200), OpKind::Write);
            "EIO on a write".into()
        }
        1 => {
            fs.fail_op(rng.gen_range(1..100), OpKind::Sync);
            "EIO on a sync".into()
        }
        _ => {
            fs.crash_after_ops(after);
            format!("power loss after {after} I/Os")
        }
    }
}

async fn simulate(seed: u64) {
    let fs = SimFs::new(seed);
    fs.set_torn_write_probability(0.5);
    // Every other pair of seeds: a write-back disk that keeps any subset of unsynced
    // pages and a prefix of unsynced name changes.
    fs.set_adversarial_power_loss(seed % 4 >= 2);
    let mut rng = SmallRng::seed_from_u64(seed);
    let h = History::default();
    let mut node = SimNode::open(&fs, seed).await;
    let mut faults = Vec::new();
    for round in 0..ROUNDS {
        faults.push(arm_fault(&fs, &mut rng));
        run_clients(&node, &h, seed, round).await;
        node = node.power_cycle().await;
        read_all(&node, &h).await;
    }
    for (k, events) in h.events.borrow().iter() {
        if let Err(e) = check(events, None) {
            let mut sorted = events.clone();
            sorted.sort_by_key(|e| e.call);
            for e in &sorted {
                eprintln!("  {:>6} {:>6?} {:?}", e.call, e.ret, e.op);
            }
            panic!(
                "seed {seed}: key {:?} is not linearizable ({e}); faults: {faults:?}; \
                 replay with NEXTDB_SIM_SEED={seed}",
                String::from_utf8_lossy(k)
            );
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("NEXTDB_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n: u64 = std::env::var("NEXTDB_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    (1..=n).collect()
}

#[test]
fn node_histories_are_linearizable_under_faults() {
    nextdb_engine::fs::glommio_fs::run_local(async {
        for seed in seeds() {
            let run = simulate(seed);
            let timeout = async {
                glommio::timer::sleep(RUN_TIMEOUT).await;
                panic!("seed {seed}: the simulated node hung for {RUN_TIMEOUT:?}");
            };
            futures_lite::future::or(run, timeout).await;
        }
    })
    .expect("executor");
}
