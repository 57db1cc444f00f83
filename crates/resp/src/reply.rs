//! Node → proxy framing: finds where one reply (any RESP2/RESP3 type) ends, without building it.
use crate::util::{byte_char, crlf_at, fast_len, find_cr, parse_i64};
use crate::{Limits, ProtocolError};
use smallvec::SmallVec;

/// The type of a reply's top-level value (after any RESP3 attribute, which is counted as part of the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Simple,
    Error,
    Integer,
    Bulk,
    /// `$-1`, `*-1` or RESP3 `_`.
    Null,
    Array,
    Map,
    Set,
    /// RESP3 out-of-band push (`>`): pub/sub messages, invalidations.
    Push,
    Double,
    Boolean,
    BigNumber,
    Verbatim,
    /// RESP3 `!` blob error.
    BlobError,
}

impl ReplyKind {
    /// `Error` or `BlobError`.
    pub fn is_error(self) -> bool {
        matches!(self, ReplyKind::Error | ReplyKind::BlobError)
    }
}

/// One whole reply found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedReply {
    /// Bytes the reply occupies, including a leading attribute if there was one.
    pub len: usize,
    pub kind: ReplyKind,
}

/// An open aggregate: how many elements it still needs; attributes don't count as an element of their parent.
#[derive(Debug, Clone, Copy)]
struct Level {
    remaining: u64,
    attr: bool,
}

/// Incremental reply scanner: finds frame boundaries without building values. Resumable like
/// [`crate::RequestDecoder`], so a reply of a million elements arriving in pieces is scanned once.
///
/// Nesting is tracked with an explicit stack bounded by `limits.max_depth` (no recursion). Blob lengths above
/// `limits.max_bulk_len` are errors; aggregate lengths are only counted, never allocated for. Scalar lines are
/// delimited, not validated (that is [`crate::Value::parse`]'s job). Streamed RESP3 types (`$?`, `*?`, ...)
/// are rejected. Same caller rules as the request decoder: between calls returning `Ok(None)` only append bytes;
/// after `Ok(Some(r))` remove `r.len` bytes from the front; [`ReplyScanner::reset`] drops a partial frame.
#[derive(Debug)]
pub struct ReplyScanner {
    limits: Limits,
    /// Offset of the next unparsed byte: a type byte, or the start of a blob payload when `payload` is set.
    pos: usize,
    /// Where the search for the current line's `\r` resumes (0: from the start of the line).
    scan: usize,
    /// Length of the blob payload starting at `pos`, once its header has been read.
    payload: Option<usize>,
    /// Kind of the top-level value, once its header has been read.
    kind: ReplyKind,
    stack: SmallVec<[Level; 8]>,
}

impl ReplyScanner {
    pub fn new(limits: Limits) -> Self {
        ReplyScanner { limits, pos: 0, scan: 0, payload: None, kind: ReplyKind::Null, stack: SmallVec::new() }
    }

    /// Forgets any partial frame: the next call scans from offset 0.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.scan = 0;
        self.payload = None;
        self.kind = ReplyKind::Null;
        self.stack.clear();
    }

    /// `Ok(Some)`: one whole reply at the start of `buf`; `Ok(None)`: call again with more bytes appended.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<ScannedReply>, ProtocolError> {
        if buf.len() < self.pos || buf.len() < self.scan {
            self.reset();
        }
        let r = self.scan_inner(buf);
        if !matches!(r, Ok(None)) {
            self.reset();
        }
        r
    }

    /// One element (scalar or closed aggregate) is complete: pops finished aggregates. True when the top-level
    /// value is complete.
    #[inline]
    fn element_done(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            top.remaining -= 1;
            if top.remaining > 0 {
                return false;
            }
            let attr = top.attr;
            self.stack.pop();
            if attr {
                // The attribute is over; the value it annotates follows and is what counts for the parent.
                return false;
            }
        }
        true
    }

    fn scan_inner(&mut self, buf: &[u8]) -> Result<Option<ScannedReply>, ProtocolError> {
        let mut pos = self.pos;
        loop {
            if let Some(n) = self.payload {
                let end = match pos.checked_add(n) {
                    Some(end) if end < usize::MAX - 2 => end,
                    _ => return Err(ProtocolError("invalid bulk length".into())),
                };
                match buf.get(end..end + 2) {
                    Some(b"\r\n") => {}
                    Some(_) => return Err(bad_blob_end()),
                    None => {
                        if buf.len() > end && buf[end] != b'\r' {
                            return Err(bad_blob_end());
                        }
                        self.pos = pos;
                        return Ok(None);
                    }
                }
                pos = end + 2;
                self.payload = None;
                if self.element_done() {
                    return Ok(Some(ScannedReply { len: pos, kind: self.kind }));
                }
                continue;
            }

            // Hot loop: whole bulk strings inside an aggregate that needs more than one more element (so nothing
            // closes here; the last element goes through the general path below).
            if let Some(top) = self.stack.last_mut() {
                let max_bulk = self.limits.max_bulk_len as u64;
                while top.remaining > 1 && buf.get(pos) == Some(&b'$') {
                    let Some((n, cr)) = fast_len(buf, pos + 1) else { break };
                    let end = (cr + 2).checked_add(n as usize).filter(|e| *e < usize::MAX - 2);
                    match end {
                        Some(end) if n <= max_bulk && (cr - pos) as u64 <= max_bulk && crlf_at(buf, end) => {
                            pos = end + 2;
                            top.remaining -= 1;
                        }
                        _ => break,
                    }
                }
            }
            let Some(&t) = buf.get(pos) else {
                self.pos = pos;
                return Ok(None);
            };
            // Fast paths for the common cases, whole in the buffer: a bulk string, a non-empty array.
            if t == b'$' || t == b'*' {
                // (The line-length bound of the general path, checked here too so that results never depend on
                // how the bytes were split into reads, even with a tiny `max_bulk_len`.)
                let fast = fast_len(buf, pos + 1).filter(|&(_, cr)| cr - pos <= self.limits.max_bulk_len);
                if let Some((n, cr)) = fast {
                    if t == b'$' && n <= self.limits.max_bulk_len as u64 {
                        let end = (cr + 2).checked_add(n as usize).filter(|e| *e < usize::MAX - 2);
                        if let Some(end) = end.filter(|e| crlf_at(buf, *e)) {
                            if self.stack.is_empty() {
                                self.kind = ReplyKind::Bulk;
                            }
                            pos = end + 2;
                            if self.element_done() {
                                return Ok(Some(ScannedReply { len: pos, kind: self.kind }));
                            }
                            continue;
                        }
                    } else if t == b'*' && n > 0 {
                        if self.stack.is_empty() {
                            self.kind = ReplyKind::Array;
                        }
                        self.push(Level { remaining: n, attr: false })?;
                        pos = cr + 2;
                        continue;
                    }
                }
            }
            if !matches!(
                t,
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' | b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|'
            ) {
                return Err(unknown_type(t));
            }
            let found = find_cr(buf, self.scan.max(pos + 1));
            if found.unwrap_or(buf.len()) - pos > self.limits.max_bulk_len {
                return Err(ProtocolError("too big reply line".into()));
            }
            let cr = match found {
                Some(cr) if cr + 1 < buf.len() => {
                    if buf[cr + 1] != b'\n' {
                        return Err(ProtocolError("expected '\\n' after '\\r'".into()));
                    }
                    cr
                }
                _ => {
                    self.scan = found.unwrap_or(buf.len());
                    self.pos = pos;
                    return Ok(None);
                }
            };
            self.scan = 0;
            let line = &buf[pos + 1..cr];
            let next = cr + 2;
            let top = self.stack.is_empty();
            pos = next;
            let kind = match t {
                b'+' => ReplyKind::Simple,
                b'-' => ReplyKind::Error,
                b':' => ReplyKind::Integer,
                b'_' => ReplyKind::Null,
                b',' => ReplyKind::Double,
                b'#' => ReplyKind::Boolean,
                b'(' => ReplyKind::BigNumber,
                b'$' | b'!' | b'=' => {
                    let kind = match parse_i64(line) {
                        Some(-1) if t == b'$' => ReplyKind::Null,
                        Some(n) if n >= 0 && n as u64 <= self.limits.max_bulk_len as u64 => {
                            self.payload = Some(n as usize);
                            match t {
                                b'$' => ReplyKind::Bulk,
                                b'!' => ReplyKind::BlobError,
                                _ => ReplyKind::Verbatim,
                            }
                        }
                        _ if line == b"?" => return Err(streamed()),
                        _ => return Err(ProtocolError("invalid bulk length".into())),
                    };
                    if top {
                        self.kind = kind;
                    }
                    if self.payload.is_some() {
                        continue;
                    }
                    kind
                }
                b'*' | b'%' | b'~' | b'>' | b'|' => {
                    let n = match parse_i64(line) {
                        Some(-1) if t == b'*' => None,
                        Some(n) if n >= 0 => Some(n as u64),
                        _ if line == b"?" => return Err(streamed()),
                        _ => return Err(ProtocolError("invalid multibulk length".into())),
                    };
                    let Some(n) = n else {
                        // `*-1`: a null, complete by itself.
                        if top {
                            self.kind = ReplyKind::Null;
                        }
                        if self.element_done() {
                            return Ok(Some(ScannedReply { len: pos, kind: self.kind }));
                        }
                        continue;
                    };
                    let (kind, count) = match t {
                        b'*' => (ReplyKind::Array, n),
                        b'%' => (ReplyKind::Map, n * 2),
                        b'~' => (ReplyKind::Set, n),
                        b'>' => (ReplyKind::Push, n),
                        _ => {
                            // Attribute: its pairs are part of this frame, the kind is the next value's.
                            if n > 0 {
                                self.push(Level { remaining: n * 2, attr: true })?;
                            }
                            continue;
                        }
                    };
                    if top {
                        self.kind = kind;
                    }
                    if count > 0 {
                        self.push(Level { remaining: count, attr: false })?;
                        continue;
                    }
                    kind
                }
                other => return Err(unknown_type(other)),
            };
            // A complete scalar (or empty aggregate).
            if top {
                self.kind = kind;
            }
            if self.element_done() {
                return Ok(Some(ScannedReply { len: pos, kind: self.kind }));
            }
        }
    }

    #[inline]
    fn push(&mut self, level: Level) -> Result<(), ProtocolError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(ProtocolError("exceeds max nesting depth".into()));
        }
        self.stack.push(level);
        Ok(())
    }
}

fn bad_blob_end() -> ProtocolError {
    ProtocolError("expected '\\r\\n' after bulk string".into())
}

fn unknown_type(t: u8) -> ProtocolError {
    ProtocolError(format!("unknown reply type byte '{}'", byte_char(t)))
}

fn streamed() -> ProtocolError {
    ProtocolError("streamed RESP3 replies are not supported".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReplyKind::*;

    fn scan(buf: &[u8]) -> Result<Option<ScannedReply>, ProtocolError> {
        ReplyScanner::new(Limits::default()).scan(buf)
    }

    fn whole(buf: &[u8], kind: ReplyKind) {
        assert_eq!(
            scan(buf).unwrap(),
            Some(ScannedReply { len: buf.len(), kind }),
            "{:?}",
            String::from_utf8_lossy(buf)
        );
        let mut more = buf.to_vec();
        more.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(scan(&more).unwrap(), Some(ScannedReply { len: buf.len(), kind }));
    }

    fn err(buf: &[u8]) -> String {
        scan(buf).unwrap_err().0
    }

    #[test]
    fn every_type() {
        whole(b"+OK\r\n", Simple);
        whole(b"+\r\n", Simple);
        whole(b"-ERR x\r\n", Error);
        whole(b":-12\r\n", Integer);
        whole(b"$3\r\nfoo\r\n", Bulk);
        whole(b"$0\r\n\r\n", Bulk);
        whole(b"$4\r\n\r\n\r\n\r\n", Bulk);
        whole(b"$-1\r\n", Null);
        whole(b"*-1\r\n", Null);
        whole(b"_\r\n", Null);
        whole(b"*0\r\n", Array);
        whole(b"*2\r\n$1\r\na\r\n:1\r\n", Array);
        whole(b"*2\r\n$-1\r\n*-1\r\n", Array);
        whole(b"%1\r\n+k\r\n*1\r\n:1\r\n", Map);
        whole(b"%0\r\n", Map);
        whole(b"~2\r\n+a\r\n+b\r\n", Set);
        whole(b">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n", Push);
        whole(b",1.5\r\n", Double);
        whole(b",inf\r\n", Double);
        whole(b"#t\r\n", Boolean);
        whole(b"(3492890328409238509324850943850943825024385\r\n", BigNumber);
        whole(b"=15\r\ntxt:Some string\r\n", Verbatim);
        whole(b"!21\r\nSYNTAX invalid syntax\r\n", BlobError);
        assert!(Error.is_error() && BlobError.is_error() && !Simple.is_error());
    }

    #[test]
    fn attributes() {
        // Top-level attribute: part of the frame, kind is the annotated value's.
        whole(b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:1\r\n:2\r\n", Array);
        whole(b"|0\r\n+OK\r\n", Simple);
        whole(b"|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n$-1\r\n", Null);
        // Nested: the attribute doesn't count as an element of the array.
        whole(b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", Array);
        assert_eq!(scan(b"*1\r\n|1\r\n+a\r\n+b\r\n").unwrap(), None);
        assert_eq!(scan(b"|1\r\n+a\r\n+b\r\n").unwrap(), None);
    }

    #[test]
    fn incomplete() {
        for buf in [
            &b""[..],
            b"+",
            b"+OK",
            b"+OK\r",
            b"$3\r\nfo",
            b"$3\r\nfoo",
            b"$3\r\nfoo\r",
            b"*2\r\n:1\r\n",
            b"%1\r\n+k\r\n",
            b"*1\r\n*1\r\n*1\r\n",
        ] {
            assert_eq!(scan(buf).unwrap(), None, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn errors() {
        assert_eq!(err(b"?\r\n"), "unknown reply type byte '?'");
        assert_eq!(err(b"x"), "unknown reply type byte 'x'");
        assert_eq!(err(b"$x\r\n"), "invalid bulk length");
        assert_eq!(err(b"$-2\r\n"), "invalid bulk length");
        assert_eq!(err(b"!-1\r\n"), "invalid bulk length");
        assert_eq!(err(b"$4000000000\r\n"), "invalid bulk length");
        assert_eq!(err(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(err(b"%-1\r\n"), "invalid multibulk length");
        assert_eq!(err(b"$?\r\n"), "streamed RESP3 replies are not supported");
        assert_eq!(err(b"*?\r\n"), "streamed RESP3 replies are not supported");
        assert_eq!(err(b"$1\r\nab\r\n"), "expected '\\r\\n' after bulk string");
        assert_eq!(err(b"$1\r\nab"), "expected '\\r\\n' after bulk string");
        assert_eq!(err(b"+OK\rx"), "expected '\\n' after '\\r'");
        let tiny = Limits { max_bulk_len: 8, ..Limits::default() };
        assert_eq!(ReplyScanner::new(tiny).scan(b"+123456789").unwrap_err().0, "too big reply line");
    }

    #[test]
    fn node_replies_nest_as_deep_as_a_script_can() {
        // What a Lua script returning a table that contains itself gives: arrays nested until Lua's stack ran
        // out, and the error at the bottom.
        let depth = 100_000;
        let mut frame = b"*1\r\n".repeat(depth);
        frame.extend_from_slice(b"-ERR reached lua stack limit\r\n");
        let mut scanner = ReplyScanner::new(Limits::node_replies());
        // In pieces, as it arrives.
        let mut got = None;
        for end in (0..=frame.len()).step_by(4096).chain([frame.len()]) {
            if let Some(r) = scanner.scan(&frame[..end]).unwrap() {
                got = Some(r);
                break;
            }
        }
        assert_eq!(got, Some(ScannedReply { len: frame.len(), kind: ReplyKind::Array }));
    }

    #[test]
    fn depth_limit() {
        let limits = Limits { max_depth: 3, ..Limits::default() };
        let ok = b"*1\r\n*1\r\n*1\r\n:1\r\n";
        assert_eq!(ReplyScanner::new(limits).scan(ok).unwrap().unwrap().len, ok.len());
        let empty_inner = b"*1\r\n*1\r\n*1\r\n*0\r\n";
        assert_eq!(ReplyScanner::new(limits).scan(empty_inner).unwrap().unwrap().len, empty_inner.len());
        let deep = b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
        assert_eq!(ReplyScanner::new(limits).scan(deep).unwrap_err().0, "exceeds max nesting depth");
        let attr = b"*1\r\n*1\r\n*1\r\n|1\r\n";
        assert_eq!(ReplyScanner::new(limits).scan(attr).unwrap_err().0, "exceeds max nesting depth");
        // Default limit: 128.
        let mut buf = b"*1\r\n".repeat(128);
        buf.extend_from_slice(b":1\r\n");
        assert_eq!(scan(&buf).unwrap().unwrap().len, buf.len());
        let mut buf = b"*1\r\n".repeat(129);
        buf.extend_from_slice(b":1\r\n");
        assert_eq!(err(&buf), "exceeds max nesting depth");
        // Hostile depth costs nothing before the limit trips.
        assert_eq!(err(&b"*1\r\n".repeat(100_000)), "exceeds max nesting depth");
    }

    #[test]
    fn declared_lengths_cost_nothing() {
        let mut s = ReplyScanner::new(Limits::default());
        assert_eq!(s.scan(b"*1000000000\r\n").unwrap(), None);
        assert_eq!(s.scan(b"*1000000000\r\n%9223372036854775807\r\n").unwrap(), None);
        assert_eq!(s.stack.len(), 2);
        assert!(!s.stack.spilled());
        assert_eq!(s.scan(b"*1000000000\r\n%9223372036854775807\r\n$500000000\r\nab").unwrap(), None);
        assert_eq!(s.payload, Some(500_000_000));
    }

    #[test]
    fn resumable_state() {
        let mut s = ReplyScanner::new(Limits::default());
        let buf = b"*3\r\n$3\r\nfoo\r\n:1\r\n+bar\r\n";
        assert_eq!(s.scan(&buf[..10]).unwrap(), None);
        assert_eq!(s.pos, 8, "stopped inside the payload of the first element");
        assert_eq!(s.scan(&buf[..17]).unwrap(), None);
        assert_eq!(s.stack[0].remaining, 1);
        assert_eq!(s.scan(buf).unwrap(), Some(ScannedReply { len: buf.len(), kind: Array }));
        assert_eq!((s.pos, s.stack.len()), (0, 0));
        // A shrunk buffer (contract broken) resets instead of panicking.
        assert_eq!(s.scan(&buf[..10]).unwrap(), None);
        assert_eq!(s.scan(b"+OK\r\n").unwrap(), Some(ScannedReply { len: 5, kind: Simple }));
    }
}
