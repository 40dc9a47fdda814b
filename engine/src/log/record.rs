//! Log framing: records and the flush header that opens every flush. A pure parser
//! shared by the segment reader, recovery and the fuzz target.
//!
//! ```text
//! flush   := flush_header | record* | zero padding to the next 4 KiB boundary
//! flush_header := magic:u32 "NXFL" | crc32c:u32 | offset:u64 | records_len:u64
//!                 | durable_through:u64 | record_count:u32 | commit_ms:u64 (version 3)
//! crc32c  (flush header) covers the segment's salt (u64 LE) then header bytes 8..end
//! record  := crc32c:u32 | payload_len:u32 | group:u64 | index:u64 | term:u64 | payload
//! crc32c  (record) covers everything after the crc field: the other header fields and
//!         the payload
//! ```
//! Every flush starts on a page boundary and is zero-padded to one, so bytes that were
//! fsynced are never rewritten. The flush header states how many bytes of records
//! follow, so a zero page inside that extent is a hole, never padding.

use crate::codec;
use crate::config::{IO_ALIGN, MAX_LOG_FLUSH_BYTES, MAX_LOG_RECORD_BYTES};

/// Bytes of a record header.
pub const HEADER_BYTES: usize = 32;
/// Bytes of a flush header in the segment format this release writes (version 3).
pub const FLUSH_HEADER_BYTES: usize = 44;
/// Bytes of a flush header of a version-2 segment (no commit time).
pub const FLUSH_HEADER_BYTES_V2: usize = 36;
/// The segment format version whose flush headers carry a commit time.
pub const VERSION_WITH_COMMIT_TIME: u32 = 3;

/// Bytes of a flush header in a segment of format `version` (2 or 3).
pub fn flush_header_len(version: u32) -> usize {
    if version >= VERSION_WITH_COMMIT_TIME {
        FLUSH_HEADER_BYTES
    } else {
        FLUSH_HEADER_BYTES_V2
    }
}
/// "NXFL" read as a little-endian u32.
pub const FLUSH_MAGIC: u32 = u32::from_le_bytes(*b"NXFL");

/// Most bytes of records one flush may state: the flush limit, or one largest record.
pub const MAX_FLUSH_RECORDS_BYTES: usize =
    if MAX_LOG_FLUSH_BYTES > HEADER_BYTES + MAX_LOG_RECORD_BYTES {
        MAX_LOG_FLUSH_BYTES
    } else {
        HEADER_BYTES + MAX_LOG_RECORD_BYTES
    };

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
    /// The slice ends inside a record that claims `need` bytes in total.
    Short { need: usize },
    /// Not a valid record (bad checksum or impossible length).
    Invalid(&'static str),
}

/// The header that opens every flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushHeader {
    /// File offset of this header (a page boundary): a header copied elsewhere, or
    /// left by an earlier file at another place, does not verify.
    pub offset: u64,
    /// Bytes of records after the header.
    pub records_len: u64,
    /// Every byte of the file below this offset was fsynced before this flush was
    /// written: a later flush is the proof that an earlier one was durable.
    pub durable_through: u64,
    /// Records in the flush.
    pub record_count: u32,
    /// Wall-clock time (milliseconds since the Unix epoch) at which the flush was
    /// written, never below an earlier flush's of the same log: every record in it
    /// was made durable at or after this time, and appended before it. 0 in version-2
    /// segments. Point-in-time restore keeps the flushes with `commit_ms <= T`.
    pub commit_ms: u64,
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

/// Total encoded length of the record that starts at `buf[0]`, from its length field
/// alone (no checksum). For writers walking their own, already valid, buffer.
pub fn record_len_at(buf: &[u8]) -> Option<usize> {
    codec::read_u32_at(buf, 4).map(|len| HEADER_BYTES + len as usize)
}

/// Appends the flush header `h` of a segment with `salt` to `out`.
pub fn encode_flush_header(out: &mut Vec<u8>, salt: u64, h: &FlushHeader) {
    let start = out.len();
    codec::put_u32(out, FLUSH_MAGIC);
    codec::put_u32(out, 0);
    codec::put_u64(out, h.offset);
    codec::put_u64(out, h.records_len);
    codec::put_u64(out, h.durable_through);
    codec::put_u32(out, h.record_count);
    codec::put_u64(out, h.commit_ms);
    let crc = codec::crc32c_pair(&salt.to_le_bytes(), &out[start + 8..]);
    codec::write_u32_at(out, start + 4, crc);
}

/// Decodes a flush header of the current segment format; see
/// [`decode_flush_header_of`].
pub fn decode_flush_header(buf: &[u8], salt: u64, at: u64) -> Option<FlushHeader> {
    decode_flush_header_of(buf, salt, at, crate::log::segment::SEGMENT_VERSION)
}

/// Decodes a flush header at `buf[0]`, expected at file offset `at` of a segment with
/// `salt` and format `version`. `None` unless every check passes: magic, checksum
/// (keyed by the salt, so a client's payload cannot forge a header), stated offset
/// `== at`, a durable point that is page-aligned and not past the header, and sane
/// lengths.
pub fn decode_flush_header_of(buf: &[u8], salt: u64, at: u64, version: u32) -> Option<FlushHeader> {
    let head = buf.get(..flush_header_len(version))?;
    if codec::read_u32_at(head, 0)? != FLUSH_MAGIC {
        return None;
    }
    let crc = codec::read_u32_at(head, 4)?;
    if codec::crc32c_pair(&salt.to_le_bytes(), &head[8..]) != crc {
        return None;
    }
    let h = FlushHeader {
        offset: codec::read_u64_at(head, 8)?,
        records_len: codec::read_u64_at(head, 16)?,
        durable_through: codec::read_u64_at(head, 24)?,
        record_count: codec::read_u32_at(head, 32)?,
        commit_ms: if version >= VERSION_WITH_COMMIT_TIME {
            codec::read_u64_at(head, 36)?
        } else {
            0
        },
    };
    let sane = h.offset == at
        && h.durable_through <= at
        && h.durable_through.is_multiple_of(IO_ALIGN)
        && h.records_len >= HEADER_BYTES as u64
        && h.records_len <= MAX_FLUSH_RECORDS_BYTES as u64
        && h.record_count > 0;
    sane.then_some(h)
}

/// Where the records of a flush go wrong: position (relative to the records' start),
/// bytes the bad record claims, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRecord {
    pub at: usize,
    pub need: usize,
    pub reason: &'static str,
}

/// Checks that `body` is exactly `count` valid records. Never panics.
pub fn check_flush_records(body: &[u8], count: u32) -> Result<(), BadRecord> {
    let mut pos = 0usize;
    let mut seen = 0u32;
    while pos < body.len() {
        match parse(&body[pos..]) {
            Parsed::Record { next, .. } => {
                pos += next;
                seen += 1;
            }
            Parsed::Short { need } => {
                return Err(BadRecord {
                    at: pos,
                    need,
                    reason: "record runs past the flush",
                });
            }
            Parsed::Invalid(reason) => {
                let need = record_len_at(&body[pos..]).unwrap_or(HEADER_BYTES);
                return Err(BadRecord {
                    at: pos,
                    need,
                    reason,
                });
            }
        }
    }
    if seen != count {
        return Err(BadRecord {
            at: pos,
            need: 0,
            reason: "record count differs from the flush header",
        });
    }
    Ok(())
}

/// Parses the record that starts at `buf[0]`. Never panics, whatever the input.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
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

/// The first page boundary at or after `pos`.
pub fn page_ceil(pos: u64) -> u64 {
    pos.div_ceil(IO_ALIGN) * IO_ALIGN
}

/// Parses an in-memory segment body (its first byte at file offset `base`, a page
/// boundary) flush by flush, as recovery does up to the first damaged flush, and
/// returns how many records precede it. Used by the fuzz target and tests; never panics.
pub fn scan_all(body: &[u8], salt: u64, base: u64) -> usize {
    let mut pos = 0usize;
    let mut n = 0;
    while pos < body.len() {
        let Some(h) = decode_flush_header(&body[pos..], salt, base + pos as u64) else {
            break;
        };
        let start = pos + FLUSH_HEADER_BYTES;
        let Some(end) = start
            .checked_add(h.records_len as usize)
            .filter(|&e| e <= body.len())
        else {
            break;
        };
        if check_flush_records(&body[start..end], h.record_count).is_err() {
            break;
        }
        n += h.record_count as usize;
        pos = page_ceil(end as u64) as usize;
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
        // Zeros are not a record (the crc of an empty header is not 0).
        assert!(matches!(parse(&[0u8; 64]), Parsed::Invalid(_)));
    }

    #[test]
    fn parser_never_panics_on_random_bytes() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
        let mut valid = Vec::new();
        let mut pos = 0u64;
        for f in 0..4u64 {
            let mut recs = Vec::new();
            for i in 0..5 {
                encode(&mut recs, f, i, i, &vec![i as u8; i as usize * 10]);
            }
            let h = FlushHeader {
                offset: pos,
                records_len: recs.len() as u64,
                durable_through: 0,
                record_count: 5,
                commit_ms: f,
            };
            encode_flush_header(&mut valid, 9, &h);
            valid.extend_from_slice(&recs);
            pos = page_ceil(valid.len() as u64);
            valid.resize(pos as usize, 0);
        }
        assert_eq!(scan_all(&valid, 9, 0), 20);
        assert_eq!(scan_all(&valid, 8, 0), 0, "another salt verifies no header");
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
            let _ = scan_all(&buf, 9, 0);
        }
    }
}
