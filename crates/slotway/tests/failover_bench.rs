//! Benchmark (ignored: run on demand) for issue 4's SIGKILL scenario: a primary is SIGKILLed while 20 clients
//! SET and GET, once through slotway and once with the `redis` crate's cluster client straight against the
//! cluster (same cluster shape: 3 primaries + 3 replicas, TLS, AUTH, cluster-node-timeout 5000). Prints, for each,
//! the client-visible errors, the window in which they happened, and the longest a single request waited.
//!
//! cargo nextest run -p slotway --test failover_bench --run-ignored only --no-capture

mod support;

use redis::aio::ConnectionLike;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const CLIENTS: usize = 20;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: ErrorLog,
    /// The longest one request took (µs): what a client waited during the outage.
    slowest_us: AtomicU64,
}

async fn client_loop<C: ConnectionLike>(mut con: C, c: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && i < 1_000_000 {
        let (key, value) = (format!("fb:{c}:{}", i % 50), format!("{c}-{i}"));
        let t = Instant::now();
        let set: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query_async(&mut con).await;
        match set {
            Ok(()) => {
                let got: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query_async(&mut con).await;
                match got {
                    Ok(Some(v)) if v == value => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => tally.errors.record(format!("GET {key}: {other:?}")),
                }
            }
            Err(e) => tally.errors.record(format!("SET {key}: {e}")),
        }
        tally.slowest_us.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        i += 1;
    }
}

/// Kills a primary while `clients` (one task each) SET and GET; returns the report line.
async fn scenario<C: ConnectionLike + Send + 'static>(name: &str, cluster: &Cluster, clients: Vec<C>) -> String {
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let mut tasks = Vec::new();
    for (c, con) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(client_loop(con, c, stop.clone(), tally.clone())));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, _, killed) = cluster.kill_a_primary_until_promoted().await;
    let promoted = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    let times = tally.errors.times();
    let window = match (times.first(), times.last()) {
        (Some(a), Some(b)) => format!("{:?} (from {:?} to {:?} after the kill)", *b - *a, *a - killed, *b - killed),
        _ => "none".to_string(),
    };
    format!(
        "{name}: promotion after {promoted:.1?}; {} SET+GET ok, {} client-visible errors, error window {window}, \
         longest request {:.1?}; first errors: {:?}",
        tally.ok.load(Ordering::Relaxed),
        tally.errors.count(),
        Duration::from_micros(tally.slowest_us.load(Ordering::Relaxed)),
        tally.errors.first()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: two clusters and two failovers, about a minute"]
async fn sigkill_failover_slotway_vs_cluster_client() {
    let through_slotway = {
        let cluster = Cluster::start(ClusterOpts::default());
        let proxy = Proxy::start(&cluster, &[]);
        let client = redis::Client::open(format!("redis://{}/", proxy.addr)).unwrap();
        // Requests that arrive during the outage wait for the promotion: the client must not give up first.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(client.get_multiplexed_async_connection_with_config(&config).await.unwrap());
        }
        scenario("through slotway", &cluster, clients).await
    };
    println!("{through_slotway}");
    let direct = {
        let cluster = Cluster::start(ClusterOpts::default());
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(cluster_client(&cluster).await);
        }
        scenario("redis crate cluster client, direct", &cluster, clients).await
    };
    println!("{direct}");
}
