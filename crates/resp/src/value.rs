//! Owned RESP values. STUB: signatures are the contract; the bodies are being written.
use crate::encode::Protocol;
use crate::{Limits, ProtocolError};
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
    Verbatim { format: [u8; 3], text: Bytes },
    BlobError(Bytes),
}

impl Value {
    /// Decodes one whole reply at the start of `buf`: `Ok(Some((value, used)))`, or `Ok(None)` if incomplete.
    /// Attributes are skipped. Bulk payloads are sliced from `buf` (no copy).
    pub fn parse(buf: &Bytes, limits: &Limits) -> Result<Option<(Value, usize)>, ProtocolError> {
        let _ = (buf, limits);
        todo!()
    }

    /// Appends the value's encoding. In RESP2: maps become flat arrays, sets and pushes arrays, doubles and big
    /// numbers bulk strings, booleans integers 1/0, verbatim strings bulk strings, nulls `$-1`/`*-1`.
    pub fn encode(&self, out: &mut BytesMut, proto: Protocol) {
        let _ = (out, proto);
        todo!()
    }

    /// The bytes of a simple string, bulk string, verbatim string or big number.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        todo!()
    }

    /// Integer value (also parses a bulk/simple string holding a decimal integer).
    pub fn as_int(&self) -> Option<i64> {
        todo!()
    }

    /// Elements of an array, set or push.
    pub fn as_array(&self) -> Option<&[Value]> {
        todo!()
    }

    /// Map entries; a RESP2 flat array of even length is read as key/value pairs.
    pub fn to_pairs(&self) -> Option<Vec<(&Value, &Value)>> {
        todo!()
    }
}
