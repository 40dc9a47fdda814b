//! A core's view of the node: which shard owns a key, and the operations that span
//! shards (SCAN gathering, BATCH splitting, STATS), over a [`Transport`] to the other
//! cores. The node plugs in the glommio channel mesh (`node.rs`); the whole-node
//! simulator plugs in an in-thread transport, so the same routing code runs under both.
//! Owned by one core; never shared between threads.

use crate::error::ShardError;
use crate::exec::ShardCore;
use crate::ops::{BatchOp, BatchResult, ResponseBudget, ShardOp, ShardReply, ShardResult};
use crate::routing::PartitionMap;
use crate::stats::{ShardStatsSnapshot, node_json};
use futures_lite::future;
use nextdb_engine::fs::FileSystem;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

/// How a core reaches another core's shard.
pub trait Transport {
    /// Runs `op` on core `shard` (never the calling core) and answers with its reply.
    /// A transport that cannot deliver (the node is stopping) answers `ShuttingDown`.
    fn send(&self, shard: usize, op: ShardOp) -> impl Future<Output = ShardReply>;
}

/// One core's router: its own shard, the partition map, and a way to the others.
pub struct Router<F: FileSystem, T: Transport> {
    /// Shards of `map`, counted once (the map never changes).
    pub shards: usize,
    pub map: PartitionMap,
    pub core: Rc<ShardCore<F>>,
    transport: T,
}

impl<F: FileSystem, T: Transport> Router<F, T> {
    pub fn new(core: Rc<ShardCore<F>>, map: PartitionMap, transport: T) -> Router<F, T> {
        let shards = map.shards();
        assert!(
            core.id < shards,
            "core {} outside a map of {shards} shards",
            core.id
        );
        Router {
            shards,
            map,
            core,
            transport,
        }
    }

    /// This core's shard.
    pub fn id(&self) -> usize {
        self.core.id
    }

    /// Runs `op` on `shard`: directly when it is this core, else through the transport.
    pub async fn call(&self, shard: usize, op: ShardOp) -> ShardReply {
        if shard == self.id() {
            return self.core.clone().run(op).await;
        }
        self.core.stats.borrow_mut().cross_core_sent += 1;
        self.transport.send(shard, op).await
    }

    /// Runs a single-key operation on the core that owns its key. One that goes to
    /// another core counts as forwarded: the hop a shard-aware client avoids.
    pub async fn route(&self, op: ShardOp) -> ShardReply {
        let shard = match op.routing_key() {
            Some(k) => self.map.shard_of(k),
            None => self.id(),
        };
        if shard != self.id() {
            self.core.stats.borrow_mut().forwarded += 1;
        }
        self.call(shard, op).await
    }

    /// Up to `limit` entries of `[start, end)` in key order across every shard, and
    /// the key to resume after (None: the range is exhausted). Each shard gets an
    /// equal share of `max_bytes`, so the gathered page never holds more than it,
    /// except a page of one entry that alone exceeds its share.
    pub async fn scan(
        &self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage, ShardError> {
        let share = (max_bytes / self.shards).max(1);
        let calls = (0..self.shards)
            .map(|s| {
                let (start, end) = (start.clone(), end.clone());
                self.call(
                    s,
                    ShardOp::Scan {
                        start,
                        end,
                        limit,
                        max_bytes: share,
                    },
                )
            })
            .collect();
        let mut pages = Vec::with_capacity(self.shards);
        for r in join_all(calls).await {
            pages.push(entries_of(r?)?);
        }
        let page = merge_scan_pages(pages, limit);
        match (&page.entries[..], &page.resume) {
            // Every shard's next entry is larger than its share: send it alone.
            ([], Some(big)) => self.scan_one(big.clone()).await,
            _ => Ok(page),
        }
    }

    /// The entry at `key` alone, whatever its size: every shard's next entry was
    /// larger than its share, and `key` is the smallest of those. The page resumes
    /// after `key` even if a concurrent DELETE removed it meanwhile: resuming from
    /// whatever its owner holds next (or ending the scan when it holds nothing more)
    /// would skip the other shards' keys in between.
    async fn scan_one(&self, key: Vec<u8>) -> Result<ScanPage, ShardError> {
        let shard = self.map.shard_of(&key);
        let mut just_after = key.clone();
        just_after.push(0);
        let op = ShardOp::Scan {
            start: key.clone(),
            end: Some(just_after),
            limit: 1,
            max_bytes: usize::MAX,
        };
        let (entries, _) = entries_of(self.call(shard, op).await?)?;
        Ok(ScanPage {
            entries,
            resume: Some(key),
        })
    }

    /// A batch. Atomic batches must stay in one partition; others are split by owner,
    /// run on every owner concurrently (each part atomic on its shard) and gathered in
    /// request order. Every part's GETs charge the one `budget`.
    pub async fn batch(
        &self,
        atomic: bool,
        ops: Vec<BatchOp>,
        budget: ResponseBudget,
    ) -> Result<Vec<BatchResult>, ShardError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let total = ops.len();
        let parts = self.split_by_shard(ops);
        if atomic {
            self.check_one_partition(&parts)?;
        }
        let mut indexes = Vec::with_capacity(parts.len());
        let mut calls = Vec::with_capacity(parts.len());
        for BatchPart {
            shard,
            indexes: idx,
            ops,
        } in parts
        {
            indexes.push(idx);
            let budget = budget.clone();
            calls.push(self.call(shard, ShardOp::Batch { ops, budget }));
        }
        let replies = join_all(calls).await;
        let mut out: Vec<Option<BatchResult>> = (0..total).map(|_| None).collect();
        for (idx, r) in indexes.into_iter().zip(replies) {
            match r? {
                ShardResult::Batch(results) if results.len() == idx.len() => {
                    for (i, res) in idx.into_iter().zip(results) {
                        out[i] = Some(res);
                    }
                }
                _ => {
                    return Err(ShardError::Internal(
                        "batch answered with another result".into(),
                    ));
                }
            }
        }
        out.into_iter()
            .map(|r| r.ok_or_else(|| ShardError::Internal("batch result missing".into())))
            .collect()
    }

    /// The batch's operations grouped by owning shard, with their request positions.
    fn split_by_shard(&self, ops: Vec<BatchOp>) -> Vec<BatchPart> {
        let mut parts: Vec<BatchPart> = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let shard = self.map.shard_of(op.key());
            match parts.iter_mut().find(|p| p.shard == shard) {
                Some(p) => {
                    p.indexes.push(i);
                    p.ops.push(op);
                }
                None => parts.push(BatchPart {
                    shard,
                    indexes: vec![i],
                    ops: vec![op],
                }),
            }
        }
        parts
    }

    fn check_one_partition(&self, parts: &[BatchPart]) -> Result<(), ShardError> {
        let mut partitions: Vec<u32> = Vec::new();
        for op in parts.iter().flat_map(|p| &p.ops) {
            let id = self.map.partition_of(op.key()).id;
            if !partitions.contains(&id) {
                partitions.push(id);
            }
        }
        if partitions.len() > 1 {
            return Err(ShardError::CrossPartition(partitions.len()));
        }
        Ok(())
    }

    /// The STATS document of the whole node.
    pub async fn stats_json(&self) -> Result<String, ShardError> {
        let snaps = self.stats_snapshots().await?;
        Ok(node_json(&snaps, &self.core.sync.to_string()).to_string())
    }

    /// Every core's counters, gathered over the mesh (each core builds its own
    /// snapshot; nothing is shared), in shard order.
    pub async fn stats_snapshots(&self) -> Result<Vec<ShardStatsSnapshot>, ShardError> {
        let calls = (0..self.shards)
            .map(|s| self.call(s, ShardOp::Stats))
            .collect();
        let mut snaps: Vec<ShardStatsSnapshot> = Vec::new();
        for r in join_all(calls).await {
            match r? {
                ShardResult::Stats(s) => snaps.push(*s),
                _ => {
                    return Err(ShardError::Internal(
                        "stats answered with another result".into(),
                    ));
                }
            }
        }
        Ok(snaps)
    }
}

impl<F: FileSystem, T: Transport> Router<F, T> {
    /// Reads (`change` None) or changes a live setting on every core and answers with
    /// the node's settings afterwards (`settings::merge`). A change was checked once
    /// by the caller; each core applies it to what it owns, and the answer comes only
    /// once every core has.
    pub async fn config(
        &self,
        change: Option<crate::settings::Change>,
    ) -> Result<Vec<(String, String)>, ShardError> {
        let calls = (0..self.shards)
            .map(|s| self.call(s, ShardOp::Config(change)))
            .collect();
        let mut per_core = Vec::with_capacity(self.shards);
        for r in join_all(calls).await {
            match r? {
                ShardResult::Settings(s) => per_core.push(s),
                _ => {
                    return Err(ShardError::Internal(
                        "config answered with another result".into(),
                    ));
                }
            }
        }
        Ok(crate::settings::merge(&per_core))
    }
}

/// One page of a SCAN: entries in key order, and the key to resume after.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// None: the range is exhausted.
    pub resume: Option<Vec<u8>>,
}

/// The operations of a batch that one shard runs, and their request positions.
struct BatchPart {
    shard: usize,
    indexes: Vec<usize>,
    ops: Vec<BatchOp>,
}

type ShardPage = (Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>);

fn entries_of(r: ShardResult) -> Result<ShardPage, ShardError> {
    match r {
        ShardResult::Entries { entries, next } => Ok((entries, next)),
        _ => Err(ShardError::Internal(
            "scan answered with another result".into(),
        )),
    }
}

/// Merges the shards' pages of one SCAN. A shard that stopped early may hold keys
/// from its `next` on, so the page ends before the smallest such key (or the next
/// page would skip them), and then after `limit` entries. `resume` is the last key
/// kept when anything was cut; with nothing kept it is the cut itself (the caller
/// fetches that entry alone).
pub fn merge_scan_pages(pages: Vec<ShardPage>, limit: usize) -> ScanPage {
    let cut = pages.iter().filter_map(|(_, next)| next.clone()).min();
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = pages
        .into_iter()
        .flat_map(|(entries, _)| entries)
        .filter(|(k, _)| cut.as_ref().is_none_or(|c| k < c))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let truncated = entries.len() > limit;
    entries.truncate(limit);
    let resume = match entries.last() {
        Some((last, _)) if truncated || cut.is_some() => Some(last.clone()),
        Some(_) => None,
        None => cut,
    };
    ScanPage { entries, resume }
}

/// Polls every future until all complete; results in input order.
pub async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), b"v".to_vec())
    }

    fn page(keys: &[&str], next: Option<&str>) -> ShardPage {
        (
            keys.iter().map(|k| kv(k)).collect(),
            next.map(|n| n.as_bytes().to_vec()),
        )
    }

    #[test]
    fn merged_pages_end_before_the_first_key_a_shard_held_back() {
        let p = merge_scan_pages(
            vec![page(&["a", "d"], Some("e")), page(&["b", "f"], None)],
            10,
        );
        assert_eq!(p.entries, vec![kv("a"), kv("b"), kv("d")]);
        assert_eq!(p.resume, Some(b"d".to_vec()));

        let p = merge_scan_pages(vec![page(&["a"], None), page(&["b"], None)], 10);
        assert_eq!((p.entries.len(), p.resume), (2, None));

        let p = merge_scan_pages(vec![page(&["a", "c"], None), page(&["b"], None)], 2);
        assert_eq!(p.entries, vec![kv("a"), kv("b")]);
        assert_eq!(p.resume, Some(b"b".to_vec()));

        // Nothing fits any share: the page is empty and names the entry to send alone.
        let p = merge_scan_pages(vec![page(&[], Some("k")), page(&[], Some("j"))], 10);
        assert_eq!(p.entries, vec![]);
        assert_eq!(p.resume, Some(b"j".to_vec()));
    }
}
