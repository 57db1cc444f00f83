//! Counters declared once and shared as one `Arc<Metrics>`. Plain relaxed atomics: a counter bump is one
//! uncontended instruction on the hot path. Labels stay bounded (no keys, no client addresses).
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! metrics {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// `name:value` lines, in declaration order (the `# Proxy` section of INFO).
            pub fn render_info(&self, out: &mut String) {
                $(let _ = write!(out, "{}:{}\r\n", stringify!($name), self.$name.load(Ordering::Relaxed));)*
            }

            /// Every counter in Prometheus's text format: `slotway_<name>_total` for counters, `slotway_<name>`
            /// for the gauges in [`GAUGES`], each with its doc comment as HELP.
            pub fn render_prometheus(&self, out: &mut String) {
                $(prometheus_line(out, stringify!($name), &[$($doc),*], self.$name.load(Ordering::Relaxed));)*
            }
        }
    };
}

metrics! {
    /// Client connections accepted since start.
    connections_accepted,
    /// Client connections open now.
    connections_current,
    /// Requests received from clients.
    commands_received,
    /// Requests answered by slotway itself (PING, SELECT, errors it decides).
    commands_local,
    /// Malformed client input that closed the connection.
    protocol_errors,
    /// AUTH attempts with a wrong user or password.
    auth_failures,
    /// AUTH attempts refused unchecked because their address failed too often.
    auth_rate_limited,
    /// Requests refused by a user's ACL rules (NOPERM) or before authentication (NOAUTH).
    acl_denied,
    /// Clients refused because `client.max_clients` was reached.
    rejected_max_clients,
    /// Clients refused because their address had `client.max_clients_per_address` connections.
    rejected_max_per_address,
    /// Clients closed by CLIENT KILL.
    clients_killed,
    /// Clients disconnected after `client.idle_timeout_ms` without a request.
    idle_disconnects,
    /// Clients disconnected because a request didn't arrive whole within `client.request_timeout_ms` (slow loris).
    request_timeout_disconnects,
    /// Clients disconnected because they accepted no output for `client.output_stall_timeout_ms`.
    output_stall_disconnects,
    /// Requests larger than `client.max_request_bytes` (connection closed).
    oversized_requests,
    /// Client TLS handshakes that failed or timed out.
    tls_handshake_failures,
    /// nat mode: replies whose node addresses were rewritten (topology replies, MOVED/ASK, ROLE, INFO).
    nat_rewrites,
    /// nat mode: node addresses left out of a reply because slotway didn't know the node even after a refresh.
    nat_unknown_addresses,
    /// MOVED replies followed.
    redirects_moved,
    /// ASK replies followed.
    redirects_ask,
    /// Retries after TRYAGAIN.
    retries_tryagain,
    /// Retries after CLUSTERDOWN.
    retries_clusterdown,
    /// Retries after READONLY, MASTERDOWN or LOADING (a node changed role or is restarting).
    retries_node_not_ready,
    /// Retries of writes whose connection died after they were written (`retry_writes_on_connection_loss`).
    retries_write_connection_lost,
    /// Retries after a request could not be sent (node unreachable).
    retries_unreachable,
    /// Retries of read-only requests whose connection died after they were written.
    retries_connection_lost,
    /// Errors slotway returned because a node could not answer (after retries).
    upstream_failures_returned,
    /// Refresh requests, by trigger (merged: several requests may lead to one refresh).
    refresh_requests_moved,
    refresh_requests_unreachable,
    refresh_requests_clusterdown,
    refresh_requests_node_not_ready,
    refresh_requests_health_check,
    refresh_requests_admin,
    /// EVALSHA answered NOSCRIPT by a node, script body loaded there from slotway's cache and EVALSHA resent.
    scripts_reloaded,
    /// Topology refreshes completed.
    topology_refreshes,
    /// Topology refreshes that changed the slot map.
    topology_changes,
    /// Topology refreshes that failed on every node.
    topology_refresh_failures,
    /// Refreshes whose every answer was older (lower config epoch) than the map in use, and were ignored.
    topology_stale_views,
    /// Idle upstream connections checked with a PING (`upstream.health_check_interval_ms`).
    health_check_pings,
    /// Upstream connections closed because the node sent nothing back within `upstream.health_check_timeout_ms`.
    health_check_failures,
    /// Upstream connections opened.
    upstream_connects,
    /// Upstream connection attempts that failed.
    upstream_connect_failures,
    /// Writes on the shared upstream connections: each carries one batch of requests, from any number of clients.
    upstream_batches,
    /// Requests written on the shared upstream connections (divided by `upstream_batches`: the mean batch size).
    upstream_batched_requests,
    /// Dedicated upstream connections (transactions, blocking commands) opened.
    dedicated_connects,
    /// Dedicated upstream connections open now, in use or idle.
    dedicated_open,
    /// Requests refused because a node's dedicated connections were all in use.
    dedicated_exhausted,
    /// Transactions (EXEC) forwarded to a node.
    transactions,
    /// Blocking commands (BLPOP, XREAD BLOCK, WAIT, ...) forwarded on dedicated connections.
    blocking_commands,
    /// Clients subscribed now (holding at least one pub/sub connection).
    pubsub_clients,
    /// Pub/sub upstream connections open now (also counted in `dedicated_open`).
    pubsub_connections,
    /// Pub/sub messages relayed to clients.
    pubsub_messages,
    /// Subscribers disconnected because more than `client.pubsub_output_limit_bytes` waited for them.
    pubsub_output_limit_disconnects,
    /// Subscribers disconnected because a pub/sub connection to a node failed (their subscriptions were lost).
    pubsub_connection_failures,
    /// Refresh requests because a sentinel published an event about the group.
    refresh_requests_sentinel_event,
    /// Resolutions of a single replication group (Sentinel or static servers), by what triggered them: the timer.
    group_resolutions_periodic,
    /// Group resolutions triggered by a sentinel event.
    group_resolutions_sentinel_event,
    /// Group resolutions triggered by READONLY, LOADING or MASTERDOWN from a node.
    group_resolutions_node_not_ready,
    /// Group resolutions triggered by an unreachable node or a lost connection.
    group_resolutions_unreachable,
    /// Group resolutions triggered by a failed health check, an operator (SLOTWAY REFRESH) or no primary.
    group_resolutions_other,
    /// Group resolutions that found no primary slotway could trust.
    group_resolutions_without_primary,
    /// Group resolutions that got no answer at all (every sentinel or server unreachable).
    group_resolution_failures,
    /// Times the group's primary changed (including to none and back).
    group_primary_changes,
    /// Nodes named as the primary that answered ROLE with another role (and were not used).
    group_role_mismatches,
    /// Times a sentinel's failover event stopped traffic to the primary before the next resolution.
    group_fences,
    /// Sentinel events about the group received (each asks for a resolution).
    sentinel_events,
    /// Shards of a pool taken out of the ring (`sharding.auto_eject_hosts`): their keys moved to other shards.
    pool_shards_ejected,
    /// Ejected shards put back into the ring (their keys moved back).
    pool_shards_restored,
    /// Configuration reloads (SIGHUP, `SLOTWAY RELOAD`) applied.
    config_reloads_ok,
    /// Configuration reloads refused (invalid file, bad certificate, credentials the nodes refuse): nothing changed.
    config_reloads_failed,
}

/// The metrics that go up and down (the others only count up).
pub const GAUGES: &[&str] = &["connections_current", "dedicated_open", "pubsub_clients", "pubsub_connections"];

fn prometheus_line(out: &mut String, name: &str, doc: &[&str], value: u64) {
    let help: Vec<&str> = doc.iter().map(|l| l.trim()).collect();
    let help = if help.is_empty() { name.replace('_', " ") } else { help.join(" ") };
    let (kind, suffix) = if GAUGES.contains(&name) { ("gauge", "") } else { ("counter", "_total") };
    let _ = writeln!(out, "# HELP slotway_{name}{suffix} {}", prometheus_help(&help));
    let _ = writeln!(out, "# TYPE slotway_{name}{suffix} {kind}");
    let _ = writeln!(out, "slotway_{name}{suffix} {value}");
}

/// HELP text escaped as the exposition format asks: backslash and line feed.
pub fn prometheus_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

impl Metrics {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
