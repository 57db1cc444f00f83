//! `slotway --from-twemproxy FILE [--pool NAME]`: a twemproxy (nutcracker) YAML pool as slotway's TOML, with
//! every setting that could not be carried over named and explained. Names that would change where keys go (an
//! unknown hash or distribution, `random`, a memcached pool, unix-socket servers) are errors, never guesses.
//!
//! The servers keep their ring names (each `[[shards]]` gets an explicit `name`: twemproxy's name column, or the
//! address as written, without the port when it is 11211), weights, hash, distribution and hash tag, so slotway
//! places every key where twemproxy did.
use crate::ring::{Distribution, KeyHash};
use serde_yaml_ng::{Mapping, Value};

/// The converted pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The TOML file, with the notes at its top as comments.
    pub toml: String,
    /// What was not carried over, and why (one line each).
    pub notes: Vec<String>,
    /// The pool converted.
    pub pool: String,
}

/// Converts pool `pool` (or the file's only pool) of the nutcracker YAML `text`. `source` names the file in the
/// generated comment.
pub fn convert(text: &str, pool: Option<&str>, source: &str) -> Result<Import, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("{source}: not YAML: {e}"))?;
    let Value::Mapping(pools) = doc else {
        return Err(format!("{source}: expected pools (a mapping of pool names to their settings)"));
    };
    let names: Vec<String> = pools.keys().map(scalar).collect();
    let (name, settings) = match pool {
        Some(wanted) => pools
            .iter()
            .find(|(k, _)| scalar(k) == wanted)
            .map(|(k, v)| (scalar(k), v))
            .ok_or_else(|| format!("{source}: no pool '{wanted}' (pools: {})", names.join(", ")))?,
        None if pools.len() == 1 => pools.iter().next().map(|(k, v)| (scalar(k), v)).expect("one pool"),
        None if pools.is_empty() => return Err(format!("{source}: no pool in the file")),
        None => {
            return Err(format!(
                "{source} has {} pools ({}): choose one with --pool NAME (slotway serves one pool per process)",
                pools.len(),
                names.join(", ")
            ))
        }
    };
    let Value::Mapping(settings) = settings else {
        return Err(format!("pool '{name}': expected its settings (a mapping)"));
    };
    let mut c = Converter { settings, notes: Vec::new(), errors: Vec::new(), name: name.clone() };
    let toml = c.run(source);
    if !c.errors.is_empty() {
        return Err(format!("pool '{name}' can't be carried over:\n  {}", c.errors.join("\n  ")));
    }
    Ok(Import { toml, notes: c.notes, pool: name })
}

/// A YAML scalar as nutcracker reads it (text).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

struct Converter<'a> {
    settings: &'a Mapping,
    notes: Vec<String>,
    errors: Vec<String>,
    name: String,
}

/// One server line, `host:port:weight [name]`, as twemproxy's `conf_add_server` reads it (from the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLine {
    /// `host:port` as written.
    pub addr: String,
    pub weight: u32,
    /// The ring name: the name column, else `host:port` as written (`host` when the port is 11211).
    pub name: String,
}

/// Parses a server line; errors say why, as nutcracker would refuse it.
pub fn parse_server(line: &str) -> Result<ServerLine, String> {
    let line = line.trim();
    if line.starts_with('/') {
        return Err(format!("server '{line}': a unix socket; slotway reaches servers over TCP only"));
    }
    let (spec, name) = match line.rsplit_once(' ') {
        Some((spec, name)) => (spec.trim_end(), Some(name.to_string())),
        None => (line, None),
    };
    let bad = || format!("server '{line}': expected host:port:weight [name]");
    let (addr, weight) = spec.rsplit_once(':').ok_or_else(bad)?;
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let weight: u32 = weight.parse().map_err(|_| format!("server '{line}': weight '{weight}' is not a number"))?;
    if weight == 0 {
        return Err(format!("server '{line}': a zero weight (twemproxy refuses it too)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("server '{line}': '{port}' is not a port")),
    }
    if host.is_empty() {
        return Err(bad());
    }
    let name = match name {
        Some(n) => n,
        None if port == "11211" => host.to_string(),
        None => addr.to_string(),
    };
    Ok(ServerLine { addr: addr.to_string(), weight, name })
}

impl Converter<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.settings.get(key)
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(scalar)
    }

    /// A boolean as nutcracker takes it (`true` / `false` only).
    fn flag(&mut self, key: &str) -> Option<bool> {
        match self.text(key)?.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                self.errors.push(format!("{key}: '{other}' is not true or false"));
                None
            }
        }
    }

    fn number(&mut self, key: &str) -> Option<i64> {
        let t = self.text(key)?;
        match t.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.errors.push(format!("{key}: '{t}' is not a number"));
                None
            }
        }
    }

    fn note(&mut self, key: &str, why: &str) {
        self.notes.push(format!("{key}: {why}"));
    }

    fn run(&mut self, source: &str) -> String {
        const KNOWN: &[&str] = &[
            "listen",
            "hash",
            "hash_tag",
            "distribution",
            "timeout",
            "backlog",
            "client_connections",
            "redis",
            "tcpkeepalive",
            "reuseport",
            "redis_auth",
            "redis_db",
            "preconnect",
            "auto_eject_hosts",
            "server_connections",
            "server_retry_timeout",
            "server_failure_limit",
            "servers",
        ];
        let mut top = Vec::new(); // top-level keys
        let mut sharding = Vec::new();
        let mut upstream = Vec::new();
        let mut client = Vec::new();

        for key in self.settings.keys().map(scalar) {
            if !KNOWN.contains(&key.as_str()) {
                self.note(&key, "not a twemproxy setting (nutcracker itself would refuse the file); ignored");
            }
        }
        if self.flag("redis") != Some(true) {
            self.errors
                .push("redis: the pool is a memcached pool (redis is not true); slotway serves Redis only".to_string());
        }
        match self.text("listen") {
            None => self.errors.push("listen: missing (nutcracker needs it too)".to_string()),
            Some(l) if l.starts_with('/') => self.note(
                "listen",
                &format!("'{l}' is a unix socket; slotway listens on TCP: set listen = \"IP:PORT\" yourself"),
            ),
            Some(l) => match l.parse::<std::net::SocketAddr>() {
                Ok(_) => top.push(format!("listen = {}", quoted(&l))),
                Err(_) => {
                    let fixed = l.strip_prefix("localhost:").map(|port| format!("127.0.0.1:{port}"));
                    match fixed {
                        Some(f) => {
                            top.push(format!("listen = {}", quoted(&f)));
                            self.note("listen", &format!("'{l}' written as {f} (slotway listens on an IP)"));
                        }
                        None => self.note(
                            "listen",
                            &format!("'{l}' is not IP:PORT; slotway listens on an IP: set listen yourself"),
                        ),
                    }
                }
            },
        }

        // Placement: anything unknown is an error (a guess would move keys).
        let distribution = self.text("distribution").unwrap_or_else(|| "ketama".to_string());
        match distribution.as_str() {
            "random" => self.errors.push(
                "distribution: random sends each request to a random server, so keys have no place; slotway can't \
                 take such a pool over (it only makes sense as a cache that tolerates misses)"
                    .to_string(),
            ),
            d if Distribution::parse(d).is_some() => sharding.push(format!("distribution = {}", quoted(d))),
            d => self.errors.push(format!("distribution: '{d}' is not one of twemproxy's (ketama, modula, random)")),
        }
        let hash = self.text("hash").unwrap_or_else(|| "fnv1a_64".to_string());
        match KeyHash::parse(&hash) {
            Some(_) => sharding.push(format!("hash = {}", quoted(&hash))),
            None => self.errors.push(format!("hash: '{hash}' is not one of twemproxy's hashes")),
        }
        if let Some(tag) = self.text("hash_tag") {
            if tag.len() == 2 {
                sharding.push(format!("hash_tag = {}", quoted(&tag)));
            } else {
                self.errors.push(format!("hash_tag: '{tag}' is not two characters"));
            }
        }
        if let Some(db) = self.number("redis_db") {
            match u16::try_from(db) {
                Ok(0) => {}
                Ok(db) => sharding.push(format!("redis_db = {db}")),
                Err(_) => self.errors.push(format!("redis_db: {db} is not a database number")),
            }
        }
        let eject = self.flag("auto_eject_hosts").unwrap_or(false);
        let retry = self.number("server_retry_timeout");
        let limit = self.number("server_failure_limit");
        if eject {
            sharding
                .push("# Moves a dead shard's keys to the other shards until it is back (see docs/CONFIG.md)".into());
            sharding.push("auto_eject_hosts = true".to_string());
            if let Some(l) = limit {
                sharding.push(format!("server_failure_limit = {}", l.max(1)));
            }
            if let Some(r) = retry {
                sharding.push(format!("server_retry_timeout_ms = {}", r.max(0)));
            }
        } else {
            for (key, v) in [("server_retry_timeout", retry), ("server_failure_limit", limit)] {
                if v.is_some() {
                    self.note(
                        key,
                        "only matters with auto_eject_hosts, which is off; slotway retries a shard's requests within \
                         cluster.retry_deadline_ms and follows its failovers instead",
                    );
                }
            }
        }

        if let Some(t) = self.number("timeout") {
            if t > 0 {
                upstream.push(format!("connect_timeout_ms = {t}"));
                upstream.push(format!("health_check_timeout_ms = {}", t.max(10)));
                self.note(
                    "timeout",
                    "carried over as upstream.connect_timeout_ms and health_check_timeout_ms: a server that doesn't \
                     answer in time has its connection closed; reads are retried (within cluster.retry_deadline_ms), \
                     writes in flight get an error saying they may have run (twemproxy answered an error at once)",
                );
            }
        }
        if let Some(n) = self.number("server_connections") {
            if n >= 1 {
                upstream.push(format!("connections_per_node = {}", n.min(64)));
                self.note("server_connections", "carried over as upstream.connections_per_node (per worker thread)");
            }
        }
        if let Some(pw) = self.text("redis_auth") {
            if !pw.is_empty() {
                upstream.push(format!("password = {}", quoted(&pw)));
                self.note(
                    "redis_auth",
                    "carried over as upstream.password: keep this file private, or remove it and set \
                     SLOTWAY_UPSTREAM_PASSWORD. Clients no longer send AUTH to the proxy (configure [[users]] for \
                     that)",
                );
            }
        }
        if let Some(n) = self.number("client_connections") {
            if n > 0 {
                client.push(format!("max_clients = {n}"));
            }
        }
        if self.get("backlog").is_some() {
            self.note("backlog", "slotway listens with the system's default backlog (net.core.somaxconn)");
        }
        if self.get("tcpkeepalive").is_some() {
            self.note("tcpkeepalive", "not configurable in slotway; idle clients: client.idle_timeout_ms");
        }
        if self.get("reuseport").is_some() {
            self.note("reuseport", "slotway runs one process with worker threads (workers) instead");
        }
        if self.get("preconnect").is_some() {
            self.note("preconnect", "always on in slotway: it asks every server its ROLE at start");
        }

        let mut shards = Vec::new();
        match self.get("servers") {
            Some(Value::Sequence(list)) if !list.is_empty() => {
                let mut seen: Vec<String> = Vec::new();
                for item in list.clone() {
                    match parse_server(&scalar(&item)) {
                        Ok(s) => {
                            if seen.contains(&s.name) {
                                self.errors.push(format!("servers: two servers named '{}'", s.name));
                            }
                            seen.push(s.name.clone());
                            shards.push(s);
                        }
                        Err(e) => self.errors.push(format!("servers: {e}")),
                    }
                }
            }
            _ => self.errors.push("servers: missing or empty".to_string()),
        }

        let mut out = String::new();
        out.push_str(&format!("# slotway configuration for twemproxy pool '{}' of {source}\n", self.name));
        out.push_str("# (generated by slotway --from-twemproxy; keys stay where twemproxy put them)\n");
        if self.notes.is_empty() {
            out.push_str("# Every setting was carried over.\n");
        } else {
            out.push_str("# Not carried over, or carried over differently:\n");
            for n in &self.notes {
                out.push_str(&format!("#   {}\n", n.replace('\n', " ")));
            }
        }
        out.push('\n');
        for line in &top {
            out.push_str(line);
            out.push('\n');
        }
        for (section, lines) in [("sharding", &sharding), ("upstream", &upstream), ("client", &client)] {
            if !lines.is_empty() {
                out.push_str(&format!("\n[{section}]\n"));
                for line in lines {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        for s in &shards {
            out.push_str("\n[[shards]]\n");
            out.push_str(&format!("name = {}\n", quoted(&s.name)));
            out.push_str(&format!("servers = [{}]\n", quoted(&s.addr)));
            if s.weight != 1 {
                out.push_str(&format!("weight = {}\n", s.weight));
            }
        }
        out.push_str(
            "\n# Each shard is a replication group: add its replicas to `servers` (slotway finds the primary with ROLE),\n\
             # or replace `servers` by `sentinel_master = \"NAME\"` with the sentinels in [sentinel] addresses.\n",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "sigma:
  listen: 127.0.0.1:22125
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  redis: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
    - 127.0.0.1:6379:1 redis-server-cluster1
    - 127.0.0.1:6380:1 redis-server-cluster2
";

    #[test]
    fn the_seed_configuration_converts_and_loads() {
        let import = convert(SEED, None, "nutcracker.yml").unwrap();
        assert_eq!(import.pool, "sigma");
        let t = &import.toml;
        assert!(t.contains("listen = \"127.0.0.1:22125\""), "{t}");
        assert!(t.contains("[sharding]\ndistribution = \"ketama\"\nhash = \"fnv1a_64\"\n"), "{t}");
        assert!(t.contains("name = \"redis-server-cluster1\"\nservers = [\"127.0.0.1:6379\"]\n"), "{t}");
        assert!(t.contains("name = \"redis-server-cluster2\"\nservers = [\"127.0.0.1:6380\"]\n"), "{t}");
        assert!(!t.contains("auto_eject_hosts = true"));
        // The retry settings only matter with auto_eject_hosts: reported, not silently dropped.
        assert_eq!(import.notes.len(), 2, "{:?}", import.notes);
        assert!(import.notes.iter().any(|n| n.starts_with("server_retry_timeout:")));
        assert!(import.notes.iter().any(|n| n.starts_with("server_failure_limit:")));
        assert!(t.contains("#   server_retry_timeout: only matters with auto_eject_hosts"), "{t}");
        // The result is a valid slotway configuration with the same pool.
        let config =
            crate::config::Config::from_text(std::path::Path::new("x.toml"), t, &Default::default(), &|_| None)
                .unwrap_or_else(|e| panic!("{e}\n{t}"));
        let crate::config::Backend::Sharded(pool) = config.backend else { panic!("a pool") };
        assert_eq!(pool.shards.len(), 2);
        assert_eq!(pool.ring.servers[0].name, b"redis-server-cluster1");
        assert_eq!(pool.ring.hash, KeyHash::Fnv1a_64);
        assert_eq!(config.listen.addr, Some("127.0.0.1:22125".parse().unwrap()));
    }

    #[test]
    fn every_setting_is_carried_over_or_reported() {
        let yml = "alpha:
  listen: 0.0.0.0:22121
  hash: murmur
  hash_tag: \"{}\"
  distribution: modula
  timeout: 400
  backlog: 1024
  preconnect: true
  redis: true
  redis_auth: s3cret
  redis_db: 3
  server_connections: 2
  auto_eject_hosts: true
  server_retry_timeout: 30000
  server_failure_limit: 3
  tcpkeepalive: true
  client_connections: 500
  mystery: 1
  servers:
    - 10.0.0.1:6379:2
    - 10.0.0.2:11211:1
    - cache.example:6380:5 named
beta:
  listen: 127.0.0.1:22122
  redis: true
  servers:
    - 10.0.0.9:6379:1
";
        assert!(convert(yml, None, "f").unwrap_err().contains("choose one with --pool NAME"));
        let import = convert(yml, Some("alpha"), "f").unwrap();
        let t = &import.toml;
        for line in [
            "listen = \"0.0.0.0:22121\"",
            "distribution = \"modula\"",
            "hash = \"murmur\"",
            "hash_tag = \"{}\"",
            "redis_db = 3",
            "auto_eject_hosts = true",
            "server_failure_limit = 3",
            "server_retry_timeout_ms = 30000",
            "connect_timeout_ms = 400",
            "health_check_timeout_ms = 400",
            "connections_per_node = 2",
            "password = \"s3cret\"",
            "max_clients = 500",
            "name = \"10.0.0.1:6379\"\nservers = [\"10.0.0.1:6379\"]\nweight = 2",
            // Port 11211: twemproxy leaves the port out of the ring name.
            "name = \"10.0.0.2\"\nservers = [\"10.0.0.2:11211\"]\n",
            "name = \"named\"\nservers = [\"cache.example:6380\"]\nweight = 5",
        ] {
            assert!(t.contains(line), "missing {line:?} in\n{t}");
        }
        let noted: Vec<&str> = import.notes.iter().map(|n| n.split(':').next().unwrap()).collect();
        for key in ["mystery", "timeout", "server_connections", "redis_auth", "backlog", "tcpkeepalive", "preconnect"] {
            assert!(noted.contains(&key), "{key} not reported: {:?}", import.notes);
        }
        crate::config::Config::from_text(std::path::Path::new("x.toml"), t, &Default::default(), &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{t}"));
    }

    #[test]
    fn names_that_would_move_keys_are_errors_not_guesses() {
        let pool = |extra: &str| {
            format!("p:\n  listen: 127.0.0.1:1\n  redis: true\n{extra}  servers:\n    - 127.0.0.1:6379:1\n")
        };
        let e = convert(&pool("  hash: xxhash\n"), None, "f").unwrap_err();
        assert!(e.contains("hash: 'xxhash' is not one of twemproxy's hashes"), "{e}");
        let e = convert(&pool("  distribution: jump\n"), None, "f").unwrap_err();
        assert!(e.contains("distribution: 'jump'"), "{e}");
        let e = convert(&pool("  distribution: random\n"), None, "f").unwrap_err();
        assert!(e.contains("random sends each request to a random server"), "{e}");
        let e = convert(&pool("  hash_tag: \"{\"\n"), None, "f").unwrap_err();
        assert!(e.contains("hash_tag"), "{e}");
        let e = convert("p:\n  listen: 127.0.0.1:1\n  servers:\n    - 127.0.0.1:11211:1\n", None, "f").unwrap_err();
        assert!(e.contains("memcached pool"), "{e}");
        let e = convert(&pool("").replace("127.0.0.1:6379:1", "/tmp/redis.sock:1"), None, "f").unwrap_err();
        assert!(e.contains("unix socket"), "{e}");
        let e = convert(&pool("").replace("127.0.0.1:6379:1", "127.0.0.1:6379:0"), None, "f").unwrap_err();
        assert!(e.contains("zero weight"), "{e}");
        assert!(convert(&pool(""), Some("q"), "f").unwrap_err().contains("no pool 'q'"));
    }

    #[test]
    fn server_lines_parse_from_the_end_like_twemproxy() {
        let s = parse_server("127.0.0.1:6379:1 redis-server-cluster1").unwrap();
        assert_eq!(s, ServerLine { addr: "127.0.0.1:6379".into(), weight: 1, name: "redis-server-cluster1".into() });
        let s = parse_server("10.0.0.1:6380:3").unwrap();
        assert_eq!((s.name.as_str(), s.weight), ("10.0.0.1:6380", 3));
        assert_eq!(parse_server("memc:11211:1").unwrap().name, "memc");
        assert!(parse_server("10.0.0.1:6380").is_err());
        assert!(parse_server("10.0.0.1:x:1").is_err());
    }
}
