//! Turns an authenticated request into shard operations and their answer.

use crate::handshake::Session;
use nextdb_proto::limits::{MAX_KEY_BYTES, MAX_RESPONSE_BYTES, MAX_SCAN_BYTES};
use nextdb_proto::message::op;
use nextdb_proto::{ErrorCode, Request, Response};
use nextdb_shard::ops::{ResponseBudget, ShardOp, ShardResult};
use nextdb_shard::{ShardContext, ShardError};
use std::rc::Rc;

/// Version byte of a SCAN continuation token: `[1] ++ last key returned`.
const TOKEN_V1: u8 = 1;

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

fn shard_error(e: ShardError) -> Response {
    Response::error(e.code(), e.to_string())
}

fn unexpected() -> Response {
    Response::error(
        ErrorCode::Internal,
        "shard answered with the wrong result kind",
    )
}

/// Executes one request (not HELLO/AUTH, which the handshake handles). Only an
/// authenticated connection holds a [`Session`].
pub async fn execute(ctx: Rc<ShardContext>, _session: &Session, req: Request) -> Response {
    match req {
        Request::Get { key } => match ctx.route(ShardOp::Get { key }).await {
            Ok(ShardResult::Value(v)) => Response::Value(v),
            Ok(_) => unexpected(),
            Err(e) => shard_error(e),
        },
        Request::Put { key, value, ttl_ms } => {
            done(ctx.route(ShardOp::Put { key, value, ttl_ms }).await)
        }
        Request::Delete { key } => done(ctx.route(ShardOp::Delete { key }).await),
        Request::Scan {
            start,
            end,
            limit,
            token,
        } => {
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
                        return Response::error(
                            ErrorCode::InvalidArgument,
                            "SCAN token is not one this server issued",
                        );
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
                        .map(|k| {
                            let mut t = Vec::with_capacity(k.len() + 1);
                            t.push(TOKEN_V1);
                            t.extend_from_slice(&k);
                            t
                        })
                        .unwrap_or_default(),
                },
                Err(e) => shard_error(e),
            }
        }
        Request::Batch { atomic, ops } => {
            let budget = batch_budget(ops.len());
            match ctx.batch(atomic, ops, budget).await {
                Ok(r) => Response::Batch(r),
                Err(e) => shard_error(e),
            }
        }
        Request::Cas {
            key,
            expected,
            new,
            ttl_ms,
        } => match ctx
            .route(ShardOp::Cas {
                key,
                expected,
                new,
                ttl_ms,
            })
            .await
        {
            Ok(ShardResult::Cas { swapped, current }) => Response::Cas { swapped, current },
            Ok(_) => unexpected(),
            Err(e) => shard_error(e),
        },
        Request::Incr { key, delta } => match ctx.route(ShardOp::Incr { key, delta }).await {
            Ok(ShardResult::Int(v)) => Response::Int(v),
            Ok(_) => unexpected(),
            Err(e) => shard_error(e),
        },
        Request::Expire { key, ttl_ms } => match ctx.route(ShardOp::Expire { key, ttl_ms }).await {
            Ok(ShardResult::Found(f)) => Response::Found(f),
            Ok(_) => unexpected(),
            Err(e) => shard_error(e),
        },
        Request::Ttl { key } => match ctx.route(ShardOp::Ttl { key }).await {
            Ok(ShardResult::Ttl(t)) => Response::Ttl(t),
            Ok(_) => unexpected(),
            Err(e) => shard_error(e),
        },
        Request::Ping { payload } => Response::Pong { payload },
        Request::Stats => match ctx.stats_json().await {
            Ok(json) => Response::Stats { json },
            Err(e) => shard_error(e),
        },
        Request::Hello(_) | Request::Auth { .. } => Response::error(
            ErrorCode::ProtocolViolation,
            "HELLO and AUTH are only valid while the session starts",
        ),
    }
}

/// Bytes of a BATCH response besides its values: the count, and per result its
/// kind, option flag and length (`docs/protocol.md`).
const BATCH_RESPONSE_FIXED_BYTES: usize = 4;
const BATCH_RESULT_OVERHEAD_BYTES: usize = 1 + 1 + 4;

/// The value bytes a BATCH of `ops` operations may read: what is left of
/// `MAX_RESPONSE_BYTES` once every result's framing is counted.
fn batch_budget(ops: usize) -> ResponseBudget {
    let framing = BATCH_RESPONSE_FIXED_BYTES + ops * BATCH_RESULT_OVERHEAD_BYTES;
    ResponseBudget::new(MAX_RESPONSE_BYTES.saturating_sub(framing))
}

fn done(r: Result<ShardResult, ShardError>) -> Response {
    match r {
        Ok(ShardResult::Done) => Response::Done,
        Ok(_) => unexpected(),
        Err(e) => shard_error(e),
    }
}
