//! The config file as written: every field optional, unknown keys rejected.
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub log_level: Option<String>,
    pub shutdown_grace_ms: Option<u64>,
    pub workers: Option<usize>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub client: RawClient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default)]
    pub seeds: Vec<String>,
    pub refresh_interval_ms: Option<u64>,
    pub refresh_min_interval_ms: Option<u64>,
    pub max_redirects: Option<u32>,
    pub max_retries: Option<u32>,
    pub retry_base_delay_ms: Option<u64>,
    pub retry_max_delay_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub connections_per_node: Option<usize>,
    pub max_dedicated_per_node: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub enabled: Option<bool>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub max_pending: Option<usize>,
}

impl RawConfig {
    pub fn parse(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
