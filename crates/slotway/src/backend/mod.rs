//! Discovery per kind of backend, for the backends that are one replication group (a primary and its replicas).
//!
//! Every backend is made of replication groups; a Redis Cluster's are found with CLUSTER SHARDS (see
//! [`crate::topology`]). A Sentinel-managed group ([`sentinel`]) or a static set of servers ([`servers`]) is one
//! group, found by a [`GroupResolver`]: it answers "who is the primary now, and which replicas can serve reads" as a
//! [`GroupView`]. The topology manager turns a view into a [`crate::topology::Topology`] with
//! [`crate::topology::Placement::Single`]; routing, retries, replica reads, dedicated connections and pub/sub are the
//! same as for a cluster.
//!
//! A resolver is self-contained (its own sentinels or servers, credentials and timeouts), so a backend of many
//! groups placed by hash (twemproxy-style pools) can hold one per group and resolve each on its own.
//!
//! **A primary is trusted only after its own `ROLE` says `master`**: a sentinel can name a node that restarted and
//! was demoted since, or that a stale sentinel still remembers; a static server that was a primary may have been
//! re-pointed. Writes sent to such a node would fail with READONLY, or worse, land on a node about to be resynced.
use crate::cluster::NodeAddr;
use std::sync::Arc;

pub mod probe;
pub mod sentinel;
pub mod servers;

/// A node of a group as resolved: its address and, when known, its replication offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub addr: NodeAddr,
    pub offset: Option<i64>,
}

/// One resolution of a group: the verified primary, the replicas that may serve reads, and why there is no primary
/// when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupView {
    pub primary: Option<Member>,
    /// Replicas attached to the primary (link up, not flagged down); their lag is checked when the topology is built.
    pub replicas: Vec<Member>,
    /// Why there is no primary (None when there is one).
    pub problem: Option<String>,
    /// Who said so, for logs and `SLOTWAY TOPOLOGY` (`sentinel 10.0.0.1:26379 (config epoch 3)`, `ROLE of every
    /// server`).
    pub source: String,
    /// Nodes named as the primary that said they were something else (ROLE), so were not used.
    pub role_mismatches: u32,
}

/// A resolution that got no usable answer at all (every sentinel down, every server unreachable).
#[derive(Debug, Clone)]
pub struct ResolveFailure {
    /// One line per sentinel or server, in the order configured.
    pub reasons: Vec<String>,
    /// Retrying won't help (wrong password, certificate rejected, a master name no sentinel knows): at startup,
    /// slotway exits.
    pub fatal: bool,
}

/// What a resolver's background watchers (sentinel subscriptions) tell the topology manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// Something changed: resolve again now.
    Refresh,
    /// A failover of the group has started: stop sending to the primary at once (it is about to be replaced, and
    /// what it acknowledges from now on may be lost), then resolve again. The text says why, for the logs.
    Fence(String),
}

/// Called by watchers with each event.
pub type EventHook = Arc<dyn Fn(GroupEvent) + Send + Sync>;

/// How one replication group is discovered.
pub enum GroupResolver {
    Sentinel(sentinel::SentinelGroup),
    Static(servers::StaticGroup),
}

impl GroupResolver {
    /// `sentinel` or `static`, for INFO and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GroupResolver::Sentinel(_) => "sentinel",
            GroupResolver::Static(_) => "static",
        }
    }

    /// The group's name: the Sentinel master name, or `static` for a static set.
    pub fn name(&self) -> &str {
        match self {
            GroupResolver::Sentinel(s) => s.master_name(),
            GroupResolver::Static(_) => "static",
        }
    }

    /// Resolves the group now.
    pub async fn resolve(&self) -> Result<GroupView, ResolveFailure> {
        match self {
            GroupResolver::Sentinel(s) => s.resolve().await,
            GroupResolver::Static(s) => s.resolve().await,
        }
    }

    /// Starts the background watchers (subscriptions to every sentinel's events); they run until `shutdown`.
    pub fn start_watchers(&self, hook: EventHook, shutdown: tokio::sync::watch::Receiver<bool>) {
        if let GroupResolver::Sentinel(s) = self {
            s.start_watchers(hook, shutdown);
        }
    }

    /// Where discovery asks, for `SLOTWAY TOPOLOGY` (sentinels known now, or the servers).
    pub fn sources(&self) -> Vec<String> {
        match self {
            GroupResolver::Sentinel(s) => s.known().iter().map(|a| format!("sentinel {a}")).collect(),
            GroupResolver::Static(s) => s.servers().iter().map(|a| format!("server {a}")).collect(),
        }
    }
}
