//! The slotway binary: parse flags, load the config, start logging, run.
use clap::Parser;
use slotway::config::Overrides;
use std::path::PathBuf;
use std::process::ExitCode;

/// slotway: one standalone Redis endpoint for a whole Redis Cluster, a Sentinel-managed primary/replica group, a
/// static one, or a twemproxy-style pool of them (keys placed as twemproxy places them), with TLS and AUTH to the
/// nodes.
///
/// The upstream password is read from the environment variable SLOTWAY_UPSTREAM_PASSWORD, or from
/// `upstream.password_file` / `upstream.password_env` in the config file; never from the command line.
/// Flags override the config file. See docs/CONFIG.md for every setting.
#[derive(Parser, Debug)]
#[command(name = "slotway", version = slotway::build_info::VERSION_LINE, about, long_about)]
struct Cli {
    /// Check the configuration (file, flags and environment: syntax, values, files readable, certificates and
    /// keys, users' rules) without connecting anywhere or binding ports; print every problem, exit 0 if there is
    /// none and 1 otherwise.
    #[arg(long)]
    check_config: bool,
    /// Ask a running slotway's monitoring endpoint whether it is ready (GET /ready) and exit 0 if so, 1 if not:
    /// for container health checks, with no shell or curl in the image. ADDR is IP:PORT of `metrics_listen`,
    /// optionally followed by a path (`127.0.0.1:9121/live`).
    #[arg(long, value_name = "ADDR", exclusive = true)]
    probe: Option<String>,
    /// Print the slotway configuration (TOML) equivalent to a twemproxy (nutcracker) YAML file's pool, say on
    /// stderr which settings could not be carried over and why, and exit (2 when the pool can't be carried over:
    /// an unknown hash or distribution is an error, not a guess).
    #[arg(long, value_name = "FILE")]
    from_twemproxy: Option<PathBuf>,
    /// The pool of --from-twemproxy's file to convert (needed when the file has several).
    #[arg(long, value_name = "NAME", requires = "from_twemproxy")]
    pool: Option<String>,
    /// TOML config file; flags given here override its settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// `standalone`: one endpoint, slotway routes by slot [default]. `nat`: one listener per node for
    /// cluster-aware clients, with every node address the cluster tells them rewritten (see --nat-*).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// nat mode: the host clients reach slotway at; every node is announced as HOST:<its listener port>.
    #[arg(long, value_name = "HOST")]
    nat_announce_host: Option<String>,
    /// nat mode: ports for the node listeners, handed out in order of discovery (e.g. 7000-7099).
    #[arg(long, value_name = "FROM-TO")]
    nat_ports: Option<String>,
    /// nat mode: IP the node listeners bind [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    nat_bind: Option<String>,
    /// Plain-TCP address clients connect to [default: 127.0.0.1:6380, unless only --listen-tls is given].
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// Address of the monitoring HTTP endpoint: GET /metrics (Prometheus text format) and GET /health.
    /// Off unless given. Keep it on a private interface: it needs no password.
    #[arg(long, value_name = "IP:PORT")]
    metrics_listen: Option<String>,
    /// TLS address clients connect to (needs --listen-tls-cert and --listen-tls-key). Can run beside --listen.
    #[arg(long, value_name = "IP:PORT")]
    listen_tls: Option<String>,
    /// Certificate chain (PEM) presented to TLS clients; re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    listen_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --listen-tls-cert; re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    listen_tls_key: Option<PathBuf>,
    /// Require TLS clients to present a certificate signed by this CA (mutual TLS).
    #[arg(long, value_name = "FILE")]
    listen_tls_client_ca: Option<PathBuf>,
    /// A seed node of the cluster (repeat for several; the first that answers is used).
    #[arg(long = "cluster", value_name = "HOST:PORT")]
    cluster: Vec<String>,
    /// A Redis Sentinel watching the group (repeat for several; asked in order). Needs --sentinel-master.
    /// The sentinels' password comes from SLOTWAY_SENTINEL_PASSWORD (or sentinel.password_file / password_env).
    #[arg(long = "sentinel", value_name = "HOST:PORT")]
    sentinel: Vec<String>,
    /// The master name the sentinels monitor (`sentinel monitor <NAME> ...`).
    #[arg(long, value_name = "NAME")]
    sentinel_master: Option<String>,
    /// ACL user for AUTH to the sentinels (default: `AUTH <password>`).
    #[arg(long, value_name = "USER")]
    sentinel_user: Option<String>,
    /// Connect to the sentinels with TLS.
    #[arg(long)]
    sentinel_tls: bool,
    /// CA certificate(s) (PEM) to verify the sentinels with [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    sentinel_tls_ca: Option<PathBuf>,
    /// Name to verify the sentinels' certificates against (and send as SNI).
    #[arg(long, value_name = "NAME")]
    sentinel_tls_server_name: Option<String>,
    /// A server of a static primary/replica set (repeat for each); slotway finds the primary with ROLE.
    #[arg(long = "server", value_name = "HOST:PORT")]
    server: Vec<String>,
    /// ACL user for AUTH to the nodes (default: the `default` user, `AUTH <password>`).
    #[arg(long, value_name = "USER")]
    upstream_user: Option<String>,
    /// Connect to the nodes with TLS.
    #[arg(long)]
    upstream_tls: bool,
    /// CA certificate(s) (PEM) to verify the nodes with [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    upstream_tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for clusters that require mutual TLS.
    #[arg(long, value_name = "FILE")]
    upstream_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --upstream-tls-cert.
    #[arg(long, value_name = "FILE")]
    upstream_tls_key: Option<PathBuf>,
    /// Name to verify node certificates against (and send as SNI), for clusters that announce IPs that are not in
    /// their certificates.
    #[arg(long, value_name = "NAME")]
    upstream_tls_server_name: Option<String>,
    /// Do not verify the nodes' certificates. Development only: anyone on the path can read the traffic.
    #[arg(long)]
    upstream_tls_insecure: bool,
    /// Shared pipelined connections per node and worker thread [default: 1].
    #[arg(long, value_name = "N")]
    connections_per_node: Option<usize>,
    /// Where read-only commands go: primary, prefer-replica, replica or round-robin [default: primary].
    #[arg(long, value_name = "POLICY")]
    read_from: Option<String>,
    /// Dedicated connections (transactions, blocking commands) per node and worker thread [default: 64].
    #[arg(long, value_name = "N")]
    max_dedicated_per_node: Option<usize>,
    /// Worker threads serving clients [default: half the CPUs, at least 1].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive like `slotway=debug` [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log lines as `text` (for people) or `json` (one object per line, for log pipelines) [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(target) = &cli.probe {
        return probe(target);
    }
    if let Some(file) = &cli.from_twemproxy {
        return from_twemproxy(file, cli.pool.as_deref());
    }
    let overrides = Overrides {
        listen: cli.listen,
        listen_tls: cli.listen_tls,
        metrics_listen: cli.metrics_listen,
        listen_tls_cert: cli.listen_tls_cert,
        listen_tls_key: cli.listen_tls_key,
        listen_tls_client_ca: cli.listen_tls_client_ca,
        cluster: cli.cluster,
        upstream_user: cli.upstream_user,
        upstream_tls: cli.upstream_tls,
        upstream_tls_ca: cli.upstream_tls_ca,
        upstream_tls_cert: cli.upstream_tls_cert,
        upstream_tls_key: cli.upstream_tls_key,
        upstream_tls_server_name: cli.upstream_tls_server_name,
        upstream_tls_insecure: cli.upstream_tls_insecure,
        connections_per_node: cli.connections_per_node,
        max_dedicated_per_node: cli.max_dedicated_per_node,
        workers: cli.workers,
        read_from: cli.read_from,
        log_level: cli.log_level,
        log_format: cli.log_format,
        mode: cli.mode,
        nat_announce_host: cli.nat_announce_host,
        nat_ports: cli.nat_ports,
        nat_bind: cli.nat_bind,
        sentinels: cli.sentinel,
        sentinel_master: cli.sentinel_master,
        sentinel_user: cli.sentinel_user,
        sentinel_tls: cli.sentinel_tls,
        sentinel_tls_ca: cli.sentinel_tls_ca,
        sentinel_tls_server_name: cli.sentinel_tls_server_name,
        servers: cli.server,
    };
    let source = slotway::live::ConfigSource::new(cli.config.clone(), overrides);
    let loaded = source.load(&|k| std::env::var(k).ok());
    if cli.check_config {
        return check_config(&source, loaded);
    }
    let (config, loaded) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("slotway: {e}");
            return ExitCode::from(2);
        }
    };
    let log_control = slotway::logging::init(config.log_format, &config.log_level);
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }

    match slotway::app::run(config, slotway::app::Runtime { source, loaded, log_control }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("slotway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: every problem on stdout, one per line, and the verdict; nothing is connected or bound.
fn check_config(
    source: &slotway::live::ConfigSource,
    loaded: Result<(slotway::config::Config, slotway::live::Loaded), slotway::config::ConfigError>,
) -> ExitCode {
    let what = source.describe();
    match loaded {
        Ok((config, loaded)) => {
            for w in &config.warnings {
                println!("warning: {w}");
            }
            println!("{what}: configuration OK (sha256 {})", loaded.hash);
            ExitCode::SUCCESS
        }
        Err(e) => {
            for problem in &e.0 {
                println!("error: {problem}");
            }
            let n = e.0.len();
            println!("{what}: {n} problem{} found", if n == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}

/// `--from-twemproxy FILE [--pool NAME]`: the TOML on stdout, what was not carried over on stderr.
fn from_twemproxy(file: &std::path::Path, pool: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("slotway: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match slotway::config::twemproxy::convert(&text, pool, &file.display().to_string()) {
        Ok(import) => {
            print!("{}", import.toml);
            if import.notes.is_empty() {
                eprintln!("slotway: pool '{}': every setting was carried over", import.pool);
            } else {
                eprintln!("slotway: pool '{}': not carried over, or carried over differently:", import.pool);
                for n in &import.notes {
                    eprintln!("  {n}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slotway: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--probe ADDR[/PATH]`: one HTTP GET (default path `/ready`) with a short timeout; exit 0 on a 2xx answer.
fn probe(target: &str) -> ExitCode {
    match slotway::monitor::probe(target, std::time::Duration::from_secs(3)) {
        Ok((status, body)) if (200..300).contains(&status) => {
            println!("{status} {}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("{status} {}", body.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("probe {target}: {e}");
            ExitCode::FAILURE
        }
    }
}
