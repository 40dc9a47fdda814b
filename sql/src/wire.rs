//! Values in PostgreSQL's wire formats: text (format 0) and binary (format 1), for
//! parameters a client binds and the columns a server sends.

use crate::error::{SqlError, SqlResult};
use crate::types::{self, DataType, Value};

/// Decodes a parameter of type `ty` sent in `format` (0 text, 1 binary).
pub fn decode_param(bytes: Option<&[u8]>, ty: DataType, format: i16) -> SqlResult<Value> {
    let Some(b) = bytes else {
        return Ok(Value::Null);
    };
    if format == 0 {
        let s = std::str::from_utf8(b).map_err(|_| {
            SqlError::InvalidTextRepresentation(
                "invalid byte sequence for encoding \"UTF8\"".into(),
            )
        })?;
        return types::parse_text(s, ty);
    }
    let bad = || {
        SqlError::ProtocolViolation(format!(
            "incorrect binary data format in bind parameter of type {}",
            ty.name()
        ))
    };
    let arr = |n: usize| -> SqlResult<&[u8]> { if b.len() == n { Ok(b) } else { Err(bad()) } };
    Ok(match ty {
        DataType::Bool => Value::Bool(arr(1)?[0] != 0),
        DataType::Int2 => Value::Int(i16::from_be_bytes([arr(2)?[0], b[1]]) as i64),
        DataType::Int4 => {
            Value::Int(i32::from_be_bytes(arr(4)?.try_into().map_err(|_| bad())?) as i64)
        }
        DataType::Int8 => Value::Int(i64::from_be_bytes(arr(8)?.try_into().map_err(|_| bad())?)),
        DataType::Float4 => {
            Value::Float(f32::from_be_bytes(arr(4)?.try_into().map_err(|_| bad())?) as f64)
        }
        DataType::Float8 => {
            Value::Float(f64::from_be_bytes(arr(8)?.try_into().map_err(|_| bad())?))
        }
        _ => Value::Text(String::from_utf8(b.to_vec()).map_err(|_| bad())?),
    })
}

/// Encodes a column value of type `ty` in `format` (None: NULL).
pub fn encode_value(v: &Value, ty: DataType, format: i16) -> Option<Vec<u8>> {
    if format == 0 {
        return types::format_text(v, ty).map(String::into_bytes);
    }
    Some(match (v, ty) {
        (Value::Null, _) => return None,
        (Value::Bool(b), _) => vec![*b as u8],
        (Value::Int(i), DataType::Int2) => (*i as i16).to_be_bytes().to_vec(),
        (Value::Int(i), DataType::Int4) => (*i as i32).to_be_bytes().to_vec(),
        (Value::Int(i), _) => i.to_be_bytes().to_vec(),
        (Value::Float(f), DataType::Float4) => (*f as f32).to_be_bytes().to_vec(),
        (Value::Float(f), _) => f.to_be_bytes().to_vec(),
        (Value::Text(s), _) => s.as_bytes().to_vec(),
    })
}
