//! Scripted mock nodes (support_mock) for failures a real server can't be made to show: a node that stalls, one
//! that sends garbage, one that closes in the middle of a reply, and one that reports a stale view of the cluster.
//! In each case only the requests for the bad node's slots fail, with an error that names it, and slotway keeps
//! serving the other shard, recovers on its own, and never routes by the stale view.

mod support;
mod support_mock;
mod support_raw;

use std::time::{Duration, Instant};
use support::*;
use support_mock::*;
use support_raw::*;

/// Retry deadline of these tests' slotway (short, so failures surface quickly).
const DEADLINE: Duration = Duration::from_millis(2000);

/// slotway in front of mock nodes, with short timeouts and a periodic refresh every `refresh_ms`.
fn proxy(seeds: &[&MockNode], refresh_ms: u64) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\nrefresh_interval_ms = {refresh_ms}\nretry_deadline_ms = {}\n\
             [upstream]\nconnect_timeout_ms = 500\nhealth_check_interval_ms = 200\nhealth_check_timeout_ms = 400\n",
            DEADLINE.as_millis()
        ),
    )
    .unwrap();
    let mut args = vec!["--config".to_string(), config.display().to_string(), "--workers".into(), "1".into()];
    for s in seeds {
        args.extend(["--cluster".to_string(), s.addr()]);
    }
    (Proxy::start_raw(&args, &[]), dir)
}

/// A key in slots 0-8191 (node `a` of `two_node_cluster`) and one in 8192-16383 (node `b`).
fn keys(prefix: &str) -> (String, String) {
    let find =
        |low: bool| (0..).map(|i| format!("{prefix}{i}")).find(|k| (key_slot(k.as_bytes()) < 8192) == low).unwrap();
    (find(true), find(false))
}

fn error_text(r: &Reply) -> String {
    match r {
        Reply::Error(e) => e.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// While the test body runs, a client keeps writing and reading `key` on the healthy shard; returns the number of
/// round trips and the slowest one. Any error or wrong value fails the test.
fn healthy_shard_load(
    addr: String,
    key: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, Duration)> {
    std::thread::spawn(move || {
        let mut raw = Raw::connect(&addr);
        let (mut n, mut slowest) = (0u64, Duration::ZERO);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            let v = format!("v{n}");
            assert_eq!(raw.call(&["SET", &key, &v]), ok(), "SET {key} on the healthy shard");
            assert_eq!(raw.call(&["GET", &key]), bulk(&v), "GET {key} on the healthy shard");
            slowest = slowest.max(t.elapsed());
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        (n, slowest)
    })
}

/// Polls `GET key` until it answers `want` (the bad node is back to normal and slotway reconnected).
fn wait_until_served(raw: &mut Raw, key: &str, want: Reply, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let r = raw.call(&["GET", key]);
        if r == want {
            return;
        }
        assert!(Instant::now() < deadline, "GET {key} still answers {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stalled_node_fails_only_its_slots_with_a_timeout_naming_it() {
    let (a, b) = two_node_cluster();
    // No periodic refresh during the idle check: its requests would make the connections busy.
    let (proxy, _dir) = proxy(&[&a, &b], 60_000);
    let (ka, kb) = keys("stall:");
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["SET", &kb, "before"]), ok());
    assert_eq!(raw.call(&["GET", &kb]), bulk("before"));

    // Idle connections are checked: with nothing to do, slotway PINGs the nodes every 200 ms.
    let pings = b.pings();
    std::thread::sleep(Duration::from_millis(900));
    assert!(b.pings() >= pings + 2, "idle health-check PINGs: {} -> {}", pings, b.pings());

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = healthy_shard_load(proxy.addr.clone(), ka.clone(), stop.clone());
    b.set_mode(Mode::Stall);
    let node = b.addr();

    // A read waits for the node, is retried, and fails at the retry deadline with an error that names the node.
    let t = Instant::now();
    let read = error_text(&raw.call(&["GET", &kb]));
    let read_took = t.elapsed();
    // A write can't be retried (it may have run): it fails as soon as the connection is found broken.
    let mut raw2 = Raw::connect(&proxy.addr);
    let t = Instant::now();
    let write = error_text(&raw2.call(&["SET", &kb, "during"]));
    let write_took = t.elapsed();
    println!("stalled node: GET failed after {read_took:?}: {read}\nSET failed after {write_took:?}: {write}");
    for (what, e, took) in [("GET", &read, read_took), ("SET", &write, write_took)] {
        assert!(e.starts_with("ERR slotway:") && e.contains(&node), "{what}: error doesn't name {node}: {e}");
        assert!(e.contains("no reply") || e.contains("timed out"), "{what}: not a timeout error: {e}");
        // Retry deadline + one health-check timeout (with its check granularity) + slack for a loaded machine.
        assert!(took < DEADLINE + Duration::from_millis(1500), "{what} took {took:?}");
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (n, slowest) = load.join().expect("the healthy shard kept answering");
    println!("healthy shard meanwhile: {n} SET+GET, slowest {slowest:?}");
    assert!(n > 20, "only {n} round trips on the healthy shard");
    assert!(slowest < Duration::from_millis(500), "the healthy shard waited {slowest:?}");
    assert!(proxy_info(&mut raw, "health_check_failures") >= 1);
    assert!(proxy_info(&mut raw, "refresh_requests_health_check") >= 1);

    // The node wakes up: slotway reconnects on its own.
    b.set_mode(Mode::Normal);
    wait_until_served(&mut raw, &kb, bulk("before"), Duration::from_secs(10));
    assert!(b.connections() >= 3, "slotway reconnected ({} connections)", b.connections());
}

#[test]
fn garbage_from_a_node_drops_the_connection_with_a_clear_error() {
    let (a, b) = two_node_cluster();
    let (mut proxy, _dir) = proxy(&[&a, &b], 300);
    let (ka, kb) = keys("garbage:");
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["SET", &kb, "before"]), ok());
    let connections = b.connections();

    b.set_mode(Mode::Garbage);
    let node = b.addr();
    let write = error_text(&raw.call(&["SET", &kb, "x"]));
    assert!(write.contains(&format!("connection to {node} lost")) && write.contains("protocol error"), "SET: {write}");
    assert!(write.contains("may or may not have been applied"), "SET: {write}");
    let t = Instant::now();
    let read = error_text(&raw.call(&["GET", &kb]));
    println!("garbage: SET -> {write}\nGET after {:?} -> {read}", t.elapsed());
    assert!(read.contains(&node) && read.contains("protocol error"), "GET: {read}");
    // The other shard is untouched; slotway is alive.
    assert_eq!(raw.call(&["SET", &ka, "fine"]), ok());
    assert_eq!(raw.call(&["GET", &ka]), bulk("fine"));
    assert!(proxy.child.try_wait().unwrap().is_none(), "slotway exited");

    b.set_mode(Mode::Normal);
    wait_until_served(&mut raw, &kb, bulk("before"), Duration::from_secs(10));
    assert!(b.connections() > connections, "slotway reconnected");
}

#[test]
fn node_closing_mid_reply_is_a_lost_connection() {
    let (a, b) = two_node_cluster();
    let (mut proxy, _dir) = proxy(&[&a, &b], 300);
    let (ka, kb) = keys("close:");
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["SET", &kb, "before"]), ok());
    let connections = b.connections();

    b.set_mode(Mode::CloseMidReply);
    let node = b.addr();
    let write = error_text(&raw.call(&["SET", &kb, "x"]));
    assert!(write.contains(&format!("connection to {node} lost: connection closed by the node")), "SET: {write}");
    let read = error_text(&raw.call(&["GET", &kb]));
    assert!(read.contains(&node), "GET: {read}");
    println!("closed mid-reply: SET -> {write}\nGET -> {read}");
    assert_eq!(raw.call(&["SET", &ka, "fine"]), ok());
    assert!(proxy.child.try_wait().unwrap().is_none(), "slotway exited");

    b.set_mode(Mode::Normal);
    // The SET that got half a reply did run on the node (the mock applies it, as a real node may have).
    wait_until_served(&mut raw, &kb, bulk("x"), Duration::from_secs(10));
    assert!(b.connections() > connections + 1, "slotway reconnected after each close");
}

#[test]
fn a_node_with_a_stale_view_cannot_roll_the_map_back() {
    // `fresh` took over every slot at epoch 5; `stale` missed it and still says it owns them at epoch 3 (what a
    // node on the minority side of a partition reports).
    let (fresh, stale) = (MockNode::start(), MockNode::start());
    fresh.set_view(vec![MockShard {
        primary: fresh.port,
        replicas: vec![stale.port],
        slots: vec![(0, 16383)],
        epoch: 5,
    }]);
    stale.set_view(vec![MockShard {
        primary: stale.port,
        replicas: vec![fresh.port],
        slots: vec![(0, 16383)],
        epoch: 3,
    }]);
    // The stale node answers first, and is the first seed.
    fresh.delay_topology(Duration::from_millis(60));
    let (proxy, _dir) = proxy(&[&stale, &fresh], 300);
    let mut raw = Raw::connect(&proxy.addr);

    let write_all = |raw: &mut Raw, tag: &str| {
        for i in 0..20 {
            let k = format!("{tag}:{i}");
            assert_eq!(raw.call(&["SET", &k, tag]), ok());
            assert_eq!(fresh.get(&k).as_deref(), Some(tag), "{k} was not written on the node with the newest view");
            assert_eq!(stale.get(&k), None, "{k} was written on the stale node");
        }
    };
    write_all(&mut raw, "discovered");
    // Several periodic refreshes, each answered first by the stale node.
    std::thread::sleep(Duration::from_millis(1200));
    write_all(&mut raw, "refreshed");
    assert_eq!(proxy_info(&mut raw, "topology_stale_views"), 0, "the newer view was in every refresh");

    // Now only the stale node tells its view: slotway keeps the map it has.
    fresh.refuse_topology(true);
    std::thread::sleep(Duration::from_millis(1500));
    write_all(&mut raw, "alone");
    let ignored = proxy_info(&mut raw, "topology_stale_views");
    assert!(ignored >= 2, "stale views ignored: {ignored}");
    assert_eq!(proxy_info(&mut raw, "topology_changes"), 0);
    assert!(proxy.log().contains("ignoring an older view of the cluster"), "{}", proxy.log());
}
