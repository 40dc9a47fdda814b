//! A tiny fake NextDB server for the client tests, standing in until the real one
//! exists. It speaks protocol v1 through `nextdb-proto`, does the server side of
//! SCRAM-SHA-256 for user "alice" / password "pw", keeps data in a BTreeMap, and
//! answers every group of requests that arrive together in REVERSE order, so the
//! client's matching by request id is exercised on every pipeline.
//!
//! Keys with special behaviour:
//! - `busy-once:*`: the first request touching it gets BUSY, later ones succeed;
//! - `__hang`: never answered;
//! - `__drop`: the server closes the connection without answering;
//! - `__close_after`: answered, then the server closes the connection (as an idle
//!   timeout would).
//!
//! [`FakeServer::start_tls`] serves the same over TLS (rustls, from the first byte),
//! with a certificate made by [`TestCert`].

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nextdb_client::proto::frame::{HEADER_BYTES, decode_header};
use nextdb_client::proto::limits::{MAX_FRAME_BYTES, MAX_VERSION};
use nextdb_client::proto::message::op;
use nextdb_client::proto::scram::{MockAuthSecret, ServerExchange, Verifier};
use nextdb_client::proto::{BatchOp, BatchResult, ErrorCode, HelloOk, Request, Response, TtlState};
use nextdb_client::{Config, TlsConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Refuse mechanism NONE.
    pub require_auth: bool,
    /// Answer AUTH with a server signature that does not match.
    pub forge_signature: bool,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    /// Most connections open at the same time.
    pub max_concurrent: AtomicUsize,
    pub open: AtomicUsize,
    /// Data requests received (after the handshake).
    pub requests: AtomicUsize,
    /// Groups of more than one request answered in reverse order.
    pub reordered: AtomicUsize,
    pub busy_sent: AtomicUsize,
    pub scans: AtomicUsize,
    pub drops: AtomicUsize,
    pub hangs: AtomicUsize,
}

impl Stats {
    pub fn get(&self, c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }
}

/// Key -> (value, TTL in ms). TTLs are recorded, not enforced.
type Data = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

struct Shared {
    opts: Options,
    verifier: Verifier,
    mock: MockAuthSecret,
    data: Mutex<Data>,
    busy_done: Mutex<HashSet<Vec<u8>>>,
    stats: Arc<Stats>,
}

pub struct FakeServer {
    pub addr: String,
    pub stats: Arc<Stats>,
}

/// A self-signed certificate made at test time, valid for `localhost` and the IP
/// address 127.0.0.1.
pub struct TestCert {
    /// The certificate in PEM: what a client trusts.
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCert {
    pub fn localhost() -> TestCert {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        TestCert {
            cert_pem: ck.cert.pem(),
            cert_der: ck.cert.der().clone(),
            key_der: ck.key_pair.serialize_der(),
        }
    }

    /// A client TLS config that trusts this certificate.
    pub fn client(&self) -> TlsConfig {
        TlsConfig::from_ca_pem(self.cert_pem.clone())
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let cfg =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![self.cert_der.clone()], key)
                .unwrap();
        Arc::new(cfg)
    }
}

impl FakeServer {
    pub fn start(opts: Options) -> FakeServer {
        FakeServer::start_with(opts, None)
    }

    /// Speaks TLS from the first byte, with `cert`.
    pub fn start_tls(opts: Options, cert: &TestCert) -> FakeServer {
        FakeServer::start_with(opts, Some(cert.server_config()))
    }

    fn start_with(opts: Options, tls: Option<Arc<ServerConfig>>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            opts,
            verifier: Verifier::generate("pw", 4096),
            mock: MockAuthSecret::generate(),
            data: Mutex::new(BTreeMap::new()),
            busy_done: Mutex::new(HashSet::new()),
            stats: stats.clone(),
        });
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let shared = shared.clone();
                shared.stats.connections.fetch_add(1, Ordering::SeqCst);
                let open = shared.stats.open.fetch_add(1, Ordering::SeqCst) + 1;
                shared
                    .stats
                    .max_concurrent
                    .fetch_max(open, Ordering::SeqCst);
                let tls = tls.clone();
                thread::spawn(move || {
                    match tls {
                        // The handshake runs on the first read; a failed one ends serve.
                        Some(cfg) => {
                            if let Ok(conn) = ServerConnection::new(cfg) {
                                serve(StreamOwned::new(conn, stream), &shared);
                            }
                        }
                        None => serve(stream, &shared),
                    }
                    shared.stats.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FakeServer { addr, stats }
    }

    /// A config for this server with test-friendly timeouts and backoff.
    pub fn config(&self) -> Config {
        Config::new(self.addr.clone())
            .connect_timeout(Duration::from_secs(5))
            .request_timeout(Duration::from_secs(5))
            .backoff(Duration::from_millis(1), Duration::from_millis(20))
    }

    pub fn auth_config(&self) -> Config {
        self.config().credentials("alice", "pw")
    }
}

enum Action {
    Reply(Response),
    ReplyAndClose(Response),
    Hang,
    Drop,
}

fn hello_ok(authenticated: bool, auth_data: Vec<u8>) -> Response {
    Response::HelloOk(HelloOk {
        version: MAX_VERSION,
        server_name: "fake-nextdb".into(),
        shard: 0,
        shards: 1,
        slots: 16384,
        authenticated,
        auth_data,
        partitions: Vec::new(),
        shard_ports: Vec::new(),
    })
}

/// Serves one connection until the client closes it or the server decides to.
fn serve<S: Read + Write>(mut stream: S, sh: &Shared) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut authed = false;
    let mut scram: Option<ServerExchange> = None;
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut data = Vec::new();
        let mut close = false;
        while let Ok(Some(h)) = decode_header(&buf, MAX_FRAME_BYTES) {
            let req = Request::decode(h.opcode, h.flags, &buf[HEADER_BYTES..h.total]);
            buf.drain(..h.total);
            let id = h.request_id;
            match req {
                Err(e) => {
                    Response::error(e.code(), e.to_string()).encode(h.opcode, id, &mut out);
                    close = true;
                }
                Ok(Request::Hello(hello)) if !authed && scram.is_none() => {
                    if hello.mechanism == "SCRAM-SHA-256" {
                        let lookup = |u: &str| (u == "alice").then(|| sh.verifier.clone());
                        match ServerExchange::start(&hello.auth_data, lookup, &sh.mock) {
                            Ok((ex, first)) => {
                                scram = Some(ex);
                                hello_ok(false, first).encode(op::HELLO, id, &mut out);
                            }
                            Err(e) => {
                                Response::error(ErrorCode::AuthFailed, e.to_string()).encode(
                                    op::HELLO,
                                    id,
                                    &mut out,
                                );
                                close = true;
                            }
                        }
                    } else if sh.opts.require_auth {
                        Response::error(ErrorCode::AuthFailed, "authentication required").encode(
                            op::HELLO,
                            id,
                            &mut out,
                        );
                        close = true;
                    } else {
                        authed = true;
                        hello_ok(true, Vec::new()).encode(op::HELLO, id, &mut out);
                    }
                }
                Ok(Request::Auth { data: d }) if !authed && scram.is_some() => {
                    let Some(ex) = scram.take() else { return };
                    match ex.finish(&d) {
                        Ok((_user, fin)) => {
                            authed = true;
                            let fin = if sh.opts.forge_signature {
                                b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec()
                            } else {
                                fin
                            };
                            Response::AuthOk { data: fin }.encode(op::AUTH, id, &mut out);
                        }
                        Err(e) => {
                            Response::error(ErrorCode::AuthFailed, e.to_string()).encode(
                                op::AUTH,
                                id,
                                &mut out,
                            );
                            close = true;
                        }
                    }
                }
                Ok(Request::Hello(_) | Request::Auth { .. }) => {
                    Response::error(ErrorCode::ProtocolViolation, "handshake out of place")
                        .encode(h.opcode, id, &mut out);
                    close = true;
                }
                Ok(_) if !authed => {
                    Response::error(ErrorCode::AuthRequired, "HELLO first")
                        .encode(h.opcode, id, &mut out);
                    close = true;
                }
                Ok(req) => data.push((id, h.opcode, req)),
            }
            if close {
                break;
            }
        }
        if data.len() > 1 {
            sh.stats.reordered.fetch_add(1, Ordering::SeqCst);
        }
        // Reverse order on purpose: the client must match by request id.
        for (id, opcode, req) in data.into_iter().rev() {
            sh.stats.requests.fetch_add(1, Ordering::SeqCst);
            match handle(sh, req) {
                Action::Reply(r) => r.encode(opcode, id, &mut out),
                Action::ReplyAndClose(r) => {
                    r.encode(opcode, id, &mut out);
                    close = true;
                }
                Action::Hang => {
                    sh.stats.hangs.fetch_add(1, Ordering::SeqCst);
                }
                Action::Drop => {
                    sh.stats.drops.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
        if stream.write_all(&out).is_err() || stream.flush().is_err() || close {
            return;
        }
    }
}

fn request_key(r: &Request) -> Option<&[u8]> {
    match r {
        Request::Scan { start, .. } => Some(start),
        Request::Batch { ops, .. } => ops.first().map(BatchOp::key),
        _ => r.single_key(),
    }
}

fn handle(sh: &Shared, req: Request) -> Action {
    if let Some(k) = request_key(&req) {
        if k == b"__hang" {
            return Action::Hang;
        }
        if k == b"__drop" {
            return Action::Drop;
        }
        if k == b"__close_after" {
            return Action::ReplyAndClose(Response::Done);
        }
        if k.starts_with(b"busy-once:") && sh.busy_done.lock().unwrap().insert(k.to_vec()) {
            sh.stats.busy_sent.fetch_add(1, Ordering::SeqCst);
            return Action::Reply(Response::error(ErrorCode::Busy, "try again"));
        }
    }
    let mut data = sh.data.lock().unwrap();
    Action::Reply(match req {
        Request::Ping { payload } => Response::Pong { payload },
        Request::Stats => Response::Stats {
            json: format!("{{\"keys\":{}}}", data.len()),
        },
        Request::Get { key } => Response::Value(data.get(&key).map(|(v, _)| v.clone())),
        Request::Put { key, value, ttl_ms } => {
            data.insert(key, (value, ttl_ms));
            Response::Done
        }
        Request::Delete { key } => {
            data.remove(&key);
            Response::Done
        }
        Request::Scan {
            start,
            end,
            limit,
            token,
        } => {
            sh.stats.scans.fetch_add(1, Ordering::SeqCst);
            let from = if token.is_empty() {
                Bound::Included(start)
            } else {
                Bound::Excluded(token)
            };
            let to = end.map_or(Bound::Unbounded, Bound::Excluded);
            let mut it = data.range((from, to));
            let entries: Vec<_> = it
                .by_ref()
                .take(limit as usize)
                .map(|(k, (v, _))| (k.clone(), v.clone()))
                .collect();
            let token = match (it.next(), entries.last()) {
                (Some(_), Some((k, _))) => k.clone(),
                _ => Vec::new(),
            };
            Response::Scan { entries, token }
        }
        Request::Batch { ops, .. } => Response::Batch(
            ops.into_iter()
                .map(|o| match o {
                    BatchOp::Get { key } => {
                        BatchResult::Value(data.get(&key).map(|(v, _)| v.clone()))
                    }
                    BatchOp::Put { key, value, ttl_ms } => {
                        data.insert(key, (value, ttl_ms));
                        BatchResult::Done
                    }
                    BatchOp::Delete { key } => {
                        data.remove(&key);
                        BatchResult::Done
                    }
                })
                .collect(),
        ),
        Request::Cas {
            key,
            expected,
            new,
            ttl_ms,
        } => {
            let cur = data.get(&key).map(|(v, _)| v.clone());
            if cur == expected {
                match &new {
                    Some(v) => data.insert(key, (v.clone(), ttl_ms)),
                    None => data.remove(&key),
                };
                Response::Cas {
                    swapped: true,
                    current: new,
                }
            } else {
                Response::Cas {
                    swapped: false,
                    current: cur,
                }
            }
        }
        Request::Incr { key, delta } => {
            let cur = match data.get(&key) {
                None => Some(0),
                Some((v, _)) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok()),
            };
            match cur.and_then(|c| c.checked_add(delta)) {
                Some(n) => {
                    let ttl = data.get(&key).and_then(|(_, t)| *t);
                    data.insert(key, (n.to_string().into_bytes(), ttl));
                    Response::Int(n)
                }
                None => Response::error(ErrorCode::NotAnInteger, "not an integer"),
            }
        }
        Request::Expire { key, ttl_ms } => match data.get_mut(&key) {
            Some((_, t)) => {
                *t = ttl_ms;
                Response::Found(true)
            }
            None => Response::Found(false),
        },
        Request::Ttl { key } => Response::Ttl(match data.get(&key) {
            None => TtlState::Missing,
            Some((_, None)) => TtlState::Persistent,
            Some((_, Some(ms))) => TtlState::ExpiresIn(*ms),
        }),
        Request::Hello(_) | Request::Auth { .. } => {
            Response::error(ErrorCode::ProtocolViolation, "unreachable")
        }
        Request::Backup { .. } => {
            Response::error(ErrorCode::UnknownOp, "the mock does not back up")
        }
        Request::Config(_) => Response::error(ErrorCode::UnknownOp, "the mock has no settings"),
    })
}
