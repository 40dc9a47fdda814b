//! What the typed client methods send and how they read the answer, shared by the
//! blocking and async clients so both behave identically.

use std::time::Duration;

use nextdb_proto::limits::MAX_TTL_MS;
use nextdb_proto::{BatchOp, BatchResult, ConfigRequest, Request, Response, TtlState};

use crate::error::{Error, Result};
use crate::session::response_name;

/// One page of a SCAN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPage {
    /// Key/value pairs in key order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Pass to the next `scan` to continue; empty when the range is exhausted.
    pub token: Vec<u8>,
}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasResult {
    /// Whether the new value was written.
    pub swapped: bool,
    /// The key's current value as the server reports it; `None` when absent.
    pub current: Option<Vec<u8>>,
}

/// A TTL in whole milliseconds. On the wire 0 means "no TTL", so a sub-millisecond
/// TTL rounds up to 1 ms rather than silently making the key persistent.
pub(crate) fn ttl_ms(d: Duration) -> Result<u64> {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms <= MAX_TTL_MS)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("TTL of {d:?} exceeds the limit of {MAX_TTL_MS} ms"))
        })
}

fn unexpected(wanted: &str, got: &Response) -> Error {
    Error::UnexpectedResponse(format!("expected {wanted}, got {}", response_name(got)))
}

pub(crate) fn get(key: &[u8]) -> Request {
    Request::Get { key: key.to_vec() }
}

pub(crate) fn put(key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<Request> {
    Ok(Request::Put {
        key: key.to_vec(),
        value: value.to_vec(),
        ttl_ms: ttl.map(ttl_ms).transpose()?,
    })
}

pub(crate) fn delete(key: &[u8]) -> Request {
    Request::Delete { key: key.to_vec() }
}

pub(crate) fn scan(start: &[u8], end: Option<&[u8]>, limit: u32, token: &[u8]) -> Request {
    Request::Scan {
        start: start.to_vec(),
        end: end.map(<[u8]>::to_vec),
        limit,
        token: token.to_vec(),
    }
}

pub(crate) fn batch(atomic: bool, ops: Vec<BatchOp>) -> Request {
    Request::Batch { atomic, ops }
}

pub(crate) fn cas(key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Request {
    Request::Cas {
        key: key.to_vec(),
        expected: expected.map(<[u8]>::to_vec),
        new: new.map(<[u8]>::to_vec),
        ttl_ms: None,
    }
}

pub(crate) fn incr(key: &[u8], delta: i64) -> Request {
    Request::Incr {
        key: key.to_vec(),
        delta,
    }
}

pub(crate) fn expire(key: &[u8], ttl: Option<Duration>) -> Result<Request> {
    Ok(Request::Expire {
        key: key.to_vec(),
        ttl_ms: ttl.map(ttl_ms).transpose()?,
    })
}

pub(crate) fn ttl(key: &[u8]) -> Request {
    Request::Ttl { key: key.to_vec() }
}

pub(crate) fn ping() -> Request {
    Request::Ping {
        payload: b"nextdb-client".to_vec(),
    }
}

pub(crate) fn into_value(r: Response) -> Result<Option<Vec<u8>>> {
    match r {
        Response::Value(v) => Ok(v),
        r => Err(unexpected("VALUE", &r)),
    }
}

pub(crate) fn into_done(r: Response) -> Result<()> {
    match r {
        Response::Done => Ok(()),
        r => Err(unexpected("DONE", &r)),
    }
}

pub(crate) fn into_scan(r: Response) -> Result<ScanPage> {
    match r {
        Response::Scan { entries, token } => Ok(ScanPage { entries, token }),
        r => Err(unexpected("SCAN", &r)),
    }
}

pub(crate) fn into_batch(r: Response, n_ops: usize) -> Result<Vec<BatchResult>> {
    match r {
        Response::Batch(v) if v.len() == n_ops => Ok(v),
        Response::Batch(v) => Err(Error::UnexpectedResponse(format!(
            "{} batch results for {n_ops} operations",
            v.len()
        ))),
        r => Err(unexpected("BATCH", &r)),
    }
}

pub(crate) fn into_cas(r: Response) -> Result<CasResult> {
    match r {
        Response::Cas { swapped, current } => Ok(CasResult { swapped, current }),
        r => Err(unexpected("CAS", &r)),
    }
}

pub(crate) fn into_int(r: Response) -> Result<i64> {
    match r {
        Response::Int(v) => Ok(v),
        r => Err(unexpected("INT", &r)),
    }
}

pub(crate) fn into_found(r: Response) -> Result<bool> {
    match r {
        Response::Found(f) => Ok(f),
        r => Err(unexpected("FOUND", &r)),
    }
}

pub(crate) fn into_ttl(r: Response) -> Result<TtlState> {
    match r {
        Response::Ttl(t) => Ok(t),
        r => Err(unexpected("TTL", &r)),
    }
}

pub(crate) fn into_pong(r: Response) -> Result<()> {
    match r {
        Response::Pong { .. } => Ok(()),
        r => Err(unexpected("PONG", &r)),
    }
}

pub(crate) fn into_stats(r: Response) -> Result<String> {
    match r {
        Response::Stats { json } => Ok(json),
        r => Err(unexpected("STATS", &r)),
    }
}

pub(crate) fn into_backup(r: Response) -> Result<String> {
    match r {
        Response::Backup { json } => Ok(json),
        r => Err(unexpected("BACKUP", &r)),
    }
}

pub(crate) fn into_settings(r: Response) -> Result<Vec<(String, String)>> {
    match r {
        Response::Config { settings } => Ok(settings),
        r => Err(unexpected("CONFIG", &r)),
    }
}

/// CONFIG get (all settings, or the one named) or set.
pub(crate) fn config(name: Option<&str>, value: Option<&str>) -> Request {
    let name = name.map(str::to_string);
    Request::Config(match (name, value) {
        (Some(name), Some(value)) => ConfigRequest::Set {
            name,
            value: value.to_string(),
        },
        (name, _) => ConfigRequest::Get { name },
    })
}

/// Follows SCAN tokens; shared bookkeeping for `scan_all` of both clients.
pub(crate) struct ScanAll {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
    pub limit: u32,
    pub token: Vec<u8>,
    pub out: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ScanAll {
    pub fn new(start: &[u8], end: Option<&[u8]>, limit: u32) -> ScanAll {
        ScanAll {
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            limit,
            token: Vec::new(),
            out: Vec::new(),
        }
    }

    pub fn request(&self) -> Request {
        scan(&self.start, self.end.as_deref(), self.limit, &self.token)
    }

    /// Takes a page; returns whether more pages follow.
    pub fn page(&mut self, page: ScanPage) -> Result<bool> {
        // A server that hands back the token it was given with no entries would make
        // us loop forever.
        if page.entries.is_empty() && !page.token.is_empty() && page.token == self.token {
            return Err(Error::UnexpectedResponse(
                "SCAN returned no entries and the same token".into(),
            ));
        }
        self.out.extend(page.entries);
        self.token = page.token;
        Ok(!self.token.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_and_is_bounded() {
        assert_eq!(ttl_ms(Duration::ZERO).unwrap(), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)).unwrap(), 2);
        assert_eq!(ttl_ms(Duration::from_secs(3)).unwrap(), 3000);
        assert!(ttl_ms(Duration::from_millis(MAX_TTL_MS + 1)).is_err());
        assert!(ttl_ms(Duration::MAX).is_err());
    }
}
