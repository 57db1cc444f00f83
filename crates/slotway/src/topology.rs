//! The live slot map: an immutable [`Topology`] value behind an `ArcSwap`, replaced whole by the refresher task.
//!
//! Routing reads it with one pointer load and never waits on a refresh. Refresh triggers (MOVED, unreachable
//! nodes, failed health checks, the periodic timer) are merged: one refresh runs at a time, at most one per
//! `refresh_min_interval`.
//!
//! A refresh asks up to [`REFRESH_FANOUT`] nodes at once and keeps the view with the highest config epoch
//! ([`choose_view`]), so a node cut off from the majority, which still reports the slot owners from before a
//! failover, can't roll the map back.
use crate::cluster::{
    parse_cluster_nodes_epochs, parse_cluster_shards_with, parse_cluster_slots, Health, NodeAddr, NodeInfo,
    PortPreference, Role, ShardInfo, Slot, SlotMap, SLOT_COUNT,
};
use crate::config::ReadFrom;
use crate::metrics::Metrics;
use crate::upstream::{NodePool, NodeTrouble, UpstreamError, Upstreams};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use resp::{Limits, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// How keys are placed on a backend's replication groups (see docs/ARCHITECTURE.md, "One model for every
/// backend"). Fixed for the life of the process by the kind of backend.
///
/// Routing works with a *token* per key ([`Placement::token`], a [`Slot`]): the key's hash slot in a cluster,
/// [`Slot::ZERO`] in a single group, the key's group in a ring. Keys of one command with the same token may go
/// together in one request; the topology maps a token to its group ([`Topology::group_of`]).
#[derive(Clone, Debug, Default)]
pub enum Placement {
    /// Redis Cluster: a key's hash slot decides its group (the slot map's owner table); the keys of one command
    /// must share a slot on the nodes, so multi-key commands are split per slot.
    #[default]
    Slots,
    /// One replication group takes every key (a Sentinel-managed or static primary/replica set): no slots, any keys
    /// in one command, databases (`SELECT n`).
    Single,
    /// A sharded pool of standalone groups (twemproxy's): the ring decides a key's group, whose number is its token.
    /// Each group takes any of its keys in one command; multi-key commands split per group.
    Ring(Arc<crate::ring::Ring>),
}

impl PartialEq for Placement {
    fn eq(&self, other: &Placement) -> bool {
        match (self, other) {
            (Placement::Slots, Placement::Slots) | (Placement::Single, Placement::Single) => true,
            (Placement::Ring(a), Placement::Ring(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The error for keys of one command that can't go together (a cluster's own wording; a pool's names shards).
pub const CROSSSHARD: &str = "CROSSSLOT Keys in request don't hash to the same shard of the pool";

impl Placement {
    /// The routing token of `key` (see the type's docs).
    #[inline]
    pub fn token(&self, key: &[u8]) -> Slot {
        match self {
            Placement::Slots => Slot::for_key(key),
            Placement::Single => Slot::ZERO,
            Placement::Ring(ring) => Slot::new(ring.locate(key) as u16).expect("a ring has at most 16384 groups"),
        }
    }

    /// Whether the groups are standalone servers, which have databases (`SELECT n`) and take any keys together.
    pub fn standalone(&self) -> bool {
        !matches!(self, Placement::Slots)
    }

    /// The ring of a sharded pool.
    pub fn ring(&self) -> Option<&Arc<crate::ring::Ring>> {
        match self {
            Placement::Ring(r) => Some(r),
            _ => None,
        }
    }

    /// The error for keys that can't go together in one command: Redis Cluster's CROSSSLOT, worded for a pool.
    pub fn cross_error(&self) -> &'static str {
        match self {
            Placement::Ring(_) => CROSSSHARD,
            _ => crate::dispatch::CROSSSLOT,
        }
    }
}

/// One consistent view of the backend: its replication groups (`map.shards`: one per cluster shard, or the one
/// group of a Sentinel/static deployment), how keys are placed on them, and each group's primary pool, so routing a
/// key to a connection needs no lookup by address.
pub struct Topology {
    /// The groups and, for a cluster, which group owns each slot.
    pub map: SlotMap,
    pub placement: Placement,
    /// `primaries[group]` is the pool of that group's primary; None while the group has no primary slotway trusts
    /// (failed, not announced, not verified with ROLE, or two nodes claiming the role), so its keys are not served.
    pub primaries: Vec<Option<Arc<NodePool>>>,
    /// `replicas[group]`: the pools of the group's replicas that are online and not lagging; filled only when the
    /// read policy can use replicas.
    pub replicas: Vec<Vec<Arc<NodePool>>>,
    /// Increases by one per change; for logs and tests.
    pub version: u64,
    /// Why each group of a Sentinel/static group or a pool has no primary now (for the clients' error and
    /// `/health`), by group; empty for a cluster.
    pub problems: Vec<Option<Arc<str>>>,
}

impl Topology {
    /// The group that serves `slot` (a single group serves every key; in a pool the token is the group).
    #[inline]
    pub fn group_of(&self, slot: Slot) -> Option<usize> {
        match &self.placement {
            Placement::Slots => self.map.shard_of(slot).map(usize::from),
            Placement::Single => Some(0),
            Placement::Ring(_) => Some(slot.get() as usize),
        }
    }

    /// The pool of the primary serving `slot`, if any group serves it.
    #[inline]
    pub fn primary_for(&self, slot: Slot) -> Option<&Arc<NodePool>> {
        self.group_of(slot).and_then(|g| self.primaries.get(g)?.as_ref())
    }

    /// Where a read-only request for `slot` goes under `policy` (`pick` spreads clients over replicas).
    /// Err(NoReplica) when the policy demands a replica and the group has none.
    pub fn reader_for(&self, slot: Slot, policy: ReadFrom, pick: usize) -> Result<Option<&Arc<NodePool>>, NoReplica> {
        let Some(group) = self.group_of(slot) else { return Ok(None) };
        let primary = self.primaries.get(group).and_then(Option::as_ref);
        let replicas = self.replicas.get(group).map_or(&[][..], |r| &r[..]);
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

    /// The groups that serve keys: a cluster's shards with slots, the one group, a pool's groups not ejected.
    pub fn serving_groups(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.map.shards.len()).filter(move |&g| match &self.placement {
            Placement::Slots => !self.map.shards[g].slots.is_empty(),
            Placement::Single => g == 0,
            Placement::Ring(ring) => !ring.is_ejected(g),
        })
    }

    /// Some primary that serves keys, chosen by `pick`, for keyless commands.
    pub fn any_primary(&self, pick: usize) -> Option<&Arc<NodePool>> {
        if self.placement == Placement::Single {
            return self.primaries.first().and_then(Option::as_ref);
        }
        let serving = || self.serving_groups().filter_map(|g| self.primaries[g].as_ref());
        let count = serving().count();
        if count == 0 {
            return None;
        }
        serving().nth(pick % count)
    }

    /// The error a request for `slot` (any primary: None) gets when its group has no primary once its retries
    /// are over.
    pub fn unserved_error(&self, slot: Option<Slot>) -> String {
        let problem = |g: usize| self.problems.get(g).cloned().flatten();
        match &self.placement {
            Placement::Slots => "CLUSTERDOWN Hash slot not served".to_string(),
            Placement::Single => match problem(0) {
                Some(why) => format!("ERR slotway: no primary: {why}"),
                None => "ERR slotway: no primary is known yet".to_string(),
            },
            Placement::Ring(ring) => match slot.map(|s| s.get() as usize).filter(|&g| g < ring.len()) {
                Some(g) => match problem(g) {
                    Some(why) => format!("ERR slotway: shard '{}' has no primary: {why}", ring.name_of(g)),
                    None => format!("ERR slotway: shard '{}' has no primary yet", ring.name_of(g)),
                },
                None => "ERR slotway: no shard of the pool has a primary".to_string(),
            },
        }
    }

    /// Why slotway can't serve every key right now (for `/health`), or None when it can.
    pub fn health_problem(&self) -> Option<String> {
        match &self.placement {
            Placement::Slots => {
                let unassigned = self.map.unassigned_slots();
                (unassigned > 0).then(|| format!("{unassigned} slots have no primary"))
            }
            Placement::Single if self.primaries.first().is_some_and(Option::is_some) => None,
            Placement::Single => Some(match self.problems.first().cloned().flatten() {
                Some(why) => format!("no primary: {why}"),
                None => "no primary".to_string(),
            }),
            Placement::Ring(ring) => {
                let missing: Vec<String> = self
                    .serving_groups()
                    .filter(|&g| self.primaries[g].is_none())
                    .map(|g| match self.problems.get(g).cloned().flatten() {
                        Some(why) => format!("shard '{}' has no primary: {why}", ring.name_of(g)),
                        None => format!("shard '{}' has no primary", ring.name_of(g)),
                    })
                    .collect();
                (!missing.is_empty()).then(|| missing.join("; "))
            }
        }
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
    /// An upstream connection failed its health check (no reply in time) or was closed by the node.
    HealthCheck = 6,
    /// An operator asked for it (`SLOTWAY REFRESH`).
    Admin = 7,
    /// A sentinel published an event about the group (`+switch-master`, `+odown`, ...).
    SentinelEvent = 8,
}

impl RefreshReason {
    /// The name used in logs for a reason stored as its `u8` (0: none recorded).
    fn name(reason: u8) -> &'static str {
        match reason {
            1 => "periodic",
            2 => "moved",
            3 => "unreachable",
            4 => "clusterdown",
            5 => "node-not-ready",
            6 => "health-check",
            7 => "admin",
            8 => "sentinel-event",
            // Woken by a trigger that the previous refresh already took into account.
            _ => "merged",
        }
    }
}

/// Nodes asked at once by a refresh (the current primaries first).
pub const REFRESH_FANOUT: usize = 3;
/// How long a refresh waits for the other nodes of its group once one has answered: they are on the same network,
/// so a node still silent by then is slow or stalled, and the refresh goes on without it.
const ANSWER_GRACE: Duration = Duration::from_millis(200);
/// One node's answer to a refresh must arrive within this (discovery allows `DISCOVERY_TIMEOUT`).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// One node's answer to a refresh: its view of the cluster and the config epoch that view is at.
#[derive(Debug, Clone)]
pub struct View {
    pub shards: Vec<ShardInfo>,
    /// The highest config epoch among the primaries that serve slots in this view ([`view_epoch`]); None when
    /// the node didn't tell (CLUSTER NODES refused or unparsable).
    pub epoch: Option<u64>,
}

/// The config epoch of a view: the highest epoch among the primaries that serve slots in it.
///
/// Every change of a slot's owner (a failover, an import finished with SETSLOT NODE) gives the new owner an epoch
/// above every epoch the cluster had, so a node that missed a change reports a lower maximum than one that saw it.
/// Slot-less primaries don't count: a node added and emptied again mustn't make a view look newer. `epochs` comes
/// from the same node's CLUSTER NODES; None when it names none of the slot owners.
pub fn view_epoch(shards: &[ShardInfo], epochs: &HashMap<Arc<str>, u64>) -> Option<u64> {
    shards
        .iter()
        .filter(|s| !s.slots.is_empty())
        .filter_map(|s| s.primary.id.as_ref().and_then(|id| epochs.get(id)))
        .copied()
        .max()
}

/// What a refresh does with the answers it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewChoice {
    /// Use answer `i`: the newest one (among equals, the first to arrive).
    Take(usize),
    /// Every answer is older than the map in use (a node that missed a failover, e.g. on the minority side of a
    /// partition): keep the map. `best` is the newest of them.
    Older { best: usize },
}

/// Chooses among `answers` (each answer's epoch, in the order the nodes answered; not empty) given the epoch of
/// the map in use (`current`, None when unknown). A view whose epoch is unknown ranks below every known one and
/// is never called older: with no epochs at all (CLUSTER SLOTS-only servers) the first answer wins.
pub fn choose_view(current: Option<u64>, answers: &[Option<u64>]) -> ViewChoice {
    let mut best = 0;
    for (i, epoch) in answers.iter().enumerate().skip(1) {
        // Strictly greater: among equal epochs the first answer stays.
        if *epoch > answers[best] {
            best = i;
        }
    }
    match (current, answers.get(best).copied().flatten()) {
        (Some(current), Some(epoch)) if epoch < current => ViewChoice::Older { best },
        _ => ViewChoice::Take(best),
    }
}

/// Older views are refused for this long (and at least `STALE_REFRESHES` refreshes) before slotway concludes that
/// the epochs really went down (the cluster was rebuilt at the same addresses) and takes one.
const STALE_GRACE: Duration = Duration::from_secs(30);
const STALE_REFRESHES: u32 = 3;

/// Counts the refreshes in a row that got only older views ([`ViewChoice::Older`]).
#[derive(Debug, Default)]
pub struct StaleGuard {
    since: Option<Instant>,
    refreshes: u32,
}

impl StaleGuard {
    /// A refresh got only older views at `now`: true when that has lasted long enough to take one.
    pub fn allow_older(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        self.refreshes += 1;
        self.refreshes >= STALE_REFRESHES && now.duration_since(since) >= STALE_GRACE
    }

    /// A refresh got a view at least as new as the map's.
    pub fn reset(&mut self) {
        *self = StaleGuard::default();
    }
}

/// What the refresher remembers between refreshes (only the refresher task touches it).
#[derive(Debug, Default)]
struct RefreshState {
    /// Config epoch of the view the map in use was built from.
    epoch: Option<u64>,
    stale: StaleGuard,
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
    /// Replica pools are built only when reads may go to replicas; with this lag bound in bytes. A config reload
    /// may change it ([`TopologyManager::set_replica_reads`]).
    replica_reads: Mutex<Option<i64>>,
    /// Every new topology, for observers (nat mode's listeners); routing reads `current` instead.
    changes: watch::Sender<Arc<Topology>>,
    /// Counts finished refreshes (changed or not, failed or not), so a caller can wait for the next one.
    refreshes: watch::Sender<u64>,
    state: Mutex<RefreshState>,
    /// The discovery of each replication group of a Sentinel/static group or a pool; None for a cluster.
    groups: Option<group::Groups>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot discover the cluster from any seed node:\n  {}", .0.join("\n  "))]
pub struct DiscoveryError(pub Vec<String>);

impl TopologyManager {
    /// Initial discovery: asks the seeds, [`REFRESH_FANOUT`] at a time in the order given, until some answer; among
    /// the answers of one group the newest view wins ([`choose_view`]).
    pub async fn discover(
        upstreams: Arc<Upstreams>,
        seeds: Vec<NodeAddr>,
        interval: Duration,
        min_interval: Duration,
        replica_reads: Option<i64>,
    ) -> Result<Arc<TopologyManager>, DiscoveryError> {
        let mut errors = Vec::new();
        for group in seeds.chunks(REFRESH_FANOUT) {
            let (mut answers, failed) = ask(&upstreams, group, DISCOVERY_TIMEOUT).await;
            errors.extend(failed);
            if answers.is_empty() {
                continue;
            }
            let epochs: Vec<Option<u64>> = answers.iter().map(|(_, v)| v.epoch).collect();
            let (ViewChoice::Take(pick) | ViewChoice::Older { best: pick }) = choose_view(None, &epochs);
            let (source, view) = answers.swap_remove(pick);
            let metrics = upstreams.metrics().clone();
            let topology = Arc::new(build(&upstreams, view.shards, 1, replica_reads));
            tracing::info!(source = %source, epoch = ?view.epoch, "cluster discovered");
            log_topology(&topology);
            let manager = Arc::new(TopologyManager {
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
                replica_reads: Mutex::new(replica_reads),
                state: Mutex::new(RefreshState { epoch: view.epoch, stale: StaleGuard::default() }),
                groups: None,
            });
            // A connection that fails on its own (health check, node closed it) asks for a refresh. Weak: the
            // manager owns the registry that holds the hook.
            let weak = Arc::downgrade(&manager);
            manager.upstreams.on_trouble(Arc::new(move |_node, trouble| {
                if let Some(m) = weak.upgrade() {
                    m.request_refresh(match trouble {
                        NodeTrouble::NoReply => RefreshReason::HealthCheck,
                        NodeTrouble::Closed => RefreshReason::Unreachable,
                    });
                }
            }));
            return Ok(manager);
        }
        // One line per seed, in the order the operator gave them.
        errors.sort_by_key(|(seed, _)| seeds.iter().position(|s| s == seed));
        Err(DiscoveryError(errors.into_iter().map(|(seed, e)| format!("{seed}: {e}")).collect()))
    }

    /// How keys are placed on groups (fixed for the process).
    pub fn placement(&self) -> Placement {
        self.current.load().placement.clone()
    }

    fn replica_reads(&self) -> Option<i64> {
        *self.replica_reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether reads may go to replicas, and their lag bound (a config reload changed `read_from` or
    /// `max_replica_lag_bytes`). The map in use is rebuilt at once from the last view (no network: replica
    /// lists appear or disappear before the next command), then a refresh brings the lag figures up to date.
    pub fn set_replica_reads(&self, replica_reads: Option<i64>) {
        let old = std::mem::replace(&mut *self.replica_reads.lock().unwrap_or_else(|e| e.into_inner()), replica_reads);
        if old == replica_reads {
            return;
        }
        match &self.groups {
            // Groups: rebuilt from their last resolutions (their replicas' offsets are there).
            Some(g) => g.rebuild(self, replica_reads),
            None => {
                let current = self.current.load_full();
                let next = build(&self.upstreams, current.map.shards.clone(), current.version, replica_reads);
                self.current.store(Arc::new(next));
            }
        }
        self.trigger_refresh(None, RefreshReason::Periodic);
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
        self.request_refresh_for(None, reason)
    }

    /// [`Self::request_refresh`] for the group that serves `slot`: in a pool only that group is resolved again (the
    /// others are not concerned); everywhere else, everything is.
    pub fn request_refresh_for(&self, slot: Option<Slot>, reason: RefreshReason) {
        let m = &self.metrics;
        match reason {
            RefreshReason::Periodic => {}
            RefreshReason::Moved => Metrics::incr(&m.refresh_requests_moved),
            RefreshReason::Unreachable => Metrics::incr(&m.refresh_requests_unreachable),
            RefreshReason::ClusterDown => Metrics::incr(&m.refresh_requests_clusterdown),
            RefreshReason::NodeNotReady => Metrics::incr(&m.refresh_requests_node_not_ready),
            RefreshReason::HealthCheck => Metrics::incr(&m.refresh_requests_health_check),
            RefreshReason::Admin => Metrics::incr(&m.refresh_requests_admin),
            RefreshReason::SentinelEvent => Metrics::incr(&m.refresh_requests_sentinel_event),
        }
        let group = match (slot, &self.groups) {
            (Some(slot), Some(_)) => self.current.load().placement.ring().map(|_| slot.get() as usize),
            _ => None,
        };
        self.trigger_refresh(group, reason);
    }

    /// Wakes the refresher (a cluster's), or the resolver of `group` (None: of every group).
    fn trigger_refresh(&self, group: Option<usize>, reason: RefreshReason) {
        match &self.groups {
            Some(g) => g.trigger(group, reason),
            None => {
                let _ = self.pending_reason.compare_exchange(0, reason as u8, Ordering::Relaxed, Ordering::Relaxed);
                self.trigger.notify_one();
            }
        }
    }

    /// The refresher task: runs until `shutdown` changes. For groups, one loop per group (a slow group's
    /// resolution never delays another's).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Some(groups) = &self.groups {
            return groups.run(&self, shutdown).await;
        }
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

    /// Who a refresh asks, in order: the primaries (starting at a different one each time, so one slow node doesn't
    /// answer every refresh), the replicas, nodes the cluster reports as failed, then the seeds.
    fn candidates(&self, current: &Topology) -> Vec<NodeAddr> {
        let mut out: Vec<NodeAddr> = Vec::new();
        let mut push = |n: &NodeAddr| {
            if n.port != 0 && !out.contains(n) {
                out.push(n.clone());
            }
        };
        let shards = &current.map.shards;
        let turn = *self.refreshes.borrow() as usize;
        let healthy = |n: &NodeInfo| n.health != Health::Failed;
        for i in 0..shards.len() {
            let s = &shards[(turn + i) % shards.len()];
            if healthy(&s.primary) {
                push(&s.primary.addr);
            }
        }
        shards.iter().flat_map(|s| &s.replicas).filter(|r| healthy(r)).for_each(|r| push(&r.addr));
        for s in shards {
            std::iter::once(&s.primary).chain(&s.replicas).for_each(|n| push(&n.addr));
        }
        self.seeds.iter().for_each(&mut push);
        out
    }

    /// One refresh: asks the candidates [`REFRESH_FANOUT`] at a time until some answer, keeps the newest view, and
    /// swaps it in when it changes the layout. A view older than the map in use is ignored (see [`StaleGuard`]).
    async fn refresh(&self, reason: u8) {
        let current = self.current.load_full();
        let mut answers = Vec::new();
        for group in self.candidates(&current).chunks(REFRESH_FANOUT) {
            let (got, failed) = ask(&self.upstreams, group, REFRESH_TIMEOUT).await;
            for (node, error) in failed {
                tracing::debug!(node = %node, error = %error, "topology refresh: node did not answer");
            }
            if !got.is_empty() {
                answers = got;
                break;
            }
        }
        if answers.is_empty() {
            Metrics::incr(&self.metrics.topology_refresh_failures);
            tracing::warn!("topology refresh failed: no node answered");
            return;
        }
        Metrics::incr(&self.metrics.topology_refreshes);
        let epochs: Vec<Option<u64>> = answers.iter().map(|(_, v)| v.epoch).collect();
        let pick = {
            let mut state = self.state.lock().expect("refresh state poisoned");
            match choose_view(state.epoch, &epochs) {
                ViewChoice::Take(i) => {
                    state.stale.reset();
                    i
                }
                ViewChoice::Older { best } if state.stale.allow_older(Instant::now()) => {
                    tracing::warn!(
                        current_epoch = ?state.epoch,
                        epoch = ?epochs[best],
                        source = %answers[best].0,
                        "every node asked has reported an older cluster configuration for a while; taking it"
                    );
                    best
                }
                ViewChoice::Older { best } => {
                    Metrics::incr(&self.metrics.topology_stale_views);
                    tracing::info!(
                        current_epoch = ?state.epoch,
                        epoch = ?epochs[best],
                        source = %answers[best].0,
                        "ignoring an older view of the cluster (a node that missed a change?)"
                    );
                    return;
                }
            }
        };
        let (source, view) = answers.swap_remove(pick);
        let epoch = view.epoch;
        self.state.lock().expect("refresh state poisoned").epoch = epoch;
        let shards = view.shards;
        let replica_reads = self.replica_reads();
        if same_layout(&shards, &current.map.shards) {
            // Same layout; with replica reads the lag of each replica may have changed.
            if replica_reads.is_some() {
                let next = build(&self.upstreams, shards, current.version, replica_reads);
                if next.replicas.iter().map(Vec::len).ne(current.replicas.iter().map(Vec::len)) {
                    self.current.store(Arc::new(next));
                }
            }
            return;
        }
        let changes = describe_changes(&current.map.shards, &shards);
        let next = build(&self.upstreams, shards, current.version + 1, replica_reads);
        tracing::info!(
            version = next.version,
            reason = RefreshReason::name(reason),
            source = %source,
            epoch = ?epoch,
            changes = %changes.join("; "),
            "topology changed"
        );
        log_topology(&next);
        let next = Arc::new(next);
        self.current.store(next.clone());
        self.changes.send_replace(next);
        Metrics::incr(&self.metrics.topology_changes);
        let live = self.current.load();
        self.upstreams.retain(|a| {
            live.map.shards.iter().any(|s| s.primary.addr == *a || s.replicas.iter().any(|r| r.addr == *a))
        });
    }
}

/// Asks every node of `group` at once for its view; returns the answers in the order they arrived and why the
/// others gave none. Once one node has answered, the rest get [`ANSWER_GRACE`] more; none gets more than `timeout`.
async fn ask(
    upstreams: &Arc<Upstreams>,
    group: &[NodeAddr],
    timeout: Duration,
) -> (Vec<(NodeAddr, View)>, Vec<(NodeAddr, String)>) {
    let mut set = JoinSet::new();
    for addr in group {
        let (pool, tls, addr) = (upstreams.pool(addr), upstreams.uses_tls(), addr.clone());
        set.spawn(async move {
            let r = tokio::time::timeout(timeout, fetch_view(&pool, tls, timeout)).await;
            (addr, r.unwrap_or_else(|_| Err(format!("no reply within {timeout:?}"))))
        });
    }
    let (mut answers, mut errors) = (Vec::new(), Vec::new());
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        let next = match grace_until {
            None => set.join_next().await,
            Some(t) => match tokio::time::timeout_at(t, set.join_next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        match next {
            None => break,
            Some(Ok((addr, Ok(view)))) => {
                answers.push((addr, view));
                grace_until.get_or_insert_with(|| tokio::time::Instant::now() + ANSWER_GRACE);
            }
            Some(Ok((addr, Err(e)))) => errors.push((addr, e)),
            Some(Err(e)) => tracing::debug!(error = %e, "topology refresh task failed"),
        }
    }
    // Whoever is still silent: the tasks are aborted when `set` is dropped.
    for addr in group {
        if !answers.iter().any(|(a, _)| a == addr) && !errors.iter().any(|(a, _)| a == addr) {
            errors.push((addr.clone(), format!("no reply within {ANSWER_GRACE:?} of the first answer")));
        }
    }
    (answers, errors)
}

/// What changed between two layouts, for the log: slot ranges that changed owner, nodes that came, went, or
/// changed role or health. Long lists are cut (the full layout is logged next to it).
pub fn describe_changes(old: &[ShardInfo], new: &[ShardInfo]) -> Vec<String> {
    const MAX_ITEMS: usize = 12;
    fn owners(shards: &[ShardInfo]) -> Vec<Option<&NodeAddr>> {
        let mut owner: Vec<Option<&NodeAddr>> = vec![None; SLOT_COUNT];
        for s in shards {
            for &(a, b) in &s.slots {
                let b = b.min(SLOT_COUNT as u16 - 1);
                if a <= b {
                    owner[a as usize..=b as usize].fill(Some(&s.primary.addr));
                }
            }
        }
        owner
    }
    let (before, after) = (owners(old), owners(new));
    let name = |n: Option<&NodeAddr>| n.map_or_else(|| "nobody".to_string(), |a| a.to_string());
    let mut out = Vec::new();
    let mut slot = 0;
    while slot < SLOT_COUNT {
        if before[slot] == after[slot] {
            slot += 1;
            continue;
        }
        let start = slot;
        while slot + 1 < SLOT_COUNT && before[slot + 1] == before[start] && after[slot + 1] == after[start] {
            slot += 1;
        }
        let range = if start == slot { format!("slot {start}") } else { format!("slots {start}-{slot}") };
        out.push(format!("{range}: {} -> {}", name(before[start]), name(after[start])));
        slot += 1;
    }
    let nodes = |shards: &[ShardInfo]| -> Vec<(NodeAddr, Role, Health)> {
        shards
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
            .filter(|n| n.addr.port != 0)
            .map(|n| (n.addr.clone(), n.role, n.health))
            .collect()
    };
    let (was, is) = (nodes(old), nodes(new));
    let role = |r: Role| if r == Role::Primary { "primary" } else { "replica" };
    let health = |h: Health| match h {
        Health::Online => "online",
        Health::Loading => "loading",
        Health::Failed => "failed",
    };
    for (addr, r, h) in &is {
        match was.iter().find(|(a, _, _)| a == addr) {
            None => out.push(format!("{addr} joined as {} ({})", role(*r), health(*h))),
            Some((_, r0, h0)) => {
                if r0 != r {
                    out.push(format!("{addr}: {} -> {}", role(*r0), role(*r)));
                }
                if h0 != h {
                    out.push(format!("{addr}: {} -> {}", health(*h0), health(*h)));
                }
            }
        }
    }
    for (addr, r, _) in &was {
        if !is.iter().any(|(a, _, _)| a == addr) {
            out.push(format!("{addr} ({}) left", role(*r)));
        }
    }
    if out.len() > MAX_ITEMS {
        let more = out.len() - MAX_ITEMS;
        out.truncate(MAX_ITEMS);
        out.push(format!("and {more} more"));
    }
    if out.is_empty() {
        out.push("node ids or shard membership".to_string());
    }
    out
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
    Topology {
        map: SlotMap::new(shards),
        placement: Placement::Slots,
        primaries,
        replicas,
        version,
        problems: Vec::new(),
    }
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

/// One node's view: CLUSTER SHARDS (or SLOTS) and, pipelined on the same connection, CLUSTER NODES for the
/// config epochs. A node that answers SHARDS but not NODES still gives a view, of unknown epoch.
async fn fetch_view(pool: &NodePool, tls: bool, timeout: Duration) -> Result<View, String> {
    let (shards, nodes) =
        tokio::join!(fetch_shards(pool, tls, timeout), call_value(pool, &[b"CLUSTER", b"NODES"], timeout));
    let shards = shards?;
    let epoch = match nodes.as_ref().map(parse_cluster_nodes_epochs) {
        Ok(Ok(epochs)) => view_epoch(&shards, &epochs),
        Ok(Err(e)) => {
            tracing::debug!(node = %pool.addr, error = %e, "CLUSTER NODES: no config epochs");
            None
        }
        Err(e) => {
            tracing::debug!(node = %pool.addr, error = %e, "CLUSTER NODES failed: no config epochs");
            None
        }
    };
    Ok(View { shards, epoch })
}

/// CLUSTER SHARDS (Redis 7), falling back to CLUSTER SLOTS when the node doesn't know SHARDS.
/// `tls` decides which port to take when a node announces both a plain and a TLS port.
async fn fetch_shards(pool: &NodePool, tls: bool, timeout: Duration) -> Result<Vec<ShardInfo>, String> {
    let mut shards = fetch_shards_unordered(pool, tls, timeout).await?;
    // Every node lists shards (and replicas) in its own order: sort them so equal layouts compare equal.
    for s in &mut shards {
        s.slots.sort_unstable();
        s.replicas.sort_by(|a, b| a.addr.cmp(&b.addr));
    }
    shards.sort_by_key(|s| (s.slots.is_empty(), s.slots.first().copied(), s.primary.addr.clone()));
    Ok(shards)
}

async fn fetch_shards_unordered(pool: &NodePool, tls: bool, timeout: Duration) -> Result<Vec<ShardInfo>, String> {
    let host = pool.addr.host.clone();
    let ports = if tls { PortPreference::Tls } else { PortPreference::Plain };
    match call_value(pool, &[b"CLUSTER", b"SHARDS"], timeout).await? {
        Value::Error(e) | Value::BlobError(e) => {
            let text = String::from_utf8_lossy(&e).into_owned();
            if !text.contains("unknown subcommand") && !text.contains("Unknown subcommand") {
                return Err(text);
            }
            match call_value(pool, &[b"CLUSTER", b"SLOTS"], timeout).await? {
                Value::Error(e) | Value::BlobError(e) => Err(String::from_utf8_lossy(&e).into_owned()),
                v => parse_cluster_slots(&v, &host).map_err(|e| e.to_string()),
            }
        }
        v => parse_cluster_shards_with(&v, &host, ports).map_err(|e| e.to_string()),
    }
}

mod group;
pub use group::{EjectPolicy, GroupMember, GroupReport};

#[cfg(test)]
mod tests;
