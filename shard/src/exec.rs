//! Executes operations against the engine of the core that owns them.
//!
//! Owned by one core (`Rc<ShardCore>`). Every key the KV API stores is prefixed with
//! `KV_NAMESPACE` here, so the node's own records and (later) SQL tables can share the
//! engine without colliding.
//!
//! Every write goes through the partition's Raft group (`raft::Replica`): admission
//! (the engine's write gate), the key-lock check, the proposal (all three before the
//! first suspension after admission), then the group commit, commit, apply, reply.
//! What a read sees has applied, so it is committed and durable.

use crate::admission::Admission;
use crate::config::{KV_NAMESPACE, KV_PREFIX_BYTES, SCAN_ENTRY_OVERHEAD_BYTES, SyncMode};
use crate::error::ShardError;
use crate::live::LiveSettings;
use crate::locks::KeyLocks;
use crate::op_timing::{self, Timed};
use crate::ops::{
    BatchOp, BatchResult, ResponseBudget, ShardOp, ShardReply, ShardResult, TtlState,
};
use crate::raft::Replica;
use crate::stats::{ShardStatsSnapshot, Stats};
use futures_lite::FutureExt;
use futures_lite::future;
use nextdb_engine::batch::WriteBatch;
use nextdb_engine::db::Db;
use nextdb_engine::fs::FileSystem;
use nextdb_engine::iter::ReadOptions;
use nextdb_engine::keys::now_ms;
use std::cell::RefCell;
use std::rc::Rc;

pub struct ShardCore<F: FileSystem> {
    pub id: usize,
    pub db: Rc<Db<F>>,
    pub sync: SyncMode,
    locks: KeyLocks,
    admission: Admission,
    /// The Raft group of the partition this core owns (one per core today).
    replica: Replica<F>,
    pub stats: RefCell<Stats>,
    /// What a running node may change (`live.rs`); set through messages to this core.
    pub live: LiveSettings,
}

/// The engine key of a user key.
#[inline]
fn ekey(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + KV_PREFIX_BYTES);
    k.push(KV_NAMESPACE);
    k.extend_from_slice(key);
    k
}

fn parse_int(v: &[u8]) -> Result<i64, ShardError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(ShardError::NotAnInteger)
}

fn expiry(ttl_ms: Option<u64>) -> Option<u64> {
    ttl_ms.map(|t| now_ms().saturating_add(t))
}

impl<F: FileSystem> ShardCore<F> {
    /// The core of shard `id` over its just-opened engine: its partition's Raft group
    /// (one voter) is rebuilt from the engine's recovered log and elected; it serves
    /// once it has re-applied what it committed before (the first operation waits).
    pub fn new(
        id: usize,
        db: Rc<Db<F>>,
        sync: SyncMode,
        admission: Admission,
    ) -> Result<ShardCore<F>, ShardError> {
        let replica = Replica::open_single(db.clone(), id as u64, sync)?;
        Ok(ShardCore {
            id,
            db,
            sync,
            locks: KeyLocks::default(),
            admission,
            replica,
            stats: RefCell::new(Stats::default()),
            live: LiveSettings::default(),
        })
    }

    /// The partition's Raft group (inspection: tests, stats).
    pub fn replica(&self) -> &Replica<F> {
        &self.replica
    }

    /// Runs `op` under this core's admission control (`admission.rs`): BUSY when the
    /// core is full, TIMEOUT past the deadline. STATS and CONFIG are always admitted,
    /// so an operator can look at and tune an overloaded node.
    pub async fn run(self: Rc<Self>, op: ShardOp) -> ShardReply {
        if matches!(op, ShardOp::Stats | ShardOp::Backup(_) | ShardOp::Config(_)) {
            return self.execute(op).await;
        }
        let permit = self.admission.admit(self.id)?;
        let timeout = self.admission.timeout();
        let timed_out = || ShardError::Timeout(timeout.as_millis() as u64);
        if !op.writes() {
            let deadline = async {
                glommio::timer::sleep(timeout).await;
                Err(timed_out())
            };
            let r = self.execute(op).or(deadline).await;
            drop(permit);
            return r;
        }
        let core = self.clone();
        // Its own ledger (`op_timing`), handed to the request's once the write is done:
        // the write may finish in a task of its own.
        let mut write = Box::pin(Timed::new(async move { core.execute(op).await }));
        if let Some((r, spent)) = future::poll_once(&mut write).await {
            op_timing::charge(spent);
            return r;
        }
        // Started: it finishes in its own task, whether or not anyone still waits.
        let (tx, rx) = flume::bounded(1);
        glommio::spawn_local(async move {
            let r = write.await;
            drop(permit);
            let _ = tx.try_send(r);
        })
        .detach();
        let answer = async {
            match rx.recv_async().await {
                Ok((r, spent)) => {
                    op_timing::charge(spent);
                    r
                }
                Err(_) => Err(ShardError::ShuttingDown),
            }
        };
        let deadline = async {
            glommio::timer::sleep(timeout).await;
            Err(timed_out())
        };
        answer.or(deadline).await
    }

    /// Writes `b` for a read-modify-write that holds its key: plain writes to that key
    /// wait for the lock before they propose, so nothing lands between read and write.
    async fn write(&self, b: &WriteBatch) -> Result<(), ShardError> {
        let _admitted = self.db.admit(b.byte_size()).await?;
        self.replicate(b).await
    }

    /// Proposes `b` to the partition's group and waits until it applied. Synchronous
    /// up to the proposal, so a caller's checks just before it hold at its log index.
    async fn replicate(&self, b: &WriteBatch) -> Result<(), ShardError> {
        let mut payload = Vec::with_capacity(b.byte_size());
        b.encode_into(&mut payload);
        Ok(self.replica.replicate(payload).await?)
    }

    /// Writes `b`, a plain write to `keys`, once no read-modify-write holds any of
    /// them. The lock check and the proposal (which fixes the write's place in the
    /// log) run in one synchronous step after admission, the only suspension point
    /// before it: checking before admission would let a CAS or INCR read the old
    /// value while this write waits, then overwrite it.
    async fn write_unlocked(&self, b: &WriteBatch, keys: &[Vec<u8>]) -> Result<(), ShardError> {
        if b.is_empty() {
            return Ok(());
        }
        let _admitted = loop {
            let admitted = self.db.admit(b.byte_size()).await?;
            match keys.iter().find(|k| self.locks.is_held(k)) {
                // Give the admission back while waiting: the lock holder's own write
                // may need the in-flight bytes this one holds.
                Some(k) => {
                    drop(admitted);
                    self.locks.wait_unlocked(k).await
                }
                None => break admitted,
            }
        };
        self.replicate(b).await
    }

    /// Takes `k`'s lock for a read-modify-write, then waits until every write
    /// proposed before has applied: one proposed just before the lock was taken is
    /// in the log ahead of this one's write, so its value must be what this reads.
    async fn lock_for_update(&self, k: &[u8]) -> Result<crate::locks::KeyGuard, ShardError> {
        let g = self.locks.lock(k).await;
        self.replica.barrier().await?;
        Ok(g)
    }

    /// Runs `op`. GET, PUT and DELETE run inline; every other operation's future is
    /// boxed, because the server boxes each request's whole future and copies it in:
    /// inline, the largest arm (a BATCH, a read-modify-write) set the size of every
    /// GET's (7 KB, against about 3 KB now).
    pub async fn execute(&self, op: ShardOp) -> ShardReply {
        if !matches!(op, ShardOp::Stats | ShardOp::Config(_)) && !self.replica.serving() {
            // After a restart the group re-applies what it committed before it serves.
            Box::pin(self.replica.wait_serving()).await?;
        }
        match op {
            ShardOp::Get { key } => Ok(ShardResult::Value(self.db.get(&ekey(&key)).await?)),
            ShardOp::Put { key, value, ttl_ms } => self.put(&key, &value, ttl_ms).await,
            ShardOp::Delete { key } => self.delete(&key).await,
            op => Box::pin(self.execute_other(op)).await,
        }
    }

    async fn put(&self, key: &[u8], value: &[u8], ttl_ms: Option<u64>) -> ShardReply {
        let k = ekey(key);
        let mut b = WriteBatch::new();
        b.put_with_expiry(&k, value, expiry(ttl_ms))?;
        self.write_unlocked(&b, &[k]).await?;
        Ok(ShardResult::Done)
    }

    async fn delete(&self, key: &[u8]) -> ShardReply {
        let k = ekey(key);
        let mut b = WriteBatch::new();
        b.delete(&k)?;
        self.write_unlocked(&b, &[k]).await?;
        Ok(ShardResult::Done)
    }

    /// Every operation but the three of `execute`'s fast path (which it also runs, so
    /// no operation is left unanswered).
    async fn execute_other(&self, op: ShardOp) -> ShardReply {
        match op {
            ShardOp::Get { key } => Ok(ShardResult::Value(self.db.get(&ekey(&key)).await?)),
            ShardOp::Put { key, value, ttl_ms } => self.put(&key, &value, ttl_ms).await,
            ShardOp::Delete { key } => self.delete(&key).await,
            ShardOp::Scan {
                start,
                end,
                limit,
                max_bytes,
            } => self.scan(start, end, limit, max_bytes).await,
            ShardOp::Batch { ops, budget } => self.batch(ops, budget).await,
            ShardOp::Cas {
                key,
                expected,
                new,
                ttl_ms,
            } => {
                let k = ekey(&key);
                let _g = self.lock_for_update(&k).await?;
                let cur = self.read_latest(&k).await?;
                let current = cur.map(|e| e.value);
                if current != expected {
                    return Ok(ShardResult::Cas {
                        swapped: false,
                        current,
                    });
                }
                let mut b = WriteBatch::new();
                match &new {
                    Some(v) => b.put_with_expiry(&k, v, expiry(ttl_ms))?,
                    None => b.delete(&k)?,
                }
                self.write(&b).await?;
                Ok(ShardResult::Cas {
                    swapped: true,
                    current,
                })
            }
            ShardOp::Incr { key, delta } => {
                let k = ekey(&key);
                let _g = self.lock_for_update(&k).await?;
                let cur = self.read_latest(&k).await?;
                let (old, exp) = match &cur {
                    Some(e) => (parse_int(&e.value)?, e.expires_at_ms),
                    None => (0, None),
                };
                let new = old.checked_add(delta).ok_or(ShardError::NotAnInteger)?;
                let mut b = WriteBatch::new();
                b.put_with_expiry(&k, new.to_string().as_bytes(), exp)?;
                self.write(&b).await?;
                Ok(ShardResult::Int(new))
            }
            ShardOp::Expire { key, ttl_ms } => {
                let k = ekey(&key);
                let _g = self.lock_for_update(&k).await?;
                let Some(e) = self.read_latest(&k).await? else {
                    return Ok(ShardResult::Found(false));
                };
                let mut b = WriteBatch::new();
                b.put_with_expiry(&k, &e.value, expiry(ttl_ms))?;
                self.write(&b).await?;
                Ok(ShardResult::Found(true))
            }
            ShardOp::Ttl { key } => {
                let e = self.db.get_entry(&ekey(&key), None).await?;
                Ok(ShardResult::Ttl(match e {
                    None => TtlState::Missing,
                    Some(e) => match e.expires_at_ms {
                        None => TtlState::Persistent,
                        Some(at) => TtlState::ExpiresIn(at.saturating_sub(now_ms()).max(1)),
                    },
                }))
            }
            ShardOp::Stats => Ok(ShardResult::Stats(Box::new(self.snapshot()))),
            ShardOp::Backup(t) => Ok(ShardResult::Backup(Box::new(self.db.backup(&t).await?))),
            ShardOp::Config(change) => {
                if let Some(c) = change {
                    self.apply_setting(c)?;
                }
                Ok(ShardResult::Settings(self.settings()))
            }
        }
    }

    /// Reads at the newest applied timestamp (applied means committed and durable): the
    /// caller holds the key lock and proposes its own write after everything it read.
    /// A read-modify-write that ends without writing may answer with it at once (the
    /// direct path had to wait for a group commit here).
    async fn read_latest(&self, k: &[u8]) -> Result<Option<nextdb_engine::db::Entry>, ShardError> {
        let ts = self.db.written_ts();
        Ok(self.db.get_entry(k, Some(ts)).await?)
    }

    async fn scan(
        &self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: usize,
        max_bytes: usize,
    ) -> ShardReply {
        let lower = ekey(&start);
        let upper = match end {
            Some(e) => ekey(&e),
            None => vec![KV_NAMESPACE + 1],
        };
        let mut it = self
            .db
            .iter(ReadOptions {
                read_ts: None,
                lower_bound: Some(lower),
                upper_bound: Some(upper),
            })
            .await?;
        it.seek_to_first().await?;
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        while it.valid() {
            let key = &it.key()[KV_PREFIX_BYTES..];
            let cost = key.len() + it.value().len() + SCAN_ENTRY_OVERHEAD_BYTES;
            // Stop before the entry that would pass a limit: the caller resumes at it.
            if entries.len() >= limit || bytes + cost > max_bytes {
                return Ok(ShardResult::Entries {
                    entries,
                    next: Some(key.to_vec()),
                });
            }
            bytes += cost;
            entries.push((key.to_vec(), it.value().to_vec()));
            it.next().await?;
        }
        Ok(ShardResult::Entries {
            entries,
            next: None,
        })
    }

    async fn batch(&self, ops: Vec<BatchOp>, budget: ResponseBudget) -> ShardReply {
        let mut results = Vec::with_capacity(ops.len());
        let mut b = WriteBatch::new();
        let mut written = Vec::new();
        for op in &ops {
            match op {
                BatchOp::Get { key } => {
                    let v = self.db.get(&ekey(key)).await?;
                    budget.charge(v.as_ref().map_or(0, Vec::len))?;
                    results.push(BatchResult::Value(v));
                }
                BatchOp::Put { key, value, ttl_ms } => {
                    let k = ekey(key);
                    b.put_with_expiry(&k, value, expiry(*ttl_ms))?;
                    written.push(k);
                    results.push(BatchResult::Done);
                }
                BatchOp::Delete { key } => {
                    let k = ekey(key);
                    b.delete(&k)?;
                    written.push(k);
                    results.push(BatchResult::Done);
                }
            }
        }
        self.write_unlocked(&b, &written).await?;
        Ok(ShardResult::Batch(results))
    }

    fn snapshot(&self) -> ShardStatsSnapshot {
        let st = self.stats.borrow();
        ShardStatsSnapshot {
            shard: self.id,
            ops: st.ops.clone(),
            conns: st.conns.clone(),
            forwarded: st.forwarded,
            cross_core_sent: st.cross_core_sent,
            cross_core_received: st.cross_core_received,
            in_flight: self.admission.in_flight(),
            max_in_flight: self.admission.max(),
            raft: self.replica.stats(),
            engine: self.db.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextdb_engine::fs::glommio_fs::{DmaFs, run_local};

    /// A shard never returns more than the bytes it was given, and says where it
    /// stopped, so a SCAN's gathered page is bounded by the sum of the shares.
    #[test]
    fn a_shard_scan_stays_within_its_share() {
        let dir = tempfile::tempdir().unwrap();
        run_local(async {
            let db = Db::open(DmaFs::new(), dir.path(), Default::default())
                .await
                .unwrap();
            let admission = Admission::new(8, std::time::Duration::from_secs(10));
            let core = ShardCore::new(0, db.clone(), SyncMode::None, admission).unwrap();
            for i in 0..20u8 {
                let put = ShardOp::Put {
                    key: vec![b'k', i],
                    value: vec![i; 1000],
                    ttl_ms: None,
                };
                core.execute(put).await.unwrap();
            }
            let entry = 2 + 1000 + SCAN_ENTRY_OVERHEAD_BYTES;
            for max_bytes in [entry - 1, entry, 3 * entry + 10, 100 * entry] {
                let scan = ShardOp::Scan {
                    start: Vec::new(),
                    end: None,
                    limit: 1000,
                    max_bytes,
                };
                let Ok(ShardResult::Entries { entries, next }) = core.execute(scan).await else {
                    panic!("scan failed");
                };
                let bytes: usize = entries
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + SCAN_ENTRY_OVERHEAD_BYTES)
                    .sum();
                assert!(
                    bytes <= max_bytes,
                    "{bytes} bytes for a share of {max_bytes}"
                );
                assert_eq!(entries.len(), (max_bytes / entry).min(20));
                let expected_next = (entries.len() < 20).then(|| vec![b'k', entries.len() as u8]);
                assert_eq!(next, expected_next);
            }
            db.close().await.unwrap();
        })
        .unwrap();
    }
}
