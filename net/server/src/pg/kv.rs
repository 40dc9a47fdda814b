//! The SQL layer's storage on a node: [`nextdb_sql::Kv`] over this core's router,
//! so every key goes to the core that owns it and scans gather from every core.

use nextdb_shard::ops::{ShardOp, ShardResult};
use nextdb_shard::{ShardContext, ShardError};
use nextdb_sql::KvError;
use nextdb_sql::kv::{Kv, KvPage};
use std::rc::Rc;

pub struct RouterKv {
    pub ctx: Rc<ShardContext>,
}

fn err(e: ShardError) -> KvError {
    KvError(e.to_string())
}

fn unexpected(what: &str) -> KvError {
    KvError(format!("{what} answered with another result"))
}

impl Kv for RouterKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        match self
            .ctx
            .route(ShardOp::Get { key: key.to_vec() })
            .await
            .map_err(err)?
        {
            ShardResult::Value(v) => Ok(v),
            _ => Err(unexpected("GET")),
        }
    }

    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        match self
            .ctx
            .route(ShardOp::Put {
                key,
                value,
                ttl_ms: None,
            })
            .await
            .map_err(err)?
        {
            ShardResult::Done => Ok(()),
            _ => Err(unexpected("PUT")),
        }
    }

    async fn delete(&self, key: Vec<u8>) -> Result<(), KvError> {
        match self.ctx.route(ShardOp::Delete { key }).await.map_err(err)? {
            ShardResult::Done | ShardResult::Found(_) => Ok(()),
            _ => Err(unexpected("DELETE")),
        }
    }

    async fn cas(
        &self,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, KvError> {
        let op = ShardOp::Cas {
            key,
            expected,
            new,
            ttl_ms: None,
        };
        match self.ctx.route(op).await.map_err(err)? {
            ShardResult::Cas { swapped, .. } => Ok(swapped),
            _ => Err(unexpected("CAS")),
        }
    }

    async fn incr(&self, key: Vec<u8>, delta: i64) -> Result<i64, KvError> {
        match self
            .ctx
            .route(ShardOp::Incr { key, delta })
            .await
            .map_err(err)?
        {
            ShardResult::Int(n) => Ok(n),
            _ => Err(unexpected("INCR")),
        }
    }

    async fn scan(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<KvPage, KvError> {
        let page = self
            .ctx
            .scan(start, Some(end), limit, max_bytes)
            .await
            .map_err(err)?;
        Ok(KvPage {
            entries: page.entries,
            resume_after: page.resume,
        })
    }
}
