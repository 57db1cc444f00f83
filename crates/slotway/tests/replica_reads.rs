//! Reads from replicas by policy (`--read-from`): read-heavy load lands on replicas (seen in their INFO
//! commandstats), writes still land on primaries, and `round-robin` spreads reads over both.

mod support;

use redis::AsyncCommands;
use support::*;

fn calls(cluster: &Cluster, port: u16, cmd: &str) -> u64 {
    let stats = cluster.cli(port, &["INFO", "commandstats"]);
    stats
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .map_or(0, |v| v.parse().unwrap())
}

async fn read_load(cluster: &Cluster, policy: &str) -> (u64, u64) {
    // A fresh cluster's replicas report `health: loading` until they have replicated something, and slotway
    // doesn't read from them until a refresh sees them online: refresh often so the test needn't wait long.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(&config, "[cluster]\nrefresh_interval_ms = 300\n").unwrap();
    let config = config.display().to_string();
    let proxy = Proxy::start(cluster, &["--read-from", policy, "--config", &config]);
    let mut con = proxy.client().await;
    let keys: Vec<String> = (0..300).map(|i| format!("rr:{policy}:{i}")).collect();
    for k in &keys {
        let () = con.set(k, format!("v-{k}")).await.unwrap();
    }
    // Let the replicas catch up before reading.
    for p in cluster.primaries() {
        cluster.cli(p, &["WAIT", "1", "2000"]);
    }
    // Wait (bounded) until a refresh has seen every shard's replica online: reads land on each of them.
    if policy != "primary" {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            for k in keys.iter().take(60) {
                let _: String = con.get(k).await.unwrap();
            }
            if cluster.replicas().iter().all(|&p| calls(cluster, p, "get") > 0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "reads never reached a replica");
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
    for p in cluster.live_ports() {
        cluster.cli(p, &["CONFIG", "RESETSTAT"]);
    }
    for _ in 0..5 {
        for k in &keys {
            let v: String = con.get(k).await.unwrap();
            assert_eq!(v, format!("v-{k}"));
        }
    }
    // A write after the reads still goes to the primary (and succeeds).
    let () = con.set(&keys[0], "after").await.unwrap();
    let v: String = con.get(&keys[0]).await.unwrap_or_default();
    assert!(v == "after" || v == format!("v-{}", keys[0]), "read-your-write may lag on a replica, but not corrupt");
    let on_replicas: u64 = cluster.replicas().iter().map(|&p| calls(cluster, p, "get")).sum();
    let on_primaries: u64 = cluster.primaries().iter().map(|&p| calls(cluster, p, "get")).sum();
    let sets: u64 = cluster.primaries().iter().map(|&p| calls(cluster, p, "set")).sum();
    assert_eq!(sets, 1, "the write landed on a primary");
    (on_primaries, on_replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_policies_route_reads_to_replicas() {
    let cluster = Cluster::start(ClusterOpts::default());
    let (p, r) = read_load(&cluster, "prefer-replica").await;
    println!("prefer-replica: {p} GETs on primaries, {r} on replicas");
    assert!(r >= 1_500, "reads went to replicas ({r} of 1,501)");
    assert!(p <= 1, "only the read right after the last write may go to a primary ({p})");

    let (p, r) = read_load(&cluster, "round-robin").await;
    println!("round-robin: {p} GETs on primaries, {r} on replicas");
    assert!(p >= 300 && r >= 300, "both primaries ({p}) and replicas ({r}) serve reads");

    let (p, r) = read_load(&cluster, "primary").await;
    println!("primary: {p} GETs on primaries, {r} on replicas");
    assert_eq!(r, 0, "the default policy never reads from replicas");
}
