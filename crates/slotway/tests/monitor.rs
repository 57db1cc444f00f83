//! The monitoring endpoint (`--metrics-listen`): Prometheus metrics and the health check, over real HTTP, with a
//! real TLS+AUTH cluster behind slotway.
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;

/// The samples of a Prometheus text page (name with labels → value), checking that every sample has HELP and TYPE.
fn samples(page: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in page.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let mut bare = name.split('{').next().unwrap();
        // A histogram's samples are documented under its own name.
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = bare.strip_suffix(suffix) {
                if page.contains(&format!("# TYPE {base} histogram\n")) {
                    bare = base;
                }
            }
        }
        assert!(page.contains(&format!("# HELP {bare} ")), "{bare} has no HELP");
        assert!(page.contains(&format!("# TYPE {bare} ")), "{bare} has no TYPE");
        out.insert(name.to_string(), value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_over_http() {
    let cluster = Cluster::start(ClusterOpts::default());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&cluster, &["--metrics-listen", &metrics_addr]);

    let (status, _, body) = http(&metrics_addr, "GET", "/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"), "health with every slot served");

    let (status, headers, page) = http(&metrics_addr, "GET", "/metrics");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let before = samples(&page);
    assert_eq!(before["slotway_cluster_shards"], 3.0);
    assert_eq!(before["slotway_unassigned_slots"], 0.0);
    assert_eq!(
        before
            .iter()
            .filter(|(k, v)| k
                .starts_with(&format!("slotway_build_info{{version=\"{}\",commit=\"", env!("CARGO_PKG_VERSION")))
                && **v == 1.0)
            .count(),
        1
    );
    assert!(page.contains("# TYPE slotway_commands_received_total counter\n"), "{page}");
    assert!(page.contains("# TYPE slotway_connections_current gauge\n"), "{page}");

    // Traffic through slotway shows up: 25 commands, one open connection, batched upstream writes.
    let mut con = proxy.client().await;
    for i in 0..25 {
        let _: () = redis::cmd("SET").arg(format!("monitor:{i}")).arg(i).query_async(&mut con).await.unwrap();
    }
    let after = samples(&http(&metrics_addr, "GET", "/metrics").2);
    let counted = after["slotway_commands_received_total"] - before["slotway_commands_received_total"];
    assert!(counted >= 25.0, "25 SETs, commands_received_total grew by {counted}");
    assert!(after["slotway_connections_current"] >= 1.0, "a client is connected");
    let batched = after["slotway_upstream_batched_requests_total"] - before["slotway_upstream_batched_requests_total"];
    assert!(batched >= 25.0, "25 SETs went to the nodes, upstream_batched_requests_total grew by {batched}");
    assert!(after["slotway_uptime_seconds"] >= before["slotway_uptime_seconds"]);

    // Anything else is refused the HTTP way.
    assert_eq!(http(&metrics_addr, "GET", "/nope").0, 404);
    let (status, headers, _) = http(&metrics_addr, "POST", "/metrics");
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");

    // Shutdown: while a blocked client keeps slotway draining, /health says 503 so load balancers stop sending.
    let blocked = {
        let mut con = proxy.client().await;
        tokio::spawn(async move {
            let _: Option<(String, String)> =
                redis::cmd("BLPOP").arg("monitor:empty").arg(3).query_async(&mut con).await.unwrap_or_default();
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = proxy.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(2);
    let verdict = loop {
        let got = http(&metrics_addr, "GET", "/health");
        if got.0 != 200 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((verdict.0, verdict.2.as_str()), (503, "shutting down\n"), "health while draining");
    let _ = blocked.await;
}
