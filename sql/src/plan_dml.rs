//! Plans of INSERT, UPDATE and DELETE.

use crate::bind::{Binder, ident, object_name};
use crate::catalog::{Catalog, TableDef};
use crate::error::{SqlError, SqlResult, unsupported};
use crate::expr::Expr;
use crate::plan::{
    DeletePlan, InsertPlan, InsertSource, Plan, Returning, UpdatePlan, check_insert_rows,
    plan_query, point_access, projection,
};
use crate::types::DataType;
use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::rc::Rc;

type Planned = SqlResult<(Plan, Vec<DataType>)>;

pub fn plan_insert(i: &ast::Insert, catalog: &Catalog, params: &[DataType]) -> Planned {
    if i.on.is_some()
        || i.or.is_some()
        || i.overwrite
        || !i.assignments.is_empty()
        || i.table_alias.is_some()
    {
        return unsupported("this form of INSERT");
    }
    let ast::TableObject::TableName(name) = &i.table else {
        return unsupported("INSERT into a table function");
    };
    let table = catalog.table(&object_name(name)?)?;
    let mut targets = insert_targets(&table, &i.columns)?;
    // Without a column list, VALUES rows may name fewer columns than the table has:
    // the first ones, the rest take their defaults.
    if let (true, Some(q)) = (i.columns.is_empty(), &i.source)
        && let ast::SetExpr::Values(v) = q.body.as_ref()
    {
        let widest = v.rows.iter().map(|r| r.len()).max().unwrap_or(0);
        targets.truncate(widest.max(1));
    }
    let mut b = Binder::new(None, params);
    let source = match &i.source {
        Some(q) => insert_source(q, &table, &targets, catalog, &mut b)?,
        None => return unsupported("INSERT DEFAULT VALUES"),
    };
    let source_types = match &source {
        InsertSource::Values(rows) => (0..targets.len())
            .map(|c| rows.first().map_or(DataType::Unknown, |r| r[c].ty))
            .collect(),
        InsertSource::Select(p) => p.fields.iter().map(|f| f.ty).collect(),
    };
    if let InsertSource::Select(p) = &source
        && p.fields.len() > targets.len()
    {
        return Err(SqlError::Syntax(
            "INSERT has more expressions than target columns".into(),
        ));
    }
    let defaults = defaults(&table)?;
    let returning = returning(i.returning.as_deref(), &table, &mut b)?;
    let plan = InsertPlan {
        table,
        targets,
        source,
        source_types,
        defaults,
        returning,
    };
    Ok((Plan::Insert(plan), b.param_types()))
}

fn insert_targets(t: &TableDef, columns: &[ast::ObjectName]) -> SqlResult<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..t.columns.len()).collect());
    }
    let mut targets = Vec::with_capacity(columns.len());
    for c in columns {
        let name = object_name(c)?;
        let pos = t.column_index(&name).ok_or_else(|| {
            SqlError::UndefinedColumnText(format!(
                "column \"{name}\" of relation \"{}\" does not exist",
                t.name
            ))
        })?;
        if targets.contains(&pos) {
            return Err(SqlError::DuplicateColumn(name));
        }
        targets.push(pos);
    }
    Ok(targets)
}

fn insert_source(
    q: &ast::Query,
    t: &TableDef,
    targets: &[usize],
    catalog: &Catalog,
    b: &mut Binder,
) -> SqlResult<InsertSource> {
    let ast::SetExpr::Values(values) = q.body.as_ref() else {
        let p = plan_query(q, catalog, b)?;
        return Ok(InsertSource::Select(Box::new(p)));
    };
    if q.order_by.is_some() || q.limit_clause.is_some() {
        return unsupported("ORDER BY or LIMIT on VALUES");
    }
    check_insert_rows(values.rows.len())?;
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.len() > targets.len() {
            return Err(SqlError::Syntax(
                "INSERT has more expressions than target columns".into(),
            ));
        }
        if row.len() < targets.len() {
            return Err(SqlError::Syntax(
                "INSERT has more target columns than expressions".into(),
            ));
        }
        let mut bound = Vec::with_capacity(row.len());
        for (e, &col) in row.iter().zip(targets) {
            let x = b.bind(e)?;
            // Unknown literals and parameters take the column's type.
            let x = if x.ty == DataType::Unknown {
                b.coerce(x, t.columns[col].ty)?
            } else {
                x
            };
            bound.push(x);
        }
        rows.push(bound);
    }
    Ok(InsertSource::Values(rows))
}

/// Each column's DEFAULT, parsed from the catalog's text and bound (it reads no row).
pub fn defaults(t: &TableDef) -> SqlResult<Vec<Option<Expr>>> {
    t.columns
        .iter()
        .map(|c| {
            let Some(text) = &c.default else {
                return Ok(None);
            };
            let e = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(text)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| SqlError::Corrupt(format!("DEFAULT of {}.{}: {e}", t.name, c.name)))?;
            let mut b = Binder::new(None, &[]);
            let x = b.bind(&e)?;
            Ok(Some(if x.ty == DataType::Unknown {
                b.coerce(x, c.ty)?
            } else {
                x
            }))
        })
        .collect()
}

fn returning(
    items: Option<&[ast::SelectItem]>,
    t: &Rc<TableDef>,
    b: &mut Binder,
) -> SqlResult<Option<Returning>> {
    let Some(items) = items else { return Ok(None) };
    b.table = Some(t.clone());
    b.qualifier = Some(t.name.clone());
    let (outputs, fields) = projection(items, b)?;
    b.table = None;
    Ok(Some(Returning { outputs, fields }))
}

fn dml_table(twj: &ast::TableWithJoins, catalog: &Catalog) -> SqlResult<(Rc<TableDef>, String)> {
    if !twj.joins.is_empty() {
        return unsupported("joins in UPDATE or DELETE");
    }
    match &twj.relation {
        ast::TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let t = catalog.table(&object_name(name)?)?;
            let q = alias
                .as_ref()
                .map_or_else(|| t.name.clone(), |a| ident(&a.name));
            Ok((t, q))
        }
        other => unsupported(format!("UPDATE or DELETE of {other}")),
    }
}

fn where_clause(selection: Option<&ast::Expr>, b: &mut Binder) -> SqlResult<Option<Expr>> {
    b.aggs_refused = Some("in WHERE");
    selection
        .map(|w| {
            let e = b.bind(w)?;
            b.condition(e, "WHERE")
        })
        .transpose()
}

pub fn plan_update(u: &ast::Update, catalog: &Catalog, params: &[DataType]) -> Planned {
    if u.from.is_some() || u.or.is_some() || !u.order_by.is_empty() || u.limit.is_some() {
        return unsupported("this form of UPDATE");
    }
    let (table, qualifier) = dml_table(&u.table, catalog)?;
    let mut b = Binder::new(Some(table.clone()), params);
    b.qualifier = Some(qualifier);
    let filter = where_clause(u.selection.as_ref(), &mut b)?;
    b.aggs_refused = Some("in UPDATE");
    let mut sets: Vec<(usize, Expr)> = Vec::with_capacity(u.assignments.len());
    for a in &u.assignments {
        let ast::AssignmentTarget::ColumnName(name) = &a.target else {
            return unsupported("assigning a tuple of columns");
        };
        let col_name = object_name(name)?;
        let col = table.column_index(&col_name).ok_or_else(|| {
            SqlError::UndefinedColumnText(format!(
                "column \"{col_name}\" of relation \"{}\" does not exist",
                table.name
            ))
        })?;
        if sets.iter().any(|(c, _)| *c == col) {
            return Err(SqlError::DuplicateColumnAssignment(col_name));
        }
        let x = b.bind(&a.value)?;
        let x = if x.ty == DataType::Unknown {
            b.coerce(x, table.columns[col].ty)?
        } else {
            x
        };
        sets.push((col, x));
    }
    let access = point_access(&table, filter.as_ref());
    let returning = returning_in_scope(u.returning.as_deref(), &mut b)?;
    let plan = UpdatePlan {
        table,
        access,
        filter,
        sets,
        returning,
    };
    Ok((Plan::Update(plan), b.param_types()))
}

fn returning_in_scope(
    items: Option<&[ast::SelectItem]>,
    b: &mut Binder,
) -> SqlResult<Option<Returning>> {
    let Some(items) = items else { return Ok(None) };
    b.aggs_refused = Some("in RETURNING");
    let (outputs, fields) = projection(items, b)?;
    Ok(Some(Returning { outputs, fields }))
}

pub fn plan_delete(d: &ast::Delete, catalog: &Catalog, params: &[DataType]) -> Planned {
    if d.using.is_some() || !d.order_by.is_empty() || d.limit.is_some() || !d.tables.is_empty() {
        return unsupported("this form of DELETE");
    }
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
    };
    let [twj] = from.as_slice() else {
        return unsupported("DELETE from several tables");
    };
    let (table, qualifier) = dml_table(twj, catalog)?;
    let mut b = Binder::new(Some(table.clone()), params);
    b.qualifier = Some(qualifier);
    let filter = where_clause(d.selection.as_ref(), &mut b)?;
    let access = point_access(&table, filter.as_ref());
    let returning = returning_in_scope(d.returning.as_deref(), &mut b)?;
    let plan = DeletePlan {
        table,
        access,
        filter,
        returning,
    };
    Ok((Plan::Delete(plan), b.param_types()))
}
