//! RESP writers. Integers are formatted with `itoa` on the stack; nothing here allocates beyond growing `out`.
use bytes::{BufMut, BytesMut};

/// Which protocol a client speaks (chosen with HELLO; RESP2 until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// `<prefix><n>\r\n`
#[inline]
fn header<I: itoa::Integer>(out: &mut BytesMut, prefix: u8, n: I) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(n).as_bytes();
    out.reserve(s.len() + 3);
    out.put_u8(prefix);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

/// `<prefix><len>\r\n<data>\r\n`
#[inline]
fn blob(out: &mut BytesMut, prefix: u8, data: &[u8]) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(data.len()).as_bytes();
    out.reserve(s.len() + data.len() + 5);
    out.put_u8(prefix);
    out.put_slice(s);
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// `<prefix><line>\r\n` with `\r` and `\n` in `line` replaced by spaces.
#[inline]
fn line(out: &mut BytesMut, prefix: u8, line: &[u8]) {
    out.reserve(line.len() + 3);
    out.put_u8(prefix);
    if memchr::memchr2(b'\r', b'\n', line).is_none() {
        out.put_slice(line);
    } else {
        let start = out.len();
        out.put_slice(line);
        for b in &mut out[start..] {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
    }
    out.put_slice(b"\r\n");
}

/// `*<n>\r\n`
pub fn array_header(out: &mut BytesMut, n: usize) {
    header(out, b'*', n);
}

/// `$<len>\r\n<data>\r\n`
pub fn bulk(out: &mut BytesMut, data: &[u8]) {
    blob(out, b'$', data);
}

/// A command as an array of bulk strings.
pub fn command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    array_header(out, args.len());
    for a in args {
        bulk(out, a.as_ref());
    }
}

/// `+<s>\r\n` (`\r` and `\n` in `s` are replaced by spaces).
pub fn simple(out: &mut BytesMut, s: &str) {
    line(out, b'+', s.as_bytes());
}

/// [`simple`] for raw bytes (`\r` and `\n` replaced by spaces).
pub fn simple_bytes(out: &mut BytesMut, s: &[u8]) {
    line(out, b'+', s);
}

/// `-<msg>\r\n`; `msg` starts with the error code, e.g. `ERR unknown command` (`\r`/`\n` replaced by spaces).
pub fn error(out: &mut BytesMut, msg: &str) {
    line(out, b'-', msg.as_bytes());
}

/// [`error`] for raw bytes (`\r` and `\n` replaced by spaces).
pub fn error_bytes(out: &mut BytesMut, msg: &[u8]) {
    line(out, b'-', msg);
}

/// `:<i>\r\n`
pub fn integer(out: &mut BytesMut, i: i64) {
    header(out, b':', i);
}

/// Null bulk: `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn nil(out: &mut BytesMut, proto: Protocol) {
    out.put_slice(match proto {
        Protocol::Resp2 => b"$-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// Null array: `*-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn nil_array(out: &mut BytesMut, proto: Protocol) {
    out.put_slice(match proto {
        Protocol::Resp2 => b"*-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// Map header for `n` key/value pairs: `%<n>\r\n` in RESP3, `*<2n>\r\n` (a flat array) in RESP2.
pub fn map_header(out: &mut BytesMut, n: usize, proto: Protocol) {
    match proto {
        Protocol::Resp2 => header(out, b'*', n.saturating_mul(2)),
        Protocol::Resp3 => header(out, b'%', n),
    }
}

/// Set header: `~<n>\r\n` in RESP3, `*<n>\r\n` in RESP2.
pub fn set_header(out: &mut BytesMut, n: usize, proto: Protocol) {
    header(out, if proto == Protocol::Resp3 { b'~' } else { b'*' }, n);
}

/// Push header: `><n>\r\n` in RESP3, `*<n>\r\n` in RESP2.
pub fn push_header(out: &mut BytesMut, n: usize, proto: Protocol) {
    header(out, if proto == Protocol::Resp3 { b'>' } else { b'*' }, n);
}

/// Up to 32 bytes of text formatted on the stack.
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The shortest text that reads back as `d` (`inf`, `-inf`, `nan` for the special values, as Redis writes them).
fn double_text(d: f64) -> StackText {
    let mut t = StackText { buf: [0; 32], len: 0 };
    let special: &[u8] = if d.is_nan() {
        b"nan"
    } else if d == f64::INFINITY {
        b"inf"
    } else if d == f64::NEG_INFINITY {
        b"-inf"
    } else {
        use std::fmt::Write;
        // Debug prints the shortest round-tripping form, with an exponent for very large/small magnitudes
        // (at most 24 bytes, e.g. `-2.2250738585072014e-308`).
        let _ = write!(t, "{d:?}");
        return t;
    };
    t.buf[..special.len()].copy_from_slice(special);
    t.len = special.len();
    t
}

/// A double: `,<d>\r\n` in RESP3, a bulk string of the same text in RESP2 (as Redis does).
pub fn double(out: &mut BytesMut, d: f64, proto: Protocol) {
    let t = double_text(d);
    let text = &t.buf[..t.len];
    match proto {
        Protocol::Resp3 => {
            out.reserve(text.len() + 3);
            out.put_u8(b',');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Protocol::Resp2 => bulk(out, text),
    }
}

/// A boolean: `#t\r\n`/`#f\r\n` in RESP3, `:1\r\n`/`:0\r\n` in RESP2.
pub fn boolean(out: &mut BytesMut, b: bool, proto: Protocol) {
    out.put_slice(match (proto, b) {
        (Protocol::Resp3, true) => b"#t\r\n",
        (Protocol::Resp3, false) => b"#f\r\n",
        (Protocol::Resp2, true) => b":1\r\n",
        (Protocol::Resp2, false) => b":0\r\n",
    });
}

/// A big number (its decimal digits): `(<digits>\r\n` in RESP3, a bulk string in RESP2.
pub fn big_number(out: &mut BytesMut, digits: &[u8], proto: Protocol) {
    match proto {
        Protocol::Resp3 => line(out, b'(', digits),
        Protocol::Resp2 => bulk(out, digits),
    }
}

/// A verbatim string: `=<len>\r\n<fmt>:<text>\r\n` in RESP3, a bulk string of `text` alone in RESP2.
pub fn verbatim(out: &mut BytesMut, format: [u8; 3], text: &[u8], proto: Protocol) {
    match proto {
        Protocol::Resp2 => bulk(out, text),
        Protocol::Resp3 => {
            header(out, b'=', text.len() + 4);
            out.reserve(text.len() + 6);
            out.put_slice(&format);
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
    }
}

/// A blob error: `!<len>\r\n<msg>\r\n` in RESP3, a simple error `-<msg>\r\n` (CR/LF replaced by spaces) in RESP2.
pub fn blob_error(out: &mut BytesMut, msg: &[u8], proto: Protocol) {
    match proto {
        Protocol::Resp3 => blob(out, b'!', msg),
        Protocol::Resp2 => line(out, b'-', msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        f(&mut b);
        b.to_vec()
    }

    #[test]
    fn basic_writers() {
        assert_eq!(w(|o| array_header(o, 0)), b"*0\r\n");
        assert_eq!(w(|o| array_header(o, 1234)), b"*1234\r\n");
        assert_eq!(w(|o| bulk(o, b"")), b"$0\r\n\r\n");
        assert_eq!(w(|o| bulk(o, b"a\r\nb")), b"$4\r\na\r\nb\r\n");
        assert_eq!(w(|o| command(o, &["SET", "k", "v"])), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        assert_eq!(w(|o| command::<&[u8]>(o, &[])), b"*0\r\n");
        assert_eq!(w(|o| simple(o, "OK")), b"+OK\r\n");
        assert_eq!(w(|o| simple(o, "a\r\nb")), b"+a  b\r\n");
        assert_eq!(w(|o| error(o, "ERR x\ny")), b"-ERR x y\r\n");
        assert_eq!(w(|o| error_bytes(o, b"MOVED 1 h:1")), b"-MOVED 1 h:1\r\n");
        assert_eq!(w(|o| simple_bytes(o, b"\r")), b"+ \r\n");
        assert_eq!(w(|o| integer(o, 0)), b":0\r\n");
        assert_eq!(w(|o| integer(o, i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(w(|o| integer(o, i64::MAX)), b":9223372036854775807\r\n");
        assert_eq!(w(|o| nil(o, Protocol::Resp2)), b"$-1\r\n");
        assert_eq!(w(|o| nil(o, Protocol::Resp3)), b"_\r\n");
        assert_eq!(w(|o| nil_array(o, Protocol::Resp2)), b"*-1\r\n");
        assert_eq!(w(|o| nil_array(o, Protocol::Resp3)), b"_\r\n");
    }

    #[test]
    fn resp3_writers() {
        use Protocol::*;
        assert_eq!(w(|o| map_header(o, 2, Resp3)), b"%2\r\n");
        assert_eq!(w(|o| map_header(o, 2, Resp2)), b"*4\r\n");
        assert_eq!(w(|o| set_header(o, 3, Resp3)), b"~3\r\n");
        assert_eq!(w(|o| set_header(o, 3, Resp2)), b"*3\r\n");
        assert_eq!(w(|o| push_header(o, 3, Resp3)), b">3\r\n");
        assert_eq!(w(|o| push_header(o, 3, Resp2)), b"*3\r\n");
        assert_eq!(w(|o| double(o, 1.5, Resp3)), b",1.5\r\n");
        assert_eq!(w(|o| double(o, 1.5, Resp2)), b"$3\r\n1.5\r\n");
        assert_eq!(w(|o| double(o, f64::INFINITY, Resp3)), b",inf\r\n");
        assert_eq!(w(|o| double(o, f64::NEG_INFINITY, Resp3)), b",-inf\r\n");
        assert_eq!(w(|o| double(o, f64::NAN, Resp3)), b",nan\r\n");
        assert_eq!(w(|o| double(o, 1e300, Resp3)), b",1e300\r\n");
        assert_eq!(w(|o| boolean(o, true, Resp3)), b"#t\r\n");
        assert_eq!(w(|o| boolean(o, false, Resp2)), b":0\r\n");
        assert_eq!(w(|o| big_number(o, b"123", Resp3)), b"(123\r\n");
        assert_eq!(w(|o| big_number(o, b"123", Resp2)), b"$3\r\n123\r\n");
        assert_eq!(w(|o| verbatim(o, *b"txt", b"hi", Resp3)), b"=6\r\ntxt:hi\r\n");
        assert_eq!(w(|o| verbatim(o, *b"txt", b"hi", Resp2)), b"$2\r\nhi\r\n");
        assert_eq!(w(|o| blob_error(o, b"ERR a\nb", Resp3)), b"!7\r\nERR a\nb\r\n");
        assert_eq!(w(|o| blob_error(o, b"ERR a\nb", Resp2)), b"-ERR a b\r\n");
    }
}
