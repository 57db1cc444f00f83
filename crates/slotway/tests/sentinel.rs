//! slotway in front of a Sentinel-managed group (`--sentinel ... --sentinel-master mymaster`): real redis-server and
//! redis-sentinel processes (1 primary, 2 replicas, 3 sentinels; TLS and AUTH on the nodes and on the sentinels,
//! with separate passwords), driven through slotway by real clients.

mod support;
mod support_raw;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};
use support::*;
use support_raw::*;

/// Everything a standalone server offers, through one endpoint: no slots, so any keys go together.
#[test]
fn a_sentinel_group_is_one_standalone_server() {
    let group = Group::start(GroupOpts::default());
    let proxy = Proxy::start_sentinel(&group, &[]);
    let primary = group.ports[0];
    let mut raw = Raw::connect(&proxy.addr);

    // 10,000 keys written and read, pipelined 1,000 at a time; then read back with MGET over 1,000 keys each.
    for chunk in (0..10_000).collect::<Vec<u32>>().chunks(1000) {
        let cmds: Vec<Vec<String>> =
            chunk.iter().map(|i| vec!["SET".into(), format!("k:{i}"), format!("v{i}")]).collect();
        let refs: Vec<Vec<&str>> = cmds.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
        let refs: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
        assert!(raw.pipeline(&refs).iter().all(|r| *r == ok()));
        let mut mget = vec!["MGET".to_string()];
        mget.extend(chunk.iter().map(|i| format!("k:{i}")));
        let args: Vec<&str> = mget.iter().map(String::as_str).collect();
        let want: Vec<Reply> = chunk.iter().map(|i| bulk(&format!("v{i}"))).collect();
        assert_eq!(raw.call(&args), arr(want));
    }
    assert_eq!(raw.call(&["DBSIZE"]), int(10_000));
    assert_eq!(group.cli(primary, &["DBSIZE"]), "10000", "every key is on the one primary");
    // Plain keys of many slots in one command, as on one server: MSET, MGET, DEL, EXISTS, no CROSSSLOT.
    assert_eq!(raw.call(&["MSET", "a", "1", "b", "2", "c", "3"]), ok());
    assert_eq!(raw.call(&["MGET", "a", "b", "c", "nope"]), arr(vec![bulk("1"), bulk("2"), bulk("3"), nil()]));
    assert_eq!(raw.call(&["EXISTS", "a", "b", "c", "nope"]), int(3));
    assert_eq!(raw.call(&["DEL", "a", "b", "c", "nope"]), int(3));
    assert_eq!(raw.call(&["RENAME", "k:1", "k:renamed"]), ok(), "two keys of different slots");

    // MULTI/EXEC and WATCH over several keys.
    assert_eq!(raw.call(&["WATCH", "t:x", "t:y"]), ok());
    assert_eq!(raw.call(&["MULTI"]), ok());
    assert_eq!(raw.call(&["SET", "t:x", "1"]), queued());
    assert_eq!(raw.call(&["INCRBY", "t:y", "5"]), queued());
    assert_eq!(raw.call(&["LPUSH", "t:z", "e"]), queued());
    assert_eq!(raw.call(&["EXEC"]), arr(vec![ok(), int(5), int(1)]));

    // SELECT 3: its own keyspace, on connections that selected it; database 0 doesn't see it.
    let mut db3 = Raw::connect(&proxy.addr);
    assert_eq!(db3.call(&["SELECT", "3"]), ok());
    assert_eq!(db3.call(&["SET", "iso", "in-3"]), ok());
    assert_eq!(db3.call(&["GET", "iso"]), bulk("in-3"));
    assert_eq!(db3.call(&["DBSIZE"]), int(1));
    let Reply::Bulk(Some(me)) = db3.call(&["CLIENT", "INFO"]) else { panic!() };
    assert!(String::from_utf8_lossy(&me).contains(" db=3 "), "{}", String::from_utf8_lossy(&me));
    assert_eq!(raw.call(&["GET", "iso"]), nil(), "database 0 doesn't see database 3's key");
    assert_eq!(raw.call(&["SET", "iso", "in-0"]), ok());
    assert_eq!(db3.call(&["GET", "iso"]), bulk("in-3"));
    assert_eq!(group.cli(primary, &["-n", "3", "GET", "iso"]), "in-3");
    // Transactions and blocking commands in database 3 too; MOVE between databases.
    assert_eq!(db3.call(&["MULTI"]), ok());
    assert_eq!(db3.call(&["INCR", "ctr"]), queued());
    assert_eq!(db3.call(&["EXEC"]), arr(vec![int(1)]));
    assert_eq!(db3.call(&["RPUSH", "q3", "x"]), int(1));
    assert_eq!(db3.call(&["BLPOP", "q3", "1"]), arr(vec![bulk("q3"), bulk("x")]));
    assert_eq!(db3.call(&["MOVE", "ctr", "0"]), int(1));
    assert_eq!(raw.call(&["GET", "ctr"]), bulk("1"));
    assert_eq!(db3.call(&["SELECT", "16"]), err("ERR DB index is out of range"));
    assert_eq!(db3.call(&["SELECT", "0"]), ok());
    assert_eq!(db3.call(&["GET", "iso"]), bulk("in-0"));

    // EVAL over two keys (and EVALSHA, and a function-free script cache).
    let script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], 2)";
    assert_eq!(raw.call(&["EVAL", script, "2", "e:one", "e:two", "hello"]), int(2));
    assert_eq!(raw.call(&["GET", "e:one"]), bulk("hello"));

    // SCAN walks the one primary with its own cursor; KEYS too.
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let Reply::Array(Some(items)) = raw.call(&["SCAN", &cursor, "MATCH", "k:*", "COUNT", "1000"]) else { panic!() };
        let Reply::Bulk(Some(c)) = &items[0] else { panic!() };
        cursor = String::from_utf8(c.clone()).unwrap();
        let Reply::Array(Some(keys)) = &items[1] else { panic!() };
        seen.extend(keys.iter().map(|k| format!("{k:?}")));
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 10_000);
    let Reply::Array(Some(keys)) = raw.call(&["KEYS", "t:*"]) else { panic!() };
    assert_eq!(keys.len(), 3);

    // Pub/sub: PUBLISH answers the real number of subscribers.
    let mut s1 = Raw::connect(&proxy.addr);
    let mut s2 = Raw::connect(&proxy.addr);
    assert_eq!(s1.call(&["SUBSCRIBE", "news"]), arr(vec![bulk("subscribe"), bulk("news"), int(1)]));
    assert_eq!(s2.call(&["PSUBSCRIBE", "ne*"]), arr(vec![bulk("psubscribe"), bulk("ne*"), int(1)]));
    assert_eq!(raw.call(&["PUBLISH", "news", "hi"]), int(2));
    assert_eq!(s1.read_reply(), arr(vec![bulk("message"), bulk("news"), bulk("hi")]));
    assert_eq!(s2.read_reply(), arr(vec![bulk("pmessage"), bulk("ne*"), bulk("news"), bulk("hi")]));
    assert_eq!(raw.call(&["PUBSUB", "NUMSUB", "news"]), arr(vec![bulk("news"), int(1)]));

    // BLPOP woken by another client.
    let addr = proxy.addr.clone();
    let waiter = std::thread::spawn(move || Raw::connect(&addr).call(&["BLPOP", "jobs", "10"]));
    sleep(Duration::from_millis(300));
    assert_eq!(raw.call(&["RPUSH", "jobs", "job-1"]), int(1));
    assert_eq!(waiter.join().unwrap(), arr(vec![bulk("jobs"), bulk("job-1")]));

    // A client configured for Sentinel can use slotway as its sentinel; ROLE and INFO say master.
    assert_eq!(raw.call(&["ROLE"]), arr(vec![bulk("master"), int(0), arr(vec![])]));
    let at = arr(vec![bulk("127.0.0.1"), bulk(&proxy.port.to_string())]);
    assert_eq!(raw.call(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME]), at);
    assert_eq!(raw.call(&["SENTINEL", "get-master-addr-by-name", "other"]), Reply::Array(None));
    assert_eq!(raw.call(&["SENTINEL", "replicas", MASTER_NAME]), arr(vec![]));
    assert_eq!(raw.call(&["SENTINEL", "master", "other"]), err("ERR No such master with that name"));
    let Reply::Bulk(Some(info)) = raw.call(&["INFO", "replication"]) else { panic!() };
    assert!(String::from_utf8_lossy(&info).contains("role:master"));

    // The group as operators see it.
    let Reply::Array(Some(lines)) = raw.call(&["SLOTWAY", "TOPOLOGY"]) else { panic!() };
    let text = format!("{lines:?}");
    assert!(text.contains(&format!("primary 127.0.0.1:{primary} (verified with ROLE")), "{text}");
    assert!(text.contains("group sentinel mymaster"), "{text}");
    let info = proxy.cli(&["INFO", "proxy"]);
    assert!(info.contains(&format!("group_primary:127.0.0.1:{primary}")), "{info}");
    assert!(info.contains("group_kind:sentinel"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_load_is_invisible() {
    let group = Group::start(GroupOpts::default());
    let proxy = Proxy::start_sentinel(&group, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = tokio::spawn(run_load(proxy.addr.clone(), 20, "fo", stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let (old, new) = tokio::task::block_in_place(|| group.sentinel_failover());
    let promoted = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (ok, errors, stale) = tally.summary();
    println!(
        "SENTINEL FAILOVER {old} -> {new} (promoted after {promoted:?}): {ok} SET+GET pairs ok, {errors} errors, \
         {stale} stale; slowest round {:?}",
        tally.slowest()
    );
    assert!(ok > 500, "the load ran ({ok})");
    assert_eq!(errors, 0, "client-visible errors: {:?}", tally.errors.first());
    assert_eq!(stale, 0);
    check_acked(&proxy.addr, &tally).await;
    let info = proxy.cli(&["INFO", "proxy"]);
    assert!(info.contains(&format!("group_primary:127.0.0.1:{new}")), "{info}");
    assert!(info_value(&info, "group_primary_changes") > 0, "{info}");
    assert!(info_value(&info, "group_fences") > 0, "the failover event fenced the old primary: {info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_under_load_errors_only_for_writes_in_flight() {
    let group = Group::start(GroupOpts::default());
    let proxy = Proxy::start_sentinel(&group, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = tokio::spawn(run_load(proxy.addr.clone(), 20, "kill", stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = group.ports[0];
    let killed = Instant::now();
    tokio::task::block_in_place(|| group.kill_node(old));
    let new = tokio::task::block_in_place(|| group.wait_promoted(old, Duration::from_secs(30)));
    let promoted = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (ok, errors, stale) = tally.summary();
    let (_, window) = tally.outage();
    println!(
        "SIGKILL of the primary {old}: promotion of {new} after {promoted:?}; {ok} ok, {errors} client-visible errors \
         over {window:?}; slowest round {:?} (requests held until the promotion); first: {:?}",
        tally.slowest(),
        tally.errors.first()
    );
    assert_eq!(stale, 0);
    // Only writes in flight on the dead connection may fail (their fate is unknown): one per client at most.
    assert!(errors <= 20, "{errors} errors: {:?}", tally.errors.first());
    for e in tally.errors.first() {
        assert!(e.contains("may or may not have been applied"), "not a lost in-flight write: {e}");
    }
    assert_eq!(tally.readonly.load(Ordering::Relaxed), 0);
    check_acked(&proxy.addr, &tally).await;
}

/// camellia#400: the old primary restarts at once as a (stale, empty) master; Sentinel demotes it only seconds later.
/// A stale sentinel, listed first, still names it. slotway verifies: no client gets READONLY, nothing is written to
/// the old primary while it says master, and every acknowledged write is there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_restarted_as_a_stale_master_gets_no_writes() {
    let group = Group::start(GroupOpts::default());
    let old = group.ports[0];
    let stale = tokio::task::block_in_place(|| group.start_stale_sentinel(old));
    let mut args = vec!["--sentinel".to_string(), format!("127.0.0.1:{stale}")];
    args.extend(group.sentinel_args());
    let proxy = Proxy::start_raw(&args, &group.env());
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = tokio::spawn(run_load(proxy.addr.clone(), 20, "camellia", stop.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    tokio::task::block_in_place(|| {
        group.kill_node(old);
        let new = group.wait_promoted(old, Duration::from_secs(30));
        group.restart_node(old);
        println!("old primary {old} restarted as {:?}; new primary {new}", group.role(old));
    });
    // While the old primary still says master, nothing may reach it (it came back empty: no persistence).
    let mut checked = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // ROLE before and after the reads: once demoted, the node resyncs and runs the new primary's writes, so only
        // a node that said master on both sides of the reads proves anything (it never goes back to master).
        let (before, keys, sets, after) = tokio::task::block_in_place(|| {
            (group.role(old), group.cli(old, &["DBSIZE"]), group.calls(old, "set"), group.role(old))
        });
        if before.as_deref() != Some("master") || after.as_deref() != Some("master") {
            break;
        }
        assert_eq!((keys.as_str(), sets), ("0", 0), "a write reached the stale master {old}");
        checked += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("the stale master was checked {checked} times before Sentinel demoted it");
    assert!(checked > 0, "the old primary never came back as a master");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (ok, errors, stale_reads) = tally.summary();
    println!("{ok} ok, {errors} errors (writes in flight when it died), {stale_reads} stale");
    assert_eq!(tally.readonly.load(Ordering::Relaxed), 0, "READONLY reached a client: {:?}", tally.errors.first());
    assert_eq!(stale_reads, 0);
    assert!(errors <= 20, "{:?}", tally.errors.first());
    check_acked(&proxy.addr, &tally).await;
}

/// `--read-from replica`: reads are served by the replicas, writes by the primary. With prefer-replica and
/// `read_your_writes`, a client's reads right after its own write go to the primary.
#[test]
fn reads_go_to_the_replicas_and_writes_to_the_primary() {
    let group = Group::start(GroupOpts::default());
    let primary = group.ports[0];
    let replicas = &group.ports[1..];
    let proxy = Proxy::start_sentinel(&group, &["--read-from", "replica"]);
    let mut raw = Raw::connect(&proxy.addr);
    for i in 0..100 {
        assert_eq!(raw.call(&["SET", &format!("r:{i}"), "v"]), ok());
    }
    // Replication is asynchronous: let the replicas catch up before reading from them.
    assert_eq!(group.cli(primary, &["WAIT", "2", "5000"]), "2");
    let before_primary = group.calls(primary, "get");
    let before: Vec<u64> = replicas.iter().map(|&r| group.calls(r, "get")).collect();
    for i in 0..200 {
        assert_eq!(raw.call(&["GET", &format!("r:{}", i % 100)]), bulk("v"));
    }
    let served: Vec<u64> = replicas.iter().zip(&before).map(|(&r, b)| group.calls(r, "get") - b).collect();
    assert_eq!(served.iter().sum::<u64>(), 200, "every GET went to a replica: {served:?}");
    assert!(served.iter().all(|&n| n > 0), "both replicas serve reads: {served:?}");
    assert_eq!(group.calls(primary, "get"), before_primary, "no GET reached the primary");
    assert!(group.calls(primary, "set") >= 100);
    // (Replicas run the primary's SETs through replication; a client's SET sent to one would be refused.)
    assert!(replicas.iter().all(|&r| !group.refused_readonly(r)), "a write was sent to a replica");
    drop(raw);
    drop(proxy);

    let proxy = Proxy::start_raw(
        &[
            group.sentinel_args(),
            vec!["--read-from".into(), "prefer-replica".into(), "--config".into(), ryw_config(&group)],
        ]
        .concat(),
        &group.env(),
    );
    let mut writer = Raw::connect(&proxy.addr);
    let mut reader = Raw::connect(&proxy.addr);
    let primary_before = group.calls(primary, "get");
    for i in 0..50 {
        assert_eq!(writer.call(&["SET", "ryw", &i.to_string()]), ok());
        assert_eq!(writer.call(&["GET", "ryw"]), bulk(&i.to_string()), "read your own write");
    }
    let after_writes = group.calls(primary, "get");
    assert_eq!(after_writes - primary_before, 50, "reads after the client's own writes go to the primary");
    for _ in 0..50 {
        assert!(matches!(reader.call(&["GET", "r:1"]), Reply::Bulk(_)));
    }
    assert_eq!(group.calls(primary, "get"), after_writes, "a client that hasn't written reads from replicas");
}

/// A counter of `INFO proxy`.
fn info_value(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// A config file turning on read-your-writes (the rest comes from flags).
fn ryw_config(group: &Group) -> String {
    let path = group.dir.path().join("ryw.toml");
    std::fs::write(&path, "[client]\nread_your_writes = true\nread_your_writes_window_ms = 60000\n").unwrap();
    path.display().to_string()
}

/// A sentinel that is down is skipped; one that names a replica is caught by ROLE and skipped; a wrong sentinel
/// password and an unknown master name stop slotway at start with the cause.
#[test]
fn sentinel_trouble_is_handled() {
    let group = Group::start(GroupOpts::default());
    let replica = group.ports[1];
    let stale = group.start_stale_sentinel(replica);
    let down = free_port();
    // Listed first: the dead one, then the stale one (same config epoch as the others: it is tried first).
    let mut args =
        vec!["--sentinel".to_string(), format!("127.0.0.1:{down}"), "--sentinel".into(), format!("127.0.0.1:{stale}")];
    args.extend(group.sentinel_args());
    let proxy = Proxy::start_raw(&args, &group.env());
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["SET", "trouble", "1"]), ok(), "writes reach the real primary");
    assert_eq!(group.cli(group.ports[0], &["GET", "trouble"]), "1");
    let info = proxy.cli(&["INFO", "proxy"]);
    assert!(info.contains(&format!("group_primary:127.0.0.1:{}", group.ports[0])), "{info}");
    // Its default down-after is 30 s, so it reports the replica as a healthy master: ROLE is what catches it.
    assert!(info_value(&info, "group_role_mismatches") > 0, "the stale sentinel's answer was verified: {info}");
    assert!(proxy.log().contains("a sentinel names a primary that is not one"), "{}", proxy.log());
    // The stale sentinel's candidate was refused by ROLE (or seen down): no write was ever sent to it.
    assert!(!group.refused_readonly(replica), "a write was sent to the replica the stale sentinel names");

    // Wrong sentinel password: exit code != 0, and the log says why.
    let env = [("SLOTWAY_UPSTREAM_PASSWORD", TEST_PASSWORD), ("SLOTWAY_SENTINEL_PASSWORD", "wrong")];
    let (status, log) = Proxy::run_raw(&group.sentinel_args(), &env, Duration::from_secs(20));
    let status = status.expect("slotway exits");
    assert!(!status.success(), "{log}");
    assert!(log.contains("authentication failed") && log.contains("sentinel"), "{log}");

    // A master name no sentinel monitors.
    let mut args = group.sentinel_args();
    let i = args.iter().position(|a| a == "--sentinel-master").unwrap();
    args[i + 1] = "nosuchmaster".into();
    let (status, log) = Proxy::run_raw(&args, &group.env(), Duration::from_secs(20));
    assert!(!status.expect("slotway exits").success(), "{log}");
    assert!(log.contains("does not monitor a master named 'nosuchmaster'"), "{log}");

    // No sentinel reachable at all.
    let args =
        vec!["--sentinel".to_string(), format!("127.0.0.1:{down}"), "--sentinel-master".into(), MASTER_NAME.into()];
    let (status, log) = Proxy::run_raw(&args, &group.env(), Duration::from_secs(20));
    assert!(!status.expect("slotway exits").success(), "{log}");
    assert!(log.contains(&format!("sentinel 127.0.0.1:{down}")), "{log}");
}

/// redis-py's `Sentinel` client pointed at slotway as its sentinel: it asks slotway for the master, gets slotway's
/// own address, and runs SET/GET through slotway.
#[test]
fn redis_py_sentinel_client_uses_slotway_as_its_sentinel() {
    let Some(python) = python_with_redis("redis_py_sentinel_client_uses_slotway_as_its_sentinel") else { return };
    let group = Group::start(GroupOpts::default());
    let proxy = Proxy::start_sentinel(&group, &[]);
    let script = format!(
        r#"
import redis
from redis.sentinel import Sentinel
s = Sentinel([("127.0.0.1", {port})], socket_timeout=5)
assert s.discover_master("{name}") == ("127.0.0.1", {port}), s.discover_master("{name}")
m = s.master_for("{name}", socket_timeout=5)
m.set("py-sentinel", "hello")
assert m.get("py-sentinel") == b"hello"
assert m.incr("py-counter") == 1
print("ok sentinel client")
"#,
        port = proxy.port,
        name = MASTER_NAME
    );
    let out = std::process::Command::new("timeout").arg("60").arg(&python).arg("-c").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n--- slotway ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    assert!(stdout.contains("ok sentinel client"));
    assert_eq!(
        group.cli(group.ports[0], &["GET", "py-sentinel"]),
        "hello",
        "the write went through slotway to the primary"
    );
}

/// The interpreter with redis-py (`$SLOTWAY_PYTHON`, else python3), or None (skipped) when it has none, unless
/// `SLOTWAY_REQUIRE_PYTHON=1` (CI), which makes that a failure.
fn python_with_redis(test: &str) -> Option<String> {
    let python = std::env::var("SLOTWAY_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import redis.sentinel"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(python);
    }
    if std::env::var("SLOTWAY_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("SLOTWAY_REQUIRE_PYTHON=1 but {python} cannot import redis");
    }
    eprintln!("SKIPPED {test}: {python} cannot import redis (pip install redis, or set SLOTWAY_PYTHON)");
    None
}
