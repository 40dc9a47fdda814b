//! The only place that reads and writes the protocol's integers (little-endian) and
//! length-prefixed fields.

use crate::error::ProtoError;
use crate::limits::MAX_STRING_BYTES;

/// Appends little-endian fields to a buffer.
pub struct Writer<'a> {
    pub buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }
    #[inline]
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    #[inline]
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A `bytes` field: u32 length, then the bytes.
    #[inline]
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    /// A `str` field: like `bytes`, UTF-8.
    #[inline]
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads little-endian fields from a body; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.remaining() < n {
            return Err(ProtoError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, what)?[0])
    }
    #[inline]
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ProtoError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    #[inline]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[inline]
    pub fn u64(&mut self, what: &'static str) -> Result<u64, ProtoError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    #[inline]
    pub fn i64(&mut self, what: &'static str) -> Result<i64, ProtoError> {
        Ok(self.u64(what)? as i64)
    }
    /// A `bytes` field no longer than `max`.
    #[inline]
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], ProtoError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(ProtoError::TooLong { what, len: n, max });
        }
        self.take(n, what)
    }
    /// A `str` field (UTF-8, at most `MAX_STRING_BYTES`).
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, ProtoError> {
        let b = self.bytes(what, MAX_STRING_BYTES)?;
        std::str::from_utf8(b).map_err(|_| ProtoError::BadUtf8(what))
    }
    /// Fails if bytes are left over: a body has exactly the fields its operation names.
    pub fn finish(&self) -> Result<(), ProtoError> {
        if self.remaining() != 0 {
            return Err(ProtoError::TrailingBytes(self.remaining()));
        }
        Ok(())
    }
}

/// Little-endian u32 at `pos` of `buf`, if there are four bytes.
#[inline]
pub fn u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    let b = buf.get(pos..pos + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
