//! Internal keys and value headers: the MVCC encoding of the engine.
//!
//! An internal key is `user_key ++ BE64(u64::MAX - ts)`: the user key (already
//! memcomparable when it comes from SQL; arbitrary bytes from KV), then the inverted
//! big-endian timestamp so that, for one user key, the newest version sorts first.
//! Because a user key may be a prefix of another, internal keys are compared with
//! [`cmp_internal`] (user key first, then the suffix), never as plain bytes.
//!
//! A stored value starts with a one-byte [`ValueKind`]; `PutTtl` is followed by the
//! little-endian expiry time (milliseconds since the Unix epoch), then the user value.

use crate::codec;
use std::cmp::Ordering;

/// Bytes of the timestamp suffix of every internal key.
pub const TS_BYTES: usize = 8;

/// Largest timestamp; reading at it sees every version.
pub const MAX_TS: u64 = u64::MAX;

/// Encodes `user_key` at `ts` into `out` (cleared first).
#[inline]
pub fn encode_internal(out: &mut Vec<u8>, user_key: &[u8], ts: u64) {
    out.clear();
    out.reserve(user_key.len() + TS_BYTES);
    out.extend_from_slice(user_key);
    out.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
}

/// Returns a freshly allocated internal key.
#[inline]
pub fn internal_key(user_key: &[u8], ts: u64) -> Vec<u8> {
    let mut v = Vec::new();
    encode_internal(&mut v, user_key, ts);
    v
}

/// Rewrites the timestamp of an internal key in place (a no-op on keys shorter than
/// the suffix, which only corrupt input produces).
#[inline]
pub fn set_timestamp(ikey: &mut [u8], ts: u64) {
    if let Some(at) = ikey.len().checked_sub(TS_BYTES) {
        ikey[at..].copy_from_slice(&(u64::MAX - ts).to_be_bytes());
    }
}

/// The user-key part of an internal key. Internal keys shorter than the suffix (never
/// produced by this module; only from corrupt input) yield the empty slice.
#[inline]
pub fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(TS_BYTES)]
}

/// The timestamp of an internal key (0 for malformed keys).
#[inline]
pub fn timestamp(ikey: &[u8]) -> u64 {
    if ikey.len() < TS_BYTES {
        return 0;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&ikey[ikey.len() - TS_BYTES..]);
    u64::MAX - u64::from_be_bytes(a)
}

/// Orders internal keys: user key ascending, then timestamp descending.
#[inline]
pub fn cmp_internal(a: &[u8], b: &[u8]) -> Ordering {
    let (ua, sa) = a.split_at(a.len().saturating_sub(TS_BYTES));
    let (ub, sb) = b.split_at(b.len().saturating_sub(TS_BYTES));
    match ua.cmp(ub) {
        Ordering::Equal => sa.cmp(sb),
        o => o,
    }
}

/// What a stored version means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ValueKind {
    /// A live value.
    Put = 1,
    /// A tombstone: the key is deleted as of this version.
    Delete = 2,
    /// A live value that expires at a wall-clock time.
    PutTtl = 3,
}

/// A decoded stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredValue<'a> {
    pub kind: ValueKind,
    /// Expiry in milliseconds since the Unix epoch (`PutTtl` only).
    pub expires_at_ms: Option<u64>,
    pub value: &'a [u8],
}

impl StoredValue<'_> {
    /// True when this version hides the key at time `now_ms` (tombstone or expired).
    #[inline]
    pub fn is_dead(&self, now_ms: u64) -> bool {
        match self.kind {
            ValueKind::Delete => true,
            ValueKind::Put => false,
            ValueKind::PutTtl => self.expires_at_ms.is_some_and(|e| e <= now_ms),
        }
    }
}

/// Appends the stored form of a value to `out`.
#[inline]
pub fn encode_value(out: &mut Vec<u8>, kind: ValueKind, expires_at_ms: Option<u64>, value: &[u8]) {
    out.push(kind as u8);
    if kind == ValueKind::PutTtl {
        codec::put_u64(out, expires_at_ms.unwrap_or(0));
    }
    out.extend_from_slice(value);
}

/// Decodes a stored value; `None` for malformed input.
#[inline]
pub fn decode_value(raw: &[u8]) -> Option<StoredValue<'_>> {
    let (&k, rest) = raw.split_first()?;
    match k {
        1 => Some(StoredValue {
            kind: ValueKind::Put,
            expires_at_ms: None,
            value: rest,
        }),
        2 => Some(StoredValue {
            kind: ValueKind::Delete,
            expires_at_ms: None,
            value: rest,
        }),
        3 => {
            let e = codec::read_u64_at(rest, 0)?;
            Some(StoredValue {
                kind: ValueKind::PutTtl,
                expires_at_ms: Some(e),
                value: &rest[8..],
            })
        }
        _ => None,
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_and_prefix_safe() {
        let a1 = internal_key(b"a", 1);
        let a9 = internal_key(b"a", 9);
        let ab = internal_key(b"ab", 5);
        assert_eq!(cmp_internal(&a9, &a1), Ordering::Less);
        assert_eq!(cmp_internal(&a1, &ab), Ordering::Less);
        assert_eq!(cmp_internal(&a9, &ab), Ordering::Less);
        assert_eq!(timestamp(&a9), 9);
        assert_eq!(user_key(&ab), b"ab");
    }

    #[test]
    fn value_roundtrip() {
        let mut v = Vec::new();
        encode_value(&mut v, ValueKind::PutTtl, Some(77), b"xyz");
        let d = decode_value(&v).unwrap();
        assert_eq!(d.kind, ValueKind::PutTtl);
        assert_eq!(d.expires_at_ms, Some(77));
        assert_eq!(d.value, b"xyz");
        assert!(d.is_dead(77));
        assert!(!d.is_dead(76));
        assert!(decode_value(&[9]).is_none());
        assert!(decode_value(&[3, 1]).is_none());
    }
}
