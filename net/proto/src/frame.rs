//! Framing: every message in both directions is one frame.
//!
//! ```text
//! offset size  field
//! 0      4     length      u32 LE: bytes after this field (6 + body), 6..=max
//! 4      1     opcode      the operation (a response echoes its request's)
//! 5      1     flags       request: per-operation flags; response: status (0 OK, 1 ERROR)
//! 6      4     request_id  u32 LE, chosen by the client, echoed in the response
//! 10     ...   body
//! ```

use crate::error::ProtoError;
use crate::wire;

/// Bytes before the body.
pub const HEADER_BYTES: usize = 10;
/// Bytes of the header that the length field counts (opcode, flags, request id).
pub const LENGTH_COVERED_HEADER: usize = HEADER_BYTES - 4;

/// Response status values (the flags byte of a response).
pub const STATUS_OK: u8 = 0;
pub const STATUS_ERROR: u8 = 1;

/// A decoded frame header; the body is `buf[HEADER_BYTES..total]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub opcode: u8,
    pub flags: u8,
    pub request_id: u32,
    /// Bytes of the whole frame, length field included.
    pub total: usize,
}

impl FrameHeader {
    pub fn body_len(&self) -> usize {
        self.total - HEADER_BYTES
    }
}

/// Looks for one whole frame at the start of `buf`. `Ok(None)`: more bytes are needed
/// ([`frame_total_hint`] says how many in all once the length field has arrived). A length below the header or above `max_frame` is an
/// error: the stream cannot be resynchronised after it.
pub fn decode_header(buf: &[u8], max_frame: usize) -> Result<Option<FrameHeader>, ProtoError> {
    let Some(len) = wire::u32_at(buf, 0) else {
        return Ok(None);
    };
    if (len as usize) < LENGTH_COVERED_HEADER {
        return Err(ProtoError::FrameTooShort(len));
    }
    if len as usize > max_frame {
        return Err(ProtoError::FrameTooLarge {
            len: len as usize,
            max: max_frame,
        });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let request_id = wire::u32_at(buf, 6).ok_or(ProtoError::Truncated("request id"))?;
    Ok(Some(FrameHeader {
        opcode: buf[4],
        flags: buf[5],
        request_id,
        total,
    }))
}

/// Bytes the frame starting at `buf` will need in total, once its length is known.
pub fn frame_total_hint(buf: &[u8]) -> Option<usize> {
    wire::u32_at(buf, 0).map(|l| 4 + l as usize)
}

/// Starts a frame in `out`; returns the position to pass to [`end_frame`].
#[inline]
pub fn begin_frame(out: &mut Vec<u8>, opcode: u8, flags: u8, request_id: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, opcode, flags]);
    out.extend_from_slice(&request_id.to_le_bytes());
    start
}

/// Fills in the length field of the frame begun at `start`.
#[inline]
pub fn end_frame(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_limits() {
        let mut b = Vec::new();
        let s = begin_frame(&mut b, 0x20, 0, 77);
        b.extend_from_slice(b"body");
        end_frame(&mut b, s);
        let h = decode_header(&b, 1024).unwrap().unwrap();
        assert_eq!(
            (h.opcode, h.flags, h.request_id, h.total),
            (0x20, 0, 77, 14)
        );
        assert_eq!(&b[HEADER_BYTES..h.total], b"body");
        assert_eq!(decode_header(&b[..9], 1024).unwrap(), None);
        assert!(matches!(
            decode_header(&b, 5),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            decode_header(&[1, 0, 0, 0, 0], 1024),
            Err(ProtoError::FrameTooShort(1))
        ));
    }
}
