//! Commands slotway answers itself: connection-level commands whose answer is about the proxy, not the data.
use super::clients::{ClientHandle, ClientType, KillFilter, Meta};
use super::session::error_reply;
use super::Shared;
use crate::command::{Args, LocalCommand};
use crate::observe::info::{
    clients_section, commandstats_section, errorstats_section, latencystats_section, ClientCounts, InfoRequest,
    LocalInfo, ServerFacts,
};
use bytes::{Bytes, BytesMut};
use resp::encode::{self, Protocol};
use std::net::SocketAddr;

/// What slotway knows about one client connection.
#[derive(Debug)]
pub struct ClientState {
    /// Unique per process, like Redis's CLIENT ID.
    pub id: u64,
    /// CLIENT SETNAME and CLIENT SETINFO: boxed, as most clients set neither (an idle client stays small).
    names: Option<Box<Names>>,
    pub protocol: Protocol,
    /// The user this client is authenticated as (None: not authenticated; only matters when users are configured).
    pub user: Option<std::sync::Arc<crate::auth::User>>,
    /// CLIENT NO-EVICT / NO-TOUCH: accepted and shown (flags `e`, `T`); they change nothing on the nodes, whose
    /// connections slotway shares between clients.
    pub no_evict: bool,
    pub no_touch: bool,
    /// CLIENT REPLY: which replies are not written.
    pub mute: Mute,
    /// Commands received since MULTI (CLIENT LIST's `multi`).
    pub multi_count: u32,
    /// The database the client selected (`SELECT n`; only a single replication group has others than 0): its
    /// requests go on node connections that selected it.
    pub db: u16,
    /// This client in the registry CLIENT LIST and CLIENT KILL use.
    pub handle: std::sync::Arc<ClientHandle>,
}

/// What a client calls itself and its library (CLIENT SETNAME, CLIENT SETINFO LIB-NAME / LIB-VER).
#[derive(Debug, Default)]
struct Names {
    name: Option<Bytes>,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
}

/// CLIENT REPLY's state: whose replies the session drops instead of writing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mute {
    /// Every reply is written.
    #[default]
    No,
    /// CLIENT REPLY OFF: no reply is written (the OFF's own included) until CLIENT REPLY ON.
    Off,
    /// CLIENT REPLY SKIP: the replies of the next `n` requests (the SKIP and the one after it) are dropped.
    Skip(u8),
}

impl ClientState {
    pub fn new(
        id: u64,
        user: Option<std::sync::Arc<crate::auth::User>>,
        handle: std::sync::Arc<ClientHandle>,
    ) -> ClientState {
        let client = ClientState {
            id,
            names: None,
            protocol: Protocol::Resp2,
            user,
            no_evict: false,
            no_touch: false,
            mute: Mute::No,
            multi_count: 0,
            db: 0,
            handle,
        };
        client.publish();
        client
    }

    /// The name the client gave itself.
    pub fn name(&self) -> Option<&Bytes> {
        self.names.as_ref().and_then(|n| n.name.as_ref())
    }

    pub fn set_name(&mut self, name: Option<Bytes>) {
        if name.is_some() || self.names.is_some() {
            self.names_mut().name = name;
        }
    }

    fn names_mut(&mut self) -> &mut Names {
        self.names.get_or_insert_with(Default::default)
    }

    /// The client's address (kept once, in the registry entry).
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// Sets the client's user (a change of users replaced it or removed it) and shows it in CLIENT LIST.
    pub(super) fn set_user(&mut self, user: Option<std::sync::Arc<crate::auth::User>>) {
        let same = match (&self.user, &user) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        self.user = user;
        if !same {
            self.publish();
        }
    }

    /// Copies what CLIENT LIST shows of the client's settings into its registry entry.
    fn publish(&self) {
        self.handle.set_meta(Meta {
            name: self.name().cloned(),
            user: self.user.clone(),
            protocol: self.protocol,
            lib_name: self.names.as_ref().and_then(|n| n.lib_name.clone()),
            lib_ver: self.names.as_ref().and_then(|n| n.lib_ver.clone()),
            no_evict: self.no_evict,
            no_touch: self.no_touch,
        });
    }

    /// Whether the reply of the request just queued is dropped (CLIENT REPLY OFF / SKIP); counts SKIP down.
    pub fn mute_next(&mut self) -> bool {
        match self.mute {
            Mute::No => false,
            Mute::Off => true,
            Mute::Skip(n) => {
                self.mute = if n > 1 { Mute::Skip(n - 1) } else { Mute::No };
                true
            }
        }
    }
}

pub struct Outcome {
    pub reply: Bytes,
    /// Close the connection once this reply (and those before it) are written.
    pub close: bool,
}

fn reply(b: BytesMut) -> Outcome {
    Outcome { reply: b.freeze(), close: false }
}

fn ok() -> Outcome {
    let mut b = BytesMut::new();
    encode::simple(&mut b, "OK");
    reply(b)
}

fn err(msg: &str) -> Outcome {
    Outcome { reply: error_reply(msg), close: false }
}

fn arity(name: &str) -> Outcome {
    err(&format!("ERR wrong number of arguments for '{name}' command"))
}

pub fn execute(cmd: LocalCommand, args: Args<'_>, client: &mut ClientState, shared: &Shared) -> Outcome {
    let outcome = run(cmd, args, client, shared);
    if matches!(cmd, LocalCommand::Client | LocalCommand::Hello | LocalCommand::Auth | LocalCommand::Reset) {
        client.publish();
        // SLOTWAY TRACE NAME: a client that takes a traced name is traced from now on.
        if let Some(name) = client.name() {
            if shared.observe.trace.contains(name) {
                client.handle.set_trace(true);
            }
        }
    }
    outcome
}

fn run(cmd: LocalCommand, args: Args<'_>, client: &mut ClientState, shared: &Shared) -> Outcome {
    let mut b = BytesMut::new();
    match cmd {
        LocalCommand::Ping => match args.len() {
            1 => {
                encode::simple(&mut b, "PONG");
                reply(b)
            }
            2 => {
                encode::bulk(&mut b, args.get(1));
                reply(b)
            }
            _ => arity("ping"),
        },
        LocalCommand::Echo => {
            if args.len() != 2 {
                return arity("echo");
            }
            encode::bulk(&mut b, args.get(1));
            reply(b)
        }
        LocalCommand::Quit => {
            encode::simple(&mut b, "OK");
            Outcome { reply: b.freeze(), close: true }
        }
        LocalCommand::Select => {
            if args.len() != 2 {
                return arity("select");
            }
            let databases = shared.topology.upstreams().databases();
            match std::str::from_utf8(args.get(1)).ok().and_then(|s| s.parse::<i64>().ok()) {
                None => err("ERR value is not an integer or out of range"),
                // A cluster has only database 0; Redis Cluster itself answers the same.
                Some(n) if n != 0 && shared.topology.placement() == crate::topology::Placement::Slots => {
                    err("ERR SELECT is not allowed in cluster mode")
                }
                // A single group: the client's later requests go on connections that selected it.
                Some(n) => match u16::try_from(n).ok().filter(|&n| n < databases) {
                    Some(db) => {
                        client.db = db;
                        ok()
                    }
                    None => err("ERR DB index is out of range"),
                },
            }
        }
        LocalCommand::ReadOnly | LocalCommand::ReadWrite => ok(),
        LocalCommand::Reset => {
            // As in Redis, RESET also logs the client out (back to the default user, if it needs no password).
            client.user = shared.users().and_then(|u| u.initial());
            client.set_name(None);
            client.protocol = Protocol::Resp2;
            client.db = shared.live.load().config.initial_db();
            // As Redis's RESET: replies back on, NO-EVICT and NO-TOUCH off (the library name stays).
            client.mute = Mute::No;
            client.no_evict = false;
            client.no_touch = false;
            encode::simple(&mut b, "RESET");
            reply(b)
        }
        LocalCommand::Auth if shared.live.load().users.is_some() => match args.len() {
            2 => authenticate(args.get(0), None, args.get(1), client, shared).map_or_else(|e| e, |()| ok()),
            3 => {
                authenticate(args.get(0), Some(args.get(1)), args.get(2), client, shared).map_or_else(|e| e, |()| ok())
            }
            _ => err("ERR syntax error"),
        },
        LocalCommand::Auth => {
            // No users configured: behave like a Redis whose default user has no password.
            if args.len() == 2 {
                err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
            } else if args.len() == 3 {
                if args.get(1).eq_ignore_ascii_case(b"default") {
                    ok()
                } else {
                    err("WRONGPASS invalid username-password pair or user is disabled.")
                }
            } else {
                err("ERR syntax error")
            }
        }
        LocalCommand::Hello => hello(args, client, shared),
        LocalCommand::Info => info(args, shared),
        LocalCommand::Client => client_command(args, client, shared),
        LocalCommand::Slotway => slotway_command(args, shared),
        // The session starts monitoring (it owns the stream of lines); this is the reply.
        LocalCommand::Monitor => ok(),
        LocalCommand::Slowlog => {
            let args: Vec<&[u8]> = (0..args.len()).map(|i| args.get(i)).collect();
            Outcome { reply: crate::observe::slowlog::slowlog_command(&args, &shared.observe.slowlog), close: false }
        }
        LocalCommand::Latency => {
            let args: Vec<&[u8]> = (0..args.len()).map(|i| args.get(i)).collect();
            let reply = crate::observe::slowlog::latency_command(&args, &shared.observe, client.protocol);
            Outcome { reply, close: false }
        }
        LocalCommand::Acl => {
            let users = shared.users();
            let ctx = crate::auth::command::AclContext {
                table: &shared.table,
                users: users.as_deref(),
                me: client.user.as_deref(),
                protocol: client.protocol,
            };
            reply(crate::auth::command::acl(args, &ctx))
        }
        LocalCommand::Sentinel => sentinel_command(args, client, shared),
        LocalCommand::Role => {
            // slotway is where writes go, whatever is behind it: a primary with no replicas of its own.
            encode::array_header(&mut b, 3);
            encode::bulk(&mut b, b"master");
            encode::integer(&mut b, 0);
            encode::array_header(&mut b, 0);
            reply(b)
        }
    }
}

/// SENTINEL as a Sentinel client uses it, answered so that the client ends up talking through slotway: the master
/// (named `service_name`) is slotway itself, at the address the client reached it on; it has no replicas and no
/// other sentinels to tell about (reads and failover are slotway's business).
fn sentinel_command(args: Args<'_>, client: &ClientState, shared: &Shared) -> Outcome {
    if args.len() < 2 {
        return arity("sentinel");
    }
    let sub = args.get(1).to_ascii_lowercase();
    let config = shared.config();
    let name = config.service_name.as_bytes();
    let proto = client.protocol;
    let laddr = client.handle.laddr;
    let ip = laddr.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string());
    let port = laddr.map_or(0, |a| a.port());
    let mut b = BytesMut::new();
    let known = |i: usize| args.len() > i && args.get(i) == name;
    let no_such_master = || err("ERR No such master with that name");
    let want = |n: usize| args.len() == n;
    match sub.as_slice() {
        b"get-master-addr-by-name" if want(3) => {
            if known(2) {
                encode::array_header(&mut b, 2);
                encode::bulk(&mut b, ip.as_bytes());
                encode::bulk(&mut b, port.to_string().as_bytes());
            } else {
                encode::nil_array(&mut b, proto);
            }
            reply(b)
        }
        b"masters" if want(2) => {
            encode::array_header(&mut b, 1);
            master_state(&mut b, proto, &config.service_name, &ip, port);
            reply(b)
        }
        b"master" if want(3) => {
            if !known(2) {
                return no_such_master();
            }
            master_state(&mut b, proto, &config.service_name, &ip, port);
            reply(b)
        }
        b"replicas" | b"slaves" | b"sentinels" if want(3) => {
            if !known(2) {
                return no_such_master();
            }
            encode::array_header(&mut b, 0);
            reply(b)
        }
        b"ckquorum" if want(3) => {
            if !known(2) {
                return no_such_master();
            }
            encode::simple(&mut b, "OK 1 usable Sentinels. Quorum and failover authorization can be reached");
            reply(b)
        }
        b"myid" if want(2) => {
            encode::bulk(
                &mut b,
                format!("{:040x}", u128::from(port) << 64 | u128::from(std::process::id())).as_bytes(),
            );
            reply(b)
        }
        b"help" if want(2) => {
            let lines = [
                "SENTINEL <subcommand> [<arg> [value] [opt] ...]. slotway answers as a sentinel whose master is itself:",
                "GET-MASTER-ADDR-BY-NAME <name>, MASTERS, MASTER <name>, REPLICAS <name>, SLAVES <name>,",
                "SENTINELS <name>, CKQUORUM <name>, MYID, HELP",
            ];
            encode::array_header(&mut b, lines.len());
            for line in lines {
                encode::simple(&mut b, line);
            }
            reply(b)
        }
        b"get-master-addr-by-name"
        | b"masters"
        | b"master"
        | b"replicas"
        | b"slaves"
        | b"sentinels"
        | b"ckquorum"
        | b"myid"
        | b"help" => arity(&format!("sentinel|{}", String::from_utf8_lossy(&sub))),
        _ => err(&format!(
            "ERR unknown subcommand '{}'. Try SENTINEL HELP.",
            crate::dispatch::printable(args.get(1), 128)
        )),
    }
}

/// One master's state as `SENTINEL MASTER` gives it (the fields Sentinel clients read), for slotway itself.
fn master_state(b: &mut BytesMut, proto: Protocol, name: &str, ip: &str, port: u16) {
    let fields: [(&str, String); 20] = [
        ("name", name.to_string()),
        ("ip", ip.to_string()),
        ("port", port.to_string()),
        ("runid", String::new()),
        ("flags", "master".to_string()),
        ("link-pending-commands", "0".to_string()),
        ("link-refcount", "1".to_string()),
        ("last-ping-sent", "0".to_string()),
        ("last-ok-ping-reply", "0".to_string()),
        ("last-ping-reply", "0".to_string()),
        ("down-after-milliseconds", "30000".to_string()),
        ("info-refresh", "0".to_string()),
        ("role-reported", "master".to_string()),
        ("role-reported-time", "0".to_string()),
        ("config-epoch", "0".to_string()),
        ("num-slaves", "0".to_string()),
        ("num-other-sentinels", "0".to_string()),
        ("quorum", "1".to_string()),
        ("failover-timeout", "180000".to_string()),
        ("parallel-syncs", "1".to_string()),
    ];
    encode::map_header(b, fields.len(), proto);
    for (k, v) in fields {
        encode::bulk(b, k.as_bytes());
        encode::bulk(b, v.as_bytes());
    }
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: switches the client to RESP2 or RESP3 and describes the
/// server, as Redis does. RESP3 clients get RESP3 replies: slotway forwards their requests over node connections
/// that speak RESP3 too.
fn hello(args: Args<'_>, client: &mut ClientState, shared: &Shared) -> Outcome {
    let mut protocol = client.protocol;
    let mut i = 1;
    if args.len() > 1 {
        match std::str::from_utf8(args.get(1)).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(2) => protocol = Protocol::Resp2,
            Some(3) => protocol = Protocol::Resp3,
            Some(_) => return err("NOPROTO unsupported protocol version"),
            None => return err("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut name = None;
    while i < args.len() {
        let opt = args.get(i);
        if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
            if shared.live.load().users.is_some() {
                if let Err(e) = authenticate(args.get(0), Some(args.get(i + 1)), args.get(i + 2), client, shared) {
                    return e;
                }
            } else if !args.get(i + 1).eq_ignore_ascii_case(b"default") {
                // No users configured: like a Redis whose default user has no password.
                return err("WRONGPASS invalid username-password pair or user is disabled.");
            }
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
            name = Some(Bytes::copy_from_slice(args.get(i + 1)));
            i += 2;
        } else {
            return err(&format!("ERR Syntax error in HELLO option '{}'", crate::dispatch::printable(opt, 64)));
        }
    }
    if let Some(name) = name {
        if let Some(e) = invalid_name(&name) {
            return e;
        }
        client.set_name(Some(name));
    }
    client.protocol = protocol;
    let mut b = BytesMut::new();
    encode::map_header(&mut b, 7, protocol);
    for (k, v) in [("server", "redis"), ("version", shared.node_version.as_str())] {
        encode::bulk(&mut b, k.as_bytes());
        encode::bulk(&mut b, v.as_bytes());
    }
    encode::bulk(&mut b, b"proto");
    encode::integer(&mut b, if protocol == Protocol::Resp3 { 3 } else { 2 });
    encode::bulk(&mut b, b"id");
    encode::integer(&mut b, client.id as i64);
    // slotway presents the whole cluster as one standalone server.
    encode::bulk(&mut b, b"mode");
    encode::bulk(&mut b, b"standalone");
    encode::bulk(&mut b, b"role");
    encode::bulk(&mut b, b"master");
    encode::bulk(&mut b, b"modules");
    encode::array_header(&mut b, 0);
    reply(b)
}

/// AUTH against slotway's users: on success the client is that user; failures are counted, logged without the
/// password (and in ACL LOG, under `command` — AUTH or HELLO as the client wrote it), and rate-limited per source
/// address.
fn authenticate(
    command: &[u8],
    user: Option<&[u8]>,
    password: &[u8],
    client: &mut ClientState,
    shared: &Shared,
) -> Result<(), Outcome> {
    let users = shared.users().expect("only called with users configured");
    let shown = user.map(|u| crate::dispatch::printable(u, 64)).unwrap_or_else(|| "default".to_string());
    match users.authenticate(user, password, client.addr().ip()) {
        crate::auth::AuthResult::Ok(u) => {
            client.user = Some(u);
            Ok(())
        }
        crate::auth::AuthResult::Denied => {
            crate::metrics::Metrics::incr(&shared.metrics.auth_failures);
            let mut info = String::new();
            client.handle.info_line(&shared.table, &mut info);
            users.log.add(crate::auth::command::LogReason::Auth, false, command, &shown, info);
            tracing::warn!(client = %client.addr(), user = %shown, "AUTH failed");
            Err(err("WRONGPASS invalid username-password pair or user is disabled."))
        }
        crate::auth::AuthResult::RateLimited => {
            crate::metrics::Metrics::incr(&shared.metrics.auth_rate_limited);
            tracing::warn!(client = %client.addr(), user = %shown, "AUTH refused: too many failures from this address");
            Err(err("ERR too many failed authentication attempts from this address; try again later"))
        }
    }
}

/// Redis refuses client names with spaces, newlines or other special characters.
fn invalid_name(name: &[u8]) -> Option<Outcome> {
    name.iter()
        .any(|&c| c <= b' ' || c > b'~')
        .then(|| err("ERR Client names cannot contain spaces, newlines or special characters."))
}

/// INFO asking only for slotway's own sections (`clients`, `commandstats`, `errorstats`, `latencystats`, `proxy`);
/// INFO asking for node sections is a fan-out (see `dispatch::fanout` and [`crate::observe::info`]).
fn info(args: Args<'_>, shared: &Shared) -> Outcome {
    let local = info_sections(shared, &InfoRequest::parse(args));
    let text = crate::observe::info::merge(&[], &local);
    let mut b = BytesMut::new();
    encode::bulk(&mut b, text.as_bytes());
    reply(b)
}

/// slotway's own INFO sections for one request, rendered now (see [`crate::observe::info`]).
pub fn info_sections(shared: &Shared, request: &InfoRequest) -> LocalInfo {
    let observe = &shared.observe;
    let metrics = &shared.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let wants = |s: &str| request.wants(s);
    let rejected = load(&metrics.rejected_max_clients) + load(&metrics.rejected_max_per_address);
    let counters = [load(&metrics.connections_accepted), load(&metrics.commands_received), rejected];
    // Since the last CONFIG RESETSTAT, as a server's INFO counts.
    let (totals, counters) = match ["stats", "commandstats", "errorstats", "latencystats"].iter().any(|s| wants(s)) {
        true => {
            let (t, c) = observe.since_reset(counters);
            (Some(t), c)
        }
        false => (None, counters),
    };
    let name = |i: usize| observe.command_name(i).to_string();
    let mut local = LocalInfo {
        sum_keyspace: wants("keyspace"),
        sum_stats: wants("stats"),
        proxy: wants("proxy").then(|| proxy_section(shared)),
        ..LocalInfo::default()
    };
    if wants("server") {
        let config = shared.config();
        let listen = config.listen.addr.or(config.listen.tls_addr);
        local.server = Some(ServerFacts {
            process_id: std::process::id(),
            run_id: observe.run_id.clone(),
            tcp_port: listen.map_or(0, |a| a.port()),
            uptime_secs: shared.started.elapsed().as_secs(),
            executable: std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
        });
    }
    if wants("clients") {
        let (connected, blocked, pubsub) = shared.clients.counts();
        let max_clients = shared.config().listen.max_clients;
        local.clients = Some(clients_section(&ClientCounts { connected, max_clients, blocked, pubsub }));
    }
    if let Some(t) = &totals {
        if wants("stats") {
            let (ops, input, output) = observe.rates();
            let [connections, commands, rejected] = counters;
            local.stats = Some(vec![
                ("total_connections_received", connections.to_string()),
                ("total_commands_processed", commands.to_string()),
                ("instantaneous_ops_per_sec", format!("{}", ops.round() as u64)),
                ("total_net_input_bytes", t.net_input.to_string()),
                ("total_net_output_bytes", t.net_output.to_string()),
                ("instantaneous_input_kbps", format!("{:.2}", input / 1024.0)),
                ("instantaneous_output_kbps", format!("{:.2}", output / 1024.0)),
                ("rejected_connections", rejected.to_string()),
                ("total_error_replies", t.error_replies().to_string()),
                ("total_reads_processed", t.reads.to_string()),
                ("total_writes_processed", t.writes.to_string()),
            ]);
        }
        local.commandstats = wants("commandstats").then(|| commandstats_section(t, name));
        local.errorstats = wants("errorstats").then(|| errorstats_section(t));
        local.latencystats = wants("latencystats").then(|| latencystats_section(t, name));
    }
    local
}

/// `SLOTWAY REFRESH` (ask for a topology refresh now; it runs in the background, merged with any other trigger),
/// `SLOTWAY TOPOLOGY` (the slot map in use, one line per shard), `SLOTWAY TRACE` (per-request logging for chosen
/// clients) and `SLOTWAY HELP`.
fn slotway_command(args: Args<'_>, shared: &Shared) -> Outcome {
    if args.len() < 2 {
        return arity("slotway");
    }
    let mut b = BytesMut::new();
    let sub = String::from_utf8_lossy(args.get(1)).to_ascii_lowercase();
    match sub.as_str() {
        "trace" => return trace_command(args, shared),
        "refresh" if args.len() == 2 => {
            shared.topology.request_refresh(crate::topology::RefreshReason::Admin);
            return ok();
        }
        "topology" if args.len() == 2 => {
            let topology = shared.topology.load();
            let lines: Vec<String> = match (shared.topology.group_report(), topology.placement.ring()) {
                (Some(g), _) => describe_group(topology.version, &g),
                (None, Some(ring)) => describe_pool(topology.version, ring, &shared.topology.group_reports()),
                (None, None) => std::iter::once(format!("version {}", topology.version))
                    .chain(topology.map.shards.iter().map(describe_shard))
                    .collect(),
            };
            encode::array_header(&mut b, lines.len());
            for line in &lines {
                encode::bulk(&mut b, line.as_bytes());
            }
        }
        "help" if args.len() == 2 => {
            let lines = [
                "SLOTWAY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "REFRESH",
                "    Refresh the cluster topology now (in the background).",
                "TOPOLOGY",
                "    The slot map in use: one line per shard with its slots, primary and replicas; for a Sentinel or",
                "    static group, its primary, replicas, last change and where discovery asks.",
                "RELOAD",
                "    Re-read the configuration file and apply what can change live (admin users only).",
                "TRACE ID <id> (ON|OFF)",
                "    Log every request and reply of the client with this id (at INFO level, target slotway::trace).",
                "TRACE NAME <name> (ON|OFF)",
                "    The same for the clients named <name> now and later (CLIENT SETNAME / HELLO SETNAME).",
                "TRACE LIST",
                "    The clients traced now, then the names traced.",
                "HELP",
                "    Print this help.",
            ];
            encode::array_header(&mut b, lines.len());
            for line in lines {
                encode::simple(&mut b, line);
            }
        }
        "refresh" | "topology" | "help" => {
            return err(&format!("ERR wrong number of arguments for 'slotway|{sub}' command"));
        }
        _ => {
            let shown = String::from_utf8_lossy(args.get(1));
            return err(&format!("ERR unknown subcommand '{shown}'. Try SLOTWAY HELP."));
        }
    }
    reply(b)
}

/// `SLOTWAY TRACE ID id ON|OFF`, `SLOTWAY TRACE NAME name ON|OFF` (the number of connected clients switched),
/// `SLOTWAY TRACE LIST`. Tracing one client changes nothing for the others: each session looks at its own flag.
fn trace_command(args: Args<'_>, shared: &Shared) -> Outcome {
    let mut b = BytesMut::new();
    let sub = args.get(2.min(args.len() - 1)).to_ascii_lowercase();
    if args.len() == 3 && sub == b"list" {
        let traced: Vec<_> = shared.clients.list(None).into_iter().filter(|c| c.traced()).collect();
        let names = shared.observe.trace.list();
        encode::array_header(&mut b, traced.len() + names.len());
        for c in traced {
            let name = c.name().map(|n| String::from_utf8_lossy(&n).into_owned()).unwrap_or_default();
            encode::bulk(&mut b, format!("id={} addr={} name={name}", c.id, c.addr).as_bytes());
        }
        for n in names {
            encode::bulk(&mut b, format!("name={}", String::from_utf8_lossy(&n)).as_bytes());
        }
        return reply(b);
    }
    if args.len() != 5 || !(sub == b"id" || sub == b"name") {
        return err("ERR syntax error: SLOTWAY TRACE ID <id> ON|OFF, TRACE NAME <name> ON|OFF or TRACE LIST");
    }
    let on = match args.get(4).to_ascii_lowercase().as_slice() {
        b"on" => true,
        b"off" => false,
        _ => return err("ERR syntax error: the last argument is ON or OFF"),
    };
    let who = args.get(3);
    let clients: Vec<_> = if sub == b"id" {
        match parse_i64(who).and_then(|id| u64::try_from(id).ok()) {
            Some(id) => shared.clients.by_ids(&[id]),
            None => return err("ERR Invalid client ID"),
        }
    } else {
        if on {
            shared.observe.trace.add(who);
        } else {
            shared.observe.trace.remove(who);
        }
        shared.clients.list(None).into_iter().filter(|c| c.name().as_deref() == Some(who)).collect()
    };
    for c in &clients {
        c.set_trace(on);
    }
    tracing::info!(
        target: "slotway::trace",
        by = %String::from_utf8_lossy(&sub),
        who = %crate::dispatch::printable(who, 64),
        on,
        clients = clients.len(),
        "SLOTWAY TRACE"
    );
    encode::integer(&mut b, clients.len() as i64);
    reply(b)
}

/// SLOTWAY TOPOLOGY for a single group: its kind and name, primary (or why there is none), replicas, the last change
/// and who discovery asks.
fn describe_group(version: u64, g: &crate::topology::GroupReport) -> Vec<String> {
    let addrs = |v: &[crate::cluster::NodeAddr]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
        }
    };
    let mut lines = vec![format!("version {version}"), format!("group {} {}", g.kind, g.name)];
    match &g.primary {
        Some(p) => lines.push(format!("primary {p} (verified with ROLE; source: {})", g.source)),
        None => lines.push(format!("primary none: {}", g.problem.as_deref().unwrap_or("unknown"))),
    }
    lines.push(format!("replicas {}", addrs(&g.replicas)));
    if let Some((when, why)) = &g.last_change {
        let ago = when.elapsed().map_or(0, |d| d.as_secs());
        lines.push(format!("last change {ago}s ago: {why}"));
    }
    lines.extend(g.sources.iter().map(|s| format!("asks {s}")));
    lines
}

/// SLOTWAY TOPOLOGY for a pool: its placement, then each shard (ring name, weight, points, group, primary,
/// replicas), in configuration order.
fn describe_pool(version: u64, ring: &crate::ring::Ring, groups: &[crate::topology::GroupReport]) -> Vec<String> {
    let spec = ring.spec();
    let tag = spec.hash_tag.map_or_else(|| "none".to_string(), |t| String::from_utf8_lossy(&t).into_owned());
    let mut lines = vec![
        format!("version {version}"),
        format!(
            "pool {} {} hash_tag {tag} chars {} shards {}",
            spec.distribution.name(),
            spec.hash.name(),
            if spec.sign == crate::ring::CharSign::Signed { "signed" } else { "unsigned" },
            ring.len()
        ),
    ];
    for (i, g) in groups.iter().enumerate() {
        let replicas: Vec<String> = g.replicas.iter().map(|r| r.to_string()).collect();
        let primary = match &g.primary {
            Some(p) => p.to_string(),
            None => format!("none ({})", g.problem.as_deref().unwrap_or("unknown")),
        };
        lines.push(format!(
            "shard {} weight {} points {}{} group {} {} primary {primary} replicas {}",
            ring.name_of(i),
            spec.servers[i].weight,
            ring.points_of(i),
            if g.ejected { " ejected" } else { "" },
            g.kind,
            g.name,
            if replicas.is_empty() { "-".to_string() } else { replicas.join(",") }
        ));
    }
    lines
}

fn describe_shard(shard: &crate::cluster::ShardInfo) -> String {
    let slots: Vec<String> =
        shard.slots.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    let replicas: Vec<String> = shard.replicas.iter().map(|r| r.addr.to_string()).collect();
    format!(
        "slots {} primary {} replicas {}",
        if slots.is_empty() { "-".to_string() } else { slots.join(",") },
        shard.primary.addr,
        if replicas.is_empty() { "-".to_string() } else { replicas.join(",") }
    )
}

/// The `# Proxy` section of INFO: slotway's version, uptime, topology and counters.
pub fn proxy_section(shared: &Shared) -> String {
    let topo = shared.topology.load();
    let mut text = String::new();
    text.push_str("# Proxy\r\n");
    text.push_str(&format!("slotway_version:{}\r\n", env!("CARGO_PKG_VERSION")));
    text.push_str(&format!("slotway_git_sha1:{}\r\n", crate::build_info::COMMIT));
    text.push_str(&format!("slotway_build:{}\r\n", crate::build_info::PROFILE));
    text.push_str(&format!("uptime_in_seconds:{}\r\n", shared.started.elapsed().as_secs()));
    text.push_str(&format!("topology_version:{}\r\n", topo.version));
    match (shared.topology.group_report(), topo.placement.ring()) {
        (Some(g), _) => group_info(&mut text, &g),
        (None, Some(ring)) => pool_info(&mut text, ring, &shared.topology.group_reports()),
        (None, None) => {
            text.push_str(&format!("cluster_shards:{}\r\n", topo.map.shards.len()));
            text.push_str(&format!("unassigned_slots:{}\r\n", topo.map.unassigned_slots()));
        }
    }
    text.push_str(&format!("scripts_cached:{}\r\n", shared.scripts.len()));
    let live = shared.live.load();
    let loaded_at = live.loaded.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    text.push_str(&format!("config_sha256:{}\r\n", live.loaded.hash));
    text.push_str(&format!("config_loaded_at:{loaded_at}\r\n"));
    text.push_str(&format!("config_restart_needed:{}\r\n", live.restart_needed.join(",")));
    shared.metrics.render_info(&mut text);
    text
}

/// INFO proxy's lines about a single group: kind, name, primary, replicas, the last role change and why.
fn group_info(text: &mut String, g: &crate::topology::GroupReport) {
    let addr = |a: &Option<crate::cluster::NodeAddr>| a.as_ref().map_or_else(|| "none".to_string(), |a| a.to_string());
    let line = |s: &str| s.replace(['\r', '\n'], " ");
    text.push_str(&format!("group_kind:{}\r\n", g.kind));
    text.push_str(&format!("group_name:{}\r\n", line(&g.name)));
    text.push_str(&format!("group_primary:{}\r\n", addr(&g.primary)));
    let replicas: Vec<String> = g.replicas.iter().map(|r| r.to_string()).collect();
    text.push_str(&format!("group_replicas:{}\r\n", replicas.join(",")));
    if let Some(problem) = &g.problem {
        text.push_str(&format!("group_problem:{}\r\n", line(problem)));
    }
    if let Some((when, why)) = &g.last_change {
        let unix = when.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        text.push_str(&format!("group_last_change_time:{unix}\r\n"));
        text.push_str(&format!("group_last_change:{}\r\n", line(why)));
    }
}

/// INFO proxy's lines about a pool: its placement, then one line per shard (`shard0:name=...,primary=...`).
fn pool_info(text: &mut String, ring: &crate::ring::Ring, groups: &[crate::topology::GroupReport]) {
    let spec = ring.spec();
    let field = |s: &str| s.replace(['\r', '\n', ','], " ");
    text.push_str(&format!("pool_distribution:{}\r\n", spec.distribution.name()));
    text.push_str(&format!("pool_hash:{}\r\n", spec.hash.name()));
    text.push_str(&format!("pool_shards:{}\r\n", ring.len()));
    for (i, g) in groups.iter().enumerate() {
        let primary = g.primary.as_ref().map_or_else(|| "none".to_string(), |a| a.to_string());
        let replicas: Vec<String> = g.replicas.iter().map(|r| r.to_string()).collect();
        text.push_str(&format!(
            "shard{i}:name={},kind={},group={},weight={},points={},ejected={},primary={primary},replicas={}",
            field(&ring.name_of(i)),
            g.kind,
            field(&g.name),
            spec.servers[i].weight,
            ring.points_of(i),
            u8::from(g.ejected),
            replicas.join("|"),
        ));
        if let Some(problem) = &g.problem {
            text.push_str(&format!(",problem={}", field(problem)));
        }
        text.push_str("\r\n");
    }
}

/// CLIENT's subcommands, about slotway's own clients. Arity and error texts are Redis 7.2's.
fn client_command(args: Args<'_>, client: &mut ClientState, shared: &Shared) -> Outcome {
    if args.len() < 2 {
        return arity("client");
    }
    let sub = args.get(1).to_ascii_lowercase();
    // Redis's arity: positive = exactly, negative = at least (the command and subcommand included).
    let expected: i32 = match sub.as_slice() {
        b"id" | b"getname" | b"info" | b"trackinginfo" | b"getredir" | b"help" | b"unpause" => 2,
        b"setname" | b"no-evict" | b"no-touch" | b"caching" | b"reply" => 3,
        b"setinfo" => 4,
        b"list" => -2,
        b"kill" | b"tracking" | b"unblock" | b"pause" => -3,
        _ => {
            return err(&format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                crate::dispatch::printable(args.get(1), 128)
            ))
        }
    };
    let n = args.len() as i32;
    if (expected > 0 && n != expected) || n < -expected {
        return arity(&format!("client|{}", String::from_utf8_lossy(&sub)));
    }
    let mut b = BytesMut::new();
    let on_off = |i: usize| match args.get(i).to_ascii_lowercase().as_slice() {
        b"on" => Some(true),
        b"off" => Some(false),
        _ => None,
    };
    match sub.as_slice() {
        b"id" => {
            encode::integer(&mut b, client.id as i64);
            reply(b)
        }
        b"getname" => {
            match client.name() {
                Some(n) => encode::bulk(&mut b, n),
                None => encode::nil(&mut b, client.protocol),
            }
            reply(b)
        }
        b"setname" => {
            let name = args.get(2);
            if let Some(e) = invalid_name(name) {
                return e;
            }
            client.set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
            ok()
        }
        b"setinfo" => {
            let (attr, value) = (args.get(2), args.get(3));
            let shown = crate::dispatch::printable(attr, 128);
            let field = if attr.eq_ignore_ascii_case(b"lib-name") {
                &mut client.names_mut().lib_name
            } else if attr.eq_ignore_ascii_case(b"lib-ver") {
                &mut client.names_mut().lib_ver
            } else {
                return err(&format!("ERR Unrecognized option '{shown}'"));
            };
            if value.iter().any(|&c| c <= b' ' || c > b'~') {
                return err(&format!("ERR {shown} cannot contain spaces, newlines or special characters."));
            }
            *field = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
            ok()
        }
        b"info" => {
            let mut text = String::new();
            client.handle.info_line(&shared.table, &mut text);
            text.push('\n');
            encode::verbatim(&mut b, *b"txt", text.as_bytes(), client.protocol);
            reply(b)
        }
        b"list" => client_list(args, client, shared),
        b"kill" => client_kill(args, client, shared),
        b"no-evict" | b"no-touch" => match on_off(2) {
            Some(on) => {
                if sub == b"no-evict" {
                    client.no_evict = on;
                } else {
                    client.no_touch = on;
                }
                ok()
            }
            None => err("ERR syntax error"),
        },
        b"reply" => match args.get(2).to_ascii_lowercase().as_slice() {
            b"on" => {
                client.mute = Mute::No;
                ok()
            }
            // No reply to these: the session drops it (see `ClientState::mute_next`).
            b"off" => {
                client.mute = Mute::Off;
                ok()
            }
            b"skip" => {
                if client.mute != Mute::Off {
                    client.mute = Mute::Skip(2);
                }
                ok()
            }
            _ => err("ERR syntax error"),
        },
        b"tracking" => match on_off(2) {
            Some(false) => ok(),
            Some(true) => err(
                "ERR unsupported command 'client|tracking': client-side caching is not supported through slotway \
                 (invalidations would have to come from every node)",
            ),
            None => err("ERR syntax error"),
        },
        b"trackinginfo" => {
            // Tracking is never on through slotway.
            encode::map_header(&mut b, 3, client.protocol);
            encode::bulk(&mut b, b"flags");
            encode::set_header(&mut b, 1, client.protocol);
            encode::bulk(&mut b, b"off");
            encode::bulk(&mut b, b"redirect");
            encode::integer(&mut b, -1);
            encode::bulk(&mut b, b"prefixes");
            encode::array_header(&mut b, 0);
            reply(b)
        }
        b"getredir" => {
            encode::integer(&mut b, -1);
            reply(b)
        }
        b"caching" => err(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        ),
        // slotway's own clients are paused (see `pause`): forwarding PAUSE to the nodes would stall the node
        // connections every client shares.
        b"pause" => {
            let timeout = match std::str::from_utf8(args.get(2)).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(t) if t < 0 => return err("ERR timeout is negative"),
                Some(t) => std::time::Duration::from_millis(t as u64),
                None => return err("ERR timeout is not an integer or out of range"),
            };
            let mode = match args.len() {
                3 => super::pause::PauseMode::All,
                4 if args.get(3).eq_ignore_ascii_case(b"all") => super::pause::PauseMode::All,
                4 if args.get(3).eq_ignore_ascii_case(b"write") => super::pause::PauseMode::Write,
                _ => return err("ERR syntax error"),
            };
            shared.pause.pause(timeout, mode);
            ok()
        }
        b"unpause" => {
            shared.pause.unpause();
            ok()
        }
        // Answered by the session (it asks the node the blocked client waits on).
        b"unblock" => err("ERR syntax error"),
        _ => {
            // HELP: what slotway answers.
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ID, GETNAME, SETNAME <name>, SETINFO <LIB-NAME|LIB-VER> <value>, INFO",
                "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
                "    slotway's own clients (not the nodes').",
                "KILL <ip:port> | KILL <option> <value> [<option> <value> ...]",
                "    Options: ID <id>, ADDR <ip:port>, LADDR <ip:port>, TYPE <type>, USER <name>, SKIPME (YES|NO).",
                "REPLY (ON|OFF|SKIP), NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF)",
                "PAUSE <timeout> [WRITE|ALL], UNPAUSE: pause slotway's own clients (not the nodes').",
                "UNBLOCK <id> [TIMEOUT|ERROR]: unblock a client's blocking command on its node.",
                "TRACKING OFF, TRACKINGINFO, GETREDIR (client-side caching is not supported).",
                "HELP",
            ];
            encode::array_header(&mut b, lines.len());
            for line in lines {
                encode::simple(&mut b, line);
            }
            reply(b)
        }
    }
}

/// CLIENT LIST [TYPE type | ID id ...]: a line per client of slotway, as CLIENT INFO shows it.
fn client_list(args: Args<'_>, client: &ClientState, shared: &Shared) -> Outcome {
    let clients = if args.len() == 2 {
        shared.clients.list(None)
    } else if args.len() == 4 && args.get(2).eq_ignore_ascii_case(b"type") {
        match ClientType::parse(args.get(3)) {
            Some(kind) => shared.clients.list(Some(kind)),
            None => return err(&format!("ERR Unknown client type '{}'", crate::dispatch::printable(args.get(3), 128))),
        }
    } else if args.len() > 3 && args.get(2).eq_ignore_ascii_case(b"id") {
        let mut ids = Vec::with_capacity(args.len() - 3);
        for i in 3..args.len() {
            match parse_i64(args.get(i)) {
                // A negative id names no client.
                Some(id) => ids.push(u64::try_from(id).unwrap_or(0)),
                None => return err("ERR Invalid client ID"),
            }
        }
        shared.clients.by_ids(&ids)
    } else {
        return err("ERR syntax error");
    };
    let mut text = String::with_capacity(clients.len() * 300);
    for c in clients {
        c.info_line(&shared.table, &mut text);
        text.push('\n');
    }
    let mut b = BytesMut::with_capacity(text.len() + 16);
    encode::verbatim(&mut b, *b"txt", text.as_bytes(), client.protocol);
    reply(b)
}

/// CLIENT KILL addr (old form: `+OK` or `No such client`; may kill the asking client) or CLIENT KILL with filters
/// (new form: the number killed; SKIPME yes by default). The asking client, when killed, gets its reply first.
fn client_kill(args: Args<'_>, client: &ClientState, shared: &Shared) -> Outcome {
    let old_form = args.len() == 3;
    let mut filter = KillFilter::default();
    if old_form {
        filter.addr = Some(args.get(2).to_vec());
    } else {
        filter.skip_me = true;
        let mut i = 2;
        while i < args.len() {
            if i + 1 >= args.len() {
                return err("ERR syntax error");
            }
            let (opt, value) = (args.get(i).to_ascii_lowercase(), args.get(i + 1));
            match opt.as_slice() {
                b"id" => match parse_i64(value).filter(|&id| id > 0) {
                    Some(id) => filter.id = Some(id as u64),
                    None => return err("ERR client-id should be greater than 0"),
                },
                b"type" => match ClientType::parse(value) {
                    Some(kind) => filter.kind = Some(kind),
                    None => {
                        return err(&format!("ERR Unknown client type '{}'", crate::dispatch::printable(value, 128)))
                    }
                },
                b"addr" => filter.addr = Some(value.to_vec()),
                b"laddr" => filter.laddr = Some(value.to_vec()),
                b"user" => {
                    let name = String::from_utf8_lossy(value).into_owned();
                    let known = match &shared.users() {
                        Some(users) => users.exists(&name),
                        // Without users of its own, slotway is a server with only the default user.
                        None => name == "default",
                    };
                    if !known {
                        return err(&format!("ERR No such user '{}'", crate::dispatch::printable(value, 128)));
                    }
                    filter.user = Some(name);
                }
                b"skipme" => match value.to_ascii_lowercase().as_slice() {
                    b"yes" => filter.skip_me = true,
                    b"no" => filter.skip_me = false,
                    _ => return err("ERR syntax error"),
                },
                _ => return err("ERR syntax error"),
            }
            i += 2;
        }
    }
    let (killed, me) = shared.clients.kill(&filter, client.id);
    shared.metrics.clients_killed.fetch_add(killed as u64, std::sync::atomic::Ordering::Relaxed);
    if killed > 0 {
        tracing::debug!(client = %client.addr(), killed, "CLIENT KILL");
    }
    let mut b = BytesMut::new();
    let mut outcome = if !old_form {
        encode::integer(&mut b, killed as i64);
        reply(b)
    } else if killed == 0 {
        err("ERR No such client")
    } else {
        ok()
    };
    outcome.close = me;
    outcome
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}
