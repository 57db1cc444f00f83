//! Connections to the cluster's nodes. This layer knows addresses, never slots.
//!
//! Each node has a [`NodePool`] of a few long-lived pipelined connections shared by every client. A connection is
//! a handle (an unbounded channel of [`Request`]s) plus one driver task that connects lazily, writes requests in
//! batches (many requests, one write) and one reader task that matches replies to requests in FIFO order.

mod conn;
pub mod connect;
pub mod dedicated;
pub mod subscriber;

use crate::cluster::NodeAddr;
use crate::metrics::Metrics;
use bytes::Bytes;
use resp::encode::Protocol;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

pub use connect::{ConnectContext, ConnectError};
pub use dedicated::{Dedicated, DedicatedError};

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

/// Where a node's reply goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// A client session's reply channel.
    Session { tx: mpsc::UnboundedSender<Delivery>, seq: u64, part: u32 },
    /// An internal request (topology refresh, COMMAND).
    Oneshot(oneshot::Sender<UpstreamResult>),
    /// A reply nobody wants (the `+OK` of an `ASKING` sent ahead of a redirected command).
    Discard,
}

impl ReplyTo {
    pub(crate) fn deliver(self, result: UpstreamResult) {
        match self {
            ReplyTo::Session { tx, seq, part } => {
                let _ = tx.send(Delivery { seq, part, result });
            }
            ReplyTo::Oneshot(tx) => {
                let _ = tx.send(result);
            }
            ReplyTo::Discard => {}
        }
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
/// [`Dedicated`] connections.
pub struct NodePool {
    pub addr: NodeAddr,
    per_worker: usize,
    /// `conns[(worker * 2 + protocol) * per_worker + i]`: RESP2 and RESP3 connections per worker. They connect on
    /// first use, so a protocol no client speaks costs an idle task and nothing more.
    conns: Box<[conn::ConnHandle]>,
    ctx: Arc<ConnectContext>,
    /// Dedicated connections allowed per worker.
    max_dedicated: usize,
    /// `lots[worker]`.
    lots: Box<[Mutex<dedicated::Lot>]>,
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
}

impl NodePool {
    fn new(
        addr: NodeAddr,
        ctx: &Arc<ConnectContext>,
        workers: &[Handle],
        limits: PoolLimits,
        readonly: bool,
    ) -> NodePool {
        let per_worker = limits.per_node.max(1);
        let conns = workers
            .iter()
            .flat_map(|w| [Protocol::Resp2, Protocol::Resp3].map(|p| (w, p)))
            .flat_map(|wp| (0..per_worker).map(move |_| wp))
            .map(|(w, p)| conn::ConnHandle::spawn(w, addr.clone(), ctx.clone(), p, readonly))
            .collect();
        NodePool {
            addr,
            per_worker,
            conns,
            ctx: ctx.clone(),
            max_dedicated: limits.max_dedicated.max(1),
            lots: dedicated::lots(workers.len()),
        }
    }

    /// Queues a request on one of `worker`'s connections speaking `protocol`, chosen by `pick`. A client always
    /// uses the same worker, protocol and pick for a node, so its requests to that node run in the order it sent
    /// them.
    pub fn send(&self, worker: usize, protocol: Protocol, pick: usize, req: Request) {
        let lane = worker * 2 + usize::from(protocol == Protocol::Resp3);
        let idx = (lane * self.per_worker + pick % self.per_worker) % self.conns.len();
        self.conns[idx].send(&self.addr, req);
    }

    /// Sends one internal request (on worker 0's first connection) and waits for its reply.
    pub async fn call(&self, frame: Bytes) -> UpstreamResult {
        let (tx, rx) = oneshot::channel();
        self.send(0, Protocol::Resp2, 0, Request { frame, asking: false, reply_to: ReplyTo::Oneshot(tx) });
        rx.await.unwrap_or_else(|_| {
            Err(UpstreamError::NotSent { addr: self.addr.clone(), reason: Arc::from("connection task stopped") })
        })
    }
}

/// Every node pool, by address. Routing goes through the topology's own list of pools (no lock); this registry is
/// only consulted when a topology is built or a redirect names an address.
pub struct Upstreams {
    ctx: Arc<ConnectContext>,
    /// Runtimes of the worker threads; each node gets `limits.per_node` connections on each.
    workers: Vec<Handle>,
    limits: PoolLimits,
    /// Keyed by address and whether the connections send READONLY (replica reads use their own pools, so a
    /// node reached for writes never has a READONLY connection that could serve a stale read after a demotion).
    pools: Mutex<HashMap<(NodeAddr, bool), Arc<NodePool>>>,
}

impl Upstreams {
    pub fn new(ctx: ConnectContext, workers: Vec<Handle>, limits: PoolLimits) -> Upstreams {
        assert!(!workers.is_empty(), "at least one worker runtime");
        Upstreams { ctx: Arc::new(ctx), workers, limits, pools: Mutex::new(HashMap::new()) }
    }

    /// Whether node connections use TLS (decides which port of CLUSTER SHARDS to use).
    pub fn uses_tls(&self) -> bool {
        self.ctx.tls.is_some()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ctx.metrics
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
            .or_insert_with(|| Arc::new(NodePool::new(addr.clone(), &self.ctx, &self.workers, self.limits, readonly)))
            .clone()
    }

    /// Forgets pools of nodes that are no longer wanted; their connections close once no request holds them.
    pub fn retain(&self, keep: impl Fn(&NodeAddr) -> bool) {
        self.pools.lock().expect("upstream registry poisoned").retain(|(addr, _), _| keep(addr));
    }
}
