//! Opening one connection to a node: TCP, TLS, then AUTH and a PING that proves the node accepts us.
use crate::cluster::NodeAddr;
use crate::config::{tls::server_name_for, Secret, UpstreamTls};
use crate::metrics::Metrics;
use bytes::{Bytes, BytesMut};
use resp::encode::Protocol;
use resp::{Limits, ReplyKind, ReplyScanner};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// What every upstream connection needs to open and authenticate itself.
pub struct ConnectContext {
    /// TLS and credentials. A config reload replaces them whole (a rotated password, a renewed CA); each new
    /// connection reads them once, connections already open stay as they are.
    pub auth: arc_swap::ArcSwap<UpstreamAuth>,
    pub metrics: Arc<Metrics>,
    /// Hostname → address to dial instead (`[nat.resolve]`); TLS still verifies the node's own name.
    pub resolve: std::collections::HashMap<String, String>,
    /// Health checks of the shared connections; None turns them off.
    pub health: Option<HealthCheck>,
    /// Told when a shared connection fails on its own (no reply in time, closed by the node), so the topology can be
    /// refreshed even when no request was waiting on it. Set once, after discovery.
    pub on_trouble: std::sync::OnceLock<TroubleHook>,
    /// The nodes are Redis Cluster nodes: connections for replica reads send `READONLY` (a cluster replica
    /// redirects reads without it; a standalone replica serves reads anyway and refuses the command). True unless
    /// the backend is a single replication group.
    pub cluster: bool,
}

/// How a connection to the nodes is secured and authenticated.
pub struct UpstreamAuth {
    pub tls: Option<(Arc<rustls::ClientConfig>, UpstreamTls)>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// TCP connect + TLS handshake + AUTH must finish within this.
    pub connect_timeout: Duration,
}

impl ConnectContext {
    /// A context with these settings; `on_trouble` is set later, once the topology exists.
    pub fn new(
        auth: UpstreamAuth,
        metrics: Arc<Metrics>,
        resolve: std::collections::HashMap<String, String>,
        health: Option<HealthCheck>,
    ) -> ConnectContext {
        ConnectContext {
            auth: arc_swap::ArcSwap::from_pointee(auth),
            metrics,
            resolve,
            health,
            on_trouble: Default::default(),
            cluster: true,
        }
    }
}

/// What a shared connection calls when it fails on its own.
pub type TroubleHook = Arc<dyn Fn(&NodeAddr, NodeTrouble) + Send + Sync>;

/// How shared connections check that their node still answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// A connection that has written nothing for this long sends a PING, so a dead peer is noticed while idle.
    pub interval: Duration,
    /// A connection with a request outstanding (a client's or that PING) that receives nothing for this long is
    /// considered broken: it is closed and its requests fail as lost.
    pub timeout: Duration,
}

/// Why a shared connection failed without anyone asking it to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeTrouble {
    /// Requests were outstanding and nothing came back within the health check timeout.
    NoReply,
    /// The node closed the connection, or reading or writing failed.
    Closed,
}

/// Why a connection could not be opened. The text is shown to operators (startup errors, logs) and is written
/// to say exactly what failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect: {0}")]
    Tcp(String),
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("unexpected reply during connection set-up: {0}")]
    Protocol(String),
}

impl ConnectError {
    /// Errors that retrying won't fix (wrong password, certificate rejected): startup fails on them at once.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ConnectError::Tls(_) | ConnectError::Auth(_))
    }
}

/// Opens, secures and authenticates a connection to `addr` speaking `protocol` (RESP3 connections say `HELLO 3`),
/// within the context's connect timeout. `readonly`: a connection for replica reads (`READONLY` on cluster nodes).
/// `db`: the database the connection works in (`SELECT db` unless 0; only a single replication group has others).
pub async fn connect(
    addr: &NodeAddr,
    ctx: &ConnectContext,
    protocol: Protocol,
    readonly: bool,
    db: u16,
) -> Result<(BoxRead, BoxWrite), ConnectError> {
    let auth = ctx.auth.load_full();
    match tokio::time::timeout(auth.connect_timeout, connect_inner(addr, ctx, &auth, protocol, readonly, db)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout(auth.connect_timeout)),
    }
}

async fn connect_inner(
    addr: &NodeAddr,
    ctx: &ConnectContext,
    auth: &UpstreamAuth,
    protocol: Protocol,
    readonly: bool,
    db: u16,
) -> Result<(BoxRead, BoxWrite), ConnectError> {
    let dial = ctx.resolve.get(&*addr.host).map_or(&*addr.host, String::as_str);
    let tcp = TcpStream::connect((dial, addr.port)).await.map_err(|e| ConnectError::Tcp(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr): (BoxRead, BoxWrite) = match &auth.tls {
        None => {
            let (r, w) = tcp.into_split();
            (Box::new(r), Box::new(w))
        }
        Some((config, settings)) => {
            let name = server_name_for(&addr.host, settings).map_err(ConnectError::Tls)?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls(tls_error_text(&e)))?;
            let (r, w) = tokio::io::split(stream);
            (Box::new(r), Box::new(w))
        }
    };
    let mut buf = BytesMut::with_capacity(1024);
    if protocol == Protocol::Resp3 {
        // HELLO 3 switches the protocol and, with AUTH, authenticates in the same round trip.
        let mut cmd = BytesMut::new();
        match &auth.password {
            Some(password) => {
                let user = auth.user.as_deref().unwrap_or("default");
                resp::encode::command(
                    &mut cmd,
                    &[b"HELLO".as_slice(), b"3", b"AUTH", user.as_bytes(), password.expose().as_bytes()],
                )
            }
            None => resp::encode::command(&mut cmd, &[b"HELLO".as_slice(), b"3"]),
        }
        let reply = roundtrip(&mut rd, &mut wr, &cmd, &mut buf).await?;
        if reply.starts_with(b"-WRONGPASS") || reply.starts_with(b"-NOAUTH") {
            return Err(ConnectError::Auth(error_text(&reply)));
        }
        if reply.first() == Some(&b'-') {
            return Err(ConnectError::Protocol(format!("HELLO 3 refused: {}", error_text(&reply))));
        }
    } else if let Some(password) = &auth.password {
        let mut cmd = BytesMut::new();
        match &auth.user {
            Some(user) => {
                resp::encode::command(&mut cmd, &[b"AUTH".as_slice(), user.as_bytes(), password.expose().as_bytes()])
            }
            None => resp::encode::command(&mut cmd, &[b"AUTH".as_slice(), password.expose().as_bytes()]),
        }
        let reply = roundtrip(&mut rd, &mut wr, &cmd, &mut buf).await?;
        if reply.first() == Some(&b'-') {
            return Err(ConnectError::Auth(error_text(&reply)));
        }
    }
    if readonly && ctx.cluster {
        // Replica reads: without READONLY a cluster replica redirects every read to its primary.
        let mut cmd = BytesMut::new();
        resp::encode::command(&mut cmd, &[b"READONLY"]);
        let reply = roundtrip(&mut rd, &mut wr, &cmd, &mut buf).await?;
        if reply.first() == Some(&b'-') {
            return Err(ConnectError::Protocol(format!("READONLY refused: {}", error_text(&reply))));
        }
    }
    if db != 0 {
        let mut cmd = BytesMut::new();
        resp::encode::command(&mut cmd, &[b"SELECT".as_slice(), db.to_string().as_bytes()]);
        let reply = roundtrip(&mut rd, &mut wr, &cmd, &mut buf).await?;
        if reply.first() == Some(&b'-') {
            return Err(ConnectError::Protocol(format!("SELECT {db} refused: {}", error_text(&reply))));
        }
    }
    let mut ping = BytesMut::new();
    resp::encode::command(&mut ping, &[b"PING"]);
    let reply = roundtrip(&mut rd, &mut wr, &ping, &mut buf).await?;
    if reply.starts_with(b"-NOAUTH") {
        return Err(ConnectError::Auth(format!(
            "the node requires a password ({}); set {}",
            error_text(&reply),
            crate::config::UPSTREAM_PASSWORD_ENV
        )));
    }
    if reply.first() == Some(&b'-') {
        return Err(ConnectError::Protocol(error_text(&reply)));
    }
    if !buf.is_empty() {
        return Err(ConnectError::Protocol("the node sent more than it was asked for".to_string()));
    }
    Ok((rd, wr))
}

/// Writes one command and reads exactly one reply (used only during set-up, before pipelining starts).
async fn roundtrip(rd: &mut BoxRead, wr: &mut BoxWrite, cmd: &[u8], buf: &mut BytesMut) -> Result<Bytes, ConnectError> {
    // With TLS 1.3 a server that rejects us (e.g. no client certificate) says so in an alert that arrives after
    // the handshake, on the first read: report that as the TLS failure it is.
    let io = |e: std::io::Error| match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(_) => ConnectError::Tls(tls_error_text(&e)),
        None => ConnectError::Tcp(e.to_string()),
    };
    wr.write_all(cmd).await.map_err(io)?;
    wr.flush().await.map_err(io)?;
    let mut scanner = ReplyScanner::new(Limits::default());
    loop {
        match scanner.scan(buf) {
            Ok(Some(r)) if r.kind == ReplyKind::Push => {
                let _ = buf.split_to(r.len);
            }
            Ok(Some(r)) => return Ok(buf.split_to(r.len).freeze()),
            Ok(None) => {}
            Err(e) => return Err(ConnectError::Protocol(e.to_string())),
        }
        if rd.read_buf(buf).await.map_err(io)? == 0 {
            return Err(ConnectError::Tcp("connection closed by the node".to_string()));
        }
    }
}

/// The text of an error reply without its `-` and CRLF.
pub fn error_text(reply: &[u8]) -> String {
    let body = reply.strip_prefix(b"-").unwrap_or(reply);
    let body = body.strip_suffix(b"\r\n").unwrap_or(body);
    String::from_utf8_lossy(body).into_owned()
}

fn tls_error_text(e: &std::io::Error) -> String {
    // rustls errors arrive wrapped in io::Error; the inner rustls::Error says what was wrong with the certificate.
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(reason)) => format!("the node's certificate was rejected: {reason:?}"),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}
