//! A minimal HTTP/1.1 client for tests of the node's HTTP endpoints: raw requests
//! in, status, headers and body out; closes and timeouts are outcomes, not panics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A connection that may carry several requests (keep-alive).
pub struct HttpConn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect (HTTP)");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        HttpConn { s, buf: Vec::new() }
    }

    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.s.write_all(raw)
    }

    /// Reads one response (None: the server closed or went silent first).
    pub fn read_answer(&mut self) -> Option<HttpAnswer> {
        self.read(true)
    }

    /// Reads the answer to a HEAD request: its Content-Length is not followed by a body.
    pub fn read_head_only(&mut self) -> Option<HttpAnswer> {
        self.read(false)
    }

    fn read(&mut self, with_body: bool) -> Option<HttpAnswer> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let status = head.split(' ').nth(1)?.parse().ok()?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let len = if with_body { len } else { 0 };
                let body_start = end + 4;
                if self.buf.len() >= body_start + len {
                    let body = String::from_utf8_lossy(&self.buf[body_start..body_start + len])
                        .to_string();
                    self.buf.drain(..body_start + len);
                    return Some(HttpAnswer { status, head, body });
                }
            }
            let mut chunk = [0u8; 16 << 10];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Whether the server closed the connection (EOF or reset) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1024];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> HttpAnswer {
    let mut c = HttpConn::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send (HTTP)");
    c.read_answer()
        .unwrap_or_else(|| panic!("no answer to GET {path}"))
}
