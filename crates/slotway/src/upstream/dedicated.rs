//! Dedicated connections: a connection to one node that a single session owns while it needs one (a transaction,
//! a blocking command, a subscribed pub/sub client — see [`super::subscriber`]), so state kept on the connection by the node (MULTI,
//! watched keys, a blocked client) never touches other clients and a blocked command never stalls the shared,
//! pipelined connections.
//!
//! Each node has, per worker thread and upstream identity, a bounded lot of them
//! (`upstream.max_dedicated_per_node`): taking one reuses an idle connection or opens a new one (same TCP/TLS/AUTH
//! handshake as every upstream connection, as that identity), and fails at once when the lot is full. A [`Dedicated`] that is dropped closes its connection — the node forgets whatever
//! state the session left on it (a half-open MULTI, a blocked BLPOP). Only a session that knows the connection is
//! clean (no reply outstanding, no MULTI, no watched keys) calls [`Dedicated::release`] to keep it for reuse; an
//! idle connection closes itself after a minute unused.
//!
//! A connection is one task that writes requests and reads replies, matched FIFO as on the shared connections;
//! replies go to each request's [`ReplyTo`], i.e. into the session's ordered reply queue. It never reconnects:
//! once it fails, every outstanding request gets `Lost` and every later one `NotSent`, so a transaction can't
//! silently continue on a fresh connection that knows nothing of its MULTI.
use super::connect::{connect, BoxRead, BoxWrite, ConnectContext};
use super::{Identity, NodePool, ReplyTo, Request, UpstreamError};
use crate::cluster::NodeAddr;
use crate::metrics::Metrics;
use bytes::BytesMut;
use resp::encode::Protocol;
use resp::{Limits, ReplyKind, ReplyScanner};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// An idle connection closes itself after this long unused.
const IDLE_MAX: Duration = Duration::from_secs(60);

/// A connection's state, shared by its owner (or its lot) and its task, so that an idle connection closing
/// itself and a session taking it can't both win.
const IN_USE: u8 = 0;
const IDLE: u8 = 1;
const CLOSED: u8 = 2;
/// Frames at least this large are written on their own instead of being copied into the batch.
pub(super) const DIRECT_WRITE_MIN: usize = 64 * 1024;
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Why no dedicated connection could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DedicatedError {
    #[error(
        "no free dedicated connection to {addr}: all {limit} allowed per worker are in use \
         (upstream.max_dedicated_per_node); try again later"
    )]
    Exhausted { addr: NodeAddr, limit: usize },
    #[error("no connection settings for this client's upstream user at {addr}")]
    UnknownIdentity { addr: NodeAddr },
}

/// The dedicated connections of one node on one worker thread for one upstream identity.
#[derive(Debug, Default)]
pub(super) struct Lot {
    /// Open connections, in use or idle.
    open: usize,
    idle: Vec<Idle>,
}

#[derive(Debug)]
struct Idle {
    tx: mpsc::UnboundedSender<Request>,
    state: Arc<AtomicU8>,
    node_client_id: Arc<AtomicU64>,
    sent: Arc<AtomicBool>,
    /// What the connection speaks: it is only reused for a session speaking the same.
    protocol: Protocol,
    /// The database it has selected: it is only reused for a session working in the same.
    db: u16,
}

/// A connection to one node owned by one session. Dropping it closes the connection.
#[derive(Debug)]
pub struct Dedicated {
    /// None only after `release` moved the connection back to the lot.
    tx: Option<mpsc::UnboundedSender<Request>>,
    state: Arc<AtomicU8>,
    /// The node's CLIENT ID for this connection (0 until known, or when the node didn't say): CLIENT UNBLOCK of
    /// a client blocked on it names it to the node.
    node_client_id: Arc<AtomicU64>,
    /// Requests are written and their replies not all in (a blocking command is at the node): INFO's
    /// `blocked_clients` counts a client once its command has reached the node, as the node would.
    sent: Arc<AtomicBool>,
    pool: Arc<NodePool>,
    /// Its lot in the pool: identity index and worker.
    lot: (usize, usize),
    protocol: Protocol,
    db: u16,
    /// False for a subscriber connection: `release` closes it instead of keeping it.
    reusable: bool,
}

impl NodePool {
    /// A dedicated connection to this node, authenticated as `identity`, in database `db` and speaking `protocol`,
    /// for a session on `worker`: an idle one if there is one, else a new one (connected in the background; requests sent meanwhile
    /// wait for it), unless the worker's limit for this node and identity is reached. Must be called on `worker`'s
    /// runtime: a new connection's task is spawned there.
    ///
    /// The connection speaks the client's protocol (RESP3 after `HELLO 3`) so that its replies — EXEC's array of
    /// maps, BLMPOP's nested arrays, a null — reach the client in the form the client asked for, byte for byte.
    pub fn take_dedicated(
        self: &Arc<Self>,
        identity: Identity,
        db: u16,
        worker: usize,
        protocol: Protocol,
    ) -> Result<Dedicated, DedicatedError> {
        let (ctx, lot_index) = self.lot_of(identity, worker)?;
        let mut lot = self.lot(lot_index).lock().expect("dedicated lot poisoned");
        reap(&mut lot, &ctx.metrics);
        while let Some(i) = lot.idle.iter().rposition(|c| c.protocol == protocol && c.db == db) {
            let idle = lot.idle.swap_remove(i);
            if idle.state.compare_exchange(IDLE, IN_USE, Ordering::AcqRel, Ordering::Acquire).is_ok()
                && !idle.tx.is_closed()
            {
                return Ok(Dedicated {
                    tx: Some(idle.tx),
                    state: idle.state,
                    node_client_id: idle.node_client_id,
                    sent: idle.sent,
                    pool: self.clone(),
                    lot: lot_index,
                    protocol,
                    db,
                    reusable: true,
                });
            }
            // It closed itself (unused too long) or the node closed it.
            lot.open -= 1;
            ctx.metrics.dedicated_open.fetch_sub(1, Ordering::Relaxed);
        }
        self.reserve(&mut lot, &ctx.metrics)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(AtomicU8::new(IN_USE));
        let node_client_id = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicBool::new(false));
        let shared = (node_client_id.clone(), sent.clone());
        tokio::spawn(run(self.addr.clone(), ctx.clone(), protocol, db, rx, state.clone(), shared));
        Ok(Dedicated {
            tx: Some(tx),
            state,
            node_client_id,
            sent,
            pool: self.clone(),
            lot: lot_index,
            protocol,
            db,
            reusable: true,
        })
    }

    /// The connect context of `identity` and the index of its lot on `worker`. Never another identity's: that
    /// would run the client's commands as another cluster user.
    fn lot_of(
        &self,
        identity: Identity,
        worker: usize,
    ) -> Result<(&Arc<ConnectContext>, (usize, usize)), DedicatedError> {
        let Some(ctx) = self.ctxs.get(identity.index()) else {
            return Err(DedicatedError::UnknownIdentity { addr: self.addr.clone() });
        };
        Ok((ctx, (identity.index(), worker % self.workers.len())))
    }

    /// The lot of (identity index, worker), created on first use.
    fn lot(&self, (identity, worker): (usize, usize)) -> &Mutex<Lot> {
        let workers = self.workers.len();
        let lots = self
            .lots
            .get_or_init(identity, || (0..workers).map(|_| Mutex::default()).collect())
            .expect("identity indexes fit the table");
        &lots[worker]
    }

    /// A new pub/sub connection to this node speaking `protocol`, counted in `worker`'s lot like any dedicated
    /// connection: every frame the node sends goes to `sink` (see [`super::subscriber`]). Never reused: once its
    /// owner drops it, it closes. Must be called on `worker`'s runtime.
    pub fn take_subscriber(
        self: &Arc<Self>,
        identity: Identity,
        worker: usize,
        protocol: Protocol,
        sink: super::subscriber::Sink,
    ) -> Result<Dedicated, DedicatedError> {
        let (ctx, lot_index) = self.lot_of(identity, worker)?;
        let mut lot = self.lot(lot_index).lock().expect("dedicated lot poisoned");
        reap(&mut lot, &ctx.metrics);
        self.reserve(&mut lot, &ctx.metrics)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(AtomicU8::new(IN_USE));
        tokio::spawn(super::subscriber::run(self.addr.clone(), ctx.clone(), protocol, rx, sink));
        Ok(Dedicated {
            tx: Some(tx),
            state,
            node_client_id: Arc::new(AtomicU64::new(0)),
            sent: Arc::new(AtomicBool::new(false)),
            pool: self.clone(),
            lot: lot_index,
            protocol,
            db: 0,
            reusable: false,
        })
    }

    /// Counts one more open connection in `lot`, or fails when the lot is full.
    fn reserve(&self, lot: &mut Lot, metrics: &Metrics) -> Result<(), DedicatedError> {
        if lot.open >= self.max_dedicated && !lot.idle.is_empty() {
            // Full, but with an idle connection of the other protocol: close it to make room (dropping its sender
            // ends its task).
            lot.idle.remove(0);
            lot.open -= 1;
            metrics.dedicated_open.fetch_sub(1, Ordering::Relaxed);
        }
        if lot.open >= self.max_dedicated {
            Metrics::incr(&metrics.dedicated_exhausted);
            return Err(DedicatedError::Exhausted { addr: self.addr.clone(), limit: self.max_dedicated });
        }
        lot.open += 1;
        metrics.dedicated_open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Open dedicated connections (in use or idle) to this node on `worker`, for every identity.
    pub fn dedicated_open(&self, worker: usize) -> usize {
        let workers = self.workers.len();
        (0..self.ctxs.len())
            .filter_map(|identity| self.lots.get(identity))
            .map(|lots| lots[worker % workers].lock().expect("dedicated lot poisoned").open)
            .sum()
    }
}

/// Forgets idle connections that closed (unused too long, or closed by the node).
fn reap(lot: &mut Lot, metrics: &Metrics) {
    let before = lot.idle.len();
    lot.idle.retain(|c| !c.tx.is_closed() && c.state.load(Ordering::Acquire) != CLOSED);
    let closed = before - lot.idle.len();
    lot.open -= closed;
    metrics.dedicated_open.fetch_sub(closed as u64, Ordering::Relaxed);
}

impl Dedicated {
    pub fn pool(&self) -> &Arc<NodePool> {
        &self.pool
    }

    pub fn addr(&self) -> &NodeAddr {
        &self.pool.addr
    }

    /// The protocol the connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Where the node's CLIENT ID for this connection is kept (0 while unknown).
    pub fn node_client_id(&self) -> Arc<AtomicU64> {
        self.node_client_id.clone()
    }

    /// True while requests are written to the node and not all answered.
    pub fn sent(&self) -> Arc<AtomicBool> {
        self.sent.clone()
    }

    /// Queues a request. If the connection has failed, the request gets `NotSent` at once.
    pub fn send(&self, req: Request) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::SendError(req)) = tx.send(req) {
            req.reply_to.deliver(Err(UpstreamError::NotSent {
                addr: self.pool.addr.clone(),
                reason: Arc::from("dedicated connection closed"),
            }));
        }
    }

    /// Whether the connection may still work (it has not failed).
    pub fn is_open(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Keeps the connection for reuse. Only for a clean connection: every reply received, and no state left on
    /// it (no MULTI, no watched keys, not blocked). A failed connection is closed instead.
    pub fn release(mut self) {
        if !self.reusable {
            return; // dropped: closed
        }
        let Some(tx) = self.tx.take() else { return };
        let metrics = &self.pool.ctxs.get(0).expect("default context").metrics;
        let mut lot = self.pool.lot(self.lot).lock().expect("dedicated lot poisoned");
        if tx.is_closed() {
            lot.open -= 1;
            metrics.dedicated_open.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.state.store(IDLE, Ordering::Release);
            lot.idle.push(Idle {
                tx,
                state: self.state.clone(),
                node_client_id: self.node_client_id.clone(),
                sent: self.sent.clone(),
                protocol: self.protocol,
                db: self.db,
            });
        }
        reap(&mut lot, metrics);
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            // Dropping the sender ends the connection's task, which closes the socket.
            if let Ok(mut lot) = self.pool.lot(self.lot).lock() {
                lot.open -= 1;
            }
            self.pool.ctxs.get(0).expect("default context").metrics.dedicated_open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn not_sent(addr: &NodeAddr, reason: &str) -> UpstreamError {
    UpstreamError::NotSent { addr: addr.clone(), reason: Arc::from(reason) }
}

/// The connection's task: connect, then write requests and read replies until the owner drops its handle (the
/// socket is closed at once, even with replies outstanding) or the connection fails.
async fn run(
    addr: NodeAddr,
    ctx: Arc<ConnectContext>,
    protocol: Protocol,
    db: u16,
    mut rx: mpsc::UnboundedReceiver<Request>,
    state: Arc<AtomicU8>,
    (node_client_id, sent): (Arc<AtomicU64>, Arc<AtomicBool>),
) {
    // Never READONLY: transactions and blocking commands go to primaries.
    let (mut rd, mut wr) = match connect(&addr, &ctx, protocol, false, db).await {
        Ok(c) => c,
        Err(e) => {
            Metrics::incr(&ctx.metrics.upstream_connect_failures);
            tracing::warn!(node = %addr, error = %e, "dedicated upstream connection failed");
            rx.close();
            let reason = e.to_string();
            while let Ok(req) = rx.try_recv() {
                req.reply_to.deliver(Err(not_sent(&addr, &reason)));
            }
            return;
        }
    };
    // The node's id for this connection, for CLIENT UNBLOCK (requests queue meanwhile).
    match super::connect::client_id(&mut rd, &mut wr).await {
        Ok(id) => node_client_id.store(id.unwrap_or(0), Ordering::Relaxed),
        Err(e) => {
            tracing::debug!(node = %addr, error = %e, "dedicated upstream connection failed");
            rx.close();
            while let Ok(req) = rx.try_recv() {
                req.reply_to.deliver(Err(not_sent(&addr, &e.to_string())));
            }
            return;
        }
    }
    Metrics::incr(&ctx.metrics.dedicated_connects);
    tracing::debug!(node = %addr, "dedicated upstream connected");
    let mut queue: VecDeque<ReplyTo> = VecDeque::new();
    let reason = serve(rd, wr, &mut rx, &mut queue, &state, &sent).await;
    let Some(reason) = reason else { return };
    tracing::debug!(node = %addr, reason = %reason, outstanding = queue.len(), "dedicated upstream connection failed");
    rx.close();
    let reason: Arc<str> = Arc::from(reason);
    for target in queue {
        target.deliver(Err(UpstreamError::Lost { addr: addr.clone(), reason: reason.clone() }));
    }
    while let Ok(req) = rx.try_recv() {
        req.reply_to.deliver(Err(UpstreamError::NotSent { addr: addr.clone(), reason: reason.clone() }));
    }
}

/// Serves the connection. Returns None when the owner is gone (close quietly), or why the connection failed.
async fn serve(
    mut rd: BoxRead,
    mut wr: BoxWrite,
    rx: &mut mpsc::UnboundedReceiver<Request>,
    queue: &mut VecDeque<ReplyTo>,
    state: &AtomicU8,
    sent: &AtomicBool,
) -> Option<String> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::new();
    let mut scanner = ReplyScanner::new(Limits::node_replies());
    let idle_timer = tokio::time::sleep(IDLE_MAX);
    tokio::pin!(idle_timer);
    loop {
        super::make_room(&mut buf, READ_CHUNK);
        tokio::select! {
            () = &mut idle_timer => {
                // Unused for IDLE_MAX: close, unless a session holds it (e.g. a client blocked for long).
                if state.compare_exchange(IDLE, CLOSED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return None;
                }
                idle_timer.as_mut().reset(tokio::time::Instant::now() + IDLE_MAX);
            }
            req = rx.recv() => {
                // The owner dropped its handle: it is gone (e.g. the client disconnected while blocked), so
                // nothing still queued may run.
                let req = req?;
                if rx.sender_strong_count() == 0 {
                    return None;
                }
                idle_timer.as_mut().reset(tokio::time::Instant::now() + IDLE_MAX);
                let mut next = Some(req);
                while let Some(req) = next.take().or_else(|| rx.try_recv().ok()) {
                    if req.asking {
                        resp::encode::command(&mut out, &[b"ASKING"]);
                        queue.push_back(ReplyTo::Discard);
                    }
                    if req.frame.len() >= DIRECT_WRITE_MIN {
                        if let Err(e) = write(&mut wr, &out).await {
                            return Some(e);
                        }
                        out.clear();
                        if let Err(e) = write(&mut wr, &req.frame).await {
                            return Some(e);
                        }
                    } else {
                        out.extend_from_slice(&req.frame);
                    }
                    queue.push_back(req.reply_to);
                }
                if let Err(e) = write(&mut wr, &out).await {
                    return Some(e);
                }
                if let Err(e) = wr.flush().await {
                    return Some(format!("write failed: {e}"));
                }
                out.clear();
                sent.store(true, Ordering::Release);
            }
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) => return Some("connection closed by the node".to_string()),
                    Ok(_) => {}
                    Err(e) => return Some(format!("read failed: {e}")),
                }
                loop {
                    match scanner.scan(&buf) {
                        Ok(Some(reply)) => {
                            let frame = buf.split_to(reply.len).freeze();
                            if reply.kind == ReplyKind::Push {
                                // Out-of-band data answers no request here (pub/sub connections are `subscriber`'s).
                                continue;
                            }
                            idle_timer.as_mut().reset(tokio::time::Instant::now() + IDLE_MAX);
                            match queue.pop_front() {
                                Some(target) => {
                                    if queue.is_empty() {
                                        sent.store(false, Ordering::Release);
                                    }
                                    target.deliver(Ok(frame))
                                }
                                None => return Some("the node sent a reply nobody asked for".to_string()),
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Some(format!("protocol error from the node: {e}")),
                    }
                }
            }
        }
    }
}

pub(super) async fn write(wr: &mut BoxWrite, bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    wr.write_all(bytes).await.map_err(|e| format!("write failed: {e}"))
}
