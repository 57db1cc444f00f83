//! Tests of the integration-test harness itself (tests/support): they need
//! redis-server/redis-cli/openssl, not a working slotway.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use redis::AsyncCommands;
use support::*;

#[test]
fn key_slot_matches_redis() {
    // Values from the Redis Cluster specification / CLUSTER KEYSLOT.
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"bar"), 5061);
    // CRC16/XMODEM check value of "123456789" is 0x31C3 (< 16384).
    assert_eq!(key_slot(b"123456789"), 0x31C3);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    // Empty hash tag: the whole key is hashed.
    assert_eq!(key_slot(b"foo{}{bar}"), crc16_whole(b"foo{}{bar}"));
}

fn crc16_whole(k: &[u8]) -> u16 {
    // Hash tag rules say "{}" means: hash the whole key.
    let mut crc: u16 = 0;
    for &b in k {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        let p = free_port();
        assert!(seen.insert(p), "port {p} handed out twice");
        std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port is bindable");
    }
    let p = free_cluster_port();
    assert!(p <= 55535);
    std::net::TcpListener::bind(("127.0.0.1", p + 10000)).expect("bus port is bindable");
}

/// Parses CLUSTER SLOTS into (start, end, primary port).
fn parse_cluster_slots(v: &redis::Value) -> Vec<(u16, u16, u16)> {
    let int = |v: &redis::Value| -> i64 {
        match v {
            redis::Value::Int(i) => *i,
            other => panic!("expected int, got {other:?}"),
        }
    };
    let arr = |v: &redis::Value| -> Vec<redis::Value> {
        match v {
            redis::Value::Array(a) => a.clone(),
            other => panic!("expected array, got {other:?}"),
        }
    };
    arr(v)
        .iter()
        .map(|range| {
            let r = arr(range);
            let primary = arr(&r[2]);
            (int(&r[0]) as u16, int(&r[1]) as u16, int(&primary[1]) as u16)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_auth_cluster_works() {
    let cluster = Cluster::start(ClusterOpts::default());
    assert!(cluster.tls);
    assert_eq!(cluster.ports.len(), 6);
    assert!(cluster.ca_path().exists());
    assert!(cluster.other_ca_path().exists());
    let (crt, key) = cluster.client_cert();
    assert!(crt.exists() && key.exists());

    let primaries = cluster.primaries();
    let replicas = cluster.replicas();
    assert_eq!(primaries.len(), 3, "primaries {primaries:?}");
    assert_eq!(replicas.len(), 3, "replicas {replicas:?}");
    for p in &primaries {
        assert_eq!(cluster.replicas_of(*p).len(), 1);
    }
    cluster.wait_healthy(Duration::from_secs(10));

    // AUTH is enforced: without the password a node refuses commands.
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(cluster.ca_path())
        .args(["-h", "127.0.0.1", "-p", &cluster.ports[0].to_string(), "GET", "x"])
        .env_remove("REDISCLI_AUTH")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOAUTH"), "expected NOAUTH, got {text:?}");

    // SET/GET through a cluster client on every shard.
    let mut con = cluster_client(&cluster).await;
    let keys = cluster.keys_on_every_primary("harness:");
    let owners: BTreeSet<u16> = keys.iter().map(|(p, _)| *p).collect();
    assert_eq!(owners.len(), 3);
    for (port, key) in &keys {
        let value = format!("value-of-{key}");
        let _: () = con.set(key, &value).await.unwrap();
        let got: String = con.get(key).await.unwrap();
        assert_eq!(got, value);
        // The key really lives on that primary (redis-cli does not follow MOVED here).
        assert_eq!(cluster.cli(*port, &["GET", key]), value);
        assert_eq!(cluster.node_for_key(key), *port);
        assert_eq!(cluster.cli(*port, &["CLUSTER", "KEYSLOT", key]), key_slot(key.as_bytes()).to_string());
    }

    // node_for_slot agrees with CLUSTER SLOTS.
    let mut node = node_client(&cluster, primaries[0]).await;
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut node).await.unwrap();
    let ranges = parse_cluster_slots(&slots);
    assert_eq!(ranges.iter().map(|r| (r.1 - r.0) as u32 + 1).sum::<u32>(), 16384);
    for &(start, end, port) in &ranges {
        let mid = start + (end - start) / 2;
        for slot in [start, mid, end] {
            assert_eq!(cluster.node_for_slot(slot), port, "slot {slot}");
        }
    }
}

#[test]
fn drop_stops_every_node_even_on_panic() {
    // Plain TCP, no AUTH, no replicas: also covers the non-TLS path.
    let opts = ClusterOpts { primaries: 3, replicas: 0, tls: false, password: None, ..ClusterOpts::default() };
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let cluster = Cluster::start(opts);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut con = cluster_client(&cluster).await;
            let _: () = con.set("plain-key", "v").await.unwrap();
            let v: String = con.get("plain-key").await.unwrap();
            assert_eq!(v, "v");
        });
        assert_eq!(cluster.primaries().len(), 3);
        assert!(cluster.replicas().is_empty());
        let pids = cluster.node_pids();
        assert_eq!(pids.len(), 3);
        tx.send((pids, cluster.dir.path().to_path_buf())).unwrap();
        panic!("deliberate panic with a running cluster");
    })
    .join();
    assert!(result.is_err(), "the thread should have panicked");
    let (pids, dir) = rx.recv().unwrap();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start().chars().next();
        assert!(
            stat.is_empty() || state == Some('Z'),
            "redis-server pid {pid} still running after Cluster was dropped: {stat}"
        );
    }
    assert!(!Path::new(&dir).exists(), "cluster temp dir {dir:?} not removed");
}

#[test]
fn one_primary_cluster_and_failover() {
    // Fewer than 3 primaries: the script wires the cluster by hand.
    let cluster = Cluster::start(ClusterOpts { primaries: 1, replicas: 1, ..ClusterOpts::default() });
    let primary = cluster.primaries();
    let replica = cluster.replicas();
    assert_eq!(primary.len(), 1);
    assert_eq!(replica.len(), 1);
    assert_eq!(cluster.node_for_slot(0), primary[0]);
    assert_eq!(cluster.node_for_slot(16383), primary[0]);

    cluster.failover(replica[0], None);
    assert_eq!(cluster.primaries(), replica);
    assert_eq!(cluster.replicas(), primary);
    assert_eq!(cluster.node_for_slot(100), replica[0]);
}

#[test]
fn slotway_binary_can_be_spawned() {
    // Only the spawn/log plumbing: `--help` exits by itself with any CLI parser.
    let (status, log) = Proxy::run_raw(&["--help".to_string()], &[], Duration::from_secs(20));
    let status = status.expect("slotway --help did not exit");
    assert!(status.success(), "slotway --help failed: {status}\n{log}");
}
