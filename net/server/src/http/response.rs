//! HTTP/1.1 responses: a status, a content type and a body, encoded in one place.

use std::fmt::Write as _;

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
/// The Prometheus text exposition format, version 0.0.4.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            allow: None,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut b: String = body.into();
        if !b.ends_with('\n') {
            b.push('\n');
        }
        Response::new(status, TEXT, b)
    }

    /// The bytes on the wire: head, then the body unless answering HEAD.
    pub fn encode(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let mut head = String::with_capacity(160);
        // Writing into a String cannot fail.
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        if let Some(allow) = self.allow {
            let _ = write!(head, "Allow: {allow}\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_carry_length_and_connection() {
        let r = Response::text(404, "no such endpoint");
        let wire = String::from_utf8(r.encode(false, true)).unwrap();
        assert!(wire.starts_with("HTTP/1.1 404 Not Found\r\n"), "{wire}");
        assert!(wire.contains("Content-Length: 17\r\n"), "{wire}");
        assert!(wire.contains("Connection: keep-alive\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\nno such endpoint\n"), "{wire}");
        let head = String::from_utf8(r.encode(true, false)).unwrap();
        assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");
    }
}
