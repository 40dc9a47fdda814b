//! Every limit of the native protocol, in one place. The server may lower them by
//! configuration; it never accepts more than these.

/// Protocol versions this build speaks (inclusive).
pub const MIN_VERSION: u16 = 1;
pub const MAX_VERSION: u16 = 2;
/// The first version whose HELLO answer carries the partition map and the shard
/// ports (shard-aware clients).
pub const TOPOLOGY_VERSION: u16 = 2;

/// Most shards a node reports in HELLO (and so most shard ports): a node runs one
/// shard per core.
pub const MAX_SHARDS: usize = 4096;
/// Most entries of HELLO's partition map.
pub const MAX_PARTITIONS: usize = 65_536;

/// The four bytes that open a HELLO body.
pub const MAGIC: [u8; 4] = *b"NXDB";

/// Largest frame (header after the length field, plus body) either side accepts.
pub const MAX_FRAME_BYTES: usize = 32 << 20;
/// Largest response the server builds, counted as its encoded body; a request whose
/// answer would be larger (a BATCH of many large GETs) is refused with
/// RESPONSE_TOO_LARGE. Below the frame limit by more than a header.
pub const MAX_RESPONSE_BYTES: usize = MAX_FRAME_BYTES - 64;

/// Largest key: the node's KV key limit (`nextdb_shard::config::MAX_KV_KEY_BYTES`,
/// the storage engine's 64 KiB less the shard's one-byte namespace prefix). This
/// crate depends on no runtime, so it cannot import that constant; the server
/// asserts at compile time that the two are equal, and the decoder is the one place
/// a request's key length is checked.
pub const MAX_KEY_BYTES: usize = 64 * 1024 - 1;
/// Largest value: the node's `MAX_KV_VALUE_BYTES` (asserted equal by the server).
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Most operations in one BATCH.
pub const MAX_BATCH_OPS: usize = 10_000;

/// Most entries and bytes (keys + values) one SCAN page returns.
pub const MAX_SCAN_LIMIT: u32 = 10_000;
pub const MAX_SCAN_BYTES: usize = 4 << 20;
/// Longest SCAN continuation token: a version byte and a key, with room to spare.
pub const MAX_SCAN_TOKEN_BYTES: usize = MAX_KEY_BYTES + 16;

/// Most (name, value) pairs in a CONFIG answer: far above the node's live settings.
pub const MAX_SETTINGS: usize = 256;

/// Longest string field (names, messages, SCRAM messages).
pub const MAX_STRING_BYTES: usize = 4096;

/// Longest TTL (about 100 years), so expiry arithmetic never overflows.
pub const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// PBKDF2 iterations for new SCRAM verifiers (RFC 7677 asks for at least 4096).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Fewest iterations a client accepts from a server.
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;
