//! Key → hash slot → partition → owning shard.
//!
//! Today every shard owns one partition, a contiguous slot range; the map is fixed by
//! the shard count recorded in the data directory. Splits, merges and moves change the
//! map later without changing how a key finds its slot.

use crate::config::SLOTS;

/// The hash slot of a key. The function itself is the protocol's
/// (`nextdb_proto::slot_of`): shard-aware clients hash with the same code.
#[inline]
pub fn slot_of(key: &[u8]) -> u32 {
    nextdb_proto::slot_of(key, SLOTS)
}

/// A partition: slots `[start, end)` owned by `shard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub id: u32,
    pub start: u32,
    pub end: u32,
    pub shard: usize,
}

/// The partition map of one node. Immutable; every core has its own copy.
#[derive(Debug, Clone)]
pub struct PartitionMap {
    partitions: Vec<Partition>,
    /// slot → index into `partitions` (16 K entries: one cache-friendly lookup).
    by_slot: Vec<u16>,
}

impl PartitionMap {
    /// One partition per shard, splitting the slot space evenly.
    pub fn even(shards: usize) -> PartitionMap {
        assert!(
            shards >= 1 && shards <= u16::MAX as usize,
            "shard count out of range"
        );
        let n = shards as u32;
        let partitions: Vec<Partition> = (0..n)
            .map(|i| Partition {
                id: i,
                start: i * SLOTS / n,
                end: (i + 1) * SLOTS / n,
                shard: i as usize,
            })
            .collect();
        let mut by_slot = vec![0u16; SLOTS as usize];
        for (idx, p) in partitions.iter().enumerate() {
            for s in p.start..p.end {
                by_slot[s as usize] = idx as u16;
            }
        }
        PartitionMap {
            partitions,
            by_slot,
        }
    }

    #[inline]
    pub fn partition_of(&self, key: &[u8]) -> &Partition {
        &self.partitions[self.by_slot[slot_of(key) as usize] as usize]
    }

    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.partition_of(key).shard
    }

    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// How many shards own partitions of this map.
    pub fn shards(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.shard + 1)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_one_owner_and_keys_spread() {
        for shards in [1, 2, 3, 7] {
            let m = PartitionMap::even(shards);
            let covered: u32 = m.partitions().iter().map(|p| p.end - p.start).sum();
            assert_eq!(covered, SLOTS);
            let mut counts = vec![0usize; shards];
            for i in 0..10_000u32 {
                counts[m.shard_of(format!("key:{i:012}").as_bytes())] += 1;
            }
            for c in counts {
                assert!(c > 10_000 / shards / 2, "uneven spread for {shards} shards");
            }
        }
    }
}
