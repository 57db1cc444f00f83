//! Sans-IO RESP2/RESP3 for slotway: incremental, zero-copy framing of requests and replies,
//! an owned [`Value`] for the replies slotway builds or inspects, and encoders.
//!
//! No I/O, no tokio, no routing. The caller owns the read buffer; the decoders only look at it.
//!
//! # Layout
//! - [`request`]: client → proxy framing ([`RequestDecoder`]): RESP arrays of bulk strings and inline commands.
//! - [`reply`]: node → proxy framing ([`ReplyScanner`]): finds where one reply (any RESP2/RESP3 type) ends.
//! - [`value`]: [`Value`], decoded fully, for topology replies and merged replies; [`Value::parse`].
//! - [`encode`]: writers for arrays, bulks, errors, integers and whole [`Value`]s.
//!
//! # Example
//! ```
//! use bytes::{Buf, BytesMut};
//! use resp::{Limits, ReplyKind, ReplyScanner, Request, RequestDecoder};
//!
//! let mut decoder = RequestDecoder::new(Limits::default());
//! let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk"[..]);
//! assert_eq!(decoder.decode(&buf).unwrap(), None); // incomplete: the decoder keeps its progress
//! buf.extend_from_slice(b"\r\nPING\r\n"); // more bytes arrive (only appended)
//! let req = decoder.decode(&buf).unwrap().unwrap();
//! assert_eq!(req.arg(&buf, 0), Some(&b"GET"[..]));
//! if let Request::Array { args, .. } = &req {
//!     assert_eq!(&buf[args[1].clone()], b"k"); // ranges into the buffer, no copy
//! }
//! buf.advance(req.len());
//! assert!(matches!(decoder.decode(&buf).unwrap(), Some(Request::Inline { .. })));
//!
//! let mut scanner = ReplyScanner::new(Limits::default());
//! let reply = scanner.scan(b"*2\r\n$1\r\nv\r\n$-1\r\n+OK\r\n").unwrap().unwrap();
//! assert_eq!((reply.len, reply.kind), (16, ReplyKind::Array));
//! ```
#![forbid(unsafe_code)]

pub mod encode;
pub mod reply;
pub mod request;
mod util;
pub mod value;

pub use encode::Protocol;
pub use reply::{ReplyKind, ReplyScanner, ScannedReply};
pub use request::{Request, RequestDecoder};
pub use value::Value;

/// Bounds applied while decoding, so hostile input can't make the caller reserve memory or recurse without limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string accepted (Redis's `proto-max-bulk-len`, 512 MB by default). Applies to request bulks,
    /// to reply blobs (`$`, `!`, `=`) and bounds the length of a reply's simple line (`+`, `-`, `:`, ...).
    pub max_bulk_len: usize,
    /// Most elements a request array may declare (Redis accepts up to 1024*1024*1024; we default lower).
    pub max_array_len: usize,
    /// Longest inline command line (Redis's PROTO_INLINE_MAX_SIZE, 64 KiB). As in Redis, it also bounds a request's
    /// `*<count>` / `$<len>` line (`too big mbulk count string` / `too big bulk count string`).
    pub max_inline_len: usize,
    /// Deepest nesting of aggregate types in a reply (RESP3 maps of arrays of ...); an attribute counts as a level.
    pub max_depth: usize,
}

impl Limits {
    /// For replies from the nodes: as [`Limits::default`], with nesting as deep as a node may send. Redis has no
    /// depth limit of its own for replies (a script's reply is bounded only by Lua's stack, thousands of levels);
    /// [`ReplyScanner`] tracks nesting on an explicit stack of 16 bytes per level, and every level takes at least
    /// 4 bytes of the reply, so this bounds its memory by the reply's own size and then by 16 MiB.
    pub fn node_replies() -> Limits {
        Limits { max_depth: 1 << 20, ..Limits::default() }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_depth: 128,
        }
    }
}

/// Why a byte stream is not valid RESP. The message is what follows `-ERR Protocol error: ` in Redis's own wording
/// where Redis has one (e.g. `invalid bulk length`, `invalid multibulk length`, `expected '$', got 'x'`,
/// `too big inline request`, `unbalanced quotes in request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}
