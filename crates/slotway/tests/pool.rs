//! slotway in front of a sharded pool of standalone servers (twemproxy's kind of deployment): commands as one
//! Redis server would answer them, with Redis's errors where a pool can't (never a closed connection). Real
//! redis-server processes with AUTH (and TLS to the nodes where said), via `scripts/dev-pool.sh`.
mod support;
mod support_raw;

use slotway::ring::{CharSign, Distribution, KeyHash, Ring, RingServer, RingSpec};
use std::thread::sleep;
use std::time::{Duration, Instant};
use support::*;
use support_raw::*;

/// The ring of `Pool::default_toml` (ketama, fnv1a_64, `{}`, shard1..N of weight 1).
fn ring(shards: usize) -> Ring {
    Ring::new(RingSpec {
        distribution: Distribution::Ketama,
        hash: KeyHash::Fnv1a_64,
        sign: CharSign::Signed,
        hash_tag: Some(*b"{}"),
        servers: (1..=shards).map(|i| RingServer { name: format!("shard{i}").into_bytes(), weight: 1 }).collect(),
    })
}

/// The first key `prefix:<n>` that the ring puts on shard `shard`.
fn key_on(ring: &Ring, shard: usize, prefix: &str) -> String {
    keys_on(ring, shard, prefix, 1).remove(0)
}

/// The first `count` keys `prefix:<n>` that the ring puts on shard `shard`.
fn keys_on(ring: &Ring, shard: usize, prefix: &str, count: usize) -> Vec<String> {
    (0..).map(|n| format!("{prefix}:{n}")).filter(|k| ring.locate(k.as_bytes()) == shard).take(count).collect()
}

/// `per_shard` keys for each of the ring's shards, interleaved (shard 0's first, shard 1's first, ...).
fn spread_keys(ring: &Ring, prefix: &str, per_shard: usize) -> Vec<String> {
    let each: Vec<Vec<String>> = (0..ring.len()).map(|s| keys_on(ring, s, prefix, per_shard)).collect();
    (0..per_shard).flat_map(|i| each.iter().map(move |v| v[i].clone())).collect()
}

/// `INFO commandstats` calls of `command` on the node on `port`.
fn calls(pool: &Pool, port: u16, command: &str) -> u64 {
    let stats = pool.cli(port, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn multi_key_commands_are_split_one_command_per_shard_and_merged_in_order() {
    let pool = Pool::start(PoolOpts { shards: 4, tls: true, ..PoolOpts::default() });
    let proxy = Proxy::start_pool(&pool, &pool.default_toml(), &[]);
    let ring = ring(4);
    let primaries = pool.primaries();
    let mut raw = Raw::connect(&proxy.addr);
    let keys = spread_keys(&ring, "mget", 25);
    let per_shard: Vec<usize> =
        (0..4).map(|s| keys.iter().filter(|k| ring.locate(k.as_bytes()) == s).count()).collect();
    assert!(per_shard.iter().all(|&n| n > 0), "the 100 keys cover the 4 shards: {per_shard:?}");

    // MSET of 100 keys: one MSET per shard, each shard's keys where they belong.
    let mut mset: Vec<String> = vec!["MSET".into()];
    for (i, k) in keys.iter().enumerate() {
        mset.extend([k.clone(), format!("value-{i}")]);
    }
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(raw.call(&args), ok());
    for (s, &port) in primaries.iter().enumerate() {
        assert_eq!(calls(&pool, port, "mset"), 1, "shard {} got one MSET", s + 1);
        assert_eq!(pool.cli(port, &["DBSIZE"]), per_shard[s].to_string());
    }
    for (i, k) in keys.iter().enumerate() {
        let port = primaries[ring.locate(k.as_bytes())];
        assert_eq!(pool.cli(port, &["GET", k]), format!("value-{i}"), "{k} on its shard");
    }

    // MGET of 100 keys (and two missing ones): every value in order, one MGET per shard.
    let mut mget = vec!["MGET", "missing:a"];
    mget.extend(keys.iter().map(String::as_str));
    mget.push("missing:b");
    let Reply::Array(Some(values)) = raw.call(&mget) else { panic!("MGET is an array") };
    assert_eq!(values.len(), 102);
    assert_eq!(values[0], nil());
    assert_eq!(values[101], nil());
    for i in 0..100 {
        assert_eq!(values[i + 1], bulk(&format!("value-{i}")), "value {i} in its place");
    }
    let mgets: u64 = primaries.iter().map(|&p| calls(&pool, p, "mget")).sum();
    assert_eq!(mgets, 4, "one MGET per shard");

    // EXISTS / TOUCH / UNLINK / DEL count over every shard, one command each.
    let mut some: Vec<&str> = keys[..40].iter().map(String::as_str).collect();
    some.push("missing:c");
    let with = |cmd: &'static str| -> Vec<&str> { std::iter::once(cmd).chain(some.iter().copied()).collect() };
    assert_eq!(raw.call(&with("EXISTS")), int(40));
    assert_eq!(raw.call(&with("TOUCH")), int(40));
    assert_eq!(raw.call(&["UNLINK", &keys[0], &keys[1]]), int(2));
    assert_eq!(raw.call(&with("DEL")), int(38));
    assert_eq!(raw.call(&["DBSIZE"]), int(60));
    // MSET with a key missing its value: Redis's own arity error.
    assert_eq!(raw.call(&["MSET", "a", "1", "b"]), err("ERR wrong number of arguments for 'mset' command"));
}

#[test]
fn cross_shard_commands_get_a_clear_error_and_one_shard_transactions_work() {
    let pool = Pool::start(PoolOpts { shards: 4, ..PoolOpts::default() });
    let proxy = Proxy::start_pool(&pool, &pool.default_toml(), &[]);
    let ring = ring(4);
    let (a, b) = (key_on(&ring, 0, "a"), key_on(&ring, 1, "b"));
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["SET", &a, "1"]), ok());
    let crossshard = err("CROSSSLOT Keys in request don't hash to the same shard of the pool");
    assert_eq!(raw.call(&["RENAME", &a, &b]), crossshard);
    assert_eq!(raw.call(&["GET", &a]), bulk("1"), "nothing moved");
    assert_eq!(raw.call(&["SUNIONSTORE", &a, &b]), crossshard);
    assert_eq!(raw.call(&["EVAL", "return redis.call('get', KEYS[1])", "2", &a, &b]), crossshard);
    assert_eq!(raw.call(&["BLPOP", &a, &b, "1"]), crossshard);
    // One shard: hash tags keep keys together, as with twemproxy.
    assert_eq!(raw.call(&["SET", "{user42}:name", "ann"]), ok());
    assert_eq!(raw.call(&["RENAME", "{user42}:name", "{user42}:fullname"]), ok());
    assert_eq!(raw.call(&["GET", "{user42}:fullname"]), bulk("ann"));
    assert_eq!(
        raw.call(&[
            "EVAL",
            "return redis.call('get', KEYS[1]) .. ARGV[1]",
            "2",
            "{user42}:fullname",
            "{user42}:x",
            "!"
        ]),
        bulk("ann!")
    );

    // A transaction on one shard.
    assert_eq!(raw.call(&["WATCH", "{t}balance"]), ok());
    assert_eq!(raw.call(&["MULTI"]), ok());
    assert_eq!(raw.call(&["SET", "{t}balance", "10"]), queued());
    assert_eq!(raw.call(&["INCRBY", "{t}balance", "5"]), queued());
    assert_eq!(raw.call(&["LPUSH", "{t}log", "deposit"]), queued());
    assert_eq!(raw.call(&["EXEC"]), arr(vec![ok(), int(15), int(1)]));
    let shard = pool.primaries()[ring.locate(b"t")];
    assert_eq!(pool.cli(shard, &["GET", "{t}balance"]), "15");
    // A transaction that touches two shards is refused while queueing and aborted, as Redis aborts one with an
    // error while queueing; nothing runs.
    assert_eq!(raw.call(&["MULTI"]), ok());
    assert_eq!(raw.call(&["SET", &a, "2"]), queued());
    assert_eq!(raw.call(&["SET", &b, "2"]), crossshard);
    assert_eq!(raw.call(&["EXEC"]), err("EXECABORT Transaction discarded because of previous errors."));
    assert_eq!(raw.call(&["GET", &a]), bulk("1"));
    // The connection is still fine (twemproxy would have closed it on MULTI).
    assert_eq!(raw.call(&["PING"]), simple("PONG"));
}

#[test]
fn every_shard_commands_scan_keys_dbsize_flushall_randomkey() {
    let pool = Pool::start(PoolOpts { shards: 3, ..PoolOpts::default() });
    let proxy = Proxy::start_pool(&pool, &pool.default_toml(), &[]);
    let mut raw = Raw::connect(&proxy.addr);
    let cmds: Vec<Vec<String>> =
        spread_keys(&ring(3), "scan", 100).into_iter().map(|k| vec!["SET".into(), k, "v".into()]).collect();
    let refs: Vec<Vec<&str>> = cmds.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
    let slices: Vec<&[&str]> = refs.iter().map(|c| &c[..]).collect();
    assert!(raw.pipeline(&slices).iter().all(|r| *r == ok()));
    assert_eq!(raw.call(&["DBSIZE"]), int(300));
    for &p in &pool.primaries() {
        assert_ne!(pool.cli(p, &["DBSIZE"]), "0", "every shard holds some keys");
    }
    // SCAN walks every shard with one cursor; every key comes back.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        let Reply::Array(Some(r)) = raw.call(&["SCAN", &cursor, "COUNT", "50"]) else { panic!("SCAN reply") };
        let Reply::Bulk(Some(next)) = &r[0] else { panic!("cursor") };
        let Reply::Array(Some(keys)) = &r[1] else { panic!("keys") };
        for k in keys {
            let Reply::Bulk(Some(k)) = k else { panic!("key") };
            seen.insert(String::from_utf8(k.clone()).unwrap());
        }
        cursor = String::from_utf8(next.clone()).unwrap();
        rounds += 1;
        if cursor == "0" {
            break;
        }
        assert!(rounds < 1000, "SCAN never ends");
    }
    assert_eq!(seen.len(), 300);
    let Reply::Array(Some(all)) = raw.call(&["KEYS", "scan:*"]) else { panic!("KEYS") };
    assert_eq!(all.len(), 300);
    let Reply::Bulk(Some(k)) = raw.call(&["RANDOMKEY"]) else { panic!("RANDOMKEY") };
    assert!(String::from_utf8(k).unwrap().starts_with("scan:"));
    let Reply::Bulk(Some(info)) = raw.call(&["INFO", "keyspace"]) else { panic!("INFO") };
    assert!(String::from_utf8_lossy(&info).contains("db0:keys=300,"), "keyspace summed over the shards");
    assert_eq!(raw.call(&["FLUSHALL"]), ok());
    assert_eq!(raw.call(&["DBSIZE"]), int(0));
    assert_eq!(raw.call(&["RANDOMKEY"]), nil());
}

#[test]
fn pubsub_blocking_commands_and_databases() {
    let pool = Pool::start(PoolOpts { shards: 3, ..PoolOpts::default() });
    let config = pool.default_toml().replace("hash_tag = \"{}\"\n", "hash_tag = \"{}\"\nredis_db = 2\n");
    let proxy = Proxy::start_pool(&pool, &config, &[]);
    let ring = ring(3);

    // Clients start in sharding.redis_db (twemproxy's redis_db), and SELECT moves them as on one server.
    let mut raw = Raw::connect(&proxy.addr);
    let k = key_on(&ring, 2, "db");
    let port = pool.primaries()[2];
    assert_eq!(raw.call(&["SET", &k, "in-two"]), ok());
    assert_eq!(pool.cli(port, &["-n", "2", "GET", &k]), "in-two");
    assert_eq!(pool.cli(port, &["-n", "0", "EXISTS", &k]), "0");
    assert_eq!(raw.call(&["SELECT", "5"]), ok());
    assert_eq!(raw.call(&["GET", &k]), nil());
    assert_eq!(raw.call(&["SET", &k, "in-five"]), ok());
    assert_eq!(pool.cli(port, &["-n", "5", "GET", &k]), "in-five");
    assert_eq!(raw.call(&["SELECT", "99"]), err("ERR DB index is out of range"));
    assert_eq!(raw.call(&["RESET"]), simple("RESET"));
    assert_eq!(raw.call(&["GET", &k]), bulk("in-two"), "RESET goes back to the starting database");

    // Pub/sub: a subscriber and a publisher on different connections, the message and the receiver count.
    let mut sub = Raw::connect(&proxy.addr);
    assert_eq!(sub.call(&["SUBSCRIBE", "news"]), arr(vec![bulk("subscribe"), bulk("news"), int(1)]));
    let mut publisher = Raw::connect(&proxy.addr);
    assert_eq!(publisher.call(&["PUBLISH", "news", "hello"]), int(1));
    assert_eq!(sub.read_reply(), arr(vec![bulk("message"), bulk("news"), bulk("hello")]));
    assert_eq!(publisher.call(&["PUBSUB", "NUMSUB", "news"]), arr(vec![bulk("news"), int(1)]));
    assert_eq!(sub.call(&["UNSUBSCRIBE"]), arr(vec![bulk("unsubscribe"), bulk("news"), int(0)]));
    // A channel is placed by the ring like a key: subscribed on its shard's primary (where its PUBLISH goes), not
    // on any other.
    let news = key_on(&ring, 1, "news");
    assert_eq!(sub.call(&["SUBSCRIBE", &news]), arr(vec![bulk("subscribe"), bulk(&news), int(1)]));
    for (shard, want) in [(0, "0"), (1, "1"), (2, "0")] {
        let numsub = pool.cli(pool.primaries()[shard], &["PUBSUB", "NUMSUB", &news]);
        assert_eq!(numsub.lines().last(), Some(want), "shard {shard}: NUMSUB {news} = {numsub:?}");
    }
    assert_eq!(publisher.call(&["PUBLISH", &news, "on-one"]), int(1));
    assert_eq!(sub.read_reply(), arr(vec![bulk("message"), bulk(&news), bulk("on-one")]));
    assert_eq!(sub.call(&["UNSUBSCRIBE"]), arr(vec![bulk("unsubscribe"), bulk(&news), int(0)]));
    // A pattern is subscribed on every shard: messages of channels on different shards all arrive, once each.
    assert_eq!(sub.call(&["PSUBSCRIBE", "feed:*"]), arr(vec![bulk("psubscribe"), bulk("feed:*"), int(1)]));
    for shard in 0..3 {
        let channel = key_on(&ring, shard, "feed:");
        assert!(channel.starts_with("feed:"), "{channel}");
        assert_eq!(publisher.call(&["PUBLISH", &channel, "m"]), int(1), "{channel}");
        assert_eq!(sub.read_reply(), arr(vec![bulk("pmessage"), bulk("feed:*"), bulk(&channel), bulk("m")]));
    }
    assert_eq!(sub.call(&["PUNSUBSCRIBE"]), arr(vec![bulk("punsubscribe"), bulk("feed:*"), int(0)]));
    // Shard channels live on their channel's shard.
    let channel = key_on(&ring, 1, "orders");
    assert_eq!(sub.call(&["SSUBSCRIBE", &channel]), arr(vec![bulk("ssubscribe"), bulk(&channel), int(1)]));
    assert_eq!(publisher.call(&["SPUBLISH", &channel, "o1"]), int(1));
    assert_eq!(sub.read_reply(), arr(vec![bulk("smessage"), bulk(&channel), bulk("o1")]));

    // A blocking command woken by another client.
    let list = key_on(&ring, 0, "jobs");
    let mut waiter = Raw::connect(&proxy.addr);
    waiter.send(&c(&["BLPOP", &list, "10"]));
    sleep(Duration::from_millis(300));
    assert_eq!(publisher.call(&["RPUSH", &list, "job-1"]), int(1));
    assert_eq!(waiter.read_reply(), arr(vec![bulk(&list), bulk("job-1")]));
}

/// A shard with no primary fails only its own keys, with an error naming it, after the retry deadline; the other
/// shards are served meanwhile.
#[test]
fn a_shard_without_a_primary_fails_only_its_keys() {
    let pool = Pool::start(PoolOpts { shards: 3, ..PoolOpts::default() });
    let config =
        format!("[cluster]\nretry_deadline_ms = 1500\n[servers]\npoll_interval_ms = 100\n\n{}", pool.default_toml());
    let proxy = Proxy::start_pool(&pool, &config, &[]);
    let ring = ring(3);
    let keys: Vec<String> = (0..3).map(|s| key_on(&ring, s, "k")).collect();
    let mut raw = Raw::connect(&proxy.addr);
    for k in &keys {
        assert_eq!(raw.call(&["SET", k, "before"]), ok());
    }
    pool.kill_node(pool.primaries()[1]);
    let started = Instant::now();
    // (A read: a write in flight when the connection died would be answered at once, as it may have run.)
    let Reply::Error(msg) = raw.call(&["GET", &keys[1]]) else { panic!("a read from a dead shard succeeded") };
    assert!(started.elapsed() >= Duration::from_millis(1000), "it waited for a primary first: {msg}");
    assert!(msg.contains("shard 'shard2' has no primary"), "{msg}");
    let Reply::Error(msg) = raw.call(&["SET", &keys[1], "during"]) else { panic!("a write to a dead shard succeeded") };
    assert!(msg.contains("shard 'shard2' has no primary"), "{msg}");
    for s in [0, 2] {
        assert_eq!(raw.call(&["SET", &keys[s], "during"]), ok(), "shard {} is not concerned", s + 1);
    }
    assert_eq!(raw.call(&["GET", &keys[0]]), bulk("during"));
    // Commands for every shard can't be answered whole.
    let Reply::Error(e) = raw.call(&["DBSIZE"]) else { panic!("DBSIZE without one shard") };
    assert!(e.contains("shard 'shard2' has no primary"), "{e}");
    let topology = proxy.cli(&["SLOTWAY", "TOPOLOGY"]);
    assert!(topology.contains("shard shard2 ") && topology.contains("primary none"), "{topology}");
    pool.restart_node(pool.primaries()[1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw.call(&["SET", &keys[1], "after"]) != ok() {
        assert!(Instant::now() < deadline, "shard2 never came back");
        sleep(Duration::from_millis(100));
    }
}

/// twemproxy's `auto_eject_hosts`: off by default; when on, a shard without a primary leaves the ring (its keys go
/// to the other shards) and comes back after `server_retry_timeout_ms` once it has a primary again.
#[test]
fn auto_eject_hosts_moves_a_dead_shards_keys_and_brings_them_back() {
    let pool = Pool::start(PoolOpts { shards: 3, ..PoolOpts::default() });
    let config = pool.default_toml().replace(
        "hash_tag = \"{}\"\n",
        "hash_tag = \"{}\"\nauto_eject_hosts = true\nserver_failure_limit = 2\nserver_retry_timeout_ms = 1000\n",
    );
    let config = format!("[cluster]\nretry_deadline_ms = 1000\n[servers]\npoll_interval_ms = 100\n\n{config}");
    let proxy = Proxy::start_pool(&pool, &config, &[]);
    let ring = ring(3);
    let key = key_on(&ring, 1, "eject");
    let mut raw = Raw::connect(&proxy.addr);
    assert_eq!(raw.call(&["SET", &key, "on-shard2"]), ok());
    let dead = pool.primaries()[1];
    pool.kill_node(dead);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !proxy.cli(&["SLOTWAY", "TOPOLOGY"]).contains("points 0 ejected") {
        assert!(Instant::now() < deadline, "shard2 was never ejected:\n{}", proxy.log());
        sleep(Duration::from_millis(100));
    }
    // The key now goes to another shard: a miss (the data stayed on shard2), then a write that works.
    assert_eq!(raw.call(&["GET", &key]), nil());
    assert_eq!(raw.call(&["SET", &key, "elsewhere"]), ok());
    let holders: Vec<u16> =
        [0, 2].iter().map(|&s| pool.primaries()[s]).filter(|&p| pool.cli(p, &["EXISTS", &key]) == "1").collect();
    assert_eq!(holders.len(), 1, "the key went to one of the live shards");
    assert!(proxy.cli(&["INFO", "proxy"]).contains("pool_shards_ejected:1"));
    // Back once it has a primary again (and the retry timeout has passed): its keys go to it again.
    pool.restart_node(dead);
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxy.cli(&["SLOTWAY", "TOPOLOGY"]).contains("ejected") {
        assert!(Instant::now() < deadline, "shard2 never came back:\n{}", proxy.log());
        sleep(Duration::from_millis(100));
    }
    assert_eq!(raw.call(&["SET", &key, "home"]), ok());
    assert_eq!(pool.cli(dead, &["GET", &key]), "home");
}
