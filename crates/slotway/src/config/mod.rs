//! Configuration: the raw TOML file and command-line flags are merged into one validated [`Config`].
//!
//! Precedence: command-line flags > environment (`SLOTWAY_UPSTREAM_PASSWORD`) > config file > defaults.
//! Every problem found is reported at once, so a user fixes a config file in one pass.
//! Secrets never come from argv and never appear in `Debug` output.

mod raw;
pub mod tls;

pub use raw::RawConfig;

use crate::cluster::NodeAddr;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that carries the upstream (cluster) password.
pub const UPSTREAM_PASSWORD_ENV: &str = "SLOTWAY_UPSTREAM_PASSWORD";

/// A secret string: shown as `<redacted>` in Debug output so it can't leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS settings for connections to the cluster's nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA bundle (PEM) to verify nodes with; `None` = the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for clusters that require mTLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name to verify node certificates against (and send as SNI) instead of the address the cluster announces;
    /// needed when nodes announce IPs that their certificates don't list.
    pub server_name: Option<String>,
    /// Skip certificate verification entirely. For development only; logged loudly at start.
    pub insecure_skip_verify: bool,
}

/// Everything about reaching the cluster.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Seed nodes; discovery tries them in order and the first that answers wins.
    pub seeds: Vec<NodeAddr>,
    /// ACL user for AUTH; `None` = the default user (`AUTH password`).
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<UpstreamTls>,
    /// Shared pipelined connections per node on each worker thread; the worker's clients are spread over them.
    pub connections_per_node: usize,
    /// Dedicated connections (transactions, blocking commands) per node on each worker thread.
    pub max_dedicated_per_node: usize,
    pub connect_timeout: Duration,
    /// How often the slot map is refreshed even without a trigger.
    pub refresh_interval: Duration,
    /// Minimum time between two refreshes, however many triggers arrive.
    pub refresh_min_interval: Duration,
    /// Redirects (MOVED/ASK) followed for one request before its last error is passed on.
    pub max_redirects: u32,
    /// Retries for TRYAGAIN / CLUSTERDOWN / connection failures before the error is passed on.
    pub max_retries: u32,
    /// First retry delay; doubled per attempt up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
}

/// The downstream (client-facing) side.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    /// Requests a client may have outstanding before slotway stops reading from it (backpressure).
    pub max_pending_per_client: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads; each serves its share of clients with its own connections to every node.
    pub workers: usize,
    pub listen: ListenConfig,
    pub upstream: UpstreamConfig,
    /// `tracing` filter, e.g. `info` or `slotway=debug`.
    pub log_level: String,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace: Duration,
}

/// Command-line flags that can override the config file; `None`/`false` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub cluster: Vec<String>,
    pub upstream_user: Option<String>,
    pub upstream_tls: bool,
    pub upstream_tls_ca: Option<PathBuf>,
    pub upstream_tls_cert: Option<PathBuf>,
    pub upstream_tls_key: Option<PathBuf>,
    pub upstream_tls_server_name: Option<String>,
    pub upstream_tls_insecure: bool,
    pub connections_per_node: Option<usize>,
    pub max_dedicated_per_node: Option<usize>,
    pub workers: Option<usize>,
    pub log_level: Option<String>,
}

/// All problems found while building a [`Config`], one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads the optional config file, applies flags and the environment, and validates the result.
    pub fn load(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(vec![format!("cannot read config file {}: {e}", path.display())]))?;
                RawConfig::parse(&text).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?
            }
            None => RawConfig::default(),
        };
        Self::from_raw(raw, overrides, env)
    }

    pub fn from_raw(
        raw: RawConfig,
        o: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();

        let listen_text = o.listen.clone().or(raw.listen).unwrap_or_else(|| "127.0.0.1:6380".to_string());
        let listen_addr = match listen_text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(format!("listen: '{listen_text}' is not an IP:port address"));
                None
            }
        };

        let seed_texts = if o.cluster.is_empty() { raw.cluster.seeds } else { o.cluster.clone() };
        if seed_texts.is_empty() {
            errors.push("cluster: no seed nodes (give --cluster HOST:PORT or cluster.seeds)".to_string());
        }
        let mut seeds = Vec::new();
        for s in &seed_texts {
            match NodeAddr::parse(s) {
                Some(a) => seeds.push(a),
                None => errors.push(format!("cluster seed '{s}' is not HOST:PORT")),
            }
        }

        let up = raw.upstream;
        let password = match resolve_password(&up, env) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                None
            }
        };

        let raw_tls = up.tls;
        let tls_on = o.upstream_tls || raw_tls.enabled.unwrap_or(false);
        let tls = tls_on.then(|| UpstreamTls {
            ca: o.upstream_tls_ca.clone().or(raw_tls.ca),
            cert: o.upstream_tls_cert.clone().or(raw_tls.cert),
            key: o.upstream_tls_key.clone().or(raw_tls.key),
            server_name: o.upstream_tls_server_name.clone().or(raw_tls.server_name),
            insecure_skip_verify: o.upstream_tls_insecure || raw_tls.insecure_skip_verify.unwrap_or(false),
        });
        if let Some(t) = &tls {
            if t.cert.is_some() != t.key.is_some() {
                errors.push("upstream TLS: a client certificate needs both cert and key".to_string());
            }
            for p in [&t.ca, &t.cert, &t.key].into_iter().flatten() {
                if !p.exists() {
                    errors.push(format!("upstream TLS: file {} does not exist", p.display()));
                }
            }
        } else if o.upstream_tls_ca.is_some() || o.upstream_tls_cert.is_some() || o.upstream_tls_server_name.is_some() {
            errors.push("upstream TLS options given without --upstream-tls (or upstream.tls.enabled)".to_string());
        }

        let connections_per_node = o.connections_per_node.or(up.connections_per_node).unwrap_or(1);
        let workers =
            o.workers.or(raw.workers).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 || workers > 256 {
            errors.push(format!("workers must be 1..=256, got {workers}"));
        }
        if connections_per_node == 0 || connections_per_node > 64 {
            errors.push(format!("upstream.connections_per_node must be 1..=64, got {connections_per_node}"));
        }
        let max_dedicated_per_node = o.max_dedicated_per_node.or(up.max_dedicated_per_node).unwrap_or(64);
        if max_dedicated_per_node == 0 || max_dedicated_per_node > 100_000 {
            errors.push(format!("upstream.max_dedicated_per_node must be 1..=100000, got {max_dedicated_per_node}"));
        }
        let max_pending = raw.client.max_pending.unwrap_or(1024);
        if max_pending == 0 {
            errors.push("client.max_pending must be at least 1".to_string());
        }

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        let ms = Duration::from_millis;
        Ok(Config {
            workers,
            listen: ListenConfig { addr: listen_addr.expect("checked"), max_pending_per_client: max_pending },
            upstream: UpstreamConfig {
                seeds,
                user: o.upstream_user.clone().or(up.user),
                password,
                tls,
                connections_per_node,
                max_dedicated_per_node,
                connect_timeout: ms(up.connect_timeout_ms.unwrap_or(5000)),
                refresh_interval: ms(raw.cluster.refresh_interval_ms.unwrap_or(5000)),
                refresh_min_interval: ms(raw.cluster.refresh_min_interval_ms.unwrap_or(100)),
                max_redirects: raw.cluster.max_redirects.unwrap_or(16),
                max_retries: raw.cluster.max_retries.unwrap_or(10),
                retry_base_delay: ms(raw.cluster.retry_base_delay_ms.unwrap_or(20)),
                retry_max_delay: ms(raw.cluster.retry_max_delay_ms.unwrap_or(500)),
            },
            log_level: o.log_level.clone().or(raw.log_level).unwrap_or_else(|| "info".to_string()),
            shutdown_grace: ms(raw.shutdown_grace_ms.unwrap_or(5000)),
        })
    }
}

/// `SLOTWAY_UPSTREAM_PASSWORD` wins; then `upstream.password_file`, `upstream.password_env`, `upstream.password`.
fn resolve_password(up: &raw::RawUpstream, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Secret>, String> {
    if let Some(p) = env(UPSTREAM_PASSWORD_ENV) {
        return Ok(Some(Secret::new(p)));
    }
    if let Some(path) = &up.password_file {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("upstream.password_file {}: {e}", path.display()))?;
        // A trailing newline is an artifact of how the file was written, not part of the password.
        return Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))));
    }
    if let Some(var) = &up.password_env {
        return match env(var) {
            Some(p) => Ok(Some(Secret::new(p))),
            None => Err(format!("upstream.password_env: environment variable {var} is not set")),
        };
    }
    Ok(up.password.clone().map(Secret::new))
}

#[cfg(test)]
mod tests;
