//! One HTTP connection on its core: read a head within its limits and deadline,
//! skip a small body, answer, repeat while the client keeps the connection alive.

use super::HttpConfig;
use super::request::{Head, HttpError, Method, Parsed, parse_head};
use super::response::Response;
use super::routes;
use crate::config::{
    HTTP_IDLE_TIMEOUT, HTTP_LINGER_MAX_BYTES, HTTP_LINGER_TIMEOUT,
    HTTP_MAX_REQUESTS_PER_CONNECTION, HTTP_READ_CHUNK_BYTES, HTTP_REQUEST_TIMEOUT,
    HTTP_WRITE_TIMEOUT,
};
use futures_lite::future::FutureExt;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use nextdb_shard::ShardContext;
use std::time::Instant;

/// Why a connection stops reading requests.
enum End {
    /// The client closed, the socket failed, or the node is stopping: no answer.
    Quiet,
    /// Answer this error, then close.
    Error(HttpError),
}

enum Read {
    Bytes(usize),
    Closed,
    Deadline,
    Stop,
}

/// Serves requests on `stream` until the client or a limit ends the connection.
pub async fn serve_connection(ctx: &ShardContext, cfg: &HttpConfig, mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(HTTP_READ_CHUNK_BYTES);
    for served in 1..=HTTP_MAX_REQUESTS_PER_CONNECTION {
        let head = match read_request(ctx, &mut stream, &mut buf).await {
            Ok(h) => h,
            Err(End::Quiet) => break,
            Err(End::Error(e)) => {
                let r = Response::text(e.status(), e.to_string());
                if write(&mut stream, &r.encode(false, false)).await {
                    linger(ctx, &mut stream).await;
                }
                break;
            }
        };
        buf.drain(..head.head_bytes + head.body_bytes);
        let keep_alive = head.keep_alive && served < HTTP_MAX_REQUESTS_PER_CONNECTION;
        let r = routes::respond(ctx, cfg, &head).await;
        let wire = r.encode(head.method == Method::Head, keep_alive);
        if !write(&mut stream, &wire).await || !keep_alive {
            break;
        }
    }
    let _ = stream.close().await;
}

/// Reads until `buf` holds one whole request (head and body). Waiting for its
/// first byte is bounded by the idle timeout; from the first byte, the whole
/// request must arrive within `HTTP_REQUEST_TIMEOUT` (a client dribbling bytes is
/// cut off there, however steadily it sends).
async fn read_request(
    ctx: &ShardContext,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Head, End> {
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + HTTP_REQUEST_TIMEOUT);
    loop {
        if !buf.is_empty() {
            match parse_head(buf) {
                Parsed::Complete(h) if buf.len() >= h.head_bytes + h.body_bytes => return Ok(h),
                Parsed::Complete(_) | Parsed::Partial => {}
                Parsed::Invalid(e) => return Err(End::Error(e)),
            }
        }
        let until = deadline.unwrap_or_else(|| Instant::now() + HTTP_IDLE_TIMEOUT);
        match read_some(ctx, stream, buf, until).await {
            Read::Bytes(_) => {
                deadline.get_or_insert_with(|| Instant::now() + HTTP_REQUEST_TIMEOUT);
            }
            Read::Deadline if !buf.is_empty() => return Err(End::Error(HttpError::Timeout)),
            Read::Deadline | Read::Closed | Read::Stop => return Err(End::Quiet),
        }
    }
}

/// One read of at most `HTTP_READ_CHUNK_BYTES` appended to `buf`, until `until`.
async fn read_some(
    ctx: &ShardContext,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    until: Instant,
) -> Read {
    let mut chunk = [0u8; HTTP_READ_CHUNK_BYTES];
    let left = until.saturating_duration_since(Instant::now());
    let r = async {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => Read::Closed,
            Ok(n) => Read::Bytes(n),
        }
    }
    .or(async {
        glommio::timer::sleep(left).await;
        Read::Deadline
    })
    .or(async {
        ctx.stopped().await;
        Read::Stop
    })
    .await;
    if let Read::Bytes(n) = r {
        buf.extend_from_slice(&chunk[..n]);
    }
    r
}

/// After an error answer: stops sending, then reads and drops what the client is
/// still sending (bounded in bytes and time) before the close. Closing with unread
/// bytes makes the kernel reset the connection, and a reset can destroy the answer
/// before the client reads it (a client still sending a huge head would see a
/// reset, not the 431).
async fn linger(ctx: &ShardContext, stream: &mut TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
        return;
    }
    let until = Instant::now() + HTTP_LINGER_TIMEOUT;
    let mut drained = 0usize;
    let mut sink = Vec::with_capacity(HTTP_READ_CHUNK_BYTES);
    while drained < HTTP_LINGER_MAX_BYTES {
        sink.clear();
        match read_some(ctx, stream, &mut sink, until).await {
            Read::Bytes(n) => drained += n,
            Read::Closed | Read::Deadline | Read::Stop => return,
        }
    }
}

/// Writes `wire`, giving up after `HTTP_WRITE_TIMEOUT`; false if it did not finish.
async fn write(stream: &mut TcpStream, wire: &[u8]) -> bool {
    async { stream.write_all(wire).await.is_ok() }
        .or(async {
            glommio::timer::sleep(HTTP_WRITE_TIMEOUT).await;
            false
        })
        .await
}
