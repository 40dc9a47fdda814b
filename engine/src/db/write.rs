//! The write path: `admit` (may suspend), `commit` (synchronous), `wait_durable`.
//!
//! Ownership: foreground tasks of the core that owns the `Db`. `commit` is
//! synchronous so that nothing else on the core runs between a caller's checks (after
//! `admit`) and the timestamp it takes; `append_log` and `apply` are its two halves,
//! public so that the core's Raft glue can append, replicate, then apply.

use super::gate::{Grant, Ticket, WriteGate};
use super::{Db, LOCAL_GROUP};
use crate::batch::{self, WriteBatch};
use crate::config::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::fs::FileSystem;
use crate::keys;
use crate::log::Lsn;
use crate::memtable::MemTable;
use crate::{Error, Result};
use futures_lite::FutureExt;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Options of one write.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Wait until the write is fsynced (group commit) before returning.
    pub sync: bool,
    /// Time to live in milliseconds (puts only).
    pub ttl_ms: Option<u64>,
}

/// The ticket of one `Db::commit`: its timestamp, its log position, and whether its
/// writer asked for durability. `Db::wait_durable` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a synced commit is invisible until `wait_durable` covers it"]
pub struct Commit {
    ts: u64,
    lsn: Lsn,
    sync: bool,
}

impl Commit {
    /// The timestamp the batch was applied at (its log index in `LOCAL_GROUP`).
    pub fn ts(&self) -> u64 {
        self.ts
    }

    /// The log position of its record.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// True if the writer asked to wait for the fsync.
    pub fn sync(&self) -> bool {
        self.sync
    }
}

/// The admission of one write's bytes (`Db::admit`): they count against the core's
/// `write_in_flight_bytes` until the permit is dropped, which its writer does once
/// `wait_durable` has returned (or the write failed or was given up).
#[must_use = "dropping the permit ends the write's admission"]
pub struct WritePermit {
    gate: Rc<WriteGate>,
    bytes: usize,
    /// Admitted through the small-write lane (its own pool).
    small: bool,
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        if self.small {
            self.gate.release_small(self.bytes);
        } else {
            self.gate.release(self.bytes);
        }
    }
}

/// A place in the gate's queue; leaves it if the waiting future is dropped.
struct Queued<'a> {
    gate: &'a WriteGate,
    ticket: Ticket,
    granted: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.granted {
            self.gate.cancel(self.ticket);
        }
    }
}

impl<F: FileSystem> Db<F> {
    pub async fn put(&self, key: &[u8], value: &[u8], opts: &WriteOptions) -> Result<()> {
        let mut b = WriteBatch::new();
        let exp = opts.ttl_ms.map(|t| keys::now_ms().saturating_add(t));
        b.put_with_expiry(key, value, exp)?;
        self.write(&b, opts).await
    }

    pub async fn delete(&self, key: &[u8], opts: &WriteOptions) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key)?;
        self.write(&b, opts).await
    }

    /// Applies `batch` atomically at one new timestamp: `admit`, `commit`,
    /// `wait_durable`. An empty batch is a no-op.
    pub async fn write(&self, batch: &WriteBatch, opts: &WriteOptions) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let _admitted = self.admit(batch.byte_size()).await?;
        let c = self.commit(batch, opts)?;
        self.wait_durable(&c).await
    }

    /// The first step of a write of `bytes` (its batch's `byte_size`) and the only one
    /// that may suspend before the commit: gives the scheduler its turn, waits for the
    /// write's turn at the core's gate (in-flight bytes and, while slowed, the delayed
    /// write rate; fair across writers), then until the memtables and L0 have room.
    /// Called by foreground tasks of the owning core; the caller keeps the permit until
    /// `wait_durable` returns. After it returns, the caller may check whatever it must
    /// (a key lock) and `commit` without an `.await` in between: no other task of the
    /// core can commit in that window.
    pub async fn admit(&self, bytes: usize) -> Result<WritePermit> {
        // A write that never waits for I/O would never let the low-share compaction
        // queue run: give the scheduler its chance (a flag check unless it is time).
        glommio::yield_if_needed().await;
        let permit = self.acquire(bytes).await;
        self.make_room(bytes).await?;
        Ok(permit)
    }

    /// True while writes pay the delayed write rate: every immutable memtable slot is
    /// taken (the writes that used to stop here now slow down and fill the active
    /// memtable), or L0 is at its slowdown trigger.
    fn slowed(&self) -> bool {
        let st = self.st.borrow();
        st.imm.len() >= self.cfg.max_immutable_memtables
            || st.version.levels[0].len() >= self.cfg.l0_slowdown_trigger
    }

    /// Waits for `bytes` to pass the gate. Without waiters and under the limits (a
    /// core not under pressure) this is one check and no suspension.
    async fn acquire(&self, bytes: usize) -> WritePermit {
        // Built only once admitted: dropping it releases the bytes.
        let permit = |small| WritePermit {
            gate: self.gate.clone(),
            bytes,
            small,
        };
        let (slowed, now) = (self.slowed(), Instant::now());
        if self.gate.try_small(bytes, slowed, now) {
            return permit(true);
        }
        if self.gate.try_fast(bytes, slowed, now) {
            return permit(false);
        }
        let mut queued = Queued {
            gate: &self.gate,
            ticket: self.gate.enqueue(bytes),
            granted: false,
        };
        let t = queued.ticket;
        let started = Instant::now();
        loop {
            match self.gate.try_grant(t, self.slowed(), Instant::now()) {
                Grant::Granted => break,
                // A flush or compaction that ends the slowdown also ends the wait.
                Grant::WaitRate(d) => {
                    let changed = self.changed.wait();
                    let timer = async { glommio::timer::sleep(d).await };
                    timer.or(changed).or(self.turn(t)).await;
                }
                Grant::WaitTurn => self.turn(t).await,
            }
        }
        queued.granted = true;
        let mut c = self.counters.borrow_mut();
        c.delayed_count += 1;
        c.delayed_micros += started.elapsed().as_micros() as u64;
        permit(false)
    }

    /// Completes when the gate wakes waiter `t` (its turn may have come).
    async fn turn(&self, t: Ticket) {
        std::future::poll_fn(|cx| {
            if self.gate.poll_turn(t, cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// The second step of a write, synchronous: takes the next timestamp, appends the
    /// batch to the log as record (`LOCAL_GROUP`, ts, term 0), applies it to the
    /// memtable at that timestamp and returns the ticket for `wait_durable`. A synced
    /// commit stays invisible to readers until its record is durable, so its caller
    /// must `wait_durable` (or some later group commit must cover it). Errors: an empty
    /// batch (`InvalidArgument`), a background error or a poisoned log (`Poisoned`);
    /// nothing is committed then.
    pub fn commit(&self, batch: &WriteBatch, opts: &WriteOptions) -> Result<Commit> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument("empty write batch".into()));
        }
        self.check_bg_error()?;
        let mut payload = std::mem::take(&mut self.st.borrow_mut().payload_buf);
        payload.clear();
        batch.encode_into(&mut payload);
        let ts = self.st.borrow().last_ts + 1;
        let res = self
            .append_log(LOCAL_GROUP, ts, 0, &payload)
            .and_then(|lsn| {
                self.apply(ts, &payload).inspect_err(|e| {
                    // The log holds a record the memtable lacks: recovery would replay
                    // it, so nothing more may be acknowledged from this state.
                    self.set_error(e);
                })?;
                Ok(lsn)
            });
        self.st.borrow_mut().payload_buf = payload;
        let lsn = res?;
        if opts.sync {
            let mut st = self.st.borrow_mut();
            assert!(
                st.pending_sync
                    .back()
                    .is_none_or(|&(t, l)| t < ts && l < lsn)
            );
            st.pending_sync.push_back((ts, lsn));
        }
        Ok(Commit {
            ts,
            lsn,
            sync: opts.sync,
        })
    }

    /// Appends `payload` to the core's log as record (`group`, `index`, `term`);
    /// durable only after a group commit covers the returned LSN. Called by `commit`
    /// (group `LOCAL_GROUP`, index = timestamp) and, later, by the core's Raft glue,
    /// which appends, replicates and then `apply`s the same payload without a second
    /// log write. Synchronous: it only buffers.
    pub fn append_log(&self, group: u64, index: u64, term: u64, payload: &[u8]) -> Result<Lsn> {
        let before = self.log.last_lsn();
        let lsn = self.log.append(group, index, term, payload)?;
        assert_eq!(lsn, before + 1, "log LSNs are consecutive");
        Ok(lsn)
    }

    /// Applies an encoded batch (`payload`, as logged) to the memtable at timestamp
    /// `ts`, rotating the memtable once it is full. Called by `commit` and, later, by
    /// the core's Raft glue once an entry is committed. Assumes the record is already
    /// in the log (recovery replays it if the memtable is lost) and that `ts` is above
    /// every timestamp applied before (asserted). The whole batch is decoded and
    /// checked before anything is inserted, so a malformed payload changes nothing.
    pub fn apply(&self, ts: u64, payload: &[u8]) -> Result<()> {
        self.apply_noted(ts, payload, None)
    }

    /// Applies a committed Raft entry: `payload` (an encoded batch) at the next
    /// timestamp, noting that the active memtable holds entry `index` of log group
    /// `group`, so the flush of that memtable records `index` as the group's applied
    /// index in the manifest. Called by the core's Raft glue, in index order, for
    /// entries already in the log (no second log write) and durable; visible to
    /// readers at once. Returns the timestamp. Errors as `apply`.
    pub fn apply_entry(&self, group: u64, index: u64, payload: &[u8]) -> Result<u64> {
        assert_ne!(group, LOCAL_GROUP, "the local group is written by `commit`");
        let ts = {
            let st = self.st.borrow();
            let before = st.mem_entries.get(&group).copied();
            let flushed = st.flushed_entries.get(&group).copied().unwrap_or(0);
            assert!(
                before.is_none_or(|b| index > b) && index > flushed,
                "raft entries are applied once, in index order"
            );
            st.last_ts + 1
        };
        self.apply_noted(ts, payload, Some((group, index)))?;
        Ok(ts)
    }

    fn apply_noted(&self, ts: u64, payload: &[u8], entry: Option<(u64, u64)>) -> Result<()> {
        check_payload(payload)?;
        let mut guard = self.st.borrow_mut();
        let st = &mut *guard;
        assert!(ts > st.last_ts, "timestamps strictly increase");
        insert_batch(&st.mem, ts, payload, &mut st.ikey_buf, &mut st.value_buf)?;
        st.last_ts = ts;
        if let Some((group, index)) = entry {
            st.mem_entries.insert(group, index);
        }
        if st.mem.approximate_bytes() >= self.cfg.memtable_bytes {
            st.rotate();
            self.bg_wake.notify_all();
        }
        self.counters.borrow_mut().user_bytes += payload.len() as u64;
        Ok(())
    }

    /// The last step of a write: for a synced commit, returns once its log record is
    /// durable (one group commit covers every commit waiting at the time); for an
    /// unsynced one, writes the log buffer out (no fsync) once it is over its bound.
    pub async fn wait_durable(&self, c: &Commit) -> Result<()> {
        let r = if c.sync {
            self.log.sync(c.lsn).await
        } else if self.log.needs_flush() {
            self.log.flush().await
        } else {
            Ok(())
        };
        if self.log.wants_spare() {
            // A rotation took the spare: the background writes the next one.
            self.bg_wake.notify_all();
        }
        r
    }

    pub(super) fn check_bg_error(&self) -> Result<()> {
        match &self.st.borrow().bg_error {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    /// Waits while L0 is at the stop trigger, or every immutable memtable slot is
    /// taken and the active memtable has no room for `bytes` (with a delayed write
    /// rate; without one, as soon as the slots are taken); delays each write by
    /// `slowdown_delay_us` while L0 is above the slowdown trigger.
    pub(super) async fn make_room(&self, bytes: usize) -> Result<()> {
        let mut slowed = false;
        let mut stalled_at: Option<Instant> = None;
        loop {
            let (imm_full, l0) = {
                let st = self.st.borrow();
                if let Some(e) = &st.bg_error {
                    return Err(Error::Poisoned(e.clone()));
                }
                let active_has_room = self.cfg.delayed_write_rate_bytes_per_sec > 0
                    && st.mem.approximate_bytes() + bytes < self.cfg.memtable_bytes;
                let imm_full = st.imm.len() >= self.cfg.max_immutable_memtables;
                (imm_full && !active_has_room, st.version.levels[0].len())
            };
            if imm_full || l0 >= self.cfg.l0_stop_trigger {
                if !self.background_running.get() {
                    // Nobody else will make room: do the work inline. Boxed: a flush's
                    // or compaction's state is kilobytes, and inline it would make every
                    // write's future (boxed per request by the server) that large.
                    if !self.st.borrow().imm.is_empty() {
                        Box::pin(self.flush_one()).await?;
                    } else {
                        Box::pin(self.compact_once()).await?;
                    }
                    continue;
                }
                stalled_at.get_or_insert_with(Instant::now);
                let w = self.changed.wait();
                self.bg_wake.notify_all();
                w.await;
                continue;
            }
            if l0 >= self.cfg.l0_slowdown_trigger && !slowed && self.cfg.slowdown_delay_us > 0 {
                slowed = true;
                let t = Instant::now();
                glommio::timer::sleep(Duration::from_micros(self.cfg.slowdown_delay_us)).await;
                let mut c = self.counters.borrow_mut();
                c.stall_count += 1;
                c.stall_micros += t.elapsed().as_micros() as u64;
                continue;
            }
            break;
        }
        if let Some(t) = stalled_at {
            let mut c = self.counters.borrow_mut();
            c.stall_count += 1;
            c.stall_micros += t.elapsed().as_micros() as u64;
        }
        Ok(())
    }

    /// Makes every write so far durable (one group commit).
    pub async fn sync_log(&self) -> Result<()> {
        let lsn = self.log.last_lsn();
        self.log.sync(lsn).await
    }

    /// Returns once every log record up to `lsn` is durable (the core's group commit;
    /// the Raft glue's "persisted" signal).
    pub async fn sync_log_to(&self, lsn: Lsn) -> Result<()> {
        self.log.sync(lsn).await
    }

    /// Every log record up to this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.log.durable_lsn()
    }

    /// Writes every log record appended so far to its file, without fsync: from then
    /// on the records survive a crash of the process (`kill -9`), not a power loss.
    /// Writers that call it together share one write (the group commit, less the
    /// fsync). The node's `--sync none` writes wait for it before they are answered.
    pub async fn write_out_log(&self) -> Result<()> {
        self.log.flush().await
    }

    /// Lets the log drop records of Raft log group `group` with index <= `upto` (their
    /// segments go once every group in them is truncated). The Raft glue calls it only
    /// for entries it no longer needs after a restart, and for superseded state records.
    pub fn truncate_log_group(&self, group: u64, upto: u64) {
        assert_ne!(group, LOCAL_GROUP, "the engine truncates its own group");
        self.log.truncate_group(group, upto);
    }
}

fn malformed(e: crate::codec::DecodeError) -> Error {
    Error::InvalidArgument(format!("malformed write batch: {e}"))
}

/// Decodes every operation of an encoded batch and checks it against the memtable's
/// limits, so that inserting it afterwards cannot fail halfway.
fn check_payload(payload: &[u8]) -> Result<()> {
    for op in batch::decode(payload).map_err(malformed)? {
        let op = op.map_err(malformed)?;
        if op.key.is_empty() || op.key.len() > MAX_KEY_BYTES || op.value.len() > MAX_VALUE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "batch operation with a {}-byte key and a {}-byte value",
                op.key.len(),
                op.value.len()
            )));
        }
    }
    Ok(())
}

/// Inserts every operation of an encoded batch into `mem` at timestamp `ts` (the write
/// path's `apply` and recovery's replay share it, so both store the same bytes).
pub(super) fn insert_batch(
    mem: &MemTable,
    ts: u64,
    payload: &[u8],
    ikey: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<()> {
    for op in batch::decode(payload).map_err(malformed)? {
        let op = op.map_err(malformed)?;
        keys::encode_internal(ikey, op.key, ts);
        value.clear();
        keys::encode_value(value, op.kind, op.expires_at_ms, op.value);
        mem.insert(ikey, value)?;
    }
    Ok(())
}
