//! Owned RESP values: full decoding (bulks sliced from the input, no copy) and encoding for RESP2/RESP3.
use crate::encode::{self, Protocol};
use crate::util::{byte_char, crlf_at, fast_len, find_cr, parse_i64};
use crate::{Limits, ProtocolError, ReplyKind};
use bytes::{Bytes, BytesMut};

/// A fully decoded reply, used only off the hot path: topology replies and replies slotway builds or merges.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(Bytes),
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// Null bulk (`$-1`) / RESP3 null.
    Nil,
    /// Null array (`*-1`) / RESP3 null.
    NilArray,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Push(Vec<Value>),
    Double(f64),
    Boolean(bool),
    BigNumber(Bytes),
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    BlobError(Bytes),
}

type Parsed<T> = Result<Option<T>, ProtocolError>;

/// Unwraps `Ok(Some(x))`, returns early on `Ok(None)` (incomplete) and on errors.
macro_rules! ready {
    ($e:expr) => {
        match $e? {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

fn err<T>(msg: &str) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

/// The `\r` ending the line that starts at `from`, if the whole line (and its `\n`) is in `buf`.
fn line_end(buf: &[u8], from: usize, limits: &Limits) -> Parsed<usize> {
    let found = find_cr(buf, from);
    // Same bound as the scanner: the line from its type byte (at `from - 1`) to the `\r`.
    if found.unwrap_or(buf.len()) - (from - 1) > limits.max_bulk_len {
        return err("too big reply line");
    }
    match found {
        Some(cr) if cr + 1 < buf.len() => {
            if buf[cr + 1] != b'\n' {
                return err("expected '\\n' after '\\r'");
            }
            Ok(Some(cr))
        }
        Some(_) => Ok(None),
        None => Ok(None),
    }
}

/// Capacity for `n` declared elements of at least `min_size` bytes each: never more than the bytes present allow.
fn capacity(n: u64, available: usize, min_size: usize) -> usize {
    n.min((available / min_size) as u64) as usize
}

fn parse_double(line: &[u8]) -> Option<f64> {
    // Rust's parser also takes `inf`, `-inf` and `nan` (any case), which is what Redis sends.
    std::str::from_utf8(line).ok()?.parse().ok()
}

fn parse_at(buf: &Bytes, mut pos: usize, limits: &Limits, depth: usize) -> Parsed<(Value, usize)> {
    // Loops only to skip attributes.
    loop {
        let Some(&t) = buf.get(pos) else { return Ok(None) };
        // Fast path: a whole bulk string with a plain length (same checks as the general path below).
        if t == b'$' {
            let fast = fast_len(buf, pos + 1).filter(|&(n, cr)| {
                n <= limits.max_bulk_len as u64
                    && cr - pos <= limits.max_bulk_len
                    && (cr + 2).checked_add(n as usize).is_some_and(|end| end < usize::MAX - 2)
            });
            if let Some((n, cr)) = fast {
                let (start, end) = (cr + 2, cr + 2 + n as usize);
                if crlf_at(buf, end) {
                    return Ok(Some((Value::Bulk(buf.slice(start..end)), end + 2)));
                }
            }
        }
        if !matches!(
            t,
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' | b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|'
        ) {
            return Err(ProtocolError(format!("unknown reply type byte '{}'", byte_char(t))));
        }
        let cr = ready!(line_end(buf, pos + 1, limits));
        let line = &buf[pos + 1..cr];
        let next = cr + 2;
        let value = match t {
            b'+' => Value::Simple(buf.slice(pos + 1..cr)),
            b'-' => Value::Error(buf.slice(pos + 1..cr)),
            b':' => match parse_i64(line) {
                Some(i) => Value::Integer(i),
                None => return err("invalid integer"),
            },
            b'_' if line.is_empty() => Value::Nil,
            b'_' => return err("invalid null"),
            b',' => match parse_double(line) {
                Some(d) => Value::Double(d),
                None => return err("invalid double"),
            },
            b'#' => match line {
                b"t" => Value::Boolean(true),
                b"f" => Value::Boolean(false),
                _ => return err("invalid boolean"),
            },
            b'(' => {
                let digits = line.strip_prefix(b"-").or_else(|| line.strip_prefix(b"+")).unwrap_or(line);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return err("invalid big number");
                }
                Value::BigNumber(buf.slice(pos + 1..cr))
            }
            b'$' | b'!' | b'=' => {
                let n = match parse_i64(line) {
                    Some(-1) if t == b'$' => return Ok(Some((Value::Nil, next))),
                    Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len as u64 => n as usize,
                    _ if line == b"?" => return err("streamed RESP3 replies are not supported"),
                    _ => return err("invalid bulk length"),
                };
                let end = match next.checked_add(n) {
                    Some(end) if end < usize::MAX - 2 => end,
                    _ => return err("invalid bulk length"),
                };
                match buf.get(end..end + 2) {
                    Some(b"\r\n") => {}
                    Some(_) => return err("expected '\\r\\n' after bulk string"),
                    None => return Ok(None),
                }
                let data = buf.slice(next..end);
                let value = match t {
                    b'$' => Value::Bulk(data),
                    b'!' => Value::BlobError(data),
                    _ => {
                        if data.len() < 4 || data[3] != b':' {
                            return err("invalid verbatim string");
                        }
                        Value::Verbatim { format: [data[0], data[1], data[2]], text: data.slice(4..) }
                    }
                };
                return Ok(Some((value, end + 2)));
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let n = match parse_i64(line) {
                    Some(-1) if t == b'*' => return Ok(Some((Value::NilArray, next))),
                    Some(n) if n >= 0 => n as u64,
                    _ if line == b"?" => return err("streamed RESP3 replies are not supported"),
                    _ => return err("invalid multibulk length"),
                };
                if n > 0 && depth >= limits.max_depth {
                    return err("exceeds max nesting depth");
                }
                let available = buf.len() - next;
                let mut p = next;
                if t == b'%' {
                    let mut pairs = Vec::with_capacity(capacity(n, available, 6));
                    for _ in 0..n {
                        let (k, np) = ready!(parse_at(buf, p, limits, depth + 1));
                        let (v, np) = ready!(parse_at(buf, np, limits, depth + 1));
                        pairs.push((k, v));
                        p = np;
                    }
                    return Ok(Some((Value::Map(pairs), p)));
                }
                if t == b'|' {
                    for _ in 0..n.saturating_mul(2) {
                        let (_, np) = ready!(parse_at(buf, p, limits, depth + 1));
                        p = np;
                    }
                    pos = p;
                    continue;
                }
                let mut items = Vec::with_capacity(capacity(n, available, 3));
                for _ in 0..n {
                    let (v, np) = ready!(parse_at(buf, p, limits, depth + 1));
                    items.push(v);
                    p = np;
                }
                let value = match t {
                    b'*' => Value::Array(items),
                    b'~' => Value::Set(items),
                    _ => Value::Push(items),
                };
                return Ok(Some((value, p)));
            }
            _ => unreachable!("type byte checked above"),
        };
        return Ok(Some((value, next)));
    }
}

impl Value {
    /// Decodes one whole reply at the start of `buf`: `Ok(Some((value, used)))`, or `Ok(None)` if incomplete.
    /// Attributes are skipped. Bulk payloads are sliced from `buf` (no copy).
    ///
    /// Not resumable: it decodes from the start each call, so on a stream use [`crate::ReplyScanner`] to find the
    /// frame first. Recursion is bounded by `limits.max_depth`; vectors are never reserved beyond what the bytes
    /// present can fill. `$-1` and `_` give [`Value::Nil`], `*-1` gives [`Value::NilArray`].
    pub fn parse(buf: &Bytes, limits: &Limits) -> Result<Option<(Value, usize)>, ProtocolError> {
        parse_at(buf, 0, limits, 0)
    }

    /// Appends the value's encoding. In RESP2: maps become flat arrays, sets and pushes arrays, doubles and big
    /// numbers bulk strings, booleans integers 1/0, verbatim strings bulk strings, nulls `$-1`/`*-1`.
    ///
    /// (RESP3: both nulls are `_`; blob errors `!`; in RESP2 a blob error becomes a simple error. CR/LF inside
    /// simple strings and errors are replaced by spaces so the output is always well framed.)
    pub fn encode(&self, out: &mut BytesMut, proto: Protocol) {
        match self {
            Value::Simple(s) => encode::simple_bytes(out, s),
            Value::Error(e) => encode::error_bytes(out, e),
            Value::Integer(i) => encode::integer(out, *i),
            Value::Bulk(b) => encode::bulk(out, b),
            Value::Nil => encode::nil(out, proto),
            Value::NilArray => encode::nil_array(out, proto),
            Value::Array(items) => {
                encode::array_header(out, items.len());
                items.iter().for_each(|v| v.encode(out, proto));
            }
            Value::Map(pairs) => {
                encode::map_header(out, pairs.len(), proto);
                for (k, v) in pairs {
                    k.encode(out, proto);
                    v.encode(out, proto);
                }
            }
            Value::Set(items) => {
                encode::set_header(out, items.len(), proto);
                items.iter().for_each(|v| v.encode(out, proto));
            }
            Value::Push(items) => {
                encode::push_header(out, items.len(), proto);
                items.iter().for_each(|v| v.encode(out, proto));
            }
            Value::Double(d) => encode::double(out, *d, proto),
            Value::Boolean(b) => encode::boolean(out, *b, proto),
            Value::BigNumber(n) => encode::big_number(out, n, proto),
            Value::Verbatim { format, text } => encode::verbatim(out, *format, text, proto),
            Value::BlobError(e) => encode::blob_error(out, e, proto),
        }
    }

    /// The encoding as one buffer (see [`Value::encode`]).
    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out, proto);
        out.freeze()
    }

    /// A simple string.
    pub fn simple(s: &str) -> Value {
        Value::Simple(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// An error reply; `msg` starts with the error code, e.g. `Value::error("ERR unknown command")`.
    pub fn error(msg: &str) -> Value {
        Value::Error(Bytes::copy_from_slice(msg.as_bytes()))
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Bytes>) -> Value {
        Value::Bulk(data.into())
    }

    /// `Error` or `BlobError`.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_) | Value::BlobError(_))
    }

    /// `Nil` or `NilArray`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil | Value::NilArray)
    }

    /// The message of an `Error` or `BlobError`.
    pub fn error_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Error(e) | Value::BlobError(e) => Some(e),
            _ => None,
        }
    }

    /// The type the reply scanner reports for this value's frame (both nils are [`ReplyKind::Null`]).
    pub fn reply_kind(&self) -> ReplyKind {
        match self {
            Value::Simple(_) => ReplyKind::Simple,
            Value::Error(_) => ReplyKind::Error,
            Value::Integer(_) => ReplyKind::Integer,
            Value::Bulk(_) => ReplyKind::Bulk,
            Value::Nil | Value::NilArray => ReplyKind::Null,
            Value::Array(_) => ReplyKind::Array,
            Value::Map(_) => ReplyKind::Map,
            Value::Set(_) => ReplyKind::Set,
            Value::Push(_) => ReplyKind::Push,
            Value::Double(_) => ReplyKind::Double,
            Value::Boolean(_) => ReplyKind::Boolean,
            Value::BigNumber(_) => ReplyKind::BigNumber,
            Value::Verbatim { .. } => ReplyKind::Verbatim,
            Value::BlobError(_) => ReplyKind::BlobError,
        }
    }

    /// The bytes of a simple string, bulk string, verbatim string or big number.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Simple(b) | Value::Bulk(b) | Value::BigNumber(b) | Value::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// [`Value::as_bytes`] as UTF-8 text (`None` if not a string or not valid UTF-8).
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Integer value (also parses a bulk/simple string holding a decimal integer).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::Simple(b) | Value::Bulk(b) => parse_i64(b),
            _ => None,
        }
    }

    /// Elements of an array, set or push.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }

    /// Map entries; a RESP2 flat array of even length is read as key/value pairs.
    pub fn to_pairs(&self) -> Option<Vec<(&Value, &Value)>> {
        match self {
            Value::Map(pairs) => Some(pairs.iter().map(|(k, v)| (k, v)).collect()),
            Value::Array(items) if items.len() % 2 == 0 => {
                Some(items.chunks_exact(2).map(|kv| (&kv[0], &kv[1])).collect())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
        Value::parse(&Bytes::copy_from_slice(buf), &Limits::default())
    }

    fn one(buf: &[u8]) -> Value {
        let (v, used) = parse(buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        v
    }

    fn err(buf: &[u8]) -> String {
        parse(buf).unwrap_err().0
    }

    fn enc(v: &Value, proto: Protocol) -> Vec<u8> {
        v.to_bytes(proto).to_vec()
    }

    #[test]
    fn parse_every_type() {
        assert_eq!(one(b"+OK\r\n"), Value::Simple(b("OK")));
        assert_eq!(one(b"-ERR x\r\n"), Value::Error(b("ERR x")));
        assert_eq!(one(b":-5\r\n"), Value::Integer(-5));
        assert_eq!(one(b"$3\r\nfoo\r\n"), Value::Bulk(b("foo")));
        assert_eq!(one(b"$-1\r\n"), Value::Nil);
        assert_eq!(one(b"_\r\n"), Value::Nil);
        assert_eq!(one(b"*-1\r\n"), Value::NilArray);
        assert_eq!(one(b"*2\r\n:1\r\n$1\r\na\r\n"), Value::Array(vec![Value::Integer(1), Value::Bulk(b("a"))]));
        assert_eq!(one(b"%1\r\n+k\r\n:1\r\n"), Value::Map(vec![(Value::Simple(b("k")), Value::Integer(1))]));
        assert_eq!(one(b"~1\r\n+a\r\n"), Value::Set(vec![Value::Simple(b("a"))]));
        assert_eq!(one(b">1\r\n+a\r\n"), Value::Push(vec![Value::Simple(b("a"))]));
        assert_eq!(one(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(one(b",-inf\r\n"), Value::Double(f64::NEG_INFINITY));
        assert_eq!(one(b",1e300\r\n"), Value::Double(1e300));
        assert!(matches!(one(b",nan\r\n"), Value::Double(d) if d.is_nan()));
        assert_eq!(one(b"#t\r\n"), Value::Boolean(true));
        assert_eq!(one(b"#f\r\n"), Value::Boolean(false));
        assert_eq!(one(b"(-123\r\n"), Value::BigNumber(b("-123")));
        assert_eq!(one(b"=6\r\ntxt:hi\r\n"), Value::Verbatim { format: *b"txt", text: b("hi") });
        assert_eq!(one(b"!3\r\nERR\r\n"), Value::BlobError(b("ERR")));
        assert_eq!(
            one(b"|1\r\n+ttl\r\n:3\r\n*1\r\n|1\r\n+a\r\n+b\r\n:7\r\n"),
            Value::Array(vec![Value::Integer(7)]),
            "attributes are skipped"
        );
    }

    #[test]
    fn parse_is_zero_copy_and_incomplete() {
        let buf = Bytes::from_static(b"*1\r\n$5\r\nhello\r\n+next\r\n");
        let (v, used) = Value::parse(&buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, 15);
        let bulk = v.as_array().unwrap()[0].as_bytes().unwrap();
        assert_eq!(bulk.as_ptr(), buf[8..].as_ptr(), "sliced from the input");
        for end in 0..15 {
            assert_eq!(Value::parse(&buf.slice(..end), &Limits::default()).unwrap(), None, "prefix {end}");
        }
    }

    #[test]
    fn parse_errors() {
        assert_eq!(err(b"x"), "unknown reply type byte 'x'");
        assert_eq!(err(b":x\r\n"), "invalid integer");
        assert_eq!(err(b",x\r\n"), "invalid double");
        assert_eq!(err(b"#x\r\n"), "invalid boolean");
        assert_eq!(err(b"_x\r\n"), "invalid null");
        assert_eq!(err(b"(12a\r\n"), "invalid big number");
        assert_eq!(err(b"=2\r\nab\r\n"), "invalid verbatim string");
        assert_eq!(err(b"=4\r\nabcd\r\n"), "invalid verbatim string");
        assert_eq!(err(b"$-2\r\n"), "invalid bulk length");
        assert_eq!(err(b"$4000000000\r\n"), "invalid bulk length");
        assert_eq!(err(b"*-2\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*?\r\n"), "streamed RESP3 replies are not supported");
        assert_eq!(err(b"$1\r\nab\r\n"), "expected '\\r\\n' after bulk string");
        assert_eq!(err(b"+a\rb"), "expected '\\n' after '\\r'");
        let limits = Limits { max_depth: 2, ..Limits::default() };
        let parse2 = |s: &'static [u8]| Value::parse(&Bytes::from_static(s), &limits);
        assert!(parse2(b"*1\r\n*1\r\n*0\r\n").unwrap().is_some());
        assert_eq!(parse2(b"*1\r\n*1\r\n*1\r\n:1\r\n").unwrap_err().0, "exceeds max nesting depth");
        assert_eq!(err(&b"*1\r\n".repeat(200)), "exceeds max nesting depth");
    }

    #[test]
    fn declared_lengths_cost_nothing() {
        assert_eq!(parse(b"*1000000000\r\n").unwrap(), None);
        assert_eq!(parse(b"%1000000000\r\n+a\r\n").unwrap(), None);
        assert_eq!(parse(b"$500000000\r\nab").unwrap(), None);
        assert_eq!(capacity(1_000_000_000, 30, 3), 10);
        assert_eq!(capacity(2, 300, 3), 2);
    }

    #[test]
    fn encode_resp3_and_resp2() {
        let cases: Vec<(Value, &[u8], &[u8])> = vec![
            (Value::simple("OK"), b"+OK\r\n", b"+OK\r\n"),
            (Value::error("ERR x"), b"-ERR x\r\n", b"-ERR x\r\n"),
            (Value::Integer(3), b":3\r\n", b":3\r\n"),
            (Value::bulk(&b"ab"[..]), b"$2\r\nab\r\n", b"$2\r\nab\r\n"),
            (Value::Nil, b"_\r\n", b"$-1\r\n"),
            (Value::NilArray, b"_\r\n", b"*-1\r\n"),
            (Value::Array(vec![Value::Integer(1)]), b"*1\r\n:1\r\n", b"*1\r\n:1\r\n"),
            (Value::Map(vec![(Value::simple("k"), Value::Integer(1))]), b"%1\r\n+k\r\n:1\r\n", b"*2\r\n+k\r\n:1\r\n"),
            (Value::Set(vec![Value::Nil]), b"~1\r\n_\r\n", b"*1\r\n$-1\r\n"),
            (Value::Push(vec![Value::simple("m")]), b">1\r\n+m\r\n", b"*1\r\n+m\r\n"),
            (Value::Double(2.5), b",2.5\r\n", b"$3\r\n2.5\r\n"),
            (Value::Boolean(true), b"#t\r\n", b":1\r\n"),
            (Value::Boolean(false), b"#f\r\n", b":0\r\n"),
            (Value::BigNumber(b("123")), b"(123\r\n", b"$3\r\n123\r\n"),
            (Value::Verbatim { format: *b"txt", text: b("hi") }, b"=6\r\ntxt:hi\r\n", b"$2\r\nhi\r\n"),
            (Value::BlobError(b("ERR a\r\nb")), b"!8\r\nERR a\r\nb\r\n", b"-ERR a  b\r\n"),
            (Value::Simple(b("a\r\nb")), b"+a  b\r\n", b"+a  b\r\n"),
        ];
        for (v, r3, r2) in cases {
            assert_eq!(enc(&v, Resp3), r3, "{v:?} RESP3");
            assert_eq!(enc(&v, Resp2), r2, "{v:?} RESP2");
        }
    }

    #[test]
    fn accessors() {
        assert_eq!(Value::simple("x").as_bytes(), Some(&b("x")));
        assert_eq!(Value::bulk("x").as_bytes(), Some(&b("x")));
        assert_eq!(Value::BigNumber(b("9")).as_bytes(), Some(&b("9")));
        assert_eq!(Value::Verbatim { format: *b"txt", text: b("t") }.as_bytes(), Some(&b("t")));
        assert_eq!(Value::error("E").as_bytes(), None);
        assert_eq!(Value::Integer(1).as_bytes(), None);
        assert_eq!(Value::bulk("héllo").as_str(), Some("héllo"));
        assert_eq!(Value::bulk(&b"\xff"[..]).as_str(), None);

        assert_eq!(Value::Integer(-4).as_int(), Some(-4));
        assert_eq!(Value::bulk("42").as_int(), Some(42));
        assert_eq!(Value::simple("-7").as_int(), Some(-7));
        assert_eq!(Value::bulk("4x").as_int(), None);
        assert_eq!(Value::Nil.as_int(), None);

        let items = vec![Value::Integer(1), Value::Integer(2)];
        assert_eq!(Value::Array(items.clone()).as_array(), Some(&items[..]));
        assert_eq!(Value::Set(items.clone()).as_array(), Some(&items[..]));
        assert_eq!(Value::Push(items.clone()).as_array(), Some(&items[..]));
        assert_eq!(Value::NilArray.as_array(), None);
        assert_eq!(Value::Map(vec![]).as_array(), None);

        let flat = Value::Array(items.clone());
        assert_eq!(flat.to_pairs(), Some(vec![(&items[0], &items[1])]));
        assert_eq!(Value::Array(vec![Value::Nil]).to_pairs(), None, "odd flat array");
        let map = Value::Map(vec![(Value::simple("k"), Value::Integer(1))]);
        assert_eq!(map.to_pairs(), Some(vec![(&Value::simple("k"), &Value::Integer(1))]));
        assert_eq!(Value::Integer(1).to_pairs(), None);

        assert!(Value::error("E").is_error() && Value::BlobError(b("E")).is_error());
        assert_eq!(Value::BlobError(b("E")).error_bytes(), Some(&b("E")));
        assert!(Value::Nil.is_nil() && Value::NilArray.is_nil() && !Value::Integer(0).is_nil());
    }
}
