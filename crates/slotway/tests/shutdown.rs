//! Shutdown that drops nothing: SIGTERM under load (20 writers) with a grace period. `/ready` turns 503 at once
//! while `/live` stays 200; slotway keeps serving through the grace period; then it stops accepting, a request
//! still in flight (a BLPOP) gets its answer, every write a client saw acknowledged is in the cluster, and the
//! process exits 0 within grace + drain deadline. Also what a rolling restart looks like to a client: it
//! reconnects to the next slotway and nothing it was told was written is lost.
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const CLIENTS: usize = 20;
const GRACE_MS: u64 = 1500;
const DRAIN_MS: u64 = 8000;

/// Writers: each SETs its own keys in a loop until its connection fails or `stop`; returns what was acknowledged,
/// and when the last acknowledgement and the first failure came.
fn writers(
    addr: &str,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<String, u64>>>,
) -> Vec<tokio::task::JoinHandle<(Option<Instant>, Option<Instant>)>> {
    (0..CLIENTS)
        .map(|c| {
            let (addr, stop, acked) = (addr.to_string(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
                let mut con = client.get_multiplexed_async_connection().await.unwrap();
                let (mut last_ok, mut failed) = (None, None);
                for n in 0u64..1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("shutdown:{c}:{}", n % 100);
                    let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(n).query_async(&mut con).await;
                    match r {
                        Ok(()) => {
                            acked.lock().unwrap().insert(key, n);
                            last_ok = Some(Instant::now());
                        }
                        Err(_) => {
                            failed = Some(Instant::now());
                            break;
                        }
                    }
                }
                (last_ok, failed)
            })
        })
        .collect()
}

/// Every acknowledged write is in the cluster (read directly from the nodes, not through slotway).
async fn check_acked(cluster: &Cluster, acked: &HashMap<String, u64>) {
    let mut direct = cluster_client(cluster).await;
    for (key, n) in acked {
        let got: Option<u64> = redis::cmd("GET").arg(key).query_async(&mut direct).await.unwrap();
        assert_eq!(got, Some(*n), "acknowledged write {key} = {n} is not in the cluster");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_without_losing_writes() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slotway.toml");
    std::fs::write(&file, format!("[shutdown]\ngrace_ms = {GRACE_MS}\ndrain_timeout_ms = {DRAIN_MS}\n")).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut proxy = Proxy::start(&cluster, &["--config", file.to_str().unwrap(), "--metrics-listen", &metrics]);
    let addr = proxy.addr.clone();
    assert_eq!(http(&metrics, "GET", "/ready").0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let tasks = writers(&addr, stop.clone(), acked.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 500 {
        assert!(Instant::now() < deadline, "the writers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A client whose request will still be in flight when the grace period ends.
    let patient = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let mut blocked = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&patient)
        .await
        .unwrap();

    let term = Instant::now();
    proxy.signal("TERM");
    // Not ready at once; still live.
    let (status, _, body) = loop {
        let r = http(&metrics, "GET", "/ready");
        if r.0 != 200 || term.elapsed() > Duration::from_secs(2) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((status, body.as_str()), (503, "shutting down\n"));
    assert!(term.elapsed() < Duration::from_millis(GRACE_MS / 2), "/ready took {:?}", term.elapsed());
    assert_eq!(http(&metrics, "GET", "/live").0, 200);
    assert_eq!(http(&metrics, "GET", "/health").0, 503);

    // During the grace period slotway still serves: old clients keep writing, a new client gets in.
    let before = acked.lock().unwrap().len();
    let mut late =
        redis::Client::open(format!("redis://{addr}/")).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg("shutdown:late").arg(1).query_async(&mut late).await.unwrap();
    acked.lock().unwrap().insert("shutdown:late".into(), 1);
    let in_flight = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(GRACE_MS - 700)).await;
        // Sent before the grace period ends, answered (nil, after 2 s) while slotway drains.
        let r: redis::RedisResult<Option<(String, String)>> =
            redis::cmd("BLPOP").arg("shutdown:nothing").arg(2).query_async(&mut blocked).await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(GRACE_MS / 2)).await;
    assert!(acked.lock().unwrap().len() > before, "writes stopped during the grace period");

    // After the grace period: no new clients; the writers' connections are closed once their request is answered.
    let exit = proxy.wait_exit(Duration::from_millis(GRACE_MS + DRAIN_MS + 5000));
    let exited = term.elapsed();
    let status = exit.unwrap_or_else(|| panic!("slotway still running {exited:?} after SIGTERM:\n{}", proxy.log()));
    assert!(status.success(), "exit status {status}:\n{}", proxy.log());
    assert!(exited < Duration::from_millis(GRACE_MS + DRAIN_MS + 2000), "exited after {exited:?}");
    assert!(exited >= Duration::from_millis(GRACE_MS), "exited before the grace period ended ({exited:?})");
    assert!(raw_ping(&addr, Duration::from_secs(1)).is_err(), "slotway still accepts clients after it exited");
    let (blpop, answered) = in_flight.await.unwrap();
    assert_eq!(blpop.expect("the in-flight BLPOP was dropped"), None, "BLPOP timed out with nil");
    assert!(answered > term + Duration::from_millis(GRACE_MS), "the BLPOP was answered before the drain began");

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let (last_ok, failed) = t.await.unwrap();
        let last_ok = last_ok.expect("every writer wrote");
        assert!(last_ok > term, "a writer stopped before SIGTERM");
        if let Some(f) = failed {
            assert!(f >= term + Duration::from_millis(GRACE_MS), "a writer failed during the grace period");
        }
    }
    let log = proxy.log();
    assert!(log.contains("shutting down: /ready now says 503"), "{log}");
    assert!(log.contains("every client connection finished; stopped"), "{log}");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 1000, "only {} writes", acked.len());
    check_acked(&cluster, &acked).await;
}

/// A rolling restart as a client sees it: slotway A drains (SIGTERM), slotway B serves the same cluster; the
/// client's connection to A ends between requests, it reconnects to B, and everything A acknowledged is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_loses_nothing_the_client_was_told() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slotway.toml");
    std::fs::write(&file, "[shutdown]\ngrace_ms = 500\ndrain_timeout_ms = 5000\n").unwrap();
    let mut old = Proxy::start(&cluster, &["--config", file.to_str().unwrap()]);
    let new = Proxy::start(&cluster, &["--config", file.to_str().unwrap()]);

    // One client, writing a counter; on a connection error it moves to the other slotway (as a client behind a
    // load balancer would after the old endpoint goes away) and carries on.
    let mut con = old.client().await;
    let mut acked = HashMap::new();
    let mut reconnects = 0;
    let mut n = 0u64;
    let start = Instant::now();
    let mut signalled = false;
    while n < 3000 && start.elapsed() < Duration::from_secs(30) {
        if n == 500 && !signalled {
            old.signal("TERM");
            signalled = true;
        }
        let key = format!("rolling:{}", n % 200);
        match redis::cmd("SET").arg(&key).arg(n).query_async::<()>(&mut con).await {
            Ok(()) => {
                acked.insert(key, n);
                n += 1;
            }
            Err(e) => {
                assert!(e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error(), "{e}");
                reconnects += 1;
                assert!(reconnects <= 3, "more reconnects than one restart explains: {e}");
                con = new.client().await;
            }
        }
    }
    assert_eq!(reconnects, 1, "the client reconnected once, to the new slotway");
    assert!(n >= 3000, "the client didn't get through its writes");
    assert!(old.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", old.log());
    check_acked(&cluster, &acked).await;
}
