//! Every byte the SQL layer stores, encoded and decoded here only (layout in
//! `docs/formats.md`, "SQL keys and rows"): the key ranges under the reserved SQL
//! prefix, the order-preserving key encoding of primary keys, the row value format
//! and the catalog's table records.

use crate::catalog::{Column, TableDef};
use crate::error::{SqlError, SqlResult};
use crate::types::{DataType, Value};

/// Every SQL key starts with these bytes; the rest of the node's key space is the
/// native protocol's.
pub const SQL_PREFIX: [u8; 2] = [0xFF, b'S'];
const META: u8 = 0x00;
const TABLE: u8 = 0x01;
const ROW_ID: u8 = 0x02;
const ROWS: u8 = 0x10;
/// Format version byte of row values and table records.
const ROW_FORMAT_V1: u8 = 1;
const TABLE_FORMAT_V1: u8 = 1;

fn key(kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + rest.len());
    k.extend_from_slice(&SQL_PREFIX);
    k.push(kind);
    k.extend_from_slice(rest);
    k
}

/// The catalog's version: an integer incremented by every DDL statement.
pub fn catalog_version_key() -> Vec<u8> {
    key(META, b"catalog_version")
}

/// The last table id handed out.
pub fn next_table_id_key() -> Vec<u8> {
    key(META, b"next_table_id")
}

/// The record of the table named `name`.
pub fn table_key(name: &str) -> Vec<u8> {
    key(TABLE, name.as_bytes())
}

/// `[start, end)` of every table record.
pub fn table_range() -> (Vec<u8>, Vec<u8>) {
    (key(TABLE, &[]), key(TABLE + 1, &[]))
}

/// The last hidden row id handed out in table `id` (tables without a primary key).
pub fn row_id_key(id: u32) -> Vec<u8> {
    key(ROW_ID, &id.to_be_bytes())
}

/// The key prefix of table `id`'s rows.
pub fn row_prefix(id: u32) -> Vec<u8> {
    key(ROWS, &id.to_be_bytes())
}

/// `[start, end)` of table `id`'s rows.
pub fn row_range(id: u32) -> (Vec<u8>, Vec<u8>) {
    let end = match id.checked_add(1) {
        Some(next) => row_prefix(next),
        None => key(ROWS + 1, &[]),
    };
    (row_prefix(id), end)
}

/// The key of a row: the table's prefix, then each primary-key value encoded so that
/// byte order is the values' SQL order.
pub fn row_key(table: &TableDef, row: &[Value]) -> SqlResult<Vec<u8>> {
    let mut k = row_prefix(table.id);
    for &i in &table.primary_key {
        let col = &table.columns[i];
        encode_key_value(&mut k, &row[i], col.ty)?;
    }
    Ok(k)
}

/// The key of a row of a table without a primary key.
pub fn hidden_row_key(table_id: u32, row_id: i64) -> Vec<u8> {
    let mut k = row_prefix(table_id);
    k.extend_from_slice(&(row_id as u64).to_be_bytes());
    k
}

fn encode_key_value(out: &mut Vec<u8>, v: &Value, ty: DataType) -> SqlResult<()> {
    match (v, ty) {
        (Value::Bool(b), _) => out.push(*b as u8),
        (Value::Int(i), DataType::Int2) => {
            out.extend_from_slice(&((*i as i16 as u16) ^ 0x8000).to_be_bytes())
        }
        (Value::Int(i), DataType::Int4) => {
            out.extend_from_slice(&((*i as i32 as u32) ^ 0x8000_0000).to_be_bytes())
        }
        (Value::Int(i), _) => out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes()),
        (Value::Float(f), DataType::Float4) => {
            out.extend_from_slice(&ordered_f32(*f as f32).to_be_bytes())
        }
        (Value::Float(f), _) => out.extend_from_slice(&ordered_f64(*f).to_be_bytes()),
        (Value::Text(s), _) => {
            for &b in s.as_bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0x00, 0x01]);
        }
        (Value::Null, _) => return Err(SqlError::Corrupt("NULL in a primary key".into())),
    }
    Ok(())
}

/// Float bits whose unsigned order is the float order (-0 = +0, NaN above +Inf).
fn ordered_f64(f: f64) -> u64 {
    let f = if f == 0.0 {
        0.0
    } else if f.is_nan() {
        f64::NAN
    } else {
        f
    };
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn ordered_f32(f: f32) -> u32 {
    let f = if f == 0.0 {
        0.0
    } else if f.is_nan() {
        f32::NAN
    } else {
        f
    };
    let bits = f.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | (1 << 31)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A reader over stored bytes that fails (never panics) on truncation.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, why: &str) -> SqlError {
        SqlError::Corrupt(format!("{}: {why}", self.what))
    }

    fn take(&mut self, n: usize) -> SqlResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> SqlResult<[u8; N]> {
        let b = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn u8(&mut self) -> SqlResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> SqlResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> SqlResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn varint(&mut self) -> SqlResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7F) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.corrupt("varint too long"))
    }

    fn string(&mut self) -> SqlResult<String> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.corrupt("length"))?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt("invalid UTF-8"))
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A row value: format byte, column count, NULL bitmap, then each non-NULL column.
pub fn encode_row(types: &[DataType], row: &[Value]) -> Vec<u8> {
    assert_eq!(types.len(), row.len(), "a row has one value per column");
    let mut out = Vec::with_capacity(3 + row.len().div_ceil(8) + row.len() * 8);
    out.push(ROW_FORMAT_V1);
    out.extend_from_slice(&(row.len() as u16).to_le_bytes());
    let bitmap_at = out.len();
    out.resize(bitmap_at + row.len().div_ceil(8), 0);
    for (i, (v, ty)) in row.iter().zip(types).enumerate() {
        match v {
            Value::Null => out[bitmap_at + i / 8] |= 1 << (i % 8),
            Value::Bool(b) => out.push(*b as u8),
            Value::Int(x) => match ty {
                DataType::Int2 => out.extend_from_slice(&(*x as i16).to_le_bytes()),
                DataType::Int4 => out.extend_from_slice(&(*x as i32).to_le_bytes()),
                _ => out.extend_from_slice(&x.to_le_bytes()),
            },
            Value::Float(f) => match ty {
                DataType::Float4 => out.extend_from_slice(&(*f as f32).to_bits().to_le_bytes()),
                _ => out.extend_from_slice(&f.to_bits().to_le_bytes()),
            },
            Value::Text(s) => put_string(&mut out, s),
        }
    }
    out
}

/// Decodes a row of a table whose columns have `types`. A row written before
/// columns were added holds fewer; the missing ones read as NULL.
pub fn decode_row(types: &[DataType], bytes: &[u8]) -> SqlResult<Vec<Value>> {
    let mut r = Reader {
        buf: bytes,
        what: "row",
    };
    if r.u8()? != ROW_FORMAT_V1 {
        return Err(r.corrupt("unknown row format"));
    }
    let n = r.u16()? as usize;
    if n > types.len() {
        return Err(r.corrupt("more columns than the table has"));
    }
    let bitmap = r.take(n.div_ceil(8))?.to_vec();
    let mut row = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate().take(n) {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            row.push(Value::Null);
            continue;
        }
        row.push(match ty {
            DataType::Bool => Value::Bool(r.u8()? != 0),
            DataType::Int2 => Value::Int(i16::from_le_bytes(r.array()?) as i64),
            DataType::Int4 => Value::Int(i32::from_le_bytes(r.array()?) as i64),
            DataType::Int8 => Value::Int(i64::from_le_bytes(r.array()?)),
            DataType::Float4 => Value::Float(f32::from_bits(r.u32()?) as f64),
            DataType::Float8 => Value::Float(f64::from_bits(u64::from_le_bytes(r.array()?))),
            _ => Value::Text(r.string()?),
        });
    }
    row.resize(types.len(), Value::Null);
    if !r.buf.is_empty() {
        return Err(r.corrupt("trailing bytes"));
    }
    Ok(row)
}

fn type_tag(ty: DataType) -> (u8, u32) {
    match ty {
        DataType::Bool => (1, 0),
        DataType::Int2 => (2, 0),
        DataType::Int4 => (3, 0),
        DataType::Int8 => (4, 0),
        DataType::Float4 => (5, 0),
        DataType::Float8 => (6, 0),
        DataType::Text | DataType::Unknown => (7, 0),
        DataType::Varchar(n) => (8, n.unwrap_or(0)),
        DataType::Bpchar(n) => (9, n),
    }
}

fn type_of_tag(tag: u8, param: u32) -> Option<DataType> {
    Some(match tag {
        1 => DataType::Bool,
        2 => DataType::Int2,
        3 => DataType::Int4,
        4 => DataType::Int8,
        5 => DataType::Float4,
        6 => DataType::Float8,
        7 => DataType::Text,
        8 => DataType::Varchar((param > 0).then_some(param)),
        9 => DataType::Bpchar(param),
        _ => return None,
    })
}

/// A table record of the catalog.
pub fn encode_table(t: &TableDef) -> Vec<u8> {
    let mut out = vec![TABLE_FORMAT_V1];
    out.extend_from_slice(&t.id.to_le_bytes());
    out.push(t.hidden_row_id as u8);
    put_string(&mut out, &t.name);
    out.extend_from_slice(&(t.columns.len() as u16).to_le_bytes());
    for c in &t.columns {
        put_string(&mut out, &c.name);
        let (tag, param) = type_tag(c.ty);
        out.push(tag);
        out.extend_from_slice(&param.to_le_bytes());
        out.push(c.not_null as u8);
        put_string(&mut out, c.default.as_deref().unwrap_or(""));
    }
    out.extend_from_slice(&(t.primary_key.len() as u16).to_le_bytes());
    for &i in &t.primary_key {
        out.extend_from_slice(&(i as u16).to_le_bytes());
    }
    out
}

pub fn decode_table(bytes: &[u8]) -> SqlResult<TableDef> {
    let mut r = Reader {
        buf: bytes,
        what: "table record",
    };
    if r.u8()? != TABLE_FORMAT_V1 {
        return Err(r.corrupt("unknown format"));
    }
    let id = r.u32()?;
    let hidden_row_id = r.u8()? != 0;
    let name = r.string()?;
    let n = r.u16()? as usize;
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let (tag, param) = (r.u8()?, r.u32()?);
        let ty = type_of_tag(tag, param).ok_or_else(|| r.corrupt("unknown type tag"))?;
        let not_null = r.u8()? != 0;
        let default = Some(r.string()?).filter(|d| !d.is_empty());
        columns.push(Column {
            name,
            ty,
            not_null,
            default,
        });
    }
    let k = r.u16()? as usize;
    let mut primary_key = Vec::with_capacity(k);
    for _ in 0..k {
        let i = r.u16()? as usize;
        if i >= columns.len() {
            return Err(r.corrupt("primary key names a missing column"));
        }
        primary_key.push(i);
    }
    if !r.buf.is_empty() {
        return Err(r.corrupt("trailing bytes"));
    }
    Ok(TableDef {
        id,
        name,
        columns,
        primary_key,
        hidden_row_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(types: &[DataType]) -> TableDef {
        TableDef {
            id: 7,
            name: "t".into(),
            columns: types
                .iter()
                .enumerate()
                .map(|(i, &ty)| Column {
                    name: format!("c{i}"),
                    ty,
                    not_null: true,
                    default: None,
                })
                .collect(),
            primary_key: (0..types.len()).collect(),
            hidden_row_id: false,
        }
    }

    #[test]
    fn key_order_is_value_order() {
        let cases: Vec<(DataType, Vec<Value>)> = vec![
            (
                DataType::Int4,
                [i32::MIN as i64, -5, -1, 0, 1, 300, i32::MAX as i64]
                    .map(Value::Int)
                    .to_vec(),
            ),
            (
                DataType::Int2,
                [-32768, -1, 0, 32767].map(Value::Int).to_vec(),
            ),
            (
                DataType::Int8,
                [i64::MIN, -1, 0, 1, i64::MAX].map(Value::Int).to_vec(),
            ),
            (
                DataType::Float8,
                [
                    f64::NEG_INFINITY,
                    -1e10,
                    -0.5,
                    0.0,
                    1e-300,
                    2.0,
                    f64::INFINITY,
                    f64::NAN,
                ]
                .map(Value::Float)
                .to_vec(),
            ),
            (
                DataType::Float4,
                [-3.5f64, 0.0, 0.25, 1e30].map(Value::Float).to_vec(),
            ),
            (
                DataType::Text,
                ["", "\0", "a", "a\0b", "ab", "b"]
                    .map(|s| Value::Text(s.into()))
                    .to_vec(),
            ),
            (DataType::Bool, vec![Value::Bool(false), Value::Bool(true)]),
        ];
        for (ty, values) in cases {
            let t = table(&[ty]);
            let keys: Vec<Vec<u8>> = values
                .iter()
                .map(|v| row_key(&t, std::slice::from_ref(v)).unwrap())
                .collect();
            for w in keys.windows(2) {
                assert!(w[0] < w[1], "{ty:?}: {values:?}");
            }
        }
        // A two-column key orders by the first column, then the second.
        let t = table(&[DataType::Text, DataType::Int4]);
        let a = row_key(&t, &[Value::Text("a".into()), Value::Int(9)]).unwrap();
        let b = row_key(&t, &[Value::Text("ab".into()), Value::Int(1)]).unwrap();
        assert!(a < b);
        assert!(row_key(&t, &[Value::Float(-0.0), Value::Int(1)]).is_ok());
    }

    #[test]
    fn rows_and_tables_round_trip_and_bad_bytes_are_errors() {
        let types = [
            DataType::Bool,
            DataType::Int2,
            DataType::Int4,
            DataType::Int8,
            DataType::Float4,
            DataType::Float8,
            DataType::Text,
            DataType::Varchar(Some(3)),
        ];
        let row = vec![
            Value::Bool(true),
            Value::Int(-2),
            Value::Null,
            Value::Int(1 << 40),
            Value::Float(0.5),
            Value::Float(-1e300),
            Value::Text("héllo".into()),
            Value::Null,
        ];
        let bytes = encode_row(&types, &row);
        assert_eq!(decode_row(&types, &bytes).unwrap(), row);
        for cut in 0..bytes.len() {
            assert!(decode_row(&types, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A row written before a column was added reads it as NULL.
        let old = encode_row(&types[..2], &row[..2]);
        assert_eq!(
            decode_row(&types, &old).unwrap()[2..],
            vec![Value::Null; 6][..]
        );

        let mut t = table(&types);
        t.columns[3].default = Some("42".into());
        t.columns[1].not_null = false;
        let bytes = encode_table(&t);
        assert_eq!(decode_table(&bytes).unwrap(), t);
        for cut in 0..bytes.len() {
            assert!(decode_table(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
