//! Configuration: the raw TOML file and command-line flags are merged into one validated [`Config`].
//!
//! Precedence: command-line flags > environment (`SLOTWAY_UPSTREAM_PASSWORD`) > config file > defaults.
//! Every problem found is reported at once, so a user fixes a config file in one pass.
//! Secrets never come from argv and never appear in `Debug` output.

mod raw;
pub mod tls;
pub mod twemproxy;

pub use raw::RawConfig;

use crate::cluster::NodeAddr;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that carries the upstream (cluster) password.
pub const UPSTREAM_PASSWORD_ENV: &str = "SLOTWAY_UPSTREAM_PASSWORD";
/// The environment variable that carries the password clients must give slotway's node listeners (nat mode).
pub const NAT_PASSWORD_ENV: &str = "SLOTWAY_NAT_PASSWORD";
/// The environment variable that carries the sentinels' password (`[sentinel]`).
pub const SENTINEL_PASSWORD_ENV: &str = "SLOTWAY_SENTINEL_PASSWORD";

/// What slotway is in front of: exactly one kind per process. Every kind is made of replication groups (one
/// primary, its replicas); only how they are discovered and how keys are placed on them differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A Redis Cluster: groups and slots from CLUSTER SHARDS, asked of the seeds in `upstream.seeds`.
    Cluster,
    /// One group whose primary and replicas Redis Sentinel names.
    Sentinel(SentinelConfig),
    /// One group of fixed servers; slotway finds the primary itself with ROLE.
    Servers(ServersConfig),
    /// A pool of groups placed by hash, as twemproxy places keys on its servers (`[sharding]`, `[[shards]]`).
    Sharded(ShardingConfig),
}

impl Backend {
    /// Whether the backend is one replication group (no slots, databases).
    pub fn is_single_group(&self) -> bool {
        matches!(self, Backend::Sentinel(_) | Backend::Servers(_))
    }

    /// Whether the backend is a Redis Cluster (slots, no databases, READONLY on replica connections).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Backend::Cluster)
    }
}

/// `[sharding]` and `[[shards]]`: a twemproxy-style pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardingConfig {
    /// Placement; `ring.servers[i]` is shard `i`'s ring name and weight.
    pub ring: crate::ring::RingSpec,
    /// In configuration order (the ring's order too).
    pub shards: Vec<ShardConfig>,
    /// twemproxy's `auto_eject_hosts` (off by default: it moves keys); with its limits.
    pub auto_eject: Option<AutoEject>,
    /// The database clients start in (twemproxy's `redis_db`).
    pub redis_db: u16,
    /// The sentinels of Sentinel-managed shards (`master_name` unused: each shard names its own).
    pub sentinel: Option<SentinelConfig>,
    /// Static shards: every server is asked ROLE this often, and must answer within `servers_timeout`.
    pub servers_poll_interval: Duration,
    pub servers_timeout: Duration,
}

/// `sharding.auto_eject_hosts = true`: when a shard leaves the ring, and when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoEject {
    pub server_failure_limit: u32,
    pub server_retry_timeout: Duration,
}

/// One shard of a pool: its ring name and its replication group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardConfig {
    pub name: String,
    pub group: ShardGroup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardGroup {
    /// Fixed servers; the primary is found with ROLE.
    Servers(Vec<NodeAddr>),
    /// A Sentinel master name.
    Sentinel(String),
}

/// `[sentinel]`: how to reach the sentinels and which master to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// Sentinels to ask first, in order (more are learned from `SENTINEL sentinels`).
    pub addresses: Vec<NodeAddr>,
    /// The name the sentinels monitor the group under.
    pub master_name: String,
    /// ACL user and password for the sentinels (their own, separate from the data nodes').
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// TLS to the sentinels (separate from the data nodes' TLS).
    pub tls: Option<UpstreamTls>,
    /// The group is resolved this often even without an event.
    pub poll_interval: Duration,
    /// One sentinel's (and one node's ROLE) answer must come within this.
    pub timeout: Duration,
}

/// `[servers]`: a static primary/replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServersConfig {
    pub addresses: Vec<NodeAddr>,
    /// Every server is asked ROLE this often.
    pub poll_interval: Duration,
    /// One server's ROLE answer must come within this.
    pub timeout: Duration,
}

/// How slotway presents the cluster to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One endpoint for the whole cluster: slotway routes by slot.
    #[default]
    Standalone,
    /// Cluster NAT: one listener per node; cluster-aware clients keep talking cluster, and every node address
    /// the cluster tells them is rewritten to slotway's announced address for that node.
    Nat,
}

/// A node named in `[nat.node_ports]`: by cluster node id (40 hex digits) or by `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeKey {
    Id(String),
    Addr(NodeAddr),
}

/// Cluster NAT mode settings (`[nat]`).
#[derive(Debug, Clone)]
pub struct NatConfig {
    /// The host clients are told to connect to (a hostname or an IP): every node is announced as
    /// `announce_host:<its port>`.
    pub announce_host: String,
    /// IP the node listeners bind.
    pub bind: std::net::IpAddr,
    /// Ports handed out to nodes in order of discovery (inclusive range); may be empty when `node_ports` covers
    /// every node.
    pub ports: Option<(u16, u16)>,
    /// Fixed ports for particular nodes.
    pub node_ports: Vec<(NodeKey, u16)>,
    /// A node that left the cluster keeps its listener this long (clients still holding the old map reconnect).
    pub leave_grace: Duration,
    /// How long a reply that names a node slotway doesn't know yet waits for a topology refresh.
    pub unknown_address_wait: Duration,
    /// Password clients must give (AUTH / HELLO AUTH) before anything is forwarded; None = no AUTH.
    pub password: Option<Secret>,
}

/// A secret string: shown as `<redacted>` in Debug output so it can't leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS settings for connections to the cluster's nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA bundle (PEM) to verify nodes with; `None` = the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for clusters that require mTLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name to verify node certificates against (and send as SNI) instead of the address the cluster announces;
    /// needed when nodes announce IPs that their certificates don't list.
    pub server_name: Option<String>,
    /// Skip certificate verification entirely. For development only; logged loudly at start.
    pub insecure_skip_verify: bool,
}

/// Everything about reaching the cluster.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Seed nodes; discovery tries them in order and the first that answers wins.
    pub seeds: Vec<NodeAddr>,
    /// ACL user for AUTH; `None` = the default user (`AUTH password`).
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<UpstreamTls>,
    /// Shared pipelined connections per node on each worker thread; the worker's clients are spread over them.
    pub connections_per_node: usize,
    /// Dedicated connections (transactions, blocking commands) per node on each worker thread.
    pub max_dedicated_per_node: usize,
    pub connect_timeout: Duration,
    /// A shared connection that has written nothing for this long sends a PING; None turns health checks off.
    pub health_check_interval: Option<Duration>,
    /// A shared connection with requests outstanding that receives nothing for this long is closed as broken
    /// (its requests fail as lost) and a topology refresh is requested.
    pub health_check_timeout: Duration,
    /// How often the slot map is refreshed even without a trigger.
    pub refresh_interval: Duration,
    /// Minimum time between two refreshes, however many triggers arrive.
    pub refresh_min_interval: Duration,
    /// Redirects (MOVED/ASK) followed for one request before its last error is passed on.
    pub max_redirects: u32,
    /// Retries for TRYAGAIN / CLUSTERDOWN / connection failures before the error is passed on.
    pub max_retries: u32,
    /// Total time one request may spend being retried (from its first failure) before the client gets the error.
    /// Long enough by default to ride through a failover (cluster-node-timeout + election).
    pub retry_deadline: Duration,
    /// Resend a write whose connection died after it was written (it may run twice). Off by default: the client
    /// gets an error saying the write may or may not have been applied.
    pub retry_writes_on_connection_loss: bool,
    /// First retry delay; doubled per attempt up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
}

/// TLS for client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamTls {
    /// Certificate chain and private key (PEM) slotway presents; re-read from disk on SIGHUP.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// A client that hasn't finished the TLS handshake within this is disconnected.
    pub handshake_timeout: Duration,
}

/// The downstream (client-facing) side.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Plain-TCP listener; None when only a TLS listener is wanted.
    pub addr: Option<SocketAddr>,
    /// TLS listener (with `tls`).
    pub tls_addr: Option<SocketAddr>,
    pub tls: Option<DownstreamTls>,
    /// Requests a client may have outstanding before slotway stops reading from it (backpressure).
    pub max_pending_per_client: usize,
    /// Where read-only commands go.
    pub read_from: ReadFrom,
    /// A replica whose replication offset trails its primary's by more than this many bytes (as of the last
    /// topology refresh) is not read from.
    pub max_replica_lag_bytes: i64,
    /// After a write, the client's reads go to the primary for `read_your_writes_window` (so it reads its own
    /// write even when replicas lag); None = reads follow `read_from` always.
    pub read_your_writes: Option<Duration>,
    /// Clients connected at once; the next gets `-ERR max number of clients reached` and is closed.
    pub max_clients: usize,
    /// Clients connected at once from one IP address (0 = no limit).
    pub max_clients_per_address: usize,
    /// A client idle this long (nothing pending) is disconnected; None = never (Redis's `timeout 0`).
    pub idle_timeout: Option<Duration>,
    /// A request must arrive whole within this long of its first byte, else the client is disconnected (a
    /// slow-loris client can't hold a connection and a partial buffer forever); None = no limit.
    pub request_timeout: Option<Duration>,
    /// Largest single request (all of its bytes); larger gets a protocol error and the connection is closed.
    pub max_request_bytes: usize,
    /// Largest bulk string in a request (Redis's `proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
    /// A client that accepts none of slotway's output for this long is disconnected (a slow reader must not hold
    /// its replies and its pipeline slot forever); None = wait forever.
    pub output_stall_timeout: Option<Duration>,
    /// Bytes of pub/sub messages that may wait for a subscriber before it is disconnected (Redis's
    /// `client-output-buffer-limit pubsub` hard limit); 0 = no limit.
    pub pubsub_output_limit: usize,
    /// `client.busy_script_scope = "endpoint"`: while a script runs past the nodes' `busy-reply-threshold`, other
    /// clients get `-BUSY` from slotway, as from one server; false (`"node"`): only the script's node is busy.
    pub busy_endpoint: bool,
}

/// The script bodies slotway remembers (by SHA1) to reload them on a node that answers EVALSHA with NOSCRIPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptsConfig {
    /// At most this many bodies (least recently seen forgotten first); 0 turns NOSCRIPT recovery off.
    pub cache_entries: usize,
    /// At most this many bytes of bodies in total; a larger body is not remembered.
    pub cache_bytes: usize,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig { cache_entries: 1024, cache_bytes: 16 * 1024 * 1024 }
    }
}

/// Where read-only commands go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// Always the slot's primary (no stale reads).
    #[default]
    Primary,
    /// A healthy replica of the slot's shard when there is one, else the primary.
    PreferReplica,
    /// Only replicas; `-ERR` when the shard has none healthy.
    Replica,
    /// The primary and the healthy replicas in turn.
    RoundRobin,
}

impl ReadFrom {
    pub fn parse(s: &str) -> Option<ReadFrom> {
        match s {
            "primary" | "master" => Some(ReadFrom::Primary),
            "prefer-replica" => Some(ReadFrom::PreferReplica),
            "replica" => Some(ReadFrom::Replica),
            "round-robin" => Some(ReadFrom::RoundRobin),
            _ => None,
        }
    }
}

/// One of slotway's own users, as configured (rules are compiled against the command table at start).
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// SHA-256 digests of accepted passwords; never the passwords themselves.
    pub password_hashes: Vec<[u8; 32]>,
    pub rules: String,
    /// The cluster ACL user this user's requests run as, so the cluster's own ACLs apply per application;
    /// None = the `[upstream]` credentials.
    pub upstream: Option<UpstreamCredentials>,
    /// `provision_upstream = true`: slotway creates and keeps up to date a cluster ACL user `slotway:<name>` with
    /// this user's rules on every node, with a random password it holds in memory, and runs the user's requests
    /// as it (see `crate::provision`).
    pub provision_upstream: bool,
}

/// A cluster ACL user and its password, as slotway authenticates its node connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCredentials {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// What slotway is in front of (a cluster's seeds are in `upstream.seeds`).
    pub backend: Backend,
    /// The master name slotway answers to as a sentinel (`SENTINEL get-master-addr-by-name`, `SENTINEL masters`).
    pub service_name: String,
    /// slotway's own users; empty = no authentication (like a Redis without requirepass).
    pub users: Vec<UserConfig>,
    /// Failed AUTH attempts allowed per source address per minute before further attempts are refused unchecked.
    pub auth_max_failures_per_minute: u32,
    /// The channels a user has before any channel rule (`[auth] acl_pubsub_default`; Redis 7: none).
    pub acl_pubsub_default: crate::auth::PubSubDefault,
    /// `[auth] provision_new_users`: a user ACL SETUSER creates is provisioned on the nodes (`slotway:<name>`),
    /// so the nodes confine its scripts; otherwise it runs as the `[upstream]` user.
    pub provision_new_users: bool,
    pub mode: Mode,
    /// Set in nat mode.
    pub nat: Option<NatConfig>,
    /// Hostname → address used by slotway's own connections to the nodes (`[nat.resolve]`).
    pub resolve: std::collections::HashMap<String, String>,
    /// Worker threads; each serves its share of clients with its own connections to every node.
    pub workers: usize,
    pub listen: ListenConfig,
    pub upstream: UpstreamConfig,
    pub scripts: ScriptsConfig,
    /// `tracing` filter, e.g. `info` or `slotway=debug`.
    pub log_level: String,
    /// How log lines are written to stderr.
    pub log_format: LogFormat,
    /// How SIGTERM drains (`[shutdown]`).
    pub shutdown: ShutdownConfig,
    /// Where the monitoring HTTP endpoint (`/metrics`, `/health`, `/live`, `/ready`) listens; None = not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Time every request (`latency_tracking`): latency histograms, INFO latencystats and commandstats' `usec`,
    /// SLOWLOG and LATENCY. Off, the sessions never read the clock; counts are kept either way.
    pub latency_tracking: bool,
    pub slowlog: SlowlogConfig,
    /// Things that are allowed but may not be what was meant (logged at start, printed by `--check-config`).
    pub warnings: Vec<String>,
}

/// Which requests SLOWLOG keeps (`[slowlog]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowlogConfig {
    /// Requests whose end-to-end time reaches this many µs are logged; None = never (a negative
    /// `threshold_us`), Some(0) = every request.
    pub threshold_us: Option<u64>,
    /// Entries kept (the oldest are dropped).
    pub max_len: usize,
}

impl Default for SlowlogConfig {
    fn default() -> Self {
        SlowlogConfig { threshold_us: Some(10_000), max_len: 128 }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line with stable field names (`timestamp`, `level`, `target`, `fields.message`, and the
    /// event's own fields), for log pipelines.
    Json,
}

/// What SIGTERM (or SIGINT) does, in order: `/ready` turns 503 at once; slotway keeps serving for `grace`, so
/// load balancers and Kubernetes endpoints notice; then it stops accepting, lets in-flight requests finish (at most
/// `drain_timeout`), closes idle clients and node connections, and exits 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    pub grace: Duration,
    pub drain_timeout: Duration,
}

/// Command-line flags that can override the config file; `None`/`false` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub listen_tls: Option<String>,
    pub listen_tls_cert: Option<PathBuf>,
    pub listen_tls_key: Option<PathBuf>,
    pub listen_tls_client_ca: Option<PathBuf>,
    pub cluster: Vec<String>,
    pub upstream_user: Option<String>,
    pub upstream_tls: bool,
    pub upstream_tls_ca: Option<PathBuf>,
    pub upstream_tls_cert: Option<PathBuf>,
    pub upstream_tls_key: Option<PathBuf>,
    pub upstream_tls_server_name: Option<String>,
    pub upstream_tls_insecure: bool,
    pub connections_per_node: Option<usize>,
    pub max_dedicated_per_node: Option<usize>,
    pub workers: Option<usize>,
    pub read_from: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub mode: Option<String>,
    pub nat_announce_host: Option<String>,
    pub nat_ports: Option<String>,
    pub nat_bind: Option<String>,
    /// `--sentinel HOST:PORT` (repeatable).
    pub sentinels: Vec<String>,
    pub sentinel_master: Option<String>,
    pub sentinel_user: Option<String>,
    pub sentinel_tls: bool,
    pub sentinel_tls_ca: Option<PathBuf>,
    pub sentinel_tls_server_name: Option<String>,
    /// `--server HOST:PORT` (repeatable).
    pub servers: Vec<String>,
}

impl Config {
    /// The database a client starts in (and goes back to on RESET): a pool's `sharding.redis_db`, else 0.
    pub fn initial_db(&self) -> u16 {
        match &self.backend {
            Backend::Sharded(pool) => pool.redis_db,
            _ => 0,
        }
    }
}

/// All problems found while building a [`Config`], one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads the optional config file, applies flags and the environment, and validates the result.
    pub fn load(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(vec![format!("cannot read config file {}: {e}", path.display())]))?;
                Self::from_text(path, &text, overrides, env)
            }
            None => Self::from_raw(RawConfig::default(), overrides, env),
        }
    }

    /// [`Config::load`] for a file already read (`path` names it in errors).
    pub fn from_text(
        path: &Path,
        text: &str,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = RawConfig::parse(text).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
        Self::from_raw(raw, overrides, env)
    }

    pub fn from_raw(
        raw: RawConfig,
        o: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();

        let mode = match o.mode.as_deref().or(raw.mode.as_deref()).unwrap_or("standalone") {
            "standalone" => Mode::Standalone,
            "nat" => Mode::Nat,
            other => {
                errors.push(format!("mode must be 'standalone' or 'nat', got '{other}'"));
                Mode::Standalone
            }
        };
        let nat_mode = mode == Mode::Nat;
        if !nat_mode && (o.nat_announce_host.is_some() || o.nat_ports.is_some() || o.nat_bind.is_some()) {
            errors.push("--nat-announce-host, --nat-ports and --nat-bind need --mode nat".to_string());
        }
        if nat_mode
            && (o.listen.is_some() || o.listen_tls.is_some() || raw.listen.is_some() || raw.listen_tls.is_some())
        {
            errors.push(
                "listen / listen_tls are for standalone mode: in nat mode clients connect to the node listeners \
                 (nat.ports), which serve TLS when listen_tls_options cert and key are given"
                    .to_string(),
            );
        }

        let mut parse_addr = |what: &str, text: &str| match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(format!("{what}: '{text}' is not an IP:port address"));
                None
            }
        };
        let metrics_listen = o
            .metrics_listen
            .clone()
            .or(raw.metrics_listen.clone())
            .filter(|t| !t.is_empty())
            .and_then(|t| parse_addr("metrics_listen", &t));
        let tls_text = o.listen_tls.clone().or(raw.listen_tls.clone());
        let tls_addr = tls_text.as_deref().and_then(|t| parse_addr("listen_tls", t));
        // The plain listener defaults to 127.0.0.1:6380 unless the user asked for a TLS listener only.
        let listen_text = o.listen.clone().or(raw.listen.clone());
        let listen_addr = match (&listen_text, &tls_text) {
            (Some(t), _) if t.is_empty() => None,
            (Some(t), _) => parse_addr("listen", t),
            (None, Some(_)) => None,
            (None, None) if nat_mode => None,
            (None, None) => parse_addr("listen", "127.0.0.1:6380"),
        };
        let raw_dtls = raw.listen_tls_options;
        let cert = o.listen_tls_cert.clone().or(raw_dtls.cert);
        let key = o.listen_tls_key.clone().or(raw_dtls.key);
        let client_ca = o.listen_tls_client_ca.clone().or(raw_dtls.client_ca);
        let downstream_tls = match (&cert, &key) {
            (Some(cert), Some(key)) => Some(DownstreamTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
                handshake_timeout: Duration::from_millis(raw_dtls.handshake_timeout_ms.unwrap_or(5000)),
            }),
            (None, None) => None,
            _ => {
                errors.push("client TLS needs both listen_tls.cert and listen_tls.key".to_string());
                None
            }
        };
        if tls_text.is_some() && downstream_tls.is_none() && (cert.is_none() && key.is_none()) {
            errors.push("listen_tls needs a certificate: --listen-tls-cert and --listen-tls-key".to_string());
        }
        if downstream_tls.is_some() && tls_text.is_none() && !nat_mode {
            errors
                .push("a client TLS certificate is configured but no TLS listener: give --listen-tls ADDR".to_string());
        }
        if client_ca.is_some() && downstream_tls.is_none() {
            // (also in nat mode: the node listeners need a certificate for mutual TLS)
            errors.push("listen_tls.client_ca needs a TLS listener with a certificate".to_string());
        }
        for p in [&cert, &key, &client_ca].into_iter().flatten() {
            if !p.exists() {
                errors.push(format!("client TLS: file {} does not exist", p.display()));
            }
        }

        let seed_texts = if o.cluster.is_empty() { raw.cluster.seeds } else { o.cluster.clone() };
        let sentinel_texts = if o.sentinels.is_empty() { raw.sentinel.addresses.clone() } else { o.sentinels.clone() };
        let server_texts = if o.servers.is_empty() { raw.servers.addresses.clone() } else { o.servers.clone() };
        let sharded = !raw.shards.is_empty();
        let rsh = &raw.sharding;
        if !sharded
            && (rsh.distribution.is_some()
                || rsh.hash.is_some()
                || rsh.hash_tag.is_some()
                || rsh.signed_chars.is_some()
                || rsh.auto_eject_hosts.is_some()
                || rsh.server_failure_limit.is_some()
                || rsh.server_retry_timeout_ms.is_some()
                || rsh.redis_db.is_some())
        {
            errors.push("[sharding] places keys on [[shards]], and none is given".to_string());
        }
        // With [[shards]], [sentinel] only says where the sentinels of Sentinel-managed shards are.
        let sentinel_given = (!sentinel_texts.is_empty() && !sharded)
            || o.sentinel_master.is_some()
            || raw.sentinel.master_name.is_some();
        let kinds = [!seed_texts.is_empty(), sentinel_given, !server_texts.is_empty(), sharded];
        match kinds.iter().filter(|&&k| k).count() {
            0 => errors.push(
                "no backend: no seed nodes (--cluster HOST:PORT or cluster.seeds), no sentinels (--sentinel HOST:PORT \
                 --sentinel-master NAME, or [sentinel]), no servers (--server HOST:PORT or [servers]) and no \
                 [[shards]]"
                    .to_string(),
            ),
            1 => {}
            _ => errors.push(
                "give exactly one kind of backend: --cluster (cluster.seeds), --sentinel ([sentinel]), --server \
                 ([servers]) or a pool of [[shards]] (whose Sentinel-managed shards name their own sentinel_master)"
                    .to_string(),
            ),
        }
        let mut parse_addrs = |what: &str, texts: &[String]| -> Vec<NodeAddr> {
            let mut out = Vec::new();
            for s in texts {
                match NodeAddr::parse(s) {
                    Some(a) => out.push(a),
                    None => errors.push(format!("{what} '{s}' is not HOST:PORT")),
                }
            }
            out
        };
        let seeds = parse_addrs("cluster seed", &seed_texts);
        let sentinel_addrs = parse_addrs("sentinel", &sentinel_texts);
        let server_addrs = parse_addrs("server", &server_texts);
        let ms = Duration::from_millis;
        let servers_timing = |errors: &mut Vec<String>| {
            let poll = raw.servers.poll_interval_ms.unwrap_or(1000);
            let timeout = raw.servers.timeout_ms.unwrap_or(1000);
            if !(10..=3_600_000).contains(&poll) || !(10..=60_000).contains(&timeout) {
                errors.push(format!(
                    "servers.poll_interval_ms must be 10..=3600000 and servers.timeout_ms 10..=60000, got {poll} \
                     and {timeout}"
                ));
            }
            (ms(poll), ms(timeout))
        };
        let backend = if sentinel_given {
            let master_name = o.sentinel_master.clone().or(raw.sentinel.master_name.clone()).unwrap_or_default();
            if master_name.is_empty() || master_name.contains(char::is_whitespace) {
                errors.push(
                    "sentinel: give the master name the sentinels monitor: --sentinel-master NAME \
                             (sentinel.master_name)"
                        .to_string(),
                );
            }
            if sentinel_texts.is_empty() {
                errors.push("sentinel: no sentinels (give --sentinel HOST:PORT or sentinel.addresses)".to_string());
            }
            Backend::Sentinel(sentinel_config(&raw.sentinel, o, env, sentinel_addrs, master_name, &mut errors))
        } else if sharded {
            let uses_sentinels = raw.shards.iter().any(|s| s.sentinel_master.is_some());
            let sentinel = uses_sentinels.then(|| {
                if sentinel_texts.is_empty() {
                    errors.push(
                        "[[shards]] with sentinel_master need the sentinels: [sentinel] addresses (or --sentinel)"
                            .to_string(),
                    );
                }
                sentinel_config(&raw.sentinel, o, env, sentinel_addrs, String::new(), &mut errors)
            });
            let (poll_interval, timeout) = servers_timing(&mut errors);
            Backend::Sharded(sharding_config(&raw.sharding, &raw.shards, sentinel, poll_interval, timeout, &mut errors))
        } else if !server_texts.is_empty() {
            let (poll_interval, timeout) = servers_timing(&mut errors);
            Backend::Servers(ServersConfig { addresses: server_addrs, poll_interval, timeout })
        } else {
            Backend::Cluster
        };
        if nat_mode && !backend.is_cluster() {
            errors.push(
                "nat mode is for Redis Cluster: use --cluster, not --sentinel, --server or [[shards]]".to_string(),
            );
        }
        let service_name = raw.service_name.clone().unwrap_or_else(|| match &backend {
            Backend::Sentinel(s) if !s.master_name.is_empty() => s.master_name.clone(),
            _ => "mymaster".to_string(),
        });

        let up = raw.upstream;
        let password = match resolve_password(&up, env) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                None
            }
        };

        let raw_tls = up.tls;
        let tls_on = o.upstream_tls || raw_tls.enabled.unwrap_or(false);
        let tls = tls_on.then(|| UpstreamTls {
            ca: o.upstream_tls_ca.clone().or(raw_tls.ca),
            cert: o.upstream_tls_cert.clone().or(raw_tls.cert),
            key: o.upstream_tls_key.clone().or(raw_tls.key),
            server_name: o.upstream_tls_server_name.clone().or(raw_tls.server_name),
            insecure_skip_verify: o.upstream_tls_insecure || raw_tls.insecure_skip_verify.unwrap_or(false),
        });
        if let Some(t) = &tls {
            if t.cert.is_some() != t.key.is_some() {
                errors.push("upstream TLS: a client certificate needs both cert and key".to_string());
            }
            for p in [&t.ca, &t.cert, &t.key].into_iter().flatten() {
                if !p.exists() {
                    errors.push(format!("upstream TLS: file {} does not exist", p.display()));
                }
            }
        } else if o.upstream_tls_ca.is_some() || o.upstream_tls_cert.is_some() || o.upstream_tls_server_name.is_some() {
            errors.push("upstream TLS options given without --upstream-tls (or upstream.tls.enabled)".to_string());
        }

        let connections_per_node = o.connections_per_node.or(up.connections_per_node).unwrap_or(1);
        // Half the CPUs by default: the kernel's network stack (and, often, co-located nodes or clients) needs the
        // rest; measured on 2 cores, one worker used ~40% less CPU per request than two.
        let workers = o
            .workers
            .or(raw.workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)));
        if workers == 0 || workers > 256 {
            errors.push(format!("workers must be 1..=256, got {workers}"));
        }
        if connections_per_node == 0 || connections_per_node > 64 {
            errors.push(format!("upstream.connections_per_node must be 1..=64, got {connections_per_node}"));
        }
        let max_dedicated_per_node = o.max_dedicated_per_node.or(up.max_dedicated_per_node).unwrap_or(64);
        if max_dedicated_per_node == 0 || max_dedicated_per_node > 100_000 {
            errors.push(format!("upstream.max_dedicated_per_node must be 1..=100000, got {max_dedicated_per_node}"));
        }
        let (health_interval_ms, health_timeout_ms) =
            (up.health_check_interval_ms.unwrap_or(3000), up.health_check_timeout_ms.unwrap_or(5000));
        if health_interval_ms > 0 && !(10..=3_600_000).contains(&health_timeout_ms) {
            errors.push(format!("upstream.health_check_timeout_ms must be 10..=3600000, got {health_timeout_ms}"));
        }
        let max_pending = raw.client.max_pending.unwrap_or(1024);
        if max_pending == 0 {
            errors.push("client.max_pending must be at least 1".to_string());
        }

        let read_from_text = o.read_from.clone().or(raw.client.read_from.clone()).unwrap_or_else(|| "primary".into());
        let read_from = ReadFrom::parse(&read_from_text).unwrap_or_else(|| {
            errors.push(format!(
                "read_from must be primary, prefer-replica, replica or round-robin, not '{read_from_text}'"
            ));
            ReadFrom::Primary
        });
        let busy_endpoint = match raw.client.busy_script_scope.as_deref() {
            None | Some("endpoint") => true,
            Some("node") => false,
            Some(other) => {
                errors.push(format!("client.busy_script_scope must be endpoint or node, not '{other}'"));
                true
            }
        };
        let mut users = Vec::new();
        for u in &raw.users {
            let mut hashes = Vec::new();
            for h in &u.passwords_sha256 {
                match crate::auth::parse_sha256_hex(h) {
                    Some(d) => hashes.push(d),
                    None => errors.push(format!("user {}: passwords_sha256 entries must be 64 hex digits", u.name)),
                }
            }
            if let Some(path) = &u.password_file {
                match std::fs::read_to_string(path) {
                    Ok(t) => hashes.push(crate::auth::sha256(t.trim_end_matches(['\r', '\n']).as_bytes())),
                    Err(e) => errors.push(format!("user {}: password_file {}: {e}", u.name, path.display())),
                }
            }
            if let Some(var) = &u.password_env {
                match env(var) {
                    Some(p) => hashes.push(crate::auth::sha256(p.as_bytes())),
                    None => errors.push(format!("user {}: environment variable {var} is not set", u.name)),
                }
            }
            if u.name.is_empty() || u.name.contains(char::is_whitespace) {
                errors.push(format!("user name '{}' must be non-empty without spaces", u.name));
            }
            if users.iter().any(|x: &UserConfig| x.name == u.name) {
                errors.push(format!("user {} is defined twice", u.name));
            }
            let upstream = u.upstream.as_ref().and_then(|up| {
                let what = format!("user {}: upstream", u.name);
                if up.user.is_empty() || up.user.contains(char::is_whitespace) {
                    errors.push(format!("{what}.user '{}' must be non-empty without spaces", up.user));
                }
                match read_secret(&what, up.password_file.as_deref(), up.password_env.as_deref(), env) {
                    Ok(Some(password)) => Some(UpstreamCredentials { user: up.user.clone(), password }),
                    Ok(None) => {
                        errors.push(format!("{what}: give password_file or password_env for '{}'", up.user));
                        None
                    }
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            });
            let provision_upstream = u.provision_upstream.unwrap_or(false);
            if provision_upstream && upstream.is_some() {
                errors.push(format!(
                    "user {}: give either [users.upstream] or provision_upstream = true, not both",
                    u.name
                ));
            }
            users.push(UserConfig {
                name: u.name.clone(),
                password_hashes: hashes,
                rules: u.rules.clone(),
                upstream,
                provision_upstream,
            });
        }
        let slowlog_max_len = raw.slowlog.max_len.unwrap_or(SlowlogConfig::default().max_len);
        if slowlog_max_len > 100_000 {
            errors.push(format!("slowlog.max_len must be at most 100000, got {slowlog_max_len}"));
        }
        let slowlog = SlowlogConfig {
            threshold_us: match raw.slowlog.threshold_us {
                None => SlowlogConfig::default().threshold_us,
                Some(t) => u64::try_from(t).ok(),
            },
            max_len: slowlog_max_len,
        };
        let log_level = o.log_level.clone().or(raw.log_level.clone()).unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            errors.push(format!("log_level '{log_level}' is not a level or tracing directive: {e}"));
        }
        let log_format = match o.log_format.clone().or(raw.log_format.clone()).as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                errors.push(format!("log_format must be 'text' or 'json', got '{other}'"));
                LogFormat::Text
            }
        };
        if raw.shutdown_grace_ms.is_some() && raw.shutdown.drain_timeout_ms.is_some() {
            errors.push("shutdown_grace_ms is the old name of shutdown.drain_timeout_ms: give only one".to_string());
        }
        for (what, v) in [("grace_ms", raw.shutdown.grace_ms), ("drain_timeout_ms", raw.shutdown.drain_timeout_ms)] {
            if v.is_some_and(|v| v > 3_600_000) {
                errors.push(format!("shutdown.{what} must be at most 3600000 (an hour)"));
            }
        }
        let acl_pubsub_default = match raw.auth.acl_pubsub_default.as_deref() {
            None | Some("resetchannels") => crate::auth::PubSubDefault::ResetChannels,
            Some("allchannels") => crate::auth::PubSubDefault::AllChannels,
            Some(other) => {
                errors.push(format!("auth.acl_pubsub_default must be resetchannels or allchannels, not '{other}'"));
                crate::auth::PubSubDefault::ResetChannels
            }
        };
        let mut warnings = Vec::new();
        check_users(&users, &raw.users, acl_pubsub_default, &mut errors, &mut warnings);
        if let Some(t) = &downstream_tls {
            if [&t.cert, &t.key].into_iter().chain(&t.client_ca).all(|p| p.exists()) {
                if let Err(e) = tls::server_config(t) {
                    errors.push(format!("client TLS: {e}"));
                }
            }
        }
        if let Some(t) = &tls {
            if [&t.ca, &t.cert, &t.key].into_iter().flatten().all(|p| p.exists()) && t.cert.is_some() == t.key.is_some()
            {
                if let Err(e) = tls::client_config(t) {
                    errors.push(format!("upstream TLS: {e}"));
                }
            }
        }
        let raw_nat = raw.nat;
        let resolve: std::collections::HashMap<String, String> = raw_nat.resolve.clone().into_iter().collect();
        let nat = if nat_mode { nat_config(raw_nat, o, env, &mut errors) } else { None };

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Config {
            backend,
            service_name,
            users,
            auth_max_failures_per_minute: raw.auth.max_failures_per_minute.unwrap_or(10),
            acl_pubsub_default,
            provision_new_users: raw.auth.provision_new_users.unwrap_or(false),
            mode,
            nat,
            resolve,
            workers,
            listen: ListenConfig {
                addr: listen_addr,
                tls_addr,
                tls: downstream_tls,
                max_pending_per_client: max_pending,
                read_from,
                max_replica_lag_bytes: raw.client.max_replica_lag_bytes.unwrap_or(1024 * 1024),
                read_your_writes: raw
                    .client
                    .read_your_writes
                    .unwrap_or(false)
                    .then(|| ms(raw.client.read_your_writes_window_ms.unwrap_or(2000))),
                max_clients: raw.client.max_clients.unwrap_or(10_000),
                max_clients_per_address: raw.client.max_clients_per_address.unwrap_or(0),
                idle_timeout: raw.client.idle_timeout_ms.filter(|&v| v > 0).map(Duration::from_millis),
                request_timeout: Some(raw.client.request_timeout_ms.unwrap_or(30_000))
                    .filter(|&v| v > 0)
                    .map(Duration::from_millis),
                max_request_bytes: raw.client.max_request_bytes.unwrap_or(1024 * 1024 * 1024),
                max_bulk_bytes: raw.client.max_bulk_bytes.unwrap_or(512 * 1024 * 1024),
                output_stall_timeout: Some(raw.client.output_stall_timeout_ms.unwrap_or(60_000))
                    .filter(|&v| v > 0)
                    .map(Duration::from_millis),
                pubsub_output_limit: raw.client.pubsub_output_limit_bytes.unwrap_or(32 * 1024 * 1024),
                busy_endpoint,
            },
            upstream: UpstreamConfig {
                seeds,
                user: o.upstream_user.clone().or(up.user),
                password,
                tls,
                connections_per_node,
                max_dedicated_per_node,
                connect_timeout: ms(up.connect_timeout_ms.unwrap_or(5000)),
                health_check_interval: Some(health_interval_ms).filter(|&v| v > 0).map(ms),
                health_check_timeout: ms(health_timeout_ms),
                refresh_interval: ms(raw.cluster.refresh_interval_ms.unwrap_or(5000)),
                refresh_min_interval: ms(raw.cluster.refresh_min_interval_ms.unwrap_or(100)),
                max_redirects: raw.cluster.max_redirects.unwrap_or(16),
                max_retries: raw.cluster.max_retries.unwrap_or(1000),
                retry_deadline: ms(raw.cluster.retry_deadline_ms.unwrap_or(10_000)),
                retry_writes_on_connection_loss: raw.cluster.retry_writes_on_connection_loss.unwrap_or(false),
                retry_base_delay: ms(raw.cluster.retry_base_delay_ms.unwrap_or(20)),
                retry_max_delay: ms(raw.cluster.retry_max_delay_ms.unwrap_or(500)),
            },
            scripts: ScriptsConfig {
                cache_entries: raw.scripts.cache_entries.unwrap_or(ScriptsConfig::default().cache_entries),
                cache_bytes: raw.scripts.cache_bytes.unwrap_or(ScriptsConfig::default().cache_bytes),
            },
            log_level,
            log_format,
            shutdown: ShutdownConfig {
                grace: ms(raw.shutdown.grace_ms.unwrap_or(0)),
                drain_timeout: ms(raw.shutdown.drain_timeout_ms.or(raw.shutdown_grace_ms).unwrap_or(5000)),
            },
            metrics_listen,
            latency_tracking: raw.latency_tracking.unwrap_or(true),
            slowlog,
            warnings,
        })
    }
}

/// `[sentinel]`'s connection settings (password, TLS, timings) for the group `master_name` (empty for a pool,
/// whose shards name their own). Problems go to `errors`.
fn sentinel_config(
    rs: &raw::RawSentinel,
    o: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    addresses: Vec<NodeAddr>,
    master_name: String,
    errors: &mut Vec<String>,
) -> SentinelConfig {
    let password = match env(SENTINEL_PASSWORD_ENV) {
        Some(p) => Some(Secret::new(p)),
        None => match read_secret("sentinel", rs.password_file.as_deref(), rs.password_env.as_deref(), env) {
            Ok(Some(p)) => Some(p),
            Ok(None) => rs.password.clone().map(Secret::new),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    let tls_on = o.sentinel_tls || rs.tls.enabled.unwrap_or(false);
    let tls = tls_on.then(|| UpstreamTls {
        ca: o.sentinel_tls_ca.clone().or(rs.tls.ca.clone()),
        cert: rs.tls.cert.clone(),
        key: rs.tls.key.clone(),
        server_name: o.sentinel_tls_server_name.clone().or(rs.tls.server_name.clone()),
        insecure_skip_verify: rs.tls.insecure_skip_verify.unwrap_or(false),
    });
    if let Some(t) = &tls {
        if t.cert.is_some() != t.key.is_some() {
            errors.push("sentinel TLS: a client certificate needs both cert and key".to_string());
        }
        for p in [&t.ca, &t.cert, &t.key].into_iter().flatten() {
            if !p.exists() {
                errors.push(format!("sentinel TLS: file {} does not exist", p.display()));
            }
        }
    } else if o.sentinel_tls_ca.is_some() || o.sentinel_tls_server_name.is_some() {
        errors.push("sentinel TLS options given without --sentinel-tls (or sentinel.tls.enabled)".to_string());
    }
    let poll = rs.poll_interval_ms.unwrap_or(1000);
    let timeout = rs.timeout_ms.unwrap_or(500);
    if !(10..=3_600_000).contains(&poll) || !(10..=60_000).contains(&timeout) {
        errors.push(format!(
            "sentinel.poll_interval_ms must be 10..=3600000 and sentinel.timeout_ms 10..=60000, got {poll} and \
             {timeout}"
        ));
    }
    SentinelConfig {
        addresses,
        master_name,
        user: o.sentinel_user.clone().or(rs.user.clone()),
        password,
        tls,
        poll_interval: Duration::from_millis(poll),
        timeout: Duration::from_millis(timeout),
    }
}

/// The largest total weight a pool may have (modula lists every unit of weight; twemproxy has no limit, but a
/// pool anywhere near this one is a typo).
const MAX_TOTAL_WEIGHT: u64 = 10_000_000;

/// `[sharding]` and `[[shards]]`. Problems go to `errors`.
fn sharding_config(
    rs: &raw::RawSharding,
    shards: &[raw::RawShard],
    sentinel: Option<SentinelConfig>,
    servers_poll_interval: Duration,
    servers_timeout: Duration,
    errors: &mut Vec<String>,
) -> ShardingConfig {
    use crate::ring::{CharSign, Distribution, KeyHash, RingServer, RingSpec};
    let distribution = match rs.distribution.as_deref().unwrap_or("ketama") {
        "random" => {
            errors.push(
                "sharding.distribution 'random' sends each request to a random server: keys have no place, so \
                 slotway can't take over such a pool; use ketama or modula"
                    .to_string(),
            );
            Distribution::Ketama
        }
        name => Distribution::parse(name).unwrap_or_else(|| {
            errors.push(format!("sharding.distribution must be ketama or modula, not '{name}'"));
            Distribution::Ketama
        }),
    };
    let hash_name = rs.hash.as_deref().unwrap_or("fnv1a_64");
    let hash = KeyHash::parse(hash_name).unwrap_or_else(|| {
        let known: Vec<&str> = KeyHash::ALL.iter().map(|(_, n)| *n).collect();
        errors.push(format!("sharding.hash '{hash_name}' is not one of twemproxy's hashes ({})", known.join(", ")));
        KeyHash::Fnv1a_64
    });
    let hash_tag = match rs.hash_tag.as_deref() {
        None | Some("") => None,
        Some(t) if t.len() == 2 => Some([t.as_bytes()[0], t.as_bytes()[1]]),
        Some(t) => {
            errors.push(format!("sharding.hash_tag must be two characters (like \"{{}}\"), not '{t}'"));
            None
        }
    };
    let mut out = Vec::new();
    let mut servers = Vec::new();
    for (i, s) in shards.iter().enumerate() {
        let n = i + 1;
        let weight = s.weight.unwrap_or(1);
        if weight == 0 {
            errors.push(format!("shard {n}: weight must be at least 1"));
        }
        let group = match (&s.servers[..], &s.sentinel_master) {
            ([], Some(master)) if !master.is_empty() && !master.contains(char::is_whitespace) => {
                ShardGroup::Sentinel(master.clone())
            }
            ([], Some(master)) => {
                errors.push(format!("shard {n}: sentinel_master '{master}' is not a master name"));
                ShardGroup::Sentinel(master.clone())
            }
            ([], None) => {
                errors.push(format!("shard {n}: give its servers (servers = [\"host:port\", ...]) or sentinel_master"));
                ShardGroup::Servers(Vec::new())
            }
            (_, Some(_)) => {
                errors.push(format!("shard {n}: give either servers or sentinel_master, not both"));
                ShardGroup::Servers(Vec::new())
            }
            (texts, None) => ShardGroup::Servers(
                texts
                    .iter()
                    .filter_map(|t| {
                        let a = NodeAddr::parse(t);
                        if a.is_none() {
                            errors.push(format!("shard {n}: server '{t}' is not HOST:PORT"));
                        }
                        a
                    })
                    .collect(),
            ),
        };
        // twemproxy's name when none is given: the address as written, without the port when it is 11211.
        let name = match (&s.name, s.servers.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(first)) => match first.rsplit_once(':') {
                Some((host, "11211")) => host.to_string(),
                _ => first.clone(),
            },
            (None, None) => {
                if s.sentinel_master.is_some() {
                    errors.push(format!(
                        "shard {n}: a Sentinel-managed shard needs a name: its place in the ring (what twemproxy \
                         called the server: its name column, or host:port as written)"
                    ));
                }
                String::new()
            }
        };
        if s.name.as_deref() == Some("") || name.contains('\0') {
            errors.push(format!("shard {n}: name must be non-empty text"));
        }
        if !name.is_empty() && out.iter().any(|x: &ShardConfig| x.name == name) {
            errors.push(format!("shard {n}: name '{name}' is used by another shard (twemproxy refuses that too)"));
        }
        servers.push(RingServer { name: name.clone().into_bytes(), weight: weight.max(1) });
        out.push(ShardConfig { name, group });
    }
    if shards.len() > crate::cluster::SLOT_COUNT {
        errors.push(format!("a pool has at most {} shards, not {}", crate::cluster::SLOT_COUNT, shards.len()));
    }
    let total: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
    if total > MAX_TOTAL_WEIGHT {
        errors.push(format!("the shards' weights add up to {total}; at most {MAX_TOTAL_WEIGHT}"));
    }
    let auto_eject = rs.auto_eject_hosts.unwrap_or(false).then(|| AutoEject {
        server_failure_limit: rs.server_failure_limit.unwrap_or(2).max(1),
        server_retry_timeout: Duration::from_millis(rs.server_retry_timeout_ms.unwrap_or(30_000)),
    });
    if rs.auto_eject_hosts != Some(true) && (rs.server_failure_limit.is_some() || rs.server_retry_timeout_ms.is_some())
    {
        errors.push(
            "sharding.server_failure_limit and server_retry_timeout_ms only apply with auto_eject_hosts = true"
                .to_string(),
        );
    }
    ShardingConfig {
        ring: RingSpec {
            distribution,
            hash,
            sign: if rs.signed_chars.unwrap_or(true) { CharSign::Signed } else { CharSign::Unsigned },
            hash_tag,
            servers,
        },
        shards: out,
        auto_eject,
        redis_db: rs.redis_db.unwrap_or(0),
        sentinel,
        servers_poll_interval,
        servers_timeout,
    }
}

/// Checks every user's ACL rules against Redis 7.0's command table (the nodes' own table is only known once slotway
/// has connected): syntax errors are errors; a command or category that table doesn't know is a warning, since a
/// module on the nodes may provide it (slotway then checks again at start, against the nodes' table).
fn check_users(
    users: &[UserConfig],
    raw: &[raw::RawUser],
    pubsub_default: crate::auth::PubSubDefault,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    if users.is_empty() {
        return;
    }
    let table = crate::command::CommandTable::builtin();
    for (u, r) in users.iter().zip(raw) {
        if let Err(e) = crate::auth::compile(&u.name, Vec::new(), &r.rules, &table, pubsub_default) {
            if e.starts_with("unknown ") {
                warnings.push(format!(
                    "user {}: {e} (not in Redis 7.0's command table: fine if a module on the nodes provides it)",
                    u.name
                ));
            } else {
                errors.push(e);
            }
        }
    }
}

/// Validates `[nat]` (and its flags); problems go to `errors`.
fn nat_config(
    raw: raw::RawNat,
    o: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Option<NatConfig> {
    let announce_host = o.nat_announce_host.clone().or(raw.announce_host).unwrap_or_default();
    if announce_host.is_empty() {
        errors.push("nat mode needs the host clients connect to: --nat-announce-host HOST (nat.announce_host)".into());
    } else if announce_host.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'@' || b == b',') {
        errors.push(format!("nat.announce_host '{announce_host}' is not a hostname or IP"));
    }
    let bind_text = o.nat_bind.clone().or(raw.bind).unwrap_or_else(|| "0.0.0.0".to_string());
    let bind = match bind_text.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => ip,
        Err(_) => {
            errors.push(format!("nat.bind: '{bind_text}' is not an IP address"));
            std::net::Ipv4Addr::UNSPECIFIED.into()
        }
    };
    let ports = match o.nat_ports.clone().or(raw.ports) {
        None => None,
        Some(text) => match parse_port_range(&text) {
            Some(r) => Some(r),
            None => {
                errors.push(format!("nat.ports: '{text}' is not a port range like 7000-7099"));
                None
            }
        },
    };
    let mut node_ports = Vec::new();
    for (key, port) in raw.node_ports {
        if port == 0 {
            errors.push(format!("nat.node_ports: '{key}' has port 0"));
            continue;
        }
        let k = if key.len() == 40 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            NodeKey::Id(key.to_ascii_lowercase())
        } else if let Some(a) = NodeAddr::parse(&key) {
            NodeKey::Addr(a)
        } else {
            errors.push(format!("nat.node_ports: '{key}' is neither a node id (40 hex digits) nor host:port"));
            continue;
        };
        if node_ports.iter().any(|(_, p)| *p == port) {
            errors.push(format!("nat.node_ports: port {port} is given to two nodes"));
        }
        node_ports.push((k, port));
    }
    if ports.is_none() && node_ports.is_empty() {
        errors.push("nat mode needs ports for the node listeners: --nat-ports 7000-7099 (nat.ports)".into());
    }
    let password = match env(NAT_PASSWORD_ENV) {
        Some(p) => Some(Secret::new(p)),
        None => match (&raw.password_file, &raw.password_env) {
            (Some(path), _) => match std::fs::read_to_string(path) {
                Ok(t) => Some(Secret::new(t.trim_end_matches(['\r', '\n']))),
                Err(e) => {
                    errors.push(format!("nat.password_file {}: {e}", path.display()));
                    None
                }
            },
            (None, Some(var)) => match env(var) {
                Some(p) => Some(Secret::new(p)),
                None => {
                    errors.push(format!("nat.password_env: environment variable {var} is not set"));
                    None
                }
            },
            (None, None) => raw.password.map(Secret::new),
        },
    };
    if password.as_ref().is_some_and(|p| p.expose().is_empty()) {
        errors.push("the nat password is empty".into());
    }
    Some(NatConfig {
        announce_host,
        bind,
        ports,
        node_ports,
        leave_grace: Duration::from_millis(raw.leave_grace_ms.unwrap_or(30_000)),
        unknown_address_wait: Duration::from_millis(raw.unknown_address_wait_ms.unwrap_or(2000)),
        password,
    })
}

/// `7000-7099` or `7000`: an inclusive range of non-zero ports.
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.trim().split_once('-').unwrap_or((text.trim(), text.trim()));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

/// `SLOTWAY_UPSTREAM_PASSWORD` wins; then `upstream.password_file`, `upstream.password_env`, `upstream.password`.
fn resolve_password(up: &raw::RawUpstream, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Secret>, String> {
    if let Some(p) = env(UPSTREAM_PASSWORD_ENV) {
        return Ok(Some(Secret::new(p)));
    }
    match read_secret("upstream", up.password_file.as_deref(), up.password_env.as_deref(), env)? {
        Some(p) => Ok(Some(p)),
        None => Ok(up.password.clone().map(Secret::new)),
    }
}

/// A password from `file` (first) or the environment variable `var`; None when neither is given. `what` names
/// the setting in errors.
fn read_secret(
    what: &str,
    file: Option<&Path>,
    var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{what}.password_file {}: {e}", path.display()))?;
        // A trailing newline is an artifact of how the file was written, not part of the password.
        return Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))));
    }
    if let Some(var) = var {
        return match env(var) {
            Some(p) => Ok(Some(Secret::new(p))),
            None => Err(format!("{what}.password_env: environment variable {var} is not set")),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
