//! Write batches: a set of puts and deletes applied atomically at one timestamp.
//!
//! The encoded batch is the payload of one log record:
//! `count: varint`, then per operation `kind: u8` (a `keys::ValueKind`), `key: bytes`,
//! for `PutTtl` the expiry `u64` (ms since the epoch), and for puts `value: bytes`
//! (bytes = varint length + data; integers little-endian, see `codec`).

use crate::codec::{self, DecodeError, Decoder};
use crate::config::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::keys::ValueKind;
use crate::{Error, Result};

/// An atomic group of writes.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    ops: Vec<u8>,
    count: u64,
}

/// One decoded operation of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOp<'a> {
    pub kind: ValueKind,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub expires_at_ms: Option<u64>,
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidArgument(format!(
            "key length {} outside 1..={MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put. Errors on empty or oversized keys and values.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_with_expiry(key, value, None)
    }

    /// Adds a put that expires at `expires_at_ms` (ms since the Unix epoch) if given.
    pub fn put_with_expiry(
        &mut self,
        key: &[u8],
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<()> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "value length {} above {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        match expires_at_ms {
            None => codec::put_u8(&mut self.ops, ValueKind::Put as u8),
            Some(_) => codec::put_u8(&mut self.ops, ValueKind::PutTtl as u8),
        }
        codec::put_bytes(&mut self.ops, key);
        if let Some(e) = expires_at_ms {
            codec::put_u64(&mut self.ops, e);
        }
        codec::put_bytes(&mut self.ops, value);
        self.count += 1;
        Ok(())
    }

    /// Adds a delete (a tombstone).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        check_key(key)?;
        codec::put_u8(&mut self.ops, ValueKind::Delete as u8);
        codec::put_bytes(&mut self.ops, key);
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the encoded operations.
    pub fn byte_size(&self) -> usize {
        self.ops.len()
    }

    /// Appends the encoded batch (the log payload) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        codec::put_varint(out, self.count);
        out.extend_from_slice(&self.ops);
    }

    /// Iterates the operations in insertion order.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter {
            d: Decoder::new(&self.ops),
            left: self.count,
        }
    }
}

/// Decodes an encoded batch (a log payload) into an iterator of operations.
pub fn decode(payload: &[u8]) -> Result<BatchIter<'_>, DecodeError> {
    let mut d = Decoder::new(payload);
    let left = d.varint()?;
    Ok(BatchIter { d, left })
}

/// Iterator over a batch's operations; yields an error on malformed input.
pub struct BatchIter<'a> {
    d: Decoder<'a>,
    left: u64,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchOp<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.read_op())
    }
}

impl<'a> BatchIter<'a> {
    fn read_op(&mut self) -> Result<BatchOp<'a>, DecodeError> {
        let kind = match self.d.u8()? {
            1 => ValueKind::Put,
            2 => ValueKind::Delete,
            3 => ValueKind::PutTtl,
            _ => return Err(DecodeError::BadVarint),
        };
        let key = self.d.bytes()?;
        let expires_at_ms = if kind == ValueKind::PutTtl {
            Some(self.d.u64()?)
        } else {
            None
        };
        let value = if kind == ValueKind::Delete {
            &[][..]
        } else {
            self.d.bytes()?
        };
        Ok(BatchOp {
            kind,
            key,
            value,
            expires_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let mut b = WriteBatch::new();
        b.put(b"k1", b"v1").unwrap();
        b.delete(b"k2").unwrap();
        b.put_with_expiry(b"k3", b"v3", Some(99)).unwrap();
        assert!(b.put(b"", b"x").is_err());
        let mut enc = Vec::new();
        b.encode_into(&mut enc);
        let ops: Vec<_> = decode(&enc).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[1].kind, ValueKind::Delete);
        assert_eq!(ops[2].expires_at_ms, Some(99));
        for cut in 0..enc.len() {
            let _ = decode(&enc[..cut]).map(|it| it.count());
        }
    }
}
