//! The config file as written: every field optional, unknown keys rejected.
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `standalone` (default) or `nat`.
    pub mode: Option<String>,
    pub listen: Option<String>,
    pub listen_tls: Option<String>,
    pub metrics_listen: Option<String>,
    /// `[listen_tls_options]`: certificate settings of the TLS listener.
    #[serde(default)]
    pub listen_tls_options: RawDownstreamTls,
    pub log_level: Option<String>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    /// Old name of `[shutdown] drain_timeout_ms`, still accepted.
    pub shutdown_grace_ms: Option<u64>,
    #[serde(default)]
    pub shutdown: RawShutdown,
    pub workers: Option<usize>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub client: RawClient,
    /// `[[users]]`: slotway's own users; when any is configured, clients must authenticate.
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub scripts: RawScripts,
    #[serde(default)]
    pub nat: RawNat,
    /// Latency histograms, INFO latencystats/commandstats times, SLOWLOG and LATENCY (on by default).
    pub latency_tracking: Option<bool>,
    #[serde(default)]
    pub slowlog: RawSlowlog,
    /// `[sentinel]`: the backend is one replication group managed by Redis Sentinel.
    #[serde(default)]
    pub sentinel: RawSentinel,
    /// `[servers]`: the backend is one replication group of fixed servers; slotway finds the primary with ROLE.
    #[serde(default)]
    pub servers: RawServers,
    /// The master name slotway answers to when clients ask it as a sentinel (`SENTINEL get-master-addr-by-name`).
    pub service_name: Option<String>,
    /// `[sharding]`: how keys are placed on the `[[shards]]` of a twemproxy-style pool.
    #[serde(default)]
    pub sharding: RawSharding,
    /// `[[shards]]`: the backend is a pool of replication groups placed by hash (twemproxy's servers).
    #[serde(default)]
    pub shards: Vec<RawShard>,
}

/// `[sharding]`: twemproxy's placement settings, under its names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSharding {
    /// `ketama` or `modula`.
    pub distribution: Option<String>,
    /// A twemproxy hash name (`fnv1a_64`, `md5`, `murmur`, ...).
    pub hash: Option<String>,
    /// Two characters, e.g. `"{}"`.
    pub hash_tag: Option<String>,
    /// How twemproxy's build read key bytes: as signed C `char`s (x86-64, the default) or unsigned (ARM).
    pub signed_chars: Option<bool>,
    pub auto_eject_hosts: Option<bool>,
    pub server_failure_limit: Option<u32>,
    pub server_retry_timeout_ms: Option<u64>,
    /// The database clients start in (twemproxy's `redis_db`).
    pub redis_db: Option<u16>,
}

/// One `[[shards]]` entry: a replication group and its place in the ring.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShard {
    /// The ring name (twemproxy's `name` column); default: the first server as written.
    pub name: Option<String>,
    /// A static group: its servers, `host:port`; the primary is found with ROLE.
    #[serde(default)]
    pub servers: Vec<String>,
    /// A Sentinel-managed group: its master name (the sentinels are `[sentinel] addresses`).
    pub sentinel_master: Option<String>,
    pub weight: Option<u32>,
}

/// `[slowlog]`: which requests SLOWLOG keeps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlowlog {
    /// Requests whose end-to-end time reaches this many µs are logged; negative turns the log off, 0 logs all.
    pub threshold_us: Option<i64>,
    pub max_len: Option<usize>,
}

/// `[sentinel]`: Sentinel discovery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinel {
    /// Sentinels, `host:port`, asked in this order.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The master name the sentinels monitor (`sentinel monitor <name> ...`).
    pub master_name: Option<String>,
    /// ACL user for AUTH to the sentinels.
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub poll_interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub tls: RawTls,
}

/// `[servers]`: a static primary/replica set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServers {
    #[serde(default)]
    pub addresses: Vec<String>,
    pub poll_interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

/// `[nat]`: cluster NAT mode.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNat {
    pub announce_host: Option<String>,
    /// `"7000-7099"` (or one port).
    pub ports: Option<String>,
    pub bind: Option<String>,
    /// Node id or `host:port` → port.
    #[serde(default)]
    pub node_ports: std::collections::BTreeMap<String, u16>,
    /// Hostname → IP (or another hostname), for slotway's own connections to the nodes.
    #[serde(default)]
    pub resolve: std::collections::BTreeMap<String, String>,
    pub leave_grace_ms: Option<u64>,
    pub unknown_address_wait_ms: Option<u64>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default)]
    pub seeds: Vec<String>,
    pub refresh_interval_ms: Option<u64>,
    pub refresh_min_interval_ms: Option<u64>,
    pub max_redirects: Option<u32>,
    pub max_retries: Option<u32>,
    pub retry_deadline_ms: Option<u64>,
    pub retry_writes_on_connection_loss: Option<bool>,
    pub retry_base_delay_ms: Option<u64>,
    pub retry_max_delay_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub connections_per_node: Option<usize>,
    pub max_dedicated_per_node: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub health_check_interval_ms: Option<u64>,
    pub health_check_timeout_ms: Option<u64>,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub enabled: Option<bool>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDownstreamTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub handshake_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub max_pending: Option<usize>,
    pub max_clients: Option<usize>,
    pub max_clients_per_address: Option<usize>,
    pub idle_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_request_bytes: Option<usize>,
    pub max_bulk_bytes: Option<usize>,
    pub output_stall_timeout_ms: Option<u64>,
    pub pubsub_output_limit_bytes: Option<usize>,
    /// What a script running past `busy-reply-threshold` makes busy: `endpoint` (as one server) or `node`.
    pub busy_script_scope: Option<String>,
    pub read_from: Option<String>,
    pub max_replica_lag_bytes: Option<i64>,
    pub read_your_writes: Option<bool>,
    pub read_your_writes_window_ms: Option<u64>,
}

/// `[shutdown]`: how SIGTERM drains.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScripts {
    pub cache_entries: Option<usize>,
    pub cache_bytes: Option<usize>,
}

impl RawConfig {
    pub fn parse(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    /// SHA-256 hex digests of accepted passwords (`#` prefix optional), as Redis ACL `#<hash>`.
    #[serde(default)]
    pub passwords_sha256: Vec<String>,
    /// A file holding one plaintext password (trailing newline ignored); hashed at load.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding a plaintext password; hashed at load.
    pub password_env: Option<String>,
    /// Redis ACL rules (subset), e.g. `on +@read -@dangerous ~app1:* %R~shared:*`.
    #[serde(default)]
    pub rules: String,
    /// `[users.upstream]`: the cluster ACL user this user's requests run as (default: `[upstream]`'s).
    pub upstream: Option<RawUserUpstream>,
    /// `provision_upstream = true`: slotway creates a cluster ACL user with this user's rules on every node and
    /// runs the user's requests as it.
    pub provision_upstream: Option<bool>,
}

/// The cluster ACL user a slotway user maps to. The password comes from a file or an environment variable only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserUpstream {
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub max_failures_per_minute: Option<u32>,
    /// Redis's `acl-pubsub-default`: `resetchannels` (Redis 7's default) or `allchannels`.
    pub acl_pubsub_default: Option<String>,
    /// Users created at run time with ACL SETUSER get a cluster ACL user of their own, as `provision_upstream`.
    pub provision_new_users: Option<bool>,
}
