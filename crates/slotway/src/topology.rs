//! The live slot map: an immutable [`Topology`] value behind an `ArcSwap`, replaced whole by the refresher task.
//!
//! Routing reads it with one pointer load and never waits on a refresh. Refresh triggers (MOVED, unreachable
//! nodes, the periodic timer) are merged: one refresh runs at a time, at most one per `refresh_min_interval`.
use crate::cluster::{
    parse_cluster_shards_with, parse_cluster_slots, Health, NodeAddr, PortPreference, ShardInfo, Slot, SlotMap,
};
use crate::config::ReadFrom;
use crate::metrics::Metrics;
use crate::upstream::{NodePool, UpstreamError, Upstreams};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use resp::{Limits, Value};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// One consistent view of the cluster: the slot map plus the pool of each shard's primary, so routing a slot
/// to a connection needs no lookup by address.
pub struct Topology {
    pub map: SlotMap,
    /// `primaries[shard]` is the pool of that shard's primary; None while the shard has no reachable primary
    /// (failed, or not announced), so its slots are treated as not served.
    pub primaries: Vec<Option<Arc<NodePool>>>,
    /// `replicas[shard]`: READONLY pools of the shard's replicas that are online and not lagging; filled only when
    /// the read policy can use replicas.
    pub replicas: Vec<Vec<Arc<NodePool>>>,
    /// Increases by one per change; for logs and tests.
    pub version: u64,
}

impl Topology {
    /// The pool of the primary serving `slot`, if any shard serves it.
    pub fn primary_for(&self, slot: Slot) -> Option<&Arc<NodePool>> {
        self.map.shard_of(slot).and_then(|s| self.primaries[s as usize].as_ref())
    }

    /// Where a read-only request for `slot` goes under `policy` (`pick` spreads clients over replicas).
    /// Err(NoReplica) when the policy demands a replica and the shard has none.
    pub fn reader_for(&self, slot: Slot, policy: ReadFrom, pick: usize) -> Result<Option<&Arc<NodePool>>, NoReplica> {
        let Some(shard) = self.map.shard_of(slot) else { return Ok(None) };
        let primary = self.primaries[shard as usize].as_ref();
        let replicas = self.replicas.get(shard as usize).map_or(&[][..], |r| &r[..]);
        Ok(match policy {
            ReadFrom::Primary => primary,
            ReadFrom::PreferReplica if replicas.is_empty() => primary,
            ReadFrom::PreferReplica => Some(&replicas[pick % replicas.len()]),
            ReadFrom::Replica if replicas.is_empty() => return Err(NoReplica),
            ReadFrom::Replica => Some(&replicas[pick % replicas.len()]),
            ReadFrom::RoundRobin => match pick % (replicas.len() + 1) {
                0 => primary,
                i => Some(&replicas[i - 1]),
            },
        })
    }

    /// Some primary that serves slots, chosen by `pick`, for keyless commands.
    pub fn any_primary(&self, pick: usize) -> Option<&Arc<NodePool>> {
        let serving = || {
            self.map.shards.iter().zip(&self.primaries).filter_map(|(s, p)| p.as_ref().filter(|_| !s.slots.is_empty()))
        };
        let count = serving().count();
        if count == 0 {
            return None;
        }
        serving().nth(pick % count)
    }
}

/// The read policy demands a replica and the slot's shard has no healthy one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoReplica;

/// Why a refresh was asked for (counted and logged).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RefreshReason {
    Periodic = 1,
    Moved = 2,
    Unreachable = 3,
    ClusterDown = 4,
    NodeNotReady = 5,
}

pub struct TopologyManager {
    current: ArcSwap<Topology>,
    upstreams: Arc<Upstreams>,
    seeds: Vec<NodeAddr>,
    trigger: Notify,
    /// The first reason seen since the last refresh started (0 = none).
    pending_reason: AtomicU8,
    metrics: Arc<Metrics>,
    min_interval: Duration,
    interval: Duration,
    /// Replica pools are built only when reads may go to replicas; with this lag bound in bytes.
    replica_reads: Option<i64>,
    /// Every new topology, for observers (nat mode's listeners); routing reads `current` instead.
    changes: watch::Sender<Arc<Topology>>,
    /// Counts finished refreshes (changed or not, failed or not), so a caller can wait for the next one.
    refreshes: watch::Sender<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot discover the cluster from any seed node:\n  {}", .0.join("\n  "))]
pub struct DiscoveryError(pub Vec<String>);

impl TopologyManager {
    /// Initial discovery: asks each seed in order; the first that gives a slot map wins.
    pub async fn discover(
        upstreams: Arc<Upstreams>,
        seeds: Vec<NodeAddr>,
        interval: Duration,
        min_interval: Duration,
        replica_reads: Option<i64>,
    ) -> Result<Arc<TopologyManager>, DiscoveryError> {
        let mut errors = Vec::new();
        for seed in &seeds {
            match fetch_shards(&upstreams.pool(seed), upstreams.uses_tls()).await {
                Ok(shards) => {
                    let metrics = upstreams.metrics().clone();
                    let topology = Arc::new(build(&upstreams, shards, 1, replica_reads));
                    log_topology(&topology);
                    return Ok(Arc::new(TopologyManager {
                        current: ArcSwap::new(topology.clone()),
                        changes: watch::Sender::new(topology),
                        refreshes: watch::Sender::new(0),
                        upstreams,
                        seeds,
                        trigger: Notify::new(),
                        pending_reason: AtomicU8::new(0),
                        metrics,
                        min_interval,
                        interval,
                        replica_reads,
                    }));
                }
                Err(e) => errors.push(format!("{seed}: {e}")),
            }
        }
        Err(DiscoveryError(errors))
    }

    /// The current topology (a pointer load).
    pub fn load(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.current.load()
    }

    /// A receiver that sees every new topology (the current one first).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Topology>> {
        self.changes.subscribe()
    }

    /// A receiver of the number of refreshes finished so far.
    pub fn refreshes(&self) -> watch::Receiver<u64> {
        self.refreshes.subscribe()
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// Asks for a refresh soon; cheap, never waits, merges with other requests.
    pub fn request_refresh(&self, reason: RefreshReason) {
        let m = &self.metrics;
        match reason {
            RefreshReason::Periodic => {}
            RefreshReason::Moved => Metrics::incr(&m.refresh_requests_moved),
            RefreshReason::Unreachable => Metrics::incr(&m.refresh_requests_unreachable),
            RefreshReason::ClusterDown => Metrics::incr(&m.refresh_requests_clusterdown),
            RefreshReason::NodeNotReady => Metrics::incr(&m.refresh_requests_node_not_ready),
        }
        let _ = self.pending_reason.compare_exchange(0, reason as u8, Ordering::Relaxed, Ordering::Relaxed);
        self.trigger.notify_one();
    }

    /// The refresher task: runs until `shutdown` changes.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = self.trigger.notified() => {}
                _ = tokio::time::sleep(self.interval) => {
                    let _ = self.pending_reason.compare_exchange(0, RefreshReason::Periodic as u8, Ordering::Relaxed, Ordering::Relaxed);
                }
                _ = shutdown.changed() => return,
            }
            let since = last.elapsed();
            if since < self.min_interval {
                tokio::time::sleep(self.min_interval - since).await;
            }
            last = Instant::now();
            let reason = self.pending_reason.swap(0, Ordering::Relaxed);
            self.refresh(reason).await;
            self.refreshes.send_modify(|n| *n += 1);
        }
    }

    /// One refresh: asks the known primaries (then replicas, then the seeds) until one answers.
    async fn refresh(&self, reason: u8) {
        let current = self.current.load_full();
        let mut candidates: Vec<NodeAddr> = Vec::new();
        let mut push = |a: &NodeAddr| {
            if !candidates.contains(a) {
                candidates.push(a.clone());
            }
        };
        // Start at a different primary each time so one slow node doesn't answer every refresh.
        let shards = &current.map.shards;
        let start = if shards.is_empty() { 0 } else { current.version as usize % shards.len() };
        for i in 0..shards.len() {
            push(&shards[(start + i) % shards.len()].primary.addr);
        }
        for s in shards {
            s.replicas.iter().for_each(|r| push(&r.addr));
        }
        self.seeds.iter().for_each(&mut push);

        for addr in candidates {
            match fetch_shards(&self.upstreams.pool(&addr), self.upstreams.uses_tls()).await {
                Ok(shards) => {
                    Metrics::incr(&self.metrics.topology_refreshes);
                    if same_layout(&shards, &current.map.shards) {
                        // Same layout; with replica reads the lag of each replica may have changed.
                        if self.replica_reads.is_some() {
                            let next = build(&self.upstreams, shards, current.version, self.replica_reads);
                            if next.replicas.iter().map(Vec::len).ne(current.replicas.iter().map(Vec::len)) {
                                self.current.store(Arc::new(next));
                            }
                        }
                        return;
                    }
                    let next = build(&self.upstreams, shards, current.version + 1, self.replica_reads);
                    tracing::info!(version = next.version, reason, source = %addr, "topology changed");
                    log_topology(&next);
                    let next = Arc::new(next);
                    self.current.store(next.clone());
                    self.changes.send_replace(next);
                    Metrics::incr(&self.metrics.topology_changes);
                    let live = self.current.load();
                    self.upstreams.retain(|a| {
                        live.map.shards.iter().any(|s| s.primary.addr == *a || s.replicas.iter().any(|r| r.addr == *a))
                    });
                    return;
                }
                Err(e) => tracing::debug!(node = %addr, error = %e, "topology refresh: node did not answer"),
            }
        }
        Metrics::incr(&self.metrics.topology_refresh_failures);
        tracing::warn!("topology refresh failed: no node answered");
    }
}

/// Equal for routing purposes: same shards, nodes, roles, health and slots (replication offsets ignored).
fn same_layout(a: &[ShardInfo], b: &[ShardInfo]) -> bool {
    let node_eq = |x: &crate::cluster::NodeInfo, y: &crate::cluster::NodeInfo| {
        // (Not `ip`: nodes may see one node's IP differently, and routing never uses it.)
        x.addr == y.addr && x.id == y.id && x.role == y.role && x.health == y.health
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.slots == y.slots
                && node_eq(&x.primary, &y.primary)
                && x.replicas.len() == y.replicas.len()
                && x.replicas.iter().zip(&y.replicas).all(|(p, q)| node_eq(p, q))
        })
}

fn build(upstreams: &Upstreams, shards: Vec<ShardInfo>, version: u64, replica_reads: Option<i64>) -> Topology {
    let replicas = shards
        .iter()
        .map(|s| match replica_reads {
            None => Vec::new(),
            Some(max_lag) => s
                .replicas
                .iter()
                // `loading` in CLUSTER SHARDS comes from gossiped offsets and flaps between nodes' views; only a
                // failed replica is excluded here. A replica that really is loading answers LOADING, and that
                // read is retried on the primary.
                .filter(|r| r.health != Health::Failed && r.addr.port != 0)
                .filter(|r| match (s.primary.replication_offset, r.replication_offset) {
                    (Some(p), Some(o)) if p > 0 && o > 0 => p - o <= max_lag,
                    _ => true,
                })
                .map(|r| upstreams.replica_pool(&r.addr))
                .collect(),
        })
        .collect();
    let primaries = shards
        .iter()
        .map(|s| {
            (s.primary.health != Health::Failed && s.primary.addr.port != 0).then(|| upstreams.pool(&s.primary.addr))
        })
        .collect();
    Topology { map: SlotMap::new(shards), primaries, replicas, version }
}

fn log_topology(t: &Topology) {
    for s in &t.map.shards {
        let ranges: Vec<String> = s.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let replicas: Vec<String> = s.replicas.iter().map(|r| r.addr.to_string()).collect();
        tracing::info!(primary = %s.primary.addr, replicas = ?replicas, slots = %ranges.join(","), "shard");
    }
    let unassigned = t.map.unassigned_slots();
    if unassigned > 0 {
        tracing::warn!(unassigned, "some hash slots are not served by any node");
    }
}

/// Sends one internal command and decodes its reply.
pub async fn call_value(pool: &NodePool, args: &[&[u8]], timeout: Duration) -> Result<Value, String> {
    let mut frame = BytesMut::new();
    resp::encode::command(&mut frame, args);
    let reply: Bytes = match tokio::time::timeout(timeout, pool.call(frame.freeze())).await {
        Err(_) => return Err(format!("no reply within {timeout:?}")),
        Ok(Err(UpstreamError::NotSent { reason, .. })) => return Err(reason.to_string()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(r)) => r,
    };
    let limits = Limits::default();
    match Value::parse(&reply, &limits) {
        Ok(Some((v, _))) => Ok(v),
        Ok(None) => Err("incomplete reply".to_string()),
        Err(e) => Err(format!("malformed reply: {e}")),
    }
}

const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(5);

/// CLUSTER SHARDS (Redis 7), falling back to CLUSTER SLOTS when the node doesn't know SHARDS.
/// `tls` decides which port to take when a node announces both a plain and a TLS port.
async fn fetch_shards(pool: &NodePool, tls: bool) -> Result<Vec<ShardInfo>, String> {
    let mut shards = fetch_shards_unordered(pool, tls).await?;
    // Every node lists shards (and replicas) in its own order: sort them so equal layouts compare equal.
    for s in &mut shards {
        s.slots.sort_unstable();
        s.replicas.sort_by(|a, b| a.addr.cmp(&b.addr));
    }
    shards.sort_by_key(|s| (s.slots.is_empty(), s.slots.first().copied(), s.primary.addr.clone()));
    Ok(shards)
}

async fn fetch_shards_unordered(pool: &NodePool, tls: bool) -> Result<Vec<ShardInfo>, String> {
    let host = pool.addr.host.clone();
    let ports = if tls { PortPreference::Tls } else { PortPreference::Plain };
    match call_value(pool, &[b"CLUSTER", b"SHARDS"], TOPOLOGY_TIMEOUT).await? {
        Value::Error(e) | Value::BlobError(e) => {
            let text = String::from_utf8_lossy(&e).into_owned();
            if !text.contains("unknown subcommand") && !text.contains("Unknown subcommand") {
                return Err(text);
            }
            match call_value(pool, &[b"CLUSTER", b"SLOTS"], TOPOLOGY_TIMEOUT).await? {
                Value::Error(e) | Value::BlobError(e) => Err(String::from_utf8_lossy(&e).into_owned()),
                v => parse_cluster_slots(&v, &host).map_err(|e| e.to_string()),
            }
        }
        v => parse_cluster_shards_with(&v, &host, ports).map_err(|e| e.to_string()),
    }
}
