//! The client side: listeners and per-connection sessions.
pub mod local;
mod session;

use crate::command::CommandTable;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::topology::TopologyManager;
use local::ClientState;
use resp::encode::Protocol;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every session reads: the live topology, the command table, config and counters.
pub struct Shared {
    pub config: Arc<Config>,
    pub topology: Arc<TopologyManager>,
    pub table: Arc<CommandTable>,
    pub metrics: Arc<Metrics>,
    pub limits: resp::Limits,
    pub started: Instant,
    pub next_client_id: AtomicU64,
}

/// Accepts clients until `shutdown` flips, each served by its own task.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let client = ClientState { id, addr, name: None, protocol: Protocol::Resp2 };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            Metrics::incr(&shared.metrics.connections_accepted);
            shared.metrics.connections_current.fetch_add(1, Ordering::Relaxed);
            let metrics = shared.metrics.clone();
            session::Session::new(stream, shared, client).run(shutdown).await;
            metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
