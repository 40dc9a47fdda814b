//! Version edits: the records of the manifest.
//!
//! An edit is a list of tagged fields (varint tag, then the field). Unknown tags are an
//! error, so an older binary never silently ignores a newer manifest.

use crate::codec::{self, DecodeError, Decoder};

/// Metadata of one SSTable, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub number: u64,
    pub size: u64,
    /// Smallest and largest internal keys in the file.
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub entries: u64,
    pub deletions: u64,
    pub min_ts: u64,
    pub max_ts: u64,
}

/// A change to the set of live files and the engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// Next file number to hand out (files, manifests).
    pub next_file_number: Option<u64>,
    /// Largest timestamp ever assigned.
    pub last_ts: Option<u64>,
    /// Per log group: every record with an index at or below this is in SSTables.
    pub applied: Vec<(u64, u64)>,
    /// Files removed: (level, file number).
    pub deleted: Vec<(u32, u64)>,
    /// Files added: (level, metadata).
    pub added: Vec<(u32, FileMeta)>,
}

const TAG_NEXT_FILE: u64 = 1;
const TAG_LAST_TS: u64 = 2;
const TAG_APPLIED: u64 = 3;
const TAG_DELETED: u64 = 4;
const TAG_ADDED: u64 = 5;

impl VersionEdit {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.added.len() * 64);
        if let Some(n) = self.next_file_number {
            codec::put_varint(&mut b, TAG_NEXT_FILE);
            codec::put_varint(&mut b, n);
        }
        if let Some(t) = self.last_ts {
            codec::put_varint(&mut b, TAG_LAST_TS);
            codec::put_u64(&mut b, t);
        }
        for &(g, i) in &self.applied {
            codec::put_varint(&mut b, TAG_APPLIED);
            codec::put_varint(&mut b, g);
            codec::put_varint(&mut b, i);
        }
        for &(l, n) in &self.deleted {
            codec::put_varint(&mut b, TAG_DELETED);
            codec::put_varint(&mut b, u64::from(l));
            codec::put_varint(&mut b, n);
        }
        for (l, f) in &self.added {
            codec::put_varint(&mut b, TAG_ADDED);
            codec::put_varint(&mut b, u64::from(*l));
            codec::put_varint(&mut b, f.number);
            codec::put_varint(&mut b, f.size);
            codec::put_bytes(&mut b, &f.smallest);
            codec::put_bytes(&mut b, &f.largest);
            codec::put_varint(&mut b, f.entries);
            codec::put_varint(&mut b, f.deletions);
            codec::put_u64(&mut b, f.min_ts);
            codec::put_u64(&mut b, f.max_ts);
        }
        b
    }

    pub fn decode(buf: &[u8]) -> Result<VersionEdit, DecodeError> {
        let mut d = Decoder::new(buf);
        let mut e = VersionEdit::default();
        let level = |d: &mut Decoder<'_>| -> Result<u32, DecodeError> {
            let l = d.varint()?;
            if l >= crate::config::NUM_LEVELS as u64 {
                return Err(DecodeError::BadVarint);
            }
            Ok(l as u32)
        };
        while !d.is_empty() {
            match d.varint()? {
                TAG_NEXT_FILE => e.next_file_number = Some(d.varint()?),
                TAG_LAST_TS => e.last_ts = Some(d.u64()?),
                TAG_APPLIED => {
                    let g = d.varint()?;
                    let i = d.varint()?;
                    e.applied.push((g, i));
                }
                TAG_DELETED => {
                    let l = level(&mut d)?;
                    e.deleted.push((l, d.varint()?));
                }
                TAG_ADDED => {
                    let l = level(&mut d)?;
                    let f = FileMeta {
                        number: d.varint()?,
                        size: d.varint()?,
                        smallest: d.bytes()?.to_vec(),
                        largest: d.bytes()?.to_vec(),
                        entries: d.varint()?,
                        deletions: d.varint()?,
                        min_ts: d.u64()?,
                        max_ts: d.u64()?,
                    };
                    e.added.push((l, f));
                }
                _ => return Err(DecodeError::BadVarint),
            }
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let e = VersionEdit {
            next_file_number: Some(9),
            last_ts: Some(1234),
            applied: vec![(0, 77), (3, 5)],
            deleted: vec![(0, 4), (1, 6)],
            added: vec![(
                1,
                FileMeta {
                    number: 8,
                    size: 4096,
                    smallest: b"a12345678".to_vec(),
                    largest: b"z12345678".to_vec(),
                    entries: 10,
                    deletions: 1,
                    min_ts: 3,
                    max_ts: 90,
                },
            )],
        };
        assert_eq!(VersionEdit::decode(&e.encode()).unwrap(), e);
        let enc = e.encode();
        for cut in 0..enc.len() {
            // Every strict prefix either decodes to something else or errors; never panics.
            let _ = VersionEdit::decode(&enc[..cut]);
        }
        assert!(VersionEdit::decode(&[99]).is_err());
    }
}
