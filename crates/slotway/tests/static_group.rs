//! slotway in front of a static primary/replica set (`--server` for each node): slotway finds the primary itself
//! with ROLE. Real redis-server processes with TLS and AUTH (the group of `scripts/dev-sentinel.sh`; its sentinels
//! are not used here, and their failover timers are made long enough not to interfere).

mod support;
mod support_raw;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};
use support::*;
use support_raw::*;

/// A group whose sentinels never fail over on their own (the tests re-point the nodes by hand), and whose sentinels
/// can't undo the tests' changes quickly either.
fn quiet_group() -> Group {
    Group::start(GroupOpts { down_after_ms: 60_000, failover_timeout_ms: 180_000, ..GroupOpts::default() })
}

/// Stops the sentinels: with a static set nothing else should re-point the nodes.
fn stop_sentinels(group: &Group) {
    for &s in &group.sentinel_ports {
        let pidfile = group.dir.path().join("sentinels").join(s.to_string()).join("sentinel.pid");
        if let Ok(pid) = std::fs::read_to_string(pidfile) {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.trim()).status();
        }
    }
}

fn offset(group: &Group, port: u16, field: &str) -> i64 {
    group
        .cli(port, &["INFO", "replication"])
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")).and_then(|v| v.parse().ok()))
        .unwrap_or(-1)
}

#[test]
fn a_static_set_is_one_server_with_its_replicas() {
    let group = quiet_group();
    stop_sentinels(&group);
    let proxy = Proxy::start_static(&group, &["--read-from", "prefer-replica"]);
    let primary = group.ports[0];
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["MSET", "a", "1", "b", "2"]), ok());
    assert_eq!(group.cli(primary, &["WAIT", "2", "5000"]), "2");
    assert_eq!(raw.call(&["MGET", "a", "b"]), arr(vec![bulk("1"), bulk("2")]));
    assert_eq!(raw.call(&["SELECT", "5"]), ok());
    assert_eq!(raw.call(&["SET", "a", "five"]), ok());
    assert_eq!(group.cli(primary, &["-n", "5", "GET", "a"]), "five");
    assert_eq!(raw.call(&["SELECT", "0"]), ok());
    assert_eq!(raw.call(&["GET", "a"]), bulk("1"));
    let Reply::Array(Some(lines)) = raw.call(&["SLOTWAY", "TOPOLOGY"]) else { panic!() };
    let text = format!("{lines:?}");
    assert!(text.contains("group static static"), "{text}");
    assert!(text.contains(&format!("primary 127.0.0.1:{primary}")), "{text}");
    for r in &group.ports[1..] {
        assert!(text.contains(&format!("127.0.0.1:{r}")), "replica {r} listed: {text}");
    }
    assert_eq!(raw.call(&["ROLE"]), arr(vec![bulk("master"), int(0), arr(vec![])]));
}

/// A hand-made failover of a static set under load: the old primary's writes are paused, the replica catches up
/// and is promoted with `REPLICAOF NO ONE`, the other nodes are re-pointed to it. For a moment two nodes say
/// master: slotway then holds writes instead of picking one; no client notices anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_failover_with_replicaof_under_load_is_invisible() {
    let group = quiet_group();
    stop_sentinels(&group);
    let proxy = Proxy::start_static(&group, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = tokio::spawn(run_load(proxy.addr.clone(), 20, "st", stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (old, new, other) = (group.ports[0], group.ports[1], group.ports[2]);
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        // No write may be acknowledged by the old primary once the new one is promoted.
        assert_eq!(group.cli(old, &["CLIENT", "PAUSE", "3000", "WRITE"]), "OK");
        let deadline = Instant::now() + Duration::from_secs(3);
        while offset(&group, new, "slave_repl_offset") < offset(&group, old, "master_repl_offset") {
            assert!(Instant::now() < deadline, "the replica never caught up");
            sleep(Duration::from_millis(5));
        }
        assert_eq!(group.cli(new, &["REPLICAOF", "NO", "ONE"]), "OK");
        // Two masters now, for a moment: slotway must not write to either.
        sleep(Duration::from_millis(300));
        for p in [other, old] {
            assert_eq!(group.cli(p, &["REPLICAOF", "127.0.0.1", &new.to_string()]), "OK");
        }
        assert_eq!(group.cli(old, &["CLIENT", "UNPAUSE"]), "OK");
    });
    let switched = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (ok, errors, stale) = tally.summary();
    println!(
        "static failover {old} -> {new} in {switched:?}: {ok} SET+GET pairs ok, {errors} errors, {stale} stale; \
         slowest round {:?}",
        tally.slowest()
    );
    assert!(ok > 500, "the load ran ({ok})");
    assert_eq!(errors, 0, "client-visible errors: {:?}", tally.errors.first());
    assert_eq!(stale, 0);
    check_acked(&proxy.addr, &tally).await;
    let info = proxy.cli(&["INFO", "proxy"]);
    assert!(info.contains(&format!("group_primary:127.0.0.1:{new}")), "{info}");
}

/// Two nodes claiming to be the primary: writes wait (within the retry deadline), then fail with an error naming
/// both; `/health` says why. Once one of them is a replica again, writes go on.
#[test]
fn two_masters_hold_writes_then_fail_naming_both() {
    let group = quiet_group();
    stop_sentinels(&group);
    let config = group.dir.path().join("deadline.toml");
    std::fs::write(&config, "[cluster]\nretry_deadline_ms = 1500\n").unwrap();
    let metrics_port = free_port();
    let proxy = Proxy::start_static(
        &group,
        &["--config", &config.display().to_string(), "--metrics-listen", &format!("127.0.0.1:{metrics_port}")],
    );
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (a, b) = (group.ports[0], group.ports[1]);
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["SET", "k", "before"]), ok());
    assert_eq!(http(&metrics, "GET", "/health").0, 200);

    assert_eq!(group.cli(b, &["REPLICAOF", "NO", "ONE"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.cli(&["INFO", "proxy"]).contains("all claim to be the primary") {
        assert!(Instant::now() < deadline, "slotway never saw the conflict:\n{}", proxy.log());
        sleep(Duration::from_millis(50));
    }
    let (status, _, body) = http(&metrics, "GET", "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("all claim to be the primary"), "{body}");
    let started = Instant::now();
    let reply = raw.call(&["SET", "k", "during"]);
    let waited = started.elapsed();
    let Reply::Error(msg) = reply else { panic!("a write succeeded during the conflict: {reply:?}") };
    assert!(msg.contains(&format!("127.0.0.1:{a}")) && msg.contains(&format!("127.0.0.1:{b}")), "{msg}");
    assert!(waited >= Duration::from_millis(1000), "the write waited for the conflict to clear ({waited:?})");
    assert_eq!(group.cli(a, &["GET", "k"]), "before", "no write went to either node");
    assert_eq!(group.cli(b, &["GET", "k"]), "before");
    let (_, _, page) = http(&metrics, "GET", "/metrics");
    assert!(page.contains("slotway_group_primary{group=\"static\",kind=\"static\",addr=\"none\"} 0"), "{page}");

    assert_eq!(group.cli(b, &["REPLICAOF", "127.0.0.1", &a.to_string()]), "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match raw.call(&["SET", "k", "after"]) {
            r if r == ok() => break,
            r => assert!(Instant::now() < deadline, "writes never resumed: {r:?}"),
        }
    }
    assert_eq!(group.cli(a, &["GET", "k"]), "after");
    assert_eq!(http(&metrics, "GET", "/health").0, 200);
    let (_, _, page) = http(&metrics, "GET", "/metrics");
    assert!(
        page.contains(&format!("slotway_group_primary{{group=\"static\",kind=\"static\",addr=\"127.0.0.1:{a}\"}} 1")),
        "{page}"
    );
    assert!(page.contains("slotway_group_resolutions_periodic_total"), "{page}");
}
