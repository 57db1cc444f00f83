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
    /// MOVED replies followed.
    redirects_moved,
    /// ASK replies followed.
    redirects_ask,
    /// Retries after TRYAGAIN.
    retries_tryagain,
    /// Retries after CLUSTERDOWN.
    retries_clusterdown,
    /// Retries after a request could not be sent (node unreachable).
    retries_unreachable,
    /// Retries of read-only requests whose connection died after they were written.
    retries_connection_lost,
    /// Errors slotway returned because a node could not answer (after retries).
    upstream_failures_returned,
    /// Topology refreshes completed.
    topology_refreshes,
    /// Topology refreshes that changed the slot map.
    topology_changes,
    /// Topology refreshes that failed on every node.
    topology_refresh_failures,
    /// Upstream connections opened.
    upstream_connects,
    /// Upstream connection attempts that failed.
    upstream_connect_failures,
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
}

impl Metrics {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
