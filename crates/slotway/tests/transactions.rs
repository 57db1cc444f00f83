//! Transactions through slotway (MULTI / EXEC / DISCARD / WATCH / UNWATCH on dedicated connections) against a
//! real TLS+AUTH cluster: atomic application on every shard, Redis's own replies and errors, WATCH conflicts,
//! CROSSSLOT while queueing, and bounded upstream connections.

mod support;
mod support_raw;

use redis::AsyncCommands;
use std::time::{Duration, Instant};
use support::*;
use support_raw::*;

/// One hash tag per primary: `(port, tag)`, keys `{tag}:x` live on that primary.
fn tags(cluster: &Cluster) -> Vec<(u16, String)> {
    cluster.keys_on_every_primary("tx").into_iter().collect()
}

/// Client connections a node sees (CLIENT LIST lines; includes the redis-cli asking).
fn node_clients(cluster: &Cluster, port: u16) -> usize {
    cluster.cli(port, &["CLIENT", "LIST"]).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_follow_redis_semantics_on_every_shard() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut direct = cluster_client(&cluster).await;
    let tags = tags(&cluster);
    assert_eq!(tags.len(), 3);
    let mut raw = Raw::connect(&proxy.addr);

    // MULTI/EXEC on each shard, one command at a time: +QUEUED from the node, values applied together.
    for (port, tag) in &tags {
        let (a, b, l) = (format!("{{{tag}}}:a"), format!("{{{tag}}}:b"), format!("{{{tag}}}:l"));
        assert_eq!(raw.call(&["MULTI"]), ok());
        assert_eq!(raw.call(&["SET", &a, "1"]), queued());
        assert_eq!(raw.call(&["INCRBY", &b, "5"]), queued());
        assert_eq!(raw.call(&["PING"]), queued(), "keyless commands are queued on the transaction's node");
        assert_eq!(raw.call(&["RPUSH", &l, "x", "y"]), queued());
        assert_eq!(raw.call(&["GET", &a]), queued());
        let got = raw.call(&["EXEC"]);
        assert_eq!(got, arr(vec![ok(), int(5), simple("PONG"), int(2), bulk("1")]), "shard {port}");
        let v: String = direct.get(&a).await.unwrap();
        assert_eq!(v, "1");
        let v: i64 = direct.get(&b).await.unwrap();
        assert_eq!(v, 5);
        let v: Vec<String> = direct.lrange(&l, 0, -1).await.unwrap();
        assert_eq!(v, ["x", "y"]);
    }

    // The same as one pipeline (MULTI ... EXEC in one write), after and before ordinary commands.
    let (_, tag) = &tags[1];
    let k = format!("{{{tag}}}:counter");
    let got = raw.pipeline(&[&["SET", &k, "10"], &["MULTI"], &["INCR", &k], &["INCR", &k], &["EXEC"], &["GET", &k]]);
    assert_eq!(got, vec![ok(), ok(), queued(), queued(), arr(vec![int(11), int(12)]), bulk("12")]);

    // The redis crate's atomic pipeline.
    let (_, tag) = &tags[2];
    let (x, y) = (format!("{{{tag}}}:x"), format!("{{{tag}}}:y"));
    let mut con = proxy.client().await;
    let (vx, vy): (i64, i64) =
        redis::pipe().atomic().incr(&x, 1).incr(&y, 2).query_async(&mut con).await.expect("atomic pipeline");
    assert_eq!((vx, vy), (1, 2));

    // Keyless commands before the first keyed one are answered by slotway and replayed on the node.
    let (_, tag) = &tags[0];
    let k = format!("{{{tag}}}:late");
    let got = raw.pipeline(&[&["MULTI"], &["PING"], &["ECHO", "hi"], &["SET", &k, "v"], &["EXEC"]]);
    assert_eq!(got, vec![ok(), queued(), queued(), queued(), arr(vec![simple("PONG"), bulk("hi"), ok()])]);
    // No keyed command at all: any primary runs it. An empty transaction is an empty array.
    assert_eq!(raw.pipeline(&[&["MULTI"], &["PING"], &["EXEC"]]), vec![ok(), queued(), arr(vec![simple("PONG")])]);
    assert_eq!(raw.pipeline(&[&["MULTI"], &["EXEC"]]), vec![ok(), arr(vec![])]);

    // Redis's own errors.
    assert_eq!(raw.call(&["EXEC"]), err("ERR EXEC without MULTI"));
    assert_eq!(raw.call(&["DISCARD"]), err("ERR DISCARD without MULTI"));
    let k = format!("{{{tag}}}:nested");
    let got = raw.pipeline(&[&["MULTI"], &["MULTI"], &["WATCH", &k], &["SET", &k, "1"], &["EXEC"]]);
    assert_eq!(
        got,
        vec![
            ok(),
            err("ERR MULTI calls can not be nested"),
            err("ERR WATCH inside MULTI is not allowed"),
            queued(),
            arr(vec![ok()]),
        ],
        "as in Redis, these errors don't abort the transaction"
    );

    // DISCARD: nothing applied.
    let k = format!("{{{tag}}}:discarded");
    let got = raw.pipeline(&[&["MULTI"], &["SET", &k, "1"], &["DISCARD"], &["EXISTS", &k]]);
    assert_eq!(got, vec![ok(), queued(), ok(), int(0)]);
    assert_eq!(raw.pipeline(&[&["MULTI"], &["DISCARD"]]), vec![ok(), ok()]);

    // CROSSSLOT while queueing: the command is refused, EXEC aborts, nothing is applied on any shard.
    let (k1, k2) = (format!("{{{}}}:cs", tags[0].1), format!("{{{}}}:cs", tags[1].1));
    let got = raw.pipeline(&[&["MULTI"], &["SET", &k1, "1"], &["SET", &k2, "2"], &["INCR", &k1], &["EXEC"]]);
    assert_eq!(
        got,
        vec![
            ok(),
            queued(),
            err("CROSSSLOT Keys in request don't hash to the same slot"),
            queued(),
            err("EXECABORT Transaction discarded because of previous errors."),
        ]
    );
    let n: i64 = redis::cmd("EXISTS").arg(&k1).arg(&k2).query_async(&mut direct).await.unwrap();
    assert_eq!(n, 0, "an aborted transaction applies nothing");
    // Same-slot keys of one command, but another slot than the transaction's: refused too.
    let got = raw.pipeline(&[&["MULTI"], &["SET", &k2, "2"], &["MGET", &k1, &k1], &["EXEC"]]);
    assert_eq!(got[2], err("CROSSSLOT Keys in request don't hash to the same slot"));
    assert_eq!(got[3], err("EXECABORT Transaction discarded because of previous errors."));
    // A command slotway refuses while queueing, and one the node refuses: EXECABORT as well.
    for bad in [&["SUBSCRIBE", "ch"][..], &["CLIENT", "LIST"], &["NOSUCHCMD"], &["GET"]] {
        let got = raw.pipeline(&[&["MULTI"], &["SET", &k1, "1"], bad, &["EXEC"]]);
        assert!(matches!(&got[2], Reply::Error(_)), "{bad:?}: {got:?}");
        assert_eq!(got[3], err("EXECABORT Transaction discarded because of previous errors."), "{bad:?}");
    }
    let wrong_type_at_exec = raw.pipeline(&[&["MULTI"], &["SET", &k1, "s"], &["LPUSH", &k1, "x"], &["EXEC"]]);
    match &wrong_type_at_exec[3] {
        Reply::Array(Some(items)) => {
            assert_eq!(items[0], ok());
            assert!(matches!(&items[1], Reply::Error(e) if e.starts_with("WRONGTYPE")), "{items:?}");
        }
        other => panic!("runtime errors are part of EXEC's reply, as in Redis: {other:?}"),
    }
    let n: i64 = redis::cmd("EXISTS").arg(&k2).query_async(&mut direct).await.unwrap();
    assert_eq!(n, 0);

    // WATCH: a change by another client between WATCH and EXEC makes EXEC return nil and apply nothing.
    for (_, tag) in &tags {
        let (w, other) = (format!("{{{tag}}}:watched"), format!("{{{tag}}}:other"));
        let mut other_client = Raw::connect(&proxy.addr);
        assert_eq!(other_client.call(&["SET", &w, "0"]), ok());
        assert_eq!(raw.call(&["WATCH", &w]), ok());
        assert_eq!(raw.call(&["GET", &w]), bulk("0"));
        assert_eq!(other_client.call(&["SET", &w, "changed"]), ok());
        let got = raw.pipeline(&[&["MULTI"], &["SET", &w, "mine"], &["SET", &other, "x"], &["EXEC"]]);
        assert_eq!(got, vec![ok(), queued(), queued(), Reply::Array(None)]);
        assert_eq!(raw.call(&["GET", &w]), bulk("changed"));
        assert_eq!(raw.call(&["EXISTS", &other]), int(0), "nothing of a failed WATCH transaction is applied");
        // Without a conflict it goes through; WATCH of several keys of one slot.
        assert_eq!(raw.call(&["WATCH", &w, &other]), ok());
        let got = raw.pipeline(&[&["MULTI"], &["SET", &w, "mine"], &["EXEC"]]);
        assert_eq!(got, vec![ok(), queued(), arr(vec![ok()])]);
        assert_eq!(raw.call(&["GET", &w]), bulk("mine"));
        // UNWATCH forgets the watch; a later change doesn't matter.
        assert_eq!(raw.call(&["WATCH", &w]), ok());
        assert_eq!(raw.call(&["UNWATCH"]), ok());
        assert_eq!(other_client.call(&["SET", &w, "again"]), ok());
        let got = raw.pipeline(&[&["MULTI"], &["SET", &w, "last"], &["EXEC"]]);
        assert_eq!(got, vec![ok(), queued(), arr(vec![ok()])]);
    }
    // WATCHed keys and the transaction's keys must share a slot.
    let (w1, w2) = (format!("{{{}}}:w", tags[0].1), format!("{{{}}}:w", tags[1].1));
    assert_eq!(raw.call(&["WATCH", &w1, &w2]), err("CROSSSLOT Keys in request don't hash to the same slot"));
    assert_eq!(raw.call(&["WATCH", &w1]), ok());
    assert_eq!(raw.call(&["WATCH", &w2]), err("CROSSSLOT Keys in request don't hash to the same slot"));
    let got = raw.pipeline(&[&["MULTI"], &["SET", &w2, "1"], &["EXEC"]]);
    assert_eq!(got[1], err("CROSSSLOT Keys in request don't hash to the same slot"));
    assert_eq!(got[2], err("EXECABORT Transaction discarded because of previous errors."));

    // Blocking commands inside MULTI don't block (as in Redis) and run on the transaction's node.
    let l = format!("{{{}}}:emptylist", tags[0].1);
    let started = Instant::now();
    let got = raw.pipeline(&[&["MULTI"], &["BLPOP", &l, "0"], &["EXEC"]]);
    assert_eq!(got, vec![ok(), queued(), arr(vec![Reply::Array(None)])]);
    assert!(started.elapsed() < Duration::from_secs(2));

    // RESET ends a transaction.
    let k = format!("{{{}}}:reset", tags[0].1);
    let got = raw.pipeline(&[&["MULTI"], &["SET", &k, "1"], &["RESET"], &["EXEC"], &["EXISTS", &k]]);
    assert_eq!(got, vec![ok(), queued(), simple("RESET"), err("ERR EXEC without MULTI"), int(0)]);

    // The connection is still an ordinary one afterwards.
    assert_eq!(raw.call(&["PING"]), simple("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_reuse_a_bounded_number_of_connections() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &["--workers", "2"]);
    let tags = tags(&cluster);
    let mut probe = Raw::connect(&proxy.addr);
    // Warm up: every shared connection open.
    for (_, tag) in &tags {
        assert_eq!(probe.call(&["SET", &format!("{{{tag}}}:warm"), "1"]), ok());
    }
    let before: Vec<usize> = tags.iter().map(|(p, _)| node_clients(&cluster, *p)).collect();

    // 500 transactions in a row from one client, over every shard, with and without WATCH.
    let mut raw = Raw::connect(&proxy.addr);
    for i in 0..500 {
        let (_, tag) = &tags[i % tags.len()];
        let k = format!("{{{tag}}}:n");
        if i % 2 == 0 {
            assert_eq!(raw.call(&["WATCH", &k]), ok());
        }
        let got = raw.pipeline(&[&["MULTI"], &["INCR", &k], &["EXEC"]]);
        assert!(matches!(&got[2], Reply::Array(Some(v)) if v.len() == 1), "{i}: {got:?}");
    }
    let open = proxy_info(&mut probe, "dedicated_open");
    assert!(open <= 2 * 3, "at most one idle dedicated connection per node and worker is kept, got {open}");
    for ((port, _), b) in tags.iter().zip(&before) {
        let now = node_clients(&cluster, *port);
        assert!(now <= b + 2, "node {port}: {b} client connections before, {now} after 500 transactions");
    }
    // Many clients in transactions at once: each gets its own connection while in one, and they are reused.
    let mut clients: Vec<Raw> = (0..20).map(|_| Raw::connect(&proxy.addr)).collect();
    let (port, tag) = &tags[0];
    let k = format!("{{{tag}}}:shared");
    for c in &mut clients {
        assert_eq!(c.call(&["WATCH", &k]), ok());
    }
    assert!(node_clients(&cluster, *port) >= before[0] + 20);
    for c in &mut clients {
        let got = c.pipeline(&[&["MULTI"], &["INCR", &k], &["EXEC"]]);
        assert_eq!(got.len(), 3);
    }
    let total: i64 = match probe.call(&["GET", &k]) {
        Reply::Bulk(Some(v)) => String::from_utf8(v).unwrap().parse().unwrap(),
        other => panic!("{other:?}"),
    };
    assert!((1..=20).contains(&total), "WATCH made some of them fail, at least one applied: {total}");
    drop(clients);

    // A client that disconnects mid-transaction: its connection is closed, nothing is applied.
    let k = format!("{{{tag}}}:half");
    let mut quitter = Raw::connect(&proxy.addr);
    assert_eq!(quitter.pipeline(&[&["MULTI"], &["SET", &k, "1"]]), vec![ok(), queued()]);
    let during = node_clients(&cluster, *port);
    drop(quitter);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = node_clients(&cluster, *port);
        if now < during {
            break;
        }
        assert!(Instant::now() < deadline, "the half-open transaction's connection was not closed ({now})");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(probe.call(&["EXISTS", &k]), int(0));
    assert_eq!(probe.call(&["SET", &k, "after"]), ok());
}

fn node_id(cluster: &Cluster, port: u16) -> String {
    cluster.cluster_nodes(port).into_iter().find(|n| n.is_myself()).expect("myself in CLUSTER NODES").id
}

/// Gives the (empty) slot of `tag`, owned by `src`, to `dst` on every primary, behind slotway's back (as
/// redis-cli does: importing on the destination, then the destination takes it, then everybody is told).
fn move_empty_slot(cluster: &Cluster, tag: &str, src: u16, dst: u16) {
    let slot = key_slot(tag.as_bytes()).to_string();
    let dst_id = node_id(cluster, dst);
    let r = cluster.cli(dst, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &node_id(cluster, src)]);
    assert_eq!(r, "OK", "SETSLOT {slot} IMPORTING on {dst}");
    let mut order = vec![dst];
    order.extend(cluster.primaries().into_iter().filter(|&p| p != dst));
    for port in order {
        let r = cluster.cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]);
        assert_eq!(r, "OK", "SETSLOT {slot} NODE on {port}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moving_during_a_transaction_aborts_it_and_applies_nothing() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    // No periodic refresh during the test: slotway only learns of the moves from MOVED replies.
    std::fs::write(&config, "[cluster]\nrefresh_interval_ms = 600000\n").unwrap();
    let proxy = Proxy::start(&cluster, &["--config", config.to_str().unwrap()]);
    let primaries = cluster.primaries();
    let (src, dst) = (primaries[0], primaries[1]);
    let mut direct = cluster_client(&cluster).await;
    let mut raw = Raw::connect(&proxy.addr);
    let t: Vec<String> = ["ma", "mb", "mc"].iter().map(|p| cluster.key_on_node(src, p)).collect();
    let slots: std::collections::BTreeSet<u16> = t.iter().map(|k| key_slot(k.as_bytes())).collect();
    assert_eq!(slots.len(), 3, "three distinct slots");

    // The WATCH that chooses the node follows MOVED: the client doesn't notice the stale map.
    let k = format!("{{{}}}:k", t[0]);
    move_empty_slot(&cluster, &t[0], src, dst);
    assert_eq!(raw.call(&["WATCH", &k]), ok());
    let got = raw.pipeline(&[&["MULTI"], &["SET", &k, "v"], &["EXEC"]]);
    assert_eq!(got, vec![ok(), queued(), arr(vec![ok()])]);
    let v: String = direct.get(&k).await.unwrap();
    assert_eq!(v, "v");
    assert_eq!(cluster.cli(dst, &["EXISTS", &k]), "1", "applied on the slot's new owner");

    // A queued command answered MOVED: a clear error, the transaction aborted, nothing applied.
    let (x, y) = (format!("{{{}}}:x", t[1]), format!("{{{}}}:y", t[1]));
    assert_eq!(raw.pipeline(&[&["MULTI"], &["SET", &x, "1"]]), vec![ok(), queued()]);
    move_empty_slot(&cluster, &t[1], src, dst);
    match raw.call(&["SET", &y, "2"]) {
        Reply::Error(e) => assert!(e.starts_with("ERR slotway: the transaction's slot moved to 127.0.0.1:"), "{e}"),
        r => panic!("{r:?}"),
    }
    assert_eq!(raw.call(&["EXEC"]), err("EXECABORT Transaction discarded because of previous errors."));
    let n: i64 = redis::cmd("EXISTS").arg(&x).arg(&y).query_async(&mut direct).await.unwrap();
    assert_eq!(n, 0);

    // The slot moves between the queued commands and EXEC: EXEC is refused by the node, never followed.
    let w = format!("{{{}}}:w", t[2]);
    let got = raw.pipeline(&[&["WATCH", &w], &["MULTI"], &["SET", &w, "1"], &["INCR", &w]]);
    assert_eq!(got, vec![ok(), ok(), queued(), queued()]);
    move_empty_slot(&cluster, &t[2], src, dst);
    match raw.call(&["EXEC"]) {
        Reply::Error(e) => assert!(e.starts_with("EXECABORT Transaction discarded: its slot moved"), "{e}"),
        r => panic!("{r:?}"),
    }
    let n: i64 = redis::cmd("EXISTS").arg(&w).query_async(&mut direct).await.unwrap();
    assert_eq!(n, 0, "nothing of the transaction was applied");

    // Once the map is refreshed, transactions on those slots run on their new node.
    for key in [&x, &w] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = raw.pipeline(&[&["MULTI"], &["SET", key, "ok"], &["EXEC"]]);
            if got[2] == arr(vec![ok()]) {
                break;
            }
            assert!(Instant::now() < deadline, "{key}: {got:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(cluster.cli(dst, &["GET", key]), "ok");
    }
    assert_eq!(cluster.cli(src, &["DBSIZE"]), "0", "nothing was ever written on the old owner");
}
