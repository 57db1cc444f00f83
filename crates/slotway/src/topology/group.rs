//! The topology of a backend made of replication groups found by [`GroupResolver`]s: one group (a Sentinel-managed
//! or static set, [`Placement::Single`]) or a sharded pool of them ([`Placement::Ring`], one resolver per shard).
//! Each resolution of a group changes only that group's part of the [`Topology`]; everything downstream is shared
//! with the cluster.
//!
//! - **One loop per group.** Each group is resolved on its own timer (`sentinel.poll_interval_ms` /
//!   `servers.poll_interval_ms`) and its own triggers, merged and rate-limited as the cluster's: a failover in one
//!   shard never waits for (or disturbs) another shard's resolution. Triggers are the cluster's
//!   (READONLY/LOADING/MASTERDOWN, unreachable nodes, failed health checks, requests for a group with no primary:
//!   for the group concerned in a pool, for every group on `SLOTWAY REFRESH`) plus sentinel events.
//! - **Fences.** A sentinel event saying a failover has started removes that group's primary from the topology at
//!   once: from then on its requests wait (within the retry deadline) instead of reaching a primary that is about
//!   to be replaced, where an acknowledged write could be lost. A resolution that started before a fence is not
//!   used (it may predate the failover); another one runs.
//! - **DNS names.** When a node answers READONLY (or LOADING, MASTERDOWN) and the resolution finds the same address is
//!   still the primary, and that address is a host name, its pool is renewed: the open connections may lead to the
//!   server the name meant before (a managed service's primary endpoint after a failover), new ones resolve it again.
//! - **Ejection** (pools with `sharding.auto_eject_hosts`, twemproxy's option): a shard whose resolutions find no
//!   primary `server_failure_limit` times in a row is taken out of the ring, so its keys go to other shards; it is
//!   put back once a resolution finds its primary again, no sooner than `server_retry_timeout_ms` after.
use super::{Placement, RefreshReason, Topology, TopologyManager};
use crate::backend::servers::futures_join_all;
use crate::backend::{EventHook, GroupEvent, GroupResolver, GroupView};
use crate::cluster::{Health, NodeAddr, NodeInfo, Role, ShardInfo, Slot, SlotMap};
use crate::metrics::Metrics;
use crate::upstream::{NodePool, NodeTrouble, Upstreams};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{watch, Notify};

/// twemproxy's `auto_eject_hosts` for a pool: when a shard leaves the ring, and when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectPolicy {
    /// Resolutions in a row that find no primary before the shard is ejected.
    pub failure_limit: u32,
    /// An ejected shard comes back once a resolution finds its primary, but no sooner than this after it left.
    pub retry_timeout: Duration,
}

/// One replication group of the backend, with its first resolution.
pub struct GroupMember {
    pub resolver: GroupResolver,
    pub first: GroupView,
    /// How often it is resolved without a trigger.
    pub interval: Duration,
    /// Its ring name in a pool; None for a single group.
    pub shard: Option<String>,
}

/// What the manager keeps for one group.
struct GroupState {
    /// Its index among the groups (its token in a pool).
    index: usize,
    resolver: GroupResolver,
    interval: Duration,
    report: Mutex<GroupReport>,
    /// Counts fences, so a resolution that started before one is not used.
    fences: AtomicU64,
    /// The last resolution, to rebuild the topology when the read policy changes (a reload).
    last_view: Mutex<GroupView>,
    trigger: Notify,
    /// The first reason seen since the group's last resolution started (0 = none).
    pending_reason: AtomicU8,
    /// For ejection: resolutions in a row without a primary, and when the shard was ejected.
    failures: Mutex<(u32, Option<Instant>)>,
}

/// The groups of a Sentinel/static backend or a pool.
pub(super) struct Groups {
    list: Vec<GroupState>,
    /// Serializes changes to the topology made by different groups' resolutions and fences (never held across an
    /// await).
    writer: Mutex<()>,
    eject: Option<EjectPolicy>,
}

/// A group as operators see it (`INFO proxy`, `/metrics`, `SLOTWAY TOPOLOGY`).
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    /// `sentinel` or `static`.
    pub kind: &'static str,
    /// The Sentinel master name, or `static`.
    pub name: String,
    /// The shard's ring name, in a pool.
    pub shard: Option<String>,
    /// Taken out of the pool's ring (`sharding.auto_eject_hosts`).
    pub ejected: bool,
    pub primary: Option<NodeAddr>,
    /// Replicas attached to the primary (link up); reads use those within `max_replica_lag_bytes`.
    pub replicas: Vec<NodeAddr>,
    /// Why there is no primary.
    pub problem: Option<String>,
    /// Who the last resolution believed (`sentinel 10.0.0.1:26379 (config epoch 3)`, `ROLE of every server`).
    pub source: String,
    /// When the primary last changed and why (`sentinel-event: 10.0.0.1:6379 -> 10.0.0.2:6379`).
    pub last_change: Option<(SystemTime, String)>,
    /// Where discovery asks (the sentinels known now, or the servers).
    pub sources: Vec<String>,
}

impl Groups {
    /// Wakes the resolution of `group`, or of every group.
    pub(super) fn trigger(&self, group: Option<usize>, reason: RefreshReason) {
        for g in self.list.iter().filter(|g| group.is_none_or(|i| i == g.index)) {
            let _ = g.pending_reason.compare_exchange(0, reason as u8, Ordering::Relaxed, Ordering::Relaxed);
            g.trigger.notify_one();
        }
    }

    /// Every group's resolution loop, until `shutdown` changes.
    pub(super) async fn run(&self, manager: &TopologyManager, shutdown: watch::Receiver<bool>) {
        futures_join_all(self.list.iter().map(|g| group_loop(manager, g, shutdown.clone()))).await;
    }

    /// The topology with another replica read policy, from each group's last resolution (primaries and fences
    /// kept as they are).
    pub(super) fn rebuild(&self, manager: &TopologyManager, replica_reads: Option<i64>) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = manager.current.load_full();
        let mut replicas = current.replicas.clone();
        for g in &self.list {
            let view = g.last_view.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let parts = group_parts(&manager.upstreams, &view, replica_reads, false);
            replicas[g.index] = if current.primaries[g.index].is_some() { parts.replicas } else { Vec::new() };
        }
        manager.current.store(Arc::new(Topology {
            map: current.map.clone(),
            placement: current.placement.clone(),
            primaries: current.primaries.clone(),
            replicas,
            version: current.version,
            problems: current.problems.clone(),
        }));
    }
}

async fn group_loop(manager: &TopologyManager, g: &GroupState, mut shutdown: watch::Receiver<bool>) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = g.trigger.notified() => {}
            _ = tokio::time::sleep(g.interval) => {
                let _ = g.pending_reason.compare_exchange(0, RefreshReason::Periodic as u8, Ordering::Relaxed, Ordering::Relaxed);
            }
            _ = shutdown.changed() => return,
        }
        let since = last.elapsed();
        if since < manager.min_interval {
            tokio::time::sleep(manager.min_interval - since).await;
        }
        last = Instant::now();
        let reason = g.pending_reason.swap(0, Ordering::Relaxed);
        manager.refresh_group(g, reason).await;
        manager.refreshes.send_modify(|n| *n += 1);
    }
}

impl TopologyManager {
    /// A manager for one replication group, starting from its first resolution. The periodic resolution runs every
    /// `interval`; the sentinel watchers start with [`TopologyManager::start_group_watchers`].
    pub fn for_group(
        upstreams: Arc<Upstreams>,
        resolver: GroupResolver,
        first: GroupView,
        interval: Duration,
        min_interval: Duration,
        replica_reads: Option<i64>,
    ) -> Arc<TopologyManager> {
        let member = GroupMember { resolver, first, interval, shard: None };
        Self::for_groups(upstreams, Placement::Single, vec![member], min_interval, replica_reads, None)
    }

    /// A manager for the groups of a pool (`placement` is its ring; group `i` is the ring's server `i`), or for
    /// one group ([`Placement::Single`]), starting from their first resolutions.
    pub fn for_groups(
        upstreams: Arc<Upstreams>,
        placement: Placement,
        members: Vec<GroupMember>,
        min_interval: Duration,
        replica_reads: Option<i64>,
        eject: Option<EjectPolicy>,
    ) -> Arc<TopologyManager> {
        let metrics = upstreams.metrics().clone();
        let mut all = Vec::new();
        let mut list = Vec::new();
        for (index, m) in members.into_iter().enumerate() {
            metrics.group_role_mismatches.fetch_add(u64::from(m.first.role_mismatches), Ordering::Relaxed);
            all.push(group_parts(&upstreams, &m.first, replica_reads, false));
            let report = GroupReport {
                kind: m.resolver.kind(),
                name: m.resolver.name().to_string(),
                shard: m.shard,
                ejected: false,
                primary: m.first.primary.as_ref().map(|p| p.addr.clone()),
                replicas: m.first.replicas.iter().map(|r| r.addr.clone()).collect(),
                problem: m.first.problem.clone(),
                source: m.first.source.clone(),
                last_change: Some((SystemTime::now(), "startup".to_string())),
                sources: Vec::new(),
            };
            log_group(&report, "group discovered");
            list.push(GroupState {
                index,
                resolver: m.resolver,
                interval: m.interval,
                report: Mutex::new(report),
                fences: AtomicU64::new(0),
                last_view: Mutex::new(m.first),
                trigger: Notify::new(),
                pending_reason: AtomicU8::new(0),
                failures: Mutex::new((0, None)),
            });
        }
        let topology = Arc::new(assemble(all, placement, 1));
        let manager = Arc::new(TopologyManager {
            current: ArcSwap::new(topology.clone()),
            changes: watch::Sender::new(topology),
            refreshes: watch::Sender::new(0),
            upstreams,
            seeds: Vec::new(),
            trigger: Notify::new(),
            pending_reason: AtomicU8::new(0),
            metrics,
            min_interval,
            // (Each group has its own interval.)
            interval: Duration::from_secs(3600),
            replica_reads: Mutex::new(replica_reads),
            state: Default::default(),
            groups: Some(Groups { list, writer: Mutex::new(()), eject }),
        });
        let weak = Arc::downgrade(&manager);
        manager.upstreams.on_trouble(Arc::new(move |node, trouble| {
            if let Some(m) = weak.upgrade() {
                let reason = match trouble {
                    NodeTrouble::NoReply => RefreshReason::HealthCheck,
                    NodeTrouble::Closed => RefreshReason::Unreachable,
                };
                m.request_refresh_for(m.group_of_node(node).and_then(|g| Slot::new(g as u16)), reason);
            }
        }));
        manager
    }

    /// The group whose primary or replica `node` is, if any.
    fn group_of_node(&self, node: &NodeAddr) -> Option<usize> {
        let current = self.current.load();
        current.map.shards.iter().position(|s| s.primary.addr == *node || s.replicas.iter().any(|r| r.addr == *node))
    }

    /// Starts the groups' watchers (subscriptions to the sentinels' events): events fence the group's primary or
    /// ask for its resolution. Nothing to do for a cluster or static sets.
    pub fn start_group_watchers(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let Some(groups) = &self.groups else { return };
        for g in &groups.list {
            let weak = Arc::downgrade(self);
            let index = g.index;
            let hook: EventHook = Arc::new(move |ev| {
                let Some(m) = weak.upgrade() else { return };
                match ev {
                    GroupEvent::Fence(why) => m.fence(index, &why),
                    GroupEvent::Refresh => {}
                }
                Metrics::incr(&m.metrics.sentinel_events);
                m.request_refresh_for(Slot::new(index as u16), RefreshReason::SentinelEvent);
            });
            g.resolver.start_watchers(hook, shutdown.clone());
        }
    }

    /// A single group's state for operators; None for a cluster or a pool.
    pub fn group_report(&self) -> Option<GroupReport> {
        let groups = self.groups.as_ref()?;
        if groups.list.len() != 1 || self.current.load().placement != Placement::Single {
            return None;
        }
        self.group_reports().into_iter().next()
    }

    /// Every group's state for operators, in order (a pool's shards in configuration order); empty for a cluster.
    pub fn group_reports(&self) -> Vec<GroupReport> {
        let Some(groups) = &self.groups else { return Vec::new() };
        groups
            .list
            .iter()
            .map(|g| {
                let mut r = g.report.lock().expect("group report poisoned").clone();
                r.sources = g.resolver.sources();
                r
            })
            .collect()
    }

    /// A failover of group `index` started: it has no primary until a resolution finds the new one.
    fn fence(&self, index: usize, why: &str) {
        let Some(groups) = &self.groups else { return };
        let g = &groups.list[index];
        let _writer = groups.writer.lock().unwrap_or_else(|e| e.into_inner());
        // Even with no primary now: a resolution under way may be about to install one from before the failover.
        g.fences.fetch_add(1, Ordering::AcqRel);
        let current = self.current.load_full();
        if current.primaries[index].is_none() {
            return;
        }
        Metrics::incr(&self.metrics.group_fences);
        let problem = format!("a failover is in progress ({why})");
        tracing::warn!(group = %g.resolver.name(), event = %why, "failover started: requests wait for the new primary");
        let mut shard = current.map.shards[index].clone();
        shard.primary = NodeInfo { health: Health::Failed, ..placeholder() };
        let parts = Parts { shard, primary: None, replicas: Vec::new(), problem: Some(Arc::from(problem.as_str())) };
        let next = Arc::new(splice(&current, index, parts, current.version + 1));
        self.current.store(next.clone());
        self.changes.send_replace(next);
        let mut report = g.report.lock().expect("group report poisoned");
        let old = report.primary.take().map_or_else(|| "none".to_string(), |a| a.to_string());
        report.last_change = Some((SystemTime::now(), format!("fenced: {old} -> none ({why})")));
        report.problem = Some(problem);
        Metrics::incr(&self.metrics.group_primary_changes);
    }

    /// One resolution of group `g`, swapped in when it changes something.
    async fn refresh_group(&self, g: &GroupState, reason: u8) {
        let groups = self.groups.as_ref().expect("groups");
        let m = &self.metrics;
        Metrics::incr(match reason {
            1 => &m.group_resolutions_periodic,
            8 => &m.group_resolutions_sentinel_event,
            5 => &m.group_resolutions_node_not_ready,
            3 => &m.group_resolutions_unreachable,
            _ => &m.group_resolutions_other,
        });
        let fences = g.fences.load(Ordering::Acquire);
        let pool_static = groups.list.len() > 1 && matches!(g.resolver, GroupResolver::Static(_));
        let view = match g.resolver.resolve().await {
            Ok(v) => v,
            Err(failure) if pool_static => {
                // A static shard of a pool whose servers all fail to answer has no primary: its keys get an error
                // that names the shard (after the retry deadline) instead of trying a dead address forever.
                Metrics::incr(&m.group_resolution_failures);
                GroupView {
                    problem: Some(format!("no server answers ({})", failure.reasons.join("; "))),
                    source: "ROLE of every server".to_string(),
                    ..GroupView::default()
                }
            }
            Err(failure) => {
                // Nobody answered (every sentinel down, every server unreachable). The group itself may be fine:
                // keep what is in use; requests to a dead primary fail over to this same path again.
                Metrics::incr(&m.group_resolution_failures);
                tracing::warn!(group = %g.resolver.name(), reasons = ?failure.reasons, "group resolution got no answer");
                let _writer = groups.writer.lock().unwrap_or_else(|e| e.into_inner());
                if self.note_primary(groups, g, false) {
                    let current = self.current.load_full();
                    self.publish(splice_same(&current));
                }
                return;
            }
        };
        Metrics::incr(&m.topology_refreshes);
        m.group_role_mismatches.fetch_add(u64::from(view.role_mismatches), Ordering::Relaxed);
        if view.primary.is_none() {
            Metrics::incr(&m.group_resolutions_without_primary);
        }
        let _writer = groups.writer.lock().unwrap_or_else(|e| e.into_inner());
        if g.fences.load(Ordering::Acquire) != fences {
            // A failover started while this resolution ran: it may describe the group from before. Look again.
            drop(_writer);
            self.request_refresh_for(Slot::new(g.index as u16), RefreshReason::SentinelEvent);
            return;
        }
        let ring_changed = self.note_primary(groups, g, view.primary.is_some());
        let index = g.index;
        let current = self.current.load_full();
        let old_primary = current.primaries[index].as_ref().map(|p| p.addr.clone());
        let new_primary = view.primary.as_ref().map(|p| p.addr.clone());
        // The same name still says it is the primary, yet a node refused as a replica would: renew its connections.
        let renew = reason == RefreshReason::NodeNotReady as u8
            && new_primary.is_some()
            && new_primary == old_primary
            && new_primary.as_ref().is_some_and(|a| a.host.parse::<std::net::IpAddr>().is_err());
        let parts = group_parts(&self.upstreams, &view, self.replica_reads(), renew);
        *g.last_view.lock().unwrap_or_else(|e| e.into_inner()) = view.clone();
        let addrs = |v: &[NodeInfo]| -> Vec<NodeAddr> { v.iter().map(|r| r.addr.clone()).collect() };
        let pools = |v: &[Arc<NodePool>]| -> Vec<NodeAddr> { v.iter().map(|p| p.addr.clone()).collect() };
        let changed =
            old_primary != new_primary || addrs(&current.map.shards[index].replicas) != addrs(&parts.shard.replicas);
        let same_use = pools(&current.replicas[index]) == pools(&parts.replicas)
            && current.problems.get(index).cloned().flatten() == parts.problem;
        if !changed && !renew && !ring_changed && same_use {
            return;
        }
        let bump = changed || renew || ring_changed;
        let next = splice(&current, index, parts, current.version + u64::from(bump));
        let why = RefreshReason::name(reason);
        {
            let mut report = g.report.lock().expect("group report poisoned");
            if old_primary != new_primary {
                let name = |a: &Option<NodeAddr>| a.as_ref().map_or_else(|| "none".to_string(), |a| a.to_string());
                report.last_change = Some((
                    SystemTime::now(),
                    format!("{why}: {} -> {} ({})", name(&old_primary), name(&new_primary), view.source),
                ));
                Metrics::incr(&m.group_primary_changes);
            }
            report.primary = new_primary.clone();
            report.replicas = view.replicas.iter().map(|r| r.addr.clone()).collect();
            report.problem = view.problem.clone();
            report.source = view.source.clone();
            if changed || renew {
                let what = if renew {
                    "primary's connections renewed (its name may point elsewhere now)"
                } else {
                    "group changed"
                };
                log_group(&report, what);
            }
        }
        if bump {
            self.publish(next);
        } else {
            self.current.store(Arc::new(next));
        }
        let live = self.current.load();
        let keep: Vec<NodeAddr> = live
            .map
            .shards
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
            .map(|n| n.addr.clone())
            .collect();
        self.upstreams.retain(|a| keep.contains(a));
    }

    /// Swaps in a new topology and tells the observers (waiting retries go at once).
    fn publish(&self, next: Topology) {
        let next = Arc::new(next);
        self.current.store(next.clone());
        self.changes.send_replace(next);
        Metrics::incr(&self.metrics.topology_changes);
    }

    /// Ejection bookkeeping after a resolution of `g` that found a primary or not (pools with auto-eject only):
    /// ejects or restores the shard when its time has come. Returns whether the ring changed. Called under the
    /// writer lock.
    fn note_primary(&self, groups: &Groups, g: &GroupState, found: bool) -> bool {
        let (Some(policy), Some(ring)) = (groups.eject, self.current.load().placement.ring().cloned()) else {
            return false;
        };
        let mut failures = g.failures.lock().unwrap_or_else(|e| e.into_inner());
        let name = ring.name_of(g.index);
        if !found {
            failures.0 = failures.0.saturating_add(1);
            if failures.0 >= policy.failure_limit && failures.1.is_none() && ring.set_ejected(g.index, true) {
                failures.1 = Some(Instant::now());
                Metrics::incr(&self.metrics.pool_shards_ejected);
                g.report.lock().expect("group report poisoned").ejected = true;
                tracing::warn!(
                    shard = %name,
                    failures = failures.0,
                    "auto_eject_hosts: shard ejected from the ring; its keys now go to other shards"
                );
                return true;
            }
            return false;
        }
        failures.0 = 0;
        match failures.1 {
            Some(at) if at.elapsed() >= policy.retry_timeout && ring.set_ejected(g.index, false) => {
                failures.1 = None;
                Metrics::incr(&self.metrics.pool_shards_restored);
                g.report.lock().expect("group report poisoned").ejected = false;
                tracing::warn!(shard = %name, "auto_eject_hosts: shard back in the ring; its keys go to it again");
                true
            }
            _ => false,
        }
    }
}

fn log_group(r: &GroupReport, what: &str) {
    let replicas: Vec<String> = r.replicas.iter().map(|a| a.to_string()).collect();
    let shard = r.shard.as_deref().unwrap_or("-");
    match &r.primary {
        Some(p) => tracing::info!(
            group = %r.name,
            shard,
            kind = r.kind,
            primary = %p,
            replicas = ?replicas,
            source = %r.source,
            "{what}"
        ),
        None => tracing::warn!(
            group = %r.name,
            shard,
            kind = r.kind,
            problem = %r.problem.as_deref().unwrap_or("unknown"),
            "{what}: no primary; requests wait for one"
        ),
    }
}

/// One group's part of a topology.
struct Parts {
    shard: ShardInfo,
    primary: Option<Arc<NodePool>>,
    replicas: Vec<Arc<NodePool>>,
    problem: Option<Arc<str>>,
}

/// The stand-in primary of a group that has none (port 0: never connected to).
fn placeholder() -> NodeInfo {
    NodeInfo {
        id: None,
        addr: NodeAddr::new("", 0),
        ip: None,
        role: Role::Primary,
        health: Health::Failed,
        replication_offset: None,
    }
}

/// A group's part of the topology from a resolution. `renew`: the primary gets new connections.
fn group_parts(upstreams: &Upstreams, view: &GroupView, replica_reads: Option<i64>, renew: bool) -> Parts {
    let node = |addr: &NodeAddr, role, offset| NodeInfo {
        id: None,
        addr: addr.clone(),
        ip: None,
        role,
        health: Health::Online,
        replication_offset: offset,
    };
    let primary_info = match &view.primary {
        Some(p) => node(&p.addr, Role::Primary, p.offset),
        None => placeholder(),
    };
    let primary_offset = view.primary.as_ref().and_then(|p| p.offset);
    let replicas: Vec<_> = match (replica_reads, &view.primary) {
        (Some(max_lag), Some(_)) => view
            .replicas
            .iter()
            .filter(|r| match (primary_offset, r.offset) {
                (Some(p), Some(o)) if p > 0 && o > 0 => p - o <= max_lag,
                _ => true,
            })
            .map(|r| upstreams.replica_pool(&r.addr))
            .collect(),
        _ => Vec::new(),
    };
    let primary = view.primary.as_ref().map(|p| if renew { upstreams.renew(&p.addr) } else { upstreams.pool(&p.addr) });
    let shard = ShardInfo {
        primary: primary_info,
        replicas: view.replicas.iter().map(|r| node(&r.addr, Role::Replica, r.offset)).collect(),
        slots: Vec::new(),
    };
    Parts { shard, primary, replicas, problem: view.problem.as_deref().map(Arc::from) }
}

/// The topology of every group's part.
fn assemble(parts: Vec<Parts>, placement: Placement, version: u64) -> Topology {
    let mut shards = Vec::with_capacity(parts.len());
    let (mut primaries, mut replicas, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    for p in parts {
        shards.push(p.shard);
        primaries.push(p.primary);
        replicas.push(p.replicas);
        problems.push(p.problem);
    }
    Topology { map: SlotMap::new(shards), placement, primaries, replicas, version, problems }
}

/// `current` with group `index` replaced by `parts`.
fn splice(current: &Topology, index: usize, parts: Parts, version: u64) -> Topology {
    let mut map = current.map.clone();
    map.shards[index] = parts.shard;
    let mut primaries = current.primaries.clone();
    primaries[index] = parts.primary;
    let mut replicas = current.replicas.clone();
    replicas[index] = parts.replicas;
    let mut problems = current.problems.clone();
    problems[index] = parts.problem;
    Topology { map, placement: current.placement.clone(), primaries, replicas, version, problems }
}

/// `current` again under a new version (the ring inside its placement changed).
fn splice_same(current: &Topology) -> Topology {
    Topology {
        map: current.map.clone(),
        placement: current.placement.clone(),
        primaries: current.primaries.clone(),
        replicas: current.replicas.clone(),
        version: current.version + 1,
        problems: current.problems.clone(),
    }
}
