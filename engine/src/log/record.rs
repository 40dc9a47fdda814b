//! Log record framing: a pure parser shared by the segment reader, recovery and the
//! fuzz target.
//!
//! ```text
//! record  := crc32c:u32 | payload_len:u32 | group:u64 | index:u64 | term:u64 | payload
//! crc32c  covers everything after the crc field: the other header fields and payload
//! padding := a header whose first 8 bytes are zero: the rest of the 4 KiB page is unused
//! ```
//! Every flush starts on a page boundary and is zero-padded to one, so bytes that were
//! fsynced are never rewritten.

use crate::codec;
use crate::config::{IO_ALIGN, MAX_LOG_RECORD_BYTES};

/// Bytes of a record header.
pub const HEADER_BYTES: usize = 32;

/// A decoded record, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub group: u64,
    pub index: u64,
    pub term: u64,
    pub payload: &'a [u8],
}

/// What the bytes at a position hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A valid record; the next one starts at `next` (relative to the slice start).
    Record { rec: LogRecord<'a>, next: usize },
    /// Zero header: padding up to the next page boundary.
    Padding,
    /// The slice ends inside a record that claims `need` bytes in total.
    Short { need: usize },
    /// Not a valid record (bad checksum or impossible length).
    Invalid(&'static str),
}

/// Appends the encoded record to `out`.
pub fn encode(out: &mut Vec<u8>, group: u64, index: u64, term: u64, payload: &[u8]) {
    let start = out.len();
    codec::put_u32(out, 0);
    codec::put_u32(out, payload.len() as u32);
    codec::put_u64(out, group);
    codec::put_u64(out, index);
    codec::put_u64(out, term);
    out.extend_from_slice(payload);
    let crc = codec::crc32c(&out[start + 4..]);
    codec::write_u32_at(out, start, crc);
}

/// Encoded size of a record with `payload_len` bytes of payload.
pub fn encoded_len(payload_len: usize) -> usize {
    HEADER_BYTES + payload_len
}

/// Bytes of zeros that mark padding. Writers pad a flush by 0 bytes or by at least
/// this many (adding a page when the gap to the boundary is smaller), so a record that
/// starts just before a page boundary is never mistaken for padding.
pub const MIN_PADDING: usize = 8;

/// Parses what starts at `buf[0]`. A record is tried first (its first bytes may be
/// zero); bytes that are not a valid record and start with [`MIN_PADDING`] zeros are
/// padding up to the next page boundary. Never panics, whatever the input.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let zeros = buf.len() >= MIN_PADDING && buf[..MIN_PADDING].iter().all(|&b| b == 0);
    match parse_record(buf) {
        Parsed::Record { rec, next } => Parsed::Record { rec, next },
        _ if zeros => Parsed::Padding,
        other => other,
    }
}

fn parse_record(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEADER_BYTES {
        return Parsed::Short { need: HEADER_BYTES };
    }
    let (Some(crc), Some(len)) = (codec::read_u32_at(buf, 0), codec::read_u32_at(buf, 4)) else {
        return Parsed::Short { need: HEADER_BYTES };
    };
    let len = len as usize;
    if len > MAX_LOG_RECORD_BYTES {
        return Parsed::Invalid("record length above the limit");
    }
    let total = HEADER_BYTES + len;
    if buf.len() < total {
        return Parsed::Short { need: total };
    }
    if codec::crc32c(&buf[4..total]) != crc {
        return Parsed::Invalid("checksum mismatch");
    }
    let (Some(group), Some(index), Some(term)) = (
        codec::read_u64_at(buf, 8),
        codec::read_u64_at(buf, 16),
        codec::read_u64_at(buf, 24),
    ) else {
        return Parsed::Invalid("truncated header");
    };
    Parsed::Record {
        rec: LogRecord {
            group,
            index,
            term,
            payload: &buf[HEADER_BYTES..total],
        },
        next: total,
    }
}

/// The first page boundary strictly after `pos`... or `pos` itself if it is one.
pub fn page_ceil(pos: u64) -> u64 {
    pos.div_ceil(IO_ALIGN) * IO_ALIGN
}

/// Parses every record of an in-memory segment body (starting at a page boundary),
/// as recovery would, and returns how many valid records precede the end of valid
/// data. Used by the fuzz target and tests; never panics.
pub fn scan_all(body: &[u8]) -> usize {
    let mut pos = 0usize;
    let mut n = 0;
    while pos < body.len() {
        match parse(&body[pos..]) {
            Parsed::Record { next, .. } => {
                n += 1;
                pos += next;
            }
            Parsed::Padding => pos = page_ceil(pos as u64 + 1) as usize,
            Parsed::Short { .. } | Parsed::Invalid(_) => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn roundtrip_and_detection() {
        let mut b = Vec::new();
        encode(&mut b, 3, 7, 1, b"hello");
        match parse(&b) {
            Parsed::Record { rec, next } => {
                assert_eq!(
                    (rec.group, rec.index, rec.term, rec.payload),
                    (3, 7, 1, &b"hello"[..])
                );
                assert_eq!(next, b.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(&b[..b.len() - 1]), Parsed::Short { need: b.len() });
        let mut bad = b.clone();
        bad[35] ^= 1;
        assert!(matches!(parse(&bad), Parsed::Invalid(_)));
        assert_eq!(parse(&[0u8; 64]), Parsed::Padding);
        // A record whose first bytes happen to be zero is still a record.
        let mut z = vec![0u8; 8];
        z.extend_from_slice(&[0u8; 24]);
        assert_eq!(parse(&z), Parsed::Padding);
    }

    #[test]
    fn parser_never_panics_on_random_bytes() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
        let mut valid = Vec::new();
        for i in 0..20 {
            encode(&mut valid, i, i, i, &vec![i as u8; i as usize * 10]);
        }
        for _ in 0..5000 {
            let mut buf = if rng.gen_bool(0.5) {
                let n = rng.gen_range(0..600);
                (0..n).map(|_| rng.r#gen::<u8>()).collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            if !buf.is_empty() {
                for _ in 0..rng.gen_range(0..4) {
                    let i = rng.gen_range(0..buf.len());
                    buf[i] = rng.r#gen();
                }
                let cut = rng.gen_range(0..=buf.len());
                buf.truncate(cut);
            }
            let _ = scan_all(&buf);
        }
    }
}
