//! The client side: the acceptor, and per-connection sessions on worker threads.
pub mod busy;
pub mod clients;
pub mod local;
pub mod monitor;
pub mod pause;
mod session;

pub(crate) use session::error_reply;

use crate::command::CommandTable;
use crate::config::Config;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::scripts::ScriptCache;
use crate::topology::TopologyManager;
use local::ClientState;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// What every session reads: the live topology, the command table, the live settings and counters.
pub struct Shared {
    /// The configuration and users in force; a reload swaps them (see [`crate::live`]).
    pub live: Arc<Live>,
    pub topology: Arc<TopologyManager>,
    pub table: Arc<CommandTable>,
    pub metrics: Arc<Metrics>,
    pub client_tls: Option<Arc<ClientTls>>,
    /// Asks the control thread to reload the configuration (`SLOTWAY RELOAD`).
    pub reload: Option<ReloadTrigger>,
    pub started: Instant,
    pub next_client_id: AtomicU64,
    /// Script bodies seen, for NOSCRIPT recovery.
    pub scripts: ScriptCache,
    /// Open connections per client address.
    pub per_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    /// Every client connection, for CLIENT LIST / INFO / KILL.
    pub clients: Arc<clients::Clients>,
    /// The nodes' Redis version, read at start: HELLO reports it as the server's.
    pub node_version: String,
    /// ACL SETUSER / DELUSER.
    pub acl_admin: Arc<crate::acl_admin::AclAdmin>,
    /// The clients in MONITOR mode.
    pub monitors: Arc<monitor::Monitors>,
    /// CLIENT PAUSE in force for slotway's clients.
    pub pause: pause::Pause,
    /// Scripts in flight, for the BUSY errors of a script running long (`client.busy_script_scope`).
    pub scripts_running: Arc<busy::Scripts>,
    /// Per-worker counters and histograms, the slow log, traced names (see [`crate::observe`]).
    pub observe: Arc<crate::observe::Observe>,
}

/// Sends a reload request to the control thread; the outcome is delivered to `reply_to` as a RESP reply
/// (`+OK ...` or `-ERR ...`).
#[derive(Clone)]
pub struct ReloadTrigger(pub mpsc::UnboundedSender<crate::upstream::ReplyTo>);

impl Shared {
    /// slotway's own users in force now; None = no authentication required.
    pub fn users(&self) -> Option<Arc<crate::auth::Users>> {
        self.live.load().users.clone()
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }
}

/// A client's place among the connected ones: counted while it lives, released when dropped.
pub struct ClientSlot {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.shared.metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
        let mut per = self.shared.per_address.lock().expect("per-address lock");
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    /// Counts a new client in, or None when `max_clients` or `max_clients_per_address` is reached. Every
    /// address is counted (a lock per connect and disconnect, never per command), so a reload that sets a
    /// per-address limit applies to the connections already open too.
    pub fn admit(self: &Arc<Self>, ip: std::net::IpAddr, limits: &crate::config::ListenConfig) -> Option<ClientSlot> {
        let current = self.metrics.connections_current.fetch_add(1, Ordering::Relaxed);
        if current >= limits.max_clients as u64 {
            self.metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let mut per = self.per_address.lock().expect("per-address lock");
        let n = per.entry(ip).or_insert(0);
        if limits.max_clients_per_address > 0 && *n >= limits.max_clients_per_address {
            if *n == 0 {
                per.remove(&ip);
            }
            drop(per);
            self.metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(ClientSlot { shared: self.clone(), ip })
    }
}

/// An accepted client on its way to a worker.
pub struct Accepted {
    pub stream: std::net::TcpStream,
    pub addr: SocketAddr,
    /// Came in on the TLS listener: the worker does the handshake before serving it.
    pub tls: bool,
}

/// The TLS side of client connections: the current settings and server config, replaced whole when a reload
/// (SIGHUP, `SLOTWAY RELOAD`) re-reads the certificates. Connections already open keep the config they were
/// accepted with.
pub struct ClientTls {
    current: arc_swap::ArcSwap<ClientTlsState>,
}

/// Settings and the server config built from them, checked before they are installed.
pub struct ClientTlsState {
    pub settings: crate::config::DownstreamTls,
    config: Arc<rustls::ServerConfig>,
}

impl ClientTls {
    pub fn new(settings: crate::config::DownstreamTls) -> Result<ClientTls, crate::config::tls::TlsConfigError> {
        Ok(ClientTls { current: arc_swap::ArcSwap::from_pointee(Self::prepare(settings)?) })
    }

    /// Reads and checks the certificate, key and client CA of `settings` without installing them.
    pub fn prepare(
        settings: crate::config::DownstreamTls,
    ) -> Result<ClientTlsState, crate::config::tls::TlsConfigError> {
        let config = crate::config::tls::server_config(&settings)?;
        Ok(ClientTlsState { settings, config })
    }

    /// New connections use `state` from now on.
    pub fn install(&self, state: ClientTlsState) {
        self.current.store(Arc::new(state));
    }

    /// The settings in force.
    pub fn settings(&self) -> crate::config::DownstreamTls {
        self.current.load().settings.clone()
    }

    /// Re-reads the certificate, key and client CA from the same files; on error the old ones stay in use.
    pub fn reload(&self) -> Result<(), crate::config::tls::TlsConfigError> {
        self.install(Self::prepare(self.settings())?);
        Ok(())
    }

    /// The acceptor for a new connection, and how long its handshake may take.
    pub(crate) fn acceptor(&self) -> (tokio_rustls::TlsAcceptor, std::time::Duration) {
        let state = self.current.load();
        (tokio_rustls::TlsAcceptor::from(state.config.clone()), state.settings.handshake_timeout)
    }
}

/// Accepts clients until `shutdown` flips and hands them to the workers in turn.
pub async fn accept(
    listener: TcpListener,
    tls: bool,
    workers: Vec<mpsc::UnboundedSender<Accepted>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = 0usize;
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
        let Ok(stream) = stream.into_std() else { continue };
        let _ = workers[next % workers.len()].send(Accepted { stream, addr, tls });
        next = next.wrapping_add(1);
    }
}

/// What a client connection holds while it lives: its place under the client limits and in the registry.
pub(super) struct Admission {
    _slot: ClientSlot,
    _registered: clients::Registered,
}

/// A worker thread's main loop: serves the clients the acceptor hands it, each in its own task on this thread.
/// Once the acceptors stop (shutdown), tells every client to finish (each worker does, after the last client it
/// registered, so none is missed; the signal is idempotent).
pub async fn work(worker: usize, mut incoming: mpsc::UnboundedReceiver<Accepted>, shared: Arc<Shared>) {
    while let Some(Accepted { stream, addr, tls }) = incoming.recv().await {
        let live = shared.live.load();
        let Some(slot) = shared.admit(addr.ip(), &live.config.listen) else {
            // Refused with Redis's wording (plain listeners only: a TLS client couldn't read it), then closed.
            let msg = if shared.metrics.connections_current.load(Ordering::Relaxed)
                >= live.config.listen.max_clients as u64
            {
                Metrics::incr(&shared.metrics.rejected_max_clients);
                "-ERR max number of clients reached\r\n".as_bytes()
            } else {
                Metrics::incr(&shared.metrics.rejected_max_per_address);
                "-ERR max number of clients from this address reached\r\n".as_bytes()
            };
            if !tls {
                // The socket is non-blocking and empty: a short write goes straight into its send buffer.
                let _ = std::io::Write::write(&mut &stream, msg);
            }
            continue;
        };
        let laddr = stream.local_addr().ok();
        let fd = raw_fd(&stream);
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { continue };
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let user = live.users.as_ref().and_then(|u| u.initial());
        let (handle, registered) = shared.clients.register(id, addr, laddr, fd);
        let mut client = ClientState::new(id, user, handle);
        client.db = live.config.initial_db();
        let shared = shared.clone();
        Metrics::incr(&shared.metrics.connections_accepted);
        // Two kinds of task: a plain client's doesn't carry the room a TLS handshake and stream need.
        match (tls, shared.client_tls.clone()) {
            (true, Some(client_tls)) => tokio::spawn(async move {
                let admission = Admission { _slot: slot, _registered: registered };
                let (acceptor, timeout) = client_tls.acceptor();
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        Box::new(session::Session::new(tls_stream, shared, client, worker, admission)).run().await
                    }
                    Ok(Err(e)) => {
                        Metrics::incr(&shared.metrics.tls_handshake_failures);
                        tracing::debug!(client = %addr, error = %e, "client TLS handshake failed");
                    }
                    Err(_) => {
                        Metrics::incr(&shared.metrics.tls_handshake_failures);
                        tracing::debug!(client = %addr, "client TLS handshake timed out");
                    }
                }
            }),
            _ => {
                // Made here, not in the task: what an async block moves in stays in its task for good.
                let admission = Admission { _slot: slot, _registered: registered };
                let session = Box::new(session::Session::new(stream, shared, client, worker, admission));
                tokio::spawn(session.run())
            }
        };
    }
    shared.clients.shut_down();
}

/// The socket's descriptor, for CLIENT LIST's `fd` (-1 where there is none).
#[cfg(unix)]
fn raw_fd(stream: &std::net::TcpStream) -> i64 {
    std::os::fd::AsRawFd::as_raw_fd(stream) as i64
}

#[cfg(not(unix))]
fn raw_fd(_: &std::net::TcpStream) -> i64 {
    -1
}
