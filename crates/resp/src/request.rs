//! Client → proxy framing. STUB: signatures are the contract; the bodies are being written.
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
}

/// Incremental request decoder. It remembers how far it has scanned a partial frame, so a large frame that
/// arrives in many reads is scanned once, and it never reserves memory for a length that hasn't arrived.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder { limits }
    }

    /// Looks for one whole request at the start of `buf`.
    /// - `Ok(Some(req))`: the caller removes `req.len()` bytes from the front; the decoder is ready for the next frame.
    /// - `Ok(None)`: not all here yet; call again with the same buffer start and more bytes appended.
    /// - `Err(e)`: not RESP; reply `-ERR Protocol error: {e}` and close the connection (as Redis does).
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
        let _ = (buf, &self.limits);
        todo!()
    }
}
