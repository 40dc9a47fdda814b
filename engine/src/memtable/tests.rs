use super::*;
use crate::config::MEMTABLE_ARENA_MAX_CHUNK_BYTES;
use crate::keys::{encode_value, internal_key};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Compile-time proof that a type is neither `Send` nor `Sync`: if it were, the
/// `_` below would be ambiguous between two impls and the crate would not compile.
macro_rules! assert_not_impl {
    ($t:ty, $tr:path) => {
        const _: fn() = || {
            trait AmbiguousIfImpl<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
            #[allow(dead_code)]
            struct Invalid;
            impl<T: ?Sized + $tr> AmbiguousIfImpl<Invalid> for T {}
            let _ = <$t as AmbiguousIfImpl<_>>::some_item;
        };
    };
}
assert_not_impl!(MemTable, Send);
assert_not_impl!(MemTable, Sync);
assert_not_impl!(MemIter, Send);
assert_not_impl!(MemIter, Sync);

fn put(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(&mut out, ValueKind::Put, None, v);
    out
}

fn del() -> Vec<u8> {
    vec![ValueKind::Delete as u8]
}

fn collect_forward(t: &Rc<MemTable>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut it = t.iter();
    it.seek_to_first();
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next();
    }
    out
}

fn collect_backward(t: &Rc<MemTable>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut it = t.iter();
    it.seek_to_last();
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.prev();
    }
    out.reverse();
    out
}

#[test]
fn empty_table() {
    let t = Rc::new(MemTable::new());
    assert!(t.is_empty());
    assert_eq!(t.get(b"a", u64::MAX), None);
    assert_eq!(t.min_ts(), None);
    assert_eq!(t.max_ts(), None);
    let mut it = t.iter();
    for f in [MemIter::seek_to_first, MemIter::seek_to_last] {
        f(&mut it);
        assert!(!it.valid());
    }
    it.seek(&internal_key(b"a", 1));
    assert!(!it.valid());
    it.seek_for_prev(&internal_key(b"a", 1));
    assert!(!it.valid());
    it.next();
    it.prev();
    assert!(!it.valid());
    assert_eq!(it.key(), b"");
    assert_eq!(it.value(), b"");
}

#[test]
fn versions_and_read_timestamps() {
    let t = MemTable::new();
    t.insert(&internal_key(b"k", 10), &put(b"v10")).unwrap();
    t.insert(&internal_key(b"k", 20), &put(b"v20")).unwrap();
    t.insert(&internal_key(b"k", 30), &del()).unwrap();
    // A user key that has "k" as a prefix, and one that sorts before it bytewise only
    // when the timestamp suffix is ignored.
    t.insert(&internal_key(b"k\x00", 15), &put(b"k0")).unwrap();
    t.insert(&internal_key(b"j\xff", 15), &put(b"jff")).unwrap();

    assert_eq!(t.get(b"k", 9), None);
    assert_eq!(t.get(b"k", 10), Some((10, &put(b"v10")[..])));
    assert_eq!(t.get(b"k", 19), Some((10, &put(b"v10")[..])));
    assert_eq!(t.get(b"k", 20), Some((20, &put(b"v20")[..])));
    assert_eq!(t.get(b"k", 29), Some((20, &put(b"v20")[..])));
    assert_eq!(t.get(b"k", u64::MAX), Some((30, &del()[..])));
    assert_eq!(t.get(b"k\x00", 14), None);
    assert_eq!(t.get(b"k\x00", 15), Some((15, &put(b"k0")[..])));
    assert_eq!(t.get(b"j\xff", 100), Some((15, &put(b"jff")[..])));
    assert_eq!(t.get(b"j", 100), None);
    assert_eq!(t.get(b"", 100), None);
    assert_eq!(t.get(b"l", 100), None);

    assert_eq!(t.len(), 5);
    assert_eq!(t.num_deletions(), 1);
    assert_eq!(t.min_ts(), Some(10));
    assert_eq!(t.max_ts(), Some(30));
}

#[test]
fn equal_key_replaces_value_and_keeps_old_slices() {
    let t = MemTable::new();
    let k = internal_key(b"key", 7);
    t.insert(&k, &put(b"first")).unwrap();
    let (_, old) = t.get(b"key", 7).unwrap();
    t.insert(&k, &del()).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t.num_deletions(), 1);
    // The slice obtained before the replacement still reads the old bytes.
    assert_eq!(old, &put(b"first")[..]);
    assert_eq!(t.get(b"key", 7), Some((7, &del()[..])));
    t.insert(&k, &put(b"third")).unwrap();
    assert_eq!(t.num_deletions(), 0);
    t.insert(&k, b"").unwrap();
    assert_eq!(t.get(b"key", 7), Some((7, &b""[..])));
    assert_eq!(t.len(), 1);
}

#[test]
fn rejects_malformed_and_oversized_input() {
    let t = MemTable::new();
    assert!(matches!(
        t.insert(b"short", b"\x01"),
        Err(Error::InvalidArgument(_))
    ));
    let long = vec![b'x'; MAX_INTERNAL_KEY_BYTES + 1];
    assert!(t.insert(&long, b"\x01").is_err());
    let max_key = vec![b'x'; MAX_INTERNAL_KEY_BYTES];
    t.insert(&max_key, b"\x01").unwrap();
    let huge = vec![1u8; MAX_STORED_VALUE_BYTES + 1];
    assert!(t.insert(&internal_key(b"a", 1), &huge).is_err());
    assert_eq!(t.len(), 1);
    // An exactly 8-byte key (empty user key) is fine.
    t.insert(&internal_key(b"", 3), b"\x01").unwrap();
    assert_eq!(t.get(b"", 3), Some((3, &b"\x01"[..])));
}

#[test]
fn big_values_get_their_own_chunks() {
    let t = Rc::new(MemTable::new());
    let big = vec![0xabu8; MEMTABLE_ARENA_MAX_CHUNK_BYTES * 2 + 3];
    t.insert(&internal_key(b"small1", 1), &put(b"s")).unwrap();
    t.insert(&internal_key(b"big", 1), &big).unwrap();
    t.insert(&internal_key(b"small2", 1), &put(b"s")).unwrap();
    let replaced = vec![0xcdu8; MEMTABLE_ARENA_MAX_CHUNK_BYTES + 1];
    t.insert(&internal_key(b"small1", 1), &replaced).unwrap();
    assert_eq!(t.get(b"big", 1).unwrap().1, &big[..]);
    assert_eq!(t.get(b"small1", 1).unwrap().1, &replaced[..]);
    assert_eq!(t.get(b"small2", 1).unwrap().1, &put(b"s")[..]);
    assert!(t.approximate_bytes() >= big.len() + replaced.len());
    // The small entries shared one regular chunk: the big ones did not waste it.
    assert!(t.allocated_bytes() < t.approximate_bytes() + 2 * MEMTABLE_ARENA_MAX_CHUNK_BYTES);
    assert_eq!(collect_forward(&t).len(), 3);
}

#[test]
fn approximate_bytes_tracks_inserts() {
    let t = MemTable::new();
    let before = t.approximate_bytes();
    let mut last = before;
    for i in 0u32..10_000 {
        t.insert(&internal_key(&i.to_be_bytes(), 1), &[1u8; 100])
            .unwrap();
        let now = t.approximate_bytes();
        assert!(now >= last + 100 + 4 + 8);
        last = now;
    }
    // Overhead per entry stays small: header, ~1.33 links, padding, and the
    // point-lookup index (at most half empty after a resize).
    let per_entry = (last - before) / 10_000;
    assert!(
        per_entry < 112 + 16 + 8 * 3 + 8 + 64,
        "per entry {per_entry}"
    );
    assert!(t.allocated_bytes() >= last);
}

#[test]
fn many_random_keys_sorted_both_ways() {
    let t = Rc::new(MemTable::new());
    let mut x: u64 = 88172645463325252;
    let mut model = Vec::new();
    for i in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = internal_key(&(x % 5000).to_be_bytes(), i % 7);
        t.insert(&k, &put(&i.to_le_bytes())).unwrap();
        model.push(k);
    }
    model.sort_by(|a, b| keys::cmp_internal(a, b));
    model.dedup();
    let fwd: Vec<Vec<u8>> = collect_forward(&t).into_iter().map(|(k, _)| k).collect();
    assert_eq!(fwd, model);
    let back: Vec<Vec<u8>> = collect_backward(&t).into_iter().map(|(k, _)| k).collect();
    assert_eq!(back, model);
    assert_eq!(t.len(), model.len());
}

#[test]
fn iterator_stays_valid_across_inserts() {
    let t = Rc::new(MemTable::new());
    for k in [b"b", b"d", b"f"] {
        t.insert(&internal_key(k, 1), &put(k)).unwrap();
    }
    let mut it = t.iter();
    it.seek(&internal_key(b"d", u64::MAX));
    assert_eq!(keys::user_key(it.key()), b"d");
    // Inserts around the current position, including a new chunk's worth of data and a
    // replacement of the current entry's value.
    t.insert(&internal_key(b"c", 1), &put(b"c")).unwrap();
    t.insert(&internal_key(b"e", 1), &put(b"e")).unwrap();
    t.insert(&internal_key(b"d", 1), &put(b"D")).unwrap();
    for i in 0u32..5000 {
        let mut k = b"g".to_vec();
        k.extend_from_slice(&i.to_be_bytes());
        t.insert(&internal_key(&k, 1), &[1u8; 200]).unwrap();
    }
    assert_eq!(keys::user_key(it.key()), b"d");
    assert_eq!(it.value(), &put(b"D")[..]);
    it.next();
    assert_eq!(keys::user_key(it.key()), b"e");
    it.prev();
    it.prev();
    assert_eq!(keys::user_key(it.key()), b"c");
    // The iterator keeps the table alive after the owner lets go.
    let weak = Rc::downgrade(&t);
    drop(t);
    it.prev();
    assert_eq!(keys::user_key(it.key()), b"b");
    it.prev();
    assert!(!it.valid());
    assert!(weak.upgrade().is_some());
    drop(it);
    assert!(weak.upgrade().is_none());
}

#[test]
fn seek_for_prev_and_bounds() {
    let t = Rc::new(MemTable::new());
    for (k, ts) in [(&b"a"[..], 5u64), (b"a", 3), (b"c", 9)] {
        t.insert(&internal_key(k, ts), &put(k)).unwrap();
    }
    let mut it = t.iter();
    it.seek_for_prev(&internal_key(b"a", 4));
    assert_eq!(it.key(), &internal_key(b"a", 5)[..]);
    it.seek_for_prev(&internal_key(b"a", 3));
    assert_eq!(it.key(), &internal_key(b"a", 3)[..]);
    it.seek_for_prev(&internal_key(b"a", 6));
    assert!(!it.valid());
    it.seek_for_prev(&internal_key(b"z", 0));
    assert_eq!(it.key(), &internal_key(b"c", 9)[..]);
    it.seek(&internal_key(b"c", 8));
    assert!(!it.valid());
    it.seek(&internal_key(b"b", 0));
    assert_eq!(it.key(), &internal_key(b"c", 9)[..]);
}

/// An internal key ordered the way the memtable orders it.
#[derive(Clone, Debug)]
struct IKey(Vec<u8>);

impl PartialEq for IKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for IKey {}
impl PartialOrd for IKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for IKey {
    fn cmp(&self, o: &Self) -> Ordering {
        keys::cmp_internal(&self.0, &o.0)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Vec<u8>, u64, Vec<u8>),
    Get(Vec<u8>, u64),
    Seek(Vec<u8>, u64),
    SeekForPrev(Vec<u8>, u64),
    First,
    Last,
    Next,
    Prev,
}

fn user_key_strategy() -> impl Strategy<Value = Vec<u8>> {
    // A tiny alphabet with 0x00 and 0xff makes prefixes, duplicates and the
    // suffix-versus-user-key ordering pitfalls frequent.
    proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(0xffu8)], 0..4)
}

fn ts_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..8, 1 => Just(u64::MAX), 1 => Just(u64::MAX - 1)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let value = (1u8..=3, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(k, mut v)| {
        v.insert(0, k);
        v
    });
    prop_oneof![
        6 => (user_key_strategy(), ts_strategy(), value).prop_map(|(k, t, v)| Op::Insert(k, t, v)),
        3 => (user_key_strategy(), ts_strategy()).prop_map(|(k, t)| Op::Get(k, t)),
        1 => (user_key_strategy(), ts_strategy()).prop_map(|(k, t)| Op::Seek(k, t)),
        1 => (user_key_strategy(), ts_strategy()).prop_map(|(k, t)| Op::SeekForPrev(k, t)),
        1 => Just(Op::First),
        1 => Just(Op::Last),
        2 => Just(Op::Next),
        2 => Just(Op::Prev),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The memtable against a `BTreeMap` ordered by `cmp_internal`, with one long-lived
    /// iterator moving among the inserts.
    #[test]
    fn model(ops in proptest::collection::vec(op_strategy(), 1..200)) {
        let t = Rc::new(MemTable::new());
        let mut model: BTreeMap<IKey, Vec<u8>> = BTreeMap::new();
        let mut it = t.iter();
        let mut cur: Option<IKey> = None;
        for op in ops {
            match op {
                Op::Insert(uk, ts, v) => {
                    let k = internal_key(&uk, ts);
                    t.insert(&k, &v).unwrap();
                    model.insert(IKey(k), v);
                }
                Op::Get(uk, read_ts) => {
                    let want = model
                        .iter()
                        .filter(|(k, _)| keys::user_key(&k.0) == &uk[..] && keys::timestamp(&k.0) <= read_ts)
                        .max_by_key(|(k, _)| keys::timestamp(&k.0))
                        .map(|(k, v)| (keys::timestamp(&k.0), v.as_slice()));
                    prop_assert_eq!(t.get(&uk, read_ts), want);
                }
                Op::Seek(uk, ts) => {
                    let target = IKey(internal_key(&uk, ts));
                    it.seek(&target.0);
                    cur = model.range(target..).next().map(|(k, _)| k.clone());
                }
                Op::SeekForPrev(uk, ts) => {
                    let target = IKey(internal_key(&uk, ts));
                    it.seek_for_prev(&target.0);
                    cur = model.range(..=target).next_back().map(|(k, _)| k.clone());
                }
                Op::First => {
                    it.seek_to_first();
                    cur = model.keys().next().cloned();
                }
                Op::Last => {
                    it.seek_to_last();
                    cur = model.keys().next_back().cloned();
                }
                Op::Next => {
                    it.next();
                    cur = cur.and_then(|c| {
                        model.range((Bound::Excluded(c), Bound::Unbounded)).next().map(|(k, _)| k.clone())
                    });
                }
                Op::Prev => {
                    it.prev();
                    cur = cur.and_then(|c| model.range(..c).next_back().map(|(k, _)| k.clone()));
                }
            }
            match &cur {
                Some(c) => {
                    prop_assert!(it.valid());
                    prop_assert_eq!(it.key(), &c.0[..]);
                    prop_assert_eq!(it.value(), &model[c][..]);
                }
                None => prop_assert!(!it.valid()),
            }
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.0.clone(), v.clone())).collect();
        prop_assert_eq!(&collect_forward(&t), &want);
        prop_assert_eq!(&collect_backward(&t), &want);
        prop_assert_eq!(t.len(), model.len());
        let dels = model.values().filter(|v| v.first() == Some(&(ValueKind::Delete as u8))).count();
        prop_assert_eq!(t.num_deletions(), dels);
        prop_assert_eq!(t.min_ts(), model.keys().map(|k| keys::timestamp(&k.0)).min());
        prop_assert_eq!(t.max_ts(), model.keys().map(|k| keys::timestamp(&k.0)).max());
    }
}

#[test]
fn point_reads_through_the_index_see_versions_and_collisions() {
    let t = MemTable::new();
    // Several versions of one key, inserted out of timestamp order too.
    t.insert(&internal_key(b"k", 5), &[1, b'5']).unwrap();
    t.insert(&internal_key(b"k", 9), &[1, b'9']).unwrap();
    t.insert(&internal_key(b"k", 7), &[1, b'7']).unwrap();
    assert_eq!(t.get(b"k", 100), Some((9, &[1, b'9'][..])));
    assert_eq!(t.get(b"k", 8), Some((7, &[1, b'7'][..])));
    assert_eq!(t.get(b"k", 6), Some((5, &[1, b'5'][..])));
    assert_eq!(t.get(b"k", 4), None);
    assert_eq!(t.get(b"j", 100), None);
    assert_eq!(t.get(b"kk", 100), None);
    // Many keys: every read agrees with a search of the list.
    for i in 0u32..50_000 {
        t.insert(
            &internal_key(format!("key{i}").as_bytes(), 10 + i as u64 % 3),
            &[1, i as u8],
        )
        .unwrap();
    }
    for i in 0u32..50_000 {
        let k = format!("key{i}");
        assert_eq!(
            t.get(k.as_bytes(), 100),
            Some((10 + i as u64 % 3, &[1, i as u8][..]))
        );
        assert_eq!(t.get(k.as_bytes(), 9), None);
        assert_eq!(t.get(format!("nokey{i}").as_bytes(), 100), None);
    }
}

/// CRC-32C (reflected, polynomial 0x82F63B78) one byte at a time, for forging.
fn crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (n, e) in t.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
        *e = c;
    }
    t
}

/// `prefix` followed by the 4 bytes that make its CRC-32C equal `target`. CRC is
/// linear: the last four table indexes are fixed by the target alone (walking back
/// from it), and each appended byte steers the register onto its index.
fn forge_crc(t: &[u32; 256], prefix: &[u8], target: u32) -> Vec<u8> {
    let mut idx = [0u8; 4];
    let mut want = !target;
    for i in (0..4).rev() {
        let k = (0..256).find(|&k| t[k] >> 24 == want >> 24).unwrap();
        idx[i] = k as u8;
        want = (want ^ t[k]) << 8;
    }
    let mut reg = !crc32c::crc32c(prefix);
    let mut out = prefix.to_vec();
    for k in idx {
        let b = k ^ (reg as u8);
        out.push(b);
        reg = (reg >> 8) ^ t[k as usize];
    }
    assert_eq!(crc32c::crc32c(&out), target);
    out
}

/// Client keys chosen to collide under CRC-32C must not share the point index's slots
/// or its hash table's buckets: the index hash is keyed.
#[test]
fn chosen_crc_collisions_do_not_share_index_slots() {
    let t = crc32c_table();
    let mt = MemTable::new();
    let n = 2000u64;
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|i| forge_crc(&t, format!("user:{i:06}").as_bytes(), 0xDEAD_BEEF))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        mt.insert(&internal_key(k, 1), &put(&i.to_le_bytes()))
            .unwrap();
    }
    {
        let index = mt.index.borrow();
        let collisions = index
            .values()
            .filter(|s| matches!(s, Slot::Collision))
            .count();
        assert_eq!(
            (index.len(), collisions),
            (n as usize, 0),
            "keys with one CRC-32C share index slots"
        );
    }
    // Keys whose CRCs differ only above the low 24 bits: an unkeyed hash derived from
    // the CRC puts them in one bucket of any table up to 2^24 slots.
    let low: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            forge_crc(
                &t,
                format!("low:{i:06}").as_bytes(),
                ((i as u32) << 24) | 0xBEEF,
            )
        })
        .collect();
    let buckets = 1u64 << 12;
    let used: std::collections::HashSet<u64> =
        low.iter().map(|k| mt.key_hash(k) & (buckets - 1)).collect();
    assert!(
        used.len() as u64 > buckets / 4,
        "{n} chosen keys fill only {} of {buckets} buckets",
        used.len()
    );
    for (i, k) in keys.iter().enumerate() {
        let (_, v) = mt.get(k, 1).unwrap();
        assert_eq!(v, &put(&i.to_le_bytes())[..]);
    }
}
