//! The protocol logic shared by the blocking and async front ends, with no I/O: the
//! handshake state machine, the response reader that cuts frames out of a byte stream,
//! and the matching of (possibly out-of-order) responses to requests by request id.
//! The front ends only move bytes and enforce timeouts.

use std::collections::HashMap;

use nextdb_proto::frame::{self, HEADER_BYTES};
use nextdb_proto::limits::{MAX_FRAME_BYTES, MAX_STRING_BYTES, MAX_VERSION, MIN_VERSION};
use nextdb_proto::scram::{self, ClientExchange};
use nextdb_proto::{ErrorCode, Hello, HelloOk, Request, Response};

use crate::config::Config;
use crate::error::{Error, Result};

/// The request id of HELLO and AUTH: the handshake is strictly one frame at a time.
pub(crate) const HANDSHAKE_ID: u32 = 0;

/// One decoded response frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub request_id: u32,
    pub opcode: u8,
    pub response: Response,
}

/// What the front end does after feeding the handshake a frame.
pub(crate) enum Step {
    /// Write these bytes, then read the next frame.
    Send(Vec<u8>),
    /// The session is ready.
    Done(HelloOk),
}

/// The client side of HELLO / AUTH.
pub(crate) struct Handshake {
    exchange: Option<ClientExchange>,
    password: String,
    /// Set once HELLO_OK asked for the AUTH step.
    hello_ok: Option<HelloOk>,
}

impl Handshake {
    /// Returns the handshake and the HELLO frame to send.
    pub fn start(cfg: &Config) -> Result<(Handshake, Vec<u8>)> {
        let (exchange, mechanism, auth_data, password) = match &cfg.user {
            Some(user) => {
                let password = cfg.password.clone().ok_or_else(|| {
                    Error::Auth(format!("user {user:?} is configured without a password"))
                })?;
                let (ex, first) = ClientExchange::start(user);
                (Some(ex), scram::MECHANISM, first, password)
            }
            None => (None, scram::MECHANISM_NONE, Vec::new(), String::new()),
        };
        if cfg.client_name.len() > MAX_STRING_BYTES || auth_data.len() > MAX_STRING_BYTES {
            return Err(Error::InvalidArgument(
                "client name or user name too long".into(),
            ));
        }
        let hello = Request::Hello(Hello {
            min_version: MIN_VERSION,
            max_version: MAX_VERSION,
            client_name: cfg.client_name.clone(),
            mechanism: mechanism.to_owned(),
            auth_data,
        });
        let mut buf = Vec::new();
        hello.encode(HANDSHAKE_ID, &mut buf);
        Ok((
            Handshake {
                exchange,
                password,
                hello_ok: None,
            },
            buf,
        ))
    }

    pub fn step(&mut self, f: Frame) -> Result<Step> {
        if f.request_id != HANDSHAKE_ID {
            return Err(Error::UnexpectedResponse(format!(
                "request id {} during the handshake",
                f.request_id
            )));
        }
        match (self.hello_ok.is_some(), f.response) {
            (_, Response::Error { code, message }) => {
                // AUTH_FAILED is a credentials problem, whoever noticed it.
                Err(if code == ErrorCode::AuthFailed as u16 {
                    Error::Auth(message)
                } else {
                    Error::server(code, message)
                })
            }
            (false, Response::HelloOk(h)) => {
                if !(MIN_VERSION..=MAX_VERSION).contains(&h.version) {
                    return Err(Error::UnexpectedResponse(format!(
                        "server chose protocol version {}, we speak {MIN_VERSION}..={MAX_VERSION}",
                        h.version
                    )));
                }
                if h.authenticated {
                    if self.exchange.is_some() {
                        // We asked for SCRAM: a session granted without it proves
                        // nothing about the server (a man in the middle could say the
                        // same), so credentials mean mutual authentication or nothing.
                        return Err(Error::Auth(
                            "the server accepted the session without authenticating it \
                             (is it running --insecure?); refusing because credentials \
                             were configured"
                                .into(),
                        ));
                    }
                    return Ok(Step::Done(h));
                }
                let Some(ex) = self.exchange.as_mut() else {
                    return Err(Error::Auth(
                        "the server requires authentication; configure a user and password".into(),
                    ));
                };
                let data = ex.respond(&self.password, &h.auth_data)?;
                let mut buf = Vec::new();
                Request::Auth { data }.encode(HANDSHAKE_ID, &mut buf);
                self.hello_ok = Some(h);
                Ok(Step::Send(buf))
            }
            (true, Response::AuthOk { data }) => {
                // Mutual authentication: a server that does not hold our verifier
                // cannot produce this signature.
                if let Some(ex) = &self.exchange {
                    ex.verify(&data)?;
                }
                self.hello_ok
                    .take()
                    .map(Step::Done)
                    .ok_or_else(|| Error::UnexpectedResponse("AUTH_OK twice".into()))
            }
            (_, other) => Err(Error::UnexpectedResponse(format!(
                "{} during the handshake",
                response_name(&other)
            ))),
        }
    }
}

/// Fills `Connection::hello_ok` until the handshake has produced the real one.
pub(crate) fn placeholder_hello() -> HelloOk {
    HelloOk {
        version: 0,
        server_name: String::new(),
        shard: 0,
        shards: 0,
        slots: 0,
        authenticated: false,
        auth_data: Vec::new(),
        partitions: Vec::new(),
        shard_ports: Vec::new(),
    }
}

/// Accumulates bytes read from the socket and cuts complete frames out of them.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const READ_CHUNK: usize = 16 * 1024;
/// A buffer grown for a large response is given back once it drains, so an idle
/// pooled connection does not hold up to 32 MiB.
const KEEP_BUFFER: usize = 256 * 1024;

impl Default for ResponseReader {
    fn default() -> ResponseReader {
        ResponseReader {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        }
    }
}

impl ResponseReader {
    /// Free space to read into; call [`filled`](Self::filled) with the count read.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUFFER {
                self.buf = vec![0; READ_CHUNK];
            }
        }
        if self.end == self.buf.len() {
            // Move the partial frame to the front, then make room for all of it.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            let pending = &self.buf[..self.end];
            let want = frame::frame_total_hint(pending)
                .unwrap_or(0)
                .min(MAX_FRAME_BYTES + 4)
                .max(self.end + READ_CHUNK);
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete frame, if the buffer holds one. A framing error leaves the
    /// stream unusable: the caller must drop the connection.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let avail = &self.buf[self.start..self.end];
        let Some(h) = frame::decode_header(avail, MAX_FRAME_BYTES)? else {
            return Ok(None);
        };
        let response = Response::decode(h.opcode, h.flags, &avail[HEADER_BYTES..h.total])?;
        self.start += h.total;
        Ok(Some(Frame {
            request_id: h.request_id,
            opcode: h.opcode,
            response,
        }))
    }
}

/// Hands out request ids: never 0, which the handshake uses.
#[derive(Debug, Default)]
pub(crate) struct IdGen(u32);

impl IdGen {
    pub fn next_id(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1);
        if self.0 == HANDSHAKE_ID {
            self.0 = 1;
        }
        self.0
    }
}

/// The requests of one round trip, waiting for their responses.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Request id -> position in the round trip.
    slots: HashMap<u32, usize>,
    opcodes: Vec<u8>,
    out: Vec<Option<Response>>,
    left: usize,
}

impl Pending {
    /// Validates and encodes `reqs` into `buf` (one write), numbering them from `ids`.
    pub fn encode(reqs: &[Request], ids: &mut IdGen, buf: &mut Vec<u8>) -> Result<Pending> {
        let mut slots = HashMap::with_capacity(reqs.len());
        let mut opcodes = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            validate(req)?;
            let id = ids.next_id();
            let start = buf.len();
            req.encode(id, buf);
            if buf.len() - start - 4 > MAX_FRAME_BYTES {
                return Err(Error::InvalidArgument(format!(
                    "request of {} bytes exceeds the frame limit of {MAX_FRAME_BYTES}",
                    buf.len() - start
                )));
            }
            slots.insert(id, i);
            opcodes.push(req.opcode());
        }
        Ok(Pending {
            slots,
            opcodes,
            out: vec![None; reqs.len()],
            left: reqs.len(),
        })
    }

    pub fn is_done(&self) -> bool {
        self.left == 0
    }

    /// Files a response under its request. An error frame for no pending request is the
    /// server speaking about the whole connection (e.g. shutting down): it fails the
    /// round trip.
    pub fn accept(&mut self, f: Frame) -> Result<()> {
        let Some(i) = self.slots.remove(&f.request_id) else {
            return Err(match f.response {
                Response::Error { code, message } => Error::server(code, message),
                other => Error::UnexpectedResponse(format!(
                    "{} for request id {}, which is not pending",
                    response_name(&other),
                    f.request_id
                )),
            });
        };
        if f.opcode != self.opcodes[i] && !matches!(f.response, Response::Error { .. }) {
            return Err(Error::UnexpectedResponse(format!(
                "opcode 0x{:02x} answering a request of opcode 0x{:02x}",
                f.opcode, self.opcodes[i]
            )));
        }
        self.out[i] = Some(f.response);
        self.left -= 1;
        Ok(())
    }

    /// The responses in request order. Call once [`is_done`](Self::is_done).
    pub fn finish(self) -> Vec<Response> {
        self.out.into_iter().flatten().collect()
    }
}

/// Whether any response is an error after which the server closes the connection.
pub(crate) fn closes_connection(responses: &[Response]) -> bool {
    responses.iter().any(|r| match r {
        Response::Error { code, .. } => {
            ErrorCode::from_u16(*code).is_none_or(ErrorCode::closes_connection)
        }
        _ => false,
    })
}

/// Whether a failed round trip leaves the connection unusable: every failure after
/// bytes may have been written does, since a late response could still arrive. Only a
/// request rejected before sending leaves it clean.
pub(crate) fn breaks_connection(e: &Error) -> bool {
    !matches!(e, Error::InvalidArgument(_))
}

/// `Response::Error` becomes `Err(Error::Server)`.
pub(crate) fn into_result(r: Response) -> Result<Response> {
    match r {
        Response::Error { code, message } => Err(Error::server(code, message)),
        r => Ok(r),
    }
}

/// Checks the limits the server enforces while decoding (`Request::check_limits`). A
/// server answers a body it cannot decode with an error and may close the connection,
/// so catching these here keeps the connection (and the rest of a pipeline) alive and
/// gives a clear error.
pub(crate) fn validate(req: &Request) -> Result<()> {
    if matches!(req, Request::Hello(_) | Request::Auth { .. }) {
        return Err(Error::InvalidArgument(
            "HELLO and AUTH belong to the handshake, which the connection performs".into(),
        ));
    }
    req.check_limits()
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// A short name of a response kind for error messages (not its payload, which may be
/// large or sensitive).
pub(crate) fn response_name(r: &Response) -> &'static str {
    match r {
        Response::HelloOk(_) => "HELLO_OK",
        Response::AuthOk { .. } => "AUTH_OK",
        Response::Pong { .. } => "PONG",
        Response::Stats { .. } => "STATS",
        Response::Backup { .. } => "BACKUP",
        Response::Config { .. } => "CONFIG",
        Response::Value(_) => "VALUE",
        Response::Done => "DONE",
        Response::Scan { .. } => "SCAN",
        Response::Batch(_) => "BATCH",
        Response::Cas { .. } => "CAS",
        Response::Int(_) => "INT",
        Response::Found(_) => "FOUND",
        Response::Ttl(_) => "TTL",
        Response::Error { .. } => "ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextdb_proto::limits::{MAX_KEY_BYTES, MAX_TTL_MS};
    use nextdb_proto::message::op;

    fn opcode_of(r: &Response) -> u8 {
        match r {
            Response::Value(_) => op::GET,
            Response::Done => op::PUT,
            _ => op::PING,
        }
    }

    fn frame_bytes(id: u32, r: &Response) -> Vec<u8> {
        let mut b = Vec::new();
        r.encode(opcode_of(r), id, &mut b);
        b
    }

    #[test]
    fn reader_cuts_frames_across_arbitrary_reads() {
        let mut stream = Vec::new();
        let big = vec![7u8; 100_000];
        stream.extend(frame_bytes(1, &Response::Value(Some(big.clone()))));
        stream.extend(frame_bytes(2, &Response::Done));
        stream.extend(frame_bytes(3, &Response::Value(None)));
        for chunk in [1usize, 3, 1000, 50_000] {
            let mut r = ResponseReader::default();
            let mut got = Vec::new();
            let mut fed = 0;
            while got.len() < 3 {
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
                if got.len() == 3 {
                    break;
                }
                let space = r.spare();
                let n = chunk.min(space.len()).min(stream.len() - fed);
                space[..n].copy_from_slice(&stream[fed..fed + n]);
                fed += n;
                r.filled(n);
            }
            assert_eq!(got[0].response, Response::Value(Some(big.clone())));
            assert_eq!(got[1].request_id, 2);
            assert_eq!(got[2].response, Response::Value(None));
        }
    }

    #[test]
    fn reader_rejects_oversized_frames() {
        let mut r = ResponseReader::default();
        let len = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes();
        r.spare()[..4].copy_from_slice(&len);
        r.filled(4);
        assert!(matches!(r.next_frame(), Err(Error::Protocol(_))));
    }

    #[test]
    fn pending_matches_out_of_order_and_rejects_strangers() {
        let reqs = vec![
            Request::Get { key: b"a".to_vec() },
            Request::Put {
                key: b"b".to_vec(),
                value: b"v".to_vec(),
                ttl_ms: None,
            },
        ];
        let mut ids = IdGen::default();
        let mut buf = Vec::new();
        let mut p = Pending::encode(&reqs, &mut ids, &mut buf).unwrap();
        p.accept(Frame {
            request_id: 2,
            opcode: op::PUT,
            response: Response::Done,
        })
        .unwrap();
        assert!(!p.is_done());
        assert!(
            p.accept(Frame {
                request_id: 9,
                opcode: op::GET,
                response: Response::Value(None),
            })
            .is_err()
        );
        p.accept(Frame {
            request_id: 1,
            opcode: op::GET,
            response: Response::Value(None),
        })
        .unwrap();
        assert!(p.is_done());
        assert_eq!(p.finish(), vec![Response::Value(None), Response::Done]);
    }

    #[test]
    fn pending_rejects_a_mismatched_opcode() {
        let mut ids = IdGen::default();
        let mut p =
            Pending::encode(&[Request::Get { key: vec![] }], &mut ids, &mut Vec::new()).unwrap();
        assert!(
            p.accept(Frame {
                request_id: 1,
                opcode: op::PUT,
                response: Response::Done,
            })
            .is_err()
        );
    }

    #[test]
    fn ids_skip_the_handshake_id() {
        let mut ids = IdGen(u32::MAX - 1);
        assert_eq!(ids.next_id(), u32::MAX);
        assert_eq!(ids.next_id(), 1);
    }

    #[test]
    fn validation_catches_what_the_server_would_close_for() {
        assert!(
            validate(&Request::Scan {
                start: vec![],
                end: None,
                limit: 0,
                token: vec![],
            })
            .is_err()
        );
        assert!(
            validate(&Request::Expire {
                key: vec![],
                ttl_ms: Some(MAX_TTL_MS + 1),
            })
            .is_err()
        );
        assert!(
            validate(&Request::Get {
                key: vec![0; MAX_KEY_BYTES + 1],
            })
            .is_err()
        );
        assert!(validate(&Request::Auth { data: vec![] }).is_err());
        assert!(validate(&Request::Get { key: vec![0; 10] }).is_ok());
    }

    #[test]
    fn handshake_without_user_sends_none() {
        let (mut hs, hello) = Handshake::start(&Config::default()).unwrap();
        let h = frame::decode_header(&hello, MAX_FRAME_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(h.request_id, HANDSHAKE_ID);
        let Request::Hello(req) =
            Request::decode(h.opcode, h.flags, &hello[HEADER_BYTES..]).unwrap()
        else {
            panic!("not a HELLO");
        };
        assert_eq!(req.mechanism, "NONE");
        // A server that insists on authentication gets a clear error.
        let r = hs.step(Frame {
            request_id: 0,
            opcode: op::HELLO,
            response: Response::HelloOk(HelloOk {
                version: 1,
                server_name: "s".into(),
                shard: 0,
                shards: 1,
                slots: 1,
                authenticated: false,
                auth_data: b"r=x,s=AAAA,i=4096".to_vec(),
                partitions: Vec::new(),
                shard_ports: Vec::new(),
            }),
        });
        assert!(matches!(r, Err(Error::Auth(_))));
    }

    #[test]
    fn user_without_password_is_an_auth_error() {
        let c = Config {
            user: Some("alice".into()),
            ..Config::default()
        };
        assert!(matches!(Handshake::start(&c), Err(Error::Auth(_))));
    }
}
