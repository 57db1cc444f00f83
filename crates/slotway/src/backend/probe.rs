//! One-off connections for discovery: connect (TLS, AUTH, PING as every upstream connection), send a few commands
//! pipelined, read their replies, close.
//!
//! Discovery asks each node or sentinel about once a second. A fresh connection each time costs a handshake, and buys
//! two things: the host name is resolved again every time (a name that moved to another server is followed), and a
//! node that stalls can't hold a discovery connection that the data path shares.
use crate::cluster::NodeAddr;
use crate::upstream::connect::{connect, ConnectContext, ConnectError};
use bytes::BytesMut;
use resp::encode::Protocol;
use resp::{Limits, ReplyKind, ReplyScanner, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a probe got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Connect(ConnectError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
}

impl ProbeError {
    /// A wrong password or a rejected certificate: retrying won't help.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProbeError::Connect(e) if e.is_fatal())
    }
}

/// Sends `commands` to `addr` on a new connection and returns one reply per command (error replies included, as
/// values), all within `timeout`.
pub async fn call(
    addr: &NodeAddr,
    ctx: &ConnectContext,
    commands: &[&[&[u8]]],
    timeout: Duration,
) -> Result<Vec<Value>, ProbeError> {
    match tokio::time::timeout(timeout, call_inner(addr, ctx, commands)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

async fn call_inner(addr: &NodeAddr, ctx: &ConnectContext, commands: &[&[&[u8]]]) -> Result<Vec<Value>, ProbeError> {
    let (mut rd, mut wr) = connect(addr, ctx, Protocol::Resp2, false, 0).await.map_err(ProbeError::Connect)?;
    let mut out = BytesMut::new();
    for c in commands {
        resp::encode::command(&mut out, c);
    }
    let io = |e: std::io::Error| ProbeError::Io(e.to_string());
    wr.write_all(&out).await.map_err(io)?;
    wr.flush().await.map_err(io)?;
    let limits = Limits::default();
    let mut scanner = ReplyScanner::new(limits);
    let mut buf = BytesMut::with_capacity(4096);
    let mut replies = Vec::with_capacity(commands.len());
    while replies.len() < commands.len() {
        match scanner.scan(&buf) {
            Ok(Some(r)) => {
                let frame = buf.split_to(r.len).freeze();
                if r.kind == ReplyKind::Push {
                    continue;
                }
                match Value::parse(&frame, &limits) {
                    Ok(Some((v, _))) => replies.push(v),
                    _ => return Err(ProbeError::Io("malformed reply".to_string())),
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(ProbeError::Io(format!("protocol error: {e}"))),
        }
        if rd.read_buf(&mut buf).await.map_err(io)? == 0 {
            return Err(ProbeError::Io("connection closed".to_string()));
        }
    }
    Ok(replies)
}

/// What a node says it is (its ROLE reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    /// A primary: its replication offset and its connected replicas as it sees them (IP, port, acknowledged offset).
    Master { offset: i64, replicas: Vec<(String, u16, i64)> },
    /// A replica of `master_host:master_port`; `state` is `connected` once the link is up.
    Replica { master_host: String, master_port: u16, state: String, offset: i64 },
    /// A sentinel (it monitors these masters), or anything else ROLE may say.
    Other(String),
}

impl NodeRole {
    pub fn is_master(&self) -> bool {
        matches!(self, NodeRole::Master { .. })
    }

    /// How the role reads in logs and errors.
    pub fn describe(&self) -> String {
        match self {
            NodeRole::Master { replicas, .. } => format!("master with {} replica(s)", replicas.len()),
            NodeRole::Replica { master_host, master_port, state, .. } => {
                format!("replica of {} ({state})", NodeAddr::new(master_host, *master_port))
            }
            NodeRole::Other(r) => r.clone(),
        }
    }
}

/// Parses a ROLE reply (RESP2 or RESP3).
pub fn parse_role(v: &Value) -> Result<NodeRole, String> {
    if let Some(e) = v.error_bytes() {
        return Err(String::from_utf8_lossy(e).into_owned());
    }
    let items = v.as_array().ok_or("ROLE reply is not an array")?;
    let kind = items.first().and_then(Value::as_str).ok_or("ROLE reply has no role")?;
    match kind {
        "master" => {
            let offset = items.get(1).and_then(Value::as_int).unwrap_or(0);
            let mut replicas = Vec::new();
            for r in items.get(2).and_then(Value::as_array).unwrap_or(&[]) {
                let Some(r) = r.as_array() else { continue };
                let ip = r.first().and_then(Value::as_str).unwrap_or_default().to_string();
                let port = r.get(1).and_then(Value::as_int).and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
                let acked = r.get(2).and_then(Value::as_int).unwrap_or(0);
                replicas.push((ip, port, acked));
            }
            Ok(NodeRole::Master { offset, replicas })
        }
        "slave" | "replica" => Ok(NodeRole::Replica {
            master_host: items.get(1).and_then(Value::as_str).unwrap_or_default().to_string(),
            master_port: items.get(2).and_then(Value::as_int).and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
            state: items.get(3).and_then(Value::as_str).unwrap_or_default().to_string(),
            offset: items.get(4).and_then(Value::as_int).unwrap_or(-1),
        }),
        other => Ok(NodeRole::Other(other.to_string())),
    }
}

/// Asks `addr` for its ROLE on a new connection.
pub async fn role(addr: &NodeAddr, ctx: &ConnectContext, timeout: Duration) -> Result<NodeRole, String> {
    match call(addr, ctx, &[&[b"ROLE"]], timeout).await {
        Ok(replies) => parse_role(&replies[0]),
        Err(e) => Err(e.to_string()),
    }
}

/// The IP addresses `host` resolves to now (itself when it is an IP), for matching what nodes report by IP.
pub async fn resolve_ips(host: &str) -> Vec<std::net::IpAddr> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        return vec![ip];
    }
    match tokio::net::lookup_host((host, 0)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(bytes: &'static [u8]) -> Value {
        Value::parse(&Bytes::from_static(bytes), &Limits::default()).unwrap().unwrap().0
    }

    #[test]
    fn role_replies_as_redis_sends_them() {
        // redis-server 7.0 with one replica attached.
        let master =
            parse(b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n");
        assert_eq!(
            parse_role(&master).unwrap(),
            NodeRole::Master { offset: 3129659, replicas: vec![("127.0.0.1".into(), 9001, 3129242)] }
        );
        let replica = parse(b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n");
        let role = parse_role(&replica).unwrap();
        assert_eq!(
            role,
            NodeRole::Replica {
                master_host: "127.0.0.1".into(),
                master_port: 9000,
                state: "connected".into(),
                offset: 3167038
            }
        );
        assert_eq!(role.describe(), "replica of 127.0.0.1:9000 (connected)");
        let sentinel = parse(b"*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n");
        assert_eq!(parse_role(&sentinel).unwrap(), NodeRole::Other("sentinel".into()));
        assert!(parse_role(&parse(b"-NOPERM no\r\n")).unwrap_err().contains("NOPERM"));
        assert!(parse_role(&parse(b":1\r\n")).is_err());
    }
}
