//! The topology of a backend that is one replication group (Sentinel-managed or a static set): resolutions through
//! its [`GroupResolver`] become a [`Topology`] with [`Placement::Single`]; everything downstream is shared with the
//! cluster.
//!
//! - **Triggers** are the cluster's (READONLY/LOADING/MASTERDOWN, unreachable nodes, failed health checks,
//!   `SLOTWAY REFRESH`, requests for a group with no primary) plus sentinel events, and the timer
//!   (`sentinel.poll_interval_ms` / `servers.poll_interval_ms`). They are merged: one resolution at a time.
//! - **Fences.** A sentinel event saying a failover has started swaps in a topology without a primary at once: from
//!   then on requests wait (within the retry deadline) instead of reaching a primary that is about to be replaced,
//!   where an acknowledged write could be lost. A resolution that started before a fence is not used (it may predate
//!   the failover); another one runs.
//! - **DNS names.** When a node answers READONLY (or LOADING, MASTERDOWN) and the resolution finds the same address is
//!   still the primary, and that address is a host name, its pool is renewed: the open connections may lead to the
//!   server the name meant before (a managed service's primary endpoint after a failover), new ones resolve it again.
use super::{Placement, RefreshReason, Topology, TopologyManager};
use crate::backend::{EventHook, GroupEvent, GroupResolver, GroupView};
use crate::cluster::{Health, NodeAddr, NodeInfo, Role, ShardInfo, SlotMap};
use crate::metrics::Metrics;
use crate::upstream::{NodeTrouble, Upstreams};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};

/// What the manager keeps for a single group.
pub(super) struct GroupState {
    resolver: GroupResolver,
    report: Mutex<GroupReport>,
    /// Counts fences, so a resolution that started before one is not used.
    fences: AtomicU64,
    /// The last resolution, to rebuild the topology when the read policy changes (a reload).
    last_view: Mutex<GroupView>,
}

impl GroupState {
    /// The topology from the last resolution with another replica read policy (version kept).
    pub(super) fn rebuild(&self, upstreams: &Upstreams, version: u64, replica_reads: Option<i64>) -> Topology {
        let view = self.last_view.lock().unwrap_or_else(|e| e.into_inner()).clone();
        build_group(upstreams, &view, version, replica_reads, false)
    }
}

/// The group as operators see it (`INFO proxy`, `/metrics`, `SLOTWAY TOPOLOGY`).
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    /// `sentinel` or `static`.
    pub kind: &'static str,
    /// The Sentinel master name, or `static`.
    pub name: String,
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
        let metrics = upstreams.metrics().clone();
        metrics.group_role_mismatches.fetch_add(u64::from(first.role_mismatches), Ordering::Relaxed);
        let topology = Arc::new(build_group(&upstreams, &first, 1, replica_reads, false));
        let report = GroupReport {
            kind: resolver.kind(),
            name: resolver.name().to_string(),
            primary: first.primary.as_ref().map(|p| p.addr.clone()),
            replicas: first.replicas.iter().map(|r| r.addr.clone()).collect(),
            problem: first.problem.clone(),
            source: first.source.clone(),
            last_change: Some((SystemTime::now(), "startup".to_string())),
            sources: Vec::new(),
        };
        log_group(&report, "group discovered");
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
            interval,
            replica_reads: Mutex::new(replica_reads),
            state: Default::default(),
            group: Some(GroupState {
                resolver,
                report: Mutex::new(report),
                fences: AtomicU64::new(0),
                last_view: Mutex::new(first),
            }),
        });
        let weak = Arc::downgrade(&manager);
        manager.upstreams.on_trouble(Arc::new(move |_node, trouble| {
            if let Some(m) = weak.upgrade() {
                m.request_refresh(match trouble {
                    NodeTrouble::NoReply => RefreshReason::HealthCheck,
                    NodeTrouble::Closed => RefreshReason::Unreachable,
                });
            }
        }));
        manager
    }

    /// Starts the group's watchers (subscriptions to the sentinels' events): events fence the primary or ask for a
    /// resolution. Nothing to do for a cluster or a static set.
    pub fn start_group_watchers(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let Some(g) = &self.group else { return };
        let weak = Arc::downgrade(self);
        let hook: EventHook = Arc::new(move |ev| {
            let Some(m) = weak.upgrade() else { return };
            match ev {
                GroupEvent::Fence(why) => m.fence(&why),
                GroupEvent::Refresh => {}
            }
            Metrics::incr(&m.metrics.sentinel_events);
            m.request_refresh(RefreshReason::SentinelEvent);
        });
        g.resolver.start_watchers(hook, shutdown);
    }

    /// The group's state for operators; None for a cluster.
    pub fn group_report(&self) -> Option<GroupReport> {
        let g = self.group.as_ref()?;
        let mut r = g.report.lock().expect("group report poisoned").clone();
        r.sources = g.resolver.sources();
        Some(r)
    }

    /// A failover of the group started: no primary until a resolution finds the new one.
    fn fence(&self, why: &str) {
        let Some(g) = &self.group else { return };
        // Even with no primary now: a resolution under way may be about to install one from before the failover.
        g.fences.fetch_add(1, Ordering::AcqRel);
        let current = self.current.load_full();
        if current.primaries.first().is_none_or(Option::is_none) {
            return;
        }
        Metrics::incr(&self.metrics.group_fences);
        let problem = format!("a failover is in progress ({why})");
        tracing::warn!(group = %g.resolver.name(), event = %why, "failover started: requests wait for the new primary");
        let next = Arc::new(Topology {
            map: current.map.clone(),
            placement: Placement::Single,
            primaries: vec![None],
            replicas: vec![Vec::new()],
            version: current.version + 1,
            problem: Some(Arc::from(problem.as_str())),
        });
        self.current.store(next.clone());
        self.changes.send_replace(next);
        let mut report = g.report.lock().expect("group report poisoned");
        let old = report.primary.take().map_or_else(|| "none".to_string(), |a| a.to_string());
        report.last_change = Some((SystemTime::now(), format!("fenced: {old} -> none ({why})")));
        report.problem = Some(problem);
        Metrics::incr(&self.metrics.group_primary_changes);
    }

    /// One resolution of the group, swapped in when it changes something.
    pub(super) async fn refresh_group(&self, g: &GroupState, reason: u8) {
        let m = &self.metrics;
        Metrics::incr(match reason {
            1 => &m.group_resolutions_periodic,
            8 => &m.group_resolutions_sentinel_event,
            5 => &m.group_resolutions_node_not_ready,
            3 => &m.group_resolutions_unreachable,
            _ => &m.group_resolutions_other,
        });
        let fences = g.fences.load(Ordering::Acquire);
        let view = match g.resolver.resolve().await {
            Ok(v) => v,
            Err(failure) => {
                // Nobody answered (every sentinel down, every server unreachable). The group itself may be fine:
                // keep what is in use; requests to a dead primary fail over to this same path again.
                Metrics::incr(&m.group_resolution_failures);
                tracing::warn!(group = %g.resolver.name(), reasons = ?failure.reasons, "group resolution got no answer");
                return;
            }
        };
        Metrics::incr(&m.topology_refreshes);
        m.group_role_mismatches.fetch_add(u64::from(view.role_mismatches), Ordering::Relaxed);
        if view.primary.is_none() {
            Metrics::incr(&m.group_resolutions_without_primary);
        }
        if g.fences.load(Ordering::Acquire) != fences {
            // A failover started while this resolution ran: it may describe the group from before. Look again.
            self.request_refresh(RefreshReason::SentinelEvent);
            return;
        }
        let current = self.current.load_full();
        let old_primary = current.primaries.first().and_then(Option::as_ref).map(|p| p.addr.clone());
        let new_primary = view.primary.as_ref().map(|p| p.addr.clone());
        // The same name still says it is the primary, yet a node refused as a replica would: renew its connections.
        let renew = reason == RefreshReason::NodeNotReady as u8
            && new_primary.is_some()
            && new_primary == old_primary
            && new_primary.as_ref().is_some_and(|a| a.host.parse::<std::net::IpAddr>().is_err());
        let next = build_group(&self.upstreams, &view, current.version, self.replica_reads(), renew);
        *g.last_view.lock().unwrap_or_else(|e| e.into_inner()) = view.clone();
        let replicas_of = |t: &Topology| -> Vec<NodeAddr> {
            t.map.shards.first().map(|s| s.replicas.iter().map(|r| r.addr.clone()).collect()).unwrap_or_default()
        };
        let usable = |t: &Topology| -> Vec<NodeAddr> {
            t.replicas.first().map(|r| r.iter().map(|p| p.addr.clone()).collect()).unwrap_or_default()
        };
        let changed = old_primary != new_primary || replicas_of(&current) != replicas_of(&next);
        if !changed && !renew && usable(&current) == usable(&next) && current.problem == next.problem {
            return;
        }
        let mut next = next;
        if changed || renew {
            next.version = current.version + 1;
        }
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
        let next = Arc::new(next);
        self.current.store(next.clone());
        if changed || renew {
            self.changes.send_replace(next);
            Metrics::incr(&m.topology_changes);
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
}

fn log_group(r: &GroupReport, what: &str) {
    let replicas: Vec<String> = r.replicas.iter().map(|a| a.to_string()).collect();
    match &r.primary {
        Some(p) => {
            tracing::info!(group = %r.name, kind = r.kind, primary = %p, replicas = ?replicas, source = %r.source, "{what}")
        }
        None => tracing::warn!(
            group = %r.name,
            kind = r.kind,
            problem = %r.problem.as_deref().unwrap_or("unknown"),
            "{what}: no primary; requests wait for one"
        ),
    }
}

/// The topology of one group from a resolution. `renew`: the primary gets new connections.
fn build_group(
    upstreams: &Upstreams,
    view: &GroupView,
    version: u64,
    replica_reads: Option<i64>,
    renew: bool,
) -> Topology {
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
        None => NodeInfo { health: Health::Failed, ..node(&NodeAddr::new("", 0), Role::Primary, None) },
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
    Topology {
        map: SlotMap::new(vec![shard]),
        placement: Placement::Single,
        primaries: vec![primary],
        replicas: vec![replicas],
        version,
        problem: view.problem.as_deref().map(Arc::from),
    }
}
