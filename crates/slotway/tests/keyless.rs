//! Keyless commands that need the whole cluster (DBSIZE, KEYS, SCAN, RANDOMKEY, FLUSHALL, INFO), and scripts
//! (SCRIPT LOAD/EXISTS/FLUSH, EVAL, EVALSHA with NOSCRIPT recovery, FUNCTION LOAD + FCALL), through slotway against
//! a real TLS+AUTH cluster, with keys on every shard.

mod support;

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use support::*;

/// Every primary's own DBSIZE, summed.
async fn direct_dbsize(cluster: &Cluster) -> usize {
    let mut total = 0;
    for p in cluster.primaries() {
        let n: usize = redis::cmd("DBSIZE").query_async(&mut node_client(cluster, p).await).await.unwrap();
        total += n;
    }
    total
}

/// Walks SCAN through slotway with the given options until cursor 0; every key returned, with repeats.
async fn scan_all(con: &mut MultiplexedConnection, opts: &[&str]) -> (Vec<String>, usize) {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg(opts).query_async(con).await.expect("SCAN through slotway");
        keys.extend(batch);
        calls += 1;
        assert!(calls < 100_000, "SCAN does not terminate");
        if next == 0 {
            return (keys, calls);
        }
        cursor = next;
    }
}

/// `field:value` lines of one INFO section.
fn info_section(text: &str, section: &str) -> Option<BTreeMap<String, String>> {
    let mut lines = text.split("\r\n");
    lines.find(|l| *l == format!("# {section}"))?;
    Some(
        lines
            .take_while(|l| !l.is_empty() && !l.starts_with("# "))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// `keys=1,expires=2,avg_ttl=3` → map.
fn db_fields(v: &str) -> HashMap<String, i64> {
    v.split(',').filter_map(|f| f.split_once('=')).map(|(k, v)| (k.to_string(), v.parse().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_commands_cover_every_shard() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut con = proxy.client().await;
    let primaries = cluster.primaries();

    // 20,000 string keys over every shard, plus 300 hashes and 200 keys with a TTL.
    let keys: Vec<String> = (0..20_000).map(|i| format!("ks:{i}")).collect();
    for chunk in keys.chunks(2_000) {
        let pairs: Vec<(&String, &String)> = chunk.iter().map(|k| (k, k)).collect();
        let () = con.mset(&pairs).await.unwrap();
    }
    let hashes: Vec<String> = (0..300).map(|i| format!("h:{i}")).collect();
    for h in &hashes {
        let () = con.hset(h, "f", "v").await.unwrap();
    }
    let expiring: Vec<String> = (0..200).map(|i| format!("ttl:{i}")).collect();
    for k in &expiring {
        let () = con.set_ex(k, "v", 1000).await.unwrap();
    }
    let total = keys.len() + hashes.len() + expiring.len();
    let on_shard = |prefix: &str, list: &[String]| -> BTreeSet<u16> {
        list.iter().filter(|k| k.starts_with(prefix)).map(|k| cluster.node_for_key(k)).collect()
    };
    assert_eq!(on_shard("ks:", &keys[..100]).len(), 3, "keys on every shard");
    assert_eq!(on_shard("ttl:", &expiring).len(), 3, "expiring keys on every shard");

    // DBSIZE: the sum over the primaries, and the number of keys written.
    let n: usize = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(n, total);
    assert_eq!(n, direct_dbsize(&cluster).await);
    let err = redis::cmd("DBSIZE").arg("extra").query_async::<usize>(&mut con).await.unwrap_err();
    assert!(err.to_string().contains("wrong number of arguments for 'dbsize' command"), "{err}");

    // KEYS pattern: exactly the matching keys from all shards.
    let mut got: Vec<String> = con.keys("ks:1?9").await.unwrap();
    got.sort();
    let mut want: Vec<String> = (0..20_000)
        .map(|i| format!("ks:{i}"))
        .filter(|k| k.len() == 6 && k.starts_with("ks:1") && k.ends_with('9'))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let got: Vec<String> = con.keys("h:*").await.unwrap();
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), hashes.iter().cloned().collect());
    let none: Vec<String> = con.keys("nothing:*").await.unwrap();
    assert!(none.is_empty());

    // SCAN: every key at least once, and nothing else; MATCH, COUNT and TYPE go to the nodes.
    let everything: BTreeSet<String> = keys.iter().chain(&hashes).chain(&expiring).cloned().collect();
    let (seen, calls) = scan_all(&mut con, &["COUNT", "1000"]).await;
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), everything.len(), "SCAN COUNT 1000 returned {} distinct keys", distinct.len());
    assert!(distinct == everything, "SCAN returned other keys");
    assert!(calls >= 3, "one walk per shard at least ({calls} calls)");
    let (seen, _) = scan_all(&mut con, &[]).await;
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), everything, "SCAN with the default COUNT");
    let (seen, _) = scan_all(&mut con, &["MATCH", "ks:1*", "COUNT", "500"]).await;
    let want: BTreeSet<String> = keys.iter().filter(|k| k.starts_with("ks:1")).cloned().collect();
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), want, "SCAN MATCH");
    let (seen, _) = scan_all(&mut con, &["TYPE", "hash", "COUNT", "2000"]).await;
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), hashes.iter().cloned().collect(), "SCAN TYPE hash");
    let (seen, _) = scan_all(&mut con, &["MATCH", "ttl:*", "TYPE", "string", "COUNT", "5000"]).await;
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expiring.iter().cloned().collect(), "SCAN MATCH + TYPE");
    let err = redis::cmd("SCAN").arg("notanumber").query_async::<(u64, Vec<String>)>(&mut con).await.unwrap_err();
    assert!(err.to_string().contains("invalid cursor"), "{err}");
    let err = redis::cmd("SCAN").arg("0").arg("COUNT").query_async::<(u64, Vec<String>)>(&mut con).await.unwrap_err();
    assert!(err.to_string().contains("syntax error"), "the node's own error: {err}");

    // RANDOMKEY: an existing key, from more than one shard over a few tries.
    let mut shards = BTreeSet::new();
    for _ in 0..60 {
        let k: String = redis::cmd("RANDOMKEY").query_async(&mut con).await.unwrap();
        assert!(everything.contains(&k), "RANDOMKEY gave {k}");
        shards.insert(cluster.node_for_key(&k));
    }
    assert!(shards.len() >= 2, "RANDOMKEY only ever picked shard(s) {shards:?}");

    // INFO keyspace: summed over the primaries.
    let text: String = redis::cmd("INFO").arg("keyspace").query_async(&mut con).await.unwrap();
    let ks = info_section(&text, "Keyspace").unwrap_or_else(|| panic!("no Keyspace section:\n{text}"));
    let db0 = db_fields(&ks["db0"]);
    assert_eq!(db0["keys"], total as i64, "{text}");
    assert_eq!(db0["expires"], expiring.len() as i64, "{text}");
    assert!(db0["avg_ttl"] > 900_000 && db0["avg_ttl"] <= 1_000_000, "{text}");
    assert!(info_section(&text, "Proxy").is_none(), "INFO keyspace has only the keyspace:\n{text}");
    let mut direct_keys = 0;
    for &p in &primaries {
        let t: String =
            redis::cmd("INFO").arg("keyspace").query_async(&mut node_client(&cluster, p).await).await.unwrap();
        direct_keys += db_fields(&info_section(&t, "Keyspace").unwrap()["db0"])["keys"];
    }
    assert_eq!(direct_keys, total as i64);

    // INFO (default): node sections from one node, the keyspace summed, and slotway's own section.
    let text: String = redis::cmd("INFO").query_async(&mut con).await.unwrap();
    let server = info_section(&text, "Server").unwrap_or_else(|| panic!("no Server section:\n{text}"));
    assert!(server.contains_key("redis_version"), "{text}");
    assert_eq!(db_fields(&info_section(&text, "Keyspace").unwrap()["db0"])["keys"], total as i64);
    let proxy_info = info_section(&text, "Proxy").unwrap_or_else(|| panic!("no Proxy section:\n{text}"));
    assert_eq!(proxy_info["cluster_shards"], "3");
    assert_eq!(text.matches("# Keyspace").count(), 1, "{text}");
    // INFO server: one node, no keyspace, no proxy section.
    let text: String = redis::cmd("INFO").arg("server").query_async(&mut con).await.unwrap();
    assert!(info_section(&text, "Server").is_some() && info_section(&text, "Keyspace").is_none(), "{text}");
    assert!(info_section(&text, "Proxy").is_none(), "{text}");
    // INFO proxy: slotway's section only, as before.
    let text: String = redis::cmd("INFO").arg("proxy").query_async(&mut con).await.unwrap();
    let p = info_section(&text, "Proxy").unwrap_or_else(|| panic!("{text}"));
    assert!(p.contains_key("commands_received") && p.contains_key("scripts_reloaded"), "{text}");
    assert!(info_section(&text, "Server").is_none(), "{text}");
    // redis-cli INFO works too (a plain client).
    assert!(proxy.cli(&["INFO", "keyspace"]).contains(&format!("db0:keys={total},")));

    // MEMORY USAGE key: routed by its key.
    for &p in &primaries {
        let k = keys.iter().find(|k| cluster.node_for_key(k) == p).unwrap();
        let n: i64 = redis::cmd("MEMORY").arg("USAGE").arg(k).query_async(&mut con).await.unwrap();
        assert!(n > 0, "MEMORY USAGE {k}");
    }

    // FLUSHDB / FLUSHALL: every primary is emptied.
    let () = redis::cmd("FLUSHALL").arg("SYNC").query_async(&mut con).await.unwrap();
    for &p in &primaries {
        let n: usize = redis::cmd("DBSIZE").query_async(&mut node_client(&cluster, p).await).await.unwrap();
        assert_eq!(n, 0, "primary {p} after FLUSHALL");
    }
    let n: usize = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(n, 0);
    let k: Option<String> = redis::cmd("RANDOMKEY").query_async(&mut con).await.unwrap();
    assert_eq!(k, None, "RANDOMKEY of an empty cluster");
    let (seen, _) = scan_all(&mut con, &[]).await;
    assert!(seen.is_empty());
    let all: Vec<String> = con.keys("*").await.unwrap();
    assert!(all.is_empty());
    let () = con.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).await.unwrap();
    let () = redis::cmd("FLUSHDB").query_async(&mut con).await.unwrap();
    assert_eq!(direct_dbsize(&cluster).await, 0, "after FLUSHDB");
    let text: String = redis::cmd("INFO").arg("keyspace").query_async(&mut con).await.unwrap();
    assert_eq!(text.trim_end(), "# Keyspace", "an empty keyspace has no db line");
}

const LIBRARY: &str = "#!lua name=kllib\n\
    redis.register_function('kl_set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\n\
    redis.register_function{function_name='kl_get', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_functions_work_on_every_shard() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut con = proxy.client().await;
    let primaries = cluster.primaries();
    let keys: Vec<(u16, String)> = cluster.keys_on_every_primary("sc:");
    assert_eq!(keys.len(), 3);

    // SCRIPT LOAD once: the sha, loaded on every primary.
    let body = "return redis.call('SET', KEYS[1], ARGV[1])";
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(body).query_async(&mut con).await.unwrap();
    assert_eq!(sha.len(), 40);
    for &p in &primaries {
        assert_eq!(cluster.cli(p, &["SCRIPT", "EXISTS", &sha]), "1", "script on primary {p}");
    }
    // EVALSHA with keys on every shard.
    for (p, k) in &keys {
        let () =
            redis::cmd("EVALSHA").arg(&sha).arg(1).arg(k).arg(format!("v-{p}")).query_async(&mut con).await.unwrap();
        assert_eq!(cluster.cli(*p, &["GET", k]), format!("v-{p}"));
    }
    // SCRIPT EXISTS: 1 where every primary has it, or slotway can load it where it is missing.
    let other_sha = "0000000000000000000000000000000000000000";
    let e: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).arg(other_sha).query_async(&mut con).await.unwrap();
    assert_eq!(e, vec![1, 0]);
    let direct = "return 'loaded on the nodes only'";
    let mut direct_sha = String::new();
    for &p in &primaries {
        direct_sha = cluster.cli(p, &["SCRIPT", "LOAD", direct]);
    }
    assert_eq!(cluster.cli(primaries[0], &["SCRIPT", "FLUSH"]), "OK");
    let e: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&direct_sha).query_async(&mut con).await.unwrap();
    assert_eq!(e, vec![0], "slotway never saw it and one primary lacks it");

    // SCRIPT FLUSH on one node directly: EVALSHA through slotway still works there (NOSCRIPT recovery).
    let (flushed, k) = keys[1].clone();
    assert_eq!(cluster.cli(flushed, &["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(cluster.cli(flushed, &["SCRIPT", "EXISTS", &sha]), "0");
    let e: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query_async(&mut con).await.unwrap();
    assert_eq!(e, vec![1], "slotway loads it where it is missing");
    let () = redis::cmd("EVALSHA").arg(&sha).arg(1).arg(&k).arg("after-flush").query_async(&mut con).await.unwrap();
    assert_eq!(cluster.cli(flushed, &["GET", &k]), "after-flush");
    assert_eq!(cluster.cli(flushed, &["SCRIPT", "EXISTS", &sha]), "1", "reloaded on the node");
    // EVALSHA_RO works the same way, with the sha in upper case.
    let ro = "return redis.call('GET', KEYS[1])";
    let ro_sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(ro).query_async(&mut con).await.unwrap();
    for &p in &primaries {
        assert_eq!(cluster.cli(p, &["SCRIPT", "FLUSH"]), "OK");
    }
    for (p, k) in &keys {
        let v: String =
            redis::cmd("EVALSHA_RO").arg(ro_sha.to_uppercase()).arg(1).arg(k).query_async(&mut con).await.unwrap();
        assert!(v.starts_with("v-") || v == "after-flush", "{p}: {v}");
    }
    let text: String = redis::cmd("INFO").arg("proxy").query_async(&mut con).await.unwrap();
    let reloaded: u64 = info_section(&text, "Proxy").unwrap()["scripts_reloaded"].parse().unwrap();
    assert!(reloaded >= 4, "scripts_reloaded:{reloaded}");

    // EVAL: numkeys 0 goes to some primary; with keys, to their shard; cross-slot keys are refused.
    let v: i64 = redis::cmd("EVAL").arg("return 1 + 1").arg(0).query_async(&mut con).await.unwrap();
    assert_eq!(v, 2);
    let incr = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    for (p, _) in &keys {
        let k = cluster.key_on_node(*p, "counter:");
        let v: i64 = redis::cmd("EVAL").arg(incr).arg(1).arg(&k).arg(5).query_async(&mut con).await.unwrap();
        assert_eq!(v, 5);
        assert_eq!(cluster.cli(*p, &["GET", &k]), "5");
    }
    let err = redis::cmd("EVAL")
        .arg("return 1")
        .arg(2)
        .arg(&keys[0].1)
        .arg(&keys[1].1)
        .query_async::<i64>(&mut con)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    // A script seen only through EVAL is remembered too: EVALSHA of it works on every shard after a flush.
    let incr_sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(incr).query_async(&mut con).await.unwrap();
    for &p in &primaries {
        assert_eq!(cluster.cli(p, &["SCRIPT", "FLUSH"]), "OK");
    }
    for (p, _) in &keys {
        let k = cluster.key_on_node(*p, "counter:");
        let v: i64 = redis::cmd("EVALSHA").arg(&incr_sha).arg(1).arg(&k).arg(1).query_async(&mut con).await.unwrap();
        assert_eq!(v, 6);
    }
    // An unknown sha is still NOSCRIPT.
    let err = redis::cmd("EVALSHA").arg(other_sha).arg(0).query_async::<i64>(&mut con).await.unwrap_err();
    assert_eq!(err.code(), Some("NOSCRIPT"), "{err}");

    // SCRIPT FLUSH through slotway: gone everywhere, and slotway forgets the bodies (as one server would).
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut con).await.unwrap();
    let e: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query_async(&mut con).await.unwrap();
    assert_eq!(e, vec![0]);
    let err =
        redis::cmd("EVALSHA").arg(&sha).arg(1).arg(&keys[0].1).arg("x").query_async::<()>(&mut con).await.unwrap_err();
    assert_eq!(err.code(), Some("NOSCRIPT"), "{err}");

    // FUNCTION LOAD once, FCALL / FCALL_RO on every shard.
    let name: String = redis::cmd("FUNCTION").arg("LOAD").arg(LIBRARY).query_async(&mut con).await.unwrap();
    assert_eq!(name, "kllib");
    for &p in &primaries {
        assert!(cluster.cli(p, &["FUNCTION", "LIST"]).contains("kllib"), "library on {p}");
    }
    for (p, k) in &keys {
        let () =
            redis::cmd("FCALL").arg("kl_set").arg(1).arg(k).arg(format!("f-{p}")).query_async(&mut con).await.unwrap();
        let v: String = redis::cmd("FCALL_RO").arg("kl_get").arg(1).arg(k).query_async(&mut con).await.unwrap();
        assert_eq!(v, format!("f-{p}"));
        assert_eq!(cluster.cli(*p, &["GET", k]), format!("f-{p}"));
    }
    let err = redis::cmd("FUNCTION").arg("LOAD").arg(LIBRARY).query_async::<String>(&mut con).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let name: String =
        redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(LIBRARY).query_async(&mut con).await.unwrap();
    assert_eq!(name, "kllib");
    let list: redis::Value = redis::cmd("FUNCTION").arg("LIST").query_async(&mut con).await.unwrap();
    assert!(format!("{list:?}").contains("kl_get"), "{list:?}");
    let () = redis::cmd("FUNCTION").arg("DELETE").arg("kllib").query_async(&mut con).await.unwrap();
    for &p in &primaries {
        assert!(!cluster.cli(p, &["FUNCTION", "LIST"]).contains("kllib"), "library still on {p}");
    }
    let err =
        redis::cmd("FCALL").arg("kl_get").arg(1).arg(&keys[0].1).query_async::<String>(&mut con).await.unwrap_err();
    assert!(err.to_string().contains("Function not found"), "{err}");
    let () = redis::cmd("FUNCTION").arg("FLUSH").query_async(&mut con).await.unwrap();

    // SCRIPT KILL with nothing running: the node's NOTBUSY.
    let err = redis::cmd("SCRIPT").arg("KILL").query_async::<()>(&mut con).await.unwrap_err();
    assert_eq!(err.code(), Some("NOTBUSY"), "{err}");

    // CONFIG GET from one node; CONFIG SET to every node (tests/standalone_view.rs has the rest).
    let cfg: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut con).await.unwrap();
    assert_eq!(cfg[0], "maxmemory-policy");
    let () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query_async(&mut con).await.unwrap();
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut con).await.unwrap();
}

/// Commands for every primary keep working across a failover: a part is routed by its shard's first slot, so once
/// the slot map is refreshed it reaches the new primary; a keyless write that reaches the demoted primary first
/// (READONLY) is retried there, not returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_follows_a_failover() {
    let cluster = Cluster::start(ClusterOpts::default());
    // A long periodic refresh: only the READONLY reply can make slotway notice the failover in time.
    let proxy = Proxy::start(&cluster, &["--config", &write_config("[cluster]\nrefresh_interval_ms = 600000\n")]);
    let mut con = proxy.client().await;
    let keys: Vec<String> = (0..3_000).map(|i| format!("fo:{i}")).collect();
    let pairs: Vec<(&String, &String)> = keys.iter().map(|k| (k, k)).collect();
    let () = con.mset(&pairs).await.unwrap();
    let body = "return redis.call('GET', KEYS[1])";
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(body).query_async(&mut con).await.unwrap();

    let old = cluster.primaries()[0];
    let replica = cluster.replicas_of(old)[0];
    cluster.failover(replica, None);
    assert!(cluster.primaries().contains(&replica) && !cluster.primaries().contains(&old));

    // A keyless write first: the demoted primary answers READONLY; slotway refreshes and retries.
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(LIBRARY)
        .query_async(&mut con)
        .await
        .expect("FUNCTION LOAD after a failover");
    assert_eq!(name, "kllib");
    for p in cluster.primaries() {
        assert!(cluster.cli(p, &["FUNCTION", "LIST"]).contains("kllib"), "library on primary {p}");
    }
    let n: usize = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(n, keys.len(), "DBSIZE after the failover");
    // EVALSHA on the promoted replica's keys works (the script is reloaded there if it is missing).
    let k = cluster.key_on_node(replica, "fo:");
    let v: String = redis::cmd("EVALSHA").arg(&sha).arg(1).arg(&k).query_async(&mut con).await.unwrap();
    assert_eq!(v, k);
    let (seen, _) = scan_all(&mut con, &["COUNT", "500"]).await;
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), keys.iter().cloned().collect(), "SCAN after the failover");

    let () = redis::cmd("FLUSHALL").query_async(&mut con).await.expect("FLUSHALL after a failover");
    for p in cluster.primaries() {
        let n: usize = redis::cmd("DBSIZE").query_async(&mut node_client(&cluster, p).await).await.unwrap();
        assert_eq!(n, 0, "primary {p} after FLUSHALL");
    }
}

/// A config file in a temp dir that lives as long as the test process (its path is what slotway gets).
fn write_config(text: &str) -> String {
    let dir = tempfile::Builder::new().prefix("slotway-keyless-conf-").tempdir().unwrap().keep();
    let path = dir.join("slotway.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
