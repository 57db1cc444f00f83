//! The monitoring endpoint (`metrics_listen`): plain HTTP/1.1 with two resources.
//!
//! - `GET /metrics`: every counter of [`Metrics`] plus a few facts about the topology, in Prometheus's text format.
//! - `GET /health`: `200 ok` while slotway can serve every slot, `503` with the reason otherwise (slots without a
//!   primary, or shutting down), for load balancers' and orchestrators' health checks.
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
    /// `client.max_clients`, so alerts can compare the open connections with it.
    pub max_clients: u64,
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
    if !matches!(path, "/metrics" | "/health") {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics or /health\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/health" {
        let unassigned = monitor.topology.load().map.unassigned_slots();
        let (status, body) = health(unassigned, *monitor.shutdown.borrow());
        return text(status, body);
    }
    let mut r = text(StatusCode::OK, render(monitor));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    r
}

/// The health verdict from the number of slots without a primary and whether shutdown has begun.
pub fn health(unassigned_slots: usize, shutting_down: bool) -> (StatusCode, String) {
    if shutting_down {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
    } else if unassigned_slots > 0 {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{unassigned_slots} slots have no primary\n"))
    } else {
        (StatusCode::OK, "ok\n".into())
    }
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
    gauge("cluster_shards", "Shards in the current slot map.", topo.map.shards.len() as u64);
    gauge("unassigned_slots", "Slots no primary serves in the current slot map.", topo.map.unassigned_slots() as u64);
    gauge("max_clients", "Clients allowed at once (client.max_clients).", monitor.max_clients);
    let _ = writeln!(out, "# HELP slotway_build_info slotway's version, as a label.");
    let _ = writeln!(out, "# TYPE slotway_build_info gauge");
    let _ = writeln!(out, "slotway_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
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
        assert_eq!(health(0, false), (StatusCode::OK, "ok\n".to_string()));
        assert_eq!(health(5, false), (StatusCode::SERVICE_UNAVAILABLE, "5 slots have no primary\n".to_string()));
        assert_eq!(health(0, true).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health(16384, true).1, "shutting down\n");
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
