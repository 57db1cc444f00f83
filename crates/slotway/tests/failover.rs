//! Failover through slotway: clients keep writing and reading while a primary is replaced, and see no errors they
//! didn't cause (no `READONLY`, no stale reads, no errors for requests that arrive during the outage).

mod support;

use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: ErrorLog,
    stale: AtomicU64,
    /// Last acknowledged value per key.
    acked: Mutex<HashMap<String, String>>,
}

/// 20 clients, each SETting its own keys (on every shard) and GETting them right back, until `stop`.
async fn run_load(addr: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut tasks = Vec::new();
    for c in 0..20 {
        let (addr, stop, tally) = (addr.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            // Requests that arrive during an outage wait for the promotion (several seconds): the client must not
            // give up before slotway's retry deadline.
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
            let mut con = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 200_000 {
                let key = format!("fo:{c}:{}", i % 50);
                let value = format!("{c}-{i}");
                match con.set::<_, _, ()>(&key, &value).await {
                    Ok(()) => {
                        tally.acked.lock().unwrap().insert(key.clone(), value.clone());
                        match con.get::<_, Option<String>>(&key).await {
                            Ok(Some(v)) if v == value => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(other) => {
                                tally.stale.fetch_add(1, Ordering::Relaxed);
                                tally.errors.record(format!("stale read of {key}: {other:?}, wrote {value}"));
                            }
                            Err(e) => tally.errors.record(format!("GET {key}: {e}")),
                        }
                    }
                    Err(e) => tally.errors.record(format!("SET {key}: {e}")),
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn check_acked(addr: &str, tally: &Tally) {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let acked = tally.acked.lock().unwrap().clone();
    for (k, v) in acked {
        let got: Option<String> = con.get(&k).await.unwrap();
        assert_eq!(got.as_deref(), Some(v.as_str()), "acknowledged write of {k} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_under_load_is_invisible() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = tokio::spawn(run_load(proxy.addr.clone(), stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let primary = cluster.primaries()[0];
    let replica = cluster.replicas_of(primary)[0];
    tokio::task::block_in_place(|| cluster.failover(replica, None));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (ok, errors, stale) =
        (tally.ok.load(Ordering::Relaxed), tally.errors.count(), tally.stale.load(Ordering::Relaxed));
    println!("manual failover: {ok} SET+GET pairs ok, {errors} errors, {stale} stale reads");
    assert!(ok > 1000, "the load ran ({ok})");
    assert_eq!(errors, 0, "client-visible errors: {:?}", tally.errors.first());
    assert_eq!(stale, 0);
    check_acked(&proxy.addr, &tally).await;
    let info = proxy.cli(&["INFO", "proxy"]);
    assert!(!info.contains("topology_changes:0"), "slotway noticed the failover:\n{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_under_load_recovers_with_few_errors() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = tokio::spawn(run_load(proxy.addr.clone(), stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // cluster-node-timeout is 5 s: wait for the promotion, then a little more load.
    let (_, _, killed_at) = cluster.kill_a_primary_until_promoted().await;
    let promoted_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let errors = tally.errors.count();
    let times = tally.errors.times();
    let window = match (times.first(), times.last()) {
        (Some(a), Some(b)) => format!("{:?}", *b - *a),
        _ => "none".to_string(),
    };
    println!(
        "SIGKILL: promotion after {promoted_after:?}; {} ok, {errors} client-visible errors, error window {window}; first: {:?}",
        tally.ok.load(Ordering::Relaxed),
        tally.errors.first()
    );
    assert_eq!(tally.stale.load(Ordering::Relaxed), 0);
    // Only writes in flight on the dead node's connections may fail (their fate is unknown).
    assert!(errors <= 40, "{errors} errors: {:?}", tally.errors.first());
    // Everything slotway acknowledged is still there (on the promoted replica).
    check_acked(&proxy.addr, &tally).await;
}
