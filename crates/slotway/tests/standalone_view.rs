//! What a standalone server's admin and connection commands mean through slotway, against a real TLS+AUTH
//! cluster with replicas: CONFIG SET/REWRITE/RESETSTAT on every node, CONFIG GET, and the commands Redis's own
//! test suite relies on (see scripts/redis-suite.sh).

mod support;

use redis::AsyncCommands;
use std::time::{Duration, Instant};
use support::*;

/// `INFO <section>` field of one node, read directly.
fn node_info_field(cluster: &Cluster, port: u16, section: &str, field: &str) -> Option<String> {
    let text = cluster.cli(port, &["INFO", section]);
    text.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
}

fn every_node(cluster: &Cluster) -> Vec<u16> {
    let mut nodes = cluster.primaries();
    nodes.extend(cluster.replicas());
    assert!(nodes.len() >= 6, "3 primaries and their replicas: {nodes:?}");
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_reaches_every_node_and_config_get_reads_one() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut con = proxy.client().await;
    let nodes = every_node(&cluster);

    // One parameter, then several at once: every primary and every replica has them.
    let ok: String =
        redis::cmd("CONFIG").arg(&["SET", "hash-max-listpack-entries", "7"]).query_async(&mut con).await.unwrap();
    assert_eq!(ok, "OK");
    let ok: String = redis::cmd("CONFIG")
        .arg(&["SET", "zset-max-listpack-entries", "9", "notify-keyspace-events", "KEA"])
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(ok, "OK");
    for &p in &nodes {
        assert_eq!(
            cluster.cli(p, &["CONFIG", "GET", "hash-max-listpack-entries"]),
            "hash-max-listpack-entries\n7",
            "node {p}"
        );
        assert_eq!(
            cluster.cli(p, &["CONFIG", "GET", "zset-max-listpack-entries"]),
            "zset-max-listpack-entries\n9",
            "node {p}"
        );
        let events = cluster.cli(p, &["CONFIG", "GET", "notify-keyspace-events"]);
        assert!(
            events.starts_with("notify-keyspace-events\n") && events.contains('K') && events.contains('E'),
            "{events}"
        );
    }
    // CONFIG GET: one node's answer, as Redis shapes it.
    let got: Vec<String> =
        redis::cmd("CONFIG").arg(&["GET", "hash-max-listpack-entries"]).query_async(&mut con).await.unwrap();
    assert_eq!(got, ["hash-max-listpack-entries", "7"]);
    // The setting is in force where the keys are: a hash of 8 fields is a hashtable on any shard.
    for (_, key) in cluster.keys_on_every_primary("cfg:h") {
        for i in 0..7 {
            let () = con.hset(&key, format!("f{i}"), "v").await.unwrap();
        }
        let enc: String = redis::cmd("OBJECT").arg(&["ENCODING", &key]).query_async(&mut con).await.unwrap();
        assert_eq!(enc, "listpack", "{key}");
        let () = con.hset(&key, "f7", "v").await.unwrap();
        let enc: String = redis::cmd("OBJECT").arg(&["ENCODING", &key]).query_async(&mut con).await.unwrap();
        assert_eq!(enc, "hashtable", "{key}");
    }

    // A value the nodes refuse: the node's own error, and no node changed.
    let err = redis::cmd("CONFIG")
        .arg(&["SET", "hash-max-listpack-entries", "lots"])
        .query_async::<String>(&mut con)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("CONFIG SET failed (possibly related to argument 'hash-max-listpack-entries')"),
        "{err}"
    );
    for &p in &nodes {
        assert_eq!(cluster.cli(p, &["CONFIG", "GET", "hash-max-listpack-entries"]), "hash-max-listpack-entries\n7");
    }
    // What decides how slotway reaches the nodes is not passed on: the nodes keep their password.
    let err = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru", "REQUIREPASS", "x"])
        .query_async::<String>(&mut con)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CONFIG SET requirepass is not sent to the nodes"), "{err}");
    for &p in &nodes {
        assert_eq!(cluster.cli(p, &["CONFIG", "GET", "maxmemory-policy"]), "maxmemory-policy\nnoeviction");
        assert_eq!(cluster.cli(p, &["PING"]), "PONG");
    }
    let pong: String = redis::cmd("PING").query_async(&mut proxy.client().await).await.unwrap();
    assert_eq!(pong, "PONG");

    // CONFIG RESETSTAT resets every node's statistics, replicas included.
    for i in 0..50 {
        let _: Option<String> = con.get(format!("cfg:miss:{i}")).await.unwrap();
    }
    for &p in &cluster.replicas() {
        cluster.cli(p, &["READONLY"]);
        assert!(cluster.cli(p, &["CONFIG", "SET", "hz", "10"]) == "OK");
    }
    let primaries_misses: u64 = cluster
        .primaries()
        .iter()
        .map(|&p| node_info_field(&cluster, p, "stats", "keyspace_misses").unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(primaries_misses >= 50, "{primaries_misses}");
    let replica_commands: Vec<u64> = cluster
        .replicas()
        .iter()
        .map(|&p| node_info_field(&cluster, p, "stats", "total_commands_processed").unwrap().parse().unwrap())
        .collect();
    assert!(replica_commands.iter().all(|&n| n > 20), "{replica_commands:?}");
    let stats = |text: &str, field: &str| text.lines().find(|l| l.starts_with(field)).map(str::to_string);
    let text: String = redis::cmd("INFO").arg("commandstats").query_async(&mut con).await.unwrap();
    assert!(stats(&text, "cmdstat_get:calls=50").is_some(), "{text}");
    let ok: String = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut con).await.unwrap();
    assert_eq!(ok, "OK");
    for &p in &nodes {
        let misses: u64 = node_info_field(&cluster, p, "stats", "keyspace_misses").unwrap().parse().unwrap();
        assert_eq!(misses, 0, "node {p}");
        // (The INFO asking, and slotway's own requests since, included.)
        let n: u64 = node_info_field(&cluster, p, "stats", "total_commands_processed").unwrap().parse().unwrap();
        assert!(n < 20, "node {p}: {n} commands after RESETSTAT");
    }
    // slotway's own statistics start again too (its INFO commandstats is about its clients' requests).
    let _: Option<String> = con.get("cfg:after").await.unwrap();
    let text: String = redis::cmd("INFO").arg("commandstats").query_async(&mut con).await.unwrap();
    assert!(stats(&text, "cmdstat_get:calls=1,").is_some(), "{text}");
    let text: String = redis::cmd("INFO").arg("errorstats").query_async(&mut con).await.unwrap();
    assert!(!text.contains("errorstat_ERR"), "errors before the reset are forgotten: {text}");

    // CONFIG REWRITE: every node writes its config file.
    let ok: String = redis::cmd("CONFIG").arg("REWRITE").query_async(&mut con).await.unwrap();
    assert_eq!(ok, "OK");
    for &p in &nodes {
        let conf = std::fs::read_to_string(cluster.node_dir(p).join("redis.conf")).unwrap();
        assert!(conf.contains("hash-max-listpack-entries 7"), "node {p}:\n{conf}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_follows_slotway_acl_rules() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    let ops_pw = dir.path().join("ops.pw");
    std::fs::write(&ops_pw, "ops-secret\n").unwrap();
    std::fs::write(
        &config,
        format!(
            r##"
[[users]]
name = "default"
rules = "on nopass ~* &* +@all -config|set -config|rewrite"

[[users]]
name = "ops"
password_file = {:?}
rules = "on ~* &* +@all"
"##,
            ops_pw.display().to_string()
        ),
    )
    .unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));

    let denied = proxy.cli(&["CONFIG", "SET", "hash-max-listpack-entries", "5"]);
    assert_eq!(denied, "NOPERM this user has no permissions to run the 'config|set' command");
    for p in every_node(&cluster) {
        assert_eq!(cluster.cli(p, &["CONFIG", "GET", "hash-max-listpack-entries"]), "hash-max-listpack-entries\n512");
    }
    // CONFIG GET is still allowed.
    assert_eq!(proxy.cli(&["CONFIG", "GET", "hash-max-listpack-entries"]), "hash-max-listpack-entries\n512");
    // A user allowed to: every node.
    let ops = redis::Client::open(format!("redis://ops:ops-secret@{}", proxy.addr)).unwrap();
    let mut ops = ops.get_multiplexed_async_connection().await.unwrap();
    let out: String =
        redis::cmd("CONFIG").arg(&["SET", "hash-max-listpack-entries", "5"]).query_async(&mut ops).await.unwrap();
    assert_eq!(out, "OK");
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in every_node(&cluster) {
        while cluster.cli(p, &["CONFIG", "GET", "hash-max-listpack-entries"]) != "hash-max-listpack-entries\n5" {
            assert!(Instant::now() < deadline, "node {p} did not get the setting");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_kill_and_function_kill_reach_the_busy_node() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut admin = proxy.client().await;
    let ok: String =
        redis::cmd("CONFIG").arg(&["SET", "busy-reply-threshold", "10"]).query_async(&mut admin).await.unwrap();
    assert_eq!(ok, "OK");
    let notbusy = redis::cmd("SCRIPT").arg("KILL").query_async::<String>(&mut admin).await.unwrap_err();
    assert!(notbusy.to_string().contains("No scripts in execution"), "{notbusy}");

    // (Asked before a node gets busy: a busy node answers CLUSTER NODES with BUSY.)
    let primaries = cluster.primaries();
    for (start, kill) in [(vec!["EVAL", "while true do end", "0"], "SCRIPT"), (vec!["FCALL", "spin", "0"], "FUNCTION")]
    {
        if kill == "FUNCTION" {
            let lib = "#!lua name=spinlib\nredis.register_function{function_name='spin', callback=function() while true do end end, flags={'no-writes'}}";
            let _: String =
                redis::cmd("FUNCTION").arg(&["LOAD", "REPLACE", lib]).query_async(&mut admin).await.unwrap();
        }
        // The script runs on some primary, on a connection other clients share.
        let busy = tokio::spawn({
            let addr = proxy.addr.clone();
            async move {
                let mut c = redis::Client::open(format!("redis://{addr}"))
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                redis::cmd(start[0]).arg(&start[1..]).query_async::<redis::Value>(&mut c).await
            }
        });
        // Wait until some node says it is busy.
        let deadline = Instant::now() + Duration::from_secs(10);
        let busy_node = loop {
            let found = primaries.iter().copied().find(|&p| {
                let out = cluster.cli_command(p).arg("PING").output().unwrap();
                String::from_utf8_lossy(&out.stdout).contains("BUSY")
                    || String::from_utf8_lossy(&out.stderr).contains("BUSY")
            });
            if let Some(p) = found {
                break p;
            }
            if Instant::now() >= deadline {
                panic!("no node got busy");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // KILL through slotway reaches it, though its shared connection is stuck behind the script.
        let killed: String = tokio::time::timeout(
            Duration::from_secs(10),
            redis::cmd(kill).arg("KILL").query_async(&mut proxy.client().await),
        )
        .await
        .expect("KILL answered in time")
        .unwrap();
        assert_eq!(killed, "OK", "{kill} KILL");
        let err = tokio::time::timeout(Duration::from_secs(10), busy).await.unwrap().unwrap().unwrap_err();
        assert!(err.to_string().to_lowercase().contains("killed"), "{err}");
        assert_eq!(cluster.cli(busy_node, &["PING"]), "PONG");
        let pong: String = redis::cmd("PING").query_async(&mut admin).await.unwrap();
        assert_eq!(pong, "PONG");
        let _: Option<String> = admin.get("after-kill").await.unwrap();
    }
}

/// A RESP connection through slotway, for commands whose replies the `redis` crate would interpret.
fn raw(proxy: &Proxy) -> std::net::TcpStream {
    proxy.tcp()
}

fn call(s: &mut std::net::TcpStream, args: &[&str]) -> String {
    use std::io::{Read, Write};
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    // One reply: read until a whole RESP value parses.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let bytes = bytes::Bytes::copy_from_slice(&buf);
        if let Ok(Some((_, used))) = resp::Value::parse(&bytes, &resp::Limits::default()) {
            assert_eq!(used, buf.len(), "one reply");
            return String::from_utf8_lossy(&buf).into_owned();
        }
        let n = s.read(&mut chunk).expect("read a reply");
        assert!(n > 0, "connection closed; got {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn acl_setuser_and_deluser_change_slotways_users() {
    let cluster = Cluster::start(ClusterOpts::default());
    // No [[users]]: the implicit default user, which SETUSER adds to (as on a Redis without users).
    let proxy = Proxy::start(&cluster, &[]);
    let mut admin = raw(&proxy);
    assert_eq!(call(&mut admin, &["ACL", "SETUSER", "bob", "on", ">123", "+@read", "+@connection", "~b:*"]), "+OK\r\n");
    assert_eq!(
        call(&mut admin, &["ACL", "SETUSER", "bob", "+nosuch"]),
        "-ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL\r\n"
    );
    assert_eq!(call(&mut admin, &["ACL", "USERS"]), "*2\r\n$3\r\nbob\r\n$7\r\ndefault\r\n");
    assert_eq!(call(&mut admin, &["SET", "b:1", "v"]), "+OK\r\n", "the default user keeps every permission");
    let mut bob = raw(&proxy);
    assert_eq!(
        call(&mut bob, &["AUTH", "bob", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(call(&mut bob, &["AUTH", "bob", "123"]), "+OK\r\n");
    assert_eq!(
        call(&mut bob, &["ACL", "WHOAMI"]),
        "-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n"
    );
    assert_eq!(call(&mut bob, &["GET", "b:1"]), "$1\r\nv\r\n");
    assert_eq!(
        call(&mut bob, &["GET", "other"]),
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    );
    assert_eq!(
        call(&mut bob, &["SET", "b:1", "x"]),
        "-NOPERM this user has no permissions to run the 'set' command\r\n"
    );
    // Later rules add to the user; its connected client gets them at its next command.
    assert_eq!(call(&mut admin, &["ACL", "SETUSER", "bob", "+set", "+acl|whoami"]), "+OK\r\n");
    assert_eq!(call(&mut bob, &["SET", "b:1", "x"]), "+OK\r\n");
    assert_eq!(call(&mut bob, &["ACL", "WHOAMI"]), "$3\r\nbob\r\n");
    let list = call(&mut admin, &["ACL", "LIST"]);
    assert!(list.contains("user bob on #a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3 ~b:* resetchannels -@all +@read +@connection +set +acl|whoami"), "{list}");
    // DELUSER: its clients are disconnected, and it can't log in any more.
    assert_eq!(call(&mut admin, &["ACL", "DELUSER", "bob", "nobody"]), ":1\r\n");
    assert_eq!(call(&mut admin, &["ACL", "DELUSER", "default"]), "-ERR The 'default' user cannot be removed\r\n");
    {
        // What it sent after the deletion is refused, and the connection closes.
        use std::io::{Read, Write};
        bob.write_all(b"PING\r\n").unwrap();
        let mut got = Vec::new();
        let _ = bob.read_to_end(&mut got);
        assert_eq!(String::from_utf8_lossy(&got), "-NOAUTH Authentication required.\r\n", "then closed");
    }
    let mut again = raw(&proxy);
    assert_eq!(
        call(&mut again, &["AUTH", "bob", "123"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(call(&mut again, &["PING"]), "+PONG\r\n");
}

#[test]
fn users_created_at_run_time_are_provisioned_on_the_nodes() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(
        &config,
        "[auth]\nprovision_new_users = true\n\n[[users]]\nname = \"default\"\nrules = \"on nopass ~* &* +@all\"\n",
    )
    .unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));
    let mut admin = raw(&proxy);
    // Redis's own suite does this ("Script ACL check"): a restricted user whose scripts the nodes confine.
    assert_eq!(call(&mut admin, &["ACL", "SETUSER", "bob", "on", ">123", "+@scripting", "+set", "~x*"]), "+OK\r\n");
    for p in every_node(&cluster) {
        let users = cluster.cli(p, &["ACL", "USERS"]);
        assert!(users.lines().any(|l| l == "slotway:bob"), "node {p}: {users}");
    }
    let mut bob = raw(&proxy);
    assert_eq!(call(&mut bob, &["AUTH", "bob", "123"]), "+OK\r\n");
    let check = |cmd: &str| format!("return redis.acl_check_cmd({cmd})");
    assert_eq!(call(&mut bob, &["EVAL", &check("'set','xx',1"), "1", "xx"]), ":1\r\n");
    assert_eq!(call(&mut bob, &["EVAL", &check("'hset','xx','f',1"), "1", "xx"]), "$-1\r\n");
    assert_eq!(call(&mut bob, &["EVAL", &check("'set','yy',1"), "0"]), "$-1\r\n");
    let err = call(&mut bob, &["EVAL", "return redis.call('set','yy',1)", "0"]);
    assert!(err.starts_with('-') && err.contains("can't access at least one of the keys"), "{err}");
    // A change reaches the nodes before it is confirmed.
    assert_eq!(call(&mut admin, &["ACL", "SETUSER", "bob", "+hset"]), "+OK\r\n");
    assert_eq!(call(&mut bob, &["EVAL", &check("'hset','xx','f',1"), "1", "xx"]), ":1\r\n");
    // Deleted: its node user loses this process's password.
    assert_eq!(call(&mut admin, &["ACL", "DELUSER", "bob"]), ":1\r\n");
    for p in every_node(&cluster) {
        let list = cluster.cli(p, &["ACL", "LIST"]);
        let line = list.lines().find(|l| l.starts_with("user slotway:bob ")).unwrap_or("");
        assert!(!line.contains('#'), "node {p} still has a password for slotway:bob: {line}");
    }
}

/// The next whole RESP frame from `s` (within 10 s), as its raw text.
fn next_frame(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> String {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = bytes::Bytes::copy_from_slice(buf);
        if let Ok(Some((_, used))) = resp::Value::parse(&bytes, &resp::Limits::default()) {
            let frame = String::from_utf8_lossy(&buf[..used]).into_owned();
            buf.drain(..used);
            return frame;
        }
        assert!(Instant::now() < deadline, "no whole frame; have {:?}", String::from_utf8_lossy(buf));
        let mut chunk = [0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn monitor_streams_every_clients_commands_as_redis_prints_them() {
    use std::io::Write;
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut m = raw(&proxy);
    assert_eq!(call(&mut m, &["MONITOR"]), "+OK\r\n");
    let mut c = raw(&proxy);
    let caddr = c.local_addr().unwrap().to_string();
    let keys = cluster.keys_on_every_primary("mon:");
    for (_, k) in &keys {
        assert_eq!(call(&mut c, &["SET", k, "a \"b\"\n"]), "+OK\r\n");
    }
    call(&mut c, &["CONFIG", "GET", "maxmemory"]);
    call(&mut c, &["AUTH", "default", "secret"]);
    call(&mut c, &["PING"]);
    let mut buf = Vec::new();
    for (_, k) in &keys {
        let line = next_frame(&mut m, &mut buf);
        let (time, rest) = line.strip_prefix('+').unwrap().split_once(' ').unwrap();
        let (secs, micros) = time.split_once('.').unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(now.abs_diff(secs.parse().unwrap()) < 60 && micros.len() == 6, "{line}");
        assert_eq!(rest, format!("[0 {caddr}] \"SET\" \"{k}\" \"a \\\"b\\\"\\n\"\r\n"));
    }
    // CONFIG is administrative: not shown. AUTH's arguments are redacted.
    assert!(next_frame(&mut m, &mut buf).ends_with(&format!("[0 {caddr}] \"AUTH\" \"(redacted)\" \"(redacted)\"\r\n")));
    assert!(next_frame(&mut m, &mut buf).ends_with(&format!("[0 {caddr}] \"PING\"\r\n")));
    // The monitor's own commands still run and show; RESET leaves MONITOR mode.
    m.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let got = [next_frame(&mut m, &mut buf), next_frame(&mut m, &mut buf)];
    assert!(got.iter().any(|f| f == "+PONG\r\n") && got.iter().any(|f| f.ends_with("\"PING\"\r\n")), "{got:?}");
    m.write_all(b"*1\r\n$5\r\nRESET\r\n").unwrap();
    let first = next_frame(&mut m, &mut buf);
    let reset = if first.ends_with("\"RESET\"\r\n") { next_frame(&mut m, &mut buf) } else { first };
    assert_eq!(reset, "+RESET\r\n");
    call(&mut c, &["PING"]);
    assert_eq!(call(&mut m, &["PING"]), "+PONG\r\n", "no line for the other client's PING after RESET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unblock_reaches_the_blocked_command_on_its_node() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut admin = proxy.client().await;
    for (_, list) in cluster.keys_on_every_primary("ub:") {
        for (how, want) in [(None, "nil"), (Some("TIMEOUT"), "nil"), (Some("ERROR"), "UNBLOCKED")] {
            let mut blocked = proxy.client().await;
            let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut blocked).await.unwrap();
            let list = list.clone();
            let waiting = tokio::spawn(async move {
                redis::cmd("BLPOP")
                    .arg(&[list.as_str(), "0"])
                    .query_async::<Option<(String, String)>>(&mut blocked)
                    .await
            });
            // Until it is blocked on its node, UNBLOCK answers 0, as Redis does for a client that isn't blocked.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut cmd = redis::cmd("CLIENT");
                cmd.arg("UNBLOCK").arg(id);
                if let Some(h) = how {
                    cmd.arg(h);
                }
                let n: i64 = cmd.query_async(&mut admin).await.unwrap();
                if n == 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "never unblocked");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let got = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
            match want {
                "nil" => assert_eq!(got.unwrap(), None, "{how:?}"),
                _ => assert!(got.unwrap_err().to_string().contains("client unblocked via CLIENT UNBLOCK"), "{how:?}"),
            }
        }
    }
    let n: i64 = redis::cmd("CLIENT").arg(&["UNBLOCK", "999999"]).query_async(&mut admin).await.unwrap();
    assert_eq!(n, 0, "no such client");
    let err = redis::cmd("CLIENT").arg(&["UNBLOCK", "1", "SOON"]).query_async::<i64>(&mut admin).await.unwrap_err();
    assert!(err.to_string().contains("CLIENT UNBLOCK reason should be TIMEOUT or ERROR"), "{err}");
    let err = redis::cmd("CLIENT").arg(&["UNBLOCK", "asd"]).query_async::<i64>(&mut admin).await.unwrap_err();
    assert!(err.to_string().contains("value is not an integer or out of range"), "{err}");
}

#[test]
fn hello_reports_the_nodes_version_and_deep_replies_pass_through() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let node_version = cluster
        .cli(cluster.primaries()[0], &["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(|v| v.trim().to_string()))
        .unwrap();
    let mut c = raw(&proxy);
    let hello = call(&mut c, &["HELLO", "3"]);
    assert!(hello.contains(&format!("$7\r\nversion\r\n${}\r\n{node_version}\r\n", node_version.len())), "{hello}");
    // A script returning a table that holds itself: arrays nested until Lua's stack ran out (far deeper than
    // slotway's limit for client requests), then the error; Redis's own suite drains it the same way.
    let reply = {
        use std::io::{Read, Write};
        let script = "local a = {}; local b = {a}; a[1] = b; return a";
        c.write_all(format!("*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n", script.len()).as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 65536];
        while !got.ends_with(b"\r\n") || !got.windows(10).any(|w| w == b"-ERR reach") {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(got).unwrap()
    };
    let depth = reply.matches("*1\r\n").count();
    assert!(depth > 500, "nested {depth} deep");
    assert!(reply.ends_with("-ERR reached lua stack limit\r\n"), "{}", &reply[reply.len().saturating_sub(80)..]);
    assert_eq!(call(&mut c, &["PING"]), "+PONG\r\n", "the connection is still usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_holds_slotways_clients_until_it_ends() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut admin = proxy.client().await;
    let mut c = proxy.client().await;
    let () = c.set("p:k", "1").await.unwrap();
    // WRITE: reads go on, writes wait until CLIENT UNPAUSE.
    let ok: String = redis::cmd("CLIENT").arg(&["PAUSE", "20000", "WRITE"]).query_async(&mut admin).await.unwrap();
    assert_eq!(ok, "OK");
    let v: String = tokio::time::timeout(Duration::from_secs(5), c.get("p:k")).await.expect("reads go on").unwrap();
    assert_eq!(v, "1");
    let mut w = proxy.client().await;
    let write = tokio::spawn(async move { w.set::<_, _, ()>("p:k", "2").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the write waits");
    assert_eq!(cluster.cli(cluster.node_for_key("p:k"), &["GET", "p:k"]), "1", "and has not reached the node");
    let ok: String = redis::cmd("CLIENT").arg("UNPAUSE").query_async(&mut admin).await.unwrap();
    assert_eq!(ok, "OK");
    tokio::time::timeout(Duration::from_secs(5), write).await.expect("runs at UNPAUSE").unwrap().unwrap();
    let v: String = c.get("p:k").await.unwrap();
    assert_eq!(v, "2");
    // ALL: everything waits until the timeout.
    let ok: String = redis::cmd("CLIENT").arg(&["PAUSE", "400", "ALL"]).query_async(&mut admin).await.unwrap();
    assert_eq!(ok, "OK");
    let started = Instant::now();
    let v: String = c.get("p:k").await.unwrap();
    assert_eq!(v, "2");
    assert!(started.elapsed() >= Duration::from_millis(300), "a read waited {:?}", started.elapsed());
    let err = redis::cmd("CLIENT").arg(&["PAUSE", "-1"]).query_async::<String>(&mut admin).await.unwrap_err();
    assert!(err.to_string().contains("timeout is negative"), "{err}");
}

#[test]
fn config_set_in_a_transaction_and_commands_redis_refuses_there() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut c = raw(&proxy);
    // Redis's own error for a command not allowed in MULTI, before slotway's refusal of SAVE/SHUTDOWN.
    assert_eq!(call(&mut c, &["MULTI"]), "+OK\r\n");
    assert_eq!(call(&mut c, &["SET", "tx:a", "1"]), "+QUEUED\r\n");
    assert_eq!(call(&mut c, &["SAVE"]), "-ERR Command not allowed inside a transaction\r\n");
    assert_eq!(call(&mut c, &["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    // CONFIG SET inside MULTI: part of the transaction (its reply is EXEC's), then on every other node.
    assert_eq!(call(&mut c, &["MULTI"]), "+OK\r\n");
    assert_eq!(call(&mut c, &["SET", "tx:a", "2"]), "+QUEUED\r\n");
    assert_eq!(call(&mut c, &["CONFIG", "SET", "maxmemory", "bla"]), "+QUEUED\r\n");
    assert_eq!(call(&mut c, &["CONFIG", "SET", "hash-max-listpack-entries", "77"]), "+QUEUED\r\n");
    let exec = call(&mut c, &["EXEC"]);
    assert!(exec.starts_with("*3\r\n+OK\r\n-ERR CONFIG SET failed") && exec.ends_with("+OK\r\n"), "{exec}");
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in every_node(&cluster) {
        while cluster.cli(p, &["CONFIG", "GET", "hash-max-listpack-entries"]) != "hash-max-listpack-entries\n77" {
            assert!(Instant::now() < deadline, "node {p} did not get the setting");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(cluster.cli(p, &["CONFIG", "GET", "maxmemory"]), "maxmemory\n0");
    }
    // What slotway doesn't pass on is refused while queueing, as outside a transaction.
    assert_eq!(call(&mut c, &["MULTI"]), "+OK\r\n");
    assert!(call(&mut c, &["CONFIG", "SET", "requirepass", "x"]).contains("is not sent to the nodes"));
    assert!(call(&mut c, &["EXEC"]).starts_with("-EXECABORT"));
}

#[test]
fn a_script_running_long_makes_the_endpoint_busy_as_one_server() {
    use std::io::Write;
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut admin = raw(&proxy);
    assert_eq!(call(&mut admin, &["CONFIG", "SET", "busy-reply-threshold", "50"]), "+OK\r\n");
    let (_, xx) = cluster.keys_on_every_primary("busy:").remove(0);
    assert_eq!(call(&mut admin, &["SET", &xx, "1"]), "+OK\r\n");
    let mut tx = raw(&proxy);
    assert_eq!(call(&mut tx, &["MULTI"]), "+OK\r\n");
    assert_eq!(call(&mut tx, &["INCR", &xx]), "+QUEUED\r\n");
    // A keyless script that never ends, on some node; its client pipelines a PING behind it.
    let mut spinner = raw(&proxy);
    let script = "while true do end";
    spinner
        .write_all(
            format!("*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n*1\r\n$4\r\nPING\r\n", script.len()).as_bytes(),
        )
        .unwrap();
    let busy = "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n";
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&mut admin, &["PING"]) != busy {
        assert!(Instant::now() < deadline, "never busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every other client, whatever node its command is for; EXEC is refused and its transaction discarded.
    assert_eq!(call(&mut admin, &["GET", &xx]), busy);
    assert_eq!(call(&mut tx, &["EXEC"]), format!("-EXECABORT Transaction discarded because of: {}", &busy[1..]));
    // What a busy server allows still runs: SCRIPT KILL reaches the node.
    assert_eq!(call(&mut admin, &["SCRIPT", "KILL"]), "+OK\r\n");
    let mut buf = Vec::new();
    assert!(next_frame(&mut spinner, &mut buf).contains("killed by user"));
    assert_eq!(next_frame(&mut spinner, &mut buf), "+PONG\r\n", "its own pipelined PING, after the script");
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&mut admin, &["PING"]) != "+PONG\r\n" {
        assert!(Instant::now() < deadline, "still busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(call(&mut admin, &["GET", &xx]), "$1\r\n1\r\n", "the transaction was discarded");
    assert_eq!(call(&mut tx, &["PING"]), "+PONG\r\n", "and its client left MULTI");
}

#[test]
fn with_busy_script_scope_node_only_the_scripts_node_is_busy() {
    use std::io::Write;
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(&config, "[client]\nbusy_script_scope = \"node\"\n").unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));
    let mut admin = raw(&proxy);
    assert_eq!(call(&mut admin, &["CONFIG", "SET", "busy-reply-threshold", "50"]), "+OK\r\n");
    let mut spinner = raw(&proxy);
    let script = "while true do end";
    spinner.write_all(format!("*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n", script.len()).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(call(&mut admin, &["PING"]), "+PONG\r\n");
    assert_eq!(call(&mut admin, &["SCRIPT", "KILL"]), "+OK\r\n");
}

#[test]
fn a_blocked_xreadgroup_whose_stream_is_deleted_gets_the_nodes_answer() {
    use std::io::Write;
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut admin = raw(&proxy);
    let (_, stream) = cluster.keys_on_every_primary("xg:").remove(0);
    assert_eq!(call(&mut admin, &["XGROUP", "CREATE", &stream, "g", "$", "MKSTREAM"]), "+OK\r\n");
    let mut reader = raw(&proxy);
    let req = ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", &stream, ">"];
    let mut frame = format!("*{}\r\n", req.len());
    for a in req {
        frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    reader.write_all(frame.as_bytes()).unwrap();
    let node = cluster.node_for_key(&stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while node_info_field(&cluster, node, "clients", "blocked_clients").as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(call(&mut admin, &["DEL", &stream]), ":1\r\n");
    // Redis's own answer, not a retry (which would get NOGROUP).
    let mut buf = Vec::new();
    assert_eq!(next_frame(&mut reader, &mut buf), "-UNBLOCKED the stream key no longer exists\r\n");
}

#[test]
fn a_script_without_declared_keys_runs_where_the_client_last_worked() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut c = raw(&proxy);
    // On every shard in turn: a keyed command, then a script that touches that key without declaring it, as a
    // single server allows (a cluster node refuses keys it doesn't own).
    for (_, k) in cluster.keys_on_every_primary("undeclared:") {
        assert_eq!(call(&mut c, &["SET", &k, "v"]), "+OK\r\n");
        let script = format!("return redis.call('get', '{k}')");
        assert_eq!(call(&mut c, &["EVAL", &script, "0"]), "$1\r\nv\r\n", "{k}");
    }
}
