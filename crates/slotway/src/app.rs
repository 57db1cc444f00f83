//! Wiring: config → upstream pools → discovery → command table → listener; reloads; and shutdown.
use crate::backend::servers::{futures_join_all, StaticGroup};
use crate::backend::{probe, sentinel::SentinelGroup, GroupResolver, GroupView};
use crate::cluster::NodeAddr;
use crate::command::CommandTable;
use crate::config::{tls, Config, UpstreamCredentials};
use crate::config::{Backend, ShardGroup};
use crate::downstream::{self, ClientTls, ReloadTrigger, Shared};
use crate::live::{ConfigSource, Live, LiveSettings, Loaded};
use crate::logging::LogControl;
use crate::metrics::Metrics;
use crate::nat;
use crate::observe::slowlog::Slowlog;
use crate::observe::Observe;
use crate::provision::{NodeIdentity, Provisioner};
use crate::reload::Reloader;
use crate::scripts::ScriptCache;
use crate::topology::{call_value, EjectPolicy, GroupMember, TopologyManager};
use crate::upstream::connect::connect;
use crate::upstream::{ConnectContext, HealthCheck, Identity, PoolLimits, ReplyTo, UpstreamAuth, Upstreams};
use anyhow::{Context, Result};
use resp::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

/// What `run` needs besides the configuration: where it came from (to reload it) and the logging control.
pub struct Runtime {
    pub source: ConfigSource,
    pub loaded: Loaded,
    pub log_control: LogControl,
}

/// What a worker thread needs to start serving, sent once discovery has succeeded.
enum WorkerStart {
    /// Sessions learn of shutdown from their inbox (see [`downstream::work`]).
    Standalone { shared: Arc<Shared>, incoming: mpsc::UnboundedReceiver<downstream::Accepted> },
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
pub fn run(config: Config, runtime: Runtime) -> Result<()> {
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
                            Ok(WorkerStart::Standalone { shared, incoming }) => {
                                downstream::work(w, incoming, shared).await
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
    let result = control.block_on(serve(config, runtime, handles, starts));
    // Dropping the control runtime drops its tasks (acceptors, node listeners), and with them the channels the
    // workers wait on, so the workers can finish even after a startup failure.
    drop(control);
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    result
}

async fn serve(
    config: Arc<Config>,
    runtime: Runtime,
    workers: Vec<Handle>,
    starts: Vec<oneshot::Sender<WorkerStart>>,
) -> Result<()> {
    // Handlers first: a signal that arrives during discovery is then seen afterwards instead of killing slotway.
    let mut signals = Signals::new()?;
    let metrics = Arc::new(Metrics::default());
    if config.upstream.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        tracing::warn!("upstream TLS certificate verification is OFF (--upstream-tls-insecure): development only");
    }
    let health = config
        .upstream
        .health_check_interval
        .map(|interval| HealthCheck { interval, timeout: config.upstream.health_check_timeout });
    let new_context = |auth: UpstreamAuth| {
        let mut ctx = ConnectContext::new(auth, metrics.clone(), config.resolve.clone(), health);
        // Replica connections send READONLY only to cluster nodes.
        ctx.cluster = config.backend.is_cluster();
        ctx
    };
    let mut limits = PoolLimits {
        per_node: config.upstream.connections_per_node,
        max_dedicated: config.upstream.max_dedicated_per_node,
        databases: 1,
    };
    // Identity 0 is `[upstream]`; each distinct cluster user that slotway users map to gets the next index.
    let mapped = upstream_identities(&config.users);
    let mut ctxs =
        vec![new_context(upstream_auth(&config, config.upstream.user.clone(), config.upstream.password.clone())?)];
    for c in &mapped {
        ctxs.push(new_context(upstream_auth(&config, Some(c.user.clone()), Some(c.password.clone()))?));
    }
    // Then each `provision_upstream` user's own ACL user on the nodes, with a password made now.
    let provisioned: Vec<NodeIdentity> = config
        .users
        .iter()
        .filter(|u| u.provision_upstream)
        .enumerate()
        .map(|(i, u)| NodeIdentity::generate(&u.name, Identity::new((1 + mapped.len() + i) as u16)))
        .collect();
    for p in &provisioned {
        ctxs.push(new_context(upstream_auth(&config, Some(p.acl_user.clone()), Some(p.password.clone()))?));
    }
    let identities: Vec<(UpstreamCredentials, Identity)> =
        mapped.iter().enumerate().map(|(i, c)| (c.clone(), Identity::new(i as u16 + 1))).collect();
    let topology = match &config.backend {
        Backend::Cluster => {
            let upstreams = Arc::new(Upstreams::new(ctxs, workers, limits));
            TopologyManager::discover(
                upstreams,
                config.upstream.seeds.clone(),
                config.upstream.refresh_interval,
                config.upstream.refresh_min_interval,
                replica_reads(&config),
            )
            .await?
        }
        Backend::Sharded(pool) => {
            let node_ctx = Arc::new(new_context(upstream_auth(
                &config,
                config.upstream.user.clone(),
                config.upstream.password.clone(),
            )?));
            let members = pool_members(pool, node_ctx.clone(), &metrics, &config).await?;
            let databases = match members.iter().find(|m| m.first.primary.is_some()) {
                Some(m) => databases(&m.first, &m.resolver, &node_ctx).await,
                None => 16,
            };
            if pool.redis_db >= databases {
                anyhow::bail!("sharding.redis_db is {} but the servers have {databases} databases", pool.redis_db);
            }
            limits.databases = databases;
            let upstreams = Arc::new(Upstreams::new(ctxs, workers, limits));
            let ring = Arc::new(crate::ring::Ring::new(pool.ring.clone()));
            for (i, shard) in pool.shards.iter().enumerate() {
                tracing::info!(
                    shard = %shard.name,
                    weight = pool.ring.servers[i].weight,
                    points = ring.points_of(i),
                    "pool shard"
                );
            }
            let eject = pool
                .auto_eject
                .map(|a| EjectPolicy { failure_limit: a.server_failure_limit, retry_timeout: a.server_retry_timeout });
            if eject.is_some() {
                tracing::warn!(
                    "sharding.auto_eject_hosts is on: a shard without a primary is taken out of the ring and its keys \
                     go to other shards until it is back (data moves; reads of those keys miss meanwhile)"
                );
            }
            TopologyManager::for_groups(
                upstreams,
                crate::topology::Placement::Ring(ring),
                members,
                config.upstream.refresh_min_interval,
                replica_reads(&config),
                eject,
            )
        }
        backend => {
            let node_ctx = Arc::new(new_context(upstream_auth(
                &config,
                config.upstream.user.clone(),
                config.upstream.password.clone(),
            )?));
            let (resolver, interval) = group_resolver(backend, node_ctx.clone(), &metrics, &config)?;
            let first = match resolver.resolve().await {
                Ok(view) => view,
                Err(failure) => anyhow::bail!(
                    "cannot discover the {} group '{}':\n  {}",
                    resolver.kind(),
                    resolver.name(),
                    failure.reasons.join("\n  ")
                ),
            };
            limits.databases = databases(&first, &resolver, &node_ctx).await;
            let upstreams = Arc::new(Upstreams::new(ctxs, workers, limits));
            TopologyManager::for_group(
                upstreams,
                resolver,
                first,
                interval,
                config.upstream.refresh_min_interval,
                replica_reads(&config),
            )
        }
    };
    let client_tls = match &config.listen.tls {
        Some(t) => Some(Arc::new(ClientTls::new(t.clone()).context("client TLS")?)),
        None => None,
    };
    // `draining` turns true on SIGTERM (/ready and /health say 503 at once); `stop` after the grace period (no
    // new clients; sessions finish what is in flight and close); `done` once drained (background tasks end).
    let (draining_tx, draining_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    topology.start_group_watchers(done_rx.clone());
    let table = match config.nat {
        None => Some(Arc::new(load_command_table(&topology).await)),
        Some(_) => None,
    };
    // What the sessions measure (standalone mode): histograms, counts, the slow log.
    let observe = table.as_ref().map(|table| {
        let slowlog = Slowlog::new(config.slowlog.threshold_us, config.slowlog.max_len);
        Arc::new(Observe::new(table.clone(), config.workers, config.latency_tracking, slowlog))
    });
    if let Some(observe) = &observe {
        tokio::spawn(crate::observe::sample_rates(observe.clone(), metrics.clone(), done_rx.clone()));
    }
    // Filled once the live settings exist (the endpoint starts before users are compiled and provisioned).
    let monitor_live = Arc::new(std::sync::OnceLock::new());
    if let Some(addr) = config.metrics_listen {
        let l = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?;
        tracing::info!(addr = %l.local_addr()?, "metrics endpoint listening (/metrics, /health, /live, /ready)");
        let monitor = crate::monitor::Monitor {
            metrics: metrics.clone(),
            topology: topology.clone(),
            started: Instant::now(),
            shutdown: draining_rx.clone(),
            observe: observe.clone(),
            live: monitor_live.clone(),
        };
        tokio::spawn(crate::monitor::serve(l, monitor));
    }
    let users = match &table {
        Some(table) if !config.users.is_empty() => {
            let compiled = compile_users(&config, table, &identities, &provisioned).map_err(anyhow::Error::msg)?;
            check_upstream_identities(&config, &mapped, &topology).await?;
            tracing::info!(
                users = compiled.len(),
                upstream_users = mapped.len(),
                provisioned_users = provisioned.len(),
                "clients must authenticate"
            );
            Some(Arc::new(crate::auth::Users::new(compiled, config.auth_max_failures_per_minute)))
        }
        _ => None,
    };
    let provisioner = Provisioner::new(topology.clone(), provisioned.clone());
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
    }
    // Also without provisioned users at start: ACL SETUSER may provision some (auth.provision_new_users), and
    // checking nothing costs nothing.
    tokio::spawn(provisioner.clone().run(done_rx.clone()));
    let live = Arc::new(Live::new(LiveSettings::new(config.clone(), users, runtime.loaded)));
    let _ = monitor_live.set(live.clone());
    let (reload_tx, reload_rx) = mpsc::unbounded_channel::<ReplyTo>();
    let reloader = Reloader {
        source: runtime.source,
        live: live.clone(),
        metrics: metrics.clone(),
        log: runtime.log_control,
        client_tls: client_tls.clone(),
        topology: topology.clone(),
        table: table.clone(),
        identities,
        provisioned,
        provisioner: provisioner.clone(),
    };
    tokio::spawn(topology.clone().run(done_rx));

    let stopped = if let Some(nat) = &config.nat {
        let connect = topology.upstreams().context(Identity::DEFAULT).expect("the default identity").clone();
        let shared = Arc::new(nat::session::NatShared {
            config: config.clone(),
            nat: nat.clone(),
            connect,
            topology: topology.clone(),
            map: watch::channel(Arc::new(nat::listeners::NatMap::default())).1,
            client_tls: client_tls.clone(),
            metrics: metrics.clone(),
            limits: resp::Limits::default(),
            live: live.clone(),
        });
        start_nat(shared, nat.clone(), &topology, starts, stop_rx.clone()).await?
    } else {
        let mut listeners = Vec::new();
        for (addr, tls) in [(config.listen.addr, false), (config.listen.tls_addr, true)] {
            if let Some(addr) = addr {
                let l = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
                tracing::info!(addr = %l.local_addr()?, tls, workers = config.workers, "slotway listening");
                listeners.push((l, tls));
            }
        }
        let shared = Arc::new(Shared {
            live: live.clone(),
            topology: topology.clone(),
            table: table.clone().expect("standalone mode has a command table"),
            metrics: metrics.clone(),
            client_tls: client_tls.clone(),
            reload: Some(ReloadTrigger(reload_tx)),
            started: Instant::now(),
            next_client_id: AtomicU64::new(1),
            scripts: ScriptCache::new(config.scripts),
            per_address: Default::default(),
            clients: Default::default(),
            node_version: load_node_version(&topology).await,
            acl_admin: Arc::new(crate::acl_admin::AclAdmin {
                live: live.clone(),
                table: table.clone().expect("standalone mode has a command table"),
                upstreams: topology.upstreams().clone(),
                provisioner: provisioner.clone(),
                serial: Default::default(),
            }),
            monitors: Default::default(),
            pause: Default::default(),
            scripts_running: Arc::new(crate::downstream::busy::Scripts::new(load_busy_threshold(&topology).await)),
            observe: observe.clone().expect("standalone mode observes its requests"),
        });
        let mut senders = Vec::new();
        for start in starts {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            let _ = start.send(WorkerStart::Standalone { shared: shared.clone(), incoming: rx });
        }
        let acceptors: Vec<_> = listeners
            .into_iter()
            .map(|(l, tls)| tokio::spawn(downstream::accept(l, tls, senders.clone(), stop_rx.clone())))
            .collect();
        drop(senders);
        acceptors
    };

    sd_notify("READY=1");
    control_loop(&mut signals, reloader, reload_rx).await;
    sd_notify("STOPPING=1");
    shut_down(&mut signals, &live, &metrics, draining_tx, stop_tx, stopped).await;
    if !provisioner.is_empty() {
        provisioner.retire().await;
    }
    let _ = done_tx.send(true);
    Ok(())
}

/// Every shard of a pool as a replication group with its first resolution (all at once). A shard that can't be
/// resolved now starts without a primary (its keys wait, then fail, until it has one); a resolution that can't
/// succeed by retrying (a wrong password, an unknown master name) stops slotway.
async fn pool_members(
    pool: &crate::config::ShardingConfig,
    node_ctx: Arc<ConnectContext>,
    metrics: &Arc<Metrics>,
    config: &Config,
) -> Result<Vec<GroupMember>> {
    let sentinel_ctx = match &pool.sentinel {
        Some(s) => Some(sentinel_context(s, metrics, config)?),
        None => None,
    };
    let mut resolvers = Vec::new();
    for shard in &pool.shards {
        let (resolver, interval) = match &shard.group {
            ShardGroup::Servers(addrs) => (
                GroupResolver::Static(StaticGroup::new(addrs.clone(), node_ctx.clone(), pool.servers_timeout)),
                pool.servers_poll_interval,
            ),
            ShardGroup::Sentinel(master) => {
                let s = pool.sentinel.as_ref().expect("validated: sentinel shards have [sentinel]");
                let ctx = sentinel_ctx.clone().expect("built with the sentinel settings");
                let group = SentinelGroup::new(s.addresses.clone(), master.clone(), ctx, node_ctx.clone(), s.timeout);
                (GroupResolver::Sentinel(group), s.poll_interval)
            }
        };
        resolvers.push((resolver, interval));
    }
    let firsts = futures_join_all(resolvers.iter().map(|(r, _)| r.resolve())).await;
    let mut members = Vec::new();
    for ((shard, (resolver, interval)), first) in pool.shards.iter().zip(resolvers).zip(firsts) {
        let first = match first {
            Ok(view) => view,
            Err(failure) if failure.fatal => anyhow::bail!(
                "cannot discover shard '{}' ({} group '{}'):\n  {}",
                shard.name,
                resolver.kind(),
                resolver.name(),
                failure.reasons.join("\n  ")
            ),
            Err(failure) => {
                tracing::warn!(
                    shard = %shard.name,
                    reasons = ?failure.reasons,
                    "shard unreachable at start: its keys wait for a primary"
                );
                GroupView {
                    problem: Some(format!("no server answered: {}", failure.reasons.join("; "))),
                    ..GroupView::default()
                }
            }
        };
        members.push(GroupMember { resolver, first, interval, shard: Some(shard.name.clone()) });
    }
    Ok(members)
}

/// The connections to the sentinels (their own credentials and TLS).
fn sentinel_context(
    s: &crate::config::SentinelConfig,
    metrics: &Arc<Metrics>,
    config: &Config,
) -> Result<Arc<ConnectContext>> {
    let tls = match &s.tls {
        Some(t) => {
            if t.insecure_skip_verify {
                tracing::warn!("sentinel TLS certificate verification is OFF: development only");
            }
            Some((tls::client_config(t).context("sentinel TLS")?, t.clone()))
        }
        None => None,
    };
    let auth = UpstreamAuth { tls, user: s.user.clone(), password: s.password.clone(), connect_timeout: s.timeout };
    let mut sentinel_ctx = ConnectContext::new(auth, metrics.clone(), config.resolve.clone(), None);
    sentinel_ctx.cluster = false;
    Ok(Arc::new(sentinel_ctx))
}

/// The resolver of a single-group backend and how often it runs.
fn group_resolver(
    backend: &Backend,
    node_ctx: Arc<ConnectContext>,
    metrics: &Arc<Metrics>,
    config: &Config,
) -> Result<(GroupResolver, Duration)> {
    Ok(match backend {
        Backend::Cluster => unreachable!("a cluster has no group resolver"),
        Backend::Servers(s) => {
            (GroupResolver::Static(StaticGroup::new(s.addresses.clone(), node_ctx, s.timeout)), s.poll_interval)
        }
        Backend::Sharded(_) => unreachable!("a pool has a resolver per shard"),
        Backend::Sentinel(s) => {
            let sentinel_ctx = sentinel_context(s, metrics, config)?;
            let group =
                SentinelGroup::new(s.addresses.clone(), s.master_name.clone(), sentinel_ctx, node_ctx, s.timeout);
            (GroupResolver::Sentinel(group), s.poll_interval)
        }
    })
}

/// How many databases a single group's nodes have (`CONFIG GET databases` on the primary, or on any server); 16,
/// Redis's default, when they don't say.
async fn databases(first: &GroupView, resolver: &GroupResolver, ctx: &ConnectContext) -> u16 {
    let mut asked: Vec<NodeAddr> = first.primary.iter().map(|p| p.addr.clone()).collect();
    if let GroupResolver::Static(s) = resolver {
        asked.extend(s.servers().iter().cloned());
    }
    for addr in asked {
        let Ok(replies) = probe::call(&addr, ctx, &[&[b"CONFIG", b"GET", b"databases"]], Duration::from_secs(2)).await
        else {
            continue;
        };
        let n = replies[0].as_array().and_then(|a| a.get(1)).and_then(Value::as_int);
        if let Some(n) = n.and_then(|n| u16::try_from(n).ok()).filter(|&n| n > 0) {
            return n;
        }
    }
    tracing::info!("the nodes don't say how many databases they have (CONFIG GET databases); assuming 16");
    16
}

/// The TLS settings and credentials for connections to the nodes as `user` (TLS certificates read and checked).
pub(crate) fn upstream_auth(
    config: &Config,
    user: Option<String>,
    password: Option<crate::config::Secret>,
) -> Result<UpstreamAuth> {
    let tls = match &config.upstream.tls {
        Some(t) => Some((tls::client_config(t).context("upstream TLS")?, t.clone())),
        None => None,
    };
    Ok(UpstreamAuth { tls, user, password, connect_timeout: config.upstream.connect_timeout })
}

/// Whether reads may go to replicas (and their lag bound), for the topology.
pub(crate) fn replica_reads(config: &Config) -> Option<i64> {
    (config.listen.read_from != crate::config::ReadFrom::Primary).then_some(config.listen.max_replica_lag_bytes)
}

/// slotway's users compiled against the command table, each with its upstream identity: a mapped user's cluster
/// user (from `identities`), a provisioned user's own (from `provisioned`). Warns about users that may run pub/sub
/// commands but have no channel (Redis 7's default). Run at start and by a reload, which then calls
/// [`Provisioner::reprovision`] with the result (a provisioned user added since start has no identity: it comes out
/// as a user of `[upstream]`, and `reprovision` names it).
pub(crate) fn compile_users(
    config: &Config,
    table: &CommandTable,
    identities: &[(UpstreamCredentials, Identity)],
    provisioned: &[NodeIdentity],
) -> Result<Vec<crate::auth::User>, String> {
    let mut compiled = Vec::new();
    for u in &config.users {
        let mut user =
            crate::auth::compile(&u.name, u.password_hashes.clone(), &u.rules, table, config.acl_pubsub_default)?;
        if let Some(creds) = &u.upstream {
            user.upstream = identities
                .iter()
                .find(|(c, _)| c == creds)
                .map(|(_, id)| *id)
                .ok_or_else(|| format!("user {}: no upstream identity for '{}'", u.name, creds.user))?;
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
    Ok(compiled)
}

/// Tells systemd (a `Type=notify` unit: `NOTIFY_SOCKET` is set) how far slotway is: `READY=1` once it serves,
/// `RELOADING=1` during a SIGHUP reload, `STOPPING=1` when shutdown begins. Nothing happens without systemd.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sent = (|| -> std::io::Result<()> {
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let socket = UnixDatagram::unbound()?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        let addr = match bytes.strip_prefix(b"@") {
            // An abstract socket (Linux).
            Some(name) => <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        socket.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::debug!(error = %e, state, "cannot notify systemd");
    }
}

/// The signals slotway acts on.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

enum Sig {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Stop,
            _ = self.int.recv() => Sig::Stop,
            _ = self.hup.recv() => Sig::Reload,
        }
    }
}

/// Serves reloads (SIGHUP, `SLOTWAY RELOAD`) until SIGTERM or SIGINT.
async fn control_loop(signals: &mut Signals, mut reloader: Reloader, mut requests: mpsc::UnboundedReceiver<ReplyTo>) {
    loop {
        tokio::select! {
            sig = signals.next() => match sig {
                Sig::Stop => return,
                Sig::Reload => {
                    sd_notify("RELOADING=1");
                    let _ = reloader.reload("SIGHUP").await;
                    sd_notify("READY=1");
                }
            },
            Some(reply_to) = requests.recv() => {
                let reply = match reloader.reload("SLOTWAY RELOAD").await {
                    Ok(summary) => {
                        let mut b = bytes::BytesMut::new();
                        resp::encode::simple(&mut b, &format!("OK {summary}"));
                        b.freeze()
                    }
                    Err(problems) => {
                        crate::downstream::error_reply(&format!("ERR reload failed, nothing changed: {problems}"))
                    }
                };
                reply_to.deliver(Ok(reply));
            }
        }
    }
}

/// SIGTERM (or SIGINT): not ready at once, serve on for the grace period (a second signal cuts it short), stop
/// accepting, let the sessions finish what is in flight (at most the drain timeout), then return; the workers'
/// runtimes are dropped after this, which closes whatever is left and every node connection.
async fn shut_down(
    signals: &mut Signals,
    live: &Live,
    metrics: &Metrics,
    draining: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    acceptors: Vec<tokio::task::JoinHandle<()>>,
) {
    let settings = live.load().config.shutdown;
    let _ = draining.send(true);
    tracing::info!(
        grace_ms = settings.grace.as_millis() as u64,
        "shutting down: /ready now says 503; still serving during the grace period"
    );
    if !settings.grace.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(settings.grace) => {}
            _ = async { while !matches!(signals.next().await, Sig::Stop) {} } => {
                tracing::info!("second stop signal: ending the grace period now");
            }
        }
    }
    let _ = stop.send(true);
    for a in acceptors {
        let _ = a.await;
    }
    tracing::info!(
        open = metrics.connections_current.load(Ordering::Relaxed),
        drain_timeout_ms = settings.drain_timeout.as_millis() as u64,
        "no longer accepting clients; finishing in-flight requests, closing idle clients"
    );
    drain(settings.drain_timeout, metrics).await;
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
        match connect(&addr, ctx, resp::encode::Protocol::Resp2, false, 0).await {
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

/// Waits (at most `timeout`) for the open client connections to finish.
async fn drain(timeout: Duration, metrics: &Metrics) {
    let deadline = Instant::now() + timeout;
    while metrics.connections_current.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match metrics.connections_current.load(Ordering::Relaxed) {
        0 => tracing::info!("every client connection finished; stopped"),
        open => tracing::warn!(open, "drain timeout reached; closing the remaining client connections; stopped"),
    }
}

/// Cluster NAT mode: a listener per node (following the topology), sessions on the workers. Returns the task that
/// manages the listeners; it ends (closing them) once `stop` flips.
async fn start_nat(
    mut shared: Arc<nat::session::NatShared>,
    nat: crate::config::NatConfig,
    topology: &Arc<TopologyManager>,
    starts: Vec<oneshot::Sender<WorkerStart>>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let (map_tx, map_rx) = watch::channel(Arc::new(nat::listeners::NatMap::default()));
    Arc::get_mut(&mut shared).expect("not shared yet").map = map_rx;
    let mut senders = Vec::new();
    for start in starts {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let _ = start.send(WorkerStart::Nat { shared: shared.clone(), incoming: rx, shutdown: stop.clone() });
    }
    tracing::info!(
        announce = %nat.announce_host,
        bind = %nat.bind,
        tls = shared.client_tls.is_some(),
        auth = nat.password.is_some(),
        workers = shared.config.workers,
        "slotway in cluster NAT mode"
    );
    let mut listeners = nat::listeners::Listeners::new(nat, senders, map_tx);
    let mut changes = topology.subscribe();
    if let Err(errors) = listeners.start(&mut changes).await {
        anyhow::bail!("cannot open the node listeners:\n  {}", errors.join("\n  "));
    }
    Ok(vec![tokio::spawn(listeners.run(changes, stop))])
}

/// The nodes' Redis version (`redis_version` of INFO server), which HELLO reports as the server's; "7.0.0" when
/// no node tells (the oldest version slotway's built-in command table describes).
async fn load_node_version(topology: &TopologyManager) -> String {
    let topo = topology.load();
    if let Some(pool) = topo.any_primary(0) {
        match call_value(pool, &[b"INFO", b"server"], Duration::from_secs(10)).await {
            Ok(Value::Bulk(text) | Value::Verbatim { text, .. }) => {
                let version = String::from_utf8_lossy(&text)
                    .lines()
                    .find_map(|l| l.strip_prefix("redis_version:").map(|v| v.trim().to_string()));
                if let Some(v) = version.filter(|v| !v.is_empty()) {
                    return v;
                }
            }
            Ok(other) => tracing::warn!(reply = ?other, "unexpected INFO server reply"),
            Err(e) => tracing::warn!(error = %e, "INFO server failed"),
        }
    }
    "7.0.0".to_string()
}

/// The nodes' `busy-reply-threshold` (after which a running script makes a server busy); Redis's default, 5 s,
/// when no node tells.
async fn load_busy_threshold(topology: &TopologyManager) -> Duration {
    let topo = topology.load();
    if let Some(pool) = topo.any_primary(0) {
        if let Ok(Value::Array(kv)) =
            call_value(pool, &[b"CONFIG", b"GET", b"busy-reply-threshold"], Duration::from_secs(10)).await
        {
            if let Some(ms) =
                kv.get(1).and_then(|v| v.as_bytes()).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            {
                return Duration::from_millis(ms);
            }
        }
    }
    Duration::from_secs(5)
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
