//! Statements to plans: which table, which rows (one key or a scan), which
//! expressions. Planning binds against one catalog version; describing a statement
//! (extended query) and executing it both plan it.

use crate::bind::{AggCall, Binder, ident, map_type, object_name};
use crate::catalog::{Catalog, Column, TableDef};
use crate::config::{MAX_COLUMNS_PER_TABLE, MAX_IDENTIFIER_BYTES, MAX_INSERT_ROWS};
use crate::error::{SqlError, SqlResult, unsupported};
use crate::expr::{BinOp, Expr, Kind};
use crate::types::DataType;
use sqlparser::ast;
use std::rc::Rc;

/// A result column as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: DataType,
}

/// Which rows of the table a statement reads.
#[derive(Debug, Clone)]
pub enum Access {
    /// Every row (a scan of the table's key range).
    Scan,
    /// The one row whose primary key equals these values (one per key column).
    Point(Vec<Expr>),
}

#[derive(Debug, Clone)]
pub enum SortSource {
    Output(usize),
    Expr(Expr),
}

#[derive(Debug, Clone)]
pub struct SortKey {
    pub source: SortSource,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone)]
pub struct SelectPlan {
    pub table: Option<Rc<TableDef>>,
    pub access: Access,
    pub filter: Option<Expr>,
    pub grouped: bool,
    pub group_by: Vec<Expr>,
    pub aggs: Vec<AggCall>,
    pub having: Option<Expr>,
    pub outputs: Vec<Expr>,
    pub fields: Vec<Field>,
    pub distinct: bool,
    pub order: Vec<SortKey>,
    pub limit: Option<Expr>,
    pub offset: Option<Expr>,
}

/// RETURNING: expressions over the written row.
#[derive(Debug, Clone)]
pub struct Returning {
    pub outputs: Vec<Expr>,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub enum InsertSource {
    Values(Vec<Vec<Expr>>),
    Select(Box<SelectPlan>),
}

#[derive(Debug, Clone)]
pub struct InsertPlan {
    pub table: Rc<TableDef>,
    /// Table positions of the listed columns, in the source's order.
    pub targets: Vec<usize>,
    pub source: InsertSource,
    /// Types of the source's columns, in `targets` order.
    pub source_types: Vec<DataType>,
    /// Each table column's DEFAULT (None: NULL).
    pub defaults: Vec<Option<Expr>>,
    pub returning: Option<Returning>,
}

#[derive(Debug, Clone)]
pub struct UpdatePlan {
    pub table: Rc<TableDef>,
    pub access: Access,
    pub filter: Option<Expr>,
    pub sets: Vec<(usize, Expr)>,
    pub returning: Option<Returning>,
}

#[derive(Debug, Clone)]
pub struct DeletePlan {
    pub table: Rc<TableDef>,
    pub access: Access,
    pub filter: Option<Expr>,
    pub returning: Option<Returning>,
}

#[derive(Debug, Clone)]
pub enum Plan {
    Select(SelectPlan),
    Insert(InsertPlan),
    Update(UpdatePlan),
    Delete(DeletePlan),
    CreateTable {
        table: TableDef,
        if_not_exists: bool,
    },
    DropTable {
        names: Vec<String>,
        if_exists: bool,
    },
}

impl Plan {
    /// The columns the statement answers with (None: a command without rows).
    pub fn fields(&self) -> Option<&[Field]> {
        match self {
            Plan::Select(s) => Some(&s.fields),
            Plan::Insert(InsertPlan {
                returning: Some(r), ..
            })
            | Plan::Update(UpdatePlan {
                returning: Some(r), ..
            })
            | Plan::Delete(DeletePlan {
                returning: Some(r), ..
            }) => Some(&r.fields),
            _ => None,
        }
    }
}

/// Plans one statement; answers the plan and the parameter types it infers.
pub fn plan(
    stmt: &ast::Statement,
    catalog: &Catalog,
    params: &[DataType],
) -> SqlResult<(Plan, Vec<DataType>)> {
    match stmt {
        ast::Statement::Query(q) => {
            let mut b = Binder::new(None, params);
            let p = plan_query(q, catalog, &mut b)?;
            Ok((Plan::Select(p), b.param_types()))
        }
        ast::Statement::Insert(i) => crate::plan_dml::plan_insert(i, catalog, params),
        ast::Statement::Update(u) => crate::plan_dml::plan_update(u, catalog, params),
        ast::Statement::Delete(d) => crate::plan_dml::plan_delete(d, catalog, params),
        ast::Statement::CreateTable(c) => Ok((plan_create(c)?, Vec::new())),
        ast::Statement::Drop {
            object_type: ast::ObjectType::Table,
            if_exists,
            names,
            cascade: false,
            ..
        } => {
            let names = names.iter().map(object_name).collect::<SqlResult<_>>()?;
            Ok((
                Plan::DropTable {
                    names,
                    if_exists: *if_exists,
                },
                Vec::new(),
            ))
        }
        other => unsupported(format!("statement {}", statement_kind(other))),
    }
}

/// The first words of a statement, for "not supported" errors.
fn statement_kind(s: &ast::Statement) -> String {
    let text = s.to_string();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Plans a SELECT (the binder carries the parameter types across subplans).
pub fn plan_query(q: &ast::Query, catalog: &Catalog, b: &mut Binder) -> SqlResult<SelectPlan> {
    if q.with.is_some() || q.fetch.is_some() || !q.locks.is_empty() {
        return unsupported("WITH, FETCH and locking clauses");
    }
    let select = match q.body.as_ref() {
        ast::SetExpr::Select(s) => s,
        ast::SetExpr::Query(inner) if q.order_by.is_none() && q.limit_clause.is_none() => {
            return plan_query(inner, catalog, b);
        }
        other => return unsupported(format!("query {other}")),
    };
    let (table, qualifier) = from_table(select, catalog)?;
    b.table = table.clone();
    b.qualifier = qualifier;
    let mut p = plan_select_body(select, b)?;
    p.table = table;
    plan_order(q, select, &mut p, b)?;
    plan_limit(q, &mut p, b)?;
    p.aggs = b.aggs.clone();
    if let Some(t) = &p.table {
        p.access = point_access(t, p.filter.as_ref());
    }
    Ok(p)
}

fn from_table(
    s: &ast::Select,
    catalog: &Catalog,
) -> SqlResult<(Option<Rc<TableDef>>, Option<String>)> {
    match s.from.as_slice() {
        [] => Ok((None, None)),
        [twj] if twj.joins.is_empty() => match &twj.relation {
            ast::TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let t = catalog.table(&object_name(name)?)?;
                let q = match alias {
                    Some(a) if !a.columns.is_empty() => {
                        return unsupported("column aliases in FROM");
                    }
                    Some(a) => ident(&a.name),
                    None => t.name.clone(),
                };
                Ok((Some(t), Some(q)))
            }
            other => unsupported(format!("FROM {other}")),
        },
        _ => unsupported("joins"),
    }
}

fn plan_select_body(s: &ast::Select, b: &mut Binder) -> SqlResult<SelectPlan> {
    let distinct = match &s.distinct {
        None | Some(ast::Distinct::All) => false,
        Some(ast::Distinct::Distinct) => true,
        Some(ast::Distinct::On(_)) => return unsupported("DISTINCT ON"),
    };
    b.aggs_refused = Some("in WHERE");
    let filter = s
        .selection
        .as_ref()
        .map(|w| {
            let e = b.bind(w)?;
            b.condition(e, "WHERE")
        })
        .transpose()?;
    b.aggs_refused = Some("in GROUP BY");
    let group_by = match &s.group_by {
        ast::GroupByExpr::Expressions(exprs, mods) if mods.is_empty() => exprs
            .iter()
            .map(|g| group_expr(g, s, b))
            .collect::<SqlResult<Vec<_>>>()?,
        _ => return unsupported("GROUP BY ALL and grouping modifiers"),
    };
    b.aggs_refused = None;
    let (outputs, fields) = projection(&s.projection, b)?;
    let having = s
        .having
        .as_ref()
        .map(|h| {
            let e = b.bind(h)?;
            b.condition(e, "HAVING")
        })
        .transpose()?;
    let grouped = !group_by.is_empty() || !b.aggs.is_empty() || having.is_some();
    let p = SelectPlan {
        table: None,
        access: Access::Scan,
        filter,
        grouped,
        group_by,
        aggs: Vec::new(),
        having,
        outputs,
        fields,
        distinct,
        order: Vec::new(),
        limit: None,
        offset: None,
    };
    if grouped {
        for e in p.outputs.iter().chain(p.having.iter()) {
            check_grouped(e, &p.group_by, b)?;
        }
    }
    Ok(p)
}

/// A GROUP BY item: an output position (`GROUP BY 1`), an output alias, or an
/// expression over the input.
fn group_expr(g: &ast::Expr, s: &ast::Select, b: &mut Binder) -> SqlResult<Expr> {
    if let Some(n) = ordinal(g) {
        let item = s.projection.get(n.wrapping_sub(1)).ok_or_else(|| {
            SqlError::Syntax(format!("GROUP BY position {n} is not in select list"))
        })?;
        return match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                b.bind(e)
            }
            _ => unsupported("GROUP BY a wildcard position"),
        };
    }
    if let ast::Expr::Identifier(i) = g {
        let name = ident(i);
        let is_column = b
            .table
            .as_ref()
            .is_some_and(|t| t.column_index(&name).is_some());
        let alias = s.projection.iter().find_map(|item| match item {
            ast::SelectItem::ExprWithAlias { expr, alias } if ident(alias) == name => Some(expr),
            _ => None,
        });
        if let (false, Some(e)) = (is_column, alias) {
            return b.bind(e);
        }
    }
    b.bind(g)
}

fn ordinal(e: &ast::Expr) -> Option<usize> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(s, _) => s.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Checks that a grouped query's expression reads columns only through the GROUP BY
/// expressions or inside aggregates (42803 otherwise).
fn check_grouped(e: &Expr, group_by: &[Expr], b: &Binder) -> SqlResult<()> {
    if group_by.contains(e) {
        return Ok(());
    }
    if let Kind::Column(i) = e.kind {
        let (t, c) = match &b.table {
            Some(t) => (
                b.qualifier.clone().unwrap_or_default(),
                t.columns[i].name.clone(),
            ),
            None => (String::new(), String::new()),
        };
        return Err(SqlError::Grouping(format!(
            "column \"{t}.{c}\" must appear in the GROUP BY clause or be used in an aggregate function"
        )));
    }
    for child in children(e) {
        check_grouped(child, group_by, b)?;
    }
    Ok(())
}

fn children(e: &Expr) -> Vec<&Expr> {
    match &e.kind {
        Kind::Const(_) | Kind::Column(_) | Kind::Param(_) | Kind::Agg(_) => vec![],
        Kind::Neg(x)
        | Kind::Not(x)
        | Kind::IsNull(x, _)
        | Kind::IsBool(x, _, _)
        | Kind::Cast(x) => vec![x],
        Kind::Binary(_, a, b) | Kind::IsDistinct(a, b, _) | Kind::Like(a, b, _, _) => vec![a, b],
        Kind::Case { whens, otherwise } => {
            let mut v: Vec<&Expr> = whens.iter().flat_map(|(w, t)| [w, t]).collect();
            v.extend(otherwise.as_deref());
            v
        }
        Kind::InList(x, list, _) => std::iter::once(x.as_ref()).chain(list.iter()).collect(),
        Kind::Func(_, args) => args.iter().collect(),
    }
}

/// The select list: expressions and the names PostgreSQL gives their columns.
pub fn projection(items: &[ast::SelectItem], b: &mut Binder) -> SqlResult<(Vec<Expr>, Vec<Field>)> {
    let mut outputs = Vec::new();
    let mut fields = Vec::new();
    for item in items {
        match item {
            ast::SelectItem::UnnamedExpr(e) => {
                let x = finish_output(b.bind(e)?, b)?;
                fields.push(Field {
                    name: column_name(e),
                    ty: x.ty,
                });
                outputs.push(x);
            }
            ast::SelectItem::ExprWithAlias { expr, alias } => {
                let x = finish_output(b.bind(expr)?, b)?;
                fields.push(Field {
                    name: ident(alias),
                    ty: x.ty,
                });
                outputs.push(x);
            }
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                let t = b.table.clone().ok_or_else(|| {
                    SqlError::Syntax("SELECT * with no tables specified is not valid".into())
                })?;
                for (i, c) in t.columns.iter().enumerate() {
                    outputs.push(Expr::new(Kind::Column(i), c.ty));
                    fields.push(Field {
                        name: c.name.clone(),
                        ty: c.ty,
                    });
                }
            }
            other => return unsupported(format!("select item {other}")),
        }
    }
    Ok((outputs, fields))
}

/// An output of unknown type (a bare string literal or NULL) is text.
fn finish_output(e: Expr, b: &mut Binder) -> SqlResult<Expr> {
    if e.ty == DataType::Unknown {
        return b.coerce(e, DataType::Text);
    }
    Ok(e)
}

/// PostgreSQL's name for an unaliased result column (FigureColname).
pub fn column_name(e: &ast::Expr) -> String {
    use ast::Expr as E;
    match e {
        E::Identifier(i) => ident(i),
        E::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        E::Nested(inner) => column_name(inner),
        E::Function(f) => object_name(&f.name).unwrap_or_else(|_| "?column?".into()),
        E::Case { .. } => "case".into(),
        E::Cast {
            expr, data_type, ..
        } => match column_name(expr).as_str() {
            "?column?" => map_type(data_type)
                .map(type_column_name)
                .unwrap_or("?column?")
                .into(),
            name => name.into(),
        },
        _ => "?column?".into(),
    }
}

fn type_column_name(t: DataType) -> &'static str {
    match t {
        DataType::Bool => "bool",
        DataType::Int2 => "int2",
        DataType::Int4 => "int4",
        DataType::Int8 => "int8",
        DataType::Float4 => "float4",
        DataType::Float8 => "float8",
        DataType::Text | DataType::Unknown => "text",
        DataType::Varchar(_) => "varchar",
        DataType::Bpchar(_) => "bpchar",
    }
}

fn plan_order(
    q: &ast::Query,
    s: &ast::Select,
    p: &mut SelectPlan,
    b: &mut Binder,
) -> SqlResult<()> {
    let Some(order_by) = &q.order_by else {
        return Ok(());
    };
    let ast::OrderByKind::Expressions(items) = &order_by.kind else {
        return unsupported("ORDER BY ALL");
    };
    for item in items {
        let desc = matches!(item.options.sort, Some(ast::OrderBySort::Desc));
        if matches!(item.options.sort, Some(ast::OrderBySort::Using(_))) {
            return unsupported("ORDER BY USING");
        }
        let source = order_source(&item.expr, s, p, b)?;
        if let (true, SortSource::Expr(_)) = (p.distinct, &source) {
            return Err(SqlError::InvalidColumnReference(
                "for SELECT DISTINCT, ORDER BY expressions must appear in select list".into(),
            ));
        }
        // NULLs sort as larger than every value unless told otherwise.
        let nulls_first = item.options.nulls_first.unwrap_or(desc);
        p.order.push(SortKey {
            source,
            desc,
            nulls_first,
        });
    }
    Ok(())
}

fn order_source(
    e: &ast::Expr,
    s: &ast::Select,
    p: &SelectPlan,
    b: &mut Binder,
) -> SqlResult<SortSource> {
    if let Some(n) = ordinal(e) {
        if n == 0 || n > p.outputs.len() {
            return Err(SqlError::InvalidColumnReference(format!(
                "ORDER BY position {n} is not in select list"
            )));
        }
        return Ok(SortSource::Output(n - 1));
    }
    if let ast::Expr::Identifier(i) = e {
        let name = ident(i);
        let matches: Vec<usize> = p
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name == name)
            .map(|(i, _)| i)
            .collect();
        let named_output = s.projection.iter().any(|item| match item {
            ast::SelectItem::ExprWithAlias { alias, .. } => ident(alias) == name,
            ast::SelectItem::UnnamedExpr(_)
            | ast::SelectItem::Wildcard(_)
            | ast::SelectItem::QualifiedWildcard(..) => true,
            _ => false,
        });
        if let ([only], true) = (matches.as_slice(), named_output) {
            return Ok(SortSource::Output(*only));
        }
    }
    b.aggs_refused = if p.grouped { None } else { Some("here") };
    let x = b.bind(e)?;
    b.aggs_refused = Some("here");
    let x = finish_output(x, b)?;
    if let Some(i) = p.outputs.iter().position(|o| *o == x) {
        return Ok(SortSource::Output(i));
    }
    if p.grouped {
        check_grouped(&x, &p.group_by, b)?;
    }
    Ok(SortSource::Expr(x))
}

fn plan_limit(q: &ast::Query, p: &mut SelectPlan, b: &mut Binder) -> SqlResult<()> {
    let (limit, offset) = match &q.limit_clause {
        None => (None, None),
        Some(ast::LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => (limit.as_ref(), offset.as_ref().map(|o| &o.value)),
        Some(_) => return unsupported("LIMIT offset, count"),
    };
    let mut bound = |e: Option<&ast::Expr>, what: &str| -> SqlResult<Option<Expr>> {
        let Some(e) = e else { return Ok(None) };
        // LIMIT ALL parses as a NULL limit.
        let x = b.bind(e)?;
        if !x.is_row_independent() {
            return Err(SqlError::Syntax(format!(
                "argument of {what} must not contain variables"
            )));
        }
        let x = match x.ty {
            DataType::Unknown => b.coerce(x, DataType::Int8)?,
            t if t.is_int() => x,
            t => {
                return Err(SqlError::DatatypeMismatch(format!(
                    "argument of {what} must be type bigint, not type {}",
                    t.name()
                )));
            }
        };
        Ok(Some(x))
    };
    p.limit = bound(limit, "LIMIT")?;
    p.offset = bound(offset, "OFFSET")?;
    Ok(())
}

/// The point path: a filter whose AND-ed terms fix every primary-key column to a
/// value that reads no row (`id = 5`, `id = $1`) reads one key instead of scanning.
pub fn point_access(t: &TableDef, filter: Option<&Expr>) -> Access {
    if t.primary_key.is_empty() {
        return Access::Scan;
    }
    let mut terms = Vec::new();
    if let Some(f) = filter {
        conjuncts(f, &mut terms);
    }
    let mut values = Vec::with_capacity(t.primary_key.len());
    for &col in &t.primary_key {
        let ty = t.columns[col].ty;
        let found = terms.iter().find_map(|term| match &term.kind {
            Kind::Binary(BinOp::Eq, a, b) => match (&a.kind, &b.kind) {
                (Kind::Column(c), _)
                    if *c == col && b.is_row_independent() && key_compatible(ty, b.ty) =>
                {
                    Some((**b).clone())
                }
                (_, Kind::Column(c))
                    if *c == col && a.is_row_independent() && key_compatible(ty, a.ty) =>
                {
                    Some((**a).clone())
                }
                _ => None,
            },
            _ => None,
        });
        match found {
            Some(v) => values.push(v),
            None => return Access::Scan,
        }
    }
    Access::Point(values)
}

/// A value of type `v` compares with a key column of type `k` exactly as the key's
/// encoding orders it (an int column against a float value does not).
fn key_compatible(k: DataType, v: DataType) -> bool {
    (k.is_int() && v.is_int())
        || k == v
        || (k.is_string() && v.is_string() && !matches!(k, DataType::Bpchar(_)))
}

fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match &e.kind {
        Kind::Binary(BinOp::And, a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        _ => out.push(e),
    }
}

/// CREATE TABLE: columns, types, NOT NULL, DEFAULT and the primary key.
fn plan_create(c: &ast::CreateTable) -> SqlResult<Plan> {
    if c.or_replace || c.temporary || c.external || c.query.is_some() || c.like.is_some() {
        return unsupported("this form of CREATE TABLE");
    }
    let name = object_name(&c.name)?;
    check_identifier(&name)?;
    if c.columns.is_empty() || c.columns.len() > MAX_COLUMNS_PER_TABLE {
        return Err(SqlError::InvalidTableDefinition(format!(
            "a table needs 1 to {MAX_COLUMNS_PER_TABLE} columns"
        )));
    }
    let mut columns: Vec<Column> = Vec::with_capacity(c.columns.len());
    let mut primary_key = Vec::new();
    for def in &c.columns {
        let col_name = ident(&def.name);
        check_identifier(&col_name)?;
        if columns.iter().any(|x| x.name == col_name) {
            return Err(SqlError::DuplicateColumn(col_name));
        }
        let mut col = Column {
            name: col_name,
            ty: map_type(&def.data_type)?,
            not_null: false,
            default: None,
        };
        for opt in &def.options {
            match &opt.option {
                ast::ColumnOption::Null => {}
                ast::ColumnOption::NotNull => col.not_null = true,
                ast::ColumnOption::Default(e) => {
                    col.default = Some(check_default(e, col.ty, &col.name)?)
                }
                ast::ColumnOption::PrimaryKey(_) => {
                    if !primary_key.is_empty() {
                        return Err(multiple_pk(&name));
                    }
                    primary_key.push(columns.len());
                }
                other => return unsupported(format!("column constraint {other}")),
            }
        }
        columns.push(col);
    }
    table_constraints(c, &name, &columns, &mut primary_key)?;
    for &i in &primary_key {
        columns[i].not_null = true;
    }
    let hidden_row_id = primary_key.is_empty();
    let table = TableDef {
        id: 0,
        name,
        columns,
        primary_key,
        hidden_row_id,
    };
    Ok(Plan::CreateTable {
        table,
        if_not_exists: c.if_not_exists,
    })
}

/// Table constraints of CREATE TABLE: a PRIMARY KEY (columns) clause.
fn table_constraints(
    c: &ast::CreateTable,
    name: &str,
    columns: &[Column],
    primary_key: &mut Vec<usize>,
) -> SqlResult<()> {
    for con in &c.constraints {
        match con {
            ast::TableConstraint::PrimaryKey(pk) => {
                if !primary_key.is_empty() {
                    return Err(multiple_pk(name));
                }
                for ic in &pk.columns {
                    let ast::Expr::Identifier(i) = &ic.column.expr else {
                        return unsupported("expressions in a primary key");
                    };
                    let n = ident(i);
                    let pos = columns.iter().position(|x| x.name == n).ok_or_else(|| {
                        SqlError::UndefinedColumnText(format!(
                            "column \"{n}\" named in key does not exist"
                        ))
                    })?;
                    primary_key.push(pos);
                }
            }
            other => return unsupported(format!("table constraint {other}")),
        }
    }
    Ok(())
}

fn multiple_pk(table: &str) -> SqlError {
    SqlError::InvalidTableDefinition(format!(
        "multiple primary keys for table \"{table}\" are not allowed"
    ))
}

fn check_identifier(name: &str) -> SqlResult<()> {
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(SqlError::ProgramLimitExceeded(format!(
            "identifier \"{name}\" is longer than {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks a DEFAULT expression (it may read no column) and answers its SQL text, which
/// the catalog stores and binds again on use.
fn check_default(e: &ast::Expr, ty: DataType, column: &str) -> SqlResult<String> {
    let mut b = Binder::new(None, &[]);
    let x = b.bind(e).map_err(|err| match err {
        SqlError::UndefinedColumn(_) => SqlError::FeatureNotSupported(
            "cannot use column reference in DEFAULT expression".into(),
        ),
        other => other,
    })?;
    if !b.params.is_empty() {
        return Err(SqlError::Syntax(
            "there is no parameter in a DEFAULT expression".into(),
        ));
    }
    crate::types::assign(crate::types::Value::Null, x.ty, ty, column)?;
    Ok(e.to_string())
}

/// The number of rows an INSERT ... VALUES may carry.
pub fn check_insert_rows(n: usize) -> SqlResult<()> {
    if n > MAX_INSERT_ROWS {
        return Err(SqlError::ProgramLimitExceeded(format!(
            "an INSERT may carry at most {MAX_INSERT_ROWS} rows"
        )));
    }
    Ok(())
}
