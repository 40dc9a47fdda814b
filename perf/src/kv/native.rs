//! The native protocol v1 for the load generator, built on `nextdb-proto`'s framing.
//!
//! GET and PUT frames are written straight into the send buffer with the crate's frame
//! and field writers (no `Request` value, no key copy per request), and replies are
//! decoded in place; both are checked against `Request::encode` / `Response::decode`
//! in the tests. Replies carry the request id they answer (they may come back out of
//! order).

use nextdb_proto::frame::{self, HEADER_BYTES, STATUS_ERROR, STATUS_OK};
use nextdb_proto::limits::{MAX_FRAME_BYTES, MAX_VALUE_BYTES, MAX_VERSION, MIN_VERSION};
use nextdb_proto::message::op;
use nextdb_proto::wire::{Reader, Writer};
use nextdb_proto::{ErrorCode, Hello, ProtoError, Request, Response};

/// What a reply said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A GET found its key; the value's length.
    Hit(usize),
    /// A GET did not.
    Miss,
    /// A PUT applied (or PING answered).
    Done,
    /// An error response; `closes` when the server drops the connection after it.
    Error {
        code: u16,
        message: String,
        closes: bool,
    },
}

/// Appends a GET frame.
#[inline]
pub fn encode_get(key: &[u8], request_id: u32, out: &mut Vec<u8>) {
    let start = frame::begin_frame(out, op::GET, 0, request_id);
    Writer::new(out).bytes(key);
    frame::end_frame(out, start);
}

/// Appends a PUT frame (no TTL).
#[inline]
pub fn encode_put(key: &[u8], value: &[u8], request_id: u32, out: &mut Vec<u8>) {
    let start = frame::begin_frame(out, op::PUT, 0, request_id);
    let mut w = Writer::new(out);
    w.bytes(key);
    w.bytes(value);
    w.u64(0);
    frame::end_frame(out, start);
}

/// The HELLO of a client without credentials (the server runs with `--insecure`).
pub fn encode_hello(request_id: u32, out: &mut Vec<u8>) {
    Request::Hello(Hello {
        min_version: MIN_VERSION,
        max_version: MAX_VERSION,
        client_name: "nextdb-perf".into(),
        mechanism: "NONE".into(),
        auth_data: Vec::new(),
    })
    .encode(request_id, out);
}

pub fn encode_ping(request_id: u32, out: &mut Vec<u8>) {
    Request::Ping {
        payload: b"nextdb-perf".to_vec(),
    }
    .encode(request_id, out);
}

fn error_outcome(body: &[u8]) -> Result<Outcome, ProtoError> {
    match Response::decode(op::GET, STATUS_ERROR, body)? {
        Response::Error { code, message } => Ok(Outcome::Error {
            code,
            closes: ErrorCode::from_u16(code).is_none_or(ErrorCode::closes_connection),
            message,
        }),
        _ => Err(ProtoError::BadValue {
            what: "status",
            value: STATUS_ERROR.into(),
        }),
    }
}

/// Decodes one reply at the start of `buf`: `Ok(None)` when more bytes are needed,
/// otherwise (request id, outcome, bytes taken). GET and PUT replies are read in place;
/// any other opcode goes through `Response::decode` (HELLO replies: use
/// [`decode_frame`]).
pub fn decode(buf: &[u8]) -> Result<Option<(u32, Outcome, usize)>, ProtoError> {
    let Some(h) = frame::decode_header(buf, MAX_FRAME_BYTES)? else {
        return Ok(None);
    };
    let body = &buf[HEADER_BYTES..h.total];
    let outcome = if h.flags == STATUS_ERROR {
        error_outcome(body)?
    } else if h.flags != STATUS_OK {
        return Err(ProtoError::BadValue {
            what: "status",
            value: h.flags.into(),
        });
    } else {
        match h.opcode {
            op::GET => {
                let mut r = Reader::new(body);
                let found = match r.u8("value")? {
                    0 => None,
                    1 => Some(r.bytes("value", MAX_VALUE_BYTES)?.len()),
                    v => {
                        return Err(ProtoError::BadValue {
                            what: "value",
                            value: v.into(),
                        });
                    }
                };
                r.finish()?;
                found.map_or(Outcome::Miss, Outcome::Hit)
            }
            op::PUT => {
                Reader::new(body).finish()?;
                Outcome::Done
            }
            other => match Response::decode(other, h.flags, body)? {
                Response::Value(Some(v)) => Outcome::Hit(v.len()),
                Response::Value(None) => Outcome::Miss,
                _ => Outcome::Done,
            },
        }
    };
    Ok(Some((h.request_id, outcome, h.total)))
}

/// Decodes one whole frame into a `Response` (handshake, readiness checks).
pub fn decode_frame(buf: &[u8]) -> Result<Option<(u32, Response, usize)>, ProtoError> {
    let Some(h) = frame::decode_header(buf, MAX_FRAME_BYTES)? else {
        return Ok(None);
    };
    let resp = Response::decode(h.opcode, h.flags, &buf[HEADER_BYTES..h.total])?;
    Ok(Some((h.request_id, resp, h.total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_crate_encoder() {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        encode_get(b"key:000000000042", 7, &mut ours);
        Request::Get {
            key: b"key:000000000042".to_vec(),
        }
        .encode(7, &mut theirs);
        assert_eq!(ours, theirs);
        ours.clear();
        theirs.clear();
        encode_put(b"k", b"value", 9, &mut ours);
        Request::Put {
            key: b"k".to_vec(),
            value: b"value".to_vec(),
            ttl_ms: None,
        }
        .encode(9, &mut theirs);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn decodes_replies_like_the_crate() {
        let mut b = Vec::new();
        Response::Value(Some(b"v".to_vec())).encode(op::GET, 3, &mut b);
        Response::Value(None).encode(op::GET, 4, &mut b);
        Response::Done.encode(op::PUT, 5, &mut b);
        Response::error(ErrorCode::Busy, "later").encode(op::GET, 6, &mut b);
        Response::error(ErrorCode::Malformed, "bad").encode(op::GET, 7, &mut b);
        let mut pos = 0;
        let mut got = Vec::new();
        while let Some((id, o, n)) = decode(&b[pos..]).unwrap() {
            got.push((id, o));
            pos += n;
        }
        assert_eq!(pos, b.len());
        assert_eq!(got[0], (3, Outcome::Hit(1)));
        assert_eq!(got[1], (4, Outcome::Miss));
        assert_eq!(got[2], (5, Outcome::Done));
        assert!(matches!(
            &got[3],
            (
                6,
                Outcome::Error {
                    code: 10,
                    closes: false,
                    ..
                }
            )
        ));
        assert!(matches!(
            &got[4],
            (
                7,
                Outcome::Error {
                    code: 1,
                    closes: true,
                    ..
                }
            )
        ));
        // Partial frames wait for more bytes.
        for cut in 0..b.len().min(30) {
            assert!(matches!(decode(&b[..cut]), Ok(None) | Ok(Some(_))));
        }
        assert_eq!(decode(&b[..5]).unwrap(), None);
        // A GET reply with trailing bytes is malformed.
        let mut bad = Vec::new();
        let s = frame::begin_frame(&mut bad, op::GET, STATUS_OK, 1);
        bad.extend_from_slice(&[0, 0]);
        frame::end_frame(&mut bad, s);
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn hello_is_a_none_mechanism_hello() {
        let mut b = Vec::new();
        encode_hello(1, &mut b);
        let h = frame::decode_header(&b, MAX_FRAME_BYTES).unwrap().unwrap();
        let Request::Hello(hello) = Request::decode(h.opcode, h.flags, &b[HEADER_BYTES..]).unwrap()
        else {
            panic!("not a hello")
        };
        assert_eq!(hello.mechanism, "NONE");
        assert!(hello.auth_data.is_empty());
        assert_eq!(
            (hello.min_version, hello.max_version),
            (MIN_VERSION, MAX_VERSION)
        );
    }
}
