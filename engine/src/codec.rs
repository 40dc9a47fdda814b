//! The one place where bytes are encoded and decoded. Every integer on disk is
//! little-endian (fixed width) or LEB128 varint, except the timestamp suffix of
//! internal keys, which is big-endian so that keys sort bytewise (see `keys`).
//! Checksums are CRC-32C (Castagnoli), hardware accelerated on x86-64 and aarch64.

/// CRC-32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Extends `crc` (of earlier bytes) over `data`: a file's checksum computed piece by
/// piece equals `crc32c` of the whole (start from 0).
pub fn crc32c_extend(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// CRC-32C of the concatenation of `a` and `b`, without copying.
#[inline]
pub fn crc32c_pair(a: &[u8], b: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(a), b)
}

#[inline]
pub fn put_u8(buf: &mut Vec<u8>, v: u8) {
    buf.push(v);
}

#[inline]
pub fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Writes `v` as a little-endian u32 at `pos` (the slice must be long enough).
#[inline]
pub fn write_u32_at(buf: &mut [u8], pos: usize, v: u32) {
    buf[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` as a little-endian u64 at `pos` (the slice must be long enough).
#[inline]
pub fn write_u64_at(buf: &mut [u8], pos: usize, v: u64) {
    buf[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
}

/// LEB128 varint, at most 10 bytes.
#[inline]
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Signed varint: zigzag (0, -1, 1, -2, ... map to 0, 1, 2, 3, ...) then LEB128, so
/// small negative numbers stay short.
#[inline]
pub fn put_varint_i64(buf: &mut Vec<u8>, v: i64) {
    put_varint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Length-prefixed byte string (varint length, then the bytes).
#[inline]
pub fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Number of bytes `put_varint` writes for `v`.
#[inline]
pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads a little-endian u32 at `pos`; `None` when the slice is too short.
#[inline]
pub fn read_u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    let b = buf.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian u64 at `pos`; `None` when the slice is too short.
#[inline]
pub fn read_u64_at(buf: &[u8], pos: usize) -> Option<u64> {
    let b = buf.get(pos..pos.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// Why a decode failed; callers turn it into `Error::Corruption` with file and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    Truncated,
    /// A varint was longer than 10 bytes or overflowed 64 bits.
    BadVarint,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated value"),
            DecodeError::BadVarint => f.write_str("malformed varint"),
        }
    }
}

/// A bounds-checked cursor over a byte slice. Never panics on any input.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let v = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(v)
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        // Fast path: most varints on the hot paths (block entry headers) are one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// A signed varint written by `put_varint_i64`.
    #[inline]
    pub fn varint_i64(&mut self) -> Result<i64, DecodeError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A varint that must fit in `usize` and in the remaining input (a length).
    #[inline]
    pub fn len_varint(&mut self) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        usize::try_from(v).map_err(|_| DecodeError::Truncated)
    }

    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// A length-prefixed byte string written by `put_bytes`.
    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len_varint()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut d = Decoder::new(&b);
            assert_eq!(d.varint().unwrap(), v);
            assert!(d.is_empty());
        }
    }

    #[test]
    fn signed_varint_roundtrip() {
        for v in [
            0i64,
            -1,
            1,
            -64,
            63,
            -65,
            i32::MIN as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint_i64(&mut b, v);
            assert_eq!(Decoder::new(&b).varint_i64().unwrap(), v);
        }
        let mut b = Vec::new();
        put_varint_i64(&mut b, -1);
        assert_eq!(b, [1]);
    }

    #[test]
    fn decoder_never_panics_on_short_input() {
        let mut d = Decoder::new(&[0xff, 0xff]);
        assert_eq!(d.varint(), Err(DecodeError::Truncated));
        let mut d = Decoder::new(&[1, 2, 3]);
        assert_eq!(d.u32(), Err(DecodeError::Truncated));
        let bad = [0xffu8; 11];
        assert_eq!(Decoder::new(&bad).varint(), Err(DecodeError::BadVarint));
    }

    #[test]
    fn fixed_roundtrip() {
        let mut b = Vec::new();
        put_u32(&mut b, 0xdead_beef);
        put_u64(&mut b, 42);
        assert_eq!(read_u32_at(&b, 0), Some(0xdead_beef));
        assert_eq!(read_u64_at(&b, 4), Some(42));
        assert_eq!(read_u64_at(&b, 5), None);
    }
}
