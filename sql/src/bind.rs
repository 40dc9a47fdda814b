//! The binder: sqlparser's expressions to typed [`Expr`]s over one table's columns,
//! with PostgreSQL's resolution of `unknown` literals and parameters, its implicit
//! numeric promotions, and aggregates collected for the grouped executor.

use crate::catalog::TableDef;
use crate::config::MAX_EXPR_DEPTH;
use crate::error::{SqlError, SqlResult, unsupported};
use crate::expr::{BinOp, Expr, Func, Kind};
use crate::types::{self, DataType, Value};
use sqlparser::ast;
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// One aggregate call of a statement (`count(*)` has no argument).
#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub func: AggFunc,
    pub arg: Option<Expr>,
    pub distinct: bool,
    pub ty: DataType,
}

pub struct Binder {
    pub table: Option<Rc<TableDef>>,
    /// The name columns may be qualified with (the table's name or alias).
    pub qualifier: Option<String>,
    /// Parameter types: declared by Parse, or inferred here (Unknown until then).
    pub params: Vec<DataType>,
    pub aggs: Vec<AggCall>,
    /// Why aggregates are refused here (None: allowed).
    pub aggs_refused: Option<&'static str>,
    in_agg: bool,
    depth: usize,
}

/// An identifier as PostgreSQL folds it: unquoted names are lower-cased.
pub fn ident(i: &ast::Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The last part of an object name (schemas are not supported yet: `public.t` is t).
pub fn object_name(n: &ast::ObjectName) -> SqlResult<String> {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => Ok(ident(i)),
                other => unsupported(format!("object name {other}")),
            })
            .collect::<SqlResult<_>>()?;
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        _ => unsupported(format!("schema-qualified name {n}")),
    }
}

impl Binder {
    pub fn new(table: Option<Rc<TableDef>>, params: &[DataType]) -> Binder {
        let qualifier = table.as_ref().map(|t| t.name.clone());
        Binder {
            table,
            qualifier,
            params: params.to_vec(),
            aggs: Vec::new(),
            aggs_refused: Some("here"),
            in_agg: false,
            depth: 0,
        }
    }

    /// Parameter types after binding: any still unknown is text, as in PostgreSQL.
    pub fn param_types(&self) -> Vec<DataType> {
        self.params
            .iter()
            .map(|&t| {
                if t == DataType::Unknown {
                    DataType::Text
                } else {
                    t
                }
            })
            .collect()
    }

    pub fn bind(&mut self, e: &ast::Expr) -> SqlResult<Expr> {
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            return Err(SqlError::ProgramLimitExceeded(format!(
                "expression nested deeper than {MAX_EXPR_DEPTH}"
            )));
        }
        let r = self.bind_inner(e);
        self.depth -= 1;
        r
    }

    fn bind_inner(&mut self, e: &ast::Expr) -> SqlResult<Expr> {
        use ast::Expr as E;
        match e {
            E::Identifier(i) => self.column(None, i),
            E::CompoundIdentifier(parts) => match parts.as_slice() {
                [t, c] => self.column(Some(t), c),
                _ => unsupported(format!("column reference {e}")),
            },
            E::Value(v) => self.literal(&v.value),
            E::Nested(inner) => self.bind(inner),
            E::UnaryOp { op, expr } => self.unary(*op, expr),
            E::BinaryOp { left, op, right } => self.binary(op, left, right),
            E::IsNull(_)
            | E::IsNotNull(_)
            | E::IsTrue(_)
            | E::IsNotTrue(_)
            | E::IsFalse(_)
            | E::IsNotFalse(_)
            | E::IsDistinctFrom(..)
            | E::IsNotDistinctFrom(..) => self.is_test(e),
            E::Cast {
                expr,
                data_type,
                format: None,
                ..
            } => {
                let to = map_type(data_type)?;
                let inner = self.bind(expr)?;
                self.cast(inner, to)
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref()),
            E::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => self.in_list(expr, list, *negated),
            E::Between {
                expr,
                negated,
                low,
                high,
            } => self.between(expr, low, high, *negated),
            E::Like {
                negated,
                expr,
                pattern,
                escape_char: None,
                any: false,
            } => self.like(expr, pattern, *negated, false),
            E::ILike {
                negated,
                expr,
                pattern,
                escape_char: None,
                any: false,
            } => self.like(expr, pattern, *negated, true),
            E::Function(f) => self.function(f),
            other => unsupported(format!("expression {other}")),
        }
    }

    /// `x [NOT] BETWEEN low AND high` as `x >= low AND x <= high`.
    fn between(
        &mut self,
        x: &ast::Expr,
        low: &ast::Expr,
        high: &ast::Expr,
        negated: bool,
    ) -> SqlResult<Expr> {
        let ge = self.binary(&ast::BinaryOperator::GtEq, x, low)?;
        let le = self.binary(&ast::BinaryOperator::LtEq, x, high)?;
        let both = Expr::new(
            Kind::Binary(BinOp::And, Box::new(ge), Box::new(le)),
            DataType::Bool,
        );
        Ok(if negated {
            Expr::new(Kind::Not(Box::new(both)), DataType::Bool)
        } else {
            both
        })
    }

    /// The `IS ...` family of predicates.
    fn is_test(&mut self, e: &ast::Expr) -> SqlResult<Expr> {
        use ast::Expr as E;
        match e {
            E::IsNull(x) => self.is_null(x, false),
            E::IsNotNull(x) => self.is_null(x, true),
            E::IsTrue(x) => self.is_bool(x, true, false),
            E::IsNotTrue(x) => self.is_bool(x, true, true),
            E::IsFalse(x) => self.is_bool(x, false, false),
            E::IsNotFalse(x) => self.is_bool(x, false, true),
            E::IsDistinctFrom(a, b) => self.is_distinct(a, b, false),
            E::IsNotDistinctFrom(a, b) => self.is_distinct(a, b, true),
            other => unsupported(format!("expression {other}")),
        }
    }

    fn column(&self, qualifier: Option<&ast::Ident>, name: &ast::Ident) -> SqlResult<Expr> {
        let col = ident(name);
        let full = match qualifier {
            Some(q) => format!("{}.{col}", ident(q)),
            None => col.clone(),
        };
        if let Some(q) = qualifier
            && self.qualifier.as_deref() != Some(ident(q).as_str())
        {
            return Err(SqlError::MissingFromEntry(ident(q)));
        }
        let t = self
            .table
            .as_ref()
            .ok_or_else(|| SqlError::UndefinedColumn(full.clone()))?;
        let i = t
            .column_index(&col)
            .ok_or(SqlError::UndefinedColumn(full))?;
        Ok(Expr::new(Kind::Column(i), t.columns[i].ty))
    }

    fn literal(&mut self, v: &ast::Value) -> SqlResult<Expr> {
        use ast::Value as V;
        Ok(match v {
            V::Number(s, _) => number(s)?,
            V::SingleQuotedString(s)
            | V::EscapedStringLiteral(s)
            | V::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
                Expr::constant(Value::Text(s.clone()), DataType::Unknown)
            }
            V::Boolean(b) => Expr::constant(Value::Bool(*b), DataType::Bool),
            V::Null => Expr::constant(Value::Null, DataType::Unknown),
            V::Placeholder(p) => self.param(p)?,
            other => return unsupported(format!("literal {other}")),
        })
    }

    fn param(&mut self, p: &str) -> SqlResult<Expr> {
        let n: usize = p
            .strip_prefix('$')
            .and_then(|d| d.parse().ok())
            .filter(|&n| n >= 1 && n <= u16::MAX as usize)
            .ok_or_else(|| SqlError::Syntax(format!("syntax error at or near \"{p}\"")))?;
        if self.params.len() < n {
            self.params.resize(n, DataType::Unknown);
        }
        Ok(Expr::new(Kind::Param(n - 1), self.params[n - 1]))
    }

    /// Gives an expression of unknown type (a string literal, NULL, a parameter) the
    /// type `to`, or adds PostgreSQL's implicit cast where one exists.
    pub fn coerce(&mut self, e: Expr, to: DataType) -> SqlResult<Expr> {
        if e.ty == to || to == DataType::Unknown {
            return Ok(e);
        }
        match (&e.kind, e.ty) {
            (Kind::Const(v), DataType::Unknown) => {
                let v = match v {
                    Value::Text(s) => types::parse_text(s, to)?,
                    other => other.clone(),
                };
                Ok(Expr::constant(v, to))
            }
            (Kind::Param(i), DataType::Unknown) => {
                self.params[*i] = to;
                Ok(Expr::new(Kind::Param(*i), to))
            }
            (_, from) if implicit_cast(from, to) => self.cast(e, to),
            (_, from) => Err(SqlError::DatatypeMismatch(format!(
                "argument of type {} cannot be used as type {}",
                from.name(),
                to.name()
            ))),
        }
    }

    /// An explicit cast; constants are cast now, so a bad literal fails at once.
    pub fn cast(&mut self, e: Expr, to: DataType) -> SqlResult<Expr> {
        if e.ty == DataType::Unknown
            && let Kind::Param(_) = e.kind
        {
            return self.coerce(e, to);
        }
        if let Kind::Const(v) = &e.kind {
            return Ok(Expr::constant(types::cast(v.clone(), e.ty, to)?, to));
        }
        if e.ty == to {
            return Ok(e);
        }
        Ok(Expr::new(Kind::Cast(Box::new(e)), to))
    }

    /// Coerces a condition (WHERE, HAVING, AND, CASE WHEN) to boolean.
    pub fn condition(&mut self, e: Expr, what: &str) -> SqlResult<Expr> {
        if e.ty == DataType::Bool {
            return Ok(e);
        }
        if e.ty == DataType::Unknown {
            return self.coerce(e, DataType::Bool);
        }
        Err(SqlError::DatatypeMismatch(format!(
            "argument of {what} must be type boolean, not type {}",
            e.ty.name()
        )))
    }

    fn unary(&mut self, op: ast::UnaryOperator, x: &ast::Expr) -> SqlResult<Expr> {
        let e = self.bind(x)?;
        match op {
            ast::UnaryOperator::Not => {
                let e = self.condition(e, "NOT")?;
                Ok(Expr::new(Kind::Not(Box::new(e)), DataType::Bool))
            }
            ast::UnaryOperator::Plus | ast::UnaryOperator::Minus => {
                let e = if e.ty == DataType::Unknown {
                    self.coerce(e, DataType::Float8)?
                } else {
                    e
                };
                if !e.ty.is_numeric() {
                    return Err(SqlError::UndefinedFunction(format!(
                        "operator does not exist: {op} {}",
                        e.ty.name()
                    )));
                }
                if op == ast::UnaryOperator::Plus {
                    return Ok(e);
                }
                let ty = e.ty;
                let neg = Expr::new(Kind::Neg(Box::new(e)), ty);
                fold(neg)
            }
            other => unsupported(format!("operator {other}")),
        }
    }

    fn binary(
        &mut self,
        op: &ast::BinaryOperator,
        l: &ast::Expr,
        r: &ast::Expr,
    ) -> SqlResult<Expr> {
        use ast::BinaryOperator as B;
        let bop = match op {
            B::Plus => BinOp::Add,
            B::Minus => BinOp::Sub,
            B::Multiply => BinOp::Mul,
            B::Divide => BinOp::Div,
            B::Modulo => BinOp::Mod,
            B::Eq => BinOp::Eq,
            B::NotEq => BinOp::NotEq,
            B::Lt => BinOp::Lt,
            B::LtEq => BinOp::LtEq,
            B::Gt => BinOp::Gt,
            B::GtEq => BinOp::GtEq,
            B::And => BinOp::And,
            B::Or => BinOp::Or,
            B::StringConcat => BinOp::Concat,
            other => return unsupported(format!("operator {other}")),
        };
        let (a, b) = (self.bind(l)?, self.bind(r)?);
        let (a, b, ty) = self.operands(bop, op, a, b)?;
        fold(Expr::new(Kind::Binary(bop, Box::new(a), Box::new(b)), ty))
    }

    /// Resolves an operator's operand types (PostgreSQL's rules for these types) and
    /// answers the operands, coerced, and the result type.
    fn operands(
        &mut self,
        bop: BinOp,
        op: &ast::BinaryOperator,
        a: Expr,
        b: Expr,
    ) -> SqlResult<(Expr, Expr, DataType)> {
        if matches!(bop, BinOp::And | BinOp::Or) {
            let what = if bop == BinOp::And { "AND" } else { "OR" };
            let (a, b) = (self.condition(a, what)?, self.condition(b, what)?);
            return Ok((a, b, DataType::Bool));
        }
        if bop == BinOp::Concat {
            let a = self.text_operand(a)?;
            let b = self.text_operand(b)?;
            return Ok((a, b, DataType::Text));
        }
        let (a, b) = self.unify_pair(a, b)?;
        let common = common_type(a.ty, b.ty).ok_or_else(|| {
            SqlError::UndefinedFunction(format!(
                "operator does not exist: {} {op} {}",
                a.ty.name(),
                b.ty.name()
            ))
        })?;
        let arithmetic = matches!(
            bop,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod
        );
        if arithmetic && !common.is_numeric() {
            return Err(SqlError::UndefinedFunction(format!(
                "operator does not exist: {} {op} {}",
                a.ty.name(),
                b.ty.name()
            )));
        }
        Ok((a, b, if arithmetic { common } else { DataType::Bool }))
    }

    fn text_operand(&mut self, e: Expr) -> SqlResult<Expr> {
        match e.ty {
            DataType::Unknown => self.coerce(e, DataType::Text),
            t if t.is_string() => Ok(e),
            _ => self.cast(e, DataType::Text),
        }
    }

    /// Gives unknown operands the other side's type (text when both are unknown).
    pub fn unify_pair(&mut self, a: Expr, b: Expr) -> SqlResult<(Expr, Expr)> {
        Ok(match (a.ty, b.ty) {
            (DataType::Unknown, DataType::Unknown) => (
                self.coerce(a, DataType::Text)?,
                self.coerce(b, DataType::Text)?,
            ),
            (DataType::Unknown, t) => (self.coerce(a, t)?, b),
            (t, DataType::Unknown) => {
                let b = self.coerce(b, t)?;
                (a, b)
            }
            _ => (a, b),
        })
    }

    fn is_null(&mut self, x: &ast::Expr, negated: bool) -> SqlResult<Expr> {
        let e = self.bind(x)?;
        Ok(Expr::new(
            Kind::IsNull(Box::new(e), negated),
            DataType::Bool,
        ))
    }

    fn is_bool(&mut self, x: &ast::Expr, want: bool, negated: bool) -> SqlResult<Expr> {
        let e = self.bind(x)?;
        let e = self.condition(e, "IS TRUE")?;
        Ok(Expr::new(
            Kind::IsBool(Box::new(e), want, negated),
            DataType::Bool,
        ))
    }

    fn is_distinct(&mut self, a: &ast::Expr, b: &ast::Expr, negated: bool) -> SqlResult<Expr> {
        let (a, b) = (self.bind(a)?, self.bind(b)?);
        let (a, b) = self.unify_pair(a, b)?;
        if common_type(a.ty, b.ty).is_none() {
            return Err(SqlError::UndefinedFunction(format!(
                "operator does not exist: {} = {}",
                a.ty.name(),
                b.ty.name()
            )));
        }
        Ok(Expr::new(
            Kind::IsDistinct(Box::new(a), Box::new(b), negated),
            DataType::Bool,
        ))
    }

    fn case(
        &mut self,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        otherwise: Option<&ast::Expr>,
    ) -> SqlResult<Expr> {
        let mut whens = Vec::with_capacity(conditions.len());
        for c in conditions {
            let cond = match operand {
                Some(op) => self.binary(&ast::BinaryOperator::Eq, op, &c.condition)?,
                None => {
                    let e = self.bind(&c.condition)?;
                    self.condition(e, "CASE/WHEN")?
                }
            };
            whens.push((cond, self.bind(&c.result)?));
        }
        let otherwise = otherwise.map(|e| self.bind(e)).transpose()?;
        let mut results: Vec<&Expr> = whens.iter().map(|(_, r)| r).collect();
        results.extend(otherwise.iter());
        let ty = self.result_type(&results, "CASE")?;
        let mut coerced = Vec::with_capacity(whens.len());
        for (c, r) in whens {
            coerced.push((c, self.coerce(r, ty)?));
        }
        let otherwise = otherwise
            .map(|o| self.coerce(o, ty).map(Box::new))
            .transpose()?;
        Ok(Expr::new(
            Kind::Case {
                whens: coerced,
                otherwise,
            },
            ty,
        ))
    }

    /// The common type of CASE branches or COALESCE arguments (text if all unknown).
    fn result_type(&self, exprs: &[&Expr], what: &str) -> SqlResult<DataType> {
        let mut ty = DataType::Unknown;
        for e in exprs {
            ty = match (ty, e.ty) {
                (DataType::Unknown, t) | (t, DataType::Unknown) => t,
                (a, b) => common_type(a, b).ok_or_else(|| {
                    SqlError::DatatypeMismatch(format!(
                        "{what} types {} and {} cannot be matched",
                        a.name(),
                        b.name()
                    ))
                })?,
            };
        }
        Ok(if ty == DataType::Unknown {
            DataType::Text
        } else {
            ty
        })
    }

    fn in_list(&mut self, x: &ast::Expr, list: &[ast::Expr], negated: bool) -> SqlResult<Expr> {
        let mut e = self.bind(x)?;
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            let b = self.bind(item)?;
            let (a2, b2) = self.unify_pair(e, b)?;
            if common_type(a2.ty, b2.ty).is_none() {
                return Err(SqlError::UndefinedFunction(format!(
                    "operator does not exist: {} = {}",
                    a2.ty.name(),
                    b2.ty.name()
                )));
            }
            e = a2;
            items.push(b2);
        }
        Ok(Expr::new(
            Kind::InList(Box::new(e), items, negated),
            DataType::Bool,
        ))
    }

    fn like(&mut self, x: &ast::Expr, p: &ast::Expr, negated: bool, ci: bool) -> SqlResult<Expr> {
        let (a, b) = (self.bind(x)?, self.bind(p)?);
        let (a, b) = self.unify_pair(a, b)?;
        if !a.ty.is_string() || !b.ty.is_string() {
            let op = if ci { "~~*" } else { "~~" };
            return Err(SqlError::UndefinedFunction(format!(
                "operator does not exist: {} {op} {}",
                a.ty.name(),
                b.ty.name()
            )));
        }
        Ok(Expr::new(
            Kind::Like(Box::new(a), Box::new(b), negated, ci),
            DataType::Bool,
        ))
    }

    fn function(&mut self, f: &ast::Function) -> SqlResult<Expr> {
        let name = object_name(&f.name)?;
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return unsupported(format!("function call {f}"));
        }
        let ast::FunctionArguments::List(list) = &f.args else {
            return match &f.args {
                ast::FunctionArguments::None => unsupported(format!("{name} without parentheses")),
                _ => unsupported(format!("function call {f}")),
            };
        };
        if !list.clauses.is_empty() {
            return unsupported(format!("function call {f}"));
        }
        let distinct = matches!(
            list.duplicate_treatment,
            Some(ast::DuplicateTreatment::Distinct)
        );
        let agg = match name.as_str() {
            "count" => Some(AggFunc::Count),
            "sum" => Some(AggFunc::Sum),
            "min" => Some(AggFunc::Min),
            "max" => Some(AggFunc::Max),
            "avg" => Some(AggFunc::Avg),
            _ => None,
        };
        match agg {
            Some(a) => self.aggregate(a, &list.args, distinct),
            None if distinct => unsupported(format!("DISTINCT in {name}()")),
            None => self.scalar_function(&name, &list.args),
        }
    }

    fn plain_args(&mut self, args: &[ast::FunctionArg]) -> SqlResult<Vec<Expr>> {
        args.iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => self.bind(e),
                other => unsupported(format!("function argument {other}")),
            })
            .collect()
    }

    fn aggregate(
        &mut self,
        func: AggFunc,
        args: &[ast::FunctionArg],
        distinct: bool,
    ) -> SqlResult<Expr> {
        if let Some(place) = self.aggs_refused {
            return Err(SqlError::Grouping(format!(
                "aggregate functions are not allowed {place}"
            )));
        }
        if self.in_agg {
            return Err(SqlError::Grouping(
                "aggregate function calls cannot be nested".into(),
            ));
        }
        let star = matches!(
            args,
            [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]
        );
        let arg = if star && func == AggFunc::Count && !distinct {
            None
        } else {
            self.in_agg = true;
            let bound = self.plain_args(args);
            self.in_agg = false;
            let mut bound = bound?;
            if bound.len() != 1 {
                return Err(SqlError::UndefinedFunction(format!(
                    "{}() with {} arguments",
                    agg_name(func),
                    bound.len()
                )));
            }
            let a = bound.remove(0);
            Some(if a.ty == DataType::Unknown {
                self.coerce(a, DataType::Text)?
            } else {
                a
            })
        };
        let arg_ty = arg.as_ref().map(|a| a.ty);
        let ty = match (func, arg_ty) {
            (AggFunc::Count, _) => DataType::Int8,
            (AggFunc::Sum, Some(t)) if t.is_int() => DataType::Int8,
            (AggFunc::Sum, Some(t)) if t.is_float() => t,
            (AggFunc::Avg, Some(t)) if t.is_numeric() => DataType::Float8,
            (AggFunc::Min | AggFunc::Max, Some(t)) if t != DataType::Bool => t,
            (f, t) => {
                return Err(SqlError::UndefinedFunction(format!(
                    "function {}({}) does not exist",
                    agg_name(f),
                    t.map_or("*", |t| t.name())
                )));
            }
        };
        self.aggs.push(AggCall {
            func,
            arg,
            distinct,
            ty,
        });
        Ok(Expr::new(Kind::Agg(self.aggs.len() - 1), ty))
    }

    fn scalar_function(&mut self, name: &str, args: &[ast::FunctionArg]) -> SqlResult<Expr> {
        let args = self.plain_args(args)?;
        let types: Vec<&str> = args.iter().map(|a| a.ty.name()).collect();
        let sig_text = format!("function {name}({}) does not exist", types.join(", "));
        let sig = || SqlError::UndefinedFunction(sig_text.clone());
        let (func, ty) = match (name, args.len()) {
            ("abs", 1) if args[0].ty.is_numeric() => (Func::Abs, args[0].ty),
            ("lower", 1) => (Func::Lower, DataType::Text),
            ("upper", 1) => (Func::Upper, DataType::Text),
            ("length" | "char_length" | "character_length", 1) => (Func::Length, DataType::Int4),
            ("coalesce", n) if n >= 1 => {
                let refs: Vec<&Expr> = args.iter().collect();
                (Func::Coalesce, self.result_type(&refs, "COALESCE")?)
            }
            ("nullif", 2) => (Func::NullIf, DataType::Unknown),
            _ => return Err(sig()),
        };
        let mut coerced = Vec::with_capacity(args.len());
        let mut ty = ty;
        match func {
            Func::Lower | Func::Upper | Func::Length => {
                for a in args {
                    if !a.ty.is_string() {
                        return Err(SqlError::UndefinedFunction(format!(
                            "function {name}({}) does not exist",
                            a.ty.name()
                        )));
                    }
                    coerced.push(self.coerce(a, DataType::Text)?);
                }
            }
            Func::NullIf => {
                let mut it = args.into_iter();
                let (a, b) = match (it.next(), it.next()) {
                    (Some(a), Some(b)) => self.unify_pair(a, b)?,
                    _ => return Err(sig()),
                };
                ty = a.ty;
                coerced.extend([a, b]);
            }
            _ => {
                for a in args {
                    coerced.push(self.coerce(a, ty)?);
                }
            }
        }
        Ok(Expr::new(Kind::Func(func, coerced), ty))
    }
}

fn agg_name(f: AggFunc) -> &'static str {
    match f {
        AggFunc::Count => "count",
        AggFunc::Sum => "sum",
        AggFunc::Min => "min",
        AggFunc::Max => "max",
        AggFunc::Avg => "avg",
    }
}

/// An integer literal is int4 if it fits, else int8; one with a point or an exponent
/// is double precision (PostgreSQL makes it numeric, which is not supported yet).
fn number(s: &str) -> SqlResult<Expr> {
    if let Ok(i) = s.parse::<i64>() {
        let ty = if i32::try_from(i).is_ok() {
            DataType::Int4
        } else {
            DataType::Int8
        };
        return Ok(Expr::constant(Value::Int(i), ty));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return unsupported(format!("numeric literal {s} (beyond bigint)"));
    }
    let f: f64 = s
        .parse()
        .map_err(|_| SqlError::Syntax(format!("syntax error at or near \"{s}\"")))?;
    Ok(Expr::constant(Value::Float(f), DataType::Float8))
}

/// Evaluates an expression over constants now (it reads no row, parameter or
/// aggregate), so its errors surface when the statement is bound, as PostgreSQL's do.
fn fold(e: Expr) -> SqlResult<Expr> {
    let mut constant = true;
    e.walk(&mut |n| constant &= !matches!(n.kind, Kind::Column(_) | Kind::Param(_) | Kind::Agg(_)));
    if !constant || matches!(e.kind, Kind::Const(_)) {
        return Ok(e);
    }
    let env = crate::expr::Env {
        row: &[],
        params: &[],
        aggs: &[],
    };
    Ok(Expr::constant(e.eval(&env)?, e.ty))
}

/// Whether PostgreSQL casts `from` to `to` implicitly (in an operator's operands,
/// a function's arguments, a CASE's branches).
fn implicit_cast(from: DataType, to: DataType) -> bool {
    let rank = |t: DataType| match t {
        DataType::Int2 => 1,
        DataType::Int4 => 2,
        DataType::Int8 => 3,
        DataType::Float4 => 4,
        DataType::Float8 => 5,
        _ => 0,
    };
    (from.is_numeric() && to.is_numeric() && rank(from) < rank(to))
        || (from.is_string() && to.is_string())
}

/// The type two operands are compared or combined in (None: no operator exists).
pub fn common_type(a: DataType, b: DataType) -> Option<DataType> {
    if a == b {
        return Some(a);
    }
    if a.is_numeric() && b.is_numeric() {
        return Some(match (a, b) {
            (DataType::Float4, DataType::Float4) => DataType::Float4,
            _ if a.is_float() || b.is_float() => DataType::Float8,
            _ if a == DataType::Int8 || b == DataType::Int8 => DataType::Int8,
            _ if a == DataType::Int4 || b == DataType::Int4 => DataType::Int4,
            _ => DataType::Int2,
        });
    }
    if a.is_string() && b.is_string() {
        return Some(DataType::Text);
    }
    None
}

/// A column type of CREATE TABLE or CAST.
pub fn map_type(t: &ast::DataType) -> SqlResult<DataType> {
    use ast::DataType as T;
    let len = |l: &Option<ast::CharacterLength>| -> SqlResult<Option<u32>> {
        match l {
            None => Ok(None),
            Some(ast::CharacterLength::IntegerLength { length, .. }) => {
                Ok(Some(types::check_char_length(*length)?))
            }
            Some(ast::CharacterLength::Max) => unsupported("length MAX"),
        }
    };
    Ok(match t {
        T::Bool | T::Boolean => DataType::Bool,
        T::SmallInt(None) | T::Int2(None) => DataType::Int2,
        T::Int(None) | T::Integer(None) | T::Int4(None) => DataType::Int4,
        T::BigInt(None) | T::Int8(None) => DataType::Int8,
        T::Real | T::Float4 => DataType::Float4,
        T::DoublePrecision | T::Float8 | T::Double(ast::ExactNumberInfo::None) => DataType::Float8,
        T::Float(ast::ExactNumberInfo::None) => DataType::Float8,
        T::Float(ast::ExactNumberInfo::Precision(p)) if (1..=24).contains(p) => DataType::Float4,
        T::Float(ast::ExactNumberInfo::Precision(p)) if (25..=53).contains(p) => DataType::Float8,
        T::Text | T::String(None) => DataType::Text,
        T::Varchar(l) | T::CharVarying(l) | T::CharacterVarying(l) => DataType::Varchar(len(l)?),
        T::Char(l) | T::Character(l) => DataType::Bpchar(len(l)?.unwrap_or(1)),
        other => return unsupported(format!("type {other}")),
    })
}
