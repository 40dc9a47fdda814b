//! The byte side of one connection: the socket, its read buffer cut into frames, and
//! the responses queued for the next write. Owned by the connection's core; both the
//! handshake and the serving loop use it, in that order.

use crate::config::{READ_BUFFER_INITIAL_BYTES, READ_BUFFER_KEEP_BYTES};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use nextdb_proto::frame::{self, HEADER_BYTES};
use nextdb_proto::{ErrorCode, ProtoError, Request, Response};
use nextdb_shard::ShardContext;

/// One whole frame taken from the read buffer.
pub struct Frame {
    pub id: u32,
    pub opcode: u8,
    /// Encoded size of the frame: what the decoded request roughly holds in memory.
    pub bytes: usize,
    pub request: Result<Request, ProtoError>,
}

pub struct FrameIo<S> {
    pub stream: S,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Encoded responses not yet written.
    pub out: Vec<u8>,
    max_frame_bytes: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameIo<S> {
    pub fn new(stream: S, max_frame_bytes: usize) -> FrameIo<S> {
        FrameIo {
            stream,
            rbuf: vec![0; READ_BUFFER_INITIAL_BYTES],
            start: 0,
            end: 0,
            out: Vec::new(),
            max_frame_bytes,
        }
    }

    /// Whether unprocessed bytes wait in the read buffer.
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// Takes the next whole frame, if one is buffered. An error means the stream
    /// cannot be resynchronised (bad length): the connection must close.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        let buf = &self.rbuf[self.start..self.end];
        let Some(h) = frame::decode_header(buf, self.max_frame_bytes)? else {
            if let Some(total) = frame::frame_total_hint(buf)
                && total > self.rbuf.len() - self.start
            {
                self.make_room(total);
            }
            self.shrink_if_empty();
            return Ok(None);
        };
        let request = Request::decode(h.opcode, h.flags, &buf[HEADER_BYTES..h.total]);
        self.start += h.total;
        Ok(Some(Frame {
            id: h.request_id,
            opcode: h.opcode,
            bytes: h.total,
            request,
        }))
    }

    /// Reads more bytes from the socket into the buffer; 0 at end of stream.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.end == self.rbuf.len() {
            self.make_room(self.end - self.start + 1);
        }
        let n = self.stream.read(&mut self.rbuf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Writes every queued response; returns the bytes written.
    pub async fn flush(&mut self) -> std::io::Result<usize> {
        if self.out.is_empty() {
            return Ok(0);
        }
        self.stream.write_all(&self.out).await?;
        let n = self.out.len();
        self.out.clear();
        if self.out.capacity() > READ_BUFFER_KEEP_BYTES {
            self.out.shrink_to(READ_BUFFER_KEEP_BYTES);
        }
        Ok(n)
    }

    /// Queues an error that ends the connection, counting it in the core's stats.
    pub fn queue_fatal(
        &mut self,
        ctx: &ShardContext,
        id: u32,
        opcode: u8,
        code: ErrorCode,
        message: &str,
    ) {
        Response::error(code, message).encode(opcode, id, &mut self.out);
        let mut st = ctx.core.stats.borrow_mut();
        match code {
            ErrorCode::AuthFailed | ErrorCode::AuthRequired => st.conns.auth_failures += 1,
            _ => st.conns.protocol_errors += 1,
        }
    }

    /// Ensures `need` bytes of buffer from `start`, compacting or growing.
    fn make_room(&mut self, need: usize) {
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.rbuf.len() < need {
            let new_len = need.max(self.rbuf.len() * 2).min(self.max_frame_bytes + 4);
            self.rbuf.resize(new_len.max(need), 0);
        }
    }

    /// An idle connection goes back to a small buffer.
    fn shrink_if_empty(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.rbuf.len() > READ_BUFFER_KEEP_BYTES {
                self.rbuf.truncate(READ_BUFFER_INITIAL_BYTES);
                self.rbuf.shrink_to_fit();
            }
        }
    }
}
