//! `nextdb-client`: a client for NextDB's native binary protocol v1 (`nextdb-proto`).
//!
//! Two front ends over one sans-IO core:
//! - blocking, on `std::net` ([`Client`], [`Connection`]), always built;
//! - async, on tokio ([`aio::Client`], [`aio::Connection`]), with feature `async`.
//!
//! The core (`session`) builds the HELLO, runs the SCRAM-SHA-256 exchange, cuts
//! response frames out of the byte stream and matches them to requests by request id,
//! since a server may answer pipelined requests out of order. Both front ends share it
//! and the retry policy, so they behave the same; they only move bytes and keep time.
//!
//! A [`Client`] is `Clone + Send + Sync` and holds a bounded pool of connections,
//! opened on demand. Failed requests are retried with exponential backoff and jitter
//! when that is safe: always after a retryable error response (BUSY and friends: the
//! server did not apply the request), and after a lost connection only for idempotent
//! requests (not INCR or CAS, which may already have applied).
//!
//! ```no_run
//! use std::time::Duration;
//! use nextdb_client::{Client, Config};
//!
//! # fn main() -> Result<(), nextdb_client::Error> {
//! let client = Client::connect(Config::from_url("nextdb://alice:secret@127.0.0.1:7700")?)?;
//! client.put(b"greeting", b"hello")?;
//! assert_eq!(client.get(b"greeting")?, Some(b"hello".to_vec()));
//! client.put_with_ttl(b"session:42", b"token", Duration::from_secs(60))?;
//! let n = client.incr(b"visits", 1)?;
//! for (key, value) in client.scan_all(b"session:", Some(b"session;"), 500)? {
//!     println!("{key:?} = {value:?} ({n} visits)");
//! }
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "async")]
pub mod aio;
mod blocking;
mod config;
mod error;
mod ops;
mod retry;
mod session;

pub use blocking::{Client, Connection};
pub use config::{Config, DEFAULT_PORT};
pub use error::{Error, Result};
pub use ops::{CasResult, ScanPage};

/// The protocol crate, for callers building [`Request`]s by hand.
pub use nextdb_proto as proto;
pub use nextdb_proto::{BatchOp, BatchResult, ErrorCode, HelloOk, Request, Response, TtlState};
