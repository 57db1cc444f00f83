//! Blocking commands through slotway (BLPOP, BLMOVE, BRPOPLPUSH, XREAD BLOCK, WAIT, ...) on dedicated
//! connections, against a real TLS+AUTH cluster: woken by other clients, timeouts honoured, the shared pipelined
//! connections never stalled, connections of clients killed while blocked closed, a full pool refused clearly.

mod support;
mod support_raw;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use support_raw::*;

/// One hash tag per primary: `(port, tag)`, keys `{tag}:x` live on that primary.
fn tags(cluster: &Cluster) -> Vec<(u16, String)> {
    cluster.keys_on_every_primary("bl")
}

/// Client connections a node sees (CLIENT LIST lines; includes the redis-cli asking).
fn node_clients(cluster: &Cluster, port: u16) -> usize {
    cluster.cli(port, &["CLIENT", "LIST"]).lines().count()
}

/// Clients blocked on a node (INFO clients: blocked_clients).
fn node_blocked(cluster: &Cluster, port: u16) -> usize {
    let info = cluster.cli(port, &["INFO", "clients"]);
    info.lines().find_map(|l| l.strip_prefix("blocked_clients:")).unwrap().trim().parse().unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blpop_is_woken_while_fifty_clients_pipeline_gets() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let tags = tags(&cluster);
    let mut setup = Raw::connect(&proxy.addr);
    let get_keys: Vec<String> = tags.iter().map(|(_, t)| format!("{{{t}}}:g")).collect();
    for k in &get_keys {
        assert_eq!(setup.call(&["SET", k, "v"]), ok());
    }

    // 50 clients running pipelined GETs on every shard without pause, recording their slowest round.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for i in 0..50 {
        let (stop, addr, keys) = (stop.clone(), proxy.addr.clone(), get_keys.clone());
        loaders.push(std::thread::spawn(move || {
            let mut c = Raw::connect(&addr);
            let cmds: Vec<Vec<&str>> = (0..16).map(|j| vec!["GET", keys[(i + j) % keys.len()].as_str()]).collect();
            let cmds: Vec<&[&str]> = cmds.iter().map(|v| v.as_slice()).collect();
            let (mut rounds, mut slowest) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let got = c.pipeline(&cmds);
                slowest = slowest.max(t.elapsed());
                assert!(got.iter().all(|r| *r == bulk("v")), "{got:?}");
                rounds += 1;
            }
            (rounds, slowest)
        }));
    }

    // One BLPOP per shard, each woken by another client's LPUSH after 2 s.
    let wait = Duration::from_secs(2);
    let mut blockers = Vec::new();
    for (_, tag) in &tags {
        let (addr, list) = (proxy.addr.clone(), format!("{{{tag}}}:queue"));
        blockers.push(std::thread::spawn(move || {
            let mut c = Raw::connect(&addr);
            let t = Instant::now();
            let got = c.call(&["BLPOP", &list, "0"]);
            (got, t.elapsed(), list)
        }));
    }
    std::thread::sleep(wait);
    let mut pusher = Raw::connect(&proxy.addr);
    for (port, tag) in &tags {
        wait_until("the BLPOP to block on its node", Duration::from_secs(5), || node_blocked(&cluster, *port) == 1);
        assert_eq!(pusher.call(&["LPUSH", &format!("{{{tag}}}:queue"), "job"]), int(1));
    }
    for b in blockers {
        let (got, took, list) = b.join().unwrap();
        assert_eq!(got, arr(vec![bulk(&list), bulk("job")]));
        assert!(took >= wait, "BLPOP returned after {took:?}, before anything was pushed");
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for l in loaders {
        let (rounds, slowest) = l.join().unwrap();
        total += rounds;
        assert!(
            slowest < Duration::from_millis(1000),
            "a pipelined GET round took {slowest:?} while BLPOPs were blocked (the blocked wait was {wait:?})"
        );
    }
    assert!(total > 50, "the loaders made progress: {total} rounds");
    // The blocked commands' connections went back to their node's lot.
    assert!(proxy_info(&mut setup, "dedicated_open") <= 3 * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_timeouts_order_and_connection_lifecycle() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &["--workers", "1", "--max-dedicated-per-node", "3"]);
    let tags = tags(&cluster);
    let mut raw = Raw::connect(&proxy.addr);

    for (port, tag) in &tags {
        // A timeout is honoured by the node: nil after about that long.
        let empty = format!("{{{tag}}}:empty");
        let t = Instant::now();
        assert_eq!(raw.call(&["BLPOP", &empty, "0.5"]), Reply::Array(None), "node {port}");
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "BLPOP 0.5 took {took:?}");
        let t = Instant::now();
        assert_eq!(raw.call(&["BZPOPMIN", &empty, "0.3"]), Reply::Array(None));
        assert!(t.elapsed() >= Duration::from_millis(250));

        // Data already there: served at once. BRPOPLPUSH / BLMOVE with both keys in one slot.
        let (src, dst) = (format!("{{{tag}}}:src"), format!("{{{tag}}}:dst"));
        assert_eq!(raw.call(&["RPUSH", &src, "a", "b", "c"]), int(3));
        assert_eq!(raw.call(&["BRPOPLPUSH", &src, &dst, "1"]), bulk("c"));
        assert_eq!(raw.call(&["BLMOVE", &src, &dst, "LEFT", "RIGHT", "1"]), bulk("a"));
        assert_eq!(raw.call(&["LRANGE", &dst, "0", "-1"]), arr(vec![bulk("c"), bulk("a")]));
        assert_eq!(raw.call(&["BLMPOP", "1", "2", &empty, &src, "LEFT"]), arr(vec![bulk(&src), arr(vec![bulk("b")])]));
        let z = format!("{{{tag}}}:z");
        assert_eq!(raw.call(&["ZADD", &z, "1", "m1", "2", "m2"]), int(2));
        assert_eq!(raw.call(&["BZPOPMAX", &z, "1"]), arr(vec![bulk(&z), bulk("m2"), bulk("2")]));
        assert_eq!(
            raw.call(&["BZMPOP", "1", "1", &z, "MIN"]),
            arr(vec![bulk(&z), arr(vec![arr(vec![bulk("m1"), bulk("1")])])])
        );

        // BLMOVE on an empty list, woken by another client.
        let mut other = Raw::connect(&proxy.addr);
        raw.send(&c(&["BLMOVE", &src, &dst, "RIGHT", "LEFT", "5"]));
        wait_until("BLMOVE to block", Duration::from_secs(5), || node_blocked(&cluster, *port) == 1);
        assert_eq!(other.call(&["RPUSH", &src, "woken"]), int(1));
        assert_eq!(raw.read_reply(), bulk("woken"));
        assert_eq!(raw.call(&["LINDEX", &dst, "0"]), bulk("woken"));

        // XREAD BLOCK woken by XADD.
        let stream = format!("{{{tag}}}:stream");
        raw.send(&c(&["XREAD", "BLOCK", "5000", "STREAMS", &stream, "$"]));
        wait_until("XREAD to block", Duration::from_secs(5), || node_blocked(&cluster, *port) == 1);
        let id = match other.call(&["XADD", &stream, "*", "f", "v"]) {
            Reply::Bulk(Some(id)) => String::from_utf8(id).unwrap(),
            r => panic!("XADD: {r:?}"),
        };
        assert_eq!(
            raw.read_reply(),
            arr(vec![arr(vec![bulk(&stream), arr(vec![arr(vec![bulk(&id), arr(vec![bulk("f"), bulk("v")])])])])])
        );
        // XREAD without BLOCK stays an ordinary command.
        assert!(matches!(raw.call(&["XREAD", "STREAMS", &stream, "0"]), Reply::Array(Some(_))));
    }

    // Keys in different slots: CROSSSLOT, as Redis Cluster answers.
    let (a, b) = (format!("{{{}}}:l", tags[0].1), format!("{{{}}}:l", tags[1].1));
    assert_eq!(raw.call(&["BLPOP", &a, &b, "1"]), err("CROSSSLOT Keys in request don't hash to the same slot"));
    assert_eq!(
        raw.call(&["BLMOVE", &a, &b, "LEFT", "LEFT", "1"]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );

    // Commands pipelined around a blocking command run in order, as on one Redis connection.
    let (port, tag) = &tags[0];
    let (l, k) = (format!("{{{tag}}}:ordered"), format!("{{{}}}:plain", tags[1].1));
    let got = raw.pipeline(&[
        &["SET", &l, "string"],
        &["BLPOP", &l, "1"],
        &["DEL", &l],
        &["LPUSH", &l, "x"],
        &["BLPOP", &l, "1"],
        &["LLEN", &l],
        &["SET", &k, "after"],
        &["GET", &k],
    ]);
    assert!(matches!(&got[1], Reply::Error(e) if e.starts_with("WRONGTYPE")), "{got:?}");
    assert_eq!(got[2..], [int(1), int(1), arr(vec![bulk(&l), bulk("x")]), int(0), ok(), bulk("after")]);
    // A command after a blocked one waits for it.
    raw.send_all(&[&["BLPOP", &l, "0"], &["GET", &k]]);
    wait_until("BLPOP to block", Duration::from_secs(5), || node_blocked(&cluster, *port) == 1);
    let mut other = Raw::connect(&proxy.addr);
    assert_eq!(other.call(&["RPUSH", &l, "late"]), int(1));
    assert_eq!(raw.read_reply(), arr(vec![bulk(&l), bulk("late")]));
    assert_eq!(raw.read_reply(), bulk("after"));

    // WAIT goes to the node of the client's last write (one replica per primary here) and counts the replicas
    // that have that write.
    assert_eq!(raw.call(&["SET", &k, "replicated"]), ok());
    assert_eq!(raw.call(&["WAIT", "1", "5000"]), int(1));
    let replica = cluster.replicas_of(cluster.node_for_key(&k))[0];
    cluster.pause_node(replica);
    assert_eq!(raw.call(&["SET", &k, "not yet replicated"]), ok());
    let t = Instant::now();
    let got = raw.call(&["WAIT", "1", "700"]);
    let took = t.elapsed();
    cluster.resume_node(replica);
    assert_eq!(got, int(0), "the paused replica can't have acknowledged the write");
    assert!(took >= Duration::from_millis(650), "WAIT's timeout is honoured: {took:?}");
    assert_eq!(raw.call(&["WAIT", "1", "5000"]), int(1), "the resumed replica catches up");
    assert_eq!(raw.call(&["GET", &k]), bulk("not yet replicated"));

    // A client killed while blocked: its dedicated connection is closed, the node forgets the blocked client,
    // and a later push is not lost to it.
    let (port, tag) = &tags[2];
    let list = format!("{{{tag}}}:abandoned");
    let mut victim = Raw::connect(&proxy.addr);
    victim.send(&c(&["BLPOP", &list, "0"]));
    wait_until("the victim to block", Duration::from_secs(5), || node_blocked(&cluster, *port) == 1);
    let during = node_clients(&cluster, *port);
    drop(victim);
    wait_until("the blocked connection to close", Duration::from_secs(5), || {
        node_blocked(&cluster, *port) == 0 && node_clients(&cluster, *port) == during - 1
    });
    assert_eq!(raw.call(&["RPUSH", &list, "kept"]), int(1));
    assert_eq!(raw.call(&["LLEN", &list]), int(1), "the push was not taken by the dead client's BLPOP");

    // Pool exhaustion: 3 dedicated connections per node on the one worker; a 4th blocked client is refused.
    let list = format!("{{{tag}}}:crowded");
    let mut blocked: Vec<Raw> = (0..3).map(|_| Raw::connect(&proxy.addr)).collect();
    for b in &mut blocked {
        b.send(&c(&["BLPOP", &list, "0"]));
    }
    wait_until("three clients to block", Duration::from_secs(5), || node_blocked(&cluster, *port) == 3);
    let mut fourth = Raw::connect(&proxy.addr);
    match fourth.call(&["BLPOP", &list, "0"]) {
        Reply::Error(e) => {
            assert!(e.starts_with("ERR slotway: no free dedicated connection to 127.0.0.1:"), "{e}");
            assert!(e.contains("max_dedicated_per_node"), "{e}");
        }
        r => panic!("expected a clear error, got {r:?}"),
    }
    // So is a transaction needing one; ordinary commands still work.
    let k = format!("{{{tag}}}:txn");
    let got = fourth.pipeline(&[&["MULTI"], &["SET", &k, "1"], &["EXEC"], &["GET", &list]]);
    assert!(matches!(&got[1], Reply::Error(e) if e.contains("no free dedicated connection")), "{got:?}");
    assert_eq!(got[2], err("EXECABORT Transaction discarded because of previous errors."));
    assert_eq!(got[3], nil());
    // Freeing one lets the next through.
    assert_eq!(raw.call(&["RPUSH", &list, "one"]), int(1));
    let served = blocked.iter_mut().position(|b| {
        b.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut byte = [0u8; 1];
        b.s.peek(&mut byte).is_ok()
    });
    assert!(served.is_some(), "one blocked client was served");
    wait_until("two left blocked", Duration::from_secs(5), || node_blocked(&cluster, *port) == 2);
    assert_eq!(fourth.call(&["BLPOP", &list, "0.2"]), Reply::Array(None));
    assert!(proxy_info(&mut raw, "dedicated_exhausted") >= 2);
}
