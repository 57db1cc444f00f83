//! A user confined to some keys (and channels) stays confined, against a real TLS+AUTH cluster with replicas:
//! scripts and functions (refused for a restricted user without a cluster user of its own; checked by the nodes
//! for a provisioned one), SORT's BY/GET patterns, multi-key commands, transactions, pipelines after a failed
//! AUTH; channel rules with Redis 7's default; the ACL command, compared with what a real node answers.
//! Every refusal is checked on the nodes directly: nothing was written.

mod support;
mod support_raw;

use std::process::Command;
use std::time::{Duration, Instant};
use support::*;
use support_raw::{arr, bulk, err, int, ok, queued, Raw, Reply};

fn sha256_hex(s: &str) -> String {
    slotway::auth::sha256(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn start_with(cluster: &Cluster, dir: &std::path::Path, config_text: &str) -> Proxy {
    let config = dir.join(format!("slotway-{}.toml", free_port()));
    std::fs::write(&config, config_text).unwrap();
    let mut args = Proxy::base_args(cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    Proxy::start_raw(&args, &Proxy::password_env(cluster))
}

/// A raw client to slotway, authenticated as `user`.
fn login(proxy: &Proxy, user: &str, password: &str) -> Raw {
    let mut c = Raw::connect(&proxy.addr);
    assert_eq!(c.call(&["AUTH", user, password]), ok(), "AUTH {user}");
    c
}

/// Whether `key` exists, asked of the primary that serves it.
fn exists(cluster: &Cluster, key: &str) -> bool {
    cluster.cli(cluster.node_for_key(key), &["EXISTS", key]) == "1"
}

fn error_starting(reply: &Reply, prefix: &str) -> bool {
    matches!(reply, Reply::Error(e) if e.starts_with(prefix))
}

/// redis-cli against slotway, logged in as `user` (the password through the environment).
fn proxy_cli(proxy: &Proxy, user: &str, password: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["60", "redis-cli", "-h", "127.0.0.1", "-p", &proxy.port.to_string(), "--user", user])
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const SCRIPT_NOPERM: &str = "NOPERM this user has no permissions to run the '";

#[test]
fn restricted_user_cannot_escape_its_keys() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_with(
        &cluster,
        dir.path(),
        &format!(
            r#"
[[users]]
name = "app"
passwords_sha256 = ["{}"]
rules = "on +@all ~app:* &app:*"

[[users]]
name = "admin"
passwords_sha256 = ["{}"]
rules = "on +@all ~* &*"
"#,
            sha256_hex("app-pw"),
            sha256_hex("admin-pw")
        ),
    );
    let mut admin = login(&proxy, "admin", "admin-pw");
    let mut app = login(&proxy, "app", "app-pw");
    // Every key below shares one slot ({t}), so a command that got past slotway would run on its node.
    for cmd in [
        &["SET", "app:{t}a", "1"][..],
        &["RPUSH", "app:{t}l", "3", "1", "2"],
        &["SADD", "app:{t}s", "m"],
        &["SET", "other:{t}secret", "s3cret"],
        &["RPUSH", "other:{t}l2", "x"],
        &["SET", "w_1", "1"],
    ] {
        assert!(!matches!(admin.call(cmd), Reply::Error(_)), "{cmd:?}");
    }
    let nokey = err("NOPERM this user has no permissions to access one of the keys used as arguments");
    let write_other = "return redis.call('set','other:{t}e','x')";
    let read_other = "return redis.call('get','other:{t}secret')";

    // Multi-key commands: every key is checked, read and written alike.
    for cmd in [
        &["COPY", "app:{t}a", "other:{t}e"][..],
        &["COPY", "other:{t}secret", "app:{t}c"],
        &["RENAME", "app:{t}a", "other:{t}e"],
        &["RENAME", "other:{t}secret", "app:{t}c"],
        &["LMOVE", "app:{t}l", "other:{t}e", "LEFT", "LEFT"],
        &["LMOVE", "other:{t}l2", "app:{t}l", "LEFT", "LEFT"],
        &["SMOVE", "app:{t}s", "other:{t}e", "m"],
        &["SORT", "app:{t}l", "STORE", "other:{t}e"],
        &["EVAL", "return 1", "1", "other:{t}e"],
    ] {
        assert_eq!(app.call(cmd), nokey, "{cmd:?}");
    }

    // Scripts and functions: slotway can't see what they touch, and they would run as slotway's own cluster user.
    let sha = match app.call(&["SCRIPT", "LOAD", write_other]) {
        Reply::Bulk(Some(s)) => String::from_utf8(s).unwrap(),
        other => panic!("SCRIPT LOAD is allowed by the rules: {other:?}"),
    };
    let library = "#!lua name=esc\nredis.register_function('esc', function(keys, args) \
                   return redis.call('set','other:{t}e','x') end)\n\
                   redis.register_function{function_name='esc_ro', callback=function(keys, args) \
                   return redis.call('get','other:{t}secret') end, flags={'no-writes'}}";
    assert_eq!(app.call(&["FUNCTION", "LOAD", library]), bulk("esc"), "FUNCTION LOAD follows its categories");
    for cmd in [
        &["EVAL", write_other, "0"][..],
        &["EVAL", write_other, "1", "app:{t}a"],
        &["EVAL", read_other, "1", "app:{t}a"],
        &["EVAL_RO", read_other, "1", "app:{t}a"],
        &["EVALSHA", &sha, "1", "app:{t}a"],
        &["EVALSHA_RO", &sha, "0"],
        &["FCALL", "esc", "1", "app:{t}a"],
        &["FCALL_RO", "esc_ro", "1", "app:{t}a"],
    ] {
        let reply = app.call(cmd);
        assert!(error_starting(&reply, SCRIPT_NOPERM), "{cmd:?}: {reply:?}");
        let Reply::Error(text) = reply else { unreachable!() };
        // A read-only script can't publish: only its key rules matter to it.
        let want = if cmd[0].ends_with("_RO") { "its key rules restrict it" } else { "its key and channel rules" };
        assert!(text.contains(want), "{cmd:?}: {text}");
        assert!(text.contains("[users.upstream]") && text.contains("provision_upstream = true"), "{text}");
    }
    // Not inside a transaction either: the refusal while queueing aborts it, so the allowed SET doesn't run.
    let replies = app.pipeline(&[
        &["MULTI"],
        &["SET", "app:{t}m", "1"],
        &["FCALL", "esc", "1", "app:{t}a"],
        &["EVAL", write_other, "1", "app:{t}a"],
        &["EXEC"],
    ]);
    assert_eq!(replies[..2], [ok(), queued()]);
    assert!(error_starting(&replies[2], SCRIPT_NOPERM) && error_starting(&replies[3], SCRIPT_NOPERM));
    assert_eq!(replies[4], err("EXECABORT Transaction discarded because of previous errors."));

    // SORT's BY and GET read other keys: Redis 7 requires access to every key, with its own wording.
    let by = err("ERR BY option of SORT denied due to insufficient ACL permissions.");
    let get = err("ERR GET option of SORT denied due to insufficient ACL permissions.");
    assert_eq!(app.call(&["SORT", "app:{t}l", "BY", "w_*"]), by);
    assert_eq!(app.call(&["SORT", "app:{t}l", "GET", "#"]), get);
    assert_eq!(app.call(&["SORT_RO", "app:{t}l", "LIMIT", "0", "2", "GET", "other:*"]), get);
    assert_eq!(app.call(&["SORT", "app:{t}l"]), arr(vec![bulk("1"), bulk("2"), bulk("3")]));
    assert_eq!(app.call(&["SORT", "app:{t}l", "BY", "nosort"]), arr(vec![bulk("3"), bulk("1"), bulk("2")]));

    // Pipelined after a failed AUTH: nothing runs.
    let mut stranger = Raw::connect(&proxy.addr);
    let replies = stranger.pipeline(&[
        &["AUTH", "app", "wrong"],
        &["EVAL", write_other, "0"],
        &["COPY", "app:{t}a", "other:{t}e"],
        &["SET", "other:{t}e", "1"],
    ]);
    assert_eq!(replies[0], err("WRONGPASS invalid username-password pair or user is disabled."));
    for r in &replies[1..] {
        assert_eq!(*r, err("NOAUTH Authentication required."));
    }

    // Nothing was written or moved, asked of the node itself.
    for key in ["other:{t}e", "app:{t}c", "app:{t}m"] {
        assert!(!exists(&cluster, key), "{key} was written");
    }
    let node = cluster.node_for_key("app:{t}a");
    assert_eq!(cluster.cli(node, &["GET", "app:{t}a"]), "1");
    assert_eq!(cluster.cli(node, &["LLEN", "app:{t}l"]), "3");
    assert_eq!(cluster.cli(node, &["SISMEMBER", "app:{t}s", "m"]), "1");
    assert_eq!(cluster.cli(node, &["LLEN", "other:{t}l2"]), "1");

    // ACL DRYRUN says why, ACL LOG has the denials.
    let dry = admin.call(&["ACL", "DRYRUN", "app", "EVAL", write_other, "0"]);
    assert!(
        matches!(&dry, Reply::Bulk(Some(t)) if t.starts_with(b"This user has no permissions to run the 'eval' command: ")),
        "{dry:?}"
    );
    let Reply::Array(Some(log)) = admin.call(&["ACL", "LOG"]) else { panic!("ACL LOG") };
    let text = format!("{log:?}");
    assert!(text.contains("\"other:{t}e\"") && text.contains("\"fcall\"") && text.contains("\"auth\""), "{text}");

    // The same script from a user whose rules restrict nothing runs (as slotway's cluster user): the refusal
    // above is what kept `app` in.
    assert_eq!(admin.call(&["EVAL", write_other, "1", "app:{t}a"]), ok());
    assert!(exists(&cluster, "other:{t}e"));
}

#[test]
fn provisioned_users_are_confined_by_the_nodes() {
    let mut cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config_text = format!(
        r#"
[[users]]
name = "alice"
passwords_sha256 = ["{}"]
rules = "on +@all ~app:* &chan:*"
provision_upstream = true
"#,
        sha256_hex("alice-pw")
    );
    let proxy = start_with(&cluster, dir.path(), &config_text);
    let hashes = |line: &str| line.split(' ').filter(|w| w.starts_with('#')).count();
    // On every node, replicas included: the user's rules, one password (this process's).
    for port in cluster.live_ports() {
        let line = alice_line(&cluster, port).unwrap_or_else(|| panic!("node {port} has no slotway:alice"));
        assert!(line.starts_with("user slotway:alice on #"), "{line}");
        assert!(
            line.contains(" ~app:* ") && line.contains(" resetchannels &chan:* ") && line.contains("+@all"),
            "{line}"
        );
        assert_eq!(hashes(&line), 1, "{line}");
    }

    let mut alice = login(&proxy, "alice", "alice-pw");
    let key_error = "ERR The user executing the script can't access at least one of the keys";
    // Allowed keys work; others fail inside the script with the node's own error.
    assert_eq!(alice.call(&["EVAL", "return redis.call('set','app:{t}x','1')", "1", "app:{t}y"]), ok());
    let reply = alice.call(&["EVAL", "return redis.call('set','other:{t}x','1')", "1", "app:{t}y"]);
    assert!(error_starting(&reply, key_error), "{reply:?}");
    let reply = alice.call(&["EVAL", "return redis.call('set','other:k0','1')", "0"]);
    assert!(error_starting(&reply, key_error), "{reply:?}");
    assert_eq!(alice.call(&["EVAL_RO", "return redis.call('get','app:{t}x')", "1", "app:{t}y"]), bulk("1"));
    let reply = alice.call(&["EVAL_RO", "return redis.call('get','other:{t}x')", "1", "app:{t}y"]);
    assert!(error_starting(&reply, key_error), "{reply:?}");
    let reply = alice.call(&["EVAL", "return redis.call('publish','other','x')", "0"]);
    assert!(error_starting(&reply, "ERR The user executing the script can't publish to the channel"), "{reply:?}");
    assert_eq!(alice.call(&["EVAL", "return redis.call('publish','chan:1','x')", "0"]), int(0));
    let library = "#!lua name=lib\n\
                   redis.register_function('own', function(keys) return redis.call('set',keys[1],'f') end)\n\
                   redis.register_function('esc', function(keys) return redis.call('set','other:{t}f','f') end)";
    assert_eq!(alice.call(&["FUNCTION", "LOAD", library]), bulk("lib"));
    assert_eq!(alice.call(&["FCALL", "own", "1", "app:{t}f"]), ok());
    let reply = alice.call(&["FCALL", "esc", "1", "app:{t}f"]);
    assert!(error_starting(&reply, key_error), "{reply:?}");
    // slotway's own rules still answer first.
    assert_eq!(
        alice.call(&["GET", "other:{t}x"]),
        err("NOPERM this user has no permissions to access one of the keys used as arguments")
    );
    for key in ["other:{t}x", "other:k0", "other:{t}f"] {
        assert!(!exists(&cluster, key), "{key} was written");
    }
    assert_eq!(cluster.cli(cluster.node_for_key("app:{t}f"), &["GET", "app:{t}f"]), "f");

    // What slotway sends on the user's connections is allowed too: NOSCRIPT recovery (SCRIPT LOAD), a
    // transaction, WAIT (its marker key).
    let sha = match alice.call(&["SCRIPT", "LOAD", "return redis.call('get',KEYS[1])"]) {
        Reply::Bulk(Some(s)) => String::from_utf8(s).unwrap(),
        other => panic!("SCRIPT LOAD: {other:?}"),
    };
    cluster.cli(cluster.node_for_key("app:{t}x"), &["SCRIPT", "FLUSH"]);
    assert_eq!(alice.call(&["EVALSHA", &sha, "1", "app:{t}x"]), bulk("1"));
    assert_eq!(alice.pipeline(&[&["MULTI"], &["SET", "app:{t}t", "1"], &["EXEC"]])[2], arr(vec![ok()]));
    assert_eq!(alice.call(&["WAIT", "1", "2000"]), int(1));
    let node = cluster.node_for_key("app:{t}x");
    assert!(cluster.cli(node, &["CLIENT", "LIST"]).contains("user=slotway:alice"), "connections as slotway:alice");

    // A node that restarts forgets the user: slotway provisions it again, and requests through slotway work.
    let replica = cluster.replicas_of(node)[0];
    cluster.kill_node(replica);
    cluster.restart_node(replica);
    cluster.kill_node(node);
    cluster.restart_node(node);
    let deadline = Instant::now() + Duration::from_secs(20);
    while alice_line(&cluster, node).is_none() || alice_line(&cluster, replica).is_none() {
        assert!(Instant::now() < deadline, "not provisioned again after a restart\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.wait_healthy(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match alice.call(&["EVAL", "return redis.call('set','app:{t}r','1')", "1", "app:{t}y"]) {
            r if r == ok() => break,
            r => assert!(Instant::now() < deadline, "EVAL after the restart: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let reply = alice.call(&["EVAL", "return redis.call('set','other:{t}r','1')", "1", "app:{t}y"]);
    assert!(error_starting(&reply, key_error), "{reply:?}");

    // A node that joins gets the user as soon as slotway sees it, and serves the user's scripts once it has slots.
    let new = cluster.add_node();
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice_line(&cluster, new).is_none() {
        assert!(Instant::now() < deadline, "the new node {new} was not provisioned\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // From a primary that wasn't restarted above, once every node agrees on the cluster again.
    cluster.wait_healthy(Duration::from_secs(30));
    let from = cluster.primaries().into_iter().find(|&p| p != node && p != new).unwrap();
    cluster.reshard(from, new, 20);
    let key = cluster.key_on_node(new, "app:");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match alice.call(&["EVAL", "return redis.call('set',KEYS[1],'new')", "1", &key]) {
            r if r == ok() => break,
            r => assert!(Instant::now() < deadline, "EVAL on the new node: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(cluster.cli(new, &["GET", &key]), "new");

    // A second slotway adds its own password; each removes its own when it shuts down.
    let mut second = start_with(&cluster, dir.path(), &config_text);
    for port in cluster.live_ports() {
        assert_eq!(alice_line(&cluster, port).map(|l| hashes(&l)), Some(2), "node {port}");
    }
    let mut first = proxy;
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", first.log());
    let mut alice2 = login(&second, "alice", "alice-pw");
    assert_eq!(alice2.call(&["EVAL", "return redis.call('set','app:{t}z','2')", "1", "app:{t}y"]), ok());
    for port in cluster.live_ports() {
        assert_eq!(alice_line(&cluster, port).map(|l| hashes(&l)), Some(1), "node {port}");
    }
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", second.log());
    for port in cluster.live_ports() {
        assert_eq!(alice_line(&cluster, port).map(|l| hashes(&l)), Some(0), "node {port}: no password left");
    }
    assert!(!first.log().contains("alice-pw") && !second.log().contains("alice-pw"));

    // Provisioning writes the rules, not only the password: started with other rules, the node users change.
    let third_config = dir.path().join("third.toml");
    std::fs::write(&third_config, config_text.replace("~app:*", "~app2:*")).unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), third_config.display().to_string()]);
    let third = Proxy::start_raw(&args, &Proxy::password_env(&cluster));
    for port in cluster.live_ports() {
        let line = alice_line(&cluster, port).unwrap();
        assert!(line.contains(" ~app2:* ") && !line.contains(" ~app:* "), "node {port}: {line}");
    }
    let mut alice3 = login(&third, "alice", "alice-pw");
    assert_eq!(alice3.call(&["EVAL", "return redis.call('set','app2:{t}q','1')", "1", "app2:{t}y"]), ok());
    let reply = alice3.call(&["EVAL", "return redis.call('set','app:{t}q','1')", "1", "app2:{t}y"]);
    assert!(error_starting(&reply, key_error), "{reply:?}");
    assert!(!exists(&cluster, "app:{t}q"));

    // A reload (SIGHUP) that changes the rules rewrites them on every node before clients use them.
    std::fs::write(&third_config, config_text.replace("~app:*", "~app3:*")).unwrap();
    third.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.live_ports().into_iter().all(|p| alice_line(&cluster, p).is_some_and(|l| l.contains(" ~app3:* "))) {
        assert!(Instant::now() < deadline, "rules not re-provisioned on reload\n{}", third.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    for port in cluster.live_ports() {
        let line = alice_line(&cluster, port).unwrap();
        assert!(!line.contains(" ~app2:* "), "node {port}: {line}");
    }
    assert_eq!(alice3.call(&["EVAL", "return redis.call('set','app3:{t}q','1')", "1", "app3:{t}y"]), ok());
    let reply = alice3.call(&["EVAL", "return redis.call('set','app2:{t}q2','1')", "1", "app3:{t}y"]);
    assert!(error_starting(&reply, key_error), "{reply:?}");
    assert!(!exists(&cluster, "app2:{t}q2"));
    drop(third);

    // An [upstream] user that may not run ACL SETUSER: slotway refuses to start, saying what it needs.
    for port in cluster.live_ports() {
        cluster.cli(port, &["ACL", "SETUSER", "noacl", "on", ">noacl-pw", "+@all", "-@admin", "~*", "&*"]);
    }
    let config = dir.path().join("noacl.toml");
    std::fs::write(&config, &config_text).unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--upstream-user", "noacl", "--config", &config.display().to_string()].map(String::from));
    let (status, log) = Proxy::run_raw(&args, &[("SLOTWAY_UPSTREAM_PASSWORD", "noacl-pw")], Duration::from_secs(20));
    assert!(status.is_some_and(|s| !s.success()), "slotway must refuse to start:\n{log}");
    assert!(log.contains("cannot provision") && log.contains("+acl|setuser") && log.contains("NOPERM"), "{log}");
}

#[test]
fn channel_rules_and_the_redis_7_default() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_with(
        &cluster,
        dir.path(),
        &format!(
            r#"
[[users]]
name = "default"
rules = "on nopass +@all ~*"

[[users]]
name = "news"
passwords_sha256 = ["{}"]
rules = "on +@all -@dangerous ~news:* %R~shared:* &news.* &alerts"

[[users]]
name = "all"
passwords_sha256 = ["{}"]
rules = "on +@all ~* allchannels"
"#,
            sha256_hex("news-pw"),
            sha256_hex("all-pw")
        ),
    );
    let log = proxy.log();
    assert!(log.contains("user=default") && log.contains("has no channels"), "startup note:\n{log}");
    assert!(!log.contains("user=news") && !log.contains("user=all"), "{log}");
    let nochan = err("NOPERM this user has no permissions to access one of the channels used as arguments");
    let confirm = |kind: &str, ch: &str, n: i64| arr(vec![bulk(kind), bulk(ch), int(n)]);

    // Redis 7's default: no channel unless granted.
    let mut anon = Raw::connect(&proxy.addr);
    assert_eq!(anon.call(&["SUBSCRIBE", "x"]), nochan);
    assert_eq!(anon.call(&["PSUBSCRIBE", "*"]), nochan);
    assert_eq!(anon.call(&["PUBLISH", "x", "m"]), nochan);
    assert_eq!(anon.call(&["SPUBLISH", "x", "m"]), nochan);
    assert_eq!(anon.call(&["PING"]), simple_pong(), "not subscribed");

    let mut sub = login(&proxy, "news", "news-pw");
    assert_eq!(sub.call(&["SUBSCRIBE", "news.1", "other"]), nochan, "all or nothing");
    sub.send_all(&[&["SUBSCRIBE", "news.1", "alerts"]]);
    assert_eq!(sub.read_reply(), confirm("subscribe", "news.1", 1));
    assert_eq!(sub.read_reply(), confirm("subscribe", "alerts", 2));
    assert_eq!(sub.call(&["SUBSCRIBE", "other"]), nochan);
    assert_eq!(sub.call(&["PSUBSCRIBE", "news.*"]), confirm("psubscribe", "news.*", 3));
    assert_eq!(sub.call(&["PSUBSCRIBE", "news.a*"]), nochan, "a pattern is compared literally");
    assert_eq!(sub.call(&["SSUBSCRIBE", "news.s"]), confirm("ssubscribe", "news.s", 1));
    assert_eq!(sub.call(&["SSUBSCRIBE", "other"]), nochan);

    let mut publisher = login(&proxy, "news", "news-pw");
    assert_eq!(publisher.call(&["PUBLISH", "other", "m"]), nochan);
    assert_eq!(publisher.call(&["SPUBLISH", "other", "m"]), nochan);
    assert_eq!(publisher.call(&["SPUBLISH", "news.s", "s1"]), int(1));
    assert_eq!(sub.read_reply(), arr(vec![bulk("smessage"), bulk("news.s"), bulk("s1")]));
    let mut all = login(&proxy, "all", "all-pw");
    assert!(matches!(all.call(&["PUBLISH", "news.1", "hello"]), Reply::Int(_)));
    assert_eq!(sub.read_reply(), arr(vec![bulk("message"), bulk("news.1"), bulk("hello")]));
    assert_eq!(sub.read_reply(), arr(vec![bulk("pmessage"), bulk("news.*"), bulk("news.1"), bulk("hello")]));
    assert!(matches!(all.call(&["PUBLISH", "anything", "m"]), Reply::Int(_)), "allchannels");

    // The file can make every channel the default, as Redis's acl-pubsub-default.
    let open = start_with(
        &cluster,
        dir.path(),
        "[auth]\nacl_pubsub_default = \"allchannels\"\n\n[[users]]\nname = \"default\"\nrules = \"on nopass +@all ~*\"\n",
    );
    let mut anyone = Raw::connect(&open.addr);
    assert!(matches!(anyone.call(&["PUBLISH", "x", "m"]), Reply::Int(_)));
    assert_eq!(anyone.call(&["ACL", "GETUSER", "default"]), getuser(&["on", "nopass"], "+@all", "~*", "&*"));
    assert!(!open.log().contains("has no channels"));
}

/// ACL GETUSER's RESP2 reply for a user without passwords.
fn getuser(flags: &[&str], commands: &str, keys: &str, channels: &str) -> Reply {
    arr(vec![
        bulk("flags"),
        arr(flags.iter().map(|f| bulk(f)).collect()),
        bulk("passwords"),
        arr(vec![]),
        bulk("commands"),
        bulk(commands),
        bulk("keys"),
        bulk(keys),
        bulk("channels"),
        bulk(channels),
        bulk("selectors"),
        arr(vec![]),
    ])
}

/// The ACL LIST line of `slotway:alice` on one node, if it has the user (and answers).
fn alice_line(cluster: &Cluster, port: u16) -> Option<String> {
    let list = cluster.try_cli(port, &["ACL", "LIST"]).ok()?;
    list.lines().find(|l| l.starts_with("user slotway:alice ")).map(str::to_string)
}

fn simple_pong() -> Reply {
    support_raw::simple("PONG")
}

#[test]
fn acl_command_answers_as_a_node_would() {
    let cluster = Cluster::start(ClusterOpts { replicas: 0, ..ClusterOpts::default() });
    let dir = tempfile::tempdir().unwrap();
    let rules = "on +@all -@dangerous ~news:* %R~shared:* &news.* &alerts";
    let proxy = start_with(
        &cluster,
        dir.path(),
        &format!(
            r#"
[[users]]
name = "news"
passwords_sha256 = ["{}"]
rules = "{rules}"

[[users]]
name = "all"
passwords_sha256 = ["{}"]
rules = "on +@all ~* &*"
"#,
            sha256_hex("news-pw"),
            sha256_hex("all-pw")
        ),
    );
    // The same user on a real node, for comparison.
    let node = cluster.primaries()[0];
    let mut setuser = vec!["ACL".to_string(), "SETUSER".into(), "news".into(), format!("#{}", sha256_hex("news-pw"))];
    setuser.extend(rules.split(' ').map(String::from));
    let setuser: Vec<&str> = setuser.iter().map(String::as_str).collect();
    assert_eq!(cluster.cli(node, &setuser), "OK");
    let on_node = |args: &[&str]| cluster.cli(node, args);
    let through = |args: &[&str]| proxy_cli(&proxy, "all", "all-pw", args);

    assert_eq!(through(&["ACL", "GETUSER", "news"]), on_node(&["ACL", "GETUSER", "news"]));
    let node_line = on_node(&["ACL", "LIST"]).lines().find(|l| l.starts_with("user news ")).unwrap().to_string();
    assert_eq!(
        through(&["ACL", "LIST"]).lines().collect::<Vec<_>>(),
        [format!("user all on #{} ~* &* +@all", sha256_hex("all-pw")).as_str(), node_line.as_str(),]
    );
    assert_eq!(through(&["ACL", "USERS"]), "all\nnews");
    assert_eq!(through(&["ACL", "WHOAMI"]), "all");
    assert_eq!(proxy_cli(&proxy, "news", "news-pw", &["ACL", "WHOAMI"]), "news");
    for args in [
        &["ACL", "DRYRUN", "news", "GET", "other"][..],
        &["ACL", "DRYRUN", "news", "PUBLISH", "other", "m"],
        &["ACL", "DRYRUN", "news", "FLUSHALL"],
        &["ACL", "DRYRUN", "news", "GET", "news:1"],
        &["ACL", "DRYRUN", "news", "SUBSCRIBE", "news.1", "alerts"],
        &["ACL", "DRYRUN", "nobody", "GET", "x"],
        &["ACL", "DRYRUN", "news", "NOSUCH"],
        &["ACL", "DRYRUN", "news", "GET"],
        &["ACL", "CAT"],
        &["ACL", "CAT", "nosuch"],
        &["ACL", "GETUSER", "nobody"],
        &["ACL", "GETUSER"],
        &["ACL", "GENPASS", "0"],
        &["ACL", "GENPASS", "x"],
        &["ACL", "NOSUCH"],
        &["ACL"],
    ] {
        assert_eq!(through(args), on_node(args), "{args:?}");
    }
    let mut cat_node: Vec<String> = on_node(&["ACL", "CAT", "scripting"]).lines().map(String::from).collect();
    let mut cat_proxy: Vec<String> = through(&["ACL", "CAT", "scripting"]).lines().map(String::from).collect();
    cat_node.sort();
    cat_proxy.sort();
    assert_eq!(cat_proxy, cat_node, "the same commands (slotway lists them in its table's order)");
    let pass = through(&["ACL", "GENPASS"]);
    assert!(pass.len() == 64 && pass.bytes().all(|b| b.is_ascii_hexdigit()), "{pass}");
    assert_ne!(pass, through(&["ACL", "GENPASS"]));
    assert_eq!(through(&["ACL", "GENPASS", "5"]).len(), 2);
    assert!(through(&["ACL", "SETUSER", "x", "on"]).contains("ACL SETUSER is not supported yet"));
    assert!(through(&["ACL", "DELUSER", "news"]).contains("ACL DELUSER is not supported yet"));
    assert!(through(&["ACL", "LOAD"]).contains("not configured to use an ACL file"));
    // ACL is a command like any other for the rules: news may not run @dangerous ones (ACL SETUSER is).
    assert_eq!(
        proxy_cli(&proxy, "news", "news-pw", &["ACL", "SETUSER", "x"]),
        "NOPERM this user has no permissions to run the 'acl|setuser' command"
    );

    // ACL LOG: denials, grouped as Redis groups them.
    let mut news = login(&proxy, "news", "news-pw");
    for _ in 0..2 {
        news.call(&["GET", "other"]);
    }
    news.call(&["PUBLISH", "nope", "m"]);
    let mut bad = Raw::connect(&proxy.addr);
    bad.call(&["AUTH", "news", "wrong"]);
    let mut all = login(&proxy, "all", "all-pw");
    let Reply::Array(Some(entries)) = all.call(&["ACL", "LOG"]) else { panic!("ACL LOG") };
    let field = |e: &Reply, name: &str| match e {
        Reply::Array(Some(kv)) => {
            let i = kv.iter().position(|x| *x == bulk(name)).unwrap_or_else(|| panic!("no {name} in {e:?}"));
            kv[i + 1].clone()
        }
        other => panic!("not an entry: {other:?}"),
    };
    let summary: Vec<(Reply, Reply, Reply, Reply)> = entries
        .iter()
        .map(|e| (field(e, "reason"), field(e, "object"), field(e, "username"), field(e, "count")))
        .collect();
    assert_eq!(
        summary[..4],
        [
            (bulk("auth"), bulk("AUTH"), bulk("news"), int(1)),
            (bulk("channel"), bulk("nope"), bulk("news"), int(1)),
            (bulk("key"), bulk("other"), bulk("news"), int(2)),
            (bulk("command"), bulk("acl|setuser"), bulk("news"), int(1)),
        ]
    );
    assert!(matches!(field(&entries[0], "client-info"), Reply::Bulk(Some(t)) if t.starts_with(b"id=")));
    assert_eq!(field(&entries[0], "context"), bulk("toplevel"));
    match all.call(&["ACL", "LOG", "1"]) {
        Reply::Array(Some(one)) => assert_eq!((one.len(), field(&one[0], "reason")), (1, bulk("auth"))),
        other => panic!("ACL LOG 1: {other:?}"),
    }
    assert_eq!(all.call(&["ACL", "LOG", "RESET"]), ok());
    assert_eq!(all.call(&["ACL", "LOG"]), arr(vec![]));
    drop(proxy);

    // Without [[users]]: the implicit default user, with every permission.
    let plain = Proxy::start(&cluster, &[]);
    assert_eq!(plain.cli(&["ACL", "WHOAMI"]), "default");
    assert_eq!(plain.cli(&["ACL", "USERS"]), "default");
    assert_eq!(plain.cli(&["ACL", "LIST"]), "user default on nopass ~* &* +@all");
    let mut c = Raw::connect(&plain.addr);
    assert_eq!(c.call(&["ACL", "GETUSER", "default"]), getuser(&["on", "nopass"], "+@all", "~*", "&*"));
    assert_eq!(plain.cli(&["ACL", "DRYRUN", "default", "SET", "k", "v"]), "OK");
    assert_eq!(plain.cli(&["ACL", "LOG"]), "");
}
