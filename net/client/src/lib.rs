//! `nextdb-client`: a client for NextDB's native binary protocol v1 (`nextdb-proto`).
//!
//! Two front ends over one sans-IO core:
//! - blocking, on `std::net` ([`Client`], [`Connection`]), always built;
//! - async, on tokio ([`aio::Client`], [`aio::Connection`]), with feature `async`.
//!
//! Either runs over plain TCP or over TLS (see [TLS](#tls)).
//!
//! The core (`session`) builds the HELLO, runs the SCRAM-SHA-256 exchange, cuts
//! response frames out of the byte stream and matches them to requests by request id,
//! since a server may answer pipelined requests out of order. Both front ends share it
//! and the retry policy, so they behave the same; they only move bytes and keep time.
//!
//! A [`Client`] is `Clone + Send + Sync` and holds a bounded pool of connections,
//! opened on demand. It is shard-aware ([`Config::shard_aware`], on by default): a
//! node's HELLO answer gives its partition map and a port per core, so a single-key
//! request goes on a connection to the core that owns its key (hashed with
//! [`proto::slot_of`], the node's own function) and never hops between cores; SCAN
//! and BATCHes across cores go to any core, which gathers them. Failed requests are retried with exponential backoff and jitter
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
//!
//! # TLS
//!
//! A server started with `--tls-cert FILE --tls-key FILE` speaks TLS (rustls, ring
//! provider) from the first byte on its native port; HELLO, AUTH and the requests then
//! run inside the TLS stream. Set [`Config::tls`] to a [`TlsConfig`] holding the PEM of
//! the certificates to trust: the CA that signed the server certificates, or a
//! (self-signed) server certificate itself. The server's certificate is always
//! verified, against those certificates only, for [`TlsConfig::server_name`] or by
//! default the host part of the address (a DNS name or an IP address). TLS failures
//! (untrusted certificate, wrong name, unusable PEM) are [`Error::Tls`], not retried.
//! The URL form is `nextdbs://…?ca_file=PATH` (optionally `&server_name=NAME`).
//!
//! ```no_run
//! use nextdb_client::{Client, Config, TlsConfig};
//!
//! # fn main() -> Result<(), nextdb_client::Error> {
//! // The server's certificate (or its CA's), in PEM.
//! let tls = TlsConfig::from_ca_file("/etc/nextdb/server.crt")?;
//! let cfg = Config::new("db1.internal:7700")
//!     .credentials("alice", "secret")
//!     .tls(tls);
//! let client = Client::connect(cfg)?;
//! client.put(b"k", b"v")?;
//!
//! // The same from PEM bytes, verified against a name other than the address's host.
//! let pem = std::fs::read("/etc/nextdb/ca.pem")?;
//! let cfg = Config::new("10.0.0.5:7700").tls(TlsConfig::from_ca_pem(pem).server_name("db1.internal"));
//! let client = Client::connect(cfg)?;
//!
//! // Or as a URL.
//! let client = Client::connect(Config::from_url(
//!     "nextdbs://alice:secret@db1.internal:7700?ca_file=/etc/nextdb/ca.pem",
//! )?)?;
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
mod routes;
mod session;
mod tls;

pub use blocking::{Client, Connection};
pub use config::{Config, DEFAULT_PORT};
pub use error::{Error, Result};
pub use ops::{CasResult, ScanPage};
pub use tls::TlsConfig;

/// The protocol crate, for callers building [`Request`]s by hand.
pub use nextdb_proto as proto;
pub use nextdb_proto::{BatchOp, BatchResult, ErrorCode, HelloOk, Request, Response, TtlState};
