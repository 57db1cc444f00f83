//! Cluster NAT mode: one listener per cluster node, so cluster-aware clients keep talking to the cluster as a
//! cluster from where the nodes' own addresses are unreachable. Every node address the cluster tells a client
//! (CLUSTER SLOTS/SHARDS/NODES/REPLICAS, MOVED/ASK, ROLE, INFO replication) is rewritten to
//! `announce_host:<that node's listener port>`.
//!
//! - [`rewrite`]: pure functions that rewrite each reply form.
//! - [`listeners`]: the node → port assignment, one listener per node, following the topology.
//! - [`session`]: one client connection = one dedicated connection to its node, bytes forwarded as they are.
pub mod listeners;
pub mod rewrite;
pub mod session;
