//! Bound expressions (names resolved to column positions, every node typed) and
//! their evaluation with SQL's three-valued logic.

use crate::error::{SqlError, SqlResult};
use crate::types::{self, DataType, Value, check_float, check_int, compare};
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    Lower,
    Upper,
    Length,
    Coalesce,
    NullIf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Const(Value),
    /// A column of the input row, by position.
    Column(usize),
    /// A statement parameter ($1 is 0).
    Param(usize),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    /// `x IS [NOT] TRUE/FALSE`: (operand, the value tested, negated).
    IsBool(Box<Expr>, bool, bool),
    /// `x IS [NOT] DISTINCT FROM y`: negated when NOT.
    IsDistinct(Box<Expr>, Box<Expr>, bool),
    Cast(Box<Expr>),
    Case {
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// `x [NOT] IN (list)`.
    InList(Box<Expr>, Vec<Expr>, bool),
    /// `x [NOT] LIKE/ILIKE pattern`: (negated, case-insensitive).
    Like(Box<Expr>, Box<Expr>, bool, bool),
    Func(Func, Vec<Expr>),
    /// The value of the statement's aggregate number n for the current group.
    Agg(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: Kind,
    pub ty: DataType,
}

/// What an expression reads: the input row, the statement's parameters, and (in a
/// grouped query) the aggregates of the current group.
pub struct Env<'a> {
    pub row: &'a [Value],
    pub params: &'a [Value],
    pub aggs: &'a [Value],
}

impl Expr {
    pub fn new(kind: Kind, ty: DataType) -> Expr {
        Expr { kind, ty }
    }

    pub fn constant(v: Value, ty: DataType) -> Expr {
        Expr::new(Kind::Const(v), ty)
    }

    /// Whether the expression reads no column and no aggregate.
    pub fn is_row_independent(&self) -> bool {
        let mut independent = true;
        self.walk(&mut |e| {
            if matches!(e.kind, Kind::Column(_) | Kind::Agg(_)) {
                independent = false;
            }
        });
        independent
    }

    /// Visits every node, this one first.
    pub fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match &self.kind {
            Kind::Const(_) | Kind::Column(_) | Kind::Param(_) | Kind::Agg(_) => {}
            Kind::Neg(e)
            | Kind::Not(e)
            | Kind::IsNull(e, _)
            | Kind::IsBool(e, _, _)
            | Kind::Cast(e) => e.walk(f),
            Kind::Binary(_, a, b) | Kind::IsDistinct(a, b, _) | Kind::Like(a, b, _, _) => {
                a.walk(f);
                b.walk(f);
            }
            Kind::Case { whens, otherwise } => {
                for (w, t) in whens {
                    w.walk(f);
                    t.walk(f);
                }
                if let Some(o) = otherwise {
                    o.walk(f);
                }
            }
            Kind::InList(e, list, _) => {
                e.walk(f);
                list.iter().for_each(|x| x.walk(f));
            }
            Kind::Func(_, args) => args.iter().for_each(|x| x.walk(f)),
        }
    }

    pub fn eval(&self, env: &Env) -> SqlResult<Value> {
        match &self.kind {
            Kind::Const(v) => Ok(v.clone()),
            Kind::Column(i) => Ok(env.row.get(*i).cloned().unwrap_or(Value::Null)),
            Kind::Param(i) => Ok(env.params.get(*i).cloned().unwrap_or(Value::Null)),
            Kind::Agg(i) => Ok(env.aggs.get(*i).cloned().unwrap_or(Value::Null)),
            Kind::Neg(e) => negate(e.eval(env)?, self.ty),
            Kind::Not(e) => Ok(match e.eval(env)? {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Null,
            }),
            Kind::Binary(op, a, b) => self.eval_binary(*op, a, b, env),
            Kind::IsNull(e, negated) => Ok(Value::Bool((e.eval(env)? == Value::Null) != *negated)),
            Kind::IsBool(e, want, negated) => {
                let is = e.eval(env)? == Value::Bool(*want);
                Ok(Value::Bool(is != *negated))
            }
            Kind::IsDistinct(a, b, negated) => {
                let distinct = !types::same(&a.eval(env)?, &b.eval(env)?);
                Ok(Value::Bool(distinct != *negated))
            }
            Kind::Cast(e) => types::cast(e.eval(env)?, e.ty, self.ty),
            Kind::Case { whens, otherwise } => {
                for (cond, then) in whens {
                    if cond.eval(env)? == Value::Bool(true) {
                        return then.eval(env);
                    }
                }
                otherwise.as_ref().map_or(Ok(Value::Null), |o| o.eval(env))
            }
            Kind::InList(e, list, negated) => eval_in(e, list, *negated, env),
            Kind::Like(e, p, negated, ci) => eval_like(e.eval(env)?, p.eval(env)?, *negated, *ci),
            Kind::Func(f, args) => eval_func(*f, args, self.ty, env),
        }
    }

    fn eval_binary(&self, op: BinOp, a: &Expr, b: &Expr, env: &Env) -> SqlResult<Value> {
        match op {
            BinOp::And => {
                let x = a.eval(env)?;
                if x == Value::Bool(false) {
                    return Ok(x);
                }
                let y = b.eval(env)?;
                Ok(match (x, y) {
                    (_, Value::Bool(false)) => Value::Bool(false),
                    (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                    _ => Value::Null,
                })
            }
            BinOp::Or => {
                let x = a.eval(env)?;
                if x == Value::Bool(true) {
                    return Ok(x);
                }
                let y = b.eval(env)?;
                Ok(match (x, y) {
                    (_, Value::Bool(true)) => Value::Bool(true),
                    (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                    _ => Value::Null,
                })
            }
            _ => {
                let (x, y) = (a.eval(env)?, b.eval(env)?);
                if x == Value::Null || y == Value::Null {
                    return Ok(Value::Null);
                }
                binary_values(op, x, y, self.ty)
            }
        }
    }
}

fn negate(v: Value, ty: DataType) -> SqlResult<Value> {
    match v {
        Value::Int(i) => Ok(Value::Int(check_int(
            i.checked_neg().ok_or_else(|| types::int_out_of_range(ty))?,
            ty,
        )?)),
        Value::Float(f) => Ok(Value::Float(-f)),
        other => Ok(other),
    }
}

/// A binary operation on two non-NULL values; `ty` is the result's type.
pub fn binary_values(op: BinOp, x: Value, y: Value, ty: DataType) -> SqlResult<Value> {
    use BinOp::*;
    match op {
        Eq | NotEq | Lt | LtEq | Gt | GtEq => {
            let o = compare(&x, &y);
            Ok(Value::Bool(match op {
                Eq => o == Ordering::Equal,
                NotEq => o != Ordering::Equal,
                Lt => o == Ordering::Less,
                LtEq => o != Ordering::Greater,
                Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }))
        }
        Concat => {
            let text = |v: Value| match v {
                Value::Text(s) => s,
                other => types::format_text(&other, DataType::Float8).unwrap_or_default(),
            };
            Ok(Value::Text(text(x) + &text(y)))
        }
        _ => arithmetic(op, x, y, ty),
    }
}

fn arithmetic(op: BinOp, x: Value, y: Value, ty: DataType) -> SqlResult<Value> {
    if let (Value::Int(a), Value::Int(b)) = (&x, &y) {
        let (a, b) = (*a, *b);
        let r = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div | BinOp::Mod if b == 0 => return Err(SqlError::DivisionByZero),
            BinOp::Div => a.checked_div(b),
            // i64::MIN % -1 overflows in Rust; the answer is 0.
            BinOp::Mod => Some(a.checked_rem(b).unwrap_or(0)),
            _ => None,
        };
        let r = r.ok_or_else(|| types::int_out_of_range(ty))?;
        return Ok(Value::Int(check_int(r, ty)?));
    }
    let as_f = |v: &Value| match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    };
    let (a, b) = (as_f(&x), as_f(&y));
    let r = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div | BinOp::Mod if b == 0.0 => return Err(SqlError::DivisionByZero),
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        _ => f64::NAN,
    };
    Ok(Value::Float(check_float(
        r,
        ty,
        a.is_finite() && b.is_finite(),
    )?))
}

fn eval_in(e: &Expr, list: &[Expr], negated: bool, env: &Env) -> SqlResult<Value> {
    let x = e.eval(env)?;
    if x == Value::Null {
        return Ok(Value::Null);
    }
    let mut saw_null = false;
    for item in list {
        let y = item.eval(env)?;
        if y == Value::Null {
            saw_null = true;
        } else if compare(&x, &y) == Ordering::Equal {
            return Ok(Value::Bool(!negated));
        }
    }
    Ok(if saw_null {
        Value::Null
    } else {
        Value::Bool(negated)
    })
}

fn eval_like(x: Value, p: Value, negated: bool, ci: bool) -> SqlResult<Value> {
    let (Value::Text(s), Value::Text(p)) = (x, p) else {
        return Ok(Value::Null);
    };
    let (s, p) = if ci {
        (s.to_lowercase(), p.to_lowercase())
    } else {
        (s, p)
    };
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    Ok(Value::Bool(like_match(&s, &p)? != negated))
}

/// LIKE with `%`, `_` and the default escape `\`, by dynamic programming over
/// (pattern position, text position): linear memory, no backtracking blow-up.
fn like_match(s: &[char], p: &[char]) -> SqlResult<bool> {
    // reach[j]: the first j characters of s can be matched so far.
    let mut reach = vec![false; s.len() + 1];
    reach[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; s.len() + 1];
        match p[i] {
            '%' => {
                let mut any = false;
                for j in 0..=s.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            c => {
                let literal = if c == '\\' {
                    i += 1;
                    Some(*p.get(i).ok_or_else(|| {
                        SqlError::InvalidParameter(
                            "LIKE pattern must not end with escape character".into(),
                        )
                    })?)
                } else if c == '_' {
                    None
                } else {
                    Some(c)
                };
                for j in 0..s.len() {
                    next[j + 1] = reach[j] && literal.is_none_or(|l| l == s[j]);
                }
            }
        }
        reach = next;
        i += 1;
    }
    Ok(reach[s.len()])
}

fn eval_func(f: Func, args: &[Expr], ty: DataType, env: &Env) -> SqlResult<Value> {
    if f == Func::Coalesce {
        for a in args {
            let v = a.eval(env)?;
            if v != Value::Null {
                return Ok(v);
            }
        }
        return Ok(Value::Null);
    }
    let vals: Vec<Value> = args.iter().map(|a| a.eval(env)).collect::<SqlResult<_>>()?;
    if f == Func::NullIf {
        let (a, b) = (&vals[0], &vals[1]);
        let equal = *a != Value::Null && *b != Value::Null && compare(a, b) == Ordering::Equal;
        return Ok(if equal { Value::Null } else { a.clone() });
    }
    Ok(match (f, &vals[0]) {
        (_, Value::Null) => Value::Null,
        (Func::Abs, Value::Int(i)) => Value::Int(check_int(
            i.checked_abs().ok_or_else(|| types::int_out_of_range(ty))?,
            ty,
        )?),
        (Func::Abs, Value::Float(x)) => Value::Float(x.abs()),
        (Func::Lower, Value::Text(s)) => Value::Text(s.to_lowercase()),
        (Func::Upper, Value::Text(s)) => Value::Text(s.to_uppercase()),
        (Func::Length, Value::Text(s)) => Value::Int(s.chars().count() as i64),
        _ => Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(s: &str, p: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        let p: Vec<char> = p.chars().collect();
        like_match(&s, &p).unwrap()
    }

    #[test]
    fn like_matches_as_postgresql_does() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "_ello"));
        assert!(!like("hello", "_llo"));
        assert!(like("50%", "50\\%"));
        assert!(!like("500", "50\\%"));
        assert!(like("", "%"));
        assert!(!like("a", ""));
        assert!(like(&"a".repeat(200), &"%a".repeat(50)));
    }
}
