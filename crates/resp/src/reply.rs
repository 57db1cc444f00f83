//! Node → proxy framing. STUB: signatures are the contract; the bodies are being written.
use crate::{Limits, ProtocolError};

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

/// One whole reply found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedReply {
    /// Bytes the reply occupies, including a leading attribute if there was one.
    pub len: usize,
    pub kind: ReplyKind,
}

/// Incremental reply scanner: finds frame boundaries without building values. Resumable like
/// [`crate::RequestDecoder`], so a reply of a million elements arriving in pieces is scanned once.
#[derive(Debug)]
pub struct ReplyScanner {
    limits: Limits,
}

impl ReplyScanner {
    pub fn new(limits: Limits) -> Self {
        ReplyScanner { limits }
    }

    /// `Ok(Some)`: one whole reply at the start of `buf`; `Ok(None)`: call again with more bytes appended.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<ScannedReply>, ProtocolError> {
        let _ = (buf, &self.limits);
        todo!()
    }
}
