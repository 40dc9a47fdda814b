//! The storage the SQL layer runs on: a small async key-value interface. The node
//! implements it over its shards' router (`nextdb-net`'s pg module); tests implement
//! it over a `BTreeMap` ([`MemKv`]). Every call is made on, and completes on, the
//! core that owns the session: the futures are never sent between threads.

use crate::error::KvError;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// One page of a scan: entries in key order, and the last key returned when more
/// may follow (the next page starts just after it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvPage {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub resume_after: Option<Vec<u8>>,
}

/// The operations SQL needs. Writes are durable when they return.
#[allow(async_fn_in_trait)] // Single-threaded executors: no `Send` bound wanted.
pub trait Kv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError>;
    async fn delete(&self, key: Vec<u8>) -> Result<(), KvError>;
    /// Writes `new` (None: deletes) if and only if the key's value is `expected`
    /// (None: absent), atomically; answers whether it did.
    async fn cas(
        &self,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, KvError>;
    /// Adds `delta` to the decimal integer stored at `key` (absent: 0) atomically
    /// and answers the new value.
    async fn incr(&self, key: Vec<u8>, delta: i64) -> Result<i64, KvError>;
    /// Up to `limit` entries of `[start, end)`, together about `max_bytes` at most.
    async fn scan(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<KvPage, KvError>;
}

/// An in-memory [`Kv`] for tests and the in-process conformance runner.
#[derive(Debug, Default)]
pub struct MemKv {
    map: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    /// Entries stored (for tests that look under the SQL layer).
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }
}

impl Kv for MemKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.map.borrow_mut().insert(key, value);
        Ok(())
    }

    async fn delete(&self, key: Vec<u8>) -> Result<(), KvError> {
        self.map.borrow_mut().remove(&key);
        Ok(())
    }

    async fn cas(
        &self,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, KvError> {
        let mut map = self.map.borrow_mut();
        if map.get(&key) != expected.as_ref() {
            return Ok(false);
        }
        match new {
            Some(v) => map.insert(key, v),
            None => map.remove(&key),
        };
        Ok(true)
    }

    async fn incr(&self, key: Vec<u8>, delta: i64) -> Result<i64, KvError> {
        let mut map = self.map.borrow_mut();
        let old = match map.get(&key) {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| KvError("value is not an integer".into()))?,
            None => 0,
        };
        let new = old
            .checked_add(delta)
            .ok_or_else(|| KvError("integer overflow".into()))?;
        map.insert(key, new.to_string().into_bytes());
        Ok(new)
    }

    async fn scan(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<KvPage, KvError> {
        let map = self.map.borrow();
        let mut page = KvPage::default();
        let mut bytes = 0;
        for (k, v) in map.range(start..end) {
            if page.entries.len() == limit || (bytes > 0 && bytes + k.len() + v.len() > max_bytes) {
                page.resume_after = page.entries.last().map(|(k, _)| k.clone());
                break;
            }
            bytes += k.len() + v.len();
            page.entries.push((k.clone(), v.clone()));
        }
        Ok(page)
    }
}

/// Every entry of `[start, end)`, page by page; `budget` bounds the bytes gathered.
pub async fn scan_all<K: Kv>(
    kv: &K,
    start: Vec<u8>,
    end: Vec<u8>,
    budget: &mut crate::exec::WorkBudget,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, crate::error::SqlError> {
    use crate::config::{SCAN_PAGE_BYTES, SCAN_PAGE_ROWS};
    let mut out = Vec::new();
    let mut from = start;
    loop {
        let page = kv
            .scan(from, end.clone(), SCAN_PAGE_ROWS, SCAN_PAGE_BYTES)
            .await?;
        for (k, v) in page.entries {
            budget.charge(k.len() + v.len())?;
            out.push((k, v));
        }
        match page.resume_after {
            Some(mut last) => {
                last.push(0);
                from = last;
            }
            None => return Ok(out),
        }
    }
}
