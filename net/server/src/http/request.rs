//! The head of one HTTP/1.1 request (request line and headers), parsed by
//! `httparse` and checked against the limits in `config.rs`. Pure: bytes in, a
//! [`Head`] or the status to answer out; the connection (`conn.rs`) does the I/O.

use crate::config::{HTTP_MAX_BODY_BYTES, HTTP_MAX_HEAD_BYTES, HTTP_MAX_HEADERS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other method: every endpoint answers 405.
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The request target's path, without its query string.
    pub path: String,
    /// The connection stays open after the answer (HTTP/1.1 unless `Connection:
    /// close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// Bytes of the head itself, and of the body that follows it.
    pub head_bytes: usize,
    pub body_bytes: usize,
}

/// Why a request cannot be served; each maps to one status, and the connection
/// closes after the answer (its framing can no longer be trusted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("request head over {HTTP_MAX_HEAD_BYTES} bytes or {HTTP_MAX_HEADERS} headers")]
    HeadTooLarge,
    #[error("request body of {0} bytes; at most {HTTP_MAX_BODY_BYTES} are accepted")]
    BodyTooLarge(u64),
    #[error("request not received in time")]
    Timeout,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge(_) => 413,
            HttpError::Timeout => 408,
        }
    }
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Complete(Head),
    /// More bytes are needed (and allowed: the head is still within its limit).
    Partial,
    Invalid(HttpError),
}

/// Parses the head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; HTTP_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > HTTP_MAX_HEAD_BYTES => {
            Parsed::Invalid(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Complete(n)) => match head_of(&req, n) {
            Ok(h) => Parsed::Complete(h),
            Err(e) => Parsed::Invalid(e),
        },
        Ok(httparse::Status::Partial) if buf.len() >= HTTP_MAX_HEAD_BYTES => {
            Parsed::Invalid(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Invalid(HttpError::HeadTooLarge),
        Err(e) => Parsed::Invalid(HttpError::BadRequest(e.to_string())),
    }
}

fn head_of(req: &httparse::Request<'_, '_>, head_bytes: usize) -> Result<Head, HttpError> {
    let bad = |why: &str| HttpError::BadRequest(why.to_string());
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(bad("incomplete request line"));
    };
    if !target.starts_with('/') {
        return Err(bad("the request target must be a path (origin form)"));
    }
    let mut keep_alive = version == 1;
    let mut body_bytes: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value);
            for token in v.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad("Content-Length is not a number"))?;
            if body_bytes.is_some_and(|prev| prev != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            body_bytes = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // No endpoint takes a body, so none is worth de-chunking; refusing keeps
            // the framing unambiguous (no request smuggling through TE + CL).
            return Err(bad("Transfer-Encoding is not accepted"));
        }
    }
    let body_bytes = body_bytes.unwrap_or(0);
    if body_bytes > HTTP_MAX_BODY_BYTES as u64 {
        return Err(HttpError::BodyTooLarge(body_bytes));
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Head {
        method,
        path,
        keep_alive,
        head_bytes,
        body_bytes: body_bytes as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &str) -> Head {
        match parse_head(raw.as_bytes()) {
            Parsed::Complete(h) => h,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn invalid(raw: &[u8]) -> u16 {
        match parse_head(raw) {
            Parsed::Invalid(e) => e.status(),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn heads_parse_with_keep_alive_and_body_length() {
        let h = complete("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            (h.method, h.path.as_str(), h.keep_alive),
            (Method::Get, "/metrics", true)
        );
        assert_eq!((h.head_bytes, h.body_bytes), (38, 0));
        let h = complete("HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!((h.method, h.keep_alive), (Method::Head, false));
        let h = complete("GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = complete("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = complete("POST /x HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((h.method, h.body_bytes), (Method::Other, 12));
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHo"), Parsed::Partial);
    }

    #[test]
    fn bad_heads_get_their_status() {
        assert_eq!(invalid(b"GARBAGE\r\n\r\n"), 400);
        assert_eq!(invalid(b"GET /\r\n\r\n"), 400);
        assert_eq!(invalid(b"GET http://x/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            invalid(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            413
        );
        let many: String = (0..=HTTP_MAX_HEADERS)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(
            invalid(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n",
            "a".repeat(HTTP_MAX_HEAD_BYTES)
        );
        assert_eq!(invalid(big.as_bytes()), 431);
        let big_complete = format!("{big}\r\n");
        assert_eq!(invalid(big_complete.as_bytes()), 431);
    }
}
