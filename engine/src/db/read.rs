//! The read path: visible timestamps, snapshots, point reads, iterators and scans.
//!
//! Ownership: foreground tasks of the owning core. A read picks its timestamp and
//! clones what it needs (memtables, the current version) out of the `RefCell` before
//! its first `.await`.

use super::{Db, State};
use crate::Result;
use crate::config::NUM_LEVELS;
use crate::fs::FileSystem;
use crate::iter::{DbIter, LevelIter, MergingIter, ReadOptions, Source};
use crate::keys;
use crate::row_cache::RowEntry;
use crate::sst::{TableHit, TableIter, bloom};
use crate::version::SstFile;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A live value with its expiry (milliseconds since the Unix epoch), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub expires_at_ms: Option<u64>,
}

/// A consistent read point. Versions it can see are kept by compaction until it drops.
pub struct Snapshot {
    ts: u64,
    registry: Rc<RefCell<BTreeMap<u64, usize>>>,
}

impl Snapshot {
    pub fn ts(&self) -> u64 {
        self.ts
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut r = self.registry.borrow_mut();
        if let Some(n) = r.get_mut(&self.ts) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.ts);
            }
        }
    }
}

impl<F: FileSystem> Db<F> {
    /// The newest timestamp whose writes are all visible: durable, or written unsynced.
    pub(super) fn visible_ts(&self, st: &mut State<F>) -> u64 {
        let durable = self.log.durable_lsn();
        while let Some(&(ts, lsn)) = st.pending_sync.front() {
            if lsn <= durable {
                st.pending_sync.pop_front();
            } else {
                return ts - 1;
            }
        }
        st.last_ts
    }

    /// Takes a snapshot at the current visible state.
    pub fn snapshot(&self) -> Snapshot {
        let ts = {
            let mut st = self.st.borrow_mut();
            self.visible_ts(&mut st)
        };
        *self.snapshots.borrow_mut().entry(ts).or_insert(0) += 1;
        Snapshot {
            ts,
            registry: self.snapshots.clone(),
        }
    }

    /// Reads the latest visible value of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_at(key, None).await
    }

    /// The timestamp of the newest write, durable or not. A read-modify-write reads at
    /// this timestamp: its own write is logged after every write it can see, so it is
    /// acknowledged only once they are durable too (a failed fsync poisons the log).
    pub fn written_ts(&self) -> u64 {
        self.st.borrow().last_ts
    }

    /// Reads `key` as of `read_ts` (or the latest visible state) with its expiry in
    /// milliseconds since the Unix epoch, if it has one.
    pub async fn get_entry(&self, key: &[u8], read_ts: Option<u64>) -> Result<Option<Entry>> {
        self.get_mapped(key, read_ts, |raw, now| {
            keys::decode_value(raw)
                .filter(|v| !v.is_dead(now))
                .map(|v| Entry {
                    value: v.value.to_vec(),
                    expires_at_ms: v.expires_at_ms,
                })
        })
        .await
    }

    /// Reads `key` as of `read_ts` (a snapshot's timestamp), or the latest if None.
    pub async fn get_at(&self, key: &[u8], read_ts: Option<u64>) -> Result<Option<Vec<u8>>> {
        self.get_mapped(key, read_ts, live_value).await
    }

    /// Finds the newest version of `key` visible at `read_ts` and maps its stored form
    /// (kind, expiry, value) with `map` while it is borrowed from the memtable or block.
    async fn get_mapped<T>(
        &self,
        key: &[u8],
        read_ts: Option<u64>,
        map: impl Fn(&[u8], u64) -> Option<T>,
    ) -> Result<Option<T>> {
        // Reads served from memory never wait: let the scheduler run background work.
        glommio::yield_if_needed().await;
        let now = keys::now_ms();
        let (version, ts) = {
            let mut st = self.st.borrow_mut();
            let ts = match read_ts {
                Some(t) => t,
                None => self.visible_ts(&mut st),
            };
            if let Some((_, v)) = st.mem.get(key, ts) {
                return Ok(map(v, now));
            }
            for m in st.imm.iter().rev() {
                if let Some((_, v)) = m.get(key, ts) {
                    return Ok(map(v, now));
                }
            }
            (st.version.clone(), ts)
        };
        let mut seek = keys::internal_key(key, ts);
        // One filter hash for every table probed.
        let hash = bloom::key_hash(key);
        for f in &version.levels[0] {
            if !f.overlaps(Some(key), Some(key)) {
                continue;
            }
            if let Some(found) = self.get_from_table(f, key, &mut seek, hash).await? {
                return Ok(map(found.value(), now));
            }
        }
        for level in 1..NUM_LEVELS {
            if let Some(f) = version.find_in_level(level, &seek)
                && let Some(found) = self.get_from_table(f, key, &mut seek, hash).await?
            {
                return Ok(map(found.value(), now));
            }
        }
        Ok(None)
    }

    /// The version of `key` one table gives a read at `seek`'s timestamp, through the
    /// row cache. The row cache holds a table's *newest* version of a key, so on a
    /// miss the table is read for its newest version; that answers the read unless it
    /// is newer than the read's timestamp (a snapshot), which then reads the table at
    /// its own timestamp.
    async fn get_from_table(
        &self,
        f: &SstFile<F>,
        key: &[u8],
        seek: &mut [u8],
        hash: u64,
    ) -> Result<Option<Found>> {
        let Some(rc) = &self.row_cache else {
            return Ok(f.table.lookup(seek, hash).await?.map(Found::Table));
        };
        if !f.table.may_contain_hash(hash) {
            return Ok(None);
        }
        let (number, ts) = (f.meta.number, keys::timestamp(seek));
        if let Some(e) = rc.get(number, key, hash)
            && e.ts <= ts
        {
            return Ok(Some(Found::Row(e)));
        }
        // The newest version: the same key at the largest timestamp, then back.
        keys::set_timestamp(seek, keys::MAX_TS);
        let newest = f.table.lookup(seek, hash).await;
        keys::set_timestamp(seek, ts);
        match newest? {
            None => Ok(None),
            Some(hit) if hit.ts <= ts => {
                rc.offer(number, key, hash, hit.ts, hit.value());
                Ok(Some(Found::Table(hit)))
            }
            Some(_) => Ok(f.table.lookup(seek, hash).await?.map(Found::Table)),
        }
    }

    /// An iterator over live keys as of `opts.read_ts` (or the latest visible state).
    /// Creating one allocates only its list of sources: sorted levels are ranges of
    /// the version the iterator keeps, and nothing is read before the first seek.
    pub async fn iter(&self, opts: ReadOptions) -> Result<DbIter<F>> {
        let (sources, ts, version) = {
            let mut st = self.st.borrow_mut();
            let ts = match opts.read_ts {
                Some(t) => t,
                None => self.visible_ts(&mut st),
            };
            let lo = opts.lower_bound.as_deref();
            let hi = opts.upper_bound.as_deref();
            let v = st.version.clone();
            let mut sources: Vec<Source<F>> =
                Vec::with_capacity(1 + st.imm.len() + v.levels[0].len() + NUM_LEVELS - 1);
            sources.push(Source::Mem(st.mem.iter()));
            for m in st.imm.iter().rev() {
                sources.push(Source::Mem(m.iter()));
            }
            for f in &v.levels[0] {
                if f.overlaps(lo, hi) {
                    sources.push(Source::Table(TableIter::new(f.table.clone())));
                }
            }
            for level in 1..NUM_LEVELS {
                let files = &v.levels[level];
                // Sorted and disjoint: the files meeting [lo, hi] are one run.
                let start = lo.map_or(0, |lo| {
                    files.partition_point(|f| keys::user_key(&f.meta.largest) < lo)
                });
                let end = hi.map_or(files.len(), |hi| {
                    files.partition_point(|f| keys::user_key(&f.meta.smallest) <= hi)
                });
                if start < end {
                    sources.push(Source::Level(LevelIter::in_version(
                        v.clone(),
                        level,
                        start..end,
                    )));
                }
            }
            (sources, ts, v)
        };
        Ok(DbIter::new(
            MergingIter::new(sources),
            ts,
            opts,
            Some(version),
        ))
    }

    /// Collects up to `limit` live entries of `[start, end)`, in reverse if asked.
    pub async fn scan(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let opts = ReadOptions {
            read_ts: None,
            lower_bound: start.map(<[u8]>::to_vec),
            upper_bound: end.map(<[u8]>::to_vec),
        };
        let mut it = self.iter(opts).await?;
        if reverse {
            it.seek_to_last().await?;
        } else {
            it.seek_to_first().await?;
        }
        let mut out = Vec::new();
        while it.valid() && out.len() < limit {
            out.push((it.key().to_vec(), it.value().to_vec()));
            if reverse {
                it.prev().await?;
            } else {
                it.next().await?;
            }
        }
        Ok(out)
    }

    /// Prints every stored version of `key` in every source (debugging aid for tests).
    #[doc(hidden)]
    pub async fn debug_versions(&self, key: &[u8]) {
        let (mem, imm, version) = {
            let st = self.st.borrow();
            (st.mem.clone(), st.imm.clone(), st.version.clone())
        };
        let dump = |src: &str, k: &[u8], v: &[u8]| {
            if keys::user_key(k) == key {
                eprintln!("  {src}: ts {} kind {:?}", keys::timestamp(k), v.first());
            }
        };
        for (name, m) in std::iter::once(("mem".to_string(), &mem))
            .chain(imm.iter().enumerate().map(|(i, m)| (format!("imm{i}"), m)))
        {
            let mut it = m.iter();
            it.seek(&keys::internal_key(key, keys::MAX_TS));
            while it.valid() && keys::user_key(it.key()) == key {
                dump(&name, it.key(), it.value());
                it.next();
            }
        }
        for (l, files) in version.levels.iter().enumerate() {
            for f in files {
                let mut it = TableIter::new(f.table.clone());
                it.seek(&keys::internal_key(key, keys::MAX_TS)).await;
                while it.valid() && keys::user_key(it.key()) == key {
                    dump(
                        &format!("L{l} file {}", f.meta.number),
                        it.key(),
                        it.value(),
                    );
                    it.next().await;
                }
            }
        }
    }
}

/// A version a point read found in a table: from the row cache or from a block.
enum Found {
    Row(Rc<RowEntry>),
    Table(TableHit),
}

impl Found {
    fn value(&self) -> &[u8] {
        match self {
            Found::Row(e) => &e.value,
            Found::Table(h) => h.value(),
        }
    }
}

fn live_value(stored: &[u8], now_ms: u64) -> Option<Vec<u8>> {
    match keys::decode_value(stored) {
        Some(v) if !v.is_dead(now_ms) => Some(v.value.to_vec()),
        _ => None,
    }
}
