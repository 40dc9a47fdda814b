//! Turns an authenticated request into shard operations and their answer: the one
//! place where the wire's types (`nextdb_proto`) meet the shard's (`nextdb_shard`).
//!
//! A new single-key operation needs a line in `single_key_op` (request to shard
//! operation) and, if it answers with a new kind of result, one in `response`.

use crate::handshake::Session;
use nextdb_proto::limits::{MAX_KEY_BYTES, MAX_RESPONSE_BYTES, MAX_SCAN_BYTES};
use nextdb_proto::message::{self as wire, op};
use nextdb_proto::{ErrorCode, Request, Response};
use nextdb_shard::ops::{BatchOp, BatchResult, ResponseBudget, ShardOp, ShardResult, TtlState};
use nextdb_shard::settings::Setting;
use nextdb_shard::{ShardContext, ShardError};
use std::rc::Rc;

/// Version byte of a SCAN continuation token: `[1] ++ last key returned`.
const TOKEN_V1: u8 = 1;

/// Bytes of a BATCH response besides its values: the count, and per result its
/// kind, option flag and length (`docs/protocol.md`).
const BATCH_RESPONSE_FIXED_BYTES: usize = 4;
const BATCH_RESULT_OVERHEAD_BYTES: usize = 1 + 1 + 4;

/// Index into `nextdb_shard::stats::OP_NAMES` for an opcode.
pub fn stats_index(opcode: u8) -> usize {
    match opcode {
        op::GET => 0,
        op::PUT => 1,
        op::DELETE => 2,
        op::SCAN => 3,
        op::BATCH => 4,
        op::CAS => 5,
        op::INCR => 6,
        op::EXPIRE => 7,
        op::TTL => 8,
        op::PING => 9,
        _ => 10,
    }
}

/// The protocol's code for a shard error.
pub fn error_code(e: &ShardError) -> ErrorCode {
    match e {
        ShardError::Storage(_) => ErrorCode::Storage,
        ShardError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        ShardError::NotAnInteger => ErrorCode::NotAnInteger,
        ShardError::CrossPartition(_) => ErrorCode::CrossPartition,
        ShardError::Busy(_) => ErrorCode::Busy,
        ShardError::ResponseTooLarge(_) => ErrorCode::ResponseTooLarge,
        ShardError::Timeout(_) => ErrorCode::Timeout,
        ShardError::ShuttingDown => ErrorCode::ShuttingDown,
        ShardError::Internal(_) => ErrorCode::Internal,
        ShardError::UnknownSetting(_) => ErrorCode::UnknownSetting,
    }
}

fn shard_error(e: ShardError) -> Response {
    Response::error(error_code(&e), e.to_string())
}

/// Executes one request (not HELLO/AUTH, which the handshake handles). Only an
/// authenticated connection holds a [`Session`].
pub async fn execute(ctx: Rc<ShardContext>, _session: &Session, req: Request) -> Response {
    match req {
        Request::Scan {
            start,
            end,
            limit,
            token,
            // Boxed: their futures are kilobytes, and inline they would make every GET's
            // future (which the connection boxes per request) as large.
        } => Box::pin(scan(&ctx, start, end, limit, token)).await,
        Request::Batch { atomic, ops } => Box::pin(batch(&ctx, atomic, ops)).await,
        Request::Stats => match ctx.stats_json().await {
            Ok(json) => Response::Stats { json },
            Err(e) => shard_error(e),
        },
        Request::Ping { payload } => Response::Pong { payload },
        Request::Backup {
            to,
            incremental_from,
        } => {
            let prev =
                (!incremental_from.is_empty()).then(|| std::path::PathBuf::from(incremental_from));
            match Box::pin(ctx.backup(std::path::Path::new(&to), prev.as_deref())).await {
                Ok(json) => Response::Backup { json },
                Err(e) => shard_error(e),
            }
        }
        Request::Config(c) => Box::pin(config(&ctx, c)).await,
        Request::Hello(_) | Request::Auth { .. } => Response::error(
            ErrorCode::ProtocolViolation,
            "HELLO and AUTH are only valid while the session starts",
        ),
        single => match single_key_op(single) {
            Some(op) => ctx.route(op).await.map_or_else(shard_error, response),
            None => Response::error(ErrorCode::Internal, "no shard operation for the request"),
        },
    }
}

/// The shard operation of a single-key request.
fn single_key_op(req: Request) -> Option<ShardOp> {
    Some(match req {
        Request::Get { key } => ShardOp::Get { key },
        Request::Put { key, value, ttl_ms } => ShardOp::Put { key, value, ttl_ms },
        Request::Delete { key } => ShardOp::Delete { key },
        Request::Cas {
            key,
            expected,
            new,
            ttl_ms,
        } => ShardOp::Cas {
            key,
            expected,
            new,
            ttl_ms,
        },
        Request::Incr { key, delta } => ShardOp::Incr { key, delta },
        Request::Expire { key, ttl_ms } => ShardOp::Expire { key, ttl_ms },
        Request::Ttl { key } => ShardOp::Ttl { key },
        _ => return None,
    })
}

/// The wire answer of a shard result.
fn response(r: ShardResult) -> Response {
    match r {
        ShardResult::Value(v) => Response::Value(v),
        ShardResult::Done => Response::Done,
        ShardResult::Cas { swapped, current } => Response::Cas { swapped, current },
        ShardResult::Int(v) => Response::Int(v),
        ShardResult::Found(f) => Response::Found(f),
        ShardResult::Ttl(t) => Response::Ttl(match t {
            TtlState::Missing => wire::TtlState::Missing,
            TtlState::Persistent => wire::TtlState::Persistent,
            TtlState::ExpiresIn(ms) => wire::TtlState::ExpiresIn(ms),
        }),
        ShardResult::Batch(rs) => Response::Batch(rs.into_iter().map(batch_result).collect()),
        ShardResult::Entries { .. }
        | ShardResult::Stats(_)
        | ShardResult::Backup(_)
        | ShardResult::Settings(_) => Response::error(
            ErrorCode::Internal,
            "shard answered with the wrong result kind",
        ),
    }
}

fn batch_op(o: wire::BatchOp) -> BatchOp {
    match o {
        wire::BatchOp::Get { key } => BatchOp::Get { key },
        wire::BatchOp::Put { key, value, ttl_ms } => BatchOp::Put { key, value, ttl_ms },
        wire::BatchOp::Delete { key } => BatchOp::Delete { key },
    }
}

fn batch_result(r: BatchResult) -> wire::BatchResult {
    match r {
        BatchResult::Value(v) => wire::BatchResult::Value(v),
        BatchResult::Done => wire::BatchResult::Done,
    }
}

async fn scan(
    ctx: &ShardContext,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    limit: u32,
    token: Vec<u8>,
) -> Response {
    let start = if token.is_empty() {
        start
    } else {
        match token.split_first() {
            Some((&TOKEN_V1, last)) if last.len() <= MAX_KEY_BYTES => {
                // Resume at the smallest key after `last`.
                let mut s = last.to_vec();
                s.push(0);
                s
            }
            _ => {
                let msg = "SCAN token is not one this server issued";
                return Response::error(ErrorCode::InvalidArgument, msg);
            }
        }
    };
    if let Some(e) = &end
        && start >= *e
    {
        return Response::Scan {
            entries: Vec::new(),
            token: Vec::new(),
        };
    }
    match ctx.scan(start, end, limit as usize, MAX_SCAN_BYTES).await {
        Ok(page) => Response::Scan {
            entries: page.entries,
            token: page
                .resume
                .map(|k| [&[TOKEN_V1][..], &k].concat())
                .unwrap_or_default(),
        },
        Err(e) => shard_error(e),
    }
}

/// CONFIG: the name and value are checked here, once, before any core sees the
/// change; every core then applies it (`Router::config`), and the answer holds the
/// settings asked for as they are after the change.
async fn config(ctx: &ShardContext, req: wire::ConfigRequest) -> Response {
    let (name, change) = match req {
        wire::ConfigRequest::Get { name } => (name, None),
        wire::ConfigRequest::Set { name, value } => {
            match Setting::from_name(&name).and_then(|s| s.parse(&value)) {
                Ok(c) => (Some(name), Some(c)),
                Err(e) => return shard_error(e),
            }
        }
    };
    let only = match name.as_deref().map(Setting::from_name).transpose() {
        Ok(only) => only,
        Err(e) => return shard_error(e),
    };
    match ctx.config(change).await {
        Ok(all) => Response::Config {
            settings: all
                .into_iter()
                .filter(|(n, _)| only.is_none_or(|s| s.name() == n))
                .collect(),
        },
        Err(e) => shard_error(e),
    }
}

async fn batch(ctx: &ShardContext, atomic: bool, ops: Vec<wire::BatchOp>) -> Response {
    let budget = batch_budget(ops.len());
    let ops = ops.into_iter().map(batch_op).collect();
    match ctx.batch(atomic, ops, budget).await {
        Ok(rs) => Response::Batch(rs.into_iter().map(batch_result).collect()),
        Err(e) => shard_error(e),
    }
}

/// The value bytes a BATCH of `ops` operations may read: what is left of
/// `MAX_RESPONSE_BYTES` once every result's framing is counted.
fn batch_budget(ops: usize) -> ResponseBudget {
    let framing = BATCH_RESPONSE_FIXED_BYTES + ops * BATCH_RESULT_OVERHEAD_BYTES;
    ResponseBudget::new(MAX_RESPONSE_BYTES.saturating_sub(framing))
}
