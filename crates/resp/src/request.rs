//! Client → proxy framing: RESP arrays of bulk strings (zero-copy ranges) and inline commands.
//!
//! Error texts are Redis's own (`networking.c`, `processMultibulkBuffer` / `processInlineBuffer`), so the proxy
//! can answer `-ERR Protocol error: {e}` exactly as Redis would.
use crate::util::{byte_char, crlf_at, fast_len, find_cr, parse_i64};
use crate::{Limits, ProtocolError};
use smallvec::SmallVec;
use std::ops::Range;

/// One whole client request found at the start of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A RESP array of bulk strings, `len` bytes long; `args` are byte ranges relative to the buffer start
    /// (so they stay valid for the frame after the caller splits `len` bytes off the front).
    /// `*0\r\n` and `*-1\r\n` give an Array with no args (Redis ignores such requests).
    Array { len: usize, args: SmallVec<[Range<usize>; 8]> },
    /// An inline (telnet-style) command line, `len` bytes including its `\n`, split into arguments as Redis's
    /// `sdssplitargs` does (double and single quotes, `\xHH` and the usual escapes). A blank line gives no args.
    Inline { len: usize, args: Vec<Vec<u8>> },
}

impl Request {
    /// Bytes this request occupies at the start of the buffer.
    pub fn len(&self) -> usize {
        match self {
            Request::Array { len, .. } | Request::Inline { len, .. } => *len,
        }
    }

    /// Always false: a request occupies at least one byte (`\n` for an empty inline command).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of arguments (the command name included).
    pub fn arg_count(&self) -> usize {
        match self {
            Request::Array { args, .. } => args.len(),
            Request::Inline { args, .. } => args.len(),
        }
    }

    /// Argument `i` as bytes; `buf` is the buffer the request was decoded from (used for [`Request::Array`]).
    pub fn arg<'a>(&'a self, buf: &'a [u8], i: usize) -> Option<&'a [u8]> {
        match self {
            Request::Array { args, .. } => args.get(i).and_then(|r| buf.get(r.clone())),
            Request::Inline { args, .. } => args.get(i).map(|a| a.as_slice()),
        }
    }
}

// A `*<n>`/`$<n>` line longer than Redis's PROTO_INLINE_MAX_SIZE (our `Limits::max_inline_len`) gives these.
const TOO_BIG_MBULK: &str = "too big mbulk count string";
const TOO_BIG_BULK: &str = "too big bulk count string";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing of the next frame seen yet.
    Idle,
    /// Inside an inline command line.
    Inline,
    /// Reading the `*<n>\r\n` line.
    Count,
    /// At a `$<len>\r\n` line (`pos` is at the `$`).
    BulkHeader,
    /// At a bulk payload of this many bytes (`pos` is at its first byte).
    Payload(usize),
}

/// Incremental request decoder. It remembers how far it has scanned a partial frame, so a large frame that
/// arrives in many reads is scanned once, and it never reserves memory for a length that hasn't arrived.
///
/// Between two calls that return `Ok(None)` the caller may only append bytes to the buffer: it must not change
/// or remove the bytes already passed in (the decoder's progress points into them). After `Ok(Some(req))` the
/// caller removes `req.len()` bytes from the front and the next frame starts at offset 0. An error also resets
/// the decoder. To drop a partial frame, call [`RequestDecoder::reset`] (a buffer shorter than the decoder's
/// progress also resets it, as a safety net, and decoding restarts from offset 0).
///
/// Error texts are Redis's; one has no Redis equivalent (Redis skips two bytes without looking):
/// a bulk payload not followed by CRLF gives `expected '\r\n' after bulk string`.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    phase: Phase,
    /// Offset of the next unparsed byte: the start of the line or payload the phase refers to.
    pos: usize,
    /// Where the search for the current line's terminator resumes (0: from the start of the line).
    scan: usize,
    /// Bulk strings still expected in the current array.
    remaining: u64,
    /// Ranges of the arguments found so far; grows only as arguments actually arrive.
    args: SmallVec<[Range<usize>; 8]>,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder { limits, phase: Phase::Idle, pos: 0, scan: 0, remaining: 0, args: SmallVec::new() }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Enforces `limits` from now on (a configuration reload). A frame being decoded keeps what was already
    /// accepted of it; its remaining lengths are checked against the new limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// While a bulk payload is partly here: how many more bytes (its CRLF included) complete it, given `buffered`
    /// bytes in the buffer. Lets the caller make room for a large argument once instead of growing step by step.
    pub fn wants(&self, buffered: usize) -> Option<usize> {
        match self.phase {
            Phase::Payload(n) => (self.pos + n + 2).checked_sub(buffered).filter(|&m| m > 0),
            _ => None,
        }
    }

    /// Forgets any partial frame: the next call decodes from offset 0.
    pub fn reset(&mut self) {
        self.phase = Phase::Idle;
        self.pos = 0;
        self.scan = 0;
        self.remaining = 0;
        self.args.clear();
    }

    /// Looks for one whole request at the start of `buf`.
    /// - `Ok(Some(req))`: the caller removes `req.len()` bytes from the front; the decoder is ready for the next frame.
    /// - `Ok(None)`: not all here yet; call again with the same buffer start and more bytes appended.
    /// - `Err(e)`: not RESP; reply `-ERR Protocol error: {e}` and close the connection (as Redis does).
    ///
    /// Inline lines longer than `limits.max_inline_len` (not counting the `\n`) are rejected whether or not their
    /// `\n` has arrived, so the outcome does not depend on how the bytes were split into reads.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
        if buf.len() < self.pos || buf.len() < self.scan {
            // The caller broke the "append only" rule; start over rather than index out of bounds.
            self.reset();
        }
        // `multibulk` and `inline` reset the state themselves when they return a frame or an error, so the
        // (large) result is built in place rather than moved through here.
        match self.phase {
            Phase::Idle => match buf.first() {
                None => Ok(None),
                Some(b'*') => {
                    self.phase = Phase::Count;
                    self.multibulk(buf)
                }
                Some(_) => {
                    self.phase = Phase::Inline;
                    self.inline(buf)
                }
            },
            Phase::Inline => self.inline(buf),
            _ => self.multibulk(buf),
        }
    }

    /// Resets the state and makes the error for a protocol violation.
    #[cold]
    fn fail(&mut self, msg: impl Into<String>) -> ProtocolError {
        self.reset();
        ProtocolError(msg.into())
    }

    /// Resets the state and hands over the arguments of a finished array.
    #[inline]
    fn finish_array(&mut self, len: usize) -> Request {
        self.phase = Phase::Idle;
        self.pos = 0;
        self.scan = 0;
        self.remaining = 0;
        Request::Array { len, args: std::mem::take(&mut self.args) }
    }

    /// Finds the `\r\n` ending the line that starts at `line_start` (the byte after `*` or `$`).
    /// `Ok(None)`: incomplete (progress saved in `self.scan`).
    #[inline]
    fn line_end(
        &mut self,
        buf: &[u8],
        elem_start: usize,
        too_big: &'static str,
        invalid: &'static str,
    ) -> Result<Option<usize>, ProtocolError> {
        let from = self.scan.max(elem_start + 1);
        let cr = find_cr(buf, from);
        // Like Redis: more than PROTO_INLINE_MAX_SIZE bytes from the `*`/`$` without a `\r`. Also checked when the
        // `\r` is there, so the verdict doesn't depend on how the bytes were split into reads.
        if cr.unwrap_or(buf.len()) - elem_start > self.limits.max_inline_len {
            return Err(self.fail(too_big));
        }
        match cr {
            None => {
                self.scan = buf.len();
                Ok(None)
            }
            Some(cr) if cr + 1 == buf.len() => {
                self.scan = cr;
                Ok(None)
            }
            Some(cr) if buf[cr + 1] != b'\n' => Err(self.fail(invalid)),
            Some(cr) => {
                self.scan = 0;
                Ok(Some(cr))
            }
        }
    }

    fn multibulk(&mut self, buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
        let mut pos = self.pos;
        loop {
            match self.phase {
                Phase::Count => {
                    const INVALID: &str = "invalid multibulk length";
                    let max_array = self.limits.max_array_len as u64;
                    let n = match fast_len(buf, pos + 1) {
                        // Fast path: a whole `*<n>\r\n` line with a plain positive count.
                        Some((n, cr)) if n > 0 && n <= max_array && cr - pos <= self.limits.max_inline_len => {
                            pos = cr + 2;
                            n as i64
                        }
                        _ => {
                            let Some(cr) = self.line_end(buf, pos, TOO_BIG_MBULK, INVALID)? else {
                                return Ok(None);
                            };
                            let n = match parse_i64(&buf[pos + 1..cr]) {
                                Some(n) if n <= 0 || n as u64 <= max_array => n,
                                _ => return Err(self.fail(INVALID)),
                            };
                            pos = cr + 2;
                            n
                        }
                    };
                    if n <= 0 {
                        return Ok(Some(self.finish_array(pos)));
                    }
                    self.remaining = n as u64;
                    self.phase = Phase::BulkHeader;
                }
                Phase::BulkHeader => {
                    // Hot loop: whole `$<len>\r\n<payload>\r\n` elements already in the buffer.
                    let max_bulk = self.limits.max_bulk_len as u64;
                    let max_line = self.limits.max_inline_len;
                    while buf.get(pos) == Some(&b'$') {
                        let Some((n, cr)) = fast_len(buf, pos + 1) else { break };
                        if n > max_bulk || cr - pos > max_line {
                            break;
                        }
                        let start = cr + 2;
                        let Some(end) = start.checked_add(n as usize).filter(|e| *e < usize::MAX - 2) else { break };
                        if !crlf_at(buf, end) {
                            break;
                        }
                        self.args.push(start..end);
                        pos = end + 2;
                        self.remaining -= 1;
                        if self.remaining == 0 {
                            return Ok(Some(self.finish_array(pos)));
                        }
                    }
                    // General path: partial element, unusual length, or an error.
                    const INVALID: &str = "invalid bulk length";
                    let Some(&first) = buf.get(pos) else {
                        self.pos = pos;
                        return Ok(None);
                    };
                    if first != b'$' {
                        return Err(self.fail(format!("expected '$', got '{}'", byte_char(first))));
                    }
                    let Some(cr) = self.line_end(buf, pos, TOO_BIG_BULK, INVALID)? else {
                        self.pos = pos;
                        return Ok(None);
                    };
                    let n = match parse_i64(&buf[pos + 1..cr]) {
                        Some(n) if n >= 0 && n as u64 <= self.limits.max_bulk_len as u64 => n as usize,
                        _ => return Err(self.fail(INVALID)),
                    };
                    pos = cr + 2;
                    self.phase = Phase::Payload(n);
                }
                Phase::Payload(n) => {
                    let end = match pos.checked_add(n) {
                        Some(end) if end < usize::MAX - 2 => end,
                        _ => return Err(self.fail("invalid bulk length")),
                    };
                    match buf.get(end..end + 2) {
                        Some(b"\r\n") => {}
                        Some(_) => return Err(self.fail(BAD_BULK_END)),
                        None => {
                            if buf.len() > end && buf[end] != b'\r' {
                                return Err(self.fail(BAD_BULK_END));
                            }
                            self.pos = pos;
                            return Ok(None);
                        }
                    }
                    self.args.push(pos..end);
                    pos = end + 2;
                    self.remaining -= 1;
                    if self.remaining == 0 {
                        return Ok(Some(self.finish_array(pos)));
                    }
                    self.phase = Phase::BulkHeader;
                }
                Phase::Idle | Phase::Inline => unreachable!("multibulk called in phase {:?}", self.phase),
            }
        }
    }

    fn inline(&mut self, buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
        const TOO_BIG: &str = "too big inline request";
        let from = self.scan;
        let Some(i) = memchr::memchr(b'\n', &buf[from..]) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(self.fail(TOO_BIG));
            }
            self.scan = buf.len();
            return Ok(None);
        };
        let nl = from + i;
        if nl > self.limits.max_inline_len {
            return Err(self.fail(TOO_BIG));
        }
        let line = match &buf[..nl] {
            [rest @ .., b'\r'] => rest,
            l => l,
        };
        let Some(args) = split_args(line) else {
            return Err(self.fail("unbalanced quotes in request"));
        };
        self.reset();
        Ok(Some(Request::Inline { len: nl + 1, args }))
    }
}

const BAD_BULK_END: &str = "expected '\\r\\n' after bulk string";

/// C's `isspace` in the C locale.
#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Redis's `sdssplitargs`: whitespace-separated tokens; "double quotes" with `\n \r \t \b \a \xHH` and
/// `\<any>` escapes; 'single quotes' with `\'` only; a closing quote must be followed by a space or the end.
/// `None` for unbalanced quotes. A NUL byte ends the line, as it does for the C string Redis works on.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let line = match memchr::memchr(0, line) {
        Some(i) => &line[..i],
        None => line,
    };
    // The byte at `i`, or 0 (C's terminator) past the end.
    let at = |i: usize| -> u8 { line.get(i).copied().unwrap_or(0) };
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if inq {
                if c == b'\\' && at(p + 1) == b'x' {
                    if let (Some(h), Some(l)) = (hex_val(at(p + 2)), hex_val(at(p + 3))) {
                        cur.push(h * 16 + l);
                        p += 3;
                    } else {
                        // `\x` not followed by two hex digits: the generic escape, giving `x`.
                        p += 1;
                        cur.push(b'x');
                    }
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    cur.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => cur.push(c),
                }
            }
            if p < line.len() {
                p += 1;
            }
        }
        args.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec() -> RequestDecoder {
        RequestDecoder::new(Limits::default())
    }

    fn decode(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
        dec().decode(buf)
    }

    fn err(buf: &[u8]) -> String {
        match decode(buf) {
            Err(e) => e.0,
            other => panic!("expected an error for {:?}, got {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn args_of(buf: &[u8]) -> (usize, Vec<Vec<u8>>) {
        match decode(buf).unwrap().unwrap() {
            Request::Array { len, args } => (len, args.iter().map(|r| buf[r.clone()].to_vec()).collect()),
            Request::Inline { len, args } => (len, args),
        }
    }

    fn v(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn array_of_bulks() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\nrest";
        let req = decode(buf).unwrap().unwrap();
        assert_eq!(req.len(), buf.len() - 4);
        assert_eq!(req.arg_count(), 3);
        assert_eq!(req.arg(buf, 0), Some(&b"SET"[..]));
        assert_eq!(req.arg(buf, 2), Some(&b"value"[..]));
        assert_eq!(req.arg(buf, 3), None);
        match req {
            Request::Array { args, .. } => assert_eq!(args.as_slice(), &[8..11, 17..18, 24..29]),
            _ => panic!(),
        }
        assert_eq!(args_of(b"*1\r\n$0\r\n\r\n"), (10, vec![vec![]]));
        // Binary payloads, CRLF inside a payload.
        assert_eq!(args_of(b"*1\r\n$4\r\n\r\n\0\xff\r\n"), (14, vec![b"\r\n\0\xff".to_vec()]));
    }

    #[test]
    fn empty_arrays() {
        for buf in [&b"*0\r\n"[..], b"*-1\r\n", b"*-5\r\n"] {
            assert_eq!(decode(buf).unwrap(), Some(Request::Array { len: buf.len(), args: SmallVec::new() }));
        }
    }

    #[test]
    fn incomplete() {
        for buf in [&b""[..], b"*", b"*1", b"*1\r", b"*1\r\n", b"*1\r\n$", b"*1\r\n$3\r\n", b"*1\r\n$3\r\nfoo\r"] {
            assert_eq!(decode(buf).unwrap(), None);
        }
        for buf in [&b"GET"[..], b"GET k\r", b" "] {
            assert_eq!(decode(buf).unwrap(), None);
        }
    }

    #[test]
    fn multibulk_errors() {
        assert_eq!(err(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*01\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*+1\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*1 \r\n"), "invalid multibulk length");
        assert_eq!(err(b"*99999999999999999999\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*1\rx"), "invalid multibulk length");
        let small = Limits { max_array_len: 2, ..Limits::default() };
        assert_eq!(RequestDecoder::new(small).decode(b"*3\r\n").unwrap_err().0, "invalid multibulk length");
        assert!(RequestDecoder::new(small).decode(b"*2\r\n").unwrap().is_none());
        assert_eq!(err(b"*2000000000\r\n"), "invalid multibulk length");

        assert_eq!(err(b"*1\r\nx"), "expected '$', got 'x'");
        assert_eq!(err(b"*1\r\n:1\r\n"), "expected '$', got ':'");
        assert_eq!(err(b"*2\r\n$1\r\na\r\n*1\r\n"), "expected '$', got '*'");

        assert_eq!(err(b"*1\r\n$x\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$-1\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$1\rx"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$4000000000\r\n"), "invalid bulk length");
        let small = Limits { max_bulk_len: 3, ..Limits::default() };
        assert_eq!(RequestDecoder::new(small).decode(b"*1\r\n$4\r\n").unwrap_err().0, "invalid bulk length");
        assert!(RequestDecoder::new(small).decode(b"*1\r\n$3\r\n").unwrap().is_none());

        assert_eq!(err(b"*1\r\n$1\r\nab\r\n"), "expected '\\r\\n' after bulk string");
        assert_eq!(err(b"*1\r\n$1\r\nab"), "expected '\\r\\n' after bulk string");
        assert_eq!(err(b"*1\r\n$1\r\na\rx"), "expected '\\r\\n' after bulk string");
    }

    #[test]
    fn too_big_count_strings() {
        // Redis: more than 64 KiB from the line's first byte (the `*`) without a `\r`.
        let mut buf = b"*".to_vec();
        buf.extend(std::iter::repeat_n(b'1', 64 * 1024 - 1));
        assert_eq!(decode(&buf).unwrap(), None, "exactly 64 KiB is still waiting");
        buf.push(b'1');
        assert_eq!(err(&buf), "too big mbulk count string");

        let mut buf = b"*1\r\n$".to_vec();
        buf.extend(std::iter::repeat_n(b'1', 64 * 1024));
        assert_eq!(err(&buf), "too big bulk count string");
    }

    #[test]
    fn inline_commands() {
        assert_eq!(args_of(b"PING\r\n"), (6, v(&["PING"])));
        assert_eq!(args_of(b"PING\n"), (5, v(&["PING"])));
        assert_eq!(args_of(b"  SET  k \t v  \r\nGET"), (16, v(&["SET", "k", "v"])));
        assert_eq!(args_of(b"\r\n"), (2, vec![]));
        assert_eq!(args_of(b"\n"), (1, vec![]));
        assert_eq!(args_of(b"   \n"), (4, vec![]));
        assert_eq!(args_of(b"SET \"a b\" 'c d'\n"), (16, v(&["SET", "a b", "c d"])));
        assert_eq!(
            args_of(b"\"\\n\\r\\t\\b\\a\\\\\\\"\\x41\\x4a\\xzz\\q\"\n").1,
            vec![b"\n\r\t\x08\x07\\\"AJxzzq".to_vec()]
        );
        assert_eq!(args_of(b"'it\\'s' 'a\\nb'\n").1, v(&["it's", "a\\nb"]));
        assert_eq!(args_of(b"a\"b c\" d\n").1, v(&["ab c", "d"]), "quotes may start mid-token");
        assert_eq!(args_of(b"\"\"\n").1, vec![Vec::<u8>::new()]);
        assert_eq!(args_of(b"a\x0bb\n").1, vec![b"a\x0bb".to_vec()], "\\v only separates leading blanks");
        assert_eq!(args_of(b"a\0 b\n").1, v(&["a"]), "NUL ends the C string");
        // Only one trailing \r is stripped; an inner \r separates.
        assert_eq!(args_of(b"a\rb\r\r\n").1, v(&["a", "b"]));
    }

    #[test]
    fn inline_errors() {
        for bad in [&b"\"abc\n"[..], b"'abc\n", b"\"a\"b\n", b"'a'b\n", b"\"abc\\\"\n", b"\"a\0\"\n"] {
            assert_eq!(err(bad), "unbalanced quotes in request", "{:?}", String::from_utf8_lossy(bad));
        }
        let mut line = vec![b'a'; 64 * 1024];
        assert_eq!(decode(&line).unwrap(), None);
        line.push(b'a');
        assert_eq!(err(&line), "too big inline request");
        line.push(b'\n');
        assert_eq!(err(&line), "too big inline request", "same verdict when the newline is there");
        let mut ok = vec![b'a'; 64 * 1024];
        ok.push(b'\n');
        assert_eq!(decode(&ok).unwrap().unwrap().len(), ok.len());
    }

    #[test]
    fn resumes_without_rescanning() {
        // 10,000 args arriving a few bytes at a time: progress is kept (pos only moves forward).
        let mut out = bytes::BytesMut::new();
        let args: Vec<String> = (0..10_000).map(|i| format!("key:{i}")).collect();
        crate::encode::command(&mut out, &args);
        let mut d = dec();
        let mut last_pos = 0;
        for end in (0..out.len()).step_by(7) {
            assert_eq!(d.decode(&out[..end]).unwrap(), None);
            assert!(d.pos >= last_pos);
            last_pos = d.pos;
            assert!(d.args.len() <= 10_000);
        }
        let req = d.decode(&out).unwrap().unwrap();
        assert_eq!(req.arg_count(), 10_000);
        assert_eq!(req.arg(&out, 9_999), Some(&b"key:9999"[..]));
        assert_eq!((d.phase, d.pos, d.args.len()), (Phase::Idle, 0, 0), "state reset after a frame");
    }

    #[test]
    fn declared_lengths_cost_nothing() {
        let mut d = dec();
        let t = std::time::Instant::now();
        assert_eq!(d.decode(b"*1000000000\r\n").unwrap(), None);
        assert!(!d.args.spilled() && d.args.capacity() == 8, "nothing reserved for the declared count");
        assert_eq!(d.decode(b"*1000000000\r\n$3\r\nfoo\r\n$5").unwrap(), None);
        assert!(!d.args.spilled());
        assert_eq!(d.decode(b"*1000000000\r\n$3\r\nfoo\r\n$500000000\r\n").unwrap(), None);
        assert!(!d.args.spilled());
        assert_eq!(d.remaining, 999_999_999);
        assert_eq!(err(b"*1\r\n$4000000000\r\n"), "invalid bulk length");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn shrunk_buffer_resets() {
        let mut d = dec();
        assert_eq!(d.decode(b"*2\r\n$1\r\na\r\n").unwrap(), None);
        // Contract broken (buffer replaced by a shorter one): no panic, decoding restarts from 0.
        assert_eq!(d.decode(b"PING\n").unwrap().unwrap().len(), 5);
    }

    #[test]
    fn split_args_is_sdssplitargs() {
        assert_eq!(split_args(b""), Some(vec![]));
        assert_eq!(split_args(b"a 'b' \"c\""), Some(v(&["a", "b", "c"])));
        assert_eq!(split_args(b"\"unterminated"), None);
        assert_eq!(split_args(b"'x"), None);
        assert_eq!(split_args(b"\"\\"), None);
    }
}
