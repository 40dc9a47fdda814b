//! SQL types and values: PostgreSQL's text forms, casts, range checks and ordering.
//!
//! A [`Value`] does not carry its SQL type: every bound expression has a
//! [`DataType`], and integers of all widths are held as `i64` (range-checked for
//! their type whenever one is produced), floats as `f64` (rounded to `f32` for
//! `real`).

use crate::config::MAX_CHAR_LENGTH;
use crate::error::{SqlError, SqlResult};
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    /// varchar(n); None: no limit.
    Varchar(Option<u32>),
    /// char(n), blank-padded.
    Bpchar(u32),
    /// A string literal or NULL whose type the context decides (PostgreSQL's
    /// `unknown`); shown as text when nothing does.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl DataType {
    /// The type's OID in PostgreSQL's `pg_type`, as clients see it.
    pub fn oid(self) -> u32 {
        match self {
            DataType::Bool => 16,
            DataType::Int2 => 21,
            DataType::Int4 => 23,
            DataType::Int8 => 20,
            DataType::Float4 => 700,
            DataType::Float8 => 701,
            DataType::Text | DataType::Unknown => 25,
            DataType::Varchar(_) => 1043,
            DataType::Bpchar(_) => 1042,
        }
    }

    /// The type an OID names in a Parse message (0: let the context decide).
    pub fn from_oid(oid: u32) -> Option<DataType> {
        Some(match oid {
            0 | 705 => DataType::Unknown,
            16 => DataType::Bool,
            21 => DataType::Int2,
            23 => DataType::Int4,
            20 => DataType::Int8,
            700 => DataType::Float4,
            701 => DataType::Float8,
            25 => DataType::Text,
            1043 => DataType::Varchar(None),
            1042 => DataType::Bpchar(1),
            _ => return None,
        })
    }

    /// Bytes of the type's fixed-size binary form (-1: variable), for RowDescription.
    pub fn wire_size(self) -> i16 {
        match self {
            DataType::Bool => 1,
            DataType::Int2 => 2,
            DataType::Int4 | DataType::Float4 => 4,
            DataType::Int8 | DataType::Float8 => 8,
            _ => -1,
        }
    }

    /// The atttypmod clients see (-1: none); PostgreSQL adds 4 to a char length.
    pub fn type_modifier(self) -> i32 {
        match self {
            DataType::Varchar(Some(n)) | DataType::Bpchar(n) => n as i32 + 4,
            _ => -1,
        }
    }

    /// PostgreSQL's name of the type, as in error messages.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "boolean",
            DataType::Int2 => "smallint",
            DataType::Int4 => "integer",
            DataType::Int8 => "bigint",
            DataType::Float4 => "real",
            DataType::Float8 => "double precision",
            DataType::Text => "text",
            DataType::Varchar(_) => "character varying",
            DataType::Bpchar(_) => "character",
            DataType::Unknown => "unknown",
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self, DataType::Int2 | DataType::Int4 | DataType::Int8)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::Float4 | DataType::Float8)
    }

    pub fn is_numeric(self) -> bool {
        self.is_int() || self.is_float()
    }

    pub fn is_string(self) -> bool {
        matches!(
            self,
            DataType::Text | DataType::Varchar(_) | DataType::Bpchar(_) | DataType::Unknown
        )
    }

    /// The inclusive range of an integer type.
    pub fn int_range(self) -> (i64, i64) {
        match self {
            DataType::Int2 => (i16::MIN as i64, i16::MAX as i64),
            DataType::Int4 => (i32::MIN as i64, i32::MAX as i64),
            _ => (i64::MIN, i64::MAX),
        }
    }
}

/// The error PostgreSQL gives when an integer result leaves its type's range.
pub fn int_out_of_range(ty: DataType) -> SqlError {
    SqlError::NumericOutOfRange(format!("{} out of range", ty.name()))
}

/// Checks that `v` fits the integer type `ty`.
pub fn check_int(v: i64, ty: DataType) -> SqlResult<i64> {
    let (lo, hi) = ty.int_range();
    if v < lo || v > hi {
        return Err(int_out_of_range(ty));
    }
    Ok(v)
}

/// Checks a float result: an infinite result of finite inputs overflowed.
pub fn check_float(v: f64, ty: DataType, inputs_finite: bool) -> SqlResult<f64> {
    let v = if ty == DataType::Float4 {
        v as f32 as f64
    } else {
        v
    };
    if v.is_infinite() && inputs_finite {
        return Err(SqlError::NumericOutOfRange(
            "value out of range: overflow".into(),
        ));
    }
    Ok(v)
}

/// Parses the text form of `ty` (a cast from text, a text parameter, a literal).
pub fn parse_text(s: &str, ty: DataType) -> SqlResult<Value> {
    let bad = || {
        SqlError::InvalidTextRepresentation(format!(
            "invalid input syntax for type {}: \"{s}\"",
            ty.name()
        ))
    };
    let t = s.trim();
    Ok(match ty {
        DataType::Bool => Value::Bool(parse_bool(t).ok_or_else(bad)?),
        DataType::Int2 | DataType::Int4 | DataType::Int8 => Value::Int(parse_int(t, s, ty)?),
        DataType::Float4 | DataType::Float8 => Value::Float(parse_float(t, s, ty)?),
        DataType::Text | DataType::Unknown | DataType::Varchar(_) | DataType::Bpchar(_) => {
            Value::Text(s.to_string())
        }
    })
}

fn parse_bool(t: &str) -> Option<bool> {
    let l = t.to_ascii_lowercase();
    let is_prefix = |word: &str| !l.is_empty() && word.starts_with(&l);
    match l.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        // "o" alone is ambiguous (on/off), as in PostgreSQL.
        "o" => None,
        _ if is_prefix("true") || is_prefix("yes") || is_prefix("on") => Some(true),
        _ if is_prefix("false") || is_prefix("no") || is_prefix("off") => Some(false),
        _ => None,
    }
}

fn parse_int(t: &str, original: &str, ty: DataType) -> SqlResult<i64> {
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SqlError::InvalidTextRepresentation(format!(
            "invalid input syntax for type {}: \"{original}\"",
            ty.name()
        )));
    }
    let out_of_range = || {
        SqlError::NumericOutOfRange(format!(
            "value \"{original}\" is out of range for type {}",
            ty.name()
        ))
    };
    let v: i64 = t.parse().map_err(|_| out_of_range())?;
    let (lo, hi) = ty.int_range();
    if v < lo || v > hi {
        return Err(out_of_range());
    }
    Ok(v)
}

fn parse_float(t: &str, original: &str, ty: DataType) -> SqlResult<f64> {
    let bad = || {
        SqlError::InvalidTextRepresentation(format!(
            "invalid input syntax for type {}: \"{original}\"",
            ty.name()
        ))
    };
    // Rust also accepts "inf"/"infinity"/"nan" in any case, as PostgreSQL does.
    let v: f64 = t.parse().map_err(|_| bad())?;
    let named_infinity = t.to_ascii_lowercase().contains("inf");
    let v = if ty == DataType::Float4 {
        v as f32 as f64
    } else {
        v
    };
    if v.is_infinite() && !named_infinity {
        return Err(SqlError::NumericOutOfRange(format!(
            "\"{original}\" is out of range for type {}",
            ty.name()
        )));
    }
    Ok(v)
}

/// The text form PostgreSQL sends for a value of `ty` (None: SQL NULL).
pub fn format_text(v: &Value, ty: DataType) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(*f, ty == DataType::Float4),
        Value::Text(s) => s.clone(),
    })
}

/// PostgreSQL's shortest exact float output (extra_float_digits > 0, the default
/// since PostgreSQL 12): fixed notation for decimal exponents in [-4, 15) (float8)
/// or [-4, 6) (float4), else `d.ddde+XX` with at least two exponent digits.
pub fn format_float(f: f64, single: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // `{:e}` gives the shortest digits that read back to the same value.
    let sci = if single {
        format!("{:e}", f as f32)
    } else {
        format!("{f:e}")
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let limit = if single { 6 } else { 15 };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exp < -4 || exp >= limit {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// An explicit cast (`CAST(x AS t)`, `x::t`): PostgreSQL's conversions between these
/// types, with its range and syntax errors.
pub fn cast(v: Value, from: DataType, to: DataType) -> SqlResult<Value> {
    if let Value::Null = v {
        return Ok(Value::Null);
    }
    Ok(match (v, to) {
        (Value::Text(s), to) if !to.is_string() => parse_text(&s, to)?,
        (v, DataType::Text | DataType::Unknown) => Value::Text(text_of(&v, from)),
        (v, DataType::Varchar(n)) => Value::Text(truncate_chars(&text_of(&v, from), n)),
        (v, DataType::Bpchar(n)) => {
            Value::Text(pad_chars(&truncate_chars(&text_of(&v, from), Some(n)), n))
        }
        (Value::Int(i), t) if t.is_int() => Value::Int(check_int(i, t)?),
        (Value::Int(i), t) if t.is_float() => Value::Float(check_float(i as f64, t, true)?),
        (Value::Float(f), t) if t.is_int() => Value::Int(float_to_int(f, t)?),
        (Value::Float(f), t) if t.is_float() => Value::Float(check_float(f, t, f.is_finite())?),
        (Value::Int(i), DataType::Bool) if from == DataType::Int4 => Value::Bool(i != 0),
        (Value::Bool(b), DataType::Int4) => Value::Int(b as i64),
        (Value::Bool(b), DataType::Bool) => Value::Bool(b),
        (_, to) => {
            return Err(SqlError::UndefinedFunction(format!(
                "cannot cast type {} to {}",
                from.name(),
                to.name()
            )));
        }
    })
}

/// The text of a value in a cast to a string type: as its output form, except that
/// booleans read `true`/`false` (PostgreSQL's bool-to-text cast), not `t`/`f`.
fn text_of(v: &Value, from: DataType) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        _ => format_text(v, from).unwrap_or_default(),
    }
}

/// Rounds half to even, as PostgreSQL's float-to-integer casts (rint) do.
fn float_to_int(f: f64, ty: DataType) -> SqlResult<i64> {
    let r = f.round_ties_even();
    let (lo, hi) = ty.int_range();
    if !r.is_finite() || r < lo as f64 || r >= -(lo as f64) || (r as i64) > hi {
        return Err(int_out_of_range(ty));
    }
    Ok(r as i64)
}

fn truncate_chars(s: &str, n: Option<u32>) -> String {
    match n {
        Some(n) => s.chars().take(n as usize).collect(),
        None => s.to_string(),
    }
}

fn pad_chars(s: &str, n: u32) -> String {
    let len = s.chars().count();
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', (n as usize).saturating_sub(len)));
    out
}

/// A value stored into a column of type `to` (INSERT, UPDATE): PostgreSQL's
/// assignment casts. Strings too long for varchar(n)/char(n) fail unless the excess
/// is blanks; a typed value of an unrelated type fails with 42804.
pub fn assign(v: Value, from: DataType, to: DataType, column: &str) -> SqlResult<Value> {
    let mismatch = || {
        SqlError::DatatypeMismatch(format!(
            "column \"{column}\" is of type {} but expression is of type {}",
            to.name(),
            from.name()
        ))
    };
    let compatible = from == DataType::Unknown
        || (from.is_numeric() && to.is_numeric())
        || (from.is_string() && to.is_string())
        || from == to;
    if !compatible {
        return Err(mismatch());
    }
    match (v, to) {
        (Value::Text(s), DataType::Varchar(Some(n)) | DataType::Bpchar(n)) => {
            let kept = fit_length(&s, n, to)?;
            Ok(Value::Text(match to {
                DataType::Bpchar(n) => pad_chars(&kept, n),
                _ => kept,
            }))
        }
        (v, to) => cast(v, from, to),
    }
}

fn fit_length(s: &str, n: u32, to: DataType) -> SqlResult<String> {
    let len = s.chars().count();
    if len <= n as usize {
        return Ok(s.to_string());
    }
    let (kept, rest): (String, String) = (
        s.chars().take(n as usize).collect(),
        s.chars().skip(n as usize).collect(),
    );
    if rest.chars().all(|c| c == ' ') {
        return Ok(kept);
    }
    let name = match to {
        DataType::Bpchar(n) => format!("character({n})"),
        _ => format!("character varying({n})"),
    };
    Err(SqlError::StringTooLong(name))
}

/// Checks a declared length (`varchar(0)` and absurd lengths are refused).
pub fn check_char_length(n: u64) -> SqlResult<u32> {
    if n == 0 || n > MAX_CHAR_LENGTH {
        return Err(SqlError::InvalidParameter(format!(
            "length for type varchar must be between 1 and {MAX_CHAR_LENGTH}"
        )));
    }
    Ok(n as u32)
}

/// SQL comparison of two non-null values of comparable types. Text compares by
/// bytes (the C collation); char(n) ignores trailing blanks, as PostgreSQL's does.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Int(x), Value::Float(y)) => cmp_float(*x as f64, *y),
        (Value::Float(x), Value::Int(y)) => cmp_float(*x, *y as f64),
        (Value::Float(x), Value::Float(y)) => cmp_float(*x, *y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Null, Value::Null) => Ordering::Equal,
        // NULL sorts after every value (PostgreSQL's default for ascending order).
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        _ => Ordering::Equal,
    }
}

/// PostgreSQL orders NaN above every other float and equal to itself.
fn cmp_float(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Two values are the same for DISTINCT and GROUP BY (NULLs group together).
pub fn same(a: &Value, b: &Value) -> bool {
    compare(a, b) == Ordering::Equal && matches!(a, Value::Null) == matches!(b, Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_postgresql_prints_them() {
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (1e20, "1e+20"),
            (123456789012345.0, "123456789012345"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (-2.5, "-2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e100, "1e+100"),
        ];
        for (f, s) in cases {
            assert_eq!(format_float(f, false), s, "{f}");
        }
        assert_eq!(format_float(1234567.0, true), "1.234567e+06");
        assert_eq!(format_float(123456.0, true), "123456");
        assert_eq!(format_float(f64::INFINITY, false), "Infinity");
    }

    #[test]
    fn text_input_follows_postgresql() {
        assert_eq!(parse_text(" 42 ", DataType::Int4), Ok(Value::Int(42)));
        let e = parse_text("4x", DataType::Int4).unwrap_err();
        assert_eq!(
            (e.sqlstate(), e.to_string().as_str()),
            ("22P02", "invalid input syntax for type integer: \"4x\"")
        );
        let e = parse_text("40000", DataType::Int2).unwrap_err();
        assert_eq!(e.sqlstate(), "22003");
        assert_eq!(parse_text("yes", DataType::Bool), Ok(Value::Bool(true)));
        assert_eq!(parse_text("of", DataType::Bool), Ok(Value::Bool(false)));
        assert!(parse_text("o", DataType::Bool).is_err());
        assert_eq!(
            parse_text("1e400", DataType::Float8)
                .unwrap_err()
                .sqlstate(),
            "22003"
        );
        assert_eq!(
            parse_text("-Infinity", DataType::Float8),
            Ok(Value::Float(f64::NEG_INFINITY))
        );
    }

    #[test]
    fn casts_round_and_check_ranges() {
        assert_eq!(
            cast(Value::Float(2.5), DataType::Float8, DataType::Int4),
            Ok(Value::Int(2))
        );
        assert_eq!(
            cast(Value::Float(3.5), DataType::Float8, DataType::Int4),
            Ok(Value::Int(4))
        );
        let e = cast(Value::Int(70000), DataType::Int4, DataType::Int2).unwrap_err();
        assert_eq!(
            (e.sqlstate(), e.to_string().as_str()),
            ("22003", "smallint out of range")
        );
        assert_eq!(
            cast(
                Value::Text("abcd".into()),
                DataType::Text,
                DataType::Varchar(Some(2))
            ),
            Ok(Value::Text("ab".into()))
        );
        let e = assign(
            Value::Text("abcd".into()),
            DataType::Unknown,
            DataType::Varchar(Some(2)),
            "c",
        )
        .unwrap_err();
        assert_eq!(e.sqlstate(), "22001");
        assert_eq!(
            assign(
                Value::Text("ab  ".into()),
                DataType::Unknown,
                DataType::Bpchar(3),
                "c"
            ),
            Ok(Value::Text("ab ".into()))
        );
        let e = assign(Value::Text("x".into()), DataType::Text, DataType::Int4, "c").unwrap_err();
        assert_eq!(e.sqlstate(), "42804");
    }
}
