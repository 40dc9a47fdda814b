//! RESP2, the Redis protocol, as far as the `kv` suite needs it: GET / SET / PING
//! requests as arrays of bulk strings, and a parser for every reply type.

/// Longest bulk string or array the parser accepts (Redis' own `proto-max-bulk-len`).
const MAX_BULK: usize = 512 << 20;
/// Deepest nesting of arrays.
const MAX_DEPTH: usize = 8;

#[derive(Debug, PartialEq, Eq)]
pub enum RespError {
    /// The first byte is not a RESP type.
    BadType(u8),
    /// A length or integer line is not a decimal number.
    BadNumber,
    /// A bulk string is not followed by CRLF.
    MissingCrlf,
    TooLong(usize),
    TooDeep,
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::BadType(b) => write!(f, "RESP: unknown type byte 0x{b:02x}"),
            RespError::BadNumber => write!(f, "RESP: bad number"),
            RespError::MissingCrlf => write!(f, "RESP: bulk string without CRLF"),
            RespError::TooLong(n) => write!(f, "RESP: length {n} too large"),
            RespError::TooDeep => write!(f, "RESP: arrays nested too deep"),
        }
    }
}

impl std::error::Error for RespError {}

/// One reply, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    /// `$-1`: nil.
    Bulk(Option<&'a [u8]>),
    /// `*-1`: nil array.
    Array(Option<Vec<Reply<'a>>>),
}

/// Appends a command: an array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    push_decimal(args.len() as u64, out);
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        push_decimal(a.len() as u64, out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[inline]
pub fn encode_get(key: &[u8], out: &mut Vec<u8>) {
    encode_command(&[b"GET", key], out);
}

#[inline]
pub fn encode_set(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    encode_command(&[b"SET", key, value], out);
}

fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The line starting at `pos` (without CRLF) and the position after its CRLF.
fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let mut i = 0;
    while i + 1 < rest.len() {
        if rest[i] == b'\r' && rest[i + 1] == b'\n' {
            return Some((&rest[..i], pos + i + 2));
        }
        i += 1;
    }
    None
}

fn parse_i64(s: &[u8]) -> Result<i64, RespError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(RespError::BadNumber);
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(RespError::BadNumber);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d - b'0')))
            .ok_or(RespError::BadNumber)?;
    }
    Ok(if neg { -v } else { v })
}

/// Length of a bulk string or array: -1 (nil) or 0..=MAX_BULK.
fn parse_len(s: &[u8]) -> Result<Option<usize>, RespError> {
    let n = parse_i64(s)?;
    if n == -1 {
        return Ok(None);
    }
    let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
    if n > MAX_BULK {
        return Err(RespError::TooLong(n));
    }
    Ok(Some(n))
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply<'_>, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::TooDeep);
    }
    let Some(&t) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((l, next)) = line(buf, pos + 1) else {
        return Ok(None);
    };
    Ok(Some(match t {
        b'+' => (Reply::Simple(l), next),
        b'-' => (Reply::Error(l), next),
        b':' => (Reply::Int(parse_i64(l)?), next),
        b'$' => match parse_len(l)? {
            None => (Reply::Bulk(None), next),
            Some(n) => {
                let end = next + n;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                (Reply::Bulk(Some(&buf[next..end])), end + 2)
            }
        },
        b'*' => match parse_len(l)? {
            None => (Reply::Array(None), next),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(64));
                let mut p = next;
                for _ in 0..n {
                    let Some((item, after)) = parse_at(buf, p, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    p = after;
                }
                (Reply::Array(Some(items)), p)
            }
        },
        other => return Err(RespError::BadType(other)),
    }))
}

/// Parses one reply at the start of `buf`: `Ok(None)` when more bytes are needed,
/// otherwise the reply and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut b = Vec::new();
        encode_get(b"key:000000000001", &mut b);
        assert_eq!(b, b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000001\r\n");
        b.clear();
        encode_set(b"k", b"", &mut b);
        assert_eq!(b, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Reply::Simple(b"OK"), 5))));
        assert_eq!(
            parse(b"-ERR wrong\r\nrest"),
            Ok(Some((Reply::Error(b"ERR wrong"), 12)))
        );
        assert_eq!(parse(b":-42\r\n"), Ok(Some((Reply::Int(-42), 6))));
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(parse(b"$0\r\n\r\n"), Ok(Some((Reply::Bulk(Some(b"")), 6))));
        // Bulk strings may hold CRLF.
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n"),
            Ok(Some((Reply::Bulk(Some(b"a\r\nb")), 10)))
        );
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n:1\r\n"),
            Ok(Some((
                Reply::Array(Some(vec![Reply::Bulk(Some(b"a")), Reply::Int(1)])),
                15
            )))
        );
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((Reply::Array(None), 5))));
    }

    #[test]
    fn partial_replies_need_more_bytes() {
        let whole = b"*2\r\n$5\r\nhello\r\n$3\r\nabc\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse(whole), Ok(Some((_, n))) if n == whole.len()));
        // Replies one after another: each parse takes exactly one.
        let two = b"$2\r\nhi\r\n+OK\r\n";
        let Ok(Some((r, n))) = parse(two) else {
            panic!("first reply")
        };
        assert_eq!(r, Reply::Bulk(Some(b"hi")));
        assert_eq!(parse(&two[n..]), Ok(Some((Reply::Simple(b"OK"), 5))));
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert_eq!(parse(b"?x\r\n"), Err(RespError::BadType(b'?')));
        assert_eq!(parse(b":12a\r\n"), Err(RespError::BadNumber));
        assert_eq!(parse(b"$-2\r\n"), Err(RespError::BadNumber));
        assert_eq!(parse(b"$\r\n"), Err(RespError::BadNumber));
        assert_eq!(parse(b"$2\r\nabXY"), Err(RespError::MissingCrlf));
        assert_eq!(
            parse(b"$999999999999\r\n"),
            Err(RespError::TooLong(999_999_999_999))
        );
        assert_eq!(
            parse(b":99999999999999999999\r\n"),
            Err(RespError::BadNumber)
        );
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 2);
        assert_eq!(parse(&deep), Err(RespError::TooDeep));
    }
}
