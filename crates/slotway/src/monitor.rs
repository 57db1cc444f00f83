//! The monitoring endpoint (`metrics_listen`): plain HTTP/1.1 with four resources.
//!
//! - `GET /metrics`: every counter of [`Metrics`] plus a few facts about the topology, in Prometheus's text format.
//! - `GET /health`: `200 ok` while slotway can serve every slot, `503` with the reason otherwise (slots without a
//!   primary, or shutting down), for load balancers' health checks.
//! - `GET /live`: `200` while the process runs, draining included (a liveness probe that never restarts a pod
//!   that is shutting down cleanly, nor one whose cluster is having trouble).
//! - `GET /ready`: `200` until shutdown begins, then `503` at once (a readiness probe: the pod leaves the
//!   Service's endpoints while it keeps serving for `shutdown.grace_ms`). Slots without a primary don't make it
//!   unready: every slotway would drop out together, and clients get a clear CLUSTERDOWN instead.
//!
//! It runs on the control runtime, so a scrape never takes time from the workers, and it needs no password: bind it
//! to a private address.
use crate::metrics::Metrics;
use crate::observe::histogram::Snapshot;
use crate::observe::Observe;
use crate::topology::TopologyManager;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Prometheus's text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A scraper that sends nothing for this long is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the endpoint reads.
pub struct Monitor {
    pub metrics: Arc<Metrics>,
    pub topology: Arc<TopologyManager>,
    pub started: Instant,
    /// True once shutdown has begun.
    pub shutdown: watch::Receiver<bool>,
    /// Per-command, per-outcome and per-node series (standalone mode; None in nat mode).
    pub observe: Option<Arc<Observe>>,
    /// The settings in force, once slotway has them: `slotway_max_clients` follows reloads of `client.max_clients`.
    pub live: Arc<std::sync::OnceLock<Arc<crate::live::Live>>>,
}

/// Serves the endpoint on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, monitor: Monitor) {
    let monitor = Arc::new(monitor);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let monitor = monitor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let monitor = monitor.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&monitor, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

fn respond(monitor: &Monitor, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/health" | "/live" | "/ready") {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics, /health, /live or /ready\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/health" => {
            let problem = monitor.topology.load().health_problem();
            let (status, body) = health(problem.as_deref(), *monitor.shutdown.borrow());
            return text(status, body);
        }
        "/live" => return text(StatusCode::OK, "ok\n".into()),
        "/ready" => {
            let (status, body) = ready(*monitor.shutdown.borrow());
            return text(status, body);
        }
        _ => {}
    }
    let mut r = text(StatusCode::OK, render(monitor));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    r
}

/// The health verdict from what keeps slotway from serving every key (slots without a primary, a group without
/// one: [`crate::topology::Topology::health_problem`]) and whether shutdown has begun.
pub fn health(problem: Option<&str>, shutting_down: bool) -> (StatusCode, String) {
    match problem {
        _ if shutting_down => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        None => (StatusCode::OK, "ok\n".into()),
    }
}

/// The readiness verdict: ready until shutdown begins.
pub fn ready(shutting_down: bool) -> (StatusCode, String) {
    if shutting_down {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
    } else {
        (StatusCode::OK, "ready\n".into())
    }
}

/// One GET for `slotway --probe`: `target` is `IP:PORT` (path `/ready`) or `IP:PORT/path`. Returns the status
/// code and body. Plain std I/O with `timeout` on connect, write and read: it runs before any runtime exists.
pub fn probe(target: &str, timeout: Duration) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let (addr, path) = match target.find('/') {
        Some(i) => (&target[..i], &target[i..]),
        None => (target, "/ready"),
    };
    let sockaddr: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| format!("bad address '{addr}': {e}"))?
        .next()
        .ok_or_else(|| format!("no address for '{addr}'"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&sockaddr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "not an HTTP response".to_string())?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

/// The `/metrics` page: the counters, then the topology facts `INFO proxy` also shows.
fn render(monitor: &Monitor) -> String {
    let mut out = String::with_capacity(8 * 1024);
    monitor.metrics.render_prometheus(&mut out);
    let topo = monitor.topology.load();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP slotway_{name} {help}");
        let _ = writeln!(out, "# TYPE slotway_{name} gauge");
        let _ = writeln!(out, "slotway_{name} {value}");
    };
    gauge("uptime_seconds", "Seconds since slotway started.", monitor.started.elapsed().as_secs());
    gauge("topology_version", "Slot maps adopted since start (1 = the one found at discovery).", topo.version);
    if let Some(live) = monitor.live.get() {
        let max_clients = live.load().config.listen.max_clients as u64;
        gauge("max_clients", "Clients allowed at once (client.max_clients).", max_clients);
    }
    let groups = monitor.topology.group_reports();
    if groups.is_empty() {
        gauge("cluster_shards", "Shards in the current slot map.", topo.map.shards.len() as u64);
        gauge(
            "unassigned_slots",
            "Slots no primary serves in the current slot map.",
            topo.map.unassigned_slots() as u64,
        );
    } else {
        group_metrics(&mut out, &groups);
    }
    let _ = writeln!(out, "# HELP slotway_build_info slotway's version, as a label.");
    let _ = writeln!(out, "# TYPE slotway_build_info gauge");
    let _ = writeln!(
        out,
        "slotway_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::build_info::COMMIT
    );
    if let Some(observe) = &monitor.observe {
        // Each node's round trips: every pool of the node (writes, replica reads), every worker.
        let mut nodes: Vec<(String, Snapshot)> = Vec::new();
        for pool in monitor.topology.upstreams().pools() {
            let addr = pool.addr.to_string();
            let i = match nodes.iter().position(|(a, _)| *a == addr) {
                Some(i) => i,
                None => {
                    nodes.push((addr, Snapshot::default()));
                    nodes.len() - 1
                }
            };
            for h in pool.round_trip.iter() {
                h.add_to(&mut nodes[i].1);
            }
        }
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        crate::observe::prometheus::render(&mut out, observe, &observe.totals(), &nodes);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    crate::observe::prometheus::process_metrics(&mut out, (now - monitor.started.elapsed().as_secs_f64()).floor());
    out
}

/// The groups' facts (one group, or a pool's shards): each primary and replica as labelled gauges, and when each
/// primary last changed. In a pool the `group` label is the shard's ring name, and `slotway_pool_shard_ejected`
/// says which shards `auto_eject_hosts` took out of the ring.
fn group_metrics(out: &mut String, groups: &[crate::topology::GroupReport]) {
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ");
    let name = |g: &crate::topology::GroupReport| label(g.shard.as_deref().unwrap_or(&g.name));
    let family = |out: &mut String, metric: &str, help: &str| {
        let _ = writeln!(out, "# HELP slotway_{metric} {help}");
        let _ = writeln!(out, "# TYPE slotway_{metric} gauge");
    };
    family(out, "group_primary", "The group's primary (1 while one is known; 0 with addr=\"none\").");
    for g in groups {
        let (addr, up) = g.primary.as_ref().map_or(("none".to_string(), 0), |p| (label(&p.to_string()), 1));
        let _ =
            writeln!(out, "slotway_group_primary{{group=\"{}\",kind=\"{}\",addr=\"{addr}\"}} {up}", name(g), g.kind);
    }
    family(out, "group_replica", "The group's replicas attached to the primary (link up).");
    for g in groups {
        for r in &g.replicas {
            let _ =
                writeln!(out, "slotway_group_replica{{group=\"{}\",addr=\"{}\"}} 1", name(g), label(&r.to_string()));
        }
    }
    family(out, "group_replicas", "Replicas attached to the group's primary.");
    for g in groups {
        let _ = writeln!(out, "slotway_group_replicas{{group=\"{}\"}} {}", name(g), g.replicas.len());
    }
    if groups.iter().any(|g| g.last_change.is_some()) {
        family(out, "group_last_change_timestamp_seconds", "When the group's primary last changed, and why.");
    }
    for g in groups {
        if let Some((when, why)) = &g.last_change {
            let unix = when.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let _ = writeln!(
                out,
                "slotway_group_last_change_timestamp_seconds{{group=\"{}\",reason=\"{}\"}} {unix}",
                name(g),
                label(why.split(':').next().unwrap_or(why))
            );
        }
    }
    if groups.iter().any(|g| g.shard.is_some()) {
        family(out, "pool_shard_ejected", "1 while auto_eject_hosts keeps the shard out of the pool's ring.");
        for g in groups {
            let _ = writeln!(out, "slotway_pool_shard_ejected{{group=\"{}\"}} {}", name(g), u8::from(g.ejected));
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_ok_only_with_every_slot_served_and_not_shutting_down() {
        assert_eq!(health(None, false), (StatusCode::OK, "ok\n".to_string()));
        let five = Some("5 slots have no primary");
        assert_eq!(health(five, false), (StatusCode::SERVICE_UNAVAILABLE, "5 slots have no primary\n".to_string()));
        assert_eq!(health(None, true).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health(five, true).1, "shutting down\n");
    }

    #[test]
    fn ready_until_shutdown_begins() {
        assert_eq!(ready(false).0, StatusCode::OK);
        assert_eq!(ready(true), (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_string()));
    }

    #[test]
    fn every_metric_has_help_type_and_one_sample() {
        let m = Metrics::default();
        Metrics::incr(&m.commands_received);
        m.connections_current.store(3, std::sync::atomic::Ordering::Relaxed);
        let mut out = String::new();
        m.render_prometheus(&mut out);
        assert!(out.contains("# TYPE slotway_commands_received_total counter\nslotway_commands_received_total 1\n"));
        assert!(out.contains("# TYPE slotway_connections_current gauge\nslotway_connections_current 3\n"));
        let mut info = String::new();
        m.render_info(&mut info);
        // One HELP, one TYPE and one sample per counter INFO shows, and nothing empty or multi-line.
        let count = info.lines().count();
        assert_eq!(out.lines().filter(|l| l.starts_with("# HELP slotway_")).count(), count);
        assert_eq!(out.lines().filter(|l| l.starts_with("# TYPE slotway_")).count(), count);
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), count);
        for line in out.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(line.split(' ').count() > 3, "empty HELP: {line}");
        }
        for gauge in crate::metrics::GAUGES {
            assert!(out.contains(&format!("# TYPE slotway_{gauge} gauge\n")), "{gauge} is not a known metric");
        }
    }

    #[test]
    fn help_text_is_escaped() {
        assert_eq!(crate::metrics::prometheus_help("a\\b\nc"), "a\\\\b\\nc");
    }
}
