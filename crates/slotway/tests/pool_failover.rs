//! Failover in one shard of a pool, under load: each shard is a replication group (a static set, or a Sentinel
//! master), so a promotion in one shard costs clients nothing, and the other shards go on as if nothing happened.
//! Real redis-server (and redis-sentinel) processes with AUTH, TLS to the nodes, via `scripts/dev-pool.sh`.
mod support;

use redis::AsyncCommands;
use slotway::ring::{CharSign, Distribution, KeyHash, Ring, RingServer, RingSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};
use support::*;

fn ring(shards: usize) -> Ring {
    Ring::new(RingSpec {
        distribution: Distribution::Ketama,
        hash: KeyHash::Fnv1a_64,
        sign: CharSign::Signed,
        hash_tag: Some(*b"{}"),
        servers: (1..=shards).map(|i| RingServer { name: format!("shard{i}").into_bytes(), weight: 1 }).collect(),
    })
}

/// For each shard, `clients` clients SETting keys of that shard only and reading each back, until `stop` (or
/// 100,000 rounds each); what each shard's clients saw goes to its own tally.
async fn run_shard_load(addr: String, shards: usize, clients: usize, stop: Arc<AtomicBool>, tallies: Vec<Arc<Tally>>) {
    let ring = ring(shards);
    let mut tasks = Vec::new();
    for (s, shard_tally) in tallies.iter().enumerate().take(shards) {
        for c in 0..clients {
            let keys: Vec<String> = (0..)
                .map(|n| format!("load:{s}:{c}:{n}"))
                .filter(|k| ring.locate(k.as_bytes()) == s)
                .take(20)
                .collect();
            let (addr, stop, tally) = (addr.clone(), stop.clone(), shard_tally.clone());
            tasks.push(tokio::spawn(async move {
                let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
                let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
                let mut con = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 100_000 {
                    let key = &keys[i as usize % keys.len()];
                    let value = format!("{c}-{i}");
                    let started = Instant::now();
                    let outcome = match con.set::<_, _, ()>(key, &value).await {
                        Ok(()) => {
                            tally.acked.lock().unwrap().insert(key.clone(), value.clone());
                            match con.get::<_, Option<String>>(key).await {
                                Ok(Some(v)) if v == value => Ok(()),
                                Ok(other) => {
                                    tally.stale.fetch_add(1, Ordering::Relaxed);
                                    Err(format!("stale read of {key}: {other:?}, wrote {value}"))
                                }
                                Err(e) => Err(format!("GET {key}: {e}")),
                            }
                        }
                        Err(e) => Err(format!("SET {key}: {e}")),
                    };
                    tally.slowest_us.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    match outcome {
                        Ok(()) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tally.errors.record(e),
                    }
                    i += 1;
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn oks(tallies: &[Arc<Tally>]) -> Vec<u64> {
    tallies.iter().map(|t| t.ok.load(Ordering::Relaxed)).collect()
}

/// The `shard NAME ...` line of SLOTWAY TOPOLOGY.
fn shard_line(proxy: &Proxy, name: &str) -> String {
    let topology = proxy.cli(&["SLOTWAY", "TOPOLOGY"]);
    topology.lines().find(|l| l.starts_with(&format!("shard {name} "))).unwrap_or_default().to_string()
}

fn offset(pool: &Pool, port: u16, field: &str) -> i64 {
    pool.cli(port, &["INFO", "replication"])
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")).and_then(|v| v.parse().ok()))
        .unwrap_or(-1)
}

/// Checks after a failover of shard 1: nobody saw an error or a stale read, every acknowledged write is readable,
/// and the other shards kept serving during the failover (`during`: their successful rounds then).
async fn check_after(proxy: &Proxy, tallies: &[Arc<Tally>], during: &[u64]) {
    for (s, t) in tallies.iter().enumerate() {
        let (ok, errors, stale) = t.summary();
        println!("shard{}: {ok} SET+GET rounds ok, {errors} errors, {stale} stale, slowest {:?}", s + 1, t.slowest());
        assert!(ok > 100, "shard{} ran ({ok})", s + 1);
        assert_eq!(errors, 0, "shard{}: client-visible errors: {:?}", s + 1, t.errors.first());
        assert_eq!(stale, 0);
        check_acked(&proxy.addr, t).await;
    }
    for (s, &n) in during.iter().enumerate().skip(1) {
        assert!(n > 0, "shard{} was served while shard1 failed over ({during:?})", s + 1);
    }
}

/// A hand-made failover of one static shard (REPLICAOF, as an operator or a script does it) under load: zero
/// errors anywhere, and the other shards are served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_shard_fails_over_under_load_and_the_others_go_on() {
    let pool = Pool::start(PoolOpts { shards: 3, replicas: 1, tls: true, ..PoolOpts::default() });
    let proxy = Proxy::start_pool(&pool, &pool.default_toml(), &[]);
    let others_before = (shard_line(&proxy, "shard2"), shard_line(&proxy, "shard3"));
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<Tally>> = (0..3).map(|_| Arc::new(Tally::default())).collect();
    let load = tokio::spawn(run_shard_load(proxy.addr.clone(), 3, 7, stop.clone(), tallies.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (old, new) = (pool.shard(0)[0], pool.shard(0)[1]);
    let before = oks(&tallies);
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        assert_eq!(pool.cli(old, &["CLIENT", "PAUSE", "3000", "WRITE"]), "OK");
        let deadline = Instant::now() + Duration::from_secs(3);
        while offset(&pool, new, "slave_repl_offset") < offset(&pool, old, "master_repl_offset") {
            assert!(Instant::now() < deadline, "the replica never caught up");
            sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.cli(new, &["REPLICAOF", "NO", "ONE"]), "OK");
        sleep(Duration::from_millis(300));
        assert_eq!(pool.cli(old, &["REPLICAOF", "127.0.0.1", &new.to_string()]), "OK");
        assert_eq!(pool.cli(old, &["CLIENT", "UNPAUSE"]), "OK");
    });
    let switched = started.elapsed();
    let during: Vec<u64> = oks(&tallies).iter().zip(&before).map(|(a, b)| a - b).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    println!("shard1 failover {old} -> {new} in {switched:?}; rounds per shard meanwhile {during:?}");
    check_after(&proxy, &tallies, &during).await;
    assert!(
        shard_line(&proxy, "shard1").contains(&format!("primary 127.0.0.1:{new} ")),
        "{}",
        shard_line(&proxy, "shard1")
    );
    assert_eq!(
        (shard_line(&proxy, "shard2"), shard_line(&proxy, "shard3")),
        others_before,
        "the other shards unchanged"
    );
}

/// SENTINEL FAILOVER of one Sentinel-managed shard under load: zero errors anywhere, the other shard is served all
/// along and keeps its primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_shard_fails_over_under_load_and_the_other_goes_on() {
    let pool = Pool::start(PoolOpts { shards: 2, replicas: 1, sentinels: true, tls: true, ..PoolOpts::default() });
    let proxy = Proxy::start_pool(&pool, &pool.default_toml(), &[]);
    let other_before = shard_line(&proxy, "shard2");
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<Tally>> = (0..2).map(|_| Arc::new(Tally::default())).collect();
    let load = tokio::spawn(run_shard_load(proxy.addr.clone(), 2, 10, stop.clone(), tallies.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (old, new) = (pool.shard(0)[0], pool.shard(0)[1]);
    let before = oks(&tallies);
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        let s = pool.sentinel_ports[0];
        assert_eq!(pool.sentinel_cli(s, &["SENTINEL", "FAILOVER", "shard1"]).unwrap(), "OK");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let named = pool.sentinel_cli(s, &["SENTINEL", "get-master-addr-by-name", "shard1"]).unwrap_or_default();
            if named.ends_with(&new.to_string()) && pool.role(new).as_deref() == Some("master") {
                break;
            }
            assert!(Instant::now() < deadline, "no promotion of {new}: sentinel names {named}");
            sleep(Duration::from_millis(50));
        }
    });
    // Until slotway has followed.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !shard_line(&proxy, "shard1").contains(&format!("primary 127.0.0.1:{new} ")) {
        assert!(Instant::now() < deadline, "slotway never followed:\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched = started.elapsed();
    let during: Vec<u64> = oks(&tallies).iter().zip(&before).map(|(a, b)| a - b).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    println!(
        "shard1 sentinel failover {old} -> {new}, followed in {switched:?}; rounds per shard meanwhile {during:?}"
    );
    check_after(&proxy, &tallies, &during).await;
    assert_eq!(shard_line(&proxy, "shard2"), other_before, "the other shard unchanged");
}
