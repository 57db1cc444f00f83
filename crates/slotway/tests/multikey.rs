//! Multi-key commands through slotway against a real TLS+AUTH cluster: split per slot, merged in key order.

mod support;

use redis::AsyncCommands;
use std::collections::BTreeSet;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_multi_key_commands_are_split_and_merged() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut con = proxy.client().await;

    // 10,000 keys over every shard, written with one cross-slot MSET.
    let keys: Vec<String> = (0..10_000).map(|i| format!("mk:{i}")).collect();
    let nodes = cluster.any_cluster_nodes();
    let owner = |k: &str| {
        let slot = key_slot(k.as_bytes());
        let n = nodes.iter().find(|n| n.is_primary() && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b));
        n.expect("slot owner").port
    };
    let shards: BTreeSet<u16> = keys.iter().map(|k| owner(k)).collect();
    assert_eq!(shards.len(), 3, "keys cover every shard");
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("v-{k}"))).collect();
    let () = con.mset(&pairs).await.expect("MSET of 10,000 keys");

    // MGET returns values in key order, including nils for missing keys in between.
    let mut query: Vec<String> = keys.clone();
    query.insert(5_000, "mk:missing:a".into());
    query.push("mk:missing:b".into());
    let values: Vec<Option<String>> = con.mget(&query).await.expect("MGET of 10,002 keys");
    assert_eq!(values.len(), query.len());
    for (k, v) in query.iter().zip(&values) {
        if k.starts_with("mk:missing") {
            assert_eq!(v, &None, "{k}");
        } else {
            assert_eq!(v.as_deref(), Some(format!("v-{k}").as_str()), "{k}");
        }
    }

    // The data really is on the owning nodes.
    let mut direct = cluster_client(&cluster).await;
    for k in keys.iter().step_by(997) {
        let v: String = direct.get(k).await.unwrap();
        assert_eq!(v, format!("v-{k}"));
    }

    // Counting commands sum over the parts; repeated keys count as Redis counts them.
    let sample: Vec<&String> = keys.iter().step_by(10).collect(); // 1,000 keys
    let n: i64 =
        redis::cmd("EXISTS").arg(&sample).arg(sample[0]).arg("mk:missing:c").query_async(&mut con).await.unwrap();
    assert_eq!(n, 1_001, "EXISTS counts each existing key, a repeated one twice");
    let n: i64 = redis::cmd("TOUCH").arg(&sample).query_async(&mut con).await.unwrap();
    assert_eq!(n, 1_000);
    let n: i64 = redis::cmd("DEL").arg(&sample[..500]).arg("mk:missing:d").query_async(&mut con).await.unwrap();
    assert_eq!(n, 500);
    let n: i64 = redis::cmd("UNLINK").arg(&sample[500..]).query_async(&mut con).await.unwrap();
    assert_eq!(n, 500);
    let n: i64 = redis::cmd("EXISTS").arg(&sample).query_async(&mut con).await.unwrap();
    assert_eq!(n, 0, "deleted keys are gone everywhere");
    let left: i64 = redis::cmd("EXISTS").arg(&keys).query_async(&mut con).await.unwrap();
    assert_eq!(left, 9_000);

    // MSET with a key repeated across the request: the last value wins, as in Redis.
    let () = redis::cmd("MSET")
        .arg("mk:dup")
        .arg("1")
        .arg("mk:other")
        .arg("x")
        .arg("mk:dup")
        .arg("2")
        .query_async(&mut con)
        .await
        .unwrap();
    let v: String = con.get("mk:dup").await.unwrap();
    assert_eq!(v, "2");

    // Not splittable (atomic across keys): cross-slot is refused, same-slot works.
    let err =
        redis::cmd("MSETNX").arg("mk:a").arg("1").arg("mk:b").arg("2").query_async::<i64>(&mut con).await.unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    let n: i64 = redis::cmd("MSETNX").arg("{mk}a").arg("1").arg("{mk}b").arg("2").query_async(&mut con).await.unwrap();
    assert_eq!(n, 1);

    // A pipeline mixing split and single commands keeps its order.
    let mut pipe = redis::pipe();
    pipe.cmd("MSET").arg("p:1").arg("a").arg("p:2").arg("b").arg("p:3").arg("c");
    pipe.cmd("MGET").arg("p:3").arg("p:2").arg("p:1");
    pipe.cmd("GET").arg("p:2");
    pipe.cmd("DEL").arg("p:1").arg("p:2");
    pipe.cmd("MGET").arg("p:1").arg("p:2").arg("p:3");
    let (ok, m1, g, d, m2): (String, Vec<Option<String>>, String, i64, Vec<Option<String>>) =
        pipe.query_async(&mut con).await.unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(m1, vec![Some("c".into()), Some("b".into()), Some("a".into())]);
    assert_eq!(g, "b");
    assert_eq!(d, 2);
    assert_eq!(m2, vec![None, None, Some("c".into())]);

    // A split command that fails on one part reports that part's error.
    let () = con.rpush("mk:list", "x").await.unwrap();
    let err = redis::cmd("MSET").arg("mk:list").arg("v").query_async::<()>(&mut con).await;
    assert!(err.is_ok(), "MSET overwrites any type");
    let wrong_arity = redis::cmd("MGET").query_async::<Vec<Option<String>>>(&mut con).await.unwrap_err();
    assert!(wrong_arity.to_string().contains("wrong number of arguments"), "{wrong_arity}");
}
