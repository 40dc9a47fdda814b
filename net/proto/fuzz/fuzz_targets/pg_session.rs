//! Feeds arbitrary bytes to a PostgreSQL session, as a socket would: first as the
//! startup phase of a trusting (`--insecure`) session, then as messages of a session
//! past startup, in chunks of arbitrary sizes. Nothing may panic; the framing
//! decoder is also run on its own and must never hand out more than one message.
#![no_main]

use bytes::BytesMut;
use futures_lite::future::block_on;
use libfuzzer_sys::fuzz_target;
use nextdb_net::UserStore;
use nextdb_net::pg::frame;
use nextdb_net::pg::session::{AuthConfig, Flow, PgSession};
use nextdb_proto::scram::MockAuthSecret;
use nextdb_sql::{Engine, MemKv};
use std::rc::Rc;
use std::sync::Arc;

fn session() -> PgSession<MemKv> {
    let auth = AuthConfig {
        insecure: true,
        users: Arc::new(UserStore::default()),
        mock: MockAuthSecret::from_bytes([7; MockAuthSecret::BYTES]),
    };
    PgSession::new(Rc::new(Engine::new(MemKv::new())), auth, 1)
}

const STARTUP: &[u8] = b"\0\0\0\x25\0\x03\0\0user\0fuzz\0database\0postgres\0\0";

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some((tag, msg))) = frame::next_message(&mut buf) {
        let _ = frame::decode(tag, msg);
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = frame::next_startup(&mut buf) {}

    let chunk = data.first().map_or(1, |&b| b as usize % 64 + 1);
    let mut fresh = session();
    for part in data.chunks(chunk) {
        if block_on(fresh.feed(part)) == Flow::Close {
            break;
        }
        fresh.take_output();
    }
    let mut ready = session();
    block_on(ready.feed(STARTUP));
    for part in data.chunks(chunk) {
        if block_on(ready.feed(part)) == Flow::Close {
            break;
        }
        ready.take_output();
    }
});
