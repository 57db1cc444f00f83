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
}

impl Metrics {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
