//! INSERT, UPDATE and DELETE. Each checks everything it can (types, NOT NULL,
//! duplicate keys) before its first write, so a failing statement usually writes
//! nothing; writes of rows in different partitions are not atomic together yet
//! (`docs/ARCHITECTURE.md`, SQL).

use crate::catalog::TableDef;
use crate::codec;
use crate::error::{SqlError, SqlResult};
use crate::exec::{KeyedRow, Outcome, WorkBudget, check_sizes, matches, read_rows, run_select};
use crate::expr::{Env, Expr};
use crate::kv::Kv;
use crate::plan::{Access, DeletePlan, InsertPlan, InsertSource, Returning, UpdatePlan};
use crate::types::{self, Value};
use std::collections::HashSet;

/// Evaluates the source rows of an INSERT and completes them into table rows.
async fn insert_rows<K: Kv>(
    kv: &K,
    p: &InsertPlan,
    params: &[Value],
    budget: &mut WorkBudget,
) -> SqlResult<Vec<Vec<Value>>> {
    let env = Env {
        row: &[],
        params,
        aggs: &[],
    };
    let typed: Vec<Vec<(Value, types::DataType)>> = match &p.source {
        InsertSource::Values(rows) => rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|e| Ok((e.eval(&env)?, e.ty)))
                    .collect::<SqlResult<_>>()
            })
            .collect::<SqlResult<_>>()?,
        InsertSource::Select(s) => run_select(kv, s, params, budget)
            .await?
            .into_iter()
            .map(|r| r.into_iter().zip(p.source_types.iter().copied()).collect())
            .collect(),
    };
    let t = &p.table;
    let mut out = Vec::with_capacity(typed.len());
    for source in typed {
        let mut row = vec![Value::Null; t.columns.len()];
        for (i, d) in p.defaults.iter().enumerate() {
            if let (Some(d), false) = (d, p.targets.contains(&i)) {
                let c = &t.columns[i];
                row[i] = types::assign(d.eval(&env)?, d.ty, c.ty, &c.name)?;
            }
        }
        for ((v, ty), &i) in source.into_iter().zip(&p.targets) {
            let c = &t.columns[i];
            row[i] = types::assign(v, ty, c.ty, &c.name)?;
        }
        check_not_null(t, &row)?;
        out.push(row);
    }
    Ok(out)
}

fn check_not_null(t: &TableDef, row: &[Value]) -> SqlResult<()> {
    for (c, v) in t.columns.iter().zip(row) {
        if c.not_null && *v == Value::Null {
            let values: Vec<String> = t
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| value_text(v, c.ty))
                .collect();
            return Err(SqlError::NotNullViolation {
                table: t.name.clone(),
                column: c.name.clone(),
                detail: format!("Failing row contains ({}).", values.join(", ")),
            });
        }
    }
    Ok(())
}

/// A value as PostgreSQL's error details show it (unquoted; NULL as `null`).
fn value_text(v: &Value, ty: types::DataType) -> String {
    types::format_text(v, ty).unwrap_or_else(|| "null".into())
}

/// 23505 for the row `row`, naming its key as PostgreSQL's DETAIL does.
fn duplicate(t: &TableDef, row: &[Value]) -> SqlError {
    let cols: Vec<&str> = t
        .primary_key
        .iter()
        .map(|&i| t.columns[i].name.as_str())
        .collect();
    let vals: Vec<String> = t
        .primary_key
        .iter()
        .map(|&i| value_text(&row[i], t.columns[i].ty))
        .collect();
    SqlError::UniqueViolation {
        constraint: t.primary_key_name(),
        detail: format!(
            "Key ({})=({}) already exists.",
            cols.join(", "),
            vals.join(", ")
        ),
    }
}

pub async fn run_insert<K: Kv>(
    kv: &K,
    p: InsertPlan,
    params: &[Value],
    budget: &mut WorkBudget,
) -> SqlResult<Outcome> {
    let rows = insert_rows(kv, &p, params, budget).await?;
    let t = &p.table;
    let types = t.types();
    let first_row_id = if t.hidden_row_id && !rows.is_empty() {
        let n = rows.len() as i64;
        kv.incr(codec::row_id_key(t.id), n).await? - n + 1
    } else {
        0
    };
    let mut writes = Vec::with_capacity(rows.len());
    let mut keys = HashSet::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let key = match t.hidden_row_id {
            true => codec::hidden_row_key(t.id, first_row_id + i as i64),
            false => codec::row_key(t, row)?,
        };
        let value = codec::encode_row(&types, row);
        check_sizes(t, &key, &value)?;
        budget.charge(key.len() + value.len())?;
        if !keys.insert(key.clone()) {
            return Err(duplicate(t, row));
        }
        writes.push((key, value));
    }
    if !t.hidden_row_id {
        for ((key, _), row) in writes.iter().zip(&rows) {
            if kv.get(key).await?.is_some() {
                return Err(duplicate(t, row));
            }
        }
    }
    for ((key, value), row) in writes.into_iter().zip(&rows) {
        // Compare-and-set on absence: a concurrent insert of the same key loses here.
        if !kv.cas(key, None, Some(value)).await? {
            return Err(duplicate(t, row));
        }
    }
    let returned = returning(p.returning.as_ref(), &rows, params)?;
    Ok(outcome(
        format!("INSERT 0 {}", rows.len()),
        p.returning,
        returned,
    ))
}

fn returning(
    r: Option<&Returning>,
    rows: &[Vec<Value>],
    params: &[Value],
) -> SqlResult<Vec<Vec<Value>>> {
    let Some(r) = r else { return Ok(Vec::new()) };
    rows.iter()
        .map(|row| {
            let env = Env {
                row,
                params,
                aggs: &[],
            };
            r.outputs.iter().map(|e| e.eval(&env)).collect()
        })
        .collect()
}

fn outcome(tag: String, r: Option<Returning>, rows: Vec<Vec<Value>>) -> Outcome {
    Outcome {
        tag,
        fields: r.map(|r| r.fields),
        rows,
        notices: Vec::new(),
    }
}

async fn matching_rows<K: Kv>(
    kv: &K,
    t: &TableDef,
    access: &Access,
    filter: Option<&Expr>,
    params: &[Value],
    budget: &mut WorkBudget,
) -> SqlResult<Vec<KeyedRow>> {
    let mut out = Vec::new();
    for (k, row) in read_rows(kv, t, access, params, budget).await? {
        if matches(filter, &row, params)? {
            out.push((k, row));
        }
    }
    Ok(out)
}

pub async fn run_update<K: Kv>(
    kv: &K,
    p: UpdatePlan,
    params: &[Value],
    budget: &mut WorkBudget,
) -> SqlResult<Outcome> {
    let t = &p.table;
    let types = t.types();
    let old = matching_rows(kv, t, &p.access, p.filter.as_ref(), params, budget).await?;
    // Compute and check every new row first: nothing is written if one fails.
    let mut new_rows = Vec::with_capacity(old.len());
    for (key, row) in &old {
        let env = Env {
            row,
            params,
            aggs: &[],
        };
        let mut new = row.clone();
        for (col, e) in &p.sets {
            let c = &t.columns[*col];
            new[*col] = types::assign(e.eval(&env)?, e.ty, c.ty, &c.name)?;
        }
        check_not_null(t, &new)?;
        let new_key = if t.hidden_row_id {
            key.clone()
        } else {
            codec::row_key(t, &new)?
        };
        let value = codec::encode_row(&types, &new);
        check_sizes(t, &new_key, &value)?;
        budget.charge(new_key.len() + value.len())?;
        new_rows.push((new_key, value, new));
    }
    check_moved_keys(kv, t, &old, &new_rows).await?;
    for ((old_key, _), (new_key, _, _)) in old.iter().zip(&new_rows) {
        if *old_key != *new_key {
            kv.delete(old_key.clone()).await?;
        }
    }
    for ((old_key, _), (new_key, value, row)) in old.iter().zip(&new_rows) {
        if old_key == new_key {
            kv.put(new_key.clone(), value.clone()).await?;
        } else if !kv.cas(new_key.clone(), None, Some(value.clone())).await? {
            return Err(duplicate(t, row));
        }
    }
    let rows: Vec<Vec<Value>> = new_rows.into_iter().map(|(_, _, r)| r).collect();
    let returned = returning(p.returning.as_ref(), &rows, params)?;
    Ok(outcome(
        format!("UPDATE {}", rows.len()),
        p.returning,
        returned,
    ))
}

/// Rows whose primary key changes must land on keys that are free, or that this
/// statement vacates, and on distinct ones (uniqueness holds at the statement's end).
async fn check_moved_keys<K: Kv>(
    kv: &K,
    t: &TableDef,
    old: &[KeyedRow],
    new: &[(Vec<u8>, Vec<u8>, Vec<Value>)],
) -> SqlResult<()> {
    let old_keys: HashSet<&Vec<u8>> = old.iter().map(|(k, _)| k).collect();
    let mut new_keys = HashSet::with_capacity(new.len());
    for (k, _, row) in new {
        if !new_keys.insert(k) {
            return Err(duplicate(t, row));
        }
    }
    for ((old_key, _), (new_key, _, row)) in old.iter().zip(new) {
        if old_key != new_key && !old_keys.contains(new_key) && kv.get(new_key).await?.is_some() {
            return Err(duplicate(t, row));
        }
    }
    Ok(())
}

pub async fn run_delete<K: Kv>(
    kv: &K,
    p: DeletePlan,
    params: &[Value],
    budget: &mut WorkBudget,
) -> SqlResult<Outcome> {
    let rows = matching_rows(kv, &p.table, &p.access, p.filter.as_ref(), params, budget).await?;
    for (k, _) in &rows {
        kv.delete(k.clone()).await?;
    }
    let values: Vec<Vec<Value>> = rows.into_iter().map(|(_, r)| r).collect();
    let returned = returning(p.returning.as_ref(), &values, params)?;
    Ok(outcome(
        format!("DELETE {}", values.len()),
        p.returning,
        returned,
    ))
}
