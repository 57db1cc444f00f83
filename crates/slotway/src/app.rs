//! Wiring: config → upstream pools → discovery → command table → listener; and shutdown.
use crate::command::CommandTable;
use crate::config::{tls, Config};
use crate::downstream::{self, ClientTls, Shared};
use crate::metrics::Metrics;
use crate::nat;
use crate::observe::Observe;
use crate::provision::{NodeIdentity, Provisioner};
use crate::scripts::ScriptCache;
use crate::topology::{call_value, TopologyManager};
use crate::upstream::connect::connect;
use crate::upstream::{ConnectContext, HealthCheck, Identity, PoolLimits, Upstreams};
use anyhow::{Context, Result};
use resp::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

/// What a worker thread needs to start serving, sent once discovery has succeeded.
enum WorkerStart {
    Standalone {
        shared: Arc<Shared>,
        incoming: mpsc::UnboundedReceiver<downstream::Accepted>,
        shutdown: watch::Receiver<bool>,
    },
    Nat {
        shared: Arc<nat::session::NatShared>,
        incoming: mpsc::UnboundedReceiver<nat::listeners::NatAccepted>,
        shutdown: watch::Receiver<bool>,
    },
}

/// Runs slotway until SIGINT/SIGTERM. Errors returned here are startup failures (exit code 1).
///
/// Threads: `workers` worker threads, each a single-threaded runtime that owns its client sessions and its own
/// connections to every node (so a request never crosses threads), plus the calling thread, which runs the
/// control plane: discovery, the topology refresher, the acceptor and signal handling.
pub fn run(config: Config) -> Result<()> {
    let config = Arc::new(config);
    let mut handles = Vec::new();
    let mut starts = Vec::new();
    let mut threads = Vec::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    for w in 0..config.workers {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("worker runtime")?;
        handles.push(rt.handle().clone());
        let (start_tx, start_rx) = oneshot::channel::<WorkerStart>();
        starts.push(start_tx);
        let mut stop = stop_rx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("slotway-worker-{w}"))
                .spawn(move || {
                    rt.block_on(async move {
                        match start_rx.await {
                            Ok(WorkerStart::Standalone { shared, incoming, shutdown }) => {
                                downstream::work(w, incoming, shared, shutdown).await
                            }
                            Ok(WorkerStart::Nat { shared, incoming, shutdown }) => {
                                nat::session::work(incoming, shared, shutdown).await
                            }
                            Err(_) => {}
                        }
                        // Sessions keep draining until the control thread says stop.
                        let _ = stop.wait_for(|&v| v).await;
                    })
                })
                .context("worker thread")?,
        );
    }
    let control = tokio::runtime::Builder::new_current_thread().enable_all().build().context("control runtime")?;
    let result = control.block_on(serve(config, handles, starts));
    // Dropping the control runtime drops its tasks (acceptors, node listeners), and with them the channels the
    // workers wait on, so the workers can finish even after a startup failure.
    drop(control);
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    result
}

async fn serve(config: Arc<Config>, workers: Vec<Handle>, starts: Vec<oneshot::Sender<WorkerStart>>) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let tls = match &config.upstream.tls {
        Some(t) => {
            if t.insecure_skip_verify {
                tracing::warn!(
                    "upstream TLS certificate verification is OFF (--upstream-tls-insecure): development only"
                );
            }
            Some((tls::client_config(t).context("upstream TLS")?, t.clone()))
        }
        None => None,
    };
    let ctx_as = |user: Option<String>, password: Option<crate::config::Secret>| ConnectContext {
        tls: tls.clone(),
        user,
        password,
        connect_timeout: config.upstream.connect_timeout,
        metrics: metrics.clone(),
        resolve: config.resolve.clone(),
        health: config
            .upstream
            .health_check_interval
            .map(|interval| HealthCheck { interval, timeout: config.upstream.health_check_timeout }),
        on_trouble: Default::default(),
    };
    let ctx = || ctx_as(config.upstream.user.clone(), config.upstream.password.clone());
    let limits = PoolLimits {
        per_node: config.upstream.connections_per_node,
        max_dedicated: config.upstream.max_dedicated_per_node,
    };
    // Identity 0 is `[upstream]`; each distinct cluster user that slotway users map to gets the next index.
    let mapped = upstream_identities(&config.users);
    // Then each `provision_upstream` user's own ACL user on the nodes, with a password made now.
    let provisioned: Vec<NodeIdentity> = config
        .users
        .iter()
        .filter(|u| u.provision_upstream)
        .enumerate()
        .map(|(i, u)| NodeIdentity::generate(&u.name, Identity::new((1 + mapped.len() + i) as u16)))
        .collect();
    let mut ctxs = vec![ctx()];
    ctxs.extend(mapped.iter().map(|c| ctx_as(Some(c.user.clone()), Some(c.password.clone()))));
    ctxs.extend(provisioned.iter().map(|p| ctx_as(Some(p.acl_user.clone()), Some(p.password.clone()))));
    let upstreams = Arc::new(Upstreams::new(ctxs, workers, limits));
    let topology = TopologyManager::discover(
        upstreams.clone(),
        config.upstream.seeds.clone(),
        config.upstream.refresh_interval,
        config.upstream.refresh_min_interval,
        (config.listen.read_from != crate::config::ReadFrom::Primary).then_some(config.listen.max_replica_lag_bytes),
    )
    .await?;
    let client_tls = match &config.listen.tls {
        Some(t) => Some(Arc::new(ClientTls::new(t.clone()).context("client TLS")?)),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let started = Instant::now();
    let start_monitor = |observe: Option<Arc<Observe>>| async {
        if let Some(addr) = config.metrics_listen {
            let l =
                TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?;
            tracing::info!(addr = %l.local_addr()?, "metrics endpoint listening (/metrics, /health)");
            let monitor = crate::monitor::Monitor {
                metrics: metrics.clone(),
                topology: topology.clone(),
                started,
                shutdown: shutdown_rx.clone(),
                observe,
                max_clients: config.listen.max_clients as u64,
            };
            tokio::spawn(crate::monitor::serve(l, monitor));
        }
        anyhow::Ok(())
    };
    if let Some(nat) = &config.nat {
        start_monitor(None).await?;
        let shutdown = (shutdown_tx, shutdown_rx);
        return serve_nat(config.clone(), nat.clone(), topology, Arc::new(ctx()), client_tls, starts, shutdown).await;
    }
    let table = Arc::new(load_command_table(&topology).await);
    let slowlog = crate::observe::slowlog::Slowlog::new(config.slowlog.threshold_us, config.slowlog.max_len);
    let observe = Arc::new(Observe::new(table.clone(), config.workers, config.latency_tracking, slowlog));
    start_monitor(Some(observe.clone())).await?;
    tokio::spawn(crate::observe::sample_rates(observe.clone(), metrics.clone(), shutdown_rx.clone()));
    let users = if config.users.is_empty() {
        None
    } else {
        let users = compile_users(&config, &table, &mapped, &provisioned).map_err(anyhow::Error::msg)?;
        check_upstream_identities(&config, &mapped, &topology).await?;
        tracing::info!(
            users = config.users.len(),
            upstream_users = mapped.len(),
            provisioned_users = provisioned.len(),
            "clients must authenticate"
        );
        Some(Arc::new(users))
    };
    let provisioner = Provisioner::new(topology.clone(), provisioned);
    if let (false, Some(users)) = (provisioner.is_empty(), &users) {
        let refused = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "cannot provision the cluster ACL users of provision_upstream (the [upstream] user needs \
                 +acl|setuser and +acl|list on every node):\n  {e}"
            )
        };
        provisioner.verify_list().await.map_err(|e| refused(&e))?;
        match provisioner.reprovision(users).await {
            Ok(_) => {}
            Err(e) if e.refused => return Err(refused(&e)),
            Err(e) => tracing::warn!(
                errors = %e,
                "some nodes could not be provisioned yet; slotway keeps trying in the background"
            ),
        }
        tokio::spawn(provisioner.clone().run(shutdown_rx.clone()));
    }

    let mut listeners = Vec::new();
    for (addr, tls) in [(config.listen.addr, false), (config.listen.tls_addr, true)] {
        if let Some(addr) = addr {
            let l = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(addr = %l.local_addr()?, tls, workers = config.workers, "slotway listening");
            listeners.push((l, tls));
        }
    }

    let shared = Arc::new(Shared {
        config: config.clone(),
        topology: topology.clone(),
        table,
        metrics: metrics.clone(),
        limits: resp::Limits { max_bulk_len: config.listen.max_bulk_bytes, ..resp::Limits::default() },
        client_tls: client_tls.clone(),
        started: Instant::now(),
        next_client_id: AtomicU64::new(1),
        scripts: ScriptCache::new(config.scripts),
        users,
        per_address: Default::default(),
        clients: Default::default(),
        observe,
    });
    let mut senders = Vec::new();
    for start in starts {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let _ =
            start.send(WorkerStart::Standalone { shared: shared.clone(), incoming: rx, shutdown: shutdown_rx.clone() });
    }
    tokio::spawn(topology.clone().run(shutdown_rx.clone()));
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|(l, tls)| tokio::spawn(downstream::accept(l, tls, senders.clone(), shutdown_rx.clone())))
        .collect();
    drop(senders);

    wait_for_signal(client_tls.as_deref(), &metrics).await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    for a in acceptors {
        let _ = a.await;
    }
    drain(&config, &metrics).await;
    if !provisioner.is_empty() {
        provisioner.retire().await;
    }
    Ok(())
}

/// Compiles the configured users against the command table, each with its upstream identity: a mapped user's
/// cluster user (`mapped[i]` is identity `i + 1`), a provisioned user's own. Warns about users that may run
/// pub/sub commands but have no channel (Redis 7's default). What a reload that changes the users runs too, then
/// [`Provisioner::reprovision`] with the result (a provisioned user added since start has no identity: it comes
/// out as a user of `[upstream]`, and `reprovision` names it).
pub fn compile_users(
    config: &Config,
    table: &CommandTable,
    mapped: &[crate::config::UpstreamCredentials],
    provisioned: &[NodeIdentity],
) -> Result<crate::auth::Users, String> {
    let mut compiled = Vec::new();
    for u in &config.users {
        let mut user =
            crate::auth::compile(&u.name, u.password_hashes.clone(), &u.rules, table, config.acl_pubsub_default)?;
        if let Some(index) = u.upstream.as_ref().and_then(|creds| mapped.iter().position(|c| c == creds)) {
            user.upstream = Identity::new(index as u16 + 1);
        }
        if let Some(p) = provisioned.iter().find(|p| p.slotway_user == u.name) {
            user.upstream = p.identity;
        }
        user.provisioned = u.provision_upstream;
        if user.has_pubsub_but_no_channels() {
            tracing::warn!(
                user = %u.name,
                "user may run pub/sub commands but has no channels: as in Redis 7, a user gets no channel unless \
                 granted (&pattern or allchannels in its rules, or auth.acl_pubsub_default)"
            );
        }
        compiled.push(user);
    }
    Ok(crate::auth::Users::new(compiled, config.auth_max_failures_per_minute))
}

/// The distinct cluster credentials slotway's users map to, in order of first mention: `[i]` is identity `i + 1`.
fn upstream_identities(users: &[crate::config::UserConfig]) -> Vec<crate::config::UpstreamCredentials> {
    let mut out: Vec<crate::config::UpstreamCredentials> = Vec::new();
    for creds in users.iter().filter_map(|u| u.upstream.as_ref()) {
        if !out.contains(creds) {
            out.push(creds.clone());
        }
    }
    out
}

/// Logs in once as every mapped cluster user (on some primary), so a wrong upstream password or a user missing
/// on the nodes stops slotway at start with a clear message, as for the `[upstream]` credentials, instead of
/// failing every request of that user later.
async fn check_upstream_identities(
    config: &Config,
    mapped: &[crate::config::UpstreamCredentials],
    topology: &TopologyManager,
) -> Result<()> {
    let Some(addr) = topology.load().any_primary(0).map(|p| p.addr.clone()) else { return Ok(()) };
    for (i, creds) in mapped.iter().enumerate() {
        let ctx = topology.upstreams().context(Identity::new(i as u16 + 1)).expect("one context per identity");
        let users: Vec<&str> =
            config.users.iter().filter(|u| u.upstream.as_ref() == Some(creds)).map(|u| u.name.as_str()).collect();
        match connect(&addr, ctx, resp::encode::Protocol::Resp2, false).await {
            Ok(_) => {}
            Err(e) if e.is_fatal() => anyhow::bail!(
                "user {}: cannot log in to the cluster as upstream user '{}' ({addr}): {e}",
                users.join(", "),
                creds.user
            ),
            Err(e) => {
                tracing::warn!(node = %addr, upstream_user = %creds.user, error = %e, "cannot check upstream user")
            }
        }
    }
    Ok(())
}

/// Waits (up to the shutdown grace) for open client connections to finish.
async fn drain(config: &Config, metrics: &Metrics) {
    let deadline = Instant::now() + config.shutdown_grace;
    while metrics.connections_current.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(open = metrics.connections_current.load(Ordering::Relaxed), "stopped");
}

/// Cluster NAT mode: a listener per node (following the topology), sessions on the workers.
async fn serve_nat(
    config: Arc<Config>,
    nat: crate::config::NatConfig,
    topology: Arc<TopologyManager>,
    connect: Arc<ConnectContext>,
    client_tls: Option<Arc<ClientTls>>,
    starts: Vec<oneshot::Sender<WorkerStart>>,
    (shutdown_tx, shutdown_rx): (watch::Sender<bool>, watch::Receiver<bool>),
) -> Result<()> {
    let metrics = connect.metrics.clone();
    let (map_tx, map_rx) = watch::channel(Arc::new(nat::listeners::NatMap::default()));
    let shared = Arc::new(nat::session::NatShared {
        config: config.clone(),
        nat: nat.clone(),
        connect,
        topology: topology.clone(),
        map: map_rx,
        client_tls: client_tls.clone(),
        metrics: metrics.clone(),
        limits: resp::Limits::default(),
    });
    let mut senders = Vec::new();
    for start in starts {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let _ = start.send(WorkerStart::Nat { shared: shared.clone(), incoming: rx, shutdown: shutdown_rx.clone() });
    }
    tracing::info!(
        announce = %nat.announce_host,
        bind = %nat.bind,
        tls = client_tls.is_some(),
        auth = nat.password.is_some(),
        workers = config.workers,
        "slotway in cluster NAT mode"
    );
    let mut listeners = nat::listeners::Listeners::new(nat, senders, map_tx);
    let mut changes = topology.subscribe();
    if let Err(errors) = listeners.start(&mut changes).await {
        anyhow::bail!("cannot open the node listeners:\n  {}", errors.join("\n  "));
    }
    let manager = tokio::spawn(listeners.run(changes, shutdown_rx.clone()));
    tokio::spawn(topology.clone().run(shutdown_rx.clone()));

    wait_for_signal(client_tls.as_deref(), &metrics).await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    let _ = manager.await;
    drain(&config, &metrics).await;
    Ok(())
}

/// The nodes' own COMMAND table (so new commands and modules route correctly), or the built-in one.
async fn load_command_table(topology: &TopologyManager) -> CommandTable {
    let topo = topology.load();
    if let Some(pool) = topo.any_primary(0) {
        match call_value(pool, &[b"COMMAND"], Duration::from_secs(10)).await {
            Ok(v @ Value::Array(_)) => match CommandTable::from_command_reply(&v) {
                Ok(t) => return t,
                Err(e) => tracing::warn!(error = %e, "cannot use the node's COMMAND reply; using the built-in table"),
            },
            Ok(other) => tracing::warn!(reply = ?other, "unexpected COMMAND reply; using the built-in table"),
            Err(e) => tracing::warn!(error = %e, "COMMAND failed; using the built-in table"),
        }
    }
    CommandTable::builtin()
}

/// Waits for SIGINT or SIGTERM. SIGHUP re-reads the client TLS certificates in the meantime.
async fn wait_for_signal(client_tls: Option<&ClientTls>, metrics: &Metrics) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => match client_tls {
                Some(t) => match t.reload() {
                    Ok(()) => {
                        Metrics::incr(&metrics.reloads);
                        tracing::info!(cert = %t.settings.cert.display(), "client TLS certificates reloaded")
                    }
                    Err(e) => {
                        Metrics::incr(&metrics.reload_failures);
                        tracing::error!(error = %e, "client TLS reload failed; keeping the old certificates")
                    }
                },
                None => tracing::info!("SIGHUP: nothing to reload"),
            },
        }
    }
}
