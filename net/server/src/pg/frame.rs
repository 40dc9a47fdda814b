//! Framing of PostgreSQL client messages: splits one whole message off the input,
//! bounds its size, and checks its structure before `pgwire`'s codec decodes it.
//! pgwire's decoders read past a malformed body (they panic on truncation and read
//! a following message's bytes); here each message is cut out alone and walked
//! first, so bad bytes become a [`FrameError`], never a panic.

use crate::config::{PG_MAX_MESSAGE_BYTES, PG_MAX_STARTUP_BYTES};
use bytes::{Buf, BytesMut};
use pgwire::messages::startup::{SASLInitialResponse, SASLResponse, Startup};
use pgwire::messages::{DecodeContext, Message, PgWireFrontendMessage, ProtocolVersion};

/// Request codes of the untyped first packet.
pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0")]
    Protocol(u16, u16),
    #[error("invalid frontend message type {0}")]
    UnknownType(u8),
}

/// The first packet of a connection.
#[derive(Debug)]
pub enum FirstPacket {
    SslRequest,
    GssEncRequest,
    Cancel,
    Startup(Startup),
}

/// Cuts the next first-phase packet (untyped: length, then code) off `buf`.
pub fn next_startup(buf: &mut BytesMut) -> Result<Option<FirstPacket>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(FrameError::BadLength(len as i64));
    }
    let len = len as usize;
    if len > PG_MAX_STARTUP_BYTES {
        return Err(FrameError::TooLarge {
            len,
            limit: PG_MAX_STARTUP_BYTES,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    let code = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    match code {
        SSL_REQUEST_CODE => Ok(Some(FirstPacket::SslRequest)),
        GSSENC_REQUEST_CODE => Ok(Some(FirstPacket::GssEncRequest)),
        CANCEL_REQUEST_CODE => Ok(Some(FirstPacket::Cancel)),
        _ => {
            let (major, minor) = ((code >> 16) as u16, code as u16);
            if major != 3 {
                return Err(FrameError::Protocol(major, minor));
            }
            check_startup_params(&packet[8..])?;
            let ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
            match Startup::decode(&mut packet, &ctx) {
                Ok(Some(s)) => Ok(Some(FirstPacket::Startup(s))),
                _ => Err(FrameError::Malformed("startup")),
            }
        }
    }
}

/// Startup parameters: pairs of C strings, then one NUL.
fn check_startup_params(mut b: &[u8]) -> Result<(), FrameError> {
    loop {
        let key = cstring(&mut b, "startup")?;
        if key.is_empty() {
            return if b.is_empty() {
                Ok(())
            } else {
                Err(FrameError::Malformed("startup"))
            };
        }
        cstring(&mut b, "startup")?;
    }
}

/// Cuts the next typed message (type byte, length, body) off `buf`; None: incomplete.
pub fn next_message(buf: &mut BytesMut) -> Result<Option<(u8, BytesMut)>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(len as i64));
    }
    let total = len as usize + 1;
    if total > PG_MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLarge {
            len: total,
            limit: PG_MAX_MESSAGE_BYTES,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((tag, buf.split_to(total))))
}

/// Decodes one typed message cut by [`next_message`], after checking its body.
pub fn decode(tag: u8, mut msg: BytesMut) -> Result<PgWireFrontendMessage, FrameError> {
    check_body(tag, &msg[5..])?;
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    match PgWireFrontendMessage::decode(&mut msg, &ctx) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(FrameError::Malformed("incomplete")),
        Err(_) => Err(FrameError::UnknownType(tag)),
    }
}

fn cstring<'a>(b: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], FrameError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(FrameError::Malformed(what))?;
    let s = &b[..end];
    *b = &b[end + 1..];
    Ok(s)
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
    if b.len() < n {
        return Err(FrameError::Malformed(what));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn int16(b: &mut &[u8], what: &'static str) -> Result<i16, FrameError> {
    Ok(take(b, 2, what)?.get_i16())
}

fn int32(b: &mut &[u8], what: &'static str) -> Result<i32, FrameError> {
    Ok(take(b, 4, what)?.get_i32())
}

/// Walks a body exactly as pgwire's decoder for `tag` will read it.
fn check_body(tag: u8, mut b: &[u8]) -> Result<(), FrameError> {
    let b = &mut b;
    match tag {
        b'Q' => {
            cstring(b, "Query")?;
        }
        b'P' => {
            cstring(b, "Parse")?;
            cstring(b, "Parse")?;
            let n = int16(b, "Parse")? as u16 as usize;
            take(b, n * 4, "Parse")?;
        }
        b'B' => check_bind(b)?,
        b'D' | b'C' => {
            take(b, 1, "Describe/Close")?;
            cstring(b, "Describe/Close")?;
        }
        b'E' => {
            cstring(b, "Execute")?;
            int32(b, "Execute")?;
        }
        b'S' | b'H' | b'X' | b'c' => {}
        b'p' | b'd' => {}
        b'f' => {
            cstring(b, "CopyFail")?;
        }
        other => return Err(FrameError::UnknownType(other)),
    }
    if !b.is_empty() && !matches!(tag, b'p' | b'd') {
        return Err(FrameError::Malformed("trailing bytes in"));
    }
    Ok(())
}

fn check_bind(b: &mut &[u8]) -> Result<(), FrameError> {
    const W: &str = "Bind";
    cstring(b, W)?;
    cstring(b, W)?;
    let formats = int16(b, W)? as u16 as usize;
    take(b, formats * 2, W)?;
    let params = int16(b, W)? as u16 as usize;
    for _ in 0..params {
        let len = int32(b, W)?;
        if len >= 0 {
            take(b, len as usize, W)?;
        } else if len != -1 {
            return Err(FrameError::Malformed(W));
        }
    }
    let results = int16(b, W)? as u16 as usize;
    take(b, results * 2, W)?;
    Ok(())
}

/// A password-family message as SASLInitialResponse (mechanism, then data).
pub fn sasl_initial(body: BytesMut) -> Result<SASLInitialResponse, FrameError> {
    let mut b: &[u8] = &body;
    cstring(&mut b, "SASLInitialResponse")?;
    let len = int32(&mut b, "SASLInitialResponse")?;
    if !(len == -1 && b.is_empty() || len >= 0 && len as usize == b.len()) {
        return Err(FrameError::Malformed("SASLInitialResponse"));
    }
    let msg = pgwire::messages::startup::PasswordMessageFamily::Raw(body);
    msg.into_sasl_initial_response()
        .map_err(|_| FrameError::Malformed("SASLInitialResponse"))
}

/// A password-family message as SASLResponse (all data).
pub fn sasl_response(body: BytesMut) -> Result<SASLResponse, FrameError> {
    let msg = pgwire::messages::startup::PasswordMessageFamily::Raw(body);
    msg.into_sasl_response()
        .map_err(|_| FrameError::Malformed("SASLResponse"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(tag: u8, body: &[u8]) -> BytesMut {
        let mut m = BytesMut::new();
        m.extend_from_slice(&[tag]);
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn truncated_and_oversized_messages_are_errors_not_panics() {
        // A Bind whose parameter claims more bytes than the message holds.
        let mut body = b"\0\0".to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&100i32.to_be_bytes());
        let mut buf = typed(b'B', &body);
        buf.extend_from_slice(&typed(b'S', &[]));
        let (tag, msg) = next_message(&mut buf).unwrap().unwrap();
        assert_eq!(decode(tag, msg).unwrap_err(), FrameError::Malformed("Bind"));
        // The next message is intact: the bad one did not read into it.
        let (tag, msg) = next_message(&mut buf).unwrap().unwrap();
        assert!(matches!(
            decode(tag, msg),
            Ok(PgWireFrontendMessage::Sync(_))
        ));
        // Every truncation of a valid Parse is refused.
        let parse = b"s\0SELECT 1\0\0\x01\0\0\0\x17";
        for cut in 0..parse.len() {
            let (tag, msg) = next_message(&mut typed(b'P', &parse[..cut]))
                .unwrap()
                .unwrap();
            assert!(decode(tag, msg).is_err(), "cut {cut}");
        }
        let mut huge = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            next_message(&mut huge),
            Err(FrameError::TooLarge { .. })
        ));
        let mut bad = BytesMut::from(&b"Q\0\0\0\x02"[..]);
        assert_eq!(next_message(&mut bad), Err(FrameError::BadLength(2)));
        let mut unknown = typed(b'z', &[]);
        let (tag, msg) = next_message(&mut unknown).unwrap().unwrap();
        assert_eq!(decode(tag, msg).unwrap_err(), FrameError::UnknownType(b'z'));
    }

    #[test]
    fn startup_packets_are_checked() {
        let mut ssl = BytesMut::new();
        ssl.extend_from_slice(&8i32.to_be_bytes());
        ssl.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        assert!(matches!(
            next_startup(&mut ssl),
            Ok(Some(FirstPacket::SslRequest))
        ));
        let mut p = BytesMut::new();
        let body = b"user\0alice\0database\0db\0\0";
        p.extend_from_slice(&((8 + body.len()) as i32).to_be_bytes());
        p.extend_from_slice(&196608i32.to_be_bytes());
        p.extend_from_slice(body);
        let Ok(Some(FirstPacket::Startup(s))) = next_startup(&mut p.clone()) else {
            panic!("startup not decoded");
        };
        assert_eq!(s.parameters.get("user").map(String::as_str), Some("alice"));
        // Without its final NUL the packet is malformed.
        let mut cut = BytesMut::new();
        cut.extend_from_slice(&((8 + body.len() - 1) as i32).to_be_bytes());
        cut.extend_from_slice(&196608i32.to_be_bytes());
        cut.extend_from_slice(&body[..body.len() - 1]);
        assert!(next_startup(&mut cut).is_err());
        let mut v2 = BytesMut::new();
        v2.extend_from_slice(&8i32.to_be_bytes());
        v2.extend_from_slice(&131072i32.to_be_bytes());
        assert_eq!(
            next_startup(&mut v2).unwrap_err(),
            FrameError::Protocol(2, 0)
        );
    }
}
