//! Nodes joining and leaving while clients run through slotway: a fourth primary is added, given slots, emptied
//! and removed; a SIGKILLed primary comes back and rejoins as a replica. Clients see no errors they didn't cause,
//! and slotway follows the cluster on its own (new node used, removed node dropped, restarted node read from).

mod support;

use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// A slotway config that refreshes every second (so the tests wait less for the periodic refresh).
fn config(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("slotway.toml");
    std::fs::write(&path, "[cluster]\nrefresh_interval_ms = 1000\n").unwrap();
    path.display().to_string()
}

#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    errors: ErrorLog,
}

impl Tally {
    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}

async fn connect(addr: &str) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    // Requests that arrive during an outage wait for the promotion: the client must not give up first.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    client.get_multiplexed_async_connection_with_config(&config).await.unwrap()
}

/// `clients` clients, each SETting keys of its own (spread over all slots) and GETting them right back.
fn write_load(
    addr: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (addr, stop, tally) = (addr.to_string(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut con = connect(&addr).await;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 500_000 {
                    let (key, value) = (format!("cc:{c}:{}", i % 400), format!("{c}-{i}"));
                    let set: redis::RedisResult<()> =
                        redis::cmd("SET").arg(&key).arg(&value).query_async(&mut con).await;
                    match set {
                        Ok(()) => {
                            let got: redis::RedisResult<Option<String>> =
                                redis::cmd("GET").arg(&key).query_async(&mut con).await;
                            match got {
                                Ok(Some(v)) if v == value => {}
                                other => tally.errors.record(format!("GET {key} after SET {value}: {other:?}")),
                            }
                        }
                        Err(e) => tally.errors.record(format!("SET {key}: {e}")),
                    }
                    tally.ops.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect()
}

async fn stop_load(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(40), t).await.expect("client stuck").expect("client panicked");
    }
}

/// `calls` of `cmdstat_<cmd>` in the node's INFO commandstats.
fn calls(cluster: &Cluster, port: u16, cmd: &str) -> u64 {
    let text = cluster.cli(port, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{cmd}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// Connections to the node other than the redis-cli asking (slotway's, if any).
fn other_clients(cluster: &Cluster, port: u16) -> Vec<String> {
    cluster
        .cli(port, &["CLIENT", "LIST"])
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        // Another node's cached MIGRATE connection (kept up to 10 s after a reshard), not slotway's.
        .filter(|l| !l.contains("cmd=restore-asking"))
        .map(str::to_string)
        .collect()
}

fn stat(cluster: &Cluster, port: u16, name: &str) -> u64 {
    let text = cluster.cli(port, &["INFO", "stats"]);
    let prefix = format!("{name}:");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).expect("INFO stats field").trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fourth_primary_added_resharded_and_removed_under_load() {
    let t0 = Instant::now();
    let mut cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&cluster, &["--config", &config(&dir)]);
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let load = write_load(&proxy.addr, 8, &stop, &tally);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // A fourth primary joins and takes 512 slots (the lowest of slot 0's owner: 0-511).
    let owner = cluster.node_for_slot(0);
    let new = tokio::task::block_in_place(|| cluster.add_node());
    let t_add = Instant::now();
    tokio::task::block_in_place(|| cluster.reshard(owner, new, 512));
    eprintln!("added {new} and moved 512 slots to it in {:.1}s", t_add.elapsed().as_secs_f64());
    assert_eq!(cluster.node_for_slot(0), new);
    // slotway follows the migration slot by slot (MOVED, refreshes), logging what moved each time, and ends with
    // the new node serving the whole range.
    proxy.wait_for_log(&format!("-> 127.0.0.1:{new}"), Duration::from_secs(15));
    proxy.wait_for_log(&format!("shard primary=127.0.0.1:{new} replicas=[] slots=0-511"), Duration::from_secs(15));
    // Served by the new node (it holds ~3% of the slots): keys in its slots are written and read there.
    // Polled rather than a fixed second: on a loaded 2-core machine the 8 writers may manage only a few hundred SETs
    // a second, of which the new node's ~3% is a handful.
    let sets_before = tokio::task::block_in_place(|| calls(&cluster, new, "set"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sets_after = sets_before;
    while sets_after <= sets_before + 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        sets_after = tokio::task::block_in_place(|| calls(&cluster, new, "set"));
    }
    assert!(sets_after > sets_before + 10, "the new node gets little traffic: {sets_before} -> {sets_after} SETs");
    let mut direct = node_client(&cluster, new).await;
    let mut con = proxy.client().await;
    let key = cluster.key_on_node(new, "cc:new:");
    let () = redis::cmd("SET").arg(&key).arg("on-the-new-node").query_async(&mut con).await.unwrap();
    let got: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut direct).await.unwrap();
    assert_eq!(got.as_deref(), Some("on-the-new-node"));
    drop(direct);

    // Emptied again and removed.
    tokio::task::block_in_place(|| cluster.reshard(new, owner, 512));
    assert_eq!(cluster.node_for_slot(0), owner);
    tokio::task::block_in_place(|| cluster.del_node(new));
    proxy.wait_for_log(&format!("127.0.0.1:{new} (primary) left"), Duration::from_secs(15));
    // slotway dropped it from its pool: its connections close...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = tokio::task::block_in_place(|| other_clients(&cluster, new));
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "slotway still has connections to the removed node:\n{}", left.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and it doesn't come back (several periodic refreshes and health-check intervals later).
    let before = tokio::task::block_in_place(|| stat(&cluster, new, "total_connections_received"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = tokio::task::block_in_place(|| stat(&cluster, new, "total_connections_received"));
    assert_eq!(after, before + 1, "connections to the removed node besides our own redis-cli");

    stop_load(&stop, load).await;
    eprintln!(
        "{} SET+GET under load, {} errors; total {:.1}s",
        tally.ops(),
        tally.errors.count(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(tally.errors.count(), 0, "client-visible errors: {:?}", tally.errors.first());
    assert!(tally.ops() > 1000, "the load ran ({})", tally.ops());
    let got: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap();
    assert_eq!(got.as_deref(), Some("on-the-new-node"), "the key moved back with its slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_restarted_rejoins_as_a_replica_and_is_read_from() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let writer = Proxy::start(&cluster, &["--config", &cfg]);
    let reader = Proxy::start(&cluster, &["--config", &cfg, "--read-from", "prefer-replica"]);

    let mut con = writer.client().await;
    for i in 0..300 {
        let () = redis::cmd("SET").arg(format!("rj:{i}")).arg(format!("v{i}")).query_async(&mut con).await.unwrap();
    }
    let (stop, writes, reads) =
        (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()), Arc::new(Tally::default()));
    let mut load = write_load(&writer.addr, 8, &stop, &writes);
    for c in 0..6u64 {
        let (addr, stop, tally) = (reader.addr.clone(), stop.clone(), reads.clone());
        load.push(tokio::spawn(async move {
            let mut con = connect(&addr).await;
            let mut i = c * 37;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("rj:{}", i % 300);
                let got: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query_async(&mut con).await;
                match got {
                    Ok(Some(v)) if v == format!("v{}", i % 300) => {}
                    other => tally.errors.record(format!("GET {key} through prefer-replica: {other:?}")),
                }
                tally.ops.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (victim, replica, killed) = cluster.kill_a_primary_until_promoted().await;
    let promoted = Instant::now();
    // The promotion window: slotway's next refresh (at most a second) plus slack for a loaded machine.
    let window_end = promoted + Duration::from_secs(3);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The killed node comes back with its nodes.conf: it learns it lost its slots and follows the new primary.
    tokio::task::block_in_place(|| {
        cluster.restart_node(victim);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.replicas().contains(&victim) {
            assert!(Instant::now() < deadline, "{victim} did not rejoin as a replica:\n{}", cluster.status());
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster.cli(victim, &["CONFIG", "RESETSTAT"]);
    });
    let rejoined = killed.elapsed();
    // slotway notices: reads under prefer-replica go to it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gets = tokio::task::block_in_place(|| calls(&cluster, victim, "get"));
        if gets > 20 {
            break;
        }
        assert!(Instant::now() < deadline, "no reads reach the rejoined replica {victim} ({gets} GETs)");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Writes keep going to the new primary.
    let sets = tokio::task::block_in_place(|| calls(&cluster, replica, "set"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tokio::task::block_in_place(|| calls(&cluster, replica, "set")) > sets, "no writes reach {replica}");
    stop_load(&stop, load).await;

    let late: Vec<String> = {
        let times = writes.errors.times();
        times.iter().filter(|t| **t > window_end).map(|t| format!("{:?} after the kill", *t - killed)).collect()
    };
    eprintln!(
        "SIGKILL + restart: promoted after {:?}, rejoined after {rejoined:?}; writes {} ok, {} errors; \
         prefer-replica reads {} ok, {} errors; first write errors {:?}",
        promoted - killed,
        writes.ops(),
        writes.errors.count(),
        reads.ops(),
        reads.errors.count(),
        writes.errors.first()
    );
    assert_eq!(reads.errors.count(), 0, "prefer-replica reads failed: {:?}", reads.errors.first());
    assert!(late.is_empty(), "write errors after the promotion window: {late:?}: {:?}", writes.errors.first());
    // Only writes in flight on the dead node's connections may fail (their fate is unknown).
    assert!(writes.errors.count() <= 40, "{} write errors", writes.errors.count());
    assert!(writes.ops() > 1000 && reads.ops() > 1000, "the load ran");
}

/// `SLOTWAY TOPOLOGY` shows the slot map in use and `SLOTWAY REFRESH` makes slotway notice a change at once, with
/// no periodic refresh due and no traffic to hit a MOVED.
#[test]
fn admin_refresh_picks_up_a_failover_at_once() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slotway.toml");
    std::fs::write(&path, "[cluster]\nrefresh_interval_ms = 600000\n").unwrap();
    let proxy = Proxy::start(&cluster, &["--config", path.to_str().unwrap()]);

    let topology = proxy.cli(&["SLOTWAY", "TOPOLOGY"]);
    let shard_lines: Vec<&str> = topology.lines().filter(|l| l.starts_with("slots ")).collect();
    assert_eq!(shard_lines.len(), 3, "{topology}");
    for primary in cluster.primaries() {
        let replicas = cluster.replicas_of(primary);
        let line = format!("primary 127.0.0.1:{primary} replicas 127.0.0.1:{}", replicas[0]);
        assert!(shard_lines.iter().any(|l| l.ends_with(&line)), "{line} in\n{topology}");
    }
    assert!(topology.contains("slots 0-5460 "), "{topology}");

    // A failover slotway isn't told about: the map in use still names the old primary.
    let old_primary = cluster.primaries()[0];
    let promoted = cluster.replicas_of(old_primary)[0];
    cluster.failover(promoted, None);
    let topology = proxy.cli(&["SLOTWAY", "TOPOLOGY"]);
    assert!(topology.contains(&format!("primary 127.0.0.1:{old_primary} ")), "{topology}");

    assert_eq!(proxy.cli(&["SLOTWAY", "REFRESH"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let topology = proxy.cli(&["SLOTWAY", "TOPOLOGY"]);
        if topology.contains(&format!("primary 127.0.0.1:{promoted} ")) {
            break;
        }
        assert!(Instant::now() < deadline, "no refresh 5 s after SLOTWAY REFRESH:\n{topology}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(proxy.cli(&["INFO", "proxy"]).contains("refresh_requests_admin:1"));

    // Bad forms get Redis's wording.
    assert_eq!(proxy.cli(&["SLOTWAY", "NOPE"]), "ERR unknown subcommand 'NOPE'. Try SLOTWAY HELP.");
    assert_eq!(
        proxy.cli(&["SLOTWAY", "REFRESH", "now"]),
        "ERR wrong number of arguments for 'slotway|refresh' command"
    );
    assert_eq!(proxy.cli(&["SLOTWAY"]), "ERR wrong number of arguments for 'slotway' command");
    assert!(proxy.cli(&["SLOTWAY", "HELP"]).contains("REFRESH"));
}
