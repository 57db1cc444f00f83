//! What may change while slotway runs, and the one place it changes.
//!
//! [`Live`] holds the current [`LiveSettings`] behind an `ArcSwap`: the running configuration, slotway's own users
//! and the request limits derived from them. Readers never lock. A session keeps an `Arc` of the settings it
//! uses and compares [`Live::generation`] (one relaxed atomic load) before each command; only when it moved does
//! it take the new settings. Writers are serialized by a mutex and build a whole new value, so a config reload
//! and a change of users made at the same time (ACL SETUSER, provisioning) can't lose either change.
//!
//! [`ConfigSource`] remembers where the configuration came from (the file, the flags), so a reload reads it the
//! same way, and [`restart_needed`] says which differences can't be applied to a running process.
use crate::auth::Users;
use crate::config::{Config, ConfigError, Overrides};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where the configuration comes from: a file (optional) and the command-line flags, which win over it. The
/// environment is read again on every load (password files and variables named by the file).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Facts about one load of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// SHA-256 (hex) of the config file's bytes; of nothing when there is no file (flags only).
    pub hash: String,
    /// When it was read.
    pub at: SystemTime,
}

impl ConfigSource {
    pub fn new(file: Option<PathBuf>, overrides: Overrides) -> ConfigSource {
        ConfigSource { file, overrides }
    }

    /// Reads and validates the configuration (every problem at once).
    pub fn load(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(Config, Loaded), ConfigError> {
        let at = SystemTime::now();
        match &self.file {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| ConfigError(vec![format!("cannot read config file {}: {e}", path.display())]))?;
                let hash = hex(&crate::auth::sha256(&bytes));
                let text = String::from_utf8(bytes)
                    .map_err(|_| ConfigError(vec![format!("{}: not UTF-8 text", path.display())]))?;
                let config = Config::from_text(path, &text, &self.overrides, env)?;
                Ok((config, Loaded { hash, at }))
            }
            None => {
                let config = Config::from_raw(Default::default(), &self.overrides, env)?;
                Ok((config, Loaded { hash: hex(&crate::auth::sha256(b"")), at }))
            }
        }
    }

    /// The file's name for messages, or "command line" without a file.
    pub fn describe(&self) -> String {
        match &self.file {
            Some(p) => p.display().to_string(),
            None => "command line".to_string(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The settings in force now. Built whole and swapped in whole; never changed in place.
pub struct LiveSettings {
    /// The running configuration: the last one loaded, except that settings which need a restart keep the values
    /// slotway started with (so this always describes what is actually running).
    pub config: Arc<Config>,
    /// slotway's own users; None = no authentication (no `[[users]]`).
    pub users: Option<Arc<Users>>,
    /// The request decoder's limits, from `[client]`.
    pub limits: resp::Limits,
    /// The load the settings came from.
    pub loaded: Loaded,
    /// Settings of that load that differ from the running ones and wait for a restart (empty when none).
    pub restart_needed: Vec<&'static str>,
}

impl LiveSettings {
    pub fn new(config: Arc<Config>, users: Option<Arc<Users>>, loaded: Loaded) -> LiveSettings {
        let limits = resp::Limits { max_bulk_len: config.listen.max_bulk_bytes, ..resp::Limits::default() };
        LiveSettings { config, users, limits, loaded, restart_needed: Vec::new() }
    }

    /// The same settings with other users.
    pub fn with_users(&self, users: Option<Arc<Users>>) -> LiveSettings {
        LiveSettings {
            config: self.config.clone(),
            users,
            limits: self.limits,
            loaded: self.loaded.clone(),
            restart_needed: self.restart_needed.clone(),
        }
    }
}

/// The swappable home of [`LiveSettings`].
pub struct Live {
    current: ArcSwap<LiveSettings>,
    /// Bumped after every swap: readers that keep a copy compare it to know when to load again.
    generation: AtomicU64,
    /// Serializes writers (read-modify-write of the whole value).
    write: Mutex<()>,
}

impl Live {
    pub fn new(settings: LiveSettings) -> Live {
        Live { current: ArcSwap::from_pointee(settings), generation: AtomicU64::new(0), write: Mutex::new(()) }
    }

    /// The settings in force (keep the `Arc` for as long as they should stay consistent, e.g. one command).
    pub fn load(&self) -> Arc<LiveSettings> {
        self.current.load_full()
    }

    /// Changes whenever the settings are replaced. A relaxed load: a reader that sees the new number a little
    /// late only runs one more command with the old settings.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Replaces the settings with what `f` builds from the current ones, unless it fails (then nothing changes).
    /// Writers run one at a time.
    pub fn update<E>(&self, f: impl FnOnce(&LiveSettings) -> Result<LiveSettings, E>) -> Result<(), E> {
        let _writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let next = f(&self.current.load())?;
        self.current.store(Arc::new(next));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Replaces slotway's users (a reload, ACL SETUSER / DELUSER, provisioning): `f` gets the current ones and
    /// returns the new set. Sessions pick the change up before their next command: an authenticated client whose
    /// user still exists gets its new rules (and password hashes, for its next AUTH); one whose user is gone is
    /// disconnected, as Redis does for a deleted user.
    pub fn replace_users(&self, f: impl FnOnce(Option<&Arc<Users>>) -> Option<Arc<Users>>) {
        let _ = self.update(|cur| Ok::<_, std::convert::Infallible>(cur.with_users(f(cur.users.as_ref()))));
    }
}

/// The settings that differ between `running` and `next` and can't change without a restart (listeners are bound,
/// threads and pools are sized, the backend is discovered once).
pub fn restart_needed(running: &Config, next: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    let (r, n) = (running, next);
    check("mode", r.mode != n.mode);
    check("listen", r.listen.addr != n.listen.addr);
    check("listen_tls", r.listen.tls_addr != n.listen.tls_addr || r.listen.tls.is_some() != n.listen.tls.is_some());
    check("metrics_listen", r.metrics_listen != n.metrics_listen);
    check("workers", r.workers != n.workers);
    check("log_format", r.log_format != n.log_format);
    check("cluster.seeds", r.upstream.seeds != n.upstream.seeds);
    check("sentinel / servers (the backend)", r.backend != n.backend);
    check(
        "cluster.refresh_interval_ms / refresh_min_interval_ms",
        r.upstream.refresh_interval != n.upstream.refresh_interval
            || r.upstream.refresh_min_interval != n.upstream.refresh_min_interval,
    );
    check("upstream.tls.enabled", r.upstream.tls.is_some() != n.upstream.tls.is_some());
    check("upstream.connections_per_node", r.upstream.connections_per_node != n.upstream.connections_per_node);
    check("upstream.max_dedicated_per_node", r.upstream.max_dedicated_per_node != n.upstream.max_dedicated_per_node);
    check(
        "upstream.health_check_interval_ms / health_check_timeout_ms",
        r.upstream.health_check_interval != n.upstream.health_check_interval
            || r.upstream.health_check_timeout != n.upstream.health_check_timeout,
    );
    check("scripts", r.scripts != n.scripts);
    check("latency_tracking", r.latency_tracking != n.latency_tracking);
    check("slowlog", r.slowlog != n.slowlog);
    check("nat.resolve", r.resolve != n.resolve);
    let nat_static = |c: &Config| {
        c.nat.as_ref().map(|n| (n.announce_host.clone(), n.bind, n.ports, n.node_ports.clone(), n.leave_grace))
    };
    check("nat", nat_static(r) != nat_static(n));
    out
}

/// `next` with every setting that needs a restart taken from `running`: the configuration that is actually in
/// force after a reload.
pub fn running_config(running: &Config, next: Config) -> Config {
    let mut c = next;
    c.mode = running.mode;
    c.listen.addr = running.listen.addr;
    c.listen.tls_addr = running.listen.tls_addr;
    if c.listen.tls.is_some() != running.listen.tls.is_some() {
        c.listen.tls = running.listen.tls.clone();
    }
    c.metrics_listen = running.metrics_listen;
    c.workers = running.workers;
    c.log_format = running.log_format;
    c.upstream.seeds = running.upstream.seeds.clone();
    c.backend = running.backend.clone();
    c.upstream.refresh_interval = running.upstream.refresh_interval;
    c.upstream.refresh_min_interval = running.upstream.refresh_min_interval;
    if c.upstream.tls.is_some() != running.upstream.tls.is_some() {
        c.upstream.tls = running.upstream.tls.clone();
    }
    c.upstream.connections_per_node = running.upstream.connections_per_node;
    c.upstream.max_dedicated_per_node = running.upstream.max_dedicated_per_node;
    c.upstream.health_check_interval = running.upstream.health_check_interval;
    c.upstream.health_check_timeout = running.upstream.health_check_timeout;
    c.scripts = running.scripts;
    c.latency_tracking = running.latency_tracking;
    c.slowlog = running.slowlog;
    c.resolve = running.resolve.clone();
    match (&mut c.nat, &running.nat) {
        (Some(n), Some(r)) => {
            n.announce_host = r.announce_host.clone();
            n.bind = r.bind;
            n.ports = r.ports;
            n.node_ports = r.node_ports.clone();
            n.leave_grace = r.leave_grace;
        }
        (n, r) => *n = r.clone(),
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn config(f: impl FnOnce(&mut Overrides)) -> Config {
        let mut o = Overrides { cluster: vec!["127.0.0.1:7000".into()], ..Default::default() };
        f(&mut o);
        Config::from_raw(Default::default(), &o, &|_| None).unwrap()
    }

    #[test]
    fn listeners_workers_and_pool_sizes_need_a_restart_the_rest_does_not() {
        let running = config(|_| {});
        let same = config(|_| {});
        assert!(restart_needed(&running, &same).is_empty());
        let next = config(|o| {
            o.listen = Some("127.0.0.1:7777".into());
            o.workers = Some(running.workers + 1);
            o.connections_per_node = Some(3);
            o.read_from = Some("prefer-replica".into());
            o.log_level = Some("debug".into());
        });
        assert_eq!(restart_needed(&running, &next), ["listen", "workers", "upstream.connections_per_node"]);
        let applied = running_config(&running, next);
        assert_eq!(applied.listen.addr, running.listen.addr);
        assert_eq!(applied.workers, running.workers);
        assert_eq!(applied.upstream.connections_per_node, 1);
        // What can change live did.
        assert_eq!(applied.listen.read_from, crate::config::ReadFrom::PreferReplica);
        assert_eq!(applied.log_level, "debug");
        assert!(restart_needed(&running, &applied).is_empty());
    }

    #[test]
    fn updates_bump_the_generation_and_replace_the_value_whole() {
        let loaded = Loaded { hash: "h".into(), at: SystemTime::UNIX_EPOCH };
        let live = Live::new(LiveSettings::new(Arc::new(config(|_| {})), None, loaded));
        let before = live.load();
        assert_eq!(live.generation(), 0);
        live.replace_users(|old| {
            assert!(old.is_none());
            Some(Arc::new(Users::new(Vec::new(), 5)))
        });
        assert_eq!(live.generation(), 1);
        assert!(live.load().users.is_some());
        // A reader's copy stays as it was.
        assert!(before.users.is_none());
        // A failed update changes nothing.
        assert!(live.update(|_| Err::<LiveSettings, _>("no")).is_err());
        assert_eq!(live.generation(), 1);
    }
}
