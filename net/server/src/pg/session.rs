//! One PostgreSQL session as a state machine: bytes in ([`PgSession::feed`]),
//! bytes out ([`PgSession::take_output`]). No sockets here; the glommio driver
//! (`pg::serve`) moves bytes, and the tests drive it over a `MemKv`. Owned by the
//! core that accepted the connection.

use super::frame::{self, FirstPacket, FrameError};
use crate::config::{PG_MAX_PREPARED_PER_SESSION, PG_SERVER_VERSION};
use crate::users::UserStore;
use bytes::{BufMut, BytesMut};
use nextdb_proto::scram::{MECHANISM, MockAuthSecret, ServerExchange};
use nextdb_sql::{DataType, Engine, Field, Kv, Outcome, SqlError, Statement, Value, wire};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::data::{
    DataRow, FieldDescription, NoData, ParameterDescription, RowDescription,
};
use pgwire::messages::extendedquery::{
    BindComplete, CloseComplete, ParseComplete, PortalSuspended,
};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse, ReadyForQuery,
    TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// How a session authenticates its clients.
#[derive(Clone)]
pub struct AuthConfig {
    pub insecure: bool,
    pub users: Arc<UserStore>,
    pub mock: MockAuthSecret,
}

enum State {
    Startup,
    SaslInitial {
        user: String,
    },
    SaslContinue {
        user: String,
        exchange: Box<ServerExchange>,
    },
    Ready,
    Closed,
}

/// Whether the connection stays open after what was fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Open,
    Close,
}

struct Prepared {
    stmt: Option<Statement>,
    declared: Vec<DataType>,
}

struct Portal {
    stmt: Option<Statement>,
    params: Vec<Value>,
    types: Vec<DataType>,
    formats: Vec<i16>,
    fields: Option<Vec<Field>>,
    /// Rows not yet sent by an Execute with a row limit, and the command tag.
    pending: Option<(std::vec::IntoIter<Vec<Value>>, String)>,
}

pub struct PgSession<K: Kv> {
    engine: Rc<Engine<K>>,
    auth: AuthConfig,
    state: State,
    input: BytesMut,
    output: BytesMut,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    /// After an error in extended query, messages are discarded until Sync.
    skip_until_sync: bool,
    backend_pid: i32,
}

impl<K: Kv> PgSession<K> {
    pub fn new(engine: Rc<Engine<K>>, auth: AuthConfig, backend_pid: i32) -> PgSession<K> {
        PgSession {
            engine,
            auth,
            state: State::Startup,
            input: BytesMut::new(),
            output: BytesMut::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            skip_until_sync: false,
            backend_pid,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// Bytes to send to the client.
    pub fn take_output(&mut self) -> BytesMut {
        self.output.split()
    }

    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Consumes client bytes and runs every complete message among them.
    pub async fn feed(&mut self, bytes: &[u8]) -> Flow {
        self.input.extend_from_slice(bytes);
        loop {
            let step = match self.state {
                State::Closed => return Flow::Close,
                State::Startup => self.startup_step(),
                _ => match frame::next_message(&mut self.input) {
                    Ok(Some((tag, msg))) => self.on_message(tag, msg).await,
                    Ok(None) => return Flow::Open,
                    Err(e) => self.fatal("08P01", &e.to_string()),
                },
            };
            match step {
                Some(Flow::Close) => {
                    self.state = State::Closed;
                    return Flow::Close;
                }
                Some(Flow::Open) => {}
                None => return Flow::Open,
            }
        }
    }

    fn send(&mut self, m: B) {
        // Encoding our own messages cannot fail for lengths below pgwire's limits,
        // which every message here respects (rows are bounded by the engine).
        if let Err(e) = m.encode(&mut self.output) {
            tracing::warn!(error = %e, "cannot encode a PostgreSQL message");
        }
    }

    /// None: wait for more bytes.
    fn startup_step(&mut self) -> Option<Flow> {
        match frame::next_startup(&mut self.input) {
            Ok(None) => None,
            Ok(Some(FirstPacket::SslRequest | FirstPacket::GssEncRequest)) => {
                // TLS for this port comes later: 'N' and the client goes on in clear.
                self.output.put_u8(b'N');
                Some(Flow::Open)
            }
            Ok(Some(FirstPacket::Cancel)) => Some(Flow::Close),
            Ok(Some(FirstPacket::Startup(s))) => {
                let user = s.parameters.get("user").cloned().unwrap_or_default();
                if user.is_empty() {
                    return self.fatal(
                        "28000",
                        "no PostgreSQL user name specified in startup packet",
                    );
                }
                if self.auth.insecure {
                    self.authenticated(&user);
                } else {
                    self.send(B::Authentication(Authentication::SASL(vec![
                        MECHANISM.to_string(),
                    ])));
                    self.state = State::SaslInitial { user };
                }
                Some(Flow::Open)
            }
            Err(e @ FrameError::Protocol(..)) => self.fatal("0A000", &e.to_string()),
            Err(e) => self.fatal("08P01", &e.to_string()),
        }
    }

    fn authenticated(&mut self, user: &str) {
        self.send(B::Authentication(Authentication::Ok));
        let params = [
            ("server_version", PG_SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "off"),
            ("session_authorization", user),
            ("application_name", ""),
        ];
        for (name, value) in params {
            self.send(B::ParameterStatus(ParameterStatus::new(
                name.to_string(),
                value.to_string(),
            )));
        }
        self.send(B::BackendKeyData(BackendKeyData::new(
            self.backend_pid,
            SecretKey::I32(0),
        )));
        self.state = State::Ready;
        self.ready();
    }

    fn ready(&mut self) {
        self.send(B::ReadyForQuery(ReadyForQuery::new(
            TransactionStatus::Idle,
        )));
    }

    /// A FATAL error: sent, and the connection closes.
    fn fatal(&mut self, code: &str, message: &str) -> Option<Flow> {
        self.send(B::ErrorResponse(error_fields("FATAL", code, message)));
        Some(Flow::Close)
    }

    fn error(&mut self, e: &SqlError) {
        let mut fields = error_fields("ERROR", e.sqlstate(), &e.to_string());
        if let Some(d) = e.detail() {
            fields.fields.push((b'D', d.to_string()));
        }
        self.send(B::ErrorResponse(fields));
    }

    async fn on_message(&mut self, tag: u8, mut msg: BytesMut) -> Option<Flow> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::SaslInitial { user } => Some(self.sasl_initial(tag, msg.split_off(5), user)),
            State::SaslContinue { user, exchange } => {
                Some(self.sasl_final(tag, msg.split_off(5), user, *exchange))
            }
            _ => {
                self.state = State::Ready;
                let m = match frame::decode(tag, msg) {
                    Ok(m) => m,
                    Err(e) => return self.fatal("08P01", &e.to_string()),
                };
                Some(self.on_ready_message(m).await)
            }
        }
    }

    fn sasl_initial(&mut self, tag: u8, body: BytesMut, user: String) -> Flow {
        let r = (tag == b'p').then(|| frame::sasl_initial(body));
        let Some(Ok(initial)) = r else {
            return self
                .fatal("08P01", "expected SASLInitialResponse")
                .unwrap_or(Flow::Close);
        };
        if initial.auth_method != MECHANISM {
            return self
                .fatal("28000", "unsupported SASL mechanism")
                .unwrap_or(Flow::Close);
        }
        let data = initial.data.unwrap_or_default();
        let users = self.auth.users.clone();
        let started = ServerExchange::start_as(
            &data,
            Some(&user),
            |u| users.get(u).cloned(),
            &self.auth.mock,
        );
        match started {
            Ok((exchange, server_first)) => {
                self.send(B::Authentication(Authentication::SASLContinue(
                    server_first.into(),
                )));
                self.state = State::SaslContinue {
                    user,
                    exchange: Box::new(exchange),
                };
                Flow::Open
            }
            Err(e) => self.fatal("08P01", &e.to_string()).unwrap_or(Flow::Close),
        }
    }

    fn sasl_final(
        &mut self,
        tag: u8,
        body: BytesMut,
        user: String,
        exchange: ServerExchange,
    ) -> Flow {
        let r = (tag == b'p').then(|| frame::sasl_response(body));
        let Some(Ok(resp)) = r else {
            return self
                .fatal("08P01", "expected SASLResponse")
                .unwrap_or(Flow::Close);
        };
        match exchange.finish(&resp.data) {
            Ok((_, server_final)) => {
                self.send(B::Authentication(Authentication::SASLFinal(
                    server_final.into(),
                )));
                self.authenticated(&user);
                Flow::Open
            }
            Err(_) => {
                let msg = format!("password authentication failed for user \"{user}\"");
                self.fatal("28P01", &msg).unwrap_or(Flow::Close)
            }
        }
    }

    async fn on_ready_message(&mut self, m: F) -> Flow {
        if self.skip_until_sync && m.is_extended_query() && !matches!(m, F::Sync(_)) {
            return Flow::Open;
        }
        let r = match m {
            F::Query(q) => {
                self.simple_query(&q.query).await;
                return Flow::Open;
            }
            F::Parse(p) => {
                self.parse(p.name.unwrap_or_default(), &p.query, &p.type_oids)
                    .await
            }
            F::Bind(b) => self.bind(b).await,
            F::Describe(d) => {
                self.describe(d.target_type, d.name.unwrap_or_default())
                    .await
            }
            F::Execute(e) => self.execute(e.name.unwrap_or_default(), e.max_rows).await,
            F::Close(c) => {
                let name = c.name.unwrap_or_default();
                match c.target_type {
                    b'S' => self.statements.remove(&name).map(|_| ()),
                    _ => self.portals.remove(&name).map(|_| ()),
                };
                self.send(B::CloseComplete(CloseComplete::new()));
                Ok(())
            }
            F::Sync(_) => {
                self.skip_until_sync = false;
                // Every Sync ends the implicit transaction, and its portals with it.
                self.portals.clear();
                self.ready();
                Ok(())
            }
            F::Flush(_) | F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) => Ok(()),
            F::Terminate(_) => return Flow::Close,
            _ => {
                return self
                    .fatal("08P01", "unexpected message")
                    .unwrap_or(Flow::Close);
            }
        };
        if let Err(e) = r {
            self.error(&e);
            self.skip_until_sync = true;
        }
        Flow::Open
    }

    async fn simple_query(&mut self, sql: &str) {
        match nextdb_sql::parse(sql) {
            Err(e) => self.error(&e),
            Ok(stmts) if stmts.is_empty() => {
                self.send(B::EmptyQueryResponse(EmptyQueryResponse::new()))
            }
            Ok(stmts) => {
                for s in &stmts {
                    match self.engine.execute(s, &[], &[]).await {
                        Ok(o) => self.send_outcome(o, &[], true),
                        Err(e) => {
                            self.error(&e);
                            break;
                        }
                    }
                }
            }
        }
        self.ready();
    }

    fn row_description(&mut self, fields: &[Field], formats: &[i16]) {
        let fds = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                FieldDescription::new(
                    f.name.clone(),
                    0,
                    0,
                    f.ty.oid(),
                    f.ty.wire_size(),
                    f.ty.type_modifier(),
                    format_of(formats, i),
                )
            })
            .collect();
        self.send(B::RowDescription(RowDescription::new(fds)));
    }

    fn data_row(&mut self, row: &[Value], fields: &[Field], formats: &[i16]) {
        let mut data = BytesMut::new();
        for (i, (v, f)) in row.iter().zip(fields).enumerate() {
            match wire::encode_value(v, f.ty, format_of(formats, i)) {
                None => data.put_i32(-1),
                Some(b) => {
                    data.put_i32(b.len() as i32);
                    data.put_slice(&b);
                }
            }
        }
        self.send(B::DataRow(DataRow::new(data, row.len() as i16)));
    }

    /// One NoticeResponse per notice a statement raised (simple and extended query).
    fn send_notices(&mut self, notices: &[String]) {
        for n in notices {
            let fields = vec![
                (b'S', "NOTICE".into()),
                (b'V', "NOTICE".into()),
                (b'C', "00000".into()),
                (b'M', n.clone()),
            ];
            self.send(B::NoticeResponse(NoticeResponse::new(fields)));
        }
    }

    fn send_outcome(&mut self, o: Outcome, formats: &[i16], describe: bool) {
        self.send_notices(&o.notices);
        if let Some(fields) = &o.fields {
            if describe {
                self.row_description(fields, formats);
            }
            for r in &o.rows {
                self.data_row(r, fields, formats);
            }
        }
        self.send(B::CommandComplete(CommandComplete::new(o.tag)));
    }

    /// Parse, and bind against the catalog as PostgreSQL does, so unknown tables and
    /// columns fail here rather than at Bind.
    async fn parse(&mut self, name: String, sql: &str, oids: &[u32]) -> Result<(), SqlError> {
        let mut stmts = nextdb_sql::parse(sql)?;
        if stmts.len() > 1 {
            return Err(SqlError::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let declared = oids
            .iter()
            .map(|&o| {
                DataType::from_oid(o).ok_or_else(|| {
                    SqlError::FeatureNotSupported(format!(
                        "parameter type with OID {o} is not supported yet"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(SqlError::DuplicatePrepared(name));
        }
        if let Some(s) = stmts.first() {
            self.engine.describe(s, &declared).await?;
        }
        if self.statements.len() >= PG_MAX_PREPARED_PER_SESSION {
            return Err(SqlError::ProgramLimitExceeded(format!(
                "a session may hold {PG_MAX_PREPARED_PER_SESSION} prepared statements"
            )));
        }
        self.statements.insert(
            name,
            Prepared {
                stmt: stmts.pop(),
                declared,
            },
        );
        self.send(B::ParseComplete(ParseComplete::new()));
        Ok(())
    }

    async fn bind(&mut self, b: pgwire::messages::extendedquery::Bind) -> Result<(), SqlError> {
        let sname = b.statement_name.unwrap_or_default();
        let p = self
            .statements
            .get(&sname)
            .ok_or_else(|| SqlError::UndefinedPrepared(sname.clone()))?;
        let (stmt, declared) = (p.stmt.clone(), p.declared.clone());
        let (types, fields) = match &stmt {
            Some(s) => {
                let d = self.engine.describe(s, &declared).await?;
                (d.params, d.fields)
            }
            None => (Vec::new(), None),
        };
        if b.parameters.len() != types.len() {
            return Err(SqlError::ProtocolViolation(format!(
                "bind message supplies {} parameters, but prepared statement \"{sname}\" requires {}",
                b.parameters.len(),
                types.len()
            )));
        }
        let mut params = Vec::with_capacity(types.len());
        for (i, (v, ty)) in b.parameters.iter().zip(&types).enumerate() {
            params.push(wire::decode_param(
                v.as_deref(),
                *ty,
                format_of(&b.parameter_format_codes, i),
            )?);
        }
        let pname = b.portal_name.unwrap_or_default();
        if !pname.is_empty() && self.portals.contains_key(&pname) {
            return Err(SqlError::DuplicatePortal(pname));
        }
        let formats = b.result_column_format_codes;
        self.portals.insert(
            pname,
            Portal {
                stmt,
                params,
                types,
                formats,
                fields,
                pending: None,
            },
        );
        self.send(B::BindComplete(BindComplete::new()));
        Ok(())
    }

    async fn describe(&mut self, target: u8, name: String) -> Result<(), SqlError> {
        if target == b'S' {
            let p = self
                .statements
                .get(&name)
                .ok_or_else(|| SqlError::UndefinedPrepared(name.clone()))?;
            let (stmt, declared) = (p.stmt.clone(), p.declared.clone());
            let d = match &stmt {
                Some(s) => self.engine.describe(s, &declared).await?,
                None => nextdb_sql::Description {
                    params: Vec::new(),
                    fields: None,
                },
            };
            let oids = d.params.iter().map(|t| t.oid()).collect();
            self.send(B::ParameterDescription(ParameterDescription::new(oids)));
            match d.fields {
                Some(f) => self.row_description(&f, &[]),
                None => self.send(B::NoData(NoData::new())),
            }
            return Ok(());
        }
        let p = self
            .portals
            .get(&name)
            .ok_or_else(|| SqlError::UndefinedPortal(name.clone()))?;
        let (fields, formats) = (p.fields.clone(), p.formats.clone());
        match fields {
            Some(f) => self.row_description(&f, &formats),
            None => self.send(B::NoData(NoData::new())),
        }
        Ok(())
    }

    async fn execute(&mut self, name: String, max_rows: i32) -> Result<(), SqlError> {
        let mut portal = self
            .portals
            .remove(&name)
            .ok_or_else(|| SqlError::UndefinedPortal(name.clone()))?;
        let Some(stmt) = portal.stmt.clone() else {
            self.send(B::EmptyQueryResponse(EmptyQueryResponse::new()));
            return Ok(());
        };
        if portal.pending.is_none() {
            let o = self
                .engine
                .execute(&stmt, &portal.types, &portal.params)
                .await?;
            self.send_notices(&o.notices);
            portal.fields = o.fields.clone().or(portal.fields);
            portal.pending = Some((o.rows.into_iter(), o.tag));
        }
        let limit = if max_rows > 0 {
            max_rows as usize
        } else {
            usize::MAX
        };
        let fields = portal.fields.clone().unwrap_or_default();
        let mut sent = 0;
        if let Some((rows, tag)) = &mut portal.pending {
            while sent < limit {
                let Some(r) = rows.next() else { break };
                self.data_row(&r, &fields, &portal.formats);
                sent += 1;
            }
            if sent == limit && rows.len() > 0 {
                self.send(B::PortalSuspended(PortalSuspended::new()));
                self.portals.insert(name, portal);
                return Ok(());
            }
            let tag = std::mem::take(tag);
            self.send(B::CommandComplete(CommandComplete::new(tag)));
        }
        portal.pending = None;
        self.portals.insert(name, portal);
        Ok(())
    }
}

/// A FATAL ErrorResponse alone, for a connection refused before its session starts.
pub fn fatal_message(code: &str, message: &str) -> BytesMut {
    let mut out = BytesMut::new();
    let e = B::ErrorResponse(error_fields("FATAL", code, message));
    if e.encode(&mut out).is_err() {
        out.clear();
    }
    out
}

fn error_fields(severity: &str, code: &str, message: &str) -> ErrorResponse {
    ErrorResponse::new(vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ])
}

/// The format of column `i`: none given means text, one means all.
fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use futures_lite::future::block_on;
    use nextdb_proto::scram::{ClientExchange, Verifier};
    use nextdb_sql::MemKv;

    fn session(insecure: bool) -> PgSession<MemKv> {
        let mut users = UserStore::default();
        users.set("alice", Verifier::generate("pw", 4096)).unwrap();
        let auth = AuthConfig {
            insecure,
            users: Arc::new(users),
            mock: MockAuthSecret::generate(),
        };
        PgSession::new(Rc::new(Engine::new(MemKv::new())), auth, 7)
    }

    fn startup(user: &str) -> Vec<u8> {
        let body = format!("user\0{user}\0database\0postgres\0\0");
        let mut m = ((8 + body.len()) as i32).to_be_bytes().to_vec();
        m.extend_from_slice(&196608i32.to_be_bytes());
        m.extend_from_slice(body.as_bytes());
        m
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', format!("{sql}\0").as_bytes())
    }

    /// The backend messages in `out` as (type, body) pairs.
    fn messages(mut out: BytesMut) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while out.len() >= 5 {
            let tag = out.get_u8();
            let len = out.get_i32() as usize - 4;
            v.push((tag, out.split_to(len).to_vec()));
        }
        assert!(out.is_empty(), "a partial message in the output");
        v
    }

    fn tags(out: BytesMut) -> String {
        messages(out).iter().map(|(t, _)| *t as char).collect()
    }

    fn error_code(body: &[u8]) -> String {
        let fields: Vec<&[u8]> = body.split(|&b| b == 0).collect();
        let code = fields
            .iter()
            .find(|f| f.first() == Some(&b'C'))
            .expect("no SQLSTATE");
        String::from_utf8(code[1..].to_vec()).unwrap()
    }

    #[test]
    fn ssl_is_declined_and_trust_startup_reaches_ready() {
        let mut s = session(true);
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&frame::SSL_REQUEST_CODE.to_be_bytes());
        assert_eq!(block_on(s.feed(&ssl)), Flow::Open);
        assert_eq!(&s.take_output()[..], b"N");
        // The startup packet arrives in two pieces.
        let p = startup("anyone");
        assert_eq!(block_on(s.feed(&p[..5])), Flow::Open);
        assert!(s.take_output().is_empty());
        block_on(s.feed(&p[5..]));
        let out = tags(s.take_output());
        assert!(out.starts_with('R') && out.ends_with("KZ"), "{out}");
        assert!(s.is_authenticated());
    }

    #[test]
    fn scram_authenticates_the_startup_user_and_refuses_a_wrong_password() {
        for (password, ok) in [("pw", true), ("wrong", false)] {
            let mut s = session(false);
            block_on(s.feed(&startup("alice")));
            assert_eq!(tags(s.take_output()), "R");
            // libpq leaves SCRAM's user name empty: the startup packet names the user.
            let (mut client, first) = ClientExchange::start("");
            let mut body = b"SCRAM-SHA-256\0".to_vec();
            body.extend_from_slice(&(first.len() as i32).to_be_bytes());
            body.extend_from_slice(&first);
            block_on(s.feed(&msg(b'p', &body)));
            let out = messages(s.take_output());
            let server_first = &out[0].1[4..];
            let last = client.respond(password, server_first).unwrap();
            let flow = block_on(s.feed(&msg(b'p', &last)));
            let out = messages(s.take_output());
            if ok {
                assert_eq!(flow, Flow::Open);
                assert_eq!(out.last().map(|m| m.0), Some(b'Z'));
                assert!(s.is_authenticated());
            } else {
                assert_eq!(flow, Flow::Close);
                assert_eq!(out[0].0, b'E');
                assert_eq!(error_code(&out[0].1), "28P01");
                assert!(!s.is_authenticated());
            }
        }
    }

    fn ready_session() -> PgSession<MemKv> {
        let mut s = session(true);
        block_on(s.feed(&startup("postgres")));
        s.take_output();
        s
    }

    #[test]
    fn simple_query_runs_statements_in_order_and_stops_at_the_first_error() {
        let mut s = ready_session();
        let sql = "CREATE TABLE t (a int PRIMARY KEY); INSERT INTO t VALUES (1); SELECT a FROM t; SELECT 1/0; INSERT INTO t VALUES (2)";
        block_on(s.feed(&query(sql)));
        let out = messages(s.take_output());
        let t: String = out.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(t, "CCTDCEZ");
        assert_eq!(error_code(&out[5].1), "22012");
        block_on(s.feed(&query("SELECT count(*) FROM t")));
        let out = messages(s.take_output());
        assert_eq!(
            &out[1].1[..],
            b"\0\x01\0\0\0\x011",
            "the INSERT after the error never ran"
        );
        block_on(s.feed(&query("  ")));
        assert_eq!(tags(s.take_output()), "IZ");
    }

    fn parse(name: &str, sql: &str, oids: &[u32]) -> Vec<u8> {
        let mut b = format!("{name}\0{sql}\0").into_bytes();
        b.extend_from_slice(&(oids.len() as i16).to_be_bytes());
        for o in oids {
            b.extend_from_slice(&o.to_be_bytes());
        }
        msg(b'P', &b)
    }

    fn bind(portal: &str, stmt: &str, params: &[Option<&str>]) -> Vec<u8> {
        let mut b = format!("{portal}\0{stmt}\0").into_bytes();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        msg(b'B', &b)
    }

    fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
        let mut b = format!("{portal}\0").into_bytes();
        b.extend_from_slice(&max_rows.to_be_bytes());
        msg(b'E', &b)
    }

    fn sync() -> Vec<u8> {
        msg(b'S', &[])
    }

    #[test]
    fn extended_query_infers_parameters_and_suspends_portals() {
        let mut s = ready_session();
        block_on(s.feed(&query("CREATE TABLE t (a int PRIMARY KEY, b text)")));
        s.take_output();
        let mut batch = parse("ins", "INSERT INTO t VALUES ($1, $2)", &[]);
        batch.extend(msg(b'D', b"Sins\0"));
        batch.extend(bind("", "ins", &[Some("1"), Some("one")]));
        batch.extend(execute("", 0));
        batch.extend(bind("", "ins", &[Some("2"), None]));
        batch.extend(execute("", 0));
        batch.extend(sync());
        block_on(s.feed(&batch));
        let out = messages(s.take_output());
        let t: String = out.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(t, "1tn2C2CZ");
        // ParameterDescription: two parameters, int4 then text.
        assert_eq!(out[1].1, [0, 2, 0, 0, 0, 23, 0, 0, 0, 25]);

        let mut batch = parse("", "SELECT a, b FROM t WHERE a >= $1 ORDER BY a", &[]);
        batch.extend(bind("p", "", &[Some("0")]));
        batch.extend(msg(b'D', b"Pp\0"));
        batch.extend(execute("p", 1));
        batch.extend(execute("p", 1));
        batch.extend(sync());
        block_on(s.feed(&batch));
        let t = tags(s.take_output());
        assert_eq!(t, "12TDsDCZ");
    }

    #[test]
    fn an_error_mid_batch_skips_to_sync_and_the_session_goes_on() {
        let mut s = ready_session();
        let mut batch = parse("", "SELECT nope", &[]);
        batch.extend(bind("", "", &[]));
        batch.extend(execute("", 0));
        batch.extend(sync());
        batch.extend(parse("", "SELECT $1::int + 1", &[]));
        batch.extend(bind("", "", &[Some("41")]));
        batch.extend(execute("", 0));
        batch.extend(sync());
        block_on(s.feed(&batch));
        let out = messages(s.take_output());
        let t: String = out.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(t, "EZ12DCZ");
        assert_eq!(error_code(&out[0].1), "42703");
        assert_eq!(&out[4].1[..], b"\0\x01\0\0\0\x0242");
        // A bad parameter value is an error of its Bind, then skipped to Sync.
        let mut batch = parse("", "SELECT $1::int", &[]);
        batch.extend(bind("", "", &[Some("x")]));
        batch.extend(execute("", 0));
        batch.extend(sync());
        block_on(s.feed(&batch));
        let out = messages(s.take_output());
        assert_eq!(
            out.iter().map(|(t, _)| *t as char).collect::<String>(),
            "1EZ"
        );
        assert_eq!(error_code(&out[1].1), "22P02");
    }

    #[test]
    fn garbage_after_startup_closes_with_an_error() {
        let mut s = ready_session();
        assert_eq!(block_on(s.feed(b"\x01\0\0\0\x05x")), Flow::Close);
        let out = messages(s.take_output());
        assert_eq!(error_code(&out[0].1), "08P01");
        let mut s = session(true);
        assert_eq!(block_on(s.feed(b"\0\0\0\x04\0\0\0\0")), Flow::Close);
    }
}
