//! slotway: a Redis/Valkey proxy. One standalone endpoint for a whole Redis Cluster (it routes each command by hash
//! slot and follows MOVED/ASK itself), or for a primary/replica group managed by Sentinel or a static set of servers
//! (it follows the primary, verified with ROLE), or for a twemproxy-style pool of such groups (it places every key
//! where twemproxy would); TLS and AUTH to the nodes.
//!
//! # Layout
//! - [`config`] — flags + TOML file + environment → a validated [`config::Config`]; TLS client configs.
//! - [`cluster`] — pure cluster model: slots, CRC16, hash tags, slot map, CLUSTER SHARDS/SLOTS parsing, MOVED/ASK.
//! - [`command`] — the command table (from the nodes' COMMAND reply): arity, flags, key positions, routing shape.
//! - [`upstream`] — node connections: connect, TLS, AUTH, pipelining with batched writes, FIFO reply matching;
//!   dedicated connections (transactions, blocking commands) and pub/sub connections.
//! - [`backend`] — discovery of a replication group (alone, or one shard of a pool): Sentinel
//!   ([`backend::sentinel`]) or a static set of servers ([`backend::servers`]), each primary verified with ROLE.
//! - [`ring`] — pure: twemproxy's key placement (ketama, modula, its hashes, hash tags, weights), bit for bit.
//! - [`topology`] — the live topology (replication groups and their placement: slots, single or ring) behind an
//!   `ArcSwap`; the refresher task with merged triggers.
//! - [`dispatch`] — where a request goes ([`dispatch::plan`]) and what a reply means ([`dispatch::classify_reply`]).
//! - [`downstream`] — the client side: listener, per-connection session (ordering, backpressure, transactions,
//!   pub/sub), local commands.
//! - [`nat`] — cluster NAT mode: a listener per node, dedicated node connections, node addresses rewritten.
//! - [`metrics`] — counters.
//! - [`observe`] — per-worker latency histograms and per-command counts, the slow log, INFO's Redis-format
//!   sections, the labelled series of `/metrics`, per-client tracing.
//! - [`monitor`] — the monitoring HTTP endpoint: `/metrics`, `/health`, `/live`, `/ready`.
//! - [`live`] — the settings that can change while slotway runs (config, users), swapped whole.
//! - [`reload`] — re-reading the configuration (SIGHUP, `SLOTWAY RELOAD`): check everything, then apply.
//! - [`logging`] — stderr logs as text or JSON lines, with a reloadable level.
//! - [`build_info`] — version, git commit and build profile.
//! - [`scripts`] — the script bodies slotway has seen, for NOSCRIPT recovery.
//! - [`auth`] — slotway's own users: ACL rules (commands, keys, channels), passwords, the `ACL` command.
//! - [`provision`] — `provision_upstream`: ACL users with slotway's users' rules, kept on every node.
//! - [`app`] — wiring and shutdown.
//!
//! Dependencies point one way: `resp` ← `cluster`, `command` ← `upstream` ← `backend` ← `topology` ← `dispatch` ←
//! `downstream` ← `app`.
#![forbid(unsafe_code)]

pub mod acl_admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod build_info;
pub mod cluster;
pub mod command;
pub mod config;
pub mod dispatch;
pub mod downstream;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod nat;
pub mod observe;
pub mod provision;
pub mod reload;
pub mod ring;
pub mod scripts;
pub mod topology;
pub mod upstream;
