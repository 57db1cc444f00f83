//! RESP writers. STUB: signatures are the contract; the bodies are being written.
use bytes::BytesMut;

/// Which protocol a client speaks (chosen with HELLO; RESP2 until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// `*<n>\r\n`
pub fn array_header(out: &mut BytesMut, n: usize) {
    let _ = (out, n);
    todo!()
}

/// `$<len>\r\n<data>\r\n`
pub fn bulk(out: &mut BytesMut, data: &[u8]) {
    let _ = (out, data);
    todo!()
}

/// A command as an array of bulk strings.
pub fn command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    let _ = (out, args);
    todo!()
}

/// `+<s>\r\n` (`\r` and `\n` in `s` are replaced by spaces).
pub fn simple(out: &mut BytesMut, s: &str) {
    let _ = (out, s);
    todo!()
}

/// `-<msg>\r\n`; `msg` starts with the error code, e.g. `ERR unknown command` (`\r`/`\n` replaced by spaces).
pub fn error(out: &mut BytesMut, msg: &str) {
    let _ = (out, msg);
    todo!()
}

/// `:<i>\r\n`
pub fn integer(out: &mut BytesMut, i: i64) {
    let _ = (out, i);
    todo!()
}

/// Null bulk: `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn nil(out: &mut BytesMut, proto: Protocol) {
    let _ = (out, proto);
    todo!()
}
