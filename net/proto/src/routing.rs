//! Key → hash slot → owning shard, as the wire describes it. The node's partition map
//! (`nextdb_shard::routing`) and shard-aware clients both call [`slot_of`], so a
//! client that knows the map sends a key to the core the node would route it to.

use crate::error::ProtoError;
use crate::limits::MAX_SHARDS;

/// The hash slot of `key` in a space of `slots` slots: `crc32c(key) % slots`. The one
/// definition of the function; `slots` is the node's slot count (HELLO's `slots`).
#[inline]
pub fn slot_of(key: &[u8], slots: u32) -> u32 {
    assert!(slots > 0, "a slot space has at least one slot");
    crc32c::crc32c(key) % slots
}

/// Slots `[start, end)` owned by `shard` (one entry of HELLO's partition map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u32,
    pub end: u32,
    pub shard: u16,
}

/// A client's copy of a node's partition map: the owning shard of every slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    slots: u32,
    shards: u16,
    /// slot → shard.
    by_slot: Vec<u16>,
}

impl SlotMap {
    /// Builds the map from HELLO's `slots`, `shards` and partition list; refuses a
    /// list that does not cover every slot exactly once in order, or names a shard
    /// outside `0..shards`.
    pub fn new(slots: u32, shards: u16, ranges: &[SlotRange]) -> Result<SlotMap, ProtoError> {
        let bad = |value: u64| ProtoError::BadValue {
            what: "partition map",
            value,
        };
        if slots == 0 || shards == 0 || usize::from(shards) > MAX_SHARDS {
            return Err(bad(u64::from(slots)));
        }
        let mut by_slot = Vec::with_capacity(slots as usize);
        for r in ranges {
            if r.start as usize != by_slot.len() || r.end <= r.start || r.end > slots {
                return Err(bad(u64::from(r.start)));
            }
            if r.shard >= shards {
                return Err(bad(u64::from(r.shard)));
            }
            by_slot.resize(r.end as usize, r.shard);
        }
        if by_slot.len() != slots as usize {
            return Err(bad(by_slot.len() as u64));
        }
        Ok(SlotMap {
            slots,
            shards,
            by_slot,
        })
    }

    /// The shard that owns `key`.
    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> u16 {
        self.by_slot[slot_of(key, self.slots) as usize]
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keys_by_their_slot_and_refuses_bad_lists() {
        let ranges = [
            SlotRange {
                start: 0,
                end: 8,
                shard: 1,
            },
            SlotRange {
                start: 8,
                end: 16,
                shard: 0,
            },
        ];
        let m = SlotMap::new(16, 2, &ranges).unwrap();
        for i in 0..100u32 {
            let k = i.to_le_bytes();
            let want = if slot_of(&k, 16) < 8 { 1 } else { 0 };
            assert_eq!(m.shard_of(&k), want);
        }
        // A gap, an overlap, a shard out of range, an incomplete cover.
        let gap = [
            ranges[0],
            SlotRange {
                start: 9,
                ..ranges[1]
            },
        ];
        assert!(SlotMap::new(16, 2, &gap).is_err());
        let overlap = [
            ranges[0],
            SlotRange {
                start: 7,
                ..ranges[1]
            },
        ];
        assert!(SlotMap::new(16, 2, &overlap).is_err());
        assert!(SlotMap::new(16, 1, &ranges).is_err());
        assert!(SlotMap::new(16, 2, &ranges[..1]).is_err());
        assert!(SlotMap::new(0, 2, &[]).is_err());
    }

    #[test]
    fn slot_is_crc32c_modulo_the_slot_count() {
        // The published definition (docs/protocol.md): a client in another language
        // computes the same.
        assert_eq!(slot_of(b"123456789", u32::MAX), 0xE306_9283);
        assert_eq!(
            slot_of(b"key:000000000042", 16384),
            crc32c::crc32c(b"key:000000000042") % 16384
        );
    }
}
