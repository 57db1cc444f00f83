//! Connections to the cluster's nodes. This layer knows addresses, never slots.
//!
//! Each node has a [`NodePool`] of a few long-lived pipelined connections shared by every client. A connection is
//! a handle (a write queue sessions encode [`Request`]s into) plus one driver task that connects lazily, writes requests in
//! batches (many requests, one write) and one reader task that matches replies to requests in FIFO order.
//!
//! Connections authenticate as an upstream [`Identity`]: the `[upstream]` credentials ([`Identity::DEFAULT`]), or a
//! cluster ACL user that one of slotway's own users maps to. A mapped identity gets its own shared connections (per
//! node and worker, opened on its first request there) and its own dedicated-connection lots, so requests never
//! run on the nodes as another application's user.

mod conn;
pub mod connect;
pub mod dedicated;
pub mod subscriber;
mod table;

use crate::cluster::NodeAddr;
use crate::metrics::Metrics;
use bytes::Bytes;
use resp::encode::Protocol;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use table::GrowTable;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub use connect::{ConnectContext, ConnectError, HealthCheck, NodeTrouble, TroubleHook, UpstreamAuth};
pub use dedicated::{Dedicated, DedicatedError};

/// Before a read from a node: room for at least a quarter of `chunk`. A buffer that grew for a large reply, once
/// that reply is handed on, is replaced by a small one holding what is left: otherwise the rest of the large
/// allocation would stay pinned (and resident) after the reply itself was written and dropped.
pub(crate) fn make_room(buf: &mut bytes::BytesMut, chunk: usize) {
    if buf.capacity() > 4 * chunk && buf.len() < chunk {
        let mut fresh = bytes::BytesMut::with_capacity(chunk);
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
}

/// A node's answer to one request, or why there is none.
pub type UpstreamResult = Result<Bytes, UpstreamError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The request was never written: the connection could not be made or had already failed.
    /// Nothing ran on the node, so it is always safe to retry.
    #[error("{addr}: {reason}")]
    NotSent { addr: NodeAddr, reason: Arc<str> },
    /// The request was written and then the connection failed before its reply came: it may or may not have run.
    #[error("connection to {addr} lost: {reason}")]
    Lost { addr: NodeAddr, reason: Arc<str> },
}

/// One reply delivered to a downstream session: `seq` and `part` are the session's own bookkeeping.
#[derive(Debug)]
pub struct Delivery {
    pub seq: u64,
    pub part: u32,
    pub result: UpstreamResult,
}

/// A session's mailbox for node replies. The node connections' readers run on the session's own worker thread and
/// push each reply straight into it (a lock nobody else holds, and a wake-up only when the session waits); the
/// session takes everything queued at once. Nothing is allocated until the first reply, and the session gives the
/// queue's memory back when it goes idle ([`Inbox::release`]).
///
/// The rest of slotway reaches a session here too ([`Signal`]): CLIENT KILL and shutdown set a flag and wake it,
/// so a session waits on one thing (not a channel per signal, each part of every client's task).
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Debug, Default)]
struct InboxState {
    queue: Vec<Delivery>,
    waker: Option<std::task::Waker>,
    /// The session ended: deliveries are dropped at once (their requests' frames freed) instead of waiting for the
    /// last in-flight request to let go of the inbox.
    closed: bool,
    /// Signals not yet taken by the session ([`Inbox::take_signals`]).
    signals: Signals,
}

/// What the rest of slotway tells a session, besides replies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// CLIENT KILL: close at once, without writing what is pending.
    pub kill: bool,
    /// Shutdown: read nothing more, finish what is pending, close.
    pub stop: bool,
}

impl Signals {
    fn any(self) -> bool {
        self.kill || self.stop
    }
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the inbox of a live session and wakes it (nothing happens once the session is gone).
    fn update(&self, change: impl FnOnce(&mut InboxState)) {
        let waker = {
            let mut s = self.lock();
            if s.closed {
                return;
            }
            change(&mut s);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn push(&self, d: Delivery) {
        self.update(|s| s.queue.push(d));
    }

    /// Ready while something is queued or signalled; otherwise Pending, remembering the waker.
    fn poll_state(s: &mut InboxState, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if !s.queue.is_empty() || s.signals.any() {
            return std::task::Poll::Ready(());
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        std::task::Poll::Pending
    }

    /// Moves every queued delivery into `into` (empty on entry: the two vectors trade places, so their capacity is
    /// reused); Pending, remembering the waker, while nothing is queued.
    /// Also Ready, with nothing moved, while a signal waits.
    pub fn poll_take(&self, cx: &mut std::task::Context<'_>, into: &mut Vec<Delivery>) -> std::task::Poll<()> {
        let mut s = self.lock();
        let ready = Self::poll_state(&mut s, cx);
        if ready.is_ready() && !s.queue.is_empty() {
            std::mem::swap(&mut s.queue, into);
        }
        ready
    }

    /// Ready once something is queued or signalled (left there for [`Inbox::poll_take`]); Pending, remembering the
    /// waker, while nothing is.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        Self::poll_state(&mut self.lock(), cx)
    }

    /// Like [`Inbox::poll_take`] without waiting: whether anything was taken.
    pub fn try_take(&self, into: &mut Vec<Delivery>) -> bool {
        let mut s = self.lock();
        if s.queue.is_empty() {
            return false;
        }
        std::mem::swap(&mut s.queue, into);
        true
    }

    /// Frees the queue's memory if nothing is queued (an idle session keeps nothing).
    pub fn release(&self) {
        let mut s = self.lock();
        if s.queue.is_empty() && s.queue.capacity() > 0 {
            s.queue = Vec::new();
        }
    }

    /// CLIENT KILL: the session closes at once (it takes the signal with [`Inbox::take_signals`]).
    pub fn kill(&self) {
        self.update(|s| s.signals.kill = true);
    }

    /// Shutdown: the session reads nothing more, finishes what is pending and closes.
    pub fn stop(&self) {
        self.update(|s| s.signals.stop = true);
    }

    /// The signals set since the last call (cleared: each is acted on once).
    pub fn take_signals(&self) -> Signals {
        std::mem::take(&mut self.lock().signals)
    }

    /// The session is gone: drop what is queued and whatever comes later.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.queue = Vec::new();
        s.waker = None;
    }
}

/// Where a node's reply goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// A client session's inbox.
    Session { inbox: Arc<Inbox>, seq: u64, part: u32 },
    /// An internal request (topology refresh, COMMAND).
    Oneshot(oneshot::Sender<UpstreamResult>),
    /// A reply nobody wants (the `+OK` of an `ASKING` sent ahead of a redirected command).
    Discard,
}

impl ReplyTo {
    pub(crate) fn deliver(self, result: UpstreamResult) {
        match self {
            ReplyTo::Session { inbox, seq, part } => inbox.push(Delivery { seq, part, result }),
            ReplyTo::Oneshot(tx) => {
                let _ = tx.send(result);
            }
            ReplyTo::Discard => {}
        }
    }
}

/// Whom a node connection authenticates as: an index into the registry's connect contexts (0 = the `[upstream]`
/// credentials; 1.. = the distinct cluster ACL users slotway's own users map to).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Identity(u16);

impl Identity {
    /// The `[upstream]` user and password.
    pub const DEFAULT: Identity = Identity(0);

    pub fn new(index: u16) -> Identity {
        Identity(index)
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A request for one node: a complete RESP frame, forwarded as is.
#[derive(Debug)]
pub struct Request {
    pub frame: Bytes,
    /// Send `ASKING` right before this frame on the same connection (the ASK redirection protocol).
    pub asking: bool,
    pub reply_to: ReplyTo,
}

/// The connections to one node: `per_worker` shared ones on each worker thread, so a session only ever uses
/// connections driven by its own thread (no cross-thread wake-ups on the data path), and each worker's lot of
/// [`Dedicated`] connections; both per upstream [`Identity`], and the shared ones per database.
pub struct NodePool {
    pub addr: NodeAddr,
    per_worker: usize,
    readonly: bool,
    /// The default identity's connections in database 0: `conns[(worker * 2 + protocol) * per_worker + i]`, RESP2
    /// and RESP3 per worker. They connect on first use, so a protocol no client speaks costs an idle task and
    /// nothing more.
    conns: Box<[conn::ConnHandle]>,
    /// Every other (identity, database)'s connections, `lanes[identity * databases + db - 1][worker]`, each
    /// `[protocol * per_worker + i]`; created on the first request of that identity and database on that worker
    /// (most pools never see most of them).
    lanes: GrowTable<PerWorker<Box<[conn::ConnHandle]>>>,
    /// Databases a client may select (1 for a cluster, which has only database 0).
    databases: u16,
    /// Connect contexts by identity (`[0]` = default); shared with the registry, which adds identities.
    ctxs: Arc<Contexts>,
    workers: Arc<[Handle]>,
    /// Dedicated connections allowed per worker and identity.
    max_dedicated: usize,
    /// `lots[identity][worker]`, created on the identity's first dedicated connection to this node.
    lots: GrowTable<Box<[Mutex<dedicated::Lot>]>>,
    /// Round trips of requests on the shared connections, one histogram per worker (written by that worker's
    /// sessions only; summed when `/metrics` is scraped).
    pub round_trip: Box<[crate::observe::histogram::Histogram]>,
}

/// One lazily created value per worker thread.
type PerWorker<T> = Box<[OnceLock<T>]>;

/// The connect contexts by [`Identity`], shared by the registry and every pool. Identities are only added (a
/// reload or provisioning maps users to new cluster users); an identity's credentials change inside its context.
#[derive(Default)]
pub(crate) struct Contexts {
    table: GrowTable<Arc<ConnectContext>>,
    len: AtomicUsize,
    /// Serializes additions.
    add: Mutex<()>,
}

impl Contexts {
    pub(crate) fn get(&self, index: usize) -> Option<&Arc<ConnectContext>> {
        self.table.get(index)
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Adds a context and returns its index, or None when the table is full (65535 identities).
    fn push(&self, ctx: Arc<ConnectContext>) -> Option<usize> {
        let _adding = self.add.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.len.load(Ordering::Acquire);
        let mut ctx = Some(ctx);
        self.table.get_or_init(index, || ctx.take().expect("set once"))?;
        self.len.store(index + 1, Ordering::Release);
        Some(index)
    }
}

impl std::fmt::Debug for NodePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodePool").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Connection counts of an [`Upstreams`] registry.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Shared pipelined connections per node on each worker.
    pub per_node: usize,
    /// Dedicated connections per node on each worker.
    pub max_dedicated: usize,
    /// Databases clients may `SELECT` (each gets its own shared connections, created on first use): the nodes'
    /// `databases` for a single replication group, 1 for a cluster.
    pub databases: u16,
}

impl NodePool {
    fn new(
        addr: NodeAddr,
        ctxs: &Arc<Contexts>,
        workers: &Arc<[Handle]>,
        limits: PoolLimits,
        readonly: bool,
    ) -> NodePool {
        let per_worker = limits.per_node.max(1);
        let ctx = ctxs.get(0).expect("the default identity's context");
        let conns = workers
            .iter()
            .flat_map(|w| [Protocol::Resp2, Protocol::Resp3].map(|p| (w, p)))
            .flat_map(|wp| (0..per_worker).map(move |_| wp))
            .map(|(w, p)| conn::ConnHandle::spawn(w, addr.clone(), ctx.clone(), p, readonly, 0))
            .collect();
        NodePool {
            addr,
            per_worker,
            readonly,
            conns,
            lanes: GrowTable::default(),
            databases: limits.databases.max(1),
            ctxs: ctxs.clone(),
            workers: workers.clone(),
            max_dedicated: limits.max_dedicated.max(1),
            lots: GrowTable::default(),
            round_trip: workers.iter().map(|_| Default::default()).collect(),
        }
    }

    /// Queues a request on one of `worker`'s connections speaking `protocol` as `identity` in database `db`, chosen
    /// by `pick`. A client always uses the same identity, worker, protocol, database and pick for a node, so its
    /// requests to that node run in the order it sent them.
    pub fn send(&self, identity: Identity, db: u16, worker: usize, protocol: Protocol, pick: usize, req: Request) {
        let resp3 = usize::from(protocol == Protocol::Resp3);
        if identity == Identity::DEFAULT && db == 0 {
            let lane = worker * 2 + resp3;
            let idx = (lane * self.per_worker + pick % self.per_worker) % self.conns.len();
            return self.conns[idx].send(&self.addr, req);
        }
        match self.lane_conns(identity, db, worker) {
            Some(conns) => conns[resp3 * self.per_worker + pick % self.per_worker].send(&self.addr, req),
            None => req.reply_to.deliver(Err(UpstreamError::NotSent {
                addr: self.addr.clone(),
                reason: Arc::from(if db >= self.databases {
                    "DB index is out of range"
                } else {
                    "unknown upstream identity (or too many identities and databases)"
                }),
            })),
        }
    }

    /// `identity`'s shared connections to database `db` on `worker` (RESP2 then RESP3), started on first use.
    fn lane_conns(&self, identity: Identity, db: u16, worker: usize) -> Option<&[conn::ConnHandle]> {
        let worker = worker % self.workers.len();
        let ctx = self.ctxs.get(identity.index())?;
        if db >= self.databases {
            return None;
        }
        let workers = self.workers.len();
        let lane = (identity.index() * usize::from(self.databases) + usize::from(db)).checked_sub(1)?;
        let per_worker = self.lanes.get_or_init(lane, || (0..workers).map(|_| OnceLock::new()).collect())?;
        let conns = per_worker[worker].get_or_init(|| {
            [Protocol::Resp2, Protocol::Resp3]
                .into_iter()
                .flat_map(|p| (0..self.per_worker).map(move |_| p))
                .map(|p| {
                    conn::ConnHandle::spawn(&self.workers[worker], self.addr.clone(), ctx.clone(), p, self.readonly, db)
                })
                .collect()
        });
        Some(conns)
    }

    /// Sends one internal request (as the default identity, in database 0, on worker 0's first connection) and
    /// waits for its reply.
    pub async fn call(&self, frame: Bytes) -> UpstreamResult {
        let (tx, rx) = oneshot::channel();
        let req = Request { frame, asking: false, reply_to: ReplyTo::Oneshot(tx) };
        self.send(Identity::DEFAULT, 0, 0, Protocol::Resp2, 0, req);
        rx.await.unwrap_or_else(|_| {
            Err(UpstreamError::NotSent { addr: self.addr.clone(), reason: Arc::from("connection task stopped") })
        })
    }

    /// Whether this pool's connections are for replica reads.
    pub fn is_replica_pool(&self) -> bool {
        self.readonly
    }
}

/// Every node pool, by address. Routing goes through the topology's own list of pools (no lock); this registry is
/// only consulted when a topology is built or a redirect names an address.
pub struct Upstreams {
    /// Connect contexts by [`Identity`] (`[0]` = the `[upstream]` credentials).
    ctxs: Arc<Contexts>,
    /// The hook every context gets (see [`Upstreams::on_trouble`]), kept for identities added later.
    trouble: OnceLock<TroubleHook>,
    /// Runtimes of the worker threads; each node gets `limits.per_node` connections on each.
    workers: Arc<[Handle]>,
    limits: PoolLimits,
    /// Keyed by address and whether the connections send READONLY (replica reads use their own pools, so a
    /// node reached for writes never has a READONLY connection that could serve a stale read after a demotion).
    pools: Mutex<HashMap<(NodeAddr, bool), Arc<NodePool>>>,
}

impl Upstreams {
    /// `ctxs[0]` is the default identity's context; the others are the mapped identities' in [`Identity`] order.
    pub fn new(ctxs: Vec<ConnectContext>, workers: Vec<Handle>, limits: PoolLimits) -> Upstreams {
        assert!(!workers.is_empty(), "at least one worker runtime");
        assert!(!ctxs.is_empty() && ctxs.len() <= usize::from(u16::MAX), "1..=65535 upstream identities");
        let table = Contexts::default();
        for ctx in ctxs {
            table.push(Arc::new(ctx));
        }
        Upstreams {
            ctxs: Arc::new(table),
            trouble: OnceLock::new(),
            workers: workers.into(),
            limits,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn default_context(&self) -> &Arc<ConnectContext> {
        self.ctxs.get(0).expect("the default identity's context")
    }

    /// Whether node connections use TLS (decides which port of CLUSTER SHARDS to use). Fixed for the life of
    /// the process: a reload can renew certificates but not turn TLS on or off.
    pub fn uses_tls(&self) -> bool {
        self.default_context().auth.load().tls.is_some()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.default_context().metrics
    }

    /// The connect context of `identity`, if there is one.
    pub fn context(&self, identity: Identity) -> Option<&Arc<ConnectContext>> {
        self.ctxs.get(identity.index())
    }

    /// How many identities there are (the default one included).
    pub fn identities(&self) -> usize {
        self.ctxs.len()
    }

    /// Adds an upstream identity (a cluster user that slotway's users map to) at run time; its connections are
    /// opened on first use. None when there are already 65535.
    pub fn add_identity(&self, ctx: ConnectContext) -> Option<Identity> {
        if let Some(hook) = self.trouble.get() {
            let _ = ctx.on_trouble.set(hook.clone());
        }
        let index = self.ctxs.push(Arc::new(ctx))?;
        Some(Identity::new(u16::try_from(index).ok()?))
    }

    /// Sets what shared connections call when they fail on their own (see [`ConnectContext::on_trouble`]); only
    /// the first call has an effect. Every upstream identity's connections report to the same hook, those added
    /// later too.
    pub fn on_trouble(&self, hook: TroubleHook) {
        let _ = self.trouble.set(hook.clone());
        for i in 0..self.ctxs.len() {
            if let Some(ctx) = self.ctxs.get(i) {
                let _ = ctx.on_trouble.set(hook.clone());
            }
        }
    }

    /// The pool for `addr`, created (with its connection tasks) on first use.
    pub fn pool(&self, addr: &NodeAddr) -> Arc<NodePool> {
        self.pool_with(addr, false)
    }

    /// The pool for reads from the replica at `addr`: its connections send READONLY after authenticating.
    pub fn replica_pool(&self, addr: &NodeAddr) -> Arc<NodePool> {
        self.pool_with(addr, true)
    }

    fn pool_with(&self, addr: &NodeAddr, readonly: bool) -> Arc<NodePool> {
        let mut pools = self.pools.lock().expect("upstream registry poisoned");
        pools
            .entry((addr.clone(), readonly))
            .or_insert_with(|| Arc::new(NodePool::new(addr.clone(), &self.ctxs, &self.workers, self.limits, readonly)))
            .clone()
    }

    /// Every pool now (for the metrics endpoint).
    pub fn pools(&self) -> Vec<Arc<NodePool>> {
        self.pools.lock().expect("upstream registry poisoned").values().cloned().collect()
    }

    /// Forgets pools of nodes that are no longer wanted; their connections close once no request holds them.
    pub fn retain(&self, keep: impl Fn(&NodeAddr) -> bool) {
        self.pools.lock().expect("upstream registry poisoned").retain(|(addr, _), _| keep(addr));
    }

    /// Replaces the pools of `addr` with new ones, so the next requests open new connections, which resolve the
    /// host name again (a DNS name that moved to another server, e.g. a managed service's primary endpoint after a
    /// failover). The old pools' connections close once nothing holds them. Returns the new (non-replica) pool.
    pub fn renew(&self, addr: &NodeAddr) -> Arc<NodePool> {
        let mut pools = self.pools.lock().expect("upstream registry poisoned");
        pools.remove(&(addr.clone(), true));
        let pool = Arc::new(NodePool::new(addr.clone(), &self.ctxs, &self.workers, self.limits, false));
        pools.insert((addr.clone(), false), pool.clone());
        pool
    }

    /// Databases clients may select ([`PoolLimits::databases`]).
    pub fn databases(&self) -> u16 {
        self.limits.databases.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    fn delivery(seq: u64) -> Delivery {
        Delivery { seq, part: 0, result: Ok(Bytes::from_static(b"+OK\r\n")) }
    }

    #[test]
    fn signals_wake_the_session_once_and_replies_stay_queued() {
        let inbox = Inbox::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut taken = Vec::new();
        assert_eq!(inbox.poll_ready(&mut cx), Poll::Pending);
        assert_eq!(inbox.poll_take(&mut cx, &mut taken), Poll::Pending);

        // A kill with nothing queued: ready, nothing moved, and the signal is taken once.
        inbox.kill();
        assert_eq!(inbox.poll_ready(&mut cx), Poll::Ready(()));
        assert_eq!(inbox.poll_take(&mut cx, &mut taken), Poll::Ready(()));
        assert!(taken.is_empty());
        assert_eq!(inbox.take_signals(), Signals { kill: true, stop: false });
        assert_eq!(inbox.take_signals(), Signals::default());
        assert_eq!(inbox.poll_ready(&mut cx), Poll::Pending);

        // poll_ready leaves a reply where poll_take finds it; a stop comes with it.
        inbox.push(delivery(1));
        inbox.stop();
        assert_eq!(inbox.poll_ready(&mut cx), Poll::Ready(()));
        assert_eq!(inbox.poll_take(&mut cx, &mut taken), Poll::Ready(()));
        assert_eq!(taken.iter().map(|d| d.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(inbox.take_signals(), Signals { kill: false, stop: true });

        // Once the session is gone, neither replies nor signals are kept.
        inbox.close();
        inbox.push(delivery(2));
        inbox.kill();
        inbox.stop();
        assert!(!inbox.try_take(&mut Vec::new()));
        assert_eq!(inbox.take_signals(), Signals::default());
    }
}
