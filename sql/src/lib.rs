//! `nextdb-sql`: PostgreSQL-dialect SQL over a key-value store.
//!
//! parse (sqlparser, PostgreSQL dialect) → plan (`plan`: bind names and types against
//! the catalog, pick a point read or a scan) → execute (`exec`) over a [`Kv`]. The
//! crate does no I/O of its own: the node gives it a `Kv` over its shards, tests a
//! `BTreeMap`. One [`Engine`] per core; it is not shared between threads.

pub mod bind;
pub mod catalog;
pub mod codec;
pub mod config;
pub mod error;
pub mod exec;
mod exec_dml;
pub mod expr;
pub mod kv;
pub mod plan;
mod plan_dml;
pub mod types;
pub mod wire;

pub use error::{KvError, SqlError, SqlResult};
pub use exec::Outcome;
pub use kv::{Kv, MemKv};
pub use plan::Field;
pub use sqlparser::ast::Statement;
pub use types::{DataType, Value};

use catalog::CatalogCache;
use config::{MAX_SQL_TEXT_BYTES, MAX_STATEMENTS_PER_QUERY};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Parses SQL text into statements (none for an empty query). The whole text is
/// parsed before any statement runs, as PostgreSQL does.
pub fn parse(sql: &str) -> SqlResult<Vec<Statement>> {
    if sql.len() > MAX_SQL_TEXT_BYTES {
        return Err(SqlError::ProgramLimitExceeded(format!(
            "statement text is longer than {MAX_SQL_TEXT_BYTES} bytes"
        )));
    }
    let stmts = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| SqlError::Syntax(syntax_message(&e.to_string())))?;
    if stmts.len() > MAX_STATEMENTS_PER_QUERY {
        return Err(SqlError::ProgramLimitExceeded(format!(
            "a query may hold at most {MAX_STATEMENTS_PER_QUERY} statements"
        )));
    }
    Ok(stmts)
}

/// sqlparser's messages read "sql parser error: Expected: ..., found: X at Line: 1,
/// Column: 8"; PostgreSQL's read `syntax error at or near "X"`.
fn syntax_message(e: &str) -> String {
    let e = e.strip_prefix("sql parser error: ").unwrap_or(e);
    match e.split_once("found: ") {
        Some((_, rest)) => {
            let token = rest.split(" at Line:").next().unwrap_or(rest);
            if token == "EOF" {
                "syntax error at end of input".into()
            } else {
                format!("syntax error at or near \"{token}\"")
            }
        }
        None => format!("syntax error: {e}"),
    }
}

/// What a prepared statement takes and answers (extended query's Describe).
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub params: Vec<DataType>,
    /// None: the statement answers no rows.
    pub fields: Option<Vec<Field>>,
}

/// The SQL engine of one core: its storage handle and its copy of the catalog.
pub struct Engine<K: Kv> {
    kv: K,
    catalog: CatalogCache,
}

impl<K: Kv> Engine<K> {
    pub fn new(kv: K) -> Engine<K> {
        Engine {
            kv,
            catalog: CatalogCache::default(),
        }
    }

    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// Parameter types (declared ones kept, the rest inferred) and result columns.
    pub async fn describe(
        &self,
        stmt: &Statement,
        declared: &[DataType],
    ) -> SqlResult<Description> {
        let catalog = self.catalog.current(&self.kv).await?;
        let (plan, params) = plan::plan(stmt, &catalog, declared)?;
        Ok(Description {
            params,
            fields: plan.fields().map(|f| f.to_vec()),
        })
    }

    /// Runs one statement with its parameters' values.
    pub async fn execute(
        &self,
        stmt: &Statement,
        declared: &[DataType],
        params: &[Value],
    ) -> SqlResult<Outcome> {
        let catalog = self.catalog.current(&self.kv).await?;
        let (plan, types) = plan::plan(stmt, &catalog, declared)?;
        if params.len() != types.len() {
            return Err(SqlError::ProtocolViolation(format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                params.len(),
                types.len()
            )));
        }
        match plan {
            plan::Plan::DropTable { names, if_exists } => {
                self.drop_tables(&catalog, names, if_exists).await
            }
            other => exec::execute(&self.kv, other, params).await,
        }
    }

    async fn drop_tables(
        &self,
        c: &catalog::Catalog,
        names: Vec<String>,
        if_exists: bool,
    ) -> SqlResult<Outcome> {
        let mut out = Outcome {
            tag: "DROP TABLE".into(),
            fields: None,
            rows: Vec::new(),
            notices: Vec::new(),
        };
        let mut found = Vec::new();
        for n in names {
            match c.tables.get(&n) {
                Some(t) => found.push(t.clone()),
                None if if_exists => out
                    .notices
                    .push(format!("table \"{n}\" does not exist, skipping")),
                None => return Err(SqlError::UndefinedTable(n)),
            }
        }
        for t in found {
            catalog::drop_table(&self.kv, &t).await?;
        }
        Ok(out)
    }

    /// Parses and runs every statement of `sql` in order, stopping at the first
    /// error (a simple Query's semantics). For tests and tools.
    pub async fn run(&self, sql: &str) -> Vec<SqlResult<Outcome>> {
        let stmts = match parse(sql) {
            Ok(s) => s,
            Err(e) => return vec![Err(e)],
        };
        let mut out = Vec::with_capacity(stmts.len());
        for s in &stmts {
            let r = self.execute(s, &[], &[]).await;
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        out
    }
}
