//! Executes plans against a [`Kv`]: reads the rows a plan names (one key or a scan),
//! filters, groups, projects, sorts and writes. Everything a statement holds in
//! memory is charged to its [`WorkBudget`].

use crate::bind::{AggCall, AggFunc};
use crate::catalog::{self, TableDef};
use crate::codec;
use crate::config::{MAX_KEY_BYTES, MAX_ROW_BYTES, MAX_STATEMENT_WORK_BYTES};
use crate::error::{SqlError, SqlResult};
use crate::expr::{Env, Expr};
use crate::kv::{Kv, scan_all};
use crate::plan::{Access, Field, Plan, SelectPlan, SortKey, SortSource};
use crate::types::{self, DataType, Value, compare};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// Bytes of row data one statement holds; fails the statement past the limit.
#[derive(Debug, Default)]
pub struct WorkBudget {
    used_bytes: usize,
}

impl WorkBudget {
    pub fn new() -> WorkBudget {
        WorkBudget::default()
    }

    pub fn charge(&mut self, bytes: usize) -> SqlResult<()> {
        self.used_bytes = self.used_bytes.saturating_add(bytes);
        if self.used_bytes > MAX_STATEMENT_WORK_BYTES {
            return Err(SqlError::OutOfMemory(format!(
                "the statement needs more than {MAX_STATEMENT_WORK_BYTES} bytes of working memory"
            )));
        }
        Ok(())
    }
}

/// What a statement answered: its command tag, its columns and rows if it has any,
/// and notices (e.g. "already exists, skipping").
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub tag: String,
    pub fields: Option<Vec<Field>>,
    pub rows: Vec<Vec<Value>>,
    pub notices: Vec<String>,
}

impl Outcome {
    fn command(tag: impl Into<String>) -> Outcome {
        Outcome {
            tag: tag.into(),
            fields: None,
            rows: Vec::new(),
            notices: Vec::new(),
        }
    }
}

/// A table's row as read: its key and its values.
pub type KeyedRow = (Vec<u8>, Vec<Value>);

pub async fn execute<K: Kv>(kv: &K, plan: Plan, params: &[Value]) -> SqlResult<Outcome> {
    let mut budget = WorkBudget::new();
    match plan {
        Plan::Select(p) => {
            let rows = run_select(kv, &p, params, &mut budget).await?;
            Ok(Outcome {
                tag: format!("SELECT {}", rows.len()),
                fields: Some(p.fields),
                rows,
                notices: Vec::new(),
            })
        }
        Plan::Insert(p) => crate::exec_dml::run_insert(kv, p, params, &mut budget).await,
        Plan::Update(p) => crate::exec_dml::run_update(kv, p, params, &mut budget).await,
        Plan::Delete(p) => crate::exec_dml::run_delete(kv, p, params, &mut budget).await,
        Plan::CreateTable {
            table,
            if_not_exists,
        } => {
            let name = table.name.clone();
            match catalog::create_table(kv, table).await {
                Err(SqlError::DuplicateTable(_)) if if_not_exists => {
                    let mut o = Outcome::command("CREATE TABLE");
                    o.notices
                        .push(format!("relation \"{name}\" already exists, skipping"));
                    Ok(o)
                }
                r => r.map(|_| Outcome::command("CREATE TABLE")),
            }
        }
        Plan::DropTable { .. } => unreachable!("DROP TABLE runs through Engine::drop_tables"),
    }
}

/// The rows `access` names in `t`, decoded, with their keys.
pub async fn read_rows<K: Kv>(
    kv: &K,
    t: &TableDef,
    access: &Access,
    params: &[Value],
    budget: &mut WorkBudget,
) -> SqlResult<Vec<KeyedRow>> {
    let types = t.types();
    match access {
        Access::Scan => {
            let (start, end) = codec::row_range(t.id);
            let entries = scan_all(kv, start, end, budget).await?;
            entries
                .into_iter()
                .map(|(k, v)| Ok((k, codec::decode_row(&types, &v)?)))
                .collect()
        }
        Access::Point(values) => {
            let Some(key) = point_key(t, values, params)? else {
                return Ok(Vec::new());
            };
            match kv.get(&key).await? {
                Some(v) => {
                    budget.charge(key.len() + v.len())?;
                    Ok(vec![(key, codec::decode_row(&types, &v)?)])
                }
                None => Ok(Vec::new()),
            }
        }
    }
}

/// The key a point access reads (None: no row can match, e.g. `id = NULL` or a value
/// outside the key column's range).
fn point_key(t: &TableDef, values: &[Expr], params: &[Value]) -> SqlResult<Option<Vec<u8>>> {
    let env = Env {
        row: &[],
        params,
        aggs: &[],
    };
    let mut row = vec![Value::Null; t.columns.len()];
    for (&col, e) in t.primary_key.iter().zip(values) {
        let v = e.eval(&env)?;
        let ty = t.columns[col].ty;
        let fits = match (&v, ty) {
            (Value::Null, _) => false,
            (Value::Int(i), ty) if ty.is_int() => types::check_int(*i, ty).is_ok(),
            (Value::Text(s), DataType::Varchar(Some(n))) => s.chars().count() <= n as usize,
            _ => true,
        };
        if !fits {
            return Ok(None);
        }
        row[col] = v;
    }
    Ok(Some(codec::row_key(t, &row)?))
}

pub fn matches(filter: Option<&Expr>, row: &[Value], params: &[Value]) -> SqlResult<bool> {
    match filter {
        None => Ok(true),
        Some(f) => Ok(f.eval(&Env {
            row,
            params,
            aggs: &[],
        })? == Value::Bool(true)),
    }
}

/// Output rows of a SELECT, and the values each sorts by.
type Produced = Vec<(Vec<Value>, Vec<Value>)>;

pub async fn run_select<K: Kv>(
    kv: &K,
    p: &SelectPlan,
    params: &[Value],
    budget: &mut WorkBudget,
) -> SqlResult<Vec<Vec<Value>>> {
    let rows: Vec<Vec<Value>> = match &p.table {
        Some(t) => read_rows(kv, t, &p.access, params, budget)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect(),
        None => vec![Vec::new()],
    };
    let mut kept = Vec::with_capacity(rows.len());
    for r in rows {
        if matches(p.filter.as_ref(), &r, params)? {
            kept.push(r);
        }
    }
    let mut produced = if p.grouped {
        grouped(p, &kept, params)?
    } else {
        kept.iter()
            .map(|r| project(p, r, &[], params))
            .collect::<SqlResult<Produced>>()?
    };
    if p.distinct {
        let mut seen = HashSet::new();
        produced.retain(|(out, _)| seen.insert(row_hash_key(out)));
    }
    sort(&mut produced, &p.order);
    let (offset, limit) = limits(p, params)?;
    Ok(produced
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(out, _)| out)
        .collect())
}

fn project(
    p: &SelectPlan,
    row: &[Value],
    aggs: &[Value],
    params: &[Value],
) -> SqlResult<(Vec<Value>, Vec<Value>)> {
    let env = Env { row, params, aggs };
    let out: Vec<Value> = p
        .outputs
        .iter()
        .map(|e| e.eval(&env))
        .collect::<SqlResult<_>>()?;
    let mut keys = Vec::with_capacity(p.order.len());
    for k in &p.order {
        keys.push(match &k.source {
            SortSource::Output(i) => out[*i].clone(),
            SortSource::Expr(e) => e.eval(&env)?,
        });
    }
    Ok((out, keys))
}

fn limits(p: &SelectPlan, params: &[Value]) -> SqlResult<(usize, usize)> {
    let env = Env {
        row: &[],
        params,
        aggs: &[],
    };
    let eval = |e: &Option<Expr>, negative: SqlError| -> SqlResult<Option<usize>> {
        match e.as_ref().map(|e| e.eval(&env)).transpose()? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(n)) if n < 0 => Err(negative),
            Some(Value::Int(n)) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            Some(_) => Ok(None),
        }
    };
    let limit = eval(&p.limit, SqlError::NegativeLimit)?.unwrap_or(usize::MAX);
    let offset = eval(&p.offset, SqlError::NegativeOffset)?.unwrap_or(0);
    Ok((offset, limit))
}

fn sort(rows: &mut Produced, order: &[SortKey]) {
    if order.is_empty() {
        return;
    }
    rows.sort_by(|(_, a), (_, b)| {
        for (k, (x, y)) in order.iter().zip(a.iter().zip(b)) {
            let o = match (x, y) {
                (Value::Null, Value::Null) => Ordering::Equal,
                (Value::Null, _) => {
                    if k.nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (_, Value::Null) => {
                    if k.nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                _ if k.desc => compare(y, x),
                _ => compare(x, y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

/// One group's aggregate states.
struct Group {
    first: Vec<Value>,
    states: Vec<Acc>,
}

enum AccValue {
    Count(i64),
    Sum(Option<Value>),
    MinMax(Option<Value>),
    Avg { sum: f64, int_sum: i128, count: i64 },
}

struct Acc {
    value: AccValue,
    seen: Option<HashSet<Vec<u8>>>,
}

fn grouped(p: &SelectPlan, rows: &[Vec<Value>], params: &[Value]) -> SqlResult<Produced> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for row in rows {
        let env = Env {
            row,
            params,
            aggs: &[],
        };
        let key: Vec<Value> = p
            .group_by
            .iter()
            .map(|e| e.eval(&env))
            .collect::<SqlResult<_>>()?;
        let g = *index.entry(row_hash_key(&key)).or_insert_with(|| {
            groups.push(Group {
                first: row.clone(),
                states: p.aggs.iter().map(new_acc).collect(),
            });
            groups.len() - 1
        });
        for (acc, call) in groups[g].states.iter_mut().zip(&p.aggs) {
            let v = call.arg.as_ref().map(|a| a.eval(&env)).transpose()?;
            update(acc, call, v)?;
        }
    }
    // Aggregates without GROUP BY answer one row even over no input.
    if groups.is_empty() && p.group_by.is_empty() {
        groups.push(Group {
            first: Vec::new(),
            states: p.aggs.iter().map(new_acc).collect(),
        });
    }
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let aggs: Vec<Value> = g
            .states
            .into_iter()
            .zip(&p.aggs)
            .map(|(a, c)| finish(a, c))
            .collect();
        let having = Env {
            row: &g.first,
            params,
            aggs: &aggs,
        };
        if let Some(h) = &p.having
            && h.eval(&having)? != Value::Bool(true)
        {
            continue;
        }
        out.push(project(p, &g.first, &aggs, params)?);
    }
    Ok(out)
}

fn new_acc(c: &AggCall) -> Acc {
    let value = match c.func {
        AggFunc::Count => AccValue::Count(0),
        AggFunc::Sum => AccValue::Sum(None),
        AggFunc::Min | AggFunc::Max => AccValue::MinMax(None),
        AggFunc::Avg => AccValue::Avg {
            sum: 0.0,
            int_sum: 0,
            count: 0,
        },
    };
    Acc {
        value,
        seen: c.distinct.then(HashSet::new),
    }
}

fn update(acc: &mut Acc, c: &AggCall, v: Option<Value>) -> SqlResult<()> {
    let v = match v {
        None => Value::Bool(true), // count(*): every row counts
        Some(Value::Null) => return Ok(()),
        Some(v) => v,
    };
    if let Some(seen) = &mut acc.seen
        && !seen.insert(row_hash_key(std::slice::from_ref(&v)))
    {
        return Ok(());
    }
    match (&mut acc.value, v) {
        (AccValue::Count(n), _) => *n += 1,
        (AccValue::Sum(s), v) => {
            *s = Some(match (s.take(), v) {
                (None, v) => v,
                (Some(Value::Int(a)), Value::Int(b)) => Value::Int(
                    a.checked_add(b)
                        .ok_or_else(|| types::int_out_of_range(DataType::Int8))?,
                ),
                (Some(Value::Float(a)), Value::Float(b)) => {
                    Value::Float(types::check_float(a + b, c.ty, true)?)
                }
                (Some(a), _) => a,
            });
        }
        (AccValue::MinMax(m), v) => {
            let replace = match m {
                None => true,
                Some(cur) => {
                    let o = compare(&v, cur);
                    (c.func == AggFunc::Min && o == Ordering::Less)
                        || (c.func == AggFunc::Max && o == Ordering::Greater)
                }
            };
            if replace {
                *m = Some(v);
            }
        }
        (
            AccValue::Avg {
                sum,
                int_sum,
                count,
            },
            v,
        ) => {
            match v {
                Value::Int(i) => *int_sum += i as i128,
                Value::Float(f) => *sum += f,
                _ => {}
            }
            *count += 1;
        }
    }
    Ok(())
}

fn finish(acc: Acc, _c: &AggCall) -> Value {
    match acc.value {
        AccValue::Count(n) => Value::Int(n),
        AccValue::Sum(s) | AccValue::MinMax(s) => s.unwrap_or(Value::Null),
        AccValue::Avg { count: 0, .. } => Value::Null,
        AccValue::Avg {
            sum,
            int_sum,
            count,
        } => Value::Float((sum + int_sum as f64) / count as f64),
    }
}

/// A byte string equal for values DISTINCT and GROUP BY treat as equal.
fn row_hash_key(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend_from_slice(&[1, *b as u8]),
            Value::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                let f = if *f == 0.0 {
                    0.0
                } else if f.is_nan() {
                    f64::NAN
                } else {
                    *f
                };
                out.push(3);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Text(s) => {
                out.push(4);
                out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    out
}

/// Checks a row and its key against the storage limits before it is written.
pub fn check_sizes(t: &TableDef, key: &[u8], value: &[u8]) -> SqlResult<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(SqlError::ProgramLimitExceeded(format!(
            "primary key of \"{}\" is {} bytes; the limit is {MAX_KEY_BYTES}",
            t.name,
            key.len()
        )));
    }
    if value.len() > MAX_ROW_BYTES {
        return Err(SqlError::ProgramLimitExceeded(format!(
            "row of \"{}\" is {} bytes; the limit is {MAX_ROW_BYTES}",
            t.name,
            value.len()
        )));
    }
    Ok(())
}
