//! Requests and responses of the native protocol and their bodies (version 2 differs
//! from version 1 only in the HELLO answer, which it extends at the end). `docs/protocol.md` gives the
//! same layouts in tables; keep the two in step.

use crate::error::{ErrorCode, ProtoError};
use crate::frame::{self, STATUS_ERROR, STATUS_OK};
use crate::limits::{
    MAGIC, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_PARTITIONS, MAX_SCAN_LIMIT, MAX_SCAN_TOKEN_BYTES,
    MAX_SETTINGS, MAX_SHARDS, MAX_STRING_BYTES, MAX_TTL_MS, MAX_VALUE_BYTES, TOPOLOGY_VERSION,
};
use crate::routing::SlotRange;
use crate::wire::{Reader, Writer};

/// Opcodes (byte 4 of a frame).
pub mod op {
    pub const HELLO: u8 = 0x01;
    pub const AUTH: u8 = 0x02;
    pub const PING: u8 = 0x10;
    pub const STATS: u8 = 0x11;
    pub const BACKUP: u8 = 0x12;
    pub const CONFIG: u8 = 0x13;
    pub const GET: u8 = 0x20;
    pub const PUT: u8 = 0x21;
    pub const DELETE: u8 = 0x22;
    pub const SCAN: u8 = 0x23;
    pub const BATCH: u8 = 0x24;
    pub const CAS: u8 = 0x25;
    pub const INCR: u8 = 0x26;
    pub const EXPIRE: u8 = 0x27;
    pub const TTL: u8 = 0x28;
}

/// Flags of a BATCH request.
pub const BATCH_FLAG_ATOMIC: u8 = 0x01;

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub min_version: u16,
    pub max_version: u16,
    pub client_name: String,
    /// `SCRAM-SHA-256`, or `NONE` for a server started with `--insecure`.
    pub mechanism: String,
    /// SCRAM client-first-message; empty for `NONE`.
    pub auth_data: Vec<u8>,
}

/// The server's answer to HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloOk {
    pub version: u16,
    pub server_name: String,
    /// The shard (core) serving this connection, the node's shard count and slot count.
    pub shard: u16,
    pub shards: u16,
    pub slots: u32,
    /// True when no AUTH step follows (mechanism `NONE` on an insecure server).
    pub authenticated: bool,
    /// SCRAM server-first-message; empty when authenticated.
    pub auth_data: Vec<u8>,
    /// Version 2 on (empty in version 1): the partition map, slot ranges in order.
    pub partitions: Vec<SlotRange>,
    /// Version 2 on (empty in version 1): the port of each shard's own listener,
    /// indexed by shard; 0 where a shard has none. A connection to shard `i`'s port on
    /// the same host is served by core `i`, so no request on it hops cores.
    pub shard_ports: Vec<u16>,
}

/// One operation of a BATCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Delete {
        key: Vec<u8>,
    },
}

impl BatchOp {
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Get { key } | BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        }
    }
}

/// The result of one BATCH operation, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResult {
    /// A GET's value (None: absent).
    Value(Option<Vec<u8>>),
    /// A PUT or DELETE applied.
    Done,
}

/// What a CONFIG request asks (`nextdb admin config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRequest {
    /// Every live setting (`name` None) or one.
    Get { name: Option<String> },
    /// Set `name` to `value` (text, parsed by the server) on every core.
    Set { name: String, value: String },
}

/// Kind byte of a CONFIG request body.
const CONFIG_GET: u8 = 0;
const CONFIG_SET: u8 = 1;

/// A key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlState {
    Missing,
    Persistent,
    ExpiresIn(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Hello(Hello),
    Auth {
        data: Vec<u8>,
    },
    Ping {
        payload: Vec<u8>,
    },
    Stats,
    /// Back the node up into directory `to` (an absolute path on the server), copying
    /// only files not already in the backup `incremental_from` (empty: a full backup).
    Backup {
        to: String,
        incremental_from: String,
    },
    /// Read or change the node's live settings.
    Config(ConfigRequest),
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Keys in `[start, end)` in key order; `token` resumes after a previous page.
    Scan {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
        token: Vec<u8>,
    },
    Batch {
        atomic: bool,
        ops: Vec<BatchOp>,
    },
    /// Sets `key` to `new` (None: deletes it) if its value equals `expected` (None:
    /// absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        ttl_ms: Option<u64>,
    },
    Incr {
        key: Vec<u8>,
        delta: i64,
    },
    /// Sets a key's TTL; None removes it.
    Expire {
        key: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Ttl {
        key: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    HelloOk(HelloOk),
    AuthOk {
        data: Vec<u8>,
    },
    Pong {
        payload: Vec<u8>,
    },
    Stats {
        json: String,
    },
    /// BACKUP: a JSON summary (each shard's point, files, bytes copied).
    Backup {
        json: String,
    },
    /// CONFIG: the settings asked for (all, or the one named), as (name, value) text
    /// pairs; after a set, their values once every core applied it.
    Config {
        settings: Vec<(String, String)>,
    },
    /// GET.
    Value(Option<Vec<u8>>),
    /// PUT, DELETE.
    Done,
    Scan {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        /// Empty when the range is exhausted.
        token: Vec<u8>,
    },
    Batch(Vec<BatchResult>),
    Cas {
        swapped: bool,
        current: Option<Vec<u8>>,
    },
    /// INCR's new value.
    Int(i64),
    /// EXPIRE: whether the key existed.
    Found(bool),
    Ttl(TtlState),
    Error {
        code: u16,
        message: String,
    },
}

fn ttl_field(ttl: Option<u64>) -> u64 {
    ttl.unwrap_or(0)
}

fn read_ttl(r: &mut Reader<'_>) -> Result<Option<u64>, ProtoError> {
    let t = r.u64("ttl_ms")?;
    if t > MAX_TTL_MS {
        return Err(ProtoError::BadValue {
            what: "ttl_ms",
            value: t,
        });
    }
    Ok((t != 0).then_some(t))
}

fn read_bool(r: &mut Reader<'_>, what: &'static str) -> Result<bool, ProtoError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(ProtoError::BadValue {
            what,
            value: v as u64,
        }),
    }
}

fn write_opt(w: &mut Writer<'_>, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            w.u8(1);
            w.bytes(v);
        }
        None => w.u8(0),
    }
}

fn read_opt(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
) -> Result<Option<Vec<u8>>, ProtoError> {
    Ok(if read_bool(r, what)? {
        Some(r.bytes(what, max)?.to_vec())
    } else {
        None
    })
}

fn key(r: &mut Reader<'_>) -> Result<Vec<u8>, ProtoError> {
    Ok(r.bytes("key", MAX_KEY_BYTES)?.to_vec())
}

fn value(r: &mut Reader<'_>) -> Result<Vec<u8>, ProtoError> {
    Ok(r.bytes("value", MAX_VALUE_BYTES)?.to_vec())
}

impl Request {
    /// The key of a single-key request (GET, PUT, DELETE, CAS, INCR, EXPIRE, TTL);
    /// None for every other request.
    pub fn single_key(&self) -> Option<&[u8]> {
        match self {
            Request::Get { key }
            | Request::Put { key, .. }
            | Request::Delete { key }
            | Request::Cas { key, .. }
            | Request::Incr { key, .. }
            | Request::Expire { key, .. }
            | Request::Ttl { key } => Some(key),
            _ => None,
        }
    }

    pub fn opcode(&self) -> u8 {
        match self {
            Request::Hello(_) => op::HELLO,
            Request::Auth { .. } => op::AUTH,
            Request::Ping { .. } => op::PING,
            Request::Stats => op::STATS,
            Request::Backup { .. } => op::BACKUP,
            Request::Config(_) => op::CONFIG,
            Request::Get { .. } => op::GET,
            Request::Put { .. } => op::PUT,
            Request::Delete { .. } => op::DELETE,
            Request::Scan { .. } => op::SCAN,
            Request::Batch { .. } => op::BATCH,
            Request::Cas { .. } => op::CAS,
            Request::Incr { .. } => op::INCR,
            Request::Expire { .. } => op::EXPIRE,
            Request::Ttl { .. } => op::TTL,
        }
    }

    /// Whether sending the request twice has the same effect as once (safe to retry
    /// after a lost connection).
    pub fn is_idempotent(&self) -> bool {
        !matches!(
            self,
            Request::Incr { .. }
                | Request::Cas { .. }
                | Request::Hello(_)
                | Request::Auth { .. }
                | Request::Backup { .. }
        )
    }

    /// Checks the field limits that [`Request::decode`] enforces, so a sender can
    /// refuse a request before the server would. Keep the two in step.
    pub fn check_limits(&self) -> Result<(), ProtoError> {
        match self {
            Request::Hello(h) => {
                check_len("client_name", h.client_name.as_bytes(), MAX_STRING_BYTES)?;
                check_len("mechanism", h.mechanism.as_bytes(), MAX_STRING_BYTES)?;
                check_len("auth_data", &h.auth_data, MAX_STRING_BYTES)
            }
            Request::Auth { data } => check_len("auth_data", data, MAX_STRING_BYTES),
            Request::Ping { payload } => check_len("payload", payload, MAX_STRING_BYTES),
            Request::Stats => Ok(()),
            Request::Backup {
                to,
                incremental_from,
            } => {
                check_len("to", to.as_bytes(), MAX_STRING_BYTES)?;
                check_len(
                    "incremental_from",
                    incremental_from.as_bytes(),
                    MAX_STRING_BYTES,
                )
            }
            Request::Config(ConfigRequest::Get { name }) => check_len(
                "name",
                name.as_deref().unwrap_or_default().as_bytes(),
                MAX_STRING_BYTES,
            ),
            Request::Config(ConfigRequest::Set { name, value }) => {
                check_len("name", name.as_bytes(), MAX_STRING_BYTES)?;
                check_len("value", value.as_bytes(), MAX_STRING_BYTES)
            }
            Request::Get { key: k }
            | Request::Delete { key: k }
            | Request::Ttl { key: k }
            | Request::Incr { key: k, .. } => check_key(k),
            Request::Put { key, value, ttl_ms } => check_put(key, value, *ttl_ms),
            Request::Expire { key, ttl_ms } => {
                check_key(key)?;
                check_ttl(*ttl_ms)
            }
            Request::Scan {
                start,
                end,
                limit,
                token,
            } => check_scan(start, end.as_deref(), *limit, token),
            Request::Batch { ops, .. } => check_batch(ops),
            Request::Cas {
                key,
                expected,
                new,
                ttl_ms,
            } => {
                check_key(key)?;
                expected.as_deref().map_or(Ok(()), check_value)?;
                new.as_deref().map_or(Ok(()), check_value)?;
                check_ttl(*ttl_ms)
            }
        }
    }

    /// Appends the whole frame (length field included) to `out`.
    pub fn encode(&self, request_id: u32, out: &mut Vec<u8>) {
        let flags = match self {
            Request::Batch { atomic: true, .. } => BATCH_FLAG_ATOMIC,
            _ => 0,
        };
        let start = frame::begin_frame(out, self.opcode(), flags, request_id);
        let mut w = Writer::new(out);
        match self {
            Request::Hello(h) => {
                w.buf.extend_from_slice(&MAGIC);
                w.u16(h.min_version);
                w.u16(h.max_version);
                w.str(&h.client_name);
                w.str(&h.mechanism);
                w.bytes(&h.auth_data);
            }
            Request::Auth { data } => w.bytes(data),
            Request::Ping { payload } => w.bytes(payload),
            Request::Stats => {}
            Request::Backup {
                to,
                incremental_from,
            } => {
                w.str(to);
                w.str(incremental_from);
            }
            Request::Config(c) => encode_config(&mut w, c),
            Request::Get { key } | Request::Delete { key } | Request::Ttl { key } => w.bytes(key),
            Request::Put { key, value, ttl_ms } => {
                w.bytes(key);
                w.bytes(value);
                w.u64(ttl_field(*ttl_ms));
            }
            Request::Scan {
                start,
                end,
                limit,
                token,
            } => {
                w.bytes(start);
                write_opt(&mut w, end.as_deref());
                w.u32(*limit);
                w.bytes(token);
            }
            Request::Batch { ops, .. } => {
                w.u32(ops.len() as u32);
                for o in ops {
                    match o {
                        BatchOp::Get { key } => {
                            w.u8(op::GET);
                            w.bytes(key);
                        }
                        BatchOp::Put { key, value, ttl_ms } => {
                            w.u8(op::PUT);
                            w.bytes(key);
                            w.bytes(value);
                            w.u64(ttl_field(*ttl_ms));
                        }
                        BatchOp::Delete { key } => {
                            w.u8(op::DELETE);
                            w.bytes(key);
                        }
                    }
                }
            }
            Request::Cas {
                key,
                expected,
                new,
                ttl_ms,
            } => {
                w.bytes(key);
                write_opt(&mut w, expected.as_deref());
                write_opt(&mut w, new.as_deref());
                w.u64(ttl_field(*ttl_ms));
            }
            Request::Incr { key, delta } => {
                w.bytes(key);
                w.i64(*delta);
            }
            Request::Expire { key, ttl_ms } => {
                w.bytes(key);
                w.u64(ttl_field(*ttl_ms));
            }
        }
        frame::end_frame(out, start);
    }

    /// Decodes a request body. Unknown opcodes are `ProtoError::UnknownOp`.
    pub fn decode(opcode: u8, flags: u8, body: &[u8]) -> Result<Request, ProtoError> {
        let mut r = Reader::new(body);
        let req = match opcode {
            op::HELLO => Request::Hello(decode_hello(&mut r)?),
            op::AUTH => Request::Auth {
                data: r.bytes("auth_data", MAX_STRING_BYTES)?.to_vec(),
            },
            op::PING => Request::Ping {
                payload: r.bytes("payload", MAX_STRING_BYTES)?.to_vec(),
            },
            op::STATS => Request::Stats,
            op::BACKUP => Request::Backup {
                to: r.str("to")?.to_owned(),
                incremental_from: r.str("incremental_from")?.to_owned(),
            },
            op::CONFIG => Request::Config(decode_config(&mut r)?),
            op::GET => Request::Get { key: key(&mut r)? },
            op::DELETE => Request::Delete { key: key(&mut r)? },
            op::TTL => Request::Ttl { key: key(&mut r)? },
            op::PUT => Request::Put {
                key: key(&mut r)?,
                value: value(&mut r)?,
                ttl_ms: read_ttl(&mut r)?,
            },
            op::SCAN => decode_scan(&mut r)?,
            op::BATCH => Request::Batch {
                atomic: flags & BATCH_FLAG_ATOMIC != 0,
                ops: decode_batch_ops(&mut r)?,
            },
            op::CAS => Request::Cas {
                key: key(&mut r)?,
                expected: read_opt(&mut r, "expected", MAX_VALUE_BYTES)?,
                new: read_opt(&mut r, "new", MAX_VALUE_BYTES)?,
                ttl_ms: read_ttl(&mut r)?,
            },
            op::INCR => Request::Incr {
                key: key(&mut r)?,
                delta: r.i64("delta")?,
            },
            op::EXPIRE => Request::Expire {
                key: key(&mut r)?,
                ttl_ms: read_ttl(&mut r)?,
            },
            other => return Err(ProtoError::UnknownOp(other)),
        };
        r.finish()?;
        Ok(req)
    }
}

fn decode_hello(r: &mut Reader<'_>) -> Result<Hello, ProtoError> {
    let magic = r.u32("magic")?;
    if magic.to_le_bytes() != MAGIC {
        return Err(ProtoError::BadMagic);
    }
    Ok(Hello {
        min_version: r.u16("min_version")?,
        max_version: r.u16("max_version")?,
        client_name: r.str("client_name")?.to_owned(),
        mechanism: r.str("mechanism")?.to_owned(),
        auth_data: r.bytes("auth_data", MAX_STRING_BYTES)?.to_vec(),
    })
}

/// CONFIG request body: `kind u8` (0 get, 1 set), `name str` (a get's empty name:
/// every setting), and for a set `value str`.
fn encode_config(w: &mut Writer<'_>, c: &ConfigRequest) {
    match c {
        ConfigRequest::Get { name } => {
            w.u8(CONFIG_GET);
            w.str(name.as_deref().unwrap_or_default());
        }
        ConfigRequest::Set { name, value } => {
            w.u8(CONFIG_SET);
            w.str(name);
            w.str(value);
        }
    }
}

fn decode_config(r: &mut Reader<'_>) -> Result<ConfigRequest, ProtoError> {
    Ok(match r.u8("config kind")? {
        CONFIG_GET => {
            let name = r.str("name")?;
            ConfigRequest::Get {
                name: (!name.is_empty()).then(|| name.to_owned()),
            }
        }
        CONFIG_SET => ConfigRequest::Set {
            name: r.str("name")?.to_owned(),
            value: r.str("value")?.to_owned(),
        },
        k => {
            return Err(ProtoError::BadValue {
                what: "config kind",
                value: k as u64,
            });
        }
    })
}

/// CONFIG response body: `count u16`, then `count × (name str, value str)`.
fn encode_settings(w: &mut Writer<'_>, settings: &[(String, String)]) {
    assert!(
        settings.len() <= MAX_SETTINGS,
        "a CONFIG answer within MAX_SETTINGS"
    );
    w.u16(settings.len() as u16);
    for (name, value) in settings {
        w.str(name);
        w.str(value);
    }
}

fn decode_settings(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, ProtoError> {
    let n = r.u16("setting count")? as usize;
    check_count("settings", n, MAX_SETTINGS)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("setting name")?.to_owned();
        out.push((name, r.str("setting value")?.to_owned()));
    }
    Ok(out)
}

fn decode_scan(r: &mut Reader<'_>) -> Result<Request, ProtoError> {
    let start = key(r)?;
    let end = read_opt(r, "end", MAX_KEY_BYTES)?;
    let limit = r.u32("limit")?;
    check_scan_limit(limit)?;
    let token = r.bytes("token", MAX_SCAN_TOKEN_BYTES)?.to_vec();
    Ok(Request::Scan {
        start,
        end,
        limit,
        token,
    })
}

fn decode_batch_ops(r: &mut Reader<'_>) -> Result<Vec<BatchOp>, ProtoError> {
    let n = r.u32("op count")? as usize;
    check_batch_len(n)?;
    // Capacity from the bytes present, not the claimed count.
    let mut ops = Vec::with_capacity(n.min(r.remaining() / 5));
    for _ in 0..n {
        ops.push(match r.u8("batch op")? {
            op::GET => BatchOp::Get { key: key(r)? },
            op::PUT => BatchOp::Put {
                key: key(r)?,
                value: value(r)?,
                ttl_ms: read_ttl(r)?,
            },
            op::DELETE => BatchOp::Delete { key: key(r)? },
            k => {
                return Err(ProtoError::BadValue {
                    what: "batch op",
                    value: k as u64,
                });
            }
        });
    }
    Ok(ops)
}

fn check_len(what: &'static str, v: &[u8], max: usize) -> Result<(), ProtoError> {
    check_count(what, v.len(), max)
}

/// `TooLong` when a length or an element count `n` passes `max`.
fn check_count(what: &'static str, n: usize, max: usize) -> Result<(), ProtoError> {
    if n > max {
        return Err(ProtoError::TooLong { what, len: n, max });
    }
    Ok(())
}

fn check_key(k: &[u8]) -> Result<(), ProtoError> {
    check_len("key", k, MAX_KEY_BYTES)
}

fn check_value(v: &[u8]) -> Result<(), ProtoError> {
    check_len("value", v, MAX_VALUE_BYTES)
}

fn check_ttl(ttl_ms: Option<u64>) -> Result<(), ProtoError> {
    match ttl_ms {
        Some(ms) if ms > MAX_TTL_MS => Err(ProtoError::BadValue {
            what: "ttl_ms",
            value: ms,
        }),
        _ => Ok(()),
    }
}

fn check_put(key: &[u8], value: &[u8], ttl_ms: Option<u64>) -> Result<(), ProtoError> {
    check_key(key)?;
    check_value(value)?;
    check_ttl(ttl_ms)
}

fn check_scan_limit(limit: u32) -> Result<(), ProtoError> {
    if limit == 0 || limit > MAX_SCAN_LIMIT {
        return Err(ProtoError::BadValue {
            what: "limit",
            value: limit as u64,
        });
    }
    Ok(())
}

fn check_scan(
    start: &[u8],
    end: Option<&[u8]>,
    limit: u32,
    token: &[u8],
) -> Result<(), ProtoError> {
    check_key(start)?;
    end.map_or(Ok(()), check_key)?;
    check_scan_limit(limit)?;
    check_len("token", token, MAX_SCAN_TOKEN_BYTES)
}

fn check_batch_len(n: usize) -> Result<(), ProtoError> {
    check_count("batch", n, MAX_BATCH_OPS)
}

fn check_batch(ops: &[BatchOp]) -> Result<(), ProtoError> {
    check_batch_len(ops.len())?;
    ops.iter().try_for_each(|o| match o {
        BatchOp::Get { key } | BatchOp::Delete { key } => check_key(key),
        BatchOp::Put { key, value, ttl_ms } => check_put(key, value, *ttl_ms),
    })
}

impl Response {
    /// Builds an error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        let mut message = message.into();
        if message.len() > MAX_STRING_BYTES {
            let mut cut = MAX_STRING_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Response::Error {
            code: code as u16,
            message,
        }
    }

    /// Appends the whole frame answering request `request_id` (opcode `opcode`).
    pub fn encode(&self, opcode: u8, request_id: u32, out: &mut Vec<u8>) {
        let status = if matches!(self, Response::Error { .. }) {
            STATUS_ERROR
        } else {
            STATUS_OK
        };
        let start = frame::begin_frame(out, opcode, status, request_id);
        let mut w = Writer::new(out);
        match self {
            Response::HelloOk(h) => {
                w.u16(h.version);
                w.str(&h.server_name);
                w.u16(h.shard);
                w.u16(h.shards);
                w.u32(h.slots);
                w.u8(h.authenticated as u8);
                w.bytes(&h.auth_data);
                if h.version >= TOPOLOGY_VERSION {
                    write_topology(&mut w, h);
                }
            }
            Response::AuthOk { data } => w.bytes(data),
            Response::Pong { payload } => w.bytes(payload),
            Response::Stats { json } | Response::Backup { json } => {
                // STATS may exceed MAX_STRING_BYTES: a plain bytes field.
                w.bytes(json.as_bytes());
            }
            Response::Config { settings } => encode_settings(&mut w, settings),
            Response::Value(v) => write_opt(&mut w, v.as_deref()),
            Response::Done => {}
            Response::Scan { entries, token } => {
                w.u32(entries.len() as u32);
                for (k, v) in entries {
                    w.bytes(k);
                    w.bytes(v);
                }
                w.bytes(token);
            }
            Response::Batch(results) => {
                w.u32(results.len() as u32);
                for res in results {
                    match res {
                        BatchResult::Value(v) => {
                            w.u8(op::GET);
                            write_opt(&mut w, v.as_deref());
                        }
                        BatchResult::Done => w.u8(op::PUT),
                    }
                }
            }
            Response::Cas { swapped, current } => {
                w.u8(*swapped as u8);
                write_opt(&mut w, current.as_deref());
            }
            Response::Int(v) => w.i64(*v),
            Response::Found(f) => w.u8(*f as u8),
            Response::Ttl(t) => match t {
                TtlState::Missing => w.u8(0),
                TtlState::Persistent => w.u8(1),
                TtlState::ExpiresIn(ms) => {
                    w.u8(2);
                    w.u64(*ms);
                }
            },
            Response::Error { code, message } => {
                w.u16(*code);
                w.str(message);
            }
        }
        frame::end_frame(out, start);
    }

    /// Decodes a response body, given the opcode and status of its frame.
    pub fn decode(opcode: u8, status: u8, body: &[u8]) -> Result<Response, ProtoError> {
        let mut r = Reader::new(body);
        if status == STATUS_ERROR {
            let code = r.u16("error code")?;
            let message = r.str("error message")?.to_owned();
            r.finish()?;
            return Ok(Response::Error { code, message });
        }
        if status != STATUS_OK {
            return Err(ProtoError::BadValue {
                what: "status",
                value: status as u64,
            });
        }
        let resp = match opcode {
            op::HELLO => Response::HelloOk(decode_hello_ok(&mut r)?),
            op::AUTH => Response::AuthOk {
                data: r.bytes("auth_data", MAX_STRING_BYTES)?.to_vec(),
            },
            op::PING => Response::Pong {
                payload: r.bytes("payload", MAX_STRING_BYTES)?.to_vec(),
            },
            op::STATS => {
                let b = r.bytes("stats", usize::MAX)?;
                Response::Stats {
                    json: String::from_utf8(b.to_vec())
                        .map_err(|_| ProtoError::BadUtf8("stats"))?,
                }
            }
            op::BACKUP => {
                let b = r.bytes("backup", usize::MAX)?;
                Response::Backup {
                    json: String::from_utf8(b.to_vec())
                        .map_err(|_| ProtoError::BadUtf8("backup"))?,
                }
            }
            op::CONFIG => Response::Config {
                settings: decode_settings(&mut r)?,
            },
            op::GET => Response::Value(read_opt(&mut r, "value", MAX_VALUE_BYTES)?),
            op::PUT | op::DELETE => Response::Done,
            op::SCAN => {
                let n = r.u32("entry count")? as usize;
                let mut entries = Vec::with_capacity(n.min(r.remaining() / 8));
                for _ in 0..n {
                    let k = r.bytes("key", MAX_KEY_BYTES)?.to_vec();
                    let v = r.bytes("value", MAX_VALUE_BYTES)?.to_vec();
                    entries.push((k, v));
                }
                let token = r.bytes("token", MAX_SCAN_TOKEN_BYTES)?.to_vec();
                Response::Scan { entries, token }
            }
            op::BATCH => {
                let n = r.u32("result count")? as usize;
                let mut out = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    match r.u8("result kind")? {
                        op::GET => out.push(BatchResult::Value(read_opt(
                            &mut r,
                            "value",
                            MAX_VALUE_BYTES,
                        )?)),
                        op::PUT => out.push(BatchResult::Done),
                        k => {
                            return Err(ProtoError::BadValue {
                                what: "result kind",
                                value: k as u64,
                            });
                        }
                    }
                }
                Response::Batch(out)
            }
            op::CAS => Response::Cas {
                swapped: read_bool(&mut r, "swapped")?,
                current: read_opt(&mut r, "current", MAX_VALUE_BYTES)?,
            },
            op::INCR => Response::Int(r.i64("value")?),
            op::EXPIRE => Response::Found(read_bool(&mut r, "found")?),
            op::TTL => Response::Ttl(match r.u8("ttl state")? {
                0 => TtlState::Missing,
                1 => TtlState::Persistent,
                2 => TtlState::ExpiresIn(r.u64("ttl_ms")?),
                v => {
                    return Err(ProtoError::BadValue {
                        what: "ttl state",
                        value: v as u64,
                    });
                }
            }),
            other => return Err(ProtoError::UnknownOp(other)),
        };
        r.finish()?;
        Ok(resp)
    }
}

/// HELLO answer, version 2 on: `partitions: u32 count, count × (start u32, end u32,
/// shard u16)`, then `shard_ports: u16 count, count × u16`.
fn write_topology(w: &mut Writer<'_>, h: &HelloOk) {
    assert!(
        h.partitions.len() <= MAX_PARTITIONS && h.shard_ports.len() <= MAX_SHARDS,
        "a HELLO answer within the protocol's limits"
    );
    w.u32(h.partitions.len() as u32);
    for p in &h.partitions {
        w.u32(p.start);
        w.u32(p.end);
        w.u16(p.shard);
    }
    w.u16(h.shard_ports.len() as u16);
    for &port in &h.shard_ports {
        w.u16(port);
    }
}

fn decode_hello_ok(r: &mut Reader<'_>) -> Result<HelloOk, ProtoError> {
    let mut h = HelloOk {
        version: r.u16("version")?,
        server_name: r.str("server_name")?.to_owned(),
        shard: r.u16("shard")?,
        shards: r.u16("shards")?,
        slots: r.u32("slots")?,
        authenticated: read_bool(r, "authenticated")?,
        auth_data: r.bytes("auth_data", MAX_STRING_BYTES)?.to_vec(),
        partitions: Vec::new(),
        shard_ports: Vec::new(),
    };
    if h.version < TOPOLOGY_VERSION {
        return Ok(h);
    }
    let n = r.u32("partition count")? as usize;
    check_count("partitions", n, MAX_PARTITIONS)?;
    h.partitions.reserve(n.min(r.remaining() / 10));
    for _ in 0..n {
        h.partitions.push(SlotRange {
            start: r.u32("partition start")?,
            end: r.u32("partition end")?,
            shard: r.u16("partition shard")?,
        });
    }
    let n = r.u16("shard port count")? as usize;
    check_count("shard ports", n, MAX_SHARDS)?;
    for _ in 0..n {
        h.shard_ports.push(r.u16("shard port")?);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{HEADER_BYTES, decode_header};
    use proptest::prelude::*;

    fn round_trip_req(req: Request) {
        let mut b = Vec::new();
        req.encode(9, &mut b);
        let h = decode_header(&b, usize::MAX).unwrap().unwrap();
        assert_eq!(h.total, b.len());
        assert_eq!(h.request_id, 9);
        let back = Request::decode(h.opcode, h.flags, &b[HEADER_BYTES..]).unwrap();
        assert_eq!(back, req);
    }

    fn round_trip_resp(op: u8, resp: Response) {
        let mut b = Vec::new();
        resp.encode(op, 3, &mut b);
        let h = decode_header(&b, usize::MAX).unwrap().unwrap();
        let back = Response::decode(h.opcode, h.flags, &b[HEADER_BYTES..]).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn every_request_round_trips() {
        round_trip_req(Request::Hello(Hello {
            min_version: 1,
            max_version: 3,
            client_name: "t".into(),
            mechanism: "SCRAM-SHA-256".into(),
            auth_data: b"n,,n=a,r=x".to_vec(),
        }));
        round_trip_req(Request::Auth {
            data: b"c=biws".to_vec(),
        });
        round_trip_req(Request::Ping {
            payload: b"p".to_vec(),
        });
        round_trip_req(Request::Stats);
        round_trip_req(Request::Backup {
            to: "/backups/b1".into(),
            incremental_from: String::new(),
        });
        round_trip_req(Request::Backup {
            to: "/backups/b2".into(),
            incremental_from: "/backups/b1".into(),
        });
        round_trip_req(Request::Config(ConfigRequest::Get { name: None }));
        round_trip_req(Request::Config(ConfigRequest::Get {
            name: Some("slow_op_ms".into()),
        }));
        round_trip_req(Request::Config(ConfigRequest::Set {
            name: "block_cache_mb".into(),
            value: "64".into(),
        }));
        round_trip_req(Request::Get { key: b"k".to_vec() });
        round_trip_req(Request::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl_ms: Some(5),
        });
        round_trip_req(Request::Delete { key: b"k".to_vec() });
        round_trip_req(Request::Scan {
            start: b"a".to_vec(),
            end: Some(b"z".to_vec()),
            limit: 10,
            token: b"t".to_vec(),
        });
        round_trip_req(Request::Batch {
            atomic: true,
            ops: vec![
                BatchOp::Get { key: b"a".to_vec() },
                BatchOp::Put {
                    key: b"b".to_vec(),
                    value: b"c".to_vec(),
                    ttl_ms: None,
                },
                BatchOp::Delete { key: b"d".to_vec() },
            ],
        });
        round_trip_req(Request::Cas {
            key: b"k".to_vec(),
            expected: None,
            new: Some(b"n".to_vec()),
            ttl_ms: None,
        });
        round_trip_req(Request::Incr {
            key: b"k".to_vec(),
            delta: -4,
        });
        round_trip_req(Request::Expire {
            key: b"k".to_vec(),
            ttl_ms: None,
        });
        round_trip_req(Request::Ttl { key: b"k".to_vec() });
    }

    #[test]
    fn every_response_round_trips() {
        round_trip_resp(
            op::HELLO,
            Response::HelloOk(HelloOk {
                version: 1,
                server_name: "nextdb".into(),
                shard: 1,
                shards: 2,
                slots: 16384,
                authenticated: false,
                auth_data: b"r=abc".to_vec(),
                partitions: Vec::new(),
                shard_ports: Vec::new(),
            }),
        );
        round_trip_resp(
            op::HELLO,
            Response::HelloOk(HelloOk {
                version: 2,
                server_name: "nextdb".into(),
                shard: 0,
                shards: 2,
                slots: 16384,
                authenticated: true,
                auth_data: Vec::new(),
                partitions: vec![
                    SlotRange {
                        start: 0,
                        end: 8192,
                        shard: 0,
                    },
                    SlotRange {
                        start: 8192,
                        end: 16384,
                        shard: 1,
                    },
                ],
                shard_ports: vec![7701, 0],
            }),
        );
        round_trip_resp(
            op::AUTH,
            Response::AuthOk {
                data: b"v=x".to_vec(),
            },
        );
        round_trip_resp(op::PING, Response::Pong { payload: vec![] });
        round_trip_resp(op::STATS, Response::Stats { json: "{}".into() });
        round_trip_resp(op::BACKUP, Response::Backup { json: "{}".into() });
        round_trip_resp(op::CONFIG, Response::Config { settings: vec![] });
        round_trip_resp(
            op::CONFIG,
            Response::Config {
                settings: vec![
                    ("slow_op_ms".into(), "0".into()),
                    ("slow_op_redact".into(), "true".into()),
                ],
            },
        );
        round_trip_resp(op::GET, Response::Value(None));
        round_trip_resp(op::GET, Response::Value(Some(b"v".to_vec())));
        round_trip_resp(op::PUT, Response::Done);
        round_trip_resp(
            op::SCAN,
            Response::Scan {
                entries: vec![(b"a".to_vec(), b"1".to_vec())],
                token: vec![],
            },
        );
        round_trip_resp(
            op::BATCH,
            Response::Batch(vec![BatchResult::Value(None), BatchResult::Done]),
        );
        round_trip_resp(
            op::CAS,
            Response::Cas {
                swapped: false,
                current: Some(b"x".to_vec()),
            },
        );
        round_trip_resp(op::INCR, Response::Int(-7));
        round_trip_resp(op::EXPIRE, Response::Found(true));
        round_trip_resp(op::TTL, Response::Ttl(TtlState::ExpiresIn(99)));
        round_trip_resp(op::TTL, Response::Ttl(TtlState::Missing));
        round_trip_resp(op::GET, Response::error(ErrorCode::Busy, "later"));
    }

    #[test]
    fn a_version_1_hello_answer_has_no_topology() {
        // A version-1 client reads exactly the version-1 layout, whatever the server
        // knows about its shards.
        let h = HelloOk {
            version: 1,
            server_name: "n".into(),
            shard: 0,
            shards: 2,
            slots: 16384,
            authenticated: true,
            auth_data: Vec::new(),
            partitions: vec![SlotRange {
                start: 0,
                end: 16384,
                shard: 0,
            }],
            shard_ports: vec![1, 2],
        };
        let mut v1 = Vec::new();
        Response::HelloOk(h.clone()).encode(op::HELLO, 0, &mut v1);
        let mut v2 = Vec::new();
        let h2 = HelloOk { version: 2, ..h };
        Response::HelloOk(h2).encode(op::HELLO, 0, &mut v2);
        assert_eq!(v2.len(), v1.len() + 4 + 10 + 2 + 4);
        let back = Response::decode(op::HELLO, STATUS_OK, &v1[HEADER_BYTES..]).unwrap();
        let Response::HelloOk(back) = back else {
            panic!("not a HELLO answer")
        };
        assert!(back.partitions.is_empty() && back.shard_ports.is_empty());
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert_eq!(
            Request::decode(0x7f, 0, &[]),
            Err(ProtoError::UnknownOp(0x7f))
        );
        assert!(Request::decode(op::GET, 0, &[5, 0, 0, 0, b'a']).is_err());
        assert!(Request::decode(op::GET, 0, &[1, 0, 0, 0, b'a', 0]).is_err());
        let huge = ((MAX_KEY_BYTES + 1) as u32).to_le_bytes();
        assert!(matches!(
            Request::decode(op::GET, 0, &huge),
            Err(ProtoError::TooLong { .. })
        ));
        assert!(Request::decode(op::HELLO, 0, b"XXXX").is_err());
        // A CONFIG kind other than get (0) or set (1).
        assert!(matches!(
            Request::decode(op::CONFIG, 0, &[2, 0, 0]),
            Err(ProtoError::BadValue { .. })
        ));
    }

    #[test]
    fn check_limits_agrees_with_the_decoder() {
        let reqs = [
            Request::Get {
                key: vec![0; MAX_KEY_BYTES + 1],
            },
            Request::Put {
                key: vec![1],
                value: vec![0; MAX_VALUE_BYTES + 1],
                ttl_ms: None,
            },
            Request::Expire {
                key: vec![1],
                ttl_ms: Some(MAX_TTL_MS + 1),
            },
            Request::Scan {
                start: vec![],
                end: None,
                limit: 0,
                token: vec![],
            },
            Request::Scan {
                start: vec![],
                end: None,
                limit: MAX_SCAN_LIMIT + 1,
                token: vec![],
            },
            Request::Get { key: vec![0; 10] },
            Request::Scan {
                start: vec![],
                end: Some(vec![9]),
                limit: 10,
                token: vec![],
            },
        ];
        for r in reqs {
            let mut b = Vec::new();
            r.encode(1, &mut b);
            let h = decode_header(&b, usize::MAX).unwrap().unwrap();
            let decoded = Request::decode(h.opcode, h.flags, &b[HEADER_BYTES..]);
            assert_eq!(
                r.check_limits().is_ok(),
                decoded.is_ok(),
                "{:?}",
                r.opcode()
            );
        }
    }

    proptest! {
        #[test]
        fn decoders_never_panic(opcode in any::<u8>(), flags in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(opcode, flags, &body);
            let _ = Response::decode(opcode, flags & 1, &body);
        }
    }
}
