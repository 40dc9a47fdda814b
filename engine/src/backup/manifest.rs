//! The backup manifest `BACKUP`: what a backup holds, file by file, with checksums,
//! and each shard's consistent point. Text, so an operator can read it; the last line
//! is a CRC-32C of every byte before it. Byte layout in `docs/formats.md`.

use crate::codec;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// File name of the backup manifest inside a backup directory.
pub const BACKUP_MANIFEST: &str = "BACKUP";
/// First line of the format this release writes and reads.
const HEADER: &str = "nextdb-backup 1";

/// One shard's consistent point: the log cut its copy ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPoint {
    pub shard: u32,
    /// Wall-clock milliseconds when the cut was taken: every write acknowledged
    /// before it is in the backup, none sent after it.
    pub time_ms: u64,
    /// The active log segment at the cut and the length of it the backup holds.
    pub log_seq: u64,
    pub log_end: u64,
}

/// A file of the backup, by path relative to the backup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub crc32c: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupManifest {
    pub created_ms: u64,
    pub shards: Vec<ShardPoint>,
    pub files: Vec<FileEntry>,
}

impl BackupManifest {
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{HEADER}\ncreated_ms {}\nshards {}\n",
            self.created_ms,
            self.shards.len()
        );
        for p in &self.shards {
            let _ = writeln!(
                s,
                "shard {} time_ms {} log_seq {} log_end {}",
                p.shard, p.time_ms, p.log_seq, p.log_end
            );
        }
        for f in &self.files {
            let _ = writeln!(s, "file {} {} {:08x}", f.path, f.size, f.crc32c);
        }
        let crc = codec::crc32c(s.as_bytes());
        let _ = writeln!(s, "crc32c {crc:08x}");
        s
    }

    /// Parses `text` (the contents of `path`, named in errors). Refuses a bad
    /// checksum, an unknown header, malformed lines and unsafe file paths.
    pub fn decode(path: &Path, text: &[u8]) -> Result<Self> {
        let bad = |off: usize, why: String| Error::corruption(path, off as u64, why);
        let body_end = text
            .strip_suffix(b"\n")
            .and_then(|t| t.iter().rposition(|&b| b == b'\n'))
            .map(|i| i + 1)
            .ok_or_else(|| bad(0, "backup manifest has no checksum line".into()))?;
        let last = std::str::from_utf8(&text[body_end..])
            .map_err(|_| bad(body_end, "checksum line is not UTF-8".into()))?;
        let want = last
            .trim_end()
            .strip_prefix("crc32c ")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad(body_end, "last line is not `crc32c HEX`".into()))?;
        let have = codec::crc32c(&text[..body_end]);
        if have != want {
            return Err(bad(
                body_end,
                format!("backup manifest checksum {have:08x}, its last line says {want:08x}"),
            ));
        }
        let body = std::str::from_utf8(&text[..body_end])
            .map_err(|_| bad(0, "backup manifest is not UTF-8".into()))?;
        Self::parse_body(path, body)
    }

    fn parse_body(path: &Path, body: &str) -> Result<Self> {
        let mut m = BackupManifest::default();
        let mut off = 0usize;
        let mut shards_declared = None;
        for (n, line) in body.lines().enumerate() {
            let bad =
                |why: &str| Error::corruption(path, off as u64, format!("line {}: {why}", n + 1));
            let f: Vec<&str> = line.split(' ').collect();
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad("bad number"));
            if n == 0 {
                if line != HEADER {
                    return Err(bad("not a nextdb backup manifest (version 1)"));
                }
                off += line.len() + 1;
                continue;
            }
            match f.as_slice() {
                ["created_ms", v] => m.created_ms = num(v)?,
                ["shards", v] => shards_declared = Some(num(v)?),
                ["shard", s, "time_ms", t, "log_seq", q, "log_end", e] => {
                    m.shards.push(ShardPoint {
                        shard: u32::try_from(num(s)?).map_err(|_| bad("shard out of range"))?,
                        time_ms: num(t)?,
                        log_seq: num(q)?,
                        log_end: num(e)?,
                    })
                }
                ["file", p, size, crc] => {
                    if !is_safe_relative(p) {
                        return Err(bad("file path leaves the backup directory"));
                    }
                    m.files.push(FileEntry {
                        path: (*p).to_string(),
                        size: num(size)?,
                        crc32c: u32::from_str_radix(crc, 16).map_err(|_| bad("bad checksum"))?,
                    });
                }
                _ => return Err(bad("unknown line")),
            }
            off += line.len() + 1;
        }
        if shards_declared != Some(m.shards.len() as u64) {
            return Err(Error::corruption(
                path,
                0,
                "shard count differs from the shard lines",
            ));
        }
        Ok(m)
    }

    /// Files by path.
    pub fn by_path(&self) -> BTreeMap<&str, &FileEntry> {
        self.files.iter().map(|f| (f.path.as_str(), f)).collect()
    }
}

/// A relative path of plain components (no `..`, no root, no empty part).
fn is_safe_relative(p: &str) -> bool {
    !p.is_empty() && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupManifest {
        BackupManifest {
            created_ms: 17,
            shards: vec![ShardPoint {
                shard: 0,
                time_ms: 1234,
                log_seq: 3,
                log_end: 8192,
            }],
            files: vec![FileEntry {
                path: "shard-0/000004.sst".into(),
                size: 99,
                crc32c: 0xdead_beef,
            }],
        }
    }

    #[test]
    fn round_trip_and_every_flipped_byte_is_refused() {
        let m = sample();
        let text = m.encode();
        let p = Path::new("BACKUP");
        assert_eq!(BackupManifest::decode(p, text.as_bytes()).unwrap(), m);
        for i in 0..text.len() {
            let mut b = text.clone().into_bytes();
            b[i] ^= 0x01;
            assert!(
                BackupManifest::decode(p, &b).is_err(),
                "flipped byte {i} accepted"
            );
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let mut m = sample();
        m.files[0].path = "../etc/passwd".into();
        let text = m.encode();
        assert!(BackupManifest::decode(Path::new("BACKUP"), text.as_bytes()).is_err());
    }
}
