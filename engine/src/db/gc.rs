//! Which versions survive a flush or compaction (garbage collection of MVCC versions).

use crate::keys;

/// Decides which versions survive a flush or compaction. Versions newer than the GC
/// threshold stay; of the rest, only the newest per user key stays, and it goes too
/// if it is a tombstone or expired and no deeper level can hold the key.
pub(super) struct GcFilter {
    gc_ts: u64,
    now_ms: u64,
    last_uk: Vec<u8>,
    has_last: bool,
    seen_below: bool,
}

impl GcFilter {
    pub(super) fn new(gc_ts: u64, now_ms: u64) -> Self {
        GcFilter {
            gc_ts,
            now_ms,
            last_uk: Vec::new(),
            has_last: false,
            seen_below: false,
        }
    }

    pub(super) fn keep(
        &mut self,
        ikey: &[u8],
        value: &[u8],
        is_bottom: impl Fn(&[u8]) -> bool,
    ) -> bool {
        let uk = keys::user_key(ikey);
        if !self.has_last || uk != self.last_uk.as_slice() {
            self.last_uk.clear();
            self.last_uk.extend_from_slice(uk);
            self.has_last = true;
            self.seen_below = false;
        }
        if keys::timestamp(ikey) > self.gc_ts {
            return true;
        }
        if self.seen_below {
            return false;
        }
        self.seen_below = true;
        let dead = keys::decode_value(value).is_none_or(|v| v.is_dead(self.now_ms));
        !(dead && is_bottom(uk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ValueKind;

    /// One stored version: user key, timestamp, and what it holds.
    #[derive(Clone, Copy)]
    enum V {
        Put(&'static str, u64),
        Del(&'static str, u64),
        /// A put that expires at the given millisecond.
        Ttl(&'static str, u64, u64),
    }

    struct Case {
        name: &'static str,
        gc_ts: u64,
        now_ms: u64,
        /// User keys that no deeper level can hold.
        bottom: &'static [&'static str],
        /// Versions in internal-key order (user key ascending, newest first).
        input: &'static [V],
        /// Indexes of `input` that survive.
        kept: &'static [usize],
    }

    use V::{Del, Put, Ttl};

    const CASES: &[Case] = &[
        Case {
            name: "every version above the threshold stays",
            gc_ts: 5,
            now_ms: 0,
            bottom: &["a"],
            input: &[Put("a", 9), Del("a", 8), Put("a", 7)],
            kept: &[0, 1, 2],
        },
        Case {
            name: "below the threshold only the newest version stays",
            gc_ts: 10,
            now_ms: 0,
            bottom: &[],
            input: &[Put("a", 9), Put("a", 8), Put("a", 7)],
            kept: &[0],
        },
        Case {
            name: "the newest version at or below the threshold stays beside newer ones",
            gc_ts: 8,
            now_ms: 0,
            bottom: &[],
            input: &[Put("a", 9), Put("a", 8), Put("a", 7)],
            kept: &[0, 1],
        },
        Case {
            name: "a tombstone stays while a deeper level may hold the key",
            gc_ts: 10,
            now_ms: 0,
            bottom: &[],
            input: &[Del("a", 9), Put("a", 8)],
            kept: &[0],
        },
        Case {
            name: "a tombstone goes at the bottom, with everything under it",
            gc_ts: 10,
            now_ms: 0,
            bottom: &["a"],
            input: &[Del("a", 9), Put("a", 8)],
            kept: &[],
        },
        Case {
            name: "a tombstone above the threshold stays even at the bottom",
            gc_ts: 8,
            now_ms: 0,
            bottom: &["a"],
            input: &[Del("a", 9), Put("a", 8), Put("a", 7)],
            kept: &[0, 1],
        },
        Case {
            name: "an expired value goes at the bottom",
            gc_ts: 10,
            now_ms: 1000,
            bottom: &["a"],
            input: &[Ttl("a", 9, 999), Put("a", 8)],
            kept: &[],
        },
        Case {
            name: "an unexpired value stays at the bottom",
            gc_ts: 10,
            now_ms: 1000,
            bottom: &["a"],
            input: &[Ttl("a", 9, 1001), Put("a", 8)],
            kept: &[0],
        },
        Case {
            name: "an expired value stays above the bottom (it hides older ones)",
            gc_ts: 10,
            now_ms: 1000,
            bottom: &[],
            input: &[Ttl("a", 9, 5), Put("a", 8)],
            kept: &[0],
        },
        Case {
            name: "each user key is judged on its own",
            gc_ts: 10,
            now_ms: 0,
            bottom: &["b"],
            input: &[
                Put("a", 3),
                Put("a", 2),
                Del("b", 5),
                Put("b", 4),
                Put("c", 1),
            ],
            kept: &[0, 4],
        },
        Case {
            name: "a key that is a prefix of the next is still its own key",
            gc_ts: 10,
            now_ms: 0,
            bottom: &[],
            input: &[Put("a", 2), Put("ab", 3), Put("ab", 1)],
            kept: &[0, 1],
        },
    ];

    fn encode(v: V) -> (Vec<u8>, Vec<u8>) {
        let mut value = Vec::new();
        let (uk, ts) = match v {
            V::Put(k, ts) => {
                keys::encode_value(&mut value, ValueKind::Put, None, b"v");
                (k, ts)
            }
            V::Del(k, ts) => {
                keys::encode_value(&mut value, ValueKind::Delete, None, b"");
                (k, ts)
            }
            V::Ttl(k, ts, at) => {
                keys::encode_value(&mut value, ValueKind::PutTtl, Some(at), b"v");
                (k, ts)
            }
        };
        (keys::internal_key(uk.as_bytes(), ts), value)
    }

    #[test]
    fn keeps_by_table() {
        for c in CASES {
            let mut f = GcFilter::new(c.gc_ts, c.now_ms);
            let kept: Vec<usize> = c
                .input
                .iter()
                .enumerate()
                .filter(|&(_, &v)| {
                    let (ikey, value) = encode(v);
                    f.keep(&ikey, &value, |uk| {
                        c.bottom.iter().any(|b| b.as_bytes() == uk)
                    })
                })
                .map(|(i, _)| i)
                .collect();
            assert_eq!(kept, c.kept, "case: {}", c.name);
        }
    }
}
