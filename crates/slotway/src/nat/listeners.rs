//! One listener per cluster node, following the topology: nodes that join get a listener when a refresh sees
//! them, nodes that leave keep theirs for a grace period. A node's port is stable for the life of the process.
use super::rewrite::Directory;
use crate::cluster::NodeAddr;
use crate::config::{NatConfig, NodeKey};
use crate::topology::Topology;
use arc_swap::ArcSwap;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The node behind one listener. Its address can change (same node id, new IP) without the port changing.
#[derive(Debug)]
pub struct NodeTarget {
    pub id: Option<Arc<str>>,
    pub addr: ArcSwap<NodeAddr>,
    pub port: u16,
}

/// A client accepted on a node listener, on its way to a worker.
pub struct NatAccepted {
    pub stream: std::net::TcpStream,
    pub addr: SocketAddr,
    pub node: Arc<NodeTarget>,
}

/// Node → listener port, for rewriting replies. Replaced whole whenever the set of nodes changes.
#[derive(Debug, Default)]
pub struct NatMap {
    /// The topology version this map was built from.
    pub version: u64,
    by_id: HashMap<Arc<str>, u16>,
    by_addr: HashMap<(Arc<str>, u16), u16>,
}

impl Directory for NatMap {
    fn port_of(&self, id: Option<&str>, host: &str, port: u16) -> Option<u16> {
        if let Some(p) = id.and_then(|id| self.by_id.get(id)) {
            return Some(*p);
        }
        // No allocation for the lookup key: hosts are few, compare in place.
        self.by_addr.iter().find(|((h, p), _)| *p == port && h.eq_ignore_ascii_case(host)).map(|(_, v)| *v)
    }
}

impl NatMap {
    /// Ports of every node, for tests and logs.
    pub fn len(&self) -> usize {
        self.by_addr.values().collect::<BTreeSet<_>>().len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

/// How a node is remembered: its id, or (for a cluster that reports no ids) its address.
fn node_key(id: Option<&Arc<str>>, addr: &NodeAddr) -> String {
    match id {
        Some(id) => format!("id:{id}"),
        None => format!("addr:{addr}"),
    }
}

struct Live {
    target: Arc<NodeTarget>,
    ip: Option<Arc<str>>,
    accept: JoinHandle<()>,
    /// When the node was last missing from the topology (None while it is in it).
    left_at: Option<Instant>,
}

/// The listener manager: owns the port assignment and the listeners. Runs on the control thread.
pub struct Listeners {
    config: NatConfig,
    /// Every port ever given to a node (key → port), so a node that comes back gets its port again.
    assigned: HashMap<String, u16>,
    live: HashMap<String, Live>,
    workers: Vec<mpsc::UnboundedSender<NatAccepted>>,
    next_worker: Arc<std::sync::atomic::AtomicUsize>,
    map: watch::Sender<Arc<NatMap>>,
}

impl Listeners {
    pub fn new(
        config: NatConfig,
        workers: Vec<mpsc::UnboundedSender<NatAccepted>>,
        map: watch::Sender<Arc<NatMap>>,
    ) -> Listeners {
        Listeners {
            config,
            assigned: HashMap::new(),
            live: HashMap::new(),
            workers,
            next_worker: Arc::new(0.into()),
            map,
        }
    }

    /// Opens the listeners of the nodes in the current topology. Errors (a port that can't be bound, a range too
    /// small) are startup failures, one line per node.
    pub async fn start(&mut self, topology: &mut watch::Receiver<Arc<Topology>>) -> Result<(), Vec<String>> {
        let current = topology.borrow_and_update().clone();
        let errors = self.apply(&current).await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Follows the topology until `shutdown` (after [`Listeners::start`]); then closes every listener.
    pub async fn run(mut self, mut topology: watch::Receiver<Arc<Topology>>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(
            Duration::from_millis(500).min(self.config.leave_grace.max(Duration::from_millis(10))),
        );
        loop {
            tokio::select! {
                r = topology.changed() => {
                    if r.is_err() { break; }
                    let t = topology.borrow_and_update().clone();
                    let _ = self.apply(&t).await;
                }
                _ = tick.tick() => self.expire(),
                _ = shutdown.changed() => break,
            }
        }
        for (_, l) in self.live.drain() {
            l.accept.abort();
        }
    }

    /// The port for a node: its fixed one (`node_ports`, by id or by address), the one it had before, or the
    /// first free one of the range.
    fn port_for(&self, key: &str, id: Option<&Arc<str>>, addr: &NodeAddr, ip: Option<&Arc<str>>) -> Option<u16> {
        let fixed = self.config.node_ports.iter().find_map(|(k, p)| {
            let hit = match k {
                NodeKey::Id(want) => id.is_some_and(|id| id.eq_ignore_ascii_case(want)),
                NodeKey::Addr(a) => {
                    a.port == addr.port
                        && (a.host.eq_ignore_ascii_case(&addr.host) || ip.is_some_and(|ip| **ip == *a.host))
                }
            };
            hit.then_some(*p)
        });
        if fixed.is_some() {
            return fixed;
        }
        if let Some(p) = self.assigned.get(key) {
            return Some(*p);
        }
        let (lo, hi) = self.config.ports?;
        let taken: BTreeSet<u16> =
            self.assigned.values().chain(self.config.node_ports.iter().map(|(_, p)| p)).copied().collect();
        (lo..=hi).find(|p| !taken.contains(p)).or_else(|| {
            // The range is used up: take the port of a node that left (its grace period is over).
            let in_use: BTreeSet<u16> = self.live.values().map(|l| l.target.port).collect();
            (lo..=hi).find(|p| !in_use.contains(p))
        })
    }

    /// Brings the listeners in line with a topology: new nodes get one, nodes that left start their grace period.
    /// Returns what went wrong (also logged).
    async fn apply(&mut self, topology: &Topology) -> Vec<String> {
        let mut errors = Vec::new();
        let mut seen = Vec::new();
        for shard in &topology.map.shards {
            for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
                if node.addr.port == 0 || node.addr.host.is_empty() {
                    continue;
                }
                let key = node_key(node.id.as_ref(), &node.addr);
                seen.push(key.clone());
                if let Some(live) = self.live.get_mut(&key) {
                    live.left_at = None;
                    live.ip = node.ip.clone();
                    if **live.target.addr.load() != node.addr {
                        tracing::info!(node = %key, from = %live.target.addr.load(), to = %node.addr, "node address changed");
                        live.target.addr.store(Arc::new(node.addr.clone()));
                    }
                    continue;
                }
                let Some(port) = self.port_for(&key, node.id.as_ref(), &node.addr, node.ip.as_ref()) else {
                    tracing::error!(node = %node.addr, "no free port left in nat.ports for this node: it gets no listener");
                    errors.push(format!("node {}: no free port left in nat.ports", node.addr));
                    continue;
                };
                let bind = SocketAddr::new(self.config.bind, port);
                let listener = match TcpListener::bind(bind).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(node = %node.addr, %bind, error = %e, "cannot listen for this node (will retry at the next topology change)");
                        errors.push(format!("node {}: cannot listen on {bind}: {e}", node.addr));
                        continue;
                    }
                };
                self.assigned.insert(key.clone(), port);
                let target =
                    Arc::new(NodeTarget { id: node.id.clone(), addr: ArcSwap::from_pointee(node.addr.clone()), port });
                tracing::info!(
                    "node {} {} → {}:{port}",
                    node.id.as_deref().unwrap_or("-"),
                    node.addr,
                    self.config.announce_host
                );
                let accept =
                    tokio::spawn(accept_loop(listener, target.clone(), self.workers.clone(), self.next_worker.clone()));
                self.live.insert(key, Live { target, ip: node.ip.clone(), accept, left_at: None });
            }
        }
        let now = Instant::now();
        for (key, live) in self.live.iter_mut() {
            if live.left_at.is_none() && !seen.contains(key) {
                tracing::info!(node = %key, port = live.target.port, grace = ?self.config.leave_grace, "node left the cluster; closing its listener after the grace period");
                live.left_at = Some(now);
            }
        }
        self.publish(topology.version);
        errors
    }

    /// Closes the listeners of nodes whose grace period is over.
    fn expire(&mut self) {
        let grace = self.config.leave_grace;
        let before = self.live.len();
        self.live.retain(|key, l| {
            let keep = l.left_at.is_none_or(|t| t.elapsed() < grace);
            if !keep {
                tracing::info!(node = %key, port = l.target.port, "listener closed (node left the cluster)");
                l.accept.abort();
            }
            keep
        });
        if self.live.len() != before {
            let version = self.map.borrow().version;
            self.publish(version);
        }
    }

    fn publish(&self, version: u64) {
        let mut map = NatMap { version, ..NatMap::default() };
        for l in self.live.values() {
            let addr = l.target.addr.load();
            if let Some(id) = &l.target.id {
                map.by_id.insert(id.clone(), l.target.port);
            }
            map.by_addr.insert((addr.host.clone(), addr.port), l.target.port);
            if let Some(ip) = &l.ip {
                map.by_addr.insert((ip.clone(), addr.port), l.target.port);
            }
        }
        self.map.send_replace(Arc::new(map));
    }
}

async fn accept_loop(
    listener: TcpListener,
    node: Arc<NodeTarget>,
    workers: Vec<mpsc::UnboundedSender<NatAccepted>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(port = node.port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else { continue };
        let w = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % workers.len();
        let _ = workers[w].send(NatAccepted { stream, addr, node: node.clone() });
    }
}
