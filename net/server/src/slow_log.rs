//! The slow-operation log: a request whose latency reaches the core's threshold
//! (`nextdb_shard::live`) is logged through `tracing` (target `nextdb::slow_op`) as one
//! structured event, once its answer is written.
//!
//! Owned by the connection's core. The fast path pays one comparison per request
//! plus copying at most `SLOW_OP_KEY_BYTES` of the key into a fixed buffer (no heap
//! allocation); escaping, hashing and logging happen only for slow requests.

use nextdb_proto::Request;
use nextdb_proto::message::BatchOp;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::time::Instant;

/// Bytes of a key the slow-operation log keeps (and, redacted, hashes).
pub const SLOW_OP_KEY_BYTES: usize = 64;

/// The first bytes of a request's key (SCAN: its start; BATCH: its first op's key),
/// and the key's full length.
#[derive(Clone, Copy)]
pub struct KeyTag {
    prefix: [u8; SLOW_OP_KEY_BYTES],
    prefix_len: u8,
    full_len: u32,
}

const _: () = assert!(SLOW_OP_KEY_BYTES <= u8::MAX as usize);

impl KeyTag {
    pub const NONE: KeyTag = KeyTag {
        prefix: [0; SLOW_OP_KEY_BYTES],
        prefix_len: 0,
        full_len: 0,
    };

    pub fn of(req: &Request) -> KeyTag {
        let key: &[u8] = match req {
            Request::Scan { start, .. } => start,
            Request::Batch { ops, .. } => ops.first().map_or(&[], BatchOp::key),
            _ => req.single_key().unwrap_or(&[]),
        };
        let n = key.len().min(SLOW_OP_KEY_BYTES);
        let mut tag = KeyTag::NONE;
        tag.prefix[..n].copy_from_slice(&key[..n]);
        tag.prefix_len = n as u8;
        tag.full_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        tag
    }

    fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len as usize]
    }

    /// The kept bytes, printable: ASCII as is, anything else `\xNN`; `...` when the key
    /// was longer.
    fn escaped(&self) -> String {
        let mut s: String = self
            .prefix()
            .iter()
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect();
        if self.full_len as usize > self.prefix_len as usize {
            s.push_str("...");
        }
        s
    }

    /// A keyed hash of the kept bytes: the same key gives the same hash for the life
    /// of the process (on every core), and a dictionary of likely keys cannot be
    /// matched against logs of another run.
    fn redacted_hash(&self) -> u64 {
        static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let mut h = KEYS.get_or_init(Default::default).build_hasher();
        h.write(self.prefix());
        h.finish()
    }
}

/// A slow request whose answer is queued and not yet written. Its time splits into
/// queue (bytes read → request started: waiting in the connection's buffer, e.g. for
/// a free in-flight slot), exec (started → answer encoded) and network (encoded →
/// written); exec splits further into commit (its writes' log commits on this core:
/// append, the group commit's fsync, apply; `nextdb_shard::op_timing`) and storage
/// (the rest: reads, admission, memtable, any hop to another core, and waiting for
/// the connection to pick the answer up).
pub struct SlowOp {
    pub op: &'static str,
    pub key: KeyTag,
    pub queue_us: u64,
    pub exec_us: u64,
    pub commit_us: u64,
    /// When the answer was encoded into the connection's output buffer.
    pub answered: Instant,
}

/// Logs the slow requests whose answers were just written by core `core`.
pub fn log_written(core: usize, redact: bool, slow: &mut Vec<SlowOp>) {
    for s in slow.drain(..) {
        let network_us = s.answered.elapsed().as_micros() as u64;
        let total_us = s.queue_us + s.exec_us + network_us;
        // The commit is measured inside the execution; clocks read apart may differ
        // by a microsecond.
        let commit_us = s.commit_us.min(s.exec_us);
        let storage_us = s.exec_us - commit_us;
        // One event either way: a field whose value is None is left out.
        let key = (!redact).then(|| s.key.escaped());
        let key_hash = redact.then(|| format!("{:016x}", s.key.redacted_hash()));
        tracing::warn!(
            target: "nextdb::slow_op",
            op = s.op,
            key = key.as_deref().map(tracing::field::display),
            key_len = s.key.full_len,
            key_hash = key_hash.as_deref().map(tracing::field::display),
            total_us,
            queue_us = s.queue_us,
            exec_us = s.exec_us,
            storage_us,
            commit_us,
            network_us,
            core,
            "slow operation"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_escaped_and_truncated() {
        let mut key = b"a\"b\x00".to_vec();
        key.resize(100, b'z');
        let tag = KeyTag::of(&Request::Get { key });
        let s = tag.escaped();
        assert!(s.starts_with("a\\\"b\\x00zz"), "{s}");
        assert!(s.ends_with("z..."), "{s}");
        assert_eq!(tag.full_len, 100);
        assert_eq!(tag.prefix().len(), SLOW_OP_KEY_BYTES);
    }

    #[test]
    fn requests_without_a_key_have_an_empty_tag() {
        let tag = KeyTag::of(&Request::Stats);
        assert_eq!(tag.escaped(), "");
        assert_eq!(tag.full_len, 0);
    }
}
